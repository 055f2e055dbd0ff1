"""``billing worker`` (``--role all``): the whole billing loop on one machine, one process per role.

usage (Faust: usage.events → dedup → windows), rater (sink into the usage store, the calendar on
the clock, final RatingResults; it owns embedded chDB), invoicer (rating.results → PostgreSQL) and
relay (the ledger's outbox → invoice.finalized and the catalog topics). Each role is the same
command one would run on its own (``billing worker --role usage``, ``billing rater``, ``billing
invoicer``, ``billing relay``), so a deployment can split them across machines without changing
anything. A role that exits is restarted (after a pause that grows to 30 s); SIGTERM or SIGINT
stops every role gracefully (each commits what it finished) and then the loop.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.kafka.security import role_environment

log = logging.getLogger("billing.worker")

ROLES = ("usage", "rater", "invoicer", "relay", "payments")


def role_commands(args: Any) -> dict[str, list[str]]:
    """The command line of each role, sharing the loop's cluster, prefix and data directory."""
    data = Path(args.data_dir)
    common = ["--log-level", "info"]
    if args.bootstrap:
        common += ["--bootstrap", args.bootstrap]
    prefix = ["--topic-prefix", args.topic_prefix]
    cli = [sys.executable, "-m", "billing.cli"]
    rater = [*cli, "rater", *common, *prefix, "--data-dir", str(data / "usage"), "--ledger-dir", str(data / "ledger")]
    rater += ["--usage-group", args.app_id, "--grace-period", args.grace_period, "--partitions", str(args.partitions)]
    if args.grpc_port is not None:
        rater += ["--grpc-port", str(args.grpc_port)]
    if args.clock_file:
        rater += ["--clock-file", args.clock_file]
    usage = [*cli, "worker", "--role", "usage", *prefix, "--data-dir", str(data / "worker"), "--app-id", args.app_id]
    usage += ["--partitions", str(args.partitions), "--store", args.store, "--retention-days", str(args.retention_days)]
    if args.bootstrap:
        usage += ["--bootstrap", args.bootstrap]
    invoicer = [*cli, "invoicer", *common, *prefix, "--data-dir", str(data / "ledger")]
    invoicer += ["--partitions", str(args.partitions)]
    relay = [*cli, "relay", *common, *prefix, "--data-dir", str(data / "ledger"), "--partitions", str(args.partitions)]
    payments = [*cli, "worker", "--role", "payments", "--log-level", "info", "--data-dir", str(data / "ledger")]
    if args.clock_file:
        payments += ["--clock-file", args.clock_file]
    every = {"rater": rater, "invoicer": invoicer, "relay": relay, "payments": payments}
    chosen = args.roles.split(",")
    if args.api_port is not None:  # billing serve on the loop's ledger, as one more role
        every["api"] = [*cli, "serve", "--port", str(args.api_port), "--data-dir", str(data / "ledger"), *prefix]
        every["api"] += ["--usage-dir", "off"]  # the rater owns the embedded store; CLICKHOUSE_URL shares a server
        chosen.append("api")
    processes = args.processes or default_processes(args.partitions)
    commands = usage_processes(usage, processes, data / "worker") if "usage" in chosen else {}
    return {**commands, **{role: every[role] for role in chosen if role != "usage"}}


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the supervisor dies, however it dies (Linux), so
    a killed supervisor never leaves roles running on their own."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError):  # not Linux: the roles outlive a killed supervisor
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def default_processes(partitions: int) -> int:
    """One usage worker process per core, never more than partitions to share."""
    return max(1, min(os.cpu_count() or 1, partitions))


def run_usage_processes(args: Any) -> int:
    """``billing worker --role usage --processes N``: N workers of one group, supervised."""
    from billing.streaming import logging_setup, stop_on_signals

    logging_setup(args.log_level)
    command = [sys.executable, "-m", "billing.cli", *sys.argv[1:]]
    data = Path(args.data_dir)
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    commands = usage_processes(command, args.processes, data, args.instance_id)
    commands = with_metrics_ports(commands, args.metrics_port, args.metrics_host)
    roles = [Role(name, own, logs / f"{name}.log") for name, own in commands.items()]
    supervise(roles, stop_on_signals())
    return 0


def with_metrics_ports(commands: dict[str, list[str]], first_port: int | None, host: str) -> dict[str, list[str]]:
    """Each role's command with a metrics port of its own: ``first_port`` for the first role, then
    one more per role in order (a port is one process's; roles share a machine). None: unchanged."""
    if first_port is None:
        return commands
    ported = {}
    for n, (name, command) in enumerate(commands.items()):
        ported[name] = [*command, "--metrics-port", str(first_port + n), "--metrics-host", host]
        log.info("role %s: metrics on http://%s:%d/metrics", name, host, first_port + n)
    return ported


