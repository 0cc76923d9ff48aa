"""`onvm lab` (JupyterLab on 127.0.0.1 with the notebooks and labs) and
`onvm notebooks get` (copy them out of the package).

Everything `onvm lab` starts carries ONVM_SESSION=<random id> in its
environment (JupyterLab, its kernels, the managers and NFs they start), so
on Ctrl-C it stops exactly those, by pid, and nothing else of the user's."""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from ..common import paths
from ..common.errors import OnvmError
from ..common.paths import data_path
from ..common.runtime import stop_process

SESSION_VAR = "ONVM_SESSION"
BIN_VAR = "ONVM_LAB_BIN"               # the environment's bin dir, put first on PATH in terminals
CONTENT = ("notebooks", "labs")      # what `onvm notebooks get` copies
START_TIMEOUT = 120.0                  # JupyterLab's first start builds its settings: slow on a busy machine
STOP_TIMEOUT = 20.0


def default_dir():
    return os.path.join(os.path.expanduser("~"), "onvm-notebooks")


def get_notebooks(path=None, force=False):
    """Copy the tutorial notebooks and course labs into path (default
    ~/onvm-notebooks).  An existing copy is kept (it may hold the user's
    work) unless force=True, which replaces onvm's files and keeps others.
    returns: the list of files written."""
    path = os.path.abspath(path or default_dir())
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError("%s exists and is not a directory" % path)
    written = []
    for what in CONTENT:
        src = data_path(what)
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            rel = os.path.relpath(root, src)
            dst_dir = os.path.normpath(os.path.join(path, what, rel))
            os.makedirs(dst_dir, exist_ok=True)
            for f in sorted(files):
                if f.endswith((".pyc", ".pcap")) or f.startswith("."):
                    continue
                dst = os.path.join(dst_dir, f)
                if os.path.exists(dst) and not force:
                    continue
                shutil.copyfile(os.path.join(root, f), dst)
                written.append(dst)
    return written


# ---- processes started under a session -------------------------------------------

def session_pids(session, uid=None):
    """Pids of our processes (or uid's) whose environment has
    ONVM_SESSION=session.  returns: a sorted list."""
    uid = os.geteuid() if uid is None else uid
    want = ("%s=%s" % (SESSION_VAR, session)).encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            if os.stat("/proc/" + d).st_uid != uid:
                continue
            with open("/proc/%s/environ" % d, "rb") as f:
                if want in f.read().split(b"\0"):
                    found.append(int(d))
        except OSError:
            continue
    return sorted(found)


