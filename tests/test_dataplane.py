"""The data plane as a user drives it: real manager, real NF processes, real
packets through shared hugepage memory."""
import os
import signal
import threading
import time

import pytest

import onvm
from conftest import udp, wait_for


@onvm.nf(service=1)
def mark(pkt):
    pkt.data[-1] = 0x42
    return onvm.NEXT


@onvm.nf(service=1)
def tag_instance(pkt):
    pkt.data[-1] = onvm.current_nf().instance
    return onvm.NEXT


def test_two_service_chain_is_byte_exact(mgr):
    mgr.launch(mark)
    mgr.launch(onvm.native("forward"), service=2)
    mgr.set_default_chain([1, 2, onvm.ToPort(1)])
    sent = [bytes(udp(sport=i)) for i in range(1000)]
    assert mgr.inject(sent, port=0) == 1000
    out = mgr.capture(port=1, count=1000, timeout=10, raw=True)
    assert len(out) == 1000
    assert out == [p[:-1] + b"\x42" for p in sent]   # one replica: order kept too
    s = mgr.stats()
    by_name = {n["name"]: n for n in s["nfs"].values()}
    assert by_name["mark"]["rx"] == 1000 and by_name["mark"]["kind"] == "python"
    assert by_name["forward"]["rx"] == 1000 and by_name["forward"]["kind"] == "native:forward"
    assert s["ports"][0]["rx"] == 1000 and s["ports"][1]["tx"] == 1000
    assert mgr.wait_idle()


def test_capture_returns_scapy_packets(mgr):
    from scapy.layers.inet import UDP
    mgr.launch(onvm.native("forward"), service=2)
    mgr.set_default_chain([2, onvm.ToPort(1)])
    mgr.inject([udp(sport=7, dport=99)], port=0)
    out = mgr.capture(port=1, count=1, timeout=5)
    assert len(out) == 1 and out[0][UDP].sport == 7 and out[0][UDP].dport == 99


def flow_key(raw):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    p = Ether(raw)
    return tuple(sorted([(p[IP].src, p[UDP].sport), (p[IP].dst, p[UDP].dport)]))


def test_replicas_keep_both_directions_of_a_flow_together(mgr):
    replicas = mgr.launch(tag_instance, replicas=2)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    pkts = []
    for _ in range(3):
        for i in range(64):
            pkts.append(bytes(udp(sport=1000 + i, dport=53, src="198.51.100.1", dst="203.0.113.9")))
            pkts.append(bytes(udp(sport=53, dport=1000 + i, src="203.0.113.9", dst="198.51.100.1")))
    assert mgr.inject(pkts, port=0) == len(pkts)
    out = mgr.capture(port=1, count=len(pkts), timeout=10, raw=True)
    assert len(out) == len(pkts)
    tags = {}
    for raw in out:
        tags.setdefault(flow_key(raw), set()).add(raw[-1])
    assert len(tags) == 64
    assert all(len(t) == 1 for t in tags.values()), "a flow was split across replicas"
    used = set().union(*tags.values())
    assert used == {r.instance for r in replicas}, "both replicas get traffic"
    assert all(r.stats()["rx"] > 0 for r in replicas)


@onvm.nf(service=1)
def classify(pkt):
    dport = (pkt.data[36] << 8) | pkt.data[37]      # UDP destination port
    if dport == 1:
        return onvm.DROP
    if dport == 2:
        return onvm.ToService(3)
    if dport == 3:
        return onvm.ToPort(0)
    if dport == 4:
        return onvm.ToService(9)                     # nobody provides 9: refused
    return onvm.NEXT


@onvm.nf(service=3)
def to_port1(pkt):
    return onvm.ToPort(1)


