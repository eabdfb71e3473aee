"""Real parts for the runtime tests: Mosquitto brokers on free ports (one with TLS and client
certificates made here with openssl), socat pseudo-terminal pairs, and trained bundles.

Everything here runs on an edge install with the [test] extra (``make test-edge``); what needs the
training libraries lives in ``tests/train/``."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

BUNDLES = Path(__file__).resolve().parent / "bundles"
REAL_PARTS = {"broker", "tls_broker", "ptys", "certificates"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a real part is ``integration`` (so marked, or by its fixtures); every
    other test is ``unit``."""
    for item in items:
        if item.get_closest_marker("integration") is None:
            if REAL_PARTS & set(getattr(item, "fixturenames", ())):
                item.add_marker(pytest.mark.integration)
            else:
                item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session", autouse=True)
def native_kernels() -> Path:
    """The native kernels, built as ``edgewatch warmup`` builds them: agents that the tests start
    run what a gateway runs."""
    from edgewatch.kernels import native

    return native.build()


@pytest.fixture(scope="module", params=["jit", "native"])
def kernel_form(request):  # type: ignore[no-untyped-def]
    """Each compiled form of the kernels in turn, for the featurizers a test creates."""
    from edgewatch.kernels import runtime

    kernels = runtime.select(1 if request.param == "native" else None)
    assert kernels.form == request.param, kernels.why
    yield kernels
    runtime.select()


def edgewatch(*args, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The ``edgewatch`` command, run as a user would, in this interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "edgewatch.agent.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=check,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _required(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        raise RuntimeError(f"{program} is not installed; `make test` installs it (as root)")
    return path


@dataclass
class Mosquitto:
    """A broker process; ``stop`` and ``start`` again on the same port."""

    config: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [_required("mosquitto"), "-c", str(self.config)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                assert self.process is not None and self.process.poll() is None, (
                    self.log.read_text()
                )
                return False

        wait_for(listening, what=f"mosquitto on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def _broker(folder: Path, extra: str = "") -> Mosquitto:
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        f"persistence true\npersistence_location {folder}/\n"
        "max_queued_messages 100000\n"
        "max_inflight_messages 100\n" + ("user root\n" if os.geteuid() == 0 else "") + extra
        # As root, mosquitto would switch to its own user, who cannot read pytest's folders.
    )
    return Mosquitto(config, port, folder / "mosquitto.log")


@pytest.fixture
def broker(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    mosquitto = _broker(folder)
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


class Subscriber:
    """A test client that keeps every message on ``topic`` (a persistent session, so a broker
    restart loses nothing queued for it)."""

    def __init__(self, port: int, topic: str = "#", tls: "Certificates | None" = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(0.05, 0.5)
        if tls is not None:
            self.client.tls_set(str(tls.ca), str(tls.client_cert), str(tls.client_key))
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        # Messages published from here on arrive live (retain flag 0), not as retained copies.
        assert subscribed.wait(10), f"no subscription to {topic} on port {port}"

    def payloads(self, suffix: str) -> list:  # type: ignore[type-arg]
        return [
            json.loads(m.payload) if m.payload[:1] in (b"{", b"[") else m.payload.decode()
            for m in list(self.messages)
            if m.topic.endswith(suffix)
        ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run([_required("openssl"), *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory) -> Certificates:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", d / "ca.key", "-out", d / "ca.crt")  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "localhost"), ("client", "gateway-1")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr")  # fmt: skip
        _openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.crt", "-CAkey",
                 d / "ca.key", "-CAcreateserial", "-days", "2", "-out", d / f"{name}.crt",
                 "-extfile", d / "san.cnf")  # fmt: skip
    return Certificates(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key"
    )


@pytest.fixture
def tls_broker(tmp_path, certificates):
    folder = tmp_path / "tls-broker"
    folder.mkdir()
    mosquitto = _broker(
        folder,
        f"cafile {certificates.ca}\ncertfile {certificates.server_cert}\n"
        f"keyfile {certificates.server_key}\nrequire_certificate true\n"
        "use_identity_as_username true\n",
    )
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@dataclass
class PtyPair:
    """Two linked pseudo-terminals made by socat: the device writes to ``device``, the agent
    reads ``agent``."""

    device: Path
    agent: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                _required("socat"),
                f"pty,raw,echo=0,link={self.device}",
                f"pty,raw,echo=0,link={self.agent}",
            ],
            stderr=self.log.open("ab"),
        )
        wait_for(lambda: self.device.exists() and self.agent.exists(), what="socat's ptys")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        wait_for(lambda: not self.agent.exists(), what="the ptys to go")


@pytest.fixture
def ptys(tmp_path):
    pair = PtyPair(tmp_path / "device-tty", tmp_path / "agent-tty", tmp_path / "socat.log")
    pair.start()
    yield pair
    pair.stop()


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """Copies of the trained bundles in ``tests/bundles/``, by name (``tests/train/make_bundles.py``
    says what each is): ``fan`` and ``fan-2``, two versions of an IsolationForest over three axes
    of 25.6 kHz vibration; ``pump``, a sequence autoencoder over process rows."""
    folder = tmp_path_factory.mktemp("bundles")
    return {
        path.name: Path(shutil.copytree(path, folder / path.name))
        for path in sorted(BUNDLES.iterdir())
        if path.is_dir()
    }


@pytest.fixture(scope="session")
def waveform_bundle(bundles: dict[str, Path]) -> Path:
    return bundles["fan"]
