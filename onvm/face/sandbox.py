"""Running untrusted code (a graded submission, its NF) as a fresh uid in
private namespaces.  The grader (root) starts `python -m onvm.face.sandbox SPEC`,
which, still root: enters a new mount, network, IPC and UTS namespace (and
a PID namespace for a submission's worker); makes the whole file system
read-only and nosuid; hides the folders named in the spec behind empty
tmpfs (home directories, the submissions, the lab's hidden tests, the
grader's work folders); mounts a private /tmp, /var/tmp, /dev/shm, /run
and hugetlbfs; binds in only what the code needs (its own work folder, the
Python tree, a manager's DPDK files); brings up its own `lo` (so a
kernel's ZMQ sockets work, and nothing else is reachable); then drops to
the spec's uid and groups, with no_new_privs, and execs the command.

With a PID namespace, this process's child is the namespace's init: it
reaps, and when the command exits (or this process dies) it exits, which
kills every process left in the namespace.  Everything the uid could write
is on those private mounts and its work folder, gone with them.

SPEC (JSON, in the environment as ONVM_SANDBOX_SPEC, never in argv, which
every user can read: it may carry an NF's launch ticket): uid, gid, groups, argv, env, cwd, pid_ns (bool),
masks [dir], scratch [dir], run (bool: a root-owned /run with /run/user/UID
for the uid), hugetlbfs (a mount point or null), binds [[src, dst, rw]],
door (a unix socket path to connect to as root: the command gets the
connected socket as --door-fd N), nproc (RLIMIT_NPROC), fsize (RLIMIT_FSIZE),
cgroups [dir] (made by Limits: this process joins them first)."""
import ctypes
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = \
    0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = \
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18
SPEC_ENV = "ONVM_SANDBOX_SPEC"
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SYS_MOUNT_SETATTR = 442                       # x86_64 and arm64 alike
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(r, what):
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _mount(src, dst, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()   # noqa: E731
    _check(_libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)), "mount %s" % dst)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _read_only_everywhere():
    """Every mount of this namespace read-only and nosuid, in one call."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr),
                         ctypes.sizeof(attr)), "mount_setattr /")


def _tmpfs(path, mode, size, uid=0, gid=0):
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV,
           "mode=%o,size=%s,uid=%d,gid=%d" % (mode, size, uid, gid))


def _lo_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))
    finally:
        s.close()


def _is_dir(p):
    try:
        return os.path.isdir(p) and not os.path.islink(p)
    except OSError:
        return False


class Limits:
    """A submission's cgroups: at most nproc tasks and cpus CPUs for every
    process of it (a fork bomb or a spinning loop takes its share of the
    machine, not the machine).  cgroup v2 or v1's pids and cpu hierarchies;
    none where they cannot be made (then only RLIMIT_NPROC holds).
    Made and removed by the grader; a sandbox joins them (spec "cgroups")."""
    ROOT = "/sys/fs/cgroup"

    def __init__(self, name, nproc, cpus=1.0):
        self.dirs = []
        period = 100000
        if os.path.exists(os.path.join(self.ROOT, "cgroup.controllers")):
            want = [(self.ROOT, {"pids.max": nproc, "cpu.max": "%d %d" % (cpus * period, period)})]
        else:
            want = [(os.path.join(self.ROOT, "pids"), {"pids.max": nproc}),
                    (os.path.join(self.ROOT, "cpu"), {"cpu.cfs_period_us": period,
                                                      "cpu.cfs_quota_us": int(cpus * period)})]
        for root, settings in want:
            d = os.path.join(root, "onvm-grade-%s" % name)
            try:
                os.mkdir(d, 0o755)
            except OSError:
                continue
            self.dirs.append(d)
            for k, v in settings.items():
                try:
                    with open(os.path.join(d, k), "w") as f:
                        f.write(str(v))
                except OSError:
                    pass

    def throttled(self):
        """Seconds the submission's processes waited for CPU beyond its share
        (cpu.stat), or None where no cpu cgroup was made."""
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cpu.stat")) as f:
                    stat = dict(line.split() for line in f if len(line.split()) == 2)
            except (OSError, ValueError):
                continue
            if "throttled_usec" in stat:
                return int(stat["throttled_usec"]) / 1e6
            if "throttled_time" in stat:
                return int(stat["throttled_time"]) / 1e9
        return None

    def remove(self, timeout=5.0):
        """Remove the cgroups (once their last task is reaped)."""
        import time
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)


def _join(cgroups):
    for d in cgroups:
        try:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass


def setup(spec):
    """The namespaces and mounts of spec; run as root.  returns: the door
    socket's fd, or None."""
    _join(spec.get("cgroups", []))
    door = None
    if spec.get("door"):
        # Connected as root, before anything is hidden: the manager's NF
        # door admits its owner; the NF is then this process, exec'd.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(spec["door"])
        door = s.detach()
        os.set_inheritable(door, True)
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    _check(_libc.unshare(flags), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Sources of binds, held open across the masks that may hide their paths
    # (opened in the new namespace: a bind takes a mount of its own namespace).
    srcs = []
    for src, dst, rw in spec.get("binds", []):
        srcs.append((os.open(src, os.O_PATH | os.O_CLOEXEC), os.path.isdir(src), dst, rw, src))
    _read_only_everywhere()
    uid, gid = spec["uid"], spec["gid"]
    for d in spec.get("scratch", []):
        if _is_dir(d):
            _tmpfs(d, 0o1777, "256m")
    masks = sorted(set(m for m in spec.get("masks", []) if m != "/"), key=len)
    for m in masks:
        if _is_dir(m):
            _tmpfs(m, 0o755, "16m")
    if spec.get("run"):
        _tmpfs("/run", 0o755, "1g")       # the uid's runtime dir: a manager's ring-port files (32 MiB each) go here
        os.makedirs("/run/user/%d" % uid, 0o700)
        os.chown("/run/user/%d" % uid, uid, gid)
    if spec.get("hugetlbfs"):
        _mount("nodev", spec["hugetlbfs"], "hugetlbfs", MS_NOSUID | MS_NODEV,
               "uid=%d,gid=%d,mode=0700,size=%s" % (uid, gid, spec.get("huge_size", "1G")))
    for fd, isdir, dst, rw, src in srcs:
        if isdir:
            os.makedirs(dst, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if not os.path.exists(dst):
                os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o600))
        _mount("/proc/self/fd/%d" % fd, dst, None, MS_BIND | (MS_REC if isdir else 0))
        _mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if rw else MS_RDONLY))
        os.close(fd)
        # what is hidden at its own path stays hidden where it is bound in
        for m in masks:
            if isdir and m.startswith(src.rstrip("/") + "/"):
                inner = dst.rstrip("/") + m[len(src.rstrip("/")):]
                if _is_dir(inner):
                    _tmpfs(inner, 0o755, "1m")
    for path, owner_only in spec.get("own_dirs", []):
        # directories of the uid's inside what we mounted (a DPDK runtime dir)
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, 0o700 if owner_only else 0o755)
    _lo_up()
    return door


