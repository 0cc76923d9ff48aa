"""The manager's NF door: the socket (nf.sock) where NF processes register.

An NF connects, asks for a slot ("register"), joins DPDK as a secondary,
says it is ready ("ready") and keeps the connection open for its whole life;
"leave" (or the connection closing) takes it out of service.  The manager
holds a pidfd of every NF, taken from the connection's peer credentials, so
it knows the moment an NF's process is gone, whatever PID namespace the NF
runs in.  Only the NF operations exist here: an NF (or a container running
one) that can reach this socket cannot stop the manager, change the chain
or read another user's packets.

Everything is non-blocking and bounded: a slow or hostile NF cannot delay the
manager's control loop."""
import json
import os
import re
import selectors
import socket
import struct
import sys
import time

from . import paths
from ._core import ffi, lib

MAX_MESSAGE = 4096          # an NF request is a few short fields
MAX_CONNECTIONS = 4 * 128   # NFs at most, plus those still registering
REQUEST_DEADLINE = 10.0     # seconds for a request to arrive once started
SO_PEERPIDFD = 77           # Linux >= 6.5 (x86_64, arm64); not in Python 3.11's socket module
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,31}")
KIND_RE = re.compile(r"[A-Za-z0-9_.:-]{1,23}")


def peer(sock):
    """(uid, pid, pidfd) of the process at the other end, pid as this
    process sees it (the kernel translates across PID namespaces)."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    try:
        pidfd = struct.unpack("i", sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4))[0]
    except OSError:
        pidfd = os.pidfd_open(pid) if pid > 0 else -1   # older kernels: still no reuse race after this
    return uid, pid, pidfd


class NFConn:
    def __init__(self, sock, uid, pid, pidfd):
        self.sock, self.uid, self.pid, self.pidfd = sock, uid, pid, pidfd
        self.inbuf = b""
        self.outbuf = b""
        self.started = None     # when the current request began arriving
        self.slot = None
        self.closing = False


class NFDoor:
    """The NF socket, served from the manager's loop: register() its
    descriptors with the loop's selector, call handle(key) when one is
    ready and tick() every loop."""

    def __init__(self, name, sel, log=sys.stderr):
        self.name = name
        self.sel = sel
        self.log = log
        self.uid = os.geteuid()
        self.conns = {}          # socket fd -> NFConn, while connected
        self.procs = {}          # pidfd -> NFConn, while the process may live
        self.retry = {}          # slot -> "leave" / "dead" that the tables refused for now
        self.leaving = []        # (conn, deadline): "leave" answered once out of service
        path = paths.nf_sock_path(name)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)    # 0600 from the start: no window for others
        try:
            self.listener.bind(path)
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.listener.setblocking(False)
        sel.register(self.listener, selectors.EVENT_READ, ("nf-listen", None))

    # ---- the loop's side ------------------------------------------------------

    def handle(self, key, events):
        kind, conn = key.data
        if kind == "nf-listen":
            self._accept()
        elif kind == "nf-conn":
            if events & selectors.EVENT_READ:
                self._read(conn)
            if events & selectors.EVENT_WRITE and not conn.closing:
                self._write(conn)
        elif kind == "nf-pidfd":
            self._dead(conn)

    def tick(self):
        now = time.monotonic()
        for conn in list(self.conns.values()):
            if conn.started is not None and now - conn.started > REQUEST_DEADLINE:
                self._close(conn, "request not complete within %d s" % REQUEST_DEADLINE)
        for conn, deadline in list(self.leaving):
            if conn.closing or conn.slot is None:
                self.leaving.remove((conn, deadline))
            elif lib.onvm_mgr_nf_out_of_service(conn.slot) == 1 or now > deadline:
                self.leaving.remove((conn, deadline))
                self._send(conn, {"ok": True, "out_of_service": now <= deadline})
        for slot, what in list(self.retry.items()):
            fn = lib.onvm_mgr_nf_dead if what == "dead" else lib.onvm_mgr_nf_leave
            if fn(slot) >= 0:
                del self.retry[slot]

    def close(self):
        for conn in list(self.conns.values()) + list(self.procs.values()):
            self._close(conn, None)
            self._drop_pidfd(conn)
        self.sel.unregister(self.listener)
        self.listener.close()

    def kill_all(self, sig):
        """Signal every NF that is still connected, through its pidfd (never
        a reused pid).  A process that closed its connection has left; it
        is not ours to kill."""
        import signal as _signal
        for conn in list(self.conns.values()):
            if conn.pidfd >= 0:
                try:
                    _signal.pidfd_send_signal(conn.pidfd, sig)
                except ProcessLookupError:
                    pass

    # ---- connections ------------------------------------------------------------

    def _accept(self):
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:   # EMFILE and the like: try again next loop
                print("onvm manager: NF socket accept: %s" % e, file=self.log)
                return
            sock.setblocking(False)
            try:
                uid, pid, pidfd = peer(sock)
            except OSError as e:
                self._refuse(sock, "cannot read peer credentials: %s" % e)
                continue
            if uid not in (self.uid, 0):
                if pidfd >= 0:
                    os.close(pidfd)
                self._refuse(sock, "uid %d may not register NFs with this manager (owner uid %d)"
                             % (uid, self.uid))
                continue
            if len(self.conns) >= MAX_CONNECTIONS or pidfd < 0:
                if pidfd >= 0:
                    os.close(pidfd)
                self._refuse(sock, "too many NF connections" if pidfd >= 0 else "the NF's process is gone")
                continue
            conn = NFConn(sock, uid, pid, pidfd)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, ("nf-conn", conn))
            # Readable once the process exits, even if a child of it still
            # holds the connection open.
            self.sel.register(pidfd, selectors.EVENT_READ, ("nf-pidfd", conn))
            self.procs[pidfd] = conn

    def _refuse(self, sock, why):
        try:
            data = json.dumps({"ok": False, "error": why}).encode()
            sock.send(struct.pack(">I", len(data)) + data)
        except OSError:
            pass
        sock.close()

    def _close(self, conn, why):
        if conn.closing:
            return
        conn.closing = True
        if why:
            print("onvm manager: NF connection (pid %d): %s" % (conn.pid, why), file=self.log)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self.conns.pop(conn.sock.fileno(), None)
        conn.sock.close()
        if conn.slot is not None:
            # Gone from the door: out of service.  The process may live on a
            # little; its pidfd says when it is gone for good.
            self._leave(conn.slot)
        else:
            self._drop_pidfd(conn)

    def _drop_pidfd(self, conn):
        if conn.pidfd >= 0:
            try:
                self.sel.unregister(conn.pidfd)
            except (KeyError, ValueError):
                pass
            self.procs.pop(conn.pidfd, None)
            os.close(conn.pidfd)
            conn.pidfd = -1

    def _dead(self, conn):
        """The NF's process has exited (its pidfd is readable)."""
        slot = conn.slot
        self._close(conn, None)
        self._drop_pidfd(conn)
        if slot is not None:
            conn.slot = None
            if lib.onvm_mgr_nf_dead(slot) < 0:
                self.retry[slot] = "dead"

    def _leave(self, slot):
        if lib.onvm_mgr_nf_leave(slot) < 0:
            self.retry.setdefault(slot, "leave")

    def _read(self, conn):
        try:
            data = conn.sock.recv(MAX_MESSAGE + 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            return self._close(conn, "read failed: %s" % e)
        if not data:
            return self._close(conn, None)
        conn.inbuf += data
        if conn.started is None:
            conn.started = time.monotonic()
        while len(conn.inbuf) >= 4 and not conn.closing:
            (n,) = struct.unpack(">I", conn.inbuf[:4])
            if n > MAX_MESSAGE:
                return self._reply_and_close(conn, "a request is at most %d bytes, got a header of %d"
                                             % (MAX_MESSAGE, n))
            if len(conn.inbuf) < 4 + n:
                return
            body, conn.inbuf = conn.inbuf[4:4 + n], conn.inbuf[4 + n:]
            conn.started = time.monotonic() if conn.inbuf else None
            try:
                req = json.loads(body)
                reply = self._request(conn, req)
            except ValueError as e:      # JSON or a field: the NF's mistake
                return self._reply_and_close(conn, str(e))
            except RecursionError:
                return self._reply_and_close(conn, "request nested too deeply")
            except Exception as e:        # never let an NF's request stop the manager
                print("onvm manager: NF request failed: %r" % (e,), file=self.log)
                return self._reply_and_close(conn, "internal error: %s" % type(e).__name__)
            if reply is not None:
                self._send(conn, reply)

    def _reply_and_close(self, conn, why):
        self._send(conn, {"ok": False, "error": why})
        self._flush(conn)
        self._close(conn, why)

    def _send(self, conn, obj):
        data = json.dumps(obj).encode()
        conn.outbuf += struct.pack(">I", len(data)) + data
        self._flush(conn)

    def _flush(self, conn):
        try:
            while conn.outbuf:
                k = conn.sock.send(conn.outbuf)
                conn.outbuf = conn.outbuf[k:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            conn.outbuf = b""
            return
        if not conn.closing:
            self.sel.modify(conn.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0),
                            ("nf-conn", conn))

    def _write(self, conn):
        self._flush(conn)

    # ---- requests ----------------------------------------------------------------

    def _request(self, conn, req):
        if not isinstance(req, dict):
            raise ValueError("a request is a JSON object, got %s" % type(req).__name__)
        op = req.get("op")
        if op == "register":
            if conn.slot is not None:
                raise ValueError("this connection has registered already (slot %d)" % conn.slot)
            name, kind, service = req.get("name"), req.get("kind"), req.get("service")
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                raise ValueError("name must be 1..31 letters, digits, '.', '-' or '_', got %r" % (name,))
            if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
                raise ValueError("kind must be 1..23 letters, digits or ._:-, got %r" % (kind,))
            if isinstance(service, bool) or not isinstance(service, int) or not 1 <= service < lib.ONVM_MAX_SERVICES:
                raise ValueError("service ID must be an int in 1..%d, got %r" % (lib.ONVM_MAX_SERVICES - 1, service))
            slot = lib.onvm_mgr_nf_claim(name.encode(), kind.encode(), service, conn.pid)
            if slot < 0:
                return {"ok": False, "error": ffi.string(lib.onvm_last_error()).decode()}
            conn.slot = slot
            return {"ok": True, "slot": slot, "stats": paths.nf_stats_path(self.name, slot)}
        if op in ("ready", "leave"):
            if conn.slot is None:
                raise ValueError("%s before register" % op)
            if op == "leave":
                # The answer waits for the grace period: after it, no packet
                # can reach the NF's ring, so it may empty the ring and go.
                self._leave(conn.slot)
                self.leaving.append((conn, time.monotonic() + 2.0))
                return None
            if lib.onvm_mgr_nf_ready(conn.slot) < 0:
                return {"ok": False, "error": ffi.string(lib.onvm_last_error()).decode()}
            return {"ok": True}
        raise ValueError("unknown NF request %r (register, ready, leave)" % (op,))


def register(name, nf_name, kind, service, timeout=30.0):
    """The NF's side: connect and ask for a slot.  returns: (socket, slot,
    stats path); the socket stays open for the NF's life."""
    from .errors import OnvmError
    from . import protocol
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(paths.nf_sock_path(name))
    except FileNotFoundError:
        s.close()
        raise OnvmError("no manager named %r is running (no %s)" % (name, paths.nf_sock_path(name))) from None
    except OSError as e:
        s.close()
        raise OnvmError("cannot reach manager %r: %s" % (name, e)) from None
    reply = call(s, {"op": "register", "name": nf_name, "kind": kind, "service": service})
    return s, reply["slot"], reply["stats"]


def call(s, req):
    from .errors import OnvmError
    from . import protocol
    try:
        protocol.send(s, req)
        reply = protocol.recv(s)
    except (OSError, ConnectionError) as e:
        raise OnvmError("the manager did not answer %s: %s" % (req.get("op"), e)) from None
    if not reply.get("ok"):
        raise OnvmError(reply.get("error", "the manager refused %s" % req.get("op")))
    return reply
