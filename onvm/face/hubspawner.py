"""What `onvm hub` plugs into JupyterHub: runs in the JupyterHub process
(root, on the host), loaded by name from the jupyterhub_config.py that
onvm.face.hub writes.

OnvmSpawner: DockerSpawner for the onvm/lab image, each student's server in
a container jupyter-NAME sharing the host's network namespace (the engine
here has no bridge) and bound to 127.0.0.1 on a port of its own; a
hugetlbfs mounted for that student alone with size= as their hugepage
budget; least privilege.  TrialAuthenticator: for local trials and tests
only (per-student random passwords from a 0600 file), and it refuses to
run on anything but 127.0.0.1."""
import json
import os
import subprocess

from dockerspawner import DockerSpawner
from jupyterhub.auth import Authenticator
from jupyterhub.utils import random_port
from traitlets import Int, Unicode

LABEL_HUB = "org.onvm.hub"            # which hub a container belongs to (its state dir)
LABEL_USER = "org.onvm.hub-user"
HUGE_IN = "/dev/hugepages-onvm"       # where onvm, as a non-root member of group onvm, puts hugepage files
STUDENT_UID, ONVM_GID = 1000, 990     # the image's student and group onvm (docker/lab/Dockerfile)


def mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


def mount_budget(path, mb):
    """A hugetlbfs of mb megabytes at path, for the student alone (uid
    1000, group onvm of the image, 0770): the kernel refuses a hugepage
    past size=, whatever the machine has free."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if not mounted(path):
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M,size=%dM,uid=%d,gid=%d,mode=0770"
                        % (mb, STUDENT_UID, ONVM_GID), "nodev", path], check=True, capture_output=True)


def unmount_budget(path):
    """Unmount a student's hugetlbfs (its files go with it) and remove the
    mount point.  returns: True if nothing is left there."""
    if mounted(path):
        if subprocess.run(["umount", path], capture_output=True).returncode:
            subprocess.run(["umount", "-l", path], capture_output=True)   # still mapped: detach now, freed at exit
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


class OnvmSpawner(DockerSpawner):
    """A student's JupyterLab in the onvm/lab image (see the module doc)."""

    hub_dir = Unicode(config=True, help="the hub's state dir (its containers carry it as a label)")
    hugepage_mb = Int(384, config=True, help="each student's hugepage budget, MB")

    def huge_path(self):
        return os.path.join(self.hub_dir, "huge", self.user.name)

    async def start(self):
        # One network namespace for every server: each gets a port of its
        # own on 127.0.0.1 (JUPYTERHUB_SERVICE_URL tells the server where to bind).
        self.ip = "127.0.0.1"
        self.port = random_port()
        mount_budget(self.huge_path(), self.hugepage_mb)
        self.volumes = dict(self.volumes, **{self.huge_path(): {"bind": HUGE_IN, "mode": "rw"}})
        self.extra_create_kwargs = dict(self.extra_create_kwargs, labels={
            LABEL_HUB: self.hub_dir, LABEL_USER: self.user.name})
        try:
            return await super().start()
        except BaseException:
            await self._stop_quietly()
            raise

    async def _stop_quietly(self):
        try:
            await super().stop(now=True)
        except Exception:
            pass
        unmount_budget(self.huge_path())

    async def get_ip_and_port(self):
        return self.ip, self.port

    async def stop(self, now=False):
        try:
            await super().stop(now=now)
        finally:
            unmount_budget(self.huge_path())


class TrialAuthenticator(Authenticator):
    """FOR LOCAL TRIALS AND TESTS ONLY, never for a course: each student's
    password is a random string in a 0600 file only root reads.  Refuses to
    start unless the hub and its proxy listen on 127.0.0.1 only.  A course
    uses PAM, LTI or OAuth instead (see `onvm hub --print-config`)."""

    password_file = Unicode(config=True, help="JSON {user: password}, mode 0600")

    def __init__(self, **kw):
        super().__init__(**kw)
        app = self.parent
        for what, url in (("the proxy (JupyterHub.bind_url)", getattr(app, "bind_url", "")),
                          ("the hub (JupyterHub.hub_bind_url)", getattr(app, "hub_bind_url", ""))):
            from urllib.parse import urlparse
            host = urlparse(url).hostname if url else None
            if host != "127.0.0.1":
                raise ValueError("TrialAuthenticator is for local trials only and %s listens on %r, not "
                                 "127.0.0.1: bind to 127.0.0.1 or configure PAM/LTI/OAuth" % (what, host))

    async def authenticate(self, handler, data):
        import hmac
        with open(self.password_file) as f:
            passwords = json.load(f)
        want = passwords.get(data.get("username", ""))
        if want and hmac.compare_digest(want.encode(), data.get("password", "").encode()):
            return data["username"]
        return None
