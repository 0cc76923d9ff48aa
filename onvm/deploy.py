"""A graph made real on a manager (see onvm.graph): `mgr.deploy(g)` returns
a Deployment; deploying again applies only the difference.

The order of a (re)deploy, so nothing is half-done and no packet of a path
that stays is lost:
  1. check the whole graph (onvm.graph.check): a refused graph changes nothing;
  2. start what is new (new nodes, extra replicas, new code for a node whose
     nf changed) as *staged* NFs: registered and running, in no service;
     if one fails to start, stop those started and raise;
  3. one table update (onvm_mgr_apply, published under RCU): paths, steer
     rules, node names, and each service's instances;
  4. stop what was removed: each leaves (already out of service) and hands
     on what is still in its ring before it exits."""

import networkx as nx

from . import graph as G
from .common.hop import Hop
from .common.limits import ONVM_MAX_SERVICES
from .common.runtime import stop_processes


class Node:
    """A deployed NF node: its service, code and running instances."""

    def __init__(self, name, service, nf, key, container):
        self.name, self.service, self.nf, self.key, self.container = name, service, nf, key, container
        self.instances = []

    def __repr__(self):
        return "<Node %s svc=%d x%d>" % (self.name, self.service, len(self.instances))


class Deployment:
    """What runs for a graph.  dep.graph: the running graph with live
    counters as attributes; dep.draw(); dep.save(path); dep["fw"]: the
    node's NF instances."""

    def __init__(self, mgr):
        self.mgr = mgr
        self.nodes = {}          # name -> Node
        self.user_graph = nx.DiGraph()
        self.plan = None

    # ---- deploying ------------------------------------------------------------------

    def apply(self, g, timeout=60):
        """Make the running deployment match g (see the module's docstring).
        returns: self"""
        plan = G.check(g, len(self.mgr.port_specs))
        old = self.nodes
        used = {n.service for n in old.values()} | {n.service for n in self.mgr.launched if n.alive}
        services = {}
        for name in plan.nodes:
            if name in old:
                services[name] = old[name].service
            else:
                services[name] = next(s for s in range(1, ONVM_MAX_SERVICES) if s not in used)
                used.add(services[name])

        started, keep, stop = [], {}, []
        try:
            for name, spec in plan.nodes.items():
                key = G.nf_key(spec["nf"])
                node = old.get(name)
                same = node is not None and node.key == key and node.container == spec["container"]
                have = [n for n in node.instances if n.alive] if node else []
                if same:
                    kept = have[:spec["replicas"]]
                    stop += have[spec["replicas"]:]
                    more = spec["replicas"] - len(kept)
                else:
                    kept, more = [], spec["replicas"]
                    stop += have      # make before break: new code first, then these go
                new = self._start(name, services[name], spec, more, len(kept), timeout) if more else []
                started += new
                keep[name] = kept + new
            for name, node in old.items():
                if name not in plan.nodes:
                    stop += [n for n in node.instances if n.alive]
            self._publish(plan, services, keep, [old[n].service for n in old if n not in plan.nodes])
        except BaseException:
            for n in started:
                n.kill()
            raise
        # Published: the removed instances are out of service; they leave
        # and hand on what is in their rings.
        stop_processes([n.process for n in stop], 10.0)
        self.nodes = {}
        for name, spec in plan.nodes.items():
            node = Node(name, services[name], spec["nf"], G.nf_key(spec["nf"]), spec["container"])
            node.instances = keep[name]
            self.nodes[name] = node
        self.user_graph = g.copy()
        self.plan = plan
        return self

    def _start(self, name, service, spec, count, first, timeout):
        """count new staged instances of a node, named name.i from first on
        (a lone instance is just name)."""
        multi = spec["replicas"] > 1 or first > 0
        names = ["%s.%d" % (name, first + i) if multi else name for i in range(count)]
        # an instance name still held by one leaving in this redeploy: take fresh ones
        taken = {n.name for n in self.mgr.launched if n.alive}
        k = first + count
        for i, nm in enumerate(names):
            while nm in taken:
                nm = "%s.%d" % (name, k)
                k += 1
            names[i] = nm
            taken.add(nm)
        limits = None
        if spec["container"]:
            from .containers import check_limits
            limits = check_limits(True)
        return self.mgr._launch_named(spec["nf"], service, names, timeout, staged=True, limits=limits,
                                      flow_miss=spec["flow_miss"])

    def _publish(self, plan, services, keep, emptied):
        paths = []
        for p in range(len(self.mgr.port_specs)):
            hops = plan.paths.get(p, [])
            paths.append([self._verdict(h, services) for h in hops])
        steer = []
        for name, targets in plan.steer.items():
            ports = sorted(t.index for t in targets if isinstance(t, G.Port))
            svcs = sorted(services[t] for t in targets if not isinstance(t, G.Port))
            steer.append([services[name], ports, svcs])
        members = [[services[name], [n.instance for n in keep[name]]] for name in plan.nodes]
        members += [[s, []] for s in emptied]
        self.mgr.ctl.apply(paths=paths, steer=steer, names=[[services[n], n] for n in plan.nodes], members=members)
        # The miss handler is the operator's to name: a node's flow_miss=True.
        miss = [services[n] for n, a in plan.nodes.items() if a["flow_miss"]]
        had = self.plan is not None and any(a["flow_miss"] for a in self.plan.nodes.values())
        if miss or had:
            self.mgr.ctl.flow_config(miss_service=miss[0] if miss else 0)

    @staticmethod
    def _verdict(hop, services):
        """[action, dest] of a plan's hop: a Port, or a node by its service."""
        return Hop.parse(hop).wire(services)

    def stop(self):
        """Stop every NF of the deployment and forget the graph."""
        empty = nx.DiGraph()
        for node in self.nodes.values():
            for n in node.instances:
                n.stop()
        self.nodes, self.user_graph, self.plan = {}, empty, None

    # ---- looking at it ------------------------------------------------------------------

    def __getitem__(self, name):
        return self.nodes[name].instances

    def __contains__(self, name):
        return name in self.nodes

    def services(self):
        """{node name: service ID}"""
        return {name: n.service for name, n in self.nodes.items()}

    def rates(self, interval=1.0):
        """{node name: (rx_pps, tx_pps)} over the last interval seconds, from
        the manager's own samples (the same numbers as mgr.rates())."""
        r = self.mgr.rates(interval)["nfs"]
        out = {}
        for name, node in self.nodes.items():
            mine = [r[n.instance] for n in node.instances if n.instance in r]
            out[name] = (sum(x["rx"] for x in mine), sum(x["tx"] for x in mine))
        return out

    @property
    def graph(self):
        """The running graph: the user's graph with, on each NF node, its
        service, instances and counters (rx, tx, dropped), and on each default
        edge out of an NF node with one way out, the packets it carried."""
        g = self.user_graph.copy()
        s = self.mgr.stats()
        for name, node in self.nodes.items():
            st = [s["nfs"][n.instance] for n in node.instances if n.instance in s["nfs"]]
            g.nodes[name].update(service=node.service, instances=len(node.instances),
                                 rx=sum(x["rx"] for x in st), tx=sum(x["tx"] for x in st),
                                 dropped=sum(x["actions"]["drop"] + x["refused"] + x["chain_end"] +
                                             x["steer_refused"] + x["hop_limit"] for x in st))
        for u in g.nodes:
            outs = [(u, v) for _, v, a in g.out_edges(u, data=True) if not a.get("steer")]
            if len(outs) == 1:
                if isinstance(u, G.Port):
                    g.edges[outs[0]]["packets"] = s["ports"][u.index]["rx"]
                elif u in self.nodes:
                    g.edges[outs[0]]["packets"] = g.nodes[u]["tx"]
        return g

    def draw(self, ax=None, rates=True):
        """A matplotlib picture: ports as circles on the sides, NFs as boxes
        (with their replica count), default edges solid and labelled with
        the packets/s they carry over the last half second ("~": an
        estimate, where a node's output splits), steer edges dashed.  The
        figure is sized to the graph; returns the axes."""
        import matplotlib.pyplot as plt

        from .dashboard import edge_rates, node_rates
        g = self.user_graph
        pos = layout(g, self.plan)
        xs = [x for x, _ in pos.values()]
        ys = [y for _, y in pos.values()]
        # room above and below for the edges that bow around other nodes
        bows = any(abs(pos[u][0] - pos[v][0]) > 1 for u, v in g.edges())
        x_lo, x_hi = min(xs) - 0.45, max(xs) + 0.45
        y_lo, y_hi = min(ys) - (0.75 if bows else 0.5), max(ys) + (0.75 if bows else 0.4)
        if ax is None:
            fig, ax = plt.subplots(figsize=(1.9 * (x_hi - x_lo), 1.5 * (y_hi - y_lo)))
            fig.subplots_adjust(0, 0, 1, 1)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.axis("off")
        # what each default edge carries: the dashboard's arithmetic over
        # the graph of default edges (a steer edge's share is not counted)
        carried = {}
        if rates and self.nodes and self.mgr.running:
            flow = nx.DiGraph([(u, v) for u, v, a in g.edges(data=True) if not a.get("steer")])
            for n in flow.nodes:
                if n in self.nodes:
                    flow.nodes[n]["service"] = self.nodes[n].service
            carried = edge_rates(flow, node_rates(flow, self.mgr.rates(0.5)))
        to_data = ax.transData.inverted()
        for u, v, a in g.edges(data=True):
            (x0, y0), (x1, y1) = pos[u], pos[v]
            steer = a.get("steer")
            # an edge passing over other nodes bows out of their way
            # (default edges above, steer edges below); a pair of opposite
            # edges bows apart so both labels are readable
            up = 1 if x1 < x0 else -1
            rad = (0.08 if abs(x1 - x0) <= 1 else 0.3) * (-up if steer else up)
            if g.has_edge(v, u) and abs(x1 - x0) <= 1:
                rad = 0.22      # arc3 bends to its left: the two go either side
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="-|>", lw=1.4, shrinkA=24, shrinkB=24,
                                        linestyle="--" if steer else "-",
                                        connectionstyle="arc3,rad=%s" % rad,
                                        color="#888" if steer else "#333"))
            if (u, v) not in carried:
                continue
            # the middle of matplotlib's arc3 curve, which it bends in display space
            (d0, e0), (d1, e1) = ax.transData.transform([(x0, y0), (x1, y1)])
            mx, my = (d0 + d1) / 2 + rad * (e1 - e0) / 2, (e0 + e1) / 2 - rad * (d1 - d0) / 2
            lx, ly = to_data.transform((mx, my))
            pps, exact = carried[(u, v)]
            ax.text(lx, ly, "%s%s pps" % ("" if exact else "~", _si(pps)), ha="center", va="center",
                    fontsize=9, color="#1f5fa8", bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))
        for node, (x, y) in pos.items():
            if isinstance(node, G.Port):
                ax.text(x, y, "port %d" % node.index, ha="center", va="center", fontsize=10,
                        bbox=dict(boxstyle="circle,pad=0.35", fc="#e8e8e8", ec="#555"))
            else:
                n = self.nodes.get(node)
                count = len(n.instances) if n else g.nodes[node].get("replicas", 1)
                label = str(node) + ("\nx%d" % count if count > 1 else "")
                ax.text(x, y, label, ha="center", va="center", fontsize=11,
                        bbox=dict(boxstyle="round,pad=0.6", fc="#dbe9f7", ec="#1f5fa8"))
        legend = "solid: a path, with packets/s" if carried else "solid: a path"
        if any(a.get("steer") for _, _, a in g.edges(data=True)):
            legend += "; dashed: the NF may steer there (ToPort / ToService)"
        ax.text(x_lo + 0.05, y_lo + 0.05, legend, ha="left", va="bottom", fontsize=8, color="#666")
        return ax

    def save(self, path):
        """Write the deployed graph as node-link JSON (`onvm deploy FILE`)."""
        with open(path, "w") as f:
            f.write(G.to_json(self.user_graph))

    def _repr_png_(self):
        import io

        import matplotlib
        import matplotlib.pyplot as plt
        with matplotlib.rc_context({"backend": "agg"}):
            ax = self.draw()
            buf = io.BytesIO()
            ax.figure.savefig(buf, format="png", dpi=90)
            plt.close(ax.figure)
        return buf.getvalue()

    def __repr__(self):
        parts = ["%s(svc %d, x%d)" % (n, node.service, len(node.instances)) for n, node in self.nodes.items()]
        paths = []
        if self.plan:
            for p, hops in sorted(self.plan.paths.items()):
                paths.append("port %d: %s" % (p, " -> ".join(repr(h) if isinstance(h, G.Port) else h for h in hops)))
        return "<Deployment %s; %s>" % (", ".join(parts), "; ".join(paths))


def _si(x):
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return "%.1f%s" % (x / div, unit)
    return "%.0f" % x


def layout(g, plan):
    """Positions: the first ingress port on the left, NFs by their place on
    the paths, the other ports on the right, paths one above the other."""
    pos, col, row = {}, {}, {}
    for r, (_, hops) in enumerate(sorted(plan.paths.items()) if plan else []):
        for i, h in enumerate(hops[:-1]):
            col.setdefault(h, i + 1)
            row.setdefault(h, -r)
    width = max(col.values(), default=0) + 1
    ports = sorted(n for n in g.nodes if isinstance(n, G.Port))
    for i, p in enumerate(ports):
        pos[p] = (0 if i % 2 == 0 else width, -(i // 2))
    for n in g.nodes:
        if n not in pos:
            pos[n] = (col.get(n, width / 2), row.get(n, 0.9))
    return pos
