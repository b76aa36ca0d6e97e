"""Reading a dead broker's WAL, for a takeover (docs/failover.md §3): from the
bucket, or from the shared directory it registered (§8).

``DeadWals.reading(node, generation)`` fences the dead broker's WAL (once per
takeover: a fence object at its next sequence number, If-None-Match) and
reads every object below the fence once, however many of its partitions this
broker takes over; the entries are dropped when the last reader is done.
``select_batches`` picks one partition's acknowledged tail from them.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import AsyncIterator, Callable, Protocol

from objectstore import NotFound, ObjectStore, PreconditionFailed
from wal import Entry
from wal.object_log import (
    WalObjects,
    encode_fence,
    fence_generation,
    is_takeover_fence,
    object_key,
    read_object,
    sequences,
)

from .records import read_header

log = logging.getLogger(__name__)
_I32 = struct.Struct(">i")
FENCE_MAX = 64      # bytes: a fence object is smaller (~45), a WAL commit nearly always bigger
READERS = 16        # a dead broker's WAL objects read at once
_I64 = struct.Struct(">q")


def wal_prefix(node_id: int) -> str:
    return f"wal/{node_id}/"


class StoreWalObjects:
    """The object WAL's view of an ObjectStore (wal.object_log.WalObjects)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def create(self, key: str, body: bytes) -> bool:
        try:
            await self.store.put_if_absent(key, body)
        except PreconditionFailed:
            return False
        return True

    async def get(self, key: str) -> bytes | None:
        try:
            return bytes(await self.store.get(key))
        except NotFound:
            return None

    async def list(self, prefix: str) -> list[str]:
        return await self.store.list(prefix)

    async def list_sizes(self, prefix: str) -> list[tuple[int, int]]:
        """(sequence number, size) of the WAL objects under ``prefix``, in order."""
        out = []
        for info in await self.store.list_info(prefix):
            stem = info.key[len(prefix):]
            if stem.isdigit():
                out.append((int(stem), info.size))
        return sorted(out)

    async def delete(self, key: str) -> None:
        await self.store.delete(key)


class ListedWalObjects(WalObjects, Protocol):
    """WalObjects that also list sizes: how a fence is found without reading every object."""

    async def list_sizes(self, prefix: str) -> list[tuple[int, int]]: ...


