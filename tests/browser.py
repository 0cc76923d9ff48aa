"""JupyterLab in a real browser, for tests: a JupyterLab server on
127.0.0.1 with a token, in a temporary home, with a kernelspec ("onvm")
that runs this venv's Python; Debian's chromium driven by Playwright
(never `playwright install`: nothing is downloaded); every request the page
makes to anything but that server is refused.

    from browser import lab, page            # fixtures
    def test_x(lab, page):
        nb = lab.write_notebook("x.ipynb", ["import onvm", "1 + 1"])
        lab.open(page, nb); lab.run_all(page)
        page.wait_for_selector("text=2")

Screenshots go to tests/artifacts/ (git-ignored): lab.screenshot(page, "x").

A JupyterLab started some other way (`onvm lab`) is driven the same way:
LabUI(url, token) has the page helpers, chromium_page(url) the browser; that
server must run with LabApp.expose_app_in_browser (lab_config() writes it)."""
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
KERNEL = "onvm"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_config(config_dir):
    """Jupyter config for a browser-driven lab in config_dir (JUPYTER_CONFIG_DIR):
    window.jupyterapp exposed for the helpers, no news toast over the page,
    nothing fetched from outside (no news, update check or extension index)."""
    labconfig = os.path.join(config_dir, "labconfig")
    os.makedirs(labconfig, exist_ok=True)
    with open(os.path.join(labconfig, "page_config.json"), "w") as f:
        json.dump({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}, f)
    with open(os.path.join(config_dir, "jupyter_server_config.json"), "w") as f:
        json.dump({"LabApp": {"expose_app_in_browser": True, "news_url": None,
                              "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                              "extension_manager": "readonly"}}, f)


class LabUI:
    """Page helpers for a JupyterLab at url (with token) in a Playwright page.

    param timeout: seconds any wait may take"""

    def __init__(self, url, token, timeout=90):
        self.url, self.token, self.timeout = url, token, timeout

    def open(self, page, name):
        """Open a notebook in JupyterLab and wait until its kernel is idle."""
        page.goto("%s/lab/tree/%s?token=%s" % (self.url, name, self.token))
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=self.timeout * 1000)
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return k && k.status === 'idle'; }", timeout=self.timeout * 1000)

    def kernel_name(self, page):
        """The kernelspec name of the open notebook's kernel."""
        return page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.name")

    def run_all(self, page):
        """Run every cell of the open notebook (returns at once; cells run on)."""
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def wait_cells_done(self, page, timeout=None):
        """Wait until no cell of the open notebook is running or queued."""
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " return w && w.content.widgets.every(c => c.model.type !== 'code' ||"
            " (c.model.executionCount !== null && !c.node.querySelector('.jp-InputArea-prompt')"
            "   .textContent.includes('*'))); }", timeout=(timeout or self.timeout) * 1000)

    def code_cells(self, page):
        """Each code cell of the open notebook, as the page holds it (its
        model: cells scrolled out of view may not be in the DOM):
        {"count": its execution count, "text": its outputs' text, "error": an error output?}."""
        return page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets"
                             ".filter(c => c.model.type === 'code').map(c => {"
                             " const outs = c.model.outputs.toJSON();"
                             " const text = o => [].concat(o.text || (o.data && o.data['text/plain']) || []).join('');"
                             " return {count: c.model.executionCount, text: outs.map(text).join(''),"
                             " error: outs.some(o => o.output_type === 'error')}; })")

    def cell_texts(self, page):
        """The text of each cell's output area, in order."""
        return page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.map("
                             "c => c.node.querySelector('.jp-OutputArea') ?"
                             " c.node.querySelector('.jp-OutputArea').innerText : '')")

    def screenshot(self, page, name):
        """Save a full-page screenshot as tests/artifacts/NAME.png; returns the path."""
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, name + ".png")
        page.screenshot(path=path, full_page=True)
        print("screenshot: %s" % path)
        return path


