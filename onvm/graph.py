"""Service chains as networkx graphs.

A graph describes a deployment; `mgr.deploy(g)` makes it real:

    g = nx.DiGraph()
    g.add_node("fw", nf=firewall)
    g.add_node("ids", nf=onvm.native("count"), replicas=2)
    g.add_edge(onvm.Port(0), "fw")        # the path of packets entering port 0
    g.add_edge("fw", "ids")
    g.add_edge("ids", onvm.Port(1))
    g.add_edge("fw", onvm.Port(1), steer=True)   # fw may ToPort(1); no edge: refused
    dep = mgr.deploy(g)

Nodes are onvm.Port(n) or NF nodes named by strings, with `nf=` (an
@onvm.nf function, onvm.native(...)), `replicas=` (1..32), `flow_miss=True`
(at most one node: the flow table's miss handler, see onvm.flows) and any
attributes of your own.  Default edges (no `steer`) make one path per ingress port: a
packet that entered port p follows p's path, NF after NF, to a port.  Steer
edges are the other places an NF may send packets (ToService("name") or
ToPort(n)).  Everything is checked before anything starts; a refused graph
changes nothing (onvm.ChainError names the node or edge).

Redeploying applies only the difference, live: new instances start first
(in no service), then one table update switches paths, rules and instance
sets, then what was removed leaves and hands on what is in its rings.  A
node whose `nf` changed gets new instances of the same service (make before
break): no packet is lost; per-flow state in the old instances is not
carried over."""
import difflib
import json
import os
import re

import networkx as nx

from .common.abi import lib
from .common.errors import ChainError
from .common.spec import NativeNF, NFSpec, load_nf, native

NODE_ATTRS = ("nf", "replicas", "container", "flow_miss")
EDGE_ATTRS = ("steer", "path")
# attributes a running deployment writes into dep.graph: accepted back, not checked
LIVE_ATTRS = ("service", "instances", "rx", "tx", "dropped", "rx_pps", "tx_pps", "pps", "packets")
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,24}")


class Port:
    """A manager port as a graph node: onvm.Port(1)."""
    __slots__ = ("index",)

    def __init__(self, index):
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < lib.ONVM_MAX_PORTS:
            raise ValueError("port must be an int in 0..%d, got %r" % (lib.ONVM_MAX_PORTS - 1, index))
        object.__setattr__(self, "index", index)

    def __setattr__(self, name, value):
        raise AttributeError("ports are immutable")

    def __eq__(self, other):
        return isinstance(other, Port) and other.index == self.index

    def __hash__(self):
        return hash(("onvm.Port", self.index))

    def __lt__(self, other):       # ports sort among themselves (drawing, JSON)
        return isinstance(other, Port) and self.index < other.index

    def __reduce__(self):
        return (Port, (self.index,))

    def __repr__(self):
        return "Port(%d)" % self.index


def _where(node):
    return repr(node) if isinstance(node, Port) else "node %r" % (node,)


def _check_attrs(what, attrs, known):
    for k in attrs:
        if k in known or k in LIVE_ATTRS:
            continue
        close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.75)
        if close:
            raise ChainError("%s: unknown attribute %r (did you mean %r?)" % (what, k, close[0]))


def nf_key(nf):
    """What makes two NFs the same code: a native NF's name and arguments, a
    Python NF's pickled function (a re-run cell with unchanged code gives
    the same bytes, an edited one does not)."""
    if isinstance(nf, NativeNF):
        return ("native", nf.name, tuple(sorted(nf.args.items())))
    if isinstance(nf, NFSpec):
        import cloudpickle
        return ("python", nf.batch, cloudpickle.dumps(nf.fn))
    raise TypeError(nf)


def as_nf(node, value):
    """The NF object a node's nf= names, or ChainError."""
    if isinstance(value, (NFSpec, NativeNF)):
        return value
    if callable(value) and not isinstance(value, type):
        return NFSpec(value)
    if value is None:
        raise ChainError("node %r has no NF: give it nf=... (an @onvm.nf function or onvm.native(...))" % (node,))
    raise ChainError("node %r: nf=%r is not an NF (an @onvm.nf function or onvm.native(...))" % (node, value))


