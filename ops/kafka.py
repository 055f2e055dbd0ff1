"""A real single-node Apache Kafka 4.x broker (KRaft, combined broker + controller) on loopback,
run from the Maven Central jars. Used by the tests, CI, the benchmarks and developers.

    python ops/kafka.py fetch                       # copy the jars into the cache once
    python ops/kafka.py start [--dir D] [--port N]  # format storage (first time), start, wait, print bootstrap
    python ops/kafka.py status|stop [--dir D]

The jars come from ``ops/kafka/pom.xml`` (``mvn dependency:copy-dependencies``) into
``$KAFKA_CACHE_DIR`` (default ``~/.cache/smallbiznis-billing/kafka-<version>``); a changed pom
fetches again. Storage is formatted with ``kafka-storage format --standalone`` before the first
start, as Kafka 4.x requires. Python API: ``KafkaBroker(directory, port).start()`` / ``.stop()`` /
``.bootstrap``. Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
POM = HERE / "kafka" / "pom.xml"
_found = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
assert _found is not None, f"no <kafka.version> in {POM}"
VERSION = _found.group(1)
DEFAULT_DIR = Path(".data/kafka")
# Two cores and other services beside it: a small heap is plenty for tests and benchmarks.
HEAP = os.environ.get("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
JVM = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]
MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"  # what bin/kafka-storage.sh runs

LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
logger.state.name = state.change.logger
logger.state.level = {level}
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "smallbiznis-billing" / f"kafka-{VERSION}"
    return Path(os.environ.get("KAFKA_CACHE_DIR") or default)  # set but empty: the default too


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def fetch() -> Path:
    """The directory of the broker's jars, copied from Maven Central on first use (or when the pom changed)."""
    jars = cache_dir() / "libs"
    done = jars / ".complete"
    digest = _pom_digest()
    if done.exists() and done.read_text() == digest:
        return jars
    jars.parent.mkdir(parents=True, exist_ok=True)
    with open(jars.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test sessions fetch once, not over each other
        if done.exists() and done.read_text() == digest:
            return jars
        if shutil.which("mvn") is None:
            raise SystemExit("Maven (mvn) is needed once, to fetch the Kafka jars from Maven Central")
        tmp = jars.with_name("libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"],
            check=True,
        )
        if not any(tmp.glob(f"kafka_2.13-{VERSION}.jar")):
            raise RuntimeError(f"mvn copied no kafka_2.13-{VERSION}.jar into {tmp}")
        shutil.rmtree(jars, ignore_errors=True)
        tmp.rename(jars)
        done.write_text(digest)
    return jars


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def brokers(port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """The brokers a Metadata request (v4, the oldest Kafka 4.x serves) to 127.0.0.1:``port`` lists.

    Raises OSError when nothing answers. A broker lists itself only once it has caught up with the
    metadata log, which is what "ready" means for clients; a listening socket alone is not enough.
    """
    body = struct.pack(">i", -1) + b"\x00"  # all topics (null array), no auto-creation
    header = struct.pack(">hhi", 3, 4, 1) + _string("ops-kafka")  # api_key Metadata, version 4, correlation id
    request = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _read_exactly(sock, 4))
        response = _read_exactly(sock, size)
    (correlation, _throttle, count), at = struct.unpack_from(">iii", response), 12
    if correlation != 1:
        raise ConnectionError(f"unexpected correlation id {correlation}")
    found = []
    for _ in range(count):
        (node,) = struct.unpack_from(">i", response, at)
        (length,) = struct.unpack_from(">h", response, at + 4)
        host = response[at + 6 : at + 6 + length].decode()
        at += 6 + length
        (broker_port, rack_length) = struct.unpack_from(">ih", response, at)
        at += 6 + max(rack_length, 0)
        found.append((node, host, broker_port))
    return found


