/* session.c - see session.h.  Why first words and a few function names suffice:
 * the statements that create session state are all recognizable by their leading
 * keywords, except the advisory lock functions, which can appear anywhere in an
 * expression.  Over-detection only costs pooling efficiency (a pinned client);
 * under-detection would leak state between clients, so ambiguous cases pin. */
#include "sql/session.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/str.h"
#include "pg/proto.h"

struct tok {
	const char *p;
	size_t n;
	bool word; /* identifier or keyword (unquoted) */
};

struct scan {
	const char *q;
	size_t len, i;
};

/* Byte classes: 1 starts an identifier (letter, '_', >= 0x80), 2 continues one
 * (also digits and '$').  A table: the scanner runs on every Query. */
#define IDS 3
#define IDC 2
static const unsigned char id_class[256] = {
	['_'] = IDS, ['$'] = IDC, ['0' ... '9'] = IDC, ['a' ... 'z'] = IDS, ['A' ... 'Z'] = IDS, [0x80 ... 0xff] = IDS,
};
static inline bool ident_start(char c) { return id_class[(unsigned char)c] == IDS; }
static inline bool ident_char(char c) { return id_class[(unsigned char)c] != 0; }

/* Next token; returns false at the end.  ';' comes back as a one-byte token. */
static bool next_tok(struct scan *s, struct tok *t)
{
	const char *q = s->q;
	size_t len = s->len;
	for (;;) {
		while (s->i < len && isspace((unsigned char)q[s->i]))
			s->i++;
		if (s->i + 1 < len && q[s->i] == '-' && q[s->i + 1] == '-') {
			while (s->i < len && q[s->i] != '\n')
				s->i++;
			continue;
		}
		if (s->i + 1 < len && q[s->i] == '/' && q[s->i + 1] == '*') {
			int depth = 1;
			s->i += 2;
			while (s->i < len && depth) {
				if (s->i + 1 < len && q[s->i] == '/' && q[s->i + 1] == '*') {
					depth++;
					s->i += 2;
				} else if (s->i + 1 < len && q[s->i] == '*' && q[s->i + 1] == '/') {
					depth--;
					s->i += 2;
				} else {
					s->i++;
				}
			}
			continue;
		}
		break;
	}
	if (s->i >= len)
		return false;
	size_t start = s->i;
	char c = q[s->i];
	t->word = false;
	if (c == '\'' || c == '"') {
		/* '' and "" double the quote; E'' strings may also escape with \. */
		bool esc = c == '\'' && start > 0 && (q[start - 1] == 'E' || q[start - 1] == 'e');
		s->i++;
		while (s->i < len) {
			if (esc && q[s->i] == '\\' && s->i + 1 < len) {
				s->i += 2;
				continue;
			}
			if (q[s->i] == c) {
				if (s->i + 1 < len && q[s->i + 1] == c) {
					s->i += 2;
					continue;
				}
				s->i++;
				break;
			}
			s->i++;
		}
	} else if (c == '$' && s->i + 1 < len && (q[s->i + 1] == '$' || ident_start(q[s->i + 1]))) {
		/* $tag$ ... $tag$ */
		size_t j = s->i + 1;
		while (j < len && q[j] != '$' && ident_char(q[j]))
			j++;
		if (j < len && q[j] == '$') {
			size_t taglen = j - s->i + 1;
			const char *tag = q + s->i;
			s->i = j + 1;
			while (s->i < len) {
				if (q[s->i] == '$' && len - s->i >= taglen && memcmp(q + s->i, tag, taglen) == 0) {
					s->i += taglen;
					break;
				}
				s->i++;
			}
		} else {
			s->i++;
		}
	} else if (ident_start(c)) {
		while (s->i < len && ident_char(q[s->i]))
			s->i++;
		t->word = true;
	} else {
		s->i++;
	}
	t->p = q + start;
	t->n = s->i - start;
	return true;
}

static bool is_kw(const struct tok *t, const char *kw)
{
	return t->word && strlen(kw) == t->n && strncasecmp(t->p, kw, t->n) == 0;
}