def stop_session(session):
    """Stop what a session left running: its managers through
    `onvm cleanup --force` (so their files go too), then any other process
    of it (SIGTERM, SIGKILL after 5 s).  returns: how many processes were left."""
    from ..common.runtime import _alive, _wait_gone, running_manager_pid
    from .doctor import cleanup
    pids = session_pids(session)
    if not pids:
        return 0
    names = [n for n in paths.manager_names() if running_manager_pid(n) in pids]
    if names:
        cleanup(force=True, names=names)
    left = [p for p in session_pids(session) if _alive(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in left:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        left = _wait_gone(left, 5.0)
        if not left:
            break
    return len(pids)


# ---- onvm lab -------------------------------------------------------------------

def _free_port(start):
    for port in range(start, start + 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise OnvmError("no free TCP port in %d..%d on 127.0.0.1; pass --port" % (start, start + 99))


def _ready(url, timeout):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


class Lab:
    """JupyterLab on 127.0.0.1 serving a copy of the notebooks and labs.

    with Lab(root) as lab: print(lab.url)      # stops it and all it started

    param root: the directory it serves (filled by get_notebooks() if empty)
    param port: the first port tried (the next free one is taken)"""

    def __init__(self, root=None, port=8888):
        self.root = os.path.abspath(root or default_dir())
        self.port = _free_port(port)
        self.token = secrets.token_hex(24)
        self.session = secrets.token_hex(8)
        self.process = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/lab/tree/notebooks/00-index.ipynb?token=%s" % (self.port, self.token)

    def start(self):
        from ..common.errors import require
        from . import kernel
        require("jupyterlab", "lab", "onvm lab")
        get_notebooks(self.root)
        if kernel.installed() is None or not _spec_is_ours(kernel.installed()):
            kernel.install("sys-prefix" if sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK)
                           else "user")
        self.log_path = os.path.join(paths.logs_root(create=True), "jupyterlab-%d.log" % self.port)
        env = paths.dpdk_env()
        env[SESSION_VAR] = self.session
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        # The token never goes into the command line or the environment:
        # /proc/PID/cmdline is readable by every user, and whoever has the
        # token runs code as us.  JupyterLab reads it from a 0600 file in a
        # 0700 dir of ours (JUPYTER_TOKEN_FILE), removed once it has.
        env.pop("JUPYTER_TOKEN", None)           # it would win over the file
        token_file = paths.secret_file("lab-token-", self.token)
        env["JUPYTER_TOKEN_FILE"] = token_file
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", "--port=%d" % self.port,
               "--ServerApp.port_retries=0", "--ServerApp.root_dir=%s" % self.root, "--ServerApp.open_browser=False",
               "--MappingKernelManager.default_kernel_name=onvm"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        env[BIN_VAR] = os.path.dirname(sys.executable)
        cmd += terminal_args()
        try:
            with paths.open_log(self.log_path) as log:
                self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                env=env, cwd=self.root, start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT
            api = "http://127.0.0.1:%d/api/status?token=%s" % (self.port, self.token)
            while not _ready(api, 5):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    from ..common.runtime import tail
                    self.stop()
                    raise OnvmError("JupyterLab did not start; its log (%s):\n%s"
                                    % (self.log_path, tail(self.log_path)))
                time.sleep(0.2)
        finally:
            os.unlink(token_file)                # read at start; our URL is the only copy left
        return self

    def stop(self):
        """Stop JupyterLab (its kernels shut down, and managers follow their
        kernel), then whatever of this session is still running."""
        if self.process is not None:
            stop_process(self.process, STOP_TIMEOUT)
            self.process = None
        stop_session(self.session)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<Lab %s port=%d %s>" % (self.root, self.port, "running" if self.process else "stopped")


def terminal_args():
    """JupyterLab's options for its terminals: bash with lab_bashrc.sh, the
    user's profile and then this environment's bin first on PATH (left to
    itself JupyterLab runs a login shell, whose profile resets PATH, and
    `onvm` is not found).  Without bash, JupyterLab's default shell.
    returns: a list of command-line options."""
    bash = shutil.which("bash")
    if bash is None:
        return []
    rc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab_bashrc.sh")
    return ["--ServerApp.terminado_settings", "shell_command=%r" % [bash, "--rcfile", rc, "-i"]]


def _spec_is_ours(kernel_json):
    import json
    try:
        with open(kernel_json) as f:
            return json.load(f)["argv"][0] == sys.executable
    except (OSError, ValueError, KeyError, IndexError):
        return False


def run_lab(root=None, port=8888):
    """`onvm lab`: start JupyterLab, print its URL, run until SIGINT/SIGTERM."""
    stop = []

    def on_signal(signum, frame):
        stop.append(signum)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    lab = Lab(root, port)
    try:
        lab.start()
        print("onvm lab: JupyterLab is serving %s" % lab.root)
        print("open: %s" % lab.url, flush=True)
        print("(log: %s; Ctrl-C stops it and every manager its notebooks started)" % lab.log_path, flush=True)
        while not stop and lab.process.poll() is None:
            time.sleep(0.2)
        if not stop:
            print("onvm lab: JupyterLab exited (status %s); see %s" % (lab.process.returncode, lab.log_path),
                  file=sys.stderr)
            return 1
        print("onvm lab: stopping", flush=True)
        return 0
    finally:
        lab.stop()
        for s, h in old.items():
            signal.signal(s, h)
