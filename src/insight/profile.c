/* profile.c - per-client statement tracking for the statistics store (see
 * profile.h).  Called on the event loop for every forwarded request and every
 * answer that ends one; O(1) per message apart from normalizing a text. */
#include "insight/profile.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/mem.h"
#include "pg/proto.h"
#include "sql/normalize.h"
#include "sql/shape.h"

#define PROF_MAX_EVENTS 65536     /* a deeper pipeline stops this client's profiling */
#define PROF_MAX_TEXT (1u << 20)  /* longer texts are fingerprinted by their first MiB */
#define PROF_SHAPE_MAX 16384      /* longer texts are not looked up by shape */

int prof_init(struct profiler *pr, bool on, bool keep_literals, size_t max_fingerprints, size_t max_routes)
{
	memset(pr, 0, sizeof(*pr));
	pr->on = on;
	pr->keep_literals = keep_literals;
	pr->app_param = pg_tracked_param_index("application_name");
	pr->bufcap = 64 * 1024;
	pr->buf = malloc(pr->bufcap);
	pr->idle_gap_us = 1000000;
	pr->schemas = json_object();
	pr->catalog = json_object();
	pr->plans = json_object();
	pr->advisor_errors = json_object();
	if (!pr->buf || stats_init(&pr->store, max_fingerprints, max_routes) < 0 || detect_init(&pr->detect, 1000) < 0) {
		free(pr->buf);
		pr->buf = NULL;
		stats_free(&pr->store);
		return -1;
	}
	return 0;
}

void prof_free(struct profiler *pr)
{
	for (size_t i = 0; i < PROF_CACHE; i++)
		free(pr->cache[i].query);
	free(pr->buf);
	free(pr->buf2);
	free(pr->shape_buf);
	free(pr->body_buf);
	if (pr->models)
		json_decref(pr->models);
	detect_free(&pr->detect);
	json_decref(pr->schemas);
	json_decref(pr->catalog);
	json_decref(pr->plans);
	json_decref(pr->advisor_errors);
	stats_free(&pr->store);
	memset(pr, 0, sizeof(*pr));
}

static bool ref_qs_valid(const struct prof_ref *r)
{
	return r->qs && r->qs->used && r->qs->gen == r->qgen;
}

static struct route *ref_route(const struct prof_ref *r)
{
	return r->rt && r->rt->used && r->rt->gen == r->rgen ? r->rt : NULL;
}

/* The client's application_name route, looked up once per client while the name
 * (its app_ver) and the route stay the same. */
static struct route *app_route(struct profiler *pr, struct prof_client *pc, const struct prof_ident *id)
{
	if (!id->app || !*id->app)
		return NULL;
	struct route *rt = pc->app_rt;
	if (rt && pc->app_ver == id->app_ver && rt->used && rt->gen == pc->app_rgen)
		return rt;
	rt = stats_route(&pr->store, id->app, ROUTE_APP, NULL);
	pc->app_rt = rt;
	pc->app_rgen = rt ? rt->gen : 0;
	pc->app_ver = id->app_ver;
	return rt;
}

