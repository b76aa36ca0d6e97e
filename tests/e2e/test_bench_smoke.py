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
