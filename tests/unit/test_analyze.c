/* test_analyze.c - statement analysis with libpg_query: kind, writes, tables,
 * predicates, joins, ORDER BY, on the shapes the Django ORM sends and on the
 * edges (bounds, long names, errors, nesting). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sql/analyze.h"

static struct sql_analysis A;

/* Analyzes q into A, which must succeed. */
static const struct sql_analysis *an(const char *q)
{
	char err[256];
	int rc = sql_analyze(q, &A, err, sizeof err);
	if (rc != 0)
		fail_msg("sql_analyze(%s): %s", q, err);
	return &A;
}

static void check_table(const struct sql_analysis *a, int i, const char *schema, const char *name, const char *alias)
{
	assert_true(i < a->ntables);
	assert_string_equal(a->tables[i].schema, schema);
	assert_string_equal(a->tables[i].name, name);
	assert_string_equal(a->tables[i].alias, alias);
}

static void check_col(const struct sqla_col *c, const char *table, const char *column)
{
	assert_string_equal(c->table, table);
	assert_string_equal(c->column, column);
}

static void check_pred(const struct sql_analysis *a, int i, const char *table, const char *column, enum sqla_op op)
{
	assert_true(i < a->npreds);
	check_col(&a->preds[i].col, table, column);
	assert_int_equal(a->preds[i].op, op);
}

static void check_join(const struct sql_analysis *a, int i, const char *lt, const char *lc, const char *rt,
		       const char *rc)
{
	assert_true(i < a->njoins);
	check_col(&a->joins[i].left, lt, lc);
	check_col(&a->joins[i].right, rt, rc);
}

/* ------------------------------------------------------------ Django shapes */

static void test_django_get_by_pk(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT \"shop_author\".\"id\", \"shop_author\".\"name\" FROM \"shop_author\" "
					  "WHERE \"shop_author\".\"id\" = 42 LIMIT 21");
	assert_int_equal(a->kind, SQLA_SELECT);
	assert_false(a->writes);
	assert_false(a->multi);
	assert_int_equal(a->ntables, 1);
	check_table(a, 0, "", "shop_author", "");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "shop_author", "id", SQLA_EQ);
	assert_string_equal(a->preds[0].col.schema, "");
	assert_int_equal(a->njoins, 0);
	assert_int_equal(a->norder, 0);
	assert_true(a->has_limit);
}

static void test_django_fk_param(void **state)
{
	(void)state;
	const struct sql_analysis *a =
		an("SELECT \"shop_review\".\"id\", \"shop_review\".\"book_id\", \"shop_review\".\"body\" "
		   "FROM \"shop_review\" WHERE \"shop_review\".\"book_id\" = $1");
	assert_int_equal(a->kind, SQLA_SELECT);
	assert_int_equal(a->ntables, 1);
	check_table(a, 0, "", "shop_review", "");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "shop_review", "book_id", SQLA_EQ);
	assert_false(a->has_limit);
}

static void test_django_m2m_join(void **state)
{
	(void)state;
	const struct sql_analysis *a =
		an("SELECT \"shop_tag\".\"id\", \"shop_tag\".\"name\" FROM \"shop_tag\" INNER JOIN \"shop_book_tags\" "
		   "ON (\"shop_tag\".\"id\" = \"shop_book_tags\".\"tag_id\") WHERE \"shop_book_tags\".\"book_id\" = 7");
	assert_int_equal(a->ntables, 2);
	check_table(a, 0, "", "shop_tag", "");
	check_table(a, 1, "", "shop_book_tags", "");
	assert_int_equal(a->njoins, 1);
	check_join(a, 0, "shop_tag", "id", "shop_book_tags", "tag_id");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "shop_book_tags", "book_id", SQLA_EQ);
}

static void test_django_filter_range_order(void **state)
{
	(void)state;
	const struct sql_analysis *a =
		an("SELECT \"shop_review\".\"id\" FROM \"shop_review\" WHERE (\"shop_review\".\"status\" = 'published' "
		   "AND \"shop_review\".\"created_at\" >= '2024-01-01'::timestamptz) "
		   "ORDER BY \"shop_review\".\"created_at\" DESC");
	assert_int_equal(a->npreds, 2);
	check_pred(a, 0, "shop_review", "status", SQLA_EQ);
	check_pred(a, 1, "shop_review", "created_at", SQLA_RANGE);
	assert_int_equal(a->norder, 1);
	check_col(&a->order[0], "shop_review", "created_at");
	assert_true(a->order_desc[0]);
	assert_false(a->has_limit);
}

