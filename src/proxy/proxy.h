/* proxy.h - the proxy's objects and who owns them.
 *
 *   struct proxy   one per process: config, listeners, TLS contexts, pools, the
 *                  list of every client (for cancel lookups) and global counters.
 *   struct pool    one per (database, user): its server connections and clients,
 *                  each on exactly one of the pool's lists according to its state.
 *   struct client  an application connection.  struct server  a PostgreSQL one.
 *
 * Client states and the list that holds them:
 *   CL_LOGIN    proxy->login_clients   startup, TLS, authentication
 *   CL_WELCOME  pool->welcome_clients  authenticated, waiting for the pool's first
 *                                      server login to learn the server parameters
 *   CL_IDLE     pool->idle_clients     logged in, no server, nothing to send
 *   CL_WAITING  pool->waiting_clients  has a request, queued FIFO for a server
 *   CL_ACTIVE   pool->active_clients   linked to a server (incl. while it is set up)
 *   CL_DEAD     proxy->dead_clients    closed, freed at the end of the loop turn
 *
 * Server states and lists:
 *   SV_LOGIN    pool->login_servers    connecting, TLS, authenticating
 *   SV_IDLE     pool->idle_servers     ready, unlinked (LIFO: the warmest first)
 *   SV_SETUP    pool->active_servers   linked; running an internal query (SET of the
 *                                      client's parameters and/or a liveness check)
 *   SV_ACTIVE   pool->active_servers   linked; bytes flow to and from the client
 *   SV_RESET    pool->reset_servers    unlinked; running server_reset_query
 *   SV_DEAD     proxy->dead_servers    closed, freed at the end of the loop turn
 */
#ifndef PGMEDIC_PROXY_H
#define PGMEDIC_PROXY_H

#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/list.h"
#include "core/userlist.h"
#include "insight/profile.h"
#include "net/conn.h"
#include "pg/proto.h"
#include "pg/scram.h"
#include "proxy/prepared.h"
#include "proxy/shard.h"
#include "sql/session.h"

struct proxy;
struct pool;
struct server;

enum client_state { CL_LOGIN, CL_WELCOME, CL_IDLE, CL_WAITING, CL_ACTIVE, CL_DEAD };
enum server_state { SV_LOGIN, SV_IDLE, SV_SETUP, SV_ACTIVE, SV_RESET, SV_DEAD };
const char *client_state_name(enum client_state s);
const char *server_state_name(enum server_state s);

/* An extra startup parameter a client asked for that the server does not report
 * back (e.g. search_path from `options`): applied with SET on every link. */
struct param_kv {
	char *name, *value; /* value as SQL text: a quoted literal, or a SET's value as written */
	char *startup_value; /* client lists: the startup option's value (what RESET returns to) */
};

struct pin_name {
	unsigned bit;
	char name[64];
};

/* A SET/RESET a transaction-mode client ran, replayed on its next server connections. */
struct set_cmd {
	int kind;            /* enum sql_set_kind */
	int tracked;         /* RESET of a reported parameter: its index, else -1 */
	char *name, *value;
};

/* What a client needs only while it authenticates (kept out of struct client so
 * that an idle client costs a few hundred bytes). */
struct client_auth {
	struct scram_server scram;
	bool have_secret;
	char secret[512];
	uint8_t md5_salt[4];
	uint8_t pass_client_key[SCRAM_KEY_LEN];
	bool have_pass_key;
	bool from_auth_query;       /* the secret came from auth_query */
};

