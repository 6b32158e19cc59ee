/* test_session.c - recognizing statements that leave session state behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sql/session.h"

static unsigned st(const char *q) { return sql_session_state(q, strlen(q)); }

static void test_set(void **state)
{
	(void)state;
	assert_int_equal(st("SET search_path TO app, public"), SESS_SET);
	assert_int_equal(st("set session statement_timeout = '5s'"), SESS_SET);
	assert_int_equal(st("SET LOCAL statement_timeout = 0"), 0);
	assert_int_equal(st("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), 0);
	assert_int_equal(st("SET CONSTRAINTS ALL DEFERRED"), 0);
	/* reported parameters follow the client through ParameterStatus */
	assert_int_equal(st("SET TIME ZONE 'UTC'"), 0);
	assert_int_equal(st("SET application_name = 'x'"), 0);
	assert_int_equal(st("SET DateStyle TO ISO"), 0);
	assert_int_equal(st("SET ROLE admin"), SESS_ROLE);
	assert_int_equal(st("SET SESSION AUTHORIZATION bob"), SESS_ROLE);
	assert_int_equal(st("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"), SESS_SET);
}

static void test_other_statements(void **state)
{
	(void)state;
	assert_int_equal(st("LISTEN jobs"), SESS_LISTEN);
	assert_int_equal(st("UNLISTEN *"), 0);
	assert_int_equal(st("DECLARE c CURSOR WITH HOLD FOR SELECT 1"), SESS_HOLD_CURSOR);
	assert_int_equal(st("DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1"), 0);
	assert_int_equal(st("DECLARE c CURSOR FOR SELECT 'WITH HOLD'"), 0);
	assert_int_equal(st("CREATE TEMP TABLE t (a int)"), SESS_TEMP);
	assert_int_equal(st("create global temporary table t (a int)"), SESS_TEMP);
	assert_int_equal(st("CREATE OR REPLACE TEMP VIEW v AS SELECT 1"), SESS_TEMP);
	assert_int_equal(st("CREATE TABLE temp (a int)"), 0);
	assert_int_equal(st("PREPARE p AS SELECT 1"), SESS_PREPARE);
	assert_int_equal(st("SELECT pg_advisory_lock(42)"), SESS_ADVISORY);
	assert_int_equal(st("select 1 where PG_TRY_ADVISORY_LOCK_SHARED(1, 2)"), SESS_ADVISORY);
	assert_int_equal(st("SELECT pg_advisory_xact_lock(42)"), 0);
	assert_int_equal(st("SELECT pg_advisory_unlock(42)"), 0);
	assert_int_equal(st("SELECT * FROM t WHERE a = 1"), 0);
	assert_int_equal(st("SELECT set_config('search_path', 'x', false)"), SESS_SET);
	assert_int_equal(st("SELECT set_config('TimeZone', 'UTC', false)"), 0); /* Django's */
	assert_int_equal(st("DO $$ BEGIN PERFORM 1; END $$"), SESS_SET);
	assert_int_equal(st(""), 0);
}

static void test_quoting_and_multi_statements(void **state)
{
	(void)state;
	assert_int_equal(st("SELECT 'pg_advisory_lock(1)'"), 0);
	assert_int_equal(st("SELECT \"pg_advisory_lock\" FROM t"), 0);
	assert_int_equal(st("SELECT $$ LISTEN x; SET a = 1 $$"), 0);
	assert_int_equal(st("SELECT $f$ ; LISTEN x $f$; SELECT 1"), 0);
	assert_int_equal(st("/* LISTEN x */ SELECT 1 -- ; LISTEN y\n"), 0);
	assert_int_equal(st("SELECT E'it\\'s; LISTEN x'"), 0);
	assert_int_equal(st("BEGIN; SET search_path = x; COMMIT"), SESS_SET);
	assert_int_equal(st("SELECT 1; LISTEN a; CREATE TEMP TABLE t(a int)"), SESS_LISTEN | SESS_TEMP);
	assert_string_equal(sess_state_name(SESS_LISTEN | SESS_TEMP), "LISTEN");
	assert_string_equal(sess_state_name(0), "none");
}

