/* server.c - the PostgreSQL side: connect, TLS, authenticate (trust, cleartext,
 * md5, SCRAM with a password or with a client's keys), then relay results to the
 * linked client, watching ReadyForQuery to know when a transaction is over.
 * Internal queries (parameter SETs, liveness checks, server_reset_query) are run
 * here and their results absorbed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/intern.h"
#include "core/log.h"
#include "core/mem.h"
#include "pg/md5.h"
#include "proxy/proxy.h"
#include "proxy/shard.h"

enum sv_login_step {
	SL_CONNECTING,   /* non-blocking connect in progress */
	SL_SSL_ANSWER,   /* sent SSLRequest, waiting for 'S' or 'N' */
	SL_TLS,          /* TLS handshake */
	SL_STARTUP,      /* StartupMessage sent: authentication and parameters */
};

#define SERVER_WHOLE_MAX (64 * 1024) /* inspect messages up to this size whole */

static void server_event(evutil_socket_t fd, short what, void *arg);

const char *server_state_name(enum server_state s)
{
	static const char *n[] = {"login", "idle", "setup", "active", "reset", "dead"};
	return n[s];
}

#define SLOG(lvl, sv, fmt, ...)                                                                  \
	log_msg(lvl, "S-%llu %s@%s %s: " fmt, (unsigned long long)(sv)->id, (sv)->pool->up_user, \
		(sv)->pool->up_database, (sv)->addr, ##__VA_ARGS__)

static void free_extra(struct param_kv **kv, size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		free((*kv)[i].name);
		free((*kv)[i].value);
		free((*kv)[i].startup_value);
	}
	free(*kv);
	*kv = NULL;
	*n = 0;
}

void server_close(struct server *sv, const char *reason)
{
	if (sv->state == SV_DEAD)
		return;
	struct proxy *p = sv->proxy;
	struct pool *pool = sv->pool;
	enum server_state old = sv->state;
	SLOG(old == SV_IDLE ? LOG_DEBUG : LOG_INFO, sv, "closing server connection (%s): %s",
	     server_state_name(old), reason);
	struct client *cl = sv->client;
	if (cl) {
		sv->client = NULL;
		cl->server = NULL;
		if (old == SV_SETUP) {
			/* The client's request has not been sent: let it wait for another server. */
			cl->in_extended = false;
			cl->pending_rfq = 0;
			pool_client_move(cl, CL_WAITING);
			clock_gettime(CLOCK_MONOTONIC, &cl->wait_start);
		} else {
			char msg[300];
			snprintf(msg, sizeof(msg), "server connection lost: %s", reason);
			client_fatal(cl, "08006", msg);
		}
	}
	if (conn_out_pending(&sv->c) == 0 && (old == SV_IDLE || old == SV_RESET)) {
		/* Polite goodbye so the server does not log an unexpected EOF. */
		struct pg_buf b;
		pgb_init(&b);
		pgb_terminate(&b);
		if (!b.failed && !sv->c.tls_handshaking && sv->c.fd >= 0)
			(void)conn_send(&sv->c, b.data, b.len);
		pgb_free(&b);
	}
	if (sv->timer) {
		event_free(sv->timer);
		sv->timer = NULL;
	}
	conn_close(&sv->c);
	pgb_free(&sv->login_params);
	pool_server_move(sv, SV_DEAD);
	list_add_tail(&p->dead_servers, &sv->node);
	proxy_schedule_reap(p);
	if (old == SV_LOGIN) {
		pool->last_login_failure = now_sec();
		pool->addr_len = 0; /* resolve the host name again next time */
	}
	/* The pool may need a replacement for clients still waiting. */
	if (!p->shutting_down)
		pool_maybe_launch(pool);
}

static void connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct server *sv = arg;
	(void)fd;
	(void)what;
	if (sv->state == SV_LOGIN) {
		char msg[200];
		snprintf(msg, sizeof(msg), "could not connect to server %s: timeout after %gs (server_connect_timeout)",
			 sv->addr, sv->proxy->cfg->server_connect_timeout);
		struct pg_buf b;
		pgb_init(&b);
		pgb_error(&b, "FATAL", "08006", msg);
		if (!b.failed)
			pool_login_failed(sv->pool, b.data, b.len);
		pgb_free(&b);
		server_close(sv, "server_connect_timeout");
	}
}

static void login_error(struct server *sv, const char *sqlstate, const char *msg)
{
	struct pg_buf b;
	pgb_init(&b);
	pgb_error(&b, "FATAL", sqlstate, msg);
	SLOG(LOG_WARNING, sv, "login failed: %s", msg);
	if (!b.failed)
		pool_login_failed(sv->pool, b.data, b.len);
	pgb_free(&b);
	server_close(sv, msg);
}

/* The caller reserved a slot in the pool group (pool_group_reserve): kept by the new
 * server, given back on failure (by server_close once the server is on a list). */
struct server *server_launch(struct pool *pool)
{
	struct proxy *p = pool->proxy;
	struct server *sv = zalloc_lines(sizeof(*sv));
	if (!sv) {
		pool_group_unreserve(pool->group);
		return NULL;
	}
	sv->proxy = p;
	sv->pool = pool;
	sv->id = shard_next_id();
	sv->created = sv->connect_started = now_sec();
	sv->tx_status = 'I';
	list_init(&sv->node);

