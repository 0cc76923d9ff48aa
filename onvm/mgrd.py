"""The manager process: the DPDK primary.  C does the data plane (RX and TX
threads, see onvm/core); this file runs its control loop: the socket the
notebook talks to, the control tick, and moving captured packets out of
ring ports.  Started by onvm.Manager or `onvm mgr`; never inside a kernel."""
import base64
import collections
import mmap
import os
import selectors
import shutil
import signal
import socket
import sys
import time

from . import paths, protocol
from ._core import ffi, lib
from .errors import OnvmError
from .ports import parse_port
from .stats import ControlFile, format_table, rates

NF_RING_SIZE = 4096      # packets an NF's receive ring holds
CAPTURE_MAX = 65536      # packets kept per ring port until captured
DRAIN_BURST = 256
DRAIN_BUF = DRAIN_BURST * 2048 * 2
BUSY_TICK = 0.002        # control tick while packets are moving
IDLE_TICK = 0.02         # and when nothing moved for IDLE_AFTER seconds
IDLE_AFTER = 0.5


def hugepage_problem(mb):
    """None if mb megabytes of hugepages are free, else what to do."""
    if not paths.hugepage_mounts():
        return ("no hugetlbfs is mounted; run: mkdir -p /dev/hugepages && "
                "mount -t hugetlbfs nodev /dev/hugepages")
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k] = v.split()
    free = int(info["HugePages_Free"][0]) * int(info["Hugepagesize"][0]) // 1024
    if free < mb:
        return ("not enough free hugepages: this manager needs %d MB, %d MB are free; "
                "run: echo 512 > /proc/sys/vm/nr_hugepages (or pass a smaller hugepage_mb)" % (mb, free))
    return None


