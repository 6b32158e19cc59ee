/* sqldiff.c - differential test of pgmedic's normalizer against libpg_query.
 *
 * For every statement of the given tests/sql_corpus/ *.jsonl files (one JSON string
 * per line), an oracle key is built from libpg_query alone: pg_query_normalize
 * decides what is a constant, pg_query_scan tokenizes its output, and the tokens
 * are canonicalized here (comments dropped, keywords and unquoted identifiers
 * lower-cased, != as <>, ';' only between statements, N$k split into n and a
 * placeholder, the IN / ARRAY / VALUES list collapsing of normalize.h applied to
 * the token stream, placeholders renumbered in order).  The partition of the
 * statements by oracle key must equal their partition by sql_normalize's
 * fingerprint, both ways.  Exits non-zero on any mismatch, on a statement that
 * libpg_query cannot parse, or on a corpus smaller than MIN_STATEMENTS. */
#include <jansson.h>
#include <pg_query.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql/normalize.h"

#define MIN_STATEMENTS 5000
#define SHOW_MISMATCHES 12

/* pg_query.proto's Token values used here */
enum {
	T_ASCII_COMMA = 44, T_ASCII_LPAREN = 40, T_ASCII_RPAREN = 41, T_ASCII_LBRACK = 91, T_ASCII_RBRACK = 93,
	T_ASCII_SEMI = 59, T_IDENT = 258, T_UIDENT = 259, T_USCONST = 262, T_PARAM = 267, T_NOT_EQUALS = 274, T_SQL_COMMENT = 275,
	T_C_COMMENT = 276, T_ARRAY = 293, T_IN = 453, T_VALUES = 703, T_OP = 265, T_LESS_EQUALS = 272,
	T_GREATER_EQUALS = 273, T_COLON_EQUALS = 270, T_EQUALS_GREATER = 271,
};

struct stok {
	int start, end, token, kwkind;
};

/* --- a minimal protobuf reader for PgQuery__ScanResult ---------------------- */

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

static int pb_skip(const uint8_t **p, const uint8_t *end, int wt)
{
	uint64_t v;
	switch (wt) {
	case 0:
		return pb_varint(p, end, &v);
	case 1:
		if (end - *p < 8)
			return -1;
		*p += 8;
		return 0;
	case 2:
		if (pb_varint(p, end, &v) || (uint64_t)(end - *p) < v)
			return -1;
		*p += v;
		return 0;
	case 5:
		if (end - *p < 4)
			return -1;
		*p += 4;
		return 0;
	default:
		return -1;
	}
}

/* Returns the number of tokens, or -1. */
static int decode_scan(const uint8_t *p, size_t len, struct stok **out)
{
	const uint8_t *end = p + len;
	int n = 0, cap = 64;
	struct stok *t = malloc(sizeof(*t) * (size_t)cap);
	while (p < end) {
		uint64_t key, v;
		if (pb_varint(&p, end, &key))
			goto bad;
		if ((key >> 3) == 2 && (key & 7) == 2) {
			if (pb_varint(&p, end, &v) || (uint64_t)(end - p) < v)
				goto bad;
			const uint8_t *q = p, *qe = p + v;
			p = qe;
			struct stok s = { 0, 0, 0, 0 };
			while (q < qe) {
				uint64_t k2, v2;
				if (pb_varint(&q, qe, &k2))
					goto bad;
				if ((k2 & 7) != 0) {
					if (pb_skip(&q, qe, (int)(k2 & 7)))
						goto bad;
					continue;
				}
				if (pb_varint(&q, qe, &v2))
					goto bad;
				switch (k2 >> 3) {
				case 1: s.start = (int)v2; break;
				case 2: s.end = (int)v2; break;
				case 4: s.token = (int)v2; break;
				case 5: s.kwkind = (int)v2; break;
				}
			}
			if (n == cap)
				t = realloc(t, sizeof(*t) * (size_t)(cap *= 2));
			t[n++] = s;
		} else if (pb_skip(&p, end, (int)(key & 7))) {
			goto bad;
		}
	}
	*out = t;
	return n;
bad:
	free(t);
	return -1;
}

