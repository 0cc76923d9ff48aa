"""The control protocol's catalogue (onvm/common/ops.py) and its two typed
clients: every op of both sockets is declared once, the clients have one
method per op and no other, they check arguments with the manager's own
validators (the same words, before sending) and raise by the reply's kind.
A ControlServer in this process stands in for the manager: no DPDK."""
import inspect
import os

import pytest

from onvm.client import ControlClient, control_limits
from onvm.common import ops, protocol
from onvm.common.errors import OnvmError
from onvm.mgr import control
from onvm.nflib.door import DoorClient
from serving import polled

LIMITS = ops.Limits(nports=3, ring_ports=(0, 1))      # ring, ring, and a pcap port
OWNER = ops.owner_ops(LIMITS)
NF = ops.nf_ops()


def typed_methods(cls):
    """{name: keyword parameters} of a client class's public methods."""
    return {name: [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
            for name, fn in vars(cls).items() if inspect.isfunction(fn) and not name.startswith("_")}


# ---- the catalogue -----------------------------------------------------------------------

def test_the_catalogue_covers_both_sockets():
    cat = ops.catalogue(LIMITS)
    assert set(cat) == {ops.OWNER, ops.NF}
    assert {"ping", "shutdown", "nf_ticket", "inject", "capture", "set_chain", "apply", "tap_arm",
            "trace_read", "flow_add", "flow_add_many", "flow_list"} <= set(cat[ops.OWNER])
    assert set(cat[ops.NF]) == {"register", "ready", "leave", "flow_add", "flow_remove", "flow_events",
                                "flow_counters", "flow_miss"}
    # an NF can do nothing of the owner's but ask for its own flow rules
    assert set(cat[ops.OWNER]) & set(cat[ops.NF]) == {"flow_add", "flow_remove"}


@pytest.mark.parametrize("op", list(OWNER.values()) + list(NF.values()), ids=repr)
def test_each_op_is_declared_whole(op):
    assert op.socket == (ops.OWNER if op in OWNER.values() else ops.NF)
    assert op.doc and "\n" not in op.doc and op.doc.endswith("."), op.doc
    assert all(callable(check) for check in op.fields.values())
    assert all(isinstance(k, str) and k and k != "op" for k in op.fields)
    assert all(isinstance(k, str) for k in op.reply)
    # every field shows in the help a client method carries
    assert all("param %s:" % k in op.help() for k in op.fields)


def test_limits_shape_the_fields_that_depend_on_the_manager():
    small = ops.owner_ops(ops.Limits(2, (0,)))
    with pytest.raises(ValueError, match=r"replay: field 'port' must be in 0\.\.1, got 2"):
        small["replay"].request(port=2)
    assert ops.owner_ops(ops.Limits(4, (0,)))["replay"].request(port=2) == {"op": "replay", "port": 2}
    with pytest.raises(ValueError, match=r"port 1 is not a ring port; inject and capture work on ring ports \[0\]"):
        small["capture"].request(port=1, max=1)
    assert control_limits(["ring", "ring", "pcap:rx=a.pcap", "ring"]) == ops.Limits(4, (0, 1, 3))


def test_a_request_leaves_out_fields_at_their_default():
    # the manager fills in the same default; a field whose default its check
    # refuses (hop_limit 0: "none") could not be sent at all
    assert OWNER["apply"].request(paths=None, steer=None, names=[], members=[], hop_limit=0) == {"op": "apply"}
    assert OWNER["flow_list"].request(after=-1, max=0) == {"op": "flow_list", "max": 0}
    # the same type only: 0 is not False, and is refused as the manager refuses it
    with pytest.raises(ValueError, match="nf_ticket: field 'flow_miss' must be true or false, got an int"):
        OWNER["nf_ticket"].request(service=1, name="fw", flow_miss=0)


def test_a_request_is_checked_as_the_manager_will_read_it():
    # JSON has no tuples: the manager sees lists, and so does the check
    req = OWNER["set_chain"].request(chain=[(2, 1), (3, 0)])
    assert protocol.encode(req) == protocol.encode({"op": "set_chain", "chain": [[2, 1], [3, 0]]})
    with pytest.raises(ValueError, match="must be an int in 0..65535, got a float"):
        OWNER["set_chain"].request(chain=[[2.0, 1]])
    with pytest.raises(ValueError, match="inject: Object of type bytes is not JSON serializable"):
        OWNER["inject"].request(port=0, pkts=[b"x" * 60])


def test_the_framing_is_unchanged():
    assert protocol.encode({"op": "ping"}) == b'\x00\x00\x00\x0d{"op":"ping"}'
    assert protocol.encode(OWNER["ping"].request()) == b'\x00\x00\x00\x0d{"op":"ping"}'


# What the clients sent before the catalogue (their hand-built dicts): the
# manager's tables, now bound from the catalogue, take each as before.
OLD_REQUESTS = [
    {"op": "ping"}, {"op": "shutdown"}, {"op": "clear_capture"}, {"op": "trace_start"},
    {"op": "nf_ticket", "service": 3, "name": "fw.0", "flow_miss": False},
    {"op": "tap_arm", "where": 1, "target": 2, "filter": "", "ring_mb": 8}, {"op": "tap_disarm", "tap": 0},
    {"op": "inject", "port": 0, "pkts": [], "dropped": 5}, {"op": "replay", "port": 2},
    {"op": "set_chain", "chain": [[2, 1], [3, 1]]}, {"op": "trace_read", "id": 4}, {"op": "trace_read", "id": 4, "end": 1},
    {"op": "apply", "paths": [[[2, 1]], [], []], "steer": [[1, [1], [2]]], "names": [[1, "fw"]], "members": [[1, [0]]]},
    {"op": "flow_add", "match": {"src": [0, 0], "dst": [0, 0], "proto": 17, "sport": [0, 65535],
                                 "dport": [53, 53]}, "chain": [[3, 1]], "priority": 0, "idle_timeout": 0,
     "hard_timeout": 0},
    {"op": "flow_remove", "id": 7}, {"op": "flow_list", "after": -1}, {"op": "flow_list", "max": 0},
    {"op": "flow_config", "miss_service": 0},
]


@pytest.mark.parametrize("req", OLD_REQUESTS, ids=lambda r: r["op"])
def test_the_requests_clients_sent_before_are_served_as_before(req):
    table = ops.bind(OWNER, {name: (lambda conn, a: {}) for name in OWNER})
    op, args, _ = ops.validate(req, table)
    # and the typed request for the same arguments means the same to the manager
    typed = OWNER[op].request(**{k: v for k, v in req.items() if k != "op"})
    assert ops.validate(typed, table)[1] == args


def test_bind_refuses_a_gap_between_catalogue_and_handlers():
    handlers = {name: (lambda conn, a: {}) for name in NF}
    assert set(ops.bind(NF, handlers)) == set(NF)
    with pytest.raises(OnvmError, match="nf.sock: ops without a handler: flow_miss, leave"):
        ops.bind(NF, {k: v for k, v in handlers.items() if k not in ("leave", "flow_miss")})
    with pytest.raises(OnvmError, match="handlers not in onvm.common.ops: reboot"):
        ops.bind(NF, dict(handlers, reboot=lambda conn, a: {}))
    with pytest.raises(OnvmError, match="the handler of ready is not callable"):
        ops.bind(NF, dict(handlers, ready="op_ready"))


# ---- the typed clients: one method per op, and no other ------------------------------------

@pytest.mark.parametrize("cls, catalogue, extra", [(ControlClient, ops.owner_ops(), {"within"}),
                                                    (DoorClient, NF, set())])
def test_a_client_has_one_method_per_op_with_the_ops_fields(cls, catalogue, extra):
    methods = typed_methods(cls)
    assert set(methods) - extra == set(catalogue)
    for name, op in catalogue.items():
        params = methods[name]
        assert [p.name for p in params] == list(op.fields), name
        assert all(p.kind is p.KEYWORD_ONLY for p in params), name
        for p in params:
            check = op.fields[p.name]
            if isinstance(check, ops.Optional):
                assert p.default == check.default and type(p.default) is type(check.default), (name, p)
            else:
                assert p.default is p.empty, (name, p)
        assert getattr(cls, name).__doc__.startswith(op.help()), name


def test_an_unknown_op_cannot_be_asked_for():
    ctl = ControlClient("nosuch%d" % os.getpid())
    assert not hasattr(ctl, "reboot") and not hasattr(DoorClient(None), "set_chain")
    with pytest.raises(KeyError):
        ctl._call("reboot")


# ---- against a server: the same words, and the kind ----------------------------------------

def bad_input(conn, a):
    raise ValueError("tap %d is not armed" % a["tap"])


def system_failure(conn, a):
    raise OnvmError("the flow director holds 192 different chains already")


@pytest.fixture
def served(tmp_path):
    """The owner's ops, bound as the manager binds them, on a socket in this process."""
    handlers = {name: (lambda conn, a: {}) for name in OWNER}
    handlers.update(ping=lambda conn, a: {"pid": os.getpid(), "name": "unit", "nb_ports": LIMITS.nports},
                    tap_disarm=bad_input, flow_add=system_failure, trace_start=lambda conn, a: {"id": 1},
                    flow_list=lambda conn, a: {"rules": [], "more": False, "stats": dict(a)})
    server = control.ControlServer(log=lambda msg: None)
    path = str(tmp_path / "onvm.sock")
    server.listen(path, ops.bind(OWNER, handlers), max_request=protocol.MAX_REQUEST)
    with polled(server):
        ctl = ControlClient("unit", LIMITS, timeout=10)
        ctl.path = path
        yield ctl


BAD_CALLS = [
    ("set_chain", {"chain": [[9, 1]]}),
    ("set_chain", {"chain": [[2, 0]]}),
    ("set_chain", {"chain": [[3, 3]]}),
    ("set_chain", {"chain": [[2, 1]] * 17}),
    ("replay", {"port": 3}),
    ("capture", {"port": 2, "max": 1}),
    ("capture", {"port": 0, "max": -1}),
    ("inject", {"port": 0, "pkts": ["AAAA"]}),
    ("inject", {"port": 0, "pkts": ["!!"]}),
    ("nf_ticket", {"service": 0, "name": "fw"}),
    ("nf_ticket", {"service": 1, "name": "a b"}),
    ("tap_arm", {"where": 7, "target": 1}),
    ("tap_arm", {"where": 1, "target": 1, "filter": "x" * 2001}),
    ("trace_read", {"id": 0}),
    ("flow_list", {"after": -2}),
    ("flow_add", {"match": {"src": [0, 0]}, "chain": [[3, 1]], "priority": 0}),
    ("flow_add", {"match": {"src": [0, 0], "dst": [0, 0], "proto": 17, "sport": [0, 1], "dport": [0, 1]},
                  "chain": [], "priority": 0}),
    ("flow_add_many", {"rules": [{"priority": 0}]}),
    ("flow_add_many", {"rules": []}),
    ("apply", {"members": [[1, [200]]]}),
    ("apply", {"hop_limit": 256}),
    ("flow_config", {"miss_service": 256}),
]


@pytest.mark.parametrize("op, args", BAD_CALLS, ids=lambda x: x if isinstance(x, str) else "")
def test_a_bad_argument_gets_the_managers_own_words_before_anything_is_sent(served, op, args):
    wire = {"op": op, **args}
    reply = protocol.request(served.path, wire, 10)       # what the manager answers to it
    assert reply["ok"] is False and reply["kind"] == "input", reply
    with pytest.raises(ValueError) as e:
        getattr(served, op)(**args)
    assert str(e.value) == reply["error"]


def test_the_typed_client_raises_by_the_replys_kind(served):
    assert served.ping() == {"pid": os.getpid(), "name": "unit", "nb_ports": 3}
    assert served.flow_list(max=0)["stats"] == {"after": -1, "max": 0}      # the default, filled in there
    with pytest.raises(ValueError, match="^tap 3 is not armed$") as e:
        served.tap_disarm(tap=3)
    assert type(e.value) is ValueError
    with pytest.raises(OnvmError, match="192 different chains") as e:
        served.flow_add(match={"src": [0, 0], "dst": [0, 0], "proto": 17, "sport": [0, 1], "dport": [0, 1]},
                        chain=[[3, 1]], priority=0)
    assert not isinstance(e.value, ValueError)


def test_a_manager_that_is_not_running_is_a_system_failure(tmp_path):
    ctl = ControlClient("nosuch%d" % os.getpid())
    ctl.path = str(tmp_path / "onvm.sock")
    with pytest.raises(OnvmError, match="is not running"):
        ctl.ping()


def test_within_changes_only_the_timeout(served):
    quick = served.within(2)
    assert (quick.timeout, served.timeout) == (2, 10)
    assert quick.path == served.path and quick.ping()["name"] == "unit"


@pytest.mark.parametrize("reply, kind", [({"ok": True, "x": 1}, None), ({"ok": False, "error": "e", "kind": "input"},
                                                                          ValueError),
                                         ({"ok": False, "error": "e", "kind": "system"}, OnvmError),
                                         ({"ok": False, "error": "e"}, ValueError), ([], ValueError)])
def test_outcome(reply, kind):
    if kind is None:
        assert ops.outcome(reply) == {"x": 1}
    else:
        with pytest.raises(kind):
            ops.outcome(reply)
