"""The pipeline: batches scored together, bad blocks counted, models swapped between windows,
and alerts that say what drove them. That its features are training's is
``tests/train/test_skew.py``."""

import numpy as np
import pytest

from edgewatch.agent.alerts import Alert, AlertMaker
from edgewatch.agent.bundle import BundleError, verify_bundle
from edgewatch.agent.decision_settings import Decision, ProcessGate, RmsGate
from edgewatch.agent.featurizer import featurize
from edgewatch.agent.framing import Block
from edgewatch.agent.model import Model
from edgewatch.agent.pipeline import Pipeline
from edgewatch.agent.sinks.outputs import Lines, Sink
from edgewatch.sim.machine import Fault, Machine, simulate_process, simulate_waveform
from tests import reference

RATE = 25600.0


class Kept(Sink):
    """The alerts written to it."""

    def __init__(self):
        super().__init__()
        self.alerts = []

    def _write(self, records):
        self.alerts += [r for r in records if isinstance(r, Alert)]


EVERY_WINDOW = Decision(warmup_windows=0)


def names_in(scored):
    return [part.device for part in scored.parts]


def pipeline(bundle_path, decision=EVERY_WINDOW, sinks=None, **kwargs):
    bundle = verify_bundle(bundle_path)
    return Pipeline(Model.load(bundle, decision), AlertMaker("site"), sinks or [], **kwargs)


def blocks_of(signal, device="fan", sizes=(512,), t0=0.0, channels=()):
    start, i = 0, 0
    while start < signal.shape[1]:
        size = sizes[i % len(sizes)]
        yield Block(device, t0 + start / RATE, RATE, signal[:, start : start + size], channels)
        start += size
        i += 1


def faulty_run(seconds=12.0, seed=5):
    fault = Fault(kind="outer_race", start=5, end=9, severity=3)
    return simulate_waveform(Machine(), seconds, RATE, seed=seed, faults=(fault,))


def test_windows_ready_together_are_scored_together_and_equal_one_by_one(waveform_bundle):
    run = simulate_waveform(Machine(), 1.0, RATE, seed=3)
    devices = [f"fan{i}" for i in range(4)]
    together = pipeline(waveform_bundle)
    apart = pipeline(waveform_bundle)
    for start in range(0, run.signal.shape[1], 4096):
        chunk = run.signal[:, start : start + 4096]
        blocks = [Block(d, start / RATE, RATE, chunk) for d in devices]
        batch = together.process(blocks)
        one_by_one = [apart.process([b]) for b in blocks]
        assert names_in(batch) == [names_in(r)[0] for r in one_by_one if r.parts]
        for mine, single in zip(batch.scores, one_by_one, strict=False):
            np.testing.assert_allclose(mine, single.scores[0], rtol=1e-5)
    assert together.registry.value("windows_scored_total") == 4 * 49


def test_a_fault_raises_one_alert_that_clears_and_explains_itself(waveform_bundle):
    kept = Kept()
    decision = Decision(warmup_windows=5, n=3, m=5, cooldown_s=1)
    pipe = pipeline(waveform_bundle, decision, [kept])
    for block in blocks_of(faulty_run().signal):
        pipe.process([block])
    assert [a.state for a in kept.alerts] == ["raised", "cleared"]
    raised, cleared = kept.alerts
    assert raised.alert_id == cleared.alert_id and (raised.sequence, cleared.sequence) == (1, 2)
    assert 5.0 <= raised.started_at.timestamp() <= 5.3 and 9.0 <= cleared.ts.timestamp() <= 9.3
    assert raised.model.name == "fan" and raised.features[0].measure == "z"
    deviations = [abs(d.deviation) for d in raised.features]
    assert deviations == sorted(deviations, reverse=True) and deviations[0] > 10
    assert pipe.registry.value("alerts_total", raised.severity, "raised") == 1


def test_blocks_that_do_not_fit_the_model_are_counted_by_reason(waveform_bundle):
    pipe = pipeline(waveform_bundle)
    good = np.zeros((3, 2048), np.float32) + 0.1
    pipe.process([Block("fan", 0, RATE, good[:2])])
    pipe.process([Block("fan", 0, 12000.0, good)])
    pipe.process([Block("fan", 0, RATE, good, ("x", "y", "w"))])
    assert pipe.dropped == {"wrong_channels": 2, "wrong_sample_rate": 1}
    assert pipe.registry.value("pipeline_rejected_total", "wrong_channels") == 2


def test_named_channels_are_put_in_the_model_s_order(waveform_bundle):
    run = simulate_waveform(Machine(), 0.5, RATE, seed=4)
    straight, swapped = pipeline(waveform_bundle), pipeline(waveform_bundle)
    a = straight.process([Block("fan", 0, RATE, run.signal, ("x", "y", "z"))])
    b = swapped.process([Block("fan", 0, RATE, run.signal[[2, 0, 1]], ("z", "x", "y"))])
    np.testing.assert_array_equal(a.parts[0].rows, b.parts[0].rows)


def test_without_a_model_blocks_are_dropped_and_counted():
    pipe = Pipeline(None, AlertMaker("site"), [])
    pipe.process([Block("fan", 0, RATE, np.zeros((3, 10), np.float32))])
    assert pipe.dropped == {"no_model": 1}


