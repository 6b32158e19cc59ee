/* config.h - pgmedic settings: defaults, ini file (pgmedic's own keys and
 * PgBouncer's [databases] syntax), command-line flags and the upstream URL.
 * Pure data + parsing; no sockets, no event loop. */
#ifndef PGMEDIC_CONFIG_H
#define PGMEDIC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum pool_mode { POOL_SESSION = 0, POOL_TRANSACTION = 1 };
enum auth_type { AUTH_TRUST = 0, AUTH_MD5 = 1, AUTH_SCRAM = 2 };
enum sslmode {
	SSLMODE_DISABLE = 0,
	SSLMODE_ALLOW,
	SSLMODE_PREFER,
	SSLMODE_REQUIRE,
	SSLMODE_VERIFY_CA,
	SSLMODE_VERIFY_FULL,
};

const char *pool_mode_name(enum pool_mode m);
const char *auth_type_name(enum auth_type t);
const char *sslmode_name(enum sslmode m);
int pool_mode_parse(const char *s);  /* -1 when unknown */
int auth_type_parse(const char *s);  /* accepts trust, md5, scram-sha-256; -1 when unknown */
int sslmode_parse(const char *s);    /* -1 when unknown */

/* One [databases] entry: `name = host=... port=... dbname=... user=... password=...
 * pool_size=... pool_mode=...`.  name "*" is the fallback for any database. */
struct db_entry {
	char *name;
	char *host;     /* NULL: 127.0.0.1; a value starting with '/' is a unix socket dir */
	int port;       /* 0: 5432 */
	char *dbname;   /* NULL: same as the name the client asked for */
	char *user;     /* NULL: the client's user; else every client uses this user upstream */
	char *password; /* NULL: none known here */
	char *cred_user; /* URL entries: the user `password` belongs to; the user is
			  * not forced, clients keep their own user name upstream */
	int pool_size;  /* -1: global default */
	int pool_mode;  /* -1: global default */
};

/* One command-line setting: the ini key it maps to and how the user spelled it. */
struct config_setting {
	char *key;   /* ini key; "listen" and "http" take HOST:PORT */
	char *value;
	char *label; /* for messages: "--pool-size", "--set server_lifetime" */
};

struct config {
	/* where clients connect */
	char *listen_host; /* default "127.0.0.1" */
	int listen_port;   /* default 6432 */
	char *http_host;   /* NULL: no HTTP endpoint */
	int http_port;

	/* upstream */
	char *upstream_url;        /* as given; parsed into a "*" db_entry */
	char *upstream_dbname;     /* the URL's /dbname, NULL if none.  Clients' database
				    * names still pass through ("*" has dbname NULL); this is
				    * for pgmedic's own side connections (advisor, doctor). */
	struct db_entry *dbs;
	size_t ndbs;

	/* pools */
	enum pool_mode pool_mode;  /* default transaction */
	int pool_size;             /* default 20 */
	int min_pool_size;         /* default 0 */
	int max_prepared_statements; /* per server connection, transaction mode; default 200; 0 = no mapping */
	int max_client_conn;       /* default 10000 */
	int workers;               /* event loops (threads); 0 = auto (the default), restart to change */

	/* profiling (src/insight/) */
	bool profile;              /* default on */
	bool keep_literals;        /* examples keep their literal values; default off */
	int max_fingerprints;      /* statistics entries kept; default 5000 */
	int max_routes;            /* routes kept; default 1000 */
	int metrics_top_fingerprints; /* fingerprints with their own /metrics series; default 20 */

	/* diagnosis (src/insight/detect.c, advisor.c) */
	int n_plus_one_threshold;  /* same fingerprint, different parameters, this many times in one request; default 5 */
	double request_idle_gap;   /* untagged requests: a client's statements separated by less than this (s); default 1 */
	double slow_query_ms;      /* p95 above this makes a fingerprint a slow_query candidate; default 50 */
	bool advisor;              /* EXPLAIN slow queries and check the catalog on a side connection; default on */
	double advisor_interval;   /* seconds between advisor rounds; default 5 */
	bool explain_analyze;      /* the advisor may EXPLAIN ANALYZE plain SELECTs (READ ONLY, statement_timeout); default off */
	int hypopg;                /* 0 off, 1 use when installed (default), 2 also CREATE EXTENSION hypopg */
	double query_wait_timeout;     /* seconds, default 120; 0 = forever */
	double server_connect_timeout; /* default 15 */
	double server_idle_timeout;    /* default 600; 0 = never */
	double server_lifetime;        /* default 3600; 0 = forever */
	double server_check_delay;     /* default 30 */
	double client_login_timeout;   /* default 60 */
	double shutdown_timeout;       /* default 30: SIGTERM waits this long for transactions */
	char *server_reset_query;      /* default "DISCARD ALL" (session mode only); "" = none */
	char *server_check_query;      /* default "" (empty query) */

