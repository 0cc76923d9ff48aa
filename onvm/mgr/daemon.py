"""The manager process: the DPDK primary.  C does the data plane (RX and TX
threads, see onvm/core); this file runs its control loop: the socket the
notebook talks to, the control tick, and moving captured packets out of
ring ports.  Started by onvm.Manager or `onvm mgr`; never inside a kernel."""
import base64
import mmap
import os
import signal
import subprocess
import sys
import time

from ..common import logsink, memmode, ops, paths, veth
from ..common.abi import check, ffi, lib
from ..common.config import ManagerConfig
from ..common.errors import OnvmError, errno_error
from ..common.ports import NETNS_DIR, parse_port, tap_place
from ..common.rings import Doorbell, Ring, ring_path, traffic_path
from ..common.runtime import (
    NO_PCI_DIR,
    check_hugepage_budget,
    remove_leftovers,
    socket_limit,
    take_name,
)
from ..common.shm import ControlFile
from .control import ControlServer
from .flowdir import FlowDirector
from .nfdoor import NFDoor

# EAL's own memory without hugepages (--no-huge -m): the ports' internals
# and EAL's tables; what NFs share is in the region (hugepage_mb).
EAL_OWN_MB = 64
NF_RING_SIZE = 4096      # packets an NF's receive ring holds
BUSY_TICK = 0.002        # control tick while packets are moving
IDLE_TICK = 0.02         # and when nothing moved for IDLE_AFTER seconds
IDLE_AFTER = 0.5
CAPTURE_BATCH = 4096     # packets in one capture reply; Manager.capture loops
CAPTURE_BYTES = 1 << 20  # and packet bytes (base64 makes it 4/3 of that, < MAX_REPLY)
OWNER_CONNS = 128        # open connections on onvm.sock (beyond: a silent one goes for a new one)
OWNER_PER_PROCESS = 100  # of them one process may hold


