"""Starting NFs, on the notebook side: one command line for the NF runner
(python -m onvm.nflib.run), used by a process NF and by a container NF
(onvm.containers runs the same runner in an image), and the process launch
itself.  Stopping goes through onvm.common.runtime.stop_processes."""
import atexit
import os
import re
import subprocess
import sys
import time

from .common import paths
from .common.abi import lib
from .common.errors import OnvmError
from .common.runtime import remove_leftovers, running_manager_pid, stop_process, tail
from .common.spec import NativeNF, NFSpec, _check_service
from .nflib.door import TICKET_ENV
from .nflib.run import nf_argv

RUNNER = [sys.executable, "-m", "onvm.nflib.run"]


def child_env():
    """The environment for NF and manager processes: this process's import
    path, so NF callbacks pickled by reference import in the child too, and
    the XDG_RUNTIME_DIR that makes DPDK use our runtime root."""
    env = paths.dpdk_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return env


def spawn_process(manager, spec, service, name, ticket, log_path, staged=False):
    """Start one NF as a process of ours, logging to log_path; a Python NF's
    callback goes through its stdin (no file another user could swap).
    returns: the Popen."""
    code = None
    if not isinstance(spec, NativeNF) and not hasattr(spec, "nfrun_args"):    # a C NF: no code to send
        import cloudpickle
        code = cloudpickle.dumps(NFSpec(spec.fn, service, spec.batch, name))
    env = child_env()
    env[TICKET_ENV] = ticket         # the environment: readable by our uid only, unlike argv
    with paths.open_log(log_path) as log:
        p = subprocess.Popen(RUNNER + nf_argv(manager, spec, service, name, staged), stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL if code is None else subprocess.PIPE,
                             env=env, start_new_session=True)
    if code is not None:
        try:
            p.stdin.write(code)     # the runner reads it all before anything else
        except BrokenPipeError:
            pass                    # it died first; the launcher reports its log
        finally:
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
    return p


class NF:
    """A running NF process.  repr: <NF mark.0 svc=1 inst=3 rx=1200>."""

    def __init__(self, mgr, name, service, process, log_path):
        self.mgr = mgr
        self.name = name
        self.service = service
        self.process = process
        self.log_path = log_path
        self.instance = None

    @property
    def pid(self):
        return self.process.pid

    @property
    def alive(self):
        return self.process.poll() is None

    def stats(self):
        """This NF's counters (see Manager.stats), or {} if it is gone."""
        if self.instance is None:
            return {}
        s = self.mgr.control.nf_stats(self.instance)
        return s if s["pid"] == self.pid else {}

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout=5.0):
        """Ask the NF to exit (it unregisters); kill it after timeout."""
        if self.alive:
            stop_process(self.process, timeout)

    def kill(self):
        """SIGKILL, as a crash would; the manager notices within a second."""
        if self.alive:
            self.process.kill()
        self.process.wait()

    def __str__(self):
        return self.name

    def __repr__(self):
        s = self.stats() if self.alive else {}
        return "<NF %s svc=%d inst=%s rx=%s%s>" % (self.name, self.service, self.instance,
                                                   s.get("rx", "-"), "" if self.alive else " exited")


def check_launch(mgr, nf, service, replicas, name, container, flow_miss):
    """launch()'s arguments checked, before anything starts.
    returns: (spec, service, names, limits, flow_miss)"""
    from .cnf import CNF
    from .containers import ImageNF, check_limits
    if isinstance(nf, ImageNF) and not container:
        container = True
    limits = check_limits(container) if container is not False else None
    if isinstance(nf, CNF) and container is not False:
        spec = nf.image_nf()                 # its binary goes in an image of its own, built once
    elif isinstance(nf, (NFSpec, NativeNF, ImageNF, CNF)):
        spec = nf
    elif callable(nf):
        spec = NFSpec(nf)
    else:
        raise ValueError("launch() takes an @onvm.nf function, onvm.native(...) or onvm.image(...), got %r"
                         % (nf,))
    service = service if service is not None else spec.service
    if service is None:
        raise ValueError("NF %r has no service ID: pass service=..." % spec.name)
    _check_service(service)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError("replicas must be a positive int, got %r" % (replicas,))
    live = sum(1 for n in mgr.launched if n.alive and n.service == service)
    if live + replicas > lib.ONVM_MAX_INSTANCES:
        raise ValueError("service %d would have %d instances; at most %d"
                         % (service, live + replicas, lib.ONVM_MAX_INSTANCES))
    base = name or spec.name
    if not isinstance(base, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,28}", base):
        raise ValueError("NF name must be 1..28 letters, digits, - or _, got %r" % (base,))
    names = [base] if replicas == 1 else ["%s.%d" % (base, r) for r in range(replicas)]
    for nm in names:
        if any(n.name == nm and n.alive for n in mgr.launched):
            raise ValueError("an NF named %r is already running; pass name=..." % nm)
    if flow_miss is None:
        flow_miss = bool(getattr(spec, "flow_miss", False))
    elif not isinstance(flow_miss, bool):
        raise ValueError("flow_miss must be True or False, got %r" % (flow_miss,))
    return spec, service, names, limits, flow_miss


