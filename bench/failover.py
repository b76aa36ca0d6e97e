"""``sluice bench failover``: how long a dead broker's partitions are away.

A MinIO and ``--brokers`` (3) ``sluice serve`` brokers on one bucket, every one
with ``--override wal.type=s3`` (the WAL in the bucket, docs/failover.md; with
``--wal shared``: ``wal.shared.dir``, one directory all of them use) and
``broker.session.timeout.ms`` from ``--session-timeout-ms`` (Kafka's 9000 by
default; the heartbeat at the broker's default unless ``--heartbeat-ms``). One
topic of ``--partitions`` partitions; a librdkafka producer process
(idempotent, acks=all, linger.ms=5) writes ``--rate`` MB/s to every partition
in turn and a librdkafka consumer process, assigned every partition (no
group), reads them as they are written. Each record carries the producer's
monotonic send time and a per-partition sequence number.

Per round: wait until the cluster is settled (no move or takeover pending,
partitions spread, acks and records flowing on every partition), hold the
load ``--steady-seconds``, then ``kill -9`` one broker that owns partitions of
the topic (``--kill``: not the controller by default) and measure, for its
partitions:

* detection: kill to the controller's takeover decision (its log line
  "controller: placed or moved N partitions" that precedes the first poll of
  the bucket's ``cluster/metadata.json`` showing the partitions on survivors;
  that poll, every ``--poll-ms``, if the line is missing);
* fence: kill to a survivor's "fenced the WAL of node N at object S";
* replay: takeover decision to the survivor's "partition T-I: taken over from
  node N at epoch E, K batches replayed from its WAL" (it serves from then);
* first ack: kill to the first acknowledgement of a record the producer sent
  after the kill (only a survivor can acknowledge it);
* first fetch: kill to the consumer's first record that was sent after the
  kill (only a survivor can serve it).

Log times have millisecond resolution; client times are the processes'
monotonic clocks, shared on one machine. The killed broker then restarts on an
empty data dir (nothing of it is in its data dir with either WAL) and the balancer
gives it its share back before the next round. At the end the producer
stops, the consumer reads to the last acknowledged offset and the records are
checked: offsets without gaps, no sequence number twice. Every wait is bounded.
Target (the failover issue): a dead broker's partitions serve again within the
session timeout + 2 s.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import re
import shlex
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from . import storage
from .common import MB, machine, sluice_version, write_results
from .compare import Poller, Progress, _confluent_versions, _create_topic, _SluiceCluster, log_problems
from .launch import wait_for_cluster
from .minio import MinioServer

TARGET_SLACK_S = 2.0            # the target: session timeout + 2 s
VALUE_HEADER = struct.Struct(">dq")    # a record's value starts with: send time (monotonic s), sequence number
CONTROLLER_KEY = "cluster/controller.json"
METADATA_KEY = "cluster/metadata.json"
KILL_POLICIES = ("non-controller", "controller", "any")


def add_parser(kinds) -> None:
    p = kinds.add_parser("failover", help="kill -9 a broker (wal.type=s3 or shared): detection, replay, first ack and "
                                          "fetch on its partitions",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="kills (default 3); the summary gives medians")
    p.add_argument("--brokers", type=int, default=3, help="brokers in the cluster (default 3)")
    p.add_argument("--partitions", type=int, default=6, help="partitions of the topic (default 6)")
    p.add_argument("--rate", type=float, default=5.0, metavar="MB/s",
                   help="the producer's steady rate over all partitions (default 5)")
    p.add_argument("--record-size", type=int, default=1024, metavar="BYTES", help="default 1024 (at least 16)")
    p.add_argument("--session-timeout-ms", type=int, default=9000,
                   help="broker.session.timeout.ms of every broker (default 9000, Kafka's)")
    p.add_argument("--heartbeat-ms", type=int, default=None,
                   help="broker.heartbeat.interval.ms (default: the broker's own, 2000)")
    p.add_argument("--steady-seconds", type=float, default=5.0,
                   help="load on the settled cluster before each kill (default 5)")
    p.add_argument("--kill", choices=KILL_POLICIES, default="non-controller",
                   help="which broker to kill among those owning partitions of the topic, in turn from round "
                        "to round (default non-controller: detection then does not wait for the lease)")
    p.add_argument("--round-timeout", type=float, default=None, metavar="SECONDS",
                   help="how long to wait after a kill for every partition to ack and serve again "
                        "(default: session timeout + 60 s)")
    p.add_argument("--settle-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for a settled cluster before each kill (default 120)")
    p.add_argument("--poll-ms", type=float, default=50.0, help="bucket metadata poll interval (default 50)")
    p.add_argument("--wal", choices=("s3", "shared"), default="s3",
                   help="the WAL survivors read: s3 (wal.type=s3, the bucket) or shared (wal.shared.dir, one "
                        "directory of the run's temp dir that every broker uses, as a shared volume)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="another --override for every broker (e.g. wal.s3.interval.ms=5)")
    p.add_argument("--producer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra librdkafka producer property")
    p.add_argument("--consumer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra librdkafka consumer property")
    p.add_argument("--data-dir", default=None, help="parent of the run's temp dir (MinIO, brokers, logs)")
    p.add_argument("--keep", action="store_true", help="keep the run's temp dir (logs) at the end")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_failover)


# ------------------------------------------------------------------ pure logic
LOG_LINE_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+): (.*)$")
EVENT_RES = {
    "taken": re.compile(r"^partition (?P<topic>.+)-(?P<partition>\d+): taken over from node (?P<dead>\d+) at epoch "
                        r"(?P<epoch>\d+), (?P<batches>\d+) batches (?:and \d+ share-state entries )?replayed"),
    "fenced": re.compile(r"^fenced the WAL of node (?P<dead>\d+) at object (?P<seq>\d+)"),
    "decided": re.compile(r"^controller: placed or moved (?P<count>\d+) partitions"),
    "coordinator": re.compile(r"^coordinator partition (?P<partition>\d+): taken over from node (?P<dead>\d+), "
                              r"(?P<entries>\d+) group entries replayed"),
    "lease": re.compile(r"^controller: node (?P<holder>\d+) holds the lease at epoch (?P<epoch>\d+)"),
}


def log_time(stamp: str) -> float:
    """A broker log line's time (``%(asctime)s``: local time, milliseconds) as a Unix time."""
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def parse_events(text: str, node: int) -> list[dict]:
    """The failover events in a broker's log text: ``{"kind", "t" (Unix time), "node" (whose log), ...}``
    with the numbers of the line as ints (the topic name as it is)."""
    out = []
    for line in text.splitlines():
        m = LOG_LINE_RE.match(line)
        if m is None:
            continue
        msg = m.group(4)
        for kind, rx in EVENT_RES.items():
            e = rx.match(msg)
            if e is not None:
                ev: dict = {"kind": kind, "t": log_time(m.group(1)), "node": node}
                ev.update({k: (v if k == "topic" else int(v)) for k, v in e.groupdict().items()})
                out.append(ev)
                break
    return out


