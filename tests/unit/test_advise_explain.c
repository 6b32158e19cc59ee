/* test_advise_explain.c - the pure half of advise_explain.c on EXPLAIN (FORMAT JSON)
 * output captured from PostgreSQL 15 (trimmed of fields the code does not read):
 * plan reading, the summary, the missing-index rule, candidate columns, index
 * names and the finding's wording.  No PostgreSQL needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "insight/advise_internal.h"

/* SELECT * FROM shop_review WHERE status = 'spam' ORDER BY created_at DESC LIMIT 10 (EXPLAIN, VERBOSE) */
static const char PLAN_SORT_LIMIT[] =
	"[{\"Plan\":{\"Node Type\":\"Limit\",\"Total Cost\":4942.15,\"Plan Rows\":10,\"Plans\":[{\"Node Type\":"
	"\"Gather Merge\",\"Parent Relationship\":\"Outer\",\"Total Cost\":4943.19,\"Plan Rows\":19,\"Workers "
	"Planned\":1,\"Plans\":[{\"Node Type\":\"Sort\",\"Parent Relationship\":\"Outer\",\"Total Cost\":3941.04,"
	"\"Plan Rows\":19,\"Sort Key\":[\"shop_review.created_at DESC\"],\"Plans\":[{\"Node Type\":\"Seq Scan\","
	"\"Parent Relationship\":\"Outer\",\"Parallel Aware\":true,\"Relation Name\":\"shop_review\",\"Schema\":"
	"\"public\",\"Alias\":\"shop_review\",\"Total Cost\":3940.59,\"Plan Rows\":19,\"Filter\":\"(shop_review."
	"status = 'spam'::text)\"}]}]}]}}]";

/* SELECT id FROM shop_review WHERE status = 'spam' (EXPLAIN ANALYZE) */
static const char PLAN_ANALYZED[] =
	"[{\"Plan\":{\"Node Type\":\"Seq Scan\",\"Relation Name\":\"shop_review\",\"Schema\":\"public\",\"Alias\":"
	"\"shop_review\",\"Total Cost\":4970.0,\"Plan Rows\":33,\"Actual Rows\":40,\"Actual Loops\":1,\"Filter\":"
	"\"(shop_review.status = 'spam'::text)\",\"Rows Removed by Filter\":199960},\"Planning Time\":0.326,"
	"\"Execution Time\":13.934}]";

/* SELECT id FROM shop_review WHERE product_id = 7 AND body <> ... (EXPLAIN ANALYZE); %d: rows removed */
static const char PLAN_BITMAP_FMT[] =
	"[{\"Plan\":{\"Node Type\":\"Bitmap Heap Scan\",\"Relation Name\":\"shop_review\",\"Schema\":\"public\","
	"\"Alias\":\"shop_review\",\"Total Cost\":616.18,\"Plan Rows\":1,\"Actual Rows\":0,\"Actual Loops\":1,"
	"\"Recheck Cond\":\"(shop_review.product_id = 7)\",\"Filter\":\"(shop_review.body <> 'x'::text)\","
	"\"Rows Removed by Filter\":%d,\"Plans\":[{\"Node Type\":\"Bitmap Index Scan\",\"Parent Relationship\":"
	"\"Outer\",\"Index Name\":\"shop_review_product_id_idx\",\"Total Cost\":5.79,\"Plan Rows\":199,"
	"\"Actual Rows\":200,\"Actual Loops\":1,\"Index Cond\":\"(shop_review.product_id = 7)\"}]},"
	"\"Planning Time\":0.314,\"Execution Time\":1.381}]";

