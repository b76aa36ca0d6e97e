"""The ``sluice`` command line: ``sluice serve``, ``sluice reassign``,
``sluice drain`` and ``sluice bench``.

``sluice reassign`` is a Kafka client (kafka-python's admin client:
AlterPartitionReassignments, ListPartitionReassignments, Metadata);
``sluice drain`` writes the bucket's metadata document directly, as a broker
would (docs/cluster.md section 9). Both import what they need when run.

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
    reassign = sub.add_parser(
        "reassign", help="move a partition to another broker and wait until it has moved; or list the moves",
        description="Move a partition (AlterPartitionReassignments), showing progress until the new "
                    "owner serves it; cancel a pending move; or list the moves in progress.")
    reassign.add_argument("--bootstrap-server", required=True, metavar="HOST:PORT")
    reassign.add_argument("--topic", metavar="TOPIC")
    reassign.add_argument("--partition", type=int, metavar="N")
    what = reassign.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", type=int, metavar="NODE", help="the node id the partition moves to")
    what.add_argument("--cancel", action="store_true", help="cancel the partition's pending move")
    what.add_argument("--list", action="store_true", help="list the moves in progress")
    reassign.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                          help="give up waiting for the move after this long (default 120)")
    reassign.set_defaults(func=reassign_command)
    drain = sub.add_parser(
        "drain", help="empty a broker: its partitions move to the others, then it shuts down",
        description="Add a broker to the cluster's draining list (docs/cluster.md section 9) and show "
                    "progress until it owns no partition; the broker then shuts down by itself.")
    drain.add_argument("--object-store", required=True, metavar="URL",
                       help="the brokers' --object-store (file:///abs/path or s3://bucket[/prefix])")
    drain.add_argument("--node-id", type=int, required=True, metavar="N")
    drain.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                       help="stop watching after this long (the drain goes on; default 300)")
    drain.add_argument("--cancel", action="store_true",
                       help="take the broker off the draining list (what it handed off stays moved)")
    drain.set_defaults(func=drain_command)
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
    # a signal, or this broker drained (`sluice drain`): it owns nothing any more
    waits = [loop.create_task(stop.wait()), loop.create_task(broker.cluster.drained.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()
    if not stop.is_set():
        log.info("drained: every partition was handed off to the other brokers")
    log.info("shutting down: answering in-flight requests, syncing the WAL, uploading what is left")
    if lag_watch is not None:
        lag_watch.cancel()
    await server.shutdown()
    log.info("stopped cleanly")
    return 0


# ----------------------------------------------------------------- sluice reassign
def reassign_command(args) -> int:
    """``sluice reassign``: start (or cancel) one move, then show its progress
    until the new owner leads the partition, bounded by ``--timeout``."""
    import time

    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    if not args.list and (args.topic is None or args.partition is None):
        print("sluice reassign: --to and --cancel need --topic and --partition", file=sys.stderr)
        return 2
    try:
        bound = int(min(args.timeout, 30) * 1000)          # connecting, and each request
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap_server, client_id="sluice-reassign",
                                 bootstrap_timeout_ms=bound, request_timeout_ms=bound)
    except KafkaError as exc:
        print(f"sluice reassign: cannot reach {args.bootstrap_server}: {exc}", file=sys.stderr)
        return 1
    try:
        if args.list:
            moves = admin.list_partition_reassignments()
            if not moves:
                print("No partition reassignments found.")
            for tp in sorted(moves, key=lambda tp: (tp.topic, tp.partition)):
                m = moves[tp]
                print(f"{tp.topic}-{tp.partition}: from node {_nodes(m['removing_replicas'])} "
                      f"to node {_nodes(m['adding_replicas'])} (replicas {_nodes(m['replicas'])})")
            return 0
        tp = TopicPartition(args.topic, args.partition)
        name = f"{tp.topic}-{tp.partition}"
        error = admin.alter_partition_reassignments({tp: None if args.cancel else [args.to]}).get(tp)
        if error is not None:
            code = _kafka_error_name(error)
            hint = _REASSIGN_HINTS.get(code, "")
            print(f"sluice reassign: {name}: {code}{': ' + hint if hint else ''}", file=sys.stderr)
            return 1
        if args.cancel:
            print(f"{name}: move cancelled; its owner keeps it")
            return 0
        deadline = time.monotonic() + args.timeout
        shown = None
        while True:                 # the move is pending until the old owner hands it off
            m = admin.list_partition_reassignments([tp]).get(tp)
            if m is None:
                break
            state = (tuple(m["removing_replicas"]), tuple(m["adding_replicas"]))
            if state != shown:
                print(f"{name}: moving from node {_nodes(m['removing_replicas'])} to node "
                      f"{_nodes(m['adding_replicas'])} ...", flush=True)
                shown = state
            if time.monotonic() > deadline:
                print(f"sluice reassign: {name}: still moving after {args.timeout:g} s; it goes on "
                      "(sluice reassign --list shows it)", file=sys.stderr)
                return 1
            time.sleep(0.5)
        while True:                 # every broker learns of the new owner within a heartbeat
            leader, epoch = _leader(admin, tp.topic, tp.partition)
            if leader == args.to:
                print(f"{name}: done: node {leader} leads it at leader epoch {epoch}")
                return 0
            if time.monotonic() > deadline:
                print(f"sluice reassign: {name}: no move pending, but the leader is node {leader}, not "
                      f"{args.to} (cancelled, or moved again?)", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KafkaError as exc:
        print(f"sluice reassign: {exc}", file=sys.stderr)
        return 1
    finally:
        admin.close()


_REASSIGN_HINTS = {
    "INVALID_REPLICA_ASSIGNMENT": "the node is not a live broker, or it is draining",
    "UNKNOWN_TOPIC_OR_PARTITION": "no such topic or partition",
    "NO_REASSIGNMENT_IN_PROGRESS": "no move of this partition is pending",
    "REQUEST_TIMED_OUT": "the brokers could not write the cluster metadata to the bucket; try again",
}


def _kafka_error_name(error) -> str:
    """Kafka's name of a kafka-python error class (whose own names differ at times)."""
    from .errors import ErrorCode
    try:
        return ErrorCode(error.errno).name
    except (AttributeError, ValueError):
        return getattr(error, "message", error.__name__)


