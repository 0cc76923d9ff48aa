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
from .common import limits
from .common.hop import Hop, wire_chain
from .common.match import BULK, MAX_TIMEOUT_MS, Match  # noqa: F401  (onvm.flows.Match, as before)

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


def rule_fields(match, chain, names, nb_ports, priority=0, idle_timeout=0, hard_timeout=0):
    """flow_add's fields for a rule (onvm.common.ops), from what a user
    writes (a Match, hops in any spelling, seconds); raises ValueError in
    those terms before the catalogue's own checks."""
    if not isinstance(match, Match):
        raise ValueError("a rule needs an onvm.Match, got %r" % (match,))
    if isinstance(priority, bool) or not isinstance(priority, int) or \
            not 0 <= priority <= limits.ONVM_FLOW_MAX_PRIORITY:
        raise ValueError("priority is an int in 0..%d, got %r" % (limits.ONVM_FLOW_MAX_PRIORITY, priority))
    return {"match": match.wire(), "chain": resolve_chain(chain, names, nb_ports),
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
        fields = rule_fields(match, chain, self._names(), len(self.mgr.port_specs), priority, idle_timeout,
                             hard_timeout)
        return Rule(self.mgr.ctl.flow_add(**fields)["rule"])

    def add_many(self, matches, chain, priority=0, idle_timeout=0, hard_timeout=0):
        """Add one rule per match, all with the same chain and settings, in
        bulk (thousands per second instead of one request each).  returns:
        their IDs; raises ValueError, and adds none of a request, if one is
        bad."""
        names, nb = self._names(), len(self.mgr.port_specs)
        rules = [rule_fields(m, chain, names, nb, priority, idle_timeout, hard_timeout) for m in matches]
        ids = []
        for i in range(0, len(rules), BULK):
            ids += self.mgr.ctl.flow_add_many(rules=rules[i:i + BULK])["ids"]
        return ids

    def remove(self, rule):
        """Remove a rule (a Rule or its ID).  returns: its last counters {packets, bytes}."""
        rid = rule.id if isinstance(rule, Rule) else rule
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise ValueError("remove() takes a Rule or its ID, got %r" % (rule,))
        return self.mgr.ctl.flow_remove(id=rid)["counters"]

    def list(self):
        """Every rule with its counters, as a RuleList (a table in a notebook)."""
        out, after = RuleList(), -1
        while True:                       # a page at a time: 64k rules do not fit one reply
            reply = self.mgr.ctl.flow_list(after=after)
            out += [Rule(d) for d in reply["rules"]]
            if not reply["more"]:
                return out
            after = out[-1].id

    def stats(self):
        """{rules, exact, wildcard, added, removed, expired, refused: {reason: n}}"""
        return self.mgr.ctl.flow_list(max=0)["stats"]

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
            sid = Hop.service(service).dest
        self.mgr.ctl.flow_config(miss_service=sid)

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
    # the NF side, imported here: it maps the control file (the compiled core), and the
    # notebook side and the unit tier import this module without it
    from .nflib import context
    from .nflib import door as nfdoor
    if context.door is None:
        raise ValueError("onvm.flows.add() works inside an NF; from a notebook use mgr.flows.add()")
    cf = context.control_file()       # sent over nf.sock: a container NF has no path to it
    names = {n: s for s, n in cf.service_names().items()}
    fields = rule_fields(match, chain, names, cf.shm.nb_ports, priority, idle_timeout, hard_timeout)
    return nfdoor.DoorClient(context.door).flow_add(**fields)["rule"]["id"]

