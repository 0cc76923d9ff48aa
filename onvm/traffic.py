"""Packets in and out of a manager in bulk, without DPDK: the file-backed
packet rings (struct onvm_ring_hdr, onvm/core/capring.c) that the manager
creates in its runtime dir.  A ring port has an inject ring (we write, its
RX thread reads) and a capture ring (its TX thread writes, we read).  Both
sides call the same C functions; this process never starts DPDK."""
import os
import re
import struct
import threading
import time

from .common.abi import check, ffi, lib
from .common.errors import check_number, check_timeout
from .common.results import Latency, lat_bucket_low
from .common.rings import WRITE_CHUNK, Doorbell, Ring, ring_path, traffic_path
from .common.spec import _check_service

PACED_CHUNK = 1024       # packets made into frames at a time by a paced inject


def paced_chunks(pkts, rate, convert):
    """(an iterator of (frames, due, None) chunks, how many packets) for
    inject(rate=): each chunk is made into frames (convert: the manager's
    check and conversion) only when the ring wants it, so the first packets
    leave while later ones are still scapy objects.  A packet that turns out
    bad raises ValueError naming it; those before it may have left."""
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 1000000
    gap = 1e9 / rate

    def chunks():
        for i in range(0, len(pkts), PACED_CHUNK):
            try:
                frames = convert(pkts[i:i + PACED_CHUNK])
            except ValueError as e:       # its index in the chunk -> in the whole list
                m = re.match(r"packet (\d+)(.*)", str(e), re.S)
                raise ValueError("packet %d%s" % (i + int(m.group(1)), m.group(2)) if m else str(e)) from None
            yield frames, [t0 + int((i + j) * gap) for j in range(len(frames))], None
    return chunks(), len(pkts)


class PortRings:
    """The client side of a manager's ring ports: inject and capture rings,
    opened on first use."""

    def __init__(self, name):
        self.name = name
        self._rings = {}
        self._bell = None

    def ring(self, port, what):
        key = (port, what)
        r = self._rings.get(key)
        if r is None:
            r = self._rings[key] = Ring(ring_path(self.name, "port%d-%s" % (port, what)))
        return r

    def bell(self):
        if self._bell is None:
            self._bell = Doorbell(traffic_path(self.name))
        return self._bell

    def inject(self, port, raw, due=None, aux=None, timeout=5.0, wait=True):
        """Write raw packets into port's inject ring, ringing the RX threads;
        while the ring is full, wait for room until nothing moved for timeout
        seconds.  wait: then also wait until the RX thread took them all.
        Interrupted (Ctrl-C, any exception), it withdraws what it wrote that
        still waits: the RX thread skips those and counts them as the port's
        inject_drop, so a cancelled paced inject leaves the port free.
        raw: a list of frames, or an iterator of (frames, due, aux) chunks
        (made as they are needed: the first ones go out while later ones are
        still being made).
        returns: how many went in."""
        if isinstance(raw, list):
            step, whole = WRITE_CHUNK * 4, raw
            raw = ((whole[i:i + step], None if due is None else due[i:i + step],
                    None if aux is None else aux[i:i + step]) for i in range(0, len(whole), step))
        r = self.ring(port, "in")
        bell = self.bell()
        sent = 0
        last = time.monotonic()
        last_due = None
        r.lock()
        done = False
        try:
            lib.onvm_ring_begin(r.hdr)     # also withdraws what a writer killed mid-inject left
            stalled = False
            for frames, dues, tags in raw:
                k = 0
                while k < len(frames):
                    n = r.write(frames[k:], None if dues is None else dues[k:], None if tags is None else tags[k:])
                    bell.ring()
                    sent += n
                    k += n
                    now = time.monotonic()
                    if n:
                        last = now
                    elif now - last > timeout:
                        stalled = True
                        break
                    else:
                        time.sleep(0.0005)     # full: the RX thread is catching up
                if dues:
                    last_due = dues[-1]
                if stalled:
                    break
            if wait:
                # Paced packets leave when due: wait for the last one, then for the RX thread.
                extra = 0.0 if last_due is None else \
                    max(0.0, (last_due - time.clock_gettime_ns(time.CLOCK_MONOTONIC)) / 1e9)
                deadline = time.monotonic() + timeout + extra
                while r.pending and time.monotonic() < deadline:
                    bell.ring()
                    time.sleep(0.0002)
            done = True
        finally:
            lib.onvm_ring_end(r.hdr, 0 if done else 1)
            r.unlock()
            if not done:
                bell.ring()                # the RX thread skips them now, not at their due time
        return sent

    def capture(self, port, count=None, timeout=1.0, with_meta=False):
        """Packets out of port's capture ring, each once: up to count,
        waiting up to timeout for them (count=None: what is there now).
        The ring has one reader: a second capture() of the port while one
        runs (in any thread or process) is refused, since the two would
        split the packets; other readers are taps (Manager.tap, record)."""
        r = self.ring(port, "out")
        got = []
        deadline = time.monotonic() + timeout
        if not r.lock(block=False):
            raise ValueError("port %d's output is being read by another capture() (in this process or another): "
                             "two would split its packets. A second reader of the port needs a tap of its own: "
                             "mgr.tap(port=%d) or mgr.record(port=%d)" % (port, port, port))
        try:
            while True:
                got += r.read(None if count is None else count - len(got), with_meta)
                if count is None or len(got) >= count or time.monotonic() >= deadline:
                    break
                time.sleep(0.0005)
        finally:
            r.unlock()
        return got

    def close(self):
        for r in self._rings.values():
            r.close()
        self._rings = {}