static bool is_semi(const struct tok *t) { return t->n == 1 && t->p[0] == ';'; }

static bool reported_param(const struct tok *t)
{
	char name[64];
	if (t->n >= sizeof(name))
		return false;
	memcpy(name, t->p, t->n);
	name[t->n] = 0;
	return pg_tracked_param_index(name) >= 0;
}

/* set_config('<reported parameter>', ...): ParameterStatus follows it, no pin
 * (Django sets its time zone this way).  Looks ahead without consuming. */
static bool set_config_of_reported(const struct scan *s0)
{
	struct scan s = *s0;
	struct tok p, name;
	if (!next_tok(&s, &p) || p.n != 1 || p.p[0] != '(' || !next_tok(&s, &name))
		return false;
	if (name.n < 3 || name.p[0] != '\'' || name.p[name.n - 1] != '\'' || name.n - 2 >= 64)
		return false;
	char buf[64];
	memcpy(buf, name.p + 1, name.n - 2);
	buf[name.n - 2] = 0;
	return pg_tracked_param_index(buf) >= 0;
}

/* Classifies one statement whose first token is t; consumes it up to ';'. */
static unsigned statement(struct scan *s, struct tok *t)
{
	unsigned bits = 0;
	struct tok a, b;
	bool more = true;
	if (is_kw(t, "set")) {
		if (!(more = next_tok(s, &a)))
			return 0;
		if (is_kw(&a, "session")) {
			if (!(more = next_tok(s, &a)))
				return 0;
			if (is_kw(&a, "authorization"))
				bits |= SESS_ROLE;
			else if (is_kw(&a, "characteristics"))
				bits |= SESS_SET;
		}
		if (bits) {
			/* decided */
		} else if (is_kw(&a, "local") || is_kw(&a, "transaction") || is_kw(&a, "constraints")) {
			/* lasts only until the end of the transaction */
		} else if (is_kw(&a, "role")) {
			bits |= SESS_ROLE;
		} else if (is_kw(&a, "time")) {
			/* SET TIME ZONE: TimeZone is reported, pgmedic follows it */
		} else if (!(a.word && reported_param(&a))) {
			bits |= SESS_SET;
		}
	} else if (is_kw(t, "do")) {
		/* An anonymous block can do anything (SET, locks): assume it does. */
		bits |= SESS_SET;
	} else if (is_kw(t, "listen")) {
		bits |= SESS_LISTEN;
	} else if (is_kw(t, "prepare")) {
		bits |= SESS_PREPARE;
	} else if (is_kw(t, "create")) {
		if ((more = next_tok(s, &a))) {
			if (is_kw(&a, "or")) { /* CREATE OR REPLACE TEMP VIEW */
				more = next_tok(s, &b) && next_tok(s, &a);
			}
			if (more && (is_kw(&a, "global") || is_kw(&a, "local")))
				more = next_tok(s, &a);
			if (more && (is_kw(&a, "temp") || is_kw(&a, "temporary")))
				bits |= SESS_TEMP;
		}
	} else if (is_kw(t, "declare")) {
		/* DECLARE name [BINARY] [INSENSITIVE] [[NO] SCROLL] CURSOR [WITH HOLD] FOR */
		bool prev_with = false;
		while (more && (more = next_tok(s, &a)) && !is_semi(&a) && !is_kw(&a, "for")) {
			if (prev_with && is_kw(&a, "hold"))
				bits |= SESS_HOLD_CURSOR;
			prev_with = is_kw(&a, "with");
		}
		if (more && is_semi(&a))
			return bits;
	}
	/* The rest of the statement: only the advisory lock functions matter. */
	while (more && next_tok(s, &a)) {
		if (is_semi(&a))
			break;
		if (a.word && a.n >= 16 && strncasecmp(a.p, "pg_", 3) == 0 &&
		    (is_kw(&a, "pg_advisory_lock") || is_kw(&a, "pg_advisory_lock_shared") ||
		     is_kw(&a, "pg_try_advisory_lock") || is_kw(&a, "pg_try_advisory_lock_shared")))
			bits |= SESS_ADVISORY;
		/* set_config(name, value, is_local): whether is_local is false is not
		 * worth evaluating here; pin. */
		if (is_kw(&a, "set_config") && !set_config_of_reported(s))
			bits |= SESS_SET;
	}
	return bits;
}

