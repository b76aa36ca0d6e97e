"""``sluice bench produce --wal file,shared,s3,s3:5``: variants, loads, PUTs per GB, medians, table, plot."""
import json

import pytest

from bench import produce_wal


def test_variants_and_loads():
    vs = produce_wal.parse_variants("file, shared,s3,s3:5", kafka=True)
    assert [(v["name"], v["wal_type"], v["interval_ms"]) for v in vs] == \
        [("file", "file", None), ("shared", "shared", None), ("s3", "s3", 0), ("s3:5", "s3", 5),
         ("kafka", None, None)]
    assert vs[0]["overrides"] == vs[1]["overrides"] == ["wal.type=file"]
    assert vs[3]["overrides"] == ["wal.type=s3", "wal.s3.interval.ms=5"]
    assert produce_wal.parse_variants("s3:0")[0]["name"] == "s3:0"
    for bad in ("file:5", "shared:5", "s4", "s3:x", "", "s3,s3"):
        with pytest.raises(ValueError):
            produce_wal.parse_variants(bad)
    assert produce_wal.parse_loads("max, 10,2.5") == [None, 10.0, 2.5]
    for bad in ("fast", "0", "", "-3"):
        with pytest.raises(ValueError):
            produce_wal.parse_loads(bad)
    assert [produce_wal.load_name(x) for x in (None, 10.0)] == ["unthrottled", "10 MB/s"]


def samples(commits, seconds, wal_bytes, bytes_in, puts, put_errors=0):
    return {("sluice_wal_fsync_seconds_count", ()): commits, ("sluice_wal_fsync_seconds_sum", ()): seconds,
            ("sluice_wal_fsync_bytes_total", ()): wal_bytes, ("sluice_bytes_in_total", ()): bytes_in,
            ("sluice_objectstore_requests_total", (("op", "put"), ("outcome", "ok"))): puts,
            ("sluice_objectstore_requests_total", (("op", "put"), ("outcome", "error"))): put_errors,
            ("sluice_objectstore_requests_total", (("op", "get"), ("outcome", "ok"))): 99.0}


def test_puts_per_gb_from_two_scrapes():
    before = produce_wal.broker_counters(samples(10, 0.05, 10 * 4096, 1e6, 12))
    after = produce_wal.broker_counters(samples(2010, 10.05, 10 * 4096 + 2000 * 262144, 5e8 + 1e6, 2112, 1))
    assert before["puts"] == 12 and after["puts"] == 2113
    s3 = produce_wal.wal_costs(before, after, "s3")
    assert (s3["bytes_in"], s3["wal_commits"], s3["puts"]) == (500_000_000, 2000, 2101)
    assert (s3["wal_commits_per_gb"], s3["wal_puts_per_gb"], s3["other_puts_per_gb"]) == (4000.0, 4000.0, 202.0)
    assert (s3["commit_mean_ms"], s3["commit_mean_kib"]) == (5.0, 256.0)
    f = produce_wal.wal_costs(before, after, "file")       # fdatasyncs, not PUTs
    assert (f["wal_commits_per_gb"], f["wal_puts_per_gb"], f["other_puts_per_gb"]) == (4000.0, None, 4202.0)
    idle = produce_wal.wal_costs(before, before, "s3")
    assert idle["wal_puts_per_gb"] is None and idle["commit_mean_ms"] is None


def run(variant, rnd, load, mb, p99, wal_puts=None, other=300.0):
    return {"variant": variant, "round": rnd, "load": load, "mb_per_s": mb, "latency_ms": {"p50": p99 / 5, "p99": p99},
            "costs": {"wal_commits_per_gb": wal_puts or 900.0, "wal_puts_per_gb": wal_puts,
                      "other_puts_per_gb": other, "commit_mean_ms": 3.0 if wal_puts else 0.5,
                      "commit_mean_kib": 64.0}}


def test_medians_table_and_plot(tmp_path):
    variants = produce_wal.parse_variants("file,s3", kafka=True)
    loads = [None, 10.0]
    runs = [run("file", 1, None, 120.0, 800.0), run("s3", 1, None, 40.0, 2500.0, 1000.0),
            run("file", 2, None, 130.0, 900.0), run("s3", 2, None, 50.0, 2000.0, 1200.0),
            run("file", 1, 10.0, 10.0, 12.0), run("s3", 1, 10.0, 10.0, 60.0, 30000.0),
            {"variant": "kafka", "round": 1, "load": None, "mb_per_s": 150.0, "latency_ms": {"p50": 90, "p99": 500}},
            {"variant": "kafka", "round": 1, "load": 10.0, "error": "the producer did not start"}]
    rows = produce_wal.summarize(runs, variants, loads)
    assert [(r["load"], r["variant"], r["runs"]) for r in rows] == \
        [(None, "file", 2), (None, "s3", 2), (None, "kafka", 1), (10.0, "file", 1), (10.0, "s3", 1),
         (10.0, "kafka", 0)]
    f, s3, k = rows[0], rows[1], rows[2]
    assert (f["mb_per_s"], f["p99_ms"], f["ratio_to_first"], f["wal_puts_per_gb"]) == (125.0, 850.0, 1.0, None)
    assert (s3["mb_per_s"], s3["mb_per_s_rounds"], s3["ratio_to_first"], s3["wal_puts_per_gb"]) == \
        (45.0, [40.0, 50.0], 0.36, 1100.0)
    assert (k["mb_per_s"], k["ratio_to_first"], k["wal_commits_per_gb"]) == (150.0, 1.2, None)
    assert rows[5]["mb_per_s"] is None and rows[5]["ratio_to_first"] is None
    result = {"config": {"variants": ["file", "s3", "kafka"], "loads_mb_per_s": ["max", 10.0], "rounds": 2,
                         "producers": 1, "linger_ms": 5.0, "record_size": 1024, "partitions": 6,
                         "duration_s": 20.0, "warmup_s": 2.0},
              "runs": runs, "summary": rows}
    table = produce_wal.markdown_table(result)
    assert "| load | WAL | MB/s (median) | per round | vs file |" in table
    assert "| unthrottled | s3 | **45** | 40, 50 | 0.36 | 450 / 2250 | 1,100 | 300 | 1,100 | 3, 64 |" in table
    assert "| unthrottled | file | **125** | 120, 130 | 1.00 | 170 / 850 | - | 300 | 900 | 0.5, 64 |" in table
    assert "| 10 MB/s | kafka | **-** |  | - | - / - | - | - | - | -, - |" in table
    assert "2 round(s), the variants alternating their order" in table
    png = tmp_path / "w.png"
    produce_wal.plot(result, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(result)


def test_the_produce_parser_takes_the_wal_options():
    from bench.cli import build_parser
    args = build_parser().parse_args(["produce", "--wal", "file,s3:5", "--wal-loads", "5", "--kafka", "--rounds", "3"])
    assert (args.wal, args.wal_loads, args.kafka, args.rounds) == ("file,s3:5", "5", True, 3)
    assert build_parser().parse_args(["produce"]).wal is None


def test_wal_mode_refuses_what_it_cannot_honour(capsys):
    from bench.cli import main
    for extra in (["--rate", "5"], ["--bootstrap", "127.0.0.1:1"], ["--brokers", "1,2"]):
        assert main(["produce", "--wal", "file,s3", *extra]) == 2
    assert main(["produce", "--wal", "zfs"]) == 2
    assert "not file, shared, s3 or s3:MS" in capsys.readouterr().err
