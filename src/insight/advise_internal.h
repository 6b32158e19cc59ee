/* advise_internal.h - the pure half of advise_explain.c, exposed for its unit tests
 * only: reading an EXPLAIN (FORMAT JSON) document, deciding which table scans an
 * index would help, choosing the candidate columns and wording the finding.
 * Nothing here talks to PostgreSQL; the catalog facts (table sizes, quoted names)
 * are inputs. */
#ifndef PGMEDIC_ADVISE_INTERNAL_H
#define PGMEDIC_ADVISE_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "sql/analyze.h"

#define ADVISE_MAX_SCANS 64 /* table scans of one plan we look at; the rest are ignored */
#define ADVISE_MAX_COLS 4   /* columns of a suggested index */
#define ADVISE_FRACTION 0.05 /* a filter keeping less than this share of the rows it reads wants an index */

/* Why an index on the table of a scan would help. */
enum advise_why {
	ADVISE_NO = 0,
	ADVISE_FILTER,     /* the scan reads the table to keep a small fraction of it */
	ADVISE_SORT_LIMIT, /* the table is sorted only to return the first rows of a LIMIT */
};

/* One plan node that reads a table: Seq Scan, Index Scan, Index Only Scan or
 * Bitmap Heap Scan.  Strings point into the EXPLAIN document, which must outlive it. */
struct advise_scan {
	const char *node_type;
	const char *relation;
	const char *schema;  /* "" when EXPLAIN did not say (no VERBOSE) */
	const char *filter;  /* NULL when none */
	double plan_rows;    /* estimated rows returned per loop (per process when parallel) */
	double actual_rows;  /* rows returned per loop; -1 when not analyzed or never executed */
	double loops;        /* Actual Loops; 1 when not analyzed */
	double rows_removed; /* Rows Removed by Filter per loop; -1 when not shown */
	double cost;         /* Total Cost of the node */
	int workers;         /* Workers Planned of the Gather above a parallel-aware scan, else 0 */
	bool sort_limit;     /* feeds a Sort that sits under a Limit */
	double limit_rows;   /* rows of that Limit (actual when analyzed); -1 when no such Limit */
	double table_rows;   /* pg_class.reltuples; -1 until the caller fills it, or unknown */
};

struct advise_plan {
	double total_cost; /* of the root node */
	double plan_rows;  /* of the root node */
	bool analyzed;     /* EXPLAIN ANALYZE output (actual rows present) */
	struct advise_scan scans[ADVISE_MAX_SCANS]; /* in plan order (depth first) */
	int nscans;
};

/* Reads the output of EXPLAIN (FORMAT JSON) - an array holding {"Plan": {...}, ...} -
 * into p, every table_rows -1.  0, or -1 with err when the document is not a plan. */
int advise_plan_read(const json_t *doc, struct advise_plan *p, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* The summary documented for advise_explain()'s *plan (advise.h), taking table_rows
 * from p.  A new reference, or NULL when out of memory. */
json_t *advise_plan_summary(const json_t *doc, const struct advise_plan *p);

/* The missing-index rule for one scan (table_rows filled): a table of at least
 * min_table_rows rows that a Seq Scan filters down to under ADVISE_FRACTION of what it
 * reads, or that an Index / Bitmap Heap Scan reads mostly to throw away (Rows Removed
 * by Filter, analyzed only), or that is sorted for a LIMIT. */
enum advise_why advise_scan_why(const struct advise_scan *s, bool analyzed, double min_table_rows);

/* The btree candidate columns for the table of s, from the statement: equality
 * columns in WHERE order, then one range column, then ORDER BY columns; no
 * duplicates, at most ADVISE_MAX_COLS.  ORDER BY columns alone count only with a
 * LIMIT (without one, an index gives nothing the sort does not).  Returns how many. */
int advise_candidates(const struct sql_analysis *a, const struct advise_scan *s,
		      char cols[ADVISE_MAX_COLS][SQLA_NAME]);

/* "<table>_<col>_<col>_idx" cut to PostgreSQL's 63 bytes (on a UTF-8 boundary). */
void advise_index_name(const char *relation, const char cols[][SQLA_NAME], int ncols, char *out, size_t outlen);

/* Everything the missing_index finding says; identifiers already quoted for SQL. */
struct advise_finding_in {
	const char *table;          /* as shown: "t", or "schema.t" outside the current schema */
	const char *table_sql;      /* quoted, qualified as shown */
	const char *const *cols;    /* column names */
	const char *const *cols_sql;/* quoted */
	int ncols;
	const char *index_sql;      /* quoted index name */
	enum advise_why why;
	double table_rows;          /* rows the table holds */
	double rows_returned;       /* rows the scan (or the LIMIT, for a sort) returns */
	double cost_before;         /* total cost of the plan */
	double cost_after;          /* with the hypothetical index; < 0 when not measured */
};

/* The missing_index finding (fields per advise.h).  NULL when out of memory. */
json_t *advise_finding_new(const struct advise_finding_in *in);

#endif
