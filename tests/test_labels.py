"""Operators close the loop: labels re-fit a machine learned on site, rebaseline starts it over,
and the old model scores until the new one has passed its checks."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest

from edgewatch.agent import requests
from edgewatch.agent.alert_windows import LIMIT, AlertWindows
from edgewatch.agent.alerts import Alert
from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.feedback import FeedbackError, FeedbackStore, Labelled
from edgewatch.agent.framing import Block
from edgewatch.agent.onsite import labelled
from edgewatch.agent.onsite.folders import folder_name
from edgewatch.agent.onsite.refit import RefitError, refit
from edgewatch.agent.pipeline import Pipeline
from edgewatch.sim.machine import Fault
from tests.conftest import edgewatch
from tests.test_machines import Kept, _learning, _process


def _open_alert(alert_id: str, state: str = "raised", device: str = "pump-1") -> Alert:
    now = datetime.now(UTC)
    return Alert.model_validate(
        {
            "alert_id": alert_id, "state": state, "severity": "warning", "site": "s",
            "device": device, "sequence": 1, "ts": now, "started_at": now, "score": 3.0,
            "threshold": 2.0, "model": {"name": "m", "version": "1", "sha256": "0" * 64},
        }
    )  # fmt: skip


@dataclass
class Rig:
    """A pump that learned its first hour and a minute, wired to a feedback store as the
    agent wires them; the alerts and status events, and the whole run's blocks (10 s each)."""

    pipe: Pipeline
    store: FeedbackStore
    kept: Kept
    reports: list[dict[str, object]]
    run: list[Block]


def _learned(tmp_path, faults=()) -> Rig:  # type: ignore[no-untyped-def]
    kept, reports = Kept(), []
    pipe = _learning(tmp_path, kept, reports)
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    pipe.windows = AlertWindows(store)
    store.listener = pipe.tell
    run = list(_process("pump-1", 8000, faults=faults))
    pipe.process(run[:364])
    assert pipe.learner is not None
    pipe.learner._jobs.get_nowait()()  # the fitting thread's turn
    return Rig(pipe, store, kept, reports, run)


def _fitting_thread(pipe) -> None:  # type: ignore[no-untyped-def]
    pipe.process([])  # the labels reach the learner between batches
    while not pipe.learner._jobs.empty():
        pipe.learner._jobs.get_nowait()()


def test_a_false_alarm_labelled_normal_stops_recurring_after_the_refit_and_a_fault_is_caught(
    tmp_path,
):
    setpoint = {"kind": "step", "severity": 5, "channel": 0}  # the operator's new normal
    faults = (
        Fault(start=4000, end=4600, **setpoint),
        Fault(start=6000, end=6600, **setpoint),
        Fault(kind="step", start=7000, end=7600, severity=5, channel=3),
    )
    rig = _learned(tmp_path, faults)
    pipe, store, kept, reports, run = rig.pipe, rig.store, rig.kept, rig.reports, rig.run
    for block in run[364:500]:
        pipe.process([block])
    before = pipe.model_of("device:pump-1")
    (false_alarm,) = [a for a in kept.alerts if a.state == "raised"]
    assert false_alarm.started_at.timestamp() == pytest.approx(4002)
    store.receive(json.dumps({"alert_id": false_alarm.alert_id, "label": "normal"}).encode())
    _fitting_thread(pipe)
    refitted = reports[-1]
    assert refitted["event"] == "refit" and refitted["normal_still_alerting"] == 0
    assert 100 < refitted["labelled_normal"] <= LIMIT  # type: ignore[operator]
    pipe.process([])
    after = pipe.model_of("device:pump-1")
    assert after is not None and before is not None and after.bundle != before.bundle
    assert after.bundle.manifest.training.rows["labelled_normal"] == refitted["labelled_normal"]
    for block in run[500:]:
        pipe.process([block])
    raised = [a.started_at.timestamp() for a in kept.alerts if a.state == "raised"]
    assert raised[1:] == [pytest.approx(7002)]  # the setpoint again is quiet; the fault is not


def test_a_refit_that_would_miss_a_confirmed_anomaly_is_refused_and_the_old_model_stays(
    tmp_path,
):
    rig = _learned(tmp_path)
    pipe, reports = rig.pipe, rig.reports
    folder = tmp_path / folder_name("pump-1")
    bundle = folder / "bundle"
    before = verify_bundle(bundle).manifest_sha256
    route = pipe.router.claim("pump-1")
    assert route is not None and route.machine is not None
    odd = np.random.default_rng(0).normal(5.0, 1.0, (20, len(route.machine.features.feature_names)))
    labelled.add(folder, "normal", odd)
    labelled.add(folder, "anomaly", odd[:3])  # the operator said both of the same state
    with pytest.raises(RefitError, match="3 of the 3 windows labelled anomaly"):
        refit(folder, route.machine, "pump-1", 1)
    assert verify_bundle(bundle).manifest_sha256 == before
    assert not (folder / "candidate").exists()

    pipe.tuner.refit(route)
    assert reports[-1]["event"] == "refit_refused"
    assert pipe.learner.fits["refit_refused"] == 1


