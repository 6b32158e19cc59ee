/* session.h - which statements leave state in the server session that cannot
 * follow a client to another server connection (transaction pooling).  A light
 * scanner over the statement text: strings, quoted identifiers, dollar quotes and
 * comments are skipped; statements are split at top-level semicolons. */
#ifndef PGMEDIC_SESSION_H
#define PGMEDIC_SESSION_H

#include <stdbool.h>
#include <stddef.h>

enum sess_state {
	SESS_SET = 1 << 0,        /* SET of a parameter the server does not report */
	SESS_ROLE = 1 << 1,       /* SET ROLE / SET SESSION AUTHORIZATION */
	SESS_LISTEN = 1 << 2,     /* LISTEN */
	SESS_HOLD_CURSOR = 1 << 3,/* DECLARE ... WITH HOLD */
	SESS_TEMP = 1 << 4,       /* CREATE TEMP ... */
	SESS_PREPARE = 1 << 5,    /* SQL-level PREPARE */
	SESS_ADVISORY = 1 << 6,   /* session-level advisory lock functions */
};

/* Bit set of the session state the text creates (0 for none). */
unsigned sql_session_state(const char *q, size_t len);
/* True for most statements of an ORM, told by a quick look: then sql_session_state
 * is 0 and sql_parse_set finds no SET or RESET.  False says nothing. */
bool sql_plainly_stateless(const char *q, size_t len);
/* The same answer by the full token scan alone, without the quick look that
 * settles most statements first (for the tests that compare the two). */
unsigned sql_session_state_scan(const char *q, size_t len);
/* The session state a statement removes entirely, when q is exactly one of:
 * UNLISTEN * (LISTEN), CLOSE ALL (WITH HOLD cursors), DEALLOCATE [PREPARE] ALL
 * (PREPARE), DISCARD TEMP[ORARY] (temporary tables), SELECT pg_advisory_unlock_all()
 * (advisory locks).  0 for anything else: statements that remove one channel,
 * cursor, statement, table or lock leave the rest, which is not tracked by name. */
unsigned sql_session_release(const char *q, size_t len);
/* A named piece of session state one statement creates or removes. */
enum sql_name_op { SQL_NAME_ADD = 1, SQL_NAME_REMOVE = 2 };
struct sql_sess_name {
	unsigned bit;          /* SESS_LISTEN, SESS_HOLD_CURSOR, SESS_PREPARE or SESS_TEMP */
	enum sql_name_op op;
	char name[64];         /* folded to lower case unless it was quoted */
};
/* 1 when q is exactly one of: LISTEN ch / UNLISTEN ch, DECLARE c ... WITH HOLD ... /
 * CLOSE c, PREPARE p ... / DEALLOCATE [PREPARE] p, CREATE TEMP[ORARY] TABLE
 * [IF NOT EXISTS] t ... / DROP TABLE [IF EXISTS] t (one unqualified table);
 * 0 for anything else (then a pin can only go with the whole kind). */
int sql_session_name(const char *q, size_t len, struct sql_sess_name *out);
/* libpg_query's second opinion (confirm.c) on a single SELECT the scanner flagged
 * with SESS_ADVISORY and/or SESS_SET: keeps a bit only when an advisory lock
 * function is really called / set_config() really sets a session-level value
 * (is_local not the constant true).  Other texts and parse failures: bits unchanged. */
unsigned sql_session_confirm(const char *q, size_t len, unsigned bits);
/* Short human name of the lowest bit set ("SET", "LISTEN", ...). */
const char *sess_state_name(unsigned bits);

/* The tokens of the first statement of q (up to max), as written (quoted strings
 * and identifiers unquoted); *trailing says whether more followed (another
 * statement, or more than max tokens).  For the admin console's verbs (RELOAD,
 * PAUSE db, ...), which are not SQL. */
size_t sql_words(const char *q, size_t len, char words[][64], size_t max, bool *trailing);

enum sql_set_kind { SQL_SET = 1, SQL_RESET = 2, SQL_RESET_ALL = 3 };
struct sql_set {
	enum sql_set_kind kind;
	char name[64];        /* lower-cased (dotted custom names kept whole) */
	const char *value;    /* SET: the value as written (into q) */
	size_t value_len;
	int tracked;          /* a reported parameter (RESET only): its index; else -1 */
};
/* 1 when q is exactly one `SET [SESSION] name {TO|=} value` of a parameter
 * PostgreSQL does not report, `RESET name` (`SET name TO DEFAULT`) of any, or
 * `RESET ALL`: what pgmedic can replay on another server connection; 0 otherwise. */
int sql_parse_set(const char *q, size_t len, struct sql_set *out);

#endif
