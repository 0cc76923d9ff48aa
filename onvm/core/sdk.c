/* sdk.c: the run loop and helpers behind <onvm/nflib.h>, for NFs written
 * in C by users (libonvm_nf.so; onvm/cnf.py builds and launches them).
 *
 * The launcher (python -m onvm.nflib.run --c-nf, in the NF's own process)
 * registers with the manager's NF door exactly as for a shipped NF, then
 * execs the NF's binary, which keeps its pid (the manager's pidfd still
 * names it) and inherits the connection and the two files the manager
 * sent (ONVM_NF_BOOT).  From here the NF is like a native one: it joins
 * DPDK (onvm_nf_start), says "ready", serves packets with the user's
 * handler, "leave"s and drains when stopped. */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_sctp.h>

#include "onvm_core.h"
#include "include/onvm/nflib.h"

_Static_assert(sizeof(struct onvm_verdict) == sizeof(uint32_t), "verdicts are the NF library's uint32_t codes");
_Static_assert(ONVM_VERDICT(ONVM_DROP, 0) == 1u << 16 && ONVM_VERDICT(ONVM_TO_SERVICE, 7) == ((2u << 16) | 7) &&
		       ONVM_VERDICT(ONVM_TO_PORT, 1) == ((3u << 16) | 1),
	       "the SDK's verdict codes are the NF library's");
_Static_assert(ONVM_HOP_SERVICE == ONVM_TO_SERVICE && ONVM_HOP_PORT == ONVM_TO_PORT, "hop actions");
_Static_assert(ONVM_NF_COUNTERS == ONVM_NB_APP, "the NF's counters are its stats file's app[]");

#define BOOT_ENV "ONVM_NF_BOOT"      /* "shm_fd stats_fd mgr_fd slot service [xmem_fd]" */
#define HANG_ENV "ONVM_NF_HANG_MS"   /* how long one burst may take before the NF is ended */
#define HANG_DEFAULT_MS 2000
#define REPLY_MAX 4096

uint64_t *onvm_nf_counters_;

static struct {
	struct onvm_nf *nf;
	const char *name;
	uint16_t service, slot;
	int mgr_fd;
	/* odd while the handler runs a burst; the hang watchdog reads it */
	volatile uint32_t burst_seq;
	uint32_t hang_ms;
	char error[256];
} sdk = {.mgr_fd = -1};

static void sdk_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sdk_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sdk.error, sizeof(sdk.error), fmt, ap);
	va_end(ap);
}

const char *onvm_nf_last_error(void) { return sdk.error; }
const char *onvm_nf_name(const struct onvm_nf *nf) { (void)nf; return sdk.name; }
uint16_t onvm_nf_service_id(const struct onvm_nf *nf) { (void)nf; return sdk.service; }
uint16_t onvm_nf_instance_id(const struct onvm_nf *nf) { (void)nf; return sdk.slot; }
struct onvm_nf *onvm_nf_self(void) { return sdk.nf; }
struct rte_mempool *onvm_nf_pktmbuf_pool(struct onvm_nf *nf) { return onvm_nf_pool(nf); }

int onvm_service_id(const char *node)
{
	if (onvm_dp.shm == NULL || node == NULL)
		return -ENOENT;
	const struct onvm_tables *t = &onvm_dp.shm->tables[__atomic_load_n(&onvm_dp.shm->active, __ATOMIC_ACQUIRE) & 1];
	for (int s = 1; s < ONVM_MAX_SERVICES; s++)
		if (t->names[s][0] && strncmp(t->names[s], node, sizeof(t->names[s])) == 0)
			return s;
	sdk_error("no deployed node called %s", node);
	return -ENOENT;
}

/* ---- header parsing ------------------------------------------------------------ */

