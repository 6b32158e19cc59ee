/* api.c - the JSON API over the statistics store: /api/queries, /api/routes and
 * /api/models (the ORM map pgmedic_django sends).  Field names are a contract
 * (README "JSON API").  Rendering reads the store on the event loop: O(entries),
 * a few milliseconds at the 5,000-entry default.  The profiler's lock (shared by
 * every event loop) is held only while the store is read into a JSON tree; the
 * request is parsed before, the tree serialized and sent after. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "core/log.h"
#include "http/http.h"
#include "insight/findings.h"
#include "insight/stats.h"
#include "proxy/proxy.h"
#include "proxy/shard.h"

#define API_MAX_BODY (16u << 20)

static json_t *ms(uint64_t us)
{
	return json_real((double)us / 1000.0);
}

static json_t *ms_d(double us)
{
	return json_real(us / 1000.0);
}

static void fp_hex(uint64_t fp, char out[17])
{
	snprintf(out, 17, "%016llx", (unsigned long long)fp);
}

static bool route_valid(const struct qstat_route *qr)
{
	return qr->rt && qr->rt->used && qr->rt->gen == qr->gen;
}

/* The example goes in as received (an unchecked JSON string): queries_json's caller
 * makes it what the API shows after the profiler's lock is let go (show_examples). */
static json_t *qstat_json(const struct qstat *q)
{
	char hex[17];
	fp_hex(q->fp, hex);
	json_t *o = json_object();
	double var = q->calls > 1 ? q->m2 / (double)q->calls : 0;
	json_object_set_new(o, "fingerprint", json_string(hex));
	json_object_set_new(o, "query", json_string(q->query));
	json_object_set_new(o, "database", json_string(q->database));
	json_object_set_new(o, "user", json_string(q->user));
	json_object_set_new(o, "calls", json_integer((json_int_t)q->calls));
	json_object_set_new(o, "errors", json_integer((json_int_t)q->errors));
	json_object_set_new(o, "rows", json_integer((json_int_t)q->rows));
	json_object_set_new(o, "total_ms", ms(q->total_us));
	json_object_set_new(o, "mean_ms", ms_d(q->calls ? (double)q->total_us / (double)q->calls : 0));
	json_object_set_new(o, "min_ms", ms(q->calls ? q->min_us : 0));
	json_object_set_new(o, "max_ms", ms(q->max_us));
	json_object_set_new(o, "stddev_ms", ms_d(sqrt(var)));
	json_object_set_new(o, "p50_ms", ms_d(hist_quantile(q->hist, 0.50)));
	json_object_set_new(o, "p95_ms", ms_d(hist_quantile(q->hist, 0.95)));
	json_object_set_new(o, "p99_ms", ms_d(hist_quantile(q->hist, 0.99)));
	json_object_set_new(o, "p999_ms", ms_d(hist_quantile(q->hist, 0.999)));
	json_object_set_new(o, "wait_ms", ms(q->wait_us));
	json_object_set_new(o, "first_seen", json_real(q->first_seen));
	json_object_set_new(o, "last_seen", json_real(q->last_seen));
	json_t *ec = json_object();
	for (int i = 0; i < QSTAT_ERR_CLASSES && q->err[i].n; i++)
		json_object_set_new(ec, q->err[i].cls, json_integer((json_int_t)q->err[i].n));
	json_object_set_new(o, "errors_by_class", ec);
	json_t *routes = json_array();
	for (int i = 0; i < QSTAT_ROUTES; i++) {
		const struct qstat_route *qr = &q->routes[i];
		if (!route_valid(qr))
			continue;
		json_t *r = json_object();
		json_object_set_new(r, "route", json_string(qr->rt->name));
		json_object_set_new(r, "calls", json_integer((json_int_t)qr->calls));
		json_object_set_new(r, "total_ms", ms(qr->total_us));
		json_array_append_new(routes, r);
	}
	json_object_set_new(o, "routes", routes);
	json_object_set_new(o, "example", json_stringn_nocheck(q->example, strlen(q->example)));
	return o;
}

/* Every example of /api/queries as findings_example_of() shows it (literals out
 * unless keep_literals: a lexer pass per entry), outside the lock. */
static void show_examples(json_t *doc, bool keep_literals)
{
	json_t *arr = json_object_get(doc, "queries"), *o;
	size_t i;
	json_array_foreach(arr, i, o)
	{
		const char *ex = json_string_value(json_object_get(o, "example"));
		json_object_set_new(o, "example", ex ? findings_example_of(ex, keep_literals) : json_null());
	}
}

