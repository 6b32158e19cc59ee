/* top.c - `pgmedic top`: a refreshing table of the busiest query fingerprints of
 * a running pgmedic, read from GET /api/queries.  Calls/s is the difference in
 * calls between two refreshes over the time between them (taken_at of each). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static const char *const sort_keys[] = {"total_time", "calls", "mean", "p95", "errors"};

void cli_top_usage(FILE *f)
{
	fprintf(f,
		"Usage: pgmedic top --http URL [OPTIONS]\n"
		"Shows the query fingerprints of a running pgmedic, busiest first, refreshed like top(1).\n\n"
		"  --http URL          pgmedic's HTTP endpoint, e.g. http://127.0.0.1:9187 (required)\n"
		"  --sort KEY          total_time (default), calls, mean, p95 or errors\n"
		"  --limit N           rows per refresh (default: terminal height, or 20 when not a\n"
		"                      terminal; 0: all)\n"
		"  --interval SECONDS  time between refreshes (default 2)\n"
		"  --count N           exit after N refreshes (default: run until interrupted)\n"
		"  -h, --help          this text\n\n"
		"Columns: CALLS, CALLS/S (since the previous refresh), TOTAL_MS, MEAN_MS, P95_MS,\n"
		"ROWS, ERRORS, WAIT_MS (pool wait), ROUTE (the route that spent most time in the\n"
		"query) and QUERY (cut to the terminal width: TIOCGWINSZ, else $COLUMNS, else 120).\n"
		"On a terminal the screen is cleared before each refresh; otherwise frames are\n"
		"printed one after another, separated by a blank line.\n");
}

static void term_size(int *cols, int *rows)
{
	struct winsize ws;
	*cols = 0;
	*rows = 0;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
		*cols = ws.ws_col;
		*rows = ws.ws_row;
	}
	long v;
	const char *env = getenv("COLUMNS");
	if (*cols <= 0 && env && cli_parse_int(env, 1, 100000, &v))
		*cols = (int)v;
	if (*cols <= 0)
		*cols = 120;
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0)
		;
}

/* Rows are keyed by fingerprint, database and user: the same statement in two
 * databases is two rows. */
static void row_key(const json_t *q, char *buf, size_t len)
{
	const char *fp = cli_json_str(q, "fingerprint"), *db = cli_json_str(q, "database"),
		   *user = cli_json_str(q, "user");
	snprintf(buf, len, "%s\x1f%s\x1f%s", fp ? fp : "", db ? db : "", user ? user : "");
}

/* The route that spent the most time in this query, or "-". */
static const char *top_route(const json_t *q)
{
	const char *best = NULL;
	double best_ms = -1;
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(q, "routes"), i, r)
	{
		double ms = 0;
		const char *name = cli_json_str(r, "route");
		(void)cli_json_num(r, "total_ms", &ms);
		if (name && ms > best_ms) {
			best = name;
			best_ms = ms;
		}
	}
	return best ? best : "-";
}

struct top_state {
	json_t *prev;        /* row key -> calls at the previous refresh */
	double prev_calls;   /* totals.calls then */
	double prev_taken;   /* taken_at then (server clock) */
	double prev_mono;    /* our clock then */
	bool have_prev;
};

#define ROUTE_MIN 16
#define ROUTE_MAX 40
#define QUERY_MIN 10

