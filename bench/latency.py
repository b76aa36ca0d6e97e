"""``sluice bench latency``: produce ack latency against the rate, Sluice and Apache Kafka side by side.

Issue 2's latency target is a p99 at one rate; whether a miss is the broker's
or the machine's shows only next to the reference on the same machine with
the same client. Per round, each system gets a fresh broker (Sluice on a temp
data dir with its embedded store; Kafka a single KRaft node, acks from the
page cache), one unmeasured warm-up run at the highest rate (the JVM's JIT,
Sluice's first uploads and merge), then one ``sluice bench produce``
driver run per rate on a new topic: one librdkafka producer process,
idempotent, acks=all, linger.ms 5, 1 KiB values. The systems alternate their
order from round to round, and every data dir is removed only at the end
(freeing GBs stalls the next broker's fsyncs). The table gives medians over
the rounds; the plot p50 and p99 against the rate, with the 10 ms line.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
import uuid

from . import produce
from .common import write_results
from .compare import Progress, _confluent_versions, _create_topic, _machine, _System, _versions
from .kafka_reference import kafka_libs

TARGET_MS = 10.0


def add_parser(kinds) -> None:
    p = kinds.add_parser("latency", help="produce ack latency against the rate, Sluice next to Apache Kafka",
                         description=__doc__.split("\n\n")[1],
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rates", default="10,25,50,75", metavar="MB/s[,MB/s...]", help="producer rates, ascending")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each measured run (2 s warm-up inside)")
    p.add_argument("--warmup-seconds", type=float, default=15.0,
                   help="the unmeasured run at the highest rate on each fresh broker")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--systems", default="sluice,kafka", help="sluice, kafka or both")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--record-size", type=int, default=1024)
    p.add_argument("--linger-ms", type=float, default=5)
    p.add_argument("--kafka-heap", default="-Xmx1g -Xms1g", help="KAFKA_HEAP_OPTS for the Kafka broker")
    p.add_argument("--data-dir", default=None, help="parent of the brokers' temp data dirs")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_latency)


def _one_run(sysm: _System, args, rate: float, seconds: float) -> dict:
    topic = f"lat-{uuid.uuid4().hex[:8]}"
    _create_topic(sysm.bootstrap, topic, args.partitions)
    metrics = sysm.sluice.metrics_address if sysm.sluice else None
    drive_args = produce.drive_args(record_size=args.record_size, partitions=args.partitions, duration=seconds,
                                    rate=rate, linger_ms=args.linger_ms, bootstrap=sysm.bootstrap)
    r = produce.drive(drive_args, sysm.bootstrap, topic, sysm.pid, metrics)
    if r is None:
        return {"rate": rate, "error": "the producer did not start"}
    steady = r["steady"]
    out = {"rate": rate, "mb_per_s": steady["mb_per_s"], "latency_ms": steady["latency_ms"],
           "unacked": r["totals"]["unacked_at_end"], "errors": r["totals"]["delivery_errors"] or None,
           "producer_cpu_s": r["cpu_during_produce"]["producers"]}
    wal = steady.get("wal")
    if wal:
        out["broker"] = {k: wal.get(k) for k in ("produce_request_share_within_ms", "mean_fsync_ms",
                                                 "fsync_share_within_ms", "fsyncs_per_s")}
    return out


def run_latency(args) -> int:
    rates = sorted(float(x) for x in args.rates.split(",") if x.strip())
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not rates or not systems or any(s not in ("sluice", "kafka") for s in systems):
        print("sluice bench latency: --rates needs numbers, --systems sluice and/or kafka", file=sys.stderr)
        return 2
    if min(args.seconds, args.warmup_seconds) < 3:
        print("sluice bench latency: --seconds and --warmup-seconds must be at least 3 (2 s warm-up inside)",
              file=sys.stderr)
        return 2
    libs = kafka_libs() if "kafka" in systems else ""
    steps = args.rounds * len(systems) * (len(rates) + 1)
    progress = Progress(args.quiet)
    step = 0
    t0 = time.monotonic()
    runs: list[dict] = []
    leftovers: list[str] = []
    try:
        for rnd in range(args.rounds):
            order = systems if rnd % 2 == 0 else systems[::-1]
            for name in order:
                label = f"round {rnd + 1}/{args.rounds} {name}"
                progress.phase(f"[{step}/{steps} runs] {label}: starting broker")
                sysm = _System(name, args, libs)
                try:
                    step += 1
                    progress.phase(f"[{step}/{steps} runs] {label}: warm-up {args.warmup_seconds:g} s "
                                   f"at {rates[-1]:g} MB/s")
                    _one_run(sysm, args, rates[-1], args.warmup_seconds)
                    for rate in rates:
                        step += 1
                        progress.phase(f"[{step}/{steps} runs] {label}: {rate:g} MB/s for {args.seconds:g} s")
                        run = _one_run(sysm, args, rate, args.seconds)
                        run.update(system=name, round=rnd + 1)
                        runs.append(run)
                finally:
                    # kept until the end: deleting a run's GBs right before the next
                    # broker starts would stall that broker's fsyncs (ext4, discard)
                    sysm.stop(remove=False)
                    leftovers.append(sysm.data_dir)
    finally:
        progress.phase(f"removing {len(leftovers)} data dir(s)")
        for d in leftovers:
            shutil.rmtree(d, ignore_errors=True)
    progress.done()
    result = {
        "bench": "latency",
        "command": " ".join(["sluice"] + sys.argv[1:]) if sys.argv and "sluice" in sys.argv[0]
                   else " ".join(sys.argv),
        "config": {"rates_mb_per_s": rates, "seconds": args.seconds, "warmup_seconds": args.warmup_seconds,
                   "rounds": args.rounds, "systems": systems, "partitions": args.partitions,
                   "record_size": args.record_size, "linger_ms": args.linger_ms, "acks": "all",
                   "idempotence": True, "kafka_heap": args.kafka_heap},
        "machine": _machine(args.data_dir, quick=True),
        "versions": {**(_versions(libs) if libs else {}),
                     "client": f"confluent-kafka {_confluent_versions()}"},
        "run_time_s": round(time.monotonic() - t0, 1),
        "runs": runs,
        "summary": summarize(runs, rates, systems),
    }
    print(markdown_table(result))
    write_results(result, args.json, args.plot, plot)
    failed = [r for r in runs if r.get("error") or r.get("unacked") or r.get("errors")]
    if failed:
        print(f"sluice bench latency: {len(failed)} run(s) had errors or unacked messages; see the JSON",
              file=sys.stderr)
    return 1 if failed else 0


def summarize(runs: list[dict], rates: list[float], systems: list[str]) -> list[dict]:
    """Per (rate, system): medians over the rounds of throughput and p50/p99/p99.9, and each round's p99."""
    rows = []
    for rate in rates:
        for name in systems:
            ok = [r for r in runs if r["system"] == name and r["rate"] == rate and "latency_ms" in r]
            if not ok:
                continue

            def med(key: str, ok: list = ok) -> float:
                return round(statistics.median(r["latency_ms"][key] for r in ok), 2)
            within = [r["broker"]["produce_request_share_within_ms"].get("5") for r in ok
                      if r.get("broker") and r["broker"].get("produce_request_share_within_ms")]
            rows.append({"rate": rate, "system": name, "runs": len(ok),
                         "mb_per_s": round(statistics.median(r["mb_per_s"] for r in ok), 1),
                         "p50_ms": med("p50"), "p99_ms": med("p99"), "p99_9_ms": med("p99_9"),
                         "p99_per_round": [round(r["latency_ms"]["p99"], 1) for r in ok],
                         "broker_produce_within_5ms_pct": [w for w in within if w is not None] or None})
    return rows


