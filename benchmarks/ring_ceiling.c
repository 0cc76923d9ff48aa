/* ring_ceiling.c: the physical limit for the data-plane benchmark, measured
 * in the same run: one cross-core rte_ring hop with the work every onvm hop
 * also does.  Producer (lcore 0): allocate 32 mbufs, write a 64-byte frame
 * into each, enqueue.  Consumer (lcore 1): dequeue, read a byte of each,
 * free them in bulk.
 * Prints {"mpps": X} after `seconds`.  Built and run by bench_dataplane.py:
 *   cc -O3 ring_ceiling.c $(pkg-config --cflags --libs libdpdk) -o ring_ceiling
 *   ./ring_ceiling SECONDS --no-pci --in-memory -l 0-1 --file-prefix onvm-bench */
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

static struct rte_ring *ring;
static struct rte_mempool *pool;
static volatile int stop;
static uint64_t consumed;

static int consumer(void *arg)
{
	(void)arg;
	struct rte_mbuf *pkts[BURST];
	uint64_t n = 0, sum = 0;
	while (!stop) {
		unsigned k = rte_ring_sc_dequeue_burst(ring, (void **)pkts, BURST, NULL);
		for (unsigned i = 0; i < k; i++)
			sum += *rte_pktmbuf_mtod(pkts[i], uint8_t *);
		if (k)
			rte_pktmbuf_free_bulk(pkts, k);
		n += k;
	}
	consumed = n + (sum & 0); /* the reads stay: sum is used */
	return (int)(sum & 1);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3.0;
	if (rte_eal_init(argc - 1, argv + 1) < 0 || rte_lcore_count() < 2) {
		fprintf(stderr, "ring_ceiling: EAL init failed (needs hugepages and 2 lcores)\n");
		return 1;
	}
	pool = rte_pktmbuf_pool_create("ceiling_pool", 16383, RTE_MEMPOOL_CACHE_MAX_SIZE, 16,
				       RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	ring = rte_ring_create("ceiling_ring", 4096, rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (pool == NULL || ring == NULL) {
		fprintf(stderr, "ring_ceiling: cannot create the pool or ring\n");
		return 1;
	}
	unsigned worker = rte_get_next_lcore(-1, 1, 0);
	rte_eal_remote_launch(consumer, NULL, worker);
	struct rte_mbuf *pkts[BURST];
	uint8_t frame[64] = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45};
	uint64_t hz = rte_get_tsc_hz(), start = rte_get_tsc_cycles(), end = start + (uint64_t)(seconds * hz);
	while (rte_get_tsc_cycles() < end) {
		if (rte_pktmbuf_alloc_bulk(pool, pkts, BURST) != 0)
			continue;
		for (unsigned i = 0; i < BURST; i++)
			memcpy(rte_pktmbuf_append(pkts[i], 64), frame, 64);
		unsigned sent = rte_ring_sp_enqueue_burst(ring, (void **)pkts, BURST, NULL);
		if (sent < BURST)
			rte_pktmbuf_free_bulk(pkts + sent, BURST - sent);
	}
	double elapsed = (double)(rte_get_tsc_cycles() - start) / hz;
	stop = 1;
	rte_eal_mp_wait_lcore();
	printf("{\"mpps\": %.3f, \"seconds\": %.2f}\n", consumed / elapsed / 1e6, elapsed);
	rte_eal_cleanup();
	return 0;
}
