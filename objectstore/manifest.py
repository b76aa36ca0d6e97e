"""Partition manifests: each partition's durable metadata, one JSON object in the
bucket, changed only by conditional writes (format and invariants in
docs/storage.md).

    ms = ManifestStore(store)
    epoch = await ms.claim(topic_id, 0, broker_id)            # owner change: epoch + 1
    m = await ms.update(topic_id, 0, append_segments(segs, producer_state=snap), epoch=epoch)
    m, etag = await ms.load(topic_id, 0)                      # (None, None) if absent

Every change is one loop (``conditional_update``): read the object and its
etag -> apply a pure function -> check -> conditional put (If-Match the etag
read, or If-None-Match: * when there was none) -> on PreconditionFailed re-read
and apply again, a bounded number of times with jittered backoff. The same loop
serves the cluster metadata document (``CLUSTER_METADATA_KEY``).

Cost: a partition's owner is the only writer of its manifest, so
``ManifestStore`` remembers the bytes and etag of its last read or write and
tries the next update as a blind If-Match put on them: one PUT, no GET. Only a
put that succeeds is trusted; a lost put, an abort or an empty change on that
remembered state re-runs the normal loop on a fresh read.

Fencing: ``update`` applies its change only while the stored epoch equals the
caller's; otherwise it raises Fenced and writes nothing. Because the check runs
on every re-read, a writer whose epoch was bumped between its read and its put
loses the put (the etag changed), re-reads, and is fenced.

Invariants (``Manifest.validate``), checked before every write and after every
read; a change that breaks one raises InvalidManifest and writes nothing:

    0 <= log_start_offset <= next_offset
    segments are in offset order, each non-empty (first <= last), contiguous:
        segments[i].first_offset == segments[i-1].last_offset + 1
    with segments: segments[0].first_offset <= log_start_offset
                   segments[-1].last_offset + 1 == next_offset
    without segments: log_start_offset == next_offset (nothing readable)

and for an ``update`` (old -> new): same topic id, partition, epoch and owner;
log_start_offset and next_offset never decrease.

A function given to ``update`` may run several times (once per attempt) and
must be pure. It should also be idempotent: after StoreUnavailable the put may
have landed, and a retry then sees its own change already applied
(``append_segments`` checks for that).
"""
from __future__ import annotations

import asyncio
import bisect
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, TypeVar

from .base import CorruptObject, Fenced, InvalidManifest, NotFound, ObjectStore, PreconditionFailed
from .data_object import ChunkRef

T = TypeVar("T")

MANIFEST_FORMAT = "sluice.manifest"
MANIFEST_VERSION = 1
MANIFEST_PREFIX = "manifests/"
CLUSTER_METADATA_KEY = "cluster/metadata.json"

DEFAULT_ATTEMPTS = 16
BACKOFF_BASE = 0.005      # seconds; attempt n sleeps uniform(0, min(cap, base * 2**n))
BACKOFF_CAP = 0.5


def manifest_key(topic_id: bytes, partition: int) -> str:
    """``manifests/<topic-id-hex>/<partition>.json``."""
    if len(topic_id) != 16 or partition < 0:
        raise ValueError(f"bad topic id {topic_id!r} or partition {partition}")
    return f"{MANIFEST_PREFIX}{topic_id.hex()}/{partition}.json"


