"""Service chains as networkx graphs, deployed on a real manager: paths per
ingress port, validation, live redeploys, code swaps, steering rules."""
import json
import os
import subprocess
import sys
import threading
import time

import networkx as nx
import pytest

import onvm
from conftest import marker, udp, wait_for
from onvm import Port


@onvm.nf
def tag_fw(pkt):
    pkt.data[-1] = 0xF1
    return onvm.NEXT


@onvm.nf
def tag_ids(pkt):
    pkt.data[-2] = 0x1D
    return onvm.NEXT


def issue_graph():
    """The graph of the issue: two ingress paths sharing ids."""
    g = nx.DiGraph()
    g.add_node("fw", nf=tag_fw, owner="alice")           # a free-form attribute is kept
    g.add_node("ids", nf=tag_ids, replicas=2)
    g.add_edge(Port(0), "fw")
    g.add_edge("fw", "ids")
    g.add_edge("ids", Port(1))
    g.add_edge(Port(1), "ids")
    g.add_edge("ids", Port(0))
    g.add_edge("fw", Port(1), steer=True)
    return g


def test_each_ingress_port_follows_its_own_path(mgr):
    dep = mgr.deploy(issue_graph())
    sent = [bytes(udp(sport=i, payload=b"graph-payload-..")) for i in range(100)]
    assert mgr.inject(sent, port=0) == 100
    out1 = mgr.capture(port=1, count=100, timeout=10, raw=True)
    assert sorted(out1) == sorted(p[:-2] + b"\x1d\xf1" for p in sent)      # fw then ids
    assert mgr.inject(sent, port=1) == 100
    out0 = mgr.capture(port=0, count=100, timeout=10, raw=True)
    assert sorted(out0) == sorted(p[:-2] + b"\x1d" + p[-1:] for p in sent)  # ids only
    g = dep.graph
    assert g.nodes["fw"]["owner"] == "alice"
    assert g.nodes["ids"]["rx"] == 200 and g.nodes["ids"]["instances"] == 2
    assert g.edges[Port(0), "fw"]["packets"] == 100
    assert dep._repr_png_().startswith(b"\x89PNG")
    assert mgr.wait_idle()


def snapshot(mgr):
    """What a refused graph must leave alone."""
    return ([mgr.control.path(p) for p in range(2)], mgr.control.service_names(),
            sorted((n.name, n.pid) for n in mgr.nfs))


@pytest.mark.parametrize("change, words", [
    (lambda g: g.add_node("x"), "node 'x' has no NF"),
    (lambda g: g.add_node("x", nf=42), "node 'x': nf=42 is not an NF"),
    (lambda g: g.nodes["ids"].update(replica=3), "unknown attribute 'replica' (did you mean 'replicas'?)"),
    (lambda g: g.nodes["ids"].update(replicas=0), "node 'ids': replicas must be an int in 1..32"),
    (lambda g: g.nodes["ids"].update(replicas=33), "node 'ids': replicas must be an int in 1..32"),
    (lambda g: g.add_edge("fw", Port(5), steer=True), "Port(5): the manager has no port 5"),
    (lambda g: (g.add_node("x", nf=tag_fw), g.add_edge("ids", "x"), g.add_edge("x", Port(1))),
     "node 'ids' has two default successors on the path from Port(0): Port(1), node 'x'"),
    (lambda g: (g.remove_edge("ids", Port(1)), g.remove_edge("ids", Port(0))),
     "the path from Port(0) ends at node 'ids' without reaching a port"),
    (lambda g: (g.remove_edge("ids", Port(1)), g.add_edge("ids", "fw")), "loops"),
    (lambda g: g.add_edge(Port(0), "ids"), "Port(0) has two paths out"),
    (lambda g: g.add_edge(Port(1), "fw", steer=True), "only NFs steer"),
    (lambda g: g.edges["fw", "ids"].update(steeer=True), "unknown attribute 'steeer' (did you mean 'steer'?)"),
    (lambda g: g.add_node("../x", nf=tag_fw), "an NF node is named by"),
])
def test_a_refused_graph_names_the_problem_and_changes_nothing(mgr, change, words):
    mgr.deploy(issue_graph())
    before = snapshot(mgr)
    g = issue_graph()
    change(g)
    with pytest.raises(onvm.ChainError) as e:
        mgr.deploy(g)
    assert words in str(e.value)
    assert snapshot(mgr) == before


