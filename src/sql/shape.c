/* shape.c - see shape.h. */
#include "sql/shape.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static bool ident_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
	       c >= 0x80;
}

static bool digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The end of the digit run that starts at q[i], and whether it is free. */
static inline __attribute__((always_inline)) size_t run_end(const unsigned char *q, size_t len, size_t i,
							       bool *free_run)
{
	size_t j = i;
	while (j < len && digit(q[j]))
		j++;
	*free_run = (i == 0 || !ident_byte(q[i - 1])) && (j == len || !ident_byte(q[j]));
	return j;
}

/* Bytes that end a plain stretch: digits and NUL. */
static const unsigned char stops[256] = {[0] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
					 ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1};

/* Copies s[0..CHUNK) to d and returns how many of those bytes come before the
 * first digit or NUL (CHUNK when none is there); s has CHUNK bytes readable. */
#ifdef __SSE2__
#include <emmintrin.h>
#define CHUNK 16
static inline size_t plain_chunk(const unsigned char *s, char *d)
{
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
	_mm_storeu_si128((__m128i *)(void *)d, v);
	__m128i t = _mm_sub_epi8(v, _mm_set1_epi8('0'));
	__m128i dig = _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(9)), t); /* (c - '0') < 10, unsigned */
	unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(dig, _mm_cmpeq_epi8(v, _mm_setzero_si128())));
	return m ? (size_t)__builtin_ctz(m) : CHUNK;
}
#elif __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Eight bytes in a word (the first flagged byte is the lowest on little-endian). */
#define CHUNK 8
#define ONES 0x0101010101010101ull
/* The high bit of the bytes of w below n (0 < n <= 128), by the classic bit trick:
 * nonzero exactly when one is, and its lowest set bit marks the first such byte
 * (a borrow only runs upwards, so bytes above a flagged one may be flagged too). */
static inline uint64_t less_mask(uint64_t w, unsigned n)
{
	return (w - ONES * n) & ~w & (ONES * 0x80);
}

static inline size_t plain_chunk(const unsigned char *s, char *d)
{
	uint64_t w;
	memcpy(&w, s, 8);
	memcpy(d, &w, 8);
	uint64_t m = less_mask(w ^ (ONES * '0'), 10) | less_mask(w, 1);
	/* the lowest flagged byte is exact (little-endian); later ones may not be */
	return m ? (size_t)__builtin_ctzll(m) / 8 : CHUNK;
}
#endif

long sql_shape(const char *q, size_t len, char *out, size_t cap, size_t *nruns)
{
	const unsigned char *s = (const unsigned char *)q;
	size_t o = 0, runs = 0, i = 0;
	*nruns = 0;
	if (cap < len)
		return -1;
	while (i < len) {
#ifdef CHUNK
		if (len - i >= CHUNK) {
			/* A chunk at a time up to the first digit or NUL; o <= i, so the
			 * chunk's copy ends within len <= cap. */
			size_t k = plain_chunk(s + i, out + o);
			o += k;
			i += k;
			if (k == CHUNK)
				continue;
		}
#endif
		unsigned char c = s[i];
		if (!stops[c]) {
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (!c)
			return -1;
		bool free_run;
		size_t e = run_end(s, len, i, &free_run);
		if (free_run) {
			out[o++] = 0;
			runs++;
		} else {
			memcpy(out + o, q + i, e - i);
			o += e - i;
		}
		i = e;
	}
	*nruns = runs;
	return (long)o;
}

long sql_shape_variant(const char *q, size_t len, char *out, size_t cap)
{
	const unsigned char *s = (const unsigned char *)q;
	size_t o = 0, i = 0;
	while (i < len) {
		if (!digit(s[i])) {
			if (o >= cap)
				return -1;
			out[o++] = q[i++];
			continue;
		}
		bool free_run;
		size_t e = run_end(s, len, i, &free_run);
		if (cap - o < e - i + 1)
			return -1;
		memcpy(out + o, q + i, e - i);
		o += e - i;
		if (free_run)
			out[o++] = '0';
		i = e;
	}
	return (long)o;
}

bool sql_tag_tail(const char *q, size_t len, size_t *c0, size_t *c1)
{
	size_t e = len;
	while (e > 0 && (q[e - 1] == ';' || q[e - 1] == ' ' || (q[e - 1] >= '\t' && q[e - 1] <= '\r')))
		e--;
	if (e < 4 || q[e - 1] != '/' || q[e - 2] != '*')
		return false;
	/* back to the last star or slash before the closing pair: the opening one */
	const char *star = memrchr(q, '*', e - 2), *slash = memrchr(q, '/', e - 2);
	if (!star || star == q || star[-1] != '/' || (slash && slash > star))
		return false;
	*c0 = (size_t)(star - 1 - q);
	*c1 = e;
	return true;
}
