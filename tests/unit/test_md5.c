/* test_md5.c - PostgreSQL's md5 password scheme against values computed outside
 * pgmedic (PostgreSQL's own md5() and Python's hashlib). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <string.h>

#include "pg/md5.h"

/* SELECT 'md5' || md5('secretapp');  -- what PostgreSQL stores for password "secret",
 * role "app".  Computed with Python: "md5" + hashlib.md5(b"secretapp").hexdigest(). */
#define SECRET_APP "md56a422f785c9e20873908ce25d1736ae2"

static void test_secret_known_value(void **state)
{
	char out[PG_MD5_LEN + 1];
	(void)state;

	pg_md5_secret("secret", "app", out);
	assert_string_equal(out, SECRET_APP);
	assert_int_equal(strlen(out), PG_MD5_LEN);

	/* Order matters: password first, then user. */
	pg_md5_secret("app", "secret", out);
	assert_string_not_equal(out, SECRET_APP);
	/* Only the concatenation counts, as in PostgreSQL. */
	pg_md5_secret("secreta", "pp", out);
	assert_string_equal(out, SECRET_APP);
}

static void test_response_known_values(void **state)
{
	/* Python: s = hashlib.md5(b"secretapp").hexdigest()
	 *         "md5" + hashlib.md5(s.encode() + salt).hexdigest()
	 * i.e. what libpq sends for password "secret", user "app" and that salt. */
	static const struct {
		uint8_t salt[4];
		const char *expect;
	} cases[] = {
		{ { 0x01, 0x02, 0x03, 0x04 }, "md5911f527656472583a006e7727877b33e" },
		{ { 0xde, 0xad, 0xbe, 0xef }, "md5293b6595e2bc31835e11a0b106258764" },
		{ { 0x00, 0x00, 0x00, 0x00 }, "md57be55585d74ac76d41fe73c4a558b980" }, /* NULs are data */
	};
	char out[PG_MD5_LEN + 1];
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pg_md5_response(SECRET_APP, cases[i].salt, out);
		assert_string_equal(out, cases[i].expect);
	}
}

static void test_response_refuses_malformed_secret(void **state)
{
	static const char *const bad[] = {
		"",
		"md5",
		"6a422f785c9e20873908ce25d1736ae2",     /* no prefix */
		"MD56a422f785c9e20873908ce25d1736ae2",  /* prefix case */
		"md56A422F785C9E20873908CE25D1736AE2",  /* PostgreSQL requires lowercase */
		"md56a422f785c9e20873908ce25d1736ae",   /* 31 digits */
		"md56a422f785c9e20873908ce25d1736ae2a", /* 33 digits */
		"md56a422f785c9e20873908ce25d1736aeg",  /* not hex */
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$x:y",
		"secret", /* a plaintext password is not a secret */
	};
	static const uint8_t salt[4] = { 1, 2, 3, 4 };
	char out[PG_MD5_LEN + 1];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(out, 'x', sizeof(out));
		pg_md5_response(bad[i], salt, out);
		if (out[0] != '\0')
			fail_msg("answered for malformed secret \"%s\"", bad[i]);
	}
	pg_md5_response(NULL, salt, out);
	assert_string_equal(out, "");
	pg_md5_response(SECRET_APP, NULL, out);
	assert_string_equal(out, "");
	pg_md5_secret(NULL, "app", out);
	assert_string_equal(out, "");
	pg_md5_secret("secret", NULL, out);
	assert_string_equal(out, "");
	/* NULL out is ignored rather than written through. */
	pg_md5_secret("secret", "app", NULL);
	pg_md5_response(SECRET_APP, salt, NULL);
}

static void test_empty_inputs(void **state)
{
	char out[PG_MD5_LEN + 1];
	(void)state;

	/* md5("") = d41d8cd98f00b204e9800998ecf8427e (RFC 1321 appendix A.5). */
	pg_md5_secret("", "", out);
	assert_string_equal(out, "md5d41d8cd98f00b204e9800998ecf8427e");
}

static void test_secure_streq(void **state)
{
	char resp[PG_MD5_LEN + 1];
	static const uint8_t salt[4] = { 1, 2, 3, 4 };
	(void)state;

	pg_md5_response(SECRET_APP, salt, resp);
	assert_int_equal(pg_secure_streq(resp, "md5911f527656472583a006e7727877b33e"), 1);
	assert_int_equal(pg_secure_streq(resp, "md5911f527656472583a006e7727877b33f"), 0);
	assert_int_equal(pg_secure_streq(resp, "Md5911f527656472583a006e7727877b33e"), 0);
	assert_int_equal(pg_secure_streq(resp, "md5911f527656472583a006e7727877b33"), 0);
	assert_int_equal(pg_secure_streq(resp, "md5911f527656472583a006e7727877b33ee"), 0);
	assert_int_equal(pg_secure_streq("abc", "abc"), 1);
	assert_int_equal(pg_secure_streq("abc", "abd"), 0);
	/* Failure values never match each other. */
	assert_int_equal(pg_secure_streq("", ""), 0);
	assert_int_equal(pg_secure_streq(NULL, NULL), 0);
	assert_int_equal(pg_secure_streq(resp, NULL), 0);
	assert_int_equal(pg_secure_streq(NULL, resp), 0);

	/* A failed response (malformed secret) never equals a client's answer. */
	char failed[PG_MD5_LEN + 1];
	pg_md5_response("md5", salt, failed);
	assert_int_equal(pg_secure_streq(failed, resp), 0);
	assert_int_equal(pg_secure_streq(failed, ""), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_known_value),
		cmocka_unit_test(test_response_known_values),
		cmocka_unit_test(test_response_refuses_malformed_secret),
		cmocka_unit_test(test_empty_inputs),
		cmocka_unit_test(test_secure_streq),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
