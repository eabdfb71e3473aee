"""The agent config: the example is valid, every bad field is named, env and secrets work."""

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.agent.cli import main
from edgewatch.agent.config import ConfigError, load_config, parse_config
from edgewatch.agent.credentials import credential
from tests.conftest import edgewatch

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "agent.example.toml"
MINIMAL = """
site = "a"
device = "g"
[model]
bundle = "/b.tar"
[[sources]]
type = "serial"
device = "pump"
port = "/dev/ttyUSB0"
channels = ["x"]
sample_rate = 1000
[[sinks]]
type = "stdout"
"""


def test_the_example_config_is_accepted_and_uses_every_section(capsys, tmp_path, monkeypatch):
    key = tmp_path / "bundle.pub"
    key.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    monkeypatch.setenv("EDGEWATCH_MODEL__PUBLIC_KEY", str(key))
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "ok: 6 sources, 3 sinks" in out and "2 machines learn on site" in out
    config = load_config(EXAMPLE)
    assert config.model.public_key == key
    assert {s.type for s in config.sources} == {
        "serial",
        "mqtt",
        "replay",
        "modbus",
        "sparkplug",
        "opcua",
    }
    assert config.topics == "edgewatch/plant-a/gateway-7/"
    assert config.decision.gate is not None and config.http.host == "127.0.0.1"
    assert [m.name for m in config.machines] == ["fans", "pumps", "motors"]
    assert config.machines[0].decision.warning == 2.5 and config.machines[0].decision.n == 3


def test_the_readme_config_is_accepted_once_its_files_exist(tmp_path, monkeypatch):
    readme = (EXAMPLE.parents[1] / "README.md").read_text().split("## Configuring", 1)[1]
    text = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    for name in ("bundle.pub", "ca.crt", "gateway-7.crt", "mqtt-client.key"):
        (tmp_path / name).write_text("-")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = parse_config(text.replace("/etc/edgewatch/", f"{tmp_path}/"), env={})
    assert config.mqtt is not None and config.mqtt.tls is not None
    assert credential(config.mqtt.tls.key) == tmp_path / "mqtt-client.key"
    assert [s.type for s in config.sources] == ["serial"]


def test_defaults_fill_a_minimal_config():
    config = parse_config(MINIMAL, env={})
    assert config.decision.n == 3 and config.spool.max_rows == 100_000
    assert config.client_id == "edgewatch-a-g" and config.model.threads == 1


@pytest.mark.parametrize(
    "edit, line",
    [
        (
            lambda t: t.replace('port = "/dev/ttyUSB0"', "port = 5"),
            "sources[0].port: Input should be",
        ),
        (lambda t: t.replace("sample_rate = 1000", "sample_rate = 0"), "sources[0].sample_rate:"),
        (lambda t: t.replace("= 1000", "= 1000\nbaudrate = 1234"), "baudrate 1234 is not one of"),
        (lambda t: t.replace('type = "serial"', 'type = "usb"'), "sources[0]: Input tag 'usb'"),
        (lambda t: t.replace('type = "stdout"', 'type = "mqtt"'), "sinks[0] need an [mqtt] broker"),
        (lambda t: t.replace('device = "g"', 'device = "g/h"'), "device: String should match"),
        (lambda t: t + "[decision]\nn = 6\nm = 5\n", "decision: n (6) of m (5)"),
        (lambda t: t + "[decision]\nwarning = 3\ncritical = 2\n", "critical must not be below"),
        (lambda t: t + "[decision]\nwarning = nan\n", "decision.warning: Input should be a finite"),
        (
            lambda t: t + "[decision]\ncritical = inf\n",
            "decision.critical: Input should be a finite",
        ),
        (
            lambda t: t + '[decision.gate]\ntype = "process"\nchannel = "a"\nminimum = nan\n',
            "decision.gate.minimum: Input should be a finite number",
        ),
        (
            lambda t: t + '[decision.gate]\ntype = "rms"\nfloor = inf\n',
            "decision.gate.floor: Input should be a finite number",
        ),
        (
            lambda t: t + "[decision]\nrelease = 1\n",
            "decision.release: Input should be less than 1",
        ),
        (lambda t: t + '[decision.gate]\ntype = "rms"\nfloor = -1\n', "decision.gate.floor:"),
        (lambda t: t + "[http]\nport = 70000\n", "http.port: Input should be less than"),
        (lambda t: 'topic_root = "a/{plant}/"\n' + t, "may use only {site} and {device}"),
        (lambda t: 'topic_root = "a/#/"\n' + t, "topic_root: String should match"),
        (lambda t: "surprise = 1\n" + t, "surprise: Extra inputs are not permitted"),
        (lambda t: t.replace("[model]", "[modle]"), "modle: Extra inputs are not permitted"),
        (
            lambda t: t.replace('bundle = "/b.tar"', ""),
            "nothing to score with: give model.bundle, or [[machines]]",
        ),
        (
            lambda t: t + "[mqtt]\npassword_file = '/etc/hostname'\n",
            "mqtt: password_file needs a username",
        ),
        (
            lambda t: t + "[mqtt]\nusername = 'u'\npassword_file = 'p'\n",
            "mqtt.password_file: cannot",
        ),
        (lambda t: t + "[mqtt]\n[mqtt.tls]\nca = '/nope.crt'\n", "cannot read /nope.crt"),
        (
            lambda t: t + "[mqtt]\n[mqtt.tls]\nca = '/etc/hostname'\ncert = '/etc/hostname'\n",
            "mqtt.tls: cert and key go",
        ),
        (
            lambda t: (
                t + "[[sources]]\ntype='replay'\ndevice='pump'\npath='x.csv'\n"
                "channels=['a']\nsample_rate=1\n"
            ),
            "sources: a device comes from one source, not several",
        ),
        (
            lambda t: (
                t + "[[sources]]\ntype='replay'\ndevice='r'\npath='x.csv'\nchannels=['a']\n"
                "sample_rate=1\nspeed=0\n"
            ),
            "sources[1]: speed must be above 0",
        ),
        (lambda t: t + "[oops", "not valid TOML"),
    ],
)
def test_each_problem_is_one_line_with_its_path(edit, line):
    with pytest.raises(ConfigError) as caught:
        parse_config(edit(MINIMAL), env={})
    assert line in str(caught.value)


