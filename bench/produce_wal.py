"""``sluice bench produce --wal file,shared,s3[,s3:MS]``: the WAL in the bucket next to the WAL on disk.

One MinIO on this machine; per round, for each WAL variant in turn (the order
reversed every other round), a fresh ``sluice serve`` on a temp data dir and a
bucket of its own on that MinIO, so the data objects and manifests take the
same path and only the WAL differs:

* ``file``: ``wal.type=file``, the WAL on the local disk, fdatasync per group commit;
* ``shared``: ``wal.type=file`` with ``wal.shared.dir`` (a directory of the run's
  temp dir standing in for a shared volume): a file per group commit, two fsyncs;
* ``s3``: ``wal.type=s3``, one PUT per group commit (``wal.s3.interval.ms=0``: the
  next commit starts when the previous PUT returned);
* ``s3:MS``: the same with ``wal.s3.interval.ms=MS`` (a wider commit window).

With ``--kafka``, Apache Kafka 4.4 (one KRaft node, acks from the page cache)
is one more variant, as a reference. Each broker, 2 s after its start, gets one ``sluice bench
produce`` driver run (librdkafka, idempotent, acks=all) per ``--wal-loads``
entry (``max``: unthrottled, else MB/s), each on a new topic. Reported per run:
throughput and ack latency (the steady window, as ``bench produce``), and from
the broker's metrics over the whole run: WAL commits (for ``s3`` each one is a
PUT) per GB accepted, the other PUTs (data objects, manifests, heartbeats) per
GB, and the commit's mean time (fdatasync, or the PUT) and size.
"""
from __future__ import annotations

import argparse
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from . import produce, storage
from .common import create_topic, machine, sluice_version, write_results
from .compare import Progress, _confluent_versions, _store_counters, _System
from .launch import BrokerProcess

VARIANT_RE = re.compile(r"^(file|shared|s3)(?::(\d+))?$")


def parse_variants(text: str, kafka: bool = False) -> list[dict]:
    """``file,shared,s3,s3:5`` as variants: ``{"name", "wal_type", "interval_ms", "overrides"}``; with
    ``kafka`` Apache Kafka last (``wal_type`` None). Raises ValueError on anything else or a repeat."""
    out: list[dict] = []
    for item in (x.strip() for x in text.split(",")):
        v: dict[str, Any]
        m = VARIANT_RE.match(item)
        if m is None or (m.group(1) != "s3" and m.group(2) is not None):
            raise ValueError(f"--wal: {item!r} is not file, shared, s3 or s3:MS")
        kind, ms = m.group(1), m.group(2)
        if kind in ("file", "shared"):      # shared: wal.shared.dir is added per run (a dir of its own)
            v = {"name": kind, "wal_type": kind, "interval_ms": None, "overrides": ["wal.type=file"]}
        else:
            interval = int(ms) if ms is not None else 0
            v = {"name": "s3" if ms is None else f"s3:{interval}", "wal_type": "s3", "interval_ms": interval,
                 "overrides": ["wal.type=s3", f"wal.s3.interval.ms={interval}"]}
        if any(x["name"] == v["name"] for x in out):
            raise ValueError(f"--wal: {v['name']} twice")
        out.append(v)
    if kafka:
        out.append({"name": "kafka", "wal_type": None, "interval_ms": None, "overrides": []})
    return out


def parse_loads(text: str) -> list[float | None]:
    """``max,10``: None (unthrottled) and MB/s values, in the order given."""
    out: list[float | None] = []
    for item in (x.strip() for x in text.split(",")):
        if item == "max":
            out.append(None)
            continue
        try:
            rate = float(item)
        except ValueError:
            raise ValueError(f"--wal-loads: {item!r} is neither max nor MB/s") from None
        if rate <= 0:
            raise ValueError(f"--wal-loads: {item!r} must be positive")
        out.append(rate)
    if not out:
        raise ValueError("--wal-loads: nothing to run")
    return out


def load_name(rate: float | None) -> str:
    return "unthrottled" if rate is None else f"{rate:g} MB/s"


