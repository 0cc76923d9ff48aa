"""DPDK's own tools against a running manager, run with the exact commands
`onvm doctor` prints (onvm.face.doctor.dpdk_tools): dpdk-dumpcap records a port,
dpdk-proc-info and the telemetry socket count what mgr.stats() counts."""
import json
import os
import re
import select
import subprocess
import sys
import time

import onvm
from conftest import udp
from onvm.common import paths
from onvm.face.doctor import dpdk_tools

TIMEOUT = 60


def run_tool(env, argv, **kw):
    return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=TIMEOUT, **kw)


def read_until(proc, pattern, timeout):
    """Read proc's output (unbuffered: dumpcap's counter ends lines with \r
    only) until it matches pattern or timeout.  returns: what was read."""
    seen = ""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen) and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk.decode(errors="replace")
    return seen


def test_dumpcap_records_a_port_and_counters_agree(mgr, tmp_path):
    mgr.launch(onvm.native("forward"), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    out = str(tmp_path / "port1.pcapng")
    env, cmds, ethdev = dpdk_tools(mgr.name, port=1, count=100, path=out)
    assert "--no-pci" in cmds["proc-info"] and os.path.isdir(env["SYSFS_PCI_DEVICES"])
    assert os.listdir(env["SYSFS_PCI_DEVICES"]) == []      # dumpcap's PCI bus: empty

    pkts = [udp(sport=1000 + i, payload=b"dumpcap-%03d" % i) for i in range(100)]
    dumpcap = subprocess.Popen(cmds["dumpcap"], env={**os.environ, **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        seen = read_until(dumpcap, r"Packets captured", TIMEOUT)   # capturing now
        assert "Packets captured" in seen, seen
        assert mgr.inject(pkts, port=0) == 100
        dumpcap.wait(TIMEOUT)                                  # -c 100: it stops by itself
        seen += read_until(dumpcap, r"$^", 1)                  # the rest, up to EOF
        assert dumpcap.returncode == 0, seen
        assert "not driven by the primary" not in seen         # it never looked at this machine's NIC
    finally:
        if dumpcap.poll() is None:
            dumpcap.kill()
            dumpcap.wait()
    from scapy.utils import rdpcap
    assert [bytes(p) for p in rdpcap(out)] == [bytes(p) for p in pkts]
    r = subprocess.run(["tshark", "-r", out, "-T", "fields", "-e", "udp.srcport"], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.stdout.split() == [str(1000 + i) for i in range(100)]
    assert len(mgr.capture(port=1, count=100, timeout=5)) == 100   # the original went on

    # More traffic, then quiet: every tool counts what mgr.stats() counts.
    assert mgr.inject([udp(sport=7) for _ in range(250)], port=0) == 250
    assert mgr.wait_idle(timeout=10)
    stats = mgr.stats()["ports"]
    assert stats[0]["rx"] == 350 and stats[1]["tx"] == 350

    r = run_tool(env, cmds["proc-info"])
    assert r.returncode == 0, r.stderr
    blocks = dict(re.findall(r"NIC statistics for port (\d+)\s+#+\n(.*?)#####", r.stdout, re.S))
    for p, e in ethdev.items():
        rx = int(re.search(r"RX-packets:\s+(\d+)", blocks[str(e)]).group(1))
        tx = int(re.search(r"TX-packets:\s+(\d+)", blocks[str(e)]).group(1))
        assert (rx, tx) == (stats[p]["rx"], stats[p]["tx"]), (p, blocks[str(e)])

    query = "".join("/ethdev/stats,%d\n" % e for e in ethdev.values())
    r = run_tool(env, cmds["telemetry"], input=query)
    assert r.returncode == 0, r.stderr
    replies = [json.loads(line)["/ethdev/stats"] for line in r.stdout.splitlines() if "/ethdev/stats" in line]
    assert [(t["ipackets"], t["opackets"]) for t in replies] == \
        [(stats[p]["rx"], stats[p]["tx"]) for p in ethdev]
    assert os.path.exists(os.path.join(paths.run_dir(mgr.name), "dpdk_telemetry.v2"))


def test_doctor_prints_the_commands_for_a_running_manager(mgr):
    r = subprocess.run([sys.executable, "-m", "onvm", "doctor"], capture_output=True, text=True, timeout=120)
    prefix = paths.file_prefix(mgr.name)
    lines = [ln.strip() for ln in r.stdout.splitlines()]
    i = next(k for k, ln in enumerate(lines) if ln.startswith("ok   manager %s: running" % mgr.name))
    mine = lines[i + 1:i + 5]
    assert mine[0] == "DPDK port ids: onvm 0 -> 0, onvm 1 -> 1"
    assert mine[1].endswith("dpdk-dumpcap --file-prefix=%s -i 0 -c 100 -w port0.pcapng" % prefix)
    assert "SYSFS_PCI_DEVICES=%s/no-pci" % paths.run_dir(mgr.name) in mine[1]
    assert mine[2] == "counters:  dpdk-proc-info --file-prefix=%s --no-pci -- --stats" % prefix
    assert mine[3].startswith("telemetry: dpdk-telemetry.py -f %s" % prefix)
    assert os.path.join(paths.run_dir(mgr.name), "dpdk_telemetry.v2") in mine[3]
