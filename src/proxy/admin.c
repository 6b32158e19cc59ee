/* admin.c - the PgBouncer-compatible admin console: a client that connects to the
 * virtual database "pgbouncer" (or "pgmedic") as an admin user gets SHOW POOLS,
 * CLIENTS, SERVERS, STATS, DATABASES, CONFIG, VERSION and RELOAD, PAUSE, RESUME,
 * KILL, answered from the proxy's own state with PgBouncer's column names, so
 * monitoring built for PgBouncer works unchanged.  SHOW is parsed by libpg_query
 * (it is SQL); the verbs that are not SQL go through the SQL scanner of
 * sql/session.c.  Everything here runs on the event loop and is O(objects). */
#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/log.h"
#include "proxy/proxy.h"
#include "sql/session.h"

#define OID_TEXT 25
#define OID_INT4 23
#define OID_INT8 20
#define OID_NUMERIC 1700

bool admin_database(const char *db)
{
	return strcmp(db, "pgbouncer") == 0 || strcmp(db, "pgmedic") == 0;
}

bool admin_user_allowed(const struct proxy *p, const char *user)
{
	const struct config *c = p->cfg;
	if (c->admin_users && c->admin_users[0]) {
		const char *s = c->admin_users;
		size_t ul = strlen(user);
		while (*s) {
			while (*s == ' ' || *s == ',')
				s++;
			const char *e = s;
			while (*e && *e != ',' && *e != ' ')
				e++;
			if ((size_t)(e - s) == ul && strncmp(s, user, ul) == 0)
				return true;
			s = e;
		}
		return false;
	}
	/* Default: the upstream URL's user (the operator's own credential). */
	const struct db_entry *star = config_find_db(c, "*");
	const char *owner = star ? (star->user ? star->user : star->cred_user) : NULL;
	return owner && strcmp(owner, user) == 0;
}

/* ---- result set builder ---- */

struct rs {
	struct pg_buf b;
	int ncols;
	long rows;
};

static void rs_begin(struct rs *r, const char *const *names, const uint32_t *types, int n)
{
	pgb_init(&r->b);
	r->ncols = n;
	r->rows = 0;
	pgb_begin(&r->b, 'T');
	pgb_u16(&r->b, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		pgb_str(&r->b, names[i]);
		pgb_u32(&r->b, 0); /* table oid */
		pgb_u16(&r->b, 0); /* column */
		pgb_u32(&r->b, types[i]);
		pgb_u16(&r->b, (uint16_t)(types[i] == OID_INT8 ? 8 : types[i] == OID_INT4 ? 4 : 0xffff));
		pgb_u32(&r->b, 0xffffffffu); /* typmod -1 */
		pgb_u16(&r->b, 0);           /* text format */
	}
	pgb_end(&r->b);
}

/* One row: values as strings, NULL for SQL NULL. */
static void rs_row(struct rs *r, const char *const *vals)
{
	pgb_begin(&r->b, 'D');
	pgb_u16(&r->b, (uint16_t)r->ncols);
	for (int i = 0; i < r->ncols; i++) {
		if (!vals[i]) {
			pgb_u32(&r->b, 0xffffffffu);
			continue;
		}
		size_t n = strlen(vals[i]);
		pgb_u32(&r->b, (uint32_t)n);
		pgb_raw(&r->b, vals[i], n);
	}
	pgb_end(&r->b);
	r->rows++;
}

static void complete(struct client *cl, struct pg_buf *b, const char *tag)
{
	pgb_begin(b, 'C');
	pgb_str(b, tag);
	pgb_end(b);
	pgb_ready(b, 'I');
	if (b->failed) {
		client_fatal(cl, "53200", "out of memory");
		return;
	}
	(void)conn_send(&cl->c, b->data, b->len);
}

static void rs_finish(struct client *cl, struct rs *r)
{
	complete(cl, &r->b, "SHOW");
	pgb_free(&r->b);
}

