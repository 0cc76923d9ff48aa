"""Where a manager's files live, and who owns a manager's name.

DPDK keeps each instance's runtime files in a directory named after its
file prefix; onvm keeps its control file, sockets and name lock there too,
so one mount gives a container everything.  Every directory onvm uses is
per user, 0700 and owned by that user; none is under /tmp.

    root:      /var/run/dpdk/onvm-NAME            (DPDK's own choice for root)
    non-root:  $XDG_RUNTIME_DIR/dpdk/onvm-NAME    (DPDK reads XDG_RUNTIME_DIR)
    logs:      $XDG_STATE_HOME/onvm/logs/NAME     (~/.local/state/...)
    hugepages: root: a hugetlbfs mount (/dev/hugepages); others:
               /dev/hugepages-onvm/UID (or UID-<random> if another user
               made UID first), a 0700 dir in the group-onvm mount
               scripts/setup.sh makes"""
import errno
import fcntl
import glob
import grp
import os
import stat
import struct
import time

from .errors import OnvmError

PREFIX = "onvm-"
LOCK_FILE = "onvm.lock"
ONVM_GROUP = "onvm"
ONVM_HUGE_DIR = "/dev/hugepages-onvm"
SETUP_HINT = "run as root: bash scripts/setup.sh"
# The longest name DPDK puts in a runtime dir: a secondary's
# "mp_socket_<pid>_<tsc in hex>"; a unix socket path has at most 107 bytes.
_LONGEST_ENTRY = len("mp_socket_4194304_") + 16
_SUN_PATH_MAX = 107


def data_path(what):
    """notebooks, labs or kernels: in an installed wheel they are package data
    (onvm/_data/WHAT, put there by setup.py), in a checkout beside the package.
    raises: OnvmError if neither exists."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the onvm package
    for d in (os.path.join(here, "_data", what), os.path.join(os.path.dirname(here), what)):
        if os.path.isdir(d):
            return d
    raise OnvmError("onvm's %s are missing from %s (a broken install? reinstall onvm)" % (what, here))



# ---- private directories ------------------------------------------------------

def private_dir(path, what="directory"):
    """Make path a 0700 directory owned by us, creating it if missing.
    Refuses a symlink or a directory someone else owns: both would let
    another user read or replace what onvm puts there.
    returns: path.  raises: OnvmError naming the path and the fix."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise OnvmError("cannot create the onvm %s %s: %s; create it yourself (mkdir -m 700 -p %s) "
                        "or point onvm elsewhere" % (what, path, e.strerror, path)) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise OnvmError("the onvm %s %s is a symlink; onvm does not follow it (another user could "
                            "have planted it): remove it (rm %s) and retry" % (what, path, path)) from None
        raise OnvmError("the onvm %s %s is not a usable directory: %s; remove it (rm %s) and retry"
                        % (what, path, e.strerror, path)) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise OnvmError("the onvm %s %s belongs to uid %d, not to you (uid %d); onvm only uses "
                            "directories you own: remove it, or run as its owner" %
                            (what, path, st.st_uid, os.geteuid()))
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)       # ours, so tightening it is safe
    finally:
        os.close(fd)
    return path


def secret_file(prefix, text):
    """A new 0600 file holding text, in our 0700 runtime root (a tmpfs for
    root): how a secret goes to a child process, never by its arguments or
    environment.  The caller removes it once the child has read it.
    returns: its path."""
    root = private_dir(runtime_root(), "runtime root")
    # Not tempfile: importing it (and secrets) costs every NF process ~10 ms at start.
    for _ in range(100):
        path = os.path.join(root, prefix + os.urandom(8).hex())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    else:
        raise OnvmError("no free name for a secret file in %s" % root)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _owned_private(path):
    """True if path is a real directory of ours that no one else may enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _home():
    home = os.path.expanduser("~")
    if not os.path.isabs(home):
        raise OnvmError("HOME is not set to a directory (%r); set HOME" % home)
    return home


# ---- the runtime root -----------------------------------------------------------

def xdg_runtime_dir():
    """The XDG_RUNTIME_DIR a non-root DPDK process of ours must see (DPDK
    puts its runtime files under $XDG_RUNTIME_DIR/dpdk), or None for root,
    whose runtime root DPDK fixes at /var/run/dpdk.  Uses XDG_RUNTIME_DIR
    if it is a 0700 dir of ours, else /run/user/UID if it is ours, else
    ~/.onvm/run (created 0700)."""
    if os.geteuid() == 0:
        return None
    env = os.environ.get("XDG_RUNTIME_DIR")
    if env and os.path.isabs(env) and _owned_private(env):
        return env
    run_user = "/run/user/%d" % os.geteuid()
    if _owned_private(run_user):
        return run_user
    base = private_dir(os.path.join(_home(), ".onvm"), "state directory")
    return private_dir(os.path.join(base, "run"), "runtime directory")


def runtime_root():
    """DPDK's runtime root: /var/run/dpdk for root, else XDG_RUNTIME_DIR/dpdk."""
    x = xdg_runtime_dir()
    return "/var/run/dpdk" if x is None else os.path.join(x, "dpdk")


