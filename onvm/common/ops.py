"""The control protocol's operations, declared once: every op of the
manager's two sockets, its fields with their validators, what it answers,
and one line saying what it does.  The wire format is onvm.common.protocol.

    onvm.sock (OWNER)  the manager's owner: a notebook, the CLI, a launcher;
                       one request per connection (onvm/client.py)
    nf.sock   (NF)     NFs: one connection each for the NF's life
                       (onvm/nflib/door.py; C NFs in onvm/core/sdk.c)

Both ends use these entries.  The manager (onvm/mgr: daemon, flowdir,
nfdoor) binds a handler to each by name with bind(), which fails at start
if an op has no handler or a handler no entry.  A client builds each
request with Op.request(), which runs the very validate() the manager
runs, so a bad argument raises the ValueError the manager would have sent
back, before anything is sent; outcome() turns a refusal into ValueError
(kind "input") or OnvmError (kind "system").

A validator is f(value, field) -> the checked (maybe converted) value, or a
ValueError naming field.  Fields whose range depends on the running manager
(its ports, which of them are ring ports) come from a Limits."""
import base64
import binascii
import json
import re
from collections import namedtuple

from . import limits as L
from .errors import OnvmError
from .match import BULK, LIST_PAGE, MAX_TIMEOUT_MS, NF_QUOTA
from .protocol import refusal

OWNER, NF = "onvm.sock", "nf.sock"
INJECT_MAX = 8192        # packets in one inject request; Manager.inject splits
PKT_MIN, PKT_MAX = 14, 2048
U31 = 2 ** 31 - 1


# ---- validators -------------------------------------------------------------------------