/* Whether q[i..] starts with the lower-case letters kw, in any case. */
static bool letters_at(const char *q, size_t len, size_t i, const char *kw, size_t n)
{
	if (len - i < n)
		return false;
	for (size_t j = 0; j < n; j++)
		if (((unsigned char)q[i + j] | 0x20) != (unsigned char)kw[j])
			return false;
	return true;
}

/* isspace() in the C locale, without the call. */
static inline bool blank(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* After q[at], only blanks and ';' up to the end (len or a NUL). */
static bool rest_blank(const char *q, size_t at, size_t len)
{
	for (at++; at < len && q[at]; at++)
		if (!blank(q[at]) && q[at] != ';')
			return false;
	return true;
}

/* Whether the '_' at q[at] starts "_advisory" or is the one of "set_config".
 * Where 8 bytes follow, one load compares them, with letters_at()'s folding. */
static bool stateful_underscore(const char *q, size_t len, size_t at)
{
	if (len - at > 8) {
		uint64_t w, adv, cfg, six;
		memcpy(&w, q + at + 1, 8);
		memcpy(&adv, "advisory", 8);
		memcpy(&cfg, "config\0\0", 8);
		memcpy(&six, "\xff\xff\xff\xff\xff\xff\0\0", 8);
		w |= 0x2020202020202020ull;
		return w == adv || ((w & six) == cfg && at >= 3 && letters_at(q, len, at - 3, "set", 3));
	}
	return letters_at(q, len, at + 1, "advisory", 8) ||
	       (at >= 3 && letters_at(q, len, at - 3, "set", 3) && letters_at(q, len, at + 1, "config", 6));
}

/* The quick look that settles most statements (every SELECT, INSERT, UPDATE and
 * DELETE of an ORM) without tokenizing them: true when q (up to its first NUL, if
 * any) is one statement (no ';' before anything but trailing blanks), starts
 * neither with a comment nor with a word statement() or sql_parse_set looks at,
 * and contains neither "_advisory" nor "set_config" in any case, inside strings
 * and comments included.  Then statement() would find nothing and sql_parse_set
 * would see no SET; anything else takes the full scan, so this only ever saves
 * time.  The keyword comparisons may look past a NUL: a NUL matches no letter. */
static bool plainly_stateless(const char *q, size_t len)
{
	size_t i = 0;
	while (i < len && blank(q[i]))
		i++;
	if (i < len && (q[i] == '-' || q[i] == '/'))
		return false;
	size_t w = i;
	while (w < len && ident_char(q[w]))
		w++;
	/* The first words that matter: set, reset, do, declare, listen, prepare, create
	 * (the first letter and the length pick the one to compare). */
	const char *kw = NULL;
	switch (w - i ? (unsigned char)q[i] | 0x20 : 0) {
	case 's': kw = "set"; break;
	case 'r': kw = "reset"; break;
	case 'd': kw = w - i == 2 ? "do" : "declare"; break;
	case 'l': kw = "listen"; break;
	case 'p': kw = "prepare"; break;
	case 'c': kw = "create"; break;
	}
	if (kw && strlen(kw) == w - i && letters_at(q, len, i, kw, w - i))
		return false;
	/* The rest: the bytes that matter are NUL (the end), ';' and '_'; sixteen at a
	 * time where SSE2 is there (this runs on every statement).  A '_' in the
	 * first word is seen too: the scan starts at the word. */
	size_t at = i;
#ifdef __SSE2__
	if (len - i >= 16) {
		const __m128i nul = _mm_setzero_si128(), semi = _mm_set1_epi8(';'), us = _mm_set1_epi8('_');
		for (size_t b = i;; b += 16) {
			size_t base = b + 16 <= len ? b : len - 16; /* the last block overlaps the one before */
			__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(q + base));
			__m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, nul), _mm_cmpeq_epi8(v, semi)),
						 _mm_cmpeq_epi8(v, us));
			unsigned bits = (unsigned)_mm_movemask_epi8(m) >> (b - base); /* bit k: q[b + k] */
			for (; bits; bits &= bits - 1) {
				size_t p = b + (size_t)__builtin_ctz(bits);
				if (q[p] == 0)
					return true;
				if (q[p] == ';')
					return rest_blank(q, p, len);
				if (stateful_underscore(q, len, p))
					return false;
			}
			if (b + 16 >= len)
				return true;
		}
	}
