"""Bad input gets a clear error naming the problem, and leaves the running
system as it was."""
import os
import subprocess
import sys

import pytest

import onvm
from conftest import udp


def test_bad_service_ids(mgr):
    with pytest.raises(ValueError, match="service ID"):
        mgr.launch(onvm.native("forward"), service=0)
    with pytest.raises(ValueError, match="service ID"):
        mgr.launch(onvm.native("forward"), service=256)
    with pytest.raises(ValueError, match="no service ID"):
        mgr.launch(onvm.native("forward"))
    with pytest.raises(ValueError, match="service ID"):
        onvm.ToService(300)
    assert mgr.stats()["nfs"] == {}


def test_unknown_native_nf_and_arguments():
    with pytest.raises(ValueError, match="no native NF called 'firewal'"):
        onvm.native("firewal")
    with pytest.raises(ValueError, match="generate: speed"):
        onvm.native("generate", speed=3)


def test_numbers_out_of_range_are_named_before_anything_starts(mgr):
    """No raw TypeError/OverflowError, and no wait that never ends (NaN and
    infinite timeouts): a ValueError naming the argument."""
    for bad in ("a", 63, 64.5, True, None):
        with pytest.raises(ValueError, match="hugepage_mb must be an int of MB in 64..1048576"):
            onvm.Manager(name="never", hugepage_mb=bad, start=False)
    with pytest.raises(ValueError, match="mbufs must be an int"):
        onvm.Manager(name="never", mbufs="many", start=False)
    with pytest.raises(ValueError, match=r"generate: count=10{30}|generate: count="):
        onvm.native("generate", count=10 ** 30)
    for call in (lambda t: mgr.capture(port=1, timeout=t), lambda t: mgr.inject([udp(1)], port=0, timeout=t),
                 lambda t: mgr.wait_idle(t), lambda t: mgr.trace(udp(1), timeout=t)):
        for bad in (float("nan"), float("inf"), -1, "1"):
            with pytest.raises(ValueError, match="timeout must be a number of seconds in 0..86400"):
                call(bad)
    with mgr.tap(port=1) as t:
        with pytest.raises(ValueError, match="timeout must be"):
            t.capture(timeout=float("nan"))
    assert mgr.stats()["ports"][0]["injected"] == 0


def test_ports_that_do_not_exist(mgr):
    mgr.launch(onvm.native("forward"), service=1)
    mgr.set_default_chain([1, onvm.ToPort(1)])
    with pytest.raises(ValueError, match="port 5 does not exist"):
        mgr.set_default_chain([1, onvm.ToPort(5)])
    assert mgr.default_chain == [onvm.ToService(1), onvm.ToPort(1)]   # unchanged
    with pytest.raises(ValueError, match="port 3 does not exist"):
        mgr.inject([udp(1)], port=3)
    with pytest.raises(ValueError, match="port 9 does not exist"):
        mgr.capture(port=9)
    with pytest.raises(ValueError, match="unknown port kind 'eth'"):
        onvm.Manager(ports=["ring", "eth"], start=False)
    # still works after all that
    assert mgr.inject([udp(1)], port=0) == 1
    assert len(mgr.capture(port=1, count=1, timeout=5)) == 1


def test_bad_chain_entries(mgr):
    with pytest.raises(onvm.ChainError, match="chain entry 1"):
        mgr.set_default_chain([1, "fw"])
    with pytest.raises(ValueError, match="service ID"):
        onvm.nf(service=300)(lambda pkt: onvm.NEXT)
    with pytest.raises(ValueError, match="chain entry 0"):
        mgr.set_default_chain([0])


def test_manager_already_running(mgr):
    with pytest.raises(onvm.OnvmError, match="already running"):
        onvm.Manager(name=mgr.name)
    assert mgr.running and mgr.stats()["pool"]["size"] > 0


def test_not_enough_hugepages():
    with pytest.raises(onvm.OnvmError, match="nr_hugepages"):
        onvm.Manager(name="toobig%d" % os.getpid(), hugepage_mb=1 << 20)


def test_duplicate_nf_name(mgr):
    mgr.launch(onvm.native("forward"), service=1)
    with pytest.raises(ValueError, match="already running"):
        mgr.launch(onvm.native("forward"), service=1)
    mgr.launch(onvm.native("forward"), service=1, name="forward2")
    assert "forward2" in mgr and len(mgr.nfs) == 2
    with pytest.raises(ValueError, match="NF name"):
        mgr.launch(onvm.native("forward"), service=1, name="../etc")


