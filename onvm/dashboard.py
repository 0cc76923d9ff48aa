"""The live dashboard: mgr.dashboard() in a notebook.

One ipywidgets box, built once: a bqplot figure of packets per second in
and out of each NF instance (solid in, dashed out, coloured by service),
a bar chart of drops per NF, the chain as a picture (nodes coloured by
load, edges labelled with their rate), a ports panel, the pool's use, and
a table of every NF seen (stopped and dead ones stay, marked).  One
background thread (the updater) samples the manager through the shared
Recorder (onvm/rates.py) and sets traits in place inside hold_sync(); it
never prints, so nothing lands in other cells.  It stops when the manager
stops, when the dashboard is closed, or when mgr.dashboard() replaces it.
"""
import contextlib
import html
import os
import threading
import time

import ipywidgets as W
import networkx as nx

from .common.abi import ffi, lib
from .rates import is_gone

# d3's category10: one hue per service, instances in lighter shades of it
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
WINDOWS = (10, 30, 60, 120, 300, 600)


def service_colour(service, shade=0):
    """The colour of a service's line; shade k > 0 mixes in white, for the
    k-th instance of the service."""
    c = PALETTE[service % len(PALETTE)]
    rgb = [int(c[i:i + 2], 16) for i in (1, 3, 5)]
    f = min(0.6, 0.22 * shade)
    return "#%02x%02x%02x" % tuple(round(v + (255 - v) * f) for v in rgb)


def load_colour(load):
    """Green (idle) through yellow to red (full ring or dropping), for 0..1."""
    load = min(1.0, max(0.0, load))
    return "hsl(%d, 70%%, 62%%)" % round(120 * (1 - load))


