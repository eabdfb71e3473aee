"""``edgewatch train``, ``edgewatch evaluate`` and ``edgewatch bench scoring``.

Registered through the ``edgewatch.commands`` entry point. This module imports nothing heavy:
each command loads the training stack when it runs, and says which extra to install when the
stack is missing.
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

INSTALL_HINT = "pip install 'edgewatch[train]'"


def add_commands(commands: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = commands.add_parser("train", help="train a model and write a verified bundle")
    train.add_argument("config", type=Path, help="the training config (TOML)")
    train.add_argument("-o", "--out", type=Path, required=True, help="bundle directory or .tar")
    train.add_argument("--sign-key", type=Path, help="Ed25519 private key (PEM) to sign with")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    train.set_defaults(handler=_guarded("train", _train))


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
        except ValueError as e:
            for line in str(e).splitlines():
                print(f"edgewatch {name}: {line}", file=sys.stderr)
            return 2

    return run


def _progress(quiet: bool) -> Callable[[str], None]:
    def show(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return show


def _train(args: argparse.Namespace) -> int:
    from export.bundle import load_private_key
    from export.config import load_config
    from export.train import train

    config = load_config(args.config)
    key = load_private_key(args.sign_key) if args.sign_key else None
    train(config, args.out, key, _progress(args.quiet))
    return 0
