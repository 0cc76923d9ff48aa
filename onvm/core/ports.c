/* ports.c: the manager's ports.  Ring ports are the default: a pair of
 * rte_rings wrapped as an ethdev, so injected packets take the same RX path
 * as a NIC's; pcap, tap, null, veth and PCI ports are DPDK devices probed by
 * name.  A veth port is the manager's end of a veth pair (made by
 * onvm/common/veth.py) opened with the af_packet PMD: PACKET_MMAP rings, a
 * burst per system call, and a socket the RX thread can sleep on. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* setns */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_dev.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>

#include "onvm_core.h"

#define PORT_RING_SIZE 4096
#define PORT_DESCS 1024

static const char *kind_names[] = {"ring", "null", "pcap", "tap", "pci", "veth"};

/* af_packet's PACKET_MMAP rings for a veth port: a 2 KiB frame holds a
 * 1500-byte MTU frame (af_packet copies at most that; see veth.py for the
 * offloads this needs), and 4096 frames (8 MiB each way) absorb the bursts
 * of a TCP window while the RX thread is off the CPU. */
#define VETH_RING_ARGS "qpairs=1,blocksz=4096,framesz=2048,framecnt=4096,qdisc_bypass=1"

static int port_poll_fd[ONVM_MAX_PORTS]; /* a veth port's socket, or -1: ports_poll_fd */

static int port_add_finish(unsigned i, unsigned kind, const char *devargs, uint16_t ethdev);
static int port_start(unsigned i);

static int probe_device(unsigned index, unsigned kind, const char *devargs, uint16_t *ethdev)
{
	char args[512], name[64];
	if (kind == ONVM_PORT_PCI) {
		snprintf(args, sizeof(args), "%s", devargs);
		snprintf(name, sizeof(name), "%s", devargs);
	} else {
		const char *drv = kind == ONVM_PORT_NULL ? "net_null" : kind == ONVM_PORT_PCAP ? "net_pcap"
				  : kind == ONVM_PORT_VETH ? "net_af_packet" : "net_tap";
		snprintf(name, sizeof(name), "%s_onvm%u", drv, index);
		snprintf(args, sizeof(args), "%s%s%s%s%s", name, devargs[0] ? "," : "", devargs,
			 kind == ONVM_PORT_VETH ? "," : "", kind == ONVM_PORT_VETH ? VETH_RING_ARGS : "");
	}
	int ret = rte_dev_probe(args);
	if (ret < 0) {
		onvm_set_error("port %u (%s): cannot create device '%s': %s", index, kind_names[kind],
			       args, rte_strerror(-ret));
		return ret;
	}
	/* A PCI device's ethdev name is its address; a vdev's is its name. */
	ret = rte_eth_dev_get_port_by_name(name, ethdev);
	if (ret < 0) {
		onvm_set_error("port %u: device '%s' has no ethdev", index, name);
		return ret;
	}
	return 0;
}

/* The AF_PACKET socket the af_packet PMD bound to interface ifindex: the
 * PMD keeps it private, so it is found among our fds by what it is bound
 * to (one socket per veth port: qpairs=1).  returns: the fd, or -ENOENT. */
static int packet_socket_of(int ifindex)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -errno;
	int found = -ENOENT;
	struct dirent *e;
	while (found < 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		int fd = atoi(e->d_name), domain = 0;
		socklen_t len = sizeof(domain);
		if (fd == dirfd(d) || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_PACKET)
			continue;
		struct sockaddr_ll sll;
		len = sizeof(sll);
		if (getsockname(fd, (struct sockaddr *)&sll, &len) == 0 && sll.sll_ifindex == ifindex)
			found = fd;
	}
	closedir(d);
	return found;
}

/* Move this thread into the network namespace at path.  returns: an fd of
 * the namespace it left (for netns_leave), or -errno. */
