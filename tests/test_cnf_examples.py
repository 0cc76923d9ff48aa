"""The C NF examples in examples/, each built with the SDK and run in a chain
under a real manager with real packets."""
import os
import re
import time

import networkx as nx
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

import onvm
from conftest import marker, udp, wait_for
from onvm.common.packet import frame

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def example(name, **kw):
    return onvm.c_nf(path=os.path.join(EXAMPLES, name, name + ".c"), **kw)


def test_every_example_has_a_readme_and_a_test():
    names = sorted(d for d in os.listdir(EXAMPLES) if os.path.isdir(os.path.join(EXAMPLES, d)))
    assert names == ["aes_encrypt", "basic_monitor", "firewall", "flow_tracker", "load_balancer", "simple_forward"]
    here = open(__file__).read()
    for n in names:
        assert os.path.exists(os.path.join(EXAMPLES, n, "README.md"))
        assert "def test_%s(" % n in here


def test_simple_forward(mgr):
    """Its own main(); follows the chain, or sends to service N with -d N."""
    to_2 = mgr.launch(example("simple_forward", args=["-d", "2"]), service=1)
    mgr.launch(example("simple_forward"), service=2, name="follows")
    mgr.launch(onvm.native("drop"), service=3)          # on the path, skipped by -d 2
    mgr.set_default_chain([1, 3, 2, onvm.ToPort(1)])
    assert mgr.inject([udp(i) for i in range(100)], port=0) == 100
    assert len(mgr.capture(port=1, count=100, timeout=5)) == 100
    s = mgr.stats()["nfs"]
    assert to_2.stats()["actions"]["to_service"] == 100
    assert sorted(n["rx"] for n in s.values()) == [0, 100, 100]
    with pytest.raises(onvm.OnvmError, match="init failed"):
        mgr.launch(example("simple_forward", args=["-d", "x"]), service=4, name="bad_args", timeout=20)


def test_basic_monitor(mgr):
    mon = mgr.launch(example("basic_monitor", args=["0.2"]), service=1)
    fwd = mgr.launch(onvm.native("forward"), service=2)
    mgr.set_default_chain([1, 2, onvm.ToPort(1)])
    flows = [udp(1000, 53)] * 5 + [udp(2000, 80, src="10.0.0.9")] * 3 + [udp(3000, 443)] * 2
    flows += [Ether() / (b"\x00" * 50)]       # not IP: counted as other
    assert mgr.inject(flows, port=0) == 11
    assert len(mgr.capture(port=1, count=11, timeout=5)) == 11
    # The monitor prints when a burst comes after its interval, so nudge it
    # with a flow of its own until it has (a bounded number of times).
    nudges = 0
    while "every interval" not in mon.log() and nudges < 50:
        time.sleep(0.1)
        assert mgr.inject([udp(4000, 8080)], port=0) == 1
        assert len(mgr.capture(port=1, count=1, timeout=5)) == 1
        nudges += 1
    assert "every interval" in mon.log(), mon.log()
    mon.stop()
    log = mon.log()
    final = log[log.index("at exit"):]
    assert "%d flows, 1 packets not IPv4" % (4 if nudges else 3) in final, final
    assert re.search(r"flow proto 17 198\.51\.100\.1:1000 -> 203\.0\.113\.9:53 +5 packets", final), final
    assert re.search(r"flow proto 17 10\.0\.0\.9:2000 -> 203\.0\.113\.9:80 +3 packets", final), final
    assert re.search(r":3000 -> 203\.0\.113\.9:443 +2 packets", final), final
    assert fwd.stats()["rx"] == 11 + nudges


