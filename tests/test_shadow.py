"""Candidate models on trial: scored beside the model in use, their alerts never sent, promoted
or retired by the rule, by an operator's command, or at once when they cannot be compared."""

import numpy as np
import pytest

from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.bundle_writer import write_bundle
from edgewatch.agent.config import ConfigError, validate
from edgewatch.agent.decision_settings import Decision, ShadowSettings
from edgewatch.agent.feedback import Labelled
from edgewatch.agent.model import Model
from edgewatch.agent.onsite.baseline import Baseline
from edgewatch.agent.onsite.learn import learn
from edgewatch.agent.onsite.settings import Learning
from edgewatch.sim.machine import Fault
from tests.test_labels import Rig, _fitting_thread, _learned
from tests.test_machines import BASE, PROCESS

KEY = "device:pump-1"


def _on_trial(tmp_path, faults=(), **settings) -> Rig:  # type: ignore[no-untyped-def]
    """The labelled pump, its re-fits going on trial as ``[shadow] refits = true`` has it."""
    rig = _learned(tmp_path, faults)
    pipe, learner = rig.pipe, rig.pipe.learner
    assert learner is not None
    pipe.trials.settings = ShadowSettings(refits=True, **settings)
    learner.shadowed = True
    learner.install = lambda route, model: pipe.try_out(model, route.key)
    assert pipe.tuner is not None
    pipe.trials.settled = pipe.tuner.settled
    pipe.report = rig.reports.append
    pipe.process([])
    return rig


def _baseline(tmp_path) -> np.ndarray:  # type: ignore[no-untyped-def]
    return Baseline(tmp_path / "pump-1", PROCESS, Learning(min_rows=1000)).matrix()


def _candidate(tmp_path, budget: tuple[float, float]) -> Model:
    """A model of the pump's own baseline, calibrated to ``budget``."""
    learned = learn(_baseline(tmp_path), PROCESS, Learning(budget=budget), name="candidate")
    return Model.load(write_bundle(tmp_path / "c", learned.manifest, learned.files), Decision())


def test_a_refit_on_trial_is_promoted_when_it_would_have_raised_fewer_alerts(tmp_path):
    setpoint = {"kind": "step", "severity": 5, "channel": 0}
    faults = (Fault(start=4000, end=4600, **setpoint), Fault(start=6000, end=6600, **setpoint))
    rig = _on_trial(tmp_path, faults, duration_s=2000, min_windows=100)
    pipe, run = rig.pipe, rig.run
    in_use = pipe.model_of(KEY)
    for block in run[364:500]:
        pipe.process([block])
    (false_alarm,) = [a for a in rig.kept.alerts if a.state == "raised"]
    rig.store.receive(f'{{"alert_id": "{false_alarm.alert_id}", "label": "normal"}}'.encode())
    _fitting_thread(pipe)
    pipe.process([])
    assert [r["event"] for r in rig.reports[-2:]] == ["refit", "shadow_started"]
    assert pipe.model_of(KEY) is in_use  # on trial, not in use
    bundle = tmp_path / "pump-1" / "bundle"
    assert verify_bundle(bundle).manifest.training.rows["labelled_normal"] == 0
    (waiting,) = (tmp_path / "pump-1").glob("trial-*")

    for block in run[500:680]:
        pipe.process([block])
    raised = [a.started_at.timestamp() for a in rig.kept.alerts if a.state == "raised"]
    assert raised[1:] and 6000 <= raised[1] < 6100  # the model in use alerts, and is heard
    assert pipe.registry.value("shadow_alerts", KEY, "active") >= 1
    assert pipe.registry.value("shadow_alerts", KEY, "candidate") == 0
    # They disagree on the setpoint's windows (a third of the trial), not on the rest.
    assert 0.6 < pipe.registry.value("shadow_agreement", KEY) < 0.75
    assert pipe.registry.value("shadow_far", KEY) < 0.02

    for block in run[680:720]:
        pipe.process([block])
    promoted = rig.reports[-1]
    assert promoted["event"] == "shadow_promoted" and promoted["lane"] == KEY
    assert promoted["alerts"]["candidate"] == 0 < promoted["alerts"]["active"]  # type: ignore[index]
    assert promoted["windows"] >= 2000  # type: ignore[operator]
    assert pipe.model_of(KEY) is not in_use
    assert verify_bundle(bundle).manifest.training.rows["labelled_normal"] > 100
    assert not waiting.exists()
    assert pipe.registry.value("shadow_decisions_total", "promoted") == 1


def test_a_candidate_is_retired_by_the_rule_by_a_label_by_command_or_at_once(tmp_path, bundles):
    rig = _on_trial(tmp_path, duration_s=600, min_windows=50)
    pipe, run, reports = rig.pipe, rig.run, rig.reports
    in_use = pipe.model_of(KEY)

    pipe.try_out(_candidate(tmp_path, (0.3, 0.1)), KEY)  # flags three normal windows in ten
    for block in run[364:440]:
        pipe.process([block])
    assert reports[-1]["event"] == "shadow_retired"
    assert reports[-1]["reason"] == (
        f"it would raise {reports[-1]['alerts']['candidate']} alerts to the 0 of the model in use"  # type: ignore[index]
    )
    assert reports[-1]["far_on_recent_normal"] > 0.1  # type: ignore[operator]

    pipe.try_out(_candidate(tmp_path, (0.01, 0.001)), KEY)
    pipe.process([])
    ordinary = _baseline(tmp_path)[100:105]  # labelled anomaly, and no model's concern
    pipe.tell(Labelled("pump-1", "anomaly", PROCESS.feature_names, ordinary))
    for block in run[440:520]:
        pipe.process([block])
    assert reports[-1]["reason"] == "it would miss 1 of the 1 alerts labelled anomaly"

    pipe.try_out(_candidate(tmp_path, (0.01, 0.001)), KEY)
    pipe.process(run[520:521])
    pipe.decide(KEY, False)
    pipe.process([])
    assert (reports[-1]["event"], reports[-1]["reason"]) == ("shadow_retired", "by command")
    pipe.decide(KEY, True)
    pipe.process([])
    assert reports[-1] == {"event": "shadow_refused", "lane": KEY, "reason": "no candidate there"}

    pipe.try_out(Model.load(verify_bundle(bundles["fan"]), Decision()), KEY)
    pipe.process([])
    assert reports[-1]["event"] == "shadow_retired"
    assert "reads other features" in str(reports[-1]["reason"])
    assert pipe.model_of(KEY) is in_use
    assert pipe.registry.value("shadow_decisions_total", "retired") == 4


def test_shadow_settings_are_checked():
    base = {**BASE, "model": {"bundle": "/b"}}
    assert validate({**base, "shadow": {"refits": True}}).shadow.duration_s == 86_400
    with pytest.raises(ConfigError, match=r"shadow\.max_alert_ratio"):
        validate({**base, "shadow": {"max_alert_ratio": -1}})
    with pytest.raises(ConfigError, match=r"shadow\.promote"):
        validate({**base, "shadow": {"promote": "always"}})
