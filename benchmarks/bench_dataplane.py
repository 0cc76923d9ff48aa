#!/usr/bin/env python3
"""Data-plane benchmark for onvm: throughput, idle CPU, wake-up latency and
chain latency, measured side by side in one run.

    sudo .venv/bin/python benchmarks/bench_dataplane.py            # everything (~5 min; --trials 3: ~6 min)
    .venv/bin/python benchmarks/bench_dataplane.py --only ceiling,native --window 3
    .venv/bin/python benchmarks/bench_dataplane.py --only wakeup --quiet-seconds 5

Scenarios (see benchmarks/README.md for what each one means):
    dpdk       raw DPDK: one cross-core rte_ring hop (alloc, write, enqueue,
               dequeue, read, free; burst 32), ring_ceiling.c     Mpps, the ceiling
    ceiling    generate(10) -> sink(3)                          Mpps, no target
    native     generate(10) -> forward(2) -> sink(3)            Mpps, target >= 10
    py_batch   generate(10) -> Python batch NF(4) -> sink(3)    Mpps, target >= 1
    py_pkt     generate(10) -> Python per-packet NF(4) -> sink  Mpps, target >= 0.5
    py_touch   like py_pkt, the NF writes pkt.data[-1]          Mpps, information
    idle       manager + 3 native forward + 2 Python NFs idle   %CPU, target <= 5
    wakeup     inject 1 packet after a quiet period, time until
               port 1 transmits it (chain [2, ToPort(1)])       us, target <= 1000
    latency    generate(rate=100000) -> forward -> sink         us (mean/max), information

Prints a table and writes benchmarks/results/dataplane-<UTC timestamp>.json.
Every scenario gets a fresh onvm.Manager(), stopped (with its NFs) at the end.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import time

import onvm
from onvm.common import paths, protocol

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
CLK_TCK = os.sysconf("SC_CLK_TCK")

SCENARIOS = ("dpdk", "ceiling", "native", "py_batch", "py_pkt", "py_touch", "idle", "wakeup", "latency")

GEN, FWD, PY, SINK = 10, 2, 4, 3   # service IDs

# --quick: every scenario once, briefly, to show the script still runs and prints its table
# (tests/test_benchmarks_smoke.py); the figures mean nothing.  Options given explicitly still win.
QUICK = {"window": 0.3, "warmup": 0.2, "trials": 1, "idle_seconds": 0.5, "idle_settle": 0.2,
         "quiet_seconds": 0.2, "repeat_quiet_seconds": 0.1, "wakeup_repeats": 1, "hot_repeats": 2,
         "wakeup_poll": "spin", "baseline_quiet_seconds": 0.05, "quiet_wait": 0.0}


# ---- the Python NFs under test (pickled by value into the NF processes) ----

@onvm.nf(service=PY, batch=True)
def py_batch(pkts):
    return onvm.NEXT


@onvm.nf(service=PY)
def py_pkt(pkt):
    return onvm.NEXT


@onvm.nf(service=PY)
def py_touch(pkt):
    pkt.data[-1] = 0x42
    return onvm.NEXT


# ---- /proc accounting ---------------------------------------------------------

def _stat_fields(path):
    """Fields of a /proc/.../stat line after the command name: index 0 is
    field 3 (state), so utime (field 14) is [11] and stime (15) is [12]."""
    with open(path) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()


def proc_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; None if gone."""
    try:
        f = _stat_fields("/proc/%d/stat" % pid)
    except (OSError, ValueError):
        return None
    return int(f[11]) + int(f[12])


def thread_ticks(pid):
    """{tid: (comm, ticks)} for each thread of pid."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                comm = f.read().strip()
            f = _stat_fields("/proc/%d/task/%s/stat" % (pid, tid))
        except (OSError, ValueError):
            continue
        out[int(tid)] = (comm, int(f[11]) + int(f[12]))
    return out


def all_process_ticks():
    """{pid: (comm, ticks)} for every process on the machine."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        i, j = s.find("("), s.rfind(")")
        f = s[j + 2:].split()
        out[int(d)] = (s[i + 1:j], int(f[11]) + int(f[12]))
    return out


def system_ticks():
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)   # idle + iowait
    total = sum(v[:8])                           # guest time is already in user
    return total - idle, total


