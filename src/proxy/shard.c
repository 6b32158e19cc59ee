/* shard.c - see shard.h: the shard table, the world stop, handing accepted sockets
 * to shards, and the pool groups. */
#include "proxy/shard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/intern.h"
#include "core/log.h"
#include "proxy/proxy.h"

/* One entry of a shard's queue: an accepted socket (fn NULL) or a message. */
struct handoff {
	int fd;
	int salen;
	struct sockaddr_storage sa;
	shard_fn *fn;
	void (*drop)(void *arg);
	void *arg;
};

static struct {
	int n;
	struct proxy *shards[64];
	pthread_mutex_t m;
	pthread_cond_t c;
	int owner;          /* shard stopping the world, or -1 */
	uint64_t gen;       /* number of the current (or last) stop */
	int parked;         /* shards parked for stop `gen` */
	int retired;        /* shards whose loop has ended */
	atomic_uint_fast64_t next_id;
	atomic_int clients;
	pthread_mutex_t groups_lock;
	struct pool_group *groups;
	uint64_t group_serials;
} W = {.m = PTHREAD_MUTEX_INITIALIZER,
       .c = PTHREAD_COND_INITIALIZER,
       .owner = -1,
       .groups_lock = PTHREAD_MUTEX_INITIALIZER};

int shard_n_live = 1;
pthread_mutex_t shard_prof_mutex = PTHREAD_MUTEX_INITIALIZER;

int shards_init(int n)
{
	if (n < 1 || n > 64)
		return -1;
	W.n = n;
	shard_n_live = n;
	W.owner = -1;
	return 0;
}

int shard_count(void)
{
	return W.n ? W.n : 1;
}

struct proxy *shard_at(int i)
{
	return i >= 0 && i < W.n ? W.shards[i] : NULL;
}

uint64_t shard_next_id(void)
{
	return atomic_fetch_add(&W.next_id, 1) + 1;
}

int shard_clients_add(int d)
{
	return atomic_fetch_add(&W.clients, d) + d;
}

/* ------------------------------------------------------------ the stop ---- */

/* Called with W.m held, on a shard that is not the owner: count it as parked for
 * the current stop and wait until that stop is over. */
static void park_locked(struct proxy *p)
{
	uint64_t g = W.gen;
	if (p->parked_gen != g) {
		p->parked_gen = g;
		W.parked++;
		pthread_cond_broadcast(&W.c);
	}
	while (W.owner != -1 && W.gen == g)
		pthread_cond_wait(&W.c, &W.m);
}

/* World stops nest on the thread that owns one (work done on another shard's
 * behalf may stop the world again). */
static __thread int stop_depth;

void world_stop(struct proxy *self)
{
	if (W.n <= 1 || stop_depth++ > 0)
		return;
	pthread_mutex_lock(&W.m);
	/* Someone else is stopping the world: be parked for them first. */
	while (W.owner != -1)
		park_locked(self);
	W.owner = self->shard;
	W.gen++;
	W.parked = 0;
	self->parked_gen = W.gen; /* the owner is not counted */
	for (int i = 0; i < W.n; i++)
		if (i != self->shard && W.shards[i] && !W.shards[i]->retired) {
			uint64_t one = 1;
			ssize_t r = write(W.shards[i]->wake_fd, &one, sizeof(one));
			(void)r; /* EAGAIN: the counter is already non-zero, a wake-up is pending */
		}
	for (;;) {
		int others = 0;
		for (int i = 0; i < W.n; i++)
			if (i != self->shard && W.shards[i] && !W.shards[i]->retired)
				others++;
		if (W.parked >= others)
			break;
		pthread_cond_wait(&W.c, &W.m);
	}
	pthread_mutex_unlock(&W.m);
}

void world_resume(struct proxy *self)
{
	(void)self;
	if (W.n <= 1 || --stop_depth > 0)
		return;
	pthread_mutex_lock(&W.m);
	W.owner = -1;
	pthread_cond_broadcast(&W.c);
	pthread_mutex_unlock(&W.m);
}

bool shards_others_retired(const struct proxy *self)
{
	if (W.n <= 1)
		return true;
	pthread_mutex_lock(&W.m);
	int n = 0;
	for (int i = 0; i < W.n; i++)
		if (i != self->shard && W.shards[i] && W.shards[i]->retired)
			n++;
	pthread_mutex_unlock(&W.m);
	return n == W.n - 1;
}

void shard_retire(struct proxy *p)
{
	if (W.n <= 1)
		return;
	pthread_mutex_lock(&W.m);
	p->retired = true;
	W.retired++;
	pthread_cond_broadcast(&W.c);
	pthread_mutex_unlock(&W.m);
}

