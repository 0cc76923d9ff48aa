/* flow_dir.c: the flow director (the paper's section 4).  A packet that
 * matches a rule follows the rule's chain instead of its port's default
 * path.  Two tables, both in hugepages, created and written only by the
 * manager's control loop, looked up by the RX threads when a packet starts
 * its path (and by an NF when it hands on a miss, see router.c):
 *   - exact 5-tuple rules: an rte_hash (cuckoo) whose keys are signed with
 *     the symmetric flow hash, so a lookup uses the hash the RX thread
 *     computed once (rte_hash_lookup_with_hash), or rehashes the headers in
 *     naive mode.  Lock-free reader/writer concurrency
 *     (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF): adds and deletes happen
 *     under running lookups; a deleted key's slot is freed only after an
 *     RCU grace period (the deferred list below).
 *   - wildcard rules: an rte_acl context, rebuilt whole on each change (an
 *     ACL context cannot change once built) and published under RCU with
 *     the tables; the old context is freed after the grace period.
 * Exact rules are tried first; among wildcard rules the highest priority
 * wins, and between equal priorities the older rule.  A rule covers the
 * ingress ports of its path's mask (an NF's rule: the ports whose traffic
 * reaches that NF); from other ports the winning rule counts as a miss.
 * Both structures live in hugepages, so their pointers are valid in every
 * process of the instance; lookups never call a function pointer stored in
 * them (rte_acl dispatches on an index, rte_hash compares 16-byte keys by
 * an index too), so NFs may look up as well.  Rule chains are rule paths
 * in the tables (meta->path = ONVM_MAX_PORTS + i), shared by every rule
 * with the same chain. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <rte_acl.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_memzone.h>

#include "onvm_core.h"

enum { RULE_FREE = 0, RULE_EXACT, RULE_ACL, RULE_DEFERRED };

/* The manager's own record of a rule (never read by the data path). */
struct flow_rule {
	uint8_t state;
	uint8_t path;           /* index into rule_paths */
	int32_t pos;            /* its key's position in the exact table */
	uint64_t seq;           /* age, for ties between wildcard rules */
	struct onvm_flow_spec spec;
};

/* Things readers may still use: freed once the grace period `token` is over. */
struct flow_deferred {
	uint64_t token;
	int32_t rule;           /* a rule ID to give back, or -1 */
	int32_t pos;            /* an exact key slot to free, or -1 */
	struct rte_acl_ctx *acl;
};

#define DEFERRED_MAX 4096

static struct {
	struct rte_hash *exact;
	struct onvm_flow_counters *counters;
	struct flow_rule *rules;
	uint32_t nb_exact, nb_acl;
	uint32_t path_refs[ONVM_FLOW_MAX_PATHS];
	uint32_t *free_ids;     /* a stack of free rule IDs */
	uint32_t nb_free;
	uint64_t seq;
	uint32_t acl_gen;
	struct flow_deferred deferred[DEFERRED_MAX];
	uint32_t nb_deferred;
} fd;

/* ---- the data path ------------------------------------------------------ */

/* The IPv4 5-tuple of a frame, as flow_hash.h reads it (VLAN tags skipped,
 * no ports for fragments or headers that do not fit), so the key's
 * signature equals the packet's flow hash.  false: not IPv4. */
static inline bool flow_key_of(const struct rte_mbuf *m, struct onvm_flow_key *k)
{
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t len = m->data_len, off = 14;
	if (unlikely(len < 14))
		return false;
	uint16_t type = onvm_fh_be16(p + 12);
	for (unsigned i = 0; i < 2; i++) {
		if ((type == 0x8100 || type == 0x88a8 || type == 0x9100) && off + 4 <= len) {
			type = onvm_fh_be16(p + off + 2);
			off += 4;
		}
	}
	if (type != 0x0800 || off + 20 > len)
		return false;
	const uint8_t *ip = p + off;
	uint32_t ihl = (uint32_t)(ip[0] & 0xf) * 4;
	uint16_t frag = onvm_fh_be16(ip + 6) & 0x3fff;
	k->proto = ip[9];
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
	k->src = onvm_fh_u32(ip + 12);
	k->dst = onvm_fh_u32(ip + 16);
	uint32_t ports = (frag == 0 && ihl >= 20) ? onvm_fh_ports(p, off + ihl, len, k->proto) : 0;
	memcpy(&k->sport, &ports, 4);
	return true;
}

