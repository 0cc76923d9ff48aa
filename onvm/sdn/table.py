"""The SDN NF's OpenFlow flow table (table 0), in the NF process.

Entries match any of the fields in FIELDS (with masks where OpenFlow allows
them); a lookup takes the highest priority, then the oldest entry.  What an
entry does is its output actions (see Actions).  Which packets skip the NF
afterwards is the switch's business (switch.py caches decisions in the
flow director); this module only decides."""
import ipaddress
import itertools
import struct

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

SERVICE_BASE = 0x1000           # OpenFlow port of service s: SERVICE_BASE + s
DEFAULT_PATH = SERVICE_BASE     # the logical port "default": the ingress port's default path

# OXM fields a match may use -> their width in bits
FIELDS = {"in_port": 32, "eth_dst": 48, "eth_src": 48, "eth_type": 16, "ip_dscp": 6, "ip_ecn": 2, "ip_proto": 8,
          "ipv4_src": 32, "ipv4_dst": 32, "tcp_src": 16, "tcp_dst": 16, "udp_src": 16, "udp_dst": 16,
          "sctp_src": 16, "sctp_dst": 16, "icmpv4_type": 8, "icmpv4_code": 8, "arp_op": 16, "arp_spa": 32,
          "arp_tpa": 32, "arp_sha": 48, "arp_tha": 48}
L4 = {6: "tcp", 17: "udp", 132: "sctp"}


class OFError(ValueError):
    """A message refused with an OpenFlow error (type, code)."""

    def __init__(self, type_, code, why):
        super().__init__(why)
        self.type, self.code = type_, code


def _int(v):
    if isinstance(v, int):
        return v
    if ":" in v:
        return int(v.replace(":", ""), 16)
    return int(ipaddress.IPv4Address(v))


def normalize(match):
    """An OFPMatch -> {field: (value & mask, mask)}; OFError for a field the
    table cannot match on."""
    out = {}
    for name, v in match.items():
        if name not in FIELDS:
            raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD,
                          "cannot match on %s (fields: %s)" % (name, ", ".join(FIELDS)))
        full = (1 << FIELDS[name]) - 1
        value, mask = (_int(v[0]), _int(v[1])) if isinstance(v, tuple) else (_int(v), full)
        out[name] = (value & mask, mask)
    return out


def packet_fields(raw, in_port):
    """The OXM fields of a frame (Ethernet; IPv4 with TCP/UDP/SCTP/ICMP; ARP)
    that entered OpenFlow port in_port."""
    f = {"in_port": in_port}
    if len(raw) < 14:
        return f
    f["eth_dst"] = int.from_bytes(raw[0:6], "big")
    f["eth_src"] = int.from_bytes(raw[6:12], "big")
    etype, off = struct.unpack_from("!H", raw, 12)[0], 14
    while etype in (0x8100, 0x88a8) and len(raw) >= off + 4:      # the frame's protocol under its tags
        etype, off = struct.unpack_from("!H", raw, off + 2)[0], off + 4
    f["eth_type"] = etype
    if etype == 0x0800 and len(raw) >= off + 20:
        ihl, tos, proto = (raw[off] & 0xf) * 4, raw[off + 1], raw[off + 9]
        f.update(ip_dscp=tos >> 2, ip_ecn=tos & 3, ip_proto=proto,
                 ipv4_src=int.from_bytes(raw[off + 12:off + 16], "big"),
                 ipv4_dst=int.from_bytes(raw[off + 16:off + 20], "big"))
        l4 = off + ihl
        if struct.unpack_from("!H", raw, off + 6)[0] & 0x1fff == 0 and len(raw) >= l4 + 4:
            if proto in L4:
                f[L4[proto] + "_src"], f[L4[proto] + "_dst"] = struct.unpack_from("!HH", raw, l4)
            elif proto == 1:
                f["icmpv4_type"], f["icmpv4_code"] = raw[l4], raw[l4 + 1]
    elif etype == 0x0806 and len(raw) >= off + 28:
        f.update(arp_op=struct.unpack_from("!H", raw, off + 6)[0],
                 arp_sha=int.from_bytes(raw[off + 8:off + 14], "big"),
                 arp_spa=int.from_bytes(raw[off + 14:off + 18], "big"),
                 arp_tha=int.from_bytes(raw[off + 18:off + 24], "big"),
                 arp_tpa=int.from_bytes(raw[off + 24:off + 28], "big"))
    return f


