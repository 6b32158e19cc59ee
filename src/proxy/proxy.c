/* proxy.c - process-wide state: listener, TLS contexts, auth file, the janitor
 * timer, deferred freeing of closed connections, SIGHUP reload and the SIGTERM
 * drain. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/random.h>

#include <jansson.h>

#include "core/intern.h"
#include "core/log.h"
#include "net/tls.h"
#include "proxy/proxy.h"
#include "proxy/shard.h"

uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void proxy_random(struct proxy *p, void *out, size_t n)
{
	uint8_t *o = out;
	while (n > 0) {
		if (p->rand_left == 0) {
			if (RAND_bytes(p->rand_pool, sizeof(p->rand_pool)) != 1) {
				/* Never hand out predictable keys silently. */
				log_error("RAND_bytes failed; cancel keys fall back to getrandom()");
				if (getrandom(p->rand_pool, sizeof(p->rand_pool), 0) != (ssize_t)sizeof(p->rand_pool))
					abort();
			}
			p->rand_left = sizeof(p->rand_pool);
		}
		size_t take = n < p->rand_left ? n : p->rand_left;
		memcpy(o, p->rand_pool + sizeof(p->rand_pool) - p->rand_left, take);
		OPENSSL_cleanse(p->rand_pool + sizeof(p->rand_pool) - p->rand_left, take);
		p->rand_left -= take;
		o += take;
		n -= take;
	}
}

static void free_client(struct client *cl)
{
	free(cl->user);
	free(cl->database);
	for (int i = 0; i < PG_TRACKED_PARAMS; i++) {
		intern_drop(cl->want[i]);
		intern_drop(cl->startup_want[i]);
	}
	for (size_t i = 0; i < cl->nextra; i++) {
		free(cl->extra[i].name);
		free(cl->extra[i].value);
		free(cl->extra[i].startup_value);
	}
	free(cl->extra);
	free(cl->pending_set.name);
	free(cl->pending_set.value);
	prep_client_free(cl);
	if (cl->auth) {
		OPENSSL_cleanse(cl->auth, sizeof(*cl->auth));
		free(cl->auth);
	}
	pgb_free(&cl->stage);
	free(cl);
}

void proxy_free_server(struct server *sv)
{
	for (int i = 0; i < PG_TRACKED_PARAMS; i++)
		intern_drop(sv->params[i]);
	for (size_t i = 0; i < sv->nextra; i++) {
		free(sv->extra[i].name);
		free(sv->extra[i].value);
		free(sv->extra[i].startup_value);
	}
	free(sv->extra);
	prep_server_free(sv);
	free(sv);
}

/* Closed objects may still be on the call stack that closed them: free them only
 * once the loop is back at the top. */
static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *p = arg;
	struct list *n;
	(void)fd;
	(void)what;
	while ((n = list_pop_head(&p->dead_clients)))
		free_client(list_entry(n, struct client, node));
	while ((n = list_pop_head(&p->dead_servers)))
		proxy_free_server(list_entry(n, struct server, node));
}

static void scram_cache_clear(struct proxy *p)
{
	while (p->scram_cache) {
		struct scram_cache *c = p->scram_cache;
		p->scram_cache = c->next;
		free(c->user);
		free(c->password);
		OPENSSL_cleanse(&c->secret, sizeof(c->secret));
		free(c);
	}
}

void proxy_schedule_reap(struct proxy *p)
{
	if (p->reaper)
		event_active(p->reaper, EV_TIMEOUT, 0);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	shard_accept(arg, fd, sa, salen);
}

static void reenable_accept(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evconnlistener_enable(arg);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	(void)arg;
	log_error("accept failed: %s", evutil_socket_error_to_string(e));
	if (e == EMFILE || e == ENFILE) {
		/* Out of descriptors: pause accepting briefly instead of spinning. */
		evconnlistener_disable(l);
		struct timeval tv = {1, 0};
		event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, reenable_accept, l, &tv);
	}
}