class DeadWals:
    """Dead brokers' WALs, each reached through ``locate(node)``: the bucket
    (``wal.type=s3``) or the shared directory the dead broker registered."""

    def __init__(self, objects: ListedWalObjects,
                 locate: Callable[[int], ListedWalObjects | None] | None = None) -> None:
        self.objects = objects              # where our own WAL lives
        self.locate = locate
        self._reads: dict[tuple[int, int], asyncio.Task] = {}
        self._readers: dict[tuple[int, int], int] = {}
        self.fences: dict[tuple[int, int], int] = {}     # (node, generation) -> fence seq, as fenced here
        # (our node id, the fence that ended our last life): rejoining, we take over from ourselves
        self.own_fence: tuple[int, int] | None = None

    def of(self, node: int) -> ListedWalObjects:
        """Where ``node``'s WAL lives (ours: where our own does)."""
        found = self.locate(node) if self.locate is not None else None
        return found if found is not None else self.objects

    @contextlib.asynccontextmanager
    async def reading(self, node: int, generation: int) -> AsyncIterator[list[Entry]]:
        key = (node, generation)
        task = self._reads.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._reads[key] = asyncio.get_running_loop().create_task(
                self._fence_and_read(node, generation), name=f"read WAL of node {node}")
        self._readers[key] = self._readers.get(key, 0) + 1
        try:
            yield await asyncio.shield(task)
        finally:
            self._readers[key] -= 1
            if not self._readers[key]:
                del self._readers[key]
                self._reads.pop(key, None)

    async def fence(self, node: int, generation: int) -> int:
        """Fence ``node``'s WAL for the takeover of ``generation`` (step 4 of
        docs/failover.md §3) and return the fence's sequence number.

        At most one fence per takeover: a fence of this takeover (or a later
        one) already in the WAL is used, even with objects of the broker's
        next life above it (fencing again would end that life for nothing).
        Fences are tiny, so only small objects are read looking for one,
        newest first, down to an older takeover's fence. 1 LIST (+ GETs of
        small objects) + 1 PUT; nothing after the first time here."""
        known = self.fences.get((node, generation))
        if known is not None:
            return known
        if self.own_fence is not None and node == self.own_fence[0]:
            return self.own_fence[1]       # our own fenced life, taken over by ourselves
        prefix = wal_prefix(node)
        objects = self.of(node)
        while True:
            listed = [(seq, size) for seq, size in await objects.list_sizes(prefix)]
            for seq, size in reversed(listed):
                if size > FENCE_MAX:
                    continue
                body = await objects.get(object_key(prefix, seq))
                if body is None or not is_takeover_fence(body):
                    continue
                g = fence_generation(body)
                if g is not None and g >= generation:
                    self.fences[(node, generation)] = seq
                    return seq              # another survivor of this takeover fenced it
                break                       # an older takeover's fence: ours is not there yet
            newest = listed[-1][0] if listed else -1
            if await objects.create(object_key(prefix, newest + 1), encode_fence(generation)):
                log.info("fenced the WAL of node %d at object %d (takeover at generation %d)",
                         node, newest + 1, generation)
                self.fences[(node, generation)] = newest + 1
                return newest + 1
            # the dead broker (it was only slow) wrote newest + 1 first: fence above it

    async def _fence_and_read(self, node: int, generation: int) -> list[Entry]:
        fence = await self.fence(node, generation)
        prefix = wal_prefix(node)
        objects = self.of(node)
        seqs = [seq for seq in sequences(await objects.list(prefix), prefix) if seq < fence]
        sem = asyncio.Semaphore(READERS)

        async def read(seq: int) -> list[Entry]:
            async with sem:
                body = await objects.get(object_key(prefix, seq))
            if body is None or fence_generation(body) is not None:
                return []       # deleted since the listing (its data is in a manifest), or a fence
            return read_object(body, seq)
        entries: list[Entry] = []
        for part in await asyncio.gather(*(read(seq) for seq in seqs)):    # in WAL order
            entries.extend(part)
        return entries

    async def delete_below_fence(self, node: int, generation: int) -> int:
        """Every takeover from ``node`` is done: delete its WAL objects below
        the fence (the fence stays). Step 8. Only a broker that fenced it (or
        found its fence) knows where that is; others leave it."""
        prefix = wal_prefix(node)
        fence = self.fences.get((node, generation))
        if fence is None and self.own_fence is not None and node == self.own_fence[0]:
            fence = self.own_fence[1]
        if fence is None:
            return 0
        objects = self.of(node)
        n = 0
        for seq in sequences(await objects.list(prefix), prefix):
            if seq >= fence:
                break
            await objects.delete(object_key(prefix, seq))
            n += 1
        return n

    async def close(self) -> None:
        for task in self._reads.values():
            task.cancel()
        await asyncio.gather(*self._reads.values(), return_exceptions=True)
        self._reads.clear()


def select_batches(tails: list[tuple[list[Entry], int]], key: bytes, start: int, kind_batch: int,
                   kind_log_start: int) -> tuple[list[bytes], int | None]:
    """One partition's acknowledged tail in dead brokers' WAL entries, each
    WAL with the epoch its broker owned the partition at, oldest owner
    first: the batches from offset ``start`` on stamped with at most that
    epoch, in order, a later batch at an offset replacing the earlier ones
    from there (docs/failover.md invariant 4); and the highest log start
    offset written (None: none)."""
    chosen: list[tuple[int, int, bytes]] = []
    log_start: int | None = None
    for entries, max_epoch in tails:
        for e in entries:
            if e.key != key:
                continue
            if e.kind == kind_log_start:
                offset = _I64.unpack(e.data)[0]
                log_start = offset if log_start is None else max(log_start, offset)
                continue
            if e.kind != kind_batch:
                continue
            data = e.data
            if _I32.unpack_from(data, 12)[0] > max_epoch:
                continue
            h = read_header(data)
            if h.last_offset < start:
                continue
            while chosen and chosen[-1][0] >= h.base_offset:
                chosen.pop()
            expected = chosen[-1][1] + 1 if chosen else start
            if h.base_offset != expected:   # a stale write past the end; a later one may fill in
                log.warning("takeover: skipping a batch at offset %d of a dead broker's WAL where %d "
                            "was expected", h.base_offset, expected)
                continue
            chosen.append((h.base_offset, h.last_offset, bytes(data)))
    return [d for _, _, d in chosen], log_start
