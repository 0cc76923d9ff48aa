"""An NF process: joins a running manager as a DPDK secondary, registers its
service, and runs a native C NF or a Python callback until stopped.
Started by Manager.launch() or `onvm nf`; one NF per process."""
import json
import os
import pickle
import sys
import traceback

from ..common import logsink, paths
from ..common.abi import ffi, last_error, lib
from ..common.errors import OnvmError
from ..common.packet import DROP, Action, Packet, repoint
from ..common.shm import ControlFile
from ..common.spec import NativeNF, load_nf
from . import context
from . import door as nfdoor

MAX_TRACEBACKS = 5


def start(manager, service, name, kind, staged=False, door=None):
    """Register with `manager` over its NF socket (door: its path, inside a
    container), join its DPDK instance as a secondary and go into service
    (staged: in no service until a deployment puts it there).
    returns: (cffi handle, slot, socket)."""
    if door is None or not isinstance(door, str):
        paths.use_dpdk_env()   # DPDK finds the manager's runtime dir through it (a container's env has it set)
    # This launch's ticket, from whoever launched us (not left for our children);
    # an NF started by hand (`onvm nf`) is its owner's: it asks for one itself.
    ticket = os.environ.pop(nfdoor.TICKET_ENV, None)
    if ticket is None and door is None:
        ticket = nfdoor.ticket(manager, name, service)
    sock, slot, shm_fd, stats_fd, xmem_fd = nfdoor.register(manager, name, kind, service, staged, door=door,
                                                             ticket=ticket)
    if xmem_fd is not None:
        lib.onvm_nf_use_xmem(xmem_fd)     # the packets are in the manager's region
    argv = ["onvm-nf"] + nfdoor.eal_args(manager, xmem_fd)
    keep = [ffi.new("char[]", a.encode()) for a in argv]
    c_argv = ffi.new("char *[]", keep + [ffi.NULL])
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    nf = lib.onvm_nf_start(shm_fd, stats_fd, slot, sock.fileno(), cpus.encode(), len(argv), c_argv)
    # The control file as the manager sent it: a container NF has no path to it
    # (onvm.flows.add and ToService("node") read the node names there).
    try:
        context._names["control"] = ControlFile.from_fd(shm_fd, manager)
    except OnvmError:
        pass
    os.close(shm_fd)
    os.close(stats_fd)
    if xmem_fd is not None:
        os.close(xmem_fd)        # mapped (or failed): the mapping keeps the region
    if nf == ffi.NULL:
        err = last_error()
        sock.close()
        raise OnvmError("NF %r: %s" % (name, err))
    try:
        nfdoor.DoorClient(sock).ready()
    except (OnvmError, ValueError) as e:
        lib.onvm_nf_finish(nf)
        sock.close()
        raise OnvmError("NF %r: %s" % (name, e)) from None
    return nf, slot, sock


def leave(nf, sock):
    """Out of service: the manager answers once no packet can come our way
    any more.  returns: True if the ring may now be emptied."""
    try:
        sock.settimeout(5)
        return nfdoor.DoorClient(sock).leave()["out_of_service"]
    except (OnvmError, ValueError):
        return False   # the manager is gone: nothing to leave, nothing to hand on


def finish(nf, sock):
    lib.onvm_nf_finish(nf)
    sock.close()


class CallbackErrors:
    """Counts callback failures in the NF's stats; prints the first few."""

    def __init__(self, nf, name):
        self.nf, self.name, self.shown = nf, name, 0

    def __call__(self, what, show_traceback=True):
        lib.onvm_nf_count_errors(self.nf, 1)
        if self.shown < MAX_TRACEBACKS:
            self.shown += 1
            print("NF %s: %s; the packet is dropped" % (self.name, what), file=sys.stderr)
            if show_traceback:
                traceback.print_exc()
            sys.stderr.flush()


def bad_return(value):
    return ("callback returned %r; return onvm.NEXT, onvm.DROP, onvm.ToService(sid) or onvm.ToPort(p)"
            % (value,))


def bursts(nf, b):
    """Yield the size of each burst received into b, until the NF is asked
    to stop (SIGTERM, the manager stopping or gone)."""
    rx = lib.onvm_nf_rx
    while True:
        n = rx(nf, b, 200)   # returns 0 now and then, so signals get handled
        if n < 0:
            return
        if n:
            yield n


