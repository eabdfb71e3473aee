"""Many machines in one agent: devices bound to their own models by name or pattern, each lane
swapped on its own, and machines that learn their normal on site and resume after a restart."""

import json
import re
import threading

import numpy as np
import pytest

from edgewatch.agent.alerts import Alert, AlertMaker
from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.config import ConfigError, validate
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.framing import Block
from edgewatch.agent.machines import Router
from edgewatch.agent.model import Model
from edgewatch.agent.onsite.baseline import Baseline
from edgewatch.agent.onsite.folders import folder_name
from edgewatch.agent.onsite.learner import Learner
from edgewatch.agent.onsite.settings import Learning
from edgewatch.agent.onsite.tuner import Tuner
from edgewatch.agent.pipeline import Pipeline
from edgewatch.agent.sinks.outputs import Sink
from edgewatch.sim.machine import (
    PROCESS_CHANNELS,
    Fault,
    Machine,
    simulate_process,
    simulate_waveform,
)

RATE = 25600.0
PROCESS = FeatureSpec(kind="process", channels=PROCESS_CHANNELS)
RECORD = {"kind": "record", "channels": ["a"]}
BASE = {
    "site": "s",
    "device": "g",
    "sources": [{"type": "mqtt", "topic": "sensors/#"}],
    "sinks": [{"type": "stdout"}],
    "mqtt": {},
}


class Kept(Sink):
    def __init__(self):
        super().__init__()
        self.alerts = []
        self.lock = threading.Lock()

    def _write(self, records):
        with self.lock:
            self.alerts += [r for r in records if isinstance(r, Alert)]


def config(machines, **extra):  # type: ignore[no-untyped-def]
    return validate({**BASE, "machines": machines, **extra})


def test_machines_claim_devices_by_name_or_pattern_and_override_the_decision_field_by_field():
    made = config(
        [
            {"name": "fans", "devices": ["fan-*", "blower"], "bundle": "/b/fan"},
            {"name": "pumps", "devices": ["pump-[12]"], "bundle": "/b/pump",
             "decision": {"warning": 2.5}},
        ],
        decision={"n": 2, "m": 4, "warning": 3.0},
    )  # fmt: skip
    fans, pumps = made.machines
    assert fans.claims("fan-7") and fans.claims("blower") and not fans.claims("fan")
    assert pumps.claims("pump-2") and not pumps.claims("pump-3")
    assert (pumps.decision.warning, pumps.decision.n, pumps.decision.m) == (2.5, 2, 4)
    assert fans.decision.warning == 3.0
    router = Router(made.machines, default=False, max_devices=2)
    assert router.route("fan-1").key == "machine:fans"
    assert router.route("pump-3") is None
    router.route("pump-1")
    assert [r.device for r in router.evicted()] == ["fan-1"]


