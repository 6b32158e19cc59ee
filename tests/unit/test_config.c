/* test_config.c - config: upstream URLs, [databases] lines, ini files (pgmedic
 * and PgBouncer style), flags and their precedence, validation rules. */
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"

static char err[512];

/* ---------------------------------------------------------------- helpers */

static char *write_temp(const char *content)
{
	char tmpl[] = "/tmp/pgmedic-test-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	size_t n = strlen(content);
	assert_int_equal(write(fd, content, n), (ssize_t)n);
	close(fd);
	return strdup(tmpl);
}

static void remove_temp(char *path)
{
	unlink(path);
	free(path);
}

/* Captures stderr (with warnings on) until capture_stderr_end, which returns
 * what the logger wrote (malloc'd). */
static char *capture_stderr_begin(int *saved)
{
	char tmpl[] = "/tmp/pgmedic-log-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	fflush(stderr);
	log_set_level(LOG_WARNING);
	*saved = dup(2);
	dup2(fd, 2);
	close(fd);
	return strdup(tmpl);
}

static char *capture_stderr_end(int saved, char *path)
{
	fflush(stderr);
	log_set_level(LOG_ERROR);
	dup2(saved, 2);
	close(saved);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	remove_temp(path);
	return strdup(buf);
}

static int load_args(struct config *c, char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	return config_load(c, argc, argv, err, sizeof(err));
}

#define assert_err_contains(s) do { \
	if (!strstr(err, (s))) fail_msg("error '%s' lacks '%s'", err, (s)); \
} while (0)

/* ---------------------------------------------------------------- URLs */

static const struct db_entry *star(const struct config *c)
{
	const struct db_entry *e = config_find_db(c, "anything");
	assert_non_null(e);
	assert_string_equal(e->name, "*");
	return e;
}

static void test_url_full(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	assert_int_equal(config_apply_upstream_url(&c,
		"postgresql://app:s3cret@db.example.com:5433/appdb?sslmode=require",
		err, sizeof(err)), 0);
	const struct db_entry *e = star(&c);
	assert_string_equal(e->host, "db.example.com");
	assert_int_equal(e->port, 5433);
	assert_null(e->user); /* not forced: clients keep their own user upstream */
	assert_string_equal(e->cred_user, "app");
	assert_string_equal(e->password, "s3cret");
	assert_true(db_password_for(e, "app"));
	assert_false(db_password_for(e, "other"));
	assert_null(e->dbname); /* client's database name passes through */
	assert_int_equal(e->pool_size, -1);
	assert_int_equal(e->pool_mode, -1);
	assert_string_equal(c.upstream_dbname, "appdb");
	assert_string_equal(c.upstream_url,
			    "postgresql://app:s3cret@db.example.com:5433/appdb?sslmode=require");
	assert_int_equal(c.server_tls_sslmode, SSLMODE_REQUIRE);
	config_free(&c);
}

static void test_url_minimal(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	assert_int_equal(config_apply_upstream_url(&c, "postgres://localhost", err, sizeof(err)), 0);
	const struct db_entry *e = star(&c);
	assert_string_equal(e->host, "localhost");
	assert_int_equal(e->port, 0);
	assert_null(e->user);
	assert_null(e->cred_user);
	assert_null(e->password);
	assert_null(c.upstream_dbname);
	assert_int_equal(c.server_tls_sslmode, SSLMODE_PREFER); /* untouched */

	/* empty authority: defaults everywhere */
	assert_int_equal(config_apply_upstream_url(&c, "postgresql:///mydb", err, sizeof(err)), 0);
	e = star(&c);
	assert_null(e->host);
	assert_string_equal(c.upstream_dbname, "mydb");
	assert_int_equal(config_apply_upstream_url(&c, "postgresql://", err, sizeof(err)), 0);
	assert_null(star(&c)->host);
	assert_null(c.upstream_dbname);
	/* empty password is no password */
	assert_int_equal(config_apply_upstream_url(&c, "POSTGRESQL://u:@h", err, sizeof(err)), 0);
	assert_string_equal(star(&c)->cred_user, "u");
	assert_null(star(&c)->password);
	assert_int_equal(c.ndbs, 1); /* replaced, never duplicated */
	config_free(&c);
}

static void test_url_percent_encoding(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	assert_int_equal(config_apply_upstream_url(&c,
		"postgresql://a%40b:p%3Ass%2Fw%25rd%20x@h/my%20db", err, sizeof(err)), 0);
	assert_string_equal(star(&c)->cred_user, "a@b");
	assert_string_equal(star(&c)->password, "p:ss/w%rd x");
	assert_string_equal(c.upstream_dbname, "my db");
	/* an unencoded '@' in the password: the last '@' ends the user info */
	assert_int_equal(config_apply_upstream_url(&c, "postgresql://u:p@ss@h:5/d", err,
						   sizeof(err)), 0);
	assert_string_equal(star(&c)->password, "p@ss");
	assert_string_equal(star(&c)->host, "h");
	assert_int_equal(star(&c)->port, 5);
	config_free(&c);
}

static void test_url_ipv6_and_socket(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	assert_int_equal(config_apply_upstream_url(&c, "postgresql://u@[::1]:6000/db", err,
						   sizeof(err)), 0);
	assert_string_equal(star(&c)->host, "::1");
	assert_int_equal(star(&c)->port, 6000);
	assert_int_equal(config_apply_upstream_url(&c, "postgresql://[fe80::1%25eth0]/db", err,
						   sizeof(err)), 0);
	assert_string_equal(star(&c)->host, "fe80::1%eth0");
	assert_int_equal(star(&c)->port, 0);
	assert_int_equal(config_apply_upstream_url(&c, "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
						   err, sizeof(err)), 0);
	assert_string_equal(star(&c)->host, "/var/run/postgresql");
	/* libpq style: socket dir and port as query parameters */
	assert_int_equal(config_apply_upstream_url(&c,
		"postgresql:///db?host=/tmp/pg%20sock&port=5444&user=me&password=pw&dbname=other",
		err, sizeof(err)), 0);
	assert_string_equal(star(&c)->host, "/tmp/pg sock");
	assert_int_equal(star(&c)->port, 5444);
	assert_string_equal(star(&c)->cred_user, "me");
	assert_string_equal(star(&c)->password, "pw");
	assert_string_equal(c.upstream_dbname, "other");
	config_free(&c);
}

