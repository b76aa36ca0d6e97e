"""An ObjectStore wrapper that counts every request and byte (the cloud bill).

Requests, not bytes, dominate object-storage cost at Sluice's sizes, so each
call is counted by operation and outcome; ``puts_per_gb`` and friends are
derived from these counters.
"""
from __future__ import annotations

import builtins

from objectstore import ObjectInfo, ObjectStore
from objectstore.base import body_length


class MeteredStore(ObjectStore):
    """Same interface as the wrapped ObjectStore (every method is overridden:
    none of the base class's defaults runs); counts into BrokerMetrics."""

    def __init__(self, store: ObjectStore, metrics) -> None:
        self.inner = store
        self.metrics = metrics
        self.puts = 0
        self.gets = 0

    def __getattr__(self, name):  # anything not metered (e.g. close, url)
        return getattr(self.inner, name)

    async def _call(self, op: str, coro):
        try:
            result = await coro
        except BaseException:
            self.metrics.store_requests.labels(op, "error").inc()
            raise
        self.metrics.store_requests.labels(op, "ok").inc()
        return result

    async def put(self, key: str, data, **kw) -> str:
        self.puts += 1
        self.metrics.store_bytes.labels("put").inc(body_length(data))
        return await self._call("put", self.inner.put(key, data, **kw))

    async def put_if_absent(self, key: str, data) -> str:
        return await self.put(key, data, if_none_match=True)

    async def put_if_match(self, key: str, data, etag: str) -> str:
        return await self.put(key, data, if_match=etag)

    async def get(self, key: str) -> bytes | bytearray:
        self.gets += 1
        data = await self._call("get", self.inner.get(key))
        self.metrics.store_bytes.labels("get").inc(len(data))
        return data

    async def get_with_etag(self, key: str):
        self.gets += 1
        data, etag = await self._call("get", self.inner.get_with_etag(key))
        self.metrics.store_bytes.labels("get").inc(len(data))
        return data, etag

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes | bytearray:
        self.gets += 1
        data = await self._call("get_range", self.inner.get_range(key, start, end))
        self.metrics.store_bytes.labels("get").inc(len(data))
        return data

    async def get_range_parts(self, key: str, start: int, end: int | None, part_size: int) -> list:
        self.gets += 1
        parts = await self._call("get_range", self.inner.get_range_parts(key, start, end, part_size))
        self.metrics.store_bytes.labels("get").inc(sum(len(p) for p in parts))
        return parts

    async def head(self, key: str):
        return await self._call("head", self.inner.head(key))

    async def exists(self, key: str) -> bool:
        return await self._call("head", self.inner.exists(key))

    async def list(self, prefix: str = "") -> list[str]:
        return await self._call("list", self.inner.list(prefix))

    async def list_info(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        # one listing, counted as list is (on S3: one request per page, like list)
        return await self._call("list", self.inner.list_info(prefix))

    async def delete(self, key: str) -> None:
        return await self._call("delete", self.inner.delete(key))

    async def close(self) -> None:
        await self.inner.close()
