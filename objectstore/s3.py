"""ObjectStore on S3 or an S3-compatible server (MinIO), via aiobotocore.

Endpoint, region and credentials come from the standard AWS chain, exactly as
the AWS CLI finds them: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (or a
profile's ``endpoint_url``), ``AWS_REGION`` / ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, config and
credentials files, ... Constructor arguments override the chain.

With a custom endpoint (MinIO and most S3-compatible servers) requests use
path-style addressing (``http://host:port/bucket/key``); against AWS itself
botocore's default (virtual-hosted) applies. Without any configured region,
``us-east-1`` is used (SigV4 needs one; MinIO accepts it).

Conditional writes use PutObject's ``IfNoneMatch="*"`` / ``IfMatch=etag``
(botocore >= 1.35.x has both). Error mapping: 412 ``PreconditionFailed`` and
409 ``ConditionalRequestConflict`` -> PreconditionFailed; ``NoSuchKey`` on an
If-Match put (AWS's answer for a missing key) -> PreconditionFailed too, so a
losing conditional put always raises the same exception; 404 elsewhere ->
NotFound; 5xx, throttling, connection and timeout errors -> StoreUnavailable.
"""
from __future__ import annotations

import asyncio
import bisect
import builtins
import contextlib
import io
import itertools
import os
from typing import Any, Callable, NoReturn

import aiohttp
import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from .base import (
    Body,
    NotFound,
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
    StoreUnavailable,
    body_parts,
    check_key,
    check_put_args,
    check_range,
    split_parts,
)

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                      "RequestTimeTooSkewed", "XMinioServerNotInitialized", "503", "500"}


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return prefix + "/" if prefix else ""


async def _read_body(body, length: int | None, part_size: int | None = None) -> list:
    """A response body read chunk by chunk into preallocated buffers of
    ``part_size`` bytes (one buffer when None).

    aiohttp's ``read()`` keeps every chunk and joins them at the end: one copy
    of the whole range while holding the GIL, in the event loop (~3 ms per
    4 MiB block, ~50 ms per 64 MiB chunk that a merge reads). Copied as
    each chunk arrives, the same bytes never stall the loop for long; and
    in parts, the block cache keeps each block without copying it again.
    """
    content = getattr(getattr(body, "raw_stream", None), "content", None)
    if length is None or content is None:
        data = await body.read()
        return split_parts(data, part_size or max(len(data), 1))
    step = part_size or length
    parts: list[bytearray] = []
    left = length                  # bytes not yet given a part
    cur, pos, received = None, 0, 0
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        received += len(chunk)
        cv = memoryview(chunk)
        while cv:
            if cur is None or pos == len(cur):
                if left <= 0:
                    raise aiohttp.ClientPayloadError(f"body longer than its Content-Length {length}")
                cur, pos = bytearray(min(step, left)), 0
                parts.append(cur)
                left -= len(cur)
            n = min(len(cv), len(cur) - pos)
            cur[pos:pos + n] = cv[:n]
            pos += n
            cv = cv[n:]
    if received != length:
        raise aiohttp.ClientPayloadError(f"body of {received} bytes, Content-Length {length}")
    return parts


class _PartsReader(io.RawIOBase):
    """A read-only, seekable file over buffers back to back (a put body),
    without joining them (botocore rewinds the body to retry a request)."""

    def __init__(self, parts: list[memoryview]) -> None:
        self._parts = parts
        self._starts = list(itertools.accumulate((len(p) for p in parts), initial=0))
        self.length = self._starts[-1]
        self._offset = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._offset

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._offset, io.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._offset = base + offset
        return self._offset

    def readinto(self, b) -> int:
        out = memoryview(b).cast("B")
        n = 0
        i = bisect.bisect_right(self._starts, self._offset) - 1
        while n < len(out) and self._offset < self.length:
            part, pos = self._parts[i], self._offset - self._starts[i]
            take = min(len(out) - n, len(part) - pos)
            out[n:n + take] = part[pos:pos + take]
            n += take
            self._offset += take
            i += 1
        return n