def parse_settings(items: list[str], what: str) -> dict[str, str]:
    """KEY=VALUE items as a dict (librdkafka properties)."""
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise SystemExit(f"{what}: expected KEY=VALUE, not {item!r}")
        out[k] = v
    return out


def settled(doc: dict | None, topic: str, live: list[int], balance: bool) -> tuple[bool, str]:
    """Whether the metadata document shows ``topic`` (and the coordinator's partitions) with a live
    owner each, nothing moving or being taken over, and (``balance``) the topic's partitions spread
    evenly over the live brokers (counts differing by at most one); else why not."""
    if doc is None:
        return False, "no metadata document"
    t = next((x for x in doc.get("topics", []) if x.get("name") == topic), None)
    if t is None:
        return False, "topic not in the metadata"
    for what, sets in (("topic", t), ("coordinator", doc.get("offsets"))):
        if sets is None:
            continue
        if any(o not in live for o in sets.get("owners", [])):
            return False, f"a {what} partition without a live owner"
        if any(x != -1 for x in sets.get("targets") or []):
            return False, f"a {what} partition move pending"
        if any(r is not None for r in sets.get("recover") or []):
            return False, f"a {what} partition takeover pending"
    if balance:
        counts = [t["owners"].count(n) for n in live]
        if max(counts) - min(counts) > 1:
            return False, f"partitions per broker {dict(zip(live, counts))}"
    return True, ""


def choose_victim(owners: list[int], controller: int | None, policy: str, round_no: int) -> tuple[int, str]:
    """The broker to kill in round ``round_no`` (1-based) among those owning partitions (``owners``:
    the owner of each partition): by ``policy``, the candidates in turn from round to round. Returns
    it and a note when the policy could not be followed (e.g. only the controller owns partitions)."""
    owning = sorted({o for o in owners if o >= 0})
    if not owning:
        raise ValueError("no broker owns a partition of the topic")
    note = ""
    if policy == "non-controller":
        cands = [n for n in owning if n != controller]
        if not cands:
            cands, note = owning, "only the controller owns partitions: killed it"
    elif policy == "controller":
        cands = [controller] if controller in owning else owning
        if controller not in owning:
            note = "the controller owns no partition of the topic: killed another broker"
    else:
        cands = owning
    return cands[(round_no - 1) % len(cands)], note


def _median(values: list) -> float | None:
    vs = [v for v in values if v is not None]
    return round(statistics.median(vs), 3) if vs else None


def _rel(t: float | None, kill: float) -> float | None:
    return None if t is None else round(t - kill, 3)


