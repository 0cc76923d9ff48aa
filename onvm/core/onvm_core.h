/* onvm_core.h: helpers shared by the manager and the NF library, and the
 * functions each .c file offers the others (prefixed by their file).  The
 * shared layout lives in onvm_shm.h; the API Python calls is onvm_api.h. */
#ifndef ONVM_CORE_H
#define ONVM_CORE_H

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <rte_branch_prediction.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include "onvm_shm.h"
#include "onvm_api.h"
#include "flow_hash.h"

/* A verdict packs an action and its destination: (action << 16) | dest. */
#define ONVM_VERDICT(action, dest) (((uint32_t)(action) << 16) | (uint16_t)(dest))
#define ONVM_VERDICT_ACTION(v) ((v) >> 16)
#define ONVM_VERDICT_DEST(v) ((v)&0xffff)

/* Offset of struct onvm_pkt_meta in every mbuf: registered by the manager,
 * looked up by NFs (router_meta_init). */
extern int onvm_meta_offset;

static inline struct onvm_pkt_meta *onvm_meta(struct rte_mbuf *m)
{
	return RTE_MBUF_DYNFIELD(m, onvm_meta_offset, struct onvm_pkt_meta *);
}

static inline uint64_t onvm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- doorbells: sleep when idle, producers wake the sleeper ----------- */

/* How long a consumer polls an empty ring before it sleeps.  A futex
 * sleep/wake across cores costs ~20 us here, so spinning a little longer
 * than that keeps busy pipelines from paying it on every gap. */
#define ONVM_SPIN_NS 50000ull

/* One turn of polling an empty ring.  Yielding, not pausing: on a small
 * machine the producer we wait for may need this very core, and when
 * nothing else wants it sched_yield() returns at once.  With a core per
 * thread (busy_poll) a pause is cheaper. */
static inline void onvm_idle_turn(bool busy_poll)
{
	if (busy_poll)
		rte_pause();
	else
		sched_yield();
}

/* Adaptive spinning.  A consumer that found its ring empty polls for a
 * while before it sleeps on its doorbell.  How long follows the flow: the
 * smoothed time it waited for each burst (gap).  While bursts come less
 * than ONVM_SPIN_MAX_NS / 2 apart it polls for twice the gap, so a steady
 * flow (5 kpps: a burst every 200 us) finds its threads awake and pays no
 * futex wake-up per packet; after a sleep that ended with nothing to do the
 * gap is forgotten (ONVM_SPIN_COLD), so an idle system polls only
 * ONVM_SPIN_NS per 100 ms timeout and otherwise sleeps. */
#define ONVM_SPIN_MAX_NS 1000000ull
#define ONVM_SPIN_COLD UINT64_MAX

/* ONVM_SPIN=fixed in the environment (read once per process, nflib.c):
 * never learn a gap, i.e. poll ONVM_SPIN_NS and sleep, as before adaptive
 * spinning; onvm bench compares the two in one run. */
extern int onvm_spin_fixed;

struct onvm_spin {
	uint64_t idle_since; /* when the ring went empty; 0 while there is work */
	uint64_t gap;        /* smoothed wait for a burst, ns, or ONVM_SPIN_COLD */
};

static inline uint64_t onvm_spin_budget(const struct onvm_spin *s)
{
	if (s->gap == ONVM_SPIN_COLD || s->gap > ONVM_SPIN_MAX_NS / 2)
		return ONVM_SPIN_NS;
	return RTE_MAX(ONVM_SPIN_NS, 2 * s->gap);
}

/* Work came: learn how long it took since the ring went empty. */
static inline void onvm_spin_work(struct onvm_spin *s)
{
	if (s->idle_since == 0 || unlikely(onvm_spin_fixed)) {
		s->idle_since = 0;
		return;
	}
	uint64_t g = onvm_now_ns() - s->idle_since;
	s->gap = s->gap == ONVM_SPIN_COLD ? g : (3 * RTE_MIN(s->gap, 60000000000ull) + g) / 4;
	s->idle_since = 0;
}

/* Nothing came: returns how long the ring has been empty, and forgets the
 * gap once that is past anything a flow would make us wait. */
