/* findings.c - the /api/findings document (see findings.h). */
#include "insight/findings.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql/analyze.h"
#include "sql/normalize.h"

static const char *kind_name(enum det_kind k)
{
	return k == DET_N_PLUS_ONE ? "n_plus_one" : "duplicate_query";
}

static void fp_hex(uint64_t fp, char out[17])
{
	snprintf(out, 17, "%016llx", (unsigned long long)fp);
}

/* ---- the ORM map and the catalog's facts ---- */

static const json_t *model_of_table(const json_t *models, const char *table)
{
	const json_t *arr = json_object_get(models, "models");
	size_t i;
	const json_t *m;
	json_array_foreach(arr, i, m)
	{
		const char *t = json_string_value(json_object_get(m, "table"));
		if (t && strcmp(t, table) == 0)
			return m;
	}
	return NULL;
}

/* "shop_book" -> "Book" (Django's default table name is app_model). */
static void model_name_guess(const char *table, char *out, size_t cap)
{
	const char *u = strchr(table, '_');
	const char *base = u && u[1] ? u + 1 : table;
	size_t n = 0;
	bool up = true;
	for (const char *c = base; *c && n + 1 < cap; c++) {
		if (*c == '_') {
			up = true;
			continue;
		}
		out[n++] = up ? (char)toupper((unsigned char)*c) : *c;
		up = false;
	}
	out[n] = 0;
}

static void model_name(const json_t *models, const char *table, char *out, size_t cap, bool *inferred)
{
	const json_t *m = models ? model_of_table(models, table) : NULL;
	const char *name = m ? json_string_value(json_object_get(m, "model")) : NULL;
	if (name) {
		snprintf(out, cap, "%s", name);
	} else {
		model_name_guess(table, out, cap);
		*inferred = true;
	}
}

/* The relation of `kind` on the model of `table` whose key `key` equals `val`
 * (and, when key2 is given, key2 equals val2). */
static const char *relation_name(const json_t *models, const char *table, const char *kind, const char *key,
				 const char *val, const char *key2, const char *val2)
{
	const json_t *m = models ? model_of_table(models, table) : NULL;
	size_t i;
	const json_t *r;
	json_array_foreach(json_object_get(m, "relations"), i, r)
	{
		const char *k = json_string_value(json_object_get(r, "kind"));
		const char *v = json_string_value(json_object_get(r, key));
		const char *v2 = key2 ? json_string_value(json_object_get(r, key2)) : NULL;
		if (k && v && strcmp(k, kind) == 0 && strcmp(v, val) == 0 && (!key2 || (v2 && strcmp(v2, val2) == 0)))
			return json_string_value(json_object_get(r, "name"));
	}
	return NULL;
}

static bool is_pk(const json_t *schema, const json_t *models, const char *table, const char *col)
{
	const json_t *pks = json_object_get(json_object_get(schema, "primary_keys"), table);
	if (json_is_array(pks) && json_array_size(pks) == 1)
		return strcmp(json_string_value(json_array_get(pks, 0)) ?: "", col) == 0;
	const json_t *m = models ? model_of_table(models, table) : NULL;
	const char *pk = m ? json_string_value(json_object_get(m, "pk")) : NULL;
	return strcmp(pk ? pk : "id", col) == 0;
}

/* Is there a single-column foreign key table(col) -> ref_table (any column when
 * col is NULL)?  Its column goes to ref_col_out. */
static bool fk_exists(const json_t *schema, const char *table, const char *col, const char *ref_table,
		      char *ref_col_out, size_t cap)
{
	size_t i;
	const json_t *fk;
	json_array_foreach(json_object_get(schema, "foreign_keys"), i, fk)
	{
		const char *t = json_string_value(json_object_get(fk, "table"));
		const char *rt = json_string_value(json_object_get(fk, "ref_table"));
		const json_t *cols = json_object_get(fk, "columns");
		if (!t || !rt || strcmp(t, table) != 0 || strcmp(rt, ref_table) != 0 || json_array_size(cols) != 1)
			continue;
		const char *c = json_string_value(json_array_get(cols, 0));
		if (col && (!c || strcmp(c, col) != 0))
			continue;
		if (ref_col_out && c)
			snprintf(ref_col_out, cap, "%s", c);
		return true;
	}
	return false;
}

/* ---- relating a repeated statement to the statement it hangs off ---- */

