/* flow_hash_harness.c: onvm_flow_hash (onvm/core/flow_hash.h) on frames read
 * from stdin, built by tests/test_fuzz.py with AddressSanitizer.  Each frame
 * sits in a heap block of exactly its length, so reading one byte past
 * data_len stops the run with a report.
 * Input: frames as [length: u16, host order][bytes].  Output: one u32 hash
 * per frame, host order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_mbuf.h>

#include "flow_hash.h"

int main(void)
{
	uint16_t len;
	while (fread(&len, sizeof(len), 1, stdin) == 1) {
		uint8_t *frame = malloc(len ? len : 1);
		if (frame == NULL || fread(frame, 1, len, stdin) != len) {
			fprintf(stderr, "short input\n");
			return 2;
		}
		struct rte_mbuf m;
		memset(&m, 0, sizeof(m));
		m.buf_addr = frame;
		m.data_off = 0;
		m.data_len = len;
		m.pkt_len = len;
		m.nb_segs = 1;
		uint32_t h = onvm_flow_hash(&m);
		free(frame);
		if (fwrite(&h, sizeof(h), 1, stdout) != 1)
			return 3;
	}
	return 0;
}
