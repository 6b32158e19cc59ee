/* normrand.c - a random differential of two builds of src/sql/normalize.c, as
 * normident.c but on generated input: a token soup of SQL fragments (keywords,
 * identifiers, every literal form, operators, comments with and without tags,
 * MARKER comments) with the shapes the normalizer's shortcuts care about put
 * in whole: runs of quoted identifiers, IN lists and VALUES rows long and
 * short (uniform, or with one odd element), doomed IN (SELECT ...) lists,
 * sqlcommenter comments broken in every way; joined by assorted whitespace,
 * sometimes edited at one byte or cut short.  Compared as normident.c does
 * (return, struct sql_norm, text; every eighth input also with caps too small,
 * sql_redact and sql_comment_tags), each input an exact-size heap copy.
 *
 * Usage: normrand [inputs [seed]]; `make normrand` (NORMRAND_N inputs against
 * NORM_BASE).  The first difference is printed and written to
 * build/normrand-diff.bin.  NORMRAND_SKIP_AS_CAST=1 skips inputs with "::AS":
 * before 2026-11-28 the fast lane took CAST(x ::AS ...) (invalid SQL) without
 * the type context the general path gives it, a difference that newer
 * versions do not keep. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sql/normalize.h"

int old_sql_normalize(const char *q, size_t len, char *out, size_t cap, struct sql_norm *res);
long old_sql_redact(const char *q, size_t len, char *out, size_t cap);
void old_sql_comment_tags(const char *c, size_t n, struct sql_norm *res);

static uint64_t rs = 88172645463325252ull;

static inline uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

#define R(n) ((size_t)(rnd() % (n)))

/* the fragments the soup is made of */
static const char *const frag[] = {
	/* statement starts and keywords */
	"SELECT", "select", "INSERT INTO", "UPDATE", "DELETE FROM", "VALUES", "values", "WITH", "TABLE", "EXPLAIN",
	"EXPLAIN (ANALYZE, FORMAT JSON)", "COPY", "COPY (", "SET", "SET TIME ZONE", "SET SESSION AUTHORIZATION",
	"CREATE ROLE", "ALTER USER", "PASSWORD", "UNTIL", "CREATE OR REPLACE FUNCTION", "CREATE USER MAPPING", "DO",
	"DECLARE", "MERGE", "CALL", "PREPARE", "EXECUTE", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "in", "IS",
	"IS NOT", "NULL", "null", "TRUE", "FALSE", "ORDER BY", "order by", "GROUP BY", "BY", "ORDER", "GROUP", "LIMIT",
	"LIMIT ALL", "OFFSET", "ALL", "ANY", "AS", "CAST(", "TREAT(", "ARRAY[", "ARRAY", "ON", "JOIN", "INNER JOIN",
	"LEFT OUTER JOIN", "RETURNING", "HAVING", "UNION", "UNION ALL", "EXCEPT", "DISTINCT", "CASE", "WHEN", "THEN",
	"ELSE", "END", "EXTRACT(", "extract(year from", "INTERVAL", "interval '1 day'", "TIME", "ZONE", "LOCAL",
	"DEFAULT", "current_timestamp", "CURRENT_TIMESTAMP(3)", "localtime", "varchar", "numeric",
	"OPERATOR(pg_catalog.+)", "OPERATOR(", "UESCAPE", "LIKE", "ILIKE", "BETWEEN", "SYMMETRIC", "FOR", "UPDATE",
	"FETCH", "FIRST", "ROWS", "ONLY", "WINDOW", "OVER (", "PARTITION BY", "ASC", "DESC", "NULLS", "LAST", "USING",
	"LATERAL", "EXISTS", "FILTER", "CONFLICT", "DO NOTHING", "SESSION", "TO", "ROLE", "NAMES", "SCHEMA",
	"TRANSACTION", "CHARACTERISTICS", "CONSTRAINTS", "WITHOUT", "PRECISION", "VARYING", "date", "timestamptz",
	"double precision", "character varying", "abalance", "pgbench_accounts",
	/* identifiers */
	"a", "b", "t", "x", "id", "e", "n", "u", "U", "E", "B", "X", "N", "_x", "x1", "t.a", "\"t\"", "\"shop_book\"",
	"\"shop_book\".\"id\"", "\"t\".\"a\", \"t\".\"b\"", "\"a\"\"b\"", "U&\"d\\0061t\"", "\"\"", "\"x\" ",
	"\xc3\xa9t\xc3\xa9", "aVeryLongIdentifierName_with_digits_123",
	"\"a_very_long_quoted_identifier_exceeding_sixteen\"", "\"t\".\"a\",\"t\".\"b\"", "\"t\" . \"a\"", "\"t\".a",
	/* numbers */
	"1", "42", "0", "81234", "-4321", "1.5", ".5", "1.", "1e10", "1E-5", "0x1F", "0o17", "0b101", "1_000", "1abc",
	"12345678901234567890", "1..2", "- 1", "-1", "+1", "1::int", "-1::int",
	/* strings */
	"'x'", "''", "'it''s'", "E'\\n'", "e'a\\'b'", "B'01'", "X'1f'", "N'x'", "U&'d\\0061t'", "$$x$$", "$a$x$a$",
	"'2024-05-01'::date", "'a'\n'b'", "'a' 'b'", "'unterminated", "\"unterminated", "$$unterminated", "'19.90'",
	/* params */
	"$1", "$2", "$12", "$", "$x",
	/* operators and punctuation */
	"=", "<>", "!=", "<", ">=", "+", "-", "*", "/", "||", "::", ":", ".", ",", ", ", ";", "(", ")", "[", "]", "~~",
	"@>", "*/", "-+", "=-", "!", "?", "%", "^", "#", "&", "|", "`", "\\", ":=", "=>", "/-", "+-", "<=-",
	/* comments */
	"/* c */", "-- c\n", "--\n", "/*controller='x',route='%2Fy'*/", "/*a='1'*/", "/* , ... */", "/*, ... */",
	"/* a /* b */ c */", "/*", "--", "/*k='v\\'x',k2='w'*/", "/*x=y*/",
	/* structures */
	"IN (1, 2, 3)", "IN (1)", "IN ($1, $2)", "IN ('a', 'b')", "IN (1, 2 /*, ... */)", "IN (1 /*, ... */)",
	"IN (SELECT 1)", "IN (SELECT U0.\"id\" FROM \"t\" U0 WHERE U0.\"a\" = 1)",
	"IN (SELECT a, b FROM t WHERE c IN (1, 2))", "IN (a, b)", "IN (1, a)", "IN (a, 1, 2)", "ARRAY[a, 1]",
	"ARRAY[a, 1, 'x']", "IN ((1), 2)", "IN (1, (SELECT 2))", "IN (SELECT 1 ORDER BY 1, 2)",
	"IN (SELECT x FROM t LIMIT 1), 5", "IN (now(), 1)", "IN ($1, a, $2)", "IN (SELECT NULL, TRUE)",
	"IN (VALUES (1), (2))", "IN (1::int, 2)", "IN ('a'::text, 'b'::text)", "IN (1,2,3)", "IN ( 1 , 2 )",
	"in(1, 2)", "IN (1, /* c */ 2)", "IN (1, -2)", "VALUES (1, 'a'), (2, 'b')", "VALUES (1), (2), (3)",
	"VALUES (1, now()), (2, now())", "VALUES ($1, $2)", "VALUES (1)", "VALUES (1, 'a') /*, ... */",
	"VALUES (1), (2, 3)", "VALUES (1),(2)", "VALUES (1) , (2)", "VALUES (1), /* c */ (2)",
	"VALUES (1, NULL), (2, TRUE)", "VALUES (DEFAULT)", "VALUES ((1)), ((2))",
	"VALUES (1, ARRAY[1, 2]), (2, ARRAY[3, 4])", "ORDER BY 1", "ORDER BY 1, 2", "ORDER BY a, 2 DESC",
	"ORDER BY -1", "ORDER BY (1)", "GROUP BY 1, a", "ORDER BY \"t\".\"id\" ASC", "ORDER BY a, /* c */ 2",
	"ORDER BY a -- c\n, 1", "::int", "::varchar(10)", "::numeric(10, 2)", "::text[]", "::pg_catalog.int4",
	"::\"t\"", ":: int", "::timestamptz", "::date", "::int IS NULL", "IS NULL", "IS NOT NULL", "IS NOT TRUE",
	"= true", "NOT NULL", "ARRAY[1, 2]", "ARRAY[1]", "ARRAY[$1, $2]", "count(*)", "COUNT(*) AS \"__count\"",
	"now()", "coalesce(a, 1)", "x[1:2]", "CAST(1 AS int)", "CAST(x AS numeric(10,2))", "::AS", "::as",
	"CAST(1 ::AS", "CAST(x ::as \"t\"(10))", "CAST(1 ::as x(10))", "TREAT(x AS", "CAST(1::int AS varchar(10))",
	"::\"t\"(10)", "CAST(", "::AS ,", "::as)", "CAST(a::int AS text)", "CAST(a AS x.y(3))", "::x.y", "::int[3]",
	"AS", "(10)", "(1, 2)", "AS x(a varchar(10))", "LIMIT 21", "OFFSET 5", "FETCH FIRST 5 ROWS ONLY",
	"WHERE aid = 81234;", "; ", ";", ";;", " ; SELECT 1", "abalance + -4321", "(select 1)", "((a))",
	"(VALUES (1))",
};
#define NFRAG (sizeof(frag) / sizeof(frag[0]))
/* what joins two fragments ("\0": a NUL byte, or nothing) */
static const char *const sep[] = {
	" ", " ", " ", " ", "", "", "\n", "\t", "  ", ", ", " /* s */ ", "\r\n", "\v", "\0",
};
#define NSEP (sizeof(sep) / sizeof(sep[0]))
/* how an input starts, two times in three */
static const char *const start[] = {
	"SELECT ", "INSERT INTO t (a, b) VALUES ", "UPDATE t SET a = ", "DELETE FROM t WHERE ", "",
	"SELECT * FROM t WHERE a IN ", "SELECT a FROM t ORDER BY ", "WITH x AS (SELECT 1) SELECT ", "SET x = ",
	"EXPLAIN SELECT ", "INSERT INTO \"t\" (\"a\") VALUES (", "SELECT \"t\".\"a\", \"t\".\"b\" FROM \"t\" WHERE ",
};
#define NSTART (sizeof(start) / sizeof(start[0]))