class Filter:
    """A libpcap filter ("tcp port 80") compiled once, run here by
    libpcap's BPF interpreter.  raises: ValueError if it does not compile."""

    def __init__(self, text):
        if not isinstance(text, str):
            raise ValueError("a filter is a libpcap expression string, got %r" % (text,))
        self.text = text
        self._prog = ffi.new("struct onvm_tap *")
        check(lib.onvm_filter_compile(text.encode(), self._prog), error=ValueError)

    def __call__(self, pkt, wirelen=None):
        return bool(lib.onvm_filter_match(self._prog, pkt, wirelen or len(pkt), len(pkt)))

    def __repr__(self):
        return "<Filter %r>" % self.text


def dissect_all(raw, name):
    """A scapy PacketList of raw frames."""
    from scapy.plist import PacketList

    from .common.packet import dissect
    return PacketList([dissect(r) for r in raw], name=name)


class _StopOnExit:
    """`with` calls stop() at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Tap(_StopOnExit):
    """A capture at a hop, armed until stop(): a copy of every packet that
    passes there (and matches the filter) waits in the tap's ring, 8 MiB by
    default; what does not fit is counted in .dropped at stop().  The
    original packets go on unchanged.  Made by Manager.tap().

    with mgr.tap(after="fw") as t:
        mgr.inject(pkts)
        out = t.capture(count=len(pkts), timeout=2)"""

    def __init__(self, mgr, where, target, label, filter=None, ring_mb=8):
        self.mgr = mgr
        self.label = label
        reply = mgr.ctl.tap_arm(where=where, target=target, filter=filter or "", ring_mb=ring_mb)
        self.slot = reply["tap"]
        self.ring = Ring(reply["path"])
        self.dropped = None
        mgr._taps.append(self)

    def capture(self, count=None, timeout=1.0, raw=False):
        """Packets the tap copied, each once; like Manager.capture."""
        check_number("timeout", timeout, 0, 86400, what="a number of seconds")
        got = []
        deadline = time.monotonic() + timeout
        while True:
            got += self.ring.read(None if count is None else count - len(got))
            if count is None or len(got) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.0005)
        return got if raw else dissect_all(got, self.label)

    def stop(self):
        """Disarm.  returns: copies lost because the tap's ring was full
        (a reader that did not keep up loses its own copies, nobody else's)."""
        if self.dropped is None:
            self.dropped = 0
            if self.mgr.running:
                self.dropped = self.mgr.ctl.tap_disarm(tap=self.slot)["dropped"]
            self.dropped += self.ring.hdr.dropped
            self.ring.close()
            if self in self.mgr._taps:
                self.mgr._taps.remove(self)
        return self.dropped

    def __repr__(self):
        return "<Tap %s%s>" % (self.label, " stopped" if self.dropped is not None else "")


def read_pcap(path):
    """[(frame bytes, time in ns)] of a pcap or pcapng file.
    raises: ValueError naming the file if it is missing or not a capture."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError("no pcap file %s" % path)
    out = []
    try:
        try:
            reader = RawPcapReader(path)
        except Scapy_Exception:
            reader = RawPcapNgReader(path)
        with reader:
            for data, meta in reader:
                if hasattr(meta, "tshigh"):          # pcapng: units of tsresol
                    ts = ((meta.tshigh << 32) | meta.tslow) * 1000000000 // meta.tsresol
                else:
                    ts = meta.sec * 1000000000 + meta.usec * (1 if getattr(reader, "nano", False) else 1000)
                out.append((data, ts))
    except (Scapy_Exception, EOFError, struct.error) as e:
        raise ValueError("%s is not a readable pcap file: %s" % (path, e)) from None
    if not out:
        raise ValueError("%s holds no packets" % path)
    return out


def replay_schedule(times, speed, loop):
    """CLOCK_MONOTONIC due times for a file's packet times played loop
    times at speed (0: all due now).  A loop starts one mean gap after the
    previous one's last packet.
    raises: ValueError if a gap, divided by speed, is longer than the
    longest paced gap (60 s, ONVM_PACE_MAX_GAP_NS)."""
    if speed == 0:
        return None
    span = times[-1] - times[0]
    period = span + (span // (len(times) - 1) if len(times) > 1 else 0)
    gap = max([b - a for a, b in zip(times, times[1:])] + [period - span])
    if gap / speed > lib.ONVM_PACE_MAX_GAP_NS:
        limit = lib.ONVM_PACE_MAX_GAP_NS / 1e9
        raise ValueError("speed=%r: the file's longest gap between packets, %.9g s, would last %.3g s; a paced "
                         "gap is at most %g s: replay at speed >= %.6g (or speed=0: as fast as possible)"
                         % (speed, gap / 1e9, gap / 1e9 / speed, limit, gap / 1e9 / limit))
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 2000000
    return [t0 + int((k * period + t - times[0]) / speed) for k in range(loop) for t in times]


class Recorder(_StopOnExit):
    """Writes what a ring receives into a pcap file (microsecond stamps,
    Ethernet) from a thread of this process, until stop().  Made by
    Manager.record."""

    def __init__(self, ring, path, mgr=None, match=None):
        self.ring, self.path, self.match = ring, os.fspath(path), match
        self._tap_mgr = mgr          # set when the ring belongs to a tap we armed
        self.count = 0
        self.dropped = 0
        self._f = open(self.path, "wb")
        self._f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        # CLOCK_MONOTONIC (the rings' clock) to the wall clock
        self._offset = time.time_ns() - time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="onvm-record", daemon=True)
        self._thread.start()

    def _drain(self):
        locked = self._tap_mgr is None and self.ring.lock()
        try:
            recs = self.ring.read(with_meta=True)
        finally:
            if locked:
                self.ring.unlock()
        out = []
        for data, wire, ts in recs:
            if self.match is not None and not self.match(data, wire):
                continue
            ts += self._offset
            out.append(struct.pack("<IIII", ts // 1000000000, ts % 1000000000 // 1000, len(data), wire))
            out.append(data)
        self._f.write(b"".join(out))
        self.count += len(out) // 2
        return len(recs)

    def _run(self):
        while not self._stop.is_set():
            if not self._drain():
                self._stop.wait(0.002)

    def stop(self):
        """Write what is left and close the file.  returns: packets written
        (.dropped: copies the tap lost because this recording fell behind)."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._drain()
            self._f.close()
            if self._tap_mgr is not None:
                for t in list(self._tap_mgr._taps):
                    if t.ring is self.ring:
                        self.dropped = t.stop()
        return self.count

    def __repr__(self):
        return "<Recorder %s packets=%d>" % (self.path, self.count)


# ---- packet journeys: mgr.trace(pkt) ------------------------------------------

TRACE_KINDS = {lib.ONVM_TRACE_PORT_IN: "port", lib.ONVM_TRACE_NF: "nf", lib.ONVM_TRACE_PORT_OUT: "exit",
               lib.ONVM_TRACE_DROP: "drop"}
TRACE_WHY = {lib.ONVM_WHY_NF_DROP: "NF returned DROP", lib.ONVM_WHY_NO_INSTANCE: "no NF for service",
             lib.ONVM_WHY_NO_PORT: "no such port", lib.ONVM_WHY_CHAIN_END: "end of chain",
             lib.ONVM_WHY_HOP_LIMIT: "hop limit", lib.ONVM_WHY_STEER: "steer not allowed",
             lib.ONVM_WHY_RING_FULL: "next ring full", lib.ONVM_WHY_DEVICE: "port refused it"}


class Hop:
    """One hop of a packet's journey.
    kind: "port" (it arrived), "nf" (an NF instance handed it on), "exit"
    (a port sent it) or "drop"; t_ns: ns after the first hop; port; node
    (graph node name, or the NF's name), service, instance (NF slot);
    action: what the NF returned ("next", "drop", "to_service 3",
    "to_port 1"); reason: why it was dropped."""
    __slots__ = ("kind", "t_ns", "port", "node", "service", "instance", "action", "reason")

    def __init__(self, kind, t_ns, port=None, node=None, service=None, instance=None, action=None, reason=None):
        self.kind, self.t_ns, self.port, self.node = kind, t_ns, port, node
        self.service, self.instance, self.action, self.reason = service, instance, action, reason

    def where(self):
        if self.kind in ("port", "exit") or (self.port is not None and self.instance is None):
            return "port %d" % self.port if self.port is not None else "RX"
        return "%s (service %s, instance %s)" % (self.node, self.service, self.instance)

    def what(self):
        return {"port": "in", "exit": "out", "nf": self.action, "drop": "dropped: %s" % self.reason}[self.kind]

    def __repr__(self):
        return "<Hop %s %s %s +%d ns>" % (self.kind, self.where(), self.what(), self.t_ns)


class Trace:
    """A packet's journey (Manager.trace): its hops in order, the ingress
    port first, then each NF instance, then the exit port or the drop.
    Reads like a list of Hop; .exit_port, .dropped, .nfs() give numbers."""

    def __init__(self, hops, complete=True):
        self.hops = hops
        self.complete = complete

    def __iter__(self):
        return iter(self.hops)

    def __len__(self):
        return len(self.hops)

    def __getitem__(self, i):
        return self.hops[i]

    @property
    def exit_port(self):
        """The port that sent it, or None."""
        return self.hops[-1].port if self.hops and self.hops[-1].kind == "exit" else None

    @property
    def dropped(self):
        """The drop hop (.node, .instance, .reason), or None."""
        return self.hops[-1] if self.hops and self.hops[-1].kind == "drop" else None

    def nfs(self):
        """[(node, instance)] of each NF hop, in order."""
        return [(h.node, h.instance) for h in self.hops if h.kind == "nf"]

    def _rows(self):
        return [(str(i), h.kind, h.where(), h.what(), "%.1f" % (h.t_ns / 1000)) for i, h in enumerate(self.hops)]

    def _end(self):
        if not self.complete:
            if len(self.hops) >= lib.ONVM_TRACE_HOPS:
                return "the first %d hops only (a trace holds no more)" % lib.ONVM_TRACE_HOPS
            return "no exit or drop seen (still in flight, or lost)"
        h = self.hops[-1]
        return "left by port %d" % h.port if h.kind == "exit" else "dropped at %s: %s" % (h.where(), h.reason)

    def __repr__(self):
        head = ("#", "hop", "where", "action", "t (us)")
        rows = [head] + self._rows()
        w = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines = ["  ".join(v.ljust(w[c]) for c, v in enumerate(r)).rstrip() for r in rows]
        return "<Trace %d hops, %s>\n%s" % (len(self.hops), self._end(), "\n".join(lines))

    def _repr_html_(self):
        import html
        cells = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(v) for v in r) for r in self._rows())
        return ("<table><caption>%s</caption><tr><th>#</th><th>hop</th><th>where</th><th>action</th>"
                "<th>t (&micro;s)</th></tr>%s</table>" % (html.escape(self._end()), cells))


