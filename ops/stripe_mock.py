"""Stripe's ``stripe-mock`` (Stripe's own server for testing its API), built once from the Go module
proxy into a cache, for the Stripe provider's tests (issue #14). Needs Go (https://go.dev/dl/).

    python ops/stripe_mock.py path                   # build if needed, print the binary's path
    python ops/stripe_mock.py -http-addr 127.0.0.1:12111   # run it through the cached binary

The binary goes to ``$STRIPE_MOCK_CACHE_DIR`` (default
``~/.cache/smallbiznis-billing/stripe-mock-<version>``), installed with
``go install github.com/stripe/stripe-mock@VERSION`` (GOBIN set to the cache). The first build
takes about a minute. Standard library only, like ops/promtool.py, which this mirrors.
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

MODULE = "github.com/stripe/stripe-mock"
VERSION = "v0.203.0"
"""The newest stripe-mock the Go module proxy served on 2026-12-03 (it bundles Stripe's OpenAPI spec)."""


class GoMissing(RuntimeError):
    """No ``go`` on PATH: stripe-mock cannot be built."""


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "smallbiznis-billing" / f"stripe-mock-{VERSION}"
    return Path(os.environ.get("STRIPE_MOCK_CACHE_DIR") or default)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One build at a time per cache, so parallel test sessions do not build twice."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(target: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise GoMissing(
            f"stripe-mock {VERSION} is built from the Go module proxy and needs Go on PATH "
            "(https://go.dev/dl/); or set STRIPE_MOCK_CACHE_DIR to a directory holding stripe-mock"
        )
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        env = {**os.environ, "GOBIN": scratch, "CGO_ENABLED": "0"}
        result = subprocess.run([go, "install", f"{MODULE}@{VERSION}"], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"go install {MODULE}@{VERSION} failed:\n{result.stdout}{result.stderr}")
        (Path(scratch) / "stripe-mock").replace(target)  # atomic: a half-written binary is never found


def stripe_mock() -> Path:
    """The cached stripe-mock binary, built first if it is missing."""
    directory = cache_dir()
    target = directory / "stripe-mock"
    if target.exists():
        return target
    with _locked(directory):
        if not target.exists():
            print(f"building stripe-mock {VERSION} into {directory} (about a minute, once)", file=sys.stderr)
            _build(target)
    return target


def main(argv: list[str]) -> int:
    try:
        binary = stripe_mock()
    except (GoMissing, RuntimeError) as error:
        print(error, file=sys.stderr)
        return 2
    if argv[:1] == ["path"]:
        print(binary)
        return 0
    return subprocess.run([str(binary), *argv], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
