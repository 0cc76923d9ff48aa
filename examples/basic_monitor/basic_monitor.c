/* basic_monitor: passes every packet on and counts packets and bytes per
 * flow (IPv4 5-tuple); every INTERVAL seconds (argument, default 1) and
 * when it stops it prints the flows it saw to its log (mgr["name"].log).
 * Counters: 0 packets, 1 flows.  A burst handler: the clock is read once
 * per burst, not per packet. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <onvm/nflib.h>

#define FLOWS 4096 /* a power of two; flows past this are counted as "other" */

struct flow {
	struct onvm_5tuple key;
	uint64_t packets, bytes;
	uint8_t used;
};

struct monitor {
	struct flow flows[FLOWS];
	uint32_t nb_flows;
	uint64_t other; /* not IPv4, or the table was full */
	double interval, next_print;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int same(const struct onvm_5tuple *a, const struct onvm_5tuple *b)
{
	return a->src == b->src && a->dst == b->dst && a->sport == b->sport && a->dport == b->dport &&
	       a->proto == b->proto;
}

static struct flow *lookup(struct monitor *m, const struct onvm_5tuple *t, uint32_t hash)
{
	for (uint32_t i = 0; i < FLOWS; i++) {
		struct flow *f = &m->flows[(hash + i) & (FLOWS - 1)];
		if (!f->used) {
			f->used = 1;
			f->key = *t;
			m->nb_flows++;
			onvm_count(1, 1);
			return f;
		}
		if (same(&f->key, t))
			return f;
	}
	return NULL;
}

static void print_flows(struct monitor *m, const char *when)
{
	printf("basic_monitor %s: %u flows, %llu packets not IPv4\n", when, m->nb_flows, (unsigned long long)m->other);
	for (uint32_t i = 0; i < FLOWS; i++) {
		const struct flow *f = &m->flows[i];
		if (!f->used)
			continue;
		const struct onvm_5tuple *k = &f->key;
		printf("  flow proto %u %u.%u.%u.%u:%u -> %u.%u.%u.%u:%u  %llu packets %llu bytes\n", k->proto,
		       k->src >> 24, (k->src >> 16) & 255, (k->src >> 8) & 255, k->src & 255, k->sport, k->dst >> 24,
		       (k->dst >> 16) & 255, (k->dst >> 8) & 255, k->dst & 255, k->dport, (unsigned long long)f->packets,
		       (unsigned long long)f->bytes);
	}
	fflush(stdout);
}

static int monitor_init(struct onvm_nf *nf, void *state, int argc, char **argv)
{
	struct monitor *m = state;
	(void)nf;
	m->interval = argc > 1 ? atof(argv[1]) : 1.0;
	if (m->interval <= 0)
		return -EINVAL;
	m->next_print = now_s() + m->interval;
	return 0;
}

static int monitor(struct onvm_pkt *pkts, struct onvm_verdict *v, unsigned n, void *state)
{
	struct monitor *m = state;
	(void)v; /* every verdict stays NEXT */
	for (unsigned i = 0; i < n; i++) {
		struct onvm_5tuple t;
		struct flow *f = onvm_pkt_5tuple(&pkts[i], &t) == 0 ? lookup(m, &t, pkts[i].hash) : NULL;
		if (f) {
			f->packets++;
			f->bytes += pkts[i].len;
		} else {
			m->other++;
		}
	}
	onvm_count(0, n);
	double now = now_s();
	if (now >= m->next_print) {
		print_flows(m, "every interval");
		m->next_print = now + m->interval;
	}
	return 0;
}

static void monitor_fini(struct onvm_nf *nf, void *state)
{
	(void)nf;
	print_flows(state, "at exit");
}

ONVM_NF_DEF(.name = "basic_monitor", .burst = monitor, .state_size = sizeof(struct monitor), .init = monitor_init,
	    .fini = monitor_fini)
