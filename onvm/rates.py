"""Packet rates, from the counters the manager copies at each control tick
together with that tick's time (struct onvm_sample and sample_ns, written by
stats_update in onvm/core/stats.c).  A rate is a counter delta over the
manager's own clock between two samples, so a slow reader (a busy notebook,
a slow browser) cannot distort it.  An NF is known by its slot and the
slot's generation: a restarted NF counts from zero again and is rated from
zero, never as a negative or huge jump.

mgr.rates(), mgr.history(), the dashboard, `onvm stats --watch` and
`onvm mgr` all use compute() below."""
import collections
import os
import threading
import time

from .common.abi import lib
from .common.errors import OnvmError
from .common.shm import NFSample, PortSample, Sample, read_sample  # noqa: F401  (onvm.rates.Sample, as before)


def process_started(pid):
    """When process pid started, in seconds of CLOCK_MONOTONIC (the clock of
    the manager's samples), or None if /proc does not say.  The kernel
    gives a start in clock ticks since boot (CLOCK_BOOTTIME, which also
    counts time suspended), so this goes through the process's age."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
        boot_now, mono_now = time.clock_gettime(time.CLOCK_BOOTTIME), time.monotonic()
        age = boot_now - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return mono_now - max(0.0, age)


def _delta(new, old):
    """Packets counted between two samples; a counter that went back
    started again from zero (a restart), so all of it is new."""
    return new - old if new >= old else new


def compute(a, b):
    """Rates between samples a and b (b newer): {"time": b's time (s),
    "interval": s, "nfs": {instance: {name, kind, service, instance, pid,
    generation, state, errors, rx, tx, drop (packets/s lost at its full
    ring), verdicts_drop (packets/s it returned DROP for), rx_packets,
    tx_packets, drop_packets, verdicts_drop_packets (the counters), queued,
    load (queued / ring size)}}, "ports": {p: {name, rx, tx, drop, the counters, queued}},
    "pool": {size, in_use, use}}.  An NF whose generation changed (or that
    is new) is rated from zero over the whole interval: an underestimate
    for that one interval, never a spike.

    raises: ValueError if b is not newer than a"""
    dt = b.time - a.time
    if not dt > 0:
        raise ValueError("samples at %.6f and %.6f: the second must be newer" % (a.time, b.time))
    nfs = {}
    for i, n in b.nfs.items():
        old = a.nfs.get(i)
        if old is None or old.generation != n.generation:
            old = None
        r = {"name": n.name, "kind": n.kind, "service": n.service, "instance": i, "pid": n.pid,
             "generation": n.generation, "state": n.state, "errors": n.errors}
        for f in ("rx", "tx", "drop", "verdicts_drop"):
            r[f] = _delta(getattr(n, f), getattr(old, f) if old else 0) / dt
            r[f + "_packets"] = getattr(n, f)
        r["queued"] = n.queued
        r["load"] = min(1.0, n.queued / b.ring_size) if b.ring_size else 0.0
        nfs[i] = r
    ports = {}
    for p, n in b.ports.items():
        old = a.ports.get(p)
        r = {"name": n.name}
        for f in ("rx", "tx", "drop"):
            r[f] = _delta(getattr(n, f), getattr(old, f) if old else 0) / dt
            r[f + "_packets"] = getattr(n, f)
        r["queued"] = n.queued
        ports[p] = r
    in_use, size = b.pool
    return {"time": b.time, "interval": dt, "nfs": nfs, "ports": ports,
            "pool": {"size": size, "in_use": in_use, "use": in_use / size if size else 0.0}}


class Recorder:
    """A manager's rate history: each poll() takes a sample (at most one
    per MIN_STEP) and keeps the rates since the one before.  Shared by
    mgr.rates(), mgr.history() and the dashboard, so they agree.

    param control: the manager's ControlFile
    param exit_state: pid -> how an NF that left ended: "stopped",
        "killed by signal 9", "gone" (not known), or None (not yet known)
    param keep: rate points kept (at 2 a second, 10 minutes)"""
    MIN_STEP = 0.1

    def __init__(self, control, exit_state=None, keep=1200):
        self.control = control
        self.exit_state = exit_state or (lambda pid: "gone")
        self.samples = collections.deque(maxlen=keep)
        self.points = collections.deque(maxlen=keep)   # compute() results, oldest first
        self.nfs = collections.OrderedDict()           # (instance, generation) -> row, live and gone
        self.lock = threading.Lock()
        self._origin = None

    @property
    def origin(self):
        """When the manager started (s of its clock, to 1/100 s), so
        sample.time - origin is its age; the first sample's time if that
        is not known."""
        if self._origin is None:
            cf = self.control
            pid = cf.shm.mgr_pid if cf is not None and cf.shm is not None else 0
            started = process_started(pid) if pid > 0 else None
            if started is None:
                with self.lock:
                    return self.samples[0].time if self.samples else None
            self._origin = started
        return self._origin

    def poll(self):
        """Take a sample if the last is MIN_STEP old.  returns: the newest sample."""
        cf = self.control
        if cf is None or cf.shm is None:
            raise OnvmError("the manager has stopped")
        return self.add(read_sample(cf))

    def add(self, s):
        """Record sample s unless it is less than MIN_STEP newer than the
        last.  returns: the newest sample."""
        with self.lock:
            last = self.samples[-1] if self.samples else None
            if last is not None and s.time - last.time < self.MIN_STEP:
                return last
            self.samples.append(s)
            if last is not None:
                point = compute(last, s)
                self.points.append(point)
                self._track(point)
            return s

    def _track(self, point):
        """Keep every NF ever seen: live ones with their rates, gone ones
        marked (with how they ended, if known) and rated zero."""
        live = set()
        for i, r in point["nfs"].items():
            key = (i, r["generation"])
            live.add(key)
            self.nfs[key] = dict(r)
        for key, row in self.nfs.items():
            if key not in live and not is_gone(row["state"]):
                row.update(rx=0.0, tx=0.0, drop=0.0, verdicts_drop=0.0, queued=0, load=0.0)
                # None: its process is not reaped yet; asked again next time
                row["state"] = self.exit_state(row["pid"]) or "leaving"
        extra = len(self.nfs) - 4 * lib.ONVM_MAX_NFS      # forget the oldest gone ones
        if extra > 0:
            for key in [k for k, r in self.nfs.items() if is_gone(r["state"])][:extra]:
                del self.nfs[key]

    def rates(self, interval=1.0, timeout=10.0):
        """The rates over the last `interval` seconds of the manager's clock:
        from the newest sample to the newest one at least that much older
        (and not much more: interval * 1.25 + MIN_STEP), waiting for it if
        the recording has none.
        raises: OnvmError if the manager's tick stops meanwhile"""
        latest = self.poll()
        deadline = time.monotonic() + interval + timeout
        while True:
            with self.lock:
                base = next((s for s in reversed(self.samples) if s.time <= latest.time - interval), None)
            if base is not None and latest.time - base.time <= interval * 1.25 + self.MIN_STEP:
                return compute(base, latest)
            if time.monotonic() > deadline:
                raise OnvmError("the manager's counters did not advance for %.0f s; is it stuck?" % timeout)
            time.sleep(0.02)
            latest = self.poll()

    def history(self):
        """Every recorded rate as a pandas DataFrame, one row per NF or
        port per point: time (s since the first sample), kind ("nf" or
        "port"), id (instance or port), name, service, generation, state,
        rx, tx, drop (packets/s), queued."""
        from .common.errors import require
        pd = require("pandas", "lab", "mgr.history()")
        with self.lock:
            points = list(self.points)
            t0 = self.samples[0].time if self.samples else 0.0
        rows = []
        for p in points:
            t = p["time"] - t0
            for i, r in p["nfs"].items():
                rows.append((t, "nf", i, r["name"], r["service"], r["generation"], r["state"],
                             r["rx"], r["tx"], r["drop"], r["queued"]))
            for i, r in p["ports"].items():
                rows.append((t, "port", i, r["name"], 0, 0, "", r["rx"], r["tx"], r["drop"], r["queued"]))
        return pd.DataFrame(rows, columns=["time", "kind", "id", "name", "service", "generation", "state",
                                           "rx", "tx", "drop", "queued"])


