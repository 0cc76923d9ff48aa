"""The NF's side of the manager's NF door (nf.sock, served by onvm.mgr.nfdoor):
a launch ticket, register, and DoorClient, a typed client of the
catalogue's NF-door ops (onvm.common.ops).  In an NF process: imports only
onvm.common."""
import os
import socket

from ..common import ops, paths, protocol
from ..common.errors import OnvmError

TICKET_ENV = "ONVM_NF_TICKET"


# ---- the NF's side -------------------------------------------------------------------

def ticket(manager, nf_name, service, flow_miss=False, timeout=30.0):
    """A launch ticket for one NF, from the manager's owner socket (only its
    owner and root reach it): the catalogue's nf_ticket, as onvm.client
    asks for it.  returns: the token.  raises: ValueError for a bad name or
    service, OnvmError if the manager cannot be reached or gives none."""
    req = ops.owner_ops()["nf_ticket"].request(service=service, name=nf_name, flow_miss=flow_miss)
    try:
        reply = protocol.request(paths.sock_path(manager), req, timeout)
    except FileNotFoundError:
        raise OnvmError("no manager named %r is running (no %s)" % (manager, paths.sock_path(manager))) from None
    except (OSError, ConnectionError, ValueError) as e:
        raise OnvmError("cannot get a launch ticket from manager %r: %s" % (manager, e)) from None
    try:
        return ops.outcome(reply)["ticket"]
    except (OnvmError, ValueError) as e:
        raise type(e)("manager %r gave no launch ticket: %s" % (manager, e)) from None


def register(manager, nf_name, kind, service, staged=False, timeout=30.0, door=None, ticket=None, sdk=None):
    """Connect to manager's NF socket (door: its path, if not the usual one,
    as inside a container, or a socket already connected to it) and ask for
    a slot with this launch's ticket.  staged: in no service until a
    deployment puts it there.  returns: (socket, slot, control file fd,
    stats file fd, shared region fd or None with hugepages); the socket
    stays open for the NF's life, the caller closes the fds once mapped."""
    if isinstance(door, socket.socket):
        s = door                 # connected for us (onvm.face.sandbox: by root, before dropping to the NF's uid)
        s.settimeout(timeout)
    else:
        door = door or paths.nf_sock_path(manager)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(door)
        except FileNotFoundError:
            s.close()
            raise OnvmError("no manager named %r is running (no %s)" % (manager, door)) from None
        except OSError as e:
            s.close()
            raise OnvmError("cannot reach manager %r: %s" % (manager, e)) from None
    try:
        # sdk: a C NF's, the SDK version it was built against
        reply, fds = DoorClient(s).register(name=nf_name, kind=kind, service=service, staged=staged, ticket=ticket,
                                            sdk=sdk)
    except (OnvmError, ValueError):
        s.close()
        raise
    if len(fds) != (2 if reply.get("hugepages", True) else 3):
        for f in fds:
            os.close(f)
        s.close()
        raise OnvmError("the manager sent no files with its answer to register")
    return s, reply["slot"], fds[0], fds[1], (fds[2] if len(fds) == 3 else None)


def eal_args(manager, xmem_fd):
    """The EAL arguments of an NF of manager (after argv[0]), given what
    register() returned: a secondary of the manager's hugepage files, or,
    when the manager runs without hugepages (xmem_fd, core/xmem.c), an EAL
    of its own with no files, its own heap barely used.  Python and C NFs
    alike."""
    if xmem_fd is None:
        argv = ["--file-prefix", paths.file_prefix(manager)]
    else:
        argv = ["--no-huge", "--no-shconf", "-m", "16"]
    argv += ["--no-pci", "--no-telemetry", "--log-level", os.environ.get("ONVM_DPDK_LOG", "error")]
    if os.geteuid() != 0:
        argv += ["--iova-mode", "va"]
    return argv


_OPS = ops.nf_ops()


def _op(fn):
    """A method for the NF-door op of fn's name: the catalogue's doc first."""
    fn.__doc__ = _OPS[fn.__name__].help() + ("\n" + fn.__doc__ if fn.__doc__ else "")
    return fn


class DoorClient:
    """An NF's connection to nf.sock, with one method per op of the
    catalogue's NF door (onvm.common.ops.nf_ops) and nothing else.  Each
    takes the op's fields as keyword arguments, checks them as the manager
    does (ValueError, before sending) and returns the answer's fields; a
    refusal raises by its kind: ValueError for a bad request, OnvmError for
    one the manager would not grant or could not do; a connection that
    fails is an OnvmError.

    param sock: the connected socket (context.door inside an NF)"""

    def __init__(self, sock):
        self.sock = sock

    def _send(self, op, **args):
        req = _OPS[op].request(**args)           # ValueError, as the manager would answer
        try:
            protocol.send(self.sock, req)
        except OSError as e:
            raise OnvmError("the manager did not answer %s: %s" % (op, e)) from None

    def _call(self, op, **args):
        self._send(op, **args)
        try:
            reply = protocol.recv(self.sock)
        except (OSError, ValueError) as e:       # ConnectionError is an OSError; bad JSON a ValueError
            raise OnvmError("the manager did not answer %s: %s" % (op, e)) from None
        return ops.outcome(reply)

    @_op
    def register(self, *, name, kind, service, staged=False, ticket=None, sdk=None):
        """This method gives (the answer, the fds that came with it: control file, stats file[, shared region])."""
        self._send("register", name=name, kind=kind, service=service, staged=staged, ticket=ticket, sdk=sdk)
        fds = []
        try:
            head, fds, _, _ = socket.recv_fds(self.sock, 4, 3)    # the files come with the first bytes
            reply = protocol.recv(self.sock, prefix=head)
        except (OSError, ValueError) as e:
            for f in fds:
                os.close(f)
            raise OnvmError("the manager did not answer register: %s" % e) from None
        try:
            return ops.outcome(reply), fds
        except (OnvmError, ValueError):
            for f in fds:
                os.close(f)
            raise

    @_op
    def ready(self):
        return self._call("ready")

    @_op
    def leave(self):
        return self._call("leave")

    @_op
    def flow_add(self, *, match, chain, priority, idle_timeout=0, hard_timeout=0, in_ports=0):
        return self._call("flow_add", match=match, chain=chain, priority=priority, idle_timeout=idle_timeout,
                          hard_timeout=hard_timeout, in_ports=in_ports)

    @_op
    def flow_remove(self, *, id):
        return self._call("flow_remove", id=id)

    @_op
    def flow_events(self):
        return self._call("flow_events")

    @_op
    def flow_counters(self, *, ids):
        return self._call("flow_counters", ids=ids)

    @_op
    def flow_miss(self, *, on):
        return self._call("flow_miss", on=on)

    def __repr__(self):
        return "<DoorClient fd=%d>" % self.sock.fileno()
