"""Segmented write-ahead log shared by every partition of a broker.

A segment file starts with a 16-byte header, then entries one after another
(big-endian)::

    header: 8-byte MAGIC, u64 segment id
    entry:  u32 body_length      length of everything after the 8-byte frame header
            u32 crc32c(body), seeded with the crc32c of the segment's header
            body:
              u8  kind           what the entry means to the caller (opaque here)
              u16 key_length
              key                caller's key (e.g. topic id + partition)
              data               caller's bytes (e.g. one record batch)
    seal:   a frame with body_length 0 and the segment's SEAL crc: the segment
            ends here (written when the log moves on to the next segment)

Group commit: ``append`` only queues bytes and returns a future. One flusher
thread takes everything queued so far, writes it and fdatasyncs it, and goes
straight on to what arrived meanwhile: one fsync covers many produce
requests, and neither the event loop nor a thread hand-off sits between two
fsyncs. The loop learns of each commit through ``call_soon_threadsafe``.

Segments are recycled. On ext4 (and most journaling file systems) an
fdatasync that grows a file must commit the new size to the journal, and that
commit also waits for every other file's data the commit orders before it --
the object store's writes on the same disk. Overwriting blocks a file already
has needs no journal commit. So trimmed segments become spares
(``.wal.spare``), and the next segment is prepared ahead in the background
from a spare (renamed, header written, directory fsynced), so neither a
journal commit nor a directory fsync sits in an ack's path. Measured with
``deploy/fsync-contention.py --wal append|recycle`` next to 8 MiB object
writes: fdatasync p50 0.83-0.89 -> 0.49-0.57 ms, p99 4.9-5.9 -> 2.7-4.0 ms.

Because a recycled file holds an older segment's bytes after the new ones,
each entry's checksum is seeded with its segment's header (id included): an
older segment's entries never verify in a newer one. Recovery reads the
segments in order; within one, it stops at a seal, at the end of the file, or
at the first entry that is short or fails its checksum. The last is a torn
tail after a crash (or an unsealed segment's stale bytes): the file is cut
there and any later segments are dropped. An entry is acknowledged only after
its fsync, and every segment's seal is durable before any later entry is
acknowledged, so everything cut was never acknowledged.

Segments written before the header existed (no MAGIC) are read as before:
entries from byte 0, checksums unseeded, the end of the file ends them.

``read_entries(directory)`` reads a WAL directory the same way without
changing anything in it (no truncation, no deletes, no new files): how a
survivor can replay a dead broker's un-uploaded tail from a shared directory.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import struct
import threading
import time
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import crc32c

from .reclaim import FileReclaimer

log = logging.getLogger(__name__)

FRAME = struct.Struct(">II")
BODY_HEAD = struct.Struct(">BH")
HEADER = struct.Struct(">8sQ")
# As a frame's body length, its first 4 bytes exceed any segment: a segment
# written before headers existed never starts with it.
MAGIC = b"\xffSLWAL\x00\x02"
SUFFIX = ".wal"
TRASH = ".trash"    # a trimmed segment, renamed out of the log, being freed
SPARE = ".spare"    # a trimmed segment kept to be recycled
# Spares cover what one manifest interval trims (uploads cut a segment each,
# ~8 MiB); beyond these, trimmed segments are freed.
MAX_SPARES = 64
MAX_SPARE_BYTES = 256 << 20
PAGE = 4096


def segment_seed(seg_id: int) -> int:
    """The crc32c seed of a segment's entries: the crc32c of its header."""
    return crc32c.crc32c(HEADER.pack(MAGIC, seg_id))


def seal_crc(seed: int) -> int:
    return crc32c.crc32c(b"SEAL", seed)


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


# Where an entry's data bytes sit: (segment id, file position, length). A plain
# tuple, not a class: a partition's index holds one per batch, and a tuple of
# ints is dropped from the cyclic garbage collector's tracked set, so millions
# of them add nothing to a full collection (slotted instances each added work:
# 200k added ~35 ms to every gen-2 pause, which stalls the event loop).
Location = tuple[int, int, int]


def is_location(loc: object) -> bool:
    """Whether an index entry's location is in the WAL (object locations start with a str key)."""
    return type(loc) is tuple and type(loc[0]) is int


