"""The hardened core, tried as a careless or hostile user would: what NFs may
write, where flows go when replicas change, table updates under traffic,
liveness across PID namespaces, the limits, honest counters."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import onvm
from conftest import udp, wait_for


@onvm.nf(service=1)
def tag_instance(pkt):
    pkt.data[-1] = onvm.current_nf().instance
    return onvm.NEXT


def mappings(pid):
    """{path: permissions} of the files a process maps."""
    out = {}
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6:
                out.setdefault(parts[5], set()).add(parts[1])
    return out


def test_nfs_map_the_managers_state_read_only(mgr):
    a = mgr.launch(onvm.native("forward"), service=1, name="a")
    b = mgr.launch(tag_instance, name="b")
    real = os.path.realpath
    run = real(onvm.common.paths.run_dir(mgr.name))
    for nf in (a, b):
        maps = mappings(nf.pid)
        own = real(onvm.common.paths.nf_stats_path(mgr.name, nf.instance))
        assert maps[real(onvm.common.paths.shm_path(mgr.name))] == {"r--s"}, "the control file is read-only for NFs"
        assert maps[own] == {"rw-s"}, "an NF writes its own stats file"
        others = [p for p in maps if p.startswith(run) and p.endswith(".stats") and p != own]
        assert others == [], "an NF maps no other NF's stats file"
    # files the manager owns are the owner's alone
    for path in (onvm.common.paths.shm_path(mgr.name), onvm.common.paths.nf_stats_path(mgr.name, a.instance)):
        assert os.stat(path).st_mode & 0o077 == 0, path


def flows_by_instance(mgr, flows):
    """Send each flow once through [1, port 1]; {flow: instance that served it}."""
    assert mgr.inject(flows, port=0) == len(flows)
    out = mgr.capture(port=1, count=len(flows), timeout=10, raw=True)
    assert len(out) == len(flows)
    return {p[:-1]: p[-1] for p in out}


def test_adding_a_replica_moves_about_one_in_n_plus_one_flows(mgr):
    mgr.set_default_chain([1, onvm.ToPort(1)])
    first = mgr.launch(tag_instance, replicas=2)
    flows = [bytes(udp(sport=10000 + i, src="198.51.100.%d" % (i % 200 + 1))) for i in range(600)]
    before = flows_by_instance(mgr, flows)
    reta_before = mgr.control.service_table(1)["reta"]
    third = mgr.launch(tag_instance, name="third")
    reta_after = mgr.control.service_table(1)["reta"]
    after = flows_by_instance(mgr, flows)
    moved = [f for f in before if before[f] != after[f]]
    # hash % n would move 2/3 of the flows; the indirection table moves 1/3
    # of its buckets, all to the new replica
    assert sum(x != y for x, y in zip(reta_before, reta_after)) == 256 // 3
    assert {after[f] for f in moved} == {third.instance}
    assert 0.2 < len(moved) / len(flows) < 0.45, len(moved)
    # removing one moves only its own flows
    first[0].stop()
    assert wait_for(lambda: first[0].instance not in mgr.control.service_table(1)["instances"], 5)
    again = flows_by_instance(mgr, flows)
    assert all(again[f] == after[f] for f in after if after[f] != first[0].instance)
    assert {again[f] for f in after if after[f] == first[0].instance} <= {first[1].instance, third.instance}
    assert mgr.wait_idle()


def test_replica_changes_under_traffic_refuse_and_lose_nothing(mgr):
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.launch(onvm.native("forward"), service=1, name="base")
    flows = [bytes(udp(sport=20000 + i)) for i in range(64)]
    stop, sent, got = threading.Event(), [0], [0]

    def traffic():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            sent[0] += mgr.inject(flows, port=0)
            got[0] += len(mgr.capture(port=1, raw=True))
            time.sleep(0.001)

    th = threading.Thread(target=traffic)
    th.start()
    try:
        for i in range(6):   # up, down, up ... while packets flow
            extra = mgr.launch(onvm.native("forward"), service=1, name="extra%d" % i)
            time.sleep(0.05)
            extra.stop()
            time.sleep(0.05)
    finally:
        stop.set()
        th.join()
    got[0] += len(mgr.capture(port=1, count=sent[0] - got[0], timeout=10, raw=True))
    s = mgr.stats()
    assert s["ports"][0]["rx_refused"] == 0 and s["ports"][0]["rx_drop"] == 0
    assert sum(n["refused"] for n in s["nfs"].values()) == 0
    assert got[0] == sent[0], "replicas that stop cleanly hand on what is in their rings: nothing lost"
    assert mgr.wait_idle()


@onvm.nf(service=2)
def mark_a(pkt):
    pkt.data[-1] = 0xA
    return onvm.NEXT


@onvm.nf(service=3)
def mark_b(pkt):
    pkt.data[-1] = 0xB
    return onvm.NEXT


def test_chain_updates_under_traffic_lose_and_misroute_nothing(mgr):
    mgr.launch(mark_a)
    mgr.launch(mark_b)
    chains = [[2, onvm.ToPort(1)], [3, onvm.ToPort(1)]]
    mgr.set_default_chain(chains[0])
    flows = [bytes(udp(sport=30000 + i)) for i in range(32)]
    stop, sent, out = threading.Event(), [0], []

    def traffic():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            sent[0] += mgr.inject(flows, port=0)
            out.extend(mgr.capture(port=1, raw=True))

    th = threading.Thread(target=traffic)
    th.start()
    updates = 0
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2:
            mgr.set_default_chain(chains[updates % 2])
            updates += 1
    finally:
        stop.set()
        th.join()
    out += mgr.capture(port=1, count=sent[0] - len(out), timeout=20, raw=True)
    assert len(out) == sent[0], "every packet came out"
    assert {p[-1] for p in out} == {0xA, 0xB}, "each went through exactly one of the two chains"
    assert mgr.stats()["ports"][0]["rx_chain_end"] == 0
    assert mgr.control.shm.table_updates >= updates
    assert mgr.wait_idle()


def test_an_nf_in_another_pid_namespace_stays_alive_and_is_recovered_when_killed(mgr):
    """The NF sees itself as pid 1 or so; the manager must see its real pid
    (from the socket's peer credentials) and not retire it."""
    mgr.set_default_chain([1, onvm.ToPort(1)])
    cmd = ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "onvm", "nf", "forward",
           "--service", "1", "--manager", mgr.name]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        assert "registered" in p.stdout.readline()
        slots = mgr.control.nf_slots()
        assert len(slots) == 1
        i, slot = slots[0]
        assert slot.pid != 1 and slot.pid > 1
        time.sleep(1.0)          # the old /proc check retired it within 200 ms
        mgr.inject([udp(sport=i) for i in range(100)], port=0)
        assert len(mgr.capture(port=1, count=100, timeout=5)) == 100
        assert mgr.control.shm.nfs[i].state == 2
        os.killpg(p.pid, signal.SIGKILL)   # the namespace's whole group, which the test made
        p.wait(10)
        assert wait_for(lambda: mgr.control.shm.nfs[i].state == 0, 5), "noticed and recovered"
        mgr.inject([udp(sport=i) for i in range(10)], port=0)
        assert wait_for(lambda: mgr.stats()["ports"][0]["rx_refused"] == 10, 5)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    assert mgr.wait_idle()


