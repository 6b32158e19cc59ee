/* advisor.h - the advisor thread: runs the blocking diagnosis work (advise.h:
 * EXPLAIN, hypothetical indexes, catalog checks) on its own libpq connections,
 * off the event loop.  The loop submits jobs and gets results back through an
 * eventfd-driven callback, on the loop; the two sides share only the two queues. */
#ifndef PGMEDIC_ADVISOR_H
#define PGMEDIC_ADVISOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "insight/advise.h"

struct event_base;
struct advisor;

enum advisor_job_kind { AJ_EXPLAIN = 1, AJ_CATALOG };

struct advisor_job {
	enum advisor_job_kind kind;
	char *conninfo;           /* libpq connection string (owned) */
	char *db;                 /* the database's name as pgmedic knows it (owned) */
	uint64_t fp;              /* AJ_EXPLAIN: the fingerprint */
	char *sql;                /* AJ_EXPLAIN: one execution's text, literals inlined (owned) */
	struct advise_opts opts;
	json_t *models;           /* AJ_CATALOG: the ORM map (a reference), or NULL */
};

struct advisor_result {
	enum advisor_job_kind kind;
	char *db;
	uint64_t fp;
	json_t *plan, *finding;   /* AJ_EXPLAIN (finding may be NULL) */
	json_t *findings, *schema;/* AJ_CATALOG */
	char error[512];          /* "" when it worked */
};

typedef void (*advisor_cb)(struct advisor_result *r, void *arg);

/* Starts the thread.  Results are delivered to cb on base's loop (cb must not
 * keep r; it may steal the json references by setting them to NULL). */
struct advisor *advisor_start(struct event_base *base, advisor_cb cb, void *arg);
/* Queues a job (taken over, freed by the advisor).  false when the queue is full
 * (the job is freed). */
bool advisor_submit(struct advisor *a, struct advisor_job *job);
/* Jobs queued or running. */
size_t advisor_busy(struct advisor *a);
/* Stops the thread (waits for the running job) and frees everything. */
void advisor_stop(struct advisor *a);
void advisor_job_free(struct advisor_job *job);

#endif
