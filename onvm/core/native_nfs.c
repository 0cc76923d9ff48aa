/* native_nfs.c: NFs written in C and shipped with the package.
 *   forward   passes every packet on (NEXT)
 *   drop      drops every packet
 *   count     passes packets on, tallying them by IP protocol in app[]:
 *             app[0] TCP, app[1] UDP, app[2] ICMP, app[3] other
 *   sink      drops every packet; packets made by `generate` carry a send
 *             time, and sink samples the first packet of each burst:
 *             app[0] samples, app[1] sum of latency in ns, app[2] max in ns,
 *             and the stats file's lat_min and lat_hist (percentiles)
 *   generate  makes UDP packets: rate (pps, 0 = as fast as it can; after a
 *             stall it owes at most 50 ms of packets, no burst), size
 *             (bytes, >= 60), count (0 = no limit), flows (distinct source
 *             ports), dest (service ID; 0 = follow the default chain), port
 *             (follow that port's path, as if they arrived there)
 * Each is one flat loop: receive, act, hand on.  generate is held back by
 * the next NF's full receive ring (see tx.c), so it runs at the chain's
 * pace. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_udp.h>

#include "onvm_core.h"
#include "onvm_pace.h"

#define STAMP_MAGIC 0x6f6e766d54494d45ull /* "onvmTIME" */
#define STAMP_OFFSET (sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr))
/* generate looks at the stop flags and the manager this often, not every
 * burst: the manager check is a system call. */
#define GEN_STOP_CHECK_NS 10000000ull

static uint32_t verdict_forward(struct rte_mbuf *m, uint64_t *app)
{
	(void)m;
	(void)app;
	return ONVM_VERDICT(ONVM_NEXT, 0);
}

static uint32_t verdict_drop(struct rte_mbuf *m, uint64_t *app)
{
	(void)m;
	(void)app;
	return ONVM_VERDICT(ONVM_DROP, 0);
}

static uint32_t verdict_count(struct rte_mbuf *m, uint64_t *app)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	unsigned k = 3;
	if (m->data_len >= sizeof(*eth) + sizeof(struct rte_ipv4_hdr) &&
	    eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
		uint8_t proto = ((const struct rte_ipv4_hdr *)(eth + 1))->next_proto_id;
		k = proto == IPPROTO_TCP ? 0 : proto == IPPROTO_UDP ? 1 : proto == IPPROTO_ICMP ? 2 : 3;
	}
	app[k]++;
	return ONVM_VERDICT(ONVM_NEXT, 0);
}

typedef uint32_t (*verdict_fn)(struct rte_mbuf *m, uint64_t *app);

static int run_loop(struct onvm_nf *nf, verdict_fn fn)
{
	struct rte_mbuf *pkts[ONVM_BURST];
	uint32_t verdicts[ONVM_BURST];
	uint64_t *app = onvm_nf_stats(nf)->app;
	int n;
	while ((n = onvm_nf_rx_burst(nf, pkts, 100)) >= 0) {
		for (int i = 0; i < n; i++)
			verdicts[i] = fn(pkts[i], app);
		if (n)
			onvm_nf_tx_burst(nf, pkts, verdicts, (unsigned)n);
	}
	return 0;
}

/* One sample per burst: reading the clock and the payload for every packet
 * would cost more than the rest of the sink. */
static void sample_latency(struct rte_mbuf *m, struct onvm_nf_stats *st)
{
	uint64_t *app = st->app;
	if (m->data_len < STAMP_OFFSET + 16)
		return;
	/* The stamp sits 42 bytes into the frame: not 8-byte aligned, so it
	 * is copied out rather than read through a uint64_t pointer (UB). */
	uint64_t stamp[2];
	memcpy(stamp, rte_pktmbuf_mtod_offset(m, const uint8_t *, STAMP_OFFSET), sizeof(stamp));
	if (stamp[0] != STAMP_MAGIC)
		return;
	uint64_t lat = onvm_now_ns() - stamp[1];
	app[0]++;
	app[1] += lat;
	if (lat > app[2])
		app[2] = lat;
	if (lat < st->lat_min || app[0] == 1)
		st->lat_min = lat;
	st->lat_hist[onvm_lat_bucket(lat)]++;
}

static int run_sink(struct onvm_nf *nf)
{
	struct rte_mbuf *pkts[ONVM_BURST];
	uint32_t verdicts[ONVM_BURST];
	struct onvm_nf_stats *st = onvm_nf_stats(nf);
	int n;
	for (unsigned i = 0; i < ONVM_BURST; i++)
		verdicts[i] = ONVM_VERDICT(ONVM_DROP, 0);
	while ((n = onvm_nf_rx_burst(nf, pkts, 100)) >= 0) {
		if (n == 0)
			continue;
		sample_latency(pkts[0], st);
		onvm_nf_tx_burst(nf, pkts, verdicts, (unsigned)n);
	}
	return 0;
}

