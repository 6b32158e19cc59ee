/* compare.c - `pgmedic compare BEFORE.json AFTER.json`: the "measure before and
 * after" step.  Routes are matched by route, query statistics by fingerprint;
 * everything is sorted by how much its total time changed, biggest first.
 *
 * A snapshot's queries may hold one fingerprint several times (one entry per
 * database and user): those are merged (counts and times summed, mean recomputed,
 * p95 taken as the largest, an upper bound).  Routes are merged the same way. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

void cli_compare_usage(FILE *f)
{
	fprintf(f,
		"Usage: pgmedic compare BEFORE.json AFTER.json [--limit N] [--json]\n"
		"Compares two `pgmedic snapshot` files taken before and after a change.\n\n"
		"  --limit N   rows per section (default 20 for text, all for --json; 0: all)\n"
		"  --json      machine-readable output\n"
		"  -h, --help  this text\n\n"
		"Per route (matched by route): requests, queries per request, time per request\n"
		"(mean and p95) before -> after, and calls per request of each of its fingerprints.\n"
		"Per fingerprint: calls, mean and p95 time before -> after with the change in %%;\n"
		"fingerprints found in only one file are listed as new or gone.  Each section is\n"
		"sorted by the change in total time, largest first.\n");
}

/* ------------------------------------------------------------ loading */

struct fp_row { /* one fingerprint in /api/queries */
	const char *fp, *query;
	double calls, errors, rows, total_ms, mean_ms, p95_ms;
	bool has_p95;
};

struct rfp_row { /* one fingerprint inside a route */
	const char *fp, *query;
	double calls, total_ms, cpr;
	bool has_cpr;
};

struct route_row {
	const char *route, *source;
	double requests, calls, total_ms, qpr, tpr, p95;
	bool has_qpr, has_tpr, has_p95;
	/* The endpoint lists only a route's top fingerprints: when the listed calls add
	 * up to the route's calls the list is complete and an absent fingerprint had
	 * 0 calls there; otherwise its figures are unknown. */
	bool fps_complete;
	struct rfp_row *fps;
	size_t nfps;
};

struct snap {
	const char *path;
	json_t *root; /* owns every string above */
	double taken_at;
	const char *url;
	struct fp_row *fps;
	size_t nfps;
	struct route_row *routes;
	size_t nroutes;
};

static void snap_free(struct snap *s)
{
	for (size_t i = 0; i < s->nroutes; i++)
		free(s->routes[i].fps);
	free(s->routes);
	free(s->fps);
	json_decref(s->root);
	memset(s, 0, sizeof(*s));
}

static int load_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int load_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* A required number: present and numeric (and not negative: every field is a count or a time). */
static int need_num(const json_t *o, const char *key, double *out, const char *where, size_t idx, char *err,
		    size_t errlen)
{
	if (!cli_json_num(o, key, out) || *out < 0 || !isfinite(*out))
		return load_err(err, errlen, "%s[%zu]: \"%s\" must be a non-negative number", where, idx, key);
	return 0;
}

/* An optional number: absent or null gives *has = false; anything else must be a number. */
static int opt_num(const json_t *o, const char *key, double *out, bool *has, const char *where, size_t idx,
		   char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	*has = false;
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v) || json_number_value(v) < 0)
		return load_err(err, errlen, "%s[%zu]: \"%s\" must be a non-negative number or null", where, idx, key);
	*out = json_number_value(v);
	*has = true;
	return 0;
}

static int cmp_fp(const void *a, const void *b)
{
	return strcmp(((const struct fp_row *)a)->fp, ((const struct fp_row *)b)->fp);
}
static int cmp_rfp(const void *a, const void *b)
{
	return strcmp(((const struct rfp_row *)a)->fp, ((const struct rfp_row *)b)->fp);
}
static int cmp_route(const void *a, const void *b)
{
	return strcmp(((const struct route_row *)a)->route, ((const struct route_row *)b)->route);
}

static void merge_fps(struct fp_row *v, size_t *n)
{
	if (*n == 0)
		return;
	qsort(v, *n, sizeof(*v), cmp_fp);
	size_t w = 0;
	for (size_t r = 1; r < *n; r++) {
		struct fp_row *d = &v[w], *s = &v[r];
		if (strcmp(d->fp, s->fp) != 0) {
			v[++w] = *s;
			continue;
		}
		d->calls += s->calls;
		d->errors += s->errors;
		d->rows += s->rows;
		d->total_ms += s->total_ms;
		d->mean_ms = d->calls > 0 ? d->total_ms / d->calls : 0;
		if (s->has_p95 && (!d->has_p95 || s->p95_ms > d->p95_ms))
			d->p95_ms = s->p95_ms, d->has_p95 = true;
	}
	*n = w + 1;
}