@dataclass(frozen=True, slots=True)
class Entry:
    kind: int
    key: bytes
    data: memoryview
    location: Location


class _Segment:
    """One segment file. ``start`` is where its entries begin (after the
    header; 0 in a segment from before headers), ``size`` where the next
    entry goes. The file may be prepared in the background: ``fd`` is then
    None until ``file()`` takes it from the preparation."""

    __slots__ = ("id", "path", "_fd", "_pending_fd", "size", "start", "seed", "sealed")

    def __init__(self, directory: str, seg_id: int) -> None:
        self.id = seg_id
        self.path = segment_path(directory, seg_id)
        self._fd: int | None = None
        self._pending_fd: ThreadFuture | None = None
        self.size = 0
        self.start = 0
        self.seed = 0           # 0: no header, unseeded checksums (old format)
        self.sealed = False

    @classmethod
    def opened(cls, directory: str, seg_id: int) -> "_Segment":
        seg = cls(directory, seg_id)
        seg._fd = os.open(seg.path, os.O_RDWR | os.O_CLOEXEC)
        seg.size = os.fstat(seg._fd).st_size
        return seg

    @classmethod
    def prepared(cls, directory: str, seg_id: int, fd: ThreadFuture) -> "_Segment":
        seg = cls(directory, seg_id)
        seg._pending_fd = fd
        seg.size = seg.start = HEADER.size
        seg.seed = segment_seed(seg_id)
        return seg

    def file(self) -> int:
        """The file descriptor (waits for the segment's preparation, if any)."""
        fd = self._fd
        if fd is None:     # (the flusher and the loop may both ask: no state but _fd changes)
            assert self._pending_fd is not None  # no file yet: it is being prepared
            fd = self._fd = self._pending_fd.result()
        return fd

    def close(self) -> None:
        if self._fd is None and self._pending_fd is not None:
            try:
                self._fd = self._pending_fd.result()
            except Exception:
                return      # its preparation failed: there is no file to close
        self._pending_fd = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def has_entries(self) -> bool:
        return self.size > self.start


def segment_path(directory: str, seg_id: int) -> str:
    return os.path.join(directory, f"{seg_id:020d}{SUFFIX}")


def _segment_ids(directory: str) -> list[int]:
    """The ids of the directory's segment files (not spares or trash), in order."""
    return sorted(int(name[:-len(SUFFIX)]) for name in os.listdir(directory) if name.endswith(SUFFIX))


def _read_file(path: str) -> memoryview:
    with open(path, "rb") as f:
        return memoryview(f.read())


class _Scan:
    """How a segment's scan ended (``_scan_segment``): where its entries
    start, its checksum seed, whether a seal ended it, where the verified
    bytes end (the seal included), and ``torn``: the position of the first
    entry that is short or fails its checksum (0 for a header naming another
    segment), or None."""

    __slots__ = ("start", "seed", "sealed", "end", "torn")

    def __init__(self) -> None:
        self.start = self.seed = self.end = 0
        self.sealed = False
        self.torn: int | None = None


def _scan_segment(buf: memoryview, seg_id: int, scan: _Scan) -> Iterator[Entry]:
    """Yield the verified entries of segment ``seg_id``'s bytes, in order,
    up to its seal, its end, or its first bad entry; ``scan`` tells which
    (read it once the iterator is exhausted). Reads only ``buf``."""
    end = len(buf)
    pos = 0
    if end >= HEADER.size and bytes(buf[:len(MAGIC)]) == MAGIC:
        _magic, header_id = HEADER.unpack_from(buf, 0)
        if header_id != seg_id:     # a recycled file whose new header never landed
            scan.torn = 0
            return
        scan.start = pos = HEADER.size
        scan.seed = segment_seed(seg_id)
    while pos < end:
        length, crc = FRAME.unpack_from(buf, pos) if pos + FRAME.size <= end else (None, None)
        if scan.seed and length == 0 and crc == seal_crc(scan.seed):
            scan.sealed = True
            pos += FRAME.size
            break
        good = WriteAheadLog._entry_at(buf, pos, seg_id, scan.seed)
        if good is None:
            scan.torn = pos
            break
        entry, pos = good
        yield entry
    scan.end = pos


