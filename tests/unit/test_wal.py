"""wal.log.WriteAheadLog: append/sync/read, group commit, recovery, torn tails, segments."""
from __future__ import annotations

import asyncio
import os
import threading

import pytest

from wal.log import FRAME, HEADER, SUFFIX, WalError, WriteAheadLog, seal_crc, segment_seed


def _segment_files(directory) -> list[str]:
    """Segment files holding entries (not the next one, prepared ahead: a header only)."""
    return sorted(n for n in os.listdir(directory)
                  if n.endswith(SUFFIX) and os.path.getsize(os.path.join(directory, n)) > HEADER.size)


async def _recovered(directory, **kw) -> list[tuple[int, bytes, bytes]]:
    """Open the WAL fresh and return its recovered entries as plain tuples."""
    wal = WriteAheadLog(str(directory), **kw)
    out = [(e.kind, e.key, bytes(e.data)) for e in wal.recover()]
    await wal.close()
    return out


async def test_append_sync_read_back(tmp_path):
    wal = WriteAheadLog(str(tmp_path / "wal"))
    list(wal.recover())
    entries = [(1, b"k%d" % i, os.urandom(10 + i)) for i in range(20)]
    locs = []
    futs = []
    for kind, key, data in entries:
        loc, fut = wal.append(kind, key, data)
        locs.append(loc)
        futs.append(fut)
    await wal.sync()
    assert all(f.done() and f.exception() is None for f in futs)
    for (kind, key, data), loc in zip(entries, locs):
        assert loc[2] == len(data)
        assert wal.read(loc) == data
    assert wal.pending_bytes == 0
    await wal.close()


async def test_append_future_resolves_only_after_fsync(tmp_path):
    wal = WriteAheadLog(str(tmp_path / "wal"))
    list(wal.recover())
    _, fut = wal.append(1, b"k", b"hello")
    assert not fut.done()  # queued, not yet written
    assert wal.pending_bytes > 0
    await fut
    assert fut.result() is None
    await wal.close()


async def test_group_commit_many_appends_one_fsync(tmp_path):
    fsyncs: list[tuple[float, int]] = []
    wal = WriteAheadLog(str(tmp_path / "wal"), on_fsync=lambda s, n: fsyncs.append((s, n)))
    list(wal.recover())
    n = 200
    futs = [wal.append(1, b"key", b"v%05d" % i)[1] for i in range(n)]
    # All appends made in one event-loop step share one future (and one write).
    assert len({id(f) for f in futs}) == 1
    await wal.sync()
    assert all(f.done() and f.exception() is None for f in futs)
    assert 1 <= len(fsyncs) < n
    expected_bytes = sum(FRAME.size + 3 + 3 + 6 for _ in range(n))
    assert sum(nbytes for _, nbytes in fsyncs) == expected_bytes
    await wal.close()


async def test_group_commit_appends_during_fsync_share_the_next_one(tmp_path):
    fsyncs: list[int] = []
    wal = WriteAheadLog(str(tmp_path / "wal"), on_fsync=lambda s, n: fsyncs.append(n))
    list(wal.recover())
    futs = []

    async def producer(i: int) -> None:
        for j in range(50):
            _, fut = wal.append(1, b"p%d" % i, b"x" * 100)
            futs.append(fut)
            if j % 10 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(producer(i) for i in range(10)))
    await wal.sync()
    await asyncio.gather(*futs)
    assert len(futs) == 500
    assert 1 <= len(fsyncs) < len(futs)
    await wal.close()
    assert len(await _recovered(tmp_path / "wal")) == 500


