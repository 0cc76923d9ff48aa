"""`onvm hub`: a course on JupyterHub, run by the instructor (root) on the
host.  One onvm/lab container per student (OnvmSpawner, in
onvm.face.hubspawner, which runs inside JupyterHub), each with a persistent
volume for the notebooks and labs and a hugepage budget of its own.

    onvm hub --port 8000 --users alice,bob,carol     # until Ctrl-C / SIGTERM
    onvm hub --print-config                          # the jupyterhub_config.py it runs
    onvm hub --kubernetes-values                     # zero-to-jupyterhub values, same image and limits
    onvm hub collect 01-firewall DIR                 # every student's lab notebook, graded into DIR/scores.csv

A hub's state (database, cookie secret, passwords, the students' hugetlbfs
mount points) lives in HUB_ROOT/PORT, removed when it stops; `onvm cleanup`
removes what a hub that died left (containers, mounts, its proxy).  The
students' volumes (jupyterhub-user-NAME) are kept."""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from ..common import paths
from ..common.errors import OnvmError, require
from ..common.runtime import _meminfo, stop_process

HUB_ROOT = "/run/onvm-hub"
# DockerSpawner's usual name for a student's volume, with the name as given (USER_RE keeps it one Docker takes;
# DockerSpawner's {username} would escape "-" as "-2d")
VOLUME = "jupyterhub-user-{raw_username}"
HOME_IN = "/home/student"                      # the image's student home (docker/lab/Dockerfile)
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")   # useradd's default NAME_REGEX, which Docker names accept too
# A student's hugepage budget: `onvm lab check` runs the notebook's manager (256 MB) beside the grader's
# (64 MB), so 384 MB; a course whose notebooks use smaller managers may pass less.
BUDGET_MB = 384
# What DPDK needs beyond nothing: SYS_NICE for its NUMA calls under Docker's seccomp profile (as the NF containers)
CAPS = ["SYS_NICE"]
PRINT_USERS = "student1,student2"              # --print-config without --users: names to replace
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
CHP = "configurable-http-proxy"
NODE_PATH = "/usr/share/nodejs"                 # Debian's proxy finds its modules there (a newer node does not look)


# ---- input --------------------------------------------------------------------------

def check_users(text):
    """"alice,bob" -> ["alice", "bob"].  raises: ValueError naming a bad name."""
    users = [u.strip() for u in (text or "").split(",") if u.strip()]
    if not users:
        raise ValueError("--users needs at least one student name, e.g. --users alice,bob")
    for u in users:
        if not USER_RE.match(u):
            raise ValueError("student name %r is not a valid system user name (lower-case letters, digits, _ "
                             "and -, starting with a letter or _, at most 32)" % u)
    dup = sorted({u for u in users if users.count(u) > 1})
    if dup:
        raise ValueError("student name(s) given twice: %s" % ", ".join(dup))
    return users


def check_memory(text):
    if not re.fullmatch(r"[1-9][0-9]*[MG]", text or ""):
        raise ValueError("--memory must be like 1G or 768M, got %r" % (text,))
    return text


def free_hugepages_mb():
    info = _meminfo()
    free = info.get("HugePages_Free", 0) - info.get("HugePages_Rsvd", 0)
    return max(0, free) * info.get("Hugepagesize", 2048) // 1024


def check_budget(mb, users, machine=True):
    if isinstance(mb, bool) or not isinstance(mb, int) or mb < 64 or mb % 2:
        raise ValueError("--hugepage-mb must be an even number of MB, at least 64, got %r" % (mb,))
    if not machine:
        return mb
    free = free_hugepages_mb()
    if mb * len(users) > free:
        raise ValueError("%d student(s) x %d MB of hugepages = %d MB, but this machine has %d MB of hugepages "
                         "free: pass a smaller --hugepage-mb, fewer students, or reserve more "
                         "(echo N > /proc/sys/vm/nr_hugepages)" % (len(users), mb, mb * len(users), free))
    return mb


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port(avoid=()):
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p not in avoid:
            return p
    raise OnvmError("no free TCP port on 127.0.0.1")


