"""A real single-node Apache Kafka 4.x broker (KRaft, combined broker + controller) on loopback,
run from the Maven Central jars. Used by the tests, CI, the benchmarks and developers.

    python ops/kafka.py fetch                       # copy the jars into the cache once
    python ops/kafka.py start [--dir D] [--port N]  # format storage (first time), start, wait, print bootstrap
    python ops/kafka.py status|stop [--dir D]
    python ops/kafka.py start --secure [--tls] [--partitions N]  # locked down (below); then:
    python ops/kafka.py env [--dir D] [--user ROLE]  # a principal's client variables, to eval

The jars come from ``ops/kafka/pom.xml`` (``mvn dependency:copy-dependencies``) into
``$KAFKA_CACHE_DIR`` (default ``~/.cache/smallbiznis-billing/kafka-<version>``); a changed pom
fetches again. Storage is formatted with ``kafka-storage format --standalone`` before the first
start, as Kafka 4.x requires. Python API: ``KafkaBroker(directory, port).start()`` / ``.stop()`` /
``.bootstrap``. Standard library only, so it runs before anything is installed.

``start --secure`` starts it locked down instead (docs/operations.md § Kafka security): clients
authenticate with SASL/SCRAM-SHA-512 (``--tls``: over TLS, SASL_SSL, with a CA made at first start
with ``openssl``), the StandardAuthorizer denies whatever no ACL allows, and each role of the
pipeline has its own principal with only the ACLs of ``streams/kafka/acls.py``. The SCRAM users are
created when the storage is formatted, with random passwords kept in ``<dir>/credentials`` (mode
0600); ``env --user ROLE`` prints a role's client variables, naming the password file, never the
password. The controller listener takes SASL/PLAIN from the same ``admin`` (a super user), so
nothing on the machine talks to the broker unauthenticated. The ACLs and the pipeline's topics are
created with confluent-kafka after start: the secure mode needs the project installed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
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
from typing import Any

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
ROOT = HERE.parent
SCRAM = "SCRAM-SHA-512"
ADMIN = "admin"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SECURITY_MODES = ("plaintext", "sasl", "sasl_ssl")
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


_quiet = logging.getLogger("ops_kafka.librdkafka")
"""librdkafka's log while a secure broker starts: connection refusals are expected, not news."""
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


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