void onvm_pkt_parse_(struct onvm_pkt *p)
{
	const uint8_t *d = p->data;
	uint32_t len = p->len, off = sizeof(struct rte_ether_hdr);
	p->parsed_ = 1;
	p->l4_proto_ = 255;
	p->l3_off_ = p->l4_off_ = 0;
	p->vlan_ = -1;
	p->l3_type_ = 0;
	if (len < off)
		return;
	uint16_t type = rte_be_to_cpu_16(((const struct rte_ether_hdr *)d)->ether_type);
	for (int tags = 0; tags < 2 && (type == RTE_ETHER_TYPE_VLAN || type == RTE_ETHER_TYPE_QINQ || type == 0x9100);
	     tags++) {
		if (len < off + 4)
			return;
		if (p->vlan_ < 0)
			p->vlan_ = rte_be_to_cpu_16(*(const rte_be16_t *)(d + off)) & 0xfff;
		type = rte_be_to_cpu_16(*(const rte_be16_t *)(d + off + 2));
		off += 4;
	}
	p->l3_type_ = type;
	if (type == RTE_ETHER_TYPE_IPV4) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(d + off);
		if (len < off + sizeof(*ip))
			return;
		uint32_t ihl = (ip->version_ihl & 0xf) * 4u;
		if (ihl < sizeof(*ip) || len < off + ihl)
			return;
		p->l3_off_ = (uint16_t)off;
		p->l4_proto_ = ip->next_proto_id;
		if (rte_be_to_cpu_16(ip->fragment_offset) & RTE_IPV4_HDR_OFFSET_MASK)
			return; /* a later fragment: no L4 header here */
		off += ihl;
	} else if (type == RTE_ETHER_TYPE_IPV6) {
		const struct rte_ipv6_hdr *ip6 = (const struct rte_ipv6_hdr *)(d + off);
		if (len < off + sizeof(*ip6))
			return;
		p->l3_off_ = (uint16_t)off;
		p->l4_proto_ = ip6->proto;
		off += sizeof(*ip6);
	} else {
		return;
	}
	uint32_t need = p->l4_proto_ == IPPROTO_TCP ? sizeof(struct rte_tcp_hdr)
			: p->l4_proto_ == IPPROTO_UDP ? sizeof(struct rte_udp_hdr)
			: p->l4_proto_ == IPPROTO_SCTP ? sizeof(struct rte_sctp_hdr) : 0;
	if (need && len >= off + need)
		p->l4_off_ = (uint16_t)off;
}

uint8_t *onvm_pkt_payload(struct onvm_pkt *p, uint32_t *len)
{
	onvm_pkt_parse(p);
	if (!p->l4_off_)
		return NULL;
	uint32_t off = p->l4_off_;
	if (p->l4_proto_ == IPPROTO_TCP)
		off += (uint32_t)(((const struct rte_tcp_hdr *)(p->data + off))->data_off >> 4) * 4u;
	else if (p->l4_proto_ == IPPROTO_UDP)
		off += sizeof(struct rte_udp_hdr);
	else
		off += sizeof(struct rte_sctp_hdr);
	if (off > p->len)
		return NULL;
	if (len)
		*len = p->len - off;
	return p->data + off;
}

int onvm_pkt_5tuple(struct onvm_pkt *p, struct onvm_5tuple *t)
{
	const struct rte_ipv4_hdr *ip = onvm_pkt_ipv4(p);
	if (ip == NULL)
		return -EINVAL;
	t->src = rte_be_to_cpu_32(ip->src_addr);
	t->dst = rte_be_to_cpu_32(ip->dst_addr);
	t->proto = ip->next_proto_id;
	t->sport = onvm_pkt_sport(p);
	t->dport = onvm_pkt_dport(p);
	return 0;
}

/* ---- talking to the manager: length-prefixed JSON (onvm/protocol.py) ------------ */

static int send_all(int fd, const void *buf, size_t n)
{
	const char *b = buf;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -EPIPE;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, void *buf, size_t n, int timeout_ms)
{
	char *b = buf;
	while (n) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -ETIMEDOUT;
		ssize_t got = recv(fd, b, n, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -ECONNRESET;
		b += got;
		n -= (size_t)got;
	}
	return 0;
}

/* One request, one reply (into reply, NUL-terminated).  returns: 0 if the
 * manager said ok, -EPERM with its error text in sdk.error if not, another
 * -errno if it did not answer. */
