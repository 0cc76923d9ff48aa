"""A tap port, moved into a network namespace this test creates: frames the
kernel sends there reach the chain, and the chain's output reaches it."""
import os
import subprocess
import sys
import textwrap

import pytest

import onvm
from conftest import udp

pytestmark = pytest.mark.privileged


@onvm.nf(service=1)
def wire(pkt):
    """A patch cable between port 0 (tap) and port 1 (ring)."""
    return onvm.ToPort(1 - pkt.port)


def in_ns(ns, *cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=60, **kw)


def test_tap_port_in_a_namespace():
    ns = "onvmtest%d" % os.getpid()
    tap = "onvt%d" % (os.getpid() % 100000)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    sniffer = None
    try:
        with onvm.Manager(name="tap%d" % os.getpid(), ports=["tap:" + tap, "ring"]) as mgr:
            subprocess.run(["ip", "link", "set", tap, "netns", ns], check=True)
            assert in_ns(ns, "ip", "link", "set", tap, "up").returncode == 0
            mgr.launch(wire)
            mgr.set_default_chain([1])

            # kernel -> tap -> chain -> ring port 1
            frame = bytes(udp(sport=4242, dport=4243))
            send = "import sys; from scapy.all import Ether, sendp; " \
                   "sendp(Ether(bytes.fromhex(sys.argv[1])), iface=sys.argv[2], count=5, verbose=False)"
            assert in_ns(ns, sys.executable, "-c", send, frame.hex(), tap).returncode == 0
            got = []
            for _ in range(50):                  # the kernel sends frames of its own too (IPv6 ND)
                got += mgr.capture(port=1, timeout=0.1, raw=True)
                if got.count(frame) == 5:
                    break
            assert got.count(frame) == 5

            # ring port 1 -> chain -> tap -> kernel (sniffed inside the namespace)
            sniff = textwrap.dedent("""
                import sys
                from scapy.all import sniff, UDP
                print("ready", flush=True)
                pkts = sniff(iface=sys.argv[1], timeout=10, count=3,
                             lfilter=lambda p: UDP in p and p[UDP].sport == 5151)
                print(len(pkts), flush=True)
            """)
            sniffer = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", sniff, tap],
                                       stdout=subprocess.PIPE, text=True)
            assert sniffer.stdout.readline().strip() == "ready"
            sent = 0
            for _ in range(100):                 # until the sniffer (opening its socket now) has 3
                sent += mgr.inject([udp(sport=5151, dport=5152)], port=1)
                try:
                    sniffer.wait(0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
            assert sniffer.stdout.readline().strip() == "3"
            assert sniffer.wait(15) == 0
            assert mgr.stats()["ports"][0]["tx"] == sent
    finally:
        if sniffer is not None and sniffer.poll() is None:
            sniffer.kill()
            sniffer.wait()
        subprocess.run(["ip", "netns", "del", ns])
    assert subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode != 0  # gone
