"""Shared set-up, and the test tiers (markers in pyproject.toml).

tests/unit/ is the unit tier: pure logic, no manager, no compiled core, no
hugepages, no root.  Every other test is `system`: it runs the real manager
(hugepages, unless ONVM_HUGEPAGES=0 runs them all without, and the
built extension; the mgr fixture fails with the command
that fixes a missing prerequisite).  Tests that need more say so with
privileged, docker, browser, timing or slow, in their file (pytestmark) or
here by the fixtures they use."""
import os

import pytest

import onvm

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT_DIR = os.path.join(HERE, "unit") + os.sep
# tiers a fixture brings: a test that uses it needs what it needs
TIER_OF_FIXTURE = {"page": "browser", "lab": "browser", "client": "docker", "student": "privileged",
                   "users": "privileged"}


def pytest_collection_modifyitems(config, items):
    from onvm.common import memmode
    # With ONVM_HUGEPAGES=0, tests about hugepages themselves (marker
    # hugepages: their files, DPDK secondaries) have nothing to test.
    no_hugepages = memmode.from_env() is False
    skip = pytest.mark.skip(reason="ONVM_HUGEPAGES=0: this test is about hugepages")
    for item in items:
        if no_hugepages and "hugepages" in item.keywords:
            item.add_marker(skip)
        if str(item.fspath).startswith(UNIT_DIR):
            item.add_marker(pytest.mark.unit)
            continue
        item.add_marker(pytest.mark.system)       # notebooks and labs (nbval) too: they start managers
        if not str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.slow)
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in TIER_OF_FIXTURE:
                item.add_marker(getattr(pytest.mark, TIER_OF_FIXTURE[fixture]))


_hugepages = []     # the check's answer, asked once a session


def need_hugepages(mb=256):
    """Fail a system test (not the session: the unit tier runs anywhere)
    when the machine cannot start a manager."""
    from onvm.common import memmode
    if memmode.from_env() is False:
        return       # every manager runs without hugepages (onvm/common/memmode.py)
    if not _hugepages:
        from onvm.common.runtime import hugepage_problem
        _hugepages.append(hugepage_problem(mb))
    if _hugepages[0]:
        pytest.fail("onvm system tests need hugepages: %s (or run scripts/setup.sh); the unit tier "
                    "(pytest tests/unit) needs none" % _hugepages[0], pytrace=False)


@pytest.fixture
def mgr():
    """A manager with two ring ports, stopped (with all its NFs) afterwards."""
    need_hugepages()
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