static void test_django_prefetch_in(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT \"shop_review\".\"id\", \"shop_review\".\"book_id\" FROM \"shop_review\" "
					  "WHERE \"shop_review\".\"book_id\" IN (1, 2, 3)");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "shop_review", "book_id", SQLA_EQ);

	a = an("SELECT \"shop_review\".\"id\" FROM \"shop_review\" WHERE \"shop_review\".\"book_id\" IN ($1, $2, $3)");
	check_pred(a, 0, "shop_review", "book_id", SQLA_EQ);
	a = an("SELECT \"shop_review\".\"id\" FROM \"shop_review\" WHERE \"shop_review\".\"book_id\" = ANY($1)");
	check_pred(a, 0, "shop_review", "book_id", SQLA_EQ);
	a = an("SELECT \"shop_review\".\"id\" FROM \"shop_review\" WHERE \"shop_review\".\"book_id\" = ANY(ARRAY[1, 2, 3])");
	check_pred(a, 0, "shop_review", "book_id", SQLA_EQ);
	a = an("SELECT id FROM shop_review WHERE book_id = ANY('{1,2}'::int[])");
	check_pred(a, 0, "shop_review", "book_id", SQLA_EQ);
	/* the through table of a prefetched many-to-many */
	a = an("SELECT (\"shop_book_tags\".\"book_id\") AS \"_prefetch_related_val_book_id\", \"shop_tag\".\"id\" "
	       "FROM \"shop_tag\" INNER JOIN \"shop_book_tags\" ON (\"shop_tag\".\"id\" = \"shop_book_tags\".\"tag_id\") "
	       "WHERE \"shop_book_tags\".\"book_id\" IN (1, 2)");
	assert_int_equal(a->ntables, 2);
	check_join(a, 0, "shop_tag", "id", "shop_book_tags", "tag_id");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "shop_book_tags", "book_id", SQLA_EQ);
}

static void test_django_select_related(void **state)
{
	(void)state;
	const struct sql_analysis *a =
		an("SELECT \"shop_book\".\"id\", \"shop_author\".\"name\" FROM \"shop_book\" "
		   "INNER JOIN \"shop_author\" ON (\"shop_book\".\"author_id\" = \"shop_author\".\"id\") "
		   "LEFT OUTER JOIN \"shop_publisher\" ON (\"shop_book\".\"publisher_id\" = \"shop_publisher\".\"id\") "
		   "WHERE \"shop_book\".\"published\" ORDER BY \"shop_book\".\"title\" ASC, \"shop_book\".\"id\" DESC LIMIT 20");
	assert_int_equal(a->ntables, 3);
	check_table(a, 0, "", "shop_book", "");
	check_table(a, 1, "", "shop_author", "");
	check_table(a, 2, "", "shop_publisher", "");
	assert_int_equal(a->njoins, 2);
	check_join(a, 0, "shop_book", "author_id", "shop_author", "id");
	check_join(a, 1, "shop_book", "publisher_id", "shop_publisher", "id");
	assert_int_equal(a->npreds, 0); /* a bare boolean column compares with nothing */
	assert_int_equal(a->norder, 2);
	check_col(&a->order[0], "shop_book", "title");
	assert_false(a->order_desc[0]);
	check_col(&a->order[1], "shop_book", "id");
	assert_true(a->order_desc[1]);
	assert_true(a->has_limit);
}

static void test_django_like_lookups(void **state)
{
	(void)state;
	const struct sql_analysis *a =
		an("SELECT \"shop_book\".\"id\" FROM \"shop_book\" WHERE \"shop_book\".\"title\"::text LIKE 'Dja%' "
		   "AND UPPER(\"shop_book\".\"title\"::text) LIKE UPPER('%go%') AND \"shop_book\".\"isbn\" ILIKE $1 "
		   "AND \"shop_book\".\"slug\" ~~* 'x' AND \"shop_book\".\"code\" NOT LIKE 'a%'");
	assert_int_equal(a->npreds, 4); /* UPPER(col) is no column */
	check_pred(a, 0, "shop_book", "title", SQLA_LIKE);
	check_pred(a, 1, "shop_book", "isbn", SQLA_LIKE);
	check_pred(a, 2, "shop_book", "slug", SQLA_LIKE);
	check_pred(a, 3, "shop_book", "code", SQLA_OTHER_OP);
}

/* ------------------------------------------------------------- operators */

