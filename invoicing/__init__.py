"""Invoicing: the pure invoice engine, its ports, the PostgreSQL ledger and the service that owns transactions."""
