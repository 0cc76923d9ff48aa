"""Where a manager's files live.  DPDK keeps each instance's runtime files in
a directory named after its file prefix; onvm keeps its control file and
socket there too, so one mount gives a container everything."""
import glob
import os

PREFIX = "onvm-"


def runtime_root():
    """DPDK's runtime root: /var/run/dpdk for root, else under XDG_RUNTIME_DIR."""
    if os.geteuid() == 0:
        return "/var/run/dpdk"
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk")


def file_prefix(name):
    return PREFIX + name


def run_dir(name):
    return os.path.join(runtime_root(), file_prefix(name))


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


def hugepage_mounts():
    """Mount points of hugetlbfs file systems."""
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[2:3] == ["hugetlbfs"]]


def hugepage_files(name):
    prefix = file_prefix(name)
    return [p for m in hugepage_mounts() for p in glob.glob(os.path.join(m, prefix + "map_*"))]


def manager_names():
    """Names of every manager that has a runtime directory (alive or not)."""
    root = runtime_root()
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(e[len(PREFIX):] for e in entries if e.startswith(PREFIX))


def log_dir(name):
    """Logs of a manager and its NFs; kept after it stops, for reading."""
    import tempfile
    d = os.path.join(tempfile.gettempdir(), "onvm-logs", name)
    os.makedirs(d, exist_ok=True)
    return d
