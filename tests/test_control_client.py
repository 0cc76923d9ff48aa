"""The typed clients against a real manager: Manager.ctl (onvm.client) for
the owner's socket and DoorClient (onvm.nflib.door) for nf.sock.  Bad input
raises ValueError in the manager's own words, a system failure OnvmError,
every op answers the fields the catalogue (onvm.common.ops) declares, and
an op the manager does not have cannot be asked for."""
import socket
import time

import pytest

import onvm
from conftest import udp
from onvm.common import ops, paths, protocol
from onvm.common.match import Match
from onvm.nflib.door import DoorClient


def raw(mgr, req):
    """The manager's reply to req sent as is, past the typed client."""
    return protocol.request(paths.sock_path(mgr.name), req, 10)


def test_bad_input_raises_value_error_in_the_managers_words(mgr):
    # refused before sending, with the words the manager answers the same request with
    reply = raw(mgr, {"op": "set_chain", "chain": [[9, 1]]})
    assert reply["ok"] is False and reply["kind"] == "input"
    with pytest.raises(ValueError) as e:
        mgr.ctl.set_chain(chain=[[9, 1]])
    assert str(e.value) == reply["error"] and "set_chain: field 'chain'[0]" in str(e.value)
    # the manager's ring ports are the client's: port 2 does not exist here
    with pytest.raises(ValueError, match=r"capture: field 'port' must be in 0\.\.1, got 2"):
        mgr.ctl.capture(port=2, max=1)
    # refused by the manager itself (its state, not the request's shape): kind "input"
    with pytest.raises(ValueError, match="^tap 5 is not armed$") as e:
        mgr.ctl.tap_disarm(tap=5)
    assert type(e.value) is ValueError
    assert mgr.ctl.ping()["pid"] == mgr.process.pid


def test_a_system_failure_raises_onvm_error_and_changes_nothing(mgr):
    # the flow director holds ONVM_FLOW_MAX_PATHS distinct chains; the next is -ENOSPC
    added, failure = 0, None
    for s in range(1, 255):
        try:
            mgr.ctl.flow_add(match=Match(proto="udp", dport=s).wire(), chain=[[2, s], [3, 1]], priority=0)
            added += 1
        except Exception as e:      # its kind is what this test checks
            failure = e
            break
    assert added == onvm.common.limits.ONVM_FLOW_MAX_PATHS
    assert isinstance(failure, onvm.OnvmError) and not isinstance(failure, ValueError), repr(failure)
    assert "different chains already" in str(failure)
    listed = mgr.ctl.flow_list()
    assert len(listed["rules"]) == added and listed["stats"]["rules"] == added


def test_the_nf_door_client_keeps_the_kinds(mgr):
    door = paths.nf_sock_path(mgr.name)

    def connected():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(door)
        return s
    # bad input: refused before sending, in the words the manager answers it with
    with connected() as s:
        protocol.send(s, {"op": "register", "name": "a b", "kind": "python", "service": 1})
        reply = protocol.recv(s)
    assert reply["ok"] is False and reply["kind"] == "input"
    with connected() as s, pytest.raises(ValueError) as e:
        DoorClient(s).register(name="a b", kind="python", service=1)
    assert str(e.value) == reply["error"]
    # the manager will not: no launch ticket ("system"); no slot is given out
    with connected() as s, pytest.raises(onvm.OnvmError, match="register needs the launch ticket") as e:
        DoorClient(s).register(name="fw", kind="python", service=1)
    assert not isinstance(e.value, ValueError)
    # an owner's op is not on the NF's client, and the door refuses it sent raw
    assert not hasattr(DoorClient(None), "set_chain")
    with connected() as s:
        protocol.send(s, {"op": "set_chain", "chain": []})
        assert "unknown op 'set_chain'" in protocol.recv(s)["error"]
    assert mgr.stats()["nfs"] == {}


def test_an_unknown_op_cannot_be_asked_for(mgr):
    assert not hasattr(mgr.ctl, "reboot")
    with pytest.raises(TypeError):
        mgr.ctl.ping(op="reboot")            # no field can smuggle another op in
    with pytest.raises(TypeError):
        mgr.ctl.set_chain([[2, 1]])          # fields by name only
    # only the catalogue's ops are served: the manager's answer to a raw one
    reply = raw(mgr, {"op": "reboot"})
    assert reply["kind"] == "input" and "unknown op 'reboot'" in reply["error"]
    assert reply["error"].endswith("(ops: %s)" % ", ".join(sorted(ops.owner_ops())))


