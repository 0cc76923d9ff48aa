"""cffi (API mode) builder for onvm._core: the C manager, NF library and
native NFs, compiled against the system DPDK found by pkg-config."""
import os
import shlex
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CORE = os.path.join(HERE, "core")
SOURCES = ["manager.c", "ports.c", "rx.c", "tx.c", "nf_registry.c", "services.c",
           "stats.c", "nflib.c", "native_nfs.c"]


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "libdpdk"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            "onvm needs DPDK 22.11 found by pkg-config (libdpdk.pc): "
            "apt-get install libdpdk-dev pkg-config") from e
    return shlex.split(out)


# What Python sees.  Structs end in "...;" so cffi takes their real layout
# (alignment attributes included) from the C compiler.
CDEF = """
#define ONVM_MAX_NFS ...
#define ONVM_MAX_SERVICES ...
#define ONVM_MAX_INSTANCES ...
#define ONVM_MAX_PORTS ...
#define ONVM_MAX_CHAIN ...
#define ONVM_BURST ...
#define ONVM_SHM_MAGIC ...
#define ONVM_SHM_VERSION ...
#define ONVM_NB_ACTIONS ...
#define ONVM_LCORE_FIRST_NF ...
#define ONVM_MAX_THREADS ...

enum onvm_action { ONVM_NEXT, ONVM_DROP, ONVM_TO_SERVICE, ONVM_TO_PORT, ... };
enum onvm_nf_state { ONVM_NF_FREE, ONVM_NF_CLAIMED, ONVM_NF_RUNNING, ONVM_NF_REJECTED,
                     ONVM_NF_ZOMBIE, ... };
enum onvm_port_kind { ONVM_PORT_RING, ONVM_PORT_NULL, ONVM_PORT_PCAP, ONVM_PORT_TAP,
                      ONVM_PORT_PCI, ... };

struct onvm_doorbell { uint32_t seq; uint32_t sleeping; ...; };
struct onvm_nf_stats { uint64_t rx; uint64_t tx; uint64_t tx_drop; uint64_t refused;
    uint64_t chain_end; uint64_t act[4];
    uint64_t errors; uint64_t created; uint64_t wakeups; uint64_t app[4]; ...; };
struct onvm_nf_mgr_stats { uint64_t rx_drop; uint64_t recovered; ...; };
struct onvm_port_rx_stats { uint64_t rx; uint64_t rx_drop; uint64_t rx_refused; ...; };
struct onvm_port_tx_stats { uint64_t tx; uint64_t tx_drop; ...; };
struct onvm_port_ctl_stats { uint64_t injected; uint64_t inject_drop; uint64_t captured;
    uint64_t capture_drop; ...; };
struct onvm_thread_stats { uint64_t loops; uint64_t sleeps; ...; };

struct onvm_nf_slot {
    uint32_t state; uint16_t service; uint16_t instance; int32_t pid; int32_t error;
    uint64_t start_time; uint32_t stop; uint32_t lcore; uint64_t zombie_since_ns;
    char name[32]; char kind[16];
    struct onvm_doorbell bell;
    struct onvm_nf_stats nf;
    struct onvm_nf_mgr_stats mgr;
    ...;
};

struct onvm_port_slot {
    uint32_t kind; uint16_t ethdev; uint16_t used; uint32_t rx_enabled; char name[48]; uint8_t mac[6];
    struct onvm_port_rx_stats rx;
    struct onvm_port_tx_stats tx;
    struct onvm_port_ctl_stats ctl;
    ...;
};

struct onvm_service { uint16_t count; uint16_t slots[16]; ...; };
struct onvm_chain_entry { uint16_t action; uint16_t destination; ...; };
struct onvm_chain { uint32_t length; struct onvm_chain_entry entries[16]; ...; };

struct onvm_shm {
    uint32_t magic; uint32_t version; int32_t mgr_pid; uint32_t ready; uint32_t nb_ports;
    uint32_t pool_size; uint32_t nb_rx_threads; uint32_t nb_tx_threads; uint32_t nf_ring_size; uint32_t busy_poll;
    char prefix[64];
    uint32_t pool_in_use; uint32_t active_chain; uint64_t tick_ns;
    struct onvm_chain chains[2];
    struct onvm_service services[64];
    struct onvm_doorbell rx_bell; struct onvm_doorbell tx_bell;
    struct onvm_thread_stats rx_threads[3];
    struct onvm_thread_stats tx_threads[3];
    struct onvm_port_slot ports[8];
    struct onvm_nf_slot nfs[32];
    ...;
};

const char *onvm_last_error(void);

int onvm_mgr_init(int argc, char **argv, const char *shm_path, uint32_t nb_mbufs,
                  uint32_t nf_ring_size);
int onvm_mgr_add_port(unsigned kind, const char *devargs);
int onvm_mgr_start(void);
void onvm_mgr_set_busy_poll(int on);
int onvm_mgr_set_threads(unsigned rx, unsigned tx);
void onvm_mgr_tick(void);
int onvm_mgr_enable_rx(uint16_t port);
int onvm_mgr_inject(uint16_t port, const uint8_t *buf, const uint32_t *lens, uint32_t n);
int onvm_mgr_drain(uint16_t port, uint8_t *buf, uint32_t buflen, uint32_t *lens, uint32_t max);
int onvm_mgr_set_chain(const uint32_t *verdicts, uint32_t n);
int onvm_mgr_stop_nfs(uint32_t timeout_ms);
void onvm_mgr_shutdown(void);

struct onvm_nf;
struct onvm_batch {
    uint32_t count; void *mbufs[32]; uint64_t off[32]; uint16_t len[32]; uint16_t port[32];
    uint32_t hash[32]; uint32_t verdict[32];
};
struct onvm_nf *onvm_nf_start(const char *shm_path, uint16_t service, const char *name,
                              const char *kind, const char *cpus, int argc, char **argv);
int onvm_nf_rx(struct onvm_nf *nf, struct onvm_batch *b, uint32_t timeout_ms);
int onvm_nf_tx(struct onvm_nf *nf, struct onvm_batch *b);
void onvm_nf_pool_span(const struct onvm_nf *nf, uint64_t *base, uint64_t *len);
void onvm_nf_count_errors(struct onvm_nf *nf, uint32_t n);
int onvm_nf_instance(const struct onvm_nf *nf);
int onvm_nf_run_native(struct onvm_nf *nf, const char *name, const char *args);
void onvm_nf_finish(struct onvm_nf *nf);
"""

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
    # --no-as-needed: the ring PMD is only referenced by name at run time.
    extra_link_args=_san_link + _libs + ["-Wl,--no-as-needed", "-lrte_net_ring"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, ".."), verbose=True)