def default_image():
    """This onvm's lab image, else onvm/lab:latest (a hub's containers run
    the onvm in their image, so another version still works)."""
    from ..containers import LAB_REPO, _have, engine, lab_image
    client = engine()
    for tag in (lab_image(), LAB_REPO + ":latest"):
        if _have(client, tag):
            return tag
    raise OnvmError("the course image %s is missing; build it with: onvm images build --lab" % lab_image())


def check_image(image):
    """image exists and runs jupyterhub-singleuser.  returns: its ID, which
    the hub then runs (a tag may be moved to another build meanwhile).
    raises: OnvmError."""
    from ..containers import _have, engine
    client = engine()
    if not _have(client, image):
        raise OnvmError("image %s is not on this machine; build it with: onvm images build --lab" % image)
    image_id = client.images.get(image).id
    r = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image_id, "-c",
                        "command -v jupyterhub-singleuser"], capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise OnvmError("image %s has no jupyterhub-singleuser (an onvm/lab built before onvm hub existed): "
                        "rebuild it with: onvm images build --lab --force" % image)
    return image_id


def check_machine():
    """What onvm hub needs of the machine.  raises: OnvmError in one line."""
    if os.geteuid() != 0:
        raise OnvmError("onvm hub needs root: it drives Docker and mounts a hugetlbfs per student (sudo onvm hub ...)")
    require("jupyterhub", "hub", "onvm hub")
    require("dockerspawner", "hub", "onvm hub")
    if shutil.which(CHP) is None:
        raise OnvmError("JupyterHub's proxy (%s) is missing: apt-get install -y node-configurable-http-proxy" % CHP)


# ---- the config -----------------------------------------------------------------------

