/* config.c - pgmedic settings: defaults, the ini file (pgmedic's own keys, the
 * same keys under PgBouncer's [pgbouncer] section, PgBouncer's [databases]
 * syntax), command-line flags and the upstream URL.  Owns struct config and
 * every string in it.  No sockets, no event loop: everything here is parsing. */
#include "core/config.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_LISTEN_HOST "127.0.0.1"
#define DEFAULT_HTTP_HOST "127.0.0.1"

/* Stand-in for ';' while inih reads a line; see line_reader. */
#define SEMICOLON_STANDIN '\x1f'

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Replaces *dst with a copy of v (NULL stays NULL).  -1 on OOM, *dst untouched. */
static int set_str(char **dst, const char *v)
{
	char *d = NULL;
	if (v && !(d = strdup(v)))
		return -1;
	free(*dst);
	*dst = d;
	return 0;
}

/* ---------------------------------------------------------------- names */

static const char *const pool_mode_names[] = {"session", "transaction"};
static const char *const auth_type_names[] = {"trust", "md5", "scram-sha-256"};
static const char *const sslmode_names[] = {"disable", "allow", "prefer",
					    "require", "verify-ca", "verify-full"};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int name_lookup(const char *const *names, size_t n, const char *s)
{
	if (!s)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

const char *pool_mode_name(enum pool_mode m)
{
	return (unsigned)m < NELEM(pool_mode_names) ? pool_mode_names[m] : "unknown";
}

const char *auth_type_name(enum auth_type t)
{
	return (unsigned)t < NELEM(auth_type_names) ? auth_type_names[t] : "unknown";
}

const char *sslmode_name(enum sslmode m)
{
	return (unsigned)m < NELEM(sslmode_names) ? sslmode_names[m] : "unknown";
}

int pool_mode_parse(const char *s) { return name_lookup(pool_mode_names, NELEM(pool_mode_names), s); }
int auth_type_parse(const char *s) { return name_lookup(auth_type_names, NELEM(auth_type_names), s); }
int sslmode_parse(const char *s) { return name_lookup(sslmode_names, NELEM(sslmode_names), s); }

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcasecmp(s, *list) == 0)
			return true;
	return false;
}

/* PgBouncer [pgbouncer] keys pgmedic does not implement.  A PgBouncer user's
 * file should still load, so these are warned about and skipped; anything
 * outside this list and our own keys is a typo and stops the start. */
static const char *const pgbouncer_only_keys[] = {
	"logfile", "pidfile", "unix_socket_dir", "unix_socket_mode", "unix_socket_group",
	"user", "reserve_pool_size", "reserve_pool_timeout", "max_db_connections",
	"max_db_client_connections", "max_user_connections", "max_user_client_connections",
	"server_round_robin", "track_extra_parameters", "ignore_startup_parameters",
	"peer_id", "disable_pqexec", "application_name_add_host", "conffile",
	"service_name", "job_name", "stats_period",
	"scram_iterations", "auth_hba_file", "auth_ident_file", "auth_ldap_options", "syslog", "syslog_ident", "syslog_facility",
	"log_connections", "log_disconnections", "log_pooler_errors", "log_stats",
	"verbose", "stats_users", "server_reset_query_always",
	"server_fast_close", "server_login_retry", "autodb_idle_timeout",
	"pool_idle_timeout", "dns_max_ttl", "dns_nxdomain_ttl", "dns_zone_check_period",
	"resolv_conf", "query_wait_notify", "login_notify_message",
	"client_tls_protocols", "client_tls_ciphers", "client_tls13_ciphers",
	"client_tls_ecdhcurve", "client_tls_dheparams", "server_tls_protocols",
	"server_tls_ciphers", "server_tls13_ciphers", "query_timeout",
	"cancel_wait_timeout", "client_idle_timeout", "idle_transaction_timeout",
	"transaction_timeout", "suspend_timeout", "pkt_buf", "max_packet_size",
	"listen_backlog", "sbuf_loopcnt", "so_reuseport", "tcp_defer_accept",
	"tcp_socket_buffer", "tcp_keepalive", "tcp_keepcnt", "tcp_keepidle",
	"tcp_keepintvl", "tcp_user_timeout", NULL,
};

/* PgBouncer [databases] connection parameters pgmedic does not implement. */
static const char *const pgbouncer_only_db_keys[] = {
	"auth_user", "auth_query", "auth_dbname", "min_pool_size", "reserve_pool",
	"reserve_pool_size", "connect_query", "max_db_connections",
	"max_db_client_connections", "client_encoding", "datestyle", "timezone",
	"application_name", "load_balance_hosts", "target_session_attrs",
	"server_lifetime", "query_wait_timeout", NULL,
};

/* libpq URL parameters that make sense for a client but that pgmedic does
 * not act on: accepted with a warning so a DATABASE_URL can be pasted as is. */
static const char *const libpq_ignored_params[] = {
	"application_name", "fallback_application_name", "connect_timeout", "options",
	"client_encoding", "target_session_attrs", "keepalives", "keepalives_idle",
	"keepalives_interval", "keepalives_count", "tcp_user_timeout", "gssencmode",
	"channel_binding", "sslcompression", "sslpassword", "sslcrl", "sslcrldir",
	"sslsni", "requiressl", "ssl_min_protocol_version", "ssl_max_protocol_version",
	"krbsrvname", "gsslib", "service", "passfile", "load_balance_hosts",
	"replication", "require_auth", "sslnegotiation", "hostaddr", NULL,
};

/* ---------------------------------------------------------------- values */

static int parse_long(const char *s, long *out)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

/* An integer setting in [min, max], with a message that says what was expected. */
static int int_value(const char *label, const char *value, long min, long max, int *out,
		     char *err, size_t errlen)
{
	long v;
	const char *what = min >= 1 ? "a positive integer" : "a non-negative integer";
	if (parse_long(value, &v) < 0 || v < min)
		return fail(err, errlen, "%s: expected %s, got '%s'", label, what, value);
	if (v > max)
		return fail(err, errlen, "%s: %s is too large (at most %ld)", label, value, max);
	*out = (int)v;
	return 0;
}

static int bool_value(const char *label, const char *value, bool *out, char *err, size_t errlen)
{
	static const char *const yes[] = {"1", "on", "true", "yes", NULL}, *const no[] = {"0", "off", "false", "no", NULL};
	for (int i = 0; yes[i]; i++)
		if (strcasecmp(value, yes[i]) == 0) {
			*out = true;
			return 0;
		}
	for (int i = 0; no[i]; i++)
		if (strcasecmp(value, no[i]) == 0) {
			*out = false;
			return 0;
		}
	return fail(err, errlen, "%s: expected on or off, got '%s'", label, value);
}

static int port_value(const char *label, const char *value, int *out, char *err, size_t errlen)
{
	long v;
	if (parse_long(value, &v) < 0 || v < 1 || v > 65535)
		return fail(err, errlen, "%s: expected a port number (1-65535), got '%s'", label, value);
	*out = (int)v;
	return 0;
}

/* Seconds, as PgBouncer writes them ("15", "0.5"), or with a unit: ms, s, min, h. */
static int duration_value(const char *label, const char *value, double *out, char *err,
			  size_t errlen)
{
	static const struct { const char *suffix; double scale; } units[] = {
		{"", 1}, {"s", 1}, {"ms", 0.001}, {"min", 60}, {"h", 3600},
	};
	if (value && *value && !isspace((unsigned char)*value)) {
		errno = 0;
		char *end;
		double v = strtod(value, &end);
		if (!errno && end != value && isfinite(v) && v >= 0) {
			for (size_t i = 0; i < NELEM(units); i++)
				if (strcmp(end, units[i].suffix) == 0) {
					*out = v * units[i].scale;
					return 0;
				}
		}
	}
	return fail(err, errlen,
		    "%s: expected a duration in seconds (like 30, 0.5, 250ms, 2min, 1h), got '%s'",
		    label, value ? value : "");
}