struct relation {
	char model[128];
	char relation[128];
	const char *method;   /* "select_related" | "prefetch_related" */
	bool inferred;
	char table[64];       /* the repeated statement's table */
	char column[64];      /* the column it filters on */
};

static bool ends_with_table_suffix(const char *col, const char *table)
{
	/* author_id and shop_author: the FK convention */
	const char *u = strchr(table, '_');
	const char *base = u && u[1] ? u + 1 : table;
	size_t bl = strlen(base);
	return strncmp(col, base, bl) == 0 && strcmp(col + bl, "_id") == 0;
}

static bool relate(const struct sql_analysis *b, const struct sql_analysis *p, const json_t *schema,
		   const json_t *models, struct relation *out)
{
	if (p->kind != SQLA_SELECT || p->ntables == 0 || b->ntables == 0)
		return false;
	const char *tp = p->tables[0].name;
	const char *tb = b->tables[0].name;
	bool have_schema = schema && json_object_get(schema, "foreign_keys");
	memset(out, 0, sizeof(*out));
	snprintf(out->table, sizeof(out->table), "%s", tb);
	for (int i = 0; i < b->npreds; i++) {
		const struct sqla_pred *pr = &b->preds[i];
		if (pr->op != SQLA_EQ || !pr->col.table[0])
			continue;
		const char *t = pr->col.table, *c = pr->col.column;
		/* M2M: filtered on a through table joined to the repeated statement's table */
		if (strcmp(t, tb) != 0 && strcmp(t, tp) != 0) {
			const char *name = relation_name(models, tp, "m2m", "through_table", t, "through_from_column", c);
			bool fk = have_schema ? fk_exists(schema, t, c, tp, NULL, 0) : ends_with_table_suffix(c, tp);
			if (!name && !fk)
				continue;
			char guess[128];
			size_t tpl = strlen(tp);
			if (!name && strncmp(t, tp, tpl) == 0 && t[tpl] == '_')
				snprintf(guess, sizeof(guess), "%s", t + tpl + 1);
			else if (!name)
				snprintf(guess, sizeof(guess), "%s", t);
			out->inferred = !name;
			snprintf(out->relation, sizeof(out->relation), "%s", name ? name : guess);
			out->method = "prefetch_related";
			snprintf(out->column, sizeof(out->column), "%s", c);
			model_name(models, tp, out->model, sizeof(out->model), &out->inferred);
			return true;
		}
		if (strcmp(t, tb) != 0)
			continue;
		if (is_pk(schema, models, tb, c)) {
			/* forward FK: the parent's table points at this row */
			char fkcol[64] = "";
			const char *name = relation_name(models, tp, "forward_fk", "to_table", tb, NULL, NULL);
			if (!name)
				name = relation_name(models, tp, "forward_o2o", "to_table", tb, NULL, NULL);
			bool fk = have_schema && fk_exists(schema, tp, NULL, tb, fkcol, sizeof(fkcol));
			if (!name && !fk && have_schema)
				continue;
			char guess[128];
			if (!name) {
				size_t n = strlen(fkcol);
				if (n > 3 && strcmp(fkcol + n - 3, "_id") == 0)
					snprintf(guess, sizeof(guess), "%.*s", (int)(n - 3), fkcol);
				else {
					const char *u = strchr(tb, '_');
					snprintf(guess, sizeof(guess), "%s", u && u[1] ? u + 1 : tb);
				}
			}
			out->inferred = !name;
			snprintf(out->relation, sizeof(out->relation), "%s", name ? name : guess);
			out->method = "select_related";
			snprintf(out->column, sizeof(out->column), "%s", c);
			model_name(models, tp, out->model, sizeof(out->model), &out->inferred);
			return true;
		}
		/* reverse FK: this table points at the parent's rows */
		const char *name = relation_name(models, tp, "reverse_fk", "from_table", tb, "from_column", c);
		bool fk = have_schema ? fk_exists(schema, tb, c, tp, NULL, 0) : ends_with_table_suffix(c, tp);
		if (!name && !fk)
			continue;
		char guess[160];
		if (!name) {
			char m[128];
			bool dummy = false;
			model_name(models, tb, m, sizeof(m), &dummy);
			for (char *x = m; *x; x++)
				*x = (char)tolower((unsigned char)*x);
			snprintf(guess, sizeof(guess), "%s_set", m);
		}
		out->inferred = !name;
		snprintf(out->relation, sizeof(out->relation), "%s", name ? name : guess);
		out->method = "prefetch_related";
		snprintf(out->column, sizeof(out->column), "%s", c);
		model_name(models, tp, out->model, sizeof(out->model), &out->inferred);
		return true;
	}
	return false;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *findings_example_of(const char *example, bool keep_literals)
{
	json_t *j;
	if (keep_literals) {
		j = json_string(example); /* NULL when not UTF-8 (a LATIN1 client's literal) */
	} else {
		size_t len = strlen(example), cap = SQL_NORM_BOUND(len);
		char *buf = malloc(cap);
		long n = buf ? sql_redact(example, len, buf, cap) : -1;
		j = n >= 0 ? json_stringn(buf, (size_t)n) : NULL;
		free(buf);
	}
	return j ? j : json_null();
}

json_t *findings_example(const struct profiler *pr, const struct qstat *q)
{
	return findings_example_of(q->example, pr->keep_literals);
}

static const char *severity_for_ms(double per_request_ms, uint64_t count)
{
	if (per_request_ms >= 50 || count >= 50)
		return "high";
	if (per_request_ms >= 5 || count >= 10)
		return "medium";
	return "low";
}

static void add_detector_findings(struct profiler *pr, json_t *arr)
{
	struct detector *d = &pr->detect;
	for (size_t i = 0; i < d->n; i++) {
		const struct det_finding *f = &d->f[i];
		if (!f->used || !f->requests || !f->qs || !f->qs->used || f->qs->gen != f->qgen)
			continue;
		const struct qstat *q = f->qs;
		char hex[17], id[600];
		fp_hex(f->fp, hex);
		snprintf(id, sizeof(id), "%s:%s:%s", kind_name(f->kind), f->route ? f->route : "-", hex);
		double per_req = (double)f->queries / (double)f->requests;
		double wasted_ms = (double)f->wasted_us / 1000.0;
		double wasted_per_req = wasted_ms / (double)f->requests;
		json_t *o = json_object();
		json_object_set_new(o, "id", json_string(id));
		json_object_set_new(o, "kind", json_string(kind_name(f->kind)));
		json_object_set_new(o, "severity", json_string(severity_for_ms(wasted_per_req, (uint64_t)per_req)));
		json_object_set_new(o, "route", str_or_null(f->route));
		json_object_set_new(o, "controller", str_or_null(f->controller));
		json_object_set_new(o, "grouping", json_string(f->tagged ? "request_id" : "idle_gap"));
		json_object_set_new(o, "fingerprint", json_string(hex));
		json_object_set_new(o, "query", json_string(q->query));
		json_object_set_new(o, "example", findings_example(pr, q));
		json_object_set_new(o, "database", json_string(q->database));
		json_object_set_new(o, "occurrences", json_integer((json_int_t)f->requests));
		json_object_set_new(o, "time_wasted_ms", json_real(wasted_ms));
		json_object_set_new(o, "time_wasted_per_request_ms", json_real(wasted_per_req));

		struct sql_analysis b;
		struct relation rel;
		char err[256];
		bool analyzed = sql_analyze(q->query, &b, err, sizeof(err)) == 0 && b.ntables > 0;
		json_t *cols = json_array();
		const char *table = analyzed ? b.tables[0].name : NULL;
		const char *where = f->controller ? f->controller : f->route ? f->route : "this code path";
		char fix[900];
		if (f->kind == DET_DUPLICATE) {
			json_object_set_new(o, "duplicates_per_request", json_real(per_req));
			if (analyzed)
				for (int k = 0; k < b.npreds; k++)
					if (b.preds[k].op == SQLA_EQ && strcmp(b.preds[k].col.table, table) == 0)
						json_array_append_new(cols, json_string(b.preds[k].col.column));
			snprintf(fix, sizeof(fix),
				 "%s runs the same query with the same parameters %.0f times per request; run it once and "
				 "reuse the result (keep the object in a variable, or use django.utils.functional.cached_property).",
				 where, per_req);
			json_object_set_new(o, "django", json_null());
		} else {
			json_object_set_new(o, "queries_per_request", json_real(per_req));
			bool found = false;
			const json_t *schema = json_object_get(pr->schemas, q->database);
			for (int k = 0; analyzed && k < f->nparents && !found; k++) {
				const struct qstat *pq = f->parents[k].qs;
				if (!pq || !pq->used || pq->gen != f->parents[k].qgen)
					continue;
				struct sql_analysis pa;
				if (sql_analyze(pq->query, &pa, err, sizeof(err)) == 0)
					found = relate(&b, &pa, schema, pr->models, &rel);
			}
			if (found) {
				table = rel.table;
				json_array_append_new(cols, json_string(rel.column));
				json_object_set_new(o, "django",
						    json_pack("{s:s,s:s,s:s,s:b}", "model", rel.model, "relation", rel.relation,
							      "method", rel.method, "inferred", rel.inferred));
				snprintf(fix, sizeof(fix),
					 "%s runs %.0f queries per request; add .%s(\"%s\") to the %s queryset%s.", where, per_req,
					 rel.method, rel.relation, rel.model,
					 rel.inferred ? " (relation inferred from naming conventions: send the model map with "
							"manage.py pgmedic_models to confirm)"
						      : "");
			} else {
				json_object_set_new(o, "django", json_null());
				snprintf(fix, sizeof(fix),
					 "%s runs this query %.0f times per request with different parameters; fetch the rows "
					 "in one query (select_related / prefetch_related, or filter(...__in=...)).",
					 where, per_req);
			}
		}
		json_object_set_new(o, "table", str_or_null(table));
		json_object_set_new(o, "columns", cols);
		json_object_set_new(o, "fix", json_string(fix));
		json_array_append_new(arr, o);
	}
}

/* The route that spent the most time in this fingerprint. */
static const char *top_route(const struct qstat *q)
{
	const struct qstat_route *best = NULL;
	for (int i = 0; i < QSTAT_ROUTES; i++) {
		const struct qstat_route *r = &q->routes[i];
		if (r->rt && r->rt->used && r->rt->gen == r->gen && (!best || r->total_us > best->total_us))
			best = r;
	}
	return best ? best->rt->name : NULL;
}

/* Meta.indexes for a missing index on a table the ORM map knows. */
static json_t *index_django(const json_t *models, const char *table, const json_t *columns)
{
	const json_t *m = models ? model_of_table(models, table) : NULL;
	if (!m)
		return json_null();
	json_t *fields = json_array();
	size_t i;
	const json_t *c;
	json_array_foreach(columns, i, c)
	{
		const char *col = json_string_value(c);
		const char *name = col;
		size_t k;
		const json_t *fl;
		json_array_foreach(json_object_get(m, "fields"), k, fl)
		{
			const char *fc = json_string_value(json_object_get(fl, "column"));
			if (fc && col && strcmp(fc, col) == 0)
				name = json_string_value(json_object_get(fl, "name"));
		}
		json_array_append_new(fields, json_string(name ? name : ""));
	}
	char change[600];
	size_t n = (size_t)snprintf(change, sizeof(change), "Meta.indexes = [models.Index(fields=[");
	json_array_foreach(fields, i, c)
	n += (size_t)snprintf(change + n, n < sizeof(change) ? sizeof(change) - n : 0, "%s\"%s\"", i ? ", " : "",
			      json_string_value(c));
	if (n < sizeof(change))
		snprintf(change + n, sizeof(change) - n, "])]");
	json_t *o = json_pack("{s:O,s:s,s:o,s:s}", "model", json_object_get(m, "model"), "app_label",
			      json_string_value(json_object_get(m, "app_label")) ?: "", "fields", fields, "change", change);
	return o ? o : json_null();
}

static void add_advisor_findings(struct profiler *pr, json_t *arr, const struct findings_opts *o)
{
	const struct stats_store *s = &pr->store;
	for (size_t i = 0; i < s->nq; i++) {
		const struct qstat *q = &s->q[i];
		if (!q->used || !q->calls)
			continue;
		char hex[17];
		fp_hex(q->fp, hex);
		const json_t *pl = json_object_get(pr->plans, hex);
		const json_t *plan = json_object_get(pl, "plan");
		double p95 = hist_quantile(q->hist, 0.95) / 1000.0;
		const char *route = top_route(q);
		if (plan && p95 >= o->slow_query_ms) {
			const json_t *cn = json_object_get(plan, "costliest_node");
			char fix[700];
			snprintf(fix, sizeof(fix),
				 "p95 %.1f ms over %llu calls; most of the plan's cost is a %s%s%s (see plan); %s", p95,
				 (unsigned long long)q->calls, json_string_value(json_object_get(cn, "node_type")) ?: "node",
				 json_string_value(json_object_get(cn, "relation")) ? " on " : "",
				 json_string_value(json_object_get(cn, "relation")) ?: "",
				 json_object_get(pl, "finding") ? "an index would help (see the missing_index finding)."
								: "no missing index was found for it.");
			char id[64];
			snprintf(id, sizeof(id), "slow_query:%s", hex);
			json_t *f = json_object();
			json_object_set_new(f, "id", json_string(id));
			json_object_set_new(f, "kind", json_string("slow_query"));
			json_object_set_new(f, "severity", json_string(p95 >= 10 * o->slow_query_ms ? "high" : "medium"));
			json_object_set_new(f, "route", str_or_null(route));
			json_object_set_new(f, "table", str_or_null(json_string_value(json_object_get(cn, "relation"))));
			json_object_set_new(f, "columns", json_array());
			json_object_set_new(f, "fingerprint", json_string(hex));
			json_object_set_new(f, "query", json_string(q->query));
			json_object_set_new(f, "database", json_string(q->database));
			json_object_set_new(f, "occurrences", json_integer((json_int_t)q->calls));
			json_object_set_new(f, "time_wasted_ms", json_real((double)q->total_us / 1000.0));
			json_object_set_new(f, "p95_ms", json_real(p95));
			json_object_set_new(f, "plan", json_deep_copy(plan));
			json_object_set_new(f, "fix", json_string(fix));
			json_object_set_new(f, "django", json_null());
			json_array_append_new(arr, f);
		}
		const json_t *mi = json_object_get(pl, "finding");
		if (mi) {
			json_t *f = json_deep_copy(mi);
			json_object_set_new(f, "route", str_or_null(route));
			json_object_set_new(f, "fingerprint", json_string(hex));
			json_object_set_new(f, "query", json_string(q->query));
			json_object_set_new(f, "database", json_string(q->database));
			json_object_set_new(f, "occurrences", json_integer((json_int_t)q->calls));
			json_object_set_new(f, "time_wasted_ms", json_real((double)q->total_us / 1000.0));
			const char *table = json_string_value(json_object_get(f, "table"));
			if (table && (!json_object_get(f, "django") || json_is_null(json_object_get(f, "django"))))
				json_object_set_new(f, "django", index_django(pr->models, table, json_object_get(f, "columns")));
			json_array_append_new(arr, f);
		}
	}
	const char *db;
	json_t *list;
	json_object_foreach(pr->catalog, db, list)
	{
		size_t i;
		json_t *f;
		json_array_foreach(list, i, f)
		{
			json_t *c = json_deep_copy(f);
			json_object_set_new(c, "database", json_string(db));
			json_array_append_new(arr, c);
		}
	}
}

static int cmp_wasted(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	double dx = json_number_value(json_object_get(x, "time_wasted_ms"));
	double dy = json_number_value(json_object_get(y, "time_wasted_ms"));
	if (dx != dy)
		return dx < dy ? 1 : -1;
	return strcmp(json_string_value(json_object_get(x, "id")) ?: "", json_string_value(json_object_get(y, "id")) ?: "");
}

json_t *findings_json(struct profiler *pr, const struct findings_opts *o)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	add_detector_findings(pr, arr);
	add_advisor_findings(pr, arr, o);
	/* ordered by time wasted, as a developer wants to read them */
	size_t n = json_array_size(arr);
	json_t **v = malloc((n ? n : 1) * sizeof(*v));
	json_t *sorted = json_array();
	if (!v || !sorted) {
		free(v);
		json_decref(sorted);
		json_decref(arr);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof(*v), cmp_wasted);
	for (size_t i = 0; i < n; i++)
		json_array_append(sorted, v[i]);
	free(v);
	json_decref(arr);
	json_t *doc = json_object();
	json_object_set_new(doc, "findings", sorted);
	json_t *adv = json_object();
	json_object_set_new(adv, "enabled", json_boolean(o->advisor_on));
	json_object_set_new(adv, "errors", json_deep_copy(pr->advisor_errors));
	json_object_set_new(adv, "requests_seen", json_integer((json_int_t)pr->detect.requests_seen));
	json_object_set_new(adv, "model_map", json_boolean(pr->models != NULL));
	/* what was sent to EXPLAIN (tests check that nothing that writes ever is) */
	json_t *explained = json_array();
	const char *hex;
	json_t *pl;
	json_object_foreach(pr->plans, hex, pl)
	json_array_append_new(explained, json_string(hex));
	json_object_set_new(adv, "explained", explained);
	json_object_set_new(doc, "advisor", adv);
	return doc;
}
