"""The control socket under abuse: malformed, hostile, slow and foreign
clients get an error (or are dropped), and the manager carries on: it
answers ping, its NFs forward packets, its tick keeps time."""
import base64
import json
import os
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import onvm
from conftest import udp, wait_for
from onvm.common import paths
from serving import polled

# ---- helpers -------------------------------------------------------------------------

def frame(body):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return struct.pack(">I", len(body)) + body


def read_reply(s, timeout=10.0):
    """The manager's reply on s as a value, or None if it closed without one."""
    s.settimeout(timeout)
    buf = b""
    try:
        while len(buf) < 4:
            chunk = s.recv(4 - len(buf))
            if not chunk:
                return None
            buf += chunk
        (n,) = struct.unpack(">I", buf)
        body = b""
        while len(body) < n:
            chunk = s.recv(min(n - len(body), 1 << 20))
            if not chunk:
                return None
            body += chunk
    except (ConnectionResetError, socket.timeout):
        return None
    return json.loads(body)


def exchange(path, data, timeout=10.0):
    """Send raw bytes (or a JSON value, framed) to path; returns the reply or None."""
    if not isinstance(data, bytes):
        data = frame(data)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_reply(s, timeout)


def assert_refused(reply, *words):
    assert isinstance(reply, dict) and reply.get("ok") is False, reply
    for w in words:
        assert w in reply["error"], (w, reply)


def assert_healthy(m, n=20):
    """The manager process lives, answers ping, and forwards n packets end to end."""
    assert m.process.poll() is None, "the manager died"
    assert m.ctl.within(10).ping()["pid"] == m.process.pid
    m.ctl.within(10).clear_capture()
    pkts = [udp(sport=1000 + i, payload=b"healthy-%04d" % i) for i in range(n)]
    assert m.inject(pkts, port=0) == n
    out = m.capture(port=1, count=n, timeout=10, raw=True)
    assert sorted(out) == sorted(bytes(p) for p in pkts)


def b64(data):
    return base64.b64encode(data).decode()


GOOD_PKT = b64(bytes(udp(1)))


@pytest.fixture(scope="module")
def fwd():
    """One manager for the module, with a forward NF on service 1 and the
    chain 1 -> port 1."""
    with onvm.Manager(name="ctl%d" % os.getpid()) as m:
        m.launch(onvm.native("forward"), service=1)
        m.set_default_chain([1, onvm.ToPort(1)])
        m.sock = paths.sock_path(m.name)
        yield m


@pytest.fixture
def healthy(fwd):
    """fwd, checked to work before and after the test."""
    assert_healthy(fwd)
    yield fwd
    assert_healthy(fwd)
    fwd.set_default_chain([1, onvm.ToPort(1)])


class TickWatch:
    """Samples the control file's tick_ns in a thread; gap() is the longest
    wall-clock time the tick stood still."""

    def __init__(self, m):
        self.shm = m.control.shm
        self.stop = threading.Event()
        self.longest = 0.0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        last, since = self.shm.tick_ns, time.monotonic()
        while not self.stop.wait(0.002):
            v, now = self.shm.tick_ns, time.monotonic()
            if v != last:
                last, since = v, now
            self.longest = max(self.longest, now - since)

    def gap(self):
        self.stop.set()
        self.thread.join(5)
        return self.longest


# ---- malformed requests ----------------------------------------------------------------

MALFORMED = [
    # (what is sent, words the error must contain)
    (frame([]), ["JSON object", "a list"]),
    (frame({"op": "replay", "port": -1}), ["replay", "'port'", "-1"]),
    (frame(b'{"op":"capture","port":1,"max":1e999}'), ["capture", "'max'", "float"]),
    (frame(b'{"op":"capture","port":1,"max":' + b"9" * 5000 + b"}"), ["not valid JSON"]),
    (frame(b"[" * 100000 + b"]" * 100000), ["nested too deeply"]),
    (frame(b"{" + b'"a":{' * 50000 + b"}" * 50001), ["nested too deeply"]),
    (frame(bytes(range(128, 256)) * 4), ["not UTF-8"]),
    (frame(b"\xff\xfe{not json"), []),
    (frame(b"ping"), ["not valid JSON"]),
    (frame(b""), ["not valid JSON"]),
    (frame({"op": "reboot"}), ["unknown op 'reboot'", "ping"]),
    (frame({"op": 7}), ["'op'", "string"]),
    (frame({"port": 0}), ["'op'"]),
    (frame({"op": "ping", "extra": 1}), ["ping", "unknown field 'extra'"]),
    (frame("ping"), ["JSON object", "a string"]),
    (frame(None), ["JSON object", "null"]),
    (struct.pack(">I", 1 << 31), ["too large"]),
    (struct.pack(">I", 0xffffffff) + b"{}", ["too large"]),
]


