"""The flow director, as a user drives it: rules from the notebook and from
an NF, checked on the bytes that come out of the ports and on counters."""
import os
import time

import networkx as nx
import pytest

import onvm
from conftest import udp, wait_for
from onvm import Match, Port


def marker(value):
    @onvm.nf
    def mark(pkt):
        pkt.data[-1] = value        # which path a packet took shows in its last byte
        return onvm.NEXT
    return mark


def last_bytes(pkts):
    return sorted(bytes(p)[-1] for p in pkts)


X = dict(src="198.51.100.7", dst="203.0.113.5")          # the exact rule's flow


@pytest.mark.parametrize("lookup", ["cached", "naive"])
def test_exact_and_wildcard_rules_take_their_own_paths(lookup):
    with onvm.Manager(name="tf%d" % os.getpid(), flow_lookup=lookup) as mgr:
        mgr.launch(marker(0xA1), service=1, name="a")
        mgr.launch(marker(0xB2), service=2, name="b")
        mgr.set_default_chain([1, onvm.ToPort(1)])
        exact = mgr.flows.add(Match(proto="udp", sport=5353, dport=53, **X), [2, Port(1)])
        wild = mgr.flows.add(Match(src="198.51.100.0/24", proto="udp", dport=(80, 90)), [Port(0)])
        assert exact.exact and not wild.exact

        pkts = [udp(5353, 53, **X)] * 30 + [udp(1000 + i, 80 + i % 11, "198.51.100.%d" % (i + 1)) for i in range(20)] \
            + [udp(5353, 53, "198.51.100.8", "203.0.113.5")] * 10          # a near miss: default path
        cost0 = mgr.stats()["threads"]["rx_cost"][0]
        assert mgr.inject(pkts) == 60
        out1 = mgr.capture(1, count=40, timeout=5)
        out0 = mgr.capture(0, count=20, timeout=5)
        # exact flow via b, the near miss via a (the default), the wildcard flows straight out of port 0
        assert last_bytes(out1) == [0xA1] * 10 + [0xB2] * 30
        assert sorted(bytes(p) for p in out0) == sorted(bytes(p) for p in pkts[30:50])
        rules = {r.id: r for r in mgr.flows.list()}
        assert rules[exact.id].packets == 30 and rules[exact.id].bytes == sum(len(p) for p in pkts[:30])
        assert rules[wild.id].packets == 20
        st = mgr.stats()["nfs"]
        assert st[mgr["a"].instance]["rx"] == 10 and st[mgr["b"].instance]["rx"] == 30
        cost = mgr.stats()["threads"]["rx_cost"][0]                 # the RX thread timed its work and lookups
        assert cost["pkts"] - cost0["pkts"] == 60
        assert cost["work_s"] - cost0["work_s"] > cost["lookup_s"] - cost0["lookup_s"] > 0

        # removed: the flow is back on the default path
        assert mgr.flows.remove(exact)["packets"] == 30
        assert mgr.inject([udp(5353, 53, **X)] * 5) == 5
        assert last_bytes(mgr.capture(1, count=5, timeout=5)) == [0xA1] * 5
        assert mgr.wait_idle(5)


def test_priority_decides_between_overlapping_wildcards(mgr):
    mgr.launch(marker(0xB2), service=2, name="b")
    mgr.set_default_chain([onvm.ToPort(1)])
    low = mgr.flows.add(Match(src="198.51.100.0/24"), [2, Port(1)], priority=5)
    high = mgr.flows.add(Match(proto="udp", dport=53), [Port(0)], priority=10)
    pkts = [udp(i, 53, "198.51.100.%d" % i) for i in range(1, 11)]
    assert mgr.inject(pkts) == 10
    assert len(mgr.capture(0, count=10, timeout=5)) == 10        # both match: priority 10 wins
    mgr.flows.remove(high)
    assert mgr.inject(pkts) == 10
    assert last_bytes(mgr.capture(1, count=10, timeout=5)) == [0xB2] * 10
    # equal priorities: the older rule wins
    mgr.flows.add(Match(proto="udp"), [Port(0)], priority=5)
    assert mgr.inject(pkts) == 10
    assert last_bytes(mgr.capture(1, count=10, timeout=5)) == [0xB2] * 10
    assert [r.packets for r in mgr.flows.list() if r.id == low.id] == [20]


