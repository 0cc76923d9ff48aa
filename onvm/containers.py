"""NFs in Docker containers, and the images they run.

A container NF is the same `python -m onvm.nflib.run` as a process NF, run in
the image onvm/nf through the local Docker engine (the Docker SDK for
Python).  It joins the host's manager as a DPDK secondary: zero copy through
the same hugepages.  What it can reach (docs/design.md, "NFs in
containers"): the manager's nf.sock (register/ready/leave only), the DPDK
files a secondary maps (config, fbarrays) and the manager's own hugepage
files; the control file and its stats file come as fds over nf.sock.  No
network, no capabilities, a read-only root, the manager owner's uid, the
default seccomp profile, no-new-privileges, pid/memory/CPU limits.

    mgr.launch(mark, container=True)                        # onvm/nf + the pickled function
    mgr.launch(onvm.image("vendor/ids:1.2"), service=3)     # an image built FROM onvm/nf
"""
import glob
import hashlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from . import __version__
from .common import paths
from .common.errors import OnvmError
from .common.logsink import LogSink

NF_REPO = "onvm/nf"
LAB_REPO = "onvm/lab"
LOCAL_BASE = "onvm/base:bookworm"
LABEL_MANAGER = "org.onvm.manager"   # the manager a container NF belongs to
LABEL_UID = "org.onvm.uid"           # whose manager
LABEL_NF = "org.onvm.nf"             # the NF's name
LABEL_RUNTIME = "org.onvm.runtime"   # an image with onvm's NF runtime (onvm/nf and images FROM it)
LABEL_SOURCE = "org.onvm.source"     # which onvm source it carries (source_id())
LABEL_TARGET = "org.onvm.nf-target"  # an NF image's code: MODULE:FUNCTION, or a native NF's name
DOOR = "/onvm/nf.sock"               # where a container sees the manager's nf.sock
ENGINE_HINT = ("start one as root with: dockerd --bridge=none --iptables=false >/var/log/onvm-dockerd.log 2>&1 & "
               "(bash scripts/setup.sh does this)")
# What a container NF may use, by default; launch(container={...}) changes them.
DEFAULT_LIMITS = {"memory": "512m", "cpus": None, "pids": 64}
# Added back after dropping every capability: none.  A DPDK secondary that
# maps the primary's files and hugepages, with --no-pci, needs no privilege
# beyond owning those files (the container runs as their owner's uid).
CAPS = ["SYS_NICE"]
IMAGE_PYTHON = "3.11.2"              # Debian bookworm's, in the images
LAB_PACKAGES = ["jupyterlab", "ipywidgets", "nbval", "jupyterhub"]   # what onvm/lab adds (docker/lab/Dockerfile)


# The code an NF runs: an image must carry the same, or its NFs would speak
# another protocol or see another shared layout.
RUNTIME_FILES = ("core/*.c", "core/*.h", "_build.py", "_headers.py", "__init__.py", "common/*.py", "nflib/*.py",
                 "flows.py", "sdn/*.py", "core/include/onvm/*.h")


