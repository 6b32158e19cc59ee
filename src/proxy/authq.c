/* authq.c - auth_user + auth_query: looking up a user's secret in PostgreSQL
 * (typically through a SECURITY DEFINER function over pg_shadow) so that no end
 * user's password has to be in pgmedic's files.  One libpq connection per
 * database, driven without blocking from the event loop (PQconnectPoll, then
 * PQsendQueryParams / PQconsumeInput), requests served one at a time in order.
 * With several event loops the connections are shard 0's: another shard's lookup
 * is posted there and its answer posted back (shard_post). */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "proxy/proxy.h"

enum aq_state { AQ_CONNECTING, AQ_IDLE, AQ_BUSY };

/* A lookup for a client on another shard: travels to shard 0 and back. */
struct aq_remote {
	int shard;
	uint64_t client_id;
	char *user, *dbname;
	char *secret, *error;   /* the answer */
};

struct aq_req {
	struct list node;
	struct client *cl;
	struct aq_remote *remote; /* instead of cl */
	char *user;
};

static void remote_free(void *arg)
{
	struct aq_remote *rm = arg;
	free(rm->user);
	free(rm->dbname);
	if (rm->secret) {
		memset(rm->secret, 0, strlen(rm->secret));
		free(rm->secret);
	}
	free(rm->error);
	free(rm);
}

/* On the client's shard: the answer. */
static void remote_done(struct proxy *p, void *arg)
{
	struct aq_remote *rm = arg;
	for (struct list *it = p->login_clients.next; it != &p->login_clients; it = it->next) {
		struct client *cl = list_entry(it, struct client, node);
		if (cl->id == rm->client_id && cl->authq_remote) {
			cl->authq_remote = false;
			client_auth_query_done(cl, rm->secret, rm->error);
			break;
		}
	}
	remote_free(rm);
}

/* On shard 0: a request's answer goes back to a remote client's shard. */
static void answer(struct aq_req *r, struct client *cl, const char *secret, const char *error)
{
	if (cl) {
		client_auth_query_done(cl, secret, error);
		return;
	}
	struct aq_remote *rm = r->remote;
	if (!rm)
		return;
	r->remote = NULL;
	rm->secret = secret ? strdup(secret) : NULL;
	rm->error = error ? strdup(error) : NULL;
	if ((secret && !rm->secret) || (error && !rm->error)) {
		free(rm->error);
		rm->error = strdup("out of memory");
	}
	struct proxy *to = shard_at(rm->shard);
	if (!to || shard_post(to, remote_done, remote_free, rm) < 0)
		remote_free(rm);
}

struct aq_conn {
	struct list node;     /* proxy->authq_conns */
	struct proxy *p;
	char *dbname;
	PGconn *conn;
	struct event *ev;
	enum aq_state state;
	PostgresPollingStatusType poll;
	struct list queue;    /* struct aq_req, the first one is running when BUSY */
	struct event *timer;  /* connect / query deadline */
	char *secret;         /* the running lookup's answer so far */
	char err[256];
};

#define AQ_QUERY_TIMEOUT 10.0 /* seconds for one lookup */

static void aq_timeout(evutil_socket_t fd, short what, void *arg);

static void aq_arm(struct aq_conn *a, double seconds)
{
	if (!a->timer)
		a->timer = evtimer_new(a->p->base, aq_timeout, a);
	if (!a->timer)
		return;
	if (seconds <= 0) {
		evtimer_del(a->timer);
		return;
	}
	struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
	evtimer_add(a->timer, &tv);
}

static void aq_event(evutil_socket_t fd, short what, void *arg);

static void aq_watch(struct aq_conn *a, short what)
{
	if (a->ev) {
		event_free(a->ev);
		a->ev = NULL;
	}
	int fd = PQsocket(a->conn);
	if (fd < 0)
		return;
	a->ev = event_new(a->p->base, fd, what, aq_event, a);
	if (a->ev)
		event_add(a->ev, NULL);
}

static void req_free(struct aq_req *r)
{
	list_del(&r->node);
	if (r->cl)
		r->cl->authq_req = NULL;
	if (r->remote)
		remote_free(r->remote);
	free(r->user);
	free(r);
}

static void aq_destroy(struct aq_conn *a)
{
	if (a->ev)
		event_free(a->ev);
	if (a->timer)
		event_free(a->timer);
	if (a->secret) {
		memset(a->secret, 0, strlen(a->secret));
		free(a->secret);
	}
	PQfinish(a->conn);
	list_del(&a->node);
	free(a->dbname);
	free(a);
}

