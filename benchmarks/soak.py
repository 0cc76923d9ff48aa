"""Soak: paced traffic through a deployed graph for minutes, redeployed every
few seconds (replicas, a node added and removed, a code swap), and at the end
every packet accounted for and the manager's memory and descriptors flat.

    python benchmarks/soak.py                 # 8 minutes at 58 kpps, a redeploy every 20 s
    python benchmarks/soak.py --quick         # a smoke run: 20 s, a redeploy every 4 s

Not a speed goal: it reports what was lost (0 is the only good figure), and
the manager's RSS and open descriptors at the start, the end and their most,
so a leak shows as growth over the run.  Exit status 1 if a packet was lost."""
import argparse
import json
import os
import sys
import threading
import time

import networkx as nx

import onvm
from onvm import Port


def frames(flows):
    """UDP frames of `flows` flows, built once (no scapy on the hot path)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    return [bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                  IP(src="198.51.100.%d" % (1 + i % 200), dst="203.0.113.9") /
                  UDP(sport=1000 + i, dport=53) / b"soak") for i in range(flows)]


@onvm.nf
def mark_a(pkt):
    pkt.data[-1] = 0xA
    return onvm.NEXT


@onvm.nf
def mark_b(pkt):
    pkt.data[-1] = 0xB
    return onvm.NEXT


def graph(step):
    """The graphs the soak cycles through: replicas 1-2-3, a node added and
    removed, the marking NF's code swapped."""
    fwd = onvm.native("forward")
    shapes = [
        [("fw", fwd, 1), ("mark", mark_a, 1)],
        [("fw", fwd, 2), ("mark", mark_a, 1)],
        [("fw", fwd, 2), ("mid", fwd, 1), ("mark", mark_a, 2)],
        [("fw", fwd, 1), ("mark", mark_b, 2)],
        [("fw", fwd, 3), ("mark", mark_b, 1)],
    ]
    g = nx.DiGraph()
    prev = Port(0)
    for name, nf, replicas in shapes[step % len(shapes)]:
        g.add_node(name, nf=nf, replicas=replicas)
        g.add_edge(prev, name)
        prev = name
    g.add_edge(prev, Port(1))
    return g


def usage(pid):
    """(RSS in KiB, open descriptors) of process pid."""
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=480.0)
    ap.add_argument("--rate", type=float, default=58000.0, help="packets per second injected")
    ap.add_argument("--every", type=float, default=20.0, help="seconds between redeploys")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 20 s, a redeploy every 4 s, 5 kpps")
    ap.add_argument("--output", help="the JSON (default: benchmarks/results/soak-TIME.json)")
    a = ap.parse_args(argv)
    if a.quick:
        a.seconds, a.every, a.rate = 20.0, 4.0, 5000.0
    pkts = frames(256)
    sent, got, lost_in = 0, 0, {}
    with onvm.Manager() as mgr:
        mgr.deploy(graph(0))
        pid = mgr.process.pid
        first = usage(pid)
        peak = list(first)
        stop = threading.Event()

        def redeploys():
            step = 1
            while not stop.wait(a.every):
                mgr.deploy(graph(step))
                step += 1
                rss, fds = usage(pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], fds)
                print("  t=%5.0f s  redeploy %d  sent %d  out %d  manager RSS %d KiB, %d fds"
                      % (time.monotonic() - t0, step - 1, sent, got, rss, fds), flush=True)
            return step - 1

        t0 = time.monotonic()
        th = threading.Thread(target=redeploys, daemon=True)
        th.start()
        end = t0 + a.seconds
        while time.monotonic() < end:
            due = int((time.monotonic() - t0) * a.rate)
            if due > sent:
                burst = [pkts[(sent + i) % len(pkts)] for i in range(min(due - sent, 4096))]
                sent += mgr.inject(burst, port=0)
            got += len(mgr.capture(port=1, raw=True))
            time.sleep(0.002)
        stop.set()
        th.join()
        got += len(mgr.capture(port=1, count=sent - got, timeout=20, raw=True))
        last = usage(pid)
        s = mgr.stats()
        for kind, items in (("nf", s["nfs"]), ("port", s["ports"])):
            for k, v in items.items():
                for c, n in v.items():
                    if isinstance(n, int) and n and ("drop" in c or c in ("refused", "recovered", "chain_end")):
                        lost_in["%s %s %s" % (kind, k, c)] = n
    lost = sent - got
    rows = [("seconds", "%.0f" % a.seconds), ("rate", "%.0f pps" % a.rate), ("redeploys", "every %.0f s" % a.every),
            ("sent", "%d" % sent), ("out", "%d" % got), ("lost", "%d" % lost),
            ("manager RSS KiB", "start %d, end %d, most %d" % (first[0], last[0], max(peak[0], last[0]))),
            ("manager fds", "start %d, end %d, most %d" % (first[1], last[1], max(peak[1], last[1])))]
    print("soak")
    for k, v in rows:
        print("  %-16s %s" % (k, v))
    if lost:
        print("  where: %s" % lost_in)
    out = a.output or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "soak-%s.json" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    with open(out, "w") as f:
        json.dump({"args": vars(a), "sent": sent, "out": got, "lost": lost, "drops": lost_in,
                   "rss_kib": {"start": first[0], "end": last[0], "most": max(peak[0], last[0])},
                   "fds": {"start": first[1], "end": last[1], "most": max(peak[1], last[1])}}, f, indent=1)
    print("results in %s" % out)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
