"""Offset expiry rules (Kafka's GroupMetadata.removeExpiredOffsets) on a coordinator
with an in-memory WAL stand-in; replaying its entries gives the same state."""
import asyncio

from broker.clock import ManualClock
from broker.coordinator.group import EMPTY, STABLE, GroupCoordinator, OffsetAndMetadata, _parse_subscription

RET = 60_000
CONFIG = {"offsets.retention.ms": RET, "offsets.retention.minutes": 10080,
          "offsets.retention.check.interval.ms": 600000}


class FakeLog:
    """A GroupLog kept in memory: every entry is durable at once."""

    def __init__(self):
        self.entries = []

    def append(self, group_id, data):
        self.entries.append((group_id.encode(), data))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def sub(*topics):
    import struct
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def test_expiry_rules_and_replay():
    async def main():
        wal = FakeLog()
        gc = GroupCoordinator(CONFIG, wal, ManualClock())
        om = lambda off, ts: OffsetAndMetadata(off, -1, None, ts)  # noqa: E731
        await gc.commit_offsets("simple", [("t", 0, om(1, 1000)), ("t", 1, om(2, 50_000))])
        await gc.commit_offsets("empty", [("t", 0, om(3, 0))])
        await gc.commit_offsets("stable", [("t", 0, om(4, 0)), ("gone", 0, om(5, 0))])
        await asyncio.sleep(0)  # the apply callbacks
        gc.groups["empty"].protocol_type = "consumer"
        gc.groups["empty"].state_timestamp = 30_000  # became Empty at 30 s
        st = gc.groups["stable"]
        st.protocol_type, st.protocol_name, st.state = "consumer", "range", STABLE
        from broker.coordinator.group import Member
        st.members["m"] = Member("m", None, "c", "h", 6000, 6000, "consumer", [("range", sub("t"))])
        assert _parse_subscription(sub("t")) == {"t"}

        assert gc.expire_offsets(now_ms=61_000) == 2  # simple t-0 and stable gone-0; not empty's
        await asyncio.sleep(0)
        assert set(gc.groups["simple"].offsets) == {("t", 1)}
        assert set(gc.groups["stable"].offsets) == {("t", 0)}  # subscribed: kept
        assert set(gc.groups["empty"].offsets) == {("t", 0)}  # empty only since 30 s
        gc.expire_offsets(now_ms=111_000)
        await asyncio.sleep(0)
        # both gone, and with no offsets left the Empty groups are removed
        assert "empty" not in gc.groups and "simple" not in gc.groups
        assert set(gc.groups["stable"].offsets) == {("t", 0)}
        # replaying the entries gives the same groups and offsets
        again = GroupCoordinator(CONFIG, FakeLog(), ManualClock())
        for key, data in wal.entries:
            again.replay(key, data)
        assert set(again.groups) == {"stable"}
        assert set(again.groups["stable"].offsets) == {("t", 0)}
        assert again.groups["stable"].state == EMPTY  # its members were never stored (no SyncGroup)
    asyncio.run(main())
