"""``sluice bench``: load generators against a running or self-started broker."""
from __future__ import annotations


def add_bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])