def test_firewall(mgr, tmp_path):
    rules = os.path.join(EXAMPLES, "firewall", "rules.txt")
    fw = mgr.launch(example("firewall", args=[rules]), service=1)
    mgr.launch(onvm.native("forward"), service=2)
    mgr.set_default_chain([1, 2, onvm.ToPort(1)])
    cases = [
        (Ether() / IP(src="198.51.100.1", dst="203.0.113.9") / TCP(sport=5000, dport=23), False),   # telnet
        (Ether() / IP(src="198.51.100.1", dst="203.0.113.9") / TCP(sport=5000, dport=22), True),
        (udp(1, 53, src="10.1.2.3"), True),                                                          # allowed subnet
        (udp(1, 53, src="10.2.2.3"), False),                                                         # rest of 10/8
        (udp(1, 53, src="198.51.100.1", dst="192.0.2.1"), False),                                    # that host
        (udp(1, 53, src="198.51.100.1", dst="192.0.2.2"), True),
        (Ether() / (b"\x00" * 50), True),                                                              # not IPv4
    ]
    pkts = [p for p, _ in cases]
    assert mgr.inject(pkts, port=0) == len(pkts)
    passed = sum(ok for _, ok in cases)
    out = mgr.capture(port=1, count=passed, timeout=5, raw=True)
    assert sorted(out) == sorted(bytes(frame(p)) for p, ok in cases if ok)
    assert wait_for(lambda: fw.stats()["app"][:2] == [passed, len(cases) - passed], 5), fw.stats()["app"]
    # a bad rules file stops the NF before it takes a packet, naming the line
    bad = tmp_path / "bad.txt"
    bad.write_text("deny tcp any any 23\nallow sometimes\n")
    with pytest.raises(onvm.OnvmError, match=r"bad\.txt:2: not a rule"):
        mgr.launch(example("firewall", args=[str(bad)]), service=3, name="bad_fw", timeout=20)


def test_load_balancer(mgr):
    lb = example("load_balancer", args=["web1", "web2"])
    g = nx.DiGraph()
    g.add_node("lb", nf=lb)
    g.add_node("web1", nf=marker(1))

    @onvm.nf
    def web2(pkt):
        pkt.data[-1] = 2
        return onvm.ToPort(1)
    g.add_node("web2", nf=web2)
    # the path: port 0 -> lb -> web1 -> port 1; the balancer may also steer to web2, which sends to port 1
    g.add_edges_from([(onvm.Port(0), "lb"), ("lb", "web1"), ("web1", onvm.Port(1))])
    g.add_edge("lb", "web2", steer=True)
    g.add_edge("web2", onvm.Port(1), steer=True)
    mgr.deploy(g)
    flows = [udp(1000 + f, 80) for f in range(20)]
    for _ in range(5):
        assert mgr.inject(flows, port=0) == 20
    back = [udp(80, 1000 + f, src="203.0.113.9", dst="198.51.100.1") for f in range(20)]   # the replies
    assert mgr.inject(back, port=0) == 20
    out = mgr.capture(port=1, count=120, timeout=5, raw=True)
    assert len(out) == 120
    by_flow = {}
    for p in out:
        pkt = Ether(p)
        key = frozenset([(pkt[IP].src, pkt[UDP].sport), (pkt[IP].dst, pkt[UDP].dport)])
        by_flow.setdefault(key, set()).add(p[-1])
    assert len(by_flow) == 20
    assert all(len(marks) == 1 for marks in by_flow.values()), "every flow, both ways, stays on one backend"
    per_backend = [sum(1 for m in by_flow.values() if m == {k}) for k in (1, 2)]
    assert per_backend == [10, 10], "flows taken in turn"
    s = {n["name"]: n for n in mgr.stats()["nfs"].values()}
    assert s["lb"]["app"][:2] == [10, 10] and s["lb"]["errors"] == 0


