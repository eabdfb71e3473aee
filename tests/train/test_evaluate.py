"""Evaluation: metrics, the bundle report, the SKAB protocol, and the scoring benchmark."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.agent.cli import main
from edgewatch.export import skab
from edgewatch.export.detectors.params import KmeansParams
from edgewatch.export.metrics import Confusion, event_metrics, point_metrics, runs
from edgewatch.sim.machine import PROCESS_CHANNELS, Fault, simulate_process

SKAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "skab"


def test_confusion_and_rates_follow_their_definitions():
    c = Confusion.of(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 1)
    assert c.precision == pytest.approx(2 / 3) and c.recall == pytest.approx(2 / 3)
    assert c.far == 0.5 and c.mar == pytest.approx(1 / 3) and c.f1 == pytest.approx(2 / 3)
    assert (c + c).tp == 4 and Confusion(0, 0, 0, 0).f1 == 0.0


def test_point_metrics_rank_and_count():
    labels = np.array([0, 0, 0, 1, 1])
    m = point_metrics(np.array([0.1, 0.2, 0.6, 0.5, 0.9]), labels, 0.55)
    assert m["roc_auc"] == pytest.approx(5 / 6) and (m["tp"], m["fp"]) == (1.0, 1.0)
    assert np.isnan(point_metrics(np.ones(3), np.zeros(3), 0.5)["roc_auc"])


def test_events_count_detections_delays_and_false_alerts():
    labels = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0])
    flags = np.array([1, 0, 0, 1, 0, 0, 0, 0, 1, 1])
    e = event_metrics(flags, labels, seconds_per_row=2.0)
    assert runs(labels) == [(1, 4), (6, 8)]
    assert (e["events"], e["events_detected"], e["false_alert_events"]) == (2, 1, 2)
    assert e["detection_delay_s_median"] == 4.0


def process_csv(path, seed, faults):
    run = simulate_process(3600, seed, faults)
    header = "time," + ",".join(PROCESS_CHANNELS) + ",anomaly"
    lines = [header] + [
        f"{t}," + ",".join(f"{v:.5f}" for v in row) + f",{int(label != 0)}"
        for t, (row, label) in enumerate(zip(run.rows, run.labels, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")


def trained(folder: Path, faults: list[Fault]) -> Path:
    """A pca_t2q bundle trained on a simulated pump's history (its faults labelled)."""
    process_csv(folder / "history.csv", 1, faults)
    (folder / "train.toml").write_text(
        f"""name = "pump"
[data]
type = "csv"
path = "history.csv"
label = "anomaly"
[features]
kind = "process"
channels = {json.dumps(list(PROCESS_CHANNELS))}
[model]
kind = "pca_t2q"
"""
    )
    assert main(["train", str(folder / "train.toml"), "-o", str(folder / "b"), "-q"]) == 0
    return folder / "b"


