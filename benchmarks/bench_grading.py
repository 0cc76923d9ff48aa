"""Grading speed: one `onvm lab check` of each lab's solution, then
`onvm lab grade DIR --jobs N` of N copies of a mix of solution, untouched
student and half-done notebooks (every submission in its own sandbox, with
its time and output limits, as an instructor grades).  Each is the CLI, as
run from a terminal; wall-clock times, with the machine's load average
beside them (this is a shared 2-core VM: read the load before the seconds).
Writes benchmarks/results/grading-<UTC timestamp>.json.

    .venv/bin/python benchmarks/bench_grading.py               # 4 checks, then 100 submissions, --jobs 4
    .venv/bin/python benchmarks/bench_grading.py --count 20 --jobs 2 --labs 01-firewall
    .venv/bin/python benchmarks/bench_grading.py --quick       # smoke: one check, a grade of 4
    .venv/bin/python benchmarks/bench_grading.py --count 0 --repeat 3 --labs 04-performance   # checks only

Each check also reports its phases, as the grader timed them (`onvm lab check --json`'s
"timings"): the worker's kernel start-up and notebook cells (the slowest three by
index), waiting for the grading manager, the hidden cases' NF start-up, sending and
stopping, and the clean-up."""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONVM = [sys.executable, "-m", "onvm"]
# a half-done answer per lab: the edit and the score it earns (as tests/test_lab_grading.py)
HALF = {"01-firewall": ("ihl = (data[14] & 0x0F) * 4", "ihl = 20"),
        "02-load-balancer": ("return zlib.crc32(key) % n", "return zlib.crc32(key[:8]) % n"),
        "04-performance": ("return l4 + (data[l4 + 12] >> 4) * 4", "return l4 + 20")}


def load():
    return os.getloadavg()[0]


def timed(cmd):
    l0, t0 = load(), time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
    return r, round(time.monotonic() - t0, 2), round(max(l0, load()), 2)


def check(lab):
    nb = os.path.join(ROOT, "labs", lab, "solution.ipynb")
    out = tempfile.mkdtemp(prefix="bench-fb-")
    try:
        r, secs, ld = timed(ONVM + ["lab", "check", nb, "--json", "--out", out])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    try:
        res = json.loads(r.stdout)
    except ValueError:
        res = {"score": None, "max_score": None, "reason": (r.stderr or r.stdout)[-300:]}
    return {"lab": lab, "seconds": secs, "load": ld, "score": res.get("score"), "max_score": res.get("max_score"),
            "phases": res.get("timings"), "reason": res.get("reason")}


def submissions(folder, count, labs):
    """count notebooks: solution, student and (where the lab has one) half-done, in turn, over labs."""
    kinds = []
    for lab in labs:
        kinds += [(lab, "solution"), (lab, "student")] + ([(lab, "half")] if lab in HALF else [])
    for i in range(count):
        lab, kind = kinds[i % len(kinds)]
        # the student notebook is named after its lab's folder
        text = open(os.path.join(ROOT, "labs", lab, (lab if kind == "student" else "solution") + ".ipynb")).read()
        if kind == "half":
            old, new = HALF[lab]
            text = text.replace(old, new)
        with open(os.path.join(folder, "%03d-%s-%s.ipynb" % (i, lab, kind)), "w") as f:
            f.write(text)


def grade(count, jobs, labs):
    folder = tempfile.mkdtemp(prefix="bench-subs-")
    try:
        submissions(folder, count, labs)
        csv_path = os.path.join(folder, "scores.csv")
        r, secs, ld = timed(ONVM + ["lab", "grade", folder, "--csv", csv_path, "--jobs", str(jobs)])
        rows = []
        if os.path.exists(csv_path):
            with open(csv_path) as f:
                rows = list(csv.DictReader(f))
        by_kind = {}
        for row in rows:
            kind = row["notebook"].rsplit("-", 1)[1][:-6]
            by_kind.setdefault(kind, []).append(float(row["score"]) / float(row["max_score"] or 1))
        return {"count": count, "jobs": jobs, "labs": labs, "seconds": secs, "load": ld, "graded": len(rows),
                "exit": r.returncode, "per_submission": round(secs / max(1, count), 2),
                "full_scores": {k: sum(1 for v in vs if v == 1.0) for k, vs in by_kind.items()},
                "of": {k: len(vs) for k, vs in by_kind.items()},
                "errors": [row["notebook"] + ": " + row["reason"] for row in rows
                           if row["reason"] and "student" not in row["notebook"]][:10]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=100, help="submissions in the grade run (0: checks only)")
    ap.add_argument("--repeat", type=int, default=1, help="checks of each lab's solution")
    ap.add_argument("--jobs", type=int, default=2 * len(os.sched_getaffinity(0)))
    ap.add_argument("--labs", default="01-firewall,02-load-balancer,03-syn-flood,04-performance")
    ap.add_argument("--quick", action="store_true", help="smoke: one check of lab 01, a grade of 4 of it")
    ap.add_argument("--output")
    a = ap.parse_args()
    labs = a.labs.split(",")
    if a.quick:
        labs, a.count = ["01-firewall"], 4
    results = {"machine": {"cpus": os.cpu_count(), "load_before": load()}, "checks": [], "grade": None}
    for _ in range(a.repeat):
        for lab in labs:
            c = check(lab)
            results["checks"].append(c)
            print("check %-18s %6.1f s  (load %.1f)  score %s/%s  phases %s%s" % (
                lab, c["seconds"], c["load"], c["score"], c["max_score"], json.dumps(c["phases"]),
                "  " + c["reason"] if c["reason"] else ""), flush=True)
    g = None
    if a.count:
        g = results["grade"] = grade(a.count, a.jobs, labs)
        print("grade %d submissions --jobs %d: %.0f s (%.1f s each, load %.1f); full scores %s of %s%s" % (
            g["count"], g["jobs"], g["seconds"], g["per_submission"], g["load"], g["full_scores"], g["of"],
            "; errors: %s" % g["errors"] if g["errors"] else ""), flush=True)
    out = a.output or os.path.join(ROOT, "benchmarks", "results",
                                   "grading-%s.json" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print("wrote %s" % out)
    if g is None:
        return 0 if all(c["score"] == c["max_score"] for c in results["checks"]) else 1
    return 0 if g["exit"] == 0 and g["graded"] == g["count"] else 1


if __name__ == "__main__":
    sys.exit(main())
