/* fuzz_shape.c - the shape cache's claim (sql/shape.h), on arbitrary bytes: when a
 * text and its variant normalize alike without tags, every text of its shape (its
 * free digit runs rewritten to other digits, of other lengths) normalizes to the
 * same text and fingerprint. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sql/normalize.h"
#include "sql/shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void norm(const char *q, size_t len, char **out, struct sql_norm *r)
{
	size_t cap = SQL_NORM_BOUND(len);
	*out = malloc(cap);
	if (!*out || sql_normalize(q, len, *out, cap, r) != 0)
		abort();
}

static bool ident_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
	       c >= 0x80;
}

/* shape.h's definition, one byte at a time: what the chunked scan must produce. */
static long ref_shape(const unsigned char *q, size_t len, char *out, size_t *nruns)
{
	size_t o = 0;
	*nruns = 0;
	for (size_t i = 0; i < len;) {
		if (!q[i])
			return -1;
		if (q[i] < '0' || q[i] > '9') {
			out[o++] = (char)q[i++];
			continue;
		}
		size_t j = i;
		while (j < len && q[j] >= '0' && q[j] <= '9')
			j++;
		if ((i == 0 || !ident_byte(q[i - 1])) && (j == len || !ident_byte(q[j]))) {
			out[o++] = 0;
			(*nruns)++;
		} else {
			memcpy(out + o, q + i, j - i);
			o += j - i;
		}
		i = j;
	}
	return (long)o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exact-size copies: any read past the end is an ASan report. */
	char *q = malloc(size ? size : 1);
	if (!q)
		return 0;
	memcpy(q, data, size);
	char *shape = malloc(size ? size : 1);
	size_t nruns;
	long sl = sql_shape(q, size, shape, size, &nruns);
	if (sl > (long)size || (sl < 0 && !memchr(q, 0, size)) || (sl >= 0 && memchr(q, 0, size)))
		abort(); /* -1 exactly when the text has a NUL; never longer than the text */
	char *ref = malloc(size ? size : 1);
	size_t ref_runs;
	long rl = ref_shape(data, size, ref, &ref_runs);
	if (rl != sl || (sl >= 0 && (ref_runs != nruns || memcmp(ref, shape, (size_t)sl) != 0)))
		abort(); /* the chunked scan agrees with the definition */
	free(ref);
	char *variant = malloc(2 * size + 1);
	long vl = sql_shape_variant(q, size, variant, 2 * size);
	if (vl < (long)size || vl > (long)(2 * size))
		abort();
	if (sl < 0 || nruns == 0) {
		free(q), free(shape), free(variant);
		return 0;
	}
	char *o1, *o2;
	struct sql_norm r1, r2;
	norm(q, size, &o1, &r1);
	norm(variant, (size_t)vl, &o2, &r2);
	bool same = r1.ntags == 0 && r2.ntags == 0 && r1.len == r2.len && memcmp(o1, o2, r1.len) == 0;
	if (same) {
		/* Another text of the shape: run k becomes 1 + (k + size) % 4 digits. */
		size_t cap = (size_t)sl * 4 + 1;
		char *t3 = malloc(cap);
		size_t n = 0, k = 0;
		for (long i = 0; i < sl; i++) {
			if (shape[i]) {
				t3[n++] = shape[i];
				continue;
			}
			size_t digits = 1 + (k + size) % 4;
			for (size_t d = 0; d < digits; d++)
				t3[n++] = (char)('0' + (k * 7 + d * 3 + size) % 10);
			k++;
		}
		char *shape3 = malloc(n ? n : 1);
		size_t nruns3;
		long sl3 = sql_shape(t3, n, shape3, n, &nruns3);
		if (sl3 != sl || nruns3 != nruns || memcmp(shape3, shape, (size_t)sl) != 0)
			abort(); /* the rewritten text has the same shape */
		char *o3;
		struct sql_norm r3;
		norm(t3, n, &o3, &r3);
		if (r3.len != r1.len || memcmp(o3, o1, r1.len) != 0 || r3.fingerprint != r1.fingerprint ||
		    r3.ntags != 0 || r3.nconst != r1.nconst)
			abort(); /* the claim: the same normalized text */
		free(o3), free(shape3), free(t3);
	}
	free(o1), free(o2), free(q), free(shape), free(variant);
	return 0;
}
