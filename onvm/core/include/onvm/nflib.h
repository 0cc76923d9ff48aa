/* <onvm/nflib.h>: the onvm NF SDK.  Write a network function in C that runs
 * under an onvm manager exactly like the NFs onvm ships: it registers through
 * the manager's NF door, joins its DPDK instance as a secondary, receives
 * bursts from its own ring, and NFLib hands every packet on by the verdict
 * your code gives it.
 *
 *     #include <onvm/nflib.h>
 *     static int handler(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
 *     {
 *             if (onvm_pkt_proto(pkt) == IPPROTO_TCP && onvm_pkt_dport(pkt) == 23)
 *                     return onvm_drop(v);
 *             return onvm_next(v);
 *     }
 *     ONVM_NF("myfw", handler)
 *
 * Build:  onvm build myfw.c -o myfw
 *         (or: gcc myfw.c $(pkg-config --cflags --libs onvm) -o myfw, with
 *          PKG_CONFIG_PATH=$(onvm build --pkg-config-path))
 * Run:    onvm nf ./myfw --manager NAME --service 3 [-- ARGS for init]
 *         onvm.c_nf(path="myfw.c") from Python (launch, graphs, replicas)
 *
 * Conventions are DPDK's: DPDK types (struct rte_mbuf, rte_ipv4_hdr, ...),
 * header fields in network byte order, functions returning >= 0 on success
 * and -errno on failure.  The helpers here return ports and addresses in
 * HOST byte order (say so in their names: _sport, _dport, struct onvm_5tuple).
 *
 * Full documentation: docs/c-nfs.md. */
#ifndef ONVM_NFLIB_H
#define ONVM_NFLIB_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ----------------------------------------------------------------
 * ONVM_SDK_VERSION is the ABI of this header and of libonvm_nf: it changes
 * when a struct here or the meaning of a function does.  Every NF binary
 * carries the version it was built against (the marker below); the
 * manager refuses to register an NF of another version, with an error
 * saying to rebuild it. */
#define ONVM_SDK_VERSION 1
#define ONVM_SDK_STR_(x) #x
#define ONVM_SDK_STR(x) ONVM_SDK_STR_(x)
#define ONVM_SDK_MARKER "onvm-nf-sdk=" ONVM_SDK_STR(ONVM_SDK_VERSION) ";"

/* The marker the launcher reads out of the binary before registering it
 * (`onvm nf`, onvm.c_nf): a file without it is not an NF. */
__attribute__((used, section(".onvm_sdk"))) static const char onvm_sdk_marker_[] = ONVM_SDK_MARKER;

/* ---- the packet view ---------------------------------------------------------- */

/* One packet as the handler sees it.  NFLib fills the public fields for
 * every packet of a burst; the header helpers below parse the headers on
 * first use and remember where they are (the private fields). */
struct onvm_pkt {
	struct rte_mbuf *mbuf;  /* the DPDK packet (one segment: onvm's pool holds 2 KiB frames) */
	uint8_t *data;          /* its first byte: the Ethernet header */
	uint32_t len;           /* bytes at data */
	uint32_t hash;          /* the symmetric flow hash the RX thread computed
				 * (both directions of a flow agree; onvm places flows
				 * on replicas by it) */
	uint16_t in_port;       /* the port it arrived on; 0xffff if an NF made it */
	/* private: set by onvm_pkt_parse_ */
	uint8_t parsed_;
	uint8_t l4_proto_;      /* IPPROTO_*, 255: none known */
	uint16_t l3_type_;      /* EtherType after VLAN tags, host order */
	uint16_t l3_off_;       /* offset of the IP header */
	uint16_t l4_off_;       /* offset of the TCP/UDP header, 0: none (or a later fragment) */
	int32_t vlan_;          /* outer VLAN ID, -1: untagged */
};

/* ---- verdicts: what happens to the packet after the handler ---------------------
 * Each returns 0, so a handler can end with `return onvm_next(v);`.  With
 * no call the verdict is NEXT. */
struct onvm_verdict {
	uint32_t code;          /* private: (action << 16) | destination */
};
/* follow the chain (the packet's path, or the graph's edge) */
static inline int onvm_next(struct onvm_verdict *v) { v->code = 0; return 0; }
/* free it */
static inline int onvm_drop(struct onvm_verdict *v) { v->code = 1u << 16; return 0; }
/* to an NF of service sid (1..255): steering, allowed by the graph's edges */
static inline int onvm_to_service(struct onvm_verdict *v, uint16_t sid) { v->code = (2u << 16) | sid; return 0; }
/* out of port p */
static inline int onvm_to_port(struct onvm_verdict *v, uint16_t port) { v->code = (3u << 16) | port; return 0; }

/* ---- the NF ---------------------------------------------------------------------- */

struct onvm_nf;   /* the running NF: opaque */

/* The per-packet handler: decide pkt's verdict.  state: the NF's own state
 * (see onvm_nf_def.state_size).  Return 0, or -errno: the packet is then
 * dropped and counted as an error in the NF's stats. */
