"""A component that fails is restarted by itself, and the agent says so while it is down."""

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from edgewatch.agent.config import parse_config
from edgewatch.agent.service import Agent
from edgewatch.sim.machine import Machine, simulate_waveform
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.integration


def healthz(port: int) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_failing_pipeline_is_restarted_and_healthz_says_503_while_it_is_down(
    waveform_bundle, tmp_path
):

    recording = tmp_path / "run.npy"
    run = simulate_waveform(Machine(), 30, 25600, seed=2)
    np.save(recording, run.signal.T.astype(np.float32))
    port = free_port()
    agent = Agent(
        parse_config(
            f'site = "plant"\ndevice = "gw1"\nfeedback_db = "{tmp_path / "feedback.sqlite"}"\n'
            f"http.port = {port}\n"
            f'[model]\nbundle = "{waveform_bundle}"\n'
            f'[[sources]]\ntype = "replay"\npath = "{recording}"\ndevice = "fan"\n'
            'channels = ["x", "y", "z"]\nsample_rate = 25600\nspeed = 1\n'
            f'[[sinks]]\ntype = "jsonl"\npath = "{tmp_path / "alerts.jsonl"}"\n'
        )
    )
    failing = threading.Event()
    failing.set()
    process = agent.pipeline.process

    def broken(blocks):  # type: ignore[no-untyped-def]
        if failing.is_set():
            raise RuntimeError("injected")
        return process(blocks)

    agent.pipeline.process = broken  # type: ignore[method-assign]
    agent.start()
    agent.start()  # once is enough: nothing more starts
    try:
        down = wait_for(
            lambda: (h := healthz(port))[0] == 503 and h[1]["components"]["pipeline"] == "down"
        )
        assert down and agent.supervisor.failures.values[("pipeline",)] >= 1
        assert [t.name for t in threading.enumerate()].count("pipeline") == 1
        failing.clear()
        wait_for(lambda: healthz(port)[0] == 200, what="the pipeline back")
        scored = agent.registry.value("windows_scored_total")
        wait_for(lambda: agent.registry.value("windows_scored_total") > scored, what="scoring")
    finally:
        agent.stop()
        agent.stop()
    wait_for(lambda: set(agent.supervisor.states().values()) == {"stopped"}, what="all stopped")
    started = ["feedback", "http", "pipeline", "reload", "source0"]
    assert sorted(agent.supervisor.states()) == started
