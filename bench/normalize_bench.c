/* normalize_bench.c - normalizations per second on one core: pgmedic's
 * sql_normalize next to libpg_query's pg_query_normalize on the same statements
 * (Django-shaped and pgbench-shaped), measured side by side in one run.
 * The two sides are timed in the same way, in interleaved rounds (7 of 0.3 s
 * each by default, the side that goes first alternating): each side's number is
 * its median round, the ratio is the ratio of the medians, and the spread of
 * the per-round ratios is printed next to it.  (A single timing of each side,
 * one after the other, swung the ratio between 12x and 18x from run to run on a
 * shared machine.)  `make bench-normalize` pins it to one core;
 * `normalize_bench --count N` only normalizes, N times the statements, for
 * callgrind.
 *
 * A second, separate number is the profiler's cached path (src/insight/profile.c
 * resolve()): a text seen before is not normalized again but found by the
 * XXH3_64bits hash of its exact bytes in a direct-mapped table.  That is what a
 * repeating text (a parameterized statement) costs; it is printed on its own line
 * and never mixed into the sql_normalize number.  A third, the shape path: a text
 * with inlined numbers that differ from an earlier text's (psycopg 2) is found by
 * its shape (sql/shape.h): the exact-text hash (the parameter values' hash), the
 * shape, its hash and one probe.  Measured on texts of the same shapes with other
 * numbers, for the statements whose shape the profiler caches (no tags). */
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "sql/normalize.h"
#include "sql/shape.h"

static const char *const stmts[] = {
	"SELECT \"shop_book\".\"id\", \"shop_book\".\"title\", \"shop_book\".\"author_id\" FROM \"shop_book\" "
	"WHERE \"shop_book\".\"author_id\" = 42 ORDER BY \"shop_book\".\"id\" ASC LIMIT 21 "
	"/*controller='shop.views.book_list',route='%2Fbooks%2F'*/",
	"SELECT \"shop_author\".\"id\", \"shop_author\".\"name\", \"shop_author\".\"email\" FROM \"shop_author\" "
	"WHERE \"shop_author\".\"id\" = 7 LIMIT 21 /*controller='shop.views.book_detail',route='%2Fbooks%2F%3Cint%3Apk%3E'*/",
	"SELECT \"shop_book\".\"id\", \"shop_book\".\"title\", \"shop_book\".\"published\", \"shop_book\".\"price\" "
	"FROM \"shop_book\" INNER JOIN \"shop_book_tags\" ON (\"shop_book\".\"id\" = \"shop_book_tags\".\"book_id\") "
	"WHERE (\"shop_book_tags\".\"tag_id\" IN (1, 2, 3, 4, 5) AND \"shop_book\".\"published\" >= '2023-01-01'::date) "
	"ORDER BY \"shop_book\".\"published\" DESC",
	"INSERT INTO \"shop_order\" (\"customer_id\", \"created\", \"total\", \"status\") VALUES (17, "
	"'2024-05-01T10:00:00+00:00'::timestamptz, '19.90', 'new') RETURNING \"shop_order\".\"id\"",
	"UPDATE \"shop_book\" SET \"stock\" = (\"shop_book\".\"stock\" - 1) WHERE \"shop_book\".\"id\" = 1234",
	"SELECT COUNT(*) AS \"__count\" FROM \"shop_review\" WHERE (\"shop_review\".\"book_id\" = 99 AND "
	"\"shop_review\".\"rating\" >= 4)",
	"UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 81234;",
	"SELECT abalance FROM pgbench_accounts WHERE aid = 81234;",
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 81234, -4321, CURRENT_TIMESTAMP);",
};
#define NSTMT (sizeof(stmts) / sizeof(stmts[0]))

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t lens[NSTMT];
static char out[4096];
static volatile uint64_t sink;

/* One batch: every statement once, by one side.  Both sides are timed the same
 * way: whole batches, the clock read between groups of batches. */
static int batch_pgmedic(void)
{
	struct sql_norm res;
	for (size_t i = 0; i < NSTMT; i++) {
		if (sql_normalize(stmts[i], lens[i], out, sizeof(out), &res) != 0)
			return -1;
		sink += res.fingerprint;
	}
	return 0;
}

static int batch_pg_query(void)
{
	for (size_t i = 0; i < NSTMT; i++) {
		PgQueryNormalizeResult r = pg_query_normalize(stmts[i]);
		if (r.error)
			return -1;
		sink += (uint64_t)r.normalized_query[0];
		pg_query_free_normalize_result(r);
	}
	return 0;
}

