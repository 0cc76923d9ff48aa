#!/usr/bin/env python3
"""Packet-journey tracing: what the hooks cost untraced traffic, and how long
one mgr.trace() takes, measured in one run.

    .venv/bin/python benchmarks/bench_trace.py                   # builds main once in a temp dir
    .venv/bin/python benchmarks/bench_trace.py --base /tmp/base --rounds 6

The native chain generate -> forward -> sink (bench_dataplane.py --only
native) runs alternately on a build without the trace hooks (--base-ref, a
`git archive` built in place) and on this tree, round by round in ABBA
order, so both see the same machine; the report is each side's median and
their ratio.  --base . compares this tree with itself (an A/A run: the
noise floor).  Then
trace() through two native NFs, --calls times, on this tree.  Writes
benchmarks/results/trace-<UTC>.json.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# --quick does not build main: the A/A comparison of this tree exercises the same code
QUICK = {"base": ROOT, "rounds": 1, "window": 0.3, "quiet_wait": 0.0, "calls": 5}


def build_base(ref, where):
    """A checkout of ref with its C core built in place; returns its path."""
    os.makedirs(where, exist_ok=True)
    if not os.path.exists(os.path.join(where, "onvm", "_core.abi3.so")):
        archive = subprocess.run(["git", "-C", ROOT, "archive", ref], check=True, capture_output=True, timeout=120)
        subprocess.run(["tar", "-x", "-C", where], input=archive.stdout, check=True, timeout=120)
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=where, check=True,
                       capture_output=True, timeout=900)
    return where


def native_mpps(tree, args, out):
    """One run of the native scenario with `tree` first on the import path."""
    env = dict(os.environ, PYTHONPATH=tree)
    subprocess.run([sys.executable, os.path.join(HERE, "bench_dataplane.py"), "--only", "native",
                    "--window", str(args.window), "--warmup", "1", "--quiet-wait", str(args.quiet_wait),
                    "--output", out] + (["--quick"] if args.quick else []),
                   env=env, check=True, capture_output=True, timeout=600)
    with open(out) as f:
        r = json.load(f)["results"]["native"]
    return r["mpps"], r["cpu"]["other_pct_of_one_core"]


def trace_latency(calls):
    """Seconds per trace() through port 0 -> forward -> forward -> port 1."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    import onvm
    pkt = Ether() / IP(dst="203.0.113.9") / UDP(dport=9)
    with onvm.Manager(name="bench-trace-%d" % os.getpid()) as mgr:
        for s in (1, 2):
            mgr.launch(onvm.native("forward"), service=s, name="fwd%d" % s)
        mgr.set_default_chain([1, 2, onvm.ToPort(1)])
        for _ in range(5):
            mgr.trace(pkt)
        took, spans = [], []
        for _ in range(calls):
            t0 = time.perf_counter()
            t = mgr.trace(pkt)
            took.append(time.perf_counter() - t0)
            spans.append(t[-1].t_ns)
            assert t.exit_port == 1, t
    return took, spans


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="a built tree without the hooks (default: build --base-ref in a temp dir)")
    ap.add_argument("--base-ref", default="main", help="git ref of the build without the hooks (default main)")
    ap.add_argument("--rounds", type=int, default=4, help="runs of each build, alternating (default 4)")
    ap.add_argument("--window", type=float, default=2.0, help="throughput window, s (default 2)")
    ap.add_argument("--quiet-wait", type=float, default=5.0, help="wait for a quieter machine, s (default 5)")
    ap.add_argument("--calls", type=int, default=200, help="trace() calls timed (default 200)")
    ap.add_argument("--output", help="JSON path (default benchmarks/results/trace-<UTC>.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run in seconds (this tree against itself, one round, 5 calls): "
                         "checks it runs and prints its table, measures nothing")
    args = ap.parse_args(argv)
    if args.quick:        # explicit options still win over the smoke-run defaults
        ap.set_defaults(**QUICK)
        args = ap.parse_args(argv)

    base = args.base or build_base(args.base_ref, os.path.join(tempfile.gettempdir(), "onvm-trace-base"))
    runs, other = {"base": [], "trace": []}, {"base": [], "trace": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            # ABBA order: the second run of a pair is slower even for identical builds (an A/A
            # run showed it), so each side goes first every other round
            order = (("base", base), ("trace", ROOT))
            for side, tree in (order if r % 2 == 0 else order[::-1]):
                mpps, busy = native_mpps(tree, args, os.path.join(d, "%s-%d.json" % (side, r)))
                runs[side].append(mpps)
                other[side].append(busy)
                print("round %d %-5s %.3f Mpps (other processes: %.0f%% of a core)" % (r + 1, side, mpps, busy),
                      flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    took, spans = trace_latency(args.calls)
    res = {
        "native_mpps": runs, "other_cpu_pct": other, "median_mpps": med, "ratio_trace_to_base": med["trace"] / med["base"],
        # each round's trace run against its base run: cancels slow drift in load
        "paired_ratio_median": statistics.median(t / b for t, b in zip(runs["trace"], runs["base"])),
        "paired_ratio_range": [min(t / b for t, b in zip(runs["trace"], runs["base"])),
                               max(t / b for t, b in zip(runs["trace"], runs["base"]))],
        "trace_call_ms": {"median": statistics.median(took) * 1e3, "p90": sorted(took)[int(0.9 * len(took))] * 1e3},
        "trace_span_us_median": statistics.median(spans) / 1e3,
        "base": base, "base_ref": args.base_ref, "load_avg": os.getloadavg(),
    }
    print("native chain: base %.3f Mpps, with trace hooks %.3f Mpps (median of %d), ratio %.3f; "
          "per round %.3f (median, range %.2f..%.2f)" % (med["base"], med["trace"], args.rounds,
                                                          res["ratio_trace_to_base"], res["paired_ratio_median"],
                                                          *res["paired_ratio_range"]))
    print("trace(): median %.2f ms, p90 %.2f ms per call; the packet's own journey: %.1f us (median)"
          % (res["trace_call_ms"]["median"], res["trace_call_ms"]["p90"], res["trace_span_us_median"]))
    out = args.output or os.path.join(HERE, "results", "trace-%s.json"
                                      % datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