static void test_url_tls_params(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	assert_int_equal(config_apply_upstream_url(&c,
		"postgresql://h/db?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem"
		"&application_name=x&connect_timeout=3", err, sizeof(err)), 0);
	assert_int_equal(c.server_tls_sslmode, SSLMODE_VERIFY_FULL);
	assert_string_equal(c.server_tls_ca_file, "/ca.pem");
	assert_string_equal(c.server_tls_cert_file, "/c.pem");
	assert_string_equal(c.server_tls_key_file, "/k.pem");
	config_free(&c);
}

static void test_url_garbage(void **state)
{
	(void)state;
	static const struct { const char *url, *msg; } bad[] = {
		{"", "expected a URL"},
		{"mysql://h/db", "expected a URL"},
		{"host=localhost port=5432", "expected a URL"},
		{"postgresql//h", "expected a URL"},
		{"postgresql://h:99999/db", "invalid port"},
		{"postgresql://h:/db", "invalid port"},
		{"postgresql://h:abc/db", "invalid port"},
		{"postgresql://::1/db", "brackets"},
		{"postgresql://[::1/db", "[IPv6-address]"},
		{"postgresql://[]/db", "[IPv6-address]"},
		{"postgresql://[::1]x/db", "after ']'"},
		{"postgresql://h/db?sslmode=bogus", "unknown sslmode 'bogus'"},
		{"postgresql://h/db?nosuch=1", "unknown parameter 'nosuch'"},
		{"postgresql://h/db?sslmode", "has no '=value'"},
		{"postgresql://u:p%zz@h/db", "bad percent-encoding in the password"},
		{"postgresql://u:p%2@h/db", "bad percent-encoding in the password"},
		{"postgresql://u:p%00@h/db", "%00"},
		{"postgresql://h/db%", "bad percent-encoding in the database name"},
		{"postgresql://h1,h2/db", "several hosts"},
		{"postgresql://h/db#frag", "'#'"},
		{"postgresql://h/d b", "space"},
		{"postgresql://h\n/db", "control"},
		{"postgresql://%40abstract/db", "abstract"},
		{"postgresql://ho$t/db", "invalid host"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config c;
		config_init(&c);
		err[0] = '\0';
		if (config_apply_upstream_url(&c, bad[i].url, err, sizeof(err)) == 0)
			fail_msg("accepted bad URL '%s'", bad[i].url);
		if (!strstr(err, bad[i].msg))
			fail_msg("URL '%s': error '%s' lacks '%s'", bad[i].url, err, bad[i].msg);
		assert_int_equal(c.ndbs, 0);
		assert_null(c.upstream_url);
		config_free(&c);
	}
}

static void test_url_errors_hide_password(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	/* an unencoded '/' in the password splits the URL in the wrong place */
	assert_int_equal(config_apply_upstream_url(&c, "postgresql://u:hunter/2@h/db", err,
						   sizeof(err)), -1);
	assert_null(strstr(err, "hunter"));
	assert_err_contains("percent-encoded");
	assert_int_equal(config_apply_upstream_url(&c, "https://u:hunter2@h/db", err,
						   sizeof(err)), -1);
	assert_null(strstr(err, "hunter2"));
	config_free(&c);
}

/* ---------------------------------------------------------------- [databases] */

static void test_db_lines(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	assert_int_equal(config_add_database(&c, "app",
		"host=db1 port=5433 dbname=app_prod user=svc password='it''s a s3cret; x' "
		"pool_size=5 pool_mode=session", err, sizeof(err)), 0);
	const struct db_entry *e = config_find_db(&c, "app");
	assert_non_null(e);
	assert_string_equal(e->host, "db1");
	assert_int_equal(e->port, 5433);
	assert_string_equal(e->dbname, "app_prod");
	assert_string_equal(e->user, "svc");
	assert_string_equal(e->password, "it's a s3cret; x");
	assert_true(db_password_for(e, "svc"));
	assert_false(db_password_for(e, "app"));
	assert_int_equal(e->pool_size, 5);
	assert_int_equal(e->pool_mode, POOL_SESSION);

	/* spaces around '=', tabs, a quoted value with only a quote */
	assert_int_equal(config_add_database(&c, "b", "  host = /var/run/postgresql\tpassword=''''",
					     err, sizeof(err)), 0);
	e = config_find_db(&c, "b");
	assert_string_equal(e->host, "/var/run/postgresql");
	assert_string_equal(e->password, "'");
	assert_int_equal(e->port, 0);
	assert_int_equal(e->pool_size, -1);
	assert_int_equal(e->pool_mode, -1);

	/* PgBouncer's empty entry: every default */
	assert_int_equal(config_add_database(&c, "foodb", "", err, sizeof(err)), 0);
	assert_null(config_find_db(&c, "foodb")->host);

	/* SQL-style quoted names */
	assert_int_equal(config_add_database(&c, "\"my db\"", "host=x", err, sizeof(err)), 0);
	assert_non_null(config_find_db(&c, "my db"));
	assert_int_equal(config_add_database(&c, "\"a\"\"b\"", "host=x", err, sizeof(err)), 0);
	assert_non_null(config_find_db(&c, "a\"b"));

	/* PgBouncer parameters pgmedic ignores are accepted */
	assert_int_equal(config_add_database(&c, "enc", "host=x client_encoding=UNICODE datestyle=ISO",
					     err, sizeof(err)), 0);

	/* no "*" yet: unknown names find nothing */
	assert_null(config_find_db(&c, "nope"));
	assert_int_equal(config_add_database(&c, "*", "host=fallback", err, sizeof(err)), 0);
	assert_string_equal(config_find_db(&c, "nope")->host, "fallback");
	assert_string_equal(config_find_db(&c, "app")->host, "db1");
	assert_string_equal(config_find_db(&c, NULL)->name, "*");

	/* the URL replaces a [databases] "*" */
	size_t n = c.ndbs;
	assert_int_equal(config_apply_upstream_url(&c, "postgresql://fromurl/x", err, sizeof(err)), 0);
	assert_int_equal(c.ndbs, n);
	assert_string_equal(config_find_db(&c, "nope")->host, "fromurl");
	config_free(&c);
}

static void test_db_line_errors(void **state)
{
	(void)state;
	static const struct { const char *name, *conn, *msg; } bad[] = {
		{"a", "host=x nosuch=1", "unknown connection parameter 'nosuch'"},
		{"a", "host='x", "unterminated quote"},
		{"a", "password='x'y", "after the quoted value"},
		{"a", "host=", "empty value for 'host'"},
		{"a", "password=''", "empty value for 'password'"},
		{"a", "host", "expected key=value"},
		{"a", "=x", "expected key=value"},
		{"a", "pool_mode=statement", "statement pooling is not supported"},
		{"a", "pool_mode=weird", "expected session or transaction"},
		{"a", "pool_size=abc", "database 'a': pool_size: expected a positive integer, got 'abc'"},
		{"a", "pool_size=0", "expected a positive integer"},
		{"a", "port=70000", "expected a port number"},
		{"a", "host=h1,h2", "several hosts"},
		{"a", "host=@abstract", "abstract"},
		{"\"unterminated", "host=x", "missing closing"},
		{"\"\"", "host=x", "empty name"},
		{"\"a\"b", "host=x", "after the closing quote"},
		{"my db", "host=x", "double quotes"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config c;
		config_init(&c);
		err[0] = '\0';
		if (config_add_database(&c, bad[i].name, bad[i].conn, err, sizeof(err)) == 0)
			fail_msg("accepted %s = %s", bad[i].name, bad[i].conn);
		if (!strstr(err, bad[i].msg))
			fail_msg("%s = %s: error '%s' lacks '%s'", bad[i].name, bad[i].conn, err,
				 bad[i].msg);
		assert_int_equal(c.ndbs, 0);
		config_free(&c);
	}
	struct config c;
	config_init(&c);
	assert_int_equal(config_add_database(&c, "a", "host=x", err, sizeof(err)), 0);
	assert_int_equal(config_add_database(&c, "a", "host=y", err, sizeof(err)), -1);
	assert_err_contains("defined twice");
	config_free(&c);
}

/* ---------------------------------------------------------------- ini files */

static const char pgbouncer_ini[] =
	";; a PgBouncer file, as found in the wild\r\n"
	"[databases]\n"
	"; foodb over the default host\n"
	"foodb =\n"
	"bardb = host=localhost dbname=bazdb\n"
	"  forcedb = host=127.0.0.1 port=300 user=baz password='foo ;bar' client_encoding=UNICODE\n"
	"\"odd name\" = host=/var/run/postgresql pool_size=3\n"
	"* = host=fallback.internal port=5433\n"
	"\n"
	"[pgbouncer]\n"
	"listen_addr = *\n"
	"listen_port = 6543\r\n"
	"auth_type = md5\n"
	"auth_file = /etc/pgbouncer/userlist.txt\n"
	"logfile = /var/log/pgbouncer.log\n"
	"pidfile = /var/run/pgbouncer.pid\n"
	"admin_users = postgres\n"
	"pool_mode = session\n"
	"default_pool_size = 25\n"
	"min_pool_size = 2\n"
	"max_client_conn = 500\n"
	"server_reset_query = DISCARD ALL\n"
	"server_check_query = <empty>\n"
	"server_lifetime = 1800\n"
	"server_idle_timeout = 90.5\n"
	"query_wait_timeout = 250ms\n"
	"client_login_timeout = 2min\n"
	"# a comment\n"
	"ignore_startup_parameters = extra_float_digits\n"
	"[users]\n"
	"someone = pool_mode=transaction\n";

static void test_ini_pgbouncer_file(void **state)
{
	(void)state;
	char *path = write_temp(pgbouncer_ini);
	struct config c;
	config_init(&c);
	int saved;
	char *logpath = capture_stderr_begin(&saved);
	int r = config_load_file(&c, path, err, sizeof(err));
	char *log = capture_stderr_end(saved, logpath);
	if (r != 0)
		fail_msg("load failed: %s", err);

	assert_string_equal(c.listen_host, "0.0.0.0");
	assert_int_equal(c.listen_port, 6543);
	assert_int_equal(c.auth_type, AUTH_MD5);
	assert_true(c.auth_type_set);
	assert_string_equal(c.auth_file, "/etc/pgbouncer/userlist.txt");
	assert_int_equal(c.pool_mode, POOL_SESSION);
	assert_int_equal(c.pool_size, 25);
	assert_int_equal(c.min_pool_size, 2);
	assert_int_equal(c.max_client_conn, 500);
	assert_string_equal(c.server_reset_query, "DISCARD ALL");
	assert_string_equal(c.server_check_query, "");
	assert_true(c.server_lifetime == 1800);
	assert_true(c.server_idle_timeout == 90.5);
	assert_true(c.query_wait_timeout == 0.25);
	assert_true(c.client_login_timeout == 120);
	assert_true(c.server_connect_timeout == 15); /* default kept */

	assert_int_equal(c.ndbs, 5);
	assert_null(config_find_db(&c, "foodb")->host);
	assert_string_equal(config_find_db(&c, "bardb")->dbname, "bazdb");
	const struct db_entry *e = config_find_db(&c, "forcedb");
	assert_string_equal(e->name, "forcedb"); /* indented line is its own entry */
	assert_int_equal(e->port, 300);
	assert_string_equal(e->password, "foo ;bar"); /* no inline comments, as PgBouncer */
	assert_int_equal(config_find_db(&c, "odd name")->pool_size, 3);
	assert_string_equal(config_find_db(&c, "other")->host, "fallback.internal");

	/* unimplemented PgBouncer settings warn, naming file and line */
	char want[600];
	snprintf(want, sizeof(want), "%s:15: ignoring PgBouncer setting 'logfile'", path);
	if (!strstr(log, want))
		fail_msg("log lacks '%s':\n%s", want, log);
	assert_non_null(strstr(log, "'pidfile'"));
	assert_null(strstr(log, "'admin_users'")); /* implemented: the admin console */
	assert_string_equal(c.admin_users, "postgres");
	assert_non_null(strstr(log, "'ignore_startup_parameters'"));
	assert_non_null(strstr(log, "client_encoding"));
	assert_non_null(strstr(log, "[users]"));
	free(log);
	config_free(&c);
	remove_temp(path);
}

static void test_ini_pgmedic_file(void **state)
{
	(void)state;
	char *path = write_temp(
		"\xEF\xBB\xBF[pgmedic]\n"
		"upstream = postgresql://app:pw@db:5432/app\n"
		"listen = [::1]:7432\n"
		"http = 127.0.0.1:9187\n"
		"pool_size = 8\n"
		"auth_type = scram-sha-256\n"
		"client_tls_key_file = /k.pem\n"
		"client_tls_cert_file = /c.pem\n"
		"server_tls_sslmode = disable\n"
		"log_level = warning\n"
		"shutdown_timeout = 1h\n");
	struct config c;
	config_init(&c);
	if (config_load_file(&c, path, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.upstream_url, "postgresql://app:pw@db:5432/app");
	assert_int_equal(c.ndbs, 0); /* applied by config_load, not by the file reader */
	assert_string_equal(c.listen_host, "::1");
	assert_int_equal(c.listen_port, 7432);
	assert_string_equal(c.http_host, "127.0.0.1");
	assert_int_equal(c.http_port, 9187);
	assert_int_equal(c.pool_size, 8);
	assert_int_equal(c.server_tls_sslmode, SSLMODE_DISABLE);
	assert_int_equal(c.log_level, LOG_WARNING);
	assert_true(c.shutdown_timeout == 3600);
	assert_int_equal(config_apply_upstream_url(&c, c.upstream_url, err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_int_equal(c.client_tls_sslmode, SSLMODE_PREFER); /* cert configured */
	assert_int_equal(c.auth_type, AUTH_SCRAM);
	config_free(&c);
	remove_temp(path);
}

static void expect_file_error(const char *content, const char *msg, int line)
{
	char *path = write_temp(content);
	struct config c;
	config_init(&c);
	err[0] = '\0';
	int saved;
	char *logpath = capture_stderr_begin(&saved);
	int r = config_load_file(&c, path, err, sizeof(err));
	free(capture_stderr_end(saved, logpath));
	if (r == 0)
		fail_msg("accepted:\n%s", content);
	char want[600];
	snprintf(want, sizeof(want), "%s:%d: ", path, line);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("error '%s' does not start with '%s'", err, want);
	if (!strstr(err, msg))
		fail_msg("error '%s' lacks '%s'", err, msg);
	config_free(&c);
	remove_temp(path);
}

static void test_ini_errors(void **state)
{
	(void)state;
	expect_file_error("[pgmedic]\npool_size = 1\npool_sise = 2\n", "unknown setting 'pool_sise'", 3);
	expect_file_error("[pgmedic]\npool_size = abc\n",
			  "pool_size: expected a positive integer, got 'abc'", 2);
	expect_file_error("[pgmedic]\npool_size = 20 ; was 10\n", "got '20 ; was 10'", 2);
	expect_file_error("[pgmedic]\nlisten_port = 0\n", "expected a port number", 2);
	expect_file_error("[pgmedic]\nauth_type = plain\n", "clear text", 2);
	expect_file_error("[pgbouncer]\nauth_type = hba\n", "not supported", 2);
	expect_file_error("[pgbouncer]\npool_mode = statement\n", "statement pooling", 2);
	expect_file_error("[pgmedic]\nserver_lifetime = soon\n", "expected a duration", 2);
	expect_file_error("[pgmedic]\nlog_level = loud\n", "expected error, warning", 2);
	expect_file_error("[pgmedic]\nupstream = mysql://x\n", "expected a URL", 2);
	expect_file_error("[pgmedic]\nlisten_addr = 1.2.3.4,5.6.7.8\n", "one address", 2);
	expect_file_error("[nosuch]\nx = 1\n", "unknown section [nosuch]", 2);
	expect_file_error("x = 1\n[pgmedic]\n", "before any section", 1);
	expect_file_error("[pgmedic]\n\nthis is not a setting\n", "syntax error", 3);
	expect_file_error("[pgmedic\n", "syntax error", 1);
	expect_file_error("[databases]\na = host=x\nb = host='y\n", "unterminated quote", 3);
	expect_file_error("[databases]\na = host=x\na = host=y\n", "defined twice", 3);
	expect_file_error("%include other.ini\n", "%include is not supported", 1);
	expect_file_error("[pgmedic]\nserver_reset_query = a\x1f\n", "control character", 2);
	/* the first error wins, whoever found it */
	expect_file_error("[pgmedic]\nbad line\npool_sise = 1\n", "syntax error", 2);
	expect_file_error("[pgmedic]\npool_sise = 1\nbad line\n", "unknown setting", 2);

	/* longer than inih's buffer: refused, not silently cut */
	char big[1200];
	snprintf(big, sizeof(big), "[databases]\nx = host=h password=%0900d\ny = host=z\n", 0);
	expect_file_error(big, "line is longer than", 2);

	struct config c;
	config_init(&c);
	assert_int_equal(config_load_file(&c, "/nonexistent/pgmedic.ini", err, sizeof(err)), -1);
	assert_err_contains("/nonexistent/pgmedic.ini");
	assert_err_contains("No such file");
	config_free(&c);
}

/* ---------------------------------------------------------------- flags */

static void test_args_basic(void **state)
{
	(void)state;
	char *argv[] = {"pgmedic", "--listen", "0.0.0.0:7000", "run", "--pool-mode", "session",
			"--pool-size=9", "--min-pool-size", "1", "--max-client-conn", "50",
			"--http", "9100", "--auth-type", "md5", "--auth-file", "/u.txt",
			"--log-level", "warning", "--set", "server_lifetime = 5min",
			"--upstream", "postgresql://h/db", "--config", "/x.ini", NULL};
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;
	char *orig[sizeof(argv) / sizeof(argv[0])];
	memcpy(orig, argv, sizeof(argv));
	struct config c;
	config_init(&c);
	if (config_parse_args(&c, argc, argv, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_memory_equal(orig, argv, sizeof(argv)); /* caller's argv not permuted */
	assert_string_equal(c.listen_host, "0.0.0.0");
	assert_int_equal(c.listen_port, 7000);
	assert_int_equal(c.pool_mode, POOL_SESSION);
	assert_int_equal(c.pool_size, 9);
	assert_int_equal(c.min_pool_size, 1);
	assert_int_equal(c.max_client_conn, 50);
	assert_string_equal(c.http_host, "127.0.0.1");
	assert_int_equal(c.http_port, 9100);
	assert_int_equal(c.auth_type, AUTH_MD5);
	assert_true(c.auth_type_set);
	assert_string_equal(c.auth_file, "/u.txt");
	assert_int_equal(c.log_level, LOG_WARNING);
	assert_true(c.server_lifetime == 300);
	assert_string_equal(c.upstream_url, "postgresql://h/db");
	assert_string_equal(c.config_file, "/x.ini");
	assert_false(c.show_help);
	assert_int_equal(c.argc, argc);
	assert_string_equal(c.argv[3], "run");
	assert_null(c.argv[argc]);
	assert_int_equal(c.ncli, 11); /* every value flag but --config */
	assert_string_equal(c.cli[0].key, "listen");
	assert_string_equal(c.cli[0].label, "--listen");
	assert_string_equal(c.cli[9].label, "--set server_lifetime");
	assert_string_equal(c.cli[9].value, "5min");
	config_free(&c);
}

static void test_args_listen_forms(void **state)
{
	(void)state;
	static const struct { const char *arg, *host; int port; } ok[] = {
		{"[::1]:7001", "::1", 7001},
		{":7002", "127.0.0.1", 7002},
		{"7003", "127.0.0.1", 7003},
		{"localhost", "localhost", 6432},
		{"*:7004", "0.0.0.0", 7004},
		{"10.1.2.3:7005", "10.1.2.3", 7005},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *argv[] = {"pgmedic", "--listen", (char *)ok[i].arg, NULL};
		struct config c;
		config_init(&c);
		if (config_parse_args(&c, 3, argv, err, sizeof(err)) != 0)
			fail_msg("--listen %s: %s", ok[i].arg, err);
		assert_string_equal(c.listen_host, ok[i].host);
		assert_int_equal(c.listen_port, ok[i].port);
		config_free(&c);
	}
}

static void expect_args_error(char **argv, const char *msg)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	struct config c;
	config_init(&c);
	err[0] = '\0';
	if (config_parse_args(&c, argc, argv, err, sizeof(err)) == 0)
		fail_msg("accepted %s %s", argv[1], argv[2] ? argv[2] : "");
	if (!strstr(err, msg))
		fail_msg("error '%s' lacks '%s'", err, msg);
	config_free(&c);
}

static void test_args_errors(void **state)
{
	(void)state;
	expect_args_error((char *[]){"pgmedic", "--pool-size", "abc", NULL},
			  "--pool-size: expected a positive integer, got 'abc'");
	expect_args_error((char *[]){"pgmedic", "--pool-size", "0", NULL}, "positive integer");
	expect_args_error((char *[]){"pgmedic", "--pool-size", "99999999999", NULL}, "too large");
	expect_args_error((char *[]){"pgmedic", "--min-pool-size", "-1", NULL},
			  "--min-pool-size: expected a non-negative integer, got '-1'");
	expect_args_error((char *[]){"pgmedic", "--listen", "[::1", NULL}, "--listen: expected [IPv6");
	expect_args_error((char *[]){"pgmedic", "--listen", "::1", NULL}, "brackets");
	expect_args_error((char *[]){"pgmedic", "--listen", "h:0", NULL}, "port number");
	expect_args_error((char *[]){"pgmedic", "--listen", "", NULL}, "empty");
	expect_args_error((char *[]){"pgmedic", "--http", "h:x", NULL}, "--http: expected a port");
	expect_args_error((char *[]){"pgmedic", "--pool-mode", "statement", NULL}, "statement pooling");
	expect_args_error((char *[]){"pgmedic", "--auth-type", "password", NULL},
			  "--auth-type: expected trust, md5 or scram-sha-256, got 'password'");
	expect_args_error((char *[]){"pgmedic", "--log-level", "chatty", NULL}, "--log-level");
	expect_args_error((char *[]){"pgmedic", "--upstream", "localhost:5432", NULL},
			  "expected a URL");
	expect_args_error((char *[]){"pgmedic", "--bogus", NULL}, "unrecognized option '--bogus'");
	expect_args_error((char *[]){"pgmedic", "-x", NULL}, "unknown option '-x'");
	expect_args_error((char *[]){"pgmedic", "--help=yes", NULL}, "--help=yes");
	expect_args_error((char *[]){"pgmedic", "--pool-size", NULL}, "--pool-size: missing value");
	expect_args_error((char *[]){"pgmedic", "--pool", "3", NULL}, "'--pool'"); /* ambiguous */
	expect_args_error((char *[]){"pgmedic", "frobnicate", NULL},
			  "unexpected argument 'frobnicate'");
	expect_args_error((char *[]){"pgmedic", "pgbouncer.ini", NULL}, "--config pgbouncer.ini");
	expect_args_error((char *[]){"pgmedic", "--set", "nokey", NULL}, "--set: expected key=value");
	expect_args_error((char *[]){"pgmedic", "--set", "=v", NULL}, "--set: expected key=value");
	expect_args_error((char *[]){"pgmedic", "--set", "pool_sise=3", NULL},
			  "unknown setting 'pool_sise'");
	expect_args_error((char *[]){"pgmedic", "--set", "pool_size=x", NULL},
			  "--set pool_size: expected a positive integer");
	expect_args_error((char *[]){"pgmedic", "--config", "", NULL}, "--config");
}

static void test_args_flags_only(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	char *v[] = {"pgmedic", "-v", NULL};
	assert_int_equal(config_parse_args(&c, 2, v, err, sizeof(err)), 0);
	assert_int_equal(c.log_level, LOG_DEBUG);
	config_free(&c);

	config_init(&c);
	char *h[] = {"pgmedic", "-h", "-V", NULL};
	assert_int_equal(config_parse_args(&c, 3, h, err, sizeof(err)), 0);
	assert_true(c.show_help);
	assert_true(c.show_version);
	config_free(&c);

	/* --set of a PgBouncer-only key warns and is not recorded */
	config_init(&c);
	char *s[] = {"pgmedic", "--set", "logfile=/x", NULL};
	int saved;
	char *logpath = capture_stderr_begin(&saved);
	assert_int_equal(config_parse_args(&c, 3, s, err, sizeof(err)), 0);
	char *log = capture_stderr_end(saved, logpath);
	assert_non_null(strstr(log, "ignoring PgBouncer setting 'logfile'"));
	free(log);
	assert_int_equal(c.ncli, 0);
	config_free(&c);

	/* --help needs nothing else, not even an upstream */
	char *help[] = {"pgmedic", "--help", NULL};
	assert_int_equal(load_args(&c, help), 0);
	assert_true(c.show_help);
	config_free(&c);

	/* argc 0 (execve without argv[0]) */
	config_init(&c);
	assert_int_equal(config_parse_args(&c, 0, NULL, err, sizeof(err)), 0);
	config_free(&c);
}

static void test_flags_override_file(void **state)
{
	(void)state;
	char *path = write_temp(
		"[pgmedic]\n"
		"listen_addr = 127.0.0.2\n"
		"listen_port = 7000\n"
		"pool_size = 30\n"
		"min_pool_size = 4\n"
		"server_lifetime = 100\n"
		"upstream = postgresql://fileuser@filehost/filedb\n"
		"[databases]\n"
		"* = host=ignored\n"
		"special = host=special-host\n");
	char *argv[] = {"pgmedic", "--pool-size", "7", "--listen", ":7100", "--config", path,
			"--set", "min_pool_size=1", NULL};
	struct config c;
	if (load_args(&c, argv) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.pool_size, 7);          /* flag beats file */
	assert_int_equal(c.min_pool_size, 1);      /* --set beats file */
	assert_int_equal(c.listen_port, 7100);     /* flag gave only a port... */
	assert_string_equal(c.listen_host, "127.0.0.2"); /* ...so the file's host stays */
	assert_true(c.server_lifetime == 100);     /* file beats default */
	assert_int_equal(c.ndbs, 2);
	assert_string_equal(config_find_db(&c, "x")->host, "filehost"); /* URL replaced "*" */
	assert_string_equal(config_find_db(&c, "special")->host, "special-host");
	assert_string_equal(c.upstream_dbname, "filedb");
	assert_int_equal(c.auth_type, AUTH_TRUST); /* loopback, no password anywhere */

	/* SIGHUP: a fresh struct from the saved argv sees the edited file */
	FILE *f = fopen(path, "a");
	assert_non_null(f);
	fputs("another = host=h2\n", f);
	fclose(f);
	struct config fresh;
	if (config_reload(&c, &fresh, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(fresh.ndbs, 3);
	assert_int_equal(fresh.pool_size, 7);
	config_free(&fresh);
	config_free(&c);

	/* the flag's upstream beats the file's */
	char *argv2[] = {"pgmedic", "--config", path, "--upstream", "postgresql://u:pw@flaghost/x",
			 NULL};
	if (load_args(&c, argv2) != 0)
		fail_msg("%s", err);
	assert_string_equal(config_find_db(&c, "x")->host, "flaghost");
	assert_int_equal(c.auth_type, AUTH_SCRAM); /* a password is known */
	config_free(&c);

	/* errors from the file still name the file and line */
	char *argv3[] = {"pgmedic", "--config", "/nonexistent.ini", NULL};
	assert_int_equal(load_args(&c, argv3), -1);
	assert_err_contains("/nonexistent.ini");
	config_free(&c);
	remove_temp(path);
}

/* ---------------------------------------------------------------- validation */

static int validate_with(const char *upstream, const char *listen, void (*tweak)(struct config *))
{
	struct config c;
	config_init(&c);
	int r = -1;
	if (upstream && config_apply_upstream_url(&c, upstream, err, sizeof(err)) < 0)
		goto out;
	if (listen) {
		free(c.listen_host);
		c.listen_host = strdup(listen);
	}
	if (tweak)
		tweak(&c);
	r = config_validate(&c, err, sizeof(err));
out:
	config_free(&c);
	return r;
}

static void set_trust(struct config *c) { c->auth_type = AUTH_TRUST; c->auth_type_set = true; }
static void set_scram(struct config *c) { c->auth_type = AUTH_SCRAM; c->auth_type_set = true; }
static void set_authfile(struct config *c) { c->auth_file = strdup("/u.txt"); }
static void set_trust_authfile(struct config *c) { set_trust(c); set_authfile(c); }
static void set_min_pool(struct config *c) { c->pool_size = 3; c->min_pool_size = 4; }
static void set_client_require(struct config *c)
{
	c->client_tls_sslmode = SSLMODE_REQUIRE;
	c->client_tls_sslmode_set = true;
}
static void set_client_keyonly(struct config *c) { c->client_tls_key_file = strdup("/k"); }
static void set_client_verify(struct config *c)
{
	c->client_tls_key_file = strdup("/k");
	c->client_tls_cert_file = strdup("/c");
	c->client_tls_sslmode = SSLMODE_VERIFY_FULL;
	c->client_tls_sslmode_set = true;
}
static void set_http_noport(struct config *c) { c->http_host = strdup("127.0.0.1"); }
static void set_http_clash(struct config *c)
{
	c->http_host = strdup("127.0.0.1");
	c->http_port = 6432;
}

static void test_validate_auth_rules(void **state)
{
	(void)state;
	/* local trusting server, loopback listener: clients trusted */
	struct config c;
	config_init(&c);
	assert_int_equal(config_apply_upstream_url(&c, "postgresql://postgres@localhost/app", err,
						   sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_int_equal(c.auth_type, AUTH_TRUST);
	assert_false(c.auth_type_set);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0); /* idempotent */
	config_free(&c);

	assert_int_equal(validate_with("postgresql://localhost/app", "::1", NULL), 0);
	assert_int_equal(validate_with("postgresql://localhost/app", "localhost", NULL), 0);

	/* same, but on every interface: refused */
	assert_int_equal(validate_with("postgresql://localhost/app", "0.0.0.0", NULL), -1);
	assert_err_contains("refusing to listen on 0.0.0.0 without client authentication");
	assert_int_equal(validate_with("postgresql://localhost/app", "10.0.0.5", set_trust_authfile), -1);
	assert_err_contains("auth_type is trust");
	assert_int_equal(validate_with("postgresql://localhost/app", "::", set_trust), -1);
	assert_err_contains("refusing to listen on ::");

	/* a password in the URL: clients authenticate with it, any address */
	assert_int_equal(validate_with("postgresql://app:pw@db/app", "0.0.0.0", NULL), 0);
	/* an auth file: same */
	assert_int_equal(validate_with("postgresql://db/app", "0.0.0.0", set_authfile), 0);
	/* explicit trust on loopback is fine */
	assert_int_equal(validate_with("postgresql://app:pw@db/app", "127.0.0.1", set_trust), 0);
	/* explicit scram with nothing to check against */
	assert_int_equal(validate_with("postgresql://db/app", NULL, set_scram), -1);
	assert_err_contains("needs passwords");
}

static void test_validate_other_rules(void **state)
{
	(void)state;
	assert_int_equal(validate_with(NULL, NULL, NULL), -1);
	assert_err_contains("no database to connect to");
	assert_int_equal(validate_with("postgresql://db/x", NULL, set_min_pool), -1);
	assert_err_contains("min_pool_size (4)");
	assert_int_equal(validate_with("postgresql://db/x", NULL, set_client_require), -1);
	assert_err_contains("client_tls_sslmode = require needs client_tls_key_file");
	assert_int_equal(validate_with("postgresql://db/x", NULL, set_client_keyonly), -1);
	assert_err_contains("set together");
	assert_int_equal(validate_with("postgresql://db/x", NULL, set_client_verify), -1);
	assert_err_contains("needs client_tls_ca_file");
	assert_int_equal(validate_with("postgresql://db/x?sslmode=verify-ca", NULL, NULL), -1);
	assert_err_contains("server_tls_sslmode = verify-ca needs server_tls_ca_file");
	assert_int_equal(validate_with("postgresql://db/x?sslmode=verify-ca&sslrootcert=/ca", NULL,
				       NULL), 0);
	assert_int_equal(validate_with("postgresql://db/x?sslcert=/c", NULL, NULL), -1);
	assert_err_contains("set together");
	assert_int_equal(validate_with("postgresql://db/x", NULL, set_http_noport), -1);
	assert_err_contains("http_port is not");
	assert_int_equal(validate_with("postgresql://db/x", NULL, set_http_clash), -1);
	assert_err_contains("both use 127.0.0.1:6432");

	/* default client TLS mode: disable without a certificate */
	struct config c;
	char *argv[] = {"pgmedic", "--upstream", "postgresql://db/x", NULL};
	assert_int_equal(load_args(&c, argv), 0);
	assert_int_equal(c.client_tls_sslmode, SSLMODE_DISABLE);
	config_free(&c);
}

static void test_loopback(void **state)
{
	(void)state;
	static const char *yes[] = {"127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST",
				    "[::1]", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"};
	static const char *no[] = {"0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.com",
				   "localhost.example.com", "", "::2", "[::1", "126.255.255.255"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!host_is_loopback(yes[i]))
			fail_msg("%s should be loopback", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (host_is_loopback(no[i]))
			fail_msg("%s should not be loopback", no[i]);
	assert_false(host_is_loopback(NULL));
}

static void test_names(void **state)
{
	(void)state;
	for (int i = 0; i <= 1; i++)
		assert_int_equal(pool_mode_parse(pool_mode_name((enum pool_mode)i)), i);
	for (int i = 0; i <= 2; i++)
		assert_int_equal(auth_type_parse(auth_type_name((enum auth_type)i)), i);
	for (int i = 0; i <= 5; i++)
		assert_int_equal(sslmode_parse(sslmode_name((enum sslmode)i)), i);
	assert_string_equal(auth_type_name(AUTH_SCRAM), "scram-sha-256");
	assert_string_equal(sslmode_name(SSLMODE_VERIFY_FULL), "verify-full");
	assert_int_equal(pool_mode_parse("Transaction"), POOL_TRANSACTION);
	assert_int_equal(pool_mode_parse("statement"), -1);
	assert_int_equal(auth_type_parse("plain"), -1);
	assert_int_equal(sslmode_parse("verify_full"), -1);
	assert_int_equal(sslmode_parse(NULL), -1);
	assert_string_equal(sslmode_name((enum sslmode)42), "unknown");
}

/* workers: auto (the default) is one loop per usable CPU, at least 1 and at most 4;
 * usable CPUs are the affinity mask lowered to a cgroup v2 quota; a number is taken
 * as is; anything else is refused with what was expected. */
static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_workers(void **state)
{
	(void)state;
	assert_int_equal(config_auto_workers(0), 1);
	assert_int_equal(config_auto_workers(1), 1);
	assert_int_equal(config_auto_workers(3), 3);
	assert_int_equal(config_auto_workers(4), 4);
	assert_int_equal(config_auto_workers(64), CONFIG_AUTO_WORKERS_MAX);

	/* cpu.max as cgroup v2 writes it */
	char dir[] = "/tmp/pgmedic-cgroup-XXXXXX", file[64];
	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/cpu.max", dir);
	assert_int_equal(config_cgroup_quota_cpus(dir), 0); /* no file */
	const struct { const char *text; int cpus; } quotas[] = {
		{"max 100000\n", 0}, {"150000 100000\n", 2}, {"100000 100000\n", 1}, {"50000 100000\n", 1},
		{"400000 100000\n", 4}, {"garbage\n", 0}, {"100000 0\n", 0}, {"", 0},
	};
	for (size_t i = 0; i < sizeof(quotas) / sizeof(quotas[0]); i++) {
		write_file(file, quotas[i].text);
		if (config_cgroup_quota_cpus(dir) != quotas[i].cpus)
			fail_msg("cpu.max '%s': expected %d", quotas[i].text, quotas[i].cpus);
	}
	unlink(file);
	rmdir(dir);

	/* pinned to one CPU, auto is one loop; the mask is restored after */
	cpu_set_t saved, one;
	assert_int_equal(sched_getaffinity(0, sizeof(saved), &saved), 0);
	int first = 0;
	while (!CPU_ISSET(first, &saved))
		first++;
	CPU_ZERO(&one);
	CPU_SET(first, &one);
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	int pinned = config_usable_cpus();
	struct config c;
	config_init(&c);
	int pinned_workers = config_workers(&c);
	config_free(&c);
	assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
	assert_int_equal(pinned, 1);
	assert_int_equal(pinned_workers, 1);
	int usable = config_usable_cpus();
	assert_true(usable >= 1 && usable <= CPU_COUNT(&saved));

	config_init(&c);
	assert_int_equal(c.workers, 0);
	assert_int_equal(config_workers(&c), config_auto_workers(usable));
	config_free(&c);

	assert_int_equal(load_args(&c, (char *[]){"pgmedic", "--upstream", "postgresql://h/db", "--workers", "3", NULL}), 0);
	assert_int_equal(config_workers(&c), 3);
	config_free(&c);

	assert_int_equal(load_args(&c, (char *[]){"pgmedic", "--upstream", "postgresql://h/db", "--set", "workers=AUTO", NULL}), 0);
	assert_int_equal(c.workers, 0);
	config_free(&c);

	const char *bad[] = {"0", "65", "two", "-1", "", NULL};
	for (int i = 0; bad[i]; i++) {
		char arg[64];
		snprintf(arg, sizeof(arg), "workers=%s", bad[i]);
		assert_int_equal(load_args(&c, (char *[]){"pgmedic", "--set", arg, NULL}), -1);
		assert_err_contains("expected auto or a number of event loops from 1 to 64");
		config_free(&c);
	}
}

static void test_defaults_and_help(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	assert_string_equal(c.listen_host, "127.0.0.1");
	assert_int_equal(c.listen_port, 6432);
	assert_null(c.http_host);
	assert_int_equal(c.pool_mode, POOL_TRANSACTION);
	assert_int_equal(c.pool_size, 20);
	assert_int_equal(c.max_client_conn, 10000);
	assert_true(c.query_wait_timeout == 120 && c.server_lifetime == 3600 &&
		    c.server_idle_timeout == 600 && c.shutdown_timeout == 30);
	assert_string_equal(c.server_reset_query, "DISCARD ALL");
	assert_string_equal(c.server_check_query, "");
	assert_int_equal(c.auth_type, AUTH_SCRAM);
	assert_int_equal(c.server_tls_sslmode, SSLMODE_PREFER);
	assert_int_equal(c.log_level, LOG_INFO);
	assert_int_equal(c.workers, 0); /* auto */
	config_free(&c);
	config_free(&c); /* zeroed after the first: safe */

	FILE *saved = stdout;
	stdout = fopen("/dev/null", "w");
	assert_non_null(stdout);
	config_print_help("pgmedic");
	fclose(stdout);
	stdout = saved;
}

int main(void)
{
	log_set_level(LOG_ERROR); /* warnings are checked where they matter, by capture */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_full),
		cmocka_unit_test(test_url_minimal),
		cmocka_unit_test(test_url_percent_encoding),
		cmocka_unit_test(test_url_ipv6_and_socket),
		cmocka_unit_test(test_url_tls_params),
		cmocka_unit_test(test_url_garbage),
		cmocka_unit_test(test_url_errors_hide_password),
		cmocka_unit_test(test_db_lines),
		cmocka_unit_test(test_db_line_errors),
		cmocka_unit_test(test_ini_pgbouncer_file),
		cmocka_unit_test(test_ini_pgmedic_file),
		cmocka_unit_test(test_ini_errors),
		cmocka_unit_test(test_args_basic),
		cmocka_unit_test(test_args_listen_forms),
		cmocka_unit_test(test_args_errors),
		cmocka_unit_test(test_args_flags_only),
		cmocka_unit_test(test_flags_override_file),
		cmocka_unit_test(test_validate_auth_rules),
		cmocka_unit_test(test_validate_other_rules),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_defaults_and_help),
		cmocka_unit_test(test_workers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