/* Batches per clock reading: about a millisecond's worth, so that reading the
 * clock costs either side next to nothing. */
static long calibrate(int (*batch)(void))
{
	long k = 1;
	for (;;) {
		double t0 = now();
		for (long j = 0; j < k; j++)
			if (batch() != 0)
				return -1;
		if (now() - t0 >= 1e-3 || k >= (1L << 24))
			return k;
		k *= 2;
	}
}

/* Normalizations per second over one round of about secs seconds. */
static double round_rate(int (*batch)(void), long k, double secs)
{
	long n = 0;
	double t0 = now(), t1;
	do {
		for (long j = 0; j < k; j++)
			if (batch() != 0)
				return -1;
		n += k;
		t1 = now();
	} while (t1 - t0 < secs);
	return (double)n * (double)NSTMT / (t1 - t0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	double s[64];
	memcpy(s, v, (size_t)n * sizeof(*v));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Usage: normalize_bench [seconds per round [rounds]]
 *        normalize_bench --count N   (N batches of sql_normalize only, for callgrind) */
int main(int argc, char **argv)
{
	size_t bytes = 0;
	for (size_t i = 0; i < NSTMT; i++) {
		lens[i] = strlen(stmts[i]);
		bytes += lens[i];
	}
	if (argc > 2 && strcmp(argv[1], "--count") == 0) {
		for (long j = atol(argv[2]); j > 0; j--)
			if (batch_pgmedic() != 0)
				return 1;
		return 0;
	}
	double secs = argc > 1 ? atof(argv[1]) : 0.3;
	int rounds = argc > 2 ? atoi(argv[2]) : 7;
	if (secs <= 0 || rounds < 1 || rounds > 64) {
		fprintf(stderr, "usage: %s [seconds per round [rounds 1..64]] | --count N\n", argv[0]);
		return 2;
	}
	struct sql_norm res;
	long n;
	double t0, t1;

	/* Rounds alternate the two sides, and which goes first, so that a slow
	 * patch of the machine (or a frequency change) falls on both; each side's
	 * median round is its number.  Caches and branch predictors are warmed by
	 * the calibration of each side. */
	long k_ours = calibrate(batch_pgmedic), k_theirs = calibrate(batch_pg_query);
	if (k_ours < 0 || k_theirs < 0)
		return 1;
	double r_ours[64], r_theirs[64], ratio[64];
	for (int r = 0; r < rounds; r++) {
		if (r % 2 == 0) {
			r_ours[r] = round_rate(batch_pgmedic, k_ours, secs);
			r_theirs[r] = round_rate(batch_pg_query, k_theirs, secs);
		} else {
			r_theirs[r] = round_rate(batch_pg_query, k_theirs, secs);
			r_ours[r] = round_rate(batch_pgmedic, k_ours, secs);
		}
		if (r_ours[r] < 0 || r_theirs[r] < 0)
			return 1;
		ratio[r] = r_ours[r] / r_theirs[r];
	}
	double ours = median(r_ours, rounds), theirs = median(r_theirs, rounds);
	double rmin = ratio[0], rmax = ratio[0];
	for (int r = 1; r < rounds; r++) {
		rmin = ratio[r] < rmin ? ratio[r] : rmin;
		rmax = ratio[r] > rmax ? ratio[r] : rmax;
	}

	/* cached path: XXH3_64bits over the statement's text, then one probe of a
	 * direct-mapped table (as the profiler's cache: PROF_CACHE 2048 entries, the
	 * hash with its low bit set, hit when hash and length match) */
	enum { CACHE = 2048 };
	static struct {
		uint64_t h, fp;
		size_t len;
	} cache[CACHE];
	for (size_t i = 0; i < NSTMT; i++) {
		uint64_t h = XXH3_64bits(stmts[i], lens[i]) | 1;
		if (sql_normalize(stmts[i], lens[i], out, sizeof(out), &res) != 0)
			return 1;
		cache[h & (CACHE - 1)].h = h;
		cache[h & (CACHE - 1)].len = lens[i];
		cache[h & (CACHE - 1)].fp = res.fingerprint;
	}
	long c = 0, misses = 0;
	t0 = now();
	do {
		for (int rep = 0; rep < 1000; rep++)
			for (size_t i = 0; i < NSTMT; i++) {
				uint64_t h = XXH3_64bits(stmts[i], lens[i]) | 1;
				size_t slot = h & (CACHE - 1);
				if (cache[slot].h == h && cache[slot].len == lens[i])
					sink += cache[slot].fp;
				else
					misses++;
			}
		c += 1000 * (long)NSTMT;
		t1 = now();
	} while (t1 - t0 < secs);
	double cached = (double)c / (t1 - t0);
	if (misses)
		return 1;

	/* shape path: texts of the same shapes with other numbers (a 0 appended to
	 * each free digit run), for the statements whose shape the profiler caches */
	static char other[NSTMT][4096];
	size_t olen[NSTMT], nshape = 0, shaped[NSTMT];
	static struct {
		uint64_t h, fp;
		size_t len;
	} scache[CACHE];
	char shape[4096], out2[4096];
	for (size_t i = 0; i < NSTMT; i++) {
		size_t runs;
		long vl = sql_shape_variant(stmts[i], lens[i], other[i], sizeof(other[i]));
		long sl = sql_shape(stmts[i], lens[i], shape, sizeof(shape), &runs);
		struct sql_norm r2;
		if (vl < 0 || sl < 0 || !runs || sql_normalize(stmts[i], lens[i], out, sizeof(out), &res) != 0 ||
		    sql_normalize(other[i], (size_t)vl, out2, sizeof(out2), &r2) != 0)
			return 1;
		if (res.ntags || r2.ntags || r2.len != res.len || memcmp(out, out2, res.len) != 0)
			continue; /* the profiler normalizes these every time */
		olen[i] = (size_t)vl;
		shaped[nshape++] = i;
		uint64_t h = XXH3_64bits_withSeed(shape, (size_t)sl, 0x5348415045ull) | 1;
		scache[h & (CACHE - 1)].h = h;
		scache[h & (CACHE - 1)].len = (size_t)sl;
		scache[h & (CACHE - 1)].fp = res.fingerprint;
	}
	long sc = 0;
	t0 = now();
	do {
		for (int rep = 0; rep < 1000; rep++)
			for (size_t k = 0; k < nshape; k++) {
				size_t i = shaped[k], runs;
				sink += XXH3_64bits(other[i], olen[i]); /* the parameter values' hash */
				long sl = sql_shape(other[i], olen[i], shape, sizeof(shape), &runs);
				uint64_t h = XXH3_64bits_withSeed(shape, (size_t)sl, 0x5348415045ull) | 1;
				size_t slot = h & (CACHE - 1);
				if (scache[slot].h == h && scache[slot].len == (size_t)sl)
					sink += scache[slot].fp;
				else
					misses++;
			}
		sc += 1000 * (long)nshape;
		t1 = now();
	} while (nshape && t1 - t0 < secs);
	double shaped_rate = (double)sc / (t1 - t0);
	if (misses)
		return 1;
	printf("statements: %zu (avg %zu bytes)\n", NSTMT, bytes / NSTMT);
	printf("%d rounds of %.2f s per side, interleaved; medians:\n", rounds, secs);
	printf("pgmedic sql_normalize:        %12.0f norm/s  (%.0f MB/s)\n", ours, ours * (double)bytes / NSTMT / 1e6);
	printf("libpg_query pg_query_normalize: %10.0f norm/s\n", theirs);
	printf("ratio: %.1fx  (ratio of medians; per round %.1fx .. %.1fx)\n", ours / theirs, rmin, rmax);
	printf("cached path (repeated text, not normalized: XXH3_64bits + table lookup):\n");
	printf("pgmedic cache lookup:         %12.0f lookups/s  (%.1fx pg_query_normalize)\n", cached, cached / theirs);
	printf("shape path (other numbers, not normalized: %zu of the %zu statements; those with tags are normalized):\n",
	       nshape, NSTMT);
	printf("pgmedic shape lookup:         %12.0f lookups/s  (%.1fx pg_query_normalize)\n", shaped_rate,
	       shaped_rate / theirs);
	for (size_t i = 0; i < NSTMT; i++) {
		const char *s = stmts[i];
		size_t l = lens[i];
		n = 0;
		t0 = now();
		do {
			for (int rep = 0; rep < 10000; rep++) {
				if (sql_normalize(s, l, out, sizeof(out), &res) != 0)
					return 1;
				sink += res.fingerprint;
			}
			n += 10000;
			t1 = now();
		} while (t1 - t0 < secs / 3);
		printf("  %10.0f norm/s  %.60s...\n", (double)n / (t1 - t0), s);
	}
	(void)sink;
	return 0;
}
