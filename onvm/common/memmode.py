"""Where a manager keeps its packets: hugepages (the default where root has
reserved them), or ordinary shared memory (the no-hugepage mode: a memfd
registered with DPDK as external memory and handed to each NF over the NF
door; onvm/core/xmem.c).  Decided by the process that starts a manager,
read by `onvm doctor`."""
import os

from .errors import OnvmError

ENV = "ONVM_HUGEPAGES"        # 0: never hugepages, 1: always, unset or "auto": when usable
SHM_DIR_ENV = "ONVM_SHM_DIR"  # a tmpfs directory for the region instead of a memfd
MIB = 1 << 20


def from_env():
    """True, False or None (choose) from ONVM_HUGEPAGES.  raises: ValueError."""
    v = os.environ.get(ENV, "").strip().lower()
    if v in ("", "auto"):
        return None
    if v in ("0", "no", "false", "off"):
        return False
    if v in ("1", "yes", "true", "on"):
        return True
    raise ValueError("%s=%r: use 1 (hugepages), 0 (no hugepages) or auto" % (ENV, v))


WORDS = {"auto": None, "yes": True, "no": False}   # ManagerConfig.hugepages, the daemon's --hugepages


def from_word(word):
    """True, False or None from ManagerConfig's "yes", "no" or "auto"."""
    if word not in WORDS:
        raise ValueError("hugepages is one of auto, yes, no; got %r" % (word,))
    return WORDS[word]


def to_word(hugepages):
    return {None: "auto", True: "yes", False: "no"}[check_arg(hugepages)]


def check_arg(hugepages):
    """raises: ValueError unless hugepages is True, False or None (choose)."""
    if hugepages not in (True, False, None) or isinstance(hugepages, int) and not isinstance(hugepages, bool):
        raise ValueError("hugepages must be True, False or None (use them when usable), got %r" % (hugepages,))
    return hugepages


def shm_dir():
    """The directory of the shared region (ONVM_SHM_DIR), or None for a memfd."""
    d = os.environ.get(SHM_DIR_ENV)
    if not d:
        return None
    if not os.path.isabs(d) or not os.path.isdir(d):
        raise ValueError("%s=%r is not an absolute path of a directory" % (SHM_DIR_ENV, d))
    return d


def shared_problem(mb):
    """None if a shared region of mb MB can be had here, else what to do."""
    try:
        d = shm_dir()
    except ValueError as e:
        return str(e)
    if d is None:
        avail = _meminfo_mb("MemAvailable")
        if avail is not None and avail < mb:
            return ("the no-hugepage mode needs %d MB of shared memory and only %d MB of memory are available; "
                    "give the machine (or container: docker run --memory) more, or use a smaller hugepage_mb "
                    "and fewer mbufs" % (mb, avail))
        return None
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize // MIB
    if free < mb:
        return ("the no-hugepage mode needs %d MB of shared memory in %s and only %d MB are free there; in Docker "
                "start the container with --shm-size=%dm (its /dev/shm is 64 MB by default), or use a smaller "
                "hugepage_mb and fewer mbufs" % (mb, d, free, mb + 64))
    return None


def _meminfo_mb(key):
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == key:
                    return int(v.split()[0]) // 1024
    except OSError:
        pass
    return None


def choose(hugepages, mb):
    """Which memory a manager of mb MB uses.  hugepages: True, False, or
    None (ONVM_HUGEPAGES, else hugepages when usable).  returns: (True if
    hugepages, why: a short reason).  raises: OnvmError if the mode asked
    for cannot be had here (before anything starts), ValueError for bad input."""
    from .runtime import hugepage_budget_problem, hugepage_problem
    check_arg(hugepages)
    source = "hugepages=%s" % hugepages
    if hugepages is None:
        hugepages = from_env()
        source = "%s=%s" % (ENV, os.environ.get(ENV))
    if hugepages is True:
        problem = hugepage_problem(mb)
        if problem:
            raise OnvmError("hugepages were asked for (%s) but cannot be had: %s" % (source, problem))
        return True, "asked for (%s)" % source
    if hugepages is False:
        problem = shared_problem(mb)
        if problem:
            raise OnvmError(problem)
        return False, "asked for (%s)" % source
    problem = hugepage_problem(mb)
    if problem is None:
        return True, "%d MB of hugepages are free" % mb
    budget = hugepage_budget_problem(mb)
    if budget:
        # a budget is a limit the operator set (onvm hub), not a machine
        # without hugepages: ordinary memory must not be a way around it
        raise OnvmError(budget)
    shared = shared_problem(mb)
    if shared:
        raise OnvmError("no usable hugepages (%s), and %s" % (problem, shared))
    return False, "no usable hugepages: %s" % problem


def resolve(config):
    """A ManagerConfig's mode decided before anything starts (choose), with
    the one-line note printed when it is without hugepages.  returns:
    (the config with hugepages "yes" or "no", True if hugepages, why)."""
    import dataclasses
    huge, why = choose(from_word(config.hugepages), config.hugepage_mb)
    if not huge:
        print("onvm: " + note(config.name, why), flush=True)
    return dataclasses.replace(config, hugepages=to_word(huge)), huge, why


def note(name, why):
    """The one line a notebook shows when its manager runs without hugepages."""
    return ("manager %s runs without hugepages (packets in ordinary shared memory): %s"
            % (name, why))
