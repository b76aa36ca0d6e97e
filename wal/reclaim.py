"""Free the blocks of deleted big files a few MiB at a time, off the event loop.

Why not just ``unlink``: freeing a 20-64 MiB file frees all its blocks in one
ext4 journal commit, and on a disk mounted with ``discard`` (and on many
virtual disks) that commit issues the discards for all of them. Every fsync
that lands in or behind that commit waits -- including the WAL's fdatasync, a
producer waiting for its ack. Measured on the CI machine (ext4, ``discard``,
virtio) with ``deploy/fsync-contention.py``: a 300 KiB write + fdatasync every
4 ms next to one 64 MiB file written and deleted every 2 s had fdatasync
p99.9 21-22 ms with ``unlink``, 6-11 ms when the file was truncated 4 MiB at a
time 20 ms apart, then unlinked (BENCHMARKS.md, "Session 4").

The caller first moves the file out of its namespace (a rename: atomic, so
the key or segment is gone at once); the reclaimer then shrinks and unlinks
it in one background thread. A crash midway leaves a renamed file that its
owner finds and hands back here on the next start.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

log = logging.getLogger(__name__)

STEP_BYTES = 4 << 20
PAUSE_SECONDS = 0.02
# Above this much waiting to be freed, stop pausing: disk space matters more
# than a few ms of fsync latency (200 MB/s paced is below the unthrottled
# ingest rate's two deletions per byte: WAL segment + upload object).
BACKLOG_UNPACED = 1 << 30


def reclaim_file(path: str, step: int = STEP_BYTES, pause: float = PAUSE_SECONDS) -> int:
    """Truncate ``path`` from its end ``step`` bytes at a time, ``pause``
    seconds apart, then unlink it. Returns the bytes freed (0 if it is gone)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        size = freed = os.fstat(fd).st_size
        while size > step:
            size -= step
            os.ftruncate(fd, size)
            if pause:
                time.sleep(pause)
    finally:
        os.close(fd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return freed


class FileReclaimer:
    """One daemon thread that reclaims queued files in order.

    The thread starts on the first file and ends when the queue stays empty
    for a second, so idle stores and logs in tests hold no thread.
    """

    def __init__(self, name: str = "reclaim", *, step: int = STEP_BYTES,
                 pause: float = PAUSE_SECONDS) -> None:
        self._name = name
        self._step = step
        self._pause = pause
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._backlog = 0       # bytes queued, roughly (sizes at queue time)
        self._closed = False

    def reclaim(self, path: str) -> None:
        """Queue a file that is already out of its owner's namespace."""
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return
        with self._lock:
            self._backlog += size
            self._queue.put(path)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    @property
    def backlog_bytes(self) -> int:
        return self._backlog

    def _run(self) -> None:
        while True:
            try:
                path = self._queue.get(timeout=1.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if path is None:        # close(): the queue before it is done
                return
            pause = 0.0 if self._closed or self._backlog > BACKLOG_UNPACED else self._pause
            try:
                size = reclaim_file(path, self._step, pause)
            except OSError as exc:
                log.warning("could not delete %s: %s", path, exc)
                size = 0
            with self._lock:
                self._backlog = max(0, self._backlog - size)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queue without pauses (shutdown: nothing left to protect)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is None:
                return
            self._thread = None
            self._queue.put(None)
        thread.join(timeout)