static void test_operator_classes(void **state)
{
	(void)state;
	const struct sql_analysis *a =
		an("SELECT * FROM t WHERE a < 1 AND b <= $1 AND c > 2.5 AND d >= now() AND e BETWEEN 1 AND $2 "
		   "AND f IS NULL AND g IS NOT NULL AND h <> 3 AND i NOT IN (1, 2) AND j NOT BETWEEN 1 AND 2 "
		   "AND k IS DISTINCT FROM 1 AND l ~ '^x' AND 42 = m AND 5 < n AND o = -1 AND p = ALL($3)");
	/* d >= now(): a function call is no constant */
	int i = 0;
	check_pred(a, i++, "t", "a", SQLA_RANGE);
	check_pred(a, i++, "t", "b", SQLA_RANGE);
	check_pred(a, i++, "t", "c", SQLA_RANGE);
	check_pred(a, i++, "t", "e", SQLA_RANGE);
	check_pred(a, i++, "t", "f", SQLA_NULLTEST);
	check_pred(a, i++, "t", "g", SQLA_NULLTEST);
	check_pred(a, i++, "t", "h", SQLA_OTHER_OP);
	check_pred(a, i++, "t", "i", SQLA_OTHER_OP);
	check_pred(a, i++, "t", "j", SQLA_OTHER_OP);
	check_pred(a, i++, "t", "k", SQLA_OTHER_OP);
	check_pred(a, i++, "t", "l", SQLA_OTHER_OP);
	check_pred(a, i++, "t", "m", SQLA_EQ);
	check_pred(a, i++, "t", "n", SQLA_RANGE);
	check_pred(a, i++, "t", "o", SQLA_EQ);
	check_pred(a, i++, "t", "p", SQLA_OTHER_OP);
	assert_int_equal(a->npreds, i);
}

static void test_casts_and_sql_values(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT 1 FROM t WHERE a = $1::integer AND b = CAST('x' AS text) "
					  "AND c < CURRENT_TIMESTAMP AND d = ARRAY[$1, $2] AND e = NULL AND f = TRUE");
	assert_int_equal(a->npreds, 6);
	check_pred(a, 0, "t", "a", SQLA_EQ);
	check_pred(a, 1, "t", "b", SQLA_EQ);
	check_pred(a, 2, "t", "c", SQLA_RANGE);
	check_pred(a, 3, "t", "d", SQLA_EQ);
	check_pred(a, 4, "t", "e", SQLA_EQ);
	check_pred(a, 5, "t", "f", SQLA_EQ);
	/* comparisons with other expressions are not predicates on a constant */
	a = an("SELECT 1 FROM t WHERE a = b + 1 AND c = lower($1) AND d = (SELECT 1) AND e IN (1, f) AND g = OPERATOR(pg_catalog.=) 1");
	assert_int_equal(a->npreds, 0);
	assert_int_equal(a->njoins, 0);
}

static void test_or_and_not_skipped(void **state)
{
	(void)state;
	const struct sql_analysis *a =
		an("SELECT * FROM \"shop_book\" WHERE (\"shop_book\".\"a\" = 1 OR \"shop_book\".\"b\" = 2) "
		   "AND NOT (\"shop_book\".\"c\" = 3) AND \"shop_book\".\"d\" = 4");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "shop_book", "d", SQLA_EQ);
	a = an("SELECT * FROM t WHERE a = 1 OR b = 2");
	assert_int_equal(a->npreds, 0);
	a = an("SELECT * FROM t WHERE NOT a = 1");
	assert_int_equal(a->npreds, 0);
	/* a nested AND is still top level; one under OR is not */
	a = an("SELECT * FROM t WHERE a = 1 AND (b = 2 AND (c = 3 AND d = 4)) AND (e = 1 OR (f = 1 AND g = 1))");
	assert_int_equal(a->npreds, 4);
	check_pred(a, 3, "t", "d", SQLA_EQ);
}

/* -------------------------------------------------------- tables and names */

static void test_alias_resolution(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT b.id FROM shop_book b WHERE b.author_id = 1");
	assert_int_equal(a->ntables, 1);
	check_table(a, 0, "", "shop_book", "b");
	check_pred(a, 0, "shop_book", "author_id", SQLA_EQ);

	a = an("SELECT * FROM shop_book AS b JOIN shop_author a ON a.id = b.author_id "
	       "WHERE a.name = 'x' AND b.year > 2000 ORDER BY a.name");
	check_table(a, 0, "", "shop_book", "b");
	check_table(a, 1, "", "shop_author", "a");
	check_join(a, 0, "shop_author", "id", "shop_book", "author_id");
	check_pred(a, 0, "shop_author", "name", SQLA_EQ);
	check_pred(a, 1, "shop_book", "year", SQLA_RANGE);
	check_col(&a->order[0], "shop_author", "name");
	assert_false(a->order_desc[0]);

	/* self join: each alias to the same table */
	a = an("SELECT * FROM node n1 JOIN node n2 ON n1.parent_id = n2.id WHERE n2.id = 5");
	assert_int_equal(a->ntables, 2);
	check_table(a, 1, "", "node", "n2");
	check_join(a, 0, "node", "parent_id", "node", "id");
	check_pred(a, 0, "node", "id", SQLA_EQ);
}