/* Query-string parameters: sort (one of allowed) and limit. */
static int query_params(struct evhttp_request *req, const char *const *sorts, int *sort, long *limit, char *err,
			size_t errlen)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *qs = u ? evhttp_uri_get_query(u) : NULL;
	*sort = 0;
	*limit = 100;
	if (!qs)
		return 0;
	struct evkeyvalq kv;
	if (evhttp_parse_query_str(qs, &kv) < 0) {
		snprintf(err, errlen, "malformed query string");
		return -1;
	}
	int rc = 0;
	const char *s = evhttp_find_header(&kv, "sort");
	const char *l = evhttp_find_header(&kv, "limit");
	if (s) {
		int i = 0;
		while (sorts[i] && strcmp(sorts[i], s) != 0)
			i++;
		if (!sorts[i]) {
			int n = snprintf(err, errlen, "sort must be one of:");
			for (int k = 0; sorts[k] && n > 0 && (size_t)n < errlen; k++)
				n += snprintf(err + n, errlen - (size_t)n, " %s", sorts[k]);
			rc = -1;
		}
		*sort = i;
	}
	if (l && rc == 0) {
		char *end;
		long v = strtol(l, &end, 10);
		if (!*l || *end || v < 0) {
			snprintf(err, errlen, "limit must be a non-negative integer (0: all)");
			rc = -1;
		}
		*limit = v;
	}
	evhttp_clear_headers(&kv);
	return rc;
}

struct sort_item {
	double key;
	uint64_t tie;
	const void *p;
};

static int cmp_desc(const void *a, const void *b)
{
	const struct sort_item *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? 1 : -1;
	return x->tie < y->tie ? -1 : x->tie > y->tie;
}

static const char *const query_sorts[] = {"total_time", "calls", "mean", "p95", "errors", NULL};

static json_t *queries_json(struct proxy *p, int sort, long limit)
{
	struct profiler *pr = p->prof;
	struct stats_store *s = &pr->store;
	struct sort_item *items = calloc(s->nq ? s->nq : 1, sizeof(*items));
	size_t n = 0;
	json_t *arr = json_array();
	if (!items || !arr) {
		free(items);
		json_decref(arr);
		return NULL;
	}
	for (size_t i = 0; i < s->nq; i++) {
		const struct qstat *q = &s->q[i];
		if (!q->used || !q->calls)
			continue;
		double k = 0;
		switch (sort) {
		case 0: k = (double)q->total_us; break;
		case 1: k = (double)q->calls; break;
		case 2: k = (double)q->total_us / (double)q->calls; break;
		case 3: k = hist_quantile(q->hist, 0.95); break;
		case 4: k = (double)q->errors; break;
		}
		items[n++] = (struct sort_item){k, q->fp, q};
	}
	qsort(items, n, sizeof(*items), cmp_desc);
	for (size_t i = 0; i < n && (limit == 0 || (long)i < limit); i++)
		json_array_append_new(arr, qstat_json(items[i].p));
	free(items);
	json_t *o = json_object();
	json_object_set_new(o, "queries", arr);
	json_t *t = json_object();
	json_object_set_new(t, "calls", json_integer((json_int_t)s->calls));
	json_object_set_new(t, "errors", json_integer((json_int_t)s->errors));
	json_object_set_new(t, "total_ms", ms(s->total_us));
	json_object_set_new(t, "fingerprints", json_integer((json_int_t)n));
	json_object_set_new(t, "evicted", json_integer((json_int_t)s->evicted));
	json_object_set_new(t, "profiling", json_boolean(pr->on));
	json_object_set_new(o, "totals", t);
	json_object_set_new(o, "taken_at", json_real(stats_wall_now()));
	return o;
}

static const char *const route_sorts[] = {"total_time", "requests", "calls", NULL};
static const char *const source_names[] = {"none", "route", "controller", "application_name"};

#define ROUTE_TOP_FINGERPRINTS 10

struct route_fp {
	const struct qstat *q;
	const struct qstat_route *qr;
};

static int cmp_route_fp(const void *a, const void *b)
{
	const struct route_fp *x = a, *y = b;
	if (x->qr->total_us != y->qr->total_us)
		return x->qr->total_us < y->qr->total_us ? 1 : -1;
	return x->q->fp < y->q->fp ? -1 : x->q->fp > y->q->fp;
}