def test_actions_do_what_they_say_and_counters_add_up(mgr):
    c = mgr.launch(classify)
    f = mgr.launch(onvm.native("forward"), service=2)
    t = mgr.launch(to_port1)
    mgr.set_default_chain([1, 2, onvm.ToPort(1)])
    pkts = [bytes(udp(sport=5000 + i, dport=d)) for d in (1, 2, 3, 4, 5) for i in range(100)]
    assert mgr.inject(pkts, port=0) == 500
    out1 = mgr.capture(port=1, count=200, timeout=10, raw=True)
    out0 = mgr.capture(port=0, count=100, timeout=10, raw=True)
    assert sorted(out1) == sorted([p for p in pkts if p[37] in (2, 5)])
    assert sorted(out0) == sorted([p for p in pkts if p[37] == 3])
    assert mgr.wait_idle()
    s = mgr.stats()
    cs, fs, ts = s["nfs"][c.instance], s["nfs"][f.instance], s["nfs"][t.instance]
    assert cs["actions"] == {"next": 100, "drop": 100, "to_service": 200, "to_port": 100}
    assert cs["refused"] == 100 and fs["rx"] == 100 and ts["rx"] == 100
    for n in (cs, fs, ts):   # per NF: in = actions; what it passed on was sent, lost or refused
        assert n["rx"] == sum(n["actions"].values())
        assert n["rx"] - n["actions"]["drop"] == n["tx"] + n["tx_drop"] + n["refused"] + n["chain_end"]
    p0, p1 = s["ports"][0], s["ports"][1]
    drops = sum(n["actions"]["drop"] + n["refused"] + n["chain_end"] + n["tx_drop"] for n in (cs, fs, ts))
    assert p0["rx"] == 500 == p0["tx"] + p1["tx"] + drops + p0["rx_drop"]


def test_python_and_native_nfs_mix_in_one_chain(mgr):
    mgr.launch(onvm.native("count"), service=2)
    mgr.launch(mark)
    mgr.launch(onvm.native("forward"), service=3)
    mgr.set_default_chain([2, 1, 3, onvm.ToPort(1)])
    mgr.inject([udp(sport=i) for i in range(50)], port=0)
    out = mgr.capture(port=1, count=50, timeout=5, raw=True)
    assert len(out) == 50 and all(p[-1] == 0x42 for p in out)
    assert mgr["count"].stats()["app"][1] == 50   # count tallies UDP packets


def test_killed_replica_hands_its_flows_over_and_no_packet_leaks(mgr):
    a, b = mgr.launch(tag_instance, replicas=2)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    flows = [bytes(udp(sport=2000 + i)) for i in range(64)]
    stop = threading.Event()
    sent = [0]

    def traffic():
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            sent[0] += mgr.inject(flows, port=0)
            time.sleep(0.002)

    th = threading.Thread(target=traffic)
    th.start()
    try:
        assert wait_for(lambda: a.stats().get("rx", 0) > 500 and b.stats().get("rx", 0) > 500, 10)
        os.kill(a.pid, signal.SIGSTOP)    # a holds still: its flows queue in its ring
        time.sleep(0.05)
        a.kill()
        # the manager notices at once (pidfd) and drops it from service 1
        assert wait_for(lambda: a.instance not in mgr.stats()["nfs"], 3)
        mgr.capture(port=1, timeout=0.3, raw=True)      # discard what came before
        time.sleep(0.3)
        after = mgr.capture(port=1, timeout=0.3, raw=True)
    finally:
        stop.set()
        th.join()
    assert after and {p[-1] for p in after} == {b.instance}
    assert mgr.wait_idle(5), "every mbuf is back in the pool once traffic stops"
    assert wait_for(lambda: mgr.control.shm.nfs[a.instance].state == 0, 5)
    assert mgr.control.shm.nfs[a.instance].recovered > 0, "recovery freed what it held"
    assert b.alive and b.stats()["rx"] > 0


def test_generate_feeds_a_sink(mgr):
    mgr.set_default_chain([10, 3])
    mgr.launch(onvm.native("sink"), service=3)
    # paced: at full speed the sink's ring may overflow (counted as rx_drop)
    mgr.launch(onvm.native("generate", count=5000, size=128, flows=8, rate=100000), service=10)
    sink = mgr["sink"]
    assert wait_for(lambda: sink.stats()["rx"] == 5000, 10)
    app = sink.stats()["app"]
    assert 0 < app[0] <= 5000 and app[2] > 0     # latency sampled from generate's timestamps
    assert mgr["generate"].stats()["created"] == 5000
    assert mgr.wait_idle()


