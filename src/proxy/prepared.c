/* prepared.c - named prepared statements across transaction-pooled server
 * connections (see prepared.h for the scheme). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/log.h"
#include "proxy/prepared.h"
#include "proxy/proxy.h"

/* ------------------------------------------------------------ registry ---- */

static struct pstmt *pstmt_intern(struct proxy *p, const uint8_t *body, size_t len)
{
	struct pstmt_registry *r = &p->pstmts;
	uint64_t h = XXH3_64bits(body, len);
	size_t b = (size_t)(h % PSTMT_BUCKETS);
	bool hash_taken = false;
	for (struct pstmt *s = r->buckets[b]; s; s = s->next) {
		if (s->hash != h)
			continue;
		if (s->body_len == len && memcmp(s->body, body, len) == 0) {
			s->refs++;
			return s;
		}
		hash_taken = true;
	}
	struct pstmt *s = malloc(sizeof(*s) + len);
	if (!s)
		return NULL;
	s->hash = h;
	s->refs = 1;
	s->body_len = len;
	memcpy(s->body, body, len);
	/* A live statement owns its name; a 64-bit collision gets a unique suffix. */
	if (hash_taken)
		snprintf(s->name, sizeof(s->name), "pgm_%016llx_%llu", (unsigned long long)h,
			 (unsigned long long)++r->seq);
	else
		snprintf(s->name, sizeof(s->name), "pgm_%016llx", (unsigned long long)h);
	s->next = r->buckets[b];
	r->buckets[b] = s;
	r->live++;
	return s;
}

static void pstmt_unref(struct proxy *p, struct pstmt *s)
{
	if (!s || --s->refs > 0)
		return;
	struct pstmt **pp = &p->pstmts.buckets[s->hash % PSTMT_BUCKETS];
	while (*pp && *pp != s)
		pp = &(*pp)->next;
	if (*pp)
		*pp = s->next;
	p->pstmts.live--;
	free(s);
}

/* ------------------------------------------------------ client mapping ---- */

static struct cl_stmt *client_lookup(struct client *cl, const char *name)
{
	for (size_t i = 0; i < cl->prep.nstmts; i++)
		if (strcmp(cl->prep.stmts[i].name, name) == 0)
			return &cl->prep.stmts[i];
	return NULL;
}

static void client_unmap(struct client *cl, struct cl_stmt *e)
{
	struct prep_client *pc = &cl->prep;
	pstmt_unref(cl->proxy, e->st);
	free(e->name);
	*e = pc->stmts[--pc->nstmts];
}

static int client_map(struct client *cl, const char *name, struct pstmt *st)
{
	struct prep_client *pc = &cl->prep;
	struct cl_stmt *e = client_lookup(cl, name);
	if (e) {
		/* PostgreSQL would refuse a second Parse of a live name (42P05); we let it
		 * replace the mapping, which only differs for a client that ignores errors. */
		pstmt_unref(cl->proxy, e->st);
		e->st = st;
		st->refs++;
		return 0;
	}
	if (pc->nstmts == pc->capstmts) {
		size_t nc = pc->capstmts ? pc->capstmts * 2 : 8;
		struct cl_stmt *n = realloc(pc->stmts, nc * sizeof(*n));
		if (!n)
			return -1;
		pc->stmts = n;
		pc->capstmts = nc;
	}
	char *dup = strdup(name);
	if (!dup)
		return -1;
	pc->stmts[pc->nstmts].name = dup;
	pc->stmts[pc->nstmts].st = st;
	st->refs++;
	pc->nstmts++;
	return 0;
}

/* --------------------------------------------------------- server set ---- */

static struct sv_stmt *server_has(struct server *sv, const struct pstmt *st)
{
	for (size_t i = 0; i < sv->prep.n; i++)
		if (sv->prep.set[i].st == st)
			return &sv->prep.set[i];
	return NULL;
}

static void server_forget(struct server *sv, const struct pstmt *st)
{
	for (size_t i = 0; i < sv->prep.n; i++)
		if (sv->prep.set[i].st == st) {
			pstmt_unref(sv->proxy, sv->prep.set[i].st);
			sv->prep.set[i] = sv->prep.set[--sv->prep.n];
			return;
		}
}

