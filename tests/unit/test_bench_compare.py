"""bench/compare.py without brokers: the summary rows, table and plot of a result
with several (b) rates and the (g) partition move (Kafka only, as results before
Sluice's move, and both systems), an older one-rate result, the bracketing of a
partition move seen in Metadata, bucket and ListOffsets polls, and the object-store
counts of a move."""
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


def sluice_move(serving_s, tool_s, requests, old_owner=0.05, new_owner=0.04):
    return {"move_s": serving_s - 0.02, "serving_s": serving_s, "tool_s": tool_s, "records": 1024,
            "phases_s": {"request": 0.4, "old_owner": old_owner, "new_owner": new_owner},
            "manifest_before_move": {"bytes": 700, "segments": 2, "next_offset": 1024},
            "object_store": {"move": {"requests_total": requests, "get_kib": 4.0, "put_kib": 2.0,
                                      "beyond_idle_rate": {"requests_total": requests - 4.5}}}}


def test_partition_move_rows_for_both_systems(tmp_path):
    r = result()
    for rd in r["rounds"]:
        if rd["system"] == "sluice":
            rd["workloads"]["g"] = {"moves": {"1MiB": sluice_move(0.1, 0.9, 19), "2048MiB": sluice_move(0.2, 1.0, 21)}}
        else:
            for m in rd["workloads"]["g"]["moves"].values():
                m["serving_s"] = m["move_s"] + 0.01
    r["config"]["move_sluice_cluster"] = "3 `sluice serve` brokers on one MinIO bucket"
    r["summary"] = bc.summarize(r)
    rows = {row["key"]: row for row in r["summary"]}
    g = [row["key"] for row in r["summary"] if row["key"].startswith("g@1MiB")]
    assert g == ["g@1MiB_s", "g@1MiB_serving_s", "g@1MiB_tool_s", "g@1MiB_store_requests", "g@1MiB_store_get_kib",
                 "g@1MiB_store_put_kib"]
    assert rows["g@1MiB_serving_s"]["status"] == "measured" and rows["g@1MiB_serving_s"]["sluice"] == 0.1
    assert rows["g@2048MiB_tool_s"]["ratio_sluice_over_kafka"] == 0.0417
    assert rows["g@2048MiB_store_requests"]["status"] == "sluice only"
    assert rows["g@2048MiB_store_requests"]["sluice"] == 21 and rows["g@2048MiB_store_requests"]["kafka"] is None
    table = bc.markdown_table(r)
    assert ("| (g) partition move, 2,048 MiB, RF=1, broker 1 to 2: object-store requests, 3 brokers, --execute "
            "start to broker 2 serving (heartbeats included) (requests, lower is better) | n/a (no object store) "
            "| 21 | - | -; 21, 21 |") in table
    assert "not yet" not in table and "**old owner** 0.05 s" in table and "median 16.5" in table
    assert "700 bytes, 2 segments" in table
    bc.plot(r, str(tmp_path / "g.png"))


def test_sluice_move_timing_from_the_bucket_metadata_and_listoffsets():
    def b(seen, prev, owner, target):
        return {"seen_s": seen, "previous_last_seen_s": prev, "owner": owner, "epoch": 1, "target": target}

    def s(seen, prev, offset):
        return {"seen_s": seen, "previous_last_seen_s": prev, "offset": offset, "error": None}
    # target seen at 0.50 (last poll without: 0.48), flip at 0.56, Metadata at 0.58, serving at 0.62
    t = bc.sluice_move_timing([b(0.5, 0.48, 1, 2), b(0.56, 0.54, 2, -1)], [tr(0.58, 0.56, [2], [2], 2)],
                              [s(0.3, 0.28, None), s(0.62, 0.6, 1024)], 1, 2, 1024)
    assert t["move_s"] == 0.1 and t["serving_s"] == 0.14 and t["serving_s_lower_bound"] == 0.12
    assert t["phases_s"] == {"request": 0.5, "old_owner": 0.06, "new_owner": 0.06}
    assert t["events_s"]["target_set"] == [0.48, 0.5] and t["events_s"]["target_serves"] == [0.6, 0.62]
    # target and flip within one bucket poll: the move began after the poll before the flip
    t = bc.sluice_move_timing([b(0.56, 0.52, 2, -1)], [tr(0.58, 0.56, [2], [2], 2)], [s(0.6, 0.58, 1024)],
                              1, 2, 1024)
    assert t["move_s"] == 0.06 and t["serving_s"] == 0.08
    assert t["phases_s"] == {"request": 0.52, "old_owner": 0.04, "new_owner": 0.04}
    # never served the end offset: no serving figure
    assert "serving_s" not in bc.sluice_move_timing([b(0.56, 0.52, 2, -1)], [], [s(0.6, 0.58, 10)], 1, 2, 1024)


def test_store_window_sums_brokers_and_subtracts_the_idle_rate():
    before = {1: {"requests.get": 10, "requests.put": 5, "get_bytes": 1000, "put_bytes": 500},
              2: {"requests.head": 3, "get_bytes": 0}}
    idle_after = {1: {"requests.get": 14, "requests.put": 7, "get_bytes": 1400, "put_bytes": 700},
                  2: {"requests.head": 5, "get_bytes": 0}}
    idle = bc.store_window(before, idle_after, 4.0)
    assert idle["requests_total"] == 8 and idle["requests"] == {"get": 4, "head": 2, "put": 2}
    after = {1: {"requests.get": 20, "requests.put": 9, "requests.put_error": 1, "get_bytes": 5496,
                 "put_bytes": 2748},
             2: {"requests.head": 6, "get_bytes": 0}}
    move = bc.store_window(idle_after, after, 2.0, idle)
    assert move["requests"] == {"get": 6, "head": 1, "put": 2, "put_error": 1} and move["requests_total"] == 10
    assert move["get_kib"] == 4.0 and move["by_node"]["1"] == {"requests": 9, "get_bytes": 4096, "put_bytes": 2048}
    assert move["beyond_idle_rate"] == {"requests_total": 6.0, "get_bytes": 3896.0, "put_bytes": 1948.0}
    counters = bc._store_counters({("sluice_objectstore_requests_total", (("op", "get"), ("outcome", "ok"))): 3.0,
                                   ("sluice_objectstore_bytes_total", (("direction", "put"),)): 10.0,
                                   ("sluice_wal_size_bytes", ()): 0.0})
    assert counters == {"requests.get": 3.0, "put_bytes": 10.0}
