"""Statistics for a notebook: rates between two snapshots of a manager's
control file (onvm.common.shm.ControlFile.snapshot) and the table `onvm stats` prints."""
from .common.shm import ACTION_NAMES, NF_STATES, PORT_KINDS, ControlFile  # noqa: F401  (onvm.stats.ControlFile)


def rates(before, after):
    """Rates between two snapshots, from the samples the manager took with
    them (onvm.rates.compute); all zero if no tick came in between."""
    from .rates import compute
    a, b = before["sample"], after["sample"]
    if b.time <= a.time:
        a = type(a)(b.time - 1.0, b.nfs, b.ports, b.pool, b.ring_size)
    return compute(a, b)


def format_table(snap, rate=None):
    """A plain-text table of a snapshot, for terminals and notebooks, with
    the rates of stats.rates() if given ("-" without).  An NF's drops are
    two columns: "DROP pps", packets its function returned DROP for, and
    "full pps", packets lost because its ring was full."""
    def pps(r, f):
        return "-" if rate is None else "%.0f" % r.get(f, 0.0)
    rates_ = rate or {"nfs": {}, "ports": {}}
    lines = ["%-18s %4s %4s %12s %12s %10s %10s %10s %10s %9s" % (
        "NF", "svc", "inst", "rx", "tx", "rx pps", "tx pps", "DROP pps", "full pps", "refused")]
    for i, s in sorted(snap["nfs"].items(), key=lambda kv: (kv[1]["service"], kv[0])):
        r = rates_["nfs"].get(i, {})
        lines.append("%-18s %4d %4d %12d %12d %10s %10s %10s %10s %9d" % (
            s["name"][:18], s["service"], i, s["rx"], s["tx"], pps(r, "rx"), pps(r, "tx"), pps(r, "verdicts_drop"),
            pps(r, "drop"), s["refused"]))
    lines.append("%-18s %9s %12s %12s %10s %10s %10s %10s %9s" % (
        "port", "", "rx", "tx", "rx pps", "tx pps", "", "drop pps", "tx_drop"))
    for p, s in sorted(snap["ports"].items()):
        r = rates_["ports"].get(p, {})
        lines.append("%-18s %9s %12d %12d %10s %10s %10s %10s %9d" % (
            "%d %s" % (p, s["name"]), "", s["rx"], s["tx"], pps(r, "rx"), pps(r, "tx"), "", pps(r, "drop"),
            s["tx_drop"]))
    pool = snap["pool"]
    lines.append("pool: %d of %d packets in use" % (pool["in_use"], pool["size"]))
    lines.append("DROP pps: the NF returned DROP; full pps: lost at a full ring (NF) or port" if rate is not None
                 else "- : rates need two snapshots: format_table(snap, onvm.stats.rates(before, snap))")
    if snap.get("recovered"):
        lines.append("lost in NFs that died (recovered to the pool): %d packets" % snap["recovered"])
    return "\n".join(lines)
