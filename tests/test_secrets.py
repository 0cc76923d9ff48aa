"""A shared classroom machine (issue 18): another local user finds no secret
of ours in any process, cannot lock us out of our hugepage directory, and a
full log file system does not stop the data plane.  Real `onvm lab`, real
managers and NFs, real users (made here, removed after), a real full tmpfs."""
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

import onvm
from conftest import udp, wait_for
from onvm.common import paths
from onvm.face import lab as onvm_lab
from test_users import USER_PYTHON, _readline, _shared_python, remove_user

pytestmark = pytest.mark.privileged

ONVM = [sys.executable, "-m", "onvm"]


# ---- users made by these tests ---------------------------------------------------

class Users:
    """Throw-away users: add(tag, onvm=True) makes one (group onvm if asked),
    run(user, code, ...) runs Python code as it; close() kills what they
    left running (by pid), removes them and their hugepage dirs."""

    def __init__(self):
        self.made = []
        self.pythonpath = None

    def add(self, tag, onvm_group=True):
        name = "onvms%d%s" % (os.getpid(), tag)
        cmd = ["useradd", "--create-home", "--shell", "/bin/sh"]
        if onvm_group:
            cmd += ["--groups", paths.ONVM_GROUP]
        subprocess.run(cmd + [name], check=True, timeout=60, capture_output=True)
        self.made.append(name)
        return pwd.getpwnam(name)

    def env(self, pw, with_onvm=False):
        env = {"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        if with_onvm:
            if self.pythonpath is None:
                self.pythonpath = _shared_python(tempfile.mkdtemp(prefix="onvm-secrets-py-"))
            env["PYTHONPATH"] = self.pythonpath
        return env

    def popen(self, pw, code, args=(), with_onvm=False, **kw):
        import grp
        groups = [g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem]
        return subprocess.Popen([USER_PYTHON, "-c", code, *args], user=pw.pw_uid, group=pw.pw_gid,
                                extra_groups=groups, env=self.env(pw, with_onvm), cwd=pw.pw_dir, text=True, **kw)

    def run(self, pw, code, args=(), stdin="", with_onvm=False, timeout=120):
        """returns: the script's stdout parsed as JSON (fails on a non-zero exit)."""
        p = self.popen(pw, code, args, with_onvm, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        out, err = p.communicate(stdin, timeout=timeout)
        assert p.returncode == 0, "as %s: %s" % (pw.pw_name, err)
        return json.loads(out)

    def close(self):
        for name in self.made:
            remove_user(name)
        if self.pythonpath:
            shutil.rmtree(self.pythonpath, ignore_errors=True)


@pytest.fixture
def users():
    u = Users()
    try:
        yield u
    finally:
        u.close()


# ---- 1: no secret in any process another user can read ----------------------------

# Reads every /proc/PID/cmdline and /proc/PID/environ it may, and looks for
# the secrets (hex, on stdin: an argument would put them in our own cmdline).
SCAN = r'''
import json, os, sys
needles = [bytes.fromhex(h) for h in sys.stdin.read().split()]
read, hits = {}, []
for d in os.listdir("/proc"):
    if not d.isdigit() or int(d) == os.getpid():
        continue
    for what in ("cmdline", "environ"):
        try:
            with open("/proc/%s/%s" % (d, what), "rb") as f:
                data = f.read()
        except OSError:
            continue
        read.setdefault(d, []).append(what)
        for n in needles:
            if n in data:
                hits.append([int(d), what, data[:300].replace(b"\0", b" ").decode(errors="replace")])
print(json.dumps({"read": read, "hits": hits}))
'''

# Asks the lab for what only the token may reach, without the token.
KNOCK = r'''
import http.client, json, sys
port = int(sys.argv[1])
res = {}
for method, path in (("GET", "/api/contents/notebooks"), ("GET", "/api/status"), ("POST", "/api/kernels"),
                     ("GET", "/lab/tree/notebooks/00-index.ipynb"), ("GET", "/api/contents/notebooks?token=0")):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=b"{}" if method == "POST" else None, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    res["%s %s" % (method, path)] = [r.status, r.getheader("Location") or ""]
    c.close()
print(json.dumps(res))
'''


def _children(pid):
    out = []
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, t)) as f:
            out += [int(c) for c in f.read().split()]
    return out


