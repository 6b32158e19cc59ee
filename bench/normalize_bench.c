/* normalize_bench.c - normalizations per second on one core: pgmedic's
 * sql_normalize next to libpg_query's pg_query_normalize on the same statements
 * (Django-shaped and pgbench-shaped), measured side by side in one run.
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

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	size_t lens[NSTMT], bytes = 0;
	for (size_t i = 0; i < NSTMT; i++) {
		lens[i] = strlen(stmts[i]);
		bytes += lens[i];
	}
	char out[4096];
	struct sql_norm res;
	volatile uint64_t sink = 0;

	/* pgmedic */
	long n = 0;
	double t0 = now(), t1;
	do {
		for (int rep = 0; rep < 1000; rep++)
			for (size_t i = 0; i < NSTMT; i++) {
				if (sql_normalize(stmts[i], lens[i], out, sizeof(out), &res) != 0)
					return 1;
				sink += res.fingerprint;
			}
		n += 1000 * (long)NSTMT;
		t1 = now();
	} while (t1 - t0 < secs);
	double ours = (double)n / (t1 - t0);

	/* libpg_query */
	long m = 0;
	t0 = now();
	do {
		for (size_t i = 0; i < NSTMT; i++) {
			PgQueryNormalizeResult r = pg_query_normalize(stmts[i]);
			if (r.error)
				return 1;
			sink += (uint64_t)r.normalized_query[0];
			pg_query_free_normalize_result(r);
		}
		m += (long)NSTMT;
		t1 = now();
	} while (t1 - t0 < secs);
	double theirs = (double)m / (t1 - t0);

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
	printf("pgmedic sql_normalize:        %12.0f norm/s  (%.0f MB/s)\n", ours, ours * (double)bytes / NSTMT / 1e6);
	printf("libpg_query pg_query_normalize: %10.0f norm/s\n", theirs);
	printf("ratio: %.1fx\n", ours / theirs);
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
		} while (t1 - t0 < secs / 10);
		printf("  %10.0f norm/s  %.60s...\n", (double)n / (t1 - t0), s);
	}
	(void)sink;
	return 0;
}
