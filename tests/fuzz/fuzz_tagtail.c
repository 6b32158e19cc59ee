/* fuzz_tagtail.c - the profiler's tag-comment claim (insight/profile.c, tag_tail and
 * tail_holds), on arbitrary bytes: when a body followed by one sqlcommenter
 * comment normalizes exactly as the body alone (same text, constants, no tags of
 * its own) with exactly the comment's tags, then the same body followed by any
 * other such comment does too, and so does every text of the body's shape (its
 * free digit runs rewritten) followed by one.  The input is the body. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sql/normalize.h"
#include "sql/shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct norm {
	char *out;
	struct sql_norm r;
};

static void norm(const char *q, size_t len, struct norm *n)
{
	size_t cap = SQL_NORM_BOUND(len);
	n->out = malloc(cap);
	if (!n->out || sql_normalize(q, len, n->out, cap, &n->r) != 0)
		abort();
}

static bool same_text(const struct norm *a, const struct norm *b)
{
	return a->r.len == b->r.len && memcmp(a->out, b->out, a->r.len) == 0 && a->r.fingerprint == b->r.fingerprint &&
	       a->r.nconst == b->r.nconst;
}

/* body + sep + comment + rest, in one exact-size buffer (*c0: the comment's offset). */
static char *join(const char *body, size_t bl, const char *sep, const char *comment, const char *rest, size_t *len,
		  size_t *c0)
{
	size_t sl = strlen(sep), cl = strlen(comment), rl = strlen(rest);
	*len = bl + sl + cl + rl;
	char *t = malloc(*len ? *len : 1);
	if (!t)
		abort();
	memcpy(t, body, bl);
	memcpy(t + bl, sep, sl);
	memcpy(t + bl + sl, comment, cl);
	memcpy(t + bl + sl + cl, rest, rl);
	*c0 = bl + sl;
	return t;
}

/* Whether text t (its comment at c0, of cl bytes) normalizes as t without the
 * comment, with exactly the comment's tags.  found: sql_tag_tail saw the comment. */
static bool tail_holds(const char *t, size_t len, size_t c0, size_t cl, bool *found)
{
	size_t a, b;
	*found = sql_tag_tail(t, len, &a, &b) && a == c0 && b == c0 + cl;
	if (!*found)
		return false;
	struct norm full, alone, body;
	norm(t, len, &full);
	norm(t + c0, cl, &alone);
	char *bt = malloc(len - cl ? len - cl : 1);
	memcpy(bt, t, c0);
	memcpy(bt + c0, t + c0 + cl, len - c0 - cl);
	norm(bt, len - cl, &body);
	/* the profiler takes the comment's tags from sql_comment_tags: the same */
	struct sql_norm ct;
	sql_comment_tags(t + c0, cl, &ct);
	if (ct.ntags != alone.r.ntags || memcmp(ct.tags, alone.r.tags, sizeof(ct.tags[0]) * (size_t)ct.ntags) != 0)
		abort();
	bool ok = alone.r.ntags > 0 && alone.r.len == 0 && body.r.ntags == 0 && same_text(&full, &body) &&
		  full.r.ntags == alone.r.ntags;
	for (int i = 0; ok && i < full.r.ntags && i < SQL_MAX_TAGS; i++)
		ok = full.r.tags[i].key == alone.r.tags[i].key && full.r.tags[i].val == alone.r.tags[i].val &&
		     full.r.tags[i].key_len == alone.r.tags[i].key_len &&
		     full.r.tags[i].val_len == alone.r.tags[i].val_len;
	free(full.out), free(alone.out), free(body.out), free(bt);
	return ok;
}

static const char *const comments[] = {
	"/*controller='shop.views.book_list',request_id='1a2b3c',route='%2Fbooks%2F'*/",
	"/*app_name='shop',framework='django%3A4.2',request_id='98765',route='%2Fa%2F%3Cint%3Apk%3E'*/",
	"/*request_id='x'*/",
};
static const char *const seps[] = {" ", "", "\n"};
static const char *const rests[] = {"", ";", " ;\n"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* The first byte picks the separator and the rest; the others are the body. */
	const char *sep = seps[data[0] % 3], *rest = rests[(data[0] / 3) % 3];
	const char *body = (const char *)data + 1;
	size_t bl = size - 1;
	size_t len, c0;
	char *t = join(body, bl, sep, comments[0], rest, &len, &c0);
	bool found;
	bool holds = tail_holds(t, len, c0, strlen(comments[0]), &found);
	if (!found)
		abort(); /* sql_tag_tail finds the comment sqlcommenter adds, after any body */
	free(t);
	if (!holds)
		return 0;
	/* Any other comment after the same body. */
	for (size_t k = 1; k < sizeof(comments) / sizeof(comments[0]); k++) {
		t = join(body, bl, sep, comments[k], rest, &len, &c0);
		if (!tail_holds(t, len, c0, strlen(comments[k]), &found))
			abort();
		free(t);
	}
	/* Another text of the body's shape: every free digit run becomes "7". */
	char *shape = malloc(bl ? bl : 1);
	size_t nruns;
	long sl = sql_shape(body, bl, shape, bl, &nruns);
	if (sl >= 0 && nruns) {
		char *other = malloc((size_t)sl ? (size_t)sl : 1);
		for (long i = 0; i < sl; i++)
			other[i] = shape[i] ? shape[i] : '7';
		t = join(other, (size_t)sl, sep, comments[1], rest, &len, &c0);
		if (!tail_holds(t, len, c0, strlen(comments[1]), &found))
			abort();
		free(t), free(other);
	}
	free(shape);
	return 0;
}
