"""One contract for every ObjectStore backend: the local filesystem, S3 against a
real MinIO server (fixtures in tests/minio_server.py), and the in-memory store
the in-process cluster rig shares between its brokers. Nothing is mocked.

The S3 store lists with a page size of 7, so listing a few dozen keys crosses
several pages (ListObjectsV2 continuation tokens) without writing 1000+ keys.
"""
from __future__ import annotations

import asyncio
import random

import pytest
from minio_server import open_test_store

from objectstore import (
    FilesystemObjectStore,
    InvalidKey,
    MemoryObjectStore,
    NotFound,
    ObjectInfo,
    ObjectStoreError,
    PreconditionFailed,
    open_object_store,
)
from objectstore.s3 import S3ObjectStore

PAGE_SIZE = 7


@pytest.fixture(params=["filesystem", "memory", pytest.param("s3", marks=pytest.mark.minio)])
async def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryObjectStore()
    else:
        s = open_test_store(request, tmp_path, page_size=PAGE_SIZE)
    yield s
    await s.close()


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# -- basic reads and writes ----------------------------------------------------


async def test_put_get_head(store):
    data = payload(300_000, seed=1)
    etag = await store.put("topics/t/obj-1", data)
    assert isinstance(etag, str) and etag
    assert await store.get("topics/t/obj-1") == data
    assert await store.get_with_etag("topics/t/obj-1") == (data, etag)
    info = await store.head("topics/t/obj-1")
    assert (info.key, info.size, info.etag) == ("topics/t/obj-1", len(data), etag)
    assert await store.exists("topics/t/obj-1")
    assert not await store.exists("topics/t/obj-2")
    assert not await store.exists("topics/t")          # a prefix is not an object