static inline uint32_t flow_key_sig(const struct onvm_flow_key *k)
{
	uint32_t ports;
	memcpy(&ports, &k->sport, 4);
	return onvm_fh_ipv4_tuple(k->src, k->dst, ports, k->proto);
}

/* The signature a packet's key is looked up with: the flow hash stamped at
 * RX, or (naive mode) the headers hashed again. */
static inline uint32_t flow_sig(const struct onvm_tables *t, struct rte_mbuf *m)
{
	return unlikely(t->flow_naive) ? onvm_flow_hash(m) : onvm_meta(m)->hash;
}

/* A hit (see flow_tag()): count it against its rule in `lane` (see
 * struct onvm_flow_counters), return its path. */
static inline int flow_hit(const struct onvm_tables *t, struct rte_mbuf *m, uint64_t hit, unsigned lane)
{
	uint32_t rule = (uint32_t)(hit & 0xfffff) - 1, path = (uint32_t)(hit >> 20) & 0xff;
	struct onvm_flow_counters *c = (struct onvm_flow_counters *)(uintptr_t)t->flow_counters;
	if (likely(rule < ONVM_FLOW_MAX_RULES && c)) {
		c += (size_t)lane * ONVM_FLOW_MAX_RULES + rule;
		if (lane == 0) {
			__atomic_fetch_add(&c->packets, 1, __ATOMIC_RELAXED);
			__atomic_fetch_add(&c->bytes, rte_pktmbuf_pkt_len(m), __ATOMIC_RELAXED);
		} else { /* one writer: the manager may read a stale value, never a torn one */
			__atomic_store_n(&c->packets, c->packets + 1, __ATOMIC_RELAXED);
			__atomic_store_n(&c->bytes, c->bytes + rte_pktmbuf_pkt_len(m), __ATOMIC_RELAXED);
		}
	}
	return ONVM_MAX_PORTS + (int)path;
}

/* The rules up to ONVM_BURST packets match: hits[i] is packet i's tag (see
 * flow_tag()), 0 for none.  The cuckoo hash's bulk lookup prefetches each
 * key's buckets before it compares, so the cache misses of a big table
 * overlap instead of coming one after another; the exact misses go to
 * rte_acl together. */
static void flow_dir_find(const struct onvm_tables *t, struct rte_mbuf **pkts, unsigned n, uint64_t *hits)
{
	struct onvm_flow_key keys[ONVM_BURST];
	const void *kp[ONVM_BURST];
	hash_sig_t sigs[ONVM_BURST];
	uint8_t at[ONVM_BURST];  /* the packet of each key */
	unsigned nk = 0;

	for (unsigned i = 0; i < n; i++) {
		hits[i] = 0;
		if (!flow_key_of(pkts[i], &keys[nk]))
			continue; /* not IPv4: a miss */
		kp[nk] = &keys[nk];
		sigs[nk] = flow_sig(t, pkts[i]);
		at[nk++] = (uint8_t)i;
	}
	if (nk && t->flow_exact) {
		void *data[ONVM_BURST];
		uint64_t mask = 0;
		rte_hash_lookup_with_hash_bulk_data((const struct rte_hash *)(uintptr_t)t->flow_exact, kp, sigs, nk,
						    &mask, data);
		for (unsigned j = 0; j < nk; j++)
			if (mask & (1ULL << j))
				hits[at[j]] = (uint64_t)(uintptr_t)data[j];
	}
	if (nk && t->flow_acl) {
		const uint8_t *in[ONVM_BURST];
		uint32_t res[ONVM_BURST];
		uint8_t miss[ONVM_BURST];
		unsigned nm = 0;
		for (unsigned j = 0; j < nk; j++)
			if (hits[at[j]] == 0) {
				in[nm] = (const uint8_t *)&keys[j];
				miss[nm++] = at[j];
			}
		if (nm) {
			rte_acl_classify((const struct rte_acl_ctx *)(uintptr_t)t->flow_acl, in, res, nm, 1);
			for (unsigned j = 0; j < nm; j++)
				hits[miss[j]] = res[j];
		}
	}
	/* A rule an NF asked for covers only the ports whose traffic reaches
	 * that NF: from any other port the packet is a miss (its own path). */
	for (unsigned i = 0; i < n; i++) {
		if (hits[i]) {
			uint32_t path = (uint32_t)(hits[i] >> 20) & 0xff, port = onvm_meta(pkts[i])->in_port;
			if (unlikely(path >= ONVM_FLOW_MAX_PATHS || port >= 32 || !((t->rule_path_ports[path] >> port) & 1)))
				hits[i] = 0;
		}
	}
}

