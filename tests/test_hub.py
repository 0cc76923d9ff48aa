"""onvm hub: a real JupyterHub with its real proxy and DockerSpawner, one
onvm/lab container per student, driven through the hub's REST API with the
admin token (no mocks).  The students are made up per run (unique names);
the test removes their volumes at the end.  Needs root, the Docker engine,
the onvm/lab image (onvm images build --lab), the hub extra and Debian's
node-configurable-http-proxy."""
import asyncio
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]
pytest.importorskip("jupyterhub")
pytest.importorskip("dockerspawner")
docker = pytest.importorskip("docker")

from onvm.face import hub as hubmod  # noqa: E402
from onvm.face.hubspawner import LABEL_HUB  # noqa: E402

ONVM = [sys.executable, "-m", "onvm"]
RUN = "%04x" % secrets.randbelow(1 << 16)
ALICE, BOB, CAROL = "alice" + RUN, "bob" + RUN, "carol" + RUN   # DockerSpawner names containers jupyter-NAME
BUDGET = 384                      # the default: a lab check runs a 256 MB manager beside the grader's 64 MB


def _engine():
    try:
        c = docker.from_env(timeout=60)
        c.ping()
        return c
    except Exception:
        return None


if os.geteuid() != 0:
    pytest.skip("onvm hub runs as root (it mounts a hugetlbfs per student)", allow_module_level=True)
