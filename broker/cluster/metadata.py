"""Cluster metadata: topics, partition owners and epochs, producer-id blocks.

One JSON document in the bucket, ``cluster/metadata.json``, changed only by
conditional writes (``objectstore.conditional_update``: read, apply, If-Match
put, re-read on conflict). The bucket is written FIRST; ``MetadataStore.image``
is this broker's cache of the last version it read or wrote. Two brokers
changing it at once both succeed in turn, each applying its change to the
other's result, so neither a topic nor a producer-id block is lost or handed
out twice.

Per partition the document holds its owner (a node id; -1: none yet), its
epoch and, while a move is pending, its target (docs/cluster.md section 7).
The epoch is bumped on every owner change (and when the owner restarts) and
is the partition's leader epoch (KIP-320) and the epoch its manifest is
claimed at, so a writer holding an older one is fenced.

    {"format": "sluice.cluster", "cluster_id": "...", "generation": 12,
     "producer_id_block_end": 3000,
     "topics": [{"name": "clicks", "id": "<uuid>", "partitions": 2,
                 "configs": {"retention.ms": "60000"},
                 "owners": [1, 2], "epochs": [3, 1]}],
     "offsets": {"name": "__consumer_offsets", "id": "<uuid>", "partitions": 50,
                 "configs": {}, "owners": [1, ...], "epochs": [3, ...]}}

``offsets`` are the group coordinator's partitions (Kafka's
``__consumer_offsets``, never listed as a topic): owned and epoch-fenced like
a topic's, so a coordinator can move with them.

``broker_configs`` holds the dynamic broker configs (IncrementalAlterConfigs
on a BROKER resource) by resource name: "" for the cluster-wide default, a
node id for one broker; ``group_configs`` the group configs by group id. Both
are written only when not empty:

    "broker_configs": {"": {"log.retention.ms": "3600000"}, "2": {"message.max.bytes": "2097152"}},
    "group_configs": {"payments": {"consumer.session.timeout.ms": "50000"}}

``share_resets`` holds the share-group offset resets and deletes
(AlterShareGroupOffsets, DeleteShareGroupOffsets) that a partition's owner
has yet to apply, by partition then group: ``[reset id, start offset]``, -1
for a delete; the id is the document generation that added it, so ids only
grow (docs/share-groups.md §10). Written only when not empty:

    "share_resets": {"<topic id>:0": {"orders": [57, 0]}}

Documents written before ownership existed lack "owners"/"epochs": their
partitions read as unowned at epoch 0 and are claimed at start.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from objectstore import CLUSTER_METADATA_KEY, NotFound, ObjectStore, ObjectStoreError, conditional_update
from objectstore.manifest import json_decoder, json_encode

log = logging.getLogger(__name__)

TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249
PRODUCER_ID_BLOCK = 1000
NO_OWNER = -1
OFFSETS_TOPIC = "__consumer_offsets"


def topic_name_error(name: str | None) -> str | None:
    """Kafka's topic-name rules; returns the reason a name is invalid, or None."""
    if not name:
        return "topic name is empty"
    if name in (".", ".."):
        return "topic name cannot be '.' or '..'"
    if len(name) > MAX_TOPIC_NAME:
        return f"topic name is longer than {MAX_TOPIC_NAME} characters"
    if not TOPIC_NAME.match(name):
        return "topic name may contain only ASCII alphanumerics, '.', '_' and '-'"
    return None


