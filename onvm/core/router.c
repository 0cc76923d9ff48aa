/* router.c: where each packet goes, by the action in its metadata.  Runs
 * wherever a packet is handed on: in the RX threads for arrivals and in
 * every NF for what it returns (NF to NF directly; docs/design.md says why).
 * Reads the manager's tables (read-only for NFs) inside an RCU read section
 * per burst, so the manager can replace them under running traffic. */
#include <sched.h>

#include "onvm_core.h"

struct onvm_dataplane onvm_dp;
int onvm_meta_offset = -1;

int router_meta_init(bool primary)
{
	static const struct rte_mbuf_dynfield desc = {
		.name = ONVM_META_FIELD,
		.size = sizeof(struct onvm_pkt_meta),
		.align = __alignof__(struct onvm_pkt_meta),
	};
	onvm_meta_offset = primary ? rte_mbuf_dynfield_register(&desc) : rte_mbuf_dynfield_lookup(ONVM_META_FIELD, NULL);
	if (onvm_meta_offset < 0) {
		onvm_set_error("cannot %s the packet metadata field: %s", primary ? "register" : "find",
			       rte_strerror(rte_errno));
		return -rte_errno;
	}
	return 0;
}

/* Free a packet.  The owner mark is reset first so the recovery scan after
 * an NF dies never mistakes a free packet for one the NF held. */
void router_free_pkt(struct rte_mbuf *m)
{
	onvm_meta(m)->owner = ONVM_OWNER_MGR;
	rte_pktmbuf_free(m);
}

/* A ring that is full gets this long to make room before its packets are
 * dropped.  Meanwhile we yield: on a small machine its consumer may be
 * waiting for our core.  Upstream NFs block the same way, so an overloaded
 * chain runs at the pace of its slowest NF instead of burning CPU on
 * packets it will drop. */
#define BACKPRESSURE_NS 20000000ull

static inline void mark(struct rte_mbuf **pkts, unsigned n, uint16_t owner)
{
	for (unsigned i = 0; i < n; i++)
		onvm_meta(pkts[i])->owner = owner;
}

/* Enqueue a burst, handing ownership over.  The owner mark changes just
 * before the enqueue and changes back for what did not fit, so if this
 * process is killed the recovery scan finds every packet it still held
 * (only the few nanoseconds between marking and enqueueing are a gap). */
static unsigned hand_over(struct rte_ring *ring, struct rte_mbuf **pkts, unsigned n, uint16_t self,
			  uint16_t owner, struct onvm_doorbell *consumer, const uint32_t *consumer_state)
{
	mark(pkts, n, owner);
	unsigned sent = rte_ring_enqueue_burst(ring, (void **)pkts, n, NULL);
	if (likely(sent == n))
		return n;
	mark(pkts + sent, n - sent, self);
	uint64_t deadline = onvm_now_ns() + BACKPRESSURE_NS;
	onvm_bell_ring(consumer);
	while (sent < n && onvm_now_ns() < deadline &&
	       (consumer_state == NULL || __atomic_load_n(consumer_state, __ATOMIC_ACQUIRE) == ONVM_NF_RUNNING)) {
		sched_yield();
		mark(pkts + sent, n - sent, owner);
		unsigned k = rte_ring_enqueue_burst(ring, (void **)pkts + sent, n - sent, NULL);
		mark(pkts + sent + k, n - sent - k, self);
		sent += k;
	}
	return sent;
}

/* Drop one packet routing refused: counted, and the end of its journey if
 * it is traced. */
static void route_drop(const struct onvm_router *r, struct rte_mbuf *m, uint64_t *counter, unsigned why)
{
	if (counter)
		(*counter)++;
	trace_hop(onvm_meta(m), ONVM_TRACE_DROP, why, r->self, 0, 0, 0);
	router_free_pkt(m);
}

/* What a full ring would not take after backpressure. */
static void drop_unsent(const struct onvm_router *r, struct rte_mbuf **pkts, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		route_drop(r, pkts[i], NULL, ONVM_WHY_RING_FULL);
}

/* Packets the RX thread could not deliver are counted against the port
 * they came in on (one RX thread per port, so one writer). */
static void count_rx_drops(struct rte_mbuf **pkts, unsigned n)
{
	struct onvm_shm *shm = (struct onvm_shm *)onvm_dp.shm; /* the manager's own, writable */
	for (unsigned i = 0; i < n; i++) {
		uint16_t p = onvm_meta(pkts[i])->in_port;
		if (p < ONVM_MAX_PORTS)
			shm->ports[p].rx.rx_drop++;
	}
}

