/* nf_registry.c: NFs joining, leaving and dying.  The control loop (mgrd.py)
 * drives it from the NF socket: an NF asks for a slot (claim), joins DPDK,
 * says it is ready (into the service table); when it leaves or its process
 * is gone (a pidfd, so this works across PID namespaces) it is taken out of
 * the service table, and once the RCU grace period has passed and the
 * process is gone, every packet it held is recovered. */
#include <stdio.h>
#include <string.h>

#include <rte_lcore.h>

#include "onvm_core.h"

static struct onvm_nf_slot *slot_of(uint16_t i)
{
	if (i >= onvm_mgr.shm->max_nfs) {
		onvm_set_error("NF slot %u does not exist", i);
		return NULL;
	}
	return &onvm_mgr.shm->nfs[i];
}

/* Free whatever waits in a slot's receive ring. */
static unsigned drain_rx(unsigned i)
{
	struct rte_mbuf *pkts[ONVM_BURST];
	unsigned n, total = 0;
	while ((n = rte_ring_sc_dequeue_burst(onvm_dp.nf_rx[i], (void **)pkts, ONVM_BURST, NULL)) > 0) {
		for (unsigned j = 0; j < n; j++)
			router_free_pkt(pkts[j]);
		total += n;
	}
	return total;
}

static unsigned instances_of(uint16_t service)
{
	unsigned n = 0;
	for (unsigned i = 0; i < onvm_mgr.shm->max_nfs; i++) {
		const struct onvm_nf_slot *s = &onvm_mgr.shm->nfs[i];
		n += (s->state == ONVM_NF_CLAIMED || s->state == ONVM_NF_RUNNING) && s->service == service;
	}
	return n;
}

int onvm_mgr_nf_claim(const char *name, const char *kind, uint16_t service, int32_t pid)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	if (service == 0 || service >= ONVM_MAX_SERVICES) {
		onvm_set_error("service ID %u is out of range 1..%d", service, ONVM_MAX_SERVICES - 1);
		return -EINVAL;
	}
	if (instances_of(service) >= ONVM_MAX_INSTANCES) {
		onvm_set_error("service %u already has %d instances (the most one service may have)", service,
			       ONVM_MAX_INSTANCES);
		return -ENOSPC;
	}
	for (unsigned i = 0; i < shm->max_nfs; i++) {
		struct onvm_nf_slot *s = &shm->nfs[i];
		if (s->state != ONVM_NF_FREE)
			continue;
		drain_rx(i); /* nothing should be there; never hand a new NF old packets */
		memset(onvm_mgr.nf_stats[i], 0, sizeof(struct onvm_nf_stats));
		__atomic_store_n(&onvm_mgr.xchg->nf_rx_drop[i], 0, __ATOMIC_RELAXED);
		struct onvm_doorbell *bell = &onvm_mgr.xchg->nf_bell[i];
		bell->sleeping = 0;
		s->service = service;
		s->pid = pid;
		s->stop = 0;
		s->dead = 0;
		s->rx_drop = 0;
		s->recovered = 0;
		s->generation++;
		onvm_mgr.nf_stats[i]->generation = s->generation;
		s->lcore = ONVM_LCORE_FIRST_NF + i < RTE_MAX_LCORE ? (uint16_t)(ONVM_LCORE_FIRST_NF + i) : ONVM_LCORE_NONE;
		snprintf(s->name, sizeof(s->name), "%s", name);
		snprintf(s->kind, sizeof(s->kind), "%s", kind);
		/* offline until it reads: registering keeps the counter the slot's
		 * last NF left, "inside a read section" if it was killed there,
		 * which would hold every grace period until this NF first routes,
		 * and its "ready" waits for one. */
		rte_rcu_qsbr_thread_register(onvm_dp.rcu, ONVM_RCU_FIRST_NF + i);
		rte_rcu_qsbr_thread_offline(onvm_dp.rcu, ONVM_RCU_FIRST_NF + i);
		__atomic_store_n(&s->state, ONVM_NF_CLAIMED, __ATOMIC_RELEASE);
		return (int)i;
	}
	onvm_set_error("all %u NF slots are in use; stop an NF first (or start the manager with more: max_nfs, "
		       "at most %d)", shm->max_nfs, ONVM_MAX_NFS);
	return -ENOSPC;
}

/* in_service 0: RUNNING but in no service until a deployment puts it
 * there (onvm_mgr_apply): make-before-break swaps start new instances so. */
int onvm_mgr_nf_ready(uint16_t i, int in_service)
{
	struct onvm_nf_slot *s = slot_of(i);
	if (s == NULL)
		return -EINVAL;
	if (s->state != ONVM_NF_CLAIMED) {
		onvm_set_error("NF slot %u is not waiting to start", i);
		return -EINVAL;
	}
	if (!in_service) {
		__atomic_store_n(&s->state, ONVM_NF_RUNNING, __ATOMIC_RELEASE);
		return 0;
	}
	struct onvm_tables *t = services_edit_begin();
	if (t == NULL)
		return -EBUSY;
	int ret = services_add(t, s->service, i);
	if (ret < 0) {
		onvm_set_error("service %u already has %d instances", s->service, ONVM_MAX_INSTANCES);
		return ret;
	}
	/* RUNNING before the tables go live: a sender seeing the new table
	 * must not find the ring's consumer "not running" and give up. */
	__atomic_store_n(&s->state, ONVM_NF_RUNNING, __ATOMIC_RELEASE);
	services_edit_commit();
	return 0;
}