# -- the generic loop ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """What a conditional update left in the store: the value, its bytes and
    etag (None, None, None: no object). Pass it back as ``known`` to skip the
    GET of the next update."""

    value: Any
    data: bytes | bytearray | None
    etag: str | None


async def conditional_update(store: ObjectStore, key: str, fn: Callable[[T | None], T | None],
                             decode: Callable[[bytes | bytearray], T], encode: Callable[[T], bytes], *,
                             attempts: int = DEFAULT_ATTEMPTS, backoff_base: float = BACKOFF_BASE,
                             backoff_cap: float = BACKOFF_CAP) -> tuple[T, str] | tuple[None, None]:
    """Read-apply-conditional write-retry on one object; returns (value, etag),
    (None, None) when there is no object and ``fn`` returned None.

    ``fn(current)`` gets the decoded object (None if absent) and returns the
    new value (it may modify ``current`` in place and return it). If the new
    value encodes to the bytes already stored, nothing is written and the
    stored value and etag are returned. ``fn`` may raise to abort (nothing is
    written). Absent -> put If-None-Match: *; present -> put If-Match: etag.
    On PreconditionFailed: sleep (full jitter) and start over, at most
    ``attempts`` times, then raise PreconditionFailed. StoreUnavailable and
    errors from ``decode`` propagate at once.
    """
    stored = await conditional_update_stored(store, key, fn, decode, encode, attempts=attempts,
                                             backoff_base=backoff_base, backoff_cap=backoff_cap)
    if stored.etag is None:     # Stored(None, None, None): no object, none written
        return None, None
    return stored.value, stored.etag


async def conditional_update_stored(store: ObjectStore, key: str,
                                    fn: Callable[[T | None], T | None],
                                    decode: Callable[[bytes | bytearray], T], encode: Callable[[T], bytes], *,
                                    known: tuple[bytes | bytearray, str] | None = None,
                                    attempts: int = DEFAULT_ATTEMPTS,
                                    backoff_base: float = BACKOFF_BASE,
                                    backoff_cap: float = BACKOFF_CAP) -> Stored:
    """``conditional_update``, returning a Stored, with an optional fast path:
    ``known`` = (bytes, etag) the caller believes are stored (its own last
    write: a partition's owner is its manifest's only writer). Then the first
    attempt applies ``fn`` to those bytes and puts If-Match that etag without
    a GET. Only a successful put is trusted: if the put loses, ``fn`` raises,
    or the change is empty, the loop starts over from a fresh read (so a
    decision to abort or do nothing is never taken on stale data).
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    data: bytes | bytearray | None
    etag: str | None
    if known is not None:
        data, etag = known
        try:
            new = fn(decode(data))
            body = None if new is None else encode(new)
        except Exception:       # noqa: BLE001 -- decided again below, on fresh data
            body = None
        if body is not None and body != data:
            try:
                return Stored(new, body, await store.put(key, body, if_match=etag))
            except PreconditionFailed:
                pass            # stale: someone else wrote; the loop re-reads
    lost: PreconditionFailed | None = None
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(random.uniform(0, min(backoff_cap, backoff_base * 2 ** attempt)))
        try:
            data, etag = await store.get_with_etag(key)
        except NotFound:
            data, current, etag = None, None, None
        else:
            current = decode(data)
        new = fn(current)
        if new is None:
            if data is None:
                return Stored(None, None, None)
            raise ValueError(f"{key!r}: fn returned None for an existing object (no deletes here)")
        body = encode(new)
        if body == data:
            return Stored(new, data, etag)
        try:
            if etag is None:
                new_etag = await store.put(key, body, if_none_match=True)
            else:
                new_etag = await store.put(key, body, if_match=etag)
        except PreconditionFailed as e:
            lost = e
            continue
        return Stored(new, body, new_etag)
    raise PreconditionFailed(key, f"{key!r}: conditional update lost {attempts} races "
                                  f"in a row; giving up") from lost


def json_decoder(key: str) -> Callable[[bytes | bytearray], Any]:
    """``decode`` for a plain JSON document (cluster metadata): CorruptObject
    if it is not UTF-8 JSON."""
    def decode(data: bytes | bytearray) -> Any:
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptObject(key, f"not JSON: {e}") from e
    return decode


def json_encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


