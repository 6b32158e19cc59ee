/* findings.h - everything the diagnosis knows, as the /api/findings document:
 * the detectors' n_plus_one and duplicate_query aggregates (with the ORM fix
 * worked out here), the advisor's slow_query plans and missing_index candidates,
 * and its catalog findings.  Built on demand on the event loop from in-memory
 * state; sql_analyze runs once per distinct statement text involved (cold path). */
#ifndef PGMEDIC_FINDINGS_H
#define PGMEDIC_FINDINGS_H

#include <jansson.h>
#include <stdbool.h>

#include "insight/profile.h"

struct findings_opts {
	double slow_query_ms;
	bool keep_literals;
	bool advisor_on;
};

/* The fingerprint's example as the API shows it: literals replaced by $n unless
 * keep_literals (they can be personal data); json null when it cannot be shown
 * (not UTF-8 with keep_literals).  Never NULL. */
json_t *findings_example(const struct profiler *pr, const struct qstat *q);
/* The same for an example text (findings_example is this of q->example). */
json_t *findings_example_of(const char *example, bool keep_literals);
/* {"findings": [...], "advisor": {...status...}}; NULL when out of memory. */
json_t *findings_json(struct profiler *pr, const struct findings_opts *o);

#endif
