#!/usr/bin/env python3
"""The same chains with and without hugepages, side by side in one run
(issue 25: the no-hugepage mode's cost, stated).

    sudo .venv/bin/python benchmarks/bench_nohuge.py               # 3 trials per mode and chain, ~2 min
    .venv/bin/python benchmarks/bench_nohuge.py --quick --output /tmp/nh.json

Chains (bench_dataplane.py's, the sink's rx over the window):
    native    generate(10) -> forward(2) -> sink(3)          the 1-NF chain; goal: no-hugepage >= 0.7 x hugepage
    py_batch  generate(10) -> Python batch NF(4) -> sink(3)  for information
Trials alternate between the modes (hugepage, no-hugepage, hugepage, ...),
so a noisy neighbour costs both alike, as `onvm bench chain` does for its
chain.nfs=N.hugepages=no rows (same goal); the table shows each mode's median
and the ratio, and the same per core the chain's processes used (on a busy
machine the chain's rate is mostly its share of the CPUs).  --with-4k adds a
third mode: no hugepages and no transparent hugepages either (ONVM_XMEM_4K=1,
core/xmem.c), the region in 4 KiB pages as before they were used.  Writes
benchmarks/results/nohuge-<UTC timestamp>.json.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys

import onvm
from onvm.face.bench import NOHUGE_GOAL as GOAL

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_dataplane as dp  # noqa: E402  (the chains and their measurement)

CHAINS = {"native": lambda: [(onvm.native("forward"), dp.FWD)],
          "py_batch": lambda: [(dp.py_batch, dp.PY)]}
QUICK = {"window": 0.3, "warmup": 0.2, "trials": 1}
# mode -> (hugepages, ONVM_XMEM_4K for the manager: keep the region in 4 KiB pages)
MODES = {"hugepages": (True, False), "no_hugepages": (False, False), "no_hugepages_4k": (False, True)}


def run(args):
    modes = list(MODES) if args.with_4k else ["hugepages", "no_hugepages"]
    results = {}
    for chain in args.only:
        results[chain] = {m: [] for m in modes}
        for _ in range(args.trials):
            for mode in modes:
                huge, four_k = MODES[mode]
                args.manager_options = dict(args.base_options, hugepages=huge)
                if four_k:
                    os.environ["ONVM_XMEM_4K"] = "1"    # read by the manager this starts
                try:
                    results[chain][mode].append(dp.run_chain(args, CHAINS[chain]()))
                finally:
                    os.environ.pop("ONVM_XMEM_4K", None)
    return results


def per_core(t):
    """Mpps per core the chain's processes used: on a machine shared with
    other work the chain gets what the scheduler gives it, and this
    compares the modes' cost per packet regardless."""
    pct = t["cpu"]["total_pct_of_one_core"]
    return t["mpps"] / (pct / 100.0) if pct else float("nan")


def pmd_mb(t):
    """The least of the chain's NFs' mappings in 2 MiB transparent hugepages, MB."""
    got = list(t.get("shmem_pmd_mb", {}).values())
    return min(got) if got and None not in got else None


def table(results):
    lines = ["%-9s %-16s %8s %6s  %10s %6s  %9s  %s" % ("chain", "mode", "Mpps", "ratio", "Mpps/core", "ratio",
                                                         "THP MB", "goal (>= %.1f)" % GOAL)]
    for chain, r in results.items():
        modes = [m for m in MODES if m in r]
        med = {m: statistics.median(t["mpps"] for t in r[m]) for m in modes}
        core = {m: statistics.median(per_core(t) for t in r[m]) for m in modes}
        h, hc = med["hugepages"], core["hugepages"]
        r["median_mpps"], r["median_mpps_per_core"], r["ratios"] = med, core, {}
        for m in modes:
            ratio, ratio_core = (med[m] / h if h else float("nan")), (core[m] / hc if hc else float("nan"))
            r["ratios"][m] = {"mpps": ratio, "per_core": ratio_core}
            goal = "" if m == "hugepages" else ("met" if ratio >= GOAL else "missed") if chain == "native" \
                and m == "no_hugepages" else "info"
            thp = [pmd_mb(t) for t in r[m]]
            lines.append("%-9s %-16s %8.3f %6.2f  %10.3f %6.2f  %9s  %s" % (
                chain, m, med[m], ratio, core[m], ratio_core, "-" if m == "hugepages" or None in thp else min(thp),
                goal))
        r["ratio"], r["ratio_per_core"] = r["ratios"]["no_hugepages"]["mpps"], r["ratios"]["no_hugepages"]["per_core"]
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
    ap.add_argument("--with-4k", action="store_true",
                    help="a third mode: no hugepages, the region kept in 4 KiB pages (no transparent hugepages)")
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
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    with open(out, "w") as f:
        json.dump({"when": stamp, "host": platform.node(), "cpus": os.cpu_count(), "quick": args.quick,
                   "loadavg_at_end": load, "argv": sys.argv[1:] if argv is None else argv,
                   "window": args.window, "warmup": args.warmup, "trials": args.trials, "table": text,
                   "results": results}, f, indent=1, default=str)
    print("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