@onvm.nf(service=1, batch=True)
def batch_mark(pkts):
    for p in pkts:
        p.data[-1] = 0x42
    return onvm.NEXT


def test_batch_api(mgr):
    mgr.launch(batch_mark)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject([udp(sport=i) for i in range(300)], port=0)
    out = mgr.capture(port=1, count=300, timeout=5, raw=True)
    assert len(out) == 300 and all(p[-1] == 0x42 for p in out)
    assert mgr["batch_mark"].stats()["kind"] == "python:batch"


@onvm.nf(service=1)
def forgets_to_return(pkt):
    pkt.data[-1] = 1


def test_callback_errors_are_counted_and_reported(mgr):
    n = mgr.launch(forgets_to_return)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject([udp(sport=i) for i in range(10)], port=0)
    assert wait_for(lambda: n.stats()["errors"] == 10)
    assert mgr.capture(port=1, timeout=0.2, raw=True) == []
    assert "return onvm.NEXT" in n.log()
    assert mgr.wait_idle()


def test_two_managers_side_by_side():
    pid = __import__("os").getpid()
    with onvm.Manager(name="side-a%d" % pid) as a, onvm.Manager(name="side-b%d" % pid) as b:
        a.launch(onvm.native("forward"), service=1)
        b.launch(onvm.native("forward"), service=1)
        a.set_default_chain([1, onvm.ToPort(1)])
        b.set_default_chain([1, onvm.ToPort(1)])
        a.inject([udp(sport=i) for i in range(10)], port=0)
        b.inject([udp(sport=i) for i in range(20)], port=0)
        assert len(a.capture(port=1, count=10, timeout=5)) == 10
        assert len(b.capture(port=1, count=20, timeout=5)) == 20
        assert a.stats()["ports"][0]["rx"] == 10 and b.stats()["ports"][0]["rx"] == 20


def test_generate_at_full_speed_loses_nothing_silently(mgr):
    mgr.set_default_chain([10, 3])
    sink = mgr.launch(onvm.native("sink"), service=3)
    mgr.launch(onvm.native("generate", count=20000), service=10)
    assert wait_for(lambda: sink.stats()["rx"] + sink.stats()["rx_drop"] == 20000, 10)
    assert mgr.wait_idle()


