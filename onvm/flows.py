"""The flow director: rules that send a flow through its own chain.

    rule = mgr.flows.add(onvm.Match(src="198.51.100.0/24", proto="tcp", dport=80),
                         ["fw", "ids", onvm.Port(1)], idle_timeout=30, priority=10)
    mgr.flows.list()          # rules with packet and byte counters, age, timeouts
    mgr.flows.remove(rule)

Inside an NF, `onvm.flows.add(onvm.Match.of(pkt), [...])` asks the manager
for a rule for the packet in hand.  An NF's rule stands for its own verdict
on the flow, and may do no more than its verdicts could (docs/design.md,
"Rules from NFs"): the manager installs the operator's hops up to the NF,
then the NF's chain, whose first hop must be one the NF may steer to; it
covers only packets entering ports whose path passes the NF (or every port
for the miss handler, a role only the operator grants); its priority is at
most the operator's ceiling (Manager(nf_max_priority=...), 0 by default);
and it never wins over an operator's rule that matches the same packets.

A Match with every field given in full (src and dst without a prefix,
proto, and for TCP/UDP/SCTP both ports) is an exact rule, kept in DPDK's
cuckoo hash and looked up with the flow hash the RX thread computed once;
anything else is a wildcard rule, classified by rte_acl.  Exact rules are
tried first; among wildcard rules the highest priority wins, and between
equal priorities the older rule.  Rules match IPv4 packets.  A rule's chain
is a list of a deployed graph's node names, service IDs (or
onvm.ToService) and ends at a port (onvm.Port(n) or onvm.ToPort(n)); each
hop must be allowed by the graph's edges.  Timeouts are checked by the
manager every 100 ms, at most 4096 rules with a timeout per check (a
bigger table is checked in turns, so its expiry is coarser): idle (no
packet for that long) and hard (that long after it was added)."""
import ipaddress
import struct
import time

from .common import limits
from .common.hop import Hop, wire_chain
from .control import Bool, Int, ListOf, Optional, Tuple, validate
from .errors import OnvmError

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


# ---- chains --------------------------------------------------------------------------

def resolve_chain(chain, names, nb_ports):
    """A rule's chain -> [[action, dest], ...]: hops in any spelling
    (onvm.Hop.parse), ending at a port.  names: {node name: service ID} of
    the deployed graph.  raises ValueError naming the entry."""
    out = wire_chain(chain, names, nb_ports, what="a rule's chain")
    if not out or out[-1][0] != limits.ONVM_TO_PORT:
        raise ValueError("a rule's chain ends at a port, e.g. [..., onvm.Port(1)]; got [%s]"
                         % ", ".join(str(Hop.from_wire(h)) for h in out))
    return out


def _timeout_ms(v, what):
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_TIMEOUT_MS / 1000:
        raise ValueError("%s is seconds in 0..%d (0: none), got %r" % (what, MAX_TIMEOUT_MS // 1000, v))
    return int(round(v * 1000))


def request(match, chain, names, nb_ports, priority=0, idle_timeout=0, hard_timeout=0):
    """The flow_add request for a rule, checked on the client's side."""
    if not isinstance(match, Match):
        raise ValueError("a rule needs an onvm.Match, got %r" % (match,))
    if isinstance(priority, bool) or not isinstance(priority, int) or \
            not 0 <= priority <= limits.ONVM_FLOW_MAX_PRIORITY:
        raise ValueError("priority is an int in 0..%d, got %r" % (limits.ONVM_FLOW_MAX_PRIORITY, priority))
    return {"op": "flow_add", "match": match.wire(), "chain": resolve_chain(chain, names, nb_ports),
            "priority": priority, "idle_timeout": _timeout_ms(idle_timeout, "idle_timeout"),
            "hard_timeout": _timeout_ms(hard_timeout, "hard_timeout")}


# ---- what a user holds ---------------------------------------------------------------

class Rule:
    """A rule as mgr.flows.list() shows it: id, match, chain, priority,
    timeouts, packets, bytes, age (seconds), installer ("notebook" or the NF)."""
    __slots__ = ("id", "match", "chain", "priority", "idle_timeout", "hard_timeout", "packets", "bytes",
                 "age", "installer", "exact")

    def __init__(self, d):
        self.id = d["id"]
        self.match = Match.from_wire(d["match"])
        self.chain = [str(Hop.from_wire(h)) for h in d["chain"]]
        self.priority = d["priority"]
        self.idle_timeout = d["idle_timeout"] / 1000
        self.hard_timeout = d["hard_timeout"] / 1000
        self.packets, self.bytes, self.age = d.get("packets", 0), d.get("bytes", 0), d.get("age", 0.0)
        self.installer = d.get("installer", "notebook")
        self.exact = d.get("exact", self.match.exact)

    def __int__(self):
        return self.id

    def __repr__(self):
        return "<Rule %d %r -> %s prio=%d packets=%d>" % (self.id, self.match, " ".join(self.chain),
                                                          self.priority, self.packets)


class RuleList(list):
    """mgr.flows.list(): a list of Rule that renders as a table."""
    COLS = ("id", "match", "chain", "priority", "packets", "bytes", "age", "idle_timeout", "hard_timeout",
            "installer")

    def _rows(self):
        for r in self:
            yield [str(r.id), repr(r.match)[6:-1] or "*", " -> ".join(r.chain), str(r.priority), str(r.packets),
                   str(r.bytes), "%.1f" % r.age, "%g" % r.idle_timeout if r.idle_timeout else "-",
                   "%g" % r.hard_timeout if r.hard_timeout else "-", r.installer]

    def __str__(self):
        rows = [list(self.COLS)] + list(self._rows())
        w = [max(len(row[i]) for row in rows) for i in range(len(self.COLS))]
        return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(row)).rstrip() for row in rows)

    def _repr_html_(self):
        import html
        head = "".join("<th>%s</th>" % c for c in self.COLS)
        body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(c) for c in row) for row in self._rows())
        return "<table><tr>%s</tr>%s</table>" % (head, body)