def broker_counters(samples: dict) -> dict[str, float]:
    """What a run needs of a broker's metrics (``BrokerProcess.scrape()``): WAL commits and their
    seconds and bytes, bytes accepted by Produce, PUT requests (ok or not)."""
    store = _store_counters(samples)
    return {"wal_commits": samples.get(("sluice_wal_fsync_seconds_count", ()), 0.0),
            "wal_commit_seconds": samples.get(("sluice_wal_fsync_seconds_sum", ()), 0.0),
            "wal_commit_bytes": samples.get(("sluice_wal_fsync_bytes_total", ()), 0.0),
            "bytes_in": samples.get(("sluice_bytes_in_total", ()), 0.0),
            "puts": store.get("requests.put", 0.0) + store.get("requests.put_error", 0.0)}


def wal_costs(before: dict[str, float], after: dict[str, float], wal_type: str) -> dict:
    """Per GB accepted between two ``broker_counters``: WAL commits (a PUT each with the s3 WAL) and
    the other PUTs; the commits' mean time and size."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    gb = d["bytes_in"] / 1e9
    commits = d["wal_commits"]
    wal_puts = commits if wal_type == "s3" else 0.0
    return {"bytes_in": int(d["bytes_in"]), "wal_commits": int(commits), "puts": int(d["puts"]),
            "wal_commits_per_gb": round(commits / gb, 1) if gb else None,
            "wal_puts_per_gb": round(wal_puts / gb, 1) if gb and wal_type == "s3" else None,
            "other_puts_per_gb": round((d["puts"] - wal_puts) / gb, 1) if gb else None,
            "commit_mean_ms": round(d["wal_commit_seconds"] / commits * 1000, 3) if commits else None,
            "commit_mean_kib": round(d["wal_commit_bytes"] / commits / 1024, 1) if commits else None}


def _median(vals: list) -> float | None:
    vs = [v for v in vals if v is not None]
    return round(statistics.median(vs), 2) if vs else None


def summarize(runs: list[dict], variants: list[dict], loads: list[float | None]) -> list[dict]:
    """Per (load, variant): medians over the rounds, each round's MB/s, and the ratio of the median
    MB/s to the first variant's at that load."""
    rows = []
    for rate in loads:
        base = None
        for i, v in enumerate(variants):
            rs = [r for r in runs if r["variant"] == v["name"] and r["load"] == rate and r.get("mb_per_s")]
            row = {"load": rate, "variant": v["name"], "runs": len(rs),
                   "mb_per_s_rounds": [r["mb_per_s"] for r in rs],
                   "mb_per_s": _median([r["mb_per_s"] for r in rs]),
                   "p50_ms": _median([r["latency_ms"]["p50"] for r in rs]),
                   "p99_ms": _median([r["latency_ms"]["p99"] for r in rs]),
                   "p99_ms_rounds": [r["latency_ms"]["p99"] for r in rs]}
            for k in ("wal_commits_per_gb", "wal_puts_per_gb", "other_puts_per_gb", "commit_mean_ms",
                      "commit_mean_kib"):
                row[k] = _median([(r.get("costs") or {}).get(k) for r in rs])
            if i == 0:
                base = row["mb_per_s"]
            row["ratio_to_first"] = round(row["mb_per_s"] / base, 3) if base and row["mb_per_s"] else None
            rows.append(row)
    return rows


