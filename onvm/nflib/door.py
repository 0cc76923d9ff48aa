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
        req = {"op": "register", "name": nf_name, "kind": kind, "service": service, "staged": staged}
        if ticket is not None:
            req["ticket"] = ticket
        if sdk is not None:
            req["sdk"] = sdk        # a C NF: the SDK version it was built against
        protocol.send(s, req)
        # The files come with the reply's first bytes.
        head, fds, _, _ = socket.recv_fds(s, 4, 3)
        reply = protocol.recv(s, prefix=head)
    except (OSError, ConnectionError, ValueError) as e:
        s.close()
        raise OnvmError("the manager did not answer register: %s" % e) from None
    if not reply.get("ok") or len(fds) != (2 if reply.get("hugepages", True) else 3):
        for f in fds:
            os.close(f)
        s.close()
        raise OnvmError(reply.get("error", "the manager sent no files with its answer to register"))
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
