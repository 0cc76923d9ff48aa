"""The NF socket (nf.sock) is reachable by every NF, so by code the
manager does not trust: whatever arrives there, the manager carries on."""
import json
import os
import socket
import struct
import time

import onvm
from conftest import udp, wait_for


def raw_exchange(mgr, data, timeout=5.0):
    """Send raw bytes to the NF socket; returns the reply object, or None if
    the manager closed the connection without one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(onvm.paths.nf_sock_path(mgr.name))
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
    return mgr._request({"op": "nf_ticket", "service": service, "name": name, "flow_miss": flow_miss})["ticket"]


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
    r = subprocess.run([sys.executable, "-c", code, onvm.paths.nf_sock_path(mgr.name), json.dumps(requests)],
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


def test_a_stalled_nf_connection_does_not_stall_the_manager(mgr):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(onvm.paths.nf_sock_path(mgr.name))
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
