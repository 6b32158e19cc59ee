/* test_normalize.c - the hot-path normalizer: lexical forms, constants, lists,
 * canonical spacing, fingerprints, sqlcommenter tags, redaction and bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sql/normalize.h"

/* big enough for the long lists of test_lists before they collapse */
static char nbuf[65536];
static struct sql_norm nres;

/* The normalized text of q (asserts success). */
static const char *norm(const char *q)
{
	assert_int_equal(sql_normalize(q, strlen(q), nbuf, sizeof(nbuf), &nres), 0);
	assert_int_equal(strlen(nbuf), nres.len);
	return nbuf;
}

static uint64_t fp(const char *q)
{
	(void)norm(q);
	return nres.fingerprint;
}

static const char *redact(const char *q)
{
	static char rbuf[8192];
	long n = sql_redact(q, strlen(q), rbuf, sizeof(rbuf));
	assert_true(n >= 0);
	assert_int_equal((size_t)n, strlen(rbuf));
	return rbuf;
}

#define NORM(q, want) assert_string_equal(norm(q), want)

/* Every statement of a NULL-terminated class shares the first one's fingerprint. */
static void same_class(const char *const *cls)
{
	char first[8192];
	snprintf(first, sizeof(first), "%s", norm(cls[0]));
	uint64_t f = nres.fingerprint;
	for (int i = 1; cls[i]; i++) {
		const char *n = norm(cls[i]);
		if (nres.fingerprint != f || strcmp(n, first) != 0)
			fail_msg("'%s' -> '%s' differs from '%s' -> '%s'", cls[i], n, cls[0], first);
	}
}

static void test_django_example(void **state)
{
	(void)state;
	const char *q = "SELECT \"shop_book\".\"id\", \"shop_book\".\"title\" FROM \"shop_book\" WHERE "
			"\"shop_book\".\"author_id\" = 42 ORDER BY \"shop_book\".\"id\" ASC LIMIT 21 "
			"/*controller='shop.views.book_list',route='%2Fbooks%2F'*/";
	NORM(q, "select \"shop_book\".\"id\", \"shop_book\".\"title\" from \"shop_book\" where "
		"\"shop_book\".\"author_id\" = $1 order by \"shop_book\".\"id\" asc limit $2");
	assert_int_equal(nres.nconst, 2);
	assert_int_equal(nres.ntags, 2);
	NORM("SELECT \"t\".\"id\" FROM \"t\" WHERE \"t\".\"a\" = 1 AND \"t\".\"b\" IN (1, 2, 3)",
	     "select \"t\".\"id\" from \"t\" where \"t\".\"a\" = $1 and \"t\".\"b\" in ($2 /*, ... */)");
}