struct client {
	/* Hot: every request reads or writes these.  Under load the kernel's work
	 * evicts the proxy's data between two events, so each cache line touched is
	 * a miss per request: the per-request fields come first and together, then
	 * the connection (whose hot part, about 120 bytes, comes first), then the rest.
	 * Keep a new per-request field up here. */
	enum client_state state;
	int login_step;             /* enum in client.c */
	uint32_t stream_left;       /* bytes of a message still to pass through */
	uint32_t pending_rfq;       /* Query/Sync/FunctionCall sent, ReadyForQuery not yet seen */
	unsigned pinned;            /* transaction mode: session state (sql/session.h bits)
				     * keeps this client on its server connection */
	unsigned pending_release;   /* pinned state a Query alone on the wire removes
				     * (UNLISTEN *, CLOSE ALL...): dropped at its ReadyForQuery */
	uint32_t want_ver;          /* changes with want[] (the profiler's application_name route) */
	/* transaction mode: a Bind/Execute/Sync batch of a prepared statement, kept until
	 * its ReadyForQuery so that it can be replayed once after "cached plan must not
	 * change result type" (outside a transaction block) */
	enum { RETRY_NONE, RETRY_ARMED, RETRY_DROPPING, RETRY_DONE } retry_state;
	bool admin;                 /* on the admin console (virtual database pgbouncer/pgmedic) */
	bool in_extended;           /* extended-protocol messages since the last Sync */
	bool after_execute;         /* the last message forwarded was an Execute */
	bool close_after_release;   /* shutdown: close once its transaction is over */
	bool restore_startup;       /* DISCARD ALL / RESET ALL ran: startup values come back */
	struct proxy *proxy;
	struct pool *pool;
	struct server *server;
	struct list node;           /* on the list of its state (see top) */
	struct prof_client *prof;   /* profiler state, from the first statement on */
	struct sql_sess_name *pending_unname; /* a removal sent alone, not yet confirmed */
	uint64_t req_start_us, xact_start_us; /* for total_query_time / total_xact_time */
	double last_active;
	struct set_cmd pending_set; /* sent, not yet confirmed by ReadyForQuery */
	/* what the client wants the session to look like */
	size_t nextra;
	struct param_kv *extra;
	const char *want[PG_TRACKED_PARAMS]; /* interned (core/intern.h); written by client_set_want() only */
	struct timespec wait_start;
	uint64_t wait_us;            /* now_us() when it queued (FIFO over every shard) */
	/* transaction mode: statement names and the response queue (prepared.h) */
	struct prep_client prep;
	struct conn c;

	/* Cold: login, rare paths, the admin console. */
	struct list all_node;      /* proxy->all_clients */
	uint64_t id;
	char addr[64];
	char *user, *database;
	bool loopback;

	/* login phase */
	bool tls_done;
	bool auth_ok;
	bool auth_ok_sent;
	struct client_auth *auth;  /* login only; freed once authenticated */

	uint32_t cancel_pid, cancel_key;   /* what we told the client */

	struct pg_buf stage;        /* rewritten requests gathered for one send */
	void *authq_req;            /* pending auth_query lookup (authq.c) */
	bool authq_remote;          /* ... on shard 0, for this client on another shard */
	bool admin_pause_wait;      /* PAUSE not answered yet */
	bool pending_set_failed;    /* an ErrorResponse came for it */
	bool pending_release_failed;
	const char *startup_want[PG_TRACKED_PARAMS]; /* reported parameters as set at startup (interned) */
	/* the named instances behind a pin (LISTEN channels, WITH HOLD cursors, SQL
	 * prepared statements, temporary tables): the kind's pin goes with the last one */
	struct pin_name *pin_names;
	uint32_t npin_names, cap_pin_names;
	unsigned pin_unnamed;       /* kinds with an instance pgmedic could not name */
	double connect_time;
	uint8_t *retry_buf;
	size_t retry_len;
};

struct server {
	/* Hot first, as in struct client. */
	enum server_state state;
	int login_step;
	uint32_t stream_left;
	uint32_t internal_rfq;             /* ReadyForQuery still expected for our own queries */
	char tx_status;                    /* from the last ReadyForQuery */
	bool internal_failed;
	bool work_since_rfq;               /* a client request went through since last Z */
	struct proxy *proxy;
	struct pool *pool;
	struct client *client;
	struct list node;
	struct pool *give_to;              /* idle, kept for another shard's pool (pool_kick_all moves it) */
	double last_used;
	size_t nextra;
	struct param_kv *extra;            /* what we SET of the untracked kind */
	const char *params[PG_TRACKED_PARAMS]; /* as last reported by the server (interned) */
	struct prep_server prep;           /* statements prepared here under pgm_ names */
	struct conn c;