/* Route fingerprints: sorted and merged; calls per request recomputed when merged. */
static void merge_rfps(struct rfp_row *v, size_t *n, double requests)
{
	if (*n == 0)
		return;
	qsort(v, *n, sizeof(*v), cmp_rfp);
	size_t w = 0;
	for (size_t r = 1; r < *n; r++) {
		struct rfp_row *d = &v[w], *s = &v[r];
		if (strcmp(d->fp, s->fp) != 0) {
			v[++w] = *s;
			continue;
		}
		d->calls += s->calls;
		d->total_ms += s->total_ms;
		d->has_cpr = requests > 0;
		d->cpr = requests > 0 ? d->calls / requests : 0;
	}
	*n = w + 1;
}

static int append_rfps(struct route_row *rt, const json_t *arr, size_t ridx, char *err, size_t errlen)
{
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return load_err(err, errlen, "routes[%zu]: \"fingerprints\" must be an array", ridx);
	size_t n = json_array_size(arr);
	if (n == 0)
		return 0;
	struct rfp_row *v = realloc(rt->fps, (rt->nfps + n) * sizeof(*v));
	if (!v)
		return load_err(err, errlen, "out of memory");
	rt->fps = v;
	char where[64];
	snprintf(where, sizeof(where), "routes[%zu].fingerprints", ridx);
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(arr, i);
		struct rfp_row *f = &rt->fps[rt->nfps];
		memset(f, 0, sizeof(*f));
		if (!json_is_object(o) || !(f->fp = cli_json_str(o, "fingerprint")))
			return load_err(err, errlen, "%s[%zu]: needs a string \"fingerprint\"", where, i);
		f->query = cli_json_str(o, "query");
		if (need_num(o, "calls", &f->calls, where, i, err, errlen) < 0 ||
		    need_num(o, "total_ms", &f->total_ms, where, i, err, errlen) < 0 ||
		    opt_num(o, "calls_per_request", &f->cpr, &f->has_cpr, where, i, err, errlen) < 0)
			return -1;
		if (!f->has_cpr && rt->requests > 0) {
			f->cpr = f->calls / rt->requests;
			f->has_cpr = true;
		}
		rt->nfps++;
	}
	return 0;
}

static int load_routes(struct snap *s, const json_t *arr, char *err, size_t errlen)
{
	size_t n = json_array_size(arr);
	s->routes = calloc(n ? n : 1, sizeof(*s->routes));
	if (!s->routes)
		return load_err(err, errlen, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(arr, i);
		struct route_row *r = &s->routes[s->nroutes];
		if (!json_is_object(o) || !(r->route = cli_json_str(o, "route")))
			return load_err(err, errlen, "routes[%zu]: needs a string \"route\"", i);
		r->source = cli_json_str(o, "source");
		s->nroutes++; /* counted before the checks so snap_free frees its fingerprints */
		if (need_num(o, "requests", &r->requests, "routes", i, err, errlen) < 0 ||
		    need_num(o, "calls", &r->calls, "routes", i, err, errlen) < 0 ||
		    need_num(o, "total_ms", &r->total_ms, "routes", i, err, errlen) < 0 ||
		    opt_num(o, "queries_per_request", &r->qpr, &r->has_qpr, "routes", i, err, errlen) < 0 ||
		    opt_num(o, "time_per_request_ms", &r->tpr, &r->has_tpr, "routes", i, err, errlen) < 0 ||
		    opt_num(o, "p95_ms", &r->p95, &r->has_p95, "routes", i, err, errlen) < 0 ||
		    append_rfps(r, json_object_get(o, "fingerprints"), i, err, errlen) < 0)
			return -1;
		if (r->requests > 0 && !r->has_qpr)
			r->qpr = r->calls / r->requests, r->has_qpr = true;
		if (r->requests > 0 && !r->has_tpr)
			r->tpr = r->total_ms / r->requests, r->has_tpr = true;
	}
	if (s->nroutes == 0)
		return 0;
	qsort(s->routes, s->nroutes, sizeof(*s->routes), cmp_route);
	size_t w = 0;
	for (size_t r = 1; r < s->nroutes; r++) {
		struct route_row *d = &s->routes[w], *x = &s->routes[r];
		if (strcmp(d->route, x->route) != 0) {
			s->routes[++w] = *x;
			continue;
		}
		d->requests += x->requests;
		d->calls += x->calls;
		d->total_ms += x->total_ms;
		d->has_qpr = d->has_tpr = d->requests > 0;
		d->qpr = d->requests > 0 ? d->calls / d->requests : 0;
		d->tpr = d->requests > 0 ? d->total_ms / d->requests : 0;
		if (x->has_p95 && (!d->has_p95 || x->p95 > d->p95))
			d->p95 = x->p95, d->has_p95 = true;
		struct rfp_row *v = realloc(d->fps, (d->nfps + x->nfps + 1) * sizeof(*v));
		if (!v) {
			s->nroutes = w + 1 + (s->nroutes - r); /* keep the rest freeable */
			memmove(&s->routes[w + 1], x, (s->nroutes - w - 1) * sizeof(*x));
			return load_err(err, errlen, "out of memory");
		}
		if (x->nfps)
			memcpy(v + d->nfps, x->fps, x->nfps * sizeof(*v));
		d->fps = v;
		d->nfps += x->nfps;
		free(x->fps);
		x->fps = NULL;
		x->nfps = 0;
		for (size_t k = 0; k < d->nfps; k++) /* the merged route's requests changed */
			d->fps[k].has_cpr = false;
	}
	s->nroutes = w + 1;
	for (size_t i = 0; i < s->nroutes; i++) {
		struct route_row *r = &s->routes[i];
		double listed = 0;
		for (size_t k = 0; k < r->nfps; k++)
			listed += r->fps[k].calls;
		r->fps_complete = fabs(listed - r->calls) < 0.5;
		merge_rfps(r->fps, &r->nfps, r->requests);
		for (size_t k = 0; k < r->nfps; k++)
			if (!r->fps[k].has_cpr && r->requests > 0)
				r->fps[k].cpr = r->fps[k].calls / r->requests, r->fps[k].has_cpr = true;
	}
	return 0;
}