static bool all_digits(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

static char *dup_range(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* HOST:PORT, [v6]:PORT, :PORT, PORT or HOST.  *host is NULL when no host was
 * given, *port 0 when no port was given (the caller keeps its current one). */
static int parse_hostport(const char *label, const char *v, char **host, int *port,
			  char *err, size_t errlen)
{
	*host = NULL;
	*port = 0;
	size_t n = strlen(v);
	const char *hs = v, *ps = NULL;
	size_t hn = 0;
	if (n == 0)
		return fail(err, errlen, "%s: expected HOST:PORT, got an empty value", label);
	if (all_digits(v, n)) {
		ps = v;
	} else if (v[0] == '[') {
		const char *rb = strchr(v, ']');
		if (!rb || rb == v + 1)
			return fail(err, errlen, "%s: expected [IPv6-address]:PORT, got '%s'", label, v);
		hs = v + 1;
		hn = (size_t)(rb - hs);
		if (rb[1] == ':')
			ps = rb + 2;
		else if (rb[1] != '\0')
			return fail(err, errlen, "%s: unexpected text after ']' in '%s'", label, v);
	} else {
		const char *colon = strchr(v, ':');
		if (colon && strchr(colon + 1, ':'))
			return fail(err, errlen,
				    "%s: write IPv6 addresses in brackets, like [::1]:6432 (got '%s')",
				    label, v);
		hn = colon ? (size_t)(colon - v) : n;
		if (colon)
			ps = colon + 1;
	}
	if (ps && port_value(label, ps, port, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < hn; i++)
		if (isspace((unsigned char)hs[i]) || iscntrl((unsigned char)hs[i]) || hs[i] == ',')
			return fail(err, errlen, "%s: expected one host name or address, got '%s'",
				    label, v);
	if (hn && !(*host = dup_range(hs, hn)))
		return fail(err, errlen, "out of memory");
	return 0;
}

/* A listen address as PgBouncer writes it: "*" means every interface. */
static int listen_host_value(const char *label, const char *v, char **out, char *err,
			     size_t errlen)
{
	if (strchr(v, ','))
		return fail(err, errlen,
			    "%s: pgmedic listens on one address; got the list '%s'", label, v);
	size_t n = strlen(v);
	if (n == 0)
		return fail(err, errlen, "%s: expected a host name or address", label);
	if (strcmp(v, "*") == 0)
		v = "0.0.0.0", n = 7;
	else if (v[0] == '[' && n > 2 && v[n - 1] == ']')
		v++, n -= 2;
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)v[i]) || iscntrl((unsigned char)v[i]))
			return fail(err, errlen, "%s: expected a host name or address", label);
	if (!(*out = dup_range(v, n)))
		return fail(err, errlen, "out of memory");
	return 0;
}

/* ---------------------------------------------------------------- upstream URL */

struct upstream {
	char *user, *password, *host, *dbname;
	int port;    /* 0: not given */
	int sslmode; /* -1: not given */
	char *sslrootcert, *sslcert, *sslkey;
};

static void upstream_free(struct upstream *u)
{
	free(u->user);
	free(u->password);
	free(u->host);
	free(u->dbname);
	free(u->sslrootcert);
	free(u->sslcert);
	free(u->sslkey);
	memset(u, 0, sizeof(*u));
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes %XX in s[0..n) into a new string; what names the part for errors.
 * Never echoes the text: it may be a password. */
static int pct_decode(const char *s, size_t n, char **out, const char *what, char *err,
		      size_t errlen)
{
	char *d = malloc(n + 1);
	if (!d)
		return fail(err, errlen, "out of memory");
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			d[j++] = s[i];
			continue;
		}
		int hi = n - i >= 3 ? hexval(s[i + 1]) : -1;
		int lo = n - i >= 3 ? hexval(s[i + 2]) : -1;
		if (hi < 0 || lo < 0) {
			free(d);
			return fail(err, errlen,
				    "bad percent-encoding in the %s ('%%' must be "
				    "followed by two hex digits; write a literal %% as %%25)", what);
		}
		if (hi == 0 && lo == 0) {
			free(d);
			return fail(err, errlen, "%%00 (NUL) in the %s", what);
		}
		d[j++] = (char)(hi * 16 + lo);
		i += 2;
	}
	d[j] = '\0';
	*out = d;
	return 0;
}

static int decode_opt(const char *s, size_t n, char **out, const char *what, char *err,
		      size_t errlen)
{
	char *d = NULL;
	if (n && pct_decode(s, n, &d, what, err, errlen) < 0)
		return -1;
	if (d && !*d) {
		free(d);
		d = NULL;
	}
	free(*out);
	*out = d;
	return 0;
}

static const char url_hint[] =
	"characters such as @ : / ? # in a user name or password must be percent-encoded";