static int mgr_call(const char *req, char *reply, size_t size, int timeout_ms)
{
	uint32_t n = (uint32_t)strlen(req), be = rte_cpu_to_be_32(n);
	int ret;
	if (sdk.mgr_fd < 0)
		return -ENOTCONN;
	if ((ret = send_all(sdk.mgr_fd, &be, 4)) < 0 || (ret = send_all(sdk.mgr_fd, req, n)) < 0 ||
	    (ret = recv_all(sdk.mgr_fd, &be, 4, timeout_ms)) < 0) {
		sdk_error("the manager did not answer: %s", strerror(-ret));
		return ret;
	}
	n = rte_be_to_cpu_32(be);
	if (n >= size) {
		sdk_error("the manager's answer is too long (%u bytes)", n);
		return -EMSGSIZE;
	}
	if ((ret = recv_all(sdk.mgr_fd, reply, n, timeout_ms)) < 0) {
		sdk_error("the manager did not answer: %s", strerror(-ret));
		return ret;
	}
	reply[n] = 0;
	if (strstr(reply, "\"ok\":true"))
		return 0;
	const char *e = strstr(reply, "\"error\":\"");
	if (e) {
		e += 9;
		size_t k = 0;
		for (; e[k] && e[k] != '"' && k < sizeof(sdk.error) - 1; k++)
			sdk.error[k] = e[k];
		sdk.error[k] = 0;
	} else {
		sdk_error("the manager refused: %.200s", reply);
	}
	return -EPERM;
}

int onvm_flow_add(struct onvm_pkt *pkt, const struct onvm_hop *chain, unsigned n, uint32_t idle_timeout_ms)
{
	struct onvm_5tuple t;
	if (onvm_pkt_5tuple(pkt, &t) < 0) {
		sdk_error("onvm_flow_add: not an IPv4 packet; rules match IPv4");
		return -EINVAL;
	}
	if (n == 0 || n > ONVM_MAX_CHAIN || chain[n - 1].action != ONVM_HOP_PORT) {
		sdk_error("onvm_flow_add: a rule's chain has 1..%d hops and ends at a port", ONVM_MAX_CHAIN);
		return -EINVAL;
	}
	char req[1024], reply[REPLY_MAX];
	int k = snprintf(req, sizeof(req),
			 "{\"op\":\"flow_add\",\"match\":{\"src\":[%u,32],\"dst\":[%u,32],\"proto\":%u,", t.src, t.dst,
			 t.proto);
	if (t.proto == IPPROTO_TCP || t.proto == IPPROTO_UDP || t.proto == IPPROTO_SCTP)
		k += snprintf(req + k, sizeof(req) - (size_t)k, "\"sport\":[%u,%u],\"dport\":[%u,%u]},", t.sport,
			      t.sport, t.dport, t.dport);
	else
		k += snprintf(req + k, sizeof(req) - (size_t)k, "\"sport\":[0,65535],\"dport\":[0,65535]},");
	k += snprintf(req + k, sizeof(req) - (size_t)k, "\"chain\":[");
	for (unsigned i = 0; i < n; i++)
		k += snprintf(req + k, sizeof(req) - (size_t)k, "%s[%u,%u]", i ? "," : "", chain[i].action, chain[i].dest);
	snprintf(req + k, sizeof(req) - (size_t)k, "],\"priority\":0,\"idle_timeout\":%u,\"hard_timeout\":0}",
		 idle_timeout_ms);
	int ret = mgr_call(req, reply, sizeof(reply), 5000);
	if (ret < 0)
		return ret;
	const char *id = strstr(reply, "\"id\":");
	if (id == NULL) {
		sdk_error("onvm_flow_add: no rule ID in the manager's answer");
		return -EPROTO;
	}
	return atoi(id + 5);
}

int onvm_flow_remove(uint32_t id)
{
	char req[64], reply[REPLY_MAX];
	snprintf(req, sizeof(req), "{\"op\":\"flow_remove\",\"id\":%u}", id);
	return mgr_call(req, reply, sizeof(reply), 5000);
}

/* ---- faults: a crash or a hang ends the process, the manager recovers ------------ */

