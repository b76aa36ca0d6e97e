"""`sluice bench failover` and `sluice bench produce --wal` run end to end on a MinIO they
start themselves (short settings: they check the harness, not figures; no timing thresholds,
the machine may be busy with other work)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.minio
@pytest.mark.timeout(240)
def test_bench_failover_smoke(tmp_path):
    out, png = tmp_path / "failover.json", tmp_path / "failover.png"
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "bench", "failover", "--rounds", "1", "--partitions", "3", "--rate", "1",
         "--session-timeout-ms", "3000", "--heartbeat-ms", "500", "--steady-seconds", "1",
         "--data-dir", str(tmp_path), "--json", str(out), "--plot", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "| detection: kill to the controller's takeover decision |" in proc.stdout
    assert "round 1/1: killed node" in proc.stderr       # progress
    r = json.loads(out.read_text())
    assert r["bench"] == "failover" and "wal.type=s3" in r["config"]["broker_overrides"]
    (rd,) = r["rounds"]
    assert rd["complete"] and rd["partitions"] and rd["victim"] not in (None, rd["controller_before"])
    sp = rd["split"]
    assert sp["detection_source"].startswith("controller log") and 0 < sp["detection_s"] <= sp["bucket_seen_s"] + 0.1
    assert sp["fenced_by"] != rd["victim"] and sp["fence_s"] > 0
    for p in sp["partitions"]:
        assert p["new_owner"] not in (None, rd["victim"]) and p["batches_replayed"] >= 0
        assert 0 <= p["replay_s"] and p["taken_over_s"] <= p["first_ack_s"] and p["taken_over_s"] <= p["first_fetch_s"]
    integ = r["integrity"]
    assert integ["caught_up"] and integ["acked"] > 0 and integ["received"] >= integ["acked"]
    assert integ["offset_gaps"] == integ["seq_dups"] == 0 and not integ["delivery_errors"]
    assert r["summary"]["rows"][0]["median_s"] == sp["detection_s"]
    assert png.stat().st_size > 10_000
    assert not list(tmp_path.glob("sluice-bench-failover-*"))     # the run's dir, removed at the end


@pytest.mark.minio
@pytest.mark.timeout(240)
def test_bench_produce_wal_smoke(tmp_path):
    out, png = tmp_path / "wal.json", tmp_path / "wal.png"
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "bench", "produce", "--wal", "file,s3:5", "--wal-loads", "2",
         "--duration", "3", "--partitions", "2", "--quiet", "--data-dir", str(tmp_path),
         "--json", str(out), "--plot", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "| load | WAL | MB/s (median) |" in proc.stdout
    r = json.loads(out.read_text())
    assert r["bench"] == "produce-wal" and r["config"]["variants"] == ["file", "s3:5"]
    runs = {x["variant"]: x for x in r["runs"]}
    for name, x in runs.items():
        assert x["mb_per_s"] > 0 and x["unacked"] == 0 and x["broker_exit_code"] == 0
        assert x["costs"]["wal_commits"] > 0 and x["costs"]["bytes_in"] > 0
    assert runs["s3:5"]["costs"]["wal_puts_per_gb"] > 0 and runs["file"]["costs"]["wal_puts_per_gb"] is None
    assert runs["s3:5"]["costs"]["puts"] >= runs["s3:5"]["costs"]["wal_commits"]   # every commit a PUT
    assert [row["variant"] for row in r["summary"]] == ["file", "s3:5"]
    assert png.stat().st_size > 10_000
    assert not list(tmp_path.glob("sluice-bench-wal-*"))