def test_a_killed_replica_with_a_full_ring_is_recovered(mgr):
    a, b = mgr.launch(tag_instance, replicas=2)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    os.kill(a.pid, signal.SIGSTOP)        # a holds still; its share piles up in its ring
    try:
        flows = [bytes(udp(sport=40000 + i)) for i in range(64)]
        sent = mgr.inject(flows * 10, port=0)
        assert sent == 640
        ring_bound = sent - len(mgr.capture(port=1, count=sent, timeout=2, raw=True))
        assert ring_bound > 0
    finally:
        a.kill()
    assert wait_for(lambda: mgr.control.shm.nfs[a.instance].state == 0, 5)
    assert mgr.control.shm.nfs[a.instance].recovered == ring_bound
    assert mgr.wait_idle()
    assert b.alive


def test_sigterm_under_load_leaves_cleanly_and_leaks_nothing(mgr):
    a, b = mgr.launch(tag_instance, replicas=2)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    flows = [bytes(udp(sport=50000 + i)) for i in range(64)]
    stop, sent = threading.Event(), [0]

    def traffic():
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            sent[0] += mgr.inject(flows, port=0)
            mgr.capture(port=1, raw=True)

    th = threading.Thread(target=traffic)
    th.start()
    try:
        assert wait_for(lambda: a.stats().get("rx", 0) > 1000, 10)
        a.stop()                                        # SIGTERM while packets flow
        assert a.process.returncode == 0, a.log()
        assert wait_for(lambda: mgr.control.shm.nfs[a.instance].state == 0, 5)
        before = b.stats()["rx"]
        assert wait_for(lambda: b.stats()["rx"] > before + 500, 10), "its flows went on to b"
    finally:
        stop.set()
        th.join()
    assert mgr.wait_idle(), "every packet is back in the pool"