async def test_recovery_after_reopen_returns_entries_in_order(tmp_path):
    d = tmp_path / "wal"
    wal = WriteAheadLog(str(d))
    list(wal.recover())
    entries = [(i % 3 + 1, b"key-%d" % (i % 7), b"data-%d" % i * (i % 5 + 1)) for i in range(100)]
    for kind, key, data in entries:
        wal.append(kind, key, data)
    await wal.close()  # close syncs what is queued

    wal2 = WriteAheadLog(str(d))
    got = list(wal2.recover())
    assert [(e.kind, e.key, bytes(e.data)) for e in got] == entries
    # Locations from recovery read the same bytes back.
    for e, (_, _, data) in zip(got, entries):
        assert wal2.read(e.location) == data
    await wal2.close()


async def _write(directory, entries, **kw) -> None:
    wal = WriteAheadLog(str(directory), **kw)
    list(wal.recover())
    for kind, key, data in entries:
        wal.append(kind, key, data)
    await wal.close()


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 20, -1])
async def test_torn_tail_truncated_mid_entry(tmp_path, cut):
    d = tmp_path / "wal"
    entries = [(1, b"k", b"entry-%03d" % i + b"." * 30) for i in range(10)]
    await _write(d, entries)
    [seg] = _segment_files(d)
    path = d / seg
    full = path.stat().st_size - HEADER.size
    entry_size = full // 10
    assert entry_size * 10 == full
    # Keep 9 whole entries plus ``cut`` bytes of the 10th (-1: all but its last byte).
    keep = HEADER.size + 9 * entry_size + (cut if cut >= 0 else entry_size - 1)
    os.truncate(path, keep)

    wal = WriteAheadLog(str(d))
    got = [(e.kind, e.key, bytes(e.data)) for e in wal.recover()]
    assert got == entries[:9]
    assert path.stat().st_size == HEADER.size + 9 * entry_size  # the torn bytes are cut off

    # New appends after recovery land right after the intact prefix and are readable.
    new = [(2, b"n", b"after-%d" % i) for i in range(3)]
    locs = [wal.append(*e)[0] for e in new]
    await wal.sync()
    for loc, (_, _, data) in zip(locs, new):
        assert wal.read(loc) == data
    await wal.close()
    assert await _recovered(d) == entries[:9] + new


async def test_torn_tail_corrupted_last_entry(tmp_path):
    d = tmp_path / "wal"
    entries = [(1, b"key", b"payload-%d" % i) for i in range(5)]
    await _write(d, entries)
    [seg] = _segment_files(d)
    path = d / seg
    size = path.stat().st_size
    with open(path, "r+b") as f:  # flip one byte in the last entry's data
        f.seek(size - 2)
        b = f.read(1)
        f.seek(size - 2)
        f.write(bytes([b[0] ^ 0xFF]))
    entry_size = (size - HEADER.size) // 5

    wal = WriteAheadLog(str(d))
    got = [(e.kind, e.key, bytes(e.data)) for e in wal.recover()]
    assert got == entries[:4]
    assert path.stat().st_size == HEADER.size + 4 * entry_size
    _, fut = wal.append(3, b"z", b"new")
    await fut
    await wal.close()
    assert await _recovered(d) == entries[:4] + [(3, b"z", b"new")]


async def test_garbage_length_in_tail_is_cut(tmp_path):
    d = tmp_path / "wal"
    entries = [(1, b"k", b"v%d" % i) for i in range(3)]
    await _write(d, entries)
    [seg] = _segment_files(d)
    path = d / seg
    size = path.stat().st_size
    with open(path, "ab") as f:  # a frame header that claims a huge body
        f.write(FRAME.pack(0x7FFFFFFF, 0) + b"junk")
    wal = WriteAheadLog(str(d))
    assert [(e.kind, e.key, bytes(e.data)) for e in wal.recover()] == entries
    assert path.stat().st_size == size
    await wal.close()


