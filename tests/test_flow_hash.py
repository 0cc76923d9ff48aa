"""The flow hash the RX thread gives every packet, seen from an NF: both
directions of a flow hash alike, for every kind of frame, and distinct
flows mostly differ.  A Python NF writes pkt.hash into each packet's last
4 bytes; the test reads it back from the capture."""
import os
import random

import pytest

import onvm
from frames import fragments, pair

V4, V6 = "ipv4", "ipv6"


@onvm.nf(service=1)
def stamp_hash(pkt):
    pkt.data[-4:] = pkt.hash.to_bytes(4, "big")
    return onvm.NEXT


@pytest.fixture(scope="module")
def hmgr():
    """One manager for the module: stamp_hash, then out of port 1."""
    with onvm.Manager(name="fh%d" % os.getpid()) as m:
        m.launch(stamp_hash)
        m.set_default_chain([1, onvm.ToPort(1)])
        yield m


def hashes(mgr, frames):
    """The hash of each frame, in order (one NF instance keeps the order)."""
    assert mgr.inject(frames, port=0) == len(frames)
    out = mgr.capture(port=1, count=len(frames), timeout=30, raw=True)
    assert len(out) == len(frames)
    assert [o[:-4] for o in out] == [f[:-4] for f in frames], "the NF saw other packets"
    return [int.from_bytes(o[-4:], "big") for o in out]


def check_pairs(mgr, pairs, min_distinct=None):
    """Both directions of each pair hash alike; the pairs (distinct flows)
    mostly differ.  returns: the hash of each flow."""
    h = hashes(mgr, [f for p in pairs for f in p])
    fwd, rev = h[0::2], h[1::2]
    split = [i for i, (a, b) in enumerate(zip(fwd, rev)) if a != b]
    assert not split, "directions differ for flows %s (%#x != %#x)" % (split[:5], fwd[split[0]], rev[split[0]])
    distinct = len(set(fwd))
    want = len(pairs) - 2 if min_distinct is None else min_distinct
    assert distinct >= want, "only %d distinct hashes for %d flows" % (distinct, len(pairs))
    return fwd


def addr(ip, i, side):
    """The i-th address of one side of a flow."""
    if ip == V6:
        return "2001:db8:%x::%x" % (side, i + 1)
    return "198.51.%d.%d" % (100 + side, i + 1)


@pytest.mark.parametrize("ip", [V4, V6])
@pytest.mark.parametrize("proto", ["tcp", "udp", "sctp"])
def test_ports_flows_hash_alike_both_ways_and_differ_by_port(hmgr, ip, proto):
    pairs = [pair(ip=ip, proto=proto, sport=1000 + i, dport=80 + i % 3) for i in range(32)]
    check_pairs(hmgr, pairs)


@pytest.mark.parametrize("ip", [V4, V6])
@pytest.mark.parametrize("proto", ["icmp", "gre"])
def test_portless_protocols_hash_on_addresses(hmgr, ip, proto):
    pairs = [pair(ip=ip, proto=proto, src=addr(ip, i, 0), dst=addr(ip, i, 1), sport=i, dport=7)
             for i in range(32)]
    h = check_pairs(hmgr, pairs)
    # Echo id and seq are not ports: other values, same hash.
    again = check_pairs(hmgr, [pair(ip=ip, proto=proto, src=addr(ip, i, 0), dst=addr(ip, i, 1), sport=999,
                                    dport=3) for i in range(32)])
    assert again == h


@pytest.mark.parametrize("ip", [V4, V6])
def test_addresses_ordered_as_a_whole_and_ties_broken_by_port(hmgr, ip):
    if ip == V6:   # differ only in the last byte, or only in the first 8 bytes
        ends = [("2001:db8::1", "2001:db8::2"), ("2001:db8::2", "2001:db8::1"),
                ("2001:db8:0:1::9", "2001:db8:0:2::9"), ("fe80::1", "2001:db8::1"),
                ("2001:db8::5", "2001:db8::5")]
    else:
        ends = [("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.1"), ("1.0.0.10", "2.0.0.1"),
                ("255.0.0.1", "0.0.0.255"), ("10.0.0.5", "10.0.0.5")]
    pairs = [pair(ip=ip, proto="udp", src=a, dst=b, sport=5000 + i, dport=53 + i % 2)
             for a, b in ends for i in range(6)]
    check_pairs(hmgr, pairs)


@pytest.mark.parametrize("tags", [[(0x8100, 5)], [(0x88a8, 10), (0x8100, 20)], [(0x9100, 7), (0x8100, 8)],
                                  [(0x8100, 1), (0x8100, 2)]], ids=["vlan", "qinq", "9100", "double-8100"])