def dpdk_env(env=None):
    """env (default os.environ) with XDG_RUNTIME_DIR set so DPDK, which
    reads it in C, finds the runtime root runtime_root() names.  returns: a dict."""
    env = dict(os.environ if env is None else env)
    x = xdg_runtime_dir()
    if x is not None:
        env["XDG_RUNTIME_DIR"] = x
    return env


def use_dpdk_env():
    """Set XDG_RUNTIME_DIR in this process before EAL init (see dpdk_env)."""
    x = xdg_runtime_dir()
    if x is not None:
        os.environ["XDG_RUNTIME_DIR"] = x


def check_name(name):
    """A manager name becomes a file prefix and a directory name: letters,
    digits, - and _ only.  raises: ValueError naming it."""
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum() \
            or not name.isascii() or len(name) > 32:
        raise ValueError("manager name must be letters, digits, - or _ (at most 32), got %r" % (name,))
    return name


def file_prefix(name):
    return PREFIX + name


def run_dir(name):
    return os.path.join(runtime_root(), file_prefix(name))


def make_run_dir(name):
    """Create the runtime root and name's runtime dir (0700, ours).
    returns: the runtime dir."""
    root = runtime_root()
    if len(os.path.join(root, file_prefix(name), "x" * _LONGEST_ENTRY)) > _SUN_PATH_MAX:
        raise OnvmError("the runtime dir %s is too long for DPDK's sockets (unix socket paths have at "
                        "most %d bytes); set XDG_RUNTIME_DIR to a short 0700 directory of yours, or use "
                        "a shorter manager name" % (os.path.join(root, file_prefix(name)), _SUN_PATH_MAX))
    private_dir(root, "runtime root")
    return private_dir(os.path.join(root, file_prefix(name)), "runtime directory")


def shm_path(name):
    return os.path.join(run_dir(name), "onvm.shm")


def sock_path(name):
    """The management socket: the owner's notebook and CLI."""
    return os.path.join(run_dir(name), "onvm.sock")


def nf_sock_path(name):
    """Where NF processes register (and nothing else)."""
    return os.path.join(run_dir(name), "nf.sock")


def nf_stats_pattern(name):
    """printf pattern of the NF stats files, one per slot."""
    return os.path.join(run_dir(name), "nf-%u.stats")


def nf_stats_path(name, slot):
    return nf_stats_pattern(name) % slot


def lock_path(name):
    return os.path.join(run_dir(name), LOCK_FILE)


def manager_names():
    """Names of every manager of ours that has a runtime directory (alive or not)."""
    root = runtime_root()
    try:
        entries = os.listdir(root)
    except (FileNotFoundError, PermissionError):
        return []
    return sorted(e[len(PREFIX):] for e in entries if e.startswith(PREFIX))


# ---- hugepages ------------------------------------------------------------------

def hugepage_mounts():
    """Mount points of hugetlbfs file systems."""
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[2:3] == ["hugetlbfs"]]


def in_onvm_group():
    """True if this process may use the group-onvm hugetlbfs mount."""
    try:
        gid = grp.getgrnam(ONVM_GROUP).gr_gid
    except KeyError:
        return False
    return gid == os.getegid() or gid in os.getgroups()


