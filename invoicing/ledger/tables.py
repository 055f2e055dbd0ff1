"""The ledger's PostgreSQL tables (SQLAlchemy Core), named after the seed's models. Money is
BIGINT minor units beside a CHAR(3) currency code; prices and quantities are NUMERIC (exact, scale
kept); instants are TIMESTAMPTZ; never float. Metadata and plan snapshots are JSON, not JSONB,
so their keys keep their order; the outbox payload and tenant terms are JSONB. Migrations (invoicing/ledger/migrations)
create exactly these; tests/integration/test_postgres_ledger.py checks that they agree."""

from __future__ import annotations

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB

metadata = MetaData()

plans = Table(
    "plans",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("code", String, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("snapshot", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# The catalog's subscriptions (invoicing/ledger/catalog.py); each change bumps ``revision`` and is
# announced on the outbox in the same transaction.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("plan_code", String, nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("start_at", DateTime(timezone=True), nullable=False),
    Column("timezone", String, nullable=False),
    Column("region_code", String),
    Column("allow_overage_billing", Boolean, nullable=False),
    Column("trial_days", Integer, nullable=False),
    Column("trial_balance", Numeric),
    Column("has_payment_method", Boolean, nullable=False),
    Column("coupon_code", String),
    Column("status", String, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # the lifecycle (invoicing.engine.subscriptions.Lifecycle, migration 0006)
    Column("effective_at", DateTime(timezone=True)),
    Column("plan_changed_at", DateTime(timezone=True)),
    Column("trial_end_at", DateTime(timezone=True)),
    Column("cancel_at", DateTime(timezone=True)),
    Column("canceled_at", DateTime(timezone=True)),
    Column("previous_plan_code", String),
    Column("previous_plan_version", Integer),
    Column("trial_cut", Boolean, nullable=False, server_default=text("false")),
    Column("cancel_at_period_end", Boolean, nullable=False, server_default=text("false")),
    Column("cancel_reason", String),
    ForeignKeyConstraint(
        ["tenant_id", "plan_code", "plan_version"],
        ["plans.tenant_id", "plans.code", "plans.version"],
        name="subscriptions_plan_version",
    ),
)
Index("subscriptions_by_tenant", subscriptions.c.tenant_id)
Index("subscriptions_by_tenant_cancel", subscriptions.c.tenant_id, subscriptions.c.cancel_at)

# Every revision of a subscription, appended in the transaction that saves it (migration 0010):
# the columns of ``subscriptions`` at that revision, and ``recorded_at``, the instant it was saved
# on the saver's clock (the database's when the saver has none). The billing periods the API
# serves are replayed from it (invoicing/engine/calendar.py ``history_calendar``).
subscription_revisions = Table(
    "subscription_revisions",
    metadata,
    Column("id", String, primary_key=True),
    Column("revision", BigInteger, primary_key=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    *(column._copy() for column in subscriptions.columns if column.name not in ("id", "revision", "updated_at")),
    ForeignKeyConstraint(
        ["tenant_id", "plan_code", "plan_version"],
        ["plans.tenant_id", "plans.code", "plans.version"],
        name="subscription_revisions_plan_version",
    ),
)

# A tenant's terms (metrics, tax rules, coupons) as ``terms_to_json`` (invoicing/ledger/json_codec.py):
# JSONB, since only the order of its lists matters; each change bumps ``revision`` and is announced
# on the outbox in the same transaction (invoicing/ledger/catalog.py).
tenant_terms = Table(
    "tenant_terms",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("terms", JSONB, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# The seller on a tenant's invoice PDFs (invoicing/engine/printable.py TenantProfile); ``template``
# is the tenant's own Jinja2 HTML template, NULL for the built-in one (billing/pdf/).
tenant_profiles = Table(
    "tenant_profiles",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("address", Text, nullable=False),
    Column("tax_id", String, nullable=False),
    Column("locale", String, nullable=False),
    Column("template", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("tenant_id", String, nullable=False),
    Column("subscription_id", String, nullable=False),
    Column("billing_period_start", DateTime(timezone=True), nullable=False),
    Column("billing_period_end", DateTime(timezone=True), nullable=False),
    Column("currency_code", CHAR(3), nullable=False),
    Column("status", String, nullable=False),
    Column("invoice_number", String),
    Column("issued_at", DateTime(timezone=True)),
    Column("plan_code", String, nullable=False),
    Column("subtotal", BigInteger, nullable=False),
    Column("discount_total", BigInteger, nullable=False),
    Column("tax_total", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("credits_applied", BigInteger, nullable=False),
    Column("amount_paid", BigInteger, nullable=False),
    Column("amount_due", BigInteger, nullable=False),
    Column("metadata", JSON, nullable=False),
    # ADJUSTMENT notes taken off amount_due, REFUND notes returned of amount_paid (migration 0007)
    Column("amount_credited", BigInteger, nullable=False, server_default=text("0")),
    Column("amount_refunded", BigInteger, nullable=False, server_default=text("0")),
    Column("paid_at", DateTime(timezone=True)),  # when a payment left nothing due (migration 0008)
    UniqueConstraint("subscription_id", "billing_period_start", name="invoices_one_per_period"),
    UniqueConstraint("tenant_id", "invoice_number", name="invoices_number_unique"),
)
# ListInvoices of one subscription reads its keyset page in id order straight from this index
# (migration 0011; it replaced (tenant_id, subscription_id), which left a sort or a filtered scan)
Index("invoices_by_subscription", invoices.c.tenant_id, invoices.c.subscription_id, invoices.c.id)

invoice_line_items = Table(
    "invoice_line_items",
    metadata,
    Column("invoice_id", BigInteger, ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("type", String, nullable=False),
    Column("description", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency_code", CHAR(3), nullable=False),
    Column("quantity", Numeric),
    Column("unit_price", Numeric),
    Column("metric_code", String),
    Column("metadata", JSON, nullable=False),
)

invoice_sequences = Table(
    "invoice_sequences",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("last_number", BigInteger, nullable=False),
)

credit_notes = Table(
    "credit_notes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("subscription_id", String, nullable=False, index=True),
    Column("type", String, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency_code", CHAR(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("invoice_number", String),
    Column("idempotency_key", String),  # CreateCreditNote's, unique per subscription (migration 0005)
    Column("tenant_id", String, nullable=False),  # the subscription's, every API read scoped by it (migration 0011)
)
Index("credit_notes_by_tenant", credit_notes.c.tenant_id, credit_notes.c.subscription_id, credit_notes.c.id)
Index(
    "credit_notes_idempotency",
    credit_notes.c.subscription_id,
    credit_notes.c.idempotency_key,
    unique=True,
    postgresql_where=credit_notes.c.idempotency_key.isnot(None),
)

# What invoices took from the balance; the balance is BALANCE notes minus this, per currency.
credit_usage = Table(
    "credit_usage",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("subscription_id", String, nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency_code", CHAR(3), nullable=False),
    Column("invoice_number", String, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

billed_usage = Table(
    "billed_usage",
    metadata,
    Column("subscription_id", String, primary_key=True),
    Column("period_start", DateTime(timezone=True), primary_key=True),
    Column("metric_code", String, primary_key=True),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("quantity", Numeric, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency_code", CHAR(3), nullable=False),
    Column("plan_code", String, nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("share_numerator", BigInteger, nullable=False),
    Column("share_denominator", BigInteger, nullable=False),
    Column("allow_overage", Boolean, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("topic", String, nullable=False),
    Column("key", String, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("published_at", DateTime(timezone=True)),
)
Index("outbox_unpublished", outbox.c.id, postgresql_where=outbox.c.published_at.is_(None))

# API keys of ``billing serve`` (billing/api/keys.py): the secret is never stored, only its hash.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("name", String, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("revoked_at", DateTime(timezone=True)),
)
Index("api_keys_by_tenant", api_keys.c.tenant_id)

# Payments (issue #14, migration 0008). A payment method belongs to one subscription (the tenant's
# customer); at most one per subscription is its default. ``token`` is the provider's handle of the
# method (Stripe pm_…, a DUMMY outcome token); no card number is ever stored.
payment_methods = Table(
    "payment_methods",
    metadata,
    Column("id", String, primary_key=True),
    Column("position", BigInteger, Identity(), nullable=False),  # the order methods were attached in
    Column("tenant_id", String, nullable=False),
    Column("subscription_id", String, ForeignKey("subscriptions.id"), nullable=False),
    Column("provider", String, nullable=False),
    Column("type", String, nullable=False),
    Column("token", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("last4", String, nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("provider_data", JSON, nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("payment_methods_by_subscription", payment_methods.c.tenant_id, payment_methods.c.subscription_id)
Index(
    "payment_methods_one_default",
    payment_methods.c.subscription_id,
    unique=True,
    postgresql_where=payment_methods.c.is_default,
)

# One row per charge of an invoice: ``idempotency_key`` (attempt_idempotency_key) is what every
# provider call of the attempt carries; ``request_key`` is ChargeInvoice's own, so a retried request
# answers its attempt. Statuses move forward only (ATTEMPT_TRANSITIONS).
payment_attempts = Table(
    "payment_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("tenant_id", String, nullable=False),
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), nullable=False),
    Column("payment_method_id", String, ForeignKey("payment_methods.id"), nullable=False),
    Column("attempt_number", Integer, nullable=False),
    Column("status", String, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency_code", CHAR(3), nullable=False),
    Column("idempotency_key", String, nullable=False, unique=True),
    Column("request_key", String),
    Column("provider_reference", String),
    Column("failure_code", String),
    Column("failure_message", Text),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("next_retry_at", DateTime(timezone=True)),
    UniqueConstraint("invoice_id", "attempt_number", name="payment_attempts_number_unique"),
)
Index(
    "payment_attempts_request_key",
    payment_attempts.c.invoice_id,
    payment_attempts.c.request_key,
    unique=True,
    postgresql_where=payment_attempts.c.request_key.isnot(None),
)
Index("payment_attempts_by_reference", payment_attempts.c.provider_reference)

# Provider events settled: the key makes a webhook delivered twice settle once.
payment_events = Table(
    "payment_events",
    metadata,
    Column("provider", String, primary_key=True),
    Column("event_id", String, primary_key=True),
    Column("attempt_id", BigInteger, ForeignKey("payment_attempts.id")),
    Column("status", String, nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=False),
)