static void test_unqualified_columns(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT * FROM shop_book WHERE author_id = $1 ORDER BY id DESC");
	check_pred(a, 0, "shop_book", "author_id", SQLA_EQ);
	check_col(&a->order[0], "shop_book", "id");
	assert_true(a->order_desc[0]);
	/* two tables: unknown */
	a = an("SELECT * FROM a, b WHERE x = 1 AND a.y = 2 AND zz.q = 3");
	assert_int_equal(a->npreds, 3);
	check_pred(a, 0, "", "x", SQLA_EQ);
	check_pred(a, 1, "a", "y", SQLA_EQ);
	check_pred(a, 2, "", "q", SQLA_EQ); /* no such range entry */
	/* a subquery alias is no table */
	a = an("SELECT * FROM (SELECT * FROM t) s WHERE s.a = 1 AND b = 2");
	assert_int_equal(a->npreds, 2);
	check_pred(a, 0, "", "a", SQLA_EQ);
	check_pred(a, 1, "", "b", SQLA_EQ);
	check_table(a, 0, "", "t", "");
}

static void test_schema_qualified(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT * FROM \"app\".\"shop_book\" WHERE \"app\".\"shop_book\".\"id\" = 1 "
					  "AND \"shop_book\".\"x\" = 2 AND y = 3 AND db.app.shop_book.z = 4");
	check_table(a, 0, "app", "shop_book", "");
	assert_int_equal(a->npreds, 4);
	for (int i = 0; i < 4; i++) {
		assert_string_equal(a->preds[i].col.schema, "app");
		assert_string_equal(a->preds[i].col.table, "shop_book");
	}
	assert_string_equal(a->preds[3].col.column, "z");
	a = an("SELECT * FROM app.t AS x WHERE x.c = 1");
	check_table(a, 0, "app", "t", "x");
	check_pred(a, 0, "t", "c", SQLA_EQ);
	assert_string_equal(a->preds[0].col.schema, "app");
}

static void test_quoted_identifiers(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT * FROM \"My Table\" \"T\" WHERE \"T\".\"Weird \"\"Col\"\"\" = 1 AND Upper_Col = 2");
	check_table(a, 0, "", "My Table", "T");
	check_pred(a, 0, "My Table", "Weird \"Col\"", SQLA_EQ);
	check_pred(a, 1, "My Table", "upper_col", SQLA_EQ); /* unquoted folds to lower case */
}

static void test_subquery_tables_after_outer(void **state)
{
	(void)state;
	const struct sql_analysis *a =
		an("SELECT * FROM (SELECT * FROM inner1 WHERE inner1.x = 1) s JOIN outer1 o ON o.id = s.id "
		   "WHERE o.a = 1 AND o.b IN (SELECT c.b FROM inner2 c WHERE c.k = 2) "
		   "AND EXISTS (SELECT 1 FROM inner3 WHERE inner3.z = o.id)");
	assert_int_equal(a->ntables, 4);
	check_table(a, 0, "", "outer1", "o");
	check_table(a, 1, "", "inner1", "");
	check_table(a, 2, "", "inner2", "c");
	check_table(a, 3, "", "inner3", "");
	assert_int_equal(a->npreds, 1); /* only the outer WHERE */
	check_pred(a, 0, "outer1", "a", SQLA_EQ);
	assert_int_equal(a->njoins, 1);
	check_join(a, 0, "outer1", "id", "", "id");

	/* Django's UPDATE ... WHERE id IN (SELECT ...) */
	a = an("UPDATE \"shop_book\" SET \"price\" = 1 WHERE \"shop_book\".\"id\" IN "
	       "(SELECT U0.\"id\" FROM \"shop_book\" U0 INNER JOIN \"shop_author\" U1 ON (U0.\"author_id\" = U1.\"id\") "
	       "WHERE U1.\"name\" = 'x')");
	assert_int_equal(a->kind, SQLA_UPDATE);
	assert_int_equal(a->ntables, 3);
	check_table(a, 0, "", "shop_book", "");
	check_table(a, 1, "", "shop_book", "u0"); /* unquoted U0 folds */
	check_table(a, 2, "", "shop_author", "u1");
	assert_int_equal(a->npreds, 0);
	assert_int_equal(a->njoins, 0);
}

