"""`onvm doctor` and `onvm cleanup` against real managers: no mocks."""
import os
import signal
import subprocess
import sys
import time

import pytest

import onvm
from onvm.common import paths
from onvm.common.runtime import remove_leftovers, running_manager_pid

START_TIMEOUT = 30
CLI_TIMEOUT = 120


def onvm_cli(*args):
    return subprocess.run([sys.executable, "-m", "onvm", *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)


def start_mgrd(name, log_path):
    """A manager process of our own, as `python -m onvm.mgr.daemon` (no --parent)."""
    with open(log_path, "w") as log:
        p = subprocess.Popen([sys.executable, "-m", "onvm.mgr.daemon", "--name", name], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(paths.sock_path(name)):
            if p.poll() is not None:
                pytest.fail("manager %s exited with %s: %s" % (name, p.returncode, open(log_path).read()))
            if time.monotonic() > deadline:
                pytest.fail("manager %s did not create %s within %d s: %s"
                            % (name, paths.sock_path(name), START_TIMEOUT, open(log_path).read()))
            time.sleep(0.05)
    except BaseException:
        kill(p)
        raise
    return p


def kill(p):
    """SIGKILL a process we started, by its pid, unless it has already been reaped."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass


@pytest.mark.serial     # doctor FAILs if other tests' managers hold the free hugepages
def test_doctor_passes_here():
    r = onvm_cli("doctor")
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    lines = out.splitlines()
    assert any(ln.startswith("ok   hugepages") for ln in lines), out
    assert any(ln.startswith("ok   hugetlbfs") for ln in lines), out
    assert any(ln.startswith("ok   DPDK 22.11") for ln in lines), out
    assert not any(ln.startswith("FAIL") for ln in lines), out


@pytest.mark.serial     # a full onvm cleanup: it would take what other tests are starting
def test_cleanup_after_crashed_manager(tmp_path):
    name = "tcleanup%d" % os.getpid()
    p = start_mgrd(name, tmp_path / "mgr.log")
    try:
        assert running_manager_pid(name) == p.pid
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        assert p.returncode == -signal.SIGKILL
        assert running_manager_pid(name) is None
        assert os.path.isdir(paths.run_dir(name))
        assert paths.hugepage_files(name)

        r = onvm_cli("cleanup")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "removed runtime dir %s" % paths.run_dir(name) in r.stdout, r.stdout
        assert "cleanup: removed" in r.stdout.splitlines()[-1], r.stdout
        assert not os.path.exists(paths.run_dir(name))
        assert paths.hugepage_files(name) == []
        assert name not in paths.manager_names()
    finally:
        kill(p)
        remove_leftovers(name)


@pytest.mark.serial     # a full onvm cleanup: it would take what other tests are starting
def test_cleanup_leaves_running_manager_alone():
    name = "tkeep%d" % os.getpid()
    mgr = onvm.Manager(name=name)
    proc = mgr.process
    try:
        with mgr:
            r = onvm_cli("cleanup")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "kept manager %s: it is running (pid %d)" % (name, proc.pid) in r.stdout, r.stdout
            assert mgr.running
            assert os.path.isdir(paths.run_dir(name))
            assert paths.hugepage_files(name)
            stats = mgr.stats()
            assert set(stats["ports"]) == {0, 1}
            assert mgr.ctl.ping()["pid"] == proc.pid
        assert not os.path.exists(paths.run_dir(name))
    finally:
        kill(proc)
        remove_leftovers(name)


def test_cleanup_force_stops_running_manager(tmp_path):
    # --manager keeps it to this test's own manager: others may be running here.
    name = "tforce%d" % os.getpid()
    p = start_mgrd(name, tmp_path / "mgr.log")
    try:
        assert running_manager_pid(name) == p.pid
        r = subprocess.run([sys.executable, "-m", "onvm", "cleanup", "--force", "--manager", name],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "stopped manager %s (pid %d)" % (name, p.pid) in r.stdout, r.stdout
        assert p.wait(5) == 0, open(tmp_path / "mgr.log").read()     # SIGTERM: a clean shutdown
        assert not os.path.exists(paths.run_dir(name))
        assert paths.hugepage_files(name) == []
        assert running_manager_pid(name) is None
    finally:
        kill(p)
        remove_leftovers(name)


def hugepage_mb_used(name):
    """MB of hugepages a manager's files hold (its own: HugePages_Free is
    shared with every other manager on the machine)."""
    return sum(os.stat(f).st_blocks * 512 for f in paths.hugepage_files(name)) >> 20


def test_hugepage_mb_is_a_cap_and_a_pool_that_cannot_fit_is_refused():
    """hugepage_mb=64 with mbufs=2**20 took 2.4 GB before (DPDK grew past
    -m on demand); now it is refused before anything starts, and a manager
    at hugepage_mb=64 holds 64 MB with NFs, traffic and a tap."""
    name = "cap%d" % os.getpid()
    with pytest.raises(ValueError, match=r"hugepage_mb=64 is too small for mbufs=1048576: the pool needs about "
                                         r"2448 MB .*raise hugepage_mb to 2448"):
        onvm.Manager(name=name, hugepage_mb=64, mbufs=1 << 20)
    assert paths.hugepage_files(name) == [] and not os.path.exists(paths.run_dir(name))
    r = onvm_cli("mgr", "--name", name, "--hugepage-mb", "64", "--mbufs", "1048576", "--quiet")
    assert r.returncode == 2 and "too small for mbufs=1048576" in r.stderr, r.stderr
    with onvm.Manager(name=name, hugepage_mb=64) as mgr:
        for i in range(3):
            mgr.launch(onvm.native("forward"), service=1, name="f%d" % i)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        with mgr.tap(after=1) as t:
            assert mgr.inject([bytes(60)] * 5000, port=0) == 5000
            assert len(mgr.capture(port=1, count=5000, timeout=20, raw=True)) == 5000
            copies = len(t.capture(count=5000, timeout=20, raw=True))
            assert copies + t.stop() == 5000, "a copy is made or counted (a tap's copies may drop)"
        assert hugepage_mb_used(name) <= 64


@pytest.mark.serial     # reads free hugepages twice: other tests' managers would move them
def test_the_hugepage_hint_raises_the_reservation_and_never_lowers_it():
    from onvm.common.runtime import hugepage_problem
    with open("/proc/sys/vm/nr_hugepages") as f:
        nr = int(f.read())
    size_mb = os.statvfs(paths.huge_dir()).f_bsize >> 20
    free_mb = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("HugePages_Free")) * size_mb
    msg = hugepage_problem(free_mb + 1000 * size_mb)      # 1000 pages more than are free
    want = int(msg.split("echo ")[1].split()[0])
    assert want >= nr + 1000 - 50, (msg, nr)              # (others' managers may come and go meanwhile)
    from onvm.common.runtime import hugepage_fix
    assert int(hugepage_fix(1).split()[1]) > nr and int(hugepage_fix(0).split()[1]) > nr