#endif
	for (; at < len && q[at]; at++) {
		if (q[at] == ';')
			return rest_blank(q, at, len);
		if (q[at] == '_' && stateful_underscore(q, len, at))
			return false;
	}
	return true;
}

unsigned sql_session_state_scan(const char *q, size_t len)
{
	struct scan s = {q, pgm_strnlen(q, len), 0}; /* protocol strings end at their NUL */
	struct tok t;
	unsigned bits = 0;
	while (next_tok(&s, &t)) {
		if (is_semi(&t))
			continue;
		bits |= statement(&s, &t);
	}
	return bits;
}

unsigned sql_session_state(const char *q, size_t len)
{
	len = pgm_strnlen(q, len);
	return plainly_stateless(q, len) ? 0 : sql_session_state_scan(q, len);
}

bool sql_plainly_stateless(const char *q, size_t len)
{
	return plainly_stateless(q, len);
}

/* An identifier token as PostgreSQL names it: "Quoted" kept, else lower-cased. */
static bool tok_name(const struct tok *t, char out[64])
{
	if (t->word) {
		if (t->n >= 64)
			return false;
		for (size_t i = 0; i < t->n; i++)
			out[i] = (char)tolower((unsigned char)t->p[i]);
		out[t->n] = 0;
		return true;
	}
	if (t->n >= 3 && t->p[0] == '"' && t->p[t->n - 1] == '"') {
		size_t o = 0;
		for (size_t i = 1; i + 1 < t->n; i++) {
			if (t->p[i] == '"')
				i++; /* "" is one quote */
			if (o >= 63)
				return false;
			out[o++] = t->p[i];
		}
		out[o] = 0;
		return o > 0;
	}
	return false;
}

/* The tokens of q when it is one statement (trailing ';' allowed): up to max of
 * them in t, their count (which may exceed max) in *n.  false for several. */
static bool one_statement(const char *q, size_t len, struct tok *t, size_t max, size_t *n)
{
	struct scan s = {q, pgm_strnlen(q, len), 0};
	struct tok x;
	*n = 0;
	while (next_tok(&s, &x)) {
		if (is_semi(&x)) {
			while (next_tok(&s, &x))
				if (!is_semi(&x))
					return false;
			break;
		}
		if (*n < max)
			t[*n] = x;
		(*n)++;
	}
	return true;
}

