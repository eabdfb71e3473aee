"""One assembly: the registries name exactly the config's source and sink types, and one config
with every type builds every part, each with its own metrics."""

from typing import get_args

import numpy as np

from edgewatch.agent.assembly import SINKS, SOURCES, assemble
from edgewatch.agent.config import SinkConfig, validate
from edgewatch.agent.sinks.outputs import Lines, Spooled
from edgewatch.agent.sources.mqtt import MqttReader
from edgewatch.agent.sources.replay import ReplayReader
from edgewatch.agent.sources.serial import SerialReader
from edgewatch.agent.sources.settings import SourceConfig


def types(union):  # type: ignore[no-untyped-def]
    return {get_args(member.model_fields["type"].annotation)[0] for member in get_args(union)}


def test_the_registries_and_the_config_unions_name_the_same_types():
    assert set(SOURCES) == types(SourceConfig)
    assert set(SINKS) == types(SinkConfig)


def test_every_type_in_one_config_builds_every_part(tmp_path):
    recording = tmp_path / "run.npy"
    np.save(recording, np.zeros((100, 1), np.float32))
    channels, rate = ["x"], 10.0
    config = validate(
        {
            "site": "s",
            "device": "g",
            "model": {"bundle": tmp_path / "bundle"},
            "mqtt": {"host": "127.0.0.1"},
            "spool": {"path": tmp_path / "spool.sqlite"},
            "sources": [
                {"type": "serial", "device": "a", "port": "/dev/null", "channels": channels,
                 "sample_rate": rate},
                {"type": "mqtt", "topic": "sensors/#"},
                {"type": "replay", "device": "b", "path": recording, "channels": channels,
                 "sample_rate": rate, "start_ts": 5.0},
            ],
            "sinks": [{"type": "mqtt"}, {"type": "stdout"},
                      {"type": "jsonl", "path": tmp_path / "a.jsonl"}],
        }
    )  # fmt: skip
    parts = assemble(config)
    kinds = [type(source) for source in parts.sources]
    assert kinds == [SerialReader, MqttReader, ReplayReader]
    replay = parts.sources[2]
    assert isinstance(replay, ReplayReader) and replay.times[0] == 5.0
    assert [type(sink) for sink in parts.pipeline.fanout.sinks] == [Spooled, Lines, Lines]
    assert parts.spool is not None and parts.forwarder is not None and parts.pipeline.model is None
    metrics = parts.registry.render()
    for name in ("spool_depth", "mqtt_connected", "frames_accepted_total", "samples_in_total"):
        assert f"# TYPE edgewatch_{name} " in metrics
    assert 'edgewatch_frames_accepted_total{source="1:mqtt"} 0' in metrics
    parts.pipeline.close()
    parts.spool.close()
