"""Graded submissions are hostile.  One `onvm lab grade` run (as root, as an
instructor runs it) over a world-readable folder under /tmp holding lab 01's
solution with attacks added: each attack must see nothing or score what the
honest solution scores (14), the forged one 0, and nothing of any of them may
be left on the machine.  Each notebook is the real solution plus a cell; what
an attack finds it reports by raising, so a leak shows up as the reason for
a 0."""
import grp
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading

import nbformat
import pytest

from onvm.common import paths
from onvm.face import grading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIREWALL = os.path.join(ROOT, "labs", "01-firewall")
HIDDEN = os.path.join(FIREWALL, "hidden_tests.py")
MARK = "VICTIM-SECRET-%s" % secrets.token_hex(4)
TOKEN = secrets.token_hex(6)
PLANTED = ["/tmp/onvm-plant-%s" % TOKEN, "/var/tmp/onvm-plant-%s" % TOKEN, "/dev/shm/onvm-plant-%s" % TOKEN,
           os.path.join(paths.ONVM_HUGE_DIR, "onvm-plant-%s" % TOKEN)]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="grading in sandboxes is what root does")


SOLUTION = os.path.join(FIREWALL, "solution.ipynb")


def _with(first=None, last=None, src=SOLUTION):
    """The solution with a code cell put first and/or last."""
    nb = nbformat.read(src, as_version=4)
    if first:
        nb.cells.insert(0, nbformat.v4.new_code_cell(first))
    if last:
        nb.cells.append(nbformat.v4.new_code_cell(last))
    return nbformat.writes(nb)


def _split(s):
    """s as Python source that does not contain s itself (so a notebook
    looking for s does not find its own text)."""
    return "%r + %r" % (s[:4], s[4:])


SPY = """
import glob, os
mark = %(mark)s
hits = []
for pat in [%(subs)r + "/*", %(subs)r + "/*/*", "/tmp/*/*", "/tmp/*/*/*", "/tmp/*/*/*/*", "/home/*/*",
            "/home/*/*/*", "/proc/*/cwd/*", "/proc/*/root/tmp/*/*/*", "/run/*/*/*", "/run/*/*/*/*"]:
    for f in glob.glob(pat):
        try:
            with open(f, errors="replace") as fh:
                if mark in fh.read(1 << 20):
                    hits.append(f)
        except Exception:
            pass
if hits:
    raise RuntimeError("LEAK " + " ".join(hits))
"""

HIDDEN_READER = """
import glob, os
paths = [%(hidden)r, os.path.expanduser("~/hidden_tests.py"), "hidden_tests.py"]
try:
    import onvm.common.paths
    paths.append(os.path.join(onvm.common.paths.data_path("labs"), "01-firewall", "hidden_tests.py"))
except Exception:
    pass
paths += glob.glob("/tmp/*/*/hidden_tests.py") + glob.glob("/tmp/*/hidden_tests.py")
for p in paths:
    try:
        with open(p) as fh:
            text = fh.read()
    except OSError:
        continue
    if "def reference" in text:
        raise RuntimeError("LEAK " + p)
"""

# the NF itself tries too: if it can read the hidden tests, every packet goes to the wrong port
HIDDEN_IN_NF = """
import os
_inner = firewall.fn
_places = [%(hidden)r, os.path.expanduser("~/hidden_tests.py"), "hidden_tests.py"]

@onvm.nf(service=1)
def firewall(pkt):
    for p in _places:
        try:
            open(p).close()
            return onvm.ToPort(2)
        except OSError:
            pass
    return _inner(pkt)
"""

# A drop-everything firewall whose pickle, when loaded, replaces the
# grader's scoring with "every test passed" (what took 14/14 before).
FORGE = """
import onvm

class Hook:
    def __reduce__(self):
        return (exec, (
            "import random, sys, onvm.face.grading\\n"
            "def fake(tests, *a, **k):\\n"
            "    return [{'name': n, 'points': p, 'passed': True, 'mismatches': []}"
            " for n, p, _ in tests.cases(random.Random(2016))], None\\n"
            "for g in (onvm.face.grading, sys.modules['__main__']):\\n"
            "    g.run_cases = fake\\n"
            "    g.run_checks = lambda *a, **k: []\\n",))

@onvm.nf(service=1)
def firewall(pkt):
    return onvm.DROP

firewall.hook = Hook()
"""

