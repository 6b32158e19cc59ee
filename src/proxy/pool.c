/* pool.c - pools per (database, user): which list each client and server is on,
 * handing servers to waiting clients in FIFO order, opening and retiring server
 * connections, and the periodic janitor that enforces every timeout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netdb.h>
#include <sys/un.h>

#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/shard.h"

#define SERVER_LOGIN_RETRY 1.0 /* seconds between logins after one failed */

static void cred_from_secret(struct upstream_cred *cr, const char *secret)
{
	switch (secret_kind_of(secret)) {
	case SECRET_PLAIN:
		if (!cr->password)
			cr->password = strdup(secret);
		break;
	case SECRET_MD5:
		if (!cr->md5_secret)
			cr->md5_secret = strdup(secret);
		break;
	case SECRET_SCRAM:
		break; /* usable only with a client's keys (pass-through) */
	}
}

int pool_target_addr(struct pool *pool, struct sockaddr_storage *ss, socklen_t *sl)
{
	if (pool->addr_len) {
		memcpy(ss, &pool->addr, sizeof(*ss));
		*sl = pool->addr_len;
		return 0;
	}
	memset(ss, 0, sizeof(*ss));
	if (pool->host[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s/.s.PGSQL.%d", pool->host, pool->port);
		*sl = sizeof(*un);
	} else {
		/* Numeric addresses never block; a host name is resolved here once,
		 * synchronously, and cached until a connect to it fails (evdns would
		 * take the wait off the loop; rare enough to leave for now). */
		struct addrinfo hints = {0}, *res = NULL;
		char port[16];
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		snprintf(port, sizeof(port), "%d", pool->port);
		if (getaddrinfo(pool->host, port, &hints, &res) != 0 || !res)
			return -1;
		memcpy(ss, res->ai_addr, res->ai_addrlen);
		*sl = res->ai_addrlen;
		freeaddrinfo(res);
	}
	memcpy(&pool->addr, ss, sizeof(*ss));
	pool->addr_len = *sl;
	return 0;
}

struct pool *pool_get(struct proxy *p, const char *database, const char *user, const struct db_entry *db)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &p->pools)
	{
		struct pool *pool = list_entry(it, struct pool, node);
		if (strcmp(pool->database, database) == 0 && strcmp(pool->user, user) == 0)
			return pool;
	}
	struct pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->proxy = p;
	pool->database = strdup(database);
	pool->user = strdup(user);
	pool->host = strdup(db->host ? db->host : "127.0.0.1");
	pool->port = db->port ? db->port : 5432;
	pool->up_database = strdup(db->dbname ? db->dbname : database);
	pool->up_user = strdup(db->user ? db->user : user);
	pool->pool_size = db->pool_size > 0 ? db->pool_size : p->cfg->pool_size;
	pool->mode = db->pool_mode >= 0 ? (enum pool_mode)db->pool_mode : p->cfg->pool_mode;
	pool->group = pool_group_get(database, user);
	if (!pool->group || !pool->database || !pool->user || !pool->host || !pool->up_database || !pool->up_user) {
		free(pool->database);
		free(pool->user);
		free(pool->host);
		free(pool->up_database);
		free(pool->up_user);
		free(pool);
		return NULL;
	}
	pool->ident_hash = stats_ident_hash(pool->database, pool->user);
	/* The profiler's stats_ident serial: one per pair for the life of the process,
	 * the same on every shard. */
	pool->serial = pool->group->serial;
	if (db_password_for(db, pool->up_user))
		cred_from_secret(&pool->cred, db->password);
	const struct user_entry *ue = userlist_find(&p->users, pool->up_user);
	if (ue)
		cred_from_secret(&pool->cred, ue->secret);
	list_init(&pool->welcome_clients);
	list_init(&pool->idle_clients);
	list_init(&pool->waiting_clients);
	list_init(&pool->active_clients);
	list_init(&pool->login_servers);
	list_init(&pool->idle_servers);
	list_init(&pool->active_servers);
	list_init(&pool->reset_servers);
	pgb_init(&pool->welcome);
	pool->paused = p->paused;
	for (int i = 0; i < shard_count(); i++) { /* PAUSE db of this pair on another shard */
		const struct pool *o = __atomic_load_n(&pool->group->pools[i], __ATOMIC_ACQUIRE);
		if (o && __atomic_load_n(&o->paused, __ATOMIC_RELAXED))
			pool->paused = true;
	}
	list_add_tail(&p->pools, &pool->node);
	(void)pool_group_adopt_welcome(pool->group, pool);
	__atomic_store_n(&pool->group->pools[p->shard], pool, __ATOMIC_RELEASE);
	log_info("pool %s@%s created: upstream %s@%s at %s:%d, %s mode, pool_size %d", user, database,
		 pool->up_user, pool->up_database, pool->host, pool->port, pool_mode_name(pool->mode),
		 pool->pool_size);
	return pool;
}

