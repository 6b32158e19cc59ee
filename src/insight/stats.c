/* stats.c - the statistics store (see stats.h).  Runs on the event loop: every
 * operation is O(1) apart from the hash chain walk. */
#include "insight/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define EVICT_SAMPLE 8
#define EXAMPLE_MAX 4096

static size_t pow2_at_least(size_t n)
{
	size_t v = 16;
	while (v < n)
		v <<= 1;
	return v;
}

int stats_init(struct stats_store *s, size_t max_fingerprints, size_t max_routes)
{
	memset(s, 0, sizeof(*s));
	s->max_q = max_fingerprints;
	s->max_r = max_routes;
	size_t qb = pow2_at_least(max_fingerprints * 2), rb = pow2_at_least(max_routes * 2);
	s->q = calloc(s->max_q, sizeof(*s->q));
	s->qbuckets = calloc(qb, sizeof(*s->qbuckets));
	s->r = calloc(s->max_r, sizeof(*s->r));
	s->rbuckets = calloc(rb, sizeof(*s->rbuckets));
	if (!s->q || !s->qbuckets || !s->r || !s->rbuckets) {
		stats_free(s);
		return -1;
	}
	s->qmask = qb - 1;
	s->rmask = rb - 1;
	for (size_t i = 0; i < s->max_q; i++)
		s->q[i].slot = (uint32_t)i;
	for (size_t i = 0; i < s->max_r; i++)
		s->r[i].slot = (uint32_t)i;
	return 0;
}

static void qstat_clear(struct qstat *q)
{
	free(q->database);
	free(q->user);
	free(q->query);
	free(q->example);
	q->database = q->user = q->query = q->example = NULL;
}

static void route_clear(struct route *r)
{
	free(r->name);
	free(r->controller);
	r->name = r->controller = NULL;
}

void stats_free(struct stats_store *s)
{
	if (s->q)
		for (size_t i = 0; i < s->max_q; i++) {
			qstat_clear(&s->q[i]);
			free(s->q[i].hist);
		}
	if (s->r)
		for (size_t i = 0; i < s->max_r; i++) {
			route_clear(&s->r[i]);
			free(s->r[i].req_hist);
		}
	free(s->q);
	free(s->qbuckets);
	free(s->r);
	free(s->rbuckets);
	memset(s, 0, sizeof(*s));
}

/* To the clock tick (a few ms), which is all a first or last seen needs, and
 * cheaper than the precise clock on every recorded statement. */
double stats_wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t stats_ident_hash(const char *database, const char *user)
{
	return XXH3_64bits(database, strlen(database)) ^ (XXH3_64bits(user, strlen(user)) * 31);
}

/* The hash-table key of (fp, who): a multiply-xorshift mix of the two hashes. */
static uint64_t qkey(uint64_t fp, const struct stats_ident *who)
{
	uint64_t k = (fp ^ who->hash) * 0x9E3779B97F4A7C15ull;
	return k ^ (k >> 29);
}

struct qstat *stats_qstat_find(struct stats_store *s, uint64_t fp, const struct stats_ident *who)
{
	uint64_t key = qkey(fp, who);
	for (struct qstat *q = s->qbuckets[key & s->qmask]; q; q = q->next)
		if (q->key == key && q->fp == fp && strcmp(q->database, who->database) == 0 &&
		    strcmp(q->user, who->user) == 0)
			return q;
	return NULL;
}

static void qstat_unlink(struct stats_store *s, struct qstat *q)
{
	struct qstat **pp = &s->qbuckets[q->key & s->qmask];
	while (*pp && *pp != q)
		pp = &(*pp)->next;
	if (*pp)
		*pp = q->next;
	q->next = NULL;
}

/* The least used of a few entries after the clock hand; passing resets `recent`,
 * so an entry that was busy long ago but is idle now goes on the next lap. */
static struct qstat *qstat_victim(struct stats_store *s)
{
	struct qstat *best = NULL;
	for (int i = 0; i < EVICT_SAMPLE; i++) {
		struct qstat *q = &s->q[s->qhand];
		s->qhand = (s->qhand + 1) % s->max_q;
		if (!best || q->recent < best->recent || (q->recent == best->recent && q->last_seen < best->last_seen))
			best = q;
		q->recent /= 2;
	}
	return best;
}

static char *dup_n(const char *p, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, p, n);
		d[n] = 0;
	}
	return d;
}

