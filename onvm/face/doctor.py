"""`onvm doctor` (is this machine ready for onvm?) and `onvm cleanup`
(remove what crashed or killed managers left behind: runtime dirs,
hugepage files, orphaned NF processes, old logs).

Processes are only ever killed by pid, and only pids an onvm manager
recorded whose command line mentions onvm; never by name pattern."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from ..common import paths
from ..common.errors import OnvmError
from ..common.runtime import NO_PCI_DIR, _alive, _meminfo, _wait_gone, hugepage_fix

MANAGER_MB = 256          # hugepage memory one manager takes by default
DPDK_VERSION = "22.11"
STOP_TIMEOUT = 10.0       # SIGTERM -> SIGKILL for a running manager
KILL_TIMEOUT = 5.0        # waiting for SIGKILLed processes to go away
START_GRACE = 10.0        # a runtime dir without control file younger than this may be a manager starting
LOG_MIN_AGE = 60.0        # log dirs touched more recently are kept: someone may be reading them

_HUGEFILE = re.compile(r"^%s(.+)map_\d+$" % re.escape(paths.PREFIX))


# ---- small helpers ------------------------------------------------------------

def _locked(path):
    """True if some process holds an flock on path, as DPDK does on every
    hugepage file it maps."""
    return paths.flock_held(path, shared_too=True)


def _onvm_hugepage_files():
    """{manager name: [paths]} of every onvm-* file in this user's hugepage dirs."""
    out = {}
    for m in paths.hugepage_dirs():
        try:
            entries = os.listdir(m)
        except OSError:
            continue
        for e in sorted(entries):
            if not e.startswith(paths.PREFIX):
                continue
            match = _HUGEFILE.match(e)
            name = match.group(1) if match else e[len(paths.PREFIX):]
            out.setdefault(name, []).append(os.path.join(m, e))
    return out


# ---- onvm doctor --------------------------------------------------------------
# Each check returns a list of (status, what, problem, fix); status is
# "ok", "FAIL" or "warn".  Only FAIL changes the exit code.

def check_dpdk():
    fix = "apt-get install libdpdk-dev dpdk pkg-config"
    try:
        r = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        if _core_loads():      # an image with the core built in (onvm/lab): DPDK's libraries are there
            return [("ok", "DPDK libraries (the built onvm core loads them; no pkg-config, which only building needs)",
                     None, None)]
        return [("FAIL", "DPDK", "pkg-config is not installed, so DPDK cannot be found", fix)]
    except subprocess.TimeoutExpired:
        return [("FAIL", "DPDK", "pkg-config --modversion libdpdk did not answer within 10 s", fix)]
    version = r.stdout.strip()
    if r.returncode != 0 or not version:
        return [("FAIL", "DPDK", "libdpdk is not installed (pkg-config --modversion libdpdk failed)", fix)]
    if version != DPDK_VERSION and not version.startswith(DPDK_VERSION + "."):
        return [("FAIL", "DPDK", "DPDK %s is installed; onvm needs %s" % (version, DPDK_VERSION), fix)]
    return [("ok", "DPDK %s (pkg-config libdpdk)" % version, None, None)]


def _core_loads():
    try:
        from ..common import abi
        abi.lib.ONVM_MAX_NFS  # noqa: B018
        return True
    except (ImportError, OSError, AttributeError):
        return False


def check_core():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the checkout
    if os.path.exists(os.path.join(root, "scripts", "setup.sh")):
        fix = "cd %s && bash scripts/setup.sh" % root
    elif os.path.exists(os.path.join(root, "setup.py")):
        fix = "cd %s && %s -m pip install -e ." % (root, sys.executable)
    else:
        fix = "%s -m pip install -e ." % sys.executable
    try:
        from ..common import abi
        abi.lib.ONVM_MAX_NFS  # noqa: B018 - the lookup is the check: it fails on a stale or broken build
    except (ImportError, OSError, AttributeError) as e:
        return [("FAIL", "onvm._core", "the compiled extension does not import: %s" % e, fix)]
    return [("ok", "onvm._core extension imports (%s)" % os.path.basename(abi.core.__file__), None, None)]


