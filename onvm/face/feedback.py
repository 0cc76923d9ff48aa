"""What a lab's grading hands back, in the grader's process (`onvm lab
check`, `onvm lab grade`): a submission's result dict (made by
onvm/face/grading.py) turned into text for the terminal, feedback.txt and
feedback.html in its feedback folder (beside mismatches.pcap), a row of
the class's CSV (one column per test), and the exit status of `onvm lab
check` (0 full score, 1 not, 2 could not be graded).

The result is read with care: a worker running as the student wrote it,
so every field may be missing, of the wrong type, or hold control
characters."""
import csv
import html
import os
import re

FEEDBACK_TXT = "feedback.txt"
FEEDBACK_HTML = "feedback.html"
PCAP_NAME = "mismatches.pcap"
# reasons that mean the grader could not run the notebook at all (exit status 2); any other
# reason is the submission's own doing (it raised, hung, flooded): a score of 0, exit status 1
UNGRADABLE = ("not a notebook", "not a lab notebook", "cannot read", "the hidden tests", "the grader's worker failed",
              "grading failed")
SHOWN_MISMATCHES = 3
LOG_LINES = 8


# ---- reading a result -------------------------------------------------------------------

def _text(v, limit=2000):
    """v as one printable string: no terminal escapes from a student's notebook."""
    s = v if isinstance(v, str) else "" if v is None else str(v)
    return re.sub(r"[^\n\t\x20-\x7e\u00a0-\uffff]", "?", s[:limit])


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def _dicts(v):
    return [d for d in v if isinstance(d, dict)] if isinstance(v, list) else []


def _pts(p):
    return "%g point%s" % (p, "" if p == 1 else "s")


def _short_paths(log):
    """A traceback's frames in onvm's sandbox copy, named onvm/FILE: the
    sandbox's folder is gone when the student reads it."""
    return re.sub(r'File "[^"]*/(onvm/[^"/]+)"', r'File "\1"', log)


def tests_of(r):
    """The hidden tests (and checks) of a result: [(name, points, passed)]."""
    return [(_text(t.get("name"), 200), _num(t.get("points")), t.get("passed") is True) for t in _dicts(r.get("tests"))]


def could_not_run(r):
    """True when the grader could not run the notebook (not a notebook, not a
    lab notebook, the grader itself failed), rather than the notebook failing."""
    return _text(r.get("reason")).startswith(UNGRADABLE)


def reason(r):
    """Why a submission scored 0 ("" if it did not): the grader's reason, or
    the hidden tests that failed."""
    if r.get("reason"):
        return _text(r.get("reason"), 500)
    if _num(r.get("score")) > 0:
        return ""
    tests = tests_of(r)
    failed = [name for name, _, passed in tests if not passed]
    if not tests:
        return "no hidden test ran"
    if not failed:
        return "the hidden tests carry no points"
    return "%s failed: %s" % ("every hidden test" if len(failed) == len(tests) else
                              "%d of %d hidden tests" % (len(failed), len(tests)), "; ".join(failed))


def exit_status(r):
    """`onvm lab check`'s exit status: 0 full score, 1 not, 2 not graded."""
    if could_not_run(r):
        return 2
    return 0 if _num(r.get("max_score")) > 0 and _num(r.get("score")) >= _num(r.get("max_score")) else 1


# ---- text ---------------------------------------------------------------------------

def format_result(r, pcap_name=None):
    """The feedback of one result as text.  An NF log seen in an earlier
    test (the same traceback for every packet of every test, typically) is
    shown once and named after.  param pcap_name: how to name the pcap of
    mismatches (default: its path in the result)."""
    score, max_score = _num(r.get("score")), _num(r.get("max_score"))
    lines = ["%s: %g / %g" % (_text(r.get("notebook"), 500), score, max_score)]
    why = reason(r)
    if why:
        lines.append("  score 0: %s" % why)
    for v in _dicts(r.get("visible")):
        lines.append("  visible test %-28s %s" % (_text(v.get("name"), 200), "ok" if v.get("passed") is True
                                                  else "FAILED: %s" % _text(v.get("error"), 300)))
    logs = {}                                       # an NF log -> the first test that showed it
    for t in _dicts(r.get("tests")):
        name, points, passed = _text(t.get("name"), 200), _num(t.get("points")), t.get("passed") is True
        lines.append("  hidden test %-40s %s (%s)" % (name, "ok" if passed else "FAILED", _pts(points)))
        if t.get("error"):
            lines.append("      %s" % _text(t.get("error"), 600))
        if passed:
            continue
        log = _short_paths(_text(t.get("nf_log"), 2000).strip())
        shown = SHOWN_MISMATCHES
        if log and log in logs:             # said above: the NF's stats, its log and one packet will do
            lines.append("      the NF's log ends as in \"%s\" above" % logs[log])
            shown = 1
        else:
            if t.get("nf"):
                lines.append("      %s" % _text(t.get("nf"), 600))
            if log:
                logs[log] = name
                lines.append("      its log ends:")
                lines += ["        " + ln for ln in log.splitlines()[-LOG_LINES:]]
        mismatches = _dicts(t.get("mismatches"))
        for m in mismatches[:shown]:
            lines.append("      packet   %s" % _text(m.get("packet"), 300))
            lines.append("      expected %s; got %s (NF %s)" % (_text(m.get("expected"), 200), _text(m.get("got"), 200),
                                                              _text(m.get("handled_by"), 200)))
        if len(mismatches) > shown:
            more = len(mismatches) - shown
            lines.append("      ... and %d more packet%s" % (more, "" if more == 1 else "s"))
    if r.get("pcap"):
        lines.append("  the mismatched packets, as sent: %s" % (pcap_name or _text(r.get("pcap"), 500)))
    return "\n".join(lines)