static void test_equivalence_classes(void **state)
{
	(void)state;
	static const char *const spacing[] = {
		"SELECT a, b FROM t WHERE x = 1",
		"select   a,b\n\tfrom t where x=1",
		"SeLeCt a ,b FROM t -- comment\n WHERE /* c */ x = 1;",
		"select a, b from t where x = 'one'",
		"select a, b from t where x = -1.5e3",
		"select a, b from t where x = $1",
		"select a, b from t where x = $7",
		"select a, b from t where x = E'\\x'",
		"select a, b from t where x = $$dollar$$",
		"select a, b from t where x = $tag$a$b$tag$",
		"select a, b from t where x = null",
		"select a, b from t where x = true",
		"select a, b from t where x = B'101'",
		"select a, b from t where x = X'ff'",
		"select a, b from t where x = U&'d\\0061t'",
		"select a, b from t where x = 0x1F",
		"select a, b from t where x = 1_000_000",
		"select a, b from t where x = .5",
		"select a, b from t where x = - /* sign */ 7",
		"select a, b from t where x = 'a'\n  'continued'",
		"/* lead */ select a, b from t where x = 1 ;",
		NULL,
	};
	same_class(spacing);
	static const char *const in_lists[] = {
		"select * from t where id in (1, 2)",
		"select * from t where id in (1,2,3,4,5,6,7,8,9,10)",
		"select * from t where id in ($1, $2, $3)",
		"select * from t where id in ('a', 'b')",
		"select * from t where id in (-1, 2, -3)",
		"select * from t where id in ($1 /*, ... */)",
		NULL,
	};
	same_class(in_lists);
	static const char *const casted[] = {
		"select * from t where id in ('1'::int, '2'::int)",
		"select * from t where id in (1::int, 2::int, 3::int)",
		"select * from t where id in ($1::int, $2::int)",
		NULL,
	};
	same_class(casted);
	static const char *const arrays[] = {
		"select * from t where id = any(array[1, 2])",
		"select * from t where id = ANY (ARRAY[1,2,3,4])",
		"select * from t where id = any(array[$1, $2])",
		NULL,
	};
	same_class(arrays);
	static const char *const rows[] = {
		"insert into t (a, b) values (1, 'x'), (2, 'y')",
		"insert into t (a, b) values (1, 'x'), (2, 'y'), (3, 'z')",
		"INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)",
		"insert into t (a, b) values ($1, $2) /*, ... */",
		NULL,
	};
	same_class(rows);
	static const char *const semis[] = {"select 1", "select 1;", "select 1 ;;", "; select 1", NULL};
	same_class(semis);
	static const char *const ne[] = {"select 1 where a <> 2", "select 1 where a != 2", NULL};
	same_class(ne);
	static const char *const minus[] = {
		"select * from t where a = -1", "select * from t where a = 1", "select * from t where a = - 1",
		"select * from t where a=-1", NULL,
	};
	same_class(minus);
	static const char *const pgbench[] = {
		"UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 81234;",
		"UPDATE pgbench_accounts SET abalance = abalance + 17 WHERE aid = 5;",
		NULL,
	};
	same_class(pgbench);
}

static void test_must_differ(void **state)
{
	(void)state;
	static const char *const pairs[][2] = {
		{"select a from t", "select b from t"},
		{"select a from t", "select \"a\" from t"},
		{"select \"A\" from t", "select \"a\" from t"},
		{"select a - 1 from t", "select a + 1 from t"},
		{"select * from t where id in (1)", "select * from t where id in (1, 2)"},
		{"select * from t where id in (1, 2)", "select * from t where id in (1::int, 2::int)"},
		{"select * from t where id in (1::int, 2)", "select * from t where id in (1::int, 2::int)"},
		{"select * from t where id in (a, b)", "select * from t where id in (a, c)"},
		{"insert into t values (1)", "insert into t values (1), (2)"},
		{"insert into t values (1, now()), (2, now())", "insert into t values (1, now()), (2, 3)"},
		{"select x::varchar(10) from t", "select x::varchar(20) from t"},
		{"select cast(x as numeric(10, 2)) from t", "select cast(x as numeric(12, 2)) from t"},
		{"select a from t order by 1", "select a from t order by 2"},
		{"select a from t group by 1", "select a from t group by 2"},
		{"select * from t where a is null", "select * from t where a = null"},
		{"select * from t where a is true", "select * from t where a is false"},
		{"create table t (a varchar(10))", "create table t (a varchar(11))"},
		{"select 1; select 2", "select 1"},
		{"select 'a' || b", "select 'a' | b"},
		{"select a.b from t", "select ab from t"},
		{"select n'x'", "select 'x'"},
		{"select x::int", "select x::bigint"},
		{"select * from t limit 1", "select * from t offset 1"},
		{"select date '2020-01-01'", "select '2020-01-01'"},
		{"explain (analyze true) select 1", "explain (analyze false) select 1"},
		{"set search_path to default", "set search_path to x"},
		{"select * from t where a in (select 1)", "select * from t where a in (select 2, 3)"},
	};
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		char a[8192];
		snprintf(a, sizeof(a), "%s", norm(pairs[i][0]));
		uint64_t fa = nres.fingerprint;
		if (fp(pairs[i][1]) == fa)
			fail_msg("'%s' and '%s' both -> '%s'", pairs[i][0], pairs[i][1], a);
	}
}