static void fail(const char *what, const char *q, size_t n)
{
	fprintf(stderr, "DIFFERENCE in %s for input of %zu bytes:\n", what, n);
	fwrite(q, 1, n, stderr);
	fprintf(stderr, "\n");
	FILE *f = fopen("build/normrand-diff.bin", "wb");
	if (f) {
		fwrite(q, 1, n, f);
		fclose(f);
	}
	exit(1);
}

static void same(const struct sql_norm *a, const struct sql_norm *b, const char *q, size_t n, const char *what)
{
	if (a->fingerprint != b->fingerprint || a->len != b->len || a->nconst != b->nconst || a->ntags != b->ntags)
		fail(what, q, n);
	for (int i = 0; i < a->ntags && i < SQL_MAX_TAGS; i++)
		if (a->tags[i].key != b->tags[i].key || a->tags[i].key_len != b->tags[i].key_len ||
		    a->tags[i].val != b->tags[i].val || a->tags[i].val_len != b->tags[i].val_len)
			fail(what, q, n);
}

static char o1[1 << 18], o2[1 << 18];

/* "::" then (whitespace and) the word AS (see the top). */
static int as_cast(const char *q, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (q[i] != ':' || q[i + 1] != ':')
			continue;
		size_t j = i + 2;
		while (j < n && (q[j] == ' ' || (q[j] >= '\t' && q[j] <= '\r') || q[j] == 0))
			j++;
		if (j + 1 < n && (q[j] | 0x20) == 'a' && (q[j + 1] | 0x20) == 's') {
			unsigned char c = j + 2 < n ? (unsigned char)q[j + 2] : ' ';
			int ident = ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
				    c == '$' || c >= 0x80;
			if (!ident)
				return 1;
		}
	}
	return 0;
}
static int skip_as_cast;
static long skipped;

