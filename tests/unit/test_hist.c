/* test_hist.c - the latency histogram: bucket layout and quantile error bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "core/hist.h"

static void test_buckets_contiguous(void **state)
{
	(void)state;
	/* Every bucket starts where the previous one ended, and values map back. */
	for (unsigned i = 1; i < HIST_BUCKETS; i++)
		assert_true(hist_bucket_low(i) == hist_bucket_low(i - 1) + hist_bucket_width(i - 1));
	for (uint64_t v = 0; v < 200000; v += 7) {
		unsigned b = hist_bucket(v);
		assert_true(hist_bucket_low(b) <= v);
		assert_true(v < hist_bucket_low(b) + hist_bucket_width(b));
	}
	assert_int_equal(hist_bucket(0), 0);
	assert_int_equal(hist_bucket(63), 63);
	assert_int_equal(hist_bucket(64), 64);
	assert_int_equal(hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Quantiles of random log-uniform samples against the exact nearest-rank value. */
static void test_quantile_error(void **state)
{
	(void)state;
	srand(7);
	for (int round = 0; round < 20; round++) {
		size_t n = 1 + (size_t)(rand() % 5000);
		uint64_t *v = malloc(n * sizeof(*v));
		struct hist *h = calloc(1, sizeof(*h));
		assert_non_null(v);
		assert_non_null(h);
		for (size_t i = 0; i < n; i++) {
			double e = (double)rand() / RAND_MAX * 30.0; /* 1 µs .. ~18 min */
			v[i] = (uint64_t)exp2(e);
			hist_add(h, v[i]);
		}
		qsort(v, n, sizeof(*v), cmp_u64);
		const double qs[] = {0, 0.5, 0.9, 0.95, 0.99, 0.999, 1};
		for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
			size_t rank = (size_t)ceil(qs[k] * (double)n);
			if (rank < 1)
				rank = 1;
			double exact = (double)v[rank - 1];
			double got = hist_quantile(h, qs[k]);
			assert_true(fabs(got - exact) <= exact / 64.0 + 0.5);
		}
		assert_true(h->count == n);
		free(v);
		free(h);
	}
}

static void test_empty_and_merge(void **state)
{
	(void)state;
	struct hist *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	assert_true(hist_quantile(a, 0.5) == 0);
	for (int i = 1; i <= 100; i++)
		hist_add(a, (uint64_t)i * 1000);
	for (int i = 101; i <= 200; i++)
		hist_add(b, (uint64_t)i * 1000);
	hist_merge(a, b);
	assert_true(a->count == 200);
	double p50 = hist_quantile(a, 0.5);
	assert_true(fabs(p50 - 100000) <= 100000 / 64.0);
	assert_true(hist_count_le(a, 1e12) == 200);
	assert_true(hist_count_le(a, 0) == 0);
	uint64_t le = hist_count_le(a, 50500);
	assert_true(le >= 49 && le <= 51);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets_contiguous),
		cmocka_unit_test(test_quantile_error),
		cmocka_unit_test(test_empty_and_merge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