def drop(spec):
    """Become the spec's uid for good (this process and what it execs)."""
    for name, key in (("RLIMIT_NPROC", "nproc"), ("RLIMIT_FSIZE", "fsize")):
        if spec.get(key):
            resource.setrlimit(getattr(resource, name), (spec[key], spec[key]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setgroups(spec.get("groups", [spec["gid"]]))
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.chdir(spec.get("cwd", "/"))


def _exec(spec, door):
    argv = list(spec["argv"]) + (["--door-fd", str(door)] if door is not None else [])
    os.execve(argv[0], argv, spec["env"])


def main(argv):
    if os.geteuid() != 0:
        sys.exit("onvm.face.sandbox: only root can start a sandbox")
    try:
        spec = json.loads(os.environ.pop(SPEC_ENV))
    except (KeyError, ValueError) as e:
        sys.exit("onvm.face.sandbox: no spec in %s (%s)" % (SPEC_ENV, e))
    door = setup(spec)
    if not spec.get("pid_ns"):
        drop(spec)
        _exec(spec, door)
    _check(_libc.unshare(CLONE_NEWPID), "unshare pid")
    init = os.fork()
    if init == 0:
        # pid 1 of the new namespace: a /proc of its own, then the command
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        child = os.fork()
        if child == 0:
            drop(spec)
            _exec(spec, door)
        while True:          # reap everything; done when the command is
            try:
                pid, status = os.wait()
            except ChildProcessError:
                os._exit(1)
            if pid == child:
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    signal.signal(signal.SIGTERM, lambda *a: os.kill(init, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(init, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            status = 0
            break
    sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except OSError as e:
        if e.errno == errno.EPERM:
            sys.exit("onvm.face.sandbox: %s (is this a container without CAP_SYS_ADMIN?)" % e)
        raise
