"""onvm.Hop: every spelling of "where a packet goes next" parses to one
value, prints one canonical text, and is refused with one message."""
import pickle

import pytest

from onvm.common import limits
from onvm.common.hop import Hop, wire_chain
from onvm.common.packet import ToPort, ToService
from onvm.graph import Port


@pytest.mark.parametrize("spelling, hop", [
    (3, Hop.service(3)),
    ("3", Hop.service(3)),
    ("svc:3", Hop.service(3)),
    ("port:1", Hop.port(1)),
    ("port:0", Hop.port(0)),
    ("fw", Hop.node("fw")),
    ("ids-2", Hop.node("ids-2")),
    ("a.b_c", Hop.node("a.b_c")),
    (Port(1), Hop.port(1)),
    (ToPort(1), Hop.port(1)),
    (ToService(3), Hop.service(3)),
    (ToService("fw"), Hop.node("fw")),
    (Hop.port(7), Hop.port(7)),
])
def test_every_spelling_parses_to_one_hop(spelling, hop):
    assert Hop.parse(spelling) == hop


@pytest.mark.parametrize("hop, text", [
    (Hop.port(1), "port:1"), (Hop.service(255), "svc:255"), (Hop.node("fw"), "fw")])
def test_the_canonical_text_reads_back(hop, text):
    assert str(hop) == text
    assert Hop.parse(text) == hop
    assert eval(repr(hop), {"Hop": Hop}) == hop


@pytest.mark.parametrize("bad, words", [
    (True, "not a node name"),
    (None, "not a node name"),
    (1.0, "not a node name"),
    ([1], "not a node name"),
    ("", "not a node name"),
    ("a b", "not a node name"),
    ("x" * 32, "not a node name"),
    (0, "service ID must be an int in 1..255, got 0"),
    (256, "service ID must be an int in 1..255, got 256"),
    (-1, "service ID must be an int in 1..255, got -1"),
    ("svc:0", "service ID must be an int in 1..255, got 0"),
    ("svc:256", "service ID must be an int in 1..255"),
    ("port:32", "port must be an int in 0..31, got 32"),
    ("port:x", "port:N takes a number"),
    ("port:", "port:N takes a number"),
    ("svc:-1", "svc:N takes a number"),
    ("port:1:2", "port:N takes a number"),
    ("0", "service ID must be an int in 1..255, got 0"),
])
def test_bad_hops_are_refused_with_one_message(bad, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(".", r"\.")):
        Hop.parse(bad)


