"""The bundles in ``tests/bundles/``, which the gateway suite runs on, are still what the training
code makes: the same files, the same manifest fields, the same inputs and outputs."""

import json
from pathlib import Path

from tests.conftest import BUNDLES
from tests.train.make_bundles import make

# What the agent binds to a bundle by; the rest (scales, thresholds, hashes, versions) is trained.
# The libraries differ by machine (tensorflow or tensorflow-cpu).
VARIES = ".training.libraries."
CONTRACT = ("name", "version", "feature_spec", "feature_names")
MODEL_CONTRACT = ("kind", "file", "input", "outputs", "history", "members")


def fields(value: object, path: str = "") -> set[str]:
    """Every key path in a manifest, lists' items indexed, but those that vary by machine."""
    if path.startswith(VARIES):
        return set()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), item) for i, item in enumerate(value))
    else:
        return {path}
    return {f for key, item in items for f in fields(item, f"{path}.{key}")}


def manifest(bundle: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((bundle / "manifest.json").read_text())  # type: ignore[no-any-return]


def test_the_script_makes_the_bundles_in_the_repository(tmp_path):
    made = make(tmp_path)
    assert sorted(made) == sorted(p.name for p in BUNDLES.iterdir() if p.is_dir())
    for name, fresh in made.items():
        kept = BUNDLES / name
        assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in kept.iterdir())
        new, old = manifest(fresh), manifest(kept)
        assert fields(new) == fields(old), name
        assert {k: new[k] for k in CONTRACT} == {k: old[k] for k in CONTRACT}, name
        assert {k: new["model"][k] for k in MODEL_CONTRACT} == {
            k: old["model"][k] for k in MODEL_CONTRACT
        }, name
