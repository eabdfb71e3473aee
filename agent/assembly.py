"""One assembly: the agent's parts built from its config, for ``run`` (``agent.service``),
``replay``, the demo and the pipeline benchmark alike.

Sources and sinks come from the registries ``SOURCES`` and ``SINKS``, keyed by the ``type`` of
their config (``agent.config``); each part registers its own metrics in the assembly's registry.
Sinks are built first, then the pipeline that feeds them, then the sources that feed it.
"""

import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from edgewatch.agent.alert_windows import Keeper
from edgewatch.agent.alerts import AlertMaker
from edgewatch.agent.config import (
    AgentConfig,
    JsonlSink,
    MqttSink,
    SparkplugSink,
    StdoutSink,
    Upstream,
    validate,
)
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.drift import DriftWatch
from edgewatch.agent.machines import Router
from edgewatch.agent.metrics import Registry
from edgewatch.agent.model import Model
from edgewatch.agent.onsite.learner import Learner
from edgewatch.agent.onsite.tuner import Tuner
from edgewatch.agent.pipeline import Pipeline
from edgewatch.agent.sinks.mqtt import Forwarder
from edgewatch.agent.sinks.outputs import Lines, Sink, Spooled
from edgewatch.agent.sinks.sparkplug import SparkplugForwarder
from edgewatch.agent.sinks.spool import Spool
from edgewatch.agent.sources import DecoderMetrics
from edgewatch.agent.sources.modbus import ModbusReader
from edgewatch.agent.sources.mqtt import MqttReader
from edgewatch.agent.sources.opcua import OpcuaReader
from edgewatch.agent.sources.replay import ReplayReader, load_recording
from edgewatch.agent.sources.serial import SerialReader
from edgewatch.agent.sources.settings import (
    ModbusSource,
    MqttSource,
    OpcuaSource,
    ReplaySource,
    SerialSource,
    SparkplugSource,
)
from edgewatch.agent.speed_tags import SpeedTags
from edgewatch.agent.supervisor import Supervisor

log = logging.getLogger(__name__)
Source = SerialReader | MqttReader | ReplayReader | ModbusReader | OpcuaReader


@dataclass
class Wiring:
    """What a source or sink is built with beside its own config, and what the MQTT sink
    builds for the rest of the agent. ``subscriptions``: the handlers of the topics (under the
    topic root) that the MQTT sink's session subscribes to."""

    config: AgentConfig
    registry: Registry
    supervisor: Supervisor
    subscriptions: dict[str, Callable[[bytes], None]] = field(default_factory=dict)
    spool: Spool | None = None
    forwarder: Forwarder | None = None


@dataclass(frozen=True)
class Assembly:
    """The agent's parts, built and not started."""

    config: AgentConfig
    registry: Registry
    supervisor: Supervisor
    pipeline: Pipeline
    sources: list[Source]
    spool: Spool | None
    forwarder: Forwarder | None
    learner: Learner

    def play(self) -> ReplayReader:
        """Start the first source, a recording, on a thread of its own (and the fitting thread
        of on-site learning); it sets ``done`` once it has handed over its last block."""
        reader = self.sources[0]
        assert isinstance(reader, ReplayReader), "play() an agent that replays a recording"
        threading.Thread(target=reader.run, args=(threading.Event(),), daemon=True).start()
        if self.learns:
            stop = threading.Event()
            threading.Thread(target=self.learner.run, args=(stop,), daemon=True).start()
        return reader

    @property
    def learns(self) -> bool:
        """Whether a machine learns on site, and so needs the learner's fitting thread."""
        return any(machine.learn is not None for machine in self.config.machines)


def replaying(
    site: str,
    bundle: Path | None,
    decision: Decision,
    source: dict[str, Any],
    sink: dict[str, Any],
    learn: dict[str, Any] | None = None,
) -> AgentConfig:
    """The config of an agent that plays one recording (``source``: a replay source's fields
    but its type) into ``sink``, scoring with the bundle at ``bundle``, or learning on site as
    ``learn`` says (a machine's ``learn``, ``features`` and ``learning_dir``): what ``replay``
    and the demo run. ``ConfigError`` says what is wrong with it."""
    learning = learn or {}
    machine = {k: v for k, v in learning.items() if k != "learning_dir"}
    return validate(
        {
            "site": site,
            "device": "replay",
            "model": {"bundle": bundle, "watch": False},
            "decision": decision,
            "machines": [{"name": "replay", "devices": [source["device"]], **machine}]
            if learn
            else [],
            **({"learning_dir": learning["learning_dir"]} if "learning_dir" in learning else {}),
            "sources": [{"type": "replay", **source}],
            "sinks": [sink],
        }
    )


def _upstream(config: MqttSink | SparkplugSink, parts: Wiring) -> Sink:
    """The spool, the forwarder that delivers it to the broker (as a Sparkplug B edge node for
    a sparkplug sink), and the sink into it."""
    agent = parts.config
    assert agent.mqtt is not None
    settings = agent.spool
    spool = parts.spool = Spool(settings.path, settings.max_rows, settings.max_bytes)
    spool.export_metrics(parts.registry)
    topics = {agent.topics + name: handler for name, handler in parts.subscriptions.items()}
    status, spawn = agent.topics + "status", parts.supervisor.start
    if isinstance(config, SparkplugSink):
        node = (config.group, config.node or agent.device)
        forwarder: Forwarder = SparkplugForwarder(
            agent.mqtt, agent.client_id, status, spool, node, config.primary_host, topics, spawn
        )
    else:
        forwarder = Forwarder(agent.mqtt, agent.client_id, status, spool, topics, spawn=spawn)
    parts.forwarder = forwarder
    forwarder.export_metrics(parts.registry)
    return Spooled(spool, agent.topics, forwarder.notify, config.telemetry)


