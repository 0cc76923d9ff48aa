"""A course's default: a student who is not root.  A throw-away user in group
onvm (not in group docker), with a fresh HOME and no XDG_RUNTIME_DIR (onvm
falls back to ~/.onvm/run), uses this checkout's shared .venv as a student
on a shared server does: copies the notebooks out, runs every tutorial
notebook under nbval, runs 03, 04 and 07 to check that nothing red shows,
and checks every lab's solution (full score) and student notebook (less,
and no crash).  The user, its processes and every file it left are removed.

Needs root (to create the user) and the set-up of scripts/setup.sh."""
import glob
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import zipfile

import pytest

from conftest import wait_for
from onvm.common import paths

NBVAL_TIMEOUT = 1800        # every notebook, as the user; a cell has 300 s
CHECK_TIMEOUT = 600         # one onvm lab check (or one notebook run), with the user's set-up

pytestmark = [pytest.mark.privileged, pytest.mark.slow, pytest.mark.student,
              pytest.mark.timeout(CHECK_TIMEOUT + 300)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(os.path.dirname(sys.executable), "python")    # the shared venv's, not resolved
NOTEBOOKS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
LABS = sorted(d for d in os.listdir(os.path.join(ROOT, "labs")) if os.path.isdir(os.path.join(ROOT, "labs", d)))
# Notebooks whose every output is scanned for a traceback or stderr (the ones
# that showed red to a student: scapy ARPing, root-only namespaces, Docker).
SCANNED = ("03-chains-as-graphs.ipynb", "04-traffic-and-capture.ipynb", "07-containers.ipynb")


class Student:
    """A user made for this module: name, uid, home, env; .run(args) runs
    a command as them (their groups: their own and onvm, as a login gives)."""

    def __init__(self, name):
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.home = name, pw.pw_uid, pw.pw_gid, pw.pw_dir
        self.onvm_gid = grp.getgrnam(paths.ONVM_GROUP).gr_gid
        os.mkdir(os.path.join(self.home, "tmp"), 0o700)
        os.chown(os.path.join(self.home, "tmp"), self.uid, self.gid)
        self.env = {"HOME": self.home, "USER": name, "LOGNAME": name, "SHELL": "/bin/bash",
                    "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": os.path.join(self.home, "tmp")}
        if "ONVM_HUGEPAGES" in os.environ:      # .ci/run's no-hugepage pass: the student's managers too
            self.env["ONVM_HUGEPAGES"] = os.environ["ONVM_HUGEPAGES"]
        self.nb = os.path.join(self.home, "onvm-notebooks")

    def run(self, args, timeout, cwd=None):
        try:
            return subprocess.run(args, user=self.uid, group=self.gid, extra_groups=[self.onvm_gid], env=self.env,
                                  cwd=cwd or self.home, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        finally:
            self.stop_processes(wait=5)

    def processes(self):
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.stat("/proc/" + d).st_uid == self.uid:
                        pids.append(int(d))
                except OSError:
                    pass
        return pids

    def stop_processes(self, wait):
        """What the user still runs gets time to stop (a manager follows its
        kernel), then SIGKILL, by pid."""
        wait_for(lambda: not self.processes(), timeout=wait, step=0.1)
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not self.processes(), timeout=10, step=0.1)


@pytest.fixture(scope="module")
def student():
    if os.geteuid() != 0:
        pytest.skip("creating a throw-away student user needs root")
    try:
        grp.getgrnam(paths.ONVM_GROUP)
    except KeyError:
        pytest.fail("group %s is missing; run as root: bash scripts/setup.sh" % paths.ONVM_GROUP)
    name = "onvmstu%d" % os.getpid()
    subprocess.run(["useradd", "--create-home", "--groups", paths.ONVM_GROUP, "--shell", "/bin/bash", name],
                   check=True, timeout=60, capture_output=True)
    s = None
    try:
        s = Student(name)
        r = s.run([PYTHON, "-c", "import onvm._core"], timeout=120)
        assert r.returncode == 0, (
            "user %s cannot run %s (%s): the checkout and its .venv must be readable by every member of group "
            "onvm; run as root: bash scripts/setup.sh" % (name, PYTHON, (r.stderr.strip().splitlines() or [""])[-1]))
        yield s
    finally:
        uid = pwd.getpwnam(name).pw_uid
        if s is not None:
            s.stop_processes(wait=20)
        try:
            shutil.rmtree(os.path.join(paths.ONVM_HUGE_DIR, str(uid)), ignore_errors=True)
            # Whatever else it left where any user may write, found by uid while
            # the account still holds it (a user made next may get the same uid).
            for top in ("/tmp", "/var/tmp", "/dev/shm", "/dev/hugepages"):
                r = subprocess.run(["find", top, "-xdev", "-mindepth", "1", "-maxdepth", "3", "-user", str(uid)],
                                   capture_output=True, text=True, timeout=60)
                for path in sorted(r.stdout.split(), key=len):
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    elif os.path.lexists(path):
                        os.unlink(path)
        finally:
            subprocess.run(["userdel", "--remove", name], timeout=60, capture_output=True)


@pytest.fixture(scope="module")
def notebooks(student):
    r = student.run([PYTHON, "-m", "onvm", "notebooks", "get", "--path", student.nb], timeout=120)
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(os.path.join(student.nb, "notebooks", NOTEBOOKS[0]))
    return student


@pytest.mark.timeout(NBVAL_TIMEOUT + 120)
def test_every_notebook_runs_under_nbval_as_a_student(notebooks):
    s = notebooks
    r = s.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", s.nb, "-c", "/dev/null",
               "--nbval-lax", "--nbval-cell-timeout=300", "-o", "addopts="]
              + [os.path.join("notebooks", n) for n in NOTEBOOKS], timeout=NBVAL_TIMEOUT, cwd=s.nb)
    summary = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, "nbval as %s:\n%s" % (s.name, summary)
    assert " passed" in r.stdout and " failed" not in r.stdout, summary
    if s.env.get("ONVM_HUGEPAGES") == "0":
        logs = glob.glob(os.path.join(s.home, ".local", "state", "onvm", "logs", "*", "manager.log"))
        assert logs, "the notebooks started no manager?"
        for log in logs:
            with open(log, errors="replace") as f:
                assert "runs without hugepages" in f.read(), "%s: a manager used hugepages" % log


