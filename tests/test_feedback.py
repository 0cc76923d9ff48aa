"""What grading hands back, as an instructor and a course's CI see it: a
feedback file per submission (one traceback, not one per test), a CSV with
a column per test and the reason for every 0, `onvm lab check`'s exit
status (0 full score, 1 not, 2 not graded), one line and exit 2 for bad
input, and scores that match what the lab notebooks' headings promise."""
import csv
import importlib.util
import json
import os
import random
import re
import subprocess
import sys

import nbformat
import pytest

from onvm.face import grading

ONVM = [sys.executable, "-m", "onvm"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABS = sorted(d for d in os.listdir(os.path.join(ROOT, "labs"))
              if os.path.isfile(os.path.join(ROOT, "labs", d, "hidden_tests.py")))


def _lab(name, f=""):
    return os.path.join(ROOT, "labs", name, f)


def _hidden(name):
    """The lab's hidden tests and checks: [(name, points)], as the grader runs them."""
    spec = importlib.util.spec_from_file_location("hidden_%s" % name.replace("-", "_"), _lab(name, "hidden_tests.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [(n, p) for n, p, _ in mod.cases(random.Random(grading.SEED))] + \
        [(n, p) for n, p, _ in getattr(mod, "CHECKS", [])]


def _partly_done(name, done, dst):
    """The student notebook with the answer cells named in done (grade_ids)
    taken from the solution: a student who finished those and no more."""
    sol = {c.metadata.get("nbgrader", {}).get("grade_id"): c
           for c in nbformat.read(_lab(name, "solution.ipynb"), as_version=4).cells}
    nb = nbformat.read(_lab(name, "student.ipynb"), as_version=4)
    for i, c in enumerate(nb.cells):
        if c.metadata.get("nbgrader", {}).get("grade_id") in done:
            nb.cells[i] = sol[c.metadata["nbgrader"]["grade_id"]]
    nbformat.write(nb, str(dst))


def _promised(name, done):
    """The points the notebook's headings give for the parts whose answer
    cells (grade_ids) are all in done: "## Part N: ... (P points)"."""
    nb = nbformat.read(_lab(name, "student.ipynb"), as_version=4)
    parts, heading = {}, None
    for c in nb.cells:
        if c.cell_type == "markdown" and c.source.startswith("## "):
            heading = c.source.splitlines()[0]
        g = c.metadata.get("nbgrader", {})
        if g.get("solution"):
            parts.setdefault(heading, []).append(g["grade_id"])
    total = 0
    for heading, ids in parts.items():
        m = re.search(r"\((\d+) points?\b", heading)
        if m and set(ids) <= set(done):
            total += int(m.group(1))
    return total


def _feedback(path):
    with open(path) as f:
        return f.read()


@pytest.mark.parametrize("name", LABS)
def test_a_notebook_lists_the_points_its_hidden_tests_give(name):
    """Each lab notebook's Points paragraph names every hidden test with its
    points, and its part headings add up to no more than the total."""
    nb = nbformat.read(_lab(name, "student.ipynb"), as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    hidden = _hidden(name)
    total = sum(p for _, p in hidden)
    assert "**Points.** %d" % total in text
    for n, p in hidden:
        assert "- %s: %d point%s" % (n, p, "" if p == 1 else "s") in text, n
    solution_ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                    if c.metadata.get("nbgrader", {}).get("solution")]
    assert _promised(name, solution_ids) <= total


def test_grading_a_class_hands_back_feedback(tmp_path):
    """Lab 01 graded as a folder: the solution, the untouched student
    notebook, one with only part 1 done, one that is not a notebook."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a-solution.ipynb").write_text(open(_lab("01-firewall", "solution.ipynb")).read())
    (subs / "b-student.ipynb").write_text(open(_lab("01-firewall", "student.ipynb")).read())
    _partly_done("01-firewall", ["parse"], subs / "c-part1.ipynb")
    (subs / "d-not-a-notebook.ipynb").write_text("{ this is not json")
    (subs / "feedback" / "a-solution").mkdir(parents=True)
    (subs / "feedback" / "a-solution" / "mismatches.pcap").write_bytes(b"from an earlier grading")
    r = subprocess.run(ONVM + ["lab", "grade", str(subs), "--csv", str(tmp_path / "scores.csv"), "--timeout", "180"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "scores.csv") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = {row[0]: dict(zip(header, row)) for row in reader}
    hidden = _hidden("01-firewall")
    assert header == ["notebook", "score", "max_score", "reason"] + [n for n, _ in hidden]

    sol = rows["a-solution.ipynb"]
    assert sol["score"] == sol["max_score"] == "14" and sol["reason"] == "", r.stdout
    assert all(sol[n] == str(p) for n, p in hidden)
    text = _feedback(subs / "feedback" / "a-solution" / "feedback.txt")
    assert "a-solution.ipynb: 14 / 14" in text and "FAILED" not in text
    assert not (subs / "feedback" / "a-solution" / "mismatches.pcap").exists(), "a stale pcap was left"

    stu = rows["b-student.ipynb"]
    assert stu["score"] == "0" and all(stu[n] == "0" for n, _ in hidden)
    assert stu["reason"].startswith("every hidden test failed: ") and all(n in stu["reason"] for n, _ in hidden)
    text = _feedback(subs / "feedback" / "b-student" / "feedback.txt")
    assert "b-student.ipynb: 0 / 14" in text and "NotImplementedError" in text and "in parse" in text
    # the NF raised on every packet of every test: its traceback once, the other tests refer to it
    assert text.count("Traceback (most recent call last)") == 1, text
    assert text.count("the NF's log ends as in \"%s\" above" % hidden[0][0]) == len(hidden) - 1
    assert len(text.splitlines()) < 60, text
    html = _feedback(subs / "feedback" / "b-student" / "feedback.html")
    assert "<table" in html and html.count("<b>failed</b>") == len(hidden)
    assert (subs / "feedback" / "b-student" / "mismatches.pcap").exists()
    assert "mismatches.pcap (in this folder)" in text

    # part 1 alone: what the headings promise (lab 01's parts are graded together, through the NF)
    half = rows["c-part1.ipynb"]
    assert half["score"] == str(_promised("01-firewall", ["parse"])) == "0", r.stdout
    assert half["reason"].startswith("every hidden test failed")
    text = _feedback(subs / "feedback" / "c-part1" / "feedback.txt")
    assert "visible test test_parse                   ok" in text and "in decide" in text
    assert text.count("Traceback (most recent call last)") == 1, text

    bad = rows["d-not-a-notebook.ipynb"]
    assert bad["score"] == "0" and bad["reason"].startswith("not a")
    assert all(bad[n] == "" for n, _ in hidden), "no test ran: no points in its columns"
    assert bad["reason"] in _feedback(subs / "feedback" / "d-not-a-notebook" / "feedback.txt")
    # what was printed is what was written
    assert _feedback(subs / "feedback" / "b-student" / "feedback.txt").splitlines()[0] in r.stdout


def _check(nb, *args):
    return subprocess.run(ONVM + ["lab", "check", str(nb)] + list(args), capture_output=True, text=True, timeout=600)


def test_check_exits_0_only_for_a_full_score(tmp_path):
    sol, stu = tmp_path / "solution.ipynb", tmp_path / "student.ipynb"
    sol.write_text(open(_lab("01-firewall", "solution.ipynb")).read())
    stu.write_text(open(_lab("01-firewall", "student.ipynb")).read())
    r = _check(sol)
    assert r.returncode == 0 and "solution.ipynb: 14 / 14" in r.stdout, r.stdout + r.stderr
    assert "14 / 14" in _feedback(tmp_path / "solution.feedback" / "feedback.txt")
    r = _check(stu, "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    result = json.loads(r.stdout)          # the result dict keeps its shape for tools
    assert result["score"] == 0 and result["max_score"] == 14 and len(result["tests"]) == 7
    assert set(result) >= {"notebook", "score", "max_score", "reason", "visible", "tests", "pcap"}
    assert os.path.exists(tmp_path / "student.feedback" / "feedback.txt")


@pytest.mark.parametrize("content, why", [
    ("{ this is not json", "not a"),
    ("lab 09", "not a lab notebook: no lab called '09-nope'"),
    ("no lab", "not a lab notebook"),
])
def test_check_exits_2_for_a_notebook_it_cannot_grade(tmp_path, content, why):
    nb = tmp_path / "x.ipynb"
    if content == "lab 09":
        student = nbformat.read(_lab("01-firewall", "student.ipynb"), as_version=4)
        student.metadata["onvm"]["lab"] = "09-nope"
        nbformat.write(student, str(nb))
    elif content == "no lab":
        nbformat.write(nbformat.v4.new_notebook(), str(nb))
    else:
        nb.write_text(content)
    r = _check(nb)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("onvm: could not grade") and why in r.stderr and len(r.stderr.splitlines()) == 1
    assert why in _feedback(tmp_path / "x.feedback" / "feedback.txt")


def _bad_input_cases(tmp):
    sol = _lab("01-firewall", "solution.ipynb")
    folder = tmp / "subs"
    folder.mkdir()
    afile = tmp / "afile"
    afile.write_text("x")
    return [
        (["lab", "check", str(tmp / "missing.ipynb")], "no such notebook"),
        (["lab", "check", sol, "--tests", str(tmp / "missing.py")], "no such hidden-test file"),
        (["lab", "check", sol, "--tests", str(afile)], "is not a hidden-test file"),
        (["lab", "check", sol, "--out", str(afile / "fb")], "cannot write the feedback folder"),
        (["lab", "grade", str(tmp / "nothere"), "--csv", str(tmp / "s.csv")], "no such folder"),
        (["lab", "grade", str(folder), "--csv", str(afile / "s.csv")], "cannot write the CSV"),
        (["lab", "grade", str(folder), "--csv", "/proc/onvm-scores.csv"], "cannot write the CSV"),
        (["lab", "grade", str(folder), "--csv", str(folder)], "is a folder"),
        (["lab", "grade", str(folder), "--csv", str(tmp / "s.csv"), "--tests", str(tmp / "missing.py")],
         "no such hidden-test file"),
        (["lab", "generate", str(tmp / "09-nope")], "no lab at"),
        (["lab", "check", sol, "--timeout", "0"], "must be a number of seconds above 0"),
        (["lab", "grade", str(folder), "--csv", str(tmp / "s.csv"), "--timeout", "-5"], "above 0"),
    ]


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, want in _bad_input_cases(tmp_path):
        r = subprocess.run(ONVM + args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert want in r.stderr and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert not os.path.exists(tmp_path / "s.csv"), "nothing is written for bad input"
    # a feedback folder that cannot be made under the folder: said before any grading
    (tmp_path / "subs" / "x.ipynb").write_text("{}")
    (tmp_path / "subs" / "feedback").write_text("a file where the feedback folder goes")
    r = subprocess.run(ONVM + ["lab", "grade", str(tmp_path / "subs"), "--csv", str(tmp_path / "s.csv")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot write the feedback folder" in r.stderr and "Traceback" not in r.stderr


# Parts graded on their own: what a student who finished only that part earns is what its heading says
# (lab 02: pick alone, its 2 points; lab 04: find_bottleneck alone, its 4).
@pytest.mark.parametrize("name, done", [("02-load-balancer", ["pick"]), ("04-performance", ["find_bottleneck"])])
def test_a_part_done_alone_earns_what_its_heading_promises(tmp_path, name, done):
    nb = tmp_path / "partly.ipynb"
    _partly_done(name, done, nb)
    promised = _promised(name, done)
    assert promised > 0
    r = _check(nb, "--json", "--timeout", "240")
    assert r.returncode == 1, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["score"] == promised, json.dumps(result, indent=1)[:3000]


def test_a_result_written_by_a_hostile_worker_still_gives_feedback(tmp_path):
    """The worker that writes a result runs as the student: wrong types,
    missing fields and terminal escapes give feedback, not a crash."""
    from onvm.face import feedback
    r = {"notebook": "x.ipynb", "score": "14", "max_score": None, "reason": None, "visible": "ok",
         "tests": [{"name": "a\x1b]0;owned\x07", "points": True, "passed": "yes", "nf_log": 5},
                   "junk", {"mismatches": [None, {"packet": ["p"]}]}]}
    text = feedback.format_result(r)
    assert "\x1b" not in text and "\x07" not in text and "x.ipynb: 0 / 0" in text
    feedback.write(r, str(tmp_path / "fb"))
    feedback.write_csv(str(tmp_path / "s.csv"), ["x.ipynb"], [r])
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.reader(f))
    assert rows[1][:4] == ["x.ipynb", "0", "0", "every hidden test failed: a?]0;owned?; "]
    assert feedback.exit_status(r) == 1
