/* ddl.c - see ddl.h.  Why: PostgreSQL refuses DROP DATABASE while other sessions
 * are connected to it, and a pooler keeps idle sessions open on the application's
 * behalf.  Recognizing the statement lets pgmedic close its idle connections to
 * that database first (PostgreSQL waits up to 5 s for sessions to go). */
#include "sql/ddl.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "core/str.h"

static size_t skip_space(const char *q, size_t len, size_t i)
{
	for (;;) {
		while (i < len && isspace((unsigned char)q[i]))
			i++;
		if (i + 1 < len && q[i] == '-' && q[i + 1] == '-') {
			while (i < len && q[i] != '\n')
				i++;
			continue;
		}
		if (i + 1 < len && q[i] == '/' && q[i + 1] == '*') {
			int depth = 1; /* SQL block comments nest */
			i += 2;
			while (i < len && depth > 0) {
				if (i + 1 < len && q[i] == '/' && q[i + 1] == '*') {
					depth++;
					i += 2;
				} else if (i + 1 < len && q[i] == '*' && q[i + 1] == '/') {
					depth--;
					i += 2;
				} else {
					i++;
				}
			}
			continue;
		}
		return i;
	}
}

static bool ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

/* Matches keyword kw at i followed by a non-identifier character. */
static bool keyword(const char *q, size_t len, size_t *i, const char *kw)
{
	size_t n = strlen(kw);
	if (len - *i < n || strncasecmp(q + *i, kw, n) != 0)
		return false;
	if (*i + n < len && ident_char(q[*i + n]))
		return false;
	*i += n;
	return true;
}

int sql_drop_database_target(const char *q, size_t len, char *out, size_t outlen)
{
	/* Runs on every Query: most are settled by their first byte (comments aside). */
	size_t i = 0;
	while (i < len && isspace((unsigned char)q[i]))
		i++;
	if (i < len && q[i] != 'd' && q[i] != 'D' && q[i] != '-' && q[i] != '/')
		return 0;
	len = pgm_strnlen(q, len); /* protocol strings end at their NUL */
	i = skip_space(q, len, 0);
	if (!keyword(q, len, &i, "drop"))
		return 0;
	i = skip_space(q, len, i);
	if (!keyword(q, len, &i, "database"))
		return 0;
	i = skip_space(q, len, i);
	size_t save = i;
	if (keyword(q, len, &i, "if")) {
		i = skip_space(q, len, i);
		if (!keyword(q, len, &i, "exists"))
			i = save;
		else
			i = skip_space(q, len, i);
	}
	if (i >= len || outlen == 0)
		return 0;
	size_t o = 0;
	if (q[i] == '"') {
		i++;
		for (;;) {
			if (i >= len)
				return 0;
			if (q[i] == '"') {
				if (i + 1 < len && q[i + 1] == '"') {
					i++;
				} else {
					break;
				}
			}
			if (o + 1 >= outlen)
				return 0;
			out[o++] = q[i++];
		}
	} else {
		while (i < len && ident_char(q[i])) {
			if (o + 1 >= outlen)
				return 0;
			out[o++] = (char)tolower((unsigned char)q[i]);
			i++;
		}
	}
	if (o == 0)
		return 0;
	out[o] = '\0';
	return 1;
}
