"""veth ports: real TCP and ping between two namespaces made by
onvm.Namespace, through a forward NF, on veth pairs the manager makes and
opens with af_packet; bad specs refused; no pair outlives its manager."""
import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import networkx as nx
import pytest

import onvm
from onvm.common import paths
from onvm.common.ports import veth_host_name
from onvm.common.runtime import running_manager_pid
from onvm.face.doctor import cleanup

pytestmark = pytest.mark.privileged

PID = os.getpid()
NS_A, NS_B = "onvmva%d" % PID, "onvmvb%d" % PID
A, B = "10.9.0.1", "10.9.0.2"
PORTS = ["veth:v0@%s=%s/24" % (NS_A, A), "veth:v0@%s=%s/24" % (NS_B, B)]   # the same name in each namespace
HOSTS = [veth_host_name(NS_A, "v0"), veth_host_name(NS_B, "v0")]

# Receives one connection on B:5201 and prints the byte count and SHA-256 of all it got.
SERVER = textwrap.dedent("""
    import hashlib, socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], 5201))
    s.listen(1)
    s.settimeout(30)
    print("ready", flush=True)
    c, _ = s.accept()
    c.settimeout(30)
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
    print(n, h.hexdigest(), flush=True)
""")


def link_exists(name):
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True, timeout=30).returncode == 0


def veth_records(name):
    return os.listdir(os.path.join(paths.run_dir(name), "veth")) if os.path.isdir(paths.run_dir(name)) else []


def wire():
    """A forward NF between the two ports: each path leaves by the other port."""
    g = nx.DiGraph()
    g.add_node("fwd", nf=onvm.native("forward"))
    for p in (0, 1):
        g.add_edge(onvm.Port(p), "fwd")
        g.add_edge("fwd", onvm.Port(p))
    return g


def test_tcp_and_ping_through_a_forward_nf_on_veth_ports(tmp_path):
    payload = os.urandom(3 << 20) + b"end"
    (tmp_path / "payload").write_bytes(payload)
    name = "veth%d" % PID
    with onvm.Namespace(NS_A) as a, onvm.Namespace(NS_B) as b:
        with onvm.Manager(name=name, ports=PORTS) as mgr:
            assert a.interfaces() == ["lo", "v0"] and b.interfaces() == ["lo", "v0"]
            assert all(link_exists(h) for h in HOSTS) and sorted(veth_records(name)) == sorted(HOSTS)
            assert "%s/24" % A in a.cmd("ip", "-o", "addr", "show", "dev", "v0")
            assert [p["kind"] for p in mgr.stats()["ports"].values()] == ["veth", "veth"]
            mgr.deploy(wire())

            assert a.ping(B, count=3) == 0.0           # ARP and ICMP, both ways through the NF
            assert b.ping(A, count=3) == 0.0
            assert a.ping("10.9.0.3", count=1, timeout=2) == 100.0   # nobody there: the loss is real

            server = b.popen(sys.executable, "-c", SERVER, B, stdout=subprocess.PIPE, text=True)
            assert server.stdout.readline().strip() == "ready"
            send = "import socket, sys; c = socket.create_connection((sys.argv[1], 5201), timeout=30); " \
                   "c.sendall(open(sys.argv[2], 'rb').read()); c.close()"
            r = a.run(sys.executable, "-c", send, B, str(tmp_path / "payload"), timeout=60)
            assert r.returncode == 0, r.stderr
            got = server.stdout.readline().split()
            assert server.wait(30) == 0
            assert got == [str(len(payload)), hashlib.sha256(payload).hexdigest()]
            fwd = mgr["fwd"][0] if isinstance(mgr["fwd"], list) else mgr["fwd"]
            assert fwd.stats()["rx"] > len(payload) // 1500   # every segment went through the NF
            ports = mgr.stats()["ports"]
            assert ports[0]["rx"] > 0 and ports[1]["rx"] > 0 and ports[0]["tx"] > 0 and ports[1]["tx"] > 0
        # the manager took its pairs with it; the namespaces stay
        assert a.interfaces() == ["lo"] and b.interfaces() == ["lo"]
        assert not any(link_exists(h) for h in HOSTS)
    assert not os.path.exists(paths.run_dir(name))


