"""Segmented write-ahead log shared by every partition of a broker.

Entry framing (big-endian), one after another in a segment file::

    u32 body_length      length of everything after the 8-byte frame header
    u32 crc32c(body)
    body:
      u8  kind           what the entry means to the caller (opaque here)
      u16 key_length
      key                caller's key (e.g. topic id + partition)
      data               caller's bytes (e.g. one record batch)

Group commit: ``append`` only queues bytes and returns a future. A single
flusher task writes everything queued so far and fsyncs it in a worker thread;
appends that arrive while that fsync runs are covered by the next one. So one
fsync covers many produce requests, and the event loop never blocks on disk.

Recovery reads the segments in order and stops at the first entry that is
short or fails its checksum (a torn tail after a crash); the file is cut there.
Because an entry is acknowledged only after its fsync, everything cut was
never acknowledged.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import crc32c

from .reclaim import FileReclaimer

log = logging.getLogger(__name__)

FRAME = struct.Struct(">II")
BODY_HEAD = struct.Struct(">BH")
SUFFIX = ".wal"
TRASH = ".trash"    # a trimmed segment, renamed out of the log, being freed


class WalError(Exception):
    """The WAL cannot accept writes (an fsync or write failed)."""


class _GroupCommit(asyncio.Future):
    """The future every append of one group commit shares.

    It refuses ``cancel()``: a waiter that goes away (a client disconnects, so
    its produce task is cancelled and its ``gather`` cancels what it awaits)
    must not cancel durability for the other waiters, the high-watermark
    callbacks, or the flusher. The cancelled task itself still ends cancelled,
    as soon as the fsync completes.
    """

    def cancel(self, msg=None) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Location:
    """Where an entry's data bytes sit: segment id, file position, length."""

    segment: int
    position: int
    length: int


@dataclass(frozen=True, slots=True)
class Entry:
    kind: int
    key: bytes
    data: memoryview
    location: Location


