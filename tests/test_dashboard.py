"""Rates, history and the dashboard, as a user meets them: rates computed
from counter series (an NF restarting, sampling paused), mgr.rates() against
paced traffic, the dashboard re-run ten times, bad input, and the terminal
table.  (The real-browser test is test_dashboard_browser.py.)"""
import csv
import os
import subprocess
import sys
import threading
import time

import pytest

import onvm
from conftest import udp, wait_for
from onvm.common.shm import NFSample, PortSample, Sample
from onvm.rates import Recorder, compute
from onvm.stats import rates as snapshot_rates

RATE = 20000


# ---- rates from synthetic counter series ---------------------------------------------------

def nf(gen, rx, tx=None, drop=0, queued=0, name="fw", state="running"):
    return NFSample(gen, rx, rx if tx is None else tx, drop, queued, name, "native:forward", 1, 100 + gen, state, 0)


def sample(t, nfs, port_rx=0):
    return Sample(t, nfs, {0: PortSample(port_rx, 0, 0, 0, "ring")}, (10, 1000), 4096)


def test_rates_are_counter_deltas_over_the_managers_clock():
    r = compute(sample(10.0, {3: nf(1, 1000, drop=5)}, 0), sample(10.5, {3: nf(1, 2000, tx=1900, drop=55,
                                                                                  queued=1024)}, 4000))
    fw = r["nfs"][3]
    assert (fw["rx"], fw["tx"], fw["drop"]) == (2000.0, 1800.0, 100.0)
    assert fw["load"] == 0.25 and fw["rx_packets"] == 2000
    assert r["ports"][0]["rx"] == 8000.0
    assert r["interval"] == 0.5 and r["pool"] == {"size": 1000, "in_use": 10, "use": 0.01}


def test_restarted_nf_is_rated_from_zero_never_negative_or_a_spike():
    """A series: running at 1000 pps, restarted (new generation, counters
    from zero), running again; and a counter that went back by itself."""
    series = [sample(0.0, {3: nf(1, 0)}), sample(1.0, {3: nf(1, 1000)}), sample(2.0, {3: nf(1, 2000)}),
              sample(3.0, {3: nf(2, 400)}),       # restarted 0.6 s ago: 400 packets since
              sample(4.0, {3: nf(2, 1400)}),
              sample(5.0, {3: nf(2, 300)})]       # went back without a new generation
    got = [compute(a, b)["nfs"][3]["rx"] for a, b in zip(series, series[1:])]
    assert got == [1000.0, 1000.0, 400.0, 1000.0, 300.0]
    # across the restart in one step: what the new NF counted, over the whole interval
    assert compute(series[1], series[4])["nfs"][3]["rx"] == pytest.approx(1400 / 3)
    # an NF that appeared between two samples is rated from zero too
    assert compute(sample(0.0, {}), sample(0.5, {7: nf(1, 100)}))["nfs"][7]["rx"] == 200.0


def test_a_pause_in_sampling_gives_the_average_not_a_spike():
    rec = Recorder(None)
    for t in (0.0, 0.5, 1.0):
        rec.add(sample(t, {3: nf(1, int(t * 1000))}))
    rec.add(sample(1.0, {3: nf(1, 1000)}))           # no tick since: nothing recorded
    rec.add(sample(1.05, {3: nf(1, 1050)}))          # closer than MIN_STEP: not recorded either
    rec.add(sample(11.0, {3: nf(1, 11000)}))         # 10 s paused (a stuck notebook, a stopped tick)
    rx = [p["nfs"][3]["rx"] for p in rec.points]
    assert rx == [1000.0, 1000.0, 1000.0]
    assert [p["interval"] for p in rec.points] == [0.5, 0.5, 10.0]
    with pytest.raises(ValueError, match="must be newer"):
        compute(sample(1.0, {}), sample(1.0, {}))
    h = rec.history()
    assert list(h[h.kind == "nf"].rx) == rx and list(h.time[h.kind == "nf"]) == [0.5, 1.0, 11.0]


