"""A write-ahead log whose segments are objects in the bucket (``wal.type=s3``).

Each group commit is ONE object, ``<prefix><seq:020d>``, created with
``If-None-Match: *``, in the file WAL's segment format (header with the
sequence number as segment id, entries with seeded checksums, a seal), so
``read_object`` shares the file WAL's scanner. A producer is acknowledged
once the PUT of the object holding its batch returned: nothing of the broker
is on its own disk, and any other broker can read the log (docs/failover.md).

One commit is in flight at a time; appends that arrive meanwhile fill the
next object, which is sent as soon as the PUT returns (``interval_ms`` 0),
or once ``interval_ms`` passed since its first append or ``batch_bytes`` are
pending. A failed PUT is retried with the same bytes until it lands;
producers wait (their requests time out, never a false ack). A PUT refused
because the key exists is either our own earlier attempt whose answer was
lost (same bytes: landed) or a survivor's **fence**: the log is then fenced
for good, every pending append fails with ``WalFenced`` and nothing more is
accepted until ``rejoin``.

Reads of entries not yet trimmed come from memory: a committed object's
bytes stay until the upload that copied them lets ``trim`` drop them, so
memory holds at most ``wal.max.bytes``. ``trim`` never deletes the newest
object written: a survivor fences at "newest + 1", which must be our next
sequence number (docs/failover.md invariant 3).

The store is reached through ``WalObjects`` (create-only put, get, list,
delete), so this package needs nothing of ``objectstore``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable, Iterator, Protocol

import crc32c

from .log import (
    BODY_HEAD,
    FRAME,
    HEADER,
    MAGIC,
    Entry,
    Location,
    WalError,
    _GroupCommit,
    _Scan,
    _scan_segment,
    seal_crc,
    segment_seed,
)

log = logging.getLogger(__name__)

FENCE_MAGIC = b"\xffSLFENCE"


class WalObjects(Protocol):
    """What the object WAL needs of a store (the broker adapts its ObjectStore)."""

    async def create(self, key: str, body: bytes) -> bool: ...      # False: the key exists
    async def get(self, key: str) -> bytes | None: ...              # None: no such key
    async def list(self, prefix: str) -> list[str]: ...
    async def delete(self, key: str) -> None: ...


class WalFenced(WalError):
    """A survivor fenced this broker's WAL: it was declared dead (docs/failover.md §4)."""


def object_key(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:020d}"


def encode_fence(generation: int, *, takeover: bool = True) -> bytes:
    """A fence: a survivor's (``takeover``: the objects below it are the
    survivors' to replay) or the broker's own at start (it ends the previous
    life's WAL, so a PUT of that life still in flight cannot land among ours)."""
    return FENCE_MAGIC + json.dumps({"generation": generation, "takeover": takeover}).encode()


def _fence(body: bytes | bytearray) -> dict | None:
    if not bytes(body[:len(FENCE_MAGIC)]) == FENCE_MAGIC:
        return None
    try:
        d = json.loads(bytes(body[len(FENCE_MAGIC):]))
        return d if isinstance(d, dict) else {}
    except ValueError:
        return {}


def fence_generation(body: bytes | bytearray) -> int | None:
    """The generation of a fence object, None if ``body`` is a WAL object."""
    d = _fence(body)
    return None if d is None else int(d.get("generation", 0))


def is_takeover_fence(body: bytes | bytearray) -> bool:
    d = _fence(body)
    return d is not None and bool(d.get("takeover", True))


def read_object(body: bytes | bytearray | memoryview, seq: int) -> list[Entry]:
    """The verified entries of WAL object ``seq`` (a commit is written whole,
    so a bad entry means a corrupt object: entries stop there)."""
    scan = _Scan()
    entries = list(_scan_segment(memoryview(body), seq, scan))
    if scan.torn is not None:
        log.error("WAL object %d: bad entry at byte %d; ignoring the rest", seq, scan.torn)
    return entries


def sequences(keys: list[str], prefix: str) -> list[int]:
    out = []
    for k in keys:
        stem = k[len(prefix):]
        if k.startswith(prefix) and stem.isdigit():
            out.append(int(stem))
    return sorted(out)


class _Open:
    """The object being filled: its sequence number, checksum seed, parts and size."""

    __slots__ = ("seq", "seed", "parts", "size", "future", "first_at")

    def __init__(self, seq: int, loop: asyncio.AbstractEventLoop) -> None:
        self.seq = seq
        self.seed = segment_seed(seq)      # once per object, not per append
        self.parts: list = [HEADER.pack(MAGIC, seq)]
        self.size = HEADER.size
        self.future: asyncio.Future = _GroupCommit(loop=loop)
        self.first_at = 0.0

    @property
    def has_entries(self) -> bool:
        return self.size > HEADER.size


