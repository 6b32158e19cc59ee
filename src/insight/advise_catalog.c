/* advise_catalog.c - the catalog half of the advisor: unindexed foreign keys,
 * unused and redundant indexes (advise_catalog), and the schema facts the N+1
 * relator needs (advise_schema).  Blocking libpq on the caller's connection; no
 * writes, no temporary objects: three read-only catalog queries, the rules
 * applied here in C where each one can say why.
 *
 * Decisions worth knowing (each repeated where it is made):
 *  - an index counts for a foreign key when its leading key columns are the FK's
 *    columns in any order, it is valid and not partial, and it is a btree (or a
 *    hash index on a one-column FK): that is what the RI check and joins can use;
 *  - unused_index is reported only for tables the workload reads through an index
 *    (pg_stat_user_tables.idx_scan > 0, the sum over the table's indexes): then
 *    this index had its chance and was passed over.  A table never read that way
 *    says nothing about its indexes (a new table, fresh statistics, a small table
 *    always scanned sequentially).  seq_scan cannot tell: building an index
 *    (CREATE INDEX, twice for CONCURRENTLY, the primary key of CREATE TABLE, a
 *    restore) and validating a foreign key count as sequential scans;
 *  - an index that is redundant is reported as redundant_index only, never also as
 *    unused_index (one index, one DROP);
 *  - an index whose leading columns cover a foreign key is never reported as
 *    unused: idx_scan stays 0 until the referenced table sees a DELETE, and
 *    dropping it would only produce an unindexed_foreign_key finding next run;
 *  - indexes attached to a partitioned index are judged on the parent only (they
 *    cannot be dropped alone); the parent has no scan statistics, so partitioned
 *    indexes are checked for redundancy but never reported as unused. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "insight/advise.h"

#define KB 1024.0
#define MB (1024.0 * 1024.0)
/* Severity thresholds.  A foreign key's cost grows with the referencing table
 * (each DELETE on the parent scans it), an index's with its own size. */
#define FK_HIGH_ROWS 100000.0
#define FK_MEDIUM_ROWS 10000.0
#define FK_HIGH_BYTES (100 * MB)
#define FK_MEDIUM_BYTES (10 * MB)
#define IDX_HIGH_BYTES (100 * MB)
#define IDX_MEDIUM_BYTES (10 * MB)
#define NAMEDATALEN_MAX 63 /* PostgreSQL truncates identifiers beyond 63 bytes */

/* ------------------------------------------------------------ libpq helpers */

/* Runs one parameterless catalog query; the result, or NULL with err. */
static PGresult *catalog_query(PGconn *c, const char *what, const char *sql, int nfields, char *err, size_t errlen)
{
	PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
	if (!r) {
		snprintf(err, errlen, "catalog query (%s) failed: %s", what, PQerrorMessage(c));
		goto fail;
	}
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "catalog query (%s) failed: %s", what, PQresultErrorMessage(r));
		goto fail;
	}
	if (PQnfields(r) != nfields) {
		snprintf(err, errlen, "catalog query (%s): expected %d columns, got %d", what, nfields, PQnfields(r));
		goto fail;
	}
	return r;
fail:
	PQclear(r);
	/* libpq messages end with a newline: one line is easier to log */
	for (size_t n = strlen(err); n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '); n--)
		err[n - 1] = '\0';
	return NULL;
}