/* SELECT r.id FROM shop_review r JOIN small s ON s.id = r.product_id WHERE s.v = 3 (EXPLAIN, VERBOSE) */
static const char PLAN_JOIN[] =
	"[{\"Plan\":{\"Node Type\":\"Nested Loop\",\"Join Type\":\"Inner\",\"Total Cost\":629.75,\"Plan Rows\":200,"
	"\"Plans\":[{\"Node Type\":\"Seq Scan\",\"Parent Relationship\":\"Outer\",\"Relation Name\":\"small\","
	"\"Schema\":\"public\",\"Alias\":\"s\",\"Total Cost\":9.25,\"Plan Rows\":1,\"Filter\":\"(s.v = 3)\"},"
	"{\"Node Type\":\"Bitmap Heap Scan\",\"Parent Relationship\":\"Inner\",\"Relation Name\":\"shop_review\","
	"\"Schema\":\"public\",\"Alias\":\"r\",\"Total Cost\":618.5,\"Plan Rows\":200,\"Recheck Cond\":"
	"\"(r.product_id = s.id)\",\"Plans\":[{\"Node Type\":\"Bitmap Index Scan\",\"Parent Relationship\":"
	"\"Outer\",\"Index Name\":\"shop_review_product_id_idx\",\"Total Cost\":5.79,\"Plan Rows\":200,"
	"\"Index Cond\":\"(r.product_id = s.id)\"}]}]}}]";

/* A Sort for a LIMIT over an unfiltered scan: SELECT * FROM t ORDER BY created_at LIMIT 5 */
static const char PLAN_TOPN[] =
	"[{\"Plan\":{\"Node Type\":\"Limit\",\"Total Cost\":9000,\"Plan Rows\":5,\"Plans\":[{\"Node Type\":\"Sort\","
	"\"Total Cost\":8999,\"Plan Rows\":200000,\"Sort Key\":[\"t.created_at\"],\"Plans\":[{\"Node Type\":"
	"\"Seq Scan\",\"Relation Name\":\"t\",\"Schema\":\"public\",\"Total Cost\":3000,\"Plan Rows\":200000}]}]}}]";

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *doc = json_loads(text, 0, &e);
	if (!doc)
		fail_msg("fixture is not JSON: %s", e.text);
	return doc;
}

static json_t *read_plan(const char *text, struct advise_plan *p)
{
	json_t *doc = load(text);
	char err[128];
	assert_int_equal(advise_plan_read(doc, p, err, sizeof(err)), 0);
	return doc;
}

static void test_read_sort_limit(void **state)
{
	(void)state;
	struct advise_plan p;
	json_t *doc = read_plan(PLAN_SORT_LIMIT, &p);
	assert_false(p.analyzed);
	assert_true(p.total_cost == 4942.15);
	assert_true(p.plan_rows == 10);
	assert_int_equal(p.nscans, 1);
	const struct advise_scan *s = &p.scans[0];
	assert_string_equal(s->node_type, "Seq Scan");
	assert_string_equal(s->relation, "shop_review");
	assert_string_equal(s->schema, "public");
	assert_string_equal(s->filter, "(shop_review.status = 'spam'::text)");
	assert_true(s->plan_rows == 19);
	assert_true(s->actual_rows == -1);
	assert_true(s->rows_removed == -1);
	assert_int_equal(s->workers, 1); /* Gather Merge's workers reach the parallel-aware scan */
	assert_true(s->sort_limit);      /* Limit -> Gather Merge -> Sort -> scan */
	assert_true(s->limit_rows == 10);
	assert_true(s->table_rows == -1);
	json_decref(doc);
}

