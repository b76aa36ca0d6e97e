"""An in-process cluster for tests: N real brokers in one process over one store.

franz-go's kfake and SlateDB drive a cluster from a test: control hooks to
move a partition, add or remove a node or intercept a request, an injected
clock so leases expire without sleeping, failure points, and a seed that
replays a run. This is ours.

    async with ClusterRig(tmp_path, seed=7) as rig:        # 3 brokers, started
        resp = await rig.request(1, CreateTopicsRequest(...), version=7)
        await rig.advance(2.0)                              # one heartbeat everywhere
        rig.drop(2, ApiKey.Produce)                         # broker 2 never answers the next one
        await rig.move_partition("clicks", 0, to_node=3)
        await rig.remove_broker(1, clean=False)             # as if SIGKILLed

What is shared, what is each broker's own:

- one ``MemoryObjectStore`` (``rig.store``; its ``fail``/``delay`` hooks
  reach every broker, or one with ``when=rig.on_node(n)``) and one
  ``ManualClock`` (``rig.clock``): time moves only in ``advance``;
- each broker is a real ``broker.Broker`` (node.id 1..N, its own data dir
  and WAL under tmp_path, advertised as 127.0.0.1:9000+N; no sockets);
- ``rig.rng`` (``random.Random(seed)``) for any choice a scenario makes; the
  store interleaves racing operations from its own stream of the same seed;
- ``rig.trace``: one line per control action, request (with its error codes)
  and ownership delta a broker applied, stamped with the clock, so two runs
  of one seed can be compared line by line.

Time. Cluster heartbeats are timers on the clock. ``advance(s)`` moves the
clock from one due timer to the next and after each lets the event loop run
until the rig is quiet: no heartbeat, rig request or partition claim still
running. Work that sleeps on the clock (a delayed request or store
operation) counts as quiet; so does work that waits for it through a task
the rig does not know of, once nothing moved for CLOCK_QUIET (0.2 s of wall
time, spent only then). Background loops that use wall time (the
upload, merge, GC) are idled by the default overrides (intervals of
an hour, ``s3.upload.bytes`` far above anything a test writes); upload with
``rig.upload(node)``. Still on the event loop's own timers, not the clock:
group-coordinator sessions, Fetch long polls, the claim retry back-off.

Requests. ``request(node, req, version=)`` encodes ``req`` as a client would,
decodes the frame and calls the API table's handler exactly as the server's
``KafkaConnection._dispatch``/``_run`` do, then encodes the response and
decodes it as a client would: the test sees what a client sees. Hooks per
broker and API key: ``drop`` (the caller gets ``RequestDropped``; with
``processed=True`` the handler ran first and only its answer is lost) and
``delay`` (the request waits on the clock, so it resolves in ``advance``:
start it as a task, then advance).

Failure points. Everything the rig runs for a broker (start, requests,
uploads, close) runs with ``broker.failpoints.current_node`` set to its
node id, so ``failpoints.arm(name, node)`` fires for that broker alone. The
rig disarms every failpoint when it stops.

Moving a partition. ``reassign`` sets a move's target, as
AlterPartitionReassignments does (docs/cluster.md section 7): the owner hands
the partition off on its next heartbeat (seal, upload, flip), the new owner
takes it on its next. ``move_partition`` only changes ownership in the
metadata document (owner := to_node, epoch + 1, one conditional update), as
an unclean election would: upload the old owner's data first
(``rig.upload``) or the new owner will not have it.
"""
from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.protocol.api_key import ApiKey
from wire import encode_request, response_class

from broker import failpoints
from broker.apis import API_TABLE, RequestContext, load_all
from broker.broker import Broker
from broker.clock import ManualClock
from broker.cluster import MetadataStore, OwnershipDelta
from broker.config import BrokerConfig
from broker.network.protocol import null_field, parse_request_header, peek_api
from objectstore import MemoryObjectStore

log = logging.getLogger(__name__)

