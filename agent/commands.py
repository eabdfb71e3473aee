"""The runtime's commands: ``run``, ``warmup``, ``feedback export``, ``relearn``, ``shadow``
and ``discover`` (``agent.offline`` has ``replay`` and ``learn``).

Each handler parses nothing itself (argparse has done that), turns the user's mistakes into one
line on stderr and an exit status of 2, and imports what it needs only when it runs.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgewatch.agent.config import AgentConfig, ConfigError, load_config

if TYPE_CHECKING:
    from edgewatch.agent.requests import Action


def fail(command: str, message: str) -> int:
    for line in message.splitlines():
        print(f"edgewatch {command}: {line}", file=sys.stderr)
    return 2


def _config(command: str, path: Path) -> AgentConfig | int:
    try:
        return load_config(path)
    except ConfigError as e:
        return fail(command, "\n".join(f"{path}: {line}" for line in str(e).splitlines()))


def run(args: argparse.Namespace) -> int:
    from edgewatch.agent import logs
    from edgewatch.agent.bundle import BundleError
    from edgewatch.agent.preflight import problems
    from edgewatch.agent.service import Agent
    from edgewatch.agent.sources.replay import RecordingError

    config = _config("run", args.config)
    if isinstance(config, int):
        return config
    found = problems(config)
    if found:
        return fail("run", "\n".join(f"{args.config}: {line}" for line in found))
    logs.setup(config.log_level)
    try:
        agent = Agent(config)
    except (BundleError, RecordingError, OSError) as e:
        return fail("run", str(e))
    return agent.run()


def speed(text: str) -> float | None:
    if text == "max":
        return None
    value = float(text)
    if not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError("speed must be above 0 and at most 10000, or max")
    return value


def warmup(args: argparse.Namespace) -> int:
    import numpy as np

    from edgewatch.agent.features import Bearing, FeatureSpec
    from edgewatch.agent.featurizer import Featurizer
    from edgewatch.kernels import native
    from edgewatch.kernels.cache import cache_dir

    began = time.perf_counter()
    # Any bearing compiles the same kernels: its geometry is an argument, not a constant.
    bearing = Bearing(balls=9, ball_diameter=7.94, pitch_diameter=39.04)
    specs = [
        FeatureSpec(
            kind="waveform",
            sample_rate=25600,
            window=1024,
            channels=["x"],
            bearing=bearing,
            shaft_hz=30.0,
        ),
        FeatureSpec(kind="process", channels=["a"]),
    ]
    noise = np.random.default_rng(0).normal(size=(2, 1, 1024)).astype(np.float32)
    for spec in specs:
        featurizer = Featurizer(spec)
        if spec.kind == "waveform":
            featurizer(noise[:1])
            featurizer(noise)
        else:
            featurizer(noise[0, :, :8].T.copy())
    seconds = time.perf_counter() - began
    print(f"edgewatch warmup: JIT kernels ready in {seconds:.2f} s ({cache_dir()})")
    began = time.perf_counter()
    try:
        path = native.build()
    except native.Unavailable as e:
        print(
            f"edgewatch warmup: warning: {e}\n"
            "edgewatch warmup: warning: the agent will run the JIT kernels instead, which keep "
            "Numba and LLVM in its memory: about 110 MB more than the native kernels",
            file=sys.stderr,
        )
        return 0
    print(f"edgewatch warmup: native kernels ready in {time.perf_counter() - began:.2f} s ({path})")
    return 0


def feedback_export(args: argparse.Namespace) -> int:
    from edgewatch.agent.feedback import FeedbackStore

    path = args.db
    if args.config is not None:
        config = _config("feedback export", args.config)
        if isinstance(config, int):
            return config
        path = config.feedback_db
    if not path.exists():
        return fail("feedback export", f"{path}: no feedback database")
    alerts, windows = FeedbackStore(path).export(args.out)
    print(
        f"edgewatch feedback export: {windows} windows of {alerts} labelled alerts to {args.out}",
        file=sys.stderr,
    )
    return 0


def relearn(args: argparse.Namespace) -> int:
    from edgewatch.agent.machines import Router

    config = _config("relearn", args.config)
    if isinstance(config, int):
        return config
    route = Router(config.machines, False, 1).claim(args.device)
    if route is None or not route.learns:
        return fail(
            "relearn",
            f"{args.config}: {args.device} is not a device of a machine that learns on site "
            "([[machines]] with learn): a shipped bundle is retrained offline",
        )
    return _ask("relearn", config, "relearn", args.device, f"{args.device}'s new baseline")


def shadow(args: argparse.Namespace) -> int:
    from edgewatch.agent.machines import DEFAULT, Router, machine_key

    config = _config("shadow", args.config)
    if isinstance(config, int):
        return config
    name = args.name
    named = next((m for m in config.machines if m.name == name and m.bundle), None)
    route = Router(config.machines, False, 1).claim(name)
    if name == DEFAULT and config.model.bundle is not None:
        lane = DEFAULT
    elif named is not None:
        lane = machine_key(name)
    elif route is not None and route.learns:
        lane = route.key
    else:
        return fail(
            "shadow",
            f"{args.config}: {name} is neither a machine with a bundle, nor a device that "
            "learns on site, nor the default model",
        )
    action: Action = "promote" if args.action == "promote" else "retire"
    return _ask("shadow", config, action, lane, f"the decision on {lane}'s candidate")


def _ask(command: str, config: AgentConfig, action: "Action", subject: str, what: str) -> int:
    from edgewatch.agent.requests import ask
    from edgewatch.agent.requests import subject as check

    try:
        check(subject.encode())
        path = ask(config.learning_dir, action, subject)
    except (ValueError, UnicodeEncodeError):
        return fail(command, f"{subject!r}: not a device or machine name")
    except OSError as e:
        return fail(command, f"the request cannot be left: {e}")
    print(
        f"edgewatch {command}: asked ({path}); the running agent takes {what} within a second",
        file=sys.stderr,
    )
    return 0


def discover(args: argparse.Namespace) -> int:
    from edgewatch.agent import discover

    if not (1 <= args.depth <= 64 and 1 <= args.limit <= 1_000_000):
        return fail("discover", "--depth must be 1 to 64, and --limit 1 to 1000000")
    return discover.run(args)


def add(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    run_ = commands.add_parser("run", help="run the agent")
    run_.add_argument("--config", type=Path, required=True, help="the agent config (TOML)")
    run_.set_defaults(handler=run)

    warm = commands.add_parser(
        "warmup", help="compile the kernels: the JIT cache, and the native module the agent runs"
    )
    warm.set_defaults(handler=warmup)

    feedback = commands.add_parser("feedback", help="operator labels")
    actions = feedback.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", help="the windows of labelled alerts with their features, as CSV"
    )
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--config", type=Path, help="the agent config naming the database")
    export.add_argument(
        "--db",
        type=Path,
        default=Path("/var/lib/edgewatch/feedback.sqlite"),
        help="or the database",
    )
    export.set_defaults(handler=feedback_export)

    again = commands.add_parser(
        "relearn", help="start a new on-site baseline for a device: its machine's normal moved"
    )
    again.add_argument("device", help="the device, as its blocks name it")
    again.add_argument("--config", type=Path, required=True, help="the agent config (TOML)")
    again.set_defaults(handler=relearn)

    trial = commands.add_parser("shadow", help="decide on a candidate model on trial")
    trial.add_argument("action", choices=["promote", "retire"])
    trial.add_argument("name", help="the machine, the device learned on site, or default")
    trial.add_argument("--config", type=Path, required=True, help="the agent config (TOML)")
    trial.set_defaults(handler=shadow)

    browse = commands.add_parser(
        "discover", help="browse an OPC UA server: its variables, as config for an opcua source"
    )
    browse.add_argument("url", help="opcua://HOST:PORT (or opc.tcp://HOST:PORT/PATH)")
    browse.add_argument("--depth", type=int, default=6, help="levels below Objects (6)")
    browse.add_argument("--limit", type=int, default=10_000, help="nodes browsed, at most")
    browse.add_argument("--security", choices=("None", "Sign", "SignAndEncrypt"))
    browse.add_argument("--certificate", type=Path, help="the client's certificate")
    browse.add_argument("--private-key", type=Path, help="the client's private key")
    browse.add_argument("--server-certificate", type=Path, help="the server's, to trust")
    browse.add_argument("--user", help="log in as this user")
    browse.add_argument("--password-file", type=Path, help="with the password in this file")
    browse.set_defaults(handler=discover)