static void shutdown_check(struct proxy *p)
{
	if (!p->shutting_down)
		return;
	bool busy = false;
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &p->pools)
	{
		struct pool *pool = list_entry(it, struct pool, node);
		if (pool->n_active_cl > 0)
			busy = true;
	}
	/* Shard 0 (signals, HTTP, auth_query) ends after the others. */
	bool others = p->shard == 0 && !shards_others_retired(p);
	if ((!busy && !others) || now_sec() > p->shutdown_deadline) {
		if (busy)
			log_warn("shutdown_timeout reached with transactions still open; exiting");
		else
			log_info("all transactions finished; exiting");
		event_base_loopbreak(p->base);
	}
}

/* PgBouncer's avg_* columns: rates over the last STATS_PERIOD seconds. */
#define STATS_PERIOD 60.0
static void stats_period(struct proxy *p)
{
	double now = now_sec();
	double el = now - p->stats_period_start;
	if (el < STATS_PERIOD)
		return;
	p->stats_period_start = now;
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &p->pools)
	{
		struct pool *pool = list_entry(it, struct pool, node);
		struct pool_stats *c = &pool->stats, *o = &pool->prev, *a = &pool->avg;
		uint64_t dx = c->transactions - o->transactions, dq = c->queries - o->queries;
		a->transactions = (uint64_t)((double)dx / el);
		a->queries = (uint64_t)((double)dq / el);
		a->bytes_in = (uint64_t)((double)(c->bytes_in - o->bytes_in) / el);
		a->bytes_out = (uint64_t)((double)(c->bytes_out - o->bytes_out) / el);
		a->xact_us = dx ? (c->xact_us - o->xact_us) / dx : 0;
		a->query_us = dq ? (c->query_us - o->query_us) / dq : 0;
		a->wait_us_total = (uint64_t)((double)(c->wait_us_total - o->wait_us_total) / el);
		*o = *c;
	}
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *p = arg;
	(void)fd;
	(void)what;
	pool_janitor(p);
	stats_period(p);
	admin_check_pause(p);
	shutdown_check(p);
	/* Requests that went idle are over: hand them to the detectors (once a second). */
	uint64_t now = now_us();
	if (p->prof->on && now - p->prof_idle_checked > 1000000) {
		p->prof_idle_checked = now;
		shard_prof_lock();
		for (struct list *it = p->all_clients.next; it != &p->all_clients; it = it->next) {
			struct client *cl = list_entry(it, struct client, all_node);
			if (cl->prof)
				prof_client_idle(p->prof, cl->prof, now);
		}
		shard_prof_unlock();
	}
	if (p->shard == 0)
		advisor_tick(p);
}

static void prof_apply_config(struct proxy *p)
{
	p->prof->on = p->cfg->profile;
	p->prof->keep_literals = p->cfg->keep_literals;
	p->prof->detect.threshold = p->cfg->n_plus_one_threshold;
	p->prof->idle_gap_us = (uint64_t)(p->cfg->request_idle_gap * 1e6);
}

static int load_tls(struct proxy *p, const struct config *cfg, SSL_CTX **cl, SSL_CTX **sv, char *err,
		    size_t errlen)
{
	*cl = *sv = NULL;
	if (cfg->client_tls_sslmode != SSLMODE_DISABLE) {
		*cl = tls_server_ctx_new(cfg->client_tls_sslmode, cfg->client_tls_cert_file, cfg->client_tls_key_file,
					 cfg->client_tls_ca_file, err, errlen);
		if (!*cl)
			return -1;
	}
	if (cfg->server_tls_sslmode != SSLMODE_DISABLE) {
		*sv = tls_client_ctx_new(cfg->server_tls_sslmode, cfg->server_tls_cert_file, cfg->server_tls_key_file,
					 cfg->server_tls_ca_file, err, errlen);
		if (!*sv) {
			if (*cl)
				SSL_CTX_free(*cl);
			*cl = NULL;
			return -1;
		}
	}
	(void)p;
	return 0;
}

