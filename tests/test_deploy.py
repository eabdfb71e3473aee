"""The systemd unit and the gateway install, checked by systemd's own tools and a real install
into a temporary root."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from edgewatch.agent.config import AgentConfig, Http, Spool
from tests.conftest import Certificates, Mosquitto, free_port, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "edgewatch.service"
INSTALL = ROOT / "deploy" / "install.sh"
EDGEWATCH = Path(sys.executable).parent / "edgewatch"
INSTALLED = "/opt/edgewatch/bin/edgewatch"
EDGE_FORBIDDEN = ("scikit-learn", "tensorflow", "tensorflow-cpu", "scipy", "skl2onnx", "tf2onnx")


def _here(tmp_path: Path) -> Path:
    """The unit, with its commands pointing at this checkout's edgewatch."""
    unit = tmp_path / "edgewatch.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(EDGEWATCH)))
    return unit


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    run = subprocess.run(
        ["systemd-analyze", "verify", _here(tmp_path)], capture_output=True, text=True
    )
    assert (run.returncode, run.stderr) == (0, "")


def test_the_unit_exposure_is_at_most_2_5():
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", UNIT],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Overall exposure level for edgewatch.service: (\d+\.\d)", run.stdout)
    assert found is not None, run.stdout[-500:]
    assert float(found.group(1)) <= 2.5


def _directives(text: str) -> list[tuple[str, str]]:
    """Every setting of [Service] with the comment block above its group of settings."""
    service = text.split("[Service]", 1)[1].split("[Install]", 1)[0]
    found: list[tuple[str, str]] = []
    why, after_setting = "", False
    for line in service.splitlines():
        if not line.strip():
            why, after_setting = "", False
        elif line.startswith("#"):
            why = (line if after_setting else why + line) + "\n"
            after_setting = False
        else:
            found.append((line, why))
            after_setting = True
    return found


def test_every_setting_of_the_service_has_a_why():
    directives = _directives(UNIT.read_text())
    assert len(directives) > 30
    assert [line for line, why in directives if not why] == []
    jit = dict(directives)["MemoryDenyWriteExecute=false"]
    assert "JIT" in jit or "compiles" in jit


def test_the_unit_and_the_config_agree_on_where_files_live():
    text = UNIT.read_text()
    assert "StateDirectory=edgewatch" in text
    assert "--config %E/edgewatch/agent.toml" in text
    assert "Environment=NUMBA_CACHE_DIR=%C/edgewatch" in text
    defaults = AgentConfig.model_fields["feedback_db"].default, Spool().path
    assert all(str(path).startswith("/var/lib/edgewatch/") for path in defaults)


def _install(
    *args: str | Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", INSTALL, *map(str, args)],
        capture_output=True,
        text=True,
        check=check,
        env={**os.environ, **(env or {})},
    )