static void flush_nf(struct onvm_router *r, unsigned slot)
{
	struct onvm_doorbell *bell = &onvm_dp.xchg->nf_bell[slot];
	unsigned n = r->nb_to_nf[slot];
	struct rte_mbuf **pkts = r->to_nf[slot];
	r->nb_to_nf[slot] = 0;
	unsigned sent = hand_over(onvm_dp.nf_rx[slot], pkts, n, r->self, (uint16_t)slot, bell,
				  &onvm_dp.shm->nfs[slot].state);
	if (unlikely(sent < n)) {
		if (r->self == ONVM_OWNER_MGR)
			count_rx_drops(pkts + sent, n - sent);
		drop_unsent(r, pkts + sent, n - sent);
		__atomic_fetch_add(&onvm_dp.xchg->nf_rx_drop[slot], n - sent, __ATOMIC_RELAXED);
	}
	r->sent += sent;
	r->dropped += n - sent;
	onvm_bell_ring(bell);
}

static void flush_port(struct onvm_router *r, unsigned port)
{
	unsigned n = r->nb_to_port[port];
	struct rte_mbuf **pkts = r->to_port[port];
	r->nb_to_port[port] = 0;
	unsigned sent = hand_over(onvm_dp.port_tx[port], pkts, n, r->self, ONVM_OWNER_MGR, &onvm_dp.xchg->tx_bell, NULL);
	if (unlikely(sent < n)) {
		drop_unsent(r, pkts + sent, n - sent);
		__atomic_fetch_add(&onvm_dp.xchg->port_tx_drop[port], n - sent, __ATOMIC_RELAXED);
	}
	r->sent += sent;
	r->dropped += n - sent;
	onvm_bell_ring(&onvm_dp.xchg->tx_bell);
}

void router_begin(struct onvm_router *r)
{
	rte_rcu_qsbr_thread_online(onvm_dp.rcu, r->rcu_id);
	r->tables = &onvm_dp.shm->tables[__atomic_load_n(&onvm_dp.shm->active, __ATOMIC_ACQUIRE) & 1];
}

/* The live instance of `service` for this flow, or -1. */
static inline int pick_instance(const struct onvm_tables *t, uint16_t service, uint32_t hash)
{
	if (unlikely(service == 0 || service >= ONVM_MAX_SERVICES))
		return -1;
	const struct onvm_service *s = &t->services[service];
	if (unlikely(s->count == 0))
		return -1;
	unsigned slot = s->reta[hash % ONVM_RETA_SIZE];
	return likely(slot < ONVM_MAX_NFS) ? (int)slot : -1;
}

static inline void buffer_nf(struct onvm_router *r, unsigned slot, struct rte_mbuf *m)
{
	if (r->nb_to_nf[slot] == 0)
		r->pending[r->nb_pending++] = (uint16_t)slot;
	r->to_nf[slot][r->nb_to_nf[slot]++] = m;
	if (r->nb_to_nf[slot] == ONVM_BURST)
		flush_nf(r, slot); /* stays in pending with 0 buffered: flushed again as a no-op */
}

static inline void buffer_port(struct onvm_router *r, unsigned port, struct rte_mbuf *m)
{
	if (r->nb_to_port[port] == 0)
		r->pending[r->nb_pending++] = (uint16_t)(ONVM_MAX_NFS + port);
	r->to_port[port][r->nb_to_port[port]++] = m;
	if (r->nb_to_port[port] == ONVM_BURST)
		flush_port(r, port);
}

/* Where a packet sent to `service` goes on when that service's NF says
 * NEXT: after the service on the packet's own path; else on the first
 * path that has it (a steer onto another path joins that path); else
 * nowhere (its NEXT is a chain end). */
static inline void continue_after(const struct onvm_tables *t, struct onvm_pkt_meta *meta, uint16_t service)
{
	const struct onvm_chain *own = router_path(t, meta->path);
	if (own != NULL) {
		int idx = router_chain_after(own, service);
		if (idx >= 0) {
			meta->chain_index = (uint8_t)idx;
			return;
		}
	}
	for (unsigned p = 0; p < onvm_dp.shm->nb_ports && p < ONVM_MAX_PORTS; p++) {
		int idx = router_chain_after(&t->paths[p], service);
		if (idx >= 0) {
			meta->path = (uint8_t)p;
			meta->chain_index = (uint8_t)idx;
			return;
		}
	}
	meta->chain_index = ONVM_MAX_CHAIN;
}

/* Where NEXT from an NF of `service` goes on: the packet's position,
 * unless a redeploy changed its path while it waited in the NF's ring (the
 * position then no longer follows the NF's service): then just after that
 * service on the current path.  A service that left the path keeps the old
 * position. */
static inline unsigned position_after_sender(const struct onvm_chain *path, unsigned idx, uint16_t service)
{
	if (likely(idx >= 1 && idx <= path->length && idx <= ONVM_MAX_CHAIN &&
		   path->entries[idx - 1].action == ONVM_TO_SERVICE && path->entries[idx - 1].destination == service))
		return idx;
	int k = router_chain_after(path, service);
	return k >= 0 ? (unsigned)k : idx;
}

/* May an NF of `service` send to (action, dest)?  Only along the edges of
 * the deployed graph, unless its service is unconstrained. */
