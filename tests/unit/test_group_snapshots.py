"""Group snapshots per coordinator partition, on the filesystem object store:
Kafka's group -> partition mapping, sharding, conditional writes and fencing,
the legacy whole-coordinator snapshot, corrupt objects."""
import asyncio

import pytest

from broker.clock import ManualClock
from broker.config import BrokerConfig
from broker.coordinator.group import GroupCoordinator, OffsetAndMetadata
from broker.coordinator.log import WalGroupLog, java_string_hashcode, partition_for
from broker.coordinator.snapshot import (
    LEGACY_KEY,
    GroupSnapshots,
    decode_group_snapshot,
    encode_group_snapshot,
    encode_legacy_snapshot,
    shard_key,
)
from objectstore import CorruptObject, FilesystemObjectStore, StoreUnavailable

# Partitions of offsets.topic.num.partitions = 50, by hand (Java's String.hashCode
# is s[0]*31^(n-1) + ... + s[n-1] over UTF-16 units, in 32 bits; Kafka's
# Utils.abs(n) is (n == Integer.MIN_VALUE) ? 0 : Math.abs(n)):
A, AB = "a", "ab"        # 97 -> 47;  97*31 + 98 = 3105 -> 5
A_SHARD, AB_SHARD = 47, 5


def test_partition_for_is_kafkas():
    assert java_string_hashcode("") == 0 and partition_for("", 50) == 0
    assert java_string_hashcode("a") == 97 and partition_for("a", 50) == 47
    assert java_string_hashcode("ab") == 3105 and partition_for("ab", 50) == 5
    assert java_string_hashcode("ü") == 252 and partition_for("ü", 50) == 2
    # outside the BMP: two UTF-16 units, 0xD83D * 31 + 0xDE00 = 1772899
    assert java_string_hashcode("\U0001F600") == 1772899 and partition_for("\U0001F600", 50) == 49
    # negative: |-1906497762| % 50 = 12 (Utils.toPositive's n & 0x7fffffff would give 36);
    # the hash and the partition agree with Kafka 4.4's String.hashCode and Utils.abs (jshell)
    assert java_string_hashcode("my-group") == -1906497762 and partition_for("my-group", 50) == 12
    # Integer.MIN_VALUE: Utils.abs gives 0 (Math.abs would stay negative)
    assert java_string_hashcode("polygenelubricants") == -(1 << 31)
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("a", 7) == 97 % 7


class Store(FilesystemObjectStore):
    """The filesystem store, recording puts; can lose the answer of the next put."""

    def __init__(self, root):
        super().__init__(root)
        self.puts = []            # (key, if_match, if_none_match, outcome)
        self.lose_answer = 0      # puts that land but answer StoreUnavailable
        self.fail = 0             # puts of group snapshots that fail without landing

    async def put(self, key, data, *, if_match=None, if_none_match=False, pace=None):
        if self.fail and key.startswith("groups/"):
            self.fail -= 1
            self.puts.append((key, if_match, if_none_match, "failed"))
            raise StoreUnavailable("injected")
        try:
            etag = await super().put(key, data, if_match=if_match, if_none_match=if_none_match, pace=pace)
        except Exception as e:
            self.puts.append((key, if_match, if_none_match, type(e).__name__))
            raise
        if self.lose_answer:
            self.lose_answer -= 1
            self.puts.append((key, if_match, if_none_match, "landed, answer lost"))
            raise StoreUnavailable("injected: the answer was lost")
        self.puts.append((key, if_match, if_none_match, "ok"))
        return etag


class Rig:
    """A coordinator over an in-memory log, its snapshots in ``store``."""

    def __init__(self, store, epochs=None):
        self.entries = []
        self.epochs = epochs if epochs is not None else {}
        wal = WalGroupLog(self._append)
        self.coordinator = GroupCoordinator(BrokerConfig(), wal, ManualClock())
        self.snapshots = GroupSnapshots(store, self.coordinator, partitions=50,
                                        epoch_of=lambda shard: self.epochs.get(shard, 1))
        wal.on_append = self.snapshots.note

    def _append(self, group_id, data):
        self.entries.append((group_id.encode(), data))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def commit(self, group_id, offset, partition=0):
        await self.coordinator.commit_offsets(
            group_id, [("t", partition, OffsetAndMetadata(offset, -1, None, 1000))])
        await asyncio.sleep(0)  # applied in the fsync callback,
        await asyncio.sleep(0)  # then its shard marked again

    def offsets(self, group_id):
        g = self.coordinator.groups.get(group_id)
        return None if g is None else {k: om.offset for k, om in g.offsets.items()}


