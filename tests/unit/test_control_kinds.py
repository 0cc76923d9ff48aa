"""A refusal keeps its kind on the wire: the control server (in this
process, no manager) says "input" or "system", and the client's
protocol.refusal raises ValueError or OnvmError from it."""
import os

import pytest

from onvm.common import ops, protocol
from onvm.common.errors import OnvmError
from onvm.mgr import control
from serving import polled


def bad_input(conn, args):
    raise ValueError("no such rule %d" % args["n"])


def system_failure(conn, args):
    raise OnvmError("the flow table is full")


def internal(conn, args):
    raise KeyError("a bug")


@pytest.fixture
def served(tmp_path):
    logged = []
    server = control.ControlServer(log=logged.append)
    path = str(tmp_path / "ctl.sock")
    server.listen(path, {"bad": ({"n": ops.Int(0, 9)}, bad_input), "full": ({}, system_failure),
                         "bug": ({}, internal), "ping": ({}, lambda conn, args: {"pid": os.getpid()})},
                  max_request=4096)
    with polled(server):
        yield lambda req: protocol.request(path, req, 10)


@pytest.mark.parametrize("req, kind, words", [
    ({"op": "bad", "n": 3}, "input", "no such rule 3"),
    ({"op": "bad", "n": 30}, "input", "bad: field 'n' must be in 0..9"),
    ({"op": "bad"}, "input", "bad: field 'n' is missing"),
    ({"op": "nope"}, "input", "unknown op 'nope'"),
    ({"op": "ping", "x": 1}, "input", "ping: unknown field 'x'"),
    ({"op": "ping", "pad": "x" * 5000}, "input", "is too large"),
    ({"op": "full"}, "system", "the flow table is full"),
    ({"op": "bug"}, "system", "internal error in bug"),
])
def test_replies_carry_the_kind(served, req, kind, words):
    reply = served(req)
    assert reply["ok"] is False and reply["kind"] == kind and words in reply["error"], reply
    exc = protocol.refusal(reply)
    assert type(exc) is (ValueError if kind == "input" else OnvmError) and words in str(exc)


def test_a_served_request_has_no_kind(served):
    assert served({"op": "ping"}) == {"pid": os.getpid(), "ok": True}


@pytest.mark.parametrize("reply, kind", [({"ok": False, "error": "x", "kind": "system"}, OnvmError),
                                         ({"ok": False, "error": "x", "kind": "input"}, ValueError),
                                         ({"ok": False, "error": "x"}, ValueError),       # an older manager
                                         ({"ok": False}, ValueError)])
def test_the_client_side_of_the_kind(reply, kind):
    e = protocol.refusal(reply)
    assert type(e) is kind and str(e) in ("x", "the manager refused the request")
