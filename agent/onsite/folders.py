"""A device's folder under the agent's ``learning_dir``: its baseline, its labelled windows and
its bundles. ``bundle`` is the model in use; a new model is written to ``candidate`` and, once
it has passed its checks, takes the place of ``bundle``, or, when new models go on trial,
waits beside it as ``trial-<sha256>`` until the trial promotes it (or retires it). A file
``relearning`` says the device is collecting a new baseline while its model scores on.
"""

import hashlib
import re
import shutil
from pathlib import Path

from edgewatch.agent.bundle_writer import write_bundle
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.model import Model
from edgewatch.agent.onsite.learn import Learned

BUNDLE = "bundle"
CANDIDATE = "candidate"
RELEARNING = "relearning"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def folder_name(device: str) -> str:
    """A device's folder: its name when that is a safe file name, else a hash of it."""
    if SAFE_NAME.fullmatch(device):
        return device
    return "device-" + hashlib.sha256(device.encode()).hexdigest()[:32]


def candidate(folder: Path, learned: Learned, decision: Decision, threads: int) -> Model:
    """Write ``learned`` to the device's ``candidate`` folder and load it to be checked; a
    ``BundleError`` or ``OSError`` when it cannot be."""
    bundle = write_bundle(folder / CANDIDATE, learned.manifest, learned.files)
    return Model.load(bundle, decision, threads)


def trial(folder: Path, model: Model) -> Path:
    """Where ``model`` waits on trial."""
    return folder / f"trial-{model.bundle.manifest_sha256[:16]}"


def place(folder: Path, model: Model, on_trial: bool) -> None:
    """Put ``model``, written to ``candidate``, in the place of the bundle, or on trial beside
    it (``on_trial``, when there is a bundle); ``OSError`` when the disk refuses."""
    target = trial(folder, model) if on_trial and (folder / BUNDLE).exists() else folder / BUNDLE
    if target.exists():
        shutil.rmtree(target)
    (folder / CANDIDATE).rename(target)


def settle(folder: Path, model: Model, promoted: bool) -> None:
    """The trial of ``model`` ended: promoted, it becomes the bundle; retired, it is removed.
    ``OSError`` when the disk refuses."""
    waiting = trial(folder, model)
    if promoted and waiting.exists():
        shutil.rmtree(folder / BUNDLE, ignore_errors=True)
        waiting.rename(folder / BUNDLE)
    else:
        shutil.rmtree(waiting, ignore_errors=True)


def abandon(folder: Path) -> None:
    """Remove what a restart leaves unfinished: a candidate being checked, models on trial
    (a trial does not outlive the agent)."""
    for path in [folder / CANDIDATE, *folder.glob("trial-*")]:
        shutil.rmtree(path, ignore_errors=True)
