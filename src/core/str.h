/* str.h - small string helpers for the hot path. */
#ifndef PGMEDIC_STR_H
#define PGMEDIC_STR_H

#include <stddef.h>
#include <string.h>

/* strnlen by glibc's vectorized memchr.  libpg_query exports its own byte-by-byte
 * strnlen, and since it is linked before libc, a plain strnlen call in this
 * program resolves to that one (it showed up in profiles of every Query). */
static inline size_t pgm_strnlen(const char *s, size_t n)
{
	const char *z = memchr(s, 0, n);
	return z ? (size_t)(z - s) : n;
}

#endif
