"""Stripe's ``stripe-mock`` (Stripe's own server for testing its API), built once from the Go module
proxy into a cache, for the Stripe provider's tests (issue #14). Needs Go (https://go.dev/dl/).

    python ops/stripe_mock.py path                   # build if needed, print the binary's path
    python ops/stripe_mock.py -http-addr 127.0.0.1:12111   # run it through the cached binary

The binary goes to ``$STRIPE_MOCK_CACHE_DIR`` (default
``~/.cache/smallbiznis-billing/stripe-mock-<version>``), installed with
``go install github.com/stripe/stripe-mock@VERSION`` (GOBIN set to the cache). The first build
takes about a minute. The building is ops/gotool.py's; standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gotool import GoMissing, GoTool

TOOL = GoTool(
    "stripe-mock",
    "github.com/stripe/stripe-mock",
    "v0.203.0",  # the newest the Go module proxy served on 2026-12-03 (it bundles Stripe's OpenAPI spec)
    "STRIPE_MOCK_CACHE_DIR",
)
VERSION = TOOL.version
__all__ = ["TOOL", "VERSION", "GoMissing", "stripe_mock"]


def stripe_mock() -> Path:
    """The cached stripe-mock binary, built first if it is missing."""
    return TOOL.binary()


if __name__ == "__main__":
    sys.exit(TOOL.main(sys.argv[1:]))
