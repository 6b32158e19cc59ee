/* normalize.h - the hot-path SQL normalizer and fingerprint.
 *
 * A hand-written lexer that follows PostgreSQL 15's lexical rules (scan.l): quoted
 * identifiers, '' / E'' / U&'' / B'' / X'' / N'' strings (with '' doubling, E''
 * backslash escapes and the continuation of a string across a newline), dollar
 * quoting $tag$...$tag$, numeric forms (1, 1.5, .5, 1., 1e10, and PostgreSQL 16's
 * 0x1F, 0o17, 0b101, 1_000), parameters $n, nested block comments, line comments,
 * :: casts and operators (with scan.l's rule that a multi-character operator may
 * not end in + or - unless it contains one of ~!@#^&|`?%).  It replaces every
 * constant with a placeholder $n, collapses lists of constants or parameters to
 * their first entry followed by the comment MARKER below (as PostgreSQL 18's
 * pg_stat_statements does), drops comments, folds whitespace and the case of
 * unquoted words, and hashes the result into a 64-bit fingerprint.
 *
 * Pure function on a buffer: no allocation, no global state, never reads outside
 * [q, q + len) (a NUL byte inside is treated as whitespace), never writes outside
 * [out, out + cap).  Fuzzed (tests/fuzz/fuzz_normalize.c) and tested
 * differentially against libpg_query (tests/sqldiff/).
 *
 * WHAT IS A CONSTANT.  Exactly what libpg_query's pg_query_normalize replaces,
 * decided token by token without a parser:
 *  - numbers and strings of every form (a typed literal DATE '2020-01-01' or
 *    interval '1 day' keeps its type word: "date $1"; N'x' prints as "n $1");
 *  - NULL, TRUE and FALSE, except after IS / IS NOT (x IS NULL keeps its NULL);
 *  - LIMIT ALL (the grammar makes it a NULL constant), EXTRACT's field
 *    (extract(year from x) -> "extract($1 from x)");
 *  - a '-' sign folds into the number after it when the '-' cannot be binary:
 *    after an operator, ( [ , ; : or the start, or after a reserved keyword that
 *    expects an expression (SELECT, WHERE, AND, OR, NOT, WHEN, THEN, ELSE, CASE,
 *    LIMIT, OFFSET, BY, HAVING, ON, LIKE, BETWEEN, RETURNING, FROM, FOR, TO, IN,
 *    IS, ALL, ANY, ...).  So "x = -1", "select -1", "then -1" and "x = - 1" give one
 *    constant, "a - 1" and "a -1" an operator and a constant.  Not when the number
 *    is cast: -1::int is -(1::int) to the grammar, so it prints "- $1::int";
 *  - kept, as libpg_query keeps them: numbers and strings inside type modifiers
 *    (x::varchar(255), CAST(x AS numeric(10,2)), int[3], current_timestamp(3)), an
 *    integer that is a whole element of a query-level ORDER BY / GROUP BY list
 *    (ORDER BY 1 is a column position; window and aggregate ORDER BY are not
 *    query-level), and the escape character after UESCAPE;
 *  - statement kinds (first word): SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES,
 *    WITH, TABLE, DECLARE and "(" replace all constants; EXPLAIN too but not in its
 *    (options); COPY only inside its (query); SET replaces its values (SET x = 1,
 *    SET x TO a, b, SET TIME ZONE 'UTC', SET ROLE r, SET NAMES, SET SCHEMA, SET
 *    SESSION AUTHORIZATION; not DEFAULT or TIME ZONE LOCAL); CREATE/ALTER
 *    ROLE|USER|GROUP replace only the string after PASSWORD or UNTIL; DO and
 *    CREATE/ALTER USER MAPPING replace their strings; CREATE [OR REPLACE]
 *    FUNCTION|PROCEDURE the strings outside parentheses (LANGUAGE 'sql', the body).
 *    Every other statement (DDL, CALL, PREPARE, EXECUTE, NOTIFY, FETCH,
 *    SET TRANSACTION, ...) keeps its literals, as libpg_query and PostgreSQL 15's
 *    pg_stat_statements do; such statements get one fingerprint per distinct text.
 *
 * NUMBERING.  In the normalized text every placeholder, whether a replaced
 * constant or a $n the client wrote, is renumbered $1, $2, ... in order of
 * appearance.  So "a = $1" (extended protocol, psycopg 3) and "a = 42" (psycopg 2
 * interpolation) share a fingerprint, and so do "a = $2 and b = $1" and
 * "a = $1 and b = $2".  sql_redact() instead keeps the client's $n and numbers
 * constants after the highest of them, as libpg_query does.
 *
 * LISTS.  Collapsed to "first element" MARKER when they have at least two
 * elements that all have the same shape (the same normalized text once
 * placeholders are ignored):
 *  - IN (...) and ARRAY[...] whose every element is one placeholder, optionally
 *    followed by casts/COLLATE but no operator: IN (1, 2, 3), IN ($1, $2),
 *    IN ('a'::text, 'b'::text), ARRAY[1, 2] -> "in ($1" MARKER ")";
 *    IN (1) stays "in ($1)", IN (1::int, 2) and IN (a, b) are not collapsed;
 *  - the rows of VALUES when every row has the first row's shape (any contents:
 *    VALUES (1, now()), (2, now()) collapses): "values ($1, $2)" MARKER.
 * A MARKER comment already present in the list counts as further elements, so
 * normalizing normalized text gives the same text (idempotence, fuzzed).
 *
 * CANONICAL TEXT.  Tokens separated by one space, except: none after ( [ . ::
 * and before ) ] , ; . :: [; none before ( after a function name or quoted
 * identifier (count(*), but "in (", "values (", "as (" for keywords); none around
 * the ':' of a slice.  Unquoted words are lower-cased (ASCII only, like the
 * server), quoted identifiers and kept literals are copied verbatim, != prints as
 * <>, comments are dropped, and ';' appears only between two statements (a
 * trailing ';' or an empty statement changes nothing).
 *
 * INTENDED DIFFERENCES FROM libpg_query (its output is otherwise our oracle):
 *  - the numbering, list collapsing, spacing, case and comment rules above;
 *  - \v is whitespace (PostgreSQL 16), 0x/0o/0b/1_000 are numbers (PostgreSQL 16;
 *    15 rejects them), "1abc" is one number token (15 rejects it);
 *  - not modelled, because they need a parser: constants in the column definition
 *    list of a function in FROM (AS x(a varchar(10)) keeps 10 in libpg_query),
 *    typmods of a prefix typed literal (varchar(3) 'x'), ORDER BY (1) in
 *    parentheses, "- - 1", SET TRANSACTION modes and SET x = +1 (libpg_query
 *    replaces odd spans there), a string after PASSWORD that is not '...'.
 *
 * sqlcommenter tags: a block comment whose whole body is key='value' pairs
 * separated by commas (https://google.github.io/sqlcommenter/spec/) adds them to
 * res->tags, wherever it is in the statement.  Other comments add nothing. */