async def test_put_of_parts_stores_them_back_to_back(store):
    """A body given as buffers (a data object's parts) is stored as their
    concatenation, with the etag the joined bytes would get; many small parts
    and parts larger than one write step both work."""
    data = payload(3_000_000, seed=5)
    view = memoryview(data)
    cuts = sorted(random.Random(6).sample(range(1, len(data)), 3000))
    parts = [view[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    parts.insert(7, b"")                                  # empty parts are skipped
    etag = await store.put("parts/many", parts)
    assert await store.get_with_etag("parts/many") == (data, etag)
    assert await store.put("parts/joined", data) == etag
    big = [bytearray(data[:2_500_000]), data[2_500_000:]]  # larger than a write step
    assert await store.put("parts/big", big) == etag
    assert await store.get("parts/big") == data
    assert await store.put("parts/none", []) and await store.get("parts/none") == b""


async def test_overwrite_changes_etag(store):
    e1 = await store.put("k", b"one")
    e2 = await store.put("k", b"two")
    assert e1 != e2
    assert await store.get_with_etag("k") == (b"two", e2)
    # identical content -> identical etag (content MD5 on both backends)
    assert await store.put("k2", b"one") == e1


async def test_empty_object(store):
    etag = await store.put("empty", b"")
    assert await store.get_with_etag("empty") == (b"", etag)
    assert (await store.head("empty")).size == 0
    assert await store.get_range("empty", 0, 10) == b""
    assert await store.get_range("empty", 0) == b""


async def test_accepts_bytearray_and_memoryview(store):
    await store.put("ba", bytearray(b"abc"))
    await store.put("mv", memoryview(b"xxdefxx")[2:5])
    assert await store.get("ba") == b"abc"
    assert await store.get("mv") == b"def"


async def test_get_range(store):
    data = payload(10_000, seed=2)
    await store.put("r", data)
    assert await store.get_range("r", 0, 5) == data[0:5]
    assert await store.get_range("r", 1234, 5678) == data[1234:5678]
    assert await store.get_range("r", 9_999, 10_000) == data[9_999:]
    assert await store.get_range("r", 4000) == data[4000:]
    assert await store.get_range("r", 9_000, 20_000) == data[9_000:]   # cut at the end
    assert await store.get_range("r", 10_000, 10_005) == b""           # at the end
    assert await store.get_range("r", 50_000, 60_000) == b""           # past the end
    assert await store.get_range("r", 10, 10) == b""                   # empty range
    with pytest.raises(ValueError):
        await store.get_range("r", 5, 4)
    with pytest.raises(ValueError):
        await store.get_range("r", -1, 4)


async def test_get_range_parts(store):
    """The same bytes as get_range, in separate buffers of part_size (the block
    cache keeps each block as it arrives)."""
    data = payload(10_000, seed=3)
    await store.put("rp", data)
    for start, end, size in ((0, 10_000, 4096), (1, 9_999, 1000), (0, None, 10_000), (0, 10_000, 20_000),
                             (4000, None, 4096), (9_000, 20_000, 512), (5, 6, 1)):
        parts = await store.get_range_parts("rp", start, end, size)
        want = data[start:end]
        assert b"".join(bytes(p) for p in parts) == want
        assert all(len(p) == size for p in parts[:-1]) and 0 < len(parts[-1]) <= size
        assert len({id(p) for p in parts}) == len(parts)
    assert await store.get_range_parts("rp", 10_000, 10_005, 100) == []       # at the end
    assert await store.get_range_parts("rp", 50_000, None, 100) == []         # past the end
    assert await store.get_range_parts("rp", 7, 7, 100) == []                 # empty range
    with pytest.raises(NotFound):
        await store.get_range_parts("nope", 0, 10, 4)
    with pytest.raises(ValueError):
        await store.get_range_parts("rp", 5, 4, 4)


# -- missing keys ----------------------------------------------------------------


async def test_not_found(store):
    for op in (store.get("nope"), store.get_with_etag("nope"), store.head("nope"),
               store.get_range("nope", 0, 10), store.get_range("nope", 0),
               store.get_range("nope", 3, 3)):
        with pytest.raises(NotFound) as ei:
            await op
        assert isinstance(ei.value, ObjectStoreError)
        assert ei.value.key == "nope"


async def test_delete(store):
    await store.put("d/1", b"x")
    await store.put("d/2", b"y")
    await store.delete("d/1")
    with pytest.raises(NotFound):
        await store.get("d/1")
    assert await store.list("d/") == ["d/2"]
    await store.delete("d/1")               # deleting a missing key is no error
    await store.delete("never-was")
    await store.delete("d/2")
    assert await store.list() == []
    await store.put("d", b"now a key")      # the emptied prefix can become a key
    assert await store.get("d") == b"now a key"


# -- listing ---------------------------------------------------------------------


async def test_list_prefix_and_pagination(store):
    a_keys = [f"a/{i:03d}" for i in range(30)]          # > 4 pages of 7
    others = ["ab", "ac/c", "b/1", "b/2/3", "z"]
    await asyncio.gather(*(store.put(k, k.encode()) for k in a_keys + others))
    assert await store.list("a/") == a_keys
    assert await store.list("a") == a_keys + ["ab", "ac/c"]
    assert await store.list("a/00") == a_keys[:10]
    assert await store.list("a/029") == ["a/029"]
    assert await store.list("b/") == ["b/1", "b/2/3"]
    assert await store.list("b/2") == ["b/2/3"]
    assert await store.list() == sorted(a_keys + others)
    assert await store.list("") == sorted(a_keys + others)
    assert await store.list("nothing/") == []
    assert await store.list("a/0300") == []


async def test_list_sorts_as_s3(store):
    keys = ["x/B", "x/a", "x/a-b", "x/a/b", "x/a0", "x/é", "x/Z"]
    keys.remove("x/a/b")                    # 'x/a' and 'x/a/b' cannot both exist on a filesystem
    await asyncio.gather(*(store.put(k, b"") for k in keys))
    assert await store.list("x/") == sorted(keys, key=lambda k: k.encode())


async def test_list_info(store):
    """Sizes and etags from the listing: each etag is the one put and head
    give, and changes when the object is rewritten with other content (how
    brokers see each other's heartbeats)."""
    keys = [f"cluster/brokers/{i}.json" for i in range(10)]       # > 1 page of 7
    etags = {k: await store.put(k, payload(i * 37, seed=i)) for i, k in enumerate(keys)}
    await store.put("cluster/brokersX", b"beside the prefix")
    await store.put("cluster/metadata.json", b"{}")
    infos = await store.list_info("cluster/brokers/")
    assert infos == [ObjectInfo(k, i * 37, etags[k]) for i, k in enumerate(keys)]
    assert [i.key for i in infos] == await store.list("cluster/brokers/")
    assert infos == [await store.head(k) for k in keys]

    new = await store.put(keys[3], b"heartbeat 2")
    assert new != etags[keys[3]]
    after = await store.list_info("cluster/brokers/")
    assert after == [ObjectInfo(k, 11, new) if k == keys[3] else i for k, i in zip(keys, infos)]

    await store.delete(keys[0])
    everything = keys[1:] + ["cluster/brokersX", "cluster/metadata.json"]
    assert [i.key for i in await store.list_info("cluster/brokers")] == everything[:-1]
    assert [i.key for i in await store.list_info()] == everything
    assert await store.list_info("cluster/brokers/0") == []
    assert await store.list_info("nothing/") == []


async def test_list_info_sorts_as_list(store):
    keys = ["x/B", "x/a", "x/a-b", "x/a0", "x/é", "x/Z"]
    await asyncio.gather(*(store.put(k, k.encode()) for k in keys))
    assert [i.key for i in await store.list_info("x/")] == await store.list("x/")


async def test_s3_list_info_is_one_request_per_page(minio, minio_bucket):
    """No HEAD per object: the sizes and etags come from ListObjectsV2."""
    store = S3ObjectStore(minio_bucket, "c", endpoint_url=minio.endpoint, page_size=PAGE_SIZE,
                          aws_access_key_id=minio.access_key, aws_secret_access_key=minio.secret_key)
    try:
        await asyncio.gather(*(store.put(f"b/{i:02d}", b"x") for i in range(10)))
        client = await store._get_client()
        calls: list[str] = []
        client.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
        assert len(await store.list_info("b/")) == 10
        assert calls == ["ListObjectsV2", "ListObjectsV2"]        # 10 keys, pages of 7
    finally:
        await store.close()


# -- conditional writes ----------------------------------------------------------


async def test_create_only(store):
    etag = await store.put_if_absent("m/manifest", b"v1")
    with pytest.raises(PreconditionFailed) as ei:
        await store.put_if_absent("m/manifest", b"v2")
    assert ei.value.key == "m/manifest"
    assert await store.get_with_etag("m/manifest") == (b"v1", etag)
    # the same through the keyword form
    with pytest.raises(PreconditionFailed):
        await store.put("m/manifest", b"v3", if_none_match=True)
    # after a delete, create-only succeeds again
    await store.delete("m/manifest")
    await store.put_if_absent("m/manifest", b"v4")
    assert await store.get("m/manifest") == b"v4"


async def test_if_match(store):
    e1 = await store.put("m", b"v1")
    e2 = await store.put_if_match("m", b"v2", e1)
    assert e2 != e1
    assert await store.get_with_etag("m") == (b"v2", e2)
    with pytest.raises(PreconditionFailed):
        await store.put_if_match("m", b"v3", e1)        # stale etag
    with pytest.raises(PreconditionFailed):
        await store.put("m", b"v3", if_match='"0123456789abcdef0123456789abcdef"')
    assert await store.get_with_etag("m") == (b"v2", e2)
    e3 = await store.put("m", b"v3", if_match=e2)
    assert await store.get_with_etag("m") == (b"v3", e3)


async def test_if_match_on_missing_key_fails(store):
    """Old MinIO created the object here; S3 answers 404 NoSuchKey; we say PreconditionFailed."""
    etag = await store.put("other", b"x")
    with pytest.raises(PreconditionFailed):
        await store.put_if_match("missing", b"y", etag)
    assert not await store.exists("missing")
    # and after the key is deleted, its last etag no longer matches anything
    await store.delete("other")
    with pytest.raises(PreconditionFailed):
        await store.put_if_match("other", b"z", etag)
    assert not await store.exists("other")


async def test_conditional_args(store):
    with pytest.raises(ValueError):
        await store.put("k", b"", if_match='"x"', if_none_match=True)
    with pytest.raises(ValueError):
        await store.put("k", b"", if_match="")


async def test_concurrent_create_only_one_wins(store):
    n = 8
    results = await asyncio.gather(
        *(store.put_if_absent("race/create", f"writer-{i}".encode()) for i in range(n)),
        return_exceptions=True)
    winners = [i for i, r in enumerate(results) if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, PreconditionFailed)]
    assert len(winners) == 1 and len(losers) == n - 1, results
    data, etag = await store.get_with_etag("race/create")
    assert data == f"writer-{winners[0]}".encode()
    assert etag == results[winners[0]]


async def test_concurrent_if_match_one_wins(store):
    base = await store.put("race/replace", b"base")
    n = 8
    results = await asyncio.gather(
        *(store.put_if_match("race/replace", f"writer-{i}".encode(), base) for i in range(n)),
        return_exceptions=True)
    winners = [i for i, r in enumerate(results) if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, PreconditionFailed)]
    assert len(winners) == 1 and len(losers) == n - 1, results
    assert await store.get("race/replace") == f"writer-{winners[0]}".encode()