/* The pool's counters are written by its shard only, and read by other shards as
 * hints (shard.c, relaxed loads): stored atomically, plain arithmetic. */
static inline void count_add(int *c, int d)
{
	__atomic_store_n(c, *c + d, __ATOMIC_RELAXED);
}

void pool_count_idle(struct pool *pool, int d)
{
	count_add(&pool->n_idle_sv, d);
}

static int *client_counter(struct pool *pool, enum client_state st)
{
	switch (st) {
	case CL_WELCOME: return &pool->n_welcome;
	case CL_IDLE: return &pool->n_idle_cl;
	case CL_WAITING: return &pool->n_waiting;
	case CL_ACTIVE: return &pool->n_active_cl;
	default: return NULL;
	}
}

static struct list *client_list(struct pool *pool, enum client_state st)
{
	switch (st) {
	case CL_WELCOME: return &pool->welcome_clients;
	case CL_IDLE: return &pool->idle_clients;
	case CL_WAITING: return &pool->waiting_clients;
	case CL_ACTIVE: return &pool->active_clients;
	default: return NULL;
	}
}

/* Clients queued for a server or for the welcome, over every shard. */
static bool queued(enum client_state st)
{
	return st == CL_WAITING || st == CL_WELCOME;
}

void pool_client_move(struct client *cl, enum client_state st)
{
	struct pool *pool = cl->pool;
	int *c = client_counter(pool, cl->state);
	bool was_queued = c && list_linked(&cl->node) && queued(cl->state);
	if (c && list_linked(&cl->node))
		count_add(c, -1);
	if (was_queued != queued(st))
		atomic_fetch_add_explicit(&pool->group->waiting, was_queued ? -1 : 1, memory_order_relaxed);
	bool was_waiting = cl->state == CL_WAITING;
	list_del(&cl->node);
	cl->state = st;
	struct list *l = client_list(pool, st);
	if (l) {
		list_add_tail(l, &cl->node);
		count_add(client_counter(pool, st), 1);
	}
	if (st == CL_WAITING)
		cl->wait_us = now_us();
	if (was_waiting || st == CL_WAITING) {
		/* Other shards compare their first waiter with ours (FIFO over shards). */
		uint64_t head = list_empty(&pool->waiting_clients)
					? 0
					: list_entry(pool->waiting_clients.next, struct client, node)->wait_us;
		__atomic_store_n(&pool->head_wait_us, head, __ATOMIC_RELAXED);
	}
}

static int *server_counter(struct pool *pool, enum server_state st)
{
	switch (st) {
	case SV_LOGIN: return &pool->n_login_sv;
	case SV_IDLE: return &pool->n_idle_sv;
	case SV_SETUP:
	case SV_ACTIVE: return &pool->n_active_sv;
	case SV_RESET: return &pool->n_reset_sv;
	default: return NULL;
	}
}