int proxy_init(struct proxy *p, struct event_base *base, struct config *cfg, int shard, int argc, char **argv,
	       char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->wake_fd = -1;
	p->base = base;
	p->cfg = cfg;
	p->argc = argc;
	p->argv = argv;
	list_init(&p->pools);
	list_init(&p->all_clients);
	list_init(&p->login_clients);
	list_init(&p->dead_clients);
	list_init(&p->dead_servers);
	list_init(&p->admin_clients);
	list_init(&p->authq_conns);
	p->stats_period_start = now_sec();
	if (shard_attach(p, shard, err, errlen) < 0)
		return -1;
	p->advisor_catalog_at = json_object();
	if (shard > 0) {
		/* One profiler for the process: shard 0's. */
		p->prof = shard_at(0)->prof;
	} else {
		p->prof = calloc(1, sizeof(*p->prof));
		if (!p->prof || prof_init(p->prof, cfg->profile, cfg->keep_literals, (size_t)cfg->max_fingerprints,
					  (size_t)cfg->max_routes) < 0) {
			snprintf(err, errlen, "out of memory for %d fingerprints", cfg->max_fingerprints);
			return -1;
		}
		prof_apply_config(p);
	}
	if (cfg->auth_file && userlist_load(&p->users, cfg->auth_file, err, errlen) < 0)
		return -1;
	if (load_tls(p, cfg, &p->client_tls, &p->server_tls, err, errlen) < 0)
		return -1;
	p->reaper = event_new(base, -1, 0, reap_cb, p);
	p->janitor = event_new(base, -1, EV_PERSIST, janitor_cb, p);
	struct timeval tv = {0, 200000};
	event_add(p->janitor, &tv);
	if (shard > 0)
		return 0; /* shard 0 listens for all */

	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	const char *host = cfg->listen_host && cfg->listen_host[0] ? cfg->listen_host : "127.0.0.1";
	if (strcmp(host, "*") == 0)
		host = "0.0.0.0";
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)cfg->listen_port);
		sl = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)cfg->listen_port);
		sl = sizeof(*in6);
	} else {
		snprintf(err, errlen, "listen address \"%s\" is not an IP address", host);
		return -1;
	}
	p->listener = evconnlistener_new_bind(base, accept_cb, p,
					      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
					      1024, (struct sockaddr *)&ss, (int)sl);
	if (!p->listener) {
		snprintf(err, errlen, "cannot listen on %s:%d: %s", host, cfg->listen_port, strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(p->listener, accept_error_cb);
	log_info("listening on %s:%d (%s mode, pool_size %d, auth %s, client TLS %s, server TLS %s, %d worker%s%s)",
		 host, cfg->listen_port, pool_mode_name(cfg->pool_mode), cfg->pool_size,
		 auth_type_name(cfg->auth_type), sslmode_name(cfg->client_tls_sslmode),
		 sslmode_name(cfg->server_tls_sslmode), shard_count(), shard_count() == 1 ? "" : "s",
		 cfg->workers ? "" : " (auto)");
	return 0;
}

/* One shard's part of a reload: its TLS contexts, auth file and pools. */
static void reload_shard(struct proxy *p, const struct config *nc, SSL_CTX *ctl, SSL_CTX *stl, struct userlist *ul)
{
	/* Existing TLS sessions keep their SSL objects (which reference the old context). */
	if (p->client_tls)
		SSL_CTX_free(p->client_tls);
	if (p->server_tls)
		SSL_CTX_free(p->server_tls);
	p->client_tls = ctl;
	p->server_tls = stl;
	userlist_free(&p->users);
	p->users = *ul;
	scram_cache_clear(p); /* passwords may have changed */
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &p->pools)
	{
		struct pool *pool = list_entry(it, struct pool, node);
		const struct db_entry *db = config_find_db(nc, pool->database);
		if (db) {
			pool->pool_size = db->pool_size > 0 ? db->pool_size : nc->pool_size;
			if (db_password_for(db, pool->up_user)) {
				if (secret_kind_of(db->password) == SECRET_PLAIN) {
					free(pool->cred.password);
					pool->cred.password = strdup(db->password);
				}
			}
		}
		const struct user_entry *ue = userlist_find(&p->users, pool->up_user);
		if (ue && secret_kind_of(ue->secret) == SECRET_PLAIN) {
			free(pool->cred.password);
			pool->cred.password = strdup(ue->secret);
		} else if (ue && secret_kind_of(ue->secret) == SECRET_MD5) {
			free(pool->cred.md5_secret);
			pool->cred.md5_secret = strdup(ue->secret);
		}
	}
}