async def test_read_modify_write_counter(store):
    """The loop callers build on: get_with_etag, compute, put_if_match, retry on loss."""
    await store.put_if_absent("counter", b"0")
    workers, increments = 4, 5

    async def worker() -> int:
        retries = 0
        for _ in range(increments):
            while True:
                data, etag = await store.get_with_etag("counter")
                try:
                    await store.put_if_match("counter", str(int(data) + 1).encode(), etag)
                    break
                except PreconditionFailed:
                    retries += 1
        return retries

    await asyncio.gather(*(worker() for _ in range(workers)))
    assert int(await store.get("counter")) == workers * increments


# -- keys --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b",
                                 ".sluice", ".sluice/tmp/x", "x\0y", "a/" + "b" * 256])
async def test_invalid_keys(store, key):
    with pytest.raises(InvalidKey):
        await store.put(key, b"x")
    with pytest.raises(InvalidKey):
        await store.get(key)


async def test_unicode_and_deep_keys(store):
    key = "topics/grüße-τ/partition-0/" + "/".join(f"d{i}" for i in range(8)) + "/obj"
    await store.put(key, b"deep")
    assert await store.get(key) == b"deep"
    assert await store.list("topics/grüße-τ/") == [key]


# -- opening by URL ------------------------------------------------------------------


