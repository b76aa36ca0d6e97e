"""Ports for restartable test servers come from outside the ephemeral range."""
import socket

from bench.ports import _ephemeral_low, free_ports


def test_free_ports_are_distinct_bindable_and_never_ephemeral():
    ports = free_ports(20)
    assert len(set(ports)) == 20
    low = _ephemeral_low()
    if low - 20000 > 1000:          # the kernel's range leaves room below it (it does on Linux defaults)
        assert all(20000 <= p < low for p in ports)
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
