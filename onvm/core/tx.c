/* tx.c: the TX threads, which send what waits in each port's TX ring to the
 * device.  Each port belongs to one TX thread, so each device queue has a
 * single user however many NFs send to it. */
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include "onvm_core.h"

static bool tx_has_work(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, nb = onvm_mgr.shm->nb_tx_threads;
	if (onvm_mgr.force_quit || (me == 0 && capture_pending()))
		return true;
	for (unsigned p = me; p < onvm_mgr.shm->nb_ports; p += nb)
		if (rte_ring_count(onvm_dp.port_tx[p]))
			return true;
	return false;
}

/* TX thread `arg` serves ports p % nb_tx_threads == arg.  Sleeps on tx_bell
 * when nothing moved for a while. */
int tx_thread_main(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	struct onvm_shm *shm = onvm_mgr.shm;
	struct onvm_thread_stats *ts = &shm->tx_threads[me];
	unsigned nb = shm->nb_tx_threads;
	struct rte_mbuf *pkts[ONVM_BURST];
	struct onvm_spin spin = {0, ONVM_SPIN_COLD};

	while (!onvm_mgr.force_quit) {
		unsigned work = 0;
		for (unsigned p = me; p < shm->nb_ports; p += nb) {
			unsigned n = rte_ring_sc_dequeue_burst(onvm_dp.port_tx[p], (void **)pkts, ONVM_BURST, NULL);
			if (n == 0)
				continue;
			capture_mirror(ONVM_TAP_PORT_OUT, (uint16_t)p, pkts, n);
			if (unlikely(__atomic_load_n(&shm->nb_traces, __ATOMIC_RELAXED)))
				trace_port_out((uint16_t)p, pkts, n);
			unsigned sent = rte_eth_tx_burst(shm->ports[p].ethdev, 0, pkts, (uint16_t)n);
			ports_tx_capture(p); /* ring ports: into the capture ring */
			for (unsigned i = sent; i < n; i++) {
				trace_hop(onvm_meta(pkts[i]), ONVM_TRACE_DROP, ONVM_WHY_DEVICE, (uint16_t)p, 0, 0, 0);
				router_free_pkt(pkts[i]);
			}
			shm->ports[p].tx.tx += sent;
			if (sent < n)
				__atomic_fetch_add(&onvm_mgr.xchg->port_tx_drop[p], n - sent, __ATOMIC_RELAXED);
			work += n;
		}
		if (me == 0)
			work += capture_drain(); /* copies from taps into their file rings */
		ts->loops++;

		if (!onvm_idle_check(&spin, work, shm->busy_poll))
			continue;
		ts->sleeps++;
		onvm_bell_sleep(&onvm_mgr.xchg->tx_bell, tx_has_work, arg, 100000000ull);
	}
	return 0;
}
