"""The agent end to end, as ``edgewatch run`` processes: real brokers, real ptys, real files,
and the faults a gateway meets (a broker that goes away, kill -9, a tampered bundle)."""

import csv
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgewatch.agent.bundle import MANIFEST, verify_bundle
from edgewatch.export.bench.fuzz import PARSERS, mutate
from edgewatch.sim.machine import Fault, Machine, simulate_waveform
from tests.conftest import Subscriber, free_port, wait_for

pytestmark = pytest.mark.integration

ROOT = "edgewatch/plant/gw1/"
REPO = Path(__file__).resolve().parent.parent
FAULT = "outer_race:5:9:3"
KERNELS = 'edgewatch_kernels_info{{form="{}"}}'


class AgentProcess:
    def __init__(
        self,
        tmp_path: Path,
        body: str,
        bundle: Path,
        name: str = "agent",
        model: str = "",
        top: str = "",
    ) -> None:
        self.http = free_port()
        self.folder = tmp_path
        self.config = tmp_path / f"{name}.toml"
        self.config.write_text(
            f'site = "plant"\ndevice = "gw1"\n'
            f'spool.path = "{tmp_path / "spool.sqlite"}"\n'
            f'feedback_db = "{tmp_path / "feedback.sqlite"}"\n'
            f"http.port = {self.http}\n{top}"
            f'[model]\nbundle = "{bundle}"\n{model}'
            "[decision]\nwarmup_windows = 5\nn = 3\nm = 5\ncooldown_s = 0\n" + body
        )
        self.log = (tmp_path / f"{name}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgewatch.agent.cli", "run", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metric(self, line: str) -> float:
        for row in self.get("/metrics")[1].splitlines():
            if row.startswith(line + " "):
                return float(row.rsplit(" ", 1)[1])
        return 0.0

    def healthy(self) -> None:
        wait_for(lambda: self.get("/healthz")[0] == 200, timeout=30, what="a healthy agent")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code


def documented_metrics() -> set[str]:
    """The metrics the README's table and the Grafana dashboard name."""
    text = (REPO / "README.md").read_text() + (REPO / "deploy/grafana/edgewatch.json").read_text()
    names = set(re.findall(r"\b(edgewatch_[a-z_]+)", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names} - {"edgewatch_"}


def mqtt_body(port: int, source: bool = True) -> str:
    body = f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n[[sinks]]\ntype = "mqtt"\n'
    if source:
        body += '[[sources]]\ntype = "mqtt"\ntopic = "sensors/#"\nformat = "binary"\n'
    return body


def simulate(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "edgewatch.agent.cli", "simulate", "--speed", "max", *args],
        check=True,
        capture_output=True,
    )


def test_simulated_sensor_over_mqtt_to_alerts_on_mqtt(broker, waveform_bundle, tmp_path):
    subscriber = Subscriber(broker.port, ROOT + "#")
    agent = AgentProcess(tmp_path, mqtt_body(broker.port), waveform_bundle)
    agent.healthy()
    wait_for(lambda: subscriber.payloads("status") == ["online"], what="online")
    url = f"mqtt://127.0.0.1:{broker.port}/sensors/fan"
    simulate("--to", url, "--duration", "12", "--fault", FAULT, "--device", "fan")
    wait_for(lambda: len(subscriber.payloads("alerts")) >= 2, timeout=30, what="alerts")
    alerts = subscriber.payloads("alerts")
    assert [a["state"] for a in alerts] == ["raised", "cleared"]
    raised = alerts[0]
    assert raised["device"] == "fan" and raised["site"] == "plant" and not raised["historical"]
    started = raised["started_at"]
    assert raised["features"] and raised["model"]["name"] == "fan"

    windows = (12 * 25600 - 1024) // 512 + 1
    wait_for(lambda: agent.metric("edgewatch_windows_scored_total") == windows)
    assert agent.metric("edgewatch_samples_in_total") == 12 * 25600
    assert (
        agent.metric(f'edgewatch_alerts_total{{severity="{raised["severity"]}",state="raised"}}')
        == 1
    )
    assert agent.metric("edgewatch_spool_depth") == 0
    assert agent.metric("edgewatch_mqtt_connected") == 1
    health = json.loads(agent.get("/healthz")[1])
    assert health["status"] == "ok" and health["model"] == "fan:1"
    assert health["kernels"] == "native" and agent.metric(KERNELS.format("native")) == 1
    exposed = set(re.findall(r"^# TYPE (\S+)", agent.get("/metrics")[1], re.M))
    assert documented_metrics() - exposed == set()

    # Operators label the alert; the label and the features are exported for retraining.
    labeller = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="operator")
    labeller.connect("127.0.0.1", broker.port)
    labeller.loop_start()
    labeller.publish(ROOT + "feedback", b'{"alert_id": "nope", "label": "anomaly"}', qos=1)
    labeller.publish(ROOT + "feedback", b'{"alert_id": 1}', qos=1)
    message = {"alert_id": raised["alert_id"], "label": "anomaly", "note": "bearing"}
    labeller.publish(ROOT + "feedback", json.dumps(message), qos=1).wait_for_publish(5)
    wait_for(lambda: agent.metric('edgewatch_feedback_total{result="ok"}') == 1)
    assert agent.metric('edgewatch_feedback_total{result="refused"}') == 2
    labeller.disconnect()

    assert agent.stop() == 0
    wait_for(lambda: subscriber.payloads("status")[-1] == "offline", what="offline on SIGTERM")
    out = tmp_path / "labels.csv"
    subprocess.run(
        [sys.executable, "-m", "edgewatch.agent.cli", "feedback", "export",
         "--config", agent.config, "--out", out],
        check=True, capture_output=True,
    )  # fmt: skip
    windows = list(csv.DictReader(out.open()))
    assert {(w["alert_id"], w["label"], w["note"]) for w in windows} == {
        (raised["alert_id"], "anomaly", "bearing")
    }
    assert [int(w["window"]) for w in windows] == list(range(len(windows)))
    row = windows[0]  # the window that raised it
    assert row["ts"].startswith(started[:10]) and float(row["ch0.rms"]) > 0