def test_bad_veth_specs_are_refused_and_nothing_is_made():
    name = "vbad%d" % PID
    with onvm.Namespace(NS_A) as a:
        for spec, msg in [("veth:v0", "needs a namespace"),
                          ("veth:v0=10.9.0.1/24", "needs a namespace"),
                          ("veth:v0@nosuchns%d=10.9.0.1/24" % PID, "no network namespace"),
                          ("veth:averyveryverylongname@%s" % NS_A, "1..15 characters"),
                          ("veth:a/b@%s" % NS_A, "1..15 characters"),
                          ("veth:v0@%s=10.9.0.300/24" % NS_A, "bad address"),
                          ("veth:v0@%s=10.9.0.1" % NS_A, "bad address"),
                          ("veth:lo@%s=10.9.0.1/24" % NS_A, "has an interface 'lo' already")]:
            with pytest.raises(ValueError, match=msg):
                onvm.Manager(name=name, ports=[spec, "ring"])
            assert not os.path.exists(paths.run_dir(name))
            assert a.interfaces() == ["lo"]
        # a name a running manager's veth port holds is in use too
        with onvm.Manager(name="veth%d" % PID, ports=[PORTS[0], "ring"]):
            with pytest.raises(ValueError, match="its pair exists already .* a manager using it runs"):
                onvm.Manager(name=name, ports=[PORTS[0], "ring"])
            assert a.interfaces() == ["lo", "v0"]
        assert a.interfaces() == ["lo"]
        assert not link_exists(HOSTS[0])


def test_a_manager_that_fails_half_way_removes_its_veth_pair():
    """Port 0's pair is made, then port 1 (a null device with an argument
    it does not know) fails in DPDK: the start fails and the pair goes."""
    name = "vhalf%d" % PID
    with onvm.Namespace(NS_A) as a:
        with pytest.raises(onvm.OnvmError, match="port 1"):
            onvm.Manager(name=name, ports=[PORTS[0], "null:nosuchargument=1"])
        assert a.interfaces() == ["lo"]
        assert not link_exists(HOSTS[0])
        assert not os.path.exists(paths.run_dir(name))


def test_onvm_cleanup_removes_the_pair_of_a_manager_that_was_killed():
    name = "vkill%d" % PID
    other = "vother%d" % PID
    with onvm.Namespace(NS_A) as a, onvm.Namespace(NS_B) as b:
        mgr = onvm.Manager(name=name, ports=[PORTS[0], "ring"])
        try:
            assert running_manager_pid(name) == mgr.process.pid
            mgr.process.send_signal(signal.SIGKILL)        # no stop: the pair stays behind, recorded
            mgr.process.wait(30)
            assert link_exists(HOSTS[0]) and a.interfaces() == ["lo", "v0"]
            assert veth_records(name) == [HOSTS[0]]
            with onvm.Manager(name=other, ports=[PORTS[1], "ring"]):   # another manager's pair: kept
                assert cleanup(names=[name]) == 0
                assert not link_exists(HOSTS[0]) and a.interfaces() == ["lo"]
                assert link_exists(HOSTS[1]) and b.interfaces() == ["lo", "v0"]
        finally:
            mgr.stop()
    assert not link_exists(HOSTS[0]) and not link_exists(HOSTS[1])


def test_a_namespace_stopped_first_takes_its_pair_and_the_manager_goes_on():
    """The kernel deletes the pair with the namespace; the RX thread, whose
    socket then reports an error, clears it and goes on sleeping (it spun
    on ppoll at hundreds of thousands of wake-ups a second before it read
    the error) and serves the other port."""
    a = onvm.Namespace(NS_A)
    try:
        with onvm.Namespace(NS_B) as b, onvm.Manager(name="vgone%d" % PID, ports=PORTS) as mgr:
            mgr.deploy(wire())
            a.stop()
            assert not link_exists(HOSTS[0])
            b.ping(A, count=2, timeout=3)          # asks for A's address: into port 1, out of the gone port 0
            before = mgr.stats()
            subprocess.run(["sleep", "1"], timeout=30)
            after = mgr.stats()
            assert after["threads"]["rx"][0] - before["threads"]["rx"][0] < 1000   # sleeps: about 10 a second
            assert b.ping(A, count=2, timeout=3) == 100.0
            assert mgr.stats()["ports"][1]["rx"] > after["ports"][1]["rx"]
        assert not link_exists(HOSTS[1])
    finally:
        a.stop()
