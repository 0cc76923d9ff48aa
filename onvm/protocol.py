"""The control socket's wire format: each message is a 4-byte big-endian
length and a JSON object.  Requests carry "op"; replies carry "ok" and
either the result or "error"."""
import json
import socket
import struct

MAX_MESSAGE = 256 << 20


def send(sock, obj):
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("the manager closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(sock):
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    if n > MAX_MESSAGE:
        raise ConnectionError("message of %d bytes is too large" % n)
    return json.loads(_recv_exact(sock, n))


def request(path, obj, timeout=30.0):
    """One request, one reply, on a fresh connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        send(s, obj)
        return recv(s)
