"""Fuzzing the whole data path: 10^5 generated frames (random bytes,
truncated, padded and broken IPv4/IPv6/TCP/UDP headers, IP options,
fragments, VLAN stacks) through the RX hash, routing, every native NF and a
Python NF that reads the packet view.  Nothing crashes, every frame is out
of a port or dropped for a counted reason, what comes out is byte-exact,
and the pool empties.  benchmarks/fuzz_frames.py runs 10^6."""
import collections

import frames

N = 100_000


def test_fuzzer_is_reproducible_and_covers_every_kind():
    a, b = frames.Fuzzer(3).frames(20000), frames.Fuzzer(3).frames(20000)
    assert a == b and a != frames.Fuzzer(4).frames(20000)
    assert all(14 <= len(f) <= 2048 for f in a)
    assert min(map(len, a)) == 14 and max(map(len, a)) == 2048
    types = collections.Counter(f[12:14] for f in a)
    for t in (b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\xa8", b"\x91\x00", b"\x08\x06"):
        assert types[t] > 200, "few frames of type %s" % t.hex()
    qinq_v6 = sum(1 for f in a if f[12:14] == b"\x88\xa8" and f[16:18] == b"\x81\x00" and f[20:22] == b"\x86\xdd")
    v4_options = sum(1 for f in a if f[12:14] == b"\x08\x00" and len(f) > 14 and f[14] >> 4 == 4 and f[14] & 15 > 5)
    v4_frags = sum(1 for f in a if f[12:14] == b"\x08\x00" and len(f) >= 22 and f[20:22] not in (b"\0\0", b"\x40\0"))
    assert qinq_v6 > 100 and v4_options > 100 and v4_frags > 100


def test_fuzzed_frames_through_every_nf_are_all_accounted_for(mgr):
    nfs = frames.deploy(mgr)
    r = frames.run_fuzz(mgr, N, seed=20261127)
    logs = "\n".join("%s: %s" % (n.name, n.log()[-1500:]) for n in nfs)
    assert r["crashed"] == [], logs
    assert r["frames"] == N
    assert r["missing"] == 0, r                      # in = out of the ports + drops
    assert r["errors"] == 0, logs                    # the packet view held for every frame
    assert r["unbalanced"] == [], r
    assert r["unexpected"] == 0, r                   # everything out was byte-exact
    assert r["uncaptured"] == 0, r
    overflow = sum(r["drops"][k] for k in frames.OVERFLOW)
    assert r["short"] <= overflow, r                 # only full rings lose a frame
    assert r["pool_in_use"] == 0 and mgr.wait_idle()
    fates = {"port0": r["out"][0], "port1": r["out"][1]}
    fates.update((k, v) for k, v in r["drops"].items() if k not in frames.OVERFLOW)
    for fate, want in r["expected"].items():         # where the routing sent each frame
        assert fates[fate] == want or (overflow and fates[fate] <= want), (fate, r)
    assert sum(r["expected"].values()) == N
    s = mgr.stats()
    for n in nfs:                                    # every NF took part
        assert s["nfs"][n.instance]["rx"] > 0, n
    count = s["nfs"][mgr["count"].instance]
    assert sum(count["app"]) == count["rx"]          # count tallied every frame once