def check_hugepages():
    out = []
    try:
        with open("/proc/sys/vm/nr_hugepages") as f:
            nr = int(f.read().strip() or 0)
        info = _meminfo()
    except (OSError, ValueError) as e:
        return [("FAIL", "hugepages", "cannot read hugepage settings: %s" % e, None)]
    size_kb = info.get("Hugepagesize", 2048)
    free_pages = max(0, info.get("HugePages_Free", 0) - info.get("HugePages_Rsvd", 0))
    free_mb = free_pages * size_kb // 1024
    if nr <= 0:
        out.append(("FAIL", "hugepages", "none are reserved (/proc/sys/vm/nr_hugepages is 0)",
                    hugepage_fix(MANAGER_MB)))
    elif free_mb < MANAGER_MB:
        problem = "%d MB free of %d MB; one manager needs %d MB" % (free_mb, nr * size_kb // 1024, MANAGER_MB)
        fix = hugepage_fix(MANAGER_MB - free_mb)
        stale = [n for n in _onvm_hugepage_files() if not _manager_alive(n)]
        if stale:
            problem += "; stopped managers still hold hugepage files (%s)" % ", ".join(stale)
            fix = "onvm cleanup"
        out.append(("FAIL", "hugepages", problem, fix))
    else:
        out.append(("ok", "hugepages: %d x %d kB reserved, %d MB free (a manager needs %d MB)"
                    % (nr, size_kb, free_mb, MANAGER_MB), None, None))
    mounts = paths.hugepage_mounts()
    if mounts:
        out.append(("ok", "hugetlbfs mounted at %s" % ", ".join(mounts), None, None))
    else:
        out.append(("FAIL", "hugetlbfs", "no hugetlbfs is mounted",
                    "mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages"))
    return out


def check_permissions():
    """Root may do anything; another user needs group onvm, its hugetlbfs
    mount, and private runtime and log dirs."""
    if os.geteuid() == 0:
        return [("ok", "permissions: running as root", None, None)]
    out = []
    import getpass
    user = getpass.getuser()
    if paths.ONVM_HUGE_DIR not in paths.hugepage_mounts():
        out.append(("FAIL", "hugetlbfs for users", "%s is not mounted, so users other than root have no "
                    "hugepages" % paths.ONVM_HUGE_DIR, "sudo bash scripts/setup.sh (in the onvm checkout)"))
    elif not paths.in_onvm_group():
        out.append(("FAIL", "group %s" % paths.ONVM_GROUP, "you (%s) are not in group %s, so you cannot use %s"
                    % (user, paths.ONVM_GROUP, paths.ONVM_HUGE_DIR),
                    "sudo usermod -aG %s %s, then log in again" % (paths.ONVM_GROUP, user)))
    else:
        try:
            d = paths.huge_dir(create=True)
            out.append(("ok", "hugepage dir %s is yours (group %s)" % (d, paths.ONVM_GROUP), None, None))
            usual = os.path.join(paths.ONVM_HUGE_DIR, str(os.geteuid()))
            if d != usual:
                try:
                    owner = os.lstat(usual).st_uid
                except OSError:
                    owner = None
                if owner is not None and owner != os.geteuid():
                    out.append(("warn", "hugepage dir", "%s was made by uid %d, not you, so onvm uses %s; "
                                "it does no harm" % (usual, owner, d), "as root: rm -r %s" % usual))
        except OnvmError as e:
            out.append(("FAIL", "hugepage dir", str(e), None))
    for what, get in (("runtime root", lambda: paths.private_dir(paths.runtime_root(), "runtime root")),
                      ("log dir", lambda: paths.logs_root(create=True))):
        try:
            out.append(("ok", "%s %s is yours, mode 0700" % (what, get()), None, None))
        except OnvmError as e:
            out.append(("FAIL", what, str(e), None))
    return out


def check_docker():
    what = "docker"
    if shutil.which("docker") is None:
        return [("warn", what, "the docker command is not installed (only needed for container NFs)",
                 "apt-get install docker.io && dockerd --bridge=none --iptables=false &")]
    fix = "dockerd --bridge=none --iptables=false &"
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [("warn", what, "docker info did not answer within 10 s (only needed for container NFs)", fix)]
    except OSError as e:
        return [("warn", what, "cannot run docker: %s (only needed for container NFs)" % e, fix)]
    if r.returncode != 0:
        from ..containers import access_problem
        problem = access_problem()
        if problem:      # the daemon runs; this user may not reach it
            return [("warn", what, "%s (only needed for container NFs)" % problem[0], problem[1])]
        lines = [ln.strip() for ln in (r.stderr + "\n" + r.stdout).splitlines() if ln.strip()]
        err = next((ln for ln in lines if "daemon" in ln.lower() or "error" in ln.lower()),
                   lines[-1] if lines else "exit status %d" % r.returncode)
        return [("warn", what, "the docker daemon does not answer: %s (only needed for container NFs)" % err, fix)]
    out = [("ok", "docker: the daemon answers", None, None)]
    from ..containers import image_status
    try:
        images = image_status()
    except OnvmError as e:       # the SDK is missing
        return out + [("warn", "docker SDK", str(e), "pip install docker")]
    for tag, present in images:
        if present:
            out.append(("ok", "image %s" % tag, None, None))
        else:
            lab = tag.startswith("onvm/lab")
            out.append(("warn", "image %s" % tag, "missing (%s)" % ("the course image" if lab else
                        "container NFs need it"), "onvm images build" + (" --lab" if lab else "")))
    return out


def _manager_alive(name):
    return paths.name_in_use(name)


def dpdk_tools(name, port=0, count=100, path=None):
    """How to point DPDK's own tools at the running manager name: capture
    from onvm port `port` (count packets into path), print every port's
    counters, and a telemetry shell.  dpdk-dumpcap takes no EAL arguments
    (so no --no-pci): it scans the PCI bus as a secondary and would look at
    this machine's NICs, so its environment points SYSFS_PCI_DEVICES, where
    DPDK's PCI bus looks, at an empty directory.

    returns: (env, {"dumpcap": argv, "proc-info": argv, "telemetry": argv},
        {onvm port: DPDK port id}); env holds only the variables to add
    raises: OnvmError if the manager is not running"""
    from ..common.runtime import running_manager_pid
    from ..common.shm import ControlFile
    if not running_manager_pid(name):
        raise OnvmError("manager %r is not running" % name)
    cf = ControlFile(name)
    try:
        ethdev = {p: cf.shm.ports[p].ethdev for p in range(cf.shm.nb_ports)}
    finally:
        cf.close()
    if port not in ethdev:
        raise ValueError("port %r does not exist (ports 0..%d)" % (port, len(ethdev) - 1))
    env = paths.dpdk_env({})
    env["SYSFS_PCI_DEVICES"] = os.path.join(paths.run_dir(name), NO_PCI_DIR)
    prefix = "--file-prefix=" + paths.file_prefix(name)
    return env, {
        "dumpcap": ["dpdk-dumpcap", prefix, "-i", str(ethdev[port]), "-c", str(count), "-w",
                    path or "port%d.pcapng" % port],
        "proc-info": ["dpdk-proc-info", prefix, "--no-pci", "--", "--stats"],
        "telemetry": ["dpdk-telemetry.py", "-f", paths.file_prefix(name)],
    }, ethdev


def tool_lines(name):
    """dpdk_tools(name) as shell lines for `onvm doctor`."""
    import shlex
    env, cmds, ethdev = dpdk_tools(name)
    pre = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(env.items()))
    sock = os.path.join(paths.run_dir(name), "dpdk_telemetry.v2")
    if not paths.hugepage_files(name):
        # DPDK has no secondary processes without hugepages (onvm/core/xmem.c).
        return ["DPDK port ids: %s" % ", ".join("onvm %d -> %d" % kv for kv in ethdev.items()),
                "capture, counters: none from DPDK's tools (dpdk-dumpcap, dpdk-proc-info attach as secondary "
                "processes, which need hugepages, and this manager runs without); use mgr.capture() and onvm stats",
                "telemetry: %s   (socket %s; type /ethdev/stats,0)" % (shlex.join(cmds["telemetry"]), sock)]
    return ["DPDK port ids: %s" % ", ".join("onvm %d -> %d" % kv for kv in ethdev.items()),
            "capture:   %s %s" % (pre, shlex.join(cmds["dumpcap"])),
            "counters:  %s" % shlex.join(cmds["proc-info"]),
            "telemetry: %s   (socket %s; type /ethdev/stats,0)" % (shlex.join(cmds["telemetry"]), sock)]