class FlowTable:
    """mgr.flows: the manager's flow table, from the notebook."""

    def __init__(self, mgr):
        self.mgr = mgr

    def _names(self):
        return {n: s for s, n in self.mgr.control.service_names().items()}

    def add(self, match, chain, priority=0, idle_timeout=0, hard_timeout=0):
        """Add a rule: packets matching `match` follow `chain` from the port
        they came in on.  returns: the Rule; raises ValueError (nothing
        changes) for a bad match or chain."""
        req = request(match, chain, self._names(), len(self.mgr.port_specs), priority, idle_timeout, hard_timeout)
        return Rule(self.mgr._request(req)["rule"])

    def add_many(self, matches, chain, priority=0, idle_timeout=0, hard_timeout=0):
        """Add one rule per match, all with the same chain and settings, in
        bulk (thousands per second instead of one request each).  returns:
        their IDs; raises ValueError, and adds none of a request, if one is
        bad."""
        names, nb = self._names(), len(self.mgr.port_specs)
        reqs = [request(m, chain, names, nb, priority, idle_timeout, hard_timeout) for m in matches]
        ids = []
        for i in range(0, len(reqs), BULK):
            rules = [{k: v for k, v in r.items() if k != "op"} for r in reqs[i:i + BULK]]
            ids += self.mgr._request({"op": "flow_add_many", "rules": rules})["ids"]
        return ids

    def remove(self, rule):
        """Remove a rule (a Rule or its ID).  returns: its last counters {packets, bytes}."""
        rid = rule.id if isinstance(rule, Rule) else rule
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise ValueError("remove() takes a Rule or its ID, got %r" % (rule,))
        return self.mgr._request({"op": "flow_remove", "id": rid})["counters"]

    def list(self):
        """Every rule with its counters, as a RuleList (a table in a notebook)."""
        out, after = RuleList(), -1
        while True:                       # a page at a time: 64k rules do not fit one reply
            reply = self.mgr._request({"op": "flow_list", "after": after})
            out += [Rule(d) for d in reply["rules"]]
            if not reply["more"]:
                return out
            after = out[-1].id

    def stats(self):
        """{rules, exact, wildcard, added, removed, expired, refused: {reason: n}}"""
        return self.mgr._request({"op": "flow_list", "max": 0})["stats"]

    def set_miss_handler(self, service):
        """Send flow-table misses to `service` (a node name or service ID; None:
        the port's default path, as without a handler).  When that NF says
        NEXT the flow table is asked again, so a rule it added meanwhile
        (e.g. from an SDN controller) takes the packet on; else the packet
        follows its port's default path."""
        if service is None:
            sid = 0
        elif isinstance(service, str):
            sid = self._names().get(service)
            if sid is None:
                raise ValueError("unknown node %r" % service)
        else:
            from .packet import ToService
            sid = ToService(service).dest
        self.mgr._request({"op": "flow_config", "miss_service": sid})

    def clear(self):
        """Remove every rule.  returns: how many."""
        rules = self.list()
        for r in rules:
            self.remove(r)
        return len(rules)

    def __len__(self):
        return len(self.list())

    def __iter__(self):
        return iter(self.list())