def read_entries(directory: str) -> Iterator[Entry]:
    """Read a WAL directory without changing it: yield its verified entries
    in order, as ``WriteAheadLog.recover`` would (header, seeded checksum,
    seal, torn tail: the log ends at the first short or bad entry, and later
    segments are not read), but truncating, deleting, recycling and creating
    nothing. For a survivor replaying a dead broker's tail from a shared
    directory; the directory may be read-only. An entry's ``data`` is a view
    of its segment file's bytes, read whole."""
    for seg_id in _segment_ids(directory):
        scan = _Scan()
        yield from _scan_segment(_read_file(segment_path(directory, seg_id)), seg_id, scan)
        if scan.torn is not None:
            return


class WriteAheadLog:
    """Append entries, learn when they are durable, read them back."""

    def __init__(self, directory: str, *, segment_bytes: int = 64 << 20,
                 on_fsync: Callable[[float, int], None] | None = None,
                 max_spares: int = MAX_SPARES, max_spare_bytes: int = MAX_SPARE_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_spares = max_spares
        self.max_spare_bytes = max_spare_bytes
        self._on_fsync = on_fsync
        os.makedirs(directory, exist_ok=True)
        self._reclaimer = FileReclaimer("wal-reclaim")
        self._segments: dict[int, _Segment] = {}
        self._spares: list[tuple[str, int]] = []     # (path, file size), under _lock
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if name.endswith(SUFFIX + TRASH):     # trimmed before a crash
                self._reclaimer.reclaim(path)
            elif name.endswith(SUFFIX + SPARE):
                self._spares.append((path, os.path.getsize(path)))
            elif name.endswith(SUFFIX):
                seg_id = int(name[: -len(SUFFIX)])
                self._segments[seg_id] = _Segment.opened(directory, seg_id)
        self._bytes = 0     # size_bytes: entry bytes in the segments, kept current
        # Appends of one event-loop step are staged, then published to the
        # flusher at the end of the step (``_publish``): a produce request's
        # partitions, and the pipelined requests read with it, share a commit.
        self._staged: list[tuple[_Segment, int, list]] = []     # (segment, file position, parts)
        self._staged_bytes = 0
        self._staged_future: asyncio.Future | None = None
        self._last_future: asyncio.Future | None = None
        # Shared with the flusher thread, under _lock: what is published and not
        # yet taken, their futures, and the segments the batch being written
        # touches (trim must not close them).
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._pending: list[tuple[_Segment, int, list]] = []
        self._pending_bytes = 0
        self._pending_futures: list[asyncio.Future] = []
        self._writing: tuple[_Segment, ...] = ()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-prepare")
        self._next_file: ThreadFuture | None = None     # the file of segment active.id + 1
        self._failed: BaseException | None = None
        self._active: _Segment | None = None

    # ------------------------------------------------------------------ recovery
    def recover(self) -> Iterator[Entry]:
        """Yield every intact entry in order; cut the log at the first torn one.
        Appends may follow once the iterator is exhausted."""
        ids = sorted(self._segments)
        for idx, seg_id in enumerate(ids):
            seg = self._segments[seg_id]
            scan = _Scan()
            yield from _scan_segment(_read_file(seg.path), seg_id, scan)
            seg.start, seg.seed, seg.sealed = scan.start, scan.seed, scan.sealed
            if scan.torn is not None:
                self._truncate_from(seg, scan.torn, ids[idx + 1:])
                break
            seg.size = scan.end
        self._start_appending()
        self._bytes = sum(seg.size - seg.start for seg in self._segments.values())

    def _start_appending(self) -> None:
        """After recovery: append to the last segment if it has a header,
        else to a new one; prepare the one after."""
        last = self._segments[max(self._segments)] if self._segments else None
        if last is None or not last.seed or last.sealed:
            seg_id = last.id + 1 if last is not None else 0
            if last is not None and not last.has_entries:   # empty and headerless: replace it
                self._segments.pop(last.id)
                last.close()
                os.unlink(last.path)
                seg_id = last.id
            fd = self._prepare_file(seg_id)
            done: ThreadFuture = ThreadFuture()
            done.set_result(fd)
            last = _Segment.prepared(self.directory, seg_id, done)
            self._segments[seg_id] = last
        self._active = last
        self._next_file = self._preparer.submit(self._prepare_file, last.id + 1)

    @staticmethod
    def _entry_at(buf: memoryview, pos: int, seg_id: int, seed: int = 0) -> tuple[Entry, int] | None:
        if pos + FRAME.size > len(buf):
            return None
        length, crc = FRAME.unpack_from(buf, pos)
        body_start = pos + FRAME.size
        body_end = body_start + length
        if length < BODY_HEAD.size or body_end > len(buf):
            return None
        body = buf[body_start:body_end]
        if crc32c.crc32c(body, seed) != crc:
            return None
        kind, key_len = BODY_HEAD.unpack_from(body, 0)
        data_start = BODY_HEAD.size + key_len
        if data_start > length:
            return None
        key = bytes(body[BODY_HEAD.size:data_start])
        loc = (seg_id, body_start + data_start, length - data_start)
        return Entry(kind, key, body[data_start:], loc), body_end

    def _truncate_from(self, seg: _Segment, pos: int, later: list[int]) -> None:
        if pos > seg.start or seg.size > pos:
            log.warning("WAL: the log ends in %s at byte %d (file of %d bytes): a torn or unsealed "
                        "tail; cutting it there", seg.path, pos, seg.size)
        fd = seg.file()
        os.ftruncate(fd, pos)
        os.fsync(fd)
        seg.size = pos
        if pos == 0:
            seg.start = seg.seed = 0
        for seg_id in later:
            dropped = self._segments.pop(seg_id)
            dropped.close()
            os.unlink(dropped.path)
            if dropped.has_entries:
                log.warning("WAL: removed segment %s after the torn entry", dropped.path)
        _fsync_dir(self.directory)

    def _prepare_file(self, seg_id: int) -> int:
        """Make segment ``seg_id``'s file: a spare renamed (its blocks are
        overwritten without journal commits) or a new file; write the header;
        make the name durable. Runs in the preparer thread, off the ack path."""
        path = segment_path(self.directory, seg_id)
        with self._lock:
            spare = self._spares.pop()[0] if self._spares else None
        if spare is not None:
            os.rename(spare, path)
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.pwrite(fd, HEADER.pack(MAGIC, seg_id), 0)
            _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -------------------------------------------------------------------- append
    def append(self, kind: int, key: bytes, data) -> tuple[Location, asyncio.Future]:
        """Queue one entry; the future resolves once it is fsynced.

        ``data`` is any bytes-like object; it is not copied here, so the caller
        must not mutate it until the future resolves.
        """
        if self._failed is not None:
            raise WalError("write-ahead log failed earlier") from self._failed
        if self._active is None:
            raise WalError("recover() the log before appending")
        head = BODY_HEAD.pack(kind, len(key)) + key
        length = len(head) + len(data)
        total = FRAME.size + length
        seg = self._active
        if seg.has_entries and seg.size + total > self.segment_bytes:
            seg = self._roll()
        crc = crc32c.crc32c(data, crc32c.crc32c(head, seg.seed))
        frame = FRAME.pack(length, crc) + head
        loc = (seg.id, seg.size + len(frame), len(data))
        return loc, self._queue(seg, (frame, data), total)

    def _queue(self, seg: _Segment, parts: tuple, total: int) -> asyncio.Future:
        """Reserve ``total`` bytes at the segment's end for ``parts``; stage them
        for the flusher (published at the end of this event-loop step)."""
        position = seg.size
        seg.size += total
        self._bytes += total
        staged = self._staged
        if staged and staged[-1][0] is seg:
            staged[-1][2].extend(parts)
        else:
            staged.append((seg, position, list(parts)))
        self._staged_bytes += total
        fut = self._staged_future
        if fut is None:
            if self._thread is None:
                self._start_flusher()
            loop = self._loop
            assert loop is not None  # set by _start_flusher
            fut = self._staged_future = self._last_future = _GroupCommit(loop=loop)
            loop.call_soon(self._publish)
        return fut

    def _publish(self) -> None:
        """Hand this step's appends to the flusher thread."""
        staged, fut, nbytes = self._staged, self._staged_future, self._staged_bytes
        self._staged, self._staged_future, self._staged_bytes = [], None, 0
        assert fut is not None  # scheduled by _queue with the step's future
        if self._failed is not None:
            fut.set_exception(WalError(str(self._failed)))
            fut.exception()
            return
        with self._lock:
            pending = self._pending
            for seg, position, parts in staged:
                # A segment's bytes are reserved and queued in order, so a run
                # continuing the last one not yet taken starts where it ends.
                if pending and pending[-1][0] is seg:
                    pending[-1][2].extend(parts)
                else:
                    pending.append((seg, position, parts))
            self._pending_bytes += nbytes
            self._pending_futures.append(fut)
            self._wakeup.notify()

    def _start_flusher(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._flusher, name="wal-flush", daemon=True)
        self._thread.start()

    def _roll(self) -> _Segment:
        """Seal the active segment and move to the next one, whose file the
        preparer made ready (its header written, its name durable)."""
        old, next_file = self._active, self._next_file
        assert old is not None and next_file is not None  # set by _start_appending
        if old.seed:    # a segment without header ends at its end of file
            self._queue(old, (FRAME.pack(0, seal_crc(old.seed)),), FRAME.size)
        old.sealed = True
        seg = _Segment.prepared(self.directory, old.id + 1, next_file)
        self._segments[seg.id] = seg
        self._active = seg
        self._next_file = self._preparer.submit(self._prepare_file, seg.id + 1)
        return seg

    # ---------------------------------------------------------------- trimming
    def cut(self) -> int:
        """Start a new segment (unless the active one is empty) and return its id:
        every entry appended so far lies in a segment with a smaller id, so once
        they are uploaded, ``trim(cut)`` may delete those segments whole."""
        assert self._active is not None  # recover() came first
        if self._active.has_entries:
            self._roll()
        return self._active.id

    def trim(self, before: int) -> int:
        """Drop every segment whose id is below ``before`` (their entries are
        uploaded); returns the bytes freed. The active segment is never dropped,
        nor one with bytes still queued or being written."""
        freed = 0
        with self._lock:
            busy = {seg.id for seg, _, _ in self._pending} | {seg.id for seg in self._writing}
        busy |= {seg.id for seg, _, _ in self._staged}
        for seg_id in sorted(self._segments):
            if seg_id >= before or self._segments[seg_id] is self._active or seg_id in busy:
                break
            seg = self._segments.pop(seg_id)
            freed += seg.size - seg.start
            self._bytes -= seg.size - seg.start
            file_bytes = os.fstat(seg.file()).st_size
            seg.close()
            # Out of the log at once, oldest first (a rename, no fsync: a crash
            # may bring back the newest of those trimmed, replayed as before a
            # trim, never a gap). Kept as a spare to be overwritten by a later
            # segment, or freed bit by bit (freeing a file's blocks at once
            # stalls the disk's fsyncs: wal/reclaim.py).
            with self._lock:
                keep = (len(self._spares) < self.max_spares and
                        sum(n for _, n in self._spares) + file_bytes <= self.max_spare_bytes)
            if keep:
                spare = seg.path + SPARE
                os.rename(seg.path, spare)
                with self._lock:
                    self._spares.append((spare, file_bytes))
            else:
                trash = seg.path + TRASH
                os.rename(seg.path, trash)
                self._reclaimer.reclaim(trash)
        return freed

    def segment_of(self, loc: Location) -> int:
        return loc[0]

    async def sync(self) -> None:
        """Wait until every entry appended so far is durable."""
        fut = self._last_future
        if fut is not None and not fut.done():
            await asyncio.shield(fut)
        if self._failed is not None:
            # The flusher fails the batch's future; a later sync must say so too.
            raise WalError("write-ahead log failed earlier") from self._failed

    # ------------------------------------------------------------------ flusher
    def _flusher(self) -> None:
        """The flusher thread: write and fdatasync whatever is published, again and again."""
        loop = self._loop
        assert loop is not None  # set before the thread starts
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if not self._pending:
                    return
                batch, futs, nbytes = self._pending, self._pending_futures, self._pending_bytes
                self._pending, self._pending_futures, self._pending_bytes = [], [], 0
                self._writing = tuple(seg for seg, _, _ in batch)
            try:
                seconds = self._write_and_sync(batch)
            except BaseException as exc:  # disk full, I/O error: nothing after this is safe
                with self._lock:
                    self._writing = ()
                _call_soon(loop, self._flush_failed, futs, exc)
                return
            with self._lock:
                self._writing = ()
            if not _call_soon(loop, self._flushed, futs, seconds, nbytes):
                return

    def _flushed(self, futs: list[asyncio.Future], seconds: float, nbytes: int) -> None:
        if self._on_fsync is not None:
            self._on_fsync(seconds, nbytes)
        for fut in futs:
            fut.set_result(None)

    def _flush_failed(self, futs: list[asyncio.Future], exc: BaseException) -> None:
        log.critical("WAL: write/fsync failed; refusing further appends: %s", exc)
        self._failed = exc
        with self._lock:
            later, self._pending_futures = self._pending_futures, []
            self._pending.clear()
            self._pending_bytes = 0
            self._stopping = True
        for fut in futs + later:
            if not fut.done():
                fut.set_exception(WalError(str(exc)))
                fut.exception()  # mark retrieved; waiters still see it

    def _write_and_sync(self, batch: list[tuple[_Segment, int, list]]) -> float:
        touched: dict[_Segment, list[int]] = {}
        for seg, position, parts in batch:
            # Positions were reserved at append time; write exactly there.
            end = _pwritev_all(seg.file(), parts, position)
            span = touched.setdefault(seg, [position, end])
            span[1] = end
        start = time.perf_counter()
        for seg in touched:
            os.fdatasync(seg.file())
        elapsed = time.perf_counter() - start
        # Once durable, the bytes are read back from the tail cache, not the
        # page cache; dropping the pages saves the kernel the memory pressure
        # (measured: broker kernel CPU 10 s -> 4.4 s per bench run, BENCHMARKS.md).
        # The last, partly written page stays: the next write completes it
        # without reading it back from disk first.
        for seg, (begin, end) in touched.items():
            whole = (end & ~(PAGE - 1)) - begin
            if whole > 0:
                os.posix_fadvise(seg.file(), begin, whole, os.POSIX_FADV_DONTNEED)
        return elapsed

    # ---------------------------------------------------------------------- read
    def read(self, loc: Location) -> bytes:
        """Read an entry's data back (only valid once the entry is durable)."""
        segment, position, length = loc
        seg = self._segments[segment]
        return os.pread(seg.file(), length, position)

    @property
    def size_bytes(self) -> int:
        """Bytes of entries (and seals) in the log's segments, headers aside
        (checked per append: kept as a running total)."""
        return self._bytes

    @property
    def pending_bytes(self) -> int:
        """Bytes appended and not yet taken by the flusher."""
        return self._pending_bytes + self._staged_bytes

    async def close(self) -> None:
        """Sync what is queued, then release files."""
        if self._failed is None:
            try:
                await self.sync()
            except WalError:
                pass
        with self._lock:
            self._stopping = True
            self._wakeup.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._preparer.shutdown(wait=True)
        if self._next_file is not None:     # prepared, never used: a spare again
            try:
                fd = self._next_file.result()
            except Exception:
                pass
            else:
                os.close(fd)
                assert self._active is not None  # set with _next_file
                path = segment_path(self.directory, self._active.id + 1)
                os.rename(path, path + SPARE)
            self._next_file = None
        self._reclaimer.close()
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        self._bytes = 0


def _call_soon(loop: asyncio.AbstractEventLoop, fn, *args) -> bool:
    try:
        loop.call_soon_threadsafe(fn, *args)
        return True
    except RuntimeError:    # the loop is closed: nobody is waiting any more
        return False


def _pwritev_all(fd: int, parts: list, position: int) -> int:
    """os.pwritev at ``position`` until every byte is written (it may write
    partially); returns the end position."""
    views = collections.deque(memoryview(p).cast("B") for p in parts if len(p))
    iov_max = 1024
    while views:
        n = os.pwritev(fd, list(itertools.islice(views, iov_max)), position)
        position += n
        # drop fully written views; trim the partly written one
        while n > 0:
            if n >= len(views[0]):
                n -= len(views.popleft())
            else:
                views[0] = views[0][n:]
                n = 0
    return position


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