#ifndef PGMEDIC_NORMALIZE_H
#define PGMEDIC_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQL_MAX_TAGS 8

/* MARKER: what replaces the rest of a collapsed list (PostgreSQL 18's text). */
#define SQL_NORM_MARKER " /*, ... */"

/* A sqlcommenter key='value' pair found in a comment of the statement.  Spans
 * point into the input, still URL-encoded and escaped: decode with
 * sql_tag_decode(). */
struct sql_tag {
	const char *key;
	size_t key_len;
	const char *val;
	size_t val_len;
};

struct sql_norm {
	uint64_t fingerprint;   /* xxh3-64 of the normalized text */
	size_t len;             /* bytes of normalized text written to out (NUL not counted) */
	int nconst;             /* constants replaced by placeholders (before collapsing) */
	int ntags;              /* tags[] found (at most SQL_MAX_TAGS kept) */
	struct sql_tag tags[SQL_MAX_TAGS];
};

/* Output space that always suffices for an input of len bytes.  Placeholders
 * grow with their number: "1+1+1..." becomes "$1 + $2 + $3 ...", which passes 4x
 * once numbers reach five digits, hence the larger factor for long input. */
#define SQL_NORM_BOUND(len) (4 * (size_t)(len) + 64 + ((size_t)(len) >= 4096 ? 8 * (size_t)(len) : 0))

/* Normalizes q[0..len) into out (NUL-terminated) and fills *res.  Returns 0, or -1
 * when cap is too small (cap >= SQL_NORM_BOUND(len) never is).  Input that is not
 * valid SQL (an unterminated string, say) still gets a deterministic result; an
 * unterminated string, identifier or comment runs to the end of the input. */
int sql_normalize(const char *q, size_t len, char *out, size_t cap, struct sql_norm *res)
	__attribute__((warn_unused_result));

/* The statement as written with every constant replaced by a placeholder $n
 * (lists not collapsed; comments, case and whitespace kept): an example that shows
 * no literal values (they can be personal data).  The client's own $n are kept
 * and constants are numbered after the highest of them (at most 65535), the way
 * libpg_query numbers them, so the placeholders shown can differ from those of
 * the normalized text.  Same bounds contract as sql_normalize; returns bytes
 * written or -1. */
long sql_redact(const char *q, size_t len, char *out, size_t cap) __attribute__((warn_unused_result));

/* The tags of one block comment c[0..n) holding no other comment, as
 * sql_normalize finds them in it: into res->tags and res->ntags (the rest of *res
 * zeroed).  Cheaper than normalizing the comment. */
void sql_comment_tags(const char *c, size_t n, struct sql_norm *res);

/* URL-decodes a tag key or value (%XX) and undoes the sqlcommenter escaping of
 * \' into out (NUL-terminated, truncated to cap - 1 bytes).  Returns bytes written. */
size_t sql_tag_decode(const char *v, size_t n, char *out, size_t cap);

#endif
