"""`sluice bench compare --quick` runs Sluice and a real Apache Kafka side by side
end to end and reports the documented JSON shape, table, plot and BENCHMARKS.md
section, including (b) at several rates (10, 50 MB/s and 80% of the lower
calibrated maximum), (e) tail consume, (f) catch-up read (Sluice via MinIO) and
(g) partition move on a 3-node cluster of each (Sluice: 3 brokers on MinIO, with
the object-store requests of the move) and (h) the librdkafka producer against both.
No timing thresholds: the machine may be busy with other work."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MOVE_MIB, CATCHUP_MB = 8, 16
SMALL = ["--records", "25000", "--durable-records", "8000", "--rate-seconds", "2", "--tail-seconds", "3",
         "--librdkafka-seconds", "3", "--catchup-mb", str(CATCHUP_MB), "--move-mib", str(MOVE_MIB)]


@pytest.mark.timeout(540)
def test_bench_compare_quick(tmp_path, kafka_tools):
    out, png, md = tmp_path / "cmp.json", tmp_path / "cmp.png", tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## Produce (issue 2)\n\nkept\n\n## Comparison with Apache Kafka (issue 5)\n\n"
                  "old text\n\n<!-- notes below are kept by `sluice bench compare --write-benchmarks` -->\n"
                  "hand notes\n\n## Later section\n\nalso kept\n")
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "bench", "compare", "--quick", "--json", str(out), "--plot", str(png),
         "--write-benchmarks", str(md), "--note", "smoke test", "--data-dir", str(tmp_path),
         # smaller than --quick's sizes (which take ~3 min alone): this checks the harness, not figures
         *SMALL],
        cwd=ROOT, capture_output=True, text=True, timeout=480,   # about 4 min on 2 busy cores
        env={**__import__("os").environ, "KAFKA_LIBS": str(kafka_tools.libs)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "| workload | Kafka | Sluice | Sluice/Kafka |" in proc.stdout
    assert "round 1/1 kafka" in proc.stderr  # progress

    r = json.loads(out.read_text())
    assert r["bench"] == "compare"
    assert r["config"]["rounds"] == 1 and r["config"]["quick"] is True
    assert r["command"].startswith("sluice bench compare --quick")
    m = r["machine"]
    assert m["cpus"] >= 1 and m["memory_gib"] > 0
    assert m["fsync_64KiB"]["p50_ms"] > 0 and m["fsync_4KiB"]["p99_ms"] > 0
    assert r["versions"]["kafka"].startswith("4.")
    assert [(x["round"], x["system"]) for x in r["rounds"]] == [(1, "sluice"), (1, "kafka")]
    # (b): 10 and 50 MB/s, and 80% of the lower of the calibration's two unthrottled maxima
    cal = r["calibration"]
    assert cal["sluice"]["mb_per_s"] > 0 and cal["kafka"]["mb_per_s"] > 0
    assert cal["rate_mb_per_s"] == round(0.8 * min(cal["sluice"]["mb_per_s"], cal["kafka"]["mb_per_s"]), 1)
    runs = {run["key"]: run for run in r["config"]["rate_runs"]}
    assert set(runs) == {"b@10", "b@50", "b@80pct"}
    assert runs["b@80pct"]["mb_per_s"] == cal["rate_mb_per_s"] and runs["b@50"]["mb_per_s"] == 50
    assert r["config"]["rate_mb_per_s"] == min(run["mb_per_s"] for run in runs.values())   # the first run
    b_keys = set(runs)
    for rd in r["rounds"]:
        assert rd["rss_idle_mib"] > 0
        want = ({"a", "c", "e", "f", "g", "h"} if rd["system"] == "kafka" else {"a", "e", "f", "g", "h"}) | b_keys
        assert set(rd["workloads"]) == want
        assert rd["broker_log_problems"]["count"] >= 0
        for name, w in rd["workloads"].items():
            if name in ("e", "f", "g", "h"):
                continue
            assert w["records"] > 0 and w["mb_per_s"] > 0
            lat = w["latency_ms"]
            assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
            if name in runs:
                assert w["records"] == runs[name]["records"] and w["target_mb_per_s"] == runs[name]["mb_per_s"]
                assert isinstance(w["held_rate"], bool)
        assert rd["workloads"]["a"]["broker_rss_mib"]["peak"] > 0
        # (h) the librdkafka driver: unthrottled throughput, ack latency at a fixed rate
        h = rd["workloads"]["h"]
        assert h["unthrottled"]["mb_per_s"] > 0 and h["paced"]["target_mb_per_s"] == 10.0
        lat = h["paced"]["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["p99_9"]
        # (e) tail consume: every record produced at the fixed rate reached the consumer
        e = rd["workloads"]["e"]
        assert e["complete"] and e["records"] == e["expected_records"] == r["config"]["tail_records"]
        assert e["mb_per_s"] > 0 and e["producer"]["records"] == e["records"]
        assert e["timestamp_types"] == ["CreateTime"]
        lat = e["e2e_latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
        # (f) catch-up read: everything written, read back twice from offset 0
        f = rd["workloads"]["f"]
        assert f["records"] == f["produce"]["records"] == r["config"]["catchup_records"]
        for read in ("cold", "warm"):
            assert f[read]["records"] == f["records"] and f[read]["mb_per_s"] > 0 and f[read]["fetch_s"] > 0
        if rd["system"] == "sluice":
            # 1st read: every byte from MinIO (the data dir was emptied); 2nd: none
            assert f["cold"]["read_bytes_by_tier"]["objectstore_get_bytes"] >= f["cold"]["bytes"]
            assert f["warm"]["read_bytes_by_tier"].get("objectstore_get_bytes", 0) == 0
            assert f["exit_code"] == 0 and f["exit_code_after_write"] == 0
        # (g) partition move: 1 MiB and MOVE_MIB moved from broker 1 to 2, every offset still there
        g = rd["workloads"]["g"]
        assert set(g["moves"]) == {"1MiB", f"{MOVE_MIB}MiB"} and len(g["exit_codes"]) == 3
        assert all(rc is not None for rc in g["exit_codes"])
        for key, mib in (("1MiB", 1), (f"{MOVE_MIB}MiB", MOVE_MIB)):
            mv = g["moves"][key]
            assert mv["records"] == mib * 1024 and mv["offsets_after_move"] == [0, mv["records"]]
            assert mv["read_back_offsets"] == [0, mv["records"] - 1]
            assert mv["from_broker"] == 1 and mv["to_broker"] == 2
            assert 0 < mv["move_s"] and mv["move_s_lower_bound"] <= mv["move_s"] and mv["tool_s"] > 0
            assert 0 < mv["serving_s"] and mv["serving_transitions"][-1]["offset"] == mv["records"]
            assert mv["verify_runs"] >= 1 and mv["transitions"][-1]["replicas"] == [2]
            if rd["system"] == "kafka":
                assert mv["target_log_bytes"] >= mv["record_bytes"] and mv["source_log_bytes"] >= mv["record_bytes"]
            else:   # uploaded before the move; the flip seen in the bucket; the brokers' object-store requests
                assert mv["manifest_before_move"]["next_offset"] == mv["records"]
                assert mv["bucket_transitions"][-1]["owner"] == 2 and set(mv["phases_s"]) == {
                    "request", "old_owner", "new_owner"}
                st = mv["object_store"]
                assert st["idle"]["requests_total"] > 0 and st["idle"]["seconds"] > 0
                assert 0 < st["move"]["requests_total"] <= st["tool_flow"]["requests_total"]
                assert st["move"]["put_bytes"] > 0 and "beyond_idle_rate" in st["move"]
    rows = {row["key"]: row for row in r["summary"]}
    for key in ("a_mb_per_s", "a_p99_ms", "b@10_p50_ms", "b@50_p99_ms", "b@80pct_p99_9_ms", "c_mb_per_s",
                "d_rss_idle_mib", "d_rss_peak_mib", "e_mb_per_s", "e_p50_ms", "e_p99_ms", "f_cold_mb_per_s",
                "f_warm_mb_per_s", "h_mb_per_s", "h_p50_ms", "h_p99_ms"):
        assert rows[key]["status"] == "measured"
        assert rows[key]["kafka"] > 0 and rows[key]["sluice"] > 0
        assert rows[key]["ratio_sluice_over_kafka"] > 0
    for size in ("1MiB", f"{MOVE_MIB}MiB"):
        for key in ("s", "serving_s", "tool_s"):
            assert rows[f"g@{size}_{key}"]["status"] == "measured" and rows[f"g@{size}_{key}"]["sluice"] > 0
        assert rows[f"g@{size}_store_requests"]["status"] == "sluice only"
        assert rows[f"g@{size}_store_requests"]["sluice"] > 0 and rows[f"g@{size}_store_requests"]["kafka"] is None
    assert not [row for row in r["summary"] if row["status"] == "not yet"]

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "kept" in text and "also kept" in text and "old text" not in text
    assert text.index(f"| (g) partition move, {MOVE_MIB} MiB") < text.index("hand notes") \
        < text.index("## Later section")
    assert text.count("## Comparison with Apache Kafka (issue 5)") == 1
    assert text.index("## Comparison with Apache Kafka") < text.index("## Later section")
    assert "**smoke test**" in text and "sluice bench compare --quick" in text
    assert "| (b) produce acks=all at 50 MB/s: p99.9 latency" in text
    assert "(80% of the lower unthrottled max): p99 latency" in text
    assert "| (g) partition move, 1 MiB, RF=1, broker 1 to 2: time until moved" in text
    assert "not yet" not in text and "| n/a (no object store) |" in text and "**new owner**" in text
    assert "| (e) tail consume while producing at 20 MB/s: consumer throughput" in text
    assert f"| (f) catch-up read of {CATCHUP_MB} MB from offset 0, 1st read" in text
    assert "| (h) librdkafka producer at 10 MB/s: p99 ack latency" in text
    assert "tail consume latency | not yet" not in text and "catch-up read throughput | not yet" not in text