#define GEN_NO_PORT UINT64_MAX
struct gen_conf {
	uint64_t rate, count, flows, dest, port;
	uint32_t size;
};

static int parse_gen_args(const char *args, struct gen_conf *c)
{
	char buf[256];
	c->rate = 0;
	c->count = 0;
	c->flows = 64;
	c->dest = 0;
	c->port = GEN_NO_PORT;
	c->size = 64;
	snprintf(buf, sizeof(buf), "%s", args ? args : "");
	for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		char *end;
		if (eq == NULL) {
			onvm_set_error("generate: argument '%s' is not key=value", kv);
			return -EINVAL;
		}
		*eq = 0;
		unsigned long long v = strtoull(eq + 1, &end, 10);
		if (*end) {
			onvm_set_error("generate: %s=%s is not a number", kv, eq + 1);
			return -EINVAL;
		}
		if (!strcmp(kv, "rate"))
			c->rate = v;
		else if (!strcmp(kv, "count"))
			c->count = v;
		else if (!strcmp(kv, "flows"))
			c->flows = v;
		else if (!strcmp(kv, "dest"))
			c->dest = v;
		else if (!strcmp(kv, "size"))
			c->size = (uint32_t)v;
		else if (!strcmp(kv, "port"))
			c->port = v;
		else {
			onvm_set_error("generate: unknown argument '%s' (rate, size, count, flows, dest, port)", kv);
			return -EINVAL;
		}
	}
	if (c->size < 60 || c->size > RTE_MBUF_DEFAULT_DATAROOM) {
		onvm_set_error("generate: size %u is out of range 60..%u", c->size, RTE_MBUF_DEFAULT_DATAROOM);
		return -EINVAL;
	}
	if (c->flows == 0 || c->flows > 65535) {
		onvm_set_error("generate: flows must be 1..65535");
		return -EINVAL;
	}
	if (c->dest >= ONVM_MAX_SERVICES) {
		onvm_set_error("generate: dest service %llu is out of range 1..%d", (unsigned long long)c->dest,
			       ONVM_MAX_SERVICES - 1);
		return -EINVAL;
	}
	if (c->port != GEN_NO_PORT && (c->dest || c->port >= ONVM_MAX_PORTS)) {
		onvm_set_error("generate: port must be 0..%d, and not with dest", ONVM_MAX_PORTS - 1);
		return -EINVAL;
	}
	return 0;
}

/* An Ethernet/IPv4/UDP frame from 198.51.100.1 to 203.0.113.9 (documentation
 * addresses: never routable), payload zeroed. */
static void build_template(uint8_t *t, uint32_t size)
{
	memset(t, 0, size);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)t;
	const uint8_t src[6] = {0x02, 0, 0, 0, 0, 1}, dst[6] = {0x02, 0, 0, 0, 0, 2};
	memcpy(&eth->src_addr, src, 6);
	memcpy(&eth->dst_addr, dst, 6);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	ip->version_ihl = 0x45;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(size - sizeof(*eth)));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = rte_cpu_to_be_32(0xc6336401); /* 198.51.100.1 */
	ip->dst_addr = rte_cpu_to_be_32(0xcb007109); /* 203.0.113.9 */
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
	udp->src_port = rte_cpu_to_be_16(1024);
	udp->dst_port = rte_cpu_to_be_16(9);
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(size - sizeof(*eth) - sizeof(*ip)));
}