/* Route and request id from the text's sqlcommenter tags; else application_name. */
static void tags_route(struct profiler *pr, struct prof_client *pc, const struct sql_norm *n,
		       const struct prof_ident *id, struct prof_ref *out)
{
	const struct sql_tag *route = NULL, *controller = NULL, *req = NULL;
	for (int i = 0; i < n->ntags && i < SQL_MAX_TAGS; i++) {
		const struct sql_tag *t = &n->tags[i];
		if (t->key_len == 5 && memcmp(t->key, "route", 5) == 0)
			route = t;
		else if (t->key_len == 10 && memcmp(t->key, "controller", 10) == 0)
			controller = t;
		else if (t->key_len == 10 && memcmp(t->key, "request_id", 10) == 0)
			req = t;
	}
	/* A request's statements all carry the same tags: the client's previous
	 * route is found again by the tags as written, without decoding them. */
	char key[sizeof(pc->tag_key)];
	size_t kl = 0;
	size_t rl = route ? route->val_len : 0;
	if ((route || controller) && rl + (controller ? controller->val_len : 0) + 2 <= sizeof(key)) {
		/* whether there is a route, its length, the route, the controller */
		key[kl++] = (char)(route ? 1 + rl : 0);
		if (route) {
			memcpy(key + kl, route->val, rl);
			kl += rl;
		}
		if (controller) {
			memcpy(key + kl, controller->val, controller->val_len);
			kl += controller->val_len;
		}
	}
	struct route *rt = NULL;
	if (kl && kl == pc->tag_klen && memcmp(key, pc->tag_key, kl) == 0 && pc->tag_rt && pc->tag_rt->used &&
	    pc->tag_rt->gen == pc->tag_rgen) {
		rt = pc->tag_rt;
	} else if (route || controller) {
		char name[512], ctl[512];
		ctl[0] = 0;
		if (controller)
			sql_tag_decode(controller->val, controller->val_len, ctl, sizeof(ctl));
		if (route) {
			sql_tag_decode(route->val, route->val_len, name, sizeof(name));
			rt = stats_route(&pr->store, name, ROUTE_TAG, ctl);
		} else {
			rt = stats_route(&pr->store, ctl, ROUTE_CONTROLLER, ctl);
		}
		pc->tag_klen = (uint16_t)(rt ? kl : 0);
		memcpy(pc->tag_key, key, pc->tag_klen);
		pc->tag_rt = rt;
		pc->tag_rgen = rt ? rt->gen : 0;
	} else {
		rt = app_route(pr, pc, id);
	}
	out->rt = rt;
	out->rgen = rt ? rt->gen : 0;
	out->req = req && req->val_len ? XXH3_64bits(req->val, req->val_len) | 1 : 0;
}

/* A cached normalization (of this exact text, or of its shape).  tags: those of
 * the text's own trailing comment (the entry is keyed by its body), else NULL. */
static void cache_use(struct profiler *pr, struct prof_client *pc, const struct prof_ident *id,
		      struct prof_cache_ent *ce, const char *text, size_t len, const struct sql_norm *tags,
		      struct prof_ref *out)
{
	/* The entry's statistics as found last time, while the pool is the same (no
	 * hash lookup, no comparison of the database and user names). */
	struct qstat *qs = ce->qs;
	if (!qs || !id->who.serial || ce->who != id->who.serial || !qs->used || qs->gen != ce->qgen) {
		qs = stats_qstat_find(&pr->store, ce->fp, &id->who);
		if (!qs)
			qs = stats_qstat(&pr->store, ce->fp, &id->who, ce->query, ce->qlen, text, len);
		ce->qs = qs;
		ce->qgen = qs ? qs->gen : 0;
		ce->who = id->who.serial;
	}
	if (tags) {
		tags_route(pr, pc, tags, id, out);
		out->qs = qs;
		out->qgen = qs ? qs->gen : 0;
		return;
	}
	struct route *rt = ce->rt && ce->rt->used && ce->rt->gen == ce->rgen ? ce->rt : NULL;
	if (!rt && !ce->rt)
		rt = app_route(pr, pc, id);
	out->qs = qs;
	out->qgen = qs ? qs->gen : 0;
	out->rt = rt;
	out->rgen = rt ? rt->gen : 0;
	out->req = ce->req;
	if (ce->rt && !rt) {
		/* The tag's route was evicted since: resolve it again next time. */
		pr->cache_h[ce - pr->cache] = 0;
	}
}

static void cache_put(struct profiler *pr, struct prof_cache_ent *ce, uint64_t h, size_t len, bool shape,
		      bool tail_ok, const char *query, const struct sql_norm *n, const struct prof_ref *ref, uint64_t who)
{
	char *copy = malloc(n->len + 1);
	if (!copy)
		return;
	memcpy(copy, query, n->len + 1);
	free(ce->query);
	ce->query = copy;
	ce->qlen = (uint32_t)n->len;
	pr->cache_h[ce - pr->cache] = h;
	ce->len = (uint32_t)len;
	ce->shape = shape;
	ce->tail_ok = tail_ok;
	ce->fp = n->fingerprint;
	/* An application_name route is per client, not per text; a tag comment that
	 * is not part of the key is per text too. */
	bool tagged = !tail_ok && ref->rt && ref->rt->source != ROUTE_APP;
	ce->rt = tagged ? ref->rt : NULL;
	ce->rgen = tagged ? ref->rgen : 0;
	ce->req = tail_ok ? 0 : ref->req;
	ce->who = who;
	ce->qs = ref->qs;
	ce->qgen = ref->qgen;
}

static bool grow(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	char *nb = realloc(*buf, need);
	if (!nb)
		return false;
	*buf = nb;
	*cap = need;
	return true;
}

