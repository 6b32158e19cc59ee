/* advise_explain.c - EXPLAIN of one SELECT, its plan summary, and the missing-index
 * finding proven (or not) with a HypoPG hypothetical index.  See advise.h.
 *
 * Safety first: the statement must be a plain SELECT by sql_analyze, it runs only
 * inside BEGIN READ ONLY ... ROLLBACK with a transaction-local statement_timeout,
 * through the extended protocol (one statement per call, so no "; COMMIT" can ride
 * along), and no real index is ever created.  Hypothetical indexes live in the
 * backend, not in the transaction, so hypopg_reset() runs after every attempt.
 *
 * The pure half (plan reading, the rule, candidates, wording) is declared in
 * advise_internal.h for the unit tests. */
#include "insight/advise.h"
#include "insight/advise_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sql/analyze.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_MIN_TABLE_ROWS 10000.0
#define INDEX_SCAN_MIN_REMOVED 1000.0 /* an index scan discarding fewer rows is cheap enough */
#define QNAME 160                     /* a quoted, possibly schema-qualified identifier */

/* ------------------------------------------------------------------ plan reading */

static double num(const json_t *o, const char *key, double dflt)
{
	const json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool is_scan_type(const char *t)
{
	return strcmp(t, "Seq Scan") == 0 || strcmp(t, "Index Scan") == 0 || strcmp(t, "Index Only Scan") == 0 ||
	       strcmp(t, "Bitmap Heap Scan") == 0;
}

/* What a node passes down to its children. */
struct walk_ctx {
	bool under_limit;      /* a Limit is above, with only Gather/Result nodes between */
	bool under_sort_limit; /* a Sort under such a Limit is above (its input gets sorted for the LIMIT) */
	double limit_rows;
	int workers;           /* Workers Planned of the nearest Gather above */
};

static double rows_of(const json_t *node, bool analyzed)
{
	if (analyzed && num(node, "Actual Loops", 0) > 0)
		return num(node, "Actual Rows", 0) * num(node, "Actual Loops", 1);
	return num(node, "Plan Rows", 0);
}

static void walk(const json_t *node, struct walk_ctx ctx, struct advise_plan *p, int depth)
{
	const char *type = str(node, "Node Type");
	if (!type || depth > 200) /* PostgreSQL plans are never that deep; stops a hostile document */
		return;
	if (is_scan_type(type) && str(node, "Relation Name") && p->nscans < ADVISE_MAX_SCANS) {
		struct advise_scan *s = &p->scans[p->nscans++];
		bool ran = p->analyzed && num(node, "Actual Loops", 0) > 0;
		s->node_type = type;
		s->relation = str(node, "Relation Name");
		s->schema = str(node, "Schema") ? str(node, "Schema") : "";
		s->filter = str(node, "Filter");
		s->plan_rows = num(node, "Plan Rows", 0);
		s->actual_rows = ran ? num(node, "Actual Rows", 0) : -1;
		s->loops = ran ? num(node, "Actual Loops", 1) : 1;
		s->rows_removed = ran ? num(node, "Rows Removed by Filter", -1) : -1;
		s->cost = num(node, "Total Cost", 0);
		s->workers = json_is_true(json_object_get(node, "Parallel Aware")) ? ctx.workers : 0;
		s->sort_limit = ctx.under_sort_limit;
		s->limit_rows = ctx.under_sort_limit ? ctx.limit_rows : -1;
		s->table_rows = -1;
	}
	struct walk_ctx child = {.workers = ctx.workers, .limit_rows = ctx.limit_rows};
	if (strcmp(type, "Limit") == 0) {
		child.under_limit = true;
		child.limit_rows = rows_of(node, p->analyzed);
	} else if (strcmp(type, "Gather") == 0 || strcmp(type, "Gather Merge") == 0 || strcmp(type, "Result") == 0) {
		child.under_limit = ctx.under_limit;
		child.under_sort_limit = ctx.under_sort_limit;
		if (strcmp(type, "Result") != 0)
			child.workers = (int)num(node, "Workers Planned", 0);
	} else if (strcmp(type, "Sort") == 0 || strcmp(type, "Incremental Sort") == 0) {
		child.under_sort_limit = ctx.under_limit;
	}
	const json_t *kids = json_object_get(node, "Plans");
	size_t i;
	const json_t *k;
	json_array_foreach(kids, i, k)
		walk(k, child, p, depth + 1);
}

static const json_t *root_plan(const json_t *doc)
{
	const json_t *top = json_is_array(doc) ? json_array_get(doc, 0) : doc;
	const json_t *plan = json_object_get(top, "Plan");
	return json_is_object(plan) ? plan : NULL;
}

int advise_plan_read(const json_t *doc, struct advise_plan *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	const json_t *root = root_plan(doc);
	if (!root || !str(root, "Node Type")) {
		snprintf(err, errlen, "EXPLAIN output has no plan");
		return -1;
	}
	p->total_cost = num(root, "Total Cost", 0);
	p->plan_rows = num(root, "Plan Rows", 0);
	p->analyzed = json_object_get(root, "Actual Loops") != NULL;
	walk(root, (struct walk_ctx){.limit_rows = -1}, p, 0);
	return 0;
}

/* ------------------------------------------------------------------ summary */

static double round2(double v) { return round(v * 100.0) / 100.0; }

/* Sticky failure bit: set many fields, check once. */
struct jb {
	bool failed;
};

static void jset(struct jb *b, json_t *o, const char *key, json_t *v)
{
	if (!v || json_object_set_new(o, key, v) != 0)
		b->failed = true;
}

static void jpush(struct jb *b, json_t *a, json_t *v)
{
	if (!v || json_array_append_new(a, v) != 0)
		b->failed = true;
}

static json_t *jstr_or_null(const char *s) { return s ? json_string(s) : json_null(); }

struct sum_ctx {
	struct jb b;
	bool analyzed;
	json_t *types, *sorts;
	const json_t *costliest;
	double costliest_cost;
};

static void sum_walk(const json_t *node, struct sum_ctx *sc, int depth)
{
	const char *type = str(node, "Node Type");
	if (!type || depth > 200)
		return;
	bool seen = false;
	size_t i;
	const json_t *v;
	json_array_foreach(sc->types, i, v)
		if (strcmp(json_string_value(v), type) == 0)
			seen = true;
	if (!seen)
		jpush(&sc->b, sc->types, json_string(type));

	/* Total Cost includes the children's: the costliest node is the one whose own
	 * share is largest, not the root. */
	double self = num(node, "Total Cost", 0);
	const json_t *kids = json_object_get(node, "Plans");
	const json_t *k;
	json_array_foreach(kids, i, k)
		self -= num(k, "Total Cost", 0);
	if (self < 0)
		self = 0;
	if (!sc->costliest || self > sc->costliest_cost) {
		sc->costliest = node;
		sc->costliest_cost = self;
	}
	if (strcmp(type, "Sort") == 0 || strcmp(type, "Incremental Sort") == 0) {
		json_t *s = json_object();
		json_t *keys = json_array();
		const json_t *sk;
		json_array_foreach(json_object_get(node, "Sort Key"), i, sk)
			if (json_is_string(sk))
				jpush(&sc->b, keys, json_copy((json_t *)sk));
		if (s) {
			jset(&sc->b, s, "sort_key", keys);
			jset(&sc->b, s, "cost", json_real(round2(num(node, "Total Cost", 0))));
		} else {
			json_decref(keys);
		}
		jpush(&sc->b, sc->sorts, s);
	}
	json_array_foreach(kids, i, k)
		sum_walk(k, sc, depth + 1);
}

json_t *advise_plan_summary(const json_t *doc, const struct advise_plan *p)
{
	const json_t *root = root_plan(doc);
	json_t *out = json_object();
	struct sum_ctx sc = {.analyzed = p->analyzed, .types = json_array(), .sorts = json_array()};
	json_t *seq = json_array();
	if (!out || !sc.types || !sc.sorts || !seq || !root) {
		json_decref(out);
		json_decref(sc.types);
		json_decref(sc.sorts);
		json_decref(seq);
		return NULL;
	}
	sum_walk(root, &sc, 0);
	jset(&sc.b, out, "total_cost", json_real(round2(p->total_cost)));
	jset(&sc.b, out, "plan_rows", json_real(p->plan_rows));
	jset(&sc.b, out, "node_types", sc.types);

	json_t *cn = json_object();
	if (cn && sc.costliest) {
		const json_t *n = sc.costliest;
		bool ran = p->analyzed && num(n, "Actual Loops", 0) > 0;
		jset(&sc.b, cn, "node_type", json_string(str(n, "Node Type")));
		jset(&sc.b, cn, "relation", jstr_or_null(str(n, "Relation Name")));
		jset(&sc.b, cn, "cost", json_real(round2(sc.costliest_cost)));
		jset(&sc.b, cn, "plan_rows", json_real(num(n, "Plan Rows", 0)));
		jset(&sc.b, cn, "actual_rows", ran ? json_real(num(n, "Actual Rows", 0)) : json_null());
		jset(&sc.b, cn, "filter", jstr_or_null(str(n, "Filter")));
	}
	jset(&sc.b, out, "costliest_node", cn);

	for (int i = 0; i < p->nscans; i++) {
		const struct advise_scan *s = &p->scans[i];
		if (strcmp(s->node_type, "Seq Scan") != 0)
			continue;
		json_t *o = json_object();
		if (o) {
			jset(&sc.b, o, "relation", json_string(s->relation));
			jset(&sc.b, o, "filter", jstr_or_null(s->filter));
			jset(&sc.b, o, "plan_rows", json_real(s->plan_rows));
			jset(&sc.b, o, "table_rows", s->table_rows >= 0 ? json_real(s->table_rows) : json_null());
			jset(&sc.b, o, "rows_removed", s->rows_removed >= 0 ? json_real(s->rows_removed) : json_null());
		}
		jpush(&sc.b, seq, o);
	}
	jset(&sc.b, out, "seq_scans", seq);
	jset(&sc.b, out, "sorts", sc.sorts);
	jset(&sc.b, out, "analyzed", json_boolean(p->analyzed));
	if (sc.b.failed) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* ------------------------------------------------------------------ the rule */

enum advise_why advise_scan_why(const struct advise_scan *s, bool analyzed, double min_table_rows)
{
	bool measured = analyzed && s->actual_rows >= 0 && s->rows_removed >= 0;
	double table = s->table_rows;
	if (table < 0 && measured) /* never analyzed table: what the scan read is the best guess */
		table = (s->actual_rows + s->rows_removed) * (s->workers + 1);
	if (table < 0 || table < min_table_rows)
		return ADVISE_NO;

	if (strcmp(s->node_type, "Seq Scan") == 0 && s->filter) {
		double frac;
		if (measured) {
			double read = s->actual_rows + s->rows_removed;
			frac = read > 0 ? s->actual_rows / read : 1.0;
		} else {
			/* A parallel scan's estimate is per process: scale it back to the table. */
			frac = s->plan_rows * (s->workers + 1) / (table > 0 ? table : 1.0);
		}
		if (frac < ADVISE_FRACTION)
			return ADVISE_FILTER;
	} else if (strcmp(s->node_type, "Seq Scan") != 0 && s->filter && measured &&
		   s->rows_removed >= INDEX_SCAN_MIN_REMOVED &&
		   s->actual_rows < ADVISE_FRACTION * (s->actual_rows + s->rows_removed)) {
		/* An index gets there but the Filter throws most of it away: a wider index would not. */
		return ADVISE_FILTER;
	}
	return s->sort_limit ? ADVISE_SORT_LIMIT : ADVISE_NO;
}

static bool col_of_scan(const struct sql_analysis *a, const struct sqla_col *c, const struct advise_scan *s)
{
	if (c->table[0] == '\0') /* unqualified column: certain only when there is one table */
		return a->ntables == 1 && strcmp(a->tables[0].name, s->relation) == 0 &&
		       (a->tables[0].schema[0] == '\0' || s->schema[0] == '\0' ||
			strcmp(a->tables[0].schema, s->schema) == 0);
	if (strcmp(c->table, s->relation) != 0)
		return false;
	return c->schema[0] == '\0' || s->schema[0] == '\0' || strcmp(c->schema, s->schema) == 0;
}

static int add_col(char cols[ADVISE_MAX_COLS][SQLA_NAME], int n, const char *name)
{
	if (n >= ADVISE_MAX_COLS || name[0] == '\0')
		return n;
	for (int i = 0; i < n; i++)
		if (strcmp(cols[i], name) == 0)
			return n;
	snprintf(cols[n], SQLA_NAME, "%s", name);
	return n + 1;
}

int advise_candidates(const struct sql_analysis *a, const struct advise_scan *s,
		      char cols[ADVISE_MAX_COLS][SQLA_NAME])
{
	int n = 0;
	for (int i = 0; i < a->npreds && i < SQLA_MAX_PREDS; i++)
		if (a->preds[i].op == SQLA_EQ && col_of_scan(a, &a->preds[i].col, s))
			n = add_col(cols, n, a->preds[i].col.column);
	/* One range column only: a btree serves columns after a range poorly. */
	for (int i = 0; i < a->npreds && i < SQLA_MAX_PREDS; i++)
		if (a->preds[i].op == SQLA_RANGE && col_of_scan(a, &a->preds[i].col, s)) {
			n = add_col(cols, n, a->preds[i].col.column);
			break;
		}
	int before_order = n;
	for (int i = 0; i < a->norder && i < SQLA_MAX_ORDER; i++)
		if (col_of_scan(a, &a->order[i], s))
			n = add_col(cols, n, a->order[i].column);
	if (before_order == 0 && !a->has_limit)
		return 0;
	return n;
}

void advise_index_name(const char *relation, const char cols[][SQLA_NAME], int ncols, char *out, size_t outlen)
{
	char buf[64 + SQLA_NAME * (ADVISE_MAX_COLS + 1) + 8];
	size_t len = (size_t)snprintf(buf, sizeof(buf), "%s", relation);
	for (int i = 0; i < ncols && len < sizeof(buf); i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "_%s", cols[i]);
	if (len < sizeof(buf))
		snprintf(buf + len, sizeof(buf) - len, "_idx");
	/* PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes; do it ourselves so
	 * the finding shows the name the index will really get, and cut whole characters. */
	size_t cut = strlen(buf);
	if (cut > 63) {
		cut = 63;
		while (cut > 0 && ((unsigned char)buf[cut] & 0xC0) == 0x80)
			cut--;
	}
	buf[cut] = '\0';
	snprintf(out, outlen, "%s", buf);
}

/* 200000 -> "200,000". */
static void fmt_count(double v, char *out, size_t outlen)
{
	char digits[32];
	snprintf(digits, sizeof(digits), "%.0f", v < 0 ? 0 : v);
	size_t n = strlen(digits), o = 0;
	for (size_t i = 0; i < n && o + 2 < outlen; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = digits[i];
	}
	out[o < outlen ? o : outlen - 1] = '\0';
}

static void fmt_cost(double v, char *out, size_t outlen)
{
	snprintf(out, outlen, v >= 100 ? "%.0f" : "%.2f", v);
}

json_t *advise_finding_new(const struct advise_finding_in *in)
{
	char cols_id[ADVISE_MAX_COLS * (SQLA_NAME + 1)] = "", cols_show[ADVISE_MAX_COLS * (SQLA_NAME + 2)] = "";
	char cols_sql[ADVISE_MAX_COLS * (QNAME + 2)] = "";
	for (int i = 0; i < in->ncols; i++) {
		const char *sep = i ? "," : "";
		const char *sep2 = i ? ", " : "";
		size_t l;
		l = strlen(cols_id);
		snprintf(cols_id + l, sizeof(cols_id) - l, "%s%s", sep, in->cols[i]);
		l = strlen(cols_show);
		snprintf(cols_show + l, sizeof(cols_show) - l, "%s%s", sep2, in->cols[i]);
		l = strlen(cols_sql);
		snprintf(cols_sql + l, sizeof(cols_sql) - l, "%s%s", sep2, in->cols_sql[i]);
	}
	bool measured = in->cost_after >= 0;
	bool verified = measured && in->cost_after <= in->cost_before / 2;
	double ratio = measured ? in->cost_before / (in->cost_after > 0.01 ? in->cost_after : 0.01) : 0;
	const char *severity;
	if (verified)
		severity = ratio >= 10 ? "high" : "medium";
	else if (measured) /* HypoPG says the index would not even halve the cost */
		severity = "low";
	else
		severity = in->table_rows >= 100000 ? "medium" : "low";

	char rows[32], ret[32], before[32], after[32];
	fmt_count(in->table_rows, rows, sizeof(rows));
	fmt_count(in->rows_returned, ret, sizeof(ret));
	fmt_cost(round2(in->cost_before), before, sizeof(before));
	fmt_cost(round2(in->cost_after), after, sizeof(after));
	const char *verb = in->why == ADVISE_SORT_LIMIT ? "sorts" : "scans";
	char *fix = NULL, *id = NULL, *sql = NULL;
	int r1, r2, r3;
	if (verified)
		r1 = asprintf(&fix, "Add an index on %s (%s): the query %s %s rows to return %s; with the index its "
			      "cost goes from %s to %s (checked with a hypothetical index).",
			      in->table, cols_show, verb, rows, ret, before, after);
	else if (measured)
		r1 = asprintf(&fix, "An index on %s (%s) may not be worth it: the query %s %s rows to return %s, but "
			      "with a hypothetical index its cost only goes from %s to %s.",
			      in->table, cols_show, verb, rows, ret, before, after);
	else
		r1 = asprintf(&fix, "Add an index on %s (%s): the query %s %s rows to return %s (cost %s; not "
			      "verified: HypoPG is not available).",
			      in->table, cols_show, verb, rows, ret, before);
	r2 = asprintf(&id, "missing_index:%s(%s)", in->table, cols_id);
	r3 = asprintf(&sql, "CREATE INDEX CONCURRENTLY %s ON %s (%s);", in->index_sql, in->table_sql, cols_sql);
	json_t *f = json_object();
	json_t *cols = json_array();
	struct jb b = {.failed = r1 < 0 || r2 < 0 || r3 < 0 || !f || !cols};
	if (!b.failed) {
		for (int i = 0; i < in->ncols; i++)
			jpush(&b, cols, json_string(in->cols[i]));
		jset(&b, f, "id", json_string(id));
		jset(&b, f, "kind", json_string("missing_index"));
		jset(&b, f, "severity", json_string(severity));
		jset(&b, f, "route", json_null());
		jset(&b, f, "table", json_string(in->table));
		jset(&b, f, "columns", cols);
		cols = NULL;
		jset(&b, f, "fingerprint", json_null());
		jset(&b, f, "query", json_null());
		jset(&b, f, "occurrences", json_integer(1));
		jset(&b, f, "time_wasted_ms", json_real(0));
		jset(&b, f, "fix", json_string(fix));
		jset(&b, f, "sql", json_string(sql));
		jset(&b, f, "django", json_null());
		jset(&b, f, "cost_before", json_real(round2(in->cost_before)));
		jset(&b, f, "cost_after", measured ? json_real(round2(in->cost_after)) : json_null());
		jset(&b, f, "verified", json_boolean(verified));
		jset(&b, f, "plan_rows", json_real(in->rows_returned));
		jset(&b, f, "table_rows", json_real(in->table_rows));
	}
	if (r1 >= 0)
		free(fix);
	if (r2 >= 0)
		free(id);
	if (r3 >= 0)
		free(sql);
	json_decref(cols);
	if (b.failed) {
		json_decref(f);
		return NULL;
	}
	return f;
}

/* ------------------------------------------------------------------ PostgreSQL */

/* One statement through the extended protocol.  The result on success; NULL with
 * err (and sqlstate, when given) otherwise. */
static PGresult *run(PGconn *c, const char *sql, int nparams, const char *const *params, char *sqlstate,
		     char *err, size_t errlen)
{
	if (sqlstate)
		sqlstate[0] = '\0';
	PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
		return r;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (!msg || !msg[0])
		msg = PQerrorMessage(c);
	size_t n = strcspn(msg, "\n");
	snprintf(err, errlen, "%.*s", (int)n, msg);
	if (sqlstate && r && PQresultErrorField(r, PG_DIAG_SQLSTATE))
		snprintf(sqlstate, 6, "%s", PQresultErrorField(r, PG_DIAG_SQLSTATE));
	PQclear(r);
	return NULL;
}

static int run_ok(PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *r = run(c, sql, 0, NULL, NULL, err, errlen);
	PQclear(r);
	return r ? 0 : -1;
}

/* Ends whatever transaction is open; never COMMIT. */
static void rollback(PGconn *c)
{
	if (PQtransactionStatus(c) == PQTRANS_IDLE)
		return;
	PQclear(PQexec(c, "ROLLBACK"));
}

/* BEGIN READ ONLY; SET LOCAL statement_timeout; [pre($1 = pre_param);] EXPLAIN.
 * Leaves the transaction open (the caller reads the catalog in it, then rolls back). */
static __attribute__((warn_unused_result)) int
explain_in_txn(PGconn *c, const char *sql, const char *options, int timeout_ms, const char *pre,
	       const char *pre_param, json_t **doc, char *sqlstate, char *err, size_t errlen)
{
	char set[64];
	char *text = NULL;
	int rc = -1;
	PGresult *r = NULL;
	sqlstate[0] = '\0';
	snprintf(set, sizeof(set), "SET LOCAL statement_timeout = %d", timeout_ms);
	if (run_ok(c, "BEGIN TRANSACTION READ ONLY", err, errlen) != 0 || run_ok(c, set, err, errlen) != 0)
		goto out;
	if (pre) {
		r = run(c, pre, 1, &pre_param, NULL, err, errlen);
		if (!r)
			goto out;
		PQclear(r);
		r = NULL;
	}
	if (asprintf(&text, "EXPLAIN (%s) %s", options, sql) < 0) {
		text = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	r = run(c, text, 0, NULL, sqlstate, err, errlen);
	if (!r)
		goto out;
	if (PQntuples(r) < 1 || PQnfields(r) < 1) {
		snprintf(err, errlen, "EXPLAIN returned no rows");
		goto out;
	}
	json_error_t je;
	*doc = json_loads(PQgetvalue(r, 0, 0), 0, &je);
	if (!*doc) {
		snprintf(err, errlen, "EXPLAIN output is not JSON: %s", je.text);
		goto out;
	}
	rc = 0;
out:
	PQclear(r);
	free(text);
	return rc;
}

/* What pg_class says about the table of one scan. */
struct relinfo {
	bool found;
	char oid[16];
	double reltuples;    /* -1: never analyzed */
	bool current_schema; /* shown unqualified */
	char qschema[QNAME], qrel[QNAME];
	char shown[2 * SQLA_NAME + 2];
};

static __attribute__((warn_unused_result)) int
lookup_rel(PGconn *c, const struct advise_scan *s, struct relinfo *ri, char *err, size_t errlen)
{
	const char *params[2] = {s->relation, s->schema};
	memset(ri, 0, sizeof(*ri));
	PGresult *r = run(c,
			  "SELECT c.oid::text, c.reltuples::float8, quote_ident(n.nspname), quote_ident(c.relname),"
			  " n.nspname = current_schema(), n.nspname"
			  " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
			  " WHERE c.relname = $1 AND (n.nspname = $2 OR ($2 = '' AND pg_table_is_visible(c.oid)))"
			  " LIMIT 1",
			  2, params, NULL, err, errlen);
	if (!r)
		return -1;
	if (PQntuples(r) == 1) {
		ri->found = true;
		snprintf(ri->oid, sizeof(ri->oid), "%s", PQgetvalue(r, 0, 0));
		ri->reltuples = strtod(PQgetvalue(r, 0, 1), NULL);
		snprintf(ri->qschema, sizeof(ri->qschema), "%s", PQgetvalue(r, 0, 2));
		snprintf(ri->qrel, sizeof(ri->qrel), "%s", PQgetvalue(r, 0, 3));
		ri->current_schema = PQgetvalue(r, 0, 4)[0] == 't';
		if (ri->current_schema)
			snprintf(ri->shown, sizeof(ri->shown), "%s", s->relation);
		else
			snprintf(ri->shown, sizeof(ri->shown), "%s.%s", PQgetvalue(r, 0, 5), s->relation);
	}
	PQclear(r);
	return 0;
}

/* The chosen index: its table, columns (those the table really has) and names. */
struct candidate {
	int scan;
	enum advise_why why;
	struct relinfo rel;
	char cols[ADVISE_MAX_COLS][SQLA_NAME];
	char qcols[ADVISE_MAX_COLS][QNAME];
	int ncols;
	char qindex[QNAME];
};

/* Keeps the candidate columns the table has, quoted; 0, or -1 with err. */
static __attribute__((warn_unused_result)) int
resolve_columns(PGconn *c, struct candidate *cd, char *attnums, size_t attlen, char *err, size_t errlen)
{
	int kept = 0;
	size_t al = (size_t)snprintf(attnums, attlen, "{");
	for (int i = 0; i < cd->ncols; i++) {
		const char *params[2] = {cd->rel.oid, cd->cols[i]};
		PGresult *r = run(c,
				  "SELECT a.attnum::text, quote_ident(a.attname) FROM pg_attribute a"
				  " WHERE a.attrelid = $1::oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
				  2, params, NULL, err, errlen);
		if (!r)
			return -1;
		if (PQntuples(r) == 1) {
			if (kept != i)
				memcpy(cd->cols[kept], cd->cols[i], SQLA_NAME);
			snprintf(cd->qcols[kept], QNAME, "%s", PQgetvalue(r, 0, 1));
			if (al < attlen)
				al += (size_t)snprintf(attnums + al, attlen - al, "%s%s", kept ? "," : "", PQgetvalue(r, 0, 0));
			kept++;
		}
		PQclear(r);
	}
	if (al < attlen)
		snprintf(attnums + al, attlen - al, "}");
	cd->ncols = kept;
	return 0;
}

/* 1 when a valid, non-partial btree index of the table starts with exactly these columns. */
static __attribute__((warn_unused_result)) int
has_index(PGconn *c, const struct candidate *cd, const char *attnums, char *err, size_t errlen)
{
	char n[16];
	snprintf(n, sizeof(n), "%d", cd->ncols);
	const char *params[3] = {cd->rel.oid, attnums, n};
	PGresult *r = run(c,
			  "SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
			  " JOIN pg_am am ON am.oid = ic.relam"
			  " WHERE i.indrelid = $1::oid AND am.amname = 'btree' AND i.indisvalid AND i.indpred IS NULL"
			  " AND i.indnkeyatts >= $3::int AND (i.indkey::int2[])[0:$3::int - 1] = $2::int2[] LIMIT 1",
			  3, params, NULL, err, errlen);
	if (!r)
		return -1;
	int found = PQntuples(r) > 0;
	PQclear(r);
	return found;
}

/* Fills table_rows of every scan and picks the costliest scan the rule accepts that
 * has candidate columns and no index on them yet.  1 with cd, 0 for none, -1 with err. */
static __attribute__((warn_unused_result)) int
choose(PGconn *c, const struct sql_analysis *a, struct advise_plan *p, double min_rows, struct candidate *cd,
       char *err, size_t errlen)
{
	struct relinfo *ri = calloc((size_t)(p->nscans > 0 ? p->nscans : 1), sizeof(*ri));
	if (!ri) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = -1;
	for (int i = 0; i < p->nscans; i++) {
		int same = -1;
		for (int j = 0; j < i && same < 0; j++)
			if (strcmp(p->scans[j].relation, p->scans[i].relation) == 0 &&
			    strcmp(p->scans[j].schema, p->scans[i].schema) == 0)
				same = j;
		if (same >= 0)
			ri[i] = ri[same];
		else if (lookup_rel(c, &p->scans[i], &ri[i], err, errlen) != 0)
			goto out;
		if (ri[i].found && ri[i].reltuples >= 0)
			p->scans[i].table_rows = ri[i].reltuples;
	}
	bool tried[ADVISE_MAX_SCANS] = {false};
	for (;;) {
		int best = -1;
		for (int i = 0; i < p->nscans; i++)
			if (!tried[i] && ri[i].found && (best < 0 || p->scans[i].cost > p->scans[best].cost))
				best = i;
		if (best < 0) {
			rc = 0;
			goto out;
		}
		tried[best] = true;
		const struct advise_scan *s = &p->scans[best];
		memset(cd, 0, sizeof(*cd));
		cd->why = advise_scan_why(s, p->analyzed, min_rows);
		if (cd->why == ADVISE_NO)
			continue;
		cd->scan = best;
		cd->rel = ri[best];
		cd->ncols = advise_candidates(a, s, cd->cols);
		char attnums[ADVISE_MAX_COLS * 8 + 4];
		if (cd->ncols == 0)
			continue;
		if (resolve_columns(c, cd, attnums, sizeof(attnums), err, errlen) != 0)
			goto out;
		if (cd->ncols == 0)
			continue;
		int has = has_index(c, cd, attnums, err, errlen);
		if (has < 0)
			goto out;
		if (has)
			continue;
		char name[64];
		advise_index_name(s->relation, (const char(*)[SQLA_NAME])cd->cols, cd->ncols, name, sizeof(name));
		const char *params[1] = {name};
		PGresult *r = run(c, "SELECT quote_ident($1)", 1, params, NULL, err, errlen);
		if (!r)
			goto out;
		snprintf(cd->qindex, sizeof(cd->qindex), "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
		rc = 1;
		goto out;
	}
out:
	free(ri);
	return rc;
}

/* The schema (quoted) HypoPG is installed in: 1, 0 when it is not, -1 with err. */
static __attribute__((warn_unused_result)) int
hypopg_schema(PGconn *c, char *qns, size_t len, char *err, size_t errlen)
{
	PGresult *r = run(c,
			  "SELECT quote_ident(n.nspname) FROM pg_extension e"
			  " JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hypopg'",
			  0, NULL, NULL, err, errlen);
	if (!r)
		return -1;
	int found = PQntuples(r) == 1;
	if (found)
		snprintf(qns, len, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return found;
}

/* Total cost of sql's plan with a hypothetical index on cd; -1 when it could not be
 * measured (err says why).  Hypothetical indexes are reset whatever happens. */
static double cost_with_index(PGconn *c, const char *sql, const char *qns, const struct candidate *cd,
			      int timeout_ms, char *err, size_t errlen)
{
	char cols[ADVISE_MAX_COLS * (QNAME + 2)] = "";
	for (int i = 0; i < cd->ncols; i++) {
		size_t l = strlen(cols);
		snprintf(cols + l, sizeof(cols) - l, "%s%s", i ? ", " : "", cd->qcols[i]);
	}
	char *create = NULL, *call = NULL, *reset = NULL;
	json_t *doc = NULL;
	double cost = -1;
	char sqlstate[6];
	if (asprintf(&create, "CREATE INDEX ON %s.%s (%s)", cd->rel.qschema, cd->rel.qrel, cols) < 0)
		create = NULL;
	if (asprintf(&call, "SELECT indexrelid FROM %s.hypopg_create_index($1)", qns) < 0)
		call = NULL;
	if (asprintf(&reset, "SELECT %s.hypopg_reset()", qns) < 0)
		reset = NULL;
	if (!create || !call || !reset) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* Read-only is fine: hypopg keeps its indexes in backend memory, not in the
	 * catalog.  Plain EXPLAIN: the planner sees hypothetical indexes, the executor
	 * could not use them. */
	if (explain_in_txn(c, sql, "FORMAT JSON", timeout_ms, call, create, &doc, sqlstate, err, errlen) != 0)
		goto out;
	const json_t *root = root_plan(doc);
	if (!root) {
		snprintf(err, errlen, "EXPLAIN output has no plan");
		goto out;
	}
	cost = num(root, "Total Cost", -1);
out:
	rollback(c);
	if (reset && PQstatus(c) == CONNECTION_OK) {
		char e2[256];
		if (run_ok(c, reset, e2, sizeof(e2)) != 0)
			log_warn("advise: hypopg_reset failed: %s", e2);
	}
	json_decref(doc);
	free(create);
	free(call);
	free(reset);
	return cost;
}

int advise_explain(PGconn *c, const char *sql, const struct advise_opts *o, json_t **plan, json_t **finding,
		   char *err, size_t errlen)
{
	*plan = NULL;
	*finding = NULL;
	struct advise_opts opts = {.statement_timeout_ms = DEFAULT_TIMEOUT_MS, .min_table_rows = DEFAULT_MIN_TABLE_ROWS};
	if (o)
		opts = *o;
	/* A zeroed struct means the defaults. */
	if (opts.statement_timeout_ms <= 0)
		opts.statement_timeout_ms = DEFAULT_TIMEOUT_MS;
	if (opts.min_table_rows <= 0)
		opts.min_table_rows = DEFAULT_MIN_TABLE_ROWS;

	struct sql_analysis *a = calloc(1, sizeof(*a)); /* a few KB: keep it off the advisor's stack */
	json_t *doc = NULL, *summary = NULL;
	struct advise_plan *p = calloc(1, sizeof(*p));
	struct candidate cd;
	int rc = -1;
	if (!a || !p) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	char aerr[256];
	if (sql_analyze(sql, a, aerr, sizeof(aerr)) != 0) {
		snprintf(err, errlen, "cannot parse the statement: %s", aerr);
		goto out;
	}
	if (a->kind != SQLA_SELECT || a->writes || a->multi) {
		snprintf(err, errlen, "not a plain SELECT");
		goto out;
	}
	if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) {
		snprintf(err, errlen, "the connection is not idle");
		goto out;
	}

	char sqlstate[6];
	bool analyze = opts.analyze_selects;
	int e = explain_in_txn(c, sql, analyze ? "FORMAT JSON, VERBOSE, ANALYZE, BUFFERS" : "FORMAT JSON, VERBOSE",
			       opts.statement_timeout_ms, NULL, NULL, &doc, sqlstate, err, errlen);
	if (e != 0 && analyze && strcmp(sqlstate, "57014") == 0) {
		/* The query is slower than the timeout: that is often why we look at it.
		 * The estimated plan still tells where the time goes. */
		log_info("advise: EXPLAIN ANALYZE timed out after %d ms, falling back to EXPLAIN",
			 opts.statement_timeout_ms);
		rollback(c);
		e = explain_in_txn(c, sql, "FORMAT JSON, VERBOSE", opts.statement_timeout_ms, NULL, NULL, &doc, sqlstate,
				   err, errlen);
	}
	if (e != 0 || advise_plan_read(doc, p, err, errlen) != 0) {
		rollback(c);
		goto out;
	}
	int chosen = choose(c, a, p, opts.min_table_rows, &cd, err, errlen);
	rollback(c);
	if (chosen < 0)
		goto out;
	summary = advise_plan_summary(doc, p);
	if (!summary) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}

	if (chosen) {
		const struct advise_scan *s = &p->scans[cd.scan];
		double cost_after = -1;
		char qns[QNAME], herr[256];
		int have = hypopg_schema(c, qns, sizeof(qns), herr, sizeof(herr));
		if (have == 0 && opts.create_hypopg) {
			/* Its own transaction (autocommit): CREATE EXTENSION cannot be READ ONLY. */
			if (run_ok(c, "CREATE EXTENSION IF NOT EXISTS hypopg", herr, sizeof(herr)) != 0)
				log_warn("advise: cannot create extension hypopg, index not verified: %s", herr);
			else
				have = hypopg_schema(c, qns, sizeof(qns), herr, sizeof(herr));
		}
		if (have < 0)
			log_warn("advise: cannot look for hypopg: %s", herr);
		if (have > 0) {
			cost_after = cost_with_index(c, sql, qns, &cd, opts.statement_timeout_ms, herr, sizeof(herr));
			if (cost_after < 0)
				log_warn("advise: hypothetical index on %s not measured: %s", cd.rel.shown, herr);
		}
		if (PQstatus(c) != CONNECTION_OK) {
			snprintf(err, errlen, "connection lost: %s", PQerrorMessage(c));
			goto out;
		}
		const char *cols[ADVISE_MAX_COLS], *qcols[ADVISE_MAX_COLS];
		for (int i = 0; i < cd.ncols; i++) {
			cols[i] = cd.cols[i];
			qcols[i] = cd.qcols[i];
		}
		char table_sql[2 * QNAME + 2];
		if (cd.rel.current_schema)
			snprintf(table_sql, sizeof(table_sql), "%s", cd.rel.qrel);
		else
			snprintf(table_sql, sizeof(table_sql), "%s.%s", cd.rel.qschema, cd.rel.qrel);
		double table_rows = s->table_rows >= 0 ? s->table_rows
				    : (s->actual_rows + s->rows_removed) * (s->workers + 1);
		double returned;
		if (cd.why == ADVISE_SORT_LIMIT && s->limit_rows >= 0)
			returned = s->limit_rows;
		else if (s->actual_rows >= 0)
			returned = s->actual_rows * s->loops;
		else
			returned = s->plan_rows * (s->workers + 1);
		struct advise_finding_in in = {
			.table = cd.rel.shown, .table_sql = table_sql, .cols = cols, .cols_sql = qcols,
			.ncols = cd.ncols, .index_sql = cd.qindex, .why = cd.why, .table_rows = table_rows,
			.rows_returned = returned, .cost_before = p->total_cost, .cost_after = cost_after,
		};
		*finding = advise_finding_new(&in);
		if (!*finding) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	*plan = summary;
	summary = NULL;
	if (errlen)
		err[0] = '\0'; /* a timed-out EXPLAIN ANALYZE we recovered from is no error */
	rc = 0;
out:
	json_decref(summary);
	json_decref(doc);
	free(a);
	free(p);
	return rc;
}