def _f(v, spec: str = "g") -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(result: dict) -> str:
    c = result["config"]
    first = c["variants"][0]
    lines = [f"| load | WAL | MB/s (median) | per round | vs {first} | ack p50 / p99 ms (median) | "
             "WAL PUTs per GB | other PUTs per GB | WAL commits per GB | commit: mean ms, KiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["summary"]:
        lines.append(f"| {load_name(row['load'])} | {row['variant']} | **{_f(row['mb_per_s'])}** | "
                     f"{', '.join(_f(v) for v in row['mb_per_s_rounds'])} | {_f(row['ratio_to_first'], '.2f')} | "
                     f"{_f(row['p50_ms'])} / {_f(row['p99_ms'])} | {_f(row['wal_puts_per_gb'], ',.0f')} | "
                     f"{_f(row['other_puts_per_gb'], ',.0f')} | {_f(row['wal_commits_per_gb'], ',.0f')} | "
                     f"{_f(row['commit_mean_ms'])}, {_f(row['commit_mean_kib'])} |")
    lines += ["", f"{c['rounds']} round(s), the variants alternating their order; {c['producers']} librdkafka "
                  f"producer process(es), idempotent, acks=all, linger.ms={c['linger_ms']:g}, {c['record_size']} B "
                  f"values, {c['partitions']} partitions, {c['duration_s']:g} s per run ({c['warmup_s']:g} s "
                  "warm-up excluded); per variant a fresh broker on a MinIO on this machine (a bucket each). "
                  "PUTs and commits per GB accepted by Produce over the whole run; a commit is an fdatasync "
                  "(file) or a PUT (s3); kafka: Apache Kafka, acks from the page cache, no object store."]
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result["config"]
    loads = [None if x == "max" else x for x in c["loads_mb_per_s"]]
    variants = c["variants"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    width = 0.8 / max(1, len(variants))
    colors = plt.get_cmap("tab10")
    rows = {(r["load"], r["variant"]): r for r in result["summary"]}
    for j, v in enumerate(variants):
        xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(loads))]
        got = [rows.get((rate, v)) for rate in loads]
        axes[0].bar(xs, [(g or {}).get("mb_per_s") or 0 for g in got], width, color=colors(j), label=v)
        for x, g in zip(xs, got):
            if g:
                axes[0].plot([x] * len(g["mb_per_s_rounds"]), g["mb_per_s_rounds"], "k.", ms=4)
        axes[1].bar(xs, [(g or {}).get("p99_ms") or 0 for g in got], width, color=colors(j), label=f"{v} p99")
        axes[1].bar(xs, [(g or {}).get("p50_ms") or 0 for g in got], width * 0.5, color="k", alpha=0.35,
                    label="p50" if j == 0 else None)
        axes[2].bar(xs, [(g or {}).get("wal_puts_per_gb") or 0 for g in got], width, color=colors(j),
                    label=f"{v} WAL")
        axes[2].bar(xs, [(g or {}).get("other_puts_per_gb") or 0 for g in got], width,
                    bottom=[(g or {}).get("wal_puts_per_gb") or 0 for g in got], color=colors(j), alpha=0.4,
                    hatch="//", label=f"{v} other" if j == 0 else None)
    for ax, title, unit in ((axes[0], "throughput (median; dots: rounds)", "MB/s acked"),
                            (axes[1], "ack latency, p99 (bars) and p50 (dark)", "ms"),
                            (axes[2], "PUTs per GB accepted (WAL, then other)", "PUTs/GB")):
        ax.set_xticks(range(len(loads)))
        ax.set_xticklabels([load_name(x) for x in loads])
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    fig.suptitle(f"produce by WAL (MinIO on this machine): {c['partitions']} partitions, "
                 f"{c['record_size']} B, acks=all; {c['rounds']} round(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _one_run(args, bootstrap: str, rate: float | None, pid: int | None, metrics: str | None,
             broker: BrokerProcess | None, wal_type: str | None) -> dict:
    topic = f"wal-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, args.partitions)
    dargs = produce.drive_args(record_size=args.record_size, partitions=args.partitions, duration=args.duration,
                               rate=rate, linger_ms=args.linger_ms, warmup=args.warmup, bootstrap=bootstrap)
    dargs.producers, dargs.set = args.producers, args.set
    before = broker_counters(broker.scrape()) if broker else None
    r = produce.drive(dargs, bootstrap, topic, pid, metrics)
    after = broker_counters(broker.scrape()) if broker else None
    if r is None:
        return {"load": rate, "error": "the producer did not start"}
    s = r["steady"]
    out = {"load": rate, "mb_per_s": s["mb_per_s"], "latency_ms": s["latency_ms"],
           "unacked": r["totals"]["unacked_at_end"], "delivery_errors": r["totals"]["delivery_errors"] or None,
           "worker_errors": r["worker_errors"] or None, "broker_steady": s.get("wal"),
           "producer_cpu_s": r["cpu_during_produce"]["producers"]}
    if before is not None and after is not None and wal_type is not None:
        out["costs"] = wal_costs(before, after, wal_type)
    return out


