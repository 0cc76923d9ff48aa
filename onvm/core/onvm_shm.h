/* onvm_shm.h: the one shared layout between the manager, the NFs and the
 * notebook.  Two kinds of shared memory:
 *   - DPDK hugepages: the packet pool and the rings (found by the names below);
 *   - the control file (struct onvm_shm), a plain mmap'd file in the DPDK
 *     runtime dir, so a notebook can read stats without initialising DPDK.
 * Each struct says who writes it.  Fields written by different parties sit on
 * different cache lines.  Python reads this file through the same cdef. */
#ifndef ONVM_SHM_H
#define ONVM_SHM_H

#include <stdint.h>

#define ONVM_SHM_MAGIC 0x6f6e766dU /* "onvm" */
#define ONVM_SHM_VERSION 1

#define ONVM_MAX_NFS 32        /* NF slots; slot index == instance ID */
#define ONVM_MAX_SERVICES 64   /* service IDs 1..63; 0 is "none" */
#define ONVM_MAX_INSTANCES 16  /* live instances per service */
#define ONVM_MAX_PORTS 8
#define ONVM_MAX_CHAIN 16
#define ONVM_BURST 32
#define ONVM_CACHE_LINE 64

/* lcore IDs: manager main 0, then its RX threads, then its TX threads; the
 * NF in slot i uses FIRST_NF + i, so every process has its own mempool
 * cache. */
#define ONVM_MAX_THREADS 3 /* RX threads, and TX threads, per manager */
#define ONVM_LCORE_FIRST_NF 8

/* DPDK object names (per file prefix, so no clash between managers). */
#define ONVM_POOL_NAME "onvm_pool"
#define ONVM_MSG_RING_NAME "onvm_msg"
#define ONVM_NF_RX_RING_FMT "onvm_nf%u_rx"
#define ONVM_PORT_IN_RING_FMT "onvm_port%u_in"   /* inject -> ring port RX */
#define ONVM_PORT_OUT_RING_FMT "onvm_port%u_out" /* ring port TX -> capture */
#define ONVM_PORT_TX_RING_FMT "onvm_port%u_tx"   /* RX thread, NFs -> TX thread -> port */
#define ONVM_SHM_FILE "onvm.shm"
#define ONVM_SOCK_FILE "onvm.sock"

/* Actions an NF returns; also the kinds of chain entry. */
enum onvm_action {
	ONVM_NEXT = 0,       /* follow the default chain (or flow table) */
	ONVM_DROP = 1,       /* free the packet */
	ONVM_TO_SERVICE = 2, /* destination = service ID */
	ONVM_TO_PORT = 3,    /* destination = port index */
	ONVM_NB_ACTIONS = 4
};

/* A verdict packs an action and its destination: (action << 16) | dest. */
#define ONVM_VERDICT(action, dest) (((uint32_t)(action) << 16) | (uint16_t)(dest))
#define ONVM_VERDICT_ACTION(v) ((v) >> 16)
#define ONVM_VERDICT_DEST(v) ((v) & 0xffff)

/* Per-packet metadata, in an mbuf dynamic field (ONVM_META_FIELD): it
 * lands in the mbuf's second cache line, which allocating and freeing touch
 * anyway, so routing costs no extra cache line per packet.  Written by
 * whoever holds the packet (RX thread at arrival, the NF that hands it on). */
#define ONVM_META_FIELD "onvm_pkt_meta"
#define ONVM_OWNER_MGR 0xffff  /* held by the manager or a port */
/* chain_index of a packet an NF made: NEXT continues after the service in
 * `destination` (the maker's), looked up when it is routed. */
#define ONVM_CHAIN_AFTER_DEST 0xff
struct onvm_pkt_meta {
	uint8_t action;
	uint8_t chain_index; /* next position in the default chain */
	uint16_t destination;
	uint32_t hash;       /* symmetric 5-tuple hash, computed once at RX */
	uint16_t owner;      /* NF slot that holds it, or ONVM_OWNER_MGR */
	uint16_t in_port;
	uint32_t reserved;
};

/* A futex word the consumer sleeps on and producers ring (see doorbell.h). */
struct onvm_doorbell {
	uint32_t seq;
	uint32_t sleeping;
} __attribute__((aligned(ONVM_CACHE_LINE)));

enum onvm_nf_state {
	ONVM_NF_FREE = 0,
	ONVM_NF_CLAIMED = 1,   /* an NF process took the slot, is starting */
	ONVM_NF_RUNNING = 2,   /* registered, in the service table */
	ONVM_NF_REJECTED = 3,  /* manager refused the registration (see error) */
	ONVM_NF_ZOMBIE = 4,    /* gone; manager is recovering its packets */
};

/* Messages on the manager's message ring are plain values, no allocation:
 * (type << 8) | slot.  Written by NFs, read by the manager's control loop. */
