"""Training data, configs, calibration and ``edgewatch train``."""

import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.calibration import ScoreScale, budget_thresholds, f1_thresholds, fit_scale
from edgewatch.agent.cli import main
from edgewatch.agent.feedback import FeedbackStore
from edgewatch.agent.model import sequences
from edgewatch.agent.scorer import Scorer
from edgewatch.export.config import ConfigError, load_config, parse_config
from edgewatch.export.datasets import (
    DataError,
    features,
    from_simulation,
    load_csv,
    load_npy,
    rows_of,
    split,
)
from edgewatch.export.feedback import load_labels
from edgewatch.sim.machine import Fault, simulate_process
from tests.test_feedback import raised

PROCESS = """
name = "pump"
[data]
type = "simulate"
duration = 3600
seed = 1
faults = [{kind = "step", start = 3000, end = 3600, severity = 3}]
[features]
kind = "process"
channels = ["temperature", "pressure", "current", "flow"]
[model]
kind = "isolation_forest"
n_estimators = 50
[calibration]
validation = 0.3
"""


def test_calibrated_scale_reads_the_false_alarm_rate_of_normal_data():
    normal = np.random.default_rng(0).normal(size=50000)
    scale = fit_scale(normal)
    fresh = np.random.default_rng(1).normal(size=500000)
    calibrated = scale(fresh)
    # The 0.1 % quantile of 50000 rows rests on 50 of them: about 14 % relative noise.
    for level in (1.0, 2.0, 3.0):
        assert abs(np.mean(calibrated > level) - 10**-level) < 0.3 * 10**-level
    assert np.all(np.diff(scale(np.linspace(-10, 10, 1000))) >= 0)
    assert scale(np.array([100.0]))[0] > scale(np.array([10.0]))[0] > 4


def test_scale_survives_ties_and_refuses_constant_scores():
    scale = fit_scale(np.r_[np.zeros(900), np.arange(100.0)])
    assert all(b > a for a, b in zip(scale.raw, scale.raw[1:], strict=False))
    with pytest.raises(ValueError, match="not all equal"):
        fit_scale(np.ones(50))
    with pytest.raises(ValueError, match="finite"):
        fit_scale(np.array([1.0, np.nan, 2.0]))


def test_budget_and_f1_thresholds():
    rng = np.random.default_rng(2)
    normal = rng.normal(size=5000)
    scale = fit_scale(normal)
    t = budget_thresholds(scale, normal, (0.05, 0.01))
    assert t.warning == pytest.approx(-np.log10(0.05)) and t.critical == pytest.approx(2.0)
    assert t.warning_far == pytest.approx(0.05, abs=0.005)
    assert t.raw_warning == pytest.approx(np.quantile(normal, 0.95), abs=0.02)
    scores = np.r_[normal, rng.normal(4, 1, 500)]
    labels = np.r_[np.zeros(5000), np.ones(500)]
    f1 = f1_thresholds(scale, scores, labels)
    assert f1.policy == "f1_optimal" and 1.5 < f1.raw_warning < 3.5
    assert f1.critical >= f1.warning
    with pytest.raises(ValueError, match="both normal and anomalous"):
        f1_thresholds(scale, scores, np.zeros(len(scores)))


def test_score_scale_knots_must_increase():
    with pytest.raises(ValueError, match="strictly increasing"):
        ScoreScale(raw=(1.0, 1.0), calibrated=(0.0, 1.0))
    with pytest.raises(ValueError, match="one value per knot"):
        ScoreScale(raw=(1.0, 2.0, 3.0), calibrated=(0.0, 1.0))


def test_csv_sniffs_delimiters_and_parses_times(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(
        "datetime;x;y;anomaly\n2020-01-01 00:00:00;1;2;0\n2020-01-01 00:00:01;3;4.5;1\n"
    )
    data = load_csv(path, label="anomaly")
    assert data.channels == ("x", "y") and data.samples.tolist() == [[1, 2], [3, 4.5]]
    assert data.labels.tolist() == [0, 1] and np.diff(data.times).tolist() == [1.0]


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("t,x\n0,1\n1,oops\n", {}, "line 3, column 'x': 'oops' is not a number"),
        ("t,x\n0,1\n1,2,3\n", {}, "line 3 has 3 fields"),
        ("time,x\n1,1\n0,2\n", {}, r"line 3, column 'time': goes back in time \(time_order"),
        ("t,x\n0,1\n", {"channels": ("y",)}, "no column 'y'"),
        ("t,x,l\n0,1,2\n", {"label": "l"}, "labels must be 0 or 1"),
        ("t,x\n0,nan\n", {}, "is not finite"),
        ("t,x\nyesterday,1\n", {"timestamp": "t"}, "neither seconds nor an ISO 8601 time"),
        ("t,x\n", {}, "no data rows"),
    ],
)
def test_bad_csv_gets_the_line_and_column(tmp_path, text, options, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_csv(path, delimiter=",", **options)


def test_npy_needs_one_column_per_channel(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 3)))
    assert load_npy(tmp_path / "a.npy", ("a", "b", "c")).samples.shape == (10, 3)
    with pytest.raises(DataError, match="expected samples x 2 channels"):
        load_npy(tmp_path / "a.npy", ("a", "b"))
    np.save(tmp_path / "o.npy", np.array([{"a": 1}]), allow_pickle=True)
    with pytest.raises(DataError, match=r"not an NPY array"):
        load_npy(tmp_path / "o.npy", ("a",))


