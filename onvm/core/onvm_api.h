/* onvm_api.h: what Python calls (through cffi; onvm/_build.py reads this
 * file for the cdef).  Functions return >= 0 on success and -errno on
 * failure, with a message in onvm_last_error(). */
#ifndef ONVM_API_H
#define ONVM_API_H

#include <stdint.h>

const char *onvm_last_error(void);

/* ---- manager (the DPDK primary), called from onvm/mgr/daemon.py ---------------- */

/* EAL init, packet pool, rings for max_nfs NF slots, the exchange memzone,
 * RCU state, the control file and the NF stats files (stats_fmt: a printf
 * pattern taking the slot number). */
int onvm_mgr_init(int argc, char **argv, const char *shm_path, const char *stats_fmt, uint32_t nb_mbufs,
		  uint32_t nf_ring_size, uint32_t max_nfs);
/* The no-hugepage mode (xmem.c), asked for before onvm_mgr_init: the
 * objects NFs share go in a region of `bytes` (a memfd, or an unnamed file
 * in dir when dir is not NULL) instead of hugepages; EAL runs --no-huge. */
int onvm_mgr_use_xmem(uint64_t bytes, const char *dir);
/* The region's descriptor, handed to each NF over the NF door; -1 with hugepages. */
int onvm_mgr_xmem_fd(void);
/* Bytes of that region the manager maps in 2 MiB pages (xmem.c huge_pages). */
uint64_t onvm_mgr_xmem_huge_bytes(void);
/* Add a port (enum onvm_port_kind); returns its index.  devargs: vdev
 * arguments for pcap/tap, a PCI address for pci, ignored for ring/null.
 * netns: NULL, or for a tap port the path of a network namespace
 * (/var/run/netns/NAME) to create and start it in. */
int onvm_mgr_add_port(unsigned kind, const char *devargs, const char *netns);
/* Busy polling: no thread or NF ever sleeps (a core per thread). */
void onvm_mgr_set_busy_poll(int on);
/* RX and TX threads, 1..ONVM_MAX_THREADS each; EAL must have 1 + rx + tx lcores. */
int onvm_mgr_set_threads(unsigned rx, unsigned tx);
/* Start ports, launch the RX and TX threads. */
int onvm_mgr_start(void);
/* Control work, called every few ms: recovery of NFs whose grace period
 * has passed, counters copied out of the exchange, pool use. */
void onvm_mgr_tick(void);
/* Start receiving on a port that waits (a pcap file to replay). */
int onvm_mgr_enable_rx(uint16_t port);
/* The file rings of a ring port (mapped by the caller, onvm/traffic.py):
 * `in` is what inject writes, `out` what the port transmits, for capture. */
int onvm_mgr_set_port_rings(uint16_t port, struct onvm_ring_hdr *in, struct onvm_ring_hdr *out);
/* The doorbell file the RX threads sleep on (notebooks ring it). */
int onvm_mgr_set_traffic(struct onvm_traffic *t);
/* Arm tap k (enum onvm_tap_where, service or port): copies of what passes
 * there and matches the libpcap filter (NULL or "": all) go to `ring`. */
int onvm_mgr_tap_arm(unsigned k, unsigned where, uint16_t target, const char *filter, struct onvm_ring_hdr *ring);
int onvm_mgr_tap_disarm(unsigned k);
/* Copies tap k lost (ring or pool full), since the manager started. */
uint64_t onvm_mgr_tap_drops(unsigned k);
/* Packets a client gave up injecting: the port's inject_drop. */
void onvm_mgr_inject_dropped(uint16_t port, uint64_t n);
/* Replace the default chain of every port: verdicts ((action << 16) | destination). */
int onvm_mgr_set_chain(const uint32_t *verdicts, uint32_t n);
/* A deployment: paths, steering rules, node names and the instances of some
 * services, checked, then published in one table update.  An instance that
 * joins a service takes about 1/(n+1) of its flows; one that leaves hands
 * only its own to the others. */
int onvm_mgr_apply(const struct onvm_apply *a);

/* The flow director (flow_dir.c).  Add a rule: exact when every field of
 * the 5-tuple is given in full, else wildcard; returns its ID.  The chain
 * ends at a port, and each hop must be allowed by the steer rules of the
 * service before it. */
int onvm_mgr_flow_add(const struct onvm_flow_spec *s);
int onvm_mgr_flow_remove(uint32_t id);
int onvm_mgr_flow_counters(uint32_t id, struct onvm_flow_counters *out);
/* naive: 1 rehashes headers per lookup, 0 uses the RX hash, -1 unchanged;
 * miss_service: the service that gets misses (0: the default path). */
