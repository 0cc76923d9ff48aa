#!/usr/bin/env python3
"""A course on JupyterHub: time from a student's login to a running
JupyterLab, with N students logging in at once, and the memory of an idle
student's server.

    sudo .venv/bin/python benchmarks/bench_hub.py [--students 10] [--budget-mb 384]

Starts `onvm hub` (onvm.face.hub.Hub) for N made-up students on a free
port; each student, in a thread of their own and all at once, opens the
hub's login page, posts their trial password (as a browser does: the
_xsrf field, cookies, redirects) and lands on /hub/spawn, then asks for
/user/NAME/lab through the proxy with the cookies the login gave until
JupyterLab answers 200.  The time of each is from the login POST to that
answer.  Then `docker stats` gives each idle server's memory.  Stops the
hub and removes the students' volumes.  Prints a table and writes
benchmarks/results/hub-<UTC timestamp>.json.  Goal (issue 24): at most
10 s per student with the image present."""
import argparse
import datetime
import http.cookiejar
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

QUICK = {"students": 2}


def login_to_lab(url, user, password, timeout=300):
    """Log in through the hub's form and wait for the server to answer.
    returns: seconds from the login POST to the first 200 of /user/NAME/lab."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url + "/hub/login", timeout=60) as r:
        page = r.read().decode()
    m = re.search(r'name="_xsrf" value="([^"]+)"', page)
    form = {"username": user, "password": password}
    if m:
        form["_xsrf"] = m.group(1)
    t0 = time.perf_counter()
    with opener.open(url + "/hub/login?next=%2Fhub%2Fspawn", data=urllib.parse.urlencode(form).encode(), timeout=timeout) as r:
        r.read()
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        try:
            # The lab page, as a browser asks: the server's OAuth round trip through the hub, then JupyterLab.
            with opener.open("%s/user/%s/lab" % (url, user), timeout=30) as r:
                if r.status == 200 and urllib.parse.urlparse(r.geturl()).path == "/user/%s/lab" % user:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("%s's server did not answer within %d s" % (user, timeout))


def idle_memory(users):
    """{user: MB} from docker stats."""
    names = ["jupyter-" + u for u in users]
    p = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"] + names,
                       capture_output=True, text=True, timeout=120)
    out = {}
    for line in p.stdout.splitlines():
        name, usage = line.split(" ", 1)
        v = usage.split("/")[0].strip()
        num, unit = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]+", "", v)
        out[name[len("jupyter-"):]] = num * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(unit, 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, default=10)
    ap.add_argument("--budget-mb", type=int, default=384)
    ap.add_argument("--output", help="JSON path (default benchmarks/results/hub-<UTC>.json)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 students; checks it runs, measures little")
    a = ap.parse_args()
    if a.quick:
        ap.set_defaults(**QUICK)
        a = ap.parse_args()
    from onvm.face import hub as hubmod
    tag = "%04x" % secrets.randbelow(1 << 16)
    users = ["bench%s%02d" % (tag, i) for i in range(a.students)]
    hub = hubmod.Hub(users, port=hubmod.free_port(), hugepage_mb=a.budget_mb)
    times, errors = {}, {}
    try:
        t_start = time.perf_counter()
        hub.start()
        hub_up = time.perf_counter() - t_start

        def one(u):
            try:
                times[u] = login_to_lab(hub.url, u, hub.passwords[u])
            except Exception as e:
                errors[u] = str(e)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        all_up = time.perf_counter() - t0
        time.sleep(5)                            # idle: nothing runs in the servers now
        mem = idle_memory([u for u in users if u in times])
    finally:
        hub.stop()
        for u in users:
            subprocess.run(["docker", "volume", "rm", "-f", hubmod.VOLUME.format(raw_username=u)],
                           capture_output=True)
    res = {"students": a.students, "budget_mb": a.budget_mb, "cores": os.cpu_count(), "hub_start_s": hub_up,
           "login_to_lab_s": times, "all_up_s": all_up, "idle_mem_mb": mem, "errors": errors}
    if times:
        res["login_to_lab_median_s"] = statistics.median(times.values())
        res["login_to_lab_max_s"] = max(times.values())
    print("onvm hub: %d student(s) logging in at once on %d cores (budget %d MB each)"
          % (a.students, os.cpu_count(), a.budget_mb))
    print("hub start:                     %.1f s" % hub_up)
    if times:
        print("login to running lab: median   %.1f s, max %.1f s (goal: <= 10 s)"
              % (res["login_to_lab_median_s"], res["login_to_lab_max_s"]))
    print("all %d up after:               %.1f s" % (len(times), all_up))
    if mem:
        print("idle server memory: median     %.0f MB (%.0f..%.0f)" % (statistics.median(mem.values()),
                                                                    min(mem.values()), max(mem.values())))
    for u, e in errors.items():
        print("FAILED %s: %s" % (u, e))
    out = a.output or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "hub-%s.json"
                                   % datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ"))
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print("written: %s" % out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
