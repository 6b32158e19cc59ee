/* profile.h - the profiler: turns the client's requests and the server's answers
 * into timed statements in the statistics store.
 *
 * The proxy reports each client message as it forwards it (Query, Parse, Bind,
 * Execute, Sync, Close, FunctionCall) and each answer that ends something
 * (CommandComplete, EmptyQueryResponse, PortalSuspended, ErrorResponse,
 * ReadyForQuery).  Per client, a FIFO of pending events mirrors what the server
 * will answer, in order: a simple Query is one event ended by ReadyForQuery (its
 * rows are the sum of its CommandCompletes); each Execute is its own event ended
 * by its CommandComplete (so statements in a pipeline are timed one by one, each
 * from when it could start: max(its arrival, the end of the one before)); a Sync
 * is a marker ended by ReadyForQuery.  After an error in an extended-protocol
 * batch the server skips to the Sync, and so does the queue.
 *
 * Texts are normalized once per Parse and once per Query (sql/normalize.h), with
 * a small cache by exact text for texts that repeat.  Nothing here blocks or
 * allocates per row; the per-client state is allocated on the first statement. */
#ifndef PGMEDIC_PROFILE_H
#define PGMEDIC_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "insight/detect.h"
#include "insight/stats.h"

/* What a statement text resolved to: its statistics entry and its route. */
struct prof_ref {
	struct qstat *qs;
	uint32_t qgen;
	struct route *rt;
	uint32_t rgen;
	uint64_t req;           /* request id tag (hash), 0 when untagged */
	uint64_t params;        /* hash of this execution's parameter values (Query text or Bind) */
};

struct prof_named {
	uint64_t h;
	char *name;
	struct prof_ref ref;
};

enum prof_ev_kind { PEV_QUERY = 1, PEV_EXEC, PEV_SYNC, PEV_FUNC };

struct prof_ev {
	struct prof_ref ref;
	uint64_t start_us, wait_us, rows;
	uint8_t kind;
	bool failed;
	char sqlstate[6];
};

/* A client's profiling state.  Fields are grouped by when they are used: the
 * first group on every statement (kept within two cache lines: under load every
 * client's state is cold in the cache when its next statement comes), then the
 * extended protocol's names, then the tag route. */
struct prof_client {
	struct prof_ev *ev;
	uint32_t head, n, cap;     /* a ring; cap is 0 or a power of two */
	uint64_t pending_wait_us;  /* waited for a server: charged to the next statement */
	uint64_t last_end_us;      /* when the previous event of the queue ended */
	struct route *app_rt;      /* the application_name route (app_route()) */
	uint32_t app_rgen, app_ver;
	/* the request in progress: by request id tag, else by idle gaps (detect.h) */
	uint64_t req;              /* its request id (also kept after it ended) */
	struct route *req_rt;
	uint32_t req_rgen;
	bool in_req, req_tagged;
	uint64_t req_us;
	struct det_item *items;    /* its first PROF_REQ_ITEMS statements, in order, for the detectors */
	uint32_t nitems, capitems;
	/* extended protocol */
	struct prof_ref unnamed_stmt, unnamed_portal;
	struct prof_named *stmts, *portals;
	uint32_t nstmts, capstmts, nportals, capportals;
	/* sqlcommenter tags */
	struct route *tag_rt;      /* the route of the last route/controller tags seen */
	uint32_t tag_rgen;
	uint16_t tag_klen;
	char tag_key[192];         /* those tags as written (tags_route()) */
};

/* The statements of one request the detectors see: its first 1,024.  A request
 * with more is a batch job (or a connection that never pauses, like pgbench's),
 * and the first thousand show its N+1 loops and duplicates as well as more would;
 * a longer list only costs memory and cache misses on every statement. */
#define PROF_REQ_ITEMS 1024

