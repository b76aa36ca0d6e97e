"""``sluice bench groups``: group coordinator figures.

(a) rebalance time of an N-member group (default 6): from the first JoinGroup
    to every member holding its SyncGroup answer (Stable), median of several
    rounds, each on a fresh group. Two kinds of members:
    - ``raw``: protocol clients in threads (JoinGroup v5 with the KIP-394
      member-id round, SyncGroup v3; the leader assigns one partition each):
      the coordinator's own cost;
    - ``confluent``: librdkafka consumers in threads, from the first
      ``subscribe`` to every consumer owning its partitions: what an
      application sees (dominated by the client's timers and the broker's
      ``group.initial.rebalance.delay.ms``, set with ``--initial-delay-ms``);
    - ``consumer``: the same librdkafka consumers with ``group.protocol=consumer``
      (KIP-848): dominated by ``group.consumer.heartbeat.interval.ms`` (a
      partition moves once its first owner revoked it, at a heartbeat), set
      for a self-started broker with ``--consumer-heartbeat-interval-ms``.
(b) OffsetCommit requests/s: several processes, one connection each,
    pipelining simple commits (generation -1, one partition per request,
    one group per connection) to a fixed depth; every answer is checked.

``--coop-leave N`` runs instead a stress loop (``bench/coop_leave.py``):
N rounds of three cooperative-sticky librdkafka consumers on six
partitions, one leaving, each settled rebalance checked for a partition
owned twice or not at all; ``--coop-kafka`` runs the same rounds on Apache
Kafka next. Exit status 1 if any round failed.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import struct
import threading
import time
import uuid

from .common import create_topic, machine, write_results
from .launch import BrokerProcess

_I32 = struct.Struct(">i")


def add_parser(kinds) -> None:
    g = kinds.add_parser("groups", help="group coordinator: rebalance time and OffsetCommit rate",
                         description=__doc__.split("\n\n")[1],
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g.add_argument("--bootstrap", metavar="HOST:PORT",
                   help="broker to load; default: start one on a temp data dir and stop it after")
    g.add_argument("--members", type=int, default=6)
    g.add_argument("--rounds", type=int, default=5, help="rebalance rounds per member kind")
    g.add_argument("--kinds", default="raw,confluent,consumer",
                   help="member kinds for (a): raw, confluent, consumer")
    g.add_argument("--initial-delay-ms", type=int, default=0,
                   help="group.initial.rebalance.delay.ms of a self-started broker")
    g.add_argument("--consumer-heartbeat-interval-ms", type=int, default=5000,
                   help="group.consumer.heartbeat.interval.ms of a self-started broker (Kafka's default)")
    g.add_argument("--commit-connections", type=int, default=4, metavar="N")
    g.add_argument("--commit-depth", type=int, default=16, help="requests in flight per connection")
    g.add_argument("--commit-duration", type=float, default=10.0, metavar="SECONDS")
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="parent of a self-started broker's temp data dir")
    g.add_argument("--json", metavar="FILE", help="write the results as JSON")
    g.add_argument("--coop-leave", type=int, default=0, metavar="ROUNDS",
                   help="instead: the cooperative-sticky leave stress loop, this many rounds")
    g.add_argument("--coop-session-ms", type=int, default=6000,
                   help="the stress loop's consumers' session.timeout.ms (librdkafka's default: 45000)")
    g.add_argument("--coop-kafka", action="store_true",
                   help="run the stress loop on Apache Kafka 4.4 too (its jars in ~/.cache/sluice)")
    g.add_argument("--coop-seed", type=int, default=None, help="seed of the stress loop's leave times")
    g.set_defaults(func=run_groups)


# ----------------------------------------------------------------- raw protocol
class _Conn:
    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.cid = 0
        self.buf = bytearray()

    def frame(self, request, version: int) -> bytes:
        self.cid += 1
        request.API_VERSION = version
        request.with_header(correlation_id=self.cid, client_id="sluice-bench-groups")
        return bytes(request.encode(header=True, framed=True))

    def read(self, resp_cls):
        """One response of a non-flexible version (4-byte header)."""
        while True:
            if len(self.buf) >= 4:
                (size,) = _I32.unpack_from(self.buf, 0)
                if len(self.buf) >= 4 + size:
                    body = bytes(self.buf[8:4 + size])
                    del self.buf[:4 + size]
                    return resp_cls.decode(body)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self.buf += chunk

    def call(self, request, version: int, resp_cls):
        self.sock.sendall(self.frame(request, version))
        return self.read(resp_cls)

    def close(self) -> None:
        self.sock.close()


def _subscription(topic: str) -> bytes:
    return struct.pack(">hih", 0, 1, len(topic)) + topic.encode() + struct.pack(">i", -1)


def _assignment(topic: str, partitions: list[int]) -> bytes:
    return (struct.pack(">hih", 0, 1, len(topic)) + topic.encode()
            + struct.pack(">i", len(partitions)) + b"".join(struct.pack(">i", p) for p in partitions)
            + struct.pack(">i", -1))


def _raw_round(host: str, port: int, members: int, topic: str) -> float:
    """One rebalance of a fresh group with ``members`` raw members; seconds."""
    from kafka.protocol.consumer import (
        JoinGroupRequest,
        JoinGroupResponse,
        LeaveGroupRequest,
        LeaveGroupResponse,
        SyncGroupRequest,
        SyncGroupResponse,
    )
    group = f"bench-{uuid.uuid4().hex[:8]}"
    conns = [_Conn(host, port) for _ in range(members)]
    JR, SR = JoinGroupResponse[5], SyncGroupResponse[3]
    P = JoinGroupRequest.JoinGroupRequestProtocol
    barrier = threading.Barrier(members + 1)
    ids_known = threading.Barrier(members)  # every member id is pending before anyone rejoins
    done: list[float] = [0.0] * members
    errors: list[str] = []
    ids: list[str] = [""] * members

    def join(c: _Conn, mid: str):
        return c.call(JoinGroupRequest(group_id=group, session_timeout_ms=30000, rebalance_timeout_ms=30000,
                                       member_id=mid, group_instance_id=None, protocol_type="consumer",
                                       protocols=[P(name="range", metadata=_subscription(topic))]), 5, JR)

    def member(i: int) -> None:
        try:
            c = conns[i]
            barrier.wait()
            r = join(c, "")
            if r.error_code != 79:  # MEMBER_ID_REQUIRED
                raise RuntimeError(f"join: error {r.error_code}")
            ids_known.wait(30)
            r = join(c, r.member_id)
            if r.error_code:
                raise RuntimeError(f"join 2: error {r.error_code}")
            ids[i] = r.member_id
            assignments = []
            if r.leader == r.member_id:
                mids = sorted(m.member_id for m in r.members)
                assignments = [SyncGroupRequest.SyncGroupRequestAssignment(
                    member_id=m, assignment=_assignment(topic, [n])) for n, m in enumerate(mids)]
            s = c.call(SyncGroupRequest(group_id=group, generation_id=r.generation_id, member_id=r.member_id,
                                        group_instance_id=None, assignments=assignments), 3, SR)
            if s.error_code or not s.assignment:
                raise RuntimeError(f"sync: error {s.error_code}")
            done[i] = time.perf_counter()
        except Exception as exc:  # reported by the caller
            errors.append(repr(exc))

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(members)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(60)
    if errors or not all(done):
        raise RuntimeError(f"raw rebalance failed: {errors or 'timeout'}")
    elapsed = max(done) - t0
    M = LeaveGroupRequest.MemberIdentity
    conns[0].call(LeaveGroupRequest(group_id=group, members=[M(member_id=m, group_instance_id=None)
                                                             for m in ids]), 3, LeaveGroupResponse[3])
    for c in conns:
        c.close()
    return elapsed


def _confluent_round(bootstrap: str, members: int, topic: str, protocol: str = "classic") -> float:
    from confluent_kafka import Consumer
    group = f"bench-{uuid.uuid4().hex[:8]}"
    # the consumer protocol's session and heartbeat are the broker's (KIP-848)
    timers = ({"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000} if protocol == "classic"
              else {"group.protocol": "consumer"})
    consumers = [Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                           **timers})
                 for _ in range(members)]
    assigned = [False] * members
    stop = threading.Event()

    def poll(i: int) -> None:
        c = consumers[i]
        c.subscribe([topic])
        while not stop.is_set():
            c.poll(0.05)
            assigned[i] = len(c.assignment()) == 1

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(members)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    deadline = t0 + 120
    while not all(assigned):
        if time.perf_counter() > deadline:
            raise RuntimeError("confluent rebalance timed out")
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(10)
    for c in consumers:
        c.close()
    return elapsed


# ------------------------------------------------------------------ commits
def _commit_worker(host: str, port: int, topic: str, depth: int, duration: float, start_at: float, out) -> None:
    from kafka.protocol.consumer import OffsetCommitRequest, OffsetCommitResponse
    group = f"bench-commit-{uuid.uuid4().hex[:8]}"
    c = _Conn(host, port)
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    PP = T.OffsetCommitRequestPartition
    RC = OffsetCommitResponse[7]
    offset = 0

    def frame() -> bytes:
        nonlocal offset
        offset += 1
        return c.frame(OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
            topics=[T(name=topic, partitions=[PP(partition_index=0, committed_offset=offset,
                                                 committed_leader_epoch=-1, committed_metadata=None)])]), 7)
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    end = t0 + duration
    c.sock.sendall(b"".join(frame() for _ in range(depth)))
    ok = errors = 0
    while True:
        r = c.read(RC)
        if r.topics[0].partitions[0].error_code == 0:
            ok += 1
        else:
            errors += 1
        if time.perf_counter() < end:
            c.sock.sendall(frame())
        elif ok + errors == offset:
            break
    elapsed = time.perf_counter() - t0
    c.close()
    out.put({"ok": ok, "errors": errors, "seconds": elapsed, "last_offset": offset, "group": group})


def _commit_rate(host: str, port: int, topic: str, conns: int, depth: int, duration: float) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    start_at = time.time() + 2.0  # after every process has started
    procs = [ctx.Process(target=_commit_worker, args=(host, port, topic, depth, duration, start_at, q))
             for _ in range(conns)]
    for p in procs:
        p.start()
    results = [q.get(timeout=duration + 60) for _ in procs]
    for p in procs:
        p.join(10)
    ok = sum(r["ok"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {"connections": conns, "depth": depth, "duration_s": round(seconds, 2), "commits_ok": ok,
            "errors": sum(r["errors"] for r in results), "commits_per_s": round(ok / seconds, 1),
            "per_connection": results}


# ------------------------------------------------------ cooperative stress
def _coop_stress(target: str, bootstrap: str, args) -> dict:
    from .coop_leave import run_rounds

    def report(i: int, r) -> None:
        leave = r.leave if isinstance(r.leave, str) else f"{r.leave}s"
        print(f"{target} round {i + 1}/{args.coop_leave}: leave {leave}: "
              f"{'ok' if r.ok else 'FAILED ' + r.detail} ({r.seconds:.1f} s)", flush=True)

    conf = {"session.timeout.ms": args.coop_session_ms,
            "heartbeat.interval.ms": min(3000, args.coop_session_ms // 12)}
    rounds = run_rounds(bootstrap, args.coop_leave, conf=conf, seed=args.coop_seed, report=report)
    return {"rounds": len(rounds), "failed": [r.detail for r in rounds if not r.ok],
            "median_round_s": round(statistics.median(r.seconds for r in rounds), 2),
            "commit_errors": sorted({e for r in rounds for e in r.commit_errors})}


def run_coop_leave(args) -> int:
    """``--coop-leave N``: the stress loop on Sluice (and on Kafka with ``--coop-kafka``)."""
    results = {}
    if args.bootstrap is not None:
        results["sluice"] = _coop_stress("sluice", args.bootstrap, args)
    else:
        broker = BrokerProcess.start_temporary(
            args.data_dir, overrides=[f"group.initial.rebalance.delay.ms={args.initial_delay_ms}"])
        try:
            results["sluice"] = _coop_stress("sluice", broker.bootstrap, args)
        finally:
            broker.stop()
            broker.remove()
    if args.coop_kafka:
        import tempfile

        from .kafka_reference import KafkaBroker, kafka_libs
        kafka = KafkaBroker(tempfile.mkdtemp(prefix="sluice-bench-coop-kafka-", dir=args.data_dir),
                            heap="-Xmx512m", libs=kafka_libs(),
                            overrides={"group.initial.rebalance.delay.ms": str(args.initial_delay_ms)})
        kafka.start()
        try:
            results["kafka"] = _coop_stress("kafka", kafka.bootstrap, args)
        finally:
            kafka.stop()
            kafka.cleanup()
    print(f"{'target':<10}{'rounds':>8}{'failed':>8}{'median round (s)':>18}  commit errors")
    for target, r in results.items():
        print(f"{target:<10}{r['rounds']:>8}{len(r['failed']):>8}{r['median_round_s']:>18}  "
              f"{', '.join(r['commit_errors']) or '-'}")
    write_results({"bench": "groups-coop-leave", "machine": machine(),
                   "config": {"rounds": args.coop_leave, "session_timeout_ms": args.coop_session_ms,
                              "initial_delay_ms": args.initial_delay_ms if args.bootstrap is None else None,
                              "seed": args.coop_seed},
                   "results": results}, args.json)
    return 0 if all(not r["failed"] for r in results.values()) else 1


# --------------------------------------------------------------------- main
def run_groups(args) -> int:
    if args.coop_leave:
        return run_coop_leave(args)
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = BrokerProcess.start_temporary(
            args.data_dir, overrides=[f"group.initial.rebalance.delay.ms={args.initial_delay_ms}",
                                      f"group.consumer.heartbeat.interval.ms={args.consumer_heartbeat_interval_ms}",
                                      "group.consumer.min.heartbeat.interval.ms="
                                      f"{min(5000, args.consumer_heartbeat_interval_ms)}"],
            metrics=True)
        bootstrap = broker.bootstrap
    host, port = bootstrap.rsplit(":", 1)
    port = int(port)
    try:
        topic = f"sluice-bench-groups-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, args.members)
        rebalance = {}
        for kind in [k for k in args.kinds.split(",") if k]:
            times = []
            for _ in range(args.rounds):
                if kind == "raw":
                    times.append(_raw_round(host, port, args.members, topic))
                elif kind == "confluent":
                    times.append(_confluent_round(bootstrap, args.members, topic))
                elif kind == "consumer":
                    times.append(_confluent_round(bootstrap, args.members, topic, "consumer"))
                else:
                    raise SystemExit(f"unknown member kind {kind!r}")
            ms = sorted(round(t * 1000, 2) for t in times)
            rebalance[kind] = {"rounds_ms": ms, "median_ms": round(statistics.median(ms), 2),
                               "min_ms": ms[0], "max_ms": ms[-1]}
        commits = _commit_rate(host, port, topic, args.commit_connections, args.commit_depth,
                               args.commit_duration)
    finally:
        if broker is not None:
            broker.stop()
            broker.remove()
    result = {"bench": "groups", "machine": machine(),
              "config": {"members": args.members, "rounds": args.rounds,
                         "initial_delay_ms": args.initial_delay_ms if args.bootstrap is None else None,
                         "consumer_heartbeat_interval_ms":
                             args.consumer_heartbeat_interval_ms if args.bootstrap is None else None,
                         "self_started_broker": args.bootstrap is None},
              "rebalance": rebalance, "offset_commit": commits}
    print(f"{'measure':<44}{'median':>12}{'min':>10}{'max':>10}")
    for kind, r in rebalance.items():
        label = f"rebalance, {args.members} {kind} members (ms)"
        print(f"{label:<44}{r['median_ms']:>12}"
              f"{r['min_ms']:>10}{r['max_ms']:>10}")
    label = f"OffsetCommit/s ({commits['connections']} conns x depth {commits['depth']})"
    print(f"{label:<44}"
          f"{commits['commits_per_s']:>12}   errors {commits['errors']}")
    write_results(result, args.json)
    return 0 if commits["errors"] == 0 else 1
