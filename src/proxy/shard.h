/* shard.h - N event loops in one process.
 *
 * `workers = N` runs N shards, each a struct proxy with its own thread, event base,
 * clients, server connections and pools.  A shard's state is touched by its own
 * thread only, with two exceptions:
 *
 *   - the world stop: world_stop() parks every other shard at a safe point (between
 *     two callbacks) and returns; until world_resume() the caller may read and change
 *     any shard's state, call its functions and arm events on its event base.  Rare
 *     work uses it: reload, admin commands, /metrics, cancels for another shard,
 *     DROP DATABASE, and moving an idle server connection to a shard that has a
 *     client waiting for one;
 *   - small shared objects with their own locks: the profiler (shard_prof_lock), the
 *     pool groups (one per database/user over every shard: the pool_size quota, the
 *     shared welcome), the intern table, and the per-shard queue of accepted sockets.
 *
 * Shard 0 runs on the main thread; it owns the listener, signals, HTTP and the
 * advisor, and hands each accepted socket to the shard with the fewest clients.
 * With one worker (`workers = 1`, or auto on one CPU) all of this reduces to one loop: world_stop() is a
 * no-op and no lock is taken on the hot path. */
#ifndef PGMEDIC_SHARD_H
#define PGMEDIC_SHARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pg/proto.h"

struct proxy;
struct pool;
struct pool_group;

/* Set up the process's shard table before any proxy_init (n: 1..64). */
int shards_init(int n);
void shards_free(void);
int shard_count(void);
struct proxy *shard_at(int i);

/* proxy_init/proxy_free of shard `idx`: its wake-up eventfd and event. */
int shard_attach(struct proxy *p, int idx, char *err, size_t errlen);
void shard_detach(struct proxy *p);
/* Have all other shards' loops ended (a drain: shard 0, which serves signals and
 * HTTP, ends last)? */
bool shards_others_retired(const struct proxy *self);
/* The shard's loop has ended: world stops no longer wait for it. */
void shard_retire(struct proxy *p);

void world_stop(struct proxy *self);
void world_resume(struct proxy *self);

/* Shard 0's listener: give the accepted socket to the least loaded shard. */
void shard_accept(struct proxy *p0, int fd, const struct sockaddr *sa, int salen);
/* Ask shard p to run pool_kick_all() soon (from any thread). */
void shard_kick(struct proxy *p);
/* Kick every shard that has a pool of this group. */
void shard_kick_group(struct pool_group *g);
/* Runs fn(to, arg) on shard `to`'s loop, soon (any thread may post).  If that loop
 * ends first, drop(arg) runs instead when the shard is freed.  -1: out of memory
 * (nothing was queued). */
typedef void shard_fn(struct proxy *to, void *arg);
int shard_post(struct proxy *to, shard_fn *fn, void (*drop)(void *arg), void *arg);
/* Ask every shard to stop its loop (SIGINT). */
void shards_break_all(void);

/* Unique across shards. */
uint64_t shard_next_id(void);
/* Clients over every shard (max_client_conn): add d, return the new count. */
int shard_clients_add(int d);

/* The profiler is shared: its lock, taken only when there are several shards. */
extern int shard_n_live;
extern pthread_mutex_t shard_prof_mutex;
static inline void shard_prof_lock(void)
{
	if (shard_n_live > 1)
		pthread_mutex_lock(&shard_prof_mutex);
}
static inline void shard_prof_unlock(void)
{
	if (shard_n_live > 1)
		pthread_mutex_unlock(&shard_prof_mutex);
}

/* One per (database, user) over every shard. */
struct pool_group {
	struct pool_group *next;
	char *database, *user;
	uint64_t serial;            /* the profiler's stats_ident serial */
	atomic_int servers;         /* server connections (and launches reserved) */
	atomic_int waiting;         /* clients queued for a server or for the welcome */
	struct pool *pools[64];     /* each shard's pool of this pair, or NULL */
	pthread_mutex_t lock;       /* the welcome below */
	bool have_welcome;
	struct pg_buf welcome;
	const char *defaults[PG_TRACKED_PARAMS]; /* interned */
};

struct pool_group *pool_group_get(const char *database, const char *user);
/* Reserve one server slot under pool_size; false: the quota is full. */
bool pool_group_reserve(struct pool_group *g, int pool_size);
void pool_group_unreserve(struct pool_group *g);
/* The first login's parameters, for every shard's clients. */
void pool_group_publish_welcome(struct pool_group *g, const struct pg_buf *welcome, const char *const *defaults);
/* Copies the group's welcome into pool (which has none); false if there is none yet. */
bool pool_group_adopt_welcome(struct pool_group *g, struct pool *pool);
void pool_group_forget_welcome(struct pool_group *g);
/* Does another shard's pool of this group have an idle server / queued clients? */
bool pool_group_idle_elsewhere(const struct pool_group *g, const struct pool *mine);
bool pool_group_waiting_elsewhere(const struct pool_group *g, const struct pool *mine);
/* The pool of another shard whose clients need a server more than this shard's
 * (queued at mine_us, 0: none queued here): short of servers, and its first client
 * queued clearly earlier (shard.c: FAIRNESS_SLACK_US).  NULL: none.  Read without locks: a hint,
 * checked again under the world stop. */
struct pool *pool_group_needier(const struct pool_group *g, const struct pool *mine, uint64_t mine_us);
/* Stops the world and moves idle servers (and the welcome) to the shards whose
 * clients wait for them. */
void pool_group_rebalance(struct proxy *self, struct pool_group *g);

#endif