/* ------------------------------------------------------------ wake-ups ---- */

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *p = arg;
	(void)what;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	pthread_mutex_lock(&W.m);
	if (W.owner != -1 && W.owner != p->shard)
		park_locked(p);
	pthread_mutex_unlock(&W.m);

	pthread_mutex_lock(&p->hq_lock);
	struct handoff *q = p->hq;
	size_t n = p->hq_len;
	p->hq = NULL;
	p->hq_len = p->hq_cap = 0;
	pthread_mutex_unlock(&p->hq_lock);
	for (size_t i = 0; i < n; i++) {
		if (q[i].fn) {
			q[i].fn(p, q[i].arg);
			continue;
		}
		if (p->shutting_down) {
			close(q[i].fd);
			atomic_fetch_sub(&p->load, 1);
			continue;
		}
		atomic_fetch_sub(&p->load, 1);
		client_accept(p, q[i].fd, (const struct sockaddr *)&q[i].sa, q[i].salen);
	}
	free(q);

	if (atomic_exchange(&p->kick, 0))
		pool_kick_all(p);
}

int shard_attach(struct proxy *p, int idx, char *err, size_t errlen)
{
	p->shard = idx;
	pthread_mutex_init(&p->hq_lock, NULL);
	if (idx >= 0 && idx < 64)
		W.shards[idx] = p;
	if (W.n <= 1) {
		p->wake_fd = -1;
		return 0;
	}
	p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->wake_fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -1;
	}
	p->wake_ev = event_new(p->base, p->wake_fd, EV_READ | EV_PERSIST, wake_cb, p);
	if (!p->wake_ev || event_add(p->wake_ev, NULL) < 0) {
		snprintf(err, errlen, "cannot set up the wake-up event of worker %d", idx);
		return -1;
	}
	return 0;
}

void shard_detach(struct proxy *p)
{
	if (p->wake_ev) {
		event_free(p->wake_ev);
		p->wake_ev = NULL;
	}
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	p->wake_fd = -1;
	for (size_t i = 0; i < p->hq_len; i++) {
		if (p->hq[i].fn) {
			if (p->hq[i].drop)
				p->hq[i].drop(p->hq[i].arg);
		} else {
			close(p->hq[i].fd);
		}
	}
	free(p->hq);
	p->hq = NULL;
	p->hq_len = 0;
	pthread_mutex_destroy(&p->hq_lock);
	if (p->shard >= 0 && p->shard < 64 && W.shards[p->shard] == p)
		W.shards[p->shard] = NULL;
}

static void wake(struct proxy *p)
{
	uint64_t one = 1;
	ssize_t r = write(p->wake_fd, &one, sizeof(one));
	(void)r;
}

void shard_kick(struct proxy *p)
{
	if (W.n <= 1) {
		pool_kick_all(p);
		return;
	}
	atomic_store(&p->kick, 1);
	wake(p);
}

void shard_kick_group(struct pool_group *g)
{
	for (int i = 0; i < W.n; i++) {
		struct pool *pl = __atomic_load_n(&g->pools[i], __ATOMIC_ACQUIRE);
		if (pl)
			shard_kick(pl->proxy);
	}
}

void shards_break_all(void)
{
	for (int i = 0; i < W.n; i++)
		if (W.shards[i])
			event_base_loopbreak(W.shards[i]->base);
}

static int enqueue(struct proxy *to, const struct handoff *h)
{
	pthread_mutex_lock(&to->hq_lock);
	if (to->hq_len == to->hq_cap) {
		size_t nc = to->hq_cap ? to->hq_cap * 2 : 16;
		struct handoff *n = realloc(to->hq, nc * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&to->hq_lock);
			return -1;
		}
		to->hq = n;
		to->hq_cap = nc;
	}
	to->hq[to->hq_len++] = *h;
	pthread_mutex_unlock(&to->hq_lock);
	wake(to);
	return 0;
}

void shard_accept(struct proxy *p0, int fd, const struct sockaddr *sa, int salen)
{
	struct proxy *best = p0;
	if (W.n > 1) {
		int best_load = atomic_load(&p0->load);
		for (int i = 1; i < W.n; i++) {
			struct proxy *s = W.shards[i];
			if (!s || s->retired)
				continue;
			int l = atomic_load(&s->load);
			if (l < best_load) {
				best = s;
				best_load = l;
			}
		}
	}
	if (best == p0) {
		client_accept(p0, fd, sa, salen);
		return;
	}
	atomic_fetch_add(&best->load, 1); /* counted until it is accepted there */
	struct handoff h = {.fd = fd};
	h.salen = salen > (int)sizeof(h.sa) ? (int)sizeof(h.sa) : salen;
	memcpy(&h.sa, sa, (size_t)h.salen);
	if (enqueue(best, &h) < 0) {
		atomic_fetch_sub(&best->load, 1);
		client_accept(p0, fd, sa, salen);
	}
}

