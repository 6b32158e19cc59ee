/* report.c - `pgmedic report`: the problems a running pgmedic found (GET
 * /api/findings), most wasted time first, written for the developer who has to
 * fix them: what and where in one header line, the query, the fix sentence and the
 * code change (the ORM call, the migration, the SQL), then a one-line summary.
 *
 * time_wasted_ms and occurrences are totals over everything pgmedic saw; for the
 * per-request kinds (n_plus_one, duplicate_query) occurrences is the number of
 * requests, and the header's "per request" figure is time_wasted_per_request_ms
 * (their quotient when the endpoint leaves it out).
 * Also owns the width helpers doctor.c uses (cli_term_width, cli_put_wrapped). */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/cli.h"

#define ARROW "\xe2\x86\x92"
#define ELLIPSIS "\xe2\x80\xa6"
#define LABEL_W 8 /* "  django  " : two spaces, the label, padding */

void cli_report_usage(FILE *f)
{
	fprintf(f, "Usage: pgmedic report --http URL [--limit N] [--json]\n"
		   "Prints the problems a running pgmedic found (N+1 queries, duplicate queries,\n"
		   "missing indexes, slow queries, catalog problems), most wasted time first, each\n"
		   "with its query, the fix and the code change.\n\n"
		   "  --http URL   pgmedic's HTTP endpoint, e.g. http://127.0.0.1:9187 (required)\n"
		   "  --limit N    findings to print (default 20; 0: all); the summary counts all\n"
		   "  --json       print the /api/findings document as it came\n"
		   "  -h, --help   this text\n\n"
		   "Query texts are cut to the terminal width (TIOCGWINSZ, else $COLUMNS, else 120).\n");
}

/* ------------------------------------------------------------ shared helpers */

int cli_term_width(void)
{
	struct winsize ws;
	long v;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	const char *env = getenv("COLUMNS");
	if (env && cli_parse_int(env, 1, 100000, &v))
		return (int)v;
	return 120;
}

void cli_put_wrapped(FILE *f, const char *s, size_t indent, size_t width)
{
	size_t avail = width > indent + 20 ? width - indent : 20, col = 0;
	while (*s) {
		while (*s == ' ' || *s == '\n' || *s == '\t')
			s++;
		if (!*s)
			break;
		size_t n = strcspn(s, " \n\t");
		char *word = strndup(s, n);
		size_t w = word ? cli_utf8_width(word) : n;
		free(word);
		if (col > 0 && col + 1 + w > avail) {
			fprintf(f, "\n%*s", (int)indent, "");
			col = 0;
		} else if (col > 0) {
			fputc(' ', f);
			col++;
		}
		fwrite(s, 1, n, f);
		col += w;
		s += n;
	}
	fputc('\n', f);
}

/* ------------------------------------------------------------ formatting */

static int severity_rank(const char *s)
{
	if (!s)
		return 3;
	return strcmp(s, "high") == 0 ? 0 : strcmp(s, "medium") == 0 ? 1 : strcmp(s, "low") == 0 ? 2 : 3;
}

static double num_or(const json_t *o, const char *key, double dflt)
{
	double v;
	return cli_json_num(o, key, &v) ? v : dflt;
}

static int by_waste(const void *pa, const void *pb)
{
	const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	double wa = num_or(a, "time_wasted_ms", 0), wb = num_or(b, "time_wasted_ms", 0);
	if (wa != wb)
		return wa > wb ? -1 : 1;
	int ra = severity_rank(cli_json_str(a, "severity")), rb = severity_rank(cli_json_str(b, "severity"));
	if (ra != rb)
		return ra - rb;
	double oa = num_or(a, "occurrences", 0), ob = num_or(b, "occurrences", 0);
	if (oa != ob)
		return oa > ob ? -1 : 1;
	/* catalog findings have no time: the larger table or index first */
	double sa = num_or(a, "size_bytes", 0), sb = num_or(b, "size_bytes", 0);
	if (sa != sb)
		return sa > sb ? -1 : 1;
	const char *ia = cli_json_str(a, "id"), *ib = cli_json_str(b, "id");
	return strcmp(ia ? ia : "", ib ? ib : "");
}