static int run_generate(struct onvm_nf *nf, const char *args)
{
	struct gen_conf c;
	int ret = parse_gen_args(args, &c);
	if (ret < 0)
		return ret;
	struct rte_mempool *pool = onvm_nf_pool(nf);
	uint8_t tmpl[RTE_MBUF_DEFAULT_DATAROOM];
	build_template(tmpl, c.size);
	struct rte_mbuf *pkts[ONVM_BURST];
	struct onvm_batch in = {.max = ONVM_BURST};
	uint64_t made = 0, t0 = onvm_now_ns(), forgiven = 0;
	/* The flow hash of each source port, computed once (see onvm_flow_hash). */
	uint32_t *flow_hash = malloc(c.flows * sizeof(uint32_t));
	if (flow_hash == NULL)
		return -ENOMEM;
	{
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		if (m == NULL) {
			free(flow_hash);
			onvm_set_error("generate: the packet pool is empty");
			return -ENOMEM;
		}
		uint8_t *d = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)c.size);
		memcpy(d, tmpl, c.size);
		struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(d + sizeof(struct rte_ether_hdr) +
								 sizeof(struct rte_ipv4_hdr));
		for (uint64_t f = 0; f < c.flows; f++) {
			udp->src_port = rte_cpu_to_be_16((uint16_t)(1024 + f));
			flow_hash[f] = onvm_flow_hash(m);
		}
		router_free_pkt(m);
	}
	uint16_t self = onvm_nf_slot_id(nf);

	uint64_t next_stop_check = 0;
	for (;;) {
		uint64_t now = onvm_now_ns();
		if (now >= next_stop_check) {
			if (onvm_nf_should_stop(nf))
				break;
			next_stop_check = now + GEN_STOP_CHECK_NS;
		}
		if (c.count && made >= c.count) {
			/* Done: stay registered (stats stay visible) and drop
			 * anything sent to us until asked to stop. */
			int n = onvm_nf_rx(nf, &in, 100);
			if (n < 0)
				break;
			for (int i = 0; i < n; i++)
				in.verdict[i] = ONVM_VERDICT(ONVM_DROP, 0);
			if (n)
				onvm_nf_tx(nf, &in);
			continue;
		}
		unsigned burst = ONVM_BURST;
		if (c.count && c.count - made < burst)
			burst = (unsigned)(c.count - made);
		if (c.rate) {
			uint64_t due = onvm_pace_due(now - t0, c.rate) - forgiven;
			/* Held back (a stalled chain, a restarted NF): owe at most
			 * 50 ms of packets, so what follows a stall is the rate, not
			 * a burst that repays it. */
			uint64_t cap = RTE_MAX(c.rate / 20, (uint64_t)ONVM_BURST);
			if (due > made + cap) {
				forgiven += due - made - cap;
				due = made + cap;
			}
			if (due <= made) {
				struct timespec ts = {0, 20000};
				nanosleep(&ts, NULL);
				continue;
			}
			if (due - made < burst)
				burst = (unsigned)(due - made);
		}
		if (rte_pktmbuf_alloc_bulk(pool, pkts, burst) != 0) {
			sched_yield(); /* pool empty: the chain is behind */
			continue;
		}
		now = onvm_now_ns(); /* the send time stamped into each packet */
		for (unsigned i = 0; i < burst; i++) {
			struct rte_mbuf *m = pkts[i];
			uint8_t *d = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)c.size);
			memcpy(d, tmpl, c.size);
			struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(d + sizeof(struct rte_ether_hdr) +
									 sizeof(struct rte_ipv4_hdr));
			uint64_t flow = (made + i) % c.flows;
			udp->src_port = rte_cpu_to_be_16((uint16_t)(1024 + flow));
			if (c.size >= STAMP_OFFSET + 16) {
				uint64_t stamp[2] = {STAMP_MAGIC, now};
				memcpy(d + STAMP_OFFSET, stamp, sizeof(stamp));
			}
			struct onvm_pkt_meta *meta = onvm_meta(m);
			meta->action = c.dest ? ONVM_TO_SERVICE : ONVM_NEXT;
			meta->destination = c.dest ? (uint16_t)c.dest : onvm_nf_service(nf);
			meta->chain_index = ONVM_CHAIN_AFTER_DEST;
			meta->hash = flow_hash[flow];
			meta->owner = self;
			meta->in_port = 0xffff;
			meta->path = 0xff; /* resolved from the maker's service when routed */
			if (c.port != GEN_NO_PORT) { /* the port's path from its start */
				meta->in_port = (uint16_t)c.port;
				meta->path = (uint8_t)c.port;
				meta->chain_index = 0;
			}
			meta->hops = 0;
			meta->reserved = 0; /* not traced: a recycled mbuf may hold an old trace ID */
			m->hash.rss = meta->hash;
		}
		made += burst;
		onvm_nf_send_new(nf, pkts, burst);
	}
	free(flow_hash);
	return 0;
}

int onvm_nf_run_native(struct onvm_nf *nf, const char *name, const char *args)
{
	if (!strcmp(name, "generate"))
		return run_generate(nf, args);
	if (args && args[0]) {
		onvm_set_error("native NF '%s' takes no arguments", name);
		return -EINVAL;
	}
	if (!strcmp(name, "forward"))
		return run_loop(nf, verdict_forward);
	if (!strcmp(name, "drop"))
		return run_loop(nf, verdict_drop);
	if (!strcmp(name, "count"))
		return run_loop(nf, verdict_count);
	if (!strcmp(name, "sink"))
		return run_sink(nf);
	onvm_set_error("no native NF called '%s' (forward, drop, count, sink, generate)", name);
	return -ENOENT;
}