class Traffic:
    """Paced traffic in a thread: `rate` packets per second over `flows`
    flows into port 0, everything captured from port 1."""

    def __init__(self, mgr, rate, flows=256):
        self.mgr, self.rate = mgr, rate
        self.flows = [bytes(udp(sport=1000 + i, src="198.51.100.%d" % (1 + i % 200))) for i in range(flows)]
        self.sent, self.out = 0, []
        self.stop = threading.Event()
        self.th = threading.Thread(target=self.run)

    def run(self):
        start, deadline = time.monotonic(), time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            due = int((time.monotonic() - start) * self.rate)
            if due > self.sent:
                burst = [self.flows[(self.sent + i) % len(self.flows)] for i in range(min(due - self.sent, 4096))]
                self.sent += self.mgr.inject(burst, port=0)
            self.out += self.mgr.capture(port=1, raw=True)
            time.sleep(0.005)

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.th.join()
        self.out += self.mgr.capture(port=1, count=self.sent - len(self.out), timeout=20, raw=True)


@onvm.nf
def tag_instance(pkt):
    pkt.data[-1] = onvm.current_nf().instance
    return onvm.NEXT


def drops(mgr):
    """Every drop counter that is not zero, to say where packets went."""
    s = mgr.stats()
    out = {}
    for kind, items in (("nf", s["nfs"]), ("port", s["ports"])):
        for k, v in items.items():
            for c, n in v.items():
                if isinstance(n, int) and n and ("drop" in c or c in ("refused", "recovered", "chain_end",
                                                                      "steer_refused", "hop_limit")):
                    out["%s %s %s" % (kind, v.get("name", k), c)] = n
            if kind == "nf" and v["actions"]["drop"]:
                out["nf %s DROP" % v["name"]] = v["actions"]["drop"]
    return out


def linear(nodes):
    g = nx.DiGraph()
    prev = Port(0)
    for name, nf, replicas in nodes:
        g.add_node(name, nf=nf, replicas=replicas)
        g.add_edge(prev, name)
        prev = name
    g.add_edge(prev, Port(1))
    return g


def test_redeploys_under_traffic_lose_nothing_and_keep_flows_in_place(mgr):
    fwd = onvm.native("forward")
    mgr.deploy(linear([("a", fwd, 1), ("lb", tag_instance, 2)]))
    placements = []

    def where():
        """instance serving each flow, from the last packet of each flow seen"""
        seen = {}
        for p in t.out[-2000:]:
            seen[p[:-1]] = p[-1]
        return seen

    with Traffic(mgr, rate=20000) as t:
        steps = [
            linear([("a", fwd, 1), ("b", fwd, 1), ("lb", tag_instance, 2)]),       # a node added
            linear([("a", fwd, 1), ("b", fwd, 1), ("lb", tag_instance, 3)]),       # replicas 2 -> 3
            linear([("b", fwd, 1), ("lb", tag_instance, 3)]),                       # a node removed
            linear([("b", fwd, 1), ("lb", tag_instance, 1)]),                       # replicas 3 -> 1
            linear([("lb", tag_instance, 1), ("b", fwd, 1)]),                       # edges changed
        ]
        time.sleep(0.5)
        for g in steps:
            placements.append(where())
            mgr.deploy(g)
            time.sleep(0.5)
        placements.append(where())
    assert t.sent > 10000
    assert len(t.out) == t.sent, ("no packet lost across five live redeploys", drops(mgr))
    # replicas 2 -> 3: about a third of the flows moved, all of them to the new replica
    before, after = placements[1], placements[2]
    moved = [f for f in before if f in after and before[f] != after[f]]
    assert 0.15 < len(moved) / len(before) < 0.5, (len(moved), len(before))
    assert len({after[f] for f in moved}) == 1
    s = mgr.stats()
    assert sum(n["refused"] + n["chain_end"] for n in s["nfs"].values()) == 0
    assert s["ports"][0]["rx_refused"] == 0 and s["ports"][0]["rx_chain_end"] == 0
    assert mgr.wait_idle()