static void admin_error(struct client *cl, const char *sqlstate, const char *msg)
{
	struct pg_buf b;
	pgb_init(&b);
	pgb_error(&b, "ERROR", sqlstate, msg);
	pgb_ready(&b, 'I');
	if (!b.failed)
		(void)conn_send(&cl->c, b.data, b.len);
	pgb_free(&b);
}


static char *fmt(char buf[][40], int *k, long long x)
{
	char *s = buf[(*k)++ % 40];
	snprintf(s, 40, "%lld", x);
	return s;
}


static void show_pools(struct client *cl)
{
	static const char *const names[] = {"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
					    "cl_waiting_cancel_req", "sv_active", "sv_active_cancel",
					    "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
					    "maxwait", "maxwait_us", "pool_mode"};
	static const uint32_t types[] = {OID_TEXT, OID_TEXT, OID_INT4, OID_INT4, OID_INT4, OID_INT4,
					 OID_INT4, OID_INT4, OID_INT4, OID_INT4, OID_INT4, OID_INT4,
					 OID_INT4, OID_INT4, OID_INT4, OID_TEXT};
	struct rs r;
	rs_begin(&r, names, types, 16);
	FOR_POOL_SUMS(pool, ps)
	{
		char buf[40][40];
		int k = 0;
		/* maxwait: how long the oldest waiting client has waited, as PgBouncer. */
		double oldest = ps.oldest_wait;
		long long sec = (long long)oldest;
		const char *vals[16] = {
			pool->database, pool->user, fmt(buf, &k, ps.n_active_cl + ps.n_idle_cl),
			fmt(buf, &k, ps.n_waiting + ps.n_welcome), fmt(buf, &k, 0), fmt(buf, &k, 0),
			fmt(buf, &k, ps.n_active_sv), fmt(buf, &k, 0), fmt(buf, &k, 0),
			fmt(buf, &k, ps.n_idle_sv), fmt(buf, &k, ps.n_reset_sv), fmt(buf, &k, 0),
			fmt(buf, &k, ps.n_login_sv), fmt(buf, &k, sec),
			fmt(buf, &k, (long long)((oldest - (double)sec) * 1e6)), pool_mode_name(pool->mode)};
		rs_row(&r, vals);
	}
	rs_finish(cl, &r);
}

static void show_stats(struct client *cl)
{
	static const char *const names[] = {"database", "total_xact_count", "total_query_count", "total_received",
					    "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
					    "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
					    "avg_xact_time", "avg_query_time", "avg_wait_time"};
	uint32_t types[15];
	types[0] = OID_TEXT;
	for (int i = 1; i < 15; i++)
		types[i] = OID_NUMERIC; /* as PgBouncer 1.18 */
	struct rs r;
	rs_begin(&r, names, types, 15);
	/* PgBouncer reports per database: sum the pools of each database. */
	FOR_ALL_POOLS(pool)
	{
		bool first = true;
		FOR_ALL_POOLS(o)
		{
			if (o == pool)
				goto seen;
			if (strcmp(o->database, pool->database) == 0)
				first = false;
		}
	seen:
		if (!first)
			continue;
		struct pool_stats t = {0}, a = {0};
		FOR_ALL_POOLS(q)
		{
			if (strcmp(q->database, pool->database) != 0)
				continue;
			pool_stats_add(&t, &q->stats);
			pool_stats_add(&a, &q->avg);
		}
		char buf[40][40];
		int k = 0;
		const char *vals[15] = {pool->database,
					fmt(buf, &k, (long long)t.transactions),
					fmt(buf, &k, (long long)t.queries),
					fmt(buf, &k, (long long)t.bytes_in),
					fmt(buf, &k, (long long)t.bytes_out),
					fmt(buf, &k, (long long)t.xact_us),
					fmt(buf, &k, (long long)t.query_us),
					fmt(buf, &k, (long long)t.wait_us_total),
					fmt(buf, &k, (long long)a.transactions),
					fmt(buf, &k, (long long)a.queries),
					fmt(buf, &k, (long long)a.bytes_in),
					fmt(buf, &k, (long long)a.bytes_out),
					fmt(buf, &k, (long long)a.xact_us),
					fmt(buf, &k, (long long)a.query_us),
					fmt(buf, &k, (long long)a.wait_us_total)};
		rs_row(&r, vals);
	}
	rs_finish(cl, &r);
}