def _action_text(action, dest, names):
    if action == lib.ONVM_TO_SERVICE:
        return "to_service %d%s" % (dest, " (%s)" % names[dest] if dest in names else "")
    if action == lib.ONVM_TO_PORT:
        return "to_port %d" % dest
    return {lib.ONVM_NEXT: "next", lib.ONVM_DROP: "drop"}.get(action, "action %d" % action)


def trace_hops(raw, control):
    """Hop objects from the manager's trace_read reply; names from the
    control file: a deployed graph's node names, else each NF's name."""
    names = control.service_names()
    hops, t0 = [], raw[0][0] if raw else 0
    for ts, kind, why, where, service, action, dest in raw:
        k = TRACE_KINDS.get(kind, "?")
        h = Hop(k, ts - t0)
        if k in ("port", "exit") or where == lib.ONVM_OWNER_MGR or (k == "drop" and why == lib.ONVM_WHY_DEVICE):
            h.port = where if where != lib.ONVM_OWNER_MGR else (hops[0].port if hops else None)
        else:
            slot = control.shm.nfs[where] if where < lib.ONVM_MAX_NFS else None
            h.instance = where
            h.service = service or (slot.service if slot is not None else None)
            h.node = names.get(h.service) or (ffi.string(slot.name).decode() if slot is not None else "?")
        if k == "nf":
            h.action = _action_text(action, dest, names)
        if k == "drop":
            h.reason = TRACE_WHY.get(why, "reason %d" % why)
        hops.append(h)
    return hops


