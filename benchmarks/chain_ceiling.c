/* chain_ceiling.c: the ceiling of an onvm chain, a plain DPDK program of the
 * same shape and no manager logic.  `generate -> N x forward -> sink` in onvm
 * is N+2 processes and N+1 ring hops; here it is N+2 lcores (threads of one
 * process) and N+1 rte_rings.  Stage 0 allocates 32 mbufs, writes a 64-byte
 * frame into each and enqueues; stages 1..N move bursts from ring k-1 to ring
 * k; the last stage reads a byte of each packet and frees them in bulk.
 * Each stage behaves as onvm's default (shared-core) mode does: yield on an
 * empty ring, and on a full one yield and retry (backpressure, no drops).
 * Prints {"mpps": X, "seconds": S} after SECONDS.  Built and run by
 * onvm/face/bench.py:
 *   cc -O3 chain_ceiling.c $(pkg-config --cflags --libs libdpdk) -o chain_ceiling
 *   ./chain_ceiling SECONDS NFS --no-pci --in-memory --lcores '(0-7)@(0,1)' ... */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#define BURST 32
#define MAX_STAGES 16

static struct rte_ring *rings[MAX_STAGES];
static struct rte_mempool *pool;
static volatile int stop;
static unsigned nb_hops;
static uint64_t consumed;

static void push(struct rte_ring *r, struct rte_mbuf **pkts, unsigned n)
{
	unsigned sent = 0;
	while (sent < n && !stop) {
		sent += rte_ring_sp_enqueue_burst(r, (void **)pkts + sent, n - sent, NULL);
		if (sent < n)
			sched_yield();
	}
	if (sent < n)
		rte_pktmbuf_free_bulk(pkts + sent, n - sent);
}

static int stage(void *arg)
{
	unsigned k = (unsigned)(uintptr_t)arg; /* 1..nb_hops: reads ring k-1 */
	struct rte_mbuf *pkts[BURST];
	uint64_t n = 0, sum = 0;
	while (!stop) {
		unsigned got = rte_ring_sc_dequeue_burst(rings[k - 1], (void **)pkts, BURST, NULL);
		if (got == 0) {
			sched_yield();
			continue;
		}
		if (k < nb_hops) {
			push(rings[k], pkts, got);
			continue;
		}
		for (unsigned i = 0; i < got; i++)
			sum += *rte_pktmbuf_mtod(pkts[i], uint8_t *);
		rte_pktmbuf_free_bulk(pkts, got);
		n += got;
	}
	if (k == nb_hops)
		consumed = n + (sum & 0);
	return (int)(sum & 1);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3.0;
	unsigned nfs = argc > 2 ? (unsigned)atoi(argv[2]) : 1;
	if (nfs > MAX_STAGES - 2) {
		fprintf(stderr, "chain_ceiling: at most %d NFs\n", MAX_STAGES - 2);
		return 1;
	}
	nb_hops = nfs + 1;
	if (rte_eal_init(argc - 2, argv + 2) < 0 || rte_lcore_count() < nfs + 2) {
		fprintf(stderr, "chain_ceiling: EAL init failed (needs hugepages and %u lcores)\n", nfs + 2);
		return 1;
	}
	pool = rte_pktmbuf_pool_create("chain_pool", 16383, RTE_MEMPOOL_CACHE_MAX_SIZE, 16,
				       RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	for (unsigned k = 0; k < nb_hops; k++) {
		char name[32];
		snprintf(name, sizeof(name), "chain_ring%u", k);
		rings[k] = rte_ring_create(name, 4096, rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (rings[k] == NULL)
			pool = NULL;
	}
	if (pool == NULL) {
		fprintf(stderr, "chain_ceiling: cannot create the pool or rings\n");
		return 1;
	}
	unsigned lc = rte_get_main_lcore();
	for (unsigned k = 1; k <= nb_hops; k++) {
		lc = rte_get_next_lcore(lc, 1, 0);
		rte_eal_remote_launch(stage, (void *)(uintptr_t)k, lc);
	}
	struct rte_mbuf *pkts[BURST];
	uint8_t frame[64] = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45};
	uint64_t hz = rte_get_tsc_hz(), start = rte_get_tsc_cycles(), end = start + (uint64_t)(seconds * hz);
	while (rte_get_tsc_cycles() < end) {
		if (rte_pktmbuf_alloc_bulk(pool, pkts, BURST) != 0) {
			sched_yield(); /* pool empty: the chain is behind */
			continue;
		}
		for (unsigned i = 0; i < BURST; i++)
			memcpy(rte_pktmbuf_append(pkts[i], 64), frame, 64);
		push(rings[0], pkts, BURST);
	}
	double elapsed = (double)(rte_get_tsc_cycles() - start) / hz;
	stop = 1;
	rte_eal_mp_wait_lcore();
	printf("{\"mpps\": %.3f, \"seconds\": %.2f}\n", consumed / elapsed / 1e6, elapsed);
	rte_eal_cleanup();
	return 0;
}