def _everywhere(needle):
    """Every process (any uid: we are root) whose cmdline or environ holds needle."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (d, what), "rb") as f:
                    if needle in f.read():
                        found.append((int(d), what))
            except OSError:
                pass
    return found


def test_no_user_finds_the_lab_token_or_a_kernel_key(tmp_path, users):
    """Issue 18 item 1: root's `onvm lab`, with a kernel that runs a manager
    and NFs; a second user reads every cmdline and environ it can and finds
    neither the lab's token nor the kernel's HMAC key, and the lab refuses
    it without the token while the owner's URL works."""
    from jupyter_client import BlockingKernelClient
    assert os.geteuid() == 0, "this test makes users: run it as root"
    rt = tmp_path / "rt"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(rt))
    env.pop("JUPYTER_TOKEN", None)
    port = onvm_lab._free_port(23000 + os.getpid() % 1000)
    p = subprocess.Popen(ONVM + ["lab", "--dir", str(tmp_path / "nb"), "--port", str(port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    name = "tsec%d" % os.getpid()
    try:
        url, lines = None, []
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline:
            line = p.stdout.readline()      # onvm lab gives up after its own start timeout
            if not line:
                break
            lines.append(line)
            m = re.search(r"open: (http://127\.0\.0\.1:\d+/\S+)", line)
            url = m and m.group(1)
        assert url, "onvm lab printed no URL: %s" % "".join(lines)
        base, token = url.split("/lab/")[0], url.split("token=")[1]
        assert len(token) >= 32
        with urllib.request.urlopen(url, timeout=30) as r:       # the owner's URL works
            assert r.status == 200 and "JupyterLab" in r.read().decode(errors="replace")
        server = _children(p.pid)[0]

        # A kernel of the lab that runs a manager, a native NF and a Python NF.
        req = urllib.request.Request(base + "/api/kernels?token=" + token, data=json.dumps({"name": "onvm"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            kid = json.load(r)["id"]
        conn = rt / ("kernel-%s.json" % kid)
        assert wait_for(conn.exists, 60)
        key = json.loads(conn.read_text())["key"]
        kc = BlockingKernelClient(connection_file=str(conn))
        kc.load_connection_file()
        kc.start_channels(hb=False)
        try:
            kc.wait_for_ready(timeout=60)
            out = []
            code = ("import onvm, os\nmgr = onvm.Manager(name=%r)\n"
                    "a = mgr.launch(onvm.native('forward'), service=1)\n"
                    "b = mgr.launch(onvm.nf(lambda pkt: onvm.NEXT), service=2)\n"
                    "print(os.getpid(), mgr.process.pid, a.pid, b.pid)" % name)
            reply = kc.execute_interactive(code, timeout=180,
                                           output_hook=lambda m: out.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            kc.stop_channels()
        kernel_pid, mgr_pid, nf_a, nf_b = [int(x) for x in "".join(out).split()[:4]]

        # The other user's look.
        other = users.add("x", onvm_group=True)
        seen = users.run(other, SCAN, stdin="%s %s" % (token.encode().hex(), key.encode().hex()))
        assert seen["hits"] == [], seen["hits"]
        for pid in (p.pid, server, kernel_pid, mgr_pid, nf_a, nf_b):
            assert "cmdline" in seen["read"].get(str(pid), []), "pid %d was not scanned" % pid

        # Our own look, as root, at every process of the machine.
        assert _everywhere(token.encode()) == [], "the lab token is in a process's cmdline or environ"
        assert _everywhere(key.encode()) == [], "the kernel's key is in a process's cmdline or environ"
        leftover = [f for f in os.listdir(paths.runtime_root()) if f.startswith("lab-token-")]
        assert not [f for f in leftover if token in open(os.path.join(paths.runtime_root(), f)).read()], \
            "the token file outlived JupyterLab's start"
        knock = users.run(other, KNOCK, args=[str(port)])
        for what, (status, location) in knock.items():
            assert status == 403 or (status == 302 and "/login" in location), (what, status, location)
        assert knock["GET /lab/tree/notebooks/00-index.ipynb"][0] == 302
        assert knock["POST /api/kernels"][0] == 403
        with urllib.request.urlopen(base + "/api/contents/notebooks?token=" + token, timeout=30) as r:
            assert r.status == 200 and "01-getting-started.ipynb" in r.read().decode()

        p.send_signal(signal.SIGINT)
        assert p.wait(120) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(ONVM + ["cleanup", "--force", "--manager", name], capture_output=True, timeout=120)


# ---- 6: nobody can lock another user out of their hugepage directory --------------

SQUAT = r'''
import errno, json, os, sys
victim, how = sys.argv[1], sys.argv[2]
base = "/dev/hugepages-onvm"
mine = os.path.join(base, str(os.geteuid()))
os.makedirs(mine, exist_ok=True)
os.chmod(mine, 0o777)                      # a trap anyone may write into
planted = [os.path.join(base, victim), os.path.join(base, victim + "-0000000000000000")]
refused = []
for path in planted:                       # the victim's name, and a name like a fallback dir's
    if how == "dir":
        os.mkdir(path, 0o777)
        os.chmod(path, 0o777)
        continue
    try:
        os.symlink(mine, path)
    except OSError as e:                   # hugetlbfs has no symlinks: a plain file takes the name instead
        assert e.errno in (errno.EINVAL, errno.EPERM), e
        refused.append(path)
        open(path, "w").close()
print(json.dumps({"planted": planted, "trap": mine, "symlink_refused": refused}))
'''

LOOK = r'''
import json, os, sys
t = json.loads(sys.argv[1])
res = {}
for d in t["planted"] + [t["trap"]]:
    if os.path.isdir(d):
        res[d] = sorted(os.listdir(d))
print(json.dumps(res))
'''


@pytest.mark.parametrize("how", ["dir", "symlink"])
def test_a_squatted_hugepage_dir_locks_nobody_out(users, how):
    """Issue 18 item 6: another member of onvm makes (or symlinks)
    /dev/hugepages-onvm/VICTIM_UID before the victim's first manager (a
    plain file where hugetlbfs refuses the symlink, as it does here); the
    victim's manager still starts and moves packets, its hugepage files are
    in a 0700 dir of its own, and the squatter cannot read them."""
    from test_users import PROBE_SCRIPT, USER_SCRIPT
    assert paths.ONVM_HUGE_DIR in paths.hugepage_mounts(), "run as root: bash scripts/setup.sh"
    victim = users.add("v")
    squatter = users.add("s")
    # what the squatter makes, removed after whatever happens
    planted = [os.path.join(paths.ONVM_HUGE_DIR, n) for n in
               (str(victim.pw_uid), "%d-0000000000000000" % victim.pw_uid, str(squatter.pw_uid))]
    p = None
    try:
        squat = users.run(squatter, SQUAT, args=[str(victim.pw_uid), how])
        assert squat["planted"] + [squat["trap"]] == planted
        assert os.lstat(squat["planted"][0]).st_uid == squatter.pw_uid
        p = users.popen(victim, USER_SCRIPT, args=["squatted"], with_onvm=True, stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = _readline(p, 180)
        if not line:
            p.kill()
            pytest.fail("the victim's manager did not start: %s" % (p.communicate(timeout=30),))
        seen = json.loads(line)
        assert seen["sent"] == 64 and seen["same"], seen
        assert seen["huge"], seen
        dirs = {os.path.dirname(f) for f in seen["huge"]}
        assert len(dirs) == 1
        d = dirs.pop()
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == victim.pw_uid and stat.S_IMODE(st.st_mode) == 0o700, d
        assert os.path.dirname(d) == paths.ONVM_HUGE_DIR and d not in squat["planted"], d
        for f in seen["huge"]:
            assert os.path.realpath(f) == f and os.stat(f).st_uid == victim.pw_uid, f

        probe = users.run(squatter, PROBE_SCRIPT, args=[json.dumps(seen)])
        assert probe and all(v == "denied" for v in probe.values()), probe
        look = users.run(squatter, LOOK, args=[json.dumps(squat)])
        assert not [e for entries in look.values() for e in entries if e.startswith(paths.PREFIX)], look

        p.stdin.write("stop\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "stopped" in out, err
        assert not any(os.path.exists(f) for f in seen["huge"])
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)
        for f in planted:
            if os.path.isdir(f) and not os.path.islink(f):
                shutil.rmtree(f, ignore_errors=True)
            elif os.path.lexists(f):
                os.unlink(f)


# ---- 7: a full log file system does not stop the data plane ------------------------

BAD = 0xEE      # the last byte of packets the NF's callback fails on


@onvm.nf(service=1)
def fails_on_marked(pkt):
    if pkt.data[-1] == BAD:
        raise RuntimeError("this packet is marked bad")
    return onvm.NEXT


def _fill(path):
    """Write zeros into path until the file system is full.  returns: bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(b"\0" * 4096)
            except OSError:
                return n


def test_a_full_log_file_system_stops_neither_manager_nor_nf(tmp_path, monkeypatch):
    """Issue 18 item 7: the logs on a 64 KiB tmpfs, filled up before the
    manager starts.  The manager starts all the same; an NF whose callback
    raises (each error wants a traceback in the log) goes on handling and
    forwarding later packets; both count the log lines they dropped."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "onvm-test-full", str(state)], check=True,
                   timeout=30)
    try:
        monkeypatch.setenv("XDG_STATE_HOME", str(state))
        name = "tfull%d" % os.getpid()
        paths.log_dir(name)
        assert _fill(str(state / "filler")) > 0
        with pytest.raises(OSError):            # really full
            with open(state / "probe", "wb", buffering=0) as f:
                f.write(b"x")
        with onvm.Manager(name=name) as mgr:
            assert mgr.running
            assert os.path.dirname(mgr.log_path) == str(state / "onvm" / "logs" / name)
            assert wait_for(lambda: mgr.stats()["manager"]["log_dropped"] > 0, 10), "no dropped line counted"
            assert os.path.getsize(mgr.log_path) == 0
            nf = mgr.launch(fails_on_marked)
            mgr.set_default_chain([1, onvm.ToPort(1)])
            bad = [bytes(udp(sport=1000 + i))[:-1] + bytes([BAD]) for i in range(20)]
            good = [bytes(udp(sport=2000 + i)) for i in range(20)]
            assert mgr.inject(bad, port=0) == 20
            assert wait_for(lambda: nf.stats().get("errors", 0) == 20, 10), nf.stats()
            assert mgr.inject(good, port=0) == 20
            out = mgr.capture(port=1, count=20, timeout=10, raw=True)
            assert sorted(out) == sorted(good)
            s = nf.stats()
            assert nf.alive and s["rx"] == 40 and s["errors"] == 20 and s["actions"]["next"] == 20, s
            assert s["log_dropped"] > 0, s
            assert os.path.getsize(nf.log_path) == 0
            assert mgr.stats()["manager"]["pid"] == mgr.process.pid
    finally:
        r = subprocess.run(["umount", str(state)], capture_output=True, text=True, timeout=30)
        if r.returncode:
            subprocess.run(["umount", "-l", str(state)], timeout=30)
            pytest.fail("the full tmpfs was still in use: %s" % r.stderr)
