"""graph.check and graph files: every refusal names the node or edge, with
no manager (a refused graph never reaches one)."""
import json

import networkx as nx
import pytest

import onvm
from onvm import graph
from onvm.common import limits
from onvm.common.errors import ChainError
from onvm.graph import Port

FWD = onvm.native("forward")


def line(*names, ports=(0, 1), **attrs):
    """Port(in) -> names... -> Port(out), each node a forwarder."""
    g = nx.DiGraph()
    for n in names:
        g.add_node(n, nf=FWD, **attrs)
    hops = [Port(ports[0]), *names, Port(ports[1])]
    g.add_edges_from(zip(hops, hops[1:]))
    return g


def refused(g, words, nb_ports=2):
    with pytest.raises(ChainError, match=words):
        graph.check(g, nb_ports)


def test_a_line_gives_one_path_per_ingress_port():
    plan = graph.check(line("fw", "ids"), 2)
    assert plan.paths == {0: ["fw", "ids", Port(1)]}
    assert set(plan.nodes) == {"fw", "ids"} and plan.nodes["fw"]["replicas"] == 1
    assert plan.steer == {"fw": {"ids"}, "ids": {Port(1)}}


def test_steer_edges_and_per_port_paths():
    g = line("fw", "ids")
    g.add_edge("fw", Port(1), steer=True)
    g.add_node("back", nf=FWD)
    g.add_edge(Port(1), "back")
    g.add_edge("back", Port(0))
    plan = graph.check(g, 2)
    assert plan.paths == {0: ["fw", "ids", Port(1)], 1: ["back", Port(0)]}
    assert plan.steer["fw"] == {"ids", Port(1)}


def test_a_shared_node_splits_by_path_attribute():
    g = nx.DiGraph()
    g.add_node("fw", nf=FWD)
    g.add_edges_from([(Port(0), "fw"), (Port(1), "fw")])
    g.add_edge("fw", Port(1), path=0)
    g.add_edge("fw", Port(0), path=[1])
    assert graph.check(g, 2).paths == {0: ["fw", Port(1)], 1: ["fw", Port(0)]}


@pytest.mark.parametrize("g", [nx.Graph(), nx.MultiDiGraph(), [], None])
def test_only_a_digraph_is_a_deployment(g):
    refused(g, "a deployment is a networkx.DiGraph")


def test_a_port_the_manager_lacks():
    refused(line("fw", ports=(0, 3)), r"Port\(3\): the manager has no port 3 \(ports 0\.\.1\)")


@pytest.mark.parametrize("name", ["a b", "x" * 25, "123", "", "fw!", 7, ("fw",)])
def test_nf_node_names(name):
    g = nx.DiGraph()
    g.add_node(name, nf=FWD)
    refused(g, "an NF node is named by 1..24 letters")


def test_a_misspelt_attribute_gets_a_suggestion():
    refused(line("fw", replica=2), "node 'fw': unknown attribute 'replica' \\(did you mean 'replicas'\\?\\)")


def test_a_node_without_an_nf():
    g = line("fw")
    del g.nodes["fw"]["nf"]
    refused(g, "node 'fw' has no NF: give it nf=")


@pytest.mark.parametrize("nf", [5, "forward", int])
def test_an_nf_that_is_not_one(nf):
    g = line("fw")
    g.nodes["fw"]["nf"] = nf
    refused(g, "node 'fw': nf=.* is not an NF")


@pytest.mark.parametrize("replicas", [0, limits.ONVM_MAX_INSTANCES + 1, True, "2", 1.0])
def test_replicas_range(replicas):
    refused(line("fw", replicas=replicas), "node 'fw': replicas must be an int in 1..%d" % limits.ONVM_MAX_INSTANCES)


@pytest.mark.parametrize("attr", ["container", "flow_miss"])
def test_boolean_node_attributes(attr):
    refused(line("fw", **{attr: "yes"}), "node 'fw': %s must be True or False" % attr)


def test_one_miss_handler():
    g = line("a", "b")
    g.nodes["a"]["flow_miss"] = g.nodes["b"]["flow_miss"] = True
    refused(g, "nodes 'a' and 'b': flow_miss=True is the one miss handler")


def test_a_graph_of_ports_only():
    g = nx.DiGraph()
    g.add_edge(Port(0), Port(1))
    refused(g, "the graph has no NF node")


def test_a_misspelt_edge_attribute():
    g = line("fw")
    g.edges["fw", Port(1)]["stear"] = True
    refused(g, "edge node 'fw' -> Port\\(1\\): unknown attribute 'stear' \\(did you mean 'steer'\\?\\)")


def test_steer_is_a_bool():
    g = line("fw")
    g.edges["fw", Port(1)]["steer"] = 1
    refused(g, "steer must be True or False")


def test_ports_do_not_steer():
    g = line("fw")
    g.add_edge(Port(1), "fw", steer=True)
    refused(g, "only NFs steer; a port's edge is its path")


@pytest.mark.parametrize("path", [5, True, "0", [0, 9]])
def test_an_edge_path_names_a_port(path):
    g = line("fw")
    g.edges["fw", Port(1)]["path"] = path
    refused(g, "path=.* names no port of this manager")


def test_two_paths_out_of_a_port():
    g = line("a")
    g.add_node("b", nf=FWD)
    g.add_edges_from([(Port(0), "b"), ("b", Port(1))])
    refused(g, r"Port\(0\) has two paths out")


