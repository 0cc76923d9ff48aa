"""The manager's control server: Unix stream sockets speaking onvm.common.protocol
(4-byte big-endian length + a JSON object), served without ever blocking,
so the control tick in the daemon keeps its rhythm whatever clients do.

    server = ControlServer()
    server.listen(path, {"ping": ({}, lambda conn, args: {"pid": os.getpid()})})
    while running:
        server.poll(0.02)          # serves whatever is ready, then returns
        tick()

Each listening socket has its own table of ops: name -> (schema, handler),
made by onvm.common.ops.bind from the catalogue there, which owns the ops,
their fields and the validators (Int, ListOf, ...).  Every field a request
carries is checked against it BEFORE the handler runs, and the handler gets
the checked, converted values.  Anything malformed gets
{"ok": false, "error": "...", "kind": "input"} naming the problem, and the
connection is closed.  A refusal's kind says whose fault it is: "input"
(the request; a handler's ValueError: the client raises ValueError) or
"system" (a handler's OnvmError, an internal error, a refused peer: the
client raises OnvmError).  Only the owner's uid and root may connect (SO_PEERCRED).

A listener is either one-shot (one request, one reply, close: the notebook's
socket) or long-lived (a peer such as an NF keeps its connection, makes
several requests, and on_close(conn) runs when it goes away).

No client can make another wait: each peer process (by pid) holds at most
max_per_peer connections to a socket; a long-lived connection that has not
identified itself (its handler clears conn.idle_deadline) within
idle_timeout is closed; a one-shot socket at max_conns closes its oldest
connection that has sent nothing for EVICT_AFTER to take a new one; and a
priority listener (the owner's socket) is served first in every poll,
after the watched descriptors (an NF's pidfd: it died), so a request sees
every death that came before it."""
import os
import selectors
import socket
import struct
import sys
import time

from ..common import protocol
from ..common.errors import OnvmError
from ..common.ops import _show, decode, validate

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)   # Linux >= 6.5; not in Python 3.11
REQUEST_TIMEOUT = 5.0    # a request must arrive whole within this
REPLY_TIMEOUT = 5.0      # and its reply be taken within this
POLL_BUDGET = 0.005      # poll() stops serving after this long, so ticks stay regular
RECV_CHUNK = 256 << 10
DEFER = object()         # a handler's "I will answer later with conn.send()"
EVICT_AFTER = 0.5        # a full one-shot socket drops a connection silent this long for a new one
INPUT, SYSTEM = "input", "system"   # a refusal's "kind": the request was wrong / the system failed


# ---- the server ----------------------------------------------------------------------

class Listener:
    """One listening socket and what it serves (made by ControlServer.listen)."""

    def __init__(self, sock, path, ops, one_shot, on_close, max_request, max_conns, want_pidfd, allowed_uids,
                 max_per_peer, idle_timeout, priority):
        self.sock, self.path, self.ops = sock, path, ops
        self.one_shot, self.on_close = one_shot, on_close
        self.max_request, self.max_conns = max_request, max_conns
        self.want_pidfd, self.allowed_uids = want_pidfd, allowed_uids
        self.max_per_peer, self.idle_timeout, self.priority = max_per_peer, idle_timeout, priority
        self.conns = set()
        self.per_peer = {}       # pid -> open connections
        self.paused = False      # at max_conns: new clients wait in the backlog