	struct sockaddr_storage ss;
	socklen_t sl = 0;
	if (pool_target_addr(pool, &ss, &sl) < 0) {
		log_error("cannot resolve upstream host %s", pool->host);
		free(sv);
		pool_group_unreserve(pool->group);
		return NULL;
	}
	int family = ss.ss_family;
	if (family == AF_UNIX)
		snprintf(sv->addr, sizeof(sv->addr), "%s/.s.PGSQL.%d", pool->host, pool->port);
	else
		snprintf(sv->addr, sizeof(sv->addr), "%s:%d", pool->host, pool->port);
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("socket(): %s", strerror(errno));
		free(sv);
		pool_group_unreserve(pool->group);
		return NULL;
	}
	if (family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
	if (conn_init(&sv->c, p->base, fd, server_event, sv) < 0) {
		close(fd);
		free(sv);
		pool_group_unreserve(pool->group);
		return NULL;
	}
	sv->state = SV_LOGIN;
	pool_server_move(sv, SV_LOGIN);
	p->server_connections_total++;
	pool->stats.server_connects++;
	sv->login_step = SL_CONNECTING;
	sv->timer = evtimer_new(p->base, connect_timeout, sv);
	if (sv->timer && p->cfg->server_connect_timeout > 0) {
		struct timeval tv;
		tv.tv_sec = (time_t)p->cfg->server_connect_timeout;
		tv.tv_usec = (suseconds_t)((p->cfg->server_connect_timeout - (double)tv.tv_sec) * 1e6);
		evtimer_add(sv->timer, &tv);
	}
	SLOG(LOG_DEBUG, sv, "connecting");
	int r = connect(fd, (struct sockaddr *)&ss, sl);
	if (r < 0 && errno != EINPROGRESS) {
		char msg[300];
		snprintf(msg, sizeof(msg), "could not connect to server %s: %s", sv->addr, strerror(errno));
		login_error(sv, "08006", msg);
		return NULL;
	}
	/* Writability announces the end of the connect. */
	event_add(sv->c.ev_write, NULL);
	sv->c.writing = true;
	return sv;
}

static void send_startup(struct server *sv)
{
	struct pg_buf b;
	pgb_init(&b);
	const char *names[] = {"user", "database"};
	const char *values[] = {sv->pool->up_user, sv->pool->up_database};
	pgb_startup(&b, names, values, 2);
	sv->login_step = SL_STARTUP;
	if (b.failed || conn_send(&sv->c, b.data, b.len) == CONN_IO_ERROR) {
		pgb_free(&b);
		login_error(sv, "08006", "could not send startup packet to server");
		return;
	}
	pgb_free(&b);
	conn_want_read(&sv->c, true);
}