class _Segment:
    __slots__ = ("id", "path", "fd", "size", "named")

    def __init__(self, directory: str, seg_id: int, create: bool) -> None:
        self.id = seg_id
        self.path = os.path.join(directory, f"{seg_id:020d}{SUFFIX}")
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(self.path, flags, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.named = not create     # is its directory entry durable?


class WriteAheadLog:
    """Append entries, learn when they are durable, read them back."""

    def __init__(self, directory: str, *, segment_bytes: int = 64 << 20,
                 on_fsync: Callable[[float, int], None] | None = None) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._on_fsync = on_fsync
        os.makedirs(directory, exist_ok=True)
        self._reclaimer = FileReclaimer("wal-reclaim")
        self._segments: dict[int, _Segment] = {}
        for name in sorted(os.listdir(directory)):
            if name.endswith(SUFFIX + TRASH):     # trimmed before a crash
                self._reclaimer.reclaim(os.path.join(directory, name))
            elif name.endswith(SUFFIX):
                seg_id = int(name[: -len(SUFFIX)])
                self._segments[seg_id] = _Segment(directory, seg_id, create=False)
        if not self._segments:
            self._segments[0] = _Segment(directory, 0, create=True)
            _fsync_dir(directory)
            self._segments[0].named = True
        self._active = self._segments[max(self._segments)]
        self._bytes = sum(seg.size for seg in self._segments.values())   # size_bytes, kept current
        self._pending: list[tuple[_Segment, list]] = []
        self._pending_bytes = 0
        self._pending_future: asyncio.Future | None = None
        self._flusher: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-fsync")
        self._failed: BaseException | None = None
        self._recovered = False

    # ------------------------------------------------------------------ recovery
    def recover(self) -> Iterator[Entry]:
        """Yield every intact entry in order; cut the log at the first torn one."""
        ids = sorted(self._segments)
        for idx, seg_id in enumerate(ids):
            seg = self._segments[seg_id]
            with open(seg.path, "rb") as f:
                buf = memoryview(f.read())
            pos, end = 0, len(buf)
            while pos < end:
                good = self._entry_at(buf, pos, seg_id)
                if good is None:
                    self._truncate_from(seg, pos, ids[idx + 1:])
                    self._recovered = True
                    return
                entry, pos = good
                yield entry
        self._recovered = True

    @staticmethod
    def _entry_at(buf: memoryview, pos: int, seg_id: int) -> tuple[Entry, int] | None:
        if pos + FRAME.size > len(buf):
            return None
        length, crc = FRAME.unpack_from(buf, pos)
        body_start = pos + FRAME.size
        body_end = body_start + length
        if length < BODY_HEAD.size or body_end > len(buf):
            return None
        body = buf[body_start:body_end]
        if crc32c.crc32c(body) != crc:
            return None
        kind, key_len = BODY_HEAD.unpack_from(body, 0)
        data_start = BODY_HEAD.size + key_len
        if data_start > length:
            return None
        key = bytes(body[BODY_HEAD.size:data_start])
        loc = Location(seg_id, body_start + data_start, length - data_start)
        return Entry(kind, key, body[data_start:], loc), body_end

    def _truncate_from(self, seg: _Segment, pos: int, later: list[int]) -> None:
        log.warning("WAL: torn entry in %s at byte %d (of %d); cutting the log there",
                    seg.path, pos, seg.size)
        os.ftruncate(seg.fd, pos)
        os.fsync(seg.fd)
        self._bytes -= seg.size - pos
        seg.size = pos
        for seg_id in later:
            dropped = self._segments.pop(seg_id)
            self._bytes -= dropped.size
            os.close(dropped.fd)
            os.unlink(dropped.path)
            log.warning("WAL: removed segment %s after the torn entry", dropped.path)
        self._active = seg
        _fsync_dir(self.directory)

    # -------------------------------------------------------------------- append
    def append(self, kind: int, key: bytes, data) -> tuple[Location, asyncio.Future]:
        """Queue one entry; the future resolves once it is fsynced.

        ``data`` is any bytes-like object; it is not copied here, so the caller
        must not mutate it until the future resolves.
        """
        if self._failed is not None:
            raise WalError("write-ahead log failed earlier") from self._failed
        head = BODY_HEAD.pack(kind, len(key)) + key
        length = len(head) + len(data)
        crc = crc32c.crc32c(data, crc32c.crc32c(head))
        total = FRAME.size + length
        seg = self._active
        if seg.size > 0 and seg.size + total > self.segment_bytes:
            seg = self._roll()
        frame = FRAME.pack(length, crc) + head
        loc = Location(seg.id, seg.size + len(frame), len(data))
        seg.size += total
        self._bytes += total
        if self._pending and self._pending[-1][0] is seg:
            parts = self._pending[-1][1]
        else:
            parts = []
            self._pending.append((seg, parts))
        parts.append(frame)
        parts.append(data)
        self._pending_bytes += total
        fut = self._pending_future
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._pending_future = _GroupCommit(loop=loop)
            if self._flusher is None or self._flusher.done():
                self._flusher = loop.create_task(self._flush_loop())
        return loc, fut

    def _roll(self) -> _Segment:
        seg_id = self._active.id + 1
        seg = _Segment(self.directory, seg_id, create=True)
        self._segments[seg_id] = seg
        self._active = seg
        # Its name is made durable by the flush thread, with the first entries
        # written to it (before they are acked): a directory fsync here would
        # block the event loop for a journal commit, 4 times a second (cut()).
        return seg

    # ---------------------------------------------------------------- trimming
    def cut(self) -> int:
        """Start a new segment (unless the active one is empty) and return its id:
        every entry appended so far lies in a segment with a smaller id, so once
        they are uploaded, ``trim(cut)`` may delete those segments whole."""
        if self._active.size > 0:
            self._roll()
        return self._active.id

    def trim(self, before: int) -> int:
        """Delete every segment whose id is below ``before`` (their entries are
        uploaded); returns the bytes freed. The active segment is never deleted,
        and nothing still queued for fsync is in a segment below a ``cut``."""
        freed = 0
        for seg_id in sorted(self._segments):
            if seg_id >= before or self._segments[seg_id] is self._active:
                break
            if any(seg is self._segments[seg_id] for seg, _ in self._pending):
                break
            seg = self._segments.pop(seg_id)
            freed += seg.size
            self._bytes -= seg.size
            os.close(seg.fd)
            # Out of the log at once, oldest first (a rename, no fsync: a crash
            # may bring back the newest of those trimmed, replayed as before a
            # trim, never a gap). Freeing the blocks at once would stall the
            # disk's fsyncs; the reclaimer frees them bit by bit (wal/reclaim.py).
            trash = seg.path + TRASH
            os.rename(seg.path, trash)
            self._reclaimer.reclaim(trash)
        return freed

    def segment_of(self, loc: "Location") -> int:
        return loc.segment

    async def sync(self) -> None:
        """Wait until every entry appended so far is durable."""
        fut = self._pending_future
        if fut is not None:
            await asyncio.shield(fut)
        elif self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        if self._failed is not None:
            # The flusher swallows its error (it fails the batch's future), so
            # waiting on the flusher alone would report a failed write as durable.
            raise WalError("write-ahead log failed earlier") from self._failed

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, fut = self._pending, self._pending_future
            nbytes = self._pending_bytes
            self._pending, self._pending_future, self._pending_bytes = [], None, 0
            try:
                seconds = await loop.run_in_executor(self._executor, self._write_and_sync, batch)
            except BaseException as exc:  # disk full, I/O error: nothing after this is safe
                log.critical("WAL: write/fsync failed; refusing further appends: %s", exc)
                self._failed = exc
                fut.set_exception(WalError(str(exc)))
                fut.exception()  # mark retrieved; waiters still see it
                if self._pending_future is not None:
                    self._pending_future.set_exception(WalError(str(exc)))
                    self._pending_future.exception()
                self._pending.clear()
                return
            if self._on_fsync is not None:
                self._on_fsync(seconds, nbytes)
            fut.set_result(None)

    @staticmethod
    def _write_and_sync(batch: list[tuple[_Segment, list]]) -> float:
        touched: dict[_Segment, list[int]] = {}
        for seg, parts in batch:
            # Positions were reserved at append time; write exactly there.
            begin, end = _writev_all(seg.fd, parts)
            span = touched.setdefault(seg, [begin, end])
            span[1] = end
        start = time.perf_counter()
        for seg in touched:
            os.fdatasync(seg.fd)
        unnamed = [seg for seg in touched if not seg.named]
        if unnamed:     # a new segment: its directory entry must be durable too
            _fsync_dir(os.path.dirname(unnamed[0].path))
            for seg in unnamed:
                seg.named = True
        elapsed = time.perf_counter() - start
        # Once durable, the bytes are read back from the tail cache, not the
        # page cache; dropping the pages saves the kernel the memory pressure
        # (measured: broker kernel CPU 10 s -> 4.4 s per bench run, BENCHMARKS.md).
        for seg, (begin, end) in touched.items():
            os.posix_fadvise(seg.fd, begin, end - begin, os.POSIX_FADV_DONTNEED)
        return elapsed

    # ---------------------------------------------------------------------- read
    def read(self, loc: Location) -> bytes:
        """Read an entry's data back (only valid once the entry is durable)."""
        seg = self._segments[loc.segment]
        return os.pread(seg.fd, loc.length, loc.position)

    @property
    def size_bytes(self) -> int:
        """Bytes in the log's segments (checked per append: kept as a running total)."""
        return self._bytes

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    async def close(self) -> None:
        """Sync what is queued, then release files."""
        if self._failed is None:
            try:
                await self.sync()
            except WalError:
                pass
        self._executor.shutdown(wait=True)
        self._reclaimer.close()
        for seg in self._segments.values():
            os.close(seg.fd)
        self._segments.clear()
        self._bytes = 0


def _writev_all(fd: int, parts: list) -> tuple[int, int]:
    """os.writev until every byte is written (writev may write partially).

    Returns the file range written, (start, end).
    """
    begin = os.lseek(fd, 0, os.SEEK_END)
    written = 0
    views = collections.deque(memoryview(p).cast("B") for p in parts if len(p))
    iov_max = 1024
    while views:
        n = os.writev(fd, list(itertools.islice(views, iov_max)))
        written += n
        # drop fully written views; trim the partly written one
        while n > 0:
            if n >= len(views[0]):
                n -= len(views.popleft())
            else:
                views[0] = views[0][n:]
                n = 0
    return begin, begin + written


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
