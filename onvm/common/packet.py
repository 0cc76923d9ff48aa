"""Actions an NF returns, and the zero-copy packet view a Python NF gets."""
from . import limits  # the constants only: no compiled core needed
from .hop import Hop

__all__ = ["Action", "NEXT", "DROP", "ToService", "ToPort", "Packet"]


class Action:
    """What happens to a packet after an NF.  Use the constants NEXT and
    DROP, or ToService(sid) and ToPort(p)."""
    __slots__ = ("kind", "dest", "code")

    def __init__(self, kind, dest=0):
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "dest", dest)
        # The verdict the C library reads: (action << 16) | destination.
        object.__setattr__(self, "code", (kind << 16) | dest)

    def __setattr__(self, name, value):
        raise AttributeError("actions are immutable")

    def __reduce__(self):
        return (Action, (self.kind, self.dest))

    def __eq__(self, other):
        return isinstance(other, Action) and other.code == self.code

    def __hash__(self):
        return self.code

    def __repr__(self):
        return {limits.ONVM_NEXT: "NEXT", limits.ONVM_DROP: "DROP"}.get(self.kind, "Action(%d, %d)" % (self.kind, self.dest))


NEXT = Action(limits.ONVM_NEXT)
DROP = Action(limits.ONVM_DROP)


class ToService(Action):
    """Send the packet to a service (load-balanced over its instances): a
    service ID, or in a deployed graph a node's name, ToService("ids")."""
    __slots__ = ()

    def __new__(cls, service):
        if isinstance(service, str) and cls is ToService:
            return _ToNode(service)
        return object.__new__(cls)

    def __init__(self, service):
        super().__init__(limits.ONVM_TO_SERVICE, Hop.service(service).dest)

    @property
    def hop(self):
        """This action's onvm.Hop (the one vocabulary of chains and rules)."""
        return Hop("svc", self.dest)

    def __reduce__(self):
        return (ToService, (self.dest,))

    def __repr__(self):
        return "ToService(%d)" % self.dest


# Resolves a graph node's name to its service ID inside an NF: set by
# onvm.nflib.context (the NF side owns the published names; this shared leaf
# does not import it).
node_service = None


class _ToNode(ToService):
    """ToService("name"): the node's service is looked up where the action is
    used (inside a deployed NF), in the names the deployment published."""
    __slots__ = ("name",)

    def __init__(self, name):
        object.__setattr__(self, "name", Hop.node(name).name)
        object.__setattr__(self, "kind", limits.ONVM_TO_SERVICE)

    @property
    def hop(self):
        return Hop("node", 0, self.name)

    @property
    def dest(self):
        if node_service is None:      # outside an NF process: nothing published the names here
            raise ValueError("ToService(%r): node names resolve inside a deployed NF" % (self.name,))
        return node_service(self.name)     # 0 (refused, counted) if no such node

    @property
    def code(self):
        return (limits.ONVM_TO_SERVICE << 16) | self.dest

    def __reduce__(self):
        return (ToService, (self.name,))

    def __eq__(self, other):
        return isinstance(other, _ToNode) and other.name == self.name

    def __hash__(self):
        return hash(("ToService", self.name))

    def __repr__(self):
        return "ToService(%r)" % self.name


class ToPort(Action):
    """Send the packet out of a port."""
    __slots__ = ()

    def __init__(self, port):
        super().__init__(limits.ONVM_TO_PORT, Hop.port(port).dest)

    @property
    def hop(self):
        """This action's onvm.Hop (the one vocabulary of chains and rules)."""
        return Hop("port", self.dest)

    def __reduce__(self):
        return (ToPort, (self.dest,))

    def __repr__(self):
        return "ToPort(%d)" % self.dest


def dissect(raw):
    """A frame as a scapy packet, dissected past Ethernet (scapy binds IP,
    TCP, IPv6... to Ether only once their layers are imported)."""
    import scapy.layers.inet  # noqa: F401
    import scapy.layers.inet6  # noqa: F401
    from scapy.layers.l2 import Ether
    return Ether(raw)


BROADCAST = "ff:ff:ff:ff:ff:ff"


def frame(pkt):
    """The bytes of a packet to inject (scapy, bytes or bytearray).  A scapy
    Ether with no destination would have scapy look one up on this host's
    network (ARP needs root, and onvm's ports are not that network; a user
    sees "getmacbyip failed" warnings): it gets broadcast, scapy's own
    fallback, the same for every user."""
    if not hasattr(pkt, "build"):
        return bytes(pkt)
    from scapy.layers.l2 import Ether
    if isinstance(pkt, Ether) and pkt.fields.get("dst") is None:
        pkt = pkt.copy()
        pkt.dst = BROADCAST
    return bytes(pkt)


class Packet:
    """One packet in the shared pool, as a Python NF sees it.

    data: a writable memoryview of the bytes, in place (no copy).
    len, port (arrival port), hash (symmetric 5-tuple hash from RX).
    scapy(): the packet dissected by scapy (a copy).
    Valid only inside the callback that received it: the run loop reuses
    its Packets, so one kept for later shows a later packet's bytes."""
    __slots__ = ("_b", "_i", "_data")
    _pool = None  # a memoryview over the whole packet pool; set by onvm.nflib.run

    def __init__(self, batch, i, data=None):
        self._b = batch
        self._i = i
        if data is None:
            o = batch.off[i]
            data = self._pool[o:o + batch.len[i]]
        self._data = data

    @property
    def data(self):
        return self._data

    @property
    def len(self):
        return len(self._data)

    def __len__(self):
        return len(self._data)

    @property
    def port(self):
        return self._b.port[self._i]

    @property
    def hash(self):
        return self._b.hash[self._i]

    def __bytes__(self):
        return bytes(self.data)

    def scapy(self):
        return dissect(bytes(self))

    def __repr__(self):
        return "<Packet len=%d port=%d hash=%#010x>" % (self.len, self.port, self.hash)


def repoint(pkts, offs, lens):
    """Point pkts[i] (the Packet of slot i of a batch, made once) at the
    bytes of this burst's packet i, for each i of offs and lens (the
    batch's offsets and lengths, read in one go).  An NF's run loop reuses
    its Packets: making one per packet cost more than the NF's own work."""
    pool = Packet._pool
    for p, o, ln in zip(pkts, offs, lens):
        p._data = pool[o:o + ln]