def test_recorder_keeps_gone_nfs_marked():
    ended = {101: "killed by signal 9"}
    rec = Recorder(None, exit_state=lambda pid: ended.get(pid))
    rec.add(sample(0.0, {3: nf(1, 0)}))
    rec.add(sample(1.0, {3: nf(1, 500)}))
    rec.add(sample(2.0, {3: nf(2, 100, name="fw2")}))   # slot 3 given to a new NF
    rows = {k: (r["name"], r["state"], r["rx"]) for k, r in rec.nfs.items()}
    assert rows == {(3, 1): ("fw", "killed by signal 9", 0.0), (3, 2): ("fw2", "running", 100.0)}
    ended.clear()        # not reaped yet: "leaving", asked again at the next sample
    rec.add(sample(3.0, {}))
    assert rec.nfs[(3, 2)]["state"] == "leaving"
    ended[102] = "stopped"
    rec.add(sample(4.0, {}))
    assert rec.nfs[(3, 2)]["state"] == "stopped"


def test_snapshot_rates_without_a_tick_between_are_zero():
    s = {"sample": sample(5.0, {3: nf(1, 700)})}
    assert snapshot_rates(s, s)["nfs"][3]["rx"] == 0.0


# ---- a real manager ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dmgr():
    """One manager for this module's tests (each test launches its own NFs)."""
    with onvm.Manager(name="td%d" % os.getpid()) as m:
        yield m


@pytest.fixture
def clean(dmgr):
    """Stops the NFs a test launched and its dashboard; checks no updater is left."""
    yield dmgr
    if getattr(dmgr, "_dashboard", None) is not None:
        dmgr._dashboard.close()
    for n in dmgr.nfs:
        n.stop()
    dmgr.set_default_chain([])
    assert not [t for t in threading.enumerate() if t.name.startswith("onvm-dashboard")]


class Pacer(threading.Thread):
    """Injects bursts into port 0 at `rate` packets/s on an absolute schedule,
    logging (time.monotonic(), packets sent) after each burst."""

    def __init__(self, mgr, rate, burst=100, seconds=30):
        super().__init__(daemon=True)
        self.mgr, self.rate, self.seconds = mgr, rate, seconds
        self.pkts = [bytes(udp(1024 + i % 64)) for i in range(burst)]
        self.log = []
        self.done = threading.Event()

    def run(self):
        t0 = time.monotonic()
        sent = 0
        self.log.append((t0, 0))
        while not self.done.is_set() and time.monotonic() - t0 < self.seconds:
            wait = (sent + len(self.pkts)) / self.rate - (time.monotonic() - t0)
            if wait > 0:
                self.done.wait(wait)
                continue
            sent += self.mgr.inject(self.pkts, port=0)
            self.log.append((time.monotonic(), sent))

    def sent_between(self, a, b):
        """Packets sent in [a, b], interpolated along the log."""
        def at(t):
            for (t0, n0), (t1, n1) in zip(self.log, self.log[1:]):
                if t0 <= t <= t1:
                    return n0 + (n1 - n0) * (t - t0) / (t1 - t0)
            raise AssertionError("time %.3f is outside the injector's log" % t)
        return at(b) - at(a)


