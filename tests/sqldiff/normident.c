/* normident.c - byte-identity of two builds of src/sql/normalize.c.
 *
 * A change meant to keep every output (a speed-up, say) is checked against the
 * previous version: normalize.c at a git revision is compiled a second time with
 * its public functions renamed old_* (see the Makefile's normident target) and
 * both are run on every statement of the given files.  A file ending in .jsonl
 * holds one JSON string per line; any other file is one raw input (the fuzz
 * corpus).  Besides each input itself, every prefix of it (inputs up to
 * PREFIX_MAX bytes), its normalized text, seeded random mutations, and copies
 * with a comment or whitespace put in where lists and the normalizer's fast
 * paths look (after '(' and ',' and ';', before ')': a MARKER comment between
 * list elements, a tag comment...) are compared.  Compared: sql_normalize's
 * return, all of struct sql_norm (tags as offsets into the input) and the
 * output bytes, also with caps too small; sql_redact's return and bytes;
 * sql_tag_decode of every tag and of the input; sql_comment_tags of every
 * block comment of the input.  Exits non-zero on the first difference.
 *
 * With --bench, instead times both versions on the given inputs, interleaved in
 * short rounds and keeping each one's fastest round, so that load elsewhere on
 * the machine affects the ratio as little as possible. */
#include <jansson.h>
#ifdef WITH_PG_QUERY
#include <pg_query.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sql/normalize.h"

int old_sql_normalize(const char *q, size_t len, char *out, size_t cap, struct sql_norm *res);
long old_sql_redact(const char *q, size_t len, char *out, size_t cap);
size_t old_sql_tag_decode(const char *v, size_t n, char *out, size_t cap);
void old_sql_comment_tags(const char *c, size_t n, struct sql_norm *res);

#define PREFIX_MAX 4096
#define MUTATIONS 24
#define COMMENT_PLACES 16

struct input {
	char *s;
	size_t n;
};

static struct input *inputs;
static size_t ninputs, inputs_cap;
static unsigned long long compared;

static void add_input(const char *s, size_t n)
{
	if (ninputs == inputs_cap) {
		inputs_cap = inputs_cap ? 2 * inputs_cap : 1024;
		inputs = realloc(inputs, inputs_cap * sizeof(*inputs));
		if (!inputs)
			abort();
	}
	char *c = malloc(n ? n : 1);
	if (!c)
		abort();
	memcpy(c, s, n);
	inputs[ninputs++] = (struct input){ c, n };
}

static void load(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	size_t pl = strlen(path);
	if (pl > 6 && strcmp(path + pl - 6, ".jsonl") == 0) {
		char *line = NULL;
		size_t lcap = 0;
		ssize_t ln;
		while ((ln = getline(&line, &lcap, f)) > 0) {
			json_error_t err;
			json_t *j = json_loadb(line, (size_t)ln, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
			if (!j || !json_is_string(j)) {
				fprintf(stderr, "%s: not a JSON string: %.60s\n", path, line);
				exit(2);
			}
			add_input(json_string_value(j), json_string_length(j));
			json_decref(j);
		}
		free(line);
	} else {
		char *buf = NULL;
		size_t n = 0, bcap = 0, r;
		char tmp[65536];
		while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0) {
			if (n + r > bcap) {
				bcap = 2 * (n + r);
				buf = realloc(buf, bcap);
				if (!buf)
					abort();
			}
			memcpy(buf + n, tmp, r);
			n += r;
		}
		add_input(buf ? buf : "", n);
		free(buf);
	}
	fclose(f);
}

static void fail(const char *what, const char *q, size_t n)
{
	fprintf(stderr, "DIFFERENCE in %s for input of %zu bytes: \"%.*s\"\n", what, n, (int)(n > 300 ? 300 : n), q);
	exit(1);
}

static void same_res(const struct sql_norm *a, const struct sql_norm *b, const char *q, size_t n)
{
	if (a->fingerprint != b->fingerprint || a->len != b->len || a->nconst != b->nconst || a->ntags != b->ntags)
		fail("struct sql_norm", q, n);
	for (int i = 0; i < a->ntags && i < SQL_MAX_TAGS; i++)
		if (a->tags[i].key != b->tags[i].key || a->tags[i].key_len != b->tags[i].key_len ||
		    a->tags[i].val != b->tags[i].val || a->tags[i].val_len != b->tags[i].val_len)
			fail("tags", q, n);
}