static int server_add(struct server *sv, struct pstmt *st)
{
	if (sv->prep.n == sv->prep.cap) {
		size_t nc = sv->prep.cap ? sv->prep.cap * 2 : 16;
		struct sv_stmt *n = realloc(sv->prep.set, nc * sizeof(*n));
		if (!n)
			return -1;
		sv->prep.set = n;
		sv->prep.cap = nc;
	}
	sv->prep.set[sv->prep.n].st = st;
	sv->prep.set[sv->prep.n].last_use = ++sv->prep.clock;
	st->refs++;
	sv->prep.n++;
	return 0;
}

static bool stale_take(struct server *sv, struct pstmt *st)
{
	for (size_t i = 0; i < sv->prep.nstale; i++)
		if (sv->prep.stale[i] == st) {
			pstmt_unref(sv->proxy, st);
			sv->prep.stale[i] = sv->prep.stale[--sv->prep.nstale];
			return true;
		}
	return false;
}

static void stale_add(struct server *sv, struct pstmt *st)
{
	for (size_t i = 0; i < sv->prep.nstale; i++)
		if (sv->prep.stale[i] == st)
			return;
	struct pstmt **n = realloc(sv->prep.stale, (sv->prep.nstale + 1) * sizeof(*n));
	if (!n)
		return; /* the next Parse then fails with 42P05 and is passed on */
	sv->prep.stale = n;
	sv->prep.stale[sv->prep.nstale++] = st;
	st->refs++;
}

/* ------------------------------------------------------------- queue ---- */

static int q_push_f(struct client *cl, uint8_t kind, uint8_t action, uint8_t flags, struct pstmt *st,
		    const char *client_name);

static int q_push(struct client *cl, uint8_t kind, uint8_t action, struct pstmt *st, const char *client_name)
{
	return q_push_f(cl, kind, action, 0, st, client_name);
}

static int q_push_f(struct client *cl, uint8_t kind, uint8_t action, uint8_t flags, struct pstmt *st,
		    const char *client_name)
{
	struct prep_client *pc = &cl->prep;
	if (pc->qlen == pc->qcap) {
		size_t nc = pc->qcap ? pc->qcap * 2 : 16;
		struct pq_entry *n = malloc(nc * sizeof(*n));
		if (!n)
			return -1;
		for (size_t i = 0; i < pc->qlen; i++)
			n[i] = pc->q[(pc->qhead + i) % pc->qcap];
		free(pc->q);
		pc->q = n;
		pc->qcap = nc;
		pc->qhead = 0;
	}
	struct pq_entry *e = &pc->q[(pc->qhead + pc->qlen) % pc->qcap];
	e->kind = kind;
	e->action = action;
	e->flags = flags;
	e->st = st;
	if (st)
		st->refs++;
	e->client_name = client_name ? strdup(client_name) : NULL;
	pc->qlen++;
	return 0;
}

static struct pq_entry *q_head(struct client *cl)
{
	return cl->prep.qlen ? &cl->prep.q[cl->prep.qhead] : NULL;
}

/* Pops the head; `failed`: the server did not carry the message out. */
static void q_pop(struct client *cl, struct server *sv, bool failed)
{
	struct prep_client *pc = &cl->prep;
	struct pq_entry *e = &pc->q[pc->qhead];
	if (failed && e->kind == PQ_PARSE) {
		if (e->st && sv && e->action != PQ_SYNTH)
			server_forget(sv, e->st); /* the Parse did not create it */
		if (e->client_name) {
			struct cl_stmt *m = client_lookup(cl, e->client_name);
			if (m && (!e->st || m->st == e->st))
				client_unmap(cl, m); /* a failed Parse leaves no mapping */
		}
	}
	if (failed && e->kind == PQ_CLOSE && e->st) {
		if (e->action == PQ_SYNTH && e->client_name && !client_lookup(cl, e->client_name))
			(void)client_map(cl, e->client_name, e->st); /* skipped: the name lives on */
		else if (e->action == PQ_SKIP && sv && (e->flags & PQF_STALE))
			stale_add(sv, e->st);
		else if (e->action == PQ_SKIP && sv && !server_has(sv, e->st))
			(void)server_add(sv, e->st); /* eviction skipped: still prepared there */
	}
	pstmt_unref(cl->proxy, e->st);
	free(e->client_name);
	pc->qhead = (pc->qhead + 1) % pc->qcap;
	pc->qlen--;
}

