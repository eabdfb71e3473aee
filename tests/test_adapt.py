"""Unattended adaptation: the model follows the windows judged normal, never an alert's, forgets
what its memory no longer holds, and re-learns a level shift that lasts, saying so."""

import json

import numpy as np
import pytest

from edgewatch.agent.config import ConfigError, validate
from edgewatch.agent.onsite.adapt import Follower, Ring
from edgewatch.agent.onsite.settings import Adapting
from tests.conftest import edgewatch
from tests.test_machines import BASE, PROCESS


def test_the_ring_keeps_the_latest_rows_in_order():
    ring = Ring(5, 1)
    ring.add(np.arange(3.0)[:, None], np.ones(3, bool))
    assert ring.ordered()[0][:, 0].tolist() == [0, 1, 2]
    ring.add(np.arange(3.0, 10.0)[:, None], np.arange(3, 10) % 2 == 0)
    rows, fit = ring.ordered()
    assert rows[:, 0].tolist() == [5, 6, 7, 8, 9] and fit.tolist() == [0, 1, 0, 1, 0]


def test_a_follower_keeps_normal_windows_skips_an_alerts_and_relearns_a_lasting_shift():
    settings = Adapting(refit_every=0.5, margin=0.5, shift_s=100)
    follower = Follower(np.zeros((40, 1), np.float32), settings, needed=30)
    ends = np.arange(10.0)
    rows = np.ones((10, 1), np.float32)
    scores = np.r_[np.full(8, 0.5), 1.6, 2.5]  # two at or past the warning less the margin
    assert follower.take(ends, rows, scores, 2.0, None) is None
    due = follower.take(ends + 10, rows, np.full(10, 0.5), 2.0, None)
    assert due is not None and len(due.rows) == 40  # its memory: the first baseline's size
    assert due.fit.sum() == 38 and due.shift_since is None
    # An alert opens at 100 s: its windows are kept apart, and only a lasting one is learned.
    high = np.full(10, 3.0)
    for start in range(100, 200, 10):
        assert follower.take(np.arange(start, start + 10.0), 5 * rows, high, 2.0, 100.0) is None
    shift = follower.take(np.arange(200, 210.0), 5 * rows, high, 2.0, 100.0)
    assert shift is not None and shift.shift_since == 100.0 and shift.above == 1.0
    assert (shift.rows == 5).all() and len(shift.rows) == 40
    closed = follower.take(np.arange(210, 220.0), 5 * rows, np.full(10, 0.5), 2.0, None)
    assert closed is None and (follower.kept.ordered()[0] == 5).all()


def test_only_a_machine_that_learns_can_adapt():
    machine = {"name": "m", "devices": ["m-*"], "bundle": "/b", "adapt": {}}
    with pytest.raises(ConfigError, match="only a machine that learns on site can adapt"):
        validate({**BASE, "machines": [machine]})
    learns = {"name": "m", "devices": ["m-*"], "learn": {}, "features": PROCESS.model_dump()}
    made = validate({**BASE, "machines": [{**learns, "adapt": {"shift_s": 600}}]})
    assert made.machines[0].adapt == Adapting(shift_s=600)


def _stream(path, n=2000, seed=0):  # type: ignore[no-untyped-def]
    """A minute a row: noise on a slow wave, a spike at row 500, a level shift from row 1000."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * 60.0
    x = rng.normal(0, 1, n) + 0.5 * np.sin(t / 3600)
    x[1000:] += 6
    x[500] += 12
    path.write_text("timestamp,value\n" + "".join(f"{a},{b}\n" for a, b in zip(t, x, strict=True)))


def _replay(path, *extra):  # type: ignore[no-untyped-def]
    out = edgewatch("replay", "--data", path, "--learn", "300", "--scores", *extra)
    scores = {
        round(r["ts"] / 60): r["score"]
        for r in map(json.loads, out.stdout.splitlines())
        if "alert_id" not in r
    }
    return scores, out.stderr


@pytest.mark.integration
def test_replay_adapts_to_a_lasting_level_shift_and_still_flags_the_spike(tmp_path):
    _stream(tmp_path / "s.csv")
    fixed, _ = _replay(tmp_path / "s.csv")
    adapted, said = _replay(tmp_path / "s.csv", "--adapt")
    (event,) = [
        json.loads(line.split(": ", 1)[1]) for line in said.splitlines() if '"drift"' in line
    ]
    assert event["adapted"] is True and event["features"][0]["shift_sd"] > 5
    assert 1000 * 60 + 3600 <= event["ts"] <= 1300 * 60  # after shift_s, with enough rows
    late = range(1400, 2000)
    assert np.median([fixed[i] for i in late]) > 2  # the fixed model alerts on for ever
    assert np.mean([adapted[i] > 2 for i in late]) < 0.05
    assert adapted[500] > 4 and fixed[500] > 4
    assert sorted(adapted) == sorted(fixed) == list(range(300, 2000))


@pytest.mark.integration
def test_replay_learns_from_as_few_rows_as_a_short_stream_gives_and_says_the_least(tmp_path):
    _stream(tmp_path / "s.csv", n=740)  # 15 % of it is 111 rows
    learned = edgewatch("replay", "--data", tmp_path / "s.csv", "--learn", "111")
    assert '"event": "learned"' in learned.stderr and '"rows": 81' in learned.stderr
    short = edgewatch("replay", "--data", tmp_path / "s.csv", "--learn", "110", check=False)
    assert short.returncode == 2
    assert "--learn 110: too few rows to learn from; it takes 111 at least" in short.stderr


def test_an_adapting_machine_keeps_what_its_operators_labelled_normal(tmp_path):
    from edgewatch.agent.bundle import verify_bundle
    from edgewatch.agent.onsite import labelled
    from edgewatch.agent.onsite.adapt import Refit
    from edgewatch.agent.onsite.baseline import Baseline
    from edgewatch.agent.onsite.settings import Learning
    from tests.test_labels import _learned

    rig = _learned(tmp_path)
    route = rig.pipe.router.claim("pump-1")
    assert route is not None and rig.pipe.tuner is not None and rig.pipe.learner is not None
    folder = tmp_path / "pump-1"
    rows = Baseline(folder, PROCESS, Learning(min_rows=1000)).matrix()
    labelled.add(folder, "normal", rows[:40] + 5)
    manifest = verify_bundle(folder / "bundle").manifest
    rig.pipe.tuner._adapt(route, Refit(rows, np.ones(len(rows), bool)), 0.0, manifest)
    assert rig.pipe.learner.fits["adapted"] == 1
    assert verify_bundle(folder / "bundle").manifest.training.rows["labelled_normal"] == 40
