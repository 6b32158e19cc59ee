/* doctor.c - `pgmedic doctor`: connects to a database with libpq, runs the
 * catalog checks of advise_catalog (unindexed foreign keys, unused and redundant
 * indexes) and prints the findings, most severe and largest first, as text or as
 * {"findings": [...]}.  Needs no running pgmedic: this is the check to run before
 * a deploy or on a copy of production. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cli/cli.h"
#include "insight/advise.h"

#define LABEL_W 8

void cli_doctor_usage(FILE *f)
{
	fprintf(f, "Usage: pgmedic doctor --upstream URL [--models FILE] [--json]\n"
		   "Checks a database's catalog: foreign keys without an index, indexes never\n"
		   "scanned, indexes made redundant by another index.  Each finding comes with the\n"
		   "SQL fix and, when the ORM map knows the table, the Django model change.\n\n"
		   "  --upstream URL  the database, as a libpq URI or connection string:\n"
		   "                  postgresql://user[:password]@host:port/dbname (required)\n"
		   "  --models FILE   the ORM map printed by `manage.py pgmedic_models --print`\n"
		   "                  (\"-\": standard input), to name models and fields\n"
		   "  --json          print {\"findings\": [...]}\n"
		   "  --schema        print instead the schema facts pgmedic's N+1 analysis uses (foreign\n"
		   "                  keys, primary keys, table sizes) as JSON\n"
		   "  -h, --help      this text\n\n"
		   "Unused indexes are judged on the server's statistics (pg_stat_user_indexes)\n"
		   "since they were last reset: only as good as the period they cover, and blind to\n"
		   "replicas.  Exit codes: 0 the check ran (with or without findings), 1 connection\n"
		   "or query error, 2 usage error.\n");
}

static int severity_rank(const char *s)
{
	if (!s)
		return 3;
	return strcmp(s, "high") == 0 ? 0 : strcmp(s, "medium") == 0 ? 1 : strcmp(s, "low") == 0 ? 2 : 3;
}

/* Most severe first, then largest, then by id (stable output for the same catalog). */
static int by_severity(const void *pa, const void *pb)
{
	const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	int ra = severity_rank(cli_json_str(a, "severity")), rb = severity_rank(cli_json_str(b, "severity"));
	if (ra != rb)
		return ra - rb;
	double sa = 0, sb = 0;
	(void)cli_json_num(a, "size_bytes", &sa);
	(void)cli_json_num(b, "size_bytes", &sb);
	if (sa != sb)
		return sa > sb ? -1 : 1;
	return strcmp(cli_json_str(a, "id") ?: "", cli_json_str(b, "id") ?: "");
}

static void cols_text(char *buf, size_t len, const json_t *cols)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < json_array_size(cols) && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "", json_string_value(json_array_get(cols, i)) ?: "?");
}

static void label(FILE *out, const char *name)
{
	fprintf(out, "  %-*s", LABEL_W, name);
}

