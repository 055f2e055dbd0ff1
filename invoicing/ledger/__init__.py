"""The ledger: where finalized invoices, numbering, credits, catalog and the outbox live."""
