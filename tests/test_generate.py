"""The generate NF's pacing: the arithmetic alone (onvm/core/onvm_pace.h,
compiled into a small C program) at elapsed times no test run could wait
for, and a real generator feeding a real sink at a set rate."""
import os
import re
import shutil
import subprocess
import sysconfig
import time

import pytest

import onvm
from conftest import wait_for
from onvm.common.abi import lib

CORE = os.path.join(os.path.dirname(onvm.__file__), "core")

PACE_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "onvm_pace.h"

/* argv: elapsed_ns rate [elapsed_ns rate ...]; prints one due per line. */
int main(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2)
		printf("%llu\n", (unsigned long long)onvm_pace_due(strtoull(argv[i], NULL, 0),
								     strtoull(argv[i + 1], NULL, 0)));
	return 0;
}
"""

NS = 10 ** 9
U64_MAX = 2 ** 64 - 1


def exact_due(elapsed_ns, rate):
    return min(elapsed_ns * rate // NS, U64_MAX)


@pytest.fixture(scope="module")
def pace(tmp_path_factory):
    """Runs onvm_pace_due in C, built with the compiler that built onvm."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.fail("no C compiler %r: apt-get install gcc" % cc)
    d = tmp_path_factory.mktemp("pace")
    src, exe = d / "pace.c", d / "pace"
    src.write_text(PACE_MAIN)
    subprocess.run([cc, "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I", CORE, str(src), "-o", str(exe)],
                   check=True, timeout=60)

    def run(cases):
        args = [str(v) for case in cases for v in case]
        out = subprocess.run([str(exe)] + args, check=True, capture_output=True, text=True, timeout=30).stdout
        return [int(x) for x in out.split()]
    return run


