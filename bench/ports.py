"""Free loopback ports for servers that tests and benchmarks start, stop and restart.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the
same range every outgoing connection draws its local port from. Chosen that way
and then closed, it can be taken by a client's connection before the server
binds it, or while a killed server is down between restarts (CI saw a broker's
metrics port taken so). Ports below the ephemeral range are never handed to
outgoing connections, so one chosen there stays free until we bind it again.
"""
from __future__ import annotations

import random
import socket

_LOWEST = 20000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free on ``host``, below the ephemeral range when it leaves room
    (else whatever ``bind(0)`` gives). All are held bound while choosing, so none repeats."""
    high = _ephemeral_low()
    socks: list[socket.socket] = []
    try:
        tries = 0
        while len(socks) < n:
            s = socket.socket()
            socks.append(s)
            port = random.randrange(_LOWEST, high) if high - _LOWEST > 1000 and tries < 200 else 0
            tries += 1
            try:
                s.bind((host, port))
            except OSError:
                socks.pop().close()
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_port_run(n: int, host: str = "127.0.0.1", exclude: tuple[int, ...] = ()) -> int:
    """The first of ``n`` consecutive ports free on ``host`` (none in ``exclude``),
    below the ephemeral range (for launchers that number ports from a base, like
    deploy/cluster.sh). At most 200 tries."""
    high = _ephemeral_low()
    low = _LOWEST if high - _LOWEST > 1000 + n else 1024
    for _ in range(200):
        base = random.randrange(low, max(low + 1, high - n))
        if any(p in exclude for p in range(base, base + n)):
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind((host, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports on {host}")
