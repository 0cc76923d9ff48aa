"""rates.compute over synthetic samples: deltas over the manager's clock,
restarts rated from zero, never negative."""
import pytest

from onvm.rates import NFSample, PortSample, Sample, compute, is_gone


def nf(gen=1, rx=0, tx=0, drop=0, queued=0, state="running", errors=0, verdicts_drop=0):
    return NFSample(gen, rx, tx, drop, queued, "fw", "python", 1, 100, state, errors, verdicts_drop)


def sample(t, nfs=None, ports=None, pool=(10, 100), ring=512):
    return Sample(t, nfs or {}, ports or {}, pool, ring)


def test_rates_are_deltas_over_the_sample_clock():
    a = sample(10.0, {0: nf(rx=100, tx=90, drop=10)}, {0: PortSample(1000, 0, 5, 0, "ring")})
    b = sample(12.0, {0: nf(rx=300, tx=280, drop=10, queued=128)}, {0: PortSample(3000, 100, 5, 3, "ring")})
    r = compute(a, b)
    assert r["interval"] == 2.0 and r["time"] == 12.0
    n = r["nfs"][0]
    assert (n["rx"], n["tx"], n["drop"]) == (100.0, 95.0, 0.0)
    assert (n["rx_packets"], n["tx_packets"]) == (300, 280)
    assert n["load"] == 0.25 and n["queued"] == 128
    p = r["ports"][0]
    assert (p["rx"], p["tx"], p["drop"], p["queued"], p["name"]) == (1000.0, 50.0, 0.0, 3, "ring")
    assert r["pool"] == {"size": 100, "in_use": 10, "use": 0.1}


def test_a_restarted_nf_is_rated_from_zero():
    a = sample(1.0, {0: nf(gen=1, rx=10 ** 6)})
    b = sample(2.0, {0: nf(gen=2, rx=500)})
    assert compute(a, b)["nfs"][0]["rx"] == 500.0


def test_a_counter_that_went_back_counts_from_zero():
    a = sample(1.0, ports={0: PortSample(900, 0, 0, 0, "p")})
    b = sample(2.0, ports={0: PortSample(100, 0, 0, 0, "p")})
    assert compute(a, b)["ports"][0]["rx"] == 100.0


def test_a_new_nf_is_rated_over_the_whole_interval():
    r = compute(sample(0.0), sample(4.0, {3: nf(rx=400, verdicts_drop=40)}))
    assert r["nfs"][3]["rx"] == 100.0 and r["nfs"][3]["verdicts_drop"] == 10.0 and r["nfs"][3]["instance"] == 3


def test_load_is_capped_and_an_empty_pool_is_no_division():
    r = compute(sample(0.0), sample(1.0, {0: nf(queued=5000)}, pool=(0, 0), ring=512))
    assert r["nfs"][0]["load"] == 1.0 and r["pool"]["use"] == 0.0
    assert compute(sample(0.0), sample(1.0, {0: nf(queued=5)}, ring=0))["nfs"][0]["load"] == 0.0


@pytest.mark.parametrize("t", [1.0, 0.5])
def test_samples_out_of_order_are_refused(t):
    with pytest.raises(ValueError, match="the second must be newer"):
        compute(sample(1.0), sample(t))


@pytest.mark.parametrize("state, gone", [("running", False), ("starting", False), ("leaving", False),
                                         ("stopped", True), ("gone", True), ("killed (signal 9)", True),
                                         ("exited 1", True)])
def test_gone_states(state, gone):
    assert bool(is_gone(state)) is gone
