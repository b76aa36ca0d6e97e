"""bench/compare.py without brokers: the summary rows, table and plot of a result
with several (b) rates and the (g) partition move, an older one-rate result, and the
bracketing of a partition move seen in Metadata polls."""
import json

from bench import compare as bc


def perf(mb_per_s, p50, p99, p99_9, held=None):
    w = {"records": 1000, "records_per_s": mb_per_s * 1e6 / 1024, "mb_per_s": mb_per_s,
         "latency_ms": {"avg": p50, "max": p99_9 + 1, "p50": p50, "p95": p99, "p99": p99, "p99_9": p99_9}}
    if held is not None:
        w["held_rate"] = held
    return w


def move(move_s, tool_s):
    return {"move_s": move_s, "tool_s": tool_s, "records": 1024}


def result(rounds=2):
    runs = [{"key": "b@10", "mb_per_s": 10.0, "records": 48828, "basis": "fixed"},
            {"key": "b@36.4", "mb_per_s": 36.4, "records": 1, "basis": "fixed"},
            {"key": "b@80pct", "mb_per_s": 40.0, "records": 195312, "basis": "80% of ..."},
            {"key": "b@50", "mb_per_s": 50.0, "records": 244140, "basis": "fixed"}]
    rds = []
    for r in range(1, rounds + 1):
        for system in ("sluice", "kafka"):
            k = 2 if system == "sluice" else 1
            wl = {"a": perf(50, 300, 900, 1000),
                  "b@10": perf(10, 1 * k, 50 * k, 80 * k, True),
                  "b@36.4": perf(36.4, 2, 60, 90, True),
                  "b@80pct": perf(40, 5 * k, 100 * k, 150 * k, system == "kafka" or r == 1),
                  "b@50": perf(48, 500 * k, 900 * k, 1000 * k, False)}
            if system == "kafka":
                wl["g"] = {"moves": {"1MiB": move(1.2 + r / 10, 3.5), "2048MiB": move(20.0 + r, 24.0)}}
            rds.append({"round": r, "system": system, "rss_idle_mib": 40.0 * k, "workloads": wl})
    return {"config": {"rounds": rounds, "records": 1000, "durable_records": 500, "rate_runs": runs,
                       "rate_max_pct": 80.0, "move_mib": [1.0, 2048.0], "move_poll_interval_s": 0.05,
                       "move_cluster": "3 combined controller+broker KRaft nodes (-Xmx512m each)",
                       "workloads": ["a", "b", "g"]},
            "calibration": {"records": 1000, "pct": 80.0, "rate_mb_per_s": 40.0,
                            "sluice": {"mb_per_s": 52.0}, "kafka": {"mb_per_s": 50.0}},
            "versions": {"kafka": "4.4.0"}, "rounds": rds}