def test_splits_keep_time_order_and_sequences_end_at_each_row():
    train, valid = split(100, 0.25)
    assert (train.stop, valid.start, valid.stop) == (75, 75, 100)
    with pytest.raises(DataError, match="need 2 and 1"):
        split(2, 0.9)
    rows = np.arange(12.0).reshape(6, 2)
    seq = sequences(rows, 3)
    assert seq.shape == (4, 3, 2) and seq[-1].tolist() == rows[3:].tolist()


def test_waveform_windows_are_labelled_by_majority(tmp_path):
    spec = parse_config(
        PROCESS.replace(
            'kind = "process"', 'kind = "waveform"\nsample_rate = 1024\nwindow = 256'
        ).replace('channels = ["temperature", "pressure", "current", "flow"]', 'channels = ["x"]')
    ).features
    np.save(tmp_path / "w.npy", np.random.default_rng(0).normal(size=(1024, 1)))
    data = load_npy(tmp_path / "w.npy", ("x",))
    labels = np.zeros(1024, np.int8)
    labels[600:] = 1
    out = features(spec, replace(data, labels=labels))
    assert out.rows.shape == (7, len(spec.feature_names))
    assert out.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('kind = "isolation_forest"', 'kind = "forest"'), "model"),
        (lambda t: t.replace("n_estimators = 50", "n_estimators = -1"), "n_estimators"),
        (lambda t: t.replace("validation = 0.3", "validation = 2"), "calibration.validation"),
        (lambda t: t.replace('name = "pump"', ""), "name: Field required"),
        (lambda t: t.replace("seed = 1", "seed = 1\nspeed = 3"), "data.simulate.speed"),
        (lambda t: t + "\n[oops", "not valid TOML"),
        (lambda t: t.replace("validation = 0.3", "budget = [0.001, 0.01]"), "must not exceed"),
    ],
)
def test_bad_configs_give_one_line_per_problem(edit, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(edit(PROCESS))


def test_train_command_writes_a_verified_bundle(tmp_path, capsys):
    config = tmp_path / "pump.toml"
    config.write_text(PROCESS)
    assert main(["train", str(config), "-o", str(tmp_path / "b.tar")]) == 0
    bundle = verify_bundle(tmp_path / "b.tar")
    manifest = bundle.manifest
    assert (
        manifest.model.kind == "isolation_forest" and manifest.training.parity.max_rel_diff < 1e-4
    )
    assert manifest.thresholds.warning_far <= 0.05
    assert manifest.training.metrics["recall"] > 0.5
    err = capsys.readouterr().err
    assert "isolation_forest: growing 50 trees" in err and "calibration: warning 2.00" in err
    assert load_config(config).name == "pump"


def test_train_command_reports_bad_input_in_one_line_each(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(PROCESS.replace("n_estimators = 50", "n_estimators = 0\nseed = 'x'"))
    assert main(["train", str(config), "-o", str(tmp_path / "b")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(
        line.startswith(f"edgewatch train: {config}: model.") for line in lines
    )
    data = PROCESS.split("[features]")[1]
    missing = tmp_path / "csv.toml"
    missing.write_text(f'name = "p"\n[data]\ntype = "csv"\npath = "none.csv"\n[features]{data}')
    assert main(["train", str(missing), "-o", str(tmp_path / "b")]) == 2
    assert "none.csv: No such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_training_refuses_too_few_rows_and_reports_library_warnings_in_one_line(tmp_path, capsys):
    config = tmp_path / "small.toml"
    config.write_text(
        PROCESS.replace("duration = 3600", "duration = 100").replace(
            'faults = [{kind = "step", start = 3000, end = 3600, severity = 3}]', ""
        )
    )
    assert main(["train", str(config), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "training needs 30 and 50: at least 167 normal rows in all" in err
    assert not (tmp_path / "b").exists()
    lof = tmp_path / "lof.toml"
    lof.write_text(
        PROCESS.replace(
            'kind = "isolation_forest"\nn_estimators = 50', 'kind = "lof"\nn_neighbors = 900'
        )
        .replace("duration = 3600", "duration = 600")
        .replace('faults = [{kind = "step", start = 3000, end = 3600, severity = 3}]', "")
    )
    assert main(["train", str(lof), "-o", str(tmp_path / "g")]) == 0
    err = capsys.readouterr().err
    assert "\nwarning: while fitting lof: UserWarning: n_neighbors (900)" in err
    assert "warning: calibration is thin for the warning level 2.00: 180 rows" in err
    assert "warnings.warn" not in err


def test_a_sequence_model_bundle_takes_a_history_of_rows(tmp_path):
    config = tmp_path / "seq.toml"
    model = (
        '[model]\nkind = "sequence_autoencoder"\nhistory = 8\nfilters = 8\nepochs = 2\npatience = 0'
    )
    config.write_text(PROCESS.split("[model]")[0] + model + "\n[calibration]\nvalidation = 0.3\n")
    assert main(["train", str(config), "-o", str(tmp_path / "b"), "-q"]) == 0
    bundle = verify_bundle(tmp_path / "b")
    assert bundle.manifest.model.input.shape == (None, 8, 24)
    assert bundle.manifest.model.history == 8
    rows = np.random.default_rng(0).normal(size=(3, 8, 24)).astype(np.float32)
    scores = Scorer(bundle)(rows)
    assert scores.raw.shape == (3,) and scores.feature_error.shape == (3, 24)


@given(
    st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=3),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from([",", ";", "\t", "|"]),
)
def test_csv_round_trips_any_table_of_numbers(rows, delimiter):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        lines = [delimiter.join(["time", "a", "b"])]
        lines += [delimiter.join(repr(v) for v in [i, *row[1:]]) for i, row in enumerate(rows)]
        path.write_text("\n".join(lines) + "\n")
        data = load_csv(path, delimiter=delimiter)
        assert data.channels == ("a", "b")
        np.testing.assert_array_equal(data.samples, np.array(rows)[:, 1:])


@given(st.binary(max_size=300))
def test_csv_garbage_is_a_data_error_or_a_table(raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "g.csv"
        path.write_bytes(raw)
        try:
            data = load_csv(path, delimiter=",")
        except DataError:
            return
        assert data.samples.ndim == 2 and np.isfinite(data.samples).all()


def test_training_commands_without_the_training_extra_say_what_to_install(tmp_path):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sklearn', 'tensorflow'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgewatch.agent.cli import main\n"
        f"sys.exit(main(['train', {str(tmp_path / 'x.toml')!r}, '-o', 'b']))\n"
    )
    (tmp_path / "x.toml").write_text(PROCESS)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    hint = "needs sklearn; install the training extra: pip install 'edgewatch-tools[train]'"
    assert hint in out.stderr


def test_a_waveform_model_learns_a_bearing_fault_from_simulated_vibration(tmp_path):
    (tmp_path / "fan.toml").write_text(
        """name = "fan"
[data]
type = "simulate"
duration = 40
seed = 5
faults = [{kind = "outer_race", start = 34, end = 40}]
[features]
kind = "waveform"
sample_rate = 25600
window = 4096
channels = ["x", "y", "z"]
bearing = {balls = 9, ball_diameter = 7.94, pitch_diameter = 39.04}
shaft_hz = 29.95
envelope_band = [2000, 8000]
[model]
kind = "isolation_forest"
[calibration]
validation = 0.3
"""
    )
    assert main(["train", str(tmp_path / "fan.toml"), "-o", str(tmp_path / "fan.tar"), "-q"]) == 0
    manifest = verify_bundle(tmp_path / "fan.tar").manifest
    assert "ch0.env_bpfo" in manifest.feature_names and manifest.model.width == 84
    assert manifest.training.metrics["recall"] > 0.9 and manifest.training.metrics["far"] < 0.05


def test_data_can_pick_columns_and_rows_and_take_times_that_go_back(tmp_path):
    path = tmp_path / "run.csv"
    path.write_text("time,a,b,label\n0,1,10,0\n2,2,20,0\n1,3,30,1\n3,4,40,0\n")
    data = load_csv(path, ("x",), columns=("b",), label="label", time_order="sort")
    assert data.samples[:, 0].tolist() == [10, 30, 20, 40] and data.labels.tolist() == [0, 1, 0, 0]
    dropped = load_csv(path, ("x", "y"), columns=("b", "a"), time_order="drop")
    assert dropped.samples.tolist() == [[10, 1], [20, 2], [40, 4]]
    assert rows_of(dropped, (1, 3)).times.tolist() == [2, 3]
    with pytest.raises(DataError, match="rows from 5, and it has 3"):
        rows_of(dropped, (5, 9))
    np.save(tmp_path / "w.npy", np.arange(12.0).reshape(4, 3))
    assert load_npy(tmp_path / "w.npy", ("x",), columns=(2,)).samples[:, 0].tolist() == [
        2,
        5,
        8,
        11,
    ]
    with pytest.raises(DataError, match=r"columns \[3\], and it has 3"):
        load_npy(tmp_path / "w.npy", ("x",), columns=(3,))
    with pytest.raises(ConfigError, match="the end must come after the start"):
        parse_config(
            PROCESS.replace('type = "simulate"', 'type = "npy"\npath = "w.npy"\nrows = [5, 5]')
            .replace("duration = 3600\nseed = 1\n", "")
            .replace('faults = [{kind = "step", start = 3000, end = 3600, severity = 3}]\n', "")
        )


def _exported_labels(tmp_path: Path) -> Path:
    """The CSV ``edgewatch feedback export`` writes: a false alarm (a setpoint step on the
    temperature) labelled normal, a confirmed fault (a step on the flow), an unsure one."""
    spec = parse_config(PROCESS).features
    faults = (
        Fault(kind="step", start=1000, end=1600, severity=4, channel=0),
        Fault(kind="step", start=2000, end=2600, severity=4, channel=3),
    )
    run = simulate_process(3600, 7, faults)
    rows = features(spec, from_simulation("labelled", run, spec.channels)).rows
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    for alert_id, span, label in (
        ("a1", slice(1000, 1600), "normal"),
        ("a2", slice(2000, 2600), "anomaly"),
        ("a3", slice(100, 110), "unsure"),
    ):
        store.record(raised(alert_id), spec.feature_names, rows[span])
        store.receive(json.dumps({"alert_id": alert_id, "label": label}).encode())
    assert store.export(tmp_path / "labels.csv") == (3, 1210)
    return tmp_path / "labels.csv"


def test_train_learns_from_exported_labels_false_alarms_as_normal_and_confirmed_faults(
    tmp_path, capsys
):
    labels = _exported_labels(tmp_path)
    f1 = PROCESS.replace('faults = [{kind = "step", start = 3000, end = 3600, severity = 3}]', "")
    f1 = f1.replace("validation = 0.3", 'validation = 0.3\npolicy = "f1_optimal"')
    config = tmp_path / "pump.toml"
    config.write_text(f1)
    assert main(["train", str(config), "-o", str(tmp_path / "none"), "-q"]) == 2
    assert "f1_optimal needs anomalies among the validation rows" in capsys.readouterr().err
    assert main(["train", str(config), "-o", str(tmp_path / "b"), "--feedback", str(labels)]) == 0
    assert "feedback: 600 windows labelled normal join the training rows, 600 labelled" in (
        capsys.readouterr().err
    )
    manifest = verify_bundle(tmp_path / "b").manifest
    rows = manifest.training.rows
    assert (rows["feedback_normal"], rows["feedback_anomalous"]) == (600, 600)
    assert rows["validation_anomalous"] == 600 and manifest.thresholds.policy == "f1_optimal"
    assert manifest.training.metrics["recall"] > 0.9

    plain = tmp_path / "plain.toml"
    plain.write_text(f1.replace('\npolicy = "f1_optimal"', ""))
    assert main(["train", str(plain), "-o", str(tmp_path / "p"), "-q"]) == 0
    assert (
        main(["train", str(plain), "-o", str(tmp_path / "f"), "-q", "--feedback", str(labels)]) == 0
    )
    table = np.genfromtxt(labels, delimiter=",", names=True, dtype=None, encoding="utf-8")
    false_alarm = np.array([list(r)[7:] for r in table if r["label"] == "normal"], np.float32)
    before = Scorer(verify_bundle(tmp_path / "p"))(false_alarm).calibrated
    after = Scorer(verify_bundle(tmp_path / "f"))(false_alarm).calibrated
    assert np.median(after) < np.median(before)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("ch", "xx", 1), "no column"),
        (lambda t: t.replace(",normal,", ",fine,", 1), r"labels.csv:\d+: label 'fine'"),
        (lambda t: t.replace(",normal,,0,", ",normal,,0,oops", 1), "not a number"),
        (lambda t: "", "empty"),
    ],
)
def test_bad_exported_labels_are_refused_with_the_file_and_line(tmp_path, edit, message):
    labels = _exported_labels(tmp_path)
    labels.write_text(edit(labels.read_text()))
    with pytest.raises(DataError, match=message):
        load_labels([labels], parse_config(PROCESS).features.feature_names)