static void show_databases(struct client *cl)
{
	static const char *const names[] = {"name", "host", "port", "database", "force_user", "pool_size",
					    "min_pool_size", "reserve_pool", "pool_mode", "max_connections",
					    "current_connections", "paused", "disabled"};
	static const uint32_t types[] = {OID_TEXT, OID_TEXT, OID_INT4, OID_TEXT, OID_TEXT, OID_INT4, OID_INT4,
					 OID_INT4, OID_TEXT, OID_INT4, OID_INT4, OID_INT4, OID_INT4};
	const struct config *c = cl->proxy->cfg;
	struct rs r;
	rs_begin(&r, names, types, 13);
	for (size_t i = 0; i < c->ndbs; i++) {
		const struct db_entry *e = &c->dbs[i];
		char buf[40][40];
		int k = 0;
		int current = 0;
		bool paused = cl->proxy->paused;
		FOR_ALL_POOLS(pool)
		{
			if (config_find_db(c, pool->database) == e) {
				current += pool->n_login_sv + pool->n_idle_sv + pool->n_active_sv + pool->n_reset_sv;
				paused = paused || pool->paused;
			}
		}
		int mode = e->pool_mode >= 0 ? e->pool_mode : (int)c->pool_mode;
		const char *vals[13] = {e->name,
					e->host ? e->host : "127.0.0.1",
					fmt(buf, &k, e->port ? e->port : 5432),
					e->dbname ? e->dbname : e->name,
					e->user,
					fmt(buf, &k, e->pool_size > 0 ? e->pool_size : c->pool_size),
					fmt(buf, &k, c->min_pool_size),
					fmt(buf, &k, 0),
					pool_mode_name((enum pool_mode)mode),
					fmt(buf, &k, 0),
					fmt(buf, &k, current),
					fmt(buf, &k, paused ? 1 : 0),
					fmt(buf, &k, 0)};
		rs_row(&r, vals);
	}
	rs_finish(cl, &r);
}

static const char *const conn_cols[] = {"type", "user", "database", "state", "addr", "port", "local_addr",
					"local_port", "connect_time", "request_time", "wait", "wait_us",
					"close_needed", "ptr", "link", "remote_pid", "tls", "application_name"};
static const uint32_t conn_types[] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT4,
				      OID_TEXT, OID_INT4, OID_TEXT, OID_TEXT, OID_INT4, OID_INT4,
				      OID_INT4, OID_TEXT, OID_TEXT, OID_INT4, OID_TEXT, OID_TEXT};

/* "host:port" / "[v6]:port" -> separate strings. */
static void split_addr(const char *a, char *host, size_t hl, char *port, size_t pl)
{
	const char *colon = strrchr(a, ':');
	if (!colon || strcmp(a, "unix") == 0) {
		snprintf(host, hl, "%s", a);
		snprintf(port, pl, "0");
		return;
	}
	size_t n = (size_t)(colon - a);
	if (n > 1 && a[0] == '[' && a[n - 1] == ']') {
		a++;
		n -= 2;
	}
	snprintf(host, hl, "%.*s", (int)n, a);
	snprintf(port, pl, "%s", colon + 1);
}

/* Wall-clock "YYYY-MM-DD HH:MM:SS UTC" of a CLOCK_MONOTONIC instant (seconds). */
static const char *wall(char *buf, size_t n, double mono)
{
	if (mono <= 0)
		return NULL;
	time_t t = time(NULL) - (time_t)(now_sec() - mono);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
	return buf;
}

static void local_addr(int fd, char *host, size_t hl, char *port, size_t pl)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	host[0] = 0;
	snprintf(port, pl, "0");
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)hl);
		snprintf(port, pl, "%u", ntohs(in->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)hl);
		snprintf(port, pl, "%u", ntohs(in6->sin6_port));
	} else {
		snprintf(host, hl, "unix");
	}
}

