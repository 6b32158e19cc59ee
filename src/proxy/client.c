/* client.c - the application side: startup, TLS, authentication, then forwarding
 * requests to the linked server while tracking where each request ends, so that
 * the pool knows when a server connection can be handed to somebody else. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/intern.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/str.h"
#include "pg/md5.h"
#include "sql/ddl.h"
#include "sql/session.h"
#include "proxy/proxy.h"
#include "proxy/shard.h"

enum login_step {
	LS_STARTUP,      /* expecting a startup packet (or SSLRequest / CancelRequest) */
	LS_TLS,          /* TLS handshake in progress */
	LS_AUTH_MD5,     /* sent AuthenticationMD5Password */
	LS_AUTH_SASL1,   /* sent AuthenticationSASL, expecting SASLInitialResponse */
	LS_AUTH_SASL2,   /* sent SASLContinue, expecting SASLResponse */
	LS_AUTH_FAIL,    /* unknown user: ask anyway, then refuse (no user enumeration) */
	LS_AUTH_QUERY,   /* waiting for auth_query's answer (authq.c) */
};

#define AUTH_MSG_MAX 8192

static void client_event(evutil_socket_t fd, short what, void *arg);

const char *client_state_name(enum client_state s)
{
	static const char *n[] = {"login", "welcome", "idle", "waiting", "active", "dead"};
	return n[s];
}

#define CLOG(lvl, cl, fmt, ...)                                                                  \
	log_msg(lvl, "C-%llu %s %s@%s: " fmt, (unsigned long long)(cl)->id, (cl)->addr,          \
		(cl)->user ? (cl)->user : "?", (cl)->database ? (cl)->database : "?", ##__VA_ARGS__)

static void send_buf(struct client *cl, struct pg_buf *b)
{
	if (b->failed) {
		client_close(cl, "out of memory building a message");
		return;
	}
	if (conn_send(&cl->c, b->data, b->len) == CONN_IO_ERROR)
		CLOG(LOG_DEBUG, cl, "write failed: %s", cl->c.error);
}

void client_send_error(struct client *cl, const char *severity, const char *sqlstate, const char *msg)
{
	struct pg_buf b;
	pgb_init(&b);
	pgb_error(&b, severity, sqlstate, msg);
	send_buf(cl, &b);
	pgb_free(&b);
}

void client_fatal(struct client *cl, const char *sqlstate, const char *msg)
{
	if (cl->state == CL_DEAD)
		return;
	/* During the TLS handshake no plaintext may go out; just close. */
	if (!cl->c.tls_handshaking)
		client_send_error(cl, "FATAL", sqlstate, msg);
	client_close(cl, msg);
}

void client_accept(struct proxy *p, int fd, const struct sockaddr *sa, int salen)
{
	struct client *cl = zalloc_lines(sizeof(*cl));
	/* evconnlistener hands over sockets already non-blocking and close-on-exec. */
	if (!cl || conn_init(&cl->c, p->base, fd, client_event, cl) < 0) {
		log_error("cannot set up a new client connection: out of memory");
		free(cl);
		close(fd);
		return;
	}
	cl->proxy = p;
	cl->auth = calloc(1, sizeof(*cl->auth));
	if (!cl->auth) {
		log_error("cannot set up a new client connection: out of memory");
		conn_close(&cl->c);
		free(cl);
		return;
	}
	cl->id = shard_next_id();
	cl->state = CL_LOGIN;
	cl->connect_time = cl->last_active = now_sec();
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(cl->addr, sizeof(cl->addr), "%s:%u", a, ntohs(in->sin_port));
		cl->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		char a[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
		snprintf(cl->addr, sizeof(cl->addr), "[%s]:%u", a, ntohs(in6->sin6_port));
		cl->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	} else {
		snprintf(cl->addr, sizeof(cl->addr), "unix");
		cl->loopback = true;
	}
	(void)salen;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	list_init(&cl->node);
	list_add_tail(&p->all_clients, &cl->all_node);
	list_add_tail(&p->login_clients, &cl->node);
	p->n_clients++;
	atomic_fetch_add(&p->load, 1);
	int live = shard_clients_add(1);
	p->client_connections_total++;
	/* Pick a BackendKeyData no other client has: cancel requests are routed by it. */
	for (;;) {
		uint32_t v[2];
		proxy_random(p, v, sizeof(v));
		cl->cancel_pid = (v[0] & 0x3fffffff) | 1;
		if (shard_count() > 1) /* cancel requests find the shard in the low byte */
			cl->cancel_pid = (v[0] & 0x3fffff00) | (uint32_t)p->shard;
		if (!cl->cancel_pid)
			continue;
		cl->cancel_key = v[1];
		bool clash = false;
		struct list *it, *tmp;
		list_for_each_safe(it, tmp, &p->all_clients)
		{
			struct client *o = list_entry(it, struct client, all_node);
			if (o != cl && o->cancel_pid == cl->cancel_pid) {
				clash = true;
				break;
			}
		}
		if (!clash)
			break;
	}
	if (live > p->cfg->max_client_conn) {
		CLOG(LOG_WARNING, cl, "closing: max_client_conn (%d) reached", p->cfg->max_client_conn);
		client_fatal(cl, "53300", "sorry, too many clients already (pgmedic max_client_conn)");
		return;
	}
	if (p->shutting_down) {
		client_fatal(cl, "57P03", "pgmedic is shutting down");
		return;
	}
	conn_want_read(&cl->c, true);
}

/* ----------------------------------------------- named instances behind pins ---- */

#define NAMED_KINDS (SESS_LISTEN | SESS_HOLD_CURSOR | SESS_PREPARE | SESS_TEMP)

static void pin_names_clear(struct client *cl, unsigned bits)
{
	for (uint32_t i = 0; i < cl->npin_names;) {
		if (cl->pin_names[i].bit & bits)
			cl->pin_names[i] = cl->pin_names[--cl->npin_names];
		else
			i++;
	}
	cl->pin_unnamed &= ~bits;
	if (!cl->npin_names) {
		free(cl->pin_names);
		cl->pin_names = NULL;
		cl->cap_pin_names = 0;
	}
}

static void pin_name_add(struct client *cl, unsigned bit, const char *name)
{
	for (uint32_t i = 0; i < cl->npin_names; i++)
		if (cl->pin_names[i].bit == bit && strcmp(cl->pin_names[i].name, name) == 0)
			return;
	if (cl->npin_names == cl->cap_pin_names) {
		uint32_t nc = cl->cap_pin_names ? cl->cap_pin_names * 2 : 4;
		struct pin_name *v = nc <= 4096 ? realloc(cl->pin_names, nc * sizeof(*v)) : NULL;
		if (!v) {
			cl->pin_unnamed |= bit; /* cannot follow it by name: the kind stays pinned */
			return;
		}
		cl->pin_names = v;
		cl->cap_pin_names = nc;
	}
	cl->pin_names[cl->npin_names].bit = bit;
	snprintf(cl->pin_names[cl->npin_names].name, sizeof(cl->pin_names[0].name), "%s", name);
	cl->npin_names++;
}

/* A statement that pins: remember the instance by name where one statement names
 * exactly one, otherwise the kind can only be released as a whole. */
static void pin_record(struct client *cl, const uint8_t *q, size_t len, unsigned bits)
{
	if (!(bits & NAMED_KINDS))
		return;
	struct sql_sess_name nm;
	if (sql_session_name((const char *)q, len, &nm) && nm.op == SQL_NAME_ADD && (bits & NAMED_KINDS) == nm.bit)
		pin_name_add(cl, nm.bit, nm.name);
	else
		cl->pin_unnamed |= bits & NAMED_KINDS;
}

static void client_unlink_server(struct client *cl)
{
	struct server *sv = cl->server;
	if (!sv)
		return;
	/* A server can go back to the pool only at a clean protocol boundary, outside a
	 * transaction; anything else is closed rather than handed on dirty. */
	bool clean = sv->state == SV_ACTIVE && sv->tx_status == 'I' && cl->pending_rfq == 0 &&
		     !cl->in_extended && cl->stream_left == 0 && sv->stream_left == 0 &&
		     conn_out_pending(&sv->c) == 0;
	cl->server = NULL;
	sv->client = NULL;
	if (!clean && cl->pinned) {
		cl->proxy->n_pinned--;
		cl->pinned = 0;
		pin_names_clear(cl, ~0u);
	}
	if (!clean) {
		server_close(sv, sv->state == SV_SETUP ? "client left during server setup"
						       : "client left in the middle of a transaction or request");
		return;
	}
	/* A pinned transaction-mode server carries session state: reset it like a
	 * session-mode one (DISCARD ALL also drops locks, LISTENs and temp tables). */
	bool reset = sv->pool->mode == POOL_SESSION || cl->pinned;
	if (cl->pinned) {
		cl->proxy->n_pinned--;
		cl->pinned = 0;
		pin_names_clear(cl, ~0u);
	}
	if (reset && sv->proxy->cfg->server_reset_query && sv->proxy->cfg->server_reset_query[0])
		server_begin_reset(sv);
	else if (reset)
		server_close(sv, "session state left behind and server_reset_query is empty");
	else
		pool_server_ready(sv);
}

void client_close(struct client *cl, const char *reason)
{
	if (cl->state == CL_DEAD)
		return;
	struct proxy *p = cl->proxy;
	/* Ordinary goodbyes are debug-level; everything else says why at info. */
	bool ordinary = strcmp(reason, "client sent Terminate") == 0 || strcmp(reason, "cancel request handled") == 0 ||
			(!cl->user && !cl->c.got_input); /* port probes, health checks */
	if (cl->state == CL_LOGIN && !cl->auth_ok)
		CLOG(ordinary ? LOG_DEBUG : LOG_INFO, cl, "closing during login: %s", reason);
	else
		CLOG(ordinary ? LOG_DEBUG : LOG_INFO, cl, "closing: %s", reason);
	authq_forget_client(cl);
	client_unlink_server(cl);
	if (cl->prof) {
		shard_prof_lock();
		prof_client_free(p->prof, &cl->prof);
		shard_prof_unlock();
	}
	client_retry_clear(cl);
	pin_names_clear(cl, ~0u);
	free(cl->pending_unname);
	cl->pending_unname = NULL;
	if (cl->pinned) {
		/* Its server went first (or it had none): the pin ends with the client. */
		cl->pinned = 0;
		p->n_pinned--;
	}
	/* Last chance for queued output (an ErrorResponse explaining the close). */
	if (conn_out_pending(&cl->c) && !cl->c.tls_handshaking)
		(void)conn_flush(&cl->c);
	conn_close(&cl->c);
	if (cl->pool)
		pool_client_move(cl, CL_DEAD); /* off its pool list, counters updated */
	list_del(&cl->node);
	cl->state = CL_DEAD;
	list_del(&cl->all_node);
	list_add_tail(&p->dead_clients, &cl->node);
	p->n_clients--;
	atomic_fetch_sub(&p->load, 1);
	shard_clients_add(-1);
	proxy_schedule_reap(p);
}

/* ---------------------------------------------------------------- login ---- */

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? strdup(v) : NULL;
}

