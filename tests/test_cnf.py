"""C NFs written by users against the NF SDK (<onvm/nflib.h>, onvm/cnf.py):
built with `onvm build` or onvm.c_nf, run under a real manager with real
packets, and what happens when they are wrong."""
import contextlib
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

import onvm
from conftest import udp, wait_for
from onvm import cnf
from onvm.common import paths

OnvmError = onvm.OnvmError

ONVM = [sys.executable, "-m", "onvm"]

# Exercises the header helpers: verdicts by what it parses, counters by field.
HELPERS = r"""
#include <string.h>
#include <onvm/nflib.h>
static int handler(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	(void)state;
	struct onvm_5tuple t;
	if (onvm_pkt_vlan(pkt) == 7)
		return onvm_drop(v);
	if (onvm_pkt_ipv6(pkt) && onvm_pkt_udp(pkt) && onvm_pkt_dport(pkt) == 53)
		onvm_count(1, 1);
	if (onvm_pkt_5tuple(pkt, &t) == 0) {
		onvm_count(0, t.sport);
		if (t.proto == IPPROTO_TCP && onvm_pkt_tcp(pkt) && t.dport == 23)
			return onvm_drop(v);
		if (t.src == 0x0a000001)       /* 10.0.0.1, host order */
			onvm_count(2, 1);
	}
	uint32_t len;
	uint8_t *pl = onvm_pkt_payload(pkt, &len);
	if (pl && len >= 4)                /* the RX flow hash, for the test to compare */
		memcpy(pl + len - 4, &pkt->hash, 4);
	return onvm_next(v);
}
ONVM_NF("helpers", handler)
"""

FORWARD = r"""
#include <onvm/nflib.h>
static int fwd(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	(void)pkt; (void)state;
	return onvm_next(v);
}
ONVM_NF("fwd", fwd)
"""

# A burst handler with per-NF state and arguments: marks each packet's last
# byte with the mark given as its argument, counts bursts.
MARKER = r"""
#include <stdlib.h>
#include <onvm/nflib.h>
struct st { uint8_t mark; };
static int init(struct onvm_nf *nf, void *state, int argc, char **argv)
{
	(void)nf;
	if (argc != 2)
		return -EINVAL;
	((struct st *)state)->mark = (uint8_t)atoi(argv[1]);
	return 0;
}
static int burst(struct onvm_pkt *pkts, struct onvm_verdict *v, unsigned n, void *state)
{
	(void)v;
	for (unsigned i = 0; i < n; i++)
		pkts[i].data[pkts[i].len - 1] = ((struct st *)state)->mark;
	onvm_count(0, 1);
	return 0;
}
ONVM_NF_DEF(.name = "marker", .burst = burst, .state_size = sizeof(struct st), .init = init)
"""

CRASH = r"""
#include <onvm/nflib.h>
static int handler(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	(void)state;
	if (onvm_pkt_dport(pkt) == 666)
		*(volatile int *)0 = 1;           /* a bug */
	if (onvm_pkt_dport(pkt) == 667)
		for (;;) ;                         /* another */
	return onvm_next(v);
}
ONVM_NF("crash", handler)
"""

# A handler refusing some packets: -EINVAL for UDP to port 13, as an
# ONVM_NF and with its own main(): NFLib drops and counts each.
REFUSER = r"""
#include <onvm/nflib.h>
static int handler(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	(void)state;
	if (onvm_pkt_udp(pkt) && onvm_pkt_dport(pkt) == 13)
		return -EINVAL;
	return onvm_next(v);
}
"""
REFUSER_MACRO = REFUSER + 'ONVM_NF("refuser", handler)\n'
REFUSER_MAIN = REFUSER + r"""
int main(int argc, char **argv)
{
	static const struct onvm_nf_def def = {.sdk_version = ONVM_SDK_VERSION, .name = "refuser", .handler = handler};
	return onvm_nflib_run(&def, argc, argv);
}
"""