static void compare(const char *q, size_t n, int deep)
{
	if (skip_as_cast && as_cast(q, n)) {
		skipped++;
		return;
	}
	struct sql_norm r1, r2;
	size_t cap = SQL_NORM_BOUND(n);
	int a = old_sql_normalize(q, n, o1, cap, &r1);
	int b = sql_normalize(q, n, o2, cap, &r2);
	if (a != b)
		fail("return", q, n);
	same(&r1, &r2, q, n, "res");
	if (a == 0 && memcmp(o1, o2, r1.len + 1) != 0)
		fail("text", q, n);
	if (!deep)
		return;
	size_t full = r1.len;
	size_t caps[] = { 0, 1, full / 2, full, full + 1, R(full + 2), full > 20 ? full - 20 : 3, full + 12 };
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		memset(&r1, 0, sizeof(r1));
		memset(&r2, 0, sizeof(r2));
		memset(o1, 0x5a, caps[i] + 64);
		memset(o2, 0x5a, caps[i] + 64);
		a = old_sql_normalize(q, n, o1, caps[i], &r1);
		b = sql_normalize(q, n, o2, caps[i], &r2);
		if (a != b)
			fail("return (small cap)", q, n);
		same(&r1, &r2, q, n, "res (small cap)");
		if (a == 0 && memcmp(o1, o2, r1.len + 1) != 0)
			fail("text (small cap)", q, n);
		for (size_t j = caps[i]; j < caps[i] + 64; j++)
			if (o2[j] != 0x5a)
				fail("write past cap", q, n);
	}
	long ra = old_sql_redact(q, n, o1, cap), rb = sql_redact(q, n, o2, cap);
	if (ra != rb || (ra >= 0 && memcmp(o1, o2, (size_t)ra + 1) != 0))
		fail("redact", q, n);
	old_sql_comment_tags(q, n, &r1);
	sql_comment_tags(q, n, &r2);
	same(&r1, &r2, q, n, "comment_tags");
}