async def test_segment_roll_and_recovery_across_segments(tmp_path):
    d = tmp_path / "wal"
    wal = WriteAheadLog(str(d), segment_bytes=256)
    list(wal.recover())
    entries = [(1, b"k%d" % (i % 4), b"%03d" % i + b"#" * 40) for i in range(40)]
    locs = [wal.append(*e)[0] for e in entries]
    await wal.sync()
    segs = _segment_files(d)
    assert len(segs) > 5
    assert len({loc[0] for loc in locs}) == len(segs)
    for name in segs:
        assert os.path.getsize(d / name) <= 256
    for loc, (_, _, data) in zip(locs, entries):
        assert wal.read(loc) == data
    await wal.close()
    assert await _recovered(d, segment_bytes=256) == entries


async def test_entry_larger_than_segment_gets_its_own_segment(tmp_path):
    d = tmp_path / "wal"
    wal = WriteAheadLog(str(d), segment_bytes=64)
    list(wal.recover())
    big = b"B" * 500
    l1, _ = wal.append(1, b"k", b"small")
    l2, _ = wal.append(1, b"k", big)
    l3, _ = wal.append(1, b"k", b"small2")
    await wal.sync()
    assert l1[0] < l2[0] < l3[0]   # (segment, position, length)
    assert wal.read(l2) == big
    await wal.close()
    assert [d_ for _, _, d_ in await _recovered(d, segment_bytes=64)] == [b"small", big, b"small2"]


async def test_torn_entry_in_earlier_segment_drops_later_segments(tmp_path):
    d = tmp_path / "wal"
    entries = [(1, b"k", b"%02d" % i + b"-" * 50) for i in range(12)]
    await _write(d, entries, segment_bytes=200)
    segs = _segment_files(d)
    assert len(segs) >= 3
    first = d / segs[0]
    per_seg = len(_recovered_segment(first))
    # Cut its seal and the last 3 bytes of its last entry.
    os.truncate(first, first.stat().st_size - FRAME.size - 3)

    wal = WriteAheadLog(str(d), segment_bytes=200)
    got = [(e.kind, e.key, bytes(e.data)) for e in wal.recover()]
    assert got == entries[:per_seg - 1]
    assert _segment_files(d) == segs[:1]  # later segments are gone with the torn tail
    assert wal.size_bytes == first.stat().st_size - HEADER.size
    loc, fut = wal.append(9, b"n", b"next")
    await fut
    assert wal.size_bytes == first.stat().st_size - HEADER.size
    assert wal.read(loc) == b"next"
    await wal.close()
    assert _segment_files(d) == segs[:1]
    assert await _recovered(d, segment_bytes=200) == entries[:per_seg - 1] + [(9, b"n", b"next")]


def _recovered_segment(path) -> list:
    """The entries of one segment file, which must be whole and sealed."""
    data = memoryview(path.read_bytes())
    seg_id = int(path.name[:-len(SUFFIX)])
    seed = segment_seed(seg_id)
    assert HEADER.unpack_from(data, 0)[1] == seg_id
    out, pos = [], HEADER.size
    while FRAME.unpack_from(data, pos) != (0, seal_crc(seed)):
        got = WriteAheadLog._entry_at(data, pos, seg_id, seed)
        assert got is not None
        out.append(got[0])
        pos = got[1]
    assert pos + FRAME.size == len(data)
    return out


async def test_zero_length_data_and_key(tmp_path):
    d = tmp_path / "wal"
    wal = WriteAheadLog(str(d))
    list(wal.recover())
    l0, f0 = wal.append(7, b"", b"")
    l1, f1 = wal.append(1, b"key", b"")
    l2, f2 = wal.append(2, b"key", b"after")
    await asyncio.gather(f0, f1, f2)
    assert l0[2] == 0 and l1[2] == 0
    assert wal.read(l0) == b"" and wal.read(l1) == b""
    assert wal.read(l2) == b"after"
    await wal.close()
    assert await _recovered(d) == [(7, b"", b""), (1, b"key", b""), (2, b"key", b"after")]


async def test_empty_wal_recovers_nothing_and_accepts_appends(tmp_path):
    d = tmp_path / "wal"
    wal = WriteAheadLog(str(d))
    assert list(wal.recover()) == []
    assert wal.size_bytes == 0
    await wal.sync()  # nothing pending: returns at once
    await wal.close()
    assert await _recovered(d) == []