def _show(v, limit=40):
    """A short repr for error messages: a client's value may be megabytes."""
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def _kind(v):
    return {bool: "a bool", int: "an int", float: "a float", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


class Int:
    """An int (not a bool, not a float) in lo..hi."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __call__(self, v, field):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("%s must be an int in %d..%d, got %s" % (field, self.lo, self.hi, _kind(v)))
        if not self.lo <= v <= self.hi:
            raise ValueError("%s must be in %d..%d, got %s" % (field, self.lo, self.hi, _show(v)))
        return v


class Bool:
    """true or false, nothing else."""

    def __call__(self, v, field):
        if not isinstance(v, bool):
            raise ValueError("%s must be true or false, got %s" % (field, _kind(v)))
        return v


class Str:
    """A string of at most max_len characters."""

    def __init__(self, max_len):
        self.max_len = max_len

    def __call__(self, v, field):
        if not isinstance(v, str):
            raise ValueError("%s must be a string, got %s" % (field, _kind(v)))
        if len(v) > self.max_len:
            raise ValueError("%s is %d characters; at most %d" % (field, len(v), self.max_len))
        return v


class Matching:
    """A string that matches regex in full; what: the words for the error."""

    def __init__(self, regex, what):
        self.pattern, self.what = re.compile(regex), what

    def __call__(self, v, field):
        if not isinstance(v, str) or not self.pattern.fullmatch(v):
            raise ValueError("%s must be %s, got %r" % (field, self.what, v if isinstance(v, str) else type(v).__name__))
        return v


class Bytes:
    """A base64 string whose decoded length is in lo..hi; gives bytes."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __call__(self, v, field):
        if not isinstance(v, str):
            raise ValueError("%s must be a base64 string, got %s" % (field, _kind(v)))
        if len(v) > (self.hi + 2) // 3 * 4:
            raise ValueError("%s is longer than %d bytes" % (field, self.hi))
        try:
            b = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("%s is not valid base64" % field) from None
        if not self.lo <= len(b) <= self.hi:
            raise ValueError("%s is %d bytes; it must be %d..%d" % (field, len(b), self.lo, self.hi))
        return b


class ListOf:
    """A list of lo..hi items, each checked by item."""

    def __init__(self, item, hi, lo=0):
        self.item, self.lo, self.hi = item, lo, hi

    def __call__(self, v, field):
        if not isinstance(v, list):
            raise ValueError("%s must be a list, got %s" % (field, _kind(v)))
        if not self.lo <= len(v) <= self.hi:
            raise ValueError("%s has %d items; it must have %d..%d" % (field, len(v), self.lo, self.hi))
        return [self.item(x, "%s[%d]" % (field, i)) for i, x in enumerate(v)]


class Tuple:
    """A list of exactly len(items) values, each checked by its own validator."""

    def __init__(self, *items):
        self.items = items

    def __call__(self, v, field):
        if not isinstance(v, list) or len(v) != len(self.items):
            raise ValueError("%s must be a list of %d items, got %s" % (field, len(self.items), _show(v)))
        return [f(x, "%s[%d]" % (field, i)) for i, (f, x) in enumerate(zip(self.items, v))]


class Optional:
    """A field that may be left out (then it is default, unchecked)."""

    def __init__(self, check, default=None):
        self.check, self.default = check, default

    def __call__(self, v, field):
        return self.check(v, field)

    def is_default(self, v):
        """v is what leaving the field out means (the same type: 0 is not False)."""
        return v is self.default or (type(v) is type(self.default) and v == self.default)


def validate(req, ops):
    """Check a decoded request against a table of ops {name: (schema, handler)}.
    returns: (op, checked args, handler); raises ValueError naming the problem."""
    if not isinstance(req, dict):
        raise ValueError("a request must be a JSON object, got %s" % _kind(req))
    op = req.get("op")
    if not isinstance(op, str):
        raise ValueError("field 'op' must be a string naming the operation, got %s" % _kind(op))
    if op not in ops:
        raise ValueError("unknown op %s (ops: %s)" % (_show(op), ", ".join(sorted(ops))))
    schema, handler = ops[op]
    for k in req:
        if k != "op" and k not in schema:
            raise ValueError("%s: unknown field %s (fields: %s)" % (op, _show(k), ", ".join(sorted(schema)) or "none"))
    args = {}
    for k, check in schema.items():
        if k in req:
            args[k] = check(req[k], "%s: field '%s'" % (op, k))
        elif isinstance(check, Optional):
            args[k] = check.default
        else:
            raise ValueError("%s: field '%s' is missing" % (op, k))
    return op, args, handler


def decode(body):
    """JSON bytes -> a value, or ValueError saying why not (never anything else:
    deep nesting and huge numbers become ValueErrors too)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("request is nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("request is not UTF-8 text") from None
    except ValueError as e:    # JSONDecodeError, ints past the digit limit
        raise ValueError("request is not valid JSON: %s" % _show(str(e), 80)) from None


# ---- the fields several ops share --------------------------------------------------------

NAME = Matching(r"[A-Za-z0-9_.-]{1,31}", "1..31 letters, digits, '.', '-' or '_'")
KIND = Matching(r"[A-Za-z0-9_.:-]{1,23}", "1..23 letters, digits or ._:-")
TICKET = Matching(r"[0-9a-f]{32}", "the 32 hex digits of a launch ticket")
SERVICE = Int(1, L.ONVM_MAX_SERVICES - 1)
RULE_ID = Int(0, L.ONVM_FLOW_MAX_RULES - 1)


_PORT_RANGE = Tuple(Int(0, 65535), Int(0, 65535))
_MATCH = {"src": Tuple(Int(0, 2 ** 32 - 1), Int(0, 32)), "dst": Tuple(Int(0, 2 ** 32 - 1), Int(0, 32)),
          "proto": Int(-1, 255), "sport": _PORT_RANGE, "dport": _PORT_RANGE}


def wire_match(v, field):
    """A Match's wire form (onvm.common.match.Match.wire)."""
    if not isinstance(v, dict) or set(v) != set(_MATCH):
        raise ValueError("%s must be an object with %s" % (field, ", ".join(sorted(_MATCH))))
    return {k: f(v[k], "%s.%s" % (field, k)) for k, f in _MATCH.items()}


def flow_rule():
    """flow_add's fields (the owner's and an NF's alike, and each of flow_add_many's rules)."""
    entry = Tuple(Int(L.ONVM_TO_SERVICE, L.ONVM_TO_PORT), Int(0, 0xffff))
    return {"match": wire_match, "chain": ListOf(entry, L.ONVM_MAX_CHAIN, 1),
            "priority": Int(0, L.ONVM_FLOW_MAX_PRIORITY),
            "idle_timeout": Optional(Int(0, MAX_TIMEOUT_MS), 0),
            "hard_timeout": Optional(Int(0, MAX_TIMEOUT_MS), 0),
            # bit p: only packets entering port p (0: every port the rule may cover)
            "in_ports": Optional(Int(0, 2 ** L.ONVM_MAX_PORTS - 1), 0)}


class RuleOf:
    """One of flow_add_many's rules: an object with flow_add's fields."""

    def __init__(self, schema):
        self.table = {"flow_add": (schema, None)}

    def __call__(self, v, field):
        if not isinstance(v, dict):
            raise ValueError("%s must be an object like flow_add's fields" % field)
        try:
            return validate(dict(v, op="flow_add"), self.table)[1]
        except ValueError as e:
            raise ValueError("%s: %s" % (field, e)) from None


# ---- the catalogue ------------------------------------------------------------------------

class Limits(namedtuple("Limits", "nports ring_ports")):
    """What one manager's fields may hold: its number of ports, and which of
    them are ring ports (inject and capture work on those)."""


# Any manager's: for documentation and for checks that do not know the manager.
WIDEST = Limits(L.ONVM_MAX_PORTS, tuple(range(L.ONVM_MAX_PORTS)))


class Op:
    """One operation: its name, the socket that serves it, a line saying
    what it does, its fields {name: validator} in the order a client's
    method takes them, and the keys of its answer (beside "ok")."""
    __slots__ = ("name", "socket", "doc", "fields", "reply")

    def __init__(self, name, socket, doc, fields=None, reply=()):
        self.name, self.socket, self.doc = name, socket, doc
        self.fields, self.reply = dict(fields or {}), tuple(reply)

    def request(self, **args):
        """The request for these arguments (wire values), checked as the
        manager checks it: an Optional field at its default is left out
        (the manager fills in the same).  raises: ValueError, as the
        manager's reply would."""
        req = {"op": self.name}
        for k, v in args.items():
            check = self.fields.get(k)
            if not (isinstance(check, Optional) and check.is_default(v)):
                req[k] = v
        # checked as the manager will see it: tuples become lists, 3.0 stays a float
        try:
            wire = json.loads(json.dumps(req, separators=(",", ":")))
        except (TypeError, ValueError) as e:
            raise ValueError("%s: %s" % (self.name, e)) from None
        validate(wire, {self.name: (self.fields, None)})
        return req

    def help(self):
        """The doc line, then a line per field: for a client method's docstring."""
        lines = [self.doc]
        for k, check in self.fields.items():
            lines.append("param %s: %s%s" % (k, _describe(check), "" if not isinstance(check, Optional)
                                             else " (optional, default %r)" % (check.default,)))
        lines.append("returns: {%s}" % ", ".join(self.reply))
        return "\n".join(lines)

    def __repr__(self):
        return "<Op %s on %s: %s>" % (self.name, self.socket, ", ".join(self.fields) or "no fields")


def _describe(check):
    check = check.check if isinstance(check, Optional) else check
    if isinstance(check, Int):
        return "an int in %d..%d" % (check.lo, check.hi)
    if isinstance(check, Bool):
        return "True or False"
    if isinstance(check, Str):
        return "a string of at most %d characters" % check.max_len
    if isinstance(check, Matching):
        return "a string of " + check.what
    if isinstance(check, Bytes):
        return "base64 of %d..%d bytes" % (check.lo, check.hi)
    if isinstance(check, ListOf):
        return "a list of %d..%d: %s" % (check.lo, check.hi, _describe(check.item))
    if isinstance(check, Tuple):
        return "[%s]" % ", ".join(_describe(c) for c in check.items)
    words = (check.__doc__ or "a value").strip().split("\n")[0].rstrip(".")
    return words[:1].lower() + words[1:]


def owner_ops(limits=WIDEST):
    """The ops of onvm.sock, {name: Op}, for a manager of these limits."""
    nports, rings = limits.nports, list(limits.ring_ports)
    port = Int(0, nports - 1)

    def ring_port(v, field):
        """a ring port's number"""
        v = port(v, field)
        if v not in rings:
            raise ValueError("%s: port %d is not a ring port; inject and capture work on ring ports %s"
                             % (field, v, rings))
        return v

    def chain_entry(v, field):
        """[action, dest]: [2, service ID] or [3, port]"""
        action, dest = Tuple(Int(0, 0xffff), Int(0, 0xffff))(v, field)
        if action == L.ONVM_TO_SERVICE:
            SERVICE(dest, field + " service ID")
        elif action == L.ONVM_TO_PORT:
            port(dest, field + " port")
        else:
            raise ValueError("%s: action must be %d (to a service) or %d (to a port), got %d"
                             % (field, L.ONVM_TO_SERVICE, L.ONVM_TO_PORT, action))
        return action, dest

    chain = ListOf(chain_entry, L.ONVM_MAX_CHAIN)
    rule = flow_rule()
    ops = [
        Op("ping", OWNER, "Whether the manager answers: its pid, name and number of ports.",
           reply=("pid", "name", "nb_ports")),
        Op("shutdown", OWNER, "Stop the manager (its NFs are asked to leave, then killed)."),
        Op("nf_ticket", OWNER, "A launch ticket: the one registration on nf.sock of the NF about to be started.",
           {"service": SERVICE, "name": NAME, "flow_miss": Optional(Bool(), False)}, ("ticket",)),
        Op("inject", OWNER, "Put frames into a ring port's inject ring, as far as they fit now; dropped: frames "
           "the client gave up on (the port's inject_drop).",
           {"port": ring_port, "pkts": ListOf(Bytes(PKT_MIN, PKT_MAX), INJECT_MAX),
            "dropped": Optional(Int(0, U31), 0)}, ("sent",)),
        Op("capture", OWNER, "Up to max frames from a ring port's capture ring; more: some are still waiting.",
           {"port": ring_port, "max": Int(0, U31)}, ("pkts", "more")),
        Op("clear_capture", OWNER, "Discard what the ring ports' capture rings hold."),
        Op("replay", OWNER, "Start replaying the file of a pcap:rx=FILE port.", {"port": port}),
        Op("set_chain", OWNER, "The default chain every port's packets follow.", {"chain": chain}),
        Op("apply", OWNER, "A deployment's change in one table update: each port's path, who may steer where, "
           "the node names, the services' instances, the hop limit.",
           {"paths": Optional(ListOf(chain, nports, nports)),
            "steer": Optional(ListOf(Tuple(SERVICE, ListOf(port, nports), ListOf(SERVICE, L.ONVM_MAX_SERVICES)),
                                     L.ONVM_MAX_SERVICES)),
            "names": Optional(ListOf(Tuple(SERVICE, Str(31)), L.ONVM_MAX_SERVICES), []),
            "members": Optional(ListOf(Tuple(SERVICE, ListOf(Int(0, L.ONVM_MAX_NFS - 1), L.ONVM_MAX_INSTANCES)),
                                       L.ONVM_MAX_SERVICES), []),
            "hop_limit": Optional(Int(1, 255), 0)}),
        Op("tap_arm", OWNER, "A capture at a hop (where: %d after a service, %d port out, %d port in): copies "
           "go to a new ring file at path." % (L.ONVM_TAP_AFTER_SERVICE, L.ONVM_TAP_PORT_OUT, L.ONVM_TAP_PORT_IN),
           {"where": Int(L.ONVM_TAP_AFTER_SERVICE, L.ONVM_TAP_PORT_IN), "target": Int(0, L.ONVM_MAX_SERVICES - 1),
            "filter": Optional(Str(2000), ""), "ring_mb": Optional(Int(1, 1024), 8)}, ("tap", "path")),
        Op("tap_disarm", OWNER, "Stop a capture at a hop; dropped: copies its full ring lost.",
           {"tap": Int(0, L.ONVM_MAX_TAPS - 1)}, ("dropped",)),
        Op("trace_start", OWNER, "A trace ID for one packet the client injects.", reply=("id",)),
        Op("trace_read", OWNER, "A trace's hops so far, [ts_ns, kind, why, where, service, action, dest] each; "
           "end=1 also ends it.", {"id": Int(1, 0xffff), "end": Optional(Int(0, 1), 0)}, ("hops",)),
        Op("flow_add", OWNER, "Add a flow rule (the operator's).", rule, ("rule",)),
        Op("flow_add_many", OWNER, "Add several flow rules: all, or none if one is refused.",
           {"rules": ListOf(RuleOf(rule), BULK, 1)}, ("ids",)),
        Op("flow_remove", OWNER, "Remove a flow rule; its last counters.", {"id": RULE_ID}, ("counters",)),
        Op("flow_list", OWNER, "The rules with an ID above after, at most max of them, and the table's stats.",
           {"after": Optional(Int(-1, L.ONVM_FLOW_MAX_RULES), -1), "max": Optional(Int(0, LIST_PAGE), LIST_PAGE)},
           ("rules", "more", "stats")),
        Op("flow_config", OWNER, "The service that gets flow-table misses (0: none).",
           {"miss_service": Int(0, L.ONVM_MAX_SERVICES - 1)}),
    ]
    return {op.name: op for op in ops}


def nf_ops():
    """The ops of nf.sock, {name: Op}: all an NF may ask of the manager."""
    ops = [
        Op("register", NF, "A slot for this NF, with this launch's ticket; the reply brings the control file and "
           "the NF's stats file (and the shared region without hugepages) as fds.",
           {"name": NAME, "kind": KIND, "service": SERVICE, "staged": Optional(Bool(), False),
            "ticket": Optional(TICKET), "sdk": Optional(Int(0, 1 << 20))}, ("slot", "hugepages")),
        Op("ready", NF, "The NF has joined DPDK: into its service (unless staged)."),
        Op("leave", NF, "Out of service; answered once no packet can reach the NF's ring.", reply=("out_of_service",)),
        Op("flow_add", NF, "A rule for traffic that reaches this NF (at most %d held at a time)." % NF_QUOTA,
           flow_rule(), ("rule",)),
        Op("flow_remove", NF, "Remove one of this NF's rules; its last counters.", {"id": RULE_ID}, ("counters",)),
        Op("flow_events", NF, "The removals of this NF's rules (expired or removed) since it last asked.",
           reply=("events",)),
        Op("flow_counters", NF, "The counters of some of this NF's rules (null for an ID that is not one).",
           {"ids": ListOf(RULE_ID, NF_QUOTA)}, ("counters",)),
        Op("flow_miss", NF, "Take (on) or give up the flow-table misses, a role the operator grants.",
           {"on": Bool()}, ("service", "max_priority")),
    ]
    return {op.name: op for op in ops}


def catalogue(limits=WIDEST):
    """Every op of every socket: {OWNER: {name: Op}, NF: {name: Op}}."""
    return {OWNER: owner_ops(limits), NF: nf_ops()}


# ---- both ends ---------------------------------------------------------------------------

def bind(ops, handlers):
    """The table ControlServer.listen serves, {name: (fields, handler)}, from
    one socket's ops and the handlers a server has for them.  raises:
    OnvmError (the manager does not start, and cleans up) naming each op
    without a handler and each handler without an entry here."""
    missing = sorted(set(ops) - set(handlers))
    extra = sorted(set(handlers) - set(ops))
    if missing or extra:
        sock = {op.socket for op in ops.values()} or {"a socket"}
        raise OnvmError("%s: %s%s%s" % (
            "/".join(sorted(sock)), "ops without a handler: %s" % ", ".join(missing) if missing else "",
            "; " if missing and extra else "",
            "handlers not in onvm.common.ops: %s" % ", ".join(extra) if extra else ""))
    for name, fn in handlers.items():
        if not callable(fn):
            raise OnvmError("the handler of %s is not callable: %r" % (name, fn))
    return {name: (op.fields, handlers[name]) for name, op in ops.items()}


def outcome(reply):
    """A reply's answer without "ok"; a refusal raises ValueError (kind
    "input": the request was wrong) or OnvmError (kind "system")."""
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise refusal(reply if isinstance(reply, dict) else {})
    return {k: v for k, v in reply.items() if k != "ok"}