class Connection:
    """A client.  Handlers see: uid, gid, pid (the peer's, from SO_PEERCRED),
    pidfd (with want_pidfd, else None), listener, data (a dict for the
    handler's own state), idle_deadline (a handler sets it to None once the
    peer has identified itself), send(obj) and close()."""

    def __init__(self, server, listener, sock, uid, gid, pid):
        self.server, self.listener, self.sock = server, listener, sock
        self.uid, self.gid, self.pid = uid, gid, pid
        self.pidfd = None
        self.data = {}
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closing = False     # close once outbuf is sent
        self.closed = False
        self.served = 0
        self.opened = time.monotonic()
        self.request_deadline = self.opened + REQUEST_TIMEOUT if listener.one_shot else None
        self.reply_deadline = None
        self.idle_deadline = self.opened + listener.idle_timeout if listener.idle_timeout else None

    def send(self, obj, fds=()):
        """Queue a message for the peer (a reply, or a notice on a long-lived
        connection); it goes out as the peer reads.  fds: open files that go
        with the message's first byte (SCM_RIGHTS); the caller keeps its own."""
        if self.closed:
            return
        data = protocol.encode(obj)
        if fds:
            # Sent now, so they travel with this message and no earlier one.
            if self.outbuf:
                raise OnvmError("cannot pass files behind an unread reply; read replies before asking again")
            try:
                n = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))],
                                      socket.MSG_NOSIGNAL)
            except OSError as e:
                raise OnvmError("cannot send files to the peer: %s" % e.strerror) from None
            data = data[n:]
        self.outbuf += data
        if self.reply_deadline is None:
            self.reply_deadline = time.monotonic() + REPLY_TIMEOUT
        self.server._flush(self)

    def close(self):
        self.server._close(self)

    def __repr__(self):
        return "<Connection %s pid=%s uid=%s>" % (os.path.basename(self.listener.path), self.pid, self.uid)


def _serve_order(event):
    """Watched descriptors first (an NF died: retire it before a request
    edits the tables it may hold), then the priority listener and its
    connections (the owner's requests never wait behind others'), then the
    rest."""
    obj = event[0].data
    if callable(obj) and not isinstance(obj, (Listener, Connection)):
        return 0
    return 1 if getattr(getattr(obj, "listener", obj), "priority", False) else 2


def peer_credentials(sock):
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid, gid


def peer_pidfd(sock, pid):
    """A pidfd for the peer: SO_PEERPIDFD names the very process that
    connected; pidfd_open(pid) (older kernels) could race with pid reuse.
    returns: an fd, or None if neither works."""
    try:
        return struct.unpack("i", sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4))[0]
    except OSError:
        pass
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


