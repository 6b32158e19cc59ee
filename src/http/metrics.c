/* metrics.c - /metrics (Prometheus text exposition format 0.0.4) over evhttp.
 * Rendering walks the pools on the event loop; it is O(pools) and never blocks. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "proxy/proxy.h"

/* Label values escape backslash, double quote and newline. */
static void put_label(struct evbuffer *b, const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p == '\\' || *p == '"')
			evbuffer_add_printf(b, "\\%c", *p);
		else if (*p == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, p, 1);
	}
}

static void pool_labels(struct evbuffer *b, const struct pool *pool)
{
	evbuffer_add_printf(b, "{database=\"");
	put_label(b, pool->database);
	evbuffer_add_printf(b, "\",user=\"");
	put_label(b, pool->user);
	evbuffer_add_printf(b, "\"");
}

static void header(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}


static void per_pool_u64(struct proxy *p, struct evbuffer *b, const char *name, const char *type, const char *help,
			 size_t off)
{
	header(b, name, type, help);
	(void)p;
	FOR_POOL_SUMS(pool, ps)
	{
		evbuffer_add_printf(b, "%s", name);
		pool_labels(b, pool);
		evbuffer_add_printf(b, "} %llu\n", (unsigned long long)*(const uint64_t *)((const char *)&ps.stats + off));
	}
}

static int cmp_total_desc(const void *a, const void *b)
{
	const struct qstat *x = *(const struct qstat *const *)a, *y = *(const struct qstat *const *)b;
	if (x->total_us != y->total_us)
		return x->total_us < y->total_us ? 1 : -1;
	return x->fp < y->fp ? -1 : x->fp > y->fp;
}

static void fp_labels(struct evbuffer *b, const struct qstat *q)
{
	char query[121];
	snprintf(query, sizeof(query), "%s", q->query);
	evbuffer_add_printf(b, "{fingerprint=\"%016llx\",database=\"", (unsigned long long)q->fp);
	put_label(b, q->database);
	evbuffer_add_printf(b, "\",user=\"");
	put_label(b, q->user);
	evbuffer_add_printf(b, "\",query=\"");
	put_label(b, query);
	evbuffer_add_printf(b, "\"");
}

/* Totals, and per-fingerprint series for the top metrics_top_fingerprints by
 * total time only: label cardinality stays bounded however many statements run. */