def outputs(instructions, nb_ports, packet_out=False):
    """A flow-mod's instructions (or a packet-out's actions, packet_out=True)
    -> [(OpenFlow port, max_len)]; OFError for what the switch cannot do.

    Outputs to services (SERVICE_BASE + s) are the hops of a chain, in
    order, before at most one manager port; outputs to manager ports, FLOOD,
    ALL and IN_PORT after no service are copies; CONTROLLER may go with
    either.  TABLE only in a packet-out; LOCAL, NORMAL and ANY nowhere."""
    actions = []
    if packet_out:
        actions = list(instructions)
    else:
        for ins in instructions:
            if isinstance(ins, parser.OFPInstructionActions):
                if ins.type != ofp.OFPIT_CLEAR_ACTIONS:        # nothing is ever written to clear
                    actions += ins.actions
            elif isinstance(ins, parser.OFPInstructionGotoTable):
                raise OFError(ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_TABLE_ID, "this switch has one table")
            elif isinstance(ins, parser.OFPInstructionMeter):
                raise OFError(ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST, "this switch has no meters")
            else:
                raise OFError(ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST,
                              "only apply-actions and write-actions instructions are supported")
    outs = []
    for a in actions:
        if isinstance(a, parser.OFPActionGroup):
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP, "this switch has no groups")
        if isinstance(a, parser.OFPActionSetField):
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE,
                          "set-field is not supported: the data plane does not rewrite headers")
        if not isinstance(a, parser.OFPActionOutput):
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE,
                          "action type %d is not supported (only output)" % a.type)
        p = a.port
        ok = 1 <= p <= nb_ports or SERVICE_BASE <= p < SERVICE_BASE + 256 or \
            p in (ofp.OFPP_FLOOD, ofp.OFPP_ALL, ofp.OFPP_IN_PORT, ofp.OFPP_CONTROLLER) or \
            (packet_out and p == ofp.OFPP_TABLE)
        if not ok:
            what = {ofp.OFPP_LOCAL: "LOCAL (this switch has no local port)",
                    ofp.OFPP_NORMAL: "NORMAL (there is no non-OpenFlow pipeline)",
                    ofp.OFPP_TABLE: "TABLE (only in a packet-out)", ofp.OFPP_ANY: "ANY"}.get(p, str(p))
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT,
                          "OpenFlow port %s is not an output here: manager ports are 1..%d, services %d + ID, "
                          "the default path %d, and FLOOD, ALL, IN_PORT, CONTROLLER%s"
                          % (what, nb_ports, SERVICE_BASE, DEFAULT_PATH, ", TABLE" if packet_out else ""))
        outs.append((p, a.max_len))
    hops = [p for p, _ in outs if p != ofp.OFPP_CONTROLLER]
    services = [p for p in hops if p > SERVICE_BASE and p < SERVICE_BASE + 256]
    if services:
        if hops[:len(services)] != services:
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_UNSUPPORTED_ORDER,
                          "outputs to services are the hops of a chain: they come before its one manager port")
        rest = hops[len(services):]
        if len(rest) > 1 or (rest and not 1 <= rest[0] <= nb_ports and rest[0] != ofp.OFPP_IN_PORT):
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_TOO_MANY,
                          "a chain of services ends at one manager port (or IN_PORT): no copies after services")
    return outs


