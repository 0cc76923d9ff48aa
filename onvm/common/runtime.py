"""Process helpers that the notebook side, the manager daemon, the lab and
onvm doctor/cleanup share: is a manager running under a name, what it left
behind, whether its hugepages fit, is a process alive."""
import os
import re
import shutil
import signal
import subprocess
import time

from . import paths, veth
from .errors import OnvmError

# ---- children we started -------------------------------------------------------

def stop_processes(procs, timeout=5.0):
    """SIGTERM children we started (Popen, or anything with its poll,
    send_signal, wait and kill: a ContainerProcess), all at once; SIGKILL
    those still running after timeout.  returns: their exit codes."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    return [p.wait() for p in procs]


def stop_process(p, timeout=5.0):
    """stop_processes for one child.  returns: its exit code."""
    return stop_processes([p], timeout)[0]


def tail(path, lines=15):
    """The last lines of a child's log, for an error message."""
    try:
        with open(path, errors="replace") as f:
            text = f.read().strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(no output)"


NO_PCI_DIR = "no-pci"    # an empty dir in a manager's runtime dir: the PCI bus DPDK's tools see


def _alive(pid):
    """True if pid is a live process: not a zombie, and (DPDK processes are
    multi-threaded) not a zombie leader whose other threads are still exiting."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    if fields and fields[0] not in ("Z", "X"):
        return True
    try:
        return len(os.listdir("/proc/%d/task" % pid)) > 1
    except OSError:
        return False


def _wait_gone(pids, timeout):
    """Wait until none of pids is alive.  returns: the pids still alive."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


def _meminfo():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.split():
                info[k] = int(v.split()[0])
    return info


