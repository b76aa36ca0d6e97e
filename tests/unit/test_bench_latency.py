"""bench.latency: medians per (rate, system) and the table, from runs shaped like _one_run's."""
from bench.latency import markdown_table, summarize


def _run(system, rate, rnd, p50, p99, p999, mb, within=None):
    r = {"system": system, "rate": rate, "round": rnd, "mb_per_s": mb,
         "latency_ms": {"p50": p50, "p99": p99, "p99_9": p999}}
    if within is not None:
        r["broker"] = {"produce_request_share_within_ms": {"5": within, "10": 99.0}}
    return r


def test_summary_takes_medians_per_rate_and_system_and_keeps_each_rounds_p99():
    runs = [_run("sluice", 10, 1, 4.0, 8.0, 12.0, 10.0, 97.5), _run("kafka", 10, 1, 3.0, 9.0, 15.0, 10.0),
            _run("kafka", 10, 2, 5.0, 30.0, 40.0, 9.8), _run("sluice", 10, 2, 6.0, 12.0, 20.0, 10.0, 95.0),
            _run("sluice", 75, 1, 8.0, 30.0, 50.0, 75.0, 80.0),
            {"system": "kafka", "rate": 75, "round": 1, "error": "the producer did not start"}]
    rows = summarize(runs, [10, 75], ["sluice", "kafka"])
    assert [(r["rate"], r["system"]) for r in rows] == [(10, "sluice"), (10, "kafka"), (75, "sluice")]
    s10, k10, s75 = rows
    assert (s10["p50_ms"], s10["p99_ms"], s10["p99_9_ms"], s10["mb_per_s"]) == (5.0, 10.0, 16.0, 10.0)
    assert s10["p99_per_round"] == [8.0, 12.0] and s10["broker_produce_within_5ms_pct"] == [97.5, 95.0]
    assert (k10["p99_ms"], k10["runs"], k10["broker_produce_within_5ms_pct"]) == (19.5, 2, None)
    assert s75["runs"] == 1    # the failed Kafka run has no row

    table = markdown_table({"summary": rows, "run_time_s": 300.0,
                            "config": {"rounds": 2, "seconds": 20.0, "linger_ms": 5.0, "record_size": 1024,
                                       "partitions": 6, "warmup_seconds": 15.0, "rates_mb_per_s": [10, 75]}})
    assert "| 10 | sluice | 10 | 5 | **10** | 16 | 8, 12 | 97.5, 95 |" in table
    assert "| 10 | kafka | 9.9 | 4 | **19.5** | 27.5 | 9, 30 | - |" in table
    assert "warmed by 15 s at 75 MB/s" in table