def test_a_full_inbox_drops_and_counts(waveform_bundle):
    pipe = pipeline(waveform_bundle, inbox=2, offer_timeout_s=0.01)
    block = Block("fan", 0, RATE, np.zeros((3, 10), np.float32))
    assert [pipe.offer(block) for _ in range(3)] == [True, True, False]
    assert pipe.dropped == {"inbox_full": 1}
    assert pipe.inbox.qsize() == 2


def test_an_idle_machine_raises_nothing(waveform_bundle):
    kept = Kept()
    gate = RmsGate(type="rms", floor=100.0)
    decision = Decision(warmup_windows=0, n=1, m=1, gate=gate)
    pipe = pipeline(waveform_bundle, decision, [kept])
    for block in blocks_of(faulty_run().signal):
        pipe.process([block])
    assert kept.alerts == [] and pipe.registry.value("windows_scored_total") > 0


def test_a_model_swapped_mid_stream_takes_over_between_windows(waveform_bundle, bundles):
    other = bundles["fan-2"]
    kept = Kept()
    decision = Decision(warmup_windows=0, n=3, m=3, cooldown_s=0)
    pipe = pipeline(waveform_bundle, decision, [kept])
    blocks = list(blocks_of(faulty_run().signal))
    half = len(blocks) // 2
    scored = [pipe.process([b]) for b in blocks[:half]]
    pipe.swap(Model.load(verify_bundle(other), decision))
    scored += [pipe.process([b]) for b in blocks[half:]]
    windows = sum(len(p.ends) for r in scored for p in r.parts)
    assert windows == (faulty_run().signal.shape[1] - 1024) // 512 + 1
    versions = [a.model.version for a in kept.alerts]
    assert versions[0] == "1" and versions[-1] == "2"
    assert (
        pipe.registry.value("model_info", "default", "fan", "2", verify_bundle(other).model_sha256)
        == 1
    )


def test_process_rows_and_a_sequence_model_keep_each_device_s_history(bundles):
    path = bundles["pump"]
    bundle = verify_bundle(path)
    run = simulate_process(200, seed=4, faults=(Fault(kind="step", start=120, end=180),))
    rows = run.signal
    pipe = pipeline(path)
    rounds = [
        pipe.process([Block(d, t, 1.0, rows[:, t : t + 7]) for d in ("p1", "p2")])
        for t in range(0, rows.shape[1], 7)
    ]
    spec = bundle.manifest.feature_spec
    expected = featurize(spec, np.ascontiguousarray(rows.T))
    scorer = Model.load(bundle, Decision()).scorer
    history = bundle.manifest.model.history
    want = scorer(reference.sequences(expected, history).astype(np.float32)).calibrated
    for device in ("p1", "p2"):
        got = np.concatenate(
            [
                s
                for r in rounds
                for p, s in zip(r.parts, r.scores, strict=True)
                if p.device == device
            ]
        )
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_process_gate_and_reconstruction_errors(bundles):
    kept = Kept()
    gate = ProcessGate(type="process", channel="current", minimum=-1e9)
    decision = Decision(warmup_windows=0, n=1, m=1, gate=gate)
    pipe = pipeline(bundles["pump"], decision, [kept])
    run = simulate_process(300, seed=4, faults=(Fault(kind="step", start=150, end=250),))
    pipe.process([Block("p1", 0, 1.0, run.signal)])
    raised = [a for a in kept.alerts if a.state == "raised"]
    assert raised and raised[0].features[0].measure == "reconstruction_error"
    idle = pipeline(
        bundles["pump"],
        Decision(
            warmup_windows=0,
            n=1,
            m=1,
            gate=ProcessGate(type="process", channel="current", minimum=1e9),
        ),
        [Kept()],
    )
    assert not idle.process([Block("p1", 0, 1.0, run.signal)]).alerts


def test_alerts_as_json_lines(waveform_bundle, tmp_path):
    path = tmp_path / "out" / "alerts.jsonl"
    sink = Lines.file(path)
    pipe = pipeline(waveform_bundle, Decision(warmup_windows=0, n=1, m=1), [sink])
    for block in blocks_of(faulty_run().signal):
        pipe.process([block])
    pipe.close()
    lines = path.read_text().splitlines()
    assert len(lines) >= 2 and '"state":"raised"' in lines[0]


def test_a_process_gate_that_does_not_fit_the_model_is_refused_at_load(waveform_bundle, bundles):
    def gate(channel: str) -> Decision:
        return Decision(gate=ProcessGate(type="process", channel=channel, minimum=0))

    with pytest.raises(BundleError, match="waveform windows: use an rms gate"):
        Model.load(verify_bundle(waveform_bundle), gate("x"))
    with pytest.raises(BundleError, match=r"'nope' is not one of the model's channels \(temp"):
        Model.load(verify_bundle(bundles["pump"]), gate("nope"))
    assert Model.load(verify_bundle(bundles["pump"]), gate("current")).history == 8


def test_devices_beyond_the_cap_are_forgotten_least_recently_seen_first(waveform_bundle):
    pipe = pipeline(waveform_bundle, max_devices=3)
    chunk = simulate_waveform(Machine(), 0.1, RATE, seed=1).signal[:, :2048]
    windows = []
    for i in range(10):
        kept = Block("kept", i * 2048 / RATE, RATE, chunk)
        scored = pipe.process([Block(f"passing{i}", 0.0, RATE, chunk), kept])
        windows.append(len(scored.parts[names_in(scored).index("kept")].ends))
    assert pipe.registry.value("devices_evicted_total") == 11 - 3
    # One stream, never cut: 3 windows from the first block, then 4 from each block after it.
    assert windows == [3] + [4] * 9