def render_config(hub_dir, port, users, image, hugepage_mb, memory, cpus, pids, token_file, hub_port, api_port,
                  image_id=None):
    """The jupyterhub_config.py `onvm hub` runs.  returns: its text."""
    from .. import __version__
    host_config = dict(
        read_only=True, cap_drop=["ALL"], cap_add=CAPS, security_opt=["no-new-privileges"], pids_limit=pids,
        ipc_mode="private",
        tmpfs={"/tmp": "rw,nosuid,nodev,size=256m",
               "/run/user/1000": "rw,nosuid,nodev,noexec,size=16m,mode=0700,uid=1000,gid=1000"})
    return '''\
# jupyterhub_config.py written by `onvm hub` (onvm {version}): JupyterHub and its proxy on 127.0.0.1:{port},
# one {image} container per student.  Run as root (it drives Docker and mounts a hugetlbfs per
# student): jupyterhub -f jupyterhub_config.py
import json
import os

c = get_config()  # noqa: F821 (JupyterHub defines it)

HUB_DIR = {hub_dir!r}          # state: database, cookie secret, passwords, hugetlbfs mount points
USERS = {users!r}

# ---- network: nothing listens beyond 127.0.0.1 ----
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"                 # the proxy: what students open (TLS in front for a course)
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"         # the hub itself, which servers call back
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"   # the proxy's API (hub only)
c.ConfigurableHTTPProxy.command = ["{chp}"]
os.environ.setdefault("NODE_PATH", "{node_path}")   # Debian's proxy finds its node modules there
c.ConfigurableHTTPProxy.pid_file = HUB_DIR + "/proxy.pid"
c.JupyterHub.pid_file = HUB_DIR + "/jupyterhub.pid"
c.JupyterHub.db_url = "sqlite:///" + HUB_DIR + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = HUB_DIR + "/cookie_secret"
c.JupyterHub.cleanup_servers = True                  # stopping the hub stops every student's server (volumes stay)

# ---- who logs in ----
# TrialAuthenticator: FOR LOCAL TRIALS AND TESTS ONLY.  Random passwords in a 0600 file; it refuses to run
# unless the hub and proxy listen on 127.0.0.1.  A course replaces these two lines with its own:
#   PAM (the server's own accounts):   c.JupyterHub.authenticator_class = "pam"
#   LTI 1.3 (Canvas, Moodle, ...):     pip install jupyterhub-ltiauthenticator, then
#       c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.auth.LTI13Authenticator"
#       c.LTI13Authenticator.issuer / client_id / authorize_url / jwks_endpoint = your LMS's values
#   OAuth / OpenID Connect (GitHub, Google, a university's SSO): pip install oauthenticator, then
#       c.JupyterHub.authenticator_class = "generic-oauth"   # or "github", "google"
#       c.GenericOAuthenticator.client_id / client_secret / oauth_callback_url / authorize_url / token_url = ...
c.JupyterHub.authenticator_class = "onvm.face.hubspawner.TrialAuthenticator"
c.TrialAuthenticator.password_file = HUB_DIR + "/passwords.json"
c.Authenticator.allowed_users = set(USERS)

# ---- an admin token for a course's tools and tests (REST API: POST /hub/api/users/NAME/server) ----
with open({token_file!r}) as f:      # 0600; never in a command line or environment
    ADMIN_TOKEN = f.read().strip()
c.JupyterHub.services = [{{"name": "onvm-admin", "api_token": ADMIN_TOKEN}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["onvm-admin"]}}]

# ---- each student's server: DockerSpawner in the onvm/lab image, container jupyter-NAME ----
c.JupyterHub.spawner_class = "onvm.face.hubspawner.OnvmSpawner"
c.OnvmSpawner.hub_dir = HUB_DIR
c.OnvmSpawner.hugepage_mb = {hugepage_mb}     # each student's own hugetlbfs, size={hugepage_mb}M, at /dev/hugepages-onvm
c.DockerSpawner.image = {run_image!r}{image_note}
c.DockerSpawner.pull_policy = "{pull}"          # the image is built here (onvm images build --lab)
c.DockerSpawner.remove = True                  # a stopped server's container goes; the student's volume stays
# The host's network namespace: this Docker engine has no bridge, so there is no container network to
# join.  Each server binds 127.0.0.1 on a port of its own (OnvmSpawner picks it); see docs/course.md.
c.DockerSpawner.network_name = "host"
c.DockerSpawner.use_internal_ip = True         # publish no port: the server binds it itself
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
# bash -i, not a login shell (its profile would reset PATH); JupyterLab fetches no news or updates from outside
c.DockerSpawner.args = ["--ServerApp.terminado_settings", "shell_command=['/bin/bash', '-i']",
                        "--MappingKernelManager.default_kernel_name=onvm", "--LabApp.news_url=None",
                        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
c.DockerSpawner.notebook_dir = {home!r}
c.DockerSpawner.default_url = "/lab/tree/notebooks/00-index.ipynb"
c.DockerSpawner.volumes = {{{volume!r}: {home!r}}}   # notebooks, labs, settings: kept across servers
c.DockerSpawner.environment = {{"XDG_RUNTIME_DIR": "/run/user/1000"}}   # DPDK's runtime files: a private tmpfs
c.DockerSpawner.mem_limit = {memory!r}
c.DockerSpawner.cpu_limit = {cpus!r}
# Least privilege: read-only image, no capability but what DPDK needs, no new privileges, pid limit.
c.DockerSpawner.extra_host_config = {host_config!r}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
'''.format(version=__version__, port=port, image=image, hub_dir=hub_dir, users=users, hub_port=hub_port,
           api_port=api_port, chp=CHP, node_path=NODE_PATH, token_file=token_file, hugepage_mb=hugepage_mb,
           home=HOME_IN, volume=VOLUME, memory=memory, cpus=float(cpus), host_config=host_config,
           run_image=image_id or image, image_note="   # " + image + ", by ID: a rebuild moving the tag changes "
           "nothing here" if image_id else "", pull="skip" if image_id else "never")


