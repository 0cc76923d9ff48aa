"""The control socket's wire format: each message is a 4-byte big-endian
length and a JSON object.  Requests carry "op"; replies carry "ok" and
either the result or "error" with its "kind": "input" (the request was
wrong) or "system" (the manager could not do it).  The ops and their
fields: onvm.common.ops; the server: onvm.mgr.control."""
import json
import socket
import struct

from .errors import OnvmError

MAX_REQUEST = 2 << 20    # the manager refuses longer requests; Manager.inject splits to fit
MAX_REPLY = 4 << 20      # the manager's replies stay below this; Manager.capture loops


def encode(obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(data)) + data


def send(sock, obj):
    sock.sendall(encode(obj))


def _recv_exact(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("the manager closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(sock, limit=MAX_REPLY, prefix=b""):
    """One message; prefix: its first bytes, if the caller read them already."""
    (n,) = struct.unpack(">I", prefix + _recv_exact(sock, 4 - len(prefix)))
    if n > limit:
        raise ConnectionError("message of %d bytes is too large (at most %d)" % (n, limit))
    return json.loads(_recv_exact(sock, n))


def refusal(reply, default="the manager refused the request"):
    """The exception a refused reply stands for: OnvmError for a system
    failure, ValueError for bad input (and for a reply of a manager that
    predates "kind")."""
    return (OnvmError if reply.get("kind") == "system" else ValueError)(reply.get("error") or default)


def request(path, obj, timeout=30.0):
    """One request, one reply, on a fresh connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        try:
            send(s, obj)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the manager refused early; its reply says why
        return recv(s)
