"""`onvm bench`: the paper's evaluation run on this machine, each figure beside
a ceiling measured in the same run.  Runs in the caller's process (the CLI or
a notebook), which starts its own managers and NFs and stops them.

    onvm bench                      # every group (about 10 minutes on 2 cores)
    onvm bench chain latency        # some groups
    onvm bench --quick --json       # CI: each group in seconds, one JSON object per line

Every result is a row: name, value, unit, ceiling (the same figure for a plain
DPDK program of the same shape, or the kernel's path, measured in this run;
null where none applies), ratio (value / ceiling), goal (the target, as text),
met (true/false; null without a goal), paper (the OpenNetVM paper's or a
peer's figure, as text) and note.  A group that cannot run here gives one
row with "skipped" (the reason) or "error".

The groups reuse the scripts in benchmarks/ (bench_dataplane.py's chain
runner and idle meter, bench_flows.py, bench_startup.py); the ceilings are
benchmarks/chain_ceiling.c, built here against the system DPDK.  --quick
measures nothing: it shows that every group still runs."""
import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types

import onvm
from onvm.common import paths

# issue 25: without hugepages (packets in a memfd, 4 KiB pages unless the kernel gives it
# transparent huge ones) the 1-NF chain keeps at least this share of the hugepage mode's rate
NOHUGE_GOAL = 0.7
MANAGER_MB = 256    # the Manager's default hugepage_mb: what each mode must be able to give
GROUPS = ("chain", "flowdir", "replicas", "python", "latency", "tcp", "startup", "idle", "scale")
GEN, SINK, FIRST = 10, 3, 20     # service IDs: generate, sink, the first NF under test
ROW_KEYS = ("name", "value", "unit", "ceiling", "ratio", "goal", "met", "paper", "note")


# ---- the NFs under test (python group): one job, "drop telnet", done five ways ----------
# Each reads the IP protocol and the TCP destination port of every packet and drops
# TCP to port 23; generate's UDP packets all pass, so the sink counts every one.

def _drop_telnet(d):
    return d[23] == 6 and d[36] == 0 and d[37] == 23


@onvm.nf(name="py_packet")
def py_packet(pkt):
    return onvm.DROP if _drop_telnet(pkt.data) else onvm.NEXT


@onvm.nf(name="py_batch", batch=True)
def py_batch(pkts):
    drop, nxt = onvm.DROP, onvm.NEXT
    return [drop if _drop_telnet(p.data) else nxt for p in pkts]


@onvm.nf(name="py_numpy", batch="numpy")
def py_numpy(burst):
    h = burst.hdr
    return ~((h[:, 23] == 6) & (h[:, 36] == 0) & (h[:, 37] == 23))


@onvm.nf(name="py_scapy")
def py_scapy(pkt):
    from scapy.layers.inet import TCP
    p = pkt.scapy()
    return onvm.DROP if TCP in p and p[TCP].dport == 23 else onvm.NEXT


@onvm.nf(name="heavy", batch=True)
def heavy(pkts):
    """About 2 us of CPU per packet: the replicas group's CPU-bound NF."""
    for _ in pkts:
        x = 0
        for i in range(40):
            x += i
    return onvm.NEXT


# ---- rows --------------------------------------------------------------------------------

class Goal:
    """A target: at least/at most a value, and/or at least a ratio to the ceiling."""

    def __init__(self, at_least=None, at_most=None, ratio=None, unit=""):
        self.at_least, self.at_most, self.ratio, self.unit = at_least, at_most, ratio, unit

    def __str__(self):
        parts = []
        if self.at_least is not None:
            parts.append(">= %g %s" % (self.at_least, self.unit))
        if self.at_most is not None:
            parts.append("<= %g %s" % (self.at_most, self.unit))
        if self.ratio is not None:
            parts.append(">= %g x ceiling" % self.ratio)
        return " and ".join(p.strip() for p in parts)

    def met(self, value, ratio):
        if value is None:
            return None
        ok = True
        if self.at_least is not None:
            ok &= value >= self.at_least
        if self.at_most is not None:
            ok &= value <= self.at_most
        if self.ratio is not None:
            ok &= ratio is not None and ratio >= self.ratio
        return bool(ok)


def _last_line(text):
    """The last non-empty line of a child's stderr (its exception), for an error row."""
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else "(no output)"


def row(name, value, unit, ceiling=None, goal=None, paper=None, note=None, **extra):
    ratio = value / ceiling if value is not None and ceiling else None
    r = {"name": name, "value": value, "unit": unit, "ceiling": ceiling, "ratio": ratio,
         "goal": str(goal) if goal else None, "met": goal.met(value, ratio) if goal else None,
         "paper": paper, "note": note}
    r.update(extra)
    return r


