"""Frames for testing the data path, shared by tests/ and benchmarks/.

- flow(): one direction of a flow (IPv4/IPv6, TCP/UDP/SCTP/ICMP/other, VLAN
  stacks, IPv6 extension headers), pair(): both directions, fragments().
- Fuzzer(seed).frames(n): reproducible frames of 14..2048 bytes: random
  bytes, and scapy templates (built once) truncated, padded and with header
  fields set to nonsense.
- reader: a Python NF that reads the packet view of every frame and routes
  it by a checksum of its bytes, route(frame) says where that sends it.
- run_fuzz(): inject, capture and account for every frame; account(): the
  one place that knows which counters add up to what."""
import collections
import random
import time
import zlib

import onvm

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
TPIDS = (0x8100, 0x88a8, 0x9100)


# ---- flows in both directions ---------------------------------------------------

def _l4(proto, sport, dport, v6):
    from scapy.layers.inet import GRE, ICMP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest
    from scapy.layers.sctp import SCTP
    if proto == "tcp":
        return TCP(sport=sport, dport=dport, flags="PA", seq=1)
    if proto == "udp":
        return UDP(sport=sport, dport=dport)
    if proto == "sctp":
        return SCTP(sport=sport, dport=dport)
    if proto == "icmp":
        return ICMPv6EchoRequest(id=sport, seq=dport) if v6 else ICMP(id=sport, seq=dport)
    if proto == "gre":
        return GRE()
    raise ValueError("unknown protocol %r" % proto)


def _ext(names):
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
    layers = {"hbh": IPv6ExtHdrHopByHop, "rt": IPv6ExtHdrRouting, "dst": IPv6ExtHdrDestOpt}
    out = None
    for n in names:
        layer = layers[n]()
        out = layer if out is None else out / layer
    return out


def _l2(src_mac, dst_mac, vlans, inner):
    """Ether (+ 802.1Q tags, outer first, as (tpid, vid)) / inner."""
    from scapy.layers.l2 import Dot1Q, Ether
    if not vlans:
        return Ether(src=src_mac, dst=dst_mac) / inner
    p = Ether(src=src_mac, dst=dst_mac, type=vlans[0][0])
    for i, (_, vid) in enumerate(vlans):
        nxt = vlans[i + 1][0] if i + 1 < len(vlans) else None
        p = p / (Dot1Q(vlan=vid, type=nxt) if nxt else Dot1Q(vlan=vid))
    return p / inner


def flow(ip="ipv4", proto="udp", src=None, dst=None, sport=1024, dport=80, vlans=(), ext=(),
         payload=b"onvm-flow-hash", src_mac=MAC_A, dst_mac=MAC_B, scapy=False):
    """One packet of a flow, as bytes (or the scapy packet with scapy=True).

    param ip: "ipv4" or "ipv6"
    param proto: "tcp", "udp", "sctp", "icmp" (ICMPv6 over IPv6: ports become
        the echo id and seq), "gre"
    param vlans: 802.1Q tags outer first, e.g. [(0x88a8, 10), (0x8100, 20)]
    param ext: IPv6 extension headers in order: "hbh", "rt", "dst"
    """
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    v6 = ip == "ipv6"
    src = src or ("2001:db8::1" if v6 else "198.51.100.1")
    dst = dst or ("2001:db8:ffff::2" if v6 else "203.0.113.9")
    l3 = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    if ext:
        l3 = l3 / _ext(ext)
    p = _l2(src_mac, dst_mac, list(vlans), l3 / _l4(proto, sport, dport, v6) / payload)
    return p if scapy else bytes(p)