void client_set_want(struct client *cl, int idx, const char *v)
{
	intern_set(&cl->want[idx], v);
	cl->want_ver++;
}

/* Upserts name = sql (SQL text of the value).  startup: it is the startup option. */
static void kv_put(struct param_kv **list, size_t *n, const char *name, const char *sql, bool startup)
{
	for (size_t i = 0; i < *n; i++)
		if (strcasecmp((*list)[i].name, name) == 0) {
			set_str(&(*list)[i].value, sql);
			if (startup)
				set_str(&(*list)[i].startup_value, sql);
			return;
		}
	struct param_kv *nl = realloc(*list, (*n + 1) * sizeof(*nl));
	if (!nl)
		return;
	*list = nl;
	nl[*n].name = strdup(name);
	nl[*n].value = strdup(sql);
	nl[*n].startup_value = startup ? strdup(sql) : NULL;
	if (!nl[*n].name || !nl[*n].value || (startup && !nl[*n].startup_value)) {
		free(nl[*n].name);
		free(nl[*n].value);
		free(nl[*n].startup_value);
		return;
	}
	(*n)++;
}

static void kv_del_at(struct param_kv **list, size_t *n, size_t i)
{
	free((*list)[i].name);
	free((*list)[i].value);
	free((*list)[i].startup_value);
	(*list)[i] = (*list)[--*n];
}

static void kv_del(struct param_kv **list, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcasecmp((*list)[i].name, name) == 0) {
			kv_del_at(list, n, i);
			return;
		}
}

/* RESET of one entry: back to its startup value, or gone. */
static void kv_reset_at(struct param_kv **list, size_t *n, size_t i)
{
	if ((*list)[i].startup_value)
		set_str(&(*list)[i].value, (*list)[i].startup_value);
	else
		kv_del_at(list, n, i);
}

static void kv_clear(struct param_kv **list, size_t *n, bool keep_startup)
{
	for (size_t i = *n; i > 0; i--) {
		if (keep_startup)
			kv_reset_at(list, n, i - 1);
		else
			kv_del_at(list, n, i - 1);
	}
}

static void add_extra(struct client *cl, const char *name, const char *value)
{
	char lit[2100];
	if (pg_quote_literal(value, lit, sizeof(lit)) < 0)
		return;
	kv_put(&cl->extra, &cl->nextra, name, lit, true);
}

static void set_cmd_free(struct set_cmd *c)
{
	free(c->name);
	free(c->value);
	memset(c, 0, sizeof(*c));
}

/* The SET took effect on this server connection and, for the client, from now on. */
static void set_apply(struct client *cl, struct server *sv, const struct set_cmd *c)
{
	switch (c->kind) {
	case SQL_SET:
		kv_put(&cl->extra, &cl->nextra, c->name, c->value, false);
		if (sv)
			kv_put(&sv->extra, &sv->nextra, c->name, c->value, false);
		break;
	case SQL_RESET:
		if (c->tracked >= 0) {
			/* A reported parameter returns to the client's startup value (the
			 * server reported its own default; the next setup corrects it). */
			client_set_want(cl, c->tracked, cl->startup_want[c->tracked]);
			break;
		}
		for (size_t i = 0; i < cl->nextra; i++)
			if (strcasecmp(cl->extra[i].name, c->name) == 0) {
				kv_reset_at(&cl->extra, &cl->nextra, i);
				break;
			}
		if (sv)
			kv_del(&sv->extra, &sv->nextra, c->name);
		break;
	case SQL_RESET_ALL:
		client_discard_all(cl, sv);
		break;
	}
}

/* RESET ALL or DISCARD ALL ran: SETs are gone; startup options come back with the
 * next server setup (pgmedic applied them with SET, so the server forgot them). */
void client_discard_all(struct client *cl, struct server *sv)
{
	kv_clear(&cl->extra, &cl->nextra, true);
	if (sv)
		kv_clear(&sv->extra, &sv->nextra, false);
	cl->restore_startup = true; /* reported parameters: at ReadyForQuery, after the server's reports */
}

bool client_tracks_sets(const struct client *cl)
{
	return cl->pending_set.kind || cl->restore_startup || cl->pending_release || cl->pending_unname;
}

void client_set_error(struct client *cl)
{
	if (cl->pending_set.kind)
		cl->pending_set_failed = true;
	if (cl->pending_release || cl->pending_unname)
		cl->pending_release_failed = true;
}

static void pin(struct client *cl, unsigned bits, const char *why)
{
	if (!cl->pinned) {
		cl->proxy->n_pinned++;
		CLOG(LOG_INFO, cl, "pinned to server connection S-%llu until it disconnects or runs DISCARD ALL: %s",
		     cl->server ? (unsigned long long)cl->server->id : 0ULL, why);
	}
	for (unsigned i = 0; i < 8; i++)
		if ((bits & ~cl->pinned) & (1u << i))
			cl->proxy->pins_total[i]++;
	cl->pinned |= bits;
}

