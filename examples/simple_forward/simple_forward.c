/* simple_forward: hands every packet on, to the next hop of its path or,
 * with `-d N`, to service N.  Written with its own main(), the shape of
 * OpenNetVM's examples; ONVM_NF("name", handler) is the one-line form. */
#include <stdlib.h>
#include <string.h>

#include <onvm/nflib.h>

struct fwd_state {
	int dest; /* service to send to, 0: follow the path */
};

static int fwd_init(struct onvm_nf *nf, void *state, int argc, char **argv)
{
	struct fwd_state *st = state;
	(void)nf;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
			st->dest = atoi(argv[++i]);
			if (st->dest < 1 || st->dest > 255)
				return -EINVAL;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

static int forward(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	const struct fwd_state *st = state;
	(void)pkt;
	if (st->dest)
		return onvm_to_service(v, (uint16_t)st->dest);
	return onvm_next(v);
}

int main(int argc, char **argv)
{
	static const struct onvm_nf_def def = {
		.sdk_version = ONVM_SDK_VERSION,
		.name = "simple_forward",
		.handler = forward,
		.state_size = sizeof(struct fwd_state),
		.init = fwd_init,
	};
	return onvm_nflib_run(&def, argc, argv);
}
