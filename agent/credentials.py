"""Files a config names that the agent reads at start: keys, certificates, passwords.

A relative path is looked up in ``$CREDENTIALS_DIRECTORY``, where systemd's ``LoadCredential=``
puts them.
"""

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

CREDENTIALS = "CREDENTIALS_DIRECTORY"


def credential(path: Path) -> Path:
    """``path``, or for a relative one the file of that name in ``$CREDENTIALS_DIRECTORY``."""
    folder = os.environ.get(CREDENTIALS)
    return Path(folder) / path if folder and not path.is_absolute() else path


def _readable(path: Path) -> Path:
    resolved = credential(path)
    try:
        with resolved.open("rb"):
            pass
    except OSError as e:
        raise ValueError(f"cannot read {resolved}: {e.strerror}") from None
    return path


# A file the agent reads at start (a key, a certificate, a password): it must be readable now.
Readable = Annotated[Path, AfterValidator(_readable)]