def huge_dir(create=False):
    """The hugetlbfs directory this user's managers put their hugepage files in.
    Root: /dev/hugepages if mounted, else the first mount.  Others: their own
    0700 dir in the group-onvm mount, ONVM_HUGE_DIR/UID, or UID-<random> if
    someone else made UID first (see _make_huge_dir); made with create=True.
    raises: OnvmError with the fix if there is none."""
    mounts = hugepage_mounts()
    if os.geteuid() == 0:
        if not mounts:
            raise OnvmError("no hugetlbfs is mounted; run: mkdir -p /dev/hugepages && "
                            "mount -t hugetlbfs nodev /dev/hugepages")
        return "/dev/hugepages" if "/dev/hugepages" in mounts else mounts[0]
    if ONVM_HUGE_DIR not in mounts:
        raise OnvmError("the hugetlbfs mount for non-root users (%s) is missing; %s" % (ONVM_HUGE_DIR, SETUP_HINT))
    if not in_onvm_group():
        user = _user_name()
        raise OnvmError("you (%s) are not in group %s, so you cannot use %s; run as root: usermod -aG %s %s "
                        "(then log in again)" % (user, ONVM_GROUP, ONVM_HUGE_DIR, ONVM_GROUP, user))
    if not create:
        mine = user_huge_dirs(os.geteuid())
        return mine[0] if mine else os.path.join(ONVM_HUGE_DIR, str(os.geteuid()))
    for d in user_huge_dirs(os.geteuid()):
        if _take_dir(d):
            return d
    return _make_huge_dir(os.geteuid())


def user_huge_dirs(uid):
    """uid's hugepage dirs in the group-onvm mount: real directories (never
    a symlink) owned by uid, named UID or UID-<suffix>, UID first.  What
    someone else made under those names is not uid's and is left out."""
    try:
        entries = os.listdir(ONVM_HUGE_DIR)
    except OSError:
        return []
    own = str(uid)
    out = []
    for e in sorted(entries, key=lambda e: (e != own, e)):
        if e != own and not e.startswith(own + "-"):
            continue
        try:
            st = os.lstat(os.path.join(ONVM_HUGE_DIR, e))
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
            out.append(os.path.join(ONVM_HUGE_DIR, e))
    return out


def _take_dir(path):
    """True if path is a directory of ours (not through a symlink), now mode 0700."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            return False
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)       # ours, so tightening it is safe
        return True
    finally:
        os.close(fd)


def _make_huge_dir(uid):
    """Make our hugepage dir: ONVM_HUGE_DIR/UID, or, when another member of
    onvm made that name first (the mount's sticky bit then keeps us from
    removing it), UID-<random>, which nobody can guess to make before us.
    mkdir fails on any existing name, so what we then check is what we made;
    the sticky bit keeps anyone else from swapping it afterwards."""
    for attempt in range(16):
        name = str(uid) if attempt == 0 else "%d-%s" % (uid, os.urandom(8).hex())
        path = os.path.join(ONVM_HUGE_DIR, name)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if attempt == 0 and _take_dir(path):
                return path            # one of our own processes made it a moment ago
            continue
        except OSError as e:
            raise OnvmError("cannot create your hugepage directory %s: %s; %s" % (path, e.strerror, SETUP_HINT)) \
                from None
        if _take_dir(path):
            return path
    raise OnvmError("cannot make a hugepage directory of yours in %s: every name tried was taken" % ONVM_HUGE_DIR)


def _user_name():
    import pwd
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def hugepage_dirs():
    """Where this user's onvm hugepage files may be: every mount for root,
    the user's own directories otherwise."""
    if os.geteuid() == 0:
        return hugepage_mounts()
    return [d for d in user_huge_dirs(os.geteuid()) if _owned_private(d)]


def hugepage_files(name):
    prefix = file_prefix(name)
    return [p for d in hugepage_dirs() for p in glob.glob(os.path.join(glob.escape(d), glob.escape(prefix) + "map_*"))]


# ---- logs -----------------------------------------------------------------------

def logs_root(create=False):
    """$XDG_STATE_HOME/onvm/logs, or ~/.local/state/onvm/logs."""
    state = os.environ.get("XDG_STATE_HOME")
    if not state or not os.path.isabs(state):
        state = os.path.join(_home(), ".local", "state")
    root = os.path.join(state, "onvm", "logs")
    if create:
        os.makedirs(state, mode=0o700, exist_ok=True)
        private_dir(os.path.join(state, "onvm"), "log directory")
        private_dir(root, "log directory")
    return root