class CpuMeter:
    """CPU used by named processes (and the manager's threads) between
    start() and stop(), as % of one core; plus whole-machine busy %."""

    def __init__(self, procs, thread_pid=None):
        self.procs = dict(procs)          # label -> pid
        self.thread_pid = thread_pid      # whose threads to break down

    def start(self):
        self.t0 = time.monotonic()
        self.p0 = {k: proc_ticks(p) for k, p in self.procs.items()}
        self.th0 = thread_ticks(self.thread_pid) if self.thread_pid else {}
        self.s0 = system_ticks()
        self.all0 = all_process_ticks()
        self.self0 = os.times()
        return self

    def stop(self):
        dt = time.monotonic() - self.t0
        p1 = {k: proc_ticks(p) for k, p in self.procs.items()}
        th1 = thread_ticks(self.thread_pid) if self.thread_pid else {}
        s1 = system_ticks()
        all1 = all_process_ticks()
        self1 = os.times()

        def pct(ticks):
            return 100.0 * ticks / CLK_TCK / dt
        per = {k: (pct(p1[k] - self.p0[k]) if p1[k] is not None and self.p0[k] is not None else None)
               for k in self.procs}
        threads = {}
        for tid, (comm, t) in th1.items():
            if tid in self.th0:
                threads["%s/%d" % (comm, tid)] = pct(t - self.th0[tid][1])
        busy = s1[0] - self.s0[0]
        total = max(s1[1] - self.s0[1], 1)
        ncpu = os.cpu_count() or 1
        mine = sum(v for v in per.values() if v is not None)
        client = pct(round(((self1.user + self1.system) - (self.self0.user + self.self0.system)) * CLK_TCK))
        machine = 100.0 * busy / total * ncpu      # in % of one core, like the others
        ours = set(self.procs.values()) | {os.getpid()}
        others = []
        for pid, (comm, t) in all1.items():
            t0 = self.all0.get(pid, (comm, 0))[1]   # processes born in the window count in full
            if pid not in ours and t - t0 > 0:
                others.append((pct(t - t0), comm, pid))
        others.sort(reverse=True)
        return {
            "seconds": dt,
            "processes_pct_of_one_core": per,
            "total_pct_of_one_core": mine,
            "manager_threads_pct": threads,
            "benchmark_client_pct": client,
            "machine_busy_pct_of_one_core": machine,
            "other_pct_of_one_core": machine - mine - client,
            "top_other_processes": [{"pid": p, "comm": c, "pct": v} for v, c, p in others[:8]],
            "ncpu": ncpu,
        }


# ---- throughput scenarios -----------------------------------------------------

def thread_counters(shm):
    """Loops and sleeps of the manager's RX and TX threads, summed over
    threads (the control file has had one of each, or arrays of them)."""
    out = {}
    for kind in ("rx", "tx"):
        if hasattr(shm, kind + "_threads"):
            n = getattr(shm, "nb_%s_threads" % kind, 1) or 1
            ts = [getattr(shm, kind + "_threads")[i] for i in range(n)]
        else:
            ts = [getattr(shm, kind + "_thread")]
        out[kind + "_thread"] = {"loops": sum(t.loops for t in ts), "sleeps": sum(t.sleeps for t in ts)}
    return out


def _counters(mgr):
    """Every counter the benchmark uses, read from the control file (not
    through Manager.stats(), so it does not depend on its exact keys)."""
    cf = mgr.control
    shm = cf.shm
    snap = {"time": time.monotonic(),
            "nfs": {i: cf.nf_stats(i) for i, _ in cf.nf_slots()},
            "ports": {p: cf.port_stats(p) for p in range(shm.nb_ports)},
            "pool": {"size": shm.pool_size, "in_use": shm.pool_in_use}}
    snap.update(thread_counters(shm))
    return snap


def _nf_deltas(a, b, dt):
    out = {}
    for i, s1 in b["nfs"].items():
        s0 = a["nfs"].get(i)
        if s0 is None or s0["pid"] != s1["pid"]:
            continue
        d = {k: s1.get(k, 0) - s0.get(k, 0) for k in ("rx", "tx", "rx_drop", "tx_drop", "refused", "chain_end",
                                                       "errors", "created", "wakeups")}
        d["rx_mpps"] = d["rx"] / dt / 1e6
        d["tx_mpps"] = d["tx"] / dt / 1e6
        d["created_mpps"] = d["created"] / dt / 1e6
        d["app"] = [y - x for x, y in zip(s0["app"], s1["app"])]
        d["app_end"] = list(s1["app"])
        out[s1["name"]] = d
    return out