def usage_processes(
    command: list[str], processes: int, data_dir: Path, instance_id: str | None = None
) -> dict[str, list[str]]:
    """``processes`` copies of a usage worker's command line, each with its own data directory
    (RocksDB locks it) and ``--processes 1``: members of one consumer group sharing the partitions.
    Later options win in argparse, so the copies append theirs."""
    if processes <= 1:
        return {"usage": [*command, "--processes", "1"]}
    roles = {}
    for n in range(processes):
        own = [*command, "--processes", "1", "--data-dir", str(data_dir / f"usage-{n}")]
        if instance_id:
            own += ["--instance-id", f"{instance_id}-{n}"]
        roles[f"usage-{n}"] = own
    return roles


@dataclass
class Role:
    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0

    def start(self) -> None:
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                self.command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=role_environment(self.name, os.environ),  # its own Kafka principal, if given
                preexec_fn=_die_with_parent,
            )
        self.started_at = time.monotonic()
        principal = role_environment(self.name, os.environ).get("KAFKA_SASL_USERNAME")
        kafka = f", kafka as {principal}" if principal else ""
        log.info("%s started (pid %s), log %s%s", self.name, self.process.pid, self.log_path, kafka)


def run_loop(args: Any) -> int:
    from billing.streaming import logging_setup, stop_on_signals

    logging_setup(args.log_level)
    unknown = set(args.roles.split(",")) - set(ROLES)
    if unknown:
        print(f"error: --roles: unknown role(s) {sorted(unknown)}; choose from {', '.join(ROLES)}", file=sys.stderr)
        return 2
    from billing.dlq_retention import dlq_retention_ms
    from billing.streaming import bootstrap_servers
    from streams.kafka.topics import OUTBOX_TOPICS, PIPELINE_TOPICS, ensure_topics

    # every topic of the loop before any role starts: Faust's agents and the sink's subscription
    # fail on a topic that does not exist yet, and the catalog topics must be created compacted
    topics = [args.topic_prefix + t for t in dict.fromkeys((*PIPELINE_TOPICS, *OUTBOX_TOPICS))]
    ensure_topics(
        bootstrap_servers(args.bootstrap), args.partitions, topics=topics, dlq_retention_ms=dlq_retention_ms()
    )
    # the usage worker's state topic too (the worker creates it as well; one place less to race)
    from streams.aggregate.usage_state import STATE_TOPIC_CONFIG, state_topic

    servers = bootstrap_servers(args.bootstrap)
    ensure_topics(servers, args.partitions, topics=[state_topic(args.app_id)], config=STATE_TOPIC_CONFIG)
    logs = Path(args.data_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    commands = with_metrics_ports(role_commands(args), args.metrics_port, args.metrics_host)
    roles = [Role(name, command, logs / f"{name}.log") for name, command in commands.items()]
    stopping = stop_on_signals()
    relay = next((role for role in roles if role.name == "relay"), None)
    if relay is not None:
        # publish what the ledger holds before the usage worker reads events: a subscription
        # applied just before the loop starts must be in the catalog topics, not unknown
        with open(relay.log_path, "ab") as output:
            subprocess.run(
                [*relay.command, "--once"],
                stdout=output,
                stderr=subprocess.STDOUT,
                check=True,
                env=role_environment(relay.name, os.environ),
            )
    supervise(roles, stopping)
    return 0


def supervise(roles: list[Role], stopping: Any) -> None:
    """Start every role and restart one that exits (after a pause that grows to 30 s) until
    ``stopping()``; then stop them all gracefully (SIGTERM, 30 s, then SIGKILL)."""
    for role in roles:
        role.start()
    try:
        while not stopping():
            time.sleep(0.5)
            for role in roles:
                assert role.process is not None
                status = role.process.poll()
                if status is None or stopping():
                    continue
                pause = min(30.0, 2.0**role.restarts)
                if time.monotonic() - role.started_at > 10:
                    role.restarts = 0  # it had been running: a fresh failure, not a crash loop
                    pause = 1.0
                log.warning("%s exited with status %s; restarting in %.0f s", role.name, status, pause)
                time.sleep(pause)
                role.restarts += 1
                role.start()
    finally:
        for role in roles:
            if role.process is not None and role.process.poll() is None:
                role.process.terminate()
        for role in roles:
            if role.process is None:
                continue
            try:
                role.process.wait(30)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in 30 s; killing it", role.name)
                role.process.kill()
                role.process.wait()
