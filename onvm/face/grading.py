"""Course labs: `onvm lab check NOTEBOOK` (run a submission and the lab's
hidden tests, a score), `onvm lab grade DIR` (a folder of submissions),
`onvm lab generate LAB` (the student notebook from solution.ipynb with
nbgrader's ClearSolutions).  What is handed back (the feedback text and files, the
CSV, check's exit status) is onvm/face/feedback.py's.

A lab is a folder of labs/: solution.ipynb (nbgrader-marked answer regions,
metadata onvm.lab = the folder's name), the student notebook named after the
folder (labs/01-firewall/01-firewall.ipynb: JupyterLab titles a tab with the
file's name), hidden_tests.py.  A submission is graded whatever its file is
called (its lab is in its metadata), so notebooks handed in under the old
name, student.ipynb, are graded as before:

    NF = "firewall"            # the name the notebook gives the NF under test
    PORTS = 3                  # ring ports of the grading manager
    CHAIN = [1, ToPort(1)]     # the default chain; the NF runs as service 1
    def cases(rng): ...        # [(name, points, [scapy packets])], rng seeded
    def reference(pkts): ...   # per packet: the output port, or None (dropped)
    def judge(pkts, outs): ... # instead of reference: see _compare
    EXPORTS = ("answer",)      # optional: other globals the grader takes from the notebook
    CHECKS = [(name, points, fn)]  # optional: fn(values of EXPORTS) -> a problem or None

Submissions are untrusted.  Each runs in a worker process (`python -m
onvm.face.grading worker ...`) with a time limit: as a throw-away user made for
it (when the grader is root; removed after, with every process it had) or
as the grader itself (who is then the student).  The worker executes the
notebook with nbclient (outputs capped), pickles the NF out of the kernel,
then runs each hidden case against a fresh NF on a fresh manager and
compares, for every distinct packet, where it came out with where the
reference says it should (or asks the lab's judge, for labs where several
answers are right), and runs the lab's CHECKS on values the notebook
exports."""
import grp
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

from ..common.errors import OnvmError
from . import feedback
from .sandbox import SPEC_ENV as SANDBOX_SPEC_ENV

SEED = 2016                  # the hidden traffic is the same for every submission
MAX_OUTPUT = 1 << 20         # bytes of cell output a submission may print
RESULT_NAME = "result.json"
GRADER_GROUP = "onvm"


# ---- finding a lab --------------------------------------------------------------

def lab_of(nb):
    """The lab folder named in a notebook's metadata (onvm.lab)."""
    from ..common.paths import data_path
    meta = nb.get("metadata") if isinstance(nb, dict) else None
    name = meta.get("onvm", {}).get("lab") if isinstance(meta, dict) and isinstance(meta.get("onvm"), dict) else None
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise ValueError("the notebook names no onvm lab (metadata onvm.lab); is it a lab notebook?")
    d = os.path.join(data_path("labs"), name)
    if not os.path.isfile(os.path.join(d, "hidden_tests.py")):
        raise ValueError("no lab called %r (no %s)" % (name, os.path.join(d, "hidden_tests.py")))
    return d