void client_settle_sets(struct client *cl, struct server *sv, char tx_status)
{
	if (cl->pending_set.kind) {
		struct set_cmd c = cl->pending_set;
		memset(&cl->pending_set, 0, sizeof(cl->pending_set));
		if (cl->pending_set_failed || tx_status == 'E') {
			/* refused: nothing changed */
		} else if (tx_status == 'I') {
			set_apply(cl, sv, &c);
		} else {
			/* Inside a transaction block its fate depends on COMMIT, savepoints,
			 * COMMIT AND CHAIN...: not modelled; the client keeps its server. */
			pin(cl, SESS_SET, "SET inside a transaction block");
		}
		set_cmd_free(&c);
		cl->pending_set_failed = false;
	}
	if (cl->pending_release && cl->pending_rfq == 0) {
		/* Outside a transaction block and without an error, the state is gone for
		 * good (inside one, a ROLLBACK could bring it back: keep the pin). */
		unsigned bits = cl->pending_release;
		cl->pending_release = 0;
		if (!cl->pending_release_failed && tx_status == 'I' && (cl->pinned & bits)) {
			pin_names_clear(cl, bits);
			cl->pinned &= ~bits;
			if (!cl->pinned) {
				char why[80];
				snprintf(why, sizeof(why), "its last session state (%s) is gone", sess_state_name(bits));
				cl->pinned = bits; /* client_unpin logs and counts */
				client_unpin(cl, why);
			}
		}
		cl->pending_release_failed = false;
	}
	if (cl->pending_unname && cl->pending_rfq == 0) {
		struct sql_sess_name *nm = cl->pending_unname;
		cl->pending_unname = NULL;
		if (!cl->pending_release_failed && tx_status == 'I' && (cl->pinned & nm->bit)) {
			bool left = (cl->pin_unnamed & nm->bit) != 0;
			for (uint32_t i = 0; i < cl->npin_names;) {
				struct pin_name *pn = &cl->pin_names[i];
				if (pn->bit == nm->bit && strcmp(pn->name, nm->name) == 0) {
					*pn = cl->pin_names[--cl->npin_names];
					continue;
				}
				left |= pn->bit == nm->bit;
				i++;
			}
			if (!left) {
				/* the last of its kind is gone */
				cl->pinned &= ~nm->bit;
				if (!cl->pinned) {
					char why[160];
					snprintf(why, sizeof(why), "its last session state (%s \"%s\") is gone",
						 sess_state_name(nm->bit), nm->name);
					cl->pinned = nm->bit; /* client_unpin logs and counts */
					client_unpin(cl, why);
				}
			}
		}
		free(nm);
		cl->pending_release_failed = false;
	}
	if (cl->restore_startup && tx_status == 'I') {
		cl->restore_startup = false;
		for (int i = 0; i < PG_TRACKED_PARAMS; i++)
			client_set_want(cl, i, cl->startup_want[i]);
	}
}

static void set_param(struct client *cl, const char *name, const char *value)
{
	int idx = pg_tracked_param_index(name);
	if (idx >= 0) {
		client_set_want(cl, idx, value);
		intern_set(&cl->startup_want[idx], value);
	}
	else
		add_extra(cl, name, value);
}

/* libpq's `options`: "-c name=value" or "--name=value" items, backslash escapes. */
static int parse_options(struct client *cl, const char *opts, char *err, size_t errlen)
{
	const char *p = opts;
	char tok[1024];
	bool expect_c = false;
	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		size_t n = 0;
		while (*p && *p != ' ' && *p != '\t') {
			if (*p == '\\' && p[1])
				p++;
			if (n + 1 >= sizeof(tok)) {
				snprintf(err, errlen, "startup option too long");
				return -1;
			}
			tok[n++] = *p++;
		}
		tok[n] = 0;
		const char *kv = NULL;
		if (expect_c) {
			kv = tok;
			expect_c = false;
		} else if (strcmp(tok, "-c") == 0) {
			expect_c = true;
			continue;
		} else if (strncmp(tok, "-c", 2) == 0) {
			kv = tok + 2;
		} else if (strncmp(tok, "--", 2) == 0) {
			kv = tok + 2;
		} else {
			snprintf(err, errlen, "unsupported startup option \"%s\" (only -c name=value is supported)", tok);
			return -1;
		}
		char *eq = strchr(kv, '=');
		if (!eq) {
			snprintf(err, errlen, "-c %s requires a value", kv);
			return -1;
		}
		*eq = 0;
		/* "--search-path" style names use dashes for underscores, as postgres does. */
		for (char *q = (char *)kv; *q; q++)
			if (*q == '-')
				*q = '_';
		set_param(cl, kv, eq + 1);
	}
	return 0;
}

static void auth_request_md5(struct client *cl)
{
	struct pg_buf b;
	if (RAND_bytes(cl->auth->md5_salt, 4) != 1)
		memset(cl->auth->md5_salt, 0x5a, 4);
	pgb_init(&b);
	pgb_auth(&b, PG_AUTH_MD5, cl->auth->md5_salt, 4);
	send_buf(cl, &b);
	pgb_free(&b);
}

static void auth_request_sasl(struct client *cl)
{
	struct pg_buf b;
	static const char mechs[] = "SCRAM-SHA-256\0"; /* list ends with an empty name */
	pgb_init(&b);
	pgb_auth(&b, PG_AUTH_SASL, mechs, sizeof(mechs));
	send_buf(cl, &b);
	pgb_free(&b);
}

static void auth_failed(struct client *cl)
{
	char msg[256];
	cl->proxy->client_login_failures++;
	snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", cl->user);
	client_fatal(cl, "28P01", msg);
}

/* The admin console: no pool, no server; pgmedic answers itself. */
static void admin_login_done(struct client *cl)
{
	struct proxy *p = cl->proxy;
	if (!admin_user_allowed(p, cl->user)) {
		char msg[200];
		snprintf(msg, sizeof(msg), "user \"%s\" is not allowed on the admin console (admin_users)", cl->user);
		client_fatal(cl, "28000", msg);
		return;
	}
	cl->auth_ok = true;
	if (cl->auth) {
		OPENSSL_cleanse(cl->auth, sizeof(*cl->auth));
		free(cl->auth);
		cl->auth = NULL;
	}
	struct pg_buf b;
	pgb_init(&b);
	pgb_auth(&b, PG_AUTH_OK, NULL, 0);
	pgb_param_status(&b, "server_version", "15.0 (pgmedic " PGMEDIC_VERSION ")");
	pgb_param_status(&b, "server_encoding", "UTF8");
	pgb_param_status(&b, "client_encoding", cl->want[0] ? cl->want[0] : "UTF8");
	pgb_param_status(&b, "DateStyle", "ISO, MDY");
	pgb_param_status(&b, "TimeZone", "UTC");
	pgb_param_status(&b, "integer_datetimes", "on");
	pgb_param_status(&b, "standard_conforming_strings", "on");
	pgb_param_status(&b, "application_name", cl->want[5] ? cl->want[5] : "");
	pgb_backend_key(&b, cl->cancel_pid, cl->cancel_key);
	pgb_ready(&b, 'I');
	send_buf(cl, &b);
	pgb_free(&b);
	if (cl->state == CL_DEAD)
		return;
	list_del(&cl->node);
	list_add_tail(&p->admin_clients, &cl->node);
	cl->state = CL_IDLE;
	CLOG(LOG_INFO, cl, "admin console login");
	if (conn_in_avail(&cl->c))
		client_process(cl);
}