def round_split(kill_wall: float, victim: int, topic: str, partitions: list[int], events: list[dict],
                bucket: dict | None, acks: dict[int, float | None], fetches: dict[int, float | None],
                session_timeout_s: float, slack_s: float = 0.05) -> dict:
    """One round's timings, in seconds after the kill.

    ``events``: parsed log events of every broker (Unix times); ``bucket``: the bucket poll that
    first showed all of ``partitions`` on survivors (``seen_s``, ``previous_last_seen_s``, after the
    kill), or None; ``acks`` / ``fetches``: per partition, seconds from the kill to the first ack of a
    record sent after the kill / to the consumer's first such record (None: not within the round).
    Detection is the controller's decision: the last "placed or moved" line logged after the kill
    and no later than the bucket poll (+ ``slack_s``; the first such line without a poll), else the
    poll. Replay of a partition runs from the decision to its "taken over" line."""
    after = [e for e in events if e["t"] >= kill_wall]
    bucket_s = bucket["seen_s"] if bucket else None
    decided = [e for e in after if e["kind"] == "decided"]
    if bucket_s is not None:
        before_poll = [e for e in decided if e["t"] - kill_wall <= bucket_s + slack_s]
        decision = before_poll[-1] if before_poll else None
    else:
        decision = decided[0] if decided else None
    if decision is not None:
        detection_s, source = _rel(decision["t"], kill_wall), f"controller log (node {decision['node']})"
    elif bucket_s is not None:
        detection_s, source = bucket_s, "bucket poll"
    else:
        detection_s, source = None, None
    fenced = next((e for e in after if e["kind"] == "fenced" and e["dead"] == victim), None)
    lease = next((e for e in after if e["kind"] == "lease" and e["holder"] != victim), None)
    per_partition = []
    for p in partitions:
        taken = next((e for e in after if e["kind"] == "taken" and e["dead"] == victim and e["topic"] == topic
                      and e["partition"] == p), None)
        taken_s = _rel(taken["t"], kill_wall) if taken else None
        per_partition.append({
            "partition": p, "new_owner": taken["node"] if taken else None,
            "epoch": taken["epoch"] if taken else None, "batches_replayed": taken["batches"] if taken else None,
            "taken_over_s": taken_s,
            "replay_s": round(taken_s - detection_s, 3) if taken_s is not None and detection_s is not None else None,
            "first_ack_s": acks.get(p), "first_fetch_s": fetches.get(p)})
    coordinators = [{"partition": e["partition"], "new_owner": e["node"], "entries_replayed": e["entries"],
                     "taken_over_s": _rel(e["t"], kill_wall)}
                    for e in after if e["kind"] == "coordinator" and e["dead"] == victim]

    def slowest(vals: list) -> float | None:
        return None if not vals or any(v is None for v in vals) else max(vals)
    target = round(session_timeout_s + TARGET_SLACK_S, 3)
    served_s = slowest([max(x["first_ack_s"], x["first_fetch_s"]) if x["first_ack_s"] is not None
                        and x["first_fetch_s"] is not None else None for x in per_partition])
    return {
        "detection_s": detection_s, "detection_source": source,
        "bucket_seen_s": bucket_s, "bucket_seen_lower_s": bucket["previous_last_seen_s"] if bucket else None,
        "fence_s": _rel(fenced["t"], kill_wall) if fenced else None,
        "fenced_by": fenced["node"] if fenced else None, "fence_object": fenced["seq"] if fenced else None,
        "lease_taken_s": _rel(lease["t"], kill_wall) if lease else None,
        "lease_taken_by": lease["holder"] if lease else None,
        "partitions": per_partition, "coordinator_partitions": coordinators,
        "slowest": {k: slowest([x[k] for x in per_partition])
                    for k in ("taken_over_s", "replay_s", "first_ack_s", "first_fetch_s")},
        "served_s": served_s, "target_s": target,
        "target_met": None if served_s is None else served_s <= target,
    }


# (key, label, path in a round) of the summary, in table order
MEASURES = [
    ("detection_s", "detection: kill to the controller's takeover decision", ("split", "detection_s")),
    ("fence_s", "fence: kill to the dead broker's WAL fenced by a survivor", ("split", "fence_s")),
    ("replay_s", "replay: takeover decision to the survivor serving (slowest partition, its log)",
     ("split", "slowest", "replay_s")),
    ("taken_over_s", "kill to the survivor serving (slowest partition, its log)",
     ("split", "slowest", "taken_over_s")),
    ("first_ack_s", "kill to the first produce ack (slowest partition; a record sent after the kill)",
     ("split", "slowest", "first_ack_s")),
    ("first_fetch_s", "kill to the first fetched record (slowest partition; a record sent after the kill)",
     ("split", "slowest", "first_fetch_s")),
    ("served_s", "kill to both on every partition (the slower of the two, slowest partition)",
     ("split", "served_s")),
]


