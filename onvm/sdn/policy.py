"""A controller policy: which chain each flow takes.

    {"rules": [{"match": {"src": "198.51.100.0/24", "proto": "udp", "dport": 53},
                "chain": ["fw", "port:1"], "priority": 10, "idle_timeout": 30}],
     "default": ["port:1"],            # or null: unmatched flows take the switch's default path
     "idle_timeout": 30}               # for rules that give none

A match takes onvm.Match's fields (ports as a number or [low, high]); a
chain lists node names, "svc:N" (a service ID) or "port:N" (a manager
port), and ends at a port.  The highest priority wins, then the earlier
rule."""
import ipaddress
import json
import re

from ..common.match import Match

HOP = re.compile(r"(port|svc):(\d+)|[A-Za-z0-9_.-]{1,31}")
RULE_KEYS = {"match", "chain", "priority", "idle_timeout", "hard_timeout"}


def _chain(v, where):
    if not isinstance(v, list) or not v:
        raise ValueError("%s: a chain is a non-empty list, e.g. [\"fw\", \"port:1\"]" % where)
    for i, hop in enumerate(v):
        if not isinstance(hop, str) or not HOP.fullmatch(hop):
            raise ValueError("%s[%d]: %r is not a node name, \"svc:N\" or \"port:N\"" % (where, i, hop))
    if not v[-1].startswith("port:"):
        raise ValueError("%s: a chain ends at a port (\"port:N\"), not %r" % (where, v[-1]))
    return list(v)


def _seconds(v, where):
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
        raise ValueError("%s: whole seconds 0..65535 (0: none), got %r" % (where, v))
    return v


class Policy:
    """A checked policy.  raises ValueError naming the bad entry."""

    def __init__(self, d, source="policy"):
        if not isinstance(d, dict) or not set(d) <= {"rules", "default", "idle_timeout"}:
            raise ValueError("%s: an object with \"rules\", \"default\" and \"idle_timeout\"" % source)
        self.idle_timeout = _seconds(d.get("idle_timeout", 30), source + ": idle_timeout")
        self.default = None if d.get("default") is None else _chain(d["default"], source + ": default")
        rules = d.get("rules", [])
        if not isinstance(rules, list):
            raise ValueError("%s: rules is a list" % source)
        self.rules = []
        for i, r in enumerate(rules):
            where = "%s: rules[%d]" % (source, i)
            if not isinstance(r, dict) or "chain" not in r or not set(r) <= RULE_KEYS:
                raise ValueError("%s: an object with \"chain\" and optionally %s" % (where, ", ".join(
                    sorted(RULE_KEYS - {"chain"}))))
            m = r.get("match", {})
            if not isinstance(m, dict):
                raise ValueError("%s.match: an object of src, dst, proto, sport, dport" % where)
            try:
                match = Match(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()})
            except TypeError as e:
                raise ValueError("%s.match: %s (fields: src, dst, proto, sport, dport)" % (where, e)) from None
            except ValueError as e:
                raise ValueError("%s.%s" % (where, e)) from None
            prio = r.get("priority", 0)
            if isinstance(prio, bool) or not isinstance(prio, int) or not 0 <= prio <= 65534:
                raise ValueError("%s.priority: 0..65534, got %r" % (where, prio))
            self.rules.append((-prio, i, match, _chain(r["chain"], where + ".chain"),
                               _seconds(r.get("idle_timeout", self.idle_timeout), where + ".idle_timeout"),
                               _seconds(r.get("hard_timeout", 0), where + ".hard_timeout")))
        self.rules.sort(key=lambda r: r[:2])

    @classmethod
    def load(cls, path):
        try:
            with open(path) as f:
                d = json.load(f)
        except OSError as e:
            raise ValueError("cannot read policy %s: %s" % (path, e.strerror)) from None
        except json.JSONDecodeError as e:
            raise ValueError("%s: not JSON: %s" % (path, e)) from None
        return cls(d, str(path))

    def choose(self, src, dst, proto, sport, dport):
        """(chain, idle_timeout, hard_timeout, priority) for a flow, or None
        (the switch's default path)."""
        for prio, _, m, chain, idle, hard in self.rules:
            if _matches(m, src, dst, proto, sport, dport):
                return chain, idle, hard, -prio
        return (self.default, self.idle_timeout, 0, 0) if self.default else None


def _matches(m, src, dst, proto, sport, dport):
    for want, addr in ((m.src, src), (m.dst, dst)):
        if want and want[1]:
            shift = 32 - want[1]
            if int(ipaddress.IPv4Address(addr)) >> shift != want[0] >> shift:
                return False
    if m.proto is not None and m.proto != proto:
        return False
    for want, p in ((m.sport, sport), (m.dport, dport)):
        if want and not want[0] <= p <= want[1]:
            return False
    return True
