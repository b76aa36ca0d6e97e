"""``sluice bench produce --brokers 1,2``'s summary, table and plot, without brokers."""
import json

from bench import produce


def run(n, rnd, mb, p99):
    return {"round": rnd, "brokers": n, "mb_per_s": mb, "latency_ms": {"p50": p99 / 4, "p99": p99},
            "broker_cpu_s_per_gb": 5.0 * n, "partitions_led": {str(i): 6 // n for i in range(1, n + 1)}}


def test_medians_and_ratio_to_the_first_count(tmp_path):
    runs = [run(1, 1, 100.0, 40.0), run(2, 1, 90.0, 20.0), run(1, 2, 110.0, 50.0), run(2, 2, 120.0, 30.0),
            run(1, 3, 120.0, 60.0), run(2, 3, 126.5, 10.0)]
    summary = produce.brokers_summary(runs, [1, 2])
    assert [(r["brokers"], r["runs"], r["mb_per_s"], r["ratio_to_first"]) for r in summary] == \
        [(1, 3, 110.0, 1.0), (2, 3, 120.0, 1.091)]
    assert summary[1]["mb_per_s_rounds"] == [90.0, 120.0, 126.5] and summary[1]["p99_ms"] == 20.0
    assert summary[1]["broker_cpu_s_per_gb"] == 10.0
    result = {"config": {"brokers": [1, 2], "rounds": 3, "producers": 1, "partitions": 6, "record_size": 1024,
                         "duration_s": 20.0, "warmup_s": 2.0, "rate_mb_per_s": None, "acks": "all",
                         "cluster": "one shared file:// object store"},
              "runs": runs, "summary": summary}
    table = produce.brokers_table(result)
    assert "| 2 | 120 | 1.09 | 90, 120, 126.5 | 5 / 20 | 10.0 |" in table
    assert "3 round(s); 1 librdkafka producer process(es), unthrottled, 6 partitions" in table
    png = tmp_path / "b.png"
    produce._plot_brokers(result, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(result)