async def test_write_failure_fails_futures_and_refuses_appends(tmp_path, monkeypatch):
    wal = WriteAheadLog(str(tmp_path / "wal"))
    list(wal.recover())

    def boom(batch):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wal, "_write_and_sync", boom)
    _, fut = wal.append(1, b"k", b"v")
    with pytest.raises(WalError):
        await fut
    with pytest.raises(WalError):
        wal.append(1, b"k", b"v2")
    await wal.close()


async def test_sync_raises_when_the_inflight_flush_fails(tmp_path, monkeypatch):
    """sync() promises durability; a failed write/fsync must not look like success."""
    wal = WriteAheadLog(str(tmp_path / "wal"))
    list(wal.recover())
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    release = threading.Event()

    def slow_boom(batch):
        loop.call_soon_threadsafe(started.set)
        release.wait(10)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(wal, "_write_and_sync", slow_boom)
    _, fut = wal.append(1, b"k", b"v")
    await asyncio.wait_for(started.wait(), 10)  # the batch is now in flight; nothing else pending
    syncer = asyncio.ensure_future(wal.sync())
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(WalError):
        await asyncio.wait_for(syncer, 10)
    with pytest.raises(WalError):
        await fut
    with pytest.raises(WalError):  # and later syncs keep saying so
        await wal.sync()
    await wal.close()


async def test_cancelling_one_waiter_does_not_cancel_the_group_commit(tmp_path):
    """Appends in one group commit share a future; a waiter that goes away (a client
    disconnecting cancels its produce task, whose gather() cancels what it awaits)
    must not cancel durability for everyone else, nor break the flusher."""
    wal = WriteAheadLog(str(tmp_path / "wal"))
    list(wal.recover())
    _, f1 = wal.append(1, b"a", b"one")
    _, f2 = wal.append(1, b"b", b"two")

    async def waiter(fut):
        await asyncio.gather(fut, return_exceptions=True)
        return fut.exception()

    doomed = asyncio.ensure_future(waiter(f1))
    survivor = asyncio.ensure_future(waiter(f2))
    await asyncio.sleep(0)  # both are now waiting on the shared future
    doomed.cancel()
    assert await asyncio.wait_for(survivor, 10) is None  # success, not CancelledError
    with pytest.raises(asyncio.CancelledError):
        await doomed  # the cancelled waiter itself still ends cancelled
    assert not f1.cancelled() and f1.exception() is None
    # The flusher survived: later appends still become durable, and close() is clean.
    _, f3 = wal.append(1, b"c", b"three")
    await asyncio.wait_for(f3, 10)
    await wal.close()
    assert await _recovered(tmp_path / "wal") == [(1, b"a", b"one"), (1, b"b", b"two"),
                                                  (1, b"c", b"three")]


async def test_wait_for_timeout_on_append_future_leaves_it_intact(tmp_path):
    wal = WriteAheadLog(str(tmp_path / "wal"))
    list(wal.recover())
    _, fut = wal.append(1, b"k", b"v")
    _, other = wal.append(1, b"k", b"w")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(fut), 0)  # shield: the usual way is unaffected
    assert not fut.cancelled()
    await wal.sync()
    assert fut.result() is None and other.result() is None
    await wal.close()