static void test_parse_set(void **state)
{
	(void)state;
	struct sql_set ps;
	const char *q = "SET search_path TO \"My Schema\", public";
	assert_int_equal(sql_parse_set(q, strlen(q), &ps), 1);
	assert_int_equal(ps.kind, SQL_SET);
	assert_string_equal(ps.name, "search_path");
	assert_int_equal(ps.value_len, strlen("\"My Schema\", public"));
	assert_memory_equal(ps.value, "\"My Schema\", public", ps.value_len);
	q = "set session Statement_Timeout = '5s';";
	assert_int_equal(sql_parse_set(q, strlen(q), &ps), 1);
	assert_string_equal(ps.name, "statement_timeout");
	assert_memory_equal(ps.value, "'5s'", ps.value_len);
	q = "SET my.flag = 'a;b'";
	assert_int_equal(sql_parse_set(q, strlen(q), &ps), 1);
	assert_string_equal(ps.name, "my.flag");
	assert_memory_equal(ps.value, "'a;b'", ps.value_len);
	q = "RESET work_mem";
	assert_int_equal(sql_parse_set(q, strlen(q), &ps), 1);
	assert_int_equal(ps.kind, SQL_RESET);
	q = "reset all";
	assert_int_equal(sql_parse_set(q, strlen(q), &ps), 1);
	assert_int_equal(ps.kind, SQL_RESET_ALL);
	/* not replayable: left to sql_session_state (pin) or followed elsewhere */
	q = "SET work_mem TO DEFAULT";
	assert_int_equal(sql_parse_set(q, strlen(q), &ps), 1);
	assert_int_equal(ps.kind, SQL_RESET);
	assert_int_equal(ps.tracked, -1);
	q = "RESET application_name";
	assert_int_equal(sql_parse_set(q, strlen(q), &ps), 1);
	assert_int_equal(ps.tracked, 5);
	const char *no[] = {"SET LOCAL work_mem = '1MB'", "SET TIME ZONE 'UTC'", "SET ROLE x",
			    "SET SESSION AUTHORIZATION x", "SET application_name = 'x'", "SET a = 1; SET b = 2",
			    "SET a = 1; SELECT 1", "SET a", "SET a TO", "SELECT 1", "SET TRANSACTION READ ONLY", ""};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_int_equal(sql_parse_set(no[i], strlen(no[i]), &ps), 0);
}

static void test_every_prefix_is_safe(void **state)
{
	(void)state;
	const char *q = "/* c */ SET x = $t$a;b$t$; DECLARE c CURSOR WITH HOLD FOR SELECT E'\\'' , \"q\"\"\" ;";
	size_t n = strlen(q);
	for (size_t i = 0; i <= n; i++) {
		char *copy = malloc(i ? i : 1); /* exact size: ASan catches any overread */
		memcpy(copy, q, i);
		(void)sql_session_state(copy, i);
		struct sql_set ps;
		(void)sql_parse_set(copy, i, &ps);
		free(copy);
	}
	assert_int_equal(st(q), SESS_SET | SESS_HOLD_CURSOR);
}