def check_managers():
    from ..common.runtime import running_manager_pid
    out = []
    names = paths.manager_names()
    for name in names:
        if paths.name_in_use(name):
            pid = running_manager_pid(name)
            what = "manager %s: running (pid %d)" % (name, pid) if pid else "manager %s: starting or stopping" % name
            if pid:
                try:
                    what += "".join("\n     " + line for line in tool_lines(name))
                except (OnvmError, OSError):
                    pass             # it stopped meanwhile
            out.append(("ok", what, None, None))
        else:
            out.append(("warn", "manager %s" % name, "stale: not running, but %s is left behind"
                        % paths.run_dir(name), "onvm cleanup"))
    orphans = sorted(n for n in _onvm_hugepage_files() if n not in names)
    if orphans:
        out.append(("warn", "hugepage files", "left by managers that are gone: %s" % ", ".join(orphans),
                    "onvm cleanup"))
    if not names:
        out.append(("ok", "managers: none running", None, None))
    from ..netns import recorded
    stale = [name for name, _, _, alive in recorded() if not alive]
    if stale:
        out.append(("warn", "network namespaces", "made by onvm.Namespace in processes that are gone: %s"
                    % ", ".join(stale), "onvm cleanup"))
    return out


def check_memory():
    """Which memory a manager started now would use (common/memmode.py), and why."""
    from ..common import memmode
    try:
        huge, why = memmode.choose(None, MANAGER_MB)
    except (OnvmError, ValueError) as e:
        return [("FAIL", "memory", "a manager cannot start here: %s" % e, None)]
    if huge:
        return [("ok", "memory: a manager uses hugepages (%s); ONVM_HUGEPAGES=0 runs without them" % why,
                 None, None)]
    return [("ok", "memory: a manager runs without hugepages, in ordinary shared memory (%s)" % why, None, None)]


