"""Payment provider adapters behind invoicing.ports.PaymentProvider, each thin: DUMMY (deterministic,
for tests and demos), Stripe, Xendit and Midtrans.

:func:`configured_providers` is what ``billing serve`` and the payment worker use: Stripe when
``STRIPE_API_KEY`` (or ``_FILE``) is set, Xendit when ``XENDIT_SECRET_KEY`` is, Midtrans when
``MIDTRANS_SERVER_KEY`` is; DUMMY only when ``PAYMENTS_DUMMY=on`` (it charges nothing real, so a
production server must not accept it), journaled in ``PAYMENTS_DUMMY_DIR`` when set (its charges
then outlive the process, as a real provider's do)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from billing.payments.providers.dummy import DummyProvider
from billing.payments.providers.midtrans import MidtransProvider
from billing.payments.providers.stripe import StripeProvider
from billing.payments.providers.xendit import XenditProvider
from billing.payments.secrets import provider_secret
from invoicing.engine.payments import ProviderName
from invoicing.ports import PaymentProvider


def configured_providers(environ: Mapping[str, str] | None = None) -> dict[ProviderName, PaymentProvider]:
    env = os.environ if environ is None else environ
    providers: dict[ProviderName, PaymentProvider] = {}
    if env.get("PAYMENTS_DUMMY", "").lower() in ("on", "1", "true", "yes"):
        journal = env.get("PAYMENTS_DUMMY_DIR")
        providers[ProviderName.DUMMY] = DummyProvider(Path(journal) if journal else None)
    if provider_secret("STRIPE_API_KEY", env) is not None:
        providers[ProviderName.STRIPE] = StripeProvider.from_environment(env)
    xendit = XenditProvider.from_env(env)
    if xendit is not None:
        providers[ProviderName.XENDIT] = xendit
    midtrans = MidtransProvider.from_env(env)
    if midtrans is not None:
        providers[ProviderName.MIDTRANS] = midtrans
    return providers
