"""JupyterLab as the main job: the kernelspec, `onvm lab` as a user starts it
(a real JupyterLab, a real kernel starting a real manager, Ctrl-C), the
notebooks copied out, the wheel carrying them."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import pytest

from conftest import wait_for
from onvm.common.runtime import _alive, running_manager_pid
from onvm.face import lab as onvm_lab

ONVM = [sys.executable, "-m", "onvm"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_kernel_install_user_writes_this_python(tmp_path):
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path))
    r = subprocess.run(ONVM + ["kernel", "install", "--user"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "kernels" / "onvm" / "kernel.json") as f:
        spec = json.load(f)
    assert spec["display_name"] == "OpenNetVM (Python 3)"
    assert spec["argv"][:3] == [sys.executable, "-m", "onvm.face.kernel"]
    r = subprocess.run(ONVM + ["kernel", "install", "--user", "--system"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not allowed with" in r.stderr


def test_every_notebook_names_the_onvm_kernel():
    nbs = [os.path.join(d, f) for d in (os.path.join(ROOT, "notebooks"),) for f in os.listdir(d) if f.endswith(".ipynb")]
    labs = [d for d in os.listdir(os.path.join(ROOT, "labs")) if os.path.isdir(os.path.join(ROOT, "labs", d))]
    nbs += [os.path.join(ROOT, "labs", d, f) for d in labs for f in ("solution.ipynb", "student.ipynb")]
    assert len(labs) >= 4 and len(nbs) >= 14
    for path in nbs:
        with open(path) as f:
            assert json.load(f)["metadata"]["kernelspec"]["name"] == "onvm", path


def test_notebooks_get_copies_and_keeps_the_users_work(tmp_path):
    r = subprocess.run(ONVM + ["notebooks", "get", "--path", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    first = tmp_path / "notebooks" / "01-getting-started.ipynb"
    assert first.exists() and (tmp_path / "labs" / "01-firewall" / "student.ipynb").exists()
    assert not (tmp_path / "labs" / "01-firewall" / "solution.ipynb").read_text() == ""
    first.write_text("my work")
    assert onvm_lab.get_notebooks(str(tmp_path)) == []          # kept
    assert first.read_text() == "my work"
    assert str(first) in onvm_lab.get_notebooks(str(tmp_path), force=True)
    assert first.read_text() != "my work"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        onvm_lab.get_notebooks(str(tmp_path / "file"))


def _get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode(errors="replace")


def _children(pid):
    out = []
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, t)) as f:
            out += [int(c) for c in f.read().split()]
    return out


def test_onvm_lab_serves_runs_a_kernel_and_stops_all_on_ctrl_c(tmp_path):
    """README's first command, as a user runs it: the URL, the page, the API
    with the token (and not without), a notebook kernel that starts a
    manager; then Ctrl-C stops JupyterLab, the kernel and the manager."""
    from jupyter_client import BlockingKernelClient
    rt = tmp_path / "rt"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(rt))
    port = onvm_lab._free_port(19000 + os.getpid() % 1000)
    p = subprocess.Popen(ONVM + ["lab", "--dir", str(tmp_path / "nb"), "--port", str(port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    name = "labt%d" % os.getpid()
    try:
        url = None
        deadline = time.monotonic() + 180
        lines = []
        while url is None and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"open: (http://127\.0\.0\.1:\d+/\S+)", line)
            url = m and m.group(1)
        assert url, "no URL printed: %s" % "".join(lines)
        base, token = url.split("/lab/")[0], url.split("token=")[1]
        status, page = _get(url)
        assert status == 200 and "JupyterLab" in page
        status, body = _get(base + "/api/contents/notebooks?token=" + token)
        assert "01-getting-started.ipynb" in body
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(base + "/api/contents/notebooks")
        assert e.value.code == 403
        # the session every process of the lab carries
        server = _children(p.pid)[0]
        with open("/proc/%d/environ" % server, "rb") as f:
            session = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)[b"ONVM_SESSION"].decode()

        req = urllib.request.Request(base + "/api/kernels?token=" + token, data=json.dumps({"name": "onvm"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            kid = json.load(r)["id"]
        conn = rt / ("kernel-%s.json" % kid)
        assert wait_for(conn.exists, 60)
        kc = BlockingKernelClient(connection_file=str(conn))
        kc.load_connection_file()
        kc.start_channels(hb=False)
        try:
            kc.wait_for_ready(timeout=60)
            out = []
            reply = kc.execute_interactive("import onvm\nmgr = onvm.Manager(name=%r)\nprint(mgr.process.pid)" % name,
                                           timeout=120, output_hook=lambda m: out.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            kc.stop_channels()
        mgr_pid = int("".join(out).split()[0])
        assert running_manager_pid(name) == mgr_pid
        started = onvm_lab.session_pids(session)
        assert mgr_pid in started and server in started

        p.send_signal(signal.SIGINT)
        assert p.wait(120) == 0
        assert "stopping" in p.stdout.read()
        assert not [q for q in started if _alive(q)], "left running: %s" % [q for q in started if _alive(q)]
        assert running_manager_pid(name) is None
        assert onvm_lab.session_pids(session) == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(ONVM + ["cleanup", "--force", "--manager", name], capture_output=True, timeout=120)


def test_onvm_lab_refuses_a_file_as_its_folder(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    r = subprocess.run(ONVM + ["lab", "--dir", str(f)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "not a directory" in r.stderr


def test_the_wheel_carries_notebooks_labs_and_the_kernelspec(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path), ROOT], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("onvm-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in ("onvm/_data/notebooks/01-getting-started.ipynb", "onvm/_data/notebooks/00-index.ipynb",
                 "onvm/_data/labs/01-firewall/student.ipynb", "onvm/_data/labs/01-firewall/hidden_tests.py",
                 "onvm/_data/labs/02-load-balancer/student.ipynb", "onvm/_data/labs/03-syn-flood/hidden_tests.py",
                 "onvm/_data/labs/04-performance/README.md", "onvm/_data/labs/README.md",
                 "onvm/_data/kernels/onvm/kernel.json", "onvm/face/lab.py", "onvm/face/grading.py"):
        assert want in names, want


def _start_lab(tmp_path, env):
    """`onvm lab` as a user starts it.  returns: (process, base URL, token)."""
    port = onvm_lab._free_port(19000 + os.getpid() % 1000)
    p = subprocess.Popen(ONVM + ["lab", "--dir", str(tmp_path / "nb"), "--port", str(port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"open: (http://127\.0\.0\.1:\d+)/lab/\S+token=(\w+)", line)
        if m:
            return p, m.group(1), m.group(2)
    p.kill()
    p.wait()
    pytest.fail("onvm lab printed no URL: %s" % "".join(lines))


def _terminal_run(base, token, command, end, timeout=60):
    """Open a JupyterLab terminal (REST, then its websocket), type command,
    read until end is printed.  returns: what the terminal printed."""
    import asyncio

    from tornado.websocket import websocket_connect
    req = urllib.request.Request(base + "/api/terminals?token=" + token, data=b"{}",
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        name = json.load(r)["name"]

    async def talk():
        ws = await websocket_connect(base.replace("http:", "ws:") + "/terminals/websocket/%s?token=%s" % (name, token))
        ws.write_message(json.dumps(["stdin", command + "\r"]))
        out, deadline = "", time.monotonic() + timeout
        while end not in out and time.monotonic() < deadline:
            try:
                msg = await asyncio.wait_for(ws.read_message(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if msg is None:
                break
            kind, *args = json.loads(msg)
            if kind == "stdout":
                out += args[0]
        ws.close()
        return out
    try:
        return asyncio.run(talk())
    finally:
        req = urllib.request.Request(base + "/api/terminals/%s?token=%s" % (name, token), method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


def test_the_labs_terminal_and_kernel_find_the_environments_onvm(tmp_path):
    """A terminal opened in JupyterLab runs the user's login profile, which
    resets PATH; `onvm lab check ...` there must still find this onvm, as
    must a notebook's `!onvm ...`, with python and jupyter from the same
    environment.  PATH here starts without it, as a student's login has."""
    from jupyter_client import BlockingKernelClient
    bindir = os.path.dirname(sys.executable)
    want = [os.path.join(bindir, c) for c in ("onvm", "python", "jupyter")]
    rt = tmp_path / "rt"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(rt), PATH="/usr/bin:/bin")
    p, base, token = _start_lab(tmp_path, env)
    try:
        out = _terminal_run(base, token, "command -v onvm python jupyter; echo END-$((6 * 7))", "END-42")
        assert "END-42" in out, "the terminal never ran the command: %r" % out
        lines = [ln.strip() for ln in out.splitlines()]
        for w in want:
            assert w in lines, "terminal: %s not on PATH first; it printed %r" % (w, out)

        req = urllib.request.Request(base + "/api/kernels?token=" + token, data=json.dumps({"name": "onvm"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            kid = json.load(r)["id"]
        conn = rt / ("kernel-%s.json" % kid)
        assert wait_for(conn.exists, 60)
        kc = BlockingKernelClient(connection_file=str(conn))
        kc.load_connection_file()
        kc.start_channels(hb=False)
        try:
            kc.wait_for_ready(timeout=60)
            # One name per `command -v`: dash, the /bin/sh a `!` line runs
            # under, prints only the first of several names.
            printed = []
            code = "!for c in onvm python jupyter; do command -v $c; done"
            reply = kc.execute_interactive(code, timeout=60,
                                           output_hook=lambda m: printed.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            kc.stop_channels()
        assert [ln.strip() for ln in "".join(printed).splitlines()] == want, printed
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.parametrize("missing, code, extra", [
    ("jupyter_client", "from onvm.face.cli import main; main(['kernel', 'install', '--user'])", "lab"),
    ("jupyterlab", "from onvm.face.cli import main; main(['lab', '--dir', sys.argv[1]])", "lab"),
    ("nbclient", "from onvm.face.cli import main; main(['lab', 'check', 'x.ipynb'])", "lab"),
    ("docker", "from onvm import containers; containers.engine()", "containers"),
    ("os_ken", "import onvm; onvm.sdn.nf()", "sdn"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, missing, code, extra):
    """As if onvm were installed without that extra: the import fails (None in
    sys.modules), and what needed it says which extra to install."""
    r = subprocess.run([sys.executable, "-c", "import sys; sys.modules[%r] = None\n%s" % (missing, code),
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "needs %s" % missing in last or "not installed" in last, r.stderr
    assert "pip install 'onvm[%s]'" % extra in last, r.stderr
    assert "ModuleNotFoundError" not in r.stderr, r.stderr
