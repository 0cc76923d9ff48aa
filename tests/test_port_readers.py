"""Every reader of a port is a tap (issue 22): a capture, recordings, taps
and dpdk-dumpcap reading one port at once each get every packet, byte for
byte and in order; a reader that falls behind loses only its own copies,
counted; a second capture() of the port is refused, naming the first.  And
a paced inject of many scapy packets starts sending at once."""
import os
import subprocess
import threading
import time

import pytest

import onvm
from conftest import udp
from onvm.face.doctor import dpdk_tools
from onvm.traffic import read_pcap

N = 3000


def frames(n, tag=b""):
    return [bytes(udp(1024 + i % 60000, payload=tag + b"%07d" % i)) for i in range(n)]


@pytest.fixture
def direct(mgr):
    mgr.set_default_chain([onvm.ToPort(1)])
    return mgr


@pytest.mark.parametrize("readers", [2, 3, 4])
def test_readers_of_one_port_each_get_every_packet(direct, tmp_path, readers):
    """capture() + record(); + a tap; + dpdk-dumpcap (or, 4 with two recordings)."""
    mgr = direct
    pkts = frames(N, b"r%d-" % readers)
    rec = mgr.record(port=1, path=str(tmp_path / "a.pcap"))
    tap = mgr.tap(port=1) if readers >= 3 else None
    dumpcap = None
    if readers >= 4:
        env, cmds, _ = dpdk_tools(mgr.name, port=1, count=N, path=str(tmp_path / "d.pcapng"))
        dumpcap = subprocess.Popen(cmds["dumpcap"], env={**os.environ, **env}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        from test_dpdk_tools import read_until
        seen = read_until(dumpcap, r"Packets captured", 60)
        assert "Packets captured" in seen, seen
    try:
        # with dumpcap: paced, since its own ring (a few thousand packets) overflows when a busy machine
        # leaves it behind a burst, and then it loses its own copies (as a tap should)
        assert mgr.inject(pkts, rate=10000 if dumpcap else None) == N
        assert mgr.capture(1, count=N, timeout=20, raw=True) == pkts
        if tap is not None:
            assert tap.capture(count=N, timeout=20, raw=True) == pkts
            assert tap.stop() == 0
        if dumpcap is not None:
            dumpcap.wait(120)
            assert dumpcap.returncode == 0
            from scapy.utils import rdpcap
            assert [bytes(p) for p in rdpcap(str(tmp_path / "d.pcapng"))] == pkts
    finally:
        if dumpcap is not None and dumpcap.poll() is None:
            dumpcap.kill()
            dumpcap.wait()
        rec_n = rec.stop()
    assert rec_n == N and rec.dropped == 0
    assert [p for p, _ in read_pcap(tmp_path / "a.pcap")] == pkts
    assert mgr.stats()["ports"][1]["capture_drop"] == 0


def test_the_issue_record_then_capture_of_one_port(direct, tmp_path):
    """With a recording running, a capture of the same port gets all 3,000
    (before: 0, or a share)."""
    mgr = direct
    pkts = frames(N)
    with mgr.record(port=1, path=str(tmp_path / "r.pcap")) as rec:
        assert mgr.inject(pkts) == N
        got = mgr.capture(port=1, count=N, timeout=20, raw=True)
    assert got == pkts and rec.count == N


def test_a_slow_reader_loses_only_its_own_copies_counted(direct, tmp_path):
    """A tap with a 1 MiB ring that nobody reads while 40,000 packets pass
    keeps the first ones it had room for and counts the rest; the capture,
    a recording and a tap that is read lose nothing."""
    mgr = direct
    n = 40000
    pkts = frames(n, b"slow-")
    slow = mgr.tap(port=1, ring_mb=1)
    fast = mgr.tap(port=1)
    rec = mgr.record(port=1, path=str(tmp_path / "f.pcap"))
    got_fast = []
    reader = threading.Thread(target=lambda: got_fast.extend(fast.capture(count=n, timeout=60, raw=True)))
    reader.start()
    try:
        assert mgr.inject(pkts, timeout=30) == n
        assert mgr.capture(1, count=n, timeout=60, raw=True) == pkts
    finally:
        reader.join(70)
    assert got_fast == pkts and fast.stop() == 0
    assert rec.stop() == n and rec.dropped == 0
    assert [p for p, _ in read_pcap(tmp_path / "f.pcap")] == pkts
    kept = slow.capture(timeout=0, raw=True)
    lost = slow.stop()
    assert 0 < len(kept) < n and kept == pkts[:len(kept)]        # what fitted, in order
    assert lost == n - len(kept)                                  # and the rest, counted
    assert mgr.stats()["ports"][1]["tx"] == n                     # forwarding lost nothing


def test_a_second_capture_of_a_port_is_refused_naming_the_first(direct):
    mgr = direct
    started = threading.Event()
    first = []

    def capture():
        started.set()
        for _ in range(1000):               # until it has the ring (the main thread's tries hold it briefly)
            try:
                first.extend(mgr.capture(1, count=5, timeout=10, raw=True))
                return
            except ValueError:
                time.sleep(0.001)
    t = threading.Thread(target=capture)
    t.start()
    started.wait(5)
    try:
        with pytest.raises(ValueError, match=r"port 1's output is being read by another capture\(\).*mgr.tap"):
            for _ in range(200):            # until the thread has the ring
                assert mgr.capture(1, timeout=0.01, raw=True) == []
                time.sleep(0.01)
    finally:
        pkts = frames(5)
        assert mgr.inject(pkts) == 5
        t.join(15)
    assert first == pkts
    assert mgr.inject(pkts) == 5 and mgr.capture(1, count=5, timeout=5, raw=True) == pkts   # free again


def test_a_paced_inject_of_80000_scapy_packets_starts_at_once(direct):
    """The first packets leave while most are still scapy objects: when the
    first one is out, at most two chunks had been made into frames.  (Raw
    packets: a full Ether/IP/UDP build takes 1-2 ms each on this loaded
    machine, too slow to make 80,000 in a test.)"""
    from scapy.packet import Raw

    from onvm.traffic import PACED_CHUNK
    mgr = direct
    built = [0]

    class Counted(Raw):
        def build(self):
            built[0] += 1
            return super().build()
    n = 80000
    base = bytes(udp(1000))
    pkts = [Counted(load=base[:-6] + b"%06d" % i) for i in range(n)]
    sent = []
    t = threading.Thread(target=lambda: sent.append(mgr.inject(pkts, rate=40000, timeout=30)))
    t.start()
    try:
        first = mgr.capture(1, count=1, timeout=60, raw=True)
        made_then = built[0]
        assert first == [base[:-6] + b"000000"]
        assert made_then <= 2 * PACED_CHUNK, made_then
        rest = mgr.capture(1, count=n - 1, timeout=120, raw=True)
    finally:
        t.join(150)
    assert sent == [n] and len(rest) == n - 1 and built[0] == n
    assert [r[-6:] for r in rest] == [b"%06d" % i for i in range(1, n)]
