"""Probes of a running manager: where one packet goes (trace) and how a load
fares (generate, with the native generate NF and the sinks on its path).
Manager.trace and Manager.generate delegate here; the results are the types
in onvm.traffic (Trace, GenerateResult)."""
import time

from .common.abi import lib
from .common.errors import LONGEST_S, check_number, check_timeout
from .common.spec import native
from .traffic import (
    GenerateResult,
    Trace,
    check_port,
    check_ring_port,
    latency_between,
    raw_frames,
    sink_state,
    trace_hops,
)


def trace(mgr, pkt, port=0, timeout=2.0):
    """The journey of one packet: inject it into a ring port marked for
    tracing and collect each hop as the data plane records it.

    >>> t = mgr.trace(Ether()/IP(dst="203.0.113.9")/TCP(dport=80))  # doctest: +SKIP
    >>> t.exit_port, t.nfs()                                         # doctest: +SKIP
    (1, [('fw', 3)])

    param pkt: one scapy packet or bytes
    param timeout: seconds to wait for the exit or the drop
    returns: a Trace (a table in a notebook): port, each NF instance with
        its action and time, then the exit port or the drop and why
    raises: ValueError for something that is not one packet or a port
        that is not a ring port"""
    check_timeout(timeout)
    if not (isinstance(pkt, (bytes, bytearray)) or hasattr(pkt, "build")):
        raise ValueError("trace() takes one packet (a scapy packet or bytes), got %s" % type(pkt).__name__)
    (raw,) = raw_frames(pkt)
    check_ring_port(mgr, port)
    tid = mgr.ctl.trace_start()["id"]
    ends = (lib.ONVM_TRACE_PORT_OUT, lib.ONVM_TRACE_DROP)
    try:
        mgr.rings.inject(port, [raw], aux=[tid], timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hops = mgr.ctl.trace_read(id=tid)["hops"]
            if hops and hops[-1][1] in ends:
                time.sleep(0.002)   # a device refusal follows its exit hop at once
                break
            time.sleep(0.001)
    finally:
        hops = mgr.ctl.trace_read(id=tid, end=1)["hops"]
    return Trace(trace_hops(hops, mgr.control), complete=bool(hops) and hops[-1][1] in ends)


def generate(mgr, port=0, rate=1e6, size=64, flows=1024, seconds=None, count=None, timeout=60.0):
    """Load from the native generate NF: UDP packets of `size` bytes over
    `flows` 5-tuples, at `rate` packets per second, following `port`'s
    path as if they arrived there, for `seconds` (5 when neither is
    given) or until `count` were made.  Each carries its send time; the
    sinks on the path (onvm.native("sink")) sample one per burst.

    >>> r = mgr.generate(port=0, rate=100000, count=50000)     # doctest: +SKIP
    >>> r.sent, r.received, r.latency.p99                       # doctest: +SKIP
    (50000, 50000, 41230)

    returns: a GenerateResult: sent, seconds, rate, received, latency
        (a Latency: p50, p90, p99, p999, min, max, mean in ns)
    raises: ValueError naming a bad argument; nothing is started then"""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1 <= rate <= 1e9:
        raise ValueError("rate must be a positive number of packets per second (1..1e9), got %r" % (rate,))
    if isinstance(size, bool) or not isinstance(size, int) or not 60 <= size <= 1514:
        raise ValueError("size must be an int of 60..1514 bytes, got %r" % (size,))
    if isinstance(flows, bool) or not isinstance(flows, int) or not 1 <= flows <= 65535:
        raise ValueError("flows must be an int of 1..65535, got %r" % (flows,))
    if seconds is not None and count is not None:
        raise ValueError("give seconds or count, not both")
    if count is not None:
        # a run lasts a day at most: count=10**30 would never end
        most = int(rate * LONGEST_S)
        check_number("count", count, 1, most, integer=True, what="a positive int",
                     why="a run lasts a day at most: %d packets at rate=%g" % (most, rate))
    if count is None:
        seconds = 5 if seconds is None else seconds
        check_number("seconds", seconds, 1e-3, LONGEST_S, what="a positive number of seconds")
    check_timeout(timeout)
    check_port(mgr, port)
    used = {d for p in range(len(mgr.port_specs)) for a, d in mgr.control.path(p) if a == lib.ONVM_TO_SERVICE}
    used |= {s.service for _, s in mgr.control.nf_slots((lib.ONVM_NF_CLAIMED, lib.ONVM_NF_RUNNING))}
    service = max(set(range(1, lib.ONVM_MAX_SERVICES)) - used)
    before = sink_state(mgr.control)
    args = dict(rate=int(rate), size=size, flows=flows, count=count or 0, port=port)
    gen = mgr.launch(native("generate", **args), service=service, name="generate", timeout=timeout)
    try:
        made = lambda: mgr.control.nf_counters(gen.instance).created
        deadline = time.monotonic() + timeout
        while made() == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        t0 = time.monotonic()
        if count is None:
            time.sleep(seconds)
        else:
            deadline = t0 + count / rate + timeout
            while made() < count and time.monotonic() < deadline:
                time.sleep(0.005)
        elapsed = time.monotonic() - t0
    finally:
        gen.stop()
        mgr.launched = [n for n in mgr.launched if n is not gen]
    sent = made()       # its stats file outlives it; it makes nothing after seeing stop (10 ms)
    mgr.wait_idle(min(timeout, 10.0))    # what is in flight reaches the sinks
    after = sink_state(mgr.control)
    received = sum(v[0] - before.get(k, (0,))[0] for k, v in after.items())
    return GenerateResult(sent, elapsed, received, latency_between(before, after))