# Background work on wall-clock intervals stays idle; the rig triggers it.
DEFAULT_OVERRIDES: dict[str, Any] = {
    "s3.upload.interval.ms": 3_600_000,
    "s3.upload.bytes": 1 << 40,
    "s3.manifest.interval.ms": 3_600_000,
    "s3.merge.interval.ms": 3_600_000,
    "s3.gc.interval.ms": 3_600_000,
    "log.retention.check.interval.ms": 3_600_000,
    "offsets.retention.check.interval.ms": 3_600_000,
    "wal.segment.bytes": 1 << 20,
    # stop() halts brokers one by one; a drain is a scenario of its own
    "controlled.shutdown.enable": False,
    # moves happen when a scenario asks (a balancer scenario turns it on)
    "autobalancer.controller.enable": False,
}

SETTLE_LIMIT = 30.0      # wall seconds a settle may take before the rig calls it stuck
CLOCK_QUIET = 0.2        # wall seconds without progress after which work that waits on
                         # something waiting on the clock counts as quiet


class RigError(Exception):
    """The rig was used wrongly, or the cluster did not become quiet."""


class RequestDropped(Exception):
    """A ``drop`` hook took the request: the broker never answered it."""


@dataclass
class _Hook:
    api_key: int
    times: int
    drop: bool
    processed: bool = False
    seconds: float = 0.0


