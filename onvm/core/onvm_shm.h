/* onvm_shm.h: the one shared layout between the manager, the NFs and the
 * notebook.  Three kinds of shared memory, by who may write them:
 *   - the control file (struct onvm_shm), a plain mmap'd file in the
 *     manager's runtime dir.  Only the manager process writes it; NFs and
 *     notebooks map it read-only.  It holds the routing tables, NF slots and
 *     port counters, so no NF can change where packets go.
 *   - one stats file per NF slot (struct onvm_nf_stats): written by that NF
 *     alone, read by everyone else.
 *   - DPDK hugepages, mapped read-write by every secondary: the packet pool,
 *     the rings, and the memzone ONVM_XCHG_NAME (struct onvm_xchg: doorbells
 *     and the counters that senders bump on a receiver's behalf) and the RCU
 *     state.  This is the trust boundary, as in OpenNetVM: an NF can corrupt
 *     packets and rings, and nothing outside the hugepages trusts what it
 *     writes there (the manager copies counters out, never routes on them).
 * Python reads this header through cffi: onvm/_build.py turns it into the
 * cdef, so keep to one declaration per line, top-level structs and
 * ONVM_ALIGNED members. */
#ifndef ONVM_SHM_H
#define ONVM_SHM_H

#include <stdint.h>

#define ONVM_SHM_MAGIC 0x6f6e766d
#define ONVM_SHM_VERSION 3
/* Each version's layout, as a digest of every struct below (size, alignment,
 * each field's offset and type, as the compiler lays them out; x86-64).
 * tests/test_shm_layout.py fails unless a change of layout bumps
 * ONVM_SHM_VERSION and adds the new version's line here (the test prints it):
 *   layout 3 682e91033e78e55c
 */

#define ONVM_MAX_NFS 128       /* NF slots; slot index == instance ID */
#define ONVM_MAX_SERVICES 256  /* service IDs 1..255; 0 is "none" */
#define ONVM_MAX_INSTANCES 32  /* live instances per service */
#define ONVM_RETA_SIZE 256     /* buckets of a service's indirection table */
#define ONVM_MAX_PORTS 32      /* DPDK's RTE_MAX_ETHPORTS here */
#define ONVM_MAX_CHAIN 16
#define ONVM_BURST 32
#define ONVM_CACHE_LINE 64
#define ONVM_NB_ACTIONS 4
#define ONVM_NB_APP 4
#define ONVM_NF_PARK_MAX 4096  /* packets one NF may hold back (onvm_nf_park) */
#define ONVM_MAX_TAPS 8        /* captures at hops armed at once (capture.c) */
/* The sink's latency histogram: log2-linear buckets, 8 per power of two
 * (at most 12.5% wide), values below 8 ns one each; onvm_lat_bucket. */
#define ONVM_LAT_BUCKETS 312

/* lcore IDs: manager main 0, then its RX threads, then its TX threads.  NF
 * slot i uses FIRST_NF + i while that is below DPDK's RTE_MAX_LCORE (128), so
 * each has its own mempool cache; NFs in higher slots run without one. */
#define ONVM_MAX_THREADS 3 /* RX threads, and TX threads, per manager */
#define ONVM_LCORE_FIRST_NF 8
#define ONVM_LCORE_NONE 0xffff

/* RCU reader IDs (rte_rcu_qsbr): RX thread r is r, NF slot i is RCU_FIRST_NF + i. */
#define ONVM_RCU_FIRST_NF 4

/* DPDK object names (per file prefix, so no clash between managers). */
#define ONVM_POOL_NAME "onvm_pool"
#define ONVM_XCHG_NAME "onvm_xchg"
#define ONVM_RCU_NAME "onvm_rcu"
#define ONVM_NF_RX_RING_FMT "onvm_nf%u_rx"
#define ONVM_PORT_IN_RING_FMT "onvm_port%u_in"
#define ONVM_PORT_OUT_RING_FMT "onvm_port%u_out"
#define ONVM_PORT_TX_RING_FMT "onvm_port%u_tx"

