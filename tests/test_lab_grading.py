"""The course labs as an instructor uses them: student notebooks current with
their solutions, a folder of submissions graded in one command (solution,
untouched student notebook, a half-done one, and hostile ones: not a
notebook, raising, hanging, flooding), feedback down to the packet."""
import csv
import grp
import json
import os
import pwd
import subprocess
import sys

import nbformat
import pytest
from scapy.all import IP, rdpcap

from onvm.face import grading

pytestmark = pytest.mark.slow

ONVM = [sys.executable, "-m", "onvm"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABS = sorted(os.path.join(ROOT, "labs", d) for d in os.listdir(os.path.join(ROOT, "labs"))
              if os.path.isfile(os.path.join(ROOT, "labs", d, "hidden_tests.py")))
FIREWALL = os.path.join(ROOT, "labs", "01-firewall")


def test_student_notebooks_are_generated_from_the_solutions():
    r = subprocess.run(ONVM + ["lab", "generate", "--check"] + LABS, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for lab in LABS:
        # named after the folder, so JupyterLab's tabs tell the labs apart
        student = nbformat.read(grading.student_notebook(lab), as_version=4)
        assert os.path.basename(grading.student_notebook(lab)) == os.path.basename(lab) + ".ipynb"
        assert not os.path.exists(os.path.join(lab, grading.OLD_STUDENT_NAME))
        text = "\n".join(c.source for c in student.cells)
        assert "### BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text
        assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


def test_a_stale_student_notebook_is_named(tmp_path):
    lab = tmp_path / "01-firewall"
    lab.mkdir()
    for f in ("solution.ipynb", "01-firewall.ipynb"):
        (lab / f).write_text(open(os.path.join(FIREWALL, f)).read())
    with open(lab / "01-firewall.ipynb", "a") as f:
        f.write(" ")
    r = subprocess.run(ONVM + ["lab", "generate", "--check", str(lab)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "01-firewall/01-firewall.ipynb" in r.stderr
    # a copy under the old name is left alone, and named
    (lab / "student.ipynb").write_text("kept")
    r = subprocess.run(ONVM + ["lab", "generate", str(lab)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "student.ipynb is the old name of" in r.stderr, r.stderr
    assert (lab / "student.ipynb").read_text() == "kept"
    assert subprocess.run(ONVM + ["lab", "generate", "--check", str(lab)], timeout=120).returncode == 0


def _variant(src, dst, old, new):
    text = open(src).read()
    assert old in text
    with open(dst, "w") as f:
        f.write(text.replace(old, new))


def _grade(folder, csv_path, timeout):
    """`onvm lab grade FOLDER` as an instructor runs it.  returns: (the
    completed process, {notebook: its CSV row})."""
    r = subprocess.run(ONVM + ["lab", "grade", str(folder), "--csv", str(csv_path), "--timeout", str(timeout)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    with open(csv_path) as f:
        return r, {row["notebook"]: row for row in csv.DictReader(f)}


def test_grading_a_folder_of_submissions(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    sol = os.path.join(FIREWALL, "solution.ipynb")
    (subs / "a-solution.ipynb").write_text(open(sol).read())
    (subs / "b-student.ipynb").write_text(open(grading.student_notebook(FIREWALL)).read())
    # half done: IP headers taken to be 20 bytes, always
    _variant(sol, subs / "c-half.ipynb", "ihl = (data[14] & 0x0F) * 4", "ihl = 20")
    (subs / "d-not-a-notebook.ipynb").write_text("{ this is not json")
    _variant(sol, subs / "e-raises.ipynb", "import ipaddress\\n", "import ipaddress\\n1 / 0\\n")
    r, rows = _grade(subs, tmp_path / "scores.csv", 120)
    full = rows["a-solution.ipynb"]["max_score"]
    assert rows["a-solution.ipynb"]["score"] == full == "14", r.stdout
    assert rows["b-student.ipynb"]["score"] == "0" and rows["b-student.ipynb"]["max_score"] == "14"
    assert rows["c-half.ipynb"]["score"] == "9", r.stdout
    assert rows["d-not-a-notebook.ipynb"]["score"] == "0" and "not" in rows["d-not-a-notebook.ipynb"]["reason"]
    assert rows["e-raises.ipynb"]["score"] == "0" and "ZeroDivisionError" in rows["e-raises.ipynb"]["reason"]
    # feedback at packet level: the half-done one's packets with IP options, in a pcap
    assert "IP headers with options" in r.stdout and "expected port" in r.stdout
    pcap = subs / "feedback" / "c-half" / "mismatches.pcap"
    assert all(len(p[IP].options) for p in rdpcap(str(pcap)))
    # the untouched student notebook: the NF's own error reaches the feedback
    assert "NotImplementedError" in r.stdout
    # (no account is made for a submission any more: tests/test_grading_security.py checks its fresh uid)


def test_check_json_and_hostile_notebooks(tmp_path):
    sol = os.path.join(FIREWALL, "solution.ipynb")
    _variant(sol, tmp_path / "hang.ipynb", "import ipaddress\\n", "import ipaddress\\nwhile True: pass\\n")
    _variant(sol, tmp_path / "flood.ipynb", "import ipaddress\\n",
             "import ipaddress\\nwhile True: print('x' * 10000)\\n")
    res = {}
    for nb in ("hang", "flood"):
        r = subprocess.run(ONVM + ["lab", "check", str(tmp_path / (nb + ".ipynb")), "--json", "--timeout", "20"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1, r.stderr          # graded, not a full score
        res[nb] = json.loads(r.stdout)
    assert res["hang"]["score"] == 0 and "time limit" in res["hang"]["reason"]
    assert res["flood"]["score"] == 0 and "output" in res["flood"]["reason"]


def test_a_notebook_without_the_nf_names_the_nf_it_lacks(tmp_path):
    """The worker learns the NF's name from the grader once the notebook has
    run (the hidden tests load meanwhile); the reason names it."""
    nb = nbformat.read(os.path.join(FIREWALL, "solution.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("del firewall"))
    nbformat.write(nb, str(tmp_path / "no-nf.ipynb"))
    r = subprocess.run(ONVM + ["lab", "check", str(tmp_path / "no-nf.ipynb"), "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    res = json.loads(r.stdout)
    assert res["score"] == 0 and res["max_score"] == 14, res
    assert res["reason"].startswith("the notebook defines no NF called 'firewall': NameError"), res["reason"]


FORK_BOMB = """import os, time
uid = os.getuid()
try:
    while True:                  # children that outlive the kernel, until no more may be made
        if os.fork() == 0:
            time.sleep(3600)
            os._exit(0)
except OSError as e:
    raise RuntimeError("UID=%d: %s" % (uid, e))
"""
OUTSIDE = """import os
for p in %r:
    with open(p, "w") as f:
        f.write("outside")
"""
SOCKETS = """import os, socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
c = socket.create_connection(("127.0.0.1", s.getsockname()[1]), timeout=2)   # its own: allowed
socket.create_connection(("127.0.0.1", 22), timeout=2)      # the host's: not reachable
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a sandbox (read-only root, no network) is what root grading gives")
def test_bad_input_scores_0_with_a_reason_and_the_rest_is_graded(tmp_path):
    """--jobs 2 over a folder mixing good, half-done and bad submissions: each
    bad one 0 with the reason, nothing of it left running or written, the
    others their scores."""
    subs = tmp_path / "subs"
    subs.mkdir()
    sol = os.path.join(FIREWALL, "solution.ipynb")
    (subs / "a-solution.ipynb").write_text(open(sol).read())
    _variant(sol, subs / "b-half.ipynb", "ihl = (data[14] & 0x0F) * 4", "ihl = 20")
    (subs / "c-student.ipynb").write_text(open(grading.student_notebook(FIREWALL)).read())
    (subs / "d-empty.ipynb").write_text("")
    nb = nbformat.read(sol, as_version=4)
    nb.cells = []
    (subs / "e-no-cells.ipynb").write_text(nbformat.writes(nb))
    outside = ["/etc/onvm-planted-%d" % os.getpid(), "/usr/onvm-planted-%d" % os.getpid(), str(subs / "planted.txt")]
    for name, code in (("f-fork-bomb", FORK_BOMB), ("g-writes-outside", OUTSIDE % (outside,)), ("h-sockets", SOCKETS)):
        nb = nbformat.read(sol, as_version=4)
        nb.cells.insert(0, nbformat.v4.new_code_cell(code))
        (subs / (name + ".ipynb")).write_text(nbformat.writes(nb))
    r = subprocess.run(ONVM + ["lab", "grade", str(subs), "--csv", str(tmp_path / "scores.csv"), "--timeout", "120",
                               "--jobs", "2"], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "scores.csv") as f:
        rows = {row["notebook"]: row for row in csv.DictReader(f)}
    assert rows["a-solution.ipynb"]["score"] == "14", r.stdout
    assert rows["b-half.ipynb"]["score"] == "9", r.stdout
    assert rows["c-student.ipynb"]["score"] == "0", r.stdout
    assert rows["c-student.ipynb"]["reason"].startswith("every hidden test failed"), r.stdout   # it ran
    bad = {"d-empty.ipynb": "not a notebook", "e-no-cells.ipynb": "no code cells",
           "f-fork-bomb.ipynb": "UID=", "g-writes-outside.ipynb": "Read-only file system",
           "h-sockets.ipynb": "ConnectionRefusedError"}
    for name, why in bad.items():
        assert rows[name]["score"] == "0" and why in rows[name]["reason"], (name, rows[name], r.stdout)
    for p in outside:
        assert not os.path.exists(p), p
    uid = int(rows["f-fork-bomb.ipynb"]["reason"].split("UID=")[1].split(":")[0])
    assert uid != 0 and grading._pids_of(uid) == [], "the fork bomb left processes"


def test_a_missing_notebook_is_an_error():
    r = subprocess.run(ONVM + ["lab", "check", "/nonexistent.ipynb"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no such notebook" in r.stderr


# Labs 02-04 as an instructor grades them: the solution full, the untouched student notebook graded (a
# score below full; a 0 names the tests that failed), and for the labs graded by properties (02: judge)
# and by checks of exported values (04: CHECKS) a half-done one with the score it earns.  About 4 minutes
# in all.
HALF_DONE = {
    "02-load-balancer": ("return zlib.crc32(key) % n", "return zlib.crc32(key[:8]) % n", 13),  # addresses only
    "04-performance": ("return l4 + (data[l4 + 12] >> 4) * 4", "return l4 + 20", 10),  # no TCP options: no speed points
}


@pytest.mark.parametrize("name", ["02-load-balancer", "03-syn-flood", "04-performance"])
def test_grading_a_lab_folder(tmp_path, name):
    lab = os.path.join(ROOT, "labs", name)
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a-solution.ipynb").write_text(open(os.path.join(lab, "solution.ipynb")).read())
    (subs / "b-student.ipynb").write_text(open(grading.student_notebook(lab)).read())
    if name in HALF_DONE:
        _variant(os.path.join(lab, "solution.ipynb"), subs / "c-half.ipynb", *HALF_DONE[name][:2])
    r, rows = _grade(subs, tmp_path / "scores.csv", 180)
    full = rows["a-solution.ipynb"]["max_score"]
    assert int(full) >= 10 and rows["a-solution.ipynb"]["score"] == full, r.stdout
    student = rows["b-student.ipynb"]
    assert student["max_score"] == full and int(student["score"]) < int(full), r.stdout
    assert student["reason"].startswith("every hidden test failed") if student["score"] == "0" else \
        student["reason"] == "", r.stdout          # it ran: a 0 names the tests it failed
    assert "NotImplementedError" in r.stdout          # the student sees what is left to do
    if name in HALF_DONE:
        assert rows["c-half.ipynb"]["score"] == str(HALF_DONE[name][2]), r.stdout
        assert (subs / "feedback" / "c-half" / "mismatches.pcap").exists() or "flows per backend" in r.stdout


def _reachable_by_all(path):
    path = os.path.realpath(path)
    while path != "/":
        path = os.path.dirname(path)
        if not os.stat(path).st_mode & 0o001:
            return False
    return True


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a user")
def test_a_student_in_group_onvm_checks_every_lab(tmp_path):
    """Not root: a throw-away member of group onvm grades, as themselves, each
    lab's solution (full score) and untouched student notebook (ran, below full)."""
    if not _reachable_by_all(sys.executable):
        pytest.skip("%s is not reachable by other users (a venv under /root)" % sys.executable)
    user = "labchk%d" % os.getpid()
    subprocess.run(["useradd", "--create-home", "--groups", "onvm", "--shell", "/bin/sh", user], check=True,
                   timeout=60)
    try:
        pw = pwd.getpwnam(user)
        subs = os.path.join(pw.pw_dir, "subs")
        os.mkdir(subs)
        for lab in LABS:
            for kind in ("solution", "student"):
                with open(os.path.join(subs, "%s-%s.ipynb" % (os.path.basename(lab), kind)), "w") as f:
                    f.write(open(os.path.join(lab, "solution.ipynb") if kind == "solution"
                                 else grading.student_notebook(lab)).read())
        subprocess.run(["chown", "-R", user, subs], check=True, timeout=60)
        r = subprocess.run(ONVM + ["lab", "grade", subs, "--csv", os.path.join(subs, "scores.csv"), "--jobs", "2",
                                   "--timeout", "240"],
                           user=pw.pw_uid, group=pw.pw_gid, extra_groups=[grp.getgrnam("onvm").gr_gid],
                           env={"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd=pw.pw_dir,
                           capture_output=True, text=True, timeout=1500)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(subs, "scores.csv")) as f:
            rows = {row["notebook"]: row for row in csv.DictReader(f)}
        assert len(rows) == 2 * len(LABS)
        for lab in LABS:
            name = os.path.basename(lab)
            sol, stu = rows[name + "-solution.ipynb"], rows[name + "-student.ipynb"]
            assert int(sol["max_score"]) >= 10 and sol["score"] == sol["max_score"], (sol, r.stdout)
            assert int(stu["score"]) < int(stu["max_score"]), (stu, r.stdout)
            # it ran: a 0 names the tests it failed, and nothing stopped the notebook
            assert stu["reason"] == "" or stu["reason"].startswith("every hidden test failed"), (stu, r.stdout)
        left = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True).stdout.split()
        assert left == [], "processes of the student left running: %s" % left
    finally:
        subprocess.run(["pkill", "-KILL", "-u", user], timeout=30)
        subprocess.run(["userdel", "-r", user], timeout=60, capture_output=True)
