"""Hot reload, turn by turn and without the agent: who may load a model through a notice on the
``model`` topic, what a changed bundle does, and what is refused."""

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.model import Model
from edgewatch.agent.reload import Reloader


def reloader(bundle, key=None, notice_root=None) -> tuple[Reloader, list[str]]:
    reports: list[str] = []
    made = Reloader(
        bundle, key, Decision(), 1, lambda: None, lambda m: None, reports.append,
        notice_root=notice_root,
    )  # fmt: skip
    return made, reports


def notice(path) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    return Path(path), "0" * 64


def test_without_a_key_or_a_notice_root_every_notice_is_refused(waveform_bundle):
    watcher, reports = reloader(waveform_bundle)
    watcher.notice(*notice(waveform_bundle))
    assert watcher.failures == 1 and reports == [
        "model notice refused: no model.public_key and no model.notice_root: notices are off"
    ]


@pytest.mark.parametrize("trusted", ["key", "root"])
def test_a_key_or_a_notice_root_lets_notices_through(waveform_bundle, trusted):
    key = Ed25519PrivateKey.generate().public_key() if trusted == "key" else None
    root = waveform_bundle.parent if trusted == "root" else None
    watcher, reports = reloader(waveform_bundle, key, root)
    watcher.notice(*notice(waveform_bundle))
    assert watcher.failures == 0 and reports == []


def installed(bundle, **kwargs):  # type: ignore[no-untyped-def]
    """A reloader watching ``bundle``, and the models it installed, in order."""
    models: list[Model] = []
    reports: list[str] = []
    current = lambda: models[-1] if models else None  # noqa: E731
    made = Reloader(bundle, None, Decision(), 1, current, models.append, reports.append, **kwargs)
    return made, models, reports


def test_a_changed_bundle_is_loaded_on_the_next_turn_and_an_unchanged_one_is_not(tmp_path, bundles):
    watched = tmp_path / "bundle"
    shutil.copytree(bundles["fan"], watched)
    watcher, models, reports = installed(watched)
    assert watcher.check() and [m.bundle.manifest.version for m in models] == ["1"]
    watcher.poll()
    assert len(models) == 1
    shutil.rmtree(watched)
    shutil.copytree(bundles["fan-2"], watched)
    watcher.poll()
    assert [m.bundle.manifest.version for m in models] == ["1", "2"] and reports == []
    assert (watcher.loads, watcher.failures) == (2, 0)


def test_a_bad_bundle_keeps_the_model_in_use_and_says_why(tmp_path, bundles):
    watched = tmp_path / "bundle"
    shutil.copytree(bundles["fan"], watched)
    watcher, models, reports = installed(watched)
    watcher.check()
    (watched / "model.onnx").write_bytes(b"not a model")
    watcher.poll()
    assert len(models) == 1 and watcher.failures == 1
    assert "model.onnx" in reports[0]


def test_a_model_for_other_input_cannot_take_over_the_streams(tmp_path, bundles):
    watcher, models, reports = installed(bundles["fan"], notice_root=tmp_path.parent)
    watcher.check()
    pump = tmp_path / "pump"
    shutil.copytree(bundles["pump"], pump)
    sha = verify_bundle(pump).manifest_sha256
    watcher.notice(pump, sha)
    watcher.poll()
    assert len(models) == 1 and "cannot take over the running streams" in reports[0]
    assert "feature_spec.kind changes from waveform to process" in reports[0]