def shmem_pmd_mb(pid):
    """MB of shared memory (tmpfs, memfd) process pid maps in 2 MiB pages:
    without hugepages, how much of the packet region an NF reaches through
    transparent hugepages (core/xmem.c); 0 with hugepages (hugetlbfs is
    counted elsewhere), None if unreadable."""
    if not pid:
        return None
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("ShmemPmdMapped:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def measure(mgr, sink, nfs, window, sample_every=None):
    """Counters and CPU over one window; the rate is the sink's rx delta."""
    procs = {"manager": mgr.process.pid}
    procs.update({n.name: n.pid for n in nfs})
    cpu = CpuMeter(procs, thread_pid=mgr.process.pid)
    samples = []
    a = _counters(mgr)
    cpu.start()
    end = a["time"] + window
    if sample_every:
        prev = mgr.control.nf_stats(sink.instance)["app"]
        while time.monotonic() < end:
            time.sleep(min(sample_every, max(0.0, end - time.monotonic())))
            cur = mgr.control.nf_stats(sink.instance)["app"]
            if cur[0] > prev[0]:
                samples.append((cur[1] - prev[1]) / (cur[0] - prev[0]))
            prev = cur
    else:
        time.sleep(window)
    b = _counters(mgr)
    c = cpu.stop()
    dt = b["time"] - a["time"]
    s0, s1 = a["nfs"][sink.instance], b["nfs"][sink.instance]
    d_samples, d_sum = s1["app"][0] - s0["app"][0], s1["app"][1] - s0["app"][1]
    res = {
        "seconds": dt,
        "mpps": (s1["rx"] - s0["rx"]) / dt / 1e6,
        "sink_latency_mean_us": d_sum / d_samples / 1e3 if d_samples else None,
        "sink_latency_max_us_since_start": s1["app"][2] / 1e3,
        "sink_latency_max_set_in_window": s1["app"][2] != s0["app"][2],
        "nfs": _nf_deltas(a, b, dt),
        "rx_thread_sleeps": b["rx_thread"]["sleeps"] - a["rx_thread"]["sleeps"],
        "tx_thread_sleeps": b["tx_thread"]["sleeps"] - a["tx_thread"]["sleeps"],
        "tx_thread_loops": b["tx_thread"]["loops"] - a["tx_thread"]["loops"],
        "pool_in_use_end": b["pool"]["in_use"],
        "pool_size": b["pool"]["size"],
        "cpu": c,
        "shmem_pmd_mb": {n.name: shmem_pmd_mb(n.pid) for n in nfs},
    }
    if sample_every:
        res["interval_mean_latency_us"] = [x / 1e3 for x in samples]
    return res


def new_manager(args):
    return onvm.Manager(**args.manager_options)


def run_chain(args, middle, gen_args=None, sample_every=None):
    """generate(GEN) -> middle NFs -> sink(SINK), chain [GEN, *middle, SINK]."""
    if gen_args is None:
        gen_args = {"size": 64, "flows": 64}
        if args.gen_rate:
            gen_args["rate"] = args.gen_rate
    with new_manager(args) as mgr:
        # The chain first: generate's first packets then already have a path.
        mgr.set_default_chain([GEN] + [m[1] for m in middle] + [SINK])
        sink = mgr.launch(onvm.native("sink"), service=SINK)
        mids = []
        for spec, svc, *replicas in middle:      # (spec, service) or (spec, service, replicas)
            # the same NF more than once (a chain of forwards): one name per service
            name = "%s-%d" % (spec.name, svc) if sum(m[0] is spec for m in middle) > 1 else None
            got = mgr.launch(spec, service=svc, replicas=replicas[0] if replicas else 1, name=name)
            mids += got if isinstance(got, list) else [got]
        gen = mgr.launch(onvm.native("generate", **gen_args), service=GEN)
        time.sleep(args.warmup)
        res = measure(mgr, sink, [gen] + mids + [sink], args.window, sample_every)
        for n in [gen] + mids + [sink]:
            if not n.alive:
                raise RuntimeError("NF %s exited during the run:\n%s" % (n.name, n.log()[-2000:]))
        res["chain"] = [GEN] + [m[1] for m in middle] + [SINK]
        res["generate_args"] = gen_args
        res["middle"] = [getattr(m[0], "name", str(m[0])) for m in middle]
        for n in mids:
            if n.name in res["nfs"]:
                res["middle_rx_drop"] = res["nfs"][n.name]["rx_drop"]
                res["middle_rx_drop_mpps"] = res["nfs"][n.name]["rx_drop"] / res["seconds"] / 1e6
    return res


def throughput(args, middle):
    trials = [run_chain(args, middle) for _ in range(args.trials)]
    best = sorted(trials, key=lambda r: r["mpps"])[len(trials) // 2]   # the median trial
    out = dict(best)
    out["trials_mpps"] = [t["mpps"] for t in trials]
    return out


def scen_dpdk(args):
    """Build ring_ceiling.c against the system DPDK and run it on 2 lcores."""
    build = os.path.join(HERE, "build")
    exe = os.path.join(build, "ring_ceiling")
    src = os.path.join(HERE, "ring_ceiling.c")
    os.makedirs(build, exist_ok=True)
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libdpdk"], check=True,
                               capture_output=True, text=True).stdout.split()
        subprocess.run(["cc", "-O3", src, "-o", exe] + flags, check=True)
    prefix = "onvm-bench-ceiling-%d" % os.getpid()
    trials = []
    # On this VM a pinned two-core ring hop is bimodal (about 8 or about 95
    # Mpps from one run to the next), so it runs several short trials and
    # the ceiling is the best one: the physical limit, not a typical run.
    try:
        for _ in range(max(args.trials, 1 if args.quick else 6)):
            out = subprocess.run([exe, "0.2" if args.quick else "2", "--no-pci", "--in-memory", "-l", "0-1",
                                  "--file-prefix", prefix, "--log-level=error", "--no-telemetry"],
                                 check=True, capture_output=True, text=True, timeout=60).stdout
            trials.append(json.loads(out)["mpps"])
    finally:
        import shutil
        shutil.rmtree(os.path.join(paths.runtime_root(), prefix), ignore_errors=True)
    return {"mpps": max(trials), "trials_mpps": trials, "nfs": {}}


def scen_ceiling(args):
    return throughput(args, [])


def scen_native(args):
    return throughput(args, [(onvm.native("forward"), FWD)])


def scen_py_batch(args):
    return throughput(args, [(py_batch, PY)])


def scen_py_pkt(args):
    return throughput(args, [(py_pkt, PY)])


def scen_py_touch(args):
    return throughput(args, [(py_touch, PY)])


def scen_latency(args):
    r = run_chain(args, [(onvm.native("forward"), FWD)],
                  gen_args={"size": 64, "flows": 64, "rate": args.latency_rate}, sample_every=0.1)
    iv = sorted(r["interval_mean_latency_us"])
    r["interval_mean_p50_us"] = iv[len(iv) // 2] if iv else None
    r["interval_mean_max_us"] = iv[-1] if iv else None
    return r


# ---- idle CPU -----------------------------------------------------------------

def scen_idle(args):
    with new_manager(args) as mgr:
        nfs = [mgr.launch(onvm.native("forward"), service=s, name="fwd%d" % s) for s in (1, 2, 5)]
        nfs.append(mgr.launch(py_pkt, service=4, name="py_pkt"))
        nfs.append(mgr.launch(py_batch, service=6, name="py_batch"))
        mgr.set_default_chain([1, 2, 5, 4, 6, onvm.ToPort(1)])
        time.sleep(args.idle_settle)    # let start-up work (imports, registration) finish
        procs = {"manager": mgr.process.pid}
        procs.update({n.name: n.pid for n in nfs})
        a = _counters(mgr)
        cpu = CpuMeter(procs, thread_pid=mgr.process.pid).start()
        time.sleep(args.idle_seconds)
        c = cpu.stop()
        b = _counters(mgr)
        d = _nf_deltas(a, b, b["time"] - a["time"])
        return {
            "pct_of_one_core": c["total_pct_of_one_core"],
            "cpu": c,
            "wakeups_per_s": {k: v["wakeups"] / c["seconds"] for k, v in d.items()},
            "rx_thread_sleeps_per_s": (b["rx_thread"]["sleeps"] - a["rx_thread"]["sleeps"]) / c["seconds"],
            "tx_thread_sleeps_per_s": (b["tx_thread"]["sleeps"] - a["tx_thread"]["sleeps"]) / c["seconds"],
            "rx_thread_loops_per_s": (b["rx_thread"]["loops"] - a["rx_thread"]["loops"]) / c["seconds"],
            "tx_thread_loops_per_s": (b["tx_thread"]["loops"] - a["tx_thread"]["loops"]) / c["seconds"],
            "settle_seconds": args.idle_settle,
        }


# ---- wake-up latency ------------------------------------------------------------

def udp_frame(size=64):
    """Ether/IPv4/UDP 198.51.100.1:1024 -> 203.0.113.9:9, zero payload."""
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    ip_len = size - 14
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0, 64, 17, 0,
                      bytes([198, 51, 100, 1]), bytes([203, 0, 113, 9]))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~s & 0xffff) + hdr[12:]
    udp = struct.pack("!HHHH", 1024, 9, ip_len - 20, 0)
    return (eth + hdr + udp).ljust(size, b"\0")


