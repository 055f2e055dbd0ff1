"""A real single-node Apache Kafka 4.x broker (KRaft, combined broker + controller) on loopback,
run from the Maven Central jars. Used by the tests, CI, the benchmarks and developers.

    python ops/kafka.py fetch                       # copy the jars into the cache once
    python ops/kafka.py start [--dir D] [--port N]  # format storage (first time), start, wait
    python ops/kafka.py status|stop [--dir D]

The jars come from ``ops/kafka/pom.xml`` (``mvn dependency:copy-dependencies``) into
``$KAFKA_CACHE_DIR`` (default ``~/.cache/smallbiznis-billing/kafka-<version>``). Storage is
formatted with ``kafka-storage format --standalone`` before the first start, as Kafka 4.x requires.
Python API: ``KafkaBroker(directory, port).start()`` / ``.stop()`` / ``.bootstrap``.
Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "kafka" / "pom.xml"
VERSION = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text()).group(1)  # type: ignore[union-attr]
DEFAULT_DIR = Path(".data/kafka")
HEAP = os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx768m")

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "smallbiznis-billing" / f"kafka-{VERSION}"
    return Path(os.environ.get("KAFKA_CACHE_DIR", default))


def fetch() -> Path:
    """The directory of the broker's jars, copied from Maven Central on first use."""
    jars = cache_dir() / "libs"
    done = jars / ".complete"
    if done.exists():
        return jars
    if shutil.which("mvn") is None:
        raise SystemExit("Maven (mvn) is needed once, to fetch the Kafka jars from Maven Central")
    tmp = jars.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"],
        check=True,
    )
    shutil.rmtree(jars, ignore_errors=True)
    tmp.rename(jars)
    done.write_text(VERSION)
    return jars


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class KafkaBroker:
    """One broker whose data, config, log and pid live in ``directory``."""

    def __init__(self, directory: Path = DEFAULT_DIR, port: int | None = None) -> None:
        self.directory = directory.resolve()
        self.pidfile = self.directory / "broker.pid"
        self.portfile = self.directory / "broker.port"
        if port is None and self.portfile.exists():
            port = int(self.portfile.read_text())
        self.port = port or free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        if not self.pidfile.exists():
            return None
        pid = int(self.pidfile.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def _configure(self) -> Path:
        controller = free_port()
        data = self.directory / "data"
        config = self.directory / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "auto.create.topics.enable=true",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "",
                ]
            )
        )
        (self.directory / "log4j2.properties").write_text(LOG4J2.format(log=self.directory / "server.log"))
        return config

    def _java(self, jars: Path, *args: str) -> list[str]:
        return [
            "java",
            *HEAP.split(),
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            f"{jars}/*",
            *args,
        ]

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        """Format (first time), start in the background and wait until it serves requests."""
        if self.pid() is not None and answers(self.port):
            return self
        jars = fetch()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "server.properties"
        if not (self.directory / "data" / "meta.properties").exists():
            config = self._configure()
            cluster = uuid.uuid4().hex[:22]
            subprocess.run(
                self._java(jars, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(config), "--standalone"),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            self.portfile.write_text(str(self.port))
        with open(self.directory / "stdout.log", "ab") as out:
            process = subprocess.Popen(
                self._java(jars, "kafka.Kafka", str(config)), stdout=out, stderr=out, start_new_session=True
            )
        self.pidfile.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while not self._ready():
            if process.poll() is not None:
                raise RuntimeError(f"broker exited with {process.returncode}; see {self.directory}/stdout.log")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"broker not ready after {timeout}s; see {self.directory}/server.log")
            time.sleep(0.3)
        return self

    def _ready(self) -> bool:
        """The broker answers a metadata request (a listening socket alone is not enough)."""
        if not answers(self.port):
            return False
        try:
            from confluent_kafka.admin import AdminClient
        except ImportError:  # before the Python packages are installed: the socket will do
            return True
        try:
            metadata = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout``."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("fetch", "start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="broker data, config and logs")
    parser.add_argument("--port", type=int, default=None, help="client port (default: free, then remembered)")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(fetch())
        return 0
    broker = KafkaBroker(args.dir, args.port)
    if args.command == "start":
        started = time.monotonic()
        broker.start()
        print(f"Kafka {VERSION} ready at {broker.bootstrap} in {time.monotonic() - started:.1f}s")
        print(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
    elif args.command == "stop":
        broker.stop()
    else:
        running = broker.pid() is not None and answers(broker.port)
        print(f"{'running' if running else 'stopped'}: {broker.bootstrap}")
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
