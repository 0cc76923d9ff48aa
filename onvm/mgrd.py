"""The manager process: the DPDK primary.  C does the data plane (RX and TX
threads, see onvm/core); this file runs its control loop: the socket the
notebook talks to, the control tick, and moving captured packets out of
ring ports.  Started by onvm.Manager or `onvm mgr`; never inside a kernel."""
import base64
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from . import logsink, paths
from ._core import ffi, lib
from .control import Bytes, ControlServer, Int, ListOf, Optional, Str, Tuple
from .doctor import NO_PCI_DIR
from .errors import OnvmError
from .flows import NF_MAX_PRIORITY, FlowDirector
from .nfdoor import NFDoor
from .ports import NETNS_DIR, parse_port, tap_place
from .stats import ControlFile, format_table, rates
from .traffic import Doorbell, Ring, ring_path, traffic_path

NF_RING_SIZE = 4096      # packets an NF's receive ring holds
RING_MB = 32             # each ring port's inject ring and capture ring, default size
BUSY_TICK = 0.002        # control tick while packets are moving
IDLE_TICK = 0.02         # and when nothing moved for IDLE_AFTER seconds
IDLE_AFTER = 0.5
INJECT_MAX = 8192        # packets in one inject request; Manager.inject splits
CAPTURE_BATCH = 4096     # packets in one capture reply; Manager.capture loops
CAPTURE_BYTES = 1 << 20  # and packet bytes (base64 makes it 4/3 of that, < MAX_REPLY)
PKT_MIN, PKT_MAX = 14, 2048
OWNER_CONNS = 128        # open connections on onvm.sock (beyond: a silent one goes for a new one)
OWNER_PER_PROCESS = 100  # of them one process may hold


# What a manager's hugepages hold: the packet pool (a packet takes about
# 2.4 KB with its mbuf header and headroom) and the rest (NF rings, flow
# tables, ethdevs, memzones: under 16 MB).  Measured with --socket-limit:
# 20000 packets fit in 64 MB, 24000 do not (DPDK then panics at start).
MBUF_BYTES = 2432
BASE_MB = 16