static void render(FILE *out, const json_t *doc, struct top_state *st, const char *url, const char *sort,
		   double interval, int width)
{
	const json_t *totals = json_object_get(doc, "totals");
	double taken = 0, now = mono_now(), calls = 0, errors = 0, total_ms = 0, fps = 0, evicted = 0;
	(void)cli_json_num(doc, "taken_at", &taken);
	(void)cli_json_num(totals, "calls", &calls);
	(void)cli_json_num(totals, "errors", &errors);
	(void)cli_json_num(totals, "total_ms", &total_ms);
	(void)cli_json_num(totals, "fingerprints", &fps);
	(void)cli_json_num(totals, "evicted", &evicted);
	double elapsed = 0;
	if (st->have_prev) {
		elapsed = taken > 0 && st->prev_taken > 0 ? taken - st->prev_taken : 0;
		if (elapsed <= 0)
			elapsed = now - st->prev_mono;
	}

	char when[32] = "-";
	time_t t = taken > 0 ? (time_t)taken : time(NULL);
	struct tm tm;
	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(out, "pgmedic top - %s - %s - sort %s, every %gs\n", url, when, sort, interval);
	fprintf(out, "fingerprints %.0f (evicted %.0f)  calls %.0f", fps, evicted, calls);
	if (st->have_prev && elapsed > 0)
		fprintf(out, " (%.1f/s)", (calls - st->prev_calls) / elapsed);
	fprintf(out, "  errors %.0f  total %.1f ms\n\n", errors, total_ms);

	/* Fixed numeric columns; the route column grows a little on wide terminals and
	 * the query takes the rest (at least QUERY_MIN columns, even past the width). */
	int route_w = ROUTE_MIN + (width > 120 ? (width - 120) / 4 : 0);
	if (route_w > ROUTE_MAX)
		route_w = ROUTE_MAX;
	fprintf(out, "%8s %8s %10s %8s %8s %9s %6s %8s %-*s ", "CALLS", "CALLS/S", "TOTAL_MS", "MEAN_MS", "P95_MS",
		"ROWS", "ERRORS", "WAIT_MS", route_w, "ROUTE");
	int used = 8 + 8 + 10 + 8 + 8 + 9 + 6 + 8 + route_w + 9;
	size_t qw = width >= used + QUERY_MIN ? (size_t)(width - used) : QUERY_MIN;
	cli_put_clipped(out, "QUERY", qw);
	fputc('\n', out);

	json_t *seen = json_object();
	size_t i;
	json_t *q;
	json_array_foreach(json_object_get(doc, "queries"), i, q)
	{
		char key[512], rate[32] = "-";
		double c = 0, tot = 0, mean = 0, p95 = 0, rows = 0, errs = 0, wait = 0, first = 0;
		(void)cli_json_num(q, "calls", &c);
		(void)cli_json_num(q, "total_ms", &tot);
		(void)cli_json_num(q, "mean_ms", &mean);
		(void)cli_json_num(q, "p95_ms", &p95);
		(void)cli_json_num(q, "rows", &rows);
		(void)cli_json_num(q, "errors", &errs);
		(void)cli_json_num(q, "wait_ms", &wait);
		(void)cli_json_num(q, "first_seen", &first);
		row_key(q, key, sizeof(key));
		json_object_set_new(seen, key, json_real(c));
		if (st->have_prev && elapsed > 0) {
			json_t *pc = json_object_get(st->prev, key);
			if (json_is_number(pc))
				snprintf(rate, sizeof(rate), "%.1f", (c - json_number_value(pc)) / elapsed);
			else if (first >= st->prev_taken) /* new since the last refresh */
				snprintf(rate, sizeof(rate), "%.1f", c / elapsed);
			/* else: it was below the --limit cut last time; its rate is unknown */
		}
		fprintf(out, "%8.0f %8s %10.1f %8.2f %8.2f %9.0f %6.0f %8.1f ", c, rate, tot, mean, p95, rows, errs, wait);
		size_t rw = cli_put_clipped(out, top_route(q), (size_t)route_w);
		fprintf(out, "%*s ", (int)((size_t)route_w - rw), "");
		const char *text = cli_json_str(q, "query");
		cli_put_clipped(out, text ? text : "?", qw);
		fputc('\n', out);
	}
	if (json_array_size(json_object_get(doc, "queries")) == 0)
		fprintf(out, "(no queries recorded yet)\n");
	json_decref(st->prev);
	st->prev = seen;
	st->prev_calls = calls;
	st->prev_taken = taken;
	st->prev_mono = now;
	st->have_prev = true;
}

int cli_top(int argc, char **argv)
{
	static const struct option opts[] = {
		{"http", required_argument, NULL, 'u'},	 {"sort", required_argument, NULL, 's'},
		{"limit", required_argument, NULL, 'l'},	 {"interval", required_argument, NULL, 'i'},
		{"count", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *url = NULL, *sort = "total_time";
	long limit = -1, count = 0;
	double interval = 2;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 's': {
			bool ok = false;
			for (size_t k = 0; k < sizeof(sort_keys) / sizeof(sort_keys[0]); k++)
				ok |= strcmp(optarg, sort_keys[k]) == 0;
			if (!ok)
				return cli_usage_error("top", "invalid --sort '%s' (total_time, calls, mean, p95 or errors)",
						       optarg);
			sort = optarg;
			break;
		}
		case 'l':
			if (!cli_parse_int(optarg, 0, 1000000, &limit))
				return cli_usage_error("top", "invalid --limit '%s' (a number, 0 for all)", optarg);
			break;
		case 'i':
			if (!cli_parse_double(optarg, 0.05, 86400, &interval))
				return cli_usage_error("top", "invalid --interval '%s' (seconds, at least 0.05)", optarg);
			break;
		case 'c':
			if (!cli_parse_int(optarg, 1, 1000000000, &count))
				return cli_usage_error("top", "invalid --count '%s' (a positive number)", optarg);
			break;
		case 'h':
			cli_top_usage(stdout);
			return CLI_OK;
		case ':':
			return cli_usage_error("top", "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error("top", "unknown option '%s'", argv[optind - 1]);
		}
	}
	struct cli_url u;
	int rc = cli_http_args("top", optind, argc, argv, url, &u);
	if (rc != CLI_OK)
		return rc;
	char err[1024];

	bool tty = isatty(STDOUT_FILENO);
	struct top_state st = {0};
	for (long frame = 0; count == 0 || frame < count; frame++) {
		if (frame > 0)
			sleep_s(interval);
		int cols, rows;
		term_size(&cols, &rows);
		long lim = limit;
		if (lim < 0)
			lim = tty && rows > 8 ? rows - 5 : 20;
		char path[128];
		snprintf(path, sizeof(path), "/api/queries?sort=%s&limit=%ld", sort, lim);
		json_t *doc = cli_get_json(&u, path, err, sizeof(err));
		if (!doc) {
			fprintf(stderr, "pgmedic top: %s\n", err);
			json_decref(st.prev);
			return CLI_ERR;
		}
		/* The frame is built in memory and written at once, so a terminal never
		 * shows a cleared screen while the table is being printed. */
		char *text = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&text, &len);
		if (!mem) {
			fprintf(stderr, "pgmedic top: out of memory\n");
			json_decref(doc);
			json_decref(st.prev);
			return CLI_ERR;
		}
		if (tty)
			fputs("\033[H\033[2J", mem);
		else if (frame > 0)
			fputc('\n', mem);
		render(mem, doc, &st, url, sort, interval, cols);
		json_decref(doc);
		fclose(mem);
		fwrite(text, 1, len, stdout);
		free(text);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			json_decref(st.prev);
			return CLI_ERR; /* e.g. piped into head(1), which closed the pipe */
		}
	}
	json_decref(st.prev);
	return CLI_OK;
}