static void auth_done(struct client *cl)
{
	struct proxy *p = cl->proxy;
	if (cl->admin) {
		admin_login_done(cl);
		return;
	}
	const struct db_entry *db = config_find_db(p->cfg, cl->database);
	if (!db) {
		char msg[300];
		snprintf(msg, sizeof(msg), "database \"%s\" does not exist", cl->database);
		client_fatal(cl, "3D000", msg);
		return;
	}
	struct pool *pool = pool_get(p, cl->database, cl->user, db);
	if (!pool) {
		client_fatal(cl, "53200", "out of memory");
		return;
	}
	if (cl->auth->from_auth_query && secret_kind_of(cl->auth->secret) == SECRET_MD5 && !pool->cred.password) {
		/* The latest hash from the server wins: the password may have changed. */
		char *m = strdup(cl->auth->secret);
		if (m) {
			free(pool->cred.md5_secret);
			pool->cred.md5_secret = m;
		}
	}
	/* Teach the pool how to log in upstream as this user, if it has nothing better. */
	if (cl->auth->have_pass_key && !pool->cred.password) {
		memcpy(pool->cred.client_key, cl->auth->pass_client_key, SCRAM_KEY_LEN);
		pool->cred.secret = cl->auth->scram.secret;
		pool->cred.have_scram_keys = true;
	}
	cl->auth_ok = true;
	cl->pool = pool;
	OPENSSL_cleanse(cl->auth, sizeof(*cl->auth));
	free(cl->auth);
	cl->auth = NULL;
	list_del(&cl->node);
	cl->state = CL_LOGIN; /* not on a pool list yet */
	if (pool->have_welcome || pool_group_adopt_welcome(pool->group, pool)) {
		client_finish_welcome(cl); /* AuthenticationOk and welcome in one write */
	} else {
		if (pool_refuse_failing(pool, cl))
			return;
		struct pg_buf b;
		pgb_init(&b);
		pgb_auth(&b, PG_AUTH_OK, NULL, 0);
		send_buf(cl, &b);
		pgb_free(&b);
		if (cl->state == CL_DEAD)
			return;
		cl->auth_ok_sent = true;
		pool_client_move(cl, CL_WELCOME);
		conn_want_read(&cl->c, false);
		pool_maybe_launch(pool);
	}
}

void client_finish_welcome(struct client *cl)
{
	struct pool *pool = cl->pool;
	struct pg_buf b;
	pgb_init(&b);
	if (!cl->auth_ok_sent)
		pgb_auth(&b, PG_AUTH_OK, NULL, 0);
	cl->auth_ok_sent = true;
	/* Replay the server's ParameterStatus set, with this client's own startup values
	 * where it chose them (they will be applied to whichever server it gets). */
	struct pg_reader r;
	pgr_init(&r, pool->welcome.data, pool->welcome.len);
	while (pgr_left(&r) > 5) {
		uint8_t t = pgr_u8(&r);
		uint32_t len = pgr_u32(&r);
		if (r.err || len < 4 || len - 4 > pgr_left(&r))
			break;
		const uint8_t *body = pgr_bytes(&r, len - 4);
		if (t != 'S')
			continue;
		struct pg_reader br;
		pgr_init(&br, body, len - 4);
		const char *name = pgr_cstr(&br, NULL);
		const char *val = pgr_cstr(&br, NULL);
		if (!name || !val)
			continue;
		int idx = pg_tracked_param_index(name);
		if (idx >= 0 && cl->want[idx])
			val = cl->want[idx];
		pgb_param_status(&b, name, val);
	}
	pgb_backend_key(&b, cl->cancel_pid, cl->cancel_key);
	pgb_ready(&b, 'I');
	send_buf(cl, &b);
	pgb_free(&b);
	if (cl->state == CL_DEAD)
		return;
	pool_client_move(cl, CL_IDLE);
	CLOG(LOG_DEBUG, cl, "login complete");
	conn_want_read(&cl->c, true);
	if (conn_in_avail(&cl->c))
		client_process(cl);
}

/* Deriving a SCRAM secret from a plaintext password costs thousands of HMACs:
 * do it once per (user, password) and keep the result for the next logins. */
static int scram_secret_cached(struct proxy *p, const char *user, const char *password, struct scram_secret *out)
{
	for (struct scram_cache *c = p->scram_cache; c; c = c->next)
		if (strcmp(c->user, user) == 0 && strcmp(c->password, password) == 0) {
			*out = c->secret;
			return 0;
		}
	if (scram_secret_from_password(password, NULL, 0, SCRAM_DEFAULT_ITERATIONS, out) < 0)
		return -1;
	struct scram_cache *c = calloc(1, sizeof(*c));
	if (c) {
		c->user = strdup(user);
		c->password = strdup(password);
		if (c->user && c->password) {
			c->secret = *out;
			c->next = p->scram_cache;
			p->scram_cache = c;
		} else {
			free(c->user);
			free(c->password);
			free(c);
		}
	}
	return 0;
}

static void begin_auth(struct client *cl, const char *secret);

static void start_auth(struct client *cl)
{
	struct proxy *p = cl->proxy;
	const struct config *cfg = p->cfg;
	if (cfg->auth_type == AUTH_TRUST) {
		auth_done(cl);
		return;
	}
	const char *secret = NULL;
	const struct user_entry *ue = userlist_find(&p->users, cl->user);
	if (ue) {
		secret = ue->secret;
	} else {
		const struct db_entry *db = config_find_db(cfg, cl->database);
		if (db && db_password_for(db, cl->user))
			secret = db->password;
	}
	if (!secret && cfg->auth_user && !cl->admin && strcmp(cl->user, cfg->auth_user) != 0) {
		/* Ask PostgreSQL for this user's secret; the login resumes in
		 * client_auth_query_done. */
		cl->login_step = LS_AUTH_QUERY;
		if (authq_lookup(p, cl) < 0)
			client_fatal(cl, "08006", "auth_query: cannot reach the database to look up the user");
		return;
	}
	begin_auth(cl, secret);
}

void client_auth_query_done(struct client *cl, const char *secret, const char *error)
{
	if (cl->state == CL_DEAD)
		return;
	cl->authq_req = NULL;
	if (error) {
		char msg[300];
		snprintf(msg, sizeof(msg), "auth_query failed: %s", error);
		client_fatal(cl, "08006", msg);
		return;
	}
	/* A user auth_query does not know gets the same answer as a wrong password
	 * (after the exchange), so user names cannot be probed. */
	cl->auth->from_auth_query = secret != NULL;
	begin_auth(cl, secret);
	if (cl->state != CL_DEAD && conn_in_avail(&cl->c))
		client_process(cl);
}

static void begin_auth(struct client *cl, const char *secret)
{
	const struct config *cfg = cl->proxy->cfg;
	enum secret_kind kind = secret ? secret_kind_of(secret) : SECRET_PLAIN;
	cl->auth->have_secret = secret != NULL && strlen(secret) < sizeof(cl->auth->secret);
	if (cl->auth->have_secret)
		strcpy(cl->auth->secret, secret);

	bool use_scram = cfg->auth_type == AUTH_SCRAM || kind == SECRET_SCRAM;
	if (use_scram && cl->auth->have_secret && kind == SECRET_MD5) {
		/* As PostgreSQL: an md5 hash cannot answer a SCRAM exchange. */
		CLOG(LOG_WARNING, cl, "auth_type is scram-sha-256 but the auth file holds an md5 hash for this user");
		cl->auth->have_secret = false;
	}
	if (!use_scram) {
		if (cl->auth->have_secret && kind == SECRET_PLAIN) {
			char m[PG_MD5_LEN + 1];
			pg_md5_secret(cl->auth->secret, cl->user, m);
			strcpy(cl->auth->secret, m);
		}
		cl->login_step = cl->auth->have_secret ? LS_AUTH_MD5 : LS_AUTH_FAIL;
		auth_request_md5(cl);
		return;
	}
	struct scram_secret ss;
	if (cl->auth->have_secret && kind == SECRET_SCRAM) {
		if (scram_secret_parse(cl->auth->secret, &ss) < 0) {
			CLOG(LOG_WARNING, cl, "malformed SCRAM secret in auth file");
			cl->auth->have_secret = false;
		}
	} else if (cl->auth->have_secret) {
		if (scram_secret_cached(cl->proxy, cl->user, cl->auth->secret, &ss) < 0)
			cl->auth->have_secret = false;
	}
	if (!cl->auth->have_secret) {
		/* Run a mock exchange that can never succeed, like PostgreSQL does. */
		if (scram_secret_from_password("", NULL, 0, SCRAM_DEFAULT_ITERATIONS, &ss) < 0)
			memset(&ss, 0, sizeof(ss));
		RAND_bytes(ss.stored_key, sizeof(ss.stored_key));
	}
	scram_server_init(&cl->auth->scram, &ss, NULL);
	cl->login_step = LS_AUTH_SASL1;
	auth_request_sasl(cl);
}

