"""The NF process side of a C NF (onvm/cnf.py builds them): register with
the manager's NF door as this launch, exactly as a shipped NF does, then
exec the binary.  It keeps this process's pid, which the manager's pidfd
watches, and inherits the connection and the manager's two files; NFLib's
loop (onvm/core/sdk.c) takes over from there."""
import os
import re
import sys

from ..common.sdk import sdk_version_of

# the environment the binary gets (read by onvm/core/sdk.c)
BOOT_ENV = "ONVM_NF_BOOT"


def exec_nf(manager, service, name, binary, args=(), staged=False, door=None):
    """In an NF process (python -m onvm.nflib.run --c-nf, `onvm nf ./OUT`):
    register with manager's NF door as this launch, then exec the binary
    with the connection and the manager's two files.  Returns (an exit
    status) only if it could not."""
    from ..common import paths
    from ..common.errors import OnvmError
    from . import door as nfdoor
    binary = os.path.abspath(binary)
    version = sdk_version_of(binary)
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        print("NF %s: %s is not an executable file" % (name, binary), file=sys.stderr)
        return 2
    if version is None:
        print("NF %s: %s is not an onvm NF (no onvm NF SDK marker: build it from C with `onvm build`)"
              % (name, binary), file=sys.stderr)
        return 2
    if door is None or not isinstance(door, str):
        paths.use_dpdk_env()
    ticket = os.environ.pop(nfdoor.TICKET_ENV, None)
    try:
        if ticket is None and door is None:
            ticket = nfdoor.ticket(manager, name, service)
        kind = ("c:" + name)[:23]
        kind = re.sub(r"[^A-Za-z0-9_.:-]", "_", kind)
        sock, slot, shm_fd, stats_fd, xmem_fd = nfdoor.register(manager, name, kind, service, staged, door=door,
                                                       ticket=ticket, sdk=version)
    except (OnvmError, ValueError) as e:
        print("NF %s: %s" % (name, e), file=sys.stderr)
        return 2
    argv = nfdoor.eal_args(manager, xmem_fd)
    fds = (sock.fileno(), shm_fd, stats_fd) + (() if xmem_fd is None else (xmem_fd,))
    for fd in fds:
        os.set_inheritable(fd, True)
    env = dict(os.environ)
    env[BOOT_ENV] = "%d %d %d %d %d" % (shm_fd, stats_fd, sock.fileno(), slot, service)
    if xmem_fd is not None:
        env[BOOT_ENV] += " %d" % xmem_fd
    env["ONVM_NF_NAME"] = name
    env["ONVM_NF_CPUS"] = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    env["ONVM_NF_EAL"] = "\n".join(["onvm-nf"] + argv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(binary, [binary, *args], env)
    except OSError as e:
        print("NF %s: cannot run %s: %s" % (name, binary, e.strerror), file=sys.stderr)
        return 2