#define ONVM_ALIGNED __attribute__((aligned(ONVM_CACHE_LINE)))

/* Actions an NF returns; also the kinds of chain entry. */
enum onvm_action {
	ONVM_NEXT = 0,       /* follow the default chain */
	ONVM_DROP = 1,       /* free the packet */
	ONVM_TO_SERVICE = 2, /* destination = service ID */
	ONVM_TO_PORT = 3     /* destination = port index */
};

/* Per-packet metadata, in an mbuf dynamic field (ONVM_META_FIELD): it
 * lands in the mbuf's second cache line, which allocating and freeing touch
 * anyway.  Written by whoever holds the packet. */
#define ONVM_META_FIELD "onvm_pkt_meta"
#define ONVM_OWNER_MGR 0xffff  /* held by the manager or a port */
/* chain_index of a packet an NF made: NEXT continues after the service in
 * `destination` (the maker's), looked up when it is routed. */
#define ONVM_CHAIN_AFTER_DEST 0xff
#define ONVM_HOP_LIMIT 32    /* default: NF hand-ons a packet may take */
struct onvm_pkt_meta {
	uint8_t action;
	uint8_t chain_index; /* next position in the default chain */
	uint16_t destination;
	uint32_t hash;       /* symmetric flow hash, computed once at RX */
	uint16_t owner;      /* NF slot that holds it, or ONVM_OWNER_MGR */
	uint16_t in_port;
	uint8_t path;        /* the path it follows: that of its ingress port */
	uint8_t hops;        /* times an NF handed it on (against steering loops) */
	uint16_t reserved;   /* a trace ID (trace.c), 0: not traced */
};

/* A futex word the consumer sleeps on and producers ring (onvm_core.h). */
struct onvm_doorbell {
	uint32_t seq;
	uint32_t sleeping;
	uint64_t pad[7];
};

enum onvm_nf_state {
	ONVM_NF_FREE = 0,
	ONVM_NF_CLAIMED = 1,  /* the manager gave the slot to a registering NF */
	ONVM_NF_RUNNING = 2,  /* in the service table */
	ONVM_NF_ZOMBIE = 3    /* left or died; the manager recovers its packets */
};

/* ---- written by one NF: its stats file ----------------------------------- */

struct onvm_nf_stats {
	uint64_t rx;
	uint64_t tx;          /* handed on to the next NF or port */
	uint64_t tx_drop;     /* lost: the next ring stayed full */
	uint64_t refused;     /* actions refused: no such service or port */
	uint64_t chain_end;   /* NEXT past the end of the chain (dropped) */
	uint64_t act[ONVM_NB_ACTIONS];
	uint64_t errors;      /* callback raised or returned a bad action */
	uint64_t created;     /* packets allocated by the NF (generate) */
	uint64_t wakeups;     /* times it went to sleep and woke */
	uint64_t app[ONVM_NB_APP]; /* the NF's own counters (see native NFs) */
	uint64_t generation;  /* the slot's generation when this NF started */
	uint64_t steer_refused; /* ToService/ToPort with no steer edge from this NF (dropped) */
	uint64_t hop_limit;   /* packets past the hop limit (dropped: a steering loop) */
	uint64_t lat_min;     /* sink: smallest latency sampled, ns */
	uint64_t lat_hist[ONVM_LAT_BUCKETS]; /* sink: latency samples per bucket */
	uint64_t parked;      /* held back now (onvm_nf_park): rx = sum of act[] + parked */
	uint64_t unparked;    /* handed on after being parked */
	uint64_t log_dropped; /* lines the NF could not write to its log (a full disk) */
};

/* ---- packet journeys (trace.c) -------------------------------------------
 * mgr.trace(pkt) injects one packet whose meta->reserved carries a trace ID
 * (nonzero; 0 = not traced).  Whoever handles it (the RX thread, each NF where
 * its verdict is applied, routing when it drops it, the TX thread) appends a
 * hop to the trace's buffer in the exchange (hugepages).  The manager only
 * reads hops back for the report: nothing here decides where packets go. */