def load_tests(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("onvm_hidden_tests", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- the worker: runs as the submission, inside its sandbox ----------------------

def _cell_grading(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def run_notebook(path, nf_name, pickle_path, deadline, exports=(), values_path=None, timings=None):
    """Execute a notebook, then pickle (in its kernel) its NF, the global
    nf_name as an onvm.NFSpec, to pickle_path, and a dict of those of the
    globals named in exports it defines to values_path.  nf_name may be a
    function returning (nf_name, exports), called once the notebook's own
    cells have run.  timings (a dict) gets the kernel's start-up and each
    code cell's seconds.
    returns: (problem or None, [visible test results])."""
    begun = time.monotonic()
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    class CappedClient(NotebookClient):
        """Past MAX_OUTPUT, outputs are dropped and the kernel interrupted."""
        printed = 0
        flooded = False

        def output(self, outs, msg, display_id, cell_index):
            self.printed += len(json.dumps(msg.get("content", {})))
            if self.printed <= MAX_OUTPUT:
                return super().output(outs, msg, display_id, cell_index)
            if not self.flooded:
                self.flooded = True
                import asyncio
                asyncio.ensure_future(self.km.interrupt_kernel())
            return None

    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as e:          # anything: the file is the student's
        return "not a notebook: %s" % (str(e).splitlines() or [type(e).__name__])[0][:300], []
    if not any(c.cell_type == "code" for c in nb.cells):
        return "the notebook has no code cells", []
    # the kernel is killed, not asked to stop, when done: its results are in; nothing of it must linger
    client = CappedClient(nb, timeout=max(1, int(deadline - time.monotonic())), kernel_name="python3",
                          allow_errors=True, shutdown_kernel="immediate",
                          resources={"metadata": {"path": os.path.dirname(path)}})
    visible = []

    asked = {}

    def export_code():
        name, names = nf_name() if callable(nf_name) else (nf_name, exports)
        asked["nf"] = name
        return ("import cloudpickle as _cp, onvm as _onvm\n_nf = %s\n"
                "_nf = _nf if isinstance(_nf, _onvm.NFSpec) else _onvm.NFSpec(_nf)\n"
                "_v = {_n: globals()[_n] for _n in %r if _n in globals()}\n"
                "with open(%r, 'wb') as _f:\n    _f.write(_cp.dumps(_nf))\n"
                "with open(%r, 'wb') as _f:\n    _f.write(_cp.dumps(_v))"
                % (name, tuple(names), pickle_path, values_path or os.devnull))
    export = nbformat.v4.new_code_cell("")
    nb.cells.append(export)
    timings = {} if timings is None else timings
    cells = timings["cells"] = {}
    timings["read"] = round(time.monotonic() - begun, 2)      # nbformat and nbclient imported, the notebook read
    try:
        t0 = time.monotonic()
        with client.setup_kernel():
            timings["kernel_start"] = round(time.monotonic() - t0, 2)
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if cell is export:
                    cell.source = export_code()
                client.timeout = max(1, int(deadline - time.monotonic()))
                t0 = time.monotonic()
                client.execute_cell(cell, i)
                cells["export" if cell is export else str(i)] = round(time.monotonic() - t0, 2)
                t0 = time.monotonic()
                if client.flooded:
                    return "the notebook printed more than %d bytes of output" % MAX_OUTPUT, visible
                err = next((o for o in cell.outputs if o.output_type == "error"), None)
                g = _cell_grading(cell)
                if g.get("grade") and not g.get("solution"):
                    visible.append({"name": g.get("grade_id", "cell %d" % i), "passed": err is None,
                                    "error": None if err is None else "%s: %s" % (err.ename, err.evalue)})
                elif err is not None:
                    if cell is export:
                        return "the notebook defines no NF called %r: %s: %s" % (asked["nf"], err.ename, err.evalue), \
                            visible
                    return "cell %d raised %s: %s" % (i, err.ename, err.evalue[:300]), visible
    except CellTimeoutError:
        return "the notebook did not finish within the time limit", visible
    except DeadKernelError:
        return "the kernel died while running the notebook", visible
    finally:
        timings["kernel_stop"] = round(time.monotonic() - t0, 2)     # since the last cell: the kernel's kill
    return None, visible


def _plain(v, depth=0):
    """v as JSON data: what a probe hands the grader is data, never objects."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v if not isinstance(v, str) else v[:1000]
    if isinstance(v, (list, tuple)) and depth < 4:
        return [_plain(x, depth + 1) for x in v[:10000]]
    return repr(v)[:300]


def _probe_call(fn, calls):
    return [_plain(fn(*args)) for args in calls]


def _probe_call_in_processes(fn, calls, seeds=("1", "2")):
    """fn on calls here and in two fresh Python processes with other
    PYTHONHASHSEEDs (all inside the sandbox): [here, seed 1, seed 2]."""
    import cloudpickle
    runs = [_probe_call(fn, calls)]
    code = ("import sys, json, cloudpickle\nfrom onvm.face.grading import _probe_call\n"
            "fn, calls = cloudpickle.loads(sys.stdin.buffer.read())\nprint(json.dumps(_probe_call(fn, calls)))")
    for seed in seeds:
        r = subprocess.run([sys.executable, "-c", code], input=cloudpickle.dumps((fn, calls)), capture_output=True,
                           timeout=120, env=dict(os.environ, PYTHONHASHSEED=seed))
        if r.returncode:
            raise RuntimeError("it failed in another Python process: %s" % (
                r.stderr.decode(errors="replace").strip().splitlines() or ["exit status %d" % r.returncode])[-1][:300])
        runs.append(json.loads(r.stdout))
    return runs


PROBES = {"call": _probe_call, "call_in_processes": _probe_call_in_processes}


def run_probes(probes, values):
    """A lab's PROBES ({key: (kind, global name, argument)}) on the values
    the notebook defined, in the sandbox.  returns: {key: {"value": plain
    data} or {"error": a problem}}, for the lab's CHECKS to judge."""
    out = {}
    for key, (kind, name, arg) in probes.items():
        if name not in values:
            out[key] = {"error": "the notebook defines no %s" % name}
            continue
        try:
            out[key] = {"value": _plain(PROBES[kind](values[name], arg))}
        except Exception as e:          # the values are the student's
            out[key] = {"error": "%s: %s" % (type(e).__name__, str(e)[:300])}
    return out


def worker(notebook, spec_path, out_dir, seconds):
    """The notebook part of grading one submission, as the submission:
    writes out_dir/nf.pickle (its NF, for the grader to hand, unopened, to
    the NF process) and out_dir/result.json (reason, visible tests, probe
    outputs: data the grader reads with care).  The hidden tests are not
    here: spec_path holds only the NF's name and the probes' inputs; "-":
    they come on stdin, read once the notebook has run (the grader loads
    the hidden tests while the notebook starts)."""
    import ast
    # jsonschema (under nbformat) compiles an IRI grammar when rfc3987_syntax
    # is installed: over a second of CPU per worker, for a format no
    # notebook field has.  Without it, that one format goes unchecked.
    sys.modules.setdefault("rfc3987_syntax", None)
    notebook, out_dir = os.path.abspath(notebook), os.path.abspath(out_dir)
    deadline = time.monotonic() + seconds
    from ..rates import process_started
    started = process_started(os.getpid())
    result = {"reason": None, "visible": [], "probes": {},
              "timings": {"startup": round(time.monotonic() - started, 2)} if started else {}}
    spec = {}

    def read_spec():
        if spec_path == "-":
            text = sys.stdin.read()
        else:
            with open(spec_path) as f:
                text = f.read()
        spec.update(ast.literal_eval(text))
        return spec["nf"], sorted({n for _, n, _ in spec.get("probes", {}).values()})
    try:
        values_path = os.path.join(out_dir, "values.pickle")
        problem, result["visible"] = run_notebook(notebook, read_spec, os.path.join(out_dir, "nf.pickle"),
                                                  deadline, values_path=values_path, timings=result["timings"])
        result["reason"] = problem
        probes = spec.get("probes", {})
        if not problem and probes:
            import pickle
            t0 = time.monotonic()
            with open(values_path, "rb") as f:
                values = pickle.load(f)
            result["probes"] = run_probes(probes, values)
            result["timings"]["probes"] = round(time.monotonic() - t0, 2)
    except Exception as e:
        result["reason"] = result["reason"] or "grading failed: %s: %s" % (type(e).__name__, e)
    with open(os.path.join(out_dir, RESULT_NAME), "w") as f:
        json.dump(result, f)


# ---- the grader: hidden tests, the manager, the score -----------------------------------

def grading_manager(tests, jail):
    """A manager of the grader's whose NFs are a submission's pickled code,
    started by jail (as the submission's uid, in a sandbox) or, with no
    jail, as ourselves (a student checking their own notebook); its DPDK
    files shared with the jail.  returns: the started Manager."""
    mgr = _nf_manager(("ring",) * tests.PORTS, jail)
    if jail is not None:
        try:
            jail.share_manager(mgr)
        except BaseException:
            mgr.stop()
            raise
    return mgr


def _nf_manager(ports, jail):
    from ..common import paths
    from ..launch import NF, RUNNER, child_env
    from ..manager import Manager
    from ..nflib.door import TICKET_ENV
    from ..nflib.run import nf_argv

    class GradingManager(Manager):
        def _spawn(self, spec, service, name, staged=False, limits=None, flow_miss=False):
            log_path = os.path.join(paths.log_dir(self.name), "nf-%s.log" % name)
            cmd = RUNNER + nf_argv(self.name, spec, service, name)     # spec: the submission's pickle (--python)
            # the one registration this launch may make (onvm.mgr.nfdoor); never a flow-miss role
            ticket = self.ctl.nf_ticket(service=service, name=name, flow_miss=False)["ticket"]
            env = dict(child_env(), **{TICKET_ENV: ticket})
            if jail is not None:
                cmd, env = jail.nf_command(self, cmd, ticket)
            with paths.open_log(log_path) as log:
                p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, env=env,
                                     start_new_session=True)
            try:
                p.stdin.write(spec)      # the submission's pickle: only the NF process loads it
            except BrokenPipeError:
                pass
            finally:
                try:
                    p.stdin.close()
                except BrokenPipeError:
                    pass
            return NF(self, name, service, p, log_path)

    # small: a case is a few hundred packets, and one manager per submission runs at a time per job
    return GradingManager(ports=ports, hugepage_mb=64, mbufs=4095, ring_mb=1, max_nfs=16)


def _last_traceback(log, limit=1500):
    """The end of an NF's log a student needs: from its last traceback on
    (every case's NF raises the same one, so feedback shows it once), else
    its last lines."""
    i = log.rfind("Traceback (most recent call last)")
    text = (log[i:] if i >= 0 else log).strip()
    return text[-limit:] if i < 0 else text[:limit]


def run_cases(tests, nf_code, out_dir, deadline, jail=None, mgr=None, cases=None):
    """Each hidden case against a fresh NF made from nf_code (the
    submission's pickle, never loaded here), on a manager of ours; where
    each packet came out is what the manager captured.  The NFs of all
    cases start at once (their start-up, not the packets, is most of the
    time), case k's as service 1 + k, which takes service 1's place in the
    lab's chain while case k runs.  param mgr: one from grading_manager(tests,
    jail), started already (it is stopped here); cases: prepare_cases(tests), made already.
    returns: ([test result dicts], the pcap of mismatched packets or None)."""
    from scapy.utils import wrpcap

    from ..common.packet import dissect
    from ..launch import wait_registered
    results, mismatched, cpu = _Results(), [], [0, 0]
    cases = prepare_cases(tests) if cases is None else cases
    t0 = time.monotonic()
    with (mgr or grading_manager(tests, jail)) as mgr:
        nfs, problem, done = [], None, []
        results.timings["manager"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        try:
            nfs = [mgr._spawn(nf_code, 1 + k, "%s-%d" % (tests.NF, k)) for k in range(len(cases))]
            mgr.launched += nfs
            wait_registered(mgr, nfs, max(5, min(60, deadline - time.monotonic())))
        except Exception as e:
            problem = "the NF did not start: %s" % e
        results.timings["nf_start"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        for k, (name, points, pkts, raw, want) in enumerate(cases):
            res = {"name": name, "points": points, "passed": False, "mismatches": []}
            results.append(res)
            if problem or time.monotonic() > deadline:
                res["error"] = problem or "not run: the time limit was reached"
                continue
            nf = nfs[k]
            mgr.set_default_chain([_renumber(c, 1 + k) for c in tests.CHAIN])
            before, t0, cpu0 = mgr.stats()["ports"][0], time.monotonic(), _cpu_ns(nf.pid)
            got = _send(mgr, nf, raw, range(1, tests.PORTS))
            res["seconds"] = round(time.monotonic() - t0, 3)
            if cpu0 is not None and _cpu_ns(nf.pid) is not None:
                cpu[0] += _cpu_ns(nf.pid) - cpu0
                cpu[1] += len(raw)
            st, p0 = nf.stats(), mgr.stats()["ports"][0]
            res["nf"] = "NF %s (instance %s): rx %d, %s, errors %d; port 0 took in %d, %d found no NF" % (
                tests.NF, nf.instance, st.get("rx", 0),
                ", ".join("%s %d" % kv for kv in st.get("actions", {}).items()), st.get("errors", 0),
                p0["rx"] - before["rx"], p0["rx_refused"] - before["rx_refused"])
            if nf.alive:
                nf.process.send_signal(signal.SIGTERM)    # waited for below, while the next case runs
            done.append((res, nf, st))
            wrong, res["error"] = _compare(tests, pkts, raw, got, want)
            for r, expected, g in wrong:
                d = dissect(r)
                res["mismatches"].append({"packet": d.summary(), "expected": expected, "got": g,
                                          "handled_by": "%s (instance %s)" % (tests.NF, nf.instance)})
                mismatched.append(d)
            res["passed"] = not res["mismatches"] and not res["error"]
        results.timings["send"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        for res, nf, st in done:
            nf.stop()
            if st.get("errors") or nf.process.returncode not in (0, -signal.SIGTERM):
                res["nf_log"] = _last_traceback(nf.log())
    if jail is not None:
        jail.kill_all()
    results.timings["stop"] = round(time.monotonic() - t0, 2)
    from ..common import paths
    shutil.rmtree(os.path.join(paths.logs_root(), mgr.name), ignore_errors=True)   # read above; one per submission
    pcap = None
    if mismatched:
        pcap = os.path.join(out_dir, "mismatches.pcap")
        wrpcap(pcap, mismatched)
    results.timings["end"] = round(time.monotonic() - t0, 2)
    if cpu[1]:
        results.nf_cpu_per_packet = cpu[0] / 1e9 / cpu[1]
    return results, pcap


class _Results(list):
    """Test results, and what the grader measured of the NF on the way
    (and the seconds each phase took)."""
    nf_cpu_per_packet = None

    def __init__(self):
        super().__init__()
        self.timings = {}


def _cpu_ns(pid):
    """CPU time of every thread of process pid so far, in ns (from the
    scheduler: the grader's measurement, not the process's own word), or
    None if it is gone."""
    total = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def _renumber(hop, service):
    """A hop of a lab's chain with service 1 (the NF under test) as service."""
    from ..common.packet import ToService
    if isinstance(hop, int) and not isinstance(hop, bool) and hop == 1:
        return service
    if type(hop) is ToService and hop.dest == 1:
        return ToService(service)
    return hop


def run_checks(checks, outputs):
    """A lab's checks of answers that are not packets (its CHECKS: [(name,
    points, fn(outputs) -> a problem or None)]).  outputs: what its PROBES
    gave in the sandbox, plain data ({key: {"value": ...} or {"error":
    ...}}): no object of the submission's is ever called here; and
    "nf_cpu_per_packet", the CPU seconds per packet the grader saw the
    NF's threads take over the hidden cases.
    returns: [test result dicts]."""
    results = []
    for name, points, fn in checks:
        try:
            problem = fn(outputs)
        except Exception as e:          # the data is the student's: a check that trips on it fails
            problem = "%s: %s" % (type(e).__name__, str(e)[:300])
        results.append({"name": name, "points": points, "passed": problem is None, "error": problem,
                        "mismatches": []})
    return results


def probe_value(outputs, key):
    """A probe's output for a lab's check.  raises: ValueError with the
    problem the sandbox met (the check then fails with it)."""
    o = outputs.get(key) if isinstance(outputs, dict) else None
    if not isinstance(o, dict) or "value" not in o:
        raise ValueError(str(o.get("error"))[:300] if isinstance(o, dict) and o.get("error")
                         else "no answer from the notebook")
    return o["value"]


def _compare(tests, pkts, raw, got, want_ports=None):
    """What came out (got: {bytes: [port, ...]}) against what the lab wants.
    A lab gives either reference(pkts), the port (or None) of each packet,
    or judge(pkts, outs), for properties no single port states (the same
    backend for a whole flow, a balanced load): outs[i] is the port packet
    i came out of (None: dropped); it returns ([(i, expected), ...], a
    problem with the case as a whole or None).
    returns: ([(packet bytes, expected, got), ...], problem or None)."""
    if hasattr(tests, "judge"):
        left = {r: list(ports) for r, ports in got.items()}
        outs = [left[r].pop(0) if left.get(r) else None for r in raw]
        wrong, problem = tests.judge(pkts, outs)
        return [(raw[i], expected, _where([outs[i]])) for i, expected in wrong], problem
    want = {}
    for r, port in zip(raw, tests.reference(pkts) if want_ports is None else want_ports):
        want.setdefault(r, []).append(port)
    wrong = []
    for r in want:
        w = sorted(want[r], key=str)
        g = sorted(got.get(r, []) + [None] * (len(want[r]) - len(got.get(r, []))), key=str)
        if w != g:
            wrong.append((r, _where(w), _where(g)))
    return wrong, None


def _wait_routable(mgr, nf, timeout=10.0):
    """Until the manager's service table routes to nf."""
    deadline = time.monotonic() + timeout
    while nf.instance not in mgr.control.service_table(1)["instances"] and time.monotonic() < deadline:
        time.sleep(0.005)


def _send(mgr, nf, raw, ports, timeout=10.0):
    """Inject raw into port 0 and collect what comes out of ports until the
    NF has taken in every packet and everything it handed on is out (or
    timeout).  returns: {packet bytes: [port, ...]}."""
    sent = mgr.inject(raw, port=0)
    got, n = {}, 0
    deadline = time.monotonic() + timeout
    while True:
        for port in ports:
            for r in mgr.capture(port=port, raw=True, timeout=0):
                got.setdefault(r, []).append(port)
                n += 1
        st = nf.stats()
        acts = st.get("actions", {})
        decided = sum(acts.values())
        lost = st.get("refused", 0) + st.get("chain_end", 0) + st.get("tx_drop", 0)
        if (decided >= sent and n + lost >= decided - acts.get("drop", 0)) or time.monotonic() > deadline \
                or not nf.alive:
            return got
        time.sleep(0.005)


def _where(ports):
    return ", ".join("dropped" if p is None else "port %d" % p for p in ports)


def _probe_spec(tests):
    """What the sandbox needs of the hidden tests: the NF's name and the
    probes (their inputs are the lab's, not secrets of its grading)."""
    return repr({"nf": tests.NF, "probes": getattr(tests, "PROBES", {})})


def prepare_cases(tests):
    """A lab's hidden cases, with what grading each needs that does not
    depend on the submission, worked out once: [(name, points, packets,
    their bytes, the reference's port per packet or None for a judge)]."""
    out = []
    for name, points, pkts in tests.cases(random.Random(SEED)):
        out.append((name, points, pkts, [bytes(p) for p in pkts],
                    None if hasattr(tests, "judge") else list(tests.reference(pkts))))
    return out


def max_score(tests, cases=None):
    cases = prepare_cases(tests) if cases is None else cases
    return sum(c[1] for c in cases) + sum(p for _, p, _ in getattr(tests, "CHECKS", []))


class _Early:
    """make() run in a thread now; take() its result (or raises its error),
    discard() stops what nobody took."""

    def __init__(self, make):
        import threading
        self.value = self.error = None
        self.taken = False

        def run():
            try:
                self.value = make()
            except BaseException as e:
                self.error = e
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def take(self):
        self.thread.join()
        self.taken = True
        if self.error is not None:
            raise self.error
        return self.value

    def discard(self):
        self.thread.join()
        if not self.taken and hasattr(self.value, "stop"):
            self.value.stop()


# ---- sandboxes: where a submission's code runs ---------------------------------------

def sandbox_env(spec):
    """The environment of `python -m onvm.face.sandbox`: its spec goes there, not
    in argv, since every user can read a process's command line and the spec
    carries an NF's launch ticket; only root reads a root process's
    environment, and the sandbox passes on only the spec's own env."""
    return dict(os.environ, **{SANDBOX_SPEC_ENV: spec})


def _pids_of(uid):
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and _uid_of(d) == uid]


def _uid_of(pid):
    try:
        return os.stat("/proc/" + pid).st_uid
    except OSError:
        return None


def _kill_uid(uid):
    """SIGKILL every process of uid (a submission's fresh uid: nothing else has it)."""
    from ..common.runtime import _wait_gone
    for _ in range(10):
        pids = _pids_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_gone(pids, 2)


def _read_out(dir_fd, name, limit):
    """A file the submission wrote, read as data: no symlink, no fifo, at most limit bytes."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def _worker_result(data):
    try:
        r = json.loads(data)
    except (TypeError, ValueError):
        return None
    if not isinstance(r, dict):
        return None
    reason = r.get("reason")
    visible = r.get("visible") if isinstance(r.get("visible"), list) else []
    visible = [{"name": str(v.get("name"))[:100], "passed": v.get("passed") is True,
                "error": None if v.get("error") is None else str(v.get("error"))[:1000]}
               for v in visible[:100] if isinstance(v, dict)]
    return {"reason": None if reason is None else str(reason)[:2000], "visible": visible,
            "probes": r.get("probes") if isinstance(r.get("probes"), dict) else {},
            "timings": _worker_timings(r.get("timings"))}


def _worker_timings(t):
    """The seconds the worker says its phases took (for benchmarks/bench_grading.py):
    numbers only, kernel_start, probes and the code cells' total and slowest three."""
    def num(v):
        return round(float(v), 2) if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e6 \
            else None
    t = t if isinstance(t, dict) else {}
    out = {k: num(t.get(k)) for k in ("startup", "read", "kernel_start", "kernel_stop", "probes") if num(t.get(k)) is not None}
    cells = t.get("cells") if isinstance(t.get("cells"), dict) else {}
    cells = [(str(k)[:10], num(v)) for k, v in list(cells.items())[:1000] if num(v) is not None]
    if cells:
        out["cells"] = round(sum(v for _, v in cells), 2)
        out["slowest_cells"] = dict(sorted(cells, key=lambda kv: -kv[1])[:3])
    return out


PY_ROOT = "/run/onvm-py"                      # where a sandbox sees the Python packages
HOME_IN = "/home/student"                     # where a sandbox sees its own work folder
MASKED = ("/home", "/root", "/srv", "/mnt", "/media", "/dev/hugepages")
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")
NPROC = 1024                                  # processes and threads of the uid (RLIMIT_NPROC)
CG_TASKS = 512                                # ... of one submission (its cgroup), where cgroups can be made
CG_CPUS = 1.0                                 # CPUs one submission may take at once
FSIZE = 1 << 30                               # the largest file it may write


class Sandbox:
    """Where submissions run.  As root: each in its own sandbox
    (onvm.face.sandbox), as a fresh uid and group never used before in this
    run, in private namespaces that show it nothing of the other
    submissions, the grader's folders or the hidden tests, with no network;
    its NFs later run the same way, from the grader's own manager.  As
    anyone else: as ourselves (the student is checking their own work).

    with Sandbox(hide=[submission folders]) as box:
        box.run(notebook, tests, seconds) -> result dict"""

    def __init__(self, hide=()):
        self.root = os.geteuid() == 0
        from ..rates import process_started
        self.started = process_started(os.getpid())      # for the timings: how long before a worker starts
        self.hide = [os.path.realpath(h) for h in hide]
        self.base = None
        self.python = sys.executable
        self.used = set()
        self.loaded, self.prepared, self.limits = {}, {}, {}
        import threading
        self.lock, self.case_lock = threading.Lock(), threading.Lock()

    def __enter__(self):
        self.base = tempfile.mkdtemp(prefix="onvm-grade-")
        if not self.root:
            self.pythonpath = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            return self
        try:
            self.onvm_gid = grp.getgrnam(GRADER_GROUP).gr_gid
        except KeyError:
            raise OnvmError("group %s is missing; run as root: bash scripts/setup.sh" % GRADER_GROUP) from None
        self.python = "/usr/bin/python%d.%d" % sys.version_info[:2]
        if not os.access(self.python, os.X_OK):
            raise OnvmError("grading runs submissions in a sandbox with the system Python; install %s "
                            "(apt-get install python3)" % self.python)
        import onvm
        pkg = os.path.dirname(os.path.realpath(onvm.__file__))
        self.binds = [[pkg, os.path.join(PY_ROOT, "pkg", "onvm"), False]]
        path = [os.path.join(PY_ROOT, "pkg")]
        for i, p in enumerate(p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)):
            real = os.path.realpath(p)
            # Package folders only: never the current directory `python -m` puts on the path (it may
            # be the submissions' folder), nor the system's (visible as it is), nor onvm's (bound alone).
            if os.path.basename(real) not in ("site-packages", "dist-packages") or real.startswith("/usr/") \
                    or os.path.realpath(os.path.join(p, "onvm")) == pkg:
                continue
            self.binds.append([real, os.path.join(PY_ROOT, str(i)), False])
            path.append(os.path.join(PY_ROOT, str(i)))
        self.pythonpath = os.pathsep.join(path)
        from ..common.paths import data_path
        try:
            self.hide.append(os.path.realpath(data_path("labs")))
        except OnvmError:
            pass
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.base, ignore_errors=True)

    # ---- as root --------------------------------------------------------------

    def _fresh_id(self):
        """A uid (and gid, the same number) no account, group, process or
        earlier submission of this run has: far above any useradd range."""
        with self.lock:
            while True:
                n = (1 << 30) + secrets.randbelow(1 << 29)
                if n in self.used or os.path.exists(os.path.join("/dev/hugepages-onvm", str(n))):
                    continue
                try:
                    pwd.getpwuid(n)
                    continue
                except KeyError:
                    pass
                try:
                    grp.getgrgid(n)
                    continue
                except KeyError:
                    pass
                if _pids_of(n):
                    continue
                self.used.add(n)
                return n

    def _masks(self, extra):
        keep = os.path.realpath(self.python)
        return [m for m in list(MASKED) + self.hide + [self.base] + list(extra)
                if m and m != "/" and not keep.startswith(m.rstrip("/") + "/")]

    def _spec(self, uid, **kw):
        with self.lock:
            limits = self.limits.get(uid)
        spec = dict(uid=uid, gid=uid, groups=[uid, self.onvm_gid], scratch=list(SCRATCH), nproc=NPROC,
                    fsize=FSIZE, cgroups=limits.dirs if limits else [])
        spec.update(kw)
        return json.dumps(spec)

    def _env(self, home, **kw):
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "USER": "student", "LOGNAME": "student",
               "PYTHONPATH": self.pythonpath, "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(kw)
        return env

    # ---- one submission ---------------------------------------------------------

    def run(self, notebook, tests_path, seconds):
        """Grade one notebook.  returns: the result dict (score 0 and a reason
        if it could not be graded)."""
        result = {"notebook": notebook, "score": 0, "max_score": 0, "reason": None, "visible": [], "tests": [],
                  "pcap": None}
        try:
            self._tests(tests_path, only_known=True)
        except Exception as e:
            result["reason"] = _tests_problem(tests_path, e)
            return result
        deadline = time.monotonic() + seconds
        work = tempfile.mkdtemp(prefix="sub-", dir=self.base)
        uid = self._fresh_id() if self.root else None
        if self.root:
            from .sandbox import Limits
            with self.lock:
                self.limits[uid] = Limits(uid, CG_TASKS, CG_CPUS)
        jail = _NFJail(self, uid, tests_path, notebook) if self.root else None
        tests = cases = early = worker = None
        try:
            sub = os.path.join(work, "submission.ipynb")
            try:
                shutil.copyfile(notebook, sub)
            except OSError as e:
                result["reason"] = "cannot read: %s" % e.strerror
                return result
            os.mkdir(os.path.join(work, "out"))
            if self.root:
                for p in (work, sub, os.path.join(work, "out")):
                    os.chown(p, uid, uid)
                os.chmod(work, 0o700)
            t0 = time.monotonic()
            # The notebook starts first.  Meanwhile the hidden tests load (scapy:
            # about half a second), and the worker gets what it needs of them,
            # the NF's name and the probes, on its stdin once its notebook has run.
            worker = self._start_worker(work, uid, seconds, notebook, tests_path)
            started, self.started = self.started, None        # the first submission's only
            if started:
                result["timings"] = {"before_worker": round(time.monotonic() - started, 2)}
            try:
                tests = self._tests(tests_path)
            except Exception as e:
                result["reason"] = _tests_problem(tests_path, e)
                return result
            # while the notebook runs: the cases (once per run) and the manager they will run on
            cases = _Early(lambda: self._cases(tests_path, tests))
            early = _Early(lambda: grading_manager(tests, jail))
            data = self._finish_worker(worker, _probe_spec(tests))
            result.setdefault("timings", {})["notebook"] = round(time.monotonic() - t0, 2)
            if isinstance(data, str):
                result["reason"] = data
                return result
            wr, nf_code = data
            result["visible"] = wr["visible"]
            result["timings"]["worker"] = wr["timings"]
            if wr["reason"]:
                result["reason"] = wr["reason"]
                return result
            if not nf_code:
                result["reason"] = "the notebook's NF %r could not be taken out of its kernel" % tests.NF
                return result
            out = tempfile.mkdtemp(prefix="res-", dir=self.base)
            t0 = time.monotonic()
            mgr = early.take()
            result["timings"]["manager_wait"] = round(time.monotonic() - t0, 2)
            prepared = cases.take()
            result["timings"]["cases_wait"] = round(time.monotonic() - t0, 2)
            result["tests"], pcap = run_cases(tests, nf_code, out, deadline, jail, mgr, prepared)
            result["timings"]["cases"] = round(time.monotonic() - t0, 2)
            result["timings"].update(("cases_" + k, v) for k, v in result["tests"].timings.items())
            outputs = dict(wr["probes"])
            # measured here, from the scheduler, while the NF handled the hidden cases
            # (only for an NF that got every case right: one that raises or
            # drops everything is cheap, and earns no speed points for it)
            cpu = getattr(result["tests"], "nf_cpu_per_packet", None)
            failed = sum(1 for t in result["tests"] if not t["passed"])
            outputs["nf_cpu_per_packet"] = (
                {"error": "not measured: the NF decided %d hidden case%s differently" % (failed, "s" * (failed > 1))}
                if failed else {"value": cpu} if cpu else {"error": "the NF's CPU time was not measured"})
            result["timings"]["nf_cpu_us_per_packet"] = cpu and round(cpu * 1e6, 2)
            result["tests"] = list(result["tests"]) + run_checks(getattr(tests, "CHECKS", []), outputs)
            result["score"] = sum(t["points"] for t in result["tests"] if t["passed"])
            result["pcap"] = pcap
            return result
        except Exception as e:
            result["reason"] = result["reason"] or "grading failed: %s: %s" % (type(e).__name__, e)
            result["score"] = 0
            return result
        finally:
            if worker is not None:
                self._stop_worker(worker)       # a no-op for one that finished
            if cases is not None:
                try:
                    result["max_score"] = max_score(tests, cases.take())
                except Exception as e:
                    result["score"], result["reason"] = 0, _tests_problem(tests_path, e)
            t0 = time.monotonic()
            if early is not None:
                early.discard()
            timings = result.setdefault("timings", {})
            if uid is not None:
                _kill_uid(uid)
                with self.lock:
                    limits = self.limits.pop(uid)
                throttled = limits.throttled()
                if throttled is not None:
                    timings["cpu_throttled"] = round(throttled, 2)     # waiting for its one CPU
                limits.remove()
            shutil.rmtree(work, ignore_errors=True)
            timings["cleanup"] = round(time.monotonic() - t0, 2)

    def _tests(self, path, only_known=False):
        """A lab's hidden tests, loaded once per grading run (a file that
        does not load raises the same error each time).  only_known: raise
        only an error met before; load nothing."""
        key = os.path.realpath(path)
        with self.lock:
            if key not in self.loaded and not only_known:
                try:
                    self.loaded[key] = load_tests(path)
                except Exception as e:
                    self.loaded[key] = e
            got = self.loaded.get(key)
        if isinstance(got, Exception):
            raise got
        return got

    def _cases(self, path, tests):
        """Its prepared cases, made once per grading run."""
        key = os.path.realpath(path)
        with self.case_lock:
            if key not in self.prepared:
                self.prepared[key] = prepare_cases(tests)
            return self.prepared[key]

    def _start_worker(self, work, uid, seconds, notebook, tests_path):
        """Start the notebook part, in the sandbox; its spec (_probe_spec)
        goes to its stdin later, in _finish_worker.  returns: a handle."""
        args = ["worker", "submission.ipynb", "-", "out", "%g" % seconds]
        log = open(os.path.join(self.base, "worker-%s.log" % os.path.basename(work)), "w")
        session = None
        if self.root:
            spec = self._spec(uid, pid_ns=True, run=True, hugetlbfs="/dev/hugepages-onvm",
                              masks=self._masks([os.path.dirname(os.path.realpath(notebook)),
                                                 os.path.dirname(os.path.realpath(tests_path))]),
                              binds=[[work, HOME_IN, True]] + self.binds,
                              argv=[self.python, "-m", "onvm.face.grading"] + args, env=self._env(HOME_IN),
                              cwd=HOME_IN)
            cmd, env, cwd = [sys.executable, "-m", "onvm.face.sandbox"], sandbox_env(spec), "/"
        else:
            from .lab import SESSION_VAR
            session = secrets.token_hex(8)        # this submission's: other jobs run beside it
            env = {**os.environ, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": self.pythonpath,
                   SESSION_VAR: session}
            cmd, cwd = [self.python, "-m", "onvm.face.grading"] + args, work
        with log:
            p = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=log, start_new_session=True)
        return {"process": p, "session": session, "uid": uid, "work": work, "seconds": seconds,
                "deadline": time.monotonic() + seconds + 30, "stopped": False}

    def _stop_worker(self, w):
        """Kill what is left of the worker: its process group, and every
        process of the submission's uid (or its lab session)."""
        if w["stopped"]:
            return
        w["stopped"] = True
        p = w["process"]
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        if self.root:
            _kill_uid(w["uid"])
        else:
            from .lab import stop_session
            stop_session(w["session"])

    def _finish_worker(self, w, spec):
        """Hand the worker its spec, wait for it, stop what is left of it.
        returns: (the worker's result, its NF's pickle or None), or a reason for a 0."""
        import threading
        p = w["process"]

        def send():                      # a thread: the worker reads only once its notebook has run
            try:
                p.stdin.write(spec.encode())
                p.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass                     # it is gone already; its result says why
        threading.Thread(target=send, daemon=True).start()
        try:
            p.wait(max(0.0, w["deadline"] - time.monotonic()))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        self._stop_worker(w)
        if timed_out:
            return "it did not finish within the time limit (%g s)" % w["seconds"]
        wfd = os.open(w["work"], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            try:
                ofd = os.open("out", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=wfd)
            except OSError:
                return "the grader's worker left no results (exit status %s)" % p.returncode
            try:
                wr = _worker_result(_read_out(ofd, RESULT_NAME, 1 << 22))
                nf_code = _read_out(ofd, "nf.pickle", 64 << 20)
            finally:
                os.close(ofd)
        finally:
            os.close(wfd)
        if wr is None:
            return "the grader's worker failed (exit status %s)" % p.returncode
        return wr, nf_code


def _tests_problem(path, e):
    return "the hidden tests %s do not load: %s: %s" % (path, type(e).__name__, e)


class _NFJail:
    """How the grader's manager starts a submission's NF: nfrun in a sandbox
    as the submission's uid, seeing of the manager only the DPDK files a
    secondary maps (made accessible to the submission's group alone, as a
    container NF gets them mounted) and its NF door (connected as root)."""

    def __init__(self, box, uid, tests_path, notebook):
        self.box, self.uid = box, uid
        self.masks = box._masks([os.path.dirname(os.path.realpath(tests_path)),
                                 os.path.dirname(os.path.realpath(notebook))])
        self.files = []

    def share_manager(self, mgr):
        from ..containers import dpdk_files
        self.files = dpdk_files(mgr.name)
        for f in self.files:
            os.chown(f, -1, self.uid)
            os.chmod(f, 0o660)

    def nf_command(self, mgr, cmd, ticket):
        """nfrun's command line cmd, run in a sandbox as the submission's uid
        with this launch's ticket.  returns: (argv, environment)."""
        from ..common import paths
        from ..nflib.door import TICKET_ENV
        rd = paths.run_dir(mgr.name)
        inner = "/run/dpdk/" + os.path.basename(rd)     # where a non-root DPDK with XDG_RUNTIME_DIR=/run looks
        binds = [[f, (os.path.join(inner, os.path.basename(f)) if f.startswith(rd + "/") else f), True]
                 for f in self.files]
        spec = self.box._spec(self.uid, run=False, masks=self.masks + ["/run"], binds=self.box.binds + binds,
                              own_dirs=[["/run", True], ["/run/dpdk", True], [inner, True]],
                              door=paths.nf_sock_path(mgr.name),
                              argv=[self.box.python] + cmd[1:],
                              env=self.box._env("/run", XDG_RUNTIME_DIR="/run",
                                                ONVM_DPDK_LOG=os.environ.get("ONVM_DPDK_LOG", "error"),
                                                **{TICKET_ENV: ticket}),
                              cwd="/run")
        return [sys.executable, "-m", "onvm.face.sandbox"], sandbox_env(spec)

    def kill_all(self):
        _kill_uid(self.uid)


def check(notebook, timeout=300, tests=None, out=None, box=None):
    """Grade one notebook.  param tests: a hidden_tests.py (default: the
    lab's named in the notebook).  param out: a folder for the feedback
    (the pcap of mismatches).  returns: the result dict."""
    if tests is None:
        try:
            with open(notebook, "rb") as f:           # only its metadata: no nbformat (slow to import) here
                nb = json.loads(f.read(64 << 20))
        except (OSError, ValueError) as e:
            return {"notebook": notebook, "score": 0, "max_score": 0, "visible": [], "tests": [], "pcap": None,
                    "reason": "not a notebook: %s" % (str(e).splitlines() or [type(e).__name__])[0][:300]}
        try:
            tests = os.path.join(lab_of(nb), "hidden_tests.py")
        except Exception as e:
            return {"notebook": notebook, "score": 0, "max_score": 0, "visible": [], "tests": [], "pcap": None,
                    "reason": "not a lab notebook: %s" % str(e).splitlines()[0][:300] if str(e) else type(e).__name__}
    if box is None:
        with Sandbox(hide=[os.path.dirname(os.path.abspath(notebook))]) as b:
            return check(notebook, timeout, tests, out, b)
    result = box.run(notebook, tests, timeout)
    if result.get("pcap") and out:
        os.makedirs(out, exist_ok=True)
        dst = os.path.join(out, "mismatches.pcap")
        shutil.copyfile(result["pcap"], dst)
        result["pcap"] = dst
    elif result.get("pcap"):
        result["pcap"] = None
    return result


format_result = feedback.format_result        # it lives in onvm/face/feedback.py now; kept importable here


def cli_check(notebook, as_json=False, timeout=300, out=None, tests=None):
    """`onvm lab check`: print the feedback, write it to the feedback folder.
    returns: the exit status: 0 full score, 1 not, 2 not graded."""
    if not os.path.isfile(notebook):
        raise ValueError("no such notebook: %s" % notebook)
    feedback.check_timeout(timeout)
    feedback.check_tests_file(tests)
    out = feedback.fresh_folder(out or os.path.splitext(notebook)[0] + ".feedback")
    r = check(notebook, timeout, tests, out)
    path = feedback.write(r, out)
    print(json.dumps(r, indent=1) if as_json else format_result(r) + "\n  this feedback: %s" % path)
    status = feedback.exit_status(r)
    if status == 2:
        print("onvm: could not grade %s: %s" % (notebook, feedback.reason(r)), file=sys.stderr)
    return status


def default_jobs():
    """Twice the cores: much of a submission's time is waiting (NF start-up,
    its notebook's own sleeps), and each takes at most one CPU (its cgroup)."""
    return 2 * max(1, len(os.sched_getaffinity(0)))


def grade(folder, csv_path, timeout=300, tests=None, jobs=None):
    """Grade every .ipynb in folder, jobs at a time (default: twice the
    cores), each in its own sandbox run.  returns: the list of results;
    writes the CSV (see feedback.write_csv) and each one's feedback in
    FOLDER/feedback/NAME/."""
    if not os.path.isdir(folder):
        raise ValueError("no such folder: %s" % folder)
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 256:
        raise ValueError("jobs must be 1..256, got %r" % (jobs,))
    feedback.check_timeout(timeout)
    feedback.check_tests_file(tests)
    feedback.check_csv_path(csv_path)
    feedback.usable_folder(os.path.join(folder, "feedback"), "the feedback folder")
    subs = sorted(f for f in os.listdir(folder) if f.endswith(".ipynb") and not f.startswith("."))
    from concurrent.futures import ThreadPoolExecutor
    with Sandbox(hide=[folder]) as box, ThreadPoolExecutor(jobs) as pool:
        def one(f):
            out = feedback.fresh_folder(os.path.join(folder, "feedback", f[:-6]))
            r = check(os.path.join(folder, f), timeout, tests, out, box)
            feedback.write(r, out)
            print(format_result(r), flush=True)
            return r
        results = list(pool.map(one, subs))
    feedback.write_csv(csv_path, subs, results)
    return results


def cli_grade(folder, csv_path, timeout=300, tests=None, jobs=None):
    results = grade(folder, csv_path, timeout, tests, jobs)
    print("graded %d notebook(s); scores in %s, feedback in %s" % (len(results), csv_path,
                                                                  os.path.join(folder, "feedback", "NAME")))
    return 0


# ---- student notebooks ------------------------------------------------------------

OLD_STUDENT_NAME = "student.ipynb"     # what every lab's student notebook was called before


def student_notebook(labdir):
    """The path of a lab's student notebook: named after its folder."""
    return os.path.join(labdir, os.path.basename(os.path.normpath(labdir)) + ".ipynb")


def student_version(solution_path):
    """The student notebook of a solution: answer regions cleared by
    nbgrader's ClearSolutions, outputs cleared.  returns: a notebook."""
    import nbformat
    from nbconvert.preprocessors import ClearOutputPreprocessor
    from nbgrader.preprocessors import ClearSolutions
    nb = nbformat.read(solution_path, as_version=4)
    resources = {}
    nb, resources = ClearSolutions().preprocess(nb, resources)
    nb, resources = ClearOutputPreprocessor().preprocess(nb, resources)
    return nb


def cli_generate(labdirs, check=False):
    import nbformat
    for d in labdirs:
        if not os.path.isfile(os.path.join(d, "solution.ipynb")):
            raise ValueError("no lab at %s (no solution.ipynb)" % d)
    stale = []
    for d in labdirs:
        nb = student_version(os.path.join(d, "solution.ipynb"))
        path = student_notebook(d)
        old = os.path.join(d, OLD_STUDENT_NAME)
        if os.path.isfile(old):
            print("note: %s is the old name of %s; remove it once nobody uses it" % (old, path), file=sys.stderr)
        text = nbformat.writes(nb) + "\n"
        try:
            with open(path) as f:
                current = f.read() == text
        except OSError:
            current = False
        if check:
            if not current:
                stale.append(path)
            continue
        with open(path, "w") as f:
            f.write(text)
        print("wrote %s" % path)
    if stale:
        print("out of date (run: onvm lab generate %s): %s" % (" ".join(labdirs), ", ".join(stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"] and len(sys.argv) == 6:
        worker(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    else:
        sys.exit("usage: python -m onvm.face.grading worker NOTEBOOK SPEC|- OUT_DIR SECONDS")
