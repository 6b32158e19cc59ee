/* ddl.h - recognizing the few statements the pooler itself must react to before
 * forwarding them.  Pure functions on the query text. */
#ifndef PGMEDIC_DDL_H
#define PGMEDIC_DDL_H

#include <stddef.h>

/* If the first statement of q is `DROP DATABASE [IF EXISTS] name` (any case,
 * leading whitespace and comments allowed), writes the database name (unquoted
 * identifiers folded to lower case, quoted ones verbatim) to out and returns 1;
 * returns 0 otherwise (or when out is too small). */
int sql_drop_database_target(const char *q, size_t len, char *out, size_t outlen);

#endif
