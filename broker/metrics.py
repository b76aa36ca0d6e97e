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
        # Kafka's RequestMetrics TotalTimeMs: from the frame read to its response
        # written, so a client's latency splits into broker and everything else.
        self.request_seconds = Histogram("sluice_request_seconds",
                                         "Time from a request's frame read to its response written, by API",
                                         ["api"], registry=r,
                                         buckets=(.001, .002, .003, .005, .0075, .01, .015, .02, .03,
                                                  .05, .1, .25, .5, 1, 2.5, 5))
        self._request_seconds: dict[str, Histogram] = {}
        self.loop_lag = Histogram("sluice_event_loop_lag_seconds",
                                  "How late a 100 ms event-loop timer fires: a stall shows here "
                                  "before it shows as produce latency",
                                  buckets=(.001, .002, .005, .01, .02, .05, .1, .25, 1),
                                  registry=r)

        # Object storage: requests are the cloud bill, so count every one.
        self.store_requests = Counter("sluice_objectstore_requests_total",
                                      "Object-store requests by operation (put, get, get_range, "
                                      "head, list, delete) and outcome (ok, error)",
                                      ["op", "outcome"], registry=r)
        self.store_bytes = Counter("sluice_objectstore_bytes_total",
                                   "Bytes moved to (put) and from (get) the object store",
                                   ["direction"], registry=r)
        self.uploaded_bytes = Counter("sluice_upload_batch_bytes_total",
                                      "Record-batch bytes uploaded in data objects", registry=r)
        self.uploads = Counter("sluice_uploads_total", "Data objects uploaded", registry=r)
        self.upload_seconds = Histogram("sluice_upload_seconds",
                                        "One upload: data-object PUT plus manifest updates",
                                        buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                        registry=r)
        self.puts_per_gb = Gauge("sluice_objectstore_puts_per_gb_ingested",
                                 "PUT requests per GB of record batches accepted since start", registry=r)
        self.gets_per_gb = Gauge("sluice_objectstore_gets_per_gb_ingested",
                                 "GET requests per GB of record batches accepted since start", registry=r)
        self.merges = Counter("sluice_merges_total", "Runs of segments merged into one object",
                              registry=r)
        self.merged_bytes = Counter("sluice_merged_bytes_total",
                                    "Bytes written into merged objects", registry=r)
        self.merge_paced = Counter("sluice_merge_paced_seconds_total",
                                   "Time merge reads and writes waited for "
                                   "s3.merge.io.max.bytes.per.second "
                                   "(summed over concurrent reads)", registry=r)
        self.gc_deleted = Counter("sluice_gc_deleted_objects_total",
                                  "Data objects deleted by garbage collection", registry=r)
        self.avg_object_bytes = Gauge("sluice_segment_average_bytes",
                                      "Average manifest segment size over owned partitions", registry=r)
        # Read tiers: where Fetch found its batches.
        self.read_bytes = Counter("sluice_fetch_read_bytes_total",
                                  "Batch bytes read for Fetch by tier (tail_cache, wal, block_cache, "
                                  "object_store)", ["tier"], registry=r)
        self.cache_hit_ratio = Gauge("sluice_cache_hit_ratio", "Hit ratio by cache (tail, block)",
                                     ["cache"], registry=r)
        self.cache_bytes = Gauge("sluice_cache_size_bytes", "Bytes held by cache (tail, block)",
                                 ["cache"], registry=r)

        # Catch-up pacing (read_pacer): how long Fetch answers were held back, at what rate.
        self.remote_fetch_paced_seconds = Counter(
            "sluice_remote_fetch_paced_seconds_total",
            "Seconds Fetch responses holding object-store bytes were held back so produce "
            "latency stays near remote.fetch.produce.latency.target.ms", registry=r)
        self.remote_fetch_rate = Gauge(
            "sluice_remote_fetch_rate_bytes_per_second",
            "Current allowance for Fetch bytes from the object store (+Inf: not paced)", registry=r)

    def remote_fetch_paced(self, seconds: float, rate: float) -> None:
        if seconds > 0:
            self.remote_fetch_paced_seconds.inc(seconds)
        self.remote_fetch_rate.set(rate)

    def request(self, api: str, error: str = "NONE") -> None:
        self.requests.labels(api, error).inc()

    def request_time(self, api: str, seconds: float) -> None:
        child = self._request_seconds.get(api)
        if child is None:
            child = self._request_seconds[api] = self.request_seconds.labels(api)
        child.observe(seconds)

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

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Start the /metrics HTTP endpoint in a daemon thread; returns the bound address
        (port 0 asks for a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return host, server.server_port
