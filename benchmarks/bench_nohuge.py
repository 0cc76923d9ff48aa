#!/usr/bin/env python3
"""The same chains with and without hugepages, side by side in one run
(issue 25: the no-hugepage mode's cost, stated).

    sudo .venv/bin/python benchmarks/bench_nohuge.py               # 3 trials per mode and chain, ~2 min
    .venv/bin/python benchmarks/bench_nohuge.py --quick --output /tmp/nh.json

Chains (bench_dataplane.py's, the sink's rx over the window):
    native    generate(10) -> forward(2) -> sink(3)          the 1-NF chain; goal: no-hugepage >= 0.7 x hugepage
    py_batch  generate(10) -> Python batch NF(4) -> sink(3)  for information
Trials alternate between the modes (hugepage, no-hugepage, hugepage, ...),
so a noisy neighbour costs both alike; the table shows each mode's median
and the ratio, and the same per core the chain's processes used (on a busy
machine the chain's rate is mostly its share of the CPUs).  Writes benchmarks/results/nohuge-<UTC timestamp>.json.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys

import onvm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_dataplane as dp  # noqa: E402  (the chains and their measurement)

GOAL = 0.7
CHAINS = {"native": lambda: [(onvm.native("forward"), dp.FWD)],
          "py_batch": lambda: [(dp.py_batch, dp.PY)]}
QUICK = {"window": 0.3, "warmup": 0.2, "trials": 1}


def run(args):
    results = {}
    for chain in args.only:
        results[chain] = {"hugepages": [], "no_hugepages": []}
        for _ in range(args.trials):
            for mode, huge in (("hugepages", True), ("no_hugepages", False)):
                args.manager_options = dict(args.base_options, hugepages=huge)
                results[chain][mode].append(dp.run_chain(args, CHAINS[chain]()))
    return results


def per_core(t):
    """Mpps per core the chain's processes used: on a machine shared with
    other work the chain gets what the scheduler gives it, and this
    compares the modes' cost per packet regardless."""
    pct = t["cpu"]["total_pct_of_one_core"]
    return t["mpps"] / (pct / 100.0) if pct else float("nan")


def table(results):
    lines = ["%-9s %11s %11s %6s  %13s %13s %6s  %s" % ("chain", "huge Mpps", "no-huge Mpps", "ratio",
                                                       "huge Mpps/core", "no-huge /core", "ratio", "goal (>= %.1f)" % GOAL)]
    for chain, r in results.items():
        h = statistics.median(t["mpps"] for t in r["hugepages"])
        n = statistics.median(t["mpps"] for t in r["no_hugepages"])
        hc = statistics.median(per_core(t) for t in r["hugepages"])
        nc = statistics.median(per_core(t) for t in r["no_hugepages"])
        ratio, ratio_core = (n / h if h else float("nan")), (nc / hc if hc else float("nan"))
        goal = ("met" if ratio >= GOAL else "missed") if chain == "native" else "info"
        lines.append("%-9s %11.3f %11.3f %6.2f  %13.3f %13.3f %6.2f  %s" % (chain, h, n, ratio, hc, nc, ratio_core,
                                                                            goal))
        r["median_mpps"] = {"hugepages": h, "no_hugepages": n}
        r["median_mpps_per_core"] = {"hugepages": hc, "no_hugepages": nc}
        r["ratio"], r["ratio_per_core"] = ratio, ratio_core
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--only", default=",".join(CHAINS), help="chains: " + ", ".join(CHAINS))
    ap.add_argument("--window", type=float, default=5.0, help="measurement window, s (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up before it, s (default 2)")
    ap.add_argument("--trials", type=int, default=3, help="trials per mode and chain (default 3)")
    ap.add_argument("--gen-rate", type=int, default=0, help="generate's rate, pps (0: flat out)")
    ap.add_argument("--mbufs", type=int, default=16383, help="packets in the pool (default 16383, the Manager's)")
    ap.add_argument("--output", help="JSON path (default benchmarks/results/nohuge-<UTC>.json)")
    ap.add_argument("--quick", action="store_true", help="smoke run: one short trial each; figures mean nothing")
    args = ap.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:])}
        for k, v in QUICK.items():
            if k not in given:
                setattr(args, k, v)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    bad = [c for c in args.only if c not in CHAINS]
    if bad or args.trials < 1:
        ap.error("unknown chain %s (choose from %s)" % (bad, ", ".join(CHAINS)) if bad else "--trials must be >= 1")
    args.base_options = {"mbufs": args.mbufs}
    results = run(args)
    text = table(results)
    print(text, flush=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.output or os.path.join(dp.RESULTS, "nohuge-%s.json" % stamp)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"when": stamp, "host": platform.node(), "cpus": os.cpu_count(), "quick": args.quick,
                   "window": args.window, "warmup": args.warmup, "trials": args.trials, "table": text,
                   "results": results}, f, indent=1, default=str)
    print("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