/* ------------------------------------------------------ client side ---- */

size_t prep_bytes_needed(uint8_t type, uint32_t len)
{
	size_t total = (size_t)len + 1;
	switch (type) {
	case 'B':
		/* Only the portal and statement names (each < NAMEDATALEN) are read. */
		return total < 5 + 2 * 64 ? total : 5 + 2 * 64;
	case 'P':
	case 'D':
	case 'C':
		return total;
	default:
		return total < 6 ? total : 6;
	}
}

/* Reads the statement name of a message (NULL when unnamed or not applicable). */
static const char *stmt_name_of(uint8_t type, const uint8_t *m, size_t have, const char **portal_end)
{
	struct pg_reader r;
	if (have < 5)
		return NULL;
	pgr_init(&r, m + 5, have - 5);
	if (type == 'P') {
		const char *n = pgr_cstr(&r, NULL);
		return n && n[0] ? n : NULL;
	}
	if (type == 'B') {
		const char *portal = pgr_cstr(&r, NULL);
		const char *n = pgr_cstr(&r, NULL);
		if (portal_end)
			*portal_end = portal;
		return n && n[0] ? n : NULL;
	}
	if (type == 'D' || type == 'C') {
		uint8_t what = pgr_u8(&r);
		const char *n = pgr_cstr(&r, NULL);
		return what == 'S' && n && n[0] ? n : NULL;
	}
	return NULL;
}

bool prep_needs_rewrite(struct client *cl, uint8_t type, const uint8_t *m, size_t have)
{
	/* While the server skips to the next Sync, messages go through untouched:
	 * the server ignores them, and so must the mapping. */
	if (cl->prep.in_error)
		return false;
	const char *name = stmt_name_of(type, m, have, NULL);
	if (!name)
		return false;
	if (type == 'P')
		return true;
	/* Unknown names go through unchanged: the server's own error is the right one. */
	return client_lookup(cl, name) != NULL;
}

/* Makes sure the linked server has st, injecting a Parse (and an eviction) first. */
static int ensure_on_server(struct client *cl, struct pstmt *st, struct pg_buf *out, bool client_parse,
			    const char *client_name)
{
	struct server *sv = cl->server;
	struct proxy *p = cl->proxy;
	struct sv_stmt *have = server_has(sv, st);
	if (have) {
		have->last_use = ++sv->prep.clock;
		if (client_parse) {
			p->pstmts.parses_saved++;
			return q_push(cl, PQ_PARSE, PQ_SYNTH, NULL, client_name);
		}
		return 0;
	}
	int max = p->cfg->max_prepared_statements > 0 ? p->cfg->max_prepared_statements : 1;
	if ((int)sv->prep.n >= max) {
		/* Evict the least recently used statement of this server connection. */
		size_t lru = 0;
		for (size_t i = 1; i < sv->prep.n; i++)
			if (sv->prep.set[i].last_use < sv->prep.set[lru].last_use)
				lru = i;
		pgb_begin(out, 'C');
		pgb_u8(out, 'S');
		pgb_str(out, sv->prep.set[lru].st->name);
		pgb_end(out);
		if (q_push(cl, PQ_CLOSE, PQ_SKIP, sv->prep.set[lru].st, NULL) < 0)
			return -1;
		pstmt_unref(p, sv->prep.set[lru].st);
		sv->prep.set[lru] = sv->prep.set[--sv->prep.n];
		p->pstmts.evictions++;
	}
	if (stale_take(sv, st)) {
		/* Invalidated by a schema change but still there under this name. */
		pgb_begin(out, 'C');
		pgb_u8(out, 'S');
		pgb_str(out, st->name);
		pgb_end(out);
		if (q_push_f(cl, PQ_CLOSE, PQ_SKIP, PQF_STALE, st, NULL) < 0)
			return -1;
	}
	if (server_add(sv, st) < 0)
		return -1;
	pgb_begin(out, 'P');
	pgb_str(out, st->name);
	pgb_raw(out, st->body, st->body_len);
	pgb_end(out);
	if (!client_parse)
		p->pstmts.parses_injected++;
	return q_push(cl, PQ_PARSE, client_parse ? PQ_PASS : PQ_SKIP, st, client_name);
}