class JupyterLab(LabUI):
    """A JupyterLab server of this venv, started in a temporary home.

    param root: a fresh directory: home/, the notebook dir notebooks/, the
        jupyter config, data and runtime dirs, and lab.log go there
    param env: extra environment for the server and its kernels"""

    def __init__(self, root, env=None, timeout=90):
        self.port = _free_port()
        super().__init__("http://127.0.0.1:%d" % self.port, secrets.token_hex(16), timeout)
        self.root = str(root)
        self.home = os.path.join(self.root, "home")
        self.notebooks = os.path.join(self.root, "notebooks")
        self.log_path = os.path.join(self.root, "lab.log")
        self.process = None
        self.env = dict(os.environ, HOME=self.home, JUPYTER_CONFIG_DIR=os.path.join(self.home, ".jupyter"),
                        JUPYTER_DATA_DIR=os.path.join(self.home, "data"),
                        JUPYTER_RUNTIME_DIR=os.path.join(self.home, "runtime"),
                        IPYTHONDIR=os.path.join(self.home, ".ipython"), JUPYTER_PLATFORM_DIRS="1",
                        **(env or {}))
        self.env.pop("JUPYTER_PATH", None)

    def start(self):
        for d in (self.home, self.notebooks, self.env["JUPYTER_DATA_DIR"]):
            os.makedirs(d, exist_ok=True)
        lab_config(self.env["JUPYTER_CONFIG_DIR"])
        # The kernel this venv's Python runs, so notebooks import onvm.
        spec = os.path.join(self.env["JUPYTER_DATA_DIR"], "kernels", KERNEL)
        os.makedirs(spec, exist_ok=True)
        with open(os.path.join(spec, "kernel.json"), "w") as f:
            json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       "display_name": "Python (onvm)", "language": "python"}, f)
        # The token goes by a 0600 file, as onvm lab passes it: a command line is world-readable.
        token_file = os.path.join(self.home, "token")
        with open(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), "w") as f:
            f.write(self.token)
        self.env.pop("JUPYTER_TOKEN", None)
        self.env["JUPYTER_TOKEN_FILE"] = token_file
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", "--port=%d" % self.port,
               "--ServerApp.port_retries=0", "--ServerApp.root_dir=%s" % self.notebooks]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, cwd=self.notebooks, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("JupyterLab exited (%s); see %s:\n%s" % (self.process.returncode, self.log_path,
                                                                            self.log_tail()))
            try:
                self.api("GET", "/api/status")
                return self
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("JupyterLab did not answer within %d s; see %s" % (self.timeout, self.log_path))
            time.sleep(0.2)

    def api(self, method, path, body=None):
        """A REST call to the server; returns the decoded JSON (or None)."""
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": "token " + self.token,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
        return json.loads(data) if data else None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        """Shut the kernels and the server down (SIGKILL to its group if it will not go)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                for k in self.api("GET", "/api/kernels") or []:
                    self.api("DELETE", "/api/kernels/%s" % k["id"])
                self.api("POST", "/api/shutdown")
            except (OSError, urllib.error.URLError):
                pass
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def write_notebook(self, name, cells, kernel=KERNEL):
        """A notebook of code cells (strings) in the notebook dir; returns its name."""
        nb = {"nbformat": 4, "nbformat_minor": 5,
              "metadata": {"kernelspec": {"name": kernel, "display_name": "Python (onvm)", "language": "python"}},
              "cells": [{"cell_type": "code", "id": "c%d" % i, "metadata": {}, "execution_count": None,
                         "outputs": [], "source": src} for i, src in enumerate(cells)]}
        with open(os.path.join(self.notebooks, name), "w") as f:
            json.dump(nb, f)
        return name

    def copy_notebook(self, path):
        """Copy a notebook (e.g. notebooks/05-live-dashboard.ipynb) into the notebook dir."""
        shutil.copy(path, self.notebooks)
        return os.path.basename(path)


@pytest.fixture
def lab(tmp_path):
    """A running JupyterLab (see JupyterLab), stopped afterwards."""
    server = JupyterLab(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def chromium_page(url, timeout=90):
    """A Chromium page (Debian's chromium through Playwright) that may only
    reach url (a server's http://127.0.0.1:PORT); closed on exit."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("no %s: apt-get install chromium (scripts/setup.sh does)" % CHROMIUM)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1100})
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
                          else route.abort())
            pg = context.new_page()
            pg.set_default_timeout(timeout * 1000)
            yield pg
        finally:
            browser.close()


@pytest.fixture
def page(lab):
    """A Chromium page that may only reach the lab server."""
    with chromium_page(lab.url, lab.timeout) as pg:
        yield pg