# ---- load: mgr.generate(...) --------------------------------------------------

class GenerateResult:
    """What mgr.generate did: sent (packets made), seconds, rate (pps),
    received (packets the sinks took meanwhile) and latency (a Latency of
    the sinks' samples, one per burst)."""

    def __init__(self, sent, seconds, received, latency):
        self.sent, self.seconds, self.received, self.latency = sent, seconds, received, latency
        self.rate = sent / seconds if seconds > 0 else 0.0

    def __repr__(self):
        return "<Generated %d packets in %.2f s (%.0f pps), %d received; %r>" % (
            self.sent, self.seconds, self.rate, self.received, self.latency)


def sink_state(control):
    """{slot: (rx, samples, sum_ns, max_ns, min_ns, histogram)} of the
    running sink NFs (kind native:sink)."""
    out = {}
    for i, s in control.nf_slots():
        if ffi.string(s.kind).decode() == "native:sink":
            n = control.nf_counters(i)
            out[i] = (n.rx, n.app[0], n.app[1], n.app[2], n.lat_min, list(n.lat_hist))
    return out


def latency_between(before, after):
    """The Latency of what the sinks sampled between two sink_state()s."""
    hist, total, lo, hi = [0] * lib.ONVM_LAT_BUCKETS, 0, None, 0
    for slot, (_, samples, sum_ns, max_ns, min_ns, h) in after.items():
        b = before.get(slot, (0, 0, 0, 0, 0, [0] * lib.ONVM_LAT_BUCKETS))
        if samples == b[1]:
            continue
        hist = [x + y - z for x, y, z in zip(hist, h, b[5])]
        total += sum_ns - b[2]
        lo = min_ns if lo is None else min(lo, min_ns)
        hi = max(hi, max_ns)
    if any(hist):
        # min and max are the sinks' since they started: narrow them to
        # this run's buckets
        first = next(b for b, n in enumerate(hist) if n)
        last = max(b for b, n in enumerate(hist) if n)
        lo = max(lo, lat_bucket_low(first))
        hi = min(hi, lat_bucket_low(last + 1) - 1)
    return Latency(hist, lo or 0, hi, total)