def check_row(r):
    """A row as --json promises it.  raises: ValueError naming what is wrong."""
    missing = [k for k in ROW_KEYS if k not in r]
    if missing:
        raise ValueError("row %r lacks %s" % (r.get("name"), ", ".join(missing)))
    if not isinstance(r["name"], str) or not r["name"]:
        raise ValueError("row name %r" % (r["name"],))
    if r["value"] is None:
        if not (r.get("skipped") or r.get("error")):
            raise ValueError("row %s has no value and says neither skipped nor error" % r["name"])
        return
    for k in ("value", "ceiling", "ratio"):
        v = r[k]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0):
            raise ValueError("row %s: %s=%r is not a number >= 0" % (r["name"], k, v))
    if not isinstance(r["unit"], str) or not r["unit"]:
        raise ValueError("row %s: unit %r" % (r["name"], r["unit"]))
    if (r["ceiling"] is None) != (r["ratio"] is None):
        raise ValueError("row %s: a ratio needs a ceiling and the reverse" % r["name"])
    if r["met"] not in (True, False, None) or (r["goal"] is None) != (r["met"] is None):
        raise ValueError("row %s: goal %r with met %r" % (r["name"], r["goal"], r["met"]))


# ---- what the groups share ---------------------------------------------------------------

def bench_dir():
    """benchmarks/ of the checkout onvm runs from."""
    d = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(onvm.__file__))), "benchmarks")
    if not os.path.isfile(os.path.join(d, "bench_dataplane.py")):
        raise onvm.OnvmError("onvm bench runs from a checkout of onvm: no benchmarks/ at %s" % d)
    return d


_scripts = {}