static void profile_metrics(struct proxy *p, struct evbuffer *b)
{
	const struct stats_store *s = &p->prof->store;
	size_t used = 0, routes = 0;
	for (size_t i = 0; i < s->nq; i++)
		used += s->q[i].used && s->q[i].calls;
	for (size_t i = 0; i < s->nr; i++)
		routes += s->r[i].used && s->r[i].calls;
	header(b, "pgmedic_profile_statements_total", "counter", "Statements profiled (simple Queries and Executes).");
	evbuffer_add_printf(b, "pgmedic_profile_statements_total %llu\n", (unsigned long long)s->calls);
	header(b, "pgmedic_profile_statement_errors_total", "counter", "Profiled statements that failed.");
	evbuffer_add_printf(b, "pgmedic_profile_statement_errors_total %llu\n", (unsigned long long)s->errors);
	header(b, "pgmedic_profile_statement_seconds_total", "counter", "Server time of profiled statements.");
	evbuffer_add_printf(b, "pgmedic_profile_statement_seconds_total %.6f\n", (double)s->total_us / 1e6);
	header(b, "pgmedic_profile_fingerprints", "gauge", "Fingerprints with statistics (bounded by max_fingerprints).");
	evbuffer_add_printf(b, "pgmedic_profile_fingerprints %zu\n", used);
	header(b, "pgmedic_profile_fingerprints_evicted_total", "counter", "Least-used fingerprints evicted to make room.");
	evbuffer_add_printf(b, "pgmedic_profile_fingerprints_evicted_total %llu\n", (unsigned long long)s->evicted);
	header(b, "pgmedic_profile_texts_total", "counter",
	       "Statement texts resolved to a fingerprint, by how: normalized, or found in the cache by exact text "
	       "or by shape (the same text but for its numbers); a text ending with a sqlcommenter tag comment "
	       "is looked up without it.");
	evbuffer_add_printf(b, "pgmedic_profile_texts_total{via=\"normalized\"} %llu\n",
			    (unsigned long long)p->prof->normalized);
	evbuffer_add_printf(b, "pgmedic_profile_texts_total{via=\"text_cache\"} %llu\n",
			    (unsigned long long)p->prof->cache_hits);
	evbuffer_add_printf(b, "pgmedic_profile_texts_total{via=\"shape_cache\"} %llu\n",
			    (unsigned long long)p->prof->shape_hits);
	header(b, "pgmedic_profile_routes", "gauge", "Routes with statistics (bounded by max_routes).");
	evbuffer_add_printf(b, "pgmedic_profile_routes %zu\n", routes);

	int top = p->cfg->metrics_top_fingerprints;
	if (top <= 0 || used == 0)
		return;
	const struct qstat **v = malloc(used * sizeof(*v));
	if (!v)
		return;
	size_t n = 0;
	for (size_t i = 0; i < s->nq; i++)
		if (s->q[i].used && s->q[i].calls)
			v[n++] = &s->q[i];
	qsort(v, n, sizeof(*v), cmp_total_desc);
	if (n > (size_t)top)
		n = (size_t)top;
	header(b, "pgmedic_query_calls_total", "counter", "Calls of the top fingerprints by total time.");
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(b, "pgmedic_query_calls_total");
		fp_labels(b, v[i]);
		evbuffer_add_printf(b, "} %llu\n", (unsigned long long)v[i]->calls);
	}
	header(b, "pgmedic_query_errors_total", "counter", "Failed calls of the top fingerprints.");
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(b, "pgmedic_query_errors_total");
		fp_labels(b, v[i]);
		evbuffer_add_printf(b, "} %llu\n", (unsigned long long)v[i]->errors);
	}
	header(b, "pgmedic_query_rows_total", "counter", "Rows returned or affected by the top fingerprints.");
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(b, "pgmedic_query_rows_total");
		fp_labels(b, v[i]);
		evbuffer_add_printf(b, "} %llu\n", (unsigned long long)v[i]->rows);
	}
	static const double le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
	header(b, "pgmedic_query_duration_seconds", "histogram", "Server time of the top fingerprints' calls.");
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < sizeof(le) / sizeof(le[0]); k++) {
			evbuffer_add_printf(b, "pgmedic_query_duration_seconds_bucket");
			fp_labels(b, v[i]);
			evbuffer_add_printf(b, ",le=\"%g\"} %llu\n", le[k],
					    (unsigned long long)hist_count_le(v[i]->hist, le[k] * 1e6));
		}
		evbuffer_add_printf(b, "pgmedic_query_duration_seconds_bucket");
		fp_labels(b, v[i]);
		evbuffer_add_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)v[i]->hist->count);
		evbuffer_add_printf(b, "pgmedic_query_duration_seconds_sum");
		fp_labels(b, v[i]);
		evbuffer_add_printf(b, "} %.6f\n", (double)v[i]->total_us / 1e6);
		evbuffer_add_printf(b, "pgmedic_query_duration_seconds_count");
		fp_labels(b, v[i]);
		evbuffer_add_printf(b, "} %llu\n", (unsigned long long)v[i]->hist->count);
	}
	free(v);
}

