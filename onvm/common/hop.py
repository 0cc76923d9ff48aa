"""Where a packet goes next: one vocabulary for chains, graphs, flow rules,
the CLI, JSON graph files and SDN policies.

    Hop.port(1)       a manager port        text "port:1"   wire [ONVM_TO_PORT, 1]
    Hop.service(3)    a service ID, 1..255  text "svc:3"    wire [ONVM_TO_SERVICE, 3]
    Hop.node("fw")    a deployed graph's node, by name: resolved to its service
                      where the names are known (resolve(names))

Hop.parse(x) takes every spelling a user writes: a Hop; an int (a service
ID); "port:N", "svc:N", "N" (a service ID) or a node name; onvm.Port(n);
ToPort(n); ToService(s) or ToService("name").  It validates once, against
onvm/common/limits.py (no compiled core needed), and a refusal is a
ValueError naming the problem.  str(hop) is the canonical text, which
Hop.parse reads back.  A node name is 1..31 letters, digits, _ . or -, and
not digits alone (that is a service ID).  This module runs in every process
and imports nothing above onvm.common."""
import re

from . import limits

__all__ = ["Hop", "wire_chain"]

NODE_RE = re.compile(r"[A-Za-z0-9_.-]{1,31}")
_TEXT = re.compile(r"(port|svc):(.*)")
SPELLINGS = "a service ID (N or \"svc:N\"), a port (\"port:N\") or a node name"


def _int(v):
    return not isinstance(v, bool) and isinstance(v, int)