#define ONVM_TRACE_SLOTS 16    /* traces in flight at once */
#define ONVM_TRACE_HOPS 72     /* hop limit 32, each NF's hop and the drop, ports */
enum onvm_trace_kind {
	ONVM_TRACE_PORT_IN = 1,    /* where: the port it arrived at */
	ONVM_TRACE_NF = 2,         /* where: NF slot; action/dest: its verdict */
	ONVM_TRACE_PORT_OUT = 3,   /* where: the port that sent it */
	ONVM_TRACE_DROP = 4        /* where: NF slot or ONVM_OWNER_MGR; why */
};
enum onvm_trace_why {
	ONVM_WHY_NONE = 0,
	ONVM_WHY_NF_DROP = 1,      /* the NF returned DROP */
	ONVM_WHY_NO_INSTANCE = 2,  /* no live NF for the service */
	ONVM_WHY_NO_PORT = 3,      /* no such port, or a bad action */
	ONVM_WHY_CHAIN_END = 4,    /* NEXT past the end of its path */
	ONVM_WHY_HOP_LIMIT = 5,    /* a steering loop */
	ONVM_WHY_STEER = 6,        /* no graph edge for that steer */
	ONVM_WHY_RING_FULL = 7,    /* the next ring stayed full */
	ONVM_WHY_DEVICE = 8        /* the port's device refused it */
};
struct onvm_trace_hop {
	uint64_t ts_ns;      /* CLOCK_MONOTONIC */
	uint16_t id;         /* stored last: the hop is complete once it equals the trace's */
	uint8_t kind;
	uint8_t why;
	uint16_t where;
	uint16_t service;
	uint16_t action;
	uint16_t dest;
	uint32_t pad;
};
struct onvm_trace_buf {
	uint32_t count;      /* hops claimed, by writers' atomic adds */
	uint16_t id;         /* the trace this buffer serves; 0: none */
	uint16_t pad;
	struct onvm_trace_hop hops[ONVM_TRACE_HOPS];
};

/* ---- in hugepages: written by any process of the instance ----------------- */

struct onvm_xchg {
	struct onvm_doorbell nf_bell[ONVM_MAX_NFS]; /* NF i sleeps here */
	struct onvm_doorbell rx_bell;               /* the RX threads */
	struct onvm_doorbell tx_bell;               /* the TX threads */
	uint64_t nf_rx_drop[ONVM_MAX_NFS];          /* by senders: NF i's ring stayed full */
	uint64_t port_tx_drop[ONVM_MAX_PORTS];      /* by senders and TX threads */
	uint64_t tap_drop[ONVM_MAX_TAPS];           /* by mirrors: a tap's ring or the pool was full */
	struct onvm_trace_buf traces[ONVM_TRACE_SLOTS]; /* by whoever handles a traced packet */
};

/* ---- the control file: written by the manager process only ---------------- */

/* Counters the control tick copies, all at one instant (shm->sample_ns),
 * so rates are deltas over the manager's clock, never the reader's.
 * NF: generation, rx, tx, drop = rx_drop (its ring stayed full), queued =
 * packets waiting in its ring.  Port: drop = rx_drop + rx_refused +
 * rx_chain_end + tx_drop, queued = packets waiting in its TX ring. */
struct onvm_sample {
	uint64_t generation;
	uint64_t rx;
	uint64_t tx;
	uint64_t drop;
	uint64_t queued;
};

/* One NF slot: who holds it.  The NF's own counters are in its stats file;
 * these are the manager's view and the counters only the manager keeps. */