/* SIGHUP or admin RELOAD, on any shard: everything is read and checked first, then
 * applied to every shard while the world is stopped (the config is shared). */
int proxy_reload(struct proxy *self)
{
	char err[512];
	int n = shard_count();
	struct config *nc = calloc(1, sizeof(*nc));
	struct userlist *uls = calloc((size_t)n, sizeof(*uls));
	SSL_CTX **ctls = calloc((size_t)n, sizeof(*ctls)), **stls = calloc((size_t)n, sizeof(*stls));
	int loaded = 0, rc = -1;
	if (!nc || !uls || !ctls || !stls) {
		log_error("reload failed, keeping the running configuration: out of memory");
		goto out;
	}
	world_stop(self);
	if (config_reload(self->cfg, nc, err, sizeof(err)) < 0)
		goto fail;
	/* Compared as written: `auto` left as it was is no change, even if the CPUs it
	 * would resolve to have changed since the start. */
	if (nc->workers != self->cfg->workers) {
		int want = config_workers(nc);
		if (want != shard_count())
			log_warn("reload: workers changes only on restart (running %d, the configuration asks for %s%d)",
				 shard_count(), nc->workers ? "" : "auto = ", want);
	}
	nc->workers = self->cfg->workers;
	for (; loaded < n; loaded++) {
		if (nc->auth_file && userlist_load(&uls[loaded], nc->auth_file, err, sizeof(err)) < 0)
			goto fail;
		if (load_tls(self, nc, &ctls[loaded], &stls[loaded], err, sizeof(err)) < 0) {
			userlist_free(&uls[loaded]);
			goto fail;
		}
	}
	if (nc->listen_port != self->cfg->listen_port ||
	    strcmp(nc->listen_host ? nc->listen_host : "", self->cfg->listen_host ? self->cfg->listen_host : "") != 0)
		log_warn("reload: the listen address changes only on restart");
	for (int i = 0; i < n; i++)
		reload_shard(shard_at(i), nc, ctls[i], stls[i], &uls[i]);
	log_set_level((enum log_level)nc->log_level);
	config_free(self->cfg);
	*self->cfg = *nc; /* same address: every object (and shard) keeps its pointer to the config */
	free(nc);
	nc = NULL;
	/* Profiling can be turned on and off; table sizes need a restart. */
	prof_apply_config(self);
	for (int i = 0; i < n; i++)
		shard_kick(shard_at(i)); /* launches for a raised pool_size or min_pool_size */
	log_info("configuration reloaded (pool_size %d)", self->cfg->pool_size);
	rc = 0;
	goto resume;
fail:
	log_error("reload failed, keeping the running configuration: %s", err);
	for (int i = 0; i < loaded; i++) {
		userlist_free(&uls[i]);
		if (ctls[i])
			SSL_CTX_free(ctls[i]);
		if (stls[i])
			SSL_CTX_free(stls[i]);
	}
resume:
	world_resume(self);
out:
	if (nc) {
		config_free(nc);
		free(nc);
	}
	free(uls);
	free(ctls);
	free(stls);
	return rc;
}

static void begin_shutdown_shard(struct proxy *p);

/* SIGTERM (or admin SHUTDOWN) on any shard: every shard drains, and each loop ends
 * once its own transactions are over. */
void proxy_begin_shutdown(struct proxy *self)
{
	world_stop(self);
	for (int i = 0; i < shard_count(); i++)
		begin_shutdown_shard(shard_at(i));
	world_resume(self);
}