/* "120 ms", "2.5 s" */
static const char *fmt_ms(char *buf, size_t len, double ms)
{
	char n[32];
	if (ms >= 10000)
		snprintf(buf, len, "%s s", cli_fmt_num(n, sizeof(n), (double)(long long)(ms / 100) / 10));
	else
		snprintf(buf, len, "%s ms", cli_fmt_num(n, sizeof(n), ms >= 100 ? (double)(long long)(ms + 0.5) : ms));
	return buf;
}

static const char *kind_label(const char *kind)
{
	static const struct {
		const char *kind, *label;
	} labels[] = {
		{"n_plus_one", "N+1"},
		{"duplicate_query", "duplicate query"},
		{"missing_index", "missing index"},
		{"slow_query", "slow query"},
		{"unindexed_foreign_key", "unindexed foreign key"},
		{"unused_index", "unused index"},
		{"redundant_index", "redundant index"},
	};
	for (size_t i = 0; kind && i < sizeof(labels) / sizeof(labels[0]); i++)
		if (strcmp(kind, labels[i].kind) == 0)
			return labels[i].label;
	return kind ? kind : "finding";
}

/* "shop_book (author_id, title)" into buf; just the table without columns. */
static const char *table_cols(char *buf, size_t len, const json_t *f)
{
	const char *t = cli_json_str(f, "table");
	size_t o = (size_t)snprintf(buf, len, "%s", t ? t : "?");
	const json_t *cols = json_object_get(f, "columns");
	for (size_t i = 0; i < json_array_size(cols) && o < len; i++) {
		const char *c = json_string_value(json_array_get(cols, i));
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : " (", c ? c : "?");
	}
	if (json_array_size(cols) && o < len)
		snprintf(buf + o, len - o, ")");
	return buf;
}

/* " in /books/ (shop.views.book_list)", " outside requests" */
static void where(FILE *out, const json_t *f)
{
	const char *route = cli_json_str(f, "route"), *ctl = cli_json_str(f, "controller");
	if (route)
		fprintf(out, " in %s", route);
	else
		fprintf(out, " outside any route");
	if (ctl)
		fprintf(out, " (%s)", ctl);
}

static void label(FILE *out, const char *name)
{
	fprintf(out, "  %-*s", LABEL_W, name);
}

