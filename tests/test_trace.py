"""Packet journeys: mgr.trace(pkt) lists each hop a real packet took through
real NFs: the port, each NF instance and its action, the exit or the drop."""
import networkx as nx
import pytest

import onvm
from conftest import udp
from onvm.graph import Port
from test_graphs import ping, pong  # NFs that steer to each other


def test_a_three_nf_path_lists_the_nfs_in_order_then_the_exit(mgr):
    for s in (1, 2, 3):
        mgr.launch(onvm.native("forward"), service=s, name="f%d" % s)
    mgr.set_default_chain([1, 2, 3, onvm.ToPort(1)])
    t = mgr.trace(udp(1234))
    assert [h.kind for h in t] == ["port", "nf", "nf", "nf", "exit"], t
    assert t[0].port == 0 and t.exit_port == 1 and t.dropped is None
    assert [h.service for h in t if h.kind == "nf"] == [1, 2, 3]
    assert [h.node for h in t if h.kind == "nf"] == ["f1", "f2", "f3"]
    assert all(h.action == "next" for h in t if h.kind == "nf")
    times = [h.t_ns for h in t]
    assert times[0] == 0 and times == sorted(times)
    text, page = repr(t), t._repr_html_()
    assert "left by port 1" in text and "f2" in text and "<table>" in page and "f3" in page
    # The traced packet really left, like any other.
    assert len(mgr.capture(port=1, count=1, timeout=2)) == 1


def test_a_dropping_nf_ends_the_trace_with_that_nf_and_why(mgr):
    mgr.launch(onvm.native("forward"), service=1, name="fw")
    mgr.launch(onvm.native("drop"), service=2, name="wall")
    mgr.set_default_chain([1, 2, onvm.ToPort(1)])
    t = mgr.trace(bytes(udp(7)))
    assert [h.kind for h in t] == ["port", "nf", "nf", "drop"], t
    assert t[2].action == "drop" and t.exit_port is None
    assert (t.dropped.node, t.dropped.service, t.dropped.reason) == ("wall", 2, "NF returned DROP")
    assert "dropped at wall" in repr(t)
    # No NF for a service: dropped where the packet was routed from.
    mgr.set_default_chain([1, 9, onvm.ToPort(1)])
    t = mgr.trace(udp(7))
    assert (t.dropped.node, t.dropped.reason) == ("fw", "no NF for service")


def test_replicas_show_the_instance_that_served_the_flow(mgr):
    nfs = mgr.launch(onvm.native("forward"), service=4, replicas=3, name="pool")
    mgr.set_default_chain([4, onvm.ToPort(1)])
    slots = {n.instance for n in nfs}
    seen = set()
    for sport in range(40):
        t = mgr.trace(udp(1000 + sport))
        assert t.exit_port == 1
        (node, inst), = t.nfs()
        seen.add(inst)
        # the same flow keeps its instance
        assert mgr.trace(udp(1000 + sport)).nfs() == [(node, inst)]
    assert len(seen) >= 2 and seen <= slots, "40 flows over 3 replicas: %s of %s" % (seen, slots)


def test_a_steering_loop_ends_at_the_hop_limit(mgr):
    g = nx.DiGraph()
    g.add_edge(Port(0), "ping")
    g.add_node("ping", nf=ping)
    g.add_node("pong", nf=pong)
    g.add_edge("ping", Port(1))
    g.add_edge("ping", "pong", steer=True)
    g.add_edge("pong", "ping", steer=True)
    mgr.deploy(g)
    t = mgr.trace(udp(5))
    nf_hops = [h for h in t if h.kind == "nf"]
    assert len(nf_hops) == 33, t          # 32 hand-ons allowed, the 33rd is refused
    assert [h.node for h in nf_hops[:4]] == ["ping", "pong", "ping", "pong"]
    assert nf_hops[0].action.startswith("to_service") and "(pong)" in nf_hops[0].action
    assert t.dropped.reason == "hop limit" and t.dropped.node == nf_hops[-1].node


def test_a_steer_without_an_edge_is_named(mgr):
    @onvm.nf
    def to_port0(pkt):
        return onvm.ToPort(0)
    g = nx.DiGraph()
    g.add_node("bad", nf=to_port0)
    g.add_edge(Port(0), "bad")
    g.add_edge("bad", Port(1))
    mgr.deploy(g)
    t = mgr.trace(udp(5))
    assert t[1].action == "to_port 0" and t.dropped.reason == "steer not allowed" and t.dropped.node == "bad"


def test_bad_input_is_refused_and_changes_nothing(mgr):
    mgr.launch(onvm.native("forward"), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    for bad in (None, 42, [udp(1), udp(2)], "not a packet"):
        with pytest.raises(ValueError, match="one packet"):
            mgr.trace(bad)
    with pytest.raises(ValueError, match="port 7 does not exist"):
        mgr.trace(udp(1), port=7)
    with pytest.raises(ValueError, match="14..2048 bytes"):
        mgr.trace(b"short")
    assert mgr.stats()["ports"][0]["rx"] == 0
    # Untraced traffic records nothing: the next trace holds its packet only.
    mgr.inject([udp(i) for i in range(100)], port=0)
    assert len(mgr.capture(port=1, count=100, timeout=5)) == 100
    t = mgr.trace(udp(1))
    assert [h.kind for h in t] == ["port", "nf", "exit"]


def test_capture_after_a_graph_node_by_name_or_service_id(mgr):
    """capture(after=...) of a deployed graph: before the rewriting node the
    originals, after it the rewritten byte; by node name or service ID."""
    import threading

    from conftest import marker
    g = nx.DiGraph()
    g.add_node("fw", nf=onvm.native("forward"))
    g.add_node("stamp", nf=marker(0x5A))
    g.add_edge(Port(0), "fw")
    g.add_edge("fw", "stamp")
    g.add_edge("stamp", Port(1))
    dep = mgr.deploy(g)
    stamp_service = dep["stamp"][0].service
    frames = [bytes(udp(i)) for i in range(2000)]
    stop = threading.Event()

    def feed():    # paced, so the call's own tap sees traffic while it waits
        while not stop.is_set():
            mgr.inject(frames[:200], port=0, rate=20000)
    with mgr.tap(after="fw") as before:
        t = threading.Thread(target=feed, daemon=True)
        t.start()
        try:
            by_name = mgr.capture(after="stamp", count=50, timeout=10, raw=True)
            by_id = mgr.capture(after=stamp_service, count=50, timeout=10, raw=True)
            seen_before = before.capture(count=50, timeout=10, raw=True)
        finally:
            stop.set()
            t.join(20)
    assert len(by_name) == 50 and len(by_id) == 50 and len(seen_before) == 50
    originals = set(frames[:200])
    assert all(p in originals for p in seen_before), "before the node: unchanged"
    assert frames[0][-1] != 0x5A
    prefixes = {f[:-1] for f in originals}
    assert all(p[-1] == 0x5A and p[:-1] in prefixes for p in by_name + by_id), "after it: rewritten"
    with pytest.raises(ValueError, match="no NF named 'nope'"):
        mgr.capture(after="nope")
    assert mgr.wait_idle(10)
