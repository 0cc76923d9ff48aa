"""The notebook side: start a manager, launch NFs, set the default chain,
inject and capture packets, read stats.  Everything here talks to the
manager process over its socket or reads its control file; DPDK is never
initialised in this process."""
import atexit
import os
import re
import signal
import subprocess
import sys
import time

from . import paths, protocol
from ._core import lib
from .errors import ChainError, OnvmError, check_number
from .nfdoor import TICKET_ENV
from .packet import ToPort, ToService
from .ports import parse_port
from .stats import ControlFile
from .traffic import Filter, PortRings, Tap, dissect_all


class NFSpec:
    """A Python NF: a callback and where it sits.  Made by @onvm.nf."""

    def __init__(self, fn, service=None, batch=False, name=None):
        if not callable(fn):
            raise ValueError("an NF needs a callable, got %r" % (fn,))
        if service is not None:
            _check_service(service)
        self.fn = fn
        self.service = service
        self.batch = bool(batch)
        self.name = name or getattr(fn, "__name__", "nf").strip("<>")

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return "<NFSpec %s svc=%s%s>" % (self.name, self.service, " batch" if self.batch else "")


class NativeNF:
    """A C NF shipped with onvm: forward, drop, count, sink, generate."""
    NAMES = ("forward", "drop", "count", "sink", "generate")

    def __init__(self, name, service=None, **args):
        if name not in self.NAMES:
            raise ValueError("no native NF called %r (%s)" % (name, ", ".join(self.NAMES)))
        if args and name != "generate":
            raise ValueError("native NF %r takes no arguments" % name)
        for k, v in args.items():
            if k not in ("rate", "size", "count", "flows", "dest", "port") or isinstance(v, bool) \
                    or not isinstance(v, int) or not 0 <= v < 2 ** 63:
                raise ValueError("generate: %s=%r; arguments are rate, size, count, flows, dest, port "
                                 "(ints in 0..2**63-1)" % (k, v))
        self.name = name
        self.service = service
        self.args = args

    def __repr__(self):
        return "<NativeNF %s%s>" % (self.name, "".join(" %s=%s" % kv for kv in self.args.items()))


def nf(service=None, batch=False, name=None):
    """Decorator: turn a function into a Python NF, as @onvm.nf or
    @onvm.nf(service=1, batch=True).

    param service: the service ID it provides (1..255); a graph deployment
        assigns one itself
    param batch: the function gets a list of packets and returns one action
        or a list of actions
    returns: an NFSpec to pass to Manager.launch() or put in a graph"""
    if callable(service) and not isinstance(service, (int, NFSpec)):
        return NFSpec(service)            # bare @onvm.nf
    def wrap(fn):
        return NFSpec(fn, service, batch, name)
    return wrap


def load_nf(target, batch=False):
    """An NF from a file or module: "FILE.py:FUNCTION" or "MODULE:FUNCTION".
    returns: an NFSpec that remembers where it came from (so a graph using
    it can be saved); raises ValueError naming what is wrong."""
    import importlib
    import importlib.util
    mod_name, _, fn_name = target.rpartition(":")
    if not mod_name or not fn_name:
        raise ValueError("NF %r: give FILE.py:FUNCTION or MODULE:FUNCTION" % (target,))
    try:
        if mod_name.endswith(".py"):
            spec = importlib.util.spec_from_file_location("onvm_user_nf_%s" % fn_name, mod_name)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(mod_name)
        fn = getattr(mod, fn_name)
    except Exception as e:      # the module's own code failed as it was imported: say so, one line
        raise ValueError("cannot load %s: %s: %s" % (target, type(e).__name__, e)) from None
    if isinstance(fn, NFSpec):
        batch, fn = batch or fn.batch, fn.fn
    if not callable(fn):
        raise ValueError("%s is not a function" % target)
    loaded = NFSpec(fn, batch=batch, name=fn_name)
    loaded.source = target
    return loaded


def native(name, service=None, **args):
    """A native C NF by name; generate takes rate, size, count, flows, dest."""
    return NativeNF(name, service, **args)


# The longest any call here waits or runs: a day.  Beyond it a wait is a
# mistake (count=10**30, timeout=1e12) that would hang the notebook.
LONGEST_S = 86400


def _check_timeout(timeout, name="timeout"):
    return check_number(name, timeout, 0, LONGEST_S, what="a number of seconds")


def _check_service(service):
    if isinstance(service, bool) or not isinstance(service, int) or not 1 <= service < lib.ONVM_MAX_SERVICES:
        raise ValueError("service ID must be an int in 1..%d, got %r" % (lib.ONVM_MAX_SERVICES - 1, service))


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
            paths.stop_process(self.process, timeout)

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


