"""The dashboard's chain picture is a function of a graph and rates: drawn
here with no manager and no compiled core."""
import networkx as nx
import pytest

from onvm.dashboard import chain_svg, edge_rates, fmt_rate, node_rates, port_of
from onvm.graph import Port


def rates(nfs=None, ports=None):
    return {"nfs": nfs or {}, "ports": ports or {}}


def nf(service, rx, tx, drop=0.0, load=0.0):
    return {"service": service, "rx": rx, "tx": tx, "drop": drop, "load": load}


@pytest.fixture
def deployed():
    g = nx.DiGraph()
    g.add_node("fw", service=1)
    g.add_node("ids", service=2)
    g.add_edges_from([(Port(0), "fw"), ("fw", "ids"), ("ids", Port(1))])
    return g


def test_ports_are_found_by_kind_or_as_graph_ports():
    assert port_of(Port(3), {}) == 3
    assert port_of("port 2", {"kind": "port", "port": 2}) == 2
    assert port_of("fw", {"service": 1}) is None
    assert port_of((1, 2), {}) is None


def test_node_rates_sum_a_services_instances(deployed):
    r = rates({7: nf(1, 100.0, 90.0, 10.0, 0.5), 8: nf(1, 50.0, 50.0), 9: nf(2, 140.0, 140.0)},
              {0: {"rx": 150.0, "tx": 0.0, "drop": 0.0}, 1: {"rx": 0.0, "tx": 140.0, "drop": 0.0}})
    n = node_rates(deployed, r)
    assert n["fw"] == {"rx": 150.0, "tx": 140.0, "drop": 10.0, "load": 0.5}
    assert n[Port(0)]["load"] is None and n[Port(1)]["tx"] == 140.0
    assert node_rates(deployed, rates())["fw"]["load"] is None       # no instance: no load


def test_drops_count_as_load():
    g = nx.DiGraph()
    g.add_node("fw", service=1)
    n = node_rates(g, rates({1: nf(1, 75.0, 75.0, 25.0, 0.1)}))
    assert n["fw"]["load"] == 0.25


def test_edge_rates_exact_and_estimated():
    g = nx.DiGraph()
    g.add_node("lb", service=1)
    g.add_node("a", service=2)
    g.add_node("b", service=3)
    g.add_edges_from([(Port(0), "lb"), ("lb", "a"), ("lb", "b"), ("a", Port(1)), ("b", Port(1))])
    nodes = node_rates(g, rates({1: nf(1, 100.0, 100.0), 2: nf(2, 30.0, 30.0), 3: nf(3, 70.0, 70.0)},
                                {0: {"rx": 100.0}, 1: {"tx": 100.0}}))
    e = edge_rates(g, nodes)
    assert e[(Port(0), "lb")] == (100.0, True)
    assert e[("lb", "a")] == (30.0, True) and e[("lb", "b")] == (70.0, True)
    assert e[("a", Port(1))] == (30.0, True)      # a's whole output


def test_the_picture_draws_every_node_and_labelled_edge(deployed):
    svg = chain_svg(deployed, rates({1: nf(1, 1500.0, 1500.0), 2: nf(2, 1500.0, 1500.0)},
                                    {0: {"rx": 1500.0}, 1: {"tx": 1500.0}}))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("class='onvm-node'") == 4 and svg.count("<line ") == 3
    assert ">fw<" in svg and ">ids<" in svg and ">Port(0)<" in svg
    assert svg.count(">1.5k<") == 3


def test_an_empty_graph_says_so():
    assert "no chain set" in chain_svg(nx.DiGraph(), rates())


def test_labels_are_escaped():
    g = nx.DiGraph()
    g.add_node("fw", service=1, label="<b>fw</b>")
    assert "&lt;b&gt;fw&lt;/b&gt;" in chain_svg(g, rates()) and "<b>" not in chain_svg(g, rates())


@pytest.mark.parametrize("pps, text", [(0, "0"), (999.4, "999"), (1234.5, "1.2k"), (2.5e6, "2.5M"), (3e9, "3.0G")])
def test_rate_text(pps, text):
    assert fmt_rate(pps) == text