static json_t *null_or_ms(bool ok, double us)
{
	return ok ? ms_d(us) : json_null();
}

static json_t *routes_json(struct proxy *p, int sort, long limit)
{
	struct stats_store *s = &p->prof->store;
	/* One pass over the fingerprints groups their (route, calls, time) by route. */
	size_t *count = calloc(s->max_r + 1, sizeof(*count));
	size_t total = 0;
	for (size_t i = 0; count && i < s->nq; i++)
		for (int k = 0; k < QSTAT_ROUTES; k++)
			if (s->q[i].used && route_valid(&s->q[i].routes[k])) {
				count[s->q[i].routes[k].rt->slot + 1]++;
				total++;
			}
	struct route_fp *fps = calloc(total ? total : 1, sizeof(*fps));
	size_t *fill = calloc(s->max_r + 1, sizeof(*fill));
	struct sort_item *items = calloc(s->nr ? s->nr : 1, sizeof(*items));
	json_t *arr = json_array();
	if (!count || !fps || !fill || !items || !arr) {
		free(count);
		free(fps);
		free(fill);
		free(items);
		json_decref(arr);
		return NULL;
	}
	for (size_t r = 1; r <= s->max_r; r++)
		count[r] += count[r - 1]; /* count[slot] = start of slot's run */
	for (size_t i = 0; i < s->nq; i++)
		for (int k = 0; k < QSTAT_ROUTES; k++)
			if (s->q[i].used && route_valid(&s->q[i].routes[k])) {
				size_t slot = s->q[i].routes[k].rt->slot;
				fps[count[slot] + fill[slot]++] = (struct route_fp){&s->q[i], &s->q[i].routes[k]};
			}
	size_t n = 0;
	for (size_t i = 0; i < s->nr; i++) {
		const struct route *r = &s->r[i];
		if (!r->used || !r->calls)
			continue;
		double k = sort == 1 ? (double)r->requests : sort == 2 ? (double)r->calls : (double)r->total_us;
		items[n++] = (struct sort_item){k, r->hash, r};
	}
	qsort(items, n, sizeof(*items), cmp_desc);
	for (size_t i = 0; i < n && (limit == 0 || (long)i < limit); i++) {
		const struct route *r = items[i].p;
		json_t *o = json_object();
		bool req = r->requests > 0, hist = r->req_hist->count > 0;
		json_object_set_new(o, "route", json_string(r->name));
		json_object_set_new(o, "source", json_string(source_names[r->source]));
		json_object_set_new(o, "controller", r->controller ? json_string(r->controller) : json_null());
		json_object_set_new(o, "requests", json_integer((json_int_t)r->requests));
		json_object_set_new(o, "calls", json_integer((json_int_t)r->calls));
		json_object_set_new(o, "errors", json_integer((json_int_t)r->errors));
		json_object_set_new(o, "total_ms", ms(r->total_us));
		json_object_set_new(o, "wait_ms", ms(r->wait_us));
		json_object_set_new(o, "queries_per_request",
				    req ? json_real((double)r->calls / (double)r->requests) : json_null());
		json_object_set_new(o, "time_per_request_ms",
				    null_or_ms(req, (double)(r->total_us + r->wait_us) / (double)(req ? r->requests : 1)));
		json_object_set_new(o, "p50_ms", null_or_ms(hist, hist_quantile(r->req_hist, 0.50)));
		json_object_set_new(o, "p95_ms", null_or_ms(hist, hist_quantile(r->req_hist, 0.95)));
		json_object_set_new(o, "p99_ms", null_or_ms(hist, hist_quantile(r->req_hist, 0.99)));
		json_object_set_new(o, "first_seen", json_real(r->first_seen));
		json_object_set_new(o, "last_seen", json_real(r->last_seen));
		/* After the prefix sum, slot's run is [count[slot], count[slot] + fill[slot]). */
		size_t start = count[r->slot];
		size_t len = fill[r->slot];
		qsort(fps + start, len, sizeof(*fps), cmp_route_fp);
		json_t *fa = json_array();
		for (size_t k = 0; k < len && k < ROUTE_TOP_FINGERPRINTS; k++) {
			const struct route_fp *f = &fps[start + k];
			char hex[17];
			fp_hex(f->q->fp, hex);
			json_t *fo = json_object();
			json_object_set_new(fo, "fingerprint", json_string(hex));
			json_object_set_new(fo, "query", json_string(f->q->query));
			json_object_set_new(fo, "calls", json_integer((json_int_t)f->qr->calls));
			json_object_set_new(fo, "total_ms", ms(f->qr->total_us));
			json_object_set_new(fo, "mean_ms", ms_d((double)f->qr->total_us / (double)f->qr->calls));
			json_object_set_new(fo, "calls_per_request",
					    req ? json_real((double)f->qr->calls / (double)r->requests) : json_null());
			json_array_append_new(fa, fo);
		}
		json_object_set_new(o, "fingerprints", fa);
		json_array_append_new(arr, o);
	}
	free(count);
	free(fps);
	free(fill);
	free(items);
	json_t *o = json_object();
	json_object_set_new(o, "routes", arr);
	json_object_set_new(o, "taken_at", json_real(stats_wall_now()));
	return o;
}