def add(match, chain, priority=0, idle_timeout=0, hard_timeout=0):
    """Inside an NF: ask the manager for a rule (for the packet in hand:
    Match.of(pkt)).  returns: the rule's ID; raises OnvmError if the manager
    refuses (over quota, a bad chain), ValueError for a bad argument."""
    from . import context, nfdoor
    if context.door is None:
        raise ValueError("onvm.flows.add() works inside an NF; from a notebook use mgr.flows.add()")
    cf = context.control_file()       # sent over nf.sock: a container NF has no path to it
    names = {n: s for s, n in cf.service_names().items()}
    req = request(match, chain, names, cf.shm.nb_ports, priority, idle_timeout, hard_timeout)
    return nfdoor.call(context.door, req)["rule"]["id"]


# ---- the manager's side --------------------------------------------------------------

def overlap(a, b):
    """Could one packet match both wire matches a and b?"""
    for f in ("src", "dst"):
        (x, lx), (y, ly) = a[f], b[f]
        n = min(lx, ly)
        if n and (x ^ y) >> (32 - n):
            return False
    if a["proto"] >= 0 and b["proto"] >= 0 and a["proto"] != b["proto"]:
        return False
    return all(a[f][0] <= b[f][1] and b[f][0] <= a[f][1] for f in ("sport", "dport"))


def _hops(c):
    return [(c.entries[i].action, c.entries[i].destination) for i in range(c.length)]


def _wire_match(v, field):
    port_range = Tuple(Int(0, 65535), Int(0, 65535))
    schema = {"src": Tuple(Int(0, 2 ** 32 - 1), Int(0, 32)), "dst": Tuple(Int(0, 2 ** 32 - 1), Int(0, 32)),
              "proto": Int(-1, 255), "sport": port_range, "dport": port_range}
    if not isinstance(v, dict) or set(v) != set(schema):
        raise ValueError("%s must be an object with %s" % (field, ", ".join(sorted(schema))))
    return {k: f(v[k], "%s.%s" % (field, k)) for k, f in schema.items()}


