"""Decisions: warm-up, N-of-M, hysteresis, release, minimum duration, cooldown, gating, severity."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.calibration import Thresholds
from edgewatch.agent.decision import ChannelFloor, Decider, Decisions, Policy
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.model import policy


def ids():
    counter = itertools.count(1)
    return lambda: f"a{next(counter)}"


def run(policy, scores, idle=None, period=1.0):
    decider = Decider(policy, ids())
    ts = np.arange(len(scores)) * period
    idle = None if idle is None else np.asarray(idle, bool)
    return decider.steps(ts, np.asarray(scores, float), idle)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 1.0, 1.8, 2.5, 3.0, 6.0]), max_size=60),
    st.integers(1, 4),
    st.integers(0, 3),
    st.integers(0, 5),
    st.integers(1, 30),
    st.sampled_from([0.0, 0.3]),
)
def test_batches_decide_exactly_as_one_window_at_a_time(scores, n, extra, warmup, cut, release):
    policy = Policy(
        warning=2.0, critical=5.0, warmup=warmup, n=n, m=n + extra, hysteresis=0.5, release=release
    )
    whole = run(policy, scores)
    decider = Decider(policy, ids())
    ts = np.arange(len(scores), dtype=float)
    pieces = [
        step
        for start in range(0, len(scores), cut)
        for step in decider.steps(ts[start : start + cut], np.array(scores[start : start + cut]))
    ]
    assert [(s.state, s.alert_id, s.ts, s.severity) for s in pieces] == [
        (s.state, s.alert_id, s.ts, s.severity) for s in whole
    ]


def test_warm_up_windows_decide_nothing():
    policy = Policy(warning=1.0, critical=5.0, warmup=3)
    assert run(policy, [9, 9, 9]) == []
    assert [s.state for s in run(policy, [9, 9, 9, 9])] == ["raised"]


def test_n_of_m_needs_n_high_windows_among_the_last_m():
    policy = Policy(warning=1.0, critical=5.0, n=3, m=5)
    assert run(policy, [2, 0, 2, 0, 0, 2, 0]) == []
    steps = run(policy, [2, 0, 2, 0, 2])
    assert [(s.state, s.ts, s.started_at) for s in steps] == [("raised", 4.0, 4.0)]


def test_hysteresis_keeps_an_alert_until_the_low_mark():
    policy = Policy(warning=2.0, critical=5.0, hysteresis=0.5)
    steps = run(policy, [3, 1.8, 1.6, 1.4, 3])
    assert [(s.state, s.ts) for s in steps] == [("raised", 0), ("cleared", 3), ("raised", 4)]
    assert steps[1].threshold == 1.5 and steps[0].alert_id == steps[1].alert_id != steps[2].alert_id


def test_release_ends_an_excursion_that_settles_above_the_threshold():
    policy = Policy(warning=2.0, critical=50.0, release=0.1)
    steps = run(policy, [3, 12, 22, 6, 3.5, 3, 3.5, 1, 3])
    assert [(s.state, s.ts, s.reason) for s in steps] == [
        ("raised", 0, ""),
        ("cleared", 4, "released"),
        ("raised", 8, ""),
    ]
    assert steps[1].threshold == 4.0


def test_after_a_release_only_scores_above_its_level_raise_again():
    policy = Policy(warning=2.0, critical=50.0, release=0.1)
    steps = run(policy, [22, 3, 3.5, 5, 5])
    assert [(s.state, s.ts) for s in steps] == [("raised", 0), ("cleared", 1), ("raised", 3)]
    assert steps[2].started_at == 3.0


def test_release_measures_the_peak_from_the_low_mark_so_hysteresis_still_holds():
    policy = Policy(warning=2.0, critical=50.0, hysteresis=1.0, release=0.1)
    assert [s.state for s in run(policy, [3, 1.5, 3])] == ["raised"]
    steps = run(policy, [3, 1.5, 0.5])
    assert [(s.state, s.reason, s.threshold) for s in steps] == [
        ("raised", "", 2.0),
        ("cleared", "below threshold", 1.0),
    ]


def test_an_alert_is_dated_from_the_first_window_of_its_run():
    policy = Policy(warning=1.0, critical=5.0, min_duration_s=2.0)
    (raised,) = run(policy, [0, 2, 2, 2])
    assert (raised.started_at, raised.ts) == (1.0, 3.0)


def test_cooldown_holds_back_a_new_alert():
    policy = Policy(warning=1.0, critical=5.0, cooldown_s=3.0)
    steps = run(policy, [2, 0, 2, 2, 2, 2])
    assert [(s.state, s.ts) for s in steps] == [("raised", 0), ("cleared", 1), ("raised", 4)]
    assert steps[2].started_at == 2.0


def test_a_warning_escalates_to_critical_under_the_same_id():
    steps = run(Policy(warning=1.0, critical=5.0), [2, 6, 7, 0])
    assert [(s.state, s.severity) for s in steps] == [
        ("raised", "warning"),
        ("escalated", "critical"),
        ("cleared", "critical"),
    ]
    assert len({s.alert_id for s in steps}) == 1


def test_an_idle_machine_clears_the_alert_and_is_not_scored():
    policy = Policy(warning=1.0, critical=5.0, warmup=1)
    steps = run(policy, [0, 2, 9, 9, 2], idle=[0, 0, 1, 1, 0])
    assert [(s.state, s.ts, s.reason) for s in steps] == [
        ("raised", 1, ""),
        ("cleared", 2, "idle"),
        ("raised", 4, ""),
    ]


def test_idle_windows_do_not_count_for_warm_up():
    policy = Policy(warning=1.0, critical=5.0, warmup=2)
    assert run(policy, [9, 9, 9, 9], idle=[1, 1, 1, 0]) == []


@pytest.mark.parametrize("m", [2, 6])
def test_retuning_keeps_the_history(m):
    decider = Decider(Policy(warning=1.0, critical=5.0, n=2, m=4), ids())
    decider.steps(np.array([0.0, 1.0]), np.array([0.0, 2.0]))
    decider.retune(Policy(warning=1.0, critical=5.0, n=2, m=m))
    (raised,) = decider.steps(np.array([2.0]), np.array([2.0]))
    assert raised.state == "raised"


def test_the_configured_policy_takes_the_bundles_thresholds_unless_the_config_sets_them():
    thresholds = Thresholds(
        policy="false_alarm_budget",
        warning=2.0,
        critical=3.0,
        raw_warning=0.5,
        raw_critical=0.9,
        warning_far=0.01,
        critical_far=0.001,
        normal_rows=1000,
    )
    decision = Decision(critical=4.0, n=2, m=4, hysteresis=0.25, release=0.1, min_duration_s=5)
    spec = FeatureSpec(kind="process", channels=["a"])
    assert policy(decision, thresholds, spec) == Policy(
        warning=2.0,
        critical=4.0,
        warmup=10,
        n=2,
        m=4,
        hysteresis=0.25,
        min_duration_s=5.0,
        cooldown_s=60.0,
        release=0.1,
    )


class Part:
    def __init__(self, device, ends, data):  # type: ignore[no-untyped-def]
        self.device, self.ends, self.data = device, np.asarray(ends, float), np.asarray(data)


def test_the_decision_stage_keeps_each_device_apart_and_gates_on_its_data():
    decisions = Decisions(ids())
    gate = ChannelFloor(index=0, minimum=1.0)
    decisions.retune(Policy(warning=1.0, critical=5.0, gate=gate))
    running, idle = np.ones((3, 2)) * 2, np.zeros((3, 2))
    parts = [Part("a", [1, 2, 3], running), Part("b", [1, 2, 3], idle), Part("c", [], idle[:0])]
    verdicts = decisions.decide(parts, np.array([0.5, 3.0, 3.0, 9.0, 9.0, 9.0]))
    assert [(v.device, v.offset, v.peak, v.ts) for v in verdicts] == [
        ("a", 0, 3.0, 3.0),
        ("b", 3, 9.0, 3.0),
    ]
    assert [s.state for s in verdicts[0].steps] == ["raised"] and verdicts[1].steps == []
    decisions.forget("a")
    again = decisions.decide([Part("a", [4], running[:1])], np.array([3.0]))
    assert [s.state for s in again[0].steps] == ["raised"] and again[0].steps[0].alert_id == "a2"