def test_serial_sensor_to_alerts_in_a_jsonl_file(ptys, waveform_bundle, tmp_path):
    out = tmp_path / "alerts.jsonl"
    body = (
        f'[[sources]]\ntype = "serial"\nport = "{ptys.agent}"\ndevice = "pump"\n'
        'channels = ["x", "y", "z"]\nsample_rate = 25600\nformat = "binary"\n'
        f'[[sinks]]\ntype = "jsonl"\npath = "{out}"\n'
    )
    agent = AgentProcess(tmp_path, body, waveform_bundle)
    agent.healthy()
    simulate("--to", f"serial:{ptys.device}", "--duration", "12", "--fault", FAULT)
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 2, timeout=30)
    states = [json.loads(line)["state"] for line in out.read_text().splitlines()]
    assert states == ["raised", "cleared"]
    assert agent.metric('edgewatch_frames_accepted_total{source="0:serial"}') == 120
    assert agent.stop() == 0


def recording(path: Path, seconds: float, faults=()) -> Path:
    run = simulate_waveform(Machine(), seconds, 25600, seed=11, faults=faults)
    np.save(path, run.signal.T.astype(np.float32))
    return path


def replay_body(path: Path) -> str:
    return (
        f'[[sources]]\ntype = "replay"\npath = "{path}"\ndevice = "fan"\n'
        'channels = ["x", "y", "z"]\nsample_rate = 25600\nspeed = "max"\n'
    )