static void show_clients(struct client *cl)
{
	struct rs r;
	rs_begin(&r, conn_cols, conn_types, 18);
	for (int sh = 0; sh < shard_count(); sh++)
	for (struct list *it = shard_at(sh)->all_clients.next; it != &shard_at(sh)->all_clients; it = it->next) {
		struct client *c = list_entry(it, struct client, all_node);
		char buf[40][40];
		int k = 0;
		char host[64], port[16], lhost[64], lport[16], ptr[24], link[24], ct[40], rt[40];
		split_addr(c->addr, host, sizeof(host), port, sizeof(port));
		local_addr(c->c.fd, lhost, sizeof(lhost), lport, sizeof(lport));
		snprintf(ptr, sizeof(ptr), "C-%llu", (unsigned long long)c->id);
		snprintf(link, sizeof(link), "S-%llu", c->server ? (unsigned long long)c->server->id : 0ULL);
		/* PgBouncer 1.18 calls every logged-in client that is not queued "active". */
		const char *state = c->state == CL_WAITING ? "waiting" : "active";
		long long wait_us = 0;
		if (c->state == CL_WAITING) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			wait_us = (long long)(now.tv_sec - c->wait_start.tv_sec) * 1000000 +
				  (now.tv_nsec - c->wait_start.tv_nsec) / 1000;
		}
		const char *app = c->want[5] ? c->want[5] : "";
		const char *vals[18] = {"C", c->user ? c->user : "", c->database ? c->database : "", state, host,
					port, lhost[0] ? lhost : NULL, lport, wall(ct, sizeof(ct), c->connect_time),
					wall(rt, sizeof(rt), c->last_active), fmt(buf, &k, wait_us / 1000000),
					fmt(buf, &k, wait_us % 1000000), fmt(buf, &k, 0), ptr, c->server ? link : NULL,
					fmt(buf, &k, 0), c->c.ssl ? "TLS" : NULL, app};
		rs_row(&r, vals);
	}
	rs_finish(cl, &r);
}

static void show_servers(struct client *cl)
{
	struct rs r;
	rs_begin(&r, conn_cols, conn_types, 18);
	FOR_ALL_POOLS(pool)
	{
		struct list *lists[4] = {&pool->active_servers, &pool->idle_servers, &pool->reset_servers,
					 &pool->login_servers};
		static const char *states[4] = {"active", "idle", "used", "login"};
		for (int li = 0; li < 4; li++) {
			for (struct list *it = lists[li]->next; it != lists[li]; it = it->next) {
				struct server *s = list_entry(it, struct server, node);
				char buf[40][40];
				int k = 0;
				char ptr[24], link[24], lhost[64], lport[16], ct[40], rt[40];
				local_addr(s->c.fd, lhost, sizeof(lhost), lport, sizeof(lport));
				snprintf(ptr, sizeof(ptr), "S-%llu", (unsigned long long)s->id);
				snprintf(link, sizeof(link), "C-%llu", s->client ? (unsigned long long)s->client->id : 0ULL);
				const char *vals[18] = {"S", pool->up_user, pool->up_database, states[li], pool->host,
							fmt(buf, &k, pool->port), lhost[0] ? lhost : NULL, lport,
							wall(ct, sizeof(ct), s->created),
							wall(rt, sizeof(rt), s->last_used > 0 ? s->last_used : s->created),
							fmt(buf, &k, 0), fmt(buf, &k, 0), fmt(buf, &k, 0), ptr,
							s->client ? link : NULL, fmt(buf, &k, (long long)s->backend_pid),
							s->c.ssl ? "TLS" : NULL, s->params[5] ? s->params[5] : ""};
				rs_row(&r, vals);
			}
		}
	}
	rs_finish(cl, &r);
}

static void show_config(struct client *cl)
{
	static const char *const names[] = {"key", "value", "default", "changeable"};
	static const uint32_t types[] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT};
	const struct config *c = cl->proxy->cfg;
	struct config d;
	config_init(&d);
	struct rs r;
	rs_begin(&r, names, types, 4);
	char a[40][40];
	int k = 0;
