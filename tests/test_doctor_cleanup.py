"""`onvm doctor` and `onvm cleanup` against real managers: no mocks."""
import os
import signal
import subprocess
import sys
import time

import pytest

import onvm
from onvm import paths
from onvm.mgrd import remove_leftovers, running_manager_pid

START_TIMEOUT = 30
CLI_TIMEOUT = 120


def onvm_cli(*args):
    return subprocess.run([sys.executable, "-m", "onvm", *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)


def start_mgrd(name, log_path):
    """A manager process of our own, as `python -m onvm.mgrd` (no --parent)."""
    with open(log_path, "w") as log:
        p = subprocess.Popen([sys.executable, "-m", "onvm.mgrd", "--name", name], stdout=log,
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


def test_doctor_passes_here():
    r = onvm_cli("doctor")
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    lines = out.splitlines()
    assert any(ln.startswith("ok   hugepages") for ln in lines), out
    assert any(ln.startswith("ok   hugetlbfs") for ln in lines), out
    assert any(ln.startswith("ok   DPDK 22.11") for ln in lines), out
    assert not any(ln.startswith("FAIL") for ln in lines), out


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
            assert mgr._request({"op": "ping"})["pid"] == proc.pid
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