void metrics_render(struct proxy *p, struct evbuffer *b)
{
	header(b, "pgmedic_up", "gauge", "1 while pgmedic is serving.");
	evbuffer_add_printf(b, "pgmedic_up 1\n");
	header(b, "pgmedic_info", "gauge", "Build information.");
	evbuffer_add_printf(b, "pgmedic_info{version=\"%s\"} 1\n", PGMEDIC_VERSION);
	header(b, "pgmedic_shutting_down", "gauge", "1 after SIGTERM while open transactions finish.");
	evbuffer_add_printf(b, "pgmedic_shutting_down %d\n", p->shutting_down ? 1 : 0);

	header(b, "pgmedic_clients", "gauge", "Client connections by pool and state.");
	struct proxy_totals t;
	proxy_totals(&t);
	evbuffer_add_printf(b, "pgmedic_clients{database=\"\",user=\"\",state=\"login\"} %d\n", t.n_login);
	FOR_POOL_SUMS(pool, ps)
	{
		const struct {
			const char *st;
			int n;
		} rows[] = {{"active", ps.n_active_cl},
			    {"waiting", ps.n_waiting},
			    {"idle", ps.n_idle_cl},
			    {"login", ps.n_welcome}};
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			evbuffer_add_printf(b, "pgmedic_clients");
			pool_labels(b, pool);
			evbuffer_add_printf(b, ",state=\"%s\"} %d\n", rows[i].st, rows[i].n);
		}
	}
	header(b, "pgmedic_servers", "gauge", "Server connections by pool and state (used = running a reset query).");
	FOR_POOL_SUMS(pool, ps)
	{
		const struct {
			const char *st;
			int n;
		} rows[] = {{"active", ps.n_active_sv},
			    {"idle", ps.n_idle_sv},
			    {"login", ps.n_login_sv},
			    {"used", ps.n_reset_sv}};
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			evbuffer_add_printf(b, "pgmedic_servers");
			pool_labels(b, pool);
			evbuffer_add_printf(b, ",state=\"%s\"} %d\n", rows[i].st, rows[i].n);
		}
	}
	header(b, "pgmedic_pool_size", "gauge", "Maximum server connections of the pool.");
	FOR_POOL_SUMS(pool, ps)
	{
		evbuffer_add_printf(b, "pgmedic_pool_size");
		pool_labels(b, pool);
		evbuffer_add_printf(b, "} %d\n", pool->pool_size);
	}
	header(b, "pgmedic_pool_mode", "gauge", "1 for the pool's mode.");
	FOR_POOL_SUMS(pool, ps)
	{
		evbuffer_add_printf(b, "pgmedic_pool_mode");
		pool_labels(b, pool);
		evbuffer_add_printf(b, ",mode=\"%s\"} 1\n", pool_mode_name(pool->mode));
	}
	per_pool_u64(p, b, "pgmedic_transactions_total", "counter", "Transactions completed (including autocommit statements).",
		     offsetof(struct pool_stats, transactions));
	per_pool_u64(p, b, "pgmedic_queries_total", "counter", "Queries: simple Query messages and extended-protocol Executes.",
		     offsetof(struct pool_stats, queries));
	per_pool_u64(p, b, "pgmedic_bytes_received_total", "counter", "Bytes received from clients and passed to servers.",
		     offsetof(struct pool_stats, bytes_in));
	per_pool_u64(p, b, "pgmedic_bytes_sent_total", "counter", "Bytes received from servers and passed to clients.",
		     offsetof(struct pool_stats, bytes_out));
	per_pool_u64(p, b, "pgmedic_server_errors_total", "counter", "ErrorResponses sent by servers to clients.",
		     offsetof(struct pool_stats, server_errors));
	per_pool_u64(p, b, "pgmedic_server_connects_total", "counter", "Server connections opened.",
		     offsetof(struct pool_stats, server_connects));
	per_pool_u64(p, b, "pgmedic_server_login_failures_total", "counter", "Server logins refused by PostgreSQL.",
		     offsetof(struct pool_stats, server_login_failures));
	per_pool_u64(p, b, "pgmedic_waits_total", "counter", "Times a client waited for a server connection.",
		     offsetof(struct pool_stats, waits));
	header(b, "pgmedic_wait_seconds_total", "counter", "Time clients spent waiting for a server connection.");
	FOR_POOL_SUMS(pool, ps)
	{
		evbuffer_add_printf(b, "pgmedic_wait_seconds_total");
		pool_labels(b, pool);
		evbuffer_add_printf(b, "} %.6f\n", (double)ps.stats.wait_us_total / 1e6);
	}
	header(b, "pgmedic_wait_max_seconds", "gauge", "Longest wait for a server connection so far.");
	FOR_POOL_SUMS(pool, ps)
	{
		evbuffer_add_printf(b, "pgmedic_wait_max_seconds");
		pool_labels(b, pool);
		evbuffer_add_printf(b, "} %.6f\n", (double)ps.stats.wait_us_max / 1e6);
	}
	header(b, "pgmedic_client_connections_total", "counter", "Client connections accepted.");
	evbuffer_add_printf(b, "pgmedic_client_connections_total %llu\n", (unsigned long long)t.client_connections_total);
	header(b, "pgmedic_client_login_failures_total", "counter", "Client logins refused (wrong password).");
	evbuffer_add_printf(b, "pgmedic_client_login_failures_total %llu\n", (unsigned long long)t.client_login_failures);
	header(b, "pgmedic_server_connections_total", "counter", "Server connections opened.");
	evbuffer_add_printf(b, "pgmedic_server_connections_total %llu\n", (unsigned long long)t.server_connections_total);
	header(b, "pgmedic_cancel_requests_total", "counter", "Cancel requests received.");
	evbuffer_add_printf(b, "pgmedic_cancel_requests_total %llu\n", (unsigned long long)t.cancel_requests);
	header(b, "pgmedic_pins_total", "counter",
	       "Transaction-mode clients pinned to their server connection, by the session state that caused it.");
	static const char *pin_reasons[] = {"set", "role", "listen", "hold_cursor", "temp_table", "prepare", "advisory_lock"};
	for (size_t i = 0; i < sizeof(pin_reasons) / sizeof(pin_reasons[0]); i++)
		evbuffer_add_printf(b, "pgmedic_pins_total{reason=\"%s\"} %llu\n", pin_reasons[i],
				    (unsigned long long)t.pins_total[i]);
	header(b, "pgmedic_clients_pinned", "gauge", "Clients currently pinned to their server connection.");
	evbuffer_add_printf(b, "pgmedic_clients_pinned %d\n", t.n_pinned);
	header(b, "pgmedic_protocol_errors_total", "counter", "Malformed packets from clients (connection closed).");
	evbuffer_add_printf(b, "pgmedic_protocol_errors_total %llu\n", (unsigned long long)t.bad_packets);
	header(b, "pgmedic_prepared_retries_total", "counter",
	       "Prepared-statement requests sent again after \"cached plan must not change result type\".");
	evbuffer_add_printf(b, "pgmedic_prepared_retries_total %llu\n", (unsigned long long)t.plan_retries);
	header(b, "pgmedic_workers", "gauge", "Event loops (the workers setting).");
	evbuffer_add_printf(b, "pgmedic_workers %d\n", shard_count());
	header(b, "pgmedic_server_moves_total", "counter",
	       "Idle server connections handed from one event loop to another, for a client waiting there.");
	evbuffer_add_printf(b, "pgmedic_server_moves_total %llu\n", (unsigned long long)t.server_moves);
	profile_metrics(p, b);
}