typedef int (*onvm_pkt_handler)(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state);
/* The burst variant: n packets (at most 32) and their n verdicts (each
 * preset to NEXT).  A negative return drops the whole burst (counted). */
typedef int (*onvm_burst_handler)(struct onvm_pkt *pkts, struct onvm_verdict *v, unsigned n, void *state);

struct onvm_nf_def {
	uint32_t sdk_version;       /* ONVM_SDK_VERSION: ONVM_NF_DEF sets it */
	const char *name;           /* for messages; the manager knows the NF by its launch name */
	onvm_pkt_handler handler;   /* one of handler and burst */
	onvm_burst_handler burst;
	size_t state_size;          /* bytes of zeroed state NFLib allocates for the NF (0: none) */
	/* Optional.  init runs once, after the NF has joined the manager and
	 * before it is put in service: argv holds the NF's own arguments
	 * (after `--` on `onvm nf`, args= of onvm.c_nf), argv[0] its path.  A
	 * negative return ends the NF before it takes a packet. */
	int (*init)(struct onvm_nf *nf, void *state, int argc, char **argv);
	/* after the last packet (the NF was stopped and has emptied its ring) */
	void (*fini)(struct onvm_nf *nf, void *state);
};

/* Run the NF: join the manager that launched us (`onvm nf`, onvm.c_nf:
 * they register the NF and start this binary), call init, serve packets
 * until stopped, hand on what is still in the ring, call fini.  returns:
 * the process's exit status (0: stopped cleanly; 2: could not start, with
 * the reason on stderr).  An NF with its own main() calls this. */
int onvm_nflib_run(const struct onvm_nf_def *def, int argc, char **argv);

/* A whole NF in one line: a main() running def. */
#define ONVM_NF_DEF(...)                                                                   \
	static const struct onvm_nf_def onvm_nf_def_ = {.sdk_version = ONVM_SDK_VERSION, __VA_ARGS__}; \
	int main(int argc, char **argv) { return onvm_nflib_run(&onvm_nf_def_, argc, argv); }
#define ONVM_NF(nf_name, pkt_handler) ONVM_NF_DEF(.name = (nf_name), .handler = (pkt_handler))
#define ONVM_NF_BURST(nf_name, burst_handler) ONVM_NF_DEF(.name = (nf_name), .burst = (burst_handler))

/* Who the NF is: its launch name, service ID and instance (slot) ID. */
const char *onvm_nf_name(const struct onvm_nf *nf);
uint16_t onvm_nf_service_id(const struct onvm_nf *nf);
uint16_t onvm_nf_instance_id(const struct onvm_nf *nf);
/* The running NF of this process (one per process), NULL before it joined. */
struct onvm_nf *onvm_nf_self(void);
/* The service ID of a deployed graph's node called `node` (steer to it with
 * onvm_to_service), or -ENOENT.  A deployment publishes names as it puts
 * the NF in service: look them up on the first packet, not in init. */
int onvm_service_id(const char *node);
/* The packet pool (to make packets: rte_pktmbuf_alloc). */
struct rte_mempool *onvm_nf_pktmbuf_pool(struct onvm_nf *nf);
/* The reason the last failing call here gave. */
const char *onvm_nf_last_error(void);

/* ---- NF-side stats ------------------------------------------------------------------
 * ONVM_NF_COUNTERS counters of the NF's own, shown in mgr.stats() (the NF's
 * "app" list), the dashboard and `onvm stats`: one add, no system call. */
#define ONVM_NF_COUNTERS 4
extern uint64_t *onvm_nf_counters_;
static inline void onvm_count(unsigned i, uint64_t n)
{
	if (i < ONVM_NF_COUNTERS)
		onvm_nf_counters_[i] += n;
}
static inline uint64_t onvm_counter(unsigned i) { return i < ONVM_NF_COUNTERS ? onvm_nf_counters_[i] : 0; }

/* ---- header helpers --------------------------------------------------------------- */

void onvm_pkt_parse_(struct onvm_pkt *p);  /* in libonvm_nf; the helpers call it once */

static inline void onvm_pkt_parse(struct onvm_pkt *p)
{
	if (!p->parsed_)
		onvm_pkt_parse_(p);
}

static inline struct rte_ether_hdr *onvm_pkt_eth(struct onvm_pkt *p)
{
	return p->len >= sizeof(struct rte_ether_hdr) ? (struct rte_ether_hdr *)p->data : NULL;
}
/* The outer VLAN ID (0..4095), or -1 if untagged.  802.1Q and QinQ tags
 * are skipped by the helpers below. */
