/* nflib.c: the NF library.  An NF is a DPDK secondary process: it claims a
 * slot in the manager's control file, joins the manager's DPDK instance,
 * registers its service over the message ring, then receives bursts from
 * its receive ring and hands each packet on according to its verdict:
 * straight into the next NF's receive ring or a port's TX ring. */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <rte_eal.h>
#include <rte_lcore.h>

#include "onvm_core.h"

#define REGISTER_TIMEOUT_NS 10000000000ull
#define MAX_SLEEP_NS 100000000ull /* re-check stop and the manager this often */

struct onvm_nf {
	struct onvm_shm *shm;
	struct onvm_nf_slot *slot;
	unsigned index;
	struct rte_ring *rx;
	struct rte_mempool *pool;
	uintptr_t pool_base, pool_end; /* where the pool's memory lies */
	struct onvm_router router;
	volatile sig_atomic_t stop;
	bool eal_ready;
};

/* Signals end the loop, not the process: the NF then unregisters. */
static struct onvm_nf *signalled_nf;

static void on_signal(int sig)
{
	(void)sig;
	if (signalled_nf)
		signalled_nf->stop = 1;
}

static bool manager_alive(const struct onvm_nf *nf)
{
	return kill(nf->shm->mgr_pid, 0) == 0 || errno != ESRCH;
}