static const char *v_str(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static bool v_bool(const PGresult *r, int row, int col)
{
	const char *v = v_str(r, row, col);
	return v && v[0] == 't';
}

/* A number column; `dflt` when NULL. */
static double v_num(const PGresult *r, int row, int col, double dflt)
{
	const char *v = v_str(r, row, col);
	return v ? strtod(v, NULL) : dflt;
}

/* A json column that must hold an array; NULL when it does not (bug or NULL). */
static json_t *v_array(const PGresult *r, int row, int col)
{
	const char *v = v_str(r, row, col);
	json_t *j = v ? json_loads(v, JSON_DECODE_ANY, NULL) : NULL;
	if (j && !json_is_array(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* ------------------------------------------------------------ catalog rows */

/* One index of a user table, as the rules need it.  The strings point into the
 * PGresult, which outlives the array. */
struct idx {
	const char *oid, *table_oid;
	const char *schema, *table, *name; /* raw names */
	const char *table_disp, *name_disp; /* unqualified when in current_schema() */
	const char *table_sql, *name_sql;   /* quote_ident'ed, schema-qualified */
	const char *am;
	bool unique, primary, exclusion, valid, partial, expr, backs_constraint, attached, has_stats;
	int nkeys;                    /* key columns (INCLUDE columns follow in allkeys) */
	json_t *allkeys;              /* attnums, key columns then INCLUDE columns */
	json_t *cols;                 /* names of the key columns (expressions as text) */
	json_t *classes, *colls, *opts;
	double bytes, table_rows, table_bytes, idx_scan, table_reads;
	bool table_reads_known;
	bool redundant; /* set by the redundancy pass */
};

struct fk {
	const char *name, *table_oid, *schema, *table, *table_disp, *table_sql, *ref_disp;
	json_t *keys, *cols, *cols_sql, *ref_cols;
	double table_rows, table_bytes;
};

static const char INDEX_SQL[] =
	"SELECT x.indexrelid::int8, x.indrelid::int8, n.nspname, t.relname, i.relname,"
	" CASE WHEN n.nspname = current_schema() THEN t.relname::text ELSE n.nspname || '.' || t.relname END,"
	" CASE WHEN n.nspname = current_schema() THEN i.relname::text ELSE n.nspname || '.' || i.relname END,"
	" quote_ident(n.nspname) || '.' || quote_ident(t.relname),"
	" quote_ident(n.nspname) || '.' || quote_ident(i.relname),"
	" am.amname, x.indisunique, x.indisprimary, x.indisexclusion,"
	" x.indisvalid AND x.indisready AND x.indislive,"
	" x.indpred IS NOT NULL, x.indexprs IS NOT NULL,"
	" EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid),"
	" i.relispartition, x.indnkeyatts,"
	" to_json(ARRAY(SELECT u.k FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS u(k, o) ORDER BY u.o)),"
	" to_json(ARRAY(SELECT coalesce(a.attname::text, pg_get_indexdef(x.indexrelid, u.o::int, true))"
	"   FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS u(k, o)"
	"   LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = u.k AND u.k <> 0"
	"   WHERE u.o <= x.indnkeyatts ORDER BY u.o)),"
	" to_json(x.indclass::oid[]), to_json(x.indcollation::oid[]), to_json(x.indoption::int2[]),"
	" pg_relation_size(x.indexrelid), t.reltuples, pg_relation_size(x.indrelid),"
	" s.idx_scan, ts.idx_scan"
	" FROM pg_index x"
	" JOIN pg_class i ON i.oid = x.indexrelid"
	" JOIN pg_class t ON t.oid = x.indrelid"
	" JOIN pg_namespace n ON n.oid = t.relnamespace"
	" JOIN pg_am am ON am.oid = i.relam"
	" LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = x.indexrelid"
	" LEFT JOIN pg_stat_user_tables ts ON ts.relid = x.indrelid"
	" WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
	"   AND n.nspname !~ '^pg_(toast_)?temp_'"
	"   AND t.relkind IN ('r', 'm', 'p')"
	" ORDER BY n.nspname, t.relname, i.relname";
#define INDEX_NFIELDS 29

/* Foreign keys; clones on partitions (conparentid <> 0) are judged on the parent. */
static const char FK_SQL[] =
	"SELECT c.conname, c.conrelid::int8, n.nspname, t.relname,"
	" CASE WHEN n.nspname = current_schema() THEN t.relname::text ELSE n.nspname || '.' || t.relname END,"
	" quote_ident(n.nspname) || '.' || quote_ident(t.relname),"
	" CASE WHEN rn.nspname = current_schema() THEN r.relname::text ELSE rn.nspname || '.' || r.relname END,"
	" to_json(c.conkey),"
	" to_json(ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS u(k, o)"
	"   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.k ORDER BY u.o)),"
	" to_json(ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.conkey) WITH ORDINALITY AS u(k, o)"
	"   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.k ORDER BY u.o)),"
	" to_json(ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS u(k, o)"
	"   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = u.k ORDER BY u.o)),"
	" t.reltuples, pg_relation_size(c.conrelid)"
	" FROM pg_constraint c"
	" JOIN pg_class t ON t.oid = c.conrelid"
	" JOIN pg_namespace n ON n.oid = t.relnamespace"
	" JOIN pg_class r ON r.oid = c.confrelid"
	" JOIN pg_namespace rn ON rn.oid = r.relnamespace"
	" WHERE c.contype = 'f' AND c.conparentid = 0"
	"   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
	"   AND n.nspname !~ '^pg_(toast_)?temp_'"
	" ORDER BY n.nspname, t.relname, c.conname";
#define FK_NFIELDS 13

static const char STATS_SQL[] =
	"SELECT to_char(d.stats_reset AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
	" FROM pg_stat_database d WHERE d.datname = current_database()";

static void idx_free(struct idx *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		json_decref(v[i].allkeys);
		json_decref(v[i].cols);
		json_decref(v[i].classes);
		json_decref(v[i].colls);
		json_decref(v[i].opts);
	}
	free(v);
}

static void fk_free(struct fk *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		json_decref(v[i].keys);
		json_decref(v[i].cols);
		json_decref(v[i].cols_sql);
		json_decref(v[i].ref_cols);
	}
	free(v);
}

static int load_indexes(const PGresult *r, struct idx **out, size_t *nout, char *err, size_t errlen)
{
	int n = PQntuples(r);
	struct idx *v = calloc(n > 0 ? (size_t)n : 1, sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct idx *x = &v[i];
		x->oid = v_str(r, i, 0);
		x->table_oid = v_str(r, i, 1);
		x->schema = v_str(r, i, 2);
		x->table = v_str(r, i, 3);
		x->name = v_str(r, i, 4);
		x->table_disp = v_str(r, i, 5);
		x->name_disp = v_str(r, i, 6);
		x->table_sql = v_str(r, i, 7);
		x->name_sql = v_str(r, i, 8);
		x->am = v_str(r, i, 9);
		x->unique = v_bool(r, i, 10);
		x->primary = v_bool(r, i, 11);
		x->exclusion = v_bool(r, i, 12);
		x->valid = v_bool(r, i, 13);
		x->partial = v_bool(r, i, 14);
		x->expr = v_bool(r, i, 15);
		x->backs_constraint = v_bool(r, i, 16);
		x->attached = v_bool(r, i, 17);
		x->nkeys = (int)v_num(r, i, 18, 0);
		x->allkeys = v_array(r, i, 19);
		x->cols = v_array(r, i, 20);
		x->classes = v_array(r, i, 21);
		x->colls = v_array(r, i, 22);
		x->opts = v_array(r, i, 23);
		x->bytes = v_num(r, i, 24, 0);
		x->table_rows = v_num(r, i, 25, -1);
		x->table_bytes = v_num(r, i, 26, 0);
		x->has_stats = !PQgetisnull(r, i, 27);
		x->idx_scan = v_num(r, i, 27, 0);
		x->table_reads_known = !PQgetisnull(r, i, 28);
		x->table_reads = v_num(r, i, 28, 0);
		if (!x->oid || !x->table_oid || !x->name || !x->table || !x->am || !x->allkeys || !x->cols ||
		    !x->classes || !x->colls || !x->opts || x->nkeys < 1 || (size_t)x->nkeys > json_array_size(x->allkeys) ||
		    json_array_size(x->cols) != (size_t)x->nkeys) {
			snprintf(err, errlen, "catalog query (indexes): unexpected row for index %s",
				 x->name ? x->name : "?");
			idx_free(v, (size_t)i + 1);
			return -1;
		}
	}
	*out = v;
	*nout = (size_t)n;
	return 0;
}

static int load_fks(const PGresult *r, struct fk **out, size_t *nout, char *err, size_t errlen)
{
	int n = PQntuples(r);
	struct fk *v = calloc(n > 0 ? (size_t)n : 1, sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct fk *f = &v[i];
		f->name = v_str(r, i, 0);
		f->table_oid = v_str(r, i, 1);
		f->schema = v_str(r, i, 2);
		f->table = v_str(r, i, 3);
		f->table_disp = v_str(r, i, 4);
		f->table_sql = v_str(r, i, 5);
		f->ref_disp = v_str(r, i, 6);
		f->keys = v_array(r, i, 7);
		f->cols = v_array(r, i, 8);
		f->cols_sql = v_array(r, i, 9);
		f->ref_cols = v_array(r, i, 10);
		f->table_rows = v_num(r, i, 11, -1);
		f->table_bytes = v_num(r, i, 12, 0);
		size_t nk = json_array_size(f->keys);
		if (!f->name || !f->table_oid || !f->table || !f->keys || !f->cols || !f->cols_sql || !f->ref_cols ||
		    nk == 0 || json_array_size(f->cols) != nk || json_array_size(f->cols_sql) != nk) {
			snprintf(err, errlen, "catalog query (foreign keys): unexpected row for constraint %s",
				 f->name ? f->name : "?");
			fk_free(v, (size_t)i + 1);
			return -1;
		}
	}
	*out = v;
	*nout = (size_t)n;
	return 0;
}

static json_int_t key_at(const json_t *arr, size_t i)
{
	return json_integer_value(json_array_get(arr, i));
}

/* ------------------------------------------------------------ rules */

/* Do the first n key columns of x equal, as a set, the FK's columns? */
static bool leading_cols_are(const struct idx *x, const json_t *keys)
{
	size_t n = json_array_size(keys);
	if ((size_t)x->nkeys < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		json_int_t k = key_at(x->allkeys, i);
		if (k == 0) /* an expression */
			return false;
		bool found = false;
		for (size_t j = 0; j < n && !found; j++)
			found = key_at(keys, j) == k;
		if (!found)
			return false;
	}
	return true;
}

/* Can this index serve the RI check and joins on the FK's columns?  Partial
 * indexes cannot (the check has no matching WHERE); a hash index only for a
 * one-column key; other access methods are not counted (rare, and a gist index
 * on an FK column is not what anyone means by "indexed"). */
static bool index_serves_fk(const struct idx *x, const struct fk *f)
{
	if (strcmp(x->table_oid, f->table_oid) != 0 || !x->valid || x->partial)
		return false;
	if (strcmp(x->am, "btree") == 0)
		return leading_cols_are(x, f->keys);
	if (strcmp(x->am, "hash") == 0)
		return json_array_size(f->keys) == 1 && leading_cols_are(x, f->keys);
	return false;
}

/* An index that cannot be dropped on its own, or whose job is a constraint. */
static bool protected_index(const struct idx *x)
{
	return x->unique || x->primary || x->exclusion || x->backs_constraint || x->attached;
}

/* Is a covered by b: a's key columns a leading prefix of b's with the same
 * operator classes, collations and orderings, a's INCLUDE columns somewhere in b,
 * a unique a only by an identical unique b?  Both valid, without predicate; a
 * without expressions.  Prefix redundancy is a btree property; other access
 * methods count only exact duplicates. */
static bool covered_by(const struct idx *a, const struct idx *b)
{
	if (a == b || strcmp(a->table_oid, b->table_oid) != 0 || !a->valid || !b->valid || a->partial ||
	    b->partial || a->expr || strcmp(a->am, b->am) != 0)
		return false;
	if (a->nkeys > b->nkeys || (a->nkeys < b->nkeys && strcmp(a->am, "btree") != 0))
		return false;
	if (a->unique && !(b->unique && a->nkeys == b->nkeys))
		return false;
	for (int i = 0; i < a->nkeys; i++) {
		size_t k = (size_t)i;
		if (key_at(a->allkeys, k) != key_at(b->allkeys, k) ||
		    !json_equal(json_array_get(a->classes, k), json_array_get(b->classes, k)) ||
		    !json_equal(json_array_get(a->colls, k), json_array_get(b->colls, k)) ||
		    !json_equal(json_array_get(a->opts, k), json_array_get(b->opts, k)))
			return false;
	}
	for (size_t i = (size_t)a->nkeys; i < json_array_size(a->allkeys); i++) {
		bool found = false;
		for (size_t j = 0; j < json_array_size(b->allkeys) && !found; j++)
			found = key_at(b->allkeys, j) == key_at(a->allkeys, i);
		if (!found)
			return false;
	}
	return true;
}

/* How much an index must stay: 2 cannot be dropped on its own (primary key,
 * exclusion, backs a constraint, attached to a partitioned index), 1 enforces
 * uniqueness, 0 is a plain index. */
static int keep_rank(const struct idx *x)
{
	if (x->primary || x->exclusion || x->backs_constraint || x->attached)
		return 2;
	return x->unique ? 1 : 0;
}

/* Of two identical indexes, which one stays?  The one with the higher keep_rank,
 * else the one whose name sorts first (stable from run to run, unlike scan counts). */
static bool keeps_over(const struct idx *keep, const struct idx *other)
{
	if (keep_rank(keep) != keep_rank(other))
		return keep_rank(keep) > keep_rank(other);
	return strcmp(keep->name, other->name) < 0;
}

/* The index that makes `a` redundant, or NULL.  Of several, the one with the
 * most key columns: it is the one that survives when the others go too; then the
 * one keeps_over prefers.  A unique `a` can only be redundant to an identical
 * unique index (covered_by), e.g. a CREATE UNIQUE INDEX repeating a UNIQUE
 * constraint. */
static const struct idx *redundant_to(const struct idx *a, const struct idx *v, size_t n)
{
	if (keep_rank(a) == 2)
		return NULL;
	const struct idx *best = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct idx *b = &v[i];
		if (!covered_by(a, b))
			continue;
		if (b->nkeys == a->nkeys && covered_by(b, a) && !keeps_over(b, a))
			continue; /* an exact duplicate, and a is the one that stays */
		if (!best || b->nkeys > best->nkeys || (b->nkeys == best->nkeys && keeps_over(b, best)))
			best = b;
	}
	return best;
}

/* ------------------------------------------------------------ the ORM map */

struct orm {
	const json_t *model; /* models[] entry, or NULL */
	const char *model_name, *app_label;
	bool auto_created;
};

static struct orm orm_for_table(const json_t *models, const char *table_disp)
{
	struct orm o = {0};
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(models, "models"), i, m)
	{
		const char *t = json_string_value(json_object_get(m, "table"));
		if (t && table_disp && strcmp(t, table_disp) == 0) {
			o.model = m;
			o.model_name = json_string_value(json_object_get(m, "model"));
			o.app_label = json_string_value(json_object_get(m, "app_label"));
			o.auto_created = json_is_true(json_object_get(m, "auto_created"));
			if (!o.model_name)
				o.model = NULL;
			break;
		}
	}
	return o;
}