# -- the manifest -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A range of a partition's offsets in a data object: the bytes
    ``[position, position + length)`` of ``object_key`` hold whole batches
    with offsets ``first_offset..last_offset``; ``crc`` is their crc32c."""

    object_key: str
    position: int
    length: int
    first_offset: int
    last_offset: int
    max_timestamp: int
    crc: int

    @classmethod
    def from_chunk(cls, object_key: str, chunk: ChunkRef) -> "SegmentRef":
        return cls(object_key, chunk.position, chunk.length, chunk.first_offset,
                   chunk.last_offset, chunk.max_timestamp, chunk.crc)

    def to_json(self) -> dict[str, Any]:
        return {"object": self.object_key, "position": self.position, "length": self.length,
                "first_offset": self.first_offset, "last_offset": self.last_offset,
                "max_timestamp": self.max_timestamp, "crc32c": self.crc}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "SegmentRef":
        return cls(_str(d, "object"), _int(d, "position"), _int(d, "length"),
                   _int(d, "first_offset"), _int(d, "last_offset"), _int(d, "max_timestamp"),
                   _int(d, "crc32c"))


@dataclass(frozen=True)
class Manifest:
    """One partition's durable state. ``next_offset`` is the end of what is
    uploaded (the first offset not in any segment); ``producer_state`` is an
    opaque JSON object the broker stores with it, describing the producers
    as of ``next_offset``."""

    topic_id: bytes
    partition: int
    epoch: int
    owner: int | None
    log_start_offset: int = 0
    next_offset: int = 0
    segments: tuple[SegmentRef, ...] = ()
    producer_state: Mapping[str, Any] = field(default_factory=dict)
    # (leader epoch, start offset) of each epoch the partition's owners served
    # (broker/log/leader_epochs.py); absent in manifests written before it
    leader_epochs: tuple[tuple[int, int], ...] = ()
    # (group id, base64 payload) per share group that fetched the partition:
    # its share-partition snapshot (broker/share/state.py), written by the
    # owner with its manifest updates; absent when no share group has state
    share_state: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return manifest_key(self.topic_id, self.partition)

    # -- invariants ---------------------------------------------------------

    def validate(self) -> None:
        """Raise InvalidManifest unless every invariant holds."""
        def bad(msg: str) -> InvalidManifest:
            return InvalidManifest(f"manifest {self.topic_id.hex()}/{self.partition}: {msg}")

        if not isinstance(self.topic_id, bytes) or len(self.topic_id) != 16:
            raise bad(f"topic id must be 16 bytes: {self.topic_id!r}")
        for name in ("partition", "epoch", "log_start_offset", "next_offset"):
            v = getattr(self, name)
            if type(v) is not int or v < 0:
                raise bad(f"{name} must be an int >= 0: {v!r}")
        if self.owner is not None and (type(self.owner) is not int or self.owner < 0):
            raise bad(f"owner must be a broker id or None: {self.owner!r}")
        if not isinstance(self.segments, tuple):
            raise bad("segments must be a tuple")
        if not isinstance(self.producer_state, Mapping):
            raise bad("producer_state must be a mapping")
        if not isinstance(self.leader_epochs, tuple):
            raise bad("leader_epochs must be a tuple")
        last_epoch, last_start = -1, 0
        for entry in self.leader_epochs:
            if (not isinstance(entry, tuple) or len(entry) != 2
                    or any(type(v) is not int or v < 0 for v in entry)
                    or entry[0] <= last_epoch or entry[1] < last_start):
                raise bad(f"leader_epochs: bad or out-of-order entry {entry!r}")
            last_epoch, last_start = entry
        if not isinstance(self.share_state, tuple) or any(
                not isinstance(e, tuple) or len(e) != 2 or not all(isinstance(v, str) for v in e)
                for e in self.share_state):
            raise bad("share_state must be a tuple of (group id, payload) string pairs")
        if self.log_start_offset > self.next_offset:
            raise bad(f"log_start_offset {self.log_start_offset} > next_offset {self.next_offset}")
        prev: SegmentRef | None = None
        for i, s in enumerate(self.segments):
            if not isinstance(s, SegmentRef):
                raise bad(f"segment {i} is not a SegmentRef: {s!r}")
            for name in ("position", "length", "first_offset", "last_offset", "crc"):
                v = getattr(s, name)
                if type(v) is not int or v < 0:
                    raise bad(f"segment {i}: {name} must be an int >= 0: {v!r}")
            if type(s.max_timestamp) is not int:
                raise bad(f"segment {i}: max_timestamp must be an int")
            if s.length == 0 or s.crc > 0xFFFFFFFF or not s.object_key:
                raise bad(f"segment {i}: empty, bad crc or no object: {s}")
            if s.first_offset > s.last_offset:
                raise bad(f"segment {i}: first_offset {s.first_offset} > last_offset {s.last_offset}")
            if prev is not None and s.first_offset != prev.last_offset + 1:
                kind = "overlaps" if s.first_offset <= prev.last_offset else "leaves a gap after"
                raise bad(f"segment {i} ({s.first_offset}..{s.last_offset}) {kind} "
                          f"segment {i - 1} ({prev.first_offset}..{prev.last_offset})")
            prev = s
        if self.segments:
            assert prev is not None  # the last segment
            if self.segments[0].first_offset > self.log_start_offset:
                raise bad(f"first segment starts at {self.segments[0].first_offset}, after "
                          f"log_start_offset {self.log_start_offset}")
            if prev.last_offset + 1 != self.next_offset:
                raise bad(f"last segment ends at {prev.last_offset}, next_offset is "
                          f"{self.next_offset}")
        elif self.log_start_offset != self.next_offset:
            raise bad(f"no segments, but log_start_offset {self.log_start_offset} != "
                      f"next_offset {self.next_offset}")

    def check_successor(self, new: "Manifest") -> None:
        """Raise InvalidManifest unless ``new`` may replace this manifest in an
        ``update`` (identity, epoch and owner kept; offsets never go back)."""
        for name in ("topic_id", "partition", "epoch", "owner"):
            if getattr(new, name) != getattr(self, name):
                raise InvalidManifest(f"{self.key}: an update may not change {name} "
                                      f"({getattr(self, name)!r} -> {getattr(new, name)!r})")
        for name in ("log_start_offset", "next_offset"):
            if getattr(new, name) < getattr(self, name):
                raise InvalidManifest(f"{self.key}: {name} would go back from "
                                      f"{getattr(self, name)} to {getattr(new, name)}")

    # -- changes (pure) ---------------------------------------------------------

    def appended(self, segments: Sequence[SegmentRef], *,
                 producer_state: Mapping[str, Any] | None = None) -> "Manifest":
        """This manifest with ``segments`` added at the end (they must start at
        ``next_offset``) and, if given, a new producer state snapshot."""
        segments = tuple(segments)
        if not segments:
            return self if producer_state is None else replace(self, producer_state=producer_state)
        if segments[0].first_offset != self.next_offset:
            raise InvalidManifest(f"{self.key}: segments start at {segments[0].first_offset}, "
                                  f"next_offset is {self.next_offset}")
        new = replace(self, segments=self.segments + segments,
                      next_offset=segments[-1].last_offset + 1,
                      producer_state=self.producer_state if producer_state is None
                      else producer_state)
        new.validate()
        return new

    def with_log_start(self, offset: int) -> "Manifest":
        """Log start advanced to ``offset`` (DeleteRecords, retention); segments
        wholly below it are dropped. Never moves back; never past next_offset."""
        if offset <= self.log_start_offset:
            return self
        if offset > self.next_offset:
            raise InvalidManifest(f"{self.key}: log start {offset} beyond next_offset "
                                  f"{self.next_offset}")
        keep = tuple(s for s in self.segments if s.last_offset >= offset)
        return replace(self, log_start_offset=offset, segments=keep)

    def segment_for(self, offset: int) -> SegmentRef | None:
        """The segment holding ``offset`` (None below log start or at/after
        next_offset)."""
        if not self.log_start_offset <= offset < self.next_offset:
            return None
        i = bisect.bisect_left(self.segments, offset, key=lambda s: s.last_offset)
        return self.segments[i] if i < len(self.segments) else None

    # -- encoding ----------------------------------------------------------------

    def encode(self) -> bytes:
        try:
            _check_plain_json(self.producer_state)
            return self._encode()
        except (TypeError, ValueError) as e:
            raise InvalidManifest(f"{self.key}: cannot encode (producer_state must be "
                                  f"plain JSON): {e}") from e

    def _encode(self) -> bytes:
        d: dict[str, Any] = {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
            "topic_id": self.topic_id.hex(), "partition": self.partition,
            "epoch": self.epoch, "owner": self.owner,
            "log_start_offset": self.log_start_offset, "next_offset": self.next_offset,
            "segments": [s.to_json() for s in self.segments],
            "producer_state": self.producer_state,
            "leader_epochs": [list(e) for e in self.leader_epochs],
        }
        if self.share_state:
            d["share_state"] = dict(self.share_state)
        return json_encode(d)

    @classmethod
    def decode(cls, data: bytes | bytearray, *, key: str | None = None) -> "Manifest":
        """Parse and validate; CorruptObject if the bytes are not a valid
        version-1 manifest."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict) or d.get("format") != MANIFEST_FORMAT:
                raise ValueError("not a sluice manifest")
            if d.get("version") != MANIFEST_VERSION:
                raise ValueError(f"manifest version {d.get('version')!r} is not supported "
                                 f"(this reader knows {MANIFEST_VERSION})")
            owner = d["owner"]
            producer_state = d["producer_state"]
            if not isinstance(producer_state, dict) or not isinstance(d["segments"], list):
                raise ValueError("producer_state must be an object, segments a list")
            m = cls(bytes.fromhex(_str(d, "topic_id")), _int(d, "partition"), _int(d, "epoch"),
                    None if owner is None else _int(d, "owner"),
                    _int(d, "log_start_offset"), _int(d, "next_offset"),
                    tuple(SegmentRef.from_json(s) for s in d["segments"]), producer_state,
                    tuple(tuple(e) for e in d.get("leader_epochs", [])),
                    tuple(sorted(d.get("share_state", {}).items())))
            m.validate()
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptObject(key, f"bad manifest: {e}") from e
        if key is not None and key != m.key:
            raise CorruptObject(key, f"manifest of {m.key!r} stored under another key")
        return m