def source_id():
    """A digest of the code an NF runs (RUNTIME_FILES)."""
    here = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for pattern in RUNTIME_FILES:
        for f in sorted(glob.glob(os.path.join(here, pattern))):
            h.update(os.path.relpath(f, here).encode() + b"\0")
            with open(f, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()[:12]


def nf_image():
    """The tag of the NF runtime image for this onvm: onvm/nf:VERSION-SOURCE."""
    return "%s:%s-%s" % (NF_REPO, __version__, source_id())


def lab_image():
    return "%s:%s-%s" % (LAB_REPO, __version__, source_id())


# ---- the engine ---------------------------------------------------------------------

def engine():
    """A Docker SDK client for the local engine.  raises: OnvmError naming
    the fix if the SDK or the engine is missing."""
    try:
        import docker
    except ImportError:
        raise OnvmError("container NFs need the Docker SDK for Python, which is not installed: "
                        "pip install 'onvm[containers]'") from None
    try:
        c = docker.from_env(timeout=60)
        c.ping()
    except docker.errors.DockerException as e:
        problem = access_problem()
        if problem:
            raise OnvmError("%s; %s" % problem) from None
        raise OnvmError("no Docker engine answers (%s); %s" % (_short(e), ENGINE_HINT)) from None
    return c


def engine_socket():
    """The path of the engine's Unix socket (DOCKER_HOST, else the default),
    or None when DOCKER_HOST names something else (tcp://, ssh://)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host[len("unix://"):] if host.startswith("unix://") else None


def access_problem():
    """When the engine's socket is there but this user may not use it (the
    daemon runs; starting another would not help): (what is wrong, the fix).
    returns: None if the socket is missing or usable."""
    import grp
    import pwd
    sock = engine_socket()
    if not sock or not os.path.exists(sock) or os.access(sock, os.R_OK | os.W_OK):
        return None
    user = pwd.getpwuid(os.geteuid()).pw_name
    try:
        group = grp.getgrgid(os.stat(sock).st_gid)
    except (KeyError, OSError):
        group = None
    rootless = "use rootless Docker (dockerd-rootless-setuptool.sh install)"
    if group is not None and user in group.gr_mem:
        return ("you (%s) are in group %s but this login session is not" % (user, group.gr_name),
                "log in again (or run newgrp %s)" % group.gr_name)
    if group is None or group.gr_gid == 0:
        return "you (%s) may not use the Docker engine (%s)" % (user, sock), rootless
    return ("you (%s) may not use the Docker engine (%s is for group %s)" % (user, sock, group.gr_name),
            "ask an admin for sudo usermod -aG %s %s and log in again (the group is as powerful as root), or %s"
            % (group.gr_name, user, rootless))


def _short(e):
    return str(e).split("\n")[0][:200]


def image_labels(client, ref):
    """The labels of image ref, checked: it exists and carries this onvm's
    NF runtime.  raises: OnvmError (missing: how to build it) or ValueError
    (not an onvm image)."""
    import docker
    try:
        labels = client.images.get(ref).labels or {}
    except docker.errors.ImageNotFound:
        if ref == nf_image():
            raise OnvmError("the NF image %s is missing; build it with: onvm images build" % ref) from None
        raise OnvmError("image %s is not on this machine; build it (FROM %s, see docker/README.md) "
                        "or pull it" % (ref, nf_image())) from None
    if labels.get(LABEL_RUNTIME) != "1":
        raise ValueError("image %s has no onvm NF runtime (label %s); build it FROM %s (see docker/README.md)"
                         % (ref, LABEL_RUNTIME, nf_image()))
    if labels.get(LABEL_SOURCE) != source_id():
        raise OnvmError("image %s carries another onvm (source %s; this one is %s): run onvm images build, "
                        "then rebuild it FROM %s" % (ref, labels.get(LABEL_SOURCE), source_id(), nf_image()))
    return labels


# ---- an NF image ----------------------------------------------------------------------

class ImageNF:
    """An NF that lives in an image built FROM onvm/nf.  Made by onvm.image()."""

    def __init__(self, ref, service=None, nf=None, batch=False, name=None):
        if not isinstance(ref, str) or not ref or any(c.isspace() for c in ref):
            raise ValueError("an image reference is a string like 'vendor/ids:1.2', got %r" % (ref,))
        if nf is not None and not (isinstance(nf, str) and (":" in nf or nf in _native_names() or nf[:1] == "/")):
            raise ValueError("nf must be MODULE:FUNCTION, a native NF (%s) or a C NF's path in the image, got %r"
                             % (", ".join(_native_names()), nf))
        self.ref = ref
        self.service = service
        self.target = nf
        self.batch = bool(batch)
        self.name = name or ref.rsplit("/", 1)[-1].split(":")[0].split("@")[0]

    def __repr__(self):
        return "<ImageNF %s%s>" % (self.ref, " nf=%s" % self.target if self.target else "")


def _native_names():
    from .common.spec import NativeNF
    return NativeNF.NAMES


def image(ref, service=None, nf=None, batch=False, name=None):
    """An NF packaged as an image built FROM onvm/nf, for Manager.launch().

    param ref: the image, e.g. "vendor/ids:1.2"
    param nf: what to run in it: MODULE:FUNCTION (on the image's
        PYTHONPATH, /nf) or a native NF's name; default: the image's label
        org.onvm.nf-target
    param batch: the function takes a list of packets
    returns: an ImageNF"""
    return ImageNF(ref, service, nf, batch, name)


def check_limits(limits):
    """container=True or {"memory": "512m", "cpus": 0.5, "pids": 64} ->
    the full limits dict.  raises: ValueError naming the bad key."""
    out = dict(DEFAULT_LIMITS)
    if limits is True:
        return out
    if not isinstance(limits, dict):
        raise ValueError("container must be True or a dict of limits (memory, cpus, pids), got %r" % (limits,))
    for k, v in limits.items():
        if k not in out:
            raise ValueError("container limit %r is unknown; limits are memory, cpus, pids" % (k,))
        if k == "memory" and not (v is None or (isinstance(v, str) and v[:-1].isdigit() and v[-1] in "kmg")
                                  or (isinstance(v, int) and not isinstance(v, bool) and v >= 6 << 20)):
            raise ValueError("container memory must be bytes (at least 6 MB) or like '512m', got %r" % (v,))
        if k == "cpus" and not (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)):
            raise ValueError("container cpus must be a positive number, got %r" % (v,))
        if k == "pids" and not (v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 8)):
            raise ValueError("container pids must be an int >= 8 (DPDK starts a few threads), got %r" % (v,))
        out[k] = v
    return out


def pickle_nf(spec):
    """The pickled NFSpec for a container NF's stdin.  A function from a
    notebook cell travels by value (cloudpickle does that for __main__); so
    does one from a .py file of the user's, which the image does not have.
    Modules it uses (import numpy) travel by name: the image must have them."""
    import sysconfig

    import cloudpickle
    mod = sys.modules.get(getattr(spec.fn, "__module__", None) or "")
    path = os.path.abspath(getattr(mod, "__file__", None) or "")
    installed = [os.path.abspath(sysconfig.get_paths()[k]) for k in ("stdlib", "purelib", "platlib")]
    here = os.path.dirname(os.path.abspath(__file__))
    by_value = mod is not None and mod.__name__ != "__main__" and os.path.isfile(path) and \
        not any(path.startswith(d + os.sep) for d in installed + [here])
    if by_value:
        cloudpickle.register_pickle_by_value(mod)
    try:
        return cloudpickle.dumps(spec)
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(mod)


# ---- what a container NF sees ---------------------------------------------------------

def dpdk_files(manager):
    """Host paths a DPDK secondary of manager maps, each mounted at the same
    path in the container: the shared config and memory-map arrays (DPDK
    opens them read-write), the hugepage info, and the manager's hugepage
    files (never another manager's).  A manager without hugepages has none
    of these to share: its region reaches the NF over the NF door."""
    huge = sorted(paths.hugepage_files(manager))
    if not huge:
        return []
    rd = paths.run_dir(manager)
    files = [os.path.join(rd, f) for f in ("config", "hugepage_info", "fbarray_memzone")]
    files += sorted(glob.glob(os.path.join(glob.escape(rd), "fbarray_memseg-*")))
    return files + huge


def mounts(manager):
    from docker.types import Mount
    m = [Mount(f, f, type="bind") for f in dpdk_files(manager)]
    m.append(Mount(DOOR, paths.nf_sock_path(manager), type="bind", read_only=True))
    return m


def container_config(manager, nf_name, ref, command, limits, stdin, ticket=None):
    """Arguments for the Docker SDK's create_container and host config.
    ticket: the launch's one registration on nf.sock (onvm.mgr.nfdoor)."""
    env = {"ONVM_IMAGE": ref, "ONVM_DPDK_LOG": os.environ.get("ONVM_DPDK_LOG", "error")}
    if ticket is not None:
        from .nflib.door import TICKET_ENV
        env[TICKET_ENV] = ticket
    x = paths.xdg_runtime_dir()
    if x is not None:
        env["XDG_RUNTIME_DIR"] = x   # DPDK finds the runtime dir (mounted at the same path) through it
    host = dict(
        mounts=mounts(manager),
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        cap_add=list(CAPS),
        security_opt=["no-new-privileges"],
        privileged=False,
        # The runtime dir is the container's own (DPDK writes a secondary's
        # local memory maps and socket there); the manager's files in it
        # are mounted one by one.
        tmpfs={"/tmp": "rw,noexec,nosuid,size=16m",
               paths.run_dir(manager): "rw,noexec,nosuid,size=4m,mode=0700,uid=%d,gid=%d" % (os.geteuid(), os.getegid())},
        pids_limit=limits["pids"],
        mem_limit=limits["memory"],
        nano_cpus=int(limits["cpus"] * 1e9) if limits["cpus"] else None,
        auto_remove=True,                  # its own exit removes it
        ipc_mode="private",
    )
    labels = {LABEL_MANAGER: manager, LABEL_UID: str(os.geteuid()), LABEL_NF: nf_name}
    return dict(image=ref, command=command, user="%d:%d" % (os.geteuid(), os.getegid()), environment=env,
                labels=labels, stdin_open=stdin, tty=False, network_disabled=True,
                name="onvm-%s-%s-%s" % (manager, nf_name.replace(".", "-"), os.urandom(3).hex())), host


class ContainerProcess:
    """A container NF, looked at like a subprocess.Popen (pid, poll, wait,
    send_signal, kill), so Manager and NF treat it as they treat a process.
    Its output goes to log_path as it comes."""

    def __init__(self, client, manager, nf_name, ref, command, limits, log_path, stdin_data=None, ticket=None):
        self.client = client
        self.api = client.api
        self.returncode = None
        self.pid = None
        self._pidfd = None
        self.log_sink = LogSink()
        config, host = container_config(manager, nf_name, ref, command, limits, stdin_data is not None, ticket)
        config["host_config"] = self.api.create_host_config(**host)
        self.id = self.api.create_container(**config)["Id"]
        self.name = config["name"]
        try:
            # Attached before start, so no output is lost and stdin reaches it.
            self._sock = self.api.attach_socket(self.id, params={"stdin": int(stdin_data is not None), "stdout": 1,
                                                                 "stderr": 1, "stream": 1})
            self._log = threading.Thread(target=self._copy_output, args=(log_path,), daemon=True)
            self.api.start(self.id)
            self.pid = self.api.inspect_container(self.id)["State"]["Pid"]
            try:
                self._pidfd = os.pidfd_open(self.pid) if self.pid else None
            except OSError:
                self._pidfd = None           # already gone: poll() says so
            self._log.start()
            if stdin_data is not None:
                raw = getattr(self._sock, "_sock", self._sock)
                try:
                    raw.sendall(stdin_data)
                    raw.shutdown(socket.SHUT_WR)   # its stdin ends here (the SDK sets StdinOnce)
                except OSError:
                    pass                            # it died first; its log says why
        except Exception:
            self._remove()
            raise

    def _copy_output(self, log_path):
        """Docker's stream framing (8-byte header: stream, size) -> the log.
        Keeps reading when the log cannot be written (a full disk): the
        container would block on its output otherwise; lines dropped are
        counted in self.log_sink.dropped."""
        raw = getattr(self._sock, "_sock", self._sock)
        with self.log_sink.stream(paths.open_log_fd(log_path), closefd=True) as log:
            buf = b""
            while True:
                try:
                    chunk = raw.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 8:
                    n = struct.unpack(">I", buf[4:8])[0]
                    if len(buf) < 8 + n:
                        break
                    log.write(buf[8:8 + n].decode(errors="replace"))
                    buf = buf[8 + n:]
                log.flush()
        try:
            self.returncode = self.api.wait(self.id, timeout=10)["StatusCode"]
        except Exception:
            pass                    # removed already (auto_remove): the code is gone with it
        raw.close()

    def poll(self):
        """None while the NF's process lives, else its exit status (-9 if
        the engine no longer knows it)."""
        if self.returncode is not None:
            return self.returncode
        if self._pidfd is not None and not select.select([self._pidfd], [], [], 0)[0]:
            return None
        self._log.join(5)             # the rest of its output, and its status
        if self.returncode is None:
            self.returncode = -signal.SIGKILL
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.name, timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            try:
                self.api.kill(self.id, int(sig))
            except Exception:
                pass                    # it exited meanwhile

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def _remove(self):
        try:
            self.api.remove_container(self.id, force=True)
        except Exception:
            pass


def spawn(manager, spec, service, nf_name, limits, log_path, code=None, staged=False, ticket=None):
    """Start one container NF for manager (see Manager.launch).
    returns: a ContainerProcess.  raises: OnvmError/ValueError naming the
    fix; nothing is left behind."""
    from .nflib.run import nf_argv
    client = engine()
    ref = spec.ref if isinstance(spec, ImageNF) else nf_image()
    labels = image_labels(client, ref)
    target = None
    if isinstance(spec, ImageNF):
        target = spec.target or labels.get(LABEL_TARGET)
        if not target:
            raise ValueError("image %s names no NF (label %s); pass onvm.image(%r, nf='MODULE:FUNCTION')"
                             % (spec.ref, LABEL_TARGET, spec.ref))
    command = nf_argv(manager, spec, service, nf_name, staged, DOOR, target, getattr(spec, "batch", False))
    return ContainerProcess(client, manager, nf_name, ref, command, limits, log_path, code, ticket)


class Labelled:
    """A container as the engine listed it: id, name, labels, remove()."""

    def __init__(self, client, info):
        self.client, self.id = client, info["Id"]
        self.name = (info.get("Names") or ["/" + self.id[:12]])[0].lstrip("/")
        self.labels = info.get("Labels") or {}

    def remove(self, force=False):
        self.client.api.remove_container(self.id, force=force)


def labelled(client, manager=None, uid=None):
    """Containers of onvm NFs (of manager, of uid), running or not.  The
    engine's plain list: the SDK's high-level one fetches each container
    again, and one that removed itself meanwhile (auto_remove) fails it."""
    filters = ["%s=%s" % (LABEL_MANAGER, manager) if manager else LABEL_MANAGER]
    if uid is not None:
        filters.append("%s=%d" % (LABEL_UID, uid))
    return [Labelled(client, info) for info in client.api.containers(all=True, filters={"label": filters})]


def remove_containers(manager=None, uid=None, keep=lambda manager: False, log=None):
    """Remove (killing first) the NF containers of manager (or of every
    manager of uid) except those whose manager keep() names.
    returns: how many.  No engine: 0."""
    try:
        client = engine()
    except OnvmError:
        return 0
    n = 0
    for c in labelled(client, manager, uid):
        mgr = c.labels.get(LABEL_MANAGER)
        if keep(mgr):
            continue
        try:
            c.remove(force=True)
        except Exception:
            continue                 # it removed itself meanwhile (auto_remove)
        n += 1
        if log:
            log("removed container %s (an NF of manager %s)" % (c.name, mgr))
    return n


# ---- images ---------------------------------------------------------------------------

def source_tree():
    """The onvm source tree (docker/ next to the onvm package), which
    `onvm images build` needs.  raises: OnvmError if this onvm is installed
    without it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(root, "docker", "nf", "Dockerfile")):
        raise OnvmError("building a missing image (%s) needs the onvm source tree (docker/ next to onvm/); this "
                        "onvm is installed from %s, which has none: run onvm images build in a checkout of onvm %s, "
                        "or copy the image from a machine that has it (docker save | docker load)"
                        % (nf_image(), root, __version__))
    return root


def build_images(base=None, lab=False, force=False, log=print):
    """Build what is missing: the local base (with debootstrap, when base is
    the local one), onvm/nf for this onvm, and with lab=True onvm/lab.
    returns: the tags built (none when all are present: an onvm installed
    without its source tree uses the images it finds).
    raises: OnvmError naming what is missing (the engine, or the source
    tree when something must be built)."""
    import shutil
    import tempfile
    client = engine()
    base = base or LOCAL_BASE
    built = []
    wanted = [(nf_image(), "nf")] + ([(lab_image(), "lab")] if lab else [])
    todo = [(t, d) for t, d in wanted if force or not _have(client, t)]
    if not todo:
        return built
    root = source_tree()
    if base == LOCAL_BASE and not _have(client, base):
        log("building the local base image %s (debootstrap)" % base)
        _run(["bash", os.path.join(root, "docker", "base", "build-base.sh"), base])
        built.append(base)
    with tempfile.TemporaryDirectory(prefix="onvm-images-") as ctx:
        # onvm and its dependencies as wheels, made here: the image runs the
        # very onvm of this machine and needs no package index.
        log("building wheels of onvm and its dependencies")
        wheels = os.path.join(ctx, "wheels")
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, root])
        # For the image's Python, which may be older than ours.
        _run([sys.executable, "-m", "pip", "download", "-q", "-d", wheels, "--only-binary=:all:",
              "--python-version", IMAGE_PYTHON, "--implementation", "cp"] + _requirements(root)
             + (LAB_PACKAGES if any(k == "lab" for _, k in todo) else []))
        for tag, kind in todo:
            shutil.copy(os.path.join(root, "docker", kind, "Dockerfile"), os.path.join(ctx, "Dockerfile"))
            if kind == "lab":
                for d in ("notebooks", "labs"):
                    src = os.path.join(root, d)
                    dst = os.path.join(ctx, d)
                    shutil.rmtree(dst, ignore_errors=True)
                    if os.path.isdir(src):
                        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
                    else:
                        os.mkdir(dst)
            log("building %s" % tag)
            # --network host: only for apt while building; NF containers get none.
            _run(["docker", "build", "-q", "--force-rm", "--network", "host", "--build-arg", "BASE=%s" % base,
                  "--build-arg", "NF_IMAGE=%s" % nf_image(), "--build-arg", "ONVM_SOURCE=%s" % source_id(),
                  "-t", tag, "-t", tag.split(":")[0] + ":latest", ctx])
            built.append(tag)
    return built


def _requirements(root):
    import tomllib
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


def _have(client, tag):
    import docker
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        tail = "\n".join(p.stdout.strip().splitlines()[-20:])
        raise OnvmError("%s failed (exit %d):\n%s" % (" ".join(cmd[:3]), p.returncode, tail))


def image_status():
    """[(tag, present)] for the images this onvm uses: for onvm doctor."""
    client = engine()
    return [(t, _have(client, t)) for t in (nf_image(), lab_image())]
