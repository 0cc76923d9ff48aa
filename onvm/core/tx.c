/* tx.c: routing packets by the action in their metadata, and the TX threads
 * that send packets out of the ports.  Routing runs wherever a packet is
 * handed on: in the RX thread for arrivals, and in each NF for what it
 * returns (NF to NF directly, as later OpenNetVM versions do; see
 * docs/design.md for why). */
#include <sched.h>

#include <rte_ethdev.h>
#include <rte_lcore.h>

#include "onvm_core.h"

struct onvm_dataplane onvm_dp;
int onvm_meta_offset = -1;

int onvm_meta_field_init(bool primary)
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
void onvm_free_pkt(struct rte_mbuf *m)
{
	onvm_meta(m)->owner = ONVM_OWNER_MGR;
	rte_pktmbuf_free(m);
}

/* The live instance of `service` for this flow, or -1. */
static inline int pick_instance(const struct onvm_shm *shm, uint16_t service, uint32_t hash)
{
	if (unlikely(service == 0 || service >= ONVM_MAX_SERVICES))
		return -1;
	const struct onvm_service *s = &shm->services[service];
	uint16_t n = __atomic_load_n(&s->count, __ATOMIC_ACQUIRE);
	if (unlikely(n == 0))
		return -1;
	return s->slots[hash % n];
}

/* A ring that is full gets this long to make room before its packets are
 * dropped.  Meanwhile we yield: on a small machine its consumer may be
 * waiting for our core.  Upstream NFs block the same way, so an overloaded
 * chain runs at the pace of its slowest NF instead of burning CPU on
 * packets it will drop. */
#define BACKPRESSURE_NS 5000000ull

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

static void flush_nf(struct onvm_router *r, unsigned slot)
{
	struct onvm_nf_slot *s = &onvm_dp.shm->nfs[slot];
	unsigned n = r->nb_to_nf[slot];
	struct rte_mbuf **pkts = r->to_nf[slot];
	unsigned sent = hand_over(onvm_dp.nf_rx[slot], pkts, n, r->self, (uint16_t)slot, &s->bell, &s->state);
	if (unlikely(sent < n)) {
		for (unsigned i = sent; i < n; i++)
			onvm_free_pkt(pkts[i]);
		__atomic_fetch_add(&s->mgr.rx_drop, n - sent, __ATOMIC_RELAXED);
	}
	r->sent += sent;
	r->dropped += n - sent;
	r->nb_to_nf[slot] = 0;
	onvm_bell_ring(&s->bell);
}

static void flush_port(struct onvm_router *r, unsigned port)
{
	struct onvm_shm *shm = onvm_dp.shm;
	unsigned n = r->nb_to_port[port];
	struct rte_mbuf **pkts = r->to_port[port];
	unsigned sent = hand_over(onvm_dp.port_tx[port], pkts, n, r->self, ONVM_OWNER_MGR, &shm->tx_bell, NULL);
	if (unlikely(sent < n)) {
		for (unsigned i = sent; i < n; i++)
			onvm_free_pkt(pkts[i]);
		__atomic_fetch_add(&shm->ports[port].tx.tx_drop, n - sent, __ATOMIC_RELAXED);
	}
	r->sent += sent;
	r->dropped += n - sent;
	r->nb_to_port[port] = 0;
	onvm_bell_ring(&shm->tx_bell);
}

/* Decide where one packet goes and buffer it there.  The packet's meta
 * holds the action its last holder asked for.  Refusals (no live instance,
 * no such port) and NEXT past the chain's end are counted and dropped. */
void router_route(struct onvm_router *r, struct rte_mbuf *m, uint64_t *refused, uint64_t *chain_end)
{
	struct onvm_shm *shm = onvm_dp.shm;
	struct onvm_pkt_meta *meta = onvm_meta(m);
	unsigned action = meta->action;
	uint16_t dest = meta->destination;
	const struct onvm_chain *chain = &shm->chains[__atomic_load_n(&shm->active_chain, __ATOMIC_ACQUIRE)];

	if (action == ONVM_NEXT) {
		unsigned idx = meta->chain_index;
		if (unlikely(idx == ONVM_CHAIN_AFTER_DEST))
			idx = onvm_chain_position_after(chain, dest);
		if (unlikely(idx >= chain->length)) {
			(*chain_end)++;
			onvm_free_pkt(m);
			return;
		}
		action = chain->entries[idx].action;
		dest = chain->entries[idx].destination;
		meta->chain_index = (uint8_t)(idx + 1);
	} else if (action == ONVM_TO_SERVICE) {
		meta->chain_index = onvm_chain_position_after(chain, dest);
	}

	if (action == ONVM_TO_SERVICE) {
		int slot = pick_instance(shm, dest, meta->hash);
		if (unlikely(slot < 0)) {
			(*refused)++;
			onvm_free_pkt(m);
			return;
		}
		r->to_nf[slot][r->nb_to_nf[slot]++] = m;
		if (r->nb_to_nf[slot] == ONVM_BURST)
			flush_nf(r, slot);
	} else if (action == ONVM_TO_PORT && dest < shm->nb_ports) {
		r->to_port[dest][r->nb_to_port[dest]++] = m;
		if (r->nb_to_port[dest] == ONVM_BURST)
			flush_port(r, dest);
	} else if (action == ONVM_DROP) {
		onvm_free_pkt(m);
	} else {
		(*refused)++;
		onvm_free_pkt(m);
	}
}

void router_flush(struct onvm_router *r)
{
	for (unsigned i = 0; i < ONVM_MAX_NFS; i++)
		if (r->nb_to_nf[i])
			flush_nf(r, i);
	for (unsigned p = 0; p < ONVM_MAX_PORTS; p++)
		if (r->nb_to_port[p])
			flush_port(r, p);
}

static bool tx_has_work(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, nb = onvm_dp.shm->nb_tx_threads;
	if (onvm_mgr.force_quit)
		return true;
	for (unsigned p = me; p < onvm_dp.shm->nb_ports; p += nb)
		if (rte_ring_count(onvm_dp.port_tx[p]))
			return true;
	return false;
}

/* TX thread `arg` sends what waits for its ports (p % nb_tx_threads == arg)
 * to the devices; each device queue thus has a single user.  Sleeps on
 * tx_bell when nothing moved for a while. */
int tx_thread_main(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	struct onvm_shm *shm = onvm_dp.shm;
	struct onvm_thread_stats *ts = &shm->tx_threads[me];
	unsigned nb = shm->nb_tx_threads;
	struct rte_mbuf *pkts[ONVM_BURST];
	uint64_t idle_since = 0;

	while (!onvm_mgr.force_quit) {
		unsigned work = 0;
		for (unsigned p = me; p < shm->nb_ports; p += nb) {
			unsigned n = rte_ring_sc_dequeue_burst(onvm_dp.port_tx[p], (void **)pkts, ONVM_BURST, NULL);
			if (n == 0)
				continue;
			unsigned sent = rte_eth_tx_burst(shm->ports[p].ethdev, 0, pkts, n);
			for (unsigned i = sent; i < n; i++)
				onvm_free_pkt(pkts[i]);
			shm->ports[p].tx.tx += sent;
			if (sent < n)
				__atomic_fetch_add(&shm->ports[p].tx.tx_drop, n - sent, __ATOMIC_RELAXED);
			work += n;
		}
		ts->loops++;

		if (!onvm_idle_check(&idle_since, work, shm->busy_poll))
			continue;
		ts->sleeps++;
		onvm_bell_sleep(&shm->tx_bell, tx_has_work, arg, 100000000ull);
		idle_since = 0;
	}
	return 0;
}
