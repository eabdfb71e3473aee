"""``edgewatch relearn DEVICE``: the command leaves a request in the agent's ``learning_dir``,
and the agent's fitting thread takes it within a second, as it would take an operator's
``rebaseline`` message. A request is a file under ``relearn/`` holding the device's name; the
agent removes each file it reads, and one that is not a device name is logged and removed.
"""

import logging
import os
from pathlib import Path

from edgewatch.agent.onsite.baseline import replace_file

log = logging.getLogger(__name__)
FOLDER = "relearn"
MAX_NAME = 255
MAX_REQUESTS = 100


def ask(learning_dir: Path, device: str, name: str) -> Path:
    """Leave a request to relearn ``device`` in file ``name``; ``OSError`` when it cannot."""
    folder = learning_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    replace_file(path, lambda f: f.write(device.encode()))
    return path


def take(learning_dir: Path) -> list[str]:
    """The devices asked for since the last call (at most ``MAX_REQUESTS``), their requests
    removed."""
    try:
        with os.scandir(learning_dir / FOLDER) as entries:
            paths = [Path(e.path) for e in entries if e.is_file() and e.name[0] != "."]
    except FileNotFoundError:
        return []
    except OSError as e:
        log.error("%s: relearn requests cannot be read: %s", learning_dir / FOLDER, e)
        return []
    devices = []
    for path in sorted(paths)[:MAX_REQUESTS]:
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_NAME + 1)
            path.unlink()
        except OSError as e:
            log.error("%s: the relearn request cannot be taken: %s", path, e)
            continue
        try:
            devices.append(device_name(raw))
        except ValueError as e:
            log.error("%s: %s", path, e)
    return devices


def device_name(raw: bytes) -> str:
    """The device a request names; ``ValueError`` when it names none.

    >>> device_name(b"pump-1"), device_name("é".encode())
    ('pump-1', 'é')
    """
    try:
        device = raw.decode()
    except UnicodeDecodeError:
        device = ""
    if not device or len(raw) > MAX_NAME or not device.isprintable():
        raise ValueError("the relearn request holds no device name")
    return device
