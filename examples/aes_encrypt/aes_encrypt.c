/* aes_encrypt: encrypts the payload of every UDP and TCP packet with
 * AES-128 in counter mode (the length stays the same), the CPU-heavy NF.
 * Counter mode is its own inverse: a second aes_encrypt with the same key
 * decrypts.  Built with -DAES_OPENSSL -lcrypto it uses OpenSSL's libcrypto;
 * without, the small AES below.  Argument: the key as 32 hex digits
 * (default 000102...0f).  Counters: 0 packets, 1 payload bytes.
 *
 * The counter block is taken from the packet (addresses, ports, IP ID):
 * enough to show the cost of encryption, not a protocol to protect data
 * with (a repeated IP ID repeats the key stream). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onvm/nflib.h>

#ifdef AES_OPENSSL
#include <openssl/evp.h>
#endif

struct aes {
	uint8_t key[16];
#ifdef AES_OPENSSL
	EVP_CIPHER_CTX *ctx;
#else
	uint8_t round_key[176];
#endif
};

#ifndef AES_OPENSSL
/* ---- a small AES-128 (encryption only: counter mode needs no more) ---- */
static uint8_t sbox[256];

static uint8_t gf_mul(uint8_t a, uint8_t b)
{
	uint8_t p = 0;
	while (b) {
		if (b & 1)
			p ^= a;
		a = (uint8_t)((a << 1) ^ ((a & 0x80) ? 0x1b : 0));
		b >>= 1;
	}
	return p;
}

static uint8_t rotl8(uint8_t x, int n) { return (uint8_t)((x << n) | (x >> (8 - n))); }

/* The S-box from its definition: the inverse in GF(2^8), then the affine map. */
static void make_sbox(void)
{
	for (int x = 0; x < 256; x++) {
		uint8_t inv = 0;
		for (int y = 1; x && y < 256; y++)
			if (gf_mul((uint8_t)x, (uint8_t)y) == 1) {
				inv = (uint8_t)y;
				break;
			}
		sbox[x] = inv ^ rotl8(inv, 1) ^ rotl8(inv, 2) ^ rotl8(inv, 3) ^ rotl8(inv, 4) ^ 0x63;
	}
}

static void expand_key(const uint8_t key[16], uint8_t rk[176])
{
	uint8_t rcon = 1;
	memcpy(rk, key, 16);
	for (int i = 16; i < 176; i += 4) {
		uint8_t t[4] = {rk[i - 4], rk[i - 3], rk[i - 2], rk[i - 1]};
		if (i % 16 == 0) {
			uint8_t first = t[0];
			t[0] = sbox[t[1]] ^ rcon;
			t[1] = sbox[t[2]];
			t[2] = sbox[t[3]];
			t[3] = sbox[first];
			rcon = gf_mul(rcon, 2);
		}
		for (int k = 0; k < 4; k++)
			rk[i + k] = rk[i - 16 + k] ^ t[k];
	}
}

static void encrypt_block(const uint8_t rk[176], const uint8_t in[16], uint8_t out[16])
{
	uint8_t s[16], t[16];
	for (int i = 0; i < 16; i++)
		s[i] = in[i] ^ rk[i];
	for (int round = 1; round <= 10; round++) {
		/* SubBytes and ShiftRows: byte (row r, column c) is s[r + 4c] */
		for (int c = 0; c < 4; c++)
			for (int r = 0; r < 4; r++)
				t[r + 4 * c] = sbox[s[r + 4 * ((c + r) % 4)]];
		if (round < 10) { /* MixColumns */
			for (int c = 0; c < 4; c++) {
				uint8_t *a = &t[4 * c], a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
				s[4 * c + 0] = gf_mul(a0, 2) ^ gf_mul(a1, 3) ^ a2 ^ a3;
				s[4 * c + 1] = a0 ^ gf_mul(a1, 2) ^ gf_mul(a2, 3) ^ a3;
				s[4 * c + 2] = a0 ^ a1 ^ gf_mul(a2, 2) ^ gf_mul(a3, 3);
				s[4 * c + 3] = gf_mul(a0, 3) ^ a1 ^ a2 ^ gf_mul(a3, 2);
			}
		} else {
			memcpy(s, t, 16);
		}
		for (int i = 0; i < 16; i++)
			s[i] ^= rk[16 * round + i];
	}
	memcpy(out, s, 16);
}
#endif

