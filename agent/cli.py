"""The ``edgewatch`` command line.

Commands that need the training extra (``demo``, ``train``, ``evaluate``, and ``bench`` but for
``bench kernels``) come from the ``edgewatch.commands`` entry points, so the agent never imports
the training code.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

from edgewatch.agent import commands as commands_
from edgewatch.agent import offline

Handler = Callable[[argparse.Namespace], int]
TOOLS = ("demo", "train", "evaluate", "bench", "simulate")
TOOLS_MISSING = (
    "a tool, not part of the gateway install: "
    "pip install 'edgewatch-tools[train]' (the tools/ folder of the repository)"
)


def _check_config(args: argparse.Namespace) -> int:
    from edgewatch.agent.config import ConfigError, load_config
    from edgewatch.agent.machines import bundled
    from edgewatch.agent.preflight import bundle_problems, problems

    try:
        config = load_config(args.file)
        found = problems(config)
        found += [] if found else bundle_problems(config)
    except ConfigError as e:
        found = str(e).splitlines()
    for line in found:
        print(f"{args.file}: {line}", file=sys.stderr)
    if found:
        return 2
    lanes = bundled(config)
    missing = [str(lane.path) for lane in lanes if not lane.path.exists()]
    learning = sum(m.learn is not None for m in config.machines)
    print(
        f"{args.file}: ok: {len(config.sources)} sources, {len(config.sinks)} sinks, "
        f"topics under {config.topics}; {len(lanes) - len(missing)} of {len(lanes)} bundles "
        "verified"
        + (f" (none yet at {', '.join(missing)})" if missing else "")
        + (f"; {learning} machines learn on site" if learning else "")
    )
    return 0


def _parser() -> tuple[argparse.ArgumentParser, "argparse._SubParsersAction[Any]"]:
    parser = argparse.ArgumentParser(
        prog="edgewatch", description="Anomaly detection for industrial machines, on the gateway."
    )
    parser.add_argument("--version", action="version", version=f"edgewatch {version('edgewatch')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check-config", help="validate an agent config, one line a problem")
    check.add_argument("file", type=Path, help="the agent config (TOML)")
    check.set_defaults(handler=_check_config)
    commands_.add(commands)
    offline.add(commands)
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    if not argv or argv[0] not in commands.choices:
        for plugin in entry_points(group="edgewatch.commands"):
            plugin.load()(commands)
    if argv and argv[0] in TOOLS and argv[0] not in commands.choices:
        print(f"edgewatch {argv[0]}: {TOOLS_MISSING}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