def test_alerts_spooled_during_an_outage_survive_kill_9(broker, waveform_bundle, tmp_path):
    faulty = recording(
        tmp_path / "faulty.npy", 12, (Fault(kind="outer_race", start=5, end=9, severity=3),)
    )
    healthy = recording(tmp_path / "healthy.npy", 1)
    broker.stop()
    first = AgentProcess(
        tmp_path, mqtt_body(broker.port, False) + replay_body(faulty), waveform_bundle, "first"
    )
    first.healthy()
    wait_for(lambda: first.metric("edgewatch_spool_depth") == 2, timeout=30, what="2 spooled")
    first.stop(signal.SIGKILL)
    with sqlite3.connect(tmp_path / "spool.sqlite") as db:
        assert db.execute("SELECT count(*) FROM outbox WHERE kind = 'alert'").fetchone() == (2,)

    broker.start()
    subscriber = Subscriber(broker.port, ROOT + "#")
    wait_for(subscriber.client.is_connected, what="the subscriber")
    second = AgentProcess(
        tmp_path, mqtt_body(broker.port, False) + replay_body(healthy), waveform_bundle, "second"
    )
    wait_for(lambda: len(subscriber.payloads("alerts")) == 2, timeout=30, what="spooled alerts")
    alerts = subscriber.payloads("alerts")
    assert [a["state"] for a in alerts] == ["raised", "cleared"]
    assert [a["sequence"] for a in alerts] == [1, 2] and all(a["historical"] for a in alerts)
    wait_for(lambda: second.metric("edgewatch_spool_depth") == 0)
    assert subscriber.payloads("status") == ["online"]
    second.stop(signal.SIGKILL)
    wait_for(lambda: subscriber.payloads("status")[-1] == "offline", what="the last will")


def tamper(bundle: Path) -> None:
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))


def test_a_tampered_bundle_is_refused_and_the_old_model_keeps_scoring(
    broker, waveform_bundle, bundles, tmp_path
):
    watched = tmp_path / "bundles" / "fan"
    shutil.copytree(waveform_bundle, watched)
    subscriber = Subscriber(broker.port, ROOT + "#")
    notices = f'notice_root = "{watched.parent}"\n'
    agent = AgentProcess(tmp_path, mqtt_body(broker.port), watched, model=notices)
    agent.healthy()
    url = f"mqtt://127.0.0.1:{broker.port}/sensors/fan"
    simulate("--to", url, "--duration", "1")
    wait_for(lambda: agent.metric("edgewatch_windows_scored_total") == 49)

    def refused() -> float:
        """Refusals of the default lane's bundles, and of notices naming no lane."""
        lanes = ('lane="default"', 'lane=""')
        return sum(
            agent.metric(f'edgewatch_model_reloads_total{{{lane},result="refused"}}')
            for lane in lanes
        )

    tamper(watched)
    wait_for(lambda: refused() == 1)
    wait_for(lambda: any(isinstance(p, dict) for p in subscriber.payloads("status")))
    (notice,) = [p for p in subscriber.payloads("status") if isinstance(p, dict)]
    assert notice["event"] == "model_refused" and "model.onnx does not match" in notice["error"]
    simulate("--to", url, "--duration", "1")
    wait_for(lambda: agent.metric("edgewatch_windows_scored_total") == 98, what="old model scoring")
    sha = verify_bundle(waveform_bundle).model_sha256
    info = f'edgewatch_model_info{{lane="default",name="fan",version="1",sha256="{sha}"}}'
    assert agent.metric(info) == 1

    # A notice on the model topic installs a good bundle, from under model.notice_root only.
    manifest_sha = verify_bundle(bundles["fan-2"]).manifest_sha256
    publish = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet")
    publish.connect("127.0.0.1", broker.port)
    publish.loop_start()
    outside = {"path": str(bundles["fan-2"]), "sha256": manifest_sha}
    publish.publish(ROOT + "model", json.dumps(outside), qos=1).wait_for_publish(5)
    wait_for(lambda: refused() == 2)
    v2 = Path(shutil.copytree(bundles["fan-2"], watched.parent / "fan-2"))
    wrong = {"path": str(v2), "sha256": "0" * 64}
    publish.publish(ROOT + "model", json.dumps(wrong), qos=1).wait_for_publish(5)
    wait_for(lambda: refused() == 3)
    # Hostile notices are refused and counted; the watcher and the connection carry on.
    nul = {"path": str(v2) + "\0", "sha256": "0" * 64}
    escape = {"path": f"{watched.parent}/../fan-2", "sha256": manifest_sha}
    for hostile in (
        b"[" * 100_000,
        json.dumps(nul).encode(),
        b'{"path": ' + b"1" * 5000 + b"}",
        json.dumps(escape).encode(),
    ):
        publish.publish(ROOT + "model", hostile, qos=1).wait_for_publish(5)
    wait_for(lambda: refused() == 7)
    health = json.loads(agent.get("/healthz")[1])
    assert health["mqtt_connected"] and set(health["components"].values()) == {"running"}
    right = {"path": str(v2), "sha256": manifest_sha}
    publish.publish(ROOT + "model", json.dumps(right), qos=1).wait_for_publish(5)
    wait_for(lambda: agent.metric('edgewatch_model_reloads_total{lane="default",result="ok"}') == 2)
    wait_for(lambda: json.loads(agent.get("/healthz")[1])["model"] == "fan:2", what="model 2")
    publish.disconnect()
    assert agent.stop() == 0


