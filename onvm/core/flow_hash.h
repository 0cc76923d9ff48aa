/* flow_hash.h: the symmetric flow hash, computed once per packet by the RX
 * thread (rx.c) and by `generate`; replicas of a service are picked by it.
 *
 * Both directions of a flow give the same value: the two (address, port)
 * ends are put in a fixed order before hashing.  What is hashed:
 *   IPv4/IPv6 + TCP, UDP, SCTP     addresses, ports, protocol
 *   IPv4 fragments (MF or offset)  addresses, protocol: every fragment of a
 *                                  datagram, the first included, goes to one
 *                                  replica
 *   IPv6 with a Fragment header    the same
 *   other IP protocols (ICMP, ICMPv6, ESP, ...)   addresses, protocol
 *   anything else                  the MAC pair and the EtherType
 * Up to two VLAN tags (0x8100, 0x88a8, 0x9100) are skipped and not hashed,
 * so a tagged frame hashes like its untagged self.  IPv6 extension headers
 * skipped: Hop-by-Hop, Routing, Destination Options, Fragment, AH (at most
 * ONVM_FH_MAX_EXT of them); after ESP, Mobility or anything unknown the
 * last next-header value is hashed as the protocol, without ports.  MPLS,
 * PPPoE and tunnels are hashed as non-IP (outer MACs).
 *
 * Frames come from the wire untrusted: every read is checked against
 * data_len (only the first segment is looked at), header length fields are
 * only believed within it, and a header that does not fit makes the hash
 * fall back to the coarser key above it (ports -> addresses -> MACs).  IP
 * total/payload lengths are not consulted: the frame's own length bounds
 * every read. */
#ifndef ONVM_FLOW_HASH_H
#define ONVM_FLOW_HASH_H

#include <stdint.h>
#include <string.h>
#include <netinet/in.h>

#include <rte_branch_prediction.h>
#include <rte_byteorder.h>
#include <rte_hash_crc.h>
#include <rte_mbuf.h>

#define ONVM_FH_MAX_EXT 4 /* IPv6 extension headers skipped, at most */