def test_several_problems_are_reported_together(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text(
        MINIMAL.replace("sample_rate = 1000", "sample_rate = -1") + "[http]\nport = 0\n"
    )
    assert main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"{path}: sources[0].sample_rate: Input should be greater than 0",
        f"{path}: http.port: Input should be greater than or equal to 1",
    ]
    assert main(["check-config", str(tmp_path / "missing.toml")]) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_environment_overrides_any_field():
    env = {
        "EDGEWATCH_SITE": "plant-b",
        "EDGEWATCH_SOURCES__0__PORT": "/dev/ttyS3",
        "EDGEWATCH_SOURCES__0__BAUDRATE": "9600",
        "EDGEWATCH_DECISION__N": "2",
        "EDGEWATCH_HTTP__HOST": "0.0.0.0",
        "PATH": "/usr/bin",
    }
    config = parse_config(MINIMAL, env=env)
    assert config.site == "plant-b" and config.sources[0].port == "/dev/ttyS3"
    assert config.sources[0].baudrate == 9600 and config.decision.n == 2
    assert config.http.host == "0.0.0.0"
    with pytest.raises(ConfigError, match=r"EDGEWATCH_SOURCES__5__PORT: no sources\.5"):
        parse_config(MINIMAL, env={"EDGEWATCH_SOURCES__5__PORT": "x"})
    with pytest.raises(ConfigError, match=r"decision\.n: Input should be a valid integer"):
        parse_config(MINIMAL, env={"EDGEWATCH_DECISION__N": "many"})


def test_secrets_come_from_files_and_systemd_credentials(tmp_path, monkeypatch):
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    text = MINIMAL + "[mqtt]\nusername = 'gw'\npassword_file = 'mqtt-password'\n"
    with pytest.raises(ConfigError, match="cannot read mqtt-password"):
        parse_config(text, env={})
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = parse_config(text, env={})
    assert config.mqtt is not None and config.mqtt.password() == "s3cret"
    absolute = (
        MINIMAL + f"[mqtt]\nusername = 'gw'\npassword_file = '{tmp_path / 'mqtt-password'}'\n"
    )
    assert parse_config(absolute, env={}).mqtt.password() == "s3cret"


@pytest.mark.integration
def test_check_config_and_run_refuse_the_same_files_and_names(tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    key = tmp_path / "bundle.pub"
    key.write_text("not a key")
    path = tmp_path / "agent.toml"
    path.write_text(
        MINIMAL.replace('bundle = "/b.tar"', f'bundle = "/b.tar"\npublic_key = "{key}"')
        .replace('type = "stdout"', f'type = "jsonl"\npath = "{folder}"')
        .replace('site = "a"', f'site = "a"\nfeedback_db = "{folder}"')
        + '[http]\nhost = "no-such-host.invalid"\n'
    )
    expected = [
        f"{path}: model.public_key: public key {key}: not an Ed25519 key",
        f"{path}: feedback_db: {folder} is a directory, not a file",
        f"{path}: sinks[0].path: {folder} is a directory, not a file",
        f"{path}: http.host: cannot resolve 'no-such-host.invalid'",
    ]
    assert main(["check-config", str(path)]) == 2
    checked = capsys.readouterr().err.strip().splitlines()
    run = edgewatch("run", "--config", path, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    ran = [line.removeprefix("edgewatch run: ") for line in run.stderr.strip().splitlines()]
    for lines in (checked, ran):
        assert len(lines) == len(expected)
        assert all(line.startswith(want) for line, want in zip(lines, expected, strict=True))


def test_check_config_refuses_a_bundle_the_agent_would_refuse(waveform_bundle, tmp_path, capsys):
    path = tmp_path / "agent.toml"
    gate = '[decision.gate]\ntype = "process"\nchannel = "x"\nminimum = 1\n'
    path.write_text(MINIMAL.replace("/b.tar", str(waveform_bundle)) + gate)
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{path}: model.bundle: decision.gate: a process gate reads a channel of each row, and "
        "this model takes waveform windows: use an rms gate"
    )
    path.write_text(MINIMAL.replace("/b.tar", str(waveform_bundle)))
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith("1 of 1 bundles verified")