static struct list *server_list(struct pool *pool, enum server_state st)
{
	switch (st) {
	case SV_LOGIN: return &pool->login_servers;
	case SV_IDLE: return &pool->idle_servers;
	case SV_SETUP:
	case SV_ACTIVE: return &pool->active_servers;
	case SV_RESET: return &pool->reset_servers;
	default: return NULL;
	}
}

void pool_server_move(struct server *sv, enum server_state st)
{
	struct pool *pool = sv->pool;
	int *c = server_counter(pool, sv->state);
	if (c && list_linked(&sv->node)) {
		count_add(c, -1);
		if (!server_counter(pool, st))
			pool_group_unreserve(pool->group); /* gone: its pool_size slot is free */
	}
	list_del(&sv->node);
	sv->state = st;
	struct list *l = server_list(pool, st);
	if (l) {
		/* Idle servers are reused most-recently-used first: warm caches, and the
		 * cold tail is what server_idle_timeout retires. */
		if (st == SV_IDLE)
			list_add_head(l, &sv->node);
		else
			list_add_tail(l, &sv->node);
		count_add(server_counter(pool, st), 1);
	}
}

/* Server connections of this pair over every shard (pool_size counts them all). */
static int group_servers(const struct pool *pool)
{
	return atomic_load_explicit(&pool->group->servers, memory_order_relaxed);
}

void pool_maybe_launch(struct pool *pool)
{
	struct proxy *p = pool->proxy;
	if (p->shutting_down || (pool->paused && pool->n_welcome == 0))
		return;
	for (;;) {
		bool need = pool->n_waiting > pool->n_login_sv ||
			    (pool->n_welcome > 0 && pool->n_login_sv == 0 && !pool->have_welcome) ||
			    (pool->have_welcome && group_servers(pool) < p->cfg->min_pool_size);
		if (!need)
			return;
		/* After a failed login, wait before trying again: a refusing or restarting
		 * server must not be hammered with a fork per attempt.  Clients that
		 * nobody can serve meanwhile were told why (pool_login_failed). */
		if (now_sec() - pool->last_login_failure < SERVER_LOGIN_RETRY)
			return;
		if (!pool_group_reserve(pool->group, pool->pool_size))
			return;
		if (!server_launch(pool))
			return;
	}
}

static void link_pair(struct server *sv, struct client *cl);
static bool need_from_elsewhere(struct pool *pool);
static struct server *usable_idle(struct pool *pool);

/* Idle servers to waiting clients, the longest waiter first. */
static void pool_dispatch(struct pool *pool)
{
	struct server *sv;
	while (!pool->paused && !pool->proxy->shutting_down && !list_empty(&pool->waiting_clients) &&
	       (sv = usable_idle(pool))) {
		struct client *cl = list_entry(pool->waiting_clients.next, struct client, node);
		link_pair(sv, cl);
	}
}

void pool_kick_all(struct proxy *p)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &p->pools)
	{
		struct pool *pool = list_entry(it, struct pool, node);
		if (pool->send_due) {
			/* idle servers set aside for other shards' clients go there */
			pool->send_due = false;
			struct list *s, *st;
			list_for_each_safe(s, st, &pool->idle_servers)
			{
				struct server *sv = list_entry(s, struct server, node);
				if (sv->give_to)
					server_send(sv);
			}
		}
		if (pool->steal_due) {
			pool->steal_due = false;
			if (need_from_elsewhere(pool))
				pool_group_rebalance(p, pool->group);
		}
		if (pool->n_welcome && !pool->have_welcome)
			(void)pool_group_adopt_welcome(pool->group, pool);
		if (pool->n_welcome && pool->have_welcome)
			pool_welcome_ready(pool);
		pool_dispatch(pool);
		if (!pool->paused)
			pool_maybe_launch(pool);
	}
}

