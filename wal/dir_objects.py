"""The WAL's objects as files in a directory other brokers can reach: the
shared-volume file WAL (``wal.type=file`` with ``wal.shared.dir``).

It gives ``ObjectWriteAheadLog`` what it needs of a bucket (``WalObjects``:
create-only put, get, list, delete) on a POSIX file system shared by the
brokers (one machine's directory in tests; a shared or multi-attach volume
mounted at the same path on every broker in production). The fencing
protocol of docs/failover.md then holds unchanged, because the one property
it needs of a PUT holds of ``create``: a name is created at most once and
carries its whole body from the moment it exists.

``create`` writes the body to a temporary file, fsyncs it, and links it to
its name: ``link(2)`` fails if the name exists (If-None-Match for files; on
NFS too, where an exclusive ``open`` is not always atomic), and the name
never shows a half-written body to a survivor reading it. The directory is
fsynced before ``create`` returns, so the name survives a power loss before
a producer is acknowledged: two fsyncs per group commit, against one for the
segmented local file WAL (BENCHMARKS.md has what that costs).

Blocking calls run in a small thread pool, off the event loop.
"""
from __future__ import annotations

import asyncio
import builtins
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

TEMP = ".tmp-"      # a temporary file's name starts with it: never a sequence number


class DirWalObjects:
    """``WalObjects`` (wal.object_log) over the directory ``root``: the key
    ``wal/3/00000000000000000007`` is the file ``root/wal/3/00000000000000000007``."""

    def __init__(self, root: str, *, threads: int = 4) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="wal-dir")

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad WAL object key {key!r}")
        return os.path.join(self.root, key)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def create(self, key: str, body: bytes) -> bool:
        """Create ``key`` holding ``body``, durably; False if it exists."""
        return await self._run(self._create, self._path(key), body)

    @staticmethod
    def _create(path: str, body: bytes) -> bool:
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            _make_dirs(folder)
        temp = os.path.join(folder, f"{TEMP}{uuid.uuid4().hex}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
            created = True
        except FileExistsError:
            # Maybe our own earlier attempt, linked before its directory fsync
            # failed: the caller compares bodies and counts it as landed, so
            # make the name durable either way.
            created = False
        finally:
            os.unlink(temp)
        _fsync_dir(folder)
        return created

    async def get(self, key: str) -> bytes | None:
        return await self._run(self._get, self._path(key))

    @staticmethod
    def _get(path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    async def list(self, prefix: str) -> builtins.list[str]:
        return [prefix + name for name, _ in await self._run(self._listdir, self._path(prefix))]

    async def list_sizes(self, prefix: str) -> builtins.list[tuple[int, int]]:
        """(sequence number, size) of the WAL files under ``prefix``, in order."""
        return sorted((int(name), size) for name, size in await self._run(self._listdir, self._path(prefix))
                      if name.isdigit())

    @staticmethod
    def _listdir(folder: str) -> builtins.list[tuple[str, int]]:
        out = []
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        for e in entries:
            if e.name.startswith(TEMP):
                continue
            try:
                out.append((e.name, e.stat().st_size))
            except FileNotFoundError:
                continue            # deleted since the scan
        return sorted(out)

    async def delete(self, key: str) -> None:
        await self._run(self._delete, self._path(key))

    @staticmethod
    def _delete(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    async def remove_temps(self, prefix: str) -> int:
        """Delete temporary files a crash left under ``prefix`` (ours only:
        another broker's may be in the middle of a ``create``)."""
        return await self._run(self._remove_temps, self._path(prefix))

    @staticmethod
    def _remove_temps(folder: str) -> int:
        n = 0
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        for name in names:
            if name.startswith(TEMP):
                try:
                    os.unlink(os.path.join(folder, name))
                    n += 1
                except FileNotFoundError:
                    pass
        return n

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _make_dirs(folder: str) -> None:
    """``os.makedirs``, durably: each directory created is fsynced into its parent
    (on a fresh volume, ``wal/`` and ``wal/<node>/`` both), so a power loss after
    the first commit cannot lose the path to it."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            pass        # another broker's first commit made it too
        _fsync_dir(os.path.dirname(d))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
