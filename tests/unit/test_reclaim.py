"""wal/reclaim.py: deleted files are freed a step at a time, then unlinked."""
from __future__ import annotations

import asyncio
import os
import zlib

import objectstore.filesystem as fs
import wal.reclaim as reclaim
from objectstore.filesystem import LOCK_STRIPES, FilesystemObjectStore
from wal.log import SUFFIX, WriteAheadLog


def test_reclaim_file_truncates_step_by_step_then_unlinks(tmp_path, monkeypatch):
    path = tmp_path / "big"
    path.write_bytes(b"x" * (10 << 20))
    sizes: list[int] = []
    real = os.ftruncate
    monkeypatch.setattr(reclaim.os, "ftruncate", lambda fd, n: (sizes.append(n), real(fd, n))[1])
    assert reclaim.reclaim_file(str(path), step=4 << 20, pause=0) == 10 << 20
    assert sizes == [6 << 20, 2 << 20]
    assert not path.exists()
    assert reclaim.reclaim_file(str(path)) == 0     # already gone: nothing to do


def test_reclaimer_frees_queued_files_in_order_and_close_drains_the_queue(tmp_path, monkeypatch):
    order: list[str] = []
    real = reclaim.reclaim_file
    monkeypatch.setattr(reclaim, "reclaim_file",
                        lambda p, *a: (order.append(os.path.basename(p)), real(p, *a))[1])
    r = reclaim.FileReclaimer(step=1 << 20, pause=0.05)
    names = [f"f{i}" for i in range(5)]
    for name in names:
        (tmp_path / name).write_bytes(b"y" * (3 << 20))
        r.reclaim(str(tmp_path / name))
    r.reclaim(str(tmp_path / "missing"))            # ignored
    r.close()
    assert order == names
    assert os.listdir(tmp_path) == []
    assert r.backlog_bytes == 0


async def test_a_wal_segment_trimmed_before_a_crash_is_freed_not_replayed(tmp_path):
    directory = tmp_path / "wal"
    wal = WriteAheadLog(str(directory))
    list(wal.recover())
    await wal.append(1, b"k", b"uploaded")[1]
    cut = wal.cut()
    await wal.append(1, b"k", b"kept")[1]
    await wal.close()
    # As trim() leaves it when the process dies before the reclaimer ran.
    first = directory / f"{0:020d}{SUFFIX}"
    os.rename(first, str(first) + ".trash")
    wal = WriteAheadLog(str(directory))
    assert [bytes(e.data) for e in wal.recover()] == [b"kept"]
    await wal.close()
    # (the ".spare" is the next segment, prepared ahead and kept for recycling)
    assert sorted(n for n in os.listdir(directory) if not n.endswith(".spare")) == [f"{cut:020d}{SUFFIX}"]


async def test_filesystem_store_delete_is_immediate_and_frees_the_file(tmp_path):
    store = FilesystemObjectStore(tmp_path / "bucket")
    await store.put("t/0/obj", b"z" * (5 << 20))
    await store.delete("t/0/obj")
    assert await store.list("") == []
    assert not await store.exists("t/0/obj")
    await store.close()
    assert os.listdir(tmp_path / "bucket" / ".sluice" / "trash") == []
    # a delete interrupted by a crash: the renamed file is freed on the next start
    leftover = tmp_path / "bucket" / ".sluice" / "trash" / "abc"
    leftover.write_bytes(b"w" * 1000)
    store = FilesystemObjectStore(tmp_path / "bucket")
    await store.close()
    assert not leftover.exists()


def _keys_on_distinct_stripes(folder: str, n: int) -> list[str]:
    """``n`` keys in ``folder`` whose per-key locks are different stripes (the
    same stripe would serialise two deletes, which hides the race)."""
    keys: list[str] = []
    stripes: set[int] = set()
    for i in range(10 * LOCK_STRIPES):
        key = f"{folder}/obj-{i}"
        stripe = zlib.crc32(key.encode()) % LOCK_STRIPES
        if stripe not in stripes:
            stripes.add(stripe)
            keys.append(key)
            if len(keys) == n:
                return keys
    raise AssertionError("not enough stripes")


async def test_filesystem_delete_survives_a_sibling_delete_removing_the_folder(tmp_path, monkeypatch):
    """Two deletes in one folder: the second empties it and removes it while
    the first is about to sync it. The first delete still succeeds and its
    file is freed (it used to raise FileNotFoundError, its file stranded in
    the trash until the next start). Made deterministic by running the
    sibling delete at the first one's directory sync."""
    store = FilesystemObjectStore(tmp_path / "bucket")
    first, second = _keys_on_distinct_stripes("data/7", 2)
    for key in (first, second):
        await store.put(key, b"z" * 1000)
    real_fsync_dir = fs._fsync_dir
    folder = store._path(first).parent
    interleaved = []

    def sibling_delete_first(path):
        if path == folder and not interleaved:
            interleaved.append(path)
            store._delete_sync(second)      # empties the folder and removes it
            assert not folder.exists()
        real_fsync_dir(path)

    monkeypatch.setattr(fs, "_fsync_dir", sibling_delete_first)
    await store.delete(first)
    assert interleaved
    assert await store.list("") == []
    await store.close()
    assert os.listdir(tmp_path / "bucket" / ".sluice" / "trash") == []


async def test_filesystem_many_concurrent_deletes_in_one_folder(tmp_path):
    """Deletes racing in one folder all succeed and leave nothing in the trash."""
    store = FilesystemObjectStore(tmp_path / "bucket")
    for rnd in range(5):
        keys = _keys_on_distinct_stripes(f"data/{rnd}", 16)
        await asyncio.gather(*(store.put(k, b"y" * 100) for k in keys))
        await asyncio.gather(*(store.delete(k) for k in keys))
        assert await store.list("") == []
    await store.close()
    assert os.listdir(tmp_path / "bucket" / ".sluice" / "trash") == []
    assert not (tmp_path / "bucket" / "data").exists()


async def test_filesystem_put_survives_a_delete_removing_its_new_folder(tmp_path, monkeypatch):
    """A put creates ``p/`` then ``p/q/``; a delete's walk up removes the
    still empty ``p/`` in between. The put creates it again and lands."""
    store = FilesystemObjectStore(tmp_path / "bucket")
    real_fsync_dir = fs._fsync_dir
    removed = []

    def delete_walk_in_between(path):
        real_fsync_dir(path)
        if path == store.root and (store.root / "p").is_dir() and not removed:
            removed.append(path)
            (store.root / "p").rmdir()      # as _delete_sync's walk does when it is empty

    monkeypatch.setattr(fs, "_fsync_dir", delete_walk_in_between)
    await store.put("p/q/k", b"v")
    assert removed
    assert await store.get("p/q/k") == b"v"
    await store.close()