def markdown_table(result: dict) -> str:
    lines = ["| rate (MB/s) | system | held (MB/s) | p50 (ms) | p99 (ms) | p99.9 (ms) | p99 per round (ms) "
             "| broker Produce within 5 ms (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["summary"]:
        within = ", ".join(f"{w:g}" for w in row["broker_produce_within_5ms_pct"] or []) or "-"
        lines.append(f"| {row['rate']:g} | {row['system']} | {row['mb_per_s']:g} | {row['p50_ms']:g} "
                     f"| **{row['p99_ms']:g}** | {row['p99_9_ms']:g} "
                     f"| {', '.join(f'{p:g}' for p in row['p99_per_round'])} | {within} |")
    c = result["config"]
    lines.append("")
    lines.append(f"Medians over {c['rounds']} round(s) of {c['seconds']:g} s runs (figures from the 2 s mark on); "
                 f"1 librdkafka producer, acks=all, idempotent, linger.ms={c['linger_ms']:g}, "
                 f"{c['record_size']} B values, {c['partitions']} partitions; each broker fresh per round "
                 f"and warmed by {c['warmup_seconds']:g} s at {max(c['rates_mb_per_s']):g} MB/s. "
                 f"Run time {result['run_time_s']:g} s.")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"sluice": "tab:blue", "kafka": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in result["config"]["systems"]:
        rows = [r for r in result["summary"] if r["system"] == name]
        xs = [r["rate"] for r in rows]
        ax.plot(xs, [r["p99_ms"] for r in rows], "o-", color=colors[name], label=f"{name} p99 (median)")
        ax.plot(xs, [r["p50_ms"] for r in rows], "s--", color=colors[name], alpha=0.6,
                label=f"{name} p50 (median)")
        for r in rows:
            ax.scatter([r["rate"]] * len(r["p99_per_round"]), r["p99_per_round"], color=colors[name],
                       alpha=0.35, s=14)
    ax.axhline(TARGET_MS, color="gray", linestyle=":", label=f"{TARGET_MS:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("producer rate (MB/s)")
    ax.set_ylabel("ack latency (ms, log scale)")
    c = result["config"]
    ax.set_title(f"librdkafka producer, acks=all, linger.ms={c['linger_ms']:g}: ack latency against rate "
                 f"({c['rounds']} rounds; dots: each round's p99)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
