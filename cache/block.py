"""Block cache: aligned byte ranges of immutable objects, so reads skip the store.

Objects in the store never change once written, so a cached block is never
stale and the only policy question is what to keep: least recently used
blocks go first, bounded by bytes. Every store request costs money and tens
of milliseconds, so misses are batched (one ranged fetch per contiguous run of
missing blocks), shared (concurrent readers of a block wait on one fetch) and
extended with readahead for sequential readers. The cache takes a ``fetch``
callable (``store.get_range``) rather than a store, so it depends on nothing;
with ``fetch_parts`` (``store.get_range_parts``) a multi-block fetch arrives as
one buffer per block, which the cache keeps as they are: split out of one
buffer, every block was copied once more in the event loop (5% of its time in
a profiled catch-up).
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, cast

log = logging.getLogger(__name__)

Fetch = Callable[[str, int, int], Awaitable[bytes | bytearray]]
FetchParts = Callable[[str, int, int, int], Awaitable[list]]   # (key, start, end, part_size)

# Per-object readahead state is tiny, but object keys are unbounded over time.
_MAX_TRACKED_OBJECTS = 10_000


class ShortRead(Exception):
    """The object ends before the requested range does: a bad reference."""


@dataclass
class _ObjectState:
    size: int | None = None       # known once a fetch came back short
    last_end: int | None = None   # end of the last read, to spot sequential readers


@dataclass(eq=False)
class _Run:
    """One in-flight fetch of blocks [lo, hi] of ``key``; waiters slice its result."""
    key: str
    lo: int
    hi: int
    task: asyncio.Task[list] = field(init=False)  # set by _start; result: one buffer per block of the run


class BlockCache:
    def __init__(self, max_bytes: int, block_size: int = 4 << 20, *, fetch: Fetch,
                 fetch_parts: FetchParts | None = None, readahead_blocks: int = 2) -> None:
        if max_bytes < 0 or block_size <= 0 or readahead_blocks < 0:
            raise ValueError("max_bytes and readahead_blocks must be >= 0, block_size > 0")
        self.max_bytes = max_bytes
        self.block_size = block_size
        self.readahead_blocks = readahead_blocks
        self._fetch = fetch
        self._fetch_parts = fetch_parts
        self._blocks: OrderedDict[tuple[str, int], bytes | bytearray] = OrderedDict()
        self._inflight: dict[tuple[str, int], _Run] = {}
        self._objects: OrderedDict[str, _ObjectState] = OrderedDict()
        self._tasks: set[asyncio.Task[list]] = set()  # strong refs: the loop keeps weak ones
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        self.bytes_from_cache = 0
        self.bytes_fetched = 0
        self.fetches = 0

    @property
    def hit_ratio(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0

    async def read(self, key: str, start: int, end: int) -> bytes | memoryview:
        """Bytes [start, end) of ``key`` (a read-only view when they lie in one
        block); raises ShortRead if the object is shorter."""
        out = await self.read_parts(key, start, end)
        # A range inside one block (most batches) is a view of it, not a copy;
        # the view keeps that block's bytes alive only while the caller holds it.
        return out[0] if len(out) == 1 else b"".join(out)

    async def read_parts(self, key: str, start: int, end: int) -> list[memoryview]:
        """Bytes [start, end) of ``key`` as views of consecutive blocks, not
        joined: a whole 64 MiB segment joined in the event loop stalls it for
        tens of ms. Raises ShortRead if the object is shorter."""
        if start < 0 or end < start:
            raise ValueError(f"bad range [{start}, {end})")
        if start == end:
            return []
        obj = self._object(key)
        if obj.size is not None and end > obj.size:
            raise ShortRead(f"{key!r} has {obj.size} bytes, asked for [{start}, {end})")
        bs = self.block_size
        first, last = start // bs, (end - 1) // bs
        sequential = obj.last_end is None or abs(start - obj.last_end) <= bs
        obj.last_end = end

        parts: list[bytes | bytearray | _Run | None] = []
        for n in range(first, last + 1):
            block = self._blocks.get((key, n))
            if block is not None:
                self._blocks.move_to_end((key, n))
                self.hits += 1
            else:
                self.misses += 1
            parts.append(block if block is not None else self._inflight.get((key, n)))
        missing = [n for n, p in zip(range(first, last + 1), parts) if p is None]
        for lo, hi in _runs(missing):
            # Readahead only past the end of the read, and only for sequential readers.
            stop = self._readahead_end(key, hi, obj) if hi == last and sequential else hi
            run = self._start(key, lo, stop)
            parts[lo - first:hi - first + 1] = [run] * (hi - lo + 1)

        filled = cast("list[bytes | bytearray | _Run]", parts)  # every None became a run above
        runs = list({id(p): p for p in filled if isinstance(p, _Run)}.values())
        if runs:  # gather so every failure is retrieved; shield so our cancel is ours alone
            results = await asyncio.gather(*(asyncio.shield(r.task) for r in runs))
            data_of = {id(r): d for r, d in zip(runs, results)}
        out: list[memoryview] = []
        for n, p in zip(range(first, last + 1), filled):
            if isinstance(p, _Run):
                blocks = data_of[id(p)]
                view = memoryview(blocks[n - p.lo] if n - p.lo < len(blocks) else b"")
            else:
                view = memoryview(p)
            a, b = max(start - n * bs, 0), min(end - n * bs, bs)
            if len(view) < b:
                raise ShortRead(f"{key!r} ends at {n * bs + len(view)}, "
                                f"asked for [{start}, {end})")
            if not isinstance(p, _Run):
                self.bytes_from_cache += b - a
            out.append(view[a:b])
        return out

    def prefetch(self, key: str, start: int, end: int) -> None:
        """Fetch the missing blocks of [start, end) in the background (errors are
        logged at debug and dropped), to warm what a sequential reader needs next."""
        if start < 0 or end <= start:
            return
        obj = self._object(key)
        if obj.size is not None:
            end = min(end, obj.size)
        bs = self.block_size
        missing = [n for n in range(start // bs, (end - 1) // bs + 1)
                   if (key, n) not in self._blocks and (key, n) not in self._inflight]
        for lo, hi in _runs(missing):
            self._start(key, lo, hi)

    async def drain(self) -> None:
        """Wait for every fetch in flight (prefetches included); for tests and shutdown."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def discard(self, key: str) -> None:
        """Drop every block of ``key`` (deleted); fetches in flight will not cache it."""
        for k in [k for k in self._blocks if k[0] == key]:
            self.size_bytes -= len(self._blocks.pop(k))
        for k in [k for k in self._inflight if k[0] == key]:
            del self._inflight[k]
        self._objects.pop(key, None)

    # -- internals -----------------------------------------------------------

    def _object(self, key: str) -> _ObjectState:
        obj = self._objects.get(key)
        if obj is None:
            obj = self._objects[key] = _ObjectState()
            if len(self._objects) > _MAX_TRACKED_OBJECTS:
                self._objects.popitem(last=False)
        else:
            self._objects.move_to_end(key)
        return obj

    def _readahead_end(self, key: str, hi: int, obj: _ObjectState) -> int:
        """Extend a run ending at block ``hi`` over the missing blocks that follow it."""
        for _ in range(self.readahead_blocks):
            n = hi + 1
            if ((obj.size is not None and n * self.block_size >= obj.size)
                    or (key, n) in self._blocks or (key, n) in self._inflight):
                break
            hi = n
        return hi

    def _start(self, key: str, lo: int, hi: int) -> _Run:
        run = _Run(key, lo, hi)
        for n in range(lo, hi + 1):
            self._inflight[(key, n)] = run
        run.task = asyncio.get_running_loop().create_task(self._fetch_run(run))
        self._tasks.add(run.task)
        run.task.add_done_callback(self._run_done)
        return run

    async def _fetch_run(self, run: _Run) -> list:
        bs, key = self.block_size, run.key
        start, end = run.lo * bs, (run.hi + 1) * bs
        size = self._object(key).size
        if size is not None:
            end = max(start, min(end, size))
        self.fetches += 1
        try:
            if self._fetch_parts is not None:
                blocks = await self._fetch_parts(key, start, end, bs)
            else:
                data = await self._fetch(key, start, end)
                # Copy out of a multi-block run so one cached block does not pin it all.
                blocks = [data] if len(data) <= bs else \
                    [bytes(memoryview(data)[off:off + bs]) for off in range(0, len(data), bs)]
            got = sum(len(b) for b in blocks)
            self.bytes_fetched += got
            if got < end - start:
                self._object(key).size = start + got
            for n, block in zip(range(run.lo, run.hi + 1), blocks):
                if block and self._inflight.get((key, n)) is run:
                    self._insert((key, n), block)
            return blocks
        finally:
            for n in range(run.lo, run.hi + 1):
                if self._inflight.get((key, n)) is run:
                    del self._inflight[(key, n)]

    def _run_done(self, task: asyncio.Task[list]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("block fetch failed: %r", task.exception())

    def _insert(self, k: tuple[str, int], block: bytes | bytearray) -> None:
        if len(block) > self.max_bytes:
            return
        old = self._blocks.pop(k, None)
        if old is not None:
            self.size_bytes -= len(old)
        self._blocks[k] = block
        self.size_bytes += len(block)
        while self.size_bytes > self.max_bytes:
            _, evicted = self._blocks.popitem(last=False)
            self.size_bytes -= len(evicted)


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    """Sorted block numbers -> inclusive (lo, hi) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for n in blocks:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs
