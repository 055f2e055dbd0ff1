"""``grpcurl``, installed once from the Go module proxy into a cache, for the end-to-end test that
drives ``billing serve`` through server reflection as a user would (issue #13.4). Needs Go
(https://go.dev/dl/); nothing else.

    python ops/grpcurl.py path                         # install if needed, print the binary's path
    python ops/grpcurl.py -plaintext HOST:PORT list    # any grpcurl command, through the cached binary

The binary goes to ``$GRPCURL_CACHE_DIR`` (default ``~/.cache/smallbiznis-billing/grpcurl-<version>``,
beside promtool's). ``go install …/cmd/grpcurl@version`` builds it (about a minute the first time,
downloads included). The building is ops/gotool.py's; standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gotool import GoMissing, GoTool

TOOL = GoTool("grpcurl", "github.com/fullstorydev/grpcurl", "v1.9.3", "GRPCURL_CACHE_DIR", package="./cmd/grpcurl")
VERSION = TOOL.version
__all__ = ["TOOL", "VERSION", "GoMissing", "grpcurl"]


def grpcurl() -> Path:
    """The cached grpcurl binary, installed first if it is missing."""
    return TOOL.binary()


if __name__ == "__main__":
    sys.exit(TOOL.main(sys.argv[1:]))
