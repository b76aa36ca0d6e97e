"""The ObjectStore interface and its exceptions (see the package docstring)."""
from __future__ import annotations

import abc
import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

# What put() takes: one buffer, or a sequence of buffers stored back to back
# and never joined. Joining a 64 MiB object copies it while holding the GIL
# (~50 ms here, page faults included), which stalls the event loop; written or
# streamed part by part, the copies happen in system calls that release it.
Body = Union[bytes, bytearray, memoryview, Sequence[Union[bytes, bytearray, memoryview]]]


def body_parts(data: Body) -> list[memoryview]:
    """The buffers of a put body, in order, as byte views (empty ones dropped)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        parts = [data]
    else:
        parts = list(data)
    return [v for v in (memoryview(p).cast("B") for p in parts) if len(v)]


def body_length(data: Body) -> int:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).nbytes
    return sum(memoryview(p).nbytes for p in data)


class ObjectStoreError(Exception):
    """Anything the object store could not do (base of all our errors)."""


class NotFound(ObjectStoreError):
    """The key does not exist."""

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"no such key: {key!r}")
        self.key = key


class PreconditionFailed(ObjectStoreError):
    """A conditional put lost: the key was not in the state the caller required.

    Raised for a create-only put (``If-None-Match: *``) on an existing key, and
    for a replace (``If-Match: etag``) whose etag is stale or whose key is
    missing. Also for a conditional put that raced another one (S3's 409
    ``ConditionalRequestConflict``). Re-read and decide again.
    """

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"precondition failed for key {key!r}")
        self.key = key


class InvalidKey(ObjectStoreError, ValueError):
    """A key this store cannot hold (empty, absolute, '..', reserved name, ...)."""


class StoreUnavailable(ObjectStoreError):
    """The store could not be reached or answered with a server error (5xx,
    connection refused, timeout). Retryable: the operation may or may not have
    taken effect (a conditional put retried after a lost answer may then fail
    with PreconditionFailed although its first attempt won)."""


class CorruptObject(ObjectStoreError):
    """An object's bytes are not what its format promises: bad magic or
    version, a checksum mismatch, a truncated or inconsistent index, a manifest
    that does not decode or breaks its invariants. Not retryable; never
    overwrite such an object blindly."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(f"{key!r}: {message}" if key else message)
        self.key = key


class Fenced(ObjectStoreError):
    """A write carried an epoch that is not the current one: another broker
    has claimed the partition since (or the caller's epoch was never granted).
    Nothing was written; the caller must stop acting as the owner."""

    def __init__(self, key: str, stored_epoch: int, epoch: int) -> None:
        why = "a newer owner holds it" if stored_epoch > epoch else "that epoch was never granted"
        super().__init__(f"{key!r}: fenced: write at epoch {epoch}, stored epoch is "
                         f"{stored_epoch} ({why})")
        self.key = key
        self.stored_epoch = stored_epoch
        self.epoch = epoch