static void test_where_joins(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT * FROM a, b, c WHERE a.id = b.a_id AND b.id = c.b_id AND c.x = 1 AND a.y = a.z");
	assert_int_equal(a->ntables, 3);
	assert_int_equal(a->njoins, 3);
	check_join(a, 0, "a", "id", "b", "a_id");
	check_join(a, 1, "b", "id", "c", "b_id");
	check_join(a, 2, "a", "y", "a", "z");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "c", "x", SQLA_EQ);
	/* nested and parenthesized joins, ON with constant conditions (joins only) */
	a = an("SELECT * FROM a JOIN (b JOIN c ON b.id = c.b_id AND c.deleted = false) ON a.id = b.a_id "
	       "LEFT JOIN d USING (id) CROSS JOIN e");
	assert_int_equal(a->ntables, 5);
	check_table(a, 4, "", "e", "");
	assert_int_equal(a->njoins, 2);
	check_join(a, 0, "b", "id", "c", "b_id");
	check_join(a, 1, "a", "id", "b", "a_id");
	assert_int_equal(a->npreds, 0);
}

static void test_set_operations(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT a FROM t WHERE t.x = 1 UNION ALL SELECT b FROM u ORDER BY 1 LIMIT 3");
	assert_int_equal(a->kind, SQLA_SELECT);
	assert_int_equal(a->ntables, 2);
	check_table(a, 0, "", "t", "");
	check_table(a, 1, "", "u", "");
	assert_int_equal(a->npreds, 0);
	assert_int_equal(a->norder, 0);
	assert_true(a->has_limit);
}

static void test_limits(void **state)
{
	(void)state;
	assert_false(an("SELECT * FROM t LIMIT ALL")->has_limit);
	assert_true(an("SELECT * FROM t FETCH FIRST 3 ROWS ONLY")->has_limit);
	assert_true(an("SELECT * FROM t LIMIT $1")->has_limit);
	assert_false(an("SELECT * FROM t OFFSET 10")->has_limit);
	assert_true(an("SELECT * FROM t LIMIT 1 OFFSET 10")->has_limit);
}

static void test_order_by_shapes(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT * FROM t ORDER BY 1, lower(a), b ASC NULLS FIRST, t.c DESC NULLS LAST, t.*");
	assert_int_equal(a->norder, 2);
	check_col(&a->order[0], "t", "b");
	assert_false(a->order_desc[0]);
	check_col(&a->order[1], "t", "c");
	assert_true(a->order_desc[1]);
}

/* --------------------------------------------------------------- writes */

static void test_dml_writes(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("INSERT INTO \"shop_book\" (\"title\", \"author_id\") VALUES ($1, $2) RETURNING \"shop_book\".\"id\"");
	assert_int_equal(a->kind, SQLA_INSERT);
	assert_true(a->writes);
	assert_int_equal(a->ntables, 1);
	check_table(a, 0, "", "shop_book", "");

	a = an("INSERT INTO archive SELECT * FROM shop_book WHERE id < 10 ON CONFLICT DO NOTHING");
	assert_int_equal(a->kind, SQLA_INSERT);
	assert_int_equal(a->ntables, 2);
	check_table(a, 0, "", "archive", "");
	check_table(a, 1, "", "shop_book", "");

	a = an("UPDATE \"shop_book\" SET \"price\" = $1 WHERE \"shop_book\".\"id\" = $2");
	assert_int_equal(a->kind, SQLA_UPDATE);
	assert_true(a->writes);
	check_table(a, 0, "", "shop_book", "");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "shop_book", "id", SQLA_EQ);

	a = an("UPDATE s.t AS x SET a = 1 FROM u WHERE x.id = u.t_id AND x.k = $1");
	check_table(a, 0, "s", "t", "x");
	check_table(a, 1, "", "u", "");
	check_join(a, 0, "t", "id", "u", "t_id");
	check_pred(a, 0, "t", "k", SQLA_EQ);

	a = an("DELETE FROM \"shop_review\" WHERE \"shop_review\".\"book_id\" IN (1, 2)");
	assert_int_equal(a->kind, SQLA_DELETE);
	assert_true(a->writes);
	check_table(a, 0, "", "shop_review", "");
	check_pred(a, 0, "shop_review", "book_id", SQLA_EQ);

	a = an("DELETE FROM t USING u WHERE t.u_id = u.id AND u.x = 1");
	check_table(a, 0, "", "t", "");
	check_table(a, 1, "", "u", "");
	check_join(a, 0, "t", "u_id", "u", "id");
	check_pred(a, 0, "u", "x", SQLA_EQ);

	a = an("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE");
	assert_int_equal(a->kind, SQLA_OTHER);
	assert_true(a->writes);
	assert_int_equal(a->ntables, 2);
	check_join(a, 0, "t", "id", "s", "id");
}

