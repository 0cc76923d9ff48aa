"""Port specifications as users write them: parse_port and tap_place."""
import os

import pytest

from onvm.common import limits
from onvm.common.ports import check_netns_name, parse_port, tap_place, veth_host_name


def test_ring_null_and_pci():
    assert parse_port("ring") == (limits.ONVM_PORT_RING, "")
    assert parse_port("null") == (limits.ONVM_PORT_NULL, "")
    assert parse_port("null:size=64") == (limits.ONVM_PORT_NULL, "size=64")
    assert parse_port("pci:0000:00:04.0") == (limits.ONVM_PORT_PCI, "0000:00:04.0")


def test_pcap_paths_are_absolute(tmp_path):
    src = tmp_path / "in.pcap"
    src.write_bytes(b"")
    kind, args = parse_port("pcap:rx=%s,tx=%s" % (src, tmp_path / "out.pcap"))
    assert kind == limits.ONVM_PORT_PCAP
    assert args == "rx_pcap=%s,tx_pcap=%s" % (src, tmp_path / "out.pcap")
    assert parse_port("pcap:tx=out.pcap")[1] == "tx_pcap=%s" % os.path.abspath("out.pcap")


def test_a_tap_in_this_namespace():
    assert parse_port("tap:onvm0") == (limits.ONVM_PORT_TAP, "iface=onvm0")
    assert tap_place("tap:onvm0") == ("onvm0", None, None)


@pytest.mark.parametrize("spec, words", [
    (None, "port spec must be a string"),
    (0, "port spec must be a string"),
    ("eth", "unknown port kind 'eth' in 'eth'"),
    ("ring:x", "a ring port takes no arguments"),
    ("pcap:", "a pcap port needs rx=FILE and/or tx=FILE"),
    ("pcap:rx=", "pcap port arguments are rx=FILE and tx=FILE"),
    ("pcap:in=a.pcap", "pcap port arguments are rx=FILE and tx=FILE"),
    ("pcap:rx=/nonexistent/onvm-unit.pcap", "pcap port: no such file /nonexistent/onvm-unit.pcap"),
    ("pci:eth0", "pci port needs a full PCI address"),
    ("pci:00:04.0", "pci port needs a full PCI address"),
    ("pci:0000:00:04.8", "pci port needs a full PCI address"),
    ("tap:", "tap port needs an interface name of 1..15"),
    ("tap:" + "x" * 16, "tap port needs an interface name of 1..15"),
    ("tap:a b", "tap port needs an interface name"),
    ("tap:onvm0=10.0.0.1/24", "an address needs a namespace"),
    ("tap:onvm0@bad name", "a network namespace name is 1..32"),
    ("tap:onvm0@onvm-unit-no-such-ns", "no network namespace 'onvm-unit-no-such-ns'"),
    ("veth:", "veth port needs an interface name of 1..15"),
    ("veth:" + "x" * 16 + "@ns", "veth port needs an interface name of 1..15"),
    ("veth:v0", "veth port 'veth:v0' needs a namespace"),
    ("veth:v0=10.0.0.1/24", "an address needs a namespace, veth:v0@NS=10.0.0.1/24"),
    ("veth:v0@bad name", "a network namespace name is 1..32"),
    ("veth:v0@onvm-unit-no-such-ns", "veth port 'veth:v0@onvm-unit-no-such-ns': no network namespace"),
])
def test_bad_specs_are_named(spec, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        parse_port(spec)


def test_a_veth_host_end_is_named_after_its_namespace_and_name():
    h = veth_host_name("lab1", "eth0")
    assert h == veth_host_name("lab1", "eth0") and len(h) <= 15 and h.startswith("onvm")
    assert len({h, veth_host_name("lab2", "eth0"), veth_host_name("lab1", "eth1")}) == 3


@pytest.mark.parametrize("name", ["a", "ns-1", "NS_2", "x" * 32])
def test_namespace_names(name):
    assert check_netns_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 33, "a/b", "a b", "..", None, 3])
def test_bad_namespace_names(name):
    with pytest.raises(ValueError, match="a network namespace name is 1..32"):
        check_netns_name(name)