@pytest.fixture
async def store(tmp_path):
    s = Store(str(tmp_path / "objects"))
    yield s
    await s.close()


async def stored(store, shard):
    return decode_group_snapshot(await store.get(shard_key(shard)), shard_key(shard))


async def test_each_partition_has_its_object_and_only_dirty_ones_are_rewritten(store):
    rig = Rig(store)
    await rig.commit(A, 1)
    await rig.commit(AB, 2)
    assert await rig.snapshots.flush()
    assert sorted(await store.list("groups/")) == [shard_key(A_SHARD), shard_key(AB_SHARD)]
    for shard, gid in ((A_SHARD, A), (AB_SHARD, AB)):
        snap = await stored(store, shard)
        assert (snap.partition, snap.partitions, snap.epoch) == (shard, 50, 1)
        assert {k for k, _ in snap.entries} == {gid.encode()}  # only its own group
    assert [(p[0], p[2]) for p in store.puts] == [(shard_key(AB_SHARD), True), (shard_key(A_SHARD), True)]

    store.puts.clear()
    assert await rig.snapshots.flush()  # nothing changed: nothing written
    assert store.puts == []
    await rig.commit(A, 3)
    assert await rig.snapshots.flush()
    assert [(p[0], p[3]) for p in store.puts] == [(shard_key(A_SHARD), "ok")]
    assert store.puts[0][1] is not None  # If-Match the etag of our last write

    again = Rig(store)
    await again.snapshots.load()
    assert again.offsets(A) == {("t", 0): 3} and again.offsets(AB) == {("t", 0): 2}
    assert again.snapshots.dirty == {}  # nothing to write back


async def test_a_shard_noted_again_during_a_flush_stays_dirty(store):
    rig = Rig(store)
    await rig.commit(A, 1)
    real = store.put

    async def put_then_note(key, data, **kw):
        etag = await real(key, data, **kw)
        rig.snapshots.note(A)  # an entry appended while the object was being written
        return etag
    store.put = put_then_note
    assert await rig.snapshots.flush()
    assert A_SHARD in rig.snapshots.dirty


async def test_an_entry_durable_after_a_flush_dirties_its_shard_again(store):
    """A commit appended before a flush but fsynced after it: the flush stored
    the shard without it (not applied yet) and cleared the mark. Applied,
    it marks the shard again, so the next flush stores it before the WAL
    segment holding it may be trimmed."""
    rig = Rig(store)
    pending = asyncio.get_running_loop().create_future()
    rig._append = lambda group_id, data: pending            # the fsync has not returned yet
    rig.coordinator.log._append_entry = rig._append
    commit = asyncio.create_task(rig.coordinator.commit_offsets(
        A, [("t", 0, OffsetAndMetadata(7, -1, None, 1000))]))
    await asyncio.sleep(0)
    assert await rig.snapshots.flush()
    assert A_SHARD not in rig.snapshots.dirty and rig.offsets(A) is None
    pending.set_result(None)
    await commit
    await asyncio.sleep(0)
    assert A_SHARD in rig.snapshots.dirty
    assert await rig.snapshots.flush()
    again = Rig(store)
    await again.snapshots.load()
    assert again.offsets(A) == {("t", 0): 7}


async def test_a_higher_epoch_fences_the_shard_and_nothing_is_written(store):
    rig = Rig(store)
    await rig.commit(A, 1)
    assert await rig.snapshots.flush()
    # a new owner of the coordinator partition writes it at epoch 2
    theirs = encode_group_snapshot([], partition=A_SHARD, partitions=50, epoch=2)
    await FilesystemObjectStore.put(store, shard_key(A_SHARD), theirs)
    await rig.commit(A, 2)
    await rig.commit(AB, 5)
    assert not await rig.snapshots.flush()  # fenced: not stored
    assert rig.snapshots.fenced == {A_SHARD}
    assert await store.get(shard_key(A_SHARD)) == theirs
    assert (await stored(store, AB_SHARD)).entries  # other shards are unaffected
    store.puts.clear()
    await rig.commit(A, 3)
    assert A_SHARD not in rig.snapshots.dirty
    assert await rig.snapshots.flush() and store.puts == []  # never written again


