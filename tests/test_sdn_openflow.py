"""OpenFlow 1.3 conformance of the SDN NF, message by message, against a
controller written here on a raw socket (os-ken's classes encode what it
sends and decode what the switch says): docs/openflow.md's table."""
import queue
import socket
import struct
import threading
import time

import pytest

import onvm
from conftest import udp, wait_for
from onvm.sdn import ofwire

ofp = pytest.importorskip("os_ken.ofproto.ofproto_v1_3")
from os_ken.ofproto import ofproto_parser  # noqa: E402
from os_ken.ofproto import ofproto_v1_3_parser as p  # noqa: E402

DP = ofwire.DP


def hello(version, versions):
    bits = sum(1 << v for v in versions)
    elem = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, bits)
    return struct.pack("!BBHI", version, ofp.OFPT_HELLO, 16, 1) + elem


class Peer:
    """A controller on 127.0.0.1: one switch connection; a thread reads
    whole messages, answers echo requests (counted) and queues the rest."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(2)
        self.address = "127.0.0.1:%d" % self.srv.getsockname()[1]
        self.s = None
        self.xid = 100

    def accept(self, timeout=30):
        self.srv.settimeout(timeout)
        self.s, _ = self.srv.accept()
        self.s.settimeout(None)
        self.q = queue.Queue()
        self.echoes = 0
        threading.Thread(target=self._read, args=(self.s, self.q), daemon=True).start()

    def _read(self, s, q):
        buf = b""
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                q.put(None)
                return
            buf += data
            while len(buf) >= 8 and len(buf) >= int.from_bytes(buf[2:4], "big"):
                n = int.from_bytes(buf[2:4], "big")
                raw, buf = buf[:n], buf[n:]
                if raw[1] == ofp.OFPT_ECHO_REQUEST:
                    self.echoes += 1
                    try:
                        s.sendall(bytes([4, ofp.OFPT_ECHO_REPLY]) + raw[2:])
                    except OSError:
                        pass                    # closed by the test meanwhile
                else:
                    q.put(raw)

    def send(self, msg):
        self.xid += 1
        self.s.sendall(msg if isinstance(msg, bytes) else ofwire.encode(msg, self.xid))
        return self.xid

    def expect(self, mtype, timeout=10, xid=None):
        """The next message of that type (others in between are kept)."""
        deadline = time.monotonic() + timeout
        kept = []
        try:
            while True:
                raw = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
                if raw is None:
                    raise AssertionError("the switch closed the connection")
                if raw[1] == mtype and (xid is None or struct.unpack_from("!I", raw, 4)[0] == xid):
                    if mtype == ofp.OFPT_HELLO:
                        return raw
                    return ofproto_parser.msg(DP, *ofproto_parser.header(raw), raw)
                kept.append(raw)
        except queue.Empty:
            raise AssertionError("no message of type %d within %g s (got types %s)"
                                 % (mtype, timeout, [r[1] for r in kept])) from None
        finally:
            for r in kept:
                self.q.put(r)

    def none_of(self, mtype, wait=0.3):
        time.sleep(wait)
        got = []
        while not self.q.empty():
            r = self.q.get()
            if r is not None and r[1] == mtype:
                got.append(r)
        return got

    def request(self, msg, reply_type):
        return self.expect(reply_type, xid=self.send(msg))

    def error(self, msg):
        e = self.expect(ofp.OFPT_ERROR, xid=self.send(msg))
        return e.type, e.code

    def flow_mod(self, **kw):
        outs = kw.pop("outs", [])
        inst = [p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, outs)] if outs is not None else []
        kw.setdefault("match", p.OFPMatch())
        self.send(p.OFPFlowMod(DP, instructions=kw.pop("instructions", inst), **kw))
        self.request(p.OFPBarrierRequest(DP), ofp.OFPT_BARRIER_REPLY)     # done once this answers

    def close(self):
        for s in (self.s, self.srv):
            if s is not None:
                s.close()


def out(port, max_len=ofp.OFPCML_NO_BUFFER):
    return p.OFPActionOutput(port, max_len)


def udp_match(sport, **kw):
    return p.OFPMatch(eth_type=0x0800, ip_proto=17, udp_src=sport, **kw)


def test_openflow_1_3_message_by_message(mgr):
    mgr.set_default_chain([onvm.ToPort(1)])
    c = Peer()
    try:
        sdn = mgr.launch(onvm.sdn.nf(controller=c.address, echo_interval=0.5))
        c.accept()
        # version negotiation: the controller offers 1.0-1.5, the switch says 1.3
        h = c.expect(ofp.OFPT_HELLO)
        assert h[0] == 4 and ofwire.hello_versions(h) == {4}
        c.send(hello(6, {1, 4, 5, 6}))
        feat = c.request(p.OFPFeaturesRequest(DP), ofp.OFPT_FEATURES_REPLY)
        assert (feat.n_tables, feat.n_buffers) == (1, 1024)
        assert feat.capabilities & ofp.OFPC_FLOW_STATS and feat.capabilities & ofp.OFPC_PORT_STATS
        desc = c.request(p.OFPPortDescStatsRequest(DP, 0), ofp.OFPT_MULTIPART_REPLY)
        assert {d.port_no: d.name for d in desc.body} == {1: b"port:0", 2: b"port:1", 0x1000: b"default"}
        # echo both ways, barrier
        assert c.request(p.OFPEchoRequest(DP, data=b"ping"), ofp.OFPT_ECHO_REPLY).data == b"ping"
        assert wait_for(lambda: c.echoes >= 2, 5)
        xid = c.send(p.OFPBarrierRequest(DP))
        c.expect(ofp.OFPT_BARRIER_REPLY, xid=xid)

        # no table-miss entry: a miss takes the port's default path, nothing asked
        f0 = bytes(udp(1000))
        assert mgr.inject(f0) == 1 and mgr.capture(1, count=1, timeout=5, raw=True) == [f0]
        assert c.none_of(ofp.OFPT_PACKET_IN) == []

        # the table-miss entry, buffered (64 bytes): a packet-in per miss
        c.flow_mod(priority=0, outs=[out(ofp.OFPP_CONTROLLER, 64)])
        f1 = bytes(udp(1111))
        assert mgr.inject(f1) == 1
        pin = c.expect(ofp.OFPT_PACKET_IN)
        assert (pin.reason, pin.total_len, pin.data, pin.match["in_port"]) == (ofp.OFPR_NO_MATCH, len(f1), f1[:64], 1)
        assert pin.buffer_id != ofp.OFP_NO_BUFFER
        assert mgr.capture(1, timeout=0.3, raw=True) == []            # held
        # a flow-mod naming the buffer applies to the held packet
        c.flow_mod(priority=10, match=udp_match(1111, in_port=1), outs=[out(2)], buffer_id=pin.buffer_id,
                   cookie=0x77, flags=ofp.OFPFF_SEND_FLOW_REM)
        assert mgr.capture(1, count=1, timeout=5, raw=True) == [f1]
        rx0 = sdn.stats()["rx"]
        assert mgr.inject([f1] * 5) == 5 and mgr.capture(1, count=5, timeout=5, raw=True) == [f1] * 5
        assert sdn.stats()["rx"] == rx0                                 # the cached exact rule took them

        # statistics from the flow director's counters
        st = c.request(p.OFPFlowStatsRequest(DP, 0, 0, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, p.OFPMatch()),
                       ofp.OFPT_MULTIPART_REPLY)
        by_cookie = {e.cookie: e for e in st.body}
        assert (by_cookie[0x77].packet_count, by_cookie[0x77].byte_count) == (6, 6 * len(f1))
        assert by_cookie[0x77].match["udp_src"] == 1111 and by_cookie[0].packet_count == 1
        agg = c.request(p.OFPAggregateStatsRequest(DP, 0, 0, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, p.OFPMatch()),
                        ofp.OFPT_MULTIPART_REPLY)
        assert (agg.body.packet_count, agg.body.flow_count) == (7, 2)
        ps = c.request(p.OFPPortStatsRequest(DP, 0, ofp.OFPP_ANY), ofp.OFPT_MULTIPART_REPLY)
        ports = mgr.stats()["ports"]
        assert {s.port_no: (s.rx_packets, s.tx_packets) for s in ps.body} == \
            {q + 1: (ports[q]["rx"], ports[q]["tx"]) for q in range(2)}

        # OFPCML_NO_BUFFER: the whole frame goes up, the switch keeps nothing
        c.flow_mod(command=ofp.OFPFC_MODIFY_STRICT, priority=0, outs=[out(ofp.OFPP_CONTROLLER)])
        f2 = bytes(udp(2222))
        assert mgr.inject(f2) == 1
        pin = c.expect(ofp.OFPT_PACKET_IN)
        assert (pin.buffer_id, pin.data, pin.total_len) == (ofp.OFP_NO_BUFFER, f2, len(f2))
        assert mgr.capture(1, timeout=0.3, raw=True) == []

        # packet-out of new data: IN_PORT, FLOOD, ALL, TABLE, a port, from the controller
        def po(in_port, port, data):
            c.send(p.OFPPacketOut(DP, ofp.OFP_NO_BUFFER, in_port, [out(port)], data))
        po(1, ofp.OFPP_IN_PORT, f2)
        assert mgr.capture(0, count=1, timeout=5, raw=True) == [f2]
        po(1, ofp.OFPP_FLOOD, f2)
        assert mgr.capture(1, count=1, timeout=5, raw=True) == [f2] and mgr.capture(0, timeout=0.3, raw=True) == []
        po(2, ofp.OFPP_ALL, f2)
        assert mgr.capture(0, count=1, timeout=5, raw=True) == [f2] and mgr.capture(1, timeout=0.3, raw=True) == []
        po(1, ofp.OFPP_TABLE, f1)                                       # the cookie-0x77 entry: port 2
        assert mgr.capture(1, count=1, timeout=5, raw=True) == [f1]
        po(ofp.OFPP_CONTROLLER, 1, f2)
        assert mgr.capture(0, count=1, timeout=5, raw=True) == [f2]

        # CONTROLLER as an entry's action beside an output: a copy up, reason ACTION
        c.flow_mod(priority=5, match=udp_match(3333), cookie=0x55, outs=[out(ofp.OFPP_CONTROLLER), out(2)])
        f3 = bytes(udp(3333))
        assert mgr.inject(f3) == 1 and mgr.capture(1, count=1, timeout=5, raw=True) == [f3]
        pin = c.expect(ofp.OFPT_PACKET_IN)
        assert (pin.reason, pin.cookie, pin.data) == (ofp.OFPR_ACTION, 0x55, f3)

        # refused with an OpenFlow error, never silently
        set_field = [p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionSetField(ipv4_dst="10.0.0.1"),
                                                                        out(2)])]
        group = [p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionGroup(1)])]
        refused = [
            (p.OFPFlowMod(DP, priority=9, instructions=set_field), (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE)),
            (p.OFPFlowMod(DP, priority=9, instructions=group), (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP)),
            (p.OFPFlowMod(DP, priority=9, instructions=[p.OFPInstructionMeter(1)]),
             (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST)),
            (p.OFPFlowMod(DP, priority=9, instructions=[p.OFPInstructionGotoTable(1)]),
             (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_TABLE_ID)),
            (p.OFPGroupMod(DP, ofp.OFPGC_ADD, ofp.OFPGT_ALL, 1, []),
             (ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS)),
            (p.OFPMeterMod(DP, ofp.OFPMC_ADD, ofp.OFPMF_PKTPS, 1, []),
             (ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS)),
            (p.OFPFlowMod(DP, priority=9, match=p.OFPMatch(vlan_vid=0x1005)),
             (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD)),
            (p.OFPFlowMod(DP, table_id=3, priority=9), (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID)),
            (p.OFPFlowMod(DP, priority=10, match=udp_match(1111), flags=ofp.OFPFF_CHECK_OVERLAP, instructions=[
                p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [out(1)])]),
             (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_OVERLAP)),
            (p.OFPGroupDescStatsRequest(DP, 0), (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART)),
            (p.OFPPacketOut(DP, 0x4242, 1, [out(2)], None), (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN)),
            (p.OFPPacketOut(DP, ofp.OFP_NO_BUFFER, 1, [out(2)], b""), (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PACKET)),
        ]
        for port in (ofp.OFPP_LOCAL, ofp.OFPP_NORMAL, ofp.OFPP_TABLE, 77):
            refused.append((p.OFPFlowMod(DP, priority=9, instructions=[
                p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [out(port)])]),
                (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT)))
        for port in (ofp.OFPP_LOCAL, ofp.OFPP_NORMAL):
            refused.append((p.OFPPacketOut(DP, ofp.OFP_NO_BUFFER, 1, [out(port)], f2),
                            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT)))
        for msg, want in refused:
            assert c.error(msg) == want, msg
        old = struct.pack("!BBHI", 1, ofp.OFPT_ECHO_REQUEST, 8, 4242)
        c.send(old)
        e = c.expect(ofp.OFPT_ERROR, xid=4242)
        assert (e.type, e.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_VERSION)
        assert mgr.capture(0, timeout=0.3, raw=True) == [] and mgr.capture(1, timeout=0, raw=True) == []

        # MODIFY changes what the cached packets get: the rule goes, the next one takes the new output
        c.flow_mod(command=ofp.OFPFC_MODIFY, match=udp_match(1111), outs=[out(1)])
        assert mgr.inject(f1) == 1 and mgr.capture(0, count=1, timeout=5, raw=True) == [f1]
        # DELETE by cookie: flow-removed, reason DELETE, with every packet counted
        c.flow_mod(command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL, cookie=0x77, cookie_mask=0xffffffffffffffff,
                   out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY)
        rem = c.expect(ofp.OFPT_FLOW_REMOVED)
        assert (rem.reason, rem.cookie, rem.packet_count, rem.priority) == (ofp.OFPRR_DELETE, 0x77, 8, 10)
        assert not [r for r in mgr.flows.list() if r.installer == "sdn" and r.match.sport == (1111, 1111)]
        # DELETE_STRICT: only the entry of that match and priority
        c.flow_mod(command=ofp.OFPFC_DELETE_STRICT, priority=4, match=udp_match(3333), out_port=ofp.OFPP_ANY,
                   out_group=ofp.OFPG_ANY)
        left = c.request(p.OFPFlowStatsRequest(DP, 0, 0, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, p.OFPMatch()),
                         ofp.OFPT_MULTIPART_REPLY)
        assert sorted(e.cookie for e in left.body) == [0, 0x55]
        c.flow_mod(command=ofp.OFPFC_DELETE_STRICT, priority=5, match=udp_match(3333), out_port=ofp.OFPP_ANY,
                   out_group=ofp.OFPG_ANY)
        left = c.request(p.OFPFlowStatsRequest(DP, 0, 0, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, p.OFPMatch()),
                         ofp.OFPT_MULTIPART_REPLY)
        assert [e.cookie for e in left.body] == [0]
        assert c.none_of(ofp.OFPT_FLOW_REMOVED) == []                  # it did not ask for one
        # DELETE by match (not strict): the entries at least as narrow as the match
        for sport in (6001, 6002):
            c.flow_mod(priority=7, match=udp_match(sport), outs=[out(2)], cookie=0x60,
                       flags=ofp.OFPFF_SEND_FLOW_REM)
        c.flow_mod(command=ofp.OFPFC_DELETE, match=udp_match(6001), out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY)
        assert c.expect(ofp.OFPT_FLOW_REMOVED).match["udp_src"] == 6001
        left = c.request(p.OFPFlowStatsRequest(DP, 0, 0, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, p.OFPMatch()),
                         ofp.OFPT_MULTIPART_REPLY)
        assert sorted((e.cookie, e.match.get("udp_src")) for e in left.body) == [(0, None), (0x60, 6002)]
        c.flow_mod(command=ofp.OFPFC_DELETE, match=p.OFPMatch(eth_type=0x0800), out_port=2,
                   out_group=ofp.OFPG_ANY)              # out_port: only entries that output there
        assert c.expect(ofp.OFPT_FLOW_REMOVED).match["udp_src"] == 6002

        # timeouts: flow-removed with the reason
        c.flow_mod(priority=20, match=udp_match(4444), outs=[out(2)], idle_timeout=1, cookie=0x44,
                   flags=ofp.OFPFF_SEND_FLOW_REM)
        c.flow_mod(priority=20, match=udp_match(5555), outs=[out(2)], hard_timeout=1, cookie=0x45,
                   flags=ofp.OFPFF_SEND_FLOW_REM)
        f4 = bytes(udp(4444))
        assert mgr.inject([f4] * 3) == 3 and mgr.capture(1, count=3, timeout=5, raw=True) == [f4] * 3
        got = {}
        for _ in range(2):
            rem = c.expect(ofp.OFPT_FLOW_REMOVED, timeout=15)
            got[rem.cookie] = (rem.reason, rem.packet_count)
        assert got == {0x44: (ofp.OFPRR_IDLE_TIMEOUT, 3), 0x45: (ofp.OFPRR_HARD_TIMEOUT, 0)}

        # a controller offering only 1.0: refused, HELLO_FAILED
        c.s.close()
        c.accept()
        c.expect(ofp.OFPT_HELLO)
        c.send(hello(1, {1}))
        e = c.expect(ofp.OFPT_ERROR)
        assert (e.type, e.code) == (ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE)
    finally:
        c.close()


def test_what_the_sdn_nf_may_ask_of_the_flow_director_gives_an_nf_no_more_power(mgr):
    """The two requests the SDN NF's cache added to nf.sock: in_ports only
    narrows a rule to ports the NF already covers, and flow_counters reads
    only the NF's own rules (not the operator's: None)."""
    from onvm.common.abi import lib
    from onvm.flows import Match
    from test_flows import door_asker, replies_of
    op_rule = mgr.flows.add(Match(src="198.51.100.9", dst="203.0.113.9", proto="udp", sport=9, dport=9),
                            [onvm.Port(1)])
    m = Match(src="198.51.100.1", dst="203.0.113.9", proto="udp", sport=4242, dport=53).wire()
    add = {"op": "flow_add", "match": m, "chain": [[lib.ONVM_TO_PORT, 0]], "priority": 0}
    mgr.set_default_chain([2, onvm.ToPort(1)])          # its NF is on both ports' paths
    nf = mgr.launch(door_asker([dict(add, in_ports=1 << 7), dict(add, in_ports=1 << 0),
                                {"op": "flow_counters", "ids": [op_rule.id]}]), service=2)
    wide, narrow, counters = replies_of(nf)
    assert not wide["ok"] and "receives nothing" in wide["error"]
    assert narrow["ok"], narrow
    assert counters == {"ok": True, "counters": [None]}
    f = bytes(udp(4242))
    assert mgr.inject(f, port=0) == 1 and mgr.capture(0, count=1, timeout=5, raw=True) == [f]   # its rule
    assert mgr.inject(f, port=1) == 1 and mgr.capture(1, count=1, timeout=5, raw=True) == [f]   # not from port 1
    assert mgr.capture(0, timeout=0.2, raw=True) == []