@pytest.mark.parametrize("ip,proto", [(V4, "udp"), (V6, "tcp")])
def test_vlan_tags_are_skipped(hmgr, tags, ip, proto):
    tagged = [pair(ip=ip, proto=proto, sport=2000 + i, vlans=tags) for i in range(16)]
    plain = [pair(ip=ip, proto=proto, sport=2000 + i) for i in range(16)]
    assert check_pairs(hmgr, tagged) == check_pairs(hmgr, plain), "a tag changed the hash"


@pytest.mark.parametrize("ip", [V4, V6])
@pytest.mark.parametrize("tags", [[], [(0x88a8, 10), (0x8100, 20)]], ids=["untagged", "qinq"])
def test_fragments_of_a_datagram_hash_alike(hmgr, ip, tags):
    per_flow = []
    for i in range(8):
        fwd = fragments(ip=ip, vlans=tags, src=addr(ip, i, 0), dst=addr(ip, i, 1), sport=3000 + i, dport=53)
        rev = fragments(ip=ip, vlans=tags, src=addr(ip, i, 1), dst=addr(ip, i, 0), sport=53, dport=3000 + i)
        assert len(fwd) >= 3
        h = hashes(hmgr, fwd + rev)
        assert len(set(h)) == 1, "fragments of flow %d went to %d hashes" % (i, len(set(h)))
        per_flow.append(h[0])
    assert len(set(per_flow)) == 8


@pytest.mark.parametrize("ext", [("hbh",), ("rt", "dst"), ("hbh", "rt", "dst")], ids="-".join)
def test_ipv6_extension_headers_are_skipped(hmgr, ext):
    with_ext = [pair(ip=V6, proto="tcp", sport=4000 + i, ext=ext) for i in range(16)]
    without = [pair(ip=V6, proto="tcp", sport=4000 + i) for i in range(16)]
    assert check_pairs(hmgr, with_ext) == check_pairs(hmgr, without)


def test_non_ip_frames_hash_on_the_mac_pair(hmgr):
    from scapy.layers.l2 import ARP, Ether
    macs = [("02:00:00:00:01:%02x" % i, "02:00:00:00:02:%02x" % i) for i in range(16)]
    arp = [(bytes(Ether(src=a, dst=b) / ARP(op=2, hwsrc=a, hwdst=b)),
            bytes(Ether(src=b, dst=a) / ARP(op=2, hwsrc=b, hwdst=a))) for a, b in macs]
    raw = [(bytes(Ether(src=a, dst=b, type=0x88b5) / bytes(46)),
            bytes(Ether(src=b, dst=a, type=0x88b5) / bytes(46))) for a, b in macs]
    tagged = [(bytes(Ether(src=a, dst=b, type=0x8100) / bytes([0, 9, 0x88, 0xb5]) / bytes(46)),
               bytes(Ether(src=b, dst=a, type=0x8100) / bytes([0, 9, 0x88, 0xb5]) / bytes(46))) for a, b in macs]
    assert check_pairs(hmgr, raw) == check_pairs(hmgr, tagged)
    check_pairs(hmgr, arp)


@pytest.mark.parametrize("ip", [V4, V6])
def test_frame_cut_inside_the_ports_hashes_on_addresses(hmgr, ip):
    l4 = 14 + (40 if ip == V6 else 20)
    pairs = []
    for i in range(16):
        a, b = pair(ip=ip, proto="tcp", src=addr(ip, i, 0), dst=addr(ip, i, 1), sport=6000 + i, dport=443)
        pairs.append((a[:l4 + 3], b[:l4 + 3]))    # 3 of the 4 port bytes
    check_pairs(hmgr, pairs)


def test_random_flows_hash_alike_both_ways(hmgr):
    """2000 flows of every kind at once: versions, protocols, tags, IPv6
    extension headers, addresses and ports drawn from a seeded generator."""
    rng = random.Random(7)
    pairs = []
    for _ in range(2000):
        ip = rng.choice([V4, V6])
        tags = rng.choice([[], [(0x8100, 3)], [(0x88a8, 1), (0x8100, 2)], [(0x9100, 4), (0x8100, 5)]])
        ext = rng.choice([(), ("hbh",), ("rt", "dst")]) if ip == V6 else ()
        if ip == V6:
            src, dst = ("2001:db8::%x:%x" % (rng.getrandbits(16), rng.getrandbits(16)) for _ in range(2))
        else:
            src, dst = ("10.%d.%d.%d" % tuple(rng.getrandbits(8) for _ in range(3)) for _ in range(2))
        pairs.append(pair(ip=ip, proto=rng.choice(["tcp", "udp", "sctp", "icmp"]), vlans=tags, ext=ext,
                          src=src, dst=dst, sport=rng.getrandbits(16), dport=rng.getrandbits(16)))
    check_pairs(hmgr, pairs, min_distinct=1990)
