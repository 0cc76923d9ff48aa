"""A flow rule's match (onvm.Match): which IPv4 packets a rule covers, and
its wire and C forms.  Pure logic shared by the notebook side (onvm.flows),
NFs (onvm.flows.add, the SDN NF) and the manager's flow director."""
import ipaddress
import struct

PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132}
PROTO_NAMES = {v: k for k, v in PROTOS.items()}
PORTED = (6, 17, 132)
NF_QUOTA = 1024           # rules one NF may hold at a time
NF_MAX_PRIORITY = 0       # the highest priority of an NF's rule, unless the operator sets another
LIST_PAGE = 4096          # rules in one flow_list reply (replies stay below 4 MiB)
BULK = 2048               # rules in one flow_add_many request (requests stay below 2 MiB)
NF_EVENTS = 4096          # removal notices kept for an NF that has not asked yet
EXPIRY_EVERY = 0.1        # seconds between the manager's timeout checks
EXPIRY_BATCH = 4096       # timed rules one check looks at: a 64k-rule table must not eat the control loop
MAX_TIMEOUT_MS = 86400 * 1000


def _prefix(v, field):
    """'198.51.100.0/24' or '198.51.100.7' -> (int address, length)."""
    if isinstance(v, ipaddress.IPv4Network):
        return int(v.network_address), v.prefixlen
    if isinstance(v, ipaddress.IPv4Address):
        return int(v), 32
    if not isinstance(v, str):
        raise ValueError("Match %s: an IPv4 address or prefix as a string, got %r" % (field, v))
    try:
        net = ipaddress.IPv4Network(v, strict=False)
    except ValueError as e:
        raise ValueError("Match %s=%r: %s" % (field, v, e)) from None
    return int(net.network_address), net.prefixlen


def _ports(v, field):
    """5353, (1024, 65535) or range(1024, 2048) -> (lo, hi)."""
    if isinstance(v, range):
        if v.step != 1 or not len(v):
            raise ValueError("Match %s: a range of ports with step 1, got %r" % (field, v))
        v = (v.start, v.stop - 1)
    lo, hi = v if isinstance(v, (tuple, list)) and len(v) == 2 else (v, v)
    for p in (lo, hi):
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
            raise ValueError("Match %s=%r: a port is an int in 0..65535" % (field, v))
    if lo > hi:
        raise ValueError("Match %s=%r: a range runs low..high" % (field, v))
    return lo, hi


class Match:
    """What a rule matches: any field left out matches anything.

    param src, dst: an IPv4 address or prefix ("198.51.100.0/24")
    param proto: "tcp", "udp", "icmp", "sctp" or an IP protocol number
    param sport, dport: a port, a (low, high) range or a range()

    >>> Match(src="198.51.100.7", dst="203.0.113.5", proto="udp", sport=5353, dport=53).exact
    True
    >>> Match(src="198.51.100.0/24", proto="tcp", dport=80)
    Match(src='198.51.100.0/24', proto='tcp', dport=80)"""
    __slots__ = ("src", "dst", "proto", "sport", "dport")

    def __init__(self, src=None, dst=None, proto=None, sport=None, dport=None):
        self.src = None if src is None else _prefix(src, "src")
        self.dst = None if dst is None else _prefix(dst, "dst")
        if isinstance(proto, str):
            if proto.lower() not in PROTOS:
                raise ValueError("Match proto=%r: one of %s, or a protocol number" % (proto, ", ".join(PROTOS)))
            proto = PROTOS[proto.lower()]
        elif proto is not None and (isinstance(proto, bool) or not isinstance(proto, int) or not 0 <= proto <= 255):
            raise ValueError("Match proto=%r: a protocol number is 0..255" % (proto,))
        self.proto = proto
        self.sport = None if sport is None else _ports(sport, "sport")
        self.dport = None if dport is None else _ports(dport, "dport")
        if (self.sport or self.dport) and proto is not None and proto not in PORTED:
            raise ValueError("Match: proto %s has no ports; ports need tcp, udp or sctp" % PROTO_NAMES.get(proto, proto))

    @classmethod
    def of(cls, pkt):
        """The exact 5-tuple of a packet: an NF's onvm.Packet, a scapy packet
        or the frame's bytes (Ethernet, optionally VLAN-tagged, IPv4)."""
        from .packet import frame
        raw = frame(pkt)
        off, etype = 14, struct.unpack_from("!H", raw, 12)[0] if len(raw) >= 14 else 0
        while etype in (0x8100, 0x88a8, 0x9100) and len(raw) >= off + 4:
            etype = struct.unpack_from("!H", raw, off + 2)[0]
            off += 4
        if etype != 0x0800 or len(raw) < off + 20:
            raise ValueError("Match.of: not an IPv4 packet; rules match IPv4")
        ihl = (raw[off] & 0xf) * 4
        proto = raw[off + 9]
        src, dst = (str(ipaddress.IPv4Address(raw[off + a:off + a + 4])) for a in (12, 16))
        frag = struct.unpack_from("!H", raw, off + 6)[0] & 0x3fff
        if proto in PORTED and frag == 0 and ihl >= 20 and len(raw) >= off + ihl + 4:
            sport, dport = struct.unpack_from("!HH", raw, off + ihl)
            return cls(src, dst, proto, sport, dport)
        return cls(src, dst, proto)

    @property
    def exact(self):
        full = self.src is not None and self.dst is not None and self.src[1] == 32 and self.dst[1] == 32
        if not full or self.proto is None:
            return False
        if self.proto in PORTED:
            return self.sport is not None and self.dport is not None and \
                self.sport[0] == self.sport[1] and self.dport[0] == self.dport[1]
        return True

    def wire(self):
        """The match as the manager's op takes it."""
        return {"src": list(self.src or (0, 0)), "dst": list(self.dst or (0, 0)),
                "proto": -1 if self.proto is None else self.proto,
                "sport": list(self.sport or (0, 65535)), "dport": list(self.dport or (0, 65535))}

    @classmethod
    def from_wire(cls, w):
        m = cls.__new__(cls)
        m.src = tuple(w["src"]) if w["src"][1] else None
        m.dst = tuple(w["dst"]) if w["dst"][1] else None
        m.proto = None if w["proto"] < 0 else w["proto"]
        m.sport = None if tuple(w["sport"]) == (0, 65535) else tuple(w["sport"])
        m.dport = None if tuple(w["dport"]) == (0, 65535) else tuple(w["dport"])
        return m

    def __eq__(self, other):
        return isinstance(other, Match) and self.wire() == other.wire()

    def __hash__(self):
        return hash(repr(self))

    def __repr__(self):
        parts = []
        for k in ("src", "dst"):
            v = getattr(self, k)
            if v:
                a = str(ipaddress.IPv4Address(v[0]))
                parts.append("%s=%r" % (k, a if v[1] == 32 else "%s/%d" % (a, v[1])))
        if self.proto is not None:
            parts.append("proto=%r" % PROTO_NAMES.get(self.proto, self.proto))
        for k in ("sport", "dport"):
            v = getattr(self, k)
            if v:
                parts.append("%s=%s" % (k, v[0] if v[0] == v[1] else "(%d, %d)" % v))
        return "Match(%s)" % ", ".join(parts)