def _acls() -> Any:
    """streams/kafka/acls.py of this checkout (the secure mode's principals, ACLs and topics)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import importlib

    try:
        importlib.import_module("confluent_kafka")
        return importlib.import_module("streams.kafka.acls")
    except ImportError as error:
        raise SystemExit(
            f"the secure broker needs the project installed ({error.name} is missing): run it with .venv/bin/python"
        ) from None


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is needed to make the TLS certificates of `start --tls`")
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certificates(tls: Path) -> None:
    """A self-signed CA (``ca.pem``) and the broker's key and certificate signed by it, for
    127.0.0.1 and localhost (``server.pem``: PKCS#8 key then certificate, a PEM keystore)."""
    tls.mkdir(parents=True, exist_ok=True)
    os.chmod(tls, 0o700)
    ca_key, ca, key, csr, cert = (tls / name for name in ("ca.key", "ca.pem", "server.key", "server.csr", "server.crt"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "365",
             "-subj", "/CN=smallbiznis-billing Kafka CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    extensions = tls / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "365", "-extfile", str(extensions))  # fmt: skip
    (tls / "server.pem").write_text(key.read_text() + cert.read_text())
    for path in (ca_key, key, tls / "server.pem"):
        os.chmod(path, 0o600)
    csr.unlink()


class KafkaBroker:
    """One broker whose data, config, log and pid live in ``directory``; ports are remembered there.

    ``security``: ``plaintext`` (the default, what the tests use), ``sasl`` (SASL_PLAINTEXT) or
    ``sasl_ssl``; remembered in the directory, so a restart or ``status`` needs not be told again."""

    def __init__(
        self, directory: Path | str = DEFAULT_DIR, port: int | None = None, security: str | None = None
    ) -> None:
        self.directory = Path(directory).resolve()
        self.securityfile = self.directory / "broker.security"
        remembered_mode = self.securityfile.read_text().strip() if self.securityfile.exists() else None
        if security is not None and security not in SECURITY_MODES:
            raise ValueError(f"security: {security!r} is not one of {', '.join(SECURITY_MODES)}")
        if security and remembered_mode and security != remembered_mode:
            raise ValueError(f"{self.directory} holds a {remembered_mode} broker, not {security}: use another --dir")
        self.security = security or remembered_mode or "plaintext"
        self.credentials = self.directory / "credentials"
        self.tls = self.directory / "tls"
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

    @property
    def secure(self) -> bool:
        return self.security != "plaintext"

    @property
    def protocol(self) -> str:
        return {"plaintext": "PLAINTEXT", "sasl": "SASL_PLAINTEXT", "sasl_ssl": "SASL_SSL"}[self.security]

    def users(self) -> list[str]:
        """The SCRAM users of a secure broker: ``admin`` and one per role."""
        return [ADMIN, *_acls().ROLES] if self.secure else []

    def password_file(self, user: str) -> Path:
        return self.credentials / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def client_env(self, user: str) -> dict[str, str]:
        """The environment a client connecting as ``user`` needs (streams/kafka/security.py): the
        password by its file, so that printing the environment prints no password."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        if not self.secure:
            return env
        if user not in self.users():
            raise ValueError(f"user: no {user!r} on this broker; choose from {', '.join(self.users())}")
        env |= {
            "KAFKA_SECURITY_PROTOCOL": self.protocol,
            "KAFKA_SASL_MECHANISM": SCRAM,
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD_FILE": str(self.password_file(user)),
        }
        if self.security == "sasl_ssl":
            env["KAFKA_SSL_CA_LOCATION"] = str(self.tls / "ca.pem")
        return env

    def client_config(self, user: str | None = ADMIN, password: str | None = None) -> dict[str, Any]:
        """A confluent-kafka configuration connecting as ``user`` (None: without credentials;
        ``password`` replaces the real one, to try a wrong one)."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if not self.secure:
            return config
        config["security.protocol"] = self.protocol if user is not None else self.protocol.removeprefix("SASL_")
        if self.security == "sasl_ssl":
            config["ssl.ca.location"] = str(self.tls / "ca.pem")
        if user is not None:
            config |= {"sasl.mechanism": SCRAM, "sasl.username": user, "sasl.password": password or self.password(user)}
        return config

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
        if self.secure:
            return self._admin_ready()
        try:
            return any(port == self.port for _, _, port in brokers(self.port))
        except (OSError, struct.error):
            return False

    def _admin_ready(self) -> bool:
        """A secure broker is ready when the admin can list the cluster's brokers over SASL."""
        _acls()  # a clear message without confluent-kafka
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                pass
            config = {**self.client_config(ADMIN), "socket.connection.setup.timeout.ms": 2000, "logger": _quiet}
            metadata = AdminClient(config).list_topics(timeout=3)
        except (OSError, KafkaException):
            return False
        return any(broker.port == self.port for broker in metadata.brokers.values())

    def _secure_lines(self) -> list[str]:
        admin = self.password(ADMIN)
        jaas = "org.apache.kafka.common.security"
        lines = [
            f"listeners=CLIENT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=CLIENT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=CLIENT",
            f"listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:{self.protocol}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM}",
            "sasl.mechanism.controller.protocol=PLAIN",
            f"listener.name.client.sasl.enabled.mechanisms={SCRAM}",
            f"listener.name.client.{SCRAM.lower()}.sasl.jaas.config={jaas}.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{admin}";',
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={jaas}.plain.PlainLoginModule required "
            f'username="{ADMIN}" password="{admin}" user_{ADMIN}="{admin}";',
            f"authorizer.class.name={AUTHORIZER}",
            f"super.users=User:{ADMIN}",
            "allow.everyone.if.no.acl.found=false",
        ]
        if self.security == "sasl_ssl":
            lines += [
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={self.tls / 'server.pem'}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.tls / 'ca.pem'}",
            ]
        return lines

    def _make_secrets(self) -> None:
        """Random passwords for the SCRAM users (first start) and, with TLS, the certificates."""
        self.credentials.mkdir(parents=True, exist_ok=True)
        os.chmod(self.credentials, 0o700)
        for user in self.users():
            path = self.password_file(user)
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_urlsafe(24) + "\n")
        if self.security == "sasl_ssl" and not (self.tls / "server.pem").exists():
            make_certificates(self.tls)

    def _configure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.secure:
            self._make_secrets()
        plain = [
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        ]
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            *(self._secure_lines() if self.secure else plain),
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
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the admin's password
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines))
        os.chmod(self.config, 0o600)
        level = os.environ.get("KAFKA_LOG_LEVEL", "WARN")
        (self.directory / "log4j2.properties").write_text(LOG4J2.format(log=self.log, level=level))
        self.portfile.write_text(f"{self.port} {self.controller_port}\n")
        self.securityfile.write_text(self.security + "\n")

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
                scram = [f"--add-scram={SCRAM}=[name={u},password={self.password(u)}]" for u in self.users()]
                subprocess.run(
                    self._java(
                        jars,
                        STORAGE_TOOL,
                        "format",
                        f"--cluster-id={cluster}",
                        "-c",
                        str(self.config),
                        "--standalone",
                        *scram,
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

    def lock_down(self, partitions: int = 1, topic_prefix: str = "") -> tuple[int, list[str]]:
        """As the admin, on a started secure broker: the pipeline's topics (those missing) and every
        role's ACLs (streams/kafka/acls.py). Returns the number of ACL bindings and the topics created."""
        from confluent_kafka.admin import AdminClient

        acls = _acls()
        admin = AdminClient(self.client_config(ADMIN))
        created = acls.provision_topics(admin, partitions, topic_prefix)
        return acls.apply_acls(admin, acls.role_acls(topic_prefix)), created

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
    parser.add_argument("command", choices=("fetch", "start", "stop", "status", "env"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="broker data, config and logs (.data/kafka)")
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one, then remembered)")
    parser.add_argument(
        "--secure", action="store_true", help="start: SASL/SCRAM-SHA-512 and ACLs, one principal per role"
    )
    parser.add_argument("--tls", action="store_true", help="start --secure: over TLS (SASL_SSL), with a CA made here")
    parser.add_argument("--partitions", type=int, default=1, help="start --secure: partitions of the topics it creates")
    parser.add_argument(
        "--topic-prefix", default="", help="start --secure: the pipeline's --topic-prefix (ACLs, topics)"
    )
    parser.add_argument("--user", default=ADMIN, help="env: the principal whose client variables to print (admin)")
    args = parser.parse_args(argv)
    if args.tls and not args.secure:
        parser.error("--tls needs --secure")
    if args.partitions < 1:
        parser.error(f"--partitions must be at least 1, got {args.partitions}")
    if args.command == "fetch":
        started = time.monotonic()
        jars = fetch()
        print(f"Kafka {VERSION}: {len(list(jars.glob('*.jar')))} jars in {jars} ({time.monotonic() - started:.1f}s)")
        return 0
    mode = ("sasl_ssl" if args.tls else "sasl") if args.secure else None
    try:
        broker = KafkaBroker(args.dir, args.port, mode if args.command == "start" else None)
    except ValueError as error:
        parser.error(str(error))
    if args.command == "start":
        started = time.monotonic()
        broker.start()
        print(f"Kafka {VERSION} ready at {broker.bootstrap} in {time.monotonic() - started:.1f}s (pid {broker.pid()})")
        if broker.secure:
            bindings, created = broker.lock_down(args.partitions, args.topic_prefix)
            roles = ", ".join(broker.users()[1:])
            print(f"{broker.protocol}: {bindings} ACL bindings for {roles}; {len(created)} topics created")
            print(f"each role's variables: python ops/kafka.py env --dir {args.dir} --user ROLE; as the admin:")
        for name, value in broker.client_env(ADMIN).items():
            print(f"export {name}={value}")
    elif args.command == "env":
        try:
            env = broker.client_env(args.user)
        except ValueError as error:
            parser.error(str(error))
        for name, value in env.items():
            print(f"export {name}={value}")
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