def test_a_path_that_loops():
    g = line("a", "b")
    g.remove_edge("b", Port(1))
    g.add_edge("b", "a")
    refused(g, r"the path from Port\(0\) loops: a -> b -> a")


def test_a_path_that_ends_at_an_nf():
    g = line("a", "b")
    g.remove_edge("b", Port(1))
    refused(g, r"the path from Port\(0\) ends at node 'b' without reaching a port")


def test_two_default_successors():
    g = line("a", "b")
    g.add_node("c", nf=FWD)
    g.add_edges_from([("a", "c"), ("c", Port(1))])
    refused(g, "node 'a' has two default successors on the path from Port\\(0\\)")


def test_a_path_longer_than_a_chain():
    names = ["n%d" % i for i in range(limits.ONVM_MAX_CHAIN)]
    refused(line(*names), "has %d hops; at most %d" % (limits.ONVM_MAX_CHAIN + 1, limits.ONVM_MAX_CHAIN))
    graph.check(line(*names[:-1]), 2)       # one fewer fits


def test_no_path_at_all():
    g = nx.DiGraph()
    g.add_node("fw", nf=FWD)
    g.add_edge("fw", Port(1))
    refused(g, "no path: add an edge from an onvm.Port")


def test_an_egress_only_port_needs_no_path():
    g = line("fw")
    g.add_node(Port(1))
    assert list(graph.check(g, 2).paths) == [0]


# ---- files ----------------------------------------------------------------------------

def test_a_graph_file_reads_back_as_the_same_graph():
    g = line("fw", "ids")
    g.nodes["ids"]["replicas"] = 2
    g.add_edge("fw", Port(1), steer=True)
    g.nodes["fw"]["note"] = "my own"                   # not saved
    text = graph.to_json(g)
    data = json.loads(text)
    assert {n["id"] for n in data["nodes"]} == {"port:0", "port:1", "fw", "ids"}
    h = graph.from_json(text)
    assert set(h.nodes) == set(g.nodes) and set(h.edges) == set(g.edges)
    assert h.nodes["ids"]["replicas"] == 2 and "note" not in h.nodes["fw"]
    assert h.edges["fw", Port(1)]["steer"] is True
    assert graph.check(h, 2).paths == graph.check(g, 2).paths


def test_a_notebook_nf_cannot_be_saved():
    g = line("fw")
    g.nodes["fw"]["nf"] = onvm.nf(lambda pkt: onvm.NEXT)
    with pytest.raises(ValueError, match="node 'fw': its NF was defined in a notebook"):
        graph.to_json(g)


def doc(nodes=None, links=None, **top):
    d = {"directed": True, "multigraph": False, "graph": {},
         "nodes": nodes if nodes is not None else [{"id": "port:0"}, {"id": "fw", "nf": {"native": "forward"}},
                                                   {"id": "port:1"}],
         "links": links if links is not None else [{"source": "port:0", "target": "fw"},
                                                   {"source": "fw", "target": "port:1"}]}
    d.update(top)
    return json.dumps(d)


def test_a_good_file_loads():
    g = graph.from_json(doc())
    assert set(g.nodes) == {Port(0), "fw", Port(1)}
    assert graph.check(g, 2).paths == {0: ["fw", Port(1)]}


@pytest.mark.parametrize("text, words", [
    ("[]", "a graph file holds a JSON object"),
    ("{", "not a node-link graph"),
    ('{"nodes": [NaN]}', "NaN is not a number a graph file may hold"),
    ("[" * 100000 + "]" * 100000, "nested too deeply|not a node-link graph"),
    (doc(extra=1), "unknown key 'extra' at the top"),
    (doc(directed=False), "a deployment is a directed graph"),
    (doc(graph={"a": 1}), '"graph" holds no attributes'),
    (doc(nodes={}), '"nodes" must be an array'),
    (doc(nodes=[{"name": "fw"}]), r"nodes\[0\]: a node is an object with a string \"id\""),
    (doc(nodes=[{"id": "fw", "replica": 2}]), "node 'fw': unknown attribute 'replica' \\(did you mean"),
    (doc(nodes=[{"id": "fw", "nf": {"native": 3}}]), "node 'fw': nf .*give"),
    (doc(nodes=[{"id": "fw", "nf": "forward"}], links=[]), "node 'fw': nf .*give"),
    (doc(links=[{"source": "port:0"}]), r"links\[0\]: a link is an object"),
    (doc(links=[{"source": "port:0", "target": "ids"}]), "no node 'ids' in \"nodes\""),
    (doc(links=[{"source": "port:0", "target": "fw", "weight": 2}]), "unknown attribute 'weight'"),
])
def test_file_refusals(text, words):
    with pytest.raises(ChainError, match=words):
        graph.from_json(text)


@pytest.mark.parametrize("node_id, words", [
    ("port:40", "node 'port:40': port must be an int in 0..31"),
    ("port:x", "node 'port:x': 'port:x': port:N takes a number"),
    ("svc:3", "node 'svc:3': a graph names its NF nodes"),
    ("3", "node '3': a graph names its NF nodes"),
    ("a b", "node 'a b': 'a b' is not a node name"),
])
def test_node_ids_are_read_as_hops(node_id, words):
    text = doc(nodes=[{"id": node_id}], links=[])
    with pytest.raises(ChainError, match=words):
        graph.from_json(text)


def test_an_unknown_native_nf_in_a_file():
    text = doc(nodes=[{"id": "fw", "nf": {"native": "firewal"}}], links=[])
    with pytest.raises(ChainError, match="node 'fw': no native NF called 'firewal'"):
        graph.from_json(text)