static void test_summary(void **state)
{
	(void)state;
	struct advise_plan p;
	json_t *doc = read_plan(PLAN_SORT_LIMIT, &p);
	p.scans[0].table_rows = 200000;
	json_t *sum = advise_plan_summary(doc, &p);
	assert_non_null(sum);
	assert_true(json_real_value(json_object_get(sum, "total_cost")) == 4942.15);
	assert_true(json_number_value(json_object_get(sum, "plan_rows")) == 10);
	assert_true(json_is_false(json_object_get(sum, "analyzed")));
	json_t *types = json_object_get(sum, "node_types");
	assert_int_equal(json_array_size(types), 4);
	assert_string_equal(json_string_value(json_array_get(types, 0)), "Limit");
	assert_string_equal(json_string_value(json_array_get(types, 3)), "Seq Scan");
	json_t *cn = json_object_get(sum, "costliest_node");
	assert_string_equal(json_string_value(json_object_get(cn, "node_type")), "Seq Scan");
	assert_string_equal(json_string_value(json_object_get(cn, "relation")), "shop_review");
	assert_true(json_number_value(json_object_get(cn, "cost")) == 3940.59);
	assert_true(json_is_null(json_object_get(cn, "actual_rows")));
	assert_string_equal(json_string_value(json_object_get(cn, "filter")), "(shop_review.status = 'spam'::text)");
	json_t *seq = json_object_get(sum, "seq_scans");
	assert_int_equal(json_array_size(seq), 1);
	json_t *s0 = json_array_get(seq, 0);
	assert_string_equal(json_string_value(json_object_get(s0, "relation")), "shop_review");
	assert_true(json_number_value(json_object_get(s0, "table_rows")) == 200000);
	assert_true(json_number_value(json_object_get(s0, "plan_rows")) == 19);
	assert_true(json_is_null(json_object_get(s0, "rows_removed")));
	json_t *sorts = json_object_get(sum, "sorts");
	assert_int_equal(json_array_size(sorts), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(json_array_get(sorts, 0), "sort_key"), 0)),
			    "shop_review.created_at DESC");
	assert_true(json_number_value(json_object_get(json_array_get(sorts, 0), "cost")) == 3941.04);
	json_decref(sum);

	p.scans[0].table_rows = -1; /* unknown size shows as null */
	sum = advise_plan_summary(doc, &p);
	assert_true(json_is_null(json_object_get(json_array_get(json_object_get(sum, "seq_scans"), 0), "table_rows")));
	json_decref(sum);
	json_decref(doc);
}

static void test_summary_analyzed_and_join(void **state)
{
	(void)state;
	struct advise_plan p;
	json_t *doc = read_plan(PLAN_ANALYZED, &p);
	assert_true(p.analyzed);
	assert_true(p.scans[0].actual_rows == 40);
	assert_true(p.scans[0].rows_removed == 199960);
	json_t *sum = advise_plan_summary(doc, &p);
	assert_true(json_is_true(json_object_get(sum, "analyzed")));
	assert_true(json_number_value(json_object_get(json_object_get(sum, "costliest_node"), "actual_rows")) == 40);
	assert_true(json_number_value(json_object_get(json_array_get(json_object_get(sum, "seq_scans"), 0),
						      "rows_removed")) == 199960);
	json_decref(sum);
	json_decref(doc);

	doc = read_plan(PLAN_JOIN, &p);
	assert_int_equal(p.nscans, 2);
	assert_string_equal(p.scans[0].relation, "small");
	assert_string_equal(p.scans[1].relation, "shop_review");
	assert_false(p.scans[1].sort_limit);
	sum = advise_plan_summary(doc, &p);
	/* The costliest node is the one with the largest own share, not the root. */
	json_t *cn = json_object_get(sum, "costliest_node");
	assert_string_equal(json_string_value(json_object_get(cn, "node_type")), "Bitmap Heap Scan");
	assert_true(json_number_value(json_object_get(cn, "cost")) == 612.71);
	assert_true(json_is_null(json_object_get(cn, "filter")));
	assert_int_equal(json_array_size(json_object_get(sum, "seq_scans")), 1); /* only Seq Scans listed */
	assert_int_equal(json_array_size(json_object_get(sum, "sorts")), 0);
	json_decref(sum);
	json_decref(doc);
}

