/* advice.c - schedules the advisor (insight/advisor.h) from the proxy's state and
 * files its results: every advisor_interval, a catalog job per database with
 * traffic (at most once a minute) and an EXPLAIN job for each slow fingerprint
 * whose example is a plain SELECT (at most once per fingerprint every 10 minutes).
 * The advisor logs in like pgmedic does (the pool's upstream user and password);
 * with SCRAM pass-through only, there is no password to log in with, and the
 * advisor says so once. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "insight/advisor.h"
#include "proxy/proxy.h"
#include "sql/analyze.h"

#define CATALOG_EVERY 60.0
#define EXPLAIN_EVERY 600.0
#define JOBS_IN_FLIGHT 4

/* A libpq connection string for the pool's upstream (values quoted for libpq). */
static char *conninfo_for(const struct pool *pool, const struct config *cfg)
{
	char buf[2048];
	size_t n = 0;
	const char *keys[] = {"host", "port", "dbname", "user", "password", "sslmode", "application_name",
			      "connect_timeout"};
	char port[16];
	snprintf(port, sizeof(port), "%d", pool->port);
	const char *vals[] = {pool->host, port, pool->up_database, pool->up_user, pool->cred.password,
			      sslmode_name(cfg->server_tls_sslmode), "pgmedic-advisor", "5"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (!vals[i])
			continue;
		n += (size_t)snprintf(buf + n, n < sizeof(buf) ? sizeof(buf) - n : 0, "%s%s='", n ? " " : "", keys[i]);
		for (const char *c = vals[i]; *c && n + 3 < sizeof(buf); c++) {
			if (*c == '\'' || *c == '\\')
				buf[n++] = '\\';
			buf[n++] = *c;
		}
		if (n + 2 >= sizeof(buf))
			return NULL;
		buf[n++] = '\'';
		buf[n] = 0;
	}
	return strdup(buf);
}

static void on_result_locked(struct advisor_result *r, struct proxy *p, struct profiler *pr);

static void on_result(struct advisor_result *r, void *arg)
{
	struct proxy *p = arg;
	struct profiler *pr = p->prof;
	shard_prof_lock();
	on_result_locked(r, p, pr);
	shard_prof_unlock();
}

static void on_result_locked(struct advisor_result *r, struct proxy *p, struct profiler *pr)
{
	if (r->error[0]) {
		const char *old = json_string_value(json_object_get(pr->advisor_errors, r->db));
		if (!old || strcmp(old, r->error) != 0)
			log_warn("advisor (database %s): %s", r->db, r->error);
		json_object_set_new(pr->advisor_errors, r->db, json_string(r->error));
		if (r->kind == AJ_EXPLAIN) {
			/* remembered, so that it is not tried again at once */
			char hex[17];
			snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)r->fp);
			json_object_set_new(pr->plans, hex,
					    json_pack("{s:s,s:s,s:f}", "db", r->db, "error", r->error, "at", now_sec()));
		}
		return;
	}
	json_object_del(pr->advisor_errors, r->db);
	if (r->kind == AJ_CATALOG) {
		json_object_set(pr->catalog, r->db, r->findings);
		json_object_set(pr->schemas, r->db, r->schema);
	} else {
		char hex[17];
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)r->fp);
		json_t *o = json_pack("{s:s,s:O,s:f}", "db", r->db, "plan", r->plan, "at", now_sec());
		if (o && r->finding)
			json_object_set(o, "finding", r->finding);
		if (o)
			json_object_set_new(pr->plans, hex, o);
	}
}

static struct advisor_job *job_new(enum advisor_job_kind kind, const struct pool *pool, const struct config *cfg)
{
	struct advisor_job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->kind = kind;
	j->conninfo = conninfo_for(pool, cfg);
	j->db = strdup(pool->database);
	j->opts.analyze_selects = cfg->explain_analyze;
	j->opts.statement_timeout_ms = 5000;
	j->opts.create_hypopg = cfg->hypopg == 2;
	j->opts.min_table_rows = 10000;
	if (!j->conninfo || !j->db) {
		advisor_job_free(j);
		return NULL;
	}
	return j;
}

