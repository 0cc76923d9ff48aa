"""The NF socket (nf.sock) is reachable by every NF, so by code the
manager does not trust: whatever arrives there, the manager carries on."""
import json
import socket
import struct
import time

import pytest

import onvm
from conftest import udp, wait_for


def raw_exchange(mgr, data, timeout=5.0):
    """Send raw bytes to the NF socket; returns the reply object, or None if
    the manager closed the connection without one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(onvm.common.paths.nf_sock_path(mgr.name))
        s.sendall(data)
        try:
            head = s.recv(4)
            if len(head) < 4:
                return None
            (n,) = struct.unpack(">I", head)
            body = b""
            while len(body) < n:
                chunk = s.recv(n - len(body))
                if not chunk:
                    return None
                body += chunk
            return json.loads(body)
        except (ConnectionError, socket.timeout):
            return None


def frame(obj):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def still_works(mgr):
    """The manager forwards packets end to end through a fresh NF."""
    nf = mgr.launch(onvm.native("forward"), service=1, name="probe%d" % len(mgr.launched))
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject([udp(sport=i) for i in range(20)], port=0)
    ok = len(mgr.capture(port=1, count=20, timeout=5, raw=True)) == 20
    nf.stop()
    return ok and mgr.running


def test_malformed_nf_requests_get_errors_and_change_nothing(mgr):
    bad = [
        frame([]),
        frame({"op": "register"}),
        frame({"op": "register", "name": "x", "kind": "native:forward", "service": -1}),
        frame({"op": "register", "name": "x", "kind": "native:forward", "service": True}),
        frame({"op": "register", "name": "x", "kind": "native:forward", "service": 1e999}),
        frame({"op": "register", "name": "../../etc", "kind": "python", "service": 1}),
        frame({"op": "register", "name": "x" * 100, "kind": "python", "service": 1}),
        frame({"op": "register", "name": "x", "kind": "a\nb", "service": 1}),
        frame({"op": "ready"}),
        frame({"op": "leave"}),
        frame({"op": "set_chain", "chain": []}),      # a management op: not here
        frame({"op": "shutdown"}),
        frame(b"\xff\xfe not json"),
        frame(b"[" * 100000 + b"]" * 100000),
        struct.pack(">I", 1 << 31),
    ]
    for data in bad:
        reply = raw_exchange(mgr, data)
        assert reply is None or reply["ok"] is False, (data[:60], reply)
        assert reply is None or reply["error"], data[:60]
    assert mgr.stats()["nfs"] == {}, "no slot was given out or left claimed"
    assert still_works(mgr)


def ticket(mgr, name, service=1, flow_miss=False):
    """A launch ticket, as Manager.launch asks the owner's socket for one."""
    return mgr.ctl.nf_ticket(service=service, name=name, flow_miss=flow_miss)["ticket"]


