"""Prometheus metrics, one registry per broker (so tests can run several in-process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class BrokerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("sluice_requests_total", "Requests handled, by API and error",
                                ["api", "error"], registry=r)
        self.partition_errors = Counter("sluice_produce_partition_errors_total",
                                        "Produce partition errors by Kafka error code", ["error"], registry=r)
        self.bytes_in_total = Counter("sluice_bytes_in_total", "Record-batch bytes accepted by Produce", registry=r)
        self.bytes_out_total = Counter("sluice_bytes_out_total", "Record-batch bytes returned by Fetch", registry=r)
        self.fsync_seconds = Histogram("sluice_wal_fsync_seconds", "WAL group-commit fsync latency",
                                       buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5),
                                       registry=r)
        self.fsync_bytes = Counter("sluice_wal_fsync_bytes_total", "Bytes made durable by WAL fsyncs", registry=r)
        self.wal_bytes = Gauge("sluice_wal_size_bytes", "Bytes held in WAL segment files", registry=r)
        self.connections = Gauge("sluice_connections", "Open client connections", registry=r)
        self.loop_lag = Histogram("sluice_event_loop_lag_seconds",
                                  "How late a 100 ms event-loop timer fires: a stall shows here "
                                  "before it shows as produce latency",
                                  buckets=(.001, .002, .005, .01, .02, .05, .1, .25, 1),
                                  registry=r)

    def request(self, api: str, error: str = "NONE") -> None:
        self.requests.labels(api, error).inc()

    def produce_error(self, code) -> None:
        self.partition_errors.labels(getattr(code, "name", str(code))).inc()

    def bytes_in(self, n: int) -> None:
        self.bytes_in_total.inc(n)

    def bytes_out(self, n: int) -> None:
        self.bytes_out_total.inc(n)

    def observe_fsync(self, seconds: float, nbytes: int) -> None:
        self.fsync_seconds.observe(seconds)
        self.fsync_bytes.inc(nbytes)

    async def watch_event_loop(self, interval: float = 0.1) -> None:
        """Run forever: record how late each timer tick fires (event-loop stalls)."""
        import asyncio
        import time

        while True:
            start = time.perf_counter()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, time.perf_counter() - start - interval))

    def serve(self, host: str, port: int):
        """Start the /metrics HTTP endpoint in a daemon thread."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
