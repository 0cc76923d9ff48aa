"""`onvm demo`: a manager, a two-service chain (a Python NF with two
replicas, then a native NF), traffic from scapy, live stats, a summary."""
import sys
import time

from .. import DROP, NEXT, Manager, ToPort, native, nf
from ..stats import format_table, rates


@nf(service=1)
def mark(pkt):
    """Tags each packet in place (last byte := 0x42); drops TTL-1 packets."""
    if pkt.data[22] <= 1:          # IPv4 TTL, 14 + 8
        return DROP
    pkt.data[-1] = 0x42
    return NEXT


def run_demo(seconds=10.0, rate=20000):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    print("starting a manager with two ring ports ...", flush=True)
    with Manager() as mgr:
        mgr.launch(mark, replicas=2)
        mgr.launch(native("count"), service=2)
        mgr.set_default_chain([1, 2, ToPort(1)])
        print("chain: port 0 -> mark (service 1, 2 replicas) -> count (service 2) -> port 1\n", flush=True)
        # 64 flows, both directions; every 50th packet has TTL 1 (dropped by mark)
        template = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                    / IP(src="198.51.100.%d" % (1 + i % 8), dst="203.0.113.9", ttl=1 if i % 50 == 0 else 64)
                    / UDP(sport=1024 + i % 64, dport=53) / b"onvm-demo......."
                    for i in range(200)]
        burst = [bytes(p) for p in template]
        sent = out = 0
        tagged = True
        prev = mgr.control.snapshot()
        start = last_print = time.monotonic()
        tty = sys.stdout.isatty()
        while time.monotonic() - start < seconds:
            sent += mgr.inject(burst, port=0)
            got = mgr.capture(port=1, raw=True)
            out += len(got)
            tagged = tagged and all(p[-1] == 0x42 for p in got)
            time.sleep(max(0.0, len(burst) / rate - 0.001))
            if time.monotonic() - last_print >= 1:
                last_print = time.monotonic()
                snap = mgr.control.snapshot()
                if tty:
                    sys.stdout.write("\x1b[H\x1b[J")
                print("onvm demo: %.0f s of %.0f\n" % (last_print - start, seconds))
                print(format_table(snap, rates(prev, snap)) + "\n", flush=True)
                prev = snap
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = mgr.capture(port=1, raw=True, timeout=0.2)
            out += len(got)
            tagged = tagged and all(p[-1] == 0x42 for p in got)
            if mgr.control.shm.pool_in_use <= mgr.control.shm.pool_held and not got:
                break
        s = mgr.stats()
        replicas = {n["name"]: n["rx"] for n in s["nfs"].values() if n["service"] == 1}
        dropped = sum(n["actions"]["drop"] for n in s["nfs"].values())
        counts = next(n["app"] for n in s["nfs"].values() if n["service"] == 2)
        print("summary")
        print("  packets injected into port 0: %d" % sent)
        print("  packets out of port 1:        %d (all tagged by mark: %s)" % (out, "yes" if tagged else "NO"))
        print("  dropped by mark (TTL 1):      %d" % dropped)
        print("  per replica:                  %s" % ", ".join("%s %d" % kv for kv in sorted(replicas.items())))
        print("  count NF saw UDP packets:     %d" % counts[1])
        print("  packets still in the pool:    %d" % (mgr.control.shm.pool_in_use - mgr.control.shm.pool_held))
        ok = out + dropped == sent and tagged
        print("  in = out + dropped:           %s" % ("yes" if ok else "NO"))
    return 0 if ok else 1