struct qstat *stats_qstat(struct stats_store *s, uint64_t fp, const struct stats_ident *who, const char *query,
			  size_t qlen, const char *example, size_t elen)
{
	struct qstat *q = stats_qstat_find(s, fp, who);
	if (q)
		return q;
	if (s->nq < s->max_q) {
		q = &s->q[s->nq++];
	} else {
		q = qstat_victim(s);
		qstat_unlink(s, q);
		qstat_clear(q);
		s->evicted++;
	}
	struct hist *h = q->hist;
	uint32_t gen = q->gen + 1, slot = q->slot;
	memset(q, 0, sizeof(*q));
	q->gen = gen;
	q->slot = slot;
	q->hist = h;
	if (!q->hist)
		q->hist = malloc(sizeof(*q->hist));
	if (elen > EXAMPLE_MAX)
		elen = EXAMPLE_MAX;
	q->database = strdup(who->database);
	q->user = strdup(who->user);
	q->query = dup_n(query, qlen);
	q->example = dup_n(example, elen);
	if (!q->hist || !q->database || !q->user || !q->query || !q->example) {
		qstat_clear(q);
		q->gen++;
		return NULL; /* stays unused (not hashed); recycled by a later insertion */
	}
	memset(q->hist, 0, sizeof(*q->hist));
	q->used = true;
	q->fp = fp;
	q->key = qkey(fp, who);
	q->min_us = UINT64_MAX;
	q->first_seen = q->last_seen = stats_wall_now();
	q->next = s->qbuckets[q->key & s->qmask];
	s->qbuckets[q->key & s->qmask] = q;
	return q;
}

static void route_unlink(struct stats_store *s, struct route *r)
{
	struct route **pp = &s->rbuckets[r->hash & s->rmask];
	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (*pp)
		*pp = r->next;
	r->next = NULL;
}

struct route *stats_route(struct stats_store *s, const char *name, enum route_source source, const char *controller)
{
	uint64_t h = XXH3_64bits(name, strlen(name)) ^ (uint64_t)source;
	for (struct route *r = s->rbuckets[h & s->rmask]; r; r = r->next)
		if (r->hash == h && r->source == source && strcmp(r->name, name) == 0)
			return r;
	struct route *r;
	if (s->nr < s->max_r) {
		r = &s->r[s->nr++];
	} else {
		struct route *best = NULL;
		for (int i = 0; i < EVICT_SAMPLE; i++) {
			struct route *c = &s->r[s->rhand];
			s->rhand = (s->rhand + 1) % s->max_r;
			if (!best || c->recent < best->recent)
				best = c;
			c->recent /= 2;
		}
		r = best;
		route_unlink(s, r);
		route_clear(r);
		s->routes_evicted++;
	}
	struct hist *hh = r->req_hist;
	uint32_t gen = r->gen + 1, slot = r->slot;
	memset(r, 0, sizeof(*r));
	r->gen = gen;
	r->slot = slot;
	r->req_hist = hh ? hh : malloc(sizeof(*r->req_hist));
	r->name = strdup(name);
	r->controller = controller && *controller ? strdup(controller) : NULL;
	if (!r->req_hist || !r->name || (controller && *controller && !r->controller)) {
		route_clear(r);
		r->gen++;
		return NULL;
	}
	memset(r->req_hist, 0, sizeof(*r->req_hist));
	r->used = true;
	r->hash = h;
	r->source = source;
	r->first_seen = r->last_seen = stats_wall_now();
	r->next = s->rbuckets[h & s->rmask];
	s->rbuckets[h & s->rmask] = r;
	return r;
}

void stats_record(struct stats_store *s, struct qstat *qs, struct route *rt, uint64_t server_us, uint64_t wait_us,
		  uint64_t rows, const char *sqlstate)
{
	double now = stats_wall_now();
	s->calls++;
	s->total_us += server_us;
	if (sqlstate)
		s->errors++;
	qs->calls++;
	qs->recent++;
	qs->rows += rows;
	qs->total_us += server_us;
	qs->wait_us += wait_us;
	if (server_us < qs->min_us)
		qs->min_us = server_us;
	if (server_us > qs->max_us)
		qs->max_us = server_us;
	double d = (double)server_us - qs->mean_us;
	qs->mean_us += d / (double)qs->calls;
	qs->m2 += d * ((double)server_us - qs->mean_us);
	qs->last_seen = now;
	hist_add(qs->hist, server_us);
	if (sqlstate) {
		qs->errors++;
		int i = 0;
		while (i < QSTAT_ERR_CLASSES && qs->err[i].n && memcmp(qs->err[i].cls, sqlstate, 2) != 0)
			i++;
		if (i == QSTAT_ERR_CLASSES)
			i = QSTAT_ERR_CLASSES - 1; /* the last slot takes the rest */
		if (!qs->err[i].n) {
			memcpy(qs->err[i].cls, sqlstate, 2);
			qs->err[i].cls[2] = 0;
		}
		qs->err[i].n++;
	}
	if (!rt)
		return;
	rt->calls++;
	rt->recent++;
	rt->total_us += server_us;
	rt->wait_us += wait_us;
	rt->last_seen = now;
	if (sqlstate)
		rt->errors++;
	for (int i = 0; i < QSTAT_ROUTES; i++) {
		struct qstat_route *qr = &qs->routes[i];
		if (qr->rt == rt && qr->gen == rt->gen) {
			qr->calls++;
			qr->total_us += server_us;
			return;
		}
		if (!qr->rt || qr->gen != qr->rt->gen || !qr->rt->used) {
			qr->rt = rt;
			qr->gen = rt->gen;
			qr->calls = 1;
			qr->total_us = server_us;
			return;
		}
	}
}

void stats_request_begin(struct route *rt)
{
	rt->requests++;
}

void stats_request_done(struct route *rt, uint64_t request_us)
{
	hist_add(rt->req_hist, request_us);
}
