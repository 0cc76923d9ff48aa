/* capture.c: captures at any hop by mirroring.  The control loop arms a
 * tap (struct onvm_tap in the control file: where, which service or port,
 * a classic BPF filter compiled once by libpcap); whoever handles packets
 * there (an NF handing its burst on, the RX or TX thread at a port) copies
 * each matching packet into the tap's DPDK ring and sends the original on.
 * The manager's first TX thread moves the copies into the tap's file ring
 * (capring.c), which a notebook reads.  Full rings or an empty pool drop
 * copies (tap_drop), never originals, and never wait. */
#include <stdio.h>
#include <string.h>

#include <pcap/pcap.h>
#include <rte_ring.h>

#include "onvm_core.h"

static struct rte_ring *tap_ring[ONVM_MAX_TAPS];
static struct rte_mempool *tap_pool;
/* manager only: where each tap's copies go, and its generation (copies
 * made for an earlier arming of the slot carry an older one). */
static struct onvm_ring_hdr *tap_file[ONVM_MAX_TAPS];
static uint16_t tap_gen[ONVM_MAX_TAPS];

struct rte_ring *const *capture_rings(void)
{
	return tap_ring;
}

int capture_attach(bool primary, struct rte_mempool *pool, struct rte_ring *const *given)
{
	char name[RTE_RING_NAMESIZE];
	tap_pool = pool;
	for (unsigned k = 0; k < ONVM_MAX_TAPS; k++) {
		snprintf(name, sizeof(name), ONVM_TAP_RING_FMT, k);
		tap_ring[k] = given     ? given[k]
			      : primary ? rte_ring_create(name, ONVM_TAP_RING_SIZE, onvm_socket, RING_F_SC_DEQ)
					: rte_ring_lookup(name);
		if (tap_ring[k] == NULL) {
			onvm_set_error("cannot %s the capture ring %s: %s", primary ? "create" : "find", name,
				       rte_strerror(rte_errno));
			return -ENOENT;
		}
	}
	return 0;
}

static void mirror_one(unsigned k, const struct onvm_tap *t, uint16_t gen, struct rte_mbuf **pkts, unsigned n)
{
	struct rte_mbuf *copies[ONVM_BURST];
	unsigned nc = 0;
	uint64_t now = onvm_now_ns();
	for (unsigned i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		if (!onvm_filter_match(t, rte_pktmbuf_mtod(m, const uint8_t *), rte_pktmbuf_pkt_len(m),
				       rte_pktmbuf_data_len(m)))
			continue;
		struct rte_mbuf *c = rte_pktmbuf_copy(m, tap_pool, 0, UINT32_MAX);
		if (unlikely(c == NULL)) {
			__atomic_fetch_add(&onvm_dp.xchg->tap_drop[k], 1, __ATOMIC_RELAXED);
			continue;
		}
		struct onvm_pkt_meta *meta = onvm_meta(c);
		meta->owner = ONVM_OWNER_MGR;
		meta->destination = gen;
		meta->hash = (uint32_t)now; /* when it passed, for the record */
		meta->reserved = (uint32_t)(now >> 32);
		copies[nc++] = c;
	}
	if (nc == 0)
		return;
	unsigned sent = rte_ring_mp_enqueue_burst(tap_ring[k], (void **)copies, nc, NULL);
	if (unlikely(sent < nc)) {
		rte_pktmbuf_free_bulk(copies + sent, nc - sent);
		__atomic_fetch_add(&onvm_dp.xchg->tap_drop[k], nc - sent, __ATOMIC_RELAXED);
	}
	onvm_bell_ring(&onvm_dp.xchg->tx_bell);
}

void capture_mirror_slow(unsigned where, uint16_t target, struct rte_mbuf **pkts, unsigned n)
{
	const struct onvm_shm *shm = onvm_dp.shm;
	for (unsigned k = 0; k < ONVM_MAX_TAPS; k++) {
		const struct onvm_tap *t = &shm->taps[k];
		uint32_t w = __atomic_load_n(&t->where, __ATOMIC_ACQUIRE);
		if ((w & 0xffff) == where && t->target == target && tap_ring[k])
			mirror_one(k, t, (uint16_t)(w >> 16), pkts, n);
	}
}

/* ---- the manager: arming, and moving copies into the file rings -------- */

bool capture_pending(void)
{
	for (unsigned k = 0; k < ONVM_MAX_TAPS; k++)
		if (tap_ring[k] && tap_file[k] && rte_ring_count(tap_ring[k]))
			return true;
	return false;
}

