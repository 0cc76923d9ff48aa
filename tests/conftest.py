"""Shared set-up: tests run the real manager, so they need hugepages and the
built extension; a missing prerequisite fails with the command that fixes it."""
import os

import pytest

import onvm
from onvm.common.runtime import hugepage_problem


def pytest_sessionstart(session):
    problem = hugepage_problem(256)
    if problem:
        raise pytest.UsageError("onvm tests need hugepages: %s (or run scripts/setup.sh)" % problem)


@pytest.fixture
def mgr():
    """A manager with two ring ports, stopped (with all its NFs) afterwards."""
    with onvm.Manager(name="t%d" % os.getpid()) as m:
        yield m


def udp(sport, dport=53, src="198.51.100.1", dst="203.0.113.9", payload=b"onvm-test-payload"):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) / \
        UDP(sport=sport, dport=dport) / payload


def wait_for(pred, timeout=5.0, step=0.01):
    """Poll pred() until true or timeout; returns its last value."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def marker(value):
    """A Python NF that writes value into each packet's last byte."""
    import onvm

    @onvm.nf
    def mark(pkt):
        pkt.data[-1] = value
        return onvm.NEXT
    return mark