static int check_upstream_host(const char *h, char *err, size_t errlen)
{
	if (!h)
		return 0;
	if (h[0] == '@')
		return fail(err, errlen, "abstract unix sockets ('@...') are not supported");
	if (h[0] == '/')
		return 0; /* unix socket directory: any path */
	if (strchr(h, ','))
		return fail(err, errlen,
			    "several hosts are not supported; give one host");
	for (const char *p = h; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-._:%", *p))
			return fail(err, errlen, "invalid host name (%s)", url_hint);
	return 0;
}

static int url_port(const char *s, size_t n, int *out, char *err, size_t errlen)
{
	long v = 0;
	if (!all_digits(s, n) || n > 5 || (v = strtol(s, NULL, 10)) < 1 || v > 65535)
		return fail(err, errlen,
			    "invalid port (expected 1-65535 after the host; %s)",
			    url_hint);
	*out = (int)v;
	return 0;
}

static int url_query_param(struct upstream *u, const char *k, const char *v, bool warn,
			   char *err, size_t errlen)
{
	char **dst = NULL;
	if (strcmp(k, "host") == 0)
		dst = &u->host;
	else if (strcmp(k, "user") == 0)
		dst = &u->user;
	else if (strcmp(k, "password") == 0)
		dst = &u->password;
	else if (strcmp(k, "dbname") == 0)
		dst = &u->dbname;
	else if (strcmp(k, "sslrootcert") == 0)
		dst = &u->sslrootcert;
	else if (strcmp(k, "sslcert") == 0)
		dst = &u->sslcert;
	else if (strcmp(k, "sslkey") == 0)
		dst = &u->sslkey;
	if (dst) {
		if (set_str(dst, *v ? v : NULL) < 0)
			return fail(err, errlen, "out of memory");
		return 0;
	}
	if (strcmp(k, "port") == 0)
		return url_port(v, strlen(v), &u->port, err, errlen);
	if (strcmp(k, "sslmode") == 0) {
		if ((u->sslmode = sslmode_parse(v)) < 0)
			return fail(err, errlen,
				    "unknown sslmode '%s' (expected disable, allow, "
				    "prefer, require, verify-ca or verify-full)", v);
		return 0;
	}
	if (in_list(k, libpq_ignored_params)) {
		if (warn)
			log_warn("upstream URL: ignoring parameter '%s' (pgmedic does not use it)", k);
		return 0;
	}
	return fail(err, errlen, "unknown parameter '%s'", k);
}

/* postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]
 * Pure: fills *u (freed on error).  warn=false keeps it quiet when the caller
 * only checks the URL and will parse it again later. */
static int upstream_parse(const char *url, struct upstream *u, bool warn, char *err,
			  size_t errlen)
{
	memset(u, 0, sizeof(*u));
	u->sslmode = -1;
	size_t skip;
	if (strncasecmp(url, "postgresql://", 13) == 0)
		skip = 13;
	else if (strncasecmp(url, "postgres://", 11) == 0)
		skip = 11;
	else
		/* Not echoed: a mistyped URL still holds the password. */
		return fail(err, errlen,
			    "expected a URL like postgresql://user:password@host:5432/dbname");
	for (const char *p = url; *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return fail(err, errlen,
				    "contains a space or control character "
				    "(percent-encode it, e.g. %%20)");
	if (strchr(url, '#'))
		return fail(err, errlen, "'#' must be percent-encoded as %%23 (%s)",
			    url_hint);

	const char *auth = url + skip;
	const char *auth_end = auth + strcspn(auth, "/?");
	const char *at = memrchr(auth, '@', (size_t)(auth_end - auth));
	const char *hp = at ? at + 1 : auth;

	if (at) {
		const char *colon = memchr(auth, ':', (size_t)(at - auth));
		const char *user_end = colon ? colon : at;
		if (decode_opt(auth, (size_t)(user_end - auth), &u->user, "user name", err,
			       errlen) < 0)
			goto bad;
		if (colon && decode_opt(colon + 1, (size_t)(at - colon - 1), &u->password,
					"password", err, errlen) < 0)
			goto bad;
	}

	const char *host_s = hp, *port_s = NULL;
	size_t host_n = 0, port_n = 0;
	if (hp < auth_end && *hp == '[') {
		const char *rb = memchr(hp, ']', (size_t)(auth_end - hp));
		if (!rb || rb == hp + 1) {
			fail(err, errlen, "expected [IPv6-address] after '['");
			goto bad;
		}
		host_s = hp + 1;
		host_n = (size_t)(rb - host_s);
		if (rb + 1 < auth_end) {
			if (rb[1] != ':') {
				fail(err, errlen, "unexpected text after ']' (%s)", url_hint);
				goto bad;
			}
			port_s = rb + 2;
			port_n = (size_t)(auth_end - port_s);
		}
	} else {
		const char *colon = memchr(hp, ':', (size_t)(auth_end - hp));
		if (colon && memchr(colon + 1, ':', (size_t)(auth_end - colon - 1))) {
			fail(err, errlen,
			     "write an IPv6 host in brackets, like [::1]:5432 (%s)",
			     url_hint);
			goto bad;
		}
		host_n = colon ? (size_t)(colon - hp) : (size_t)(auth_end - hp);
		if (colon) {
			port_s = colon + 1;
			port_n = (size_t)(auth_end - port_s);
		}
	}
	if (decode_opt(host_s, host_n, &u->host, "host", err, errlen) < 0)
		goto bad;
	if (port_s && url_port(port_s, port_n, &u->port, err, errlen) < 0)
		goto bad;

	const char *q = strchr(auth_end, '?');
	if (*auth_end == '/') {
		const char *db = auth_end + 1;
		size_t db_n = q ? (size_t)(q - db) : strlen(db);
		if (decode_opt(db, db_n, &u->dbname, "database name", err, errlen) < 0)
			goto bad;
	}
	if (q) {
		const char *p = q + 1;
		while (*p) {
			size_t seg = strcspn(p, "&");
			const char *eq = memchr(p, '=', seg);
			char *k = NULL, *v = NULL;
			if (seg == 0) {
				p++;
				continue;
			}
			if (!eq) {
				/* Parameter names are not secret; still bound the echo. */
				fail(err, errlen, "parameter '%.*s' has no '=value'",
				     (int)(seg > 40 ? 40 : seg), p);
				goto bad;
			}
			if (pct_decode(p, (size_t)(eq - p), &k, "parameter name", err, errlen) < 0)
				goto bad;
			if (pct_decode(eq + 1, seg - (size_t)(eq + 1 - p), &v, "parameter value",
				       err, errlen) < 0) {
				free(k);
				goto bad;
			}
			int r = url_query_param(u, k, v, warn, err, errlen);
			free(k);
			free(v);
			if (r < 0)
				goto bad;
			p += seg;
			if (*p == '&')
				p++;
		}
	}
	if (check_upstream_host(u->host, err, errlen) < 0)
		goto bad;
	return 0;
bad:
	upstream_free(u);
	return -1;
}

/* ---------------------------------------------------------------- databases */

static void db_entry_free(struct db_entry *e)
{
	free(e->name);
	free(e->host);
	free(e->dbname);
	free(e->user);
	free(e->password);
	free(e->cred_user);
	memset(e, 0, sizeof(*e));
}

static int db_append(struct config *c, struct db_entry *e)
{
	struct db_entry *n = realloc(c->dbs, (c->ndbs + 1) * sizeof(*n));
	if (!n)
		return -1;
	c->dbs = n;
	c->dbs[c->ndbs++] = *e;
	return 0;
}

static struct db_entry *db_lookup(struct config *c, const char *name)
{
	for (size_t i = 0; i < c->ndbs; i++)
		if (strcmp(c->dbs[i].name, name) == 0)
			return &c->dbs[i];
	return NULL;
}

static void db_remove(struct config *c, const char *name)
{
	struct db_entry *e = db_lookup(c, name);
	if (!e)
		return;
	size_t i = (size_t)(e - c->dbs);
	db_entry_free(e);
	memmove(&c->dbs[i], &c->dbs[i + 1], (c->ndbs - i - 1) * sizeof(*e));
	c->ndbs--;
}

/* A [databases] key: bare, or "double-quoted" with "" for a quote (PgBouncer
 * uses SQL identifier quoting for names outside [_0-9A-Za-z]). */
static int db_name_unquote(const char *raw, char **out, char *err, size_t errlen)
{
	size_t n = strlen(raw);
	if (n && raw[0] == '"') {
		char *d = malloc(n);
		if (!d)
			return fail(err, errlen, "out of memory");
		size_t j = 0, i = 1;
		for (;; i++) {
			if (i >= n) {
				free(d);
				return fail(err, errlen, "database name %s: missing closing '\"'", raw);
			}
			if (raw[i] == '"') {
				if (i + 1 < n && raw[i + 1] == '"') {
					d[j++] = '"';
					i++;
					continue;
				}
				break;
			}
			d[j++] = raw[i];
		}
		d[j] = '\0';
		if (i + 1 != n || j == 0) {
			free(d);
			return fail(err, errlen, "database name %s: %s", raw,
				    j ? "unexpected text after the closing quote" : "empty name");
		}
		*out = d;
		return 0;
	}
	if (n == 0)
		return fail(err, errlen, "empty database name");
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)raw[i]) || iscntrl((unsigned char)raw[i]) || raw[i] == '"')
			return fail(err, errlen,
				    "database name '%s': write names with spaces or quotes in "
				    "double quotes, like \"my db\"", raw);
	if (!(*out = strdup(raw)))
		return fail(err, errlen, "out of memory");
	return 0;
}

/* One `key=value` of a PgBouncer connection string; value may be 'quoted'
 * with '' for a quote (PgBouncer's rule: no backslash escapes).  Advances *pp.
 * *key is NULL at the end of the string. */
static int connstr_next(const char **pp, char **key, char **val, const char *db, char *err,
			size_t errlen)
{
	const char *p = *pp;
	*key = *val = NULL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p) {
		*pp = p;
		return 0;
	}
	const char *ks = p;
	while (*p && *p != '=' && *p != ' ' && *p != '\t')
		p++;
	size_t kn = (size_t)(p - ks);
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '=' || kn == 0)
		return fail(err, errlen, "database '%s': expected key=value, got '%.*s'", db,
			    (int)(kn > 40 ? 40 : kn), ks);
	p++;
	while (*p == ' ' || *p == '\t')
		p++;
	char *v;
	if (*p == '\'') {
		p++;
		v = malloc(strlen(p) + 1);
		if (!v)
			return fail(err, errlen, "out of memory");
		size_t j = 0;
		for (;;) {
			if (!*p) {
				free(v);
				return fail(err, errlen, "database '%s': unterminated quote in the value of '%.*s'",
					    db, (int)kn, ks);
			}
			if (*p == '\'') {
				if (p[1] != '\'')
					break;
				p++;
			}
			v[j++] = *p++;
		}
		v[j] = '\0';
		p++; /* closing quote */
		if (*p && *p != ' ' && *p != '\t') {
			free(v);
			return fail(err, errlen,
				    "database '%s': unexpected text after the quoted value of '%.*s'",
				    db, (int)kn, ks);
		}
	} else {
		const char *vs = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (!(v = dup_range(vs, (size_t)(p - vs))))
			return fail(err, errlen, "out of memory");
	}
	if (!*v) {
		/* PgBouncer refuses empty values too; an empty password is a mistake. */
		free(v);
		return fail(err, errlen, "database '%s': empty value for '%.*s'", db, (int)kn, ks);
	}
	if (!(*key = dup_range(ks, kn))) {
		free(v);
		return fail(err, errlen, "out of memory");
	}
	*val = v;
	*pp = p;
	return 0;
}

static int db_param(struct db_entry *e, const char *k, char *v, const char *where, char *err,
		    size_t errlen)
{
	char **dst = NULL;
	char label[128];
	snprintf(label, sizeof(label), "database '%s': %s", e->name, k);
	if (strcmp(k, "host") == 0) {
		if (v[0] == '@')
			return fail(err, errlen, "%s: abstract unix sockets are not supported", label);
		if (strchr(v, ','))
			return fail(err, errlen, "%s: several hosts are not supported; give one", label);
		dst = &e->host;
	} else if (strcmp(k, "dbname") == 0) {
		dst = &e->dbname;
	} else if (strcmp(k, "user") == 0) {
		dst = &e->user;
	} else if (strcmp(k, "password") == 0) {
		dst = &e->password;
	}
	if (dst) {
		free(*dst);
		*dst = v; /* takes ownership */
		return 1;
	}
	if (strcmp(k, "port") == 0)
		return port_value(label, v, &e->port, err, errlen);
	if (strcmp(k, "pool_size") == 0)
		return int_value(label, v, 1, INT_MAX, &e->pool_size, err, errlen);
	if (strcmp(k, "pool_mode") == 0) {
		if (strcasecmp(v, "statement") == 0)
			return fail(err, errlen,
				    "%s: statement pooling is not supported (use session or transaction)",
				    label);
		if ((e->pool_mode = pool_mode_parse(v)) < 0)
			return fail(err, errlen, "%s: expected session or transaction, got '%s'",
				    label, v);
		return 0;
	}
	if (in_list(k, pgbouncer_only_db_keys)) {
		log_warn("%s%sdatabase '%s': ignoring PgBouncer parameter '%s' (not implemented by pgmedic)",
			 where ? where : "", where ? ": " : "", e->name, k);
		return 0;
	}
	return fail(err, errlen, "database '%s': unknown connection parameter '%s'", e->name, k);
}