/* --- canonical oracle tokens ---------------------------------------------------- */

enum { O_PH = 1, O_MARK, O_OP, O_OTHER };

struct otok {
	int kind;    /* O_* */
	int token;   /* scan token */
	char *text;  /* canonical text (not for O_PH) */
};

struct ovec {
	struct otok *v;
	int n, cap;
};

static void ov_push(struct ovec *o, int kind, int token, const char *s, size_t n)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 64;
		o->v = realloc(o->v, sizeof(*o->v) * (size_t)o->cap);
	}
	struct otok *t = &o->v[o->n++];
	t->kind = kind;
	t->token = token;
	t->text = s ? strndup(s, n) : NULL;
}

static void ov_truncate(struct ovec *o, int n)
{
	while (o->n > n)
		free(o->v[--o->n].text);
}

static int tok_eq(const struct otok *a, const struct otok *b)
{
	if (a->kind != b->kind)
		return 0;
	if (a->kind == O_PH || a->kind == O_MARK)
		return 1;
	return strcmp(a->text, b->text) == 0;
}

static int range_eq(const struct ovec *o, int a0, int a1, int b0, int b1)
{
	if (a1 - a0 != b1 - b0)
		return 0;
	for (int i = 0; i < a1 - a0; i++)
		if (!tok_eq(&o->v[a0 + i], &o->v[b0 + i]))
			return 0;
	return 1;
}

/* List collapsing on the token stream, the rules of normalize.h. */
enum { K_IN = 1, K_ARRAY, K_VALUES };
enum { VS_EXPECT, VS_INROW, VS_AFTER, VS_COMMA };
struct olist {
	int kind, depth, ok, marked, nelem, vstate;
	int first0, first1, el0;
};

struct collapser {
	struct ovec out;
	struct olist st[64];
	int nst;
};

static void el_done(struct collapser *c, struct olist *l, int e0, int e1)
{
	if (l->kind != K_VALUES) {
		/* one placeholder first, no other placeholder, no operator */
		int simple = e1 > e0 && c->out.v[e0].kind == O_PH;
		for (int i = e0 + 1; i < e1 && simple; i++)
			if (c->out.v[i].kind == O_PH || c->out.v[i].kind == O_OP)
				simple = 0;
		for (int i = e0; i < e1 && simple; i++)
			if (c->out.v[i].kind == O_MARK)
				simple = 0;
		if (!simple)
			l->ok = 0;
	}
	if (l->ok) {
		if (l->nelem == 0) {
			l->first0 = e0;
			l->first1 = e1;
		} else if (!range_eq(&c->out, l->first0, l->first1, e0, e1)) {
			l->ok = 0;
		}
	}
	l->nelem++;
}

static void list_close(struct collapser *c, int allow)
{
	struct olist *l = &c->st[--c->nst];
	if (allow && l->ok && (l->nelem >= 2 || (l->marked && l->nelem >= 1))) {
		ov_truncate(&c->out, l->first1);
		ov_push(&c->out, O_MARK, 0, NULL, 0);
	}
}

