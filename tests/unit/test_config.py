"""ManagerConfig.validate: the one place a manager's parameters are checked
(the Python API, the daemon and `onvm mgr` alike), each limit one past its
edge refused with a message naming it; round trips through the daemon's
command line."""
import argparse

import pytest

from onvm.common import limits
from onvm.common.config import ManagerConfig


def test_the_defaults_are_valid_and_the_cores_limits():
    c = ManagerConfig().validate()
    assert c.ports == ("ring", "ring") and c.max_nfs == limits.ONVM_MAX_NFS


@pytest.mark.parametrize("kw", [
    {"ports": ["ring"] * limits.ONVM_MAX_PORTS}, {"ports": ["null"]}, {"rx_threads": limits.ONVM_MAX_THREADS},
    {"max_nfs": 1}, {"ring_mb": 1024}, {"ring_mb": 1}, {"flow_lookup": "naive"},
    {"nf_max_priority": limits.ONVM_FLOW_MAX_PRIORITY}, {"hugepage_mb": 64, "mbufs": 1023}, {"busy_poll": True},
    {"name": "a-b_c9"},
])
def test_edges_that_fit(kw):
    assert ManagerConfig(**kw).validate() is not None


@pytest.mark.parametrize("kw, words", [
    ({"ports": ["ring"] * (limits.ONVM_MAX_PORTS + 1)}, "a manager has 1..32 ports, got 33"),
    ({"ports": []}, "a manager has 1..32 ports, got 0"),
    ({"ports": "ring"}, "ports is a list of port specs"),
    ({"ports": ["ring", "eth"]}, "unknown port kind 'eth'"),
    ({"name": "a b"}, "manager name must be letters, digits, - or _"),
    ({"name": "x" * 33}, "manager name must be"),
    ({"hugepage_mb": 63}, "hugepage_mb must be an int of MB in 64..1048576"),
    ({"hugepage_mb": 64.0}, "hugepage_mb must be an int of MB"),
    ({"mbufs": 1022}, "mbufs must be an int in 1023..1048576"),
    ({"hugepage_mb": 64, "mbufs": 1 << 20}, "hugepage_mb=64 is too small for mbufs=1048576"),
    ({"busy_poll": 1}, "busy_poll is True or False"),
    ({"rx_threads": 0}, "rx_threads must be 1..3, got 0"),
    ({"tx_threads": limits.ONVM_MAX_THREADS + 1}, "tx_threads must be 1..3, got 4"),
    ({"rx_threads": True}, "rx_threads must be 1..3, got True"),
    ({"max_nfs": 0}, "max_nfs must be 1..128, got 0"),
    ({"max_nfs": limits.ONVM_MAX_NFS + 1}, "max_nfs must be 1..128, got 129"),
    ({"ring_mb": 3}, "ring_mb must be a power of two in 1..1024, got 3"),
    ({"ring_mb": 2048}, "ring_mb must be a power of two in 1..1024, got 2048"),
    ({"flow_lookup": "fast"}, "flow_lookup is \"cached\""),
    ({"nf_max_priority": -1}, "nf_max_priority must be an int in 0..65534, got -1"),
    ({"nf_max_priority": limits.ONVM_FLOW_MAX_PRIORITY + 1}, "nf_max_priority must be an int in 0..65534"),
])
def test_one_past_each_limit_is_named(kw, words):
    with pytest.raises(ValueError) as e:
        ManagerConfig(**kw).validate()
    assert words in str(e.value), str(e.value)


def test_the_daemons_command_line_reads_back():
    c = ManagerConfig(name="lab1", ports=("ring", "null"), hugepage_mb=128, mbufs=4095, busy_poll=True,
                      rx_threads=2, max_nfs=8, ring_mb=4, flow_lookup="naive", nf_max_priority=3)
    p = argparse.ArgumentParser()
    ManagerConfig.add_arguments(p)
    assert ManagerConfig.from_args(p.parse_args(c.to_argv())) == c
    assert ManagerConfig.from_args(p.parse_args([])) == ManagerConfig()
