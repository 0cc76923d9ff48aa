/* nflib.c: the NF library.  An NF is a DPDK secondary process.  The manager
 * gives it a slot over the NF socket (nfrun.py does that part); here it maps
 * the control file read-only and its own stats file read-write, joins the
 * manager's DPDK instance, then receives bursts from its receive ring and
 * hands each packet on according to its verdict: straight into the next
 * NF's receive ring or a port's TX ring. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_memzone.h>

#include "onvm_core.h"

#define MAX_SLEEP_NS 100000000ull    /* re-check stop and the manager this often */
#define MGR_CHECK_NS 10000000ull     /* look at the manager's socket at most this often */
/* How long the watchdog lets an NF whose manager is gone leave by itself
 * (its loop notices within MGR_CHECK_NS) before ending the process. */
#define WATCHDOG_GRACE_MS 250
/* EAL lcore of NFs in slots with no lcore of their own: taken for rte_eal_init
 * only (the manager uses 0..2*ONVM_MAX_THREADS), then dropped. */
#define SPARE_LCORE 7

struct onvm_nf {
	const struct onvm_shm *shm;     /* the manager's: read-only */
	const struct onvm_nf_slot *slot;
	struct onvm_nf_stats *stats;    /* ours alone */
	struct onvm_doorbell *bell;
	unsigned index;
	int mgr_fd;
	bool mgr_gone;
	uint64_t mgr_checked_ns;
	struct rte_ring *rx;
	struct rte_mempool *pool;
	uintptr_t pool_base, pool_end;  /* where the pool's memory lies */
	struct onvm_router router;
	volatile sig_atomic_t stop;
	bool eal_ready;
	bool draining;                  /* out of service: only empty the ring */
	uint64_t drain_deadline_ns;
	uint32_t wakeup;                /* onvm_nf_wake: rx returns at once */
	struct onvm_spin spin;          /* how long rx polls an empty ring (onvm_core.h) */
	/* Packets the NF holds back (onvm_nf_park): still owner-marked with
	 * its slot, so if it dies the manager's recovery frees them. */
	struct rte_mbuf *parked[ONVM_NF_PARK_MAX];
	uint32_t park_free[ONVM_NF_PARK_MAX]; /* a stack of free handles */
	uint32_t nb_park_free;
	uint32_t batch_parked;          /* entries of the current batch taken out */
	pthread_t watchdog;
	int watchdog_stop[2];           /* a pipe: onvm_nf_finish writes, the watchdog wakes */
	bool watching;
};

int onvm_spin_fixed;

static void __attribute__((constructor)) spin_mode_from_env(void)
{
	const char *e = getenv("ONVM_SPIN");
	onvm_spin_fixed = e != NULL && strcmp(e, "fixed") == 0;
}

/* The most a leaving NF spends on its ring: a working NF empties a full ring in
 * milliseconds; an overloaded one (a ring of a slow NF's backlog) must still exit
 * well before stop()'s 5 s timeout kills it.  What is left, the manager frees
 * and counts as recovered. */
#define DRAIN_NS 1000000000ull

/* Signals end the loop, not the process: the NF then leaves cleanly. */
static struct onvm_nf *signalled_nf;

static void on_signal(int sig)
{
	(void)sig;
	if (signalled_nf)
		signalled_nf->stop = 1;
}

/* The manager is gone when our connection to it is closed.  That works
 * whatever PID namespace either side is in, and costs one poll() per
 * MGR_CHECK_NS at most. */
