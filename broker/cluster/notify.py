"""Notices between brokers: a speed-up, never a dependency.

A broker that changed the metadata document (a topic, a move's target, a
hand-off's flip, a controller decision) sends every other live broker one UDP
datagram, ``sluice-metadata <generation>``, to the host and port it advertises
(UDP and TCP ports are separate spaces: the datagram socket shares the Kafka
listener's number). A broker that receives one re-reads the document now
(HEAD, + GET if it changed) instead of at its next heartbeat; notices that
arrive while a refresh runs are folded into one more. A notice that is lost,
or a broker that cannot bind the socket, only delays what the heartbeat
would find anyway (docs/cluster.md, invariant 5), so there is no ack, retry
or authentication: the worst a forged datagram can do is cost one HEAD.

Beat notices (docs/failover.md §2): after each heartbeat PUT a broker sends
the controller ``sluice-beat <node> <etag>``. The controller still learns of
the beat only from its LIST of the bucket; the notice only tells it since
when that beat has been there, so a broker's session is timed from its last
beat, not from the controller's next LIST after it (which was up to a
heartbeat interval later). A notice whose etag the LIST does not show is
ignored, so a lost or forged one changes nothing but that timing.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

PREFIX = b"sluice-metadata "
BEAT_PREFIX = b"sluice-beat "
MAX_ETAG = 200


def parse_beat(data: bytes) -> tuple[int, str] | None:
    """``(node, etag)`` of a beat notice, or None if it is not a well-formed one."""
    node, _, etag = data[len(BEAT_PREFIX):].partition(b" ")
    if not node.isdigit() or not etag or len(etag) > MAX_ETAG:
        return None
    try:
        return int(node), etag.decode("ascii")
    except UnicodeDecodeError:
        return None


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_notice: Callable[[], None], on_beat: Callable[[int, str], None]) -> None:
        self.on_notice = on_notice
        self.on_beat = on_beat

    def datagram_received(self, data: bytes, addr) -> None:
        if data.startswith(PREFIX):
            self.on_notice()
        elif data.startswith(BEAT_PREFIX):
            beat = parse_beat(data)
            if beat is not None:
                self.on_beat(*beat)

    def error_received(self, exc: Exception) -> None:   # an ICMP "port unreachable": not our concern
        log.debug("metadata notice: %s", exc)


class Notifier:
    def __init__(self, refresh: Callable[[], Awaitable[object]],
                 on_beat: Callable[[int, str], None] = lambda _node, _etag: None) -> None:
        self.refresh = refresh
        self.on_beat = on_beat
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task | None = None
        self._again = False
        self.received = 0

    async def listen(self, host: str, port: int) -> bool:
        """Bind the datagram socket (False, and notices are off, if that fails)."""
        try:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Endpoint(self._notice, self.on_beat), local_addr=(host, port))
        except OSError as exc:
            log.warning("metadata notices off: cannot bind udp %s:%d (%s); brokers learn of "
                        "changes at their heartbeat", host, port, exc)
            return False
        self._transport = transport
        return True

    def send(self, endpoints: list[tuple[str, int]], generation: int) -> None:
        self._send(endpoints, PREFIX + str(generation).encode())

    def send_beat(self, endpoint: tuple[str, int], node: int, etag: str) -> None:
        self._send([endpoint], BEAT_PREFIX + f"{node} {etag}".encode("ascii", "replace"))

    def _send(self, endpoints: list[tuple[str, int]], body: bytes) -> None:
        if self._transport is None:
            return
        for host, port in endpoints:
            try:
                self._transport.sendto(body, (host, port))
            except OSError as exc:      # unresolvable host, full buffer: the heartbeat covers it
                log.debug("metadata notice to %s:%d: %s", host, port, exc)

    def _notice(self) -> None:
        self.received += 1
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        while True:
            self._again = False
            try:
                await self.refresh()
            except Exception as exc:    # the heartbeat retries and reports store errors
                log.debug("metadata notice: refresh failed: %s", exc)
            if not self._again:
                return

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._task is not None:
            self._task.cancel()