async def test_cut_and_trim_keep_the_event_loop_free_of_fsyncs_and_unlinks(tmp_path, monkeypatch):
    """The next segment is prepared ahead, its name made durable by the
    preparer thread (never by a directory fsync in the event loop or in an
    ack's path); trim takes whole segments out of the log at once and, with
    no room for spares, frees them in a background thread, oldest first, a
    few MiB at a time (wal/reclaim.py)."""
    import wal.log as wl
    import wal.reclaim as reclaim
    loop_thread = threading.get_ident()
    where: list = []
    real_fsync_dir, real_reclaim_file = wl._fsync_dir, reclaim.reclaim_file
    monkeypatch.setattr(wl, "_fsync_dir", lambda p: (where.append(
        ("loop" if threading.get_ident() == loop_thread else threading.current_thread().name[:11])),
        real_fsync_dir(p)))
    monkeypatch.setattr(reclaim, "reclaim_file", lambda path, *a: (where.append(
        ("reclaim-loop" if threading.get_ident() == loop_thread else "reclaim-thread",
         os.path.basename(path))), real_reclaim_file(path, *a))[1])
    directory = tmp_path / "wal"
    wal = WriteAheadLog(str(directory), max_spares=0)
    list(wal.recover())     # creates the first segment (at start-up, in the loop)
    where.clear()
    await wal.append(1, b"k", b"first")[1]
    for i in range(3):
        cut = wal.cut()
        _, fut = wal.append(1, b"k", b"entry-%d" % i)
        await fut
    assert "loop" not in where and "wal-flush" not in where
    assert where.count("wal-prepare") >= 3
    where.clear()
    assert len(_segment_files(directory)) == 4
    freed = wal.trim(cut)
    assert freed > 0
    assert _segment_files(directory) == [f"{3:020d}{SUFFIX}"]   # 0-2 out of the log at once
    assert wal.size_bytes == os.path.getsize(directory / f"{3:020d}{SUFFIX}") - HEADER.size
    await wal.close()                    # waits for the reclaim thread
    assert [w for w in where if isinstance(w, tuple)] == [
        ("reclaim-thread", f"{i:020d}{SUFFIX}.trash") for i in range(3)]
    assert sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX)) == [f"{3:020d}{SUFFIX}"]
    assert [bytes(e.data) for e in WriteAheadLog(str(directory)).recover()] == [b"entry-2"]


async def test_trimmed_segments_are_recycled_and_their_old_entries_never_replay(tmp_path):
    """A trimmed segment becomes a spare; the next segments are the same files
    overwritten (no new blocks, so no journal commit per fdatasync). The old
    entries left behind in them never verify: checksums are seeded per segment."""
    d = tmp_path / "wal"
    wal = WriteAheadLog(str(d), max_spares=2)
    list(wal.recover())
    old = [wal.append(1, b"old", os.urandom(100))[1] for _ in range(50)]
    await asyncio.gather(*old)
    cut = wal.cut()
    for i in range(3):                  # more segments, each with one entry
        await wal.append(1, b"mid", b"m%d" % i)[1]
        cut = wal.cut()
    inodes = {os.stat(d / f).st_ino for f in _segment_files(d)}
    await wal.sync()                    # as the upload task: the cut's seal is durable first
    wal.trim(cut)                       # 4 segments out: 2 kept as spares, 2 freed
    spares = sorted(n for n in os.listdir(d) if n.endswith(".spare"))
    assert len(spares) == 2
    spare_inodes = {os.stat(d / n).st_ino for n in spares}
    assert spare_inodes <= inodes
    new = []
    for i in range(3):                  # the segments after the prepared one reuse the spares
        new.append((2, b"new", b"n%d" % i))
        await wal.append(*new[-1])[1]
        wal.cut()
    used = {os.stat(d / f).st_ino for f in _segment_files(d)}
    assert spare_inodes & used, "a spare was recycled"
    # A crash now (no clean close, the active segment unsealed): recovery from a
    # copy of the directory sees only the new entries, never the stale ones.
    import shutil
    shutil.copytree(d, tmp_path / "copy")
    assert await _recovered(tmp_path / "copy") == new
    await wal.close()
    assert await _recovered(d) == new