int flow_dir_lookup(const struct onvm_tables *t, struct rte_mbuf *m)
{
	uint64_t hit;
	flow_dir_find(t, &m, 1, &hit);
	return hit ? flow_hit(t, m, hit, 0) : -1;
}

void flow_dir_start_burst(const struct onvm_tables *t, struct rte_mbuf **pkts, unsigned n, unsigned lane)
{
	uint64_t hits[ONVM_BURST];
	if (n > ONVM_BURST)
		n = ONVM_BURST;
	flow_dir_find(t, pkts, n, hits);
	/* a handler that is gone: misses follow the default path */
	bool to_miss = t->flow_miss && t->services[t->flow_miss].count;
	for (unsigned i = 0; i < n; i++) {
		if (hits[i])
			onvm_meta(pkts[i])->path = (uint8_t)flow_hit(t, pkts[i], hits[i], lane);
		else if (to_miss)
			onvm_meta(pkts[i])->path = ONVM_PATH_MISS;
	}
}

/* ---- the manager's side --------------------------------------------------- */

/* What a lookup returns for a rule: its path and ID in one nonzero word. */
static uint32_t flow_tag(uint32_t rule, uint32_t path)
{
	return (path << 20) | (rule + 1);
}

static int flow_init(void)
{
	if (fd.rules)
		return 0;
	struct rte_hash_parameters hp = {
		.name = ONVM_FLOW_EXACT_NAME,
		.entries = ONVM_FLOW_MAX_RULES,
		.key_len = sizeof(struct onvm_flow_key),
		.hash_func = rte_hash_crc, /* unused: every key comes with its signature */
		.socket_id = onvm_socket,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF,
	};
	fd.exact = rte_hash_create(&hp);
	const struct rte_memzone *mz = rte_memzone_reserve(ONVM_FLOW_COUNTERS_NAME,
							   sizeof(struct onvm_flow_counters) * ONVM_FLOW_MAX_RULES *
								   ONVM_FLOW_LANES,
							   onvm_socket, 0);
	fd.rules = calloc(ONVM_FLOW_MAX_RULES, sizeof(*fd.rules));
	fd.free_ids = calloc(ONVM_FLOW_MAX_RULES, sizeof(*fd.free_ids));
	if (fd.exact == NULL || mz == NULL || fd.rules == NULL || fd.free_ids == NULL) {
		onvm_set_error("cannot make the flow table (%s); give the manager more hugepage_mb",
			       rte_strerror(rte_errno));
		rte_hash_free(fd.exact);
		free(fd.rules);
		free(fd.free_ids);
		fd.exact = NULL;
		fd.rules = NULL;
		fd.free_ids = NULL;
		return -ENOMEM;
	}
	fd.counters = mz->addr;
	memset(fd.counters, 0, mz->len);
	for (uint32_t i = 0; i < ONVM_FLOW_MAX_RULES; i++)
		fd.free_ids[i] = ONVM_FLOW_MAX_RULES - 1 - i;
	fd.nb_free = ONVM_FLOW_MAX_RULES;
	return 0;
}

static bool spec_is_exact(const struct onvm_flow_spec *s)
{
	bool ported = s->proto == IPPROTO_TCP || s->proto == IPPROTO_UDP || s->proto == IPPROTO_SCTP;
	bool ports_exact = s->sport_lo == s->sport_hi && s->dport_lo == s->dport_hi;
	bool no_ports = s->sport_lo == 0 && s->sport_hi == 0 && s->dport_lo == 0 && s->dport_hi == 0;
	return s->src_len == 32 && s->dst_len == 32 && !s->proto_any && (ported ? ports_exact : no_ports);
}

