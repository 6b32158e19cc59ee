/* advise_driver.c - runs advise_explain() once for test_advise_explain.py, which
 * compiles it against the ASan objects of the tree.  Prints one JSON object:
 *   {"rc", "err", "plan", "finding",
 *    "hypo_left": hypothetical indexes left in this backend (null without hypopg),
 *    "idle": the connection is outside any transaction afterwards}
 * Usage: advise_driver URL [--analyze] [--create-hypopg] [--min-rows N] [--timeout-ms N] SQL */
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "insight/advise.h"

int main(int argc, char **argv)
{
	struct advise_opts o = {.statement_timeout_ms = 5000, .min_table_rows = 10000};
	const char *url = NULL, *sql = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--analyze") == 0)
			o.analyze_selects = true;
		else if (strcmp(argv[i], "--create-hypopg") == 0)
			o.create_hypopg = true;
		else if (strcmp(argv[i], "--min-rows") == 0 && i + 1 < argc)
			o.min_table_rows = atof(argv[++i]);
		else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
			o.statement_timeout_ms = atoi(argv[++i]);
		else if (!url)
			url = argv[i];
		else
			sql = argv[i];
	}
	if (!url || !sql) {
		fprintf(stderr, "usage: advise_driver URL [--analyze] [--create-hypopg] [--min-rows N] [--timeout-ms N] SQL\n");
		return 2;
	}
	PGconn *c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return 2;
	}
	json_t *plan = NULL, *finding = NULL;
	char err[512] = "";
	int rc = advise_explain(c, sql, &o, &plan, &finding, err, sizeof(err));

	json_t *hypo_left = json_null();
	PGresult *r = PQexec(c, "SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'");
	if (PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "1") == 0) {
		PQclear(r);
		/* Hypothetical indexes are private to the backend: only this connection sees them. */
		r = PQexec(c, "SELECT count(*) FROM hypopg_list_indexes");
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			hypo_left = json_integer(atoi(PQgetvalue(r, 0, 0)));
	}
	PQclear(r);

	json_t *out = json_pack("{s:i, s:s, s:o, s:o, s:o, s:b}", "rc", rc, "err", err, "plan",
				plan ? plan : json_null(), "finding", finding ? finding : json_null(), "hypo_left",
				hypo_left, "idle", PQtransactionStatus(c) == PQTRANS_IDLE);
	char *text = json_dumps(out, JSON_INDENT(1) | JSON_SORT_KEYS);
	puts(text ? text : "null");
	free(text);
	json_decref(out);
	PQfinish(c);
	return 0;
}
