/* onvm_pace.h: the pacing arithmetic of the generate NF (native_nfs.c).
 * Kept apart, with no DPDK in sight, so a test can compile it alone and
 * feed it elapsed times that a real run would need years to reach. */
#ifndef ONVM_PACE_H
#define ONVM_PACE_H

#include <stdint.h>

#define ONVM_NS_PER_S 1000000000ull

/* How many packets a generator at `rate` packets/s owes after `elapsed_ns`:
 * floor(elapsed_ns * rate / 1e9), exact, saturating at UINT64_MAX.
 * The product elapsed_ns * rate passes 2^64 after 30 minutes at 10 Mpps,
 * so whole seconds and the nanosecond remainder go separately; the
 * remainder's product (< 1e9 * rate) gets 128 bits in case rate is huge. */
static inline uint64_t onvm_pace_due(uint64_t elapsed_ns, uint64_t rate)
{
	uint64_t secs = elapsed_ns / ONVM_NS_PER_S, ns = elapsed_ns % ONVM_NS_PER_S;
	uint64_t whole, part = (uint64_t)((unsigned __int128)ns * rate / ONVM_NS_PER_S), due;
	if (__builtin_mul_overflow(secs, rate, &whole) || __builtin_add_overflow(whole, part, &due))
		return UINT64_MAX;
	return due;
}

#endif /* ONVM_PACE_H */