def one_shot(mgr, frame, poll="spin", timeout=1.0):
    """Send an inject request for one packet on port 0 without waiting for
    the reply, then poll the control file in a tight loop until port 1's tx
    counter moves.  Times in us from the moment the request was written.

    poll="spin": a pure busy loop.  On 2 cores it holds one core, and a
    manager thread woken onto that core's run queue waits for the next
    scheduler tick (ms) before it runs.  poll="yield": the same loop with
    sched_yield() each turn, so such a thread runs at once."""
    yield_ = os.sched_yield if poll == "yield" else (lambda: None)
    shm = mgr.control.shm
    p1tx = shm.ports[1].tx
    p0ctl = shm.ports[0].ctl
    tx0, inj0 = p1tx.tx, p0ctl.injected
    # an NF's counters live in its own stats file (struct onvm_nf_stats), not in its slot
    fwd = [mgr.control.nf_counters(i) for i, _ in mgr.control.nf_slots()]
    wk0 = [n.wakeups for n in fwd]
    th0 = thread_counters(shm)
    data = json.dumps({"op": "inject", "port": 0, "pkts": [base64.b64encode(frame).decode()]}).encode()
    data = struct.pack(">I", len(data)) + data
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(paths.sock_path(mgr.name))
    clock = time.perf_counter_ns
    t_inj = t_tx = None
    limit = timeout * 1e9
    try:
        t0 = clock()
        s.sendall(data)
        while True:
            now = clock()
            if t_inj is None and p0ctl.injected != inj0:
                t_inj = now
            if p1tx.tx != tx0:
                t_tx = now
                if t_inj is None:
                    t_inj = now
                break
            if now - t0 > limit:
                break
            yield_()
        reply = protocol.recv(s)
    finally:
        s.close()
    return {
        "inject_to_tx_us": (t_tx - t0) / 1e3 if t_tx else None,
        "injected_to_tx_us": (t_tx - t_inj) / 1e3 if t_tx else None,
        "request_to_injected_us": (t_inj - t0) / 1e3 if t_inj else None,
        "sent": reply.get("sent"),
        "nf_wakeups_since_last": [n.wakeups - w for n, w in zip(fwd, wk0)],
        "rx_thread_slept": thread_counters(shm)["rx_thread"]["sleeps"] - th0["rx_thread"]["sleeps"],
        "tx_thread_slept": thread_counters(shm)["tx_thread"]["sleeps"] - th0["tx_thread"]["sleeps"],
    }


