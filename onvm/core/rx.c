/* rx.c: the RX threads.  Each receives bursts from its ports, stamps each
 * packet with its flow hash and arrival port, and routes it into the
 * default chain. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll */
#endif
#include <poll.h>
#include <sys/socket.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include "onvm_core.h"

/* Ports that nobody announces (pcap, tap, PCI) are polled at this interval
 * when idle; ring ports are announced by inject's doorbell, veth ports by
 * their socket turning readable. */
#define EXTERNAL_POLL_NS 200000ull
/* and ring ports beside veth ports at this one: ppoll does not hear the
 * doorbell, and 0.2 ms naps would cost an idle manager 4 % of a core. */
#define RING_BESIDE_VETH_POLL_NS 1000000ull

/* How an idle RX thread waits, from the kinds of the ports it serves. */
struct rx_wait {
	bool timed;                     /* a port nobody announces: nap EXTERNAL_POLL_NS */
	bool rings;                     /* a ring port: its doorbell */
	nfds_t nfds;                    /* veth ports: sleep in ppoll() on their sockets */
	struct pollfd fds[ONVM_MAX_PORTS];
};

static void rx_wait_init(struct rx_wait *w, unsigned me, unsigned nb)
{
	memset(w, 0, sizeof(*w));
	for (unsigned p = me; p < onvm_mgr.shm->nb_ports; p += nb) {
		int fd = ports_poll_fd(p);
		if (fd >= 0)
			w->fds[w->nfds++] = (struct pollfd){.fd = fd, .events = POLLIN};
		else if (onvm_mgr.rte.port_in[p])
			w->rings = true;
		else
			w->timed = true;
	}
}

/* A socket whose interface went down or away (its namespace deleted)
 * reports an error until it is read, which would turn ppoll into a spin:
 * read it (SO_ERROR clears it); a socket hung up or no longer open leaves
 * the set. */
static void rx_wait_errors(struct rx_wait *w)
{
	for (nfds_t i = 0; i < w->nfds; i++) {
		if (likely(!(w->fds[i].revents & (POLLERR | POLLHUP | POLLNVAL))))
			continue;
		int err;
		socklen_t len = sizeof(err);
		if ((w->fds[i].revents & (POLLHUP | POLLNVAL)) ||
		    getsockopt(w->fds[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			w->fds[i].fd = -1; /* ppoll skips it; its port is polled at each wake-up */
	}
}

static bool rx_has_work(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, nb = onvm_mgr.shm->nb_rx_threads;
	if (onvm_mgr.force_quit)
		return true;
	uint64_t now = onvm_now_ns();
	for (unsigned p = me; p < onvm_mgr.shm->nb_ports; p += nb) {
		if (onvm_mgr.rte.port_in[p] && rte_ring_count(onvm_mgr.rte.port_in[p]))
			return true;
		uint64_t due = ports_inject_due(p);
		if (due && due <= now)
			return true;
	}
	return false;
}

/* How long the RX thread may sleep: until the first paced record of its
 * ports is due, 100 ms at most. */
static uint64_t rx_sleep_ns(unsigned me, unsigned nb)
{
	uint64_t wait = 100000000ull, now = onvm_now_ns();
	for (unsigned p = me; p < onvm_mgr.shm->nb_ports; p += nb) {
		uint64_t due = ports_inject_due(p);
		if (due)
			wait = RTE_MIN(wait, due > now ? due - now : 1ull);
	}
	return wait;
}

static void stamp(struct rte_mbuf *m, uint16_t port)
{
	struct onvm_pkt_meta *meta = onvm_meta(m);
	meta->action = ONVM_NEXT;
	meta->chain_index = 0;
	meta->destination = 0;
	meta->hash = onvm_flow_hash(m);
	meta->owner = ONVM_OWNER_MGR;
	meta->in_port = port;
	meta->path = (uint8_t)port;
	meta->hops = 0;
	if (onvm_mgr.rte.port_in[port] == NULL)
		meta->reserved = 0; /* ring ports: inject set it (a trace ID or 0) */
	m->hash.rss = meta->hash;
	trace_hop(meta, ONVM_TRACE_PORT_IN, ONVM_WHY_NONE, port, 0, 0, 0);
}

/* RX thread `arg` (0..nb_rx_threads-1) serves every nb_rx_threads-th port. */
int rx_thread_main(void *arg)
{
	static struct onvm_router routers[ONVM_MAX_THREADS];
	unsigned me = (unsigned)(uintptr_t)arg;
	struct onvm_router *router = &routers[me];
	router->self = ONVM_OWNER_MGR;
	router->rcu_id = (uint16_t)me;
	struct onvm_shm *shm = onvm_mgr.shm;
	struct onvm_thread_stats *ts = &shm->rx_threads[me];
	unsigned nb = shm->nb_rx_threads;
	struct rte_mbuf *pkts[ONVM_BURST];
	struct onvm_spin spin = {0, ONVM_SPIN_COLD};
	static struct rx_wait waits[ONVM_MAX_THREADS];
	struct rx_wait *w = &waits[me];
	rx_wait_init(w, me, nb);
	ts->tsc_hz = rte_get_tsc_hz();

	while (!onvm_mgr.force_quit) {
		unsigned work = 0;
		for (unsigned p = me; p < shm->nb_ports; p += nb) {
			struct onvm_port_slot *ps = &shm->ports[p];
			if (unlikely(!ps->rx_enabled))
				continue;
			uint64_t t0 = rte_rdtsc();
			work += ports_pull(p, onvm_now_ns()); /* ring ports: what notebooks injected */
			unsigned n = rte_eth_rx_burst(ps->ethdev, 0, pkts, ONVM_BURST);
			if (n == 0)
				continue;
			capture_mirror(ONVM_TAP_PORT_IN, (uint16_t)p, pkts, n);
			struct onvm_route_counts counts = {&ps->rx.rx_refused, &ps->rx.rx_chain_end, &ps->rx.rx_refused,
							   &ps->rx.rx_refused};
			router_begin(router);
			for (unsigned i = 0; i < n; i++)
				stamp(pkts[i], (uint16_t)p);
			uint64_t t1 = rte_rdtsc();
			flow_dir_start(router->tables, pkts, n, me);
			uint64_t t2 = rte_rdtsc();
			for (unsigned i = 0; i < n; i++)
				router_route(router, pkts[i], &counts);
			ts->work_cycles += rte_rdtsc() - t0; /* router_end may wait for room in a ring */
			ts->lookup_cycles += t2 - t1;
			ts->pkts += n;
			router_end(router);
			ps->rx.rx += n;
			work += n;
		}
		ts->loops++;

		if (!onvm_idle_check(&spin, work, shm->busy_poll))
			continue;
		ts->sleeps++;
		if (w->timed) {
			struct timespec nap = {0, EXTERNAL_POLL_NS};
			nanosleep(&nap, NULL);
		} else if (w->nfds) {
			/* The kernel wakes us when a frame lands in a socket's ring.  A
			 * ring port beside them is not heard here: its inject waits for
			 * the end of the nap. */
			uint64_t ns = RTE_MIN(rx_sleep_ns(me, nb), w->rings ? RING_BESIDE_VETH_POLL_NS : UINT64_MAX);
			struct timespec t = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
			if (ppoll(w->fds, w->nfds, &t, NULL) > 0)
				rx_wait_errors(w);
		} else {
			onvm_bell_sleep(ports_rx_bell(), rx_has_work, arg, rx_sleep_ns(me, nb));
		}
	}
	return 0;
}