	/* Cold */
	uint64_t id;
	char addr[128];
	bool ssl_requested;
	uint32_t backend_pid, backend_key;
	double created, connect_started;
	struct event *timer;               /* connect timeout */
	struct pg_buf login_params;        /* ParameterStatus messages seen at login */
	struct scram_client scram;
};

/* What pgmedic knows to log in upstream as a given user. */
struct upstream_cred {
	char *password;              /* plaintext, or NULL */
	char *md5_secret;            /* "md5...", or NULL */
	bool have_scram_keys;        /* pass-through from a client's SCRAM exchange */
	uint8_t client_key[SCRAM_KEY_LEN];
	struct scram_secret secret;
};

struct pool_stats {
	uint64_t transactions, queries, bytes_in, bytes_out, server_errors;
	uint64_t xact_us, query_us;  /* time in transactions / running requests (PgBouncer's sense) */
	uint64_t wait_us_total, wait_us_max, waits;
	uint64_t server_connects, server_login_failures;
};

struct pool {
	struct list node;            /* proxy->pools */
	struct proxy *proxy;
	struct pool_group *group;    /* the same pair on every shard (proxy/shard.h) */
	char *database, *user;       /* as the client named them */
	uint64_t ident_hash;         /* stats_ident_hash(database, user), for the profiler */
	uint64_t serial;             /* unique for the life of the process (stats_ident) */
	char *host;                  /* upstream */
	int port;
	char *up_database, *up_user;
	struct sockaddr_storage addr;  /* resolved upstream address (cached) */
	socklen_t addr_len;            /* 0: not resolved yet */
	int pool_size;
	enum pool_mode mode;
	struct upstream_cred cred;

	struct list welcome_clients, idle_clients, waiting_clients, active_clients;
	struct list login_servers, idle_servers, active_servers, reset_servers;
	int n_welcome, n_idle_cl, n_waiting, n_active_cl;
	int n_login_sv, n_idle_sv, n_active_sv, n_reset_sv;

	bool have_welcome;
	struct pg_buf welcome;       /* ParameterStatus messages of the first login */
	const char *defaults[PG_TRACKED_PARAMS]; /* interned */
	double last_login_failure;
	struct pg_buf last_error;    /* ErrorResponse of the last failed login */
	bool paused;                 /* admin PAUSE: no server is handed out */
	bool send_due;               /* set-aside idle servers to send to other shards (pool_kick_all) */
	bool steal_due;              /* a waiting client here, an idle server on another shard */
	uint64_t head_wait_us;       /* wait_us of the first waiting client, 0: none (read by
				      * other shards: atomic) */
	struct pool_stats stats;
	struct pool_stats avg;       /* per-second rates (times: per transaction/query) over the last period */
	struct pool_stats prev;      /* stats at the start of the period */
};

struct scram_cache {
	struct scram_cache *next;
	char *user, *password;
	struct scram_secret secret;
};

struct handoff;

struct proxy {
	struct profiler *prof;           /* query statistics (insight/profile.h), shared by
					  * every shard (owned by shard 0; shard_prof_lock) */
	uint64_t prof_idle_checked;      /* last sweep for idle requests */
	struct advisor *advisor;         /* EXPLAIN / catalog thread (insight/advisor.h), or NULL */
	double advisor_last_round;
	struct json_t *advisor_catalog_at; /* database -> when its catalog job was sent */
	struct pstmt_registry pstmts;    /* every statement known, by text + types */
	uint8_t rand_pool[4096];         /* CSPRNG output handed out in small pieces */
	size_t rand_left;
	struct scram_cache *scram_cache; /* derived secrets of plaintext passwords */
	struct event_base *base;
	struct config *cfg;
	struct userlist users;
	SSL_CTX *client_tls, *server_tls;
	struct evconnlistener *listener;
	struct event *janitor, *reaper, *sig_hup, *sig_term, *sig_int;
	struct list pools;
	struct list all_clients, login_clients, dead_clients, dead_servers;
	struct list admin_clients;       /* logged in to the admin console */
	struct list authq_conns;         /* auth_query connections (authq.c) */
	bool paused;
	double stats_period_start;
	int n_clients;
	uint64_t client_connections_total, client_login_failures, server_connections_total;
	uint64_t cancel_requests, bad_packets;
	uint64_t plan_retries;           /* batches replayed after a plan-changing schema change */
	uint64_t server_moves;           /* idle server connections moved here from another shard */
	uint64_t pins_total[8];          /* by sql/session.h bit */
	int n_pinned;
	bool shutting_down;
	double shutdown_deadline;
	int exit_code;
	char **argv;
	int argc;
	struct evhttp *http;