/* Another shard may have what this pool's clients wait for. */
static bool need_from_elsewhere(struct pool *pool)
{
	if (shard_count() <= 1 || pool->paused || pool->proxy->shutting_down)
		return false;
	if (pool->n_welcome && !pool->have_welcome && __atomic_load_n(&pool->group->have_welcome, __ATOMIC_RELAXED))
		return true;
	return pool->n_waiting > pool->n_login_sv && pool->n_idle_sv == 0 &&
	       pool_group_idle_elsewhere(pool->group, pool);
}

static void link_pair(struct server *sv, struct client *cl)
{
	struct proxy *p = sv->proxy;
	sv->client = cl;
	cl->server = sv;
	cl->pending_rfq = 0;
	cl->in_extended = false;
	pool_client_move(cl, CL_ACTIVE);
	bool check = p->cfg->server_check_delay >= 0 && now_sec() - sv->last_used > p->cfg->server_check_delay;
	if (check || server_needs_setup(sv, cl)) {
		server_begin_setup(sv, cl, check);
		return;
	}
	pool_server_move(sv, SV_ACTIVE);
	client_linked(cl);
}

void pool_server_ready(struct server *sv)
{
	struct pool *pool = sv->pool;
	struct proxy *p = sv->proxy;
	if (sv->state == SV_DEAD)
		return;
	sv->client = NULL;
	if (p->cfg->server_lifetime > 0 && now_sec() - sv->created > p->cfg->server_lifetime) {
		server_close(sv, "server_lifetime reached");
		return;
	}
	if (pool->pool_size < group_servers(pool)) {
		server_close(sv, "pool_size lowered");
		return;
	}
	struct pool *give_to = NULL;
	if (!list_empty(&pool->waiting_clients) && !p->shutting_down && !pool->paused) {
		/* FIFO: the longest waiter first.  link_pair moves both off their lists. */
		struct client *cl = list_entry(pool->waiting_clients.next, struct client, node);
		if (shard_count() == 1 || !(give_to = pool_group_needier(pool->group, pool, cl->wait_us))) {
			link_pair(sv, cl);
			return;
		}
	}
	pool_server_move(sv, SV_IDLE);
	conn_want_read(&sv->c, true); /* notice a server that goes away while idle */
	if (!give_to && shard_count() > 1 && !p->shutting_down && !pool->paused) {
		/* Idle counted before waiters elsewhere are read; a client queueing on
		 * another shard counts itself before it reads our idle count (fences on
		 * both sides): one of the two sees the other. */
		atomic_thread_fence(memory_order_seq_cst);
		if (pool_group_waiting_elsewhere(pool->group, pool))
			give_to = pool_group_needier(pool->group, pool, 0);
	}
	if (give_to) {
		/* A client on another shard needs it more: set aside (at the tail, where
		 * this shard's clients do not take it) and moved from the top of the loop,
		 * not from here (callers still hold sv). */
		sv->give_to = give_to;
		list_del(&sv->node);
		list_add_tail(&pool->idle_servers, &sv->node);
		pool->send_due = true;
		shard_kick(p);
	}
}

/* The idle server this shard's clients may take (not one set aside), or NULL. */
static struct server *usable_idle(struct pool *pool)
{
	if (list_empty(&pool->idle_servers))
		return NULL;
	struct server *sv = list_entry(pool->idle_servers.next, struct server, node);
	return sv->give_to ? NULL : sv;
}

void pool_request_server(struct client *cl)
{
	struct pool *pool = cl->pool;
	cl->wait_start.tv_sec = 0; /* only a client that queues has waited */
	/* Take an idle server only when nobody queued earlier (FIFO fairness). */
	struct server *idle = list_empty(&pool->waiting_clients) && !pool->paused ? usable_idle(pool) : NULL;
	if (idle) {
		link_pair(idle, cl);
		return;
	}
	if (pool_refuse_failing(pool, cl))
		return;
	pool_client_move(cl, CL_WAITING);
	clock_gettime(CLOCK_MONOTONIC, &cl->wait_start);
	if (!pool->paused)
		pool_maybe_launch(pool);
	/* pool_size is reached and another shard has an idle server: it moves here,
	 * from the top of the loop (a world stop must not run under a client's call). */
	if (shard_count() > 1) {
		atomic_thread_fence(memory_order_seq_cst); /* see pool_server_ready */
		if (need_from_elsewhere(pool)) {
			pool->steal_due = true;
			shard_kick(pool->proxy);
		}
	}
}

