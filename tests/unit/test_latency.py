"""The sink's latency histogram read into percentiles (onvm.common.results):
log2-linear buckets, 8 per power of two, each at most 12.5 % wide
(tests/test_generate.py checks the same buckets against the C core's)."""
import pytest

from onvm.common.limits import ONVM_LAT_BUCKETS
from onvm.common.results import Latency, lat_bucket, lat_bucket_low


def test_buckets_tile_the_line_without_gaps():
    for b in range(ONVM_LAT_BUCKETS - 1):
        lo, hi = lat_bucket_low(b), lat_bucket_low(b + 1) - 1
        assert lo <= hi and lat_bucket(lo) == b == lat_bucket(hi)
        assert b < 8 or (hi - lo + 1) / lo <= 0.125


@pytest.mark.parametrize("ns, b", [(0, 0), (7, 7), (8, 8), (15, 15), (16, 16), (17, 16), (18, 17), (1000, 63),
                                   (2 ** 63, ONVM_LAT_BUCKETS - 1), (2 ** 64 - 1, ONVM_LAT_BUCKETS - 1)])
def test_known_buckets(ns, b):
    assert lat_bucket(ns) == b


def hist_of(samples):
    h = [0] * ONVM_LAT_BUCKETS
    for ns in samples:
        h[lat_bucket(ns)] += 1
    return h


def test_percentiles_are_within_a_bucket_and_clamped():
    samples = [1000] * 99 + [10 ** 6]
    lat = Latency(hist_of(samples), 990, 10 ** 6, sum(samples))
    assert lat.samples == 100 and lat.mean == sum(samples) / 100
    assert 960 <= lat.p50 <= 1023 and lat.p90 == lat.p50 and lat.p99 == lat.p50
    assert 900000 < lat.p999 <= 10 ** 6 and lat.percentile(100) <= lat.max == 10 ** 6


def test_a_percentile_never_leaves_min_max():
    lat = Latency(hist_of([5000] * 10), 5000, 5000, 50000)
    assert lat.p50 == lat.p999 == 5000


def test_no_samples():
    lat = Latency([0] * ONVM_LAT_BUCKETS, None, 0, 0)
    assert lat.samples == 0 and lat.p50 is None and lat.mean is None and repr(lat) == "<Latency no samples>"


def test_the_summary_line():
    lat = Latency(hist_of([2000] * 4), 2000, 2000, 8000)
    assert repr(lat).startswith("<Latency us: p50 2.0 p90 2.0") and "(4 samples)" in repr(lat)