def test_train_on_csv_then_evaluate_with_a_report(tmp_path, capsys):
    trained(tmp_path, [Fault(kind="step", start=3000, end=3600, severity=3)])
    process_csv(tmp_path / "new.csv", 7, [Fault(kind="drift", start=1800, end=2700, severity=6)])
    argv = ["evaluate", "--bundle", str(tmp_path / "b"), "--data", str(tmp_path / "new.csv")]
    assert main([*argv, "--report", str(tmp_path / "report"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["events"]["events"] == 1 and result["events"]["events_detected"] == 1
    assert result["point"]["roc_auc"] > 0.8
    for name in ("timeline.png", "roc.png", "pr.png"):
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"
    assert "![score timeline](timeline.png)" in (tmp_path / "report" / "report.md").read_text()
    assert main(argv) == 0
    assert "events: 1 of 1 detected" in capsys.readouterr().out
    assert main([*argv[:3], "--data", str(tmp_path / "history.csv"), "--label", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


def test_skab_protocol_on_a_few_files_pools_counts_and_shows_the_leaderboard(capsys):
    files = 3
    argv = ["evaluate", "--protocol", "skab", "--data", str(SKAB), "--models", "pca_t2q,gmm"]
    assert main([*argv, "--files", str(files), "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"] == "skab" and [r["model"] for r in result["rows"]] == [
        "pca_t2q",
        "gmm",
    ]
    test_rows = sum(len(d.samples) - skab.TRAIN_ROWS for d in skab.load_skab(SKAB)[:files])
    for row in result["rows"]:
        assert row["tp"] + row["fp"] + row["fn"] + row["tn"] == test_rows
        assert row["f1"] > 0.6 and 0 <= row["far_pct"] <= 100
    published = {r["model"]: r for r in result["leaderboard"]}
    assert published["Conv-AE"] == {
        "model": "Conv-AE",
        "f1": 0.78,
        "far_pct": 13.55,
        "mar_pct": 28.02,
    }
    assert main([*argv[:-2], "--models", "magic", "-q"]) == 2
    assert "unknown SKAB method magic" in capsys.readouterr().err


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 10))
def test_alerts_drop_short_runs_and_cover_long_ones_whole(flags, min_rows):
    flags = np.array(flags, dtype=bool)
    method = skab.Method(KmeansParams(), min_rows=min_rows)
    kept = skab.alerted(np.where(flags, 3.0, 0.0), method)
    assert not (kept & ~flags).any()
    for start, end in runs(flags):
        assert kept[start:end].all() == (end - start >= min_rows)
        assert kept[start:end].any() == (end - start >= min_rows)


def test_skab_through_the_agent_with_an_operators_labels_or_unattended_adaptation():
    from edgewatch.export.skab_loop import LOOPS, loop_flags

    data = skab.load_skab(SKAB)[3]  # valve1/3.csv: two alerts cleared, both labelled
    plain, given = loop_flags(LOOPS["on_site_agent"], data, skab.TRAIN_ROWS)
    assert given == 0 and len(plain) == len(data.samples) - skab.TRAIN_ROWS and plain.any()
    labelled, given = loop_flags(LOOPS["on_site_feedback"], data, skab.TRAIN_ROWS)
    assert given == 2 and len(labelled) == len(plain)
    assert labelled.sum() < plain.sum()  # the re-fit shortened the alerts that followed
    adapted, _ = loop_flags(LOOPS["on_site_adapt"], data, skab.TRAIN_ROWS)
    assert adapted.sum() < plain.sum()


def test_the_tuned_skab_method_skips_the_drifting_temperatures(capsys):
    argv = ["evaluate", "--protocol", "skab", "--data", str(SKAB), "--models", "kmeans_ewma"]
    assert main([*argv, "--files", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "edgewatch  kmeans_ewma" in out and "published  Conv-AE" in out
    assert "Temperature" not in skab.STEADY_CHANNELS and len(skab.STEADY_CHANNELS) == 6


def test_the_tuned_setting_is_the_grids_choice_on_the_tuning_files():
    result = skab.tune(SKAB, "kmeans_ewma")
    assert result["files"][:2] == ["valve1/0.csv", "valve1/2.csv"] and len(result["files"]) == 17
    chosen = result["chosen"]
    assert chosen["far_pct"] <= 15 and chosen["mar_pct"] <= 25 and chosen["within_targets"]
    within = [r for r in result["grid"] if r["far_pct"] <= 15 and r["mar_pct"] <= 25]
    assert within == [r for r in result["grid"] if r["within_targets"]]
    assert all(r["f1"] <= chosen["f1"] for r in within)
    shipped = skab.METHODS["kmeans_ewma"]
    assert {k: chosen[k] for k in skab.GRID_KEYS} == {
        k: getattr(shipped, k) for k in skab.GRID_KEYS
    }


def test_tuning_from_the_command_line(capsys):
    argv = ["evaluate", "--protocol", "skab", "--data", str(SKAB), "--files", "2", "-q"]
    assert main([*argv, "--tune", "kmeans_ewma"]) == 0
    out = capsys.readouterr().out
    assert "SKAB tuning of kmeans_ewma on the files at even positions (1): 360 settings" in out
    assert "chosen: " in out
    assert main([*argv, "--tune", "lof"]) == 2
    assert (
        "no tuning grid for SKAB method lof; choose from ['kmeans_ewma']" in capsys.readouterr().err
    )
    assert main([*argv, "--tune", "kmeans_ewma", "--models", "lof"]) == 2
    assert "give either --models or --tune" in capsys.readouterr().err


def test_bench_scoring_prints_every_model(capsys):
    assert main(["bench", "scoring", "--json", "--rounds", "100"]) == 0
    result = json.loads(capsys.readouterr().out)
    models = [r["model"] for r in result["scoring"]]
    assert models == [
        "isolation_forest_compact",
        "isolation_forest_skl2onnx",
        "sklearn_isolation_forest",
        "autoencoder",
    ]
    for r in result["scoring"]:
        assert 0 < r["p50_us"] <= r["p99_us"] and r["batch256_rows_per_s"] > 0
    assert main(["bench", "scoring", "--rounds", "10"]) == 2


def test_capacity_is_measured_for_the_sensor_described():
    from edgewatch.export.bench.pipeline import Sensor, capacity

    sensor = Sensor(rate=12800, window=512, hop=256, axes=1, model="pca_t2q")
    result = capacity(sensor, rounds=1, devices=4, seconds=2.0)
    assert result["sensor"] == {
        "rate": 12800, "window": 512, "hop": 256, "axes": 1, "model": "pca_t2q"
    }  # fmt: skip
    assert result["sensors_per_core"] > 0 and result["cores"] >= 1
    assert result["sensors"] == result["sensors_per_core"] * result["cores"]
    assert result["alerts_spooled"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window", "1000"], "window must be a power of two"),
        (["--hop", "2048"], "hop"),
        (["--model", "forest"], "does not match any of the expected tags"),
        (["--rounds", "0"], "--rounds must be at least 1"),
    ],
)
def test_bench_refuses_a_sensor_it_cannot_build_before_measuring(capsys, argv, message):
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_evaluate_takes_many_files_per_label_npy_too_with_per_group_figures(tmp_path, capsys):
    trained(tmp_path, [])
    for seed in (3, 4):
        process_csv(tmp_path / f"healthy{seed}.csv", seed, [])
    faulty = simulate_process(1800, 5, [Fault(kind="step", start=0, end=1800, severity=6)])
    np.save(tmp_path / "faulty.npy", faulty.rows)
    argv = ["evaluate", "--bundle", str(tmp_path / "b"), "--normal"]
    argv += [str(tmp_path / "healthy3.csv"), str(tmp_path / "healthy4.csv")]
    argv += ["--anomalous", str(tmp_path / "faulty.npy"), "--at-far", "0.02", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    groups = {g["group"]: g for g in result["groups"]}
    assert set(groups) == {"healthy3.csv", "healthy4.csv", "faulty.npy"}
    assert groups["faulty.npy"]["anomalous"] == 1800 and groups["faulty.npy"]["recall"] > 0.5
    assert groups["healthy3.csv"]["far"] < 0.1 and groups["healthy3.csv"]["expected_far"] == 0.01
    assert result["pooled"]["roc_auc"] > 0.9 and result["pooled"]["recall_at_far"] > 0.5
    assert main(argv[:-1]) == 0
    assert "recall @ 2.0% FAR" in capsys.readouterr().out
    assert (
        main(["evaluate", "--bundle", str(tmp_path / "b"), "--data", str(tmp_path / "faulty.npy")])
        == 2
    )
    assert "give it as --normal or --anomalous" in capsys.readouterr().err
