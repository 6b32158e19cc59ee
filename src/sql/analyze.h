/* analyze.h - cold-path statement analysis with libpg_query: what a statement is
 * (and whether it can write), which tables it reads, and which columns its WHERE
 * clause compares with a constant or parameter.  Used once per fingerprint by the
 * diagnosis (N+1 relation, missing-index candidates, "never EXPLAIN a write"),
 * never per execution.  Pure: no allocation that outlives the call. */
#ifndef PGMEDIC_ANALYZE_H
#define PGMEDIC_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>

#define SQLA_NAME 64
#define SQLA_MAX_TABLES 8
#define SQLA_MAX_PREDS 16
#define SQLA_MAX_ORDER 8

/* SelectStmt (also VALUES, UNION, SELECT INTO), InsertStmt, UpdateStmt, DeleteStmt;
 * SQLA_OTHER for MERGE (DML, writes) and for text with no statement at all;
 * SQLA_UTILITY for everything else (EXPLAIN, SET, DDL, COPY, BEGIN, CALL, DO, ...),
 * which is never looked into (no tables) and always counts as a write. */
enum sqla_kind { SQLA_OTHER = 0, SQLA_SELECT, SQLA_INSERT, SQLA_UPDATE, SQLA_DELETE, SQLA_UTILITY };

enum sqla_op {
	SQLA_EQ = 1,    /* col = const/param, or col IN (const/param list), col = ANY(...) */
	SQLA_RANGE,     /* <, <=, >, >=, BETWEEN */
	SQLA_LIKE,      /* LIKE / ILIKE / ~~ (prefix or not); NOT LIKE is SQLA_OTHER_OP */
	SQLA_NULLTEST,  /* IS [NOT] NULL */
	SQLA_OTHER_OP,  /* any other comparison of a column with a constant/param */
};

struct sqla_col {
	char table[SQLA_NAME];  /* the real table name (aliases resolved), "" if unknown: an unqualified
				 * column with several range entries, or a subquery/CTE/function alias */
	char schema[SQLA_NAME]; /* as written, "" if unqualified: in the column reference, else in the
				 * FROM entry it resolved to */
	char column[SQLA_NAME]; /* names are truncated to SQLA_NAME-1 bytes, as the server does */
};

struct sqla_pred {
	struct sqla_col col;
	enum sqla_op op;
};

struct sqla_table {
	char schema[SQLA_NAME]; /* "" if unqualified */
	char name[SQLA_NAME];
	char alias[SQLA_NAME];  /* "" if none */
};

struct sqla_join {
	struct sqla_col left, right; /* an equality between two columns (JOIN ... ON a.x = b.y, or in WHERE) */
};

struct sql_analysis {
	enum sqla_kind kind;
	bool writes;            /* INSERT/UPDATE/DELETE/MERGE, SELECT ... FOR UPDATE/SHARE, SELECT INTO,
				 * a data-modifying CTE, or any utility statement: never EXPLAIN ANALYZE it.
				 * Also a call of a well-known side-effect function (nextval, setval,
				 * set_config, pg_advisory_*, ...); user functions that write are not seen. */
	bool multi;             /* more than one statement in the text (only the first is analyzed) */
	struct sqla_table tables[SQLA_MAX_TABLES]; /* range tables in FROM/JOIN order (the main one first;
						    * UPDATE/DELETE/INSERT target first), then those of
						    * subqueries, CTEs and UNION branches; CTE references
						    * are no tables; duplicates (same name and alias) once */
	int ntables;
	struct sqla_pred preds[SQLA_MAX_PREDS];    /* top-level AND-ed WHERE predicates on columns
						    * (outer statement only; OR/NOT subtrees skipped) */
	int npreds;
	struct sqla_join joins[SQLA_MAX_TABLES];   /* outer statement only, in ON-then-WHERE order */
	int njoins;
	struct sqla_col order[SQLA_MAX_ORDER];     /* ORDER BY columns (expressions and positions skipped) */
	bool order_desc[SQLA_MAX_ORDER];
	int norder;
	bool has_limit;         /* LIMIT n / FETCH FIRST n (not LIMIT ALL) */
};

/* Parses text (PostgreSQL 15 grammar; $n parameters allowed).  0, or -1 with a
 * message in err when libpg_query cannot parse it (or the tree nests deeper than
 * 2048 JSON levels); out is all zero on failure.  err may be NULL; a short err
 * is filled truncated.  Thread-safe (libpg_query keeps its state per thread). */
int sql_analyze(const char *text, struct sql_analysis *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