static void handle_startup(struct client *cl, const uint8_t *pkt, uint32_t len)
{
	struct proxy *p = cl->proxy;
	struct pg_startup st;
	char err[256];
	if (pg_parse_startup(pkt, len, &st, err, sizeof(err)) < 0) {
		p->bad_packets++;
		client_fatal(cl, "08P01", err);
		return;
	}
	if (st.code == PG_SSL_REQUEST) {
		if (cl->tls_done) {
			client_fatal(cl, "08P01", "SSLRequest received on an encrypted connection");
			return;
		}
		conn_in_consume(&cl->c, len);
		if (p->client_tls && p->cfg->client_tls_sslmode != SSLMODE_DISABLE) {
			/* Bytes after SSLRequest and before the handshake were not protected by
			 * TLS: refuse them (the CVE-2021-23222 class of injection). */
			if (conn_in_avail(&cl->c)) {
				p->bad_packets++;
				client_fatal(cl, "08P01", "received unencrypted data after SSL request");
				return;
			}
			(void)conn_send(&cl->c, "S", 1);
			if (conn_tls_begin(&cl->c, p->client_tls, true, NULL, false) < 0) {
				client_close(cl, "cannot start TLS");
				return;
			}
			cl->login_step = LS_TLS;
			switch (conn_tls_handshake(&cl->c)) {
			case CONN_IO_ERROR:
				client_close(cl, cl->c.error);
				return;
			default:
				return;
			}
		}
		(void)conn_send(&cl->c, "N", 1);
		return;
	}
	if (st.code == PG_GSSENC_REQUEST) {
		conn_in_consume(&cl->c, len);
		(void)conn_send(&cl->c, "N", 1);
		return;
	}
	if (st.code == PG_CANCEL_REQUEST) {
		p->cancel_requests++;
		cancel_forward(p, st.cancel_pid, st.cancel_key);
		client_close(cl, "cancel request handled");
		return;
	}
	cl->user = strdup(st.user);
	cl->database = strdup(st.database);
	conn_in_consume(&cl->c, len);
	if (!cl->user || !cl->database) {
		client_fatal(cl, "53200", "out of memory");
		return;
	}
	if (p->cfg->client_tls_sslmode >= SSLMODE_REQUIRE && !cl->tls_done) {
		client_fatal(cl, "28000", "pgmedic requires an encrypted connection (client_tls_sslmode)");
		return;
	}
	cl->admin = admin_database(cl->database);
	if (st.replication) {
		client_fatal(cl, "08P01", "replication connections are not supported by pgmedic");
		return;
	}
	if ((st.code & 0xffff) != 0 || st.npq_options) {
		/* A newer 3.x client: tell it we speak 3.0 (as PostgreSQL 15 does). */
		struct pg_buf nb;
		pgb_init(&nb);
		pgb_negotiate_version(&nb, &st);
		send_buf(cl, &nb);
		pgb_free(&nb);
		if (cl->state == CL_DEAD)
			return;
	}
	for (size_t i = 0; i < st.nparams; i++)
		set_param(cl, st.params[i].name, st.params[i].value);
	if (st.options && parse_options(cl, st.options, err, sizeof(err)) < 0) {
		client_fatal(cl, "08P01", err);
		return;
	}
	CLOG(LOG_DEBUG, cl, "startup%s", cl->tls_done ? " (TLS)" : "");
	start_auth(cl);
}

/* The SASL and password messages. */
static void handle_auth_msg(struct client *cl, uint8_t type, const uint8_t *body, size_t blen)
{
	if (type != 'p') {
		client_fatal(cl, "08P01", "expected password response");
		return;
	}
	struct pg_reader r;
	pgr_init(&r, body, blen);
	char out[1024];
	if (cl->login_step == LS_AUTH_FAIL) {
		auth_failed(cl);
		return;
	}
	if (cl->login_step == LS_AUTH_MD5) {
		size_t plen;
		const char *pw = pgr_cstr(&r, &plen);
		if (!pw || pgr_left(&r) != 0) {
			client_fatal(cl, "08P01", "invalid password packet");
			return;
		}
		char expect[PG_MD5_LEN + 1];
		pg_md5_response(cl->auth->secret, cl->auth->md5_salt, expect);
		if (plen != PG_MD5_LEN || !pg_secure_streq(pw, expect)) {
			auth_failed(cl);
			return;
		}
		auth_done(cl);
		return;
	}
	if (cl->login_step == LS_AUTH_SASL1) {
		const char *mech = pgr_cstr(&r, NULL);
		uint32_t dlen = pgr_u32(&r);
		if (!mech || r.err || dlen == 0xffffffffu || dlen != pgr_left(&r)) {
			client_fatal(cl, "08P01", "malformed SASLInitialResponse");
			return;
		}
		if (strcmp(mech, "SCRAM-SHA-256") != 0) {
			client_fatal(cl, "28000", "client selected an invalid SASL authentication mechanism");
			return;
		}
		int n = scram_server_handle_first(&cl->auth->scram, (const char *)r.p, dlen, out, sizeof(out));
		if (n < 0) {
			client_fatal(cl, "08P01", "malformed SCRAM message");
			return;
		}
		struct pg_buf b;
		pgb_init(&b);
		pgb_auth(&b, PG_AUTH_SASL_CONTINUE, out, (size_t)n);
		send_buf(cl, &b);
		pgb_free(&b);
		cl->login_step = LS_AUTH_SASL2;
		return;
	}
	if (cl->login_step == LS_AUTH_SASL2) {
		int n = scram_server_handle_final(&cl->auth->scram, (const char *)body, blen, out, sizeof(out));
		if (n == -2 || (n >= 0 && !cl->auth->have_secret)) {
			auth_failed(cl);
			return;
		}
		if (n < 0) {
			client_fatal(cl, "08P01", "malformed SCRAM message");
			return;
		}
		struct pg_buf b;
		pgb_init(&b);
		pgb_auth(&b, PG_AUTH_SASL_FINAL, out, (size_t)n);
		send_buf(cl, &b);
		pgb_free(&b);
		if (cl->auth->scram.have_client_key && secret_kind_of(cl->auth->secret) == SECRET_SCRAM) {
			memcpy(cl->auth->pass_client_key, cl->auth->scram.client_key, SCRAM_KEY_LEN);
			cl->auth->have_pass_key = true;
		}
		auth_done(cl);
		return;
	}
	client_fatal(cl, "08P01", "unexpected message during authentication");
}

static void login_process(struct client *cl)
{
	while (cl->state == CL_LOGIN && !cl->auth_ok) {
		const uint8_t *d = conn_in_data(&cl->c);
		size_t avail = conn_in_avail(&cl->c);
		if (cl->login_step == LS_TLS || cl->login_step == LS_AUTH_QUERY)
			return;
		if (cl->login_step == LS_STARTUP) {
			uint32_t len;
			enum pg_frame f = pg_frame_startup(d, avail, &len);
			if (f == PG_FRAME_NEED_MORE)
				return;
			if (f == PG_FRAME_BAD) {
				cl->proxy->bad_packets++;
				client_fatal(cl, "08P01", "invalid length of startup packet");
				return;
			}
			if (avail < len)
				return;
			handle_startup(cl, d, len);
			continue;
		}
		uint8_t type;
		uint32_t len;
		enum pg_frame f = pg_frame_header(d, avail, &type, &len);
		if (f == PG_FRAME_NEED_MORE)
			return;
		if (f == PG_FRAME_BAD || len > AUTH_MSG_MAX) {
			cl->proxy->bad_packets++;
			client_fatal(cl, "08P01", "invalid message length during authentication");
			return;
		}
		if (avail < (size_t)len + 1) {
			if (conn_in_reserve(&cl->c, (size_t)len + 1, AUTH_MSG_MAX + 1) < 0)
				client_fatal(cl, "53200", "out of memory");
			return;
		}
		conn_in_consume(&cl->c, (size_t)len + 1);
		/* The consumed bytes are still intact in the buffer until the next read. */
		handle_auth_msg(cl, type, d + 5, len - 4);
	}
}