static void render(FILE *out, const json_t *f, size_t width)
{
	const char *kind = cli_json_str(f, "kind") ?: "?", *sev = cli_json_str(f, "severity") ?: "?",
		   *table = cli_json_str(f, "table") ?: "?", *index = cli_json_str(f, "index");
	char cols[1024], a[64], b[64], line[2048];
	double size = 0, v;
	bool has_size = cli_json_num(f, "size_bytes", &size);
	cols_text(cols, sizeof(cols), json_object_get(f, "columns"));

	if (strcmp(kind, "unindexed_foreign_key") == 0) {
		char ref[1024];
		cols_text(ref, sizeof(ref), json_object_get(f, "ref_columns"));
		fprintf(out, "[%s] unindexed foreign key %s (%s) \xe2\x86\x92 %s (%s)\n", sev, table, cols,
			cli_json_str(f, "ref_table") ?: "?", ref);
		label(out, "size");
		fprintf(out, "table %s", cli_fmt_bytes(a, sizeof(a), size));
		if (cli_json_num(f, "rows", &v))
			fprintf(out, ", about %s row%s", cli_fmt_num(b, sizeof(b), v), v == 1 ? "" : "s");
		fputc('\n', out);
	} else if (strcmp(kind, "redundant_index") == 0 || strcmp(kind, "unused_index") == 0) {
		bool redundant = kind[0] == 'r';
		fprintf(out, "[%s] %s index %s on %s (%s)", sev, redundant ? "redundant" : "unused", index ? index : "?",
			table, cols);
		if (redundant) {
			char by[1024];
			cols_text(by, sizeof(by), json_object_get(f, "redundant_to_columns"));
			bool dup = json_array_size(json_object_get(f, "columns")) ==
				   json_array_size(json_object_get(f, "redundant_to_columns"));
			fprintf(out, ", %s %s (%s)", dup ? "a duplicate of" : "covered by",
				cli_json_str(f, "redundant_to") ?: "?", by);
		}
		fputc('\n', out);
		label(out, "size");
		fprintf(out, "%s", has_size ? cli_fmt_bytes(a, sizeof(a), size) : "?");
		if (cli_json_num(f, "idx_scan", &v))
			fprintf(out, ", %s scan%s", cli_fmt_num(b, sizeof(b), v), v == 1 ? "" : "s");
		if (!redundant) {
			const char *reset = cli_json_str(f, "stats_reset");
			if (reset)
				fprintf(out, " since the statistics were reset at %s", reset);
			else
				fprintf(out, " since the statistics began (never reset)");
		}
		fputc('\n', out);
	} else {
		fprintf(out, "[%s] %s on %s (%s)\n", sev, kind, table, cols);
	}
	const char *fix = cli_json_str(f, "fix"), *sql = cli_json_str(f, "sql");
	if (fix) {
		label(out, "fix");
		cli_put_wrapped(out, fix, 2 + LABEL_W, width);
	}
	if (sql) {
		label(out, "sql");
		cli_put_wrapped(out, sql, 2 + LABEL_W, width);
	}
	const json_t *d = json_object_get(f, "django");
	if (json_is_object(d) && cli_json_str(d, "change")) {
		const char *model = cli_json_str(d, "model"), *field = cli_json_str(d, "field"),
			   *app = cli_json_str(d, "app_label");
		int n = 0;
		if (model && field)
			n = snprintf(line, sizeof(line), "%s.%s", model, field);
		else if (model)
			n = snprintf(line, sizeof(line), "%s", model);
		if (n > 0 && app && (size_t)n < sizeof(line))
			n += snprintf(line + n, sizeof(line) - (size_t)n, " (app %s)", app);
		if (n >= 0 && (size_t)n < sizeof(line))
			snprintf(line + n, sizeof(line) - (size_t)n, "%s%s", n ? ": " : "", cli_json_str(d, "change"));
		label(out, "django");
		cli_put_wrapped(out, line, 2 + LABEL_W, width);
	}
	fputc('\n', out);
}

/* The libpq message on one line: "...failed: Connection refused; Is the server..." */
static void one_line(char *s, size_t cap)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	char *copy = strdup(s);
	if (!copy)
		return;
	size_t o = 0;
	for (const char *r = copy; *r && o + 3 < cap; r++) {
		if (*r == '\n') {
			while (r[1] == '\n' || r[1] == '\t' || r[1] == ' ')
				r++;
			s[o++] = ';';
			s[o++] = ' ';
		} else {
			s[o++] = *r;
		}
	}
	s[o] = '\0';
	free(copy);
}

