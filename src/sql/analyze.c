/* analyze.c - see analyze.h.  libpg_query parses the text with PostgreSQL's own
 * grammar and hands back the raw parse tree as JSON (PostgreSQL 15 node names);
 * jansson loads it and this file walks the few node shapes the diagnosis needs.
 *
 * The walk is breadth-first over statements: the outer statement's range tables
 * come first (that is what "the main table" means to the N+1 detector), then
 * those of its subqueries, CTEs and set-operation branches, level by level.
 * Predicates, join equalities and ORDER BY come from the outer statement only:
 * a subquery's WHERE does not tell which index the outer scan needs.
 *
 * Nothing here is on the hot path (one call per fingerprint), so clarity wins
 * over speed; every output array is bounded and every name copy truncates. */
#include "sql/analyze.h"

#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Range entries of the outer statement, used to resolve aliases.  Larger than
 * SQLA_MAX_TABLES so that resolution still works when the output is full. */
#define SCOPE_MAX 64
/* Subqueries waiting to be visited; more than this and their tables are dropped
 * (writes detection does not depend on it: see tree_writes). */
#define QUEUE_MAX 64
#define CTE_MAX 32

enum qtype { Q_SELECT, Q_INSERT, Q_UPDATE, Q_DELETE, Q_MERGE };

struct scope_ent {
	char schema[SQLA_NAME];
	char name[SQLA_NAME];
	char alias[SQLA_NAME];
	bool is_rel; /* a table (RangeVar); false for a subquery, function or CTE reference */
};

struct actx {
	struct sql_analysis *out;
	struct scope_ent scope[SCOPE_MAX];
	int nscope;
	const char *ctes[CTE_MAX]; /* CTE names seen so far: FROM x that means a CTE is no table */
	int nctes;
	struct {
		enum qtype type;
		json_t *body;
	} queue[QUEUE_MAX];
	int qlen;
};

/* ------------------------------------------------------------------ helpers */

/* Copies a name, truncating to SQLA_NAME-1 bytes without splitting a UTF-8
 * sequence (the parser already truncates identifiers to 63 bytes, as the server
 * does; this is the belt to its braces). */
static void copy_name(char dst[SQLA_NAME], const char *src)
{
	size_t n = src ? strlen(src) : 0;
	if (n > SQLA_NAME - 1) {
		n = SQLA_NAME - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--; /* src[n] is a continuation byte: cut before its lead byte */
	}
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* The type name of a node wrapper {"Type": {...}}, and its body. */
static const char *node_type(json_t *node, json_t **body)
{
	void *it = json_is_object(node) ? json_object_iter(node) : NULL;
	if (!it) {
		*body = NULL;
		return "";
	}
	*body = json_object_iter_value(it);
	return json_object_iter_key(it);
}

/* The body of node if it is a wrapper of the given type, else NULL. */
static json_t *node_as(json_t *node, const char *type)
{
	json_t *body;
	const char *t = node_type(node, &body);
	return strcmp(t, type) == 0 && json_is_object(body) ? body : NULL;
}

static const char *get_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "";
}

/* sval of a String node, or NULL. */
static const char *string_node(json_t *node)
{
	json_t *s = node_as(node, "String");
	return s ? json_string_value(json_object_get(s, "sval")) : NULL;
}

/* The last element of a qualified name list (operator or function name):
 * OPERATOR(pg_catalog.=) and pg_catalog.nextval name the same thing as = and nextval. */
static const char *last_name(json_t *list)
{
	size_t n = json_array_size(list);
	const char *s = n ? string_node(json_array_get(list, n - 1)) : NULL;
	return s ? s : "";
}

/* ------------------------------------------------------------------- writes */

static bool side_effect_func(const char *name)
{
	static const char *const exact[] = {
		"nextval", "setval", "set_config", "pg_notify", "pg_terminate_backend", "pg_cancel_backend",
		"pg_reload_conf", "pg_rotate_logfile", "pg_switch_wal", "txid_current", "pg_current_xact_id",
	};
	for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
		if (strcmp(name, exact[i]) == 0)
			return true;
	return strncmp(name, "pg_advisory", 11) == 0 || strncmp(name, "pg_try_advisory", 15) == 0 ||
	       strncmp(name, "lo_", 3) == 0 || strncmp(name, "dblink", 6) == 0;
}

