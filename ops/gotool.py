"""Go programs the tests drive (promtool, grpcurl, stripe-mock), built once from the Go module
proxy into a cache shared by test sessions. Needs Go (https://go.dev/dl/); nothing else: standard
library only, so it runs before anything is installed. ops/promtool.py, ops/grpcurl.py and
ops/stripe_mock.py each name one tool and its pinned version.

A tool goes to ``$<NAME>_CACHE_DIR`` (default ``~/.cache/smallbiznis-billing/<name>-<version>``);
a directory already holding the binary is used as it is, so a machine without Go can be given one.
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
from dataclasses import dataclass
from pathlib import Path


class GoMissing(RuntimeError):
    """No ``go`` on PATH: the tool cannot be built."""


@dataclass(frozen=True)
class GoTool:
    """One binary of a Go module at a pinned version.

    ``package`` is the package to build, relative to the module (``./cmd/promtool``; "" for the
    module's root). ``in_module`` builds inside the downloaded module instead of ``go install``:
    Prometheus's go.mod has replace directives, which ``go install mod@version`` refuses."""

    name: str
    module: str
    version: str
    cache_variable: str
    package: str = ""
    in_module: bool = False
    takes: str = "about a minute"

    def cache_dir(self) -> Path:
        default = Path.home() / ".cache" / "smallbiznis-billing" / f"{self.name}-{self.version}"
        return Path(os.environ.get(self.cache_variable) or default)

    def binary(self) -> Path:
        """The cached binary, built first if it is missing (one build at a time per cache)."""
        directory = self.cache_dir()
        target = directory / self.name
        if target.exists():
            return target
        with _locked(directory):
            if not target.exists():
                print(f"building {self.name} {self.version} into {directory} ({self.takes}, once)", file=sys.stderr)
                self._build(target)
        return target

    def main(self, argv: list[str]) -> int:
        """``path``: print the binary's path; anything else: run the binary with it."""
        try:
            binary = self.binary()
        except (GoMissing, RuntimeError) as error:
            print(error, file=sys.stderr)
            return 2
        if argv[:1] == ["path"]:
            print(binary)
            return 0
        return subprocess.run([str(binary), *argv], check=False).returncode

    def _go(self) -> str:
        go = shutil.which("go")
        if go is None:
            raise GoMissing(
                f"{self.name} {self.version} is built from the Go module proxy and needs Go on PATH "
                f"(https://go.dev/dl/, Go 1.23 or newer); or set {self.cache_variable} to a directory holding "
                f"{self.name}"
            )
        return go

    def _build(self, target: Path) -> None:
        go = self._go()
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = Path(scratch) / self.name
            env = {**os.environ, "CGO_ENABLED": "0"}
            if self.in_module:
                source = self._download(go)
                command = [go, "build", "-o", str(built), self.package or "."]
                env["GOFLAGS"] = "-mod=readonly"
                where: str | None = source
            else:
                package = f"{self.module}/{self.package.removeprefix('./')}" if self.package else self.module
                command = [go, "install", f"{package}@{self.version}"]
                env["GOBIN"] = scratch
                where = None
            result = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command[1:])} failed:\n{result.stdout}{result.stderr}")
            built.replace(target)  # atomic: a half-written binary is never found

    def _download(self, go: str) -> str:
        """The module's source directory, downloaded into Go's module cache."""
        command = [go, "mod", "download", "-json", f"{self.module}@{self.version}"]
        downloaded = subprocess.run(command, capture_output=True, text=True, check=False)
        if downloaded.returncode != 0:
            raise RuntimeError(
                f"go mod download {self.module}@{self.version} failed:\n{downloaded.stdout}{downloaded.stderr}"
            )
        return str(json.loads(downloaded.stdout)["Dir"])


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