def summary(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v),
            "lost": len(values) - len(v)}


def scen_wakeup(args):
    frame = udp_frame()
    modes = ["spin", "yield"] if args.wakeup_poll == "both" else [args.wakeup_poll]
    out = {"modes": modes}
    with new_manager(args) as mgr:
        fwd = mgr.launch(onvm.native("forward"), service=FWD)
        mgr.set_default_chain([FWD, onvm.ToPort(1)])
        # Prime the path once (first-touch page faults are not wake-up cost).
        one_shot(mgr, frame)
        shm = mgr.control.shm
        for mode in modes:
            quiet = []
            for k in range(args.wakeup_repeats):
                q = args.quiet_seconds if k == 0 else args.repeat_quiet_seconds
                th = thread_counters(shm)
                before = {"rx": th["rx_thread"]["sleeps"], "tx": th["tx_thread"]["sleeps"],
                          "nf": fwd.stats().get("wakeups", 0)}
                print("  wakeup (%s poll): quiet %.0f s, shot %d/%d" % (mode, q, k + 1, args.wakeup_repeats),
                      flush=True)
                time.sleep(q)
                th = thread_counters(shm)
                slept = {"rx_thread_sleeps_in_quiet": th["rx_thread"]["sleeps"] - before["rx"],
                         "tx_thread_sleeps_in_quiet": th["tx_thread"]["sleeps"] - before["tx"],
                         "nf_wakeups_in_quiet": fwd.stats().get("wakeups", 0) - before["nf"]}
                r = one_shot(mgr, frame, poll=mode)
                r.update(slept)
                r["quiet_seconds"] = q
                quiet.append(r)
            hot = [one_shot(mgr, frame, poll=mode) for _ in range(args.hot_repeats)]
            out[mode] = {
                "quiet": quiet, "hot": hot,
                "quiet_inject_to_tx_us": summary([r["inject_to_tx_us"] for r in quiet]),
                "quiet_injected_to_tx_us": summary([r["injected_to_tx_us"] for r in quiet]),
                "hot_inject_to_tx_us": summary([r["inject_to_tx_us"] for r in hot]),
                "hot_injected_to_tx_us": summary([r["injected_to_tx_us"] for r in hot]),
                "first_quiet_inject_to_tx_us": quiet[0]["inject_to_tx_us"],
            }
        out["captured_on_port1"] = len(mgr.capture(port=1, count=None, raw=True))
        # Views into the control file must be gone before Manager.stop()
        # closes its mmap (BufferError otherwise).
        del shm, th
    out["pipe_baseline"] = {mode: pipe_wake_baseline(args, mode) for mode in modes}
    return out


def pipe_wake_baseline(args, poll="spin"):
    """The machine's own floor, without onvm: a process asleep in read() on
    a pipe is woken by a write from this one, which then polls for the reply
    as one_shot does (spin, or spin with sched_yield).  Time from write to
    the sleeper running, in us."""
    yield_ = os.sched_yield if poll == "yield" else (lambda: None)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:   # the sleeper
        try:
            os.close(w1)
            os.close(r2)
            while True:
                b = os.read(r1, 1)
                t = time.perf_counter_ns()
                if b != b"x":
                    break
                os.write(w2, struct.pack("q", t))
        finally:
            os._exit(0)
    os.close(r1)
    os.close(w2)
    os.set_blocking(r2, False)

    def shot():
        t0 = time.perf_counter_ns()
        os.write(w1, b"x")
        limit = t0 + 1e9
        while True:
            try:
                return (struct.unpack("q", os.read(r2, 8))[0] - t0) / 1e3
            except BlockingIOError:
                if time.perf_counter_ns() > limit:
                    return None
                yield_()
    try:
        shot()
        quiet = []
        for _ in range(args.wakeup_repeats):
            time.sleep(args.baseline_quiet_seconds)
            quiet.append(shot())
        hot = [shot() for _ in range(args.hot_repeats)]
    finally:
        os.write(w1, b"q")
        os.close(w1)
        os.close(r2)
        os.waitpid(pid, 0)
    return {"quiet_seconds": args.baseline_quiet_seconds, "quiet_us": quiet, "hot_us": hot,
            "quiet": summary(quiet), "hot": summary(hot)}


# ---- report -------------------------------------------------------------------

RUNNERS = {"dpdk": scen_dpdk, "ceiling": scen_ceiling, "native": scen_native, "py_batch": scen_py_batch, "py_pkt": scen_py_pkt,
           "py_touch": scen_py_touch, "idle": scen_idle, "wakeup": scen_wakeup, "latency": scen_latency}


def _other(r):
    """CPU used by processes that are not this benchmark's during the window."""
    c = r.get("cpu")
    return "%.0f%%" % c["other_pct_of_one_core"] if c else "-"


