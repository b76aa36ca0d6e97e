"""`sluice bench share` runs end to end against a broker it starts itself,
with Kafka's ShareConsumerPerformance. Only that it completes, every consumer
count reads every record, and the JSON is sane: no timing thresholds."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_share_smoke(tmp_path, kafka_tools):
    out = tmp_path / "share.json"
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "bench", "share", "--records", "3000", "--consumers", "1,2",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env=kafka_tools.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["bench"] == "share" and [run["consumers"] for run in r["runs"]] == [1, 2]
    assert all(run["records"] == 3000 and run["records_per_s"] > 0 for run in r["runs"])