static void http_cb(struct evhttp_request *req, void *arg)
{
	struct proxy *p = arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char path[64];
	size_t pl = strcspn(uri, "?");
	snprintf(path, sizeof(path), "%.*s", (int)(pl < sizeof(path) ? pl : sizeof(path) - 1), uri);
	if (strncmp(path, "/api/", 5) == 0) {
		bool found = api_handle(p, req, path); /* takes the profiler's lock itself */
		if (!found) {
			evbuffer_add_printf(b, "not found\n");
			evhttp_send_reply(req, 404, "Not Found", b);
		}
		evbuffer_free(b);
		return;
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		evhttp_send_reply(req, 405, "Method Not Allowed", b);
		evbuffer_free(b);
		return;
	}
	if (strcmp(uri, "/metrics") == 0 || strncmp(uri, "/metrics?", 9) == 0) {
		world_stop(p); /* every shard's pools and counters (a no-op with one) */
		shard_prof_lock();
		metrics_render(p, b);
		shard_prof_unlock();
		world_resume(p);
		evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strcmp(uri, "/health") == 0) {
		evbuffer_add_printf(b, p->shutting_down ? "shutting down\n" : "ok\n");
		evhttp_add_header(h, "Content-Type", "text/plain");
		evhttp_send_reply(req, p->shutting_down ? 503 : 200, p->shutting_down ? "Service Unavailable" : "OK", b);
	} else if (strcmp(uri, "/") == 0) {
		evbuffer_add_printf(b,
				    "pgmedic %s\n/metrics       Prometheus metrics\n/health        liveness\n"
				    "/api/queries  statistics per fingerprint (?sort=total_time|calls|mean|p95|errors&limit=N)\n"
				    "/api/routes   statistics per route (?sort=total_time|requests|calls&limit=N)\n"
				    "/api/findings N+1 loops, duplicate and slow queries, missing and unused indexes\n"
				    "/api/models   the ORM model map (POST from manage.py pgmedic_models)\n",
				    PGMEDIC_VERSION);
		evhttp_add_header(h, "Content-Type", "text/plain");
		evhttp_send_reply(req, 200, "OK", b);
	} else {
		evbuffer_add_printf(b, "not found\n");
		evhttp_send_reply(req, 404, "Not Found", b);
	}
	evbuffer_free(b);
}

int http_start(struct proxy *p, const char *host, int port, char *err, size_t errlen)
{
	p->http = evhttp_new(p->base);
	if (!p->http) {
		snprintf(err, errlen, "cannot create HTTP server");
		return -1;
	}
	evhttp_set_allowed_methods(p->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	evhttp_set_max_body_size(p->http, 16 << 20); /* the ORM model map of a large project */
	evhttp_set_timeout(p->http, 10);
	evhttp_set_gencb(p->http, http_cb, p);
	if (evhttp_bind_socket(p->http, host, (uint16_t)port) != 0) {
		snprintf(err, errlen, "cannot listen for HTTP on %s:%d", host, port);
		evhttp_free(p->http);
		p->http = NULL;
		return -1;
	}
	return 0;
}

void http_stop(struct proxy *p)
{
	if (p->http) {
		evhttp_free(p->http);
		p->http = NULL;
	}
}