static void on_connected(struct server *sv)
{
	int err = 0;
	socklen_t el = sizeof(err);
	if (getsockopt(sv->c.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err) {
		char msg[300];
		snprintf(msg, sizeof(msg), "could not connect to server %s: %s", sv->addr, strerror(err));
		login_error(sv, "08006", msg);
		return;
	}
	struct proxy *p = sv->proxy;
	if (p->cfg->server_tls_sslmode != SSLMODE_DISABLE && p->server_tls && sv->pool->host[0] != '/') {
		struct pg_buf b;
		pgb_init(&b);
		pgb_ssl_request(&b);
		(void)conn_send(&sv->c, b.data, b.len);
		pgb_free(&b);
		sv->login_step = SL_SSL_ANSWER;
		conn_want_read(&sv->c, true);
		return;
	}
	if (p->cfg->server_tls_sslmode >= SSLMODE_REQUIRE) {
		login_error(sv, "08006", "server_tls_sslmode requires TLS but the upstream is a unix socket");
		return;
	}
	send_startup(sv);
}

/* One step of the TLS handshake towards the server; the startup packet follows it. */
static void tls_step(struct server *sv)
{
	enum conn_io r = conn_tls_handshake(&sv->c);
	if (r == CONN_IO_ERROR) {
		char msg[300];
		snprintf(msg, sizeof(msg), "TLS to server %s failed: %s", sv->addr, sv->c.error);
		login_error(sv, "08006", msg);
	} else if (r == CONN_IO_OK) {
		send_startup(sv);
	}
}

static void start_tls(struct server *sv)
{
	struct proxy *p = sv->proxy;
	bool verify_host = p->cfg->server_tls_sslmode == SSLMODE_VERIFY_FULL;
	if (conn_tls_begin(&sv->c, p->server_tls, false, sv->pool->host, verify_host) < 0) {
		login_error(sv, "08006", "cannot start TLS towards the server");
		return;
	}
	sv->login_step = SL_TLS;
	tls_step(sv);
}

static void handle_param_status(struct server *sv, const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	const char *name = pgr_cstr(&r, NULL);
	const char *val = pgr_cstr(&r, NULL);
	if (!name || !val)
		return;
	int idx = pg_tracked_param_index(name);
	if (idx < 0)
		return;
	intern_set(&sv->params[idx], val);
	/* A SET by the client itself changes what it wants from now on. */
	if (sv->client && sv->state == SV_ACTIVE)
		client_set_want(sv->client, idx, val);
}

static void send_password_msg(struct server *sv, struct pg_buf *b)
{
	if (b->failed || conn_send(&sv->c, b->data, b->len) == CONN_IO_ERROR)
		login_error(sv, "08006", "could not send authentication to server");
}

static void handle_auth_request(struct server *sv, const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	uint32_t code = pgr_u32(&r);
	struct pool *pool = sv->pool;
	struct upstream_cred *cr = &pool->cred;
	struct pg_buf b;
	char msg[300];
	char out[1024];
	pgb_init(&b);
	switch (code) {
	case PG_AUTH_OK:
		break;
	case PG_AUTH_CLEARTEXT:
		if (!cr->password) {
			snprintf(msg, sizeof(msg), "server asks for a password for user \"%s\" and pgmedic knows none",
				 pool->up_user);
			login_error(sv, "28P01", msg);
			break;
		}
		if (sv->c.ssl == NULL)
			SLOG(LOG_WARNING, sv, "sending a cleartext password over an unencrypted connection");
		pgb_password(&b, cr->password);
		send_password_msg(sv, &b);
		break;
	case PG_AUTH_MD5: {
		const uint8_t *salt = pgr_bytes(&r, 4);
		char secret[PG_MD5_LEN + 1], resp[PG_MD5_LEN + 1];
		if (!salt) {
			login_error(sv, "08P01", "malformed md5 authentication request from server");
			break;
		}
		if (cr->md5_secret) {
			snprintf(secret, sizeof(secret), "%s", cr->md5_secret);
		} else if (cr->password) {
			pg_md5_secret(cr->password, pool->up_user, secret);
		} else {
			snprintf(msg, sizeof(msg), "server asks for md5 authentication of user \"%s\" and pgmedic knows no password or md5 hash",
				 pool->up_user);
			login_error(sv, "28P01", msg);
			break;
		}
		pg_md5_response(secret, salt, resp);
		pgb_password(&b, resp);
		send_password_msg(sv, &b);
		break;
	}
	case PG_AUTH_SASL: {
		bool found = false;
		for (;;) {
			const char *mech = pgr_cstr(&r, NULL);
			if (!mech || !mech[0])
				break;
			if (strcmp(mech, "SCRAM-SHA-256") == 0)
				found = true;
		}
		if (!found) {
			login_error(sv, "08P01", "server offers no SASL mechanism pgmedic supports (SCRAM-SHA-256)");
			break;
		}
		if (cr->password) {
			scram_client_init_password(&sv->scram, cr->password, NULL);
		} else if (cr->have_scram_keys) {
			scram_client_init_keys(&sv->scram, cr->client_key, &cr->secret, NULL);
		} else {
			snprintf(msg, sizeof(msg),
				 "server asks for SCRAM authentication of user \"%s\" and pgmedic has neither a password nor a client's SCRAM keys (log in once with SCRAM against an auth_file secret)",
				 pool->up_user);
			login_error(sv, "28P01", msg);
			break;
		}
		int n = scram_client_first(&sv->scram, out, sizeof(out));
		if (n < 0) {
			login_error(sv, "08P01", "SCRAM: cannot build client-first message");
			break;
		}
		pgb_sasl_initial(&b, "SCRAM-SHA-256", out, (size_t)n);
		send_password_msg(sv, &b);
		break;
	}
	case PG_AUTH_SASL_CONTINUE: {
		int n = scram_client_final(&sv->scram, (const char *)r.p, pgr_left(&r), out, sizeof(out));
		if (n == -2) {
			login_error(sv, "28P01",
				    "SCRAM pass-through impossible: the server's salt or iteration count differs from the auth_file secret");
			break;
		}
		if (n < 0) {
			login_error(sv, "08P01", "malformed SCRAM message from server");
			break;
		}
		pgb_sasl_response(&b, out, (size_t)n);
		send_password_msg(sv, &b);
		break;
	}
	case PG_AUTH_SASL_FINAL:
		if (scram_client_verify_final(&sv->scram, (const char *)r.p, pgr_left(&r)) < 0)
			login_error(sv, "08P01", "server's SCRAM signature is invalid: it does not know the password");
		break;
	default:
		snprintf(msg, sizeof(msg), "server asks for an authentication method pgmedic does not support (%u)", code);
		login_error(sv, "28000", msg);
		break;
	}
	pgb_free(&b);
}

static void login_complete(struct server *sv)
{
	struct pool *pool = sv->pool;
	if (sv->timer) {
		event_free(sv->timer);
		sv->timer = NULL;
	}
	sv->last_used = now_sec();
	SLOG(LOG_DEBUG, sv, "logged in (backend pid %u)", sv->backend_pid);
	if (!pool->have_welcome) {
		/* The server's parameters become what every client of this pool is told. */
		pgb_free(&pool->welcome);
		pool->welcome = sv->login_params;
		pgb_init(&sv->login_params);
		for (int i = 0; i < PG_TRACKED_PARAMS; i++) {
			intern_set(&pool->defaults[i], sv->params[i]);
		}
		pool->have_welcome = true;
		pool_group_publish_welcome(pool->group, &pool->welcome, pool->defaults);
		/* Clients on other shards may be waiting for it. */
		if (shard_count() > 1 && pool_group_waiting_elsewhere(pool->group, pool))
			shard_kick_group(pool->group);
	}
	pool_server_move(sv, SV_IDLE);
	if (pool->n_welcome)
		pool_welcome_ready(pool);
	pool_server_ready(sv);
}

/* A server detached for sending (server_send) joins the idle list of sv->pool on
 * sv->proxy's loop: statements, events.  -1: it could not, and is closed. */
static int server_rejoin(struct server *sv)
{
	prep_server_attach(sv, sv->proxy);
	int rc = conn_bind(&sv->c, sv->proxy->base, server_event, sv);
	/* On the idle list first: every way out of it (closed for server_lifetime, a
	 * lowered pool_size, shutdown) then gives its pool_size slot back. */
	pool_server_move(sv, SV_IDLE);
	if (rc < 0) {
		server_close(sv, "out of memory");
		return -1;
	}
	conn_want_read(&sv->c, true);
	return 0;
}

/* On the receiving shard: the server joins its pool there and serves the first
 * waiting client, if any (from the top of the loop: nothing holds sv). */
static void server_arrive(struct proxy *p, void *arg)
{
	struct server *sv = arg;
	struct pool *from = sv->pool;
	sv->proxy = p;
	sv->pool = sv->give_to;
	sv->give_to = NULL;
	p->server_moves++;
	if (server_rejoin(sv) < 0)
		return;
	SLOG(LOG_DEBUG, sv, "moved from worker %d to worker %d", from->proxy->shard, p->shard);
	if (p->shutting_down) {
		server_close(sv, "pgmedic is shutting down");
		return;
	}
	pool_server_ready(sv);
}

/* The receiving shard's loop ended first. */
static void server_lost(void *arg)
{
	struct server *sv = arg;
	pool_group_unreserve(sv->give_to->group);
	conn_close(&sv->c);
	pgb_free(&sv->login_params);
	proxy_free_server(sv);
}

void server_send(struct server *sv)
{
	struct pool *from = sv->pool, *to = sv->give_to;
	list_del(&sv->node); /* off the idle list; its pool_size slot stays taken */
	pool_count_idle(from, -1);
	conn_unbind(&sv->c);
	prep_server_detach(sv); /* sv->proxy is still this shard's */
	if (shard_post(to->proxy, server_arrive, server_lost, sv) < 0) {
		sv->give_to = NULL; /* stays here */
		(void)server_rejoin(sv);
	}
}

int server_move_to(struct server *sv, struct pool *to)
{
	struct pool *from = sv->pool;
	if (sv->state != SV_IDLE || sv->client || conn_rebase(&sv->c, to->proxy->base) < 0)
		return -1;
	prep_server_move(sv, to->proxy);
	sv->give_to = NULL;
	list_del(&sv->node); /* off from's idle list; its pool_size slot stays taken */
	from->n_idle_sv--;
	sv->proxy = to->proxy;
	sv->pool = to;
	to->proxy->server_moves++;
	pool_server_move(sv, SV_IDLE);
	SLOG(LOG_DEBUG, sv, "moved from worker %d to worker %d", from->proxy->shard, to->proxy->shard);
	return 0;
}

/* Login phase: authentication exchange and the server's initial parameters. */
static void login_process(struct server *sv)
{
	struct pool *pool = sv->pool;
	while (sv->state == SV_LOGIN) {
		const uint8_t *d = conn_in_data(&sv->c);
		size_t avail = conn_in_avail(&sv->c);
		if (sv->login_step == SL_SSL_ANSWER) {
			if (avail < 1)
				return;
			uint8_t a = d[0];
			conn_in_consume(&sv->c, 1);
			if (a == 'S') {
				if (conn_in_avail(&sv->c)) {
					login_error(sv, "08P01", "server sent unencrypted data after SSL response");
					return;
				}
				start_tls(sv);
				return;
			}
			if (a == 'N' || a == 'E') {
				/* 'E': a pre-7.x style error; treat like refusal. */
				if (sv->proxy->cfg->server_tls_sslmode >= SSLMODE_REQUIRE) {
					login_error(sv, "08006", "server does not support TLS, but server_tls_sslmode requires it");
					return;
				}
				send_startup(sv);
				continue;
			}
			login_error(sv, "08P01", "invalid response to SSL negotiation");
			return;
		}
		if (sv->login_step != SL_STARTUP)
			return;
		uint8_t type;
		uint32_t len;
		enum pg_frame f = pg_frame_header(d, avail, &type, &len);
		if (f == PG_FRAME_NEED_MORE)
			return;
		if (f == PG_FRAME_BAD || len > SERVER_WHOLE_MAX) {
			login_error(sv, "08P01", "invalid message from server during login");
			return;
		}
		if (avail < (size_t)len + 1) {
			if (conn_in_reserve(&sv->c, (size_t)len + 1, SERVER_WHOLE_MAX + 1) < 0)
				login_error(sv, "53200", "out of memory");
			return;
		}
		const uint8_t *body = d + 5;
		size_t blen = len - 4;
		switch (type) {
		case 'R':
			handle_auth_request(sv, body, blen);
			break;
		case 'S':
			handle_param_status(sv, body, blen);
			/* Kept per server: several may log in before the pool has a welcome. */
			if (!pool->have_welcome)
				pgb_raw(&sv->login_params, d, (size_t)len + 1);
			break;
		case 'K':
			if (blen >= 8) {
				sv->backend_pid = pg_get_u32(body);
				sv->backend_key = pg_get_u32(body + 4);
			}
			break;
		case 'N':
			break;
		case 'E': {
			struct pg_error_fields ef;
			char msg[400];
			if (pg_parse_error(body, blen, &ef) < 0 || !ef.message)
				ef.message = "(unparsable error)";
			snprintf(msg, sizeof(msg), "server refused login: %s%s%s", ef.sqlstate ? ef.sqlstate : "",
				 ef.sqlstate ? " " : "", ef.message);
			SLOG(LOG_WARNING, sv, "%s", msg);
			pool->stats.server_login_failures++;
			/* Hand PostgreSQL's own error to the clients waiting for this login. */
			pool_login_failed(pool, d, (size_t)len + 1);
			server_close(sv, msg);
			return;
		}
		case 'Z':
			if (blen >= 1)
				sv->tx_status = (char)body[0];
			conn_in_consume(&sv->c, (size_t)len + 1);
			login_complete(sv);
			return;
		default:
			login_error(sv, "08P01", "unexpected message from server during login");
			return;
		}
		if (sv->state != SV_LOGIN)
			return;
		conn_in_consume(&sv->c, (size_t)len + 1);
	}
}

/* ----------------------------------------------------------- setup/reset ---- */

static const char *want_value(struct client *cl, int i)
{
	return cl->want[i] ? cl->want[i] : cl->pool->defaults[i];
}

static const char *server_extra(struct server *sv, const char *name)
{
	for (size_t i = 0; i < sv->nextra; i++)
		if (strcasecmp(sv->extra[i].name, name) == 0)
			return sv->extra[i].value;
	return NULL;
}

static const char *client_extra(struct client *cl, const char *name)
{
	for (size_t i = 0; i < cl->nextra; i++)
		if (strcasecmp(cl->extra[i].name, name) == 0)
			return cl->extra[i].value;
	return NULL;
}

bool server_needs_setup(struct server *sv, struct client *cl)
{
	/* Interned values: the same value is the same pointer, and the strings
	 * themselves are not read (under load they are not in the CPU cache).
	 * Different pointers are compared as strings, to be sure. */
	for (int i = 0; i < PG_TRACKED_PARAMS; i++) {
		const char *w = want_value(cl, i);
		if (w && w != sv->params[i] && (!sv->params[i] || strcmp(w, sv->params[i]) != 0))
			return true;
	}
	for (size_t i = 0; i < cl->nextra; i++) {
		const char *v = server_extra(sv, cl->extra[i].name);
		if (!v || strcmp(v, cl->extra[i].value) != 0)
			return true;
	}
	for (size_t i = 0; i < sv->nextra; i++)
		if (!client_extra(cl, sv->extra[i].name))
			return true;
	return false;
}

static bool valid_guc_name(const char *n)
{
	if (!*n)
		return false;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		      *p == '.'))
			return false;
	return true;
}

