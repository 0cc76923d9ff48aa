#!/usr/bin/env python3
"""The flow director's cost, as in the paper's figure 3: the same traffic
through the same chain (port 0 -> forward -> port 1), routed by the port's
default path, by exact rules looked up with the hash the RX thread cached,
and by exact rules with a naive rehash per lookup; at 1k, 16k and 64k
flows, one rule per flow.  Each figure is a ratio to the default chain
measured in the same run (timing on a shared 2-core VM is noisy).

    .venv/bin/python benchmarks/bench_flows.py                  # 1k, 16k, 64k flows (~3 min)
    .venv/bin/python benchmarks/bench_flows.py --flows 1000 --packets 200000

Traffic: a pcap file of --packets UDP packets over the flows, replayed by a
pcap port (the RX thread reads it as it would a NIC); throughput is packets
the forward NF received per second of replay.  Prints a table and writes
benchmarks/results/flows-<UTC timestamp>.json."""
import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import onvm

HERE = os.path.dirname(os.path.abspath(__file__))


def write_pcap(path, flows, packets):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapWriter
    frames = [bytes(Ether() / IP(src="10.%d.%d.1" % (f >> 8 & 255, f & 255), dst="10.200.0.1") /
                    UDP(sport=1024 + f % 60000, dport=53) / (b"x" * 18)) for f in range(flows)]
    with PcapWriter(path, sync=False) as w:
        for i in range(packets):
            w.write(frames[i % flows])
    return frames


def run(mode, pcap, frames, packets, timeout=120):
    """packets per second through port 0 -> forward -> port 1 in one mode."""
    with onvm.Manager(ports=("pcap:rx=%s" % pcap, "ring"), flow_lookup="naive" if mode == "naive" else "cached",
                      hugepage_mb=512) as mgr:
        fwd = mgr.launch(onvm.native("forward"), service=1)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        if mode != "default":
            for fr in frames:
                mgr.flows.add(onvm.Match.of(fr), [1, onvm.Port(1)])
        t0 = time.monotonic()
        mgr.replay(0)
        deadline = t0 + timeout
        while fwd.stats()["rx"] < packets and time.monotonic() < deadline:
            time.sleep(0.005)
        dt = time.monotonic() - t0
        done = fwd.stats()["rx"]
        if mode != "default":
            hits = sum(r.packets for r in mgr.flows.list())
            assert hits >= done, (hits, done)     # every packet went by its rule (a few still in flight)
    return done / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", default="1000,16000,64000")
    ap.add_argument("--packets", type=int, default=500000)
    ap.add_argument("--trials", type=int, default=2, help="best of this many per mode")
    a = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for flows in (int(x) for x in a.flows.split(",")):
            pcap = os.path.join(tmp, "f%d.pcap" % flows)
            frames = write_pcap(pcap, flows, a.packets)
            pps = {m: max(run(m, pcap, frames, a.packets) for _ in range(a.trials))
                   for m in ("default", "exact", "naive")}
            row = {"flows": flows, "pps": pps, "exact_ratio": pps["exact"] / pps["default"],
                   "naive_ratio": pps["naive"] / pps["default"]}
            results.append(row)
            print("%6d flows: default %.2f Mpps, exact (cached hash) %.2f Mpps = %.2f, naive rehash %.2f Mpps = %.2f"
                  % (flows, pps["default"] / 1e6, pps["exact"] / 1e6, row["exact_ratio"], pps["naive"] / 1e6,
                     row["naive_ratio"]), flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", "flows-%s.json" % datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ"))
    with open(out, "w") as f:
        json.dump({"packets": a.packets, "results": results}, f, indent=1)
    print("written", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