static void test_lexical_forms(void **state)
{
	(void)state;
	NORM("SELECT N'abc', U&'d\\0061t' UESCAPE '!', B'101', X'1F', E'a\\'b', $$x$$, $q$y$q$, 'it''s'",
	     "select n $1, $2 uescape '!', $3, $4, $5, $6, $7, $8");
	NORM("select U&\"d!0061t\" UESCAPE '!' from \"a\"\"b\"", "select U&\"d!0061t\" uescape '!' from \"a\"\"b\"");
	NORM("select 1., .5, 1e-5, 1.5E+3, 0o17, 0b101, 0x1f, 1_000", "select $1, $2, $3, $4, $5, $6, $7, $8");
	NORM("select a$b, _x, \xc3\xa9T\xc3\xa9 from t", "select a$b, _x, \xc3\xa9t\xc3\xa9 from t");
	NORM("select /* outer /* nested */ still */ 1 -- line\n", "select $1");
	NORM("select a||b, a->>'k', a @> b, a<=b, a>=b, a!=b, a ~* b, a #>> b from t",
	     "select a || b, a ->> $1, a @> b, a <= b, a >= b, a <> b, a ~* b, a #>> b from t");
	/* scan.l: '=-' is '=' then '-'; '@-' keeps its minus */
	NORM("select a=-1, a@-1, a*-1, a<-1 from t", "select a = $1, a @- $2, a * $3, a < $4 from t");
	NORM("select a::text, b :: int[], c::timestamp with time zone from t",
	     "select a::text, b::int[], c::timestamp with time zone from t");
	NORM("select f(a := 1, b => 2), x[1:2], x[:3] from t", "select f(a := $1, b => $2), x[$3:$4], x[:$5] from t");
	NORM("select \"t\".*, count(*) from \"t\"", "select \"t\".*, count(*) from \"t\"");
	NORM("select 'a'\n'b', 'c' 'd'", "select $1, $2 $3"); /* continuation needs a newline */
	NORM("select 'a' -- c\n 'b'", "select $1");
	NORM("select E'\\\\', E'a\\\\'", "select $1, $2");
	NORM("select $1::int, $12", "select $1::int, $2");
	NORM("SELECT $ab$ $ $$ $ab$", "select $1");
	NORM("select a from t where b ~ '^x$' and c = $_$ q $_$", "select a from t where b ~ $1 and c = $2");
}

