/* manager.c: the DPDK primary.  EAL init, the packet pool, the rings, the
 * control file; launches the RX and TX threads; the control tick.  Called
 * from Python (onvm/mgrd.py), which owns the socket and the main loop. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>

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

static struct rte_ring *ring_create(const char *fmt, unsigned i, unsigned size, unsigned flags)
{
	char name[RTE_RING_NAMESIZE];
	snprintf(name, sizeof(name), fmt, i);
	return rte_ring_create(name, size, rte_socket_id(), flags);
}

/* Every mbuf starts owned by the manager: a zeroed owner mark would name
 * NF slot 0, and its recovery scan would free packets that are already free. */
static void init_owner(struct rte_mempool *mp __rte_unused, void *arg __rte_unused, void *obj,
		       unsigned idx __rte_unused)
{
	onvm_meta(obj)->owner = ONVM_OWNER_MGR;
}

int onvm_mgr_init(int argc, char **argv, const char *shm_path, uint32_t nb_mbufs,
		  uint32_t nf_ring_size)
{
	struct onvm_mgr *m = &onvm_mgr;
	if (rte_eal_init(argc, argv) < 0) {
		onvm_set_error("DPDK EAL init failed: %s", rte_strerror(rte_errno));
		return -rte_errno;
	}
	m->shm = shm_create(shm_path);
	if (m->shm == NULL)
		return -errno;

	if (onvm_meta_field_init(true) < 0)
		return -ENOSPC;
	m->pool = rte_pktmbuf_pool_create(ONVM_POOL_NAME, nb_mbufs, RTE_MEMPOOL_CACHE_MAX_SIZE, 0,
					  RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (m->pool == NULL) {
		onvm_set_error("cannot create a pool of %u packets: %s (raise the hugepage budget)",
			       nb_mbufs, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	rte_mempool_obj_iter(m->pool, init_owner, NULL);
	m->msg_ring = rte_ring_create(ONVM_MSG_RING_NAME, 256, rte_socket_id(), RING_F_SC_DEQ);
	if (m->msg_ring == NULL) {
		onvm_set_error("cannot create the message ring: %s", rte_strerror(rte_errno));
		return -ENOMEM;
	}
	/* Every NF slot has its receive ring from the start: registering is
	 * then a state change, and a dead NF's ring can be drained at leisure.
	 * The RX thread and any NF produce; the NF alone consumes. */
	onvm_dp.shm = m->shm;
	for (unsigned i = 0; i < ONVM_MAX_NFS; i++) {
		onvm_dp.nf_rx[i] = ring_create(ONVM_NF_RX_RING_FMT, i, nf_ring_size, RING_F_SC_DEQ);
		if (onvm_dp.nf_rx[i] == NULL) {
			onvm_set_error("cannot create rings for NF slot %u: %s", i, rte_strerror(rte_errno));
			return -ENOMEM;
		}
	}
	struct onvm_shm *shm = m->shm;
	shm->pool_size = nb_mbufs;
	shm->nf_ring_size = nf_ring_size;
	shm->nb_rx_threads = 1;
	shm->nb_tx_threads = 1;
	shm->mgr_pid = getpid();
	for (unsigned i = 0; i < ONVM_MAX_NFS; i++) {
		shm->nfs[i].instance = i;
		shm->nfs[i].lcore = ONVM_LCORE_FIRST_NF + i;
	}
	return 0;
}

int onvm_mgr_add_port(unsigned kind, const char *devargs)
{
	return ports_add(kind, devargs);
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
	/* The main lcore (0) is the Python control loop; RX threads take the
	 * next lcores, then TX threads. */
	for (unsigned r = 0; r < shm->nb_rx_threads && ret == 0; r++)
		ret = rte_eal_remote_launch(rx_thread_main, (void *)(uintptr_t)r, 1 + r);
	for (unsigned t = 0; t < shm->nb_tx_threads && ret == 0; t++)
		ret = rte_eal_remote_launch(tx_thread_main, (void *)(uintptr_t)t, 1 + shm->nb_rx_threads + t);
	if (ret < 0) {
		onvm_set_error("cannot launch the RX/TX threads: %s", rte_strerror(-ret));
		return ret;
	}
	__atomic_store_n(&onvm_mgr.shm->ready, 1, __ATOMIC_RELEASE);
	return 0;
}

void onvm_mgr_tick(void)
{
	uint64_t now = onvm_now_ns();
	onvm_mgr.shm->tick_ns = now;
	registry_poll(now);
	stats_update();
}

int onvm_mgr_set_chain(const uint32_t *verdicts, uint32_t n)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	if (n > ONVM_MAX_CHAIN) {
		onvm_set_error("a chain has at most %d entries, got %u", ONVM_MAX_CHAIN, n);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		unsigned action = ONVM_VERDICT_ACTION(verdicts[i]), dest = ONVM_VERDICT_DEST(verdicts[i]);
		if (action == ONVM_TO_SERVICE && (dest == 0 || dest >= ONVM_MAX_SERVICES)) {
			onvm_set_error("chain entry %u: service ID %u is out of range 1..%d", i, dest,
				       ONVM_MAX_SERVICES - 1);
			return -EINVAL;
		}
		if (action == ONVM_TO_PORT && dest >= shm->nb_ports) {
			onvm_set_error("chain entry %u: port %u does not exist (ports: 0..%u)", i, dest,
				       shm->nb_ports - 1);
			return -ENODEV;
		}
		if (action != ONVM_TO_SERVICE && action != ONVM_TO_PORT) {
			onvm_set_error("chain entry %u: only services and ports may appear in a chain", i);
			return -EINVAL;
		}
	}
	unsigned next = !shm->active_chain;
	struct onvm_chain *c = &shm->chains[next];
	for (uint32_t i = 0; i < n; i++) {
		c->entries[i].action = ONVM_VERDICT_ACTION(verdicts[i]);
		c->entries[i].destination = ONVM_VERDICT_DEST(verdicts[i]);
	}
	c->length = n;
	__atomic_store_n(&shm->active_chain, next, __ATOMIC_RELEASE);
	return 0;
}

int onvm_mgr_stop_nfs(uint32_t timeout_ms)
{
	registry_stop_all();
	uint64_t deadline = onvm_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		onvm_mgr_tick();
		int left = 0;
		for (unsigned i = 0; i < ONVM_MAX_NFS; i++)
			left += onvm_mgr.shm->nfs[i].state != ONVM_NF_FREE;
		if (left == 0 || onvm_now_ns() > deadline)
			return left;
		usleep(10000);
	}
}

void onvm_mgr_shutdown(void)
{
	struct onvm_mgr *m = &onvm_mgr;
	if (m->shm == NULL)
		return;
	m->force_quit = true;
	onvm_bell_ring(&m->shm->rx_bell);
	onvm_bell_ring(&m->shm->tx_bell);
	/* Sleepers re-check force_quit at least every few ms (see rx.c, tx.c). */
	rte_eal_mp_wait_lcore();
	ports_stop();
	rte_eal_cleanup();
	m->shm = NULL;
}