static bool manager_alive(struct onvm_nf *nf)
{
	if (nf->mgr_gone)
		return false;
	uint64_t now = onvm_now_ns();
	if (now - nf->mgr_checked_ns < MGR_CHECK_NS)
		return true;
	nf->mgr_checked_ns = now;
	struct pollfd p = {.fd = nf->mgr_fd, .events = POLLIN | POLLRDHUP};
	if (poll(&p, 1, 0) <= 0)
		return true;
	if (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) {
		nf->mgr_gone = true;
	} else if (p.revents & POLLIN) {
		char c;
		if (recv(nf->mgr_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
			nf->mgr_gone = true;
	}
	return !nf->mgr_gone;
}

/* The watchdog thread: it sleeps in poll() on the manager's socket, and
 * when the manager is gone (even killed with SIGKILL) while the NF does not
 * come back from its code (a Python callback in an endless loop, or
 * asleep), it ends the process: an NF never outlives its manager by more
 * than WATCHDOG_GRACE_MS.  The NF's own loop notices first when it can, and
 * leaves cleanly; onvm_nf_finish stops the watchdog. */
static void *watchdog_main(void *arg)
{
	struct onvm_nf *nf = arg;
	struct pollfd p[2] = {{.fd = nf->mgr_fd, .events = POLLRDHUP}, {.fd = nf->watchdog_stop[0], .events = POLLIN}};
	for (;;) {
		int n = poll(p, 2, -1);
		if (n < 0 && errno != EINTR)
			return NULL;
		if (p[1].revents)
			return NULL;
		if (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
			break;
	}
	if (poll(&p[1], 1, WATCHDOG_GRACE_MS) > 0)
		return NULL; /* it finished by itself */
	static const char msg[] = "onvm NF: the manager is gone and the NF's code does not return; exiting\n";
	ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)w;
	_exit(3);
}

static void watchdog_start(struct onvm_nf *nf)
{
	if (nf->mgr_fd < 0 || pipe2(nf->watchdog_stop, O_CLOEXEC) < 0)
		return;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay the main thread's */
	nf->watching = pthread_create(&nf->watchdog, NULL, watchdog_main, nf) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!nf->watching) {
		close(nf->watchdog_stop[0]);
		close(nf->watchdog_stop[1]);
	}
}

static void watchdog_stop(struct onvm_nf *nf)
{
	if (!nf->watching)
		return;
	char c = 1;
	ssize_t w = write(nf->watchdog_stop[1], &c, 1);
	(void)w;
	pthread_join(nf->watchdog, NULL);
	close(nf->watchdog_stop[0]);
	close(nf->watchdog_stop[1]);
	nf->watching = false;
}

static void widen_span(struct rte_mempool *mp __rte_unused, void *arg, struct rte_mempool_memhdr *memhdr,
		       unsigned idx __rte_unused)
{
	(void)mp;
	(void)idx;
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

static void *lookup_memzone(const char *name)
{
	const struct rte_memzone *mz = rte_memzone_lookup(name);
	return mz ? mz->addr : NULL;
}

/* The no-hugepage mode's region (xmem.c), from onvm_nf_use_xmem: -1 with hugepages. */
static int xmem_fd = -1;

void onvm_nf_use_xmem(int fd)
{
	xmem_fd = fd;
}

static int join_dpdk(struct onvm_nf *nf, const char *cpus, int argc, char **argv)
{
	char lcores[64];
	char *args[argc + 3];
	unsigned lcore = nf->slot->lcore == ONVM_LCORE_NONE ? SPARE_LCORE : nf->slot->lcore;
	snprintf(lcores, sizeof(lcores), "--lcores=%u@(%s)", lcore, cpus);
	for (int i = 0; i < argc; i++)
		args[i] = argv[i];
	args[argc] = lcores;
	/* Without hugepages, an EAL of our own (argv says --no-huge --no-shconf). */
	args[argc + 1] = xmem_fd < 0 ? (char *)"--proc-type=secondary" : NULL;
	args[argc + 2] = NULL;
	if (rte_eal_init(xmem_fd < 0 ? argc + 2 : argc + 1, args) < 0) {
		onvm_set_error("cannot %s: %s (is the manager running?)",
			       xmem_fd < 0 ? "join the manager's DPDK instance" : "start DPDK without hugepages",
			       rte_strerror(rte_errno));
		return -rte_errno;
	}
	nf->eal_ready = true;
	/* No pool cache of our own: run as a thread with no lcore, so the pool
	 * is used without a cache rather than sharing another process's. */
	if (nf->slot->lcore == ONVM_LCORE_NONE)
		rte_thread_unregister();
	onvm_dp.shm = nf->shm;
	if (xmem_fd >= 0) {
		struct rte_ring *taps[ONVM_MAX_TAPS];
		if (xmem_attach(xmem_fd, &nf->pool, taps) < 0 || capture_attach(false, nf->pool, taps) < 0)
			return -ENOENT;
		goto attached;
	}
	if (router_meta_init(false) < 0)
		return -ENOENT;
	nf->pool = rte_mempool_lookup(ONVM_POOL_NAME);
	onvm_dp.xchg = lookup_memzone(ONVM_XCHG_NAME);
	onvm_dp.rcu = lookup_memzone(ONVM_RCU_NAME);
	if (nf->pool == NULL || onvm_dp.xchg == NULL || onvm_dp.rcu == NULL) {
		onvm_set_error("the manager's packet pool or shared state is missing");
		return -ENOENT;
	}
	/* Every ring this NF may hand packets to, for routing. */
	char name[RTE_RING_NAMESIZE];
	for (unsigned i = 0; i < nf->shm->max_nfs; i++) {
		snprintf(name, sizeof(name), ONVM_NF_RX_RING_FMT, i);
		onvm_dp.nf_rx[i] = rte_ring_lookup(name);
		if (onvm_dp.nf_rx[i] == NULL) {
			onvm_set_error("the manager's ring %s is missing", name);
			return -ENOENT;
		}
	}
	for (unsigned p = 0; p < nf->shm->nb_ports && p < ONVM_MAX_PORTS; p++) {
		snprintf(name, sizeof(name), ONVM_PORT_TX_RING_FMT, p);
		onvm_dp.port_tx[p] = rte_ring_lookup(name);
		if (onvm_dp.port_tx[p] == NULL) {
			onvm_set_error("the manager's ring %s is missing", name);
			return -ENOENT;
		}
	}
	if (capture_attach(false, nf->pool, NULL) < 0)
		return -ENOENT;
attached:
	nf->rx = onvm_dp.nf_rx[nf->index];
	nf->bell = &onvm_dp.xchg->nf_bell[nf->index];
	if (xmem_fd >= 0)
		xmem_range(&nf->pool_base, &nf->pool_end);
	else
		rte_mempool_mem_iter(nf->pool, widen_span, nf);
	nf->router.self = (uint16_t)nf->index;
	nf->router.rcu_id = (uint16_t)(ONVM_RCU_FIRST_NF + nf->index);
	return 0;
}

struct onvm_nf *onvm_nf_start(int shm_fd, int stats_fd, uint16_t slot, int mgr_fd,
			      const char *cpus, int argc, char **argv)
{
	struct onvm_nf *nf = calloc(1, sizeof(*nf));
	if (nf == NULL) {
		onvm_set_error("out of memory");
		return NULL;
	}
	nf->mgr_fd = mgr_fd;
	nf->spin.gap = ONVM_SPIN_COLD;
	for (uint32_t h = 0; h < ONVM_NF_PARK_MAX; h++)
		nf->park_free[h] = ONVM_NF_PARK_MAX - 1 - h;
	nf->nb_park_free = ONVM_NF_PARK_MAX;
	nf->shm = stats_map_fd(shm_fd, sizeof(struct onvm_shm), false, "the control file");
	if (nf->shm == NULL)
		goto fail;
	if (nf->shm->magic != ONVM_SHM_MAGIC || nf->shm->version != ONVM_SHM_VERSION ||
	    !__atomic_load_n(&nf->shm->ready, __ATOMIC_ACQUIRE)) {
		onvm_set_error("the manager is not ready (or of another onvm version)");
		goto fail;
	}
	if (slot >= nf->shm->max_nfs || nf->shm->nfs[slot].state != ONVM_NF_CLAIMED) {
		onvm_set_error("NF slot %u was not given to this NF", slot);
		goto fail;
	}
	nf->index = slot;
	nf->slot = &nf->shm->nfs[slot];
	nf->stats = stats_map_fd(stats_fd, sizeof(struct onvm_nf_stats), true, "the NF's stats file");
	if (nf->stats == NULL)
		goto fail;
	if (join_dpdk(nf, cpus, argc, argv) < 0)
		goto fail;
	signalled_nf = nf;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	watchdog_start(nf);
	return nf;
fail:
	if (nf->eal_ready)
		rte_eal_cleanup();
	if (nf->stats)
		munmap(nf->stats, sizeof(struct onvm_nf_stats));
	if (nf->shm)
		munmap((void *)nf->shm, sizeof(struct onvm_shm));
	free(nf);
	return NULL;
}

void onvm_nf_count_errors(struct onvm_nf *nf, uint32_t n)
{
	nf->stats->errors += n;
}

void onvm_nf_set_log_dropped(struct onvm_nf *nf, uint64_t total)
{
	nf->stats->log_dropped = total;
}

static inline bool should_stop(struct onvm_nf *nf)
{
	if (unlikely(nf->draining))
		return rte_ring_count(nf->rx) == 0 || onvm_now_ns() > nf->drain_deadline_ns;
	return nf->stop || __atomic_load_n(&nf->slot->stop, __ATOMIC_ACQUIRE);
}

void onvm_nf_drain(struct onvm_nf *nf)
{
	nf->draining = true;
	nf->drain_deadline_ns = onvm_now_ns() + DRAIN_NS;
}

static bool nf_has_work(void *arg)
{
	struct onvm_nf *nf = arg;
	return should_stop(nf) || rte_ring_count(nf->rx) > 0 || __atomic_load_n(&nf->wakeup, __ATOMIC_ACQUIRE);
}

void onvm_nf_wake(struct onvm_nf *nf)
{
	__atomic_store_n(&nf->wakeup, 1, __ATOMIC_RELEASE);
	onvm_bell_ring(nf->bell);
}

/* Dequeue up to max packets, what the ring holds now; poll briefly when
 * empty, then sleep on the doorbell.  Returns 0 at timeout so Python can
 * look at signals and the time. */
static unsigned rx_burst(struct onvm_nf *nf, struct rte_mbuf **pkts, unsigned max, uint32_t timeout_ms, int *stop)
{
	uint64_t start = 0, timeout_ns = (uint64_t)timeout_ms * 1000000ull;
	bool busy = nf->shm->busy_poll;
	for (;;) {
		if (unlikely(should_stop(nf))) {
			*stop = 1;
			return 0;
		}
		if (unlikely(__atomic_load_n(&nf->wakeup, __ATOMIC_ACQUIRE))) {
			__atomic_store_n(&nf->wakeup, 0, __ATOMIC_RELAXED);
			return 0; /* the caller has other work (onvm_nf_wake) */
		}
		unsigned n = rte_ring_sc_dequeue_burst(nf->rx, (void **)pkts, max, NULL);
		if (likely(n)) {
			onvm_spin_work(&nf->spin);
			return n;
		}
		uint64_t now = onvm_now_ns();
		if (start == 0)
			start = now;
		uint64_t waited = now - start; /* in this call: timeout_ms bounds it */
		uint64_t idle = onvm_spin_idle(&nf->spin, now);
		if ((idle < onvm_spin_budget(&nf->spin) && waited < timeout_ns) || (busy && waited < timeout_ns)) {
			onvm_idle_turn(busy);
			continue;
		}
		if (!manager_alive(nf)) {
			*stop = 1;
			return 0;
		}
		if (waited >= timeout_ns)
			return 0;
		uint64_t left = timeout_ns - waited;
		nf->stats->wakeups++;
		onvm_bell_sleep(nf->bell, nf_has_work, nf, RTE_MIN(left, MAX_SLEEP_NS));
		if (rte_ring_count(nf->rx) == 0)
			return 0; /* timeout or signal: let the caller look */
	}
}

static int rx_counted(struct onvm_nf *nf, struct rte_mbuf **pkts, unsigned max, uint32_t timeout_ms)
{
	int stop = 0;
	unsigned n = rx_burst(nf, pkts, max, timeout_ms, &stop);
	if (stop)
		return -1;
	nf->stats->rx += n;
	return (int)n;
}

int onvm_nf_rx_burst(struct onvm_nf *nf, struct rte_mbuf **pkts, uint32_t timeout_ms)
{
	return rx_counted(nf, pkts, ONVM_BURST, timeout_ms);
}

int onvm_nf_rx(struct onvm_nf *nf, struct onvm_batch *b, uint32_t timeout_ms)
{
	struct rte_mbuf **pkts = (struct rte_mbuf **)b->mbufs;
	unsigned max = b->max == 0 ? ONVM_BURST : RTE_MIN(b->max, (uint32_t)ONVM_BATCH_MAX);
	int n = rx_counted(nf, pkts, max, timeout_ms);
	b->count = n > 0 ? (uint32_t)n : 0;
	for (int i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		struct onvm_pkt_meta *meta = onvm_meta(m);
		/* Python sees one contiguous buffer; chained mbufs are rare on
		 * virtual ports and get joined here when they fit.  One that
		 * cannot be joined is shown as its first segment. */
		if (unlikely(m->nb_segs > 1) && rte_pktmbuf_linearize(m) < 0)
			nf->stats->errors++;
		b->off[i] = rte_pktmbuf_mtod(m, uintptr_t) - nf->pool_base;
		b->len[i] = m->data_len;
		b->port[i] = meta->in_port;
		b->hash[i] = meta->hash;
		b->verdict[i] = ONVM_VERDICT(ONVM_NEXT, 0);
	}
	return n;
}

int onvm_nf_rx_headers(struct onvm_nf *nf, struct onvm_batch *b, uint32_t timeout_ms, uint8_t *hdr, uint32_t width)
{
	int n = onvm_nf_rx(nf, b, timeout_ms);
	for (int i = 0; i < n; i++) {
		uint8_t *row = hdr + (size_t)i * width;
		uint32_t k = RTE_MIN((uint32_t)b->len[i], width);
		memcpy(row, (const uint8_t *)(nf->pool_base + b->off[i]), k);
		memset(row + k, 0, width - k);
	}
	return n;
}

/* Route packets whose meta holds their action; count what happened. */
static unsigned hand_on(struct onvm_nf *nf, struct rte_mbuf **pkts, unsigned n)
{
	struct onvm_router *r = &nf->router;
	struct onvm_nf_stats *st = nf->stats;
	struct onvm_route_counts counts = {&st->refused, &st->chain_end, &st->steer_refused, &st->hop_limit};
	capture_mirror(ONVM_TAP_AFTER_SERVICE, nf->slot->service, pkts, n);
	router_begin(r);
	for (unsigned i = 0; i < n; i++)
		router_route(r, pkts[i], &counts);
	router_end(r);
	unsigned sent = (unsigned)r->sent;
	st->tx += r->sent;
	st->tx_drop += r->dropped;
	r->sent = r->dropped = 0;
	return sent;
}

unsigned onvm_nf_tx_burst(struct onvm_nf *nf, struct rte_mbuf **pkts, const uint32_t *verdicts, unsigned count)
{
	struct rte_mbuf *out[ONVM_BURST], *drop[ONVM_BURST];
	uint64_t *act = nf->stats->act;
	unsigned n = 0, nb_drop = 0;
	if (unlikely(count > ONVM_BURST))
		count = ONVM_BURST;
	for (unsigned i = 0; i < count; i++) {
		struct rte_mbuf *m = pkts[i];
		uint32_t v = verdicts[i];
		unsigned action = ONVM_VERDICT_ACTION(v);
		if (unlikely(action >= ONVM_NB_ACTIONS)) {
			nf->stats->errors++;
			action = ONVM_DROP;
		}
		act[action]++;
		struct onvm_pkt_meta *meta = onvm_meta(m);
		trace_hop(meta, ONVM_TRACE_NF, ONVM_WHY_NONE, (uint16_t)nf->index, nf->slot->service, (uint16_t)action,
			  (uint16_t)ONVM_VERDICT_DEST(v));
		if (action == ONVM_DROP) {
			trace_hop(meta, ONVM_TRACE_DROP, ONVM_WHY_NF_DROP, (uint16_t)nf->index, nf->slot->service, 0, 0);
			meta->owner = ONVM_OWNER_MGR; /* see router_free_pkt */
			drop[nb_drop++] = m;
			continue;
		}
		meta->action = (uint8_t)action;
		meta->destination = (uint16_t)ONVM_VERDICT_DEST(v);
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
	if (unlikely(nf->batch_parked)) {
		/* close the gaps parked packets left */
		unsigned k = 0;
		for (unsigned i = 0; i < n; i++) {
			if (b->mbufs[i] == NULL)
				continue;
			b->mbufs[k] = b->mbufs[i];
			b->verdict[k++] = b->verdict[i];
		}
		n = k;
		nf->batch_parked = 0;
	}
	/* a wide batch (numpy NFs) goes on a burst at a time: routing and taps
	 * work in bursts of ONVM_BURST */
	int sent = 0;
	for (unsigned i = 0; i < n; i += ONVM_BURST)
		sent += (int)onvm_nf_tx_burst(nf, (struct rte_mbuf **)b->mbufs + i, b->verdict + i,
					      RTE_MIN(n - i, (unsigned)ONVM_BURST));
	return sent;
}

int onvm_nf_park(struct onvm_nf *nf, struct onvm_batch *b, uint32_t i)
{
	if (i >= b->count || b->mbufs[i] == NULL) {
		onvm_set_error("no packet %u in this batch to park", i);
		return -EINVAL;
	}
	if (nf->nb_park_free == 0) {
		onvm_set_error("%d packets are parked already", ONVM_NF_PARK_MAX);
		return -ENOSPC;
	}
	uint32_t h = nf->park_free[--nf->nb_park_free];
	nf->parked[h] = b->mbufs[i];
	b->mbufs[i] = NULL;
	nf->batch_parked++;
	nf->stats->parked++;
	return (int)h;
}

int onvm_nf_unpark(struct onvm_nf *nf, const uint32_t *handles, const uint32_t *verdicts, uint32_t n)
{
	struct rte_mbuf *pkts[ONVM_BURST];
	uint32_t v[ONVM_BURST];
	int sent = 0;
	for (uint32_t i = 0; i < n;) {
		unsigned k = 0;
		for (; i < n && k < ONVM_BURST; i++) {
			uint32_t h = handles[i];
			if (h >= ONVM_NF_PARK_MAX || nf->parked[h] == NULL)
				continue; /* not parked: nothing to hand on */
			pkts[k] = nf->parked[h];
			v[k++] = verdicts[i];
			nf->parked[h] = NULL;
			nf->park_free[nf->nb_park_free++] = h;
			nf->stats->parked--;
		}
		nf->stats->unparked += k;
		sent += (int)onvm_nf_tx_burst(nf, pkts, v, k);
	}
	return sent;
}

/* Hand on packets the NF made (generate); their meta is already set. */
int onvm_nf_send_new(struct onvm_nf *nf, struct rte_mbuf **pkts, unsigned n)
{
	nf->stats->created += n;
	return (int)hand_on(nf, pkts, n);
}

/* New packets holding a copy of `data`, one per verdict (the SDN NF's
 * flood copies and packet-outs of controller data).  They look as if they
 * had entered port in_port (its default path for NEXT), or, with no such
 * port, as made by this NF (NEXT continues after its service). */
int onvm_nf_send_bytes(struct onvm_nf *nf, const uint8_t *data, uint32_t len, uint16_t in_port,
		       const uint32_t *verdicts, uint32_t n)
{
	if (len < 14 || len > RTE_MBUF_DEFAULT_DATAROOM || n > ONVM_BURST) {
		onvm_set_error("a packet is 14..%d bytes and at most %d copies, got %u bytes x %u", RTE_MBUF_DEFAULT_DATAROOM,
			       ONVM_BURST, len, n);
		return -EINVAL;
	}
	struct rte_mbuf *pkts[ONVM_BURST];
	if (n == 0)
		return 0;
	if (rte_pktmbuf_alloc_bulk(nf->pool, pkts, n) != 0) {
		onvm_set_error("the packet pool is empty");
		return -ENOMEM;
	}
	uint32_t hash = 0, v[ONVM_BURST];
	for (uint32_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		char *d = rte_pktmbuf_append(m, (uint16_t)len);
		if (unlikely(d == NULL)) { /* no room: a pool of smaller mbufs than the data room says */
			rte_pktmbuf_free_bulk(pkts, n);
			onvm_set_error("a packet of %u bytes does not fit an mbuf", len);
			return -EINVAL;
		}
		memcpy(d, data, len);
		if (i == 0)
			hash = onvm_flow_hash(m);
		struct onvm_pkt_meta *meta = onvm_meta(m);
		v[i] = verdicts[i];
		meta->hash = hash;
		meta->owner = (uint16_t)nf->index;
		meta->hops = 0;
		meta->reserved = 0;
		if (in_port < onvm_dp.shm->nb_ports) {
			meta->in_port = in_port;
			meta->path = (uint8_t)in_port;
			meta->chain_index = 0;
		} else {
			meta->in_port = 0xffff;
			meta->path = 0xff;
			meta->chain_index = ONVM_CHAIN_AFTER_DEST;
			if (ONVM_VERDICT_ACTION(v[i]) == ONVM_NEXT) /* NEXT: after this NF's service */
				v[i] = ONVM_VERDICT(ONVM_NEXT, nf->slot->service);
		}
		m->hash.rss = hash;
	}
	nf->stats->created += n;
	return (int)onvm_nf_tx_burst(nf, pkts, v, n);
}

uint64_t *onvm_nf_app(struct onvm_nf *nf) { return nf->stats->app; }
struct rte_mempool *onvm_nf_pool(struct onvm_nf *nf) { return nf->pool; }
struct onvm_nf_stats *onvm_nf_stats(struct onvm_nf *nf) { return nf->stats; }
uint16_t onvm_nf_service(const struct onvm_nf *nf) { return nf->slot->service; }
uint16_t onvm_nf_slot_id(const struct onvm_nf *nf) { return (uint16_t)nf->index; }
bool onvm_nf_should_stop(struct onvm_nf *nf) { return should_stop(nf) || !manager_alive(nf); }

void onvm_nf_finish(struct onvm_nf *nf)
{
	if (nf == NULL)
		return;
	watchdog_stop(nf);
	/* Our pool cache goes back to the pool; what waits in our ring, the
	 * manager frees once we are gone. */
	if (nf->slot->lcore != ONVM_LCORE_NONE) {
		struct rte_mempool_cache *cache = rte_mempool_default_cache(nf->pool, rte_lcore_id());
		if (cache)
			rte_mempool_cache_flush(cache, nf->pool);
	}
	signalled_nf = NULL;
	rte_eal_cleanup();
	munmap(nf->stats, sizeof(struct onvm_nf_stats));
	munmap((void *)nf->shm, sizeof(struct onvm_shm));
	free(nf);
}