int sql_session_name(const char *q, size_t len, struct sql_sess_name *out)
{
	struct tok t[12];
	size_t n;
	memset(out, 0, sizeof(*out));
	if (!one_statement(q, len, t, 12, &n) || n > 12)
		return 0;
	bool hold = false;
	for (size_t i = 1; i < n; i++)
		hold |= is_kw(&t[i - 1], "with") && is_kw(&t[i], "hold");
	if (n < 2)
		return 0;
	size_t at = 1;
	if (is_kw(&t[0], "listen") && n == 2) {
		out->bit = SESS_LISTEN, out->op = SQL_NAME_ADD;
	} else if (is_kw(&t[0], "unlisten") && n == 2) {
		out->bit = SESS_LISTEN, out->op = SQL_NAME_REMOVE;
	} else if (is_kw(&t[0], "declare") && hold) {
		out->bit = SESS_HOLD_CURSOR, out->op = SQL_NAME_ADD;
	} else if (is_kw(&t[0], "close") && n == 2) {
		out->bit = SESS_HOLD_CURSOR, out->op = SQL_NAME_REMOVE;
	} else if (is_kw(&t[0], "prepare")) {
		out->bit = SESS_PREPARE, out->op = SQL_NAME_ADD;
	} else if (is_kw(&t[0], "deallocate")) {
		if (n == 3 && is_kw(&t[1], "prepare"))
			at = 2;
		else if (n != 2)
			return 0;
		out->bit = SESS_PREPARE, out->op = SQL_NAME_REMOVE;
	} else if (is_kw(&t[0], "create") && n >= 4 && (is_kw(&t[1], "temp") || is_kw(&t[1], "temporary")) &&
		   is_kw(&t[2], "table")) {
		at = 3;
		if (n >= 7 && is_kw(&t[3], "if") && is_kw(&t[4], "not") && is_kw(&t[5], "exists"))
			at = 6;
		if (at + 1 < n && t[at + 1].n == 1 && t[at + 1].p[0] == '.')
			return 0; /* schema-qualified */
		out->bit = SESS_TEMP, out->op = SQL_NAME_ADD;
	} else if (is_kw(&t[0], "drop") && is_kw(&t[1], "table")) {
		at = 2;
		if (n >= 5 && is_kw(&t[2], "if") && is_kw(&t[3], "exists"))
			at = 4;
		/* exactly one unqualified table, optionally CASCADE/RESTRICT */
		if (!(n == at + 1 || (n == at + 2 && (is_kw(&t[at + 1], "cascade") || is_kw(&t[at + 1], "restrict")))))
			return 0;
		out->bit = SESS_TEMP, out->op = SQL_NAME_REMOVE;
	} else {
		return 0;
	}
	if (at >= n || !tok_name(&t[at], out->name) || (out->op == SQL_NAME_REMOVE && is_kw(&t[at], "all")) ||
	    (t[at].n == 1 && t[at].p[0] == '*')) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	return 1;
}

unsigned sql_session_release(const char *q, size_t len)
{
	struct tok t[6];
	size_t n;
	if (!one_statement(q, len, t, 6, &n) || n > 6)
		return 0;
	bool star = n == 2 && t[1].n == 1 && t[1].p[0] == '*';
	if (n == 2 && is_kw(&t[0], "unlisten") && star)
		return SESS_LISTEN;
	if (n == 2 && is_kw(&t[0], "close") && is_kw(&t[1], "all"))
		return SESS_HOLD_CURSOR;
	if (n >= 2 && is_kw(&t[0], "deallocate") && is_kw(&t[n - 1], "all") &&
	    (n == 2 || (n == 3 && is_kw(&t[1], "prepare"))))
		return SESS_PREPARE;
	if (n == 2 && is_kw(&t[0], "discard") && (is_kw(&t[1], "temp") || is_kw(&t[1], "temporary")))
		return SESS_TEMP;
	if (n == 4 && is_kw(&t[0], "select") && is_kw(&t[1], "pg_advisory_unlock_all") && t[2].n == 1 &&
	    t[2].p[0] == '(' && t[3].n == 1 && t[3].p[0] == ')')
		return SESS_ADVISORY;
	return 0;
}

const char *sess_state_name(unsigned bits)
{
	static const char *names[] = {"SET", "SET ROLE", "LISTEN", "WITH HOLD cursor", "temporary table",
				      "PREPARE", "advisory lock"};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (bits & (1u << i))
			return names[i];
	return "none";
}

size_t sql_words(const char *q, size_t len, char words[][64], size_t max, bool *trailing)
{
	struct scan s = {q, pgm_strnlen(q, len), 0};
	struct tok t;
	size_t n = 0;
	*trailing = false;
	while (next_tok(&s, &t)) {
		if (is_semi(&t)) {
			/* Anything but more semicolons after the first statement? */
			while (next_tok(&s, &t))
				if (!is_semi(&t)) {
					*trailing = true;
					break;
				}
			break;
		}
		if (n == max) {
			*trailing = true;
			break;
		}
		size_t o = 0;
		if (t.n >= 2 && (t.p[0] == '"' || t.p[0] == '\'')) {
			/* Quoted: verbatim, doubled quotes undone. */
			for (size_t i = 1; i + 1 < t.n && o + 1 < 64; i++) {
				words[n][o++] = t.p[i];
				if (t.p[i] == t.p[0] && i + 2 < t.n && t.p[i + 1] == t.p[0])
					i++;
			}
		} else {
			for (size_t i = 0; i < t.n && o + 1 < 64; i++)
				words[n][o++] = t.p[i];
		}
		words[n][o] = 0;
		n++;
	}
	return n;
}