# ---- a manager's ring ports: what Manager.inject/capture/tap/replay/record do ---------

def inject(mgr, pkts, port=0, timeout=5.0, rate=None):
    """Send packets (scapy packets or bytes, a PacketList, or a pcap
    file's path) into a ring port, as if they arrived from the wire.  Any
    number of packets: they go through the port's inject ring (shared
    memory, in bulk); while it is full this waits until nothing moved
    for timeout seconds.

    param rate: packets per second (the RX thread releases each when
        due), at least 1/60 (a paced gap is at most 60 s); None: as
        fast as the chain takes them
    returns: how many were accepted.  Interrupted (Ctrl-C), what is not
    yet sent is withdrawn (counted as the port's inject_drop) and the
    port is free at once."""
    if isinstance(pkts, (str, os.PathLike)):
        pkts = [p for p, _ in read_pcap(pkts)]
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
            raise ValueError("rate must be a positive number of packets per second, got %r" % (rate,))
        if 1e9 / rate > lib.ONVM_PACE_MAX_GAP_NS:
            raise ValueError("rate must be at least %.6g packets per second (a paced gap is at most %d s), "
                             "got %r" % (1e9 / lib.ONVM_PACE_MAX_GAP_NS, lib.ONVM_PACE_MAX_GAP_NS // 10 ** 9,
                                        rate))
        if not isinstance(pkts, (bytes, bytearray)) and not hasattr(pkts, "build"):
            # made into frames a chunk at a time, ahead of the pacing: the first leave at once
            check_ring_port(mgr, port)
            check_timeout(timeout)
            chunks, total = paced_chunks(list(pkts), rate, raw_frames)
            return inject_raw(mgr, port, chunks, None, timeout, total)
    raw = raw_frames(pkts)
    check_ring_port(mgr, port)
    check_timeout(timeout)
    due = None
    if rate is not None:
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 1000000
        due = [t0 + int(i * 1e9 / rate) for i in range(len(raw))]
    return inject_raw(mgr, port, raw, due, timeout)