@pytest.mark.parametrize("make, bad, words", [
    (Hop.port, -1, "port must be an int in 0..31"),
    (Hop.port, limits.ONVM_MAX_PORTS, "port must be an int in 0..31"),
    (Hop.port, True, "port must be an int"),
    (Hop.port, "1", "port must be an int"),
    (Hop.service, 0, "service ID must be"),
    (Hop.service, False, "service ID must be"),
    (Hop.node, "123", "not digits alone"),
    (Hop.node, "a:b", "a node name is 1..31"),
    (Hop.node, 5, "a node name is 1..31"),
])
def test_the_constructors_validate(make, bad, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        make(bad)


def test_hops_are_immutable_hashable_and_picklable():
    h = Hop.port(2)
    with pytest.raises(AttributeError):
        h.dest = 3
    assert len({Hop.port(2), Hop.port(2), Hop.service(2), Hop.node("fw"), Hop.node("fw")}) == 3
    assert Hop.port(2) != Hop.service(2) and Hop.port(2) != "port:2" and Hop.port(2) != 2
    for x in (Hop.port(2), Hop.service(9), Hop.node("fw")):
        assert pickle.loads(pickle.dumps(x)) == x


def test_wire_and_verdict_carry_the_action_codes():
    assert Hop.port(1).wire() == [limits.ONVM_TO_PORT, 1]
    assert Hop.service(3).wire() == [limits.ONVM_TO_SERVICE, 3]
    assert Hop.service(3).verdict() == (limits.ONVM_TO_SERVICE << 16) | 3
    assert Hop.port(31).verdict() == (limits.ONVM_TO_PORT << 16) | 31
    for h in (Hop.port(0), Hop.port(31), Hop.service(1), Hop.service(255)):
        assert Hop.from_wire(h.wire()) == h
        assert Hop.from_verdict(h.verdict()) == h
    assert Hop.node("fw").wire({"fw": 4}) == [limits.ONVM_TO_SERVICE, 4]


def test_the_verdict_is_the_one_the_nf_action_gives():
    assert ToPort(3).code == Hop.port(3).verdict()
    assert ToService(7).code == Hop.service(7).verdict()


@pytest.mark.parametrize("bad, words", [
    ([limits.ONVM_NEXT, 1], "action is ONVM_TO_SERVICE"),
    ([limits.ONVM_DROP, 0], "action is ONVM_TO_SERVICE"),
    ([limits.ONVM_TO_PORT, 40], "port must be an int in 0..31"),
    ([limits.ONVM_TO_SERVICE, 0], "service ID must be"),
    ([3], r"\[action, dest\]"),
    ("3,1", r"\[action, dest\]"),
    ([3, "1"], r"\[action, dest\]"),
    ([True, 1], r"\[action, dest\]"),
])
def test_from_wire_refuses_what_no_table_holds(bad, words):
    with pytest.raises(ValueError, match=words):
        Hop.from_wire(bad)


@pytest.mark.parametrize("bad", [-1, 1 << 32, 1.5, (limits.ONVM_NEXT << 16) | 3])
def test_from_verdict_refuses_non_hops(bad):
    with pytest.raises(ValueError):
        Hop.from_verdict(bad)


def test_a_node_resolves_through_the_deployed_names_only():
    assert Hop.node("fw").resolve({"fw": 9}) == Hop.service(9)
    assert Hop.port(1).resolve({}) == Hop.port(1)
    with pytest.raises(ValueError, match=r"unknown node 'ids' \(deployed nodes: fw\)"):
        Hop.node("ids").resolve({"fw": 9})
    with pytest.raises(ValueError, match=r"unknown node 'ids' \(deployed nodes: none\)"):
        Hop.node("ids").wire()


def test_check_port_against_a_managers_ports():
    assert Hop.port(1).check_port(2) == Hop.port(1)
    assert Hop.service(200).check_port(2) == Hop.service(200)
    with pytest.raises(ValueError, match=r"port 2 does not exist \(ports 0\.\.1\)"):
        Hop.port(2).check_port(2)


def test_graph_port_and_nf_actions_are_views_that_keep_their_identity():
    # a graph's Port equals only Ports (networkx must not merge it with an action)
    assert Port(1) == Port(1) and hash(Port(1)) == hash(Port(1)) == hash(("onvm.Port", 1))
    assert Port(1) != ToPort(1) and Port(1) != Hop.port(1)
    assert Port(1).hop == ToPort(1).hop == Hop.port(1)
    assert ToService(4).hop == Hop.service(4) and ToService("fw").hop == Hop.node("fw")
    assert ToService("fw") == ToService("fw") and ToService("fw") != ToService("ids")
    assert repr(Port(3)) == "Port(3)" and repr(ToPort(3)) == "ToPort(3)" and repr(ToService(3)) == "ToService(3)"


@pytest.mark.parametrize("make, bad, words", [
    (Port, 32, "port must be an int in 0..31, got 32"),
    (ToPort, -1, "port must be an int in 0..31, got -1"),
    (ToService, 256, "service ID must be an int in 1..255, got 256"),
    (ToService, "", "a node name is 1..31"),
    (ToService, "x" * 32, "a node name is 1..31"),
])
def test_the_views_refuse_as_the_hop_does(make, bad, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        make(bad)


def test_wire_chain_takes_any_mix_of_spellings():
    names = {"fw": 5}
    got = wire_chain([1, "svc:2", "fw", ToService(3), ToService("fw"), Port(1)], names, 2)
    S, P = limits.ONVM_TO_SERVICE, limits.ONVM_TO_PORT
    assert got == [[S, 1], [S, 2], [S, 5], [S, 3], [S, 5], [P, 1]]
    assert wire_chain("port:1", names, 2) == [[P, 1]]          # one hop is a chain of one
    assert wire_chain(ToPort(0), names, 2) == [[P, 0]]


def test_wire_chain_names_the_bad_entry():
    with pytest.raises(ValueError, match=r"chain entry 2: port 5 does not exist \(ports 0\.\.1\)"):
        wire_chain([1, 2, "port:5"], {}, 2)
    with pytest.raises(ValueError, match=r"chain entry 1: unknown node 'nope'"):
        wire_chain([1, "nope", "port:0"], {"fw": 3}, 2)
    with pytest.raises(ValueError, match=r"chain entry 0: 1\.5 is not a node name"):
        wire_chain([1.5], {}, 2)
    with pytest.raises(ValueError, match="a chain has at most %d entries" % limits.ONVM_MAX_CHAIN):
        wire_chain([1] * (limits.ONVM_MAX_CHAIN + 1), {}, 2)


def test_wire_chain_asks_for_names_only_when_a_node_needs_them():
    asked = []

    def names():
        asked.append(1)
        return {"fw": 3}
    wire_chain([1, "port:0"], names, 2)
    assert asked == []
    assert wire_chain(["fw", "port:0"], names, 2)[0] == [limits.ONVM_TO_SERVICE, 3]
    assert asked == [1]
