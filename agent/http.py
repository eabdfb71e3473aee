"""``/healthz`` and ``/metrics`` over HTTP, on loopback unless configured otherwise.

A thread per connection, at most ``max_connections`` at once: a connection beyond them is closed
at once and counted (``refused``), and one that sends nothing is dropped after ``timeout_s``.
"""

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgewatch.agent.metrics import Registry
from edgewatch.agent.supervisor import Spawn, thread

Health = Callable[[], tuple[bool, dict[str, object]]]
Request = socket.socket | tuple[bytes, socket.socket]


class _Handler(BaseHTTPRequestHandler):
    server: "StatusServer"

    def do_GET(self) -> None:
        if self.path == "/metrics":
            body = self.server.registry.render().encode()
            self._reply(200, "text/plain; version=0.0.4; charset=utf-8", body)
        elif self.path == "/healthz":
            healthy, detail = self.server.health()
            body = json.dumps({"status": "ok" if healthy else "failing", **detail}).encode()
            self._reply(200 if healthy else 503, "application/json", body)
        else:
            self._reply(404, "text/plain", b"not found: try /healthz or /metrics\n")

    def _reply(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class StatusServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        registry: Registry,
        health: Health,
        spawn: Spawn = thread,
        max_connections: int = 8,
        timeout_s: float = 5.0,
    ) -> None:
        # The handler's class attribute is the socket timeout of each connection.
        super().__init__((host, port), type("Handler", (_Handler,), {"timeout": timeout_s}))
        self.registry, self.health = registry, health
        self.refused = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        self._spawn = spawn
        self._stop = threading.Event()
        self._started = False

    def process_request(self, request: Request, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Request, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def export_metrics(self) -> None:
        self.registry.collect(
            "counter",
            "http_refused_total",
            "Status connections closed beyond the server's cap",
            (),
            lambda: {(): self.refused},
        )

    def start(self) -> None:
        """Serve, in a thread of its own; once, however often it is called."""
        if not (self._started or self._stop.is_set()):
            self._started = True
            self._spawn("http", lambda stop: self.serve_forever(), self._stop)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.shutdown()
            self.server_close()