static void spec_key(const struct onvm_flow_spec *s, struct onvm_flow_key *k)
{
	memset(k, 0, sizeof(*k));
	k->proto = s->proto;
	k->src = rte_cpu_to_be_32(s->src);
	k->dst = rte_cpu_to_be_32(s->dst);
	k->sport = rte_cpu_to_be_16(s->sport_lo);
	k->dport = rte_cpu_to_be_16(s->dport_lo);
}

/* Check a rule: sane fields, a chain that ends at a port, and each hop
 * allowed by the steer rules of the service before it (a graph's edges). */
static int check_spec(const struct onvm_tables *t, const struct onvm_flow_spec *s)
{
	if (s->src_len > 32 || s->dst_len > 32) {
		onvm_set_error("a prefix length is 0..32, got /%u", s->src_len > 32 ? s->src_len : s->dst_len);
		return -EINVAL;
	}
	if (s->sport_lo > s->sport_hi || s->dport_lo > s->dport_hi) {
		onvm_set_error("a port range runs low..high, got %u..%u", s->sport_lo > s->sport_hi ? s->sport_lo : s->dport_lo,
			       s->sport_lo > s->sport_hi ? s->sport_hi : s->dport_hi);
		return -EINVAL;
	}
	if (s->priority > ONVM_FLOW_MAX_PRIORITY) {
		onvm_set_error("priority is 0..%d, got %u", ONVM_FLOW_MAX_PRIORITY, s->priority);
		return -EINVAL;
	}
	const struct onvm_chain *c = &s->chain;
	if (c->length == 0 || c->length > ONVM_MAX_CHAIN) {
		onvm_set_error("a rule's chain has 1..%d entries, got %u", ONVM_MAX_CHAIN, c->length);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < c->length; i++) {
		unsigned action = c->entries[i].action, dest = c->entries[i].destination;
		bool last = i + 1 == c->length;
		if (action == ONVM_TO_PORT) {
			if (dest >= onvm_mgr.shm->nb_ports) {
				onvm_set_error("chain entry %u: port %u does not exist (ports 0..%u)", i, dest,
					       onvm_mgr.shm->nb_ports - 1);
				return -ENODEV;
			}
			if (!last) {
				onvm_set_error("chain entry %u: a port ends the chain; nothing can follow it", i);
				return -EINVAL;
			}
		} else if (action == ONVM_TO_SERVICE) {
			if (dest == 0 || dest >= ONVM_MAX_SERVICES) {
				onvm_set_error("chain entry %u: service ID %u is out of range 1..%d", i, dest,
					       ONVM_MAX_SERVICES - 1);
				return -EINVAL;
			}
			if (last) {
				onvm_set_error("a rule's chain must end at a port, not service %u", dest);
				return -EINVAL;
			}
		} else {
			onvm_set_error("chain entry %u: only services and ports may appear in a chain", i);
			return -EINVAL;
		}
		/* The hop an NF decided is checked against that NF's steer rules
		 * (its rule stands for its own verdict); every other hop against
		 * the service before it. */
		uint16_t from = 0;
		bool check = i > 0;
		if (s->installer != ONVM_OWNER_MGR && i == s->decided_at) {
			from = s->installer < ONVM_MAX_NFS ? onvm_mgr.shm->nfs[s->installer].service : 0;
			check = true;
		} else if (i > 0) {
			from = c->entries[i - 1].destination;
		}
		if (check && !router_steer_ok(t, from, action, (uint16_t)dest)) {
			onvm_set_error("chain entry %u: service %u may not hand packets to %s %u (no edge in the graph)",
				       i, from, action == ONVM_TO_PORT ? "port" : "service", dest);
			return -EPERM;
		}
	}
	return 0;
}

/* The rule path holding chain c: an existing one, else a free one (which
 * the caller publishes).  -ENOSPC when every path holds another chain. */