def _get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summarize(rounds: list[dict], session_timeout_s: float) -> dict:
    """Medians over the rounds of each measure (and each round's value), and the target."""
    rows: list[dict[str, Any]] = []
    for key, label, path in MEASURES:
        vals = [_get(r, path) for r in rounds]
        rows.append({"key": key, "label": label, "median_s": _median(vals), "rounds_s": vals,
                     "min_s": min((v for v in vals if v is not None), default=None),
                     "max_s": max((v for v in vals if v is not None), default=None)})
    target = round(session_timeout_s + TARGET_SLACK_S, 3)
    met = [_get(r, ("split", "target_met")) for r in rounds]
    served: float | None = next(row["median_s"] for row in rows if row["key"] == "served_s")
    return {"rows": rows, "target_s": target, "rounds_met": sum(1 for m in met if m),
            "rounds": len(rounds), "median_met": served is not None and served <= target}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown_table(result: dict) -> str:
    c, s = result["config"], result["summary"]
    lines = ["| after `kill -9` of a broker (s) | median | per round | min - max |", "|---|---|---|---|"]
    for row in s["rows"]:
        lines.append(f"| {row['label']} | **{_fmt(row['median_s'])}** | "
                     f"{', '.join(_fmt(v) for v in row['rounds_s'])} | {_fmt(row['min_s'])} - {_fmt(row['max_s'])} |")
    verdict = "met" if s["median_met"] else "not met"
    lines.append(f"| target: session timeout + {TARGET_SLACK_S:g} s | {s['target_s']:g} | "
                 f"{verdict} by the median; met in {s['rounds_met']} of {s['rounds']} round(s) | |")
    hb = f"{c['heartbeat_ms']} ms" if c.get("heartbeat_ms") else "the broker default"
    victims = ", ".join(f"node {r['victim']} ({len(r['split']['partitions'])} partitions"
                        + (", the controller" if r.get("victim_was_controller") else "") + ")"
                        for r in result["rounds"])
    lines += ["", f"{c['rounds']} round(s); {c['brokers']} brokers on MinIO, {wal_label(c.get('wal', 's3'))}, "
                  f"broker.session.timeout.ms={c['session_timeout_ms']}, heartbeat {hb}; one topic of "
                  f"{c['partitions']} partitions; a librdkafka producer (idempotent, acks=all) at "
                  f"{c['rate_mb_per_s']:g} MB/s of {c['record_size']} B records and a consumer on every "
                  f"partition. Killed: {victims}."]
    integ = result.get("integrity")
    if integ:
        lines.append(f"Records: {integ['acked']:,} acknowledged, {integ['received']:,} read back; "
                     f"offset gaps {integ['offset_gaps']}, sequence numbers seen twice {integ['seq_dups']}, "
                     f"missing {integ['seq_gaps']}; delivery errors {integ['delivery_errors'] or 0}; "
                     f"consumer caught up: {integ['caught_up']}.")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = result["rounds"]
    c, s = result["config"], result["summary"]
    fig, ax = plt.subplots(figsize=(11, 2.0 + 0.9 * max(1, len(rounds))))
    for i, r in enumerate(rounds):
        sp = r["split"]
        y = len(rounds) - i
        det = sp.get("detection_s")
        taken = sp["slowest"].get("taken_over_s")
        if det is not None:
            ax.barh(y, det, color="tab:gray", height=0.3, label="detection" if i == 0 else None)
            if taken is not None:
                ax.barh(y, taken - det, left=det, color="tab:blue", height=0.3,
                        label="replay (slowest partition)" if i == 0 else None)
        for j, x in enumerate(sp["partitions"]):
            if x["first_ack_s"] is not None:
                ax.plot(x["first_ack_s"], y + 0.28, "v", color="tab:green", ms=6,
                        label="first ack (per partition)" if i == 0 and j == 0 else None)
            if x["first_fetch_s"] is not None:
                ax.plot(x["first_fetch_s"], y - 0.28, "o", color="tab:orange", ms=5,
                        label="first fetch (per partition)" if i == 0 and j == 0 else None)
    ax.axvline(c["session_timeout_ms"] / 1000, color="0.4", ls=":", label="session timeout")
    ax.axvline(s["target_s"], color="tab:red", ls="--", label=f"target {s['target_s']:g} s")
    ax.set_yticks([len(rounds) - i for i in range(len(rounds))])
    ax.set_yticklabels([f"round {r['round']}\nnode {r['victim']}" for r in rounds], fontsize=8)
    ax.set_xlabel("seconds after kill -9")
    ax.set_xlim(left=0)
    ax.set_title(f"failover, {wal_label(c.get('wal', 's3'))}: {c['brokers']} brokers, {c['partitions']} partitions, "
                 f"{c['rate_mb_per_s']:g} MB/s, session timeout {c['session_timeout_ms'] / 1000:g} s", fontsize=9)
    ax.set_ylim(0.4, len(rounds) + 0.6)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------- client processes
def _value(sent: float, seq: int, pad: bytes) -> bytes:
    return VALUE_HEADER.pack(sent, seq) + pad


