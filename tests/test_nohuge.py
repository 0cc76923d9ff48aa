"""The no-hugepage mode (issue 25): the manager's shared objects in a memfd
registered with DPDK as external memory, handed to NFs over the NF door
(onvm/core/xmem.c, onvm/common/memmode.py).  Real managers, NFs, packets and
throw-away users; hugepages stay the default where they are free."""
import grp
import json
import os
import pwd
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import onvm
from conftest import wait_for
from onvm.common import paths
from onvm.common.errors import OnvmError

CLI_TIMEOUT = 120
USER_PYTHON = "/usr/bin/python3.11"
REGION = "memfd:onvm-shared"


def frames(n, tag=0):
    """n distinct Ethernet frames of 60..1059 bytes: a counter and a pattern."""
    return [bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + struct.pack(">II", tag, i)
            + bytes((i * 7 + j) & 0xff for j in range(38 + i % 1000)) for i in range(n)]


def maps(pid):
    with open("/proc/%d/maps" % pid) as f:
        return f.read().splitlines()


def region(pid):
    """The address range of the shared region in pid, or None."""
    for line in maps(pid):
        if REGION in line:
            return line.split()[0]
    return None


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("ONVM_HUGEPAGES", raising=False)
    monkeypatch.delenv("ONVM_SHM_DIR", raising=False)


@onvm.nf
def flip_twice(pkt):
    """Writes into the packet and undoes it: the NF works on the pool's bytes."""
    d = pkt.data
    d[14] ^= 0xff
    d[14] ^= 0xff
    return onvm.NEXT


def test_forced_no_hugepage_mode_forwards_byte_exact_through_python_and_native_nfs(no_env, capsys):
    with onvm.Manager(name="tnh%d" % os.getpid(), hugepages=False) as mgr:
        note = capsys.readouterr().out
        assert "manager tnh%d runs without hugepages" % os.getpid() in note and "hugepages=False" in note, note
        assert mgr.uses_hugepages is False
        assert not paths.hugepage_files(mgr.name)
        pid = mgr.process.pid
        assert not any("hugepages" in line for line in maps(pid)), "the manager maps hugepages"
        want = region(pid)
        assert want, "the manager has no shared region"
        fwd = mgr.launch(onvm.native("forward"), service=1)
        py = mgr.launch(flip_twice, service=2)
        mgr.set_default_chain([1, 2, onvm.ToPort(1)])
        # Zero-copy: every NF maps the manager's region at the manager's address.
        assert region(fwd.pid) == want and region(py.pid) == want
        sent = frames(1000)
        mgr.inject(sent, port=0)
        got = mgr.capture(port=1, count=len(sent), timeout=30)
        assert sorted(bytes(p) for p in got) == sorted(sent)
        assert wait_for(lambda: py.stats().get("rx", 0) == 1000, timeout=10), py.stats()
        # Whoever holds the region (each NF did) cannot cut it short under the manager: it is sealed.
        fd = next(os.path.join("/proc/%d/fd" % pid, f) for f in os.listdir("/proc/%d/fd" % pid)
                  if os.readlink("/proc/%d/fd/%s" % (pid, f)).startswith("/memfd:onvm-shared"))
        with open(fd, "r+b") as f:
            with pytest.raises(PermissionError):
                os.ftruncate(f.fileno(), 4096)
        mgr.inject(sent[:10], port=0)
        assert len(mgr.capture(port=1, count=10, timeout=30)) == 10


@pytest.mark.hugepages
def test_hugepages_stay_the_default_where_they_are_free(no_env, capsys):
    with onvm.Manager(name="tdef%d" % os.getpid()) as mgr:
        assert mgr.uses_hugepages is True
        assert "without hugepages" not in capsys.readouterr().out
        assert paths.hugepage_files(mgr.name), "no hugepage files of the manager"
        assert region(mgr.process.pid) is None
        mgr.launch(onvm.native("forward"), service=1)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        sent = frames(100)
        mgr.inject(sent, port=0)
        assert sorted(bytes(p) for p in mgr.capture(port=1, count=100, timeout=30)) == sorted(sent)