static int find_path(const struct onvm_tables *t, const struct onvm_chain *c, uint32_t ports, bool *is_new)
{
	int free_path = -1;
	for (int i = 0; i < ONVM_FLOW_MAX_PATHS; i++) {
		if (fd.path_refs[i] && t->rule_paths[i].length == c->length && t->rule_path_ports[i] == ports &&
		    memcmp(t->rule_paths[i].entries, c->entries, c->length * sizeof(c->entries[0])) == 0) {
			*is_new = false;
			return i;
		}
		if (!fd.path_refs[i] && free_path < 0)
			free_path = i;
	}
	if (free_path < 0) {
		onvm_set_error("rules use %d different chains already; rules with a chain in use are fine",
			       ONVM_FLOW_MAX_PATHS);
		return -ENOSPC;
	}
	*is_new = true;
	return free_path;
}

static void defer(int32_t rule, int32_t pos, struct rte_acl_ctx *acl)
{
	/* Full list: wait for the oldest grace period (readers finish a burst in microseconds). */
	while (fd.nb_deferred == DEFERRED_MAX) {
		flow_dir_tick();
		sched_yield();
	}
	fd.deferred[fd.nb_deferred++] = (struct flow_deferred){0, rule, pos, acl};
}

/* Build an ACL context of every wildcard rule (plus `extra`, minus
 * `skip`); NULL with no rules.  *err < 0 on failure. */
static struct rte_acl_ctx *build_acl(int32_t extra, int32_t skip, int *err)
{
	static const struct rte_acl_field_def defs[5] = {
		{RTE_ACL_FIELD_TYPE_BITMASK, 1, 0, 0, offsetof(struct onvm_flow_key, proto)},
		{RTE_ACL_FIELD_TYPE_MASK, 4, 1, 1, offsetof(struct onvm_flow_key, src)},
		{RTE_ACL_FIELD_TYPE_MASK, 4, 2, 2, offsetof(struct onvm_flow_key, dst)},
		{RTE_ACL_FIELD_TYPE_RANGE, 2, 3, 3, offsetof(struct onvm_flow_key, sport)},
		{RTE_ACL_FIELD_TYPE_RANGE, 2, 4, 3, offsetof(struct onvm_flow_key, dport)},
	};
	RTE_ACL_RULE_DEF(flow_acl_rule, 5);
	*err = 0;
	/* rank by age: the older rule wins a tie (see the top of the file) */
	static uint32_t ids[ONVM_FLOW_MAX_ACL];
	uint32_t n = 0;
	for (uint32_t i = 0; i < ONVM_FLOW_MAX_RULES && n < ONVM_FLOW_MAX_ACL; i++)
		if ((fd.rules[i].state == RULE_ACL && (int32_t)i != skip) || (int32_t)i == extra)
			ids[n++] = i;
	if (n == 0)
		return NULL;
	char name[RTE_ACL_NAMESIZE];
	snprintf(name, sizeof(name), "onvm_acl%u", fd.acl_gen++);
	struct rte_acl_param ap = {name, onvm_socket, RTE_ACL_RULE_SZ(5), ONVM_FLOW_MAX_ACL};
	struct rte_acl_ctx *ctx = rte_acl_create(&ap);
	if (ctx == NULL) {
		onvm_set_error("cannot make an ACL context: %s", rte_strerror(rte_errno));
		*err = -ENOMEM;
		return NULL;
	}
	for (uint32_t k = 0; k < n; k++) {
		const struct flow_rule *fr = &fd.rules[ids[k]];
		const struct onvm_flow_spec *s = &fr->spec;
		uint32_t rank = 0; /* rules older than this one */
		for (uint32_t j = 0; j < n; j++)
			rank += fd.rules[ids[j]].seq < fr->seq;
		struct flow_acl_rule r;
		memset(&r, 0, sizeof(r));
		r.data.category_mask = 1;
		r.data.priority = (int32_t)(1 + (s->priority << 13) + (ONVM_FLOW_MAX_ACL * 2 - 1 - rank));
		r.data.userdata = flow_tag(ids[k], fr->path);
		r.field[0].value.u8 = s->proto;
		r.field[0].mask_range.u8 = s->proto_any ? 0 : 0xff;
		r.field[1].value.u32 = s->src_len ? s->src : 0;
		r.field[1].mask_range.u32 = s->src_len;
		r.field[2].value.u32 = s->dst_len ? s->dst : 0;
		r.field[2].mask_range.u32 = s->dst_len;
		r.field[3].value.u16 = s->sport_lo;
		r.field[3].mask_range.u16 = s->sport_hi;
		r.field[4].value.u16 = s->dport_lo;
		r.field[4].mask_range.u16 = s->dport_hi;
		if (rte_acl_add_rules(ctx, (const struct rte_acl_rule *)&r, 1) < 0) {
			onvm_set_error("cannot add wildcard rule %u to the ACL context", ids[k]);
			*err = -EINVAL;
			rte_acl_free(ctx);
			return NULL;
		}
	}
	struct rte_acl_config cfg = {.num_categories = 1, .num_fields = 5};
	memcpy(cfg.defs, defs, sizeof(defs));
	int ret = rte_acl_build(ctx, &cfg);
	if (ret < 0) {
		onvm_set_error("cannot build the wildcard rules: %s", rte_strerror(-ret));
		*err = ret;
		rte_acl_free(ctx);
		return NULL;
	}
	return ctx;
}