static void test_rule(void **state)
{
	(void)state;
	struct advise_plan p;
	json_t *doc = read_plan(PLAN_SORT_LIMIT, &p);
	struct advise_scan *s = &p.scans[0];
	assert_int_equal(advise_scan_why(s, p.analyzed, 10000), ADVISE_NO); /* size unknown, not analyzed */
	s->table_rows = 200000; /* 19 rows x 2 processes of 200,000 */
	assert_int_equal(advise_scan_why(s, p.analyzed, 10000), ADVISE_FILTER);
	assert_int_equal(advise_scan_why(s, p.analyzed, 1e6), ADVISE_NO); /* small table */
	s->table_rows = 500;
	/* 38 of 500 is not selective, but the table is still sorted for the LIMIT. */
	assert_int_equal(advise_scan_why(s, p.analyzed, 100), ADVISE_SORT_LIMIT);
	s->sort_limit = false;
	assert_int_equal(advise_scan_why(s, p.analyzed, 100), ADVISE_NO);
	s->sort_limit = true;
	s->filter = NULL;
	s->table_rows = 200000;
	assert_int_equal(advise_scan_why(s, p.analyzed, 10000), ADVISE_SORT_LIMIT);
	json_decref(doc);

	doc = read_plan(PLAN_ANALYZED, &p);
	s = &p.scans[0];
	/* Never-analyzed table: what the scan read stands in for its size. */
	assert_int_equal(advise_scan_why(s, p.analyzed, 10000), ADVISE_FILTER);
	assert_int_equal(advise_scan_why(s, p.analyzed, 300000), ADVISE_NO);
	s->rows_removed = 10; /* keeps most: no index */
	s->table_rows = 200000;
	assert_int_equal(advise_scan_why(s, p.analyzed, 10000), ADVISE_NO);
	json_decref(doc);

	doc = read_plan(PLAN_TOPN, &p);
	p.scans[0].table_rows = 200000;
	assert_true(p.scans[0].sort_limit);
	assert_true(p.scans[0].limit_rows == 5);
	assert_int_equal(advise_scan_why(&p.scans[0], p.analyzed, 10000), ADVISE_SORT_LIMIT);
	json_decref(doc);

	doc = read_plan(PLAN_JOIN, &p);
	p.scans[0].table_rows = 500;
	p.scans[1].table_rows = 200000;
	assert_int_equal(advise_scan_why(&p.scans[0], p.analyzed, 10000), ADVISE_NO);
	assert_int_equal(advise_scan_why(&p.scans[1], p.analyzed, 10000), ADVISE_NO); /* no filter */
	json_decref(doc);
}

static void test_rule_index_scan_filter(void **state)
{
	(void)state;
	char text[sizeof(PLAN_BITMAP_FMT) + 16];
	struct advise_plan p;
	snprintf(text, sizeof(text), PLAN_BITMAP_FMT, 200);
	json_t *doc = read_plan(text, &p);
	assert_int_equal(p.nscans, 1); /* the Bitmap Index Scan has no relation of its own */
	p.scans[0].table_rows = 200000;
	/* Throws away all it fetched, but only 200 rows: cheap enough. */
	assert_int_equal(advise_scan_why(&p.scans[0], p.analyzed, 10000), ADVISE_NO);
	json_decref(doc);

	snprintf(text, sizeof(text), PLAN_BITMAP_FMT, 50000);
	doc = read_plan(text, &p);
	p.scans[0].table_rows = 200000;
	assert_int_equal(advise_scan_why(&p.scans[0], p.analyzed, 10000), ADVISE_FILTER);
	assert_int_equal(advise_scan_why(&p.scans[0], false, 10000), ADVISE_NO); /* needs measured rows */
	json_decref(doc);
}