@pytest.mark.parametrize(
    "machine, message",
    [
        ({"name": "a", "devices": ["x"]}, "either a bundle or a [learn] table"),
        ({"name": "a", "devices": ["x"], "bundle": "/b", "learn": {}}, "not both"),
        ({"name": "a", "devices": ["x"], "learn": {}}, "needs [features]"),
        ({"name": "a", "devices": ["x/y"], "bundle": "/b"}, "machines[0].devices[0]"),
        (
            {"name": "a", "devices": ["x"], "learn": {"min_rows": 10}, "features": RECORD},
            "min_rows (10) is too few for a gaussian model: it needs at least 167",
        ),
    ],
)  # fmt: skip
def test_a_bad_machine_is_one_line_with_its_path(machine, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config([machine])
    with pytest.raises(ConfigError, match="machines need names of their own: a repeat"):
        config([{"name": "a", "devices": ["x"], "bundle": "/b"}] * 2)


def _waveform(device, seconds=2.0, seed=1, faults=()):  # type: ignore[no-untyped-def]
    run = simulate_waveform(Machine(), seconds, RATE, seed=seed, faults=faults)
    step = 2560
    for start in range(0, run.signal.shape[1], step):
        yield Block(device, start / RATE, RATE, run.signal[:, start : start + step])


def _process(device, seconds, seed=1, faults=(), since=0):  # type: ignore[no-untyped-def]
    """The blocks of a simulated run of a process machine, from second ``since`` on."""
    run = simulate_process(seconds, seed, faults)
    for start in range(since, run.signal.shape[1], 10):
        yield Block(device, start, 1.0, run.signal[:, start : start + 10], PROCESS_CHANNELS)


def test_each_machine_scores_with_its_own_model_and_a_swap_touches_only_its_lane(bundles):
    made = config(
        [
            {"name": "fans", "devices": ["fan-*"], "bundle": str(bundles["fan"])},
            {"name": "pumps", "devices": ["pump-*"], "bundle": str(bundles["pump"])},
        ]
    )
    router = Router(made.machines, default=False, max_devices=100)
    pipe = Pipeline(None, AlertMaker("s"), [], router=router)
    for machine in made.machines:
        assert machine.bundle is not None
        pipe.swap(Model.load(verify_bundle(machine.bundle), Decision()), f"machine:{machine.name}")
    blocks = [*_waveform("fan-1"), *_process("pump-1", 60), *_process("lathe", 10)]
    done = pipe.process(blocks)
    scored = {part.device for part in done.parts}
    assert scored == {"fan-1", "pump-1"} and pipe.dropped["no_model"] == 1
    assert pipe.model_of("machine:fans").bundle.manifest.name == "fan"
    pipe.swap(Model.load(verify_bundle(bundles["fan-2"]), Decision()), "machine:fans")
    pipe.process(list(_process("pump-1", 80, since=60)))
    assert pipe.model_of("machine:fans").bundle.manifest.version == "2"
    assert pipe.model_of("machine:pumps").bundle.manifest.name == "pump"
    history = pipe.model_of("machine:pumps").history  # its first rows only fill the history
    assert pipe.registry.value("device_windows_scored_total", "pump-1") == 80 - (history - 1)


LEARN = {"min_rows": 1000, "duration_s": 3600}


def _learning(folder, kept, reports):  # type: ignore[no-untyped-def]
    pumps = {"name": "pumps", "devices": ["pump-*"], "learn": LEARN}
    made = config(
        [{**pumps, "features": PROCESS.model_dump()}],
        learning_dir=str(folder),
        decision={"warmup_windows": 0, "cooldown_s": 0},
    )
    router = Router(made.machines, default=False, max_devices=100)
    pipe = Pipeline(None, AlertMaker("s"), [kept], router=router)
    pipe.learner = Learner(
        folder, pipe.stream_metrics, lambda route, m: pipe.swap(m, route.key), reports.append
    )
    pipe.tuner = Tuner(pipe.learner)
    return pipe


def test_a_machine_learns_its_normal_then_scores_and_a_restart_resumes_it(tmp_path):
    kept, reports = Kept(), []
    pipe = _learning(tmp_path, kept, reports)
    assert pipe.learner is not None
    fault = Fault(kind="step", start=6000, end=6600, severity=4)
    run = list(_process("pump-1", 7200, faults=(fault,)))  # blocks of 10 s
    pipe.process(run[:200])
    # The first 30 rows only fill the rolling statistics (the spec's history).
    assert pipe.learner.states()["pump-1"]["rows"] == 1970
    assert [r["event"] for r in reports] == ["learning"]
    assert pipe.dropped == {}

    pipe.learner.save()  # as the agent stops
    resumed = _learning(tmp_path, Kept(), [])  # a restart while learning, its rolling state lost
    resumed.process(run[200:204])
    assert resumed.learner is not None and resumed.learner.states()["pump-1"]["rows"] == 1980

    pipe.process(run[200:364])
    assert pipe.learner.states()["pump-1"]["state"] == "fitting"
    pipe.learner._jobs.get_nowait()()  # the fitting thread's turn
    assert reports[-1]["event"] == "learned" and reports[-1]["rows"] == 3610
    bundle = tmp_path / folder_name("pump-1") / "bundle"
    assert verify_bundle(bundle).manifest.origin == "on_site"
    done = pipe.process(run[364:700])
    assert [(a.state, a.started_at.timestamp()) for a in kept.alerts[:1]] == [("raised", 6002)]
    assert sum(len(s) for s in done.scores) == 3360

    again = _learning(tmp_path, Kept(), [])
    again.process(run[700:])
    model = again.model_of("device:pump-1")
    assert model is not None
    assert model.bundle.manifest_sha256 == verify_bundle(bundle).manifest_sha256


def test_a_baseline_survives_a_restart_and_stays_within_its_bound(tmp_path):
    settings = Learning(min_rows=200, max_rows=250, duration_s=0)
    baseline = Baseline(tmp_path / "b", PROCESS, settings)
    rows = np.arange(400 * 24, dtype=np.float32).reshape(400, 24)
    baseline.add(np.arange(400.0), rows)
    assert baseline.count <= 250 and baseline.stride == 2
    assert np.array_equal(baseline.matrix()[:5, 0], rows[[0, 2, 4, 6, 8], 0])
    baseline.save()
    resumed = Baseline(tmp_path / "b", PROCESS, settings)
    assert resumed.count == baseline.count and resumed.stride == 2
    assert np.array_equal(resumed.matrix(), baseline.matrix()) and resumed.complete
    other = FeatureSpec(kind="process", channels=PROCESS_CHANNELS, history=10)
    assert Baseline(tmp_path / "b", other, settings).count == 0
    (tmp_path / "b" / "baseline.npy").write_bytes(b"\x93NUMPY garbage")
    assert Baseline(tmp_path / "b", PROCESS, settings).count == 0


def test_a_hostile_device_name_gets_a_folder_of_its_own():
    assert folder_name("pump-1") == "pump-1"
    for hostile in ("../etc", "a/b", "", ".hidden", "x" * 65, "pump\0"):
        name = folder_name(hostile)
        assert name.startswith("device-") and "/" not in name and len(name) == 39


def test_one_agent_scores_shipped_machines_learns_another_and_a_bad_bundle_stops_only_its_own(
    broker, bundles, tmp_path
):
    from tests.conftest import Subscriber, wait_for
    from tests.test_agent import ROOT, AgentProcess, mqtt_body, simulate

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{}")
    machines = f"""
[[machines]]
name = "pumps"
devices = ["pump-*"]
learn = {{ min_rows = 200, duration_s = 0 }}
features = {{ kind = "process", channels = {list(PROCESS_CHANNELS)} }}
[[machines]]
name = "presses"
devices = ["press-*"]
bundle = "{broken}"
"""
    subscriber = Subscriber(broker.port, ROOT + "#")
    top = f'learning_dir = "{tmp_path / "learned"}"\n'
    agent = AgentProcess(tmp_path, mqtt_body(broker.port) + machines, bundles["fan"], top=top)
    try:

        def health() -> dict[str, object]:
            code, body = agent.get("/healthz")
            return json.loads(body) if code else {}

        wait_for(lambda: health().get("model") == "fan:1", what="the default model")
        assert agent.get("/healthz")[0] == 503
        health = health()
        assert health["model"] == "fan:1" and health["waiting_for_bundle"] == ["machine:presses"]
        refused = 'edgewatch_model_reloads_total{lane="machine:presses",result="refused"}'
        assert agent.metric(refused) == 1

        url = f"mqtt://127.0.0.1:{broker.port}/sensors/pump-1"
        simulate("--to", url, "--kind", "process", "--duration", "400", "--device", "pump-1",
                 "--block", "10")  # fmt: skip

        def events() -> list[dict[str, object]]:
            return [p for p in subscriber.payloads("status") if isinstance(p, dict)]

        wait_for(lambda: any(e["event"] == "learned" for e in events()), 30, "pump-1 learned")
        events = events()
        learned = next(e for e in events if e["event"] == "learned")
        assert learned["device"] == "pump-1" and learned["rows"] >= 200
        assert any(e["event"] == "learning" and e["device"] == "pump-1" for e in events)
        simulate("--to", f"mqtt://127.0.0.1:{broker.port}/sensors/fan-3", "--duration", "1",
                 "--device", "fan-3")  # fmt: skip
        simulate("--to", url, "--kind", "process", "--duration", "60", "--device", "pump-1",
                 "--block", "10", "--seed", "1")  # fmt: skip
        wait_for(lambda: agent.metric('edgewatch_device_windows_scored_total{device="pump-1"}') > 0)
        wait_for(
            lambda: agent.metric('edgewatch_device_windows_scored_total{device="fan-3"}') == 49
        )
        health = json.loads(agent.get("/healthz")[1])
        assert set(health["lanes"]) == {"default", "device:pump-1"}
        assert health["lanes"]["device:pump-1"].startswith("pump-1:")
        assert (tmp_path / "learned" / "pump-1" / "bundle" / "manifest.json").exists()
        assert agent.stop() == 0
    finally:
        if agent.process.poll() is None:
            agent.process.kill()