/* Feed one canonical token at paren depth d (before the token). */
static void feed(struct collapser *c, int kind, int token, const char *s, size_t n, int d, int prev_token)
{
	if (kind == O_MARK) {
		if (c->nst && c->st[c->nst - 1].depth == d)
			c->st[c->nst - 1].marked = 1;
		return;
	}
	/* end elements and lists */
	while (c->nst) {
		struct olist *l = &c->st[c->nst - 1];
		if (l->depth != d)
			break;
		if (l->kind == K_VALUES) {
			if (l->vstate == VS_AFTER && token != T_ASCII_COMMA) {
				list_close(c, 1);
				continue;
			}
			if ((l->vstate == VS_EXPECT || l->vstate == VS_COMMA) && token != T_ASCII_LPAREN) {
				list_close(c, 0);
				continue;
			}
			break;
		}
		if (token == T_ASCII_RPAREN || token == T_ASCII_RBRACK) {
			el_done(c, l, l->el0, c->out.n);
			list_close(c, 1);
		} else if (token == T_ASCII_COMMA) {
			el_done(c, l, l->el0, c->out.n);
			l->el0 = c->out.n + 1;
		}
		break;
	}
	int at = c->out.n;
	ov_push(&c->out, kind, token, s, n);
	if (c->nst) {
		struct olist *l = &c->st[c->nst - 1];
		if (l->kind == K_VALUES) {
			if (token == T_ASCII_LPAREN && d == l->depth && (l->vstate == VS_EXPECT || l->vstate == VS_COMMA)) {
				l->el0 = at;
				l->vstate = VS_INROW;
			} else if ((token == T_ASCII_RPAREN || token == T_ASCII_RBRACK) && d == l->depth + 1 &&
				   l->vstate == VS_INROW) {
				el_done(c, l, l->el0, c->out.n);
				l->vstate = VS_AFTER;
			} else if (token == T_ASCII_COMMA && d == l->depth && l->vstate == VS_AFTER) {
				l->vstate = VS_COMMA;
			}
		}
	}
	if (c->nst < 64) {
		int kindl = 0, depth = d + 1;
		if (token == T_ASCII_LPAREN && prev_token == T_IN)
			kindl = K_IN;
		else if (token == T_ASCII_LBRACK && prev_token == T_ARRAY)
			kindl = K_ARRAY;
		else if (token == T_VALUES)
			kindl = K_VALUES, depth = d;
		if (kindl) {
			struct olist *l = &c->st[c->nst++];
			memset(l, 0, sizeof(*l));
			l->kind = kindl;
			l->depth = depth;
			l->ok = 1;
			l->el0 = c->out.n;
		}
	}
}

static void close_all(struct collapser *c, int d)
{
	while (c->nst) {
		struct olist *l = &c->st[c->nst - 1];
		list_close(c, l->kind == K_VALUES && l->depth == d && l->vstate == VS_AFTER);
	}
}

static int is_op_token(int tok)
{
	switch (tok) {
	case '+': case '-': case '*': case '/': case '%': case '^': case '<': case '>': case '=':
	case T_OP: case T_LESS_EQUALS: case T_GREATER_EQUALS: case T_NOT_EQUALS: case T_COLON_EQUALS:
	case T_EQUALS_GREATER: case 92:
		return 1;
	default:
		return 0;
	}
}

/* The length of the U&"..." or U&'...' token at s (doubled quotes stay inside). */
static size_t uamp_len(const char *s)
{
	if ((s[0] != 'u' && s[0] != 'U') || s[1] != '&' || (s[2] != '"' && s[2] != '\''))
		return 1;
	char qc = s[2];
	size_t i = 3;
	for (;;) {
		if (s[i] == 0)
			return i;
		if (s[i] == qc) {
			if (s[i + 1] == qc) {
				i += 2;
				continue;
			}
			return i + 1;
		}
		i++;
	}
}

