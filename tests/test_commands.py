"""The runtime's commands as a user runs them: simulate to a file, replay it, warm the cache."""

import json
from datetime import datetime

import pytest

from tests.conftest import edgewatch

pytestmark = pytest.mark.integration


def test_a_simulated_fault_written_to_a_file_replays_as_one_alert(waveform_bundle, tmp_path):
    run = tmp_path / "run.csv"
    made = edgewatch("simulate", "--to", run, "--duration", "12", "--fault", "outer_race:5:9:3")
    assert "307200 rows" in made.stderr
    out = edgewatch("replay", "--bundle", waveform_bundle, "--data", run, "--device", "fan")
    alerts = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["state"] for a in alerts] == ["raised", "cleared"]
    assert (
        alerts[0]["device"] == "fan"
        and 5.0 <= datetime.fromisoformat(alerts[0]["started_at"]).timestamp() <= 5.3
    )
    assert "599 scored, 0 dropped" in out.stderr


def test_commands_refuse_bad_input_in_one_line(waveform_bundle, tmp_path):
    bad_fault = edgewatch("simulate", "--to", tmp_path / "x.csv", "--fault", "melt:1", check=False)
    assert bad_fault.returncode == 2 and "KIND:START:END" in bad_fault.stderr
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    replay = edgewatch("replay", "--bundle", waveform_bundle, "--data", wrong, check=False)
    assert replay.returncode == 2 and "no column 'x'" in replay.stderr
    assert "Traceback" not in replay.stderr
    nowhere = edgewatch("simulate", "--to", "mqtt://127.0.0.1:1/s", "--duration", "1", check=False)
    assert nowhere.returncode == 2 and "mqtt://127.0.0.1:1/s" in nowhere.stderr


def test_warmup_builds_the_kernels():
    lines = edgewatch("warmup").stdout.splitlines()
    assert [line.split(" kernels ready")[0] for line in lines] == [
        "edgewatch warmup: JIT",
        "edgewatch warmup: native",
    ]
