"""``billing``: the command line. Errors from the domain are mapped here once: message + exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rating.errors import BillingError

EXIT_INPUT_ERROR = 2
EXIT_UNAVAILABLE = 1
START_A_BROKER = "start one with `python3.11 ops/kafka.py start` or set --bootstrap / $KAFKA_BOOTSTRAP_SERVERS"


def _simulate(args: argparse.Namespace) -> int:
    from billing.simulate import load_scenario, result_to_dict, simulate_in_memory
    from billing.streaming import tune_gc

    scenario = load_scenario(Path(args.scenario))
    tune_gc()
    if args.via == "kafka":
        from billing.simulate.embedded import simulate_embedded
        from billing.streaming import bootstrap_servers

        result = simulate_embedded(
            scenario, args.data_dir, kafka=bootstrap_servers(args.bootstrap), scenario_file=Path(args.scenario)
        )
    elif args.stores == "embedded":
        from billing.simulate.embedded import simulate_embedded

        result = simulate_embedded(scenario, args.data_dir)
    else:
        result = simulate_in_memory(scenario)
    output = result_to_dict(result)
    if args.json:
        json.dump(output, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from billing.report import print_invoices

        print_invoices(output["invoices"], output["dead_letters"])
    return 0


def _demo(args: argparse.Namespace) -> int:
    from billing.demo import run_demo

    run_demo(
        data_dir=Path(args.data_dir),
        subscriptions=args.subscriptions,
        events=args.events,
        seed=args.seed,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    # a pipeline of its own (--topic-prefix) gets its own consumer group and state topics too:
    # sharing them would recover another pipeline's dedup state
    args.app_id = args.app_id or args.topic_prefix + "billing-usage"
    if args.processes is not None and args.processes < 1:
        print(f"error: --processes must be at least 1, got {args.processes}", file=sys.stderr)
        return 2
    role = args.role or ("usage" if args.catalog else "all")
    if role == "payments":
        from billing.payments.command import run_payments

        return run_payments(args)
    if role == "all":
        from billing.loop import run_loop

        args.data_dir = args.data_dir or ".data"
        return run_loop(args)
    from billing.loop import default_processes, run_usage_processes
    from billing.streaming import run_worker

    args.data_dir = args.data_dir or ".data/worker"
    args.processes = args.processes or default_processes(args.partitions)
    if args.processes > 1:
        return run_usage_processes(args)
    return run_worker(args)


def _sink(args: argparse.Namespace) -> int:
    from billing.streaming import run_sink

    return run_sink(args)


def _invoicer(args: argparse.Namespace) -> int:
    from billing.invoice.command import run_invoicer

    return run_invoicer(args)


def _query(args: argparse.Namespace) -> int:
    from billing.query import print_result, run_query

    columns, rows = run_query(args.store, args.sql, Path(args.data_dir), write=args.write)
    print_result(columns, rows, args.json)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from billing.clock import wall_ms
    from billing.explain import explain
    from billing.simulate.fields import instant
    from billing.simulate.scenario_file import load_scenario
    from billing.stores import open_usage_store
    from billing.streaming import bootstrap_servers, catalog_of
    from rating.periods import epoch_ms

    start, end = instant(args.start, "--from"), instant(args.end, "--to")
    store = open_usage_store(Path(args.data_dir))
    result = explain(
        bootstrap_servers(args.bootstrap),
        catalog_of(load_scenario(Path(args.catalog))),
        store,
        args.subscription,
        args.metric,
        epoch_ms(start),
        epoch_ms(end),
        wall_ms(),  # the worker's future-skew check runs on the system clock too
    )
    table = Table("stage", "count / quantity", title=f"{args.subscription} {args.metric} [{args.start}, {args.end})")
    for stage, value in result.rows():
        table.add_row(stage, value)
    Console().print(table)
    return 0


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``billing simulate``: a scenario file on a test clock, in memory, embedded or through Kafka."""
    simulate = commands.add_parser("simulate", help="run a scenario file on a test clock and print its invoices")
    simulate.add_argument("scenario", help="scenario file, YAML or JSON (design section 5)")
    simulate.add_argument("--json", action="store_true", help="print {'invoices': [...]} as JSON")
    simulate.add_argument(
        "--stores",
        choices=("memory", "embedded"),
        default="memory",
        help="memory (default, fast) or embedded: chDB and PostgreSQL in a fresh temporary directory",
    )
    simulate.add_argument("--data-dir", default=None, help="with --stores embedded: keep the stores here")
    simulate.add_argument(
        "--via",
        choices=("inprocess", "kafka"),
        default="inprocess",
        help="kafka: usage and invoices through the streaming loop (a worker, the sink, the rating agent and "
        "the invoice worker) on a running broker, with embedded stores",
    )
    simulate.add_argument("--bootstrap", default=None, help="with --via kafka (default $KAFKA_BOOTSTRAP_SERVERS)")
    simulate.set_defaults(run=_simulate)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``billing demo``: a whole billing cycle at scale on the embedded stores."""
    demo = commands.add_parser("demo", help="a whole billing cycle at scale on the embedded chDB and PostgreSQL")
    demo.add_argument("--data-dir", default=".data/demo", help="where chDB and PostgreSQL keep the demo's data")
    demo.add_argument("--subscriptions", type=int, default=3000)
    demo.add_argument("--events", type=int, default=1_000_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=_demo)


def _add_worker(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``billing worker``: the billing loop, or with ``--role usage`` the Faust usage worker alone."""
    worker = commands.add_parser(
        "worker", help="the billing loop: usage worker, rater, invoicer and relay (--role usage: the Faust worker only)"
    )
    worker.add_argument(
        "--role",
        choices=("all", "usage", "payments"),
        default=None,
        help="all: every role of --roles as a process each; usage: the Faust usage worker (default: usage "
        "with --catalog, else all); payments: the payment worker (charges, retries, overdue; docs/payments.md)",
    )
    worker.add_argument(
        "--interval", type=float, default=10.0, help="with --role payments: seconds between the worker's passes"
    )
    worker.add_argument(
        "--once", action="store_true", help="with --role payments: one pass, its report printed as JSON, then exit"
    )
    worker.add_argument("--roles", default="usage,rater,invoicer,relay", help="with --role all: which roles to run")
    worker.add_argument("--grace-period", default="0s", help="with --role all: the rater's --grace-period")
    worker.add_argument("--grpc-port", type=int, default=None, help="with --role all: the rater's RatingService port")
    worker.add_argument(
        "--api-port", type=int, default=None, help="with --role all: also run billing serve (the API) on this port"
    )
    worker.add_argument(
        "--clock-file", default=None, help="read 'now' from this file (tests, rehearsals); with --role all, the rater's"
    )
    worker.add_argument(
        "--purge-interval",
        type=float,
        default=600.0,
        help="seconds between purges of dedup state older than --retention-days",
    )
    worker.add_argument("--catalog", default=None, help="scenario file whose metrics and subscriptions to use")
    worker.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    worker.add_argument("--partitions", type=int, default=6, help="partitions of usage.events")
    worker.add_argument(
        "--store",
        choices=("memory", "rocksdb"),
        default="rocksdb",
        help="rocksdb: each partition's state also on local disk, so a restart reads only the tail of the "
        "state topic; memory: restored from the state topic on every start",
    )
    worker.add_argument(
        "--data-dir", default=None, help="RocksDB state (.data/worker); with --role all, every role's data (.data)"
    )
    worker.add_argument(
        "--processes",
        type=int,
        default=None,
        help="usage worker processes, members of one consumer group (default: one per core, at most "
        "--partitions); each has its own directory under --data-dir",
    )
    worker.add_argument("--batch-max", type=int, default=2000, help="messages per processing batch")
    worker.add_argument(
        "--retention-days", type=int, default=40, help="dedup memory; older events are dead-lettered (event time)"
    )
    from streams.metrics import add_metrics_arguments

    add_metrics_arguments(worker)
    worker.add_argument(
        "--app-id",
        default=None,
        help="consumer group, transactional ids and state topic <app id>-state "
        "(default: the topic prefix + billing-usage)",
    )
    worker.add_argument("--topic-prefix", default="", help="prefix of every topic name (separate pipelines)")
    worker.add_argument(
        "--commit-interval", type=float, default=1.0, help="seconds between offset commits (outputs flushed first)"
    )
    worker.add_argument("--instance-id", default=None, help="static group membership id (faster restarts)")
    worker.add_argument(
        "--catalog-refresh",
        type=float,
        default=1.0,
        help="without --catalog: seconds between reads of new catalog.terms/catalog.subscriptions records "
        "(an unknown subscription or metric makes the worker catch up first either way)",
    )
    worker.add_argument("--log-level", default="warning")
    worker.set_defaults(run=_worker)