static void test_bad_documents(void **state)
{
	(void)state;
	struct advise_plan p;
	char err[128];
	const char *bad[] = {"{}", "[]", "[{\"Plan\": 3}]", "[{\"Plan\": {}}]", "[7]", "[{\"Plan\": {\"Node Type\": 1}}]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *doc = load(bad[i]);
		err[0] = '\0';
		assert_int_equal(advise_plan_read(doc, &p, err, sizeof(err)), -1);
		assert_true(err[0] != '\0');
		json_decref(doc);
	}
	/* Wrong types where numbers and strings belong: read, never crash. */
	json_t *doc = load("[{\"Plan\":{\"Node Type\":\"Seq Scan\",\"Relation Name\":\"t\",\"Total Cost\":\"x\","
			   "\"Filter\":5,\"Plans\":{\"a\":1}}}]");
	assert_int_equal(advise_plan_read(doc, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nscans, 1);
	assert_null(p.scans[0].filter);
	assert_string_equal(p.scans[0].schema, "");
	json_t *sum = advise_plan_summary(doc, &p);
	assert_non_null(sum);
	json_decref(sum);
	json_decref(doc);
}

/* A plan far deeper than PostgreSQL makes, and one with more scans than we keep. */
static void test_limits(void **state)
{
	(void)state;
	json_t *leaf = json_pack("{s:s, s:s, s:f}", "Node Type", "Seq Scan", "Relation Name", "t", "Total Cost", 1.0);
	json_t *node = leaf;
	for (int i = 0; i < 1000; i++)
		node = json_pack("{s:s, s:f, s:[o]}", "Node Type", "Result", "Total Cost", 1.0, "Plans", node);
	json_t *doc = json_pack("[{s:o}]", "Plan", node);
	struct advise_plan p;
	char err[64];
	assert_int_equal(advise_plan_read(doc, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nscans, 0); /* cut off before the leaf */
	json_t *sum = advise_plan_summary(doc, &p);
	assert_non_null(sum);
	json_decref(sum);
	json_decref(doc);

	json_t *kids = json_array();
	for (int i = 0; i < ADVISE_MAX_SCANS + 10; i++)
		json_array_append_new(kids, json_pack("{s:s, s:s}", "Node Type", "Seq Scan", "Relation Name", "t"));
	doc = json_pack("[{s:{s:s, s:o}}]", "Plan", "Node Type", "Append", "Plans", kids);
	assert_int_equal(advise_plan_read(doc, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nscans, ADVISE_MAX_SCANS);
	json_decref(doc);
}

static void pred(struct sql_analysis *a, const char *table, const char *col, enum sqla_op op)
{
	struct sqla_pred *p = &a->preds[a->npreds++];
	snprintf(p->col.table, sizeof(p->col.table), "%s", table);
	snprintf(p->col.column, sizeof(p->col.column), "%s", col);
	p->op = op;
}

static void order(struct sql_analysis *a, const char *table, const char *col)
{
	struct sqla_col *c = &a->order[a->norder++];
	snprintf(c->table, sizeof(c->table), "%s", table);
	snprintf(c->column, sizeof(c->column), "%s", col);
}

static struct advise_scan scan_of(const char *relation)
{
	return (struct advise_scan){.node_type = "Seq Scan", .relation = relation, .schema = "public",
				    .table_rows = -1, .actual_rows = -1, .rows_removed = -1, .limit_rows = -1};
}

static void test_candidates(void **state)
{
	(void)state;
	struct sql_analysis a;
	char cols[ADVISE_MAX_COLS][SQLA_NAME];
	struct advise_scan s = scan_of("shop_review");

	memset(&a, 0, sizeof(a));
	a.kind = SQLA_SELECT;
	a.ntables = 2;
	snprintf(a.tables[0].name, SQLA_NAME, "shop_review");
	snprintf(a.tables[1].name, SQLA_NAME, "shop_product");
	pred(&a, "shop_review", "created_at", SQLA_RANGE);
	pred(&a, "shop_review", "status", SQLA_EQ);
	pred(&a, "shop_product", "name", SQLA_EQ);   /* another table */
	pred(&a, "shop_review", "rating", SQLA_RANGE); /* only one range column */
	pred(&a, "shop_review", "body", SQLA_LIKE);  /* not a btree candidate */
	pred(&a, "shop_review", "user_id", SQLA_EQ);
	pred(&a, "shop_review", "status", SQLA_EQ);  /* duplicate */
	pred(&a, "", "ambiguous", SQLA_EQ);          /* unqualified with two tables: unknown */
	order(&a, "shop_review", "created_at");      /* already there */
	order(&a, "shop_review", "id");
	int n = advise_candidates(&a, &s, cols);
	assert_int_equal(n, 4);
	assert_string_equal(cols[0], "status");
	assert_string_equal(cols[1], "user_id");
	assert_string_equal(cols[2], "created_at");
	assert_string_equal(cols[3], "id");

	struct advise_scan other = scan_of("shop_product");
	n = advise_candidates(&a, &other, cols);
	assert_int_equal(n, 1);
	assert_string_equal(cols[0], "name");

	/* The schema written in the query must match the scan's. */
	snprintf(a.preds[2].col.schema, SQLA_NAME, "archive");
	assert_int_equal(advise_candidates(&a, &other, cols), 0);
	other.schema = "archive";
	assert_int_equal(advise_candidates(&a, &other, cols), 1);

	/* One table: unqualified columns are its own. */
	memset(&a, 0, sizeof(a));
	a.kind = SQLA_SELECT;
	a.ntables = 1;
	snprintf(a.tables[0].name, SQLA_NAME, "shop_review");
	pred(&a, "", "status", SQLA_EQ);
	order(&a, "", "created_at");
	n = advise_candidates(&a, &s, cols);
	assert_int_equal(n, 2);
	assert_string_equal(cols[0], "status");
	assert_string_equal(cols[1], "created_at");

	/* ORDER BY alone helps only a LIMIT. */
	memset(&a, 0, sizeof(a));
	a.kind = SQLA_SELECT;
	a.ntables = 1;
	snprintf(a.tables[0].name, SQLA_NAME, "shop_review");
	pred(&a, "shop_review", "body", SQLA_LIKE);
	order(&a, "shop_review", "created_at");
	assert_int_equal(advise_candidates(&a, &s, cols), 0);
	a.has_limit = true;
	assert_int_equal(advise_candidates(&a, &s, cols), 1);
	assert_string_equal(cols[0], "created_at");

	/* Nothing usable. */
	memset(&a, 0, sizeof(a));
	a.kind = SQLA_SELECT;
	assert_int_equal(advise_candidates(&a, &s, cols), 0);
}

static void test_index_name(void **state)
{
	(void)state;
	char cols[ADVISE_MAX_COLS][SQLA_NAME] = {"status", "created_at"};
	char out[64];
	advise_index_name("shop_review", cols, 2, out, sizeof(out));
	assert_string_equal(out, "shop_review_status_created_at_idx");

	char longc[ADVISE_MAX_COLS][SQLA_NAME];
	memset(longc, 0, sizeof(longc));
	memset(longc[0], 'c', 40);
	memset(longc[1], 'd', 40);
	advise_index_name("a_rather_long_table_name", longc, 2, out, sizeof(out));
	assert_int_equal(strlen(out), 63); /* NAMEDATALEN - 1, as PostgreSQL would cut it */
	assert_memory_equal(out, "a_rather_long_table_name_cccc", 29);

	/* Never half a UTF-8 character: 'é' is 2 bytes and would straddle byte 63. */
	char utf[ADVISE_MAX_COLS][SQLA_NAME];
	memset(utf, 0, sizeof(utf));
	char *w = utf[0];
	for (int i = 0; i < 31; i++) {
		*w++ = (char)0xC3;
		*w++ = (char)0xA9;
	}
	advise_index_name("t", utf, 1, out, sizeof(out)); /* "t_" + 31 x 2 bytes: byte 63 ends an 'é' */
	assert_int_equal(strlen(out), 62);
	assert_int_equal((unsigned char)out[61], 0xA9);
}

static void test_finding(void **state)
{
	(void)state;
	const char *cols[] = {"status", "created_at"};
	struct advise_finding_in in = {
		.table = "shop_review", .table_sql = "shop_review", .cols = cols, .cols_sql = cols, .ncols = 2,
		.index_sql = "shop_review_status_created_at_idx", .why = ADVISE_FILTER, .table_rows = 200000,
		.rows_returned = 40, .cost_before = 8200.004, .cost_after = 12.345,
	};
	json_t *f = advise_finding_new(&in);
	assert_non_null(f);
	assert_string_equal(json_string_value(json_object_get(f, "id")), "missing_index:shop_review(status,created_at)");
	assert_string_equal(json_string_value(json_object_get(f, "kind")), "missing_index");
	assert_string_equal(json_string_value(json_object_get(f, "severity")), "high");
	assert_string_equal(json_string_value(json_object_get(f, "table")), "shop_review");
	assert_int_equal(json_array_size(json_object_get(f, "columns")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(f, "columns"), 1)), "created_at");
	assert_string_equal(json_string_value(json_object_get(f, "sql")),
			    "CREATE INDEX CONCURRENTLY shop_review_status_created_at_idx ON shop_review (status, created_at);");
	assert_string_equal(json_string_value(json_object_get(f, "fix")),
			    "Add an index on shop_review (status, created_at): the query scans 200,000 rows to return 40; "
			    "with the index its cost goes from 8200 to 12.35 (checked with a hypothetical index).");
	assert_true(json_is_true(json_object_get(f, "verified")));
	assert_true(json_real_value(json_object_get(f, "cost_before")) == 8200.0);
	assert_true(json_real_value(json_object_get(f, "cost_after")) == 12.35);
	assert_true(json_number_value(json_object_get(f, "plan_rows")) == 40);
	assert_true(json_number_value(json_object_get(f, "table_rows")) == 200000);
	assert_int_equal(json_integer_value(json_object_get(f, "occurrences")), 1);
	assert_true(json_number_value(json_object_get(f, "time_wasted_ms")) == 0);
	const char *nulls[] = {"route", "fingerprint", "query", "django"};
	for (size_t i = 0; i < 4; i++)
		assert_true(json_is_null(json_object_get(f, nulls[i])));
	json_decref(f);

	in.cost_after = 3000; /* verified, but less than tenfold */
	f = advise_finding_new(&in);
	assert_string_equal(json_string_value(json_object_get(f, "severity")), "medium");
	json_decref(f);

	in.cost_after = 5000; /* HypoPG says: not even half */
	f = advise_finding_new(&in);
	assert_true(json_is_false(json_object_get(f, "verified")));
	assert_string_equal(json_string_value(json_object_get(f, "severity")), "low");
	assert_non_null(strstr(json_string_value(json_object_get(f, "fix")), "may not be worth it"));
	json_decref(f);

	in.cost_after = -1; /* no HypoPG */
	in.why = ADVISE_SORT_LIMIT;
	in.rows_returned = 10;
	in.table_rows = 1234567;
	f = advise_finding_new(&in);
	assert_true(json_is_false(json_object_get(f, "verified")));
	assert_true(json_is_null(json_object_get(f, "cost_after")));
	assert_string_equal(json_string_value(json_object_get(f, "severity")), "medium");
	assert_string_equal(json_string_value(json_object_get(f, "fix")),
			    "Add an index on shop_review (status, created_at): the query sorts 1,234,567 rows to return 10 "
			    "(cost 8200; not verified: HypoPG is not available).");
	json_decref(f);

	in.table_rows = 20000;
	in.table = "archive.old";
	in.table_sql = "archive.\"Old\"";
	f = advise_finding_new(&in);
	assert_string_equal(json_string_value(json_object_get(f, "severity")), "low");
	assert_string_equal(json_string_value(json_object_get(f, "id")), "missing_index:archive.old(status,created_at)");
	assert_non_null(strstr(json_string_value(json_object_get(f, "sql")), " ON archive.\"Old\" (status, created_at);"));
	json_decref(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_sort_limit),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_summary_analyzed_and_join),
		cmocka_unit_test(test_rule),
		cmocka_unit_test(test_rule_index_scan_filter),
		cmocka_unit_test(test_bad_documents),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_candidates),
		cmocka_unit_test(test_index_name),
		cmocka_unit_test(test_finding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