def test_onvm_hugepages_0_makes_the_default_manager_go_without(no_env, monkeypatch, capsys):
    monkeypatch.setenv("ONVM_HUGEPAGES", "0")
    with onvm.Manager(name="tenv%d" % os.getpid()) as mgr:
        assert mgr.uses_hugepages is False and region(mgr.process.pid)
        assert "ONVM_HUGEPAGES=0" in capsys.readouterr().out
    r = subprocess.run([sys.executable, "-m", "onvm", "doctor"], capture_output=True, text=True,
                       timeout=CLI_TIMEOUT, env=dict(os.environ, ONVM_HUGEPAGES="0"))
    assert "ok   memory: a manager runs without hugepages, in ordinary shared memory (asked for " \
           "(ONVM_HUGEPAGES=0))" in r.stdout, r.stdout
    r = subprocess.run([sys.executable, "-m", "onvm", "doctor"], capture_output=True, text=True,
                       timeout=CLI_TIMEOUT, env={k: v for k, v in os.environ.items() if k != "ONVM_HUGEPAGES"})
    assert "ok   memory: a manager uses hugepages (256 MB of hugepages are free)" in r.stdout, r.stdout
    monkeypatch.setenv("ONVM_HUGEPAGES", "maybe")
    with pytest.raises(ValueError, match="ONVM_HUGEPAGES='maybe'"):
        onvm.Manager(name="tenv%d" % os.getpid())
    with pytest.raises(ValueError, match="hugepages must be True, False or None"):
        onvm.Manager(name="tenv%d" % os.getpid(), hugepages="no")


def test_cli_mgr_no_hugepages(no_env):
    name = "tcli%d" % os.getpid()
    p = subprocess.Popen([sys.executable, "-m", "onvm", "mgr", "--name", name, "--quiet", "--no-hugepages"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.exists(paths.sock_path(name)) or p.poll() is not None, timeout=60)
        assert p.poll() is None, p.stdout.read()
        assert region(p.pid)
        m = onvm.Manager.attach(name)
        m.launch(onvm.native("forward"), service=1)
        m.set_default_chain([1, onvm.ToPort(1)])
        sent = frames(200, tag=1)
        m.inject(sent, port=0)
        assert sorted(bytes(x) for x in m.capture(port=1, count=200, timeout=30)) == sorted(sent)
        m.stop()
    finally:
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=60)[0]
    assert p.returncode == 0, out
    assert "onvm manager: manager %s runs without hugepages" % name in out, out
    assert not os.path.exists(paths.run_dir(name))


def _cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _nothing_left(name):
    assert not os.path.exists(paths.run_dir(name)), os.listdir(paths.run_dir(name))
    assert not paths.hugepage_files(name)
    own = [d for d in os.listdir("/proc") if d.isdigit() and "--name\0%s\0" % name in _cmdline(d)]
    assert not own, "a manager process is left: %s" % own