#define ROWS(key, val, def, ch)                                    \
	do {                                                       \
		const char *vals_[4] = {key, val, def, ch};        \
		rs_row(&r, vals_);                                 \
	} while (0)
	ROWS("listen_addr", c->listen_host, d.listen_host, "no");
	ROWS("listen_port", fmt(a, &k, c->listen_port), fmt(a, &k, d.listen_port), "no");
	ROWS("pool_mode", pool_mode_name(c->pool_mode), pool_mode_name(d.pool_mode), "yes");
	ROWS("default_pool_size", fmt(a, &k, c->pool_size), fmt(a, &k, d.pool_size), "yes");
	ROWS("min_pool_size", fmt(a, &k, c->min_pool_size), fmt(a, &k, d.min_pool_size), "yes");
	ROWS("max_client_conn", fmt(a, &k, c->max_client_conn), fmt(a, &k, d.max_client_conn), "yes");
	ROWS("max_prepared_statements", fmt(a, &k, c->max_prepared_statements),
	     fmt(a, &k, d.max_prepared_statements), "yes");
	ROWS("query_wait_timeout", fmt(a, &k, (long long)c->query_wait_timeout),
	     fmt(a, &k, (long long)d.query_wait_timeout), "yes");
	ROWS("server_connect_timeout", fmt(a, &k, (long long)c->server_connect_timeout),
	     fmt(a, &k, (long long)d.server_connect_timeout), "yes");
	ROWS("server_idle_timeout", fmt(a, &k, (long long)c->server_idle_timeout),
	     fmt(a, &k, (long long)d.server_idle_timeout), "yes");
	ROWS("server_lifetime", fmt(a, &k, (long long)c->server_lifetime), fmt(a, &k, (long long)d.server_lifetime),
	     "yes");
	ROWS("server_check_delay", fmt(a, &k, (long long)c->server_check_delay),
	     fmt(a, &k, (long long)d.server_check_delay), "yes");
	ROWS("server_reset_query", c->server_reset_query, d.server_reset_query, "yes");
	ROWS("server_check_query", c->server_check_query, d.server_check_query, "yes");
	ROWS("auth_type", auth_type_name(c->auth_type), auth_type_name(d.auth_type), "yes");
	ROWS("auth_file", c->auth_file ? c->auth_file : "", "", "yes");
	ROWS("admin_users", c->admin_users ? c->admin_users : "", "", "yes");
	ROWS("client_tls_sslmode", sslmode_name(c->client_tls_sslmode), sslmode_name(d.client_tls_sslmode), "yes");
	ROWS("server_tls_sslmode", sslmode_name(c->server_tls_sslmode), sslmode_name(d.server_tls_sslmode), "yes");
#undef ROWS
	config_free(&d);
	rs_finish(cl, &r);
}

static void show_version(struct client *cl)
{
	static const char *const names[] = {"version"};
	static const uint32_t types[] = {OID_TEXT};
	struct rs r;
	rs_begin(&r, names, types, 1);
	const char *vals[1] = {"pgmedic " PGMEDIC_VERSION};
	rs_row(&r, vals);
	rs_finish(cl, &r);
}

static void simple_ok(struct client *cl, const char *tag)
{
	struct pg_buf b;
	pgb_init(&b);
	complete(cl, &b, tag);
	pgb_free(&b);
}

static struct pool *first_pool_of(const char *db)
{
	FOR_ALL_POOLS(pool)
	if (strcmp(pool->database, db) == 0)
		return pool;
	return NULL;
}

/* A database the admin can name: one with a pool, or a [databases] entry of its
 * own (the "*" fallback makes every name valid, which would hide typos). */
static bool known_db(struct proxy *p, const char *db)
{
	const struct db_entry *e = config_find_db(p->cfg, db);
	return first_pool_of(db) || (e && strcmp(e->name, "*") != 0);
}

