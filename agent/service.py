"""``edgewatch run``: the agent assembled from its config, started, and stopped without loss.

Threads: one per source, the pipeline, the MQTT forwarder, the model watcher, the HTTP status
server and the systemd watchdog, each run by the supervisor (``agent.supervisor``), which
restarts a component that failed; the callbacks paho runs on its network threads are guarded by
it too. ``/healthz`` answers 503 while a component is down, and the watchdog is not pinged.

On SIGTERM (or SIGINT) the agent tells systemd it is stopping, stops the sources, lets the
pipeline finish what is queued, gives the forwarder time to deliver the spool, says ``offline``
on the status topic and closes its files. What is not delivered by then stays in the spool for
the next start.
"""

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from types import FrameType

from edgewatch.agent.alerts import Alert, AlertMaker
from edgewatch.agent.bundle import load_public_key
from edgewatch.agent.config import (
    AgentConfig,
    JsonlSink,
    MqttSink,
    MqttSource,
    ReplaySource,
    SerialSource,
    StdoutSink,
)
from edgewatch.agent.feedback import FeedbackStore
from edgewatch.agent.framing import Counts
from edgewatch.agent.http import StatusServer
from edgewatch.agent.metrics import Registry
from edgewatch.agent.pipeline import Pipeline
from edgewatch.agent.reload import Reloader
from edgewatch.agent.sdnotify import notify, watchdog_interval
from edgewatch.agent.sinks.mqtt import Forwarder
from edgewatch.agent.sinks.outputs import Lines, Sink, Spooled
from edgewatch.agent.sinks.spool import Spool
from edgewatch.agent.sources.mqtt import MqttReader
from edgewatch.agent.sources.replay import ReplayReader, load_recording
from edgewatch.agent.sources.serial import SerialReader
from edgewatch.agent.supervisor import Supervisor
from edgewatch.kernels import runtime

log = logging.getLogger(__name__)
STALLED_S = 10.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)

