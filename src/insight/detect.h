/* detect.h - the request detectors: N+1 loops and duplicate queries.
 *
 * A request is the statements that share a sqlcommenter request_id tag (from
 * pgmedic_django); without tags, one client connection's statements between gaps
 * of idleness (request_idle_gap).  When a request ends, its statements are grouped
 * by fingerprint: one executed at least n_plus_one_threshold times with different
 * parameters is an N+1 candidate, one executed twice or more with the same
 * parameters (and not an N+1) a duplicate.  Candidates are aggregated per (kind,
 * route, fingerprint): requests affected, queries and time wasted per request, the
 * fingerprints that ran before it in the request (where the loop hangs off).
 *
 * Runs on the event loop at the end of each request: O(n) in its statements
 * (two hash tables: by fingerprint, and by fingerprint and parameters).
 * The fix (select_related / prefetch_related and the relation) is worked out when
 * the findings are read (api.c), from the statement texts (sql/analyze.h), the
 * catalog's foreign keys (advisor) and the ORM map. */
#ifndef PGMEDIC_DETECT_H
#define PGMEDIC_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "insight/stats.h"

struct det_item {
	struct qstat *qs;
	uint32_t qgen;
	uint64_t params;     /* hash of the statement's parameter values (text or Bind) */
	uint64_t dur_us;
};

enum det_kind { DET_N_PLUS_ONE = 1, DET_DUPLICATE = 2 };

#define DET_PARENTS 6

struct det_finding {
	bool used;
	enum det_kind kind;
	struct qstat *qs;        /* the repeated statement */
	uint32_t qgen;
	uint64_t fp;
	char *route, *controller; /* copies (NULL: no route) */
	bool tagged;             /* grouped by request_id (else by idle gaps) */
	uint64_t requests, queries, wasted_us, max_per_request;
	struct {
		struct qstat *qs;
		uint32_t qgen;
	} parents[DET_PARENTS];  /* statements that ran before it in the request, latest first */
	int nparents;
	double first_seen, last_seen;
};

struct detector {
	struct det_finding *f;
	size_t n, max;
	int threshold;           /* n_plus_one_threshold */
	uint64_t requests_seen;
};

int detect_init(struct detector *d, size_t max_findings) __attribute__((warn_unused_result));
void detect_free(struct detector *d);

/* One request ended: its statements in order. */
void detect_request(struct detector *d, const struct det_item *items, size_t n, const struct route *rt,
		    bool tagged);

#endif
