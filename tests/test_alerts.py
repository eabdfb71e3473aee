"""Alert records, without the agent: sequence numbers per device, the features that drove an
alert, and what a restart closes."""

import numpy as np

from edgewatch.agent.alerts import AlertMaker
from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.decision import Transition


def step(state, index=0, ts=10.0):  # type: ignore[no-untyped-def]
    return Transition(state, "a1", "warning", 5.0, ts, 3.0, 2.0, index, "")


def test_each_device_counts_its_own_sequence_and_carries_on_after_a_restart(waveform_bundle):
    maker = AlertMaker("site", {"fan": 7})
    made = [
        maker.make(device, step("raised"), verify_bundle(waveform_bundle))
        for device in ("fan", "pump", "fan")
    ]
    assert [(a.device, a.sequence) for a in made] == [("fan", 8), ("pump", 1), ("fan", 9)]
    assert made[0].model.name == "fan" and made[0].site == "site"


def test_an_alert_names_the_features_farthest_from_normal_first(waveform_bundle):
    bundle = verify_bundle(waveform_bundle)
    stats = bundle.manifest.feature_stats
    assert stats is not None
    row = np.array(stats.mean)
    row[3] += 9 * stats.std[3]
    row[1] -= 4 * stats.std[1]
    maker = AlertMaker("site")
    raised = maker.make("fan", step("raised"), bundle, row)
    names = bundle.manifest.feature_names
    assert [(d.name, d.deviation) for d in raised.features[:2]] == [
        (names[3], 9.0),
        (names[1], -4.0),
    ]
    assert maker.make("fan", step("cleared"), bundle, row).features == ()


def test_errors_explain_an_alert_when_the_model_gives_them(waveform_bundle):
    bundle = verify_bundle(waveform_bundle)
    maker = AlertMaker("site")
    errors = np.zeros(len(bundle.manifest.feature_names))
    errors[2] = 5.0
    raised = maker.make("fan", step("raised"), bundle, np.zeros_like(errors), errors)
    assert raised.features[0].measure == "reconstruction_error"
    assert raised.features[0].name == bundle.manifest.feature_names[2]


def test_a_restart_clears_what_was_open_with_the_next_sequence(waveform_bundle):
    maker = AlertMaker("site")
    raised = maker.make("fan", step("raised"), verify_bundle(waveform_bundle), None)
    cleared = maker.closed_by_restart(raised, 100.0)
    assert (cleared.state, cleared.reason, cleared.sequence) == ("cleared", "restart", 2)
    assert cleared.alert_id == raised.alert_id and cleared.ts.timestamp() == 100.0