def test_ten_code_swaps_under_traffic_lose_nothing(mgr):
    g = linear([("m", marker(0), 2)])
    mgr.deploy(g)
    with Traffic(mgr, rate=50000) as t:
        time.sleep(0.3)
        for k in range(1, 11):
            g.nodes["m"]["nf"] = marker(k)       # a student edits the cell and redeploys
            mgr.deploy(g)
            mark = len(t.out)
            assert wait_for(lambda mark=mark: len(t.out) > mark + 500, 10)
            assert t.out[-1][-1] == k, "packets after the swap show the new code's mark"
    assert t.sent > 50000
    assert len(t.out) == t.sent, ("zero loss over ten swaps", drops(mgr))
    marks = [p[-1] for p in t.out]
    assert set(marks) == set(range(11))
    assert mgr.wait_idle()


@onvm.nf
def steer_nowhere(pkt):
    return onvm.ToPort(0)          # no edge to Port(0): refused


@onvm.nf
def ping(pkt):
    return onvm.ToService("pong")


@onvm.nf
def pong(pkt):
    return onvm.ToService("ping")


def test_steering_follows_the_edges_and_loops_end_at_the_hop_limit(mgr):
    g = nx.DiGraph()
    g.add_node("bad", nf=steer_nowhere)
    g.add_edge(Port(0), "bad")
    g.add_edge("bad", Port(1))
    dep = mgr.deploy(g)
    mgr.inject([udp(sport=i) for i in range(10)], port=0)
    (bad,) = dep["bad"]
    assert wait_for(lambda: bad.stats()["steer_refused"] == 10)
    assert mgr.capture(port=0, timeout=0.3, raw=True) == []

    g = nx.DiGraph()
    g.add_node("ping", nf=ping)
    g.add_node("pong", nf=pong)
    g.add_edge(Port(0), "ping")
    g.add_edge("ping", Port(1))
    g.add_edge("ping", "pong", steer=True)
    g.add_edge("pong", "ping", steer=True)
    dep = mgr.deploy(g)
    mgr.inject([udp(sport=i) for i in range(10)], port=0)
    nfs = dep["ping"] + dep["pong"]
    assert wait_for(lambda: sum(n.stats()["hop_limit"] for n in nfs) == 10)
    # 32 hand-ons allowed (the limit), so each packet reached an NF 33 times
    assert sum(n.stats()["rx"] for n in nfs) == 10 * 33
    assert mgr.wait_idle()


NF_FILE = '''import onvm

def stamp(pkt):
    pkt.data[-1] = 0x5A
    return onvm.NEXT
'''


