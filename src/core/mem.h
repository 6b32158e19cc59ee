/* mem.h - allocation helpers. */
#ifndef PGMEDIC_MEM_H
#define PGMEDIC_MEM_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Zeroed memory starting on a cache line, for objects whose hot fields are at the
 * top (struct client, struct server, struct prof_client): they then span as few
 * lines as they can.  free() frees it; never realloc() it. */
static inline void *zalloc_lines(size_t n)
{
	size_t sz = (n + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, sz);
	if (p)
		memset(p, 0, sz);
	return p;
}

#endif