def test_a_rebaseline_keeps_the_device_scoring_until_its_new_model_takes_over(tmp_path):
    rig = _learned(tmp_path)
    pipe, run = rig.pipe, rig.run
    pipe.process([])
    first = pipe.model_of("device:pump-1")
    pipe.tell(Labelled("pump-1", "rebaseline"))
    done = pipe.process(run[364:400])
    assert sum(map(len, done.scores)) == 360  # it scores on
    assert pipe.learner is not None and pipe.learner.states()["pump-1"]["state"] == "learning"
    assert pipe.learner.states()["pump-1"]["rows"] == 360 - 30  # the new rolling history
    assert (tmp_path / "pump-1" / "relearning").exists()

    pipe.learner.save()
    restarted = _learning(tmp_path, Kept(), [])  # a restart while relearning
    restarted.process(run[400:410])
    assert restarted.model_of("device:pump-1") is not None
    assert restarted.learner is not None and restarted.learner.collecting("pump-1")

    pipe.process(run[400:780])
    pipe.learner._jobs.get_nowait()()
    pipe.process(run[780:781])
    second = pipe.model_of("device:pump-1")
    assert second is not None and first is not None and second.bundle != first.bundle
    assert not pipe.learner.collecting("pump-1")
    assert not (tmp_path / "pump-1" / "relearning").exists()
    assert sum(map(len, pipe.process(run[781:783]).scores)) == 20


def test_a_rebaseline_for_a_device_that_learns_nothing_is_refused_and_reported(tmp_path):
    rig = _learned(tmp_path)
    pipe, reports = rig.pipe, rig.reports
    pipe.report = reports.append
    pipe.tell(Labelled("lathe", "rebaseline"))
    pipe.process([])
    assert reports[-1] == {
        "event": "rebaseline_refused",
        "device": "lathe",
        "reason": "it learns nothing on site: its model is a shipped bundle, or none",
    }


def test_feedback_messages_name_their_subject(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    told: list[Labelled] = []
    store.listener = told.append
    store.record(_open_alert("a1"), ("x",), np.array([[1.0], [2.0]]))
    store.record(_open_alert("a1"), ("x",), np.array([[3.0]]))
    store.receive(b'{"alert_id": "a1", "label": "normal"}')
    store.receive(b'{"device": "pump-9", "label": "rebaseline"}')
    store.receive(b'{"alert_id": "a1", "label": "rebaseline"}')
    assert [(t.device, t.label) for t in told] == [
        ("pump-1", "normal"),
        ("pump-9", "rebaseline"),
        ("pump-1", "rebaseline"),
    ]
    assert told[0].names == ("x",) and told[0].rows.tolist() == [[1.0], [2.0], [3.0]]
    for bad, why in [
        (b'{"label": "rebaseline"}', "a device or an alert_id"),
        (b'{"device": "p", "alert_id": "a1", "label": "rebaseline"}', "a device or an alert_id"),
        (b'{"device": "p", "label": "normal"}', "names the alert_id it labels"),
        (b'{"device": "' + b"p" * 300 + b'", "label": "rebaseline"}', "device"),
    ]:
        with pytest.raises(FeedbackError, match=why):
            store.receive(bad)
    assert (store.accepted, store.rejected) == (3, 4)


def test_a_long_alert_keeps_a_bounded_sample_of_its_windows_from_onset_to_end(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    windows = AlertWindows(store)
    rows = np.arange(5000, dtype=np.float64)[:, None]
    windows.take("pump-1", [_open_alert("a1")], [7], rows[:100], ("x",))
    for start in range(100, 4900, 100):
        windows.take("pump-1", [], [], rows[start : start + 100], ("x",))
    windows.take("pump-1", [_open_alert("a1", "cleared")], [50], rows[4900:], ("x",))
    assert not windows.open("pump-1")
    store.receive(b'{"alert_id": "a1", "label": "normal"}')
    kept = store._db.execute("SELECT features FROM windows").fetchall()
    values = sorted(np.frombuffer(b, "<f8")[0] for (b,) in kept)
    assert LIMIT // 2 <= len(values) <= LIMIT
    assert values[0] == 7 and values[-1] > 4900 - 32  # the onset and near the end
    assert np.ptp(np.diff(values)) == 0  # evenly spread


def test_relearn_leaves_a_request_the_agent_takes_once(tmp_path):
    learning = tmp_path / "learning"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'site = "s"\ndevice = "g"\nlearning_dir = "{learning}"\n[mqtt]\n'
        '[[sources]]\ntype = "mqtt"\ntopic = "sensors/#"\n[[sinks]]\ntype = "stdout"\n'
        '[[machines]]\nname = "pumps"\ndevices = ["pump-*"]\nlearn = { min_rows = 1000 }\n'
        'features = { kind = "process", channels = ["t"] }\n'
    )
    missing = edgewatch("relearn", "pump-1", "--config", config, check=False)
    assert missing.returncode == 2 and "no agent with learning or a shadow" in missing.stderr
    (learning / "requests").mkdir(parents=True)  # as the agent does when it starts
    asked = edgewatch("relearn", "pump-1", "--config", config)
    assert "pump-1's new baseline" in asked.stderr
    refused = edgewatch("relearn", "fan-1", "--config", config, check=False)
    assert refused.returncode == 2
    assert "fan-1 is not a device of a machine that learns on site" in refused.stderr
    (learning / "requests" / "relearn-junk").write_bytes(b"\x00\xff")
    (learning / "requests" / "melt-x").write_bytes(b"pump-1")
    (learning / "requests" / "relearn-folder").mkdir()
    assert requests.take(learning) == [("relearn", "pump-1")]
    assert requests.take(learning) == []
    assert [p.name for p in (learning / "requests").iterdir()] == ["relearn-folder"]
