"""Faults: whatever dies, nothing is left running or behind."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import onvm
from conftest import udp, wait_for


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_nfs_exit_when_the_manager_is_killed():
    name = "mkill%d" % os.getpid()
    mgr = onvm.Manager(name=name)
    try:
        nfs = [mgr.launch(onvm.native("forward"), service=1), mgr.launch(lambda p: onvm.NEXT, service=2)]
        os.kill(mgr.process.pid, signal.SIGKILL)
        mgr.process.wait()
        # NFs check on the manager at least every 100 ms while idle
        assert wait_for(lambda: not any(n.alive for n in nfs), 10)
    finally:
        mgr.stop()      # cleans what the killed manager left behind
    assert not os.path.exists(onvm.common.paths.run_dir(name))
    assert onvm.common.paths.hugepage_files(name) == []


def test_manager_and_nfs_stop_when_the_notebook_dies(tmp_path):
    name = "orphan%d" % os.getpid()
    script = textwrap.dedent("""
        import os, sys, onvm
        mgr = onvm.Manager(name=%r)
        nf = mgr.launch(onvm.native("forward"), service=1)
        print(mgr.process.pid, nf.pid, flush=True)
        os._exit(0)          # a kernel crash: no atexit, no stop()
    """ % name)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    mgr_pid, nf_pid = map(int, out.stdout.split())
    try:
        assert wait_for(lambda: not alive(mgr_pid) and not alive(nf_pid), 15)
        assert wait_for(lambda: not os.path.exists(onvm.common.paths.run_dir(name)), 5)
        assert onvm.common.paths.hugepage_files(name) == []
    finally:
        for pid in (nf_pid, mgr_pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        from onvm.common.runtime import remove_leftovers
        remove_leftovers(name)


def test_nf_that_exits_by_itself_leaves_the_service(mgr):
    quitter = mgr.launch(onvm.native("forward"), service=1, name="quitter")
    stayer = mgr.launch(onvm.native("forward"), service=1, name="stayer")
    mgr.set_default_chain([1, onvm.ToPort(1)])
    quitter.stop()                                 # SIGTERM: it unregisters and exits
    assert quitter.process.returncode == 0
    assert wait_for(lambda: quitter.instance not in mgr.stats()["nfs"], 3)
    mgr.inject([udp(sport=i) for i in range(200)], port=0)
    assert len(mgr.capture(port=1, count=200, timeout=5)) == 200
    assert stayer.stats()["rx"] == 200


@pytest.mark.parametrize("stuck", ["spin", "sleep"])
def test_an_nf_stuck_in_its_callback_ends_within_a_second_of_the_manager(stuck):
    """The NF's loop cannot look at the manager while its Python callback
    loops forever (or sleeps): its watchdog thread does, and ends it."""
    name = "stuck%s%d" % (stuck, os.getpid())
    mgr = onvm.Manager(name=name)
    try:
        if stuck == "spin":
            def hang(pkt):
                while True:
                    pass
        else:
            def hang(pkt):
                import time
                time.sleep(3600)
        nf = mgr.launch(hang, service=1)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        mgr.inject([udp(1)], port=0)
        assert wait_for(lambda: nf.stats().get("rx") == 1, 10), "the NF took the packet into its callback"
        os.kill(mgr.process.pid, signal.SIGKILL)
        mgr.process.wait()
        t0 = time.monotonic()
        gone = wait_for(lambda: not nf.alive, 1.0, step=0.005)
        took = time.monotonic() - t0
        assert gone, "the NF outlived its manager by more than 1 s"
        print("NF gone %.3f s after the manager" % took)
        assert nf.process.returncode == 3 and took < 1.0
        assert "the manager is gone" in open(nf.log_path).read()
    finally:
        mgr.stop()      # kills what is left and cleans what the killed manager left behind
    assert onvm.common.paths.hugepage_files(name) == []


def test_packets_lost_in_a_crashed_nf_are_counted(mgr):
    """1000 packets in, the NF killed while it holds them: the manager frees
    them and says so, so that what came in is what went out plus every drop
    (before: port 0 showed 1000 in, nothing out, no drop)."""
    def slow(pkt):
        import time
        time.sleep(3600)
    nf = mgr.launch(slow, service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    assert mgr.inject([udp(i) for i in range(1000)], port=0) == 1000
    assert wait_for(lambda: nf.stats().get("rx", 0) >= 1, 10)
    nf.kill()
    assert wait_for(lambda: mgr.stats()["recovered"] == 1000, 10), mgr.stats()["recovered"]
    s = mgr.stats()
    assert s["nfs"] == {}, "the dead NF's slot is free again"
    p0, p1 = s["ports"][0], s["ports"][1]
    drops = p0["rx_drop"] + p0["rx_refused"] + p0["rx_chain_end"] + p1["tx_drop"]
    assert p0["rx"] == 1000 and p0["rx"] == p1["tx"] + drops + s["recovered"]
    assert mgr.wait_idle(5), "every packet is back in the pool"
    assert "lost in NFs that died" in onvm.stats.format_table(s)


def test_an_nf_killed_inside_its_read_section_does_not_hold_table_updates(mgr):
    """An NF reads the routing tables inside an RCU read section; one killed
    there never leaves it.  Its death must end its part in grace periods
    before the manager edits the tables to retire it (the other order waited
    on the dead reader itself, and every later update failed with "a reader
    has not finished"), and the next NF in its slot must start outside any
    read section (it inherited the dead one's counter, and every launch into
    that slot failed: CI, test_dashboard.py, 2026-12-05)."""
    fw = mgr.launch(onvm.native("forward"), service=2, name="fw")
    out = mgr.launch(onvm.native("forward"), service=3, name="out")
    gen = mgr.launch(onvm.native("generate", flows=16), service=1, name="gen")
    chain = [1, 2, 3, onvm.ToPort(1)]
    mgr.set_default_chain(chain)
    try:
        # `out` stopped: its ring fills, and fw waits to hand on (backpressure),
        # inside its read section, nearly all the time
        os.kill(out.pid, signal.SIGSTOP)
        assert wait_for(lambda: fw.stats().get("tx_drop", 0) > 0, 10), fw.stats()
        held = False
        for _ in range(20):       # fw stopped where it is: in its read section, almost surely
            os.kill(fw.pid, signal.SIGSTOP)
            os.kill(out.pid, signal.SIGCONT)      # out leaves any section of its own
            time.sleep(0.1)
            mgr.set_default_chain(chain)          # a grace period fw cannot end
            try:
                mgr.set_default_chain(chain)
            except onvm.OnvmError as e:
                assert "a reader has not finished" in str(e)
                held = True
                break
            os.kill(out.pid, signal.SIGSTOP)
            os.kill(fw.pid, signal.SIGCONT)
            time.sleep(0.1)
        assert held, "fw was never stopped inside its read section"
        slot = fw.instance
        os.kill(fw.pid, signal.SIGKILL)
        fw.process.wait()
        assert wait_for(lambda: "fw" not in {n["name"] for n in mgr.stats()["nfs"].values()}, 10)
        mgr.set_default_chain(chain)              # updates work again
        # in fw's slot, whose reader fw left "inside a read section": fw2
        # starts outside it, or its "ready" would wait for itself
        fw2 = mgr.launch(onvm.native("forward"), service=2, name="fw2")
        assert fw2.instance == slot
        assert wait_for(lambda: fw2.stats().get("tx", 0) > 1000, 10), fw2.stats()
    finally:
        for n in (gen, fw, out):
            if n.alive:
                os.kill(n.pid, signal.SIGCONT)
