"""End-to-end: classic group membership survives the broker (issue 15).

Three librdkafka (confluent-kafka) consumers commit synchronously after each
batch while a producer keeps writing; the broker is SIGKILLed and restarted
twice mid-stream, on its own data dir, or (MinIO, ``wal.type=s3``) on an empty
one each time. As with Kafka's offsets log, the coordinator restores the group
as Stable with its members, generation and assignments: no consumer's
``on_assign`` fires again, no new generation is formed, commits of the old
generation succeed after the restart, and every record is consumed exactly
once across the group. ``kafka-consumer-groups --describe --members`` still
lists the three members with their partitions.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException

from tests.e2e.test_crash import BackgroundProducer, create_topic, wait_until

pytestmark = pytest.mark.timeout(240)

PARTITIONS = 6
# The membership dies with the session: a restart must come back well within it.
CONSUMER_CONF = {"session.timeout.ms": 30000, "heartbeat.interval.ms": 1000,
                 "enable.auto.commit": False, "auto.offset.reset": "earliest",
                 "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}
# Errors that mean the membership was lost (the group rebalanced behind our back).
LOST = {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID}


class Member(threading.Thread):
    """A group member: consumes, records every record, commits synchronously after
    each batch (a failed commit while the broker is down is retried by the next);
    counts its assignment callbacks."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str) -> None:
        super().__init__(daemon=True, name=name)
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                           **CONSUMER_CONF})
        self.c.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)
        self.lock = threading.Lock()
        self.seen: list[tuple[int, int, str]] = []
        self.assigns: list[list[int]] = []
        self.revokes = 0
        self.commits_ok = 0
        self.commit_errors: list[KafkaError] = []
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def _assigned(self, consumer, partitions) -> None:
        self.assigns.append(sorted(tp.partition for tp in partitions))

    def _revoked(self, consumer, partitions) -> None:
        self.revokes += 1

    def run(self) -> None:
        try:
            while not self.stop_flag.is_set():
                good = []
                for m in self.c.consume(num_messages=200, timeout=0.2):
                    if m.error():
                        if m.error().fatal():
                            raise KafkaException(m.error())
                        continue
                    good.append((m.partition(), m.offset(), m.value().decode()))
                if not good:
                    continue
                with self.lock:
                    self.seen.extend(good)
                try:
                    self.c.commit(asynchronous=False)
                except KafkaException as exc:  # the broker is down; the next commit covers these
                    with self.lock:
                        self.commit_errors.append(exc.args[0])
                else:
                    with self.lock:
                        self.commits_ok += 1
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def n_seen(self) -> int:
        with self.lock:
            return len(self.seen)

    def n_commits(self) -> int:
        with self.lock:
            return self.commits_ok

    def close(self) -> None:
        self.stop_flag.set()
        self.join(30)
        self.c.close()


def describe(bootstrap: str, group: str):
    from confluent_kafka.admin import AdminClient
    a = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    return a.describe_consumer_groups([group], request_timeout=15)[group].result(20)


def member_ids(desc) -> dict[str, tuple[str, frozenset[int]]]:
    """client id -> (member id, partitions), as DescribeGroups reports them."""
    return {m.client_id: (m.member_id, frozenset(tp.partition for tp in m.assignment.topic_partitions))
            for m in desc.members}


@pytest.mark.parametrize("restart", [
    "data-dir",
    pytest.param("minio-empty-dir", marks=pytest.mark.minio),
])
def test_members_survive_two_sigkills_without_rebalance(broker_factory, kafka_tools, request, restart):
    overrides = ["group.initial.rebalance.delay.ms=1500"]
    kw = {}
    if restart == "minio-empty-dir":
        minio = request.getfixturevalue("minio")
        bucket = request.getfixturevalue("minio_bucket")
        overrides += ["wal.type=s3", "s3.upload.interval.ms=500"]
        kw = {"env": minio.env(), "extra_args": ["--object-store", f"s3://{bucket}"]}
    b = broker_factory(*overrides, **kw)
    topic, group = f"members-{uuid.uuid4().hex[:8]}", f"grp-{uuid.uuid4().hex[:8]}"
    create_topic(b.bootstrap, topic, PARTITIONS)
    members = [Member(b.bootstrap, group, topic, f"m{i}") for i in range(3)]
    prod = BackgroundProducer(b.bootstrap, topic, PARTITIONS)
    for m in members:
        m.start()
    try:
        wait_until(lambda: all(m.assigns for m in members) or any(m.error for m in members), 60,
                   "every member assigned")
        wait_until(lambda: sorted(p for m in members for p in m.assigns[-1]) == list(range(PARTITIONS)),
                   30, "one generation with all three members")
        before = member_ids(describe(b.bootstrap, group))
        generations = b.log_text().count(f"group {group}: generation ")
        prod.start()
        for round_ in range(2):
            progress = sum(m.n_seen() for m in members)
            wait_until(lambda: sum(m.n_seen() for m in members) >= progress + 3000, 60,
                       f"records flowing before kill {round_ + 1}", prod)
            b.kill()
            if restart == "minio-empty-dir":
                b.wipe()
            b.start()
            commits = [m.n_commits() for m in members]
            seen = sum(m.n_seen() for m in members)
            wait_until(lambda: all(m.n_commits() > n for m, n in zip(members, commits))
                       and sum(m.n_seen() for m in members) >= seen + 3000, 90,
                       f"every member committing again after restart {round_ + 1}", prod)
            assert f"group {group}: loaded at generation" in b.log_text()
        # kafka-consumer-groups sees the same three members, two partitions each
        res = kafka_tools.run("kafka-consumer-groups", "--bootstrap-server", b.bootstrap, "--describe",
                              "--group", group, "--members", timeout=60)
        rows = [line.split() for line in res.lines if line.split()[:1] == [group]]
        assert sorted((r[1], r[3], r[4]) for r in rows) == \
            sorted((mid, cid, "2") for cid, (mid, _) in before.items()), res.describe()
        after = describe(b.bootstrap, group)
        assert str(after.state).endswith("STABLE") and member_ids(after) == before
        prod.finish()
        acked, _ = prod.snapshot()
        wait_until(lambda: {v for m in members for _, _, v in m.seen} >= set(acked), 60,
                   "every acknowledged record consumed")
        time.sleep(1.0)  # nothing more may arrive
        # before close(), which revokes: one assignment each, never revoked
        callbacks = {m.name: (list(m.assigns), m.revokes) for m in members}
        assert b.log_text().count(f"group {group}: generation ") == generations  # no new generation
    finally:
        if prod.is_alive():
            prod.stop_event.set()
            prod.join(60)
        for m in members:
            m.close()
    for m in members:
        assert m.error is None, m.error
        assigns, revokes = callbacks[m.name]
        assert len(assigns) == 1 and revokes == 0, (m.name, assigns, revokes)
        lost = [e for e in m.commit_errors if e.code() in LOST]
        assert not lost, (m.name, lost)
    got = [r for m in members for r in m.seen]
    twice = [k for k, n in Counter(v for _, _, v in got).items() if n > 1]
    assert not twice, f"{len(twice)} records delivered twice, e.g. {twice[:5]}"
    assert len({(p, o) for p, o, _ in got}) == len(got)
    assert set(acked) <= {v for _, _, v in got}
