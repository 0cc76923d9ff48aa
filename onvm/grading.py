"""Course labs: `onvm lab check NOTEBOOK` (run a submission and the lab's
hidden tests, a score), `onvm lab grade DIR` (a folder of submissions),
`onvm lab generate LAB` (student.ipynb from solution.ipynb with nbgrader's
ClearSolutions).  What is handed back (the feedback text and files, the
CSV, check's exit status) is onvm/feedback.py's.

A lab is a folder of labs/: solution.ipynb (nbgrader-marked answer regions,
metadata onvm.lab = the folder's name), student.ipynb, hidden_tests.py:

    NF = "firewall"            # the name the notebook gives the NF under test
    PORTS = 3                  # ring ports of the grading manager
    CHAIN = [1, ToPort(1)]     # the default chain; the NF runs as service 1
    def cases(rng): ...        # [(name, points, [scapy packets])], rng seeded
    def reference(pkts): ...   # per packet: the output port, or None (dropped)
    def judge(pkts, outs): ... # instead of reference: see _compare
    EXPORTS = ("answer",)      # optional: other globals the grader takes from the notebook
    CHECKS = [(name, points, fn)]  # optional: fn(values of EXPORTS) -> a problem or None

Submissions are untrusted.  Each runs in a worker process (`python -m
onvm.grading worker ...`) with a time limit: as a throw-away user made for
it (when the grader is root; removed after, with every process it had) or
as the grader itself (who is then the student).  The worker executes the
notebook with nbclient (outputs capped), pickles the NF out of the kernel,
then runs each hidden case against a fresh NF on a fresh manager and
compares, for every distinct packet, where it came out with where the
reference says it should (or asks the lab's judge, for labs where several
answers are right), and runs the lab's CHECKS on values the notebook
exports."""
import csv
import errno
import grp
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import feedback
from .errors import OnvmError

SEED = 2016                  # the hidden traffic is the same for every submission
MAX_OUTPUT = 1 << 20         # bytes of cell output a submission may print
RESULT_NAME = "result.json"
GRADER_GROUP = "onvm"


# ---- finding a lab --------------------------------------------------------------

def lab_of(nb):
    """The lab folder named in a notebook's metadata (onvm.lab)."""
    from .lab import data_path
    name = nb.get("metadata", {}).get("onvm", {}).get("lab")
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


# ---- the worker: runs as the student -----------------------------------------------