	/* Shards (proxy/shard.h) */
	int shard;                       /* index of this shard */
	int wake_fd;                     /* eventfd: world stop, handoffs, kicks */
	struct event *wake_ev;
	pthread_mutex_t hq_lock;         /* the accepted sockets handed to this shard */
	struct handoff *hq;
	size_t hq_len, hq_cap;
	atomic_int load;                 /* clients here and on their way here */
	atomic_int kick;                 /* pool_kick_all() is due */
	uint64_t parked_gen;             /* last world stop this shard parked for */
	bool retired;                    /* loop ended (under the world lock) */
};

/* for (each pool `var` of proxy p) — usable nested with different names. */
#define FOR_POOLS(p, var)                                                                              \
	for (struct list *var##_it = (p)->pools.next; var##_it != &(p)->pools; var##_it = var##_it->next) \
		for (struct pool *var = list_entry(var##_it, struct pool, node); var; var = NULL)

/* for (each pool `var` of every shard), shard by shard. */
#define FOR_ALL_POOLS(var)                                                          \
	for (int var##_sh = 0; var##_sh < shard_count(); var##_sh++)                 \
		FOR_POOLS(shard_at(var##_sh), var)

/* One (database, user) pair summed over every shard (admin SHOW, /metrics; under
 * a world stop when there are several shards). */
struct pool_sum {
	const struct pool *pool;     /* the pair's pool on the lowest shard: names, mode, size */
	int n_active_cl, n_waiting, n_idle_cl, n_welcome;
	int n_active_sv, n_idle_sv, n_login_sv, n_reset_sv;
	struct pool_stats stats, avg; /* avg: rates summed; times averaged over transactions */
	bool paused;
	double oldest_wait;          /* seconds the longest-waiting client has waited */
};
/* Is this the pair's pool on the lowest shard that has one (list each pair once)? */
bool pool_first_of_group(const struct pool *pool);
void pool_sum_of(const struct pool *pool, struct pool_sum *s);
/* dst += src, counter by counter (wait_us_max: the larger). */
void pool_stats_add(struct pool_stats *dst, const struct pool_stats *src);
/* for (each pair, once) with its sums in `sum`. */
#define FOR_POOL_SUMS(var, sum)                                                       \
	FOR_ALL_POOLS(var)                                                            \
	for (struct pool_sum sum, *sum##_once = pool_first_of_group(var) ? (pool_sum_of(var, &sum), &sum) : NULL; \
	     sum##_once; sum##_once = NULL)

/* Process-wide counters summed over every shard. */
struct proxy_totals {
	uint64_t client_connections_total, client_login_failures, server_connections_total;
	uint64_t cancel_requests, bad_packets, plan_retries, server_moves;
	uint64_t pins_total[8];
	int n_pinned, n_login;
};
void proxy_totals(struct proxy_totals *t);

double now_sec(void);
uint64_t now_us(void);
/* Unpredictable bytes (BackendKeyData): drawn from OpenSSL in 4 KiB batches, since
 * every RAND_bytes call costs a getpid() system call. */
void proxy_random(struct proxy *p, void *out, size_t n);

/* proxy.c */
/* Shard `shard` of the process (shard.h); shard 0 listens and owns the profiler. */
int proxy_init(struct proxy *p, struct event_base *base, struct config *cfg, int shard, int argc, char **argv,
	       char *err, size_t errlen) __attribute__((warn_unused_result));
void proxy_free(struct proxy *p);
/* Frees a closed server connection's memory (the reaper, and a server lost in transit). */
void proxy_free_server(struct server *sv);
int proxy_reload(struct proxy *p);
void proxy_begin_shutdown(struct proxy *p);
void proxy_schedule_reap(struct proxy *p);

/* pool.c */
int pool_target_addr(struct pool *pool, struct sockaddr_storage *ss, socklen_t *sl);
struct pool *pool_get(struct proxy *p, const char *database, const char *user, const struct db_entry *db);
void pool_client_move(struct client *cl, enum client_state st);
void pool_server_move(struct server *sv, enum server_state st);
void pool_request_server(struct client *cl);     /* client has a request to send */
void pool_server_ready(struct server *sv);       /* server is free: give it away or park it */
void pool_release_server(struct client *cl);     /* client's transaction/session is over */
void pool_welcome_ready(struct pool *pool);
void pool_login_failed(struct pool *pool, const uint8_t *errmsg, size_t len);
void pool_janitor(struct proxy *p);
void pool_maybe_launch(struct pool *pool);
void pool_count_idle(struct pool *pool, int d); /* n_idle_sv += d (a server leaving by hand) */
/* Welcome, idle servers to waiting clients, launches: after a world stop moved
 * something to this shard. */
void pool_kick_all(struct proxy *p);
bool pool_refuse_failing(struct pool *pool, struct client *cl);

/* client.c */
void client_accept(struct proxy *p, int fd, const struct sockaddr *sa, int salen);
void client_close(struct client *cl, const char *reason);
void client_fatal(struct client *cl, const char *sqlstate, const char *msg);
void client_linked(struct client *cl);           /* server ready: start forwarding */
void client_finish_welcome(struct client *cl);
void client_process(struct client *cl);
void client_send_error(struct client *cl, const char *severity, const char *sqlstate, const char *msg);
void client_unpin(struct client *cl, const char *why);
void client_set_want(struct client *cl, int idx, const char *v); /* want[idx] = a copy of v (NULL: none) */
/* Server side of the plan-change retry (client.c): true when the message was
 * taken (not for the client). */
bool client_retry_on_server_msg(struct client *cl, struct server *sv, uint8_t type, const uint8_t *body, size_t blen);
void client_retry_clear(struct client *cl);
/* ReadyForQuery for a transaction-mode client: settle its SETs (client.c). */
void client_settle_sets(struct client *cl, struct server *sv, char tx_status);
void client_set_error(struct client *cl);
void client_discard_all(struct client *cl, struct server *sv);
bool client_tracks_sets(const struct client *cl);
/* auth_query answered: secret (NULL: no such user or no password), or error. */
void client_auth_query_done(struct client *cl, const char *secret, const char *error);

/* server.c */
struct server *server_launch(struct pool *pool);
void server_close(struct server *sv, const char *reason);
bool server_needs_setup(struct server *sv, struct client *cl);
void server_begin_setup(struct server *sv, struct client *cl, bool check);
void server_begin_reset(struct server *sv);
void server_process(struct server *sv);
/* Under a world stop: an idle server goes to another shard's pool of its group. */
int server_move_to(struct server *sv, struct pool *to);
/* On its own shard, at the top of the loop: an idle server set aside for another
 * shard's pool (sv->give_to) is sent there by message. */
void server_send(struct server *sv);

/* advice.c */
void advisor_tick(struct proxy *p);     /* janitor: schedule advisor jobs */
void advisor_shutdown(struct proxy *p);

/* admin.c */
bool admin_database(const char *db);
bool admin_user_allowed(const struct proxy *p, const char *user);
void admin_process(struct client *cl);
void admin_query(struct client *cl, const char *sql);
void admin_check_pause(struct proxy *p);

/* authq.c */
int authq_lookup(struct proxy *p, struct client *cl);
void authq_forget_client(struct client *cl);
void authq_close_all(struct proxy *p);

/* cancel.c */
void cancel_forward(struct proxy *p, uint32_t pid, uint32_t key);

#endif