def test_idle_and_hard_timeouts_remove_rules(mgr):
    mgr.set_default_chain([onvm.ToPort(1)])
    idle = mgr.flows.add(Match(proto="udp", sport=7, dport=7, **X), [Port(0)], idle_timeout=0.5)
    mgr.flows.add(Match(proto="tcp"), [Port(0)], hard_timeout=0.3)
    assert mgr.inject([udp(7, 7, **X)] * 3) == 3
    assert len(mgr.capture(0, count=3, timeout=5)) == 3
    assert wait_for(lambda: len(mgr.flows.list()) == 0, timeout=10)
    assert mgr.flows.stats()["expired"] == 2
    assert mgr.inject([udp(7, 7, **X)] * 3) == 3                  # expired: the default path again
    assert len(mgr.capture(1, count=3, timeout=5)) == 3
    with pytest.raises(ValueError, match="no flow rule"):
        mgr.flows.remove(idle)


def test_many_timed_rules_expire_in_turns_and_a_busy_one_stays(mgr):
    # more timed rules than one expiry check looks at: the checks take them in turns
    n = 3 * onvm.common.match.EXPIRY_BATCH
    mgr.set_default_chain([onvm.ToPort(1)])
    mgr.flows.add_many([Match(proto="udp", sport=1000 + i, dport=53, **X) for i in range(n)], [Port(0)],
                       idle_timeout=0.5)
    busy = mgr.flows.add(Match(proto="udp", sport=7, dport=7, **X), [Port(0)], idle_timeout=0.5)
    keep = mgr.flows.add(Match(proto="tcp"), [Port(0)])            # no timeout: never expires
    sent, deadline = 0, time.monotonic() + 20
    while mgr.flows.stats()["rules"] > 2 and time.monotonic() < deadline:
        sent += mgr.inject(udp(7, 7, **X))                         # keeps the busy rule alive
        time.sleep(0.05)
    st = mgr.flows.stats()
    assert (st["rules"], st["expired"], st["exact"], st["wildcard"]) == (2, n, 1, 1)
    rules = {r.id: r for r in mgr.flows.list()}
    assert set(rules) == {busy.id, keep.id}
    assert sent > 0 and rules[busy.id].packets == sent
    assert len(mgr.capture(0, count=sent, timeout=5)) == sent


