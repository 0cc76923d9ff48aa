"""Fuzzing the whole data path: 10^5 generated frames (random bytes,
truncated, padded and broken IPv4/IPv6/TCP/UDP headers, IP options,
fragments, VLAN stacks) through the RX hash, routing, every native NF and a
Python NF that reads the packet view.  Nothing crashes, every frame is out
of a port or dropped for a counted reason, what comes out is byte-exact,
and the pool empties.  benchmarks/fuzz_frames.py runs 10^6."""
import collections

import frames
import onvm
from test_flow_hash import stamp_hash

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
    assert r["nf_tx_drop"] <= overflow, r            # senders' view of those same losses
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


def build_harness(tmp_path):
    """tests/flow_hash_harness.c with AddressSanitizer: onvm_flow_hash on
    frames from stdin, each in a heap block of exactly its size."""
    import os
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    core = os.path.join(here, "..", "onvm", "core")
    exe = str(tmp_path / "flow_hash_harness")
    try:
        flags = {k: subprocess.run(["pkg-config", k, "libdpdk"], check=True, capture_output=True,
                                   text=True).stdout.split() for k in ("--cflags", "--libs")}
        subprocess.run(["gcc", "-O1", "-g", "-std=gnu11", "-Wall", "-Werror", "-fsanitize=address,undefined",
                        "-fno-sanitize-recover=all", "-I", core, *flags["--cflags"],
                        os.path.join(here, "flow_hash_harness.c"), "-o", exe, *flags["--libs"]],
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise AssertionError("cannot build the flow hash harness (needs gcc, libasan and libdpdk-dev: "
                             "bash scripts/setup.sh): %s" % getattr(e, "stderr", e)) from None
    return exe


def hash_frames(exe, batch):
    """The harness's hash of each frame in batch."""
    import struct
    import subprocess
    data = b"".join(struct.pack("=H", len(f)) + f for f in batch)
    p = subprocess.run([exe], input=data, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    assert len(p.stdout) == 4 * len(batch)
    return list(struct.unpack("=%dI" % len(batch), p.stdout))


def test_flow_hash_never_reads_past_the_frame(tmp_path):
    """Every prefix (14 bytes up) of every fuzzer template, all lengths
    0..13, and 200,000 fuzzed frames, under AddressSanitizer."""
    exe = build_harness(tmp_path)
    fz = frames.Fuzzer(11)
    prefixes = [t.raw[:k] for t in fz.templates for k in range(14, len(t.raw) + 1)]
    short = [bytes(range(k)) for k in range(14)]
    hashes = hash_frames(exe, short + prefixes + fz.frames(200_000))
    assert hashes[:14] == [0] * 14                   # shorter than an Ethernet header
    assert len(set(hashes)) > 10_000                 # not a constant either


def test_flow_hash_in_the_harness_is_the_one_the_rx_thread_uses(tmp_path, mgr):
    """The harness hashes like the RX thread (seen by an NF), so what it
    shows holds for the data path."""
    exe = build_harness(tmp_path)
    mgr.launch(stamp_hash, service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    batch = [f for f in frames.Fuzzer(5).frames(3000) if len(f) >= 18]
    assert mgr.inject(batch, port=0) == len(batch)
    out = mgr.capture(port=1, count=len(batch), timeout=30, raw=True)
    assert [o[:-4] for o in out] == [f[:-4] for f in batch]
    assert [int.from_bytes(o[-4:], "big") for o in out] == hash_frames(exe, batch)


def reverse(frame):
    """frame as the other end would send it: MACs, addresses and, where the
    hash finds them, ports swapped; the rest (broken fields too) kept."""
    b, n = bytearray(frame), len(frame)

    def swap(i, j, k):
        b[i:i + k], b[j:j + k] = frame[j:j + k], frame[i:i + k]

    swap(0, 6, 6)
    off, etype = 14, int.from_bytes(frame[12:14], "big")
    for _ in range(2):
        if etype in frames.TPIDS and off + 4 <= n:
            etype, off = int.from_bytes(frame[off + 2:off + 4], "big"), off + 4
    l4 = None
    if etype == 0x0800 and off + 20 <= n:
        swap(off + 12, off + 16, 4)
        ihl = (frame[off] & 15) * 4
        l4 = off + ihl if ihl >= 20 else None
    elif etype == 0x86dd and off + 40 <= n:
        swap(off + 8, off + 24, 16)
        proto, l4 = frame[off + 6], off + 40
        for _ in range(4):           # the extension headers flow_hash.h skips
            if proto in (0, 43, 60) and l4 + 2 <= n:
                proto, l4 = frame[l4], l4 + (frame[l4 + 1] + 1) * 8
            elif proto == 44 and l4 + 8 <= n:
                proto, l4 = frame[l4], l4 + 8
            elif proto == 51 and l4 + 2 <= n:
                proto, l4 = frame[l4], l4 + (frame[l4 + 1] + 2) * 4
            else:
                break
    if l4 is not None and l4 + 4 <= n:
        swap(l4, l4 + 2, 2)
    return bytes(b)


def test_flow_hash_is_symmetric_for_broken_frames_too(tmp_path):
    """Truncated, padded and broken headers (IHL below 5, lengths, next
    headers, tags): the frame and its reverse still hash alike."""
    exe = build_harness(tmp_path)
    batch = frames.Fuzzer(13).frames(100_000)
    fwd, rev = hash_frames(exe, batch), hash_frames(exe, [reverse(f) for f in batch])
    split = [i for i in range(len(batch)) if fwd[i] != rev[i]]
    assert not split, "%d frames hash unlike their reverse, e.g. %s" % (len(split), batch[split[0]].hex())