def inject_raw(mgr, port, raw, due, timeout, total=None):
    """raw: frames, or (frames, due, aux) chunks of `total` frames in all."""
    total = len(raw) if total is None else total
    sent = mgr.rings.inject(port, raw, due=due, timeout=timeout)
    if sent < total:
        # giving up: the manager counts these as the port's inject_drop
        mgr.ctl.inject(port=port, pkts=[], dropped=total - sent)
    return sent


def raw_frames(pkts):
    """pkts (one packet or many: scapy packets or bytes) as frames of 14..2048 bytes."""
    if isinstance(pkts, (bytes, bytearray)) or hasattr(pkts, "build"):
        pkts = [pkts]
    from .common.packet import frame
    raw = [frame(p) for p in pkts]
    for i, r in enumerate(raw):
        if not 14 <= len(r) <= 2048:
            raise ValueError("packet %d is %d bytes; a packet is 14..2048 bytes" % (i, len(r)))
    return raw


def capture(mgr, port=1, count=None, timeout=1.0, raw=False, after=None, filter=None):
    """Packets that came out of a ring port, oldest first, each returned
    once.  Waits up to timeout seconds for count packets (count=None:
    whatever is there now).

    param after: instead of a port, what an NF emitted (its name or
        service ID): read from a tap armed with mgr.tap(after=...), or
        else mirrored for the duration of this call only
    param filter: a libpcap filter ("tcp port 80"): only packets that
        match are returned (the rest of the port's output is consumed)
    returns: a scapy PacketList, or a list of bytes with raw=True
    raises: ValueError for an unknown port or NF, or a bad filter"""
    check_timeout(timeout)
    if count is not None:
        check_number("count", count, 0, 2 ** 63 - 1, integer=True, what="an int")
    if after is not None:
        service = service_of(mgr, after)
        for t in mgr._taps:
            if t.key == (lib.ONVM_TAP_AFTER_SERVICE, service, filter or ""):
                return t.capture(count, timeout, raw)
        with mgr.tap(after=after, filter=filter) as t:
            return t.capture(count, timeout, raw)
    check_ring_port(mgr, port)
    match = Filter(filter) if filter is not None else None
    if match is None:
        got = mgr.rings.capture(port, count, timeout)
    else:
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = None if count is None else count - len(got)
            got += [p for p in mgr.rings.capture(port, left, 0) if match(p)]
            if count is None or len(got) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.001)
    return got if raw else dissect_all(got, "port%d" % port)


def tap(mgr, after=None, port=None, direction="out", filter=None, ring_mb=8):
    """Start capturing at a hop, by mirroring: a copy of each packet goes
    to the tap, the original goes on.  Either after=NF name or service
    ID (what its instances emit), or port=P with direction "out" (what
    the port sends) or "in" (what it receives).

    returns: a Tap (a context manager; .capture(count, timeout), .stop())
    raises: ValueError for an unknown NF or port, a filter that does not
        compile, or when all 8 taps are in use; nothing is armed then"""
    if (after is None) == (port is None):
        raise ValueError("tap(): give either after=NF or port=P")
    if after is not None:
        where, target, label = lib.ONVM_TAP_AFTER_SERVICE, service_of(mgr, after), "after %s" % (after,)
    else:
        check_port(mgr, port)
        if direction not in ("in", "out"):
            raise ValueError("direction must be 'in' or 'out', got %r" % (direction,))
        where = lib.ONVM_TAP_PORT_OUT if direction == "out" else lib.ONVM_TAP_PORT_IN
        target, label = port, "port%d %s" % (port, direction)
    if filter is not None:
        Filter(filter)      # a clear error before anything is armed
    t = Tap(mgr, where, target, label, filter, ring_mb)
    t.key = (where, target, filter or "")
    return t


