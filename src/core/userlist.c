/* userlist.c - the PgBouncer auth file (userlist.txt): parsing, secret
 * classification and lookup.  Pure functions on a buffer, plus one loader
 * that reads the file; the SCRAM/md5 math itself lives in src/pg/. */
#include "core/userlist.h"
#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* An auth file is a few lines per user; anything this big is the wrong file. */
#define USERLIST_MAX_BYTES (64u << 20)

#define SCRAM_PREFIX "SCRAM-SHA-256$"
#define SCRAM_KEY_LEN 32 /* SHA-256 output: StoredKey and ServerKey */

/* ---------------------------------------------------------------- secrets */

static bool is_b64_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '+' || ch == '/';
}

/* Decoded length of standard, padded base64 in s[0..n), or -1 if it is not that. */
static long b64_decoded_len(const char *s, size_t n)
{
	if (n == 0 || n % 4 != 0)
		return -1;
	size_t pad = 0;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++)
		if (!is_b64_char(s[i]))
			return -1;
	return (long)(n / 4 * 3 - pad);
}

/* SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, the form
 * PostgreSQL stores in pg_authid.rolpassword. */
static bool scram_secret_valid(const char *s)
{
	size_t plen = strlen(SCRAM_PREFIX);
	if (strncmp(s, SCRAM_PREFIX, plen) != 0)
		return false;
	const char *it = s + plen;
	const char *colon = strchr(it, ':');
	const char *dollar = colon ? strchr(colon + 1, '$') : NULL;
	const char *colon2 = dollar ? strchr(dollar + 1, ':') : NULL;
	if (!colon || !dollar || !colon2)
		return false;
	size_t it_n = (size_t)(colon - it);
	if (it_n == 0 || it_n > 10)
		return false;
	long iters = 0;
	for (size_t i = 0; i < it_n; i++) {
		if (it[i] < '0' || it[i] > '9')
			return false;
		iters = iters * 10 + (it[i] - '0');
	}
	if (iters < 1 || iters > INT_MAX)
		return false;
	const char *salt = colon + 1, *stored = dollar + 1, *server = colon2 + 1;
	return b64_decoded_len(salt, (size_t)(dollar - salt)) >= 1 &&
	       b64_decoded_len(stored, (size_t)(colon2 - stored)) == SCRAM_KEY_LEN &&
	       b64_decoded_len(server, strlen(server)) == SCRAM_KEY_LEN;
}

/* "md5" + 32 lowercase hex digits.  Lowercase only, as PostgreSQL: the hex
 * text itself is hashed again during md5 auth, so "ABC" is not "abc". */
