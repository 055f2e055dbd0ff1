"""Invoice PDFs: a finalized invoice's printable figures (invoicing/engine/printable.py) laid out
by a Jinja2 HTML template (the built-in one or the tenant's) and drawn by WeasyPrint."""