static void test_constants_in_context(void **state)
{
	(void)state;
	NORM("select a -1, a - 1, -1::int, - 1, 2 - -3 from t limit all",
	     "select a - $1, a - $2, - $3::int, $4, $5 - $6 from t limit $7");
	NORM("select case when a then -1 else -2 end, -a from t", "select case when a then $1 else $2 end, - a from t");
	NORM("select * from t where a is null and b is not null and c is not true and d = false and e = null",
	     "select * from t where a is null and b is not null and c is not true and d = $1 and e = $2");
	NORM("select x::varchar(255), cast(y as numeric(10,2)), current_timestamp(3), extract(year from z) from t",
	     "select x::varchar(255), cast(y as numeric(10, 2)), current_timestamp(3), extract($1 from z) from t");
	NORM("select interval '1 day', date '2020-01-01', '1'::int", "select interval $1, date $2, $3::int");
	NORM("select a from t group by 1, a order by 1 desc, a + 1, 'x', -3, 2.5",
	     "select a from t group by 1, a order by 1 desc, a + $1, $2, -3, $3");
	NORM("select row_number() over (order by 1), array_agg(a order by 1) from t order by 1",
	     "select row_number() over (order by $1), array_agg(a order by $2) from t order by 1");
	NORM("select * from (select a from t order by 1) s order by 2", "select * from (select a from t order by 1) s order by 2");
	NORM("select * from t order by a limit 10 offset 20", "select * from t order by a limit $1 offset $2");
	NORM("SET search_path TO \"$user\", public", "set search_path to $1, $2");
	NORM("SET statement_timeout = -5", "set statement_timeout = $1");
	NORM("set time zone 'UTC'", "set time zone $1");
	NORM("set local time zone local", "set local time zone local");
	NORM("SET x TO DEFAULT", "set x to default");
	NORM("SET ROLE admin", "set role $1");
	NORM("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "set transaction isolation level read committed");
	NORM("create table t (a varchar(10) default 'x', b int default -1)",
	     "create table t(a varchar(10) default 'x', b int default - 1)");
	NORM("explain (analyze true, format json) select 1", "explain (analyze true, format json) select $1");
	NORM("copy (select 1, 'a') to stdout with (format csv, delimiter ',')",
	     "copy (select $1, $2) to stdout with (format csv, delimiter ',')");
	NORM("alter role bob with password 'secret' valid until '2030-01-01' connection limit 5",
	     "alter role bob with password $1 valid until $2 connection limit 5");
	NORM("prepare p as select 1", "prepare p as select 1");
	NORM("DO $$ BEGIN PERFORM 1; END $$", "do $1");
	NORM("create function f(a int default 5) returns int language sql cost 10 as $$ select 1 $$",
	     "create function f(a int default 5) returns int language sql cost 10 as $1");
	NORM("alter function f() cost 10", "alter function f() cost 10");
	NORM("create user mapping for bob server s options (user 'bob', password 'x')",
	     "create user mapping for bob server s options(user $1, password $2)");
	NORM("begin; select 1; commit", "begin; select $1; commit");
}

static void test_lists(void **state)
{
	(void)state;
	NORM("select 1 where a in (1,2,3) and b = any(array[1,2]) and c in ($1::int, $2::int) and d in (1, 'x')",
	     "select $1 where a in ($2 /*, ... */) and b = any (array[$3 /*, ... */]) and c in ($4::int /*, ... */) and "
	     "d in ($5 /*, ... */)");
	NORM("select * from t where a in (1) and b not in (2, 3) and c in (select 1)",
	     "select * from t where a in ($1) and b not in ($2 /*, ... */) and c in (select $3)");
	NORM("insert into t values (1, 'a'), (2, 'b') returning id", "insert into t values ($1, $2) /*, ... */ returning id");
	NORM("insert into t values (1, now()), (2, now())", "insert into t values ($1, now()) /*, ... */");
	NORM("insert into t values (1, now()), (2, 3)", "insert into t values ($1, now()), ($2, $3)");
	NORM("select * from (values (1), (2), (3)) v(a) where a in (4, 5)",
	     "select * from (values ($1) /*, ... */) v(a) where a in ($2 /*, ... */)");
	NORM("insert into t values (array[1,2]), (array[3,4,5])", "insert into t values (array[$1 /*, ... */]) /*, ... */");
	NORM("select * from t where a in ((1), (2))", "select * from t where a in (($1), ($2))");
	NORM("select * from t where a in (1 + 2, 3)", "select * from t where a in ($1 + $2, $3)");
	/* numbering continues after a collapsed list */
	NORM("select * from t where a in (1, 2, 3) and b = 4", "select * from t where a in ($1 /*, ... */) and b = $2");
	/* a long list still collapses */
	static char q[65536];
	size_t n = (size_t)snprintf(q, sizeof(q), "select * from t where id in (");
	for (int i = 0; i < 3000; i++)
		n += (size_t)snprintf(q + n, sizeof(q) - n, "%s%d", i ? ", " : "", i);
	snprintf(q + n, sizeof(q) - n, ") and x = 'y'");
	NORM(q, "select * from t where id in ($1 /*, ... */) and x = $2");
	n = (size_t)snprintf(q, sizeof(q), "insert into t (a, b) values ");
	for (int i = 0; i < 1500; i++)
		n += (size_t)snprintf(q + n, sizeof(q) - n, "%s(%d, 'v%d')", i ? ", " : "", i, i);
	NORM(q, "insert into t(a, b) values ($1, $2) /*, ... */");
}

/* Statements whose every token the normalizer's fast lane takes (fast_lane()):
 * lists, comments, casts, ORDER BY positions and constant keywords inside it
 * print as the general path prints them (tests/sqldiff/normident.c compares
 * the two exhaustively; these pin a few by hand). */
static void test_fast_lane_shapes(void **state)
{
	(void)state;
	/* an IN list that cannot collapse (a subquery, with a query-level ORDER BY) */
	NORM("SELECT \"t\".\"a\" FROM \"t\" WHERE \"t\".\"id\" IN (SELECT U0.\"id\" FROM \"u\" U0 WHERE U0.\"x\" = 1 "
	     "ORDER BY 1) AND \"t\".\"b\" = 2",
	     "select \"t\".\"a\" from \"t\" where \"t\".\"id\" in (select u0.\"id\" from \"u\" u0 where u0.\"x\" = $1 "
	     "order by 1) and \"t\".\"b\" = $2");
	NORM("SELECT * FROM t WHERE a IN (1, a) AND b IN ($1, $2)",
	     "select * from t where a in ($1, a) and b in ($2 /*, ... */)");
	/* VALUES rows with constant keywords, a last ';' */
	NORM("INSERT INTO \"t\" (\"a\", \"b\") VALUES (1, NULL), (2, TRUE) RETURNING \"t\".\"id\";",
	     "insert into \"t\"(\"a\", \"b\") values ($1, $2) /*, ... */ returning \"t\".\"id\"");
	assert_int_equal(nres.nconst, 4);
	NORM("INSERT INTO t VALUES (1, 'a') /*, ... */ RETURNING id", "insert into t values ($1, $2) /*, ... */ returning id");
	NORM("SELECT * FROM (SELECT a FROM t ORDER BY 1) s, (VALUES (1, 2), (3, 4)) v ORDER BY 2",
	     "select * from (select a from t order by 1) s, (values ($1, $2) /*, ... */) v order by 2");
	/* NULL, TRUE and FALSE after IS (NOT) or not; LIMIT ALL */
	NORM("SELECT a FROM t WHERE b IS NULL AND c IS NOT NULL AND d = NULL AND e IS NOT TRUE AND f = FALSE LIMIT ALL",
	     "select a from t where b is null and c is not null and d = $1 and e is not true and f = $2 limit $3");
	/* casts followed by a word that ends the type, or continues it */
	NORM("SELECT x::text LIKE 'a%', y::double precision, z::timestamp with time zone, w::int - 1 FROM t",
	     "select x::text like $1, y::double precision, z::timestamp with time zone, w::int - $2 from t");
	/* positions in ORDER BY stay */
	NORM("SELECT a FROM t ORDER BY a, 2 DESC, -1, \"t\".\"b\"", "select a from t order by a, 2 desc, -1, \"t\".\"b\"");
	/* comments, tags among them, anywhere */
	NORM("SELECT 1 /*a='1'*/ FROM t -- c\n WHERE x IN (1, 2) /*controller='v'*/;",
	     "select $1 from t where x in ($2 /*, ... */)");
	assert_int_equal(nres.ntags, 2);
	assert_int_equal(nres.nconst, 3);
	NORM("select 1; select 2;", "select $1; select $2");
}

static void test_idempotent(void **state)
{
	(void)state;
	static const char *const qs[] = {
		"select * from t where a in (1, 2) and b = -1 and c in ($1)",
		"insert into t values (1, 'a'), (2, 'b') returning id",
		"select N'x', U&'y' uescape '!', x::varchar(3)[] from t order by 1, -2",
		"select a - -1, - 1::int, extract(epoch from x), 'a' from t limit all",
		"SET TIME ZONE INTERVAL '+01:00' HOUR TO MINUTE",
		"select x . y, x.\"y\", x[1 : 2], a : : b, $1.x from t",
		"create table t (a int default -1, b text default 'x''y')",
	};
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		char a[8192];
		snprintf(a, sizeof(a), "%s", norm(qs[i]));
		uint64_t f = nres.fingerprint;
		const char *b = norm(a);
		if (strcmp(a, b) != 0 || nres.fingerprint != f)
			fail_msg("not idempotent: '%s' -> '%s' -> '%s'", qs[i], a, b);
	}
}

