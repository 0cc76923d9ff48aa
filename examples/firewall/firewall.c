/* firewall: passes or drops IPv4 packets by the rules in a file (its
 * argument); the first rule that matches decides, and a packet no rule
 * matches passes.  Packets that are not IPv4 pass.  Counters: 0 passed,
 * 1 dropped.  A rule is one line:
 *
 *     ACTION PROTO SRC DST DPORT
 *     deny   tcp   any          any         23
 *     deny   udp   10.0.0.0/8   any         any
 *     allow  any   any          192.0.2.1   80-89
 *
 * ACTION: allow | deny; PROTO: tcp | udp | icmp | any | a number; SRC, DST:
 * any | A.B.C.D | A.B.C.D/LEN; DPORT: any | N | LO-HI.  '#' starts a comment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onvm/nflib.h>

#define MAX_RULES 256

struct rule {
	uint32_t src, src_mask, dst, dst_mask;
	uint16_t dport_lo, dport_hi;
	int proto; /* -1: any */
	int deny;
};

struct firewall {
	struct rule rules[MAX_RULES];
	unsigned nb_rules;
};

static int parse_prefix(const char *s, uint32_t *addr, uint32_t *mask)
{
	unsigned a, b, c, d, len = 32;
	if (strcmp(s, "any") == 0) {
		*addr = *mask = 0;
		return 0;
	}
	int n = sscanf(s, "%u.%u.%u.%u/%u", &a, &b, &c, &d, &len);
	if (n < 4 || a > 255 || b > 255 || c > 255 || d > 255 || len > 32)
		return -1;
	*mask = len ? ~0u << (32 - len) : 0;
	*addr = ((a << 24) | (b << 16) | (c << 8) | d) & *mask;
	return 0;
}

static int parse_rule(char *line, struct rule *r)
{
	char action[16], proto[16], src[40], dst[40], port[24];
	if (sscanf(line, "%15s %15s %39s %39s %23s", action, proto, src, dst, port) != 5)
		return -1;
	if (strcmp(action, "allow") && strcmp(action, "deny"))
		return -1;
	r->deny = strcmp(action, "deny") == 0;
	if (strcmp(proto, "any") == 0)
		r->proto = -1;
	else if (strcmp(proto, "tcp") == 0)
		r->proto = IPPROTO_TCP;
	else if (strcmp(proto, "udp") == 0)
		r->proto = IPPROTO_UDP;
	else if (strcmp(proto, "icmp") == 0)
		r->proto = IPPROTO_ICMP;
	else if ((r->proto = atoi(proto)) <= 0 || r->proto > 255)
		return -1;
	if (parse_prefix(src, &r->src, &r->src_mask) < 0 || parse_prefix(dst, &r->dst, &r->dst_mask) < 0)
		return -1;
	unsigned lo = 0, hi = 65535;
	if (strcmp(port, "any") != 0) {
		int n = sscanf(port, "%u-%u", &lo, &hi);
		if (n == 1)
			hi = lo;
		if (n < 1 || lo > hi || hi > 65535)
			return -1;
	}
	r->dport_lo = (uint16_t)lo;
	r->dport_hi = (uint16_t)hi;
	return 0;
}

static int fw_init(struct onvm_nf *nf, void *state, int argc, char **argv)
{
	struct firewall *fw = state;
	(void)nf;
	if (argc != 2) {
		fprintf(stderr, "firewall: give the rules file as its argument\n");
		return -EINVAL;
	}
	FILE *f = fopen(argv[1], "r");
	if (f == NULL) {
		fprintf(stderr, "firewall: cannot read %s: %s\n", argv[1], strerror(errno));
		return -errno;
	}
	char line[256];
	for (unsigned lineno = 1; fgets(line, sizeof(line), f); lineno++) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		if (fw->nb_rules == MAX_RULES || parse_rule(line, &fw->rules[fw->nb_rules]) < 0) {
			fprintf(stderr, "firewall: %s:%u: not a rule (ACTION PROTO SRC DST DPORT), or too many\n", argv[1],
				lineno);
			fclose(f);
			return -EINVAL;
		}
		fw->nb_rules++;
	}
	fclose(f);
	printf("firewall: %u rules from %s\n", fw->nb_rules, argv[1]);
	return 0;
}

static int firewall(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	const struct firewall *fw = state;
	struct onvm_5tuple t;
	if (onvm_pkt_5tuple(pkt, &t) == 0) {
		for (unsigned i = 0; i < fw->nb_rules; i++) {
			const struct rule *r = &fw->rules[i];
			if ((r->proto < 0 || r->proto == t.proto) && (t.src & r->src_mask) == r->src &&
			    (t.dst & r->dst_mask) == r->dst && t.dport >= r->dport_lo && t.dport <= r->dport_hi) {
				if (r->deny) {
					onvm_count(1, 1);
					return onvm_drop(v);
				}
				break;
			}
		}
	}
	onvm_count(0, 1);
	return onvm_next(v);
}

ONVM_NF_DEF(.name = "firewall", .handler = firewall, .state_size = sizeof(struct firewall), .init = fw_init)
