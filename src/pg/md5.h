/* md5.h - PostgreSQL's md5 password scheme (pure functions). */
#ifndef PGMEDIC_MD5_H
#define PGMEDIC_MD5_H

#include <stdint.h>

#define PG_MD5_LEN 35 /* "md5" + 32 hex digits */

/* out = "md5" + hex(md5(password || user)); out must hold PG_MD5_LEN + 1 bytes.
 * Both functions write "" on failure (NULL argument, malformed secret, MD5 unavailable
 * as under FIPS). */
void pg_md5_secret(const char *password, const char *user, char out[PG_MD5_LEN + 1]);
/* The client's answer to AuthenticationMD5Password: "md5" + hex(md5(hex32(secret) || salt)),
 * where secret is an "md5..." string as produced by pg_md5_secret (lowercase hex, as
 * PostgreSQL requires). */
void pg_md5_response(const char *md5_secret, const uint8_t salt[4], char out[PG_MD5_LEN + 1]);
/* Constant-time comparison of two NUL-terminated strings of equal length; 1 if equal.
 * Different lengths, NULLs and two empty strings (the failure value above) give 0. */
int pg_secure_streq(const char *a, const char *b);

#endif