async def test_a_recycled_file_whose_new_header_never_landed_is_empty(tmp_path):
    d = tmp_path / "wal"
    await _write(d, [(1, b"k", b"v%d" % i) for i in range(5)])
    [seg] = _segment_files(d)
    # The same bytes under a later segment's name: its header names segment 0.
    (d / seg).rename(d / f"{7:020d}{SUFFIX}")
    wal = WriteAheadLog(str(d))
    assert list(wal.recover()) == []
    _, fut = wal.append(1, b"k", b"after")
    await fut
    await wal.close()
    assert await _recovered(d) == [(1, b"k", b"after")]


async def test_segments_from_before_headers_still_recover(tmp_path):
    """A WAL written before segment headers (entries from byte 0, unseeded
    checksums) replays as before; new entries go to a new segment after it."""
    import crc32c

    from wal.log import BODY_HEAD
    d = tmp_path / "wal"
    d.mkdir()
    old = [(1, b"key", b"old-%d" % i) for i in range(4)]
    with open(d / f"{0:020d}{SUFFIX}", "wb") as f:
        for kind, key, data in old:
            body = BODY_HEAD.pack(kind, len(key)) + key + data
            f.write(FRAME.pack(len(body), crc32c.crc32c(body)) + body)
    wal = WriteAheadLog(str(d))
    assert [(e.kind, e.key, bytes(e.data)) for e in wal.recover()] == old
    loc, fut = wal.append(2, b"k", b"new")
    await fut
    assert loc[0] == 1
    await wal.close()
    assert await _recovered(d) == old + [(2, b"k", b"new")]


def _files(directory) -> dict[str, bytes]:
    return {n: (directory / n).read_bytes() for n in sorted(os.listdir(directory))}


def _entries(it) -> list[tuple]:
    return [(e.kind, e.key, bytes(e.data), e.location) for e in it]


@pytest.mark.parametrize("tear", ["last segment", "earlier segment"])
async def test_read_entries_changes_nothing_and_yields_what_recovery_would(tmp_path, tear):
    """read_entries (a survivor reading a dead broker's WAL) verifies entries
    exactly as recovery does, torn tail included, without truncating,
    deleting, recycling or creating a single file."""
    import shutil

    from wal import read_entries
    d = tmp_path / "wal"
    wal = WriteAheadLog(str(d), segment_bytes=300, max_spares=2)
    list(wal.recover())
    for i in range(6):
        await wal.append(1, b"old", b"%d" % i + b"o" * 60)[1]
    cut = wal.cut()
    entries = [(1 + i % 3, b"k%d" % (i % 4), b"%03d" % i + b"#" * 50) for i in range(25)]
    for e in entries:
        wal.append(*e)
    await wal.sync()
    wal.trim(cut)                                   # trimmed: spares with stale bytes stay around
    # a crash: no clean close (the active segment unsealed, the next one prepared ahead)
    segs = _segment_files(d)
    assert len(segs) >= 4 and any(n.endswith(".spare") for n in os.listdir(d))
    victim = d / (segs[-1] if tear == "last segment" else segs[1])
    if tear == "last segment":                      # half an entry at the end
        with open(victim, "ab") as f:
            f.write(FRAME.pack(40, 12345) + b"torn")
    else:                                           # a flipped byte in an entry: the log ends there
        data = bytearray(victim.read_bytes())
        data[HEADER.size + 20] ^= 0xFF
        victim.write_bytes(bytes(data))
    before = _files(d)
    shutil.copytree(d, tmp_path / "copy")

    got = _entries(read_entries(str(d)))
    assert _files(d) == before                      # byte-identical, nothing added or removed
    assert _entries(read_entries(str(d))) == got    # and it reads the same again

    survivor = WriteAheadLog(str(tmp_path / "copy"), segment_bytes=300)
    assert _entries(survivor.recover()) == got      # what recovery yields (and then cuts)
    await survivor.close()
    assert [(k, key, data) for k, key, data, _ in got] == \
        (entries if tear == "last segment" else entries[:len(got)])
    assert tear == "last segment" or len(got) < len(entries)
    await wal.close()
