"""A controller we did not write drives the SDN NF: the classic os-ken
learning switch (tests/osken_apps/learning_switch.py) as its own
osken-manager process on 127.0.0.1.  Frames between two hosts on ports 0
and 1 all arrive, both ways: the first ones flooded (a copy reaches port 2
too), the later ones through the flow director's exact rules, without the
SDN NF."""
import os
import socket
import subprocess
import sys
import time

import pytest

import onvm
from conftest import wait_for
from onvm.common.runtime import stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
A, B, PROBE = "02:00:00:00:0a:01", "02:00:00:00:0b:02", "02:00:00:00:0c:03"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def osken(tmp_path):
    """osken-manager running the learning switch; stopped by PID."""
    port = free_port()
    log = tmp_path / "osken.log"
    with open(log, "wb") as f:
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "osken_manager.py"), "--ofp-tcp-listen-port",
                              str(port), os.path.join(HERE, "osken_apps", "learning_switch.py")],
                             stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    p.log = log
    p.address = "127.0.0.1:%d" % port
    try:
        deadline = time.monotonic() + 60
        while True:
            assert p.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "osken-manager did not listen: " + log.read_text()
                time.sleep(0.1)
        yield p
    finally:
        stop_process(p, 5)


def frame(src, dst, n, sport):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    ips = {A: "192.0.2.1", B: "192.0.2.2", PROBE: "192.0.2.3"}
    dip = ips.get(dst, "192.0.2.255")
    return bytes(Ether(src=src, dst=dst) / IP(src=ips[src], dst=dip) / UDP(sport=sport, dport=7000) /
                 (b"n%06d" % n).ljust(40, b"."))


def test_a_learning_switch_from_osken_manager_delivers_every_frame_both_ways(osken):
    with onvm.Manager(name="ls%d" % os.getpid(), ports=("ring", "ring", "ring")) as mgr:
        sdn = mgr.launch(onvm.sdn.nf(controller=osken.address))
        # connected once a broadcast from a third host is flooded to ports 0 and 1
        deadline = time.monotonic() + 30
        while not mgr.capture(0, count=1, timeout=0.5, raw=True):
            assert time.monotonic() < deadline, "never connected: %s\n%s" % (osken.log.read_text(), sdn.log())
            mgr.inject(frame(PROBE, "ff:ff:ff:ff:ff:ff", 0, 9), port=2)
        time.sleep(0.2)
        for p in range(3):
            mgr.capture(p, timeout=0, raw=True)
        asked = osken.log.read_text().count("packet-in")

        def one(src, dst, n, port_in, port_out):
            f = frame(src, dst, n, 5000 if src == A else 6000)
            assert mgr.inject(f, port=port_in) == 1
            assert mgr.capture(port_out, count=1, timeout=5, raw=True) == [f], (n, osken.log.read_text())

        # the first frame from A: B is unknown, so it is flooded (port 1, and a copy to port 2)
        one(A, B, 0, 0, 1)
        assert mgr.capture(2, count=1, timeout=5, raw=True) == [frame(A, B, 0, 5000)]
        one(B, A, 0, 1, 0)        # A is known: a flow (in 2, B -> A) and the frame out of port 0
        one(A, B, 1, 0, 1)        # B is known now: a flow (in 1, A -> B)
        one(B, A, 1, 1, 0)        # the flow in the NF's table: out, and cached in the flow director
        one(A, B, 2, 0, 1)
        log = osken.log.read_text()
        assert log.count("packet-in") == asked + 3 and log.count("out FLOOD") == asked + 1, log
        # the NF caches a decision once the packet has gone on: the last one a moment after its frame
        def sdn_rules():
            return [r for r in mgr.flows.list() if r.installer == "sdn"]
        assert wait_for(lambda: len(sdn_rules()) == 2, 5), sdn_rules()
        rules = sdn_rules()
        assert sorted(r.chain for r in rules) == [["port:0"], ["port:1"]] and all(r.exact for r in rules)

        # later frames: every one, in order, both ways, none through the SDN NF
        rx0 = sdn.stats()["rx"]
        n = 500
        ab = [frame(A, B, i, 5000) for i in range(3, 3 + n)]
        ba = [frame(B, A, i, 6000) for i in range(2, 2 + n)]
        assert mgr.inject(ab, port=0) == n and mgr.inject(ba, port=1) == n
        assert mgr.capture(1, count=n, timeout=10, raw=True) == ab
        assert mgr.capture(0, count=n, timeout=10, raw=True) == ba
        assert sdn.stats()["rx"] == rx0
        assert mgr.capture(2, timeout=0.2, raw=True) == []          # no more floods
        assert osken.log.read_text().count("packet-in") == asked + 3
        counted = sorted(r.packets for r in mgr.flows.list() if r.installer == "sdn")
        assert counted == [n, n]          # (B -> A #1 and A -> B #2 went out from the NF, then were cached)