static void kill_db(struct client *cl, const char *db)
{
	int n = 0;
	FOR_ALL_POOLS(pool)
	{
		if (strcmp(pool->database, db) != 0)
			continue;
		struct list *cls[4] = {&pool->welcome_clients, &pool->idle_clients, &pool->waiting_clients,
				       &pool->active_clients};
		for (int i = 0; i < 4; i++) {
			struct list *it, *tmp;
			list_for_each_safe(it, tmp, cls[i])
			{
				client_fatal(list_entry(it, struct client, node), "57P01",
					     "terminating connection: database killed by an admin (KILL)");
				n++;
			}
		}
		struct list *svs[4] = {&pool->login_servers, &pool->idle_servers, &pool->active_servers,
				       &pool->reset_servers};
		for (int i = 0; i < 4; i++) {
			struct list *it, *tmp;
			list_for_each_safe(it, tmp, svs[i])
				server_close(list_entry(it, struct server, node), "KILL from the admin console");
		}
	}
	log_info("admin C-%llu: KILL %s closed %d clients", (unsigned long long)cl->id, db, n);
}

static void query(struct client *cl, const char *sql);

/* The command is SQL (SHOW x) or one of PgBouncer's verbs.  It sees and acts on
 * every shard: the world is stopped meanwhile (nothing with one shard). */
void admin_query(struct client *cl, const char *sql)
{
	struct proxy *p = cl->proxy;
	world_stop(p);
	query(cl, sql);
	world_resume(p);
}

static void query(struct client *cl, const char *sql)
{
	struct proxy *p = cl->proxy;
	char show[64] = "";
	PgQueryParseResult pr = pg_query_parse(sql);
	if (!pr.error && pr.parse_tree) {
		json_error_t je;
		json_t *root = json_loads(pr.parse_tree, 0, &je);
		json_t *stmts = root ? json_object_get(root, "stmts") : NULL;
		if (json_is_array(stmts) && json_array_size(stmts) == 1) {
			json_t *stmt = json_object_get(json_array_get(stmts, 0), "stmt");
			json_t *vs = stmt ? json_object_get(stmt, "VariableShowStmt") : NULL;
			const char *name = vs ? json_string_value(json_object_get(vs, "name")) : NULL;
			if (name)
				snprintf(show, sizeof(show), "%s", name);
		}
		json_decref(root);
	}
	pg_query_free_parse_result(pr);
	if (show[0]) {
		if (strcasecmp(show, "pools") == 0)
			show_pools(cl);
		else if (strcasecmp(show, "stats") == 0)
			show_stats(cl);
		else if (strcasecmp(show, "databases") == 0)
			show_databases(cl);
		else if (strcasecmp(show, "clients") == 0)
			show_clients(cl);
		else if (strcasecmp(show, "servers") == 0)
			show_servers(cl);
		else if (strcasecmp(show, "config") == 0)
			show_config(cl);
		else if (strcasecmp(show, "version") == 0)
			show_version(cl);
		else {
			char msg[160];
			snprintf(msg, sizeof(msg), "unknown SHOW item \"%s\" (pools, clients, servers, stats, databases, config, version)", show);
			admin_error(cl, "42704", msg);
		}
		return;
	}
	char w[4][64];
	bool trailing = false;
	size_t n = sql_words(sql, strlen(sql), w, 3, &trailing);
	if (trailing) {
		admin_error(cl, "42601", "one admin command per query, please");
		return;
	}
	if (n == 1 && strcasecmp(w[0], "reload") == 0) {
		if (proxy_reload(p) < 0)
			admin_error(cl, "F0000", "reload failed: the running configuration is kept (see the log)");
		else
			simple_ok(cl, "RELOAD");
		return;
	}
	if ((n == 1 || n == 2) && (strcasecmp(w[0], "pause") == 0 || strcasecmp(w[0], "resume") == 0)) {
		bool pause = strcasecmp(w[0], "pause") == 0;
		if (n == 2) {
			if (!known_db(p, w[1])) {
				admin_error(cl, "3D000", "no such database");
				return;
			}
			FOR_ALL_POOLS(pool)
			if (strcmp(pool->database, w[1]) == 0)
				pool->paused = pause;
		} else {
			for (int i = 0; i < shard_count(); i++)
				shard_at(i)->paused = pause;
			FOR_ALL_POOLS(pool)
			pool->paused = pause;
		}
		log_info("admin C-%llu: %s %s", (unsigned long long)cl->id, pause ? "PAUSE" : "RESUME", n == 2 ? w[1] : "all");
		if (!pause) {
			/* Idle servers go to the clients that queued during the pause; more
			 * are launched if needed (on each shard's loop). */
			for (int i = 0; i < shard_count(); i++)
				shard_kick(shard_at(i));
			simple_ok(cl, "RESUME");
			return;
		}
		/* PAUSE answers once every server connection of the paused pools is free. */
		cl->admin_pause_wait = true;
		admin_check_pause(p);
		return;
	}
	if (n == 2 && strcasecmp(w[0], "kill") == 0) {
		if (!known_db(p, w[1])) {
			admin_error(cl, "3D000", "no such database");
			return;
		}
		kill_db(cl, w[1]);
		simple_ok(cl, "KILL");
		return;
	}
	char msg[200];
	snprintf(msg, sizeof(msg), "unknown admin command: %.120s (SHOW POOLS|CLIENTS|SERVERS|STATS|DATABASES|CONFIG|VERSION, RELOAD, PAUSE [db], RESUME [db], KILL db)", sql);
	admin_error(cl, "42601", msg);
}

