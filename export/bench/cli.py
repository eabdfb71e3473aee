"""``edgewatch bench``: with no target, everything; or one of ``kernels``, ``fuzz``,
``scoring``, ``pipeline``, ``learning``, ``gateway``, ``drift`` and ``protocols``. Each loads
what it measures only when it runs."""

import argparse
import json
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def add(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    guarded: Callable[[str, Handler], Handler],
) -> None:
    """The ``bench`` command and its targets; ``guarded`` turns a handler's expected failures
    into one line each on stderr."""
    everything = commands.add_parser(
        "bench", help="measure speed on this machine; with no target, everything"
    )
    targets = everything.add_subparsers(dest="target", metavar="TARGET")
    kernels = targets.add_parser(
        "kernels", help="the Numba featurizer against batched NumPy and the FFT alone"
    )
    kernels.add_argument("--json", action="store_true", help="print one JSON object")
    kernels.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    kernels.set_defaults(handler=guarded("bench kernels", _kernels))
    fuzz = targets.add_parser(
        "fuzz", help="every parser of hostile input against mutated inputs; exit 1 on an escape"
    )
    fuzz.add_argument("--inputs", type=int, default=1_000_000, help="per parser (default 10^6)")
    fuzz.add_argument("--seed", type=int, default=0, help="of the mutations (default 0)")
    fuzz.add_argument("--only", nargs="*", default=[], metavar="PARSER", help="these parsers")
    fuzz.add_argument("--json", action="store_true", help="print one JSON object")
    fuzz.set_defaults(handler=guarded("bench fuzz", _fuzz))
    everything.add_argument("--rate", type=float, default=25600.0, help="the sensor's sample rate")
    everything.add_argument("--window", type=int, default=1024, help="samples per window")
    everything.add_argument("--hop", type=int, default=512, help="samples between windows")
    everything.add_argument("--axes", type=int, default=3, choices=(1, 2, 3), help="channels")
    everything.add_argument(
        "--model", default="isolation_forest", help="the model kind (as in a training config)"
    )
    everything.add_argument("--json", action="store_true", help="print one JSON object")
    everything.add_argument("--rounds", type=int, default=3, help="capacity rounds (median)")
    everything.set_defaults(handler=guarded("bench", _everything))
    scoring = targets.add_parser("scoring", help="model scoring latency and throughput")
    scoring.add_argument("--json", action="store_true", help="print one JSON object")
    scoring.add_argument("--rounds", type=int, default=2000, help="timed one-row calls per model")
    scoring.set_defaults(handler=guarded("bench scoring", _scoring))
    pipeline = targets.add_parser(
        "pipeline", help="sensors per core, MQTT ingest, alert latency, memory and start-up"
    )
    pipeline.add_argument("--json", action="store_true", help="print one JSON object")
    pipeline.add_argument("--rounds", type=int, default=3, help="capacity rounds (median)")
    pipeline.set_defaults(handler=guarded("bench pipeline", _pipeline))
    learning = targets.add_parser(
        "learning", help="on-site learning: fit time, CPU while learning, out-of-sample FAR"
    )
    learning.add_argument("--json", action="store_true", help="print one JSON object")
    learning.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    learning.set_defaults(handler=guarded("bench learning", _learning))
    gateway = targets.add_parser(
        "gateway", help="ten simulated machines learning on site, then a day with faults"
    )
    gateway.add_argument("--json", action="store_true", help="print one JSON object")
    gateway.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    gateway.add_argument("--seed", type=int, default=0, help="of the simulation (default 0)")
    gateway.set_defaults(handler=guarded("bench gateway", _gateway))
    drift = targets.add_parser(
        "drift", help="false drift signals on a month of normal running, default settings"
    )
    drift.add_argument("--json", action="store_true", help="print one JSON object")
    drift.add_argument("--days", type=float, default=30.0, help="simulated days (default 30)")
    drift.add_argument("--seed", type=int, default=0, help="of the simulation (default 0)")
    drift.set_defaults(handler=guarded("bench drift", _drift))
    protocols = targets.add_parser(
        "protocols", help="the plant protocols' ingest cost: Modbus reads per CPU second"
    )
    protocols.add_argument("--json", action="store_true", help="print one JSON object")
    protocols.add_argument("--rounds", type=int, default=5, help="timed rounds (median)")
    protocols.set_defaults(handler=guarded("bench protocols", _protocols))


def _kernels(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise ValueError("--rounds must be at least 1")
    from edgewatch.export.bench import kernels

    return _show(args, kernels, kernels.run(rounds=args.rounds))


def _fuzz(args: argparse.Namespace) -> int:
    from edgewatch.export.bench import fuzz

    unknown = sorted(set(args.only) - set(fuzz.PARSERS))
    if args.inputs < 1 or unknown:
        raise ValueError(
            "--inputs must be at least 1, and --only one of " + ", ".join(fuzz.PARSERS)
        )
    result = fuzz.run_all(args.inputs, args.seed, tuple(args.only))
    _show(args, fuzz, result)
    return 1 if any(r["escapes"] for r in result.values()) else 0


def _everything(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise ValueError("--rounds must be at least 1")
    from edgewatch.export.bench.pipeline import Sensor

    sensor = Sensor(args.rate, args.window, args.hop, args.axes, args.model)
    sensor.training()
    from edgewatch.export.bench import summary

    return _show(args, summary, summary.run(sensor, args.rounds))


def _scoring(args: argparse.Namespace) -> int:
    if args.rounds < 100:
        raise ValueError("--rounds must be at least 100, for a p99")
    from edgewatch.export.bench import scoring

    return _show(args, scoring, scoring.run(rounds=args.rounds))


def _pipeline(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise ValueError("--rounds must be at least 1")
    from edgewatch.export.bench import pipeline

    return _show(args, pipeline, pipeline.run(rounds=args.rounds))


def _learning(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise ValueError("--rounds must be at least 1")
    from edgewatch.export.bench import learning

    return _show(args, learning, learning.run(rounds=args.rounds))


def _gateway(args: argparse.Namespace) -> int:
    if not 6 <= args.hours <= 24 * 30:
        raise ValueError("--hours must be 6 to 720: an hour to learn, then faults from hour 4")
    from edgewatch.export.bench import gateway

    return _show(args, gateway, gateway.run(args.hours * 3600, args.seed))


def _drift(args: argparse.Namespace) -> int:
    if not 0 < args.days <= 365:
        raise ValueError("--days must be above 0 and at most 365")
    from edgewatch.export.bench import drift

    return _show(args, drift, drift.run(args.days, args.seed))


def _protocols(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise ValueError("--rounds must be at least 1")
    from edgewatch.export.bench import protocols

    return _show(args, protocols, protocols.run(args.rounds))


def _show(args: argparse.Namespace, bench: Any, result: dict[str, Any]) -> int:
    """``result`` as one JSON object with ``--json``, else as ``bench`` renders it."""
    print(json.dumps(result) if args.json else bench.render(result))
    return 0