def test_flow_tracker(mgr):
    tr = mgr.launch(example("flow_tracker", args=["1", "30000"]), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    firsts = [udp(4000 + f, 443) for f in range(10)]
    assert mgr.inject(firsts, port=0) == 10
    assert len(mgr.capture(port=1, count=10, timeout=5)) == 10
    assert wait_for(lambda: len(mgr.flows.list()) == 10, 5)
    rest = [udp(4000 + f, 443) for f in range(10)] * 20
    assert mgr.inject(rest, port=0) == 200
    assert len(mgr.capture(port=1, count=200, timeout=5)) == 200
    s = tr.stats()
    assert s["rx"] == 10, "later packets skip the NF that installed the rules"
    assert s["app"][:3] == [10, 10, 0]
    rules = mgr.flows.list()
    assert {r.installer for r in rules} == {tr.name} and sum(r.packets for r in rules) == 200
    assert tr.log().count("new flow proto 17") == 10


def _payload(raw):
    return bytes(Ether(raw)[UDP].payload)


def test_aes_encrypt(mgr):
    variants = {"builtin": example("aes_encrypt")}
    if os.path.exists("/usr/include/openssl/evp.h"):
        variants["openssl"] = example("aes_encrypt", cflags=["-DAES_OPENSSL"], ldflags=["-lcrypto"])
    pkts = [udp(1000 + i, 9, payload=bytes(range(i, i + 100))) for i in range(20)]
    ciphertexts = {}
    for k, nf in variants.items():
        enc = mgr.launch(nf, service=1, name="aes_" + k)
        assert ("OpenSSL" if k == "openssl" else "built-in") in enc.log() and "self-test passed" in enc.log()
        mgr.set_default_chain([1, onvm.ToPort(1)])
        assert mgr.inject(pkts, port=0) == 20
        out = mgr.capture(port=1, count=20, timeout=5, raw=True)
        ciphertexts[k] = sorted(_payload(p) for p in out)
        assert all(len(c) == 100 for c in ciphertexts[k])
        assert not set(ciphertexts[k]) & {bytes(p[UDP].payload) for p in pkts}, "payloads are encrypted"
        assert enc.stats()["app"][:2] == [20, 2000]
        # a second instance of the same NF decrypts: the chain gives back the plaintext
        dec = mgr.launch(nf, service=2, name="dec_" + k)
        mgr.set_default_chain([1, 2, onvm.ToPort(1)])
        assert mgr.inject(pkts, port=0) == 20
        out = mgr.capture(port=1, count=20, timeout=5, raw=True)
        assert sorted(out) == sorted(bytes(p) for p in pkts)
        enc.stop()
        dec.stop()
    assert len(set(map(tuple, ciphertexts.values()))) == 1, "OpenSSL and the built-in AES agree"
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        return
    p = Ether(bytes(pkts[0]))
    iv = bytes(p[IP])[12:20] + bytes(p[UDP])[:4] + bytes(p[IP])[4:6] + b"\0\0"
    enc = Cipher(algorithms.AES(bytes(range(16))), modes.CTR(iv)).encryptor()
    assert enc.update(bytes(p[UDP].payload)) in ciphertexts["builtin"], "AES-128-CTR as the standard says"


def test_examples_in_one_chain(mgr, tmp_path):
    """firewall -> basic_monitor -> aes_encrypt -> aes_encrypt (decrypts) ->
    simple_forward: what passes the firewall comes out unchanged."""
    rules = tmp_path / "rules.txt"
    rules.write_text("deny udp any any 666\n")
    chain = [example("firewall", args=[str(rules)]), example("basic_monitor", args=["60"]),
             example("aes_encrypt"), example("aes_encrypt"), example("simple_forward")]
    nfs = [mgr.launch(nf, service=i + 1, name="c%d" % i) for i, nf in enumerate(chain)]
    mgr.set_default_chain([1, 2, 3, 4, 5, onvm.ToPort(1)])
    good = [udp(1000 + i, 53, payload=os.urandom(64)) for i in range(300)]
    bad = [udp(1000 + i, 666) for i in range(50)]
    assert mgr.inject(good + bad, port=0) == 350
    out = mgr.capture(port=1, count=300, timeout=10, raw=True)
    assert sorted(out) == sorted(bytes(p) for p in good)
    assert nfs[0].stats()["actions"]["drop"] == 50 and all(n.stats()["rx"] == 300 for n in nfs[1:])
