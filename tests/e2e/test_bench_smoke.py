"""`sluice bench produce` runs end to end against a broker it starts itself.

Only that it completes and reports sane, positive figures: no timing thresholds
(the machine may be busy with other work).
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_produce_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "bench", "produce", "--duration", "3", "--partitions", "2",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "throughput" in proc.stdout
    r = json.loads(out.read_text())
    assert r["bench"] == "produce"
    assert r["config"]["partitions"] == 2
    assert r["worker_errors"] == []
    assert r["steady"]["msgs"] > 0
    assert r["steady"]["mb_per_s"] > 0
    assert r["steady"]["latency_samples"] > 0
    lat = r["steady"]["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
    assert r["totals"]["acked"] > 0
    assert r["totals"]["unacked_at_end"] == 0
    assert r["totals"]["delivery_errors"] == {}
    assert r["timeline"] and any(p["mb_per_s"] > 0 for p in r["timeline"])


def test_bench_latency_smoke(tmp_path):
    """`sluice bench latency` with Sluice alone (the Kafka side shares bench compare's
    broker handling, which test_bench_compare_smoke runs against a real Kafka)."""
    out, png = tmp_path / "lat.json", tmp_path / "lat.png"
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "bench", "latency", "--systems", "sluice", "--rates", "2,5",
         "--seconds", "3", "--warmup-seconds", "3", "--rounds", "1", "--partitions", "2",
         "--data-dir", str(tmp_path), "--json", str(out), "--plot", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| rate (MB/s) | system |" in proc.stdout
    assert "[3/3 runs] round 1/1 sluice: 5 MB/s" in proc.stderr     # progress
    r = json.loads(out.read_text())
    assert r["bench"] == "latency" and r["config"]["rates_mb_per_s"] == [2.0, 5.0]
    assert [(x["system"], x["rate"]) for x in r["runs"]] == [("sluice", 2.0), ("sluice", 5.0)]
    for run in r["runs"]:
        lat = run["latency_ms"]
        assert run["mb_per_s"] > 0 and run["unacked"] == 0 and not run["errors"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["p99_9"]
        assert sum(run["broker"]["produce_request_share_within_ms"].values()) > 0   # scraped from the broker
    assert [row["system"] for row in r["summary"]] == ["sluice", "sluice"]
    assert png.stat().st_size > 10_000
    assert not list(tmp_path.glob("sluice-bench-*"))    # the broker's data dir, removed at the end


def test_bench_produce_brokers_smoke(tmp_path):
    """`--brokers 1,2`: the same load against a fresh 1- and 2-broker cluster, the partitions spread."""
    out, png = tmp_path / "brokers.json", tmp_path / "brokers.png"
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "bench", "produce", "--brokers", "1,2", "--duration", "3",
         "--partitions", "2", "--quiet", "--data-dir", str(tmp_path), "--json", str(out), "--plot", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| brokers | MB/s (median) | ratio to 1 |" in proc.stdout
    r = json.loads(out.read_text())
    assert r["bench"] == "produce-brokers" and [x["brokers"] for x in r["runs"]] == [1, 2]
    assert r["runs"][0]["partitions_led"] == {"1": 2} and r["runs"][1]["partitions_led"] == {"1": 1, "2": 1}
    for run in r["runs"]:
        assert run["mb_per_s"] > 0 and run["unacked_at_end"] == 0 and run["exit_codes"] == [0] * run["brokers"]
    assert r["summary"][0]["ratio_to_first"] == 1.0 and r["summary"][1]["ratio_to_first"] > 0
    assert png.stat().st_size > 10_000
    assert not list(tmp_path.glob("sluice-bench-brokers-*"))     # the clusters' dirs, removed at the end
