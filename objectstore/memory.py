"""ObjectStore in memory: one dict in one process, for tests and the in-process cluster rig.

It keeps the contract of the other backends (tests/unit/test_objectstore_contract.py
runs against it): conditional puts, ranged reads, sorted listing, the same key
rules, and a key may not also be another key's prefix ('a' and 'a/b'), which
the filesystem store cannot hold either, so code tested here does not meet
that InvalidKey first in production. Every operation is atomic: its check and
its change happen without yielding to the event loop. Several brokers share
one instance; ``close`` releases nothing and the store stays usable (each
broker closes the store it was given).

Hooks for tests, all off by default:

    store.fail("put", "cluster/metadata.json")          # the next such put raises StoreUnavailable
    store.fail("get_range", times=None, when=pred)      # every ranged read while pred() holds
    store.fail("put", "data/", after=True)              # the put lands, its answer is lost
    store.delay = async_fn                              # awaited as (op, key) before each operation
    MemoryObjectStore(rng=random.Random(seed))          # seeded interleaving (below)

Operation names are the metered ones: put, get (get, get_with_etag), get_range
(get_range, get_range_parts), head (head, exists), list (list, list_info), delete.

With ``rng``, every operation first yields to the event loop 0-2 times
(drawn from ``rng``): tasks racing on the store interleave differently from
one seed to another and the same way for one seed.
"""
from __future__ import annotations

import asyncio
import builtins
import hashlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .base import (
    Body,
    InvalidKey,
    NotFound,
    ObjectInfo,
    ObjectStore,
    PreconditionFailed,
    StoreUnavailable,
    body_parts,
    check_key,
    check_put_args,
    check_range,
)

OPS = ("put", "get", "get_range", "head", "list", "delete")