def _producer_main(conn, cfg: dict) -> None:
    """The producer process: ``cfg["rate"]`` records/s round-robin over the partitions until told to
    stop; answers the parent's commands on ``conn`` (status, watch, report, stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from confluent_kafka import Producer

    n = cfg["partitions"]
    acked, last_ack, max_offset = [0] * n, [0.0] * n, [-1] * n
    errors: dict[str, int] = {}
    client_errors: dict[str, int] = {}
    watch: dict[str, Any] = {"t": None, "first": [None] * n}

    def on_delivery(err, msg) -> None:
        now = time.monotonic()
        if err is not None:
            errors[err.name()] = errors.get(err.name(), 0) + 1
            return
        p = msg.partition()
        acked[p] += 1
        last_ack[p] = now
        max_offset[p] = max(max_offset[p], msg.offset())
        t = watch["t"]
        if t is not None and watch["first"][p] is None and VALUE_HEADER.unpack_from(msg.value())[0] > t:
            watch["first"][p] = now

    def on_error(err) -> None:
        client_errors[err.name()] = client_errors.get(err.name(), 0) + 1

    conf = {"bootstrap.servers": cfg["bootstrap"], "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "message.timeout.ms": 600000, "log_level": 0, "error_cb": on_error, **cfg["set"]}
    producer = Producer(conf)
    producer.list_topics(cfg["topic"], timeout=30)
    pad = os.urandom(max(0, cfg["record_size"] - VALUE_HEADER.size))
    seq = [0] * n
    conn.send("ready")
    t0 = time.monotonic()
    sent = 0
    rate = cfg["rate"]
    next_check = 0.0

    def status() -> dict:
        return {"acked": list(acked), "last_ack": list(last_ack), "max_offset": list(max_offset),
                "errors": dict(errors), "client_errors": dict(client_errors), "sent": sent,
                "queued": len(producer), "now": time.monotonic()}
    while True:
        now = time.monotonic()
        due = min(int((now - t0) * rate) - sent, 1000)
        for _ in range(due):
            p = sent % n
            try:
                producer.produce(cfg["topic"], _value(time.monotonic(), seq[p], pad), partition=p,
                                 on_delivery=on_delivery)
            except BufferError:
                break
            seq[p] += 1
            sent += 1
        producer.poll(0.001)
        if now < next_check:
            continue
        next_check = now + 0.02
        if not conn.poll():
            continue
        cmd = conn.recv()
        if cmd[0] == "status":
            conn.send(status())
        elif cmd[0] == "watch":
            watch["t"], watch["first"] = cmd[1], [None] * n
            conn.send("ok")
        elif cmd[0] == "report":
            conn.send({"first": list(watch["first"]), **status()})
        elif cmd[0] == "stop":
            deadline = time.monotonic() + cmd[1]
            while len(producer) and time.monotonic() < deadline:
                producer.flush(0.5)
            conn.send(status())
            return


def _consumer_main(conn, cfg: dict) -> None:
    """The consumer process: every partition from offset 0, no group; checks offsets and sequence
    numbers; answers the parent's commands on ``conn`` (status, watch, report, stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    n = cfg["partitions"]
    received, last_recv, last_offset, last_seq = [0] * n, [0.0] * n, [-1] * n, [-1] * n
    counts = {"offset_gaps": 0, "offset_back": 0, "seq_gaps": 0, "seq_dups": 0}
    errors: dict[str, int] = {}
    client_errors: dict[str, int] = {}
    watch: dict[str, Any] = {"t": None, "first": [None] * n}

    def on_error(err) -> None:
        client_errors[err.name()] = client_errors.get(err.name(), 0) + 1

    c = Consumer({"bootstrap.servers": cfg["bootstrap"], "group.id": f"failover-bench-{os.getpid()}",
                  "enable.auto.commit": False, "log_level": 0, "error_cb": on_error, **cfg["set"]})
    c.assign([TopicPartition(cfg["topic"], p, OFFSET_BEGINNING) for p in range(n)])
    c.get_watermark_offsets(TopicPartition(cfg["topic"], 0), timeout=30, cached=False)
    conn.send("ready")

    def status() -> dict:
        return {"received": list(received), "last_recv": list(last_recv), "last_offset": list(last_offset),
                **counts, "errors": dict(errors), "client_errors": dict(client_errors), "now": time.monotonic()}
    next_check = 0.0
    while True:
        msgs = c.consume(1000, 0.02)
        now = time.monotonic()
        t = watch["t"]
        for m in msgs:
            err = m.error()
            if err is not None:
                errors[err.name()] = errors.get(err.name(), 0) + 1
                continue
            p, off, value = m.partition(), m.offset(), m.value()
            assert p is not None and off is not None and value is not None
            sent, sq = VALUE_HEADER.unpack_from(value)
            if off <= last_offset[p]:
                counts["offset_back"] += 1
            elif off != last_offset[p] + 1:
                counts["offset_gaps"] += 1
            if sq <= last_seq[p]:
                counts["seq_dups"] += 1
            elif sq != last_seq[p] + 1:
                counts["seq_gaps"] += 1
            last_offset[p], last_seq[p] = max(last_offset[p], off), max(last_seq[p], sq)
            received[p] += 1
            last_recv[p] = now
            if t is not None and watch["first"][p] is None and sent > t:
                watch["first"][p] = now
        if now < next_check:
            continue
        next_check = now + 0.02
        if not conn.poll():
            continue
        cmd = conn.recv()
        if cmd[0] == "status":
            conn.send(status())
        elif cmd[0] == "watch":
            watch["t"], watch["first"] = cmd[1], [None] * n
            conn.send("ok")
        elif cmd[0] == "report":
            conn.send({"first": list(watch["first"]), **status()})
        elif cmd[0] == "stop":
            conn.send(status())
            c.close()
            return


