"""One process per embedded chDB directory, enforced: chDB serves one process per directory but
does not reliably refuse a second one, so the directory's owner holds a lock file beside it and
any other process is told who holds it (issue #15.4). No ClickHouse import here: the CLI
imports the error at start-up."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class StoreBusy(Exception):
    """An embedded chDB directory another process owns (chDB serves one process per directory)."""


_owned: dict[str, int] = {}
"""Embedded chDB directories this process holds, with the descriptor that keeps the lock."""


def _holder(pid: str) -> str:
    """``pid`` with its command line when it runs on this machine."""
    try:
        command = Path(f"/proc/{int(pid)}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return f"process {pid or '?'}"
    return f"process {pid} ({command.strip()[:200]})"


def own_directory(path: str) -> None:
    """Hold ``path`` for this process until it exits, or raise StoreBusy naming the holder.

    chDB itself does not reliably refuse a second process on a directory: one run failed with a
    bare BAD_ARGUMENTS traceback, others opened it and would have corrupted each other's parts.
    The lock is a sibling file (``path.lock``, an exclusive flock the kernel drops when its
    holder exits, however it exits) with the holder's pid in it."""
    real = os.path.realpath(path)
    if real in _owned:
        return
    os.makedirs(os.path.dirname(real), exist_ok=True)
    descriptor = os.open(real + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        os.close(descriptor)
        raise StoreBusy(
            f"the embedded ClickHouse at {real} is in use by {_holder(pid)}; stop it, give this command "
            "another --data-dir, or set CLICKHOUSE_URL to a ClickHouse server that several processes can share"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, str(os.getpid()).encode(), 0)
    _owned[real] = descriptor
