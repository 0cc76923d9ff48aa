#!/usr/bin/env python3
"""NFs written against the C NF SDK (docs/c-nfs.md) next to the shipped
native forward, in one run.

    .venv/bin/python benchmarks/bench_cnf.py                 # 5 rounds of 2 s each
    .venv/bin/python benchmarks/bench_cnf.py --quick         # a smoke run: seconds, figures mean nothing

Each NF runs as the middle of generate (service 10) -> NF (service 2) -> sink
(service 3), the generator as fast as the chain takes packets.  The NFs
take turns, round after round, so a busy moment on the machine hits all of
them alike; each figure is the median of its rounds.  Two figures per NF:
Mpps through it (wall clock: the generator and the sink share the cores),
and the CPU its own process used per packet (/proc/PID/schedstat), which
other processes hardly move.  Reported: user C forward / native forward,
both ways (issue 21 asks for the user's within 5 %), and the example
firewall's Mpps (with examples/firewall/rules.txt).  Writes
benchmarks/results/cnf-<UTC>.json.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import onvm  # noqa: E402

FORWARD_C = r"""
#include <onvm/nflib.h>
static int forward(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	(void)pkt; (void)state;
	return onvm_next(v);
}
ONVM_NF("cforward", forward)
"""


def cpu_seconds(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0]) / 1e9


def measure(mgr, nf, window):
    """(Mpps, CPU ns per packet) of nf in generate -> nf -> sink."""
    mgr.set_default_chain([10, 2, 3])
    sink = mgr.launch(onvm.native("sink"), service=3, name="sink")
    mid = mgr.launch(nf, service=2, name="middle")
    gen = mgr.launch(onvm.native("generate", size=64, flows=256), service=10, name="gen")
    try:
        time.sleep(min(0.5, window))                       # past the start
        n0, c0, t0 = mid.stats()["rx"], cpu_seconds(mid.pid), time.monotonic()
        time.sleep(window)
        n1, c1, t1 = mid.stats()["rx"], cpu_seconds(mid.pid), time.monotonic()
    finally:
        for n in (gen, mid, sink):
            n.stop()
    pkts = max(n1 - n0, 1)
    return pkts / (t1 - t0) / 1e6, (c1 - c0) / pkts * 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="rounds, the NFs in turn in each (default 5)")
    ap.add_argument("--window", type=float, default=2.0, help="seconds measured per NF and round (default 2)")
    ap.add_argument("--output", help="JSON path (default benchmarks/results/cnf-<UTC>.json)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 0.3 s")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.window = 1, 0.3

    t0 = time.monotonic()
    nfs = {
        "native forward": onvm.native("forward"),
        "user C forward (SDK)": onvm.c_nf(source=FORWARD_C, name="cforward"),
        "example firewall (SDK)": onvm.c_nf(path=os.path.join(ROOT, "examples", "firewall", "firewall.c"),
                                            args=[os.path.join(ROOT, "examples", "firewall", "rules.txt")]),
    }
    build_s = time.monotonic() - t0
    rounds = {k: [] for k in nfs}
    with onvm.Manager(name="benchcnf%d" % os.getpid()) as mgr:
        for r in range(args.rounds):
            order = list(nfs) if r % 2 == 0 else list(reversed(nfs))     # ABBA: neither goes first always
            for k in order:
                rounds[k].append(measure(mgr, nfs[k], args.window))
                print("round %d %-24s %6.2f Mpps %6.0f CPU ns/pkt" % (r + 1, k, *rounds[k][-1]), flush=True)
    med = {k: {"mpps": statistics.median(m for m, _ in v), "cpu_ns": statistics.median(c for _, c in v)}
           for k, v in rounds.items()}
    user, native = med["user C forward (SDK)"], med["native forward"]
    res = {
        "rounds": rounds, "median": med, "window_s": args.window, "build_s": build_s,
        "ratio_mpps_user_to_native": user["mpps"] / native["mpps"],
        "ratio_cpu_user_to_native": user["cpu_ns"] / native["cpu_ns"],
        "firewall_mpps": med["example firewall (SDK)"]["mpps"],
        "load_avg": os.getloadavg(), "cpus": os.cpu_count(),
    }
    print("%-24s %8s %14s" % ("median of %d" % args.rounds, "Mpps", "CPU ns/pkt"))
    for k, v in med.items():
        print("%-24s %8.2f %14.0f" % (k, v["mpps"], v["cpu_ns"]))
    print("user C forward / native forward: %.3f in Mpps, %.3f in CPU per packet"
          % (res["ratio_mpps_user_to_native"], res["ratio_cpu_user_to_native"]))
    print("example firewall: %.2f Mpps" % res["firewall_mpps"])
    out = args.output or os.path.join(HERE, "results", "cnf-%s.json"
                                      % datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
