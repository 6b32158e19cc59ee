/* test_ddl.c - recognizing DROP DATABASE before it is forwarded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sql/ddl.h"

static int target(const char *q, char *out, size_t outlen)
{
	return sql_drop_database_target(q, strlen(q), out, outlen);
}

static void test_plain_forms(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(target("DROP DATABASE test_app", out, sizeof(out)), 1);
	assert_string_equal(out, "test_app");
	assert_int_equal(target("drop database IF EXISTS Test_App;", out, sizeof(out)), 1);
	assert_string_equal(out, "test_app"); /* unquoted identifiers fold to lower case */
	assert_int_equal(target("  /* a /* nested */ comment */ -- line\n DROP\tDATABASE \"My\"\"Db\"", out, sizeof(out)), 1);
	assert_string_equal(out, "My\"Db");
	assert_int_equal(target("DROP DATABASE ifx", out, sizeof(out)), 1);
	assert_string_equal(out, "ifx"); /* IF as an identifier prefix is not the keyword */
	assert_int_equal(target("DROP DATABASE if", out, sizeof(out)), 1);
	assert_string_equal(out, "if");
}

static void test_not_drop_database(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(target("SELECT 1", out, sizeof(out)), 0);
	assert_int_equal(target("DROP TABLE x", out, sizeof(out)), 0);
	assert_int_equal(target("DROPDATABASE x", out, sizeof(out)), 0);
	assert_int_equal(target("DROP DATABASEx", out, sizeof(out)), 0);
	assert_int_equal(target("DROP DATABASE", out, sizeof(out)), 0);
	assert_int_equal(target("DROP DATABASE \"unterminated", out, sizeof(out)), 0);
	assert_int_equal(target("DROP DATABASE \"\"", out, sizeof(out)), 0);
	assert_int_equal(target("/* unterminated comment DROP DATABASE x", out, sizeof(out)), 0);
	assert_int_equal(target("", out, sizeof(out)), 0);
}

static void test_small_output(void **state)
{
	(void)state;
	char out[8];
	assert_int_equal(target("DROP DATABASE abcdefg", out, sizeof(out)), 1);
	assert_string_equal(out, "abcdefg");
	assert_int_equal(target("DROP DATABASE abcdefgh", out, sizeof(out)), 0);
	assert_int_equal(target("DROP DATABASE \"abcdefgh\"", out, sizeof(out)), 0);
	assert_int_equal(target("DROP DATABASE a", out, 0), 0);
}

static void test_every_prefix_is_safe(void **state)
{
	(void)state;
	const char *q = "/* c */ DROP DATABASE IF EXISTS \"x\"\"y\"";
	char out[64];
	size_t n = strlen(q);
	for (size_t i = 0; i <= n; i++) {
		char *copy = malloc(i ? i : 1); /* exact size: ASan catches any overread */
		memcpy(copy, q, i);
		int r = sql_drop_database_target(copy, i, out, sizeof(out));
		assert_true(r == 0 || r == 1);
		if (i == n) {
			assert_int_equal(r, 1);
			assert_string_equal(out, "x\"y");
		}
		free(copy);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_forms),
		cmocka_unit_test(test_not_drop_database),
		cmocka_unit_test(test_small_output),
		cmocka_unit_test(test_every_prefix_is_safe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