def _add_sink(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``billing sink``: Kafka into the usage store."""
    sink = commands.add_parser("sink", help="write window totals and accepted events from Kafka into ClickHouse")
    sink.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    sink.add_argument("--data-dir", default=".data/sink", help="embedded chDB lives here unless $CLICKHOUSE_URL")
    from streams.metrics import add_metrics_arguments

    add_metrics_arguments(sink)
    sink.add_argument("--log-level", default="info")
    sink.add_argument("--topic-prefix", default="", help="the worker's --topic-prefix")
    sink.set_defaults(run=_sink)


def _add_invoicer(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``billing invoicer``: rating results into invoices in the ledger."""
    invoicer = commands.add_parser("invoicer", help="finalize invoices from rating.results into PostgreSQL")
    invoicer.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)"
    )
    invoicer.add_argument(
        "--data-dir",
        default=".data/ledger",
        help="embedded PostgreSQL here unless $DATABASE_URL (the default is catalog's, relay's and serve's)",
    )
    invoicer.add_argument("--partitions", type=int, default=6, help="partitions of rating.results if it is created")
    invoicer.add_argument("--batch-max", type=int, default=500, help="messages per ledger transaction")
    from streams.metrics import add_metrics_arguments

    add_metrics_arguments(invoicer)
    invoicer.add_argument("--log-level", default="info")
    invoicer.add_argument("--topic-prefix", default="", help="prefix of its topic names and consumer group")
    invoicer.set_defaults(run=_invoicer)


