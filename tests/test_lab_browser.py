"""`onvm lab` in a real browser, as a newcomer uses it: start it, open the URL
it prints in headless Chromium, open notebook 01, run every cell with the
onvm kernel, read the page (every code cell ran, none failed, the facts a
student relies on are shown), then Ctrl-C: nothing of the session is left
running.  About 40 s on the 2-core VM."""
import os
import re
import signal
import subprocess
import sys
import time

from browser import LabUI, chromium_page, lab_config
from conftest import wait_for
from onvm.common.runtime import _alive
from onvm.face import lab as onvm_lab

ONVM = [sys.executable, "-m", "onvm"]
NOTEBOOK = "notebooks/01-getting-started.ipynb"
# output a student relies on, as notebook 01 prints it
FACTS = ("ready: True", "injected: 100", "captured: 90", "any to port 9? False", "rx: 100  next: 90  drop: 10",
         "running: False")


def _read_url(p, timeout):
    """The URL `onvm lab` prints (None if it exits or is silent for timeout s)."""
    deadline, lines = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"open: (http://127\.0\.0\.1:\d+/\S+)", line)
        if m:
            return m.group(1), lines
    return None, lines


def _session_of(pid):
    """The ONVM_SESSION of `onvm lab`'s JupyterLab (its child process)."""
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, t)) as f:
            for c in f.read().split():
                with open("/proc/%s/environ" % c, "rb") as e:
                    env = dict(kv.split(b"=", 1) for kv in e.read().split(b"\0") if b"=" in kv)
                if b"ONVM_SESSION" in env:
                    return env[b"ONVM_SESSION"].decode()
    return None


def test_onvm_lab_runs_notebook_01_in_chromium(tmp_path):
    config = tmp_path / "config"
    lab_config(str(config))        # window.jupyterapp for the page helpers; no news toast
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    port = onvm_lab._free_port(21000 + os.getpid() % 1000)
    p = subprocess.Popen(ONVM + ["lab", "--dir", str(tmp_path / "nb"), "--port", str(port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, lines = _read_url(p, 180)
        assert url, "onvm lab printed no URL: %s" % "".join(lines)
        base, token = url.split("/lab/")[0], url.split("token=")[1]
        session = _session_of(p.pid)
        assert session
        ui = LabUI(base, token, timeout=120)
        with chromium_page(base, ui.timeout) as page:
            ui.open(page, NOTEBOOK)
            assert ui.kernel_name(page) == "onvm"
            ui.run_all(page)
            ui.wait_cells_done(page, timeout=180)
            # the outputs reach the page a moment after the counts: wait for the last fact
            page.wait_for_function("() => JSON.stringify(window.jupyterapp.shell.currentWidget.model.toJSON())"
                                   ".includes('running: False')", timeout=60_000)
            cells = ui.code_cells(page)
            ui.screenshot(page, "lab-notebook-01")
            running = onvm_lab.session_pids(session)
        counts = [c["count"] for c in cells]
        assert len(cells) >= 8 and counts == list(range(1, len(cells) + 1)), counts
        assert not [c for c in cells if c["error"]], [c["text"] for c in cells if c["error"]]
        shown = "\n".join(c["text"] for c in cells)
        for fact in FACTS:
            assert fact in shown, "%r not on the page:\n%s" % (fact, shown)
        assert len(running) >= 2            # JupyterLab and the notebook's kernel (its manager has stopped)

        p.send_signal(signal.SIGINT)
        assert p.wait(120) == 0
        assert "stopping" in p.stdout.read()
        assert wait_for(lambda: not [q for q in running if _alive(q)], 30, 0.2), \
            "left running: %s" % [q for q in running if _alive(q)]
        assert onvm_lab.session_pids(session) == []
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