/* The oracle key of statement q; NULL (with *err set) if libpg_query fails. */
static char *oracle_key(const char *q, const char **err)
{
	static char errbuf[512];
	PgQueryNormalizeResult nr = pg_query_normalize(q);
	if (nr.error) {
		snprintf(errbuf, sizeof(errbuf), "normalize: %s", nr.error->message);
		*err = errbuf;
		pg_query_free_normalize_result(nr);
		return NULL;
	}
	const char *nq = nr.normalized_query;
	PgQueryScanResult sr = pg_query_scan(nq);
	if (sr.error) {
		snprintf(errbuf, sizeof(errbuf), "scan of normalized text: %s", sr.error->message);
		*err = errbuf;
		pg_query_free_scan_result(sr);
		pg_query_free_normalize_result(nr);
		return NULL;
	}
	struct stok *t = NULL;
	int nt = decode_scan((const uint8_t *)sr.pbuf.data, sr.pbuf.len, &t);
	if (nt < 0) {
		*err = "bad scan protobuf";
		pg_query_free_scan_result(sr);
		pg_query_free_normalize_result(nr);
		return NULL;
	}
	struct collapser c;
	memset(&c, 0, sizeof(c));
	int depth = 0, prev = 0, stmt_has = 0, pend_semi = 0;
	for (int i = 0; i < nt; i++) {
		const char *s = nq + t[i].start;
		size_t n = (size_t)(t[i].end - t[i].start);
		int tok = t[i].token;
		if (tok == T_UIDENT || tok == T_USCONST)
			n = uamp_len(s); /* pg_query_scan reports a short span for U&"..." and U&'...' */
		if (tok == T_SQL_COMMENT || tok == T_C_COMMENT) {
			if (tok == T_C_COMMENT && n == 10 && memcmp(s, "/*, ... */", 10) == 0)
				feed(&c, O_MARK, 0, NULL, 0, depth, prev);
			continue;
		}
		if (tok == T_ASCII_SEMI) {
			close_all(&c, depth);
			depth = 0;
			if (stmt_has)
				pend_semi = 1;
			stmt_has = 0;
			prev = tok;
			continue;
		}
		if (pend_semi) {
			feed(&c, O_OTHER, T_ASCII_SEMI, ";", 1, 0, 0);
			pend_semi = 0;
		}
		stmt_has = 1;
		char lower[1024];
		if (tok == T_PARAM) {
			feed(&c, O_PH, tok, NULL, 0, depth, prev);
		} else if (tok == T_NOT_EQUALS) {
			feed(&c, O_OP, tok, "<>", 2, depth, prev);
		} else if ((t[i].kwkind != 0 || (tok == T_IDENT && s[0] != '"')) && n < sizeof(lower)) {
			for (size_t k = 0; k < n; k++)
				lower[k] = (s[k] >= 'A' && s[k] <= 'Z') ? (char)(s[k] | 0x20) : s[k];
			/* libpg_query turns N'x' into the identifier N$k: a word and a placeholder */
			if (tok == T_IDENT && n > 2 && lower[0] == 'n' && lower[1] == '$' && strspn(lower + 2, "0123456789") >= n - 2) {
				feed(&c, O_OTHER, tok, "n", 1, depth, prev);
				feed(&c, O_PH, T_PARAM, NULL, 0, depth, tok);
			} else {
				feed(&c, O_OTHER, tok, lower, n, depth, prev);
			}
		} else {
			feed(&c, is_op_token(tok) ? O_OP : O_OTHER, tok, s, n, depth, prev);
		}
		if (tok == T_ASCII_LPAREN || tok == T_ASCII_LBRACK)
			depth++;
		else if ((tok == T_ASCII_RPAREN || tok == T_ASCII_RBRACK) && depth > 0)
			depth--;
		prev = tok;
	}
	close_all(&c, depth);
	/* join, renumbering placeholders */
	size_t cap = 64, len = 0;
	for (int i = 0; i < c.out.n; i++)
		cap += (c.out.v[i].text ? strlen(c.out.v[i].text) : 0) + 16;
	char *key = malloc(cap);
	int ph = 0;
	for (int i = 0; i < c.out.n; i++) {
		const struct otok *o = &c.out.v[i];
		if (i)
			key[len++] = ' ';
		if (o->kind == O_PH)
			len += (size_t)sprintf(key + len, "$%d", ++ph);
		else if (o->kind == O_MARK)
			len += (size_t)sprintf(key + len, "/*,...*/");
		else
			len += (size_t)sprintf(key + len, "%s", o->text);
	}
	key[len] = 0;
	ov_truncate(&c.out, 0);
	free(c.out.v);
	free(t);
	pg_query_free_scan_result(sr);
	pg_query_free_normalize_result(nr);
	return key;
}

/* --- the run -------------------------------------------------------------------- */

struct entry {
	char *sql, *key, *norm;
	const char *file;
	int line;
	uint64_t fp;
};

static int by_key(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : (x->fp > y->fp) - (x->fp < y->fp);
}

static int by_fp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->fp != y->fp)
		return x->fp < y->fp ? -1 : 1;
	return strcmp(x->key, y->key);
}