def test_rates_match_paced_injection_at_20kpps(clean):
    mgr = clean
    mgr.launch(onvm.native("forward"), service=1, name="fw")
    mgr.launch(onvm.native("sink"), service=2, name="sink")
    mgr.set_default_chain([1, 2])
    pacer = Pacer(mgr, RATE)
    pacer.start()
    try:
        time.sleep(0.5)
        r = mgr.rates(interval=2.0)
        time.sleep(0.3)                 # the log goes past the rates' window
    finally:
        pacer.done.set()
        pacer.join(10)
    truth = pacer.sent_between(r["time"] - r["interval"], r["time"]) / r["interval"]
    print("injected %.0f pps; rates: port 0 %.0f, fw %.0f, sink %.0f" % (
        truth, r["ports"][0]["rx"], r["nfs"][mgr["fw"].instance]["rx"], r["nfs"][mgr["sink"].instance]["rx"]))
    assert truth > 0
    assert r["interval"] >= 2.0
    for got in (r["ports"][0]["rx"], r["nfs"][mgr["fw"].instance]["rx"], r["nfs"][mgr["fw"].instance]["tx"],
                r["nfs"][mgr["sink"].instance]["rx"]):
        assert got == pytest.approx(truth, rel=0.10)


def test_rates_match_the_native_generator_at_20kpps(clean):
    mgr = clean
    gen = mgr.launch(onvm.native("generate", rate=RATE, flows=16), service=1, name="gen")
    fw = mgr.launch(onvm.native("forward"), service=2, name="fw")
    sink = mgr.launch(onvm.native("sink"), service=3, name="sink")
    mgr.set_default_chain([1, 2, 3])
    time.sleep(1.2)        # the whole window after the chain is set (a window over the start is lower)
    r = mgr.rates(interval=1.0)
    for got in (r["nfs"][gen.instance]["tx"], r["nfs"][fw.instance]["rx"], r["nfs"][sink.instance]["rx"]):
        assert got == pytest.approx(RATE, rel=0.10)
    assert r["nfs"][sink.instance]["drop"] == 0
    # the terminal table shows the same computation
    out = subprocess.run([sys.executable, "-m", "onvm", "stats", "--manager", mgr.name, "--watch", "--count", "2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().split("\n\n")[-1]
    sink_line = next(line for line in last.splitlines() if line.startswith("sink"))
    assert float(sink_line.split()[5]) == pytest.approx(RATE, rel=0.10)


def test_restart_under_traffic_never_spikes(clean):
    mgr = clean
    mgr.launch(onvm.native("generate", rate=RATE, flows=16), service=1, name="gen")
    fw = mgr.launch(onvm.native("forward"), service=2, name="fw")
    mgr.launch(onvm.native("sink"), service=3, name="sink")
    mgr.set_default_chain([1, 2, 3])
    dash = mgr.dashboard(interval=0.2)
    time.sleep(1.0)
    fw.kill()
    fw2 = mgr.launch(onvm.native("forward"), service=2, name="fw")
    assert wait_for(lambda: any(r["name"] == "fw" and r["generation"] != 1 and r["rx"] > 0
                                for r in dash._rows()), timeout=10)
    time.sleep(1.0)
    h = mgr.history()
    nfs = h[h.kind == "nf"]
    assert (nfs[["rx", "tx", "drop"]] >= 0).all().all()
    assert nfs.rx.max() < 1.5 * RATE, nfs.sort_values("rx").tail()
    states = {(r["name"], r["pid"]): r["state"] for r in dash._rows()}
    assert states[("fw", fw.pid)] == "killed by signal 9"
    assert states[("fw", fw2.pid)] == "running"
    assert "killed by signal 9" in dash.text()       # listed and marked, not removed


def _counts():
    import bqplot
    from ipywidgets.widgets.widget import _instances
    dashboards = [t for t in threading.enumerate() if t.name.startswith("onvm-dashboard")]
    return (threading.active_count(), len(dashboards),
            sum(isinstance(w, bqplot.Figure) for w in list(_instances.values())), len(_instances))


def test_ten_reruns_leave_no_threads_or_figures(clean):
    mgr = clean
    mgr.launch(onvm.native("generate", rate=RATE, flows=16), service=1, name="gen")
    mgr.launch(onvm.native("sink"), service=2, name="sink")
    mgr.set_default_chain([1, 2])
    before = _counts()
    dash = mgr.dashboard()
    time.sleep(0.7)                      # it drew once: toggles and rows exist
    one = _counts()
    assert one[:3] == (before[0] + 1, 1, before[2] + 2)
    for _ in range(10):                  # the cell run again
        dash = mgr.dashboard()
        time.sleep(0.6)
        assert _counts() == one
    assert dash.running
    dash.close()
    assert _counts() == before


def test_dashboard_controls(clean, tmp_path):
    mgr = clean
    mgr.launch(onvm.native("generate", rate=RATE, flows=16), service=1, name="gen")
    mgr.launch(onvm.native("sink"), service=2, name="sink")
    mgr.set_default_chain([1, 2])
    dash = mgr.dashboard(window=30, interval=0.25)
    assert wait_for(lambda: "sink" in dash.nf_names(), timeout=5)
    time.sleep(0.6)
    # per-NF toggles: a hidden NF's lines leave the plot
    assert "sink" in dash._in.labels
    dash.show("sink", False)
    assert wait_for(lambda: "sink" not in dash._in.labels, timeout=3)
    assert dash._checks["sink"].value is False
    dash._checks["sink"].value = True            # the checkbox does the same
    assert wait_for(lambda: "sink" in dash._in.labels, timeout=3)
    # pause freezes the picture; resume goes on
    dash.pause()
    time.sleep(0.3)
    frozen = dash._table.value
    time.sleep(0.8)
    assert dash._table.value == frozen and dash.paused
    dash.resume()
    assert wait_for(lambda: dash._table.value != frozen, timeout=3)
    # the window
    dash.window = 120
    assert dash._xs.min == -120 and dash._window.value == 120
    # 2 updates a second at least: the default
    assert mgr.dashboard()._interval <= 0.5
    dash = mgr._dashboard
    # CSV of the history
    time.sleep(0.6)
    path = dash.save_csv(str(tmp_path / "h.csv"))
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert {"time", "kind", "name", "rx", "tx", "drop"} <= set(rows[0])
    assert any(r["name"] == "sink" and float(r["rx"]) > 0 for r in rows)
    # text for runs with no front end
    bundle = dash._repr_mimebundle_()
    assert "sink" in bundle["text/plain"] and "application/vnd.jupyter.widget-view+json" in bundle


def test_dashboard_bad_input(clean):
    mgr = clean
    threads = threading.active_count()
    for kw, msg in (({"window": 0}, "window must be"), ({"window": -5}, "window must be"),
                    ({"interval": 0}, "interval must be"), ({"window": "60"}, "window must be"),
                    ({"graph": [1, 2]}, "graph must be a networkx DiGraph")):
        with pytest.raises(ValueError, match=msg):
            mgr.dashboard(**kw)
        assert threading.active_count() == threads
    for bad in (0, -1, 601, "1"):
        with pytest.raises(ValueError, match="interval must be"):
            mgr.rates(interval=bad)
    dash = mgr.dashboard()
    with pytest.raises(ValueError, match="no NF named 'nosuch'"):
        dash.show("nosuch", False)
    with pytest.raises(ValueError, match="window must be"):
        dash.window = 0
    assert dash.window == 60 and dash.running       # unchanged, still running
    dash.close()
    assert threading.active_count() == threads


def test_dashboard_stops_with_its_manager():
    threads = threading.active_count()
    m = onvm.Manager(name="ts%d" % os.getpid())
    try:
        dash = m.dashboard()
        assert dash.running
    finally:
        m.stop()
    assert not dash.running and threading.active_count() == threads
    with pytest.raises(onvm.OnvmError, match="not running"):
        m.dashboard()
    with pytest.raises(onvm.OnvmError, match="not running"):
        m.rates()
    assert threading.active_count() == threads
    assert len(m.history()) >= 0        # what was recorded stays readable
    dash.close()


def test_chain_picture_of_a_graph():
    """chain_svg draws any DiGraph of port and NF nodes: a port given as
    kind="port" or as an object with an int .index (onvm.Port), NF nodes by
    instance or by service; edge rates exact where the flow is not split."""
    import networkx as nx

    from onvm.dashboard import chain_svg, edge_rates, node_rates

    class P:                                   # what onvm.Port looks like
        def __init__(self, i):
            self.index = i

        def __repr__(self):
            return "port%d" % self.index
    p0, p1 = P(0), P(1)
    g = nx.DiGraph([(p0, "a"), (p0, "b"), ("a", "c"), ("b", "c"), ("c", "out")])
    g.nodes["a"].update(instance=1)
    g.nodes["b"].update(instance=2)
    g.nodes["c"].update(service=3)
    g.add_node("out", kind="port", port=1)
    g.add_edge("c", p1)
    g.add_edge("a", "b")                       # a's output splits, b has two inputs: estimated
    rates = {"ports": {0: {"rx": 300.0, "tx": 0.0, "drop": 0.0}, 1: {"rx": 0.0, "tx": 290.0, "drop": 0.0}},
             "nfs": {1: {"service": 1, "rx": 200.0, "tx": 200.0, "drop": 0.0, "load": 0.0},
                     2: {"service": 2, "rx": 100.0, "tx": 100.0, "drop": 0.0, "load": 1.0},
                     5: {"service": 3, "rx": 150.0, "tx": 145.0, "drop": 0.0, "load": 0.1},
                     6: {"service": 3, "rx": 150.0, "tx": 145.0, "drop": 0.0, "load": 0.2}}}
    nodes = node_rates(g, rates)
    assert nodes["c"]["rx"] == 300.0 and nodes["c"]["load"] == 0.2 and nodes[p0]["load"] is None
    e = edge_rates(g, nodes)
    assert e[(p0, "a")] == (200.0, True) and e[(p0, "b")] == (100.0, False) and e[("c", "out")] == (290.0, True)
    assert e[("a", "b")][1] is False and e[("a", "c")][1] is False
    svg = chain_svg(g, rates)
    assert svg.count("class='onvm-node'") == 6 and "200" in svg and "~" in svg
    assert "hsl(0, " in svg                    # b, its ring full: red


def test_the_dashboard_draws_the_deployment_and_follows_a_redeploy(mgr):
    import networkx as nx
    g = nx.DiGraph()
    g.add_node("screen", nf=onvm.native("forward"))
    g.add_edge(onvm.Port(0), "screen")
    g.add_edge("screen", onvm.Port(1))
    mgr.deploy(g)
    dash = mgr.dashboard()

    def drawn(*names):     # what the dashboard's own updater (2 Hz) has drawn
        return all(n in dash._chain.value for n in names)
    try:
        assert wait_for(lambda: drawn("screen"), 10)
        assert "audit" not in dash._chain.value
        g.add_node("audit", nf=onvm.native("count"))
        g.remove_edge("screen", onvm.Port(1))
        g.add_edge("screen", "audit")
        g.add_edge("audit", onvm.Port(1))
        mgr.deploy(g)
        assert wait_for(lambda: drawn("screen", "audit"), 10)
    finally:
        dash.close()


def test_dashboard_time_is_the_managers_age():
    """The status line says how long the manager has run, from its process's
    start: not the machine's uptime (CLOCK_MONOTONIC, what samples carry)."""
    import re
    before = time.monotonic()
    m = onvm.Manager(name="tage%d" % os.getpid())
    try:
        started = time.monotonic()
        dash = m.dashboard(interval=0.2)
        assert wait_for(lambda: " up " in dash._status.value, timeout=5)
        assert before - 0.05 <= m._recorder().origin <= started + 0.05
        time.sleep(1.2)
        age = float(re.search(r" up (\d+) s", dash._status.value).group(1))
        assert 1 <= age <= time.monotonic() - before + 1, dash._status.value
        dash.close()
    finally:
        m.stop()


def test_count_axes_have_whole_number_ticks():
    from onvm.dashboard import count_ticks
    for top in (0, 0.3, 1, 4, 9.9, 11, 99, 250, 1234, 22000, 1.3e6):
        last, ticks = count_ticks(top)
        assert last >= top and ticks[0] == 0 and ticks[-1] == last and 2 <= len(ticks) <= 6
        assert all(t == int(t) for t in ticks), (top, ticks)        # never 0.5 ("500m")
        steps = {b - a for a, b in zip(ticks, ticks[1:])}
        assert len(steps) == 1 and str(int(steps.pop())).strip("0") in ("1", "2", "5")


def test_a_line_that_ended_keeps_its_last_point_not_nan():
    """bqplot puts a line's label at its last point; NaN there is an error in
    the browser at every update (tests/test_dashboard_browser.py sees them)."""
    import numpy as np

    from onvm.dashboard import _end_at_last_point
    nan = float("nan")
    x = np.array([-3.0, -2.0, -1.0, 0.0])
    y = np.array([[1.0, 2.0, nan, nan],        # left after -2
                  [nan, 5.0, 6.0, 7.0],        # came at -2
                  [nan, nan, nan, nan]])       # no value in the window
    xs, ys = _end_at_last_point(x, y)
    assert xs.tolist() == [[-3, -2, -2, -2], [-3, -2, -1, 0], [-3, -2, -1, 0]]
    assert ys[0].tolist() == [1, 2, 2, 2] and ys[1, 1:].tolist() == [5, 6, 7] and ys[2].tolist() == [0] * 4
    assert all(np.isfinite(row[-1]) for row in ys)


def test_dashboard_axes_are_counts(clean):
    mgr = clean
    mgr.launch(onvm.native("generate", rate=RATE, flows=16), service=1, name="gen")
    mgr.launch(onvm.native("sink"), service=2, name="sink")
    mgr.set_default_chain([1, 2])
    dash = mgr.dashboard(interval=0.2)
    assert wait_for(lambda: dash._ys.max >= RATE / 4, timeout=5)
    for axis, scale in ((dash._yaxis, dash._ys), (dash._byaxis, dash._by)):
        assert axis.tick_format == ".3~s" and axis.tick_values[-1] == scale.max
        assert all(float(t).is_integer() for t in axis.tick_values)
    assert dash._ys.max < 2 * RATE * 1.1


def test_an_nfs_drop_verdicts_are_rated_apart_from_ring_full_drops(clean):
    """An NF that drops by its verdict shows it (DROP pps), not 0 beside a
    ring-full column: what the demo's and the dashboard's tables print."""
    mgr = clean
    mgr.launch(onvm.native("generate", rate=RATE, flows=16), service=1, name="gen")
    dropper = mgr.launch(onvm.native("drop"), service=2, name="dropper")
    mgr.set_default_chain([1, 2])
    assert wait_for(lambda: dropper.stats()["actions"].get("drop", 0) > 0, timeout=5)
    r = mgr.rates(interval=1.0)["nfs"][dropper.instance]
    # Every packet it took in it dropped by its verdict, whatever rate a busy
    # machine let the generator reach: the two rates come from one interval.
    assert r["rx"] > 0 and r["verdicts_drop"] == pytest.approx(r["rx"], rel=0.1), r
    assert 0 < r["verdicts_drop_packets"] <= dropper.stats()["actions"]["drop"]
    dash = mgr.dashboard(interval=0.2)
    assert wait_for(lambda: "dropper" in dash.text(), timeout=5)
    time.sleep(0.5)
    row = next(ln for ln in dash.text().splitlines() if ln.startswith("dropper"))
    header = dash.text().splitlines()[1]
    assert "DROP pps" in header and "full pps" in header
    drop_pps = float(row.split()[5])            # NF svc inst rx tx DROP full load state
    assert drop_pps > 0, row
    assert "DROP/s" in dash._table.value and "full/s" in dash._table.value
