"""Invoice: the invoice worker finalizes ``rating.results`` into invoices in the ledger."""