def start_nfs(mgr, spec, service, names, timeout, staged=False, limits=None, flow_miss=False):
    """Start one NF per name (through mgr._spawn) and wait until each has
    registered; if one fails, stop them all.  returns: the NFs."""
    if not mgr.running:
        raise OnvmError("manager %r is not running" % mgr.name)
    started = []
    deadline = time.monotonic() + timeout
    try:
        for nm in names:
            started.append(mgr._spawn(spec, service, nm, staged, limits, flow_miss))
            if limits is None:
                # Replica r registers before r+1 (about 0.15 s each), so
                # mark.0 gets a lower instance than mark.1: tables and the
                # dashboard list them in the same order.  Containers start
                # slowly; they keep starting in parallel.
                wait_registered(mgr, started[-1:], max(0.0, deadline - time.monotonic()), staged)
        wait_registered(mgr, started, max(0.0, deadline - time.monotonic()), staged)
    except BaseException:
        for n in started:
            n.kill()
        raise
    mgr.launched += started
    return started


def spawn_nf(mgr, spec, service, name, staged=False, limits=None, flow_miss=False):
    """Start one NF for mgr, as a process or (limits) in a container, with its launch ticket."""
    logdir = paths.log_dir(mgr.name)
    # This launch's one registration (onvm.mgr.nfdoor): the NF presents it on nf.sock.
    ticket = mgr.ctl.nf_ticket(service=service, name=name, flow_miss=flow_miss)["ticket"]
    if limits is not None:
        return spawn_container(mgr, spec, service, name, limits, os.path.join(logdir, "nf-%s.log" % name),
                               staged, ticket)
    log_path = os.path.join(logdir, "nf-%s.log" % name)
    p = spawn_process(mgr.name, spec, service, name, ticket, log_path, staged)
    return NF(mgr, name, service, p, log_path)


def spawn_container(mgr, spec, service, name, limits, log_path, staged=False, ticket=None):
    """The container path of spawn_nf: the same nfrun in onvm/nf (or the
    NF's image), its code on stdin as for a process."""
    from . import containers
    code = None
    if isinstance(spec, NFSpec):
        code = containers.pickle_nf(NFSpec(spec.fn, service, spec.batch, name))
    return NF(mgr, name, service, containers.spawn(mgr.name, spec, service, name, limits, log_path, code,
                                              staged, ticket), log_path)


def wait_registered(mgr, nfs, timeout, staged=False):
    """Wait until each NF is running and (unless staged) routable: in its
    service's instances in the published tables, which the manager
    updates a moment after marking the NF running."""
    deadline = time.monotonic() + timeout
    waiting = list(nfs)
    while waiting:
        by_pid = {s.pid: i for i, s in mgr.control.nf_slots()}
        for n in list(waiting):
            if n.pid in by_pid and (staged or by_pid[n.pid] in
                                    mgr.control.service_table(n.service)["instances"]):
                n.instance = by_pid[n.pid]
                waiting.remove(n)
            elif n.process.poll() is not None:
                raise OnvmError("NF %s did not start: %s" % (n.name, tail(n.log_path)))
        if waiting and time.monotonic() > deadline:
            raise OnvmError("NF %s did not register within %d s; see %s"
                            % (waiting[0].name, timeout, waiting[0].log_path))
        time.sleep(0.01)


def start_daemon(mgr):
    """Start mgr's manager process (python -m onvm.mgr.daemon with mgr.config),
    handing it the name lock, and wait until it answers on its socket.
    raises: OnvmError if the name is taken, or with the log's tail if the
    manager exits or is not ready in 60 s."""
    # Take the name here, so a clash is reported before anything starts,
    # and hand the lock to the manager process, which holds it for life.
    lock = paths.NameLock(mgr.name)
    if not lock.acquire():
        pid = running_manager_pid(mgr.name)
        raise OnvmError("a manager named %r is %s; stop it, attach to it with onvm.Manager.attach(%r), "
                        "or choose another name" % (mgr.name, "already running (pid %d)" % pid if pid
                                                    else "starting or running", mgr.name))
    try:
        mgr.log_path = os.path.join(paths.log_dir(mgr.name), "manager.log")
        cmd = [sys.executable, "-m", "onvm.mgr.daemon", "--parent", str(os.getpid()), "--lock-fd", str(lock.fd)]
        cmd += mgr.config.to_argv()
        with paths.open_log(mgr.log_path) as log:
            mgr.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=child_env(), start_new_session=True, pass_fds=(lock.fd,))
    finally:
        if mgr.process is None:
            remove_leftovers(mgr.name, lock)
        lock.release()       # the manager's copy of the fd keeps it locked
    atexit.register(mgr.stop)
    deadline = time.monotonic() + 60
    while True:
        if mgr.process.poll() is not None:
            msg = "exit status %s: %s" % (mgr.process.returncode, tail(mgr.log_path))
            mgr.process = None
            remove_leftovers(mgr.name)
            raise OnvmError("the manager did not start: %s" % msg)
        if os.path.exists(paths.sock_path(mgr.name)):
            try:
                if mgr.ctl.within(5).ping()["pid"] == mgr.process.pid:
                    break
            except (OSError, ConnectionError):
                pass
        if time.monotonic() > deadline:
            mgr.stop()
            raise OnvmError("the manager did not become ready within 60 s; see %s" % mgr.log_path)
        time.sleep(0.02)


def stop_daemon(mgr):
    """Stop mgr's manager process: a shutdown request (SIGTERM if it does not
    answer), SIGKILL after 20 s; then remove what it left behind."""
    try:
        mgr.ctl.within(5).shutdown()
    except (OSError, ConnectionError, OnvmError):
        mgr.process.terminate()
    try:
        mgr.process.wait(20)
    except subprocess.TimeoutExpired:
        mgr.process.kill()
        mgr.process.wait()
    remove_leftovers(mgr.name)      # a no-op if it cleaned up itself, or a process still holds the name
    mgr.process = None