class ManagerDaemon:
    def __init__(self, config, cpus, parent_pid=None, show_stats=None, lock=None):
        config.validate()
        name, ports, mbufs, hugepage_mb = config.name, config.ports, config.mbufs, config.hugepage_mb
        rx_threads, tx_threads, max_nfs = config.rx_threads, config.tx_threads, config.max_nfs
        self.name = name
        self.parent_pid = parent_pid
        self.show_stats = show_stats     # None, or (before, after) -> the table to print each second
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
        self.hugepages, self.memory_why = memmode.choose(memmode.from_word(config.hugepages), hugepage_mb)
        if not remove_leftovers(name, self.lock, keep_lock=True):
            raise OnvmError("a DPDK primary that is not an onvm manager of this version holds %s; stop it "
                            "or choose another name" % paths.run_dir(name))
        check_hugepage_budget(hugepage_mb, mbufs)
        pci = [d for k, d in specs if k == lib.ONVM_PORT_PCI]
        argv = ["onvm-mgr", "--file-prefix", paths.file_prefix(name), "--proc-type", "primary",
                "--lcores", "(0-%d)@(%s)" % (rx_threads + tx_threads, cpus),
                "--log-level", os.environ.get("ONVM_DPDK_LOG", "error")]
        if self.hugepages:
            huge = paths.huge_dir(create=True)
            argv += ["-m", str(hugepage_mb), "--socket-limit", socket_limit(hugepage_mb, os.statvfs(huge).f_bsize),
                     "--huge-dir", huge]
        else:
            # EAL's own memory (ports' internals) in its memfd; what NFs share
            # goes in the region of hugepage_mb (core/xmem.c).
            argv += ["--no-huge", "-m", str(EAL_OWN_MB)]
            print("onvm manager: %s" % memmode.note(name, self.memory_why), file=sys.stderr, flush=True)
            self.check(lib.onvm_mgr_use_xmem(hugepage_mb << 20, (memmode.shm_dir() or "").encode() or ffi.NULL))
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
        if not self.hugepages:   # how much of the mode's speed it got back (core/xmem.c huge_pages)
            print("onvm manager: %d of %d MB of shared memory in 2 MiB transparent hugepages"
                  % (lib.onvm_mgr_xmem_huge_bytes() >> 20, hugepage_mb), file=sys.stderr, flush=True)
        # An empty PCI bus for DPDK's tools run against us (doctor.dpdk_tools).
        os.mkdir(os.path.join(paths.run_dir(name), NO_PCI_DIR), 0o700)
        for spec, (kind, devargs) in zip(ports, specs):
            self.add_port(spec, kind, devargs)
        self.open_rings(specs, config.ring_mb)
        lib.onvm_mgr_set_busy_poll(1 if config.busy_poll else 0)
        self.check(lib.onvm_mgr_set_threads(rx_threads, tx_threads))
        self.check(lib.onvm_mgr_start())
        if config.flow_lookup == "naive":
            self.check(lib.onvm_mgr_flow_config(1, 0))
        fd = os.open(paths.shm_path(name), os.O_RDWR)
        self._map = mmap.mmap(fd, ffi.sizeof("struct onvm_shm"))
        os.close(fd)
        self.shm = ffi.from_buffer("struct onvm_shm *", self._map)
        self.ring_ports = [p for p in range(len(specs)) if specs[p][0] == lib.ONVM_PORT_RING]
        self.sock_path = paths.sock_path(name)
        self.flows = FlowDirector(self.check, self.shm.nb_ports, lambda: self.shm, config.nf_max_priority)
        self.server = ControlServer(log=lambda msg: print("onvm manager: %s" % msg, file=sys.stderr, flush=True))
        self.door = NFDoor(name, self.server, self.flows.nf_handlers(), xmem_fd=lib.onvm_mgr_xmem_fd())
        # The owner's socket last (Manager.start waits for it), served first.  Its ops and
        # their fields are the catalogue's, for this manager's ports; bind refuses a gap.
        owner = ops.owner_ops(ops.Limits(self.shm.nb_ports, tuple(sorted(self.ring_ports))))
        handlers = dict(self.handlers(), **self.flows.owner_handlers(), **self.door.owner_handlers())
        self.server.listen(self.sock_path, ops.bind(owner, handlers), one_shot=True, priority=True,
                           max_conns=OWNER_CONNS, max_per_peer=OWNER_PER_PROCESS)

    def add_port(self, spec, kind, devargs):
        """Add one port; a tap port with @NS is made and started inside that
        network namespace (ports.c) and given its address there; a veth
        port's pair is made first (common/veth.py), then DPDK opens its
        host end."""
        if kind == lib.ONVM_PORT_VETH:
            veth.make(paths.run_dir(self.name), self.name, spec)
            self.check(lib.onvm_mgr_add_port(kind, devargs.encode(), ffi.NULL))
            return
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
        self.bell = Doorbell(traffic_path(self.name), create=True)
        lib.onvm_mgr_set_traffic(self.bell.t)
        for p, (kind, _) in enumerate(specs):
            if kind == lib.ONVM_PORT_RING:
                rin = Ring(ring_path(self.name, "port%d-in" % p), ring_mb << 20)
                rout = Ring(ring_path(self.name, "port%d-out" % p), ring_mb << 20)
                self.check(lib.onvm_mgr_set_port_rings(p, rin.hdr, rout.hdr))
                self.rings[p] = (rin, rout)

    def handlers(self):
        """The handlers of the owner's ops that live here (onvm.common.ops.owner_ops says what each takes)."""
        return {"ping": self.op_ping, "inject": self.op_inject, "capture": self.op_capture,
                "clear_capture": self.op_clear_capture, "set_chain": self.op_set_chain, "replay": self.op_replay,
                "apply": self.op_apply, "shutdown": self.op_shutdown, "tap_arm": self.op_tap_arm,
                "tap_disarm": self.op_tap_disarm, "trace_start": self.op_trace_start,
                "trace_read": self.op_trace_read}

    @staticmethod
    def check(ret):
        """-errno -> the C core's message as a ValueError (bad input: errors.INPUT_ERRNOS) or an
        OnvmError (the system failed): the control reply keeps that kind."""
        return check(ret, error=errno_error(ret))

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
                table = self.show_stats(prev, snap)
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

    # ---- ops: handler(conn, checked args) -> reply; onvm.common.ops has the fields ----

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
            n = check(lib.onvm_mgr_trace_read(a["id"], hops, lib.ONVM_TRACE_HOPS), error=ValueError)
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


def run(config, cpus=None, parent_pid=None, show_stats=None, lock_fd=None):
    """Run a manager in this process until SIGTERM/SIGINT or a shutdown request."""
    # A full log file system must not stop the data plane: lines are dropped and counted.
    sink = logsink.install()
    if cpus is None:
        cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    try:
        name = config.validate().name
        lock = take_name(name, lock_fd)
    except (OnvmError, ValueError) as e:
        print("onvm manager: %s" % e, file=sys.stderr, flush=True)
        return 2
    try:
        d = ManagerDaemon(config, cpus, parent_pid, show_stats, lock)
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
    ap = argparse.ArgumentParser(prog="python -m onvm.mgr.daemon")
    ManagerConfig.add_arguments(ap, name_required=True)
    ap.add_argument("--cpus")
    ap.add_argument("--parent", type=int)
    ap.add_argument("--lock-fd", type=int, help="an fd holding the name lock (from Manager.start)")
    a = ap.parse_args(argv)
    try:
        config = ManagerConfig.from_args(a)
    except ValueError as e:
        print("onvm manager: %s" % e, file=sys.stderr, flush=True)
        return 2
    return run(config, a.cpus, a.parent, lock_fd=a.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