struct onvm_nf_slot {
	uint32_t state;
	uint16_t service;
	uint16_t lcore;         /* its EAL lcore; ONVM_LCORE_NONE: no pool cache */
	int32_t pid;            /* as the manager sees it (containers: host pid) */
	uint32_t stop;          /* please exit */
	uint64_t generation;    /* bumped each time the slot is given out */
	uint64_t rcu_token;     /* ZOMBIE: recovery waits for this grace period */
	uint32_t dead;          /* ZOMBIE: the process is gone */
	uint32_t pad0;
	char name[32];
	char kind[24];          /* "python", "native:forward", ... */
	uint64_t rx_drop;       /* copied from the exchange each tick */
	uint64_t recovered;     /* packets freed after it died */
	struct onvm_sample sample; /* the control tick's copy (stats_update) */
};

/* A service's live instances and its indirection table: a flow's bucket is
 * hash % ONVM_RETA_SIZE and reta[bucket] is the NF slot that serves it.
 * Adding an instance moves about 1/(n+1) of the buckets to it; removing one
 * hands only its buckets to the others (services.c). */
struct onvm_service {
	uint16_t count;
	uint16_t instances[ONVM_MAX_INSTANCES];
	uint8_t reta[ONVM_RETA_SIZE];
};

struct onvm_chain_entry {
	uint16_t action;      /* ONVM_TO_SERVICE or ONVM_TO_PORT */
	uint16_t destination;
};

/* A path: the default chain of packets that entered one port. */
struct onvm_chain {
	uint32_t length;
	struct onvm_chain_entry entries[ONVM_MAX_CHAIN];
};

/* ---- the flow director (flow_dir.c) -------------------------------------- */

#define ONVM_FLOW_MAX_RULES 131072  /* exact and wildcard rules together */
#define ONVM_FLOW_MAX_ACL 4096      /* wildcard rules (one rte_acl context) */
#define ONVM_FLOW_MAX_PATHS 192     /* distinct rule chains; meta->path 32..223 */
#define ONVM_PATH_MISS 0xff         /* meta->path of a miss sent to the miss service */
#define ONVM_FLOW_EXACT_NAME "onvm_flow_exact"
#define ONVM_FLOW_COUNTERS_NAME "onvm_flow_counters"

/* What rules match on: an IPv4 5-tuple as on the wire (addresses and ports
 * in network order; ports 0 when the packet has none, or is a fragment).
 * The exact table's key, and the rte_acl input: proto alone in the first
 * 4-byte group, as rte_acl wants. */
struct onvm_flow_key {
	uint8_t proto;
	uint8_t pad[3];
	uint32_t src;
	uint32_t dst;
	uint16_t sport;
	uint16_t dport;
};

/* A rule as the control loop hands it to onvm_mgr_flow_add: exact when
 * every field is given in full, else a wildcard rule.  Host order. */
struct onvm_flow_spec {
	uint32_t src;
	uint32_t dst;
	uint8_t src_len;      /* prefix lengths 0..32 (0: any address) */
	uint8_t dst_len;
	uint8_t proto;
	uint8_t proto_any;    /* 1: any protocol */
	uint16_t sport_lo;    /* port ranges, inclusive (0..65535: any) */
	uint16_t sport_hi;
	uint16_t dport_lo;
	uint16_t dport_hi;
	uint32_t priority;    /* wildcard rules: higher wins; 0..ONVM_FLOW_MAX_PRIORITY */
	uint16_t installer;   /* NF slot that asked for it, or ONVM_OWNER_MGR */
	uint8_t decided_at;   /* an NF's rule: the hop it decided, checked against the NF's steer rules */
	uint8_t pad;
	uint32_t in_ports;    /* bit p: the rule applies to packets entering port p; 0: every port */
	struct onvm_chain chain;
};
#define ONVM_FLOW_MAX_PRIORITY 65534

/* Per rule, written by whoever looks a packet up; the manager reads them
 * and adds the lanes up.  Lane 0: NFs resolving a miss, with atomic adds;
 * lane 1 + r: RX thread r alone, with plain adds (no locked add per packet
 * where one thread is the only writer). */
#define ONVM_FLOW_LANES (1 + ONVM_MAX_THREADS)
struct onvm_flow_counters {
	uint64_t packets;
	uint64_t bytes;
};