@dataclass
class Fault:
    """One armed failure (see ``MemoryObjectStore.fail``); ``hits`` counts the times it fired."""

    op: str
    key_prefix: str
    times: int | None
    exc: type[BaseException] | BaseException
    after: bool
    when: Callable[[], bool] | None
    hits: int = 0

    def matches(self, op: str, key: str) -> bool:
        return ((self.op == "*" or self.op == op) and key.startswith(self.key_prefix)
                and (self.times is None or self.hits < self.times)
                and (self.when is None or self.when()))

    def error(self, op: str, key: str) -> BaseException:
        exc = self.exc
        if isinstance(exc, BaseException):
            return exc
        if issubclass(exc, (NotFound, PreconditionFailed)):
            return exc(key, f"injected failure: {op} {key!r}")
        return exc(f"injected failure: {op} {key!r}")


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class MemoryObjectStore(ObjectStore):
    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._dirs: Counter[str] = Counter()   # "a/b/" -> keys below it
        self._faults: list[Fault] = []
        self.rng = rng
        self.delay: Callable[[str, str], Awaitable[None] | None] | None = None

    def __repr__(self) -> str:
        return f"MemoryObjectStore({len(self._objects)} objects)"

    # -- hooks -----------------------------------------------------------------

    def fail(self, op: str, key_prefix: str = "", *, times: int | None = 1,
             exc: type[BaseException] | BaseException = StoreUnavailable, after: bool = False,
             when: Callable[[], bool] | None = None) -> Fault:
        """Make the next ``times`` operations ``op`` ("*": any) on keys starting
        with ``key_prefix`` raise ``exc`` (a class is instantiated with a
        message; NotFound and PreconditionFailed with the key). ``times=None``:
        until ``clear_faults``. ``after``: the operation takes effect first and
        only its answer is lost (S3's "may or may not have happened").
        ``when``: fire only while it returns True (e.g. for one broker)."""
        if op != "*" and op not in OPS:
            raise ValueError(f"unknown operation {op!r} (one of {', '.join(OPS)} or '*')")
        fault = Fault(op, key_prefix, times, exc, after, when)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    async def _enter(self, op: str, key: str) -> Fault | None:
        """Interleave, delay, then raise a fault armed before the operation;
        returns one armed for after it."""
        if self.rng is not None:
            for _ in range(self.rng.randrange(3)):
                await asyncio.sleep(0)
        if self.delay is not None:
            waiting = self.delay(op, key)
            if waiting is not None:
                await waiting
        for fault in self._faults:
            if fault.matches(op, key):
                fault.hits += 1
                if not fault.after:
                    raise fault.error(op, key)
                return fault
        return None

    @staticmethod
    def _exit(fault: Fault | None, op: str, key: str) -> None:
        if fault is not None:
            raise fault.error(op, key)

    # -- keys ------------------------------------------------------------------

    def _lookup(self, key: str) -> tuple[bytes, str]:
        try:
            return self._objects[key]
        except KeyError:
            raise NotFound(key) from None

    def _check_prefixes(self, key: str, parts: list[str]) -> None:
        """As on the filesystem: no key may be another key's directory."""
        if self._dirs[key + "/"]:
            raise InvalidKey(f"key {key!r} is a prefix of other keys")
        for i in range(1, len(parts)):
            above = "/".join(parts[:i])
            if above in self._objects:
                raise InvalidKey(f"{above!s} is an object; it cannot also be a prefix")

    def _count_dirs(self, parts: list[str], n: int) -> None:
        for i in range(1, len(parts)):
            d = "/".join(parts[:i]) + "/"
            self._dirs[d] += n
            if not self._dirs[d]:
                del self._dirs[d]

    # -- the interface -----------------------------------------------------------

    async def put(self, key: str, data: Body, *, if_match: str | None = None,
                  if_none_match: bool = False, pace: Callable[[int], None] | None = None) -> str:
        check_put_args(if_match, if_none_match)
        parts = check_key(key)
        fault = await self._enter("put", key)
        body = b"".join(bytes(p) for p in body_parts(data))
        current = self._objects.get(key)
        if if_none_match and current is not None:
            raise PreconditionFailed(key, f"key {key!r} already exists")
        if if_match is not None:
            if current is None:
                raise PreconditionFailed(key, f"key {key!r} does not exist")
            if current[1] != if_match:
                raise PreconditionFailed(key, f"key {key!r} has etag {current[1]}, not {if_match}")
        if current is None:
            self._check_prefixes(key, parts)
            self._count_dirs(parts, 1)
        etag = _etag(body)
        self._objects[key] = (body, etag)     # ``pace`` is ignored: no write to spread out
        self._exit(fault, "put", key)
        return etag

    async def get_with_etag(self, key: str) -> tuple[bytes, str]:
        check_key(key)
        fault = await self._enter("get", key)
        found = self._lookup(key)
        self._exit(fault, "get", key)
        return found

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        check_range(start, end)
        check_key(key)
        fault = await self._enter("get_range", key)
        data, _ = self._lookup(key)
        self._exit(fault, "get_range", key)
        return data[start:end]

    async def get_range_parts(self, key: str, start: int, end: int | None, part_size: int) -> list:
        check_range(start, end)
        if part_size <= 0:
            raise ValueError("part_size must be > 0")
        check_key(key)
        fault = await self._enter("get_range", key)
        data, _ = self._lookup(key)
        self._exit(fault, "get_range", key)
        end = len(data) if end is None else min(end, len(data))
        return [data[s:min(s + part_size, end)] for s in range(start, end, part_size)]

    async def head(self, key: str) -> ObjectInfo:
        check_key(key)
        fault = await self._enter("head", key)
        data, etag = self._lookup(key)
        self._exit(fault, "head", key)
        return ObjectInfo(key, len(data), etag)

    async def list(self, prefix: str = "") -> list[str]:
        fault = await self._enter("list", prefix)
        keys = sorted((k for k in self._objects if k.startswith(prefix)), key=lambda k: k.encode())
        self._exit(fault, "list", prefix)
        return keys

    async def list_info(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        fault = await self._enter("list", prefix)
        keys = sorted((k for k in self._objects if k.startswith(prefix)), key=lambda k: k.encode())
        infos = [ObjectInfo(k, len(self._objects[k][0]), self._objects[k][1]) for k in keys]
        self._exit(fault, "list", prefix)
        return infos

    async def delete(self, key: str) -> None:
        parts = check_key(key)
        fault = await self._enter("delete", key)
        if self._objects.pop(key, None) is not None:
            self._count_dirs(parts, -1)
        self._exit(fault, "delete", key)

    async def close(self) -> None:
        """Nothing to release: the objects stay, and so does the store's use."""