static size_t put_str(char *b, size_t n, const char *s)
{
	size_t l = strlen(s);
	memcpy(b + n, s, l);
	return n + l;
}

/* VALUES rows, an IN list or a doomed IN (SELECT ...) list of up to 600
 * elements: all of one shape (one odd element maybe, anywhere), or mixed. */
static size_t gen_list(char *b, size_t n, size_t cap)
{
	static const char *const el[] = { "1", "'x'", "$1", "NULL", "now()", "(1)", "a", "-2", "1::int", "TRUE" };
	int kind = (int)R(3);
	size_t rows = 1 + R(R(2) ? 20 : 600);
	size_t w = 1 + R(3), shape = R(10), odd = R(2) ? R(rows + 1) : (size_t)-1;
	int uniform = (int)R(2);
	n = put_str(b, n, kind == 0 ? "VALUES " : kind == 1 ? "IN (" : "IN (SELECT 1, ");
	for (size_t r = 0; r < rows && n < cap - 300; r++) {
		if (r)
			n = put_str(b, n, ", ");
		if (kind == 0)
			b[n++] = '(';
		size_t ww = kind ? 1 : uniform ? (r == odd ? w + 1 : w) : (R(30) ? w : 1 + R(3));
		for (size_t j = 0; j < ww; j++) {
			size_t e = uniform ? (r == odd ? R(10) : (shape + j) % 10) : R(15) ? (shape + j) % 10 : R(10);
			if (kind == 1 && R(20))
				e = R(3); /* IN: mostly placeholders */
			if (j)
				n = put_str(b, n, ", ");
			n = put_str(b, n, el[e]);
		}
		if (kind == 0)
			b[n++] = ')';
	}
	if (kind)
		b[n++] = ')';
	return n;
}

/* A sqlcommenter comment, broken in any way sometimes; its tags are compared
 * on their own too. */