# ---- files ----------------------------------------------------------------------------

def format_html(r):
    """The feedback as a small HTML page: a table of the tests, then the text."""
    score, max_score = _num(r.get("score")), _num(r.get("max_score"))
    e = html.escape
    name = os.path.basename(_text(r.get("notebook"), 500))
    rows = "".join("<tr><td>%s</td><td>%s</td><td>%g / %g</td></tr>" % (
        e(n), "ok" if ok else "<b>failed</b>", p if ok else 0, p) for n, p, ok in tests_of(r))
    why = reason(r)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s: %g / %g</title></head><body>\n"
            "<h1>%s: %g / %g</h1>\n%s<table border=\"1\" cellpadding=\"4\"><tr><th>hidden test</th><th>result</th>"
            "<th>points</th></tr>%s</table>\n<h2>Details</h2>\n<pre>%s</pre>\n</body></html>\n") % (
        e(name), score, max_score, e(name), score, max_score, "<p>score 0: %s</p>\n" % e(why) if why else "", rows,
        e(format_result(r, PCAP_NAME + " (in this folder)")))


def usable_folder(path, what):
    """Make path (a folder the grader writes to) or raise ValueError naming it."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ValueError("cannot write %s %s: %s" % (what, path, err.strerror or err)) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError("cannot write %s %s: permission denied" % (what, path))
    return path


def fresh_folder(path):
    """A submission's feedback folder, made, without the files of an earlier
    grading (a pcap of mismatches since fixed).  returns: path."""
    usable_folder(path, "the feedback folder")
    for name in (FEEDBACK_TXT, FEEDBACK_HTML, PCAP_NAME):
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
        except OSError as err:
            raise ValueError("cannot write the feedback folder %s: %s" % (path, err.strerror or err)) from None
    return path


def write(r, folder):
    """feedback.txt and feedback.html of a result in folder (the one that
    holds its mismatches.pcap).  returns: the text file's path."""
    usable_folder(folder, "the feedback folder")
    path = os.path.join(folder, FEEDBACK_TXT)
    with open(path, "w") as f:
        f.write(format_result(r, PCAP_NAME + " (in this folder)") + "\n")
    with open(os.path.join(folder, FEEDBACK_HTML), "w") as f:
        f.write(format_html(r))
    return path


def check_csv_path(path):
    """Raise ValueError unless the CSV can be written at path: found out
    before a class is graded, not after."""
    if os.path.isdir(path):
        raise ValueError("the CSV path %s is a folder" % path)
    existed = os.path.exists(path)
    try:
        open(path, "a").close()
    except OSError as err:
        raise ValueError("cannot write the CSV %s: %s" % (path, err.strerror or err)) from None
    if not existed:
        os.unlink(path)


def write_csv(path, names, results):
    """The class's CSV: notebook, score, max_score, reason (why a 0), then
    one column per hidden test (the points it earned; empty where the
    submission did not run that test), in the order the tests ran."""
    columns = []
    for r in results:
        for name, _, _ in tests_of(r):
            if name not in columns:
                columns.append(name)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["notebook", "score", "max_score", "reason"] + columns)
        for name, r in zip(names, results):
            earned = {n: (p if ok else 0) for n, p, ok in tests_of(r)}
            w.writerow([name, "%g" % _num(r.get("score")), "%g" % _num(r.get("max_score")), reason(r)] +
                       ["%g" % earned[c] if c in earned else "" for c in columns])


def check_timeout(seconds):
    """Raise ValueError unless seconds is a time limit a notebook can run in."""
    if not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
        raise ValueError("the time limit (--timeout) must be a number of seconds above 0, got %r" % (seconds,))


def check_tests_file(path):
    """Raise ValueError unless path is a hidden-test file (a lab's
    hidden_tests.py or a copy): it exists and defines NF and cases."""
    if path is None:
        return
    if not os.path.isfile(path):
        raise ValueError("no such hidden-test file: %s" % path)
    with open(path, errors="replace") as f:
        text = f.read(1 << 20)
    missing = [n for n in ("NF", "cases") if not re.search(r"^(def )?%s\b" % n, text, re.M)]
    if missing:
        raise ValueError("%s is not a hidden-test file: it defines no %s" % (path, " or ".join(missing)))
