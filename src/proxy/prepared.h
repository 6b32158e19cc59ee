/* prepared.h - protocol-level named prepared statements in transaction mode.
 *
 * A client's statement names mean nothing on the server connection it gets next,
 * so pgmedic keeps, per client, name -> statement, and per server connection the
 * set of statements prepared there under pgmedic's own names ("pgm_<hash>", shared
 * by every client that prepares the same text and parameter types).  Parse of a
 * statement the server already has is answered by pgmedic; Bind/Describe of one it
 * lacks get a Parse injected first.  Because responses are added and removed, each
 * forwarded message gets an entry in a per-client queue that says what to do with
 * its response (pass, drop, or synthesize) — the response stream stays in order. */
#ifndef PGMEDIC_PREPARED_H
#define PGMEDIC_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proxy;
struct client;
struct server;
struct pg_buf;

struct pstmt {
	struct pstmt *next;    /* hash bucket chain */
	uint64_t hash;
	int refs;              /* client mappings + server sets + queue entries */
	char name[48];         /* server-side name */
	size_t body_len;       /* query text NUL, int16 count, int32 type OIDs */
	uint8_t body[];
};

enum pq_kind { PQ_PARSE, PQ_BIND, PQ_DESC_STMT, PQ_DESC_PORTAL, PQ_EXEC, PQ_CLOSE, PQ_SYNC, PQ_QUERY };
enum pq_action { PQ_PASS, PQ_SKIP, PQ_SYNTH };

#define PQF_STALE 1 /* an injected Close of a statement invalidated by a schema change */

struct pq_entry {
	uint8_t kind, action, flags;
	struct pstmt *st;      /* PARSE: the statement it creates; CLOSE: the one it drops;
			        * BIND/DESC: the one it uses (a reference) */
	char *client_name;     /* client's PARSE/CLOSE: mapping to undo if the server skips it */
};

struct cl_stmt {
	char *name;
	struct pstmt *st;
};

struct sv_stmt {
	struct pstmt *st;
	uint64_t last_use;
};

#define PSTMT_BUCKETS 1024

struct pstmt_registry {
	struct pstmt *buckets[PSTMT_BUCKETS];
	uint64_t seq;
	uint64_t parses_saved, parses_injected, evictions;
	size_t live;
};

/* Per-client tracking (embedded in struct client). */
struct prep_client {
	struct cl_stmt *stmts;
	size_t nstmts, capstmts;
	struct pq_entry *q;
	size_t qhead, qlen, qcap;
	bool in_error;         /* the server skips extended messages until the next Sync */
};

/* Per-server set (embedded in struct server). */
struct prep_server {
	struct sv_stmt *set;
	size_t n, cap;
	uint64_t clock;
	/* Still prepared on the server but invalid after a schema change ("cached plan
	 * must not change result type"): closed before being prepared again. */
	struct pstmt **stale;
	size_t nstale;
	struct prep_transit *transit; /* between prep_server_detach and _attach */
};

/* Bytes of a message needed before prep_client_message can decide (<= total). */
size_t prep_bytes_needed(uint8_t type, uint32_t len);
/* Does this message need rewriting for the linked server? (no side effects) */
bool prep_needs_rewrite(struct client *cl, uint8_t type, const uint8_t *m, size_t have);
/* Rewrites one message into out (including any injected Parse/Close) and queues
 * the expectations.  have: bytes of the message available (>= prep_bytes_needed).
 * Returns the number of original bytes consumed; *stream_left gets what remains of
 * a partially available Bind.  -1 on out-of-memory. */
long prep_rewrite(struct client *cl, uint8_t type, const uint8_t *m, size_t have, uint32_t len,
		  struct pg_buf *out, uint32_t *stream_left);
/* Queues the expectation of a message forwarded unchanged. */
int prep_track(struct client *cl, uint8_t type, const uint8_t *m, size_t have);
enum prep_verdict { PREP_FORWARD = 0, PREP_DROP = 1 };
/* A server message of this type arrived for the linked client (called once, at its
 * header; body is NULL unless the whole message is there): forward or drop. */
enum prep_verdict prep_on_server_msg(struct client *cl, struct server *sv, uint8_t type, const uint8_t *body,
				     size_t blen);
/* Is a synthesized response due (the head of the client's queue)?  Inline: it is
 * asked once per server message. */
static inline bool prep_synth_due(const struct prep_client *p)
{
	return p->qlen && p->q[p->qhead].action == PQ_SYNTH;
}
/* Sends every due synthesized response to the client. */
void prep_drain_synth(struct client *cl);

/* Does the client have a statement of this name mapped? */
bool prep_is_mapped(struct client *cl, const char *name);
void prep_client_free(struct client *cl);
void prep_server_free(struct server *sv);
/* Under a world stop, before sv->proxy becomes `to`: the server's statements are
 * re-registered in the registry of `to`. */
void prep_server_move(struct server *sv, struct proxy *to);
/* A server travelling to another shard by message: its statements become copies
 * owned by the server (on the old shard), then entries of the new shard's registry
 * (on the new shard). */
void prep_server_detach(struct server *sv);
void prep_server_attach(struct server *sv, struct proxy *to);
/* The server dropped every statement (server_reset_query = DISCARD ALL). */
void prep_server_forget_all(struct server *sv);

#endif
