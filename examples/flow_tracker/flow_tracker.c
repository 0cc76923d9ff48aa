/* flow_tracker: sees the first packet of every flow, then asks the flow
 * director for a rule that sends the rest of the flow straight out of a
 * port, so later packets skip this NF (and everything between it and the
 * port).  It logs each new flow.  Arguments: [PORT [IDLE_MS]], default port
 * 1 and rules that go after 10 s without a packet.  Counters: 0 flows seen,
 * 1 rules installed, 2 rules refused (the manager says why in its log
 * line). */
#include <stdio.h>
#include <stdlib.h>

#include <onvm/nflib.h>

struct tracker {
	uint16_t port;
	uint32_t idle_ms;
};

static int tracker_init(struct onvm_nf *nf, void *state, int argc, char **argv)
{
	struct tracker *t = state;
	(void)nf;
	t->port = argc > 1 ? (uint16_t)atoi(argv[1]) : 1;
	t->idle_ms = argc > 2 ? (uint32_t)atoi(argv[2]) : 10000;
	return 0;
}

static int track(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	const struct tracker *t = state;
	struct onvm_5tuple f;
	if (onvm_pkt_5tuple(pkt, &f) < 0)
		return onvm_next(v); /* rules match IPv4 */
	onvm_count(0, 1);
	struct onvm_hop out = ONVM_TO_PORT_HOP(t->port);
	int id = onvm_flow_add(pkt, &out, 1, t->idle_ms);
	if (id >= 0) {
		onvm_count(1, 1);
		printf("flow_tracker: new flow proto %u %08x:%u -> %08x:%u, rule %d\n", f.proto, f.src, f.sport, f.dst,
		       f.dport, id);
	} else {
		/* e.g. a packet of the flow that was on its way while the rule went in */
		onvm_count(2, 1);
		printf("flow_tracker: no rule for %08x:%u -> %08x:%u: %s\n", f.src, f.sport, f.dst, f.dport,
		       onvm_nf_last_error());
	}
	fflush(stdout);
	return onvm_next(v);
}

ONVM_NF_DEF(.name = "flow_tracker", .handler = track, .state_size = sizeof(struct tracker), .init = tracker_init)