def check_kernel():
    """The "onvm" kernelspec Jupyter would start must run this onvm's kernel
    module: a spec installed by an older onvm names a module path that has
    since moved, and its kernel dies at start in every notebook."""
    from . import kernel
    try:
        spec_file = kernel.installed()
    except OnvmError:            # no jupyter_client: the lab extra is not installed
        return []
    if spec_file is None:
        return [("warn", "kernel", 'no "OpenNetVM (Python 3)" kernel is installed (only needed for notebooks)',
                 "onvm kernel install --sys-prefix")]
    import json
    try:
        with open(spec_file) as f:
            argv = json.load(f)["argv"]
        with open(os.path.join(kernel.spec_dir(), "kernel.json")) as f:
            want = json.load(f)["argv"]
    except (OSError, ValueError, KeyError) as e:
        return [("warn", "kernel", "cannot read %s: %s" % (spec_file, e), "onvm kernel install --sys-prefix")]
    if argv[1:] != want[1:] or not os.access(argv[0], os.X_OK):
        return [("warn", "kernel", "%s starts %r, not this onvm's kernel (%s)" % (
                 spec_file, " ".join(argv[:3]), " ".join([sys.executable] + want[1:3])),
                 "onvm kernel install --%s" % ("user" if spec_file.startswith(os.path.expanduser("~")) else "sys-prefix"))]
    return [("ok", "kernel %s" % spec_file, None, None)]


CHECKS = (check_dpdk, check_core, check_memory, check_hugepages, check_permissions, check_docker, check_kernel,
          check_managers)