int onvm_mgr_flow_add(const struct onvm_flow_spec *s)
{
	int ret = flow_init();
	if (ret < 0)
		return ret;
	const struct onvm_tables *live = &onvm_mgr.shm->tables[onvm_mgr.shm->active];
	ret = check_spec(live, s);
	if (ret < 0)
		return ret;
	bool exact = spec_is_exact(s);
	if (fd.nb_free == 0 || (!exact && fd.nb_acl >= ONVM_FLOW_MAX_ACL)) {
		onvm_set_error("the flow table is full (%d rules, %d of them wildcard)", ONVM_FLOW_MAX_RULES,
			       ONVM_FLOW_MAX_ACL);
		return -ENOSPC;
	}
	struct onvm_flow_key key;
	spec_key(s, &key);
	if (exact && rte_hash_lookup_with_hash(fd.exact, &key, flow_key_sig(&key)) >= 0) {
		onvm_set_error("an exact rule for this 5-tuple exists already; remove it first");
		return -EEXIST;
	}
	bool new_path;
	uint32_t ports = s->in_ports ? s->in_ports : UINT32_MAX;
	int path = find_path(live, &s->chain, ports, &new_path);
	if (path < 0)
		return path;
	uint32_t id = fd.free_ids[fd.nb_free - 1];
	struct flow_rule *fr = &fd.rules[id];
	fr->spec = *s;
	fr->path = (uint8_t)path;
	fr->seq = ++fd.seq;
	fr->pos = -1;
	struct rte_acl_ctx *acl = NULL;
	if (!exact) {
		acl = build_acl((int32_t)id, -1, &ret);
		if (ret < 0)
			return ret;
	}
	/* Publish the chain (and the ACL context) before any lookup can find the rule. */
	const void *old_acl = (const void *)(uintptr_t)live->flow_acl;
	if (new_path || !exact || live->flow_exact == 0 || live->flow_counters == 0) {
		struct onvm_tables *t = services_edit_begin();
		if (t == NULL) {
			rte_acl_free(acl);
			return -EBUSY;
		}
		t->rule_paths[path] = s->chain;
		t->rule_path_ports[path] = ports;
		t->flow_counters = (uint64_t)(uintptr_t)fd.counters;
		if (exact)
			t->flow_exact = (uint64_t)(uintptr_t)fd.exact;
		else
			t->flow_acl = (uint64_t)(uintptr_t)acl;
		services_edit_commit();
	}
	for (unsigned l = 0; l < ONVM_FLOW_LANES; l++)
		fd.counters[l * ONVM_FLOW_MAX_RULES + id] = (struct onvm_flow_counters){0, 0};
	if (exact) {
		int pos = rte_hash_add_key_with_hash_data(fd.exact, &key, flow_key_sig(&key),
							  (void *)(uintptr_t)flow_tag(id, (uint32_t)path));
		if (pos < 0) {
			onvm_set_error("cannot add the exact rule: %s", rte_strerror(-pos));
			return pos; /* a newly published path stays unused (no refs): harmless */
		}
		fr->pos = rte_hash_lookup_with_hash(fd.exact, &key, flow_key_sig(&key));
		fr->state = RULE_EXACT;
		fd.nb_exact++;
	} else {
		fr->state = RULE_ACL;
		fd.nb_acl++;
		if (old_acl)
			defer(-1, -1, (struct rte_acl_ctx *)(uintptr_t)old_acl);
	}
	fd.nb_free--;
	fd.path_refs[path]++;
	return (int)id;
}

