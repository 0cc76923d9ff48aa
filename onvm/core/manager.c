/* manager.c: the DPDK primary.  EAL init, the packet pool, the rings, the
 * exchange memzone and RCU state, the control file; launches the RX and TX
 * threads; the control tick.  Called from Python (onvm/mgr/daemon.py), which owns
 * the sockets and the main loop. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_memzone.h>
#include <rte_pdump.h>

#include "onvm_core.h"

struct onvm_mgr onvm_mgr;

static char last_error[256];

void onvm_set_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *onvm_last_error(void)
{
	return last_error;
}

/* Every mbuf starts owned by the manager: a zeroed owner mark would name
 * NF slot 0, and its recovery scan would free packets that are already free. */
static void init_owner(struct rte_mempool *mp __rte_unused, void *arg __rte_unused, void *obj,
		       unsigned idx __rte_unused)
{
	(void)mp;
	(void)arg;
	(void)idx;
	onvm_meta(obj)->owner = ONVM_OWNER_MGR;
}

static void *memzone(const char *name, size_t size)
{
	const struct rte_memzone *mz = rte_memzone_reserve(name, size, rte_socket_id(), 0);
	if (mz == NULL) {
		onvm_set_error("cannot reserve %zu bytes of hugepage memory for %s: %s", size, name,
			       rte_strerror(rte_errno));
		return NULL;
	}
	memset(mz->addr, 0, size);
	return mz->addr;
}