def script(name):
    """benchmarks/NAME.py as a module (loaded once); its NFs travel by value."""
    if name not in _scripts:
        import cloudpickle
        spec = importlib.util.spec_from_file_location("onvm_bench_" + name, os.path.join(bench_dir(), name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        cloudpickle.register_pickle_by_value(mod)
        _scripts[name] = mod
    return _scripts[name]


def build(name):
    """Compile benchmarks/NAME.c against the system DPDK (once; again when the
    source is newer).  returns: the executable's path."""
    src = os.path.join(bench_dir(), name + ".c")
    out = os.path.join(bench_dir(), "build")
    if not os.access(os.path.dirname(out), os.W_OK) and not os.access(out, os.W_OK):
        out = os.path.join(tempfile.gettempdir(), "onvm-bench-%d" % os.getuid())   # a read-only checkout
    os.makedirs(out, exist_ok=True)
    exe = os.path.join(out, name)
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libdpdk"], check=True,
                               capture_output=True, text=True).stdout.split()
        subprocess.run(["cc", "-O3", src, "-o", exe + ".tmp"] + flags, check=True, capture_output=True)
        os.replace(exe + ".tmp", exe)
    return exe


class Run:
    """One suite run: its options, the ceilings measured so far, the log."""

    def __init__(self, quick=False, log=None):
        self.quick = quick
        self.log = log or (lambda msg: None)
        self.ceilings = {}
        self.trials = 1 if quick else 3
        self.window = 0.3 if quick else 3.0
        self.warmup = 0.2 if quick else 1.0

    def chain_ceiling(self, nfs):
        """Mpps of chain_ceiling.c with nfs middle stages: nfs+2 threads on this
        process's CPUs, nfs+1 rings; the median of the trials."""
        if nfs not in self.ceilings:
            exe = build("chain_ceiling")
            cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
            prefix = "onvm-bench-%d" % os.getpid()
            argv = [exe, str(self.window), str(nfs), "--no-pci", "--in-memory", "--lcores",
                    "(0-%d)@(%s)" % (nfs + 1, cpus), "--file-prefix", prefix, "--log-level=error", "--no-telemetry",
                    "--huge-dir", paths.huge_dir(create=True)]      # where this user may take hugepages
            if os.geteuid() != 0:
                argv += ["--iova-mode", "va"]
            got = []
            try:
                for _ in range(self.trials):
                    p = subprocess.run(argv, capture_output=True, text=True, timeout=60 + 2 * self.window,
                                       env=paths.dpdk_env())
                    if p.returncode:
                        raise onvm.OnvmError("chain_ceiling failed (exit %d): %s"
                                             % (p.returncode, _last_line(p.stderr)))
                    got.append(json.loads(p.stdout.strip().splitlines()[-1])["mpps"])
            finally:
                shutil.rmtree(os.path.join(paths.runtime_root(), prefix), ignore_errors=True)
            self.ceilings[nfs] = statistics.median(got)
        return self.ceilings[nfs]

    def wake_floor(self):
        """This machine's floor for a sleeping hop: the median time for a process
        asleep in read() on a pipe to run after a write (bench_dataplane's pipe
        baseline, the other process yielding), in us."""
        if "wake" not in self.ceilings:
            args = types.SimpleNamespace(wakeup_repeats=1, baseline_quiet_seconds=0.01,
                                         hot_repeats=20 if self.quick else 200)
            self.ceilings["wake"] = script("bench_dataplane").pipe_wake_baseline(args, "yield")["hot"]["median"]
        return self.ceilings["wake"]

    def dp_args(self, **manager_options):
        return types.SimpleNamespace(gen_rate=0, warmup=self.warmup, window=self.window,
                                     manager_options=manager_options, idle_settle=0.2 if self.quick else 3.0,
                                     idle_seconds=0.5 if self.quick else 10.0, quick=self.quick)

    def chain_mpps(self, middle, warmup=None, **manager_options):
        """generate -> middle -> sink through onvm (bench_dataplane.run_chain):
        the median Mpps over the trials, and the median trial's result."""
        dp = script("bench_dataplane")
        args = self.dp_args(**manager_options)
        args.warmup = max(args.warmup, warmup or 0)
        return _median([dp.run_chain(args, middle) for _ in range(self.trials)])

    def modes_problem(self):
        """None if a manager here can run both with hugepages and without
        (the chain group then measures both), else why not."""
        if "modes" not in self.ceilings:
            from onvm.common import memmode
            try:
                forced = memmode.from_env()
                if forced is not None:
                    # the user's word for every manager here, the benchmark's too
                    raise ValueError("%s=%s asks every manager for one mode"
                                     % (memmode.ENV, os.environ[memmode.ENV]))
                memmode.choose(True, MANAGER_MB)
                memmode.choose(False, MANAGER_MB)
                self.ceilings["modes"] = None
            except (onvm.OnvmError, ValueError) as e:
                self.ceilings["modes"] = str(e)
        return self.ceilings["modes"]

    def chain_modes(self, middle):
        """The chain with hugepages and without, trials alternating between
        the two (hugepages, none, hugepages, ...) so that a noisy neighbour
        costs both alike.  returns: {True: (Mpps, trial), False: (...)}, the
        median of each mode's trials."""
        dp = script("bench_dataplane")
        runs = {True: [], False: []}
        for _ in range(self.trials):
            for huge in (True, False):
                runs[huge].append(dp.run_chain(self.dp_args(hugepages=huge), middle))
        return {huge: _median(got) for huge, got in runs.items()}


def _median(runs):
    """The median Mpps of chain runs, and the run that gave it."""
    mid = sorted(runs, key=lambda r: r["mpps"])[len(runs) // 2]
    return mid["mpps"], mid


# ---- the groups --------------------------------------------------------------------------

def g_chain(run):
    """Throughput against chain length: generate -> N x forward -> sink; each
    length also without hugepages (--quick: 1 NF only), against the
    hugepage figure of the same run."""
    fwd = onvm.native("forward")
    problem = run.modes_problem()
    for n in (1, 5) if run.quick else range(1, 7):
        run.log("chain: %d NF%s" % (n, "s" * (n > 1)))
        middle = [(fwd, FIRST + k) for k in range(n)]
        both = problem is None and (n == 1 or not run.quick)
        if both:
            modes = run.chain_modes(middle)
            value = modes[True][0]
        else:
            value, _ = run.chain_mpps(middle)
        goal = Goal(ratio=0.6) if n == 1 else Goal(at_least=3, ratio=0.5, unit="Mpps") if n == 5 else None
        paper = ("13-14.5 Mpps on real NICs, 1 NF" if n == 1 else
                 "-4 % from 1 to 6 NFs" if n in (5, 6) else None)
        yield row("chain.nfs=%d" % n, value, "Mpps", run.chain_ceiling(n), goal, paper,
                  "ceiling: chain_ceiling.c, %d threads and %d rte_rings" % (n + 2, n + 1))
        if both:
            yield nohuge_row(n, modes)
        elif n == 1 and problem:
            yield row("chain.nfs=1.hugepages=no", None, "-", skipped="not both memory modes here: " + problem)
    if not run.quick:
        run.log("chain: 1 NF, busy_poll=True")
        value, _ = run.chain_mpps([(fwd, FIRST)], busy_poll=True)
        yield row("chain.nfs=1.busy_poll", value, "Mpps", run.chain_ceiling(1), None, None,
                  "dedicated polling: every thread spins; needs a core per thread")


def nohuge_row(n, modes):
    """chain.nfs=N.hugepages=no: the chain without hugepages, its ceiling the
    same chain with hugepages in the same run (Run.chain_modes)."""
    value, trial = modes[False]
    # how much of the packet region the NFs reached through 2 MiB pages (core/xmem.c)
    pmd = list(trial.get("shmem_pmd_mb", {}).values())
    pages = ("at least %d MB of its mapping in 2 MiB transparent hugepages" % min(pmd)
             if pmd and None not in pmd else "page sizes unknown")
    return row("chain.nfs=%d.hugepages=no" % n, value, "Mpps", modes[True][0],
               Goal(ratio=NOHUGE_GOAL) if n == 1 else None, None,
               "packets in a memfd, not hugepages (each NF: %s); ceiling: chain.nfs=%d with hugepages, this run, "
               "trials alternating" % (pages, n))


def g_flowdir(run):
    """The paper's Figure 3: the default path vs exact rules (cached hash, naive rehash)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "flows.json")
        argv = [sys.executable, os.path.join(bench_dir(), "bench_flows.py"), "--output", out]
        # bench_flows.py's own defaults (5 trials of 400k packets) took over 20 minutes on a loaded 2-core VM
        argv += ["--quick"] if run.quick else ["--flows", "1000,16000,64000", "--trials", "1", "--packets", "100000",
                                               "--latency-packets", "300"]
        run.log("flowdir: bench_flows.py %s" % " ".join(argv[3:]))
        p = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        if p.returncode:
            raise onvm.OnvmError("bench_flows.py exited %d: %s" % (p.returncode, _last_line(p.stderr)))
        with open(out) as f:
            doc = json.load(f)
    for r in doc["results"]:
        base = r["default"]["pps"] / 1e6
        yield row("flowdir.flows=%d.default" % r["flows"], base, "Mpps", None, None, None,
                  "port 0 -> forward -> port 1 by the port's path; RX %.0f ns/packet" % r["default"]["rx_ns"])
        for mode, what in (("exact", "exact rules, the RX thread's cached hash"),
                           ("naive", "exact rules, rehashed per lookup")):
            if mode in r:
                yield row("flowdir.flows=%d.%s" % (r["flows"], mode), r[mode]["pps"] / 1e6, "Mpps", base, None,
                          "Figure 3: the flow director costs little next to the default path",
                          "%s; ceiling: the default path in the same run; RX %.0f ns/packet"
                          % (what, r[mode]["rx_ns"]))


def g_replicas(run):
    """One vs two replicas of a CPU-bound NF (about 2 us per packet)."""
    one, _ = run.chain_mpps([(heavy, FIRST, 1)])
    run.log("replicas: 1 -> %.3f Mpps" % one)
    yield row("replicas.n=1", one, "Mpps", None, None, None, "a Python NF spending about 2 us per packet")
    two, _ = run.chain_mpps([(heavy, FIRST, 2)])
    yield row("replicas.n=2", two, "Mpps", 2 * one, None, "the paper: replicas scale with cores",
              "ceiling: twice one replica (perfect scaling); generate and sink share the 2 cores")


def g_python(run):
    """The same job (drop TCP to port 23) per packet, batched, vectorised, with scapy, native."""
    ceiling = run.chain_ceiling(1)
    cases = (("python.packet", py_packet, Goal(at_least=2, unit="Mpps"), None),
             ("python.batch", py_batch, Goal(at_least=3, unit="Mpps"), None),
             ("python.numpy", py_numpy, Goal(at_least=5, unit="Mpps"), None),
             ("python.scapy", py_scapy, None, "a scapy NF: about 3 kpps"),
             ("python.native", onvm.native("count"), None, None))
    for name, spec, goal, paper in cases:
        run.log(name)
        value, _ = run.chain_mpps([(spec, FIRST)], warmup=2.0 if spec is py_scapy else None)  # scapy imports slowly
        note = ("native count: reads the IP protocol of each packet, as the others read it and the port"
                if name == "python.native" else "reads the IP protocol and TCP port of every packet")
        yield row(name, value, "Mpps", ceiling, goal, paper, note + "; ceiling: chain_ceiling.c, 1 NF")


def _wakeups(mgr):
    return sum(mgr.control.nf_counters(i).wakeups for i, _ in mgr.control.nf_slots())


class _env:
    """os.environ[key] = value for a with-block (inherited by the manager and NFs started in it)."""

    def __init__(self, key, value):
        self.key, self.value = key, value

    def __enter__(self):
        self.old = os.environ.get(self.key)
        if self.value is not None:
            os.environ[self.key] = self.value

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop(self.key, None)
        else:
            os.environ[self.key] = self.old


def g_latency(run):
    """Per-packet latency (the sink's histogram of generate's send stamps):
    1 and 5 forward NFs, 5 kpps and 100 kpps; sleeping (the default, adaptive
    spin), busy polling, and the fixed 50 us spin of before (ONVM_SPIN=fixed)."""
    seconds = 0.5 if run.quick else 5.0
    # busy polling spins every thread: with 5 NFs and the manager's threads on 2 cores that measures
    # only the scheduler, so busy mode (and the fixed-spin comparison) run 1 NF
    for mode, sizes in (("", (1, 5)), ("busy_poll.", (1,)), ("fixed_spin.", (1,))):
        with _env("ONVM_SPIN", "fixed" if mode == "fixed_spin." else None), \
                onvm.Manager(name="bench-lat-%d" % os.getpid(), busy_poll=mode == "busy_poll.") as mgr:
            mgr.launch(onvm.native("sink"), service=SINK)
            for k in range(max(sizes)):
                mgr.launch(onvm.native("forward"), service=FIRST + k, name="forward-%d" % k)
            for n in sizes:
                mgr.set_default_chain([FIRST + k for k in range(n)] + [SINK])
                for pps in (5000, 100000):
                    run.log("latency: %s%d NF, %d pps" % (mode or "sleeping, ", n, pps))
                    w0 = _wakeups(mgr)
                    r = mgr.generate(port=0, rate=pps, seconds=seconds, flows=64)
                    woke = _wakeups(mgr) - w0
                    lat = r.latency
                    base = "latency.%snfs=%d.pps=%d" % (mode, n, pps)
                    for q, v in (("p50", lat.p50), ("p99", lat.p99), ("p99.9", lat.p999)):
                        at_most = None
                        if n == 1 and mode == "":
                            at_most = {"p50": 15 if pps == 100000 else 25, "p99": 100 if pps == 100000 else None}.get(q)
                        elif n == 1 and mode == "busy_poll." and q == "p50":
                            at_most = 8
                        yield row("%s.%s" % (base, q), v / 1e3 if v is not None else None, "us", run.wake_floor(),
                                  Goal(at_most=at_most, unit="us") if at_most else None,
                                  "4.4 us mean, 1 NF, dedicated cores" if n == 1 else None,
                                  "%d samples (one per burst) of %d received; ceiling: a pipe wake-up here"
                                  % (lat.samples, r.received),
                                  **({} if v is not None else {"error": "no latency samples"}))
                    yield row(base + ".wakeups_per_packet", woke / max(r.received, 1), "wakeups", None, None,
                              None, "NF doorbell wake-ups per packet received")


TCP_PEER = r"""
import socket, sys, time
mode, addr, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
if mode == "recv":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 5201))
    s.listen(1)
    s.settimeout(30)
    print("ready", flush=True)
    c, _ = s.accept()
    c.settimeout(30)
    buf, n, t0 = bytearray(1 << 20), 0, None
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        t0 = t0 or time.monotonic()
        n += k
    print(n, time.monotonic() - t0 if t0 else 0.0, flush=True)