int onvm_mgr_flow_remove(uint32_t id)
{
	if (fd.rules == NULL || id >= ONVM_FLOW_MAX_RULES ||
	    (fd.rules[id].state != RULE_EXACT && fd.rules[id].state != RULE_ACL)) {
		onvm_set_error("no flow rule %u", id);
		return -ENOENT;
	}
	struct flow_rule *fr = &fd.rules[id];
	const struct onvm_tables *live = &onvm_mgr.shm->tables[onvm_mgr.shm->active];
	if (fr->state == RULE_ACL) {
		int err;
		struct rte_acl_ctx *acl = build_acl(-1, (int32_t)id, &err);
		if (err < 0)
			return err;
		struct onvm_tables *t = services_edit_begin();
		if (t == NULL) {
			rte_acl_free(acl);
			return -EBUSY;
		}
		struct rte_acl_ctx *old = (struct rte_acl_ctx *)(uintptr_t)live->flow_acl;
		t->flow_acl = (uint64_t)(uintptr_t)acl;
		services_edit_commit();
		defer(-1, -1, old);
		fd.nb_acl--;
	} else {
		struct onvm_flow_key key;
		spec_key(&fr->spec, &key);
		int32_t pos = rte_hash_del_key_with_hash(fd.exact, &key, flow_key_sig(&key));
		defer(-1, pos, NULL); /* the key slot: a reader may be comparing against it */
		fd.nb_exact--;
	}
	fd.path_refs[fr->path]--;
	fr->state = RULE_DEFERRED;
	defer((int32_t)id, -1, NULL); /* its ID: a packet looked up just now may still count on it */
	return 0;
}

int onvm_mgr_flow_counters(uint32_t id, struct onvm_flow_counters *out)
{
	if (fd.rules == NULL || id >= ONVM_FLOW_MAX_RULES ||
	    (fd.rules[id].state != RULE_EXACT && fd.rules[id].state != RULE_ACL)) {
		onvm_set_error("no flow rule %u", id);
		return -ENOENT;
	}
	out->packets = out->bytes = 0;
	for (unsigned l = 0; l < ONVM_FLOW_LANES; l++) {
		const struct onvm_flow_counters *c = &fd.counters[l * ONVM_FLOW_MAX_RULES + id];
		out->packets += __atomic_load_n(&c->packets, __ATOMIC_RELAXED);
		out->bytes += __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);
	}
	return 0;
}

int onvm_mgr_flow_config(int naive, int miss_service)
{
	if (miss_service < 0 || miss_service >= ONVM_MAX_SERVICES) {
		onvm_set_error("the miss service is 1..%d, or 0 for none; got %d", ONVM_MAX_SERVICES - 1, miss_service);
		return -EINVAL;
	}
	struct onvm_tables *t = services_edit_begin();
	if (t == NULL)
		return -EBUSY;
	if (naive >= 0)
		t->flow_naive = naive ? 1 : 0;
	t->flow_miss = (uint16_t)miss_service;
	services_edit_commit();
	return 0;
}

/* Called by the control tick: free what no reader can still see. */
void flow_dir_tick(void)
{
	uint32_t j = 0;
	for (uint32_t i = 0; i < fd.nb_deferred; i++) {
		struct flow_deferred *d = &fd.deferred[i];
		if (d->token == 0) {
			/* a grace period starting after the unpublish */
			d->token = rte_rcu_qsbr_start(onvm_dp.rcu);
		}
		if (!services_grace_over(d->token)) {
			fd.deferred[j++] = *d;
			continue;
		}
		if (d->acl)
			rte_acl_free(d->acl);
		if (d->pos >= 0)
			rte_hash_free_key_with_position(fd.exact, d->pos);
		if (d->rule >= 0) {
			fd.rules[d->rule].state = RULE_FREE;
			fd.free_ids[fd.nb_free++] = (uint32_t)d->rule;
		}
	}
	fd.nb_deferred = j;
}