static struct pool *pool_of(const char *database, const char *user)
{
	FOR_ALL_POOLS(pool)
	{
		if (strcmp(pool->database, database) == 0 && strcmp(pool->user, user) == 0)
			return pool;
	}
	return NULL;
}

static void tick(struct proxy *p);

/* Shard 0's janitor.  The pools of every shard are read, and the profiler's store:
 * under a world stop and the profiler's lock (both nothing with one shard). */
void advisor_tick(struct proxy *p)
{
	const struct config *cfg = p->cfg;
	if (!cfg->advisor || !p->prof->on || p->shutting_down || now_sec() - p->advisor_last_round < cfg->advisor_interval)
		return;
	world_stop(p);
	shard_prof_lock();
	tick(p);
	shard_prof_unlock();
	world_resume(p);
}

static void tick(struct proxy *p)
{
	const struct config *cfg = p->cfg;
	double now = now_sec();
	if (!cfg->advisor || !p->prof->on || p->shutting_down || now - p->advisor_last_round < cfg->advisor_interval)
		return;
	p->advisor_last_round = now;
	if (!p->advisor) {
		p->advisor = advisor_start(p->base, on_result, p);
		if (!p->advisor) {
			log_warn("advisor: cannot start its thread; diagnosis from EXPLAIN and the catalog is off");
			return;
		}
	}
	/* Catalog: per database with traffic, once a minute. */
	FOR_ALL_POOLS(pool)
	{
		if (!pool->stats.queries || advisor_busy(p->advisor) >= JOBS_IN_FLIGHT)
			continue;
		json_t *last = json_object_get(p->advisor_catalog_at, pool->database);
		if (last && now - json_real_value(last) < CATALOG_EVERY)
			continue;
		struct advisor_job *j = job_new(AJ_CATALOG, pool, cfg);
		if (!j)
			continue;
		if (p->prof->models)
			j->models = json_incref(p->prof->models);
		if (advisor_submit(p->advisor, j))
			json_object_set_new(p->advisor_catalog_at, pool->database, json_real(now));
	}
	/* Slow fingerprints whose example is a plain SELECT with its values inlined. */
	const struct stats_store *s = &p->prof->store;
	for (size_t i = 0; i < s->nq && advisor_busy(p->advisor) < JOBS_IN_FLIGHT; i++) {
		const struct qstat *q = &s->q[i];
		if (!q->used || !q->calls || hist_quantile(q->hist, 0.95) < cfg->slow_query_ms * 1000.0)
			continue;
		char hex[17];
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)q->fp);
		json_t *prev = json_object_get(p->prof->plans, hex);
		if (prev && now - json_real_value(json_object_get(prev, "at")) < EXPLAIN_EVERY)
			continue;
		struct sql_analysis a;
		char err[256];
		if (strstr(q->example, "$1") || sql_analyze(q->example, &a, err, sizeof(err)) < 0 ||
		    a.kind != SQLA_SELECT || a.writes || a.multi)
			continue; /* never EXPLAIN a statement that can write; $n needs values */
		struct pool *pool = pool_of(q->database, q->user);
		if (!pool)
			continue;
		struct advisor_job *j = job_new(AJ_EXPLAIN, pool, cfg);
		if (!j)
			continue;
		j->fp = q->fp;
		j->sql = strdup(q->example);
		if (!j->sql) {
			advisor_job_free(j);
			continue;
		}
		/* marked now so that a slow advisor is not asked twice */
		json_object_set_new(p->prof->plans, hex, json_pack("{s:s,s:f,s:b}", "db", q->database, "at", now,
								  "pending", 1));
		advisor_submit(p->advisor, j);
	}
}

void advisor_shutdown(struct proxy *p)
{
	advisor_stop(p->advisor);
	p->advisor = NULL;
}
