/* flow_hash.h: the symmetric flow hash, computed once per packet at RX. */
#ifndef ONVM_FLOW_HASH_H
#define ONVM_FLOW_HASH_H

#include <string.h>

#include <rte_ether.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

/* Both directions of a flow give the same value: the (addr, port) pairs are
 * put in a fixed order before hashing.  Non-IP packets hash their MACs the
 * same way. */
static inline uint32_t onvm_flow_hash(const struct rte_mbuf *m)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	if (m->data_len < sizeof(*eth))
		return 0;
	if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) &&
	    m->data_len >= sizeof(*eth) + sizeof(struct rte_ipv4_hdr)) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);
		uint32_t a = ip->src_addr, b = ip->dst_addr;
		uint16_t pa = 0, pb = 0;
		unsigned ihl = (ip->version_ihl & 0xf) * 4;
		if ((ip->next_proto_id == IPPROTO_TCP || ip->next_proto_id == IPPROTO_UDP) &&
		    m->data_len >= sizeof(*eth) + ihl + 4) {
			const uint16_t *l4 = (const uint16_t *)((const uint8_t *)ip + ihl);
			pa = l4[0];
			pb = l4[1];
		}
		if (a > b || (a == b && pa > pb)) {
			uint32_t t = a; a = b; b = t;
			uint16_t tp = pa; pa = pb; pb = tp;
		}
		uint32_t h = rte_hash_crc_4byte(a, ip->next_proto_id);
		h = rte_hash_crc_4byte(b, h);
		return rte_hash_crc_4byte(((uint32_t)pa << 16) | pb, h);
	}
	uint64_t x = 0, y = 0;
	memcpy(&x, &eth->src_addr, 6);
	memcpy(&y, &eth->dst_addr, 6);
	if (x > y) { uint64_t t = x; x = y; y = t; }
	return rte_hash_crc_8byte(y, rte_hash_crc_8byte(x, eth->ether_type));
}

#endif
