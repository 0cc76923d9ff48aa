/* capring.c: packet rings in plain files (struct onvm_ring_hdr).  A ring
 * port's inject ring and capture ring, and the captures of later hops, are
 * such files: the data plane reads and writes them in C, a notebook maps
 * them with no DPDK at all and calls onvm_ring_read/onvm_ring_write here
 * (the same shared library, EAL never started), so packets cross in bulk.
 * One producer and one consumer per ring; each side publishes its index
 * with a release store after the records, and neither trusts the other's
 * index: a record or index that makes no sense resynchronises the reader
 * and is reported, never followed out of the file. */
#include <string.h>

#include "onvm_core.h"

static inline uint8_t *ring_data(struct onvm_ring_hdr *r)
{
	return (uint8_t *)r + ONVM_RING_HDR;
}

static inline uint64_t rec_size(uint32_t caplen)
{
	return sizeof(struct onvm_rec) + ((caplen + 15u) & ~15u);
}

int onvm_ring_init(struct onvm_ring_hdr *r, uint64_t size)
{
	if (size < (1u << 16) || (size & (size - 1))) {
		onvm_set_error("a packet ring holds a power of two of at least 64 KiB, got %llu bytes",
			       (unsigned long long)size);
		return -EINVAL;
	}
	memset(r, 0, sizeof(*r));
	r->size = size;
	__atomic_store_n(&r->magic, ONVM_RING_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

static int ring_check(struct onvm_ring_hdr *r)
{
	uint64_t size = r->size;
	if (r->magic != ONVM_RING_MAGIC || size < (1u << 16) || (size & (size - 1))) {
		onvm_set_error("not a packet ring of this onvm version");
		return -EPROTO;
	}
	return 0;
}

/* Where the producer at *head puts a record of `need` bytes: the offset,
 * after a filler if the record would cross the end; -1 if there is no
 * room.  Advances *head; the caller publishes it once the record is written. */
static int64_t reserve(struct onvm_ring_hdr *r, uint64_t *head, uint64_t need)
{
	uint64_t size = r->size, h = *head;
	uint64_t used = h - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	if (unlikely(used > size))
		return -1; /* a tail from the future: full until the reader makes sense */
	uint64_t pos = h & (size - 1), room = size - pos;
	uint64_t total = need > room ? room + need : need;
	if (size - used < total)
		return -1;
	if (need > room) {
		((struct onvm_rec *)(ring_data(r) + pos))->caplen = ONVM_REC_PAD;
		h += room;
		pos = 0;
	}
	*head = h + need;
	return (int64_t)pos;
}

int onvm_ring_write(struct onvm_ring_hdr *r, const uint8_t *buf, const uint32_t *lens, const uint32_t *aux,
		    const uint64_t *ts, uint32_t n)
{
	int ret = ring_check(r);
	if (ret < 0)
		return ret;
	uint64_t head = r->head;
	size_t off = 0;
	uint32_t i;
	for (i = 0; i < n; i++) {
		uint32_t len = lens[i];
		if (len > ONVM_REC_MAX) {
			onvm_set_error("packet %u is %u bytes; a record holds at most %u", i, len, ONVM_REC_MAX);
			ret = -EINVAL;
			break;
		}
		int64_t pos = reserve(r, &head, rec_size(len));
		if (pos < 0)
			break;
		struct onvm_rec *rec = (struct onvm_rec *)(ring_data(r) + pos);
		rec->caplen = len;
		rec->aux = aux ? aux[i] : 0; /* inject: no trace ID */
		rec->ts_ns = ts ? ts[i] : 0;
		memcpy(rec + 1, buf + off, len);
		off += len;
	}
	r->packets += i;
	__atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
	return i == 0 && ret < 0 ? ret : (int)i;
}

bool capring_put(struct onvm_ring_hdr *r, const struct rte_mbuf *m, uint64_t ts)
{
	uint32_t len = rte_pktmbuf_pkt_len(m), caplen = RTE_MIN(len, (uint32_t)ONVM_REC_MAX);
	uint64_t head = r->head;
	int64_t pos = reserve(r, &head, rec_size(caplen));
	if (unlikely(pos < 0)) {
		r->dropped++;
		return false;
	}
	struct onvm_rec *rec = (struct onvm_rec *)(ring_data(r) + pos);
	const void *p = rte_pktmbuf_read(m, 0, caplen, rec + 1);
	if (unlikely(p == NULL)) { /* a chain shorter than its pkt_len: never copied */
		r->dropped++;
		return false;
	}
	if (p != (const void *)(rec + 1))
		memcpy(rec + 1, p, caplen);
	rec->caplen = caplen;
	rec->aux = len;
	rec->ts_ns = ts;
	r->packets++;
	__atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
	return true;
}

const struct onvm_rec *capring_peek(struct onvm_ring_hdr *r, uint64_t *tail, uint64_t head)
{
	uint64_t size = r->size;
	while (*tail != head) {
		if (unlikely(head - *tail > size))
			goto corrupt;
		uint64_t pos = *tail & (size - 1), room = size - pos;
		const struct onvm_rec *rec = (const struct onvm_rec *)(ring_data(r) + pos);
		if (rec->caplen == ONVM_REC_PAD) {
			*tail += room;
			continue;
		}
		if (unlikely(rec->caplen > ONVM_REC_MAX || rec_size(rec->caplen) > room))
			goto corrupt;
		return rec;
	}
	return NULL;
corrupt:
	r->skipped += head - *tail;
	*tail = head;
	return NULL;
}

void capring_consume(uint64_t *tail, const struct onvm_rec *rec)
{
	*tail += rec_size(rec->caplen);
}

int onvm_ring_read(struct onvm_ring_hdr *r, uint8_t *buf, uint64_t buflen, uint32_t *lens, uint32_t *aux,
		   uint64_t *ts, uint32_t max)
{
	int ret = ring_check(r);
	if (ret < 0)
		return ret;
	uint64_t tail = r->tail, head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
	uint64_t off = 0;
	uint32_t n = 0;
	const struct onvm_rec *rec;
	while (n < max && (rec = capring_peek(r, &tail, head)) != NULL) {
		if (off + rec->caplen > buflen)
			break;
		memcpy(buf + off, rec + 1, rec->caplen);
		lens[n] = rec->caplen;
		if (aux)
			aux[n] = rec->aux;
		if (ts)
			ts[n] = rec->ts_ns;
		off += rec->caplen;
		n++;
		capring_consume(&tail, rec);
	}
	__atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
	return (int)n;
}

uint64_t onvm_ring_pending(const struct onvm_ring_hdr *r)
{
	return __atomic_load_n(&r->head, __ATOMIC_ACQUIRE) - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
}

void onvm_ring_discard(struct onvm_ring_hdr *r)
{
	__atomic_store_n(&r->tail, __atomic_load_n(&r->head, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
}

/* Withdraw the records from `from` (or the consumer's tail, if it is
 * further on) to the head: the consumer skips them (capring_skip_withdrawn).
 * The range's start is stored before its end, which the consumer loads
 * first; a torn pair makes no sense to it (longer than the ring) and waits
 * for the next look. */
static void withdraw(struct onvm_ring_hdr *r, uint64_t from)
{
	uint64_t head = r->head, tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	if (head - from > head - tail)
		from = tail; /* the consumer took some already */
	if (from == head)
		return;
	__atomic_store_n(&r->cancel_from, from, __ATOMIC_RELAXED);
	__atomic_store_n(&r->cancel_to, head, __ATOMIC_RELEASE);
}

void onvm_ring_begin(struct onvm_ring_hdr *r)
{
	if (r->open)
		withdraw(r, r->open_from); /* its writer died while writing */
	r->open_from = r->head;
	r->open = 1;
}

void onvm_ring_end(struct onvm_ring_hdr *r, int cancel)
{
	if (cancel && r->open)
		withdraw(r, r->open_from);
	r->open = 0;
}

uint64_t capring_skip_withdrawn(struct onvm_ring_hdr *r)
{
	uint64_t to = __atomic_load_n(&r->cancel_to, __ATOMIC_ACQUIRE);
	uint64_t from = __atomic_load_n(&r->cancel_from, __ATOMIC_RELAXED);
	uint64_t tail = r->tail, head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
	if (likely(tail - from >= to - from) || to - from > r->size || to - tail > head - tail)
		return 0; /* the tail is not in a withdrawn range (or it makes no sense) */
	uint64_t n = 0;
	const struct onvm_rec *rec;
	while (tail != to && (rec = capring_peek(r, &tail, to)) != NULL) {
		capring_consume(&tail, rec);
		n++;
	}
	r->withdrawn += n;
	__atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
	return n;
}

void onvm_traffic_ring_bell(struct onvm_traffic *t)
{
	onvm_bell_ring(&t->rx_bell);
}