/* Run by the first TX thread: every tap's copies into its file ring. */
unsigned capture_drain(void)
{
	struct rte_mbuf *pkts[ONVM_BURST];
	unsigned total = 0;
	for (unsigned k = 0; k < ONVM_MAX_TAPS; k++) {
		struct onvm_ring_hdr *file = __atomic_load_n(&tap_file[k], __ATOMIC_ACQUIRE);
		if (tap_ring[k] == NULL || file == NULL)
			continue;
		uint16_t gen = __atomic_load_n(&tap_gen[k], __ATOMIC_ACQUIRE);
		unsigned n;
		while ((n = rte_ring_sc_dequeue_burst(tap_ring[k], (void **)pkts, ONVM_BURST, NULL)) > 0) {
			for (unsigned i = 0; i < n; i++) {
				const struct onvm_pkt_meta *meta = onvm_meta(pkts[i]);
				if (meta->destination == gen)
					capring_put(file, pkts[i], meta->hash | (uint64_t)meta->reserved << 32);
			}
			rte_pktmbuf_free_bulk(pkts, n);
			total += n;
		}
	}
	return total;
}

int onvm_filter_compile(const char *filter, struct onvm_tap *t)
{
	struct bpf_program prog = {0, NULL};
	t->nb_insns = 0;
	if (filter == NULL || filter[0] == 0)
		return 0;
	pcap_t *p = pcap_open_dead(DLT_EN10MB, ONVM_REC_MAX);
	if (p == NULL) {
		onvm_set_error("libpcap cannot compile filters here");
		return -ENOMEM;
	}
	if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		onvm_set_error("filter '%s' does not compile: %s", filter, pcap_geterr(p));
		pcap_close(p);
		return -EINVAL;
	}
	pcap_close(p);
	int ret = 0;
	if (prog.bf_len > ONVM_TAP_INSNS || !bpf_validate(prog.bf_insns, (int)prog.bf_len)) {
		onvm_set_error("filter '%s' compiles to %u instructions; at most %d", filter, prog.bf_len,
			       ONVM_TAP_INSNS);
		ret = -E2BIG;
	} else {
		memcpy(t->insns, prog.bf_insns, prog.bf_len * sizeof(struct onvm_bpf_insn));
		t->nb_insns = (uint16_t)prog.bf_len;
	}
	pcap_freecode(&prog);
	return ret;
}

int onvm_filter_match(const struct onvm_tap *t, const uint8_t *pkt, uint32_t wirelen, uint32_t caplen)
{
	return t->nb_insns == 0 || bpf_filter((const struct bpf_insn *)t->insns, pkt, wirelen, caplen) != 0;
}

int onvm_mgr_tap_arm(unsigned k, unsigned where, uint16_t target, const char *filter, struct onvm_ring_hdr *ring)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	if (k >= ONVM_MAX_TAPS || where == ONVM_TAP_OFF || where > ONVM_TAP_PORT_IN) {
		onvm_set_error("tap %u: no such tap or place", k);
		return -EINVAL;
	}
	struct onvm_tap *t = &shm->taps[k];
	if (t->where != ONVM_TAP_OFF) {
		onvm_set_error("tap %u is in use", k);
		return -EBUSY;
	}
	int ret = onvm_filter_compile(filter, t);
	if (ret < 0)
		return ret;
	t->target = target;
	uint16_t gen = (uint16_t)(tap_gen[k] + 1);
	__atomic_store_n(&tap_gen[k], gen, __ATOMIC_RELEASE);
	__atomic_store_n(&tap_file[k], ring, __ATOMIC_RELEASE);
	__atomic_fetch_add(&shm->nb_taps, 1, __ATOMIC_RELEASE);
	/* The generation rides in the high half of `where`, so a mirror reads
	 * both in one load. */
	__atomic_store_n(&t->where, where | (uint32_t)gen << 16, __ATOMIC_RELEASE);
	return 0;
}

int onvm_mgr_tap_disarm(unsigned k)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	if (k >= ONVM_MAX_TAPS || shm->taps[k].where == ONVM_TAP_OFF)
		return 0;
	__atomic_store_n(&shm->taps[k].where, ONVM_TAP_OFF, __ATOMIC_RELEASE);
	__atomic_fetch_sub(&shm->nb_taps, 1, __ATOMIC_RELEASE);
	/* The file stays mapped by the caller until the manager exits: the TX
	 * thread may still be putting the last copies into it. */
	return 0;
}

uint64_t onvm_mgr_tap_drops(unsigned k)
{
	return k < ONVM_MAX_TAPS ? __atomic_load_n(&onvm_mgr.xchg->tap_drop[k], __ATOMIC_RELAXED) : 0;
}