	/* client authentication */
	enum auth_type auth_type;  /* default scram-sha-256 */
	bool auth_type_set;        /* given explicitly (flag or file) */
	char *auth_file;           /* PgBouncer userlist format */
	char *auth_user;           /* look up unknown users' secrets upstream as this user */
	char *auth_query;          /* default: SELECT usename, passwd FROM pg_shadow WHERE usename=$1 */
	char *auth_dbname;         /* database for auth_query; NULL: the client's database */
	char *admin_users;         /* comma-separated users allowed on the admin console;
				    * NULL: the upstream URL's user */

	/* TLS towards clients */
	enum sslmode client_tls_sslmode; /* default prefer if a cert is configured, else disable */
	bool client_tls_sslmode_set;
	char *client_tls_key_file, *client_tls_cert_file, *client_tls_ca_file;
	/* TLS towards PostgreSQL */
	enum sslmode server_tls_sslmode; /* default prefer */
	char *server_tls_key_file, *server_tls_cert_file, *server_tls_ca_file;

	int log_level;            /* enum log_level, default info */
	char *config_file;        /* --config, kept for SIGHUP */
	bool show_help, show_version;

	/* What config_parse_args saw.  The flags are kept as ini-style settings so
	 * config_load can re-apply them after the file (flags win), and argv is kept
	 * so config_reload can rebuild everything on SIGHUP. */
	struct config_setting *cli;
	size_t ncli;
	int argc;
	char **argv;              /* copy, NULL-terminated */
};

void config_init(struct config *c);          /* defaults; overwrites *c without freeing */
void config_free(struct config *c);          /* frees everything; *c is zeroed after */

/* The whole sequence main.c runs: defaults, argv (finds --config), the file,
 * argv again (flags override the file), the upstream URL, validation.
 * Returns 0 early, unvalidated, when --help or --version was given.
 * *c is always initialized: call config_free(c) whether this succeeds or not. */
int config_load(struct config *c, int argc, char **argv, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* SIGHUP: build *fresh from old's saved argv the same way config_load does. */
int config_reload(const struct config *old, struct config *fresh, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Each returns 0 on success, or -1 with a human message in err (errlen bytes). */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* argv parse: flags listed in --help.  Records --config but does not load it.
 * Applies each flag to *c at once (so a bad value fails here, naming the flag)
 * and also records it in c->cli; argv itself is copied, never permuted. */
int config_parse_args(struct config *c, int argc, char **argv, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* Adds/replaces the "*" entry from an URL postgresql://user:pass@host:port/dbname?sslmode=...
 * (percent-decoding user, password and dbname; host may be [v6] or a %2F-encoded socket dir). */
int config_apply_upstream_url(struct config *c, const char *url, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* Adds one [databases] entry: connstr is PgBouncer syntax (`host=... port=...`,
 * values may be single-quoted with '' for a quote); name may be "double-quoted".
 * A name defined twice is an error. */
int config_add_database(struct config *c, const char *name, const char *connstr,
			char *err, size_t errlen) __attribute__((warn_unused_result));
/* Final checks and derived defaults (e.g. loopback trust rule); 0 or -1 with err. */
int config_validate(struct config *c, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Database lookup: exact name, else "*", else NULL. */
const struct db_entry *config_find_db(const struct config *c, const char *name);
/* Is db->password the password of `user` (the upstream user of a pool)? */
bool db_password_for(const struct db_entry *db, const char *user);

void config_print_help(const char *argv0);

/* The event loops to run: `workers`, or for auto config_auto_workers() of the
 * usable CPUs. */
int config_workers(const struct config *c);
/* auto with `cpus` usable CPUs: one loop each, at least 1 and at most
 * CONFIG_AUTO_WORKERS_MAX (two loops are what has been measured; the profiler's one
 * lock is expected to show somewhere past four). */
#define CONFIG_AUTO_WORKERS_MAX 4
int config_auto_workers(int cpus);
/* The CPUs this process may use: its affinity mask (taskset, cpusets), lowered to a
 * cgroup v2 CPU quota (cpu.max, rounded up) on its cgroup or one above it. */
int config_usable_cpus(void);
/* The CPU quota in dir/cpu.max (cgroup v2 "QUOTA PERIOD"), rounded up; 0 for
 * "max" (none) or when it cannot be read. */
int config_cgroup_quota_cpus(const char *dir);
bool host_is_loopback(const char *host);

#endif
