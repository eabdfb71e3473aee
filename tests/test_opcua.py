"""The OPC UA source against a real asyncua server: subscriptions made rows, values of bad
quality, refused nodes, a lost server, and a secured endpoint with certificates made here and a
password; and ``edgewatch discover`` browsing it."""

import re
import threading
from pathlib import Path

import pytest
from asyncua import ua

from edgewatch.agent.cli import main
from edgewatch.agent.config import ConfigError, parse_config, validate
from edgewatch.agent.framing import Block
from edgewatch.agent.sources.opcua import OpcuaReader
from edgewatch.agent.sources.settings import OpcuaSource
from tests.conftest import free_port, wait_for
from tests.opcua_server import make_keys, serving

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[1] / "README.md"


def source(port: int, nodes: list[tuple[str, str]], **fields: object) -> OpcuaSource:
    return OpcuaSource.model_validate(
        {
            "type": "opcua",
            "url": f"opc.tcp://127.0.0.1:{port}/edgewatch/",
            "sampling_s": 0.05,
            "reconnect_max_s": 0.5,
            "nodes": [{"device": "boiler", "channel": c, "node_id": n} for c, n in nodes],
        }
        | fields
    )


def started(reader: OpcuaReader) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=reader.run, args=(stop,), daemon=True).start()
    return stop


def test_changes_become_rows_and_bad_values_are_counted() -> None:
    port = free_port()
    with serving(port) as boiler:
        nodes = [(c, boiler.node_id(c.title())) for c in ("temperature", "pressure", "running")]
        blocks: list[Block] = []
        reader = OpcuaReader(source(port, nodes), lambda b: blocks.append(b) or True)
        stop = started(reader)
        wait_for(lambda: blocks, what="the first row")
        assert blocks[0].channels == ("temperature", "pressure", "running")
        assert blocks[0].samples[:, 0].tolist() == [20.0, 1.5, 1.0]
        boiler.write("Temperature", 81.25)
        wait_for(lambda: blocks[-1].samples[0, 0] == 81.25, what="the change")
        seen = len(blocks)
        boiler.write("Pressure", 2.0, ua.StatusCodes.BadSensorFailure)
        wait_for(lambda: reader.counts.rejected["bad_status"] == 1, what="a bad value")
        boiler.write("Temperature", 82.0)
        wait_for(lambda: reader.counts.accepted >= 5, what="the next change")
        assert len(blocks) == seen, "no row while a channel's value is bad"
        boiler.write("Pressure", 2.5)
        wait_for(lambda: blocks[-1].samples[:, 0].tolist() == [82.0, 2.5, 1.0], what="rows again")
        stop.set()


def test_a_refused_node_is_counted_and_a_lost_server_reconnected() -> None:
    port = free_port()
    blocks: list[Block] = []
    with serving(port) as boiler:
        config = source(port, [("t", boiler.node_id("Temperature"))]).model_dump()
        ghost = {"device": "ghost", "channel": "x", "node_id": "ns=9;s=Nothing"}
        config["nodes"] = [*config["nodes"], ghost]
        reader = OpcuaReader(OpcuaSource.model_validate(config), lambda b: blocks.append(b) or True)
        stop = started(reader)
        wait_for(lambda: blocks, what="rows beside the refused node")
        assert reader.counts.rejected["bad_node"] == 1
        assert {b.device for b in blocks} == {"boiler"}
    wait_for(lambda: not reader.connected, what="the loss noticed")
    with serving(port) as boiler:
        wait_for(lambda: reader.sessions == 2, timeout=20, what="a new session")
        boiler.write("Temperature", 5.0)
        wait_for(lambda: blocks[-1].samples[0, 0] == 5.0, what="rows after it")
    assert reader.counts.rejected["link_down"] >= 1
    stop.set()