class Manager:
    """An NF manager: a DPDK primary in its own process.

    with onvm.Manager() as mgr:       # two ring ports
        mgr.launch(onvm.native("forward"), service=1)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        mgr.inject(pkts, port=0); out = mgr.capture(port=1, count=len(pkts))

    param name: the manager's name (its DPDK file prefix is onvm-NAME)
    param ports: port specs (see onvm.ports): "ring", "pcap:rx=in.pcap", ...
    param hugepage_mb: MB of hugepages it takes at start and never goes
        beyond (DPDK's -m and --socket-limit): the packet pool (about 2.4
        KB a packet) and the tables must fit; refused if mbufs do not
    param mbufs: packets in the shared pool
    param busy_poll: threads and NFs never sleep (a core each; big machines)
    param rx_threads, tx_threads: manager threads (1..3 each); ports are
        shared out among them
    param max_nfs: NF slots (1..128); each costs a 4096-packet ring
    param ring_mb: MiB of each ring port's inject ring and capture ring (a
        power of two): what a capture nobody reads holds before it counts
        capture_drop (32 MiB: 400,000 64-byte or 22,000 1500-byte packets)
    param nf_max_priority: the highest priority a flow rule from an NF
        (onvm.flows.add, the SDN NF) may have, 0..65534; 0 by default, and
        the operator's own rules win over NFs' anyway (see onvm.flows)"""

    def __init__(self, name=None, ports=("ring", "ring"), hugepage_mb=256, mbufs=16383, busy_poll=False,
                 rx_threads=1, tx_threads=1, max_nfs=lib.ONVM_MAX_NFS, start=True, ring_mb=32,
                 flow_lookup="cached", nf_max_priority=0):
        self.name = paths.check_name(paths.new_name() if name is None else name)
        if isinstance(ports, str):
            ports = [ports]
        self.port_specs = list(ports)
        for p in self.port_specs:
            parse_port(p)
        if not 1 <= len(self.port_specs) <= lib.ONVM_MAX_PORTS:
            raise ValueError("a manager has 1..%d ports, got %d" % (lib.ONVM_MAX_PORTS, len(self.port_specs)))
        check_number("hugepage_mb", hugepage_mb, 64, 1 << 20, integer=True, what="an int of MB")
        check_number("mbufs", mbufs, 1023, 1 << 20, integer=True, what="an int")
        from .mgrd import check_hugepage_budget
        check_hugepage_budget(hugepage_mb, mbufs)
        self.hugepage_mb = hugepage_mb
        self.mbufs = mbufs
        self.busy_poll = bool(busy_poll)
        for what, n in (("rx_threads", rx_threads), ("tx_threads", tx_threads)):
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= lib.ONVM_MAX_THREADS:
                raise ValueError("%s must be 1..%d, got %r" % (what, lib.ONVM_MAX_THREADS, n))
        self.rx_threads, self.tx_threads = rx_threads, tx_threads
        if isinstance(max_nfs, bool) or not isinstance(max_nfs, int) or not 1 <= max_nfs <= lib.ONVM_MAX_NFS:
            raise ValueError("max_nfs must be 1..%d, got %r" % (lib.ONVM_MAX_NFS, max_nfs))
        self.max_nfs = max_nfs
        if isinstance(ring_mb, bool) or not isinstance(ring_mb, int) or not 1 <= ring_mb <= 1024 \
                or ring_mb & (ring_mb - 1):
            raise ValueError("ring_mb must be a power of two in 1..1024, got %r" % (ring_mb,))
        self.ring_mb = ring_mb
        self.rings = None
        self._taps = []
        if flow_lookup not in ("cached", "naive"):
            raise ValueError("flow_lookup is \"cached\" (the RX hash) or \"naive\" (rehash per lookup), got %r"
                             % (flow_lookup,))
        self.flow_lookup = flow_lookup
        if isinstance(nf_max_priority, bool) or not isinstance(nf_max_priority, int) or \
                not 0 <= nf_max_priority <= lib.ONVM_FLOW_MAX_PRIORITY:
            raise ValueError("nf_max_priority must be an int in 0..%d, got %r"
                             % (lib.ONVM_FLOW_MAX_PRIORITY, nf_max_priority))
        self.nf_max_priority = nf_max_priority
        self.process = None
        self.control = None
        self.owned = True
        self.launched = []
        self.deployment = None
        if start:
            self.start()

    # ---- life cycle ----------------------------------------------------------

    @classmethod
    def attach(cls, name):
        """A handle on a manager started elsewhere (`onvm mgr`); stop() then
        stops only the NFs launched through this handle."""
        self = cls.__new__(cls)
        self.name, self.process, self.owned, self.launched, self._taps = name, None, False, [], []
        self.deployment = None
        self.control = ControlFile(name)
        self.rings = PortRings(name)
        self.port_specs = [self.control.port_stats(p)["name"] for p in range(self.control.shm.nb_ports)]
        self._request({"op": "ping"})
        atexit.register(self.stop)
        return self

    def start(self):
        if self.process is not None:
            raise OnvmError("manager %r is already started" % self.name)
        # Take the name here, so a clash is reported before anything starts,
        # and hand the lock to the manager process, which holds it for life.
        lock = paths.NameLock(self.name)
        if not lock.acquire():
            from .mgrd import running_manager_pid
            pid = running_manager_pid(self.name)
            raise OnvmError("a manager named %r is %s; stop it, attach to it with onvm.Manager.attach(%r), "
                            "or choose another name" % (self.name, "already running (pid %d)" % pid if pid
                                                        else "starting or running", self.name))
        try:
            self.log_path = os.path.join(paths.log_dir(self.name), "manager.log")
            cmd = [sys.executable, "-m", "onvm.mgrd", "--name", self.name, "--parent", str(os.getpid()),
                   "--hugepage-mb", str(self.hugepage_mb), "--mbufs", str(self.mbufs), "--lock-fd", str(lock.fd)]
            for p in self.port_specs:
                cmd += ["--port", p]
            if self.busy_poll:
                cmd.append("--busy-poll")
            cmd += ["--rx-threads", str(self.rx_threads), "--tx-threads", str(self.tx_threads),
                    "--max-nfs", str(self.max_nfs), "--ring-mb", str(self.ring_mb), "--flow-lookup",
                    self.flow_lookup, "--nf-max-priority", str(self.nf_max_priority)]
            with paths.open_log(self.log_path) as log:
                self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                env=_child_env(), start_new_session=True, pass_fds=(lock.fd,))
        finally:
            if self.process is None:
                from .mgrd import remove_leftovers
                remove_leftovers(self.name, lock)
            lock.release()       # the manager's copy of the fd keeps it locked
        atexit.register(self.stop)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                msg = "exit status %s: %s" % (self.process.returncode, _tail(self.log_path))
                self.process = None
                from .mgrd import remove_leftovers
                remove_leftovers(self.name)
                raise OnvmError("the manager did not start: %s" % msg)
            if os.path.exists(paths.sock_path(self.name)):
                try:
                    if self._request({"op": "ping"}, timeout=5)["pid"] == self.process.pid:
                        break
                except (OSError, ConnectionError):
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise OnvmError("the manager did not become ready within 60 s; see %s" % self.log_path)
            time.sleep(0.02)
        self.control = ControlFile(self.name)
        self.rings = PortRings(self.name)
        return self

    def stop(self):
        """Stop every NF launched here, then the manager; leaves nothing behind."""
        if getattr(self, "_dashboard", None) is not None:
            self._dashboard.stop()      # its updater reads the control file closed below
        for t in list(self._taps):
            try:
                t.stop()
            except (OSError, ConnectionError, OnvmError, ValueError):
                pass
        for n in self.launched:
            if n.alive:
                n.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for n in self.launched:
            try:
                n.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.process.kill()
                n.process.wait()
        if self.process is not None:
            try:
                self._request({"op": "shutdown"}, timeout=5)
            except (OSError, ConnectionError, OnvmError):
                self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            from .mgrd import remove_leftovers
            remove_leftovers(self.name)      # a no-op if it cleaned up itself, or a process still holds the name
            self.process = None
        if any(n.process.__class__.__name__ == "ContainerProcess" for n in self.launched):
            from .containers import remove_containers
            remove_containers(self.name)     # any that outlived their NF (they remove themselves on exit)
        if self.control is not None:
            self.control.close()
            self.control = None
        atexit.unregister(self.stop)

    def detach(self):
        """Forget this handle's NFs without stopping them (they stop with the
        manager): for `onvm deploy`, whose NFs outlive the command."""
        self.launched = []
        self.deployment = None
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.rings is not None:
            self.rings.close()
            self.rings = None
        atexit.unregister(self.stop)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __getstate__(self):
        raise TypeError("a Manager cannot be sent into an NF; NFs reach the manager by themselves")

    @property
    def flows(self):
        """The flow table (onvm.flows.FlowTable): add, list, remove rules."""
        from .flows import FlowTable
        return FlowTable(self)

    @property
    def running(self):
        if self.owned:
            return self.process is not None and self.process.poll() is None
        return self.control is not None

    def _request(self, req, timeout=60):
        try:
            reply = protocol.request(paths.sock_path(self.name), req, timeout)
        except FileNotFoundError:
            raise OnvmError("manager %r is not running" % self.name) from None
        if not reply.get("ok"):
            raise ValueError(reply.get("error", "the manager refused the request"))
        return reply

    # ---- NFs ------------------------------------------------------------------

    def launch(self, nf, service=None, replicas=1, name=None, timeout=60, container=False, flow_miss=None):
        """Start an NF (an @onvm.nf function, onvm.native(...) or
        onvm.image(...)) as `replicas` processes with one service ID.

        param container: True (or limits: {"memory": "512m", "cpus": 0.5,
            "pids": 64}) runs each replica in its own Docker container
            (onvm.containers); an onvm.image(...) always runs in one
        param flow_miss: True makes it the flow table's miss handler (it
            gets the packets no rule matches, and may ask for rules for
            them); a role only the operator grants.  None: what the NF asks
            for (onvm.sdn.nf() does)
        returns: the NF, or a list of NFs when replicas > 1
        raises: ValueError for bad arguments, OnvmError if it cannot start"""
        from .cnf import CNF
        from .containers import ImageNF, check_limits
        if isinstance(nf, ImageNF) and not container:
            container = True
        limits = check_limits(container) if container is not False else None
        if isinstance(nf, (NFSpec, NativeNF, ImageNF, CNF)):
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
        live = sum(1 for n in self.launched if n.alive and n.service == service)
        if live + replicas > lib.ONVM_MAX_INSTANCES:
            raise ValueError("service %d would have %d instances; at most %d"
                             % (service, live + replicas, lib.ONVM_MAX_INSTANCES))
        base = name or spec.name
        if not isinstance(base, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,28}", base):
            raise ValueError("NF name must be 1..28 letters, digits, - or _, got %r" % (base,))
        names = [base] if replicas == 1 else ["%s.%d" % (base, r) for r in range(replicas)]
        for nm in names:
            if any(n.name == nm and n.alive for n in self.launched):
                raise ValueError("an NF named %r is already running; pass name=..." % nm)
        if flow_miss is None:
            flow_miss = bool(getattr(spec, "flow_miss", False))
        elif not isinstance(flow_miss, bool):
            raise ValueError("flow_miss must be True or False, got %r" % (flow_miss,))
        started = self._launch_named(spec, service, names, timeout, limits=limits, flow_miss=flow_miss)
        if flow_miss:
            self.flows.set_miss_handler(service)
        return started[0] if replicas == 1 else started

    def _launch_named(self, spec, service, names, timeout, staged=False, limits=None, flow_miss=False):
        """Start one NF process per name and wait until each has registered;
        if one fails, stop them all.  staged: in no service until a
        deployment puts them there (see onvm.deploy).  limits: in containers
        (see launch)."""
        if not self.running:
            raise OnvmError("manager %r is not running" % self.name)
        started = []
        deadline = time.monotonic() + timeout
        try:
            for nm in names:
                started.append(self._spawn(spec, service, nm, staged, limits, flow_miss))
                if limits is None:
                    # Replica r registers before r+1 (about 0.15 s each), so
                    # mark.0 gets a lower instance than mark.1: tables and the
                    # dashboard list them in the same order.  Containers start
                    # slowly; they keep starting in parallel.
                    self._wait_registered(started[-1:], max(0.0, deadline - time.monotonic()), staged)
            self._wait_registered(started, max(0.0, deadline - time.monotonic()), staged)
        except BaseException:
            for n in started:
                n.kill()
            raise
        self.launched += started
        return started

    def deploy(self, g, timeout=60):
        """Deploy a networkx graph of NFs and ports (see onvm.graph), or a
        node-link JSON file of one; deploying again applies the difference.
        returns: the Deployment (also mgr.deployment)"""
        from . import graph
        from .deploy import Deployment
        if isinstance(g, (str, os.PathLike)):
            try:
                with open(g) as f:
                    text = f.read()
            except OSError as e:
                raise ValueError("cannot read graph file %s: %s" % (g, e)) from None
            g = graph.from_json(text, os.path.dirname(os.path.abspath(g)))
        if self.deployment is None:
            self.deployment = Deployment(self)
        return self.deployment.apply(g, timeout)

    def _spawn(self, spec, service, name, staged=False, limits=None, flow_miss=False):
        logdir = paths.log_dir(self.name)
        # This launch's one registration (onvm.nfdoor): the NF presents it on nf.sock.
        ticket = self._request({"op": "nf_ticket", "service": service, "name": name, "flow_miss": flow_miss})["ticket"]
        if limits is not None:
            return self._spawn_container(spec, service, name, limits, os.path.join(logdir, "nf-%s.log" % name),
                                         staged, ticket)
        cmd = [sys.executable, "-m", "onvm.nfrun", "--manager", self.name, "--service", str(service),
               "--name", name] + (["--staged"] if staged else [])
        code = None
        if isinstance(spec, NativeNF):
            cmd += ["--native", spec.name, "--args", ",".join("%s=%d" % kv for kv in spec.args.items())]
        elif hasattr(spec, "nfrun_args"):       # a C NF (onvm.c_nf, onvm/cnf.py)
            cmd += spec.nfrun_args()
        else:
            # The callback goes through the NF's stdin: no file another user could swap.
            import cloudpickle
            code = cloudpickle.dumps(NFSpec(spec.fn, service, spec.batch, name))
            cmd += ["--python"]
        log_path = os.path.join(logdir, "nf-%s.log" % name)
        env = _child_env()
        env[TICKET_ENV] = ticket         # the environment: readable by our uid only, unlike argv
        with paths.open_log(log_path) as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL if code is None else subprocess.PIPE,
                                 env=env, start_new_session=True)
        if code is not None:
            try:
                p.stdin.write(code)     # nfrun reads it all before anything else
            except BrokenPipeError:
                pass                    # it died first; _wait_registered reports its log
            finally:
                try:
                    p.stdin.close()
                except BrokenPipeError:
                    pass
        return NF(self, name, service, p, log_path)

    def _spawn_container(self, spec, service, name, limits, log_path, staged=False, ticket=None):
        """The container path of _spawn: the same nfrun in onvm/nf (or the
        NF's image), its code on stdin as for a process."""
        from . import containers
        code = None
        if isinstance(spec, NFSpec):
            code = containers.pickle_nf(NFSpec(spec.fn, service, spec.batch, name))
        return NF(self, name, service, containers.spawn(self.name, spec, service, name, limits, log_path, code,
                                                        staged, ticket), log_path)

    def _wait_registered(self, nfs, timeout, staged=False):
        """Wait until each NF is running and (unless staged) routable: in its
        service's instances in the published tables, which the manager
        updates a moment after marking the NF running."""
        deadline = time.monotonic() + timeout
        waiting = list(nfs)
        while waiting:
            by_pid = {s.pid: i for i, s in self.control.nf_slots()}
            for n in list(waiting):
                if n.pid in by_pid and (staged or by_pid[n.pid] in
                                        self.control.service_table(n.service)["instances"]):
                    n.instance = by_pid[n.pid]
                    waiting.remove(n)
                elif n.process.poll() is not None:
                    raise OnvmError("NF %s did not start: %s" % (n.name, _tail(n.log_path)))
            if waiting and time.monotonic() > deadline:
                raise OnvmError("NF %s did not register within %d s; see %s"
                                % (waiting[0].name, timeout, waiting[0].log_path))
            time.sleep(0.01)

    def __getitem__(self, name):
        """The NF called name, or the list of replicas name.0, name.1, ..."""
        for n in self.launched:
            if n.name == name:
                return n
        group = [n for n in self.launched if n.name.rpartition(".")[0] == name]
        if group:
            return group
        raise KeyError("no NF named %r" % name)

    def __contains__(self, name):
        try:
            self[name]
            return True
        except KeyError:
            return False

    @property
    def nfs(self):
        """The NFs launched through this handle that are still running."""
        return [n for n in self.launched if n.alive]

    # ---- chains, packets, stats ------------------------------------------------

    def set_default_chain(self, chain):
        """The path every packet from a port follows: a list of service IDs
        (or ToService) and ToPort, e.g. [1, 2, onvm.ToPort(1)]."""
        entries = []
        for i, e in enumerate(chain):
            if isinstance(e, int) and not isinstance(e, bool):
                try:
                    e = ToService(e)
                except ValueError as err:
                    raise ChainError("chain entry %d: %s" % (i, err)) from None
            if not isinstance(e, (ToService, ToPort)):
                raise ChainError("chain entry %d: %r is not a service ID, ToService or ToPort" % (i, e))
            if isinstance(e, ToPort) and e.dest >= len(self.port_specs):
                raise ChainError("chain entry %d: port %d does not exist (ports 0..%d)"
                                 % (i, e.dest, len(self.port_specs) - 1))
            entries.append([e.kind, e.dest])
        if len(entries) > lib.ONVM_MAX_CHAIN:
            raise ChainError("a chain has at most %d entries" % lib.ONVM_MAX_CHAIN)
        self._request({"op": "set_chain", "chain": entries})

    @property
    def default_chain(self):
        return [ToService(d) if a == lib.ONVM_TO_SERVICE else ToPort(d) for a, d in self.control.default_chain()]

    def inject(self, pkts, port=0, timeout=5.0, rate=None):
        """Send packets (scapy packets or bytes, a PacketList, or a pcap
        file's path) into a ring port, as if they arrived from the wire.  Any
        number of packets: they go through the port's inject ring (shared
        memory, in bulk); while it is full this waits until nothing moved
        for timeout seconds.

        param rate: packets per second (the RX thread releases each when
            due), at least 1/60 (a paced gap is at most 60 s); None: as
            fast as the chain takes them
        returns: how many were accepted.  Interrupted (Ctrl-C), what is not
        yet sent is withdrawn (counted as the port's inject_drop) and the
        port is free at once."""
        if isinstance(pkts, (str, os.PathLike)):
            from .traffic import read_pcap
            pkts = [p for p, _ in read_pcap(pkts)]
        raw = self._raw(pkts)
        self._check_ring_port(port)
        _check_timeout(timeout)
        due = None
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
                raise ValueError("rate must be a positive number of packets per second, got %r" % (rate,))
            if 1e9 / rate > lib.ONVM_PACE_MAX_GAP_NS:
                raise ValueError("rate must be at least %.6g packets per second (a paced gap is at most %d s), "
                                 "got %r" % (1e9 / lib.ONVM_PACE_MAX_GAP_NS, lib.ONVM_PACE_MAX_GAP_NS // 10 ** 9,
                                            rate))
            t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 1000000
            due = [t0 + int(i * 1e9 / rate) for i in range(len(raw))]
        return self._inject(port, raw, due, timeout)

    def _inject(self, port, raw, due, timeout):
        sent = self.rings.inject(port, raw, due=due, timeout=timeout)
        if sent < len(raw):
            # giving up: the manager counts these as the port's inject_drop
            self._request({"op": "inject", "port": port, "pkts": [], "dropped": len(raw) - sent})
        return sent

    @staticmethod
    def _raw(pkts):
        if isinstance(pkts, (bytes, bytearray)) or hasattr(pkts, "build"):
            pkts = [pkts]
        from .packet import frame
        raw = [frame(p) for p in pkts]
        for i, r in enumerate(raw):
            if not 14 <= len(r) <= 2048:
                raise ValueError("packet %d is %d bytes; a packet is 14..2048 bytes" % (i, len(r)))
        return raw

    def capture(self, port=1, count=None, timeout=1.0, raw=False, after=None, filter=None):
        """Packets that came out of a ring port, oldest first, each returned
        once.  Waits up to timeout seconds for count packets (count=None:
        whatever is there now).

        param after: instead of a port, what an NF emitted (its name or
            service ID): read from a tap armed with mgr.tap(after=...), or
            else mirrored for the duration of this call only
        param filter: a libpcap filter ("tcp port 80"): only packets that
            match are returned (the rest of the port's output is consumed)
        returns: a scapy PacketList, or a list of bytes with raw=True
        raises: ValueError for an unknown port or NF, or a bad filter"""
        _check_timeout(timeout)
        if count is not None:
            check_number("count", count, 0, 2 ** 63 - 1, integer=True, what="an int")
        if after is not None:
            service = self._service_of(after)
            for t in self._taps:
                if t.key == (lib.ONVM_TAP_AFTER_SERVICE, service, filter or ""):
                    return t.capture(count, timeout, raw)
            with self.tap(after=after, filter=filter) as t:
                return t.capture(count, timeout, raw)
        self._check_ring_port(port)
        match = Filter(filter) if filter is not None else None
        if match is None:
            got = self.rings.capture(port, count, timeout)
        else:
            got = []
            deadline = time.monotonic() + timeout
            while True:
                left = None if count is None else count - len(got)
                got += [p for p in self.rings.capture(port, left, 0) if match(p)]
                if count is None or len(got) >= count or time.monotonic() >= deadline:
                    break
                time.sleep(0.001)
        return got if raw else dissect_all(got, "port%d" % port)

    def tap(self, after=None, port=None, direction="out", filter=None, ring_mb=8):
        """Start capturing at a hop, by mirroring: a copy of each packet goes
        to the tap, the original goes on.  Either after=NF name or service
        ID (what its instances emit), or port=P with direction "out" (what
        the port sends) or "in" (what it receives).

        returns: a Tap (a context manager; .capture(count, timeout), .stop())
        raises: ValueError for an unknown NF or port, a filter that does not
            compile, or when all 8 taps are in use; nothing is armed then"""
        if (after is None) == (port is None):
            raise ValueError("tap(): give either after=NF or port=P")
        if after is not None:
            where, target, label = lib.ONVM_TAP_AFTER_SERVICE, self._service_of(after), "after %s" % (after,)
        else:
            self._check_port(port)
            if direction not in ("in", "out"):
                raise ValueError("direction must be 'in' or 'out', got %r" % (direction,))
            where = lib.ONVM_TAP_PORT_OUT if direction == "out" else lib.ONVM_TAP_PORT_IN
            target, label = port, "port%d %s" % (port, direction)
        if filter is not None:
            Filter(filter)      # a clear error before anything is armed
        t = Tap(self, where, target, label, filter, ring_mb)
        t.key = (where, target, filter or "")
        return t

    def _service_of(self, node):
        """The service ID of an NF given by name (as launched, or as it
        registered) or by service ID."""
        if isinstance(node, int) and not isinstance(node, bool):
            _check_service(node)
            return node
        if not isinstance(node, str):
            raise ValueError("a node is an NF name or a service ID, got %r" % (node,))
        for n in self.launched:
            if n.alive and (n.name == node or n.name.rpartition(".")[0] == node):
                return n.service
        for s, nm in self.control.service_names().items():    # a deployed graph's node
            if nm == node:
                return s
        for i, s in self.control.nf_slots():
            nm = self.control.nf_stats(i)["name"]
            if nm == node or nm.rpartition(".")[0] == node:
                return s.service
        names = sorted({self.control.nf_stats(i)["name"] for i, _ in self.control.nf_slots()})
        raise ValueError("no NF named %r is running (NFs: %s)" % (node, ", ".join(names) or "none"))

    def _check_ring_port(self, port):
        self._check_port(port)
        if not self.port_specs[port].startswith("ring"):
            ring = [p for p, s in enumerate(self.port_specs) if s.startswith("ring")]
            raise ValueError("port %d is a %s port; inject and capture work on ring ports %s"
                             % (port, self.port_specs[port].partition(":")[0], ring))

    def replay(self, path=0, port=0, speed=1.0, loop=1, timeout=5.0):
        """Replay a pcap file into a ring port with its original timing:
        each packet is due at its offset in the file divided by speed
        (speed=0: as fast as possible), the file loop times over.  Blocks
        until the last packet went in; Ctrl-C withdraws what is not yet
        sent.  A gap between packets, divided by speed, may be 60 s at most
        (a file with longer pauses needs a higher speed).  returns: packets
        sent.

        replay(port) (an int): start the file of a "pcap:rx=FILE" port
        instead; such a port waits for this, so the chain and NFs can be
        set up first."""
        if isinstance(path, int) and not isinstance(path, bool):
            return self._replay_port(path)
        from .traffic import read_pcap, replay_schedule
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 <= speed < float("inf"):
            raise ValueError("speed must be a finite number >= 0 (0: as fast as possible), got %r" % (speed,))
        if isinstance(loop, bool) or not isinstance(loop, int) or loop < 1:
            raise ValueError("loop must be a positive int, got %r" % (loop,))
        _check_timeout(timeout)
        recs = read_pcap(path)
        self._check_ring_port(port)
        if len(recs) * loop > 10 ** 8:
            raise ValueError("loop=%d: %d packets in all; at most 10**8 in one replay" % (loop, len(recs) * loop))
        raw = self._raw([p for p, _ in recs]) * loop
        due = replay_schedule([t for _, t in recs], speed, loop)
        return self._inject(port, raw, due, timeout)

    def record(self, port=1, path="capture.pcap", after=None, filter=None):
        """Record what leaves a ring port (or, with after=, what an NF
        emits) into a pcap file, with the time each packet was taken, until
        .stop().  returns: a Recorder (.stop() returns the packet count)."""
        from .traffic import Recorder
        if after is not None:
            return Recorder(self.tap(after=after, filter=filter).ring, path, self)
        self._check_ring_port(port)
        return Recorder(self.rings.ring(port, "out"), path, None, Filter(filter) if filter else None)

    def trace(self, pkt, port=0, timeout=2.0):
        """The journey of one packet: inject it into a ring port marked for
        tracing and collect each hop as the data plane records it.

        >>> t = mgr.trace(Ether()/IP(dst="203.0.113.9")/TCP(dport=80))  # doctest: +SKIP
        >>> t.exit_port, t.nfs()                                         # doctest: +SKIP
        (1, [('fw', 3)])

        param pkt: one scapy packet or bytes
        param timeout: seconds to wait for the exit or the drop
        returns: a Trace (a table in a notebook): port, each NF instance with
            its action and time, then the exit port or the drop and why
        raises: ValueError for something that is not one packet or a port
            that is not a ring port"""
        from .traffic import Trace, trace_hops
        _check_timeout(timeout)
        if not (isinstance(pkt, (bytes, bytearray)) or hasattr(pkt, "build")):
            raise ValueError("trace() takes one packet (a scapy packet or bytes), got %s" % type(pkt).__name__)
        (raw,) = self._raw(pkt)
        self._check_ring_port(port)
        tid = self._request({"op": "trace_start"})["id"]
        ends = (lib.ONVM_TRACE_PORT_OUT, lib.ONVM_TRACE_DROP)
        try:
            self.rings.inject(port, [raw], aux=[tid], timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                hops = self._request({"op": "trace_read", "id": tid})["hops"]
                if hops and hops[-1][1] in ends:
                    time.sleep(0.002)   # a device refusal follows its exit hop at once
                    break
                time.sleep(0.001)
        finally:
            hops = self._request({"op": "trace_read", "id": tid, "end": 1})["hops"]
        return Trace(trace_hops(hops, self.control), complete=bool(hops) and hops[-1][1] in ends)

    def generate(self, port=0, rate=1e6, size=64, flows=1024, seconds=None, count=None, timeout=60.0):
        """Load from the native generate NF: UDP packets of `size` bytes over
        `flows` 5-tuples, at `rate` packets per second, following `port`'s
        path as if they arrived there, for `seconds` (5 when neither is
        given) or until `count` were made.  Each carries its send time; the
        sinks on the path (onvm.native("sink")) sample one per burst.

        >>> r = mgr.generate(port=0, rate=100000, count=50000)     # doctest: +SKIP
        >>> r.sent, r.received, r.latency.p99                       # doctest: +SKIP
        (50000, 50000, 41230)

        returns: a GenerateResult: sent, seconds, rate, received, latency
            (a Latency: p50, p90, p99, p999, min, max, mean in ns)
        raises: ValueError naming a bad argument; nothing is started then"""
        from .traffic import GenerateResult, latency_between, sink_state
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1 <= rate <= 1e9:
            raise ValueError("rate must be a positive number of packets per second (1..1e9), got %r" % (rate,))
        if isinstance(size, bool) or not isinstance(size, int) or not 60 <= size <= 1514:
            raise ValueError("size must be an int of 60..1514 bytes, got %r" % (size,))
        if isinstance(flows, bool) or not isinstance(flows, int) or not 1 <= flows <= 65535:
            raise ValueError("flows must be an int of 1..65535, got %r" % (flows,))
        if seconds is not None and count is not None:
            raise ValueError("give seconds or count, not both")
        if count is not None:
            # a run lasts a day at most: count=10**30 would never end
            most = int(rate * LONGEST_S)
            check_number("count", count, 1, most, integer=True, what="a positive int",
                         why="a run lasts a day at most: %d packets at rate=%g" % (most, rate))
        if count is None:
            seconds = 5 if seconds is None else seconds
            check_number("seconds", seconds, 1e-3, LONGEST_S, what="a positive number of seconds")
        _check_timeout(timeout)
        self._check_port(port)
        used = {d for p in range(len(self.port_specs)) for a, d in self.control.path(p) if a == lib.ONVM_TO_SERVICE}
        used |= {s.service for _, s in self.control.nf_slots((lib.ONVM_NF_CLAIMED, lib.ONVM_NF_RUNNING))}
        service = max(set(range(1, lib.ONVM_MAX_SERVICES)) - used)
        before = sink_state(self.control)
        args = dict(rate=int(rate), size=size, flows=flows, count=count or 0, port=port)
        gen = self.launch(native("generate", **args), service=service, name="generate", timeout=timeout)
        try:
            made = lambda: self.control.nf_counters(gen.instance).created
            deadline = time.monotonic() + timeout
            while made() == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            t0 = time.monotonic()
            if count is None:
                time.sleep(seconds)
            else:
                deadline = t0 + count / rate + timeout
                while made() < count and time.monotonic() < deadline:
                    time.sleep(0.005)
            elapsed = time.monotonic() - t0
        finally:
            gen.stop()
            self.launched = [n for n in self.launched if n is not gen]
        sent = made()       # its stats file outlives it; it makes nothing after seeing stop (10 ms)
        self.wait_idle(min(timeout, 10.0))    # what is in flight reaches the sinks
        after = sink_state(self.control)
        received = sum(v[0] - before.get(k, (0,))[0] for k, v in after.items())
        return GenerateResult(sent, elapsed, received, latency_between(before, after))

    def _replay_port(self, port):
        self._check_port(port)
        if not self.port_specs[port].startswith("pcap:") or "rx=" not in self.port_specs[port]:
            raise ValueError("port %d (%s) has no pcap file to replay" % (port, self.port_specs[port]))
        self._request({"op": "replay", "port": port})

    def _check_port(self, port):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < len(self.port_specs):
            raise ValueError("port %r does not exist (ports 0..%d)" % (port, len(self.port_specs) - 1))

    def stats(self):
        """Every counter as ints: {"nfs": {instance: {name, service, pid, rx,
        tx, rx_drop, tx_drop, refused, actions: {...}, ...}}, "ports": {p:
        {rx, tx, rx_drop, tx_drop, ...}}, "pool": {size, in_use}, "manager": {pid,
        log_dropped}, "recovered": n}.  log_dropped (the manager's and each
        NF's): log lines lost to a full or unwritable log file system; the
        process went on.  recovered: packets NFs held when they died (the
        manager freed them; an NF's own "recovered" goes when its slot is
        reused)."""
        s = self.control.snapshot()
        del s["time"], s["sample"]
        return s

    def wait_idle(self, timeout=5.0):
        """Wait until every packet is back in the pool and nothing waits to
        be injected.  returns: True if so."""
        _check_timeout(timeout)
        shm = self.control.shm
        deadline = time.monotonic() + timeout

        def idle(since):
            # pool_in_use is written by the manager's tick: only a tick after
            # `since` has seen the packets sent before this call
            if shm.tick_ns <= since or shm.pool_in_use > shm.pool_held:
                return False
            return self.rings is None or all(self.rings.ring(p, "in").pending == 0
                                             for p, spec in enumerate(self.port_specs) if spec == "ring")
        start = shm.tick_ns
        while time.monotonic() < deadline:
            if idle(start):
                return True
            time.sleep(0.01)
        return idle(start)

    # ---- rates and the dashboard (onvm/rates.py, onvm/dashboard.py) -------------

    def _recorder(self):
        rec = getattr(self, "_rates", None)
        if rec is None or rec.control is not self.control:
            from .rates import Recorder
            rec = self._rates = Recorder(self.control, self._exit_state)
        return rec

    def _exit_state(self, pid):
        """How the NF with this pid ended: "gone" if it was not launched
        here, None while its process is not reaped (see rates.Recorder)."""
        for n in self.launched:
            if n.pid == pid:
                rc = n.process.poll()
                if rc is None:
                    return None
                return "stopped" if rc == 0 else "killed by signal %d" % -rc if rc < 0 else "exited %d" % rc
        return "gone"

    def rates(self, interval=1.0):
        """Packets per second over the last `interval` seconds of the
        manager's clock (waits if less has been recorded).

        returns: {"time", "interval", "nfs": {instance: {name, service, pid,
            state, rx, tx, drop, load, ...}}, "ports": {p: {name, rx, tx,
            drop}}, "pool": {size, in_use, use}}; rates are floats
        raises: ValueError for a bad interval, OnvmError if the manager is stopped"""
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 600:
            raise ValueError("interval must be a number of seconds in (0, 600], got %r" % (interval,))
        if not self.running:
            raise OnvmError("manager %r is not running" % self.name)
        return self._recorder().rates(interval)

    def history(self):
        """The rates recorded so far (by the dashboard and rates()) as a
        pandas DataFrame: time, kind, id, name, service, generation, state,
        rx, tx, drop, queued; .to_csv() for analysis.  Kept after stop()."""
        rec = getattr(self, "_rates", None)
        if rec is None:
            from .rates import Recorder
            rec = Recorder(None)
        return rec.history()

    def dashboard(self, window=60, interval=0.5, graph=None):
        """A live dashboard (an ipywidgets box): per-NF rates, drops, ports,
        pool use, the chain, a table of NFs; see onvm.dashboard.Dashboard.
        Replaces this manager's previous dashboard, whose updater stops.

        param window: seconds of history shown
        param interval: seconds between updates
        param graph: a networkx DiGraph to draw (default: the deployed graph,
            following redeploys, or else the default chain)"""
        from .errors import require
        for module in ("ipywidgets", "bqplot", "pandas"):
            require(module, "lab", "mgr.dashboard()")
        from .dashboard import Dashboard
        Dashboard.check_args(window, interval, graph)
        if not self.running:
            raise OnvmError("manager %r is not running; start one with onvm.Manager()" % self.name)
        if getattr(self, "_dashboard", None) is not None:
            self._dashboard.close()
        self._dashboard = None
        self._dashboard = Dashboard(self, self._recorder(), window, interval, graph)
        return self._dashboard

    def __repr__(self):
        state = "running" if self.running else "stopped"
        return "<Manager %s %s ports=%d nfs=%d>" % (self.name, state, len(self.port_specs), len(self.nfs))


def _child_env():
    """The environment for NF and manager processes: this process's import
    path, so NF callbacks pickled by reference import in the child too, and
    the XDG_RUNTIME_DIR that makes DPDK use our runtime root."""
    env = paths.dpdk_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return env


def _tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            text = f.read().strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(no output)"