static void on_crash(int sig)
{
	char msg[160];
	int n = snprintf(msg, sizeof(msg),
			 "NF %s: the NF's code crashed (signal %d, %s); the manager recovers the packets it held\n",
			 sdk.name ? sdk.name : "?", sig, sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
			 : sig == SIGFPE ? "SIGFPE" : sig == SIGILL ? "SIGILL" : "SIGABRT");
	ssize_t w = write(STDERR_FILENO, msg, (size_t)(n > 0 ? n : 0));
	(void)w;
	/* where: addresses a debugger or addr2line turns into file:line */
	void *frames[32];
	backtrace_symbols_fd(frames, backtrace(frames, 32), STDERR_FILENO);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_crashes(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_crash;
	sa.sa_flags = SA_RESETHAND | SA_NODEFER;
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

/* A handler that never returns holds the packets of its burst and stalls
 * its ring; nothing outside the process can make it return.  So a thread
 * ends the process once one burst has run longer than hang_ms: the
 * manager then recovers the NF like one that was killed. */
static void *hang_watchdog(void *arg)
{
	(void)arg;
	uint32_t last = 0, stuck_ms = 0;
	for (;;) {
		usleep(100 * 1000);
		uint32_t seq = __atomic_load_n(&sdk.burst_seq, __ATOMIC_RELAXED);
		if ((seq & 1) && seq == last) {
			stuck_ms += 100;
			if (stuck_ms >= sdk.hang_ms) {
				char msg[200];
				int n = snprintf(msg, sizeof(msg),
						 "NF %s: the NF's code has not returned for %u ms (an endless loop?); "
						 "ending the NF, the manager recovers the packets it held\n",
						 sdk.name, stuck_ms);
				ssize_t w = write(STDERR_FILENO, msg, (size_t)(n > 0 ? n : 0));
				(void)w;
				_exit(4);
			}
		} else {
			stuck_ms = 0;
		}
		last = seq;
	}
	return NULL;
}

/* ---- the run loop ------------------------------------------------------------------ */

static inline void fill(struct onvm_pkt *p, struct rte_mbuf *m)
{
	const struct onvm_pkt_meta *meta = onvm_meta(m);
	p->mbuf = m;
	p->data = rte_pktmbuf_mtod(m, uint8_t *);
	p->len = m->data_len;
	p->hash = meta->hash;
	p->in_port = meta->in_port;
	p->parsed_ = 0;
}

static void serve(const struct onvm_nf_def *def, void *state)
{
	struct rte_mbuf *mbufs[ONVM_BURST];
	struct onvm_pkt pkts[ONVM_BURST];
	struct onvm_verdict v[ONVM_BURST];
	struct onvm_nf *nf = sdk.nf;
	uint64_t *errors = &onvm_nf_stats(nf)->errors;
	int n;
	while ((n = onvm_nf_rx_burst(nf, mbufs, 100)) >= 0) {
		if (n == 0)
			continue;
		__atomic_store_n(&sdk.burst_seq, sdk.burst_seq + 1, __ATOMIC_RELAXED);
		for (int i = 0; i < n; i++) {
			fill(&pkts[i], mbufs[i]);
			v[i].code = 0;
		}
		if (def->burst) {
			if (def->burst(pkts, v, (unsigned)n, state) < 0) {
				*errors += (uint64_t)n;
				for (int i = 0; i < n; i++)
					v[i].code = ONVM_VERDICT(ONVM_DROP, 0);
			}
		} else {
			onvm_pkt_handler fn = def->handler;
			for (int i = 0; i < n; i++)
				if (unlikely(fn(&pkts[i], &v[i], state) < 0)) {
					(*errors)++;
					v[i].code = ONVM_VERDICT(ONVM_DROP, 0);
				}
		}
		__atomic_store_n(&sdk.burst_seq, sdk.burst_seq + 1, __ATOMIC_RELAXED);
		onvm_nf_tx_burst(nf, mbufs, (const uint32_t *)v, (unsigned)n);
	}
}

static int boot_usage(const char *argv0)
{
	fprintf(stderr,
		"%s is an onvm NF: run it under a manager with\n"
		"  onvm nf %s --manager NAME --service N\n"
		"or from Python with onvm.c_nf(path=...) and mgr.launch(...)\n",
		argv0, argv0);
	return 2;
}

int onvm_nflib_run(const struct onvm_nf_def *def, int argc, char **argv)
{
	const char *argv0 = argc > 0 ? argv[0] : "this NF";
	if (def == NULL || def->sdk_version != ONVM_SDK_VERSION) {
		fprintf(stderr, "NF %s was built against onvm NF SDK %u, and this libonvm_nf is SDK %d: rebuild it "
			"with `onvm build`\n", argv0, def ? def->sdk_version : 0, ONVM_SDK_VERSION);
		return 2;
	}
	if ((def->handler == NULL) == (def->burst == NULL)) {
		fprintf(stderr, "NF %s: give exactly one of .handler and .burst\n", argv0);
		return 2;
	}
	const char *boot = getenv(BOOT_ENV);
	int shm_fd, stats_fd, mgr_fd, xmem = -1;
	unsigned slot, service;
	/* a sixth descriptor: the manager runs without hugepages (xmem.c) */
	int got = boot ? sscanf(boot, "%d %d %d %u %u %d", &shm_fd, &stats_fd, &mgr_fd, &slot, &service, &xmem) : 0;
	if (got != 5 && got != 6)
		return boot_usage(argv0);
	if (xmem >= 0)
		onvm_nf_use_xmem(xmem);
	const char *name = getenv("ONVM_NF_NAME"), *cpus = getenv("ONVM_NF_CPUS"), *eal = getenv("ONVM_NF_EAL");
	if (name == NULL || cpus == NULL || eal == NULL)
		return boot_usage(argv0);
	sdk.name = strdup(name);
	sdk.slot = (uint16_t)slot;
	sdk.service = (uint16_t)service;
	sdk.mgr_fd = mgr_fd;
	const char *hang = getenv(HANG_ENV);
	sdk.hang_ms = hang && atoi(hang) > 0 ? (uint32_t)atoi(hang) : HANG_DEFAULT_MS;
	/* EAL's arguments, one per line */
	char *eal_copy = strdup(eal);
	char *eal_argv[32];
	int eal_argc = 0;
	for (char *save = NULL, *a = strtok_r(eal_copy, "\n", &save); a && eal_argc < 31; a = strtok_r(NULL, "\n", &save))
		eal_argv[eal_argc++] = a;
	eal_argv[eal_argc] = NULL;
	unsetenv(BOOT_ENV); /* not for the NF's children */

	sdk.nf = onvm_nf_start(shm_fd, stats_fd, (uint16_t)slot, mgr_fd, cpus, eal_argc, eal_argv);
	close(shm_fd);
	close(stats_fd);
	if (xmem >= 0)
		close(xmem); /* mapped (or failed): the mapping keeps the region */
	if (sdk.nf == NULL) {
		fprintf(stderr, "NF %s: %s\n", sdk.name, onvm_last_error());
		return 2;
	}
	onvm_nf_counters_ = onvm_nf_stats(sdk.nf)->app;
	catch_crashes(); /* from here on the NF's own code runs, init first */
	void *state = def->state_size ? calloc(1, def->state_size) : NULL;
	if (def->state_size && state == NULL) {
		fprintf(stderr, "NF %s: no memory for its state (%zu bytes)\n", sdk.name, def->state_size);
		onvm_nf_finish(sdk.nf);
		return 2;
	}
	if (def->init) {
		int ret = def->init(sdk.nf, state, argc, argv);
		if (ret < 0) {
			fprintf(stderr, "NF %s: its init failed: %s%s%s\n", sdk.name, strerror(-ret),
				sdk.error[0] ? ": " : "", sdk.error);
			onvm_nf_finish(sdk.nf);
			return 2;
		}
	}
	char reply[REPLY_MAX];
	if (mgr_call("{\"op\":\"ready\"}", reply, sizeof(reply), 30000) < 0) {
		fprintf(stderr, "NF %s: the manager refused ready: %s\n", sdk.name, sdk.error);
		onvm_nf_finish(sdk.nf);
		return 2;
	}
	printf("NF %s registered: service %u, instance %u (C, onvm NF SDK %d)\n", sdk.name, service, slot,
	       ONVM_SDK_VERSION);
	fflush(stdout);
	pthread_t hang_thread;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay the main thread's */
	if (pthread_create(&hang_thread, NULL, hang_watchdog, NULL) == 0)
		pthread_detach(hang_thread);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	serve(def, state);
	/* Asked to stop: leave the service (answered once no packet can come
	 * our way), then hand on what is still in the ring: nothing is lost. */
	if (mgr_call("{\"op\":\"leave\"}", reply, sizeof(reply), 6000) == 0 && strstr(reply, "\"out_of_service\":true")) {
		onvm_nf_drain(sdk.nf);
		serve(def, state);
	}
	if (def->fini)
		def->fini(sdk.nf, state);
	onvm_nf_finish(sdk.nf);
	sdk.nf = NULL;
	close(mgr_fd);
	free(state);
	free(eal_copy);
	return 0;
}