static int add_database(struct config *c, const char *rawname, const char *connstr,
			const char *where, char *err, size_t errlen)
{
	struct db_entry e = {.pool_size = -1, .pool_mode = -1};
	if (db_name_unquote(rawname, &e.name, err, errlen) < 0)
		return -1;
	if (db_lookup(c, e.name)) {
		fail(err, errlen, "database '%s' is defined twice", e.name);
		goto bad;
	}
	const char *p = connstr ? connstr : "";
	for (;;) {
		char *k, *v;
		if (connstr_next(&p, &k, &v, e.name, err, errlen) < 0)
			goto bad;
		if (!k)
			break;
		int r = db_param(&e, k, v, where, err, errlen);
		free(k);
		if (r != 1)
			free(v);
		if (r < 0)
			goto bad;
	}
	if (db_append(c, &e) < 0) {
		fail(err, errlen, "out of memory");
		goto bad;
	}
	return 0;
bad:
	db_entry_free(&e);
	return -1;
}

int config_add_database(struct config *c, const char *name, const char *connstr, char *err,
			size_t errlen)
{
	return add_database(c, name, connstr, NULL, err, errlen);
}

int config_apply_upstream_url(struct config *c, const char *url, char *err, size_t errlen)
{
	struct upstream u;
	if (!url)
		return fail(err, errlen, "upstream: no URL given");
	char msg[400];
	if (upstream_parse(url, &u, true, msg, sizeof(msg)) < 0)
		return fail(err, errlen, "upstream URL: %s", msg);
	/* Copy first: url may be c->upstream_url itself. */
	char *url_copy = strdup(url);
	char *star = strdup("*");
	if (!url_copy || !star) {
		free(url_copy);
		free(star);
		upstream_free(&u);
		return fail(err, errlen, "out of memory");
	}
	/* dbname stays NULL so each client's database name passes through: one
	 * URL serves every database on that server, like PgBouncer's "*". */
	struct db_entry e = {
		.name = star, .host = u.host, .port = u.port, .dbname = NULL,
		.user = NULL, .cred_user = u.user, .password = u.password, .pool_size = -1, .pool_mode = -1,
	};
	bool had_star = db_lookup(c, "*") != NULL;
	if (db_append(c, &e) < 0) {
		free(url_copy);
		free(star);
		upstream_free(&u);
		return fail(err, errlen, "out of memory");
	}
	u.host = u.user = u.password = NULL; /* now owned by the entry */
	if (had_star)
		db_remove(c, "*"); /* the first "*" is the old one; ours is last */
	free(c->upstream_url);
	c->upstream_url = url_copy;
	free(c->upstream_dbname);
	c->upstream_dbname = u.dbname;
	u.dbname = NULL;
	if (u.sslmode >= 0)
		c->server_tls_sslmode = (enum sslmode)u.sslmode;
	if (u.sslrootcert) {
		free(c->server_tls_ca_file);
		c->server_tls_ca_file = u.sslrootcert;
		u.sslrootcert = NULL;
	}
	if (u.sslcert) {
		free(c->server_tls_cert_file);
		c->server_tls_cert_file = u.sslcert;
		u.sslcert = NULL;
	}
	if (u.sslkey) {
		free(c->server_tls_key_file);
		c->server_tls_key_file = u.sslkey;
		u.sslkey = NULL;
	}
	upstream_free(&u);
	return 0;
}

/* ---------------------------------------------------------------- settings */

enum set_result { SET_OK = 0, SET_IGNORED = 1, SET_UNKNOWN = 2, SET_ERROR = -1 };

static const struct { const char *key; size_t off; } duration_keys[] = {
	{"query_wait_timeout", offsetof(struct config, query_wait_timeout)},
	{"server_connect_timeout", offsetof(struct config, server_connect_timeout)},
	{"server_idle_timeout", offsetof(struct config, server_idle_timeout)},
	{"server_lifetime", offsetof(struct config, server_lifetime)},
	{"server_check_delay", offsetof(struct config, server_check_delay)},
	{"client_login_timeout", offsetof(struct config, client_login_timeout)},
	{"shutdown_timeout", offsetof(struct config, shutdown_timeout)},
};

/* File paths: an empty value unsets them. */
static const struct { const char *key; size_t off; } path_keys[] = {
	{"auth_file", offsetof(struct config, auth_file)},
	{"admin_users", offsetof(struct config, admin_users)},
	{"auth_user", offsetof(struct config, auth_user)},
	{"auth_query", offsetof(struct config, auth_query)},
	{"auth_dbname", offsetof(struct config, auth_dbname)},
	{"client_tls_key_file", offsetof(struct config, client_tls_key_file)},
	{"client_tls_cert_file", offsetof(struct config, client_tls_cert_file)},
	{"client_tls_ca_file", offsetof(struct config, client_tls_ca_file)},
	{"server_tls_key_file", offsetof(struct config, server_tls_key_file)},
	{"server_tls_cert_file", offsetof(struct config, server_tls_cert_file)},
	{"server_tls_ca_file", offsetof(struct config, server_tls_ca_file)},
};

static int set_hostport(struct config *c, bool http, const char *label, const char *value,
			char *err, size_t errlen)
{
	char *host = NULL;
	int port = 0;
	if (http && (strcasecmp(value, "off") == 0 || !*value)) {
		free(c->http_host);
		c->http_host = NULL;
		c->http_port = 0;
		return 0;
	}
	if (parse_hostport(label, value, &host, &port, err, errlen) < 0)
		return -1;
	if (host && !http) {
		char *h = NULL;
		int r = listen_host_value(label, host, &h, err, errlen);
		free(host);
		if (r < 0)
			return -1;
		host = h;
	}
	if (host) {
		free(http ? c->http_host : c->listen_host);
		*(http ? &c->http_host : &c->listen_host) = host;
	} else if (http && !c->http_host && !(c->http_host = strdup(DEFAULT_HTTP_HOST))) {
		return fail(err, errlen, "out of memory");
	}
	if (port)
		*(http ? &c->http_port : &c->listen_port) = port;
	return 0;
}

/* Sets one [pgmedic]/[pgbouncer] key (or a flag mapped to one).  label names
 * the setting in messages the way the user wrote it. */
