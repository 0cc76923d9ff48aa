"""Deployment figures: how long a 5-node graph takes to deploy, how long a
live code swap takes, and what paced traffic loses meanwhile.

    .venv/bin/python benchmarks/bench_deploy.py [--rate 50000] [--swaps 10]

Prints one line per figure and writes benchmarks/results/deploy-<time>.json."""
import argparse
import json
import os
import statistics
import sys
import threading
import time

import networkx as nx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import onvm  # noqa: E402
from conftest import marker, udp  # noqa: E402
from onvm import Port  # noqa: E402

QUICK = {"rate": 2000, "swaps": 1, "trials": 1}


def five_nodes():
    g = nx.DiGraph()
    names = ["a", "b", "c", "d", "e"]
    for i, n in enumerate(names):
        g.add_node(n, nf=onvm.native("forward") if i % 2 == 0 else marker(i))
    for u, v in zip([Port(0)] + names, names + [Port(1)]):
        g.add_edge(u, v)
    return g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=50000, help="paced traffic during swaps, pps")
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--output", help="JSON path (default benchmarks/results/deploy-<UTC>.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run in seconds (one deploy, one swap, 2000 pps): checks it runs and prints its table, measures nothing")
    a = ap.parse_args()
    if a.quick:        # explicit options still win over the smoke-run defaults
        ap.set_defaults(**QUICK)
        a = ap.parse_args()
    res = {}
    with onvm.Manager() as mgr:
        times = []
        for _ in range(a.trials):
            g = five_nodes()
            t = time.monotonic()
            dep = mgr.deploy(g)
            times.append(time.monotonic() - t)
            dep.stop()
            mgr.deployment = None
        res["deploy_5_nodes_s"] = statistics.median(times)
        print("deploy of a 5-node graph: %.3f s (median of %d: %s)"
              % (res["deploy_5_nodes_s"], a.trials, ", ".join("%.3f" % x for x in times)))

        g = nx.DiGraph()
        g.add_node("m", nf=marker(0), replicas=2)
        g.add_edge(Port(0), "m")
        g.add_edge("m", Port(1))
        mgr.deploy(g)
        flows = [bytes(udp(sport=1000 + i)) for i in range(256)]
        sent, got, stop = [0], [0], threading.Event()

        def traffic():
            start = time.monotonic()
            while not stop.is_set() and time.monotonic() - start < 300:
                due = int((time.monotonic() - start) * a.rate)
                if due > sent[0]:
                    sent[0] += mgr.inject([flows[i % 256] for i in range(sent[0], min(due, sent[0] + 4096))], port=0)
                got[0] += len(mgr.capture(port=1, raw=True))
                time.sleep(0.002)

        th = threading.Thread(target=traffic)
        th.start()
        swaps = []
        t0 = time.monotonic()
        for k in range(1, a.swaps + 1):
            g.nodes["m"]["nf"] = marker(k)
            t = time.monotonic()
            mgr.deploy(g)
            swaps.append(time.monotonic() - t)
        stop.set()
        th.join()
        got[0] += len(mgr.capture(port=1, count=sent[0] - got[0], timeout=20, raw=True))
        span = time.monotonic() - t0
        res.update(swap_s=statistics.median(swaps), swaps=a.swaps, sent=sent[0], received=got[0],
                   lost=sent[0] - got[0], offered_pps=sent[0] / span)
        print("code swap (2 replicas, make before break): median %.3f s, max %.3f s"
              % (res["swap_s"], max(swaps)))
        print("during %d swaps at %.0f pps offered: sent %d, received %d, lost %d"
              % (a.swaps, res["offered_pps"], sent[0], got[0], res["lost"]))
    path = a.output or os.path.join(os.path.dirname(__file__), "results",
                                    "deploy-%s.json" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