@dataclass
class Topic:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)  # overrides only, as set
    owners: list[int] = field(default_factory=list)         # node id per partition
    epochs: list[int] = field(default_factory=list)         # leader epoch per partition
    targets: list[int] = field(default_factory=list)        # move pending to (node id), or NO_OWNER
    # a takeover pending (docs/failover.md): the dead owners whose WAL the owner replays
    # first, oldest first, each [node, its epoch, metadata generation]; or None
    recover: list[list[list[int]] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = self.partitions - len(self.owners)
        if missing > 0:
            self.owners += [NO_OWNER] * missing
            self.epochs += [0] * missing
        missing = self.partitions - len(self.targets)
        if missing > 0:
            self.targets += [NO_OWNER] * missing
        missing = self.partitions - len(self.recover)
        if missing > 0:
            self.recover += [None] * missing

    def to_json(self) -> dict[str, Any]:
        d = {"name": self.name, "id": str(self.topic_id), "partitions": self.partitions,
             "configs": self.configs, "owners": self.owners, "epochs": self.epochs}
        if any(t != NO_OWNER for t in self.targets):   # only while a move is pending
            d["targets"] = self.targets
        if any(r is not None for r in self.recover):   # only while a takeover is pending
            d["recover"] = self.recover
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Topic":
        return cls(d["name"], uuid.UUID(d["id"]), d["partitions"], dict(d.get("configs", {})),
                   list(d.get("owners", [])), list(d.get("epochs", [])), list(d.get("targets", [])),
                   [[list(src) for src in r] if r else None for r in d.get("recover", [])])

    def move_to(self, index: int, node: int) -> None:
        """Ownership changes hands: ``node`` owns it at the next epoch, no move pending."""
        self.owners[index], self.epochs[index], self.targets[index] = node, self.epochs[index] + 1, NO_OWNER
        self.recover[index] = None

    def take_over(self, index: int, node: int, generation: int) -> None:
        """A dead owner's partition goes to ``node`` at the next epoch; ``node``
        first replays the dead owner's WAL for it (docs/failover.md §3)."""
        dead, epoch, pending = self.owners[index], self.epochs[index], self.recover[index]
        self.move_to(index, node)
        # an owner that died before it had recovered from an earlier one: that one first
        self.recover[index] = (pending or []) + [[dead, epoch, generation]]


@dataclass
class ClusterImage:
    """One version of the document (Kafka's MetadataImage). Decoded afresh for
    every attempt of a conditional update, so an update function may change it
    in place."""

    cluster_id: str = ""
    generation: int = 0
    producer_id_block_end: int = 0
    topics: dict[str, Topic] = field(default_factory=dict)
    # The group coordinator's partitions (Kafka's __consumer_offsets): a group's
    # state lives in partition abs(hash(group id)) % count, owned like a topic's.
    offsets: Topic | None = None
    draining: list[int] = field(default_factory=list)    # brokers being emptied (docs/cluster.md §9)
    # dynamic broker configs by resource name ("": cluster-wide default, else a node id)
    broker_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    group_configs: dict[str, dict[str, str]] = field(default_factory=dict)   # by group id
    # share-group resets owners must apply: "<topic id>:<index>" -> group id -> [reset id, start offset]
    share_resets: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        doc = {"format": "sluice.cluster", "cluster_id": self.cluster_id,
               "generation": self.generation,
               "producer_id_block_end": self.producer_id_block_end,
               "topics": [t.to_json() for t in self.topics.values()],
               "offsets": self.offsets.to_json() if self.offsets is not None else None,
               "draining": self.draining}
        for key in ("broker_configs", "group_configs", "share_resets"):
            configs = {k: v for k, v in getattr(self, key).items() if v}
            if configs:
                doc[key] = configs
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ClusterImage":
        offsets = doc.get("offsets")
        return cls(doc.get("cluster_id", ""), doc.get("generation", 0),
                   doc.get("producer_id_block_end", 0),
                   {t["name"]: Topic.from_json(t) for t in doc.get("topics", [])},
                   Topic.from_json(offsets) if offsets else None,
                   [int(n) for n in doc.get("draining", [])],
                   {str(k): dict(v) for k, v in doc.get("broker_configs", {}).items()},
                   {str(k): dict(v) for k, v in doc.get("group_configs", {}).items()},
                   {str(k): {str(g): [int(x) for x in r] for g, r in v.items()}
                    for k, v in doc.get("share_resets", {}).items()})

    def pending_share_reset(self, topic_id: uuid.UUID, index: int, group_id: str) -> tuple[int, int] | None:
        """(reset id, start offset) of the reset pending for the share-partition, or None."""
        r = self.share_resets.get(share_reset_key(topic_id, index), {}).get(group_id)
        return (r[0], r[1]) if r else None

    def pending_moves(self) -> int:
        return sum(1 for t in self.owned_topics() for x in t.targets if x != NO_OWNER)

    def owned_topics(self) -> list[Topic]:
        """Every set of partitions with owners: the topics, and the coordinator's."""
        return list(self.topics.values()) + ([self.offsets] if self.offsets is not None else [])

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        for t in self.topics.values():
            if t.topic_id == topic_id:
                return t
        return None


def share_reset_key(topic_id: uuid.UUID, index: int) -> str:
    """The key of a partition in ``share_resets``."""
    return f"{topic_id}:{index}"


_decode_doc = json_decoder(CLUSTER_METADATA_KEY)


def _decode(data: bytes | bytearray) -> ClusterImage:
    return ClusterImage.from_doc(_decode_doc(data))


def _encode(image: ClusterImage) -> bytes:
    return json_encode(image.to_doc())


Change = Callable[[ClusterImage], None]
Listener = Callable[[ClusterImage | None, ClusterImage], None]


class MetadataStore:
    """The bucket's metadata document and this broker's cache of it.

    ``update(change)`` is the only way to change it: ``change`` mutates a fresh
    image (it may run several times, so it must be a pure function of the
    image) or raises to abort. Listeners (the ownership delta) hear every new
    version this broker reads or writes, in order.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.image = ClusterImage()
        self._listeners: list[Listener] = []
        self._etag: str | None = None

    # the cache, read by handlers
    @property
    def topics(self) -> dict[str, Topic]:
        return self.image.topics

    @property
    def cluster_id(self) -> str:
        return self.image.cluster_id

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self.image.by_id(topic_id)

    def listen(self, fn: Listener) -> None:
        self._listeners.append(fn)

    async def load(self, *, offsets_partitions: int = 50, legacy_dir: str | None = None) -> ClusterImage:
        """Read the document, creating it (with a new cluster id) if absent.

        ``legacy_dir``: a data dir of a version that wrote ``metadata.json``
        locally first; if that copy is newer than the bucket's, it is written
        to the bucket once, then removed.
        """
        legacy = _read_legacy(legacy_dir)

        def init(image: ClusterImage) -> None:
            if image.offsets is None:
                n = offsets_partitions
                image.offsets = Topic(OFFSETS_TOPIC, uuid.uuid4(), n, {}, [NO_OWNER] * n, [0] * n)
            if legacy is not None and legacy.generation > image.generation:
                log.info("cluster metadata: the local copy (generation %d) is newer than the "
                         "bucket's (%d): writing it to the bucket", legacy.generation, image.generation)
                image.topics, image.producer_id_block_end = legacy.topics, legacy.producer_id_block_end
                image.cluster_id = image.cluster_id or legacy.cluster_id
            if not image.cluster_id:
                image.cluster_id = _new_cluster_id()
        image = await self.update(init)
        if legacy is not None and legacy_dir is not None:
            os.remove(os.path.join(legacy_dir, "metadata.json"))
        return image

    async def refresh(self) -> bool:
        """Re-read the document if another broker changed it; True if it changed."""
        try:
            info = await self.store.head(CLUSTER_METADATA_KEY)
        except NotFound:
            return False
        if info.etag == self._etag:
            return False
        data, etag = await self.store.get_with_etag(CLUSTER_METADATA_KEY)
        self._install(_decode(data), etag)
        return True

    async def update(self, change: Change) -> ClusterImage:
        """Apply ``change`` to the stored document (conditional write, retried
        on conflict); the generation goes up by one per stored change."""
        def fn(cur: ClusterImage | None) -> ClusterImage:
            image = cur if cur is not None else ClusterImage()
            before = _encode(image)
            change(image)
            if _encode(image) != before or cur is None:
                image.generation += 1
            return image
        image, etag = await conditional_update(self.store, CLUSTER_METADATA_KEY, fn, _decode, _encode)
        assert image is not None
        self._install(image, etag)
        return image

    def _install(self, image: ClusterImage, etag: str | None) -> None:
        if etag == self._etag or image.generation < self.image.generation:
            return
        old = self.image if self._etag is not None else None
        self.image, self._etag = image, etag
        for fn in self._listeners:
            fn(old, image)

    async def reserve_producer_ids(self) -> tuple[int, int]:
        """A block of PRODUCER_ID_BLOCK ids, [start, end), reserved in the bucket
        before any is handed out: no two brokers (nor two lives of one) share an id."""
        got: list[int] = []

        def reserve(image: ClusterImage) -> None:
            got[:] = [image.producer_id_block_end]
            image.producer_id_block_end += PRODUCER_ID_BLOCK
        await self.update(reserve)
        return got[0], got[0] + PRODUCER_ID_BLOCK


def _read_legacy(data_dir: str | None) -> ClusterImage | None:
    path = os.path.join(data_dir, "metadata.json") if data_dir else None
    if path is None or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return ClusterImage.from_doc(json.load(f))
    except (OSError, ValueError, KeyError) as exc:
        raise ObjectStoreError(f"cannot read the legacy local metadata {path}: {exc}") from exc


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