static inline uint64_t onvm_spin_idle(struct onvm_spin *s, uint64_t now)
{
	if (s->idle_since == 0)
		s->idle_since = now;
	uint64_t idle = now - s->idle_since;
	if (idle > ONVM_SPIN_MAX_NS)
		s->gap = ONVM_SPIN_COLD;
	return idle;
}

/* Called once per loop by a polling thread with the work that loop did;
 * true once it should sleep: it has found nothing to do for its spin budget. */
static inline bool onvm_idle_check(struct onvm_spin *s, unsigned work, bool busy_poll)
{
	if (work) {
		onvm_spin_work(s);
		return false;
	}
	uint64_t idle = onvm_spin_idle(s, onvm_now_ns());
	if (idle < onvm_spin_budget(s) || busy_poll) {
		onvm_idle_turn(busy_poll);
		return false;
	}
	return true;
}

static inline void onvm_bell_ring(struct onvm_doorbell *b)
{
	/* Pairs with the fence in onvm_bell_sleep: either the sleeper sees the
	 * enqueue, or we see it sleeping. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (unlikely(__atomic_load_n(&b->sleeping, __ATOMIC_RELAXED))) {
		__atomic_fetch_add(&b->seq, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &b->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	}
}

/* Sleep until rung or timeout_ns passes (0: no timeout).  `has_work` is
 * re-checked after announcing the sleep, so no wakeup is lost. */
static inline void onvm_bell_sleep(struct onvm_doorbell *b, bool (*has_work)(void *), void *arg,
				   uint64_t timeout_ns)
{
	uint32_t seq = __atomic_load_n(&b->seq, __ATOMIC_SEQ_CST);
	__atomic_store_n(&b->sleeping, 1, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!has_work(arg)) {
		struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
		syscall(SYS_futex, &b->seq, FUTEX_WAIT, seq, timeout_ns ? &ts : NULL, NULL, 0);
	}
	__atomic_store_n(&b->sleeping, 0, __ATOMIC_RELAXED);
}

/* ---- what routing needs, in whichever process routes ------------------- */

/* Filled by the manager (manager.c, ports.c) or by an NF (nflib.c) from
 * the names in onvm_shm.h. */
struct onvm_dataplane {
	const struct onvm_shm *shm;   /* read-only in NFs */
	struct onvm_xchg *xchg;       /* hugepages: doorbells, senders' counters */
	struct rte_rcu_qsbr *rcu;
	struct rte_ring *nf_rx[ONVM_MAX_NFS];
	struct rte_ring *port_tx[ONVM_MAX_PORTS];
};
extern struct onvm_dataplane onvm_dp;

/* ---- xmem.c: the no-hugepage mode's shared region ------------------------- */

/* The heap (socket) of every object NFs share: the EAL socket with
 * hugepages, the shared region's heap without. */
extern int onvm_socket;
int xmem_create(void);
void xmem_publish(struct rte_mempool *pool, struct rte_ring *const *taps);
void xmem_destroy(void);
bool xmem_active(void);
void xmem_range(uintptr_t *base, uintptr_t *end);
int xmem_attach(int fd, struct rte_mempool **pool, struct rte_ring **taps);

/* ---- router.c: where a packet goes, by the action in its metadata -------- */

/* One router per routing thread (the RX threads, each NF): per-destination
 * buffers, the destinations with something buffered, and counts of packets
 * handed on (sent) and lost to full rings (dropped). */
struct onvm_router {
	struct rte_mbuf *to_nf[ONVM_MAX_NFS][ONVM_BURST];
	uint16_t nb_to_nf[ONVM_MAX_NFS];
	struct rte_mbuf *to_port[ONVM_MAX_PORTS][ONVM_BURST];
	uint16_t nb_to_port[ONVM_MAX_PORTS];
	uint16_t pending[ONVM_MAX_NFS + ONVM_MAX_PORTS]; /* slots, then ports + ONVM_MAX_NFS */
	uint16_t nb_pending;
	uint64_t sent;
	uint64_t dropped;
	uint16_t self;       /* owner mark of buffered packets: the NF's slot, or ONVM_OWNER_MGR */
	uint16_t rcu_id;     /* its reader ID in the RCU state */
	const struct onvm_tables *tables; /* between begin and end */
};

/* Where the counts of packets routing drops go, per call. */
struct onvm_route_counts {
	uint64_t *refused;        /* no live instance, no such port */
	uint64_t *chain_end;      /* NEXT past the end of its path */
	uint64_t *steer_refused;  /* a steer the graph has no edge for (NFs only) */
	uint64_t *hop_limit;      /* past the hop limit (NFs only) */
};

int router_meta_init(bool primary);
/* Enter the read side (RCU online) and take the current tables. */
void router_begin(struct onvm_router *r);
void router_route(struct onvm_router *r, struct rte_mbuf *m, const struct onvm_route_counts *c);
/* Flush every buffer, then leave the read side. */
void router_end(struct onvm_router *r);
void router_free_pkt(struct rte_mbuf *m);

/* A packet's path by meta->path: a port's, or a flow rule's; NULL if none. */
static inline const struct onvm_chain *router_path(const struct onvm_tables *t, unsigned p)
{
	if (p < ONVM_MAX_PORTS)
		return &t->paths[p];
	if (p - ONVM_MAX_PORTS < ONVM_FLOW_MAX_PATHS)
		return &t->rule_paths[p - ONVM_MAX_PORTS];
	return NULL;
}

/* May an NF of `service` send to (action, dest) (the graph's edges)? */
bool router_steer_ok(const struct onvm_tables *t, uint16_t service, unsigned action, uint16_t dest);

/* ---- flow_dir.c: the flow director --------------------------------------- */

/* The rule path (ONVM_MAX_PORTS + i) of the rule a packet matches, counted
 * against that rule, or -1.  Inside a read section (router_begin). */
int flow_dir_lookup(const struct onvm_tables *t, struct rte_mbuf *m);
/* At RX, a burst of packets whose paths start: one that matches a rule
 * follows the rule's path; a miss goes to the miss service if there is one. */
void flow_dir_start_burst(const struct onvm_tables *t, struct rte_mbuf **pkts, unsigned n, unsigned lane);
static inline void flow_dir_start(const struct onvm_tables *t, struct rte_mbuf **pkts, unsigned n, unsigned rx_thread)
{
	if (likely(!(t->flow_exact | t->flow_acl | t->flow_miss)))
		return;
	flow_dir_start_burst(t, pkts, n, 1 + rx_thread);
}
/* Free what readers can no longer see (the control tick). */
void flow_dir_tick(void);

/* The position after `service` in a path, or -1 if it is not on it. */
static inline int router_chain_after(const struct onvm_chain *c, uint16_t service)
{
	for (uint32_t i = 0; i < c->length && i < ONVM_MAX_CHAIN; i++)
		if (c->entries[i].action == ONVM_TO_SERVICE && c->entries[i].destination == service)
			return (int)(i + 1);
	return -1;
}

/* ---- manager internals ---------------------------------------------------- */

struct onvm_mgr {
	struct onvm_shm *shm;
	struct onvm_xchg *xchg;
	struct onvm_rte_objs {
		struct rte_mempool *pool;
		struct rte_ring *port_in[ONVM_MAX_PORTS];  /* ring ports only */
		struct rte_ring *port_out[ONVM_MAX_PORTS]; /* ring ports only */
	} rte;
	struct onvm_nf_stats *nf_stats[ONVM_MAX_NFS]; /* each NF's stats file, mapped */
	volatile bool force_quit;
	bool table_pending;     /* a grace period since the last table update is running */
	uint64_t table_token;
};
extern struct onvm_mgr onvm_mgr;

/* ports.c */
int ports_add(unsigned kind, const char *devargs, const char *netns);
int ports_start(void);
void ports_stop(void);
int ports_poll_fd(unsigned p);

/* rx.c / tx.c: thread bodies, launched on their lcores */
int rx_thread_main(void *arg);
int tx_thread_main(void *arg);

/* nf_registry.c */
void registry_tick(void);
void registry_stop_all(void);

/* services.c: the tables routing reads, updated under RCU */
struct onvm_tables *services_edit_begin(void);
void services_edit_commit(void);
int services_add(struct onvm_tables *t, uint16_t service, uint16_t slot);
void services_remove(struct onvm_tables *t, uint16_t service, uint16_t slot);
bool services_grace_over(uint64_t token);

/* stats.c */
struct onvm_shm *stats_create(const char *path);
int stats_create_nf_files(const char *fmt, uint32_t n);
void stats_update(void);
void *stats_map(const char *path, size_t size, bool writable);
void *stats_map_fd(int fd, size_t size, bool writable, const char *what);

/* nflib.c: what native NFs use beyond the public API */
int onvm_nf_send_new(struct onvm_nf *nf, struct rte_mbuf **pkts, unsigned n);
/* The batch API without the arrays Python needs: native NFs touch only
 * what they use of each packet. */
int onvm_nf_rx_burst(struct onvm_nf *nf, struct rte_mbuf **pkts, uint32_t timeout_ms);
unsigned onvm_nf_tx_burst(struct onvm_nf *nf, struct rte_mbuf **pkts, const uint32_t *verdicts, unsigned n);
struct rte_mempool *onvm_nf_pool(struct onvm_nf *nf);
struct onvm_nf_stats *onvm_nf_stats(struct onvm_nf *nf);
uint16_t onvm_nf_service(const struct onvm_nf *nf);
uint16_t onvm_nf_slot_id(const struct onvm_nf *nf);
bool onvm_nf_should_stop(struct onvm_nf *nf);

/* ports.c: ring ports' file rings; rx.c and tx.c call these */
struct onvm_doorbell *ports_rx_bell(void);
uint64_t ports_inject_due(unsigned port);
unsigned ports_pull(unsigned port, uint64_t now);
unsigned ports_tx_capture(unsigned port);

/* capring.c: packet rings in files */
bool capring_put(struct onvm_ring_hdr *r, const struct rte_mbuf *m, uint64_t ts);
/* The next record between *tail and head (fillers skipped, nonsense
 * skipped and counted), or NULL; capring_consume steps over it. */
const struct onvm_rec *capring_peek(struct onvm_ring_hdr *r, uint64_t *tail, uint64_t head);
void capring_consume(uint64_t *tail, const struct onvm_rec *rec);
/* The consumer steps over records its writer withdrew (onvm_ring_end).
 * returns: how many. */
uint64_t capring_skip_withdrawn(struct onvm_ring_hdr *r);

/* capture.c: mirrors at hops */
/* given: an NF's tap rings from the no-hugepage directory (xmem.c), or NULL */
int capture_attach(bool primary, struct rte_mempool *pool, struct rte_ring *const *given);
struct rte_ring *const *capture_rings(void);
void capture_mirror_slow(unsigned where, uint16_t target, struct rte_mbuf **pkts, unsigned n);
/* Copy what matches an armed tap at this place; one load when none is. */
static inline void capture_mirror(unsigned where, uint16_t target, struct rte_mbuf **pkts, unsigned n)
{
	if (unlikely(__atomic_load_n(&onvm_dp.shm->nb_taps, __ATOMIC_RELAXED) != 0) && n)
		capture_mirror_slow(where, target, pkts, n);
}
bool capture_pending(void);
unsigned capture_drain(void);

/* trace.c: packet journeys.  A hop of a traced packet; one predictable
 * branch when the packet carries no trace ID. */
void trace_hop_slow(const struct onvm_pkt_meta *meta, unsigned kind, unsigned why, uint16_t where,
		    uint16_t service, uint16_t action, uint16_t dest);
static inline void trace_hop(const struct onvm_pkt_meta *meta, unsigned kind, unsigned why, uint16_t where,
			     uint16_t service, uint16_t action, uint16_t dest)
{
	if (unlikely(meta->reserved != 0))
		trace_hop_slow(meta, kind, why, where, service, action, dest);
}
/* TX threads, while a trace runs (shm->nb_traces): the exit port. */
void trace_port_out(uint16_t port, struct rte_mbuf **pkts, unsigned n);

/* error text for Python: set by any failing API call */
void onvm_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