/* Whether anything in the tree can change data or take row locks: a nested
 * INSERT/UPDATE/DELETE/MERGE (data-modifying CTE), FOR UPDATE/SHARE at any level,
 * SELECT INTO, or a call of a well-known function with side effects.  A scan
 * of the whole tree rather than of the visited statements, so that it stays
 * right when the bounded subquery queue overflows.  User functions that write
 * cannot be seen from the text. */
static bool tree_writes(json_t *node)
{
	if (json_is_array(node)) {
		size_t i;
		json_t *v;
		json_array_foreach (node, i, v)
			if (tree_writes(v))
				return true;
		return false;
	}
	if (!json_is_object(node))
		return false;
	const char *key;
	json_t *v;
	json_object_foreach (node, key, v) {
		if (!strcmp(key, "InsertStmt") || !strcmp(key, "UpdateStmt") || !strcmp(key, "DeleteStmt") ||
		    !strcmp(key, "MergeStmt") || !strcmp(key, "intoClause"))
			return true;
		if (!strcmp(key, "lockingClause") && json_array_size(v) > 0)
			return true;
		if (!strcmp(key, "FuncCall") && side_effect_func(last_name(json_object_get(v, "funcname"))))
			return true;
		if (tree_writes(v))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------- tables */

static bool is_cte_name(const struct actx *c, const char *name)
{
	for (int i = 0; i < c->nctes; i++)
		if (strcmp(c->ctes[i], name) == 0)
			return true;
	return false;
}

static void add_scope(struct actx *c, const char *schema, const char *name, const char *alias, bool is_rel)
{
	if (c->nscope >= SCOPE_MAX)
		return;
	struct scope_ent *e = &c->scope[c->nscope++];
	copy_name(e->schema, schema);
	copy_name(e->name, name);
	copy_name(e->alias, alias);
	e->is_rel = is_rel;
}

static void add_table(struct sql_analysis *out, const char *schema, const char *name, const char *alias)
{
	struct sqla_table t;
	copy_name(t.schema, schema);
	copy_name(t.name, name);
	copy_name(t.alias, alias);
	for (int i = 0; i < out->ntables; i++) /* the same reference again adds nothing */
		if (!strcmp(out->tables[i].schema, t.schema) && !strcmp(out->tables[i].name, t.name) &&
		    !strcmp(out->tables[i].alias, t.alias))
			return;
	if (out->ntables < SQLA_MAX_TABLES)
		out->tables[out->ntables++] = t;
}

static const char *alias_of(json_t *body)
{
	return get_str(json_object_get(body, "alias"), "aliasname");
}

/* rv is a RangeVar body (a statement's target "relation" is one, unwrapped). */
static void add_range_var(struct actx *c, json_t *rv, bool outer)
{
	const char *schema = get_str(rv, "schemaname");
	const char *name = get_str(rv, "relname");
	const char *alias = alias_of(rv);
	if (!*name)
		return;
	bool cte = !*schema && is_cte_name(c, name);
	if (outer)
		add_scope(c, schema, name, alias, !cte);
	if (!cte)
		add_table(c->out, schema, name, alias);
}

/* One fromClause/usingClause item: tables, joins (recursively), and for the
 * outer statement the names of subqueries and functions, so that their aliases
 * resolve to "unknown table" rather than to nothing. */
static void add_from_item(struct actx *c, json_t *node, bool outer)
{
	json_t *body;
	const char *t = node_type(node, &body);
	if (!body)
		return;
	if (!strcmp(t, "RangeVar")) {
		add_range_var(c, body, outer);
	} else if (!strcmp(t, "JoinExpr")) {
		add_from_item(c, json_object_get(body, "larg"), outer);
		add_from_item(c, json_object_get(body, "rarg"), outer);
	} else if (!strcmp(t, "RangeTableSample")) { /* t TABLESAMPLE ...: a RangeVar inside */
		add_from_item(c, json_object_get(body, "relation"), outer);
	} else if (outer && (!strcmp(t, "RangeSubselect") || !strcmp(t, "RangeFunction") ||
			     !strcmp(t, "RangeTableFunc"))) {
		add_scope(c, "", "", alias_of(body), false);
	}
}

static void enqueue(struct actx *c, enum qtype type, json_t *body)
{
	if (c->qlen < QUEUE_MAX && json_is_object(body)) {
		c->queue[c->qlen].type = type;
		c->queue[c->qlen].body = body;
		c->qlen++;
	}
}

static bool stmt_qtype(const char *t, enum qtype *type)
{
	static const struct {
		const char *name;
		enum qtype type;
	} map[] = {
		{"SelectStmt", Q_SELECT}, {"InsertStmt", Q_INSERT}, {"UpdateStmt", Q_UPDATE},
		{"DeleteStmt", Q_DELETE}, {"MergeStmt", Q_MERGE},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (!strcmp(t, map[i].name)) {
			*type = map[i].type;
			return true;
		}
	return false;
}

/* Queues every statement nested in node (subqueries in FROM, WHERE, the target
 * list, CTEs, INSERT ... SELECT), without descending into them: their own
 * nested statements are found when they are visited, one level later. */
static void find_subqueries(struct actx *c, json_t *node)
{
	if (json_is_array(node)) {
		size_t i;
		json_t *v;
		json_array_foreach (node, i, v)
			find_subqueries(c, v);
		return;
	}
	if (!json_is_object(node))
		return;
	const char *key;
	json_t *v;
	json_object_foreach (node, key, v) {
		enum qtype type;
		if (stmt_qtype(key, &type))
			enqueue(c, type, v);
		else
			find_subqueries(c, v);
	}
}

/* --------------------------------------------------------------- resolution */

static const struct scope_ent *find_scope(const struct actx *c, const char *qual)
{
	for (int i = 0; i < c->nscope; i++) /* an alias hides the table's own name */
		if (!strcmp(c->scope[i].alias, qual))
			return &c->scope[i];
	for (int i = 0; i < c->nscope; i++)
		if (!c->scope[i].alias[0] && !strcmp(c->scope[i].name, qual))
			return &c->scope[i];
	for (int i = 0; i < c->nscope; i++) /* PostgreSQL would reject this; be lenient */
		if (!strcmp(c->scope[i].name, qual))
			return &c->scope[i];
	return NULL;
}

/* A bare column reference: a ColumnRef of names only (not t.*).  Resolves it
 * against the outer statement's range entries. */
static bool resolve_colref(const struct actx *c, json_t *node, struct sqla_col *col)
{
	json_t *cr = node_as(node, "ColumnRef");
	json_t *fields = cr ? json_object_get(cr, "fields") : NULL;
	size_t n = json_array_size(fields);
	const char *f[4] = {NULL, NULL, NULL, NULL};
	if (n == 0 || n > 4)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(f[i] = string_node(json_array_get(fields, i))))
			return false; /* A_Star */
	memset(col, 0, sizeof *col);
	copy_name(col->column, f[n - 1]);
	if (n >= 3) { /* [catalog.]schema.table.column: the table is named, not aliased */
		copy_name(col->schema, f[n - 3]);
		copy_name(col->table, f[n - 2]);
		return true;
	}
	const struct scope_ent *e = NULL;
	if (n == 2)
		e = find_scope(c, f[0]);
	else if (c->nscope == 1)
		e = &c->scope[0];
	if (e && e->is_rel) {
		memcpy(col->table, e->name, sizeof col->table);
		memcpy(col->schema, e->schema, sizeof col->schema);
	}
	return true;
}

/* The column side of a predicate: a bare column, or one cast to another type
 * (Django's LIKE lookups compare "t"."title"::text). */
static bool resolve_col_side(const struct actx *c, json_t *node, struct sqla_col *col)
{
	json_t *tc = node_as(node, "TypeCast");
	return resolve_colref(c, tc ? json_object_get(tc, "arg") : node, col);
}

/* ----------------------------------------------------------- predicates */

/* A constant or parameter, possibly cast, possibly negated, or an ARRAY[...]
 * of them. */
static bool is_value(json_t *node)
{
	json_t *body;
	const char *t = node_type(node, &body);
	if (!body)
		return false;
	if (!strcmp(t, "A_Const") || !strcmp(t, "ParamRef") || !strcmp(t, "SQLValueFunction"))
		return true;
	if (!strcmp(t, "TypeCast"))
		return is_value(json_object_get(body, "arg"));
	if (!strcmp(t, "A_ArrayExpr")) {
		size_t i;
		json_t *v;
		json_array_foreach (json_object_get(body, "elements"), i, v)
			if (!is_value(v))
				return false;
		return true; /* ARRAY[] too */
	}
	if (!strcmp(t, "A_Expr") && !json_object_get(body, "lexpr")) { /* - $1, + 2 */
		const char *op = last_name(json_object_get(body, "name"));
		return !strcmp(get_str(body, "kind"), "AEXPR_OP") && (!strcmp(op, "-") || !strcmp(op, "+")) &&
		       is_value(json_object_get(body, "rexpr"));
	}
	return false;
}

/* (a, b, c) of IN and BETWEEN: a List node whose items are all values. */
static bool is_value_list(json_t *node)
{
	json_t *l = node_as(node, "List");
	json_t *items = l ? json_object_get(l, "items") : NULL;
	if (json_array_size(items) == 0)
		return false;
	size_t i;
	json_t *v;
	json_array_foreach (items, i, v)
		if (!is_value(v))
			return false;
	return true;
}

static enum sqla_op op_class(const char *op)
{
	if (!strcmp(op, "="))
		return SQLA_EQ;
	if (!strcmp(op, "<") || !strcmp(op, "<=") || !strcmp(op, ">") || !strcmp(op, ">="))
		return SQLA_RANGE;
	if (!strcmp(op, "~~") || !strcmp(op, "~~*"))
		return SQLA_LIKE;
	return SQLA_OTHER_OP; /* <>, NOT LIKE (!~~), regex, @>, ... */
}

static void add_pred(struct sql_analysis *out, const struct sqla_col *col, enum sqla_op op)
{
	if (out->npreds >= SQLA_MAX_PREDS)
		return;
	out->preds[out->npreds].col = *col;
	out->preds[out->npreds].op = op;
	out->npreds++;
}

static void add_join(struct sql_analysis *out, const struct sqla_col *l, const struct sqla_col *r)
{
	if (out->njoins >= SQLA_MAX_TABLES)
		return;
	out->joins[out->njoins].left = *l;
	out->joins[out->njoins].right = *r;
	out->njoins++;
}

/* One A_Expr of a WHERE or ON conjunct. */
static void classify_a_expr(struct actx *c, json_t *e, bool preds)
{
	const char *kind = get_str(e, "kind");
	const char *op = last_name(json_object_get(e, "name"));
	json_t *l = json_object_get(e, "lexpr"), *r = json_object_get(e, "rexpr");
	struct sqla_col a, b;

	if (!strcmp(kind, "AEXPR_OP") && !strcmp(op, "=") && resolve_colref(c, l, &a) && resolve_colref(c, r, &b)) {
		add_join(c->out, &a, &b);
		return;
	}
	if (!preds)
		return;

	if (!strcmp(kind, "AEXPR_OP")) {
		if (resolve_col_side(c, l, &a) && is_value(r))
			add_pred(c->out, &a, op_class(op));
		else if (resolve_col_side(c, r, &a) && is_value(l)) /* 42 = col; 5 < col is a range too */
			add_pred(c->out, &a, op_class(op));
	} else if (!strcmp(kind, "AEXPR_OP_ANY") || !strcmp(kind, "AEXPR_OP_ALL")) {
		/* col = ANY($1) / ANY(ARRAY[...]): an IN list; ALL is rarely indexable */
		if (resolve_col_side(c, l, &a) && is_value(r))
			add_pred(c->out, &a, !strcmp(kind, "AEXPR_OP_ANY") ? op_class(op) : SQLA_OTHER_OP);
	} else if (!strcmp(kind, "AEXPR_IN")) {
		if (resolve_col_side(c, l, &a) && is_value_list(r)) /* NOT IN is named "<>" */
			add_pred(c->out, &a, !strcmp(op, "=") ? SQLA_EQ : SQLA_OTHER_OP);
	} else if (!strcmp(kind, "AEXPR_BETWEEN") || !strcmp(kind, "AEXPR_BETWEEN_SYM")) {
		if (resolve_col_side(c, l, &a) && is_value_list(r))
			add_pred(c->out, &a, SQLA_RANGE);
	} else if (!strcmp(kind, "AEXPR_LIKE") || !strcmp(kind, "AEXPR_ILIKE")) {
		if (resolve_col_side(c, l, &a) && is_value(r)) /* NOT [I]LIKE is !~~ / !~~* */
			add_pred(c->out, &a, op_class(op));
	} else if (!strcmp(kind, "AEXPR_NOT_BETWEEN") || !strcmp(kind, "AEXPR_NOT_BETWEEN_SYM")) {
		if (resolve_col_side(c, l, &a) && is_value_list(r))
			add_pred(c->out, &a, SQLA_OTHER_OP);
	} else if (!strcmp(kind, "AEXPR_DISTINCT") || !strcmp(kind, "AEXPR_NOT_DISTINCT") ||
		   !strcmp(kind, "AEXPR_SIMILAR")) {
		if (resolve_col_side(c, l, &a) && is_value(r))
			add_pred(c->out, &a, SQLA_OTHER_OP);
	}
	/* AEXPR_NULLIF and AEXPR_PAREN are no comparisons */
}

/* Splits a qualification on AND (nested ANDs are still top level) and looks at
 * each conjunct.  OR and NOT subtrees are skipped: a column under OR does not
 * make an index usable on its own.  preds=false (JOIN ... ON) collects only
 * column equalities. */
static void walk_qual(struct actx *c, json_t *node, bool preds)
{
	json_t *body;
	const char *t = node_type(node, &body);
	if (!body)
		return;
	if (!strcmp(t, "BoolExpr")) {
		if (strcmp(get_str(body, "boolop"), "AND_EXPR") != 0)
			return;
		size_t i;
		json_t *v;
		json_array_foreach (json_object_get(body, "args"), i, v)
			walk_qual(c, v, preds);
	} else if (!strcmp(t, "A_Expr")) {
		classify_a_expr(c, body, preds);
	} else if (preds && !strcmp(t, "NullTest")) {
		struct sqla_col a;
		if (resolve_col_side(c, json_object_get(body, "arg"), &a))
			add_pred(c->out, &a, SQLA_NULLTEST);
	}
}

/* ON clauses of the outer FROM list's joins, nested joins included. */
static void walk_join_quals(struct actx *c, json_t *node)
{
	json_t *j = node_as(node, "JoinExpr");
	if (!j)
		return;
	walk_join_quals(c, json_object_get(j, "larg"));
	walk_join_quals(c, json_object_get(j, "rarg"));
	walk_qual(c, json_object_get(j, "quals"), false);
}

static void walk_order(struct actx *c, json_t *sort)
{
	size_t i;
	json_t *v;
	json_array_foreach (sort, i, v) {
		json_t *sb = node_as(v, "SortBy");
		struct sqla_col col;
		if (!sb || !resolve_colref(c, json_object_get(sb, "node"), &col))
			continue; /* ORDER BY 2, ORDER BY lower(x): no column to index as is */
		if (c->out->norder >= SQLA_MAX_ORDER)
			break;
		c->out->order[c->out->norder] = col;
		c->out->order_desc[c->out->norder] = !strcmp(get_str(sb, "sortby_dir"), "SORTBY_DESC");
		c->out->norder++;
	}
}

/* ---------------------------------------------------------------- statements */

static void add_ctes(struct actx *c, json_t *with)
{
	size_t i;
	json_t *v;
	json_array_foreach (json_object_get(with, "ctes"), i, v) {
		json_t *cte = node_as(v, "CommonTableExpr");
		const char *name = cte ? json_string_value(json_object_get(cte, "ctename")) : NULL;
		if (name && c->nctes < CTE_MAX)
			c->ctes[c->nctes++] = name;
	}
}

static void add_from_list(struct actx *c, json_t *list, bool outer)
{
	size_t i;
	json_t *v;
	json_array_foreach (list, i, v)
		add_from_item(c, v, outer);
}

/* One statement body: its range tables, and its nested statements queued.  For
 * the outer statement also its scope, predicates, joins, ORDER BY and LIMIT. */
static void visit(struct actx *c, enum qtype type, json_t *body, bool outer)
{
	struct sql_analysis *out = c->out;
	add_ctes(c, json_object_get(body, "withClause"));

	if (type == Q_SELECT && strcmp(get_str(body, "op"), "SETOP_NONE") != 0) {
		/* UNION/INTERSECT/EXCEPT: the branches are bare SelectStmt bodies */
		enqueue(c, Q_SELECT, json_object_get(body, "larg"));
		enqueue(c, Q_SELECT, json_object_get(body, "rarg"));
	}
	if (type != Q_SELECT) /* the target first: UPDATE t ... FROM u */
		add_range_var(c, json_object_get(body, "relation"), outer);
	add_from_list(c, json_object_get(body, "fromClause"), outer);
	add_from_list(c, json_object_get(body, "usingClause"), outer);
	if (type == Q_MERGE)
		add_from_item(c, json_object_get(body, "sourceRelation"), outer);

	const char *key;
	json_t *v;
	json_object_foreach (body, key, v)
		if (strcmp(key, "larg") != 0 && strcmp(key, "rarg") != 0)
			find_subqueries(c, v);

	if (!outer)
		return;
	size_t i;
	json_array_foreach (json_object_get(body, "fromClause"), i, v)
		walk_join_quals(c, v);
	json_array_foreach (json_object_get(body, "usingClause"), i, v)
		walk_join_quals(c, v);
	if (type == Q_MERGE)
		walk_qual(c, json_object_get(body, "joinCondition"), false);
	walk_qual(c, json_object_get(body, "whereClause"), true);
	walk_order(c, json_object_get(body, "sortClause"));

	json_t *lim = json_object_get(body, "limitCount");
	json_t *k = node_as(lim, "A_Const");
	out->has_limit = lim && !(k && json_is_true(json_object_get(k, "isnull"))); /* LIMIT ALL/NULL */
}

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (!err || errlen == 0)
		return;
	size_t n = strlen(msg);
	if (n >= errlen)
		n = errlen - 1; /* truncated: the caller chose the size */
	memcpy(err, msg, n);
	err[n] = '\0';
}

int sql_analyze(const char *text, struct sql_analysis *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (err && errlen)
		err[0] = '\0';
	if (!text) {
		set_err(err, errlen, "no statement text");
		return -1;
	}

	int rc = -1;
	json_t *root = NULL;
	struct actx *c = NULL;
	PgQueryParseResult pr = pg_query_parse(text);
	if (pr.error) {
		set_err(err, errlen, pr.error->message ? pr.error->message : "parse error");
		goto out;
	}
	json_error_t jerr;
	/* jansson refuses trees nested deeper than 2048: an error, never a crash */
	root = json_loads(pr.parse_tree, 0, &jerr);
	if (!root) {
		char msg[256];
		snprintf(msg, sizeof msg, "parse tree unreadable: %s", jerr.text);
		set_err(err, errlen, msg);
		goto out;
	}
	json_t *stmts = json_object_get(root, "stmts");
	out->multi = json_array_size(stmts) > 1;
	json_t *stmt = json_object_get(json_array_get(stmts, 0), "stmt");
	json_t *body;
	const char *t = node_type(stmt, &body);
	if (!body) { /* empty text or only semicolons/comments: nothing to analyze */
		rc = 0;
		goto out;
	}

	enum qtype type;
	if (!stmt_qtype(t, &type)) {
		/* EXPLAIN, SET, DDL, COPY, CALL, DO, BEGIN, ...: never re-run these */
		out->kind = SQLA_UTILITY;
		out->writes = true;
		rc = 0;
		goto out;
	}
	static const enum sqla_kind kinds[] = {
		[Q_SELECT] = SQLA_SELECT, [Q_INSERT] = SQLA_INSERT, [Q_UPDATE] = SQLA_UPDATE,
		[Q_DELETE] = SQLA_DELETE, [Q_MERGE] = SQLA_OTHER,
	};
	out->kind = kinds[type];
	out->writes = type != Q_SELECT || tree_writes(body);

	c = calloc(1, sizeof *c); /* ~13 KB: kept off the caller's stack */
	if (!c) {
		set_err(err, errlen, "out of memory");
		goto out;
	}
	c->out = out;
	visit(c, type, body, true);
	for (int i = 0; i < c->qlen; i++) /* the queue grows while it is walked: breadth first */
		visit(c, c->queue[i].type, c->queue[i].body, false);
	rc = 0;
out:
	free(c);
	json_decref(root);
	pg_query_free_parse_result(pr);
	if (rc != 0)
		memset(out, 0, sizeof *out);
	return rc;
}