else:
    c = socket.create_connection((addr, 5201), timeout=10)
    data, end = b"\0" * (1 << 18), time.monotonic() + secs
    while time.monotonic() < end:
        c.sendall(data)
    c.close()
"""


def _tcp(a, b, addr, seconds):
    """Bulk TCP from namespace a to addr in b for `seconds` (this module's
    sender and receiver; iperf3 is not needed).  returns: Gbit/s."""
    recv = b.popen(sys.executable, "-c", TCP_PEER, "recv", addr, seconds, stdout=subprocess.PIPE, text=True)
    if recv.stdout.readline().strip() != "ready":
        raise onvm.OnvmError("the TCP receiver did not start")
    send = a.run(sys.executable, "-c", TCP_PEER, "send", addr, seconds, timeout=seconds + 30)
    if send.returncode:
        raise onvm.OnvmError("the TCP sender failed: %s" % send.stderr.strip()[-300:])
    out, _ = recv.communicate(timeout=30)
    n, took = out.split()
    return int(n) * 8 / float(took) / 1e9 if float(took) > 0 else 0.0


def _rtt(a, addr, count):
    """Average ping RTT from namespace a, in ms."""
    out = a.cmd("ping", "-n", "-q", "-c", count, "-i", "0.01", "-W", "1", addr, timeout=count + 10)
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    if not m:
        raise onvm.OnvmError("ping gave no RTT: %s" % out.strip()[-300:])
    return float(m.group(1))


def _offloads(ns, dev, on):
    ns.run("ethtool", "-K", dev, *[w for f in ("tso", "gso", "gro") for w in (f, "on" if on else "off")])


def g_tcp(run):
    """TCP between two namespaces through 0, 1 and 3 NFs (veth ports, then
    tap ports), beside a Linux bridge between veth pairs, offloads off and
    on; ping RTT."""
    if os.geteuid() != 0:
        yield row("tcp", None, "Gbit/s", skipped="network namespaces need root")
        return
    if not shutil.which("ethtool"):
        yield row("tcp", None, "Gbit/s", skipped="no ethtool")
        return
    seconds, pings = (0.5, 5) if run.quick else (5.0, 50)
    tag = "%x" % (os.getpid() & 0xffffff)
    A, B = "10.0.0.1", "10.0.0.2"
    bridge = {}
    # the kernel's path: nsA -veth- bridge (in its own namespace) -veth- nsB
    with onvm.Namespace("ob%sa" % tag) as a, onvm.Namespace("ob%sb" % tag) as b, onvm.Namespace("ob%sc" % tag) as c:
        c.run("ip", "link", "add", "br0", "type", "bridge")
        for ns, addr in ((a, A), (b, B)):
            r = c.run("ip", "link", "add", "to" + ns.name[-1], "type", "veth", "peer", "name", "eth0",
                      "netns", ns.name)
            if r.returncode:
                raise onvm.OnvmError("veth: %s" % r.stderr.strip())
            c.run("ip", "link", "set", "to" + ns.name[-1], "master", "br0", "up")
            ns.run("ip", "addr", "add", addr + "/24", "dev", "eth0")
            ns.run("ip", "link", "set", "eth0", "up")
        c.run("ip", "link", "set", "br0", "up")
        for on in (False, True):
            for ns, dev in ((a, "eth0"), (b, "eth0"), (c, "toa"), (c, "tob")):
                _offloads(ns, dev, on)
            run.log("tcp: Linux bridge, offloads %s" % ("on" if on else "off"))
            bridge[on] = _tcp(a, b, B, seconds)
            yield row("tcp.bridge.offloads=%s" % ("on" if on else "off"), bridge[on], "Gbit/s", None, None,
                      None, "iperf-like bulk TCP, nsA -> bridge -> nsB")
        bridge["rtt"] = _rtt(a, B, pings)
        yield row("tcp.rtt.bridge", bridge["rtt"], "ms", None, None, None, "ping through the bridge")
    # onvm's path: nsA -port- manager (-NFs-) -port- nsB, with veth ports (the
    # rows the goals are for) and with tap ports (named tcp.tap.*)
    yield from _tcp_through_onvm(run, "veth", tag, bridge, seconds, pings)
    yield from _tcp_through_onvm(run, "tap", tag, bridge, seconds, pings)


def _tcp_through_onvm(run, kind, tag, bridge, seconds, pings):
    """Rows for TCP and ping between two namespaces through ports of kind
    and 0, 1, 3 forwards; rules by destination send each way on.  A veth
    port's namespace end keeps its offloads off (af_packet carries no
    more), so only tap ports get an offloads=on row."""
    A, B = "10.0.0.1", "10.0.0.2"
    prefix = "tcp." if kind == "veth" else "tcp.%s." % kind
    rtt_name = "tcp.rtt.nfs=1" if kind == "veth" else "tcp.rtt.%s.nfs=1" % kind
    with onvm.Namespace("ob%s%sd" % (tag, kind[0])) as a, onvm.Namespace("ob%s%se" % (tag, kind[0])) as b:
        dev = {a.name: "ob%s%sa" % (kind[0], tag), b.name: "ob%s%sb" % (kind[0], tag)}
        ports = ["%s:%s@%s=%s/24" % (kind, dev[a.name], a.name, A), "%s:%s@%s=%s/24" % (kind, dev[b.name], b.name, B)]
        with onvm.Manager(name="bench-tcp-%s-%d" % (kind, os.getpid()), ports=ports) as mgr:
            for k in range(3):
                mgr.launch(onvm.native("forward"), service=FIRST + k, name="forward-%d" % k)
            macs = {}
            for ns in (a, b):
                macs[ns.name] = re.search(r"link/ether ([0-9a-f:]{17})",
                                          ns.cmd("ip", "link", "show", dev[ns.name])).group(1)
            a.run("ip", "neigh", "replace", B, "lladdr", macs[b.name], "dev", dev[a.name])
            b.run("ip", "neigh", "replace", A, "lladdr", macs[a.name], "dev", dev[b.name])
            for n in (0, 1, 3):
                for r in mgr.flows.list():
                    mgr.flows.remove(r)
                nfs = [FIRST + k for k in range(n)]
                mgr.flows.add(onvm.Match(dst=B), nfs + [onvm.ToPort(1)])
                mgr.flows.add(onvm.Match(dst=A), nfs + [onvm.ToPort(0)])
                for on in (False, True) if n == 1 and kind == "tap" else (False,):
                    if kind == "tap":
                        _offloads(a, dev[a.name], on)
                        _offloads(b, dev[b.name], on)
                    run.log("tcp: %s ports, %d NFs, offloads %s" % (kind, n, "on" if on else "off"))
                    v = _tcp(a, b, B, seconds)
                    name = prefix + "nfs=%d" % n + (".offloads=on" if on else "")
                    goal = Goal(ratio=0.5) if n == 1 and not on and kind == "veth" else None
                    yield row(name, v, "Gbit/s", bridge[on], goal, None,
                              "%s ports; ceiling: the Linux bridge, offloads %s, same run"
                              % (kind, "on" if on else "off"))
                if n == 1:
                    goal = Goal(at_most=0.15, unit="ms") if kind == "veth" else None
                    yield row(rtt_name, _rtt(a, B, pings), "ms", bridge["rtt"], goal, None,
                              "ping through 1 NF, %s ports; ceiling: the bridge's RTT" % kind)


def g_startup(run):
    """From launch() to the NF's first packet, as a process and in a container."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "startup.json")
        argv = [sys.executable, os.path.join(bench_dir(), "bench_startup.py"), "--output", out]
        argv += ["--quick"] if run.quick else ["--trials", "5"]
        from onvm import containers
        try:
            containers.engine()
            no_docker = None
        except onvm.OnvmError as e:      # a student outside group docker: processes only
            no_docker = str(e).split(";")[0]
            argv.append("--no-container")
        p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if p.returncode:
            raise onvm.OnvmError("bench_startup.py exited %d: %s" % (p.returncode, _last_line(p.stderr)))
        with open(out) as f:
            doc = json.load(f)
    for kind, goal in (("process", 0.1), ("container", 0.2)):
        if kind not in doc["median_s"]:
            yield row("startup." + kind, None, "s", skipped=no_docker or "not measured")
            continue
        yield row("startup." + kind, doc["median_s"][kind], "s", None, Goal(at_most=goal, unit="s"),
                  "%.3f s" % doc["paper_s"][kind], "median of %d, native forward" % doc["trials"])