static int load_queries(struct snap *s, const json_t *arr, char *err, size_t errlen)
{
	size_t n = json_array_size(arr);
	s->fps = calloc(n ? n : 1, sizeof(*s->fps));
	if (!s->fps)
		return load_err(err, errlen, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(arr, i);
		struct fp_row *f = &s->fps[i];
		bool has;
		if (!json_is_object(o) || !(f->fp = cli_json_str(o, "fingerprint")))
			return load_err(err, errlen, "queries[%zu]: needs a string \"fingerprint\"", i);
		f->query = cli_json_str(o, "query");
		if (need_num(o, "calls", &f->calls, "queries", i, err, errlen) < 0 ||
		    need_num(o, "total_ms", &f->total_ms, "queries", i, err, errlen) < 0 ||
		    opt_num(o, "errors", &f->errors, &has, "queries", i, err, errlen) < 0 ||
		    opt_num(o, "rows", &f->rows, &has, "queries", i, err, errlen) < 0 ||
		    opt_num(o, "mean_ms", &f->mean_ms, &has, "queries", i, err, errlen) < 0 ||
		    opt_num(o, "p95_ms", &f->p95_ms, &f->has_p95, "queries", i, err, errlen) < 0)
			return -1;
		if (!has)
			f->mean_ms = f->calls > 0 ? f->total_ms / f->calls : 0;
	}
	s->nfps = n;
	merge_fps(s->fps, &s->nfps);
	return 0;
}

static int snap_load(struct snap *s, const char *path, char *err, size_t errlen)
{
	char inner[900];
	memset(s, 0, sizeof(*s));
	s->path = path;
	json_error_t je;
	FILE *f = fopen(path, "r");
	if (!f)
		return load_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
	s->root = json_loadf(f, 0, &je);
	fclose(f);
	if (!s->root)
		return load_err(err, errlen, "%s is not valid JSON: line %d, column %d: %s", path, je.line, je.column,
				je.text);
	json_t *ver = json_object_get(s->root, "pgmedic_snapshot");
	if (!json_is_object(s->root) || !json_is_integer(ver))
		return load_err(err, errlen, "%s is not a pgmedic snapshot (no \"pgmedic_snapshot\" version)", path);
	if (json_integer_value(ver) != 1)
		return load_err(err, errlen, "%s: snapshot version %lld is not supported (this pgmedic reads version 1)",
				path, (long long)json_integer_value(ver));
	json_t *q = json_object_get(s->root, "queries"), *r = json_object_get(s->root, "routes");
	if (!json_is_array(q) || !json_is_array(r))
		return load_err(err, errlen, "%s: \"%s\" must be an array", path, json_is_array(q) ? "routes" : "queries");
	(void)cli_json_num(s->root, "taken_at", &s->taken_at);
	s->url = cli_json_str(s->root, "url");
	if (load_queries(s, q, inner, sizeof(inner)) < 0 || load_routes(s, r, inner, sizeof(inner)) < 0)
		return load_err(err, errlen, "%s: %s", path, inner);
	return 0;
}