@pytest.mark.parametrize("lab", LABS)
def test_a_labs_solution_runs_under_nbval_as_a_student(notebooks, lab):
    s = notebooks
    r = s.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", s.nb, "-c", "/dev/null",
               "--nbval-lax", "--nbval-cell-timeout=300", "-o", "addopts=", os.path.join("labs", lab, "solution.ipynb")],
              timeout=CHECK_TIMEOUT, cwd=s.nb)
    summary = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0 and " passed" in r.stdout and " failed" not in r.stdout, "nbval as %s:\n%s" % (
        s.name, summary)


@pytest.mark.parametrize("name", SCANNED)
def test_a_notebook_shows_no_traceback_and_no_stderr_to_a_student(notebooks, name):
    s = notebooks
    out = os.path.join(s.home, "executed")
    r = s.run([os.path.join(os.path.dirname(PYTHON), "jupyter"), "nbconvert", "--execute", "--to", "notebook",
               "--allow-errors", "--ExecutePreprocessor.timeout=300", "--output-dir", out, os.path.join("notebooks", name)],
              timeout=CHECK_TIMEOUT, cwd=s.nb)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(out, name)) as f:
        nb = json.load(f)
    red = []
    for i, cell in enumerate(nb["cells"]):
        for o in cell.get("outputs", []):
            if o["output_type"] == "error":
                red.append("cell %d: %s: %s" % (i, o["ename"], o["evalue"]))
            elif o["output_type"] == "stream" and o["name"] == "stderr":
                red.append("cell %d: stderr: %s" % (i, "".join(o["text"]).strip()))
    assert not red, "%s as %s:\n%s" % (name, s.name, "\n".join(red))
    assert sum(c["cell_type"] == "code" and bool(c.get("outputs")) for c in nb["cells"]) >= 3, "it printed nothing"


def _check(s, lab, which):
    nb = os.path.join(s.nb, "labs", lab, which)
    r = s.run([PYTHON, "-m", "onvm", "lab", "check", "--json", nb], timeout=CHECK_TIMEOUT, cwd=s.nb)
    assert "Traceback (most recent call last)" not in r.stderr, r.stderr[-3000:]
    try:
        return r, json.loads(r.stdout[r.stdout.index("{"):])
    except ValueError:
        pytest.fail("onvm lab check %s/%s as %s gave no JSON (exit %d):\n%s\n%s"
                    % (lab, which, s.name, r.returncode, r.stdout[-2000:], r.stderr[-2000:]))


@pytest.mark.parametrize("lab", LABS)
def test_a_labs_solution_scores_full_as_a_student(notebooks, lab):
    r, res = _check(notebooks, lab, "solution.ipynb")
    assert r.returncode == 0, r.stderr[-2000:]
    assert res["max_score"] > 0 and res["score"] == res["max_score"], res


@pytest.mark.parametrize("lab", LABS)
def test_a_labs_student_notebook_is_graded_not_full_as_a_student(notebooks, lab):
    r, res = _check(notebooks, lab, lab + ".ipynb")
    assert r.returncode in (0, 1), "exit %d: %s" % (r.returncode, r.stderr[-2000:])  # 1: not a full score
    assert res["max_score"] > 0 and 0 <= res["score"] < res["max_score"], res


def test_a_student_builds_onvm_from_the_shared_checkout(student):
    """pip install from a checkout another user set up: setuptools must not
    write onvm.egg-info or build/ into it (the student may not)."""
    r = student.run(["test", "-w", ROOT], timeout=30)
    assert r.returncode != 0, "the student may write the checkout; this test means nothing then"
    out = os.path.join(student.home, "wheels")
    r = student.run([PYTHON, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, ROOT], timeout=CHECK_TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    wheels = glob.glob(os.path.join(out, "onvm-*.whl"))
    assert len(wheels) == 1, os.listdir(out)
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    assert {"onvm/face/lab_bashrc.sh", "onvm/_data/notebooks/00-index.ipynb", "onvm/face/cli.py"} <= names


def test_doctor_and_notebook_07_tell_a_student_without_docker_the_fix(student):
    """The engine runs; the student may not use it.  Starting another dockerd
    is the wrong advice: the fix is the group (or rootless Docker)."""
    r = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
    assert r.returncode == 0, "no Docker engine answers root; run as root: bash scripts/setup.sh"
    r = student.run([PYTHON, "-m", "onvm", "doctor"], timeout=120)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("warn docker")), None)
    assert line, r.stdout
    assert "may not use the Docker engine" in line and "is for group docker" in line, line
    assert "usermod -aG docker %s" % student.name in r.stdout and "rootless" in r.stdout, r.stdout
    assert "dockerd --bridge" not in r.stdout, r.stdout
    r = student.run([PYTHON, "-c", "from onvm import containers; containers.build_images()"], timeout=120)
    assert r.returncode == 1 and "usermod -aG docker %s" % student.name in r.stderr.splitlines()[-1], r.stderr