/* Whether every text of q's shape normalizes to n (sql/shape.h): its variant
 * normalizes to the same text, and neither has tags. */
static bool shape_holds(struct profiler *pr, const char *q, size_t len, const struct sql_norm *n)
{
	if (n->ntags || !grow(&pr->shape_buf, &pr->shape_cap, 2 * len + 1))
		return false;
	long vl = sql_shape_variant(q, len, pr->shape_buf, pr->shape_cap);
	if (vl < 0 || !grow(&pr->buf2, &pr->buf2cap, SQL_NORM_BOUND((size_t)vl)))
		return false;
	struct sql_norm v;
	return sql_normalize(pr->shape_buf, (size_t)vl, pr->buf2, pr->buf2cap, &v) == 0 && v.ntags == 0 &&
	       v.len == n->len && memcmp(pr->buf2, pr->buf, n->len) == 0;
}

/* Django with pgmedic_django (and other sqlcommenter users) ends every text with
 * a tag comment whose request_id makes it unique, so neither the exact text nor
 * its shape would ever repeat.  Such a text is looked up by its BODY, the text
 * without that comment: t->body (in pr->body_buf), with the comment's own tags in
 * t->tags.  Only a body cache entry marked tail_ok is used for it: one made when a
 * text with a tag comment normalized exactly as its body, with exactly the
 * comment's tags; the comment was then a comment of the statement (not inside a
 * string, say), and so is any other tag comment after a body of that exact text or
 * shape (tests/fuzz/fuzz_tagtail.c checks this on arbitrary bytes). */
struct tag_tail {
	const char *body;
	size_t body_len;
	struct sql_norm tags;
};

static bool tag_tail(struct profiler *pr, const char *text, size_t len, struct tag_tail *t)
{
	size_t c0, c1;
	if (!sql_tag_tail(text, len, &c0, &c1))
		return false;
	sql_comment_tags(text + c0, c1 - c0, &t->tags);
	if (t->tags.ntags == 0 || !grow(&pr->body_buf, &pr->body_cap, len - (c1 - c0) + 1))
		return false;
	memcpy(pr->body_buf, text, c0);
	memcpy(pr->body_buf + c0, text + c1, len - c1);
	t->body = pr->body_buf;
	t->body_len = len - (c1 - c0);
	return true;
}

/* Whether text (normalized to n, in pr->buf) normalizes as its body, with the tag
 * comment's tags and no other: then the body's entries may serve such texts. */
static bool tail_holds(struct profiler *pr, const struct tag_tail *t, const struct sql_norm *n)
{
	/* the same tags: the same spans of the text (at most SQL_MAX_TAGS are kept) */
	if (n->ntags != t->tags.ntags || memcmp(n->tags, t->tags.tags, sizeof(n->tags[0]) * (size_t)n->ntags) != 0 ||
	    !grow(&pr->buf2, &pr->buf2cap, SQL_NORM_BOUND(t->body_len)))
		return false;
	struct sql_norm b;
	return sql_normalize(t->body, t->body_len, pr->buf2, pr->buf2cap, &b) == 0 && b.ntags == 0 &&
	       b.len == n->len && b.nconst == n->nconst && memcmp(pr->buf2, pr->buf, n->len) == 0;
}

/* Normalizes a statement text into its statistics entry and route: from the
 * cache when this exact text, or another of its shape, was normalized before
 * (for a text with a trailing tag comment: its body). */
