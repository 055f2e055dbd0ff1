"""``billing``: the command line. Errors from the domain are mapped here once: message + exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rating.errors import BillingError

EXIT_INPUT_ERROR = 2


def _simulate(args: argparse.Namespace) -> int:
    from billing.simulate import load_scenario, result_to_dict, simulate_in_memory

    scenario = load_scenario(Path(args.scenario))
    if args.stores == "embedded":
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billing", description="SmallBiznis usage-based billing engine")
    commands = parser.add_subparsers(dest="command", required=True)

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
    simulate.set_defaults(run=_simulate)

    demo = commands.add_parser("demo", help="a whole billing cycle at scale on the embedded chDB and PostgreSQL")
    demo.add_argument("--data-dir", default=".data/demo", help="where chDB and PostgreSQL keep the demo's data")
    demo.add_argument("--subscriptions", type=int, default=3000)
    demo.add_argument("--events", type=int, default=1_000_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BillingError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":
    sys.exit(main())