class Plan:
    """A checked graph: its NF nodes, one path per ingress port, and where
    each node may steer."""

    def __init__(self, nodes, paths, steer):
        self.nodes = nodes      # name -> {"nf", "replicas", "container"}
        self.paths = paths      # ingress port -> [node name ..., Port]
        self.steer = steer      # name -> set of node names and Ports


def check(g, nb_ports):
    """Check a graph against a manager with nb_ports ports.  returns: a Plan;
    raises ChainError naming the node or edge."""
    if not isinstance(g, nx.DiGraph) or isinstance(g, nx.MultiDiGraph):
        raise ChainError("a deployment is a networkx.DiGraph, got %s" % type(g).__name__)
    nodes = {}
    for node, attrs in g.nodes(data=True):
        if isinstance(node, Port):
            if node.index >= nb_ports:
                raise ChainError("%r: the manager has no port %d (ports 0..%d)" % (node, node.index, nb_ports - 1))
            continue
        if not isinstance(node, str) or not NAME_RE.fullmatch(node):
            raise ChainError("node %r: an NF node is named by 1..24 letters, digits, - or _ "
                             "(ports are onvm.Port(n))" % (node,))
        _check_attrs("node %r" % node, attrs, NODE_ATTRS)
        nf = as_nf(node, attrs.get("nf"))
        replicas = attrs.get("replicas", 1)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or \
                not 1 <= replicas <= lib.ONVM_MAX_INSTANCES:
            raise ChainError("node %r: replicas must be an int in 1..%d, got %r"
                             % (node, lib.ONVM_MAX_INSTANCES, replicas))
        container = attrs.get("container", False)
        if not isinstance(container, bool):
            raise ChainError("node %r: container must be True or False, got %r" % (node, container))
        flow_miss = attrs.get("flow_miss", False)
        if not isinstance(flow_miss, bool):
            raise ChainError("node %r: flow_miss must be True or False, got %r" % (node, flow_miss))
        nodes[node] = {"nf": nf, "replicas": replicas, "container": container, "flow_miss": flow_miss}
    misses = [n for n, a in nodes.items() if a["flow_miss"]]
    if len(misses) > 1:
        raise ChainError("nodes %s: flow_miss=True is the one miss handler; give it to one node"
                         % " and ".join(repr(n) for n in misses))
    if not nodes:
        raise ChainError("the graph has no NF node")
    for u, v, attrs in g.edges(data=True):
        _check_attrs("edge %s -> %s" % (_where(u), _where(v)), attrs, EDGE_ATTRS)
        if not isinstance(attrs.get("steer", False), bool):
            raise ChainError("edge %s -> %s: steer must be True or False" % (_where(u), _where(v)))
        if attrs.get("steer") and isinstance(u, Port):
            raise ChainError("edge %s -> %s: only NFs steer; a port's edge is its path" % (_where(u), _where(v)))
        if "path" in attrs:
            ps = attrs["path"] if isinstance(attrs["path"], (list, tuple, set)) else [attrs["path"]]
            for p in ps:
                if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < nb_ports:
                    raise ChainError("edge %s -> %s: path=%r names no port of this manager"
                                     % (_where(u), _where(v), attrs["path"]))

    def default_next(node, port):
        """Default successors of node on the path of packets entering port."""
        out = []
        for _, v, attrs in g.out_edges(node, data=True):
            if attrs.get("steer"):
                continue
            p = attrs.get("path")
            if p is None or p == port or (isinstance(p, (list, tuple, set)) and port in p):
                out.append(v)
        if len(out) > 1 and Port(port) in out:
            out.remove(Port(port))     # not back out of the port it came in on, when there is a choice
        return out

    paths = {}
    for port in sorted(n for n in g.nodes if isinstance(n, Port)):
        first = default_next(port, port.index)
        if not first:
            continue            # an egress-only port
        if len(first) > 1:
            raise ChainError("%r has two paths out: %s; one default edge per ingress port"
                             % (port, ", ".join(_where(v) for v in first)))
        path, cur = [], first[0]
        while not isinstance(cur, Port):
            if cur in path:
                raise ChainError("the path from %r loops: %s -> %s" % (port, " -> ".join(path), cur))
            path.append(cur)
            nxt = default_next(cur, port.index)
            if not nxt:
                raise ChainError("the path from %r ends at node %r without reaching a port"
                                 % (port, cur))
            if len(nxt) > 1:
                raise ChainError("node %r has two default successors on the path from %r: %s (give "
                                 "edges path=N, or make one steer=True)"
                                 % (cur, port, ", ".join(_where(v) for v in nxt)))
            cur = nxt[0]
        if len(path) + 1 > lib.ONVM_MAX_CHAIN:
            raise ChainError("the path from %r has %d hops; at most %d" % (port, len(path) + 1, lib.ONVM_MAX_CHAIN))
        paths[port.index] = path + [cur]
    if not paths:
        raise ChainError("no path: add an edge from an onvm.Port(n) to the first NF")
    steer = {n: {v for v in g.successors(n)} for n in nodes}
    return Plan(nodes, paths, steer)