static int set_key(struct config *c, const char *key, const char *value, const char *label,
		   char *err, size_t errlen)
{
	int iv;
	if (!value)
		value = "";
	for (size_t i = 0; i < NELEM(duration_keys); i++)
		if (strcasecmp(key, duration_keys[i].key) == 0)
			return duration_value(label, value,
					      (double *)((char *)c + duration_keys[i].off), err, errlen);
	for (size_t i = 0; i < NELEM(path_keys); i++)
		if (strcasecmp(key, path_keys[i].key) == 0) {
			if (set_str((char **)((char *)c + path_keys[i].off), *value ? value : NULL) < 0)
				return fail(err, errlen, "out of memory");
			return SET_OK;
		}
	if (strcasecmp(key, "listen") == 0)
		return set_hostport(c, false, label, value, err, errlen);
	if (strcasecmp(key, "http") == 0)
		return set_hostport(c, true, label, value, err, errlen);
	if (strcasecmp(key, "listen_addr") == 0) {
		char *h;
		if (listen_host_value(label, value, &h, err, errlen) < 0)
			return -1;
		free(c->listen_host);
		c->listen_host = h;
		return SET_OK;
	}
	if (strcasecmp(key, "listen_port") == 0)
		return port_value(label, value, &c->listen_port, err, errlen);
	if (strcasecmp(key, "http_addr") == 0) {
		if (set_str(&c->http_host, *value ? value : NULL) < 0)
			return fail(err, errlen, "out of memory");
		return SET_OK;
	}
	if (strcasecmp(key, "http_port") == 0) {
		if (port_value(label, value, &c->http_port, err, errlen) < 0)
			return -1;
		/* A port alone turns the endpoint on, on loopback. */
		if (!c->http_host && !(c->http_host = strdup(DEFAULT_HTTP_HOST)))
			return fail(err, errlen, "out of memory");
		return SET_OK;
	}
	if (strcasecmp(key, "upstream") == 0) {
		struct upstream u;
		if (!*value) {
			free(c->upstream_url);
			c->upstream_url = NULL;
			return SET_OK;
		}
		/* Checked now so the message points at the flag or line that gave it. */
		char msg[400];
		if (upstream_parse(value, &u, false, msg, sizeof(msg)) < 0)
			return fail(err, errlen, "%s: %s", label, msg);
		upstream_free(&u);
		if (set_str(&c->upstream_url, value) < 0)
			return fail(err, errlen, "out of memory");
		return SET_OK;
	}
	if (strcasecmp(key, "pool_mode") == 0) {
		int m = pool_mode_parse(value);
		if (strcasecmp(value, "statement") == 0)
			return fail(err, errlen,
				    "%s: statement pooling is not supported (use session or transaction)",
				    label);
		if (m < 0)
			return fail(err, errlen, "%s: expected session or transaction, got '%s'",
				    label, value);
		c->pool_mode = (enum pool_mode)m;
		return SET_OK;
	}
	if (strcasecmp(key, "pool_size") == 0 || strcasecmp(key, "default_pool_size") == 0)
		return int_value(label, value, 1, INT_MAX, &c->pool_size, err, errlen);
	if (strcasecmp(key, "min_pool_size") == 0)
		return int_value(label, value, 0, INT_MAX, &c->min_pool_size, err, errlen);
	if (strcasecmp(key, "max_prepared_statements") == 0)
		return int_value(label, value, 0, 100000, &c->max_prepared_statements, err, errlen);
	if (strcasecmp(key, "max_client_conn") == 0)
		return int_value(label, value, 1, INT_MAX, &c->max_client_conn, err, errlen);
	if (strcasecmp(key, "workers") == 0) {
		if (strcasecmp(value, "auto") == 0) {
			c->workers = 0;
			return SET_OK;
		}
		long v;
		if (parse_long(value, &v) < 0 || v < 1 || v > 64)
			return fail(err, errlen, "%s: expected auto or a number of event loops from 1 to 64, got '%s'",
				    label, value);
		c->workers = (int)v;
		return SET_OK;
	}
	if (strcasecmp(key, "profile") == 0)
		return bool_value(label, value, &c->profile, err, errlen);
	if (strcasecmp(key, "keep_literals") == 0)
		return bool_value(label, value, &c->keep_literals, err, errlen);
	if (strcasecmp(key, "max_fingerprints") == 0)
		return int_value(label, value, 10, 1000000, &c->max_fingerprints, err, errlen);
	if (strcasecmp(key, "max_routes") == 0)
		return int_value(label, value, 10, 100000, &c->max_routes, err, errlen);
	if (strcasecmp(key, "metrics_top_fingerprints") == 0)
		return int_value(label, value, 0, 1000, &c->metrics_top_fingerprints, err, errlen);
	if (strcasecmp(key, "n_plus_one_threshold") == 0)
		return int_value(label, value, 2, 100000, &c->n_plus_one_threshold, err, errlen);
	if (strcasecmp(key, "request_idle_gap") == 0)
		return duration_value(label, value, &c->request_idle_gap, err, errlen);
	if (strcasecmp(key, "slow_query_ms") == 0) {
		char *end;
		double v = strtod(value, &end);
		if (!*value || *end || !(v >= 0) || v > 1e9)
			return fail(err, errlen, "%s: expected milliseconds (like 50 or 2.5), got '%s'", label, value);
		c->slow_query_ms = v;
		return SET_OK;
	}
	if (strcasecmp(key, "advisor") == 0)
		return bool_value(label, value, &c->advisor, err, errlen);
	if (strcasecmp(key, "advisor_interval") == 0)
		return duration_value(label, value, &c->advisor_interval, err, errlen);
	if (strcasecmp(key, "explain_analyze") == 0)
		return bool_value(label, value, &c->explain_analyze, err, errlen);
	if (strcasecmp(key, "hypopg") == 0) {
		static const char *const modes[] = {"off", "use", "create", NULL};
		for (int i = 0; modes[i]; i++)
			if (strcasecmp(value, modes[i]) == 0) {
				c->hypopg = i;
				return SET_OK;
			}
		return fail(err, errlen, "%s: expected off, use or create, got '%s'", label, value);
	}
	if (strcasecmp(key, "server_reset_query") == 0) {
		if (set_str(&c->server_reset_query, value) < 0)
			return fail(err, errlen, "out of memory");
		return SET_OK;
	}
	if (strcasecmp(key, "server_check_query") == 0) {
		/* PgBouncer spells the empty query "<empty>". */
		if (set_str(&c->server_check_query, strcmp(value, "<empty>") == 0 ? "" : value) < 0)
			return fail(err, errlen, "out of memory");
		return SET_OK;
	}
	if (strcasecmp(key, "auth_type") == 0) {
		int t = auth_type_parse(value);
		if (t < 0) {
			if (strcasecmp(value, "plain") == 0)
				return fail(err, errlen,
					    "%s: 'plain' sends passwords in clear text and is not "
					    "supported; use scram-sha-256 or md5", label);
			if (in_list(value, (const char *const[]){"cert", "any", "hba", "ldap", "pam", NULL}))
				return fail(err, errlen,
					    "%s: PgBouncer's '%s' is not supported by pgmedic "
					    "(use trust, md5 or scram-sha-256)", label, value);
			return fail(err, errlen,
				    "%s: expected trust, md5 or scram-sha-256, got '%s'", label, value);
		}
		c->auth_type = (enum auth_type)t;
		c->auth_type_set = true;
		return SET_OK;
	}
	if (strcasecmp(key, "client_tls_sslmode") == 0 || strcasecmp(key, "server_tls_sslmode") == 0) {
		int m = sslmode_parse(value);
		if (m < 0)
			return fail(err, errlen,
				    "%s: expected disable, allow, prefer, require, verify-ca or "
				    "verify-full, got '%s'", label, value);
		if (tolower((unsigned char)key[0]) == 'c') {
			c->client_tls_sslmode = (enum sslmode)m;
			c->client_tls_sslmode_set = true;
		} else {
			c->server_tls_sslmode = (enum sslmode)m;
		}
		return SET_OK;
	}
	if (strcasecmp(key, "log_level") == 0) {
		if ((iv = log_level_parse(value)) < 0)
			return fail(err, errlen, "%s: expected error, warning, info or debug, got '%s'",
				    label, value);
		c->log_level = iv;
		return SET_OK;
	}
	if (in_list(key, pgbouncer_only_keys))
		return SET_IGNORED;
	return SET_UNKNOWN;
}

/* ---------------------------------------------------------------- init/free */

void config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->listen_host = strdup(DEFAULT_LISTEN_HOST);
	c->listen_port = 6432;
	c->pool_mode = POOL_TRANSACTION;
	c->pool_size = 20;
	c->min_pool_size = 0;
	c->max_prepared_statements = 200;
	c->auth_query = strdup("SELECT usename, passwd FROM pg_shadow WHERE usename=$1");
	c->max_client_conn = 10000;
	c->workers = 0; /* auto */
	c->profile = true;
	c->keep_literals = false;
	c->max_fingerprints = 5000;
	c->max_routes = 1000;
	c->metrics_top_fingerprints = 20;
	c->n_plus_one_threshold = 5;
	c->request_idle_gap = 1.0;
	c->slow_query_ms = 50;
	c->advisor = true;
	c->advisor_interval = 5;
	c->explain_analyze = false;
	c->hypopg = 1;
	c->query_wait_timeout = 120;
	c->server_connect_timeout = 15;
	c->server_idle_timeout = 600;
	c->server_lifetime = 3600;
	c->server_check_delay = 30;
	c->client_login_timeout = 60;
	c->shutdown_timeout = 30;
	c->server_reset_query = strdup("DISCARD ALL");
	c->server_check_query = strdup("");
	c->auth_type = AUTH_SCRAM;
	c->client_tls_sslmode = SSLMODE_DISABLE;
	c->server_tls_sslmode = SSLMODE_PREFER;
	c->log_level = LOG_INFO;
}

static void free_cli(struct config *c)
{
	for (size_t i = 0; i < c->ncli; i++) {
		free(c->cli[i].key);
		free(c->cli[i].value);
		free(c->cli[i].label);
	}
	free(c->cli);
	c->cli = NULL;
	c->ncli = 0;
	if (c->argv)
		for (int i = 0; i < c->argc; i++)
			free(c->argv[i]);
	free(c->argv);
	c->argv = NULL;
	c->argc = 0;
}

