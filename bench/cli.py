"""``sluice bench KIND ...``: the benches' command line.

``sluice`` (broker/cli.py) hands everything after ``bench`` to ``main`` and
imports this package only then, so ``sluice serve`` never loads it.
"""
from __future__ import annotations

import argparse

from . import compare, failover, fsync, groups, latency, produce, produce_wal, share, storage


def build_parser(prog: str = "sluice bench") -> argparse.ArgumentParser:
    bench = argparse.ArgumentParser(prog=prog)
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])
    kinds = bench.add_subparsers(dest="bench")
    produce.add_parser(kinds)   # produce throughput and ack latency (librdkafka)
    fsync.add_parser(kinds)     # the disk's write + fdatasync latency
    groups.add_parser(kinds)    # group coordinator (issue 4)
    compare.add_parser(kinds)   # Sluice vs Apache Kafka (issue 5)
    storage.add_parser(kinds)   # object storage (issue 3)
    latency.add_parser(kinds)   # ack latency against rate, next to Apache Kafka (issue 2)
    failover.add_parser(kinds)  # kill -9 a broker with wal.type=s3: until its partitions serve again
    share.add_parser(kinds)     # share groups (KIP-932): records/s with 1, 3, 6 consumers on one partition
    return bench


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "wal", None) and args.func is produce.run_produce:
        return produce_wal.run(args)     # `produce --wal`: here, as produce_wal imports produce
    return args.func(args)