def test_a_secured_endpoint_with_certificates_and_a_password(tmp_path) -> None:
    server = make_keys(tmp_path, "server", "urn:freeopcua:python:server", server=True)
    client = make_keys(tmp_path, "client", "urn:edgewatch:client", server=False)
    (tmp_path / "password").write_text("s3cret\n")
    port = free_port()
    with serving(port, keys=server, users={"operator": "s3cret"}) as boiler:
        secured = {
            "security": "SignAndEncrypt",
            "certificate": str(client.certificate),
            "private_key": str(client.key),
            "server_certificate": str(server.certificate),
            "username": "operator",
            "password_file": str(tmp_path / "password"),
        }
        blocks: list[Block] = []
        nodes = [("t", boiler.node_id("Temperature"))]
        reader = OpcuaReader(source(port, nodes, **secured), lambda b: blocks.append(b) or True)
        stop = started(reader)
        wait_for(lambda: blocks, timeout=20, what="a row over the secured endpoint")
        stop.set()
        (tmp_path / "password").write_text("wrong")
        refused = OpcuaReader(source(port, nodes, **secured), lambda b: True)
        stop = started(refused)
        wait_for(lambda: refused.counts.rejected["link_down"] >= 2, what="refused logins")
        assert refused.sessions == 0
        open_ = OpcuaReader(source(port, nodes), lambda b: True)
        stop_open = started(open_)
        wait_for(
            lambda: open_.counts.rejected["link_down"] >= 1, what="no endpoint without security"
        )
        stop.set()
        stop_open.set()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security": "Sign"}, "goes with a certificate and a private_key"),
        ({"password_file": "/etc/hostname"}, "password_file needs a username"),
        ({"url": "http://plc:4840"}, "url: String should match"),
        ({"nodes": [{"device": "d", "channel": "c", "node_id": "Temperature"}]}, "node_id"),
        ({"certificate": "/nonexistent.der"}, "cannot read /nonexistent.der"),
    ],
)
def test_wrong_opcua_settings_are_named(fields: dict[str, object], message: str) -> None:
    opcua = {
        "type": "opcua",
        "url": "opc.tcp://plc:4840",
        "nodes": [{"device": "d", "channel": "c", "node_id": "ns=2;i=7"}],
    } | fields
    with pytest.raises(ConfigError, match=message):
        validate({"site": "s", "device": "g", "model": {"bundle": "b"}, "sources": [opcua],
                  "sinks": [{"type": "stdout"}]})  # fmt: skip


def test_discover_prints_the_variables_as_config_to_paste(capsys) -> None:
    port = free_port()
    with serving(port) as boiler:
        assert main(["discover", f"opcua://127.0.0.1:{port}/edgewatch/"]) == 0
        out = capsys.readouterr().out
        ids = {name: boiler.node_id(name) for name in ("Temperature", "Running", "Label")}
    assert "[[sources.nodes]]  # Boiler/Temperature (Double)" in out
    assert "[[sources.nodes]]  # Boiler/Running (Boolean)" in out
    assert f'node_id = "{ids["Label"]}"' in out and "# 4 variables" in out
    config = parse_config(
        'site = "s"\ndevice = "g"\n[model]\nbundle = "b"\n[[sinks]]\ntype = "stdout"\n' + out,
        env={},
    )
    (opcua,) = config.sources
    assert isinstance(opcua, OpcuaSource) and len(opcua.nodes) == 4
    assert {(n.device, n.channel) for n in opcua.nodes} >= {("Boiler", "Temperature")}
    assert main(["discover", f"opcua://127.0.0.1:{port}"]) == 1
    assert "Connect call failed" in capsys.readouterr().err
    assert main(["discover", "opcua://plc", "--depth", "0"]) == 2
    assert main(["discover", "http://plc"]) == 2
    assert "url: String should match" in capsys.readouterr().err


@pytest.mark.unit
def test_the_readme_opcua_example_passes_check_config(tmp_path, capsys, monkeypatch) -> None:
    section = README.read_text().split("#### OPC UA", 1)[1]
    text = re.search(r"```toml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    for name in ("opcua-client.der", "opcua-client.pem", "opcua-password"):
        (tmp_path / name).write_text("-")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = tmp_path / "agent.toml"
    config.write_text(text)
    assert main(["check-config", str(config)]) == 0, capsys.readouterr()
    assert "ok: 1 sources" in capsys.readouterr().out
