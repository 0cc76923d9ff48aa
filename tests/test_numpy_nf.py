"""numpy NFs (@onvm.nf(batch="numpy")): real packets through a real manager,
each one's verdict checked against what the filter should decide for it."""
import os
import time

import numpy as np
import pytest

import onvm
from conftest import udp, wait_for


@onvm.nf(service=1, batch="numpy")
def no_telnet(burst):
    """The documented example: drop TCP to port 23, pass everything else."""
    h = burst.hdr
    dport = h[:, 36].astype(np.uint16) << 8 | h[:, 37]
    return ~((h[:, 23] == 6) & (dport == 23))


def tcp(sport, dport):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="198.51.100.1", dst="203.0.113.9") / \
        TCP(sport=sport, dport=dport) / b"x"


def test_a_numpy_filter_decides_each_packet(mgr):
    n = mgr.launch(no_telnet)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    # interleaved, so every burst mixes packets to drop and to pass
    pkts = []
    for i in range(200):
        pkts.append(tcp(1000 + i, 23 if i % 3 == 0 else 22 + (i % 2) * 58))   # 23 (drop), 22 or 80
        pkts.append(udp(sport=2000 + i, dport=23))                             # UDP to 23 passes
    mgr.inject(pkts, port=0)
    want = [bytes(p) for p in pkts if not (p.haslayer("TCP") and p["TCP"].dport == 23)]
    out = mgr.capture(port=1, count=len(want), timeout=10, raw=True)
    assert sorted(out) == sorted(want)
    st = n.stats()
    assert st["kind"] == "python:numpy"
    assert wait_for(lambda: n.stats()["rx"] == 400)
    assert n.stats()["errors"] == 0


@onvm.nf(service=1, batch="numpy")
def steer_and_mark(burst):
    """Writes through the zero-copy view (byte 5 of the source MAC := the
    packet's length mod 256) and answers with action codes: odd UDP source
    ports to port 1, even ones to port 0."""
    burst.view[burst.off, 11] = (burst.len & 0xff).astype(np.uint8)
    sport = burst.hdr[:, 34].astype(np.uint32) << 8 | burst.hdr[:, 35]
    return np.where(sport % 2 == 1, onvm.ToPort(1).code, onvm.ToPort(0).code).astype(np.uint32)


def test_numpy_nf_writes_in_place_and_steers_by_code(mgr):
    mgr.launch(steer_and_mark)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    pkts = [udp(sport=3000 + i, payload=b"p" * (i % 40)) for i in range(100)]
    mgr.inject(pkts, port=0)
    odd = mgr.capture(port=1, count=50, timeout=10, raw=True)
    even = mgr.capture(port=0, count=50, timeout=10, raw=True)
    for got, parity in ((odd, 1), (even, 0)):
        want = []
        for p in pkts:
            if p["UDP"].sport % 2 == parity:
                b = bytearray(bytes(p))
                b[11] = len(b) & 0xff
                want.append(bytes(b))
        assert sorted(got) == sorted(want)


def held_until(gate, batch):
    """An NF that holds its first burst until the file gate exists (its ring
    fills meanwhile), writes into bytes 6-7 of each packet (the source MAC)
    the size of the burst it came in, and drops TCP to port 23."""
    def wait():
        deadline = time.monotonic() + 30
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)

    if batch == "numpy":
        def held(burst):
            wait()
            burst.view[burst.off, 6] = burst.n >> 8
            burst.view[burst.off, 7] = burst.n & 0xff
            h = burst.hdr
            return ~((h[:, 23] == 6) & (h[:, 36] == 0) & (h[:, 37] == 23))
    else:
        def held(pkts):
            wait()
            out = []
            for p in pkts:
                d = p.data
                d[6], d[7] = len(pkts) >> 8, len(pkts) & 0xff
                out.append(onvm.DROP if d[23] == 6 and d[36] == 0 and d[37] == 23 else onvm.NEXT)
            return out
    return onvm.nf(name="held", service=1, batch=batch)(held)


@pytest.mark.parametrize("batch, waiting, bursts", [
    ("numpy", 300, [256, 44]),          # numpy NFs: what waits, up to 256 at once
    (True, 100, [32, 32, 32, 4]),       # batch=True NFs keep bursts of at most 32 (notebook 05's slow NF)
])
def test_a_burst_takes_what_waits_in_the_ring(mgr, tmp_path, batch, waiting, bursts):
    gate = str(tmp_path / "go")
    n = mgr.launch(held_until(gate, batch))
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject([udp(sport=999)], port=0)
    assert wait_for(lambda: n.stats()["rx"] == 1, timeout=10)      # in the callback, held
    pkts = [tcp(1000 + i, 23 if i % 3 == 0 else 80) if i % 2 else udp(sport=2000 + i, dport=23)
            for i in range(waiting)]
    assert mgr.inject(pkts, port=0) == waiting
    assert wait_for(lambda: mgr.control.sample().nfs[n.instance].queued == waiting, timeout=10)
    open(gate, "w").close()
    # the ring is taken a burst at a time, in arrival order: packet i came in burst sizes[i]
    sizes = [1] + [size for size in bursts for _ in range(size)]
    want = []
    for p, size in zip([udp(sport=999)] + pkts, sizes):
        if not (p.haslayer("TCP") and p["TCP"].dport == 23):
            b = bytearray(bytes(p))
            b[6], b[7] = size >> 8, size & 0xff
            want.append(bytes(b))
    out = mgr.capture(port=1, count=len(want), timeout=10, raw=True)
    assert sorted(out) == sorted(want)
    dropped = 1 + waiting - len(want)
    assert wait_for(lambda: n.stats()["actions"]["drop"] == dropped)
    st = n.stats()
    assert (st["rx"], st["errors"], st["actions"]["next"]) == (1 + waiting, 0, len(want))


@onvm.nf(service=1, batch="numpy")
def wrong_shape(burst):
    return np.ones(burst.n + 1, dtype=bool)


def test_a_wrong_answer_drops_the_burst_and_counts_errors(mgr):
    n = mgr.launch(wrong_shape)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject([udp(sport=i) for i in range(20)], port=0)
    assert wait_for(lambda: n.stats().get("rx") == 20)
    assert mgr.capture(port=1, timeout=0.5, raw=True) == []
    assert wait_for(lambda: n.stats()["errors"] >= 1)
    assert "numpy callback failed: TypeError" in n.log()


@onvm.nf(service=1, batch="numpy")
def rebinds(burst):
    burst.hdr = burst.hdr[:1]      # a Burst is reused for the next burst of its size: refused
    return onvm.NEXT


def test_a_burst_is_read_only(mgr):
    n = mgr.launch(rebinds)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject([udp(sport=i) for i in range(5)], port=0)
    assert wait_for(lambda: n.stats().get("rx") == 5)
    assert wait_for(lambda: n.stats()["actions"]["drop"] == 5)
    assert mgr.capture(port=1, timeout=0.5, raw=True) == []
    assert "numpy callback failed: AttributeError: a Burst's attributes are read-only" in n.log()


def test_batch_takes_only_true_false_or_numpy():
    with pytest.raises(ValueError, match='batch is True, False or "numpy"'):
        onvm.nf(batch="pandas")(lambda b: onvm.NEXT)