class InvalidManifest(ObjectStoreError, ValueError):
    """A manifest change that would break the manifest invariants (see
    docs/storage.md); refused before anything is written. A bug in the
    caller's change, not a store condition: not retryable."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


class ObjectStore(abc.ABC):
    """An async key -> bytes store with conditional writes.

    Keys are '/'-separated strings such as ``topics/t1/manifest.json`` (see
    ``check_key``). Do not use a key that is also a path prefix of another key
    ('a' and 'a/b'): the filesystem backend cannot hold both (InvalidKey), nor
    can some S3-compatible servers.

    ETags are opaque strings: pass back exactly what ``put``,
    ``get_with_etag`` or ``head`` returned. They change whenever the content
    changes (both backends use the content's MD5, as S3 does for single-part
    uploads, so identical content has identical etags).
    """

    # -- writes ------------------------------------------------------------

    @abc.abstractmethod
    async def put(self, key: str, data: Body, *, if_match: str | None = None,
                  if_none_match: bool = False, pace: Callable[[int], None] | None = None) -> str:
        """Store ``data`` (one buffer, or buffers back to back) under ``key``
        and return the new etag.

        ``if_none_match=True``: create only (``If-None-Match: *``); raises
        PreconditionFailed if the key exists. ``if_match=etag``: replace only
        if the current etag is ``etag``; raises PreconditionFailed if it
        differs or the key is missing. The two are mutually exclusive.

        ``pace``: called with each step's byte count as a store that writes
        the bytes itself writes them (the filesystem store: from its writer
        thread, between 1 MiB steps; it may sleep there to spread the write
        out). Stores that hand the body to a service ignore it.
        """

    async def put_if_absent(self, key: str, data: bytes) -> str:
        """Create-only put (``If-None-Match: *``)."""
        return await self.put(key, data, if_none_match=True)

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace-if-unchanged put (``If-Match: etag``)."""
        return await self.put(key, data, if_match=etag)

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete ``key``. Deleting a missing key is not an error (as in S3)."""

    # -- reads -------------------------------------------------------------
    # They return bytes, or a bytearray (the filesystem store reads a large
    # object or range into one, without a copy): callers only read either.

    async def get(self, key: str) -> bytes | bytearray:
        """The whole object. Raises NotFound."""
        data, _ = await self.get_with_etag(key)
        return data

    @abc.abstractmethod
    async def get_with_etag(self, key: str) -> tuple[bytes | bytearray, str]:
        """The whole object and its etag, from one read. Raises NotFound."""

    @abc.abstractmethod
    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes | bytearray:
        """Bytes ``[start, end)`` of the object (``end=None``: to its end).

        Like an HTTP ranged GET, a range past the end is cut short at the end
        (``b""`` when ``start`` is at or past it). Raises NotFound.
        """

    async def get_range_parts(self, key: str, start: int, end: int | None, part_size: int) -> list:
        """``get_range`` as consecutive buffers of ``part_size`` bytes each (the
        last shorter; fewer, or none, when the object ends early), each its own
        buffer so that a caller (the block cache) can keep some and drop others.
        Backends fill the parts as the bytes arrive; this fallback splits a copy."""
        return split_parts(await self.get_range(key, start, end), part_size)

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo:
        """Size and etag without the data. Raises NotFound."""

    async def exists(self, key: str) -> bool:
        try:
            await self.head(key)
        except NotFound:
            return False
        return True

    @abc.abstractmethod
    async def list(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix`` (no delimiter: the whole tree
        below it), sorted as S3 sorts them (by UTF-8 bytes)."""

    # builtins.list: in the class body after ``def list``, plain ``list`` is that method
    async def list_info(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object starting with ``prefix`` with its size and etag (the
        etag ``head`` gives), sorted as ``list``.

        Backends that know sizes and etags while listing (S3's ListObjectsV2,
        the memory store) answer from the listing alone, as many requests as
        ``list``: a caller can watch objects being rewritten (their etags
        change) without a GET or HEAD per object. This fallback lists, then
        heads each key, skipping keys deleted in between.
        """
        infos = []
        for key in await self.list(prefix):
            try:
                infos.append(await self.head(key))
            except NotFound:
                continue
        return infos

    # -- lifecycle -----------------------------------------------------------

    async def close(self) -> None:  # noqa: B027 -- a no-op unless a backend holds connections
        """Release connections. The store must not be used afterwards."""

    async def __aenter__(self) -> "ObjectStore":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


RESERVED_PREFIX = ".sluice"


def split_parts(data, part_size: int) -> list:
    """``data`` as buffers of ``part_size`` bytes (copies, unless it fits in one)."""
    if len(data) <= part_size:
        return [data] if data else []
    view = memoryview(data)
    return [bytes(view[o:o + part_size]) for o in range(0, len(data), part_size)]


def check_key(key: str) -> list[str]:
    """Validate a key the same way for every backend; return its segments.

    '/'-separated, non-empty segments other than '.' and '..', each at most
    255 UTF-8 bytes (a file name), no NUL, and not under the reserved
    top-level name '.sluice' (the filesystem backend's own files).
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"bad key {key!r}")
    parts = key.split("/")
    for p in parts:
        if p in ("", ".", "..") or "\0" in p or len(p.encode()) > 255:
            raise InvalidKey(f"bad key {key!r}")
    if parts[0].startswith(RESERVED_PREFIX):
        raise InvalidKey(f"key {key!r} uses the reserved name {RESERVED_PREFIX!r}")
    return parts


def check_put_args(if_match: str | None, if_none_match: bool) -> None:
    if if_match is not None and if_none_match:
        raise ValueError("if_match and if_none_match are mutually exclusive")
    if if_match is not None and not if_match:
        raise ValueError("if_match needs an etag")


def check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad range [{start}, {end})")