def in_child(mgr, requests):
    """Send NF requests from a short-lived child process, as an NF would,
    and return its replies; the child then exits."""
    import subprocess
    import sys
    code = ("import json, socket, struct, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); out = []\n"
            "for req in json.loads(sys.argv[2]):\n"
            "    b = json.dumps(req).encode(); s.sendall(struct.pack('>I', len(b)) + b)\n"
            "    n = struct.unpack('>I', s.recv(4))[0]; out.append(json.loads(s.recv(n)))\n"
            "print(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", code, onvm.common.paths.nf_sock_path(mgr.name), json.dumps(requests)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_registration_without_ready_is_reclaimed_when_its_process_exits(mgr):
    (reply,) = in_child(mgr, [{"op": "register", "name": "half", "kind": "python", "service": 1,
                               "ticket": ticket(mgr, "half")}])
    assert reply["ok"] and reply["slot"] >= 0
    # the process is gone (its pidfd says so): the claimed slot goes back
    assert wait_for(lambda: mgr.control.shm.nfs[reply["slot"]].state == 0, 5)
    assert still_works(mgr)


@pytest.mark.slow
def test_a_stalled_nf_connection_does_not_stall_the_manager(mgr):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(onvm.common.paths.nf_sock_path(mgr.name))
        s.sendall(struct.pack(">I", 200) + b'{"op": "reg')     # half a request, then nothing
        t0 = mgr.control.shm.tick_ns
        time.sleep(0.5)
        assert mgr.control.shm.tick_ns > t0, "the control tick kept going"
        assert still_works(mgr)
        s.settimeout(15)
        assert s.recv(4096) == b"", "a request that never completes is dropped at its deadline"
    assert mgr.running


def test_double_register_on_one_connection_is_refused(mgr):
    req = {"op": "register", "name": "twice", "kind": "python", "service": 1, "ticket": ticket(mgr, "twice")}
    first, second = in_child(mgr, [req, req])
    assert first["ok"]
    assert second["ok"] is False and "registered already" in second["error"]
    assert wait_for(lambda: mgr.control.shm.nfs[first["slot"]].state == 0, 5)
    assert still_works(mgr)


# ---- one NF cannot deny service to others (issue 18, item 4) ---------------------------

HOLDER = r"""
import socket, sys, time
path, n, hold, refill = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"

def connect():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(0.2)
    try:
        s.connect(path)
        s.setblocking(False)
        return s
    except OSError:
        s.close()

def alive(s):
    try:
        while True:
            if not s.recv(65536):
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False

socks = [s for s in (connect() for _ in range(n)) if s]
print("connected %d" % len(socks), flush=True)
end = time.monotonic() + hold
while time.monotonic() < end:
    time.sleep(0.2)
    if refill:      # keep n connections open: replace those the manager closed
        socks = [s for s in socks if alive(s) or s.close()]
        socks += [s for s in (connect() for _ in range(n - len(socks))) if s]
print("open %d" % sum(alive(s) for s in socks), flush=True)
"""


def holders(path, count, per, hold, refill=False):
    """count processes, each opening `per` idle connections to path and
    holding them for `hold` seconds (refill: reopening those closed)."""
    import subprocess
    import sys
    procs = [subprocess.Popen([sys.executable, "-c", HOLDER, path, str(per), str(hold), "1" if refill else "0"],
                              stdout=subprocess.PIPE, text=True) for _ in range(count)]
    for p in procs:
        assert p.stdout.readline().startswith("connected"), "the holder connected"
    return procs


def finish(procs):
    """Each holder's connections still open at its end."""
    out = []
    for p in procs:
        try:
            out.append(int(p.communicate(timeout=60)[0].split()[-1]))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def test_an_nf_registers_once_and_cannot_take_the_other_slots(mgr):
    class Squatter:
        """Opens 140 more connections to nf.sock and registers on each, with
        no ticket or with its own (used) one, as a hostile NF would."""
        def __call__(self, pkt):
            return onvm.NEXT

        def onvm_run(self, nf, error):
            import json
            import socket as so

            from onvm.common import paths, protocol
            from onvm.common.abi import ffi, lib
            from onvm.nflib import context
            with open("/proc/self/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            used = env.get(b"ONVM_NF_TICKET", b"").decode()
            ok, errors, conns = 0, set(), []
            for i in range(140):
                s = so.socket(so.AF_UNIX)
                s.settimeout(2)
                conns.append(s)
                req = {"op": "register", "name": "extra%d" % i, "kind": "python", "service": 50}
                if i % 2 and used:
                    req["ticket"] = used
                try:
                    s.connect(paths.nf_sock_path(context.manager))
                    protocol.send(s, req)
                    r = protocol.recv(s)
                except (OSError, ConnectionError, ValueError) as e:
                    r = {"ok": False, "error": str(e)}
                ok += bool(r.get("ok"))
                errors.add(r.get("error", "")[:60])
            for s in conns:
                s.close()
            print("replies: " + json.dumps([ok, sorted(errors)]), flush=True)
            b = ffi.new("struct onvm_batch *")
            while lib.onvm_nf_rx(nf, b, 100) >= 0:
                lib.onvm_nf_tx(nf, b)
            return 0

    from test_flows import replies_of
    squatter = mgr.launch(onvm.nf(name="squatter")(Squatter()), service=50)
    ok, errors = replies_of(squatter)
    assert ok == 0, errors
    assert any("launch ticket" in e or "one registration" in e for e in errors), errors
    assert len(mgr.stats()["nfs"]) == 1, "only the squatter's own slot"
    more = mgr.launch(onvm.native("forward"), service=2, replicas=3, timeout=30)
    assert len(more) == 3 and len(mgr.stats()["nfs"]) == 4
    assert still_works(mgr)


def test_a_slot_is_freed_when_its_connection_closes(mgr):
    import subprocess
    import sys
    code = ("import socket, struct, json, sys, time\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
            "b = json.dumps({'op': 'register', 'name': 'linger', 'kind': 'python', 'service': 1,"
            " 'ticket': sys.argv[2]}).encode()\n"
            "s.sendall(struct.pack('>I', len(b)) + b)\n"
            "n = struct.unpack('>I', s.recv(4))[0]; print(json.loads(s.recv(n))['slot'], flush=True)\n"
            "s.close(); time.sleep(60)\n")          # lives on without its connection
    p = subprocess.Popen([sys.executable, "-c", code, onvm.common.paths.nf_sock_path(mgr.name), ticket(mgr, "linger")],
                         stdout=subprocess.PIPE, text=True)
    try:
        slot = int(p.stdout.readline())
        assert mgr.control.shm.nfs[slot].state != 0
        assert wait_for(lambda: p.poll() is not None, 20), "the manager ended the NF that left its connection"
        assert p.returncode == -9
        assert wait_for(lambda: mgr.control.shm.nfs[slot].state == 0, 5), "its slot is free again"
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    assert still_works(mgr)


def test_idle_nf_connections_do_not_block_launches(mgr):
    # 800 idle connections: more than the socket takes and queues (512 + 128)
    from onvm.mgr.nfdoor import REGISTER_WITHIN
    procs = holders(onvm.common.paths.nf_sock_path(mgr.name), 4, 200, hold=REGISTER_WITHIN + 5)
    try:
        nf = mgr.launch(onvm.native("forward"), service=1, timeout=30)
        assert nf.alive and still_works(mgr)
    finally:
        still_open = finish(procs)
    assert still_open == [0] * 4, "idle connections that never registered are closed"


def test_idle_connections_to_the_owner_socket_do_not_hold_up_the_owner(mgr):
    # 4 processes keep 40 idle connections each open (more than the socket takes)
    procs = holders(onvm.common.paths.sock_path(mgr.name), 4, 40, hold=10, refill=True)
    try:
        for _ in range(10):
            assert mgr.ctl.within(3).ping()["pid"] == mgr.process.pid
        nf = mgr.launch(onvm.native("forward"), service=1, timeout=30)
        assert nf.alive and still_works(mgr)
    finally:
        finish(procs)
