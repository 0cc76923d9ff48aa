/* load_balancer: spreads flows over backends with flow affinity: the first
 * packet of a flow picks the next backend in turn, and every later packet
 * of that flow (both directions: the key is the symmetric flow hash and the
 * unordered address pair) goes to the same one.  Backends are its
 * arguments: deployed graph node names (looked up on the first packet: a
 * deployment publishes names as it starts the NF) or service IDs.
 * Counters 0..3: flows given to backend 0..3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onvm/nflib.h>

#define MAX_BACKENDS 16
#define FLOWS 65536 /* a power of two */

struct entry {
	uint32_t hash, a, b; /* a <= b: the two addresses, unordered */
	uint16_t pa, pb;
	uint8_t proto, backend, used;
};

struct lb {
	char *names[MAX_BACKENDS];
	int service[MAX_BACKENDS]; /* 0: not resolved yet */
	unsigned nb, next;
	struct entry flows[FLOWS];
};

static int lb_init(struct onvm_nf *nf, void *state, int argc, char **argv)
{
	struct lb *lb = state;
	(void)nf;
	if (argc < 2 || argc - 1 > MAX_BACKENDS) {
		fprintf(stderr, "load_balancer: give 1..%d backends (node names or service IDs)\n", MAX_BACKENDS);
		return -EINVAL;
	}
	for (int i = 1; i < argc; i++) {
		lb->names[lb->nb] = argv[i];
		lb->service[lb->nb++] = atoi(argv[i]); /* a name gives 0: resolved later */
	}
	return 0;
}

static int backend_service(struct lb *lb, unsigned i)
{
	if (lb->service[i] <= 0)
		lb->service[i] = onvm_service_id(lb->names[i]);
	return lb->service[i];
}

static int balance(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	struct lb *lb = state;
	struct onvm_5tuple t;
	unsigned backend;
	if (onvm_pkt_5tuple(pkt, &t) < 0) {
		backend = pkt->hash % lb->nb; /* not IPv4: by the hash alone */
	} else {
		int fwd = t.src < t.dst || (t.src == t.dst && t.sport <= t.dport);
		struct entry key = {.hash = pkt->hash, .a = fwd ? t.src : t.dst, .b = fwd ? t.dst : t.src,
				    .pa = fwd ? t.sport : t.dport, .pb = fwd ? t.dport : t.sport, .proto = t.proto};
		struct entry *e = NULL;
		for (uint32_t i = 0; i < 64; i++) { /* a short probe; a full run falls back to the hash */
			struct entry *x = &lb->flows[(pkt->hash + i) & (FLOWS - 1)];
			if (!x->used || (x->hash == key.hash && x->a == key.a && x->b == key.b && x->pa == key.pa &&
					 x->pb == key.pb && x->proto == key.proto)) {
				e = x;
				break;
			}
		}
		if (e == NULL) {
			backend = pkt->hash % lb->nb;
		} else {
			if (!e->used) {
				key.used = 1;
				key.backend = (uint8_t)(lb->next++ % lb->nb);
				*e = key;
				onvm_count(key.backend, 1);
			}
			backend = e->backend;
		}
	}
	int sid = backend_service(lb, backend);
	if (sid <= 0)
		return -ENOENT; /* no such backend: dropped, counted as an error */
	return onvm_to_service(v, (uint16_t)sid);
}

ONVM_NF_DEF(.name = "load_balancer", .handler = balance, .state_size = sizeof(struct lb), .init = lb_init)