Source = SerialReader | MqttReader | ReplayReader


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.kernels = runtime.select(config.model.threads)
        fallback = self.kernels.form == "jit" and config.model.threads == 1
        log.log(
            logging.WARNING if fallback else logging.INFO,
            "kernels: %s (%s)",
            self.kernels.form,
            self.kernels.why,
        )
        self.registry = Registry()
        self.supervisor = Supervisor(self.registry)
        self.registry.gauge(
            "kernels_info", "The compiled form of the kernels in use (value 1)", ("form",)
        ).set(1, self.kernels.form)
        self.started = time.monotonic()
        self._sources_stop = threading.Event()
        self._pipeline_stop = threading.Event()
        self._watch_stop = threading.Event()
        topics = config.topics
        self.feedback = FeedbackStore(config.feedback_db)
        self.spool: Spool | None = None
        self.forwarder: Forwarder | None = None
        sinks: list[Sink] = []
        for sink in config.sinks:
            if isinstance(sink, MqttSink):
                assert config.mqtt is not None
                self.spool = Spool(config.spool.path, config.spool.max_rows, config.spool.max_bytes)
                self.forwarder = Forwarder(
                    config.mqtt,
                    config.client_id,
                    topics + "status",
                    self.spool,
                    {
                        topics + "feedback": self.supervisor.guard("feedback", self.feedback.offer),
                        topics + "model": self.supervisor.guard("reload", self._notice),
                    },
                    latency=self.registry.histogram(
                        "publish_latency_seconds",
                        "From handing an alert to the broker to its PUBACK",
                        LATENCY_BUCKETS,
                    ),
                    spawn=self.supervisor.start,
                )
                sinks.append(Spooled(self.spool, topics, self.forwarder.notify, sink.telemetry))
            elif isinstance(sink, StdoutSink):
                sinks.append(Lines(sys.stdout))
            elif isinstance(sink, JsonlSink):
                sinks.append(Lines.file(sink.path))
        telemetry = next((s for s in config.sinks if isinstance(s, MqttSink)), None)
        self.pipeline = Pipeline(
            None,
            config.decision,
            AlertMaker(config.site, self.spool.sequences() if self.spool else None),
            sinks,
            self.registry,
            telemetry_interval_s=telemetry.telemetry_interval_s if telemetry else 10.0,
            record=self.feedback.record,
            max_devices=config.max_devices,
        )
        self._close_open_alerts(sinks)
        key = load_public_key(config.model.public_key) if config.model.public_key else None
        self.reloader = Reloader(
            config.model.bundle,
            key,
            config.decision,
            config.model.threads,
            lambda: self.pipeline.model,
            self.pipeline.swap,
            self._model_error,
            notice_root=config.model.notice_root,
        )
        self.sources = [self._source(i, s) for i, s in enumerate(config.sources)]
        self.http = StatusServer(
            config.http.host, config.http.port, self.registry, self.health, self.supervisor.start
        )
        self._collectors()

    def _source(self, index: int, config: SerialSource | MqttSource | ReplaySource) -> Source:
        if isinstance(config, SerialSource):
            return SerialReader(config, self.pipeline.offer)
        if isinstance(config, MqttSource):
            assert self.config.mqtt is not None
            client_id = f"{self.config.client_id}-in{index}"
            guard = partial(self.supervisor.guard, f"source{index}")
            return MqttReader(config, self.config.mqtt, client_id, self.pipeline.offer, guard)
        samples = load_recording(config.path, config.channels)
        return ReplayReader(
            samples,
            config.device,
            config.channels,
            config.sample_rate,
            config.speed,
            self.pipeline.put,
        )

    def _collectors(self) -> None:
        registry = self.registry
        counted = [
            (f"{i}:{type(s).__name__.removesuffix('Reader').lower()}", s.counts)
            for i, s in enumerate(self.sources)
            if isinstance(s, SerialReader | MqttReader)
        ]

        def by_source(read: Callable[[Counts], int]) -> Callable[[], dict[tuple[str, ...], float]]:
            return lambda: {(name,): float(read(counts)) for name, counts in counted}

        registry.collect(
            "counter",
            "frames_accepted_total",
            "Frames decoded",
            ("source",),
            by_source(lambda c: c.accepted),
        )
        registry.collect(
            "counter",
            "frames_garbage_bytes_total",
            "Bytes skipped between frames",
            ("source",),
            by_source(lambda c: c.garbage_bytes),
        )
        registry.collect(
            "counter",
            "sequence_gaps_total",
            "Frame sequence numbers missed",
            ("source",),
            by_source(lambda c: c.gaps),
        )
        registry.collect(
            "counter",
            "frames_rejected_total",
            "Frames refused by the decoder",
            ("source", "reason"),
            lambda: {
                (name, reason): float(n)
                for name, counts in counted
                for reason, n in counts.rejected.items()
            },
        )
        spool = self.spool
        if spool is not None:
            registry.collect(
                "gauge",
                "spool_depth",
                "Messages waiting in the spool",
                (),
                lambda: {(): float(spool.rows)},
            )
            registry.collect(
                "gauge",
                "spool_bytes",
                "Payload bytes waiting in the spool",
                (),
                lambda: {(): float(spool.bytes)},
            )
            registry.collect(
                "counter",
                "spool_dropped_total",
                "Messages dropped from a full spool",
                ("kind",),
                lambda: {(k,): float(n) for k, n in spool.dropped.items()},
            )
            registry.collect(
                "counter",
                "spool_unstored_total",
                "Messages the disk refused to store",
                ("kind",),
                lambda: {(k,): float(n) for k, n in spool.unstored.items()},
            )
        forwarder = self.forwarder
        if forwarder is not None:
            registry.collect(
                "gauge",
                "mqtt_connected",
                "1 while the upstream connection is up",
                (),
                lambda: {(): float(forwarder.connected)},
            )
        reloader = self.reloader
        registry.collect(
            "counter",
            "model_reloads_total",
            "Model loads, by result",
            ("result",),
            lambda: {("ok",): float(reloader.loads), ("refused",): float(reloader.failures)},
        )
        http = self.http
        registry.collect(
            "counter",
            "http_refused_total",
            "Status connections closed beyond the server's cap",
            (),
            lambda: {(): float(http.refused)},
        )
        feedback = self.feedback
        registry.collect(
            "counter",
            "feedback_total",
            "Feedback messages, by result",
            ("result",),
            lambda: {
                ("ok",): float(feedback.accepted),
                ("refused",): float(feedback.rejected),
                ("dropped",): float(feedback.dropped),
            },
        )

    def health(self) -> tuple[bool, dict[str, object]]:
        model = self.pipeline.model
        stalled = time.monotonic() - self.pipeline.heartbeat > STALLED_S
        down = self.supervisor.down()
        detail: dict[str, object] = {
            "model": f"{model.bundle.manifest.name}:{model.bundle.manifest.version}"
            if model
            else None,
            "kernels": self.kernels.form,
            "pipeline_stalled": stalled,
            "components": self.supervisor.states(),
            "uptime_s": round(time.monotonic() - self.started, 1),
        }
        if self.forwarder is not None and self.spool is not None:
            detail["mqtt_connected"] = self.forwarder.connected
            detail["spool_depth"] = self.spool.rows
        return model is not None and not stalled and not down, detail

    def _notice(self, payload: bytes) -> None:
        self.reloader.notice(payload)

    def _close_open_alerts(self, sinks: list[Sink]) -> None:
        """An alert left open by the last run (``kill -9``, a power cut) is cleared, reason
        ``restart``: decisions start afresh, and nothing remembers what kept it open."""
        if self.spool is None:
            return
        for payload in self.spool.open_alerts():
            cleared = self.pipeline.alerts.closed_by_restart(
                Alert.model_validate_json(payload), time.time()
            )
            for sink in sinks:
                sink.send(cleared)
            log.info(
                "alert %s of %s cleared: the agent restarted", cleared.alert_id, cleared.device
            )

    def _model_error(self, message: str) -> None:
        if self.forwarder is not None:
            self.forwarder.status({"event": "model_refused", "error": message})

    def start(self) -> None:
        self.reloader.check()
        self._pipeline = self.supervisor.start("pipeline", self.pipeline.run, self._pipeline_stop)
        if self.forwarder is not None:
            self.forwarder.start()
        for i, source in enumerate(self.sources):
            self.supervisor.start(f"source{i}", source.run, self._sources_stop)
        if self.config.model.watch:
            self.supervisor.start("reload", self.reloader.run, self._watch_stop)
        self.supervisor.start("feedback", self.feedback.run, self._watch_stop)
        self.http.start()
        interval = watchdog_interval()
        if interval is not None:
            self.supervisor.start("watchdog", self._watchdog(interval), self._watch_stop)
        notify("READY=1")
        log.info(
            "edgewatch running: %d sources, topics under %s", len(self.sources), self.config.topics
        )

    def _watchdog(self, interval: float) -> Callable[[threading.Event], None]:
        def ping(stop: threading.Event) -> None:
            while not stop.wait(interval):
                # Not health(): an agent waiting for its first bundle is not hung.
                turning = time.monotonic() - self.pipeline.heartbeat < STALLED_S
                if turning and not self.supervisor.down():
                    notify("WATCHDOG=1")

        return ping

    def stop(self, flush_s: float = 5.0) -> None:
        notify("STOPPING=1")
        log.info("stopping")
        self._sources_stop.set()
        self._watch_stop.set()
        self._pipeline_stop.set()
        self._pipeline.join(timeout=flush_s)
        if self.forwarder is not None:
            self.forwarder.stop(flush_s)
        self.pipeline.close()
        self.http.stop()
        if self.spool is not None:
            self.spool.close()
        self.feedback.close()

    def run(self) -> int:
        """Run until SIGTERM or SIGINT.

        The kernel may hand the signal to any thread, and Python runs its handler only when the
        main thread next runs bytecode: so the main thread sleeps in short naps, never in a wait
        without end, and the handler takes no lock (an Event's could be held by the very code
        it interrupts).
        """
        requested: list[int] = []

        def request_stop(signum: int, frame: FrameType | None) -> None:
            requested.append(signum)

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.start()
        while not requested:
            time.sleep(0.2)
        self.stop()
        return 0
