#!/usr/bin/env python3
"""Start-up time of an NF: from mgr.launch() to its first packet processed,
as a process and in a container (the paper: 0.524 s and 0.526 s).

    .venv/bin/python benchmarks/bench_startup.py [--trials 5] [--python]

Each trial launches a fresh `forward` NF (--python: a Python NF whose
function travels by pickle) on service 1 with the chain [1, ToPort(1)],
then injects one packet every millisecond until one comes out of port 1;
the time is from the launch call to that packet's capture.  Process and
container trials alternate in one manager, so both see the same machine.
Prints medians and writes benchmarks/results/startup-<UTC timestamp>.json.
Goal on the 2-core machine: process <= 0.3 s, container <= 0.5 s."""
import argparse
import datetime
import json
import os
import statistics
import sys
import time

import onvm
from onvm import containers

PAPER = {"process": 0.524, "container": 0.526}
QUICK = {"trials": 1}


def first_packet(mgr, nf, container):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    pkt = bytes(Ether() / IP(src="198.51.100.1", dst="203.0.113.9") / UDP(sport=1, dport=53))
    t0 = time.perf_counter()
    n = mgr.launch(nf, service=1, name="probe", container=container)
    deadline = t0 + 30
    while time.perf_counter() < deadline:
        mgr.inject(pkt)
        if mgr.capture(port=1, count=1, timeout=0.001, raw=True):
            break
    took = time.perf_counter() - t0
    n.stop()
    mgr.capture(port=1, timeout=0.2, raw=True)      # what was still on its way
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--python", action="store_true", help="a Python NF instead of native forward")
    ap.add_argument("--no-container", dest="container", action="store_false",
                    help="processes only (no Docker engine for this user)")
    ap.add_argument("--output", help="JSON path (default benchmarks/results/startup-<UTC>.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run in seconds (one trial of each kind, no warm-up): checks it runs and prints its table, measures nothing")
    a = ap.parse_args()
    if a.quick:        # explicit options still win over the smoke-run defaults
        ap.set_defaults(**QUICK)
        a = ap.parse_args()
    if a.python:
        nf = onvm.nf(name="fwd")(lambda pkt: onvm.NEXT)
    else:
        nf = onvm.native("forward")
    kinds = ("process", "container") if a.container else ("process",)
    if a.container:
        containers.build_images()
    times = {k: [] for k in kinds}
    with onvm.Manager(name="bench-startup-%d" % os.getpid()) as mgr:
        mgr.set_default_chain([1, onvm.ToPort(1)])
        if not a.quick:
            for kind in kinds:                            # warm the page cache and imports
                first_packet(mgr, nf, kind == "container")
        for _ in range(a.trials):
            for kind in kinds:
                times[kind].append(first_packet(mgr, nf, kind == "container"))
    result = {"nf": "python" if a.python else "native forward", "trials": a.trials, "paper_s": PAPER,
              "median_s": {k: statistics.median(v) for k, v in times.items()}, "all_s": times,
              "cpus": os.cpu_count()}
    for kind in kinds:
        print("%-9s median %.3f s (min %.3f, max %.3f; paper %.3f s)" % (
            kind, result["median_s"][kind], min(times[kind]), max(times[kind]), PAPER[kind]))
    if a.container:
        print("container / process: %.2f" % (result["median_s"]["container"] / result["median_s"]["process"]))
    out = a.output or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "startup-%s.json"
                                   % datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