def log_dir(name):
    """Logs of a manager and its NFs; kept after it stops, for reading."""
    return private_dir(os.path.join(logs_root(create=True), name), "log directory")


def open_log_fd(path):
    """A log file in one of our log dirs, truncated; never through a
    symlink.  returns: its fd."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def open_log(path):
    """open_log_fd, as a text file."""
    return os.fdopen(open_log_fd(path), "w")


# ---- who owns a name ------------------------------------------------------------

class NameLock:
    """Ownership of a manager name: an flock on RUN_DIR/onvm.lock, taken
    before anything else and held for the manager's whole life.  Whoever
    holds it may create or remove that name's files; everyone else keeps
    their hands off.  Works across PID namespaces sharing the runtime dir.

    lock = NameLock("fw"); if lock.acquire(): ...; lock.release()"""

    def __init__(self, name):
        self.name = name
        self.fd = None

    @property
    def held(self):
        return self.fd is not None

    def acquire(self, wait=0.5):
        """Take the lock, trying for up to wait seconds (name_in_use probes
        hold it for microseconds; a manager holds it for its whole life).
        returns: True if we hold it now, False if a live manager (or a
        cleanup) holds it."""
        if self.fd is not None:
            return True
        path = lock_path(self.name)
        deadline = time.monotonic() + wait
        for _ in range(50):
            make_run_dir(self.name)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue          # a cleanup removed the dir between our mkdir and open
            except OSError as e:
                raise OnvmError("cannot open the name lock %s: %s; remove it (rm %s) if it is not a "
                                "plain file of yours" % (path, e.strerror, path)) from None
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        return False
                    time.sleep(0.01)
            if self._still_named(fd, path):
                self.fd = fd
                return True
            os.close(fd)          # the holder we waited for unlinked it: lock the new one
        raise OnvmError("cannot take the name lock %s: it keeps being removed" % path)

    def adopt(self, fd):
        """Take over a lock fd a parent acquired and passed down (Manager.start
        -> mgrd).  returns: True if fd holds this name's current lock."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a no-op if fd already holds it
        except OSError:
            return False
        if not self._still_named(fd, lock_path(self.name)):
            return False
        self.fd = fd
        return True

    @staticmethod
    def _still_named(fd, path):
        try:
            a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and a.st_nlink > 0

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return "<NameLock %s %s>" % (self.name, "held" if self.held else "free")


def flock_held(path, shared_too=False):
    """True if some other open file holds an exclusive flock on path (with
    shared_too, any flock: DPDK holds shared ones on hugepage files it maps)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if shared_too else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _posix_lock_held(path):
    """True if a process holds a POSIX write lock on path, as a DPDK primary
    does on its runtime config.  Asks with F_GETLK, so it never takes the
    lock and cannot make a starting primary fail."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        req = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        got = fcntl.fcntl(fd, fcntl.F_GETLK, req)
    except OSError:
        return False
    finally:
        os.close(fd)
    return struct.unpack("hhqqi4x", got)[0] != fcntl.F_UNLCK


def name_in_use(name):
    """True if a live process owns name: it holds the name lock (a manager
    from its first step to its exit, or a cleanup at work), or a DPDK
    primary holds that runtime dir.  The one check start, cleanup and
    doctor share; creates nothing."""
    rd = run_dir(name)
    return flock_held(os.path.join(rd, LOCK_FILE)) or _posix_lock_held(os.path.join(rd, "config"))


def pid_holds_name(pid, name):
    """True if process pid (as this PID namespace sees it) has name's lock
    file open: a check before signalling a pid read from a control file."""
    try:
        want = os.stat(lock_path(name), follow_symlinks=False)
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            return True
    return False


def new_name(prefix="nb-"):
    """A default manager name no live manager uses: random, so notebooks in
    containers sharing a runtime dir do not collide the way pids would."""
    for _ in range(100):
        name = prefix + os.urandom(4).hex()
        if not name_in_use(name) and not os.path.exists(run_dir(name)):
            return name
    raise OnvmError("no free manager name found in %s" % runtime_root())