static void append_set(struct pg_buf *q, const char *name, const char *value)
{
	char lit[2100];
	if (!valid_guc_name(name) || pg_quote_literal(value, lit, sizeof(lit)) < 0) {
		q->failed = true;
		return;
	}
	pgb_raw(q, "SET ", 4);
	pgb_raw(q, name, strlen(name));
	pgb_raw(q, " = ", 3);
	pgb_raw(q, lit, strlen(lit));
	pgb_raw(q, ";", 1);
}

/* SET name TO <sql>: the value already is SQL text (a literal, or as the client
 * wrote it in one statement PostgreSQL accepted).  The newline ends any trailing
 * line comment of the value before the ';'. */
static void append_set_sql(struct pg_buf *q, const char *name, const char *sql)
{
	if (!valid_guc_name(name)) {
		q->failed = true;
		return;
	}
	pgb_raw(q, "SET ", 4);
	pgb_raw(q, name, strlen(name));
	pgb_raw(q, " TO ", 4);
	pgb_raw(q, sql, strlen(sql));
	pgb_raw(q, "\n;", 2);
}

static void send_internal(struct server *sv, const char *sql, size_t len)
{
	struct pg_buf b;
	pgb_init(&b);
	pgb_begin(&b, 'Q');
	pgb_raw(&b, sql, len);
	pgb_u8(&b, 0);
	pgb_end(&b);
	sv->internal_rfq++;
	sv->internal_failed = false;
	enum conn_io r = b.failed ? CONN_IO_ERROR : conn_send(&sv->c, b.data, b.len);
	pgb_free(&b);
	if (r == CONN_IO_ERROR)
		server_close(sv, sv->c.error[0] ? sv->c.error : "cannot send internal query");
}