@pytest.mark.parametrize("data,words", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_request_gets_an_error_and_the_manager_carries_on(healthy, data, words):
    assert_refused(exchange(healthy.sock, data), *words)


def bad_values(port_ok=1):
    """Wrong values for each field of each op: (op, field, request, words)."""
    not_ints = [True, False, 1.0, 1.5, "1", None, [], {}, [1]]
    cases = []
    for op, base in (("inject", {"port": 0, "pkts": [GOOD_PKT]}), ("capture", {"port": 1, "max": 1}),
                     ("replay", {"port": 0})):
        for v in not_ints + [-1, 2, 1 << 40]:
            cases.append((op, "port", dict(base, op=op, port=v), ["'port'"]))
    for v in not_ints + [-1, 1 << 31, 1 << 70]:
        cases.append(("capture", "max", {"op": "capture", "port": 1, "max": v}, ["'max'"]))
    for v in ["AAAA", None, 1, {}, [1], [None], ["!!not base64!!"], [b64(b"short")], [b64(b"x" * 2049)],
              [GOOD_PKT] * 8193, [GOOD_PKT, GOOD_PKT, "@"]]:
        cases.append(("inject", "pkts", {"op": "inject", "port": 0, "pkts": v}, ["'pkts'"]))
    for v in ["1", None, 1, [1], [[2]], [[2, 1, 0]], [["2", 1]], [[2.0, 1]], [[True, 1]], [[9, 1]], [[2, 0]],
              [[2, 256]], [[3, 2]], [[3, -1]], [[2, 1 << 20]], [[2, 1]] * 17, [[2, 1], [3, 1], "x"]]:
        cases.append(("set_chain", "chain", {"op": "set_chain", "chain": v}, ["'chain'"]))
    for op, field in (("inject", "port"), ("inject", "pkts"), ("capture", "port"), ("capture", "max"),
                      ("set_chain", "chain"), ("replay", "port")):
        req = {"op": op, "port": 0, "pkts": [GOOD_PKT], "max": 1, "chain": [[2, 1]]}
        req = {k: v for k, v in req.items() if k == "op" or k in {"inject": ("port", "pkts"),
               "capture": ("port", "max"), "set_chain": ("chain",), "replay": ("port",)}[op]}
        del req[field]
        cases.append((op, field, req, ["'%s' is missing" % field]))
    cases.append(("inject", "port", {"op": "inject", "port": 1 << 16, "pkts": [GOOD_PKT]}, ["'port'"]))
    return cases


def test_wrong_types_for_every_field_of_every_op(healthy):
    """Each bad field gets an error naming it, and nothing is done: no packet
    goes in, the chain stays."""
    m = healthy
    injected = m.stats()["ports"][0]["injected"]
    for op, _, req, words in bad_values():
        reply = exchange(m.sock, req)
        assert_refused(reply, op, *words)
    assert m.stats()["ports"][0]["injected"] == injected
    assert m.default_chain == [onvm.ToService(1), onvm.ToPort(1)]


def test_a_capture_of_a_port_that_is_not_a_ring_port_is_refused():
    with onvm.Manager(name="ctlnull%d" % os.getpid(), ports=["ring", "ring", "null"]) as m:
        for req in ({"op": "capture", "port": 2, "max": 1}, {"op": "inject", "port": 2, "pkts": [GOOD_PKT]}):
            assert_refused(exchange(paths.sock_path(m.name), req), "port 2 is not a ring port")
        assert m.ctl.ping()["pid"] == m.process.pid


# ---- slow, stuck and many clients ----------------------------------------------------------

def test_a_stalled_client_delays_nobody(mgr):
    """Half a request, then silence: other clients are served, an NF
    registers, the tick keeps time; the stalled client is dropped in seconds."""
    sock = paths.sock_path(mgr.name)
    watch = TickWatch(mgr)
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        stalled.connect(sock)
        body = json.dumps({"op": "ping"}).encode()
        stalled.sendall(struct.pack(">I", len(body)) + body[:5])
        t0 = time.monotonic()
        for _ in range(20):
            s = time.monotonic()
            assert exchange(sock, {"op": "ping"}, timeout=5)["ok"] is True
            assert time.monotonic() - s < 2.0, "a ping waited behind the stalled client"
            time.sleep(0.02)
        nf = mgr.launch(onvm.native("forward"), service=1, timeout=30)
        assert nf.instance is not None
        mgr.set_default_chain([1, onvm.ToPort(1)])
        assert mgr.inject([udp(i) for i in range(10)], port=0) == 10
        assert len(mgr.capture(port=1, count=10, timeout=10)) == 10
        while time.monotonic() - t0 < 1.5:
            time.sleep(0.05)
        assert watch.gap() < 0.5, "the control tick stood still for %.3f s" % watch.longest
        # dropped after the request deadline (5 s), not kept forever
        assert read_reply(stalled, timeout=20) is None
        assert time.monotonic() - t0 < 20
    finally:
        watch.gap()
        stalled.close()
    assert mgr.ctl.ping()["pid"] == mgr.process.pid


@pytest.mark.slow
def test_a_client_that_does_not_read_its_reply_delays_nobody(mgr):
    """A big capture reply nobody reads: the manager does not wait on it."""
    mgr.launch(onvm.native("forward"), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    big = numbered(3000, 1400)
    assert mgr.inject(big, port=0) == 3000
    assert wait_for(lambda: mgr.stats()["ports"][1]["tx"] >= 3000, 20)
    sock = paths.sock_path(mgr.name)
    lazy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    watch = TickWatch(mgr)
    try:
        lazy.connect(sock)
        lazy.sendall(frame({"op": "capture", "port": 1, "max": 3000}))
        time.sleep(0.5)
        for _ in range(10):
            assert exchange(sock, {"op": "ping"}, timeout=5)["ok"] is True
        time.sleep(0.5)
        assert watch.gap() < 0.5, "the control tick stood still for %.3f s" % watch.longest
        # after the reply deadline the manager gives up: the reply is cut short
        time.sleep(7)
        lazy.settimeout(10)
        got = b""
        while True:
            chunk = lazy.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        assert len(got) >= 4 and len(got) < 4 + struct.unpack(">I", got[:4])[0]
    finally:
        watch.gap()
        lazy.close()
    assert mgr.ctl.ping()["pid"] == mgr.process.pid


def test_fifty_clients_at_once(mgr):
    sock = paths.sock_path(mgr.name)
    # all connected first, then served in the reverse order: the manager must
    # answer whoever is ready, not the first in line
    conns = []
    try:
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            conns.append(s)
            s.connect(sock)
        for s in reversed(conns):
            s.sendall(frame({"op": "ping"}))
            reply = read_reply(s, timeout=5)
            assert reply and reply["ok"] and reply["pid"] == mgr.process.pid
    finally:
        for s in conns:
            s.close()
    # and 50 threads at the same moment
    barrier = threading.Barrier(50)
    replies = []

    def client():
        try:
            barrier.wait(10)
            replies.append(exchange(sock, {"op": "ping"}, timeout=20))
        except Exception as e:
            replies.append(e)
    threads = [threading.Thread(target=client) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(replies) == 50 and all(isinstance(r, dict) and r["ok"] for r in replies), replies


def test_more_clients_than_the_connection_cap_all_get_answers(mgr):
    """Past the cap (64) clients wait to be accepted, then are served."""
    sock = paths.sock_path(mgr.name)
    conns = []
    try:
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            conns.append(s)
            s.connect(sock)
        for s in reversed(conns):    # the last ones are not accepted yet
            s.sendall(frame({"op": "ping"}))
        for s in conns:
            reply = read_reply(s, timeout=20)
            assert reply and reply["ok"]
    finally:
        for s in conns:
            s.close()


# ---- big requests and replies -------------------------------------------------------------

def numbered(n, size=0):
    """n distinct frames, fast (scapy builds one): the UDP payload ends in i."""
    tpl = bytes(udp(0, payload=b"p" * size + b"\0\0\0\0"))
    return [tpl[:-4] + struct.pack(">I", i) for i in range(n)]


def test_large_inject_and_capture_go_in_pieces(mgr):
    mgr.launch(onvm.native("drop"), service=1)
    mgr.set_default_chain([1])
    assert mgr.inject(numbered(200000), port=0) == 200000
    assert mgr.stats()["ports"][0]["injected"] == 200000
    assert wait_for(lambda: sum(n["rx"] for n in mgr.stats()["nfs"].values()) == 200000, 60)
    # a request above the bound is refused without being read
    assert_refused(exchange(paths.sock_path(mgr.name), struct.pack(">I", onvm.common.protocol.MAX_REQUEST + 1)),
                   "too large")
    # replies too are bounded: 11 MB of packets come back over several replies
    mgr.launch(onvm.native("forward"), service=2)
    mgr.set_default_chain([2, onvm.ToPort(1)])
    big = numbered(8000, 1400)
    assert mgr.inject(big, port=0) == 8000
    out = mgr.capture(port=1, count=8000, timeout=30, raw=True)
    assert sorted(out) == big


# ---- who may connect ------------------------------------------------------------------

def test_socket_file_is_private_and_other_uids_are_refused(mgr):
    sock = paths.sock_path(mgr.name)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    # Let uid 65534 reach the socket through the file system (a hard link in a
    # directory it may enter, the socket made world-writable) so that only the
    # manager's peer-credential check stands in its way.
    d = tempfile.mkdtemp(prefix="onvm-ctl-")
    link = os.path.join(d, "s")
    os.chmod(d, 0o711)
    os.link(sock, link)
    os.chmod(sock, 0o666)
    try:
        assert exchange(link, {"op": "ping"})["ok"] is True     # the path itself works
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:    # the child: become nobody, ask for a shutdown
            try:
                os.close(r)
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                reply = exchange(link, {"op": "shutdown"}, timeout=10)
                os.write(w, json.dumps(reply).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            reply = json.loads(f.read() or "null")
        os.waitpid(pid, 0)
    finally:
        os.chmod(sock, 0o600)
        os.unlink(link)
        os.rmdir(d)
    assert_refused(reply, "uid 65534")
    assert mgr.running and mgr.ctl.ping()["pid"] == mgr.process.pid


# ---- fuzzing ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20)

VALID = [
    {"op": "ping"},
    {"op": "inject", "port": 0, "pkts": [GOOD_PKT, GOOD_PKT]},
    {"op": "capture", "port": 1, "max": 5},
    {"op": "clear_capture"},
    {"op": "set_chain", "chain": [[2, 1], [3, 1]]},
    {"op": "replay", "port": 0},
]
# numbers of every kind and size, where the ops expect small ints
EDGES = [-1, -2, 0, 1, 2, 63, 64, 65535, 65536, 1 << 31, 1 << 64, True, False, 1.0, -0.0, float("inf"),
         float("nan")]
numbers = st.sampled_from(EDGES) | st.integers() | st.floats()
OPS = ["ping", "inject", "capture", "clear_capture", "set_chain", "replay", "nope", ""]


@st.composite
def mutated_requests(draw):
    req = dict(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "replace", "number", "add", "op", "wrap"]))
        fields = [k for k in req if k != "op"]
        if how == "drop" and req:
            del req[draw(st.sampled_from(sorted(req)))]
        elif how == "replace" and fields:
            req[draw(st.sampled_from(fields))] = draw(json_values)
        elif how == "number" and fields:
            k = draw(st.sampled_from(fields))
            if k == "chain":
                req[k] = [[draw(numbers), draw(numbers)] for _ in range(draw(st.integers(0, 3)))]
            elif k == "pkts":
                req[k] = [GOOD_PKT, draw(numbers)]
            else:
                req[k] = draw(numbers)
        elif how == "add":
            req[draw(st.sampled_from(["port", "max", "pkts", "chain", "x", "op"]))] = draw(json_values)
        elif how == "op":
            req["op"] = draw(st.sampled_from(OPS))
        elif how == "wrap" and fields:
            k = draw(st.sampled_from(fields))
            req[k] = [req[k]] if draw(st.booleans()) else {"v": req[k]}
    return req


def fuzz_once(m, value):
    assume(not (isinstance(value, dict) and value.get("op") == "shutdown"))
    data = value if isinstance(value, bytes) else frame(json.dumps(value).encode())
    reply = exchange(m.sock, data, timeout=10)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), (value, reply)
    if not reply["ok"]:
        assert isinstance(reply.get("error"), str) and reply["error"]
    if isinstance(value, dict):
        for k in ("port", "max"):    # a bool or a float is not an int
            if isinstance(value.get(k), (bool, float)):
                assert reply["ok"] is False, (value, reply)
    assert m.process.poll() is None, "the manager died on %r" % (value,)


FUZZ = settings(deadline=None, max_examples=250, suppress_health_check=list(HealthCheck))


@FUZZ
@given(value=json_values)
def test_fuzz_random_json(fwd, value):
    fuzz_once(fwd, value)


@FUZZ
@given(value=mutated_requests())
@example(value={"op": "replay", "port": -1})
@example(value={"op": "capture", "port": 1, "max": float("inf")})
@example(value={"op": "inject", "port": True, "pkts": [GOOD_PKT]})
def test_fuzz_mutated_requests(fwd, value):
    fuzz_once(fwd, value)


@settings(deadline=None, max_examples=150, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200))
def test_fuzz_random_bytes(fwd, body):
    fuzz_once(fwd, frame(body))


