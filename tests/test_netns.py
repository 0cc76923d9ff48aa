"""Kernel traffic through a chain: a namespace made by onvm.Namespace, a tap
port of the manager inside it with an address, and the shipped responder
NF answering ARP and ping for an address on the chain's side."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import onvm
from onvm.common import paths
from onvm.face.doctor import check_managers
from onvm.netns import cleanup_namespaces

pytestmark = pytest.mark.privileged

PID = os.getpid()
NS = "onvmt%d" % PID
TAP = "ont%d" % (PID % 1000000)


def netns_list():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout.split()


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], capture_output=True, timeout=30).returncode == 0


def test_ping_and_arp_from_a_namespace_through_a_chain():
    with onvm.Namespace(NS) as ns:
        assert NS in netns_list() and ns.interfaces() == ["lo"]
        with onvm.Manager(name="ns%d" % PID, ports=["tap:%s@%s=10.0.0.1/24" % (TAP, NS), "ring"]) as mgr:
            assert ns.interfaces() == ["lo", TAP]
            assert not link_exists(TAP)             # made inside the namespace, never in ours
            mgr.launch(onvm.native("forward"), service=1)
            responder = mgr.launch(onvm.nfs.responder("10.0.0.2"), service=2)
            mgr.set_default_chain([1, 2])           # tap -> forward -> responder -> back out of the tap

            out = ns.cmd("ping -n -c 3 -i 0.2 -W 2 10.0.0.2")
            assert "3 packets transmitted, 3 received" in out, out
            assert ns.ping("10.0.0.2", count=3) == 0.0
            assert responder.stats()["actions"]["to_port"] >= 6   # 6 echo replies (and ARP answers)

            who_has = textwrap.dedent("""
                import sys
                from scapy.all import ARP, Ether, srp
                ans, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.2"), iface=sys.argv[1],
                             timeout=3, retry=2, verbose=False)
                for _, r in ans:
                    print(r[ARP].op, r[ARP].psrc, r[ARP].hwsrc, r[Ether].src)
            """)
            r = ns.run(sys.executable, "-c", who_has, TAP)
            assert r.stdout.split() == ["2", "10.0.0.2", "02:00:0a:00:00:02", "02:00:0a:00:00:02"], r

            # nobody answers for another address: the loss is real, not assumed
            assert ns.ping("10.0.0.3", count=1, timeout=2) == 100.0
            # the tap's RX queue keeps mbufs of its own: idle is the pool back to those
            assert mgr.stats()["pool"]["held_by_ports"] > 0
            assert mgr.wait_idle(timeout=10)
        assert ns.interfaces() == ["lo"]            # the tap went with the manager
    assert NS not in netns_list()
    assert not os.path.exists(os.path.join(paths.runtime_root(), "netns", NS))
    assert not link_exists(TAP)


def test_bad_namespaces_and_tap_ports_are_refused_and_nothing_is_made():
    with onvm.Namespace(NS):
        with pytest.raises(ValueError, match="exists already"):
            onvm.Namespace(NS)                     # ours, even: a second owner is refused
        name = "nsbad%d" % PID
        for spec, msg in [("tap:%s@%s=10.0.0.300/24" % (TAP, NS), "bad address"),
                          ("tap:%s@%s=10.0.0.1" % (TAP, NS), "bad address"),
                          ("tap:averyveryverylongname@%s=10.0.0.1/24" % NS, "1..15 characters"),
                          ("tap:%s@nosuchns%d=10.0.0.1/24" % (TAP, PID), "no network namespace"),
                          ("tap:%s=10.0.0.1/24" % TAP, "needs a namespace")]:
            with pytest.raises(ValueError, match=msg):
                onvm.Manager(name=name, ports=[spec, "ring"])
            assert not os.path.exists(paths.run_dir(name)) and not link_exists(TAP)
        assert NS in netns_list()
    for bad in ("", "a/b", "x" * 33, None):
        with pytest.raises(ValueError, match="namespace name"):
            onvm.Namespace(bad)
    assert NS not in netns_list()


@pytest.mark.serial     # counts and removes every namespace whose maker died, not only its own
def test_cleanup_removes_only_namespaces_whose_maker_died():
    other = "onvmforeign%d" % PID                   # made by someone else: never touched
    subprocess.run(["ip", "netns", "add", other], check=True, timeout=30)
    child = subprocess.Popen([sys.executable, "-c", "import onvm, sys, time; onvm.Namespace(sys.argv[1]); "
                              "print('up', flush=True); time.sleep(60)", NS], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        assert cleanup_namespaces(log=lambda msg: None) == 0    # its maker lives: kept
        assert NS in netns_list()
        child.send_signal(signal.SIGKILL)          # no atexit: the namespace is left behind
        child.wait(30)
        assert NS in netns_list()
        assert any(NS in problem for status, _, problem, _ in check_managers() if status == "warn")
        assert cleanup_namespaces(log=lambda msg: None) == 1
        assert NS not in netns_list() and other in netns_list()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        subprocess.run(["ip", "netns", "del", other], timeout=30)
        if NS in netns_list():
            subprocess.run(["ip", "netns", "del", NS], timeout=30)


def test_a_namespace_stopped_first_takes_the_tap_with_it():
    """The kernel deletes a TAP interface with its namespace (it does not
    hand it back to ours), and the manager goes on without it."""
    ns = onvm.Namespace(NS)
    try:
        with onvm.Manager(name="ns%d" % PID, ports=["tap:%s@%s=10.0.0.1/24" % (TAP, NS), "ring"]) as mgr:
            ns.stop()
            assert NS not in netns_list() and not link_exists(TAP)
            mgr.launch(onvm.native("forward"), service=1)
            mgr.set_default_chain([1, onvm.ToPort(1)])
            assert mgr.inject([b"\x02" * 60] * 10, port=1) == 10
            assert len(mgr.capture(port=1, count=10, timeout=5)) == 10
    finally:
        ns.stop()
    assert not link_exists(TAP)