def test_pacing_is_exact_long_after_64_bit_products_overflow(pace):
    hour, day, year = 3600 * NS, 86400 * NS, 365 * 86400 * NS
    cases = [
        (0, 10_000_000), (1, 1), (NS - 1, 1), (NS, 1), (NS + NS // 2, 3),
        (31 * 60 * NS, 10_000_000),           # elapsed * rate passes 2^64 here
        (hour + 123_456_789, 10_000_000), (day + 999_999_999, 14_880_952),
        (year, 100_000_000), (10 * year + 7, 1_000_000_000),
        (U64_MAX, 1), (U64_MAX, 1_000_000_000),
        (hour, 2 ** 40),                      # an absurd rate: exact, no wrap
        (2 ** 63, 2 ** 63), (U64_MAX, U64_MAX),  # beyond 2^64 packets: saturates
    ]
    assert pace(cases) == [exact_due(e, r) for e, r in cases]


def test_pacing_never_goes_backwards(pace):
    # Around an hour at 10 Mpps, the old arithmetic wrapped to a small
    # number, and generate waited for `made` to be due again: a stall.
    base = 3600 * NS
    cases = [(base + k * 37_000_001, 10_000_000) for k in range(200)]
    due = pace(cases)
    assert due == sorted(due) and due[0] == exact_due(*cases[0]) and due[-1] == exact_due(*cases[-1])


RATE = 20000


def test_generate_keeps_its_rate(mgr):
    mgr.set_default_chain([10, 3])
    sink = mgr.launch(onvm.native("sink"), service=3)
    launched = time.monotonic()   # the generator's clock starts after this
    gen = mgr.launch(onvm.native("generate", rate=RATE, size=64), service=10)
    assert wait_for(lambda: gen.stats().get("created", 0) > 0, 10)
    c1, t1 = gen.stats()["created"], time.monotonic()
    time.sleep(2.0)
    t2 = time.monotonic()
    # What is owed depends on time alone: a generator that was not scheduled
    # for a while catches up, so this holds on a busy machine too.
    owed = c1 + 0.9 * RATE * (t2 - t1)
    assert wait_for(lambda: gen.stats()["created"] >= owed, 10), \
        "generate made %d packets, owed %d" % (gen.stats()["created"], owed)
    # And it never runs ahead of the schedule.
    made = gen.stats()["created"]
    assert made <= RATE * (time.monotonic() - launched) + lib.ONVM_BURST
    assert wait_for(lambda: sink.stats()["rx"] >= made, 10)
    gen.stop()
    assert gen.process.returncode == 0
    assert mgr.wait_idle()


# How an NF may ask whether the manager lives: each is a system call.
LIVENESS_CALLS = ("kill", "tgkill", "pidfd_send_signal", "poll", "ppoll", "waitid")


def test_generate_checks_for_stop_by_time_not_per_burst(mgr):
    """The stop check asks the kernel whether the manager is alive (a system
    call); generate makes it at most every 10 ms, not once per burst."""
    if shutil.which("strace") is None:
        pytest.fail("strace is needed to count system calls: apt-get install strace")
    mgr.set_default_chain([10, 3])
    mgr.launch(onvm.native("sink"), service=3)
    gen = mgr.launch(onvm.native("generate", rate=200000, size=64), service=10)
    assert wait_for(lambda: gen.stats().get("created", 0) > 0, 10)
    t0 = time.monotonic()
    # strace detaches on SIGINT; the window is no longer than this run.
    r = subprocess.run(["timeout", "-s", "INT", "1.5", "strace", "-qq", "-f", "-e",
                        "trace=" + ",".join(LIVENESS_CALLS), "-p", str(gen.pid)],
                       capture_output=True, text=True, timeout=30)
    window = time.monotonic() - t0
    checks = len(re.findall(r"\b(?:%s)\(" % "|".join(LIVENESS_CALLS), r.stderr))
    assert checks >= 1, "strace saw no liveness check at all: %s" % r.stderr[-500:]
    assert checks <= window / 0.010 + 3, "%d liveness checks in %.2f s" % (checks, window)
    assert gen.alive
    gen.stop()
    assert gen.process.returncode == 0, "generate did not stop on request: %s" % gen.log()[-500:]


def test_mgr_generate_reports_what_it_sent_and_the_latency_at_the_sink(mgr):
    """A real chain generate -> forward -> sink at a modest rate: lossless,
    and the sink's latency percentiles are ordered and within [min, max]."""
    mgr.launch(onvm.native("forward"), service=1, name="fw")
    sink = mgr.launch(onvm.native("sink"), service=2, name="sink")
    mgr.set_default_chain([1, 2])
    r = mgr.generate(port=0, rate=50000, size=128, flows=64, count=20000)
    assert r.sent == 20000 and r.received == 20000, r
    assert sink.stats()["rx"] == 20000
    lat = r.latency
    assert 0 < lat.samples <= 20000
    ps = [lat.min, lat.p50, lat.p90, lat.p99, lat.p999, lat.max]
    assert ps == sorted(ps) and ps[0] > 0, lat
    assert lat.min <= lat.mean <= lat.max
    assert "p99" in repr(r) and "20000" in repr(r)
    # seconds: runs about that long at about that rate (bounds generous: a busy machine)
    r = mgr.generate(port=0, rate=20000, seconds=1)
    assert 0.9 <= r.seconds < 10 and 0 < r.sent <= 20000 * r.seconds + 2 * lib.ONVM_BURST + 1000
    assert r.received == r.sent and r.latency.samples > 0
    assert "generate" not in mgr, "the generator is stopped afterwards"


@pytest.mark.parametrize("kwargs, message", [
    (dict(rate=0), "rate must be a positive"), (dict(rate=-5), "rate must be a positive"),
    (dict(rate="fast"), "rate must be a positive"), (dict(size=59), "size must be an int of 60..1514"),
    (dict(size=1515), "size must be"), (dict(flows=0), "flows must be an int of 1..65535"),
    (dict(count=0), "count must be a positive"), (dict(seconds=-1), "seconds must be a positive"),
    (dict(seconds=1, count=5), "seconds or count, not both"), (dict(port=9), "port 9 does not exist"),
    # these never returned, or raised OverflowError, before
    (dict(count=10 ** 30), r"count must be a positive int in 1..86400000000 \(a run lasts a day at most"),
    (dict(rate=1000, count=86400001), r"count .* 86400000 packets at rate=1000"),
    (dict(seconds=float("inf")), "seconds must be a positive number of seconds in 0.001..86400"),
    (dict(seconds=float("nan")), "seconds must be"), (dict(seconds=86401), "seconds must be"),
    (dict(timeout=float("nan")), "timeout must be a number of seconds"),
    (dict(rate=float("nan")), "rate must be a positive"),
])
def test_mgr_generate_refuses_bad_arguments_and_starts_nothing(mgr, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mgr.generate(**kwargs)
    assert mgr.launched == [] and mgr.stats()["nfs"] == {}


def test_latency_buckets_are_log2_linear_and_the_python_inverse_matches_c():
    from onvm.traffic import Latency, lat_bucket_low
    for b in range(lib.ONVM_LAT_BUCKETS - 1):
        lo, hi = lat_bucket_low(b), lat_bucket_low(b + 1) - 1
        assert lib.onvm_lat_bucket(lo) == b == lib.onvm_lat_bucket(hi)
        assert b < 8 or (hi - lo + 1) / lo <= 0.125       # at most 12.5 % wide
    assert lib.onvm_lat_bucket(2 ** 63) == lib.ONVM_LAT_BUCKETS - 1
    hist = [0] * lib.ONVM_LAT_BUCKETS
    hist[lib.onvm_lat_bucket(1000)] = 99
    hist[lib.onvm_lat_bucket(10 ** 6)] = 1
    lat = Latency(hist, 990, 10 ** 6, 99 * 1000 + 10 ** 6)
    assert 960 <= lat.p50 <= 1023 and lat.p90 == lat.p50 and lat.p999 > 900000 and lat.max == 10 ** 6