def run_checks():
    """Check the machine; print one line per check.  returns: 0 if nothing
    FAILed (warnings do not count), else 1."""
    failed = 0
    for check in CHECKS:
        try:
            results = check()
        except Exception as e:    # a broken check must not hide the others
            results = [("FAIL", check.__name__[6:], "the check itself failed: %r" % (e,), None)]
        for status, what, problem, fix in results:
            if status == "ok":
                print("ok   %s" % what)
                continue
            print("%-4s %s: %s" % (status, what, problem))
            if fix:
                print("     fix: %s" % fix)
            if status == "FAIL":
                failed += 1
    sys.stdout.flush()
    return 1 if failed else 0


# ---- onvm cleanup ---------------------------------------------------------------

def _stop_manager(name, pid):
    """SIGTERM a running manager, SIGKILL it after STOP_TIMEOUT.  returns: True if it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if not _wait_gone([pid], STOP_TIMEOUT):
        return True
    print("manager %s (pid %d) did not stop within %d s; killing it" % (name, pid, STOP_TIMEOUT))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return not _wait_gone([pid], KILL_TIMEOUT)


def _kill_nfs(name):
    """SIGKILL the NF processes a dead manager's control file lists.  returns: how many."""
    from ..common.abi import lib
    from ..common.runtime import pid_is_onvm
    from ..common.shm import ControlFile
    try:
        cf = ControlFile(name)
    except (OnvmError, OSError, ValueError):
        return 0
    try:
        nfs = cf.shm.nfs
        pids = sorted({int(nfs[i].pid) for i in range(lib.ONVM_MAX_NFS)
                       if nfs[i].state != lib.ONVM_NF_FREE and nfs[i].pid > 0})
    finally:
        cf.close()
    killed = []
    for pid in pids:
        if pid == os.getpid() or not _alive(pid) or not pid_is_onvm(pid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        except PermissionError as e:
            print("could not kill NF process %d of manager %s: %s" % (pid, name, e))
            continue
        print("killed NF process %d of manager %s" % (pid, name))
        killed.append(pid)
    for pid in _wait_gone(killed, KILL_TIMEOUT):
        print("NF process %d of manager %s is still alive after SIGKILL" % (pid, name))
    return len(killed)


def _remove_manager_files(name, lock):
    """Runtime dir and hugepage files of a manager that is gone; we hold its
    name lock.  returns: items removed."""
    from ..common.runtime import remove_leftovers
    rd = paths.run_dir(name)
    files = paths.hugepage_files(name)
    if not remove_leftovers(name, lock):
        print("kept manager %s: a DPDK primary process holds %s" % (name, rd))
        return 0
    n = 0
    if os.path.exists(rd):
        print("could not remove runtime dir %s" % rd)
    else:
        print("removed runtime dir %s" % rd)
        n += 1
    if files:
        left = [f for f in files if os.path.exists(f)]
        gone = len(files) - len(left)
        if gone:
            print("removed %d hugepage file(s) of manager %s (%s)"
                  % (gone, name, os.path.join(os.path.dirname(files[0]), paths.file_prefix(name) + "map_*")))
            n += 1
        if left:
            print("could not remove %d hugepage file(s) of manager %s, e.g. %s" % (len(left), name, left[0]))
    return n


def _drop_lock(name, lock):
    """Unlink name's lock file and empty runtime dir (we made them only to
    lock the name), then release the lock."""
    for undo in (lambda: os.unlink(paths.lock_path(name)), lambda: os.rmdir(paths.run_dir(name))):
        try:
            undo()
        except OSError:
            pass
    lock.release()


def _remove_orphan_hugepages(only=None):
    """onvm-* hugepage files whose manager has no runtime dir and that no
    process has locked, removed while holding the name.  returns: items removed."""
    n = 0
    for name, files in sorted(_onvm_hugepage_files().items()):
        if (only is not None and name not in only) or os.path.isdir(paths.run_dir(name)):
            continue
        lock = paths.NameLock(name)
        if not lock.acquire():
            print("kept %d hugepage file(s) of %s: a manager of that name is starting" % (len(files), name))
            continue
        try:
            busy = [f for f in files if _locked(f)]
            if busy:
                print("kept %d hugepage file(s) of %s: still in use by a process, e.g. %s"
                      % (len(busy), name, busy[0]))
            removed = 0
            for f in files:
                if f in busy:
                    continue
                try:
                    os.unlink(f)
                    removed += 1
                except FileNotFoundError:
                    pass
                except OSError as e:
                    print("could not remove %s: %s" % (f, e))
        finally:
            _drop_lock(name, lock)
        if removed:
            print("removed %d orphaned hugepage file(s) of %s (%s%s*)"
                  % (removed, name, os.path.dirname(files[0]) + os.sep, paths.file_prefix(name)))
            n += 1
    return n


def _remove_old_logs(keep, only=None):
    """Log dirs of managers that are not running.  returns: items removed."""
    root = paths.logs_root()
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return 0
    now = time.time()
    n = 0
    for name in entries:
        d = os.path.join(root, name)
        if name in keep or (only is not None and name not in only) or not os.path.isdir(d) or os.path.islink(d):
            continue
        if paths.name_in_use(name):
            continue
        try:
            newest = max([os.path.getmtime(d)] + [os.path.getmtime(os.path.join(d, f)) for f in os.listdir(d)])
        except OSError:
            continue
        if now - newest < LOG_MIN_AGE:
            continue      # fresh logs of a manager that just stopped: someone may be reading them
        shutil.rmtree(d, ignore_errors=True)
        if os.path.exists(d):
            print("could not remove log dir %s" % d)
        else:
            print("removed log dir %s" % d)
            n += 1
    return n


def cleanup(force=False, names=None, also=()):
    """Remove what onvm managers left behind: NF processes of dead managers
    (by pid, from the control file), runtime dirs, hugepage files, orphaned
    hugepage files and old log dirs.  A manager's files are only removed
    while holding its name lock (paths.NameLock), so nothing of a live or
    starting manager is touched.  Running managers are kept, or with
    force=True stopped first (SIGTERM, then SIGKILL after 10 s).

    param names: only these managers (default: every one of this user)
    param also: more cleaners for a full cleanup, each f(log) -> items removed
        (`onvm cleanup` passes the hub's: doctor imports no hub, which
        imports the grader, which imports the lab, which imports doctor)
    returns: 0"""
    from ..common.runtime import running_manager_pid
    only = None if names is None else set(names)
    removed = 0
    keep = set()
    for name in paths.manager_names():
        if only is not None and name not in only:
            continue
        lock = paths.NameLock(name)
        if not lock.acquire():
            pid = running_manager_pid(name)
            if not pid:
                print("kept manager %s: it is starting or stopping (it holds %s); run onvm cleanup again "
                      "in a few seconds" % (name, paths.lock_path(name)))
                keep.add(name)
                continue
            if not force:
                print("kept manager %s: it is running (pid %d); stop it, or use: onvm cleanup --force"
                      % (name, pid))
                keep.add(name)
                continue
            if not paths.pid_holds_name(pid, name):
                # The pid in its control file is not a process here (another
                # PID namespace?); killing it could hit someone else.
                print("kept manager %s: pid %d does not hold %s here; stop it where it runs"
                      % (name, pid, paths.lock_path(name)))
                keep.add(name)
                continue
            if not _stop_manager(name, pid) or not lock.acquire(wait=KILL_TIMEOUT):
                print("kept manager %s: pid %d did not die" % (name, pid))
                keep.add(name)
                continue
            print("stopped manager %s (pid %d)" % (name, pid))
            removed += 1
        try:
            removed += _kill_nfs(name)
            removed += _remove_manager_files(name, lock)
        finally:
            lock.release()
    removed += _remove_orphan_hugepages(only)
    from ..containers import remove_containers  # NF containers: each exits once its manager is gone; sure
    removed += remove_containers(uid=os.geteuid(), keep=lambda m: m in keep or (only is not None and m not in only),
                                 log=print)
    removed += _remove_old_logs(keep, only)
    if only is None:
        from ..netns import cleanup_namespaces  # made by onvm.Namespace in a process now gone
        removed += cleanup_namespaces(force)
        for cleaner in also:
            removed += cleaner(log=print)
    print("cleanup: removed %d item(s)" % removed)
    sys.stdout.flush()
    return 0