static void header(FILE *out, const json_t *f)
{
	const char *kind = cli_json_str(f, "kind"), *sev = cli_json_str(f, "severity");
	double wasted = num_or(f, "time_wasted_ms", 0), occ = num_or(f, "occurrences", 0), v;
	char a[64], b[64], c[64], tc[1024];
	fprintf(out, "[%s] %s", sev ? sev : "?", kind_label(kind));
	if (!kind)
		kind = "";
	bool per_request = strcmp(kind, "n_plus_one") == 0 || strcmp(kind, "duplicate_query") == 0;
	if (per_request) {
		where(out, f);
		if (strcmp(kind, "n_plus_one") == 0 && cli_json_num(f, "queries_per_request", &v))
			fprintf(out, ": %s queries per request", cli_fmt_num(a, sizeof(a), v));
		else if (cli_json_num(f, "duplicates_per_request", &v))
			fprintf(out, ": the same query %s times per request", cli_fmt_num(a, sizeof(a), v));
		else
			fputc(':', out);
		double per = 0;
		bool has_per = cli_json_num(f, "time_wasted_per_request_ms", &per);
		if (!has_per && occ > 0) {
			per = wasted / occ;
			has_per = true;
		}
		if (has_per && occ > 0)
			fprintf(out, ", %s wasted per request (%s request%s, %s in all)", fmt_ms(b, sizeof(b), per),
				cli_fmt_num(a, sizeof(a), occ), occ == 1 ? "" : "s", fmt_ms(c, sizeof(c), wasted));
		else
			fprintf(out, ", %s wasted", fmt_ms(b, sizeof(b), wasted));
	} else if (strcmp(kind, "unused_index") == 0 || strcmp(kind, "redundant_index") == 0) {
		const char *idx = cli_json_str(f, "index");
		fprintf(out, " %s on %s", idx ? idx : "?", table_cols(tc, sizeof(tc), f));
		if (cli_json_num(f, "size_bytes", &v))
			fprintf(out, ", %s", cli_fmt_bytes(a, sizeof(a), v));
		const char *by = cli_json_str(f, "redundant_to");
		if (by)
			fprintf(out, ", covered by %s", by);
	} else if (strcmp(kind, "unindexed_foreign_key") == 0) {
		const char *ref = cli_json_str(f, "ref_table");
		fprintf(out, " %s", table_cols(tc, sizeof(tc), f));
		if (ref)
			fprintf(out, " " ARROW " %s", ref);
		if (cli_json_num(f, "size_bytes", &v))
			fprintf(out, ", table %s", cli_fmt_bytes(a, sizeof(a), v));
	} else {
		/* missing_index, slow_query and kinds this client does not know yet */
		if (strcmp(kind, "slow_query") == 0)
			where(out, f);
		else
			fprintf(out, " on %s", table_cols(tc, sizeof(tc), f));
		fprintf(out, ": %s wasted", fmt_ms(a, sizeof(a), wasted));
		if (occ > 0)
			fprintf(out, " in %s call%s", cli_fmt_num(b, sizeof(b), occ), occ == 1 ? "" : "s");
		if (strcmp(kind, "slow_query") == 0 && cli_json_num(f, "p95_ms", &v))
			fprintf(out, ", p95 %s", fmt_ms(b, sizeof(b), v));
		if (strcmp(kind, "missing_index") == 0 && cli_json_str(f, "route")) {
			fprintf(out, ",");
			where(out, f);
		}
	}
	fputc('\n', out);
}

/* The ORM change as code: `Book.objects.select_related("author")` for an N+1,
 * `Book: Meta.indexes = [...]` or `Review.book: db_index=True` otherwise. */
static void django_change(FILE *out, const json_t *f, size_t width)
{
	const json_t *d = json_object_get(f, "django");
	if (!json_is_object(d))
		return;
	const char *model = cli_json_str(d, "model"), *rel = cli_json_str(d, "relation"),
		   *method = cli_json_str(d, "method"), *field = cli_json_str(d, "field"),
		   *change = cli_json_str(d, "change");
	char buf[2048];
	if (model && rel && method) {
		snprintf(buf, sizeof(buf), "%s.objects.%s(\"%s\")", model, method, rel);
	} else if (change) {
		if (model && field)
			snprintf(buf, sizeof(buf), "%s.%s: %s", model, field, change);
		else if (model)
			snprintf(buf, sizeof(buf), "%s: %s", model, change);
		else
			snprintf(buf, sizeof(buf), "%s", change);
	} else {
		return;
	}
	label(out, "django");
	cli_put_wrapped(out, buf, 2 + LABEL_W, width);
}

static void missing_index_cost(FILE *out, const json_t *f)
{
	double before, after;
	char a[64], b[64];
	bool has_before = cli_json_num(f, "cost_before", &before), has_after = cli_json_num(f, "cost_after", &after);
	label(out, "cost");
	if (has_before && has_after)
		fprintf(out, "%s " ARROW " %s", cli_fmt_num(a, sizeof(a), before), cli_fmt_num(b, sizeof(b), after));
	else if (has_before)
		fprintf(out, "%s now", cli_fmt_num(a, sizeof(a), before));
	else
		fprintf(out, "unknown");
	if (json_is_true(json_object_get(f, "verified")))
		fprintf(out, ", verified with HypoPG\n");
	else if (has_after)
		fprintf(out, ", not verified: with the hypothetical index the plan is not half as costly\n");
	else
		fprintf(out, ", not verified (HypoPG not installed)\n");
}