def cpu_seconds(pid):
    """User + system CPU time a process has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timing
def test_idle_nfs_sleep(mgr):
    f = mgr.launch(onvm.native("forward"), service=1)
    time.sleep(0.3)
    before, cpu = f.stats()["wakeups"], cpu_seconds(f.pid)
    time.sleep(1.0)
    # asleep on its doorbell: it wakes only for its 100 ms self-check ...
    assert 3 <= f.stats()["wakeups"] - before <= 15
    # ... and burns next to no CPU meanwhile (a polling NF would burn ~1 s)
    assert cpu_seconds(f.pid) - cpu < 0.1


def test_pcap_ports_replay_and_record(tmp_path):
    from scapy.utils import rdpcap, wrpcap
    sent = [udp(sport=3000 + i) for i in range(100)]
    wrpcap(str(tmp_path / "in.pcap"), sent)
    ports = ["pcap:rx=%s" % (tmp_path / "in.pcap"), "pcap:tx=%s" % (tmp_path / "out.pcap")]
    with onvm.Manager(name="pcap%d" % __import__("os").getpid(), ports=ports) as m:
        m.set_default_chain([1, onvm.ToPort(1)])
        m.launch(onvm.native("forward"), service=1)
        assert m.stats()["ports"][0]["rx"] == 0       # waits for replay()
        m.replay(port=0)
        assert wait_for(lambda: m.stats()["ports"][1]["tx"] == 100, 10)
        assert m.stats()["ports"][0]["rx"] == 100
        with pytest.raises(ValueError, match="ring port"):
            m.inject([udp(1)], port=0)
    # the pcap is complete once the manager has stopped
    assert [bytes(p) for p in rdpcap(str(tmp_path / "out.pcap"))] == [bytes(p) for p in sent]


def test_busy_poll_mode(tmp_path):
    with onvm.Manager(name="busy%d" % __import__("os").getpid(), busy_poll=True) as m:
        f = m.launch(onvm.native("forward"), service=1)
        m.set_default_chain([1, onvm.ToPort(1)])
        m.inject([udp(sport=i) for i in range(100)], port=0)
        assert len(m.capture(port=1, count=100, timeout=5)) == 100
        assert f.stats()["wakeups"] == 0     # it never slept


def test_several_rx_and_tx_threads():
    import os
    with onvm.Manager(name="thr%d" % os.getpid(), ports=["ring"] * 3, rx_threads=2, tx_threads=2) as m:
        nfs = [m.launch(onvm.native("forward"), service=1, name="fwd%d" % i) for i in range(3)]
        m.set_default_chain([1, onvm.ToPort(2)])
        for port in (0, 1):   # served by different RX threads
            m.inject([udp(sport=i) for i in range(200)], port=port)
        assert len(m.capture(port=2, count=400, timeout=10, raw=True)) == 400
        assert sum(n.stats()["rx"] for n in nfs) == 400
        assert len(m.stats()["threads"]["tx"]) == 2
    with pytest.raises(ValueError, match="rx_threads"):
        onvm.Manager(rx_threads=5, start=False)


def test_recovery_frees_only_what_the_dead_nf_held(mgr):
    first = mgr.launch(onvm.native("forward"), service=1, name="first")   # slot 0
    mgr.launch(onvm.native("forward"), service=2)
    mgr.set_default_chain([2, onvm.ToPort(1)])
    first.kill()
    slot = mgr.control.shm.nfs[first.instance]
    assert wait_for(lambda: slot.state == 0, 5)            # recovered and freed
    assert slot.recovered == 0                          # it held nothing
    sent = [bytes(udp(sport=i)) for i in range(2000)]
    assert mgr.inject(sent, port=0) == 2000
    assert mgr.capture(port=1, count=2000, timeout=10, raw=True) == sent
    assert mgr.wait_idle()


@onvm.nf(service=1)
def slow(pkt):
    time.sleep(0.005)           # 200 packets/s: a full ring is 20 s of work
    return onvm.NEXT


def test_a_slow_nf_with_a_full_ring_stops_cleanly_and_what_it_left_is_counted(mgr):
    """Stopping an overloaded NF: it works off its ring for a bounded time,
    then exits by itself (not SIGKILLed by stop()'s timeout, as when it
    worked for 5 s), and every packet is accounted for: captured, refused
    once the service had no NF, or freed from the ring it left."""
    nf = mgr.launch(slow)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    sent = [bytes(udp(sport=1000 + i % 64)) for i in range(3000)]
    assert mgr.inject(sent, port=0) == len(sent)
    slot = mgr.control.shm.nfs[nf.instance]
    assert wait_for(lambda: slot.sample.queued > 1000, 10)     # 5 s of work for it, and more
    nf.stop()                                                  # the default timeout: 5 s, then SIGKILL
    assert nf.process.returncode == 0, "stop() had to kill it: %r\n%s" % (nf.process.returncode, nf.log())
    assert wait_for(lambda: slot.state == 0, 5)                # its slot is free again
    assert slot.recovered > 0, "it left packets in its ring"
    out = mgr.capture(port=1, timeout=0.5, raw=True)
    assert out and set(out) <= set(sent)
    assert mgr.wait_idle(5), "every mbuf is back in the pool"
    p0 = mgr.stats()["ports"][0]
    assert len(out) + slot.rx_drop + slot.recovered + p0["rx_drop"] + p0["rx_refused"] == len(sent)