/* Loads --models: the ORM map object.  NULL with err. */
static json_t *load_models(const char *path, char *err, size_t errlen)
{
	bool is_stdin = strcmp(path, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	json_error_t je;
	json_t *m = json_loadf(f, 0, &je);
	if (!is_stdin)
		fclose(f);
	if (!m) {
		snprintf(err, errlen, "%s is not valid JSON: line %d: %s", path, je.line, je.text);
		return NULL;
	}
	if (!json_is_object(m) || !json_is_array(json_object_get(m, "models"))) {
		snprintf(err, errlen, "%s is not an ORM model map (expected the JSON of `manage.py pgmedic_models --print`)",
			 path);
		json_decref(m);
		return NULL;
	}
	return m;
}

int cli_doctor(int argc, char **argv)
{
	static const struct option opts[] = {
		{"upstream", required_argument, NULL, 'u'},
		{"models", required_argument, NULL, 'm'},
		{"json", no_argument, NULL, 'j'},
		{"schema", no_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *url = NULL, *models_path = NULL;
	bool as_json = false, schema = false;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'm':
			models_path = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 's':
			schema = true;
			break;
		case 'h':
			cli_doctor_usage(stdout);
			return CLI_OK;
		case ':':
			return cli_usage_error("doctor", "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error("doctor", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("doctor", "unexpected argument '%s'", argv[optind]);
	if (!url || !*url)
		return cli_usage_error("doctor", "--upstream URL is required (postgresql://user@host:port/dbname)");

	int ret = CLI_ERR;
	char err[2048];
	json_t *models = NULL, *findings = NULL, *doc = NULL;
	json_t **v = NULL;
	PGconn *conn = NULL;
	if (models_path && !(models = load_models(models_path, err, sizeof(err))))
		goto fail;

	/* A syntax error in the URL gets its own message (and never a connection
	 * attempt to whatever libpq would make of it). */
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(url, &perr);
	if (!parsed) {
		snprintf(err, sizeof(err), "invalid --upstream: %s", perr ? perr : "out of memory");
		PQfreemem(perr);
		one_line(err, sizeof(err));
		goto fail;
	}
	PQconninfoFree(parsed);
	/* The URL as given; only the application name is a fallback it may override. */
	const char *const keys[] = {"fallback_application_name", "dbname", NULL};
	const char *const vals[] = {"pgmedic doctor", url, NULL};
	conn = PQconnectdbParams(keys, vals, 1);
	if (!conn || PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, sizeof(err), "cannot connect to PostgreSQL: %s",
			 conn ? PQerrorMessage(conn) : "out of memory");
		one_line(err, sizeof(err));
		goto fail;
	}
	if (schema) {
		if (advise_schema(conn, &doc, err, sizeof(err)) < 0)
			goto fail;
		if (cli_put_json(doc, err, sizeof(err)) < 0)
			goto fail;
		ret = CLI_OK;
		goto done;
	}
	findings = json_array();
	if (!findings) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (advise_catalog(conn, models, findings, err, sizeof(err)) < 0)
		goto fail;

	size_t n = json_array_size(findings);
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(findings, i);
	qsort(v, n, sizeof(*v), by_severity);

	if (as_json) {
		json_t *sorted = json_array();
		for (size_t i = 0; sorted && i < n; i++)
			if (json_array_append(sorted, v[i]) < 0) {
				json_decref(sorted);
				sorted = NULL;
			}
		doc = sorted ? json_pack("{s:o}", "findings", sorted) : NULL;
		if (!doc) {
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
		if (json_dumpf(doc, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) != 0 || fputc('\n', stdout) == EOF) {
			snprintf(err, sizeof(err), "cannot write to standard output: %s", strerror(errno));
			goto fail;
		}
	} else if (n == 0) {
		printf("no catalog problems found in %s\n", PQdb(conn));
	} else {
		size_t count[3] = {0};
		for (size_t i = 0; i < n; i++) {
			int r = severity_rank(cli_json_str(v[i], "severity"));
			if (r < 3)
				count[r]++;
		}
		printf("%zu catalog finding%s in %s (%zu high, %zu medium, %zu low)\n\n", n, n == 1 ? "" : "s", PQdb(conn),
		       count[0], count[1], count[2]);
		size_t width = (size_t)cli_term_width();
		for (size_t i = 0; i < n; i++)
			render(stdout, v[i], width);
		printf("CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction block: run the SQL on its own\n"
		       "(in a Django migration: atomic = False, or AddIndexConcurrently from django.contrib.postgres).\n");
	}
	if (cli_stdout_done(err, sizeof(err)) < 0)
		goto fail;
	ret = CLI_OK;
	goto done;
fail:
	fprintf(stderr, "pgmedic doctor: %s\n", err);
done:
	free(v);
	json_decref(doc);
	json_decref(findings);
	json_decref(models);
	PQfinish(conn);
	return ret;
}
