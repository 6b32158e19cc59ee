/* fuzz_normalize.c - the hot-path normalizer on arbitrary bytes: sql_normalize,
 * sql_redact and sql_tag_decode, with the invariants the header promises. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sql/normalize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exact-size copies: any read past the end is an ASan report. */
	char *q = malloc(size ? size : 1);
	if (!q)
		return 0;
	memcpy(q, data, size);
	size_t cap = SQL_NORM_BOUND(size);
	char *o1 = malloc(cap), *o2 = malloc(cap), *o3 = malloc(cap);
	if (!o1 || !o2 || !o3)
		abort();
	struct sql_norm r1, r2, r3;

	/* the bound always suffices, and the output is a C string of len bytes */
	if (sql_normalize(q, size, o1, cap, &r1) != 0)
		abort();
	if (r1.len >= cap || o1[r1.len] != 0 || strlen(o1) > r1.len)
		abort();
	if (r1.ntags < 0 || r1.ntags > SQL_MAX_TAGS || r1.nconst < 0)
		abort();
	for (int i = 0; i < r1.ntags; i++) {
		const struct sql_tag *t = &r1.tags[i];
		if (t->key < q || t->key + t->key_len > q + size || t->val < q || t->val + t->val_len > q + size ||
		    t->key_len == 0)
			abort();
		char dec[32];
		size_t n = sql_tag_decode(t->val, t->val_len, dec, sizeof(dec));
		if (n >= sizeof(dec) || dec[n] != 0 || n > t->val_len)
			abort();
	}

	/* deterministic */
	if (sql_normalize(q, size, o2, cap, &r2) != 0 || r2.fingerprint != r1.fingerprint || r2.len != r1.len ||
	    memcmp(o1, o2, r1.len) != 0)
		abort();

	/* idempotent: the normalized text normalizes to itself (needs no NUL in it:
	 * verbatim literals of statements that keep them may carry one) */
	if (strlen(o1) == r1.len) {
		char *n1 = malloc(r1.len ? r1.len : 1);
		memcpy(n1, o1, r1.len);
		size_t cap3 = SQL_NORM_BOUND(r1.len);
		char *o4 = malloc(cap3);
		if (sql_normalize(n1, r1.len, o4, cap3, &r3) != 0 || r3.len != r1.len || memcmp(o4, o1, r1.len) != 0 ||
		    r3.fingerprint != r1.fingerprint)
			abort();
		free(o4);
		free(n1);
	}

	/* a cap one byte short fails cleanly and writes nothing past cap */
	if (r1.len > 0) {
		size_t small = r1.len;
		memset(o3, 0x5a, cap);
		if (sql_normalize(q, size, o3, small, &r3) != -1)
			abort();
		for (size_t i = small; i < cap; i++)
			if ((unsigned char)o3[i] != 0x5a)
				abort();
	}

	/* redaction: bounded, NUL-terminated, no longer than the bound */
	long rn = sql_redact(q, size, o3, cap);
	if (rn < 0 || (size_t)rn >= cap || o3[rn] != 0)
		abort();

	char dec[16];
	size_t dn = sql_tag_decode(q, size, dec, sizeof(dec));
	if (dn >= sizeof(dec) || dec[dn] != 0)
		abort();

	free(o1);
	free(o2);
	free(o3);
	free(q);
	return 0;
}