def _secret_file(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def admin_token(path):
    """The admin token in path: read if the file exists (it must be ours
    and 0600), else made and written there.  returns: the token."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        token = secrets.token_hex(32)
        _secret_file(path, token + "\n")
        return token
    if not os.path.isfile(path) or os.path.islink(path) or st.st_mode & 0o077 or st.st_uid != os.geteuid():
        raise ValueError("--api-token-file %s must be a regular file of yours that only you can read (chmod 600)"
                         % path)
    with open(path) as f:
        token = f.read().strip()
    if len(token) < 16:
        raise ValueError("--api-token-file %s holds no token (at least 16 characters)" % path)
    return token


# ---- running it ------------------------------------------------------------------------

class Hub:
    """JupyterHub with its proxy on 127.0.0.1:port for users.  start()
    checks everything first and starts nothing on bad input; stop() stops
    every student's server and leaves no container, mount or hugepage file
    (their volumes stay)."""

    def __init__(self, users, port=8000, hugepage_mb=BUDGET_MB, image=None, memory="1G", cpus=1.0, pids=512,
                 api_token_file=None):
        self.users = check_users(users) if isinstance(users, str) else check_users(",".join(users))
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError("--port must be 1..65535, got %r" % (port,))
        self.port = port
        self.hugepage_mb = hugepage_mb
        self.memory = check_memory(memory)
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus <= os.cpu_count():
            raise ValueError("--cpus must be more than 0 and at most this machine's %d, got %r" % (os.cpu_count(), cpus))
        self.cpus = cpus
        self.pids = pids
        self.image = image
        self.image_id = None
        self.dir = os.path.join(HUB_ROOT, str(port))
        self.token_file = os.path.abspath(api_token_file) if api_token_file else os.path.join(self.dir, "api_token")
        self.process = None
        self.log_path = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def config(self):
        return render_config(self.dir, self.port, self.users, self.image, self.hugepage_mb, self.memory, self.cpus,
                             self.pids, self.token_file, self.hub_port, self.api_port, self.image_id)

    def check(self):
        """Everything, before anything starts.  raises: ValueError/OnvmError."""
        check_machine()
        check_budget(self.hugepage_mb, self.users)
        if not port_free(self.port):
            raise OnvmError("port %d on 127.0.0.1 is in use; pass another --port" % self.port)
        if os.path.exists(self.dir):
            if hub_alive(self.dir):
                raise OnvmError("a hub already runs from %s; stop it first" % self.dir)
            cleanup_hub(self.dir)
        if self.image is None:
            self.image = default_image()
        self.image_id = check_image(self.image)
        if os.path.exists(self.token_file):
            admin_token(self.token_file)

    def start(self):
        self.check()
        self.hub_port = free_port({self.port})
        self.api_port = free_port({self.port, self.hub_port})
        os.makedirs(HUB_ROOT, mode=0o755, exist_ok=True)
        os.mkdir(self.dir, 0o700)
        try:
            self.token = admin_token(self.token_file)
            self.passwords = {u: secrets.token_urlsafe(12) for u in self.users}
            _secret_file(os.path.join(self.dir, "passwords.json"), json.dumps(self.passwords, indent=1) + "\n")
            with open(os.path.join(self.dir, "jupyterhub_config.py"), "w") as f:
                f.write(self.config())
            self.log_path = os.path.join(paths.logs_root(create=True), "hub-%d.log" % self.port)
            env = dict(os.environ)
            env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
            with paths.open_log(self.log_path) as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "jupyterhub", "-f", os.path.join(self.dir, "jupyterhub_config.py")],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir, env=env,
                    start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT
            while not self.ready():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise OnvmError("JupyterHub did not start; its log (%s):\n%s" % (self.log_path, _tail(self.log_path)))
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self):
        try:
            with urllib.request.urlopen(self.url + "/hub/api/", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        """Stop JupyterHub (it stops every server, then its proxy), then
        remove whatever is left of this hub."""
        if self.process is not None:
            stop_process(self.process, STOP_TIMEOUT)
            self.process = None
        if os.path.isdir(self.dir):
            cleanup_hub(self.dir)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def hub_alive(hub_dir):
    pid = _pid(os.path.join(hub_dir, "jupyterhub.pid"))
    return bool(pid) and "jupyterhub" in _cmdline(pid)


def cleanup_hub(hub_dir, log=None):
    """Remove what the hub of hub_dir left: its proxy (if JupyterHub died
    without stopping it), its containers, its students' hugetlbfs mounts
    (and their hugepage files), then hub_dir.  Student volumes stay.
    returns: how many things were removed."""
    from .hubspawner import LABEL_HUB, unmount_budget
    n = 0
    proxy = _pid(os.path.join(hub_dir, "proxy.pid"))
    if proxy and CHP in _cmdline(proxy):
        os.kill(proxy, signal.SIGTERM)
        for _ in range(50):
            if CHP not in _cmdline(proxy):
                break
            time.sleep(0.1)
        else:
            os.kill(proxy, signal.SIGKILL)
        n += 1
        if log:
            log("stopped the proxy (pid %d) of the hub in %s" % (proxy, hub_dir))
    try:
        from ..containers import engine
        client = engine()
    except Exception:
        client = None
    if client is not None:
        for info in client.api.containers(all=True, filters={"label": "%s=%s" % (LABEL_HUB, hub_dir)}):
            try:
                client.api.remove_container(info["Id"], force=True)
            except Exception:
                continue                 # removed itself meanwhile (auto_remove)
            n += 1
            if log:
                log("removed container %s (a student's server of the hub in %s)" % (info["Names"][0].lstrip("/"), hub_dir))
    huge = os.path.join(hub_dir, "huge")
    for name in sorted(os.listdir(huge)) if os.path.isdir(huge) else []:
        unmount_budget(os.path.join(huge, name))
        n += 1
        if log:
            log("unmounted %s's hugepage budget of the hub in %s" % (name, hub_dir))
    shutil.rmtree(hub_dir, ignore_errors=True)
    return n


def cleanup(log=None):
    """`onvm cleanup` (as root): what hubs that are no longer running left.
    returns: how many things were removed."""
    if os.geteuid() != 0 or not os.path.isdir(HUB_ROOT):
        return 0
    n = 0
    for d in sorted(os.listdir(HUB_ROOT)):
        path = os.path.join(HUB_ROOT, d)
        if os.path.isdir(path) and not hub_alive(path):
            n += cleanup_hub(path, log)
    return n


def run_hub(users, port=8000, hugepage_mb=BUDGET_MB, api_token_file=None, image=None, memory="1G", cpus=1.0):
    """`onvm hub`: start it, print where, run until SIGINT/SIGTERM."""
    stop = []

    def on_signal(signum, frame):
        stop.append(signum)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    hub = Hub(users, port, hugepage_mb, image, memory, cpus, api_token_file=api_token_file)
    try:
        hub.start()
        print("onvm hub: JupyterHub is serving %d student(s) at %s/hub/login (image %s)"
              % (len(hub.users), hub.url, hub.image))
        print("  trial passwords (TrialAuthenticator: local trials only): %s" % os.path.join(hub.dir, "passwords.json"))
        print("  admin API token: %s" % hub.token_file)
        print("  log: %s; Ctrl-C stops every student's server (their volumes %s stay)"
              % (hub.log_path, VOLUME.format(raw_username="NAME")), flush=True)
        while not stop and hub.process.poll() is None:
            time.sleep(0.2)
        if not stop:
            print("onvm hub: JupyterHub exited (status %s); see %s" % (hub.process.returncode, hub.log_path),
                  file=sys.stderr)
            return 1
        print("onvm hub: stopping", flush=True)
        return 0
    finally:
        hub.stop()
        for s, h in old.items():
            signal.signal(s, h)


def print_config(users, port=8000, hugepage_mb=BUDGET_MB, api_token_file=None, image=None, memory="1G", cpus=1.0):
    """`onvm hub --print-config`: the config `onvm hub` would run, with the same
    checks on the arguments (none on the machine: it may be printed anywhere)."""
    from ..containers import lab_image
    hub = Hub(users or PRINT_USERS, port, hugepage_mb, image or lab_image(), memory, cpus, api_token_file=api_token_file)
    check_budget(hub.hugepage_mb, [], machine=False)
    hub.hub_port, hub.api_port = port + 1, port + 2      # `onvm hub` itself takes free ones
    sys.stdout.write(hub.config())
    return 0


# ---- the instructor: collect and grade -------------------------------------------------

def _lab_dir(lab):
    """"01" or "01-firewall" -> "01-firewall".  raises: ValueError."""
    from .lab import data_path
    labs = sorted(d for d in os.listdir(data_path("labs")) if os.path.isdir(os.path.join(data_path("labs"), d)))
    hits = [d for d in labs if d == lab or d.split("-", 1)[0] == lab]
    if len(hits) != 1:
        raise ValueError("unknown lab %r; the labs are %s" % (lab, ", ".join(labs)))
    return hits[0]


def _read_inside(root, rel, limit=32 << 20):
    """The bytes of root/rel, following no symlink on the way (a student
    owns everything under root and could point a link at a host file we,
    root, may read).  returns: bytes, or a string saying why not."""
    import errno
    import stat
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        parts = rel.split("/")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nfd = os.open(part, (os.O_RDONLY | os.O_NONBLOCK if last else os.O_RDONLY | os.O_DIRECTORY)
                              | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                return "no %s" % rel
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    return "%s is a symlink or not a folder: refused" % "/".join(parts[:i + 1])
                return "%s: %s" % (rel, e.strerror)
            os.close(fd)
            fd = nfd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "%s is not a regular file: refused" % rel
        if st.st_size > limit:
            return "%s is larger than %d MB: refused" % (rel, limit >> 20)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def student_volumes(client):
    """{student name: the host path of their volume} for every volume named
    like VOLUME on this engine."""
    prefix = VOLUME.split("{")[0]
    out = {}
    for v in client.api.volumes().get("Volumes") or []:
        name = v["Name"]
        if name.startswith(prefix) and USER_RE.match(name[len(prefix):]):
            out[name[len(prefix):]] = v["Mountpoint"]
    return out


def collect(lab, folder, csv_path=None, timeout=300, users=None, log=print):
    """`onvm hub collect LAB DIR`: every student's labs/LAB/LAB.ipynb (or
    student.ipynb, the name labs had before) from their volume to DIR/NAME.ipynb, then `onvm lab grade DIR` into
    DIR/scores.csv (or csv_path); users: only these students (default:
    every volume).  returns: 0, or 1 if a student had no
    notebook to collect (said on stderr)."""
    if os.geteuid() != 0:
        raise OnvmError("onvm hub collect needs root: it reads the students' Docker volumes")
    from ..containers import engine
    lab = _lab_dir(lab)
    client = engine()
    vols = student_volumes(client)
    if users:
        wanted = check_users(users)
        unknown = [u for u in wanted if u not in vols]
        if unknown:
            raise ValueError("no volume for student(s) %s (%s)" % (", ".join(unknown), VOLUME.format(raw_username="NAME")))
        vols = {u: vols[u] for u in wanted}
    if not vols:
        raise OnvmError("no student volumes (%s) on this machine: has anyone started a server with onvm hub?"
                        % VOLUME.format(raw_username="NAME"))
    os.makedirs(folder, exist_ok=True)
    missing = []
    for name, mountpoint in sorted(vols.items()):
        got = _read_inside(mountpoint, "labs/%s/%s.ipynb" % (lab, lab))
        if isinstance(got, str) and got.startswith("no "):
            old = _read_inside(mountpoint, "labs/%s/student.ipynb" % lab)
            if not (isinstance(old, str) and old.startswith("no ")):
                got = old
        if isinstance(got, str):
            missing.append(name)
            print("onvm hub collect: %s: %s" % (name, got), file=sys.stderr)
            continue
        dst = os.path.join(folder, name + ".ipynb")
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(got)
    log("onvm hub collect: %d notebook(s) of lab %s in %s" % (len(vols) - len(missing), lab, folder))
    from . import grading
    grading.cli_grade(folder, csv_path or os.path.join(folder, "scores.csv"), timeout=timeout)
    return 1 if missing else 0


# ---- Kubernetes: zero-to-jupyterhub values --------------------------------------------

# profile slug -> (display name, hugepage MB, memory, CPUs)
PROFILES = {"small": ("Small lab: one manager, a few NFs", BUDGET_MB, "1G", 1.0),
            "large": ("Large lab: several managers or replicas", 768, "2G", 2.0)}


def kubernetes_values(hugepage_mb=BUDGET_MB, image=None, memory="1G", cpus=1.0):
    """zero-to-jupyterhub (Helm chart jupyterhub/jupyterhub) values for the
    onvm/lab image with the same limits and security settings as
    DockerSpawner's here.  returns: a dict (yaml.safe_dump it)."""
    from ..containers import lab_image
    image = image or lab_image()
    repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    check_budget(hugepage_mb, [], machine=False)
    check_memory(memory)

    def resources(mb, mem, cpu):
        huge = {"hugepages-2Mi": "%dMi" % mb}      # Kubernetes needs request == limit for hugepages
        return {"mem_limit": mem, "mem_guarantee": mem, "cpu_limit": cpu, "cpu_guarantee": cpu / 2,
                "extra_resource_limits": dict(huge), "extra_resource_guarantees": dict(huge)}
    profiles = []
    for slug, (name, mb, mem, cpu) in PROFILES.items():
        if slug == "small":
            mb, mem, cpu = hugepage_mb, memory, cpus
        profiles.append({"display_name": name, "slug": slug, "default": slug == "small",
                         "description": "%d MB hugepages, %s memory, %g CPU" % (mb, mem, cpu),
                         "kubespawner_override": resources(mb, mem, cpu)})
    small = resources(hugepage_mb, memory, cpus)
    security = {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "privileged": False,
                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"], "add": list(CAPS)}}
    return {
        "hub": {"config": {
            # A course sets its authenticator here (PAM does not apply on Kubernetes): e.g.
            # JupyterHub: {authenticator_class: generic-oauth}, GenericOAuthenticator: {...}, or LTI13Authenticator
            "KubeSpawner": {"container_security_context": security},
        }},
        "proxy": {"service": {"type": "ClusterIP"}},   # expose it through the course's ingress with TLS
        "singleuser": {
            "image": {"name": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
            "cmd": "jupyterhub-singleuser",
            "defaultUrl": "/lab/tree/notebooks/00-index.ipynb",
            "uid": 1000,
            "fsGid": 990,                        # group onvm of the image: the hugepage emptyDir is theirs
            "allowPrivilegeEscalation": False,
            "memory": {"limit": small["mem_limit"], "guarantee": small["mem_guarantee"]},
            "cpu": {"limit": small["cpu_limit"], "guarantee": small["cpu_guarantee"]},
            "extraResource": {"limits": small["extra_resource_limits"],
                              "guarantees": small["extra_resource_guarantees"]},
            "storage": {
                "type": "dynamic", "capacity": "1Gi", "homeMountPath": HOME_IN,
                "extraVolumes": [
                    {"name": "hugepages", "emptyDir": {"medium": "HugePages-2Mi"}},
                    {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
                ],
                "extraVolumeMounts": [
                    {"name": "hugepages", "mountPath": "/dev/hugepages-onvm"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            },
            "profileList": profiles,
        },
    }


def kubespawner_config(values):
    """The KubeSpawner settings the chart's hub makes from values (the
    subset kubernetes_values() writes, mapped as the chart's
    jupyterhub_config.py does): for checking the values offline.
    returns: a traitlets Config."""
    from traitlets.config import Config
    su = values["singleuser"]
    c = Config()
    k = c.KubeSpawner
    k.image = "%s:%s" % (su["image"]["name"], su["image"]["tag"])
    k.image_pull_policy = su["image"]["pullPolicy"]
    k.cmd = [su["cmd"]]
    k.default_url = su["defaultUrl"]
    k.uid = su["uid"]
    k.fs_gid = su["fsGid"]
    k.allow_privilege_escalation = su["allowPrivilegeEscalation"]
    k.mem_limit, k.mem_guarantee = su["memory"]["limit"], su["memory"]["guarantee"]
    k.cpu_limit, k.cpu_guarantee = su["cpu"]["limit"], su["cpu"]["guarantee"]
    k.extra_resource_limits = su["extraResource"]["limits"]
    k.extra_resource_guarantees = su["extraResource"]["guarantees"]
    k.profile_list = su["profileList"]
    st = su["storage"]
    k.storage_pvc_ensure = True
    k.storage_capacity = st["capacity"]
    vol = "volume-{user_server}"
    volumes = {vol: {"name": vol, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}}
    mounts = {vol: {"mountPath": st["homeMountPath"], "name": vol}}
    volumes.update({v["name"]: v for v in st["extraVolumes"]})
    mounts.update({"%d-%s" % (i, m["name"]): m for i, m in enumerate(st["extraVolumeMounts"])})
    k.volumes, k.volume_mounts = volumes, mounts
    for trait, value in values["hub"]["config"]["KubeSpawner"].items():
        k[trait] = value
    return c


def print_kubernetes_values(hugepage_mb=BUDGET_MB, image=None, memory="1G", cpus=1.0):
    import yaml
    sys.stdout.write("# zero-to-jupyterhub values written by `onvm hub --kubernetes-values`: helm upgrade --install "
                     "course jupyterhub/jupyterhub -f values.yaml\n# (nodes need hugepages reserved: docs/course.md)\n")
    sys.stdout.write(yaml.safe_dump(kubernetes_values(hugepage_mb, image, memory, cpus), sort_keys=False))
    return 0
