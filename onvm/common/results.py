"""What measurements hand back, as plain Python: the control tick's samples
(read from the control file by onvm.common.shm, rated by onvm.rates) and
the sink's latency histogram (onvm_lat_bucket's log2-linear buckets,
onvm_shm.h) read into percentiles.  Pure: no compiled core, so it is
checked in the unit tier."""
import collections

from .limits import ONVM_LAT_BUCKETS

# drop: lost at the NF's full ring (the manager's sample); verdicts_drop: packets
# the NF returned DROP for (its own stats file, read right after the sample)
NFSample = collections.namedtuple(
    "NFSample", "generation rx tx drop queued name kind service pid state errors verdicts_drop", defaults=(0,))
PortSample = collections.namedtuple("PortSample", "rx tx drop queued name")


class Sample:
    """One control tick's counters.  time: seconds of the manager's
    CLOCK_MONOTONIC; nfs: {instance: NFSample}; ports: {p: PortSample};
    pool: (in_use, size); ring_size: an NF's receive ring."""
    __slots__ = ("time", "nfs", "ports", "pool", "ring_size")

    def __init__(self, time, nfs, ports, pool, ring_size):
        self.time, self.nfs, self.ports, self.pool, self.ring_size = time, nfs, ports, pool, ring_size

    def __repr__(self):
        return "<Sample t=%.3f nfs=%d ports=%d>" % (self.time, len(self.nfs), len(self.ports))



def lat_bucket(ns):
    """The histogram bucket of a latency in ns, as onvm_lat_bucket (trace.c)
    files it: one bucket each below 8 ns, then 8 per power of two."""
    if ns < 8:
        return ns
    e = ns.bit_length() - 1
    return min((e - 2) * 8 + ((ns >> (e - 3)) & 7), ONVM_LAT_BUCKETS - 1)


def lat_bucket_low(b):
    """The smallest latency (ns) in the sink's histogram bucket b (the
    inverse of onvm_lat_bucket)."""
    return b if b < 8 else (8 + b % 8) << (b // 8 - 1)


class Latency:
    """A latency distribution from a sink's histogram (8 buckets per power of
    two: a percentile is within 12.5%, and within [min, max]).  Numbers in
    ns: samples, min, max, mean, p50, p90, p99, p999; percentile(q)."""

    def __init__(self, hist, lo, hi, total_ns):
        self.hist = hist
        self.samples = sum(hist)
        self.min, self.max = lo, hi
        self.mean = total_ns / self.samples if self.samples else None
        self.p50, self.p90, self.p99, self.p999 = (self.percentile(q) for q in (50, 90, 99, 99.9))

    def percentile(self, q):
        """The q-th percentile (0 < q <= 100) in ns: the middle of its
        bucket, clamped to [min, max]; None with no samples."""
        if not self.samples:
            return None
        rank, seen = q / 100 * self.samples, 0
        for b, n in enumerate(self.hist):
            seen += n
            if n and seen >= rank:
                mid = (lat_bucket_low(b) + lat_bucket_low(b + 1) - 1) // 2
                return min(max(mid, self.min), self.max)
        return self.max

    def __repr__(self):
        if not self.samples:
            return "<Latency no samples>"
        us = lambda v: "%.1f" % (v / 1000)
        return "<Latency us: p50 %s p90 %s p99 %s p99.9 %s max %s mean %s (%d samples)>" % (
            us(self.p50), us(self.p90), us(self.p99), us(self.p999), us(self.max), us(self.mean), self.samples)
