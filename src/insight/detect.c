/* detect.c - N+1 and duplicate-query detection per request (see detect.h). */
#include "insight/detect.h"

#include <stdlib.h>
#include <string.h>

int detect_init(struct detector *d, size_t max_findings)
{
	memset(d, 0, sizeof(*d));
	d->max = max_findings;
	d->threshold = 5;
	d->f = calloc(max_findings, sizeof(*d->f));
	return d->f ? 0 : -1;
}

static void finding_clear(struct det_finding *f)
{
	free(f->route);
	free(f->controller);
	memset(f, 0, sizeof(*f));
}

void detect_free(struct detector *d)
{
	for (size_t i = 0; d->f && i < d->n; i++)
		finding_clear(&d->f[i]);
	free(d->f);
	memset(d, 0, sizeof(*d));
}

static bool same_route(const struct det_finding *f, const struct route *rt)
{
	if (!rt)
		return !f->route;
	return f->route && strcmp(f->route, rt->name) == 0;
}

/* The aggregate of (kind, route, fingerprint); created when missing (the least
 * recently seen one makes room when the table is full). */
static struct det_finding *finding_for(struct detector *d, enum det_kind kind, const struct qstat *qs,
				       const struct route *rt)
{
	struct det_finding *oldest = NULL;
	for (size_t i = 0; i < d->n; i++) {
		struct det_finding *f = &d->f[i];
		if (f->used && f->kind == kind && f->fp == qs->fp && f->qs == qs && same_route(f, rt))
			return f;
		if (!oldest || f->last_seen < oldest->last_seen)
			oldest = f;
	}
	struct det_finding *f = d->n < d->max ? &d->f[d->n++] : oldest;
	if (!f)
		return NULL;
	finding_clear(f);
	f->used = true;
	f->kind = kind;
	f->qs = (struct qstat *)qs;
	f->qgen = qs->gen;
	f->fp = qs->fp;
	if (rt) {
		f->route = strdup(rt->name);
		f->controller = rt->controller ? strdup(rt->controller) : NULL;
		if (!f->route) {
			finding_clear(f);
			return NULL;
		}
	}
	f->first_seen = stats_wall_now();
	return f;
}

static bool item_valid(const struct det_item *it)
{
	return it->qs && it->qs->used && it->qs->gen == it->qgen;
}

/* One fingerprint's statements in the request. */
struct fp_group {
	struct qstat *qs;
	size_t first;            /* index of its first statement */
	uint64_t count, total_us, distinct, max_same, dup_extra, dup_wasted;
};

/* One (fingerprint, parameter values) pair: how often, how long in all. */
struct param_run {
	struct qstat *qs;
	uint64_t params, run_us, count;
	uint32_t group;
};

static size_t slot_of(uint64_t h, size_t mask)
{
	return (size_t)((h * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* Groups the valid statements by fingerprint and by (fingerprint, parameters) in
 * two open-addressing tables: O(n), in order of first appearance.  Returns the
 * number of groups (their array in *out, to free), or 0. */
static size_t group_items(const struct det_item *items, size_t n, struct fp_group **out)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap <<= 1;
	size_t mask = cap - 1;
	struct fp_group *g = malloc(n * sizeof(*g));
	uint32_t *gslot = calloc(cap, sizeof(*gslot));       /* group index + 1 */
	struct param_run *runs = calloc(cap, sizeof(*runs)); /* count 0: empty */
	size_t ng = 0;
	if (!g || !gslot || !runs)
		goto done;
	for (size_t i = 0; i < n; i++) {
		const struct det_item *it = &items[i];
		if (!item_valid(it))
			continue;
		size_t k = slot_of((uint64_t)(uintptr_t)it->qs, mask);
		while (gslot[k] && g[gslot[k] - 1].qs != it->qs)
			k = (k + 1) & mask;
		if (!gslot[k]) {
			g[ng] = (struct fp_group){.qs = it->qs, .first = i};
			gslot[k] = (uint32_t)++ng;
		}
		uint32_t gi = gslot[k] - 1;
		g[gi].count++;
		k = slot_of((uint64_t)(uintptr_t)it->qs ^ it->params, mask);
		while (runs[k].count && !(runs[k].qs == it->qs && runs[k].params == it->params))
			k = (k + 1) & mask;
		if (!runs[k].count) {
			runs[k] = (struct param_run){.qs = it->qs, .params = it->params, .group = gi};
			g[gi].distinct++;
		}
		runs[k].count++;
		runs[k].run_us += it->dur_us;
	}
	for (size_t k = 0; k < cap; k++) {
		const struct param_run *r = &runs[k];
		if (!r->count)
			continue;
		struct fp_group *x = &g[r->group];
		x->total_us += r->run_us;
		if (r->count > x->max_same)
			x->max_same = r->count;
		if (r->count >= 2) {
			x->dup_extra += r->count;
			x->dup_wasted += r->run_us - r->run_us / r->count; /* all but one of them */
		}
	}
done:
	free(gslot);
	free(runs);
	if (!ng) {
		free(g);
		g = NULL;
	}
	*out = g;
	return ng;
}

void detect_request(struct detector *d, const struct det_item *items, size_t n, const struct route *rt,
		    bool tagged)
{
	d->requests_seen++;
	if (n < 2)
		return;
	struct fp_group *groups;
	size_t ng = group_items(items, n, &groups);
	if (!ng)
		return;
	double now = stats_wall_now();
	for (size_t gi = 0; gi < ng; gi++) {
		const struct fp_group *g = &groups[gi];
		struct qstat *qs = g->qs;
		enum det_kind kind = 0;
		uint64_t per_request = 0, wasted = 0;
		if (g->count >= (uint64_t)d->threshold && g->distinct >= 2) {
			kind = DET_N_PLUS_ONE;
			per_request = g->count;
			/* one JOIN or one IN (...) query does the work of all of them */
			wasted = g->total_us - g->total_us / g->count;
		} else if (g->max_same >= 2) {
			kind = DET_DUPLICATE;
			per_request = g->dup_extra;
			wasted = g->dup_wasted;
		}
		if (!kind)
			continue;
		struct det_finding *f = finding_for(d, kind, qs, rt);
		if (!f)
			continue;
		f->tagged = tagged;
		f->requests++;
		f->queries += per_request;
		f->wasted_us += wasted;
		if (per_request > f->max_per_request)
			f->max_per_request = per_request;
		f->last_seen = now;
		/* the statements before its first execution, latest first */
		f->nparents = 0;
		for (size_t k = g->first; k-- > 0 && f->nparents < DET_PARENTS;) {
			const struct det_item *p = &items[k];
			if (!item_valid(p) || p->qs == qs)
				continue;
			bool seen = false;
			for (int x = 0; x < f->nparents; x++)
				seen |= f->parents[x].qs == p->qs;
			if (!seen) {
				f->parents[f->nparents].qs = p->qs;
				f->parents[f->nparents].qgen = p->qgen;
				f->nparents++;
			}
		}
	}
	free(groups);
}