/* Where an NF of a service may steer (ToService/ToPort): anywhere (`any`,
 * the linear set_default_chain case), or only along the graph's edges. */
struct onvm_steer {
	uint32_t any;
	uint32_t ports;                              /* bit p: port p */
	uint64_t services[ONVM_MAX_SERVICES / 64];   /* bit s: service s */
};

/* What routing reads.  Two copies: the manager edits the one not in use,
 * publishes it, and edits the old one again only after an RCU grace period
 * (every reader has finished the burst it was routing), see services.c. */
struct onvm_tables {
	struct onvm_chain paths[ONVM_MAX_PORTS];      /* path p: for packets entering port p */
	struct onvm_service services[ONVM_MAX_SERVICES];
	struct onvm_steer steer[ONVM_MAX_SERVICES];
	char names[ONVM_MAX_SERVICES][32];            /* a deployed graph's node names */
	uint32_t hop_limit;
	/* the flow director (flow_dir.c): a packet that matches a rule follows
	 * rule path i, meta->path = ONVM_MAX_PORTS + i */
	struct onvm_chain rule_paths[ONVM_FLOW_MAX_PATHS];
	uint32_t rule_path_ports[ONVM_FLOW_MAX_PATHS]; /* bit p: rule path i takes packets entering port p */
	uint64_t flow_exact;     /* struct rte_hash * (hugepages) of exact rules, 0: none */
	uint64_t flow_acl;       /* struct rte_acl_ctx * (hugepages) of wildcard rules, 0: none */
	uint64_t flow_counters;  /* struct onvm_flow_counters[ONVM_FLOW_LANES][rules] (hugepages) */
	uint32_t flow_naive;     /* 1: rehash the headers on every lookup (benchmarks) */
	uint16_t flow_miss;      /* service that gets flow-table misses (the SDN NF), 0: default path */
	uint16_t pad_flow;
};

/* A deployment's change, applied in one table update (onvm_mgr_apply). */
struct onvm_member_set {
	uint16_t service;
	uint16_t count;
	uint16_t slots[ONVM_MAX_INSTANCES];
};

struct onvm_apply {
	uint32_t set_paths;                           /* 1: replace every path */
	uint32_t set_steer;                           /* 1: replace steer[] and names[] */
	uint32_t hop_limit;                           /* 0: unchanged */
	uint32_t nb_members;                          /* services whose instances change */
	struct onvm_chain paths[ONVM_MAX_PORTS];
	struct onvm_steer steer[ONVM_MAX_SERVICES];
	char names[ONVM_MAX_SERVICES][32];
	struct onvm_member_set members[ONVM_MAX_SERVICES];
};

enum onvm_port_kind {
	ONVM_PORT_RING = 0, /* in-memory: inject/capture */
	ONVM_PORT_NULL = 1,
	ONVM_PORT_PCAP = 2,
	ONVM_PORT_TAP = 3,
	ONVM_PORT_PCI = 4,
	ONVM_PORT_VETH = 5 /* the manager's end of a veth pair, through af_packet */
};

/* Port counters mean what they say:
 *   rx            received from the device
 *   rx_drop       received, but the first NF's ring stayed full
 *   rx_refused    the first hop had no live instance (or no such port)
 *   rx_chain_end  the chain was empty: nowhere to go
 *   tx            sent by the device
 *   tx_drop       meant for this port, but its TX ring stayed full or the
 *                 device refused it (copied from the exchange each tick)
 *   injected / inject_drop   inject() accepted / finally gave up on, or
 *                 withdrew when cancelled (the RX thread counts those)
 *   captured / capture_drop  capture() handed out / lost to a full buffer */
struct onvm_port_rx_stats {
	uint64_t rx;
	uint64_t rx_drop;
	uint64_t rx_refused;
	uint64_t rx_chain_end;
};

struct onvm_port_tx_stats {
	uint64_t tx;
	uint64_t tx_drop;
};

struct onvm_port_ctl_stats {
	uint64_t injected;
	uint64_t inject_drop;
	uint64_t captured;
	uint64_t capture_drop;
};

