"""Object storage: one async ObjectStore interface, S3 and filesystem backends
(and an in-memory one for tests, ``MemoryObjectStore``, with fault hooks).

    store = open_object_store("file:///var/lib/sluice/objects")   # embedded default
    store = open_object_store("s3://bucket/some/prefix")          # S3 / MinIO, AWS chain

    etag = await store.put("k", b"v")                     # unconditional
    etag = await store.put_if_absent("k", b"v")           # If-None-Match: *
    data, etag = await store.get_with_etag("k")
    etag = await store.put_if_match("k", b"v2", etag)     # If-Match: etag
    part = await store.get_range("k", 0, 2)               # bytes [0, 2)
    keys = await store.list("topics/")                    # all pages
    infos = await store.list_info("cluster/brokers/")     # ObjectInfo(key, size, etag) each
    await store.delete("k")                               # missing key: no error
    await store.close()

A read-modify-write loop: get_with_etag, compute, put_if_match; on
PreconditionFailed start over (and on NotFound, put_if_absent). That loop is
``conditional_update`` (manifest.py), on which the partition manifests are built:

    ms = ManifestStore(store)
    epoch = await ms.claim(topic_id, partition, broker_id)
    m = await ms.update(topic_id, partition, append_segments(segs), epoch=epoch)

Data objects (one upload, many partitions' batches, an index at the end) are
in ``objectstore.data_object``. Segment merging (``plan_merge``,
``merge_run``, ``replace_segments``) and garbage collection of data objects
(``referenced_objects``, ``collect_garbage``) are in ``objectstore.merge``.
Formats and invariants: docs/storage.md.

Exceptions:

    Exception
    └── ObjectStoreError          anything the store could not do
        ├── NotFound              get / get_with_etag / get_range / head of a missing key
        ├── PreconditionFailed    a conditional put lost: put_if_absent on an existing key,
        │                         put_if_match with a stale etag or on a missing key
        │                         (S3 412 PreconditionFailed, 409 ConditionalRequestConflict)
        ├── InvalidKey            (also a ValueError) a key the store cannot hold
        ├── StoreUnavailable      unreachable, timed out, 5xx, throttled: retryable, and the
        │                         operation may or may not have happened
        ├── CorruptObject         a data object or manifest whose bytes break its format
        │                         (magic, version, crc32c, index, invariants)
        ├── Fenced                a manifest update at an epoch that is not the stored one
        │                         (another broker claimed the partition); nothing written
        ├── InvalidManifest       (also a ValueError) a manifest change that breaks an
        │                         invariant; refused, nothing written
        └── MergeConflict         the run a merge replaces is no longer in the
                                  manifest (another merge took it); nothing written

Other errors (no such bucket, access denied, no credentials) are a plain
ObjectStoreError with the server's code in the message.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from . import data_object
from .base import (
    CorruptObject,
    Fenced,
    InvalidKey,
    InvalidManifest,
    NotFound,
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
    StoreUnavailable,
)
from .filesystem import FilesystemObjectStore
from .manifest import (
    CLUSTER_METADATA_KEY,
    Manifest,
    ManifestStore,
    SegmentRef,
    append_segments,
    conditional_update,
    manifest_key,
)
from .memory import MemoryObjectStore
from .merge import MergeConflict, collect_garbage, merge_run, plan_merge, referenced_objects, replace_segments

__all__ = [
    "ObjectStore", "ObjectInfo", "ObjectStoreError", "NotFound", "PreconditionFailed",
    "InvalidKey", "StoreUnavailable", "CorruptObject", "Fenced", "InvalidManifest",
    "FilesystemObjectStore", "MemoryObjectStore", "S3ObjectStore", "open_object_store",
    "data_object", "Manifest", "ManifestStore", "SegmentRef", "append_segments",
    "conditional_update", "manifest_key", "CLUSTER_METADATA_KEY",
    "MergeConflict", "plan_merge", "merge_run", "replace_segments",
    "referenced_objects", "collect_garbage",
]


def __getattr__(name: str):
    # aiobotocore is imported only by those who use S3.
    if name == "S3ObjectStore":
        from .s3 import S3ObjectStore
        return S3ObjectStore
    raise AttributeError(name)


def open_object_store(url: str, **options) -> ObjectStore:
    """An ObjectStore for ``file:///abs/path`` or ``s3://bucket[/prefix]``.

    For S3 the prefix (if any) is prepended to every key, followed by '/'.
    ``options`` go to the backend's constructor (e.g. ``page_size=`` for S3).
    """
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"object store URL takes no query or fragment: {url!r}")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL must be file:///abs/path, not {url!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"file URL needs an absolute path: {url!r}")
        return FilesystemObjectStore(path, **options)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"S3 URL needs a bucket: {url!r}")
        from .s3 import S3ObjectStore
        return S3ObjectStore(parts.netloc, unquote(parts.path), **options)
    raise ValueError(f"unsupported object store URL {url!r} (use file:///abs/path or s3://bucket[/prefix])")
