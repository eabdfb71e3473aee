"""``edgewatch demo``, ``train``, ``evaluate`` and ``bench`` (everything, ``scoring``,
``pipeline``).

Registered through the ``edgewatch.commands`` entry point. This module imports nothing heavy:
each command loads the training stack when it runs, and says which extra to install when the
stack is missing.
"""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from edgewatch.agent.commands import speed
from edgewatch.export.bench import cli as bench_cli

INSTALL_HINT = "pip install 'edgewatch-tools[train]'"


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    demo = commands.add_parser(
        "demo", help="train on a simulated fan, then watch it catch three faults"
    )
    demo.add_argument(
        "--out", type=Path, default=Path("edgewatch-demo"), help="where to write its files"
    )
    demo.add_argument(
        "--speed", type=speed, default=10.0, help="N times real time, or max (default 10)"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.add_argument("-q", "--quiet", action="store_true", help="no training progress")
    demo.set_defaults(handler=_guarded("demo", _demo))
    train = commands.add_parser("train", help="train a model and write a verified bundle")
    train.add_argument("config", type=Path, help="the training config (TOML)")
    train.add_argument("-o", "--out", type=Path, required=True, help="bundle directory or .tar")
    train.add_argument("--sign-key", type=Path, help="Ed25519 private key (PEM) to sign with")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    train.add_argument(
        "--feedback",
        type=Path,
        action="append",
        default=[],
        help="labels exported by `edgewatch feedback export` (CSV); may be repeated",
    )
    train.set_defaults(handler=_guarded("train", _train))
    evaluate = commands.add_parser(
        "evaluate", help="score labelled data with a bundle, or run a benchmark protocol"
    )
    evaluate.add_argument("--protocol", choices=["skab"], help="a named benchmark protocol")
    evaluate.add_argument("--bundle", type=Path, help="the bundle to evaluate")
    evaluate.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=[],
        help="data files with a label column (CSV), or the SKAB folder",
    )
    evaluate.add_argument(
        "--normal", type=Path, nargs="+", default=[], help="files whose every row is normal"
    )
    evaluate.add_argument(
        "--anomalous", type=Path, nargs="+", default=[], help="files whose every row is anomalous"
    )
    evaluate.add_argument(
        "--at-far",
        type=float,
        default=0.01,
        help="report the detection rate at this false-alarm rate (default 0.01)",
    )
    evaluate.add_argument(
        "--time-order",
        choices=["error", "sort", "drop"],
        default="error",
        help="a row whose time goes back: refuse the file, sort it, or drop the row",
    )
    evaluate.add_argument("--models", help="SKAB: comma-separated methods (default: all)")
    evaluate.add_argument("--files", type=int, help="SKAB: only the first N files")
    evaluate.add_argument(
        "--tune",
        metavar="METHOD",
        help="SKAB: run METHOD's tuning grid on the files at even positions and show its choice",
    )
    evaluate.add_argument("--label", default="anomaly", help="the data's label column")
    evaluate.add_argument("--report", type=Path, help="write a Markdown report with plots here")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    evaluate.set_defaults(handler=_guarded("evaluate", _evaluate))
    bench_cli.add(commands, _guarded)


def _guarded(
    name: str, command: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """``command`` with its expected failures as one line each on stderr, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ModuleNotFoundError as e:
            print(
                f"edgewatch {name}: needs {e.name}; install the training extra: {INSTALL_HINT}",
                file=sys.stderr,
            )
            return 2
        except (ValueError, OSError) as e:
            for line in str(e).splitlines():
                print(f"edgewatch {name}: {line}", file=sys.stderr)
            return 2

    return run


def _progress(quiet: bool) -> Callable[[str], None]:
    def show(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return show


def _demo(args: argparse.Namespace) -> int:
    from edgewatch.export import demo

    def show(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    progress = _progress(args.quiet)
    summary = demo.run(args.out, args.speed, show, lambda line: progress("    " + line))
    if args.json:
        print(json.dumps(summary))
    return 0


def _train(args: argparse.Namespace) -> int:
    from edgewatch.export.bundle import load_private_key
    from edgewatch.export.config import load_config
    from edgewatch.export.train import train

    config = load_config(args.config)
    key = load_private_key(args.sign_key) if args.sign_key else None
    train(config, args.out, key, _progress(args.quiet), args.feedback)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if (args.protocol is None) == (args.bundle is None):
        raise ValueError("give either --protocol or --bundle")
    if args.protocol == "skab":
        if len(args.data) != 1 or args.normal or args.anomalous:
            raise ValueError("the SKAB protocol takes one --data: the SKAB folder")
        args.data = args.data[0]
        from edgewatch.export import skab

        if args.files is not None and args.files < 1:
            raise ValueError("--files must be at least 1")
        if args.tune is not None:
            if args.models is not None:
                raise ValueError("give either --models or --tune")
            tuned = skab.tune(args.data, args.tune, args.files, _progress(args.quiet))
            print(json.dumps(tuned) if args.json else skab.render_tuning(tuned))
            return 0
        names = args.models.split(",") if args.models else list(skab.METHODS)
        result = skab.run(args.data, names, args.files, _progress(args.quiet))
        print(json.dumps(result) if args.json else skab.render(result))
        return 0
    from edgewatch.export.evaluate import Source, evaluate_bundle, render

    sources = [Source(path) for path in args.data]
    sources += [Source(path, 0) for path in args.normal] + [
        Source(path, 1) for path in args.anomalous
    ]
    result = evaluate_bundle(
        args.bundle, sources, args.label, args.report, args.at_far, args.time_order
    )
    print(json.dumps(result) if args.json else render(result))
    return 0
