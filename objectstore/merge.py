"""Segment merging and garbage collection of data objects (docs/storage.md §8).

Every upload adds one segment per partition to its manifest, so a busy
partition collects many small segments and an idle one many tiny ones.
A merge rewrites a run of a partition's adjacent segments into ONE new
per-partition data object and swaps the run for its single ref in the
manifest; garbage collection deletes the data objects no manifest references
any more::

    m, _ = await ms.load(topic_id, partition)
    for run in plan_merge(m):                            # pure: which runs to merge
        new = await merge_run(store, keys, run, partition_key(topic_id, partition))
        try:
            m = await ms.update(topic_id, partition, replace_segments(run, new), epoch=epoch)
        except MergeConflict:
            pass                                         # `new` is garbage now; GC takes it

    # elsewhere, periodically, over ALL manifests of the cluster:
    started = time.time_ns()                             # before reading the manifests
    refs = referenced_objects(all_manifests)
    await collect_garbage(store, refs, grace_seconds=3600, now_ns=started,
                          unreferenced_since=state)     # state: a dict kept between runs

Steps and their cost: ``merge_run`` reads each segment's chunk in ranged
GETs of at most ``READ_PIECE`` bytes (crc32c verified; a few at a time, and
with a ``RatePacer`` at a steady rate), builds one data object holding
one chunk (the run's batches, bytes unchanged, in offset order), PUTs it
unconditionally under a fresh key and returns its ref. ``replace_segments`` is
a pure, idempotent ``ManifestStore.update`` function that swaps the run for
that ref in one conditional write. Run it with the partition's epoch (the
owner runs the merge; it holds the epoch, and its appends and the merge
then share the owner fast path; a claim in between fences the swap, harmlessly).

Crash safety. The only state change that matters is the manifest's, and it is
one conditional write that replaces the run by a ref to the same offsets:

- Crash (or StoreUnavailable) after the PUT of the new object and before the
  manifest update: the manifest still holds the old run, every offset reads
  as before, and the new object is referenced by nobody. GC deletes it once
  its key's sequence is older than the grace period.
- Crash after the manifest update: the manifest holds the new ref; the old
  objects (for the partitions of theirs that are no longer referenced) are
  unreferenced and GC deletes them after the grace period.
- The update itself is all or nothing (If-Match put), so at every moment each
  offset from log start to next_offset is in exactly one segment: no record is
  lost or duplicated. A retry after a lost answer sees ``new`` already in place
  and changes nothing (idempotent); a run that changed meanwhile (another
  merge) raises MergeConflict and writes nothing; a run whose leading
  segments retention dropped meanwhile is still swapped (the new ref may then
  start below log_start_offset, as the invariants allow).

What the grace period protects, and the rules that come with it:

- Objects whose manifest update is still in flight (an upload, a merge):
  GC never deletes an object whose key's sequence (its writer's clock, ns) is
  younger than ``now - grace``. So the update must land within the grace
  period after ``keys.next()`` (minus clock skew): an uploader or merger
  whose update is still failing (StoreUnavailable) that late must not apply it
  any more (a merge drops its result; an upload re-uploads under a fresh
  key), or the manifest would reference a deleted object. And ``now_ns`` must
  be taken BEFORE the manifests are read: an object referenced by a manifest
  written after that read is then younger than ``now_ns - grace``.
- Readers in flight that loaded a manifest before a merge (or retention)
  dropped an object: the key's sequence does not help them (an old object is
  old), so pass ``unreferenced_since`` (a dict kept across GC runs): an object
  is then deleted only after it was seen unreferenced for a whole grace period
  too. A GC process that restarts with an empty dict only waits longer. A
  reader that still gets NotFound (it held a manifest for longer than the
  grace period) should reload the manifest and read again: the offsets are in
  the new ref.
- ``referenced`` must come from every manifest of the cluster, read without
  error: a manifest that could not be read must abort the GC run, never count
  as empty.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import replace

from .base import CorruptObject, ObjectStore, ObjectStoreError
from .data_object import OBJECT_PREFIX, Buffer, ObjectKeys, build_parts, iter_batches, parse_object_key, verify_chunk
from .manifest import Manifest, SegmentRef

log = logging.getLogger(__name__)

DEFAULT_TARGET_BYTES = 64 << 20
DEFAULT_MAX_SEGMENTS = 32
DEFAULT_MIN_RUN = 2
READ_CONCURRENCY = 8          # ranged GETs in flight per merge_run
READ_PIECE = 4 << 20          # bytes per ranged GET: a large segment is read (and paced) in pieces
DELETE_CONCURRENCY = 16       # DELETEs in flight per collect_garbage


class RatePacer:
    """Spaces I/O at ``bytes_per_second``: ``take(n)`` returns once the bytes
    taken before have had their time, then books ``n`` bytes of it;
    ``take_blocking`` does the same in a thread (the filesystem store's
    writer calls it between steps of a put).

    Why merging is paced: the embedded store shares the WAL's disk, and
    the kernel's I/O scheduler (mq-deadline) serves reads before queued
    writes. A 46 MB merge read as fast as the disk gives them (8 segment GETs
    at a time) held the WAL's fdatasyncs back: p99 48-81 ms, max 102-111 ms
    while it ran, against 3-5 ms without it; read at 20 MB/s, p99 6 ms
    (``deploy/merge-contention.py``, BENCHMARKS.md session 7, where merging
    is still called compaction). Its write (as many bytes again, once per
    pass) is paced by the same budget. No credit builds up while idle: a pass
    starts at the rate, never with a burst.
    """

    def __init__(self, bytes_per_second: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 blocking_sleep: Callable[[float], object] | None = None) -> None:
        if bytes_per_second <= 0:
            raise ValueError(f"bytes_per_second must be > 0, got {bytes_per_second}")
        self.rate = float(bytes_per_second)
        self._stopped = threading.Event()
        self._clock, self._sleep = clock, sleep
        self._blocking_sleep = blocking_sleep or self._stopped.wait    # true once stopped
        self._lock = threading.Lock()   # take_blocking runs in a store's thread
        self._next = 0.0            # when the next transfer may start
        self.waited = 0.0           # seconds spent waiting, in total (metrics, tests)

    def stop(self) -> None:
        """Make every ``take_blocking`` (waiting or later) raise PacerStopped:
        a paced write in a store's thread, whose task was cancelled, ends
        instead of writing on for seconds (its temporary file is removed)."""
        self._stopped.set()

    def _book(self, n: int) -> float:
        """Book ``n`` bytes; returns how long to wait first."""
        with self._lock:
            now = self._clock()
            start = max(self._next, now)
            self._next = start + n / self.rate
            self.waited += start - now
            return start - now

    async def take(self, n: int) -> None:
        wait = self._book(n)
        if wait > 0:
            await self._sleep(wait)

    def take_blocking(self, n: int) -> None:
        if self._stopped.is_set():
            raise PacerStopped("merge stopped")
        wait = self._book(n)
        if wait > 0 and self._blocking_sleep(wait):
            raise PacerStopped("merge stopped")


class PacerStopped(ObjectStoreError):
    """A paced transfer was stopped (``RatePacer.stop``)."""


class MergeConflict(ObjectStoreError):
    """The run a merge replaces is no longer in the manifest (another
    merge replaced it, or some of it): nothing was written. The new object
    is unreferenced; garbage collection deletes it."""


def _ident(s: SegmentRef) -> tuple[str, int, int, int]:
    return (s.object_key, s.position, s.first_offset, s.last_offset)


def _check_run(run: Sequence[SegmentRef]) -> tuple[SegmentRef, ...]:
    run = tuple(run)
    if not run:
        raise ValueError("empty run")
    for prev, s in zip(run, run[1:]):
        if s.first_offset != prev.last_offset + 1:
            raise ValueError(f"run is not contiguous: {prev.first_offset}..{prev.last_offset} "
                             f"then {s.first_offset}..{s.last_offset}")
    return run


# -- planning -------------------------------------------------------------------------


def plan_merge(m: Manifest, *, target_bytes: int = DEFAULT_TARGET_BYTES,
                    max_segments: int = DEFAULT_MAX_SEGMENTS,
                    min_run: int = DEFAULT_MIN_RUN) -> list[list[SegmentRef]]:
    """The runs of ``m``'s segments worth merging, each into one new object.

    Pure and deterministic (a function of the manifest and the arguments):

    1. Candidates are the segments shorter than ``target_bytes``; segments
       wholly below ``log_start_offset`` are skipped. A segment of
       ``target_bytes`` or more is never merged and cuts the stretch.
    2. Each maximal stretch of adjacent candidates is cut greedily from its
       start: a segment that would take the run's total length past
       ``target_bytes`` starts the next run.
    3. A run is kept if it has at least ``min_run`` segments and either its
       total length is at least ``target_bytes / 2`` (busy partitions: objects
       of about ``target_bytes``) or it has at least ``max_segments`` segments
       (idle partitions: many tiny segments become one).

    Returns the kept runs in offset order (disjoint; each contiguous in
    offsets, as manifest segments are). The last, still-growing run at the end
    of the log usually waits until it qualifies. A run may start with an
    earlier merge result that still has room below the target: it is then
    rewritten to absorb the segments that fit (write amplification, bounded
    by that room). Runs have no segment-count cap: ``merge_run`` reads a
    run of thousands of tiny segments with as many GETs.
    """
    if target_bytes < 1 or max_segments < 1 or min_run < 2:
        raise ValueError(f"need target_bytes >= 1, max_segments >= 1, min_run >= 2 "
                         f"(got {target_bytes}, {max_segments}, {min_run})")
    runs: list[list[SegmentRef]] = []
    cur: list[SegmentRef] = []
    total = 0

    def close() -> None:
        if len(cur) >= min_run and (2 * total >= target_bytes or len(cur) >= max_segments):
            runs.append(list(cur))
        cur.clear()

    for s in m.segments:
        if s.last_offset < m.log_start_offset or s.length >= target_bytes:
            close()
            total = 0
            continue
        if cur and total + s.length > target_bytes:
            close()
            total = 0
        cur.append(s)
        total += s.length
    close()
    return runs


# -- merging -----------------------------------------------------------------------------


def _check_chunk(data: Buffer | Sequence[Buffer], s: SegmentRef) -> None:
    """CorruptObject unless the chunk's batches span exactly the segment's offsets."""
    first = last = None
    for span in iter_batches(data, key=s.object_key):
        if first is None:
            first = span.base_offset
        last = span.last_offset
    if (first, last) != (s.first_offset, s.last_offset):
        raise CorruptObject(s.object_key, f"chunk at {s.position} holds offsets {first}..{last}, "
                                          f"the manifest says {s.first_offset}..{s.last_offset}")


async def merge_run(store: ObjectStore, keys: ObjectKeys, run: Sequence[SegmentRef],
                      partition_key: bytes, *, pacer: RatePacer | None = None,
                      piece_bytes: int = READ_PIECE) -> SegmentRef:
    """Merge ``run`` (adjacent segments of the partition ``partition_key``)
    into one new data object; returns the ref to put in their place
    (``replace_segments(run, ref)``).

    Each segment is read with ranged GETs of at most ``piece_bytes`` (at most
    READ_CONCURRENCY at a time; each waits for ``pacer``, if given), its
    crc32c and batches checked against the segment's ref, then one
    unconditional PUT under ``keys.next()`` writes the pieces as they are (no
    join; with ``pacer``, its steps are paced too, where the store writes
    them itself). The manifest is not touched: until ``replace_segments`` lands, the
    new object is garbage. Raises ValueError (empty or non-contiguous run),
    CorruptObject (a chunk that does not match its ref, or a merged chunk
    whose offsets are not the run's), NotFound, StoreUnavailable. Holds the
    run's bytes in memory about once.
    """
    run = _check_run(run)
    if piece_bytes < 1:
        raise ValueError(f"piece_bytes must be >= 1, got {piece_bytes}")
    sem = asyncio.Semaphore(READ_CONCURRENCY)

    async def fetch_piece(key: str, start: int, end: int) -> bytes | bytearray:
        async with sem:
            if pacer is not None:
                await pacer.take(end - start)
            return await store.get_range(key, start, end)

    async def fetch(s: SegmentRef) -> list:
        end = s.position + s.length
        pieces = await asyncio.gather(*(fetch_piece(s.object_key, a, min(a + piece_bytes, end))
                                        for a in range(s.position, end, piece_bytes)))
        verify_chunk(pieces, s, key=s.object_key)
        _check_chunk(pieces, s)
        return pieces

    tasks = [asyncio.ensure_future(fetch(s)) for s in run]
    try:
        chunks = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    try:
        body, refs = await asyncio.to_thread(build_parts,
                                             {bytes(partition_key): [p for c in chunks for p in c]})
    except ValueError as e:
        raise CorruptObject(None, f"cannot merge offsets {run[0].first_offset}.."
                                  f"{run[-1].last_offset}: {e}") from e
    (ref,) = refs
    if (ref.first_offset, ref.last_offset) != (run[0].first_offset, run[-1].last_offset):
        raise CorruptObject(None, f"merged chunk holds offsets {ref.first_offset}.."
                                  f"{ref.last_offset}, the run {run[0].first_offset}.."
                                  f"{run[-1].last_offset}")
    key = keys.next()
    if pacer is not None:
        await store.put(key, body, pace=pacer.take_blocking)
    else:
        await store.put(key, body)
    return SegmentRef.from_chunk(key, ref)


# -- the manifest swap -------------------------------------------------------------------


def replace_segments(run: Sequence[SegmentRef], new: SegmentRef
                     ) -> Callable[[Manifest], Manifest]:
    """A pure, idempotent ``ManifestStore.update`` function: the manifest with
    ``run`` (segments matched by object, position, first and last offset)
    replaced by ``new``, which must cover exactly the run's offsets.

    - ``new`` already in the manifest (a retry of this very change): returned
      unchanged.
    - Leading segments of the run gone because the log start moved past them
      (retention, DeleteRecords), the rest intact at the front: the rest is
      replaced (``new`` then starts below log_start_offset).
    - The whole run below the log start (retention took it all): returned
      unchanged; ``new`` is left unreferenced, for the GC.
    - Otherwise (the run replaced or cut by another merge):
      MergeConflict, nothing written.
    """
    run = _check_run(run)
    if (new.first_offset, new.last_offset) != (run[0].first_offset, run[-1].last_offset):
        raise ValueError(f"new segment {new.first_offset}..{new.last_offset} does not cover "
                         f"the run {run[0].first_offset}..{run[-1].last_offset}")
    want = [_ident(s) for s in run]

    def index_of(m: Manifest, first_offset: int) -> int | None:
        """The segment starting at first_offset (segments are in offset order)."""
        i = bisect.bisect_left(m.segments, first_offset, key=lambda s: s.first_offset)
        return i if i < len(m.segments) and m.segments[i].first_offset == first_offset else None

    def matches(m: Manifest, i: int, k: int) -> bool:
        """m.segments[i:] starts with run[k:]."""
        n = len(run) - k
        return [_ident(s) for s in m.segments[i:i + n]] == want[k:]

    def fn(m: Manifest) -> Manifest:
        i = index_of(m, new.first_offset)
        if i is not None and m.segments[i] == new:
            return m                                            # already applied
        if i is not None and matches(m, i, 0):
            segments = m.segments[:i] + (new,) + m.segments[i + len(run):]
        elif m.log_start_offset > run[-1].last_offset:
            return m                                            # retention took it all
        else:
            # retention dropped a prefix run[:k]: the rest must lead the manifest
            # (the log-start test is implied by the invariants; kept as a guard)
            k = next((k for k, s in enumerate(run)
                      if m.segments and _ident(s) == _ident(m.segments[0])), None)
            if not (k and run[k - 1].last_offset < m.log_start_offset and matches(m, 0, k)):
                raise MergeConflict(
                    f"{m.key}: segments {run[0].first_offset}..{run[-1].last_offset} to merge "
                    f"into {new.object_key} are no longer in the manifest as planned")
            segments = (new,) + m.segments[len(run) - k:]
        out = replace(m, segments=segments)
        out.validate()
        return out
    return fn


# -- garbage collection ---------------------------------------------------------------------


def referenced_objects(manifests: Iterable[Manifest]) -> set[str]:
    """The data object keys the manifests' segments point into."""
    return {s.object_key for m in manifests for s in m.segments}


async def collect_garbage(store: ObjectStore, referenced: set[str], *, grace_seconds: float,
                          now_ns: int | None = None, prefix: str = OBJECT_PREFIX,
                          unreferenced_since: MutableMapping[str, int] | None = None
                          ) -> list[str]:
    """Delete the data objects under ``prefix`` that are not in ``referenced``
    and whose key's sequence (ns since the epoch, when the writer named it) is
    older than ``now_ns - grace``; returns the deleted keys, in listing order.

    ``referenced``: every object key of every manifest (``referenced_objects``),
    read after ``now_ns`` (default: now; pass the time taken before reading the
    manifests, see the module docstring). ``unreferenced_since``, if given, is
    GC state kept between runs (key -> ``now_ns`` of the run that first saw
    it unreferenced): an object is then deleted only when that too is older
    than the grace period, which protects readers holding an older manifest.
    Keys that are not data object keys are left alone (a warning is logged).
    Errors (StoreUnavailable, ...) propagate; the run can simply be repeated.
    """
    if grace_seconds < 0:
        raise ValueError(f"grace_seconds must be >= 0, not {grace_seconds}")
    if not prefix.startswith(OBJECT_PREFIX):
        raise ValueError(f"garbage collection is for data objects under {OBJECT_PREFIX!r}, "
                         f"not {prefix!r}")
    now = time.time_ns() if now_ns is None else now_ns
    cutoff = now - int(grace_seconds * 1e9)
    listed = await store.list(prefix)
    doomed: list[str] = []
    unreferenced: set[str] = set()
    for key in listed:
        try:
            _, sequence = parse_object_key(key)
        except ValueError:
            log.warning("garbage collection: leaving %r alone: not a data object key", key)
            continue
        if key in referenced:
            continue
        unreferenced.add(key)
        if unreferenced_since is not None:
            seen = unreferenced_since.setdefault(key, now)
            if seen > cutoff:
                continue
        if sequence < cutoff:
            doomed.append(key)
    if unreferenced_since is not None:
        for key in [k for k in unreferenced_since
                    if k.startswith(prefix) and k not in unreferenced]:
            del unreferenced_since[key]         # referenced again, or gone

    sem = asyncio.Semaphore(DELETE_CONCURRENCY)

    async def delete(key: str) -> None:
        async with sem:
            await store.delete(key)
        if unreferenced_since is not None:
            unreferenced_since.pop(key, None)
        log.info("garbage collection: deleted %s", key)

    await asyncio.gather(*(delete(k) for k in doomed))
    return doomed
