#!/usr/bin/env python3
"""Frame fuzzing through the whole data path: 10^6 generated frames (random
bytes of 14..2048, truncated, padded and broken IPv4/IPv6/TCP/UDP headers,
IP options, fragments, VLAN and QinQ stacks; tests/frames.py) through the
RX flow hash, routing, every native NF (forward x2, drop, count, sink) and a
Python NF that reads the packet view and routes frames at random.

    .venv/bin/python benchmarks/fuzz_frames.py                 # 10^6 frames (a few minutes)
    .venv/bin/python benchmarks/fuzz_frames.py --frames 200000 --seed 7

Prints frames, crashes, drops by reason, how the routing's prediction
compares, duration; writes benchmarks/results/fuzz-<UTC timestamp>.json.
Exits 1 if a process crashed, a frame is unaccounted for, an NF callback
failed a check, or a frame came out changed.  tests/test_fuzz.py runs the
same with 10^5 frames.
"""
import argparse
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUICK = {"frames": 2000, "round": 1000}
sys.path.insert(0, os.path.join(HERE, "..", "tests"))   # frames.py, also for the NF processes

import frames  # noqa: E402
import onvm  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames to send (default 10^6)")
    ap.add_argument("--seed", type=int, default=1, help="fuzzer seed (default 1)")
    ap.add_argument("--round", type=int, default=20000, help="frames per round of phases (default 20000)")
    ap.add_argument("--pace", type=int, default=2048, help="frames per inject before waiting (default 2048)")
    ap.add_argument("--no-json", action="store_true", help="do not write benchmarks/results/fuzz-*.json")
    ap.add_argument("--output", help="JSON path (default benchmarks/results/fuzz-<UTC>.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run in seconds (%d frames): checks it runs and prints its table" % QUICK["frames"])
    a = ap.parse_args(argv)
    if a.quick:        # explicit options still win over the smoke-run defaults
        ap.set_defaults(**QUICK)
        a = ap.parse_args(argv)
    if a.frames < 1 or a.round < 20 or a.pace < 1:
        ap.error("--frames and --pace must be positive, --round at least 20")

    t0 = time.monotonic()
    next_report = [100000]

    def progress(done, acc):
        if done >= next_report[0] or done == a.frames:
            next_report[0] = done - done % 100000 + 100000
            print("%9d frames  %6.1f s  missing %d  drops %s" % (
                done, time.monotonic() - t0, acc["missing"],
                " ".join("%s=%d" % kv for kv in acc["drops"].items() if kv[1])), flush=True)

    with onvm.Manager(name="fuzz%d" % os.getpid()) as mgr:
        frames.deploy(mgr)
        r = frames.run_fuzz(mgr, a.frames, seed=a.seed, round_size=a.round, pace=a.pace, progress=progress)
        logs = {n.name: n.log()[-2000:] for n in mgr.launched if not n.alive or r["errors"]}

    overflow = sum(r["drops"][k] for k in frames.OVERFLOW)
    actual = {"port0": r["out"][0], "port1": r["out"][1]}
    actual.update((k, v) for k, v in r["drops"].items() if k not in frames.OVERFLOW)
    print()
    print("frames       %d in %.1f s (%.0f frames/s, inject and capture included)"
          % (r["frames"], r["duration"], r["frames"] / r["duration"]))
    print("crashes      %s" % (", ".join(r["crashed"]) or "none"))
    print("out          port 0: %d, port 1: %d (captured all but %d; capture buffer drops %d)"
          % (r["out"][0], r["out"][1], r["uncaptured"], r["capture_drop"]))
    print("drops        %s" % ", ".join("%s %d" % kv for kv in r["drops"].items()))
    print("unaccounted  %d" % r["missing"])
    print("%-12s %10s %10s" % ("fate", "predicted", "counted"))
    for fate in sorted(set(r["expected"]) | set(actual)):
        print("%-12s %10d %10d" % (fate, r["expected"].get(fate, 0), actual.get(fate, 0)))
    print("byte-exact   %d frames out changed, %d predicted for a port and not seen (full rings lost %d)"
          % (r["unexpected"], r["short"], overflow))
    print("NF errors    %d; NFs whose counters do not add up: %s; pool in use %d"
          % (r["errors"], r["unbalanced"] or "none", r["pool_in_use"]))
    for name, text in logs.items():
        print("--- %s log ---\n%s" % (name, text))

    if not a.no_json:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = a.output or os.path.join(HERE, "results", "fuzz-%s.json" % stamp)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"args": vars(a), "result": r}, f, indent=1, default=str)
        print("wrote %s" % path)

    ok = (not r["crashed"] and r["missing"] == 0 and r["errors"] == 0 and r["unexpected"] == 0
          and not r["unbalanced"] and r["uncaptured"] == 0 and r["pool_in_use"] == 0 and r["short"] <= overflow
          and (overflow or r["expected"] == {k: v for k, v in actual.items() if v or k in r["expected"]}))
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