def _add_explain(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``billing explain``: counts by stage for one subscription, metric and window."""
    why = commands.add_parser("explain", help="why is usage X: counts by stage for a subscription and window")
    why.add_argument("subscription")
    why.add_argument("metric")
    why.add_argument("--from", dest="start", required=True, help="window start, RFC 3339")
    why.add_argument("--to", dest="end", required=True, help="window end (exclusive), RFC 3339")
    why.add_argument("--catalog", required=True, help="the scenario file the worker runs with")
    why.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    why.add_argument("--data-dir", default=".data/sink", help="the sink's embedded chDB (stop the sink first)")
    why.set_defaults(run=_explain)


def _add_query(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``billing query``: SQL on the usage store or the ledger."""
    query = commands.add_parser("query", help="run SQL on the usage store (ClickHouse) or the ledger (PostgreSQL)")
    query.add_argument("store", choices=("clickhouse", "postgres"))
    query.add_argument("sql")
    query.add_argument("--data-dir", default=".data/demo", help="embedded stores' directory (as given to demo)")
    query.add_argument("--json", action="store_true", help="one JSON object per row")
    query.add_argument(
        "--write",
        action="store_true",
        help="allow writes (as the owner, several statements, committed); without it a query is one "
        "read-only statement, on the embedded PostgreSQL as its read-only role",
    )
    query.set_defaults(run=_query)


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand, in the order ``billing --help`` lists them; the commands that live with
    their own module (produce, catalog, relay, rater, dlq) register themselves."""
    from billing.api.command import add_apikey_command, add_serve_command
    from billing.catalog_cli import add_catalog_command
    from billing.dlq import add_dlq_command
    from billing.pdf.command import add_invoices_command
    from billing.produce import add_produce_command
    from billing.publish.command import add_relay_command
    from billing.rate.command import add_rater_command
    from billing.rebuild import add_rebuild_command

    parser = argparse.ArgumentParser(prog="billing", description="SmallBiznis usage-based billing engine")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_simulate,
        _add_demo,
        _add_worker,
        _add_sink,
        _add_invoicer,
        add_produce_command,
        add_catalog_command,
        add_relay_command,
        add_rater_command,
        add_dlq_command,
        add_rebuild_command,
        add_serve_command,
        add_apikey_command,
        add_invoices_command,
        _add_explain,
        _add_query,
    ):
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from streams.clickhouse.ownership import StoreBusy
    from streams.kafka.security import KafkaAuthenticationFailed, KafkaSecurityError
    from streams.kafka.topics import BrokerUnavailable

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BillingError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except BrokerUnavailable as error:
        print(f"error: {error}; {START_A_BROKER}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except StoreBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KafkaSecurityError as error:
        print(f"error: Kafka security settings: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KafkaAuthenticationFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
