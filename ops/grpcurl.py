"""``grpcurl``, installed once from the Go module proxy into a cache, for the end-to-end test that
drives ``billing serve`` through server reflection as a user would (issue #13.4). Needs Go
(https://go.dev/dl/); nothing else.

    python ops/grpcurl.py path                         # install if needed, print the binary's path
    python ops/grpcurl.py -plaintext HOST:PORT list    # any grpcurl command, through the cached binary

The binary goes to ``$GRPCURL_CACHE_DIR`` (default ``~/.cache/smallbiznis-billing/grpcurl-<version>``,
beside promtool's). ``go install …/cmd/grpcurl@version`` builds it (about a minute the first time,
downloads included). Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "github.com/fullstorydev/grpcurl/cmd/grpcurl"
VERSION = "v1.9.3"


class GoMissing(RuntimeError):
    """No ``go`` on PATH: grpcurl cannot be installed."""


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "smallbiznis-billing" / f"grpcurl-{VERSION}"
    return Path(os.environ.get("GRPCURL_CACHE_DIR") or default)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One install at a time per cache, so parallel test sessions do not build twice."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoMissing(
            f"grpcurl {VERSION} is installed from the Go module proxy and needs Go on PATH "
            "(https://go.dev/dl/, Go 1.23 or newer); or set GRPCURL_CACHE_DIR to a directory holding grpcurl"
        )
    return go


def _install(target: Path) -> None:
    go = _go()
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": scratch}
        result = subprocess.run(
            [go, "install", f"{PACKAGE}@{VERSION}"], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"go install {PACKAGE}@{VERSION} failed:\n{result.stdout}{result.stderr}")
        (Path(scratch) / "grpcurl").replace(target)  # atomic: a half-written binary is never found


def grpcurl() -> Path:
    """The cached grpcurl binary, installed first if it is missing."""
    directory = cache_dir()
    target = directory / "grpcurl"
    if target.exists():
        return target
    with _locked(directory):
        if not target.exists():
            print(f"installing grpcurl {VERSION} into {directory} (about a minute, once)", file=sys.stderr)
            _install(target)
    return target


def main(argv: list[str]) -> int:
    try:
        binary = grpcurl()
    except (GoMissing, RuntimeError) as error:
        print(error, file=sys.stderr)
        return 2
    if argv[:1] == ["path"]:
        print(binary)
        return 0
    return subprocess.run([str(binary), *argv], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