def g_idle(run):
    """CPU of an idle manager with 5 NFs (3 native, 2 Python)."""
    r = script("bench_dataplane").scen_idle(run.dp_args())
    yield row("idle", r["pct_of_one_core"], "% of a core", None, Goal(at_most=2, unit="%"),
              "ONVM: 100 % of a core per polling thread", "manager + 5 NFs, no traffic")


def g_scale(run):
    """64 NFs (8 services x 8 replicas of forward) in one chain: start-up, throughput, idle CPU."""
    dp = script("bench_dataplane")
    services, replicas = (2, 2) if run.quick else (8, 8)
    total = services * replicas
    with onvm.Manager(name="bench-scale-%d" % os.getpid()) as mgr:
        mgr.set_default_chain([GEN] + [FIRST + s for s in range(services)] + [SINK])
        t0 = time.monotonic()
        nfs = []
        for s in range(services):
            nfs += mgr.launch(onvm.native("forward"), service=FIRST + s, replicas=replicas, name="forward-%d" % s)
        took = time.monotonic() - t0
        yield row("scale.nfs=%d.launch" % total, took, "s", None, None, None,
                  "%d services x %d replicas of forward, launched one service at a time" % (services, replicas))
        sink = mgr.launch(onvm.native("sink"), service=SINK)
        time.sleep(run.warmup)
        cpu = dp.CpuMeter({"manager": mgr.process.pid, **{n.name: n.pid for n in nfs + [sink]}}).start()
        time.sleep(run.window * 2)
        idle = cpu.stop()["total_pct_of_one_core"]
        gen = mgr.launch(onvm.native("generate", size=64, flows=64), service=GEN)
        time.sleep(run.warmup)
        r = dp.measure(mgr, sink, nfs + [sink, gen], run.window)
        yield row("scale.nfs=%d" % total, r["mpps"], "Mpps", run.chain_ceiling(services), None, None,
                  "generate -> %d services -> sink; ceiling: chain_ceiling.c with %d stages" % (services, services))
        yield row("scale.nfs=%d.idle" % total, idle, "% of a core", None, None, None,
                  "the %d NFs and the manager with no traffic" % total)


