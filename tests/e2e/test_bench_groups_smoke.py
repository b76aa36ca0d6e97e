"""`sluice bench groups` runs end to end against a broker it starts itself.

Only that it completes and writes sane JSON: no timing thresholds (the
machine may be busy with other work).
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_groups_smoke(tmp_path):
    out = tmp_path / "groups.json"
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "bench", "groups", "--members", "3", "--rounds", "1",
         "--kinds", "raw,confluent,consumer", "--consumer-heartbeat-interval-ms", "500",
         "--commit-connections", "1", "--commit-depth", "4",
         "--commit-duration", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OffsetCommit/s" in proc.stdout
    r = json.loads(out.read_text())
    assert r["bench"] == "groups" and r["config"]["members"] == 3
    for kind in ("raw", "confluent", "consumer"):
        reb = r["rebalance"][kind]
        assert len(reb["rounds_ms"]) == 1 and reb["median_ms"] > 0
    oc = r["offset_commit"]
    assert oc["errors"] == 0 and oc["commits_ok"] > 0 and oc["commits_per_s"] > 0
    assert oc["per_connection"][0]["last_offset"] == oc["commits_ok"]
