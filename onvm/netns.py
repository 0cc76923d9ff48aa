"""Network namespaces for kernel traffic into and out of a chain, like a
Mininet host: a private network stack in which a tap or veth port of the
manager lives with an address, so ping, curl or scapy run there reach the
chain and nothing else.

    with onvm.Namespace("lab1") as ns:
        with onvm.Manager(ports=["tap:tap0@lab1=10.0.0.1/24", "ring"]) as mgr:
            ...
            ns.ping("10.0.0.2")          # loss in percent

("veth:eth0@lab1=10.0.0.1/24" is the fast kind for TCP between two
namespaces: common/veth.py.)

Only namespaces made here are ever removed: each is recorded (its inode)
in the runtime dir, and `onvm cleanup` removes those whose maker died."""
import atexit
import json
import os
import re
import subprocess

from .common import paths
from .common.errors import OnvmError
from .common.ports import NETNS_DIR, check_netns_name
from .common.runtime import stop_process

__all__ = ["Namespace", "cleanup_namespaces", "recorded"]

TIMEOUT = 30             # seconds any `ip` command may take


def _records_dir(create=False):
    d = os.path.join(paths.runtime_root(), "netns")
    return paths.private_dir(d, "namespace records directory") if create else d


def _ip(*args, timeout=TIMEOUT):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)


def _inode(name):
    try:
        st = os.stat(os.path.join(NETNS_DIR, name))
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


class Namespace:
    """A network namespace this process creates and removes.

    param name: 1..32 letters, digits, - or _; refused (ValueError) if a
        namespace of that name exists, and nothing is created
    start() creates it (loopback up); stop() kills what popen() started in
    it and deletes it, with every interface still inside.  A context
    manager; an atexit handler stops it too."""

    def __init__(self, name, start=True):
        self.name = check_netns_name(name)
        self.procs = []
        self._inode = None
        if start:
            self.start()

    @property
    def path(self):
        return os.path.join(NETNS_DIR, self.name)

    @property
    def running(self):
        return self._inode is not None and _inode(self.name) == self._inode

    def start(self):
        if self._inode is not None:
            raise OnvmError("namespace %r is already started" % self.name)
        if os.geteuid() != 0:
            raise OnvmError("creating a network namespace needs root (CAP_SYS_ADMIN); run as root")
        if os.path.exists(self.path):
            raise ValueError("a network namespace named %r exists already; choose another name "
                             "(onvm removes only namespaces it made)" % self.name)
        r = _ip("netns", "add", self.name)
        if r.returncode:
            raise ValueError("cannot create network namespace %r: %s" % (self.name, r.stderr.strip()))
        self._inode = _inode(self.name)
        try:
            with open(os.path.join(_records_dir(create=True), self.name), "w") as f:
                json.dump({"pid": os.getpid(), "inode": self._inode}, f)
            self.cmd("ip", "link", "set", "lo", "up")
        except BaseException:
            self.stop()                  # nothing half-made stays
            raise
        atexit.register(self.stop)
        return self

    def stop(self):
        """Kill what popen() started here (by pid), then delete the
        namespace if it is still the one made here.  returns: None."""
        for p in self.procs:
            stop_process(p)
        self.procs = []
        if self._inode is not None:
            _remove(self.name, self._inode)
            self._inode = None
        atexit.unregister(self.stop)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- running things inside ----------------------------------------------------

    def _argv(self, args):
        if len(args) == 1 and isinstance(args[0], str):
            args = args[0].split()
        if not self.running:
            raise OnvmError("namespace %r is not running" % self.name)
        return ["ip", "netns", "exec", self.name, *[str(a) for a in args]]

    def cmd(self, *args, timeout=TIMEOUT):
        """Run a command inside ("ping -c 1 10.0.0.2" or its words) and wait.
        returns: its output (stdout and stderr); see run() for the exit code"""
        r = self.run(*args, timeout=timeout)
        return r.stdout + r.stderr

    def run(self, *args, timeout=TIMEOUT):
        """Like cmd(); returns the subprocess.CompletedProcess (returncode,
        stdout, stderr as text)."""
        return subprocess.run(self._argv(args), capture_output=True, text=True, timeout=timeout)

    def popen(self, *args, **kw):
        """Start a command inside without waiting; stop() kills it by pid.
        returns: a subprocess.Popen"""
        p = subprocess.Popen(self._argv(args), **kw)
        self.procs.append(p)
        return p

    def ping(self, address, count=3, timeout=10):
        """Ping address from inside (one echo request every 0.2 s).
        returns: the packets lost in percent (0 when every reply came)"""
        import ipaddress
        address = str(ipaddress.ip_address(address))
        out = self.cmd("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", "-w", str(timeout), address,
                       timeout=timeout + 5)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        if not m:
            raise OnvmError("ping in namespace %r gave no summary: %s" % (self.name, out.strip()))
        sent, got = int(m.group(1)), int(m.group(2))
        return 100.0 * (sent - got) / sent if sent else 100.0

    def interfaces(self):
        """Names of the interfaces inside (lo included)."""
        out = self.cmd("ip", "-o", "link", "show")
        return [m.group(1) for m in re.finditer(r"^\d+: ([^:@]+)", out, re.M)]

    def __str__(self):
        return self.name

    def __repr__(self):
        if not self.running:
            return "<Namespace %s stopped>" % self.name
        return "<Namespace %s interfaces=%s procs=%d>" % (self.name, ",".join(self.interfaces()),
                                                         sum(p.poll() is None for p in self.procs))


def _remove(name, inode):
    """Delete namespace name if it is still the one with this inode, and
    its record.  returns: True if a namespace was deleted."""
    deleted = False
    if inode is not None and _inode(name) == list(inode):
        r = _ip("netns", "del", name)
        deleted = r.returncode == 0
    try:
        os.unlink(os.path.join(_records_dir(), name))
    except FileNotFoundError:
        pass
    return deleted


def recorded():
    """The namespaces Namespace made and recorded: [(name, maker pid, inode,
    maker alive)]; an unreadable record has pid 0 and inode None."""
    d = _records_dir()
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            with open(os.path.join(d, name)) as f:
                rec = json.load(f)
            pid, inode = int(rec["pid"]), rec["inode"]
        except (OSError, ValueError, KeyError, TypeError):
            pid, inode = 0, None                 # unreadable: forget it, delete nothing
        out.append((name, pid, inode, pid > 0 and os.path.exists("/proc/%d" % pid)))
    return out


def cleanup_namespaces(force=False, log=print):
    """Remove namespaces recorded by Namespace whose process is gone (all of
    them with force), never one made by anyone else.  returns: how many."""
    removed = 0
    for name, pid, inode, alive in recorded():
        if alive and not force:
            log("kept namespace %s: its process (pid %d) runs; use: onvm cleanup --force" % (name, pid))
            continue
        if _remove(name, inode):
            log("removed network namespace %s" % name)
            removed += 1
    return removed
