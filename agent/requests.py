"""Requests the command line leaves for the running agent in its ``learning_dir``, under
``requests/``: ``edgewatch relearn DEVICE`` and ``edgewatch shadow promote|retire NAME``. The
agent's requests thread takes them within a second, as it would take an operator's message,
and removes each file it reads; one that does not parse is logged and removed too.

A request is a file named ``<action>-<hash>`` holding its subject: the device to relearn, or
the lane whose candidate to promote or retire.
"""

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

from edgewatch.agent.onsite.baseline import replace_file

log = logging.getLogger(__name__)
Action = Literal["relearn", "promote", "retire"]
FOLDER = "requests"
MAX_SUBJECT = 255
MAX_REQUESTS = 100
EVERY_S = 1.0


def ask(learning_dir: Path, action: Action, subject: str) -> Path:
    """Leave a request; ``OSError`` when it cannot be written, or no agent made the folder
    (it does as it starts, and owns it, so that it can remove what it took)."""
    folder = learning_dir / FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is missing: no agent with learning or a shadow has started here"
        )
    path = folder / f"{action}-{hashlib.sha256(subject.encode()).hexdigest()[:16]}"
    replace_file(path, lambda f: f.write(subject.encode()))
    return path


def take(learning_dir: Path) -> list[tuple[Action, str]]:
    """The requests left since the last call (at most ``MAX_REQUESTS``), their files removed."""
    try:
        with os.scandir(learning_dir / FOLDER) as entries:
            paths = [Path(e.path) for e in entries if e.is_file() and e.name[0] != "."]
    except FileNotFoundError:
        return []
    except OSError as e:
        log.error("%s: requests cannot be read: %s", learning_dir / FOLDER, e)
        return []
    taken = []
    for path in sorted(paths)[:MAX_REQUESTS]:
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_SUBJECT + 1)
            path.unlink()
        except OSError as e:
            log.error("%s: the request cannot be taken: %s", path, e)
            continue
        try:
            taken.append(parse(path.name, raw))
        except ValueError as e:
            log.error("%s: %s", path, e)
    return taken


def parse(name: str, raw: bytes) -> tuple[Action, str]:
    """The action a request file's ``name`` asks for, and the subject it holds; ``ValueError``
    when it is not a request.

    >>> parse("relearn-0f3a", b"pump-1")
    ('relearn', 'pump-1')
    """
    for action in get_args(Action):
        if name.startswith(f"{action}-"):
            return action, subject(raw)
    raise ValueError(f"not a request: {', '.join(get_args(Action))} are")


def subject(raw: bytes) -> str:
    """The device or lane a request names; ``ValueError`` when it names none.

    >>> subject(b"pump-1"), subject("é".encode())
    ('pump-1', 'é')
    """
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = ""
    if not text or len(raw) > MAX_SUBJECT or not text.isprintable():
        raise ValueError("the request names no device or lane")
    return text


class Requests:
    """The thread that takes requests and hands them on: ``relearn(device)`` and
    ``decide(lane, promote)``."""

    def __init__(
        self,
        learning_dir: Path,
        relearn: Callable[[str], None],
        decide: Callable[[str, bool], None],
    ) -> None:
        self.learning_dir, self.relearn, self.decide = learning_dir, relearn, decide

    def run(self, stop: threading.Event) -> None:
        (self.learning_dir / FOLDER).mkdir(parents=True, exist_ok=True)
        while not stop.wait(EVERY_S):
            for action, named in take(self.learning_dir):
                log.info("request: %s %s", action, named)
                if action == "relearn":
                    self.relearn(named)
                else:
                    self.decide(named, action == "promote")
