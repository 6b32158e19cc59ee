/* test_shape.c - a statement text's shape (sql/shape.h): which digit runs are free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sql/shape.h"

/* The shape with each free-run marker (NUL) shown as '#'. */
static const char *shape(const char *q, size_t *nruns)
{
	static char out[256];
	long n = sql_shape(q, strlen(q), out, sizeof(out) - 1, nruns);
	assert_true(n >= 0);
	for (long i = 0; i < n; i++)
		if (!out[i])
			out[i] = '#';
	out[n] = 0;
	return out;
}

static void test_free_runs(void **state)
{
	(void)state;
	size_t n;
	assert_string_equal(shape("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;", &n),
			    "SELECT abalance FROM pgbench_accounts WHERE aid = #;");
	assert_int_equal(n, 1);
	/* numbers of any form and digits in strings and comments are free */
	assert_string_equal(shape("x = -1.5 AND d = '2020-01-01' /* 7 */", &n), "x = -#.# AND d = '#-#-#' /* # */");
	assert_int_equal(n, 6);
	/* next to an identifier byte they are not: words, $n, 0x1F, 1e5, 1_000, é1 */
	assert_string_equal(shape("t1.a2 $3 0x1F 1e5 1_000 \xc3\xa9" "1", &n), "t1.a2 $3 0x1F 1e5 1_000 \xc3\xa9" "1");
	assert_int_equal(n, 0);
	assert_string_equal(shape("", &n), "");
	assert_int_equal(n, 0);
	/* texts that differ only in free runs share a shape, whatever the run lengths */
	char a[64], b[64];
	size_t na, nb;
	long la = sql_shape("id IN (1, 22, 333)", 18, a, sizeof(a), &na);
	long lb = sql_shape("id IN (4444, 5, 6)", 18, b, sizeof(b), &nb);
	assert_int_equal(la, lb);
	assert_int_equal(na, 3);
	assert_memory_equal(a, b, (size_t)la);
}

static void test_nul_and_bounds(void **state)
{
	(void)state;
	char out[16];
	size_t n;
	assert_int_equal(sql_shape("a\0b", 3, out, sizeof(out), &n), -1); /* NUL is the marker */
	assert_int_equal(sql_shape("abcdef", 6, out, 5, &n), -1);          /* cap < len */
	/* a long stretch without digits goes by words; a run at the very end */
	const char *q = "select aaaaaaaa, bbbbbbbb, cccccccc from t where x = 9";
	char big[128];
	long l = sql_shape(q, strlen(q), big, strlen(q), &n);
	assert_int_equal(l, (long)strlen(q));
	assert_int_equal(n, 1);
	assert_int_equal(big[l - 1], 0);
}

static void test_variant(void **state)
{
	(void)state;
	char out[64];
	const char *q = "a = 1 AND b1 = '2x' ORDER BY 3";
	long n = sql_shape_variant(q, strlen(q), out, sizeof(out));
	assert_true(n > 0);
	out[n] = 0;
	assert_string_equal(out, "a = 10 AND b1 = '2x' ORDER BY 30");
	assert_int_equal(sql_shape_variant("1 2 3", 5, out, 7), -1); /* needs 8 */
	assert_int_equal(sql_shape_variant("1 2 3", 5, out, 8), 8);
}

/* The trailing comment sqlcommenter adds: found from the end, its bounds exact. */
static void test_tag_tail(void **state)
{
	(void)state;
	const struct {
		const char *q;
		long c0, c1; /* -1: none */
	} cases[] = {
		{"SELECT 1 /*route='%2Fa%2F'*/", 9, 28},
		{"SELECT 1 /*a='b'*/;", 9, 18},
		{"SELECT 1 /*a='b'*/ ;\n", 9, 18},
		{"/**/", 0, 4},
		{"SELECT 1", -1, -1},
		{"SELECT 1 /*a='b'*/ x", -1, -1},     /* not at the end */
		{"SELECT 1 /*a='%2F/'*/", -1, -1},    /* a slash inside */
		{"SELECT 1 /*a*b*/", -1, -1},         /* a star inside */
		{"SELECT 1 */", -1, -1},              /* no opening */
		{"*/", -1, -1},
		{"/*/", -1, -1},
		{"", -1, -1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t c0 = 99, c1 = 99;
		bool found = sql_tag_tail(cases[i].q, strlen(cases[i].q), &c0, &c1);
		assert_int_equal(found, cases[i].c0 >= 0);
		if (found) {
			assert_int_equal(c0, cases[i].c0);
			assert_int_equal(c1, cases[i].c1);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_free_runs),
		cmocka_unit_test(test_nul_and_bounds),
		cmocka_unit_test(test_variant),
		cmocka_unit_test(test_tag_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
