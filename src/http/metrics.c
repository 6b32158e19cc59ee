/* metrics.c - /metrics (Prometheus text exposition format 0.0.4) over evhttp.
 * Rendering walks the pools on the event loop; it is O(pools) and never blocks. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
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
	FOR_POOLS(p, pool)
	{
		evbuffer_add_printf(b, "%s", name);
		pool_labels(b, pool);
		evbuffer_add_printf(b, "} %llu\n", (unsigned long long)*(const uint64_t *)((const char *)&pool->stats + off));
	}
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
	int login = 0;
	for (struct list *it = p->login_clients.next; it != &p->login_clients; it = it->next)
		login++;
	evbuffer_add_printf(b, "pgmedic_clients{database=\"\",user=\"\",state=\"login\"} %d\n", login);
	FOR_POOLS(p, pool)
	{
		const struct {
			const char *st;
			int n;
		} rows[] = {{"active", pool->n_active_cl},
			    {"waiting", pool->n_waiting},
			    {"idle", pool->n_idle_cl},
			    {"login", pool->n_welcome}};
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			evbuffer_add_printf(b, "pgmedic_clients");
			pool_labels(b, pool);
			evbuffer_add_printf(b, ",state=\"%s\"} %d\n", rows[i].st, rows[i].n);
		}
	}
	header(b, "pgmedic_servers", "gauge", "Server connections by pool and state (used = running a reset query).");
	FOR_POOLS(p, pool)
	{
		const struct {
			const char *st;
			int n;
		} rows[] = {{"active", pool->n_active_sv},
			    {"idle", pool->n_idle_sv},
			    {"login", pool->n_login_sv},
			    {"used", pool->n_reset_sv}};
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			evbuffer_add_printf(b, "pgmedic_servers");
			pool_labels(b, pool);
			evbuffer_add_printf(b, ",state=\"%s\"} %d\n", rows[i].st, rows[i].n);
		}
	}
	header(b, "pgmedic_pool_size", "gauge", "Maximum server connections of the pool.");
	FOR_POOLS(p, pool)
	{
		evbuffer_add_printf(b, "pgmedic_pool_size");
		pool_labels(b, pool);
		evbuffer_add_printf(b, "} %d\n", pool->pool_size);
	}
	header(b, "pgmedic_pool_mode", "gauge", "1 for the pool's mode.");
	FOR_POOLS(p, pool)
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
	FOR_POOLS(p, pool)
	{
		evbuffer_add_printf(b, "pgmedic_wait_seconds_total");
		pool_labels(b, pool);
		evbuffer_add_printf(b, "} %.6f\n", (double)pool->stats.wait_us_total / 1e6);
	}
	header(b, "pgmedic_wait_max_seconds", "gauge", "Longest wait for a server connection so far.");
	FOR_POOLS(p, pool)
	{
		evbuffer_add_printf(b, "pgmedic_wait_max_seconds");
		pool_labels(b, pool);
		evbuffer_add_printf(b, "} %.6f\n", (double)pool->stats.wait_us_max / 1e6);
	}
	header(b, "pgmedic_client_connections_total", "counter", "Client connections accepted.");
	evbuffer_add_printf(b, "pgmedic_client_connections_total %llu\n", (unsigned long long)p->client_connections_total);
	header(b, "pgmedic_client_login_failures_total", "counter", "Client logins refused (wrong password).");
	evbuffer_add_printf(b, "pgmedic_client_login_failures_total %llu\n", (unsigned long long)p->client_login_failures);
	header(b, "pgmedic_server_connections_total", "counter", "Server connections opened.");
	evbuffer_add_printf(b, "pgmedic_server_connections_total %llu\n", (unsigned long long)p->server_connections_total);
	header(b, "pgmedic_cancel_requests_total", "counter", "Cancel requests received.");
	evbuffer_add_printf(b, "pgmedic_cancel_requests_total %llu\n", (unsigned long long)p->cancel_requests);
	header(b, "pgmedic_pins_total", "counter",
	       "Transaction-mode clients pinned to their server connection, by the session state that caused it.");
	static const char *pin_reasons[] = {"set", "role", "listen", "hold_cursor", "temp_table", "prepare", "advisory_lock"};
	for (size_t i = 0; i < sizeof(pin_reasons) / sizeof(pin_reasons[0]); i++)
		evbuffer_add_printf(b, "pgmedic_pins_total{reason=\"%s\"} %llu\n", pin_reasons[i],
				    (unsigned long long)p->pins_total[i]);
	header(b, "pgmedic_clients_pinned", "gauge", "Clients currently pinned to their server connection.");
	evbuffer_add_printf(b, "pgmedic_clients_pinned %d\n", p->n_pinned);
	header(b, "pgmedic_protocol_errors_total", "counter", "Malformed packets from clients (connection closed).");
	evbuffer_add_printf(b, "pgmedic_protocol_errors_total %llu\n", (unsigned long long)p->bad_packets);
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
	if (strcmp(uri, "/metrics") == 0 || strncmp(uri, "/metrics?", 9) == 0) {
		metrics_render(p, b);
		evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strcmp(uri, "/health") == 0) {
		evbuffer_add_printf(b, p->shutting_down ? "shutting down\n" : "ok\n");
		evhttp_add_header(h, "Content-Type", "text/plain");
		evhttp_send_reply(req, p->shutting_down ? 503 : 200, p->shutting_down ? "Service Unavailable" : "OK", b);
	} else if (strcmp(uri, "/") == 0) {
		evbuffer_add_printf(b, "pgmedic %s\n/metrics  Prometheus metrics\n/health   liveness\n", PGMEDIC_VERSION);
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
	evhttp_set_allowed_methods(p->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
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