static void test_select_writes(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT * FROM \"shop_book\" WHERE \"shop_book\".\"id\" = 1 FOR UPDATE");
	assert_int_equal(a->kind, SQLA_SELECT);
	assert_true(a->writes);
	check_pred(a, 0, "shop_book", "id", SQLA_EQ);
	assert_true(an("SELECT * FROM t FOR SHARE SKIP LOCKED")->writes);
	assert_true(an("SELECT * FROM t FOR NO KEY UPDATE OF t NOWAIT")->writes);
	assert_true(an("SELECT * FROM (SELECT * FROM t FOR UPDATE) s")->writes);
	assert_true(an("SELECT * INTO t2 FROM t")->writes);
	assert_true(an("SELECT nextval('shop_book_id_seq')")->writes);
	assert_true(an("SELECT pg_advisory_lock(1)")->writes);
	assert_true(an("SELECT pg_catalog.set_config('search_path', '', false)")->writes);
	assert_false(an("SELECT count(*) FROM t WHERE x = 'FOR UPDATE'")->writes);
	assert_false(an("SELECT \"lockingClause\", \"InsertStmt\" FROM t")->writes);
}

static void test_data_modifying_cte(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("WITH x AS (DELETE FROM t WHERE t.a = 1 RETURNING *) SELECT * FROM x WHERE x.b = 2");
	assert_int_equal(a->kind, SQLA_SELECT);
	assert_true(a->writes);
	/* x is a CTE, not a table; t comes from the CTE */
	assert_int_equal(a->ntables, 1);
	check_table(a, 0, "", "t", "");
	assert_int_equal(a->npreds, 1);
	check_pred(a, 0, "", "b", SQLA_EQ);

	assert_true(an("WITH u AS (UPDATE t SET a = 1 RETURNING id) SELECT count(*) FROM u")->writes);
	assert_true(an("WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM i")->writes);
	a = an("WITH r AS (SELECT * FROM t WHERE a = 1) SELECT * FROM r JOIN s ON s.id = r.id");
	assert_false(a->writes);
	assert_int_equal(a->ntables, 2);
	check_table(a, 0, "", "s", "");
	check_table(a, 1, "", "t", "");
	check_join(a, 0, "s", "id", "", "id");
	/* a schema-qualified name is a table even when a CTE has the same name */
	a = an("WITH t AS (SELECT 1) SELECT * FROM public.t, t");
	assert_int_equal(a->ntables, 1);
	check_table(a, 0, "public", "t", "");
}

static void test_utility(void **state)
{
	(void)state;
	static const char *const q[] = {
		"EXPLAIN SELECT 1",
		"EXPLAIN ANALYZE SELECT * FROM t",
		"SET search_path TO app",
		"CREATE INDEX CONCURRENTLY ON shop_book (author_id)",
		"BEGIN",
		"COMMIT",
		"VACUUM ANALYZE t",
		"COPY t FROM STDIN",
		"CREATE TABLE t2 AS SELECT * FROM t",
		"DO $$ BEGIN PERFORM 1; END $$",
		"SHOW work_mem",
		"PREPARE p AS SELECT 1",
		"EXECUTE p",
		"DECLARE c CURSOR FOR SELECT * FROM t",
		"LOCK TABLE t",
		"NOTIFY ch",
		"CALL proc(1)",
		"TRUNCATE t",
	};
	for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
		const struct sql_analysis *a = an(q[i]);
		assert_int_equal(a->kind, SQLA_UTILITY);
		assert_true(a->writes);
		assert_int_equal(a->ntables, 0);
		assert_int_equal(a->npreds, 0);
	}
}

static void test_multi_and_empty(void **state)
{
	(void)state;
	const struct sql_analysis *a = an("SELECT * FROM t WHERE t.a = 1; DELETE FROM u");
	assert_true(a->multi);
	assert_int_equal(a->kind, SQLA_SELECT);
	assert_false(a->writes); /* the first statement is analyzed */
	check_table(a, 0, "", "t", "");
	assert_int_equal(a->ntables, 1);
	a = an("BEGIN; UPDATE t SET a = 1; COMMIT;");
	assert_true(a->multi);
	assert_int_equal(a->kind, SQLA_UTILITY);
	a = an("SELECT 1;");
	assert_false(a->multi);
	a = an("");
	assert_int_equal(a->kind, SQLA_OTHER);
	assert_false(a->multi);
	assert_int_equal(a->ntables, 0);
	a = an(" ; -- nothing\n");
	assert_int_equal(a->kind, SQLA_OTHER);
	a = an("/* pgmedic: route=/books/ */ SELECT 1 FROM t WHERE id = $1 -- trailing");
	assert_int_equal(a->kind, SQLA_SELECT);
	check_pred(a, 0, "t", "id", SQLA_EQ);
}