/* ------------------------------------------------------------ comparing */

/* One number on both sides; a side is missing when the item is absent there or
 * the value is null (e.g. per-request figures of a route with no requests). */
struct pair {
	double b, a;
	bool hb, ha;
};

static struct pair mkpair(bool hb, double b, bool ha, double a)
{
	struct pair p = {.b = hb ? b : 0, .a = ha ? a : 0, .hb = hb, .ha = ha};
	return p;
}

enum change_kind { CHANGE_ABS, CHANGE_PCT };

/* "B → A (change)" into buf. */
static const char *fmt_pair(char *buf, size_t len, struct pair p, enum change_kind k)
{
	char b[48], a[48], c[64] = "";
	if (!p.hb && !p.ha) {
		snprintf(buf, len, "-");
		return buf;
	}
	snprintf(b, sizeof(b), "%s", p.hb ? cli_fmt_num(c, sizeof(c), p.b) : "-");
	snprintf(a, sizeof(a), "%s", p.ha ? cli_fmt_num(c, sizeof(c), p.a) : "-");
	c[0] = '\0';
	if (p.hb && p.ha) {
		double d = p.a - p.b;
		if (k == CHANGE_ABS) {
			char n[48];
			cli_fmt_num(n, sizeof(n), fabs(d));
			snprintf(c, sizeof(c), " (%s%s)", d > 0 ? "+" : d < 0 ? "-" : "", n);
		} else if (d == 0) {
			snprintf(c, sizeof(c), " (0%%)");
		} else if (p.b > 0) {
			snprintf(c, sizeof(c), " (%+.1f%%)", d / p.b * 100);
		} else {
			snprintf(c, sizeof(c), " (new)"); /* from 0: no percentage */
		}
	}
	snprintf(buf, len, "%s \xe2\x86\x92 %s%s", b, a, c);
	return buf;
}

/* Whole numbers as JSON integers (counts stay counts), others as reals. */
static json_t *num_json(double v)
{
	if (fabs(v) < 9e15 && v == floor(v))
		return json_integer((json_int_t)v);
	return json_real(v);
}

static json_t *pair_json(struct pair p)
{
	json_t *o = json_object();
	json_object_set_new(o, "before", p.hb ? num_json(p.b) : json_null());
	json_object_set_new(o, "after", p.ha ? num_json(p.a) : json_null());
	json_object_set_new(o, "change", p.hb && p.ha ? num_json(p.a - p.b) : json_null());
	json_object_set_new(o, "change_pct", p.hb && p.ha && p.b > 0 ? json_real((p.a - p.b) / p.b * 100) : json_null());
	return o;
}

/* Items of one section, matched by key: b or a may be NULL (new / gone). */
struct match {
	const void *b, *a;
	const char *key;
	double delta; /* |total_ms after - total_ms before| */
};

static int cmp_match(const void *x, const void *y)
{
	const struct match *m = x, *n = y;
	if (m->delta != n->delta)
		return m->delta < n->delta ? 1 : -1;
	return strcmp(m->key, n->key);
}

/* Merge-join of two arrays sorted by key.  Returns a malloc'd array (*n items). */
static struct match *join(const void *bv, size_t nb, const void *av, size_t na, size_t size, size_t key_off,
			  size_t total_off, size_t *n)
{
	struct match *m = calloc(nb + na + 1, sizeof(*m));
	if (!m)
		return NULL;
	size_t i = 0, j = 0, k = 0;
#define KEY(base, idx) (*(const char *const *)((const char *)(base) + (idx) * size + key_off))
#define TOT(p) (*(const double *)((const char *)(p) + total_off))
	while (i < nb || j < na) {
		int c = i >= nb ? 1 : j >= na ? -1 : strcmp(KEY(bv, i), KEY(av, j));
		const void *b = c <= 0 ? (const char *)bv + i * size : NULL;
		const void *a = c >= 0 ? (const char *)av + j * size : NULL;
		m[k].b = b;
		m[k].a = a;
		m[k].key = b ? KEY(bv, i) : KEY(av, j);
		m[k].delta = fabs((a ? TOT(a) : 0) - (b ? TOT(b) : 0));
		k++;
		if (c <= 0)
			i++;
		if (c >= 0)
			j++;
	}
#undef KEY
#undef TOT
	qsort(m, k, sizeof(*m), cmp_match);
	*n = k;
	return m;
}

