/* advise.h - the diagnosis work that talks to PostgreSQL: catalog checks and
 * EXPLAIN / hypothetical-index verification.  Every function here BLOCKS on its
 * libpq connection: they run on the advisor thread (advisor.c) or in the
 * `pgmedic doctor` command, never on the proxy's event loop.
 *
 * Findings are jansson objects in the /api/findings contract (README "Findings"):
 *   id (string, stable for the same problem), kind, severity ("high"|"medium"|"low"),
 *   route (null), table, columns (array of strings), fingerprint (null or hex),
 *   query (null or text), occurrences (integer), time_wasted_ms (number),
 *   fix (one human sentence), sql (the SQL fix, or null), django (object or null),
 *   plus kind-specific fields (missing_index: cost_before, cost_after, verified;
 *   unused_index / redundant_index: index, size_bytes; ...). */
#ifndef PGMEDIC_ADVISE_H
#define PGMEDIC_ADVISE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- catalog (advise_catalog.c) ---- */

/* Appends to `out` the catalog findings of the connected database:
 *  - unindexed_foreign_key: a FOREIGN KEY whose columns are not the leading columns
 *    of any index of the referencing table (fix: CREATE INDEX CONCURRENTLY ...;
 *    Django: db_index=True on the field, or Meta.indexes);
 *  - unused_index: idx_scan = 0 in pg_stat_user_indexes, not unique/primary/
 *    exclusion, not backing a constraint (fix: DROP INDEX CONCURRENTLY ...);
 *  - redundant_index: an index whose columns are a leading prefix of another
 *    index's on the same table (same kind, no predicate/expression; a unique index
 *    is never redundant to a non-unique one) (fix: DROP INDEX CONCURRENTLY ...).
 * Each with sizes (pg_relation_size) and, when `models` (the ORM map posted by
 * pgmedic_models, or NULL) knows the table, the Django model and field in "django"
 * and the fix sentence.  Tables of schemas pg_catalog, information_schema and
 * pg_toast are ignored.  0, or -1 with err. */
int advise_catalog(PGconn *c, const json_t *models, json_t *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* The schema facts the N+1 relator needs, as JSON:
 *   {"foreign_keys": [{"table", "columns": [...], "ref_table", "ref_columns": [...]}],
 *    "primary_keys": {"table": ["col", ...]},
 *    "tables": {"table": {"rows": reltuples, "bytes": size}}}
 * Table names are unqualified for the search_path's first schema (public), else
 * "schema.table".  *schema gets a new reference.  0, or -1 with err. */
int advise_schema(PGconn *c, json_t **schema, char *err, size_t errlen) __attribute__((warn_unused_result));

/* ---- EXPLAIN and hypothetical indexes (advise_explain.c) ---- */

struct advise_opts {
	bool analyze_selects;       /* EXPLAIN ANALYZE a plain SELECT (READ ONLY transaction,
				     * statement_timeout below); never anything else */
	int statement_timeout_ms;   /* for EXPLAIN / EXPLAIN ANALYZE; default 5000 */
	bool create_hypopg;         /* CREATE EXTENSION IF NOT EXISTS hypopg when missing */
	double min_table_rows;      /* tables smaller than this never get a missing_index (default 10000) */
};

/* EXPLAIN (FORMAT JSON) of `sql` — a single SELECT with its literal values inlined
 * (the caller checked with sql_analyze that it cannot write; this function checks
 * again and refuses anything but a plain SELECT).  Sets *plan to a summary:
 *   {"total_cost", "plan_rows", "node_types": [...distinct...],
 *    "costliest_node": {"node_type", "relation", "cost", "plan_rows", "actual_rows"|null, "filter"|null},
 *    "seq_scans": [{"relation", "filter", "plan_rows", "table_rows", "rows_removed"|null}],
 *    "sorts": [{"sort_key": [...], "cost"}], "analyzed": bool}
 * and, when the plan shows a Seq Scan of a table above min_table_rows whose filter
 * keeps a small fraction of it (or a Sort an index would avoid), *finding to a
 * missing_index finding: btree candidate columns = equality columns first, then
 * range columns, then ORDER BY columns (from the statement's WHERE/ORDER BY via
 * sql_analyze), "sql": "CREATE INDEX CONCURRENTLY ON t (a, b)", "cost_before",
 * "cost_after" and "verified" (true when HypoPG is available and the plan with the
 * hypothetical index costs at most half; false and cost_after null without HypoPG).
 * Never creates a real index; hypothetical indexes are reset before returning.
 * *finding is NULL when there is none.  0, or -1 with err. */
int advise_explain(PGconn *c, const char *sql, const struct advise_opts *o, json_t **plan, json_t **finding,
		   char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
