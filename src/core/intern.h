/* intern.h - shared, reference-counted copies of strings: one copy per distinct
 * value, so that two interned strings are equal exactly when their pointers are.
 * For the reported parameters a client wants and a server has (client_encoding,
 * TimeZone, application_name, ...): matching a client with a server compares
 * pointers instead of reading six pairs of strings that are cold in the CPU cache.
 * Thread-safe (one mutex): the event loops of workers > 1 share the table. */
#ifndef PGMEDIC_INTERN_H
#define PGMEDIC_INTERN_H

/* The interned copy of s, with one more reference; NULL for NULL (or when out of
 * memory: the caller then has no value, as with a failed strdup). */
const char *intern(const char *s);
/* Gives a reference back (NULL: nothing); the copy goes with its last one. */
void intern_drop(const char *s);
/* *slot = intern(v), dropping what *slot held. */
void intern_set(const char **slot, const char *v);
/* How many distinct strings are held (tests). */
unsigned long intern_count(void);

#endif
