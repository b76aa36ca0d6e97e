"""Cooperative-sticky consumers, one leaving: does every partition keep one owner?

Issue 16 (item 5): three librdkafka consumers with
``partition.assignment.strategy=cooperative-sticky`` on a 6-partition topic,
one leaving after a few seconds; once the rebalance has settled the two
survivors must own the six partitions exactly once. Cooperative assignors
trust each member's owned partitions in its JoinGroup metadata, so a
coordinator that hands the leader stale metadata, or mishandles a join racing
a leave or a sync, shows here as a partition owned twice (or by nobody).

Shared by ``tests/e2e/test_group_conformance.py`` (a few rounds) and
``sluice bench groups --coop-leave N`` (many rounds, on Sluice and, with
``--coop-kafka``, on Apache Kafka). Every wait is bounded.
"""
from __future__ import annotations

import logging
import random
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaException, Producer

from .common import create_topic

COOP: dict[str, Any] = {"partition.assignment.strategy": "cooperative-sticky", "session.timeout.ms": 6000,
                        "heartbeat.interval.ms": 500, "enable.auto.commit": False,
                        "auto.offset.reset": "earliest"}
# when the third consumer leaves: once the group settled, or this many seconds after the start
LEAVES: tuple[str | float, ...] = ("settled", 0.2, 1.0, "settled", 0.5, 2.0, "settled", 1.5)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class CoopMember(threading.Thread):
    """A cooperative-sticky librdkafka consumer that consumes and commits its
    positions synchronously every ``commit_every`` s (errors recorded, not
    raised); with ``debug`` its librdkafka group log is kept in ``log.lines``.
    ``conf`` overrides ``COOP`` (e.g. librdkafka's default session)."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, *, commit_every: float = 0.2,
                 debug: bool = False, conf: dict[str, Any] | None = None) -> None:
        super().__init__(daemon=True, name=name)
        # client.id names it in DescribeGroups (Consumer.memberid() can block while it polls)
        full = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": name, **COOP, **(conf or {})}
        self.log = _Lines()
        if debug:
            logger = logging.getLogger(f"{__name__}.{name}")
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
            logger.addHandler(self.log)
            full.update({"debug": "cgrp", "logger": logger})
        self.c = Consumer(full)
        self.c.subscribe([topic])
        self.commit_every = commit_every
        self.commit_errors: list[str] = []
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.owned: set[int] = set()   # its assignment, as of its last poll

    def run(self) -> None:
        # Consumer calls stay on this thread: assignment() from another thread can
        # block while this one polls.
        next_commit = 0.0
        try:
            while not self.stop_flag.is_set():
                self.c.consume(num_messages=100, timeout=0.05)
                self.owned = {tp.partition for tp in self.c.assignment()}
                if time.monotonic() < next_commit:
                    continue
                next_commit = time.monotonic() + self.commit_every
                positions = [tp for tp in self.c.position(self.c.assignment()) if tp.offset >= 0]
                if positions:
                    try:
                        self.c.commit(offsets=positions, asynchronous=False)
                    except KafkaException as exc:
                        self.commit_errors.append(exc.args[0].name())
        except BaseException as exc:  # surfaced by the caller
            self.error = exc

    def close(self) -> None:
        self.stop_flag.set()
        self.join(20)
        self.c.close()   # LeaveGroup


def start_producer(bootstrap: str, topic: str, partitions: int) -> Callable[[], None]:
    """Records keep arriving on every partition (so positions move and commits
    carry offsets) until the returned stop() is called."""
    stop = threading.Event()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})

    def run() -> None:
        while not stop.is_set():
            for part in range(partitions):
                p.produce(topic, b"v", partition=part)
            p.poll(0)
            time.sleep(0.05)
        p.flush(10)

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def halt() -> None:
        stop.set()
        t.join(15)
    return halt


def decode_assignment(data: bytes) -> set[int]:
    """The partitions of a ConsumerProtocol assignment (one topic here)."""
    if not data:
        return set()
    pos = 2
    (topics,) = struct.unpack_from(">i", data, pos)
    pos += 4
    out: set[int] = set()
    for _ in range(topics):
        (n,) = struct.unpack_from(">h", data, pos)
        pos += 2 + n
        (count,) = struct.unpack_from(">i", data, pos)
        pos += 4
        out |= set(struct.unpack_from(f">{count}i", data, pos))
        pos += 4 * count
    return out


def describe(bootstrap: str, group: str) -> tuple[str, dict[str, set[int]]]:
    """DescribeGroups v4 (the coordinator is the one broker): the group's state
    and what it last handed each member, by client id."""
    from kafka.protocol.admin import DescribeGroupsRequest, DescribeGroupsResponse

    host, port = bootstrap.rsplit(":", 1)
    req = DescribeGroupsRequest[4](groups=[group], include_authorized_operations=False)
    req.with_header(correlation_id=1, client_id="sluice-bench-coop")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(bytes(req.encode(header=True, framed=True)))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">i", buf)[0]:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
    g = DescribeGroupsResponse[4].decode(buf[8:]).groups[0]
    return g.group_state, {m.client_id: decode_assignment(bytes(m.member_assignment)) for m in g.members}


Owners = dict[str, set[int]]


def settled(bootstrap: str, group: str, members: list[CoopMember], partitions: int,
            timeout: float = 40.0) -> tuple[Owners, Owners]:
    """Once the rebalance has settled: the group is Stable with exactly these
    members, every partition is owned, and the consumers' own assignments stay
    the same over two looks. Returns (what each consumer owns, what the
    coordinator last handed it), by name. Bounded."""
    deadline = time.monotonic() + timeout
    previous: Owners | None = None
    last: Any = None
    while time.monotonic() < deadline:
        for m in members:
            assert m.error is None, (m.name, m.error)
        state, given = describe(bootstrap, group)
        owned = {m.name: set(m.owned) for m in members}
        last = (state, owned, given)
        if (state == "Stable" and sorted(given) == sorted(owned)
                and set().union(*owned.values()) == set(range(partitions))):
            if owned == previous:
                return owned, given
            previous = owned
        else:
            previous = None
        time.sleep(0.2)
    raise AssertionError(f"group {group} did not settle: (state, consumers' partitions, coordinator's) = {last}")


def one_owner_each(view: tuple[Owners, Owners], partitions: int) -> None:
    """Every partition has exactly one owner, and each consumer owns what the coordinator gave it."""
    owned, given = view
    every = sorted(p for ps in owned.values() for p in ps)
    assert every == list(range(partitions)), f"partitions owned twice or not at all: {owned}"
    assert owned == given, (owned, given)


@dataclass
class Round:
    leave: str | float
    ok: bool
    seconds: float
    detail: str = ""
    commit_errors: list[str] = field(default_factory=list)


def one_round(bootstrap: str, topic: str, partitions: int, leave: str | float, *,
              conf: dict[str, Any] | None = None, settle_s: float = 40.0) -> Round:
    """Three consumers on a fresh group; the third leaves at ``leave``; each
    settled rebalance is checked (never raises: the result says)."""
    group = f"coop-{uuid.uuid4().hex[:8]}"
    members = [CoopMember(bootstrap, group, topic, f"{group}-{i}", conf=conf) for i in range(3)]
    t0 = time.monotonic()
    try:
        for m in members:
            m.start()
        if leave == "settled":
            one_owner_each(settled(bootstrap, group, members, partitions, settle_s), partitions)
        else:
            assert isinstance(leave, float)
            time.sleep(leave)
        members[2].close()
        one_owner_each(settled(bootstrap, group, members[:2], partitions, settle_s), partitions)
        ok, detail = True, ""
    except AssertionError as exc:
        ok, detail = False, f"{group}: {exc}"
    finally:
        for m in members:
            if m.is_alive():
                m.close()
    errors = [e for m in members for e in m.commit_errors]
    for m in members:
        if m.error is not None:
            ok, detail = False, f"{group}: {m.name}: {m.error!r}"
    return Round(leave, ok, time.monotonic() - t0, detail, errors)


def run_rounds(bootstrap: str, rounds: int, *, partitions: int = 6, conf: dict[str, Any] | None = None,
               leaves: tuple[str | float, ...] = LEAVES, seed: int | None = None,
               report: Callable[[int, Round], None] | None = None) -> list[Round]:
    """``rounds`` rounds on one topic, with a producer running: the ``leaves``
    in order, then (beyond them) leave times drawn at random (``seed``)."""
    topic = f"coop-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions)
    rng = random.Random(seed)
    stop = start_producer(bootstrap, topic, partitions)
    out: list[Round] = []
    try:
        for i in range(rounds):
            leave = leaves[i] if i < len(leaves) else rng.choice(["settled", round(rng.uniform(0.1, 4.0), 2)])
            r = one_round(bootstrap, topic, partitions, leave, conf=conf)
            out.append(r)
            if report is not None:
                report(i, r)
    finally:
        stop()
    return out