void pool_release_server(struct client *cl)
{
	struct server *sv = cl->server;
	cl->server = NULL;
	sv->client = NULL;
	pool_client_move(cl, CL_IDLE);
	pool_server_ready(sv);
	if (cl->close_after_release)
		client_fatal(cl, "57P01", "terminating connection: pgmedic is shutting down");
}

void pool_welcome_ready(struct pool *pool)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &pool->welcome_clients)
	{
		struct client *cl = list_entry(it, struct client, node);
		pool_client_move(cl, CL_LOGIN); /* off the list, counted out (here and in the group) */
		client_finish_welcome(cl);
	}
}

void pool_login_failed(struct pool *pool, const uint8_t *errmsg, size_t len)
{
	/* Clients still logging in get the server's own words (3D000, 28P01, ...).
	 * Clients queued for a server get them too when no server is left to serve them. */
	/* Only logged-in servers can serve the queue; other logins in flight are
	 * likely to be refused the same way. */
	bool others = pool->n_idle_sv + pool->n_active_sv + pool->n_reset_sv > 0;
	struct list *lists[2] = {&pool->welcome_clients, &pool->waiting_clients};
	for (int i = 0; i < 2; i++) {
		if (i == 1 && others)
			break;
		struct list *it, *tmp;
		list_for_each_safe(it, tmp, lists[i])
		{
			struct client *cl = list_entry(it, struct client, node);
			(void)conn_send(&cl->c, errmsg, len);
			client_close(cl, "server login failed");
		}
	}
	if (!pool->have_welcome)
		pgb_reset(&pool->welcome);
	/* Kept for clients that come during the retry back-off (pool_refuse_failing). */
	pgb_reset(&pool->last_error);
	pgb_raw(&pool->last_error, errmsg, len);
}

bool pool_refuse_failing(struct pool *pool, struct client *cl)
{
	bool live = pool->n_idle_sv + pool->n_active_sv + pool->n_reset_sv > 0;
	if (live || pool->n_login_sv > 0 || pool->last_error.len == 0 || pool->last_error.failed ||
	    now_sec() - pool->last_login_failure >= SERVER_LOGIN_RETRY)
		return false;
	/* Logins to this server are failing right now and nothing could serve this
	 * client: say why at once (as PgBouncer's server_login_retry does). */
	(void)conn_send(&cl->c, pool->last_error.data, pool->last_error.len);
	client_close(cl, "server login failing (retrying after a pause)");
	return true;
}

static double elapsed_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