static inline bool steer_allowed(const struct onvm_tables *t, uint16_t service, unsigned action, uint16_t dest)
{
	const struct onvm_steer *st = &t->steer[service < ONVM_MAX_SERVICES ? service : 0];
	if (likely(st->any))
		return true;
	if (action == ONVM_TO_PORT)
		return dest < 32 && (st->ports >> dest) & 1;
	return dest < ONVM_MAX_SERVICES && (st->services[dest / 64] >> (dest % 64)) & 1;
}

bool router_steer_ok(const struct onvm_tables *t, uint16_t service, unsigned action, uint16_t dest)
{
	return steer_allowed(t, service, action, dest);
}

/* A flow-table miss went to the miss service (flow_dir_start); that NF
 * says NEXT: ask the flow table again (its answer may have come in the
 * meantime), else the port's default path. */
static inline void resolve_miss(const struct onvm_tables *t, struct rte_mbuf *m, struct onvm_pkt_meta *meta)
{
	int p = flow_dir_lookup(t, m);
	meta->path = (uint8_t)(p >= 0 ? p : meta->in_port);
	meta->chain_index = 0;
}

/* Decide where one packet goes and buffer it there.  The packet's meta
 * holds the action its last holder asked for, and its path and position.
 * Refusals (no live instance, no such port, a steer the graph does not
 * allow), NEXT past the path's end and packets past the hop limit are
 * counted and dropped. */
void router_route(struct onvm_router *r, struct rte_mbuf *m, const struct onvm_route_counts *c)
{
	const struct onvm_tables *t = r->tables;
	struct onvm_pkt_meta *meta = onvm_meta(m);
	unsigned action = meta->action;
	uint16_t dest = meta->destination;

	if (r->self != ONVM_OWNER_MGR) {
		if (unlikely(++meta->hops > t->hop_limit)) {
			route_drop(r, m, c->hop_limit, ONVM_WHY_HOP_LIMIT);
			return;
		}
		if (unlikely(action == ONVM_TO_SERVICE || action == ONVM_TO_PORT) &&
		    !steer_allowed(t, onvm_dp.shm->nfs[r->self].service, action, dest)) {
			route_drop(r, m, c->steer_refused, ONVM_WHY_STEER);
			return;
		}
	}
	if (action == ONVM_NEXT) {
		if (unlikely(meta->chain_index == ONVM_CHAIN_AFTER_DEST))
			continue_after(t, meta, dest);
		if (unlikely(meta->path == ONVM_PATH_MISS) && r->self != ONVM_OWNER_MGR)
			resolve_miss(t, m, meta);
		if (unlikely(meta->path == ONVM_PATH_MISS)) {
			action = ONVM_TO_SERVICE; /* from the RX thread: to the miss service */
			dest = t->flow_miss;
		} else {
			unsigned idx = meta->chain_index;
			const struct onvm_chain *path = router_path(t, meta->path);
			if (r->self != ONVM_OWNER_MGR && likely(path != NULL))
				idx = position_after_sender(path, idx, onvm_dp.shm->nfs[r->self].service);
			if (unlikely(path == NULL || idx >= path->length || idx >= ONVM_MAX_CHAIN)) {
				route_drop(r, m, c->chain_end, ONVM_WHY_CHAIN_END);
				return;
			}
			action = path->entries[idx].action;
			dest = path->entries[idx].destination;
			meta->chain_index = (uint8_t)(idx + 1);
		}
	} else if (action == ONVM_TO_SERVICE) {
		continue_after(t, meta, dest);
	}

	if (action == ONVM_TO_SERVICE) {
		int slot = pick_instance(t, dest, meta->hash);
		if (unlikely(slot < 0)) {
			route_drop(r, m, c->refused, ONVM_WHY_NO_INSTANCE);
			return;
		}
		buffer_nf(r, (unsigned)slot, m);
	} else if (action == ONVM_TO_PORT && dest < onvm_dp.shm->nb_ports && onvm_dp.port_tx[dest]) {
		buffer_port(r, dest, m);
	} else if (action == ONVM_DROP) {
		route_drop(r, m, NULL, ONVM_WHY_NF_DROP);
	} else {
		route_drop(r, m, c->refused, ONVM_WHY_NO_PORT);
	}
}

void router_end(struct onvm_router *r)
{
	for (unsigned i = 0; i < r->nb_pending; i++) {
		unsigned d = r->pending[i];
		if (d < ONVM_MAX_NFS) {
			if (r->nb_to_nf[d])
				flush_nf(r, d);
		} else if (r->nb_to_port[d - ONVM_MAX_NFS]) {
			flush_port(r, d - ONVM_MAX_NFS);
		}
	}
	r->nb_pending = 0;
	r->tables = NULL;
	rte_rcu_qsbr_thread_offline(onvm_dp.rcu, r->rcu_id);
}