void server_begin_setup(struct server *sv, struct client *cl, bool check)
{
	struct pg_buf q;
	pgb_init(&q);
	for (int i = 0; i < PG_TRACKED_PARAMS; i++) {
		const char *w = want_value(cl, i);
		if (w && w != sv->params[i] && (!sv->params[i] || strcmp(w, sv->params[i]) != 0))
			append_set(&q, pg_tracked_param_names[i], w);
	}
	/* Untracked parameters: reset what this server has that the client does not want. */
	for (size_t i = 0; i < sv->nextra;) {
		if (!client_extra(cl, sv->extra[i].name)) {
			if (valid_guc_name(sv->extra[i].name)) {
				pgb_raw(&q, "RESET ", 6);
				pgb_raw(&q, sv->extra[i].name, strlen(sv->extra[i].name));
				pgb_raw(&q, ";", 1);
			}
			free(sv->extra[i].name);
			free(sv->extra[i].value);
			free(sv->extra[i].startup_value);
			sv->extra[i] = sv->extra[--sv->nextra];
			continue;
		}
		i++;
	}
	for (size_t i = 0; i < cl->nextra; i++) {
		const char *v = server_extra(sv, cl->extra[i].name);
		if (v && strcmp(v, cl->extra[i].value) == 0)
			continue;
		append_set_sql(&q, cl->extra[i].name, cl->extra[i].value);
		struct param_kv *n = v ? sv->extra : realloc(sv->extra, (sv->nextra + 1) * sizeof(*n));
		if (!n) {
			q.failed = true;
			break;
		}
		sv->extra = n;
		if (v) {
			for (size_t j = 0; j < sv->nextra; j++)
				if (strcasecmp(sv->extra[j].name, cl->extra[i].name) == 0) {
					free(sv->extra[j].value);
					sv->extra[j].value = strdup(cl->extra[i].value);
				}
		} else {
			sv->extra[sv->nextra].name = strdup(cl->extra[i].name);
			sv->extra[sv->nextra].value = strdup(cl->extra[i].value);
			sv->extra[sv->nextra].startup_value = NULL;
			sv->nextra++;
		}
	}
	if (q.failed) {
		pgb_free(&q);
		client_fatal(cl, "22023", "invalid startup parameter (name or value)");
		return;
	}
	const char *sql = (const char *)q.data;
	size_t len = q.len;
	if (len == 0 && check) {
		sql = sv->proxy->cfg->server_check_query ? sv->proxy->cfg->server_check_query : "";
		len = strlen(sql);
	}
	pool_server_move(sv, SV_SETUP);
	SLOG(LOG_DEBUG, sv, "setup for C-%llu: %.*s", (unsigned long long)cl->id, (int)len, sql ? sql : "");
	send_internal(sv, sql ? sql : "", len);
	pgb_free(&q);
}