def rows_for(results):
    """(scenario, result, target, x ceiling, verdict, other CPU) rows."""
    rows = []
    ceiling = results.get("dpdk", {}).get("mpps")

    def ratio(m):
        return "%.2f" % (m / ceiling) if ceiling else "-"

    def verdict(ok):
        return "info" if ok is None else ("PASS" if ok else "FAIL")

    def error_row(label, r):
        rows.append((label, "ERROR", "", "", "ERROR", r["error"][:60]))

    labels = {"dpdk": "0 DPDK ring hop (raw, best trial)", "ceiling": "1 onvm: generate->sink", "native": "2 native: gen->forward->sink",
              "py_batch": "3 Python NF, batch", "py_pkt": "4 Python NF, per-packet",
              "py_touch": "5 Python NF, per-packet, writes"}
    targets = {"native": 10.0, "py_batch": 1.0, "py_pkt": 0.5}
    for k in ("dpdk", "ceiling", "native", "py_batch", "py_pkt", "py_touch"):
        r = results.get(k)
        if r is None:
            continue
        if "error" in r:
            error_row(labels[k], r)
            continue
        m = r["mpps"]
        t = targets.get(k)
        val = "%.3f Mpps" % m
        if "middle_rx_drop_mpps" in r:
            val += " (NF drops %.2f Mpps)" % r["middle_rx_drop_mpps"]
        elif r["nfs"].get("sink", {}).get("rx_drop"):
            val += " (sink drops %.2f Mpps)" % (r["nfs"]["sink"]["rx_drop"] / r["seconds"] / 1e6)
        rows.append((labels[k], val, ">= %g Mpps" % t if t else "-", ratio(m),
                     verdict(m >= t if t else None), _other(r)))
    r = results.get("idle")
    if r is not None:
        label = "6 idle CPU: mgr + 5 NFs"
        if "error" in r:
            error_row(label, r)
        else:
            p = r["pct_of_one_core"]
            rows.append((label, "%.2f %% of one core" % p, "<= 5 %", "-", verdict(p <= 5.0), _other(r)))
    r = results.get("wakeup")
    if r is not None:
        if "error" in r:
            error_row("7 wake-up latency", r)
        else:
            def mm(x):
                return "%.0f us (median %.0f)" % (x["max"], x["median"]) + (" LOST %d" % x["lost"] if x["lost"] else "")
            for mode in r["modes"]:
                w = r[mode]
                first = w["first_quiet_inject_to_tx_us"]
                q, qd = w["quiet_inject_to_tx_us"], w["quiet_injected_to_tx_us"]
                h, hd = w["hot_inject_to_tx_us"], w["hot_injected_to_tx_us"]
                rows.append(("7 wake-up [%s poll] 1st, after %gs quiet" % (mode, w["quiet"][0]["quiet_seconds"]),
                             "lost" if first is None else "%.0f us" % first,
                             "<= 1000 us", "-", verdict(first is not None and first <= 1000), "-"))
                if q:
                    rows.append(("7 wake-up [%s poll] after quiet, max of %d" % (mode, q["n"] + q["lost"]), mm(q),
                                 "<= 1000 us", "-", verdict(q["max"] <= 1000 and not q["lost"]), "-"))
                if qd:
                    rows.append(("7   [%s] after quiet: injected->tx part" % mode, mm(qd), "-", "-", "info", "-"))
                if h:
                    rows.append(("7 wake-up [%s poll] hot, max of %d" % (mode, h["n"] + h["lost"]), mm(h),
                                 "-", "-", "info", "-"))
                if hd:
                    rows.append(("7   [%s] hot: injected->tx part" % mode, mm(hd), "-", "-", "info", "-"))
            for mode, b in (r.get("pipe_baseline") or {}).items():
                if b.get("quiet"):
                    rows.append(("7 baseline [%s]: pipe wake after %gs quiet" % (mode, b["quiet_seconds"]),
                                 mm(b["quiet"]), "-", "-", "info", "-"))
                if b.get("hot"):
                    rows.append(("7 baseline [%s]: pipe wake, hot" % mode, mm(b["hot"]), "-", "-", "info", "-"))
    r = results.get("latency")
    if r is not None:
        if "error" in r:
            error_row("8 latency gen->fwd->sink", r)
        else:
            lm = r["sink_latency_mean_us"]
            rows.append(("8 latency @%d pps: mean" % r["generate_args"]["rate"],
                         "%.1f us (%.3f Mpps)" % (lm, r["mpps"]) if lm else "no samples", "-", "-", "info", _other(r)))
            rows.append(("8 latency: max since sink start",
                         "%.1f us" % r["sink_latency_max_us_since_start"]
                         + ("" if r["sink_latency_max_set_in_window"] else " (set before window)"),
                         "-", "-", "info", "-"))
            if r.get("interval_mean_max_us"):
                rows.append(("8 latency: 100 ms means, p50 / worst",
                             "%.1f / %.1f us" % (r["interval_mean_p50_us"], r["interval_mean_max_us"]),
                             "-", "-", "info", "-"))
    return rows