/* Encrypt (or decrypt) len bytes in place, counter block iv. */
static int aes_ctr(struct aes *a, const uint8_t iv[16], uint8_t *data, uint32_t len)
{
#ifdef AES_OPENSSL
	int out = 0;
	if (!EVP_EncryptInit_ex(a->ctx, NULL, NULL, NULL, iv) || !EVP_EncryptUpdate(a->ctx, data, &out, data, (int)len))
		return -EIO;
	return 0;
#else
	uint8_t ctr[16], ks[16];
	memcpy(ctr, iv, 16);
	for (uint32_t off = 0; off < len; off += 16) {
		encrypt_block(a->round_key, ctr, ks);
		for (uint32_t i = 0; i < 16 && off + i < len; i++)
			data[off + i] ^= ks[i];
		for (int i = 15; i >= 0 && ++ctr[i] == 0; i--) /* the counter: big-endian, as OpenSSL's */
			;
	}
	return 0;
#endif
}

/* FIPS-197's AES-128 example: the cipher must give its answer before the
 * NF takes a packet. */
static int self_test(struct aes *a)
{
	static const uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	static const uint8_t plain[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
					  0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	static const uint8_t cipher[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
					   0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a};
	struct aes t;
	uint8_t zero[16] = {0}, block[16];
	memset(&t, 0, sizeof(t));
	memcpy(t.key, key, 16);
#ifdef AES_OPENSSL
	t.ctx = a->ctx;
	if (!EVP_EncryptInit_ex(t.ctx, EVP_aes_128_ctr(), NULL, key, NULL))
		return -EIO;
#else
	(void)a;
	expand_key(key, t.round_key);
#endif
	/* counter mode on the plaintext as counter block: the first key stream
	 * block is AES(plain); encrypting zeros shows it */
	memcpy(block, zero, 16);
	if (aes_ctr(&t, plain, block, 16) < 0)
		return -EIO;
	return memcmp(block, cipher, 16) == 0 ? 0 : -EPROTO;
}

static int aes_init(struct onvm_nf *nf, void *state, int argc, char **argv)
{
	struct aes *a = state;
	(void)nf;
	for (int i = 0; i < 16; i++)
		a->key[i] = (uint8_t)i;
	if (argc > 1) {
		if (strlen(argv[1]) != 32)
			return -EINVAL;
		for (int i = 0; i < 16; i++) {
			char hex[3] = {argv[1][2 * i], argv[1][2 * i + 1], 0};
			char *end;
			a->key[i] = (uint8_t)strtoul(hex, &end, 16);
			if (*end)
				return -EINVAL;
		}
	}
#ifdef AES_OPENSSL
	a->ctx = EVP_CIPHER_CTX_new();
	if (a->ctx == NULL)
		return -ENOMEM;
#else
	make_sbox();
#endif
	int ret = self_test(a);
	if (ret < 0) {
		fprintf(stderr, "aes_encrypt: the AES self-test failed\n");
		return ret;
	}
#ifdef AES_OPENSSL
	if (!EVP_EncryptInit_ex(a->ctx, EVP_aes_128_ctr(), NULL, a->key, NULL))
		return -EIO;
	printf("aes_encrypt: AES-128-CTR from OpenSSL's libcrypto, self-test passed\n");
#else
	expand_key(a->key, a->round_key);
	printf("aes_encrypt: AES-128-CTR (built-in), self-test passed\n");
#endif
	fflush(stdout);
	return 0;
}

static int encrypt_pkt(struct onvm_pkt *pkt, struct onvm_verdict *v, void *state)
{
	uint32_t len;
	uint8_t *payload = onvm_pkt_payload(pkt, &len);
	const struct rte_ipv4_hdr *ip = onvm_pkt_ipv4(pkt);
	const void *udp = onvm_pkt_udp(pkt), *tcp = onvm_pkt_tcp(pkt);
	if (payload && len && ip && (udp || tcp)) {
		uint8_t iv[16] = {0};
		memcpy(iv, &ip->src_addr, 4);
		memcpy(iv + 4, &ip->dst_addr, 4);
		memcpy(iv + 8, udp ? udp : tcp, 4); /* the ports: the first 4 bytes of either header */
		memcpy(iv + 12, &ip->packet_id, 2);
		if (aes_ctr(state, iv, payload, len) < 0)
			return -EIO;
		onvm_count(0, 1);
		onvm_count(1, len);
	}
	return onvm_next(v);
}

static void aes_fini(struct onvm_nf *nf, void *state)
{
	(void)nf;
#ifdef AES_OPENSSL
	EVP_CIPHER_CTX_free(((struct aes *)state)->ctx);
#else
	(void)state;
#endif
}

ONVM_NF_DEF(.name = "aes_encrypt", .handler = encrypt_pkt, .state_size = sizeof(struct aes), .init = aes_init,
	    .fini = aes_fini)
