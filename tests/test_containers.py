"""NFs in Docker containers: real engine, real images, real manager.
scripts/setup.sh starts the engine and builds the images; the fixture
builds what is missing (onvm images build), so the images carry this code."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import onvm
from conftest import udp, wait_for
from onvm import containers
from onvm.common import paths


@pytest.fixture(scope="module")
def client():
    c = containers.engine()           # no engine: fails naming how to start one
    containers.build_images()
    return c


def labelled(client, manager):
    return containers.labelled(client, manager)


def flows(n, per_flow=1, tag=b""):
    return [udp(sport=1000 + f, payload=b"onvm-test-payload-%d-%d%s" % (f, k, tag))
            for k in range(per_flow) for f in range(n)]


def test_chain_of_process_and_container_nf_is_byte_exact(client, mgr):
    @onvm.nf(service=2)
    def mark(pkt):                       # travels into the container by value
        pkt.data[-1] = 0x42
        return onvm.NEXT

    mgr.launch(onvm.native("forward"), service=1)
    box = mgr.launch(mark, container=True)
    mgr.set_default_chain([1, 2, onvm.ToPort(1)])
    pkts = [bytes(p) for p in flows(1000)]
    assert mgr.inject(pkts) == 1000
    out = mgr.capture(port=1, count=1000, timeout=20, raw=True)
    assert sorted(out) == sorted(p[:-1] + b"\x42" for p in pkts)
    assert box.stats()["rx"] == 1000
    assert mgr.wait_idle(5)


def test_container_replicas_keep_flows_moving_when_one_is_killed(client, mgr):
    a, b = mgr.launch(onvm.native("forward"), service=1, replicas=2, container=True)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    assert mgr.inject(flows(64, 4)) == 256
    assert len(mgr.capture(port=1, count=256, timeout=10, raw=True)) == 256
    assert a.stats()["rx"] > 0 and b.stats()["rx"] > 0       # both took flows
    # Flow affinity: the same flows again land on the same replica.
    before = a.stats()["rx"], b.stats()["rx"]
    mgr.inject(flows(64, 4))
    assert len(mgr.capture(port=1, count=256, timeout=10, raw=True)) == 256
    assert (a.stats()["rx"] - before[0], b.stats()["rx"] - before[1]) == before

    client.containers.get(a.process.id).kill()               # docker kill
    assert wait_for(lambda: a.instance not in dict(mgr.control.nf_slots()), 10)
    assert mgr.inject(flows(64, 4, b"-after")) == 256
    assert len(mgr.capture(port=1, count=256, timeout=10, raw=True)) == 256
    assert mgr.wait_idle(10)                                 # what it held went back to the pool
    assert wait_for(lambda: a.process.id not in [c.id for c in labelled(client, mgr.name)], 10)


def test_an_onvm_without_its_source_tree_uses_the_images_present(client, tmp_path):
    """pip-installed onvm (the package alone, no docker/ beside it): with
    the image there, build_images() has nothing to do and needs no source
    tree; with it missing, it says the source tree is what it lacks."""
    import shutil
    shutil.copytree(os.path.dirname(onvm.__file__), tmp_path / "onvm",
                    ignore=shutil.ignore_patterns("__pycache__", "_data"))
    code = "from onvm import containers; print(containers.__file__, containers.build_images(%s))"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code % ""], env=env, cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / "onvm" / "containers.py"), "[]"], r.stdout
    r = subprocess.run([sys.executable, "-c", code % "lab=True, force=True"], env=env, cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "needs the onvm source tree" in r.stderr.splitlines()[-1], r.stderr


def test_docker_inspect_shows_least_privilege(client, mgr):
    nf = mgr.launch(onvm.native("forward"), service=1, container={"memory": "256m", "cpus": 0.5, "pids": 32})
    info = client.api.inspect_container(nf.process.id)
    host = info["HostConfig"]
    assert host["Privileged"] is False
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] in (["SYS_NICE"], ["CAP_SYS_NICE"])
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert not any("seccomp" in o for o in host["SecurityOpt"])      # the engine's default profile
    assert host["PidsLimit"] == 32 and host["Memory"] == 256 << 20 and host["NanoCpus"] == 5 * 10 ** 8
    assert info["Config"]["User"] == "%d:%d" % (os.geteuid(), os.getegid())
    assert info["Config"]["Labels"][containers.LABEL_MANAGER] == mgr.name
    # What it can reach: nf.sock (read-only), DPDK's files and this manager's hugepages.
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts[containers.DOOR]["Source"] == paths.nf_sock_path(mgr.name) and not mounts[containers.DOOR]["RW"]
    allowed = set(containers.dpdk_files(mgr.name)) | {paths.nf_sock_path(mgr.name)}
    assert {m["Source"] for m in info["Mounts"]} <= allowed
    for f in ("onvm.sock", "onvm.shm", "onvm.lock", "nf-0.stats"):
        assert os.path.join(paths.run_dir(mgr.name), f) not in {m["Source"] for m in info["Mounts"]}
    assert all(os.path.basename(m["Source"]).startswith(paths.file_prefix(mgr.name))
               for m in info["Mounts"] if m["Source"].startswith("/dev/hugepages"))


def test_container_nf_cannot_change_tables_or_manage(client, mgr):
    state = {}

    @onvm.nf(service=1)
    def probe(pkt):
        import ctypes
        import json
        import socket

        from onvm.common import protocol
        if state:
            return onvm.NEXT
        state["done"] = True

        def ask(req):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect("/onvm/nf.sock")
                protocol.send(s, req)
                return protocol.recv(s)
        mgr_dir = os.path.join("/var/run/dpdk", os.listdir("/var/run/dpdk")[0])
        found = {"files": sorted(os.listdir(mgr_dir)),
                 "set_chain": ask({"op": "set_chain", "chain": [[1, 0]]}),
                 "shutdown": ask({"op": "shutdown"})}
        # The control file is mapped read-only from a read-only fd: no way to write it.
        libc = ctypes.CDLL(None, use_errno=True)
        for line in open("/proc/self/maps"):
            if line.rstrip().endswith("onvm.shm"):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                found["mprotect"] = (libc.mprotect(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 3),
                                     ctypes.get_errno())
        print("PROBE " + json.dumps(found), flush=True)
        return onvm.NEXT

    nf = mgr.launch(probe, container=True)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    mgr.inject(udp(1))
    assert len(mgr.capture(port=1, count=1, timeout=10)) == 1
    assert wait_for(lambda: "PROBE" in nf.log(), 10)
    import json
    found = json.loads(nf.log().split("PROBE ", 1)[1].splitlines()[0])
    assert "onvm.sock" not in found["files"] and "onvm.shm" not in found["files"]
    assert not any(f.endswith(".stats") for f in found["files"])
    for op in ("set_chain", "shutdown"):
        assert found[op]["ok"] is False and "unknown op" in found[op]["error"]
    assert found["mprotect"] == [-1, 13]                       # EACCES
    assert mgr.default_chain == [onvm.ToService(1), onvm.ToPort(1)]
    assert mgr.running


def test_nf_image_built_on_onvm_nf(client, mgr, tmp_path):
    (tmp_path / "ids.py").write_text(textwrap.dedent("""
        import onvm
        def inspect(pkt):
            return onvm.DROP if bytes(pkt.data[-4:]) == b"evil" else onvm.NEXT
    """))
    (tmp_path / "Dockerfile").write_text("FROM %s\nCOPY ids.py /nf/\nLABEL %s=ids:inspect\n"
                                         % (containers.nf_image(), containers.LABEL_TARGET))
    client.images.build(path=str(tmp_path), tag="onvm-test/ids:1.2", network_mode="none", rm=True)
    try:
        ids = mgr.launch(onvm.image("onvm-test/ids:1.2"), service=3)
        mgr.set_default_chain([3, onvm.ToPort(1)])
        mgr.inject([udp(1, payload=b"fine"), udp(2, payload=b"evil"), udp(3, payload=b"good")])
        assert len(mgr.capture(port=1, count=2, timeout=10)) == 2
        assert wait_for(lambda: ids.stats()["actions"]["drop"] == 1, 5)
    finally:
        mgr.stop()
        client.images.remove("onvm-test/ids:1.2", force=True)


def test_bad_images_and_code_fail_clearly_and_leave_nothing(client, mgr, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no onvm NF runtime.*FROM onvm/nf"):
        mgr.launch(onvm.image(containers.LOCAL_BASE, nf="forward"), service=1)
    with pytest.raises(onvm.OnvmError, match="not on this machine"):
        mgr.launch(onvm.image("onvm-test/nothing-here:0"), service=1)
    with pytest.raises(ValueError, match="container limit 'disk' is unknown"):
        mgr.launch(onvm.native("forward"), service=1, container={"disk": "1g"})
    # Code that imports fine here but not in the image.
    (tmp_path / "onvm_test_hostonly.py").write_text("def verdict():\n    import onvm\n    return onvm.NEXT\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import onvm_test_hostonly

    def uses_host_module(pkt):
        return onvm_test_hostonly.verdict()
    with pytest.raises(onvm.OnvmError, match="has no module 'onvm_test_hostonly'.*onvm.image"):
        mgr.launch(uses_host_module, service=1, container=True)
    assert wait_for(lambda: not labelled(client, mgr.name), 10)
    # No engine: the error says how to start one.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(onvm.OnvmError, match="dockerd --bridge=none"):
        mgr.launch(onvm.native("forward"), service=1, container=True)
    assert mgr.nfs == [] and dict(mgr.control.nf_slots()) == {}


def test_stop_and_cleanup_remove_every_container(client):
    with onvm.Manager(name="tc%d" % os.getpid()) as m:
        m.launch(onvm.native("forward"), service=1, replicas=2, container=True)
        assert len(labelled(client, m.name)) == 2
    assert labelled(client, m.name) == []

    m = onvm.Manager(name="tk%d" % os.getpid())
    try:
        m.launch(onvm.native("forward"), service=1, replicas=2, container=True)
        m.process.send_signal(signal.SIGKILL)
        m.process.wait()
        subprocess.run([sys.executable, "-m", "onvm", "cleanup", "--manager", m.name], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        assert labelled(client, m.name) == []
    finally:
        m.stop()


def test_a_container_nf_asks_for_rules_through_its_door_within_its_rights(client, mgr):
    """onvm.flows.add() inside a container NF (the control file comes over
    nf.sock: no path to it is mounted), and the same requests from a
    container NF in no chain (issue 18, item 2) are refused."""
    from test_flows import ATTACK, X, assert_firewall_held, door_asker, firewall, replies_of

    @onvm.nf
    def classify(pkt):
        try:
            onvm.flows.add(onvm.Match.of(pkt), [onvm.Port(1)])
        except onvm.OnvmError as e:
            print("refused:", e, flush=True)
        return onvm.NEXT

    nf = mgr.launch(classify, service=2, container=True)
    mgr.set_default_chain([2, onvm.ToPort(1)])
    assert mgr.inject(udp(4000, **X)) == 1
    assert len(mgr.capture(port=1, count=1, timeout=10)) == 1
    assert wait_for(lambda: [r.installer for r in mgr.flows.list()] == ["classify"], 10), nf.log()
    assert mgr.inject([udp(4000, **X)] * 10) == 10
    assert len(mgr.capture(port=1, count=10, timeout=10)) == 10
    assert nf.stats()["rx"] == 1, "the flow's later packets skip it"
    nf.stop()
    mgr.flows.clear()

    fw = mgr.launch(firewall(), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    evil = mgr.launch(door_asker(ATTACK), service=50, container=True)
    replies = replies_of(evil)
    assert_firewall_held(mgr, lambda: fw.stats()["rx"])
    assert [r["ok"] for r in replies] == [False] * 3 and mgr.flows.list() == []