static void test_tags(void **state)
{
	(void)state;
	const char *q = "SELECT 1 /*controller='shop.views.book_list',route='%2Fbooks%2F',x='it\\'s'*/;";
	(void)norm(q);
	assert_int_equal(nres.ntags, 3);
	char buf[64];
	assert_int_equal(sql_tag_decode(nres.tags[0].key, nres.tags[0].key_len, buf, sizeof(buf)), 10);
	assert_string_equal(buf, "controller");
	sql_tag_decode(nres.tags[0].val, nres.tags[0].val_len, buf, sizeof(buf));
	assert_string_equal(buf, "shop.views.book_list");
	sql_tag_decode(nres.tags[1].val, nres.tags[1].val_len, buf, sizeof(buf));
	assert_string_equal(buf, "/books/");
	sql_tag_decode(nres.tags[2].val, nres.tags[2].val_len, buf, sizeof(buf));
	assert_string_equal(buf, "it's");
	/* tags don't change the fingerprint */
	assert_true(fp(q) == fp("select 1"));
	/* not tag comments */
	(void)norm("select 1 /* just a comment */ -- a='b'\n");
	assert_int_equal(nres.ntags, 0);
	(void)norm("select 1 /*a='b',c*/");
	assert_int_equal(nres.ntags, 0);
	(void)norm("select 1 /*a='b'");
	assert_int_equal(nres.ntags, 0);
	(void)norm("select 'a=''b''' /* k = 'v' */");
	assert_int_equal(nres.ntags, 0);
	(void)norm("/*a='1'*/ select 1 /* b='2' , c='3' */");
	assert_int_equal(nres.ntags, 3);
	(void)norm("select 1 /*a='1',b='2',c='3',d='4',e='5',f='6',g='7',h='8',i='9'*/");
	assert_int_equal(nres.ntags, SQL_MAX_TAGS);
	/* decoding */
	assert_int_equal(sql_tag_decode("%41%2x%", 7, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "A%2x%");
	assert_int_equal(sql_tag_decode("abcdef", 6, buf, 4), 3);
	assert_string_equal(buf, "abc");
	assert_int_equal(sql_tag_decode("abc", 3, buf, 0), 0);
}

static void test_redact(void **state)
{
	(void)state;
	assert_string_equal(redact("SELECT a FROM t WHERE b = 'secret' AND c IN (1, 2) /* x='y' */"),
			    "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) /* x='y' */");
	assert_string_equal(redact("select $2, 1, $1"), "select $2, $3, $1");
	assert_string_equal(redact("select x = -1, N'x', x::varchar(9)"), "select x = $1, N$2, x::varchar(9)");
	assert_string_equal(redact("alter user u password 'hunter2'"), "alter user u password $1");
	assert_string_equal(redact(""), "");
	char small[8];
	assert_int_equal(sql_redact("select 'abcdefgh'", 17, small, sizeof(small)), -1);
	assert_int_equal(sql_redact("select 1", 8, small, 0), -1);
}

static const char *const tricky[] = {
	"SELECT \"shop_book\".\"id\" FROM \"shop_book\" WHERE \"shop_book\".\"author_id\" IN (1, 2, 3) LIMIT 21 /*a='b'*/",
	"select E'abc\\'def' || $tag$ x $tag$ || U&\"x\" || B'1' from t where a = -1.5e-3::float8",
	"insert into t values (1, 'a'), (2, 'b'), (3, 'c') on conflict (id) do update set v = excluded.v",
	"select /* /* */ */ 'x''y' -- z\n, \"a\"\"b\", $1, 0x1F, .5, 1., a::int[3]",
	"SET TIME ZONE 'UTC'; select n'x', array[1,2]",
};

static void test_every_prefix(void **state)
{
	(void)state;
	/* truncated statements: no overrun (ASan), deterministic, bounded */
	for (size_t k = 0; k < sizeof(tricky) / sizeof(tricky[0]); k++) {
		size_t len = strlen(tricky[k]);
		for (size_t n = 0; n <= len; n++) {
			char *q = malloc(n ? n : 1);
			memcpy(q, tricky[k], n);
			size_t cap = SQL_NORM_BOUND(n);
			char *o1 = malloc(cap), *o2 = malloc(cap);
			struct sql_norm r1, r2;
			assert_int_equal(sql_normalize(q, n, o1, cap, &r1), 0);
			assert_int_equal(sql_normalize(q, n, o2, cap, &r2), 0);
			assert_true(r1.fingerprint == r2.fingerprint);
			assert_string_equal(o1, o2);
			assert_true(r1.len < cap);
			assert_true(sql_redact(q, n, o1, cap) >= 0);
			free(q);
			free(o1);
			free(o2);
		}
	}
}

static void test_cap_and_guard(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(tricky) / sizeof(tricky[0]); k++) {
		const char *q = tricky[k];
		size_t len = strlen(q);
		struct sql_norm r;
		char full[4096];
		assert_int_equal(sql_normalize(q, len, full, sizeof(full), &r), 0);
		size_t need = r.len + 1;
		for (size_t cap = 0; cap <= need + 2; cap++) {
			char buf[4096 + 16];
			memset(buf, 0x5a, sizeof(buf));
			int rc = sql_normalize(q, len, buf, cap, &r);
			assert_int_equal(rc, cap >= need ? 0 : -1);
			for (size_t i = cap; i < sizeof(buf); i++)
				if ((unsigned char)buf[i] != 0x5a)
					fail_msg("wrote byte %zu with cap %zu", i, cap);
			if (rc == 0)
				assert_string_equal(buf, full);
		}
		long rn = sql_redact(q, len, full, sizeof(full));
		assert_true(rn >= 0);
		for (size_t cap = 0; cap <= (size_t)rn + 2; cap++) {
			char buf[4096 + 16];
			memset(buf, 0x5a, sizeof(buf));
			long rc = sql_redact(q, len, buf, cap);
			assert_true(rc == (cap > (size_t)rn ? rn : -1));
			for (size_t i = cap; i < sizeof(buf); i++)
				if ((unsigned char)buf[i] != 0x5a)
					fail_msg("redact wrote byte %zu with cap %zu", i, cap);
		}
	}
}

