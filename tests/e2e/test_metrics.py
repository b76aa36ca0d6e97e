"""--metrics serves Prometheus text that moves with real traffic."""
import socket
import time
import urllib.request

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_endpoint_counts_requests_bytes_and_fsyncs(broker_factory):
    b = broker_factory(extra_args=["--metrics", "127.0.0.1:0"])
    mport = b.metrics_port
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(2000):
        p.produce("metrics-topic", value=b"x" * 100, key=str(i).encode())
    assert p.flush(30) == 0
    m = _scrape(mport)
    produced = sum(v for (name, labels), v in m.items()
                   if name == "sluice_requests_total" and ("api", "Produce") in labels)
    assert produced >= 1
    # every answered request is timed, by API (Kafka's TotalTimeMs)
    assert m[("sluice_request_seconds_count", (("api", "Produce"),))] == produced
    assert m[("sluice_request_seconds_sum", (("api", "Produce"),))] > 0
    assert m[("sluice_request_seconds_count", (("api", "Metadata"),))] >= 1
    assert m[("sluice_bytes_in_total", ())] >= 2000 * 100
    assert m[("sluice_wal_fsync_seconds_count", ())] >= 1
    assert m[("sluice_wal_size_bytes", ())] >= 2000 * 100
    # the lag watcher observes once per 100 ms tick: the producer may finish before the first
    deadline = time.monotonic() + 10
    while m[("sluice_event_loop_lag_seconds_count", ())] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        m = _scrape(mport)
    assert m[("sluice_event_loop_lag_seconds_count", ())] >= 1
    errors = [labels for (name, labels), v in m.items()
              if name == "sluice_requests_total" and ("api", "Metadata") in labels]
    assert errors and all(dict(l)["error"] == "NONE" for l in errors)


def test_metrics_port_in_use_fails_start_cleanly(tmp_path):
    """A taken metrics port is an error message and exit code 1, not a traceback."""
    import subprocess
    import sys

    from conftest import ROOT

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "broker", "serve", "--listen", "127.0.0.1:0",
                               "--data-dir", str(tmp_path / "data"), "--metrics", f"127.0.0.1:{port}"],
                              cwd=ROOT, capture_output=True, timeout=60)
    assert proc.returncode == 1
    assert b"ready on" not in proc.stdout
    assert f"cannot serve metrics on 127.0.0.1:{port}".encode() in proc.stderr
    assert b"Traceback" not in proc.stderr