class ControlServer:
    """Non-blocking server for any number of listening sockets; driven by
    poll() from the owner's loop."""

    def __init__(self, log=None):
        self.sel = selectors.DefaultSelector()
        self.listeners = []
        self.log = log or (lambda msg: print("onvm control: %s" % msg, file=sys.stderr, flush=True))

    def listen(self, path, ops, one_shot=True, on_close=None, max_request=protocol.MAX_REQUEST,
               max_conns=64, want_pidfd=False, allowed_uids=None, max_per_peer=16, idle_timeout=None,
               priority=False):
        """Serve ops on a new Unix socket at path (mode 0600).

        param ops: {name: (schema, handler)}; handler(conn, args) -> a dict,
            sent back with "ok": true (ValueError/OnvmError -> an error
            reply), or DEFER to answer later with conn.send()
        param one_shot: one request per connection (else long-lived)
        param on_close: on_close(conn) when a connection ends, for any reason
        param max_request: largest request body in bytes
        param max_conns: open connections at most; more wait to be accepted
        param want_pidfd: give each connection a pidfd of its peer
        param allowed_uids: uids that may connect (default: ours and root)
        param max_per_peer: open connections one peer process may hold
        param idle_timeout: seconds a long-lived connection may stay before
            its handler clears conn.idle_deadline (None: forever)
        param priority: served before the other listeners in each poll
        returns: the Listener"""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Linux gives the socket file the mode of the socket inode: set it
            # before bind, so the file is never open to others, not even briefly.
            os.fchmod(sock.fileno(), 0o600)
            sock.bind(path)
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        if allowed_uids is None:
            allowed_uids = {os.geteuid(), 0}
        lst = Listener(sock, path, ops, one_shot, on_close, max_request, max_conns, want_pidfd, set(allowed_uids),
                       max_per_peer, idle_timeout, priority)
        self.listeners.append(lst)
        self.sel.register(sock, selectors.EVENT_READ, lst)
        return lst

    def watch(self, fd, fn):
        """Call fn() from poll() whenever fd is readable (a pidfd, say)."""
        self.sel.register(fd, selectors.EVENT_READ, fn)

    def unwatch(self, fd):
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass

    @property
    def connections(self):
        return [c for lst in self.listeners for c in lst.conns]

    def poll(self, timeout):
        """Wait up to timeout seconds for clients, serve what is ready (for at
        most about POLL_BUDGET, plus one handler), drop late connections.
        Never raises because of anything a client sent."""
        start = time.monotonic()
        deadline = self._next_deadline()
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - start))
        try:
            events = self.sel.select(timeout)
        except InterruptedError:
            events = []
        events.sort(key=_serve_order)
        for key, mask in events:
            if time.monotonic() - start > POLL_BUDGET:
                break    # the rest stay ready for the next poll
            obj = key.data
            try:
                if isinstance(obj, Listener):
                    self._accept(obj)
                elif callable(obj):
                    obj()
                else:
                    if mask & selectors.EVENT_WRITE:
                        self._flush(obj)
                    if mask & selectors.EVENT_READ and not obj.closed:
                        self._read(obj)
            except Exception as e:    # the last line of defence: log, drop, carry on
                self.log("dropped a connection after an internal error: %r" % (e,))
                if isinstance(obj, Connection):
                    self._close(obj)
        self._expire()
        return len(events)

    def close(self):
        """Close every connection and listener and remove the socket files."""
        for c in self.connections:
            self._close(c)
        for lst in self.listeners:
            if not lst.paused:
                self.sel.unregister(lst.sock)
            lst.sock.close()
            try:
                os.unlink(lst.path)
            except OSError:
                pass
        self.listeners = []
        self.sel.close()

    # ---- internals ---------------------------------------------------------------

    def _next_deadline(self):
        ds = [d for c in self.connections for d in (c.request_deadline, c.reply_deadline, c.idle_deadline)
              if d is not None]
        return min(ds) if ds else None

    def _expire(self):
        now = time.monotonic()
        for lst in self.listeners:
            if lst.paused:
                self._evict(lst)      # a silent one goes: _close takes the listener back
        for c in self.connections:
            if c.reply_deadline is not None and now > c.reply_deadline:
                self.log("dropped %r: it did not take its reply within %g s" % (c, REPLY_TIMEOUT))
                self._close(c)
            elif c.request_deadline is not None and now > c.request_deadline:
                self.log("dropped %r: no whole request within %g s" % (c, REQUEST_TIMEOUT))
                self._close(c)
            elif c.idle_deadline is not None and now > c.idle_deadline:
                self.log("dropped %r: it did not identify itself within %g s" % (c, c.listener.idle_timeout))
                self._close(c)

    def _accept(self, lst):
        for _ in range(16):    # a few per poll, so a flood cannot starve the tick
            if len(lst.conns) >= lst.max_conns and not self._evict(lst):
                if not lst.paused:    # resumed by _close
                    self.sel.unregister(lst.sock)
                    lst.paused = True
                return
            try:
                sock, _ = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:   # EMFILE and the like: try again next poll
                self.log("accept failed: %s" % e)
                return
            sock.setblocking(False)
            try:
                pid, uid, gid = peer_credentials(sock)
            except OSError:
                sock.close()
                continue
            error = None
            if uid not in lst.allowed_uids:
                error = ("uid %d may not use this socket; only the manager's owner (uid %d) and root may"
                         % (uid, os.geteuid()))
            elif lst.per_peer.get(pid, 0) >= lst.max_per_peer:
                error = ("pid %d has %d connections to this socket open already (at most %d per process)"
                         % (pid, lst.per_peer[pid], lst.max_per_peer))
            if error:
                try:
                    sock.send(protocol.encode({"ok": False, "error": error, "kind": SYSTEM}), socket.MSG_NOSIGNAL)
                except OSError:
                    pass
                sock.close()
                self.log("refused pid %d: %s" % (pid, error))
                continue
            c = Connection(self, lst, sock, uid, gid, pid)
            lst.per_peer[pid] = lst.per_peer.get(pid, 0) + 1
            if lst.want_pidfd:
                c.pidfd = peer_pidfd(sock, pid)
            lst.conns.add(c)
            self.sel.register(sock, selectors.EVENT_READ, c)

    def _evict(self, lst):
        """Room on a full one-shot socket: close its oldest connection that
        has sent nothing for EVICT_AFTER.  returns: True if one went."""
        if not lst.one_shot:
            return False
        now = time.monotonic()
        idle = [c for c in lst.conns if not c.served and not c.inbuf and now - c.opened >= EVICT_AFTER]
        if not idle:
            return False
        c = min(idle, key=lambda c: c.opened)
        self.log("dropped %r: silent for %.1f s while others waited" % (c, now - c.opened))
        self._close(c)
        return True

    def _interest(self, c):
        if c.closed:
            return
        ev = selectors.EVENT_WRITE if c.outbuf else 0
        if not c.closing and not (c.listener.one_shot and c.served):
            ev |= selectors.EVENT_READ
        key = self.sel.get_key(c.sock)
        if ev == 0:
            ev = selectors.EVENT_READ   # still notice the peer hanging up
        if key.events != ev:
            self.sel.modify(c.sock, ev, c)

    def _read(self, c):
        try:
            data = c.sock.recv(RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(c)
            return
        if c.closing or (c.listener.one_shot and c.served):
            return    # past the one request: ignore the rest
        if not c.inbuf and c.request_deadline is None:
            c.request_deadline = time.monotonic() + REQUEST_TIMEOUT
        c.inbuf += data
        self._serve_buffered(c)

    def _serve_buffered(self, c):
        while not c.closed and not c.closing and len(c.inbuf) >= 4:
            (n,) = struct.unpack(">I", c.inbuf[:4])
            if n > c.listener.max_request:
                self._fail(c, "request of %d bytes is too large (at most %d)" % (n, c.listener.max_request))
                return
            if len(c.inbuf) < 4 + n:
                return
            body = bytes(c.inbuf[4:4 + n])
            del c.inbuf[:4 + n]
            c.request_deadline = None if not c.inbuf else time.monotonic() + REQUEST_TIMEOUT
            c.served += 1
            self._dispatch(c, body)
            if c.listener.one_shot:
                c.inbuf.clear()
                c.request_deadline = None
                c.closing = True
                self._flush(c)
                return

    def _dispatch(self, c, body):
        try:
            op, args, handler = validate(decode(body), c.listener.ops)
        except ValueError as e:
            self._fail(c, str(e))
            return
        try:
            reply = handler(c, args)
        except (OnvmError, ValueError) as e:
            c.send({"ok": False, "error": str(e), "kind": SYSTEM if isinstance(e, OnvmError) else INPUT})
            return
        except Exception as e:
            self.log("op %r failed: %r" % (op, e))
            self._fail(c, "internal error in %s: %s" % (op, _show(str(e), 200)), SYSTEM)
            return
        if reply is DEFER:
            return
        if reply is None:
            reply = {}
        reply["ok"] = True
        c.send(reply)

    def _fail(self, c, error, kind=INPUT):
        """Reply with an error, then close: the stream can no longer be trusted."""
        c.inbuf.clear()
        c.request_deadline = None
        c.send({"ok": False, "error": error, "kind": kind})
        c.closing = True
        self._flush(c)

    def _flush(self, c):
        if c.closed:
            return
        while c.outbuf:
            try:
                n = c.sock.send(c.outbuf, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(c)
                return
            del c.outbuf[:n]
        if not c.outbuf:
            c.reply_deadline = None
            if c.closing:
                self._close(c)
                return
        self._interest(c)

    def _close(self, c):
        if c.closed:
            return
        c.closed = True
        lst = c.listener
        lst.conns.discard(c)
        left = lst.per_peer.get(c.pid, 1) - 1
        if left > 0:
            lst.per_peer[c.pid] = left
        else:
            lst.per_peer.pop(c.pid, None)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        if lst.paused and len(lst.conns) < lst.max_conns and lst in self.listeners:
            self.sel.register(lst.sock, selectors.EVENT_READ, lst)
            lst.paused = False
        if lst.on_close is not None:
            try:
                lst.on_close(c)    # the pidfd is still open here
            except Exception as e:
                self.log("on_close failed for %r: %r" % (c, e))
        if c.pidfd is not None:
            try:
                os.close(c.pidfd)
            except OSError:
                pass
            c.pidfd = None