def test_a_graph_file_deploys_the_same_from_python_and_the_command_line(tmp_path):
    (tmp_path / "my_nfs.py").write_text(NF_FILE)
    g = nx.DiGraph()
    g.add_node("stamp", nf=onvm.load_nf(str(tmp_path / "my_nfs.py") + ":stamp"))
    g.add_node("count", nf=onvm.native("count"), replicas=2)
    g.add_edge(Port(0), "stamp")
    g.add_edge("stamp", "count")
    g.add_edge("count", Port(1))
    g.add_edge("stamp", Port(0), steer=True)
    pid = os.getpid()
    with onvm.Manager(name="gpy%d" % pid) as a:
        a.deploy(g).save(str(tmp_path / "chain.json"))
        py_tables = ([a.control.path(p) for p in range(2)], a.control.service_names())
    data = json.loads((tmp_path / "chain.json").read_text())
    assert {n["id"] for n in data["nodes"]} == {"stamp", "count", "port:0", "port:1"}
    name = "gcli%d" % pid
    mgr = subprocess.Popen([sys.executable, "-m", "onvm", "mgr", "--name", name, "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "ready" in mgr.stdout.readline()
        r = subprocess.run([sys.executable, "-m", "onvm", "deploy", str(tmp_path / "chain.json"),
                            "--manager", name], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        b = onvm.Manager.attach(name)
        try:
            assert ([b.control.path(p) for p in range(2)], b.control.service_names()) == py_tables
            b.inject([udp(sport=i) for i in range(20)], port=0)
            out = b.capture(port=1, count=20, timeout=10, raw=True)
            assert len(out) == 20 and all(p[-1] == 0x5A for p in out)
        finally:
            b.stop()
        bad = subprocess.run([sys.executable, "-m", "onvm", "deploy", str(tmp_path / "nope.json"),
                              "--manager", name], capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "nope.json" in bad.stderr
    finally:
        mgr.terminate()
        try:
            mgr.wait(30)
        except subprocess.TimeoutExpired:
            mgr.kill()
            mgr.wait()
    assert mgr.returncode == 0


def test_a_notebook_function_cannot_be_saved_to_a_file(mgr, tmp_path):
    dep = mgr.deploy(issue_graph())
    with pytest.raises(ValueError, match="node 'fw': its NF was defined in a notebook"):
        dep.save(str(tmp_path / "x.json"))


def test_a_redeploy_that_cannot_start_rolls_back():
    with onvm.Manager(name="roll%d" % os.getpid(), max_nfs=3) as mgr:
        g = linear([("a", onvm.native("forward"), 1), ("b", onvm.native("forward"), 1)])
        mgr.deploy(g)
        before = snapshot(mgr)
        bigger = linear([("a", onvm.native("forward"), 1), ("b", onvm.native("forward"), 1),
                         ("c", onvm.native("forward"), 1), ("d", onvm.native("forward"), 1)])
        with pytest.raises(onvm.OnvmError, match="all 3 NF slots are in use"):
            mgr.deploy(bigger)                     # c starts, d cannot: c is stopped again
        assert snapshot(mgr) == before
        assert wait_for(lambda: len(mgr.stats()["nfs"]) == 2, 5)
        mgr.inject([udp(sport=i) for i in range(10)], port=0)
        assert len(mgr.capture(port=1, count=10, timeout=5)) == 10


def malformed_graph_files(d):
    """Graph files that are wrong in every way we could think of: not JSON,
    not an object, nested deeply, wrong types, unknown attributes, names and
    links that do not exist.  returns: their paths."""
    fwd = {"native": "forward"}
    ports = [{"id": "port:0"}, {"id": "port:1"}]
    links = [{"source": "port:0", "target": "a"}, {"source": "a", "target": "port:1"}]

    def graph(nodes, links=links, **top):
        return json.dumps(dict({"directed": True, "multigraph": False, "graph": {}, "nodes": nodes,
                                "links": links}, **top))

    def node_a(**attrs):
        return graph(ports + [dict(id="a", **attrs)])
    files = {
        "empty": "", "notjson": "not json {", "number": "5", "array": "[1, 2]", "null": "null", "string": '"g"',
        "emptyobj": "{}", "deep_array": "[" * 100000 + "]" * 100000,
        "deep_attr": '{"nodes": [{"id": "a", "nf": ' + '{"x":' * 50000 + "1" + "}" * 50000 + "}], \"links\": []}",
        "nodes_number": '{"nodes": 5, "links": []}', "nodes_of_ints": '{"nodes": [5], "links": []}',
        "links_number": graph(ports + [dict(id="a", nf=fwd)], 5), "no_nf_node": graph(ports, []),
        "python_5": node_a(nf={"python": 5}), "native_5": node_a(nf={"native": 5}),
        "args_5": node_a(nf={"native": "generate", "args": 5}),
        "args_str": node_a(nf={"native": "generate", "args": {"rate": "x"}}),
        "args_huge": node_a(nf={"native": "generate", "args": {"count": 10 ** 30}}),
        "args_nan": node_a(nf={"native": "generate", "args": {"rate": float("nan")}}),
        "nf_string": node_a(nf="forward"), "nf_int": node_a(nf=5), "nf_empty": node_a(nf={}),
        "nf_unknown": node_a(nf={"native": "firewal"}), "nf_extra_key": node_a(nf={"native": "drop", "x": 1}),
        "python_missing": node_a(nf={"python": "missing.py:fn"}),
        "python_no_function": node_a(nf={"python": "/etc/passwd"}),
        "python_raises": node_a(nf={"python": "raises.py:fn"}),
        "node_int_id": graph(ports + [{"id": 5, "nf": fwd}]), "node_no_id": graph(ports + [{"nf": fwd}]),
        "port_x": graph([{"id": "port:x"}, {"id": "port:1"}, {"id": "a", "nf": fwd}],
                        [{"source": "port:x", "target": "a"}, {"source": "a", "target": "port:1"}]),
        "port_99": graph(ports + [{"id": "port:99"}, {"id": "a", "nf": fwd}],
                         links + [{"source": "a", "target": "port:99"}]),
        "link_to_nowhere": graph(ports + [{"id": "a", "nf": fwd}], links + [{"source": "a", "target": "zzz"}]),
        "link_no_target": graph(ports + [{"id": "a", "nf": fwd}], [{"source": "port:0"}]),
        "replicas_str": node_a(nf=fwd, replicas="2"), "replicas_1000": node_a(nf=fwd, replicas=1000),
        "replicas_inf": node_a(nf=fwd, replicas=1e400), "container_yes": node_a(nf=fwd, container="yes"),
        "unknown_node_attr": node_a(nf=fwd, cpu=2), "typo_node_attr": node_a(nf=fwd, replica=2),
        "unknown_edge_attr": graph(ports + [{"id": "a", "nf": fwd}], [dict(links[0], weight=1), links[1]]),
        "unknown_top_key": graph(ports + [{"id": "a", "nf": fwd}], extra=1),
        "graph_attrs": graph(ports + [{"id": "a", "nf": fwd}]).replace('"graph": {}', '"graph": [1]'),
        "steer_yes": graph(ports + [{"id": "a", "nf": fwd}], links + [{"source": "a", "target": "port:0",
                                                                       "steer": "yes"}]),
        "path_x": graph(ports + [{"id": "a", "nf": fwd}], [dict(links[0], path="x"), links[1]]),
        "loop": graph(ports + [{"id": "a", "nf": fwd}, {"id": "b", "nf": fwd}],
                      [links[0], {"source": "a", "target": "b"}, {"source": "b", "target": "a"}]),
        "multigraph": graph(ports + [{"id": "a", "nf": fwd}], multigraph=True),
        "undirected": graph(ports + [{"id": "a", "nf": fwd}], directed=False),
        "bad_name": graph(ports + [{"id": "a b", "nf": fwd}],
                          [{"source": "port:0", "target": "a b"}, {"source": "a b", "target": "port:1"}]),
    }
    out = []
    for name, text in files.items():
        (d / (name + ".json")).write_text(text)
        out.append(d / (name + ".json"))
    (d / "raises.py").write_text("1 / 0\n")
    (d / "latin1.json").write_bytes(b'{"nodes": [{"id": "\xff\xfe"}], "links": []}')
    (d / "a_directory.json").mkdir()
    return out + [d / "latin1.json", d / "a_directory.json", d / "missing.json"]


def test_malformed_graph_files_get_one_line_and_a_nonzero_exit(mgr, tmp_path, capsys):
    """`onvm deploy` of each: no traceback, one line naming the problem,
    exit status 2, and the manager runs no graph and no NF afterwards."""
    from onvm.face import cli
    files = malformed_graph_files(tmp_path)
    assert len(files) >= 50
    for f in files:
        with pytest.raises(SystemExit) as e:       # any other exception is the traceback we refuse
            cli.main(["deploy", str(f), "--manager", mgr.name])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2, (f.name, err)
        assert len(err.splitlines()) == 1 and err.startswith("onvm: "), (f.name, err)
        assert mgr.control.service_names() == {} and mgr.stats()["nfs"] == {}, f.name
    for name, words in (("unknown_node_attr", "node 'a': unknown attribute 'cpu'"),
                        ("unknown_edge_attr", "unknown attribute 'weight'"),
                        ("typo_node_attr", "did you mean 'replicas'"),
                        ("python_5", 'nf {"python": 5}'), ("deep_array", "nested too deeply"),
                        ("array", "holds a JSON object"), ("python_raises", "ZeroDivisionError")):
        r = subprocess.run([sys.executable, "-m", "onvm", "deploy", str(tmp_path / (name + ".json")),
                            "--manager", mgr.name], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
    # the checks refuse only what is wrong: the same graph, well formed, deploys
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"directed": True, "multigraph": False, "graph": {}, "nodes": [
        {"id": "port:0"}, {"id": "port:1"}, {"id": "a", "nf": {"native": "forward"}, "replicas": 2}],
        "links": [{"source": "port:0", "target": "a"}, {"source": "a", "target": "port:1"}]}))
    assert cli.main(["deploy", str(good), "--manager", mgr.name]) == 0
    assert mgr.control.service_names() == {1: "a"}