async def test_open_file_url(tmp_path):
    root = tmp_path / "objs dir"
    async with open_object_store(f"file://{root}") as s:
        assert isinstance(s, FilesystemObjectStore)
        await s.put("k", b"v")
    assert (root / "k").read_bytes() == b"v"
    async with open_object_store(f"file://localhost{root}") as s:
        assert await s.get("k") == b"v"


@pytest.mark.parametrize("url", ["file://relative/path", "file:relative", "ftp://x/y",
                                 "s3:///prefix-without-bucket", "/plain/path",
                                 "s3://bucket/p?x=1"])
def test_open_bad_urls(url):
    with pytest.raises(ValueError):
        open_object_store(url)


async def test_open_s3_url_from_aws_environment(minio, minio_bucket, monkeypatch):
    """s3://bucket/prefix with endpoint and credentials from the standard AWS chain."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    for var, value in minio.env().items():
        monkeypatch.setenv(var, value)
    async with open_object_store(f"s3://{minio_bucket}/sluice/c1/") as s:
        assert isinstance(s, S3ObjectStore)
        await s.put("topics/a", b"1")
        await s.put_if_absent("topics/b", b"2")
        assert await s.list() == ["topics/a", "topics/b"]
    # every key really carries the prefix in the bucket
    raw = minio.client().list_objects_v2(Bucket=minio_bucket)
    assert sorted(o["Key"] for o in raw["Contents"]) == ["sluice/c1/topics/a", "sluice/c1/topics/b"]
    # a store without the prefix sees the prefixed keys; one with another prefix sees nothing
    async with open_object_store(f"s3://{minio_bucket}") as whole, \
            open_object_store(f"s3://{minio_bucket}/sluice/c2") as other:
        assert await whole.list() == ["sluice/c1/topics/a", "sluice/c1/topics/b"]
        assert await other.list() == []
        with pytest.raises(NotFound):
            await other.get("topics/a")


async def test_s3_missing_bucket_is_an_object_store_error(minio):
    s = S3ObjectStore("no-such-bucket-here", endpoint_url=minio.endpoint,
                      aws_access_key_id=minio.access_key, aws_secret_access_key=minio.secret_key)
    try:
        with pytest.raises(ObjectStoreError) as ei:
            await s.put("k", b"v")
        assert not isinstance(ei.value, (NotFound, PreconditionFailed))
        assert "NoSuchBucket" in str(ei.value)
    finally:
        await s.close()