/* ------------------------------------------------------------ text tables */

#define MAXCOLS 8

struct table {
	size_t ncols;
	const char *head[MAXCOLS];
	char **cells; /* nrows * ncols, malloc'd strings */
	size_t nrows;
	bool clip_last; /* the last column (query text) is cut to the line width */
};

static void table_add(struct table *t, ...)
{
	char **c = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(*c));
	if (!c)
		return; /* out of memory: the row is dropped, the rest still prints */
	t->cells = c;
	va_list ap;
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);
		c[t->nrows * t->ncols + i] = strdup(s ? s : "");
	}
	va_end(ap);
	t->nrows++;
}

static void table_print(struct table *t, FILE *out, const char *indent, int width)
{
	size_t w[MAXCOLS] = {0};
	for (size_t i = 0; i < t->ncols; i++) {
		w[i] = cli_utf8_width(t->head[i]);
		for (size_t r = 0; r < t->nrows; r++) {
			const char *s = t->cells[r * t->ncols + i];
			size_t cw = s ? cli_utf8_width(s) : 0;
			if (cw > w[i])
				w[i] = cw;
		}
	}
	size_t used = strlen(indent);
	for (size_t i = 0; i + 1 < t->ncols; i++)
		used += w[i] + 2;
	size_t last = (int)used + 20 < width ? (size_t)width - used : 20;
	for (size_t r = 0; r <= t->nrows; r++) {
		fputs(indent, out);
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = r == 0 ? t->head[i] : t->cells[(r - 1) * t->ncols + i];
			if (!s)
				s = "";
			if (i + 1 == t->ncols) {
				if (t->clip_last)
					cli_put_clipped(out, s, last);
				else
					fputs(s, out);
			} else {
				fputs(s, out);
				fprintf(out, "%*s", (int)(w[i] - cli_utf8_width(s) + 2), "");
			}
		}
		fputc('\n', out);
	}
	for (size_t k = 0; k < t->nrows * t->ncols; k++)
		free(t->cells[k]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = 0;
}

static int out_width(void)
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

static void more_line(FILE *out, const char *indent, size_t shown, size_t total)
{
	if (shown < total)
		fprintf(out, "%s\xe2\x80\xa6 %zu more (--limit 0 shows all)\n", indent, total - shown);
}