/* One input, as an exact-size heap copy (so that ASan sees any overread). */
static void compare(const char *src, size_t n)
{
	char *q = malloc(n ? n : 1);
	if (!q)
		abort();
	memcpy(q, src, n);
	size_t cap = SQL_NORM_BOUND(n);
	char *o1 = malloc(cap), *o2 = malloc(cap);
	if (!o1 || !o2)
		abort();
	struct sql_norm r1, r2;
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	int a = old_sql_normalize(q, n, o1, cap, &r1);
	int b = sql_normalize(q, n, o2, cap, &r2);
	if (a != b)
		fail("sql_normalize return", q, n);
	same_res(&r1, &r2, q, n);
	if (a == 0 && memcmp(o1, o2, r1.len + 1) != 0)
		fail("normalized text", q, n);
	size_t full = r1.len;

	/* caps too small (and exactly enough): same return, same res */
	size_t caps[] = { 0, 1, full / 2, full, full + 1 };
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		memset(&r1, 0, sizeof(r1));
		memset(&r2, 0, sizeof(r2));
		a = old_sql_normalize(q, n, o1, caps[i], &r1);
		b = sql_normalize(q, n, o2, caps[i], &r2);
		if (a != b)
			fail("sql_normalize return (small cap)", q, n);
		same_res(&r1, &r2, q, n);
		if (a == 0 && memcmp(o1, o2, r1.len + 1) != 0)
			fail("normalized text (small cap)", q, n);
	}

	/* tags decode */
	if (sql_normalize(q, n, o2, cap, &r2) != 0)
		r2.ntags = 0;
	for (int i = 0; i < r2.ntags; i++) {
		char d1[64], d2[64];
		size_t x = old_sql_tag_decode(r2.tags[i].val, r2.tags[i].val_len, d1, sizeof(d1));
		size_t y = sql_tag_decode(r2.tags[i].val, r2.tags[i].val_len, d2, sizeof(d2));
		if (x != y || memcmp(d1, d2, x + 1) != 0)
			fail("sql_tag_decode", q, n);
	}
	{
		size_t dcap = n + 1;
		char *d1 = malloc(dcap), *d2 = malloc(dcap);
		size_t x = old_sql_tag_decode(q, n, d1, dcap);
		size_t y = sql_tag_decode(q, n, d2, dcap);
		if (x != y || memcmp(d1, d2, x + 1) != 0)
			fail("sql_tag_decode (input)", q, n);
		free(d1);
		free(d2);
	}

	/* the tags of each block comment (to the first star-slash after it) */
	for (const char *c = q; (c = memmem(c, (size_t)(q + n - c), "/*", 2)) != NULL; c += 2) {
		const char *e = memmem(c + 2, (size_t)(q + n - c - 2), "*/", 2);
		size_t cl = e ? (size_t)(e + 2 - c) : (size_t)(q + n - c);
		old_sql_comment_tags(c, cl, &r1);
		sql_comment_tags(c, cl, &r2);
		same_res(&r1, &r2, q, n);
	}

	/* redaction */
	long ra = old_sql_redact(q, n, o1, cap);
	long rb = sql_redact(q, n, o2, cap);
	if (ra != rb || (ra >= 0 && memcmp(o1, o2, (size_t)ra + 1) != 0))
		fail("sql_redact", q, n);
	if (ra > 0) {
		ra = old_sql_redact(q, n, o1, (size_t)ra);
		rb = sql_redact(q, n, o2, (size_t)rb);
		if (ra != rb)
			fail("sql_redact (small cap)", q, n);
	}
	compared++;
	free(o1);
	free(o2);
	free(q);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void mutate_and_compare(const char *s, size_t n)
{
	static const char alpha[] = " \t\n'\"$-/*().,;:[]=<>!+eEbBxXuU&0123456789_aZ\\#@%^|`?~\x80\xff";
	char *m = malloc(n + 8);
	if (!m)
		abort();
	for (int k = 0; k < MUTATIONS; k++) {
		memcpy(m, s, n);
		size_t mn = n;
		int edits = 1 + (int)(next_rand() % 4);
		for (int e = 0; e < edits; e++) {
			char c = alpha[next_rand() % (sizeof(alpha) - 1)];
			size_t at = mn ? (size_t)(next_rand() % mn) : 0;
			switch (next_rand() % 3) {
			case 0: /* replace */
				if (mn)
					m[at] = c;
				break;
			case 1: /* insert */
				if (mn < n + 8) {
					memmove(m + at + 1, m + at, mn - at);
					m[at] = c;
					mn++;
				}
				break;
			default: /* delete */
				if (mn) {
					memmove(m + at, m + at + 1, mn - at - 1);
					mn--;
				}
			}
		}
		compare(m, mn);
	}
	free(m);
}

/* s with a comment or whitespace put in after a '(', ',' or ';' or before a
 * ')', at each of the first COMMENT_PLACES such bytes in turn: what a list
 * being collapsed, a VALUES row or the fast lane's shortcuts see least often
 * in the corpus (a MARKER between elements counts as more of them). */