static void show(const char *what, const struct entry *a, const struct entry *b)
{
	printf("MISMATCH (%s)\n  %s:%d: %s\n    pgmedic: %s\n    oracle:  %s\n  %s:%d: %s\n    pgmedic: %s\n    oracle:  %s\n",
	       what, a->file, a->line, a->sql, a->norm, a->key, b->file, b->line, b->sql, b->norm, b->key);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s corpus.jsonl...\n", argv[0]);
		return 2;
	}
	struct entry *e = NULL;
	size_t ne = 0, cape = 0;
	int bad = 0;
	for (int f = 1; f < argc; f++) {
		FILE *fh = fopen(argv[f], "r");
		if (!fh) {
			perror(argv[f]);
			return 2;
		}
		char *line = NULL;
		size_t lcap = 0;
		int lineno = 0;
		while (getline(&line, &lcap, fh) > 0) {
			lineno++;
			if (line[strspn(line, " \t\r\n")] == 0)
				continue;
			json_error_t jerr;
			json_t *j = json_loads(line, JSON_DECODE_ANY, &jerr);
			if (!j || !json_is_string(j)) {
				printf("BAD LINE %s:%d: not a JSON string (%s)\n", argv[f], lineno, j ? "" : jerr.text);
				bad++;
				json_decref(j);
				continue;
			}
			const char *sql = json_string_value(j);
			size_t sl = json_string_length(j);
			PgQueryParseResult pr = pg_query_parse(sql);
			const char *err = NULL;
			char *key = NULL;
			if (pr.error) {
				printf("UNPARSABLE %s:%d: %s\n  %s\n", argv[f], lineno, pr.error->message, sql);
				bad++;
			} else if (!(key = oracle_key(sql, &err))) {
				printf("ORACLE FAILED %s:%d: %s\n  %s\n", argv[f], lineno, err, sql);
				bad++;
			}
			pg_query_free_parse_result(pr);
			if (key) {
				size_t cap = SQL_NORM_BOUND(sl);
				char *out = malloc(cap);
				struct sql_norm r;
				if (sql_normalize(sql, sl, out, cap, &r) != 0) {
					printf("NORMALIZE FAILED %s:%d\n", argv[f], lineno);
					return 1;
				}
				if (ne == cape)
					e = realloc(e, sizeof(*e) * (cape = cape ? cape * 2 : 1024));
				e[ne++] = (struct entry){ strdup(sql), key, out, argv[f], lineno, r.fingerprint };
			}
			json_decref(j);
		}
		free(line);
		fclose(fh);
	}

	/* same oracle key => same fingerprint */
	size_t split = 0, merged = 0, groups = 0, fps = 0;
	int shown = 0;
	qsort(e, ne, sizeof(*e), by_key);
	for (size_t i = 0; i < ne; i++) {
		if (i == 0 || strcmp(e[i].key, e[i - 1].key) != 0) {
			groups++;
			continue;
		}
		if (e[i].fp != e[i - 1].fp) {
			split++;
			if (shown++ < SHOW_MISMATCHES)
				show("same oracle key, different fingerprints", &e[i - 1], &e[i]);
		}
	}
	/* same fingerprint => same oracle key */
	qsort(e, ne, sizeof(*e), by_fp);
	for (size_t i = 0; i < ne; i++) {
		if (i == 0 || e[i].fp != e[i - 1].fp) {
			fps++;
			continue;
		}
		if (strcmp(e[i].key, e[i - 1].key) != 0) {
			merged++;
			if (shown++ < SHOW_MISMATCHES)
				show("same fingerprint, different oracle keys", &e[i - 1], &e[i]);
		}
	}
	printf("sqldiff: %zu statements, %zu oracle groups, %zu fingerprints, %zu mismatches "
	       "(%zu split, %zu merged), %d unparsable/bad\n",
	       ne, groups, fps, split + merged, split, merged, bad);
	int rc = 0;
	if (split + merged) {
		printf("FAIL: partitions differ\n");
		rc = 1;
	}
	if (bad) {
		printf("FAIL: %d statements libpg_query cannot parse (the corpus must hold valid SQL)\n", bad);
		rc = 1;
	}
	if (ne + (size_t)bad < MIN_STATEMENTS) {
		printf("FAIL: corpus has %zu statements, fewer than %d\n", ne + (size_t)bad, MIN_STATEMENTS);
		rc = 1;
	}
	for (size_t i = 0; i < ne; i++) {
		free(e[i].sql);
		free(e[i].key);
		free(e[i].norm);
	}
	free(e);
	return rc;
}