static void send_json(struct evhttp_request *req, int code, const char *reason, json_t *j)
{
	struct evbuffer *b = evbuffer_new();
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
	if (!b || !text) {
		free(text);
		if (b)
			evbuffer_free(b);
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(b, text, strlen(text));
	evbuffer_add(b, "\n", 1);
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static void send_error_json(struct evhttp_request *req, int code, const char *reason, const char *msg)
{
	json_t *j = json_pack("{s:s}", "error", msg);
	send_json(req, code, reason, j);
	json_decref(j);
}

static void models_post(struct proxy *p, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	if (n > API_MAX_BODY) {
		send_error_json(req, 413, "Payload Too Large", "model map larger than 16 MiB");
		return;
	}
	unsigned char *body = evbuffer_pullup(in, (ev_ssize_t)n);
	json_error_t je;
	json_t *j = json_loadb((const char *)body, n, 0, &je);
	if (!j || !json_is_object(j)) {
		char msg[300];
		snprintf(msg, sizeof(msg), "expected a JSON object%s%s", j ? "" : ": ", j ? "" : je.text);
		json_decref(j);
		send_error_json(req, 400, "Bad Request", msg);
		return;
	}
	json_t *models = json_object_get(j, "models");
	if (!json_is_array(models)) {
		json_decref(j);
		send_error_json(req, 400, "Bad Request", "expected an object with a \"models\" array");
		return;
	}
	shard_prof_lock();
	json_t *old = p->prof->models;
	p->prof->models = j;
	shard_prof_unlock();
	json_decref(old);
	log_info("received the ORM model map: %zu models", json_array_size(models));
	json_t *r = json_pack("{s:b,s:I}", "ok", 1, "models", (json_int_t)json_array_size(models));
	send_json(req, 200, "OK", r);
	json_decref(r);
}

bool api_handle(struct proxy *p, struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	char err[200];
	int sort;
	long limit;
	if (strcmp(path, "/api/models") == 0) {
		if (cmd == EVHTTP_REQ_POST) {
			models_post(p, req);
			return true;
		}
		/* Only this loop (shard 0, which serves HTTP) replaces the map: a reference
		 * keeps it while it is sent. */
		json_t *m = json_incref(p->prof->models);
		if (m)
			send_json(req, 200, "OK", m);
		else
			send_error_json(req, 404, "Not Found", "no model map yet: run manage.py pgmedic_models");
		json_decref(m);
		return true;
	}
	if (strcmp(path, "/api/findings") == 0) {
		struct findings_opts fo = {p->cfg->slow_query_ms, p->prof->keep_literals, p->cfg->advisor};
		shard_prof_lock();
		json_t *j = findings_json(p->prof, &fo);
		shard_prof_unlock();
		send_json(req, 200, "OK", j);
		json_decref(j);
		return true;
	}
	if (strcmp(path, "/api/queries") == 0 || strcmp(path, "/api/routes") == 0) {
		bool q = path[5] == 'q';
		if (cmd == EVHTTP_REQ_POST) {
			send_error_json(req, 405, "Method Not Allowed", "use GET");
			return true;
		}
		if (query_params(req, q ? query_sorts : route_sorts, &sort, &limit, err, sizeof(err)) < 0) {
			send_error_json(req, 400, "Bad Request", err);
			return true;
		}
		shard_prof_lock();
		json_t *j = q ? queries_json(p, sort, limit) : routes_json(p, sort, limit);
		bool keep_literals = p->prof->keep_literals;
		shard_prof_unlock();
		if (q)
			show_examples(j, keep_literals);
		send_json(req, 200, "OK", j);
		json_decref(j);
		return true;
	}
	return false;
}