long prep_rewrite(struct client *cl, uint8_t type, const uint8_t *m, size_t have, uint32_t len,
		  struct pg_buf *out, uint32_t *stream_left)
{
	size_t total = (size_t)len + 1;
	const char *portal = NULL;
	const char *name = stmt_name_of(type, m, have, &portal);
	*stream_left = 0;
	if (type == 'P') {
		size_t nl = strlen(name);
		const uint8_t *body = (const uint8_t *)name + nl + 1;
		size_t blen = total - (size_t)(body - m);
		struct pstmt *st = pstmt_intern(cl->proxy, body, blen);
		if (!st)
			return -1;
		int rc = client_map(cl, name, st);
		if (rc == 0)
			rc = ensure_on_server(cl, st, out, true, name);
		pstmt_unref(cl->proxy, st); /* the mapping and the queue hold their own */
		return rc < 0 || out->failed ? -1 : (long)total;
	}
	struct cl_stmt *map = client_lookup(cl, name);
	struct pstmt *st = map->st;
	if (type == 'C') {
		/* Statements stay prepared on the servers for other clients: the Close is
		 * answered here and only the client's name goes. */
		if (q_push(cl, PQ_CLOSE, PQ_SYNTH, st, name) < 0)
			return -1;
		client_unmap(cl, map);
		return (long)total;
	}
	if (ensure_on_server(cl, st, out, false, NULL) < 0)
		return -1;
	size_t old_nl = strlen(name);
	size_t new_nl = strlen(st->name);
	if (type == 'D') {
		pgb_begin(out, 'D');
		pgb_u8(out, 'S');
		pgb_str(out, st->name);
		pgb_end(out);
		if (q_push(cl, PQ_DESC_STMT, PQ_PASS, st, NULL) < 0)
			return -1;
		return out->failed ? -1 : (long)total;
	}
	/* Bind: new header and names, then the rest of the message as it is, the part
	 * not yet received streaming after it. */
	const uint8_t *after = (const uint8_t *)name + old_nl + 1;
	size_t head_old = (size_t)(after - m);
	uint32_t nlen = (uint32_t)(len - old_nl + new_nl);
	pgb_u8(out, 'B');
	pgb_u32(out, nlen);
	pgb_str(out, portal);
	pgb_str(out, st->name);
	size_t avail_rest = (have < total ? have : total) - head_old;
	pgb_raw(out, after, avail_rest);
	if (have < total)
		*stream_left = (uint32_t)(total - have);
	if (q_push(cl, PQ_BIND, PQ_PASS, st, NULL) < 0 || out->failed)
		return -1;
	return (long)(have < total ? have : total);
}

int prep_track(struct client *cl, uint8_t type, const uint8_t *m, size_t have)
{
	switch (type) {
	case 'P': return q_push(cl, PQ_PARSE, PQ_PASS, NULL, NULL);
	case 'B': return q_push(cl, PQ_BIND, PQ_PASS, NULL, NULL);
	case 'D': return q_push(cl, have >= 6 && m[5] == 'S' ? PQ_DESC_STMT : PQ_DESC_PORTAL, PQ_PASS, NULL, NULL);
	case 'E': return q_push(cl, PQ_EXEC, PQ_PASS, NULL, NULL);
	case 'C': return q_push(cl, PQ_CLOSE, PQ_PASS, NULL, NULL);
	case 'S': return q_push(cl, PQ_SYNC, PQ_PASS, NULL, NULL);
	case 'Q':
	case 'F': return q_push(cl, PQ_QUERY, PQ_PASS, NULL, NULL);
	default: return 0;
	}
}

