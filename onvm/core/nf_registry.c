/* nf_registry.c: NFs joining and leaving.  NFs claim a slot in the control
 * file, then announce themselves on the message ring; the control loop
 * adds them to the service table.  It also notices NFs that died (checked
 * every LIVENESS_NS) and gets back every packet they held. */
#include <stdio.h>
#include <string.h>

#include <rte_lcore.h>

#include "onvm_core.h"

#define LIVENESS_NS 200000000ull   /* look for dead NFs this often */
#define ZOMBIE_GRACE_NS 500000000ull /* stale service-table reads are over by then */

uint64_t onvm_proc_start_time(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* Fields after the command name, which may hold spaces: state is the
	 * 1st, starttime the 20th. */
	char *p = strrchr(buf, ')');
	if (p == NULL || p[1] == 0)
		return 0;
	char state = p[2];
	if (state == 'Z' || state == 'X')
		return 0;
	unsigned long long start = 0;
	p += 2;
	for (int field = 1; field < 20 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p == NULL || sscanf(p, "%llu", &start) != 1)
		return 0;
	return start;
}

static bool nf_alive(const struct onvm_nf_slot *s)
{
	return s->pid > 0 && onvm_proc_start_time(s->pid) == s->start_time;
}

/* Free whatever waits in a slot's receive ring. */
static unsigned drain_rx(unsigned i)
{
	struct rte_mbuf *pkts[ONVM_BURST];
	unsigned n, total = 0;
	while ((n = rte_ring_sc_dequeue_burst(onvm_dp.nf_rx[i], (void **)pkts, ONVM_BURST, NULL)) > 0) {
		for (unsigned j = 0; j < n; j++)
			onvm_free_pkt(pkts[j]);
		total += n;
	}
	return total;
}

static void reset_slot(struct onvm_nf_slot *s)
{
	s->pid = 0;
	s->service = 0;
	s->stop = 0;
	s->zombie_since_ns = 0;
	__atomic_store_n(&s->state, ONVM_NF_FREE, __ATOMIC_RELEASE);
}

static void handle_register(unsigned i)
{
	struct onvm_nf_slot *s = &onvm_mgr.shm->nfs[i];
	if (s->state != ONVM_NF_CLAIMED)
		return;
	drain_rx(i); /* leftovers from an earlier tenant */
	int ret = services_add(s->service, (uint16_t)i);
	if (ret < 0) {
		s->error = ret;
		__atomic_store_n(&s->state, ONVM_NF_REJECTED, __ATOMIC_RELEASE);
		return;
	}
	__atomic_store_n(&s->state, ONVM_NF_RUNNING, __ATOMIC_RELEASE);
}

/* Take an NF out of service; its packets are recovered once it is gone. */
static void retire(unsigned i, uint64_t now)
{
	struct onvm_nf_slot *s = &onvm_mgr.shm->nfs[i];
	if (s->state != ONVM_NF_RUNNING)
		return;
	services_remove(s->service, (uint16_t)i);
	s->zombie_since_ns = now;
	__atomic_store_n(&s->state, ONVM_NF_ZOMBIE, __ATOMIC_RELEASE);
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
		onvm_free_pkt(m);
		g->freed++;
	}
}

/* The NF is dead and no thread routes to it any more: empty its receive
 * ring, put its mempool cache back, and free packets it held in hand
 * (their owner mark still names it).  Its transmit ring was drained by
 * the TX thread, which polls zombie slots too. */
static void recover(unsigned i)
{
	struct onvm_mgr *m = &onvm_mgr;
	struct onvm_nf_slot *s = &m->shm->nfs[i];
	unsigned freed = drain_rx(i);
	struct rte_mempool_cache *cache = rte_mempool_default_cache(m->pool, s->lcore);
	if (cache)
		rte_mempool_cache_flush(cache, m->pool);
	struct gc_arg g = {(uint16_t)i, 0};
	rte_mempool_obj_iter(m->pool, gc_one, &g);
	s->mgr.recovered += freed + g.freed;
	reset_slot(s);
}

void registry_poll(uint64_t now)
{
	struct onvm_mgr *m = &onvm_mgr;
	void *msg;
	while (rte_ring_sc_dequeue(m->msg_ring, &msg) == 0) {
		unsigned i = ONVM_MSG_SLOT(msg);
		if (i >= ONVM_MAX_NFS)
			continue;
		if (ONVM_MSG_TYPE(msg) == ONVM_MSG_REGISTER)
			handle_register(i);
		else if (ONVM_MSG_TYPE(msg) == ONVM_MSG_UNREGISTER)
			retire(i, now);
	}
	if (now - m->last_liveness_ns < LIVENESS_NS)
		return;
	m->last_liveness_ns = now;
	for (unsigned i = 0; i < ONVM_MAX_NFS; i++) {
		struct onvm_nf_slot *s = &m->shm->nfs[i];
		switch (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE)) {
		case ONVM_NF_CLAIMED:
		case ONVM_NF_REJECTED:
			if (!nf_alive(s))
				reset_slot(s);
			break;
		case ONVM_NF_RUNNING:
			if (!nf_alive(s))
				retire(i, now);
			break;
		case ONVM_NF_ZOMBIE:
			s->mgr.recovered += drain_rx(i);
			if (now - s->zombie_since_ns > ZOMBIE_GRACE_NS && !nf_alive(s))
				recover(i);
			break;
		}
	}
}

void registry_stop_all(void)
{
	for (unsigned i = 0; i < ONVM_MAX_NFS; i++) {
		struct onvm_nf_slot *s = &onvm_mgr.shm->nfs[i];
		if (s->state == ONVM_NF_FREE)
			continue;
		__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
		__atomic_fetch_add(&s->bell.seq, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &s->bell.seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	}
}