async def test_a_higher_epoch_fences_a_create_too(store):
    rig = Rig(store)
    theirs = encode_group_snapshot([], partition=A_SHARD, partitions=50, epoch=7)
    await FilesystemObjectStore.put(store, shard_key(A_SHARD), theirs)  # we never read it
    await rig.commit(A, 1)
    assert not await rig.snapshots.flush()
    assert rig.snapshots.fenced == {A_SHARD} and await store.get(shard_key(A_SHARD)) == theirs


async def test_a_higher_stored_epoch_at_load_fences_at_once(store):
    theirs = encode_group_snapshot([], partition=A_SHARD, partitions=50, epoch=3)
    await store.put(shard_key(A_SHARD), theirs)
    rig = Rig(store)
    await rig.snapshots.load()
    assert rig.snapshots.fenced == {A_SHARD}
    store.puts.clear()
    await rig.commit(A, 1)
    assert await rig.snapshots.flush() and store.puts == []


async def test_a_lost_answer_at_the_same_epoch_is_written_again(store):
    rig = Rig(store)
    await rig.commit(A, 1)
    store.lose_answer = 1
    assert not await rig.snapshots.flush()  # it landed, but we cannot know
    assert A_SHARD in rig.snapshots.dirty
    await rig.commit(A, 2)
    assert await rig.snapshots.flush()
    key = shard_key(A_SHARD)
    assert [(p[1] is not None, p[2], p[3]) for p in store.puts] == [
        (False, True, "landed, answer lost"),   # If-None-Match: *
        (False, True, "PreconditionFailed"),    # still believed absent: it is there
        (True, False, "ok"),                    # re-read: our epoch; If-Match the fresh etag
    ]
    assert all(p[0] == key for p in store.puts)
    again = Rig(store)
    await again.snapshots.load()
    assert again.offsets(A) == {("t", 0): 2}


async def test_a_lower_stored_epoch_is_overwritten(store):
    old = Rig(store)
    await old.commit(A, 1)
    assert await old.snapshots.flush()
    new = Rig(store, epochs={A_SHARD: 2})  # took the partition over: epoch 2
    await new.commit(A, 9)  # without loading: its etag is unknown, the create loses
    assert await new.snapshots.flush()
    snap = await stored(store, A_SHARD)
    assert snap.epoch == 2
    # and the old owner is fenced by it
    await old.commit(A, 2)
    assert not await old.snapshots.flush() and old.snapshots.fenced == {A_SHARD}


async def test_legacy_snapshot_is_read_then_deleted(store):
    # an older broker's whole-coordinator snapshot: groups a and ab (two partitions)
    src = Rig(store)
    await src.commit(A, 1)
    await src.commit(AB, 2)
    await store.put(LEGACY_KEY, encode_legacy_snapshot(src.coordinator.snapshot_entries()))
    rig = Rig(store)
    await rig.snapshots.load()
    assert rig.offsets(A) == {("t", 0): 1} and rig.offsets(AB) == {("t", 0): 2}
    assert set(rig.snapshots.dirty) == {A_SHARD, AB_SHARD}
    store.fail = 1  # the first shard write fails: the legacy object must stay
    assert not await rig.snapshots.flush()
    assert await store.exists(LEGACY_KEY)
    assert await rig.snapshots.flush()  # every legacy partition stored: then it goes
    assert not await store.exists(LEGACY_KEY)
    again = Rig(store)
    await again.snapshots.load()
    assert again.offsets(A) == {("t", 0): 1} and again.offsets(AB) == {("t", 0): 2}


async def test_a_shard_object_replaces_the_legacy_groups_of_its_partition(store):
    """Left over after a crash before the legacy object was deleted: a group
    deleted since (absent from its partition's object) must not come back."""
    src = Rig(store)
    await src.commit(A, 1)
    await src.commit(AB, 2)
    await store.put(LEGACY_KEY, encode_legacy_snapshot(src.coordinator.snapshot_entries()))
    await store.put(shard_key(A_SHARD), encode_group_snapshot([], partition=A_SHARD, partitions=50, epoch=1))
    rig = Rig(store)
    await rig.snapshots.load()
    assert rig.offsets(A) is None and rig.offsets(AB) == {("t", 0): 2}
    assert set(rig.snapshots.dirty) == {AB_SHARD}


async def test_wal_entries_replayed_at_start_dirty_their_shards(store):
    src = Rig(store)
    await src.commit(A, 4)
    rig = Rig(store)
    await rig.snapshots.load()
    for key, data in src.entries:   # what ReplicaManager._recover_wal hands over
        rig.snapshots.replay(key, data)
    assert rig.offsets(A) == {("t", 0): 4} and set(rig.snapshots.dirty) == {A_SHARD}
    assert await rig.snapshots.flush()
    assert (await stored(store, A_SHARD)).entries


