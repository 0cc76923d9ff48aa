"""The "OpenNetVM (Python 3)" Jupyter kernel: ipykernel, started with what
the data plane needs, and `onvm kernel install`.

kernels/onvm/kernel.json is the template; install() writes it with this
Python's path, so the kernel imports the onvm that installed it.  At start
(`python -m onvm.face.kernel -f CONNECTION_FILE`) the kernel puts this Python's
bin dir first on PATH (`!onvm stats` in a cell finds the same onvm), sets
XDG_RUNTIME_DIR as every onvm process does, and, for a user added to group
onvm since they logged in, re-executes itself under `sg onvm` so managers
it starts may use the group's hugepages."""
import grp
import json
import os
import pwd
import shlex
import shutil
import sys
import tempfile

from ..common import paths
from ..common.errors import require

KERNEL_NAME = "onvm"


def spec_dir():
    """The kernelspec template shipped with onvm."""
    from ..common.paths import data_path
    return os.path.join(data_path("kernels"), KERNEL_NAME)


def install(where="sys-prefix"):
    """Install the kernelspec for this Python.

    param where: "user" (~/.local/share/jupyter), "sys-prefix" (this
        environment's share/jupyter) or "system"
    returns: the directory it was installed in"""
    if where not in ("user", "sys-prefix", "system"):
        raise ValueError("install the kernel for the user, the sys-prefix or the system, not %r" % (where,))
    KernelSpecManager = require("jupyter_client.kernelspec", "lab", "onvm kernel install").KernelSpecManager
    with open(os.path.join(spec_dir(), "kernel.json")) as f:
        spec = json.load(f)
    spec["argv"][0] = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, KERNEL_NAME)
        os.mkdir(d)
        for name in os.listdir(spec_dir()):
            if name != "kernel.json":
                shutil.copy(os.path.join(spec_dir(), name), d)
        with open(os.path.join(d, "kernel.json"), "w") as f:
            json.dump(spec, f, indent=1)
        return KernelSpecManager().install_kernel_spec(
            d, KERNEL_NAME, user=where == "user", prefix=sys.prefix if where == "sys-prefix" else None)


def installed():
    """The kernel.json Jupyter would use for the onvm kernel, or None."""
    ks = require("jupyter_client.kernelspec", "lab", "the onvm Jupyter kernel")
    KernelSpecManager, NoSuchKernel = ks.KernelSpecManager, ks.NoSuchKernel
    try:
        d = KernelSpecManager().get_kernel_spec(KERNEL_NAME).resource_dir
    except NoSuchKernel:
        return None
    return os.path.join(d, "kernel.json")


def _needs_group():
    """True if we are a member of group onvm (in /etc/group) but this process
    lacks it: the user was added after logging in."""
    if os.geteuid() == 0 or paths.in_onvm_group():
        return False
    try:
        g = grp.getgrnam(paths.ONVM_GROUP)
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return False
    return user in g.gr_mem and shutil.which("sg") is not None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    env = paths.dpdk_env()
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "ipykernel_launcher"] + argv
    if _needs_group():
        cmd = ["sg", paths.ONVM_GROUP, "-c", "exec " + " ".join(shlex.quote(c) for c in cmd)]
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