void server_begin_reset(struct server *sv)
{
	const char *q = sv->proxy->cfg->server_reset_query;
	pool_server_move(sv, SV_RESET);
	/* DISCARD ALL resets every parameter to the server's default. */
	for (int i = 0; i < PG_TRACKED_PARAMS; i++) {
		intern_set(&sv->params[i], sv->pool->defaults[i]);
	}
	free_extra(&sv->extra, &sv->nextra);
	prep_server_forget_all(sv);
	send_internal(sv, q, strlen(q));
}

static void internal_done(struct server *sv)
{
	if (sv->state == SV_RESET) {
		if (sv->internal_failed) {
			server_close(sv, "server_reset_query failed");
			return;
		}
		pool_server_ready(sv);
		return;
	}
	if (sv->state == SV_SETUP) {
		struct client *cl = sv->client;
		sv->last_used = now_sec();
		if (sv->internal_failed) {
			/* A client's startup parameter the server rejected: tell that client. */
			sv->client = NULL;
			if (cl) {
				cl->server = NULL;
				client_fatal(cl, "22023", "server rejected a startup parameter of this client");
			}
			free_extra(&sv->extra, &sv->nextra);
			pool_server_ready(sv);
			return;
		}
		pool_server_move(sv, SV_ACTIVE);
		if (cl)
			client_linked(cl);
		else
			pool_server_ready(sv);
	}
}

/* ------------------------------------------------------------- relaying ---- */

static bool relay_range(struct server *sv, size_t n)
{
	if (n == 0)
		return true;
	struct client *cl = sv->client;
	sv->pool->stats.bytes_out += n;
	enum conn_io r = cl ? conn_send(&cl->c, conn_in_data(&sv->c), n) : CONN_IO_OK;
	conn_in_consume(&sv->c, n);
	if (r == CONN_IO_ERROR) {
		client_close(cl, cl->c.error[0] ? cl->c.error : "write to client failed");
		return false;
	}
	if (cl && conn_out_pending(&cl->c) > CONN_OUT_HIGH)
		conn_want_read(&sv->c, false); /* slow client: resumed when it drains */
	return true;
}

static bool release_point(struct server *sv)
{
	struct client *cl = sv->client;
	if (!cl || sv->tx_status != 'I' || cl->pending_rfq || cl->in_extended || cl->stream_left)
		return false;
	return (sv->pool->mode == POOL_TRANSACTION && !cl->pinned) || cl->close_after_release;
}

