"""Tail cache: the most recently appended batches, so tail consumers skip storage.

Keyed by (partition key, base offset). Eviction is oldest-appended-first, which
for a log is the same as least-likely-to-be-read-by-a-tail-consumer. Bounded by
bytes (``cache.tail.bytes``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Hashable


class TailCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Hashable, int], bytes] = OrderedDict()
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0

    def put(self, key: Hashable, base_offset: int, data) -> None:
        if len(data) > self.max_bytes:
            return
        k = (key, base_offset)
        old = self._entries.pop(k, None)
        if old is not None:
            self.size_bytes -= len(old)
        self._entries[k] = data
        self.size_bytes += len(data)
        while self.size_bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size_bytes -= len(evicted)

    def get(self, key: Hashable, base_offset: int):
        data = self._entries.get((key, base_offset))
        if data is None:
            self.misses += 1
        else:
            self.hits += 1
        return data

    def peek(self, key: Hashable, base_offset: int):
        """``get`` without counting a hit or miss (the uploader's reads are not the cache's job)."""
        return self._entries.get((key, base_offset))

    def discard_partition(self, key: Hashable) -> None:
        for k in [k for k in self._entries if k[0] == key]:
            self.size_bytes -= len(self._entries.pop(k))
