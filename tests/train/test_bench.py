"""The kernel benchmark and the command line that runs it."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from edgewatch.agent.cli import main
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.featurizer import featurize
from edgewatch.export.bench import kernels as bench
from edgewatch.export.bench.numpy_features import numpy_features
from edgewatch.export.bench.timing import interleaved_medians, steady_heap
from edgewatch.sim.machine import Fault, Machine, simulate_waveform


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_numpy_baseline_computes_the_same_features(dtype):
    """The benchmark compares equal work: batched NumPy gives the featurizer's answers."""
    machine = Machine()
    spec = FeatureSpec(
        kind="waveform",
        sample_rate=25600,
        window=1024,
        channels=["x", "y", "z"],
        bearing=machine.bearing,
        shaft_hz=machine.shaft_hz,
        envelope_band=(2000, 8000),
    )
    sim = simulate_waveform(
        machine,
        0.5,
        25600,
        seed=2,
        faults=[
            Fault(kind="outer_race", start=0.2, end=0.5),
            Fault(kind="dropout", start=0.0, end=0.1, channel=1),
        ],
    )
    windows = sim.windows(1024, 512).astype(dtype)
    got, want = numpy_features(spec, windows), featurize(spec, windows)
    scale = np.abs(want).max(axis=0) + 1e-6
    np.testing.assert_allclose(
        got / scale, want / scale, atol=1e-4 if dtype == np.float32 else 1e-6
    )


def test_interleaved_medians_time_every_candidate_per_unit_of_work():
    calls = {"a": 0, "b": 0}

    def run(name):
        def call():
            calls[name] += 1

        return call

    result = interleaved_medians({"a": run("a"), "b": run("b")}, rounds=5, per_call=10)
    assert calls == {"a": 6, "b": 6}
    assert set(result) == {"a", "b"} and all(v >= 0 for v in result.values())


def test_steady_heap_is_set_on_glibc():
    assert steady_heap()


def test_bench_kernels_json_has_every_figure():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgewatch.agent.cli",
            "bench",
            "kernels",
            "--json",
            "--rounds",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    result = json.loads(out)
    assert [row["n"] for row in result["kernels"]] == [1024, 4096]
    for row in result["kernels"]:
        assert row["channels"] == 3 and row["features"] == 60
        for key in ("numba_us", "numba_batched_us", "numpy_us", "fft_only_us"):
            assert row[key] > 0, key
    assert result["compile"]["cold_s"] > 0 and result["compile"]["warm_s"] > 0
    table = bench.render(result)
    assert "numpy/numba" in table and "first feature vector" in table


def test_cli_refuses_bad_arguments(capsys):
    assert main(["bench", "kernels", "--rounds", "0"]) == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "everything"])
    assert exit_info.value.code == 2


def test_bench_gateway_learns_every_machine_and_finds_every_fault(capsys):
    assert main(["bench", "gateway", "--hours", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["machines"] == result["learned"] == 10
    assert result["faults_detected"] == 10 and result["missed"] == []
    assert {"drift_events", "false_drift_per_machine_day"} <= set(result)
    assert set(result["false_alerts_per_machine_day"]) == {
        *(f"fan-{i}" for i in range(4)), *(f"blower-{i}" for i in range(3)),
        *(f"pump-{i}" for i in range(3)),
    }  # fmt: skip
    assert main(["bench", "gateway", "--hours", "1"]) == 2
    assert "--hours must be 6 to 720" in capsys.readouterr().err


def test_bench_drift_counts_false_signals_on_normal_running(capsys):
    assert main(["bench", "drift", "--days", "0.2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["days"] == 0.2
    for device in ("fan-0", "pump-0"):
        assert set(result[device]) == {"drift_per_30_days", "first_drift_day", "alerts_per_day"}
    assert result["fan-0"]["drift_per_30_days"] == 0
    assert main(["bench", "drift", "--days", "0"]) == 2
    assert "--days must be above 0" in capsys.readouterr().err


def test_bench_learning_measures_fits_memory_and_out_of_sample_false_alarms(capsys):
    assert main(["bench", "learning", "--rounds", "1"]) == 0
    table = capsys.readouterr().out
    for kind in ("gaussian", "pca_t2q", "kmeans"):
        assert re.search(rf"{kind}\s+\d+\.\d\d s", table), kind
    assert "20 machines, 20 learned on site" in table
    assert re.search(r"waveform\s+gaussian \d+\.\d\d%", table)