int onvm_mgr_init(int argc, char **argv, const char *shm_path, const char *stats_fmt, uint32_t nb_mbufs,
		  uint32_t nf_ring_size, uint32_t max_nfs)
{
	struct onvm_mgr *m = &onvm_mgr;
	if (max_nfs < 1 || max_nfs > ONVM_MAX_NFS) {
		onvm_set_error("max_nfs must be 1..%d, got %u", ONVM_MAX_NFS, max_nfs);
		return -EINVAL;
	}
	if (rte_eal_init(argc, argv) < 0) {
		onvm_set_error("DPDK EAL init failed: %s", rte_strerror(rte_errno));
		return -rte_errno;
	}
	/* DPDK's packet-capture framework, so dpdk-dumpcap and dpdk-pdump can
	 * record from our ports as from any DPDK primary: it answers their
	 * requests on the multi-process channel; costs nothing until one asks. */
	if (rte_pdump_init() < 0) {
		onvm_set_error("cannot enable DPDK packet capture (pdump): %s", rte_strerror(rte_errno));
		return -rte_errno;
	}
	m->shm = stats_create(shm_path);
	if (m->shm == NULL)
		return -errno;
	int ret = stats_create_nf_files(stats_fmt, max_nfs);
	if (ret < 0)
		return ret;

	if (router_meta_init(true) < 0)
		return -ENOSPC;
	m->rte.pool = rte_pktmbuf_pool_create(ONVM_POOL_NAME, nb_mbufs, RTE_MEMPOOL_CACHE_MAX_SIZE, 0,
					      RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (m->rte.pool == NULL) {
		onvm_set_error("cannot create a pool of %u packets: %s (raise the hugepage budget)",
			       nb_mbufs, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	rte_mempool_obj_iter(m->rte.pool, init_owner, NULL);

	m->xchg = memzone(ONVM_XCHG_NAME, sizeof(struct onvm_xchg));
	size_t rcu_size = rte_rcu_qsbr_get_memsize(ONVM_RCU_FIRST_NF + ONVM_MAX_NFS);
	struct rte_rcu_qsbr *rcu = memzone(ONVM_RCU_NAME, rcu_size);
	if (m->xchg == NULL || rcu == NULL)
		return -ENOMEM;
	if (rte_rcu_qsbr_init(rcu, ONVM_RCU_FIRST_NF + ONVM_MAX_NFS) != 0) {
		onvm_set_error("cannot set up the RCU state: %s", rte_strerror(rte_errno));
		return -EINVAL;
	}
	onvm_dp.shm = m->shm;
	onvm_dp.xchg = m->xchg;
	onvm_dp.rcu = rcu;

	/* Every NF slot has its receive ring from the start: registering is
	 * then a state change, and a dead NF's ring can be drained at leisure.
	 * The RX threads and any NF produce; the NF alone consumes. */
	for (unsigned i = 0; i < max_nfs; i++) {
		char name[RTE_RING_NAMESIZE];
		snprintf(name, sizeof(name), ONVM_NF_RX_RING_FMT, i);
		onvm_dp.nf_rx[i] = rte_ring_create(name, nf_ring_size, rte_socket_id(), RING_F_SC_DEQ);
		if (onvm_dp.nf_rx[i] == NULL) {
			onvm_set_error("cannot create the ring of NF slot %u: %s", i, rte_strerror(rte_errno));
			return -ENOMEM;
		}
	}
	struct onvm_shm *shm = m->shm;
	shm->pool_size = nb_mbufs;
	shm->nf_ring_size = nf_ring_size;
	shm->max_nfs = max_nfs;
	shm->nb_rx_threads = 1;
	shm->nb_tx_threads = 1;
	shm->mgr_pid = getpid();
	/* Empty tables: no instance anywhere, steering unconstrained until a
	 * deployment says otherwise. */
	for (unsigned t = 0; t < 2; t++) {
		shm->tables[t].hop_limit = ONVM_HOP_LIMIT;
		for (unsigned s = 0; s < ONVM_MAX_SERVICES; s++) {
			memset(shm->tables[t].services[s].reta, 0xff, ONVM_RETA_SIZE);
			shm->tables[t].steer[s].any = 1;
		}
	}
	return 0;
}

int onvm_mgr_add_port(unsigned kind, const char *devargs, const char *netns)
{
	return ports_add(kind, devargs, netns);
}

void onvm_mgr_set_busy_poll(int on)
{
	onvm_mgr.shm->busy_poll = !!on;
}

int onvm_mgr_set_threads(unsigned rx, unsigned tx)
{
	if (rx < 1 || rx > ONVM_MAX_THREADS || tx < 1 || tx > ONVM_MAX_THREADS) {
		onvm_set_error("RX and TX threads: 1..%d each, got %u and %u", ONVM_MAX_THREADS, rx, tx);
		return -EINVAL;
	}
	if (rte_lcore_count() < 1 + rx + tx) {
		onvm_set_error("%u RX and %u TX threads need %u lcores; EAL has %u", rx, tx, 1 + rx + tx,
			       rte_lcore_count());
		return -EINVAL;
	}
	onvm_mgr.shm->nb_rx_threads = rx;
	onvm_mgr.shm->nb_tx_threads = tx;
	return 0;
}

int onvm_mgr_start(void)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	int ret = ports_start();
	if (ret < 0)
		return ret;
	/* a tap's RX queue keeps mbufs filled in advance: "idle" is the pool back to this */
	shm->pool_held = rte_mempool_in_use_count(onvm_mgr.rte.pool);
	/* The main lcore (0) is the Python control loop; RX threads take the
	 * next lcores, then TX threads.  RX threads read the tables, so each
	 * is an RCU reader. */
	for (unsigned r = 0; r < shm->nb_rx_threads; r++)
		rte_rcu_qsbr_thread_register(onvm_dp.rcu, r);
	for (unsigned r = 0; r < shm->nb_rx_threads && ret == 0; r++)
		ret = rte_eal_remote_launch(rx_thread_main, (void *)(uintptr_t)r, 1 + r);
	for (unsigned t = 0; t < shm->nb_tx_threads && ret == 0; t++)
		ret = rte_eal_remote_launch(tx_thread_main, (void *)(uintptr_t)t, 1 + shm->nb_rx_threads + t);
	if (ret < 0) {
		onvm_set_error("cannot launch the RX/TX threads: %s", rte_strerror(-ret));
		return ret;
	}
	__atomic_store_n(&shm->ready, 1, __ATOMIC_RELEASE);
	return 0;
}

void onvm_mgr_tick(void)
{
	onvm_mgr.shm->tick_ns = onvm_now_ns();
	registry_tick();
	stats_update();
	flow_dir_tick();
}

void onvm_mgr_shutdown(void)
{
	struct onvm_mgr *m = &onvm_mgr;
	if (m->shm == NULL)
		return;
	m->force_quit = true;
	onvm_bell_ring(ports_rx_bell());
	onvm_bell_ring(&m->xchg->tx_bell);
	/* Sleepers re-check force_quit at least every 100 ms (see rx.c, tx.c). */
	rte_eal_mp_wait_lcore();
	ports_stop();
	rte_pdump_uninit();
	rte_eal_cleanup();
	m->shm = NULL;
}
