"""The notebook side: start a manager, launch NFs, set the default chain,
inject and capture packets, read stats.  Everything here talks to the
manager process over its socket or reads its control file; DPDK is never
initialised in this process."""
import atexit
import os
import time

from . import launch as launcher
from . import probe, traffic
from .client import ControlClient, control_limits
from .common import memmode, paths
from .common.abi import lib
from .common.config import ManagerConfig
from .common.errors import ChainError, OnvmError, check_timeout
from .common.hop import wire_chain
from .common.packet import ToPort, ToService
from .common.runtime import stop_processes
from .common.shm import ControlFile
from .rates import history_of, rates_of, recorder_of
from .traffic import PortRings


class Manager:
    """An NF manager: a DPDK primary in its own process.

    with onvm.Manager() as mgr:       # two ring ports
        mgr.launch(onvm.native("forward"), service=1)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        mgr.inject(pkts, port=0); out = mgr.capture(port=1, count=len(pkts))

    param name: the manager's name (its DPDK file prefix is onvm-NAME)
    param ports: port specs (see onvm.common.ports): "ring", "pcap:rx=in.pcap", ...
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
        the operator's own rules win over NFs' anyway (see onvm.flows)
    param hugepages: True: hugepages or an error; False: ordinary shared
        memory (no root needed; hugepage_mb is then its size); None: the
        env var ONVM_HUGEPAGES (0/1), else hugepages when usable (a one-line
        note says when not; see onvm.common.memmode)"""

    def __init__(self, name=None, ports=("ring", "ring"), hugepage_mb=256, mbufs=16383, busy_poll=False,
                 rx_threads=1, tx_threads=1, max_nfs=lib.ONVM_MAX_NFS, start=True, ring_mb=32,
                 flow_lookup="cached", nf_max_priority=0, hugepages=None):
        ports = (ports,) if isinstance(ports, str) else tuple(ports) if isinstance(ports, (list, tuple)) else ports
        self.config = ManagerConfig(paths.new_name() if name is None else name, ports, hugepage_mb, mbufs,
                                    busy_poll, rx_threads, tx_threads, max_nfs, ring_mb, flow_lookup,
                                    nf_max_priority, memmode.to_word(hugepages)).validate()
        self.name = self.config.name
        self.port_specs = list(self.config.ports)
        self.rings = None
        self._taps = []
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
        self.ctl.ping()
        atexit.register(self.stop)
        return self

    def start(self):
        if self.process is not None:
            raise OnvmError("manager %r is already started" % self.name)
        self.config, self.uses_hugepages, self.memory_why = memmode.resolve(self.config)   # prints when without
        launcher.start_daemon(self)
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
        stop_processes([n.process for n in self.launched], 5.0)
        if self.process is not None:
            launcher.stop_daemon(self)
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

    @property
    def ctl(self):
        """The manager's socket: one typed method per op (onvm.client.ControlClient; mgr.control
        is its control file, the stats)."""
        if getattr(self, "_ctl", None) is None:
            self._ctl = ControlClient(self.name, control_limits(self.port_specs))
        return self._ctl

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
        spec, service, names, limits, flow_miss = launcher.check_launch(self, nf, service, replicas, name, container,
                                                                      flow_miss)
        started = self._launch_named(spec, service, names, timeout, limits=limits, flow_miss=flow_miss)
        if flow_miss:
            self.flows.set_miss_handler(service)
        return started[0] if replicas == 1 else started

    def _launch_named(self, spec, service, names, timeout, staged=False, limits=None, flow_miss=False):
        """Start one NF process per name and wait until each has registered;
        if one fails, stop them all.  staged: in no service until a
        deployment puts them there (see onvm.deploy).  limits: in containers
        (see launch)."""
        return launcher.start_nfs(self, spec, service, names, timeout, staged, limits, flow_miss)

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
        return launcher.spawn_nf(self, spec, service, name, staged, limits, flow_miss)    # grading overrides it

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
        """The path every packet from a port follows: hops as onvm.Hop.parse
        reads them (service IDs, ToService, ToPort, "svc:N", "port:N"),
        e.g. [1, 2, onvm.ToPort(1)]."""
        try:
            entries = wire_chain(chain, lambda: {n: s for s, n in self.control.service_names().items()},
                                 len(self.port_specs))
        except ValueError as e:
            raise ChainError(str(e)) from None
        self.ctl.set_chain(chain=entries)

    @property
    def default_chain(self):
        return [ToService(d) if a == lib.ONVM_TO_SERVICE else ToPort(d) for a, d in self.control.default_chain()]

    # ---- traffic (onvm/traffic.py) and probes (onvm/probe.py): one-line delegations --------

    def inject(self, pkts, port=0, timeout=5.0, rate=None):
        return traffic.inject(self, pkts, port, timeout, rate)

    def capture(self, port=1, count=None, timeout=1.0, raw=False, after=None, filter=None):
        return traffic.capture(self, port, count, timeout, raw, after, filter)

    def tap(self, after=None, port=None, direction="out", filter=None, ring_mb=8):
        return traffic.tap(self, after, port, direction, filter, ring_mb)

    def replay(self, path=0, port=0, speed=1.0, loop=1, timeout=5.0):
        return traffic.replay(self, path, port, speed, loop, timeout)

    def record(self, port=1, path="capture.pcap", after=None, filter=None):
        return traffic.record(self, port, path, after, filter)

    def trace(self, pkt, port=0, timeout=2.0):
        return probe.trace(self, pkt, port, timeout)

    def generate(self, port=0, rate=1e6, size=64, flows=1024, seconds=None, count=None, timeout=60.0):
        return probe.generate(self, port, rate, size, flows, seconds, count, timeout)

    # help(mgr.inject) reads as before
    inject.__doc__, capture.__doc__, tap.__doc__ = traffic.inject.__doc__, traffic.capture.__doc__, traffic.tap.__doc__
    replay.__doc__, record.__doc__ = traffic.replay.__doc__, traffic.record.__doc__
    trace.__doc__, generate.__doc__ = probe.trace.__doc__, probe.generate.__doc__

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
        check_timeout(timeout)
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
        return recorder_of(self)

    def rates(self, interval=1.0):
        return rates_of(self, interval)

    def history(self):
        return history_of(self)

    rates.__doc__, history.__doc__ = rates_of.__doc__, history_of.__doc__

    def dashboard(self, window=60, interval=0.5, graph=None):
        """A live dashboard (an ipywidgets box): per-NF rates, drops, ports,
        pool use, the chain, a table of NFs; see onvm.dashboard.Dashboard.
        Replaces this manager's previous dashboard, whose updater stops.

        param window: seconds of history shown
        param interval: seconds between updates
        param graph: a networkx DiGraph to draw (default: the deployed graph,
            following redeploys, or else the default chain)"""
        from .common.errors import require
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