if _engine() is None:
    pytest.skip("no Docker engine", allow_module_level=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(url, token, method="GET", body=None, timeout=60):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "token " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, None


def dexec(container, cmd, timeout=300, detach=False):
    """cmd (a shell line) as the student in container.  returns: (rc, output)."""
    argv = ["docker", "exec"] + (["-d"] if detach else []) + [container, "bash", "-c", cmd]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


class RunningHub:
    """`onvm hub` started as the CLI, stopped with SIGTERM."""

    def __init__(self, users, tmp, budget=BUDGET):
        self.users = users
        self.port = free_port()
        self.token_file = os.path.join(tmp, "token")
        self.dir = os.path.join(hubmod.HUB_ROOT, str(self.port))
        self.out = open(os.path.join(tmp, "hub-%d.out" % self.port), "w+")
        self.p = subprocess.Popen(ONVM + ["hub", "--port", str(self.port), "--users", ",".join(users),
                                          "--api-token-file", self.token_file, "--hugepage-mb", str(budget)],
                                  stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while "JupyterHub is serving" not in self.output():
            assert self.p.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.5)
        with open(self.token_file) as f:
            self.token = f.read().strip()
        self.url = "http://127.0.0.1:%d" % self.port

    def output(self):
        self.out.flush()
        with open(self.out.name) as f:
            return f.read()

    def start_servers(self, users):
        """POST .../server for every user at once (those not running yet); wait until all are ready."""
        codes = {}
        users = [u for u in users if not (api("%s/hub/api/users/%s" % (self.url, u), self.token)[1] or {})
                 .get("servers", {}).get("", {}).get("ready")]

        def post(u):
            codes[u] = api("%s/hub/api/users/%s/server" % (self.url, u), self.token, "POST", {}, timeout=240)[0]
        threads = [threading.Thread(target=post, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(250)
        assert all(codes.get(u) in (201, 202) for u in users), codes
        deadline = time.monotonic() + 240
        while True:
            ready = {u: (api("%s/hub/api/users/%s" % (self.url, u), self.token)[1] or {})
                     .get("servers", {}).get("", {}).get("ready") for u in users}
            if all(ready.values()):
                return
            assert time.monotonic() < deadline, ready
            time.sleep(0.5)

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            self.p.wait(120)
        return self.p.returncode


def hub_containers(client, hub_dir):
    return client.api.containers(all=True, filters={"label": "%s=%s" % (LABEL_HUB, hub_dir)})


def hub_mounts(hub_dir):
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(hub_dir + "/")]


def remove_volumes(client, users):
    for u in users:
        try:
            client.api.remove_volume(hubmod.VOLUME.format(raw_username=u), force=True)
        except Exception:
            pass


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    client = _engine()
    users = [ALICE, BOB, CAROL]
    h = RunningHub(users, str(tmp_path_factory.mktemp("hub")))
    try:
        yield h
    finally:
        h.stop()
        for c in hub_containers(client, h.dir):
            client.api.remove_container(c["Id"], force=True)
        remove_volumes(client, users)


# ---- notebook 01 through the server's kernel API, behind the hub's proxy --------------

async def _run_notebook(base, token, nb_path, timeout=240):
    """Run each code cell of nb_path (in the server's home) in a new "onvm" kernel of the server at
    base (http://127.0.0.1:PORT/user/NAME), over the kernel websocket.
    returns: ([(cell index, error text) for cells that failed], what the cells printed)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect
    code, kernel = api(base + "/api/kernels", token, "POST", {"name": "onvm"})
    assert code == 201, code
    ws = await websocket_connect(HTTPRequest(base.replace("http", "ws", 1) + "/api/kernels/%s/channels" % kernel["id"],
                                             headers={"Authorization": "token " + token}))
    code, model = api(base + "/api/contents/" + nb_path, token)     # the student's own copy, in their volume
    assert code == 200, code
    nb = model["content"]
    session = secrets.token_hex(8)
    errors, printed = [], []
    try:
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code":
                continue
            msg_id = secrets.token_hex(8)
            ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": session,
                           "date": "", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": "".join(cell["source"]), "silent": False, "store_history": True,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
            while True:
                raw = await asyncio.wait_for(ws.read_message(), timeout)
                assert raw is not None, "the kernel websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    printed.append(msg["content"]["text"])
                if msg["msg_type"] == "error":
                    errors.append((i, "%s: %s" % (msg["content"]["ename"], msg["content"]["evalue"])))
                if msg["msg_type"] == "execute_reply":
                    break
    finally:
        ws.close()
        api(base + "/api/kernels/" + kernel["id"], token, "DELETE")
    return errors, "".join(printed)


# what notebook 01 prints that a student relies on (the machine check included)
FACTS_01 = ("ready: True", "injected: 100", "captured: 90", "rx: 100  next: 90  drop: 10", "running: False")


NOTEBOOK_01 = "notebooks/01-getting-started.ipynb"


@pytest.mark.timeout(900)
def test_three_students_at_once_run_notebook_01_and_check_a_lab(course):
    course.start_servers([ALICE, BOB, CAROL])
    client = _engine()
    names = sorted(c["Names"][0].lstrip("/") for c in hub_containers(client, course.dir))
    assert names == sorted("jupyter-" + u for u in (ALICE, BOB, CAROL))
    # Every server listens on 127.0.0.1 only, each on a port of its own.
    ports = {}
    for u in (ALICE, BOB, CAROL):
        env = dict(e.split("=", 1) for e in client.api.inspect_container("jupyter-" + u)["Config"]["Env"])
        url = env["JUPYTERHUB_SERVICE_URL"]
        assert url.startswith("http://127.0.0.1:"), url
        ports[u] = int(url.split(":")[2].split("/")[0])
    assert len(set(ports.values())) == 3

    results = {}

    def run(u):
        results[u] = asyncio.run(_run_notebook("%s/user/%s" % (course.url, u), course.token, NOTEBOOK_01))
    threads = [threading.Thread(target=run, args=(u,)) for u in (ALICE, BOB, CAROL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert {u: r[0] for u, r in results.items()} == {ALICE: [], BOB: [], CAROL: []}, results
    for u, (_, printed) in results.items():
        for fact in FACTS_01:
            assert fact in printed, (u, fact, printed)

    for u in (ALICE, BOB, CAROL):
        rc, out = dexec("jupyter-" + u, "cd ~ && onvm lab check labs/01-firewall/solution.ipynb", timeout=400)
        assert rc == 0 and "FAILED" not in out, out[-2000:]
        assert re.search(r"solution.ipynb: (\d+) / \1\n", out), out[-2000:]          # full score


# ---- isolation ---------------------------------------------------------------------------

def _wait_files(container, pattern, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc, out = dexec(container, "ls %s 2>/dev/null" % pattern)
        if rc == 0 and out.strip():
            return out.split()
        time.sleep(0.5)
    raise AssertionError("no %s in %s" % (pattern, container))


@pytest.mark.timeout(600)
def test_a_student_sees_nothing_of_another_and_cannot_pass_her_budget(course):
    course.start_servers([ALICE, BOB])
    a, b = "jupyter-" + ALICE, "jupyter-" + BOB
    mark = "bobsecret" + RUN
    # Bob: a notebook with a secret, and a running manager with its hugepage files and sockets.
    assert dexec(b, "echo %s > ~/notebooks/secret.txt" % mark)[0] == 0
    assert dexec(b, "onvm mgr --name bobmgr --quiet --hugepage-mb 128 >/tmp/mgr.log 2>&1", detach=True)[0] == 0
    bob_huge = _wait_files(b, "/dev/hugepages-onvm/1000/onvm-bobmgrmap_*")
    _wait_files(b, "/run/user/1000/dpdk/onvm-bobmgr/onvm.sock")
    assert dexec(b, "onvm stats --manager bobmgr")[0] == 0
    # Alice runs a manager of her own, so her hugepage and runtime dirs exist to look into.
    assert dexec(a, "onvm mgr --name alicemgr --quiet --hugepage-mb 64 >/tmp/mgr.log 2>&1", detach=True)[0] == 0
    _wait_files(a, "/run/user/1000/dpdk/onvm-alicemgr/onvm.sock")
    try:
        # Alice's view: none of bob's files, processes or sockets exist for her (the names are put
        # together in the shell, so this command's own line does not hold them).
        half = len(mark) // 2
        rc, out = dexec(a, "A=bob; B=mgr; M1=%s; M2=%s; ls -a /dev/hugepages-onvm/1000/ /run/user/1000/dpdk/; "
                           "grep -rl \"$M1$M2\" ~ /tmp /run/user/1000 2>/dev/null; "
                           "all=$(for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done); "
                           "case \"$all\" in *\"$A$B\"*|*\"$M1$M2\"*) echo FOUND;; esac; echo end"
                        % (mark[:half], mark[half:]))
        assert "onvm-alicemgr" in out and out.rstrip().endswith("end"), out
        assert "bobmgr" not in out and mark not in out, out
        for f in bob_huge + ["/run/user/1000/dpdk/onvm-bobmgr/onvm.sock", "/run/onvm-hub"]:
            rc, out = dexec(a, "test -e %s" % f)
            assert rc != 0, "%s is visible from alice's server" % f
        rc, out = dexec(a, "onvm stats --manager bobmgr")
        assert rc != 0 and "no manager named" in out, out
        # Writing where bob's hugepages are on the host: the path is not there, and her mount is hers alone.
        rc, out = dexec(a, "touch /dev/hugepages-onvm/1000/onvm-bobmgrmap_0 && "
                           "ls /dev/hugepages-onvm/1000/ && rm /dev/hugepages-onvm/1000/onvm-bobmgrmap_0")
        assert dexec(b, "ls " + bob_huge[0])[0] == 0        # bob's file untouched
        # Bob's server behind the shared loopback wants a token alice does not have; hers cannot reach bob.
        env = dict(e.split("=", 1) for e in _engine().api.inspect_container(b)["Config"]["Env"])
        bob_url = env["JUPYTERHUB_SERVICE_URL"].rstrip("/")
        probe = ("import os, urllib.request as u, urllib.error as e\n"
                 "def get(url, tok=None):\n"
                 "    r = u.Request(url, headers={'Authorization': 'token ' + tok} if tok else {})\n"
                 "    try:\n        return u.urlopen(r, timeout=10).status\n"
                 "    except e.HTTPError as x:\n        return x.code\n"
                 "tok = os.environ['JUPYTERHUB_API_TOKEN']\n"
                 "print(get(%r), get(%r, tok), get(os.environ['JUPYTERHUB_API_URL'] + '/users/%s', tok))\n"
                 % (bob_url + "/api/contents/notebooks/secret.txt", bob_url + "/api/contents/notebooks/secret.txt", BOB))
        rc, out = dexec(a, "python3 - <<'EOF'\n%sEOF" % probe)
        codes = out.split()
        assert rc == 0 and len(codes) == 3, out
        assert all(c in ("302", "403", "404") for c in codes), out   # never 200
        # Her budget: a manager asking for more gets a clear error; the mount itself refuses a page more.
        rc, out = dexec(a, "python3 -c 'import onvm; onvm.Manager(hugepage_mb=%d)'" % (BUDGET + 64))
        assert rc != 0 and "hugepage budget" in out and "%d MB" % BUDGET in out, out[-1500:]
        grab = ("import mmap, os\n"
                "os.makedirs('/dev/hugepages-onvm/1000', exist_ok=True)\n"
                "def take(mb):\n"
                "    fd = os.open('/dev/hugepages-onvm/1000/grab', os.O_CREAT | os.O_RDWR, 0o600)\n"
                "    try:\n"
                "        os.ftruncate(fd, mb << 20)\n"
                "        m = mmap.mmap(fd, mb << 20, mmap.MAP_SHARED)\n"
                "        m.close()\n        return 'ok'\n"
                "    except OSError as e:\n        return 'refused'\n"
                "    finally:\n        os.close(fd); os.unlink('/dev/hugepages-onvm/1000/grab')\n"
                "print(take(64), take(%d))\n" % (BUDGET + 64))
        rc, out = dexec(a, "python3 - <<'EOF'\n%sEOF" % grab)
        assert out.split() == ["ok", "refused"], out
        # Bob's manager kept running through all of it.
        rc, out = dexec(b, "onvm stats --manager bobmgr")
        assert rc == 0, out
    finally:
        for c in (a, b):
            dexec(c, "onvm cleanup --force >/dev/null")


# ---- the instructor collects and grades ---------------------------------------------------

@pytest.mark.timeout(900)
def test_collect_grades_every_students_lab_from_their_volume(course, tmp_path):
    course.start_servers([ALICE, BOB, CAROL])
    # Alice hands in the solution, carol leaves the student notebook, bob points his at a host file.
    assert dexec("jupyter-" + ALICE, "cp ~/labs/01-firewall/solution.ipynb ~/labs/01-firewall/01-firewall.ipynb")[0] == 0
    assert dexec("jupyter-" + BOB, "ln -sf /etc/shadow ~/labs/01-firewall/01-firewall.ipynb")[0] == 0
    out_dir = tmp_path / "graded"
    p = subprocess.run(ONVM + ["hub", "collect", "01", str(out_dir), "--users", ",".join([ALICE, BOB, CAROL])],
                       capture_output=True, text=True, timeout=800)
    assert p.returncode == 1, p.stdout + p.stderr              # bob had nothing to collect
    assert "%s: labs/01-firewall/01-firewall.ipynb is a symlink" % BOB in p.stderr, p.stderr
    assert not (out_dir / (BOB + ".ipynb")).exists()
    import csv
    with open(out_dir / "scores.csv") as f:
        rows = {os.path.basename(r["notebook"]).split(".")[0]: r for r in csv.DictReader(f)}
    assert set(rows) == {ALICE, CAROL}, rows
    assert float(rows[ALICE]["score"]) == float(rows[ALICE]["max_score"]) > 0
    assert float(rows[CAROL]["score"]) < float(rows[CAROL]["max_score"])


# ---- stopping, and cleaning up after a hub that died -----------------------------------

def _assert_gone(client, hub_dir):
    assert hub_containers(client, hub_dir) == []
    assert hub_mounts(hub_dir) == []
    assert not os.path.exists(hub_dir)


@pytest.mark.timeout(600)
@pytest.mark.serial     # a full onvm cleanup: it would take a hub another test is starting
def test_stop_and_cleanup_leave_no_container_mount_or_hugepage_file(tmp_path):
    client = _engine()
    user = "dana" + RUN
    try:
        h = RunningHub([user], str(tmp_path))
        h.start_servers([user])
        c = "jupyter-" + user
        assert dexec(c, "echo work > ~/notebooks/mine.txt")[0] == 0
        assert dexec(c, "onvm mgr --name m --quiet --hugepage-mb 64 >/dev/null 2>&1", detach=True)[0] == 0
        _wait_files(c, "/dev/hugepages-onvm/1000/onvm-mmap_*")
        assert hub_mounts(h.dir)
        assert h.stop() == 0
        _assert_gone(client, h.dir)
        vol = client.api.inspect_volume(hubmod.VOLUME.format(raw_username=user))        # her work stays
        with open(os.path.join(vol["Mountpoint"], "notebooks", "mine.txt")) as f:
            assert f.read() == "work\n"

        # A hub killed outright (onvm hub and JupyterHub): onvm cleanup removes its proxy, container, mounts.
        h = RunningHub([user], str(tmp_path))
        h.start_servers([user])
        _wait_files(c, "/home/student/notebooks/mine.txt")
        with open(os.path.join(h.dir, "jupyterhub.pid")) as f:
            jh = int(f.read())
        with open(os.path.join(h.dir, "proxy.pid")) as f:
            proxy = int(f.read())
        os.kill(h.p.pid, signal.SIGKILL)
        os.kill(jh, signal.SIGKILL)
        h.p.wait(10)
        time.sleep(1)
        assert hub_containers(client, h.dir) and hub_mounts(h.dir)
        p = subprocess.run(ONVM + ["cleanup"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        _assert_gone(client, h.dir)
        assert not os.path.exists("/proc/%d" % proxy) or b"configurable-http-proxy" not in \
            open("/proc/%d/cmdline" % proxy, "rb").read()
    finally:
        remove_volumes(client, [user])


# ---- bad input: one line, non-zero, nothing started --------------------------------------

def _bad(args, env=None):
    port = free_port()
    argv = ONVM + ["hub", "--port", str(port)] + args
    p = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onvm: "), p.stderr
    assert not os.path.exists(os.path.join(hubmod.HUB_ROOT, str(port)))
    assert hub_containers(_engine(), os.path.join(hubmod.HUB_ROOT, str(port))) == []
    return lines[0]


def test_bad_input_is_one_line_and_starts_nothing():
    u = "erin-" + RUN
    assert "not a valid system user name" in _bad(["--users", "Erin"])
    assert "not a valid system user name" in _bad(["--users", "erin;rm"])
    assert "given twice" in _bad(["--users", "%s,%s" % (u, u)])
    assert "hugepages free" in _bad(["--users", u, "--hugepage-mb", str(1 << 22)])
    assert "is not on this machine" in _bad(["--users", u, "--image", "onvm/lab:no-such-tag"])
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert "Docker engine" in _bad(["--users", u], env=env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run(ONVM + ["hub", "--port", str(port), "--users", u], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode != 0 and "port %d on 127.0.0.1 is in use" % port in p.stderr, p.stderr
        assert not os.path.exists(os.path.join(hubmod.HUB_ROOT, str(port)))


def test_print_config_is_what_runs_and_the_trial_authenticator_refuses_other_addresses(tmp_path):
    p = subprocess.run(ONVM + ["hub", "--print-config", "--users", "alice,bob"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    cfg = p.stdout
    compile(cfg, "jupyterhub_config.py", "exec")
    for where in ('"pam"', "LTI13Authenticator", "generic-oauth", "FOR LOCAL TRIALS AND TESTS ONLY",
                  'c.JupyterHub.bind_url = "http://127.0.0.1:8000"', "no-new-privileges"):
        assert where in cfg, where
    # The same config bound to every address: the trial authenticator stops JupyterHub before it listens.
    port = free_port()
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    os.chmod(token, 0o600)
    cfg = cfg.replace('"http://127.0.0.1:8000"', '"http://0.0.0.0:%d"' % port)
    cfg = cfg.replace("HUB_DIR = ", "HUB_DIR = %r  # " % str(tmp_path))
    cfg = cfg.replace(repr(os.path.join(hubmod.HUB_ROOT, "8000", "api_token")), repr(str(token)))
    (tmp_path / "jupyterhub_config.py").write_text(cfg)
    env = dict(os.environ, NODE_PATH=hubmod.NODE_PATH)
    r = subprocess.run([sys.executable, "-m", "jupyterhub", "-f", str(tmp_path / "jupyterhub_config.py")],
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0
    assert "TrialAuthenticator is for local trials only" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
    assert not os.path.exists(tmp_path / "proxy.pid")


# ---- Kubernetes on paper, checked by KubeSpawner and the Kubernetes models ----------------

def test_kubernetes_values_render_a_pod_kubernetes_accepts(tmp_path, monkeypatch):
    pytest.importorskip("kubespawner")
    # KubeSpawner loads a kube config when made; this one names no cluster anyone could reach, and
    # rendering a pod asks none.
    (tmp_path / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "offline",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "nobody"}}],
        "users": [{"name": "nobody", "user": {}}]}))
    import kubernetes_asyncio.config.kube_config as kc
    monkeypatch.setattr(kc, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    kubernetes = pytest.importorskip("kubernetes")
    import yaml
    from kubespawner import KubeSpawner
    p = subprocess.run(ONVM + ["hub", "--kubernetes-values", "--hugepage-mb", "256"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    values = yaml.safe_load(p.stdout)
    from onvm.containers import lab_image

    async def render(profile):
        spawner = KubeSpawner(config=hubmod.kubespawner_config(values), _mock=True)   # needs a running loop
        spawner.user_options = {"profile": profile}
        await spawner.load_user_options()
        return await spawner.get_pod_manifest()
    for profile, mb, mem in (("small", 256, 1 << 30), ("large", 768, 2 << 30)):
        pod = asyncio.run(render(profile))
        api = kubernetes.client.ApiClient()
        data = api.sanitize_for_serialization(pod)
        # KubeSpawner writes cpu 1.0 and memory 1073741824 as numbers; a Quantity's JSON form is a string
        # (the API server takes both), and this client's models take only that.
        for c in data["spec"]["containers"]:
            for kind in ("limits", "requests"):
                q = c.get("resources", {}).get(kind, {})
                q.update({k: str(v) for k, v in q.items() if isinstance(v, (int, float))})
        # Through the Kubernetes API's own models: what the API server would parse.
        pod = api.deserialize(json.dumps(data), "V1Pod", "application/json")
        assert isinstance(pod, kubernetes.client.V1Pod)
        (c,) = [c for c in pod.spec.containers if c.name == "notebook"]
        assert c.image == lab_image()
        res = c.resources
        assert res.limits["hugepages-2Mi"] == res.requests["hugepages-2Mi"] == "%dMi" % mb
        assert kubernetes.utils.parse_quantity(res.limits["memory"]) == mem
        sc = c.security_context
        assert not sc.privileged and sc.allow_privilege_escalation is False and sc.read_only_root_filesystem
        assert sc.run_as_non_root and sc.capabilities.drop == ["ALL"] and sc.capabilities.add == ["SYS_NICE"]
        vols = {v.name: v for v in pod.spec.volumes}
        assert vols["hugepages"].empty_dir.medium == "HugePages-2Mi"
        mounts = {m.mount_path: m.name for m in c.volume_mounts}
        assert mounts["/dev/hugepages-onvm"] == "hugepages" and mounts["/tmp"] == "tmp"
        assert vols[mounts["/home/student"]].persistent_volume_claim is not None
        assert pod.spec.security_context.fs_group == 990