class _Client:
    """One client process and its command pipe."""

    def __init__(self, name: str, target, cfg: dict) -> None:
        ctx = mp.get_context("spawn")      # no librdkafka threads inherited through fork
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, cfg), daemon=True, name=f"failover-{name}")
        self.proc.start()
        child.close()
        if not self.conn.poll(60) or self.conn.recv() != "ready":
            self.close()
            raise RuntimeError(f"the {name} process did not start (exit {self.proc.exitcode})")

    def ask(self, *cmd, timeout: float = 30.0):
        if not self.proc.is_alive():
            raise RuntimeError(f"the {self.name} process died (exit {self.proc.exitcode})")
        self.conn.send(cmd)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the {self.name} process did not answer {cmd[0]!r} within {timeout:g} s")
        return self.conn.recv()

    def close(self) -> None:
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ------------------------------------------------------------------ the cluster
class MetadataWatcher(Poller):
    """Polls the bucket's metadata document (HEAD; GET when its etag changed): the topic's owners."""

    def __init__(self, minio, topic: str, interval: float) -> None:
        super().__init__(interval)
        self.client = minio.client()
        self.topic = topic
        self.etag = None
        self._state: tuple | None = None

    def poll(self):
        try:
            etag = self.client.head_object(Bucket=storage.BUCKET, Key=METADATA_KEY)["ETag"]
            if etag != self.etag:
                got = self.client.get_object(Bucket=storage.BUCKET, Key=METADATA_KEY)
                doc = json.loads(got["Body"].read())
                t = next((x for x in doc.get("topics", []) if x.get("name") == self.topic), None)
                self.etag = got["ETag"]
                self._state = (doc.get("generation"), tuple(t["owners"]) if t else ())
            return self._state
        except Exception as exc:  # noqa: BLE001 - a failed poll is a state of its own
            self.etag = None
            return ("error", type(exc).__name__)

    def describe(self, st) -> dict:
        if st is None or st[0] == "error":
            return {"error": st[1] if st else None}
        return {"generation": st[0], "owners": list(st[1])}


def _read_json(minio, key: str) -> dict | None:
    try:
        return json.loads(minio.client().get_object(Bucket=storage.BUCKET, Key=key)["Body"].read())
    except Exception:  # noqa: BLE001 - absent or unreadable: the caller waits
        return None


def taken_seen(transitions: list[dict], victim: int, partitions: list[int]) -> dict | None:
    """The first bucket poll showing every one of ``partitions`` on a broker other than ``victim``."""
    return next((x for x in transitions if x.get("owners") and all(x["owners"][p] != victim for p in partitions)),
                None)


def wal_label(wal: str) -> str:
    return "wal.type=s3" if wal == "s3" else "wal.shared.dir"