static int netns_enter(unsigned index, const char *path)
{
	int back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret = back < 0 || fd < 0 || setns(fd, CLONE_NEWNET) < 0 ? -errno : back;
	if (ret < 0) {
		onvm_set_error("port %u: cannot enter the network namespace %s: %s (tap ports in a namespace need "
			       "root)", index, path, strerror(-ret));
		if (back >= 0)
			close(back);
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

static int netns_leave(int back)
{
	int ret = setns(back, CLONE_NEWNET) < 0 ? -errno : 0;
	if (ret < 0)
		onvm_set_error("cannot return to the manager's network namespace: %s", strerror(-ret));
	close(back);
	return ret;
}

int ports_add(unsigned kind, const char *devargs, const char *netns)
{
	struct onvm_mgr *m = &onvm_mgr;
	struct onvm_shm *shm = m->shm;
	unsigned i = shm->nb_ports;
	uint16_t ethdev;
	char name[64];

	if (i >= ONVM_MAX_PORTS) {
		onvm_set_error("at most %d ports", ONVM_MAX_PORTS);
		return -ENOSPC;
	}
	if (kind > ONVM_PORT_VETH) {
		onvm_set_error("port %u: unknown kind %u", i, kind);
		return -EINVAL;
	}
	if (kind == ONVM_PORT_RING) {
		snprintf(name, sizeof(name), ONVM_PORT_IN_RING_FMT, i);
		m->rte.port_in[i] = rte_ring_create(name, PORT_RING_SIZE, rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
		snprintf(name, sizeof(name), ONVM_PORT_OUT_RING_FMT, i);
		m->rte.port_out[i] = rte_ring_create(name, PORT_RING_SIZE, rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (m->rte.port_in[i] == NULL || m->rte.port_out[i] == NULL) {
			onvm_set_error("port %u: cannot create rings: %s", i, rte_strerror(rte_errno));
			return -ENOMEM;
		}
		snprintf(name, sizeof(name), "onvm_ring%u", i);
		int id = rte_eth_from_rings(name, &m->rte.port_in[i], 1, &m->rte.port_out[i], 1, rte_socket_id());
		if (id < 0) {
			onvm_set_error("port %u: cannot create ring device: %s", i, rte_strerror(rte_errno));
			return -ENODEV;
		}
		ethdev = (uint16_t)id;
	} else {
		/* A TAP device lives in the namespace of the thread that opens it,
		 * and each queue opens it again by name: probe and start it there. */
		int back = -1, ret = 0;
		if (netns != NULL && netns[0]) {
			if (kind != ONVM_PORT_TAP) {
				onvm_set_error("port %u: only tap ports go into a network namespace", i);
				return -EINVAL;
			}
			back = netns_enter(i, netns);
			if (back < 0)
				return back;
		}
		ret = probe_device(i, kind, devargs, &ethdev);
		if (ret == 0)
			ret = port_add_finish(i, kind, devargs, ethdev);
		if (ret == 0 && kind == ONVM_PORT_VETH) {
			struct rte_eth_dev_info info;
			ret = rte_eth_dev_info_get(ethdev, &info);
			port_poll_fd[i] = ret < 0 ? ret : packet_socket_of((int)info.if_index);
			if (port_poll_fd[i] < 0) {
				onvm_set_error("port %u (veth): cannot find the af_packet socket of %s", i, devargs);
				ret = port_poll_fd[i];
			}
		}
		if (ret == 0 && back >= 0)
			ret = port_start(i);
		if (back >= 0) {
			int left = netns_leave(back);
			ret = ret < 0 ? ret : left;
		}
		return ret < 0 ? ret : (int)i;
	}
	int ret = port_add_finish(i, kind, devargs, ethdev);
	return ret < 0 ? ret : (int)i;
}

/* The port's TX ring and slot in the control file, once its device exists. */
static int port_add_finish(unsigned i, unsigned kind, const char *devargs, uint16_t ethdev)
{
	struct onvm_mgr *m = &onvm_mgr;
	struct onvm_shm *shm = m->shm;
	char name[64];
	snprintf(name, sizeof(name), ONVM_PORT_TX_RING_FMT, i);
	onvm_dp.port_tx[i] = rte_ring_create(name, PORT_RING_SIZE, onvm_socket, RING_F_SC_DEQ);
	if (onvm_dp.port_tx[i] == NULL) {
		onvm_set_error("port %u: cannot create its TX ring: %s", i, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	port_poll_fd[i] = -1;
	struct onvm_port_slot *p = &shm->ports[i];
	p->kind = kind;
	p->ethdev = ethdev;
	p->used = 1;
	/* A pcap file replays only when asked (onvm_mgr_enable_rx), so the
	 * chain and NFs can be set up first. */
	p->rx_enabled = !(kind == ONVM_PORT_PCAP && strstr(devargs, "rx_pcap=") != NULL);
	snprintf(p->name, sizeof(p->name), "%s%s%s", kind_names[kind], devargs[0] ? ":" : "", devargs);
	shm->nb_ports = i + 1;
	return 0;
}

static bool port_started[ONVM_MAX_PORTS];

/* For the RX thread: the fd that turns readable when port p has packets
 * (a veth port's socket), or -1 when nobody announces its arrivals (tap,
 * pcap, null, PCI) or inject's doorbell does (ring ports). */
int ports_poll_fd(unsigned p)
{
	return p < onvm_mgr.shm->nb_ports ? port_poll_fd[p] : -1;
}

/* Configure one RX and one TX queue on port i and start it. */
static int port_start(unsigned i)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	uint16_t id = shm->ports[i].ethdev;
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	int ret = rte_eth_dev_configure(id, 1, 1, &conf);
	if (ret == 0)
		ret = rte_eth_rx_queue_setup(id, 0, PORT_DESCS, rte_eth_dev_socket_id(id), NULL, onvm_mgr.rte.pool);
	if (ret == 0)
		ret = rte_eth_tx_queue_setup(id, 0, PORT_DESCS, rte_eth_dev_socket_id(id), NULL);
	if (ret == 0)
		ret = rte_eth_dev_start(id);
	if (ret < 0) {
		onvm_set_error("port %u (%s): cannot start: %s", i, shm->ports[i].name, rte_strerror(-ret));
		return ret;
	}
	(void)rte_eth_promiscuous_enable(id); /* ring/pcap ports refuse; harmless */
	struct rte_ether_addr mac;
	if (rte_eth_macaddr_get(id, &mac) == 0)
		memcpy(shm->ports[i].mac, mac.addr_bytes, 6);
	port_started[i] = true;
	return 0;
}

/* Start every port not started yet (ports_add starts those in a namespace). */
int ports_start(void)
{
	for (unsigned i = 0; i < onvm_mgr.shm->nb_ports; i++) {
		int ret = port_started[i] ? 0 : port_start(i);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void ports_stop(void)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	for (unsigned i = 0; i < shm->nb_ports; i++) {
		rte_eth_dev_stop(shm->ports[i].ethdev);
		rte_eth_dev_close(shm->ports[i].ethdev);
	}
}

static int check_ring_port(uint16_t port)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	if (port >= shm->nb_ports) {
		onvm_set_error("port %u does not exist (ports: 0..%u)", port, shm->nb_ports - 1);
		return -ENODEV;
	}
	if (onvm_mgr.rte.port_in[port] == NULL) {
		onvm_set_error("port %u is a %s port; inject and capture work on ring ports", port,
			       kind_names[shm->ports[port].kind]);
		return -EINVAL;
	}
	return 0;
}

int onvm_mgr_enable_rx(uint16_t port)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	if (port >= shm->nb_ports) {
		onvm_set_error("port %u does not exist (ports: 0..%u)", port, shm->nb_ports - 1);
		return -ENODEV;
	}
	__atomic_store_n(&shm->ports[port].rx_enabled, 1, __ATOMIC_RELEASE);
	return 0;
}

/* ---- ring ports: inject and capture rings in files (capring.c) ---------- */

static struct onvm_ring_hdr *inject_ring[ONVM_MAX_PORTS];
static struct onvm_ring_hdr *capture_ring[ONVM_MAX_PORTS];
static struct onvm_doorbell *rx_bell;

struct onvm_doorbell *ports_rx_bell(void)
{
	return rx_bell ? rx_bell : &onvm_mgr.xchg->rx_bell;
}

int onvm_mgr_set_traffic(struct onvm_traffic *t)
{
	rx_bell = &t->rx_bell;
	return capture_attach(true, onvm_mgr.rte.pool, NULL);
}

int onvm_mgr_set_port_rings(uint16_t port, struct onvm_ring_hdr *in, struct onvm_ring_hdr *out)
{
	int ret = check_ring_port(port);
	if (ret < 0)
		return ret;
	inject_ring[port] = in;
	capture_ring[port] = out;
	return 0;
}

void onvm_mgr_inject_dropped(uint16_t port, uint64_t n)
{
	if (port < ONVM_MAX_PORTS)
		__atomic_fetch_add(&onvm_mgr.shm->ports[port].ctl.inject_drop, n, __ATOMIC_RELAXED);
}

/* Records a writer withdrew (a cancelled inject) are skipped and counted
 * as the port's inject_drop. */
static void skip_withdrawn(unsigned port, struct onvm_ring_hdr *r)
{
	uint64_t n = capring_skip_withdrawn(r);
	if (unlikely(n))
		__atomic_fetch_add(&onvm_mgr.shm->ports[port].ctl.inject_drop, n, __ATOMIC_RELAXED);
}

/* When a record stamped due at ts may go: its time, or now if it claims to
 * be due further ahead than any paced schedule puts it (ONVM_PACE_HORIZON_NS),
 * so no due time, however far, holds the port's later records for long. */
static inline uint64_t release_time(uint64_t ts, uint64_t now)
{
	return ts > now && ts - now > ONVM_PACE_HORIZON_NS ? now : ts;
}

/* When the first record waiting in a port's inject ring is due (0: none
 * waits), without taking it. */
uint64_t ports_inject_due(unsigned port)
{
	struct onvm_ring_hdr *r = inject_ring[port];
	if (r == NULL)
		return 0;
	skip_withdrawn(port, r);
	uint64_t tail = r->tail, head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
	const struct onvm_rec *rec = capring_peek(r, &tail, head);
	__atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE); /* fillers and nonsense skipped */
	return rec ? RTE_MAX(release_time(rec->ts_ns, onvm_now_ns()), 1ull) : 0;
}

/* How many injected packets may enter now: the packets waiting in the
 * rings along this port's path (and in the device's receive ring) stay
 * below half an NF ring, so no ring on the way can fill and drop them
 * after the router's backpressure wait; they wait in the inject ring
 * instead, which holds them.  Read outside the RCU read side: a hint, so
 * only bounds are trusted. */
static unsigned inject_room(unsigned port, struct rte_ring *in)
{
	const struct onvm_shm *shm = onvm_dp.shm;
	const struct onvm_tables *t = &shm->tables[__atomic_load_n(&shm->active, __ATOMIC_ACQUIRE) & 1];
	const struct onvm_chain *path = &t->paths[port < ONVM_MAX_PORTS ? port : 0]; /* this port's path */
	unsigned limit = shm->nf_ring_size / 2, backlog = rte_ring_count(in);
	for (unsigned e = 0; e < path->length && e < ONVM_MAX_CHAIN; e++) {
		uint16_t d = path->entries[e].destination;
		if (path->entries[e].action == ONVM_TO_PORT) {
			if (d < ONVM_MAX_PORTS && onvm_dp.port_tx[d])
				backlog += rte_ring_count(onvm_dp.port_tx[d]);
			continue;
		}
		if (d >= ONVM_MAX_SERVICES)
			continue;
		const struct onvm_service *s = &t->services[d];
		for (unsigned i = 0; i < s->count && i < ONVM_MAX_INSTANCES; i++)
			if (s->instances[i] < ONVM_MAX_NFS && onvm_dp.nf_rx[s->instances[i]])
				backlog += rte_ring_count(onvm_dp.nf_rx[s->instances[i]]);
	}
	return backlog >= limit ? 0 : RTE_MIN(limit - backlog, (unsigned)ONVM_BURST);
}

/* Called by the port's RX thread: move the records that are due from the
 * inject ring into mbufs on the device's receive ring, as many as fit.
 * Pacing is the records' due times.  returns: packets moved. */
unsigned ports_pull(unsigned port, uint64_t now)
{
	struct onvm_ring_hdr *r = inject_ring[port];
	if (r == NULL)
		return 0;
	skip_withdrawn(port, r);
	uint64_t tail = r->tail, head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
	if (tail == head)
		return 0;
	struct rte_ring *in = onvm_mgr.rte.port_in[port];
	unsigned room = inject_room(port, in);
	struct rte_mbuf *pkts[ONVM_BURST];
	if (room == 0 || rte_pktmbuf_alloc_bulk(onvm_mgr.rte.pool, pkts, room) != 0)
		return 0; /* the device or the pool is full: the records wait */
	unsigned n = 0;
	const struct onvm_rec *rec;
	while (n < room && (rec = capring_peek(r, &tail, head)) != NULL && release_time(rec->ts_ns, now) <= now) {
		struct rte_mbuf *m = pkts[n++];
		memcpy(rte_pktmbuf_append(m, (uint16_t)rec->caplen), rec + 1, rec->caplen);
		struct onvm_pkt_meta *meta = onvm_meta(m);
		meta->owner = ONVM_OWNER_MGR;
		meta->reserved = rec->aux;
		capring_consume(&tail, rec);
	}
	__atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
	if (n < room)
		rte_pktmbuf_free_bulk(pkts + n, room - n);
	if (n) {
		rte_ring_sp_enqueue_bulk(in, (void **)pkts, n, NULL); /* fits: we are its only producer */
		onvm_mgr.shm->ports[port].ctl.injected += n;
	}
	return n;
}

/* Called by the port's TX thread after sending: what the ring device
 * transmitted goes into the port's capture ring; a full ring counts
 * capture_drop and never holds up the thread.  returns: packets taken. */
unsigned ports_tx_capture(unsigned port)
{
	struct rte_ring *out = onvm_mgr.rte.port_out[port];
	struct onvm_ring_hdr *r = capture_ring[port];
	if (out == NULL || r == NULL)
		return 0;
	struct onvm_port_ctl_stats *ctl = &onvm_mgr.shm->ports[port].ctl;
	struct rte_mbuf *pkts[ONVM_BURST];
	unsigned n, total = 0;
	while ((n = rte_ring_sc_dequeue_burst(out, (void **)pkts, ONVM_BURST, NULL)) > 0) {
		uint64_t now = onvm_now_ns();
		for (unsigned i = 0; i < n; i++) {
			if (capring_put(r, pkts[i], now))
				ctl->captured++;
			else
				ctl->capture_drop++;
		}
		rte_pktmbuf_free_bulk(pkts, n);
		total += n;
	}
	return total;
}