def replay(mgr, path=0, port=0, speed=1.0, loop=1, timeout=5.0):
    """Replay a pcap file into a ring port with its original timing:
    each packet is due at its offset in the file divided by speed
    (speed=0: as fast as possible), the file loop times over.  Blocks
    until the last packet went in; Ctrl-C withdraws what is not yet
    sent.  A gap between packets, divided by speed, may be 60 s at most
    (a file with longer pauses needs a higher speed).  returns: packets
    sent.

    replay(port) (an int): start the file of a "pcap:rx=FILE" port
    instead; such a port waits for this, so the chain and NFs can be
    set up first."""
    if isinstance(path, int) and not isinstance(path, bool):
        return replay_port(mgr, path)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 <= speed < float("inf"):
        raise ValueError("speed must be a finite number >= 0 (0: as fast as possible), got %r" % (speed,))
    if isinstance(loop, bool) or not isinstance(loop, int) or loop < 1:
        raise ValueError("loop must be a positive int, got %r" % (loop,))
    check_timeout(timeout)
    recs = read_pcap(path)
    check_ring_port(mgr, port)
    if len(recs) * loop > 10 ** 8:
        raise ValueError("loop=%d: %d packets in all; at most 10**8 in one replay" % (loop, len(recs) * loop))
    raw = raw_frames([p for p, _ in recs]) * loop
    due = replay_schedule([t for _, t in recs], speed, loop)
    return inject_raw(mgr, port, raw, due, timeout)


def record(mgr, port=1, path="capture.pcap", after=None, filter=None):
    """Record what leaves a port (or, with after=, what an NF emits)
    into a pcap file, with the time each packet was taken, until
    .stop().  A tap: captures and other recordings of the port each get
    every packet too.  returns: a Recorder (.stop() returns the packet
    count; .dropped, what it lost by falling behind)."""
    if after is not None:
        return Recorder(mgr.tap(after=after, filter=filter).ring, path, mgr)
    return Recorder(mgr.tap(port=port, filter=filter).ring, path, mgr)


def service_of(mgr, node):
    """The service ID of an NF given by name (as launched, or as it
    registered) or by service ID."""
    if isinstance(node, int) and not isinstance(node, bool):
        _check_service(node)
        return node
    if not isinstance(node, str):
        raise ValueError("a node is an NF name or a service ID, got %r" % (node,))
    for n in mgr.launched:
        if n.alive and (n.name == node or n.name.rpartition(".")[0] == node):
            return n.service
    for s, nm in mgr.control.service_names().items():    # a deployed graph's node
        if nm == node:
            return s
    for i, s in mgr.control.nf_slots():
        nm = mgr.control.nf_stats(i)["name"]
        if nm == node or nm.rpartition(".")[0] == node:
            return s.service
    names = sorted({mgr.control.nf_stats(i)["name"] for i, _ in mgr.control.nf_slots()})
    raise ValueError("no NF named %r is running (NFs: %s)" % (node, ", ".join(names) or "none"))

def check_ring_port(mgr, port):
    """raises: ValueError unless port is one of mgr's ring ports (inject and capture need one)."""
    check_port(mgr, port)
    if not mgr.port_specs[port].startswith("ring"):
        ring = [p for p, s in enumerate(mgr.port_specs) if s.startswith("ring")]
        raise ValueError("port %d is a %s port; inject and capture work on ring ports %s"
                         % (port, mgr.port_specs[port].partition(":")[0], ring))

def replay_port(mgr, port):
    """Start the file of mgr's "pcap:rx=FILE" port (it waits for this)."""
    check_port(mgr, port)
    if not mgr.port_specs[port].startswith("pcap:") or "rx=" not in mgr.port_specs[port]:
        raise ValueError("port %d (%s) has no pcap file to replay" % (port, mgr.port_specs[port]))
    mgr.ctl.replay(port=port)

def check_port(mgr, port):
    """raises: ValueError unless mgr has port."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < len(mgr.port_specs):
        raise ValueError("port %r does not exist (ports 0..%d)" % (port, len(mgr.port_specs) - 1))
