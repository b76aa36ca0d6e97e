"""Tail cache: the most recently appended batches, so tail consumers skip storage.

Keyed by (partition key, base offset). Eviction is oldest-appended-first, which
for a log is the same as least-likely-to-be-read-by-a-tail-consumer. Bounded by
bytes (``cache.tail.bytes``).

A batch appended from a produce request is held as ``(buffer, start, end)``
into the request's buffer, not as a memoryview: a memoryview (with its buffer
manager) is two objects the cyclic garbage collector tracks, a tuple of a
bytearray and ints none, and a full cache holds tens of thousands of batches
(32k memoryviews added ~4 ms to every full collection, which stalls the event
loop). Readers get a memoryview made at ``get``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Hashable


class TailCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # value: bytes, or (buffer, start, end) for a slice of a produce request's buffer
        self._entries: OrderedDict[tuple[Hashable, int], bytes | tuple] = OrderedDict()
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0

    def put(self, key: Hashable, base_offset: int, data: bytes) -> None:
        self._put(key, base_offset, data, len(data))

    def put_slice(self, key: Hashable, base_offset: int, buf: bytearray, start: int, end: int) -> None:
        """Cache ``buf[start:end]`` without copying it (``buf`` must not change afterwards)."""
        self._put(key, base_offset, (buf, start, end), end - start)

    def _put(self, key: Hashable, base_offset: int, value, size: int) -> None:
        if size > self.max_bytes:
            return
        k = (key, base_offset)
        old = self._entries.pop(k, None)
        if old is not None:
            self.size_bytes -= _size(old)
        self._entries[k] = value
        self.size_bytes += size
        while self.size_bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size_bytes -= _size(evicted)

    def get(self, key: Hashable, base_offset: int):
        data = self._entries.get((key, base_offset))
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        return _view(data)

    def peek(self, key: Hashable, base_offset: int):
        """``get`` without counting a hit or miss (the upload task's reads are not the cache's job)."""
        data = self._entries.get((key, base_offset))
        return None if data is None else _view(data)

    def discard_partition(self, key: Hashable) -> None:
        for k in [k for k in self._entries if k[0] == key]:
            self.size_bytes -= _size(self._entries.pop(k))


def _size(value) -> int:
    return value[2] - value[1] if type(value) is tuple else len(value)


def _view(value):
    if type(value) is tuple:
        buf, start, end = value
        return memoryview(buf)[start:end]
    return value
