"""Prometheus's ``promtool``, built once from the Go module proxy into a cache, for the alert rule
tests (issue #15.2). Needs Go (https://go.dev/dl/); nothing else.

    python ops/promtool.py path                # build if needed, print the binary's path
    python ops/promtool.py check rules FILE    # any promtool command, through the cached binary

The binary goes to ``$PROMTOOL_CACHE_DIR`` (default ``~/.cache/smallbiznis-billing/promtool-<version>``).
``go install …/cmd/promtool@version`` refuses Prometheus's module (its go.mod has a replace
directive), so the module is downloaded with ``go mod download`` and built inside its own
directory, where the replace applies. The first build takes about 4-5 minutes (downloads
included). Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

MODULE = "github.com/prometheus/prometheus"
VERSION = "v0.305.0"
"""Prometheus 3.5.0 (its Go module is numbered v0.3xx.y), the image docker-compose.yml runs."""


class GoMissing(RuntimeError):
    """No ``go`` on PATH: promtool cannot be built."""


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "smallbiznis-billing" / f"promtool-{VERSION}"
    return Path(os.environ.get("PROMTOOL_CACHE_DIR") or default)


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


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoMissing(
            f"promtool {VERSION} is built from the Go module proxy and needs Go on PATH "
            "(https://go.dev/dl/, Go 1.23 or newer); or set PROMTOOL_CACHE_DIR to a directory holding promtool"
        )
    return go


def _build(target: Path) -> None:
    go = _go()
    downloaded = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{VERSION}"], capture_output=True, text=True, check=False
    )
    if downloaded.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{VERSION} failed:\n{downloaded.stdout}{downloaded.stderr}")
    source = json.loads(downloaded.stdout)["Dir"]
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / "promtool"
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
        result = subprocess.run(
            [go, "build", "-o", str(built), "./cmd/promtool"], cwd=source, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"building promtool {VERSION} failed:\n{result.stdout}{result.stderr}")
        built.replace(target)  # atomic: a half-written binary is never found


def promtool() -> Path:
    """The cached promtool binary, built first if it is missing."""
    directory = cache_dir()
    target = directory / "promtool"
    if target.exists():
        return target
    with _locked(directory):
        if not target.exists():
            print(f"building promtool {VERSION} into {directory} (a few minutes, once)", file=sys.stderr)
            _build(target)
    return target


def main(argv: list[str]) -> int:
    try:
        binary = promtool()
    except (GoMissing, RuntimeError) as error:
        print(error, file=sys.stderr)
        return 2
    if argv[:1] == ["path"]:
        print(binary)
        return 0
    return subprocess.run([str(binary), *argv], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