def test_nf_without_manager_says_so():
    r = subprocess.run([sys.executable, "-m", "onvm", "nf", "forward", "--service", "1",
                        "--manager", "nosuchmgr"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no manager named 'nosuchmgr'" in r.stderr


def test_cli_runs_a_manager_nf_chain_and_stats(tmp_path):
    name = "cli%d" % os.getpid()
    onvm_cmd = [sys.executable, "-m", "onvm"]
    (tmp_path / "my_nfs.py").write_text("import onvm\n\ndef tag(pkt):\n    pkt.data[-1] = 7\n"
                                        "    return onvm.NEXT\n")
    mgr = subprocess.Popen(onvm_cmd + ["mgr", "--name", name, "--quiet"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    nf = pynf = None
    try:
        assert "ready" in mgr.stdout.readline()
        nf = subprocess.Popen(onvm_cmd + ["nf", "forward", "--service", "2", "--manager", name],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert "registered" in nf.stdout.readline()
        pynf = subprocess.Popen(onvm_cmd + ["nf", "%s:tag" % (tmp_path / "my_nfs.py"), "--service", "3",
                                            "--manager", name],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert "registered" in pynf.stdout.readline()
        r = subprocess.run(onvm_cmd + ["chain", "2", "3", "port:1", "--manager", name],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        m = onvm.Manager.attach(name)
        try:
            m.inject([udp(sport=i) for i in range(20)], port=0)
            out = m.capture(port=1, count=20, timeout=5, raw=True)
            assert len(out) == 20 and all(p[-1] == 7 for p in out)
        finally:
            m.stop()
        bad = subprocess.run(onvm_cmd + ["chain", "2", "port:7", "--manager", name],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "port 7 does not exist" in bad.stderr
        bad = subprocess.run(onvm_cmd + ["nf", "forward", "--service", "999", "--manager", name],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "service ID must be an int in 1..255, got 999" in bad.stderr
        r = subprocess.run(onvm_cmd + ["stats", "--manager", name], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "forward" in r.stdout and "tag" in r.stdout and "pool:" in r.stdout
    finally:
        for p in (pynf, nf, mgr):
            if p is not None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    assert mgr.returncode == 0
    assert not os.path.exists(onvm.common.paths.run_dir(name))


def test_stop_while_a_stats_view_is_held():
    with onvm.Manager(name="view%d" % os.getpid()) as m:
        m.launch(onvm.native("forward"), service=1)
        m.set_default_chain([1, onvm.ToPort(1)])
        m.inject([udp(sport=i) for i in range(10)], port=0)
        assert len(m.capture(port=1, count=10, timeout=5)) == 10
        held = m.control.shm.ports[1].tx      # a live view into the control file
        assert held.tx == 10
        run_dir = onvm.common.paths.run_dir(m.name)
    assert not os.path.exists(run_dir)
    # the view still reads what it read (the mapping lives while a view
    # does): no crash, no garbage
    assert held.tx == 10


def test_refusals_keep_their_kind_across_the_control_socket(mgr):
    """errors.py's promise through a real manager: bad input raises
    ValueError, the system failing raises OnvmError (not a ValueError);
    the reply says which ("kind"), and a refusal changes nothing."""
    from onvm.common import paths, protocol
    from onvm.flows import Match
    from onvm.graph import Port

    def raw(req):
        return protocol.request(paths.sock_path(mgr.name), req, 10)
    # bad input, refused by the op's schema and by the C core (-EEXIST): "input", ValueError
    assert raw({"op": "set_chain", "chain": [[9, 1]]})["kind"] == "input"
    with pytest.raises(ValueError, match="set_chain: field 'chain'"):
        mgr.ctl.set_chain(chain=[[9, 1]])
    exact = Match("198.51.100.7", "203.0.113.5", "udp", 1, 2)
    mgr.flows.add(exact, [Port(1)])
    with pytest.raises(ValueError, match="exists already"):
        mgr.flows.add(exact, [Port(1)])
    # the system failing: the flow director holds ONVM_FLOW_MAX_PATHS distinct chains (-ENOSPC)
    added, failure = 1, None
    for s in range(1, 255):
        try:
            mgr.flows.add(Match(proto="udp", dport=s), [s, Port(1)])
            added += 1
        except Exception as e:      # which kind it is, is what this test checks
            failure = e
            break
    assert isinstance(failure, onvm.OnvmError) and not isinstance(failure, ValueError), repr(failure)
    assert "different chains already" in str(failure) and added == 192
    reply = raw({"op": "flow_add", "match": Match(proto="udp", dport=999).wire(), "chain": [[2, 254], [3, 1]],
                 "priority": 0})
    assert reply["ok"] is False and reply["kind"] == "system"
    # nothing changed, and the manager serves on
    assert len(mgr.flows.list()) == added and raw({"op": "ping"})["ok"]
