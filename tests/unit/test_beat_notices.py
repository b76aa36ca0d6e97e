"""Beat notices (notify.py): the controller dates a beat from its notice,
never from a notice the bucket does not confirm."""
from __future__ import annotations

import asyncio
import socket

from broker.clock import ManualClock
from broker.cluster.membership import BrokerRegistration, Membership
from broker.cluster.notify import Notifier, parse_beat
from objectstore import MemoryObjectStore

SESSION_MS = 9000


def member(store, node: int, clock: ManualClock) -> Membership:
    me = BrokerRegistration(node, "127.0.0.1", 9000 + node, f"inc-{node}", clock.now_ms())
    return Membership(store, me, clock=clock, session_timeout_ms=SESSION_MS)


async def two(clock: ManualClock) -> tuple[Membership, Membership]:
    store = MemoryObjectStore()
    controller, other = member(store, 1, clock), member(store, 2, clock)
    await controller.register()
    await other.register()
    await controller.refresh()
    return controller, other


async def test_a_confirmed_notice_dates_the_beat_and_the_session_runs_from_it():
    clock = ManualClock()
    controller, other = await two(clock)
    etag = await other.beat({})
    controller.heard(2, etag)           # the notice arrives at once...
    clock.advance(1.9)                  # ...the controller LISTs a heartbeat later
    await controller.refresh()
    assert controller.next_expiry_ms() == clock.now_ms() - 1900 + SESSION_MS
    clock.advance((SESSION_MS - 1900) / 1000 - 0.001)
    assert controller.is_live(2)
    clock.advance(0.002)                # the session after the beat, not after the LIST
    assert not controller.is_live(2)


async def test_without_a_notice_the_beat_dates_from_the_list():
    clock = ManualClock()
    controller, other = await two(clock)
    await other.beat({})
    clock.advance(1.9)
    await controller.refresh()
    assert controller.next_expiry_ms() == clock.now_ms() + SESSION_MS


async def test_a_notice_the_bucket_does_not_show_changes_nothing():
    clock = ManualClock()
    controller, other = await two(clock)
    await other.beat({})
    controller.heard(2, '"forged"')     # an etag no LIST shows: ignored
    clock.advance(1.9)
    await controller.refresh()
    assert controller.next_expiry_ms() == clock.now_ms() + SESSION_MS
    # a notice of the beat already seen cannot date it back either
    clock.advance(1.0)
    listed = controller._seen[2][0]
    controller.heard(2, listed)
    await controller.refresh()
    assert controller.next_expiry_ms() == clock.now_ms() - 1000 + SESSION_MS


def test_beat_notices_parse_strictly():
    assert parse_beat(b'sluice-beat 7 "abc"') == (7, '"abc"')
    for bad in (b"sluice-beat", b"sluice-beat x \"a\"", b"sluice-beat 7", b"sluice-beat 7 ",
                b"sluice-beat -1 e", b"sluice-beat 7 " + b"e" * 201, b"sluice-beat 7 \xff"):
        assert parse_beat(bad) is None, bad


async def test_a_notice_travels_over_udp_to_the_listener():
    heard: list[tuple[int, str]] = []
    got = asyncio.Event()

    def on_beat(node: int, etag: str) -> None:
        heard.append((node, etag))
        got.set()

    async def no_refresh() -> None:
        return None

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    receiver, sender = Notifier(no_refresh, on_beat), Notifier(no_refresh)
    assert await receiver.listen("127.0.0.1", port)
    assert await sender.listen("127.0.0.1", 0)
    try:
        sender.send_beat(("127.0.0.1", port), 3, '"d41d8cd9"')
        await asyncio.wait_for(got.wait(), 5)
    finally:
        sender.close()
        receiver.close()
    assert heard == [(3, '"d41d8cd9"')]