class Bursts:
    """The bursts an NF receives into one batch, each as its offsets and
    lengths read in two calls (not two cffi reads per packet) and the
    batch's Packets (one per slot, made once) pointed at its bytes."""

    def __init__(self, nf, b):
        self.nf, self.b = nf, b
        self.pkts = [Packet(b, i, b"") for i in range(len(b.off))]

    def __iter__(self):
        b, pkts, unpack = self.b, self.pkts, ffi.unpack
        for n in bursts(self.nf, b):
            repoint(pkts, unpack(b.off, n), unpack(b.len, n))
            yield n, pkts


def run_per_packet(nf, fn, error):
    """Call fn(pkt) for each packet; its return value is the packet's action."""
    b = ffi.new("struct onvm_batch *")
    verdict = b.verdict
    tx = lib.onvm_nf_tx
    drop = DROP.code
    for n, pkts in Bursts(nf, b):
        for i in range(n):
            try:
                act = fn(pkts[i])
            except Exception as e:  # the user's code: report, drop, go on
                verdict[i] = drop
                error("callback raised %s: %s" % (type(e).__name__, e))
                continue
            try:
                verdict[i] = act.code
            except AttributeError:
                verdict[i] = drop
                error(bad_return(act), show_traceback=False)
        tx(nf, b)


def run_batch(nf, fn, error):
    """Call fn(list_of_packets) per burst; it returns one action for all or a
    list with one action per packet."""
    b = ffi.new("struct onvm_batch *")
    verdict = b.verdict
    tx = lib.onvm_nf_tx
    drop = DROP.code
    for n, pkts in Bursts(nf, b):
        try:
            res = fn(pkts[:n])
            if isinstance(res, Action):
                verdict[0:n] = [res.code] * n
            elif res is not None and len(res) == n:
                verdict[0:n] = [a.code for a in res]     # one cffi call, not one per packet
            else:
                raise TypeError(bad_return(res) + " (or a list of %d actions)" % n)
        except Exception as e:
            for i in range(n):
                verdict[i] = drop
            error("batch callback failed: %s: %s" % (type(e).__name__, e))
        tx(nf, b)


def run(manager, service, name, native=None, args="", spec=None, staged=False, door=None):
    """Run one NF in this process until it is stopped: the native NF called
    native (with args), or spec, an NFSpec.  door: the manager's nf.sock
    where it is not at the usual path (in a container).  returns: the exit
    status."""
    kind = "native:" + native if native else ("python:numpy" if spec.batch == "numpy" else
                                               "python:batch" if spec.batch else "python")
    # A full log file system must not stop the NF: lines are dropped and counted.
    sink = logsink.install()
    try:
        nf, slot, sock = start(manager, service, name, kind, staged, door)
    except (OnvmError, ValueError) as e:      # the manager refused: no start, one line why
        print(e, file=sys.stderr)
        return 2
    sink.on_drop = lambda total: lib.onvm_nf_set_log_dropped(nf, total)
    sink.on_drop(sink.dropped)
    context.current = context.NFContext(name, service, slot)
    context.manager = manager
    context.door = sock
    print("NF %s registered: service %d, instance %d" % (name, service, slot), flush=True)
    base, length = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    lib.onvm_nf_pool_span(nf, base, length)
    Packet._pool = memoryview(ffi.buffer(ffi.cast("uint8_t *", base[0]), length[0]))
    error = CallbackErrors(nf, name)
    batch = ffi.new("struct onvm_batch *")

    def loop():
        if native:
            return lib.onvm_nf_run_native(nf, native.encode(), args.encode())
        own_loop = getattr(spec.fn, "onvm_run", None)   # an NF with more to serve than packets (onvm.sdn)
        if own_loop is not None:
            return own_loop(nf, error)
        if spec.batch == "numpy":
            from .burst import run_numpy
            run_numpy(nf, spec.fn, error, batch, Packet._pool)
        else:
            (run_batch if spec.batch else run_per_packet)(nf, spec.fn, error)
        return 0

    try:
        if loop() < 0:
            print("NF %s: %s" % (name, last_error()), file=sys.stderr)
            return 2
        # Asked to stop: leave the service, then hand on what is still in
        # our ring, so a clean stop loses nothing.
        if leave(nf, sock):
            lib.onvm_nf_drain(nf)
            loop()
    finally:
        sink.on_drop = None          # the stats file is unmapped next
        finish(nf, sock)
    return 0