/* DISCARD ALL / DEALLOCATE ALL succeeded: nothing is prepared any more, neither
 * under the client's names nor on this server connection. */
static void reset_all(struct client *cl, struct server *sv)
{
	while (cl->prep.nstmts)
		client_unmap(cl, &cl->prep.stmts[cl->prep.nstmts - 1]);
	if (sv) {
		for (size_t i = 0; i < sv->prep.n; i++)
			pstmt_unref(cl->proxy, sv->prep.set[i].st);
		sv->prep.n = 0;
		while (sv->prep.nstale)
			pstmt_unref(cl->proxy, sv->prep.stale[--sv->prep.nstale]);
	}
}

/* ------------------------------------------------------ server side ---- */

static bool final_for(uint8_t kind, uint8_t type)
{
	switch (kind) {
	case PQ_PARSE: return type == '1';
	case PQ_BIND: return type == '2';
	case PQ_DESC_STMT:
	case PQ_DESC_PORTAL: return type == 'T' || type == 'n';
	case PQ_EXEC: return type == 'C' || type == 'I' || type == 's';
	case PQ_CLOSE: return type == '3';
	case PQ_SYNC:
	case PQ_QUERY: return type == 'Z';
	default: return false;
	}
}

void prep_drain_synth(struct client *cl)
{
	uint8_t buf[5 * 16];
	size_t n = 0;
	while (prep_synth_due(&cl->prep)) {
		struct pq_entry *e = q_head(cl);
		if (cl->prep.in_error) {
			q_pop(cl, cl->server, true); /* PostgreSQL would skip it too */
			continue;
		}
		uint8_t t = e->kind == PQ_PARSE ? '1' : '3';
		if (n + 5 > sizeof(buf)) {
			(void)conn_send(&cl->c, buf, n);
			n = 0;
		}
		buf[n] = t;
		pg_put_u32(buf + n + 1, 4);
		n += 5;
		q_pop(cl, cl->server, false);
	}
	if (n)
		(void)conn_send(&cl->c, buf, n);
}

static bool tag_is(const uint8_t *body, size_t blen, const char *tag)
{
	size_t n = strlen(tag);
	return body && blen == n + 1 && memcmp(body, tag, n) == 0 && body[n] == 0;
}

enum prep_verdict prep_on_server_msg(struct client *cl, struct server *sv, uint8_t type, const uint8_t *body,
				     size_t blen)
{
	struct pq_entry *e = q_head(cl);
	if (!e || type == 'N' || type == 'S' || type == 'A')
		return PREP_FORWARD; /* asynchronous, or nothing outstanding */
	if (type == 'Z') {
		/* Everything before this Sync was answered or skipped by the server. */
		while ((e = q_head(cl)) && e->kind != PQ_SYNC && e->kind != PQ_QUERY)
			q_pop(cl, sv, true);
		if (e)
			q_pop(cl, sv, false);
		cl->prep.in_error = false;
		return PREP_FORWARD;
	}
	if (type == 'C' && (tag_is(body, blen, "DISCARD ALL") || tag_is(body, blen, "DEALLOCATE ALL")))
		reset_all(cl, sv); /* the server confirmed it: extended or simple protocol */
	if (type == 'E') {
		if (e->kind == PQ_QUERY || e->kind == PQ_SYNC)
			return PREP_FORWARD; /* ReadyForQuery still follows */
		struct pg_error_fields ef;
		if (e->st && body && pg_parse_error(body, blen, &ef) == 0 && ef.sqlstate &&
		    strcmp(ef.sqlstate, "0A000") == 0) {
			/* "cached plan must not change result type": the server statement is
			 * useless now; close it before it is prepared again. */
			server_forget(sv, e->st);
			stale_add(sv, e->st);
		}
		/* The server now skips everything up to Sync: so do the expectations. */
		q_pop(cl, sv, true);
		while ((e = q_head(cl)) && e->kind != PQ_SYNC)
			q_pop(cl, sv, true);
		cl->prep.in_error = true;
		return PREP_FORWARD;
	}
	if (!final_for(e->kind, type))
		return PREP_FORWARD;
	bool skip = e->action == PQ_SKIP;
	q_pop(cl, sv, false);
	return skip ? PREP_DROP : PREP_FORWARD;
}