int onvm_mgr_flow_config(int naive, int miss_service);

/* NF registration, driven by the control loop over the NF socket:
 * claim a slot for an NF process (pid as the manager sees it); returns the
 * slot.  The NF then joins DPDK as a secondary and says it is ready, and
 * the manager puts it in the service table. */
int onvm_mgr_nf_claim(const char *name, const char *kind, uint16_t service, int32_t pid);
int onvm_mgr_nf_ready(uint16_t slot, int in_service);
/* The NF left (or its connection closed): out of the service table. */
int onvm_mgr_nf_leave(uint16_t slot);
/* The NF's process is gone: its packets are recovered after the grace period. */
int onvm_mgr_nf_dead(uint16_t slot);
/* 1 once no reader can still hand packets to a slot that left: the NF may
 * then empty its ring and exit without losing a packet. */
int onvm_mgr_nf_out_of_service(uint16_t slot);
/* Ask every NF to exit (their stop flag). */
void onvm_mgr_stop_all(void);
/* Slots not yet FREE. */
int onvm_mgr_nfs_left(void);
/* Stop threads and ports, release DPDK. */
void onvm_mgr_shutdown(void);

/* Packet journeys (trace.c): a trace ID for one packet (inject it with the
 * ID as its record's aux), the hops recorded so far (in order, into out,
 * at most max), and the end of the trace.  16 run at once; starting a 17th
 * ends the oldest. */
int onvm_mgr_trace_start(void);
int onvm_mgr_trace_read(uint16_t id, struct onvm_trace_hop *out, uint32_t max);
int onvm_mgr_trace_end(uint16_t id);

/* ---- NF library (a DPDK secondary), called from onvm/nflib/run.py ------------ */

struct onvm_nf;

/* The widest batch onvm_nf_rx fills: a numpy NF's fixed cost per burst
 * (a C call, a few numpy calls) is shared by up to this many packets when
 * they are already waiting in its ring. */
#define ONVM_BATCH_MAX 256

/* A batch of packets as Python sees them: parallel arrays.  off[] is where
 * each packet's bytes start, from the base of onvm_nf_pool_span(): Python
 * slices one memoryview over the whole pool instead of building a buffer
 * object per packet.  The NF fills verdict[].  max, set by the caller: the
 * most onvm_nf_rx takes at once, 1..ONVM_BATCH_MAX; 0 (as ffi.new leaves
 * it) means ONVM_BURST, the burst per-packet and batch=True NFs get. */
struct onvm_batch {
	uint32_t count;
	uint32_t max;
	void *mbufs[ONVM_BATCH_MAX];
	uint64_t off[ONVM_BATCH_MAX];
	uint16_t len[ONVM_BATCH_MAX];
	uint16_t port[ONVM_BATCH_MAX];
	uint32_t hash[ONVM_BATCH_MAX];
	uint32_t verdict[ONVM_BATCH_MAX];
};

/* Join the manager's DPDK instance as a secondary in the slot the manager
 * gave (see onvm_mgr_nf_claim): map the control file read-only and this
 * slot's stats file read-write, both open fds the manager sent with its
 * answer to register (the caller closes them).  mgr_fd: the NF's connection to the
 * manager; it closing means the manager is gone.  cpus: where it may run;
 * argv: EAL arguments (prefix, --no-pci...). */
/* In the no-hugepage mode, before onvm_nf_start: the manager's region
 * (the descriptor the NF door sent); EAL argv is then --no-huge
 * --no-shconf, an instance of the NF's own. */
void onvm_nf_use_xmem(int fd);
struct onvm_nf *onvm_nf_start(int shm_fd, int stats_fd, uint16_t slot, int mgr_fd,
			      const char *cpus, int argc, char **argv);
/* Receive up to b->max packets (see struct onvm_batch): whatever waits in
 * the ring, up to that many; it never waits for a burst to fill.  Polls,
 * then sleeps until woken or timeout_ms.  Returns the count (0 on
 * timeout), or -1 when asked to stop or the manager is gone. */
int onvm_nf_rx(struct onvm_nf *nf, struct onvm_batch *b, uint32_t timeout_ms);
/* onvm_nf_rx, and the first `width` bytes of each packet copied into row i
 * of hdr (count x width bytes; zeros past a packet's end): numpy NFs get a
 * burst's headers as one array without a Python call per packet. */
