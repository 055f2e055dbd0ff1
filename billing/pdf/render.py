"""The drawing adapter: a template (Jinja2 HTML, sandboxed and autoescaped, since a tenant may
write it) filled with a ``PrintableInvoice`` and drawn by WeasyPrint. The template may load no
file or URL: only ``data:`` URLs (an embedded logo), so a tenant's template cannot read the
server's files or reach its network."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from invoicing.engine.printable import PrintableInvoice
from rating.errors import BillingError, InvalidValue

MAX_TEMPLATE = 256 * 1024
"""Characters of a tenant's template."""


class RendererUnavailable(BillingError):
    """WeasyPrint cannot draw here (its system libraries, Pango, are missing)."""


def default_template() -> str:
    """The built-in layout (billing/pdf/templates/invoice.html)."""
    return files("billing.pdf").joinpath("templates/invoice.html").read_text(encoding="utf-8")


@cache
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def check_template(source: str, field: str = "template") -> str:
    """``source`` when it is a template that compiles; InvalidValue naming ``field`` otherwise."""
    if len(source) > MAX_TEMPLATE:
        raise InvalidValue(field, f"at most {MAX_TEMPLATE:,} characters, got {len(source):,}")
    try:
        _environment().from_string(source)
    except TemplateError as error:
        raise InvalidValue(field, f"not a valid Jinja2 template: {error}") from None
    return source


def render_html(invoice: PrintableInvoice, template: str) -> str:
    """The template filled with the invoice; a name it uses that the invoice lacks is an error."""
    try:
        return str(_environment().from_string(check_template(template)).render(invoice=invoice))
    except TemplateError as error:
        raise InvalidValue("template", f"cannot fill the template: {error}") from None


@cache
def _weasyprint() -> Any:
    try:
        import weasyprint
    except OSError as error:  # cffi could not load Pango
        raise RendererUnavailable(
            "pdf", f"WeasyPrint cannot load its libraries ({error}); install Pango: apt-get install libpango-1.0-0"
        ) from None
    return weasyprint


def render_pdf(invoice: PrintableInvoice, template: str) -> bytes:
    """The invoice's PDF, drawn from ``template`` (HTML) filled with its figures."""
    weasyprint = _weasyprint()
    html = render_html(invoice, template)
    fetcher = weasyprint.urls.URLFetcher(allowed_protocols={"data"}, fail_on_errors=False)
    document = weasyprint.HTML(string=html, base_url=None, url_fetcher=fetcher)
    return bytes(document.write_pdf())  # its title and language come from the HTML
