"""The manager's flow director: the rule table behind onvm.flows (see its
docstring for the rules' semantics), its control operations, the rules NFs add
over the NF door, and timeouts."""
import time

from ..common.abi import ffi, lib
from ..common.errors import OnvmError
from ..common.match import (
    EXPIRY_BATCH,
    EXPIRY_EVERY,
    NF_EVENTS,
    NF_MAX_PRIORITY,
    NF_QUOTA,
    Match,
    overlap,
)

# ---- the manager's side --------------------------------------------------------------

def _hops(c):
    return [(c.entries[i].action, c.entries[i].destination) for i in range(c.length)]


class FlowDirector:
    """The flow table's control side, in the manager process: the ops of
    onvm.sock (the notebook) and nf.sock (NFs, with a quota), and expiry."""

    def __init__(self, check, nb_ports, shm=None, nf_max_priority=NF_MAX_PRIORITY):
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
        self.probe = ffi.new("struct onvm_flow_counters *")

    def owner_handlers(self):
        """The handlers of the owner's flow ops (their fields: onvm.common.ops.owner_ops)."""
        return {"flow_add": lambda conn, a: self.add(a, "notebook"), "flow_add_many": self.op_add_many,
                "flow_remove": self.op_remove, "flow_list": self.op_list, "flow_config": self.op_config}

    def nf_handlers(self):
        """The handlers of an NF's flow ops (onvm.common.ops.nf_ops): rules
        for traffic that reaches it (at most NF_QUOTA at a time, see
        authorize), removing them, the removals of its rules (expired or
        removed by anyone) since it last asked, and taking the miss-handler
        role if the operator granted it."""
        return {"flow_add": self.op_nf_add, "flow_remove": self.op_nf_remove,
                "flow_events": lambda conn, a: {"events": self.events.pop(conn.data.get("slot"), [])},
                "flow_counters": self.op_nf_counters, "flow_miss": self.op_nf_miss}

    def op_nf_remove(self, conn, a):
        r = self.rules.get(a["id"])
        if r is None or r["slot"] != conn.data.get("slot"):
            raise ValueError("no flow rule %d of this NF" % a["id"])
        return {"counters": self.remove(a["id"], "delete")}

    def op_nf_counters(self, conn, a):
        """The counters of the NF's own rules (None for an ID that is not one)."""
        slot = conn.data.get("slot")
        return {"counters": [self.counters(rid) if rid in self.rules and self.rules[rid]["slot"] == slot else None
                             for rid in a["ids"]]}

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
                self.check(lib.onvm_mgr_flow_config(-1, service))
        elif current == service:
            self.check(lib.onvm_mgr_flow_config(-1, 0))
        return {"service": service, "max_priority": self.nf_max_priority}

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
                at = [i for i, h in enumerate(path) if h == (lib.ONVM_TO_SERVICE, service)]
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
                later = iter(d for k, d in after if k == lib.ONVM_TO_SERVICE)
                wanted = [d for k, d in chain if k == lib.ONVM_TO_SERVICE]
                if not all(d in later for d in wanted):
                    self.refuse("chain", "NF %s: a rule's services must follow it on the default chain, in order "
                                "(after it: %s); got %s" % (name, [d for k, d in after if k == lib.ONVM_TO_SERVICE]
                                                            or "none", wanted))
        if a.get("in_ports"):             # the NF may narrow its rule to some of those ports
            ports = [p for p in ports if a["in_ports"] >> p & 1]
            if not ports:
                self.refuse("unreached", "NF %s asked for a rule on ports it receives nothing from" % name)
        if len(prefix) + len(chain) > lib.ONVM_MAX_CHAIN:
            self.refuse("chain", "NF %s: its chain after the %d hops before it has at most %d entries"
                        % (name, len(prefix), lib.ONVM_MAX_CHAIN - len(prefix)))
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

    def add(self, a, installer, slot=lib.ONVM_OWNER_MGR):
        if slot == lib.ONVM_OWNER_MGR:
            self.yield_to(a)
        m = a["match"]
        spec = ffi.new("struct onvm_flow_spec *")
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
        rid = self.check(lib.onvm_mgr_flow_add(spec))
        now = time.monotonic()
        self.serial += 1
        exact = Match.from_wire(m).exact
        self.rules[rid] = dict(a, id=rid, installer=installer, slot=slot, t0=now, last=now, seen=0,
                               serial=self.serial, exact=exact)
        self.nb_exact += exact
        if a["idle_timeout"] or a["hard_timeout"]:
            self.timed[rid] = None
        if slot != lib.ONVM_OWNER_MGR:
            self.held[slot] = self.held.get(slot, 0) + 1
            self.nf_rules.add(rid)
        elif not exact:
            self.op_wild.add(rid)
        self.counts["added"] += 1
        return {"rule": self.describe(rid, now)}

    def counters(self, rid):
        c = self.probe
        self.check(lib.onvm_mgr_flow_counters(rid, c))
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
        self.check(lib.onvm_mgr_flow_remove(rid))
        r = self.rules.pop(rid)
        self.nb_exact -= r["exact"]
        self.timed.pop(rid, None)
        self.nf_rules.discard(rid)
        self.op_wild.discard(rid)
        if r["slot"] != lib.ONVM_OWNER_MGR:
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
        self.check(lib.onvm_mgr_flow_config(-1, a["miss_service"]))
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
