"""The SDN NF with the shipped os-ken controller, a real process on
127.0.0.1: first packets ask, the chosen chain is followed, nothing is lost
while decisions are pending, and a dead controller leaves the default path."""
import json
import logging
import subprocess
import sys

import pytest

import onvm
from conftest import marker, udp, wait_for
from onvm.sdn import Controller, ofwire

POLICY = {"rules": [{"match": {"proto": "udp", "dport": 53}, "chain": ["svc:2", "port:1"], "idle_timeout": 30}],
          "default": None}


def last_bytes(pkts):
    return sorted(bytes(p)[-1] for p in pkts)


@pytest.fixture
def chain(mgr):
    """Default path: a (0xA1) then port 1; the controller's chain: b (0xB2) then port 1."""
    mgr.launch(marker(0xA1), service=1, name="a")
    mgr.launch(marker(0xB2), service=2, name="b")
    mgr.set_default_chain([1, onvm.ToPort(1)])
    return mgr


def wait_connected(mgr, sdn, sport, timeout=30):
    """Send one packet of a new flow every 0.5 s until the controller
    decides one (it comes out through b).  returns: probes sent."""
    import time
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        assert mgr.inject(udp(sport + sent)) == 1
        sent += 1
        got = last_bytes(mgr.capture(1, count=1, timeout=2))
        if got == [0xB2]:
            return sent
    raise AssertionError("the controller never decided a flow; switch log:\n%s" % sdn.log())


def test_first_packet_asks_then_the_chosen_chain_takes_the_flow(chain):
    mgr = chain
    with Controller(POLICY) as ctl:
        sdn = mgr.launch(onvm.sdn.nf(controller=ctl.address))
        wait_connected(mgr, sdn, 40000)
        rx0, a0 = sdn.stats()["rx"], mgr["a"].stats()["rx"]
        flows = [udp(1000 + i) for i in range(4)]
        for f in flows:                                   # the first packet of each flow alone
            assert mgr.inject(f) == 1
            assert last_bytes(mgr.capture(1, count=1, timeout=5)) == [0xB2]
        assert sdn.stats()["rx"] == rx0 + 4
        assert mgr.inject(flows * 25) == 100              # later packets: the rules, not the NF
        assert last_bytes(mgr.capture(1, count=100, timeout=5)) == [0xB2] * 100
        assert sdn.stats()["rx"] == rx0 + 4
        assert mgr["a"].stats()["rx"] == a0               # nothing took the default path
        rules = [r for r in mgr.flows.list() if r.installer == "sdn" and r.match.sport in [(1000 + i,) * 2
                                                                                          for i in range(4)]]
        assert len(rules) == 4 and all(r.exact and r.chain == ["svc:2", "port:1"] for r in rules)
        assert sorted(r.packets for r in rules) == [26] * 4
        # a flow the policy does not choose for: the default path
        assert mgr.inject(udp(7, dport=80)) == 1
        assert last_bytes(mgr.capture(1, count=1, timeout=5)) == [0xA1]


def test_a_burst_of_a_new_flow_is_held_not_lost(chain):
    mgr = chain
    with Controller(POLICY) as ctl:
        sdn = mgr.launch(onvm.sdn.nf(controller=ctl.address))
        wait_connected(mgr, sdn, 40000)
        asked0, held0 = sdn.stats()["app"][:2]
        n = 300
        assert mgr.inject([udp(5000)] * n + [udp(5001)] * n) == 2 * n   # before any answer can come
        out = mgr.capture(1, count=2 * n, timeout=10)
        assert last_bytes(out) == [0xB2] * (2 * n)        # all of them, through the chosen chain
        st = sdn.stats()
        assert st["app"][2] == 0 and st["parked"] == 0 and st["app"][1] > held0
        assert st["app"][0] == asked0 + 2                 # one packet-in per flow, however many waited
        assert mgr.wait_idle(5)


def test_buffer_overflow_takes_the_default_path_counted(chain):
    mgr = chain
    with Controller(POLICY) as ctl:
        sdn = mgr.launch(onvm.sdn.nf(controller=ctl.address, buffer=0))
        probes = 0
        while sdn.stats()["app"][2] == 0 and probes < 60:     # once connected, a miss overflows at once
            assert mgr.inject(udp(6100 + probes)) == 1
            assert last_bytes(mgr.capture(1, count=1, timeout=5)) == [0xA1]
            probes += 1
        assert sdn.stats()["app"][2] > 0
        over = sdn.stats()["app"][2]
        assert mgr.inject([udp(6000)] * 20) == 20
        assert last_bytes(mgr.capture(1, count=20, timeout=5)) == [0xA1] * 20   # none lost: the default path
        assert wait_for(lambda: sdn.stats()["app"][2] == over + 20)
        assert sdn.stats()["app"][0] == 0                 # nothing held, so nothing asked


def test_controller_killed_then_restarted(chain):
    mgr = chain
    ctl = Controller(POLICY)
    try:
        ctl.start()
        sdn = mgr.launch(onvm.sdn.nf(controller=ctl.address))
        wait_connected(mgr, sdn, 40000)
        ctl.kill()                                        # SIGKILL by PID
        a0 = mgr["a"].stats()["rx"]
        flows = [udp(2000 + i) for i in range(5)]
        assert mgr.inject(flows * 4) == 20                # new flows: no controller, the default path
        assert last_bytes(mgr.capture(1, count=20, timeout=10)) == [0xA1] * 20
        assert mgr["a"].stats()["rx"] == a0 + 20
        ctl.start()                                       # same port: the switch reconnects
        wait_connected(mgr, sdn, 41000)
        assert mgr.inject(flows) == 5                     # control restored for those flows too
        assert last_bytes(mgr.capture(1, count=5, timeout=5)) == [0xB2] * 5
    finally:
        ctl.close()
    assert ctl.process.poll() is not None


