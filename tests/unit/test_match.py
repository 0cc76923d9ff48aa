"""flows.Match and a rule's request, checked on the client's side before
anything reaches a manager."""
import ipaddress

import pytest

from onvm.common import limits
from onvm.common import match as flows
from onvm.common.match import overlap
from onvm.common.packet import ToPort, ToService
from onvm.flows import Match, Rule, resolve_chain, rule_fields
from onvm.graph import Port

S, P = limits.ONVM_TO_SERVICE, limits.ONVM_TO_PORT


@pytest.mark.parametrize("v, want", [
    ("198.51.100.7", (int(ipaddress.IPv4Address("198.51.100.7")), 32)),
    ("198.51.100.0/24", (int(ipaddress.IPv4Address("198.51.100.0")), 24)),
    ("198.51.100.9/24", (int(ipaddress.IPv4Address("198.51.100.0")), 24)),     # host bits dropped
    ("0.0.0.0/0", (0, 0)),
    (ipaddress.IPv4Address("10.0.0.1"), (0x0a000001, 32)),
    (ipaddress.IPv4Network("10.0.0.0/8"), (0x0a000000, 8)),
])
def test_prefixes(v, want):
    assert flows._prefix(v, "src") == want


@pytest.mark.parametrize("v, words", [
    (167772161, "Match src: an IPv4 address or prefix as a string"),
    ("10.0.0.256", "Match src='10.0.0.256'"),
    ("10.0.0.0/33", "Match src='10.0.0.0/33'"),
    ("2001:db8::1", "Match src='2001:db8::1'"),
    (b"10.0.0.1", "as a string"),
])
def test_bad_prefixes(v, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.").replace("(", r"\(")):
        flows._prefix(v, "src")


@pytest.mark.parametrize("v, want", [(53, (53, 53)), ((1024, 65535), (1024, 65535)), ([0, 0], (0, 0)),
                                     (range(1000, 2000), (1000, 1999)), (range(7, 8), (7, 7))])
def test_port_ranges(v, want):
    assert flows._ports(v, "dport") == want


@pytest.mark.parametrize("v, words", [(65536, "a port is an int in 0..65535"), (-1, "a port is an int"),
                                      (True, "a port is an int"), ("53", "a port is an int"),
                                      ((2000, 1000), "a range runs low..high"),
                                      (range(0, 10, 2), "a range of ports with step 1"),
                                      (range(5, 5), "a range of ports with step 1"),
                                      ((1, 2, 3), "a port is an int")])
def test_bad_port_ranges(v, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        flows._ports(v, "dport")


@pytest.mark.parametrize("proto, want", [("udp", 17), ("TCP", 6), ("icmp", 1), ("sctp", 132), (47, 47), (0, 0)])
def test_protocols(proto, want):
    assert Match(proto=proto).proto == want


@pytest.mark.parametrize("kw, words", [
    ({"proto": "ospf"}, "Match proto='ospf': one of icmp, tcp, udp, sctp"),
    ({"proto": 256}, "a protocol number is 0..255"),
    ({"proto": True}, "a protocol number is 0..255"),
    ({"proto": "icmp", "dport": 53}, "proto icmp has no ports"),
    ({"proto": 47, "sport": 1}, "proto 47 has no ports"),
])
def test_bad_matches(kw, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        Match(**kw)


def test_exactness():
    assert Match("198.51.100.7", "203.0.113.5", "udp", 5353, 53).exact
    assert Match("198.51.100.7", "203.0.113.5", "icmp").exact
    assert not Match("198.51.100.7", "203.0.113.5", "udp", 5353).exact
    assert not Match("198.51.100.0/24", "203.0.113.5", "udp", 5353, 53).exact
    assert not Match("198.51.100.7", "203.0.113.5", "udp", (1, 2), 53).exact
    assert not Match().exact


def test_wire_round_trip_and_defaults():
    m = Match("198.51.100.0/24", proto="tcp", dport=(80, 81))
    w = m.wire()
    assert w["dst"] == [0, 0] and w["sport"] == [0, 65535] and w["proto"] == 6
    assert Match.from_wire(w) == m and hash(Match.from_wire(w)) == hash(m)
    assert Match().wire()["proto"] == -1 and Match.from_wire(Match().wire()) == Match()
    assert repr(m) == "Match(src='198.51.100.0/24', proto='tcp', dport=(80, 81))"


def _frame(proto=17, frag=0, vlan=False):
    ip = bytes([0x45, 0, 0, 28, 0, 0]) + frag.to_bytes(2, "big") + bytes([64, proto, 0, 0]) + \
        bytes([198, 51, 100, 7, 203, 0, 113, 5])
    l4 = (5353).to_bytes(2, "big") + (53).to_bytes(2, "big") + bytes(4)
    tag = b"\x81\x00\x00\x05" if vlan else b""
    return bytes(12) + tag + b"\x08\x00" + ip + l4


@pytest.mark.parametrize("vlan", [False, True])
def test_match_of_a_frame_is_its_5_tuple(vlan):
    m = Match.of(_frame(vlan=vlan))
    assert m == Match("198.51.100.7", "203.0.113.5", "udp", 5353, 53) and m.exact


def test_match_of_a_fragment_or_portless_protocol_has_no_ports():
    assert Match.of(_frame(frag=0x10)) == Match("198.51.100.7", "203.0.113.5", "udp")
    assert Match.of(_frame(proto=47)) == Match("198.51.100.7", "203.0.113.5", 47)


@pytest.mark.parametrize("raw", [b"", bytes(14), bytes(12) + b"\x86\xdd" + bytes(40), bytes(12) + b"\x08\x00" + bytes(10)])
def test_match_of_refuses_non_ipv4(raw):
    with pytest.raises(ValueError, match="not an IPv4 packet"):
        Match.of(raw)


@pytest.mark.parametrize("a, b, both", [
    (Match(), Match(proto="udp"), True),
    (Match(src="10.0.0.0/8"), Match(src="10.1.0.0/16"), True),
    (Match(src="10.0.0.0/8"), Match(src="11.0.0.0/8"), False),
    (Match(proto="udp"), Match(proto="tcp"), False),
    (Match(proto="udp", dport=(1, 10)), Match(proto="udp", dport=(10, 20)), True),
    (Match(proto="udp", dport=(1, 9)), Match(proto="udp", dport=(10, 20)), False),
])
def test_overlap(a, b, both):
    assert overlap(a.wire(), b.wire()) is both and overlap(b.wire(), a.wire()) is both


def test_a_rules_chain_takes_every_hop_spelling():
    names = {"fw": 4}
    assert resolve_chain(["fw", 2, "svc:3", ToService("fw"), Port(1)], names, 2) == \
        [[S, 4], [S, 2], [S, 3], [S, 4], [P, 1]]
    assert resolve_chain(ToPort(0), names, 2) == [[P, 0]]
    assert resolve_chain("port:1", names, 2) == [[P, 1]]


@pytest.mark.parametrize("chain, words", [
    (["fw"], r"a rule's chain ends at a port, e\.g\. \[\.\.\., onvm\.Port\(1\)\]; got \[svc:4\]"),
    ([], r"ends at a port.*got \[\]"),
    (["nope", Port(1)], r"chain entry 0: unknown node 'nope' \(deployed nodes: fw\)"),
    ([1, "port:2"], r"chain entry 1: port 2 does not exist \(ports 0\.\.1\)"),
    ([1.5, Port(1)], r"chain entry 0: 1\.5 is not a node name"),
    ([1] * limits.ONVM_MAX_CHAIN + [Port(1)], "a rule's chain has at most 16 entries"),
])
def test_bad_rule_chains(chain, words):
    with pytest.raises(ValueError, match=words):
        resolve_chain(chain, {"fw": 4}, 2)


def test_a_request_is_checked_whole():
    r = rule_fields(Match(proto="udp"), [Port(1)], {}, 2, priority=7, idle_timeout=1.5, hard_timeout=None)
    assert r == {"match": Match(proto="udp").wire(), "chain": [[P, 1]], "priority": 7,
                 "idle_timeout": 1500, "hard_timeout": 0}


@pytest.mark.parametrize("kw, words", [
    ({"match": "udp"}, "a rule needs an onvm.Match"),
    ({"priority": -1}, "priority is an int in 0..65534"),
    ({"priority": limits.ONVM_FLOW_MAX_PRIORITY + 1}, "priority is an int in 0..65534"),
    ({"priority": True}, "priority is an int"),
    ({"idle_timeout": -1}, "idle_timeout is seconds in 0..86400"),
    ({"hard_timeout": 86401}, "hard_timeout is seconds in 0..86400"),
    ({"idle_timeout": "5"}, "idle_timeout is seconds"),
])
def test_bad_requests(kw, words):
    args = dict(match=Match(), chain=[Port(1)], names={}, nb_ports=2)
    args.update(kw)
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        rule_fields(**args)


def test_a_listed_rule_shows_its_chain_as_hop_text():
    r = Rule({"id": 3, "match": Match(proto="udp").wire(), "chain": [[S, 4], [P, 1]], "priority": 0,
              "idle_timeout": 2500, "hard_timeout": 0})
    assert r.chain == ["svc:4", "port:1"] and r.idle_timeout == 2.5 and int(r) == 3
    assert "svc:4 port:1" in repr(r)