class ObjectWriteAheadLog:
    """The WriteAheadLog interface (append, cut, sync, trim, read, recover),
    with objects for segments; ``load`` lists and reads them first."""

    def __init__(self, objects: WalObjects, prefix: str, *, interval_ms: int = 0,
                 batch_bytes: int = 8 << 20, on_fsync: Callable[[float, int], None] | None = None,
                 on_fenced: Callable[[int], None] | None = None) -> None:
        self.objects = objects
        self.prefix = prefix
        self.interval = interval_ms / 1000
        self.batch_bytes = batch_bytes
        self._on_fsync = on_fsync
        self.on_fenced = on_fenced
        self._bodies: dict[int, bytes] = {}       # committed, not trimmed: seq -> bytes
        self._loaded: list[tuple[int, bytes]] = []  # our own objects found by load(), for recover()
        self._newest = -1                          # newest object we wrote (or found as ours)
        self._open: _Open | None = None
        self._queue: list[_Open] = []              # sealed, waiting for the PUT
        self._inflight: _Open | None = None        # the commit being PUT
        self._last_future: asyncio.Future | None = None
        self._bytes = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._deleter: asyncio.Task | None = None
        self._to_delete: list[int] = []
        self.fenced_at: int | None = None
        self._closing = False
        self.commits = 0

    # ------------------------------------------------------------------ load
    async def load(self) -> None:
        """Fence our previous life at the next free sequence number (a PUT it
        still had in flight lands below the fence or not at all), then read
        our unfinished tail: the objects above the newest takeover fence
        (those below it belong to the takeover). 1 LIST + 1 PUT + a GET each."""
        while True:
            seqs = sequences(await self.objects.list(self.prefix), self.prefix)
            start = seqs[-1] + 1 if seqs else 0
            if await self.objects.create(object_key(self.prefix, start), encode_fence(0, takeover=False)):
                break
        mine: list[tuple[int, bytes]] = []
        for seq in reversed(seqs):
            body = await self.objects.get(object_key(self.prefix, seq))
            if body is None:
                continue
            if _fence(body) is not None:
                if is_takeover_fence(body):
                    break
                continue        # a restart's own fence: the tail goes on below it
            mine.append((seq, bytes(body)))
        mine.reverse()
        self._loaded = mine
        self._newest = start

    def recover(self) -> Iterator[Entry]:
        """Yield the entries of our own objects in order; appends may follow."""
        for seq, body in self._loaded:
            self._bodies[seq] = body
            self._bytes += len(body) - HEADER.size
            yield from read_object(body, seq)
        self._loaded = []
        self._start_appending(self._newest + 1)

    def _start_appending(self, seq: int) -> None:
        loop = asyncio.get_running_loop()
        self._open = _Open(seq, loop)
        if self._task is None:
            self._task = loop.create_task(self._committer(), name="wal commits")

    async def rejoin(self) -> None:
        """After a fence: forget everything of the fenced life (its objects
        are the takeover's) and go on above the newest object."""
        self._bodies.clear()
        self._to_delete.clear()
        self._bytes = 0
        self._last_future = None
        self.fenced_at = None
        await self.load()
        self._loaded = []       # below the takeover's fence: the survivors'
        self._start_appending(self._newest + 1)

    # ---------------------------------------------------------------- append
    def append(self, kind: int, key: bytes, data) -> tuple[Location, asyncio.Future]:
        if self.fenced_at is not None:
            raise WalFenced(f"write-ahead log fenced at object {self.fenced_at}")
        o = self._open
        if o is None:
            raise WalError("recover() the log before appending")
        if not o.has_entries:
            o.first_at = time.monotonic()
        head = BODY_HEAD.pack(kind, len(key)) + key
        length = len(head) + len(data)
        crc = crc32c.crc32c(data, crc32c.crc32c(head, o.seed))
        frame = FRAME.pack(length, crc) + head
        loc = (o.seq, o.size + len(frame), len(data))
        o.parts.append(frame)
        o.parts.append(data)
        total = FRAME.size + length
        o.size += total
        self._bytes += total
        self._last_future = o.future
        self._wakeup.set()
        return loc, o.future

    def _seal_open(self) -> None:
        o = self._open
        assert o is not None
        o.parts.append(FRAME.pack(0, seal_crc(o.seed)))
        o.size += FRAME.size
        self._queue.append(o)
        self._open = _Open(o.seq + 1, asyncio.get_running_loop())
        self._wakeup.set()

    # ---------------------------------------------------------------- commits
    async def _committer(self) -> None:
        while not self._closing or self._queue or (self._open is not None and self._open.has_entries):
            o = self._open
            if not self._queue:
                if o is None or not o.has_entries:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                wait = o.first_at + self.interval - time.monotonic()
                if wait > 0 and o.size < self.batch_bytes and not self._closing:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                    continue
                self._seal_open()
            commit = self._inflight = self._queue.pop(0)
            try:
                if not await self._put(commit):
                    return
            finally:
                self._inflight = None

    async def _put(self, o: _Open) -> bool:
        """PUT one commit until it lands; False once fenced."""
        body = b"".join(o.parts)
        key = object_key(self.prefix, o.seq)
        delay = 0.05
        started = time.perf_counter()
        while True:
            try:
                if await self.objects.create(key, body):
                    break
                existing = await self.objects.get(key)
                if existing is not None and bytes(existing) == body:
                    break       # our own earlier attempt landed; its answer was lost
                self._fenced(o)
                return False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down or refused: keep the commit, retry
                log.warning("WAL: commit %d not stored yet (%s); retrying", o.seq, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._bodies[o.seq] = body
        self._newest = max(self._newest, o.seq)
        self.commits += 1
        if self._on_fsync is not None:
            self._on_fsync(time.perf_counter() - started, len(body))
        o.future.set_result(None)
        return True

    async def check_fenced(self) -> bool:
        """Whether a survivor fenced this log (a takeover fence above the
        newest object we wrote); if so, fence it now, as a refused commit
        would. 1 LIST (+ a GET per object above ours)."""
        if self.fenced_at is not None or self._open is None:
            return self.fenced_at is not None
        for seq in sequences(await self.objects.list(self.prefix), self.prefix):
            if seq <= self._newest:
                continue
            body = await self.objects.get(object_key(self.prefix, seq))
            if body is not None and is_takeover_fence(body) and self.fenced_at is None and self._open is not None:
                self._fenced_at_seq(seq)
                return True
        return False

    def _fenced(self, commit: _Open) -> None:
        self._fenced_at_seq(commit.seq)

    def _fenced_at_seq(self, seq: int) -> None:
        log.error("WAL: object %d exists and is not ours: this broker was declared dead and its "
                  "WAL fenced; nothing more is acknowledged from this life (docs/failover.md §4)", seq)
        self.fenced_at = seq
        pending = ([self._inflight] if self._inflight is not None else []) + self._queue
        self._queue = []
        if self._open is not None:
            pending.append(self._open)
        self._open = None
        exc = WalFenced(f"write-ahead log fenced at object {seq}")
        for o in pending:
            if not o.future.done():
                o.future.set_exception(exc)
                o.future.exception()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()       # a commit in flight is failed above; nothing more is written
        if self.on_fenced is not None:
            self.on_fenced(seq)

    # ----------------------------------------------------------------- trim
    def cut(self) -> int:
        """Seal the object being filled (if it has entries) and return the
        next sequence number: everything appended so far lies below it."""
        o = self._open
        if o is None:
            raise WalFenced("write-ahead log fenced") if self.fenced_at is not None else WalError("not open")
        if o.has_entries:
            self._seal_open()
        assert self._open is not None
        return self._open.seq

    async def sync(self) -> None:
        """Wait until every entry appended so far is committed (WalFenced if
        the log was fenced meanwhile)."""
        fut = self._last_future
        if fut is not None and not fut.done():
            await asyncio.shield(fut)
        if self.fenced_at is not None:
            raise WalFenced(f"write-ahead log fenced at object {self.fenced_at}")

    def trim(self, before: int) -> int:
        """Drop our committed objects below ``before`` (deleted in the
        background), except the newest one written; returns the bytes freed."""
        freed = 0
        for seq in sorted(self._bodies):
            if seq >= before or seq >= self._newest:
                break
            body = self._bodies.pop(seq)
            freed += len(body) - HEADER.size
            self._to_delete.append(seq)
        self._bytes -= freed
        if self._to_delete and (self._deleter is None or self._deleter.done()):
            self._deleter = asyncio.get_running_loop().create_task(self._delete(), name="wal deletes")
        return freed

    async def _delete(self) -> None:
        while self._to_delete:
            seq = self._to_delete[0]
            try:
                await self.objects.delete(object_key(self.prefix, seq))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("WAL: could not delete object %d yet: %s", seq, exc)
                return      # the next trim tries again
            if self._to_delete and self._to_delete[0] == seq:
                self._to_delete.pop(0)

    def segment_of(self, loc: Location) -> int:
        return loc[0]

    # ----------------------------------------------------------------- read
    def read(self, loc: Location) -> bytes:
        seq, position, length = loc
        body = self._bodies.get(seq)
        if body is None:
            o = self._open
            if o is not None and o.seq == seq:     # appended, not committed: not durable
                raise WalError(f"WAL object {seq} is not committed yet")
            raise WalError(f"WAL object {seq} was trimmed")
        return body[position:position + length]

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def pending_bytes(self) -> int:
        o = self._open
        return sum(q.size for q in self._queue) + (o.size - HEADER.size if o is not None else 0)

    async def halt(self) -> None:
        """Stop at once, as a crash would: nothing more is written or deleted."""
        self._closing = True
        for t in (self._task, self._deleter):
            if t is not None and not t.done():
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)
        self._queue.clear()
        self._open = None

    async def close(self) -> None:
        """Commit what is appended, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 30)
            except (asyncio.TimeoutError, Exception):
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._deleter is not None and not self._deleter.done():
            await asyncio.gather(self._deleter, return_exceptions=True)
        self._bodies.clear()
        self._bytes = 0


