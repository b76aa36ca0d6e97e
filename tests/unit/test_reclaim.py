"""wal/reclaim.py: deleted files are freed a step at a time, then unlinked."""
from __future__ import annotations

import os

import wal.reclaim as reclaim
from objectstore.filesystem import FilesystemObjectStore
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