async def test_a_corrupt_shard_fails_the_load(store):
    rig = Rig(store)
    await rig.commit(AB, 1)
    assert await rig.snapshots.flush()
    data = bytearray(await store.get(shard_key(AB_SHARD)))
    data[20] ^= 0xFF
    await store.put(shard_key(AB_SHARD), bytes(data))
    with pytest.raises(CorruptObject):
        await Rig(store).snapshots.load()


async def test_an_object_for_another_partition_count_is_refused(store):
    await store.put(shard_key(3), encode_group_snapshot([], partition=3, partitions=10, epoch=1))
    with pytest.raises(ValueError, match="offsets.topic.num.partitions"):
        await Rig(store).snapshots.load()


async def test_a_group_in_the_wrong_partition_object_is_corrupt(store):
    rig = Rig(store)
    await rig.commit(A, 1)
    bad = encode_group_snapshot(rig.coordinator.snapshot_entries(), partition=AB_SHARD, partitions=50,
                                epoch=1)
    await store.put(shard_key(AB_SHARD), bad)
    with pytest.raises(CorruptObject):
        await Rig(store).snapshots.load()


async def stable_group(rig, group_id, members=2):
    """``members`` consumers in a Stable group at generation 1 (the coordinator's
    initial rebalance delay elapses on its clock); returns their member ids."""
    gc = rig.coordinator
    gc.finish_loading()
    joins = [asyncio.create_task(gc.join_group(
        version=3, group_id=group_id, member_id="", group_instance_id=None, client_id=f"c{i}",
        client_host="/127.0.0.1", session_timeout_ms=10_000, rebalance_timeout_ms=30_000,
        protocol_type="consumer", protocols=[("range", b"sub%d" % i)])) for i in range(members)]
    for _ in range(10):  # group.initial.rebalance.delay.ms, again while members arrive
        await asyncio.sleep(0)
        if all(j.done() for j in joins):
            break
        gc.clock.advance(3)
    results = [j.result() for j in joins]
    ids = [r.member_id for r in results]
    leader = results[0].leader
    err, _, _ = await gc.sync_group(group_id=group_id, generation=1, member_id=leader, group_instance_id=None,
                                    protocol_type="consumer", protocol_name="range",
                                    assignments={mid: mid.encode() for mid in ids})
    assert err == 0 and gc.groups[group_id].state == "Stable"
    return ids


async def test_members_are_in_the_snapshot_and_load_as_stable(store):
    rig = Rig(store)
    ids = await stable_group(rig, A)
    await rig.commit(A, 5)
    assert await rig.snapshots.flush()
    again = Rig(store)
    await again.snapshots.load()
    g = again.coordinator.groups[A]
    assert (g.state, g.generation, g.protocol_name, set(g.members)) == ("Stable", 1, "range", set(ids))
    assert {mid: m.assignment for mid, m in g.members.items()} == {mid: mid.encode() for mid in ids}
    assert again.offsets(A) == {("t", 0): 5}
    # mid-rebalance, a snapshot holds the last stored record, not the group in flux
    gc = rig.coordinator
    joiner = asyncio.create_task(gc.join_group(
        version=3, group_id=A, member_id="", group_instance_id=None, client_id="late",
        client_host="h", session_timeout_ms=10_000, rebalance_timeout_ms=30_000,
        protocol_type="consumer", protocols=[("range", b"x")]))
    await asyncio.sleep(0)
    assert gc.groups[A].state == "PreparingRebalance" and len(gc.groups[A].members) == 3
    await rig.commit(A, 6)
    assert await rig.snapshots.flush()
    again = Rig(store)
    await again.snapshots.load()
    g = again.coordinator.groups[A]
    assert (g.state, g.generation, set(g.members)) == ("Stable", 1, set(ids))
    assert again.offsets(A) == {("t", 0): 6}
    joiner.cancel()


async def test_a_snapshot_with_old_group_meta_loads_empty_groups(store):
    """A shard object written before members were stored (GROUP_META with the
    generation, protocol type and state timestamp only)."""
    import struct
    old = b"\x03" + struct.pack(">i", 4) + struct.pack(">H", 8) + b"consumer" + struct.pack(">q", 777)
    src = Rig(store)
    await src.commit(A, 3)
    commit = [d for _, d in src.entries]
    await store.put(shard_key(A_SHARD), encode_group_snapshot(
        [(A.encode(), old)] + [(A.encode(), d) for d in commit], partition=A_SHARD, partitions=50, epoch=1))
    rig = Rig(store)
    await rig.snapshots.load()
    g = rig.coordinator.groups[A]
    assert (g.state, g.generation, g.protocol_type, g.state_timestamp, g.members) == \
        ("Empty", 4, "consumer", 777, {})
    assert rig.offsets(A) == {("t", 0): 3}


