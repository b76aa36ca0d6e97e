"""Network server: one protocol object per connection, responses in request order.

Each complete frame becomes a task right away (so pipelined produce requests
do not wait behind each other's fsync), and its task joins the connection's
FIFO. Responses are written strictly from the head of that FIFO, which is
Kafka's per-connection ordering guarantee. Kafka also *processes* a
connection's requests in order, so only a produce whose predecessors are all
produces already appending starts at once; any other request first waits for
every earlier request on its connection to finish (a Fetch or ListOffsets
pipelined behind a Produce sees that produce's records). A request the broker
cannot parse, an unknown API key or an oversized frame closes the connection:
there is no correlation id we could trust to answer. As in Kafka, requests
that arrived before it are still answered first; nothing after it is read.

A client that closes its end (or resets it) does not take back the requests
it had sent: as Kafka's Selector closes a remote-closed channel gracefully
(its outstanding receives are still processed, one by one, in order), the
connection's pending requests still run to the end and only their answers
are dropped. This matters to librdkafka: a consumer closing while its
JoinGroup is parked queues its LeaveGroup behind it, times the LeaveGroup
out and disconnects; Kafka reads and processes that LeaveGroup once the
join completes, so the member leaves then rather than at session expiry.
Only when the broker itself closes the connection (a handler failed, bad
input) is what remains dropped unprocessed. The connection's end
(``Broker.connection_closed``: share sessions) comes once its requests have
drained.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque

from kafka.protocol.api_key import ApiKey

from ..apis import API_TABLE, CloseConnection, RequestContext, load_all
from ..apis.api_versions import supported_versions
from ..broker import Broker
from ..errors import ErrorCode
from .protocol import FrameDecoder, ProtocolError, frame_response, null_field, parse_request_header, peek_api

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 128  # per connection; reading pauses above this
_conn_ids = itertools.count(1)
_API_NAMES = {k.value: k.name for k in ApiKey}


class KafkaConnection(asyncio.Protocol):
    def __init__(self, server: "KafkaServer") -> None:
        self.server = server
        self.broker = server.broker
        self.id = next(_conn_ids)
        self.decoder = FrameDecoder(self.broker.config["socket.request.max.bytes"])
        self.transport: asyncio.Transport | None = None
        self.client_host = ""
        self.pending: deque[tuple[asyncio.Task, int, int, bool, tuple[float, str]]] = deque()
        self.closed = False
        self.close_reason: str | None = None
        self._paused = False
        self._closing: str | None = None  # reason to close once pending requests are answered
        # Latest task that is not a produce started at once: later requests wait for it.
        self._blocking: asyncio.Task | None = None

    # ------------------------------------------------------------- lifecycle
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_host = f"/{peer[0]}" if isinstance(peer, tuple) and peer else ""
        self.server.connections.add(self)
        self.broker.metrics.connections.inc()

    def connection_lost(self, exc) -> None:
        closed_here = self.closed   # by close(): what it had not answered is dropped
        self.closed = True
        self.server.connections.discard(self)
        self.broker.metrics.connections.dec()
        if closed_here or not self.pending:
            self._cancel_pending()
            self.broker.connection_closed(self.id)
            return
        # The peer left: the requests it sent are still processed, in order (see the
        # module docstring); _flush drops their answers and ends the connection after.
        log.debug("connection %d: peer closed with %d requests pending; processing them",
                  self.id, len(self.pending))
        self.server.draining.add(self)

    def _cancel_pending(self) -> None:
        for task, *_ in self.pending:
            task.cancel()
        self.pending.clear()

    def close(self, reason: str, *, flush: bool = False) -> None:
        """Close now; ``flush`` first sends the answers already written."""
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            log.info("closing connection %d from %s: %s", self.id,
                     self.transport.get_extra_info("peername") if self.transport else "?", reason)
            if self.transport is not None:
                if flush:
                    self.transport.close()
                else:
                    self.transport.abort()

    def reject(self, reason: str) -> None:
        """Unparseable input: read no more, answer what came before it, then close."""
        if self.closed or self._closing:
            return
        self._closing = reason
        if self.transport is not None:
            self.transport.pause_reading()
        if not self.pending:
            self.close(reason, flush=True)

    # --------------------------------------------------------------- input
    def data_received(self, data: bytes) -> None:
        if self.closed or self._closing:
            return
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            frames, error = exc.frames, exc
        else:
            error = None
        for frame in frames:
            if self.closed or self._closing:
                return
            self._dispatch(frame)
        if error is not None:
            self.reject(str(error))
            return
        if len(self.pending) > MAX_IN_FLIGHT and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def _dispatch(self, frame: bytes) -> None:
        received = time.perf_counter()
        try:
            api_key, version, correlation_id = peek_api(frame)
        except ProtocolError as exc:
            self.reject(str(exc))
            return
        api = API_TABLE.get(api_key)
        if api is None:
            self.reject(f"unknown api key {api_key}")
            return
        if not api.min_version <= version <= api.max_version:
            if api_key == ApiKey.ApiVersions:
                # KIP-511: answer v0 with UNSUPPORTED_VERSION and what we support.
                resp = supported_versions(0, ErrorCode.UNSUPPORTED_VERSION)
                self._enqueue(_done(resp), correlation_id, 0, False, (received, "ApiVersions"))
                self.broker.metrics.request("ApiVersions", "UNSUPPORTED_VERSION")
                return
            self.reject(f"unsupported version {version} of {_API_NAMES.get(api_key, api_key)} "
                       f"(supported {api.min_version}-{api.max_version})")
            return
        try:
            header = parse_request_header(frame, flexible=api.flexible(version))
            request = api.request.decode(memoryview(frame)[header.body_offset:], version=version)
            bad = null_field(api.request._struct, request, version)
            if bad:
                raise ProtocolError(f"non-nullable field {bad} was serialized as null")
        except Exception as exc:  # truncated or garbled body
            self.reject(f"cannot decode {_API_NAMES.get(api_key)} v{version}: {exc!r}")
            return
        ctx = RequestContext(self.broker, header, version, self.id, self.client_host)
        loop = asyncio.get_running_loop()
        if api_key == ApiKey.Produce and (self._blocking is None or self._blocking.done()):
            task = loop.create_task(self._run(api, ctx, request))
        else:
            earlier = [t for t, *_ in self.pending if not t.done()]
            coro = self._run(api, ctx, request)
            task = loop.create_task(self._run_after(earlier, coro) if earlier else coro)
            self._blocking = task
        self._enqueue(task, correlation_id, version, api_key != ApiKey.ApiVersions and api.flexible(version),
                      (received, _API_NAMES.get(api_key, str(api_key))))

    @staticmethod
    async def _run_after(earlier: list[asyncio.Task], coro):
        try:
            await asyncio.wait(earlier)
        except BaseException:
            coro.close()
            raise
        return await coro

    async def _run(self, api, ctx: RequestContext, request):
        name = _API_NAMES.get(api.key, str(api.key))
        try:
            response = await api.handler(ctx, request)
        except asyncio.CancelledError:
            raise
        except CloseConnection:
            self.broker.metrics.request(name, "CLOSED")
            raise
        except Exception:
            log.exception("%s v%d handler failed", name, ctx.version)
            self.broker.metrics.request(name, "UNKNOWN_SERVER_ERROR")
            raise
        self.broker.metrics.request(name, _error_name(response))
        return response

    def _enqueue(self, task, correlation_id: int, version: int, flexible_header: bool,
                 timing: tuple[float, str]) -> None:
        self.pending.append((task, correlation_id, version, flexible_header, timing))
        task.add_done_callback(_retrieve)  # a failure after the connection is gone is not news
        task.add_done_callback(self._flush)

    # -------------------------------------------------------------- output
    def _flush(self, _task=None) -> None:
        # The responses ready now go out in one writelines: a group commit
        # completes several pipelined produces at once, one send for them all.
        out: list = []
        try:
            while self.pending and self.pending[0][0].done():
                task, correlation_id, version, flexible_header, (received, api_name) = self.pending.popleft()
                if self.closed:
                    continue
                if task.cancelled() or task.exception() is not None:
                    exc = None if task.cancelled() else task.exception()
                    self._write(out)
                    self.close(str(exc) if isinstance(exc, CloseConnection) else "request handler failed",
                               flush=True)
                    return
                response = task.result()
                if response is not None:  # None: acks=0 produce, no response
                    try:
                        if hasattr(response, "encode_parts"):  # hand-encoded, records not copied
                            parts = response.encode_parts(version)
                        else:
                            parts = [response.encode(version=version)]
                    except Exception:
                        log.exception("cannot encode %s v%d", type(response).__name__, version)
                        self._write(out)
                        self.close("response encoding failed", flush=True)
                        return
                    out += frame_response(correlation_id, parts, flexible_header=flexible_header)
                self.broker.metrics.request_time(api_name, time.perf_counter() - received)
        finally:
            self._write(out)
        if self.closed and not self.pending and self in self.server.draining:
            self.server.draining.discard(self)
            self.broker.connection_closed(self.id)
        if self._closing and not self.pending:
            self.close(self._closing, flush=True)
        if self._paused and len(self.pending) <= MAX_IN_FLIGHT // 2 and not self.closed \
                and not self._closing:
            self._paused = False
            self.transport.resume_reading()

    def _write(self, out: list) -> None:
        if out and not self.closed:
            self.transport.writelines(out)
            out.clear()


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


def _done(value) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _error_name(response) -> str:
    code = getattr(response, "error_code", 0) if response is not None else 0
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


class KafkaServer:
    def __init__(self, broker: Broker) -> None:
        load_all()
        self.broker = broker
        self.connections: set[KafkaConnection] = set()
        # closed by their peer, still processing the requests it had sent
        self.draining: set[KafkaConnection] = set()
        self._server: asyncio.base_events.Server | None = None

    async def bind(self, host: str, port: int) -> tuple[str, int]:
        """Bind and listen, not accepting yet (``serve``): with port 0 the broker
        learns its port before it registers it in the cluster."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: KafkaConnection(self), host, port,
                                                reuse_address=True, backlog=1024, start_serving=False)
        sock = self._server.sockets[0]
        bound_host, bound_port = sock.getsockname()[:2]
        return bound_host, bound_port

    async def serve(self) -> None:
        """Start accepting connections (those that queued since ``bind`` are taken first)."""
        assert self._server is not None
        await self._server.start_serving()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """``bind`` and ``serve`` at once."""
        bound = await self.bind(host, port)
        await self.serve()
        return bound

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, let in-flight requests answer, sync the WAL, close.
        Requests of connections their peers closed are not waited for (nobody
        reads their answers; a parked JoinGroup would hold shutdown): cancelled."""
        if self._server is not None:
            self._server.close()
        for c in list(self.draining):
            c._cancel_pending()
        self.draining.clear()
        tasks = [t for c in self.connections for t, *_ in c.pending]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_seconds)
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
        await self.broker.close()