/* ---------------------------------------------------------- forwarding ---- */

void client_linked(struct client *cl)
{
	struct pool *pool = cl->pool;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t us = (uint64_t)(ts.tv_sec - cl->wait_start.tv_sec) * 1000000u +
		      (uint64_t)((ts.tv_nsec - cl->wait_start.tv_nsec) / 1000);
	if (cl->wait_start.tv_sec) {
		pool->stats.wait_us_total += us;
		pool->stats.waits++;
		if (us > pool->stats.wait_us_max)
			pool->stats.wait_us_max = us;
		cl->wait_start.tv_sec = 0;
		if (cl->proxy->prof->on)
			prof_client_waited(&cl->prof, us);
	}
	conn_want_read(&cl->c, true);
	client_process(cl);
}

/* Sends bytes [0, n) of the input buffer to the server and consumes them. */
static bool forward_range(struct client *cl, size_t n)
{
	if (n == 0)
		return true;
	struct server *sv = cl->server;
	cl->pool->stats.bytes_in += n;
	enum conn_io r = conn_send(&sv->c, conn_in_data(&cl->c), n);
	conn_in_consume(&cl->c, n);
	if (r == CONN_IO_ERROR) {
		server_close(sv, sv->c.error[0] ? sv->c.error : "write to server failed");
		return false;
	}
	if (conn_out_pending(&sv->c) > CONN_OUT_HIGH)
		conn_want_read(&cl->c, false); /* resumed when the server drains */
	return true;
}

void client_unpin(struct client *cl, const char *why)
{
	if (!cl->pinned)
		return;
	cl->pinned = 0;
	cl->proxy->n_pinned--;
	pin_names_clear(cl, ~0u);
	CLOG(LOG_INFO, cl, "unpinned from its server connection: %s", why);
}

/* Transaction mode: a statement that leaves session state behind keeps this client
 * on its server connection until the client leaves (or runs DISCARD ALL). */
static void check_session_state(struct client *cl, const uint8_t *q, size_t len, bool simple)
{
	/* Nearly every statement: no SET to replay, nothing that pins.  A pinned
	 * client's statements may still release state (below). */
	if (!cl->pinned && sql_plainly_stateless((const char *)q, len))
		return;
	struct sql_set ps;
	if (simple && !cl->pending_set.kind && cl->pending_rfq == 0 && !cl->in_extended &&
	    sql_parse_set((const char *)q, len, &ps)) {
		/* A plain SET/RESET, alone on the wire: replayed wherever the client goes,
		 * once its own ReadyForQuery confirms it (client_settle_sets). */
		cl->pending_set.kind = (int)ps.kind;
		cl->pending_set.tracked = ps.tracked;
		cl->pending_set.name = strdup(ps.name);
		cl->pending_set.value = ps.kind == SQL_SET ? strndup(ps.value, ps.value_len) : NULL;
		cl->pending_set_failed = false;
		if (cl->pending_set.name && (ps.kind != SQL_SET || cl->pending_set.value))
			return;
		set_cmd_free(&cl->pending_set); /* out of memory: pin instead */
	}
	if (simple && cl->pinned && cl->pending_rfq == 0 && !cl->in_extended) {
		unsigned rel = sql_session_release((const char *)q, len);
		if (rel & cl->pinned) {
			cl->pending_release = rel;
			cl->pending_release_failed = false;
			return;
		}
		struct sql_sess_name nm;
		if (!cl->pending_unname && sql_session_name((const char *)q, len, &nm) && nm.op == SQL_NAME_REMOVE &&
		    (cl->pinned & nm.bit)) {
			cl->pending_unname = malloc(sizeof(nm));
			if (cl->pending_unname) {
				*cl->pending_unname = nm;
				cl->pending_release_failed = false;
			}
			return;
		}
	}
	size_t qlen = pgm_strnlen((const char *)q, len);
	unsigned bits = sql_session_state((const char *)q, qlen);
	if (!bits)
		return;
	/* Function calls are where the scanner's first words are not enough. */
	bits = sql_session_confirm((const char *)q, qlen, bits);
	if (!bits)
		return;
	pin_record(cl, q, qlen, bits);
	if ((cl->pinned & bits) == bits)
		return;
	unsigned newbits = bits & ~cl->pinned;
	for (unsigned i = 0; i < 8; i++)
		if (newbits & (1u << i))
			cl->proxy->pins_total[i]++;
	if (!cl->pinned) {
		/* The statement, on one line, cut at a character boundary. */
		char shown[104];
		size_t n = 0;
		for (size_t i = 0; i < len && q[i] && n < 100; i++)
			shown[n++] = (q[i] == '\n' || q[i] == '\r' || q[i] == '\t') ? ' ' : (char)q[i];
		while (n > 0 && ((unsigned char)shown[n - 1] & 0xC0) == 0x80)
			n--;
		if (n > 0 && ((unsigned char)shown[n - 1] & 0xC0) == 0xC0)
			n--;
		shown[n] = 0;
		cl->proxy->n_pinned++;
		CLOG(LOG_INFO, cl, "pinned to server connection S-%llu until it disconnects or runs DISCARD ALL: %s in \"%s%s\"",
		     cl->server ? (unsigned long long)cl->server->id : 0ULL, sess_state_name(newbits), shown,
		     n < len && q[n] ? "..." : "");
	}
	cl->pinned |= bits;
}

/* DROP DATABASE fails while sessions are connected: close pgmedic's idle server
 * connections to that database (on every shard) before the statement reaches the
 * server. */
static void check_drop_database(struct client *cl, const uint8_t *q, size_t len)
{
	char name[256];
	if (len < 13 || !sql_drop_database_target((const char *)q, len, name, sizeof(name)))
		return;
	world_stop(cl->proxy);
	for (int i = 0; i < shard_count(); i++) {
		struct list *it, *tmp;
		list_for_each_safe(it, tmp, &shard_at(i)->pools)
		{
			struct pool *pool = list_entry(it, struct pool, node);
			if (strcmp(pool->up_database, name) != 0)
				continue;
			struct list *s, *st;
			list_for_each_safe(s, st, &pool->idle_servers)
				server_close(list_entry(s, struct server, node), "client drops this database");
			pool->have_welcome = false; /* a re-created database may differ */
			pgb_reset(&pool->welcome);
			pool_group_forget_welcome(pool->group);
		}
	}
	world_resume(cl->proxy);
}

/* ------------------------------------------ plan-change retry (prepared) ---- */

#define RETRY_MAX_BATCH (64u << 10)

void client_retry_clear(struct client *cl)
{
	free(cl->retry_buf);
	cl->retry_buf = NULL;
	cl->retry_len = 0;
	cl->retry_state = RETRY_NONE;
}

/* At the start of a batch outside a transaction block: a Bind of a mapped
 * statement, [Describe portal,] Execute, Sync, all in the buffer, is kept so that
 * it can be sent again if the server says the statement's plan changed type. */
static void retry_arm(struct client *cl, const uint8_t *m, size_t have)
{
	static const char seq[] = "BDES";
	size_t off = 0;
	int k = 0;
	while (k < 4) {
		uint8_t t;
		uint32_t len;
		if (pg_frame_header(m + off, have - off, &t, &len) != PG_FRAME_OK || have - off < (size_t)len + 1)
			return;
		if (t != (uint8_t)seq[k]) {
			if (k == 1) { /* the Describe is optional */
				k++;
				continue;
			}
			return;
		}
		if (t == 'B') {
			struct pg_reader r;
			pgr_init(&r, m + off + 5, len - 4);
			(void)pgr_cstr(&r, NULL);
			const char *st = pgr_cstr(&r, NULL);
			if (r.err || !st || !st[0] || !prep_is_mapped(cl, st))
				return;
		} else if (t == 'D' && (len < 5 || m[off + 5] != 'P')) {
			return;
		}
		off += (size_t)len + 1;
		k++;
		if (off > RETRY_MAX_BATCH)
			return;
	}
	uint8_t *copy = malloc(off);
	if (!copy)
		return;
	memcpy(copy, m, off);
	cl->retry_buf = copy;
	cl->retry_len = off;
	cl->retry_state = RETRY_ARMED;
}

