"""The ``edgewatch`` command line."""

import argparse
import json
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgewatch", description="Anomaly detection for industrial machines, on the gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = commands.add_parser("bench", help="measure speed on this machine")
    targets = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    kernels = targets.add_parser(
        "kernels", help="the Numba featurizer against batched NumPy and the FFT alone"
    )
    kernels.add_argument("--json", action="store_true", help="print one JSON object")
    kernels.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench" and args.target == "kernels":
        if args.rounds < 1:
            print("edgewatch bench kernels: --rounds must be at least 1", file=sys.stderr)
            return 2
        from agent.bench import kernels

        result = kernels.run(rounds=args.rounds)
        print(json.dumps(result) if args.json else kernels.render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
