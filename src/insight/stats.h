/* stats.h - the statistics store: per (database, user, fingerprint) counters and
 * a latency histogram, and per route (sqlcommenter route / controller, else
 * application_name) requests, queries and time per request.
 *
 * Bounded: both tables are allocated once at their limits (max_fingerprints,
 * max_routes) and entries are recycled in place, so a pointer to an entry stays
 * valid for the life of the store; `gen` tells whether it still holds the same
 * key.  When a table is full, one insertion evicts one entry: the least used of
 * a few sampled by a clock hand (O(1), never a sweep of the table, so the event
 * loop never stalls the way pg_stat_statements' dealloc does). */
#ifndef PGMEDIC_STATS_H
#define PGMEDIC_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hist.h"

#define QSTAT_ROUTES 8       /* routes remembered per fingerprint */
#define QSTAT_ERR_CLASSES 6  /* SQLSTATE classes counted per fingerprint */

enum route_source { ROUTE_NONE = 0, ROUTE_TAG, ROUTE_CONTROLLER, ROUTE_APP };

/* The fields stats_record() updates on every statement come first, in one cache
 * line with gen and used (under load the entry is cold when a statement ends). */
struct route {
	uint32_t gen;               /* changes when the entry is recycled */
	bool used;
	uint64_t calls, errors, total_us, wait_us;
	uint64_t recent;            /* calls since the clock hand last passed */
	double last_seen;
	uint64_t requests;
	struct hist *req_hist;      /* time per request (µs) */
	uint32_t slot;
	enum route_source source;
	uint64_t hash;
	struct route *next;         /* hash chain */
	char *name;                 /* decoded route, controller or application_name */
	char *controller;           /* controller tag, if any */
	double first_seen;
};

struct qstat_route {
	struct route *rt;
	uint32_t gen;
	uint64_t calls, total_us;
};

/* As for struct route: what every statement updates first (two cache lines,
 * its histogram pointer included), then the first route slots. */
struct qstat {
	uint32_t gen;
	bool used;
	uint64_t calls, errors, rows;
	uint64_t total_us, wait_us, min_us, max_us;
	double mean_us, m2;         /* Welford, for stddev */
	double last_seen;           /* unix time */
	uint64_t recent;
	struct hist *hist;
	struct qstat_route routes[QSTAT_ROUTES];
	uint64_t fp, key;
	uint32_t slot;
	struct qstat *next;         /* hash chain */
	char *database, *user;
	char *query;                /* normalized text */
	char *example;              /* one statement as received (redacted when shown) */
	double first_seen;          /* unix time */
	struct {
		char cls[3];
		uint64_t n;
	} err[QSTAT_ERR_CLASSES];
};

struct stats_store {
	struct qstat *q;            /* max_q entries */
	struct qstat **qbuckets;
	size_t max_q, nq, qmask, qhand;
	struct route *r;
	struct route **rbuckets;
	size_t max_r, nr, rmask, rhand;
	uint64_t evicted, routes_evicted;
	uint64_t calls, errors, total_us;  /* totals, including evicted entries */
};

/* 0, or -1 when out of memory. */
int stats_init(struct stats_store *s, size_t max_fingerprints, size_t max_routes) __attribute__((warn_unused_result));
void stats_free(struct stats_store *s);

/* Who ran a statement: the pool's database and user, and their stats_ident_hash()
 * (computed once per pool rather than on every statement). */
struct stats_ident {
	const char *database, *user;
	uint64_t hash;
	uint64_t serial;        /* unique to this (database, user) for the life of the process; 0: none */
};
uint64_t stats_ident_hash(const char *database, const char *user);

/* The entry of (fp, database, user), created when missing (then query/example
 * are copied; example cut at 4 KiB).  NULL when out of memory. */
struct qstat *stats_qstat(struct stats_store *s, uint64_t fp, const struct stats_ident *who, const char *query,
			  size_t qlen, const char *example, size_t elen);
/* Existing entry only (no text needed). */
struct qstat *stats_qstat_find(struct stats_store *s, uint64_t fp, const struct stats_ident *who);
/* The route named name (created when missing).  NULL when out of memory. */
struct route *stats_route(struct stats_store *s, const char *name, enum route_source source, const char *controller);

/* One finished statement.  rt may be NULL; sqlstate NULL unless it failed. */
void stats_record(struct stats_store *s, struct qstat *qs, struct route *rt, uint64_t server_us, uint64_t wait_us,
		  uint64_t rows, const char *sqlstate);
/* A request of the route started (its first statement arrived). */
void stats_request_begin(struct route *rt);
/* A request of the route finished; its time (server + wait time of its statements). */
void stats_request_done(struct route *rt, uint64_t request_us);
/* Wall-clock now in unix seconds (first_seen / last_seen). */
double stats_wall_now(void);

#endif