def test_install_into_a_root_is_an_edge_install_that_is_idempotent_and_removable(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _install("--root", root)
    venv, config = root / "opt/edgewatch", root / "etc/edgewatch/agent.toml"
    unit = root / "etc/systemd/system/edgewatch.service"
    assert unit.read_text() == UNIT.read_text()
    wanted = root / "etc/systemd/system/multi-user.target.wants/edgewatch.service"
    assert wanted.is_symlink()
    assert config.read_text() == (ROOT / "deploy/agent.example.toml").read_text()
    assert (root / "etc/credstore").stat().st_mode & 0o777 == 0o700
    refused = subprocess.run(
        [venv / "bin/edgewatch", "check-config", config], capture_output=True, text=True
    )
    assert "model.public_key: cannot read /etc/edgewatch/bundle.pub" in refused.stderr
    key = tmp_path / "bundle.pub"
    key.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    checked = subprocess.run(
        [venv / "bin/edgewatch", "check-config", config],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGEWATCH_MODEL__PUBLIC_KEY": str(key)},
    )
    assert checked.returncode == 0, checked.stderr
    listed = subprocess.run(
        [venv / "bin/python", "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "edgewatch==" in listed
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not {"agent", "export", "kernels", "sim"} & {path.name for path in site.iterdir()}
    assert (site / "edgewatch" / "agent" / "cli.py").is_file()
    # The tools (training, benchmarks, the simulator) are not on a gateway.
    assert not {"export", "sim"} & {path.name for path in (site / "edgewatch").iterdir()}
    assert [p for p in EDGE_FORBIDDEN if f"\n{p}==" in "\n" + listed] == []
    warmup = subprocess.run(
        [venv / "bin/edgewatch", "warmup"],
        capture_output=True,
        text=True,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert "edgewatch warmup: native kernels ready" in warmup.stdout, warmup.stderr
    for command in (["demo"], ["bench"], ["simulate"], ["train", config, "-o", tmp_path / "b"]):
        run = subprocess.run([venv / "bin/edgewatch", *command], capture_output=True, text=True)
        assert run.returncode == 2 and "not part of the gateway install" in run.stderr

    config.write_text(config.read_text() + "# edited on site\n")
    again = _install("--root", root, env={"CXX": "no-such-g++"})
    assert "keeping" in again.stdout
    warning = "warning: no C++ compiler (no-such-g++): the agent will run the JIT kernels"
    assert warning in again.stderr
    assert "apt install gcc g++ python3-dev" in again.stderr
    assert config.read_text().endswith("# edited on site\n")
    assert wanted.is_symlink()

    _install("--root", root, "--uninstall")
    assert not venv.exists() and not unit.exists() and not wanted.exists()
    assert config.exists()
    _install("--root", root, "--uninstall", "--purge")
    assert not config.parent.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option --bogus"),
        (["--root", "/nonexistent/edgewatch"], "no such directory"),
        (["--root", "/tmp", "--start"], "does not go with --root"),
    ],
)
def test_install_refuses_wrong_options_with_one_line(args, message):
    run = _install(*args, check=False)
    assert run.returncode == 2
    assert message in run.stderr


def _example_broker(folder: Path, certificates: Certificates) -> tuple[Mosquitto, int]:
    """deploy/mosquitto as shipped, with this test's certificates, files and free ports."""
    shipped = ROOT / "deploy" / "mosquitto"
    gateways, people = free_port(), free_port()
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", folder / "passwd", "operations", "s3cret"], check=True
    )
    (folder / "edgewatch.acl").write_text((shipped / "edgewatch.acl").read_text())
    text = (shipped / "edgewatch.conf").read_text()
    for old, new in (
        ("/etc/mosquitto/edgewatch.acl", folder / "edgewatch.acl"),
        ("/etc/mosquitto/edgewatch.passwd", folder / "passwd"),
        ("/var/lib/mosquitto/", f"{folder}/"),
        ("/etc/mosquitto/certs/ca.crt", certificates.ca),
        ("/etc/mosquitto/certs/broker.crt", certificates.server_cert),
        ("/etc/mosquitto/certs/broker.key", certificates.server_key),
        ("listener 8883", f"listener {gateways} 127.0.0.1"),
        ("listener 8884", f"listener {people} 127.0.0.1"),
    ):
        assert old in text
        text = text.replace(old, str(new))
    config = folder / "mosquitto.conf"
    config.write_text(text + ("user root\n" if os.geteuid() == 0 else ""))
    return Mosquitto(config, gateways, folder / "mosquitto.log"), people


class _Client:
    """A client of the example broker that keeps what it receives."""

    def __init__(self, port: int, ca: Path, cert: tuple[Path, Path] | None = None,
                 login: tuple[str, str] | None = None) -> None:  # fmt: skip
        self.received: list[str] = []
        self.refused: int | None = None
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.tls_set(str(ca), *(map(str, cert) if cert else ()))
        if login:
            self.client.username_pw_set(*login)
        self.client.on_connect = self._connected
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _connected(self, client, userdata, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            self.refused = reason.value
        self.ready.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_example_broker_keeps_each_party_inside_its_topics(tmp_path, certificates):
    broker, people = _example_broker(tmp_path, certificates)
    broker.start()
    gateway = _Client(
        broker.port, certificates.ca, (certificates.client_cert, certificates.client_key)
    )
    operations = _Client(people, certificates.ca, login=("operations", "s3cret"))
    stranger = _Client(people, certificates.ca, login=("operations", "wrong"))
    try:
        for client in (gateway, operations, stranger):
            assert client.ready.wait(10)
        assert (gateway.refused, operations.refused) == (None, None)
        assert stranger.refused is not None
        own = "edgewatch/plant-a/gateway-1/"
        gateway.client.subscribe("edgewatch/#", qos=1)
        operations.client.subscribe("edgewatch/#", qos=1)
        time.sleep(0.3)
        for topic in (own + "alerts", "edgewatch/plant-a/gateway-2/alerts", own + "scores"):
            gateway.client.publish(topic, b"{}", qos=1).wait_for_publish(5)
        for topic in (own + "alerts-forged", own + "alerts", own + "feedback", own + "model"):
            operations.client.publish(topic, b"{}", qos=1).wait_for_publish(5)
        wait_for(lambda: len(gateway.received) >= 2 and len(operations.received) >= 4)
        time.sleep(0.3)
        assert operations.received == [own + s for s in ("alerts", "scores", "feedback", "model")]
        assert gateway.received == [own + "feedback", own + "model"]
    finally:
        for client in (gateway, operations, stranger):
            client.close()
        broker.stop()


def test_the_prometheus_example_scrapes_the_agent_where_it_listens():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "edgewatch"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"{Http().host}:{Http().port}"]
    dashboard = json.loads((ROOT / "deploy/grafana/edgewatch.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert 'up{job="edgewatch"}' in exprs