void config_free(struct config *c)
{
	free(c->listen_host);
	free(c->http_host);
	free(c->upstream_url);
	free(c->upstream_dbname);
	for (size_t i = 0; i < c->ndbs; i++)
		db_entry_free(&c->dbs[i]);
	free(c->dbs);
	free(c->server_reset_query);
	free(c->server_check_query);
	free(c->auth_file);
	free(c->admin_users);
	free(c->auth_user);
	free(c->auth_query);
	free(c->auth_dbname);
	free(c->client_tls_key_file);
	free(c->client_tls_cert_file);
	free(c->client_tls_ca_file);
	free(c->server_tls_key_file);
	free(c->server_tls_cert_file);
	free(c->server_tls_ca_file);
	free(c->config_file);
	free_cli(c);
	memset(c, 0, sizeof(*c));
}

/* ---------------------------------------------------------------- ini file */

struct ini_ctx {
	struct config *c;
	const char *path;
	FILE *f;
	int lineno;   /* physical line just handed to inih */
	int err_line; /* first error found by us; 0 = none */
	char err[512];
};

__attribute__((format(printf, 3, 4)))
static void ctx_error(struct ini_ctx *x, int line, const char *fmt, ...)
{
	if (x->err_line)
		return; /* keep the first: later ones are often fallout */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->err, sizeof(x->err), fmt, ap);
	va_end(ap);
	x->err_line = line;
}

/* Feeds inih one physical line per call, so x->lineno is the line inih is on
 * (the handler gets no line number from this inih build).  It also bends
 * inih's defaults toward PgBouncer's file format:
 *  - lines longer than inih's fixed buffer would be cut silently and the rest
 *    read as a new line: refused here with a message instead;
 *  - leading blanks are removed, which turns off inih's continuation lines
 *    (an indented `key = value` would otherwise be glued to the key above);
 *  - inih strips " ; comment" at the end of values, but PgBouncer has no
 *    inline comments and a password may contain " ;": the ';' is swapped for
 *    a stand-in byte here and swapped back in the handler;
 *  - PgBouncer's %include is refused rather than skipped. */
static char *line_reader(char *str, int num, void *stream)
{
	struct ini_ctx *x = stream;
	if (!fgets(str, num, x->f))
		return NULL;
	x->lineno++;
	size_t len = strlen(str);
	if (len + 1 == (size_t)num && str[len - 1] != '\n') {
		int ch = getc(x->f);
		if (ch != EOF && ch != '\n') {
			while (ch != EOF && ch != '\n')
				ch = getc(x->f);
			ctx_error(x, x->lineno, "line is longer than %d characters", num - 1);
			str[0] = '\0';
			return str;
		}
	}
	if (x->lineno == 1 && strncmp(str, "\xEF\xBB\xBF", 3) == 0)
		memmove(str, str + 3, strlen(str + 3) + 1);
	size_t lead = strspn(str, " \t");
	if (lead)
		memmove(str, str + lead, strlen(str + lead) + 1);
	if (strchr(str, SEMICOLON_STANDIN)) {
		ctx_error(x, x->lineno, "unexpected control character");
		str[0] = '\0';
		return str;
	}
	if (strncmp(str, "%include", 8) == 0) {
		ctx_error(x, x->lineno, "%%include is not supported; put the settings in one file");
		str[0] = '\0';
		return str;
	}
	if (str[0] != ';' && str[0] != '#' && str[0] != '[')
		for (char *p = str; (p = strchr(p, ';')) != NULL; p++)
			*p = SEMICOLON_STANDIN;
	return str;
}

static char *restore_semicolons(const char *s)
{
	char *d = strdup(s);
	if (d)
		for (char *p = d; (p = strchr(p, SEMICOLON_STANDIN)) != NULL; p++)
			*p = ';';
	return d;
}