void server_process(struct server *sv)
{
	if (sv->state == SV_LOGIN) {
		login_process(sv);
		return;
	}
	size_t pos = 0;
	uint64_t now = 0; /* one clock reading for the messages of one read */
	while (sv->state != SV_DEAD) {
		const uint8_t *d = conn_in_data(&sv->c);
		size_t avail = conn_in_avail(&sv->c);
		if (pos >= avail)
			break;
		if (sv->stream_left) {
			size_t n = avail - pos < sv->stream_left ? avail - pos : sv->stream_left;
			pos += n;
			sv->stream_left -= (uint32_t)n;
			continue;
		}
		uint8_t type;
		uint32_t len;
		enum pg_frame f = pg_frame_header(d + pos, avail - pos, &type, &len);
		if (f == PG_FRAME_NEED_MORE)
			break;
		if (f == PG_FRAME_BAD) {
			relay_range(sv, pos);
			server_close(sv, "invalid message length from server");
			return;
		}
		size_t total = (size_t)len + 1;
		bool whole = avail - pos >= total;
		if (type == 'D' && whole && sv->state == SV_ACTIVE) {
			/* A DataRow, the bulk of a result, is relayed as it is: no queue entry
			 * ends with one and no one inspects it, unless an answer pgmedic makes
			 * itself is due first or a failed attempt is being replayed. */
			const struct client *c = sv->client;
			if (!c || (c->retry_state == RETRY_NONE && !prep_synth_due(&c->prep))) {
				pos += total;
				continue;
			}
		}
		struct client *tcl = sv->state == SV_ACTIVE && sv->client && sv->client->prep.qlen ? sv->client : NULL;
		/* With expectations queued, ParseComplete/CloseComplete may have to be
		 * dropped and CommandComplete tags (DISCARD ALL) read. */
		/* CommandComplete tags matter in transaction mode (DISCARD ALL, ROLLBACK). */
		bool txmode = sv->state == SV_ACTIVE && sv->client && sv->pool->mode == POOL_TRANSACTION;
		bool profiled = sv->state == SV_ACTIVE && sv->client && sv->client->prof;
		bool inspect = sv->state != SV_ACTIVE || type == 'Z' || type == 'S' || type == 'E' ||
			       (tcl && (type == '1' || type == '3' || type == 'C')) || ((txmode || profiled) && type == 'C');
		bool stream = false;
		if (!whole) {
			if (inspect && total <= SERVER_WHOLE_MAX) {
				/* Wait for the whole message; nothing of it is handled yet. */
				if (!relay_range(sv, pos))
					return;
				pos = 0;
				if (conn_in_reserve(&sv->c, total, SERVER_WHOLE_MAX + 1) < 0) {
					server_close(sv, "out of memory");
					return;
				}
				break;
			}
			if (sv->state != SV_ACTIVE || type == 'Z') {
				/* Internal query results are tiny; idle servers say little. */
				relay_range(sv, pos);
				server_close(sv, "oversized message from server outside a request");
				return;
			}
			stream = true; /* rows and the like (or too big to inspect): pass through */
		}
		const uint8_t *body = d + pos + 5;
		size_t blen = len - 4;
		if (tcl) {
			/* Responses pgmedic answered itself go out first, in order. */
			if (prep_synth_due(&tcl->prep)) {
				if (!relay_range(sv, pos))
					return;
				pos = 0;
				prep_drain_synth(tcl);
				continue; /* the same header again, now with the queue in step */
			}
			/* Once per message, at its header: the queue follows types only. */
			if (prep_on_server_msg(tcl, sv, type, whole ? body : NULL, blen) == PREP_DROP) {
				/* The answer to a Parse/Close pgmedic injected: not the client's. */
				if (!relay_range(sv, pos))
					return;
				pos = 0;
				conn_in_consume(&sv->c, total);
				continue;
			}
		}
		if (sv->state == SV_ACTIVE && sv->client && sv->client->retry_state != RETRY_NONE && whole &&
		    client_retry_on_server_msg(sv->client, sv, type, body, blen)) {
			/* Part of a failed attempt pgmedic replays: not for the client. */
			struct client *rc = sv->client;
			bool replay = type == 'Z' && rc->retry_state == RETRY_DONE;
			if (!relay_range(sv, pos))
				return;
			pos = 0;
			conn_in_consume(&sv->c, total);
			if (replay && rc->state != CL_DEAD) {
				client_process(rc);
				return;
			}
			continue;
		}
		if (stream) {
			sv->stream_left = (uint32_t)(total - (avail - pos));
			pos = avail;
			continue;
		}
		if (sv->state == SV_ACTIVE) {
			struct client *cl = sv->client;
			pos += total;
			if (profiled && (type == 'C' || type == 'E' || type == 'Z' || type == 'I' || type == 's'))
			{
				if (!now)
					now = now_us();
				shard_prof_lock();
				prof_server_msg(sv->proxy->prof, cl->prof, type, body, blen, now);
				shard_prof_unlock();
			}
			if (type == 'Z') {
				char before = sv->tx_status;
				sv->tx_status = blen >= 1 ? (char)body[0] : 'I';
				if (cl && cl->pending_rfq)
					cl->pending_rfq--;
				if (cl && client_tracks_sets(cl))
					client_settle_sets(cl, sv, sv->tx_status);
				if (cl && cl->pending_rfq == 0 && cl->req_start_us) {
					/* PgBouncer's total_query_time and total_xact_time. */
					if (!now)
						now = now_us();
					sv->pool->stats.query_us += now - cl->req_start_us;
					if (before == 'I' && sv->tx_status != 'I')
						cl->xact_start_us = cl->req_start_us;
					else if (sv->tx_status == 'I') {
						uint64_t from = cl->xact_start_us ? cl->xact_start_us : cl->req_start_us;
						sv->pool->stats.xact_us += now - from;
						cl->xact_start_us = 0;
					}
					cl->req_start_us = 0;
				}
				if (sv->tx_status == 'I' && sv->work_since_rfq) {
					sv->pool->stats.transactions++;
					sv->work_since_rfq = false;
				}
				if (release_point(sv)) {
					if (!relay_range(sv, pos))
						return;
					pos = 0;
					sv->last_used = now_sec();
					pool_release_server(cl);
					/* The client may already have its next request buffered. */
					if (cl->state == CL_IDLE && conn_in_avail(&cl->c))
						client_process(cl);
					return;
				}
			} else if (type == 'C' && cl && blen == 12 && memcmp(body, "DISCARD ALL", 12) == 0) {
				client_unpin(cl, "DISCARD ALL"); /* every kind of session state is gone */
				client_discard_all(cl, sv);

			} else if (type == 'S') {
				handle_param_status(sv, body, blen);
			} else if (type == 'E') {
				sv->pool->stats.server_errors++;
				if (cl)
					client_set_error(cl);
			}
			continue;
		}
		/* Not relaying: an internal query's results, or chatter on an idle server. */
		if (!relay_range(sv, pos))
			return;
		pos = 0;
		conn_in_consume(&sv->c, total);
		switch (type) {
		case 'S':
			handle_param_status(sv, body, blen);
			break;
		case 'E':
			if (sv->state == SV_SETUP || sv->state == SV_RESET) {
				struct pg_error_fields ef;
				if (pg_parse_error(body, blen, &ef) == 0 && ef.message)
					SLOG(LOG_WARNING, sv, "internal query failed: %s %s", ef.sqlstate ? ef.sqlstate : "",
					     ef.message);
				sv->internal_failed = true;
			} else {
				struct pg_error_fields ef;
				char msg[300];
				if (pg_parse_error(body, blen, &ef) < 0 || !ef.message)
					ef.message = "error";
				snprintf(msg, sizeof(msg), "server sent an error while idle: %s", ef.message);
				server_close(sv, msg);
				return;
			}
			break;
		case 'Z':
			sv->tx_status = blen >= 1 ? (char)body[0] : 'I';
			if ((sv->state == SV_SETUP || sv->state == SV_RESET) && sv->internal_rfq) {
				if (--sv->internal_rfq == 0)
					internal_done(sv);
				return; /* linked client resumes; remaining input is processed later */
			}
			break;
		case 'N': case 'A': case 'C': case 'T': case 'D': case 'I': case '1': case '2': case '3': case 'n':
			if (sv->state == SV_SETUP || sv->state == SV_RESET)
				break;
			if (type == 'N' || type == 'A')
				break; /* a notice or notification nobody is listening for */
			/* fallthrough */
		default:
			server_close(sv, "unexpected message from server outside a request");
			return;
		}
	}
	if (sv->state != SV_DEAD && relay_range(sv, pos) && sv->client && prep_synth_due(&sv->client->prep))
		prep_drain_synth(sv->client);
}