def _cell_grading(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def run_notebook(path, nf_name, pickle_path, deadline, exports=()):
    """Execute a notebook, then pickle its NF (the global nf_name) and a
    dict of those of the globals named in exports it defines to
    pickle_path.  returns: (problem or None, [visible test results])."""
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
    client = CappedClient(nb, timeout=max(1, int(deadline - time.monotonic())), kernel_name="python3",
                          allow_errors=True, resources={"metadata": {"path": os.path.dirname(path)}})
    visible = []
    export = nbformat.v4.new_code_cell(
        "import cloudpickle as _cp\n_v = {_n: globals()[_n] for _n in %r if _n in globals()}\n"
        "with open(%r, 'wb') as _f:\n    _f.write(_cp.dumps((%s, _v)))" % (tuple(exports), pickle_path, nf_name))
    nb.cells.append(export)
    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                client.timeout = max(1, int(deadline - time.monotonic()))
                client.execute_cell(cell, i)
                if client.flooded:
                    return "the notebook printed more than %d bytes of output" % MAX_OUTPUT, visible
                err = next((o for o in cell.outputs if o.output_type == "error"), None)
                g = _cell_grading(cell)
                if g.get("grade") and not g.get("solution"):
                    visible.append({"name": g.get("grade_id", "cell %d" % i), "passed": err is None,
                                    "error": None if err is None else "%s: %s" % (err.ename, err.evalue)})
                elif err is not None:
                    if cell is export:
                        return "the notebook defines no NF called %r: %s: %s" % (nf_name, err.ename, err.evalue), visible
                    return "cell %d raised %s: %s" % (i, err.ename, err.evalue[:300]), visible
    except CellTimeoutError:
        return "the notebook did not finish within the time limit", visible
    except DeadKernelError:
        return "the kernel died while running the notebook", visible
    return None, visible


def run_cases(tests, nf_spec, out_dir, deadline):
    """Each hidden case against a fresh NF.  returns: [test result dicts]."""
    import onvm
    from scapy.utils import wrpcap
    from .packet import dissect
    results, mismatched = [], []
    with onvm.Manager(ports=("ring",) * tests.PORTS) as mgr:
        mgr.set_default_chain(tests.CHAIN)
        for name, points, pkts in tests.cases(random.Random(SEED)):
            res = {"name": name, "points": points, "passed": False, "mismatches": []}
            results.append(res)
            if time.monotonic() > deadline:
                res["error"] = "not run: the time limit was reached"
                continue
            raw = [bytes(p) for p in pkts]
            try:
                nf = mgr.launch(nf_spec, service=1, name=tests.NF)
            except Exception as e:
                res["error"] = "the NF did not start: %s" % e
                continue
            _wait_routable(mgr, nf)
            before = mgr.stats()["ports"][0]
            got = _send(mgr, nf, raw, range(1, tests.PORTS))
            st, p0 = nf.stats(), mgr.stats()["ports"][0]
            res["nf"] = "NF %s (service 1, instance %s): rx %d, %s, errors %d; port 0 took in %d, %d found no NF" % (
                nf.name, nf.instance, st.get("rx", 0),
                ", ".join("%s %d" % kv for kv in st.get("actions", {}).items()), st.get("errors", 0),
                p0["rx"] - before["rx"], p0["rx_refused"] - before["rx_refused"])
            if st.get("errors"):
                res["nf_log"] = nf.log().strip()[-600:]
            nf.stop()
            wrong, res["error"] = _compare(tests, pkts, raw, got)
            for r, expected, g in wrong:
                res["mismatches"].append({"packet": dissect(r).summary(), "expected": expected, "got": g,
                                          "handled_by": "%s (instance %s)" % (nf.name, nf.instance)})
                mismatched.append(dissect(r))
            res["passed"] = not res["mismatches"] and not res["error"]
    pcap = None
    if mismatched:
        pcap = os.path.join(out_dir, "mismatches.pcap")
        wrpcap(pcap, mismatched)
    return results, pcap


def run_checks(checks, values):
    """A lab's checks of values the notebook defines (its CHECKS: [(name,
    points, fn(values) -> a problem or None)], values: its EXPORTS the
    notebook defined), for answers that are not packets.
    returns: [test result dicts]."""
    results = []
    for name, points, fn in checks:
        try:
            problem = fn(values)
        except Exception as e:          # the values are the student's
            problem = "%s: %s" % (type(e).__name__, str(e)[:300])
        results.append({"name": name, "points": points, "passed": problem is None, "error": problem,
                        "mismatches": []})
    return results


def _compare(tests, pkts, raw, got):
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
    for r, port in zip(raw, tests.reference(pkts)):
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
            for r in mgr.capture(port=port, raw=True):
                got.setdefault(r, []).append(port)
                n += 1
        st = nf.stats()
        acts = st.get("actions", {})
        decided = sum(acts.values())
        lost = st.get("refused", 0) + st.get("chain_end", 0) + st.get("tx_drop", 0)
        if (decided >= sent and n + lost >= decided - acts.get("drop", 0)) or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def _where(ports):
    return ", ".join("dropped" if p is None else "port %d" % p for p in ports)


def worker(notebook, tests_path, out_dir, seconds):
    """The grading of one submission, as the student; writes result.json."""
    deadline = time.monotonic() + seconds
    tests = load_tests(tests_path)
    result = {"notebook": notebook, "score": 0, "max_score": 0, "reason": None, "visible": [], "tests": [],
              "pcap": None}
    try:
        checks = getattr(tests, "CHECKS", [])
        result["max_score"] = sum(p for _, p, _ in tests.cases(random.Random(SEED))) + sum(p for _, p, _ in checks)
        pickle_path = os.path.join(out_dir, "nf.pickle")
        problem, result["visible"] = run_notebook(notebook, tests.NF, pickle_path, deadline,
                                                  getattr(tests, "EXPORTS", ()))
        if problem:
            result["reason"] = problem
        else:
            import pickle
            with open(pickle_path, "rb") as f:
                spec, values = pickle.load(f)
            result["tests"], result["pcap"] = run_cases(tests, spec, out_dir, deadline)
            result["tests"] += run_checks(checks, values)
            result["score"] = sum(t["points"] for t in result["tests"] if t["passed"])
    except Exception as e:
        result["reason"] = result["reason"] or "grading failed: %s: %s" % (type(e).__name__, e)
        result["score"] = 0
    with open(os.path.join(out_dir, RESULT_NAME), "w") as f:
        json.dump(result, f)


# ---- the grader: runs the worker with no more privilege than a student ---------------

def _traversable(path):
    """True if any user can reach path (every directory above it has o+x)."""
    path = os.path.realpath(path)
    while path != "/":
        path = os.path.dirname(path)
        if not os.stat(path).st_mode & 0o001:
            return False
    return True


def _link_tree(src, dst):
    """dst: a copy of src made of hard links (a copy where links cannot be made)."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM):
                raise
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))


class Sandbox:
    """Where submissions run: a throw-away user when we are root (the
    Python packages linked into a tree that user can read), else ourselves.

    with Sandbox() as box: box.run(notebook, tests, seconds) -> result dict"""

    def __init__(self):
        self.root = os.geteuid() == 0
        self.base = None
        self.python = sys.executable
        self.pythonpath = None

    def __enter__(self):
        self.base = tempfile.mkdtemp(prefix="onvm-grade-")
        if not self.root:
            return self
        os.chmod(self.base, 0o755)
        try:
            self.onvm_gid = grp.getgrnam(GRADER_GROUP).gr_gid
        except KeyError:
            raise OnvmError("group %s is missing; run as root: bash scripts/setup.sh" % GRADER_GROUP) from None
        if not _traversable(sys.executable):
            self.python = "/usr/bin/python%d.%d" % sys.version_info[:2]
            if not os.access(self.python, os.X_OK):
                raise OnvmError("grading runs submissions as an unprivileged user, who cannot run %s; "
                                "install %s (apt-get install python3)" % (sys.executable, self.python))
        tree = self.pythonpath = os.path.join(self.base, "python")
        import onvm
        for site in [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]:
            for entry in os.listdir(site):
                if entry.startswith(("__editable__", "onvm", "__pycache__")) or entry.endswith(".pth"):
                    continue
                s, d = os.path.join(site, entry), os.path.join(tree, entry)
                if os.path.isdir(s):
                    _link_tree(s, d)
                elif not os.path.exists(d):
                    os.makedirs(tree, exist_ok=True)
                    os.link(s, d) if os.stat(s).st_dev == os.stat(self.base).st_dev else shutil.copy2(s, d)
        _link_tree(os.path.dirname(os.path.realpath(onvm.__file__)), os.path.join(tree, "onvm"))
        for r, dirs, files in os.walk(tree):
            os.chmod(r, 0o755)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.base, ignore_errors=True)

    def run(self, notebook, tests_path, seconds):
        """Grade one notebook.  returns: the result dict (score 0 and a reason
        if it could not be graded)."""
        work = tempfile.mkdtemp(prefix="sub-", dir=self.base)
        sub = os.path.join(work, "submission.ipynb")
        try:
            shutil.copyfile(notebook, sub)
        except OSError as e:
            return {"notebook": notebook, "score": 0, "max_score": 0, "reason": "cannot read: %s" % e.strerror,
                    "visible": [], "tests": [], "pcap": None}
        shutil.copyfile(tests_path, os.path.join(work, "hidden_tests.py"))
        out = os.path.join(work, "out")
        os.mkdir(out)
        user = None
        try:
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work, "PYTHONDONTWRITEBYTECODE": "1"}
            kw = {}
            if self.root:
                user = "onvmg%s" % secrets.token_hex(4)
                subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", work, "--shell",
                                "/usr/sbin/nologin", "--user-group", user], check=True, timeout=60,
                               capture_output=True)
                pw = pwd.getpwnam(user)
                for r, dirs, files in os.walk(work):
                    for p in [r] + [os.path.join(r, f) for f in files]:
                        os.chown(p, pw.pw_uid, pw.pw_gid)
                os.chmod(work, 0o700)
                kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [self.onvm_gid]}
                env["PYTHONPATH"] = self.pythonpath
            else:
                from .lab import SESSION_VAR
                env = {**os.environ, **env, "HOME": os.environ.get("HOME", work)}
                env[SESSION_VAR] = self.session = secrets.token_hex(8)
                env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            cmd = [self.python, "-m", "onvm.grading", "worker", sub, os.path.join(work, "hidden_tests.py"), out,
                   str(seconds)]
            p = subprocess.Popen(cmd, env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(self.base, "worker-%s.log" % os.path.basename(work)), "w"),
                                 start_new_session=True, **kw)
            try:
                p.wait(seconds + 30)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            self._stop_all(p, user)
            result = _read_result(os.path.join(out, RESULT_NAME))
            if timed_out or result is None:
                return {"notebook": notebook, "score": 0, "max_score": 0, "visible": [], "tests": [], "pcap": None,
                        "reason": "it did not finish within the time limit (%g s)" % seconds if timed_out
                        else "the grader's worker failed (exit status %s)" % p.returncode}
            result["notebook"] = notebook
            if result.get("pcap"):
                result["pcap"] = os.path.join(out, "mismatches.pcap")
            self.last_out = out
            return result
        finally:
            if user:
                subprocess.run(["userdel", user], timeout=60, capture_output=True)

    def _stop_all(self, p, user):
        """Every process of the submission: all of the throw-away user's, or
        those carrying our session tag."""
        from .doctor import _wait_gone
        from .lab import stop_session
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        if user is None:
            stop_session(self.session)
            return
        uid = pwd.getpwnam(user).pw_uid
        for _ in range(5):
            pids = [int(d) for d in os.listdir("/proc") if d.isdigit() and _uid_of(d) == uid]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _wait_gone(pids, 5)
        from . import paths
        for d in paths.user_huge_dirs(uid):
            shutil.rmtree(d, ignore_errors=True)


def _uid_of(pid):
    try:
        return os.stat("/proc/" + pid).st_uid
    except OSError:
        return None


def _read_result(path):
    """The worker's result, read with care: it was written by the submission's user."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        try:
            r = json.loads(f.read(1 << 22))
        except ValueError:
            return None
    return r if isinstance(r, dict) and isinstance(r.get("score"), (int, float)) else None


def check(notebook, timeout=300, tests=None, out=None, box=None):
    """Grade one notebook.  param tests: a hidden_tests.py (default: the
    lab's named in the notebook).  param out: a folder for the feedback
    (the pcap of mismatches).  returns: the result dict."""
    import nbformat
    if tests is None:
        try:
            tests = os.path.join(lab_of(nbformat.read(notebook, as_version=4)), "hidden_tests.py")
        except Exception as e:
            return {"notebook": notebook, "score": 0, "max_score": 0, "visible": [], "tests": [], "pcap": None,
                    "reason": "not a lab notebook: %s" % str(e).splitlines()[0][:300] if str(e) else type(e).__name__}
    if box is None:
        with Sandbox() as b:
            return check(notebook, timeout, tests, out, b)
    result = box.run(notebook, tests, timeout)
    if result.get("pcap") and out:
        os.makedirs(out, exist_ok=True)
        dst = os.path.join(out, "mismatches.pcap")
        fd = os.open(result["pcap"], os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f, open(dst, "wb") as g:
            g.write(f.read(1 << 26))
        result["pcap"] = dst
    elif result.get("pcap"):
        result["pcap"] = None
    return result


format_result = feedback.format_result        # it lives in onvm/feedback.py now; kept importable here


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


def grade(folder, csv_path, timeout=300, tests=None):
    """Grade every .ipynb in folder (one at a time, each in its own sandbox
    run).  returns: the list of results; writes the CSV (see
    feedback.write_csv) and each one's feedback in FOLDER/feedback/NAME/."""
    if not os.path.isdir(folder):
        raise ValueError("no such folder: %s" % folder)
    feedback.check_timeout(timeout)
    feedback.check_tests_file(tests)
    feedback.check_csv_path(csv_path)
    feedback.usable_folder(os.path.join(folder, "feedback"), "the feedback folder")
    subs = sorted(f for f in os.listdir(folder) if f.endswith(".ipynb") and not f.startswith("."))
    with Sandbox() as box:
        def one(f):
            out = feedback.fresh_folder(os.path.join(folder, "feedback", f[:-6]))
            r = check(os.path.join(folder, f), timeout, tests, out, box)
            feedback.write(r, out)
            print(format_result(r), flush=True)
            return r
        results = [one(f) for f in subs]
    feedback.write_csv(csv_path, subs, results)
    return results


def cli_grade(folder, csv_path, timeout=300, tests=None):
    results = grade(folder, csv_path, timeout, tests)
    print("graded %d notebook(s); scores in %s, feedback in %s" % (len(results), csv_path,
                                                                  os.path.join(folder, "feedback", "NAME")))
    return 0


# ---- student notebooks ------------------------------------------------------------

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
        path = os.path.join(d, "student.ipynb")
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
        sys.exit("usage: python -m onvm.grading worker NOTEBOOK HIDDEN_TESTS OUT_DIR SECONDS")