CRASH_AT_START = r"""
#include <onvm/nflib.h>
static int init(struct onvm_nf *nf, void *state, int argc, char **argv)
{
	(void)nf; (void)state; (void)argc; (void)argv;
	*(volatile int *)0 = 1;
	return 0;
}
static int handler(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	(void)pkt; (void)state;
	return onvm_next(v);
}
ONVM_NF_DEF(.name = "dies", .handler = handler, .init = init)
"""


@pytest.fixture(scope="module")
def built():
    """The test NFs, compiled once (cached by content for later runs too)."""
    return {k: onvm.c_nf(source=src, name=k) for k, src in
            (("helpers", HELPERS), ("fwd", FORWARD), ("marker", MARKER), ("crash", CRASH))}


def test_a_c_nf_sees_headers_and_gives_verdicts(mgr, built):
    nf = mgr.launch(built["helpers"], service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    pkts = [udp(1000 + i, src="10.0.0.1") for i in range(10)]
    pkts += [Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / TCP(sport=4000, dport=23)] * 3    # dropped
    pkts += [Ether() / Dot1Q(vlan=7) / IP() / UDP(sport=5, dport=5) / (b"x" * 10)] * 2       # VLAN 7: dropped
    pkts += [Ether() / Dot1Q(vlan=8) / IP(src="10.0.0.1") / UDP(sport=9, dport=9) / (b"x" * 10)]
    pkts += [Ether() / IPv6() / UDP(sport=7, dport=53) / (b"y" * 10)] * 4
    assert mgr.inject(pkts, port=0) == len(pkts)
    out = mgr.capture(port=1, count=15, timeout=5)
    assert len(out) == 15
    s = nf.stats()
    assert s["actions"]["drop"] == 5 and s["actions"]["next"] == 15 and s["errors"] == 0
    assert s["kind"] == "c:helpers"
    # app[0]: sum of IPv4 source ports (host order); app[1]: IPv6 UDP to 53; app[2]: from 10.0.0.1
    assert s["app"][:3] == [sum(range(1000, 1010)) + 4000 * 3 + 9, 4, 11]   # VLAN 7 dropped first


def test_the_flow_hash_is_the_rx_threads_and_symmetric(mgr, built):
    mgr.launch(built["helpers"], service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    there = udp(1234, 80, src="198.51.100.7", dst="203.0.113.5")
    back = udp(80, 1234, src="203.0.113.5", dst="198.51.100.7")
    other = udp(1235, 80, src="198.51.100.7", dst="203.0.113.5")
    mgr.inject([there, back, other], port=0)
    out = mgr.capture(port=1, count=3, timeout=5, raw=True)
    hashes = [struct.unpack("<I", p[-4:])[0] for p in out]
    assert hashes[0] == hashes[1] != hashes[2] and hashes[0] != 0


def test_burst_handler_state_and_args(mgr, built):
    nf = mgr.launch(onvm.c_nf(source=MARKER, name="marker", args=["42"]), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject([udp(i) for i in range(100)], port=0)
    out = mgr.capture(port=1, count=100, timeout=5, raw=True)
    assert len(out) == 100 and {p[-1] for p in out} == {42}
    assert 1 <= nf.stats()["app"][0] <= 100


@pytest.mark.parametrize("source", [REFUSER_MACRO, REFUSER_MAIN], ids=["ONVM_NF", "own-main"])
def test_a_handler_error_drops_that_packet_and_counts_it(mgr, source):
    nf = mgr.launch(onvm.c_nf(source=source, name="refuser"), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    pkts = [udp(1000 + i, 13 if i % 4 == 0 else 7) for i in range(40)]
    assert mgr.inject(pkts, port=0) == 40
    out = mgr.capture(port=1, count=30, timeout=5)
    assert sorted(p[UDP].sport for p in out) == [1000 + i for i in range(40) if i % 4]
    assert wait_for(lambda: nf.stats()["errors"] == 10, 5), nf.stats()
    s = nf.stats()
    assert s["rx"] == 40 and s["actions"]["drop"] == 10 and s["actions"]["next"] == 30


def test_init_refusing_its_args_stops_the_launch(mgr, built):
    with pytest.raises(OnvmError, match="init failed"):
        mgr.launch(built["marker"], service=1, timeout=20)      # no argument: init says -EINVAL
    assert wait_for(lambda: mgr.stats()["nfs"] == {}, 5), "its slot is free again"


def test_replicas_and_a_stop_lose_nothing(mgr, built):
    nfs = mgr.launch(built["fwd"], service=1, replicas=2)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    assert mgr.inject([udp(i) for i in range(2000)], port=0) == 2000
    for n in nfs:
        n.stop()
        assert n.process.returncode == 0
    out = mgr.capture(port=1, count=2000, timeout=5)
    assert len(out) == 2000
    assert mgr.stats()["nfs"] == {}


@contextlib.contextmanager
def shell_nf(mgr, args, cwd):
    """`onvm nf ARGS` as a shell runs it (in cwd, its log cwd/nf.log),
    running under mgr for the block; then SIGTERM, and it must exit 0."""
    log_path = cwd / "nf.log"
    with open(log_path, "w") as log:
        nf = subprocess.Popen(ONVM + ["nf", *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, **paths.dpdk_env()))
    try:
        assert wait_for(lambda: any(s["pid"] == nf.pid and s["state"] == "running"
                                    for s in mgr.stats()["nfs"].values()), 20), log_path.read_text()
        yield nf
        nf.send_signal(signal.SIGTERM)
        assert nf.wait(10) == 0
    finally:
        if nf.poll() is None:
            nf.kill()
            nf.wait()


def test_onvm_build_and_onvm_nf_from_the_shell(mgr, tmp_path):
    src = tmp_path / "myfw.c"
    src.write_text(MARKER)
    out = tmp_path / "myfw"
    p = subprocess.run(ONVM + ["build", str(src), "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert os.access(out, os.X_OK) and cnf.sdk_version_of(str(out)) == cnf.SDK_VERSION
    with shell_nf(mgr, [str(out), "--manager", mgr.name, "--service", "3", "--", "42"], tmp_path):
        mgr.set_default_chain([3, onvm.ToPort(1)])
        mgr.inject([udp(i) for i in range(50)], port=0)
        out = mgr.capture(port=1, count=50, timeout=5, raw=True)
        assert len(out) == 50 and {p[-1] for p in out} == {42}, "its argument after -- reached its init"
    assert "registered: service 3" in open(tmp_path / "nf.log").read()
    assert wait_for(lambda: mgr.stats()["nfs"] == {}, 5)


def readme_c_section():
    """The code blocks of README's "Your own NFs in C", by language."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")) as f:
        text = f.read()
    sec = text.split("### Your own NFs in C", 1)[1].split("\n### ", 1)[0]
    blocks = {}
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", sec, re.S):
        blocks.setdefault(lang, []).append(body)
    return blocks


def test_the_readme_c_nf_section_runs_as_written(mgr, tmp_path):
    """Its C file, its two commands (against this test's manager, not
    "main"), and its Python, which swaps the C NF in for the prototype."""
    blocks = readme_c_section()
    (tmp_path / "myfw.c").write_text(blocks["c"][0])
    build, run = [line.split("#")[0].split() for line in blocks["sh"][0].strip().splitlines()]
    assert build[:2] == ["onvm", "build"] and run[:2] == ["onvm", "nf"]
    p = subprocess.run(ONVM + build[1:], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    run[run.index("--manager") + 1] = mgr.name
    with shell_nf(mgr, run[2:], tmp_path):
        mgr.set_default_chain([3, onvm.ToPort(1)])
        pkts = [Ether() / IP() / TCP(sport=4000 + i, dport=23 if i % 2 else 80) for i in range(40)]
        assert mgr.inject(pkts, port=0) == 40
        assert sorted(p[TCP].dport for p in mgr.capture(port=1, count=20, timeout=5)) == [80] * 20
    p = subprocess.run([sys.executable, "-c", blocks["python"][0]], cwd=tmp_path, capture_output=True, text=True,
                       timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    assert lines[:2] == ["200", "200"], p.stdout
    assert lines[2] == "{'fw.1': 'c:fw.1'}", "the C NF replaced the prototype: %s" % lines[2]


def test_pkg_config_gives_a_working_build(tmp_path):
    d = subprocess.run(ONVM + ["build", "--pkg-config-path"], capture_output=True, text=True, timeout=300)
    assert d.returncode == 0, d.stderr
    env = dict(os.environ, PKG_CONFIG_PATH=d.stdout.strip())
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "onvm"], capture_output=True, text=True,
                           env=env, check=True).stdout.split()
    (tmp_path / "f.c").write_text(FORWARD)
    subprocess.run(["cc", str(tmp_path / "f.c"), *flags, "-o", str(tmp_path / "f")], check=True, timeout=300)
    assert cnf.sdk_version_of(str(tmp_path / "f")) == cnf.SDK_VERSION


# ---- the cache ---------------------------------------------------------------------------

def test_c_nf_is_built_once_per_content_in_a_private_cache(built):
    first = built["fwd"]
    mtime = os.stat(first.binary).st_mtime_ns
    again = onvm.c_nf(source=FORWARD, name="fwd")
    assert again.binary == first.binary and os.stat(again.binary).st_mtime_ns == mtime, "not rebuilt"
    changed = onvm.c_nf(source=FORWARD + "\n/* edited */\n", name="fwd")
    assert changed.binary != first.binary and changed.key() != first.key()
    root = cnf.cache_dir()
    assert first.binary.startswith(root + os.sep)
    st = os.stat(root)
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700


# ---- bad input ---------------------------------------------------------------------------

def test_source_that_does_not_compile_says_where_and_launches_nothing(mgr):
    bad = FORWARD.replace("return onvm_next(v);", "return onvm_next(v)\n\tundefined_thing = 3;")
    with pytest.raises(cnf.CompileError) as e:
        onvm.c_nf(source=bad, name="broken")
    msg = str(e.value)
    assert re.search(r"broken\.c:\d+:\d+: error", msg), msg
    assert "Traceback" not in msg and "subprocess" not in msg
    assert mgr.nfs == [] and mgr.stats()["nfs"] == {}


def test_onvm_build_shows_compiler_errors_with_lines(tmp_path):
    (tmp_path / "bad.c").write_text("#include <onvm/nflib.h>\nint main(void) { return nope; }\n")
    p = subprocess.run(ONVM + ["build", str(tmp_path / "bad.c"), "-o", str(tmp_path / "bad")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert re.search(r"bad\.c:2:\d+: error: .nope. undeclared", p.stderr), p.stderr
    assert not (tmp_path / "bad").exists()


def test_source_without_the_sdk_is_not_an_nf(tmp_path):
    (tmp_path / "plain.c").write_text("int main(void) { return 0; }\n")
    p = subprocess.run(ONVM + ["build", str(tmp_path / "plain.c"), "-o", str(tmp_path / "plain")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "not an NF" in p.stderr and "nflib.h" in p.stderr


def test_a_missing_compiler_is_one_line_naming_the_package(tmp_path):
    (tmp_path / "f.c").write_text(FORWARD)
    p = subprocess.run(ONVM + ["build", str(tmp_path / "f.c"), "-o", str(tmp_path / "f")], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, CC="onvm-no-such-cc"))
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "apt-get install gcc" in p.stderr, p.stderr
    with pytest.raises(cnf.CompileError, match="apt-get install gcc"):
        os.environ["CC"] = "onvm-no-such-cc"
        try:
            onvm.c_nf(source=FORWARD)
        finally:
            del os.environ["CC"]


def test_a_binary_that_is_not_an_nf_is_refused_and_takes_no_slot(mgr, tmp_path):
    fake = cnf.CNF("/bin/true", "fake", "0" * 64)
    with pytest.raises(OnvmError, match="not an onvm NF"):
        mgr.launch(fake, service=1, timeout=20)
    assert mgr.stats()["nfs"] == {}
    p = subprocess.run(ONVM + ["nf", "/bin/true", "--manager", mgr.name, "--service", "1"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "not an onvm NF" in p.stderr


def test_an_nf_of_another_sdk_version_is_refused_at_registration(mgr, built, tmp_path):
    data = open(built["fwd"].binary, "rb").read()
    marker = cnf.MARKER + str(cnf.SDK_VERSION).encode() + b";"
    assert data.count(marker) == 1
    old = tmp_path / "old"
    old.write_bytes(data.replace(marker, cnf.MARKER + b"9;"))
    old.chmod(0o755)
    with pytest.raises(OnvmError, match=r"built against onvm NF SDK 9, and this manager speaks SDK %d: rebuild"
                       % cnf.SDK_VERSION):
        mgr.launch(cnf.CNF(str(old), "old", "1" * 64), service=1, timeout=20)
    assert mgr.stats()["nfs"] == {}


def test_an_nf_that_crashes_at_start_is_reported_and_its_slot_recovered(mgr):
    with pytest.raises(OnvmError, match="did not start.*crashed"):
        mgr.launch(onvm.c_nf(source=CRASH_AT_START, name="dies"), service=1, timeout=20)
    assert wait_for(lambda: mgr.stats()["nfs"] == {}, 5), "the slot is free again"
    ok = mgr.launch(onvm.c_nf(source=FORWARD, name="fwd"), service=1)
    assert ok.instance is not None


@pytest.mark.parametrize("fault,dport,code", [("segfault", 666, -signal.SIGSEGV), ("endless loop", 667, 4)])
def test_a_handler_fault_under_traffic_is_recovered_and_the_rest_forwards(mgr, built, monkeypatch, fault, dport,
                                                                           code):
    """A replica's handler crashes (or never returns) on a packet: it is
    recovered like a killed replica, the packets it held are counted, the
    other replica and the manager go on forwarding every flow."""
    monkeypatch.setenv("ONVM_NF_HANG_MS", "500")
    nfs = mgr.launch(built["crash"], service=1, replicas=2)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    assert mgr.inject([udp(i) for i in range(200)], port=0) == 200
    assert len(mgr.capture(port=1, count=200, timeout=5)) == 200
    assert all(n.stats()["rx"] > 0 for n in nfs), "both replicas serve flows"
    # the bad packet, then more behind it in the same burst for the faulty replica to hold
    assert mgr.inject([udp(4242, dport)] + [udp(4242, 9)] * 50, port=0) == 51
    assert wait_for(lambda: sum(n.alive for n in nfs) == 1, 10), "the faulty replica ended"
    dead, alive = (nfs[0], nfs[1]) if not nfs[0].alive else (nfs[1], nfs[0])
    assert dead.process.returncode == code
    log = open(dead.log_path).read()
    assert ("crashed (signal 11, SIGSEGV)" if code < 0 else "has not returned for") in log, log
    assert wait_for(lambda: mgr.stats()["recovered"] >= 1, 10), "what it held is counted"
    assert [n["name"] for n in mgr.stats()["nfs"].values()] == [alive.name]
    mgr.capture(port=1, timeout=0.5)
    assert mgr.inject([udp(i) for i in range(300)], port=0) == 300
    assert len(mgr.capture(port=1, count=300, timeout=5)) == 300, "the other replica serves every flow"
    s = mgr.stats()
    p0, p1 = s["ports"][0], s["ports"][1]
    drops = p0["rx_drop"] + p0["rx_refused"] + p0["rx_chain_end"] + p1["tx_drop"]
    assert wait_for(lambda: mgr.stats()["ports"][1]["tx"] + drops + mgr.stats()["recovered"] == p0["rx"], 5), \
        "what came in went out, was dropped, or is counted as lost in the NF that died"
    assert alive.alive and mgr.running


def test_a_python_nf_swapped_for_its_c_version_loses_nothing(mgr, built):
    from test_graphs import Traffic, drops, linear

    @onvm.nf
    def pyfwd(pkt):
        return onvm.NEXT
    g = linear([("fw", pyfwd, 1)])
    mgr.deploy(g)
    with Traffic(mgr, rate=20000) as t:
        time.sleep(0.3)
        g.nodes["fw"]["nf"] = built["fwd"]
        mgr.deploy(g)
        mark = len(t.out)
        assert wait_for(lambda: len(t.out) > mark + 2000, 10)
    kinds = {n["kind"] for n in mgr.stats()["nfs"].values()}
    assert len(kinds) == 1 and next(iter(kinds)).startswith("c:fw"), kinds
    assert t.sent > 5000
    assert len(t.out) == t.sent, ("zero loss", drops(mgr))
    assert mgr.wait_idle()


def test_the_onvm_c_cell_magic_builds_a_cell_and_shows_compile_errors_as_lines():
    """Registered by `import onvm` in IPython; a broken cell shows the
    compiler's line, not a traceback."""
    script = r'''
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
import onvm
ip.run_cell(%r)
print("NF", repr(ip.user_ns["fw"]), ip.user_ns["fw"].args)
r = ip.run_cell("%%%%onvm_c broken\n#include <onvm/nflib.h>\nint main(void) { return nope; }\n")
print("ERROR", type(r.error_in_exec).__name__)
''' % ("%%onvm_c fw --args 7 -O2\n" + FORWARD)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "fw: C NF built" in out and re.search(r"NF <CNF fw [0-9a-f]{12}> \('7',\)", out), out
    assert "ERROR UsageError" in out and re.search(r"broken\.c:3:\d+: error: .nope. undeclared", out), out
    assert "Traceback" not in out, out


def test_the_door_the_header_and_a_built_nf_agree_on_the_sdk_version(built):
    from onvm.mgr import nfdoor
    with open(cnf.HEADER) as f:
        header = int(re.search(r"#define ONVM_SDK_VERSION (\d+)", f.read()).group(1))
    assert nfdoor.SDK_VERSION == header == cnf.sdk_version_of(built["fwd"].binary)


def test_a_c_nf_in_an_image_built_from_onvm_nf(mgr, built):
    """onvm.cnf.build_image puts the binary (and the library it links) in an
    image FROM onvm/nf; onvm.image launches it as a container NF, which
    registers through the door and execs the binary like a process NF."""
    from onvm import containers
    client = containers.engine()
    containers.build_images()           # onvm/nf for this code, if missing (as tests/test_containers.py)
    tag = "onvm-test/cnf-fwd:%d" % os.getpid()
    try:
        assert cnf.build_image(built["helpers"], tag) == tag
        nf = mgr.launch(onvm.image(tag), service=1)
        assert isinstance(nf.process, containers.ContainerProcess)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        assert mgr.inject([udp(1000 + i, src="10.0.0.1") for i in range(100)], port=0) == 100
        assert len(mgr.capture(port=1, count=100, timeout=10)) == 100
        s = nf.stats()
        assert s["kind"].startswith("c:") and s["app"][2] == 100, s
        nf.stop()
        assert wait_for(lambda: mgr.stats()["nfs"] == {}, 10)
        # container=True: the same, with an image built for it (once), and its arguments
        marker_nf = onvm.c_nf(source=MARKER, name="marker", args=["5"])
        boxed = mgr.launch(marker_nf, service=1, container=True)
        assert isinstance(boxed.process, containers.ContainerProcess)
        assert mgr.inject([udp(i) for i in range(50)], port=0) == 50
        out = mgr.capture(port=1, count=50, timeout=10, raw=True)
        assert len(out) == 50 and {p[-1] for p in out} == {5}
        boxed.stop()
    finally:
        for t in (tag, onvm.c_nf(source=MARKER, name="marker", args=["5"]).image_tag()):
            try:
                client.images.remove(t, force=True)
            except Exception:
                pass


def test_a_graph_with_a_c_nf_saves_and_loads_back(mgr, tmp_path):
    from onvm import graph
    from test_graphs import linear
    src = tmp_path / "mark.c"
    src.write_text(MARKER)
    g = linear([("m", onvm.c_nf(path=str(src), args=["9"]), 2)])
    text = graph.to_json(g)
    doc = __import__("json").loads(text)
    node, = [n for n in doc["nodes"] if n["id"] == "m"]
    assert node["nf"] == {"c": str(src), "args": ["9"], "cflags": [], "ldflags": []}
    mgr.deploy(graph.from_json(text, str(tmp_path)))
    assert mgr.inject([udp(i) for i in range(50)], port=0) == 50
    out = mgr.capture(port=1, count=50, timeout=5, raw=True)
    assert len(out) == 50 and {p[-1] for p in out} == {9}
    bad = text.replace('"c": "%s"' % src, '"c": 5')
    with pytest.raises(onvm.ChainError, match=r'\{"c": "FILE.c"'):
        graph.from_json(bad)


def test_a_c_nf_shows_in_traces_and_rates_like_any_nf(mgr, built):
    mgr.launch(built["helpers"], service=1, name="chelp")
    mgr.set_default_chain([1, onvm.ToPort(1)])
    t = mgr.trace(udp(1234))
    assert [h.kind for h in t] == ["port", "nf", "exit"], t
    assert t[1].node == "chelp" and t[1].action == "next" and t.exit_port == 1
    telnet = mgr.trace(Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / TCP(sport=1, dport=23))
    assert telnet.dropped.node == "chelp" and telnet.dropped.reason == "NF returned DROP"
    mgr.inject([udp(i) for i in range(100)], port=0)
    mgr.capture(port=1, count=101, timeout=5)
    rates = mgr.rates(interval=0.5)["nfs"]
    assert [r["name"] for r in rates.values()] == ["chelp"]


def test_c_nf_from_a_file_finds_headers_beside_it_and_rebuilds_when_they_change(tmp_path):
    (tmp_path / "verdict.h").write_text("#define MY_PORT 23\n")
    src = tmp_path / "fw.c"
    src.write_text('#include "verdict.h"\n' + HELPERS.replace("t.dport == 23", "t.dport == MY_PORT"))
    first = onvm.c_nf(path=str(src))
    assert first.name == "fw" and os.path.exists(first.binary)
    assert onvm.c_nf(path=str(src)).binary == first.binary
    (tmp_path / "verdict.h").write_text("#define MY_PORT 24\n")
    assert onvm.c_nf(path=str(src)).binary != first.binary, "a changed header is a new build"
    (tmp_path / "verdict.h").write_text("#define MY_PORT (\n")
    with pytest.raises(cnf.CompileError, match=r"fw\.c:\d+:\d+: error"):
        onvm.c_nf(path=str(src))


def test_an_idle_c_nf_sleeps(mgr, built):
    nf = mgr.launch(built["fwd"], service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject([udp(1)], port=0)
    assert len(mgr.capture(port=1, count=1, timeout=5)) == 1

    def cpu_s():
        with open("/proc/%d/schedstat" % nf.pid) as f:
            return int(f.read().split()[0]) / 1e9
    c0 = cpu_s()
    time.sleep(1.0)
    assert cpu_s() - c0 < 0.1, "idle, it sleeps on its doorbell instead of polling"
    assert nf.stats()["wakeups"] >= 1


def test_onvm_build_passes_compiler_flags_on(tmp_path):
    out = tmp_path / "aes"
    p = subprocess.run(ONVM + ["build", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                     "examples", "aes_encrypt", "aes_encrypt.c"),
                               "-o", str(out), "-DAES_OPENSSL", "-lcrypto"], capture_output=True, text=True, timeout=300)
    if not os.path.exists("/usr/include/openssl/evp.h"):
        assert p.returncode == 1 and "openssl/evp.h" in p.stderr
        return
    assert p.returncode == 0, p.stderr
    needed = subprocess.run(["ldd", str(out)], capture_output=True, text=True).stdout
    assert "libcrypto" in needed and "libonvm_nf.so" in needed