def _nodes(ids) -> str:
    return ",".join(str(i) for i in ids)


def _leader(admin, topic: str, partition: int) -> tuple[int, int]:
    for t in admin.describe_topics([topic]):
        for p in t["partitions"]:
            if p["partition_index"] == partition:
                return p["leader_id"], p["leader_epoch"]
    return -1, -1


# ----------------------------------------------------------------- sluice drain
def drain_command(args) -> int:
    return asyncio.run(_drain(args))


async def _drain(args) -> int:
    """Add the node to the metadata document's ``draining`` list, then re-read
    the document (HEAD, + GET when it changed) every half second until the
    node owns no partition, topic or coordinator (docs/cluster.md section 9)."""
    import time

    from objectstore import NotFound, ObjectStoreError, open_object_store

    from .cluster.membership import BROKERS_PREFIX, registration_key
    from .cluster.metadata import ClusterImage, MetadataStore

    node = args.node_id
    try:
        store = open_object_store(args.object_store)
    except ValueError as exc:
        print(f"sluice drain: {exc}", file=sys.stderr)
        return 2
    try:
        metadata = MetadataStore(store)
        if not await metadata.refresh():
            print(f"sluice drain: no cluster metadata in {args.object_store}", file=sys.stderr)
            return 1

        def draining(on: bool):
            def change(image: ClusterImage) -> None:
                if on and node not in image.draining:
                    image.draining.append(node)
                elif not on and node in image.draining:
                    image.draining.remove(node)
            return change
        if args.cancel:
            await metadata.update(draining(False))
            print(f"node {node}: no longer draining")
            return 0
        try:
            await store.head(registration_key(node))
        except NotFound:
            print(f"sluice drain: node {node} is not registered in this cluster (not running?)", file=sys.stderr)
            return 1
        others = [i.key for i in await store.list_info(BROKERS_PREFIX) if i.key != registration_key(node)]
        if not others:
            print(f"sluice drain: node {node} is the only broker: nobody can take its partitions",
                  file=sys.stderr)
            return 1
        await metadata.update(draining(True))
        print(f"node {node}: draining: its partitions move to the other brokers", flush=True)
        deadline = time.monotonic() + args.timeout
        shown = None
        while True:
            owned = _owned_by(metadata.image, node)
            if owned != shown:
                print(f"node {node}: owns {owned[0]} partitions and {owned[1]} group coordinator partitions",
                      flush=True)
                shown = owned
            if owned == (0, 0):
                print(f"node {node}: drained; it shuts down by itself")
                return 0
            if time.monotonic() > deadline:
                print(f"sluice drain: node {node} still owns partitions after {args.timeout:g} s; the drain "
                      "goes on (run again to watch, or --cancel)", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)
            await metadata.refresh()
    except ObjectStoreError as exc:
        print(f"sluice drain: the object store failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()


def _owned_by(image, node: int) -> tuple[int, int]:
    """(topic partitions, coordinator partitions) ``node`` owns in ``image``."""
    topics = sum(1 for t in image.topics.values() for o in t.owners if o == node)
    offsets = image.offsets
    return topics, (sum(1 for o in offsets.owners if o == node) if offsets is not None else 0)


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