/* Per port.  rx: its RX thread.  tx: the control tick.  ctl: the control loop. */
struct onvm_port_slot {
	uint32_t kind;
	uint16_t ethdev;     /* DPDK port id */
	uint16_t used;
	uint32_t rx_enabled; /* the RX thread polls it (pcap replay waits) */
	char name[48];
	uint8_t mac[6];
	struct onvm_port_rx_stats rx ONVM_ALIGNED;
	struct onvm_port_tx_stats tx ONVM_ALIGNED;
	struct onvm_port_ctl_stats ctl ONVM_ALIGNED;
	struct onvm_sample sample ONVM_ALIGNED; /* the control tick's copy */
};

struct onvm_thread_stats {
	uint64_t loops;
	uint64_t sleeps;
	/* RX threads: TSC cycles spent on received bursts (pull, stamp, flow
	 * lookup, routing; not the hand-over to rings), the flow lookup's share,
	 * and the packets: the cost per packet, whatever else shares the core */
	uint64_t pkts;
	uint64_t work_cycles;
	uint64_t lookup_cycles;
	uint64_t tsc_hz;
	uint64_t pad[2];
};

/* A capture at a hop: a copy of each packet that passes `where`/`target`
 * (and the classic BPF filter, if any; libpcap compiled it once) goes to
 * the tap's ring; the original goes on.  A full tap drops the copy, counted
 * in the exchange's tap_drop, never the original. */
#define ONVM_TAP_INSNS 512
#define ONVM_TAP_RING_FMT "onvm_tap%u"
#define ONVM_TAP_RING_SIZE 2048
enum onvm_tap_where {
	ONVM_TAP_OFF = 0,
	ONVM_TAP_AFTER_SERVICE = 1, /* what a service's instances emit */
	ONVM_TAP_PORT_OUT = 2,      /* what a port sends */
	ONVM_TAP_PORT_IN = 3        /* what a port receives */
};
struct onvm_bpf_insn {          /* struct bpf_insn, libpcap's layout */
	uint16_t code;
	uint8_t jt;
	uint8_t jf;
	uint32_t k;
};
struct onvm_tap {
	uint32_t where;
	uint16_t target;            /* service ID or port */
	uint16_t nb_insns;          /* 0: every packet */
	struct onvm_bpf_insn insns[ONVM_TAP_INSNS];
};

struct onvm_shm {
	/* written once by the manager at start */
	uint32_t magic;
	uint32_t version;
	int32_t mgr_pid;
	uint32_t ready;          /* 1 once ports and rings exist */
	uint32_t nb_ports;
	uint32_t pool_size;
	uint32_t nb_rx_threads;  /* RX thread r serves ports p % nb_rx_threads == r */
	uint32_t nb_tx_threads;  /* TX thread t serves ports p % nb_tx_threads == t */
	uint32_t nf_ring_size;
	uint32_t busy_poll;      /* 1: nobody sleeps (dedicated cores, benchmarks) */
	uint32_t max_nfs;        /* slots in use by this manager: 1..ONVM_MAX_NFS */
	uint32_t pool_held;      /* mbufs the ports keep for themselves (a tap's RX queue) */

	/* written by the control loop */
	uint32_t pool_in_use ONVM_ALIGNED;
	uint32_t active;         /* which tables[] routing reads */
	uint64_t tick_ns;        /* CLOCK_MONOTONIC of the last control tick */
	uint64_t table_updates;
	uint64_t recovered;      /* packets recovered from NFs that died (summed; a slot's own
				  * count goes with the slot when it is given out again) */
	struct onvm_tables tables[2];

	/* each written by its own RX / TX thread */
	struct onvm_thread_stats rx_threads[ONVM_MAX_THREADS];
	struct onvm_thread_stats tx_threads[ONVM_MAX_THREADS];

	struct onvm_port_slot ports[ONVM_MAX_PORTS];
	struct onvm_nf_slot nfs[ONVM_MAX_NFS];

