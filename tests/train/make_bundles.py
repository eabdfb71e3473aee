"""The bundles the gateway suite runs on, made by the training code.

``make test-edge`` runs on an edge install, which cannot train, so it reads these bundles from
``tests/bundles/``. After a change to training or to the manifest, make them again with
``python -m tests.train.make_bundles``; ``tests/train/test_bundles.py`` fails until then.
"""

import sys
from pathlib import Path

from edgewatch.export.config import parse_config
from edgewatch.export.train import train

FOLDER = Path(__file__).resolve().parents[1] / "bundles"

WAVEFORM_MODEL = """
name = "fan"
version = "{version}"
[data]
type = "simulate"
duration = 30
seed = {seed}
[features]
kind = "waveform"
sample_rate = 25600
window = 1024
channels = ["x", "y", "z"]
[model]
kind = "isolation_forest"
"""

PROCESS_MODEL = """
name = "pump"
[data]
type = "simulate"
duration = 1200
seed = 2
[features]
kind = "process"
channels = ["temperature", "pressure", "current", "flow"]
[model]
kind = "{kind}"
{extra}
"""

BUNDLES = {
    # An IsolationForest over three axes of 25.6 kHz vibration, 1024-sample windows.
    "fan": WAVEFORM_MODEL.format(version="1", seed=1),
    # The same machine learned again from another run: a new version to reload.
    "fan-2": WAVEFORM_MODEL.format(version="2", seed=3),
    # A sequence autoencoder over 8 process rows, which explains by reconstruction error.
    "pump": PROCESS_MODEL.format(kind="sequence_autoencoder", extra="history = 8\nepochs = 3"),
}


def make(folder: Path = FOLDER) -> dict[str, Path]:
    """Train every bundle of ``BUNDLES`` into ``folder``, replacing what is there."""
    made = {}
    for name, config in BUNDLES.items():
        made[name] = folder / name
        train(parse_config(config), made[name])
    return made


if __name__ == "__main__":
    for path in make(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER).values():
        print(path)