class FlowDirector:
    """The flow table's control side, in the manager process: the ops of
    onvm.sock (the notebook) and nf.sock (NFs, with a quota), and expiry."""

    def __init__(self, check, nb_ports, shm=None, nf_max_priority=NF_MAX_PRIORITY):
        from ._core import ffi, lib  # the manager process's: Match and the client side import without it
        self.ffi, self.lib = ffi, lib
        self.check = check
        self.nb_ports = nb_ports
        self.nf_max_priority = nf_max_priority
        # the control file (the miss service, an NF's service), through a getter: a
        # reference held here would keep the manager from unmapping it at shutdown
        self.shm = shm
        self.rules = {}           # id -> the rule's wire form, plus "t0", "last", "seen", "serial"
        self.counts = {"added": 0, "removed": 0, "expired": 0, "refused": {}}
        self.serial = 0           # rule IDs are reused; serials are not
        self.events = {}          # NF slot -> removals of its rules it has not fetched yet
        self.next_expiry = 0.0
        # kept as rules come and go, so that no request and no tick walks the whole table
        self.timed = {}           # ids of rules with a timeout, in the order added
        self.scan = []            # the ids the current expiry pass has still to check
        self.held = {}            # NF slot -> rules it holds (its quota)
        self.nf_rules = set()     # ids of rules NFs hold, and of the operator's wildcard rules:
        self.op_wild = set()      # checked against each other so that the operator's always win
        self.nb_exact = 0
        self.probe = self.ffi.new("struct onvm_flow_counters *")
        entry = Tuple(Int(limits.ONVM_TO_SERVICE, limits.ONVM_TO_PORT), Int(0, 0xffff))
        self.schema = {"match": _wire_match, "chain": ListOf(entry, limits.ONVM_MAX_CHAIN, 1),
                       "priority": Int(0, limits.ONVM_FLOW_MAX_PRIORITY),
                       "idle_timeout": Optional(Int(0, MAX_TIMEOUT_MS), 0),
                       "hard_timeout": Optional(Int(0, MAX_TIMEOUT_MS), 0)}

    def ops(self):
        """The notebook's flow ops."""
        return {"flow_add": (self.schema, lambda conn, a: self.add(a, "notebook")),
                "flow_add_many": ({"rules": ListOf(self.check_rule, BULK, 1)}, self.op_add_many),
                "flow_remove": ({"id": Int(0, limits.ONVM_FLOW_MAX_RULES - 1)}, self.op_remove),
                "flow_list": ({"after": Optional(Int(-1, limits.ONVM_FLOW_MAX_RULES), -1),
                               "max": Optional(Int(0, LIST_PAGE), LIST_PAGE)}, self.op_list),
                "flow_config": ({"miss_service": Int(0, limits.ONVM_MAX_SERVICES - 1)}, self.op_config)}

    def nf_ops(self):
        """An NF's flow ops: rules for traffic that reaches it (at most
        NF_QUOTA at a time, see authorize), removing them, the removals of
        its rules (expired or removed by anyone) since it last asked, and
        taking the miss-handler role if the operator granted it."""
        return {"flow_add": (self.schema, self.op_nf_add),
                "flow_remove": ({"id": Int(0, limits.ONVM_FLOW_MAX_RULES - 1)}, self.op_nf_remove),
                "flow_events": ({}, lambda conn, a: {"events": self.events.pop(conn.data.get("slot"), [])}),
                "flow_miss": ({"on": Bool()}, self.op_nf_miss)}

    def op_nf_remove(self, conn, a):
        r = self.rules.get(a["id"])
        if r is None or r["slot"] != conn.data.get("slot"):
            raise ValueError("no flow rule %d of this NF" % a["id"])
        return {"counters": self.remove(a["id"], "delete")}

    def op_nf_miss(self, conn, a):
        """The NF's service gets flow-table misses (on), or no longer does
        (off, only if it still is the miss service).  "on" only for an NF
        the operator made miss handler: launched with flow_miss=True (its
        launch ticket says so), or of the service the operator set
        (mgr.flows.set_miss_handler, a graph node's flow_miss=True)."""
        slot = conn.data.get("slot")
        if slot is None:
            raise ValueError("register before asking for misses")
        shm = self.shm()
        service = shm.nfs[slot].service
        current = shm.tables[shm.active & 1].flow_miss
        if a["on"]:
            if not conn.data.get("flow_miss") and current != service:
                self.refuse("miss", "NF %s may not take flow-table misses: that role is the operator's to grant "
                            "(mgr.launch(..., flow_miss=True), a graph node's flow_miss=True, or "
                            "mgr.flows.set_miss_handler)" % conn.data.get("name"))
            if current != service:
                self.check(self.lib.onvm_mgr_flow_config(-1, service))
        elif current == service:
            self.check(self.lib.onvm_mgr_flow_config(-1, 0))
        return {"service": service, "max_priority": self.nf_max_priority}

    def check_rule(self, v, field):
        if not isinstance(v, dict):
            raise ValueError("%s must be an object like flow_add's fields" % field)
        try:
            return validate(dict(v, op="flow_add"), {"flow_add": (self.schema, None)})[1]
        except ValueError as e:
            raise ValueError("%s: %s" % (field, e)) from None

    def op_add_many(self, conn, a):
        """Several rules at once: all, or none if one is refused."""
        ids = []
        try:
            for r in a["rules"]:
                ids.append(self.add(r, "notebook")["rule"]["id"])
        except (OnvmError, ValueError):
            for rid in ids:
                self.remove(rid, "delete")
            self.counts["added"] -= len(ids)
            raise
        return {"ids": ids}

    def refuse(self, reason, msg):
        self.counts["refused"][reason] = self.counts["refused"].get(reason, 0) + 1
        raise OnvmError(msg)

    def op_nf_add(self, conn, a):
        slot = conn.data.get("slot")
        if slot is None:
            self.refuse("unregistered", "register before asking for rules")
        name = conn.data.get("name", "nf%d" % slot)
        held = self.held.get(slot, 0)
        if held >= NF_QUOTA:
            self.refuse("quota", "NF %s holds %d rules already (the quota); let some expire" % (name, held))
        a = self.authorize(name, slot, a)
        try:
            return self.add(a, name, slot)
        except (OnvmError, ValueError) as e:
            self.refuse("invalid", "NF %s: %s" % (name, e))

    def authorize(self, name, slot, a):
        """What an NF may ask for: its rule stands for its own verdict on
        the flow, so it gets no power its verdicts lack.  returns: the rule
        to install (the operator's hops up to the NF, then the NF's chain;
        the ports it covers); refuses (counted by reason) otherwise.

        - priority: at most nf_max_priority (the operator's ceiling);
        - reach: the miss handler's rules cover every port (every miss comes
          to it first).  Another NF's cover the ingress ports whose path
          passes it, and only if the hops before it are the same on all of
          them (a rule has one chain), which the rule keeps;
        - chain: its first hop is one the NF may steer to (checked in
          flow_dir.c against the NF's steer rules: a graph's edges out of
          it), each later hop one the hop before may; with a default chain
          (no graph) its services must follow the NF on the chain, in order;
        - the operator's rules win: refused if an operator's wildcard rule
          matching some of the same packets would lose to it (any, against
          an exact rule; a lower priority, against a wildcard one)."""
        if a["priority"] > self.nf_max_priority:
            self.refuse("priority", "NF %s asked for priority %d; rules from NFs have at most %d (the operator's "
                        "ceiling, Manager(nf_max_priority=...))" % (name, a["priority"], self.nf_max_priority))
        shm = self.shm()
        t = shm.tables[shm.active & 1]
        service = shm.nfs[slot].service
        chain = [list(h) for h in a["chain"]]
        if t.flow_miss == service:
            prefix, ports = [], list(range(self.nb_ports))
        else:
            ports, prefixes, after = [], set(), None
            for p in range(self.nb_ports):
                path = _hops(t.paths[p])
                at = [i for i, h in enumerate(path) if h == (limits.ONVM_TO_SERVICE, service)]
                if at:
                    ports.append(p)
                    prefixes.add(tuple(path[:at[0]]))
                    after = path[at[0] + 1:] if after is None else after
            if not ports:
                self.refuse("unreached", "NF %s (service %d) is on no port's path and is not the miss handler: no "
                            "traffic reaches it, so it may ask for no rule" % (name, service))
            if len(prefixes) > 1:
                self.refuse("unreached", "NF %s (service %d) is reached through different hops from ports %s; a "
                            "rule has one chain, so it would skip some of them" % (name, service, ports))
            prefix = [list(h) for h in prefixes.pop()]
            if t.steer[service].any:
                later = iter(d for k, d in after if k == limits.ONVM_TO_SERVICE)
                wanted = [d for k, d in chain if k == limits.ONVM_TO_SERVICE]
                if not all(d in later for d in wanted):
                    self.refuse("chain", "NF %s: a rule's services must follow it on the default chain, in order "
                                "(after it: %s); got %s" % (name, [d for k, d in after if k == limits.ONVM_TO_SERVICE]
                                                            or "none", wanted))
        if len(prefix) + len(chain) > limits.ONVM_MAX_CHAIN:
            self.refuse("chain", "NF %s: its chain after the %d hops before it has at most %d entries"
                        % (name, len(prefix), limits.ONVM_MAX_CHAIN - len(prefix)))
        exact = Match.from_wire(a["match"]).exact
        for rid in self.op_wild:
            r = self.rules[rid]
            if (exact or r["priority"] < a["priority"]) and overlap(r["match"], a["match"]):
                self.refuse("operator", "NF %s: the operator's rule %d (%r, priority %d) matches some of these "
                            "packets, and the operator's rules win" % (name, rid, Match.from_wire(r["match"]),
                                                                       r["priority"]))
        return dict(a, chain=prefix + chain, decided_at=len(prefix), in_ports=sum(1 << p for p in ports))

    def yield_to(self, a):
        """Before the operator's rule a goes in: remove the NFs' rules that
        would win over it where both match (an exact rule of the same flow,
        or one an exact or not lower wildcard rule)."""
        if not self.nf_rules:
            return
        exact = Match.from_wire(a["match"]).exact
        for rid in list(self.nf_rules):
            r = self.rules[rid]
            if exact:
                beats = r["exact"] and r["match"] == a["match"]
            else:
                beats = (r["exact"] or r["priority"] >= a["priority"]) and overlap(r["match"], a["match"])
            if beats:
                self.remove(rid, "delete")
                self.counts["removed"] += 1

    def add(self, a, installer, slot=limits.ONVM_OWNER_MGR):
        if slot == limits.ONVM_OWNER_MGR:
            self.yield_to(a)
        m = a["match"]
        spec = self.ffi.new("struct onvm_flow_spec *")
        spec.src, spec.src_len = m["src"]
        spec.dst, spec.dst_len = m["dst"]
        spec.proto_any = 1 if m["proto"] < 0 else 0
        spec.proto = max(m["proto"], 0)
        spec.sport_lo, spec.sport_hi = m["sport"]
        spec.dport_lo, spec.dport_hi = m["dport"]
        spec.priority = a["priority"]
        spec.installer = slot
        spec.decided_at = a.get("decided_at", 0)
        spec.in_ports = a.get("in_ports", 0)
        spec.chain.length = len(a["chain"])
        for i, (action, dest) in enumerate(a["chain"]):
            spec.chain.entries[i].action = action
            spec.chain.entries[i].destination = dest
        rid = self.check(self.lib.onvm_mgr_flow_add(spec))
        now = time.monotonic()
        self.serial += 1
        exact = Match.from_wire(m).exact
        self.rules[rid] = dict(a, id=rid, installer=installer, slot=slot, t0=now, last=now, seen=0,
                               serial=self.serial, exact=exact)
        self.nb_exact += exact
        if a["idle_timeout"] or a["hard_timeout"]:
            self.timed[rid] = None
        if slot != limits.ONVM_OWNER_MGR:
            self.held[slot] = self.held.get(slot, 0) + 1
            self.nf_rules.add(rid)
        elif not exact:
            self.op_wild.add(rid)
        self.counts["added"] += 1
        return {"rule": self.describe(rid, now)}

    def counters(self, rid):
        c = self.probe
        self.check(self.lib.onvm_mgr_flow_counters(rid, c))
        return {"packets": c.packets, "bytes": c.bytes}

    def describe(self, rid, now):
        r = self.rules[rid]
        out = {k: r[k] for k in ("id", "match", "chain", "priority", "idle_timeout", "hard_timeout", "installer",
                                 "serial")}
        out.update(self.counters(rid), age=now - r["t0"])
        return out

    def remove(self, rid, reason):
        """Remove a rule; an NF's rule leaves a notice for it (flow_events)."""
        counters = self.counters(rid)
        self.check(self.lib.onvm_mgr_flow_remove(rid))
        r = self.rules.pop(rid)
        self.nb_exact -= r["exact"]
        self.timed.pop(rid, None)
        self.nf_rules.discard(rid)
        self.op_wild.discard(rid)
        if r["slot"] != limits.ONVM_OWNER_MGR:
            self.held[r["slot"]] -= 1
            ev = self.events.setdefault(r["slot"], [])
            if len(ev) < NF_EVENTS:
                ev.append(dict(counters, id=rid, serial=r["serial"], reason=reason,
                               duration=time.monotonic() - r["t0"]))
        return counters

    def op_remove(self, conn, a):
        if a["id"] not in self.rules:
            raise ValueError("no flow rule %d" % a["id"])
        counters = self.remove(a["id"], "delete")
        self.counts["removed"] += 1
        return {"counters": counters}

    def op_list(self, conn, a):
        """Rules with an ID above `after`, at most `max` of them, and the table's stats."""
        now = time.monotonic()
        ids = sorted(rid for rid in self.rules if rid > a["after"])
        rules = [self.describe(rid, now) for rid in ids[:a["max"]]]
        stats = dict(self.counts, rules=len(self.rules), exact=self.nb_exact,
                     wildcard=len(self.rules) - self.nb_exact)
        return {"rules": rules, "more": len(ids) > a["max"], "stats": stats}

    def op_config(self, conn, a):
        self.check(self.lib.onvm_mgr_flow_config(-1, a["miss_service"]))
        return {}

    def tick(self):
        """Expire rules whose idle or hard timeout has passed (every 100 ms).
        Idle means no packet counted since the last check that saw one.
        A check looks at EXPIRY_BATCH timed rules, going on where the last
        one stopped: walking 64k rules every 100 ms took a whole core."""
        now = time.monotonic()
        if now < self.next_expiry or not self.timed:
            return
        self.next_expiry = now + EXPIRY_EVERY
        if not self.scan:
            self.scan = list(self.timed)[::-1]     # oldest first: taken from the end
        batch = self.scan[-EXPIRY_BATCH:]
        del self.scan[-EXPIRY_BATCH:]
        for rid in batch:
            if rid not in self.timed:
                continue         # removed since the pass began
            r = self.rules[rid]
            packets = self.counters(rid)["packets"]
            if packets != r["seen"]:
                r["seen"], r["last"] = packets, now
            idle = r["idle_timeout"] and (now - r["last"]) * 1000 >= r["idle_timeout"]
            hard = r["hard_timeout"] and (now - r["t0"]) * 1000 >= r["hard_timeout"]
            if idle or hard:
                try:
                    self.remove(rid, "idle" if idle else "hard")
                    self.counts["expired"] += 1
                except (OnvmError, ValueError):
                    pass         # the tables are busy: next check
