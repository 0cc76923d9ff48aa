"""Inject-to-capture throughput through the file rings: N 64-byte frames
injected into ring port 0 in one call, through a native forward NF, and
captured from ring port 1 in one call (a second thread), end to end.
Reports the rate, losses (must be 0), and the same run with a tap
mirroring after the NF (the cost of a capture at a hop).

    .venv/bin/python benchmarks/bench_capture.py [--packets 1000000] [--trials 3]
"""
import argparse
import json
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import onvm  # noqa: E402
from conftest import udp  # noqa: E402

QUICK = {"packets": 2000, "trials": 1}


def frames(n):
    tpl = bytes(udp(0, payload=b"\0" * 18))[:60]   # 60 bytes + FCS on a wire = 64
    return [tpl[:-4] + struct.pack(">I", i) for i in range(n)]


def one_run(mgr, pkts, tap):
    got = []
    t = mgr.tap(after="fw", ring_mb=256) if tap else None
    reader = threading.Thread(target=lambda: got.extend(mgr.capture(port=1, count=len(pkts), timeout=120, raw=True)))
    t0 = time.monotonic()
    reader.start()
    sent = mgr.inject(pkts, port=0, timeout=30)
    reader.join()
    took = time.monotonic() - t0
    mirrored = len(t.capture(raw=True)) if t else 0
    if t:
        t.stop()
    return {"sent": sent, "captured": len(got), "lost": len(pkts) - len(got), "seconds": took,
            "mpps": len(got) / took / 1e6, "identical": sorted(got) == pkts, "mirrored": mirrored}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1000000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--output", help="JSON path (default benchmarks/results/capture-<UTC>.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run in seconds (2000 packets, one trial): checks it runs and prints its table, measures nothing")
    a = ap.parse_args()
    if a.quick:        # explicit options still win over the smoke-run defaults
        ap.set_defaults(**QUICK)
        a = ap.parse_args()
    pkts = frames(a.packets)
    rows = []
    with onvm.Manager(name="bcap%d" % os.getpid(), ring_mb=128, mbufs=32767, hugepage_mb=512) as mgr:
        mgr.launch(onvm.native("forward"), service=2, name="fw")
        mgr.set_default_chain([2, onvm.ToPort(1)])
        for trial in range(a.trials):
            for tap in (False, True):
                r = one_run(mgr, pkts, tap)
                r.update(trial=trial, tap=tap)
                rows.append(r)
                print("%-10s trial %d: %d/%d captured, %.2f s, %.2f Mpps, identical=%s%s" % (
                    "tap after" if tap else "plain", trial, r["captured"], a.packets, r["seconds"], r["mpps"],
                    r["identical"], ", mirrored %d" % r["mirrored"] if tap else ""))
        stats = mgr.stats()["ports"]
    best = {k: max(r["mpps"] for r in rows if r["tap"] == k) for k in (False, True)}
    print("best: %.2f Mpps plain, %.2f Mpps with a tap after the NF (ratio %.2f); ports %s"
          % (best[False], best[True], best[True] / best[False], stats))
    out = a.output or os.path.join(os.path.dirname(__file__), "results",
                                   "capture-%s.json" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"packets": a.packets, "runs": rows, "ports": {str(k): v for k, v in stats.items()}}, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