/* The quick look (most ORM statements end there) gives the full scan's answer. */
static void test_quick_look_agrees_with_full_scan(void **state)
{
	(void)state;
	const struct {
		const char *q;
		unsigned bits;
	} cases[] = {
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 42;", 0},
		{"SELECT \"books_book\".\"author_id\" FROM \"books_book\" WHERE \"books_book\".\"id\" = 1", 0},
		{"select 1;  \n ;", 0},
		{"SELECT PG_ADVISORY_LOCK(1);", SESS_ADVISORY},
		{"SELECT pg_try_advisory_lock(1)", SESS_ADVISORY},
		{"SELECT pg_advisory_lock_x(1)", 0},
		{"SELECT Set_Config('search_path', 'x', false)", SESS_SET},
		{"SELECT 1; SET x = 1", SESS_SET},
		{"SELECT 1;LISTEN x", SESS_LISTEN},
		{"  SeT x = 1", SESS_SET},
		{"\tlisten x", SESS_LISTEN},
		{"Declare c cursor with hold for select 1", SESS_HOLD_CURSOR},
		{"CREATE TEMP TABLE t (a int)", SESS_TEMP},
		{"prepare p as select 1", SESS_PREPARE},
		{"do $$ begin end $$", SESS_SET},
		{"/* x */ SET x = 1", SESS_SET},
		{"-- x\nLISTEN y", SESS_LISTEN},
		{"settle", 0},
		{"created", 0},
		{"SELECT 'x_advisory' FROM t", 0},
		{"SELECT 1 FROM t WHERE x = 'a;b'", 0},
		{"_", 0},
		{"set_", 0},
		{"a_advisor", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *q = cases[i].q;
		size_t n = strlen(q);
		assert_int_equal(sql_session_state(q, n), cases[i].bits);
		assert_int_equal(sql_session_state_scan(q, n), cases[i].bits);
		for (size_t k = 0; k <= n; k++) { /* every prefix, exact size */
			char *copy = malloc(k ? k : 1);
			memcpy(copy, q, k);
			assert_int_equal(sql_session_state(copy, k), sql_session_state_scan(copy, k));
			free(copy);
		}
	}
}

/* The quick look's promise to the proxy: a statement it settles has no session
 * state and is no SET or RESET; ORM statements are settled by it. */
static void test_plainly_stateless(void **state)
{
	(void)state;
	const char *plain[] = {
		"SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
		"SELECT \"books_book\".\"id\" FROM \"books_book\" WHERE \"books_book\".\"id\" = 1 LIMIT 21",
		"INSERT INTO t (a) VALUES (1) RETURNING id",
		"UPDATE t SET a = 1 WHERE id = 2",
		"BEGIN",
		"settle",
	};
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		assert_true(sql_plainly_stateless(plain[i], strlen(plain[i])));
	const char *not_plain[] = {
		"SET x = 1", " reset TimeZone", "RESET ALL", "/* c */ SELECT 1", "-- c\nSELECT 1",
		"SELECT 1; SELECT 2", "SELECT pg_advisory_lock(1)", "SELECT set_config('a', 'b', false)",
		"LISTEN x", "DO $$ begin end $$",
	};
	struct sql_set ps;
	for (size_t i = 0; i < sizeof(not_plain) / sizeof(not_plain[0]); i++) {
		const char *q = not_plain[i];
		assert_false(sql_plainly_stateless(q, strlen(q)));
		/* each is something: a SET/RESET, state, a comment or a second statement */
		assert_true(sql_parse_set(q, strlen(q), &ps) == 1 || sql_session_state(q, strlen(q)) != 0 ||
			    strchr(q, ';') || strchr("-/", q[0]));
	}
}

static unsigned rel(const char *q) { return sql_session_release(q, strlen(q)); }

static void test_release(void **state)
{
	(void)state;
	assert_int_equal(rel("UNLISTEN *"), SESS_LISTEN);
	assert_int_equal(rel("unlisten * ;"), SESS_LISTEN);
	assert_int_equal(rel("UNLISTEN jobs"), 0);
	assert_int_equal(rel("CLOSE ALL"), SESS_HOLD_CURSOR);
	assert_int_equal(rel("CLOSE c"), 0);
	assert_int_equal(rel("DEALLOCATE ALL"), SESS_PREPARE);
	assert_int_equal(rel("deallocate prepare all"), SESS_PREPARE);
	assert_int_equal(rel("DEALLOCATE p"), 0);
	assert_int_equal(rel("DISCARD TEMP"), SESS_TEMP);
	assert_int_equal(rel("DISCARD TEMPORARY"), SESS_TEMP);
	assert_int_equal(rel("DISCARD PLANS"), 0);
	assert_int_equal(rel("SELECT pg_advisory_unlock_all()"), SESS_ADVISORY);
	assert_int_equal(rel("select PG_ADVISORY_UNLOCK_ALL ( ) -- done"), SESS_ADVISORY);
	assert_int_equal(rel("SELECT pg_advisory_unlock_all(), pg_advisory_lock(1)"), 0);
	assert_int_equal(rel("SELECT pg_advisory_unlock(1)"), 0);
	/* only a statement alone */
	assert_int_equal(rel("UNLISTEN *; LISTEN x"), 0);
	assert_int_equal(rel("CLOSE ALL; SELECT 1"), 0);
	assert_int_equal(rel("/* c */ DISCARD TEMP;;"), SESS_TEMP);
	assert_int_equal(rel(""), 0);
	assert_int_equal(rel("'UNLISTEN *'"), 0);
}

static unsigned conf(const char *q) { return sql_session_confirm(q, strlen(q), sql_session_state(q, strlen(q))); }

static void test_confirm_with_libpg_query(void **state)
{
	(void)state;
	/* the scanner pins on the word; the parse tree says what is called */
	assert_int_equal(st("SELECT pg_advisory_lock FROM locks"), SESS_ADVISORY);
	assert_int_equal(conf("SELECT pg_advisory_lock FROM locks"), 0);
	assert_int_equal(conf("SELECT pg_advisory_lock(1)"), SESS_ADVISORY);
	assert_int_equal(conf("SELECT x FROM t WHERE pg_try_advisory_lock(t.id)"), SESS_ADVISORY);
	assert_int_equal(conf("SELECT public.pg_advisory_lock_shared(1, 2)"), SESS_ADVISORY);
	/* set_config: is_local true ends with the transaction */
	assert_int_equal(st("SELECT set_config('search_path', 'app', true)"), SESS_SET);
	assert_int_equal(conf("SELECT set_config('search_path', 'app', true)"), 0);
	assert_int_equal(conf("SELECT set_config('search_path', 'app', 'on')"), 0);
	assert_int_equal(conf("SELECT set_config('search_path', 'app', false)"), SESS_SET);
	assert_int_equal(conf("SELECT set_config('search_path', 'app', $1)"), SESS_SET);
	assert_int_equal(conf("SELECT set_config('search_path', 'app', true), pg_advisory_lock(3)"), SESS_ADVISORY);
	/* not a single SELECT, or not parseable: the scanner's answer stands */
	assert_int_equal(conf("UPDATE t SET v = pg_advisory_lock(1)::text"), SESS_ADVISORY);
	assert_int_equal(conf("SELECT pg_advisory_lock FROM t; SELECT 1"), SESS_ADVISORY);
	assert_int_equal(conf("SELECT pg_advisory_lock FROM ("), SESS_ADVISORY);
	assert_int_equal(conf("SET search_path = x"), SESS_SET);
	assert_int_equal(sql_session_confirm("SELECT 1", 8, SESS_LISTEN), SESS_LISTEN);
}

static void nm_is(const char *q, unsigned bit, int op, const char *name)
{
	struct sql_sess_name nm;
	assert_int_equal(sql_session_name(q, strlen(q), &nm), 1);
	assert_int_equal(nm.bit, bit);
	assert_int_equal(nm.op, op);
	assert_string_equal(nm.name, name);
}

static void nm_none(const char *q)
{
	struct sql_sess_name nm;
	assert_int_equal(sql_session_name(q, strlen(q), &nm), 0);
}

static void test_named_state(void **state)
{
	(void)state;
	nm_is("LISTEN Jobs", SESS_LISTEN, SQL_NAME_ADD, "jobs");
	nm_is("listen \"Jobs\";", SESS_LISTEN, SQL_NAME_ADD, "Jobs");
	nm_is("UNLISTEN jobs", SESS_LISTEN, SQL_NAME_REMOVE, "jobs");
	nm_is("DECLARE c1 NO SCROLL CURSOR WITH HOLD FOR SELECT 1", SESS_HOLD_CURSOR, SQL_NAME_ADD, "c1");
	nm_is("CLOSE c1", SESS_HOLD_CURSOR, SQL_NAME_REMOVE, "c1");
	nm_is("PREPARE q1 (int) AS SELECT $1", SESS_PREPARE, SQL_NAME_ADD, "q1");
	nm_is("DEALLOCATE q1", SESS_PREPARE, SQL_NAME_REMOVE, "q1");
	nm_is("DEALLOCATE PREPARE \"Q\"\"1\"", SESS_PREPARE, SQL_NAME_REMOVE, "Q\"1");
	nm_is("CREATE TEMP TABLE t1 (a int)", SESS_TEMP, SQL_NAME_ADD, "t1");
	nm_is("create temporary table if not exists T2 AS SELECT 1", SESS_TEMP, SQL_NAME_ADD, "t2");
	nm_is("DROP TABLE t1", SESS_TEMP, SQL_NAME_REMOVE, "t1");
	nm_is("DROP TABLE IF EXISTS t1 CASCADE", SESS_TEMP, SQL_NAME_REMOVE, "t1");
	nm_none("UNLISTEN *");
	nm_none("CLOSE ALL");
	nm_none("DEALLOCATE ALL");
	nm_none("DECLARE c CURSOR FOR SELECT 1"); /* no HOLD: not session state */
	nm_none("DROP TABLE a, b");
	nm_none("DROP TABLE s.t");
	nm_none("CREATE TEMP TABLE pg_temp.t (a int)");
	nm_none("LISTEN a; LISTEN b");
	nm_none("SELECT 1");
	nm_none("");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_named_state),
		cmocka_unit_test(test_confirm_with_libpg_query),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_other_statements),
		cmocka_unit_test(test_quoting_and_multi_statements),
		cmocka_unit_test(test_parse_set),
		cmocka_unit_test(test_every_prefix_is_safe),
		cmocka_unit_test(test_quick_look_agrees_with_full_scan),
		cmocka_unit_test(test_plainly_stateless),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
