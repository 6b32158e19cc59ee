/* shape.h - a statement text's shape: what stays when its numbers change.
 *
 * psycopg 2 (and psycopg 3 by default) inline every literal, so with the simple
 * query protocol nearly every text is new and the exact-text cache in front of the
 * normalizer (insight/profile.c) never hits.  Most of those texts differ from an
 * earlier one only in the digits of their numbers: "... WHERE aid = 12345".  The
 * shape is the text with every FREE DIGIT RUN replaced by one NUL byte: a maximal
 * run of ASCII digits with no identifier byte (letter, digit, '_', '$', a byte
 * >= 0x80) right before or after it.  Texts with the same shape lex into the same
 * tokens:
 * changing a free run's digits or length cannot move a token boundary (digits are
 * not quotes, comment or operator characters, and a run with no identifier byte
 * next to it is never part of a word, a $n, 0x.., 1e5 or 1_000).
 *
 * So whether two texts of one shape normalize alike depends only on where the
 * free runs are: inside constants the normalizer replaces (a number, a string) or
 * inside a comment without tags, and the normalized text cannot show them; inside
 * a kept literal (ORDER BY 1, varchar(10), DDL), a quoted identifier or a tag, it
 * shows them verbatim.  sql_shape_variant() builds the text with a '0' appended
 * to every free run: when it normalizes exactly like the text (same normalized
 * text, no tags in either), no free run is shown, and every text of that shape
 * normalizes to the same result (fuzz_shape checks this on arbitrary bytes).
 *
 * Pure functions on a buffer: no allocation, never read outside [q, q + len),
 * never write outside [out, out + cap). */
#ifndef PGMEDIC_SHAPE_H
#define PGMEDIC_SHAPE_H

#include <stdbool.h>
#include <stddef.h>

/* Writes the shape of q[0..len) to out and returns its length, with the number of
 * free runs in *nruns; -1 when q contains a NUL byte (the run marker) or cap < len. */
long sql_shape(const char *q, size_t len, char *out, size_t cap, size_t *nruns)
	__attribute__((warn_unused_result));

/* Writes q with a '0' appended to every free run; returns its length, or -1 when
 * cap is too small (cap >= 2 * len always suffices). */
long sql_shape_variant(const char *q, size_t len, char *out, size_t cap) __attribute__((warn_unused_result));

/* A trailing comment the way sqlcommenter adds one: a block comment of k='v'
 * pairs at the end of the text, then perhaps ';' and blanks.  True, with the comment's bounds q[*c0..*c1), when the
 * text ends so and the comment holds no '*' or '/' between its delimiters (tag
 * values are URL-encoded, so a real one never does).  Syntax only: whether it is
 * a comment of the statement at all (not inside a string or a line comment) is
 * for the caller to check, by normalizing (insight/profile.c). */
bool sql_tag_tail(const char *q, size_t len, size_t *c0, size_t *c1) __attribute__((warn_unused_result));

#endif