int shard_post(struct proxy *to, shard_fn *fn, void (*drop)(void *arg), void *arg)
{
	struct handoff h = {.fd = -1, .fn = fn, .drop = drop, .arg = arg};
	return enqueue(to, &h);
}

/* -------------------------------------------------------------- groups ---- */

struct pool_group *pool_group_get(const char *database, const char *user)
{
	pthread_mutex_lock(&W.groups_lock);
	struct pool_group *g;
	for (g = W.groups; g; g = g->next)
		if (strcmp(g->database, database) == 0 && strcmp(g->user, user) == 0)
			break;
	if (!g) {
		g = calloc(1, sizeof(*g));
		if (g) {
			g->database = strdup(database);
			g->user = strdup(user);
			if (!g->database || !g->user) {
				free(g->database);
				free(g->user);
				free(g);
				g = NULL;
			} else {
				g->serial = ++W.group_serials;
				pthread_mutex_init(&g->lock, NULL);
				pgb_init(&g->welcome);
				g->next = W.groups;
				W.groups = g;
			}
		}
	}
	pthread_mutex_unlock(&W.groups_lock);
	return g;
}

void shards_free(void)
{
	pthread_mutex_lock(&W.groups_lock);
	while (W.groups) {
		struct pool_group *g = W.groups;
		W.groups = g->next;
		free(g->database);
		free(g->user);
		pgb_free(&g->welcome);
		for (int i = 0; i < PG_TRACKED_PARAMS; i++)
			intern_drop(g->defaults[i]);
		pthread_mutex_destroy(&g->lock);
		free(g);
	}
	pthread_mutex_unlock(&W.groups_lock);
}

bool pool_group_reserve(struct pool_group *g, int pool_size)
{
	int cur = atomic_load(&g->servers);
	while (cur < pool_size)
		if (atomic_compare_exchange_weak(&g->servers, &cur, cur + 1))
			return true;
	return false;
}

void pool_group_unreserve(struct pool_group *g)
{
	atomic_fetch_sub(&g->servers, 1);
}

void pool_group_publish_welcome(struct pool_group *g, const struct pg_buf *welcome, const char *const *defaults)
{
	pthread_mutex_lock(&g->lock);
	if (!g->have_welcome) {
		pgb_reset(&g->welcome);
		pgb_raw(&g->welcome, welcome->data, welcome->len);
		if (!g->welcome.failed) {
			for (int i = 0; i < PG_TRACKED_PARAMS; i++)
				intern_set(&g->defaults[i], defaults[i]);
			__atomic_store_n(&g->have_welcome, true, __ATOMIC_RELAXED);
		}
	}
	pthread_mutex_unlock(&g->lock);
}

bool pool_group_adopt_welcome(struct pool_group *g, struct pool *pool)
{
	bool ok = false;
	pthread_mutex_lock(&g->lock);
	if (g->have_welcome && !pool->have_welcome) {
		pgb_reset(&pool->welcome);
		pgb_raw(&pool->welcome, g->welcome.data, g->welcome.len);
		if (!pool->welcome.failed) {
			for (int i = 0; i < PG_TRACKED_PARAMS; i++)
				intern_set(&pool->defaults[i], g->defaults[i]);
			pool->have_welcome = true;
			ok = true;
		}
	}
	pthread_mutex_unlock(&g->lock);
	return ok;
}

void pool_group_forget_welcome(struct pool_group *g)
{
	pthread_mutex_lock(&g->lock);
	__atomic_store_n(&g->have_welcome, false, __ATOMIC_RELAXED);
	pgb_reset(&g->welcome);
	pthread_mutex_unlock(&g->lock);
}

/* A waiter on another shard goes first only if it queued earlier by more than
 * FAIRNESS_SLACK_US and more than an eighth of the local first waiter's wait: strict
 * order where waits differ clearly (a small pool), and no server crossing loops for
 * the jitter between two long queues of a saturated pool (measured: a 1 ms slack
 * alone moved a server in one transaction of five with 200 clients over a pool of 20). */
#define FAIRNESS_SLACK_US 1000

bool pool_group_idle_elsewhere(const struct pool_group *g, const struct pool *mine)
{
	for (int i = 0; i < W.n; i++) {
		const struct pool *o = __atomic_load_n(&g->pools[i], __ATOMIC_ACQUIRE);
		if (!o || o == mine || __atomic_load_n(&o->n_idle_sv, __ATOMIC_RELAXED) == 0 ||
		    __atomic_load_n(&o->paused, __ATOMIC_RELAXED))
			continue;
		/* its own first waiter is not clearly younger than ours: it keeps them */
		uint64_t h = __atomic_load_n(&o->head_wait_us, __ATOMIC_RELAXED);
		if (mine->head_wait_us && h && h < mine->head_wait_us + FAIRNESS_SLACK_US)
			continue;
		return true;
	}
	return false;
}

