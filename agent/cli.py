"""The ``edgewatch`` command line.

Commands that need the training extra (``demo``, ``train``, ``evaluate``, and ``bench`` but for
``bench kernels``) come from the ``edgewatch.commands`` entry points, so the agent never imports
the training code.
"""

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points, version
from pathlib import Path

from edgewatch.agent import commands as commands_

Handler = Callable[[argparse.Namespace], int]


def _bench_kernels(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        print("edgewatch bench kernels: --rounds must be at least 1", file=sys.stderr)
        return 2
    from edgewatch.agent.bench import kernels

    result = kernels.run(rounds=args.rounds)
    print(json.dumps(result) if args.json else kernels.render(result))
    return 0


def _bench_fuzz(args: argparse.Namespace) -> int:
    from edgewatch.agent.bench import fuzz

    unknown = sorted(set(args.only) - set(fuzz.PARSERS))
    if args.inputs < 1 or unknown:
        print(
            "edgewatch bench fuzz: --inputs must be at least 1, and --only one of "
            + ", ".join(fuzz.PARSERS),
            file=sys.stderr,
        )
        return 2
    result = fuzz.run_all(args.inputs, args.seed, tuple(args.only))
    print(json.dumps(result) if args.json else fuzz.render(result))
    return 1 if any(r["escapes"] for r in result.values()) else 0


def _check_config(args: argparse.Namespace) -> int:
    from edgewatch.agent.config import ConfigError, load_config
    from edgewatch.agent.preflight import bundle_problem, problems

    try:
        config = load_config(args.file)
        found = problems(config)
        refused = None if found else bundle_problem(config)
    except ConfigError as e:
        found, refused = str(e).splitlines(), None
    found += [refused] if refused is not None else []
    for line in found:
        print(f"{args.file}: {line}", file=sys.stderr)
    if found:
        return 2
    bundle = config.model.bundle
    print(
        f"{args.file}: ok: {len(config.sources)} sources, {len(config.sinks)} sinks, "
        f"topics under {config.topics}; "
        + ("the bundle verified" if bundle.exists() else f"no bundle at {bundle} yet")
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgewatch", description="Anomaly detection for industrial machines, on the gateway."
    )
    parser.add_argument("--version", action="version", version=f"edgewatch {version('edgewatch')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check-config", help="validate an agent config, one line a problem")
    check.add_argument("file", type=Path, help="the agent config (TOML)")
    check.set_defaults(handler=_check_config)
    bench = commands.add_parser(
        "bench", help="measure speed on this machine; with no target, everything"
    )
    targets = bench.add_subparsers(dest="target", metavar="TARGET")
    kernels = targets.add_parser(
        "kernels", help="the Numba featurizer against batched NumPy and the FFT alone"
    )
    kernels.add_argument("--json", action="store_true", help="print one JSON object")
    kernels.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    kernels.set_defaults(handler=_bench_kernels)
    fuzz = targets.add_parser(
        "fuzz", help="every parser of hostile input against mutated inputs; exit 1 on an escape"
    )
    fuzz.add_argument("--inputs", type=int, default=1_000_000, help="per parser (default 10^6)")
    fuzz.add_argument("--seed", type=int, default=0, help="of the mutations (default 0)")
    fuzz.add_argument("--only", nargs="*", default=[], metavar="PARSER", help="these parsers")
    fuzz.add_argument("--json", action="store_true", help="print one JSON object")
    fuzz.set_defaults(handler=_bench_fuzz)
    commands_.add(commands)
    for plugin in entry_points(group="edgewatch.commands"):
        plugin.load()(commands, bench, targets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