GROUP_FUNCS = {"chain": g_chain, "flowdir": g_flowdir, "replicas": g_replicas, "python": g_python,
               "latency": g_latency, "tcp": g_tcp, "startup": g_startup, "idle": g_idle, "scale": g_scale}


def environment():
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                  cwd=os.path.dirname(bench_dir())).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    try:   # the share of time some runnable task waited for a CPU: how shared the machine was
        with open("/proc/pressure/cpu") as f:
            pressure = float(re.search(r"avg60=([\d.]+)", f.readline()).group(1))
    except (OSError, AttributeError):
        pressure = None
    return {"cpu_pressure_some_avg60": pressure, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "dpdk": sh("pkg-config", "--modversion", "libdpdk"), "python": platform.python_version(),
            "commit": sh("git", "rev-parse", "--short", "HEAD"),
            "dirty": bool(sh("git", "status", "--short", "--", "onvm", "benchmarks")), "loadavg": load}


def run(names=None, quick=False, log=None):
    """Run the groups named (default: all), one after the other.
    yields: rows (dicts, see the module's doc) as they are measured
    raises: ValueError for an unknown group, before anything runs"""
    names = list(names or GROUPS)
    bad = [n for n in names if n not in GROUP_FUNCS]
    if bad:
        raise ValueError("no benchmark %s; choose from %s" % (", ".join(map(repr, bad)), ", ".join(GROUPS)))
    r = Run(quick, log)
    for name in names:
        t0 = time.monotonic()
        try:
            for x in GROUP_FUNCS[name](r):
                yield x
        except Exception as e:   # noqa: BLE001 - one group failing must not hide the others' figures
            yield row(name, None, "-", error=" ".join(("%s: %s" % (type(e).__name__, e)).split()))
        r.log("%s: %.1f s" % (name, time.monotonic() - t0))


