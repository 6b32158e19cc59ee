/* intern.c - see intern.h.  A chained hash table of headers that sit right
 * before their strings, so intern_drop() finds its entry from the pointer alone. */
#include "core/intern.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct istr {
	struct istr *next;
	uint64_t hash;
	unsigned long refs;
	char s[];
};

static struct istr **buckets;
static size_t nbuckets, count;
/* Shared by every event loop (workers > 1): interned pointers travel with server
 * connections between loops.  Taken on logins and parameter changes, not per query. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct istr *header(const char *s)
{
	return (struct istr *)(void *)(s - offsetof(struct istr, s));
}

static void grow(void)
{
	size_t n = nbuckets ? nbuckets * 2 : 64;
	struct istr **nb = calloc(n, sizeof(*nb));
	if (!nb)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < nbuckets; i++)
		for (struct istr *e = buckets[i], *next; e; e = next) {
			next = e->next;
			e->next = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	free(buckets);
	buckets = nb;
	nbuckets = n;
}

static const char *intern_locked(const char *s)
{
	size_t len = strlen(s);
	uint64_t h = XXH3_64bits(s, len);
	if (count >= nbuckets)
		grow();
	if (!nbuckets)
		return NULL;
	struct istr **b = &buckets[h & (nbuckets - 1)];
	for (struct istr *e = *b; e; e = e->next)
		if (e->hash == h && strcmp(e->s, s) == 0) {
			e->refs++;
			return e->s;
		}
	struct istr *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	e->hash = h;
	e->refs = 1;
	memcpy(e->s, s, len + 1);
	e->next = *b;
	*b = e;
	count++;
	return e->s;
}

const char *intern(const char *s)
{
	if (!s)
		return NULL;
	pthread_mutex_lock(&lock);
	const char *r = intern_locked(s);
	pthread_mutex_unlock(&lock);
	return r;
}

static void drop_locked(const char *s)
{
	struct istr *e = header(s);
	if (--e->refs)
		return;
	struct istr **p = &buckets[e->hash & (nbuckets - 1)];
	while (*p != e)
		p = &(*p)->next;
	*p = e->next;
	free(e);
	count--;
	if (!count) {
		free(buckets);
		buckets = NULL;
		nbuckets = 0;
	}
}

void intern_drop(const char *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&lock);
	drop_locked(s);
	pthread_mutex_unlock(&lock);
}

void intern_set(const char **slot, const char *v)
{
	const char *n = intern(v); /* before the drop: v may be *slot itself */
	intern_drop(*slot);
	*slot = n;
}

unsigned long intern_count(void)
{
	pthread_mutex_lock(&lock);
	unsigned long n = (unsigned long)count;
	pthread_mutex_unlock(&lock);
	return n;
}