static void describe(FILE *out, const char *label, const struct snap *s)
{
	char when[32] = "unknown time";
	time_t t = (time_t)s->taken_at;
	struct tm tm;
	if (s->taken_at > 0 && localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(out, "%s %s (taken %s%s%s)\n", label, s->path, when, s->url ? " from " : "", s->url ? s->url : "");
}

static struct pair route_pair(const struct route_row *b, const struct route_row *a, size_t off, size_t has_off)
{
	bool hb = b && (has_off == (size_t)-1 || *(const bool *)((const char *)b + has_off));
	bool ha = a && (has_off == (size_t)-1 || *(const bool *)((const char *)a + has_off));
	return mkpair(hb, hb ? *(const double *)((const char *)b + off) : 0, ha,
		      ha ? *(const double *)((const char *)a + off) : 0);
}

#define RP(b, a, field) route_pair(b, a, offsetof(struct route_row, field), (size_t)-1)
#define RPH(b, a, field, has) route_pair(b, a, offsetof(struct route_row, field), offsetof(struct route_row, has))

struct compare_out {
	struct match *routes, *fps;
	size_t nroutes, nfps;
	size_t limit; /* 0: all */
};

static size_t lim(size_t n, size_t limit)
{
	return limit && limit < n ? limit : n;
}

static struct pair fp_pair(const struct fp_row *b, const struct fp_row *a, size_t off)
{
	return mkpair(b != NULL, b ? *(const double *)((const char *)b + off) : 0, a != NULL,
		      a ? *(const double *)((const char *)a + off) : 0);
}
#define FP(b, a, field) fp_pair(b, a, offsetof(struct fp_row, field))

static void print_text(FILE *out, const struct snap *sb, const struct snap *sa, struct compare_out *c)
{
	int width = out_width();
	char s1[128], s2[128], s3[128], s4[128], s5[128];
	fprintf(out, "pgmedic compare\n");
	describe(out, "  before:", sb);
	describe(out, "  after: ", sa);

	size_t nr = lim(c->nroutes, c->limit);
	fprintf(out, "\nRoutes: %zu (largest change in total time first)\n", c->nroutes);
	if (c->nroutes == 0)
		fprintf(out, "  (no routes in either snapshot)\n");
	for (size_t i = 0; i < nr; i++) {
		const struct route_row *b = c->routes[i].b, *a = c->routes[i].a;
		const char *status = !b ? "  [new route]" : !a ? "  [gone]" : "";
		const struct route_row *any = a ? a : b;
		fprintf(out, "\n%s%s%s%s%s\n", any->route, any->source ? " (" : "", any->source ? any->source : "",
			any->source ? ")" : "", status);
		struct table t = {.ncols = 2, .head = {"", ""}};
		table_add(&t, "requests", fmt_pair(s1, sizeof(s1), RP(b, a, requests), CHANGE_ABS));
		table_add(&t, "queries per request", fmt_pair(s2, sizeof(s2), RPH(b, a, qpr, has_qpr), CHANGE_ABS));
		table_add(&t, "time per request, mean ms", fmt_pair(s3, sizeof(s3), RPH(b, a, tpr, has_tpr), CHANGE_PCT));
		table_add(&t, "time per request, p95 ms", fmt_pair(s4, sizeof(s4), RPH(b, a, p95, has_p95), CHANGE_PCT));
		table_add(&t, "total ms", fmt_pair(s5, sizeof(s5), RP(b, a, total_ms), CHANGE_PCT));
		/* no header row for this one: print the rows only */
		size_t w0 = 0;
		for (size_t r = 0; r < t.nrows; r++)
			if (cli_utf8_width(t.cells[r * 2]) > w0)
				w0 = cli_utf8_width(t.cells[r * 2]);
		for (size_t r = 0; r < t.nrows; r++) {
			fprintf(out, "  %-*s  %s\n", (int)w0, t.cells[r * 2], t.cells[r * 2 + 1]);
			free(t.cells[r * 2]);
			free(t.cells[r * 2 + 1]);
		}
		free(t.cells);

		size_t nf;
		struct match *m = join(b ? b->fps : NULL, b ? b->nfps : 0, a ? a->fps : NULL, a ? a->nfps : 0,
				       sizeof(struct rfp_row), offsetof(struct rfp_row, fp),
				       offsetof(struct rfp_row, total_ms), &nf);
		if (!m || nf == 0) {
			free(m);
			continue;
		}
		struct table ft = {.ncols = 3, .head = {"FINGERPRINT", "CALLS PER REQUEST", "QUERY"}, .clip_last = true};
		size_t shown = lim(nf, c->limit);
		for (size_t k = 0; k < shown; k++) {
			const struct rfp_row *fb = m[k].b, *fa = m[k].a;
			struct pair p = mkpair(fb && fb->has_cpr, fb ? fb->cpr : 0, fa && fa->has_cpr, fa ? fa->cpr : 0);
			/* a fingerprint the route no longer (or did not yet) run: 0 calls per request there */
			if (!fb && b && b->requests > 0 && b->fps_complete)
				p.hb = true;
			if (!fa && a && a->requests > 0 && a->fps_complete)
				p.ha = true;
			const struct rfp_row *fx = fa ? fa : fb;
			table_add(&ft, m[k].key, fmt_pair(s1, sizeof(s1), p, CHANGE_ABS), fx->query ? fx->query : "?");
		}
		table_print(&ft, out, "    ", width);
		more_line(out, "    ", shown, nf);
		free(m);
	}
	more_line(out, "", nr, c->nroutes);

	/* fingerprints: matched ones, then new and gone */
	size_t nboth = 0, nnew = 0, ngone = 0;
	for (size_t i = 0; i < c->nfps; i++) {
		if (c->fps[i].b && c->fps[i].a)
			nboth++;
		else if (c->fps[i].a)
			nnew++;
		else
			ngone++;
	}
	fprintf(out, "\nQueries in both snapshots: %zu (largest change in total time first)\n", nboth);
	struct table t = {.ncols = 6,
			  .head = {"FINGERPRINT", "CALLS", "MEAN MS", "P95 MS", "TOTAL MS", "QUERY"},
			  .clip_last = true};
	size_t shown = 0;
	for (size_t i = 0; i < c->nfps && shown < lim(nboth, c->limit); i++) {
		const struct fp_row *b = c->fps[i].b, *a = c->fps[i].a;
		if (!b || !a)
			continue;
		struct pair p95 = mkpair(b->has_p95, b->p95_ms, a->has_p95, a->p95_ms);
		table_add(&t, a->fp, fmt_pair(s1, sizeof(s1), FP(b, a, calls), CHANGE_PCT),
			  fmt_pair(s2, sizeof(s2), FP(b, a, mean_ms), CHANGE_PCT), fmt_pair(s3, sizeof(s3), p95, CHANGE_PCT),
			  fmt_pair(s4, sizeof(s4), FP(b, a, total_ms), CHANGE_PCT), a->query ? a->query : "?");
		shown++;
	}
	if (nboth)
		table_print(&t, out, "  ", width);
	more_line(out, "  ", shown, nboth);

	for (int side = 0; side < 2; side++) {
		size_t total = side == 0 ? nnew : ngone;
		fprintf(out, "\n%s: %zu\n", side == 0 ? "New queries (only in AFTER)" : "Gone queries (only in BEFORE)",
			total);
		struct table nt = {.ncols = 6,
				   .head = {"FINGERPRINT", "CALLS", "MEAN MS", "P95 MS", "TOTAL MS", "QUERY"},
				   .clip_last = true};
		shown = 0;
		for (size_t i = 0; i < c->nfps && shown < lim(total, c->limit); i++) {
			const struct fp_row *f = side == 0 ? (c->fps[i].b ? NULL : c->fps[i].a)
							   : (c->fps[i].a ? NULL : c->fps[i].b);
			if (!f)
				continue;
			table_add(&nt, f->fp, cli_fmt_num(s1, sizeof(s1), f->calls), cli_fmt_num(s2, sizeof(s2), f->mean_ms),
				  f->has_p95 ? cli_fmt_num(s3, sizeof(s3), f->p95_ms) : "-",
				  cli_fmt_num(s4, sizeof(s4), f->total_ms), f->query ? f->query : "?");
			shown++;
		}
		if (total)
			table_print(&nt, out, "  ", width);
		more_line(out, "  ", shown, total);
	}
}

static json_t *side_json(const struct snap *s)
{
	return json_pack("{s:s, s:o, s:o}", "file", s->path, "taken_at", s->taken_at > 0 ? json_real(s->taken_at) : json_null(),
			 "url", s->url ? json_string(s->url) : json_null());
}

static json_t *opt_str(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *build_json(const struct snap *sb, const struct snap *sa, struct compare_out *c)
{
	json_t *root = json_object(), *routes = json_array(), *both = json_array(), *nw = json_array(),
	       *gone = json_array();
	json_object_set_new(root, "before", side_json(sb));
	json_object_set_new(root, "after", side_json(sa));
	for (size_t i = 0; i < lim(c->nroutes, c->limit); i++) {
		const struct route_row *b = c->routes[i].b, *a = c->routes[i].a, *any = a ? a : b;
		json_t *r = json_object();
		json_object_set_new(r, "route", json_string(any->route));
		json_object_set_new(r, "source", opt_str(any->source));
		json_object_set_new(r, "status", json_string(!b ? "new" : !a ? "gone" : "both"));
		json_object_set_new(r, "requests", pair_json(RP(b, a, requests)));
		json_object_set_new(r, "queries_per_request", pair_json(RPH(b, a, qpr, has_qpr)));
		json_object_set_new(r, "time_per_request_ms", pair_json(RPH(b, a, tpr, has_tpr)));
		json_object_set_new(r, "p95_ms", pair_json(RPH(b, a, p95, has_p95)));
		json_object_set_new(r, "total_ms", pair_json(RP(b, a, total_ms)));
		json_t *fa = json_array();
		size_t nf = 0;
		struct match *m = join(b ? b->fps : NULL, b ? b->nfps : 0, a ? a->fps : NULL, a ? a->nfps : 0,
				       sizeof(struct rfp_row), offsetof(struct rfp_row, fp),
				       offsetof(struct rfp_row, total_ms), &nf);
		for (size_t k = 0; m && k < lim(nf, c->limit); k++) {
			const struct rfp_row *xb = m[k].b, *xa = m[k].a, *x = xa ? xa : xb;
			bool zb = !xb && b && b->fps_complete, za = !xa && a && a->fps_complete; /* known 0 */
			struct pair cpr = mkpair(xb ? xb->has_cpr : zb && b->requests > 0, xb ? xb->cpr : 0,
						 xa ? xa->has_cpr : za && a->requests > 0, xa ? xa->cpr : 0);
			json_array_append_new(
				fa, json_pack("{s:s, s:o, s:s, s:o, s:o, s:o}", "fingerprint", x->fp, "query",
					      opt_str(x->query), "status", !xb ? "new" : !xa ? "gone" : "both",
					      "calls_per_request", pair_json(cpr), "calls",
					      pair_json(mkpair(xb || zb, xb ? xb->calls : 0, xa || za, xa ? xa->calls : 0)),
					      "total_ms",
					      pair_json(mkpair(xb || zb, xb ? xb->total_ms : 0, xa || za, xa ? xa->total_ms : 0))));
		}
		free(m);
		json_object_set_new(r, "fingerprints", fa);
		json_array_append_new(routes, r);
	}
	size_t cb = 0, cn = 0, cg = 0;
	for (size_t i = 0; i < c->nfps; i++) {
		const struct fp_row *b = c->fps[i].b, *a = c->fps[i].a;
		if (b && a) {
			if (c->limit && cb++ >= c->limit)
				continue;
			json_array_append_new(
				both, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "fingerprint", a->fp, "query",
						opt_str(a->query), "calls", pair_json(FP(b, a, calls)), "mean_ms",
						pair_json(FP(b, a, mean_ms)), "p95_ms",
						pair_json(mkpair(b->has_p95, b->p95_ms, a->has_p95, a->p95_ms)), "total_ms",
						pair_json(FP(b, a, total_ms))));
			continue;
		}
		const struct fp_row *f = a ? a : b;
		size_t *cnt = a ? &cn : &cg;
		if (c->limit && (*cnt)++ >= c->limit)
			continue;
		json_array_append_new(a ? nw : gone,
				      json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "fingerprint", f->fp, "query",
						opt_str(f->query), "calls", num_json(f->calls), "mean_ms", num_json(f->mean_ms),
						"p95_ms", f->has_p95 ? num_json(f->p95_ms) : json_null(), "total_ms",
						num_json(f->total_ms)));
	}
	json_object_set_new(root, "routes", routes);
	json_object_set_new(root, "fingerprints", both);
	json_object_set_new(root, "new_fingerprints", nw);
	json_object_set_new(root, "gone_fingerprints", gone);
	return root;
}

