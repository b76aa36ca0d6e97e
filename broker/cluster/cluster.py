"""One home for "who owns what": the cluster as one broker sees it.

``Cluster`` owns the metadata document (topics, owners, epochs, producer-id
blocks), this broker's registration, and the controller lease. Handlers change
topics through it (every change is a conditional write to the bucket first);
the ReplicaManager learns what it hosts only from the ``OwnershipDelta``s it
emits (see ownership.py).

Start (``start``), with its object-store requests:

1. Load the metadata document (1 GET; 1 PUT if absent or migrated).
2. Register this broker (1 PUT, 1 LIST).
3. Claim what is ours in one metadata update (GET + PUT): every partition
   owned by this node, by nobody, or by a node that is not registered
   becomes ours at epoch + 1. The bump fences any earlier life of this
   broker still writing. Documents from before ownership existed carry no
   epochs: those partitions start from their manifest's epoch (1 GET each,
   once).
4. Take the controller lease if it is free (GET + PUT).
5. Emit the first delta: every partition we own, at its new epoch. With one
   broker that is "all partitions, epoch N".

Every ``broker.heartbeat.interval.ms``: re-read the metadata document if it
changed (HEAD, + GET when it did), PUT our beat and tell the controller its
etag (a datagram, notify.py), list the registrations (LIST), renew the
controller lease (one PUT; a standby GETs it once its expiry has passed); as controller, give
partitions whose owner is not registered (a broker that shut down cleanly,
or an id no longer used) to the registered brokers with the fewest.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import uuid
from typing import Awaitable, Callable

from objectstore import ManifestStore, ObjectStore, ObjectStoreError

from ..clock import Clock, TimerHandle
from ..config import TOPIC_CONFIGS, BrokerConfig, validate_topic_config
from ..store_errors import StoreErrors
from .controller import ControllerLease
from .membership import BrokerRegistration, Membership
from .metadata import NO_OWNER, ClusterImage, MetadataStore, Topic
from .notify import Notifier
from .ownership import OwnershipDelta, ownership_delta

log = logging.getLogger(__name__)

DeltaListener = Callable[[OwnershipDelta], None]


def _gap_after(gap: float, rates: dict[str, float], p: tuple[Topic, int]) -> float:
    return abs(gap - 2 * rates.get(f"{p[0].topic_id.hex}:{p[1]}", 0.0))


# bytes/s between the busiest and the idlest broker below which the balancer
# does not swap partitions (noise of an idle cluster)
BALANCE_MIN_GAP = 100_000.0


class TopicExists(Exception):
    pass


class UnknownTopic(Exception):
    pass


class Cluster:
    def __init__(self, config: BrokerConfig, store: ObjectStore, *, host: str, port: int,
                 clock: Clock) -> None:
        self.config = config
        self.node_id: int = config["node.id"]
        self.store = store
        self.clock = clock
        self.incarnation = uuid.uuid4().hex
        self.metadata = MetadataStore(store)
        self.membership = Membership(store, BrokerRegistration(
            self.node_id, host, port, self.incarnation, clock.now_ms(),
            wal="shared" if config["wal.shared.dir"] else config["wal.type"],
            wal_dir=config["wal.shared.dir"] or None),
            clock=clock, session_timeout_ms=config["broker.session.timeout.ms"])
        self.controller = ControllerLease(store, self.node_id, self.incarnation,
                                          lease_ms=config["broker.session.timeout.ms"])
        self._on_delta: DeltaListener | None = None
        self._pid_next = self._pid_end = 0
        self._pid_lock = asyncio.Lock()
        self._timer: TimerHandle | None = None
        self._tick_task: asyncio.Task | None = None
        self._stopped = False
        self._errors = StoreErrors(log)
        self.load_source: Callable[[], dict[str, float]] = dict   # bytes/s per partition, for the balancer
        # bound by the CLI next to the listener
        self.notifier = Notifier(self.metadata.refresh, self.membership.heard)
        self.drained = asyncio.Event()    # set once this broker is draining and owns nothing
        self._last_beat_ms = clock.now_ms()
        self.on_silence: Callable[[], Awaitable[object]] | None = None   # after a beat gap > the session
        # the dynamic broker configs of every version read or written, from the first load on
        self.metadata.listen(self._apply_dynamic_configs)

    # ------------------------------------------------------------------ start
    def set_endpoint(self, host: str, port: int) -> None:
        """The advertised endpoint, when it is known only once the listener is
        bound (``--listen HOST:0``); before ``start``, which registers it."""
        me = self.membership.me
        self.membership.me = dataclasses.replace(me, host=host, port=port)
        self.membership.brokers[me.node_id] = self.membership.me

    async def start(self, on_delta: DeltaListener, *, legacy_dir: str | None = None) -> OwnershipDelta:
        """Steps 1-5 of the module docstring; returns the first delta (also given to ``on_delta``)."""
        await self.metadata.load(offsets_partitions=self.config["offsets.topic.num.partitions"],
                                 legacy_dir=legacy_dir)
        await self.membership.register()
        legacy_epochs = await self._manifest_epochs_of_unclaimed()
        registered = set(self.membership.brokers)
        me = self.node_id

        def claim(image: ClusterImage) -> None:
            if me in image.draining:     # drained and stopped earlier: serving again
                image.draining.remove(me)
            for t in image.owned_topics():
                for i in range(t.partitions):
                    if t.owners[i] == me or t.owners[i] == NO_OWNER or t.owners[i] not in registered:
                        t.owners[i] = me
                        t.epochs[i] = max(t.epochs[i], legacy_epochs.get((t.topic_id.bytes, i), 0)) + 1
        image = await self._update(claim)
        await self._controller_tick()
        self._on_delta = on_delta
        self.metadata.listen(self._emit)
        delta = ownership_delta(None, image, me)
        on_delta(delta)
        self._schedule_tick()
        return delta

    async def _manifest_epochs_of_unclaimed(self) -> dict[tuple[bytes, int], int]:
        """Manifest epochs of partitions the document has never given an epoch
        (documents from before ownership): claims must go above them."""
        todo = [(t.topic_id.bytes, i) for t in self.metadata.topics.values()
                for i in range(t.partitions) if t.epochs[i] == 0]   # not the coordinator's: no manifests
        if not todo:
            return {}
        manifests = ManifestStore(self.store)
        sem = asyncio.Semaphore(32)

        async def epoch_of(key: tuple[bytes, int]) -> tuple[tuple[bytes, int], int]:
            async with sem:
                m, _ = await manifests.load(*key)
            return key, (m.epoch if m is not None else 0)
        return dict(await asyncio.gather(*(epoch_of(k) for k in todo)))

    async def change(self, change: Callable[[ClusterImage], None]) -> ClusterImage:
        """Change the metadata document with ``change`` (a pure function of the
        image, applied in place; it may run more than once), then notify the others."""
        return await self._update(change)

    async def _update(self, change: Callable[[ClusterImage], None]) -> ClusterImage:
        """Change the metadata document, then tell the other live brokers (a
        datagram each, notify.py) so they need not wait for their heartbeat."""
        image = await self.metadata.update(change)
        others = [(b.host, b.port) for n, b in self.membership.live().items() if n != self.node_id]
        self.notifier.send(others, image.generation)
        return image

    def _emit(self, old: ClusterImage | None, new: ClusterImage) -> None:
        delta = ownership_delta(old, new, self.node_id)
        if delta and self._on_delta is not None:
            self._on_delta(delta)
        if self.node_id in new.draining and not self.owns_anything():
            self.drained.set()

    def _apply_dynamic_configs(self, _old: ClusterImage | None, new: ClusterImage) -> None:
        self.config.set_dynamic(new.broker_configs.get("", {}), new.broker_configs.get(str(self.node_id), {}))

    def owns_anything(self) -> bool:
        me = self.node_id
        return any(o == me for t in self.metadata.image.owned_topics() for o in t.owners)

    async def stop(self, *, deregister: bool) -> None:
        """Stop the heartbeat; ``deregister`` (everything this broker held is
        in the bucket) lets the others take its partitions."""
        await self.halt()
        try:
            await self.controller.release()
            if deregister:
                await self.membership.deregister()
                if self.node_id in self.metadata.image.draining:   # drained: done with the list
                    await self.set_draining(self.node_id, False)
        except ObjectStoreError as exc:
            log.warning("cluster: could not deregister cleanly: %s", exc)

    async def halt(self) -> None:
        """Stop the heartbeat and touch the bucket no more: what a crash leaves
        behind (registration and lease stay until they are taken over)."""
        self._stopped = True
        self.notifier.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._tick_task is not None:
            self._tick_task.cancel()
            await asyncio.gather(self._tick_task, return_exceptions=True)

    # -------------------------------------------------------------- heartbeat
    def _schedule_tick(self) -> None:
        if self._stopped:
            return
        delay = self.config["broker.heartbeat.interval.ms"] / 1000
        now = self.clock.now_ms()
        if self.controller.is_mine(now):
            # The controller looks again when a live broker's session would run out,
            # not at the next heartbeat: detection is not later than it must be.
            expiry = self.membership.next_expiry_ms()
            if expiry is not None:
                delay = min(delay, max((expiry - now) / 1000 + 0.01, 0.05))
        self._timer = self.clock.call_later(delay, self._spawn_tick)

    def _spawn_tick(self) -> None:
        self._tick_task = asyncio.get_running_loop().create_task(self.tick())
        self._tick_task.add_done_callback(lambda _t: self._schedule_tick())

    async def tick(self) -> None:
        """One heartbeat (see the module docstring); errors are logged once per kind."""
        for what, step in (("metadata refresh", self.metadata.refresh),
                           ("liveness", self._beat),
                           ("membership", self.membership.refresh),
                           ("controller", self._controller_tick)):
            try:
                # A store call that hangs (the store just came back, a client retrying)
                # must not hold the next beat back past the session: others would
                # declare this broker dead.
                await asyncio.wait_for(step(), self.config["broker.session.timeout.ms"] / 3000)
                self._errors.ok(what)
            except asyncio.CancelledError:
                raise
            except asyncio.TimeoutError:
                self._errors.failed(what, ObjectStoreError(f"{what}: no answer within a third of the session"))
            except ObjectStoreError as exc:
                self._errors.failed(what, exc)

    async def _beat(self) -> None:
        now = self.clock.now_ms()
        silent = now - self._last_beat_ms > self.config["broker.session.timeout.ms"]
        etag = await self.membership.beat(self.load_source())
        self._last_beat_ms = now
        controller = self.membership.brokers.get(self.controller.holder)
        if controller is not None and controller.node_id != self.node_id:
            self.notifier.send_beat((controller.host, controller.port), self.node_id, etag)
        if silent and self.on_silence is not None:
            # Others may have declared us dead meanwhile (a pause, the store away):
            # look for a takeover before writing anything more (docs/failover.md §4).
            await self.on_silence()

    def _placeable(self, image: ClusterImage) -> set[int]:
        """Brokers that may be given partitions: live and not draining (if
        every live one is draining: the live ones)."""
        live = set(self.membership.live())
        return (live - set(image.draining)) or live

    async def _controller_tick(self) -> None:
        if not await self.controller.tick(self.clock.now_ms()):
            return
        registered = set(self.membership.brokers)
        live = set(self.membership.live())
        image = self.metadata.image
        if self.config["autobalancer.controller.enable"]:
            await self.membership.fetch_loads()      # the balancer weighs partitions by bytes/s
        if not self._controller_work(image, registered, live):
            return
        placed = [0]

        def decide(image: ClusterImage) -> None:
            placed[0] = self._controller_decide(image, registered, live)
        await self._update(decide)
        if placed[0]:
            log.info("controller: placed or moved %d partitions", placed[0])

    def _controller_work(self, image: ClusterImage, registered: set[int], live: set[int]) -> bool:
        """Whether ``_controller_decide`` would change anything (cheap: no write when idle)."""
        probe = ClusterImage.from_doc(image.to_doc())
        return self._controller_decide(probe, registered, live) > 0

    def _controller_decide(self, image: ClusterImage, registered: set[int], live: set[int]) -> int:
        """The controller's decisions, applied to ``image``; returns how many
        partitions were placed or given a target (docs/cluster.md §5, 8, 9)."""
        placeable = (live - set(image.draining)) or live
        if not placeable:
            return 0
        changed = 0
        load = self._load(image, placeable)
        draining = set(image.draining)
        # dead brokers whose WAL the others can read: their partitions are taken over
        dead = {n for n in registered - live
                if n in self.membership.brokers and self.membership.brokers[n].wal in ("s3", "shared")}
        for t in image.owned_topics():
            for i in range(t.partitions):
                owner, target = t.owners[i], t.targets[i]
                if owner in dead:                           # docs/failover.md §3 step 2
                    node = min(load, key=lambda n: (load[n], n))
                    t.take_over(i, node, image.generation + 1)
                    load[node] += 1
                    changed += 1
                    continue
                if owner not in registered:                 # nobody to hand it off: place it
                    node = min(load, key=lambda n: (load[n], n))
                    t.move_to(i, node)
                    load[node] += 1
                    changed += 1
                elif target != NO_OWNER and target not in placeable:
                    t.targets[i] = NO_OWNER                 # its target left or is draining
                    changed += 1
                # to a broker that is not draining itself (none may be live: then they stay)
                if t.owners[i] in draining and t.targets[i] == NO_OWNER and owner in live \
                        and placeable - draining:
                    node = min(load, key=lambda n: (load[n], n))
                    t.targets[i] = node
                    load[node] += 1
                    changed += 1
        if not changed and self.config["autobalancer.controller.enable"] and image.pending_moves() == 0:
            changed += self._balance(image, placeable)
        return changed

    def _balance(self, image: ClusterImage, nodes: set[int]) -> int:
        """Even out the partition count per broker (topics and coordinator
        partitions apart), choosing which to move by bytes/s (docs/cluster.md §8)."""
        if len(nodes) < 2:
            return 0
        rates: dict[str, float] = {}
        for load in self.membership.loads.values():
            rates.update(load)
        moves = 0
        for kind in (list(image.topics.values()), [image.offsets] if image.offsets is not None else []):
            mine: dict[int, list[tuple[Topic, int]]] = {n: [] for n in nodes}
            for t in kind:
                for i in range(t.partitions):
                    if t.owners[i] in mine:
                        mine[t.owners[i]].append((t, i))
            rate = {n: sum(rates.get(f"{t.topic_id.hex}:{i}", 0.0) for t, i in ps) for n, ps in mine.items()}
            while True:
                src = max(mine, key=lambda n: (len(mine[n]), -n))
                dst = min(mine, key=lambda n: (len(mine[n]), n))
                if len(mine[src]) - len(mine[dst]) <= 1:
                    break
                gap = rate[src] - rate[dst]
                # the one whose move brings the two brokers' bytes/s closest together
                pick = min(mine[src], key=functools.partial(_gap_after, gap, rates))
                mine[src].remove(pick)
                mine[dst].append(pick)
                r = rates.get(f"{pick[0].topic_id.hex}:{pick[1]}", 0.0)
                rate[src] -= r
                rate[dst] += r
                pick[0].targets[pick[1]] = dst
                moves += 1
            if moves == 0:        # counts even: weigh bytes/s (coordinator partitions have none)
                moves += self._swap_hot(mine, rate, rates)
        return moves

    @staticmethod
    def _swap_hot(mine: dict[int, list[tuple[Topic, int]]], rate: dict[int, float],
                  rates: dict[str, float]) -> int:
        """Counts even, bytes/s not: swap the busiest broker's hottest partition
        with the idlest broker's coldest one, if that at least halves the gap
        between them and the gap is real (above BALANCE_MIN_GAP and half the
        busiest broker's rate). Two moves, or none."""
        src = max(rate, key=lambda n: (rate[n], -n))
        dst = min(rate, key=lambda n: (rate[n], n))
        gap = rate[src] - rate[dst]
        if src == dst or gap < BALANCE_MIN_GAP or gap < rate[src] / 2 or not mine[src] or not mine[dst]:
            return 0

        def r(p: tuple[Topic, int]) -> float:
            return rates.get(f"{p[0].topic_id.hex}:{p[1]}", 0.0)
        hot, cold = max(mine[src], key=r), min(mine[dst], key=r)
        if abs(gap - 2 * (r(hot) - r(cold))) > gap / 2:
            return 0
        hot[0].targets[hot[1]] = dst
        cold[0].targets[cold[1]] = src
        return 2

    @staticmethod
    def _load(image: ClusterImage, nodes: set[int]) -> dict[int, int]:
        load = {n: 0 for n in nodes}
        for t in image.topics.values():
            for o in t.owners:
                if o in load:
                    load[o] += 1
        return load

    # ------------------------------------------------------------------ moves
    async def reassign(self, moves: dict[tuple[str, int], int | None]) -> dict[tuple[str, int], str | None]:
        """Set (node) or cancel (None) the target of each partition, in one
        metadata update (docs/cluster.md §7 step 1, §11). Per partition: None
        if done, else why not: "unknown", "not live", "none pending"."""
        results: dict[tuple[str, int], str | None] = {}

        def change(image: ClusterImage) -> None:
            results.clear()
            placeable = self._placeable(image)      # the draining list of this version, not the cache's
            for (name, i), node in moves.items():
                t = image.topics.get(name)
                if t is None or not 0 <= i < t.partitions:
                    results[(name, i)] = "unknown"
                elif node is None:
                    if t.targets[i] == NO_OWNER:
                        results[(name, i)] = "none pending"
                    else:
                        t.targets[i] = NO_OWNER
                        results[(name, i)] = None
                elif node == t.owners[i]:
                    t.targets[i] = NO_OWNER           # already there: nothing to move
                    results[(name, i)] = None
                elif node not in placeable:
                    results[(name, i)] = "not live"
                else:
                    t.targets[i] = node
                    results[(name, i)] = None
        await self._update(change)
        return dict(results)

    def reassignments(self) -> list[tuple[Topic, int, int, int]]:
        """Partitions with a move pending: (topic, index, owner, target)."""
        return [(t, i, t.owners[i], t.targets[i]) for t in self.metadata.topics.values()
                for i in range(t.partitions) if t.targets[i] != NO_OWNER]

    async def flip(self, moves: list[tuple[uuid.UUID, int, int, int]]) -> set[tuple[uuid.UUID, int]]:
        """The hand-off's last step (docs/cluster.md §7 step 4), for several
        partitions in one update: each (topic id, index, epoch, target) goes to
        its target at epoch + 1 if it is still ours at that epoch with that
        target. Returns the partitions that moved."""
        done: set[tuple[uuid.UUID, int]] = set()
        me = self.node_id

        def change(image: ClusterImage) -> None:
            done.clear()
            by_id = {t.topic_id: t for t in image.owned_topics()}
            for topic_id, i, epoch, target in moves:
                t = by_id.get(topic_id)
                if t is not None and i < t.partitions and t.owners[i] == me and t.epochs[i] == epoch \
                        and t.targets[i] == target:
                    t.move_to(i, target)
                    done.add((topic_id, i))
        await self._update(change)
        return done

    async def elect_unclean(self, parts: list[tuple[str, int]]) -> dict[tuple[str, int], str | None]:
        """Give each partition whose owner is not live to the live broker with
        the fewest, without the owner's hand-off (docs/cluster.md §10). Per
        partition: None if moved, else "unknown" or "not needed"."""
        live = set(self.membership.live())
        results: dict[tuple[str, int], str | None] = {}

        def change(image: ClusterImage) -> None:
            results.clear()
            load = self._load(image, self._placeable(image))   # this version's draining list
            for name, i in parts:
                t = image.topics.get(name)
                if t is None or not 0 <= i < t.partitions:
                    results[(name, i)] = "unknown"
                elif t.owners[i] in live or not load:
                    results[(name, i)] = "not needed" if t.owners[i] in live else "no live broker"
                else:
                    node = min(load, key=lambda n: (load[n], n))
                    t.move_to(i, node)
                    load[node] += 1
                    results[(name, i)] = None
        await self._update(change)
        return dict(results)

    async def recovered(self, parts: list[tuple[uuid.UUID, int, int]]) -> None:
        """Clear ``recover`` of partitions (topic id, index, epoch) this broker
        took over and recovered, in one update (docs/failover.md §3 step 7)."""
        me = self.node_id

        def change(image: ClusterImage) -> None:
            by_id = {t.topic_id: t for t in image.owned_topics()}
            for topic_id, i, epoch in parts:
                t = by_id.get(topic_id)
                if t is not None and i < t.partitions and t.owners[i] == me and t.epochs[i] == epoch:
                    t.recover[i] = None
        await self._update(change)

    def recovering_from(self, node: int) -> bool:
        """Whether some partition still waits to be recovered from ``node``'s WAL."""
        return any(src[0] == node for t in self.metadata.image.owned_topics() for r in t.recover
                   for src in r or ())

    async def rejoin(self) -> None:
        """This broker's WAL was fenced (it was declared dead): register again
        as a new incarnation (docs/failover.md §4)."""
        self.incarnation = uuid.uuid4().hex
        me = self.membership.me
        self.membership.me = dataclasses.replace(me, incarnation=self.incarnation,
                                                 registered_ms=self.clock.now_ms())
        self.membership.brokers[me.node_id] = self.membership.me
        await self.membership.register()
        await self.metadata.refresh()

        def reclaim(image: ClusterImage) -> None:
            # What is still ours (the balancer gave it back, or no takeover reached it):
            # taken over by ourselves, so what our fenced life acknowledged is replayed.
            for t in image.owned_topics():
                for i in range(t.partitions):
                    if t.owners[i] == self.node_id:
                        t.take_over(i, self.node_id, image.generation + 1)
        await self._update(reclaim)

    async def set_draining(self, node: int, draining: bool) -> None:
        """Add ``node`` to (or remove it from) the brokers being emptied (§9)."""
        def change(image: ClusterImage) -> None:
            if draining and node not in image.draining:
                image.draining.append(node)
            elif not draining and node in image.draining:
                image.draining.remove(node)
        await self._update(change)

    # ----------------------------------------------------------------- topics
    async def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None,
                           owners: list[int] | None = None) -> Topic:
        """Add a topic, its partitions placed on the registered brokers with the
        fewest (ties: lowest id), or on ``owners`` (one node per partition: an
        explicit replica assignment); raises TopicExists."""
        configs = dict(configs or {})
        for k, v in configs.items():
            validate_topic_config(k, v)
        topic_id = uuid.uuid4()
        nodes = self._placeable(self.metadata.image)
        if owners is not None:
            partitions = len(owners)

        def add(image: ClusterImage) -> None:
            if name in image.topics:
                raise TopicExists(name)
            placed = list(owners) if owners is not None else self._place(image, nodes, partitions)
            image.topics[name] = Topic(name, topic_id, partitions, configs, placed, [1] * partitions)
        image = await self._update(add)
        log.info("created topic %s with %d partitions", name, partitions)
        return image.topics[name]

    def _place(self, image: ClusterImage, nodes: set[int], count: int) -> list[int]:
        """Owners for ``count`` new partitions: each on the broker with the fewest."""
        load = self._load(image, nodes)
        owners = []
        for _ in range(count):
            node = min(load, key=lambda n: (load[n], n))
            owners.append(node)
            load[node] += 1
        return owners

    async def delete_topic(self, name: str) -> Topic:
        gone: list[Topic] = []

        def remove(image: ClusterImage) -> None:
            if name not in image.topics:
                raise UnknownTopic(name)
            gone[:] = [image.topics.pop(name)]
            for key in [k for k in image.share_resets if k.startswith(f"{gone[0].topic_id}:")]:
                del image.share_resets[key]     # share-group resets nobody will apply
        await self._update(remove)
        log.info("deleted topic %s", name)
        return gone[0]

    async def add_partitions(self, name: str, count: int, owners: list[int] | None = None) -> None:
        """Grow the topic to ``count`` partitions, the new ones placed as
        ``create_topic`` places them (or on ``owners``, one per new partition)."""
        nodes = self._placeable(self.metadata.image)

        def grow(image: ClusterImage) -> None:
            t = image.topics.get(name)
            if t is None:
                raise UnknownTopic(name)
            if t.partitions >= count:
                return
            new = list(owners) if owners is not None else self._place(image, nodes, count - t.partitions)
            for node in new[:count - t.partitions]:
                t.owners.append(node)
                t.epochs.append(1)
                t.targets.append(NO_OWNER)
                t.recover.append(None)
                t.partitions += 1
        await self._update(grow)

    async def alter_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace the topic's overrides by ``configs`` (already validated)."""
        def alter(image: ClusterImage) -> None:
            t = image.topics.get(name)
            if t is None:
                raise UnknownTopic(name)
            t.configs = dict(configs)
        await self._update(alter)

    async def alter_broker_configs(self, resource: str, change: Callable[[dict[str, str]], None]) -> None:
        """Change the dynamic broker configs of ``resource`` ("" for the cluster-wide
        default, else a node id) with ``change`` (a pure function of the stored
        configs, applied in place: it may run more than once). Every broker
        applies the result on its next read of the document."""
        def alter(image: ClusterImage) -> None:
            configs = dict(image.broker_configs.get(resource, {}))
            change(configs)
            image.broker_configs[resource] = configs
            if not configs:
                del image.broker_configs[resource]
        await self._update(alter)

    async def alter_group_configs(self, group: str, change: Callable[[dict[str, str]], None]) -> None:
        """Change the configs of group ``group`` as ``alter_broker_configs`` does."""
        def alter(image: ClusterImage) -> None:
            configs = dict(image.group_configs.get(group, {}))
            change(configs)
            image.group_configs[group] = configs
            if not configs:
                del image.group_configs[group]
        await self._update(alter)

    def registered(self) -> set[int]:
        """The registered brokers (live or not), as last listed."""
        return set(self.membership.brokers)

    def usable(self) -> set[int]:
        """Brokers a new partition may be owned by: live and not draining."""
        return set(self.membership.live()) - set(self.metadata.image.draining)

    def topic_config(self, topic: Topic, name: str):
        if name in topic.configs:
            return TOPIC_CONFIGS[name][0](topic.configs[name])
        return self.config.topic_default(name)

    # ------------------------------------------------------------- producers
    async def next_producer_id(self) -> int:
        async with self._pid_lock:
            if self._pid_next >= self._pid_end:
                self._pid_next, self._pid_end = await self.metadata.reserve_producer_ids()
            pid = self._pid_next
            self._pid_next += 1
            return pid

    # ------------------------------------------------------------------ reads
    def leader(self, topic: Topic, index: int) -> tuple[int, int]:
        """(leader node id, leader epoch); node -1 when its owner is not live."""
        owner = topic.owners[index]
        return (owner if self.membership.is_live(owner) else -1), topic.epochs[index]

    def coordinator(self, shard: int) -> tuple[BrokerRegistration | None, int]:
        """Who coordinates the groups of coordinator partition ``shard`` (its
        registration, None if its owner is not live) and at which epoch."""
        offsets = self.metadata.image.offsets
        if offsets is None or not 0 <= shard < offsets.partitions:
            return None, 0
        owner = offsets.owners[shard]
        return (self.membership.brokers.get(owner) if self.membership.is_live(owner) else None,
                offsets.epochs[shard])

    @property
    def coordinator_partitions(self) -> int:
        offsets = self.metadata.image.offsets
        return offsets.partitions if offsets is not None else self.config["offsets.topic.num.partitions"]

    def brokers(self) -> list[BrokerRegistration]:
        """The live brokers, by node id."""
        return sorted(self.membership.live().values(), key=lambda b: b.node_id)

    @property
    def controller_id(self) -> int:
        holder = self.controller.holder
        return holder if self.membership.is_live(holder) else self.node_id
