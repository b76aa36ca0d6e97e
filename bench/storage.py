"""``sluice bench storage``: what the object store costs and how fast it reads back.

One run, on a MinIO it starts itself (deploy/install-minio.sh, a temp dir, a
free loopback port), in four phases:

1. ingest: unthrottled acks=all produce for ``--ingest-seconds`` (librdkafka,
   as ``sluice bench produce``); object-store PUTs per GB ingested and the
   average segment (chunk) size in the manifests;
2. merge: the broker restarts with merge on; when it settles, the
   average segment size and the data-object count again;
3. catch-up read: the broker restarts with an EMPTY data dir (cold block
   cache) and one librdkafka consumer reads everything from offset 0; then
   reads it all again (warm block cache);
4. tail produce latency at ``--rate`` MB/s for ``--latency-seconds``, alone and
   then with a catch-up consumer reading the old data at the same time (after
   another empty-data-dir restart, so it reads from MinIO).

Prints a table, writes ``--json`` and a ``--plot`` PNG. Every wait is bounded.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .common import MB, create_topic, machine, write_results
from .launch import BrokerProcess
from .minio import MinioServer, install_minio
from .produce import drive, drive_args


def add_parser(kinds) -> None:
    s = kinds.add_parser("storage", help="object storage: PUTs/GB, merge, catch-up reads, "
                                         "tail latency with a catch-up reader (MinIO)",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--partitions", type=int, default=6)
    s.add_argument("--record-size", type=int, default=1024)
    s.add_argument("--ingest-seconds", type=float, default=20.0)
    s.add_argument("--rate", type=float, default=20.0, metavar="MB/s",
                   help="produce rate of the tail-latency phase")
    s.add_argument("--latency-seconds", type=float, default=15.0)
    s.add_argument("--block-cache-mb", type=int, default=4096,
                   help="cache.block.bytes for the read phases (warm = fits)")
    s.add_argument("--reader-nice", type=int, default=0, metavar="N",
                   help="run the tail phase's catch-up reader at this nice level: on a shared machine "
                        "it competes with the broker for CPU, which a consumer elsewhere would not")
    s.add_argument("--quick", action="store_true", help="short phases (smoke test)")
    s.add_argument("--json", metavar="FILE")
    s.add_argument("--plot", metavar="FILE.png")
    s.set_defaults(func=run)


# ------------------------------------------------------------------------ processes
BUCKET = "sluice-bench"


def start_minio(workdir: str) -> MinioServer:
    """MinIO (deploy/install-minio.sh) on ``workdir/minio`` with the bench bucket; log ``workdir/minio.log``."""
    minio = MinioServer(install_minio(), Path(workdir) / "minio", access_key="sluice-bench",
                        secret_key="sluice-bench-secret", log_path=Path(workdir) / "minio.log")
    minio.start()
    try:
        minio.create_bucket(BUCKET)
    except BaseException:
        minio.stop()
        raise
    return minio


def s3_broker(workdir: str, minio: MinioServer) -> BrokerProcess:
    """``sluice serve`` against the bench bucket, with metrics; log ``workdir/broker.log``.
    Restart it with ``restart``."""
    return BrokerProcess(Path(workdir) / "broker-data", extra_args=["--object-store", f"s3://{BUCKET}"],
                         env=minio.env(), metrics=True, log_path=Path(workdir) / "broker.log",
                         stop_timeout=120.0)


def restart(b: BrokerProcess, *overrides: str, wipe: bool = False, timeout: float = 60.0) -> BrokerProcess:
    """(Re)start ``b`` with these overrides (only), after emptying its data dir if ``wipe``."""
    b.stop()
    if wipe:
        b.wipe()
    b.overrides = list(overrides)
    return b.start(timeout)


def segments(minio: MinioServer) -> list[int]:
    """Lengths of every segment in every manifest of the bench bucket."""
    c = minio.client()
    lengths = []
    for o in minio.objects(BUCKET, "manifests/"):
        m = json.loads(c.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read())
        lengths += [s["length"] for s in m["segments"]]
    return lengths


def _catch_up(bootstrap: str, topic: str, partitions: int, ends: dict[int, int], out, nice: int = 0) -> None:
    """Read [0, end) of every partition; put (bytes, seconds) on ``out``."""
    from confluent_kafka import Consumer, TopicPartition
    if nice:
        os.nice(nice)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"catchup-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800,
                  "max.partition.fetch.bytes": 8 << 20, "queued.max.messages.kbytes": 262144})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    todo = {p for p in range(partitions) if ends[p] > 0}
    nbytes = 0
    t0 = time.perf_counter()
    deadline = time.monotonic() + 600
    while todo and time.monotonic() < deadline:
        for m in c.consume(10000, 1.0):
            if m.error():
                continue
            nbytes += len(m.value())
            if m.offset() >= ends[m.partition()] - 1:
                todo.discard(m.partition())
    secs = time.perf_counter() - t0
    c.close()
    out.put((nbytes, secs, sorted(todo)))


def _ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)[1]
                for p in range(partitions)}
    finally:
        c.close()


def _read_all(bootstrap: str, topic: str, partitions: int, ends: dict[int, int]) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_catch_up, args=(bootstrap, topic, partitions, ends, q), daemon=True)
    p.start()
    nbytes, secs, missing = q.get(timeout=700)
    p.join(10)
    return {"bytes": nbytes, "seconds": round(secs, 2), "mb_per_s": round(nbytes / MB / secs, 1),
            "incomplete_partitions": missing}


def _produce_args(a, duration: float, rate: float | None, warmup: float = 2.0) -> argparse.Namespace:
    return drive_args(record_size=a.record_size, partitions=a.partitions, duration=duration,
                      rate=rate, warmup=warmup, quiet=False)


def _wait_settled(b: BrokerProcess, name: str, quiet_s: float, timeout: float) -> float:
    """Wait until metric ``name`` stops changing for ``quiet_s``; returns its value."""
    last, since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = b.scrape().get((name, ()), 0.0)
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.5)
    return last or 0.0


def _step(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- run
def run(a) -> int:
    if a.quick:
        a.ingest_seconds, a.latency_seconds = min(a.ingest_seconds, 6.0), min(a.latency_seconds, 5.0)
    work = tempfile.mkdtemp(prefix="sluice-bench-storage-")
    result: dict = {"command": "sluice bench storage " + " ".join(sys.argv[3:]), "machine": machine(),
                    "config": {k: v for k, v in vars(a).items() if k != "func"}}
    minio = broker = None
    try:
        _step("starting MinIO")
        minio = start_minio(work)
        broker = s3_broker(work, minio)
        no_merge = ("s3.merge.interval.ms=3600000",)
        cache = (f"cache.block.bytes={a.block_cache_mb << 20}",)
        restart(broker, *no_merge)
        topic = f"storage-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic, a.partitions)

        # 1. ingest
        _step(f"1/4 ingest: unthrottled acks=all produce for {a.ingest_seconds:g} s")
        r = drive(_produce_args(a, a.ingest_seconds, None), broker.bootstrap, topic, broker.proc.pid,
                  broker.metrics_address)
        # everything uploaded (bounded wait), then read the broker's own request counters
        deadline = time.monotonic() + 120
        while broker.scrape().get(("sluice_wal_size_bytes", ()), 1) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        m = broker.scrape()
        puts = sum(v for (n, lab), v in m.items()
                   if n == "sluice_objectstore_requests_total" and dict(lab).get("op") == "put")
        ingested = m.get(("sluice_bytes_in_total", ()), 0.0)
        broker.stop()
        segs = segments(minio)
        data_objs = minio.objects(BUCKET, "data/")
        result["ingest"] = {
            "produce_mb_per_s": r["steady"]["mb_per_s"] if r else None,
            "bytes": int(ingested),
            "puts": int(puts),
            "puts_per_gb": round(puts / (ingested / 1e9), 1) if ingested else None,
            "data_objects": len(data_objs),
            "segments": len(segs),
            "avg_segment_bytes": round(sum(segs) / max(1, len(segs))),
            "avg_data_object_bytes": round(sum(o["Size"] for o in data_objs) / max(1, len(data_objs))),
        }

        # 2. merge
        _step("2/4 merge: restart with merge every 500 ms until it settles")
        restart(broker, "s3.merge.interval.ms=500", "s3.gc.interval.ms=1000", "s3.gc.grace.ms=1000")
        t0 = time.monotonic()
        merged = _wait_settled(broker, "sluice_merges_total", 4.0, 600)
        _wait_settled(broker, "sluice_gc_deleted_objects_total", 4.0, 120)
        broker.stop()
        segs2 = segments(minio)
        objs2 = minio.objects(BUCKET, "data/")
        result["merge"] = {
            "runs_merged": merged, "seconds": round(time.monotonic() - t0, 1),
            "segments": len(segs2), "avg_segment_bytes": round(sum(segs2) / max(1, len(segs2))),
            "data_objects": len(objs2),
            "avg_data_object_bytes": round(sum(o["Size"] for o in objs2) / max(1, len(objs2))),
        }

        # 3. catch-up reads
        _step("3/4 catch-up read from offset 0: empty data dir (cold), then again (warm)")
        restart(broker, *no_merge, *cache, wipe=True)
        ends = _ends(broker.bootstrap, topic, a.partitions)
        cold = _read_all(broker.bootstrap, topic, a.partitions, ends)
        warm = _read_all(broker.bootstrap, topic, a.partitions, ends)
        mm = broker.scrape()
        result["catch_up"] = {"cold": cold, "warm": warm, "gets": mm.get(
            ("sluice_objectstore_requests_total", (("op", "get_range"), ("outcome", "ok"))), 0)}
        broker.stop()

        # 4. tail latency, alone and with a catch-up reader
        _step(f"4/4 tail produce at {a.rate:g} MB/s for {a.latency_seconds:g} s: alone")
        restart(broker, *no_merge, wipe=True)
        before = broker.scrape()
        alone = drive(_produce_args(a, a.latency_seconds, a.rate), broker.bootstrap, topic,
                      broker.proc.pid, broker.metrics_address)
        after = broker.scrape()
        broker.stop()
        broker_side = {"alone": alone["steady"].get("wal") if alone else None}

        def puts(m):
            return sum(v for (n, lab), v in m.items()
                       if n == "sluice_objectstore_requests_total" and dict(lab).get("op") == "put")
        paced_in = after.get(("sluice_bytes_in_total", ()), 0) - before.get(("sluice_bytes_in_total", ()), 0)
        result["paced_puts_per_gb"] = round((puts(after) - puts(before)) / (paced_in / 1e9), 1) \
            if paced_in else None
        runs = {}
        for name, extra in (("with_catch_up", ()),
                            ("with_catch_up_unpaced", ("remote.fetch.produce.latency.target.ms=0",))):
            _step(f"4/4 ... and with a catch-up consumer reading from offset 0 (cold cache)"
                  f"{', catch-up pacing off' if extra else ''}")
            restart(broker, *no_merge, *extra, wipe=True)
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            reader = ctx.Process(target=_catch_up, args=(broker.bootstrap, topic, a.partitions, ends, q,
                                                         a.reader_nice),
                                 daemon=True)
            reader.start()
            time.sleep(1.0)  # the reader is connected and fetching
            busy = drive(_produce_args(a, a.latency_seconds, a.rate), broker.bootstrap, topic,
                         broker.proc.pid, broker.metrics_address)
            m = broker.scrape()
            broker_side[name] = busy["steady"].get("wal") if busy else None
            rb, rs, _ = q.get(timeout=700)
            reader.join(10)
            broker.stop()
            runs[name] = (busy, rb / MB / rs, m.get(("sluice_remote_fetch_paced_seconds_total", ()), 0.0))
        busy, reader_mb, paced = runs["with_catch_up"]
        unpaced, unpaced_reader_mb, _ = runs["with_catch_up_unpaced"]
        result["tail_latency"] = {
            "rate_mb_per_s": a.rate,
            "reader_nice": a.reader_nice,
            "alone": alone["steady"]["latency_ms"] if alone else None,
            "with_catch_up": busy["steady"]["latency_ms"] if busy else None,
            "catch_up_reader_mb_per_s": round(reader_mb, 1),
            "catch_up_paced_seconds": round(paced, 1),
            "with_catch_up_unpaced": unpaced["steady"]["latency_ms"] if unpaced else None,
            "catch_up_reader_mb_per_s_unpaced": round(unpaced_reader_mb, 1),
            "broker_cpu_alone": alone["steady"].get("broker_cpu_fraction") if alone else None,
            "broker_cpu_with_catch_up": busy["steady"].get("broker_cpu_fraction") if busy else None,
            "loadavg_1m_with_catch_up": busy["machine"].get("loadavg_1m_after") if busy else None,
            # the broker's own Produce time (frame read to response written) and WAL
            # fdatasyncs over each phase's steady window, from its histograms: what the
            # client sees beyond them is queueing in the client, the network and CPU
            # the broker did not get
            "broker_produce_time": broker_side,
            # per second: when in the run the slow acks came (t = seconds since the start)
            "timelines": {name: [{"t": p["t"], **{q: p["latency_ms_of_sends"][q] for q in ("p50", "p99", "max")}}
                                 for p in r["timeline"] if "latency_ms_of_sends" in p]
                          for name, r in (("alone", alone), ("with_catch_up", busy),
                                          ("with_catch_up_unpaced", unpaced)) if r},
        }
    finally:
        if broker is not None:
            broker.stop()
        if minio is not None:
            minio.stop()
        shutil.rmtree(work, ignore_errors=True)
    _print(result)
    write_results(result, a.json, a.plot, _plot)
    return 0


def _print(r: dict) -> None:
    i, c, cu, t = r["ingest"], r["merge"], r["catch_up"], r["tail_latency"]
    rows = [
        ("ingest (acks=all, unthrottled)", f"{i['produce_mb_per_s']} MB/s, {i['bytes'] / MB:.0f} MB"),
        ("PUTs per GB ingested, unthrottled", f"{i['puts_per_gb']}"),
        (f"PUTs per GB ingested at {t['rate_mb_per_s']:g} MB/s", f"{r.get('paced_puts_per_gb')}"),
        ("data objects / avg size before merge", f"{i['data_objects']} / {i['avg_data_object_bytes'] / MB:.2f} MB"),
        ("segments / avg segment before merge", f"{i['segments']} / {i['avg_segment_bytes'] / MB:.3f} MB"),
        ("segments / avg segment after merge", f"{c['segments']} / {c['avg_segment_bytes'] / MB:.2f} MB"),
        ("data objects / avg size after merge + GC", f"{c['data_objects']} / {c['avg_data_object_bytes'] / MB:.2f} MB"),
        ("catch-up read, cold block cache (MinIO)", f"{cu['cold']['mb_per_s']} MB/s"),
        ("catch-up read, warm block cache", f"{cu['warm']['mb_per_s']} MB/s"),
        (f"tail produce p50/p99 at {t['rate_mb_per_s']:g} MB/s, alone",
         f"{t['alone']['p50']:.1f} / {t['alone']['p99']:.1f} ms" if t["alone"] else "-"),
        (f"tail produce p50/p99 at {t['rate_mb_per_s']:g} MB/s, with a catch-up reader",
         f"{t['with_catch_up']['p50']:.1f} / {t['with_catch_up']['p99']:.1f} ms "
         f"(reader {t['catch_up_reader_mb_per_s']} MB/s)"
         if t["with_catch_up"] else "-"),
        ("... the same with catch-up pacing off (remote.fetch.produce.latency.target.ms=0)",
         f"{t['with_catch_up_unpaced']['p50']:.1f} / {t['with_catch_up_unpaced']['p99']:.1f} ms "
         f"(reader {t['catch_up_reader_mb_per_s_unpaced']} MB/s)" if t.get("with_catch_up_unpaced") else "-"),
    ]
    bs = t.get("broker_produce_time") or {}
    phases = ("alone", "with_catch_up", "with_catch_up_unpaced")
    for label, field in (("WAL fdatasync", "fsync_p99_ms_at_most"),
                         ("the broker's own Produce time", "produce_request_p99_ms_at_most")):
        if any(bs.get(k) for k in phases):
            rows.append((f"... {label} p99 (bucket bound): alone / with reader / pacing off",
                         " / ".join(f"<= {bs[k][field]} ms" if bs.get(k) else "-" for k in phases)))
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


def _plot(r: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4.5))
    i, c = r["ingest"], r["merge"]
    b = ax1.bar(["before", "after"], [i["avg_segment_bytes"] / MB, c["avg_segment_bytes"] / MB],
                color=["tab:gray", "tab:blue"])
    ax1.bar_label(b, fmt="%.2f")
    ax1.set_ylabel("MB")
    ax1.set_title("average segment size (merge)", fontsize=9)
    cu = r["catch_up"]
    b = ax2.bar(["cold (MinIO)", "warm (block cache)"], [cu["cold"]["mb_per_s"], cu["warm"]["mb_per_s"]],
                color=["tab:orange", "tab:green"])
    ax2.bar_label(b, fmt="%.0f")
    ax2.set_ylabel("MB/s")
    ax2.set_title("catch-up read from offset 0", fontsize=9)
    t = r["tail_latency"]
    keys = ["p50", "p90", "p99", "p99_9"]
    x = range(len(keys))
    series = [(t["alone"], "alone"), (t["with_catch_up"], "with catch-up reader (paced)"),
              (t.get("with_catch_up_unpaced"), "with catch-up reader, pacing off")]
    series = [(v, label) for v, label in series if v]
    w = 0.8 / max(1, len(series))
    for j, (v, label) in enumerate(series):
        ax3.bar([k - 0.4 + w * (j + 0.5) for k in x], [v[k] for k in keys], w, label=label)
    ax3.set_yscale("log")
    ax3.set_xticks(list(x), keys)
    ax3.set_ylabel("ms")
    ax3.set_title(f"tail produce ack latency at {t['rate_mb_per_s']:g} MB/s", fontsize=9)
    ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