# ---- files -----------------------------------------------------------------------------

def to_json(g):
    """A graph as networkx node-link JSON: ports as "port:N", NFs by native
    name (with arguments) or FILE.py:FUNCTION.  Only what a deployment
    reads is saved (nf, replicas, container; steer, path): attributes of
    your own stay in Python, so every saved file loads back."""
    h = nx.DiGraph()
    for node, attrs in g.nodes(data=True):
        key = "port:%d" % node.index if isinstance(node, Port) else node
        out = {k: v for k, v in attrs.items() if k in NODE_ATTRS}
        if "nf" in out:
            nf = as_nf(node, out["nf"])
            if isinstance(nf, NativeNF):
                out["nf"] = {"native": nf.name, "args": nf.args}
            elif isinstance(nf, NFSpec) and getattr(nf, "source", None):
                out["nf"] = {"python": nf.source, "batch": nf.batch}
            else:
                raise ValueError("node %r: its NF was defined in a notebook or session; a file names it as "
                                 "FILE.py:FUNCTION (put the function in a .py file and load it with "
                                 "onvm.load_nf(\"FILE.py:FUNCTION\"))" % (node,))
        h.add_node(key, **out)
    for u, v, attrs in g.edges(data=True):
        h.add_edge("port:%d" % u.index if isinstance(u, Port) else u,
                   "port:%d" % v.index if isinstance(v, Port) else v,
                   **{k: a for k, a in attrs.items() if k in EDGE_ATTRS})
    return json.dumps(nx.node_link_data(h, edges="links"), indent=1, sort_keys=True)


FILE_KEYS = ("directed", "graph", "links", "multigraph", "nodes")


def _json_type(v):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _refuse_constant(name):
    raise ValueError("%s is not a number a graph file may hold" % name)