static int setting_handler(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *x = user;
	int line = x->lineno;
	if (x->err_line)
		return 1; /* inih reads on; we report only the first error */
	char *key = restore_semicolons(name), *val = restore_semicolons(value);
	char msg[400];
	char where[300];
	snprintf(where, sizeof(where), "%s:%d", x->path, line);
	if (!key || !val) {
		ctx_error(x, line, "out of memory");
	} else if (strcasecmp(section, "pgmedic") == 0 || strcasecmp(section, "pgbouncer") == 0) {
		int r = set_key(x->c, key, val, key, msg, sizeof(msg));
		if (r == SET_ERROR)
			ctx_error(x, line, "%s", msg);
		else if (r == SET_IGNORED)
			log_warn("%s: ignoring PgBouncer setting '%s' (not implemented by pgmedic)",
				 where, key);
		else if (r == SET_UNKNOWN)
			ctx_error(x, line, "unknown setting '%s' in [%s]", key, section);
	} else if (strcasecmp(section, "databases") == 0) {
		if (add_database(x->c, key, val, where, msg, sizeof(msg)) < 0)
			ctx_error(x, line, "%s", msg);
	} else if (strcasecmp(section, "users") == 0 || strcasecmp(section, "peers") == 0) {
		log_warn("%s: ignoring [%s] entry '%s' (PgBouncer's [%s] section is not implemented by pgmedic)",
			 where, section, key, section);
	} else if (!*section) {
		ctx_error(x, line, "setting '%s' comes before any section (start with [pgmedic])", key);
	} else {
		ctx_error(x, line, "unknown section [%s] (expected [pgmedic], [pgbouncer] or [databases])",
			  section);
	}
	free(key);
	free(val);
	return 1;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	struct ini_ctx x = {.c = c, .path = path};
	if (!(x.f = fopen(path, "r")))
		return fail(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
	int r = ini_parse_stream(line_reader, &x, setting_handler, &x);
	int read_error = ferror(x.f);
	fclose(x.f);
	if (r == -2)
		return fail(err, errlen, "%s: out of memory", path);
	if (read_error)
		return fail(err, errlen, "%s: read error", path);
	/* inih counts the same lines as line_reader, so its error line compares
	 * directly with ours; report whichever came first. */
	if (r > 0 && (!x.err_line || r < x.err_line))
		return fail(err, errlen,
			    "%s:%d: syntax error (expected [section], key = value, or a comment "
			    "starting with ; or #)", path, r);
	if (x.err_line)
		return fail(err, errlen, "%s:%d: %s", path, x.err_line, x.err);
	return 0;
}

/* ---------------------------------------------------------------- argv */

enum {
	OPT_LISTEN = 256, OPT_UPSTREAM, OPT_POOL_MODE, OPT_POOL_SIZE, OPT_MIN_POOL_SIZE,
	OPT_MAX_CLIENT_CONN, OPT_HTTP, OPT_AUTH_TYPE, OPT_AUTH_FILE, OPT_CONFIG, OPT_LOG_LEVEL,
	OPT_SET, OPT_KEEP_LITERALS, OPT_WORKERS,
};

static const struct option long_options[] = {
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"upstream", required_argument, NULL, OPT_UPSTREAM},
	{"pool-mode", required_argument, NULL, OPT_POOL_MODE},
	{"pool-size", required_argument, NULL, OPT_POOL_SIZE},
	{"min-pool-size", required_argument, NULL, OPT_MIN_POOL_SIZE},
	{"max-client-conn", required_argument, NULL, OPT_MAX_CLIENT_CONN},
	{"workers", required_argument, NULL, OPT_WORKERS},
	{"http", required_argument, NULL, OPT_HTTP},
	{"auth-type", required_argument, NULL, OPT_AUTH_TYPE},
	{"auth-file", required_argument, NULL, OPT_AUTH_FILE},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	{"set", required_argument, NULL, OPT_SET},
	{"keep-literals", no_argument, NULL, OPT_KEEP_LITERALS},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* Which ini key each value-taking flag sets. */
static const struct { int opt; const char *flag, *key; } flag_keys[] = {
	{OPT_LISTEN, "--listen", "listen"},
	{OPT_UPSTREAM, "--upstream", "upstream"},
	{OPT_POOL_MODE, "--pool-mode", "pool_mode"},
	{OPT_POOL_SIZE, "--pool-size", "pool_size"},
	{OPT_MIN_POOL_SIZE, "--min-pool-size", "min_pool_size"},
	{OPT_MAX_CLIENT_CONN, "--max-client-conn", "max_client_conn"},
	{OPT_WORKERS, "--workers", "workers"},
	{OPT_HTTP, "--http", "http"},
	{OPT_AUTH_TYPE, "--auth-type", "auth_type"},
	{OPT_AUTH_FILE, "--auth-file", "auth_file"},
	{OPT_LOG_LEVEL, "--log-level", "log_level"},
};

/* Applies a flag now (so errors name the flag) and records it for config_load. */
static int record_flag(struct config *c, const char *key, const char *value, const char *label,
		       char *err, size_t errlen)
{
	int r = set_key(c, key, value, label, err, errlen);
	if (r == SET_ERROR)
		return -1;
	if (r == SET_UNKNOWN)
		return fail(err, errlen, "%s: unknown setting '%s' (the README lists every key)",
			    label, key);
	if (r == SET_IGNORED) {
		log_warn("%s: ignoring PgBouncer setting '%s' (not implemented by pgmedic)", label, key);
		return 0;
	}
	struct config_setting *n = realloc(c->cli, (c->ncli + 1) * sizeof(*n));
	if (!n)
		return fail(err, errlen, "out of memory");
	c->cli = n;
	struct config_setting s = {strdup(key), strdup(value), strdup(label)};
	if (!s.key || !s.value || !s.label) {
		free(s.key);
		free(s.value);
		free(s.label);
		return fail(err, errlen, "out of memory");
	}
	c->cli[c->ncli++] = s;
	return 0;
}

int config_parse_args(struct config *c, int argc, char **argv, char *err, size_t errlen)
{
	free_cli(c);
	if (argc < 1 || !argv)
		return 0;
	/* Keep a pristine copy for config_reload, and let getopt permute a
	 * scratch array of pointers rather than the caller's argv. */
	c->argv = calloc((size_t)argc + 1, sizeof(char *));
	char **scratch = calloc((size_t)argc + 1, sizeof(char *));
	if (!c->argv || !scratch) {
		free(scratch);
		return fail(err, errlen, "out of memory");
	}
	c->argc = argc;
	for (int i = 0; i < argc; i++) {
		if (!(c->argv[i] = strdup(argv[i] ? argv[i] : ""))) {
			free(scratch);
			return fail(err, errlen, "out of memory");
		}
		scratch[i] = c->argv[i];
	}

	int rc = 0, ch;
	int saved_opterr = opterr;
	opterr = 0; /* our own messages, into err */
	optind = 0; /* glibc: 0 also resets getopt's internal state for a new argv */
	while (rc == 0 && (ch = getopt_long(argc, scratch, ":hVv", long_options, NULL)) != -1) {
		const char *opt_text = optind > 0 && optind <= argc ? scratch[optind - 1] : "?";
		switch (ch) {
		case 'h':
			c->show_help = true;
			break;
		case 'V':
			c->show_version = true;
			break;
		case 'v':
			rc = record_flag(c, "log_level", "debug", "--verbose", err, errlen);
			break;
		case OPT_KEEP_LITERALS:
			rc = record_flag(c, "keep_literals", "on", "--keep-literals", err, errlen);
			break;
		case OPT_CONFIG:
			if (!*optarg)
				rc = fail(err, errlen, "--config: expected a file name");
			else if (set_str(&c->config_file, optarg) < 0)
				rc = fail(err, errlen, "out of memory");
			break;
		case OPT_SET: {
			const char *eq = strchr(optarg, '=');
			char label[200];
			if (!eq || eq == optarg) {
				rc = fail(err, errlen, "--set: expected key=value, got '%s'", optarg);
				break;
			}
			size_t kn = (size_t)(eq - optarg);
			while (kn && isspace((unsigned char)optarg[kn - 1]))
				kn--;
			const char *v = eq + 1;
			while (isspace((unsigned char)*v))
				v++;
			char *k = dup_range(optarg, kn);
			if (!k) {
				rc = fail(err, errlen, "out of memory");
				break;
			}
			snprintf(label, sizeof(label), "--set %s", k);
			rc = record_flag(c, k, v, label, err, errlen);
			free(k);
			break;
		}
		case ':':
			rc = fail(err, errlen, "%s: missing value (see --help)", opt_text);
			break;
		case '?':
			if (strncmp(opt_text, "--", 2) != 0 && optopt > 0 && optopt < 256)
				rc = fail(err, errlen, "unknown option '-%c' (see --help)", optopt);
			else
				rc = fail(err, errlen, "unrecognized option '%s' (see --help)",
					  opt_text);
			break;
		default: {
			size_t i = 0;
			while (i < NELEM(flag_keys) && flag_keys[i].opt != ch)
				i++;
			if (i == NELEM(flag_keys))
				rc = fail(err, errlen, "internal error: unhandled option %d", ch);
			else
				rc = record_flag(c, flag_keys[i].key, optarg, flag_keys[i].flag, err,
						 errlen);
		}
		}
	}
	for (int i = optind; rc == 0 && i < argc; i++) {
		/* "run" is the only command so far; later commands will live here. */
		if (strcmp(scratch[i], "run") == 0)
			continue;
		size_t n = strlen(scratch[i]);
		if (n > 4 && (strcmp(scratch[i] + n - 4, ".ini") == 0 ||
			      strcmp(scratch[i] + n - 4, ".cfg") == 0))
			rc = fail(err, errlen, "unexpected argument '%s' (use --config %s)",
				  scratch[i], scratch[i]);
		else
			rc = fail(err, errlen, "unexpected argument '%s' (the only command is 'run')",
				  scratch[i]);
	}
	opterr = saved_opterr;
	optind = 0;
	free(scratch);
	return rc;
}

/* ---------------------------------------------------------------- validation */

bool host_is_loopback(const char *host)
{
	if (!host || !*host)
		return false;
	if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
		return true;
	char buf[INET6_ADDRSTRLEN + 8];
	size_t n = strlen(host);
	if (host[0] == '[' && n > 2 && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

static bool password_known(const struct config *c)
{
	for (size_t i = 0; i < c->ndbs; i++)
		if (c->dbs[i].password)
			return true;
	return false;
}

int config_validate(struct config *c, char *err, size_t errlen)
{
	if (!c->listen_host || !*c->listen_host)
		return fail(err, errlen, "listen_addr is empty");
	if (c->listen_port < 1 || c->listen_port > 65535)
		return fail(err, errlen, "listen_port must be 1-65535, got %d", c->listen_port);
	if (c->http_host) {
		if (c->http_port < 1 || c->http_port > 65535)
			return fail(err, errlen, "http_addr is set (%s) but http_port is not; "
				    "use --http HOST:PORT or set http_port", c->http_host);
		if (c->http_port == c->listen_port && strcmp(c->http_host, c->listen_host) == 0)
			return fail(err, errlen, "the HTTP endpoint and the PostgreSQL listener "
				    "both use %s:%d", c->listen_host, c->listen_port);
	}
	if (c->pool_size < 1)
		return fail(err, errlen, "pool_size must be at least 1, got %d", c->pool_size);
	if (c->min_pool_size < 0 || c->min_pool_size > c->pool_size)
		return fail(err, errlen, "min_pool_size (%d) must be between 0 and pool_size (%d)",
			    c->min_pool_size, c->pool_size);
	if (c->max_client_conn < 1)
		return fail(err, errlen, "max_client_conn must be at least 1, got %d",
			    c->max_client_conn);
	if (c->ndbs == 0)
		return fail(err, errlen,
			    "no database to connect to: give --upstream "
			    "postgresql://user:password@host:5432/dbname or a [databases] section");

	/* TLS towards clients */
	if ((c->client_tls_key_file == NULL) != (c->client_tls_cert_file == NULL))
		return fail(err, errlen, "client_tls_key_file and client_tls_cert_file must be "
			    "set together");
	if (!c->client_tls_sslmode_set)
		c->client_tls_sslmode = c->client_tls_key_file ? SSLMODE_PREFER : SSLMODE_DISABLE;
	else if (c->client_tls_sslmode != SSLMODE_DISABLE && !c->client_tls_key_file)
		return fail(err, errlen, "client_tls_sslmode = %s needs client_tls_key_file and "
			    "client_tls_cert_file", sslmode_name(c->client_tls_sslmode));
	if (c->client_tls_sslmode >= SSLMODE_VERIFY_CA && !c->client_tls_ca_file)
		return fail(err, errlen, "client_tls_sslmode = %s needs client_tls_ca_file (the CA "
			    "that signs client certificates)", sslmode_name(c->client_tls_sslmode));
	/* TLS towards PostgreSQL */
	if ((c->server_tls_key_file == NULL) != (c->server_tls_cert_file == NULL))
		return fail(err, errlen, "server_tls_key_file and server_tls_cert_file (sslkey and "
			    "sslcert) must be set together");
	if (c->server_tls_sslmode >= SSLMODE_VERIFY_CA && !c->server_tls_ca_file)
		return fail(err, errlen, "server_tls_sslmode = %s needs server_tls_ca_file (or "
			    "sslrootcert in the upstream URL)", sslmode_name(c->server_tls_sslmode));

	/* Client authentication.  A local server that trusts pgmedic (no password
	 * anywhere, no auth file) makes loopback clients trusted too: that is the
	 * zero-setup developer case.  Any other address would hand the database to
	 * whoever can reach the port, so it is refused rather than defaulted. */
	bool loopback = host_is_loopback(c->listen_host);
	bool have_secrets = c->auth_file || password_known(c) || (c->auth_user && c->auth_user[0]);
	if (!c->auth_type_set && !have_secrets) {
		if (!loopback)
			return fail(err, errlen,
				    "refusing to listen on %s without client authentication: no "
				    "auth_file is set and the upstream has no password (set "
				    "--auth-file, put a password in the upstream URL, or listen on "
				    "127.0.0.1)", c->listen_host);
		c->auth_type = AUTH_TRUST;
	}
	if (c->auth_type == AUTH_TRUST && !loopback)
		return fail(err, errlen,
			    "refusing to listen on %s without client authentication: auth_type "
			    "is trust (use md5 or scram-sha-256 with --auth-file, or listen on "
			    "127.0.0.1)", c->listen_host);
	if (c->auth_type != AUTH_TRUST && !have_secrets)
		return fail(err, errlen,
			    "auth_type %s needs passwords to check: set auth_file (PgBouncer "
			    "userlist format) or put a password in the upstream URL",
			    auth_type_name(c->auth_type));
	return 0;
}

const struct db_entry *config_find_db(const struct config *c, const char *name)
{
	const struct db_entry *star = NULL;
	for (size_t i = 0; i < c->ndbs; i++) {
		if (name && strcmp(c->dbs[i].name, name) == 0)
			return &c->dbs[i];
		if (strcmp(c->dbs[i].name, "*") == 0)
			star = &c->dbs[i];
	}
	return star;
}

/* ---------------------------------------------------------------- load */

int config_load(struct config *c, int argc, char **argv, char *err, size_t errlen)
{
	config_init(c);
	if (!c->listen_host || !c->server_reset_query || !c->server_check_query)
		return fail(err, errlen, "out of memory");
	if (config_parse_args(c, argc, argv, err, errlen) < 0)
		return -1;
	if (c->show_help || c->show_version)
		return 0;
	if (c->config_file && config_load_file(c, c->config_file, err, errlen) < 0)
		return -1;
	/* Flags were applied once already (to find --config and fail early);
	 * applying them again after the file is what makes them win over it. */
	for (size_t i = 0; i < c->ncli; i++)
		if (set_key(c, c->cli[i].key, c->cli[i].value, c->cli[i].label, err, errlen) == SET_ERROR)
			return -1;
	if (c->upstream_url && config_apply_upstream_url(c, c->upstream_url, err, errlen) < 0)
		return -1;
	return config_validate(c, err, errlen);
}

int config_reload(const struct config *old, struct config *fresh, char *err, size_t errlen)
{
	return config_load(fresh, old->argc, old->argv, err, errlen);
}

/* ---------------------------------------------------------------- help */

int config_auto_workers(int cpus)
{
	if (cpus < 1)
		return 1;
	return cpus < CONFIG_AUTO_WORKERS_MAX ? cpus : CONFIG_AUTO_WORKERS_MAX;
}

/* The CPU quota of a cgroup v2 directory (cpu.max "QUOTA PERIOD", rounded up), or 0
 * for none ("max") or unreadable. */
int config_cgroup_quota_cpus(const char *dir)
{
	char path[4200], line[128];
	snprintf(path, sizeof(path), "%s/cpu.max", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	long long quota = 0, period = 0;
	/* "max PERIOD" (no quota) does not scan as two numbers */
	int ok = fgets(line, sizeof(line), f) && sscanf(line, "%lld %lld", &quota, &period) == 2;
	fclose(f);
	if (!ok || quota <= 0 || period <= 0)
		return 0;
	long long n = (quota + period - 1) / period;
	return n > INT_MAX ? INT_MAX : (int)n;
}

int config_usable_cpus(void)
{
	int n = 0;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n <= 0) {
		long online = sysconf(_SC_NPROCESSORS_ONLN);
		n = online > 0 ? (int)online : 1;
	}
	/* A CPU quota (docker --cpus, a Kubernetes CPU limit) on this process's cgroup
	 * or any above it (cgroup v2: the "0::/path" line of /proc/self/cgroup). */
	FILE *f = fopen("/proc/self/cgroup", "r");
	char line[4096];
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::/", 4) != 0)
			continue;
		line[strcspn(line, "\n")] = 0;
		char dir[4200];
		snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s", line + 3);
		for (;;) {
			int q = config_cgroup_quota_cpus(dir);
			if (q > 0 && q < n)
				n = q;
			char *slash = strrchr(dir, '/');
			if (!slash || slash - dir <= (long)strlen("/sys/fs/cgroup"))
				break;
			*slash = 0;
		}
		break;
	}
	if (f)
		fclose(f);
	return n;
}

int config_workers(const struct config *c)
{
	if (c->workers > 0)
		return c->workers;
	return config_auto_workers(config_usable_cpus());
}

void config_print_help(const char *argv0)
{
	const char *prog = argv0 && *argv0 ? argv0 : "pgmedic";
	if (strrchr(prog, '/') && strrchr(prog, '/')[1])
		prog = strrchr(prog, '/') + 1;
	printf(
"Usage: %s [run] [OPTIONS]\n"
"       %s top|snapshot|compare ...   (see '%s help')\n"
"\n"
"pgmedic is a PostgreSQL proxy: it pools connections and profiles every query.\n"
"Point your application at pgmedic instead of PostgreSQL; only HOST/PORT change.\n"
"\n"
"  %s --upstream postgresql://app:secret@db.internal:5432/app\n"
"\n"
"Options:\n"
"  --upstream URL          PostgreSQL to connect to: postgresql://[user[:password]@]\n"
"                          host[:port][/dbname][?sslmode=...]. Percent-encode special\n"
"                          characters; [v6] hosts; %%2F-encoded socket directories.\n"
"                          The database each client asks for is passed through.\n"
"  --listen HOST:PORT      where clients connect (default 127.0.0.1:6432); also\n"
"                          [::1]:PORT, :PORT or PORT\n"
"  --pool-mode MODE        transaction (default) or session\n"
"  --pool-size N           server connections per database/user pair (default 20)\n"
"  --min-pool-size N       server connections kept open even when idle (default 0)\n"
"  --max-client-conn N     client connections accepted (default 10000)\n"
"  --workers N|auto        event loops, one thread each (default auto: one per CPU,\n"
"                          at most 4)\n"
"  --http HOST:PORT        serve /metrics, /health and the JSON API (/api/queries,\n"
"                          /api/routes, /api/models) over HTTP (default off)\n"
"  --keep-literals         keep literal values in query examples (default: replaced\n"
"                          by $n placeholders, since literals can be personal data)\n"
"  --auth-type TYPE        client authentication: scram-sha-256 (default), md5, trust\n"
"  --auth-file FILE        users and passwords, PgBouncer userlist.txt format\n"
"  --config FILE           ini file: [pgmedic] (or [pgbouncer]) and [databases];\n"
"                          a PgBouncer configuration file works as is\n"
"  --set KEY=VALUE         set any config file key, e.g. --set server_lifetime=600\n"
"  --log-level LEVEL       error, warning, info (default) or debug\n"
"  -v, --verbose           same as --log-level debug\n"
"  -h, --help              show this help\n"
"  -V, --version           show the version\n"
"\n"
"Options override the config file.  Every config key (timeouts, TLS files,\n"
"server_reset_query, ...) is listed in README.md under \"Configuration\".\n"
"\n"
"Client authentication: when the upstream URL has no password and no auth file\n"
"is given, clients on a loopback listener are trusted; pgmedic refuses to listen\n"
"on any other address without client authentication.  When the URL has a\n"
"password and no auth file, clients log in with the URL's user and password.\n",
	       prog, prog, prog, prog);
}

bool db_password_for(const struct db_entry *db, const char *user)
{
	if (!db->password)
		return false;
	if (db->user)
		return strcmp(db->user, user) == 0;
	return !db->cred_user || strcmp(db->cred_user, user) == 0;
}