/* --------------------------------------------------------------- errors */

static void test_syntax_error(void **state)
{
	(void)state;
	char err[256];
	struct sql_analysis a;
	memset(&a, 0x5a, sizeof a);
	assert_int_equal(sql_analyze("SELECT * FORM t WHERE", &a, err, sizeof err), -1);
	assert_non_null(strstr(err, "syntax error"));
	assert_int_equal(a.ntables, 0); /* the output is cleared, not half filled */
	assert_int_equal(a.kind, SQLA_OTHER);

	assert_int_equal(sql_analyze("SELECT 'unterminated", &a, err, sizeof err), -1);
	assert_true(strlen(err) > 0);
	assert_int_equal(sql_analyze("SELECT 1; SELEC 2", &a, err, sizeof err), -1);

	/* a tiny or absent error buffer */
	char small[8];
	assert_int_equal(sql_analyze("SELEC", &a, small, sizeof small), -1);
	assert_int_equal(strlen(small), sizeof small - 1);
	assert_int_equal(sql_analyze("SELEC", &a, NULL, 0), -1);
	assert_int_equal(sql_analyze(NULL, &a, err, sizeof err), -1);
	/* and a good statement afterwards still works */
	assert_int_equal(sql_analyze("SELECT 1", &a, err, sizeof err), 0);
	assert_string_equal(err, "");
}

/* "SELECT * FROM t WHERE a = " + depth times "a+(" + "1" + depth times ")" */
static char *nested(size_t depth)
{
	char *q = malloc(64 + 4 * depth);
	assert_non_null(q);
	char *p = q + sprintf(q, "SELECT * FROM t WHERE a = ");
	for (size_t i = 0; i < depth; i++) {
		memcpy(p, "a+(", 3);
		p += 3;
	}
	*p++ = '1';
	for (size_t i = 0; i < depth; i++)
		*p++ = ')';
	*p = '\0';
	return q;
}

static void test_deep_nesting(void **state)
{
	(void)state;
	struct sql_analysis a;
	char err[256];
	/* deep but readable: walked without trouble */
	char *q = nested(300);
	assert_int_equal(sql_analyze(q, &a, err, sizeof err), 0);
	assert_int_equal(a.npreds, 0);
	free(q);
	/* deeper than jansson reads (2048 levels): an error, never a crash */
	q = nested(3000);
	assert_int_equal(sql_analyze(q, &a, err, sizeof err), -1);
	assert_non_null(strstr(err, "depth"));
	free(q);
	/* parentheses alone do not nest nodes */
	q = malloc(64 + 2 * 3000);
	assert_non_null(q);
	char *p = q + sprintf(q, "SELECT * FROM t WHERE a = ");
	memset(p, '(', 3000);
	p[3000] = '1';
	memset(p + 3001, ')', 3000);
	p[6001] = '\0';
	assert_int_equal(sql_analyze(q, &a, err, sizeof err), 0);
	check_pred(&a, 0, "t", "a", SQLA_EQ);
	free(q);
}

/* --------------------------------------------------------------- bounds */

static void test_long_identifiers(void **state)
{
	(void)state;
	char name[201], q[2048];
	memset(name, 'n', 200);
	name[200] = '\0';
	snprintf(q, sizeof q, "SELECT * FROM \"%s\" AS \"%s\" WHERE \"%s\".\"%s\" = 1 ORDER BY \"%s\"", name, name, name,
		 name, name);
	const struct sql_analysis *a = an(q);
	assert_int_equal(a->ntables, 1);
	assert_int_equal(strlen(a->tables[0].name), SQLA_NAME - 1);
	assert_int_equal(strlen(a->tables[0].alias), SQLA_NAME - 1);
	assert_int_equal(a->npreds, 1);
	assert_int_equal(strlen(a->preds[0].col.table), SQLA_NAME - 1);
	assert_int_equal(strlen(a->preds[0].col.column), SQLA_NAME - 1);
	assert_int_equal(a->norder, 1);

	/* multi-byte names are not cut in the middle of a character */
	char u[256] = "";
	for (int i = 0; i < 50; i++)
		strcat(u, "\xc3\xa9"); /* é, 100 bytes */
	snprintf(q, sizeof q, "SELECT * FROM \"%s\" WHERE id = 1", u);
	a = an(q);
	size_t len = strlen(a->tables[0].name);
	assert_true(len <= SQLA_NAME - 1);
	assert_int_equal(len % 2, 0);
	check_pred(a, 0, a->tables[0].name, "id", SQLA_EQ);
}

