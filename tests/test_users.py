"""Per-user directories, manager names owned by a lock, NF code that never
touches /tmp, and two non-root users who cannot reach each other's managers.
Real managers, real NF processes, real users (made here, removed after)."""
import fcntl
import glob
import grp
import json
import os
import pwd
import re
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

import onvm
from conftest import udp, wait_for
from onvm.common import paths
from onvm.common.errors import OnvmError

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

CLI_TIMEOUT = 120
USER_PYTHON = "/usr/bin/python3.11"     # world-readable; the venv's python lives under /root (0700)


def hold_name(name):
    """Hold name's lock from this test process, as a manager still inside
    rte_eal_init (or in another PID namespace) would.  returns: the fd."""
    os.makedirs(paths.run_dir(name), mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(paths.run_dir(name), "onvm.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def plant_leftovers(name, age=False):
    """Files a starting manager of name would own: something in its runtime
    dir and an empty hugepage file.  age: make the dir look an hour old, so
    no "is it brand new?" guess keeps it (an onvm cleanup of older code
    running elsewhere on this machine then removes it too).
    returns: their paths."""
    marker = os.path.join(paths.run_dir(name), "config")
    with open(marker, "w") as f:
        f.write("starting")
    huge = os.path.join("/dev/hugepages", paths.file_prefix(name) + "map_0")
    hfd = os.open(huge, os.O_RDWR | os.O_CREAT, 0o600)
    # Locked as DPDK locks the pages it maps; any DPDK primary starting on
    # this machine would delete it otherwise.
    fcntl.flock(hfd, fcntl.LOCK_SH)
    _held.append(hfd)
    if age:
        old = time.time() - 3600
        os.utime(paths.run_dir(name), (old, old))
    return [marker, huge]


_held = []


def release(name, fd, planted):
    os.close(fd)
    while _held:
        os.close(_held.pop())
    for f in planted:
        if os.path.exists(f):
            os.unlink(f)
    shutil.rmtree(paths.run_dir(name), ignore_errors=True)


# ---- names are owned by a lock ---------------------------------------------------

def test_a_name_held_by_a_starting_manager_is_refused_and_its_files_kept(tmp_path):
    name = "tstarting%d" % os.getpid()
    fd = hold_name(name)
    planted = plant_leftovers(name)
    try:
        with pytest.raises(OnvmError, match="already running|starting"):
            onvm.Manager(name=name)
        r = subprocess.run([sys.executable, "-m", "onvm.mgr.daemon", "--name", name], capture_output=True, text=True,
                           timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
        assert r.returncode != 0 and "named %r is already running" % name in r.stderr, r.stderr
        assert all(os.path.exists(f) for f in planted), "a starting manager's files were deleted"
        assert open(planted[0]).read() == "starting"
    finally:
        release(name, fd, planted)


def test_cleanup_skips_a_locked_name():
    name = "tlocked%d" % os.getpid()
    fd = hold_name(name)
    planted = plant_leftovers(name, age=True)
    try:
        r = subprocess.run([sys.executable, "-m", "onvm", "cleanup", "--manager", name], capture_output=True,
                           text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        assert "kept manager %s" % name in r.stdout, r.stdout
        assert all(os.path.exists(f) for f in planted), r.stdout
        r = subprocess.run([sys.executable, "-m", "onvm", "doctor"], capture_output=True, text=True,
                           timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
        assert "manager %s: starting or stopping" % name in r.stdout, r.stdout
    finally:
        release(name, fd, planted)
    # Let go, and the same name is stale: cleanup takes the lock and removes it all.
    os.makedirs(paths.run_dir(name), 0o700)
    planted = plant_leftovers(name)
    r = subprocess.run([sys.executable, "-m", "onvm", "cleanup", "--manager", name], capture_output=True,
                       text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    while _held:
        os.close(_held.pop())
    assert "removed runtime dir %s" % paths.run_dir(name) in r.stdout, r.stdout
    assert not any(os.path.exists(f) for f in planted)


def test_an_unlinked_lock_file_cannot_make_two_owners():
    name = "tunlink%d" % os.getpid()
    first = paths.NameLock(name)
    assert first.acquire()
    late = os.open(paths.lock_path(name), os.O_RDWR)   # a second manager, opened before the removal
    try:
        from onvm.common.runtime import remove_leftovers
        assert remove_leftovers(name, first)            # the owner removes everything, lock file last
        first.release()
        fcntl.flock(late, fcntl.LOCK_EX | fcntl.LOCK_NB)    # the old inode: locking it proves nothing
        second = paths.NameLock(name)
        assert second.acquire(wait=0)                   # so the name is still free, on a new lock file
        assert paths.name_in_use(name)
        assert not paths.NameLock(name).acquire(wait=0.2)
        assert not second.adopt(late)                   # and the stale fd is not accepted as the lock
        second.release()
    finally:
        os.close(late)
        remove_leftovers(name)
    assert not os.path.exists(paths.run_dir(name))


def test_default_names_do_not_collide_across_pid_namespaces():
    # Two notebooks in two containers: both are pid 1 there.
    code = "import onvm; print(onvm.Manager(start=False).name)"
    names = []
    for _ in range(2):
        r = subprocess.run(["unshare", "--pid", "--fork", sys.executable, "-c", code], capture_output=True,
                           text=True, timeout=CLI_TIMEOUT, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert r.returncode == 0, r.stderr
        names.append(r.stdout.strip())
    names += [onvm.Manager(start=False).name for _ in range(200)]
    assert len(set(names)) == len(names), names[:2]
    assert all(re.fullmatch(r"nb-[0-9a-f]{8}", n) for n in names), names[:2]


# ---- private directories, no /tmp -------------------------------------------------

def mode(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid


def test_log_and_runtime_dirs_are_private(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with onvm.Manager(name="tpriv%d" % os.getpid()) as m:
        nf = m.launch(onvm.native("forward"), service=1)
        logs = os.path.dirname(m.log_path)
        assert logs == str(tmp_path / "state" / "onvm" / "logs" / m.name)
        for d in (logs, os.path.dirname(logs), paths.run_dir(m.name), paths.runtime_root()):
            assert mode(d) == (0o700, os.geteuid()), d
        for f in (m.log_path, nf.log_path):
            assert mode(f)[0] == 0o600, f
        assert "registered" in nf.log()


def test_a_symlink_at_the_log_path_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    name = "tsym%d" % os.getpid()
    target = tmp_path / "elsewhere"
    target.mkdir()
    logs = tmp_path / "state" / "onvm" / "logs"
    logs.mkdir(parents=True)
    (logs / name).symlink_to(target)
    with pytest.raises(OnvmError, match="symlink") as e:
        onvm.Manager(name=name)
    assert str(logs / name) in str(e.value)
    assert list(target.iterdir()) == []
    assert not paths.name_in_use(name) and not os.path.exists(paths.run_dir(name))


def test_a_symlink_at_the_runtime_dir_is_refused(tmp_path):
    name = "tsymrun%d" % os.getpid()
    os.symlink(str(tmp_path), paths.run_dir(name))
    try:
        with pytest.raises(OnvmError, match="symlink") as e:
            onvm.Manager(name=name)
        assert paths.run_dir(name) in str(e.value)
        assert list(tmp_path.iterdir()) == []
    finally:
        os.unlink(paths.run_dir(name))


def test_a_python_nf_gets_its_code_without_a_file(mgr, tmp_path):
    legacy = os.path.join(tempfile.gettempdir(), "onvm-logs", mgr.name)
    assert not os.path.exists(legacy)

    @onvm.nf(service=3)
    def tag(pkt):
        pkt.data[-1] = 9
        return onvm.NEXT

    nf = mgr.launch(tag)
    with open("/proc/%d/cmdline" % nf.pid, "rb") as f:
        argv = f.read().split(b"\0")
    assert not any(a.endswith(b".pkl") or a == b"--pickle" for a in argv), argv
    mgr.set_default_chain([3, onvm.ToPort(1)])
    assert mgr.inject([udp(sport=i) for i in range(10)]) == 10
    out = mgr.capture(port=1, count=10, timeout=5, raw=True)
    assert len(out) == 10 and all(p[-1] == 9 for p in out)
    assert not os.path.exists(legacy)
    assert glob.glob(os.path.join(os.path.dirname(nf.log_path), "*.pkl")) == []


def test_cli_python_nf_runs_in_the_cli_process(mgr, tmp_path):
    (tmp_path / "my_nfs.py").write_text("import onvm\n\ndef tag(pkt):\n    pkt.data[-1] = 5\n"
                                        "    return onvm.NEXT\n")
    p = subprocess.Popen([sys.executable, "-m", "onvm", "nf", "%s:tag" % (tmp_path / "my_nfs.py"), "--service", "4",
                          "--manager", mgr.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "registered" in p.stdout.readline()
        slots = {s.pid for _, s in mgr.control.nf_slots()}
        assert p.pid in slots                        # the NF is the CLI process itself
        mgr.set_default_chain([4, onvm.ToPort(1)])
        assert mgr.inject([udp(sport=i) for i in range(10)]) == 10
        out = mgr.capture(port=1, count=10, timeout=5, raw=True)
        assert len(out) == 10 and all(x[-1] == 5 for x in out)
        pkls = glob.glob(os.path.join(tempfile.gettempdir(), "onvm-logs", mgr.name, "*.pkl"))
        pkls += glob.glob(os.path.join(paths.log_dir(mgr.name), "*.pkl"))
        assert pkls == []
    finally:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---- two users ----------------------------------------------------------------------

USER_SCRIPT = r'''
import json, os, sys
import onvm
from onvm.common import paths
name = sys.argv[1]
with onvm.Manager(name=name) as m:
    nf = m.launch(onvm.native("forward"), service=1)
    m.set_default_chain([1, onvm.ToPort(1)])
    head = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    pkts = [head + bytes([i]) * 50 for i in range(64)]
    sent = m.inject(pkts, port=0)
    got = m.capture(port=1, count=len(pkts), timeout=10, raw=True)
    print(json.dumps({"uid": os.geteuid(), "sent": sent, "same": sorted(got) == sorted(pkts),
                      "shm": paths.shm_path(name), "sock": paths.sock_path(name), "run_dir": paths.run_dir(name),
                      "huge": paths.hugepage_files(name), "log": m.log_path,
                      "mgr_pid": m.process.pid, "nf_pid": nf.pid}), flush=True)
    sys.stdin.readline()      # stay up while the other user tries to get in
print("stopped", flush=True)
'''

PROBE_SCRIPT = r'''
import json, os, socket, sys
t = json.loads(sys.argv[1])
res = {}
def attempt(what, fn):
    try:
        fn()
        res[what] = "allowed"
    except PermissionError:
        res[what] = "denied"
    except OSError as e:
        res[what] = "failed otherwise: %s" % e
attempt("read control file", lambda: open(t["shm"], "rb").read(1))
attempt("connect to socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(t["sock"]))
attempt("list runtime dir", lambda: os.listdir(t["run_dir"]))
attempt("open hugepage file", lambda: open(t["huge"][0], "rb"))
attempt("write hugepage file", lambda: open(t["huge"][0], "r+b"))
attempt("unlink hugepage file", lambda: os.unlink(t["huge"][0]))
attempt("read log", lambda: open(t["log"], "rb").read(1))
print(json.dumps(res))
'''


def _shared_python(dest):
    """Copy onvm (with its built extension) and the packages it needs into
    dest, a 0755 dir any user can read.  returns: the PYTHONPATH."""
    import cffi
    site = os.path.dirname(os.path.dirname(cffi.__file__))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.dirname(onvm.__file__), os.path.join(dest, "onvm"), ignore=ignore)
    for pkg in ("cffi", "cloudpickle", "scapy", "pycparser"):
        shutil.copytree(os.path.join(site, pkg), os.path.join(dest, pkg), ignore=ignore)
    for so in glob.glob(os.path.join(site, "_cffi_backend*.so")):
        shutil.copy(so, dest)
    for root, dirs, files in os.walk(dest):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    os.chmod(dest, 0o755)
    return dest


def _user_procs(uid):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat("/proc/" + d).st_uid == uid:
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def remove_user(name):
    """Remove a throw-away user this test run made: wait for its processes
    (its managers stop when their parent goes), SIGKILL by pid what is
    left, then delete its hugepage dirs, the account and its home (in that
    order: once the account is gone, a user another test makes may get the
    same uid, and its hugepage dir)."""
    uid = pwd.getpwnam(name).pw_uid
    wait_for(lambda: not _user_procs(uid), timeout=20, step=0.1)
    for pid in _user_procs(uid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not _user_procs(uid), timeout=10, step=0.1)
    for d in paths.user_huge_dirs(uid):
        shutil.rmtree(d, ignore_errors=True)
    subprocess.run(["userdel", "--remove", name], timeout=60, capture_output=True)


def _readline(p, timeout):
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        return ""
    return p.stdout.readline()


@pytest.mark.hugepages     # its hugepage files; tests/test_nohuge.py has the same without
def test_two_users_cannot_reach_each_other():
    try:
        onvm_gid = grp.getgrnam(paths.ONVM_GROUP).gr_gid
    except KeyError:
        pytest.fail("group %s is missing; run as root: bash scripts/setup.sh" % paths.ONVM_GROUP)
    assert paths.ONVM_HUGE_DIR in paths.hugepage_mounts(), \
        "%s is not mounted; run as root: bash scripts/setup.sh" % paths.ONVM_HUGE_DIR
    assert os.access(USER_PYTHON, os.X_OK), "%s is missing; apt-get install python3.11" % USER_PYTHON
    users = ["onvmt%da" % os.getpid(), "onvmt%db" % os.getpid()]
    made, procs = [], []
    shared = tempfile.mkdtemp(prefix="onvm-users-py-")
    try:
        pythonpath = _shared_python(shared)
        for u in users:
            subprocess.run(["useradd", "--create-home", "--groups", paths.ONVM_GROUP, "--shell", "/bin/sh", u],
                           check=True, timeout=60)
            made.append(u)
        info = [pwd.getpwnam(u) for u in users]
        envs = []
        for i, pw in enumerate(info):
            env = {"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath, "LANG": "C.UTF-8"}
            if i == 1:
                # User b has an XDG_RUNTIME_DIR (as a login session gives); user a falls back to ~/.onvm/run.
                xdg = os.path.join(pw.pw_dir, "xdg-run")
                os.mkdir(xdg, 0o700)
                os.chown(xdg, pw.pw_uid, pw.pw_gid)
                env["XDG_RUNTIME_DIR"] = xdg
            envs.append(env)

        def as_user(i, args, **kw):
            pw = info[i]
            return subprocess.Popen([USER_PYTHON] + args, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[onvm_gid],
                                    env=envs[i], cwd=pw.pw_dir, text=True, **kw)

        # onvm doctor tells a user outside group onvm what to do.
        pw = info[0]
        doc = subprocess.run([USER_PYTHON, "-m", "onvm", "doctor"], user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                             env=envs[0], cwd=pw.pw_dir, capture_output=True, text=True, timeout=CLI_TIMEOUT)
        assert doc.returncode == 1, doc.stdout + doc.stderr
        assert "FAIL group onvm: you (%s) are not in group onvm" % users[0] in doc.stdout, doc.stdout
        assert "fix: sudo usermod -aG onvm %s" % users[0] in doc.stdout, doc.stdout
        doc = subprocess.run([USER_PYTHON, "-m", "onvm", "doctor"], user=pw.pw_uid, group=pw.pw_gid,
                             extra_groups=[onvm_gid], env=envs[0], cwd=pw.pw_dir, capture_output=True, text=True,
                             timeout=CLI_TIMEOUT)
        assert "ok   hugepage dir %s/%d is yours" % (paths.ONVM_HUGE_DIR, pw.pw_uid) in doc.stdout, doc.stdout
        assert "FAIL" not in doc.stdout, doc.stdout

        # The same manager name for both: names are per user.
        for i in range(2):
            procs.append(as_user(i, ["-c", USER_SCRIPT, "shared"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE))
        seen = []
        for i, p in enumerate(procs):
            line = _readline(p, 120)
            if not line:
                p.kill()
                pytest.fail("user %s: no report from the manager script: %s" % (users[i], p.communicate(timeout=30)))
            seen.append(json.loads(line))
        for i, s in enumerate(seen):
            pw = info[i]
            assert s["uid"] == pw.pw_uid
            assert s["sent"] == 64 and s["same"], s
            assert s["huge"], s
            for f in s["huge"]:
                assert f.startswith(os.path.join(paths.ONVM_HUGE_DIR, str(pw.pw_uid)) + "/")
                st = os.stat(f)
                assert st.st_uid == pw.pw_uid and stat.S_IMODE(st.st_mode) & 0o077 == 0, (f, oct(st.st_mode))
            for f in (s["shm"], s["sock"], s["log"]):
                assert os.path.exists(f) and os.stat(f).st_uid == pw.pw_uid, f
                assert not f.startswith("/tmp/"), f
            assert mode(s["run_dir"]) == (0o700, pw.pw_uid)
            assert mode(os.path.dirname(s["huge"][0])) == (0o700, pw.pw_uid)
        assert seen[1]["run_dir"].startswith(envs[1]["XDG_RUNTIME_DIR"] + "/dpdk/")
        assert seen[0]["run_dir"].startswith(os.path.join(info[0].pw_dir, ".onvm", "run", "dpdk") + "/")

        for me, other in ((0, 1), (1, 0)):
            probe = as_user(me, ["-c", PROBE_SCRIPT, json.dumps(seen[other])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
            out, err = probe.communicate(timeout=60)
            assert probe.returncode == 0, err
            res = json.loads(out)
            assert res and all(v == "denied" for v in res.values()), (users[me], res)

        # Both managers still work and stop cleanly, leaving nothing behind.
        for p in procs:
            p.stdin.write("stop\n")
            p.stdin.flush()
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0 and "stopped" in out, (users[i], err)
            assert not os.path.exists(seen[i]["run_dir"])
            assert not any(os.path.exists(f) for f in seen[i]["huge"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for u in made:
            remove_user(u)
        shutil.rmtree(shared, ignore_errors=True)


def test_a_manager_name_cannot_leave_the_runtime_root():
    for bad in ("../x%d" % os.getpid(), "a/b", ""):
        r = subprocess.run([sys.executable, "-m", "onvm", "mgr", "--name", bad, "--quiet"], capture_output=True,
                           text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
        assert r.returncode != 0 and "manager name must be letters, digits, - or _" in r.stderr, (bad, r.stderr)
    assert not os.path.exists(os.path.join(os.path.dirname(paths.runtime_root()), "x%d" % os.getpid()))
