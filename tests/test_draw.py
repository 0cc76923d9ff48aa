"""dep.draw(): the picture of a deployment fills its figure, every default
edge is labelled with the packets/s it carries (where the label can be
read, not on top of another), steer edges dashed and unlabelled."""
import threading
import time

import matplotlib
import networkx as nx

import onvm
from conftest import udp
from onvm import Port

matplotlib.use("agg")


@onvm.nf
def drop_tcp(pkt):
    return onvm.DROP if pkt.data[23] == 6 else onvm.NEXT


def _graph():
    g = nx.DiGraph()
    g.add_node("fw", nf=drop_tcp)
    g.add_node("ids", nf=onvm.native("forward"), replicas=2)
    g.add_edge(Port(0), "fw")
    g.add_edge("fw", "ids")
    g.add_edge("ids", Port(1))
    g.add_edge(Port(1), "ids")
    g.add_edge("ids", Port(0))
    g.add_edge("fw", Port(1), steer=True)
    return g


def _rate_labels(ax):
    return [t for t in ax.texts if t.get_text().endswith(" pps")]


def test_draw_labels_every_path_edge_with_its_rate_and_fills_the_frame(mgr):
    import matplotlib.pyplot as plt
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    dep = mgr.deploy(_graph())
    fwd = [bytes(udp(1000 + i)) for i in range(180)] + \
          [bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / TCP(sport=i)) for i in range(20)]
    back = [bytes(udp(2000 + i)) for i in range(50)]
    stop = threading.Event()

    def traffic():          # 4:1 forward to back, 10% of forward dropped by fw; bounded in time
        t0 = time.monotonic()
        while not stop.is_set() and time.monotonic() - t0 < 30:
            mgr.inject(fwd, port=0)
            mgr.inject(back, port=1)
            mgr.capture(port=1, raw=True)
            mgr.capture(port=0, raw=True)
            time.sleep(0.02)
    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        ax = dep.draw()
    finally:
        stop.set()
        t.join()
    fig = ax.figure
    fig.canvas.draw()
    labels = _rate_labels(ax)
    assert len(labels) == 5                             # the five default edges, not the steer edge
    rates = {}
    for text in labels:
        v = text.get_text().removesuffix(" pps").lstrip("~")
        rates[text.get_position()] = float(v[:-1]) * 1000 if v.endswith("k") else float(v)
    assert all(r > 0 for r in rates.values()), [t.get_text() for t in labels]
    # no label on top of another, or of a node
    boxes = [t.get_window_extent() for t in ax.texts if t.get_text() and not t.get_text().startswith("solid")]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    # the graph fills the frame: the nodes span at least 80% of its width
    node_boxes = [t.get_window_extent() for t in ax.texts if t.get_text().startswith(("port", "fw", "ids"))]
    span = max(b.x1 for b in node_boxes) - min(b.x0 for b in node_boxes)
    assert span > 0.8 * fig.bbox.width
    arrows = [t.arrow_patch for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    assert sorted(a.get_linestyle() for a in arrows) == ["-"] * 5 + ["--"]    # the steer edge, dashed
    plt.close(fig)


def test_draw_without_rates_or_a_manager(mgr):
    import matplotlib.pyplot as plt
    dep = mgr.deploy(_graph())
    ax = dep.draw(rates=False)
    assert not _rate_labels(ax)
    plt.close(ax.figure)
    assert dep._repr_png_().startswith(b"\x89PNG")