def pair(**kw):
    """Both directions of a flow: (a -> b, b -> a), MACs, addresses and
    ports swapped (for ICMP, the echo id/seq are left as they are)."""
    fwd = flow(**kw)
    rev = dict(kw)
    v6 = kw.get("ip") == "ipv6"
    rev["src"] = kw.get("dst") or ("2001:db8:ffff::2" if v6 else "203.0.113.9")
    rev["dst"] = kw.get("src") or ("2001:db8::1" if v6 else "198.51.100.1")
    rev["src_mac"], rev["dst_mac"] = kw.get("dst_mac", MAC_B), kw.get("src_mac", MAC_A)
    if kw.get("proto", "udp") not in ("icmp", "gre"):
        rev["sport"], rev["dport"] = kw.get("dport", 80), kw.get("sport", 1024)
    return fwd, flow(**rev)


def fragments(ip="ipv4", size=400, payload_len=1400, vlans=(), src=None, dst=None, sport=1024, dport=80,
              src_mac=MAC_A, dst_mac=MAC_B):
    """The fragments of one UDP datagram, first fragment first, as bytes
    (IPv6: a Fragment header after the fixed header)."""
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
    payload = bytes(range(256)) * (payload_len // 256 + 1)
    if ip == "ipv6":
        dgram = IPv6(src=src or "2001:db8::1", dst=dst or "2001:db8:ffff::2") / IPv6ExtHdrFragment(id=7) / \
            UDP(sport=sport, dport=dport) / payload[:payload_len]
        frags = fragment6(dgram, size)
    else:
        dgram = IP(src=src or "198.51.100.1", dst=dst or "203.0.113.9", id=7) / \
            UDP(sport=sport, dport=dport) / payload[:payload_len]
        frags = fragment(dgram, fragsize=size)
    return [bytes(_l2(src_mac, dst_mac, list(vlans), f)) for f in frags]


# ---- the fuzzer ---------------------------------------------------------------

class Template:
    """A well-formed frame and where its headers start (for mutations)."""
    __slots__ = ("raw", "l3", "ip", "l4")

    def __init__(self, raw, l3, ip, l4):
        self.raw, self.l3, self.ip, self.l4 = raw, l3, ip, l4


def _templates():
    """Untagged frames: (bytes, IP version or None, L4 offset from L3 or None)."""
    from scapy.layers.inet import IP, IPOption_NOP, IPOption_Router_Alert, IPOption_RR
    from scapy.layers.l2 import ARP, LLC, Ether
    out = []
    for ip in ("ipv4", "ipv6"):
        v6 = ip == "ipv6"
        for proto in ("tcp", "udp", "sctp", "icmp", "gre"):
            for plen in (0, 6, 200, 1400):
                p = flow(ip=ip, proto=proto, payload=bytes(plen), scapy=True)
                out.append((bytes(p), 6 if v6 else 4, 40 if v6 else 20))
        for ext in (("hbh",), ("rt", "dst"), ("hbh", "rt", "dst")) if v6 else ():
            for proto in ("tcp", "udp"):
                out.append((flow(ip=ip, proto=proto, ext=ext, payload=bytes(40)), 6, 40 + 8 * len(ext)))
        for f in fragments(ip=ip, size=200, payload_len=600):
            out.append((f, 6 if v6 else 4, 48 if v6 else 20))
    for opts in ([IPOption_NOP(), IPOption_Router_Alert()], [IPOption_RR(routers=["192.0.2.1"] * 3)],
                 [IPOption_NOP()] * 40):  # 40 NOPs: the largest header, IHL 15
        for proto in ("tcp", "udp"):
            p = Ether(src=MAC_A, dst=MAC_B) / IP(src="198.51.100.1", dst="203.0.113.9", options=opts) / \
                _l4(proto, 1, 2, False) / bytes(30)
            raw = bytes(p)
            out.append((raw, 4, (raw[14] & 0xf) * 4))
    # An IPv6 packet with AH (51) before TCP, which scapy does not build here.
    p = bytearray(flow(ip="ipv6", proto="tcp", payload=bytes(20)))
    ah = bytes([6, 4, 0, 0]) + bytes(20)           # next TCP, length (4+2)*4 = 24
    p[20] = 51
    p[18:20] = (int.from_bytes(p[18:20], "big") + len(ah)).to_bytes(2, "big")
    out.append((bytes(p[:54]) + ah + bytes(p[54:]), 6, 40 + len(ah)))
    out.append((bytes(Ether(src=MAC_A, dst=MAC_B) / ARP(op=2, hwsrc=MAC_A, hwdst=MAC_B)), None, None))
    out.append((bytes(Ether(src=MAC_A, dst=MAC_B, type=0x88b5) / bytes(50)), None, None))
    out.append((bytes(Ether(src=MAC_A, dst=MAC_B) / LLC() / bytes(40)), None, None))
    return out


def _with_tags(raw, tags):
    """raw (an untagged Ethernet frame) with 802.1Q tags inserted."""
    head, inner_type = raw[:12], raw[12:14]
    types = [t.to_bytes(2, "big") for t, _ in tags] + [inner_type]
    tagged = head + types[0]
    for i, (_, vid) in enumerate(tags):
        tagged += vid.to_bytes(2, "big") + types[i + 1]
    return tagged + raw[14:]


# Offsets in the IPv4 / IPv6 header worth breaking, and how (size in bytes).
V4_FIELDS = ((0, 1), (2, 2), (6, 2), (9, 1))          # version/IHL, total length, flags/offset, protocol
V6_FIELDS = ((0, 1), (4, 2), (6, 1))                  # version, payload length, next header
NEXT_HEADERS = (0, 1, 6, 17, 43, 44, 50, 51, 58, 60, 132, 135, 255)


class Fuzzer:
    """Reproducible frames for the data path: Fuzzer(seed).frames(n).

    Kinds, by weight: random bytes of 14..2048; an Ethernet header with an
    IP or VLAN EtherType and random bytes; a template (IPv4/IPv6 over
    TCP/UDP/SCTP/ICMP/GRE, IP options, IPv6 extension headers, fragments,
    ARP, raw, LLC; untagged, one or two tags) with fresh addresses and
    ports, then as is, truncated, padded with random bytes (so the IP
    length is wrong), or with header fields set at random."""

    KINDS = ("random", "l2", "template", "truncated", "padded", "corrupt")
    WEIGHTS = (15, 10, 20, 20, 10, 25)
    TAGS = ((), ((0x8100, 5),), ((0x88a8, 100), (0x8100, 200)), ((0x9100, 7), (0x8100, 8)),
            ((0x8100, 1), (0x8100, 2)))

    def __init__(self, seed=0):
        self.rng = random.Random(seed)
        self.templates = []
        for raw, ip, l4 in _templates():
            for tags in self.TAGS:
                l3 = 14 + 4 * len(tags)
                self.templates.append(Template(_with_tags(raw, tags), l3, ip, None if l4 is None else l3 + l4))
        self.kinds = self.rng.choices(range(len(self.KINDS)), self.WEIGHTS, k=4096)

    def frames(self, n):
        """n frames (bytes, 14..2048 long)."""
        rng, kinds, make = self.rng, self.kinds, (self._random, self._l2, self._template, self._truncated,
                                                  self._padded, self._corrupt)
        return [make[kinds[rng.getrandbits(12)]]() for _ in range(n)]

    def _random(self):
        rng = self.rng
        n = 14 + rng.getrandbits(11) % 2035 if rng.getrandbits(1) else 14 + rng.getrandbits(7)
        return rng.randbytes(n)

    def _l2(self):
        rng = self.rng
        types = (0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x0806)
        head = rng.randbytes(12) + rng.choice(types).to_bytes(2, "big")
        if rng.getrandbits(1):
            head += rng.randbytes(2) + rng.choice(types).to_bytes(2, "big")
        return head + rng.randbytes(rng.getrandbits(8) if rng.getrandbits(3) else rng.randrange(2048 - len(head)))

    def _fresh(self):
        """A template with random addresses and ports (so flows differ)."""
        rng = self.rng
        t = self.templates[rng.randrange(len(self.templates))]
        b = bytearray(t.raw)
        if t.ip == 4:
            b[t.l3 + 12:t.l3 + 20] = rng.randbytes(8)
        elif t.ip == 6:
            b[t.l3 + 8:t.l3 + 40] = rng.randbytes(32)
        else:
            b[0:12] = rng.randbytes(12)
        if t.l4 is not None and t.l4 + 4 <= len(b):
            b[t.l4:t.l4 + 4] = rng.randbytes(4)
        return t, b

    def _template(self):
        return bytes(self._fresh()[1])

    def _truncated(self):
        t, b = self._fresh()
        return bytes(b[:14 + self.rng.randrange(len(b) - 13)])

    def _padded(self):
        t, b = self._fresh()
        return bytes(b) + self.rng.randbytes(self.rng.randrange(1, 2049 - len(b)))

    def _corrupt(self):
        rng = self.rng
        t, b = self._fresh()
        for _ in range(1 + rng.getrandbits(2)):
            what = rng.getrandbits(3)
            if t.ip is not None and what < 5:
                off, size = rng.choice(V4_FIELDS if t.ip == 4 else V6_FIELDS)
                if t.ip == 6 and off == 6 or t.ip == 4 and off == 9:
                    b[t.l3 + off] = rng.choice(NEXT_HEADERS)
                elif off == 0 and rng.getrandbits(1):      # keep the version, break IHL (or the reverse)
                    b[t.l3] = (b[t.l3] & 0xf0) | rng.getrandbits(4)
                else:
                    b[t.l3 + off:t.l3 + off + size] = rng.randbytes(size)
            elif t.l4 is not None and what < 7 and t.l4 + 14 <= len(b):
                # TCP data offset / UDP length / an extension header length byte
                k = rng.choice((1, 4, 5, 12, 13))
                b[t.l4 + k] = rng.getrandbits(8)
            elif t.l3 > 14:
                b[t.l3 - 2:t.l3] = rng.choice((0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x1234)).to_bytes(2, "big")
            else:
                b[12:14] = rng.choice((0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100)).to_bytes(2, "big")
        return bytes(b)


# ---- the fuzz deployment: a reader NF, native NFs, chains -----------------------

# Where the reader sends a frame: ROUTES[crc32(frame) % 32], and where that
# ends (FATES, the names account() uses).  Port 7 does not exist and nobody
# provides service 9: both are refused.
ROUTES = [onvm.NEXT] * 20 + [onvm.ToPort(0)] * 2 + [
    onvm.ToPort(1), onvm.ToService(4), onvm.ToService(3), onvm.ToService(5), onvm.ToService(9),
    onvm.DROP, onvm.ToService(2), onvm.ToPort(7), onvm.NEXT, onvm.NEXT]
FATES = ["port1"] * 20 + ["port0"] * 2 + [
    "port1", "port1", "nf_drop", "nf_drop", "refused", "nf_drop", "port1", "refused", "port1", "port1"]

MAIN_CHAIN = [1, 2, 4, onvm.ToPort(1)]
# (name, default chain, share of each round, what happens to every frame or
# None: the reader decides).
PHASES = (("main", MAIN_CHAIN, 0.80, None),
          ("drop", [3], 0.05, "nf_drop"),
          ("sink", [5], 0.05, "nf_drop"),
          ("chain_end", [2, 4], 0.05, "chain_end"),     # count's NEXT runs past the end
          ("no_service", [9], 0.05, "port_rx_drop"))    # the RX thread finds nobody: refused

_scapy_loaded = False


@onvm.nf(service=1)
def reader(pkt):
    """Reads everything the packet view offers, checks it (a failed check
    raises, which the NF counts in "errors"), dissects one frame in 64 with
    scapy, and routes by a checksum of the bytes it read (see route())."""
    global _scapy_loaded
    data = bytes(pkt.data)
    n = pkt.len
    if len(data) != n or len(pkt) != n or pkt.data.nbytes != n or not 14 <= n <= 2048:
        raise AssertionError("packet view: %d bytes of data, len %d" % (len(data), n))
    if pkt.port != 0:
        raise AssertionError("arrival port %d; frames were injected on port 0" % pkt.port)
    if not 0 <= pkt.hash <= 0xffffffff:
        raise AssertionError("hash %r is not 32 bits" % pkt.hash)
    c = zlib.crc32(data)
    if c & 63 == 0:
        if not _scapy_loaded:   # so Ether() dissects down to L4
            import scapy.layers.inet  # noqa: E401,F401
            _scapy_loaded = True
        p = pkt.scapy()
        p.summary()
        if bytes(p.original) != data:
            raise AssertionError("scapy saw other bytes")
    return ROUTES[c & 31]


def route(frame):
    """What the reader does with frame: a FATES name."""
    return FATES[zlib.crc32(frame) & 31]


def deploy(mgr):
    """Launch the fuzz NFs: reader (service 1), forward x2 (2), drop (3),
    count (4), sink (5).  returns: the list of NFs."""
    nfs = [mgr.launch(reader, service=1)]
    nfs += mgr.launch(onvm.native("forward"), service=2, replicas=2)
    nfs.append(mgr.launch(onvm.native("drop"), service=3))
    nfs.append(mgr.launch(onvm.native("count"), service=4))
    nfs.append(mgr.launch(onvm.native("sink"), service=5))
    return nfs


# ---- accounting ------------------------------------------------------------------

# Drops that depend on load (full rings), not on the frame.
OVERFLOW = ("nf_rx_drop", "port_tx_drop", "recovered")


def account(stats, frames_in):
    """Where frames_in frames went, by the counters in stats (mgr.stats()).

    returns: {"in", "out": {port: tx}, "drops": {reason: n}, "missing",
    "capture_drop", "nf_tx_drop", "unbalanced": [NF names whose own counters
    do not add up]}; "missing" is in - out - drops: 0 once every frame is
    out of a port or dropped, negative if some drop is counted twice.

    Reasons: nf_drop (NF actions["drop"]: DROP, drop, sink, callback
    errors), refused and chain_end (NFs), nf_rx_drop (an NF's ring stayed
    full, whoever sent; NF tx_drop counts the same packets again from the
    sender's side, so it is reported, not added), recovered (freed after an
    NF died), port_rx_drop (the RX thread: no service, NEXT past the end;
    today's port "rx_drop" holds both), port_tx_drop (port queue full).
    capture_drop is not a data-path drop: the frame left the port."""
    nfs, ports = list(stats["nfs"].values()), list(stats["ports"].values())

    def nf_sum(key):
        return sum(n[key] for n in nfs)

    drops = {
        "nf_drop": sum(n["actions"]["drop"] for n in nfs),
        "refused": nf_sum("refused"),
        "chain_end": nf_sum("chain_end"),
        "steer_refused": nf_sum("steer_refused"),
        "hop_limit": nf_sum("hop_limit"),
        "nf_rx_drop": nf_sum("rx_drop"),
        "recovered": nf_sum("recovered"),
        # A port's rx_drop (the RX thread found the first NF's ring full) is
        # already in that NF's rx_drop (counted at the ring), so only the
        # port's refusals and chain ends add here.
        "port_rx_drop": sum(p["rx_refused"] + p["rx_chain_end"] for p in ports),
        "port_tx_drop": sum(p["tx_drop"] for p in ports),
    }
    out = {p: s["tx"] for p, s in stats["ports"].items()}
    unbalanced = [n["name"] for n in nfs
                  if n["rx"] != sum(n["actions"].values())
                  or n["rx"] - n["actions"]["drop"] != n["tx"] + n["tx_drop"] + n["refused"] + n["chain_end"]
                  + n["steer_refused"] + n["hop_limit"]]
    return {"in": frames_in, "out": out, "drops": drops,
            "missing": frames_in - sum(out.values()) - sum(drops.values()),
            "capture_drop": sum(p["capture_drop"] for p in ports),
            "nf_tx_drop": nf_sum("tx_drop"), "unbalanced": unbalanced}


# ---- the driver ----------------------------------------------------------------

def run_fuzz(mgr, n, seed=0, round_size=20000, pace=2048, settle_timeout=60.0, progress=None):
    """Send n fuzzed frames through mgr (set up by deploy()) in rounds of
    round_size, each round split over PHASES; after each phase, capture
    until every frame is accounted for and the pool is empty.  Frames go in
    `pace` at a time, each lot once the pool is empty again: a Python NF is
    slower than injection, and a lot that fits its ring (4096) is not lost
    to it overflowing, so nearly every frame gets its byte-exact check
    (what overflows anyway is counted, in nf_rx_drop).

    returns: {"frames", "out", "drops", "missing", "expected" (fates the
    routing predicts), "unexpected" (captured frames not byte-identical to
    a frame predicted for that port), "short" (predicted for a port, not
    seen there), "uncaptured" (left a port, neither captured nor counted
    in capture_drop), "crashed" (processes that died), "errors" (NF callback
    errors), "unbalanced", "capture_drop", "pool_in_use", "duration"}"""
    fz = Fuzzer(seed)
    t0 = time.monotonic()
    injected, unexpected, short, captured = 0, 0, 0, 0
    expected = collections.Counter()
    acc = None
    crashed = []
    while injected < n and not crashed:
        for _, chain, share, fate in PHASES:
            k = min(n - injected, max(1, int(round_size * share)))
            if k <= 0:
                break
            mgr.set_default_chain(chain)
            batch = fz.frames(k)
            fates = [fate or route(f) for f in batch]
            expected.update(fates)
            want = {p: collections.Counter(f for f, d in zip(batch, fates) if d == "port%d" % p) for p in (0, 1)}
            for i in range(0, k, pace):
                injected += mgr.inject(batch[i:i + pace], port=0)
                mgr.wait_idle(settle_timeout)
            got, acc = _settle(mgr, injected, settle_timeout)
            for p in (0, 1):
                captured += len(got[p])
                extra = collections.Counter(got[p]) - want[p]
                unexpected += sum(extra.values())
                short += max(0, sum(want[p].values()) - (len(got[p]) - sum(extra.values())))
            crashed = [nf.name for nf in mgr.launched if not nf.alive] + ([] if mgr.running else ["manager"])
            if progress:
                progress(injected, acc)
            if crashed or acc["missing"] or injected >= n:
                break
    stats = mgr.stats() if mgr.running else {"nfs": {}, "pool": {"in_use": -1}}
    return {"frames": injected, "out": acc["out"], "drops": acc["drops"], "missing": acc["missing"],
            "expected": dict(expected), "unexpected": unexpected, "short": short, "crashed": crashed,
            "errors": sum(s["errors"] for s in stats["nfs"].values()), "unbalanced": acc["unbalanced"],
            "uncaptured": sum(acc["out"].values()) - acc["capture_drop"] - captured,
            "capture_drop": acc["capture_drop"], "nf_tx_drop": acc["nf_tx_drop"],
            "pool_in_use": stats["pool"]["in_use"], "duration": time.monotonic() - t0}


def _settle(mgr, injected, timeout):
    """Capture ports 0 and 1 until every injected frame is out or dropped,
    all that left is captured (or lost to the capture buffer), and the pool
    is empty.  returns: ({port: [frames]}, account())"""
    got = {0: [], 1: []}
    deadline = time.monotonic() + timeout
    while True:
        for p in (0, 1):
            got[p] += mgr.capture(port=p, raw=True)
        acc = account(mgr.stats(), injected)
        if acc["missing"] == 0 and mgr.stats()["pool"]["in_use"] == 0:
            # the last frames may have left the port since we captured
            for p in (0, 1):
                got[p] += mgr.capture(port=p, raw=True)
            return got, acc
        if time.monotonic() > deadline or not mgr.running:
            return got, acc
        time.sleep(0.005)
