/* hist.h - a log-linear latency histogram (microseconds) with bounded relative
 * error: values below 64 µs are exact; above, each power of two is split into 32
 * linear buckets and a bucket reports its midpoint, so any reported quantile is
 * within 1/64 (1.6 %) of a value in the bucket.  Fixed size (HIST_BUCKETS
 * counters), no allocation after creation; recording is a shift, a clz and an add. */
#ifndef PGMEDIC_HIST_H
#define PGMEDIC_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5                              /* 32 linear buckets per power of two */
#define HIST_EXACT (2u << HIST_SUB_BITS)             /* 0..63 µs recorded exactly */
#define HIST_MAX_LOG2 40                             /* ~12.7 days; larger values are clamped */
#define HIST_BUCKETS (HIST_EXACT + (HIST_MAX_LOG2 - HIST_SUB_BITS) * (1u << HIST_SUB_BITS))

struct hist {
	uint64_t count;
	uint32_t b[HIST_BUCKETS];
};

static inline unsigned hist_bucket(uint64_t v)
{
	if (v < HIST_EXACT)
		return (unsigned)v;
	unsigned k = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS + 1 */
	if (k >= HIST_MAX_LOG2)
		return HIST_BUCKETS - 1;
	unsigned sub = (unsigned)(v >> (k - HIST_SUB_BITS)) & ((1u << HIST_SUB_BITS) - 1);
	return HIST_EXACT + (k - HIST_SUB_BITS - 1) * (1u << HIST_SUB_BITS) + sub;
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	h->count++;
	h->b[hist_bucket(v)]++;
}

/* Lowest value of bucket i, and its width. */
uint64_t hist_bucket_low(unsigned i);
uint64_t hist_bucket_width(unsigned i);
/* The value at quantile q (0..1), as the midpoint of its bucket; 0 when empty.
 * Nearest-rank: the smallest recorded value with at least q of all values <= it. */
double hist_quantile(const struct hist *h, double q);
/* How many recorded values are <= le (bucket-exact when le is a bucket boundary;
 * otherwise buckets are counted whole when their midpoint is <= le). */
uint64_t hist_count_le(const struct hist *h, double le);
void hist_merge(struct hist *into, const struct hist *from);

#endif