class Hop:
    """One hop, immutable and hashable: kind "port", "svc" or "node", and its
    number (port, service) or name (node)."""
    __slots__ = ("kind", "dest", "name")

    def __init__(self, kind, dest=0, name=None):
        # use Hop.port / Hop.service / Hop.node / Hop.parse: they validate
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "dest", dest)
        object.__setattr__(self, "name", name)

    def __setattr__(self, name, value):
        raise AttributeError("hops are immutable")

    # ---- making one -------------------------------------------------------

    @classmethod
    def port(cls, n):
        if not _int(n) or not 0 <= n < limits.ONVM_MAX_PORTS:
            raise ValueError("port must be an int in 0..%d, got %r" % (limits.ONVM_MAX_PORTS - 1, n))
        return cls("port", n)

    @classmethod
    def service(cls, s):
        if not _int(s) or not 1 <= s < limits.ONVM_MAX_SERVICES:
            raise ValueError("service ID must be an int in 1..%d, got %r" % (limits.ONVM_MAX_SERVICES - 1, s))
        return cls("svc", s)

    @classmethod
    def node(cls, name):
        if not isinstance(name, str) or not NODE_RE.fullmatch(name) or name.isdigit():
            raise ValueError("a node name is 1..31 letters, digits, _ . or - (not digits alone: that is a "
                             "service ID), got %r" % (name,))
        return cls("node", 0, name)

    @classmethod
    def parse(cls, x):
        """A Hop from any spelling (see the module's doc); ValueError naming
        what is wrong."""
        if isinstance(x, Hop):
            return x
        view = getattr(x, "hop", None)           # onvm.Port, ToPort, ToService: views of a Hop
        if isinstance(view, Hop):
            return view
        if _int(x):
            return cls.service(x)
        if isinstance(x, str):
            m = _TEXT.fullmatch(x)
            if m:
                if not re.fullmatch(r"[0-9]{1,5}", m.group(2)):
                    raise ValueError("%r: %s:N takes a number, e.g. \"%s:1\"" % (x, m.group(1), m.group(1)))
                n = int(m.group(2))
                return cls.port(n) if m.group(1) == "port" else cls.service(n)
            if re.fullmatch(r"[0-9]{1,5}", x):
                return cls.service(int(x))
            if NODE_RE.fullmatch(x):
                return cls.node(x)
        raise ValueError("%r is not a node name, a service ID (N or \"svc:N\") or a port (\"port:N\")" % (x,))

    @classmethod
    def from_wire(cls, pair):
        """[action, dest] as the control protocol and the tables carry it."""
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(_int(v) for v in pair):
            raise ValueError("a hop on the wire is [action, dest], got %r" % (pair,))
        action, dest = pair
        if action == limits.ONVM_TO_PORT:
            return cls.port(dest)
        if action == limits.ONVM_TO_SERVICE:
            return cls.service(dest)
        raise ValueError("a hop's action is ONVM_TO_SERVICE (%d) or ONVM_TO_PORT (%d), got %r"
                         % (limits.ONVM_TO_SERVICE, limits.ONVM_TO_PORT, action))

    @classmethod
    def from_verdict(cls, v):
        """The hop of a C verdict, (action << 16) | dest (onvm_core.h ONVM_VERDICT)."""
        if not _int(v) or not 0 <= v < 1 << 32:
            raise ValueError("a verdict is a 32-bit unsigned int, got %r" % (v,))
        return cls.from_wire((v >> 16, v & 0xffff))

    # ---- what it is -------------------------------------------------------

    @property
    def is_port(self):
        return self.kind == "port"

    @property
    def is_service(self):
        return self.kind == "svc"

    @property
    def is_node(self):
        return self.kind == "node"

    def resolve(self, names):
        """A node as the service it is deployed as.  names: {node name:
        service ID}; ports and services come back as they are."""
        if self.kind != "node":
            return self
        if self.name not in names:
            raise ValueError("unknown node %r (deployed nodes: %s)" % (self.name, ", ".join(sorted(names)) or "none"))
        return Hop.service(names[self.name])

    def check_port(self, nb_ports):
        """This hop, if it is no port beyond a manager's nb_ports."""
        if self.kind == "port" and self.dest >= nb_ports:
            raise ValueError("port %d does not exist (ports 0..%d)" % (self.dest, nb_ports - 1))
        return self

    def wire(self, names=None):
        """[action, dest]; a node needs names ({node name: service ID})."""
        if self.kind == "node":
            return self.resolve(names or {}).wire()
        return [limits.ONVM_TO_PORT if self.kind == "port" else limits.ONVM_TO_SERVICE, self.dest]

    def verdict(self, names=None):
        """The verdict the C library reads: (action << 16) | dest."""
        action, dest = self.wire(names)
        return (action << 16) | dest

    # ---- text and identity ------------------------------------------------

    def __str__(self):
        return self.name if self.kind == "node" else "%s:%d" % (self.kind, self.dest)

    def __repr__(self):
        if self.kind == "node":
            return "Hop.node(%r)" % self.name
        return "Hop.%s(%d)" % ("port" if self.kind == "port" else "service", self.dest)

    def _key(self):
        return (self.kind, self.name if self.kind == "node" else self.dest)

    def __eq__(self, other):
        return isinstance(other, Hop) and other._key() == self._key()

    def __hash__(self):
        return hash(("onvm.Hop",) + self._key())

    def __reduce__(self):
        return (Hop, (self.kind, self.dest, self.name))


def wire_chain(chain, names=None, nb_ports=limits.ONVM_MAX_PORTS, what="a chain"):
    """[[action, dest], ...] of a list of hops in any spelling (a single hop
    is a chain of one).  names: {node name: service ID}, or a function
    returning it (called only if a node is named).  raises: ValueError
    "chain entry I: ..." naming the entry."""
    if isinstance(chain, (str, int, Hop)) or hasattr(chain, "hop") or not hasattr(chain, "__iter__"):
        chain = [chain]
    out, known = [], None
    for i, e in enumerate(chain):
        try:
            hop = Hop.parse(e).check_port(nb_ports)
            if hop.is_node:
                if known is None:
                    known = names() if callable(names) else (names or {})
                hop = hop.resolve(known)
        except ValueError as err:
            raise ValueError("chain entry %d: %s" % (i, err)) from None
        out.append(hop.wire())
    if len(out) > limits.ONVM_MAX_CHAIN:
        raise ValueError("%s has at most %d entries" % (what, limits.ONVM_MAX_CHAIN))
    return out
