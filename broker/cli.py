"""The ``sluice`` command line: ``sluice serve`` and ``sluice bench``.

``sluice bench ...`` belongs to the ``bench`` package, which no broker module
imports: ``main`` loads ``bench.cli`` by name only for ``sluice bench``, and hands
it the arguments after ``bench`` (tests/unit/test_layout.py checks that nothing
under broker/ has an ``import bench``).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys

log = logging.getLogger("sluice")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description="Kafka-compatible broker on object storage")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a broker")
    serve.add_argument("--listen", type=_host_port, default=("127.0.0.1", 9092), metavar="HOST:PORT")
    serve.add_argument("--data-dir", required=True, metavar="DIR")
    serve.add_argument("--object-store", metavar="URL",
                       help="file:///abs/path (default DIR/objects) or s3://bucket[/prefix]")
    serve.add_argument("--config", metavar="FILE", help="Kafka-style properties file")
    serve.add_argument("--node-id", type=int, metavar="N",
                       help="Kafka's node.id, unique per cluster (brokers on one object store form a cluster)")
    serve.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    serve.add_argument("--metrics", type=_host_port, metavar="HOST:PORT",
                       help="serve Prometheus metrics over HTTP")
    serve.add_argument("--log-level", default=os.environ.get("SLUICE_LOG_LEVEL", "INFO"))
    # Listed for `sluice --help`; `main` hands `sluice bench ...` to the bench package.
    sub.add_parser("bench", help="benchmarks (sluice bench --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        import importlib
        return importlib.import_module("bench.cli").main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        return asyncio.run(serve(args))
    return args.func(args)


async def serve(args) -> int:
    from .broker import Broker
    from .config import BrokerConfig
    from .network.server import KafkaServer

    file_text = open(args.config).read() if args.config else None
    try:
        node = [f"node.id={args.node_id}"] if args.node_id is not None else []
        config = BrokerConfig.load(file_text=file_text, overrides=node + args.override)
    except ValueError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    data_dir = os.path.abspath(args.data_dir)
    object_store = args.object_store or f"file://{os.path.join(data_dir, 'objects')}"
    host, port = args.listen
    adv_host, adv_port = _advertised(config["advertised.listeners"], host, port)
    broker = Broker(config, data_dir, object_store=object_store, advertised_host=adv_host,
                    advertised_port=adv_port)
    metrics_at = None
    if args.metrics:
        # Bound before anything else starts, so a taken port fails fast and cleanly.
        # Port 0 picks a free one; the line below tells whoever started us which.
        try:
            metrics_at = broker.metrics.serve(*args.metrics)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d: %s", *args.metrics, exc)
            await broker.replicas.store.close()
            return 1
        print(f"metrics on {metrics_at[0]}:{metrics_at[1]}", flush=True)
    server = KafkaServer(broker)
    try:
        bound_host, bound_port = await server.bind(host, port)
        if adv_port == 0:
            broker.advertise_port(bound_port)   # registered in the cluster by start()
        await broker.cluster.notifier.listen(bound_host, bound_port)   # metadata notices (udp, same port)
        await broker.start()
    except Exception as exc:
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        await broker.replicas.store.close()
        return 1
    await server.serve()
    lag_watch = None
    if metrics_at is not None:
        lag_watch = asyncio.get_running_loop().create_task(broker.metrics.watch_event_loop())
    effective = " ".join(f"{k}={v}" for k, v in sorted(config.values.items()))
    log.info("starting node %s: data-dir=%s object-store=%s advertised=%s:%d %s", broker.node_id,
             data_dir, object_store, broker.advertised_host, broker.advertised_port, effective)
    # What start-up built (modules, schemas, the replayed indexes) lives as long
    # as the process: keep it out of every later collection, so a full (gen2)
    # collection walks only what requests allocate (one took ~30 ms otherwise).
    gc.collect()
    gc.freeze()
    print(f"ready on {bound_host}:{bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: answering in-flight requests, syncing the WAL, uploading what is left")
    if lag_watch is not None:
        lag_watch.cancel()
    await server.shutdown()
    log.info("stopped cleanly")
    return 0


def _advertised(listeners: str, host: str, port: int) -> tuple[str, int]:
    """First advertised listener (``PLAINTEXT://host:port``), else the listen address."""
    if listeners:
        first = listeners.split(",")[0]
        first = first.split("://", 1)[-1]
        h, p = _host_port(first)
        return h, p
    if host in ("0.0.0.0", "::", ""):
        import socket
        host = socket.gethostname()
    return host, port


if __name__ == "__main__":
    sys.exit(main())
