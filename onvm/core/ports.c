/* ports.c: the manager's ports.  Ring ports are the default: a pair of
 * rte_rings wrapped as an ethdev, so injected packets take the same RX path
 * as a NIC's; pcap, tap, null and PCI ports are DPDK devices probed by name. */
#include <stdio.h>
#include <string.h>

#include <rte_dev.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>

#include "onvm_core.h"

#define PORT_RING_SIZE 4096
#define PORT_DESCS 1024

static const char *kind_names[] = {"ring", "null", "pcap", "tap", "pci"};

static int probe_device(unsigned index, unsigned kind, const char *devargs, uint16_t *ethdev)
{
	char args[512], name[64];
	if (kind == ONVM_PORT_PCI) {
		snprintf(args, sizeof(args), "%s", devargs);
		snprintf(name, sizeof(name), "%s", devargs);
	} else {
		const char *drv = kind == ONVM_PORT_NULL ? "net_null" : kind == ONVM_PORT_PCAP ? "net_pcap" : "net_tap";
		snprintf(name, sizeof(name), "%s_onvm%u", drv, index);
		snprintf(args, sizeof(args), "%s%s%s", name, devargs[0] ? "," : "", devargs);
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

int ports_add(unsigned kind, const char *devargs)
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
	if (kind > ONVM_PORT_PCI) {
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
		int ret = probe_device(i, kind, devargs, &ethdev);
		if (ret < 0)
			return ret;
		m->external_rx = true;
	}
	snprintf(name, sizeof(name), ONVM_PORT_TX_RING_FMT, i);
	onvm_dp.port_tx[i] = rte_ring_create(name, PORT_RING_SIZE, rte_socket_id(), RING_F_SC_DEQ);
	if (onvm_dp.port_tx[i] == NULL) {
		onvm_set_error("port %u: cannot create its TX ring: %s", i, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	struct onvm_port_slot *p = &shm->ports[i];
	p->kind = kind;
	p->ethdev = ethdev;
	p->used = 1;
	/* A pcap file replays only when asked (onvm_mgr_enable_rx), so the
	 * chain and NFs can be set up first. */
	p->rx_enabled = !(kind == ONVM_PORT_PCAP && strstr(devargs, "rx_pcap=") != NULL);
	snprintf(p->name, sizeof(p->name), "%s%s%s", kind_names[kind], devargs[0] ? ":" : "", devargs);
	shm->nb_ports = i + 1;
	return (int)i;
}

/* Configure one RX and one TX queue on every port and start it. */
int ports_start(void)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	for (unsigned i = 0; i < shm->nb_ports; i++) {
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

int onvm_mgr_inject(uint16_t port, const uint8_t *buf, const uint32_t *lens, uint32_t n)
{
	int ret = check_ring_port(port);
	if (ret < 0)
		return ret;
	struct onvm_port_slot *ps = &onvm_mgr.shm->ports[port];
	struct rte_mbuf *pkts[ONVM_BURST];
	uint32_t done = 0;
	size_t off = 0;
	while (done < n) {
		unsigned k = RTE_MIN(n - done, (uint32_t)ONVM_BURST);
		if (rte_pktmbuf_alloc_bulk(onvm_mgr.rte.pool, pkts, k) != 0)
			break;
		for (unsigned j = 0; j < k; j++) {
			uint32_t len = lens[done + j];
			char *dst = rte_pktmbuf_append(pkts[j], (uint16_t)RTE_MIN(len, (uint32_t)UINT16_MAX));
			if (dst == NULL) { /* longer than one mbuf: cut to what fits */
				len = rte_pktmbuf_tailroom(pkts[j]);
				dst = rte_pktmbuf_append(pkts[j], (uint16_t)len);
			}
			memcpy(dst, buf + off, len);
			off += lens[done + j];
			onvm_meta(pkts[j])->owner = ONVM_OWNER_MGR;
		}
		unsigned sent = rte_ring_enqueue_burst(onvm_mgr.rte.port_in[port], (void **)pkts, k, NULL);
		for (unsigned j = sent; j < k; j++)
			router_free_pkt(pkts[j]);
		done += sent;
		onvm_bell_ring(&onvm_mgr.xchg->rx_bell);
		if (sent < k)
			break;
	}
	/* What did not fit is not a drop yet: the caller may retry (and counts
	 * inject_drop when it gives up, see mgrd.py). */
	ps->ctl.injected += done;
	return (int)done;
}

/* A packet taken off a port's out ring that did not fit the caller's
 * buffer waits here for the next call, so drain never loses one. */
static struct rte_mbuf *holdover[ONVM_MAX_PORTS];

int onvm_mgr_drain(uint16_t port, uint8_t *buf, uint32_t buflen, uint32_t *lens, uint32_t max)
{
	int ret = check_ring_port(port);
	if (ret < 0)
		return ret;
	struct onvm_port_slot *ps = &onvm_mgr.shm->ports[port];
	uint32_t n = 0;
	size_t off = 0;
	while (n < max) {
		struct rte_mbuf *m = holdover[port];
		holdover[port] = NULL;
		if (m == NULL && rte_ring_sc_dequeue(onvm_mgr.rte.port_out[port], (void **)&m) != 0)
			break;
		uint32_t len = rte_pktmbuf_pkt_len(m);
		if (off + len > buflen) {
			if (off == 0) { /* larger than the whole buffer: cannot ever fit */
				ps->ctl.capture_drop++;
				router_free_pkt(m);
				continue;
			}
			holdover[port] = m;
			break;
		}
		const void *p = rte_pktmbuf_read(m, 0, len, buf + off);
		if (unlikely(p == NULL)) { /* a chain shorter than its pkt_len: malformed, never copied */
			ps->ctl.capture_drop++;
			router_free_pkt(m);
			continue;
		}
		if (p != buf + off)
			memcpy(buf + off, p, len);
		lens[n++] = len;
		off += len;
		router_free_pkt(m);
	}
	ps->ctl.captured += n;
	return (int)n;
}
