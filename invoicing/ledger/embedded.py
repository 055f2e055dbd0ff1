"""An embedded, real PostgreSQL (16, from the ``pgserver`` wheel) for ``simulate``, ``demo`` and
tests: no install, no container. It listens on a Unix socket only, its data lives under the
directory given, and it keeps running after the process that started it exits, so the next
process reuses it; :func:`stop_embedded_database` stops it (the data stays). A server whose data
directory is gone when the process that started it exits (a temporary directory) is stopped then."""

from __future__ import annotations

import atexit
import os
import signal
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import URL

USER = "postgres"  # the superuser pgserver's initdb creates, trusted on the socket

_exit_hooks: dict[Path, bool] = {}  # data directories this process started or reused → keep running


def _pgserver() -> Any:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver asks it at import
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def embedded_database_url(data_dir: Path, keep_running: bool = True) -> str:
    """The SQLAlchemy URL (psycopg 3) of the embedded PostgreSQL whose data is ``data_dir``,
    started (``initdb`` first when the directory is new) unless it is running already. With
    ``keep_running=False`` it is stopped when this process exits."""
    pgserver = _pgserver()
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    if not info.is_running():  # stopped behind the cached handle (by another process): start again
        _forget(pgserver, data_dir)
        server = pgserver.get_server(data_dir, cleanup_mode=None)
        info = server.get_postmaster_info()
    if data_dir not in _exit_hooks:
        atexit.register(_at_exit, data_dir, info.process)
    _exit_hooks[data_dir] = _exit_hooks.get(data_dir, True) and keep_running
    if info.socket_dir is None:  # Windows: pgserver listens on 127.0.0.1 and a free port
        return URL.create("postgresql+psycopg", USER, "", info.hostname, info.port, USER).render_as_string(False)
    return URL.create(
        "postgresql+psycopg", username=USER, password="", database=USER, query={"host": str(info.socket_dir)}
    ).render_as_string(hide_password=False)


def embedded_reader_url(data_dir: Path, role: str) -> str:
    """The URL of the embedded server (started if needed) as ``role``: a login role that may read
    every table and nothing else (``pg_read_all_data``; no superuser, so no ``COPY … TO
    PROGRAM``), created on first use. The socket trusts any role, as it does the superuser."""
    import psycopg
    from psycopg import sql

    owner = embedded_database_url(data_dir).replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(owner, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        connection.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    return owner.replace(f"//{USER}:@", f"//{role}:@", 1)


def stop_embedded_database(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL of ``data_dir`` if it runs (open connections are closed);
    True when it was running."""
    pgserver = _pgserver()
    from pgserver.utils import PostmasterInfo

    data_dir = data_dir.expanduser().resolve()
    _forget(pgserver, data_dir)
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return False
    # pgserver runs the server as its own user when we are root (postgres refuses to run as root)
    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
    pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    return True


def _forget(pgserver: Any, data_dir: Path) -> None:
    """Drop pgserver's in-process handle, which would otherwise hand out a stopped server, and its
    exit hook (which expects the handle to still be registered)."""
    handle = pgserver.PostgresServer._instances.pop(data_dir, None)
    if handle is not None:
        atexit.unregister(handle._cleanup)
        handle.global_process_id_list.get_and_remove(os.getpid())


def _at_exit(data_dir: Path, process: Any) -> None:
    """Stop a server asked not to outlive us, or one whose data directory was deleted under it
    (nothing could reuse it, and pg_ctl cannot reach it without its directory)."""
    if process is None or not process.is_running():
        return
    if data_dir.exists():
        if not _exit_hooks.get(data_dir, True):
            stop_embedded_database(data_dir)
        return
    process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown: clients are disconnected
    try:
        process.wait(10)
    except Exception:  # psutil.TimeoutExpired
        process.kill()
