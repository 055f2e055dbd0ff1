"""Payments: provider adapters, secrets, webhooks and the payment worker (issue #14)."""