	/* written by the control tick with every sample above: a seqlock, odd
	 * while the samples are being written (readers retry) */
	uint64_t sample_ns ONVM_ALIGNED; /* CLOCK_MONOTONIC the samples were taken at */
	uint32_t sample_seq;
	uint32_t pad1;

	/* written by the control loop: mirrors for captures (capture.c) */
	uint32_t nb_taps;        /* taps armed; 0 keeps the hot path to one load */
	uint32_t pad2;
	struct onvm_tap taps[ONVM_MAX_TAPS];

	/* written by the control loop: traces in flight (trace.c); 0 keeps the
	 * TX threads' check to one load per burst */
	uint32_t nb_traces;
	uint32_t pad3;

	/* written by the control loop: lines it could not write to its log (a
	 * full disk); logging never stops the manager (onvm/common/logsink.py) */
	uint64_t log_dropped;
};

/* ---- packet rings in files: traffic between the data plane and notebooks --
 * A ring port's inject ring (the notebook writes, its RX thread reads) and
 * capture ring (its TX thread writes, the notebook reads) are plain files in
 * the manager's runtime dir (0600), so a notebook moves packets in bulk
 * with no DPDK and no Python in the manager's per-packet path (capring.c).
 * One producer and one consumer each; writers and readers of the notebook
 * side take a flock on the file.  Neither side trusts the other's index. */
#define ONVM_RING_MAGIC 0x6f6e7672
#define ONVM_RING_HDR 4096     /* the header page; records follow */
#define ONVM_REC_PAD 0xffffffffu /* caplen of the filler before a wrap */
#define ONVM_REC_MAX 2048      /* bytes of packet in one record at most */
/* Pacing: a paced record is due at most this long after the one before it
 * (inject's rate and replay's gaps are refused beyond it), and an inject
 * ring's consumer releases at once a record due more than
 * ONVM_PACE_HORIZON_NS ahead: a foreign writer's far-future due time would
 * otherwise hold every later record of the port behind it. */
#define ONVM_PACE_MAX_GAP_NS 60000000000ull
#define ONVM_PACE_HORIZON_NS 61000000000ull

/* Withdrawing (onvm_ring_withdraw): the records in [cancel_from, cancel_to)
 * are skipped by the consumer and counted as the port's inject_drop; so a
 * cancelled inject (Ctrl-C) or a writer that died while writing
 * (open at the next onvm_ring_begin) leaves nothing waiting. */
struct onvm_ring_hdr {
	uint32_t magic;
	uint32_t pad0;
	uint64_t size;                 /* bytes of records: a power of two */
	uint64_t head ONVM_ALIGNED;    /* producer: bytes written */
	uint64_t packets;              /* producer: records written */
	uint64_t dropped;              /* producer: records lost to a full ring */
	uint64_t cancel_from;          /* producer: withdrawn records, from */
	uint64_t cancel_to;            /* producer: ... to (stored last) */
	uint64_t open_from;            /* producer: where the writer now writing began */
	uint32_t open;                 /* producer: 1 between onvm_ring_begin and _end */
	uint32_t pad1;
	uint64_t tail ONVM_ALIGNED;    /* consumer: bytes consumed */
	uint64_t skipped;              /* consumer: bytes skipped as malformed */
	uint64_t withdrawn;            /* consumer: records skipped as withdrawn */
};

/* One record: this header, then caplen bytes, padded to 16. */
struct onvm_rec {
	uint32_t caplen;   /* bytes stored, or ONVM_REC_PAD */
	uint32_t aux;      /* capture: length on the wire; inject: trace ID */
	uint64_t ts_ns;    /* capture: CLOCK_MONOTONIC when taken; inject: when due (0: now) */
};

/* The RX threads sleep on this doorbell (the file traffic.shm, which
 * notebooks map read-write to ring it after writing an inject ring). */
struct onvm_traffic {
	uint32_t magic;
	uint32_t pad0;
	struct onvm_doorbell rx_bell ONVM_ALIGNED;
};

#endif