def test_a_reloaded_bundle_goes_on_trial_and_an_operator_promotes_it(
    broker, waveform_bundle, bundles, tmp_path
):
    watched = tmp_path / "bundles" / "fan"
    shutil.copytree(waveform_bundle, watched)
    subscriber = Subscriber(broker.port, ROOT + "status")
    top = f'learning_dir = "{tmp_path / "learning"}"\n'
    top += "shadow = { reloads = true, duration_s = 3600, min_windows = 100000 }\n"
    agent = AgentProcess(tmp_path, mqtt_body(broker.port), watched, top=top)
    try:
        agent.healthy()
        shutil.rmtree(watched)
        shutil.copytree(bundles["fan-2"], watched)
        wait_for(lambda: "shadow_started" in events(subscriber), what="the trial")
        url = f"mqtt://127.0.0.1:{broker.port}/sensors/fan"
        simulate("--to", url, "--duration", "1")
        wait_for(lambda: agent.metric('edgewatch_shadow_windows{lane="default"}') == 49)
        assert json.loads(agent.get("/healthz")[1])["model"] == "fan:1"  # still in use
        assert agent.metric("edgewatch_windows_scored_total") == 49
        asked = subprocess.run(
            [sys.executable, "-m", "edgewatch.agent.cli", "shadow", "promote", "default",
             "--config", agent.config],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "the decision on default's candidate" in asked.stderr
        wait_for(lambda: "shadow_promoted" in events(subscriber), what="the promotion")
        (promoted,) = [e for e in subscriber.payloads("status") if isinstance(e, dict)][-1:]
        assert promoted["reason"] == "by command" and promoted["windows"] == 49
        assert promoted["candidate"] == "fan:2"
        wait_for(lambda: json.loads(agent.get("/healthz")[1])["model"] == "fan:2")
        assert agent.metric('edgewatch_shadow_decisions_total{result="promoted"}') == 1
    finally:
        assert agent.stop() == 0


def events(subscriber: Subscriber) -> list[object]:
    return [p["event"] for p in subscriber.payloads("status") if isinstance(p, dict)]


@pytest.mark.parametrize(
    "body, message",
    [
        ('[[sinks]]\ntype = "stdout"\n', "sources: Field required"),
        (
            '[[sources]]\ntype = "mqtt"\ntopic = "s"\n[[sinks]]\ntype = "stdout"\n',
            "need an [mqtt] broker section",
        ),
    ],
)
def test_run_refuses_a_bad_config_with_one_line_per_problem(tmp_path, body, message):
    config = tmp_path / "agent.toml"
    config.write_text(f'site = "s"\ndevice = "d"\n[model]\nbundle = "{tmp_path}"\n{body}')
    result = subprocess.run(
        [sys.executable, "-m", "edgewatch.agent.cli", "run", "--config", config],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_bundle_leaves_the_agent_unhealthy_until_it_arrives(waveform_bundle, tmp_path):
    later = tmp_path / "later"
    body = replay_body(recording(tmp_path / "r.npy", 0.2)) + '[[sinks]]\ntype = "stdout"\n'
    # More than one feature thread runs the JIT, and the agent says so.
    agent = AgentProcess(tmp_path, body, later, model="threads = 2\n")
    wait_for(lambda: agent.get("/healthz")[0] == 503, timeout=30, what="an unhealthy agent")
    health = json.loads(agent.get("/healthz")[1])
    assert health["model"] is None and health["kernels"] == "jit"
    assert agent.metric(KERNELS.format("jit")) == 1
    shutil.copytree(waveform_bundle, tmp_path / "staging")
    (tmp_path / "staging").rename(later)
    agent.healthy()
    assert (later / MANIFEST).exists() and agent.stop() == 0


def test_an_alert_open_at_kill_9_is_cleared_by_the_restart(broker, waveform_bundle, tmp_path):
    fault = (Fault(kind="outer_race", start=5, end=8, severity=3),)
    ending_in_a_fault = recording(tmp_path / "fault.npy", 8, fault)
    subscriber = Subscriber(broker.port, ROOT + "alerts")
    body = mqtt_body(broker.port, False) + replay_body(ending_in_a_fault)
    first = AgentProcess(tmp_path, body, waveform_bundle, "first")
    wait_for(lambda: subscriber.payloads("alerts"), timeout=30, what="the alert raised")
    wait_for(lambda: first.metric("edgewatch_spool_depth") == 0, what="the alert delivered")
    first.stop(signal.SIGKILL)
    (raised,) = subscriber.payloads("alerts")
    healthy = recording(tmp_path / "healthy.npy", 1)
    body = mqtt_body(broker.port, False) + replay_body(healthy)
    second = AgentProcess(tmp_path, body, waveform_bundle, "second")
    wait_for(lambda: len(subscriber.payloads("alerts")) == 2, what="the alert cleared")
    cleared = subscriber.payloads("alerts")[1]
    assert (cleared["state"], cleared["reason"]) == ("cleared", "restart")
    assert cleared["alert_id"] == raised["alert_id"]
    assert cleared["sequence"] == raised["sequence"] + 1
    assert second.stop() == 0
    third = AgentProcess(tmp_path, body, waveform_bundle, "third")
    third.healthy()
    assert third.stop() == 0 and len(subscriber.payloads("alerts")) == 2


def test_a_storm_of_hostile_messages_leaves_the_agent_scoring(broker, waveform_bundle, tmp_path):
    body = mqtt_body(broker.port, False) + (
        '[[sources]]\ntype = "mqtt"\ntopic = "json/#"\nformat = "json"\n'
        '[[sources]]\ntype = "mqtt"\ntopic = "sensors/#"\nformat = "binary"\n'
    )
    agent = AgentProcess(tmp_path, body, waveform_bundle)
    agent.healthy()
    storm = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="storm")
    storm.connect("127.0.0.1", broker.port)
    storm.loop_start()
    rng = np.random.default_rng(3)
    for name, topic in (("json", "json/fan"), ("block", "sensors/fan"), ("notice", ROOT + "model")):
        for _ in range(500):
            payload = mutate(rng, PARSERS[name].seeds)
            storm.publish(topic, payload, qos=1).wait_for_publish(5)
    storm.publish(ROOT + "feedback", b"[" * 100_000, qos=1).wait_for_publish(5)
    storm.disconnect()

    def counted(source: str) -> float:
        rows = agent.get("/metrics")[1].splitlines()
        return sum(
            float(row.rsplit(" ", 1)[1])
            for row in rows
            if row.startswith(("edgewatch_frames_accepted_total", "edgewatch_frames_rejected"))
            and f'source="{source}"' in row
        )

    # Every message is counted, taken or refused by reason.
    wait_for(lambda: counted("0:mqtt") == 500 and counted("1:mqtt") == 500, what="all counted")
    url = f"mqtt://127.0.0.1:{broker.port}/sensors/fan"
    simulate("--to", url, "--duration", "1")
    wait_for(lambda: agent.metric("edgewatch_windows_scored_total") >= 49, what="scoring")
    health = json.loads(agent.get("/healthz")[1])
    assert health["status"] == "ok" and set(health["components"].values()) == {"running"}
    assert "edgewatch_component_failures_total{" not in agent.get("/metrics")[1]
    assert agent.stop() == 0