static void comments_and_compare(const char *s, size_t n)
{
	static const char *const ins[] = {
		"/* c */", "/*, ... */", " /*, ... */ ", "-- c\n", " --\n", "/*a='1',b='x'*/", "\n", "  ",
		"/**/", " /* x /* y */ */ ", "\t/*, ... */\n",
	};
	char *m = malloc(n + 32);
	if (!m)
		abort();
	int places = 0;
	for (size_t i = 0; i < n && places < COMMENT_PLACES; i++) {
		if (s[i] != ',' && s[i] != '(' && s[i] != ')' && s[i] != ';')
			continue;
		size_t at = s[i] == ')' ? i : i + 1;
		const char *x = ins[next_rand() % (sizeof(ins) / sizeof(ins[0]))];
		size_t xl = strlen(x);
		memcpy(m, s, at);
		memcpy(m + at, x, xl);
		memcpy(m + at + xl, s + at, n - at);
		compare(m, n + xl);
		places++;
	}
	free(m);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench(double secs)
{
	size_t cap = 0, bytes = 0;
	for (size_t i = 0; i < ninputs; i++) {
		if (SQL_NORM_BOUND(inputs[i].n) > cap)
			cap = SQL_NORM_BOUND(inputs[i].n);
		bytes += inputs[i].n;
	}
	char *out = malloc(cap);
	struct sql_norm res;
	volatile uint64_t sink = 0;
	double best[3] = { 1e30, 1e30, 1e30 };
	int contestants = 2;
	char **cstr = calloc(ninputs, sizeof(char *));
	for (size_t i = 0; i < ninputs; i++) {
		cstr[i] = malloc(inputs[i].n + 1);
		memcpy(cstr[i], inputs[i].s, inputs[i].n);
		cstr[i][inputs[i].n] = 0;
	}
#ifdef WITH_PG_QUERY
	contestants = 3;
#endif
	/* a round: enough repetitions of the whole input set for ~2 ms */
	long reps = 1 + (long)(200000 / (bytes + 1));
	double t_end = now() + secs;
	int rounds = 0;
	while (now() < t_end || rounds < 10) {
		for (int which = 0; which < contestants; which++) {
			double t0 = now();
#ifdef WITH_PG_QUERY
			if (which == 2) {
				for (size_t i = 0; i < ninputs; i++) {
					PgQueryNormalizeResult pr = pg_query_normalize(cstr[i]);
					sink += pr.error ? 0 : (uint64_t)pr.normalized_query[0];
					pg_query_free_normalize_result(pr);
				}
				double t = (now() - t0) * (double)reps;
				best[2] = t < best[2] ? t : best[2];
				continue;
			}
#endif
			for (long r = 0; r < reps; r++)
				for (size_t i = 0; i < ninputs; i++) {
					int rc = which ? sql_normalize(inputs[i].s, inputs[i].n, out, cap, &res)
						       : old_sql_normalize(inputs[i].s, inputs[i].n, out, cap, &res);
					if (rc != 0)
						return 1;
					sink += res.fingerprint;
				}
			double t = now() - t0;
			best[which] = t < best[which] ? t : best[which];
		}
		rounds++;
	}
	double per = (double)reps * (double)ninputs;
	printf("inputs: %zu (avg %zu bytes), %d rounds, fastest round of each\n", ninputs, bytes / (ninputs ? ninputs : 1),
	       rounds);
	printf("old sql_normalize: %12.0f norm/s\n", per / best[0]);
	printf("new sql_normalize: %12.0f norm/s\n", per / best[1]);
	printf("speed-up: %.2fx\n", best[0] / best[1]);
	if (contestants == 3)
		printf("pg_query_normalize: %11.0f norm/s (old %.1fx, new %.1fx)\n", per / best[2], best[2] / best[0],
		       best[2] / best[1]);
	for (size_t i = 0; i < ninputs; i++)
		free(cstr[i]);
	free(cstr);
	free(out);
	(void)sink;
	return 0;
}

int main(int argc, char **argv)
{
	int do_bench = 0;
	double secs = 5;
	int i = 1;
	if (i < argc && strcmp(argv[i], "--bench") == 0) {
		do_bench = 1;
		i++;
		if (i < argc && argv[i][0] >= '0' && argv[i][0] <= '9')
			secs = atof(argv[i++]);
	}
	for (; i < argc; i++)
		load(argv[i]);
	if (do_bench)
		return bench(secs);
	size_t base = ninputs;
	for (size_t k = 0; k < base; k++) {
		const char *s = inputs[k].s;
		size_t n = inputs[k].n;
		compare(s, n);
		if (n <= PREFIX_MAX)
			for (size_t p = 0; p < n; p++)
				compare(s, p);
		size_t cap = SQL_NORM_BOUND(n);
		char *o = malloc(cap);
		struct sql_norm r;
		if (sql_normalize(s, n, o, cap, &r) == 0)
			compare(o, r.len);
		free(o);
		mutate_and_compare(s, n);
		comments_and_compare(s, n);
	}
	printf("normident: %zu inputs, %llu comparisons, 0 differences\n", base, compared);
	return 0;
}
