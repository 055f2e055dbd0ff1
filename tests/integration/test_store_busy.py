"""An embedded chDB directory has one owner (issue #15.4): a second process is told which process
holds it, in one line with status 1, and gets it once the holder is gone, however it died."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

HOLD = (
    "import sys, time\n"
    "from streams.clickhouse.client import ensure_schema, open_client\n"
    "ensure_schema(open_client(None, sys.argv[1]))\n"
    "print('holding', flush=True)\n"
    "time.sleep(600)\n"
)


def query(data_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "billing.cli", "query", "clickhouse", "SELECT 1 AS one"]
    command += ["--data-dir", str(data_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_held_directory_names_its_holder_and_is_free_after_a_kill(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "chdb")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        busy = query(tmp_path)
        assert busy.returncode == 1, busy.stdout + busy.stderr
        assert busy.stderr.startswith(f"error: the embedded ClickHouse at {(tmp_path / 'chdb').resolve()} is in use")
        assert f"process {holder.pid} (" in busy.stderr and "Traceback" not in busy.stderr, busy.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    free = query(tmp_path)
    assert free.returncode == 0 and "one" in free.stdout, free.stderr