bool prep_is_mapped(struct client *cl, const char *name)
{
	return client_lookup(cl, name) != NULL;
}

void prep_client_free(struct client *cl)
{
	while (cl->prep.qlen)
		q_pop(cl, NULL, false);
	free(cl->prep.q);
	while (cl->prep.nstmts)
		client_unmap(cl, &cl->prep.stmts[cl->prep.nstmts - 1]);
	free(cl->prep.stmts);
	memset(&cl->prep, 0, sizeof(cl->prep));
}

void prep_server_forget_all(struct server *sv)
{
	for (size_t i = 0; i < sv->prep.n; i++)
		pstmt_unref(sv->proxy, sv->prep.set[i].st);
	sv->prep.n = 0;
	while (sv->prep.nstale)
		pstmt_unref(sv->proxy, sv->prep.stale[--sv->prep.nstale]);
}

struct prep_transit {
	size_t n;
	struct {
		char name[48];
		bool stale;
		uint64_t last_use;
		size_t len;
		uint8_t *body;
	} e[];
};

static void transit_free(struct prep_transit *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->e[i].body);
	free(t);
}

void prep_server_detach(struct server *sv)
{
	size_t n = sv->prep.n + sv->prep.nstale, k = 0;
	struct prep_transit *t = n ? malloc(sizeof(*t) + n * sizeof(t->e[0])) : NULL;
	for (size_t i = 0; i < n; i++) {
		bool stale = i >= sv->prep.n;
		struct pstmt *st = stale ? sv->prep.stale[i - sv->prep.n] : sv->prep.set[i].st;
		uint8_t *body = t ? malloc(st->body_len) : NULL;
		if (body) { /* else forgotten: a later Parse under its name is answered by the server */
			memcpy(body, st->body, st->body_len);
			memcpy(t->e[k].name, st->name, sizeof(t->e[k].name));
			t->e[k].stale = stale;
			t->e[k].last_use = stale ? 0 : sv->prep.set[i].last_use;
			t->e[k].len = st->body_len;
			t->e[k].body = body;
			k++;
		}
		pstmt_unref(sv->proxy, st);
	}
	if (t)
		t->n = k;
	sv->prep.n = sv->prep.nstale = 0;
	sv->prep.transit = t;
}

void prep_server_attach(struct server *sv, struct proxy *to)
{
	struct prep_transit *t = sv->prep.transit;
	sv->prep.transit = NULL;
	for (size_t i = 0; t && i < t->n; i++) {
		struct pstmt *nst = pstmt_intern(to, t->e[i].body, t->e[i].len);
		if (!nst)
			continue;
		/* A 64-bit hash collision: the server has it under another name.  Forgotten;
		 * a later Parse of it is answered by the server. */
		if (strcmp(nst->name, t->e[i].name) != 0) {
			pstmt_unref(to, nst);
			continue;
		}
		/* The server's entries take their own references; intern's goes after. */
		if (t->e[i].stale)
			stale_add(sv, nst);
		else if (server_add(sv, nst) == 0)
			sv->prep.set[sv->prep.n - 1].last_use = t->e[i].last_use; /* its LRU place */
		pstmt_unref(to, nst);
	}
	transit_free(t);
}

void prep_server_move(struct server *sv, struct proxy *to)
{
	/* Under a world stop both registries are this thread's to use. */
	prep_server_detach(sv);
	prep_server_attach(sv, to);
}

void prep_server_free(struct server *sv)
{
	transit_free(sv->prep.transit);
	sv->prep.transit = NULL;
	for (size_t i = 0; i < sv->prep.n; i++)
		pstmt_unref(sv->proxy, sv->prep.set[i].st);
	free(sv->prep.set);
	while (sv->prep.nstale)
		pstmt_unref(sv->proxy, sv->prep.stale[--sv->prep.nstale]);
	free(sv->prep.stale);
	memset(&sv->prep, 0, sizeof(sv->prep));
}
