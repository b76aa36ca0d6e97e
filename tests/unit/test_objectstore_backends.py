"""Backend-specific ObjectStore behaviour that the shared contract cannot express:
conditional writes across processes on one filesystem, crash leftovers, and an
S3 outage (a real MinIO stopped and started again)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from objectstore import FilesystemObjectStore, InvalidKey, NotFound, PreconditionFailed, StoreUnavailable
from objectstore.s3 import S3ObjectStore

ROOT = Path(__file__).resolve().parents[2]

# Each process waits for the 'go' file, then races the others.
RACER = r"""
import asyncio, os, sys, time
from objectstore import FilesystemObjectStore, PreconditionFailed
root, name, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = FilesystemObjectStore(root)
go = os.path.join(os.path.dirname(root), "go")
while not os.path.exists(go):
    time.sleep(0.005)
async def main():
    if mode == "create":
        try:
            await store.put_if_absent("race", name.encode())
            print("won")
        except PreconditionFailed:
            print("lost")
        return
    for _ in range(n):
        while True:
            data, etag = await store.get_with_etag("counter")
            try:
                await store.put_if_match("counter", str(int(data) + 1).encode(), etag)
                break
            except PreconditionFailed:
                pass
    print("done")
asyncio.run(main())
"""


def race(tmp_path: Path, mode: str, procs: int, n: int = 0) -> list[str]:
    root = tmp_path / "objects"
    ps = [subprocess.Popen([sys.executable, "-c", RACER, str(root), f"p{i}", mode, str(n)],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True) for i in range(procs)]
    time.sleep(0.5)     # let them all import and wait
    (tmp_path / "go").touch()
    outs = []
    for p in ps:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        outs.append(out.strip())
    return outs


async def test_filesystem_create_only_across_processes(tmp_path):
    FilesystemObjectStore(tmp_path / "objects")
    outs = race(tmp_path, "create", procs=4)
    assert sorted(outs) == ["lost", "lost", "lost", "won"]
    winner = f"p{outs.index('won')}".encode()
    assert await FilesystemObjectStore(tmp_path / "objects").get("race") == winner


async def test_filesystem_counter_across_processes(tmp_path):
    store = FilesystemObjectStore(tmp_path / "objects")
    await store.put("counter", b"0")
    outs = race(tmp_path, "counter", procs=3, n=20)
    assert outs == ["done"] * 3
    assert await store.get("counter") == b"60"


async def test_filesystem_layout_and_crash_leftovers(tmp_path):
    root = tmp_path / "objects"
    store = FilesystemObjectStore(root)
    await store.put("topics/t/0/obj", b"data")
    assert (root / "topics/t/0/obj").read_bytes() == b"data"      # plain files, inspectable
    tmpdir = root / ".sluice" / "tmp"
    assert list(tmpdir.iterdir()) == []                          # no temp file left behind
    # A put interrupted by a crash leaves a temp file: old ones go at the next open,
    # fresh ones (maybe another live process's) stay.
    old, fresh = tmpdir / "old", tmpdir / "fresh"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    reopened = FilesystemObjectStore(root)
    assert not old.exists() and fresh.exists()
    assert await reopened.list() == ["topics/t/0/obj"]           # .sluice is never listed
    # A failed conditional put leaves nothing behind either.
    with pytest.raises(PreconditionFailed):
        await reopened.put_if_absent("topics/t/0/obj", b"other")
    assert sorted(p.name for p in tmpdir.iterdir()) == ["fresh"]


async def test_filesystem_delete_removes_empty_directories(tmp_path):
    root = tmp_path / "objects"
    store = FilesystemObjectStore(root)
    await store.put("a/b/c/d", b"1")
    await store.put("a/x", b"2")
    await store.delete("a/b/c/d")
    assert not (root / "a" / "b").exists()
    assert (root / "a" / "x").exists()


async def test_filesystem_key_that_is_another_keys_prefix(tmp_path):
    """'a' and 'a/b' cannot both exist as files: a clear InvalidKey, and reads of
    the directory 'a' see no object."""
    store = FilesystemObjectStore(tmp_path / "objects")
    await store.put("a/b", b"1")
    for op in (store.get("a"), store.head("a"), store.get_range("a", 0, 1)):
        with pytest.raises(NotFound):
            await op
    assert not await store.exists("a")
    with pytest.raises(PreconditionFailed):
        await store.put_if_match("a", b"x", '"00"')
    for op in (store.put("a", b"x"), store.put_if_absent("a", b"x")):
        with pytest.raises(InvalidKey):
            await op
    await store.put("c", b"2")
    with pytest.raises(InvalidKey):
        await store.put("c/d", b"3")
    await store.delete("a")                 # no object there: nothing happens
    assert await store.list() == ["a/b", "c"]
    assert list((tmp_path / "objects" / ".sluice" / "tmp").iterdir()) == []


async def test_s3_outage_and_recovery(minio_factory):
    server = minio_factory()
    bucket = server.create_bucket()
    store = S3ObjectStore(bucket, endpoint_url=server.endpoint,
                          aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key,
                          connect_timeout=1, read_timeout=5,
                          retries={"mode": "standard", "max_attempts": 1})
    try:
        etag = await store.put("m", b"before")
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.put("m", b"during")
        with pytest.raises(StoreUnavailable):
            await store.get("m")
        server.kill()       # no-op when stopped; then a hard kill while running:
        server.start()
        await _eventually(lambda: store.get_with_etag("m"), (b"before", etag))
        server.kill()
        with pytest.raises(StoreUnavailable):
            await store.list()
        server.start()
        await _eventually(lambda: store.put_if_match("m", b"after", etag), None)
        assert await store.get("m") == b"after"
    finally:
        await store.close()


async def _eventually(op, expected, timeout: float = 15.0):
    """Retry ``op`` on StoreUnavailable (a pooled connection may still be stale)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await op()
            break
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    if expected is not None:
        assert result == expected
    return result