def test_limits_one_past_each_is_a_clear_error():
    name = "lim%d" % os.getpid()
    with onvm.Manager(name=name, ports=["ring"] * 32) as m:
        with pytest.raises(ValueError, match="1..32 ports"):
            onvm.Manager(ports=["ring"] * 33, start=False)
        with pytest.raises(ValueError, match="service ID must be an int in 1..255"):
            m.launch(onvm.native("forward"), service=256)
        with pytest.raises(onvm.ChainError, match="at most 16"):
            m.set_default_chain([1] * 17)
        with pytest.raises(ValueError, match="at most 32"):
            m.launch(onvm.native("forward"), service=1, replicas=33)
        # 128 NFs: 32 replicas of one service, and more; slots past the lcores
        # DPDK has (120 and up) run without a pool cache, and still forward
        nfs = m.launch(onvm.native("forward"), service=1, replicas=32)
        for k in range(3):
            nfs += m.launch(onvm.native("forward"), service=2 + k, replicas=32, name="f%d" % k)
        assert len(m.stats()["nfs"]) == 128
        with pytest.raises(onvm.OnvmError, match="all 128 NF slots are in use"):
            m.launch(onvm.native("forward"), service=9, name="extra")
        last = [n for n in nfs if n.instance >= 120]
        assert last and m.control.shm.nfs[last[0].instance].lcore == 0xffff
        m.set_default_chain([last[0].service, onvm.ToPort(31)])
        m.inject([udp(sport=i) for i in range(500)], port=0)
        assert len(m.capture(port=31, count=500, timeout=10)) == 500
        assert m.wait_idle()
    with onvm.Manager(name=name, max_nfs=2) as m:
        m.launch(onvm.native("forward"), service=1, replicas=2)
        with pytest.raises(onvm.OnvmError, match="all 2 NF slots are in use"):
            m.launch(onvm.native("forward"), service=1, name="third")
        assert len(m.nfs) == 2


def test_port_counters_mean_what_they_say(mgr):
    # an empty chain: the packets end at once, counted as chain ends, not drops
    mgr.inject([udp(sport=i) for i in range(20)], port=0)
    assert wait_for(lambda: mgr.stats()["ports"][0]["rx_chain_end"] == 20)
    p0 = mgr.stats()["ports"][0]
    assert p0["rx_drop"] == 0 and p0["rx_refused"] == 0
    # a chain to a service nobody provides: refused
    mgr.set_default_chain([7, onvm.ToPort(1)])
    mgr.inject([udp(sport=i) for i in range(5)], port=0)
    assert wait_for(lambda: mgr.stats()["ports"][0]["rx_refused"] == 5)
    # a burst larger than the port's ring: inject retries, and packets that
    # went in on a retry are not counted as dropped
    mgr.launch(onvm.native("drop"), service=7)
    n = 30000
    assert mgr.inject([bytes(udp(sport=i % 1000)) for i in range(n)], port=0) == n
    s = mgr.stats()["ports"][0]
    assert s["injected"] == n + 25 and s["inject_drop"] == 0
    assert mgr.wait_idle()


def test_demo_runs_and_accounts_for_every_packet():
    r = subprocess.run([sys.executable, "-m", "onvm", "demo", "--seconds", "3"], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "in = out + dropped:           yes" in r.stdout
    assert "all tagged by mark: yes" in r.stdout
    assert "packets still in the pool:    0" in r.stdout