void pool_janitor(struct proxy *p)
{
	const struct config *cfg = p->cfg;
	double now = now_sec();
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &p->login_clients)
	{
		struct client *cl = list_entry(it, struct client, node);
		if (cfg->client_login_timeout > 0 && now - cl->connect_time > cfg->client_login_timeout)
			client_fatal(cl, "08006", "client_login_timeout: login not completed in time");
	}
	struct list *pit, *ptmp;
	list_for_each_safe(pit, ptmp, &p->pools)
	{
		struct pool *pool = list_entry(pit, struct pool, node);
		list_for_each_safe(it, tmp, &pool->welcome_clients)
		{
			struct client *cl = list_entry(it, struct client, node);
			if (cfg->client_login_timeout > 0 && now - cl->connect_time > cfg->client_login_timeout)
				client_fatal(cl, "08006", "client_login_timeout: no server connection could be logged in");
		}
		list_for_each_safe(it, tmp, &pool->waiting_clients)
		{
			struct client *cl = list_entry(it, struct client, node);
			if (!pool->paused && cfg->query_wait_timeout > 0 &&
			    elapsed_since(&cl->wait_start) > cfg->query_wait_timeout) {
				char msg[200];
				snprintf(msg, sizeof(msg),
					 "query_wait_timeout: no server connection became free within %gs (pool_size %d)",
					 cfg->query_wait_timeout, pool->pool_size);
				client_fatal(cl, "08P01", msg);
			}
		}
		list_for_each_safe(it, tmp, &pool->idle_servers)
		{
			struct server *sv = list_entry(it, struct server, node);
			int total = group_servers(pool);
			if (cfg->server_lifetime > 0 && now - sv->created > cfg->server_lifetime)
				server_close(sv, "server_lifetime reached");
			else if (cfg->server_idle_timeout > 0 && now - sv->last_used > cfg->server_idle_timeout &&
				 total > cfg->min_pool_size)
				server_close(sv, "server_idle_timeout reached");
			else if (total > pool->pool_size)
				server_close(sv, "pool_size lowered");
		}
		pool_maybe_launch(pool);
		/* A missed hand-over between shards is caught here, within 200 ms. */
		if (need_from_elsewhere(pool)) {
			pool->steal_due = true;
			shard_kick(p);
		}
	}
}

bool pool_first_of_group(const struct pool *pool)
{
	for (int i = 0; i < pool->proxy->shard; i++)
		if (pool->group->pools[i])
			return false;
	return true;
}

void pool_stats_add(struct pool_stats *d, const struct pool_stats *a)
{
	d->transactions += a->transactions;
	d->queries += a->queries;
	d->bytes_in += a->bytes_in;
	d->bytes_out += a->bytes_out;
	d->server_errors += a->server_errors;
	d->xact_us += a->xact_us;
	d->query_us += a->query_us;
	d->wait_us_total += a->wait_us_total;
	if (a->wait_us_max > d->wait_us_max)
		d->wait_us_max = a->wait_us_max;
	d->waits += a->waits;
	d->server_connects += a->server_connects;
	d->server_login_failures += a->server_login_failures;
}

void pool_sum_of(const struct pool *pool, struct pool_sum *s)
{
	memset(s, 0, sizeof(*s));
	uint64_t xacts = 0, queries = 0, xact_us = 0, query_us = 0;
	int n = shard_count();
	for (int i = 0; i < n; i++) {
		const struct pool *o = pool->group->pools[i];
		if (!o)
			continue;
		if (!s->pool)
			s->pool = o;
		s->n_active_cl += o->n_active_cl;
		s->n_waiting += o->n_waiting;
		s->n_idle_cl += o->n_idle_cl;
		s->n_welcome += o->n_welcome;
		s->n_active_sv += o->n_active_sv;
		s->n_idle_sv += o->n_idle_sv;
		s->n_login_sv += o->n_login_sv;
		s->n_reset_sv += o->n_reset_sv;
		pool_stats_add(&s->stats, &o->stats);
		pool_stats_add(&s->avg, &o->avg);
		/* average times: weighted by each shard's rate */
		xacts += o->avg.transactions;
		queries += o->avg.queries;
		xact_us += o->avg.xact_us * o->avg.transactions;
		query_us += o->avg.query_us * o->avg.queries;
		s->paused = s->paused || o->paused;
		if (!list_empty(&o->waiting_clients)) {
			const struct client *w = list_entry(o->waiting_clients.next, struct client, node);
			double waited = elapsed_since(&w->wait_start);
			if (waited > s->oldest_wait)
				s->oldest_wait = waited;
		}
	}
	s->avg.xact_us = xacts ? xact_us / xacts : 0;
	s->avg.query_us = queries ? query_us / queries : 0;
}