static void resolve(struct profiler *pr, struct prof_client *pc, const struct prof_ident *id, const char *text,
		    size_t len, struct prof_ref *out)
{
	memset(out, 0, sizeof(*out));
	if (len > PROF_MAX_TEXT)
		len = PROF_MAX_TEXT;
	struct tag_tail tail;
	bool tailed = len <= PROF_SHAPE_MAX && tag_tail(pr, text, len, &tail);
	/* The key: the text, or its body.  Its hash also tells an N+1 (other
	 * parameters) from a duplicate (the same) within one request. */
	const char *key = tailed ? tail.body : text;
	size_t klen = tailed ? tail.body_len : len;
	uint64_t h = XXH3_64bits(key, klen) | 1;
	out->params = h;
	struct prof_cache_ent *ce = &pr->cache[h & (PROF_CACHE - 1)];
	if (pr->cache_h[h & (PROF_CACHE - 1)] == h && ce->len == klen && !ce->shape && (!tailed || ce->tail_ok)) {
		/* A text seen before (a parameterized statement): no normalizing. */
		pr->cache_hits++;
		cache_use(pr, pc, id, ce, text, len, tailed ? &tail.tags : NULL, out);
		return;
	}
	/* Literals inlined (psycopg 2): perhaps another text of the same shape. */
	uint64_t sh = 0;
	size_t sl = 0;
	if (klen <= PROF_SHAPE_MAX && grow(&pr->shape_buf, &pr->shape_cap, klen + 1)) {
		size_t nruns;
		long l = sql_shape(key, klen, pr->shape_buf, pr->shape_cap, &nruns);
		if (l >= 0 && nruns) {
			sl = (size_t)l;
			sh = XXH3_64bits_withSeed(pr->shape_buf, sl, 0x5348415045ull) | 1;
			struct prof_cache_ent *se = &pr->cache[sh & (PROF_CACHE - 1)];
			if (pr->cache_h[sh & (PROF_CACHE - 1)] == sh && se->len == sl && se->shape &&
			    (!tailed || se->tail_ok)) {
				if (se->query) {
					pr->shape_hits++;
					cache_use(pr, pc, id, se, text, len, tailed ? &tail.tags : NULL, out);
					return;
				}
				sh = 0; /* a shape whose numbers show: normalize, without checking again */
			}
		}
	}
	if (!grow(&pr->buf, &pr->bufcap, SQL_NORM_BOUND(len)))
		return;
	struct sql_norm n;
	if (sql_normalize(text, len, pr->buf, pr->bufcap, &n) < 0)
		return;
	pr->normalized++;
	struct qstat *qs = stats_qstat(&pr->store, n.fingerprint, &id->who, pr->buf, n.len, text, len);
	tags_route(pr, pc, &n, id, out);
	out->qs = qs;
	out->qgen = qs ? qs->gen : 0;
	if (!qs || (tailed && !tail_holds(pr, &tail, &n)))
		return;
	/* Texts without constants are the ones that repeat exactly (extended protocol,
	 * prepared statements); texts with inlined numbers repeat their shape.  What
	 * is checked of a shape is checked of the key (the body has no tags). */
	struct sql_norm kn = n;
	if (tailed)
		kn.ntags = 0;
	if (n.nconst == 0) {
		cache_put(pr, ce, h, klen, false, tailed, pr->buf, &kn, out, id->who.serial);
	} else if (sh) {
		struct prof_cache_ent *se = &pr->cache[sh & (PROF_CACHE - 1)];
		if (shape_holds(pr, key, klen, &kn)) {
			cache_put(pr, se, sh, sl, true, tailed, pr->buf, &kn, out, id->who.serial);
		} else {
			/* Remembered too, so that its texts are not normalized twice each. */
			free(se->query);
			*se = (struct prof_cache_ent){.len = (uint32_t)sl, .shape = true, .tail_ok = tailed};
			pr->cache_h[sh & (PROF_CACHE - 1)] = sh;
		}
	}
}

static struct prof_client *client_state(struct prof_client **pcp)
{
	if (!*pcp)
		*pcp = zalloc_lines(sizeof(**pcp)); /* the per-statement fields in two lines */
	return *pcp;
}

static struct prof_named *named_find(struct prof_named *v, uint32_t n, const char *name, size_t len, uint64_t h)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i].h == h && strlen(v[i].name) == len && memcmp(v[i].name, name, len) == 0)
			return &v[i];
	return NULL;
}