def _stdout_sink(config: StdoutSink, parts: Wiring) -> Sink:
    return Lines(sys.stdout)


def _jsonl_sink(config: JsonlSink, parts: Wiring) -> Sink:
    return Lines.file(config.path)


def _serial_source(config: SerialSource, index: int, parts: Wiring, to: Pipeline) -> Source:
    return SerialReader(config, to.offer)


def _mqtt_source(
    config: MqttSource | SparkplugSource, index: int, parts: Wiring, to: Pipeline
) -> Source:
    assert parts.config.mqtt is not None
    client_id = f"{parts.config.client_id}-in{index}"
    guard = partial(parts.supervisor.guard, f"source{index}")
    return MqttReader(config, parts.config.mqtt, client_id, to.offer, guard)


def _modbus_source(config: ModbusSource, index: int, parts: Wiring, to: Pipeline) -> Source:
    return ModbusReader(config, to.offer)


def _opcua_source(config: OpcuaSource, index: int, parts: Wiring, to: Pipeline) -> Source:
    return OpcuaReader(config, to.offer)


def _replay_source(config: ReplaySource, index: int, parts: Wiring, to: Pipeline) -> Source:
    recording = load_recording(config.path, config.channels, config.timestamps, config.time_order)
    if config.rows is not None:
        recording = recording.cut(*config.rows)
    return ReplayReader(
        recording,
        config.device,
        config.channels,
        config.sample_rate,
        config.speed,
        to.put,
        start_ts=config.start_ts,
    )


SINKS: dict[str, Callable[[Any, Wiring], Sink]] = {
    "mqtt": _upstream,
    "sparkplug": _upstream,
    "stdout": _stdout_sink,
    "jsonl": _jsonl_sink,
}
SOURCES: dict[str, Callable[[Any, int, Wiring, Pipeline], Source]] = {
    "serial": _serial_source,
    "mqtt": _mqtt_source,
    "replay": _replay_source,
    "modbus": _modbus_source,
    "sparkplug": _mqtt_source,
    "opcua": _opcua_source,
}


def assemble(
    config: AgentConfig,
    model: Model | None = None,
    *,
    registry: Registry | None = None,
    supervisor: Supervisor | None = None,
    subscriptions: dict[str, Callable[[bytes], None]] | None = None,
    keeper: Keeper | None = None,
    sinks: Sequence[Sink] = (),
    inline_learning: bool = False,
) -> Assembly:
    """The parts ``config`` names, and the pipeline between them, scoring with ``model`` (or
    waiting for one to be swapped in). ``sinks`` are added to the configured ones. With
    ``inline_learning`` a baseline is fitted as soon as it is complete, on the pipeline's
    thread, as a replay wants; else on a thread of its own."""
    registry = registry or Registry()
    wiring = Wiring(config, registry, supervisor or Supervisor(registry), subscriptions or {})
    outputs = [SINKS[sink.type](sink, wiring) for sink in config.sinks] + list(sinks)
    telemetry = next((s for s in config.sinks if isinstance(s, Upstream)), None)
    pipeline = Pipeline(
        model,
        AlertMaker(config.site, wiring.spool.sequences() if wiring.spool else None),
        outputs,
        registry,
        telemetry_interval_s=telemetry.telemetry_interval_s if telemetry else 10.0,
        keeper=keeper,
        max_devices=config.max_devices,
        router=Router(config.machines, config.model.bundle is not None, config.max_devices),
    )
    learner = _watches(config, pipeline, wiring.forwarder, inline_learning)
    if any(machine.speed_tag is not None for machine in config.machines):
        pipeline.speeds = SpeedTags(config.machines)
    decoders = DecoderMetrics(registry)
    sources = []
    for i, source in enumerate(config.sources):
        reader = SOURCES[source.type](source, i, wiring, pipeline)
        sources.append(reader)
        if not isinstance(reader, ReplayReader):
            decoders.add(f"{i}:{source.type}", reader.counts)
    return Assembly(
        config,
        registry,
        wiring.supervisor,
        pipeline,
        sources,
        wiring.spool,
        wiring.forwarder,
        learner,
    )


def _watches(
    config: AgentConfig, pipeline: Pipeline, forwarder: Forwarder | None, inline: bool
) -> Learner:
    """The pipeline's learner, drift watch and trials, reporting on the status topic (or the
    log)."""
    report = forwarder.status if forwarder is not None else _log_status
    if config.drift.enabled:
        d = config.drift
        pipeline.drift = DriftWatch(d.level, d.ratio, d.run_length, config.max_devices, d.spacing_s)
    pipeline.report = report
    pipeline.trials.settings = config.shadow
    install = pipeline.try_out if config.shadow.refits else pipeline.swap
    learner = pipeline.learner = Learner(
        config.learning_dir,
        pipeline.stream_metrics,
        lambda route, model: install(model, route.key),
        report,
        config.model.threads,
        config.max_devices,
        inline=inline,
        shadowed=config.shadow.refits,
    )
    tuner = pipeline.tuner = Tuner(learner, any(m.adapt for m in config.machines))
    pipeline.trials.settled = tuner.settled
    learner.export_metrics(pipeline.registry)
    return learner


def _log_status(event: dict[str, object]) -> None:
    log.info("status: %s", json.dumps(event))