HEAD = ("scenario", "result", "target", "x DPDK hop", "verdict", "other CPU")


def print_table(rows):
    w = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(len(HEAD))]
    line = "  ".join("%-*s" % (w[i], HEAD[i]) for i in range(len(HEAD)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join("%-*s" % (w[i], r[i]) for i in range(len(HEAD))).rstrip())


def print_detail(name, r):
    """One or two lines of what explains the number: CPU shares, drops, wakeups."""
    if "error" in r:
        return
    if "cpu" in r:
        c = r["cpu"]
        procs = ", ".join("%s %.0f%%" % (k, v) for k, v in c["processes_pct_of_one_core"].items() if v is not None)
        threads = ", ".join("%s %.0f%%" % (k.split("/")[0], v) for k, v in c["manager_threads_pct"].items() if v >= 1)
        print("  %-9s cpu: %s | mgr threads: %s | machine %.0f%%, other %.0f%%"
              % (name, procs, threads or "-", c["machine_busy_pct_of_one_core"], c["other_pct_of_one_core"]))
        if c["other_pct_of_one_core"] > 10:
            print("  %-9s other processes: %s" % ("", ", ".join(
                "%s(%d) %.0f%%" % (o["comm"], o["pid"], o["pct"]) for o in c["top_other_processes"][:5])))
    if name == "idle":
        print("  %-9s wakeups/s: %s | rx thread sleeps/s %.1f, tx thread sleeps/s %.1f"
              % ("", ", ".join("%s %.1f" % kv for kv in r["wakeups_per_s"].items()),
                 r["rx_thread_sleeps_per_s"], r["tx_thread_sleeps_per_s"]))
    if name == "wakeup":
        for label, rows in [("%s quiet" % m, r[m]["quiet"]) for m in r["modes"]] + \
                           [("%s hot (first 5)" % m, r[m]["hot"][:5]) for m in r["modes"]]:
            print("  %-9s %s: %s" % ("", label, ", ".join(
                "%s us (injected->tx %s)" % tuple("lost" if x is None else "%.0f" % x
                                                  for x in (row["inject_to_tx_us"], row["injected_to_tx_us"]))
                for row in rows)))
        for mode, b in (r.get("pipe_baseline") or {}).items():
            print("  %-9s pipe baseline [%s]: quiet %s; hot median %s us" % (
                "", mode, ", ".join("lost" if x is None else "%.0f" % x for x in b["quiet_us"]),
                "%.0f" % b["hot"]["median"] if b.get("hot") else "-"))
    if r.get("nfs"):
        parts = []
        for n, d in r["nfs"].items():
            bits = ["rx %.2f" % d["rx_mpps"]]
            if d["created"]:
                bits.append("made %.2f" % d["created_mpps"])
            if d["rx_drop"]:
                bits.append("rx_drop %.2f" % (d["rx_drop"] / r["seconds"] / 1e6))
            if d["tx_drop"]:
                bits.append("tx_drop %d" % d["tx_drop"])
            if d["refused"] or d["chain_end"] or d["errors"]:
                bits.append("refused %d chain_end %d errors %d" % (d["refused"], d["chain_end"], d["errors"]))
            bits.append("wakeups %d" % d["wakeups"])
            parts.append("%s[%s]" % (n, " ".join(bits)))
        print("  %-9s Mpps: %s | tx thread sleeps %d" % ("", "; ".join(parts), r["tx_thread_sleeps"]))
    if r.get("trials_mpps") and len(r["trials_mpps"]) > 1:
        print("  %-9s trials: %s" % ("", ", ".join("%.3f" % x for x in r["trials_mpps"])))


def environment():
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                  cwd=os.path.dirname(HERE)).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    core = os.path.join(os.path.dirname(onvm.__file__), "_core.abi3.so")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "affinity": sorted(os.sched_getaffinity(0)), "cpu_model": model,
            "dpdk": sh(["pkg-config", "--modversion", "libdpdk"]), "onvm": onvm.__version__,
            "git_head": sh(["git", "rev-parse", "--short", "HEAD"]),
            "git_dirty": (sh(["git", "status", "--short", "--", "onvm"]) or "").splitlines(),
            "core_so_mtime": (datetime.datetime.fromtimestamp(os.path.getmtime(core)).isoformat()
                              if os.path.exists(core) else None),
            "hostname": platform.node(), "loadavg_at_start": load,
            "kernel_cmdline": open("/proc/cmdline").read().strip()}


def wait_for_quiet_machine(max_wait, threshold):
    """Other people's jobs on a 2-core box ruin a benchmark: wait (up to
    max_wait s) until the machine is below threshold % of one core busy
    over a 1 s look.  returns: (seconds waited, last busy %)."""
    t0 = time.monotonic()
    ncpu = os.cpu_count() or 1
    while True:
        a = system_ticks()
        time.sleep(1.0)
        b = system_ticks()
        busy = 100.0 * (b[0] - a[0]) / max(b[1] - a[1], 1) * ncpu
        waited = time.monotonic() - t0
        if busy <= threshold or waited >= max_wait:
            return waited, busy