/* The plan summary of a slow_query: its costliest node and the sequential scans. */
static void slow_plan(FILE *out, const json_t *f, size_t width)
{
	const json_t *plan = json_object_get(f, "plan");
	if (!json_is_object(plan))
		return;
	const json_t *node = json_object_get(plan, "costliest_node");
	char buf[2048], a[64], b[64];
	double v;
	if (json_is_object(node)) {
		const char *type = cli_json_str(node, "node_type"), *rel = cli_json_str(node, "relation"),
			   *filter = cli_json_str(node, "filter");
		size_t o = (size_t)snprintf(buf, sizeof(buf), "%s%s%s", type ? type : "?", rel ? " on " : "",
					    rel ? rel : "");
		if (cli_json_num(node, "cost", &v) && o < sizeof(buf))
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, " (cost %s", cli_fmt_num(a, sizeof(a), v));
		else if (o < sizeof(buf))
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, " (");
		if (cli_json_num(node, "plan_rows", &v) && o < sizeof(buf))
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, ", %s rows estimated",
					      cli_fmt_num(b, sizeof(b), v));
		if (cli_json_num(node, "actual_rows", &v) && o < sizeof(buf))
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, ", %s actual", cli_fmt_num(b, sizeof(b), v));
		if (o < sizeof(buf))
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, ")");
		if (filter && o < sizeof(buf))
			snprintf(buf + o, sizeof(buf) - o, ", filter %s", filter);
		label(out, "plan");
		cli_put_wrapped(out, buf, 2 + LABEL_W, width);
	} else if (cli_json_num(plan, "total_cost", &v)) {
		label(out, "plan");
		fprintf(out, "total cost %s\n", cli_fmt_num(a, sizeof(a), v));
	}
}

static void render_one(FILE *out, const json_t *f, int width)
{
	const char *kind = cli_json_str(f, "kind"), *query = cli_json_str(f, "query"), *fix = cli_json_str(f, "fix"),
		   *sql = cli_json_str(f, "sql"), *grouping = cli_json_str(f, "grouping");
	size_t w = width > 2 + LABEL_W + 10 ? (size_t)width : 2 + LABEL_W + 10;
	if (!kind)
		kind = "";
	header(out, f);
	if (query) {
		label(out, "query");
		cli_put_clipped(out, query, w - 2 - LABEL_W);
		fputc('\n', out);
	}
	if (strcmp(kind, "slow_query") == 0)
		slow_plan(out, f, w);
	if (fix) {
		label(out, "fix");
		cli_put_wrapped(out, fix, 2 + LABEL_W, w);
	}
	if (strcmp(kind, "n_plus_one") == 0) {
		django_change(out, f, w);
	} else {
		if (sql) {
			label(out, "sql");
			cli_put_wrapped(out, sql, 2 + LABEL_W, w);
		}
		django_change(out, f, w);
		if (strcmp(kind, "missing_index") == 0)
			missing_index_cost(out, f);
	}
	if (grouping && strcmp(grouping, "idle_gap") == 0) {
		label(out, "note");
		cli_put_wrapped(out,
				"requests were told apart by idle gaps (the queries carry no request_id tag: "
				"add pgmedic_django's middleware for exact figures)",
				2 + LABEL_W, w);
	}
	fputc('\n', out);
}

/* "6 findings: 2 N+1, 1 duplicate query, ...; 2.4 s wasted" — kinds in the order
 * they first appear (most wasted time first); wrapped to the width. */
