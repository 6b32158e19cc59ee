/* confirm.c - libpg_query's second opinion on session state the lexical scanner
 * (session.c) found in a SELECT.  The scanner pins on any mention of an advisory
 * lock function or set_config(); the parse tree tells whether the function is
 * really called, and whether set_config's is_local argument is true (then the
 * setting ends with the transaction and nothing needs pinning).  Cold path: only
 * for statements the scanner already flagged. */
#include <jansson.h>
#include <pg_query.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pg/proto.h"
#include "sql/session.h"

struct found {
	bool advisory, set;
};

static const char *func_name(const json_t *fc)
{
	const json_t *names = json_object_get(fc, "funcname");
	const json_t *last = json_array_get(names, json_array_size(names) ? json_array_size(names) - 1 : 0);
	return json_string_value(json_object_get(json_object_get(last, "String"), "sval"));
}

static bool const_true(const json_t *arg)
{
	const json_t *c = json_object_get(arg, "A_Const");
	if (!c)
		return false;
	const json_t *b = json_object_get(c, "boolval");
	if (b)
		return json_is_true(json_object_get(b, "boolval"));
	const char *s = json_string_value(json_object_get(json_object_get(c, "sval"), "sval"));
	return s && (strcasecmp(s, "t") == 0 || strcasecmp(s, "true") == 0 || strcasecmp(s, "on") == 0 ||
		     strcasecmp(s, "yes") == 0 || strcmp(s, "1") == 0);
}

static const char *const_string(const json_t *arg)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(arg, "A_Const"), "sval"), "sval"));
}

static void walk(const json_t *n, struct found *f, int depth)
{
	if (depth > 1000) {
		f->advisory = f->set = true; /* too deep to tell: keep the pin */
		return;
	}
	if (json_is_array(n)) {
		size_t i;
		const json_t *x;
		json_array_foreach(n, i, x)
		walk(x, f, depth + 1);
		return;
	}
	if (!json_is_object(n))
		return;
	const json_t *fc = json_object_get(n, "FuncCall");
	if (fc) {
		const char *name = func_name(fc);
		if (name && (strcmp(name, "pg_advisory_lock") == 0 || strcmp(name, "pg_advisory_lock_shared") == 0 ||
			     strcmp(name, "pg_try_advisory_lock") == 0 || strcmp(name, "pg_try_advisory_lock_shared") == 0))
			f->advisory = true;
		if (name && strcmp(name, "set_config") == 0) {
			const json_t *args = json_object_get(fc, "args");
			const char *param = const_string(json_array_get(args, 0));
			bool reported = param && pg_tracked_param_index(param) >= 0;
			/* session-level unless is_local is the constant true */
			if (!reported && !(json_array_size(args) == 3 && const_true(json_array_get(args, 2))))
				f->set = true;
		}
	}
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)n, k, v)
	walk(v, f, depth + 1);
}

unsigned sql_session_confirm(const char *q, size_t len, unsigned bits)
{
	if (!(bits & (SESS_ADVISORY | SESS_SET)) || (bits & ~(unsigned)(SESS_ADVISORY | SESS_SET)))
		return bits; /* only a SELECT's function calls are re-checked */
	char *text = strndup(q, len);
	if (!text)
		return bits;
	PgQueryParseResult r = pg_query_parse(text);
	free(text);
	unsigned out = bits;
	json_t *tree = r.error ? NULL : json_loads(r.parse_tree, 0, NULL);
	const json_t *stmts = json_object_get(tree, "stmts");
	const json_t *stmt = json_object_get(json_array_get(stmts, 0), "stmt");
	if (json_array_size(stmts) == 1 && json_object_get(stmt, "SelectStmt")) {
		struct found f = {false, false};
		walk(stmt, &f, 0);
		out = bits & ((f.advisory ? SESS_ADVISORY : 0u) | (f.set ? SESS_SET : 0u));
	}
	json_decref(tree);
	pg_query_free_parse_result(r);
	return out;
}