static bool plan_changed_error(const uint8_t *body, size_t blen)
{
	struct pg_error_fields ef;
	return body && pg_parse_error(body, blen, &ef) == 0 && ef.sqlstate && strcmp(ef.sqlstate, "0A000") == 0 &&
	       ef.message && strstr(ef.message, "cached plan must not change result type");
}

bool client_retry_on_server_msg(struct client *cl, struct server *sv, uint8_t type, const uint8_t *body, size_t blen)
{
	switch (cl->retry_state) {
	case RETRY_NONE:
		return false;
	case RETRY_ARMED:
		if (type == 'E' && plan_changed_error(body, blen)) {
			/* The Bind failed before anything reached the client: hide the error,
			 * let the server reach its Sync, then send the batch again. */
			cl->retry_state = RETRY_DROPPING;
			return true;
		}
		if (type == 'N' || type == 'S' || type == 'A')
			return false;
		if (type == 'Z') {
			client_retry_clear(cl);
			return false;
		}
		client_retry_clear(cl); /* the Bind went through: nothing to retry */
		return false;
	case RETRY_DROPPING:
		if (type != 'Z')
			return type != 'N' && type != 'S' && type != 'A'; /* nothing else comes; drop it if it does */
		sv->tx_status = blen >= 1 ? (char)body[0] : 'I';
		if (cl->pending_rfq)
			cl->pending_rfq--;
		if (cl->prof)
			prof_client_forget_batch(cl->prof);
		cl->proxy->plan_retries++;
		CLOG(LOG_INFO, cl, "a prepared statement's result type changed (schema change): re-preparing it and "
				    "sending the request again once");
		if (conn_in_prepend(&cl->c, cl->retry_buf, cl->retry_len, cl->retry_len + (16u << 20)) < 0) {
			client_retry_clear(cl);
			client_fatal(cl, "53200", "out of memory");
			return true;
		}
		free(cl->retry_buf);
		cl->retry_buf = NULL;
		cl->retry_len = 0;
		cl->retry_state = RETRY_DONE; /* a second failure goes to the client */
		return true;
	case RETRY_DONE:
		if (type == 'Z')
			client_retry_clear(cl);
		return false;
	}
	return false;
}

/* Request accounting: what the pool needs to know to release the server, and
 * what the profiler needs to time statements.  m: the message (header included),
 * have: bytes of it in memory; *nowp: the clock reading for the messages of this
 * read, taken here when still 0. */
static void account(struct client *cl, struct server *sv, uint8_t type, const uint8_t *m, size_t have, uint32_t len,
		    uint64_t *nowp)
{
	struct profiler *pr = cl->proxy->prof;
	uint64_t now = *nowp;
	if (pr->on && have >= 5 && len >= 4) {
		struct prof_ident id = {{cl->pool->database, cl->pool->user, cl->pool->ident_hash, cl->pool->serial},
					pr->app_param >= 0 ? cl->want[pr->app_param] : NULL, cl->want_ver};
		size_t blen = have - 5 < (size_t)len - 4 ? have - 5 : (size_t)len - 4;
		if (!now)
			now = *nowp = now_us();
		shard_prof_lock();
		prof_client_msg(pr, &cl->prof, &id, type, m + 5, blen, now);
		shard_prof_unlock();
	}
	if (cl->pending_rfq == 0 && !cl->in_extended && (type == 'Q' || type == 'P' || type == 'B' || type == 'E' ||
							 type == 'F' || type == 'S'))
		cl->req_start_us = now ? now : (*nowp = now_us());
	switch (type) {
	case 'Q':
		cl->pending_rfq++;
		cl->pool->stats.queries++;
		sv->work_since_rfq = true;
		break;
	case 'S':
		cl->pending_rfq++;
		cl->in_extended = false;
		break;
	case 'E':
		cl->pool->stats.queries++;
		sv->work_since_rfq = true;
		cl->in_extended = true;
		break;
	case 'P': case 'B': case 'D': case 'C': case 'H':
		cl->in_extended = true;
		break;
	case 'F':
		cl->pending_rfq++;
		sv->work_since_rfq = true;
		break;
	default:
		break;
	}
}

#define PREP_MSG_MAX (16u << 20) /* a Parse/Describe/Close larger than this is refused */

/* PostgreSQL holds an extended-protocol batch's results until its Sync (or a
 * Flush).  When the client follows an Execute with another whole message that is
 * not its Sync or a Flush — a pipeline — pgmedic sends a Flush in between, so
 * that each Execute's answer comes back, and is timed, on its own.  An Execute
 * followed by its Sync (the common case), or by nothing yet, gets none. */
static bool flush_due(const struct client *cl, uint8_t type, size_t whole_avail, size_t total)
{
	return cl->after_execute && cl->proxy->prof->on && whole_avail >= total && type != 'S' && type != 'H';
}

static void inject_flush(struct client *cl, bool *staged, const uint8_t **d, size_t *avail, size_t *pos)
{
	if (!*staged) {
		pgb_reset(&cl->stage);
		*staged = true;
	}
	pgb_raw(&cl->stage, *d, *pos);
	pgb_raw(&cl->stage, (const uint8_t *)"H\0\0\0\4", 5);
	cl->pool->stats.bytes_in += *pos;
	conn_in_consume(&cl->c, *pos);
	*d = conn_in_data(&cl->c);
	*avail = conn_in_avail(&cl->c);
	*pos = 0;
	cl->after_execute = false;
}

/* The frontend message types of the protocol (after the startup phase). */
static const bool client_msg_type[256] = {['Q'] = 1, ['P'] = 1, ['B'] = 1, ['D'] = 1, ['E'] = 1, ['S'] = 1, ['H'] = 1,
					  ['C'] = 1, ['F'] = 1, ['X'] = 1, ['d'] = 1, ['c'] = 1, ['f'] = 1};