def count_ticks(top, n=5):
    """Ticks for an axis of counts (packets/s) from 0 to at least top:
    (axis maximum, tick values), whole numbers spaced 1, 2 or 5 times a
    power of ten, at most n + 1 of them, so no tick reads 0.5 (or "500m")."""
    top = max(float(top), 1.0)
    power = 1
    while True:
        step = next((m * power for m in (1, 2, 5) if m * power * n >= top), None)
        if step is not None:
            break
        power *= 10
    last = -(-top // step) * step
    return float(last), [float(v) for v in range(0, int(last) + 1, step)]


def fmt_rate(pps):
    """12345.6 -> '12.3k'."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if pps >= div:
            return "%.1f%s" % (pps / div, unit)
    return "%.0f" % pps


# ---- the chain picture: a function of a graph and the rates ----------------------------------

def default_chain_graph(control):
    """The default chain as a networkx DiGraph: port nodes ("port 0", kind
    "port", port p) feed the live instances of each service in the chain
    (node = NF name, kind "nf", instance, service), layer after layer, to
    the output port.  What a deployed graph (mgr.deploy) looks like too."""
    g = nx.DiGraph()
    shm = control.shm
    chain = control.default_chain()
    names = {i: s for i, s in control.nf_slots()}
    outs = {d for a, d in chain if a == lib.ONVM_TO_PORT}
    layer = []
    for p in range(shm.nb_ports):
        if p not in outs or not outs:
            g.add_node("port %d" % p, kind="port", port=p)
            layer.append("port %d" % p)
    for action, dest in chain:
        if action == lib.ONVM_TO_PORT:
            nodes = ["port %d" % dest]
            g.add_node(nodes[0], kind="port", port=dest)
        else:
            nodes = []
            for i in control.service_table(dest)["instances"]:
                name = ffi.string(names[i].name).decode() if i in names else "inst %d" % i
                g.add_node(name, kind="nf", instance=i, service=dest)
                nodes.append(name)
            if not nodes:
                nodes = ["service %d" % dest]
                g.add_node(nodes[0], kind="nf", service=dest)
        g.add_edges_from((u, v) for u in layer for v in nodes)
        layer = nodes
        if action == lib.ONVM_TO_PORT:
            break
    return g


def port_of(n, d):
    """The port index of a port node: kind="port" with port=p, or an
    onvm.Port(p) node (an object with an int .index); else None."""
    if d.get("kind") == "port":
        return d.get("port")
    index = getattr(n, "index", None)
    return index if isinstance(index, int) and not isinstance(n, (tuple, list)) else None


def node_rates(g, rates):
    """{node: {"rx", "tx", "drop", "load"}} for a graph's port and NF nodes
    (an NF node with only a service sums that service's instances)."""
    out = {}
    for n, d in g.nodes(data=True):
        if port_of(n, d) is not None:
            r = rates["ports"].get(port_of(n, d), {})
            out[n] = {"rx": r.get("rx", 0.0), "tx": r.get("tx", 0.0), "drop": r.get("drop", 0.0), "load": None}
            continue
        if d.get("instance") is not None:
            inst = [rates["nfs"][d["instance"]]] if d["instance"] in rates["nfs"] else []
        else:
            inst = [r for r in rates["nfs"].values() if r["service"] == d.get("service")]
        rx, tx, drop = (sum(r[f] for r in inst) for f in ("rx", "tx", "drop"))
        load = max([r["load"] for r in inst] + [drop / (rx + drop) if rx + drop else 0.0])
        out[n] = {"rx": rx, "tx": tx, "drop": drop, "load": load if inst else None}
    return out


def edge_rates(g, nodes):
    """{(u, v): (pps, exact)}: what an edge carries.  Exact when v has one
    predecessor (all its input: v's rx; a port's tx) or u one successor
    (all of u's output); otherwise u's output split in proportion to what
    each successor takes in, marked as an estimate."""
    def into(v):
        return nodes[v]["tx" if port_of(v, g.nodes[v]) is not None else "rx"]

    def out_of(u):
        return nodes[u]["rx" if port_of(u, g.nodes[u]) is not None else "tx"]

    out = {}
    for u, v in g.edges():
        if g.in_degree(v) == 1:
            out[(u, v)] = (into(v), True)
        elif g.out_degree(u) == 1:
            out[(u, v)] = (out_of(u), True)
        else:
            total = sum(into(w) for w in g.successors(u))
            out[(u, v)] = (out_of(u) * into(v) / total if total else 0.0, False)
    return out


def chain_svg(g, rates, width=None):
    """The graph as an SVG picture: layers left to right, NF nodes coloured
    by load (green idle, red a full ring or drops), ports grey, each edge
    labelled with its rate ("~" marks an estimate)."""
    if g.number_of_nodes() == 0:
        return "<svg width='300' height='40'><text x='8' y='24' font-size='12'>no chain set</text></svg>"
    layers = list(nx.topological_generations(g)) if nx.is_directed_acyclic_graph(g) else [list(g.nodes())]
    bw, bh, gx, gy = 128, 46, 56, 16
    tall = max(len(layer) for layer in layers)
    w = len(layers) * (bw + gx) - gx + 20
    h = tall * (bh + gy) - gy + 20
    pos = {}
    for x, layer in enumerate(layers):
        top = 10 + (h - 20 - (len(layer) * (bh + gy) - gy)) / 2
        for y, n in enumerate(sorted(layer, key=str)):
            pos[n] = (10 + x * (bw + gx), top + y * (bh + gy))
    nodes = node_rates(g, rates)
    parts = ["<svg xmlns='http://www.w3.org/2000/svg' class='onvm-chain-svg' width='%d' height='%d' "
             "font-family='sans-serif' font-size='11'>" % (width or w, h),
             "<defs><marker id='onvm-arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
             "markerHeight='7' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#555'/></marker></defs>"]
    for (u, v), (pps, exact) in edge_rates(g, nodes).items():
        x1, y1 = pos[u][0] + bw, pos[u][1] + bh / 2
        x2, y2 = pos[v][0], pos[v][1] + bh / 2
        parts.append("<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='#555' marker-end='url(#onvm-arrow)'/>"
                     % (x1, y1, x2 - 1, y2))
        parts.append("<text class='onvm-edge-rate' x='%.0f' y='%.0f' text-anchor='middle' fill='#333'>%s%s</text>"
                     % ((x1 + x2) / 2, (y1 + y2) / 2 - 4, "" if exact else "~", fmt_rate(pps)))
    for n, (x, y) in pos.items():
        r, d = nodes[n], g.nodes[n]
        fill = "#e0e0e0" if r["load"] is None else load_colour(r["load"])
        label = html.escape(str(d.get("label", n)))
        detail = ("in %s out %s" % (fmt_rate(r["rx"]), fmt_rate(r["tx"])) if port_of(n, d) is None
                  else "rx %s tx %s" % (fmt_rate(r["rx"]), fmt_rate(r["tx"])))
        parts.append("<g class='onvm-node'><rect x='%.0f' y='%.0f' width='%d' height='%d' rx='7' fill='%s' "
                     "stroke='#444'/><text x='%.0f' y='%.0f' text-anchor='middle' font-weight='bold'>%s</text>"
                     "<text x='%.0f' y='%.0f' text-anchor='middle'>%s</text></g>"
                     % (x, y, bw, bh, fill, x + bw / 2, y + 18, label, x + bw / 2, y + 35, detail))
    parts.append("</svg>")
    return "".join(parts)


# ---- the dashboard --------------------------------------------------------------------

def _end_at_last_point(x, y):
    """Lines for bqplot from one x row and a y row per line, NaN where a line
    has no value: rows of x per line, where a line that ends before the
    window does (its NF left) repeats its last point to the end instead of
    NaN.  bqplot places a line's label at its last point; at NaN that is
    "translate(489,undefined)", an error in the browser at every update."""
    import numpy as np
    if not y.shape[0]:
        return x, y
    xs = np.tile(x, (y.shape[0], 1))
    ys = y.copy()
    for k in range(ys.shape[0]):
        finite = np.flatnonzero(np.isfinite(ys[k]))
        if not finite.size:
            ys[k] = 0.0
            continue
        last = finite[-1]
        xs[k, last + 1:] = xs[k, last]
        ys[k, last + 1:] = ys[k, last]
    return xs, ys


def _widgets_under(w, seen=None):
    """Every widget reachable from w through its synced traits (children,
    marks, axes, scales, layouts ...), w included."""
    seen = set() if seen is None else seen
    stack = [w]
    while stack:
        x = stack.pop()
        if isinstance(x, W.Widget):
            if id(x) in seen:
                continue
            seen.add(id(x))
            yield x
            stack.extend(x.trait_values(sync=lambda v: v).values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())


class Dashboard(W.VBox):
    """Live rates of a manager's NFs and ports; made by mgr.dashboard().

    dash.pause() / dash.resume()      freeze the picture (recording goes on)
    dash.window = 30                  seconds shown
    dash.show("fw.0", False)          an NF's lines on or off in the plot
    dash.save_csv(path=None)          mgr.history() as CSV; returns the path
    dash.close()                      stop the updater and close every widget
    """

    @staticmethod
    def check_args(window, interval, graph=None):
        """ValueError naming a bad argument, before anything is made."""
        for what, v, lo, hi in (("window", window, 1, 600), ("interval", interval, 0.1, 10)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError("%s must be %g..%g seconds, got %r" % (what, lo, hi, v))
        if graph is not None and not isinstance(graph, nx.DiGraph):
            raise ValueError("graph must be a networkx DiGraph, got %r" % (graph,))

    def __init__(self, mgr, recorder, window=60, interval=0.5, graph=None):
        self.check_args(window, interval, graph)
        import bqplot as bq
        self._mgr, self._rec, self._graph = mgr, recorder, graph
        self._interval = float(interval)
        self._hidden = set()
        self._stop = threading.Event()
        self._thread = None
        self._last = None          # the last rates shown
        self._paused = False
        # plot: lines in (solid) and out (dashed), one per NF instance
        self._xs = bq.LinearScale(min=-float(window), max=0.0)
        # Both y axes are counts: a domain and whole-number ticks set at each
        # update (count_ticks), never left for bqplot to guess ("100m").
        self._ys = bq.LinearScale(min=0.0, max=1.0)
        self._yaxis = bq.Axis(scale=self._ys, side="left", label="packets/s",
                              label_offset="50px", tick_format=".3~s", tick_values=[0.0, 1.0])
        self._in = bq.Lines(x=[], y=[], scales={"x": self._xs, "y": self._ys}, display_legend=True, labels=[])
        self._out = bq.Lines(x=[], y=[], scales={"x": self._xs, "y": self._ys}, line_style="dashed", labels=[])
        self._plot = bq.Figure(
            marks=[self._in, self._out], title="packets/s per NF (solid in, dashed out)", animation_duration=0,
            axes=[bq.Axis(scale=self._xs, label="seconds (0: now)", tick_format="d"), self._yaxis],
            legend_location="top-left", fig_margin={"top": 40, "bottom": 50, "left": 70, "right": 10},
            layout=W.Layout(width="560px", height="300px"))
        self._bx, self._by = bq.OrdinalScale(), bq.LinearScale(min=0.0, max=1.0)
        self._byaxis = bq.Axis(scale=self._by, side="left", tick_format=".3~s",
                               tick_values=[0.0, 1.0])
        self._bars = bq.Bars(x=[], y=[], scales={"x": self._bx, "y": self._by}, colors=["#d62728"])
        self._drops = bq.Figure(
            marks=[self._bars], title="drops/s per NF (its ring full)", animation_duration=0,
            axes=[bq.Axis(scale=self._bx), self._byaxis],
            fig_margin={"top": 40, "bottom": 50, "left": 50, "right": 10},
            layout=W.Layout(width="300px", height="300px"))
        # controls
        self._pause = W.ToggleButton(description="pause", icon="pause", tooltip="freeze the picture")
        self._pause.observe(lambda ch: self.pause() if ch["new"] else self.resume(), "value")
        self._window = W.Dropdown(options=sorted(set(WINDOWS) | {int(window)}), value=int(window),
                                  description="window (s)", layout=W.Layout(width="170px"))
        self._window.observe(lambda ch: setattr(self, "window", ch["new"]), "value")
        self._save = W.Button(description="save CSV", icon="download", tooltip="mgr.history() to a CSV file")
        self._save.on_click(lambda b: self.save_csv())
        self._status = W.HTML()
        self._toggles = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self._checks = {}
        # panels
        self._chain = W.HTML()
        self._ports = W.HTML()
        self._pool = W.FloatProgress(min=0.0, max=1.0, description="pool", bar_style="info",
                                     layout=W.Layout(width="220px"))
        self._pool_text = W.Label()
        self._table = W.HTML()
        for w, cls in ((self._plot, "onvm-rate-plot"), (self._drops, "onvm-drop-plot"),
                       (self._chain, "onvm-chain"), (self._ports, "onvm-ports"), (self._table, "onvm-nf-table"),
                       (self._status, "onvm-status")):
            w.add_class(cls)
        super().__init__(children=[
            W.HBox([self._pause, self._window, self._save, self._status]),
            W.HBox([self._plot, self._drops]),
            W.HBox([self._chain, W.VBox([self._ports, W.HBox([self._pool, self._pool_text])])],
                   layout=W.Layout(flex_flow="row wrap", align_items="flex-start")),
            self._table,
            W.HBox([W.Label("plot:"), self._toggles]),
        ])
        self.add_class("onvm-dashboard")
        try:
            self._update()
            self._thread = threading.Thread(target=self._run, name="onvm-dashboard-%s" % mgr.name, daemon=True)
            self._thread.start()
        except BaseException:
            self.close()
            raise

    # ---- what a user calls -----------------------------------------------------------

    @property
    def running(self):
        """True while the updater runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def paused(self):
        return self._paused

    def pause(self):
        """Freeze the picture; rates are still recorded (mgr.history())."""
        self._paused = True
        self._pause.value, self._pause.description, self._pause.icon = True, "resume", "play"
        self._say("paused")

    def resume(self):
        self._paused = False
        self._pause.value, self._pause.description, self._pause.icon = False, "pause", "pause"

    @property
    def window(self):
        """Seconds of history shown."""
        return -self._xs.min

    @window.setter
    def window(self, seconds):
        self.check_args(seconds, self._interval)
        self._xs.min = -float(seconds)
        if seconds != self._window.value:
            if seconds not in self._window.options:
                self._window.options = sorted(set(self._window.options) | {seconds})
            self._window.value = seconds

    def nf_names(self):
        """Names of the NFs seen so far, live or gone."""
        with self._rec.lock:
            return sorted({r["name"] for r in self._rec.nfs.values()})

    def show(self, name, on=True):
        """Show or hide an NF's lines in the plot.
        raises: ValueError for an NF never seen"""
        names = self.nf_names()
        if name not in names:
            raise ValueError("no NF named %r in this dashboard (NFs: %s)" % (name, ", ".join(names) or "none yet"))
        (self._hidden.discard if on else self._hidden.add)(name)
        if name in self._checks and self._checks[name].value != bool(on):
            self._checks[name].value = bool(on)

    def save_csv(self, path=None):
        """Write mgr.history() as CSV.  returns: the file's path."""
        path = os.path.abspath(path or "onvm-%s-%s.csv" % (self._mgr.name, time.strftime("%Y%m%d-%H%M%S")))
        self._rec.history().to_csv(path, index=False)
        self._say("saved %s" % html.escape(path))
        return path

    def stop(self):
        """Stop the updater; the widgets stay, showing the last rates."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
        self._thread = None

    def close(self):
        """Stop the updater and close every widget of the dashboard."""
        self.stop()
        for w in list(_widgets_under(self)) + list(self._checks.values()):
            if w is not self:
                w.close()
        super().close()

    def text(self):
        """The latest rates as a plain-text table."""
        r = self._last
        if r is None:
            return "<Dashboard %s: no rates yet>" % self._mgr.name
        lines = ["onvm dashboard: manager %s, %.1f s interval" % (self._mgr.name, r["interval"]),
                 "%-18s %4s %5s %10s %10s %10s %10s %6s  %s" % ("NF", "svc", "inst", "rx pps", "tx pps", "DROP pps",
                                                                "full pps", "load", "state")]
        for row in self._rows():
            lines.append("%-18s %4d %5d %10.0f %10.0f %10.0f %10.0f %5.0f%%  %s" % (
                row["name"][:18], row["service"], row["instance"], row["rx"], row["tx"], row["verdicts_drop"],
                row["drop"], 100 * row["load"], row["state"]))
        for p, s in sorted(r["ports"].items()):
            lines.append("port %-13s %10s %10.0f %10.0f %10s %10.0f" % ("%d %s" % (p, s["name"][:10]), "", s["rx"],
                                                                       s["tx"], "", s["drop"]))
        lines.append("DROP pps: the NF returned DROP; full pps: lost at a full ring (NF) or port")
        lines.append("pool: %d of %d packets in use" % (r["pool"]["in_use"], r["pool"]["size"]))
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = self.text()     # what a run with no front end (nbval) records
        return data

    def __repr__(self):
        return "<Dashboard %s %s nfs=%d>" % (self._mgr.name, "running" if self.running else "stopped",
                                             len(self._rec.nfs))

    # ---- the updater -------------------------------------------------------------------

    def _run(self):
        """The updater thread: never prints; a failure ends it, said in the status line."""
        try:
            while not self._stop.wait(self._interval):
                if not self._mgr.running or self.comm is None:
                    break
                self._update()
        except Exception as e:      # noqa: BLE001  (shown in the widget, not in some cell)
            self._say("updater stopped: %s" % html.escape(str(e)))
            return
        self._say("manager %s stopped" % self._mgr.name if not self._mgr.running else "stopped")

    def _say(self, text):
        with contextlib.suppress(Exception):
            self._status.value = "<span style='color:#666'>%s</span>" % text

    def _rows(self):
        with self._rec.lock:
            return [dict(r) for r in self._rec.nfs.values()]

    def _update(self):
        self._rec.poll()
        with self._rec.lock:
            points = list(self._rec.points)
        if not points or self._paused:
            if not points:
                self._say("waiting for the manager's first samples")
            return
        self._last = r = points[-1]
        rows = self._rows()
        with contextlib.ExitStack() as hold:
            for w in (self._in, self._out, self._ys, self._yaxis, self._bars, self._by, self._byaxis, self._chain,
                      self._ports, self._table, self._pool, self._status):
                hold.enter_context(w.hold_sync())
            self._draw_lines(points, rows)
            self._draw_drops(r)
            self._draw_panels(r, rows)
        self._add_toggles(rows)

    def _draw_lines(self, points, rows):
        now, window = points[-1]["time"], self.window
        shown = [p for p in points if p["time"] >= now - window - self._interval]
        keys = [(row["instance"], row["generation"]) for row in rows if row["name"] not in self._hidden
                and any(p["nfs"].get(row["instance"], {}).get("generation") == row["generation"] for p in shown)]
        shade, colours, labels = {}, [], []
        for i, g in keys:
            row = next(x for x in rows if (x["instance"], x["generation"]) == (i, g))
            k = shade[row["service"]] = shade.get(row["service"], -1) + 1
            colours.append(service_colour(row["service"], k))
            labels.append(row["name"])
        x = [p["time"] - now for p in shown]
        nan = float("nan")

        def series(field):
            return [[p["nfs"][i][field] if p["nfs"].get(i, {}).get("generation") == g else nan for p in shown]
                    for i, g in keys]
        import numpy as np
        if len(shown) < 2:
            # a line needs two points; and bqplot squeezes a 1 x 1 array to a
            # scalar it then refuses, which stopped the updater for good
            keys, x = [], []
        top = 0.0
        for mark, field in ((self._in, "rx"), (self._out, "tx")):
            xs, ys = _end_at_last_point(np.array(x, dtype=float),
                                        np.array(series(field), dtype=float).reshape(len(keys), len(x)))
            mark.x, mark.y = xs, ys
            mark.colors = colours or ["#1f77b4"]
            mark.labels = labels
            if ys.size and np.isfinite(ys).any():
                top = max(top, float(np.nanmax(ys)))
        self._ys.max, self._yaxis.tick_values = count_ticks(1.1 * top)

    def _draw_drops(self, r):
        live = sorted(r["nfs"].values(), key=lambda n: (n["service"], n["instance"]))
        self._bars.x = [n["name"] for n in live]
        self._bars.y = [n["drop"] for n in live]
        self._by.max, self._byaxis.tick_values = count_ticks(max([0.0] + [1.1 * n["drop"] for n in live]))

    def _draw_panels(self, r, rows):
        graph = self._graph
        if graph is None:    # follow the deployment, redeploys included; else the default chain
            dep = getattr(self._mgr, "deployment", None)
            graph = dep.graph if dep is not None and dep.nodes else default_chain_graph(self._mgr.control)
        self._chain.value = chain_svg(graph, r)
        cells = "".join("<tr><td>%d</td><td>%s</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            p, html.escape(s["name"]), s["rx_packets"], s["tx_packets"], fmt_rate(s["rx"]), fmt_rate(s["tx"]),
            fmt_rate(s["drop"])) for p, s in sorted(r["ports"].items()))
        self._ports.value = ("<b>ports</b><table class='onvm-t'><tr><th>port</th><th>name</th><th>rx</th><th>tx</th>"
                             "<th>rx/s</th><th>tx/s</th><th>drop/s</th></tr>%s</table>" % cells)
        pool = r["pool"]
        self._pool.value = pool["use"]
        self._pool.bar_style = "danger" if pool["use"] > 0.9 else "warning" if pool["use"] > 0.5 else "info"
        self._pool_text.value = "%d of %d packets in use" % (pool["in_use"], pool["size"])
        body = []
        for row in sorted(rows, key=lambda x: (is_gone(x["state"]), x["service"], x["instance"])):
            gone = is_gone(row["state"]) or row["state"] == "dead"
            style = " style='color:#999;text-decoration:line-through'" if gone else ""
            body.append("<tr%s><td>%s</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td>"
                        "<td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.0f%%</td><td>%d</td></tr>" % (
                            style, html.escape(row["name"]), row["service"], row["instance"], row["pid"],
                            html.escape(row["kind"]), html.escape(row["state"]), row["rx_packets"],
                            row["tx_packets"], fmt_rate(row["rx"]), fmt_rate(row["tx"]),
                            fmt_rate(row["verdicts_drop"]), fmt_rate(row["drop"]),
                            100 * row["load"], row["errors"]))
        self._table.value = (
            "<style>.onvm-t td,.onvm-t th{padding:1px 8px;text-align:right}</style><table class='onvm-t'>"
            "<tr><th>NF</th><th>svc</th><th>inst</th><th>pid</th><th>kind</th><th>state</th><th>rx</th><th>tx</th>"
            "<th>rx/s</th><th>tx/s</th><th title='packets the NF returned DROP for'>DROP/s</th>"
            "<th title='packets lost because its ring was full'>full/s</th><th>load</th><th>errors</th></tr>%s</table>"
            "<div style='color:#666;font-size:90%%'>DROP/s: the NF returned DROP; full/s: lost at its full ring</div>"
            % "".join(body))
        origin = self._rec.origin
        age = "up %.0f s" % (r["time"] - origin) if origin is not None else "up"
        self._status.value = "<span style='color:#666'>manager %s %s, updated every %.1f s</span>" % (
            html.escape(self._mgr.name), age, self._interval)

    def _add_toggles(self, rows):
        """A checkbox per NF name, added when the NF first shows up."""
        new = sorted({row["name"] for row in rows} - set(self._checks))
        for name in new:
            c = W.Checkbox(value=name not in self._hidden, description=name, indent=False,
                           layout=W.Layout(width="auto"))
            c.observe(lambda ch, name=name: self.show(name, ch["new"]), "value")
            self._checks[name] = c
        if new:
            self._toggles.children = [self._checks[n] for n in sorted(self._checks)]