/* The normalization cache: direct-mapped by a hash of the exact text. */
#define PROF_CACHE 2048
struct prof_cache_ent {     /* its key, the hash of the exact text or of its shape, is in cache_h */
	uint32_t len;           /* of the text or of the shape */
	bool shape;             /* keyed by shape (sql/shape.h): texts with numbers;
				 * query NULL: a shape whose numbers show (not cached) */
	bool tail_ok;           /* the key is a text without its trailing tag comment,
				 * and texts with one normalize as without it (profile.c) */
	uint32_t qlen;          /* of query */
	uint64_t fp;
	struct route *rt;       /* from the text's tags */
	uint32_t rgen;
	uint64_t req;
	char *query;            /* normalized text (owned) */
	uint64_t who;           /* qs is the entry of fp for the stats_ident of this serial */
	struct qstat *qs;
	uint32_t qgen;
};

struct profiler {
	bool on;
	bool keep_literals;
	struct stats_store store;
	char *buf;              /* normalization output */
	size_t bufcap;
	char *buf2, *shape_buf; /* a variant's normalization; a shape or a variant */
	size_t buf2cap, shape_cap;
	char *body_buf;         /* a text without its trailing tag comment */
	size_t body_cap;
	/* The cache's keys (0: empty), apart from its entries: a text that is not in
	 * the cache (every text with inlined numbers: the shape is looked up next)
	 * costs a read of this 16 KiB array, not of a cold 180 KiB table. */
	uint64_t cache_h[PROF_CACHE];
	struct prof_cache_ent cache[PROF_CACHE];
	uint64_t cache_hits, shape_hits, normalized, desyncs;
	int app_param;          /* index of application_name in client want[] */
	struct detector detect; /* N+1 and duplicate findings */
	/* what the advisor found (owned here, filled on the loop by proxy/advice.c) */
	struct json_t *schemas; /* database -> advise_schema() facts */
	struct json_t *catalog; /* database -> catalog findings (array) */
	struct json_t *plans;   /* fingerprint hex -> {"plan", "finding", "db", "at"} */
	struct json_t *advisor_errors; /* database -> last error text */
	uint64_t idle_gap_us;   /* request_idle_gap */
	struct json_t *models;  /* the ORM map pgmedic_models sent (POST /api/models), or NULL */
};

/* Who is asking: the pool's database and user (with their hash), the client's
 * application_name. */
struct prof_ident {
	struct stats_ident who;
	const char *app;
	uint32_t app_ver;       /* changes whenever app may have (the client's want_ver) */
};

int prof_init(struct profiler *pr, bool on, bool keep_literals, size_t max_fingerprints, size_t max_routes)
	__attribute__((warn_unused_result));
void prof_free(struct profiler *pr);

/* A client message forwarded to its server.  body/have: the message body (after
 * the length word) and how much of it is in memory (the whole of a Query or Parse
 * unless it is larger than the proxy reads whole). */
void prof_client_msg(struct profiler *pr, struct prof_client **pcp, const struct prof_ident *id, uint8_t type,
		     const uint8_t *body, size_t have, uint64_t now);
/* The client waited this long for a server connection before its request went. */
void prof_client_waited(struct prof_client **pcp, uint64_t us);
/* A server message for the client (body whole for 'C' and 'E'). */
void prof_server_msg(struct profiler *pr, struct prof_client *pc, uint8_t type, const uint8_t *body, size_t blen,
		     uint64_t now);
/* Called now and then for every client: a request idle for request_idle_gap (or
 * 5 s for a tagged one) is over. */
void prof_client_idle(struct profiler *pr, struct prof_client *pc, uint64_t now);
/* The answers to the pending batch (up to its Sync) will never come (pgmedic
 * replays it): forget its statements without recording them. */
void prof_client_forget_batch(struct prof_client *pc);
/* The client is gone: its request ends; in-flight statements are dropped. */
void prof_client_free(struct profiler *pr, struct prof_client **pcp);

#endif
