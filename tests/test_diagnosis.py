"""An alert names the bearing defect its envelope spectrum shows: simulated outer-race,
inner-race and ball faults on a model learned from the healthy machine, and nothing named for
faults that are no bearing's."""

import numpy as np
import pytest

from edgewatch.agent.alerts import AlertMaker
from edgewatch.agent.bundle_writer import write_bundle
from edgewatch.agent.decision import Transition
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import featurize
from edgewatch.agent.onsite.learn import learn
from edgewatch.agent.scorer import Scorer
from edgewatch.sim.machine import Fault, Machine, simulate_waveform

RATE = 25600.0
MACHINE = Machine()
SPEC = FeatureSpec(
    kind="waveform",
    sample_rate=RATE,
    window=4096,
    hop=4096,
    channels=["x", "y"],
    bearing=MACHINE.bearing,
    shaft_hz=MACHINE.shaft_hz,
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):  # type: ignore[no-untyped-def]
    healthy = simulate_waveform(MACHINE, 80.0, RATE, seed=1, channels=2)
    learned = learn(featurize(SPEC, healthy.windows(4096, 4096)), SPEC)
    return write_bundle(tmp_path_factory.mktemp("bearing"), learned.manifest, learned.files)


def diagnoses(bundle, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The diagnosis of an alert on each window of a run with the fault ``kind``, the windows
    the model scores above its warning level."""
    run = simulate_waveform(MACHINE, 4.0, RATE, seed=7, channels=2, faults=[Fault(kind=kind,
                            start=0.0, end=4.0, severity=1.0)])  # fmt: skip
    rows = featurize(SPEC, run.windows(4096, 4096))
    scores = Scorer(bundle)(rows).calibrated
    maker, found = AlertMaker("s"), []
    for i in np.flatnonzero(scores > bundle.manifest.thresholds.warning):
        step = Transition("raised", f"a{i}", "warning", 0.0, 1.0, float(scores[i]), 2.0, 0)
        found.append(maker.make("fan", step, bundle, rows[i]).diagnosis)
    return found


@pytest.mark.parametrize(
    ("kind", "named"),
    [("outer_race", "outer_race (BPFO 107.4 Hz"), ("inner_race", "inner_race (BPFI 162.2 Hz"),
     ("ball", "ball (2xBSF 141.2 Hz")],
)  # fmt: skip
def test_a_bearing_fault_is_named_with_its_line(bundle, kind: str, named: str) -> None:
    found = diagnoses(bundle, kind)
    assert len(found) >= 5, "the fault is alerted on"
    assert all(d.startswith(named) for d in found), found
    assert "dB over baseline" in found[0]


@pytest.mark.parametrize("kind", ["imbalance", "misalignment"])
def test_a_fault_that_is_no_bearings_names_nothing(bundle, kind: str) -> None:
    found = diagnoses(bundle, kind)
    assert found and not any(found), found


def test_a_cleared_alert_and_a_model_without_envelope_name_nothing(bundle) -> None:
    step = Transition("cleared", "a", "warning", 0.0, 1.0, 1.0, 2.0, 0)
    row = np.zeros(len(SPEC.feature_names), np.float32)
    assert AlertMaker("s").make("fan", step, bundle, row).diagnosis == ""


def test_lines_a_window_cannot_resolve_name_nothing(tmp_path) -> None:
    """Windows of 1024 at 25.6 kHz have 25 Hz bins: BPFO (107 Hz) lies 1.5 bins from BSF."""
    coarse = FeatureSpec(**{**SPEC.model_dump(), "window": 1024, "hop": 1024})
    healthy = simulate_waveform(MACHINE, 20.0, RATE, seed=1, channels=2)
    learned = learn(featurize(coarse, healthy.windows(1024, 1024)), coarse)
    bundle = write_bundle(tmp_path / "coarse", learned.manifest, learned.files)
    fault = Fault(kind="outer_race", start=0.0, end=2.0, severity=1.0)
    run = simulate_waveform(MACHINE, 2.0, RATE, seed=7, channels=2, faults=[fault])
    rows = featurize(coarse, run.windows(1024, 1024))
    scores = Scorer(bundle)(rows).calibrated
    alerted = np.flatnonzero(scores > bundle.manifest.thresholds.warning)
    assert len(alerted) >= 10
    maker = AlertMaker("s")
    for i in alerted:
        step = Transition("raised", f"a{i}", "warning", 0.0, 1.0, float(scores[i]), 2.0, 0)
        alert = maker.make("fan", step, bundle, rows[i])
        assert alert.diagnosis == "" and any(".env_" in d.name for d in alert.features)