def hugepage_need_mb(mbufs):
    """MB of hugepages a manager with a pool of mbufs packets needs."""
    return -(-mbufs * MBUF_BYTES // (1 << 20)) + BASE_MB


def check_hugepage_budget(hugepage_mb, mbufs):
    """raises: ValueError if mbufs packets do not fit in hugepage_mb, a cap."""
    need = hugepage_need_mb(mbufs)
    if need > hugepage_mb:
        raise ValueError("hugepage_mb=%d is too small for mbufs=%d: the pool needs about %d MB (hugepage_mb is "
                         "the most the manager may take); raise hugepage_mb to %d or use fewer mbufs"
                         % (hugepage_mb, mbufs, need, need))


def socket_limit(mb, page_bytes):
    """DPDK's --socket-limit: mb (rounded up to whole hugepages) on every
    NUMA node, so hugepage_mb is a cap and not only what is taken at start
    (-m; DPDK grows past it on demand: a pool of 2**20 packets took 2.4 GB
    with hugepage_mb=64)."""
    page_mb = max(1, page_bytes >> 20)
    mb = -(-mb // page_mb) * page_mb
    node_dir = "/sys/devices/system/node"
    nodes = [int(d[4:]) for d in os.listdir(node_dir) if re.fullmatch(r"node\d+", d)] \
        if os.path.isdir(node_dir) else []
    return ",".join([str(mb)] * (max(nodes + [0]) + 1))


def hugepage_problem(mb):
    """None if mb megabytes of hugepages are free and this user has a
    hugetlbfs directory to put them in, else what to do."""
    from .doctor import hugepage_fix
    try:
        huge = paths.huge_dir()
    except OnvmError as e:
        return str(e)
    # A hugetlbfs mounted with size= (a student's budget under `onvm hub`)
    # caps what may be used there, whatever the machine has free.
    mount = huge if os.geteuid() == 0 else paths.ONVM_HUGE_DIR
    try:
        st = os.statvfs(mount)
    except OSError:
        st = None
    if st is not None and st.f_blocks and (st.f_bfree * st.f_frsize >> 20) < mb:
        return ("this manager needs %d MB of hugepages but your hugepage budget (the hugetlbfs at %s) has %d MB "
                "free of %d MB: pass a smaller hugepage_mb, or stop another manager of yours"
                % (mb, mount, st.f_bfree * st.f_frsize >> 20, st.f_blocks * st.f_frsize >> 20))
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k] = v.split()
    free = int(info["HugePages_Free"][0]) * int(info["Hugepagesize"][0]) // 1024
    if free < mb:
        return ("not enough free hugepages: this manager needs %d MB, %d MB are free; "
                "run: %s (or pass a smaller hugepage_mb)" % (mb, free, hugepage_fix(mb - free)))
    return None


def pid_is_onvm(pid):
    """True if pid's command line mentions onvm: a guard before killing a
    pid read from a control file, which may have been reused since."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"onvm" in f.read()
    except OSError:
        return False


def running_manager_pid(name):
    """pid of the live manager called name (one that holds its name and has
    written its control file), or None."""
    if not paths.name_in_use(name):
        return None
    try:
        cf = ControlFile(name)
    except (OnvmError, OSError):
        return None
    pid = cf.shm.mgr_pid
    cf.close()
    return pid if pid > 0 else None


def remove_leftovers(name, lock=None, keep_lock=False):
    """Delete a manager's runtime dir and hugepage files, only while holding
    its name lock: lock is ours (held); without one it is taken here and
    released after.  keep_lock: leave the lock file (its holder lives on).
    returns: True if removed, False if a live manager owns the name."""
    own = lock is None
    if own:
        lock = paths.NameLock(name)
        if not os.path.exists(paths.run_dir(name)) and not paths.hugepage_files(name):
            return True          # nothing to remove; do not create the dir to lock it
        if not lock.acquire():
            return False
    try:
        rd = paths.run_dir(name)
        if paths._posix_lock_held(os.path.join(rd, "config")):
            return False         # a DPDK primary that does not take our lock still runs here
        for f in paths.hugepage_files(name):
            try:
                os.unlink(f)
            except OSError:
                pass
        try:
            entries = os.listdir(rd)
        except FileNotFoundError:
            entries = []
        for e in entries:
            p = os.path.join(rd, e)
            if e == paths.LOCK_FILE:
                continue
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        if not keep_lock:
            # The lock file goes last, while we still hold it: anyone who
            # opened it meanwhile finds it unlinked and locks a new one.
            for undo in (lambda: os.unlink(os.path.join(rd, paths.LOCK_FILE)), lambda: os.rmdir(rd)):
                try:
                    undo()
                except OSError:
                    pass
        return True
    finally:
        if own:
            lock.release()


def take_name(name, lock_fd=None):
    """The name lock of name: taken here, or adopted from lock_fd (passed
    down by Manager.start).  raises: OnvmError if a live manager owns name."""
    lock = paths.NameLock(name)
    if not (lock.adopt(lock_fd) if lock_fd is not None else lock.acquire()):
        pid = running_manager_pid(name)
        raise OnvmError("a manager named %r is already running%s; stop it or choose another name"
                        % (name, " (pid %d)" % pid if pid else " or starting"))
    return lock


class ManagerDaemon:
    def __init__(self, name, ports, mbufs, hugepage_mb, cpus, parent_pid=None, show_stats=False,
                 busy_poll=False, rx_threads=1, tx_threads=1, max_nfs=128, lock=None, ring_mb=RING_MB,
                 flow_lookup="cached", nf_max_priority=NF_MAX_PRIORITY):
        self.name = name
        self.parent_pid = parent_pid
        self.show_stats = show_stats
        self.stop_requested = False
        self.rings = {}
        self.taps = {}           # tap slot -> (Ring, drops when armed, connection that armed it)
        self.tap_files = []      # every tap ring ever mapped: the TX thread may still write the last copies
        self.last_activity = 0.0
        specs = [parse_port(p) for p in ports]
        # The name first: nothing of name's is touched before we own it, and
        # we own it until this process exits (the fd closes with it).
        self.lock = lock or take_name(name)
        paths.use_dpdk_env()
        problem = hugepage_problem(hugepage_mb)
        if problem:
            raise OnvmError(problem)
        if not remove_leftovers(name, self.lock, keep_lock=True):
            raise OnvmError("a DPDK primary that is not an onvm manager of this version holds %s; stop it "
                            "or choose another name" % paths.run_dir(name))
        huge = paths.huge_dir(create=True)
        check_hugepage_budget(hugepage_mb, mbufs)
        pci = [d for k, d in specs if k == lib.ONVM_PORT_PCI]
        argv = ["onvm-mgr", "--file-prefix", paths.file_prefix(name), "--proc-type", "primary",
                "-m", str(hugepage_mb), "--socket-limit",
                socket_limit(hugepage_mb, os.statvfs(huge).f_bsize), "--lcores", "(0-%d)@(%s)" % (rx_threads + tx_threads, cpus),
                "--huge-dir", huge, "--log-level", os.environ.get("ONVM_DPDK_LOG", "error")]
        if os.geteuid() != 0:
            # Without root, /proc/self/pagemap shows no physical addresses.
            argv += ["--iova-mode", "va"]
        # Where DPDK reserves its memory.  The sanitized build needs this
        # (scripts/sanitize.sh): ASan's shadow covers DPDK's default spot, and
        # memory placed elsewhere may be taken in an NF, which must map it at
        # the same address.
        base = os.environ.get("ONVM_BASE_VIRTADDR")
        if base:
            try:
                int(base, 16)
            except ValueError:
                raise OnvmError("ONVM_BASE_VIRTADDR=%r is not a hex address" % base) from None
            argv += ["--base-virtaddr", base]
        # Telemetry stays on (its socket, dpdk_telemetry.v2 in the runtime dir,
        # serves dpdk-telemetry.py); NFs start with --no-telemetry.
        # Never touch this machine's NICs unless the user named one.
        argv += [a for d in pci for a in ("-a", d)] if pci else ["--no-pci"]
        self._argv_keep = [ffi.new("char[]", a.encode()) for a in argv]
        c_argv = ffi.new("char *[]", self._argv_keep + [ffi.NULL])
        shm = paths.shm_path(name).encode()
        self.check(lib.onvm_mgr_init(len(argv), c_argv, shm, paths.nf_stats_pattern(name).encode(), mbufs,
                                     NF_RING_SIZE, max_nfs))
        # An empty PCI bus for DPDK's tools run against us (doctor.dpdk_tools).
        os.mkdir(os.path.join(paths.run_dir(name), NO_PCI_DIR), 0o700)
        for spec, (kind, devargs) in zip(ports, specs):
            self.add_port(spec, kind, devargs)
        self.open_rings(specs, ring_mb)
        lib.onvm_mgr_set_busy_poll(1 if busy_poll else 0)
        self.check(lib.onvm_mgr_set_threads(rx_threads, tx_threads))
        self.check(lib.onvm_mgr_start())
        if flow_lookup == "naive":
            self.check(lib.onvm_mgr_flow_config(1, 0))
        fd = os.open(paths.shm_path(name), os.O_RDWR)
        self._map = mmap.mmap(fd, ffi.sizeof("struct onvm_shm"))
        os.close(fd)
        self.shm = ffi.from_buffer("struct onvm_shm *", self._map)
        self.ring_ports = [p for p in range(len(specs)) if specs[p][0] == lib.ONVM_PORT_RING]
        self.sock_path = paths.sock_path(name)
        self.flows = FlowDirector(self.check, self.shm.nb_ports, lambda: self.shm, nf_max_priority)
        self.server = ControlServer(log=lambda msg: print("onvm manager: %s" % msg, file=sys.stderr, flush=True))
        self.door = NFDoor(name, self.server, self.flows.nf_ops())
        # The owner's socket last (Manager.start waits for it), served first.
        self.server.listen(self.sock_path, dict(self.ops(), **self.door.owner_ops()), one_shot=True, priority=True,
                           max_conns=OWNER_CONNS, max_per_peer=OWNER_PER_PROCESS)

    def add_port(self, spec, kind, devargs):
        """Add one port; a tap port with @NS is made and started inside that
        network namespace (ports.c) and given its address there."""
        iface, ns, addr = tap_place(spec) if kind == lib.ONVM_PORT_TAP else (None, None, None)
        netns = os.path.join(NETNS_DIR, ns).encode() if ns else ffi.NULL
        self.check(lib.onvm_mgr_add_port(kind, devargs.encode(), netns))
        if addr:
            r = subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", iface], capture_output=True, text=True,
                               timeout=30)
            if r.returncode:
                raise OnvmError("port %s: cannot add the address: %s" % (spec, r.stderr.strip()))

    def open_rings(self, specs, ring_mb):
        """Each ring port's inject and capture rings, and the RX threads'
        doorbell: files in the runtime dir that notebooks map (traffic.py)."""
        if isinstance(ring_mb, bool) or not isinstance(ring_mb, int) or not 1 <= ring_mb <= 1024 \
                or ring_mb & (ring_mb - 1):
            raise ValueError("ring_mb must be a power of two in 1..1024, got %r" % (ring_mb,))
        self.bell = Doorbell(traffic_path(self.name), create=True)
        lib.onvm_mgr_set_traffic(self.bell.t)
        for p, (kind, _) in enumerate(specs):
            if kind == lib.ONVM_PORT_RING:
                rin = Ring(ring_path(self.name, "port%d-in" % p), ring_mb << 20)
                rout = Ring(ring_path(self.name, "port%d-out" % p), ring_mb << 20)
                self.check(lib.onvm_mgr_set_port_rings(p, rin.hdr, rout.hdr))
                self.rings[p] = (rin, rout)

    def ops(self):
        """The notebook's ops: name -> (schema, handler); limits are this manager's."""
        nports = self.shm.nb_ports
        ring = sorted(self.ring_ports)

        def ring_port(v, field):
            v = Int(0, nports - 1)(v, field)
            if v not in self.rings:
                raise ValueError("%s: port %d is not a ring port; inject and capture work on ring ports %s"
                                 % (field, v, ring))
            return v

        service = Int(1, lib.ONVM_MAX_SERVICES - 1)

        def chain_entry(v, field):
            action, dest = Tuple(Int(0, 0xffff), Int(0, 0xffff))(v, field)
            if action == lib.ONVM_TO_SERVICE:
                Int(1, lib.ONVM_MAX_SERVICES - 1)(dest, field + " service ID")
            elif action == lib.ONVM_TO_PORT:
                Int(0, nports - 1)(dest, field + " port")
            else:
                raise ValueError("%s: action must be %d (to a service) or %d (to a port), got %d"
                                 % (field, lib.ONVM_TO_SERVICE, lib.ONVM_TO_PORT, action))
            return action, dest

        return {
            "ping": ({}, self.op_ping),
            "inject": ({"port": ring_port, "pkts": ListOf(Bytes(PKT_MIN, PKT_MAX), INJECT_MAX),
                        "dropped": Optional(Int(0, 2 ** 31 - 1), 0)}, self.op_inject),
            "capture": ({"port": ring_port, "max": Int(0, 2 ** 31 - 1)}, self.op_capture),
            "clear_capture": ({}, self.op_clear_capture),
            "set_chain": ({"chain": ListOf(chain_entry, lib.ONVM_MAX_CHAIN)}, self.op_set_chain),
            "replay": ({"port": Int(0, nports - 1)}, self.op_replay),
            "apply": ({"paths": Optional(ListOf(ListOf(chain_entry, lib.ONVM_MAX_CHAIN), nports, nports)),
                       "steer": Optional(ListOf(Tuple(service, ListOf(Int(0, nports - 1), nports),
                                                      ListOf(service, lib.ONVM_MAX_SERVICES)),
                                                lib.ONVM_MAX_SERVICES)),
                       "names": Optional(ListOf(Tuple(service, Str(31)), lib.ONVM_MAX_SERVICES), []),
                       "members": Optional(ListOf(Tuple(service, ListOf(Int(0, lib.ONVM_MAX_NFS - 1),
                                                                        lib.ONVM_MAX_INSTANCES)),
                                                  lib.ONVM_MAX_SERVICES), []),
                       "hop_limit": Optional(Int(1, 255), 0)}, self.op_apply),
            "shutdown": ({}, self.op_shutdown),
            "tap_arm": ({"where": Int(lib.ONVM_TAP_AFTER_SERVICE, lib.ONVM_TAP_PORT_IN),
                         "target": Int(0, lib.ONVM_MAX_SERVICES - 1), "filter": Optional(Str(2000), ""),
                         "ring_mb": Optional(Int(1, 1024), 8)}, self.op_tap_arm),
            "tap_disarm": ({"tap": Int(0, lib.ONVM_MAX_TAPS - 1)}, self.op_tap_disarm),
            "trace_start": ({}, self.op_trace_start),
            "trace_read": ({"id": Int(1, 0xffff), "end": Optional(Int(0, 1), 0)}, self.op_trace_read),
            **self.flows.ops(),
        }

    @staticmethod
    def check(ret):
        if ret < 0:
            raise OnvmError(ffi.string(lib.onvm_last_error()).decode())
        return ret

    # ---- the control loop ---------------------------------------------------

    def serve(self):
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        print("onvm manager %r ready (pid %d, %d ports)" % (self.name, os.getpid(), self.shm.nb_ports), flush=True)
        next_stats = time.monotonic() + 1
        cf = ControlFile(self.name) if self.show_stats else None
        prev = cf.snapshot() if cf else None
        while not self.stop_requested:
            now = time.monotonic()
            timeout = BUSY_TICK if now - self.last_activity < IDLE_AFTER else IDLE_TICK
            # Serves whatever clients are ready, briefly; never blocks on one.
            if self.poll(timeout):
                self.last_activity = time.monotonic()
            lib.onvm_mgr_tick()
            if self.parent_pid and os.getppid() != self.parent_pid:
                print("onvm manager: parent process went away; stopping", file=sys.stderr)
                break
            if cf and time.monotonic() >= next_stats:
                snap = cf.snapshot()
                table = format_table(snap, rates(prev, snap))
                prev = snap
                next_stats += 1
                if sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[J")
                print(table + "\n", flush=True)
        if cf:
            cf.close()
        # Let the last replies (the shutdown request's) go out.
        deadline = time.monotonic() + 0.5
        while any(c.outbuf for c in self.server.connections) and time.monotonic() < deadline:
            self.server.poll(0.01)

    def poll(self, timeout):
        """Serve the sockets (never blocking on a client), then the NF door's
        own timers.  returns: how many sockets were ready."""
        n = self.server.poll(timeout)
        self.door.tick()
        self.flows.tick()
        return n

    def _on_signal(self, signum, frame):
        self.stop_requested = True

    # ---- ops: handler(conn, checked args) -> reply; see ops() for the schemas ----

    def op_ping(self, conn, a):
        return {"pid": os.getpid(), "name": self.name, "nb_ports": self.shm.nb_ports}

    def op_inject(self, conn, a):
        # "dropped": packets the client gave up on after retrying; the only
        # ones inject_drop counts.
        lib.onvm_mgr_inject_dropped(a["port"], a["dropped"])
        return {"sent": self.inject(a["port"], a["pkts"])}

    def op_capture(self, conn, a):
        ring = self.rings[a["port"]][1]
        out = []
        # Never waits: a notebook reading the ring holds its lock; ask again.
        if ring.lock(block=False):
            try:
                out = [base64.b64encode(p).decode() for p in ring.read(min(a["max"], CAPTURE_BATCH), max_bytes=CAPTURE_BYTES)]
            finally:
                ring.unlock()
        # more: packets are still waiting, so the client asks again
        return {"pkts": out, "more": bool(ring.pending) and len(out) < a["max"]}

    def op_clear_capture(self, conn, a):
        for _, ring in self.rings.values():
            if ring.lock(block=False):
                ring.discard()
                ring.unlock()
        return {}

    def op_set_chain(self, conn, a):
        chain = a["chain"]
        verdicts = ffi.new("uint32_t[]", [((x << 16) | d) for x, d in chain] or [0])
        self.check(lib.onvm_mgr_set_chain(verdicts, len(chain)))
        return {}

    def op_apply(self, conn, a):
        """A deployment's change in one table update (see onvm_mgr_apply)."""
        spec = ffi.new("struct onvm_apply *")
        if a["paths"] is not None:
            spec.set_paths = 1
            for p, path in enumerate(a["paths"]):
                spec.paths[p].length = len(path)
                for i, (action, dest) in enumerate(path):
                    spec.paths[p].entries[i].action = action
                    spec.paths[p].entries[i].destination = dest
        if a["steer"] is not None:
            spec.set_steer = 1
            for svc in range(lib.ONVM_MAX_SERVICES):
                spec.steer[svc].any = 1
            for svc, ports, services in a["steer"]:
                st = spec.steer[svc]
                st.any = 0
                for p in ports:
                    st.ports |= 1 << p
                for t in services:
                    st.services[t // 64] |= 1 << (t % 64)
            for svc, name in a["names"]:
                spec.names[svc] = name.encode()[:31]
        spec.hop_limit = a["hop_limit"]
        spec.nb_members = len(a["members"])
        for k, (svc, slots) in enumerate(a["members"]):
            spec.members[k].service = svc
            spec.members[k].count = len(slots)
            for j, slot in enumerate(slots):
                spec.members[k].slots[j] = slot
        self.check(lib.onvm_mgr_apply(spec))
        return {}

    def op_replay(self, conn, a):
        self.check(lib.onvm_mgr_enable_rx(a["port"]))
        return {}

    def op_tap_arm(self, conn, a):
        """A capture at a hop: a copy of what passes there goes to a new ring
        file the client reads (traffic.Tap)."""
        where, target = a["where"], a["target"]
        if where == lib.ONVM_TAP_AFTER_SERVICE and target == 0:
            raise ValueError("target: service IDs are 1..%d" % (lib.ONVM_MAX_SERVICES - 1))
        if where != lib.ONVM_TAP_AFTER_SERVICE and target >= self.shm.nb_ports:
            raise ValueError("target: port %d does not exist (ports 0..%d)" % (target, self.shm.nb_ports - 1))
        if a["ring_mb"] & (a["ring_mb"] - 1):
            raise ValueError("ring_mb must be a power of two, got %d" % a["ring_mb"])
        free = [k for k in range(lib.ONVM_MAX_TAPS) if k not in self.taps]
        if not free:
            raise ValueError("all %d captures at hops are in use; stop one" % lib.ONVM_MAX_TAPS)
        k = free[0]
        self.tap_files = [r for r in self.tap_files if r is not None]
        path = ring_path(self.name, "tap%d-%d" % (k, len(self.tap_files)))
        ring = Ring(path, a["ring_mb"] << 20)
        try:
            self.check(lib.onvm_mgr_tap_arm(k, where, target, a["filter"].encode(), ring.hdr))
        except OnvmError as e:
            ring.close()
            os.unlink(path)
            raise ValueError(str(e)) from None
        self.tap_files.append(ring)
        self.taps[k] = (ring, lib.onvm_mgr_tap_drops(k), conn)
        return {"tap": k, "path": path}

    def op_tap_disarm(self, conn, a):
        k = a["tap"]
        if k not in self.taps:
            raise ValueError("tap %d is not armed" % k)
        ring, base, _ = self.taps.pop(k)
        lib.onvm_mgr_tap_disarm(k)
        return {"dropped": lib.onvm_mgr_tap_drops(k) - base}

    def op_trace_start(self, conn, a):
        """A trace ID for one packet the client injects (Manager.trace)."""
        return {"id": self.check(lib.onvm_mgr_trace_start())}

    def op_trace_read(self, conn, a):
        """The hops recorded so far, [ts_ns, kind, why, where, service,
        action, dest] each; end=1 also ends the trace."""
        hops = ffi.new("struct onvm_trace_hop[]", lib.ONVM_TRACE_HOPS)
        try:
            n = lib.onvm_mgr_trace_read(a["id"], hops, lib.ONVM_TRACE_HOPS)
            if n < 0:
                raise ValueError(ffi.string(lib.onvm_last_error()).decode())
            return {"hops": [[h.ts_ns, h.kind, h.why, h.where, h.service, h.action, h.dest] for h in hops[0:n]]}
        finally:
            if a["end"]:
                lib.onvm_mgr_trace_end(a["id"])

    def op_shutdown(self, conn, a):
        self.stop_requested = True
        return {}

    def inject(self, port, pkts):
        """Put pkts into a ring port's inject ring, as far as they fit now
        (the client retries the rest).  returns: how many went in."""
        ring = self.rings[port][0]
        if not ring.lock(block=False):
            return 0            # a notebook is writing it: the client retries
        try:
            sent = ring.write(pkts)
        finally:
            ring.unlock()
        self.bell.ring()
        self.last_activity = time.monotonic()
        return sent

    def shutdown(self):
        """Ask every NF to leave, SIGKILL (by pidfd) those that do not, wait
        until their packets are back, then stop DPDK and remove our files."""
        lib.onvm_mgr_stop_all()
        for grace, sig in ((3.0, None), (2.0, signal.SIGKILL)):
            if sig is not None:
                self.door.kill_connected(sig)
            deadline = time.monotonic() + grace
            while lib.onvm_mgr_nfs_left() and time.monotonic() < deadline:
                self.poll(0.01)
                lib.onvm_mgr_tick()
        self.door.close()
        self.server.close()
        self.shm = None
        self._map.close()
        lib.onvm_mgr_shutdown()
        remove_leftovers(self.name, self.lock)


def run(name, ports=("ring", "ring"), mbufs=16383, hugepage_mb=256, cpus=None, parent_pid=None,
        show_stats=False, busy_poll=False, rx_threads=1, tx_threads=1, max_nfs=128, lock_fd=None,
        ring_mb=RING_MB, flow_lookup="cached", nf_max_priority=NF_MAX_PRIORITY):
    """Run a manager in this process until SIGTERM/SIGINT or a shutdown request."""
    # A full log file system must not stop the data plane: lines are dropped and counted.
    sink = logsink.install()
    if cpus is None:
        cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    try:
        lock = take_name(paths.check_name(name), lock_fd)
    except (OnvmError, ValueError) as e:
        print("onvm manager: %s" % e, file=sys.stderr, flush=True)
        return 2
    try:
        d = ManagerDaemon(name, ports, mbufs, hugepage_mb, cpus, parent_pid, show_stats, busy_poll,
                          rx_threads, tx_threads, max_nfs, lock, ring_mb, flow_lookup, nf_max_priority)
    except (OnvmError, ValueError) as e:
        remove_leftovers(name, lock)      # we own the name: leave nothing of it behind
        print("onvm manager: %s" % e, file=sys.stderr, flush=True)
        return 2
    def publish(total):
        if d.shm is not None:
            d.shm.log_dropped = total
    sink.on_drop = publish
    publish(sink.dropped)
    try:
        d.serve()
    finally:
        sink.on_drop = None
        d.shutdown()
    return 0


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m onvm.mgrd")
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", action="append", dest="ports")
    ap.add_argument("--mbufs", type=int, default=16383)
    ap.add_argument("--hugepage-mb", type=int, default=256)
    ap.add_argument("--cpus")
    ap.add_argument("--parent", type=int)
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--busy-poll", action="store_true")
    ap.add_argument("--rx-threads", type=int, default=1)
    ap.add_argument("--tx-threads", type=int, default=1)
    ap.add_argument("--max-nfs", type=int, default=128)
    ap.add_argument("--ring-mb", type=int, default=RING_MB, help="each ring port's inject and capture ring")
    ap.add_argument("--flow-lookup", choices=("cached", "naive"), default="cached")
    ap.add_argument("--nf-max-priority", type=int, default=NF_MAX_PRIORITY,
                    help="the highest priority of a flow rule an NF asks for")
    ap.add_argument("--lock-fd", type=int, help="an fd holding the name lock (from Manager.start)")
    a = ap.parse_args(argv)
    return run(a.name, a.ports or ["ring", "ring"], a.mbufs, a.hugepage_mb, a.cpus, a.parent, a.stats,
               a.busy_poll, a.rx_threads, a.tx_threads, a.max_nfs, a.lock_fd, a.ring_mb, a.flow_lookup,
               a.nf_max_priority)


if __name__ == "__main__":
    sys.exit(main())