# -- with the ReplicaManager's WAL and the uploader, wired as the Broker does ------------
async def open_broker(tmp_path, store, data="data", **overrides):
    from broker.cluster import Cluster
    from broker.log.replica_manager import ReplicaManager
    from broker.metrics import BrokerMetrics
    from broker.tiering.upload import UploadTask
    config = BrokerConfig.load(overrides=[f"{k}={v}" for k, v in overrides.items()])
    cluster = Cluster(config, store, host="127.0.0.1", port=9092, clock=ManualClock())
    rm = ReplicaManager(config, str(tmp_path / data), store, metadata=cluster.metadata)
    await cluster.start(rm.apply_delta)
    rm.cluster = cluster   # test-only: create_topic in test_partition uses it
    wal = WalGroupLog(rm.append_group_entry)
    gc = GroupCoordinator(config, wal, ManualClock())
    snaps = GroupSnapshots(store, gc, partitions=config["offsets.topic.num.partitions"],
                           epoch_of=lambda shard: 1)
    wal.on_append = snaps.note
    await snaps.load()
    await rm.start(snaps)
    gc.finish_loading()
    return rm, gc, UploadTask(rm, snaps, BrokerMetrics())


async def test_the_wal_is_trimmed_only_after_the_shards_are_stored(tmp_path, store):
    rm, gc, up = await open_broker(tmp_path, store)
    try:
        await gc.commit_offsets(A, [("t", 0, OffsetAndMetadata(7, -1, "m", 1000))])
        await asyncio.sleep(0)
        store.fail = 1  # the shard's PUT fails: the WAL must keep the commit
        assert not await up.upload_once(force=True)
        assert rm.wal.size_bytes > 0 and not await store.exists(shard_key(A_SHARD))
        assert await up.upload_once(force=True)
        assert rm.wal.size_bytes == 0 and await store.exists(shard_key(A_SHARD))
    finally:
        await up.stop(5)
        await rm.close()
    # nothing local: the bucket alone has the commit
    rm, gc, up = await open_broker(tmp_path, Store(str(tmp_path / "objects")), data="data2")
    try:
        om = gc.groups[A].offsets[("t", 0)]
        assert (om.offset, om.metadata) == (7, "m")
    finally:
        await up.stop(5)
        await rm.close()


async def test_a_wal_replayed_commit_is_stored_before_the_wal_is_trimmed(tmp_path, store):
    rm, gc, up = await open_broker(tmp_path, store)
    await gc.commit_offsets(AB, [("t", 0, OffsetAndMetadata(3, -1, None, 1000))])
    await rm.wal.close()  # a crash: the commit is in the WAL only
    rm, gc, up = await open_broker(tmp_path, store)
    try:
        assert gc.groups[AB].offsets[("t", 0)].offset == 3
        assert not await store.exists(shard_key(AB_SHARD))
        assert await up.upload_once(force=True)
        assert rm.wal.size_bytes == 0 and await store.exists(shard_key(AB_SHARD))
    finally:
        await up.stop(5)
        await rm.close()


async def test_no_group_snapshot_puts_while_manifests_are_deferred(tmp_path, store):
    from test_partition import append, batch, create_topic  # same directory (rootdir-inserted)
    rm, gc, up = await open_broker(tmp_path, store, **{"s3.manifest.interval.ms": 3_600_000})
    try:
        await create_topic(rm, "t", 1)
        await append(rm.get("t", 0), batch(2)).durable
        assert await up.upload_once()  # the first upload records its manifests at once
        await append(rm.get("t", 0), batch(2)).durable
        await gc.commit_offsets(A, [("t", 0, OffsetAndMetadata(2, -1, None, 1000))])
        await asyncio.sleep(0)
        store.puts.clear()
        assert not await up.upload_once()  # data uploaded, manifests deferred: the WAL stays
        assert not any(p[0].startswith("groups/") for p in store.puts)
        assert await up.upload_once(force=True)
        assert await store.exists(shard_key(A_SHARD)) and rm.wal.size_bytes == 0
    finally:
        await up.stop(5)
        await rm.close()
