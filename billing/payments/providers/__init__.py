"""Payment providers behind the PaymentProvider port (invoicing/ports.py), one thin adapter each."""