int sql_parse_set(const char *q, size_t len, struct sql_set *out)
{
	struct scan s = {q, pgm_strnlen(q, len), 0};
	struct tok t, a, v;
	memset(out, 0, sizeof(*out));
	/* Most texts are not a SET: their first word tells (comments aside). */
	size_t at = 0;
	while (at < s.len && isspace((unsigned char)q[at]))
		at++;
	size_t w = at;
	while (w < s.len && ident_char(q[w]))
		w++;
	if (at < s.len && q[at] != '-' && q[at] != '/' && !(w - at == 3 && letters_at(q, s.len, at, "set", 3)) &&
	    !(w - at == 5 && letters_at(q, s.len, at, "reset", 5)))
		return 0;
	if (!next_tok(&s, &t))
		return 0;
	bool reset = is_kw(&t, "reset");
	if (!reset && !is_kw(&t, "set"))
		return 0;
	if (!next_tok(&s, &a))
		return 0;
	if (!reset && is_kw(&a, "session") && !next_tok(&s, &a))
		return 0;
	if (!a.word || a.n >= sizeof(out->name))
		return 0;
	/* Forms with their own meaning are left to sql_session_state. */
	static const char *const special[] = {"local", "time", "role", "session", "transaction", "constraints",
					      "characteristics", "authorization", NULL};
	for (int i = 0; special[i]; i++)
		if (is_kw(&a, special[i]))
			return 0;
	for (size_t i = 0; i < a.n; i++)
		out->name[i] = (char)tolower((unsigned char)a.p[i]);
	out->name[a.n] = 0;
	/* A dotted custom name: my.setting */
	size_t after_name = s.i;
	while (after_name < s.len && s.q[after_name] == '.') {
		struct scan s2 = s;
		struct tok dot, part;
		if (!next_tok(&s2, &dot) || !next_tok(&s2, &part) || !part.word)
			return 0;
		size_t nl = strlen(out->name);
		if (nl + 1 + part.n >= sizeof(out->name))
			return 0;
		out->name[nl] = '.';
		for (size_t i = 0; i < part.n; i++)
			out->name[nl + 1 + i] = (char)tolower((unsigned char)part.p[i]);
		out->name[nl + 1 + part.n] = 0;
		s = s2;
		after_name = s.i;
	}
	if (reset) {
		if (strcmp(out->name, "all") == 0)
			out->kind = SQL_RESET_ALL;
		else
			out->kind = SQL_RESET;
	} else {
		struct tok eq;
		if (!next_tok(&s, &eq) || !(is_kw(&eq, "to") || (eq.n == 1 && eq.p[0] == '=')))
			return 0;
		out->kind = SQL_SET;
		/* The value: everything up to the end or the first top-level ';'. */
		size_t vstart = s.i;
		size_t vend = vstart;
		bool any = false;
		while (next_tok(&s, &v)) {
			if (is_semi(&v))
				break;
			vend = s.i;
			any = true;
		}
		if (!any)
			return 0;
		while (vstart < vend && isspace((unsigned char)q[vstart]))
			vstart++;
		out->value = q + vstart;
		out->value_len = vend - vstart;
	}
	/* Exactly one statement: nothing but semicolons may follow. */
	while (next_tok(&s, &v))
		if (!is_semi(&v))
			return 0;
	if (out->kind == SQL_SET && out->value_len == 7 && strncasecmp(out->value, "default", 7) == 0) {
		out->kind = SQL_RESET; /* SET x TO DEFAULT is RESET x */
		out->value = NULL;
		out->value_len = 0;
	}
	out->tracked = out->kind == SQL_RESET_ALL ? -1 : pg_tracked_param_index(out->name);
	if (out->tracked >= 0 && out->kind == SQL_SET)
		return 0; /* reported: followed through ParameterStatus */
	return 1;
}
