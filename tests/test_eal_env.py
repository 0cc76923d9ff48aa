"""ONVM_BASE_VIRTADDR: where the manager's DPDK puts its memory (the
sanitized build needs it, see scripts/sanitize.sh)."""
import os

import pytest

import onvm
from conftest import udp


def test_manager_memory_at_a_chosen_address(monkeypatch):
    monkeypatch.setenv("ONVM_BASE_VIRTADDR", "0x200000000000")
    with onvm.Manager(name="base%d" % os.getpid()) as mgr:
        mgr.launch(onvm.native("forward"), service=1)   # an NF maps it at the same address
        mgr.set_default_chain([1, onvm.ToPort(1)])
        assert mgr.inject([udp(sport=i) for i in range(50)], port=0) == 50
        assert len(mgr.capture(port=1, count=50, timeout=10, raw=True)) == 50
        with open("/proc/%d/maps" % mgr.process.pid) as f:
            starts = [int(line.split("-")[0], 16) for line in f]
        assert any(0x200000000000 <= a < 0x300000000000 for a in starts)


def test_a_bad_base_address_is_named(monkeypatch):
    monkeypatch.setenv("ONVM_BASE_VIRTADDR", "zz")
    with pytest.raises(onvm.OnvmError, match="ONVM_BASE_VIRTADDR='zz' is not a hex address"):
        onvm.Manager(name="badbase%d" % os.getpid()).start()
