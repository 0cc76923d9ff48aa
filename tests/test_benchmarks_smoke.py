"""Benchmarks cannot rot: each script in benchmarks/ runs in its --quick smoke
mode (seconds, small counts, one trial) as its own process, exits 0, prints
its table and writes its JSON to a temp dir, never into benchmarks/results/.
Nothing here asserts a speed: the figures of a smoke run mean nothing."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(os.path.dirname(HERE), "benchmarks")
RESULTS = os.path.join(BENCH, "results")

# script -> (lines its table must print, keys its JSON must hold); a script not listed here still
# runs below (every benchmarks/*.py does), checked for its exit status and its JSON
SCRIPTS = {
    "bench_cnf.py": (["pair  1 native first", "pair  2 user first", "round 1 user C forward (SDK)",
                      "user C forward / native forward: CPU per packet side by side", "example firewall:"],
                     ["pairs", "ratio_mpps_user_to_native", "ratio_cpu_user_to_native", "ratio_cpu_interval95",
                      "within_5pct", "firewall_mpps"]),
    "bench_capture.py": (["plain      trial 0:", "tap after  trial 0:", "best:"], ["packets", "runs", "ports"]),
    "bench_dashboard.py": (["kernel CPU, dashboard closed:", "the dashboard costs:"],
                           ["dashboard_cpu_pct", "history_rows"]),
    "bench_dataplane.py": (["x DPDK hop", "0 DPDK ring hop", "2 native: gen->forward->sink", "3 Python NF, batch",
                            "5 Python NF, per-packet, writes", "6 idle CPU", "7 wake-up [spin poll] 1st",
                            "7 baseline [spin]", "8 latency @"], ["table", "results"]),
    "bench_deploy.py": (["deploy of a 5-node graph:", "code swap", "lost"], ["deploy_5_nodes_s", "swap_s", "lost"]),
    "bench_flows.py": (["1000 flows: default", "exact (cached hash)", "naive rehash"], ["results"]),
    "bench_nohuge.py": (["no_hugepages", "native", "py_batch"], ["table", "results"]),
    "bench_startup.py": (["process   median", "container median", "container / process:"], ["median_s", "all_s"]),
    "bench_trace.py": (["round 1 base", "round 1 trace", "native chain: base", "trace(): median"],
                       ["median_mpps", "trace_call_ms"]),
    "soak.py": (["redeploy 1", "lost             0", "manager RSS KiB"], ["sent", "lost", "rss_kib", "fds"]),
    "fuzz_frames.py": (["unaccounted  0", "fate", "OK"], ["args", "result"]),
}


ALL = sorted(f for f in os.listdir(BENCH) if f.endswith(".py"))


def test_the_listed_scripts_exist():
    assert set(SCRIPTS) <= set(ALL), "listed here but gone from benchmarks/: %s" % sorted(set(SCRIPTS) - set(ALL))


@pytest.mark.bench
@pytest.mark.parametrize("script", ALL)
def test_benchmark_quick_run(script, tmp_path):
    before = set(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else set()
    out = tmp_path / "result.json"
    try:
        p = subprocess.run([sys.executable, os.path.join(BENCH, script), "--quick", "--output", str(out)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=240)   # under pytest's 300 s
    except subprocess.TimeoutExpired as e:
        pytest.fail("%s --quick took over %ss; output so far:\n%s" % (script, e.timeout, e.stdout))
    assert p.returncode == 0, "%s --quick exited %d:\n%s\n%s" % (script, p.returncode, p.stdout[-3000:],
                                                                  p.stderr[-3000:])
    lines, keys = SCRIPTS.get(script, ([], []))
    for want in lines:
        assert want in p.stdout, "%s --quick printed no %r:\n%s" % (script, want, p.stdout[-3000:])
    assert str(out) in p.stdout, "it does not say where its JSON went"
    doc = json.loads(out.read_text())
    assert all(k in doc for k in keys), sorted(doc)
    after = set(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else set()
    assert after == before, "a smoke run wrote into benchmarks/results/: %s" % sorted(after - before)


@pytest.mark.bench
@pytest.mark.timeout(1000)     # the NF image is rebuilt first when onvm's source changed (startup group)
def test_onvm_bench_quick_json_rows_are_well_formed(tmp_path):
    """`onvm bench --quick --json`, as CI runs it: every group, one JSON object per
    line, each a well-formed row (onvm.face.bench.check_row); none failed."""
    from onvm.face.bench import GROUPS, check_row
    onvm_cli = os.path.join(os.path.dirname(sys.executable), "onvm")
    before = set(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else set()
    try:
        p = subprocess.run([onvm_cli, "bench", "--quick", "--json"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=900)
    except subprocess.TimeoutExpired as e:
        pytest.fail("onvm bench --quick took over %ss; output so far:\n%s" % (e.timeout, e.stdout))
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    for r in rows:
        check_row(r)
    errors = [r for r in rows if r.get("error")]
    assert not errors and p.returncode == 0, "exit %d, failed groups: %s\n%s" % (p.returncode, errors, p.stderr[-3000:])
    names = {r["name"] for r in rows}
    assert {g for g in GROUPS} <= {n.split(".")[0] for n in names}, names
    for want in ("chain.nfs=5", "chain.nfs=1.hugepages=no", "latency.nfs=1.pps=100000.p50",
                 "latency.nfs=1.pps=100000.p99", "python.numpy", "python.batch", "python.packet",
                 "startup.container", "startup.process", "idle"):
        assert want in names, "no row %s in %s" % (want, sorted(names))
    if os.geteuid() == 0:
        assert "tcp.nfs=1" in names
    after = set(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else set()
    assert after == before, "a smoke run wrote into benchmarks/results/: %s" % sorted(after - before)


def test_onvm_bench_refuses_an_unknown_group():
    onvm_cli = os.path.join(os.path.dirname(sys.executable), "onvm")
    p = subprocess.run([onvm_cli, "bench", "nosuch"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no benchmark 'nosuch'" in p.stderr


def test_a_bench_row_is_checked():
    from onvm.face.bench import Goal, check_row, row
    good = row("chain.nfs=1", 2.0, "Mpps", 4.0, Goal(ratio=0.6))
    check_row(good)
    assert good["ratio"] == 0.5 and good["met"] is False and good["goal"] == ">= 0.6 x ceiling"
    check_row(row("tcp", None, "Gbit/s", skipped="network namespaces need root"))
    for bad in (dict(good, value="fast"), dict(good, ratio=None), {k: v for k, v in good.items() if k != "unit"},
                row("x", None, "s")):
        with pytest.raises(ValueError):
            check_row(bad)


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_onvm_bench_chain_keeps_to_a_forced_memory_mode(tmp_path):
    """ONVM_HUGEPAGES=0 is the user's word for every manager: the chain group
    then measures only that mode (no hugepage manager starts) and says why the
    comparison row is skipped."""
    onvm_cli = os.path.join(os.path.dirname(sys.executable), "onvm")
    env = dict(os.environ, ONVM_HUGEPAGES="0")
    p = subprocess.run([onvm_cli, "bench", "chain", "--quick", "--json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = {r["name"]: r for r in map(json.loads, p.stdout.splitlines())}
    assert rows["chain.nfs=1"]["value"] > 0
    skipped = rows["chain.nfs=1.hugepages=no"]
    assert skipped["value"] is None and "ONVM_HUGEPAGES=0" in skipped["skipped"], skipped
    assert "runs without hugepages" in p.stdout + p.stderr    # the one manager mode it used, said once per manager
