"""Hidden tests of lab 04 (find and fix the bottleneck of a chain): the
fixed NF, dpi_fast, must decide like the given dpi_slow on every packet
(the reference below is dpi_slow's method: scapy, then each signature in
turn), find_bottleneck must name the slow NF in the rates of three chains
(recorded on a real run, so its answer does not depend on this machine's
load), and dpi_fast must need far less CPU per packet than that method:
dpi_fast's as the grader sees its NF take over the hidden cases (CPU time
from the scheduler), the method's timed in the grader (CPU time of its
thread): not wall-clock time, the grading machine may be busy."""
import ipaddress
import re
import time

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from onvm import ToPort
from onvm.face.grading import probe_value

NF = "dpi_fast"
PORTS = 2
CHAIN = [1, ToPort(1)]
MIN_SPEEDUP = 3.0              # dpi_fast's CPU time per packet, at most a third of the method's
MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
# as in the notebook
SIGNATURES = [b"/etc/passwd", b"cmd.exe", b"<script>", b"' OR 1=1", b"\x90" * 8, b"../../", b"wget http",
              b"powershell -enc", b"SELECT * FROM", b"eval(base64", b"${jndi:"] + \
             [b"sig-%03d!" % i for i in range(300)]


def inspect_slow(data):
    p = Ether(bytes(data))
    if IP not in p:
        return "pass"
    l4 = p[TCP] if TCP in p else p[UDP] if UDP in p else None
    if l4 is None:
        return "pass"
    payload = bytes(l4.payload)
    for sig in SIGNATURES:
        if re.search(re.escape(sig), payload):
            return "drop"
    return "pass"


def reference(pkts):
    return [1 if inspect_slow(bytes(p)) == "pass" else None for p in pkts]


def _ip(rng, net):
    n = ipaddress.ip_network(net)
    return str(n[rng.randrange(1, n.num_addresses - 1)])


def _payload(rng, bad):
    text = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 /=&.<>'()-") for _ in range(rng.randrange(0, 120)))
    if not bad:
        return text
    sig = rng.choice(SIGNATURES)
    at = rng.randrange(len(text) + 1)
    return text[:at] + sig + text[at:]


def _pkt(rng, proto="tcp", bad=False, ip_options=False, tcp_options=False):
    ip = IP(src=_ip(rng, "198.51.100.0/24"), dst=_ip(rng, "203.0.113.0/24"), ttl=rng.randrange(2, 65))
    if ip_options:
        ip.options = [b"\x01" * 4 * rng.randrange(1, 6)]
    sport, dport = rng.randrange(41000, 60000), rng.randrange(40000, 41000)   # ports scapy binds nothing to
    if proto == "tcp":
        options = []
        if tcp_options:         # NOPs, or an experimental option whose bytes look like a signature
            options = [("NOP", None)] * 4 * rng.randrange(1, 6) if rng.random() < 0.5 else \
                [(253, b"sig-%03d!" % rng.randrange(300)), ("NOP", None), ("NOP", None)]
        l4 = TCP(sport=sport, dport=dport, flags="PA", options=options)
    elif proto == "udp":
        l4 = UDP(sport=sport, dport=dport)
    else:
        l4 = ICMP()
    return Ether(**MAC) / ip / l4 / _payload(rng, bad)


def cases(rng):
    out = []
    out.append(("clean traffic passes", 1, [_pkt(rng, rng.choice(["tcp", "udp"])) for _ in range(40)]))
    out.append(("a signature anywhere in a TCP payload: dropped", 3,
                [_pkt(rng, bad=rng.random() < 0.5) for _ in range(60)]))
    out.append(("IP and TCP options: the payload starts later", 2,
                [_pkt(rng, rng.choice(["tcp", "udp"]), bad=rng.random() < 0.5, ip_options=rng.random() < 0.5,
                      tcp_options=rng.random() < 0.5) for _ in range(60)]))
    out.append(("UDP payloads too; ICMP and ARP pass", 2,
                [_pkt(rng, "udp", bad=rng.random() < 0.5) for _ in range(30)] +
                [_pkt(rng, "icmp", bad=True) for _ in range(10)] + [Ether(**MAC) / ARP() for _ in range(5)]))
    out.append(("a mix", 2, [_pkt(rng, rng.choice(["tcp", "tcp", "udp", "icmp"]), bad=rng.random() < 0.3,
                                  ip_options=rng.random() < 0.2, tcp_options=rng.random() < 0.3)
                             for _ in range(150)]))
    return out


