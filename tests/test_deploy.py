"""The systemd unit and the gateway install, checked by systemd's own tools and a real install
into a temporary root."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentConfig, Spool

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


def _install(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", INSTALL, *map(str, args)], capture_output=True, text=True, check=check
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
    checked = subprocess.run(
        [venv / "bin/edgewatch", "check-config", config], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    listed = subprocess.run(
        [venv / "bin/python", "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "edgewatch==" in listed
    assert [p for p in EDGE_FORBIDDEN if f"\n{p}==" in "\n" + listed] == []

    config.write_text(config.read_text() + "# edited on site\n")
    again = _install("--root", root)
    assert "keeping" in again.stdout
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
