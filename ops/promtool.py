"""Prometheus's ``promtool``, built once from the Go module proxy into a cache, for the alert rule
tests (issue #15.2). Needs Go (https://go.dev/dl/); nothing else.

    python ops/promtool.py path                # build if needed, print the binary's path
    python ops/promtool.py check rules FILE    # any promtool command, through the cached binary

The binary goes to ``$PROMTOOL_CACHE_DIR`` (default ``~/.cache/smallbiznis-billing/promtool-<version>``).
``go install …/cmd/promtool@version`` refuses Prometheus's module (its go.mod has a replace
directive), so the module is downloaded with ``go mod download`` and built inside its own
directory, where the replace applies. The first build takes about 4-5 minutes (downloads
included). The building is ops/gotool.py's; standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gotool import GoMissing, GoTool

TOOL = GoTool(
    "promtool",
    "github.com/prometheus/prometheus",
    "v0.305.0",  # Prometheus 3.5.0 (its Go module is numbered v0.3xx.y), the image docker-compose.yml runs
    "PROMTOOL_CACHE_DIR",
    package="./cmd/promtool",
    in_module=True,
    takes="a few minutes",
)
MODULE, VERSION = TOOL.module, TOOL.version
__all__ = ["MODULE", "TOOL", "VERSION", "GoMissing", "promtool"]


def promtool() -> Path:
    """The cached promtool binary, built first if it is missing."""
    return TOOL.binary()


if __name__ == "__main__":
    sys.exit(TOOL.main(sys.argv[1:]))