/* Fails every queued request and drops the connection (recreated on demand). */
static void aq_fail(struct aq_conn *a, const char *why)
{
	log_warn("auth_query on database %s: %s", a->dbname, why);
	while (!list_empty(&a->queue)) {
		struct aq_req *r = list_entry(a->queue.next, struct aq_req, node);
		struct client *cl = r->cl;
		answer(r, cl, NULL, why);
		req_free(r);
	}
	aq_destroy(a);
}

static void aq_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct aq_conn *a = arg;
	(void)fd;
	(void)what;
	aq_fail(a, a->state == AQ_CONNECTING ? "timeout connecting as auth_user (server_connect_timeout)"
					     : "timeout waiting for auth_query's answer");
}

static void aq_next(struct aq_conn *a)
{
	while (!list_empty(&a->queue)) {
		struct aq_req *r = list_entry(a->queue.next, struct aq_req, node);
		if (!r->cl && !r->remote) { /* its client left meanwhile */
			req_free(r);
			continue;
		}
		const char *q = a->p->cfg->auth_query ? a->p->cfg->auth_query
						      : "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";
		const char *params[1] = {r->user};
		if (!PQsendQueryParams(a->conn, q, 1, NULL, params, NULL, NULL, 0)) {
			aq_fail(a, PQerrorMessage(a->conn));
			return;
		}
		a->state = AQ_BUSY;
		a->err[0] = 0;
		aq_arm(a, AQ_QUERY_TIMEOUT);
		aq_watch(a, PQflush(a->conn) == 1 ? EV_READ | EV_WRITE : EV_READ);
		return;
	}
	a->state = AQ_IDLE;
	aq_arm(a, 0);
	aq_watch(a, EV_READ); /* notice the server going away */
}

/* Collects results while libpq has them without blocking; the lookup ends when
 * PQgetResult says there are no more (ReadyForQuery arrived). */
static void aq_results(struct aq_conn *a)
{
	while (!PQisBusy(a->conn)) {
		PGresult *res = PQgetResult(a->conn);
		if (!res) {
			struct aq_req *r = list_entry(a->queue.next, struct aq_req, node);
			struct client *cl = r->cl;
			char *secret = a->secret;
			a->secret = NULL;
			if (cl)
				r->cl->authq_req = NULL;
			answer(r, cl, secret, a->err[0] ? a->err : NULL);
			r->cl = NULL;
			req_free(r);
			if (secret) {
				memset(secret, 0, strlen(secret));
				free(secret);
			}
			aq_next(a);
			return;
		}
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_TUPLES_OK) {
			if (PQntuples(res) == 1 && PQnfields(res) >= 2 && !PQgetisnull(res, 0, 1) && !a->secret)
				a->secret = strdup(PQgetvalue(res, 0, 1));
		} else if (st != PGRES_COMMAND_OK) {
			snprintf(a->err, sizeof(a->err), "%s", PQresultErrorMessage(res));
			char *nl = strchr(a->err, '\n');
			if (nl)
				*nl = 0;
		}
		PQclear(res);
	}
	aq_watch(a, EV_READ); /* the rest of the answer is still on its way */
}

static void aq_event(evutil_socket_t fd, short what, void *arg)
{
	struct aq_conn *a = arg;
	(void)fd;
	if (a->state == AQ_CONNECTING) {
		a->poll = PQconnectPoll(a->conn);
		if (a->poll == PGRES_POLLING_FAILED) {
			char why[300];
			snprintf(why, sizeof(why), "cannot connect as auth_user: %s", PQerrorMessage(a->conn));
			char *nl = strchr(why, '\n');
			if (nl)
				*nl = 0;
			aq_fail(a, why);
			return;
		}
		if (a->poll == PGRES_POLLING_OK) {
			PQsetnonblocking(a->conn, 1);
			aq_next(a);
			return;
		}
		aq_watch(a, a->poll == PGRES_POLLING_READING ? EV_READ : EV_WRITE);
		return;
	}
	if (what & EV_WRITE) {
		int f = PQflush(a->conn);
		if (f < 0) {
			aq_fail(a, PQerrorMessage(a->conn));
			return;
		}
		if (f == 0)
			aq_watch(a, EV_READ);
	}
	if (what & EV_READ) {
		if (!PQconsumeInput(a->conn)) {
			aq_fail(a, "connection lost");
			return;
		}
		if (a->state == AQ_BUSY)
			aq_results(a);
		else if (a->state == AQ_IDLE)
			aq_watch(a, EV_READ);
	}
}