def test_an_nf_holds_at_most_its_quota_of_rules(mgr):
    @onvm.nf
    def greedy(pkt):
        try:
            onvm.flows.add(onvm.Match.of(pkt), [onvm.Port(1)])
        except onvm.OnvmError:
            pass                                    # over quota: counted by the manager
        return onvm.NEXT

    quota = onvm.common.match.NF_QUOTA
    mgr.launch(greedy, service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    flows = [udp(1 + i, 53, **X) for i in range(quota + 5)]      # one packet per flow
    for i in range(0, len(flows), 256):
        assert mgr.inject(flows[i:i + 256]) == len(flows[i:i + 256])
        assert len(mgr.capture(1, count=len(flows[i:i + 256]), timeout=10)) == len(flows[i:i + 256])
    st = mgr.flows.stats()
    assert st["rules"] == quota and st["refused"].get("quota") == 5
    mgr.flows.remove(mgr.flows.list()[0])                         # frees one rule of its quota
    assert mgr.inject(flows[-1]) == 1                             # a refused flow: asked again, now granted
    assert len(mgr.capture(1, count=1, timeout=5)) == 1
    assert wait_for(lambda: mgr.flows.stats()["rules"] == quota)
    assert mgr.flows.stats()["refused"].get("quota") == 5


def test_bad_rules_are_refused_and_change_nothing(mgr):
    g = nx.DiGraph()
    g.add_node("a", nf=onvm.native("forward"))
    g.add_node("b", nf=onvm.native("forward"))
    g.add_edge(Port(0), "a")
    g.add_edge("a", "b")
    g.add_edge("b", Port(1))
    mgr.deploy(g)
    good = mgr.flows.add(Match(dport=80, proto="tcp"), ["a", "b", Port(1)])
    before = [(r.id, repr(r.match), r.chain) for r in mgr.flows.list()]
    cases = [
        (lambda: Match(src="198.51.100.0/33"), "src"),
        (lambda: Match(dst="203.0.113.999"), "dst"),
        (lambda: Match(proto="udp", dport=70000), "0..65535"),
        (lambda: Match(proto="icmp", dport=1), "no ports"),
        (lambda: mgr.flows.add(Match(proto="udp"), ["firewal", Port(1)]), "unknown node 'firewal'"),
        (lambda: mgr.flows.add(Match(proto="udp"), ["a", Port(7)]), "port 7 does not exist"),
        (lambda: mgr.flows.add(Match(proto="udp"), ["a", "b"]), "ends at a port"),
        (lambda: mgr.flows.add(Match(proto="udp"), ["b", "a", Port(1)]), "no edge"),
        (lambda: mgr.flows.add(Match(proto="udp"), ["a", Port(1)]), "no edge"),
        (lambda: mgr.flows.add(Match(proto="udp"), [Port(1)], priority=-1), "priority"),
        (lambda: mgr.flows.add(Match(proto="udp"), [Port(1)], idle_timeout="soon"), "idle_timeout"),
        (lambda: mgr.flows.add("udp", [Port(1)]), "onvm.Match"),
    ]
    for make, msg in cases:
        with pytest.raises(ValueError, match=msg):
            make()
    exact = Match(proto="udp", sport=1, dport=2, **X)
    mgr.flows.add(exact, [Port(1)])
    with pytest.raises(ValueError, match="exists already"):
        mgr.flows.add(exact, ["a", "b", Port(1)])
    after = [(r.id, repr(r.match), r.chain) for r in mgr.flows.list() if r.match != exact]
    assert after == before and good.id in [r[0] for r in after]


def test_an_nf_installs_a_rule_and_the_flow_skips_it(mgr):
    @onvm.nf
    def classifier(pkt):
        m = onvm.Match.of(pkt)
        try:
            onvm.flows.add(m, [onvm.Port(1)], idle_timeout=30)
        except onvm.OnvmError:
            pass                                            # the second packet's ask: exists already
        return onvm.NEXT

    cls = mgr.launch(classifier, service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    flow = udp(4000, 443, **X)
    assert mgr.inject(flow) == 1
    assert len(mgr.capture(1, count=1, timeout=5)) == 1
    assert wait_for(lambda: len(mgr.flows.list()) == 1)
    assert mgr.inject([flow] * 50) == 50
    assert len(mgr.capture(1, count=50, timeout=5)) == 50
    rule, = mgr.flows.list()
    assert rule.installer == "classifier" and rule.packets == 50
    assert cls.stats()["rx"] == 1                 # the next 50 skipped the NF that installed the rule
    assert mgr.inject(udp(4001, 443, **X)) == 1   # another flow still goes through it
    assert len(mgr.capture(1, count=1, timeout=5)) == 1
    assert wait_for(lambda: cls.stats()["rx"] == 2)
    assert wait_for(lambda: len(mgr.flows.list()) == 2)


def test_an_nf_is_refused_with_a_counted_reason(mgr):
    @onvm.nf
    def asker(pkt):
        try:
            onvm.flows.add(onvm.Match.of(pkt), [onvm.ToPort(0), onvm.ToPort(1)])
        except onvm.OnvmError:
            return onvm.DROP                         # refused: a port must end the chain
        return onvm.NEXT

    mgr.launch(asker, service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    assert mgr.inject([udp(i) for i in range(3)]) == 3
    assert wait_for(lambda: mgr.flows.stats()["refused"].get("invalid") == 3)
    assert len(mgr.flows.list()) == 0
    assert len(mgr.capture(1, count=None, timeout=0.3)) == 0


def test_misses_go_to_the_miss_handler_until_it_installs_a_rule(mgr):
    @onvm.nf
    def decider(pkt):                    # what the SDN NF does with a controller's answer
        try:
            onvm.flows.add(onvm.Match.of(pkt), [onvm.ToService(2), onvm.Port(1)])
        except onvm.OnvmError:
            pass
        return onvm.NEXT                 # asks the flow table again: the new rule's path

    d = mgr.launch(decider, service=3)
    mgr.launch(marker(0xB2), service=2, name="b")
    mgr.launch(marker(0xA1), service=1, name="a")
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.flows.set_miss_handler(3)
    for i in range(3):                   # three flows, the first packet of each alone
        assert mgr.inject(udp(100 + i, **X)) == 1
        assert last_bytes(mgr.capture(1, count=1, timeout=5)) == [0xB2]
    assert mgr.inject([udp(100 + i, **X) for i in range(3)] * 10) == 30
    assert last_bytes(mgr.capture(1, count=30, timeout=5)) == [0xB2] * 30
    assert d.stats()["rx"] == 3          # only the first packet of each flow
    assert mgr["a"].stats()["rx"] == 0
    mgr.flows.set_miss_handler(None)     # no handler: misses take the default path
    assert mgr.inject(udp(999, **X)) == 1
    assert last_bytes(mgr.capture(1, count=1, timeout=5)) == [0xA1]
    with pytest.raises(ValueError, match="unknown node"):
        mgr.flows.set_miss_handler("sdn")


def test_cli_flows_add_list_remove(mgr):
    import subprocess
    import sys

    def onvm_cli(*args):
        return subprocess.run([sys.executable, "-m", "onvm", "flows", *args, "--manager", mgr.name],
                              capture_output=True, text=True, timeout=60)

    r = onvm_cli("add", "port:0", "--src", "198.51.100.0/24", "--proto", "udp", "--dport", "80-90",
                 "--priority", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("rule 0:")
    mgr.set_default_chain([onvm.ToPort(1)])
    assert mgr.inject(udp(5, 85, "198.51.100.3")) == 1
    assert len(mgr.capture(0, count=1, timeout=5)) == 1
    listed = onvm_cli("list")
    assert listed.returncode == 0 and "198.51.100.0/24" in listed.stdout
    assert [r.packets for r in mgr.flows.list()] == [1]
    bad = onvm_cli("add", "port:0", "--dport", "99999")
    assert bad.returncode == 2 and "0..65535" in bad.stderr
    bad = onvm_cli("add", "nosuchnode", "port:1", "--proto", "udp")
    assert bad.returncode == 2 and "unknown node 'nosuchnode'" in bad.stderr
    assert onvm_cli("remove", "0").returncode == 0
    gone = onvm_cli("remove", "0")
    assert gone.returncode == 2 and "no flow rule 0" in gone.stderr
    assert len(mgr.flows.list()) == 0


def test_rules_in_bulk_all_or_none(mgr):
    mgr.set_default_chain([onvm.ToPort(1)])
    flows = [Match(proto="udp", sport=100 + i, dport=53, **X) for i in range(5000)]   # list() takes two pages
    ids = mgr.flows.add_many(flows, [Port(0)], idle_timeout=60)
    assert len(set(ids)) == 5000 and sorted(r.id for r in mgr.flows.list()) == sorted(ids)
    assert mgr.inject([udp(100 + i, **X) for i in range(0, 3000, 300)]) == 10
    assert len(mgr.capture(0, count=10, timeout=5)) == 10
    with pytest.raises(ValueError, match="exists already"):    # one duplicate: none of the request is added
        mgr.flows.add_many([Match(proto="udp", sport=9000, dport=53, **X), flows[0]], [Port(0)])
    with pytest.raises(ValueError, match="unknown node"):
        mgr.flows.add_many(flows[:1], ["nosuch", Port(0)])
    assert len(mgr.flows.list()) == 5000 and mgr.flows.stats()["rules"] == 5000


# ---- what an NF may ask for (issue 18, item 2) -----------------------------------------

def door_asker(requests, name="evil", deployed=False):
    """An NF whose code, once registered, sends `requests` raw on its own
    nf.sock connection (as hostile code in an NF could), prints the replies
    (its log: a container NF has no other way out), then forwards whatever
    it gets."""
    class Asker:
        def __call__(self, pkt):
            return onvm.NEXT

        def onvm_run(self, nf, error):
            import json
            import time

            from onvm.common import protocol
            from onvm.common.abi import ffi, lib
            from onvm.nflib import context
            replies = []
            deadline = time.monotonic() + 20
            while deployed and not context.control_file().service_names() and time.monotonic() < deadline:
                time.sleep(0.05)      # deployed: ask once the graph is published
            for req in requests:
                protocol.send(context.door, req)
                replies.append(protocol.recv(context.door))
            print("replies: " + json.dumps(replies), flush=True)
            b = ffi.new("struct onvm_batch *")
            while lib.onvm_nf_rx(nf, b, 100) >= 0:
                lib.onvm_nf_tx(nf, b)
            return 0
    return onvm.nf(name=name)(Asker())


def replies_of(nf):
    import json

    def line():
        return [ln for ln in nf.log().splitlines() if ln.startswith("replies: ")]
    assert wait_for(line, 30), "the NF sent its requests: %s" % nf.log()[-2000:]
    return json.loads(line()[0][len("replies: "):])


MATCH_ALL = Match().wire()
TO_PORT1 = [[onvm._core.lib.ONVM_TO_PORT, 1]]
ATTACK = [{"op": "flow_add", "match": MATCH_ALL, "chain": TO_PORT1, "priority": 65534},
          {"op": "flow_add", "match": MATCH_ALL, "chain": TO_PORT1, "priority": 0},
          {"op": "flow_miss", "on": True}]


def firewall():
    """The operator's firewall: it drops everything (made here, so it goes
    to the NF by value)."""
    @onvm.nf
    def drop_all(pkt):
        return onvm.DROP
    return drop_all


def assert_firewall_held(mgr, fw_rx):
    pkts = [udp(2000 + i, **X) for i in range(100)]
    assert mgr.inject(pkts) == 100
    assert wait_for(lambda: fw_rx() == 100, 10), "every packet met the firewall"
    assert len(mgr.capture(1, count=None, timeout=0.5)) == 0, "0 of 100 packets reached port 1"


@pytest.mark.parametrize("routing", ["default chain", "graph"])
def test_an_nf_in_no_chain_cannot_reroute_traffic_past_the_firewall(mgr, routing):
    if routing == "graph":
        g = nx.DiGraph()
        g.add_node("fw", nf=firewall())
        g.add_edge(Port(0), "fw")
        g.add_edge("fw", Port(1))
        dep = mgr.deploy(g)
        fw = dep["fw"][0]
    else:
        fw = mgr.launch(firewall(), service=1)
        mgr.set_default_chain([1, onvm.ToPort(1)])
    evil = mgr.launch(door_asker(ATTACK), service=50)     # on no path, in no graph
    add_high, add_low, miss = replies_of(evil)
    assert_firewall_held(mgr, lambda: fw.stats()["rx"])
    assert not add_high["ok"] and "at most 0" in add_high["error"]
    assert not add_low["ok"] and "no traffic reaches it" in add_low["error"]
    assert not miss["ok"] and "operator" in miss["error"]
    assert mgr.flows.list() == [] and mgr.control.tables().flow_miss == 0
    assert mgr.flows.stats()["refused"] == {"priority": 1, "unreached": 1, "miss": 1}


def test_an_nf_after_the_firewall_cannot_skip_it(mgr):
    fw = mgr.launch(firewall(), service=1)
    mgr.set_default_chain([1, 2, onvm.ToPort(1)])
    (reply,) = replies_of(mgr.launch(door_asker(ATTACK[1:2]), service=2))
    assert_firewall_held(mgr, lambda: fw.stats()["rx"])
    assert reply["ok"], reply
    (rule,) = mgr.flows.list()                    # its rule keeps the hops before it
    assert rule.chain == ["svc:1", "port:1"] and rule.installer == "evil"


def test_rules_from_nfs_stay_within_the_graph_and_below_the_operator():
    """The graph: port 0 -> a -> b -> port 1, a may steer to port 1; port 1
    -> b -> port 0.  Every request is refused with its reason, except the
    ones the graph allows, which keep the operator's hops and ports."""
    lib = onvm._core.lib
    svc, port = lib.ONVM_TO_SERVICE, lib.ONVM_TO_PORT
    with onvm.Manager(name="t%dp" % os.getpid(), nf_max_priority=5) as mgr:
        g = nx.DiGraph()
        g.add_node("a", nf=marker(0xA1))
        g.add_node("b", nf=marker(0xB2))
        g.add_edge(Port(0), "a")
        g.add_edge("a", "b")
        g.add_edge("a", Port(1), steer=True)
        g.add_edge("b", Port(1))
        dep = mgr.deploy(g)
        sa, sb = dep.services()["a"], dep.services()["b"]
        op = mgr.flows.add(Match(proto="udp", dport=53), ["a", "b", Port(1)], priority=3)
        udp9 = Match(proto="udp", dport=9).wire()
        # a second instance of node a's service, launched by the operator, asks
        a2 = mgr.launch(door_asker([
            {"op": "flow_add", "match": udp9, "chain": [[port, 1]], "priority": 6},         # above the ceiling
            {"op": "flow_add", "match": udp9, "chain": [[port, 0]], "priority": 0},         # a has no edge to port 0
            {"op": "flow_add", "match": udp9, "chain": [[svc, sb], [port, 0]], "priority": 0},   # b has none either
            {"op": "flow_add", "match": Match(proto="udp").wire(), "chain": [[port, 1]], "priority": 5},
            {"op": "flow_add", "match": Match(proto="udp", sport=7, dport=53, src="198.51.100.7",
                                               dst="203.0.113.5").wire(), "chain": [[port, 1]], "priority": 0},
            {"op": "flow_add", "match": udp9, "chain": [[port, 1]], "priority": 2},         # allowed
        ]), service=sa, name="a2")
        ceiling, no_edge, no_edge_b, over_op, exact_under_op, ok = replies_of(a2)
        assert "at most 5" in ceiling["error"]
        assert "may not hand packets to port 0" in no_edge["error"]
        assert "may not hand packets to port 0" in no_edge_b["error"]
        assert "operator's rule %d" % op.id in over_op["error"]
        assert "operator's rule %d" % op.id in exact_under_op["error"]
        assert ok["ok"] and ok["rule"]["chain"] == [[port, 1]]
        # the rule covers port 0, whose path passes a, not port 1 (a path of b only)
        assert mgr.inject([udp(100, 9, **X)] * 4, port=0) == 4
        assert mgr.inject([udp(101, 9, **X)] * 4, port=1) == 4
        assert mgr.inject([udp(102, 53, **X)] * 4, port=0) == 4
        out1 = mgr.capture(1, count=8, timeout=5)
        assert sorted(p[onvm_udp()].sport for p in out1) == [100] * 4 + [102] * 4
        assert mgr.flows.stats()["refused"] == {"priority": 1, "invalid": 2, "operator": 2}
        # the operator's new rule wins: the NF's rule it would lose to goes
        mgr.flows.add(Match(proto="udp"), ["a", "b", Port(1)], priority=1)
        assert [r.installer for r in mgr.flows.list()] == ["notebook", "notebook"]


def onvm_udp():
    from scapy.layers.inet import UDP
    return UDP


def test_the_miss_handler_is_a_role_the_operator_grants(mgr):
    fw = mgr.launch(firewall(), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    refused = mgr.launch(door_asker([{"op": "flow_miss", "on": True}], "nogrant"), service=40)
    assert not replies_of(refused)[0]["ok"]
    assert mgr.control.tables().flow_miss == 0
    granted = mgr.launch(door_asker([{"op": "flow_miss", "on": True},
                                     {"op": "flow_add", "match": Match(proto="udp", dport=9).wire(),
                                      "chain": TO_PORT1, "priority": 0}], "granted"), service=41, flow_miss=True)
    took, rule = replies_of(granted)
    assert took["ok"] and took["service"] == 41 and took["max_priority"] == 0
    assert rule["ok"], rule                   # the miss handler's rules cover every port
    assert mgr.control.tables().flow_miss == 41
    assert mgr.inject([udp(5, 9, **X)] * 3 + [udp(5, 10, **X)] * 3) == 6
    assert len(mgr.capture(1, count=3, timeout=5)) == 3                 # the rule's flow
    # the others: misses, through the handler (NEXT), then the default path's firewall
    assert wait_for(lambda: fw.stats()["rx"] == 3, 5)
    assert granted.stats()["rx"] == 3 and len(mgr.capture(1, count=None, timeout=0.3)) == 0


def test_a_graph_names_its_miss_handler(mgr):
    lib = onvm._core.lib
    udp9 = Match(proto="udp", dport=9).wire()
    g = nx.DiGraph()
    g.add_node("fw", nf=firewall())
    g.add_node("decider", nf=door_asker([
        {"op": "flow_miss", "on": True},
        {"op": "flow_add", "match": udp9, "chain": [[lib.ONVM_TO_PORT, 0]], "priority": 0},   # no such edge
        {"op": "flow_add", "match": udp9, "chain": [[lib.ONVM_TO_PORT, 1]], "priority": 0},
    ], "decider", deployed=True), flow_miss=True)
    g.add_edge(Port(0), "fw")
    g.add_edge("fw", Port(1))
    g.add_edge("decider", Port(1), steer=True)
    dep = mgr.deploy(g)
    assert mgr.control.tables().flow_miss == dep.services()["decider"]
    took, no_edge, ok = replies_of(dep["decider"][0])
    assert took["ok"] and "may not hand packets to port 0" in no_edge["error"] and ok["ok"]
    assert mgr.inject([udp(7, 9, **X)] * 5) == 5
    assert len(mgr.capture(1, count=5, timeout=5)) == 5
    g.nodes["fw"]["flow_miss"] = True
    with pytest.raises(onvm.ChainError, match="one miss handler"):
        mgr.deploy(g)
    g.nodes["decider"]["flow_miss"] = False
    g.nodes["fw"]["flow_miss"] = False
    mgr.deploy(g)                     # the graph no longer names one: misses take the default path
    assert mgr.control.tables().flow_miss == 0