#define ONVM_MSG_REGISTER 1
#define ONVM_MSG_UNREGISTER 2
#define ONVM_MSG(type, slot) ((void *)(uintptr_t)(((type) << 8) | (slot)))
#define ONVM_MSG_TYPE(m) ((unsigned)((uintptr_t)(m) >> 8))
#define ONVM_MSG_SLOT(m) ((unsigned)((uintptr_t)(m)&0xff))

/* One NF slot.  Control fields: claimed by the NF (CAS on state), then
 * written by the manager.  Stats: each block has a single writer. */
struct onvm_nf_slot {
	/* control */
	uint32_t state;
	uint16_t service;
	uint16_t instance;
	int32_t pid;
	int32_t error;          /* manager: why a registration was rejected */
	uint64_t start_time;    /* /proc/<pid>/stat starttime, against PID reuse */
	uint32_t stop;          /* manager or client: please exit */
	uint32_t lcore;
	uint64_t zombie_since_ns;
	char name[32];
	char kind[16];          /* "python", "native:forward", ... */

	struct onvm_doorbell bell; /* the NF sleeps here; whoever sends to it rings */

	/* written by the NF */
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
		uint64_t app[4];      /* the NF's own counters (see native NFs) */
	} nf __attribute__((aligned(ONVM_CACHE_LINE)));

	/* written by whoever sends to it (atomically) and by the manager */
	struct onvm_nf_mgr_stats {
		uint64_t rx_drop;     /* its receive ring stayed full */
		uint64_t recovered;   /* packets freed after it died */
	} mgr __attribute__((aligned(ONVM_CACHE_LINE)));
} __attribute__((aligned(ONVM_CACHE_LINE)));

enum onvm_port_kind {
	ONVM_PORT_RING = 0, /* in-memory: inject/capture */
	ONVM_PORT_NULL = 1,
	ONVM_PORT_PCAP = 2,
	ONVM_PORT_TAP = 3,
	ONVM_PORT_PCI = 4,
};

/* Per port.  rx side: RX thread.  tx side: TX thread.  capture: control. */
struct onvm_port_slot {
	uint32_t kind;
	uint16_t ethdev;     /* DPDK port id */
	uint16_t used;
	uint32_t rx_enabled; /* control: the RX thread polls it (pcap replay waits) */
	char name[48];
	uint8_t mac[6];
	struct onvm_port_rx_stats {
		uint64_t rx;
		uint64_t rx_drop;   /* could not be delivered (no NF, ring full) */
		uint64_t rx_refused;
	} rx __attribute__((aligned(ONVM_CACHE_LINE)));
	struct onvm_port_tx_stats {
		uint64_t tx;
		uint64_t tx_drop;   /* port queue full */
	} tx __attribute__((aligned(ONVM_CACHE_LINE)));
	struct onvm_port_ctl_stats {
		uint64_t injected;
		uint64_t inject_drop;
		uint64_t captured;
		uint64_t capture_drop;
	} ctl __attribute__((aligned(ONVM_CACHE_LINE)));
} __attribute__((aligned(ONVM_CACHE_LINE)));

/* Service table, written by the manager's control thread only.  Readers
 * take count then index slots[hash % count]; a stale read at worst picks an
 * instance that just left, whose ring the manager still drains. */
struct onvm_service {
	uint16_t count;
	uint16_t slots[ONVM_MAX_INSTANCES];
};

struct onvm_chain_entry {
	uint16_t action;      /* ONVM_TO_SERVICE or ONVM_TO_PORT */
	uint16_t destination;
};

/* Default chain, double-buffered: the control thread writes the inactive
 * copy, then flips `active`; data-plane threads read `active` per packet. */
struct onvm_chain {
	uint32_t length;
	struct onvm_chain_entry entries[ONVM_MAX_CHAIN];
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
	uint32_t nb_tx_threads;  /* TX thread t serves NF slots and ports i % nb_tx_threads == t */
	uint32_t nf_ring_size;
	uint32_t busy_poll;      /* 1: nobody sleeps (dedicated cores, benchmarks) */
	char prefix[64];

	/* written by the control thread */
	uint32_t pool_in_use __attribute__((aligned(ONVM_CACHE_LINE)));
	uint32_t active_chain;
	uint64_t tick_ns;
	struct onvm_chain chains[2];
	struct onvm_service services[ONVM_MAX_SERVICES];

	/* the manager's own threads sleep here; producers ring */
	struct onvm_doorbell rx_bell;
	struct onvm_doorbell tx_bell;

	/* each written by its own RX / TX thread */
	struct onvm_thread_stats {
		uint64_t loops;
		uint64_t sleeps;
	} __attribute__((aligned(ONVM_CACHE_LINE))) rx_threads[ONVM_MAX_THREADS], tx_threads[ONVM_MAX_THREADS];

	struct onvm_port_slot ports[ONVM_MAX_PORTS];
	struct onvm_nf_slot nfs[ONVM_MAX_NFS];
};

#endif