static void summary(FILE *out, json_t **v, size_t n, size_t width)
{
	const char *kinds[32];
	size_t counts[32], nk = 0, other = 0;
	double wasted = 0;
	for (size_t i = 0; i < n; i++) {
		const char *k = cli_json_str(v[i], "kind");
		wasted += num_or(v[i], "time_wasted_ms", 0);
		size_t j = 0;
		while (j < nk && strcmp(kinds[j], k ? k : "") != 0)
			j++;
		if (j == nk) {
			if (nk == sizeof(kinds) / sizeof(kinds[0])) {
				other++;
				continue;
			}
			kinds[nk] = k ? k : "";
			counts[nk++] = 0;
		}
		counts[j]++;
	}
	char line[4096], a[64];
	size_t o = (size_t)snprintf(line, sizeof(line), "%zu finding%s", n, n == 1 ? "" : "s");
	for (size_t j = 0; j < nk && o < sizeof(line); j++)
		o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%zu %s", j ? ", " : ": ", counts[j],
				      kind_label(kinds[j][0] ? kinds[j] : NULL));
	if (other && o < sizeof(line))
		o += (size_t)snprintf(line + o, sizeof(line) - o, ", %zu other", other);
	if (o < sizeof(line))
		snprintf(line + o, sizeof(line) - o, "; %s wasted", fmt_ms(a, sizeof(a), wasted));
	cli_put_wrapped(out, line, 2, width);
}

int cli_report(int argc, char **argv)
{
	static const struct option opts[] = {
		{"http", required_argument, NULL, 'u'},
		{"limit", required_argument, NULL, 'l'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *url = NULL;
	long limit = 20;
	bool as_json = false;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'l':
			if (!cli_parse_int(optarg, 0, 100000000, &limit))
				return cli_usage_error("report", "invalid --limit '%s' (a number, 0 for all)", optarg);
			break;
		case 'j':
			as_json = true;
			break;
		case 'h':
			cli_report_usage(stdout);
			return CLI_OK;
		case ':':
			return cli_usage_error("report", "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error("report", "unknown option '%s'", argv[optind - 1]);
		}
	}
	struct cli_url u;
	int rc = cli_http_args("report", optind, argc, argv, url, &u);
	if (rc != CLI_OK)
		return rc;
	char err[1024];

	int ret = CLI_ERR;
	json_t **v = NULL;
	json_t *doc = cli_get_json(&u, "/api/findings", err, sizeof(err));
	if (!doc)
		goto fail;
	json_t *arr = json_object_get(doc, "findings");
	if (!json_is_array(arr)) {
		snprintf(err, sizeof(err), "/api/findings has no \"findings\" array");
		goto fail;
	}
	if (as_json) {
		/* as it came (re-indented): consumers get exactly the endpoint's contract */
		if (cli_put_json(doc, err, sizeof(err)) < 0)
			goto fail;
		ret = CLI_OK;
		goto done;
	}
	size_t n = 0, total = json_array_size(arr);
	v = calloc(total ? total : 1, sizeof(*v));
	if (!v) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < total; i++)
		if (json_is_object(json_array_get(arr, i)))
			v[n++] = json_array_get(arr, i);
	qsort(v, n, sizeof(*v), by_waste);

	int width = cli_term_width();
	if (n == 0)
		printf("no findings: pgmedic has not seen a problem in the traffic it profiled so far\n");
	size_t shown = limit && (size_t)limit < n ? (size_t)limit : n;
	for (size_t i = 0; i < shown; i++)
		render_one(stdout, v[i], width);
	if (shown < n)
		printf(ELLIPSIS " %zu more (--limit 0 shows all)\n\n", n - shown);
	summary(stdout, v, n, (size_t)width);
	if (cli_stdout_done(err, sizeof(err)) < 0)
		goto fail;
	ret = CLI_OK;
	goto done;
fail:
	fprintf(stderr, "pgmedic report: %s\n", err);
done:
	free(v);
	json_decref(doc);
	return ret;
}