class S3ObjectStore(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None,
                 addressing_style: str | None = None, page_size: int = 1000,
                 max_pool_connections: int = 32, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0, retries: dict[str, Any] | None = None,
                 aws_access_key_id: str | None = None,
                 aws_secret_access_key: str | None = None) -> None:
        if not bucket:
            raise ValueError("S3 object store needs a bucket")
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be within 1..1000")
        self.bucket = bucket
        self.prefix = _normalize_prefix(prefix)
        self.page_size = page_size
        self._session = get_session()
        if profile:
            self._session.set_config_variable("profile", profile)
        self._endpoint_url = endpoint_url
        self._region = region or self._session.get_config_variable("region") or "us-east-1"
        if addressing_style is None:
            addressing_style = "path" if self._custom_endpoint() else "auto"
        config: dict[str, Any] = dict(
            # Body hashing (SigV4 payload SHA-256, flexible CRC32 checksums) runs
            # in the event loop in aiobotocore: 100+ ms for a merged object,
            # which every produce ack on the broker would wait behind. Bodies are
            # covered by Sluice's own crc32c (data-object index, chunk and batch
            # CRCs, verified on every read) and by TLS on real S3, so they go
            # unsigned and without botocore's extra checksums.
            s3={"addressing_style": addressing_style, "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        if retries is not None:
            config["retries"] = retries
        self._config = AioConfig(**config)
        self._credentials = {}
        if aws_access_key_id is not None:
            self._credentials = dict(aws_access_key_id=aws_access_key_id,
                                     aws_secret_access_key=aws_secret_access_key)
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._stack: contextlib.AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _custom_endpoint(self) -> bool:
        if self._endpoint_url:
            return True
        if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
            return True
        try:
            scoped = self._session.get_scoped_config()
        except botocore.exceptions.ProfileNotFound:
            return False
        s3_section = scoped.get("s3")
        return bool(scoped.get("endpoint_url")
                    or (isinstance(s3_section, dict) and s3_section.get("endpoint_url")))

    async def _get_client(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    stack = contextlib.AsyncExitStack()
                    kwargs: dict[str, Any] = dict(region_name=self._region, config=self._config,
                                                  **self._credentials)
                    if self._endpoint_url:
                        kwargs["endpoint_url"] = self._endpoint_url
                    try:
                        self._client = await stack.enter_async_context(
                            self._session.create_client("s3", **kwargs))
                    except botocore.exceptions.BotoCoreError as e:
                        raise ObjectStoreError(f"cannot create the S3 client: {e}") from e
                    self._stack = stack
        return self._client

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    def _key(self, key: str) -> str:
        check_key(key)
        return self.prefix + key

    # -- error mapping ---------------------------------------------------------

    def _raise(self, e: Exception, op: str, key: str, conditional: bool = False) -> NoReturn:
        """Re-raise ``e`` as one of our exceptions (anything unknown as it is)."""
        mapped = self._map(e, op, key, conditional)
        if mapped is None:
            raise e
        raise mapped from e

    def _map(self, e: Exception, op: str, key: str, conditional: bool) -> Exception | None:
        if isinstance(e, botocore.exceptions.ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            msg = f"{op} {key!r}: {code or status}: {err.get('Message', '')}".rstrip(": ")
            if code in _PRECONDITION_CODES or status == 412:
                return PreconditionFailed(key, msg)
            if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
                # AWS answers If-Match on a missing key with 404 NoSuchKey.
                return PreconditionFailed(key, msg) if conditional else NotFound(key, msg)
            if conditional and status == 409:
                return PreconditionFailed(key, msg)
            if code in _UNAVAILABLE_CODES or status >= 500:
                return StoreUnavailable(msg)
            return ObjectStoreError(msg)
        if isinstance(e, (botocore.exceptions.ConnectionError,
                          botocore.exceptions.HTTPClientError,
                          aiohttp.ClientError, asyncio.TimeoutError, OSError)):
            return StoreUnavailable(f"{op} {key!r}: {type(e).__name__}: {e}")
        if isinstance(e, botocore.exceptions.BotoCoreError):
            return ObjectStoreError(f"{op} {key!r}: {e}")
        return None

    # -- operations --------------------------------------------------------------

    async def put(self, key: str, data: Body, *, if_match: str | None = None,
                  if_none_match: bool = False, pace: Callable[[int], None] | None = None) -> str:
        # ``pace`` is ignored: the bytes go to the service, whose disk is not the WAL's
        check_put_args(if_match, if_none_match)
        # botocore turns a bytes Body into a BytesIO, and aiohttp's BytesIOPayload
        # then calls getbuffer(), which copies the whole body in the event loop
        # (50 ms for 64 MB). A reader over the parts is streamed in chunks
        # instead, read in aiohttp's executor; the parts are never joined.
        reader = _PartsReader(body_parts(data))
        params: dict[str, Any] = dict(Bucket=self.bucket, Key=self._key(key),
                                      Body=io.BufferedReader(reader, 1 << 16),
                                      ContentLength=reader.length)
        if if_none_match:
            params["IfNoneMatch"] = "*"
        if if_match is not None:
            params["IfMatch"] = if_match
        client = await self._get_client()
        try:
            resp = await client.put_object(**params)
        except Exception as e:
            self._raise(e, "put", key, conditional=if_none_match or if_match is not None)
        return resp["ETag"]

    async def get_with_etag(self, key: str) -> tuple[bytes, str]:
        client = await self._get_client()
        try:
            resp = await client.get_object(Bucket=self.bucket, Key=self._key(key))
            async with resp["Body"] as body:
                data = await body.read()
        except Exception as e:
            self._raise(e, "get", key)
        return data, resp["ETag"]

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        parts = await self._get_range(key, start, end, None)
        return parts[0] if parts else b""

    async def get_range_parts(self, key: str, start: int, end: int | None, part_size: int) -> list:
        if part_size <= 0:
            raise ValueError("part_size must be > 0")
        return await self._get_range(key, start, end, part_size)

    async def _get_range(self, key: str, start: int, end: int | None, part_size: int | None) -> list:
        check_range(start, end)
        if end == start:
            # An empty range cannot be asked for over HTTP; still say NotFound
            # for a missing key, as the filesystem backend does.
            await self.head(key)
            return []
        rng = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        client = await self._get_client()
        try:
            resp = await client.get_object(Bucket=self.bucket, Key=self._key(key), Range=rng)
            async with resp["Body"] as body:
                return await _read_body(body, resp.get("ContentLength"), part_size)
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvalidRange":
                return []       # start at or past the end of an existing object
            self._raise(e, "get_range", key)
        except Exception as e:
            self._raise(e, "get_range", key)

    async def head(self, key: str) -> ObjectInfo:
        client = await self._get_client()
        try:
            resp = await client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            self._raise(e, "head", key)
        return ObjectInfo(key, resp["ContentLength"], resp["ETag"])

    async def delete(self, key: str) -> None:
        client = await self._get_client()
        try:
            await client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            self._raise(e, "delete", key)

    async def list(self, prefix: str = "") -> list[str]:
        cut = len(self.prefix)
        return [o["Key"][cut:] for o in await self._list_contents(prefix)]

    async def list_info(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        # ListObjectsV2 gives each object's ETag quoted, as HeadObject and
        # PutObject do (the contract test checks it against MinIO).
        cut = len(self.prefix)
        return [ObjectInfo(o["Key"][cut:], o["Size"], o["ETag"])
                for o in await self._list_contents(prefix)]

    async def _list_contents(self, prefix: str) -> builtins.list[dict[str, Any]]:
        """ListObjectsV2's ``Contents`` entries under ``prefix``, every page
        (one request per page), in the order S3 lists them."""
        client = await self._get_client()
        contents: list[dict[str, Any]] = []
        params: dict[str, Any] = dict(Bucket=self.bucket, Prefix=self.prefix + prefix,
                                      MaxKeys=self.page_size)
        while True:
            try:
                resp = await client.list_objects_v2(**params)
            except Exception as e:
                self._raise(e, "list", prefix)
            contents.extend(resp.get("Contents", ()))
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                break
            params["ContinuationToken"] = token
        return contents
