/* fuzz_userlist.c - libFuzzer target for the text parsers behind login and
 * routing: the PgBouncer auth file, the upstream URL, and a [databases] line
 * (the input split at its first '=' into name and connection string).
 * Besides crashes and sanitizer reports, it checks what the parsers promise:
 * a parsed user list is sorted, findable and classified; an accepted URL
 * yields exactly one "*" entry. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/userlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_userlist(const uint8_t *data, size_t size)
{
	char err[256];
	struct userlist ul;
	if (userlist_parse(&ul, (const char *)data, size, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < ul.n; i++) {
			const struct user_entry *e = &ul.users[i];
			if (!e->name[0] || !e->secret[0])
				abort();
			if (userlist_find(&ul, e->name) != e)
				abort();
			if (e->kind != secret_kind_of(e->secret))
				abort();
			if (i && strcmp(ul.users[i - 1].name, e->name) >= 0)
				abort();
		}
	} else if (ul.n || ul.users || !err[0]) {
		abort(); /* a failure leaves nothing behind and says why */
	}
	userlist_free(&ul);
}

static void check_config(const uint8_t *data, size_t size)
{
	char err[256];
	/* The URL and [databases] parsers take C strings: stop at a NUL. */
	char *s = strndup((const char *)data, size);
	if (!s)
		return;
	struct config c;
	config_init(&c);
	if (config_apply_upstream_url(&c, s, err, sizeof(err)) == 0) {
		if (c.ndbs != 1 || strcmp(c.dbs[0].name, "*") != 0 || c.dbs[0].dbname)
			abort();
		if (c.dbs[0].port < 0 || c.dbs[0].port > 65535)
			abort();
		/* a second URL replaces the first rather than adding one */
		if (config_apply_upstream_url(&c, s, err, sizeof(err)) != 0 || c.ndbs != 1)
			abort();
	} else if (c.ndbs || c.upstream_url || !err[0]) {
		abort();
	}
	config_free(&c);

	config_init(&c);
	char *eq = strchr(s, '=');
	if (eq) {
		*eq = '\0';
		if (config_add_database(&c, s, eq + 1, err, sizeof(err)) == 0) {
			if (c.ndbs != 1)
				abort();
			const struct db_entry *e = &c.dbs[0];
			if (e->pool_size == 0 || e->pool_size < -1 || e->pool_mode < -1 || e->pool_mode > 1)
				abort();
		} else if (c.ndbs) {
			abort();
		}
	}
	config_free(&c);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		log_set_level(LOG_ERROR); /* ignored-parameter warnings would flood the run */
		quiet = true;
	}
	check_userlist(data, size);
	check_config(data, size);
	return 0;
}