def hugepage_fix(missing_mb):
    """The command that reserves missing_mb more hugepages: nr_hugepages
    raised from what it is now, never lowered (a fixed "echo 512" would
    shrink a larger reservation, and the managers running in it)."""
    try:
        with open("/proc/sys/vm/nr_hugepages") as f:
            nr = int(f.read().strip() or 0)
    except (OSError, ValueError):
        nr = 0
    size_kb = _meminfo().get("Hugepagesize", 2048)
    more = -(-max(0, missing_mb) * 1024 // size_kb)
    return "echo %d > /proc/sys/vm/nr_hugepages" % max(nr + more, 512 if nr == 0 else nr + 1)


# What a manager's hugepages hold: the packet pool (a packet takes about
# 2.4 KB with its mbuf header and headroom) and the rest (NF rings, flow
# tables, ethdevs, memzones: under 16 MB).  Measured with --socket-limit:
# 20000 packets fit in 64 MB, 24000 do not (DPDK then panics at start).
MBUF_BYTES = 2432
BASE_MB = 16


def hugepage_need_mb(mbufs):
    """MB of hugepages a manager with a pool of mbufs packets needs."""
    return -(-mbufs * MBUF_BYTES // (1 << 20)) + BASE_MB


def check_hugepage_budget(hugepage_mb, mbufs):
    """raises: ValueError if mbufs packets do not fit in hugepage_mb, a cap."""
    need = hugepage_need_mb(mbufs)
    if need > hugepage_mb:
        raise ValueError("hugepage_mb=%d is too small for mbufs=%d: the pool needs about %d MB (hugepage_mb is "
                         "the most the manager may take); raise hugepage_mb to %d or use fewer mbufs"
                         % (hugepage_mb, mbufs, need, need))


def socket_limit(mb, page_bytes):
    """DPDK's --socket-limit: mb (rounded up to whole hugepages) on every
    NUMA node, so hugepage_mb is a cap and not only what is taken at start
    (-m; DPDK grows past it on demand: a pool of 2**20 packets took 2.4 GB
    with hugepage_mb=64)."""
    page_mb = max(1, page_bytes >> 20)
    mb = -(-mb // page_mb) * page_mb
    node_dir = "/sys/devices/system/node"
    nodes = [int(d[4:]) for d in os.listdir(node_dir) if re.fullmatch(r"node\d+", d)] \
        if os.path.isdir(node_dir) else []
    return ",".join([str(mb)] * (max(nodes + [0]) + 1))


def hugepage_budget_problem(mb, huge=None):
    """What to do if this user's hugetlbfs is mounted with size= (a
    student's budget under `onvm hub`) and has less than mb MB free, else
    None: such a budget caps what may be used, whatever the machine has."""
    if huge is None:
        try:
            huge = paths.huge_dir()
        except OnvmError:
            return None
    mount = huge if os.geteuid() == 0 else paths.ONVM_HUGE_DIR
    try:
        st = os.statvfs(mount)
    except OSError:
        return None
    if st.f_blocks and (st.f_bfree * st.f_frsize >> 20) < mb:
        return ("this manager needs %d MB of hugepages but your hugepage budget (the hugetlbfs at %s) has %d MB "
                "free of %d MB: pass a smaller hugepage_mb, or stop another manager of yours"
                % (mb, mount, st.f_bfree * st.f_frsize >> 20, st.f_blocks * st.f_frsize >> 20))
    return None


def hugepage_problem(mb):
    """None if mb megabytes of hugepages are free and this user has a
    hugetlbfs directory to put them in, else what to do."""
    try:
        huge = paths.huge_dir()
    except OnvmError as e:
        return str(e)
    budget = hugepage_budget_problem(mb, huge)
    if budget:
        return budget
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k] = v.split()
    free = int(info["HugePages_Free"][0]) * int(info["Hugepagesize"][0]) // 1024
    if free < mb:
        return ("not enough free hugepages: this manager needs %d MB, %d MB are free; "
                "run: %s (or pass a smaller hugepage_mb)" % (mb, free, hugepage_fix(mb - free)))
    return None


def pid_is_onvm(pid):
    """True if pid's command line mentions onvm: a guard before killing a
    pid read from a control file, which may have been reused since."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"onvm" in f.read()
    except OSError:
        return False


def running_manager_pid(name):
    """pid of the live manager called name (one that holds its name and has
    written its control file), or None."""
    if not paths.name_in_use(name):
        return None
    from .shm import ControlFile  # here, not at the top: config.validate imports this module without the core
    try:
        cf = ControlFile(name)
    except (OnvmError, OSError):
        return None
    pid = cf.shm.mgr_pid
    cf.close()
    return pid if pid > 0 else None


def remove_leftovers(name, lock=None, keep_lock=False):
    """Delete a manager's runtime dir, hugepage files and veth pairs, only while holding
    its name lock: lock is ours (held); without one it is taken here and
    released after.  keep_lock: leave the lock file (its holder lives on).
    returns: True if removed, False if a live manager owns the name."""
    own = lock is None
    if own:
        lock = paths.NameLock(name)
        if not os.path.exists(paths.run_dir(name)) and not paths.hugepage_files(name):
            return True          # nothing to remove; do not create the dir to lock it
        if not lock.acquire():
            return False
    try:
        rd = paths.run_dir(name)
        if paths._posix_lock_held(os.path.join(rd, "config")):
            return False         # a DPDK primary that does not take our lock still runs here
        veth.remove_recorded(rd)  # its veth ports' pairs, before the records go with the dir
        for f in paths.hugepage_files(name):
            try:
                os.unlink(f)
            except OSError:
                pass
        try:
            entries = os.listdir(rd)
        except FileNotFoundError:
            entries = []
        for e in entries:
            p = os.path.join(rd, e)
            if e == paths.LOCK_FILE:
                continue
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        if not keep_lock:
            # The lock file goes last, while we still hold it: anyone who
            # opened it meanwhile finds it unlinked and locks a new one.
            for undo in (lambda: os.unlink(os.path.join(rd, paths.LOCK_FILE)), lambda: os.rmdir(rd)):
                try:
                    undo()
                except OSError:
                    pass
        return True
    finally:
        if own:
            lock.release()


def take_name(name, lock_fd=None):
    """The name lock of name: taken here, or adopted from lock_fd (passed
    down by Manager.start).  raises: OnvmError if a live manager owns name."""
    lock = paths.NameLock(name)
    if not (lock.adopt(lock_fd) if lock_fd is not None else lock.acquire()):
        pid = running_manager_pid(name)
        raise OnvmError("a manager named %r is already running%s; stop it or choose another name"
                        % (name, " (pid %d)" % pid if pid else " or starting"))
    return lock
