"""wal/object_log.py: the WAL whose group commits are objects (wal.type=s3),
over the in-memory store: commits, recovery on an empty disk, the fence,
trim keeping the newest object, a commit whose answer was lost."""
from __future__ import annotations

import asyncio

import pytest

from broker.log.takeover import DeadWals, StoreWalObjects
from objectstore import MemoryObjectStore
from wal.object_log import ObjectWriteAheadLog, WalFenced, fence_generation, sequences

PREFIX = "wal/1/"


async def opened(store, **kw) -> ObjectWriteAheadLog:
    wal = ObjectWriteAheadLog(StoreWalObjects(store), PREFIX, **kw)
    await wal.load()
    assert list(wal.recover()) == []
    return wal


async def test_one_put_per_group_commit_and_recovery_from_the_bucket():
    store = MemoryObjectStore()
    wal = await opened(store)
    futs = [wal.append(1, b"k", b"v%d" % i)[1] for i in range(5)]   # one event-loop step
    await asyncio.gather(*futs)
    loc, fut = wal.append(2, b"k2", b"later")
    await fut
    assert wal.read(loc) == b"later"
    assert sequences(await store.list(PREFIX), PREFIX) == [0, 1, 2]      # the start's own fence, 2 commits
    await wal.close()
    again = ObjectWriteAheadLog(StoreWalObjects(store), PREFIX)
    await again.load()
    got = [(e.kind, bytes(e.key), bytes(e.data)) for e in again.recover()]
    assert got == [(1, b"k", b"v%d" % i) for i in range(5)] + [(2, b"k2", b"later")]
    _, fut = again.append(1, b"k", b"next")
    await fut
    assert sequences(await store.list(PREFIX), PREFIX) == [0, 1, 2, 3, 4]
    await again.close()


async def test_a_fence_fails_the_commit_and_everything_after_it():
    store = MemoryObjectStore()
    wal = await opened(store)
    fenced: list[int] = []
    wal.on_fenced = fenced.append
    await wal.append(1, b"k", b"acked")[1]
    await DeadWals(StoreWalObjects(store)).fence(1, generation=5)
    _, fut = wal.append(1, b"k", b"late")
    with pytest.raises(WalFenced):
        await fut
    assert fenced == [2]      # after its own fence (0) and one commit (1)
    with pytest.raises(WalFenced):
        wal.append(1, b"k", b"more")
    await wal.rejoin()                        # a new life above the fence
    loc, fut = wal.append(1, b"k", b"new life")
    await fut
    assert loc[0] == 4
    bodies = [await store.get(k) for k in await store.list(PREFIX)]
    # own fence at start, a commit, the takeover's fence, own fence at rejoin, a commit
    assert [fence_generation(b) for b in bodies] == [0, None, 5, 0, None]
    await wal.close()


async def test_trim_keeps_the_newest_object_so_a_fence_lands_on_the_next_sequence():
    store = MemoryObjectStore()
    wal = await opened(store)
    for i in range(3):
        await wal.append(1, b"k", b"x%d" % i)[1]
    cut = wal.cut()
    assert wal.trim(cut) > 0
    await asyncio.sleep(0)
    for _ in range(10):
        await asyncio.sleep(0)
    assert sequences(await store.list(PREFIX), PREFIX) == [0, 3]      # own fence, the newest commit
    assert await DeadWals(StoreWalObjects(store)).fence(1, generation=1) == 4
    with pytest.raises(WalFenced):
        await wal.append(1, b"k", b"late")[1]
    await wal.close()


async def test_a_commit_whose_answer_was_lost_is_not_mistaken_for_a_fence():
    store = MemoryObjectStore()
    wal = await opened(store)
    # the first PUT lands but its answer is lost (StoreUnavailable after the write)
    store.fail("put", PREFIX, times=1, after=True)
    await asyncio.wait_for(wal.append(1, b"k", b"v")[1], 5)
    assert wal.fenced_at is None
    await wal.close()


async def test_a_put_of_the_previous_life_landing_late_stays_below_the_restart_fence():
    store = MemoryObjectStore()
    wal = await opened(store)
    await wal.append(1, b"k", b"acked")[1]
    await wal.halt()
    again = ObjectWriteAheadLog(StoreWalObjects(store), PREFIX)
    await again.load()
    assert [bytes(e.data) for e in again.recover()] == [b"acked"]
    # the old life's last PUT (sent before it died) lands now, at the number it had
    assert not await StoreWalObjects(store).create("wal/1/" + "%020d" % 2, b"zombie")
    loc, fut = again.append(1, b"k", b"new")
    await fut
    assert again.fenced_at is None and loc[0] == 3
    await again.close()


async def test_the_store_being_down_delays_the_ack_and_never_fakes_it():
    store = MemoryObjectStore()
    wal = await opened(store)
    store.fail("put", PREFIX, times=5)
    _, fut = wal.append(1, b"k", b"v")
    await asyncio.sleep(0.01)
    assert not fut.done()                     # waiting, retrying
    await asyncio.wait_for(fut, 10)
    assert len(await store.list(PREFIX)) == 2      # its own fence and the commit
    await wal.close()


async def test_a_takeover_fences_once_even_after_the_dead_brokers_next_life_wrote():
    """Two survivors of one takeover: the second finds the first one's fence
    below the objects the rejoined broker wrote since, and fences nothing."""
    store = MemoryObjectStore()
    wal = await opened(store)
    await wal.append(1, b"k", b"acked")[1]
    first = await DeadWals(StoreWalObjects(store)).fence(1, generation=7)
    with pytest.raises(WalFenced):
        await wal.append(1, b"k", b"late")[1]
    await wal.rejoin()
    await wal.append(1, b"k", b"next life")[1]
    assert await DeadWals(StoreWalObjects(store)).fence(1, generation=7) == first
    assert await DeadWals(StoreWalObjects(store)).fence(1, generation=8) > first   # a later takeover does
    await wal.close()