/* Out of the service table; its packets are recovered once the grace
 * period is over and the process is gone. */
static int retire(uint16_t i)
{
	struct onvm_nf_slot *s = slot_of(i);
	if (s == NULL)
		return -EINVAL;
	if (s->state == ONVM_NF_RUNNING) {
		struct onvm_tables *t = services_edit_begin();
		if (t == NULL)
			return -EBUSY;
		services_remove(t, s->service, i);
		services_edit_commit();
		s->rcu_token = onvm_mgr.table_token;
	} else if (s->state == ONVM_NF_CLAIMED) {
		s->rcu_token = rte_rcu_qsbr_start(onvm_dp.rcu);
	} else {
		return 0;
	}
	__atomic_store_n(&s->state, ONVM_NF_ZOMBIE, __ATOMIC_RELEASE);
	return 0;
}

int onvm_mgr_nf_leave(uint16_t i)
{
	return retire(i);
}

int onvm_mgr_nf_dead(uint16_t i)
{
	struct onvm_nf_slot *s = slot_of(i);
	if (s == NULL)
		return -EINVAL;
	/* A process killed inside a read section would hold every grace
	 * period forever: it reads nothing any more, so it stops counting,
	 * first: retiring it edits the tables, which waits for the last
	 * grace period, which it may be holding. */
	if (s->state != ONVM_NF_FREE) {
		rte_rcu_qsbr_thread_offline(onvm_dp.rcu, ONVM_RCU_FIRST_NF + i);
		rte_rcu_qsbr_thread_unregister(onvm_dp.rcu, ONVM_RCU_FIRST_NF + i);
	}
	int ret = retire(i);
	if (ret < 0 || s->state != ONVM_NF_ZOMBIE)
		return ret;
	s->dead = 1;
	return 0;
}

int onvm_mgr_nf_out_of_service(uint16_t i)
{
	struct onvm_nf_slot *s = slot_of(i);
	if (s == NULL)
		return -EINVAL;
	return s->state != ONVM_NF_RUNNING && (s->state != ONVM_NF_ZOMBIE || services_grace_over(s->rcu_token));
}

struct gc_arg {
	uint16_t slot;
	unsigned freed;
};

static void gc_one(struct rte_mempool *mp, void *arg, void *obj, unsigned idx)
{
	(void)mp;
	(void)idx;
	struct gc_arg *g = arg;
	struct rte_mbuf *m = obj;
	if (onvm_meta(m)->owner == g->slot) {
		router_free_pkt(m);
		g->freed++;
	}
}

/* The NF is gone and no reader can still route to it: empty its receive
 * ring, put its mempool cache back, and free packets it held in hand
 * (their owner mark still names it). */
static void recover(unsigned i)
{
	struct onvm_mgr *m = &onvm_mgr;
	struct onvm_nf_slot *s = &m->shm->nfs[i];
	unsigned freed = drain_rx(i);
	if (s->lcore != ONVM_LCORE_NONE) {
		struct rte_mempool_cache *cache = rte_mempool_default_cache(m->rte.pool, s->lcore);
		if (cache)
			rte_mempool_cache_flush(cache, m->rte.pool);
	}
	struct gc_arg g = {(uint16_t)i, 0};
	rte_mempool_obj_iter(m->rte.pool, gc_one, &g);
	s->recovered += freed + g.freed;
	m->shm->recovered += freed + g.freed;
	s->rx_drop = __atomic_load_n(&m->xchg->nf_rx_drop[i], __ATOMIC_RELAXED);
	s->pid = 0;
	s->dead = 0;
	__atomic_store_n(&s->state, ONVM_NF_FREE, __ATOMIC_RELEASE);
}

void registry_tick(void)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	for (unsigned i = 0; i < shm->max_nfs; i++) {
		struct onvm_nf_slot *s = &shm->nfs[i];
		if (s->state == ONVM_NF_ZOMBIE && s->dead && services_grace_over(s->rcu_token))
			recover(i);
	}
}

void onvm_mgr_stop_all(void)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	for (unsigned i = 0; i < shm->max_nfs; i++) {
		struct onvm_nf_slot *s = &shm->nfs[i];
		if (s->state == ONVM_NF_FREE)
			continue;
		__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
		struct onvm_doorbell *b = &onvm_mgr.xchg->nf_bell[i];
		__atomic_fetch_add(&b->seq, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &b->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	}
}

int onvm_mgr_nfs_left(void)
{
	int left = 0;
	for (unsigned i = 0; i < onvm_mgr.shm->max_nfs; i++)
		left += onvm_mgr.shm->nfs[i].state != ONVM_NF_FREE;
	return left;
}