PLANTER = """
import os
for p in %(planted)r:
    try:
        with open(p, "w") as fh:
            fh.write("left for the next submission")
    except OSError:
        pass
"""

CALLER = """
import socket
try:
    s = socket.create_connection(("127.0.0.1", %(port)d), timeout=3)
    s.sendall(b"LEAK")
    s.close()
except OSError:
    pass
"""

WHOAMI = """
import os
raise RuntimeError("UID=%d GID=%d" % (os.getuid(), os.getgid()))
"""


class Listener:
    """A TCP listener on the host's 127.0.0.1 that counts who connects."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            c.close()

    def close(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def graded():
    subs = "/tmp/onvm-subs-%s" % TOKEN          # where a careless instructor keeps them: world-readable
    os.mkdir(subs, 0o755)
    os.chmod(subs, 0o755)
    listener = Listener()
    try:
        files = {
            "a-victim.ipynb": _with(first="# %s\nimport ipaddress" % MARK),
            "b-spy.ipynb": _with(first=SPY % {"mark": _split(MARK), "subs": subs}),
            "c-forge.ipynb": _with(last=FORGE),
            "d-hidden.ipynb": _with(first=HIDDEN_READER % {"hidden": HIDDEN}, last=HIDDEN_IN_NF % {"hidden": HIDDEN}),
            "e-planter.ipynb": _with(first=PLANTER % {"planted": PLANTED}),
            "f-caller.ipynb": _with(first=CALLER % {"port": listener.port}),
            "g-uid.ipynb": _with(first=WHOAMI),
            "h-uid.ipynb": _with(first=WHOAMI),
        }
        for name, text in files.items():
            with open(os.path.join(subs, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(subs, name), 0o644)
        # from inside the folder (`python -m` puts it on the grader's sys.path)
        r = subprocess.run([sys.executable, "-m", "onvm", "lab", "grade", ".", "--csv", "scores.csv", "--timeout",
                            "150"], cwd=subs, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stderr
        import csv
        with open(os.path.join(subs, "scores.csv")) as f:
            rows = {row["notebook"]: row for row in csv.DictReader(f)}
        listener.close()
        yield rows, r.stdout, listener
    finally:
        listener.close()
        shutil.rmtree(subs, ignore_errors=True)
        for p in PLANTED:
            if os.path.exists(p):
                os.unlink(p)


def _ok(rows, out, name):
    row = rows[name]
    assert "LEAK" not in row["reason"] and "LEAK" not in out, out
    assert row["score"] == "14" and row["reason"] == "", (name, row, out)


def test_a_submission_cannot_read_another(graded):
    rows, out, _ = graded
    _ok(rows, out, "a-victim.ipynb")
    _ok(rows, out, "b-spy.ipynb")


def test_a_pickled_hook_cannot_forge_the_score(graded):
    rows, out, _ = graded
    row = rows["c-forge.ipynb"]
    assert row["score"] == "0" and row["max_score"] == "14", (row, out)


def test_the_hidden_tests_are_out_of_reach(graded):
    rows, out, _ = graded
    _ok(rows, out, "d-hidden.ipynb")      # not in the notebook, not in its NF either (else every packet misroutes)


def test_nothing_is_left_for_the_next_submission(graded):
    rows, out, _ = graded
    _ok(rows, out, "e-planter.ipynb")
    assert [p for p in PLANTED if os.path.exists(p)] == []


def test_no_network_to_the_host(graded):
    rows, out, listener = graded
    _ok(rows, out, "f-caller.ipynb")
    assert listener.accepted == 0


def test_each_submission_has_a_fresh_uid_and_leaves_nothing(graded):
    rows, out, _ = graded
    ids = []
    for name in ("g-uid.ipynb", "h-uid.ipynb"):
        m = re.search(r"UID=(\d+) GID=(\d+)", rows[name]["reason"])
        assert m and rows[name]["score"] == "0", rows[name]
        ids.append(int(m.group(1)))
        assert int(m.group(2)) == int(m.group(1))
    assert len(set(ids)) == 2 and 0 not in ids
    for uid in ids:
        with pytest.raises(KeyError):
            pwd.getpwuid(uid)
        with pytest.raises(KeyError):
            grp.getgrgid(uid)
        assert grading._pids_of(uid) == []
        found = subprocess.run(["find", "/tmp", "/var/tmp", "/dev/shm", paths.ONVM_HUGE_DIR, "-xdev", "-uid",
                                str(uid)], capture_output=True, text=True, timeout=120).stdout
        assert found == ""