class ClusterRig:
    def __init__(self, tmp_path, *, seed: int, brokers: int = 3,
                 overrides: dict[str, Any] | None = None) -> None:
        load_all()
        self.root = Path(tmp_path)
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = ManualClock()
        self._t0 = self.clock.now_ms()
        self.store = MemoryObjectStore(rng=random.Random(f"{seed}/store"))
        self.overrides = {**DEFAULT_OVERRIDES, **(overrides or {})}
        self.initial_brokers = brokers
        # seconds between cluster heartbeats (broker.heartbeat.interval.ms)
        self.heartbeat = BrokerConfig.load(overrides=self._override_list(1))["broker.heartbeat.interval.ms"] / 1000
        self.brokers: dict[int, Broker] = {}
        self.trace: list[str] = []
        self._contexts: dict[int, contextvars.Context] = {}
        self._hooks: dict[int, list[_Hook]] = {}
        self._busy: dict[asyncio.Task, int] = {}     # heartbeats and requests running -> node
        self._on_clock: set[asyncio.Task] = set()    # tasks sleeping on the clock
        self._sleeps: set[asyncio.Future] = set()    # what they wait for
        self._went_on_clock: asyncio.Future | None = None   # set when a task starts sleeping
        self._next_node = 1
        self._cids = itertools.count(1)
        self.beat_notices = True     # deliver beat notices (notify.py) at once; False: all lost
        self.last_beat: dict[int, float] = {}   # node -> when (rig clock, s) its last beat PUT returned

    # ------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> "ClusterRig":
        await self.start()
        return self

    async def __aexit__(self, exc_type, *_: object) -> None:
        if exc_type is None:
            await self.stop()
        else:       # a failed test: tear down without waiting on anything
            for node in sorted(self.brokers):
                await self._teardown(node)
            failpoints.disarm_all()

    async def start(self) -> None:
        """Start the brokers one after another, then advance one heartbeat so
        that every broker has listed every other."""
        for _ in range(self.initial_brokers):
            await self.add_broker()
        await self.advance(self.heartbeat)

    async def stop(self) -> None:
        """Close every broker cleanly (upload, leave the cluster), in node order.
        Every hook is lifted first (store faults and delays, request hooks) and
        whatever sleeps on the clock resumes, so that nothing keeps a close waiting."""
        self.store.clear_faults()
        self.store.delay = None
        for hooks in self._hooks.values():
            hooks.clear()
        for fut in list(self._sleeps):
            if not fut.done():
                fut.set_result(None)
        try:
            for node in sorted(self.brokers):
                await self.remove_broker(node, clean=True)
        finally:
            for node in sorted(self.brokers):   # left by a close that failed
                await self._teardown(node)
            failpoints.disarm_all()

    def _override_list(self, node: int) -> list[str]:
        return [f"{k}={v}" for k, v in {**self.overrides, "node.id": node}.items()]

    async def add_broker(self, node: int | None = None) -> int:
        """Start a broker: a new node id, or ``node`` again on its data dir (a
        restart after ``remove_broker``). The others hear of it on their next
        heartbeat. Returns its node id."""
        if node is None:
            node = self._next_node
        elif node in self.brokers:
            raise RigError(f"node {node} is running")
        self._next_node = max(self._next_node, node + 1)
        data_dir = self.root / f"broker-{node}"
        restart = data_dir.exists()
        config = BrokerConfig.load(overrides=self._override_list(node))
        b = Broker(config, str(data_dir), store=self.store, advertised_host="127.0.0.1",
                   advertised_port=9000 + node, clock=self.clock)
        self._instrument(node, b)
        ctx = contextvars.copy_context()
        ctx.run(failpoints.current_node.set, node)
        self._contexts[node] = ctx
        self._hooks[node] = []
        self.brokers[node] = b
        self._log(f"{'restart' if restart else 'start'} node {node}")
        try:
            await self._run_as(node, b.start())
        except BaseException:
            await self._teardown(node)
            raise
        await self.settle()
        return node

    async def remove_broker(self, node: int, *, clean: bool = True) -> None:
        """``clean``: ``Broker.close`` (uploads everything, leaves the cluster,
        so the controller gives its partitions away). Otherwise a crash: its
        tasks and timers stop where they are; nothing is uploaded, the
        controller lease is not released, the registration stays (it still
        owns its partitions); the WAL keeps what was written (fsynced)."""
        self._live(node)
        self._log(f"remove node {node} ({'clean' if clean else 'crash'})")
        if not clean:
            await self._halt(node)
            return
        try:
            await self._run_as(node, self.brokers[node].close())
        except BaseException:
            await self._teardown(node)
            raise
        self._forget(node)
        await self.settle()

    async def _halt(self, node: int) -> None:
        """Stop a broker as a SIGKILL would (``Broker.halt``), and the rig's
        requests to it."""
        b = self.brokers[node]
        tasks = [t for t, n in self._busy.items() if n == node]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await b.halt()
        finally:
            self._forget(node)

    async def _teardown(self, node: int) -> None:
        """After a failure: halt what is left of the broker, never raising."""
        try:
            await self._halt(node)
        except Exception:
            log.exception("cluster rig: tearing down node %d", node)

    def _forget(self, node: int) -> None:
        self.brokers.pop(node, None)
        self._hooks.pop(node, None)
        for t in [t for t, n in self._busy.items() if n == node]:
            del self._busy[t]

    # -------------------------------------------------------------- running
    def _live(self, node: int) -> Broker:
        try:
            return self.brokers[node]
        except KeyError:
            raise RigError(f"node {node} is not running (running: {sorted(self.brokers)})") from None

    async def _run_as(self, node: int, coro, *, busy: bool = False):
        """Run ``coro`` as a task of broker ``node`` (its failpoint identity);
        ``busy``: settle waits for it."""
        task = asyncio.get_running_loop().create_task(coro, context=self._contexts[node].copy())
        if busy:
            self._busy[task] = node
        try:
            return await task
        finally:
            self._busy.pop(task, None)

    def _instrument(self, node: int, b: Broker) -> None:
        """Log every ownership delta the broker applies; let settle see heartbeats."""
        apply_delta = b.replicas.apply_delta

        def traced_apply_delta(delta: OwnershipDelta) -> None:
            self._log(f"node {node} applies {describe_delta(delta)}")
            apply_delta(delta)
        b.replicas.apply_delta = traced_apply_delta
        tick = b.cluster.tick

        async def tracked_tick() -> None:
            task = asyncio.current_task()
            self._busy[task] = node
            try:
                await tick()
            finally:
                self._busy.pop(task, None)
        b.cluster.tick = tracked_tick
        beat = b.cluster.membership.beat

        async def timed_beat(load: dict[str, float]) -> str:
            etag = await beat(load)
            self.last_beat[node] = self.clock.monotonic()
            return etag
        b.cluster.membership.beat = timed_beat     # type: ignore[method-assign]
        b.cluster.notifier.send_beat = self._deliver_beat     # type: ignore[method-assign]

    def _deliver_beat(self, endpoint: tuple[str, int], node: int, etag: str) -> None:
        """A beat notice, delivered at once to the broker advertising ``endpoint``
        (port 9000 + its node id), unless ``beat_notices`` is off."""
        to = self.brokers.get(endpoint[1] - 9000)
        if self.beat_notices and to is not None:
            to.cluster.membership.heard(node, etag)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the rig's clock (resolves in ``advance``)."""
        fut = asyncio.get_running_loop().create_future()
        handle = self.clock.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        task = asyncio.current_task()
        self._on_clock.add(task)
        self._sleeps.add(fut)
        if self._went_on_clock is not None and not self._went_on_clock.done():
            self._went_on_clock.set_result(None)
        try:
            await fut
        finally:
            self._on_clock.discard(task)
            self._sleeps.discard(fut)
            handle.cancel()

    def _running(self) -> list[asyncio.Task]:
        """Heartbeats, requests and partition claims still running, but those
        sleeping on the clock. (The claims are ReplicaManager._claims: its
        ``claims_settled`` waits for all of them, also for one sleeping on
        the clock, and that would never end.)"""
        tasks = list(self._busy)
        for b in self.brokers.values():
            tasks += b.replicas._claims
            tasks += b._shard_loads.values()
            if b.handoffs._task is not None:
                tasks.append(b.handoffs._task)
            tasks += [t for t in (b._recovered_task, b._rejoin_task, b.share_resets._task) if t is not None]
        return [t for t in tasks if not t.done() and t not in self._on_clock]

    async def settle(self) -> None:
        """Let the event loop run until the rig is quiet: no heartbeat,
        request or partition claim running, but those sleeping on the clock."""
        deadline = time.monotonic() + SETTLE_LIMIT
        while True:
            await asyncio.sleep(0)      # tasks just created take their first step
            running = self._running()
            if not running or not await self._wait(running, deadline):
                return

    async def _wait(self, tasks: list, deadline: float) -> bool:
        """Wait until one of ``tasks`` is done or another task starts sleeping
        on the clock: True (look again). False when nothing moved for
        CLOCK_QUIET while something sleeps on the clock (``tasks`` wait on
        it, through something the rig does not see): quiet."""
        went = self._went_on_clock = asyncio.get_running_loop().create_future()
        try:
            timeout = deadline - time.monotonic()
            if self._on_clock:
                timeout = min(timeout, CLOCK_QUIET)
            done, _ = await asyncio.wait([*tasks, went], timeout=max(timeout, 0),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._went_on_clock = None
            went.cancel()
        if done:
            return True
        if self._on_clock:
            return False
        raise RigError(f"not quiet after {SETTLE_LIMIT:.0f} s: {tasks}")

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, timer by timer, settling after each."""
        self._log(f"advance {seconds:g}s")
        await self.settle()     # what the caller just started sets its timers first
        end = self.clock.monotonic() + seconds
        for _ in range(100_000):
            due = self.clock.next_deadline()
            if due is None or due > end:
                break
            self.clock.advance(max(due - self.clock.monotonic(), 0.0))
            await self.settle()
        else:
            raise RigError("timers keep falling due: a timer that re-arms itself at 0 s?")
        self.clock.advance(max(end - self.clock.monotonic(), 0.0))
        await self.settle()

    # -------------------------------------------------------------- requests
    def drop(self, node: int, api_key: int, times: int = 1, *, processed: bool = False) -> None:
        """Broker ``node`` answers none of its next ``times`` requests of
        ``api_key``: ``request`` raises RequestDropped. ``processed``: the
        handler runs first (its effects happen), only the answer is lost."""
        self._live(node)
        self._hooks[node].append(_Hook(int(api_key), times, True, processed))
        self._log(f"drop node {node} {_api_name(api_key)} x{times}{' processed' if processed else ''}")

    def delay(self, node: int, api_key: int, seconds: float, times: int = 1) -> None:
        """Broker ``node``'s next ``times`` requests of ``api_key`` wait
        ``seconds`` on the clock before the handler runs."""
        self._live(node)
        self._hooks[node].append(_Hook(int(api_key), times, False, seconds=seconds))
        self._log(f"delay node {node} {_api_name(api_key)} {seconds:g}s x{times}")

    def _take_hooks(self, node: int, api_key: int) -> list[_Hook]:
        taken = []
        for h in self._hooks[node]:
            if h.api_key == api_key and h.times > 0:
                h.times -= 1
                taken.append(h)
        self._hooks[node] = [h for h in self._hooks[node] if h.times > 0]
        return taken

    async def request(self, node: int, request: Any, *, version: int | None = None, busy: bool = True) -> Any:
        """Send ``request`` to broker ``node`` (at ``version``, default the
        highest the broker supports); the decoded response, None for an acks=0
        produce. A handler's CloseConnection propagates (the server would
        close the connection)."""
        b = self._live(node)
        api = API_TABLE.get(request.API_KEY)
        if api is None:
            raise RigError(f"no handler for API key {request.API_KEY}")
        version = api.max_version if version is None else version
        if not api.min_version <= version <= api.max_version:
            raise RigError(f"{_api_name(api.key)} v{version} is not supported "
                           f"({api.min_version}-{api.max_version})")
        cid = next(self._cids)
        frame = memoryview(bytearray(encode_request(request, version, cid, client_id="rig")))[4:]
        # as KafkaConnection._dispatch, after the frame is read
        api_key, frame_version, _ = peek_api(frame)
        assert (api_key, frame_version) == (api.key, version)
        header = parse_request_header(frame, flexible=api.flexible(version))
        decoded = api.request.decode(frame[header.body_offset:], version=version)
        bad = null_field(api.request._struct, decoded, version)
        if bad:
            raise RigError(f"{_api_name(api.key)}: non-nullable field {bad} is null")
        ctx = RequestContext(b, header, version, cid, "/127.0.0.1")
        hooks = self._take_hooks(node, api.key)
        response = await self._run_as(node, self._serve(node, api, ctx, decoded, hooks), busy=busy)
        return response

    def start_request(self, node: int, request: Any, *, version: int | None = None) -> asyncio.Task:
        """``request`` as a task the rig does not wait for: one whose answer
        waits on other brokers' heartbeats (AlterShareGroupOffsets). Advance,
        then await the task."""
        return asyncio.get_running_loop().create_task(self.request(node, request, version=version, busy=False))

    async def _serve(self, node: int, api, ctx: RequestContext, request: Any, hooks: list[_Hook]):
        name = _api_name(api.key)
        for h in hooks:
            if not h.drop:
                await self.sleep(h.seconds)
        drop = next((h for h in hooks if h.drop), None)
        if drop is not None and not drop.processed:
            self._log(f"node {node} {name} dropped")
            raise RequestDropped(f"node {node} dropped {name} (correlation id {ctx.header.correlation_id})")
        response = await api.handler(ctx, request)
        if response is None:
            decoded = None
        else:   # as KafkaConnection._flush encodes it, then as a client decodes it
            parts = (response.encode_parts(ctx.version) if hasattr(response, "encode_parts")
                     else [response.encode(version=ctx.version)])
            body = b"".join(bytes(p) for p in parts)
            decoded = response_class(api.key, ctx.version).decode(body, version=ctx.version)
        if drop is not None:
            self._log(f"node {node} {name} processed, answer dropped")
            raise RequestDropped(f"node {node} dropped the answer to {name} "
                                 f"(correlation id {ctx.header.correlation_id})")
        self._log(f"node {node} {name} -> {error_codes(decoded)}")
        return decoded

    # --------------------------------------------------------------- control
    async def upload(self, node: int) -> bool:
        """One upload by broker ``node`` of everything it has, manifests
        recorded; True when nothing is left only in its WAL."""
        self._log(f"upload node {node}")
        return await self._run_as(node, self._live(node).tiering.upload.upload_once(force=True), busy=True)

    async def reassign(self, topic: str, index: int, to_node: int | None, *, via: int | None = None) -> str | None:
        """Set (or with None cancel) the move of ``topic``-``index`` to
        ``to_node``, written by broker ``via`` (default: the lowest running);
        returns None, or why it was refused."""
        node = via if via is not None else min(self.brokers)
        result = await self._run_as(node, self._live(node).cluster.reassign({(topic, index): to_node}), busy=True)
        self._log(f"reassign {topic}-{index} -> {to_node} via node {node}: {result[(topic, index)]}")
        return result[(topic, index)]

    async def move_partition(self, topic: str, index: int, to_node: int) -> int:
        """Give ``topic``-``index`` to ``to_node`` in the metadata document
        (owner := to_node, epoch + 1); returns the new epoch. Ownership only:
        no hand-off (see the module docstring); brokers learn of it on their
        next heartbeat."""
        moved: list[int] = []

        def change(image) -> None:
            t = image.topics.get(topic)
            if t is None or not 0 <= index < t.partitions:
                raise RigError(f"no partition {topic}-{index}")
            moved[:] = [t.owners[index], t.epochs[index] + 1]
            t.owners[index], t.epochs[index] = to_node, t.epochs[index] + 1
        await MetadataStore(self.store).update(change)
        self._log(f"move {topic}-{index} node {moved[0]} -> node {to_node} at epoch {moved[1]}")
        return moved[1]

    def on_node(self, node: int):
        """A ``when=`` predicate for the store's hooks: true in broker ``node``'s work."""
        return lambda: failpoints.current_node.get() == node

    def delay_store(self, op: str, key_prefix: str, seconds: float, *, node: int | None = None) -> None:
        """Store operations ``op`` ("*": any) on keys under ``key_prefix`` (by
        broker ``node``, or any) wait ``seconds`` on the clock from now on."""
        prev = self.store.delay

        def delay(o: str, key: str):
            if (op in ("*", o) and key.startswith(key_prefix)
                    and (node is None or failpoints.current_node.get() == node)):
                return self.sleep(seconds)
            return prev(o, key) if prev is not None else None
        self.store.delay = delay
        self._log(f"delay store {op} {key_prefix!r} {seconds:g}s" + (f" for node {node}" if node else ""))

    # ----------------------------------------------------------------- views
    def owners(self, topic: str, *, node: int | None = None) -> list[int]:
        """Partition owners of ``topic`` as broker ``node`` (default: the
        lowest running) last read them."""
        b = self._live(node if node is not None else min(self.brokers))
        return list(b.cluster.metadata.topics[topic].owners)

    @property
    def elapsed_ms(self) -> int:
        """Milliseconds on the rig's clock since the rig was made (the trace's ``t=``)."""
        return self.clock.now_ms() - self._t0

    def _log(self, line: str) -> None:
        self.trace.append(f"t={self.elapsed_ms} {line}")


def describe_delta(delta: OwnershipDelta) -> str:
    out = [f"+{g.topic.name}-{g.index}@{g.epoch}" for g in delta.gained]
    out += [f"-{loss.topic.name}-{loss.index}" for loss in delta.lost]
    out += [f"deleted:{t.name}" for t in delta.deleted_topics]
    out += [f"configs:{t.name}" for t in delta.changed_topics]
    return " ".join(out) or "(nothing)"


def error_codes(response: Any) -> list[int]:
    """Every error_code in a response, in order (the trace's summary of an answer)."""
    codes: list[int] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "error_code":
                    codes.append(x)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    if response is not None:
        walk(response.to_dict())
    return codes


def _api_name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return str(api_key)
