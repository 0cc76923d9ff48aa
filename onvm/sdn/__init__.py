"""SDN: an NF that asks an OpenFlow 1.3 controller where new flows go, and a
controller to ask.

    with onvm.sdn.Controller({"rules": [...], "default": ["port:1"]}) as ctl:
        mgr.launch(onvm.sdn.nf(controller=ctl.address))

The NF (onvm/sdn/switch.py) is the manager's miss handler; the controller
(onvm/sdn/controller.py) is an os-ken application on 127.0.0.1.  Any other
OpenFlow 1.3 controller may be used instead."""
import atexit
import json
import os
import socket
import subprocess
import sys
import time

from ..common import paths
from ..common.errors import require
from ..common.runtime import stop_process
from .policy import Policy

SDN_SERVICE = 250          # the SDN NF's service ID unless given


def nf(controller="127.0.0.1:6653", service=SDN_SERVICE, buffer=1024, decision_timeout=2.0, name="sdn"):
    """The SDN NF, for Manager.launch().

    param controller: "HOST:PORT" of an OpenFlow 1.3 controller
    param buffer: packets held while decisions are pending, in all (past
        that, misses take the default path, counted as the NF's app[2])
    param decision_timeout: seconds before a held packet takes the default path
    returns: an NFSpec; its NF counts in stats "app": packet-ins,
        packets held, overflow, rules installed.  It asks for the miss
        handler's role: Manager.launch grants it (flow_miss=False does not)"""
    from ..common.spec import NFSpec
    require("os_ken", "sdn", "onvm.sdn.nf()")
    from .switch import Switch
    spec = NFSpec(Switch(controller, buffer, decision_timeout), service, name=name)
    spec.flow_miss = True
    return spec


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Controller:
    """The shipped controller as a process on 127.0.0.1, from a notebook.

    param policy: a dict (see onvm.sdn.policy) or a JSON file's path
    param port: its TCP port (None: a free one)
    .start(), .stop() (by PID), a context manager; .address for onvm.sdn.nf"""

    def __init__(self, policy, port=None, log=None):
        require("os_ken", "sdn", "onvm.sdn.Controller")
        if isinstance(policy, (str, os.PathLike)):
            self.policy = Policy.load(policy)
            with open(policy) as f:
                self.text = f.read()
        else:
            self.policy = Policy(policy)
            self.text = json.dumps(policy)
        self.port = port or _free_port()
        self.dir = paths.log_dir("sdn-controller")          # private (0700), like managers' logs
        self.log_path = log or os.path.join(self.dir, "controller-%d.log" % self.port)
        self.process = None
        self._file = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self, timeout=30.0):
        """Start it and wait until it accepts connections.  returns: self."""
        if self.process and self.process.poll() is None:
            return self
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        if self._file is None:      # the first start: a fresh log; a restart appends to it
            flags |= os.O_TRUNC
            self._file = os.path.join(self.dir, "policy-%d.json" % self.port)
            with paths.open_log(self._file) as f:
                f.write(self.text)
        fd = os.open(self.log_path, flags, 0o600)
        with os.fdopen(fd, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "onvm.sdn.controller", "--policy", self._file,
                                             "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the controller exited: %s" % self.log()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the controller did not listen on %s within %g s" % (self.address, timeout))

    def stop(self, timeout=5.0):
        """Stop it (SIGTERM, then SIGKILL, by PID).  returns: its exit code."""
        p = self.process
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        return stop_process(p, timeout)

    def kill(self):
        """SIGKILL, as a crash would (tests of the switch's reconnecting)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        self.stop()
        if self._file:
            try:
                os.unlink(self._file)
            except OSError:
                pass
            self._file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        running = self.process is not None and self.process.poll() is None
        return "<Controller %s pid=%s %s>" % (self.address, self.pid, "running" if running else "stopped")
