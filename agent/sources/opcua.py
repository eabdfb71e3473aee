"""OPC UA (asyncua): subscriptions to a server's variables, made rows of process channels.

The source runs an event loop on its own thread. A session connects (with the security mode
and the login the config gives), subscribes to every node at ``sampling_s`` and holds until
the agent stops or the connection is lost; then, after a back-off up to ``reconnect_max_s``,
a new session subscribes again. The values that change in one publish give each of their
devices a row, once all of the device's nodes have a value (``sources.latest``), timed by the
newest source timestamp among them (else the server's, else now). Counted by reason: a value
of bad quality (``bad_status``), one that is no number (``not_numeric``), a node the server
refused (``bad_node``), a session lost or refused (``link_down``).
"""

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.uaerrors import UaError

from edgewatch.agent.clock import Backoff
from edgewatch.agent.credentials import credential
from edgewatch.agent.framing import Counts
from edgewatch.agent.sources import Offer
from edgewatch.agent.sources.latest import Latest
from edgewatch.agent.sources.settings import OpcuaLink, OpcuaSource, channels_by_device

log = logging.getLogger(__name__)
TICK_S = 0.2


async def client(link: OpcuaLink) -> Client:
    """A client of the server ``link`` names, secured and logged in as it says; not connected."""
    made = Client(link.url, timeout=link.timeout_s)
    made.application_uri = link.application_uri
    if link.security != "None":
        assert link.certificate is not None and link.private_key is not None
        server = link.server_certificate
        await made.set_security(
            getattr(security_policies, f"SecurityPolicy{link.policy}"),
            str(credential(link.certificate)),
            str(credential(link.private_key)),
            server_certificate=str(credential(server)) if server is not None else None,
            mode=getattr(ua.MessageSecurityMode, link.security),
        )
    if link.username is not None:
        made.set_user(link.username)
        if link.password_file is not None:
            made.set_password(credential(link.password_file).read_text().strip())
    return made


class OpcuaReader:
    def __init__(
        self, config: OpcuaSource, offer: Offer, clock: Callable[[], float] = time.time
    ) -> None:
        self.config, self.offer, self.clock = config, offer, clock
        self.counts = Counts()
        self.connected = False
        self.sessions = 0
        self._channels: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for node in config.nodes:
            node_id = ua.NodeId.from_string(node.node_id).to_string()
            self._channels[node_id].append((node.device, node.channel))
        self._latest = Latest(channels_by_device(config.nodes), self.counts)
        self._changed: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.config.reconnect_max_s)
        while not stop.is_set():
            try:
                asyncio.run(self._session(stop, backoff))
            except (OSError, TimeoutError, UaError) as e:
                self.counts.rejected["link_down"] += 1
                log.warning("opcua %s: %s", self.config.url, e or type(e).__name__)
            finally:
                self.connected = False
            backoff.wait(stop)

    async def _session(self, stop: threading.Event, backoff: Backoff) -> None:
        async with await client(self.config) as session:
            period_ms = self.config.sampling_s * 1000
            subscription = await session.create_subscription(period_ms, self)
            ids = list(self._channels)
            handles = await subscription.subscribe_data_change(
                [session.get_node(node_id) for node_id in ids],
                sampling_interval=ua.Double(period_ms),
            )
            for node_id, handle in zip(ids, handles, strict=True):
                if isinstance(handle, ua.StatusCode):
                    self.counts.rejected["bad_node"] += 1
                    log.warning("opcua %s: %s refused: %s", self.config.url, node_id, handle.name)
            self.connected = True
            self.sessions += 1
            backoff.reset()
            log.info("opcua %s: subscribed to %d nodes", self.config.url, len(ids))
            while not stop.is_set():
                await asyncio.sleep(TICK_S)
                await session.check_connection()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        """asyncua's callback for a changed value, on the session's event loop: the changes
        of one publish are stored, and their devices' rows made once all are in."""
        reading = data.monitored_item.Value
        if reading.StatusCode is not None and not reading.StatusCode.is_good():
            self.counts.rejected["bad_status"] += 1
            value = None
        else:
            self.counts.accepted += 1
        stamp = reading.SourceTimestamp or reading.ServerTimestamp
        ts = stamp.replace(tzinfo=stamp.tzinfo or UTC).timestamp() if stamp else self.clock()
        if not self._changed:
            asyncio.get_running_loop().call_soon(self._rows)
        for device, channel in self._channels.get(node.nodeid.to_string(), ()):
            self._latest.set(device, channel, value)
            self._changed[device] = max(ts, self._changed.get(device, ts))

    def _rows(self) -> None:
        changed, self._changed = self._changed, {}
        for device, ts in changed.items():
            for block in self._latest.rows((device,), ts):
                self.offer(block)

    def status_change_notification(self, status: Any) -> None:
        """asyncua's callback when the subscription's status changes (the server lost it)."""
        log.warning("opcua %s: the subscription's status is %s", self.config.url, status)