def _check_plain_json(v: Any) -> None:
    """TypeError unless ``v`` survives a JSON round trip unchanged (str keys,
    no tuples, no floats like NaN)."""
    if isinstance(v, Mapping):
        for k, x in v.items():
            if not isinstance(k, str):
                raise TypeError(f"key {k!r} is not a string")
            _check_plain_json(x)
    elif isinstance(v, list):
        for x in v:
            _check_plain_json(x)
    elif not (v is None or isinstance(v, (str, int, float, bool))):
        raise TypeError(f"{type(v).__name__} is not plain JSON")


def _int(d: Mapping[str, Any], name: str) -> int:
    v = d[name]
    if type(v) is not int:
        raise ValueError(f"{name} must be an integer: {v!r}")
    return v


def _str(d: Mapping[str, Any], name: str) -> str:
    v = d[name]
    if not isinstance(v, str):
        raise ValueError(f"{name} must be a string: {v!r}")
    return v


def append_segments(segments: Sequence[SegmentRef], *,
                    producer_state: Mapping[str, Any] | None = None
                    ) -> Callable[[Manifest], Manifest]:
    """An idempotent ``update`` function recording an upload: appends
    ``segments`` (contiguous, starting at the manifest's next_offset) with a
    producer-state snapshot as of their end. If the manifest already reaches
    past them (this very change landed on an attempt whose answer was lost),
    it returns the manifest unchanged."""
    segments = tuple(segments)

    def fn(m: Manifest) -> Manifest:
        if segments and m.next_offset > segments[-1].last_offset:
            held = {(s.object_key, s.first_offset) for s in m.segments}
            if any((s.object_key, s.first_offset) not in held and s.last_offset >= m.log_start_offset
                   for s in segments):
                raise InvalidManifest(f"{m.key}: offsets {segments[0].first_offset}.."
                                      f"{segments[-1].last_offset} are already uploaded "
                                      f"in other objects")
            return m
        return m.appended(segments, producer_state=producer_state)
    return fn