static void named_put(struct prof_named **v, uint32_t *n, uint32_t *cap, const char *name, size_t len,
		      const struct prof_ref *ref)
{
	uint64_t h = XXH3_64bits(name, len);
	struct prof_named *e = named_find(*v, *n, name, len, h);
	if (e) {
		e->ref = *ref;
		return;
	}
	if (*n == *cap) {
		uint32_t nc = *cap ? *cap * 2 : 8;
		struct prof_named *nv = realloc(*v, nc * sizeof(*nv));
		if (!nv)
			return;
		*v = nv;
		*cap = nc;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return;
	memcpy(copy, name, len);
	copy[len] = 0;
	(*v)[*n] = (struct prof_named){.h = h, .name = copy, .ref = *ref};
	(*n)++;
}

static void named_del(struct prof_named *v, uint32_t *n, const char *name, size_t len)
{
	struct prof_named *e = named_find(v, *n, name, len, XXH3_64bits(name, len));
	if (!e)
		return;
	free(e->name);
	*e = v[--(*n)];
}

static struct prof_ref *stmt_ref(struct prof_client *pc, const char *name, size_t len)
{
	if (len == 0)
		return &pc->unnamed_stmt;
	struct prof_named *e = named_find(pc->stmts, pc->nstmts, name, len, XXH3_64bits(name, len));
	return e ? &e->ref : NULL;
}

static struct prof_ref *portal_ref(struct prof_client *pc, const char *name, size_t len)
{
	if (len == 0)
		return &pc->unnamed_portal;
	struct prof_named *e = named_find(pc->portals, pc->nportals, name, len, XXH3_64bits(name, len));
	return e ? &e->ref : NULL;
}

static bool req_route_valid(const struct prof_client *pc)
{
	return pc->req_rt && pc->req_rt->used && pc->req_rt->gen == pc->req_rgen;
}

/* The request in progress is over: its time and its statements go to the route
 * and the detectors. */
static void request_end(struct profiler *pr, struct prof_client *pc)
{
	if (!pc->in_req)
		return;
	struct route *rt = req_route_valid(pc) ? pc->req_rt : NULL;
	if (rt && pc->req_tagged)
		stats_request_done(rt, pc->req_us);
	detect_request(&pr->detect, pc->items, pc->nitems, rt, pc->req_tagged);
	pc->in_req = false;
	pc->req_rt = NULL;
	pc->req_us = 0;
	pc->nitems = 0;
	if (pc->capitems > 256) {
		free(pc->items);
		pc->items = NULL;
		pc->capitems = 0;
	}
}

static void request_start(struct prof_client *pc, const struct prof_ref *ref, bool tagged)
{
	struct route *rt = ref_route(ref);
	bool resumed = tagged && pc->req == ref->req; /* the same request after an idle flush */
	pc->in_req = true;
	pc->req_tagged = tagged;
	pc->req = ref->req;
	pc->req_rt = rt;
	pc->req_rgen = rt ? rt->gen : 0;
	pc->req_us = 0;
	if (rt && tagged && !resumed)
		stats_request_begin(rt);
}

/* A statement arrived: which request is it part of? */
static void request_track(struct profiler *pr, struct prof_client *pc, const struct prof_ref *ref, uint64_t now)
{
	bool gap = !pc->last_end_us || now - pc->last_end_us > pr->idle_gap_us;
	if (ref->req) {
		if (pc->in_req && pc->req_tagged && pc->req == ref->req)
			return;
		request_end(pr, pc);
		request_start(pc, ref, true);
		return;
	}
	/* Untagged: part of the request in progress unless the client was idle a
	 * while (a tagged request's untagged BEGIN/COMMIT stay in it). */
	if (pc->in_req && !gap)
		return;
	request_end(pr, pc);
	request_start(pc, ref, false);
}

static void request_add(struct prof_client *pc, const struct prof_ev *e, uint64_t dur)
{
	if (!pc->in_req || (pc->req_tagged ? e->ref.req != pc->req : e->ref.req != 0))
		return;
	if (pc->nitems == pc->capitems) {
		uint32_t nc = pc->capitems ? pc->capitems * 2 : 32;
		if (nc > PROF_REQ_ITEMS)
			return; /* a batch job, not a request: its first statements are enough */
		struct det_item *nv = realloc(pc->items, nc * sizeof(*nv));
		if (!nv)
			return;
		pc->items = nv;
		pc->capitems = nc;
	}
	pc->items[pc->nitems++] = (struct det_item){e->ref.qs, e->ref.qgen, e->ref.params, dur};
}

static void push(struct profiler *pr, struct prof_client *pc, uint8_t kind, const struct prof_ref *ref, uint64_t now)
{
	if (pc->n == pc->cap) {
		uint32_t nc = pc->cap ? pc->cap * 2 : 8;
		struct prof_ev *nv = nc <= PROF_MAX_EVENTS ? malloc(nc * sizeof(*nv)) : NULL;
		if (!nv) {
			/* Cannot follow this client any more: forget what is pending. */
			pr->desyncs++;
			pc->n = 0;
			pc->head = 0;
			return;
		}
		for (uint32_t i = 0; i < pc->n; i++)
			nv[i] = pc->ev[(pc->head + i) & (pc->cap - 1)];
		free(pc->ev);
		pc->ev = nv;
		pc->cap = nc;
		pc->head = 0;
	}
	struct prof_ev *e = &pc->ev[(pc->head + pc->n) & (pc->cap - 1)];
	*e = (struct prof_ev){.kind = kind, .start_us = now};
	if (ref)
		e->ref = *ref;
	if (kind == PEV_QUERY || kind == PEV_EXEC) {
		e->wait_us = pc->pending_wait_us;
		pc->pending_wait_us = 0;
		request_track(pr, pc, &e->ref, now);
	}
	pc->n++;
}

static struct prof_ev *front(struct prof_client *pc)
{
	return pc->n ? &pc->ev[pc->head] : NULL;
}

static void pop(struct prof_client *pc)
{
	pc->head = (pc->head + 1) & (pc->cap - 1);
	if (--pc->n == 0)
		pc->head = 0;
}

/* The front event ended now: record it (unless record is false) and pop it. */
static void finish(struct profiler *pr, struct prof_client *pc, bool record, uint64_t now)
{
	struct prof_ev *e = front(pc);
	uint64_t start = e->start_us > pc->last_end_us ? e->start_us : pc->last_end_us;
	uint64_t dur = now > start ? now - start : 0;
	pc->last_end_us = now;
	if (record && ref_qs_valid(&e->ref)) {
		stats_record(&pr->store, e->ref.qs, ref_route(&e->ref), dur, e->wait_us, e->rows,
			     e->failed ? e->sqlstate : NULL);
		if (pc->in_req && e->ref.req == pc->req)
			pc->req_us += dur + e->wait_us;
		request_add(pc, e, dur);
	}
	pop(pc);
}

/* Reads the NUL-terminated string at *p within [.., end): its length, or -1. */
static long cstr(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *z = memchr(p, 0, (size_t)(end - p));
	return z ? (long)(z - p) : -1;
}

void prof_client_msg(struct profiler *pr, struct prof_client **pcp, const struct prof_ident *id, uint8_t type,
		     const uint8_t *body, size_t have, uint64_t now)
{
	switch (type) {
	case 'Q': case 'P': case 'B': case 'E': case 'C': case 'S': case 'F':
		break;
	default:
		return;
	}
	struct prof_client *pc = client_state(pcp);
	if (!pc)
		return;
	const uint8_t *end = body + have;
	switch (type) {
	case 'Q': {
		long n = cstr(body, end);
		struct prof_ref ref;
		resolve(pr, pc, id, (const char *)body, n >= 0 ? (size_t)n : have, &ref);
		push(pr, pc, PEV_QUERY, &ref, now);
		break;
	}
	case 'P': {
		long nl = cstr(body, end);
		if (nl < 0)
			break;
		const uint8_t *text = body + nl + 1;
		long tl = cstr(text, end);
		struct prof_ref ref;
		resolve(pr, pc, id, (const char *)text, tl >= 0 ? (size_t)tl : (size_t)(end - text), &ref);
		if (nl == 0)
			pc->unnamed_stmt = ref;
		else
			named_put(&pc->stmts, &pc->nstmts, &pc->capstmts, (const char *)body, (size_t)nl, &ref);
		break;
	}
	case 'B': {
		long pl = cstr(body, end);
		if (pl < 0)
			break;
		long sl = cstr(body + pl + 1, end);
		if (sl < 0)
			break;
		struct prof_ref *st = stmt_ref(pc, (const char *)body + pl + 1, (size_t)sl);
		struct prof_ref r = {0};
		if (st)
			r = *st;
		/* The parameter values (formats, values, result formats): what tells an N+1
		 * (different values) from a duplicate (the same). */
		const uint8_t *vals = body + pl + 1 + sl + 1;
		r.params = XXH3_64bits(vals, (size_t)(end - vals)) | 1;
		if (pl == 0)
			pc->unnamed_portal = r;
		else
			named_put(&pc->portals, &pc->nportals, &pc->capportals, (const char *)body, (size_t)pl, &r);
		break;
	}
	case 'E': {
		long pl = cstr(body, end);
		struct prof_ref *pr_ = pl >= 0 ? portal_ref(pc, (const char *)body, (size_t)pl) : NULL;
		push(pr, pc, PEV_EXEC, pr_, now);
		break;
	}
	case 'C': {
		if (have < 2)
			break;
		long nl = cstr(body + 1, end);
		if (nl < 0)
			break;
		if (body[0] == 'S' && nl > 0)
			named_del(pc->stmts, &pc->nstmts, (const char *)body + 1, (size_t)nl);
		else if (body[0] == 'P' && nl > 0)
			named_del(pc->portals, &pc->nportals, (const char *)body + 1, (size_t)nl);
		break;
	}
	case 'S':
		push(pr, pc, PEV_SYNC, NULL, now);
		break;
	case 'F':
		push(pr, pc, PEV_FUNC, NULL, now);
		break;
	}
}

void prof_client_waited(struct prof_client **pcp, uint64_t us)
{
	struct prof_client *pc = client_state(pcp);
	if (pc)
		pc->pending_wait_us += us;
}

/* Rows from a CommandComplete tag: the last number ("SELECT 5", "INSERT 0 5"). */
static uint64_t tag_rows(const uint8_t *b, size_t n)
{
	while (n && b[n - 1] == 0)
		n--;
	size_t i = n;
	while (i && b[i - 1] >= '0' && b[i - 1] <= '9')
		i--;
	if (i == n || (i && b[i - 1] != ' '))
		return 0;
	uint64_t v = 0;
	for (; i < n; i++)
		v = v * 10 + (uint64_t)(b[i] - '0');
	return v;
}

void prof_server_msg(struct profiler *pr, struct prof_client *pc, uint8_t type, const uint8_t *body, size_t blen,
		     uint64_t now)
{
	if (!pc || !pc->n)
		return;
	struct prof_ev *e = front(pc);
	switch (type) {
	case 'C':
		if (e->kind == PEV_QUERY) {
			e->rows += body ? tag_rows(body, blen) : 0;
		} else if (e->kind == PEV_EXEC) {
			e->rows = body ? tag_rows(body, blen) : 0;
			finish(pr, pc, true, now);
		}
		break;
	case 's': /* PortalSuspended: a partial fetch is one call */
		if (e->kind == PEV_EXEC)
			finish(pr, pc, true, now);
		break;
	case 'I': /* EmptyQueryResponse: nothing ran */
		if (e->kind == PEV_EXEC)
			finish(pr, pc, false, now);
		break;
	case 'E': {
		struct pg_error_fields ef;
		const char *code = body && pg_parse_error(body, blen, &ef) == 0 && ef.sqlstate ? ef.sqlstate : "XX000";
		if (e->kind == PEV_QUERY || e->kind == PEV_FUNC) {
			e->failed = true;
			snprintf(e->sqlstate, sizeof(e->sqlstate), "%.5s", code);
		} else if (e->kind == PEV_EXEC) {
			e->failed = true;
			snprintf(e->sqlstate, sizeof(e->sqlstate), "%.5s", code);
			finish(pr, pc, true, now);
			/* The server skips the rest of the batch up to its Sync. */
			while (pc->n && front(pc)->kind == PEV_EXEC)
				pop(pc);
		}
		break;
	}
	case 'Z':
		/* Executes still queued here were never answered: the stream is not
		 * what this queue expected; drop them. */
		while (pc->n && front(pc)->kind == PEV_EXEC) {
			pr->desyncs++;
			pop(pc);
		}
		if (pc->n) {
			e = front(pc);
			finish(pr, pc, e->kind == PEV_QUERY, now);
		}
		break;
	default:
		break;
	}
}

void prof_client_forget_batch(struct prof_client *pc)
{
	while (pc->n) {
		uint8_t kind = front(pc)->kind;
		pop(pc);
		if (kind == PEV_SYNC)
			break;
	}
}

void prof_client_idle(struct profiler *pr, struct prof_client *pc, uint64_t now)
{
	if (!pc || !pc->in_req || pc->n)
		return;
	uint64_t limit = pc->req_tagged ? (pr->idle_gap_us > 5000000 ? pr->idle_gap_us : 5000000) : pr->idle_gap_us;
	if (now - pc->last_end_us > limit)
		request_end(pr, pc);
}

void prof_client_free(struct profiler *pr, struct prof_client **pcp)
{
	struct prof_client *pc = *pcp;
	if (!pc)
		return;
	request_end(pr, pc);
	free(pc->items);
	for (uint32_t i = 0; i < pc->nstmts; i++)
		free(pc->stmts[i].name);
	for (uint32_t i = 0; i < pc->nportals; i++)
		free(pc->portals[i].name);
	free(pc->stmts);
	free(pc->portals);
	free(pc->ev);
	free(pc);
	*pcp = NULL;
}
