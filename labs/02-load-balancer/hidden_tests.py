"""Hidden tests of lab 02 (a load balancer with flow affinity): seeded flows,
and a judge instead of a per-packet reference, since any good hash is a
right answer: every packet of a flow must leave by the port its flow's
other packets took, packets that are not IPv4 are dropped, and over many
flows each backend gets its share of flows within TOLERANCE."""
import collections
import ipaddress
import random

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from onvm import ToPort
from onvm.face.grading import probe_value

NF = "lb"
PORTS = 5                      # 0 in; the backends are ports 1..4
BACKENDS = (1, 2, 3, 4)
CHAIN = [1, ToPort(1)]
TOLERANCE = 0.4                # each backend's flows within 40% of a fair share...
BALANCED_FROM = 200            # ...in a case of at least this many flows
MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def flow_of(p):
    """The 5-tuple of a packet (ports 0 for protocols without), None if not IPv4."""
    p = Ether(bytes(p))
    if IP not in p:
        return None
    l4 = p[TCP] if TCP in p else p[UDP] if UDP in p else None
    return (p[IP].src, p[IP].dst, p[IP].proto, l4.sport if l4 else 0, l4.dport if l4 else 0)


def judge(pkts, outs):
    flows = [flow_of(p) for p in pkts]
    wrong = []
    ports = collections.defaultdict(collections.Counter)
    for i, (f, out) in enumerate(zip(flows, outs)):
        if f is None:
            if out is not None:
                wrong.append((i, "dropped (not IPv4)"))
        elif out not in BACKENDS:
            wrong.append((i, "a backend port (1-4)"))
        else:
            ports[f][out] += 1
    home = {f: c.most_common(1)[0][0] for f, c in ports.items()}
    for i, (f, out) in enumerate(zip(flows, outs)):
        if f in home and out in BACKENDS and out != home[f]:
            wrong.append((i, "port %d, with the other %d packet(s) of its flow" % (home[f], ports[f][home[f]])))
    problem = None
    n = len(home)
    if n >= BALANCED_FROM:
        load = collections.Counter(home.values())
        fair = n / len(BACKENDS)
        if any(abs(load[b] - fair) > TOLERANCE * fair for b in BACKENDS):
            problem = "flows per backend: %s; each should be within %d%% of %g" % (
                ", ".join("port %d %d" % (b, load[b]) for b in BACKENDS), TOLERANCE * 100, fair)
    return sorted(wrong), problem


def _ip(rng, net="198.51.100.0/24"):
    n = ipaddress.ip_network(net)
    return str(n[rng.randrange(1, n.num_addresses - 1)])


def _flow(rng, proto=None):
    proto = proto or rng.choice(["tcp", "udp"])
    return (_ip(rng, "198.18.0.0/15"), _ip(rng, "203.0.113.0/24"), proto, rng.randrange(1024, 65535),
            rng.choice([53, 80, 443, 8080, rng.randrange(1, 65535)]))


def _pkt(rng, flow, options=False):
    """One packet of flow: its TTL, IP id, payload and flags vary, not its 5-tuple."""
    src, dst, proto, sport, dport = flow
    ip = IP(src=src, dst=dst, ttl=rng.randrange(2, 65), id=rng.randrange(65536))
    if options:
        ip.options = [b"\x01" * 4 * rng.randrange(1, 6)]
    l4 = {"tcp": lambda: TCP(sport=sport, dport=dport, flags=rng.choice(["S", "A", "PA", "FA"]),
                             seq=rng.randrange(1 << 32)),
          "udp": lambda: UDP(sport=sport, dport=dport),
          "icmp": lambda: ICMP(type=8, id=rng.randrange(65536), seq=rng.randrange(100))}[proto]()
    return Ether(**MAC) / ip / l4 / bytes(rng.randrange(256) for _ in range(rng.randrange(4, 60)))


def _mixed(rng, flows, per_flow, options=0.0):
    pkts = [_pkt(rng, f, options=rng.random() < options) for f in flows for _ in range(per_flow)]
    rng.shuffle(pkts)                                  # flows interleave, as on a real link
    return pkts


def cases(rng):
    out = []
    out.append(("every packet of a flow goes to one backend", 3,
                _mixed(rng, [_flow(rng) for _ in range(40)], 6)))
    out.append(("400 flows are balanced over the four backends", 3,
                _mixed(rng, [_flow(rng) for _ in range(400)], 1)))
    scan_src, scan_dst = _ip(rng, "198.18.0.0/15"), _ip(rng, "203.0.113.0/24")
    out.append(("a port scan (one host pair, 240 ports) is spread too", 2,
                _mixed(rng, [(scan_src, scan_dst, "tcp", 40000, d) for d in range(1, 241)], 1)))
    out.append(("UDP and ICMP flows keep their backend", 2,
                _mixed(rng, [_flow(rng, rng.choice(["udp", "icmp"])) for _ in range(40)], 4)))
    out.append(("IP options do not move a flow", 2,
                _mixed(rng, [_flow(rng) for _ in range(30)], 4, options=0.5)))
    out.append(("not IPv4 is dropped", 1,
                [Ether(**MAC) / ARP(psrc=_ip(rng)) for _ in range(5)] +
                [Ether(**MAC) / IPv6() / UDP(dport=53) for _ in range(5)] +
                _mixed(rng, [_flow(rng) for _ in range(5)], 1)))
    return out


_KEYS = [bytes(_r.randrange(256) for _ in range(13)) for _r in [random.Random(11)] for _ in range(200)]
# the sandbox calls pick on these keys in the notebook's process and in two
# fresh ones with other PYTHONHASHSEEDs; the grader sees only the answers
PROBES = {"pick": ("call_in_processes", "pick", [(k, len(BACKENDS)) for k in _KEYS])}


def _stable(outputs):
    """pick gives the same backends in two other Python processes (other
    PYTHONHASHSEEDs) as in the notebook's: a restarted balancer keeps the flows."""
    runs = probe_value(outputs, "pick")
    if not isinstance(runs, list) or len(runs) != 3 or any(not isinstance(r, list) or len(r) != len(_KEYS)
                                                           for r in runs):
        return "pick gave no answer for every key"
    if any(b not in range(len(BACKENDS)) for b in runs[0]):
        return "pick returned %r for 4 backends; it must return 0..3" % next(
            b for b in runs[0] if b not in range(len(BACKENDS)))
    if runs[1] != runs[0] or runs[2] != runs[0]:
        return ("pick gives other backends in another Python process (hash() is salted per process, "
                "PYTHONHASHSEED): a restarted balancer would move flows; use a hash with a fixed "
                "definition, such as zlib.crc32")
    return None


CHECKS = [("pick is the same in every process", 2, _stable)]
