"""The NF's side of the manager's NF door (nf.sock, served by onvm.mgr.nfdoor):
a launch ticket, register, and one request/reply call."""
import os
import socket

from ..common import paths, protocol
from ..common.errors import OnvmError

TICKET_ENV = "ONVM_NF_TICKET"


# ---- the NF's side -------------------------------------------------------------------

def ticket(manager, nf_name, service, flow_miss=False, timeout=30.0):
    """A launch ticket for one NF, from the manager's owner socket (only its
    owner and root reach it).  returns: the token."""
    try:
        reply = protocol.request(paths.sock_path(manager), {"op": "nf_ticket", "service": service,
                                                             "name": nf_name, "flow_miss": flow_miss}, timeout)
    except FileNotFoundError:
        raise OnvmError("no manager named %r is running (no %s)" % (manager, paths.sock_path(manager))) from None
    except (OSError, ConnectionError, ValueError) as e:
        raise OnvmError("cannot get a launch ticket from manager %r: %s" % (manager, e)) from None
    if not reply.get("ok"):
        raise OnvmError("manager %r gave no launch ticket: %s" % (manager, reply.get("error")))
    return reply["ticket"]


def register(manager, nf_name, kind, service, staged=False, timeout=30.0, door=None, ticket=None):
    """Connect to manager's NF socket (door: its path, if not the usual one,
    as inside a container, or a socket already connected to it) and ask for
    a slot with this launch's ticket.  staged: in no service until a
    deployment puts it there.  returns: (socket, slot, control file fd,
    stats file fd); the socket stays open for the NF's life, the caller
    closes the fds once mapped."""
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
        req = {"op": "register", "name": nf_name, "kind": kind, "service": service, "staged": staged}
        if ticket is not None:
            req["ticket"] = ticket
        protocol.send(s, req)
        # The files come with the reply's first bytes.
        head, fds, _, _ = socket.recv_fds(s, 4, 2)
        reply = protocol.recv(s, prefix=head)
    except (OSError, ConnectionError, ValueError) as e:
        s.close()
        raise OnvmError("the manager did not answer register: %s" % e) from None
    if not reply.get("ok") or len(fds) != 2:
        for f in fds:
            os.close(f)
        s.close()
        raise OnvmError(reply.get("error", "the manager sent no files with its answer to register"))
    return s, reply["slot"], fds[0], fds[1]


def call(s, req):
    """One request on the NF's connection; returns the reply or raises
    OnvmError with the manager's reason."""
    try:
        protocol.send(s, req)
        reply = protocol.recv(s)
    except (OSError, ConnectionError, ValueError) as e:
        raise OnvmError("the manager did not answer %s: %s" % (req.get("op"), e)) from None
    if not reply.get("ok"):
        raise OnvmError(reply.get("error", "the manager refused %s" % req.get("op")))
    return reply
