"""cffi (API mode) builder for onvm._core: the C manager, NF library and
native NFs, compiled against the system DPDK found by pkg-config."""
import importlib.util
import os
import shlex
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CORE = os.path.join(HERE, "core")


def _load_headers():
    """onvm/_headers.py, the header reader (loaded by path: setuptools runs
    this file outside the onvm package, and onvm's own __init__ must not run)."""
    spec = importlib.util.spec_from_file_location("_onvm_headers", os.path.join(HERE, "_headers.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_headers = _load_headers()
cdef_from_headers = _headers.cdef_from_headers
# the pure-Python constants (onvm/common/limits.py) follow the headers at every build
_headers.write_limits()
SOURCES = ["manager.c", "ports.c", "rx.c", "tx.c", "router.c", "nf_registry.c", "services.c",
           "stats.c", "nflib.c", "native_nfs.c", "capring.c", "capture.c", "flow_dir.c", "trace.c",
           "xmem.c"]


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "libdpdk"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            "onvm needs DPDK 22.11 found by pkg-config (libdpdk.pc): "
            "apt-get install libdpdk-dev pkg-config") from e
    return shlex.split(out)


CDEF = cdef_from_headers()

ffibuilder = FFI()
ffibuilder.cdef(CDEF)

def system_includes(flags):
    """DPDK's -I flags as -isystem: -Werror then holds onvm's own code to
    account, not the DPDK headers of whatever version is installed."""
    out = []
    for f in flags:
        out.append("-isystem" + f[2:] if f.startswith("-I") else f)
    return out


# ONVM_SANITIZE=1 builds with ASan and UBSan for the sanitized test run
# (scripts/sanitize.sh).  The interpreter is not instrumented, so every
# process that imports onvm._core needs libasan preloaded; see that script.
SANITIZE = os.environ.get("ONVM_SANITIZE", "") not in ("", "0")
# ONVM_WERROR=0 is an escape hatch for a compiler newer than ours that
# finds a new warning: the build should not fail for a user over that.
WERROR = os.environ.get("ONVM_WERROR", "1") not in ("", "0")

_cflags = system_includes(pkg_config("--cflags"))
_libs = pkg_config("--libs")
_warn = ["-Wall", "-Wextra"] + (["-Werror"] if WERROR else [])
if SANITIZE:
    # -O1 keeps reports readable; UB aborts instead of printing and going on,
    # so a report cannot scroll by in a passing run.
    _opt = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all"]
    _san_link = ["-fsanitize=address,undefined"]
else:
    _opt = ["-O3"]
    _san_link = []
ffibuilder.set_source(
    "onvm._core",
    '#include "onvm_shm.h"\n#include "onvm_api.h"\n',
    sources=[os.path.relpath(os.path.join(CORE, s)) for s in SOURCES],
    include_dirs=[CORE],
    extra_compile_args=_cflags + _opt + ["-std=gnu11"] + _warn + ["-DALLOW_EXPERIMENTAL_API"],
    # --no-as-needed: the ring PMD is only referenced by name at run time;
    # the ring mempool driver is loaded with us, before EAL loads its plugin
    # dir in readdir order, so its ops get the same index in every process
    # (a container's directory order differs from the host's).
    extra_link_args=_san_link + _libs + ["-Wl,--no-as-needed", "-lrte_net_ring", "-lrte_mempool_ring", "-lpcap"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, ".."), verbose=True)