int onvm_nf_rx_headers(struct onvm_nf *nf, struct onvm_batch *b, uint32_t timeout_ms, uint8_t *hdr, uint32_t width);
/* Hand back the batch with its verdicts.  Returns packets handed on. */
int onvm_nf_tx(struct onvm_nf *nf, struct onvm_batch *b);
/* The address range holding every packet of the pool (zero-copy views). */
void onvm_nf_pool_span(const struct onvm_nf *nf, uint64_t *base, uint64_t *len);
/* Count callback errors (shown in stats). */
void onvm_nf_count_errors(struct onvm_nf *nf, uint32_t n);
/* Publish how many log lines the NF has dropped so far (shown in stats). */
void onvm_nf_set_log_dropped(struct onvm_nf *nf, uint64_t total);
/* Run a native NF by name (forward, drop, count, sink, generate) until
 * asked to stop.  args: "key=value,..." (generate: rate, size, count,
 * flows, dest). */
int onvm_nf_run_native(struct onvm_nf *nf, const char *name, const char *args);
/* Hold packet i of the batch back (the batch's entry is taken out; tx
 * skips it): it stays owner-marked with the NF's slot, so if the NF dies
 * the manager recovers it.  returns: a handle for onvm_nf_unpark, or
 * -ENOSPC when ONVM_NF_PARK_MAX packets are parked. */
int onvm_nf_park(struct onvm_nf *nf, struct onvm_batch *b, uint32_t i);
/* Hand parked packets on, each with its verdict (NEXT from the miss
 * handler asks the flow table again).  returns: packets handed on. */
int onvm_nf_unpark(struct onvm_nf *nf, const uint32_t *handles, const uint32_t *verdicts, uint32_t n);
/* New packets, each a copy of data, handed on with its verdict: as if
 * they entered port in_port (NEXT: its default path), or, for in_port
 * 0xffff, as made by this NF.  returns: packets handed on, or -errno. */
int onvm_nf_send_bytes(struct onvm_nf *nf, const uint8_t *data, uint32_t len, uint16_t in_port,
		       const uint32_t *verdicts, uint32_t n);
/* The NF's own counters (stats "app"), for a Python NF to write. */
uint64_t *onvm_nf_app(struct onvm_nf *nf);
/* Make onvm_nf_rx return now (0 packets): from another thread, when the
 * NF has other work (a controller's message). */
void onvm_nf_wake(struct onvm_nf *nf);
/* After leaving the service: receive only what is still in the ring (the
 * loops then end once it is empty, or after 1 s), so a clean stop loses no
 * packet, and an overloaded NF still stops in about a second. */
void onvm_nf_drain(struct onvm_nf *nf);
/* Give back the pool cache and leave the DPDK instance (after the manager
 * has taken the NF out of service). */
void onvm_nf_finish(struct onvm_nf *nf);

/* ---- packet rings in files (capring.c): no DPDK needed ------------------- */

/* Make a ring of `size` record bytes (a power of two) in zeroed memory of
 * ONVM_RING_HDR + size bytes. */
int onvm_ring_init(struct onvm_ring_hdr *r, uint64_t size);
/* Append n packets (buf back to back, lens; aux and ts may be NULL).
 * returns: how many fitted. */
int onvm_ring_write(struct onvm_ring_hdr *r, const uint8_t *buf, const uint32_t *lens, const uint32_t *aux,
		    const uint64_t *ts, uint32_t n);
/* Take out up to max packets, at most buflen bytes; aux and ts may be NULL. */
int onvm_ring_read(struct onvm_ring_hdr *r, uint8_t *buf, uint64_t buflen, uint32_t *lens, uint32_t *aux,
		   uint64_t *ts, uint32_t max);
/* Bytes written and not yet read. */
uint64_t onvm_ring_pending(const struct onvm_ring_hdr *r);
/* Forget everything waiting (the consumer side). */
void onvm_ring_discard(struct onvm_ring_hdr *r);
/* The writer side, under its lock: begin before writing (withdraws what a
 * writer that died between its begin and end left waiting); end after,
 * withdrawing what it wrote that still waits if cancel (a Ctrl-C). */
void onvm_ring_begin(struct onvm_ring_hdr *r);
void onvm_ring_end(struct onvm_ring_hdr *r, int cancel);
void onvm_traffic_ring_bell(struct onvm_traffic *t);
/* A libpcap filter ("tcp port 80"; NULL or "": everything) compiled into
 * t's program, once; onvm_filter_match runs it on one packet. */
int onvm_filter_compile(const char *filter, struct onvm_tap *t);
int onvm_filter_match(const struct onvm_tap *t, const uint8_t *pkt, uint32_t wirelen, uint32_t caplen);
/* The sink's latency histogram bucket of a value in ns (ONVM_LAT_BUCKETS). */
unsigned onvm_lat_bucket(uint64_t ns);

#endif