def pid_is_onvm(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"onvm" in f.read()
    except OSError:
        return False


def running_manager_pid(name):
    """pid of the live manager called name, or None."""
    try:
        cf = ControlFile(name)
    except OnvmError:
        return None
    pid = cf.shm.mgr_pid
    cf.close()
    return pid if pid > 0 and pid_is_onvm(pid) else None


def remove_leftovers(name):
    """Delete a manager's runtime dir and hugepage files (it must be gone)."""
    shutil.rmtree(paths.run_dir(name), ignore_errors=True)
    for f in paths.hugepage_files(name):
        try:
            os.unlink(f)
        except OSError:
            pass


class ManagerDaemon:
    def __init__(self, name, ports, mbufs, hugepage_mb, cpus, parent_pid=None, show_stats=False,
                 busy_poll=False, rx_threads=1, tx_threads=1):
        self.name = name
        self.parent_pid = parent_pid
        self.show_stats = show_stats
        self.stop_requested = False
        self.capture = {}
        self.last_activity = 0.0
        specs = [parse_port(p) for p in ports]
        pid = running_manager_pid(name)
        if pid:
            raise OnvmError("a manager named %r is already running (pid %d); stop it or choose another name"
                            % (name, pid))
        problem = hugepage_problem(hugepage_mb)
        if problem:
            raise OnvmError(problem)
        remove_leftovers(name)
        pci = [d for k, d in specs if k == lib.ONVM_PORT_PCI]
        argv = ["onvm-mgr", "--file-prefix", paths.file_prefix(name), "--proc-type", "primary",
                "-m", str(hugepage_mb), "--lcores", "(0-%d)@(%s)" % (rx_threads + tx_threads, cpus), "--no-telemetry",
                "--huge-dir", paths.hugepage_mounts()[0],
                "--log-level", os.environ.get("ONVM_DPDK_LOG", "error")]
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
        # Never touch this machine's NICs unless the user named one.
        argv += [a for d in pci for a in ("-a", d)] if pci else ["--no-pci"]
        self._argv_keep = [ffi.new("char[]", a.encode()) for a in argv]
        c_argv = ffi.new("char *[]", self._argv_keep + [ffi.NULL])
        shm = paths.shm_path(name).encode()
        self.check(lib.onvm_mgr_init(len(argv), c_argv, shm, mbufs, NF_RING_SIZE))
        for kind, devargs in specs:
            self.check(lib.onvm_mgr_add_port(kind, devargs.encode()))
        lib.onvm_mgr_set_busy_poll(1 if busy_poll else 0)
        self.check(lib.onvm_mgr_set_threads(rx_threads, tx_threads))
        self.check(lib.onvm_mgr_start())
        fd = os.open(paths.shm_path(name), os.O_RDWR)
        self._map = mmap.mmap(fd, ffi.sizeof("struct onvm_shm"))
        os.close(fd)
        self.shm = ffi.from_buffer("struct onvm_shm *", self._map)
        self.ring_ports = [p for p in range(len(specs)) if specs[p][0] == lib.ONVM_PORT_RING]
        self.capture = {p: collections.deque(maxlen=CAPTURE_MAX) for p in self.ring_ports}
        self._buf = ffi.new("uint8_t[]", DRAIN_BUF)
        self._lens = ffi.new("uint32_t[]", DRAIN_BURST)
        self.sock_path = paths.sock_path(name)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        self.listener.listen(16)
        self.listener.setblocking(False)

    @staticmethod
    def check(ret):
        if ret < 0:
            raise OnvmError(ffi.string(lib.onvm_last_error()).decode())
        return ret

    # ---- the control loop ---------------------------------------------------

    def drain_ports(self):
        moved = 0
        for p in self.ring_ports:
            q = self.capture[p]
            while True:
                n = lib.onvm_mgr_drain(p, self._buf, DRAIN_BUF, self._lens, DRAIN_BURST)
                if n <= 0:
                    break
                off = 0
                overflow = max(0, len(q) + n - CAPTURE_MAX)
                for i in range(n):
                    ln = self._lens[i]
                    q.append(ffi.buffer(self._buf + off, ln)[:])
                    off += ln
                self.shm.ports[p].ctl.capture_drop += overflow
                moved += n
        return moved

    def serve(self):
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        print("onvm manager %r ready (pid %d, %d ports)" % (self.name, os.getpid(), self.shm.nb_ports), flush=True)
        next_stats = time.monotonic() + 1
        cf = ControlFile(self.name) if self.show_stats else None
        prev = cf.snapshot() if cf else None
        while not self.stop_requested:
            now = time.monotonic()
            timeout = BUSY_TICK if now - self.last_activity < IDLE_AFTER else IDLE_TICK
            for key, _ in sel.select(timeout):
                self.accept()
            lib.onvm_mgr_tick()
            if self.drain_ports():
                self.last_activity = time.monotonic()
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

    def _on_signal(self, signum, frame):
        self.stop_requested = True

    def accept(self):
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(10)
            try:
                req = protocol.recv(conn)
                try:
                    reply = self.handle(req)
                    reply["ok"] = True
                except (OnvmError, ValueError, KeyError, TypeError) as e:
                    reply = {"ok": False, "error": str(e)}
                protocol.send(conn, reply)
            except (OSError, ConnectionError, ValueError) as e:
                print("onvm manager: bad request: %s" % e, file=sys.stderr)
        self.last_activity = time.monotonic()

    def handle(self, req):
        op = req.get("op")
        if op == "ping":
            return {"pid": os.getpid(), "name": self.name, "nb_ports": self.shm.nb_ports}
        if op == "inject":
            return {"sent": self.inject(int(req["port"]), [base64.b64decode(p) for p in req["pkts"]])}
        if op == "capture":
            port, limit = int(req["port"]), int(req["max"])
            if port not in self.capture:
                raise ValueError("port %d is not a ring port; capture works on ring ports %s"
                                 % (port, self.ring_ports))
            self.drain_ports()
            q = self.capture[port]
            out = [base64.b64encode(q.popleft()).decode() for _ in range(min(limit, len(q)))]
            return {"pkts": out}
        if op == "clear_capture":
            self.drain_ports()
            for q in self.capture.values():
                q.clear()
            return {}
        if op == "set_chain":
            chain = req["chain"]
            verdicts = ffi.new("uint32_t[]", [((a << 16) | d) for a, d in chain] or [0])
            self.check(lib.onvm_mgr_set_chain(verdicts, len(chain)))
            return {}
        if op == "replay":
            self.check(lib.onvm_mgr_enable_rx(int(req["port"])))
            return {}
        if op == "shutdown":
            self.stop_requested = True
            return {}
        raise ValueError("unknown request %r" % op)

    def inject(self, port, pkts):
        if port not in self.capture:
            raise ValueError("port %d is not a ring port; inject works on ring ports %s" % (port, self.ring_ports))
        sent, deadline = 0, time.monotonic() + 5
        while sent < len(pkts):
            chunk = pkts[sent:sent + 1024]
            lens = ffi.new("uint32_t[]", [len(p) for p in chunk])
            n = self.check(lib.onvm_mgr_inject(port, b"".join(chunk), lens, len(chunk)))
            sent += n
            if n < len(chunk):
                if time.monotonic() > deadline:
                    break
                lib.onvm_mgr_tick()
                self.drain_ports()
                time.sleep(0.0005)  # the RX thread is catching up
        return sent

    def shutdown(self):
        left = lib.onvm_mgr_stop_nfs(3000)
        if left:
            for i in range(lib.ONVM_MAX_NFS):
                s = self.shm.nfs[i]
                if s.state != lib.ONVM_NF_FREE and s.pid > 0 and pid_is_onvm(s.pid):
                    try:
                        os.kill(s.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            lib.onvm_mgr_stop_nfs(2000)
        self.listener.close()
        self.shm = None
        self._map.close()
        lib.onvm_mgr_shutdown()
        remove_leftovers(self.name)


def run(name, ports=("ring", "ring"), mbufs=16383, hugepage_mb=256, cpus=None, parent_pid=None,
        show_stats=False, busy_poll=False, rx_threads=1, tx_threads=1):
    """Run a manager in this process until SIGTERM/SIGINT or a shutdown request."""
    if cpus is None:
        cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    try:
        d = ManagerDaemon(name, ports, mbufs, hugepage_mb, cpus, parent_pid, show_stats, busy_poll,
                          rx_threads, tx_threads)
    except (OnvmError, ValueError) as e:
        print("onvm manager: %s" % e, file=sys.stderr, flush=True)
        return 2
    try:
        d.serve()
    finally:
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
    a = ap.parse_args(argv)
    return run(a.name, a.ports or ["ring", "ring"], a.mbufs, a.hugepage_mb, a.cpus, a.parent, a.stats,
               a.busy_poll, a.rx_threads, a.tx_threads)


if __name__ == "__main__":
    sys.exit(main())