def test_rows_per_rate_and_partition_move(tmp_path):
    r = result()
    r["summary"] = bc.summarize(r)
    rows = {row["key"]: row for row in r["summary"]}
    # three rows per rate, in the config's order, after (a)
    b_keys = [k for k in rows if k.startswith("b@")]
    assert b_keys == [f"{b}_{p}_ms" for b in ("b@10", "b@36.4", "b@80pct", "b@50") for p in ("p50", "p99", "p99_9")]
    assert rows["b@10_p99_9_ms"]["kafka"] == 80 and rows["b@10_p99_9_ms"]["sluice"] == 160
    assert rows["b@10_p99_ms"]["ratio_sluice_over_kafka"] == 2.0
    assert rows["b@80pct_p50_ms"]["label"] == ("(b) produce acks=all at 40 MB/s (80% of the lower unthrottled "
                                               "max): p50 latency")
    assert rows["b@80pct_p50_ms"]["rate_not_held"] == {"kafka": [], "sluice": [2]}
    assert rows["b@50_p50_ms"]["rate_not_held"] == {"kafka": [1, 2], "sluice": [1, 2]}
    # (g): Kafka measured, Sluice not yet; no (c)/(e)/(f) rows since they did not run
    g = [row for row in r["summary"] if row["key"].startswith("g@")]
    assert [row["key"] for row in g] == ["g@1MiB_s", "g@1MiB_tool_s", "g@2048MiB_s", "g@2048MiB_tool_s"]
    assert rows["g@1MiB_s"]["kafka"] == 1.35 and rows["g@1MiB_s"]["kafka_rounds"] == [1.3, 1.4]
    assert rows["g@2048MiB_tool_s"]["kafka"] == 24.0
    assert all(row["status"] == "kafka only" and row["sluice"] is None and row["sluice_rounds"] == []
               and "no partition reassignment" in row["sluice_status"] for row in g)
    assert not any(k.startswith(("c_", "e_", "f_")) for k in rows)
    assert rows["d_rss_idle_mib"]["sluice"] == 80.0

    table = bc.markdown_table(r)
    assert "| (b) produce acks=all at 36.4 MB/s: p99.9 latency (ms, lower is better) | 90 | 90 | 1.00 |" in table
    assert ("| (g) partition move, 2,048 MiB, RF=1, broker 1 to 2: time until moved, seen in cluster metadata "
            "(polled every 0.05 s) (s, lower is better) | 21.5 | not yet (no partition reassignment) | - | 21, 22; - |"
            in table)
    assert "(b) 48,828 records at 10 MB/s" in table and "(c)" not in table.split("\n\n")[1]
    assert "80% of the lower of the two systems' unthrottled throughputs" in table
    assert "Sluice 52 MB/s, Kafka 50 MB/s" in table
    assert "Kafka at 50 MB/s in round(s) 1, 2" in table and "Sluice at 40 MB/s (80% of" in table
    assert "kafka-reassign-partitions" in table and "(e) " not in table and "(f) " not in table

    png = tmp_path / "p.png"
    bc.plot(r, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(r)   # the summary is JSON


def test_older_one_rate_result_reads_as_before(tmp_path):
    """A result written before (b) had several rates: one run under "b", rate_mb_per_s/rate_records."""
    r = result(rounds=1)
    c = r["config"]
    del c["rate_runs"], c["rate_max_pct"], c["move_mib"], r["calibration"]
    c.update({"rate_mb_per_s": 10.0, "rate_records": 195312, "workloads": ["a", "b"]})
    for rd in r["rounds"]:
        rd["workloads"] = {"a": rd["workloads"]["a"], "b": rd["workloads"]["b@10"]}
    r["summary"] = bc.summarize(r)
    rows = {row["key"]: row for row in r["summary"]}
    assert [k for k in rows if k.startswith("b")] == ["b_p50_ms", "b_p99_ms", "b_p99_9_ms"]
    assert rows["b_p99_ms"]["label"] == "(b) produce acks=all at 10 MB/s: p99 latency"
    assert rows["b_p99_ms"]["kafka"] == 50 and rows["b_p99_ms"]["sluice"] == 100
    table = bc.markdown_table(r)
    assert "(b) 195,312 records at 10 MB/s" in table and "(g)" not in table
    bc.plot(r, str(tmp_path / "old.png"))


def test_librdkafka_rows(tmp_path):
    """(h): the librdkafka driver's unthrottled throughput and its ack latency at a fixed rate."""
    r = result(rounds=1)
    r["config"].update({"workloads": ["h"], "librdkafka_rate_mb_per_s": 10.0})
    for rd in r["rounds"]:
        k = 2 if rd["system"] == "sluice" else 1
        rd["workloads"] = {"h": {"unthrottled": {"mb_per_s": 100.0 * k, "latency_ms": None},
                                 "paced": {"mb_per_s": 10.0, "target_mb_per_s": 10.0,
                                           "latency_ms": {"p50": 3.0 * k, "p99": 9.0 * k, "p99_9": 20.0 * k}}}}
    r["summary"] = bc.summarize(r)
    rows = {row["key"]: row for row in r["summary"]}
    assert [k for k in rows if k.startswith("h_")] == ["h_mb_per_s", "h_p50_ms", "h_p99_ms", "h_p99_9_ms"]
    assert rows["h_mb_per_s"]["ratio_sluice_over_kafka"] == 2.0 and rows["h_mb_per_s"]["higher_is_better"]
    assert rows["h_p99_ms"]["label"] == "(h) librdkafka producer at 10 MB/s: p99 ack latency"
    assert (rows["h_p99_ms"]["kafka"], rows["h_p99_ms"]["sluice"]) == (9.0, 18.0)
    assert not any(k.startswith(("a_", "b", "c_", "e_", "f_", "g@")) for k in rows)
    assert "(h) librdkafka producer" in bc.markdown_table(r)
    bc.plot(r, str(tmp_path / "h.png"))


def tr(seen, prev, replicas, isr, leader):
    return {"seen_s": seen, "previous_last_seen_s": prev, "replicas": replicas, "isr": isr, "leader": leader,
            "error": None}


def test_move_timing_brackets_the_move():
    # seen adding at 1.05 (last original poll 1.00), done at 2.30 (last in-progress poll 2.25)
    t = bc.ReplicaWatcher.move_timing([tr(1.05, 1.0, [2, 1], [1], 1), tr(2.3, 2.25, [2], [2], 2)], 2)
    assert t["move_s"] == 1.3 and t["move_s_lower_bound"] == 1.2
    assert t["started_seen_s"] == 1.05 and t["done_seen_s"] == 2.3
    # done within one poll: at most one poll interval, at least 0
    t = bc.ReplicaWatcher.move_timing([tr(1.05, 1.0, [2], [2], 2)], 2)
    assert t["move_s"] == 0.05 and t["move_s_lower_bound"] == 0.0
    # the last original poll came before --execute was started (t0): the move cannot start before t0
    t = bc.ReplicaWatcher.move_timing([tr(0.04, -0.01, [2], [2], 2)], 2)
    assert t["move_s"] == 0.04
    # never done (or only a leader change): no figure
    assert "move_s" not in bc.ReplicaWatcher.move_timing([tr(1.0, 0.9, [2, 1], [1, 2], 1)], 2)
    assert "move_s" not in bc.ReplicaWatcher.move_timing([], 2)


def test_a_tiny_ratio_keeps_its_significant_figures(tmp_path):
    """Sluice 5.5 ms against a busy machine's Kafka at 1456 ms is 0.00378, not 0
    (CI once failed on a ratio rounded to two decimals)."""
    r = result(rounds=1)
    for rd in r["rounds"]:
        rd["workloads"]["b@10"]["latency_ms"]["p50"] = 5.51 if rd["system"] == "sluice" else 1456.34
    r["summary"] = bc.summarize(r)
    row = next(row for row in r["summary"] if row["key"] == "b@10_p50_ms")
    assert row["ratio_sluice_over_kafka"] == 0.00378
    line = next(l for l in bc.markdown_table(r).splitlines() if "at 10 MB/s: p50" in l)
    assert "| 0.0038 |" in line