def _cmdline(pid: int) -> str | None:
    """The command line of a live (not zombie) process, "" where /proc can't tell, None if it's gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return ""
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return ""
    try:
        if ") Z" in (proc / "stat").read_text():
            return None
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


class KafkaBroker:
    """One broker whose data, config, log and pid live in ``directory``; ports are remembered there."""

    def __init__(self, directory: Path | str = DEFAULT_DIR, port: int | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.pidfile = self.directory / "broker.pid"
        self.portfile = self.directory / "broker.port"
        self.config = self.directory / "server.properties"
        self.log = self.directory / "server.log"
        remembered = self.portfile.read_text().split() if self.portfile.exists() else []
        self.port = port or (int(remembered[0]) if remembered else free_port())
        self.controller_port = int(remembered[1]) if len(remembered) > 1 else free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The pid of this directory's broker while it runs (a stale or reused pid is not ours)."""
        if not self.pidfile.exists():
            return None
        pid = int(self.pidfile.read_text())
        cmdline = _cmdline(pid)
        if cmdline is None or (cmdline and str(self.config) not in cmdline):
            return None
        return pid

    def ready(self) -> bool:
        try:
            return any(port == self.port for _, _, port in brokers(self.port))
        except (OSError, struct.error):
            return False

    def _configure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.directory / 'data'}",
            "num.partitions=1",
            # Faust and the SDK create their topics; tests create theirs with AdminClient.
            "auto.create.topics.enable=true",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=8",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "share.coordinator.state.topic.num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            "log.segment.bytes=67108864",
            "log.retention.hours=168",
            # the cleaner's default 128 MiB dedupe buffer is a quarter of the heap
            "log.cleaner.dedupe.buffer.size=16777216",
            "num.network.threads=2",
            "num.io.threads=4",
            "",
        ]
        self.config.write_text("\n".join(lines))
        level = os.environ.get("KAFKA_LOG_LEVEL", "WARN")
        (self.directory / "log4j2.properties").write_text(LOG4J2.format(log=self.log, level=level))
        self.portfile.write_text(f"{self.port} {self.controller_port}\n")

    def _java(self, jars: Path, *args: str) -> list[str]:
        return [
            "java",
            *HEAP.split(),
            *JVM,
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            f"{jars}/*",
            *args,
        ]

    def _tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.directory / "stdout.log", self.log):
            if path.exists():
                text += f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        """Format (first time), start in the background and wait until it serves metadata."""
        jars = fetch()
        if self.pid() is None:
            self._configure()
            if not (self.directory / "data" / "meta.properties").exists():
                # one in 32 of these ids starts with "-": passed as --cluster-id=…, never as a flag
                cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
                subprocess.run(
                    self._java(
                        jars, STORAGE_TOOL, "format", f"--cluster-id={cluster}", "-c", str(self.config), "--standalone"
                    ),
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            with open(self.directory / "stdout.log", "ab") as out:
                self._process = subprocess.Popen(
                    self._java(jars, MAIN, str(self.config)),
                    stdout=out,
                    stderr=out,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C in the shell that started it doesn't stop it
                )
            self.pidfile.write_text(str(self._process.pid))
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.pid() is None:
                raise RuntimeError(f"Kafka broker exited before it was ready\n{self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Kafka broker not ready after {timeout}s\n{self._tail()}")
            time.sleep(0.2)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout`` seconds."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.pid() is not None and time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    break  # reaped: our own child, no zombie left behind
                time.sleep(0.1)
            else:
                if self.pid() is not None:
                    os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
            self._process = None
        self.pidfile.unlink(missing_ok=True)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("fetch", "start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="broker data, config and logs (.data/kafka)")
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one, then remembered)")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        started = time.monotonic()
        jars = fetch()
        print(f"Kafka {VERSION}: {len(list(jars.glob('*.jar')))} jars in {jars} ({time.monotonic() - started:.1f}s)")
        return 0
    broker = KafkaBroker(args.dir, args.port)
    if args.command == "start":
        started = time.monotonic()
        broker.start()
        print(f"Kafka {VERSION} ready at {broker.bootstrap} in {time.monotonic() - started:.1f}s (pid {broker.pid()})")
        print(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
    elif args.command == "stop":
        broker.stop()
        print(f"stopped: {broker.directory}")
    else:
        running = broker.pid() is not None and broker.ready()
        print(f"{'running' if running else 'stopped'}: {broker.bootstrap}")
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