static void server_read(struct server *sv)
{
	enum conn_io r = conn_fill(&sv->c);
	if (r == CONN_IO_EOF || r == CONN_IO_ERROR) {
		if (sv->state == SV_LOGIN) {
			char msg[300];
			snprintf(msg, sizeof(msg), "server %s closed the connection during login%s%s", sv->addr,
				 r == CONN_IO_ERROR ? ": " : "", r == CONN_IO_ERROR ? sv->c.error : "");
			login_error(sv, "08006", msg);
			return;
		}
		/* Pass on what arrived before the close (often a FATAL ErrorResponse). */
		server_process(sv);
		if (sv->state != SV_DEAD)
			server_close(sv, r == CONN_IO_EOF ? "server closed the connection" : sv->c.error);
		return;
	}
	server_process(sv);
	if (sv->state != SV_DEAD && sv->c.reading && conn_tls_pending(&sv->c))
		event_active(sv->c.ev_read, EV_READ, 0);
}

static void server_event(evutil_socket_t fd, short what, void *arg)
{
	struct server *sv = arg;
	(void)fd;
	if (sv->state == SV_DEAD)
		return;
	if (sv->state == SV_LOGIN && sv->login_step == SL_CONNECTING) {
		if (what & EV_WRITE) {
			event_del(sv->c.ev_write);
			sv->c.writing = false;
			on_connected(sv);
		}
		return;
	}
	if (sv->state == SV_LOGIN && sv->login_step == SL_TLS) {
		tls_step(sv);
		return;
	}
	if (what & EV_WRITE) {
		enum conn_io r = conn_flush(&sv->c);
		if (r == CONN_IO_ERROR) {
			server_close(sv, sv->c.error);
			return;
		}
		/* Drained: let the client's request bytes flow again. */
		struct client *cl = sv->client;
		if (r == CONN_IO_OK && cl && !cl->c.reading && sv->state == SV_ACTIVE) {
			conn_want_read(&cl->c, true);
			client_process(cl);
			if (sv->state == SV_DEAD)
				return;
		}
		if (sv->c.read_wants_write)
			what |= EV_READ;
	}
	if (what & EV_READ)
		server_read(sv);
}