/* The model field whose column is `column`, or NULL. */
static const json_t *orm_field(const struct orm *o, const char *column)
{
	size_t i;
	json_t *f;
	if (!o->model)
		return NULL;
	json_array_foreach(json_object_get(o->model, "fields"), i, f)
	{
		const char *c = json_string_value(json_object_get(f, "column"));
		if (c && column && strcmp(c, column) == 0 && json_string_value(json_object_get(f, "name")))
			return f;
	}
	return NULL;
}

static const char *field_name(const json_t *f)
{
	return json_string_value(json_object_get(f, "name"));
}

static bool field_is_relation(const json_t *f)
{
	const char *t = json_string_value(json_object_get(f, "type"));
	return t && (strcmp(t, "ForeignKey") == 0 || strcmp(t, "OneToOneField") == 0);
}

/* Names of the fields of all `cols` as a python list literal (["a", "b"]), or
 * false when some column has no field. */
static bool fields_list(const struct orm *o, const json_t *cols, char *buf, size_t len)
{
	size_t used = 0;
	int w = snprintf(buf, len, "[");
	used = w > 0 ? (size_t)w : 0;
	for (size_t i = 0; i < json_array_size(cols); i++) {
		const json_t *f = orm_field(o, json_string_value(json_array_get(cols, i)));
		if (!f)
			return false;
		w = snprintf(buf + used, used < len ? len - used : 0, "%s\"%s\"", i ? ", " : "", field_name(f));
		if (w < 0)
			return false;
		used += (size_t)w;
	}
	w = snprintf(buf + used, used < len ? len - used : 0, "]");
	return w > 0 && used + (size_t)w < len;
}