int cli_compare(int argc, char **argv)
{
	static const struct option opts[] = {
		{"limit", required_argument, NULL, 'l'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	long limit = -1;
	bool as_json = false;
	opterr = 0;
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			if (!cli_parse_int(optarg, 0, 100000000, &limit))
				return cli_usage_error("compare", "invalid --limit '%s' (a number, 0 for all)", optarg);
			break;
		case 'j':
			as_json = true;
			break;
		case 'h':
			cli_compare_usage(stdout);
			return CLI_OK;
		case ':':
			return cli_usage_error("compare", "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error("compare", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("compare", "expected two snapshot files, BEFORE.json and AFTER.json (got %d)",
				       argc - optind);
	if (limit < 0)
		limit = as_json ? 0 : 20;

	char err[1024];
	struct snap sb, sa;
	int ret = CLI_ERR;
	memset(&sa, 0, sizeof(sa));
	struct compare_out c = {.limit = (size_t)limit};
	if (snap_load(&sb, argv[optind], err, sizeof(err)) < 0 || snap_load(&sa, argv[optind + 1], err, sizeof(err)) < 0) {
		fprintf(stderr, "pgmedic compare: %s\n", err);
		goto out;
	}
	c.routes = join(sb.routes, sb.nroutes, sa.routes, sa.nroutes, sizeof(struct route_row),
			offsetof(struct route_row, route), offsetof(struct route_row, total_ms), &c.nroutes);
	c.fps = join(sb.fps, sb.nfps, sa.fps, sa.nfps, sizeof(struct fp_row), offsetof(struct fp_row, fp),
		     offsetof(struct fp_row, total_ms), &c.nfps);
	if (!c.routes || !c.fps) {
		fprintf(stderr, "pgmedic compare: out of memory\n");
		goto out;
	}
	if (as_json) {
		json_t *doc = build_json(&sb, &sa, &c);
		int rc = json_dumpf(doc, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(15));
		json_decref(doc);
		if (rc != 0 || fputc('\n', stdout) == EOF) {
			fprintf(stderr, "pgmedic compare: cannot write the output\n");
			goto out;
		}
	} else {
		print_text(stdout, &sb, &sa, &c);
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "pgmedic compare: cannot write the output: %s\n", strerror(errno));
		goto out;
	}
	ret = CLI_OK;
out:
	free(c.routes);
	free(c.fps);
	snap_free(&sb);
	snap_free(&sa);
	return ret;
}