def test_too_little_shared_memory_names_the_size_and_shm_size(no_env, monkeypatch, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    shm = tmp_path / "shm"
    shm.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=1777", "tmpfs", str(shm)], check=True, timeout=30)
    name = "tsmall%d" % os.getpid()
    try:
        monkeypatch.setenv("ONVM_SHM_DIR", str(shm))
        with pytest.raises(OnvmError) as e:
            onvm.Manager(name=name, hugepages=False)
        msg = str(e.value)
        assert "needs 256 MB of shared memory in %s and only 64 MB are free" % shm in msg, msg
        assert "--shm-size=320m" in msg, msg
        _nothing_left(name)
        # `onvm mgr` checks in the manager process too.
        with open(shm / "filler", "wb") as f:
            f.write(b"\0" * (40 << 20))
        r = subprocess.run([sys.executable, "-m", "onvm", "mgr", "--name", name, "--quiet", "--no-hugepages",
                            "--hugepage-mb", "64", "--mbufs", "4095"], capture_output=True, text=True,
                           timeout=CLI_TIMEOUT, env=dict(os.environ, ONVM_SHM_DIR=str(shm)))
        assert r.returncode == 2 and "needs 64 MB of shared memory in %s" % shm in r.stderr, r.stderr
        assert "--shm-size=128m" in r.stderr, r.stderr
        _nothing_left(name)
        # What fits starts, in the tmpfs, and leaves no file there.
        os.unlink(shm / "filler")
        with onvm.Manager(name=name, hugepages=False, hugepage_mb=64, mbufs=4095) as mgr:
            mgr.launch(onvm.native("forward"), service=1)
            mgr.set_default_chain([1, onvm.ToPort(1)])
            mgr.inject(frames(50), port=0)
            assert len(mgr.capture(port=1, count=50, timeout=30)) == 50
            assert os.listdir(shm) == [], "the region has a name anyone could open"
            assert shutil.disk_usage(shm).used >= 60 << 20, "the region is not in the directory given"
        _nothing_left(name)
    finally:
        subprocess.run(["umount", "-l", str(shm)], timeout=30)


def test_forcing_a_mode_the_machine_cannot_give_starts_nothing(no_env, monkeypatch):
    name = "tforce%d" % os.getpid()
    free = int(re.search(r"HugePages_Free:\s+(\d+)", open("/proc/meminfo").read()).group(1)) * 2
    with pytest.raises(OnvmError, match="hugepages were asked for \\(hugepages=True\\) but cannot be had: "
                                        "not enough free hugepages: this manager needs %d MB" % (free + 1024)):
        onvm.Manager(name=name, hugepages=True, hugepage_mb=free + 1024)
    _nothing_left(name)
    monkeypatch.setenv("ONVM_SHM_DIR", "/nonexistent-onvm-dir")
    with pytest.raises(OnvmError, match="ONVM_SHM_DIR='/nonexistent-onvm-dir' is not an absolute path of a dir"):
        onvm.Manager(name=name, hugepages=False)
    _nothing_left(name)
    r = subprocess.run([sys.executable, "-m", "onvm", "mgr", "--name", name, "--quiet", "--hugepages", "yes",
                        "--hugepage-mb", str(free + 1024)], capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert r.returncode == 2 and "hugepages were asked for (hugepages=True) but cannot be had" in r.stderr, r.stderr
    _nothing_left(name)


# ---- two users, neither in group onvm: no hugepages for them ---------------------------

OWNER_SCRIPT = r'''
import json, os, sys, onvm
from onvm.common import paths

@onvm.nf
def keep(pkt):
    return onvm.NEXT

with onvm.Manager(name="mine") as mgr:
    nf = mgr.launch(keep, service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    sent = [bytes(12) + b"\x88\xb5" + os.urandom(50) for _ in range(64)]
    mgr.inject(sent, port=0)
    got = [bytes(p) for p in mgr.capture(port=1, count=64, timeout=30)]
    pids = [mgr.process.pid, nf.pid]
    fds, ranges = [], []
    for pid in pids:
        for fd in os.listdir("/proc/%d/fd" % pid):
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("/memfd:onvm-shared"):
                fds.append("/proc/%d/fd/%s" % (pid, fd))
        for line in open("/proc/%d/maps" % pid):
            if "memfd:onvm-shared" in line:
                ranges.append((pid, line.split()[0]))
    print(json.dumps({"uid": os.getuid(), "hugepages": mgr.uses_hugepages, "same": sorted(got) == sorted(sent),
                      "pids": pids, "fds": fds, "ranges": ranges, "nf_sock": paths.nf_sock_path("mine"),
                      "secret": sent[0][14:].hex()}), flush=True)
    sys.stdin.readline()
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
def read_mem(pid, rng):
    start = int(rng.split("-")[0], 16)
    with open("/proc/%d/mem" % pid, "rb") as f:
        f.seek(start)
        f.read(4096)
for f in t["fds"]:
    attempt("open " + f, lambda f=f: open(f, "rb").read(1))
for pid in t["pids"]:
    attempt("list fds of %d" % pid, lambda pid=pid: os.listdir("/proc/%d/fd" % pid))
    attempt("list map_files of %d" % pid, lambda pid=pid: os.listdir("/proc/%d/map_files" % pid))
for pid, rng in t["ranges"]:
    attempt("open map_files/%s of %d" % (rng, pid), lambda pid=pid, rng=rng: open("/proc/%d/map_files/%s" % (pid, rng), "rb"))
    attempt("read memory %s of %d" % (rng, pid), lambda pid=pid, rng=rng: read_mem(pid, rng))
attempt("connect to the NF door", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(t["nf_sock"]))
print(json.dumps(res))
'''


def _lines(p, n, timeout):
    """The next n lines p prints, read by a thread so a silent p cannot
    hang the test; missing lines are ""."""
    got = []
    t = threading.Thread(target=lambda: got.extend(p.stdout.readline() for _ in range(n)), daemon=True)
    t.start()
    t.join(timeout)
    return (list(got) + [""] * n)[:n] if not t.is_alive() else [""] * n


def test_two_users_without_hugepages_cannot_map_or_read_each_others_pool(no_env):
    if os.geteuid() != 0:
        pytest.skip("creating throw-away users needs root")
    assert os.access(USER_PYTHON, os.X_OK), "%s is missing" % USER_PYTHON
    from test_users import _shared_python, remove_user
    users = ["onvmnh%da" % os.getpid(), "onvmnh%db" % os.getpid()]
    made, procs = [], []
    started = int(time.time()) - 1
    shared = tempfile.mkdtemp(prefix="onvm-nohuge-py-")
    try:
        pythonpath = _shared_python(shared)
        for u in users:
            # Not in group onvm: no hugetlbfs of theirs, as a student without root has none.
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", u], check=True, timeout=60)
            made.append(u)
        info = [pwd.getpwnam(u) for u in users]
        assert grp.getgrnam(paths.ONVM_GROUP).gr_gid not in os.getgrouplist(users[0], info[0].pw_gid)
        envs = [{"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath, "LANG": "C.UTF-8"}
                for pw in info]

        def as_user(i, args, **kw):
            return subprocess.Popen([USER_PYTHON] + args, user=info[i].pw_uid, group=info[i].pw_gid, extra_groups=[],
                                    env=envs[i], cwd=info[i].pw_dir, text=True, **kw)

        doc = as_user(0, ["-m", "onvm", "doctor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = doc.communicate(timeout=CLI_TIMEOUT)[0]
        assert "ok   memory: a manager runs without hugepages, in ordinary shared memory (no usable hugepages: " \
            in out, out
        for i in range(2):
            procs.append(as_user(i, ["-c", OWNER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE))
        seen = []
        for i, p in enumerate(procs):
            note, line = _lines(p, 2, 120)
            if not line.startswith("{"):
                p.kill()
                pytest.fail("user %s: no report: %r %r %s" % (users[i], note, line, p.communicate(timeout=30)))
            assert note.startswith("onvm: manager mine runs without hugepages") and "no usable hugepages" in note
            seen.append(json.loads(line))
        for i, s in enumerate(seen):
            assert s["uid"] == info[i].pw_uid and s["hugepages"] is False and s["same"], s
            assert len(s["fds"]) == 1 and len(s["ranges"]) == 2, s   # the manager holds it; the NF only maps it
            assert s["ranges"][0][1] == s["ranges"][1][1]
        # Neither left its pool anywhere a name could reach.
        # (Their uids may be reused ones: only files from this test count.)
        r = subprocess.run(["find", "/dev/shm", "/tmp", "-xdev", "-newermt", "@%d" % started, "(", "-user", users[0],
                            "-o", "-user", users[1], ")"], capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == "", r.stdout
        for me, other in ((0, 1), (1, 0)):
            probe = as_user(me, ["-c", PROBE_SCRIPT, json.dumps(seen[other])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
            out, err = probe.communicate(timeout=60)
            assert probe.returncode == 0, err
            res = json.loads(out)
            assert len(res) >= 8 and all(v == "denied" for v in res.values()), (users[me], res)
            assert seen[other]["secret"] not in out
        for p in procs:
            p.stdin.write("stop\n")
            p.stdin.flush()
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0 and "stopped" in out, (users[i], err)
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


# ---- the course image, as `docker run --rm -p 127.0.0.1:PORT:8888 onvm/lab:TAG` runs it ----------

IN_LAB = r'''
import json, onvm
@onvm.nf
def keep(pkt):
    return onvm.NEXT
sent = [bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + i.to_bytes(4, "big") + bytes(46 + i % 1000)
        for i in range(1000)]
with onvm.Manager() as mgr:
    mgr.launch(onvm.native("forward"), service=1)
    mgr.launch(keep, service=2)
    mgr.set_default_chain([1, 2, onvm.ToPort(1)])
    mgr.inject(sent, port=0)
    got = [bytes(p) for p in mgr.capture(port=1, count=1000, timeout=60)]
    print(json.dumps({"hugepages": mgr.uses_hugepages, "got": len(got), "same": sorted(got) == sorted(sent)}))
'''


def test_the_lab_image_runs_with_no_mounts_capabilities_or_privileges():
    from onvm import containers
    problem = containers.access_problem()
    if problem:
        pytest.skip("no Docker here: %s" % problem)
    ref = containers.lab_image()
    if subprocess.run(["docker", "image", "inspect", ref], capture_output=True, timeout=60).returncode:
        pytest.fail("%s is missing; build it: onvm images build --lab" % ref)
    name = "onvm-nohuge-lab-%d" % os.getpid()
    # This engine has no bridge (scripts/setup.sh), so no -p: the container
    # gets a network of its own with nothing in it, and the test looks from inside.
    run = subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "none", ref],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    try:
        info = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True,
                                         timeout=60).stdout)[0]
        host = info["HostConfig"]
        assert not host["Privileged"] and not host["CapAdd"] and not host.get("Binds"), host
        assert not host.get("Devices") and not host.get("Mounts") and not info["Mounts"], info

        def lab_answers():
            r = subprocess.run(["docker", "exec", name, "python", "-c", "import urllib.request as u; "
                                "print(u.urlopen('http://127.0.0.1:8888/api', timeout=5).read().decode())"],
                               capture_output=True, text=True, timeout=60)
            return r.returncode == 0 and '"version"' in r.stdout
        assert wait_for(lab_answers, timeout=120, step=1), subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True, timeout=60).stderr[-3000:]
        r = subprocess.run(["docker", "exec", name, "python", "-c", IN_LAB], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        assert "runs without hugepages" in r.stdout, r.stdout
        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert res == {"hugepages": False, "got": 1000, "same": True}, res
        # Notebook 01 (with the image's onvm kernel) and a lab check, as a student does there.
        r = subprocess.run(["docker", "exec", "-w", "/home/student", name, "jupyter", "nbconvert", "--to", "notebook",
                            "--execute", "--ExecutePreprocessor.timeout=300", "--output-dir", "/tmp/executed",
                            "notebooks/01-getting-started.ipynb"], capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, r.stderr[-3000:]
        r = subprocess.run(["docker", "exec", "-w", "/home/student", name, "cat",
                            "/tmp/executed/01-getting-started.ipynb"], capture_output=True, text=True, timeout=60)
        outputs = [o for c in json.loads(r.stdout)["cells"] for o in c.get("outputs", [])]
        assert not [o for o in outputs if o["output_type"] == "error"], outputs
        assert any("runs without hugepages" in "".join(o.get("text", "")) for o in outputs), outputs
        r = subprocess.run(["docker", "exec", "-w", "/home/student", name, "onvm", "lab", "check", "--json",
                            "labs/01-firewall/solution.ipynb"], capture_output=True, text=True, timeout=400)
        res = json.loads(r.stdout[r.stdout.index("{"):])
        assert r.returncode == 0 and res["max_score"] > 0 and res["score"] == res["max_score"], (res, r.stderr)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)


def test_a_container_nf_without_hugepages_mounts_only_its_door(no_env):
    from onvm import containers
    problem = containers.access_problem()
    if problem:
        pytest.skip("no Docker here: %s" % problem)
    with onvm.Manager(name="tcnf%d" % os.getpid(), hugepages=False) as mgr:
        nf = mgr.launch(flip_twice, service=1, container=True)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        sent = frames(300, tag=2)
        mgr.inject(sent, port=0)
        assert sorted(bytes(p) for p in mgr.capture(port=1, count=300, timeout=60)) == sorted(sent)
        info = json.loads(subprocess.run(["docker", "inspect", nf.process.id], capture_output=True, text=True,
                                         timeout=60).stdout)[0]
        assert [m["Destination"] for m in info["Mounts"]] == [containers.DOOR], info["Mounts"]