def test_the_sdn_nf_dying_leaves_misses_on_the_default_path(chain):
    mgr = chain
    with Controller(POLICY) as ctl:
        sdn = mgr.launch(onvm.sdn.nf(controller=ctl.address))
        wait_connected(mgr, sdn, 40000)
        sdn.kill()
        assert wait_for(lambda: mgr.control.service_table(250)["instances"] == [], 10)
        assert mgr.inject(udp(3000)) == 1
        assert last_bytes(mgr.capture(1, count=1, timeout=5)) == [0xA1]
        assert mgr.wait_idle(10)                          # whatever it held went back to the pool


def test_bad_policies_are_refused(tmp_path):
    cases = [({"rules": [{"match": {"src": "10.0.0.0/33"}, "chain": ["port:1"]}]}, "src"),
             ({"rules": [{"match": {"proto": "udp"}, "chain": ["fw"]}]}, "ends at a port"),
             ({"rules": [{"match": {"colour": "red"}, "chain": ["port:1"]}]}, "colour"),
             ({"rules": [{"chain": ["port:1"], "priority": -1}]}, "priority"),
             ({"rules": [{"chain": ["no such node!"]}]}, "not a node name"),
             ({"default": "port:1"}, "default"),
             ({"rules": {}}, "rules is a list")]
    for policy, msg in cases:
        with pytest.raises(ValueError, match=msg):
            Controller(policy)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(cases[1][0]))
    r = subprocess.run([sys.executable, "-m", "onvm.sdn.controller", "--policy", str(bad)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "ends at a port" in r.stderr
    (tmp_path / "nojson.json").write_text("{rules: ")
    r = subprocess.run([sys.executable, "-m", "onvm.sdn.controller", "--policy", str(tmp_path / "nojson.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not JSON" in r.stderr
    with pytest.raises(ValueError, match="HOST:PORT"):
        onvm.sdn.nf(controller="localhost")


def test_switch_messages_parse_back_through_os_ken():
    """The switch side's encoders (os-ken has only the controller's half)."""
    from os_ken.ofproto import ofproto_parser
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as p
    logging.getLogger("os_ken").setLevel(logging.CRITICAL)

    def back(m):
        b = ofwire.encode(m, 9)
        return ofproto_parser.msg(ofwire.DP, *ofproto_parser.header(b), b)

    pin = back(ofwire.PacketIn(ofwire.DP, buffer_id=3, total_len=60, reason=0, table_id=0, cookie=1,
                               match=p.OFPMatch(in_port=2), data=b"x" * 60))
    assert (pin.buffer_id, pin.match["in_port"], pin.data, pin.xid) == (3, 2, b"x" * 60, 9)
    feat = back(ofwire.SwitchFeatures(ofwire.DP, 0x42, 1024, 1, 0, 0))
    assert (feat.datapath_id, feat.n_buffers, feat.n_tables) == (0x42, 1024, 1)
    rem = back(ofwire.FlowRemoved(ofwire.DP, 7, 10, ofp.OFPRR_IDLE_TIMEOUT, 0, 3, 0, 30, 0, 26, 1534,
                                  p.OFPMatch(eth_type=0x800, ipv4_src="198.51.100.1")))
    assert (rem.cookie, rem.packet_count, rem.byte_count, rem.match["ipv4_src"]) == (7, 26, 1534, "198.51.100.1")
    desc = ofwire.PortDescReply(ofwire.DP)
    desc.body = [ofwire.port(1, "port:0", "02:00:00:00:00:01"), ofwire.port(0x1002, "svc:2")]
    assert [(x.port_no, x.name) for x in back(desc).body] == [(1, b"port:0"), (0x1002, b"svc:2")]
    st = back(ofwire.PortStatus(ofwire.DP, ofp.OFPPR_ADD, ofwire.port(0x1003, "fw")))
    assert (st.reason, st.desc.name) == (ofp.OFPPR_ADD, b"fw")
    po = ofwire.parse(ofwire.encode(p.OFPPacketOut(ofwire.DP, 5, 1, [p.OFPActionOutput(ofp.OFPP_TABLE)], None), 4))
    assert (po.buffer_id, [a.port for a in po.actions], po.xid) == (5, [ofp.OFPP_TABLE], 4)


def test_expired_rules_are_reported_to_the_controller(chain):
    mgr = chain
    brief = {"rules": [{"match": {"proto": "udp", "dport": 53}, "chain": ["svc:2", "port:1"], "idle_timeout": 1}]}
    with Controller(brief) as ctl:
        sdn = mgr.launch(onvm.sdn.nf(controller=ctl.address))
        wait_connected(mgr, sdn, 40000)
        assert mgr.inject([udp(8000)] * 3) == 3
        assert last_bytes(mgr.capture(1, count=3, timeout=5)) == [0xB2] * 3
        assert wait_for(lambda: not [r for r in mgr.flows.list() if r.installer == "sdn"], 15)
        # the idle timeout's flow-removed (reason 0) reached the controller, with the flow's count
        assert wait_for(lambda: "'udp_src': 8000" in ctl.log() and "reason 0" in ctl.log(), 10), ctl.log()
        line = [x for x in ctl.log().splitlines() if "'udp_src': 8000" in x][0]
        assert line.endswith(", 3 packets")