/* ------------------------------------------------------------ formatting */

/* "a, b" from a json array of strings. */
static char *join_cols(const json_t *cols, const char *sep)
{
	size_t len = 1;
	for (size_t i = 0; i < json_array_size(cols); i++)
		len += strlen(json_string_value(json_array_get(cols, i)) ?: "") + strlen(sep);
	char *s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < json_array_size(cols); i++) {
		if (i)
			strcat(s, sep);
		strcat(s, json_string_value(json_array_get(cols, i)) ?: "");
	}
	return s;
}

/* What a sentence calls the columns: "t.c" for one, "t (a, b)" for several. */
static char *subject(const char *table, const json_t *cols)
{
	char *list = join_cols(cols, ", "), *s = NULL;
	if (!list)
		return NULL;
	if (asprintf(&s, json_array_size(cols) == 1 ? "%s.%s" : "%s (%s)", table, list) < 0)
		s = NULL;
	free(list);
	return s;
}

/* pg_size_pretty-like: "8192 bytes", "16 kB", "1.5 MB". */
static void fmt_bytes(char *buf, size_t len, double b)
{
	static const char *const units[] = {"kB", "MB", "GB", "TB"};
	if (b < 10 * KB) {
		snprintf(buf, len, "%.0f bytes", b);
		return;
	}
	double v = b / KB;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* An identifier as SQL: bare when it is plain lower-case, else double-quoted.
 * Used for index names we make up (they end in _idx, so never a keyword). */
static void quote_ident_c(char *buf, size_t len, const char *s)
{
	bool plain = (islower((unsigned char)s[0]) || s[0] == '_');
	for (const char *p = s; *p && plain; p++)
		plain = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_';
	if (plain) {
		snprintf(buf, len, "%s", s);
		return;
	}
	size_t o = 0;
	if (len < 3) {
		if (len)
			buf[0] = '\0';
		return;
	}
	buf[o++] = '"';
	for (const char *p = s; *p && o + 3 < len; p++) {
		if (*p == '"')
			buf[o++] = '"';
		buf[o++] = *p;
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

/* <table>_<col>[_<col>...]_idx, cut to 63 bytes on a character boundary, with a
 * number added when an index of that name already exists in the schema. */
static void new_index_name(char *buf, size_t len, const struct fk *f, const struct idx *v, size_t n)
{
	char base[256];
	size_t o = (size_t)snprintf(base, sizeof(base), "%s", f->table);
	for (size_t i = 0; i < json_array_size(f->cols) && o < sizeof(base); i++)
		o += (size_t)snprintf(base + o, sizeof(base) - o, "_%s", json_string_value(json_array_get(f->cols, i)));
	for (int attempt = 0; attempt < 100; attempt++) {
		char suffix[16];
		snprintf(suffix, sizeof(suffix), attempt ? "_idx%d" : "_idx", attempt);
		size_t keep = strlen(base);
		if (keep + strlen(suffix) > NAMEDATALEN_MAX)
			keep = NAMEDATALEN_MAX - strlen(suffix);
		while (keep > 0 && ((unsigned char)base[keep] & 0xC0) == 0x80)
			keep--; /* do not cut a UTF-8 sequence */
		snprintf(buf, len, "%.*s%s", (int)keep, base, suffix);
		bool taken = false;
		for (size_t i = 0; i < n && !taken; i++)
			taken = strcmp(v[i].schema, f->schema) == 0 && strcmp(v[i].name, buf) == 0;
		if (!taken)
			return;
	}
}

static const char *severity_for_table(double rows, double bytes)
{
	if (rows > FK_HIGH_ROWS || bytes > FK_HIGH_BYTES)
		return "high";
	if (rows > FK_MEDIUM_ROWS || bytes > FK_MEDIUM_BYTES)
		return "medium";
	return "low";
}

static const char *severity_for_index(double bytes)
{
	return bytes > IDX_HIGH_BYTES ? "high" : bytes > IDX_MEDIUM_BYTES ? "medium" : "low";
}

/* A finding with the fields every kind has; kind-specific ones are added after.
 * Takes ownership of django (may be NULL) and columns. */
static json_t *finding_new(const char *id, const char *kind, const char *severity, const char *table,
			   json_t *columns, const char *fix, const char *sql, json_t *django)
{
	json_t *o = json_object();
	bool fail = !o || !columns;
#define SET(k, v)                                                                 \
	do {                                                                      \
		json_t *v_ = (v);                                                 \
		if (!v_ || !o || json_object_set_new(o, (k), v_) < 0)             \
			fail = true;                                              \
	} while (0)
	SET("id", json_string(id));
	SET("kind", json_string(kind));
	SET("severity", json_string(severity));
	SET("route", json_null());
	SET("table", json_string(table));
	if (o && columns && json_object_set(o, "columns", columns) < 0)
		fail = true;
	SET("fingerprint", json_null());
	SET("query", json_null());
	SET("occurrences", json_integer(1));
	SET("time_wasted_ms", json_integer(0));
	SET("fix", json_string(fix));
	SET("sql", sql ? json_string(sql) : json_null());
	if (o && json_object_set(o, "django", django ? django : json_null()) < 0)
		fail = true;
#undef SET
	json_decref(columns);
	json_decref(django);
	if (fail) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* json_object_set_new with a sticky failure bit. */
static void put(json_t *o, const char *key, json_t *v, bool *fail)
{
	if (!v || json_object_set_new(o, key, v) < 0)
		*fail = true;
}

/* ------------------------------------------------------------ findings */

static json_t *fk_finding(const struct fk *f, const struct idx *v, size_t n, const json_t *models)
{
	char *cols_id = join_cols(f->cols, ","), *cols_sql = join_cols(f->cols_sql, ", "), *subj = subject(f->table_disp, f->cols);
	json_t *out = NULL, *django = NULL;
	char id[1024], name[128], qname[300], sql[2048], fix[2048], size[32], what[512] = "", change[1024];
	if (!subj || !cols_id || !cols_sql)
		goto done;
	snprintf(id, sizeof(id), "unindexed_foreign_key:%s.%s(%s)", f->schema, f->table, cols_id);
	new_index_name(name, sizeof(name), f, v, n);
	quote_ident_c(qname, sizeof(qname), name);
	snprintf(sql, sizeof(sql), "CREATE INDEX CONCURRENTLY %s ON %s (%s);", qname, f->table_sql, cols_sql);
	fmt_bytes(size, sizeof(size), f->table_bytes);

	struct orm o = orm_for_table(models, f->table_disp);
	const json_t *field = json_array_size(f->cols) == 1 ? orm_field(&o, json_string_value(json_array_get(f->cols, 0)))
							   : NULL;
	char flist[512];
	if (o.model && !o.auto_created && field) {
		snprintf(what, sizeof(what), " (%s.%s, app %s)", o.model_name, field_name(field),
			 o.app_label ? o.app_label : "?");
		snprintf(change, sizeof(change), "db_index=True");
		django = json_pack("{s:s, s:s?, s:s, s:s}", "model", o.model_name, "app_label", o.app_label, "field",
				   field_name(field), "change", change);
	} else if (o.model && !o.auto_created && fields_list(&o, f->cols, flist, sizeof(flist))) {
		snprintf(what, sizeof(what), " (model %s, app %s)", o.model_name, o.app_label ? o.app_label : "?");
		snprintf(change, sizeof(change), "Meta.indexes = [models.Index(fields=%s)]", flist);
		django = json_pack("{s:s, s:s?, s:s}", "model", o.model_name, "app_label", o.app_label, "change", change);
	} else if (o.model && o.auto_created) {
		snprintf(what, sizeof(what), " (the auto-created many-to-many table %s)", o.model_name);
	}
	snprintf(fix, sizeof(fix),
		 "Index the foreign key %s%s: PostgreSQL does not index foreign keys by itself, so every "
		 "DELETE or key UPDATE on %s scans %s (%s) and joins on it cannot use an index%s.",
		 subj, what, f->ref_disp, f->table_disp, size,
		 django ? (field ? "; set db_index=True on the field (the ForeignKey default, turned off here) and run "
				   "makemigrations, or run the SQL"
				 : "; add the index to the model's Meta.indexes and run makemigrations, or run the SQL")
			: "");

	out = finding_new(id, "unindexed_foreign_key", severity_for_table(f->table_rows, f->table_bytes),
			  f->table_disp, json_deep_copy(f->cols), fix, sql, django);
	django = NULL;
	if (out) {
		bool fail = false;
		put(out, "constraint", json_string(f->name), &fail);
		put(out, "ref_table", json_string(f->ref_disp ? f->ref_disp : ""), &fail);
		put(out, "ref_columns", json_deep_copy(f->ref_cols), &fail);
		put(out, "size_bytes", json_integer((json_int_t)f->table_bytes), &fail);
		put(out, "rows", f->table_rows >= 0 ? json_integer((json_int_t)f->table_rows) : json_null(), &fail);
		if (fail) {
			json_decref(out);
			out = NULL;
		}
	}
done:
	json_decref(django);
	free(subj);
	free(cols_id);
	free(cols_sql);
	return out;
}

/* "django" for dropping index x, or NULL when the map does not know the table. */
static json_t *drop_django(const struct idx *x, const struct orm *o)
{
	if (!o->model || o->auto_created)
		return NULL;
	if (x->unique) /* only an identical unique index makes one redundant */
		return json_pack("{s:s, s:s?, s:s}", "model", o->model_name, "app_label", o->app_label, "change",
				 "remove the duplicate UniqueConstraint / unique_together entry");
	if (x->nkeys == 1 && json_array_size(x->allkeys) == 1) {
		const json_t *f = orm_field(o, json_string_value(json_array_get(x->cols, 0)));
		if (f) {
			const char *change;
			char buf[512];
			size_t nl = strlen(x->name);
			bool like = nl > 5 && strcmp(x->name + nl - 5, "_like") == 0;
			if (like && (json_is_true(json_object_get(f, "unique")) || json_is_true(json_object_get(f, "db_index"))))
				/* Django adds a second, *_like index (varchar_pattern_ops) to an indexed
				 * or unique CharField/TextField, for startswith/contains lookups; no
				 * field option turns it off. */
				change = "this is the *_like index Django adds for LIKE 'prefix%' lookups (startswith, contains) "
					 "to an indexed or unique text field; if no such lookup runs, drop it with a "
					 "migrations.RunSQL migration (the field keeps its other index)";
			else if (field_is_relation(f))
				change = "db_index=False"; /* a ForeignKey is indexed unless told not to be */
			else if (json_is_true(json_object_get(f, "db_index")))
				change = "remove db_index=True";
			else {
				snprintf(buf, sizeof(buf), "remove the Meta.indexes entry models.Index(fields=[\"%s\"])",
					 field_name(f));
				change = buf;
			}
			return json_pack("{s:s, s:s?, s:s, s:s}", "model", o->model_name, "app_label", o->app_label,
					 "field", field_name(f), "change", change);
		}
	}
	char flist[512], change[700];
	if (fields_list(o, x->cols, flist, sizeof(flist)))
		snprintf(change, sizeof(change), "remove the Meta.indexes entry models.Index(fields=%s)", flist);
	else
		snprintf(change, sizeof(change), "remove db_index=True / the Meta.indexes entry");
	return json_pack("{s:s, s:s?, s:s}", "model", o->model_name, "app_label", o->app_label, "change", change);
}

/* " (Review.title, app shop)", " (model Review, app shop)" or "" for the fix sentence. */
static void orm_words(const struct idx *x, const struct orm *o, char *buf, size_t len)
{
	buf[0] = '\0';
	if (!o->model)
		return;
	const json_t *f = x->nkeys == 1 ? orm_field(o, json_string_value(json_array_get(x->cols, 0))) : NULL;
	if (o->auto_created)
		snprintf(buf, len, " (the auto-created many-to-many table %s: only a custom through model lets Django "
				   "drop it for good)",
			 o->model_name);
	else if (f)
		snprintf(buf, len, " (%s.%s, app %s)", o->model_name, field_name(f), o->app_label ? o->app_label : "?");
	else
		snprintf(buf, len, " (model %s, app %s)", o->model_name, o->app_label ? o->app_label : "?");
}

static json_t *redundant_finding(const struct idx *x, const struct idx *by, const json_t *models)
{
	char *subj = subject(x->table_disp, x->cols), *by_cols = join_cols(by->cols, ", ");
	json_t *out = NULL;
	if (!subj || !by_cols)
		goto done;
	char id[512], sql[700], fix[2048], size[32], words[512];
	snprintf(id, sizeof(id), "redundant_index:%s.%s", x->schema, x->name);
	snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY %s;", x->name_sql);
	fmt_bytes(size, sizeof(size), x->bytes);
	struct orm o = orm_for_table(models, x->table_disp);
	orm_words(x, &o, words, sizeof(words));
	snprintf(fix, sizeof(fix),
		 "Index %s on %s%s is %s %s on (%s), which serves every lookup it serves: drop it to save %s "
		 "and the work it adds to every write.",
		 x->name_disp, subj, words, x->nkeys == by->nkeys ? "a duplicate of" : "covered by",
		 by->name_disp, by_cols, size);
	out = finding_new(id, "redundant_index", severity_for_index(x->bytes), x->table_disp, json_deep_copy(x->cols),
			  fix, sql, drop_django(x, &o));
	if (out) {
		bool fail = false;
		put(out, "index", json_string(x->name_disp), &fail);
		put(out, "size_bytes", json_integer((json_int_t)x->bytes), &fail);
		put(out, "redundant_to", json_string(by->name_disp), &fail);
		put(out, "redundant_to_columns", json_deep_copy(by->cols), &fail);
		put(out, "idx_scan", x->has_stats ? json_integer((json_int_t)x->idx_scan) : json_null(), &fail);
		if (fail) {
			json_decref(out);
			out = NULL;
		}
	}
done:
	free(subj);
	free(by_cols);
	return out;
}

static json_t *unused_finding(const struct idx *x, const char *stats_reset, const json_t *models)
{
	char *subj = subject(x->table_disp, x->cols);
	json_t *out = NULL;
	if (!subj)
		return NULL;
	char id[512], sql[700], fix[2048], size[32], words[512], since[128], reads[64];
	snprintf(id, sizeof(id), "unused_index:%s.%s", x->schema, x->name);
	snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY %s;", x->name_sql);
	fmt_bytes(size, sizeof(size), x->bytes);
	struct orm o = orm_for_table(models, x->table_disp);
	orm_words(x, &o, words, sizeof(words));
	if (stats_reset)
		snprintf(since, sizeof(since), "since the statistics were reset at %s", stats_reset);
	else
		snprintf(since, sizeof(since), "since the statistics began (never reset)");
	snprintf(reads, sizeof(reads), "%.0f index scan%s", x->table_reads, x->table_reads == 1 ? "" : "s");
	/* The judgement (is that period representative? does a replica or a monthly
	 * job need it?) belongs to the reader: the sentence gives the facts. */
	snprintf(fix, sizeof(fix),
		 "Index %s on %s%s has not been scanned once %s, against %s of its table: if that period is "
		 "representative and no replica or rare job needs it, drop it to save %s and the work it adds to "
		 "every write.",
		 x->name_disp, subj, words, since, reads, size);
	out = finding_new(id, "unused_index", severity_for_index(x->bytes), x->table_disp, json_deep_copy(x->cols), fix,
			  sql, drop_django(x, &o));
	if (out) {
		bool fail = false;
		put(out, "index", json_string(x->name_disp), &fail);
		put(out, "size_bytes", json_integer((json_int_t)x->bytes), &fail);
		put(out, "idx_scan", json_integer(0), &fail);
		put(out, "table_idx_scans", json_integer((json_int_t)x->table_reads), &fail);
		put(out, "stats_reset", stats_reset ? json_string(stats_reset) : json_null(), &fail);
		if (fail) {
			json_decref(out);
			out = NULL;
		}
	}
	free(subj);
	return out;
}

/* Does some foreign key of x's table have x's leading columns? */
static bool covers_some_fk(const struct idx *x, const struct fk *fks, size_t nfk)
{
	for (size_t i = 0; i < nfk; i++)
		if (strcmp(fks[i].table_oid, x->table_oid) == 0 && leading_cols_are(x, fks[i].keys))
			return true;
	return false;
}

static int append(json_t *out, json_t *f, char *err, size_t errlen)
{
	if (!f || json_array_append_new(out, f) < 0) {
		snprintf(err, errlen, "out of memory building the findings");
		return -1;
	}
	return 0;
}

int advise_catalog(PGconn *c, const json_t *models, json_t *out, char *err, size_t errlen)
{
	int rc = -1;
	PGresult *ri = NULL, *rf = NULL, *rs = NULL;
	struct idx *idx = NULL;
	struct fk *fks = NULL;
	size_t nidx = 0, nfk = 0;
	if (!c || PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "no connection to PostgreSQL");
		return -1;
	}
	if (!json_is_array(out)) {
		snprintf(err, errlen, "advise_catalog: out must be an array");
		return -1;
	}
	if (!(ri = catalog_query(c, "indexes", INDEX_SQL, INDEX_NFIELDS, err, errlen)) ||
	    !(rf = catalog_query(c, "foreign keys", FK_SQL, FK_NFIELDS, err, errlen)) ||
	    !(rs = catalog_query(c, "statistics reset", STATS_SQL, 1, err, errlen)))
		goto out;
	if (load_indexes(ri, &idx, &nidx, err, errlen) < 0 || load_fks(rf, &fks, &nfk, err, errlen) < 0)
		goto out;
	const char *stats_reset = PQntuples(rs) > 0 ? v_str(rs, 0, 0) : NULL;

	for (size_t i = 0; i < nfk; i++) {
		bool indexed = false;
		for (size_t j = 0; j < nidx && !indexed; j++)
			indexed = index_serves_fk(&idx[j], &fks[i]);
		if (!indexed && append(out, fk_finding(&fks[i], idx, nidx, models), err, errlen) < 0)
			goto out;
	}
	/* INDEX_SQL orders by schema and table: each table's indexes are one run, and
	 * redundancy is a question within a table (this keeps it linear in tables). */
	for (size_t i = 0, start = 0; i < nidx; i++) {
		if (strcmp(idx[i].table_oid, idx[start].table_oid) != 0)
			start = i;
		size_t end = i + 1;
		while (end < nidx && strcmp(idx[end].table_oid, idx[start].table_oid) == 0)
			end++;
		const struct idx *by = redundant_to(&idx[i], idx + start, end - start);
		if (!by)
			continue;
		idx[i].redundant = true;
		if (append(out, redundant_finding(&idx[i], by, models), err, errlen) < 0)
			goto out;
	}
	for (size_t i = 0; i < nidx; i++) {
		const struct idx *x = &idx[i];
		/* see the file comment for why each of these is skipped */
		if (x->redundant || protected_index(x) || !x->valid || !x->has_stats || x->idx_scan > 0 ||
		    !x->table_reads_known || x->table_reads <= 0 || covers_some_fk(x, fks, nfk))
			continue;
		if (append(out, unused_finding(x, stats_reset, models), err, errlen) < 0)
			goto out;
	}
	rc = 0;
out:
	idx_free(idx, nidx);
	fk_free(fks, nfk);
	PQclear(ri);
	PQclear(rf);
	PQclear(rs);
	return rc;
}

/* ------------------------------------------------------------ schema facts */

static const char SCHEMA_FK_SQL[] =
	"SELECT CASE WHEN n.nspname = current_schema() THEN t.relname::text ELSE n.nspname || '.' || t.relname END,"
	" to_json(ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS u(k, o)"
	"   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.k ORDER BY u.o)),"
	" CASE WHEN rn.nspname = current_schema() THEN r.relname::text ELSE rn.nspname || '.' || r.relname END,"
	" to_json(ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS u(k, o)"
	"   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = u.k ORDER BY u.o))"
	" FROM pg_constraint c"
	" JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
	" JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace"
	" WHERE c.contype = 'f' AND c.conparentid = 0"
	"   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
	"   AND n.nspname !~ '^pg_(toast_)?temp_'"
	" ORDER BY 1, c.conname";

static const char SCHEMA_PK_SQL[] =
	"SELECT CASE WHEN n.nspname = current_schema() THEN t.relname::text ELSE n.nspname || '.' || t.relname END,"
	" to_json(ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS u(k, o)"
	"   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.k ORDER BY u.o))"
	" FROM pg_constraint c"
	" JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
	" WHERE c.contype = 'p' AND c.conparentid = 0"
	"   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
	"   AND n.nspname !~ '^pg_(toast_)?temp_'"
	" ORDER BY 1";

/* rows: reltuples, NULL when never analyzed (-1 since PostgreSQL 14). */
static const char SCHEMA_TABLE_SQL[] =
	"SELECT CASE WHEN n.nspname = current_schema() THEN t.relname::text ELSE n.nspname || '.' || t.relname END,"
	" CASE WHEN t.reltuples < 0 THEN NULL ELSE t.reltuples::int8 END,"
	" pg_total_relation_size(t.oid)"
	" FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace"
	" WHERE t.relkind IN ('r', 'p', 'm')"
	"   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
	"   AND n.nspname !~ '^pg_(toast_)?temp_'"
	" ORDER BY 1";

int advise_schema(PGconn *c, json_t **schema, char *err, size_t errlen)
{
	int rc = -1;
	PGresult *rf = NULL, *rp = NULL, *rt = NULL;
	json_t *s = NULL, *fks = NULL, *pks = NULL, *tables = NULL;
	*schema = NULL;
	if (!c || PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "no connection to PostgreSQL");
		return -1;
	}
	if (!(rf = catalog_query(c, "foreign keys", SCHEMA_FK_SQL, 4, err, errlen)) ||
	    !(rp = catalog_query(c, "primary keys", SCHEMA_PK_SQL, 2, err, errlen)) ||
	    !(rt = catalog_query(c, "tables", SCHEMA_TABLE_SQL, 3, err, errlen)))
		goto out;
	bool fail = !(fks = json_array()) || !(pks = json_object()) || !(tables = json_object());
	for (int i = 0; !fail && i < PQntuples(rf); i++) {
		json_t *cols = v_array(rf, i, 1), *ref_cols = v_array(rf, i, 3);
		const char *t = v_str(rf, i, 0), *rtab = v_str(rf, i, 2);
		if (!t || !rtab || !cols || !ref_cols) {
			json_decref(cols);
			json_decref(ref_cols);
			fail = true;
			break;
		}
		json_t *fk = json_pack("{s:s, s:o, s:s, s:o}", "table", t, "columns", cols, "ref_table", rtab,
				       "ref_columns", ref_cols);
		if (!fk || json_array_append_new(fks, fk) < 0)
			fail = true;
	}
	for (int i = 0; !fail && i < PQntuples(rp); i++) {
		json_t *cols = v_array(rp, i, 1);
		const char *t = v_str(rp, i, 0);
		if (!t || !cols || json_object_set_new(pks, t, cols) < 0) {
			if (!t)
				json_decref(cols);
			fail = true;
		}
	}
	for (int i = 0; !fail && i < PQntuples(rt); i++) {
		const char *t = v_str(rt, i, 0);
		json_t *info = json_pack("{s:o, s:I}", "rows",
					 PQgetisnull(rt, i, 1) ? json_null() : json_integer((json_int_t)v_num(rt, i, 1, 0)),
					 "bytes", (json_int_t)v_num(rt, i, 2, 0));
		if (!t || !info || json_object_set_new(tables, t, info) < 0) {
			if (!t)
				json_decref(info);
			fail = true;
		}
	}
	if (!fail) {
		s = json_pack("{s:o, s:o, s:o}", "foreign_keys", fks, "primary_keys", pks, "tables", tables);
		fks = pks = tables = NULL; /* stolen, even on failure */
		fail = !s;
	}
	if (fail) {
		snprintf(err, errlen, "cannot build the schema facts (out of memory or an unexpected catalog row)");
		goto out;
	}
	*schema = s;
	s = NULL;
	rc = 0;
out:
	json_decref(s);
	json_decref(fks);
	json_decref(pks);
	json_decref(tables);
	PQclear(rf);
	PQclear(rp);
	PQclear(rt);
	return rc;
}
