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

from agent import commands as commands_

Handler = Callable[[argparse.Namespace], int]


def _bench_kernels(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        print("edgewatch bench kernels: --rounds must be at least 1", file=sys.stderr)
        return 2
    from agent.bench import kernels

    result = kernels.run(rounds=args.rounds)
    print(json.dumps(result) if args.json else kernels.render(result))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load_config
    from agent.preflight import bundle_problem, problems

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