# -- the store ----------------------------------------------------------------------


class _Retry(TypedDict):
    """``conditional_update_stored``'s retry arguments."""

    attempts: int
    backoff_base: float
    backoff_cap: float


class ManifestStore:
    """Load, update and claim partition manifests in an ObjectStore."""

    def __init__(self, store: ObjectStore, *, attempts: int = DEFAULT_ATTEMPTS,
                 backoff_base: float = BACKOFF_BASE, backoff_cap: float = BACKOFF_CAP) -> None:
        self.store = store
        self._retry = _Retry(attempts=attempts, backoff_base=backoff_base, backoff_cap=backoff_cap)
        # key -> (bytes, etag) this store last read or wrote: the next update's
        # first put goes If-Match that etag without a GET (see known= above).
        self._known: dict[str, tuple[bytes | bytearray, str]] = {}

    async def load(self, topic_id: bytes, partition: int) -> tuple[Manifest | None, str | None]:
        """The manifest and its etag, or (None, None) if there is none.
        Raises CorruptObject if it does not decode or breaks an invariant."""
        key = manifest_key(topic_id, partition)
        try:
            data, etag = await self.store.get_with_etag(key)
        except NotFound:
            self._known.pop(key, None)
            return None, None
        m = Manifest.decode(data, key=key)
        self._known[key] = (data, etag)
        return m, etag

    async def update(self, topic_id: bytes, partition: int, fn: Callable[[Manifest], Manifest],
                     *, epoch: int) -> Manifest:
        """Apply ``fn`` to the stored manifest and write the result, if the
        stored epoch is ``epoch``; returns the manifest now stored.

        Raises Fenced (stored epoch differs), NotFound (no manifest: claim
        first), InvalidManifest (the result breaks an invariant), CorruptObject,
        PreconditionFailed (too many lost races), StoreUnavailable. Nothing is
        written in any of these cases, except that after StoreUnavailable the
        put may or may not have landed.
        """
        key = manifest_key(topic_id, partition)

        def apply(cur: Manifest | None) -> Manifest:
            if cur is None:
                raise NotFound(key, f"no manifest at {key!r}: claim the partition first")
            if cur.epoch != epoch:
                raise Fenced(key, cur.epoch, epoch)
            new = fn(cur)
            if not isinstance(new, Manifest):
                raise TypeError(f"update function returned {type(new).__name__}, not Manifest")
            cur.check_successor(new)
            new.validate()
            return new

        return (await self._update(key, apply)).value

    async def claim(self, topic_id: bytes, partition: int, broker_id: int, *,
                    if_epoch: int | None = None, epoch: int | None = None) -> int:
        """Make ``broker_id`` the owner with a new epoch and return it. Any
        writer holding an older epoch is fenced from now on.

        ``epoch``: the epoch the cluster metadata gave this owner; the claim
        sets exactly it, and raises Fenced if the stored epoch is higher (or
        equal, held by another broker): a newer owner exists. Claiming the
        same epoch again as the same owner changes nothing (a retry).
        Without it: stored epoch + 1 (1 for a partition without a manifest,
        which is created empty, its leader-epoch history that epoch from 0). With ``if_epoch``, claim only if the stored
        epoch is still that one (0: only if there is no manifest yet), else
        raise Fenced.
        """
        key = manifest_key(topic_id, partition)

        def apply(cur: Manifest | None) -> Manifest:
            stored = 0 if cur is None else cur.epoch
            if if_epoch is not None and stored != if_epoch:
                raise Fenced(key, stored, if_epoch)
            if epoch is not None and (stored > epoch or (
                    stored == epoch and cur is not None and cur.owner != broker_id)):
                raise Fenced(key, stored, epoch)
            new_epoch = epoch if epoch is not None else stored + 1
            if cur is None:     # a new partition: its first epoch begins at offset 0
                new = Manifest(topic_id, partition, new_epoch, broker_id, leader_epochs=((new_epoch, 0),))
            else:
                new = replace(cur, epoch=new_epoch, owner=broker_id)
            new.validate()
            return new

        return (await self._update(key, apply)).value.epoch

    async def _update(self, key: str, apply: Callable[[Manifest | None], Manifest]) -> Stored:
        try:
            stored = await conditional_update_stored(
                self.store, key, apply, lambda data: Manifest.decode(data, key=key),
                Manifest.encode, known=self._known.get(key), **self._retry)
        except BaseException:
            self._known.pop(key, None)      # after StoreUnavailable the state is unknown
            raise
        if stored.etag is None:
            self._known.pop(key, None)
        else:
            assert stored.data is not None  # an object with an etag has bytes
            self._known[key] = (stored.data, stored.etag)
        return stored
