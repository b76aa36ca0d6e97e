"""Cluster metadata: topics (id, partitions, configs) and producer-id blocks.

One JSON document with a ``generation`` bumped on every change. It is written
locally at once (write temp, fsync, rename, fsync dir), so a restart on the
same data dir never forgets a topic, and copied to the bucket
(``cluster/metadata.json``, conditional writes) by the upload task before any
manifest of a new topic, so a broker started with an empty data dir finds
every topic, its id and its configs there. At start the newer generation of
the two copies wins.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249
PRODUCER_ID_BLOCK = 1000


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

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id": str(self.topic_id), "partitions": self.partitions,
                "configs": self.configs}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Topic":
        return cls(d["name"], uuid.UUID(d["id"]), d["partitions"], dict(d.get("configs", {})))


class MetadataStore:
    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, "metadata.json")
        self.topics: dict[str, Topic] = {}
        self.cluster_id = ""
        self._producer_id_next = 0
        self._producer_id_block_end = 0
        self.generation = 0
        self.dirty = False  # changed since the last copy to the bucket
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.load_doc(json.load(f))

    def load_doc(self, doc: dict[str, Any]) -> None:
        self.cluster_id = doc.get("cluster_id", "")
        self.generation = doc.get("generation", 0)
        self.topics = {t["name"]: Topic.from_json(t) for t in doc.get("topics", [])}
        # Never reuse ids handed out before a crash: start at the reserved block's end.
        self._producer_id_next = self._producer_id_block_end = doc.get("producer_id_block_end", 0)

    def to_doc(self) -> dict[str, Any]:
        return {"format": "sluice.cluster", "cluster_id": self.cluster_id,
                "generation": self.generation,
                "producer_id_block_end": self._producer_id_block_end,
                "topics": [t.to_json() for t in self.topics.values()]}

    def ensure_cluster_id(self) -> None:
        if not self.cluster_id:
            self.cluster_id = _cluster_id()
            self.save()

    def save(self) -> None:
        self.generation += 1
        self.dirty = True
        doc = self.to_doc()
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        for t in self.topics.values():
            if t.topic_id == topic_id:
                return t
        return None

    def next_producer_id(self) -> int:
        if self._producer_id_next >= self._producer_id_block_end:
            self._producer_id_block_end = self._producer_id_next + PRODUCER_ID_BLOCK
            self.save()
        pid = self._producer_id_next
        self._producer_id_next += 1
        return pid


def _cluster_id() -> str:
    import base64
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