static int claim_slot(struct onvm_nf *nf, uint16_t service, const char *name, const char *kind)
{
	uint64_t start = onvm_proc_start_time(getpid());
	for (unsigned i = 0; i < ONVM_MAX_NFS; i++) {
		struct onvm_nf_slot *s = &nf->shm->nfs[i];
		uint32_t expected = ONVM_NF_FREE;
		if (!__atomic_compare_exchange_n(&s->state, &expected, ONVM_NF_CLAIMED, false,
						  __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			continue;
		memset(&s->nf, 0, sizeof(s->nf));
		memset(&s->mgr, 0, sizeof(s->mgr));
		s->service = service;
		s->error = 0;
		s->stop = 0;
		s->start_time = start;
		snprintf(s->name, sizeof(s->name), "%s", name);
		snprintf(s->kind, sizeof(s->kind), "%s", kind);
		__atomic_store_n(&s->pid, getpid(), __ATOMIC_RELEASE);
		nf->slot = s;
		nf->index = i;
		return 0;
	}
	onvm_set_error("all %d NF slots are in use; stop an NF first", ONVM_MAX_NFS);
	return -ENOSPC;
}

static void widen_span(struct rte_mempool *mp __rte_unused, void *arg, struct rte_mempool_memhdr *memhdr,
		       unsigned idx __rte_unused)
{
	struct onvm_nf *nf = arg;
	uintptr_t start = (uintptr_t)memhdr->addr, end = start + memhdr->len;
	if (nf->pool_base == 0 || start < nf->pool_base)
		nf->pool_base = start;
	if (end > nf->pool_end)
		nf->pool_end = end;
}

void onvm_nf_pool_span(const struct onvm_nf *nf, uint64_t *base, uint64_t *len)
{
	*base = nf->pool_base;
	*len = nf->pool_end - nf->pool_base;
}

static int join_dpdk(struct onvm_nf *nf, const char *cpus, int argc, char **argv)
{
	char lcores[64];
	char *args[argc + 3];
	snprintf(lcores, sizeof(lcores), "--lcores=%u@(%s)", nf->slot->lcore, cpus);
	for (int i = 0; i < argc; i++)
		args[i] = argv[i];
	args[argc] = lcores;
	args[argc + 1] = (char *)"--proc-type=secondary";
	args[argc + 2] = NULL;
	if (rte_eal_init(argc + 2, args) < 0) {
		onvm_set_error("cannot join the manager's DPDK instance: %s (is the manager running?)",
			       rte_strerror(rte_errno));
		return -rte_errno;
	}
	nf->eal_ready = true;
	if (onvm_meta_field_init(false) < 0)
		return -ENOENT;
	char name[RTE_RING_NAMESIZE];
	nf->pool = rte_mempool_lookup(ONVM_POOL_NAME);
	/* Every ring this NF may hand packets to, for routing. */
	onvm_dp.shm = nf->shm;
	for (unsigned i = 0; i < ONVM_MAX_NFS; i++) {
		snprintf(name, sizeof(name), ONVM_NF_RX_RING_FMT, i);
		onvm_dp.nf_rx[i] = rte_ring_lookup(name);
	}
	for (unsigned p = 0; p < nf->shm->nb_ports; p++) {
		snprintf(name, sizeof(name), ONVM_PORT_TX_RING_FMT, p);
		onvm_dp.port_tx[p] = rte_ring_lookup(name);
	}
	nf->rx = onvm_dp.nf_rx[nf->index];
	rte_mempool_mem_iter(nf->pool, widen_span, nf);
	nf->router.self = (uint16_t)nf->index;
	if (nf->pool == NULL || nf->rx == NULL) {
		onvm_set_error("the manager's packet pool or rings are missing");
		return -ENOENT;
	}
	return 0;
}

static int register_service(struct onvm_nf *nf)
{
	struct rte_ring *msgs = rte_ring_lookup(ONVM_MSG_RING_NAME);
	if (msgs == NULL || rte_ring_mp_enqueue(msgs, ONVM_MSG(ONVM_MSG_REGISTER, nf->index)) != 0) {
		onvm_set_error("cannot reach the manager's message ring");
		return -EIO;
	}
	uint64_t deadline = onvm_now_ns() + REGISTER_TIMEOUT_NS;
	for (;;) {
		uint32_t state = __atomic_load_n(&nf->slot->state, __ATOMIC_ACQUIRE);
		if (state == ONVM_NF_RUNNING)
			return 0;
		if (state == ONVM_NF_REJECTED) {
			int err = nf->slot->error;
			if (err == -ENOSPC)
				onvm_set_error("service %u already has %d instances", nf->slot->service,
					       ONVM_MAX_INSTANCES);
			else
				onvm_set_error("the manager refused service ID %u (valid: 1..%d)",
					       nf->slot->service, ONVM_MAX_SERVICES - 1);
			return err ? err : -EINVAL;
		}
		if (onvm_now_ns() > deadline || !manager_alive(nf)) {
			onvm_set_error("the manager did not answer the registration");
			return -ETIMEDOUT;
		}
		usleep(1000);
	}
}

struct onvm_nf *onvm_nf_start(const char *shm_path, uint16_t service, const char *name,
			      const char *kind, const char *cpus, int argc, char **argv)
{
	if (service == 0 || service >= ONVM_MAX_SERVICES) {
		onvm_set_error("service ID %u is out of range 1..%d", service, ONVM_MAX_SERVICES - 1);
		return NULL;
	}
	struct onvm_nf *nf = calloc(1, sizeof(*nf));
	if (nf == NULL)
		return NULL;
	nf->shm = shm_attach(shm_path);
	if (nf->shm == NULL)
		goto fail;
	if (claim_slot(nf, service, name, kind) < 0)
		goto fail;
	if (join_dpdk(nf, cpus, argc, argv) < 0 || register_service(nf) < 0) {
		__atomic_store_n(&nf->slot->state, ONVM_NF_FREE, __ATOMIC_RELEASE);
		goto fail;
	}
	signalled_nf = nf;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return nf;
fail:
	if (nf->eal_ready)
		rte_eal_cleanup();
	if (nf->shm)
		munmap(nf->shm, sizeof(*nf->shm));
	free(nf);
	return NULL;
}

int onvm_nf_instance(const struct onvm_nf *nf)
{
	return (int)nf->index;
}

void onvm_nf_count_errors(struct onvm_nf *nf, uint32_t n)
{
	nf->slot->nf.errors += n;
}

static bool nf_has_work(void *arg)
{
	struct onvm_nf *nf = arg;
	return nf->stop || nf->slot->stop || rte_ring_count(nf->rx) > 0;
}

static inline bool should_stop(struct onvm_nf *nf)
{
	return nf->stop || __atomic_load_n(&nf->slot->stop, __ATOMIC_ACQUIRE);
}

/* Dequeue a burst; poll briefly when empty, then sleep on the doorbell.
 * Returns 0 at timeout so Python can look at signals and the time. */
static unsigned rx_burst(struct onvm_nf *nf, struct rte_mbuf **pkts, uint32_t timeout_ms, int *stop)
{
	uint64_t start = 0, timeout_ns = (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		if (unlikely(should_stop(nf))) {
			*stop = 1;
			return 0;
		}
		unsigned n = rte_ring_sc_dequeue_burst(nf->rx, (void **)pkts, ONVM_BURST, NULL);
		if (likely(n))
			return n;
		uint64_t now = onvm_now_ns();
		if (start == 0)
			start = now;
		uint64_t idle = now - start;
		if (idle < ONVM_SPIN_NS || (nf->shm->busy_poll && idle < timeout_ns)) {
			onvm_idle_turn(nf->shm->busy_poll);
			continue;
		}
		if (idle >= timeout_ns)
			return 0;
		uint64_t left = timeout_ns - idle;
		nf->slot->nf.wakeups++;
		onvm_bell_sleep(&nf->slot->bell, nf_has_work, nf, RTE_MIN(left, MAX_SLEEP_NS));
		if (!manager_alive(nf)) {
			*stop = 1;
			return 0;
		}
		if (rte_ring_count(nf->rx) == 0)
			return 0; /* timeout or signal: let the caller look */
	}
}

int onvm_nf_rx_burst(struct onvm_nf *nf, struct rte_mbuf **pkts, uint32_t timeout_ms)
{
	int stop = 0;
	unsigned n = rx_burst(nf, pkts, timeout_ms, &stop);
	if (stop)
		return -1;
	nf->slot->nf.rx += n;
	return (int)n;
}

int onvm_nf_rx(struct onvm_nf *nf, struct onvm_batch *b, uint32_t timeout_ms)
{
	struct rte_mbuf **pkts = (struct rte_mbuf **)b->mbufs;
	int n = onvm_nf_rx_burst(nf, pkts, timeout_ms);
	b->count = n > 0 ? (uint32_t)n : 0;
	for (int i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		struct onvm_pkt_meta *meta = onvm_meta(m);
		/* Python sees one contiguous buffer; chained mbufs are rare on
		 * virtual ports and get joined here when they fit. */
		if (unlikely(m->nb_segs > 1))
			rte_pktmbuf_linearize(m);
		b->off[i] = rte_pktmbuf_mtod(m, uintptr_t) - nf->pool_base;
		b->len[i] = m->data_len;
		b->port[i] = meta->in_port;
		b->hash[i] = meta->hash;
		b->verdict[i] = ONVM_VERDICT(ONVM_NEXT, 0);
	}
	return n;
}

/* Route packets whose meta holds their action; count what happened. */
static unsigned hand_on(struct onvm_nf *nf, struct rte_mbuf **pkts, unsigned n)
{
	struct onvm_router *r = &nf->router;
	struct onvm_nf_stats *st = &nf->slot->nf;
	for (unsigned i = 0; i < n; i++)
		router_route(r, pkts[i], &st->refused, &st->chain_end);
	router_flush(r);
	unsigned sent = (unsigned)r->sent;
	st->tx += r->sent;
	st->tx_drop += r->dropped;
	r->sent = r->dropped = 0;
	return sent;
}

unsigned onvm_nf_tx_burst(struct onvm_nf *nf, struct rte_mbuf **pkts, const uint32_t *verdicts, unsigned count)
{
	struct rte_mbuf *out[ONVM_BURST], *drop[ONVM_BURST];
	uint64_t *act = nf->slot->nf.act;
	unsigned n = 0, nb_drop = 0;
	for (unsigned i = 0; i < count; i++) {
		struct rte_mbuf *m = pkts[i];
		uint32_t v = verdicts[i];
		unsigned action = ONVM_VERDICT_ACTION(v);
		if (unlikely(action >= ONVM_NB_ACTIONS)) {
			nf->slot->nf.errors++;
			action = ONVM_DROP;
		}
		act[action]++;
		struct onvm_pkt_meta *meta = onvm_meta(m);
		if (action == ONVM_DROP) {
			meta->owner = ONVM_OWNER_MGR; /* see onvm_free_pkt */
			drop[nb_drop++] = m;
			continue;
		}
		meta->action = (uint8_t)action;
		meta->destination = ONVM_VERDICT_DEST(v);
		out[n++] = m;
	}
	if (nb_drop)
		rte_pktmbuf_free_bulk(drop, nb_drop);
	return hand_on(nf, out, n);
}

int onvm_nf_tx(struct onvm_nf *nf, struct onvm_batch *b)
{
	unsigned n = b->count;
	b->count = 0;
	return (int)onvm_nf_tx_burst(nf, (struct rte_mbuf **)b->mbufs, b->verdict, n);
}

/* Hand on packets the NF made (generate); their meta is already set. */
int onvm_nf_send_new(struct onvm_nf *nf, struct rte_mbuf **pkts, unsigned n)
{
	nf->slot->nf.created += n;
	return (int)hand_on(nf, pkts, n);
}

struct rte_mempool *onvm_nf_pool(struct onvm_nf *nf) { return nf->pool; }
struct onvm_nf_slot *onvm_nf_slot(struct onvm_nf *nf) { return nf->slot; }
struct onvm_shm *onvm_nf_shm(struct onvm_nf *nf) { return nf->shm; }
bool onvm_nf_should_stop(struct onvm_nf *nf) { return should_stop(nf) || !manager_alive(nf); }

void onvm_nf_finish(struct onvm_nf *nf)
{
	if (nf == NULL)
		return;
	struct rte_ring *msgs = rte_ring_lookup(ONVM_MSG_RING_NAME);
	if (msgs)
		rte_ring_mp_enqueue(msgs, ONVM_MSG(ONVM_MSG_UNREGISTER, nf->index));
	/* Wait until the manager no longer routes to us, then hand back the
	 * packets still queued for us and our pool cache. */
	uint64_t deadline = onvm_now_ns() + 1000000000ull;
	while (__atomic_load_n(&nf->slot->state, __ATOMIC_ACQUIRE) == ONVM_NF_RUNNING &&
	       onvm_now_ns() < deadline && manager_alive(nf))
		usleep(1000);
	struct rte_mempool_cache *cache = rte_mempool_default_cache(nf->pool, rte_lcore_id());
	if (cache)
		rte_mempool_cache_flush(cache, nf->pool);
	signalled_nf = NULL;
	rte_eal_cleanup();
	munmap(nf->shm, sizeof(*nf->shm));
	free(nf);
}
