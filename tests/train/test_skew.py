"""Training and serving compute the same features: no skew between export and the agent."""

import numpy as np

from edgewatch.agent.bundle import verify_bundle
from edgewatch.agent.sources.replay import load_recording
from edgewatch.export.datasets import features, load_csv
from edgewatch.sim.machine import Machine, simulate_waveform
from tests.test_pipeline import RATE, blocks_of, pipeline


def test_the_agent_computes_the_features_training_computes_from_the_same_file(
    waveform_bundle, tmp_path
):
    run = simulate_waveform(Machine(), 3.0, RATE, seed=9)
    path = tmp_path / "run.csv"
    np.savetxt(path, run.signal.T, delimiter=",", header="x,y,z", comments="", fmt="%.7g")
    spec = verify_bundle(waveform_bundle).manifest.feature_spec
    offline = features(spec, load_csv(path)).rows
    pipe = pipeline(waveform_bundle)
    samples = load_recording(path, spec.channels).samples
    rounds = [pipe.process([b]) for b in blocks_of(samples, sizes=(100, 2000, 37, 512))]
    online = np.concatenate([part.rows for rnd in rounds for part in rnd.parts])
    assert online.shape == offline.shape
    np.testing.assert_allclose(online, offline, rtol=2e-4, atol=1e-5)