def parse_manager_options(items):
    out = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq or not k.isidentifier():
            raise ValueError("--manager-option takes NAME=VALUE, got %r" % it)
        out[k] = {"true": True, "false": False}.get(v.lower(), int(v) if v.lstrip("-").isdigit() else v)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help="comma-separated scenarios to run (default: all): " + ", ".join(SCENARIOS))
    ap.add_argument("--window", type=float, default=5.0, help="throughput/latency window, s (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up before each window, s (default 2)")
    ap.add_argument("--trials", type=int, default=1,
                    help="runs per throughput scenario; the median is reported (default 1)")
    ap.add_argument("--gen-rate", type=int, default=0,
                    help="generate's rate in pps for scenarios 1-5 (default 0: as fast as it can)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU window, s (default 10)")
    ap.add_argument("--idle-settle", type=float, default=3.0,
                    help="wait after start-up before the idle window, s (default 3)")
    ap.add_argument("--quiet-seconds", type=float, default=60.0,
                    help="quiet period before the first wake-up shot, s (default 60)")
    ap.add_argument("--repeat-quiet-seconds", type=float, default=5.0,
                    help="quiet period before each further wake-up shot, s (default 5)")
    ap.add_argument("--wakeup-repeats", type=int, default=5, help="wake-up shots after quiet (default 5)")
    ap.add_argument("--hot-repeats", type=int, default=20, help="wake-up shots with no quiet (default 20)")
    ap.add_argument("--wakeup-poll", choices=("spin", "yield", "both"), default="both",
                    help="how the client polls the tx counter in scenario 7 (default both, one after the other)")
    ap.add_argument("--baseline-quiet-seconds", type=float, default=2.0,
                    help="quiet before each pipe wake-up baseline shot, s (default 2)")
    ap.add_argument("--latency-rate", type=int, default=100000, help="generate rate for scenario 8, pps")
    ap.add_argument("--manager-option", action="append", default=[], metavar="NAME=VALUE",
                    help="extra onvm.Manager() keyword, e.g. busy_poll=true (repeatable)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="before each scenario wait up to this long for other load to stop, s (default 30)")
    ap.add_argument("--quiet-threshold", type=float, default=20.0,
                    help="machine busy %% (of one core) that counts as quiet (default 20)")
    ap.add_argument("--output", help="JSON path (default benchmarks/results/dataplane-<UTC>.json)")
    ap.add_argument("--keep-going", action="store_true", help="record a failing scenario and go on")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: every scenario once and briefly (seconds); checks it runs, measures nothing")
    args = ap.parse_args(argv)
    if args.quick:
        ap.set_defaults(**QUICK)
        args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SCENARIOS]
    if bad:
        ap.error("unknown scenario(s) %s; choose from %s" % (", ".join(bad), ", ".join(SCENARIOS)))
    if args.trials < 1 or args.wakeup_repeats < 1 or args.window <= 0:
        ap.error("--trials, --wakeup-repeats and --window must be positive")
    try:
        args.manager_options = parse_manager_options(args.manager_option)
    except ValueError as e:
        ap.error(str(e))

    started = datetime.datetime.now(datetime.timezone.utc)
    out_path = args.output or os.path.join(RESULTS, "dataplane-%s.json" % started.strftime("%Y%m%dT%H%M%SZ"))
    results = {}
    env = environment()
    print("onvm data-plane benchmark: %s, %d CPUs (%s), DPDK %s, kernel %s, onvm git %s%s"
          % (started.strftime("%Y-%m-%d %H:%M:%SZ"), env["cpus"], env["cpu_model"], env["dpdk"], env["kernel"],
             env["git_head"], " (+local changes)" if env["git_dirty"] else ""))
    for name in SCENARIOS:
        if name not in only:
            continue
        waited, busy = wait_for_quiet_machine(args.quiet_wait, args.quiet_threshold)
        print("== %s%s" % (name, "" if busy <= args.quiet_threshold else
                           "  (machine still %.0f%% busy after %.0f s: other jobs running)" % (busy, waited)),
              flush=True)
        t = time.monotonic()
        try:
            results[name] = RUNNERS[name](args)
        except Exception as e:  # noqa: BLE001 - a benchmark reports and goes on if asked
            if not args.keep_going:
                raise
            results[name] = {"error": "%s: %s" % (type(e).__name__, e)}
            print("  %s failed: %s" % (name, results[name]["error"]), flush=True)
        results[name]["wall_seconds"] = time.monotonic() - t
        results[name]["machine_before"] = {"waited_s": waited, "busy_pct_of_one_core": busy}
        print_detail(name, results[name])
    rows = rows_for(results)
    print()
    print_table(rows)
    doc = {
        "benchmark": "dataplane", "started_utc": started.isoformat(),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "argv": sys.argv[1:], "options": vars(args), "environment": env,
        "table": [dict(zip(("scenario", "result", "target", "ratio_to_ceiling", "verdict", "other_cpu"), r))
                  for r in rows],
        "results": results,
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    os.replace(tmp, out_path)
    print("\nwrote %s" % out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