static void check_pause(struct proxy *p);

/* Janitor and PAUSE: answer the PAUSEs of this shard's admin clients once no
 * paused pool of any shard has an active server. */
void admin_check_pause(struct proxy *p)
{
	bool waiting = false;
	struct list *it;
	for (it = p->admin_clients.next; it != &p->admin_clients; it = it->next)
		if (list_entry(it, struct client, node)->admin_pause_wait)
			waiting = true;
	if (!waiting)
		return;
	world_stop(p);
	int busy = 0;
	FOR_ALL_POOLS(pool)
	if (pool->paused)
		busy += pool->n_active_sv;
	world_resume(p);
	if (!busy)
		check_pause(p);
}

static void check_pause(struct proxy *p)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &p->admin_clients)
	{
		struct client *a = list_entry(it, struct client, node);
		if (a->admin_pause_wait) {
			a->admin_pause_wait = false;
			simple_ok(a, "PAUSE");
			if (a->state != CL_DEAD && conn_in_avail(&a->c))
				admin_process(a); /* commands that queued behind the PAUSE */
		}
	}
}

/* Input from an admin client: simple queries only. */
void admin_process(struct client *cl)
{
	for (;;) {
		const uint8_t *d = conn_in_data(&cl->c);
		size_t avail = conn_in_avail(&cl->c);
		uint8_t type;
		uint32_t len;
		enum pg_frame f = pg_frame_header(d, avail, &type, &len);
		if (f == PG_FRAME_NEED_MORE)
			return;
		if (f == PG_FRAME_BAD || len > 65536) {
			client_fatal(cl, "08P01", "invalid message on the admin console");
			return;
		}
		if (avail < (size_t)len + 1) {
			if (conn_in_reserve(&cl->c, (size_t)len + 1, 65537) < 0)
				client_fatal(cl, "53200", "out of memory");
			return;
		}
		if (cl->admin_pause_wait)
			return; /* one command at a time: PAUSE has not answered yet */
		if (type == 'X') {
			client_close(cl, "client sent Terminate");
			return;
		}
		if (type != 'Q') {
			client_fatal(cl, "0A000", "the admin console speaks the simple query protocol only");
			return;
		}
		char *sql = strndup((const char *)d + 5, len - 4);
		conn_in_consume(&cl->c, (size_t)len + 1);
		if (!sql) {
			client_fatal(cl, "53200", "out of memory");
			return;
		}
		log_debug("admin C-%llu: %s", (unsigned long long)cl->id, sql);
		admin_query(cl, sql);
		free(sql);
		if (cl->state == CL_DEAD)
			return;
	}
}