static size_t gen_tags(char *b, size_t n)
{
	static const char kc[] = "abcxyz_ =,'\\%2F\t";
	static const char vc[] = "abcd.%2F3C/\\'' ,=*";
	size_t c0 = n, nt = R(5);
	n = put_str(b, n, "/*");
	for (size_t j = 0; j < nt; j++) {
		if (j)
			b[n++] = R(8) ? ',' : ' ';
		if (R(4) == 0)
			b[n++] = ' ';
		size_t kl = R(10);
		for (size_t i = 0; i < kl; i++)
			b[n++] = R(3) ? "controller"[i] : kc[R(sizeof(kc) - 1)];
		if (R(10))
			b[n++] = '=';
		if (R(10))
			b[n++] = '\'';
		size_t vl = R(R(4) ? 20 : 60);
		for (size_t i = 0; i < vl; i++)
			b[n++] = R(3) ? 'v' : vc[R(sizeof(vc) - 1)];
		if (R(10))
			b[n++] = '\'';
		if (R(5) == 0)
			b[n++] = ' ';
	}
	if (R(12))
		n = put_str(b, n, "*/");
	struct sql_norm r1, r2;
	old_sql_comment_tags(b + c0, n - c0, &r1);
	sql_comment_tags(b + c0, n - c0, &r2);
	same(&r1, &r2, b + c0, n - c0, "sql_comment_tags");
	return n;
}

/* Quoted identifiers of any length (with "" in them, unterminated sometimes)
 * joined by '.', ", " and near misses. */
static size_t gen_qidents(char *b, size_t n, size_t cap)
{
	static const char nm[] = "abc_xyzQ\"\"\"0123.,  '";
	static const char *const js[] = { ".", ".", ", ", ", ", ",", " , ", " .", "", ",  " };
	size_t ni = 1 + R(R(3) ? 4 : 16);
	for (size_t j = 0; j < ni && n < cap - 200; j++) {
		b[n++] = '"';
		size_t len = R(4) ? R(12) : R(80);
		for (size_t i = 0; i < len; i++)
			b[n++] = nm[R(sizeof(nm) - 1)];
		if (R(30))
			b[n++] = '"';
		if (j + 1 < ni)
			n = put_str(b, n, js[R(sizeof(js) / sizeof(js[0]))]);
	}
	return n;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 1000000;
	if (argc > 2)
		rs = strtoull(argv[2], NULL, 0) | 1;
	static char buf[16384];
	const size_t cap = sizeof(buf);
	skip_as_cast = getenv("NORMRAND_SKIP_AS_CAST") != NULL;
	for (long it = 0; it < iters; it++) {
		size_t n = R(3) ? put_str(buf, 0, start[R(NSTART)]) : 0;
		size_t nf = 1 + R(R(4) ? 12 : 40);
		for (size_t k = 0; k < nf && n < cap - 200; k++) {
			if (R(25) == 0 && n < 200)
				n = gen_list(buf, n, cap);
			else if (R(10) == 0)
				n = gen_tags(buf, n);
			else if (R(8) == 0)
				n = gen_qidents(buf, n, cap);
			else
				n = put_str(buf, n, frag[R(NFRAG)]);
			const char *sp = sep[R(NSEP)];
			size_t sl = sp[0] ? strlen(sp) : (R(2) ? 1 : 0); /* "\0": a NUL byte, or nothing */
			memcpy(buf + n, sp, sl);
			n += sl;
		}
		if (R(4) == 0 && n) { /* a random byte edit */
			static const char alpha[] = " \t\n'\"$-/*().,;:[]=<>!+eEbBxXuU&0123456789_aZ\\#@%^|`?~\x80\xff";
			buf[R(n)] = alpha[R(sizeof(alpha) - 1)];
		}
		if (R(6) == 0 && n > 16) /* cut at a random point */
			n = 16 + R(n - 16);
		char *q = malloc(n ? n : 1); /* exact size, for ASan */
		if (!q)
			abort();
		memcpy(q, buf, n);
		compare(q, n, (it & 7) == 0);
		free(q);
	}
	printf("normrand: %ld inputs (%ld skipped: \"::AS\"), 0 differences\n", iters, skipped);
	return 0;
}
