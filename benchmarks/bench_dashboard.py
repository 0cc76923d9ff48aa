#!/usr/bin/env python3
"""What the live dashboard costs: CPU of a real Jupyter kernel (ipykernel,
started by jupyter_client, no front end) running mgr.dashboard() at 2
updates a second over a chain with traffic, against the same kernel with
the dashboard closed, in the same run.

    .venv/bin/python benchmarks/bench_dashboard.py                 # 2 x 20 s
    .venv/bin/python benchmarks/bench_dashboard.py --seconds 10 --nfs 8

Reports, for the kernel process (all its threads: the updater, ipykernel's
IO thread that sends the widget messages) and for the updater thread alone
(/proc/PID/task/TID): CPU in percent of one core, and per update in ms.
Writes benchmarks/results/dashboard-<UTC timestamp>.json.  Target: the
updater costs <= 5 % of a core at 2 Hz.
"""
import argparse
import datetime
import json
import os
import sys
import time

from jupyter_client.manager import start_new_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")
QUICK = {"seconds": 1.0, "nfs": 1}

SETUP = """
import onvm, threading
mgr = onvm.Manager()
mgr.launch(onvm.native("generate", rate=20000, flows=64), service=1, name="gen")
mgr.launch(onvm.native("forward"), service=2, replicas=%d, name="fw")
mgr.launch(onvm.native("sink"), service=3, name="sink")
mgr.set_default_chain([1, 2, 3])
"""


def cpu_seconds(pid, tid=None):
    path = "/proc/%d/stat" % pid if tid is None else "/proc/%d/task/%d/stat" % (pid, tid)
    with open(path) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK      # utime + stime


def run(kc, code, timeout=120):
    """Execute code in the kernel; returns its text/plain result or stdout."""
    msg_id = kc.execute(code)
    out = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        t, c = msg["msg_type"], msg["content"]
        if t == "stream":
            out.append(c["text"])
        elif t == "execute_result":
            out.append(c["data"].get("text/plain", ""))
        elif t == "error":
            raise RuntimeError("kernel: %s: %s" % (c["ename"], c["evalue"]))
        elif t == "status" and c["execution_state"] == "idle":
            return "".join(out)


def measure(pid, seconds, tid=None):
    a = cpu_seconds(pid), cpu_seconds(pid, tid) if tid else 0.0
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    b = cpu_seconds(pid), cpu_seconds(pid, tid) if tid else 0.0
    return 100 * (b[0] - a[0]) / dt, 100 * (b[1] - a[1]) / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20, help="each measurement window")
    ap.add_argument("--nfs", type=int, default=2, help="forward replicas (lines in the plot: NFs + 2)")
    ap.add_argument("--interval", type=float, default=0.5, help="dashboard update interval")
    ap.add_argument("--output", help="JSON path (default benchmarks/results/dashboard-<UTC>.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run in seconds (1 s windows, one NF): checks it runs and prints its table, measures nothing")
    a = ap.parse_args()
    if a.quick:        # explicit options still win over the smoke-run defaults
        ap.set_defaults(**QUICK)
        a = ap.parse_args()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        pid = km.provisioner.process.pid
        run(kc, SETUP % a.nfs)
        run(kc, "import time; time.sleep(1.5)")
        run(kc, "dash = mgr.dashboard(interval=%r); updates = 0" % a.interval)
        tid = int(run(kc, "dash._thread.native_id").strip())
        time.sleep(2)                                     # the first draws, the toggles made
        with_dash, updater = measure(pid, a.seconds, tid)
        rows = run(kc, "len(mgr.history())")
        run(kc, "dash.close()")
        time.sleep(1)
        without, _ = measure(pid, a.seconds)
        run(kc, "mgr.stop()")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    per_update = 10 * updater * a.interval      # ms of CPU per update: (%/100) * interval * 1000
    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(), "seconds": a.seconds,
        "interval": a.interval, "lines": a.nfs + 2, "history_rows": int(rows.strip()),
        "kernel_cpu_pct_with_dashboard": round(with_dash, 2), "kernel_cpu_pct_without": round(without, 2),
        "dashboard_cpu_pct": round(with_dash - without, 2), "updater_thread_cpu_pct": round(updater, 2),
        "updater_ms_per_update": round(per_update, 2), "target_pct": 5.0,
    }
    print("kernel CPU, dashboard at %.1f Hz (%d NF lines): %.2f %% of a core" % (1 / a.interval, a.nfs + 2, with_dash))
    print("kernel CPU, dashboard closed:                   %.2f %%" % without)
    print("the dashboard costs:                            %.2f %% (target <= 5 %%)" % (with_dash - without))
    print("  of which the updater thread:                  %.2f %% (%.1f ms per update)" % (updater, per_update))
    out = a.output or os.path.join(HERE, "results", "dashboard-%s.json"
                                   % datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