def test_after_the_fuzzing_everything_still_works(fwd):
    fwd.set_default_chain([1, onvm.ToPort(1)])
    assert_healthy(fwd, 100)


# ---- the server as the NF socket will use it: long-lived connections -------------------

def test_long_lived_listener_serves_many_requests_per_connection(tmp_path, monkeypatch):
    """The shape of nf.sock: one connection per peer for its whole life, the
    peer's credentials and a pidfd for the handler, on_close when it goes."""
    from onvm.common import ops, protocol
    from onvm.mgr import control
    monkeypatch.setattr(control, "REQUEST_TIMEOUT", 0.3)
    seen, closed, logged = [], [], []

    def hello(conn, a):
        conn.data["count"] = conn.data.get("count", 0) + 1
        seen.append((conn.uid, conn.pid, conn.pidfd is not None))
        return {"n": a["n"] + 1, "count": conn.data["count"]}

    def boom(conn, a):
        raise RuntimeError("handler bug")

    server = control.ControlServer(log=logged.append)
    path = str(tmp_path / "nf.sock")
    server.listen(path, {"hello": ({"n": ops.Int(0, 100)}, hello), "boom": ({}, boom)},
                  one_shot=False, on_close=closed.append, want_pidfd=True)
    with polled(server):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            for i in range(5):
                protocol.send(s, {"op": "hello", "n": i})
                assert protocol.recv(s) == {"n": i + 1, "count": i + 1, "ok": True}
            time.sleep(0.6)     # idle between requests: no deadline
            s.sendall(frame({"op": "hello", "n": 7}) + frame({"op": "hello", "n": 8}))   # pipelined
            assert protocol.recv(s)["n"] == 8 and protocol.recv(s)["n"] == 9
            protocol.send(s, {"op": "hello", "n": 101})    # bad field: error, then closed
            assert_refused(protocol.recv(s), "'n'", "0..100")
            assert read_reply(s, 5) is None
        assert seen and all(x == (os.getuid(), os.getpid(), True) for x in seen)
        assert wait_for(lambda: len(closed) == 1, 5)
        # a handler that raises is answered and dropped; the server goes on
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            protocol.send(s, {"op": "boom"})
            assert_refused(protocol.recv(s), "internal error", "handler bug")
            assert read_reply(s, 5) is None
        assert wait_for(lambda: len(closed) == 2, 5) and any("handler bug" in m for m in logged)
        # half a request is dropped after the request deadline
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall(frame({"op": "hello", "n": 1})[:6])
            assert read_reply(s, 5) is None
        assert wait_for(lambda: len(closed) == 3, 5)
        assert server.connections == []
    assert not os.path.exists(path)


def test_a_death_is_seen_before_a_request_ready_in_the_same_poll(tmp_path):
    """A pidfd that became readable (an NF died) is handled before the
    owner's request that arrived in the same poll, so the request (a launch
    into the dead NF's slot, a chain) finds it retired."""
    from onvm.common import protocol
    from onvm.mgr import control
    order = []
    server = control.ControlServer()
    path = str(tmp_path / "own.sock")
    server.listen(path, {"chain": ({}, lambda conn, a: order.append("request") or {})}, priority=True)
    proc = subprocess.Popen(["sleep", "60"])
    pidfd = os.pidfd_open(proc.pid)
    server.watch(pidfd, lambda: (order.append("death"), server.unwatch(pidfd)))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            for _ in range(10):                   # accepted, and nothing else ready yet
                server.poll(0.05)
                if server.connections:
                    break
            assert server.connections and order == []
            protocol.send(s, {"op": "chain"})
            proc.kill()                           # both ready before the next poll
            proc.wait(5)
            for _ in range(10):
                server.poll(0.05)
                if "request" in order:
                    break
            assert order == ["death", "request"]
            assert protocol.recv(s) == {"ok": True}
    finally:
        server.close()
        os.close(pidfd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