static bool md5_secret_valid(const char *s)
{
	if (strlen(s) != 35 || strncmp(s, "md5", 3) != 0)
		return false;
	for (const char *p = s + 3; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

enum secret_kind secret_kind_of(const char *secret)
{
	if (!secret)
		return SECRET_PLAIN;
	if (md5_secret_valid(secret))
		return SECRET_MD5;
	if (scram_secret_valid(secret))
		return SECRET_SCRAM;
	return SECRET_PLAIN;
}

/* ---------------------------------------------------------------- parsing */

struct parsed {
	struct user_entry e;
	int line;
};

struct parser {
	const char *origin; /* file name, or NULL for "line N" */
	int line;
	char *err;
	size_t errlen;
	struct parsed *v;
	size_t n, cap;
};

__attribute__((format(printf, 2, 3)))
static int perr(struct parser *p, const char *fmt, ...)
{
	if (!p->err || !p->errlen)
		return -1;
	int off = p->origin ? snprintf(p->err, p->errlen, "%s:%d: ", p->origin, p->line)
			    : snprintf(p->err, p->errlen, "line %d: ", p->line);
	if (off >= 0 && (size_t)off < p->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err + off, p->errlen - (size_t)off, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* A "double-quoted" field starting at s[*i] == '"', with "" for a quote.
 * On success *i is just past the closing quote. */
static int quoted_field(struct parser *p, const char *s, size_t n, size_t *i, char **out,
			const char *what)
{
	char *d = malloc(n - *i);
	if (!d)
		return perr(p, "out of memory");
	size_t j = 0, k = *i + 1;
	for (;; k++) {
		if (k >= n) {
			free(d);
			return perr(p, "missing closing '\"' after the %s", what);
		}
		if (s[k] == '"') {
			if (k + 1 < n && s[k + 1] == '"') {
				d[j++] = '"';
				k++;
				continue;
			}
			break;
		}
		d[j++] = s[k];
	}
	d[j] = '\0';
	*i = k + 1;
	*out = d;
	return 0;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static bool blank(char ch) { return ch == ' ' || ch == '\t'; }

/* One line (no '\n').  Blank lines and comments add nothing. */
static int parse_line(struct parser *p, const char *s, size_t n)
{
	char *name = NULL, *secret = NULL;
	size_t i = 0;
	if (n && s[n - 1] == '\r')
		n--;
	if (memchr(s, '\0', n))
		return perr(p, "NUL byte in the line");
	while (i < n && blank(s[i]))
		i++;
	if (i == n || s[i] == ';' || s[i] == '#')
		return 0;
	if (s[i] != '"')
		return perr(p, "expected a line like \"user\" \"password\" (both in double quotes)");
	if (quoted_field(p, s, n, &i, &name, "user name") < 0)
		return -1;
	if (!*name) {
		perr(p, "empty user name");
		goto bad;
	}
	if (i < n && !blank(s[i])) {
		perr(p, "expected a space after the user name \"%s\"", name);
		goto bad;
	}
	while (i < n && blank(s[i]))
		i++;
	if (i == n || s[i] != '"') {
		perr(p, "user \"%s\": expected a double-quoted password or secret after the name",
		     name);
		goto bad;
	}
	if (quoted_field(p, s, n, &i, &secret, "password") < 0)
		goto bad;
	/* PgBouncer ignores whatever follows the two fields (older files had
	 * more); only text glued to the closing quote is a sure mistake. */
	if (i < n && !blank(s[i])) {
		perr(p, "user \"%s\": unexpected text right after the password's closing quote",
		     name);
		goto bad;
	}
	if (!*secret) {
		/* PostgreSQL never accepts an empty password; a blank here is a mistake. */
		perr(p, "user \"%s\": empty password", name);
		goto bad;
	}
	enum secret_kind kind = secret_kind_of(secret);
	if (kind == SECRET_PLAIN && strncmp(secret, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0) {
		/* A pasted secret that lost a character would otherwise become a
		 * plain-text password nobody can type. */
		perr(p, "user \"%s\": malformed SCRAM secret (expected "
			"SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, base64, "
			"32-byte keys)", name);
		goto bad;
	}
	if (kind == SECRET_PLAIN && strncmp(secret, "md5", 3) == 0 && strlen(secret) >= 30)
		log_warn("%s%s%d: user \"%s\": secret starts with md5 but is not md5 + 32 "
			 "lowercase hex digits; using it as a plain-text password",
			 p->origin ? p->origin : "line ", p->origin ? ":" : "", p->line, name);
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct parsed *v = realloc(p->v, cap * sizeof(*v));
		if (!v) {
			perr(p, "out of memory");
			goto bad;
		}
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = (struct parsed){{name, secret, kind}, p->line};
	return 0;
bad:
	free(name);
	free_secret(secret);
	return -1;
}

static int cmp_parsed(const void *a, const void *b)
{
	const struct parsed *x = a, *y = b;
	int c = strcmp(x->e.name, y->e.name);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int parse_text(struct userlist *ul, const char *text, size_t len, const char *origin,
		      char *err, size_t errlen)
{
	struct parser p = {.origin = origin, .err = err, .errlen = errlen};
	int rc = 0;
	ul->users = NULL;
	ul->n = 0;
	size_t pos = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		p.line++;
		if ((rc = parse_line(&p, text + pos, end - pos)) < 0)
			goto out;
		pos = end + 1;
	}
	/* Sorted by name: lookups are a binary search, and a user listed twice
	 * shows up as neighbours (an error: which line wins would be a guess). */
	if (p.n)
		qsort(p.v, p.n, sizeof(*p.v), cmp_parsed);
	for (size_t i = 1; i < p.n; i++)
		if (strcmp(p.v[i].e.name, p.v[i - 1].e.name) == 0) {
			p.line = p.v[i].line;
			rc = perr(&p, "user \"%s\" is listed twice (also on line %d)", p.v[i].e.name,
				  p.v[i - 1].line);
			goto out;
		}
	if (p.n) {
		ul->users = malloc(p.n * sizeof(*ul->users));
		if (!ul->users) {
			rc = perr(&p, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < p.n; i++)
			ul->users[i] = p.v[i].e;
		ul->n = p.n;
	}
out:
	if (rc < 0)
		for (size_t i = 0; i < p.n; i++) {
			free(p.v[i].e.name);
			free_secret(p.v[i].e.secret);
		}
	free(p.v);
	return rc;
}

int userlist_parse(struct userlist *ul, const char *text, size_t len, char *err, size_t errlen)
{
	return parse_text(ul, text, len, NULL, err, errlen);
}

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

int userlist_load(struct userlist *ul, const char *path, char *err, size_t errlen)
{
	ul->users = NULL;
	ul->n = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return fail(err, errlen, "cannot open auth file %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0077))
		/* Like PostgreSQL's key files: secrets readable by others is worth a word. */
		log_warn("auth file %s is readable by group or others (chmod 600 it)", path);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			if (cap >= USERLIST_MAX_BYTES) {
				free(buf);
				fclose(f);
				return fail(err, errlen, "auth file %s is larger than %u MiB", path,
					    USERLIST_MAX_BYTES >> 20);
			}
			cap = cap ? cap * 2 : 4096;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return fail(err, errlen, "%s: out of memory", path);
			}
			buf = nb;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	int read_error = ferror(f);
	fclose(f);
	if (read_error) {
		free(buf);
		return fail(err, errlen, "%s: read error", path);
	}
	int rc = parse_text(ul, buf ? buf : "", len, path, err, errlen);
	/* The buffer held passwords: do not leave them in freed memory. */
	if (buf)
		explicit_bzero(buf, cap);
	free(buf);
	return rc;
}

static int cmp_key(const void *key, const void *elem)
{
	return strcmp(key, ((const struct user_entry *)elem)->name);
}

const struct user_entry *userlist_find(const struct userlist *ul, const char *name)
{
	if (!ul || !ul->n || !name)
		return NULL;
	return bsearch(name, ul->users, ul->n, sizeof(*ul->users), cmp_key);
}

void userlist_free(struct userlist *ul)
{
	if (!ul)
		return;
	for (size_t i = 0; i < ul->n; i++) {
		free(ul->users[i].name);
		free_secret(ul->users[i].secret);
	}
	free(ul->users);
	ul->users = NULL;
	ul->n = 0;
}
