"""Hidden tests of lab 03 (a stateful NF: a SYN-flood detector): seeded TCP
traffic in a fixed order, and where each packet must come out.  The
reference replays the traffic through its own model of the rules, written
with scapy, apart from the students' byte-level code."""
import ipaddress

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from onvm import ToPort

NF = "guard"
PORTS = 2
CHAIN = [1, ToPort(1)]
LIMIT = 8                      # half-open connections a source may have
MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
SERVER = "203.0.113.80"


def reference(pkts):
    """Port 1 (passed) or None (dropped) for each packet, in order."""
    half_open, out = {}, []
    for p in pkts:
        p = Ether(bytes(p))
        if IP not in p or TCP not in p:
            out.append(1)
            continue
        src, flags = p[IP].src, int(p[TCP].flags)
        flow = (p[IP].dst, p[TCP].sport, p[TCP].dport)
        mine = half_open.setdefault(src, set())
        if flags & 0x02 and not flags & 0x10:               # SYN
            if flow not in mine and len(mine) >= LIMIT:
                out.append(None)
                continue
            mine.add(flow)
        elif flags & 0x04 or flags & 0x10:                  # RST, or ACK: the flow is no longer half-open
            mine.discard(flow)
        out.append(1)
    return out


def _ip(rng, net):
    n = ipaddress.ip_network(net)
    return str(n[rng.randrange(1, n.num_addresses - 1)])


def _tcp(rng, src, sport, flags, dport=80, options=False, payload=b""):
    ip = IP(src=src, dst=SERVER, id=rng.randrange(65536), ttl=rng.randrange(30, 65))
    if options:
        ip.options = [b"\x01" * 4 * rng.randrange(1, 6)]
    return Ether(**MAC) / ip / TCP(sport=sport, dport=dport, flags=flags, seq=rng.randrange(1 << 32)) / payload


def _client(rng, src, n, in_flight=1, options=0.0):
    """n connections from src, at most in_flight open at once: SYN, ACK, data, FIN."""
    pkts, open_ = [], []
    for _ in range(n):
        sport = rng.randrange(1024, 65535)
        pkts.append(_tcp(rng, src, sport, "S", options=rng.random() < options))
        open_.append(sport)
        if len(open_) >= in_flight:
            s = open_.pop(rng.randrange(len(open_)))
            pkts += [_tcp(rng, src, s, "A"), _tcp(rng, src, s, "PA", payload=b"GET / HTTP/1.0\r\n\r\n"),
                     _tcp(rng, src, s, "FA")]
    for s in open_:
        pkts.append(_tcp(rng, src, s, "A"))
    return pkts


def _flood(rng, src, n, options=0.0):
    return [_tcp(rng, src, rng.randrange(1024, 65535), "S", options=rng.random() < options) for _ in range(n)]


def _interleave(rng, *streams):
    """The streams merged at random, each in its own order."""
    streams = [list(s) for s in streams if s]
    out = []
    while streams:
        s = rng.choice(streams)
        out.append(s.pop(0))
        if not s:
            streams.remove(s)
    return out


def cases(rng):
    client = lambda: _ip(rng, "198.51.100.0/24")           # noqa: E731
    attacker = lambda: _ip(rng, "192.0.2.0/24")            # noqa: E731
    out = []
    out.append(("clients that complete their handshakes pass", 2,
                _interleave(rng, _client(rng, client(), 30, in_flight=4), _client(rng, client(), 30, in_flight=8))))
    out.append(("a flood: a source's first 8 SYNs pass, the rest are dropped", 3, _flood(rng, attacker(), 40)))
    out.append(("sources are counted apart", 2,
                _interleave(rng, *[_flood(rng, attacker(), 12) for _ in range(5)], _client(rng, client(), 20, 3))))
    src = attacker()
    first = _flood(rng, src, 8)
    acks = [_tcp(rng, src, p[TCP].sport, "A") for p in first[:3]]
    out.append(("a completed handshake frees a slot", 2, first + acks + _flood(rng, src, 6)))
    src = attacker()
    first = _flood(rng, src, 8)
    again = [_tcp(rng, src, first[i][TCP].sport, "S") for i in (0, 1)]       # retransmitted SYNs
    rsts = [_tcp(rng, src, p[TCP].sport, "R") for p in first[2:4]]
    out.append(("an RST frees a slot; a repeated SYN is not counted twice", 2,
                first + again + _flood(rng, src, 1) + rsts + _flood(rng, src, 4)))
    other = [Ether(**MAC) / IP(src=attacker(), dst=SERVER) / UDP(dport=53) for _ in range(10)] + \
            [Ether(**MAC) / IP(src=attacker(), dst=SERVER) / ICMP() for _ in range(10)] + \
            [Ether(**MAC) / ARP(psrc=attacker()) for _ in range(5)]
    src = attacker()
    out.append(("what is not TCP passes untouched", 1,
                _interleave(rng, _flood(rng, src, 20), [p for p in other if IP in p and p[IP].src != src] +
                            [p for p in other if IP not in p])))
    out.append(("a mix, with IP options", 3,
                _interleave(rng, *[_flood(rng, attacker(), rng.randrange(4, 20), options=0.3) for _ in range(4)],
                            *[_client(rng, client(), 15, rng.randrange(1, 9), options=0.3) for _ in range(3)])))
    return out
