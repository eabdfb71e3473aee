"""``edgewatch run``: the agent assembled from its config, started, and stopped without loss.

Threads: one per source, the pipeline, the MQTT forwarder, the model watcher, the fitting thread
of on-site learning, the HTTP status server and the systemd watchdog, each run by the supervisor
(``agent.supervisor``), which restarts a component that failed; the callbacks paho runs on its
network threads are guarded by it too. ``/healthz`` answers 503 while a component is down, and
the watchdog is not pinged.

On SIGTERM (or SIGINT) the agent tells systemd it is stopping, stops the sources, lets the
pipeline finish what is queued, gives the forwarder time to deliver the spool, says ``offline``
on the status topic and closes its files. What is not delivered by then stays in the spool for
the next start.
"""

import logging
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from types import FrameType

from edgewatch.agent.alerts import Alert
from edgewatch.agent.assembly import assemble
from edgewatch.agent.bundle import load_public_key
from edgewatch.agent.config import AgentConfig
from edgewatch.agent.feedback import FeedbackStore, Labelled
from edgewatch.agent.http import StatusServer
from edgewatch.agent.machines import DEFAULT, bundled
from edgewatch.agent.metrics import Registry
from edgewatch.agent.reload import Reloader, Reloaders
from edgewatch.agent.requests import Requests
from edgewatch.agent.sdnotify import notify, watchdog_interval
from edgewatch.agent.supervisor import Supervisor
from edgewatch.kernels import runtime

log = logging.getLogger(__name__)
STALLED_S = 10.0


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
        self._pipeline: threading.Thread | None = None
        self.feedback = FeedbackStore(config.feedback_db)
        self.feedback.export_metrics(self.registry)
        parts = assemble(
            config,
            registry=self.registry,
            supervisor=self.supervisor,
            subscriptions={
                "feedback": self.supervisor.guard("feedback", self.feedback.offer),
                "model": self.supervisor.guard("reload", self._notice),
            },
            keeper=self.feedback,
        )
        self.pipeline, self.sources = parts.pipeline, parts.sources
        self.spool, self.forwarder = parts.spool, parts.forwarder
        self.learner, self.learns = parts.learner, parts.learns
        self.feedback.listener = self.pipeline.tell
        self._close_open_alerts()
        key = load_public_key(config.model.public_key) if config.model.public_key else None
        self.bundled = bundled(config)
        install = self.pipeline.try_out if config.shadow.reloads else self.pipeline.swap
        self.reloaders = Reloaders(
            {
                lane.key: Reloader(
                    lane.path,
                    key,
                    lane.decision,
                    config.model.threads,
                    partial(self.pipeline.model_of, lane.key),
                    partial(install, key=lane.key),
                    self._model_error,
                    notice_root=config.model.notice_root,
                )
                for lane in self.bundled
            },
            self._model_error,
        )
        self.reloaders.export_metrics(self.registry)
        self.http = StatusServer(
            config.http.host, config.http.port, self.registry, self.health, self.supervisor.start
        )
        self.http.export_metrics()

    def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy while every component runs, the pipeline turns and every lane with a shipped
        bundle has a model; ``lanes`` names each lane's model, ``learning`` each device that
        is learning on site."""
        stalled = time.monotonic() - self.pipeline.heartbeat > STALLED_S
        down = self.supervisor.down()
        lanes = {
            key: f"{lane.model.bundle.manifest.name}:{lane.model.bundle.manifest.version}"
            for key, lane in list(self.pipeline.lanes.items())
        }
        waiting = [lane.key for lane in self.bundled if lane.key not in lanes]
        detail: dict[str, object] = {
            "model": lanes.get(DEFAULT),
            "lanes": lanes,
            "waiting_for_bundle": waiting,
            "learning": self.learner.states(),
            "drifted": self.pipeline.drift.drifted() if self.pipeline.drift else [],
            "kernels": self.kernels.form,
            "pipeline_stalled": stalled,
            "components": self.supervisor.states(),
            "uptime_s": round(time.monotonic() - self.started, 1),
        }
        if self.forwarder is not None and self.spool is not None:
            detail["mqtt_connected"] = self.forwarder.connected
            detail["spool_depth"] = self.spool.rows
        return not waiting and not stalled and not down, detail

    def _notice(self, payload: bytes) -> None:
        self.reloaders.notice(payload)

    def _close_open_alerts(self) -> None:
        """An alert left open by the last run (``kill -9``, a power cut) is cleared, reason
        ``restart``: decisions start afresh, and nothing remembers what kept it open."""
        if self.spool is None:
            return
        for payload in self.spool.open_alerts():
            cleared = self.pipeline.alerts.closed_by_restart(
                Alert.model_validate_json(payload), time.time()
            )
            self.pipeline.fanout.write([cleared])
            log.info(
                "alert %s of %s cleared: the agent restarted", cleared.alert_id, cleared.device
            )

    def _model_error(self, message: str) -> None:
        self._status({"event": "model_refused", "error": message})

    def _status(self, event: dict[str, object]) -> None:
        if self.forwarder is not None:
            self.forwarder.status(event)

    def start(self) -> None:
        """Start every component; once, however often it is called."""
        if self._pipeline is not None or self._pipeline_stop.is_set():
            return
        self.reloaders.check()
        self.pipeline.fanout.start()
        self._pipeline = self.supervisor.start("pipeline", self.pipeline.run, self._pipeline_stop)
        if self.forwarder is not None:
            self.forwarder.start()
        for i, source in enumerate(self.sources):
            self.supervisor.start(f"source{i}", source.run, self._sources_stop)
        if self.config.model.watch:
            self.supervisor.start("reload", self.reloaders.run, self._watch_stop)
        if self.learns:
            self.supervisor.start("learning", self.learner.run, self._watch_stop)
        shadow = self.config.shadow
        if self.learns or shadow.reloads or shadow.refits:
            requests = Requests(
                self.config.learning_dir,
                lambda device: self.pipeline.tell(Labelled(device, "rebaseline")),
                self.pipeline.decide,
            )
            self.supervisor.start("requests", requests.run, self._watch_stop)
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
        """Stop every component, without loss (see the module); once, however often it is
        called."""
        if self._pipeline_stop.is_set():
            return
        notify("STOPPING=1")
        log.info("stopping")
        self._sources_stop.set()
        self._watch_stop.set()
        self._pipeline_stop.set()
        if self._pipeline is not None:
            self._pipeline.join(timeout=flush_s)
        self.learner.save()
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