def format_row(r):
    def num(v):
        return "-" if v is None else "%.3g" % v
    if r["value"] is None:
        return "%-40s %s" % (r["name"], "skipped: " + r["skipped"] if r.get("skipped") else "ERROR: " + r["error"])
    met = {True: "met", False: "NOT met", None: ""}[r["met"]]
    return "%-40s %10s %-12s ceiling %-8s ratio %-6s %-30s %-8s %s" % (
        r["name"], num(r["value"]), r["unit"], num(r["ceiling"]), num(r["ratio"]), r["goal"] or "", met,
        r["paper"] or "")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="onvm bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="NAME", help="groups to run (default all): " + ", ".join(GROUPS))
    ap.add_argument("--json", action="store_true", help="one JSON object per row on stdout (progress on stderr)")
    ap.add_argument("--quick", action="store_true", help="each group in seconds: shows it runs, measures nothing")
    ap.add_argument("--output", help="also write the environment and every row to this JSON file")
    a = ap.parse_args(argv)
    bad = [n for n in a.names if n not in GROUP_FUNCS]
    if bad:
        ap.error("no benchmark %s; choose from %s" % (", ".join(map(repr, bad)), ", ".join(GROUPS)))
    env = environment()
    say = (lambda m: print("# " + m, file=sys.stderr, flush=True)) if a.json else (lambda m: print("# " + m, flush=True))
    say("onvm bench%s: %s, %s CPUs (%s), kernel %s, DPDK %s, commit %s%s, load %s, CPU pressure %s %%" % (
        " --quick" if a.quick else "", env["date"], env["cpus"], env["cpu_model"], env["kernel"], env["dpdk"],
        env["commit"], " (+changes)" if env["dirty"] else "", " ".join(env["loadavg"]), env["cpu_pressure_some_avg60"]))
    rows = []
    out = sys.stdout
    # With --json, stdout holds rows only: whatever the groups print (a
    # manager's note on its memory mode, a script's table) goes to stderr.
    with contextlib.redirect_stdout(sys.stderr) if a.json else contextlib.nullcontext():
        for r in run(a.names, a.quick, say):
            rows.append(r)
            print(json.dumps(r) if a.json else format_row(r), file=out, flush=True)
    if a.output:
        with open(a.output, "w") as f:
            json.dump({"environment": env, "at_end": environment(), "quick": a.quick, "rows": rows}, f, indent=1)
        say("wrote %s" % a.output)
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