void client_process(struct client *cl)
{
	if (cl->state == CL_LOGIN) {
		login_process(cl);
		return;
	}
	if (cl->state == CL_WELCOME || cl->state == CL_WAITING || cl->state == CL_DEAD)
		return;
	if (cl->admin) {
		admin_process(cl);
		return;
	}
	struct server *sv = cl->server;
	if (sv && sv->state != SV_ACTIVE)
		return; /* setup query in flight; resumed by client_linked */
	/* Transaction mode maps statement names; every message is then tracked. */
	bool track = sv && cl->pool->mode == POOL_TRANSACTION && cl->proxy->cfg->max_prepared_statements > 0;
	bool staged = false; /* cl->stage holds rewritten bytes to send before pos */
	uint64_t now = 0;    /* one clock reading for the messages of one read (account()) */
	const uint8_t *d = conn_in_data(&cl->c);
	size_t avail = conn_in_avail(&cl->c);
	size_t pos = 0;
	while (pos < avail) {
		if (cl->stream_left) {
			size_t n = avail - pos < cl->stream_left ? avail - pos : cl->stream_left;
			pos += n;
			cl->stream_left -= (uint32_t)n;
			continue;
		}
		uint8_t type;
		uint32_t len;
		enum pg_frame f = pg_frame_header(d + pos, avail - pos, &type, &len);
		if (f == PG_FRAME_NEED_MORE)
			break;
		if (f == PG_FRAME_BAD) {
			cl->proxy->bad_packets++;
			client_fatal(cl, "08P01", "invalid message length from client");
			return;
		}
		/* PostgreSQL's own limits (SocketBackend): Query, Parse, Bind, FunctionCall
		 * and CopyData up to 1 GiB - 2, everything else up to 10,000 bytes.  A
		 * message over them would make the server drop the pooled connection. */
		if (len > 10000u && client_msg_type[type] && (!strchr("QPBFd", type) || len > 0x3ffffffeu)) {
			cl->proxy->bad_packets++;
			if (staged)
				break;
			if (sv && !forward_range(cl, pos))
				return;
			client_fatal(cl, "08P01", "invalid message length");
			return;
		}
		if (!client_msg_type[type]) {
			/* PostgreSQL would end the session with exactly this; answering here
			 * keeps a pooled server connection from being killed by one client. */
			char msg[80];
			snprintf(msg, sizeof(msg), "invalid frontend message type %d", type);
			cl->proxy->bad_packets++;
			if (staged)
				break; /* flush what came before; seen again next time */
			if (sv && !forward_range(cl, pos))
				return;
			client_fatal(cl, "08P01", msg);
			return;
		}
		if (type == 'X') {
			if (sv && staged)
				break; /* sent below; the Terminate is seen again next time */
			if (sv && !forward_range(cl, pos))
				return;
			client_close(cl, "client sent Terminate");
			return;
		}
		if (!sv) {
			/* A request with no server: queue for one.  Nothing is consumed, so the
			 * request is sent whole once a server is linked. */
			pool_request_server(cl);
			/* Only a client that really has to wait stops being read (each toggle is
			 * an epoll_ctl); a linked one was already processed by client_linked. */
			if (cl->state == CL_WAITING)
				conn_want_read(&cl->c, false);
			return;
		}
		size_t total = (size_t)len + 1;
		if (track && type == 'B' && cl->retry_state == RETRY_NONE && cl->pending_rfq == 0 && !cl->in_extended &&
		    sv->tx_status == 'I')
			retry_arm(cl, d + pos, avail - pos);
		/* Session state matters in transaction mode whether or not statement names
		 * are mapped. */
		bool txmode = cl->pool->mode == POOL_TRANSACTION;
		/* The profiler reads Query and Parse texts whole (up to 1 MiB). */
		bool whole_text = txmode || cl->proxy->prof->on;
		if (type == 'Q' && avail - pos >= total) {
			check_drop_database(cl, d + pos + 5, len - 4);
			/* It stopped the world: another shard's admin (KILL, SHUTDOWN) may have
			 * closed this client or taken its server meanwhile. */
			if (cl->state == CL_DEAD || cl->server != sv)
				return;
			if (txmode)
				check_session_state(cl, d + pos + 5, len - 4, true);
		} else if ((type == 'Q' || type == 'P') && whole_text && avail - pos < total && total <= (1u << 20)) {
			/* Read it whole (up to 1 MiB) to look for session state first. */
			if (conn_in_reserve(&cl->c, pos + total, (1u << 20) + 4096) < 0) {
				client_fatal(cl, "53200", "out of memory");
				return;
			}
			break;
		}
		if (txmode && type == 'P' && avail - pos < total && total <= PREP_MSG_MAX) {
			if (conn_in_reserve(&cl->c, pos + total, PREP_MSG_MAX + 4096) < 0) {
				client_fatal(cl, "53200", "out of memory");
				return;
			}
			break;
		}
		if (txmode && type == 'P' && avail - pos >= total) {
			/* The statement text follows the statement name. */
			const uint8_t *nm = memchr(d + pos + 5, 0, len - 4);
			if (nm && (size_t)(nm + 1 - (d + pos + 5)) < len - 4)
				check_session_state(cl, nm + 1, len - 4 - (size_t)(nm + 1 - (d + pos + 5)), false);
		}
		if (track) {
			size_t need = prep_bytes_needed(type, len);
			if (avail - pos < need) {
				if (need > PREP_MSG_MAX) {
					client_fatal(cl, "54000", "prepared statement message too large for pgmedic");
					return;
				}
				if (conn_in_reserve(&cl->c, pos + need, PREP_MSG_MAX + 4096) < 0) {
					client_fatal(cl, "53200", "out of memory");
					return;
				}
				break; /* wait for the rest of the message */
			}
			if ((type == 'P' || type == 'B' || type == 'D' || type == 'C') &&
			    prep_needs_rewrite(cl, type, d + pos, avail - pos)) {
				if (flush_due(cl, type, avail - pos, total))
					inject_flush(cl, &staged, &d, &avail, &pos);
				if (!staged) {
					pgb_reset(&cl->stage);
					staged = true;
				}
				pgb_raw(&cl->stage, d, pos);
				uint32_t left = 0;
				long used = prep_rewrite(cl, type, d + pos, avail - pos, len, &cl->stage, &left);
				if (used < 0 || cl->stage.failed) {
					client_fatal(cl, "53200", "out of memory");
					return;
				}
				account(cl, sv, type, d + pos, avail - pos, len, &now);
				cl->after_execute = false;
				cl->pool->stats.bytes_in += pos + (size_t)used;
				conn_in_consume(&cl->c, pos + (size_t)used);
				cl->stream_left = left;
				d = conn_in_data(&cl->c);
				avail = conn_in_avail(&cl->c);
				pos = 0;
				continue;
			}
			if (prep_track(cl, type, d + pos, avail - pos) < 0) {
				client_fatal(cl, "53200", "out of memory");
				return;
			}
		}
		if (flush_due(cl, type, avail - pos, total))
			inject_flush(cl, &staged, &d, &avail, &pos);
		account(cl, sv, type, d + pos, avail - pos, len, &now);
		cl->after_execute = type == 'E';
		if (avail - pos >= total) {
			pos += total;
		} else {
			cl->stream_left = (uint32_t)(total - (avail - pos));
			pos = avail;
		}
	}
	if (!sv)
		return;
	if (staged) {
		pgb_raw(&cl->stage, conn_in_data(&cl->c), pos);
		cl->pool->stats.bytes_in += pos;
		conn_in_consume(&cl->c, pos);
		if (cl->stage.failed) {
			client_fatal(cl, "53200", "out of memory");
			return;
		}
		if (conn_send(&sv->c, cl->stage.data, cl->stage.len) == CONN_IO_ERROR) {
			server_close(sv, sv->c.error[0] ? sv->c.error : "write to server failed");
			return;
		}
		if (cl->stage.cap > 1024 * 1024)
			pgb_free(&cl->stage);
		if (conn_out_pending(&sv->c) > CONN_OUT_HIGH)
			conn_want_read(&cl->c, false);
	} else if (!forward_range(cl, pos)) {
		return;
	}
	if (track && prep_synth_due(&cl->prep))
		prep_drain_synth(cl);
	if (staged && cl->state != CL_DEAD && conn_in_avail(&cl->c) >= 5 && !cl->stream_left)
		client_process(cl); /* a Terminate or a bad message stopped the batch */
}

static void client_read(struct client *cl)
{
	if (cl->login_step == LS_TLS && cl->state == CL_LOGIN) {
		enum conn_io r = conn_tls_handshake(&cl->c);
		if (r == CONN_IO_ERROR) {
			client_close(cl, cl->c.error);
			return;
		}
		if (r == CONN_IO_AGAIN)
			return;
		cl->tls_done = true;
		cl->login_step = LS_STARTUP;
	}
	enum conn_io r = conn_fill(&cl->c);
	if (r == CONN_IO_EOF) {
		client_close(cl, cl->state == CL_LOGIN ? "client closed the connection during login"
							: "client closed the connection");
		return;
	}
	if (r == CONN_IO_ERROR) {
		client_close(cl, cl->c.error);
		return;
	}
	cl->last_active = now_sec();
	client_process(cl);
	if (cl->state == CL_DEAD)
		return;
	if (cl->c.reading && conn_tls_pending(&cl->c))
		event_active(cl->c.ev_read, EV_READ, 0);
	else
		conn_in_release(&cl->c);
}

static void client_event(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	(void)fd;
	if (cl->state == CL_DEAD)
		return;
	if (what & EV_WRITE) {
		if (cl->c.tls_handshaking) {
			client_read(cl);
			return;
		}
		enum conn_io r = conn_flush(&cl->c);
		if (r == CONN_IO_ERROR) {
			client_close(cl, cl->c.error);
			return;
		}
		/* Drained: let the server's results flow again. */
		if (r == CONN_IO_OK && cl->server && !cl->server->c.reading && cl->server->state != SV_DEAD) {
			conn_want_read(&cl->server->c, true);
			server_process(cl->server);
			if (cl->state == CL_DEAD)
				return;
		}
		if (cl->c.read_wants_write)
			what |= EV_READ;
	}
	if (what & EV_READ)
		client_read(cl);
}
