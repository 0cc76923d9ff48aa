"""The notebook side of the manager's owner socket (onvm.sock): a typed
client with one method per op of onvm.common.ops.owner_ops, and nothing
else, so an op the manager does not have cannot be asked for.

    ctl = ControlClient("main", ops.Limits(nports=2, ring_ports=(0, 1)))
    ctl.ping()                            # {"pid": ..., "name": "main", "nb_ports": 2}
    ctl.set_chain(chain=[[2, 1], [3, 1]])

Each method takes the op's fields as keyword arguments, in their wire form
(ints, strings, lists; inject and capture take and give bytes), checks them
with the catalogue's validators before sending (a bad one raises the
ValueError the manager would have answered, word for word), and returns the
answer's fields.  A refusal raises by its kind: ValueError for bad input,
OnvmError when the manager could not do it; a manager that is not running
is an OnvmError.  Manager.ctl is one for a Manager's manager.

(Named client.py, not control.py: onvm/control.py was the server's flat
path before onvm/mgr/control.py, and tests/test_imports.py keeps the old
flat paths free, so a stale import fails at once.)"""
import base64

from .common import ops, paths, protocol
from .common.errors import OnvmError

_DOCS = ops.owner_ops()


def control_limits(port_specs):
    """The ops.Limits of a manager with these port specs ("ring", "pcap:...", ...)."""
    return ops.Limits(len(port_specs), tuple(p for p, s in enumerate(port_specs) if s.startswith("ring")))


def _op(fn):
    """A method for the owner's op of fn's name: its docstring from the catalogue."""
    fn.__doc__ = _DOCS[fn.__name__].help()
    return fn


class ControlClient:
    """The owner's socket of manager `name`.

    param name: the manager's name
    param limits: its ports (ops.Limits), for the checks made before sending
        (default: any manager's, and the manager checks its own)
    param timeout: seconds a request may take (see within())"""

    def __init__(self, name, limits=ops.WIDEST, timeout=60.0):
        self.name, self.limits, self.timeout = name, limits, timeout
        self.path = paths.sock_path(name)
        self.ops = ops.owner_ops(limits)

    def within(self, timeout):
        """The same client with another timeout (seconds per request)."""
        c = ControlClient.__new__(ControlClient)
        c.__dict__.update(self.__dict__, timeout=timeout)
        return c

    def _call(self, op, **args):
        req = self.ops[op].request(**args)       # ValueError, as the manager would answer
        try:
            reply = protocol.request(self.path, req, self.timeout)
        except FileNotFoundError:
            raise OnvmError("manager %r is not running" % self.name) from None
        return ops.outcome(reply)

    # ---- one method per op: the keyword arguments are the op's fields, in order ----

    @_op
    def ping(self):
        return self._call("ping")

    @_op
    def shutdown(self):
        return self._call("shutdown")

    @_op
    def nf_ticket(self, *, service, name, flow_miss=False):
        return self._call("nf_ticket", service=service, name=name, flow_miss=flow_miss)

    @_op
    def inject(self, *, port, pkts, dropped=0):
        pkts = [base64.b64encode(p).decode() if isinstance(p, (bytes, bytearray, memoryview)) else p
                for p in pkts]
        return self._call("inject", port=port, pkts=pkts, dropped=dropped)

    @_op
    def capture(self, *, port, max):
        got = self._call("capture", port=port, max=max)
        got["pkts"] = [base64.b64decode(p) for p in got["pkts"]]
        return got

    @_op
    def clear_capture(self):
        return self._call("clear_capture")

    @_op
    def replay(self, *, port):
        return self._call("replay", port=port)

    @_op
    def set_chain(self, *, chain):
        return self._call("set_chain", chain=chain)

    @_op
    def apply(self, *, paths=None, steer=None, names=[], members=[], hop_limit=0):  # noqa: B006 (never mutated)
        return self._call("apply", paths=paths, steer=steer, names=names, members=members, hop_limit=hop_limit)

    @_op
    def tap_arm(self, *, where, target, filter="", ring_mb=8):
        return self._call("tap_arm", where=where, target=target, filter=filter, ring_mb=ring_mb)

    @_op
    def tap_disarm(self, *, tap):
        return self._call("tap_disarm", tap=tap)

    @_op
    def trace_start(self):
        return self._call("trace_start")

    @_op
    def trace_read(self, *, id, end=0):
        return self._call("trace_read", id=id, end=end)

    @_op
    def flow_add(self, *, match, chain, priority, idle_timeout=0, hard_timeout=0, in_ports=0):
        return self._call("flow_add", match=match, chain=chain, priority=priority, idle_timeout=idle_timeout,
                          hard_timeout=hard_timeout, in_ports=in_ports)

    @_op
    def flow_add_many(self, *, rules):
        return self._call("flow_add_many", rules=rules)

    @_op
    def flow_remove(self, *, id):
        return self._call("flow_remove", id=id)

    @_op
    def flow_list(self, *, after=-1, max=ops.LIST_PAGE):
        return self._call("flow_list", after=after, max=max)

    @_op
    def flow_config(self, *, miss_service):
        return self._call("flow_config", miss_service=miss_service)

    def __repr__(self):
        return "<ControlClient %s>" % self.path