static struct aq_conn *aq_open(struct proxy *p, const char *dbname)
{
	const struct config *cfg = p->cfg;
	const struct db_entry *db = config_find_db(cfg, dbname);
	if (!db)
		return NULL;
	struct aq_conn *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->p = p;
	a->dbname = strdup(dbname);
	list_init(&a->queue);
	/* auth_user's own password: auth file (plaintext) or the URL / [databases]. */
	const char *password = NULL;
	const struct user_entry *ue = userlist_find(&p->users, cfg->auth_user);
	if (ue && secret_kind_of(ue->secret) == SECRET_PLAIN)
		password = ue->secret;
	else if (db_password_for(db, cfg->auth_user))
		password = db->password;
	char port[16];
	snprintf(port, sizeof(port), "%d", db->port ? db->port : 5432);
	const char *host = db->host ? db->host : "127.0.0.1";
	const char *keys[] = {host[0] == '/' ? "host" : "hostaddr", "port", "dbname", "user", "password",
			      "sslmode", "sslrootcert", "application_name", NULL};
	const char *vals[] = {host, port, db->dbname ? db->dbname : dbname, cfg->auth_user, password,
			      sslmode_name(cfg->server_tls_sslmode), cfg->server_tls_ca_file, "pgmedic auth_query",
			      NULL};
	/* hostaddr wants a numeric address; names go through host (resolved by libpq). */
	struct sockaddr_storage ss;
	if (host[0] != '/' && inet_pton(AF_INET, host, &ss) != 1 && inet_pton(AF_INET6, host, &ss) != 1)
		keys[0] = "host";
	if (!cfg->server_tls_ca_file) {
		keys[6] = "application_name";
		vals[6] = "pgmedic auth_query";
		keys[7] = NULL;
	}
	a->conn = PQconnectStartParams(keys, vals, 0);
	if (!a->conn || PQstatus(a->conn) == CONNECTION_BAD) {
		log_warn("auth_query: cannot start a connection to %s", dbname);
		PQfinish(a->conn);
		free(a->dbname);
		free(a);
		return NULL;
	}
	a->state = AQ_CONNECTING;
	list_add_tail(&p->authq_conns, &a->node);
	aq_arm(a, cfg->server_connect_timeout > 0 ? cfg->server_connect_timeout : 15.0);
	aq_watch(a, EV_WRITE);
	return a;
}

/* Queues a lookup on this shard's connection for dbname (cl or remote). */
static int enqueue(struct proxy *p, const char *dbname, const char *user, struct client *cl,
		   struct aq_remote *remote)
{
	struct aq_conn *a = NULL;
	for (struct list *it = p->authq_conns.next; it != &p->authq_conns; it = it->next) {
		struct aq_conn *c = list_entry(it, struct aq_conn, node);
		if (strcmp(c->dbname, dbname) == 0)
			a = c;
	}
	if (!a && !(a = aq_open(p, dbname)))
		return -1;
	struct aq_req *r = calloc(1, sizeof(*r));
	if (!r || !(r->user = strdup(user))) {
		free(r);
		return -1;
	}
	r->cl = cl;
	r->remote = remote;
	if (cl)
		cl->authq_req = r;
	list_add_tail(&a->queue, &r->node);
	if (a->state == AQ_IDLE)
		aq_next(a);
	return 0;
}

/* On shard 0: another shard's lookup. */
static void remote_lookup(struct proxy *p, void *arg)
{
	struct aq_remote *rm = arg;
	if (enqueue(p, rm->dbname, rm->user, NULL, rm) < 0) {
		rm->error = strdup("cannot start the auth_query connection");
		struct proxy *to = shard_at(rm->shard);
		if (!to || shard_post(to, remote_done, remote_free, rm) < 0)
			remote_free(rm);
	}
}

int authq_lookup(struct proxy *p, struct client *cl)
{
	const char *dbname = p->cfg->auth_dbname ? p->cfg->auth_dbname : cl->database;
	if (p->shard == 0)
		return enqueue(p, dbname, cl->user, cl, NULL);
	/* One lookup connection per database for the process: shard 0's. */
	struct aq_remote *rm = calloc(1, sizeof(*rm));
	if (!rm)
		return -1;
	rm->shard = p->shard;
	rm->client_id = cl->id;
	rm->user = strdup(cl->user);
	rm->dbname = strdup(dbname);
	if (!rm->user || !rm->dbname || shard_post(shard_at(0), remote_lookup, remote_free, rm) < 0) {
		remote_free(rm);
		return -1;
	}
	cl->authq_remote = true;
	return 0;
}

void authq_forget_client(struct client *cl)
{
	cl->authq_remote = false; /* its answer, if one comes, finds no client */
	if (cl->authq_req) {
		((struct aq_req *)cl->authq_req)->cl = NULL;
		cl->authq_req = NULL;
	}
}

void authq_close_all(struct proxy *p)
{
	while (!list_empty(&p->authq_conns)) {
		struct aq_conn *a = list_entry(p->authq_conns.next, struct aq_conn, node);
		while (!list_empty(&a->queue))
			req_free(list_entry(a->queue.next, struct aq_req, node));
		aq_destroy(a);
	}
}
