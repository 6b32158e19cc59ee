/* hist.c - quantiles over the log-linear histogram (see hist.h). */
#include "core/hist.h"

#include <math.h>

uint64_t hist_bucket_low(unsigned i)
{
	if (i < HIST_EXACT)
		return i;
	unsigned j = i - HIST_EXACT;
	unsigned k = j / (1u << HIST_SUB_BITS) + HIST_SUB_BITS + 1;
	uint64_t sub = j % (1u << HIST_SUB_BITS);
	return ((1ull << HIST_SUB_BITS) + sub) << (k - HIST_SUB_BITS);
}

uint64_t hist_bucket_width(unsigned i)
{
	if (i < HIST_EXACT)
		return 1;
	unsigned k = (i - HIST_EXACT) / (1u << HIST_SUB_BITS) + HIST_SUB_BITS + 1;
	return 1ull << (k - HIST_SUB_BITS);
}

static double midpoint(unsigned i)
{
	if (i < HIST_EXACT)
		return (double)i;
	return (double)hist_bucket_low(i) + (double)(hist_bucket_width(i) - 1) / 2.0;
}

double hist_quantile(const struct hist *h, double q)
{
	if (!h->count)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	uint64_t rank = (uint64_t)ceil(q * (double)h->count);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank)
			return midpoint(i);
	}
	return midpoint(HIST_BUCKETS - 1);
}

uint64_t hist_count_le(const struct hist *h, double le)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		if (midpoint(i) > le)
			break;
		n += h->b[i];
	}
	return n;
}

void hist_merge(struct hist *into, const struct hist *from)
{
	into->count += from->count;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->b[i] += from->b[i];
}