def check_file(data):
    """Check the shape of a graph file's JSON (what to_json writes) before
    networkx reads it: an object of nodes and links, each an object with
    known attributes only.  raises: ChainError naming what is wrong."""
    if not isinstance(data, dict):
        raise ChainError("a graph file holds a JSON object (networkx node-link data), not %s" % _json_type(data))
    for k in data:
        if k not in FILE_KEYS:
            raise ChainError("unknown key %r at the top of the file (%s)" % (k, ", ".join(FILE_KEYS)))
    if data.get("directed", True) is not True or data.get("multigraph", False) is not False:
        raise ChainError("a deployment is a directed graph, not a multigraph: \"directed\": true, "
                         "\"multigraph\": false")
    if data.get("graph", {}) != {}:
        raise ChainError("\"graph\" holds no attributes in a graph file, got %s" % json.dumps(data["graph"])[:80])
    for key in ("nodes", "links"):
        if not isinstance(data.get(key), list):
            raise ChainError("\"%s\" must be an array, got %s" % (key, _json_type(data.get(key))))
    ids = set()
    for i, n in enumerate(data["nodes"]):
        if not isinstance(n, dict) or not isinstance(n.get("id"), str):
            raise ChainError("nodes[%d]: a node is an object with a string \"id\", got %s"
                             % (i, json.dumps(n)[:80]))
        _known_only("node %r" % n["id"], n, ("id",) + NODE_ATTRS)
        nf = n.get("nf")
        if nf is not None:
            ok = isinstance(nf, dict) and (set(nf) <= {"native", "args"} and isinstance(nf.get("native"), str)
                                           and isinstance(nf.get("args", {}), dict)
                                           or set(nf) <= {"python", "batch"} and isinstance(nf.get("python"), str)
                                           and isinstance(nf.get("batch", False), bool))
            if not ok:
                raise ChainError("node %r: nf %s: give {\"native\": NAME, \"args\": {...}} or "
                                 "{\"python\": \"FILE.py:FUNCTION\", \"batch\": false}" % (n["id"], json.dumps(nf)[:80]))
        ids.add(n["id"])
    for i, e in enumerate(data["links"]):
        if not isinstance(e, dict) or not isinstance(e.get("source"), str) or not isinstance(e.get("target"), str):
            raise ChainError("links[%d]: a link is an object with string \"source\" and \"target\", got %s"
                             % (i, json.dumps(e)[:80]))
        for end in ("source", "target"):
            if e[end] not in ids:
                raise ChainError("link %s -> %s: no node %r in \"nodes\"" % (e["source"], e["target"], e[end]))
        _known_only("link %s -> %s" % (e["source"], e["target"]), e, ("source", "target") + EDGE_ATTRS)


def _known_only(what, attrs, known):
    for k in attrs:
        if k not in known and k not in LIVE_ATTRS:
            close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.75)
            raise ChainError("%s: unknown attribute %r (%s)" % (
                what, k, "did you mean %r?" % close[0] if close else "known: " + ", ".join(known)))


def from_json(text, base_dir="."):
    """The graph a to_json() text describes; Python NFs are loaded from their
    files (relative to base_dir).  raises: ChainError naming what is wrong
    with the file, before anything is loaded."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ChainError("not a node-link graph: nested too deeply") from None
    except ValueError as e:
        raise ChainError("not a node-link graph: %s" % e) from None
    check_file(data)
    try:
        h = nx.node_link_graph(data, directed=True, multigraph=False, edges="links")
    except (ValueError, KeyError, TypeError, nx.NetworkXError) as e:
        raise ChainError("not a node-link graph: %s" % e) from None
    g = nx.DiGraph()

    def node_of(key):
        if isinstance(key, str) and key.startswith("port:"):
            try:
                return Port(int(key[5:]))
            except ValueError as e:
                raise ChainError("node %r: %s" % (key, e)) from None
        return key
    for key, attrs in h.nodes(data=True):
        attrs = dict(attrs)
        nf = attrs.get("nf")
        if isinstance(nf, dict) and "native" in nf:
            try:
                attrs["nf"] = native(nf["native"], **(nf.get("args") or {}))
            except (TypeError, ValueError) as e:
                raise ChainError("node %r: %s" % (key, e)) from None
        elif isinstance(nf, dict) and "python" in nf:
            target = nf["python"]
            path, _, fn = target.rpartition(":")
            if path and not os.path.isabs(path):
                target = "%s:%s" % (os.path.join(base_dir, path), fn)
            attrs["nf"] = load_nf(target, batch=bool(nf.get("batch")))
        elif isinstance(nf, str):
            raise ChainError("node %r: nf %r: give {\"native\": NAME} or {\"python\": \"FILE.py:FUNCTION\"}"
                             % (key, nf))
        g.add_node(node_of(key), **attrs)
    for u, v, attrs in h.edges(data=True):
        g.add_edge(node_of(u), node_of(v), **attrs)
    return g