def _rates(*nfs):
    """mgr.rates()-shaped rates of a chain: nfs are (name, rx, tx, drop, load), in chain order."""
    return {"time": 0.0, "interval": 1.0, "ports": {}, "pool": {},
            "nfs": {i: {"name": n, "service": i + 1, "rx": float(rx), "tx": float(tx), "drop": float(d),
                        "load": load, "queued": int(load * 4096), "state": "running"}
                    for i, (n, rx, tx, d, load) in enumerate(nfs)}}


# rates seen on the 2-core VM: the lab's chain, the slow NF elsewhere, replicas
SCENARIOS = [
    ("dpi", _rates(("gen", 0, 1829, 0, 0.0), ("hdr", 1829, 851, 284, 1.0), ("dpi", 851, 851, 978, 1.0),
                   ("tally", 851, 851, 0, 0.0))),
    ("nat", _rates(("gen", 0, 2400, 0, 0.0), ("fw", 2400, 2400, 0, 0.01), ("nat", 2400, 1210, 1190, 1.0),
                   ("mon", 1210, 1210, 0, 0.0), ("sink", 1210, 0, 1210, 0.0))),
    ("log", _rates(("gen", 0, 900, 0, 0.0), ("a", 900, 900, 35, 1.0), ("b", 900, 900, 12, 1.0),
                   ("log", 900, 900, 620, 1.0))),
]


def _timing_packets():
    import random
    rng = random.Random(404)
    return [bytes(_pkt(rng, rng.choice(["tcp", "udp"]), bad=rng.random() < 0.3)) for _ in range(300)]


TIMED = _timing_packets()
# what the sandbox computes with the notebook's objects; the checks below
# judge only these answers (plain data), in the grader
PROBES = {"bottleneck": ("call", "find_bottleneck", [(r,) for _, r in SCENARIOS])}


def _finds(outputs):
    got = probe_value(outputs, "bottleneck")
    wrong = ["%s for the chain %s (the slow NF: %s)" % (g, " -> ".join(n["name"] for n in r["nfs"].values()), want)
             for (want, r), g in zip(SCENARIOS, got) if g != want]
    if len(got) != len(SCENARIOS):
        return "find_bottleneck gave %d answers for %d chains" % (len(got), len(SCENARIOS))
    return "find_bottleneck names " + "; ".join(wrong) if wrong else None


_slow = []


def _faster(outputs):
    fast = probe_value(outputs, "nf_cpu_per_packet")      # the grader's measure of the NF over the cases
    if isinstance(fast, bool) or not isinstance(fast, (int, float)) or not fast > 0:
        return "no CPU time measured for dpi_fast"
    if not _slow:        # the method dpi_slow uses, timed here (the grader's own code), in this thread's CPU time
        views = [memoryview(r) for r in TIMED]
        t = time.thread_time()
        for v in views:
            inspect_slow(v)
        _slow.append((time.thread_time() - t) / len(views))
    slow = _slow[0]
    if fast * MIN_SPEEDUP > slow:
        return "dpi_fast takes %.1f us of CPU per packet, dpi_slow's method %.1f us: %.1fx, not %gx" % (
            fast * 1e6, slow * 1e6, slow / fast, MIN_SPEEDUP)
    return None


CHECKS = [("find_bottleneck names the slow NF of three chains", 4, _finds),
          ("dpi_fast needs at most a third of dpi_slow's CPU per packet", 3, _faster)]