static void test_many_predicates_bounded(void **state)
{
	(void)state;
	char q[4096];
	int off = snprintf(q, sizeof q, "SELECT * FROM t WHERE c0 = 0");
	for (int i = 1; i < 40; i++)
		off += snprintf(q + off, sizeof q - off, " AND c%d = %d", i, i);
	const struct sql_analysis *a = an(q);
	assert_int_equal(a->npreds, SQLA_MAX_PREDS);
	check_pred(a, 0, "t", "c0", SQLA_EQ);
	check_pred(a, SQLA_MAX_PREDS - 1, "t", "c15", SQLA_EQ);
}

static void test_many_tables_joins_orders_bounded(void **state)
{
	(void)state;
	char q[8192];
	int off = snprintf(q, sizeof q, "SELECT * FROM t0");
	for (int i = 1; i < 20; i++)
		off += snprintf(q + off, sizeof q - off, " JOIN t%d x%d ON x%d.id = t0.t%d_id", i, i, i, i);
	off += snprintf(q + off, sizeof q - off, " WHERE x19.k = 1 ORDER BY");
	for (int i = 0; i < 20; i++)
		off += snprintf(q + off, sizeof q - off, "%s x%d.o", i ? "," : "", i + 1);
	const struct sql_analysis *a = an(q);
	assert_int_equal(a->ntables, SQLA_MAX_TABLES);
	check_table(a, 7, "", "t7", "x7");
	assert_int_equal(a->njoins, SQLA_MAX_TABLES);
	check_join(a, 0, "t1", "id", "t0", "t1_id");
	assert_int_equal(a->norder, SQLA_MAX_ORDER);
	/* resolution still works past the output bound */
	check_pred(a, 0, "t19", "k", SQLA_EQ);
	check_col(&a->order[7], "t8", "o");

	/* many subqueries: bounded too */
	off = snprintf(q, sizeof q, "SELECT * FROM a WHERE a.x = 1");
	for (int i = 0; i < 100; i++)
		off += snprintf(q + off, sizeof q - off, " AND a.c%d IN (SELECT y FROM s%d)", i, i);
	a = an(q);
	assert_int_equal(a->ntables, SQLA_MAX_TABLES);
	check_table(a, 0, "", "a", "");
	check_table(a, 1, "", "s0", "");
	assert_int_equal(a->npreds, 1);
}

static void test_reuse_clears_output(void **state)
{
	(void)state;
	struct sql_analysis a;
	char err[64];
	assert_int_equal(sql_analyze("SELECT * FROM a JOIN b ON a.id = b.a_id WHERE a.x = 1 ORDER BY a.y LIMIT 1 FOR UPDATE",
				     &a, err, sizeof err),
			 0);
	assert_true(a.writes && a.has_limit && a.ntables == 2 && a.njoins == 1 && a.npreds == 1 && a.norder == 1);
	assert_int_equal(sql_analyze("SELECT 1", &a, err, sizeof err), 0);
	assert_false(a.writes || a.has_limit || a.multi);
	assert_int_equal(a.ntables + a.njoins + a.npreds + a.norder, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_django_get_by_pk),
		cmocka_unit_test(test_django_fk_param),
		cmocka_unit_test(test_django_m2m_join),
		cmocka_unit_test(test_django_filter_range_order),
		cmocka_unit_test(test_django_prefetch_in),
		cmocka_unit_test(test_django_select_related),
		cmocka_unit_test(test_django_like_lookups),
		cmocka_unit_test(test_operator_classes),
		cmocka_unit_test(test_casts_and_sql_values),
		cmocka_unit_test(test_or_and_not_skipped),
		cmocka_unit_test(test_alias_resolution),
		cmocka_unit_test(test_unqualified_columns),
		cmocka_unit_test(test_schema_qualified),
		cmocka_unit_test(test_quoted_identifiers),
		cmocka_unit_test(test_subquery_tables_after_outer),
		cmocka_unit_test(test_where_joins),
		cmocka_unit_test(test_set_operations),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_order_by_shapes),
		cmocka_unit_test(test_dml_writes),
		cmocka_unit_test(test_select_writes),
		cmocka_unit_test(test_data_modifying_cte),
		cmocka_unit_test(test_utility),
		cmocka_unit_test(test_multi_and_empty),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_long_identifiers),
		cmocka_unit_test(test_many_predicates_bounded),
		cmocka_unit_test(test_many_tables_joins_orders_bounded),
		cmocka_unit_test(test_reuse_clears_output),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