class _Run:
    def __init__(self, args, progress: Progress) -> None:
        self.args = args
        self.progress = progress
        self.session_s = args.session_timeout_ms / 1000
        self.work = tempfile.mkdtemp(prefix="sluice-bench-failover-", dir=args.data_dir)
        self.topic = f"failover-{uuid.uuid4().hex[:8]}"
        where = "wal.type=s3" if args.wal == "s3" else f"wal.shared.dir={os.path.join(self.work, 'shared-volume')}"
        self.overrides = [where, f"broker.session.timeout.ms={args.session_timeout_ms}",
                          *([f"broker.heartbeat.interval.ms={args.heartbeat_ms}"] if args.heartbeat_ms else []),
                          *args.override]
        self.balance = "autobalancer.controller.enable=false" not in [o.replace(" ", "") for o in args.override]
        self.minio: MinioServer | None = None
        self.cluster: _SluiceCluster | None = None
        self.producer: _Client | None = None
        self.consumer: _Client | None = None

    # -- setup
    def start(self) -> None:
        a = self.args
        self.progress.phase("setup:")
        self.progress.show("starting MinIO")
        self.minio = storage.start_minio(self.work)
        self.progress.show(f"starting {a.brokers} brokers ({wal_label(a.wal)})")
        self.cluster = _SluiceCluster(self.work, self.minio, a.brokers, tuple(self.overrides))
        for b in self.cluster.brokers:
            b.extra_args += ["--log-level", "INFO"]      # the takeover's lines are INFO
        self.cluster.start(timeout=120)
        self.progress.show(f"creating topic {self.topic} ({a.partitions} partitions)")
        _create_topic(self.cluster.bootstrap, self.topic, a.partitions)
        common = {"bootstrap": self.cluster.bootstrap, "topic": self.topic, "partitions": a.partitions}
        self.progress.show("starting the consumer and the producer")
        self.consumer = _Client("consumer", _consumer_main,
                                {**common, "set": parse_settings(a.consumer_set, "--consumer-set")})
        self.producer = _Client("producer", _producer_main,
                                {**common, "record_size": a.record_size, "rate": a.rate * MB / a.record_size,
                                 "set": parse_settings(a.producer_set, "--producer-set")})

    def live(self) -> list[int]:
        assert self.cluster is not None
        return [i + 1 for i, b in enumerate(self.cluster.brokers) if b.running]

    def settle(self) -> dict:
        """Wait (bounded) until the metadata is settled and records flow on every partition, then
        hold the load ``--steady-seconds``. Returns what it waited for."""
        assert self.producer and self.consumer
        t0 = time.monotonic()
        deadline = t0 + self.args.settle_timeout
        why = ""
        ok_since = None
        while time.monotonic() < deadline:
            doc = _read_json(self.minio, METADATA_KEY)
            ok, why = settled(doc, self.topic, self.live(), self.balance)
            if ok:
                ps, cs = self.producer.ask("status"), self.consumer.ask("status")
                stale = [p for p in range(self.args.partitions)
                         if ps["now"] - ps["last_ack"][p] > 2.0 or cs["now"] - cs["last_recv"][p] > 2.0]
                if stale:
                    ok, why = False, f"no recent ack or record on partition(s) {stale}"
            if ok:
                ok_since = ok_since or time.monotonic()
                if time.monotonic() - ok_since >= 1.0:
                    break
            else:
                ok_since = None
            self.progress.show(f"waiting for a settled cluster ({why or 'settled: holding it 1 s'}) "
                               f"{time.monotonic() - t0:.0f}s")
            time.sleep(0.5 if self.progress.isatty else 1.0)
        settle_s = round(time.monotonic() - t0, 2)
        self.progress.show(f"steady load for {self.args.steady_seconds:g} s")
        time.sleep(self.args.steady_seconds)
        return {"settle_s": settle_s, "settled": ok_since is not None, "unsettled_because": why or None}

    # -- one round
    def round(self, round_no: int) -> dict:
        a = self.args
        assert self.cluster and self.producer and self.consumer and self.minio
        label = f"round {round_no}/{a.rounds}"
        self.progress.phase(f"{label}:")
        res: dict = {"round": round_no, **self.settle()}
        for _ in range(20):            # settled a moment ago: only a failed GET can miss it
            doc = _read_json(self.minio, METADATA_KEY) or {}
            t = next((x for x in doc.get("topics", []) if x.get("name") == self.topic), None)
            if t is not None:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"cannot read {self.topic}'s owners from {METADATA_KEY}")
        owners = list(t["owners"])
        lease = _read_json(self.minio, CONTROLLER_KEY) or {}
        controller = lease.get("node_id")
        victim, note = choose_victim(owners, controller, a.kill, round_no)
        parts = [p for p, o in enumerate(owners) if o == victim]
        offsets = doc.get("offsets") or {}
        res.update(victim=victim, victim_was_controller=victim == controller, controller_before=controller,
                   owners_before=owners, partitions=parts, note=note or None,
                   coordinator_partitions_before=[i for i, o in enumerate(offsets.get("owners", [])) if o == victim])
        logs = {i + 1: (Path(str(b.log_path)), os.path.getsize(str(b.log_path)) if b.log_path else 0)
                for i, b in enumerate(self.cluster.brokers)}
        ps0, cs0 = self.producer.ask("status"), self.consumer.ask("status")
        watcher = MetadataWatcher(self.minio, self.topic, a.poll_ms / 1000).start()
        broker = self.cluster.node(victim)
        timeout = a.round_timeout or self.session_s + 60
        try:
            t_kill, wall_kill = time.monotonic(), time.time()
            watcher.t0 = t_kill
            broker.kill()
            self.producer.ask("watch", t_kill)
            self.consumer.ask("watch", t_kill)
            shown = 0.0
            while True:
                el = time.monotonic() - t_kill
                pr, cr = self.producer.ask("report"), self.consumer.ask("report")
                acks = sum(1 for p in parts if pr["first"][p] is not None)
                fetches = sum(1 for p in parts if cr["first"][p] is not None)
                done = acks == fetches == len(parts)
                if self.progress.isatty or el - shown >= 1.0 or done:     # a line a second into a log
                    shown = el
                    seen = taken_seen(watcher.seen(), victim, parts)
                    self.progress.show(f"killed node {victim} (partitions {','.join(map(str, parts))}) "
                                       f"{el:.1f}s ago; takeover "
                                       f"{'seen at %.2fs' % seen['seen_s'] if seen else 'not yet'}; acks back "
                                       f"{acks}/{len(parts)}, fetches back {fetches}/{len(parts)}")
                if done or el > timeout:
                    break
                time.sleep(0.2)
        finally:
            watcher.stop()
        res["complete"] = acks == fetches == len(parts)
        events = []
        for node, (path, start) in logs.items():
            with open(path, "rb") as f:
                f.seek(start)
                events += parse_events(f.read().decode(errors="replace"), node)
        # the coordinator partitions' lines are in the split
        res["log_events"] = [{**e, "t": round(e["t"] - wall_kill, 3)} for e in events if e["kind"] != "coordinator"]
        res["bucket_transitions"] = watcher.seen()
        first = {p: (round(pr["first"][p] - t_kill, 3) if pr["first"][p] is not None else None) for p in parts}
        fetched = {p: (round(cr["first"][p] - t_kill, 3) if cr["first"][p] is not None else None) for p in parts}
        res["split"] = round_split(wall_kill, victim, self.topic, parts, events,
                                   taken_seen(res["bucket_transitions"], victim, parts), first, fetched, self.session_s)
        res["producer"] = {"acked": sum(pr["acked"]) - sum(ps0["acked"]), "errors": pr["errors"],
                           "client_errors": pr["client_errors"], "queued_at_end": pr["queued"]}
        res["consumer"] = {"received": sum(cr["received"]) - sum(cs0["received"]),
                           **{k: cr[k] - cs0[k] for k in ("offset_gaps", "offset_back", "seq_gaps", "seq_dups")}}
        sp = res["split"]
        self.progress.show(f"detection {_fmt(sp['detection_s'])} s, slowest replay {_fmt(sp['slowest']['replay_s'])}"
                           f" s, first ack {_fmt(sp['slowest']['first_ack_s'])} s, first fetch "
                           f"{_fmt(sp['slowest']['first_fetch_s'])} s")
        if not self.args.quiet:
            sys.stderr.write("\n" if self.progress.isatty else "")
        if round_no < a.rounds:
            self.progress.show(f"restarting node {victim} on an empty data dir")
            t0 = time.monotonic()
            broker.wipe()
            broker.start(60)
            addresses = [("127.0.0.1", b.port) for b in self.cluster.brokers]
            wait_for_cluster(addresses, 60)
            res["restart_s"] = round(time.monotonic() - t0, 2)
        return res

    def finish(self) -> dict:
        """Stop producing; let the consumer read up to the last acknowledged offset; the counts."""
        assert self.producer and self.consumer
        self.progress.phase("end:")
        self.progress.show("stopping the producer (flush)")
        ps = self.producer.ask("stop", 60.0, timeout=90)
        self.producer.close()
        deadline = time.monotonic() + 60
        while True:
            cs = self.consumer.ask("status")
            behind = [p for p in range(self.args.partitions) if cs["last_offset"][p] < ps["max_offset"][p]]
            if not behind or time.monotonic() > deadline:
                break
            self.progress.show(f"the consumer is catching up on partition(s) {behind}")
            time.sleep(0.5)
        cs = self.consumer.ask("stop")
        self.consumer.close()
        return {"acked": sum(ps["acked"]), "sent": ps["sent"], "unacked_at_end": ps["queued"],
                "delivery_errors": ps["errors"] or None, "producer_client_errors": ps["client_errors"],
                "received": sum(cs["received"]), "offset_gaps": cs["offset_gaps"], "offset_back": cs["offset_back"],
                "seq_gaps": cs["seq_gaps"], "seq_dups": cs["seq_dups"], "consumer_errors": cs["errors"] or None,
                "consumer_client_errors": cs["client_errors"], "caught_up": not behind,
                "max_offset_acked": ps["max_offset"], "last_offset_read": cs["last_offset"]}

    def close(self) -> dict:
        out: dict = {}
        for c in (self.producer, self.consumer):
            if c is not None and c.proc.is_alive():
                c.proc.kill()
                c.close()
        if self.cluster is not None:
            self.progress.show("stopping the brokers")
            out["exit_codes"] = self.cluster.stop()
            problems = [log_problems(b.log_path) for b in self.cluster.brokers]
            out["broker_log_problems"] = {"count": sum(p["count"] for p in problems),
                                          "first": [f"node {i + 1}: {line}" for i, p in enumerate(problems)
                                                    for line in p["first"]][:10]}
        if self.minio is not None:
            self.minio.stop()
            out["minio_log_problems"] = log_problems(os.path.join(self.work, "minio.log"))
        if self.args.keep:
            out["kept"] = self.work
            print(f"kept {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        return out


def run_failover(args) -> int:
    if args.rounds < 1 or args.brokers < 2 or args.partitions < 1 or args.record_size < VALUE_HEADER.size \
            or args.rate <= 0:
        print("sluice bench failover: wants --rounds >= 1, --brokers >= 2, --partitions >= 1, --rate > 0 and "
              f"--record-size >= {VALUE_HEADER.size}", file=sys.stderr)
        return 2
    progress = Progress(args.quiet)
    command = "sluice " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t_start = time.monotonic()
    run = _Run(args, progress)
    rounds: list[dict] = []
    integrity = None
    error = None
    try:
        run.start()
        for r in range(1, args.rounds + 1):
            rounds.append(run.round(r))
        integrity = run.finish()
    except Exception as exc:     # keep what the rounds before it measured
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        closing = run.close()
        progress.done()
    result = {
        "bench": "failover",
        "command": command,
        "config": {"rounds": args.rounds, "brokers": args.brokers, "partitions": args.partitions, "wal": args.wal,
                   "rate_mb_per_s": args.rate, "record_size": args.record_size,
                   "session_timeout_ms": args.session_timeout_ms, "heartbeat_ms": args.heartbeat_ms,
                   "steady_seconds": args.steady_seconds, "kill": args.kill, "poll_ms": args.poll_ms,
                   "broker_overrides": run.overrides, "producer_set": args.producer_set,
                   "consumer_set": args.consumer_set, "balancer": run.balance,
                   "cluster": f"{args.brokers} `sluice serve` brokers (node ids 1-{args.brokers}) on one MinIO "
                              "bucket on this machine; the killed broker restarts on an empty data dir after "
                              "each round but the last"},
        "machine": {**machine(), "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "versions": {**sluice_version(), "client": f"confluent-kafka {_confluent_versions()}"},
        "rounds": rounds,
        "summary": summarize(rounds, args.session_timeout_ms / 1000),
        "integrity": integrity,
        "error": error,
        **closing,
        "elapsed_s": round(time.monotonic() - t_start, 1),
    }
    print(markdown_table(result))
    write_results(result, args.json, args.plot, plot)
    if error:
        print(f"sluice bench failover: stopped after {len(rounds)} round(s): {error}", file=sys.stderr)
        return 1
    bad = [r["round"] for r in rounds if not r["complete"]]
    if bad:
        print(f"sluice bench failover: round(s) {bad} did not see every partition ack and serve again within "
              "--round-timeout", file=sys.stderr)
    if integrity and (integrity["offset_gaps"] or integrity["seq_dups"] or integrity["delivery_errors"]
                      or not integrity["caught_up"]):
        print("sluice bench failover: the records read back are not what was acknowledged; see the JSON",
              file=sys.stderr)
        return 1
    return 1 if bad else 0
