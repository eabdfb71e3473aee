"""Metrics in the Prometheus text format, and systemd's notify protocol over a real socket."""

import socket
import threading
import urllib.request

import numpy as np
import pytest

from edgewatch.agent.http import StatusServer
from edgewatch.agent.metrics import Registry
from edgewatch.agent.sdnotify import notify, watchdog_interval
from edgewatch.agent.supervisor import thread
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.integration


def test_metrics_render_in_the_prometheus_text_format():
    registry = Registry()
    registry.counter("alerts_total", "Alert transitions", ("severity",)).inc(2, "warning")
    histogram = registry.histogram("score", "Scores", (1.0, 2.0))
    histogram.observe_array(np.array([0.5, 1.5, 9.0]))
    histogram.observe(2.0)
    registry.collect("gauge", "spool_depth", "Waiting", (), lambda: {(): 3.0})
    registry.gauge("model_info", "Model", ("name",)).set(1, 'a "quoted"\nname')
    assert registry.render().splitlines() == [
        "# HELP edgewatch_alerts_total Alert transitions",
        "# TYPE edgewatch_alerts_total counter",
        'edgewatch_alerts_total{severity="warning"} 2',
        "# HELP edgewatch_score Scores",
        "# TYPE edgewatch_score histogram",
        'edgewatch_score_bucket{le="1"} 1',
        'edgewatch_score_bucket{le="2"} 3',
        'edgewatch_score_bucket{le="+Inf"} 4',
        "edgewatch_score_sum 13",
        "edgewatch_score_count 4",
        "# HELP edgewatch_spool_depth Waiting",
        "# TYPE edgewatch_spool_depth gauge",
        "edgewatch_spool_depth 3",
        "# HELP edgewatch_model_info Model",
        "# TYPE edgewatch_model_info gauge",
        'edgewatch_model_info{name="a \\"quoted\\"\\nname"} 1',
    ]
    with pytest.raises(ValueError, match="registered twice"):
        registry.counter("alerts_total", "again")


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_reaches_the_service_manager_s_socket(tmp_path, abstract):
    address = f"\0edgewatch-test-{id(tmp_path)}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        env = {"NOTIFY_SOCKET": "@" + address[1:] if abstract else address}
        assert notify("READY=1", env) and notify("STOPPING=1", env)
        assert [manager.recv(100), manager.recv(100)] == [b"READY=1", b"STOPPING=1"]
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_the_watchdog_pings_at_half_its_interval_and_only_for_its_pid():
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "bad"}) is None
    assert watchdog_interval({}) is None


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_the_status_server_caps_its_connections_and_drops_idle_ones():
    port = free_port()
    server = StatusServer("127.0.0.1", port, Registry(), lambda: (True, {}), thread, 4, 2.0)
    server.start()
    before = threading.active_count()
    idle = []
    for i in range(12):
        idle.append(socket.create_connection(("127.0.0.1", port)))
        wait_for(lambda i=i: server.refused == max(0, i - 3), what="the server to take it")
    assert threading.active_count() <= before + 4
    # The idle ones time out, and the server answers again.
    wait_for(lambda: answers(port), what="an answer once the idle connections timed out")
    for connection in idle:
        connection.close()
    server.stop()