static inline int onvm_pkt_vlan(struct onvm_pkt *p) { onvm_pkt_parse(p); return p->vlan_; }
/* The EtherType after any VLAN tags, host order (RTE_ETHER_TYPE_IPV4, ...). */
static inline uint16_t onvm_pkt_ether_type(struct onvm_pkt *p) { onvm_pkt_parse(p); return p->l3_type_; }
/* The IPv4 / IPv6 header, or NULL if the packet is not one (or is cut short). */
static inline struct rte_ipv4_hdr *onvm_pkt_ipv4(struct onvm_pkt *p)
{
	onvm_pkt_parse(p);
	return p->l3_type_ == RTE_ETHER_TYPE_IPV4 && p->l3_off_ ? (struct rte_ipv4_hdr *)(p->data + p->l3_off_) : NULL;
}
static inline struct rte_ipv6_hdr *onvm_pkt_ipv6(struct onvm_pkt *p)
{
	onvm_pkt_parse(p);
	return p->l3_type_ == RTE_ETHER_TYPE_IPV6 && p->l3_off_ ? (struct rte_ipv6_hdr *)(p->data + p->l3_off_) : NULL;
}
/* The L4 protocol (IPPROTO_TCP, IPPROTO_UDP, ...) of an IP packet, or -1.
 * For IPv6, the first header after the fixed one (extension headers are
 * not walked). */
static inline int onvm_pkt_proto(struct onvm_pkt *p)
{
	onvm_pkt_parse(p);
	return p->l4_proto_ == 255 ? -1 : p->l4_proto_;
}
/* The TCP / UDP header, or NULL (not that protocol, cut short, or an IPv4
 * fragment other than the first). */
static inline struct rte_tcp_hdr *onvm_pkt_tcp(struct onvm_pkt *p)
{
	onvm_pkt_parse(p);
	return p->l4_proto_ == IPPROTO_TCP && p->l4_off_ ? (struct rte_tcp_hdr *)(p->data + p->l4_off_) : NULL;
}
static inline struct rte_udp_hdr *onvm_pkt_udp(struct onvm_pkt *p)
{
	onvm_pkt_parse(p);
	return p->l4_proto_ == IPPROTO_UDP && p->l4_off_ ? (struct rte_udp_hdr *)(p->data + p->l4_off_) : NULL;
}
/* Source / destination port of TCP, UDP or SCTP, host order; 0 if none. */
static inline uint16_t onvm_pkt_sport(struct onvm_pkt *p)
{
	onvm_pkt_parse(p);
	return p->l4_off_ ? rte_be_to_cpu_16(*(const rte_be16_t *)(p->data + p->l4_off_)) : 0;
}
static inline uint16_t onvm_pkt_dport(struct onvm_pkt *p)
{
	onvm_pkt_parse(p);
	return p->l4_off_ ? rte_be_to_cpu_16(*(const rte_be16_t *)(p->data + p->l4_off_ + 2)) : 0;
}
/* The bytes after the TCP/UDP header (len: how many), or NULL. */
uint8_t *onvm_pkt_payload(struct onvm_pkt *p, uint32_t *len);

/* An IPv4 flow, everything in HOST order (10.0.0.1 is 0x0a000001). */
struct onvm_5tuple {
	uint32_t src, dst;
	uint16_t sport, dport;   /* 0 when the protocol has no ports */
	uint8_t proto;
};
/* pkt's 5-tuple: 0, or -EINVAL if it is not IPv4. */
int onvm_pkt_5tuple(struct onvm_pkt *p, struct onvm_5tuple *t);
/* The RX thread's symmetric flow hash (also pkt->hash). */
static inline uint32_t onvm_pkt_hash(const struct onvm_pkt *p) { return p->hash; }

/* ---- the flow director ----------------------------------------------------------------
 * Ask the manager for a rule sending the rest of pkt's flow (its exact IPv4
 * 5-tuple) along `chain`, which must end at a port: later packets of the
 * flow then skip the hops the rule leaves out, decided at RX.  The manager
 * checks it like a Python NF's onvm.flows.add (its quota, the graph's
 * edges from this NF, the operator's rules win).  One round trip to the
 * manager (tens of microseconds): call it once per flow, not per packet.
 * idle_timeout_ms: the rule goes after this long without a packet (0: never).
 * returns: the rule's ID, or -errno (-EPERM refused, -EINVAL not IPv4 or a
 * bad chain; onvm_nf_last_error() says why). */
struct onvm_hop {
	uint16_t action;   /* ONVM_HOP_SERVICE or ONVM_HOP_PORT */
	uint16_t dest;     /* service ID or port */
};
#define ONVM_HOP_SERVICE 2
#define ONVM_HOP_PORT 3
#define ONVM_TO_SERVICE_HOP(sid) ((struct onvm_hop){ONVM_HOP_SERVICE, (sid)})
#define ONVM_TO_PORT_HOP(port) ((struct onvm_hop){ONVM_HOP_PORT, (port)})
int onvm_flow_add(struct onvm_pkt *pkt, const struct onvm_hop *chain, unsigned n, uint32_t idle_timeout_ms);
/* Remove a rule this NF added: 0 or -errno. */
int onvm_flow_remove(uint32_t id);

#ifdef __cplusplus
}
#endif
#endif
