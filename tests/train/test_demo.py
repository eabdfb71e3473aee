"""``edgewatch demo`` as a newcomer runs it: three faults caught, none invented."""

import json

from edgewatch.agent.alerts import Alert
from tests.conftest import edgewatch


def test_the_demo_catches_each_fault_and_raises_no_false_alert(tmp_path):
    out = tmp_path / "demo"
    run = edgewatch("demo", "--out", out, "--speed", "max", "--json", "-q")
    summary = json.loads(run.stdout)
    assert [f["kind"] for f in summary["faults"]] == ["outer_race", "imbalance", "dropout"]
    assert all(f["delay_s"] is not None and 0 < f["delay_s"] < 2.0 for f in summary["faults"])
    assert summary["false_alerts"] == 0
    alerts = [
        Alert.model_validate_json(line) for line in (out / "alerts.jsonl").read_text().splitlines()
    ]
    assert [a.state for a in alerts] == ["raised", "cleared"] * 3
    assert len({a.alert_id for a in alerts}) == 3
    assert all(a.features for a in alerts if a.state == "raised")
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "bundle" / "manifest.json").exists()
    assert "outer_race  detected after" in run.stderr


def test_a_second_demo_run_replaces_the_alerts_instead_of_appending(tmp_path):
    out = tmp_path / "demo"
    for _ in range(2):
        edgewatch("demo", "--out", out, "--speed", "max", "-q")
    assert len((out / "alerts.jsonl").read_text().splitlines()) == 6


def test_a_bad_speed_is_one_line_and_exit_2(tmp_path):
    run = edgewatch("demo", "--out", tmp_path, "--speed", "0", check=False)
    assert run.returncode == 2
    assert "speed must be above 0" in run.stderr