def run(args) -> int:
    try:
        variants = parse_variants(args.wal, args.kafka)
        loads = parse_loads(args.wal_loads)
    except ValueError as exc:
        print(f"sluice bench produce: {exc}", file=sys.stderr)
        return 2
    if args.bootstrap or args.brokers or args.rate is not None or args.rounds < 1:
        print("sluice bench produce: --wal starts brokers of its own (not with --bootstrap or --brokers) and "
              "takes its rates from --wal-loads (not --rate); --rounds >= 1", file=sys.stderr)
        return 2
    libs = ""
    if args.kafka:
        from .kafka_reference import kafka_libs
        libs = kafka_libs()
    progress = Progress(args.quiet)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-wal-", dir=args.data_dir))
    runs: list[dict] = []
    minio = None
    steps, step = args.rounds * len(variants) * len(loads), 0
    try:
        progress.phase("starting MinIO")
        minio = storage.start_minio(str(work))
        for rnd in range(1, args.rounds + 1):
            order = variants if rnd % 2 else variants[::-1]
            for v in order:
                label = f"round {rnd}/{args.rounds} {v['name']}"
                progress.phase(f"[{step}/{steps} runs] {label}: starting broker")
                broker = sysm = None
                try:
                    if v["wal_type"] is None:
                        sysm = _System("kafka", argparse.Namespace(data_dir=str(work), kafka_heap=args.kafka_heap),
                                       libs)
                        bootstrap, pid, metrics = sysm.bootstrap, sysm.pid, None
                    else:
                        bucket = minio.create_bucket(f"wal-{rnd}-{v['name'].replace(':', '-')}")
                        overrides = list(v["overrides"])
                        if v["wal_type"] == "shared":
                            overrides.append(f"wal.shared.dir={work / f'shared-volume-{rnd}'}")
                        broker = BrokerProcess(work / f"r{rnd}-{v['name'].replace(':', '-')}",
                                               overrides=overrides,
                                               extra_args=["--object-store", f"s3://{bucket}", *args.broker_arg],
                                               env=minio.env(), metrics=True, stop_timeout=120.0)
                        broker.start(60)
                        assert broker.proc is not None
                        bootstrap, pid, metrics = broker.bootstrap, broker.proc.pid, broker.metrics_address
                    time.sleep(2.0)     # as bench compare: past the first seconds of a fresh broker
                    for rate in loads:
                        step += 1
                        progress.phase(f"[{step}/{steps} runs] {label}: {load_name(rate)} for {args.duration:g} s")
                        r = _one_run(args, bootstrap, rate, pid, metrics, broker, v["wal_type"])
                        r.update(variant=v["name"], round=rnd)
                        runs.append(r)
                        progress.show(f"{_f(r.get('mb_per_s'), '.1f')} MB/s, p99 "
                                      f"{_f((r.get('latency_ms') or {}).get('p99'), '.1f')} ms, WAL PUTs/GB "
                                      f"{_f((r.get('costs') or {}).get('wal_puts_per_gb'), ',.0f')}")
                finally:
                    if broker is not None:
                        code = broker.stop()
                        runs_here = [r for r in runs if r["variant"] == v["name"] and r["round"] == rnd]
                        for r in runs_here:
                            r["broker_exit_code"] = code
                    if sysm is not None:
                        sysm.stop(remove=False)
    finally:
        progress.phase("stopping MinIO, removing the run's dir")
        if minio is not None:
            minio.stop()
        shutil.rmtree(work, ignore_errors=True)
        progress.done()
    result = {
        "bench": "produce-wal",
        "command": "sluice " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "config": {"variants": [v["name"] for v in variants],
                   "variant_overrides": {v["name"]: v["overrides"] for v in variants},
                   "loads_mb_per_s": ["max" if x is None else x for x in loads], "rounds": args.rounds,
                   "producers": args.producers, "partitions": args.partitions, "record_size": args.record_size,
                   "duration_s": args.duration, "warmup_s": args.warmup, "acks": "all",
                   "linger_ms": args.linger_ms, "extra": args.set, "broker_args": args.broker_arg,
                   "store": "MinIO on this machine, a bucket per broker",
                   "order": "per round every variant on a fresh broker, the order reversed every other round; "
                            "per broker one run per load, lowest first as given"},
        "machine": machine(),
        "versions": {**sluice_version(), "client": f"confluent-kafka {_confluent_versions()}"},
        "runs": runs,
        "summary": summarize(runs, variants, loads),
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    print(markdown_table(result))
    write_results(result, args.json, args.plot, plot)
    bad = [r for r in runs if r.get("error") or r.get("unacked") or r.get("delivery_errors")
           or r.get("worker_errors") or r.get("broker_exit_code") not in (None, 0)]
    if bad:
        print(f"sluice bench produce: {len(bad)} run(s) had errors; see the JSON", file=sys.stderr)
    return 1 if bad else 0