def test_every_owner_op_answers_what_the_catalogue_says(mgr):
    """Each op through the typed client, against the manager: the answer
    has the fields the catalogue declares, no more, no less."""
    cat = ops.owner_ops()
    fw = mgr.launch(onvm.native("forward"), service=1)
    answers = {
        "ping": mgr.ctl.ping(),
        "set_chain": mgr.ctl.set_chain(chain=[[2, 1], [3, 1]]),
        "nf_ticket": mgr.ctl.nf_ticket(service=2, name="later"),
        "clear_capture": mgr.ctl.clear_capture(),
        "inject": mgr.ctl.inject(port=0, pkts=[bytes(udp(i)) for i in range(5)]),
    }
    assert answers["inject"]["sent"] == 5
    got, deadline = [], time.monotonic() + 10
    while len(got) < 5 and time.monotonic() < deadline:
        answers["capture"] = mgr.ctl.capture(port=1, max=5)
        got += answers["capture"]["pkts"]
    assert sorted(got) == sorted(bytes(udp(i)) for i in range(5))      # bytes in, bytes out
    answers["tap_arm"] = tap = mgr.ctl.tap_arm(where=1, target=1)
    answers["tap_disarm"] = mgr.ctl.tap_disarm(tap=tap["tap"])
    answers["trace_start"] = trace = mgr.ctl.trace_start()
    answers["trace_read"] = mgr.ctl.trace_read(id=trace["id"], end=1)
    answers["apply"] = mgr.ctl.apply(hop_limit=32)
    wire = Match(proto="udp", dport=53).wire()
    answers["flow_add"] = rule = mgr.ctl.flow_add(match=wire, chain=[[2, 1], [3, 1]], priority=5, idle_timeout=30000)
    answers["flow_add_many"] = many = mgr.ctl.flow_add_many(
        rules=[{"match": Match(proto="udp", dport=d).wire(), "chain": [[3, 1]], "priority": 1} for d in (54, 55)])
    answers["flow_list"] = listed = mgr.ctl.flow_list()
    assert sorted(r["id"] for r in listed["rules"]) == sorted([rule["rule"]["id"]] + many["ids"])
    answers["flow_remove"] = mgr.ctl.flow_remove(id=rule["rule"]["id"])
    answers["flow_config"] = mgr.ctl.flow_config(miss_service=0)
    assert fw.alive
    answers["shutdown"] = mgr.ctl.shutdown()
    assert mgr.process.wait(20) == 0
    skipped = set(cat) - set(answers)
    assert skipped == {"replay"}          # needs a pcap port: tests/test_traffic.py replays through it
    for name, answer in answers.items():
        assert set(answer) == set(cat[name].reply), (name, answer)


def test_a_manager_whose_handlers_and_catalogue_differ_does_not_start(tmp_path):
    """ops.bind at the daemon's start: an op in the catalogue with no handler
    stops the manager before it serves anything, naming the op, and leaves
    nothing behind."""
    import os
    import subprocess
    import sys

    from conftest import need_hugepages
    need_hugepages()
    name = "gap%d" % os.getpid()
    code = ("import sys\n"
            "from onvm.common import ops\n"
            "owner_ops = ops.owner_ops\n"
            "ops.owner_ops = lambda limits=ops.WIDEST: dict(owner_ops(limits), reboot=ops.Op('reboot', ops.OWNER, 'x.'))\n"
            "from onvm.mgr import daemon\n"
            "sys.exit(daemon.main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "--name", name, "--hugepage-mb", "64", "--mbufs", "4095", "--ring-mb", "1"],
                       capture_output=True, text=True, timeout=120, env=paths.dpdk_env())
    assert r.returncode == 2, r.stdout + r.stderr
    assert "onvm.sock: ops without a handler: reboot" in r.stdout + r.stderr
    assert not os.path.exists(paths.run_dir(name)) and not os.path.exists(paths.sock_path(name))