static void test_bound_holds(void **state)
{
	(void)state;
	/* the worst expansions: one-byte constants between one-byte operators */
	static const char *const unit[] = {"1+", "1,", "N'',", "in(1,1)", "array[1,1]", "values(1),(1)", "1-"};
	for (size_t u = 0; u < sizeof(unit) / sizeof(unit[0]); u++) {
		for (size_t reps = 1; reps < 30000; reps = reps * 3 + 1) {
			size_t ul = strlen(unit[u]), len = ul * reps + 1;
			char *q = malloc(len);
			for (size_t i = 0; i < reps; i++)
				memcpy(q + i * ul, unit[u], ul);
			q[len - 1] = '1';
			size_t cap = SQL_NORM_BOUND(len);
			char *o = malloc(cap);
			struct sql_norm r;
			assert_int_equal(sql_normalize(q, len, o, cap, &r), 0);
			assert_true(sql_redact(q, len, o, cap) >= 0);
			free(q);
			free(o);
		}
	}
}

static void test_nul_and_empty(void **state)
{
	(void)state;
	struct sql_norm r;
	char out[64];
	assert_int_equal(sql_normalize("", 0, out, sizeof(out), &r), 0);
	assert_string_equal(out, "");
	assert_int_equal(r.len, 0);
	assert_int_equal(sql_normalize("select\0 1", 9, out, sizeof(out), &r), 0);
	assert_string_equal(out, "select $1");
	assert_int_equal(sql_normalize("select 1", 8, out, 0, &r), -1);
	assert_int_equal(sql_normalize("'unterminated", 13, out, sizeof(out), &r), 0);
	assert_string_equal(out, "'unterminated");
	assert_int_equal(sql_normalize("select 'unterminated", 20, out, sizeof(out), &r), 0);
	assert_string_equal(out, "select $1");
	assert_int_equal(sql_normalize("select \"unterminated", 20, out, sizeof(out), &r), 0);
	assert_string_equal(out, "select \"unterminated");
	assert_int_equal(sql_normalize("select 1 /* open", 16, out, sizeof(out), &r), 0);
	assert_string_equal(out, "select $1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_django_example),
		cmocka_unit_test(test_equivalence_classes),
		cmocka_unit_test(test_must_differ),
		cmocka_unit_test(test_lexical_forms),
		cmocka_unit_test(test_constants_in_context),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_fast_lane_shapes),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_cap_and_guard),
		cmocka_unit_test(test_bound_holds),
		cmocka_unit_test(test_nul_and_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
