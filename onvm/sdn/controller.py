"""The controller shipped with onvm: an os-ken application that gives each
new flow the chain its policy chooses.

    python -m onvm.sdn.controller --policy policy.json [--port 6653]

It listens on 127.0.0.1 only.  On a packet-in it reads the flow's IPv4
5-tuple, picks the policy's chain, installs an exact flow (idle timeout from
the policy, flow-removed asked for) whose outputs are the chain's hops,
then sends the buffered packet back through the table (packet-out to
OFPP_TABLE).  It installs the table-miss entry (to the controller, buffered)
when the switch connects.  Node names and "svc:N" are resolved through the switch's
port descriptions (the SDN NF names each service's logical port).  A flow
the policy has no chain for is sent back through the table unchanged: the
table-miss entry would send it here again, so the SDN NF gives it the
ingress port's default path instead."""
import sys

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib.packet import ipv4, packet, sctp, tcp, udp
from os_ken.ofproto import ofproto_v1_3

from ..common.hop import Hop
from .policy import Policy

POLICY = None        # set by main() before os-ken makes the app
PORTED = {6: ("tcp", tcp.tcp), 17: ("udp", udp.udp), 132: ("sctp", sctp.sctp)}


def log(msg):
    print("onvm.sdn.controller: %s" % msg, flush=True)


class PolicyController(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy = POLICY
        self.counts = {"packet_in": 0, "flows": 0, "unresolved": 0, "removed": 0}

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_features(self, ev):
        """The table-miss entry: what no flow matches comes here, the
        switch holding it (a buffer) and sending its first 128 bytes."""
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        out = [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, 128)]
        dp.send_msg(parser.OFPFlowMod(dp, priority=0, match=parser.OFPMatch(),
                                      instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, out)]))
        log("switch %#x connected" % ev.msg.datapath_id)

    def port_of(self, dp, hop):
        """A policy hop -> the switch's OpenFlow port, by the names it told us."""
        for no, p in dp.ports.items():
            if p.name.decode(errors="replace") == hop:
                return no
        h = Hop.parse(hop)          # the policy holds canonical hop text (onvm.sdn.policy)
        if h.is_port:
            return h.dest + 1
        if h.is_service:
            return 0x1000 + h.dest
        return None

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def on_packet_in(self, ev):
        msg, dp = ev.msg, ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        self.counts["packet_in"] += 1
        to_table = [parser.OFPActionOutput(ofp.OFPP_TABLE)]
        pkt = packet.Packet(bytes(msg.data))
        ip = pkt.get_protocol(ipv4.ipv4)
        if ip is None:
            dp.send_msg(parser.OFPPacketOut(dp, msg.buffer_id, msg.match["in_port"], to_table, None))
            return
        fields = dict(eth_type=0x0800, ipv4_src=ip.src, ipv4_dst=ip.dst, ip_proto=ip.proto)
        sport = dport = 0
        if ip.proto in PORTED and not ip.offset:
            name, cls = PORTED[ip.proto]
            l4 = pkt.get_protocol(cls)
            if l4 is not None:
                sport, dport = l4.src_port, l4.dst_port
                fields.update({name + "_src": sport, name + "_dst": dport})
        choice = self.policy.choose(ip.src, ip.dst, ip.proto, sport, dport)
        if choice is not None:
            chain, idle, hard, prio = choice
            ports = [self.port_of(dp, hop) for hop in chain]
            if None in ports:
                self.counts["unresolved"] += 1
                log("chain %s: the switch has no port %r; the flow takes its default path"
                    % (chain, chain[ports.index(None)]))
            else:
                actions = [parser.OFPActionOutput(p) for p in ports]
                inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
                # one above the policy's: priority 0 is the table-miss entry's
                dp.send_msg(parser.OFPFlowMod(dp, priority=prio + 1, match=parser.OFPMatch(**fields), instructions=inst,
                                              idle_timeout=idle, hard_timeout=hard, flags=ofp.OFPFF_SEND_FLOW_REM))
                self.counts["flows"] += 1
        # the buffered packet (and those parked with it) through the table: the new flow takes them
        dp.send_msg(parser.OFPPacketOut(dp, msg.buffer_id, msg.match["in_port"], to_table, None))

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def on_flow_removed(self, ev):
        self.counts["removed"] += 1
        m = ev.msg
        log("flow removed (reason %d): %s, %d packets" % (m.reason, dict(m.match.items()), m.packet_count))


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m onvm.sdn.controller",
                                 description="an OpenFlow 1.3 controller on 127.0.0.1 choosing a chain per flow")
    ap.add_argument("--policy", required=True, help="a JSON policy (see onvm.sdn.policy)")
    ap.add_argument("--port", type=int, default=6653, help="TCP port on 127.0.0.1 (default 6653)")
    a = ap.parse_args(argv)
    global POLICY
    try:
        POLICY = Policy.load(a.policy)
        if not 1 <= a.port <= 65535:
            raise ValueError("--port is 1..65535, got %d" % a.port)
    except ValueError as e:
        print("onvm.sdn.controller: %s" % e, file=sys.stderr)
        return 2
    from os_ken import cfg
    # Only loopback: no option binds anything else.
    cfg.CONF(args=["--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(a.port)], project="os_ken",
             default_config_files=[])
    log("policy %s: %d rules; listening on 127.0.0.1:%d" % (a.policy, len(POLICY.rules), a.port))
    app_manager.AppManager.run_apps([__name__])
    return 0


if __name__ == "__main__":
    sys.exit(main())