def nf_argv(manager, spec, service, name, staged=False, door=None, target=None, batch=False):
    """The options of this runner (main() below) for one NF, as a process
    NF, a container NF or a graded NF is started with: a native NF by name, an importable
    one (target "MODULE:FUNCTION", an image's), or a Python NF whose
    pickled NFSpec comes on stdin (--python)."""
    argv = ["--manager", manager, "--service", str(service), "--name", name]
    if door is not None:
        argv += ["--door", door]
    if staged:
        argv.append("--staged")
    if hasattr(spec, "nfrun_args"):            # a C NF (onvm.c_nf, onvm/cnf.py)
        return argv + spec.nfrun_args()
    if isinstance(spec, NativeNF):
        target, args = spec.name, ",".join("%s=%d" % kv for kv in spec.args.items())
    else:
        args = ""
    if target is None:
        argv.append("--python")
    elif target.startswith("/"):              # a C NF binary in an image (onvm.cnf.build_image)
        argv += ["--c-nf", target] + (["--c-args", json.dumps(list(spec.c_args))] if getattr(spec, "c_args", ())
                                      else [])
    elif ":" in target:
        argv += ["--import", target] + (["--batch"] if batch else [])
    else:
        argv += ["--native", target, "--args", args]
    return argv


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m onvm.nflib.run")
    ap.add_argument("--manager", required=True)
    ap.add_argument("--service", type=int, required=True)
    ap.add_argument("--name", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--native")
    g.add_argument("--python", action="store_true",
                   help="a Python NF: its pickled onvm.NFSpec comes on stdin, from the parent that started us")
    g.add_argument("--import", dest="target", metavar="MODULE:FUNCTION",
                   help="a Python NF importable here (an NF image's code)")
    g.add_argument("--c-nf", metavar="BINARY", help="a C NF built with the SDK (onvm/cnf.py): registered here, "
                   "then exec'd")
    ap.add_argument("--c-args", default="[]", help="with --c-nf: its arguments, a JSON list of strings")
    ap.add_argument("--args", default="")
    ap.add_argument("--staged", action="store_true", help="in no service until a deployment puts it there")
    ap.add_argument("--batch", action="store_true", help="with --import: the function takes a list of packets")
    ap.add_argument("--door", help="the manager's nf.sock, where it is not at the usual path (in a container)")
    ap.add_argument("--door-fd", type=int, help="a socket already connected to the manager's nf.sock (onvm.face.sandbox)")
    a = ap.parse_args(argv)
    spec = None
    if a.target:
        try:
            spec = load_nf(a.target, a.batch)
        except ValueError as e:   # said in one line, as `onvm nf` says it
            print("NF %s: %s" % (a.name, e), file=sys.stderr)
            return 2
    if a.python:
        # Only our parent holds the other end of this pipe: unlike a file,
        # no other user can put code here for us to run.
        data = sys.stdin.buffer.read()
        try:
            spec = pickle.loads(data)
        except Exception as e:    # a truncated or foreign pickle: say so, do not start
            print("NF %s: cannot load its code from stdin (%d bytes): %s: %s"
                  % (a.name, len(data), type(e).__name__, e), file=sys.stderr)
            image = os.environ.get("ONVM_IMAGE")
            if image and isinstance(e, ImportError):
                print("NF %s runs in image %s, which has no module %r: build an image FROM it with that "
                      "module (see docker/README.md) and launch onvm.image(YOUR_IMAGE, nf=...)"
                      % (a.name, image, getattr(e, "name", None) or str(e)), file=sys.stderr)
            return 2
        if not all(hasattr(spec, k) for k in ("fn", "batch")):
            print("NF %s: stdin held %r, not an onvm.NFSpec" % (a.name, type(spec)), file=sys.stderr)
            return 2
    door = a.door
    if a.door_fd is not None:
        import socket
        door = socket.socket(fileno=a.door_fd)
    if a.c_nf:
        from .cexec import exec_nf
        return exec_nf(a.manager, a.service, a.name, a.c_nf, json.loads(a.c_args), a.staged, door)
    return run(a.manager, a.service, a.name, a.native, a.args, spec, a.staged, door)


if __name__ == "__main__":
    sys.exit(main())