def is_gone(state):
    """True for the states of an NF that is no longer there."""
    return state.split(" ")[0] in ("stopped", "gone", "killed", "exited")


# ---- a manager's recorder: what Manager.rates, history and dashboard read ---------


def recorder_of(mgr):
    """mgr's rates.Recorder, made on first use and kept (the dashboard and rates() share it)."""
    rec = getattr(mgr, "_rates", None)
    if rec is None or rec.control is not mgr.control:
        rec = mgr._rates = Recorder(mgr.control, lambda pid: exit_state(mgr, pid))
    return rec


def exit_state(mgr, pid):
    """How the NF with this pid ended: "gone" if it was not launched
    here, None while its process is not reaped (see rates.Recorder)."""
    for n in mgr.launched:
        if n.pid == pid:
            rc = n.process.poll()
            if rc is None:
                return None
            return "stopped" if rc == 0 else "killed by signal %d" % -rc if rc < 0 else "exited %d" % rc
    return "gone"


def rates_of(mgr, interval=1.0):
    """Packets per second over the last `interval` seconds of the
    manager's clock (waits if less has been recorded).

    returns: {"time", "interval", "nfs": {instance: {name, service, pid,
        state, rx, tx, drop, load, ...}}, "ports": {p: {name, rx, tx,
        drop}}, "pool": {size, in_use, use}}; rates are floats
    raises: ValueError for a bad interval, OnvmError if the manager is stopped"""
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 600:
        raise ValueError("interval must be a number of seconds in (0, 600], got %r" % (interval,))
    if not mgr.running:
        raise OnvmError("manager %r is not running" % mgr.name)
    return recorder_of(mgr).rates(interval)


def history_of(mgr):
    """The rates recorded so far (by the dashboard and rates()) as a
    pandas DataFrame: time, kind, id, name, service, generation, state,
    rx, tx, drop, queued; .to_csv() for analysis.  Kept after stop()."""
    rec = getattr(mgr, "_rates", None)
    if rec is None:
        rec = Recorder(None)
    return rec.history()
