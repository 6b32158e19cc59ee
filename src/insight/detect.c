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

static int cmp_items(const void *a, const void *b)
{
	const struct det_item *x = *(const struct det_item *const *)a, *y = *(const struct det_item *const *)b;
	if (x->qs != y->qs)
		return x->qs < y->qs ? -1 : 1;
	if (x->params != y->params)
		return x->params < y->params ? -1 : 1;
	return x < y ? -1 : x > y; /* stable: request order */
}

static bool item_valid(const struct det_item *it)
{
	return it->qs && it->qs->used && it->qs->gen == it->qgen;
}

void detect_request(struct detector *d, const struct det_item *items, size_t n, const struct route *rt,
		    bool tagged)
{
	d->requests_seen++;
	if (n < 2)
		return;
	const struct det_item **v = malloc(n * sizeof(*v));
	if (!v)
		return;
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (item_valid(&items[i]))
			v[m++] = &items[i];
	qsort(v, m, sizeof(*v), cmp_items);
	double now = stats_wall_now();
	for (size_t i = 0; i < m;) {
		/* one fingerprint: v[i..j) */
		size_t j = i;
		uint64_t total_us = 0, distinct = 0, max_same = 0, dup_extra = 0, dup_wasted = 0;
		while (j < m && v[j]->qs == v[i]->qs) {
			size_t k = j;
			uint64_t run_us = 0;
			while (k < m && v[k]->qs == v[j]->qs && v[k]->params == v[j]->params) {
				run_us += v[k]->dur_us;
				k++;
			}
			uint64_t same = k - j;
			distinct++;
			if (same > max_same)
				max_same = same;
			if (same >= 2) {
				dup_extra += same;
				dup_wasted += run_us - run_us / same; /* all but one of them */
			}
			total_us += run_us;
			j = k;
		}
		uint64_t count = j - i;
		struct qstat *qs = v[i]->qs;
		enum det_kind kind = 0;
		uint64_t per_request = 0, wasted = 0;
		if (count >= (uint64_t)d->threshold && distinct >= 2) {
			kind = DET_N_PLUS_ONE;
			per_request = count;
			/* one JOIN or one IN (...) query does the work of all of them */
			wasted = total_us - total_us / count;
		} else if (max_same >= 2) {
			kind = DET_DUPLICATE;
			per_request = dup_extra;
			wasted = dup_wasted;
		}
		if (kind) {
			struct det_finding *f = finding_for(d, kind, qs, rt);
			if (f) {
				f->tagged = tagged;
				f->requests++;
				f->queries += per_request;
				f->wasted_us += wasted;
				if (per_request > f->max_per_request)
					f->max_per_request = per_request;
				f->last_seen = now;
				/* the statements before its first execution, latest first */
				size_t first = (size_t)(v[i] - items);
				for (size_t k = i + 1; k < j; k++)
					if ((size_t)(v[k] - items) < first)
						first = (size_t)(v[k] - items);
				f->nparents = 0;
				for (size_t k = first; k-- > 0 && f->nparents < DET_PARENTS;) {
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
		}
		i = j;
	}
	free(v);
}