/* Unaligned loads: headers after odd-length options sit anywhere. */
static inline uint16_t onvm_fh_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t onvm_fh_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t onvm_fh_u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline int onvm_fh_has_ports(uint8_t proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

/* The ports at `l4` if the whole 4 bytes are in the frame, else 0, 0. */
static inline uint32_t onvm_fh_ports(const uint8_t *p, uint32_t l4, uint32_t len, uint8_t proto)
{
	if (!onvm_fh_has_ports(proto) || l4 + 4 > len)
		return 0;
	return onvm_fh_u32(p + l4);
}

/* Port words are (src << 16 | dst) in wire order; swapping the ends swaps
 * the halves. */
static inline uint32_t onvm_fh_swap_ports(uint32_t ports)
{
	return (ports << 16) | (ports >> 16);
}

/* The IPv4 hash of a 5-tuple as it is on the wire (addresses and the port
 * word in network order; ports 0 where none are hashed): the flow
 * director (flow_dir.c) signs its exact keys with it, so a packet's
 * cached hash finds them. */
static inline uint32_t onvm_fh_ipv4_tuple(uint32_t a, uint32_t b, uint32_t ports, uint8_t proto)
{
	uint32_t sa = rte_be_to_cpu_32(a), sb = rte_be_to_cpu_32(b);
	uint16_t pa = (uint16_t)(rte_be_to_cpu_32(ports) >> 16), pb = (uint16_t)rte_be_to_cpu_32(ports);
	if (sa > sb || (sa == sb && pa > pb)) {
		uint32_t t = a; a = b; b = t;
		ports = onvm_fh_swap_ports(ports);
	}
	uint32_t h = rte_hash_crc_4byte(a, proto);
	h = rte_hash_crc_4byte(b, h);
	return rte_hash_crc_4byte(ports, h);
}

static inline uint32_t onvm_fh_ipv4(const uint8_t *p, uint32_t off, uint32_t len)
{
	const uint8_t *ip = p + off;
	uint32_t ihl = (uint32_t)(ip[0] & 0xf) * 4;
	uint8_t proto = ip[9];
	uint16_t frag = onvm_fh_be16(ip + 6) & 0x3fff; /* MF flag and offset */
	uint32_t a = onvm_fh_u32(ip + 12), b = onvm_fh_u32(ip + 16);
	/* IHL < 5 is not a header we can find the ports behind. */
	uint32_t ports = (frag == 0 && ihl >= 20) ? onvm_fh_ports(p, off + ihl, len, proto) : 0;
	return onvm_fh_ipv4_tuple(a, b, ports, proto);
}

static inline uint32_t onvm_fh_ipv6(const uint8_t *p, uint32_t off, uint32_t len)
{
	const uint8_t *ip = p + off;
	uint8_t proto = ip[6];
	uint32_t l4 = off + 40;
	int fragment = 0;
	for (unsigned i = 0; i < ONVM_FH_MAX_EXT; i++) {
		uint32_t ext;
		if (proto == 0 || proto == 43 || proto == 60) {        /* HbH, Routing, DestOpts */
			if (l4 + 2 > len)
				break;
			ext = ((uint32_t)p[l4 + 1] + 1) * 8;
		} else if (proto == 44) {                              /* Fragment */
			if (l4 + 8 > len)
				break;
			fragment |= (onvm_fh_be16(p + l4 + 2) & 0xfff9) != 0; /* offset or M */
			ext = 8;
		} else if (proto == 51) {                              /* AH */
			if (l4 + 2 > len)
				break;
			ext = ((uint32_t)p[l4 + 1] + 2) * 4;
		} else {
			break;
		}
		proto = p[l4];
		l4 += ext;
	}
	uint32_t ports = fragment ? 0 : onvm_fh_ports(p, l4, len, proto);
	/* Order the 16-byte addresses as wholes: (high, low) words compared in
	 * host order is a total order, which is all symmetry needs. */
	uint64_t a0 = onvm_fh_u64(ip + 8), a1 = onvm_fh_u64(ip + 16);
	uint64_t b0 = onvm_fh_u64(ip + 24), b1 = onvm_fh_u64(ip + 32);
	uint16_t pa = (uint16_t)(rte_be_to_cpu_32(ports) >> 16), pb = (uint16_t)rte_be_to_cpu_32(ports);
	if (a0 > b0 || (a0 == b0 && (a1 > b1 || (a1 == b1 && pa > pb)))) {
		uint64_t t0 = a0, t1 = a1;
		a0 = b0; a1 = b1; b0 = t0; b1 = t1;
		ports = onvm_fh_swap_ports(ports);
	}
	uint32_t h = rte_hash_crc_8byte(a0, proto);
	h = rte_hash_crc_8byte(a1, h);
	h = rte_hash_crc_8byte(b0, h);
	h = rte_hash_crc_8byte(b1, h);
	return rte_hash_crc_4byte(ports, h);
}

/* The symmetric flow hash of a frame (see the top of this file). */
static inline uint32_t onvm_flow_hash(const struct rte_mbuf *m)
{
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t len = m->data_len;
	if (unlikely(len < 14))
		return 0;
	uint16_t type = onvm_fh_be16(p + 12);
	uint32_t off = 14;
	for (unsigned i = 0; i < 2; i++) {
		if ((type == 0x8100 || type == 0x88a8 || type == 0x9100) && off + 4 <= len) {
			type = onvm_fh_be16(p + off + 2);
			off += 4;
		}
	}
	if (type == 0x0800 && off + 20 <= len)
		return onvm_fh_ipv4(p, off, len);
	if (type == 0x86dd && off + 40 <= len)
		return onvm_fh_ipv6(p, off, len);
	uint64_t x = 0, y = 0;
	memcpy(&x, p, 6);
	memcpy(&y, p + 6, 6);
	if (x > y) {
		uint64_t t = x; x = y; y = t;
	}
	return rte_hash_crc_8byte(y, rte_hash_crc_8byte(x, type));
}

#endif