static void begin_shutdown_shard(struct proxy *p)
{
	if (p->shutting_down)
		return;
	p->shutting_down = true;
	p->shutdown_deadline = now_sec() + p->cfg->shutdown_timeout;
	if (p->listener) {
		evconnlistener_free(p->listener);
		p->listener = NULL;
	}
	if (p->shard == 0)
		log_info("SIGTERM: not accepting new connections; waiting up to %gs for open transactions",
			 p->cfg->shutdown_timeout);
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &p->all_clients)
	{
		struct client *cl = list_entry(it, struct client, all_node);
		if (cl->state == CL_ACTIVE && cl->server) {
			cl->close_after_release = true;
			/* A session-mode client between transactions can go right now. */
			struct server *sv = cl->server;
			if (sv->state == SV_ACTIVE && sv->tx_status == 'I' && !cl->pending_rfq && !cl->in_extended &&
			    !cl->stream_left)
				pool_release_server(cl);
		} else {
			client_fatal(cl, "57P01", "terminating connection: pgmedic is shutting down");
		}
	}
	shutdown_check(p);
}

void proxy_free(struct proxy *p)
{
	struct list *it, *tmp;
	shard_detach(p); /* first: what is still queued for this shard is dropped while its pools exist */
	p->shutting_down = true; /* closing servers below must not launch new ones */
	list_for_each_safe(it, tmp, &p->all_clients)
		client_close(list_entry(it, struct client, all_node), "pgmedic exiting");
	list_for_each_safe(it, tmp, &p->pools)
	{
		struct pool *pool = list_entry(it, struct pool, node);
		struct list *lists[] = {&pool->login_servers, &pool->idle_servers, &pool->active_servers,
					&pool->reset_servers};
		for (size_t i = 0; i < 4; i++) {
			struct list *s, *st;
			list_for_each_safe(s, st, lists[i])
				server_close(list_entry(s, struct server, node), "pgmedic exiting");
		}
	}
	reap_cb(-1, 0, p);
	authq_close_all(p);
	list_for_each_safe(it, tmp, &p->pools)
	{
		struct pool *pool = list_entry(it, struct pool, node);
		list_del(&pool->node);
		if (pool->group && pool->group->pools[p->shard] == pool)
			__atomic_store_n(&pool->group->pools[p->shard], NULL, __ATOMIC_RELEASE);
		free(pool->database);
		free(pool->user);
		free(pool->host);
		free(pool->up_database);
		free(pool->up_user);
		free(pool->cred.password);
		free(pool->cred.md5_secret);
		for (int i = 0; i < PG_TRACKED_PARAMS; i++)
			intern_drop(pool->defaults[i]);
		pgb_free(&pool->welcome);
		pgb_free(&pool->last_error);
		free(pool);
	}
	if (p->listener)
		evconnlistener_free(p->listener);
	if (p->janitor)
		event_free(p->janitor);
	if (p->reaper)
		event_free(p->reaper);
	if (p->client_tls)
		SSL_CTX_free(p->client_tls);
	if (p->server_tls)
		SSL_CTX_free(p->server_tls);
	userlist_free(&p->users);
	scram_cache_clear(p);
	advisor_shutdown(p);
	json_decref(p->advisor_catalog_at);
	if (p->shard == 0 && p->prof) {
		prof_free(p->prof);
		free(p->prof);
	}
	p->prof = NULL;
}

void proxy_totals(struct proxy_totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < shard_count(); i++) {
		const struct proxy *p = shard_at(i);
		t->client_connections_total += p->client_connections_total;
		t->client_login_failures += p->client_login_failures;
		t->server_connections_total += p->server_connections_total;
		t->cancel_requests += p->cancel_requests;
		t->bad_packets += p->bad_packets;
		t->plan_retries += p->plan_retries;
		t->server_moves += p->server_moves;
		for (int k = 0; k < 8; k++)
			t->pins_total[k] += p->pins_total[k];
		t->n_pinned += p->n_pinned;
		for (const struct list *it = p->login_clients.next; it != &p->login_clients; it = it->next)
			t->n_login++;
	}
}
