"""wal/dir_objects.py: the shared-volume file WAL's objects (wal.type=file with
wal.shared.dir). The same answers as the bucket's (StoreWalObjects over the
in-memory store), a create that happens once, and the object WAL's fence
over a directory."""
from __future__ import annotations

import asyncio
import os

import pytest

from broker.log.takeover import DeadWals, StoreWalObjects
from objectstore import MemoryObjectStore
from wal.dir_objects import TEMP, DirWalObjects
from wal.object_log import ObjectWriteAheadLog, WalFenced

PREFIX = "wal/1/"


def key(seq: int) -> str:
    return f"{PREFIX}{seq:020d}"


@pytest.fixture
def objects(tmp_path):
    d = DirWalObjects(str(tmp_path / "shared"))
    yield d
    d.close()


async def test_the_same_answers_as_the_bucket(objects):
    bucket = StoreWalObjects(MemoryObjectStore())
    for o in (objects, bucket):
        assert await o.list(PREFIX) == [] and await o.list_sizes(PREFIX) == []
        assert await o.get(key(0)) is None
        assert await o.create(key(1), b"one") is True
        assert await o.create(key(0), b"zero!") is True
        assert await o.create(key(1), b"again") is False
        assert await o.get(key(1)) == b"one"
        await o.delete(key(7))                  # not there: no error
    assert await objects.list(PREFIX) == await bucket.list(PREFIX) == [key(0), key(1)]
    assert await objects.list_sizes(PREFIX) == await bucket.list_sizes(PREFIX) == [(0, 5), (1, 3)]
    await objects.delete(key(0))
    assert await objects.list(PREFIX) == [key(1)]


async def test_of_many_creates_of_one_name_exactly_one_wins(objects):
    for seq in range(10):
        won = await asyncio.gather(*(objects.create(key(seq), b"writer %d" % w) for w in range(6)))
        assert won.count(True) == 1
        assert await objects.get(key(seq)) == b"writer %d" % won.index(True)
    assert not [n for n in os.listdir(os.path.join(objects.root, PREFIX)) if n.startswith(TEMP)]


async def test_a_crashs_temporary_file_is_never_listed_and_is_swept(objects):
    await objects.create(key(0), b"x")
    folder = os.path.join(objects.root, PREFIX)
    with open(os.path.join(folder, TEMP + "left-by-a-crash"), "wb") as f:
        f.write(b"half a commit")
    assert await objects.list(PREFIX) == [key(0)]
    assert await objects.remove_temps(PREFIX) == 1
    assert sorted(os.listdir(folder)) == ["%020d" % 0]


async def test_keys_stay_inside_the_root(objects):
    with pytest.raises(ValueError):
        await objects.create("wal/../../etc/x", b"")


async def test_the_object_wal_over_a_directory_commits_recovers_and_is_fenced(objects):
    wal = ObjectWriteAheadLog(objects, PREFIX)
    await wal.load()
    assert list(wal.recover()) == []
    await asyncio.gather(*(wal.append(1, b"k", b"v%d" % i)[1] for i in range(3)))
    reader = DirWalObjects(objects.root)           # another broker's view of the volume
    survivor = DeadWals(reader)
    async with survivor.reading(1, generation=4) as entries:
        assert [bytes(e.data) for e in entries] == [b"v0", b"v1", b"v2"]
    with pytest.raises(WalFenced):
        await wal.append(1, b"k", b"after the fence")[1]
    await wal.rejoin()
    await wal.append(1, b"k", b"next life")[1]
    await wal.close()
    again = ObjectWriteAheadLog(DirWalObjects(objects.root), PREFIX)
    await again.load()
    assert [bytes(e.data) for e in again.recover()] == [b"next life"]   # below the takeover fence: not ours
    await again.close()
    reader.close()


async def test_the_first_commit_on_a_fresh_volume_creates_its_folders_durably(tmp_path, monkeypatch):
    import wal.dir_objects as dir_objects
    synced: list[str] = []
    real = dir_objects._fsync_dir
    monkeypatch.setattr(dir_objects, "_fsync_dir", lambda p: (synced.append(p), real(p)))
    objects = DirWalObjects(str(tmp_path / "volume"))
    try:
        assert await objects.create(key(0), b"x")
    finally:
        objects.close()
    root = str(tmp_path / "volume")
    # volume/, volume/wal/ and volume/wal/1/ were created: each fsynced into its parent, then the commit's folder
    assert synced == [str(tmp_path), root, os.path.join(root, "wal"), os.path.join(root, "wal", "1")]