class Decision:
    """What to do with one packet: services (a chain's hops, in order),
    ports (manager port indexes: copies, or the chain's end), controller
    (the max_len of an output to the controller, else None), default (the
    ingress port's default path)."""
    __slots__ = ("services", "ports", "controller", "default")

    def __init__(self, outs, in_port, nb_ports):
        self.services, self.ports, self.controller, self.default = [], [], None, False
        for p, max_len in outs:
            if p == ofp.OFPP_CONTROLLER:
                self.controller = max_len
            elif p == DEFAULT_PATH:
                self.default = True
            elif SERVICE_BASE < p < SERVICE_BASE + 256:
                self.services.append(p - SERVICE_BASE)
            elif p in (ofp.OFPP_FLOOD, ofp.OFPP_ALL):
                self.ports += [q for q in range(nb_ports) if q != in_port]
            elif p == ofp.OFPP_IN_PORT:
                if 0 <= in_port < nb_ports:
                    self.ports.append(in_port)
            elif 1 <= p <= nb_ports:
                self.ports.append(p - 1)

    def key(self):
        return (tuple(self.services), tuple(self.ports), self.controller, self.default)


class Entry:
    """One flow entry and its counters (packets the NF handled; what its
    flow-director rules counted is added by the switch)."""
    __slots__ = ("priority", "match", "fields", "cookie", "flags", "idle", "hard", "t0", "last", "instructions",
                 "outs", "packets", "bytes", "seq", "cache")

    def __init__(self, fm, outs, now, seq):
        self.priority, self.match, self.fields = fm.priority, fm.match, normalize(fm.match)
        self.cookie, self.flags, self.idle, self.hard = fm.cookie, fm.flags, fm.idle_timeout, fm.hard_timeout
        self.instructions, self.outs = fm.instructions, outs
        self.t0 = self.last = now
        self.packets = self.bytes = 0
        self.seq = seq
        self.cache = set()          # keys of the flow-director rules made from it (switch.py)

    def matches(self, pf):
        for name, (v, m) in self.fields.items():
            x = pf.get(name)
            if x is None or x & m != v:
                return False
        return True

    @property
    def table_miss(self):
        return self.priority == 0 and not self.fields

    def outputs_to(self, port):
        return port == ofp.OFPP_ANY or any(p == port for p, _ in self.outs)


def covers(req, fields):
    """Does the request's match (normalized) select an entry's match: every
    field it gives is in the entry, at least as narrow, with the same value?"""
    for name, (v, m) in req.items():
        got = fields.get(name)
        if got is None or got[1] & m != m or got[0] & m != v:
            return False
    return True


def overlap(a, b):
    """Could one packet match both normalized matches?"""
    return all((a[n][0] ^ b[n][0]) & a[n][1] & b[n][1] == 0 for n in set(a) & set(b))


class Table:
    """Table 0: entries by priority (then age); lookup and flow-mod commands."""

    def __init__(self):
        self.entries = []
        self.seq = itertools.count()
        self.lookups = self.matched = 0

    def lookup(self, pf, count=True):
        self.lookups += count
        for e in self.entries:
            if e.matches(pf):
                self.matched += count
                return e
        return None

    def find(self, req, strict=False, priority=None, out_port=ofp.OFPP_ANY, cookie=0, cookie_mask=0):
        """Entries a modify/delete/stats request selects."""
        out = []
        for e in self.entries:
            if cookie_mask and (e.cookie ^ cookie) & cookie_mask:
                continue
            if not e.outputs_to(out_port):
                continue
            if strict:
                if e.fields == req and e.priority == priority:
                    out.append(e)
            elif covers(req, e.fields):
                out.append(e)
        return out

    def add(self, fm, outs, now):
        """An ADD: replaces the entry of the same match and priority
        (returned, for the switch to retire without a flow-removed)."""
        e = Entry(fm, outs, now, next(self.seq))
        if fm.flags & ofp.OFPFF_CHECK_OVERLAP:
            for o in self.entries:
                if o.priority == e.priority and o.fields != e.fields and overlap(o.fields, e.fields):
                    raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_OVERLAP,
                                  "overlaps an entry of the same priority")
        old = [o for o in self.entries if o.priority == e.priority and o.fields == e.fields]
        for o in old:
            self.entries.remove(o)
            if not fm.flags & ofp.OFPFF_RESET_COUNTS:
                e.packets, e.bytes = o.packets, o.bytes
        self.entries.append(e)
        self.entries.sort(key=lambda x: (-x.priority, x.seq))
        return e, old

    def remove(self, e):
        if e in self.entries:
            self.entries.remove(e)
