/* trace.c: packet journeys.  A traced packet carries a trace ID in
 * meta->reserved (set by inject; 0 everywhere else).  The places that
 * handle packets call trace_hop() (onvm_core.h), which costs one
 * predictable branch on an untraced packet; a traced one appends a hop to
 * its trace's buffer in the exchange.  The manager hands out IDs and reads
 * the hops back for mgr.trace(); it never routes on them. */
#include <string.h>

#include "onvm_core.h"

void trace_hop_slow(const struct onvm_pkt_meta *meta, unsigned kind, unsigned why, uint16_t where,
		    uint16_t service, uint16_t action, uint16_t dest)
{
	uint16_t id = meta->reserved;
	struct onvm_trace_buf *b = &onvm_dp.xchg->traces[id % ONVM_TRACE_SLOTS];
	if (__atomic_load_n(&b->id, __ATOMIC_ACQUIRE) != id)
		return; /* its trace is over (a packet still in flight, or a stale mark) */
	uint32_t k = __atomic_fetch_add(&b->count, 1, __ATOMIC_RELAXED);
	if (k >= ONVM_TRACE_HOPS)
		return;
	struct onvm_trace_hop *h = &b->hops[k];
	h->ts_ns = onvm_now_ns();
	h->kind = (uint8_t)kind;
	h->why = (uint8_t)why;
	h->where = where;
	h->service = service;
	h->action = action;
	h->dest = dest;
	__atomic_store_n(&h->id, id, __ATOMIC_RELEASE);
}

/* TX threads, before the device takes the burst (after, a sent packet
 * may already be freed): the exit port of each traced packet.  Only
 * called while a trace runs, so the TX loop pays one load per burst. */
void trace_port_out(uint16_t port, struct rte_mbuf **pkts, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		trace_hop(onvm_meta(pkts[i]), ONVM_TRACE_PORT_OUT, ONVM_WHY_NONE, port, 0, 0, 0);
}

/* ---- the manager: IDs and reading back ---------------------------------- */

static uint16_t trace_next_id;

int onvm_mgr_trace_start(void)
{
	uint16_t id = (uint16_t)(trace_next_id + 1);
	if (id == 0)
		id = 1;
	trace_next_id = id;
	struct onvm_trace_buf *b = &onvm_mgr.xchg->traces[id % ONVM_TRACE_SLOTS];
	/* The slot's previous trace, if its client never ended it, ends now. */
	if (__atomic_exchange_n(&b->id, 0, __ATOMIC_ACQ_REL) == 0)
		__atomic_fetch_add(&onvm_mgr.shm->nb_traces, 1, __ATOMIC_RELEASE);
	for (unsigned k = 0; k < ONVM_TRACE_HOPS; k++)
		__atomic_store_n(&b->hops[k].id, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&b->id, id, __ATOMIC_RELEASE);
	return id;
}

int onvm_mgr_trace_read(uint16_t id, struct onvm_trace_hop *out, uint32_t max)
{
	struct onvm_trace_buf *b = &onvm_mgr.xchg->traces[id % ONVM_TRACE_SLOTS];
	if (id == 0 || __atomic_load_n(&b->id, __ATOMIC_ACQUIRE) != id) {
		onvm_set_error("trace %u is not running", id);
		return -ENOENT;
	}
	uint32_t count = RTE_MIN(__atomic_load_n(&b->count, __ATOMIC_ACQUIRE), (uint32_t)ONVM_TRACE_HOPS);
	uint32_t n = 0;
	for (uint32_t k = 0; k < count && n < max; k++) {
		const struct onvm_trace_hop *h = &b->hops[k];
		if (__atomic_load_n(&h->id, __ATOMIC_ACQUIRE) != id)
			continue; /* a stale writer's, or not yet complete */
		memcpy(&out[n++], h, sizeof(*h));
	}
	return (int)n;
}

int onvm_mgr_trace_end(uint16_t id)
{
	struct onvm_trace_buf *b = &onvm_mgr.xchg->traces[id % ONVM_TRACE_SLOTS];
	uint16_t want = id;
	if (id && __atomic_compare_exchange_n(&b->id, &want, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		__atomic_fetch_sub(&onvm_mgr.shm->nb_traces, 1, __ATOMIC_RELEASE);
	return 0;
}

/* ---- the sink's latency histogram --------------------------------------- */

unsigned onvm_lat_bucket(uint64_t ns)
{
	if (ns < 8)
		return (unsigned)ns;
	unsigned e = 63u - (unsigned)__builtin_clzll(ns); /* >= 3 */
	unsigned b = (e - 2) * 8 + (unsigned)((ns >> (e - 3)) & 7);
	return RTE_MIN(b, (unsigned)ONVM_LAT_BUCKETS - 1);
}