bool pool_group_waiting_elsewhere(const struct pool_group *g, const struct pool *mine)
{
	int w = atomic_load_explicit(&g->waiting, memory_order_relaxed);
	return w > mine->n_waiting + mine->n_welcome;
}

/* A pool that wants more servers than it has idle or logging in. */
static bool short_of_servers(const struct pool *pl)
{
	return __atomic_load_n(&pl->n_waiting, __ATOMIC_RELAXED) >
	       __atomic_load_n(&pl->n_idle_sv, __ATOMIC_RELAXED) + __atomic_load_n(&pl->n_login_sv, __ATOMIC_RELAXED);
}

struct pool *pool_group_needier(const struct pool_group *g, const struct pool *mine, uint64_t mine_us)
{
	struct pool *best = NULL;
	uint64_t best_us = 0, slack = FAIRNESS_SLACK_US;
	if (mine_us) {
		uint64_t now = now_us();
		if (now > mine_us && (now - mine_us) / 8 > slack)
			slack = (now - mine_us) / 8;
	}
	for (int i = 0; i < W.n; i++) {
		struct pool *o = __atomic_load_n(&g->pools[i], __ATOMIC_ACQUIRE);
		if (!o || o == mine || !short_of_servers(o))
			continue;
		uint64_t h = __atomic_load_n(&o->head_wait_us, __ATOMIC_RELAXED);
		if (!h || (mine_us && h + slack > mine_us))
			continue;
		if (!best || h < best_us) {
			best = o;
			best_us = h;
		}
	}
	return best;
}

void pool_group_rebalance(struct proxy *self, struct pool_group *g)
{
	if (W.n <= 1)
		return;
	world_stop(self);
	/* Servers set aside for a pool on another shard (pool_server_ready) go there if
	 * it still needs them; else they are free again where they are. */
	for (int i = 0; i < W.n; i++) {
		struct pool *pl = g->pools[i];
		if (!pl)
			continue;
		struct list *it, *tmp;
		list_for_each_safe(it, tmp, &pl->idle_servers)
		{
			struct server *sv = list_entry(it, struct server, node);
			struct pool *to = sv->give_to;
			if (!to)
				continue;
			sv->give_to = NULL;
			if (to->proxy->retired || to->proxy->shutting_down || to->paused || !short_of_servers(to) ||
			    server_move_to(sv, to) < 0) {
				/* back to the head of its idle list: usable here */
				list_del(&sv->node);
				list_add_head(&pl->idle_servers, &sv->node);
				shard_kick(pl->proxy);
				continue;
			}
			shard_kick(to->proxy);
		}
	}
	/* The welcome first: clients that wait for it need no server. */
	for (int i = 0; i < W.n; i++) {
		struct pool *pl = g->pools[i];
		if (pl && pl->n_welcome > 0 && !pl->have_welcome && pool_group_adopt_welcome(g, pl))
			shard_kick(pl->proxy);
	}
	/* Then idle servers to the shards whose clients have waited longest: the pool
	 * with the oldest first waiter among those that need more servers gets one
	 * from a pool whose waiters (if any) came later.  Each move goes to an older
	 * waiter, so none is undone and the loop ends. */
	for (;;) {
		struct pool *want = NULL, *have = NULL;
		for (int i = 0; i < W.n; i++) {
			struct pool *pl = g->pools[i];
			if (!pl || pl->proxy->retired || pl->proxy->shutting_down || pl->paused || !pl->head_wait_us)
				continue;
			if (short_of_servers(pl) && (!want || pl->head_wait_us < want->head_wait_us))
				want = pl;
		}
		if (!want)
			break;
		for (int i = 0; i < W.n; i++) {
			struct pool *pl = g->pools[i];
			if (!pl || pl == want || pl->n_idle_sv == 0 || pl->proxy->retired || pl->paused)
				continue;
			if (pl->head_wait_us && pl->head_wait_us < want->head_wait_us + FAIRNESS_SLACK_US)
				continue; /* its own waiters came first */
			if (!have || pl->n_idle_sv > have->n_idle_sv)
				have = pl;
		}
		if (!have)
			break;
		struct server *sv = list_entry(have->idle_servers.next, struct server, node);
		if (server_move_to(sv, want) < 0)
			break;
		shard_kick(want->proxy);
		shard_kick(have->proxy);
	}
	world_resume(self);
}
