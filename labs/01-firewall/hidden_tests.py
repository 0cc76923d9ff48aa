"""Hidden tests of lab 01 (stateless firewall): seeded traffic, and where each
packet must come out.  The reference below is written with scapy, apart
from the students' byte-level code, on purpose."""
import ipaddress

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from onvm import ToPort

NF = "firewall"
PORTS = 3                      # 0 in, 1 out, 2 the inspection port
CHAIN = [1, ToPort(1)]

RULES = [("drop", "tcp", 23, None), ("drop", None, None, "10.66.0.0/16"), ("inspect", "tcp", 22, None),
         ("allow", "udp", 53, None), ("allow", "icmp", None, None), ("allow", "tcp", 80, None),
         ("allow", "tcp", 443, None)]
OUTCOME = {"allow": 1, "inspect": 2, "drop": None}
MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def decide(p):
    if IP not in p:
        return None
    ip = p[IP]
    proto = {6: "tcp", 17: "udp", 1: "icmp"}.get(ip.proto)
    dport = p[TCP].dport if TCP in p else p[UDP].dport if UDP in p else None
    for action, r_proto, r_dport, r_net in RULES:
        if r_proto is not None and r_proto != proto:
            continue
        if r_dport is not None and r_dport != dport:
            continue
        if r_net is not None and ipaddress.ip_address(ip.src) not in ipaddress.ip_network(r_net):
            continue
        return OUTCOME[action]
    return None


def reference(pkts):
    return [decide(Ether(bytes(p))) for p in pkts]


def _ip(rng, net="198.51.100.0/24"):
    n = ipaddress.ip_network(net)
    return str(n[rng.randrange(1, n.num_addresses - 1)])


def _pkt(rng, l4, src=None, options=False):
    ip = IP(src=src or _ip(rng), dst=_ip(rng, "203.0.113.0/24"), ttl=rng.randrange(2, 65))
    if options:
        ip.options = [b"\x01" * 4 * rng.randrange(1, 6)]      # NOPs: the header grows by 4..20 bytes
    return Ether(**MAC) / ip / l4 / bytes(rng.randrange(256) for _ in range(rng.randrange(4, 40)))


def cases(rng):
    tcp = lambda d: TCP(sport=rng.randrange(1024, 65535), dport=d, flags="S")     # noqa: E731
    udp = lambda d: UDP(sport=rng.randrange(1024, 65535), dport=d)                # noqa: E731
    out = []
    out.append(("telnet is dropped, web passes", 2,
                [_pkt(rng, tcp(rng.choice([23, 80, 443]))) for _ in range(30)]))
    out.append(("the banned network 10.66.0.0/16 is dropped", 2,
                [_pkt(rng, rng.choice([tcp(80), udp(53), ICMP()]), src=_ip(rng, rng.choice(["10.66.0.0/16", "10.67.0.0/16"])))
                 for _ in range(30)]))
    out.append(("ssh goes to the inspection port", 2,
                [_pkt(rng, rng.choice([tcp(22), tcp(80), udp(22)])) for _ in range(30)]))
    out.append(("DNS and ping pass, other UDP is dropped", 2,
                [_pkt(rng, rng.choice([udp(53), udp(rng.randrange(1, 65535)), ICMP(type=8)])) for _ in range(30)]))
    out.append(("IP headers with options", 2,
                [_pkt(rng, rng.choice([tcp(23), tcp(22), tcp(80), udp(53), udp(9)]), options=True) for _ in range(30)]))
    out.append(("not IPv4 is dropped", 1,
                [Ether(**MAC) / ARP(psrc=_ip(rng)) for _ in range(5)] +
                [Ether(**MAC) / IPv6() / UDP(dport=53) for _ in range(5)] + [_pkt(rng, udp(53)) for _ in range(5)]))
    mix = []
    for _ in range(120):
        src = _ip(rng, "10.66.0.0/16") if rng.random() < 0.1 else None
        l4 = rng.choice([tcp(rng.choice([22, 23, 80, 443, 8080])), udp(rng.choice([53, 123, 9])), ICMP()])
        mix.append(_pkt(rng, l4, src=src, options=rng.random() < 0.2))
    out.append(("a mix of everything", 3, mix))
    return out
