/* normalize.c - the hot-path SQL normalizer: one scanner, two printers.
 *
 * struct lex turns query bytes into classified tokens: it knows PostgreSQL's
 * lexical rules and just enough context (statement kind, type modifiers, IS NULL,
 * unary minus, positional ORDER BY) to decide, token by token, whether a literal
 * is a constant that libpg_query's pg_query_normalize would replace.
 * sql_normalize() prints the tokens canonically, collapses lists and hashes the
 * result; sql_redact() splices placeholders into the original text.  The rules
 * and every intended difference from libpg_query are documented in normalize.h.
 *
 * Speed: one pass (the scanner is inlined into the printer's loop), table-driven
 * character classes and spacing, perfect hashes for keywords compared eight
 * bytes at a time, a one-branch fast path for tokens that change no context, a
 * fused scan-and-print "fast lane" (fast_lane()) that takes nearly every token
 * of a typical statement with its context in local variables: Django's "t"."a",
 * "t"."b" as one piece (qident_run()), an IN (1, 2, 3) list collapsed in one
 * scan, VALUES rows, comments and a last ';' without leaving it.  Quoted
 * names, strings, comments and numbers are measured sixteen bytes at a time
 * with SSE2 (a byte loop elsewhere), words lower-cased eight at a time, tokens
 * copied in fixed-size moves; no allocation.
 * bench/normalize_bench.c measures it; `make normident` checks that a change
 * meant to keep the output keeps it byte for byte. */
#include "sql/normalize.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---------------------------------------------------------------- characters */

enum { C_SP = 1, C_IS = 2, C_IC = 4, C_DG = 8, C_OP = 16, C_OPX = 32, C_CM = 64, C_TK = 128 };

/* scan.l: space [ \t\n\r\f] (we add \v as PostgreSQL 16 does, and NUL, which the
 * server never sees inside a query); ident_start [A-Za-z\200-\377_]; ident_cont
 * adds [0-9$]; op_chars [~!@#^&|`?+\-*\/%<>=], C_OPX marking those that let an
 * operator end in + or -.  C_CM: the bytes that can start a comment (- and /).
 * C_TK: those that end a sqlcommenter key besides spaces (= , '). */
static const unsigned char cc[256] = {
	[0] = C_SP, ['\t'] = C_SP, ['\n'] = C_SP, ['\v'] = C_SP, ['\f'] = C_SP, ['\r'] = C_SP, [' '] = C_SP,
	['A' ... 'Z'] = C_IS | C_IC, ['a' ... 'z'] = C_IS | C_IC, ['_'] = C_IS | C_IC, [0x80 ... 0xff] = C_IS | C_IC,
	['0' ... '9'] = C_IC | C_DG, ['$'] = C_IC,
	['+'] = C_OP, ['-'] = C_OP | C_CM, ['*'] = C_OP, ['/'] = C_OP | C_CM, ['<'] = C_OP, ['>'] = C_OP, ['='] = C_OP | C_TK,
	['~'] = C_OP | C_OPX, ['!'] = C_OP | C_OPX, ['@'] = C_OP | C_OPX, ['#'] = C_OP | C_OPX,
	['%'] = C_OP | C_OPX, ['^'] = C_OP | C_OPX, ['&'] = C_OP | C_OPX, ['|'] = C_OP | C_OPX,
	['`'] = C_OP | C_OPX, ['?'] = C_OP | C_OPX, [','] = C_TK, ['\''] = C_TK,
};

#define CLS(c) (cc[(unsigned char)(c)])
#define ISDIGIT(c) ((unsigned)((unsigned char)(c) - '0') < 10u)
#define LOWER(c) ((unsigned char)((unsigned)((unsigned char)(c) - 'A') < 26u ? (c) | 0x20 : (c)))

/* Words eight bytes at a time where the byte order allows (see kw_lookup8). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LE64 1
#else
#define LE64 0
#endif

static inline uint64_t load8(const char *p)
{
	uint64_t x;
	memcpy(&x, p, 8);
	return x;
}

/* ASCII upper to lower case in eight bytes at once (bytes >= 0x80 unchanged). */
static inline uint64_t lower8(uint64_t x)
{
	uint64_t h = x & 0x7f7f7f7f7f7f7f7full;
	uint64_t ge_a = h + 0x3f3f3f3f3f3f3f3full;   /* high bit: byte >= 'A' */
	uint64_t gt_z = h + 0x2525252525252525ull;   /* high bit: byte > 'Z' */
	uint64_t up = (ge_a ^ gt_z) & ~x & 0x8080808080808080ull;
	return x | (up >> 2);
}

#define ONES8 0x0101010101010101ull

/* The high bit of the lowest zero byte of x is set, and maybe (a borrow) those
 * of higher bytes, but none of lower ones: only the lowest is ever used. */
static inline uint64_t zero_bytes(uint64_t x)
{
	return (x - ONES8) & ~x & (ONES8 << 7);
}

/* SSE2, the x86-64 baseline, looks at sixteen bytes at once where sixteen can
 * be read: the end of a quoted name, string or comment (find_byte()), of the
 * digits of a number, of a tag's value, and short tokens are copied in one
 * move.  Every use keeps a portable path for other targets and for the last
 * bytes of the input.  (Words are still measured byte by byte: on the
 * benchmark's statements the predicted loop beat a sixteen-byte mask, whose
 * result every later token waits for.) */
#if defined(__SSE2__) && LE64
#include <emmintrin.h>
#define VEC16 1

static inline __m128i vload(const char *p)
{
	return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* Bytes of v in [lo, hi] (hi - lo < 127): biased so that the range starts at
 * -128, then one signed compare. */
#define VRANGE(v, lo, hi) \
	_mm_cmplt_epi8(_mm_add_epi8((v), _mm_set1_epi8((char)(0x80 - (lo)))), _mm_set1_epi8((char)(0x80 + (hi) - (lo) + 1)))

/* Bit i: byte i of v is a digit. */
static inline unsigned vdigit(__m128i v)
{
	return (unsigned)_mm_movemask_epi8(VRANGE(v, '0', '9'));
}

#else
#define VEC16 0
#endif

/* Generated keyword table (see the comment above kw_lookup). */
enum kw_id { KID_NONE = 0, KS_ALL, KS_ALTER, KS_COPY, KS_CREATE, KS_DO, KS_EXPLAIN, KS_SET, KW_AUTHORIZATION, KW_CHARACTERISTICS, KW_CONSTRAINTS, KW_FUNCTION, KW_GROUP, KW_INTERVAL, KW_LOCAL, KW_MAPPING, KW_NAMES, KW_OR, KW_PROCEDURE, KW_REPLACE, KW_ROLE, KW_SCHEMA, KW_SESSION, KW_TIME, KW_TRANSACTION, KW_USER, KW_ZONE };
#define F_ALL (1u << 0)
#define F_ARRAY (1u << 1)
#define F_AS (1u << 2)
#define F_BOOLNULL (1u << 3)
#define F_BY (1u << 4)
#define F_CAST (1u << 5)
#define F_CLAUSE (1u << 6)
#define F_DEFAULT (1u << 7)
#define F_EXTRACT (1u << 8)
#define F_IN (1u << 9)
#define F_IS (1u << 10)
#define F_LIMIT (1u << 11)
#define F_NOT (1u << 12)
#define F_OPERATOR (1u << 13)
#define F_PASSWORD (1u << 14)
#define F_QUERY (1u << 15)
#define F_SORTBY (1u << 16)
#define F_SORTEND (1u << 17)
#define F_SPAREN (1u << 18)
#define F_TIMEFN (1u << 19)
#define F_TO (1u << 20)
#define F_TYPECONT (1u << 21)
#define F_UESCAPE (1u << 22)
#define F_UNARY (1u << 23)
#define F_VALUES (1u << 24)
#define KW_MAXLEN 17
#define KW_HASH(n, b0, b1, bl) ((((unsigned)(n) * 1483u) ^ ((unsigned)(b0) * 3966u) ^ ((unsigned)(b1) * 2035u) ^ ((unsigned)(bl) * 2184u)) & 511u)
struct kwent { char name[KW_MAXLEN + 1]; unsigned char len; unsigned char id; unsigned flags; };
static const struct kwent kwtab[] = {
	{ "", 0, 0, 0 },
	{ "all", 3, KID_NONE, F_UNARY | F_SPAREN | F_ALL },
	{ "alter", 5, KS_ALTER, 0 },
	{ "and", 3, KID_NONE, F_UNARY | F_SPAREN },
	{ "any", 3, KID_NONE, F_UNARY | F_SPAREN },
	{ "array", 5, KID_NONE, F_ARRAY },
	{ "as", 2, KID_NONE, F_SPAREN | F_AS },
	{ "asc", 3, KID_NONE, F_SORTEND },
	{ "asymmetric", 10, KID_NONE, F_UNARY },
	{ "authorization", 13, KW_AUTHORIZATION, 0 },
	{ "between", 7, KID_NONE, F_UNARY | F_SPAREN },
	{ "by", 2, KID_NONE, F_UNARY | F_SPAREN | F_BY },
	{ "case", 4, KID_NONE, F_UNARY | F_SPAREN },
	{ "cast", 4, KID_NONE, F_CAST },
	{ "characteristics", 15, KW_CHARACTERISTICS, 0 },
	{ "conflict", 8, KID_NONE, F_SPAREN },
	{ "constraints", 11, KW_CONSTRAINTS, 0 },
	{ "copy", 4, KS_COPY, F_SPAREN },
	{ "create", 6, KS_CREATE, 0 },
	{ "current_time", 12, KID_NONE, F_TIMEFN },
	{ "current_timestamp", 17, KID_NONE, F_TIMEFN },
	{ "day", 3, KID_NONE, F_TYPECONT },
	{ "declare", 7, KS_ALL, 0 },
	{ "default", 7, KID_NONE, F_DEFAULT },
	{ "delete", 6, KS_ALL, F_QUERY | F_CLAUSE },
	{ "desc", 4, KID_NONE, F_SORTEND },
	{ "distinct", 8, KID_NONE, F_UNARY | F_SPAREN },
	{ "do", 2, KS_DO, F_SPAREN },
	{ "else", 4, KID_NONE, F_UNARY | F_SPAREN },
	{ "except", 6, KID_NONE, F_SPAREN | F_CLAUSE | F_SORTEND },
	{ "exists", 6, KID_NONE, F_SPAREN },
	{ "explain", 7, KS_EXPLAIN, F_SPAREN },
	{ "extract", 7, KID_NONE, F_EXTRACT },
	{ "false", 5, KID_NONE, F_BOOLNULL },
	{ "fetch", 5, KID_NONE, F_CLAUSE | F_SORTEND },
	{ "filter", 6, KID_NONE, F_SPAREN },
	{ "for", 3, KID_NONE, F_UNARY | F_CLAUSE | F_SORTEND },
	{ "from", 4, KID_NONE, F_UNARY | F_SPAREN | F_CLAUSE },
	{ "function", 8, KW_FUNCTION, 0 },
	{ "group", 5, KW_GROUP, F_SORTBY | F_CLAUSE },
	{ "having", 6, KID_NONE, F_UNARY | F_SPAREN | F_CLAUSE | F_SORTEND },
	{ "hour", 4, KID_NONE, F_TYPECONT },
	{ "ilike", 5, KID_NONE, F_UNARY | F_SPAREN },
	{ "in", 2, KID_NONE, F_UNARY | F_SPAREN | F_IN },
	{ "insert", 6, KS_ALL, F_QUERY | F_CLAUSE },
	{ "intersect", 9, KID_NONE, F_SPAREN | F_CLAUSE | F_SORTEND },
	{ "interval", 8, KW_INTERVAL, 0 },
	{ "is", 2, KID_NONE, F_UNARY | F_IS },
	{ "join", 4, KID_NONE, F_SPAREN },
	{ "lateral", 7, KID_NONE, F_SPAREN },
	{ "like", 4, KID_NONE, F_UNARY | F_SPAREN },
	{ "limit", 5, KID_NONE, F_UNARY | F_LIMIT | F_CLAUSE | F_SORTEND },
	{ "local", 5, KW_LOCAL, 0 },
	{ "localtime", 9, KID_NONE, F_TIMEFN },
	{ "localtimestamp", 14, KID_NONE, F_TIMEFN },
	{ "mapping", 7, KW_MAPPING, 0 },
	{ "merge", 5, KS_ALL, F_QUERY | F_CLAUSE },
	{ "minute", 6, KID_NONE, F_TYPECONT },
	{ "month", 5, KID_NONE, F_TYPECONT },
	{ "names", 5, KW_NAMES, 0 },
	{ "not", 3, KID_NONE, F_UNARY | F_SPAREN | F_NOT },
	{ "null", 4, KID_NONE, F_BOOLNULL },
	{ "nulls", 5, KID_NONE, F_SORTEND },
	{ "offset", 6, KID_NONE, F_UNARY | F_CLAUSE | F_SORTEND },
	{ "on", 2, KID_NONE, F_UNARY | F_SPAREN | F_CLAUSE },
	{ "operator", 8, KID_NONE, F_OPERATOR },
	{ "or", 2, KW_OR, F_UNARY | F_SPAREN },
	{ "order", 5, KID_NONE, F_SORTBY | F_CLAUSE | F_SORTEND },
	{ "over", 4, KID_NONE, F_SPAREN },
	{ "password", 8, KID_NONE, F_PASSWORD },
	{ "precision", 9, KID_NONE, F_TYPECONT },
	{ "procedure", 9, KW_PROCEDURE, 0 },
	{ "replace", 7, KW_REPLACE, 0 },
	{ "returning", 9, KID_NONE, F_UNARY | F_SPAREN | F_CLAUSE | F_SORTEND },
	{ "role", 4, KW_ROLE, 0 },
	{ "schema", 6, KW_SCHEMA, 0 },
	{ "second", 6, KID_NONE, F_TYPECONT },
	{ "select", 6, KS_ALL, F_UNARY | F_SPAREN | F_QUERY | F_CLAUSE },
	{ "session", 7, KW_SESSION, 0 },
	{ "set", 3, KS_SET, F_SPAREN | F_CLAUSE },
	{ "similar", 7, KID_NONE, F_UNARY },
	{ "some", 4, KID_NONE, F_UNARY | F_SPAREN },
	{ "symmetric", 9, KID_NONE, F_UNARY },
	{ "table", 5, KS_ALL, F_QUERY },
	{ "then", 4, KID_NONE, F_UNARY | F_SPAREN },
	{ "time", 4, KW_TIME, F_TYPECONT },
	{ "to", 2, KID_NONE, F_UNARY | F_TO | F_TYPECONT },
	{ "transaction", 11, KW_TRANSACTION, 0 },
	{ "treat", 5, KID_NONE, F_CAST },
	{ "true", 4, KID_NONE, F_BOOLNULL },
	{ "uescape", 7, KID_NONE, F_UESCAPE },
	{ "union", 5, KID_NONE, F_SPAREN | F_CLAUSE | F_SORTEND },
	{ "until", 5, KID_NONE, F_PASSWORD },
	{ "update", 6, KS_ALL, F_QUERY | F_CLAUSE },
	{ "user", 4, KW_USER, 0 },
	{ "using", 5, KID_NONE, F_UNARY | F_SPAREN | F_SORTEND },
	{ "values", 6, KS_ALL, F_SPAREN | F_VALUES | F_QUERY | F_CLAUSE },
	{ "varying", 7, KID_NONE, F_TYPECONT },
	{ "when", 4, KID_NONE, F_UNARY | F_SPAREN },
	{ "where", 5, KID_NONE, F_UNARY | F_SPAREN | F_CLAUSE },
	{ "window", 6, KID_NONE, F_CLAUSE | F_SORTEND },
	{ "with", 4, KS_ALL, F_SPAREN | F_TYPECONT | F_QUERY | F_CLAUSE },
	{ "without", 7, KID_NONE, F_TYPECONT },
	{ "year", 4, KID_NONE, F_TYPECONT },
	{ "zone", 4, KW_ZONE, F_TYPECONT },
};
static const unsigned char kwslot[512] = {
	[9] = 47, [11] = 27, [18] = 63, [19] = 38, [20] = 102, [25] = 6, [28] = 68, [30] = 10, [31] = 15, [37] = 13, [39] = 77, [41] = 75, [43] = 86, [45] = 12, [46] = 64, [55] = 5, [57] = 11, [59] = 1, [60] = 29, [78] = 20, [83] = 25, [88] = 73, [89] = 40, [93] = 2, [103] = 61, [107] = 26, [115] = 32, [117] = 99, [118] = 98, [120] = 33, [121] = 88, [123] = 91, [131] = 17, [132] = 30, [141] = 24, [146] = 66, [149] = 3, [157] = 71, [167] = 76, [182] = 28, [184] = 60, [194] = 22, [195] = 100, [197] = 74, [198] = 37, [202] = 23, [205] = 35, [209] = 41, [212] = 51, [213] = 104, [216] = 59, [221] = 96, [226] = 52, [230] = 18, [231] = 87, [240] = 95, [243] = 39, [250] = 82, [252] = 84, [254] = 53, [255] = 14, [258] = 21, [259] = 94, [263] = 50, [290] = 43, [294] = 56, [300] = 80, [301] = 48, [306] = 97, [311] = 85, [314] = 65, [323] = 81, [325] = 70, [326] = 16, [327] = 45, [331] = 69, [332] = 58, [340] = 83, [341] = 101, [348] = 34, [359] = 57, [363] = 92, [364] = 90, [366] = 7, [373] = 42, [384] = 55, [388] = 79, [398] = 9, [408] = 36, [409] = 19, [419] = 31, [422] = 44, [426] = 89, [428] = 93, [440] = 78, [452] = 62, [470] = 49, [481] = 8, [486] = 72, [493] = 103, [495] = 54, [499] = 67, [508] = 46, [509] = 4
};

/* Keywords of at most eight bytes have a second, cheaper perfect hash for the
 * scanner's hot path (kw_find8): the lower-cased word as a little-endian integer,
 * NUL-padded, times KW8_MUL, top nine bits.  KW8_MUL is an odd multiplier found
 * by trying random ones until the keywords of kwtab[] up to eight bytes fell in
 * distinct slots; kwslot8[] holds their kwtab index (0: none).  A new keyword of
 * up to eight bytes needs a new search (or a check that its slot is free). */
#if LE64
#define KW8_MUL 0x94eafc854b9ceb25ull
static const unsigned char kwslot8[512] = {
	[6] = 78, [13] = 92, [14] = 56, [15] = 79, [19] = 3, [25] = 43, [26] = 39, [27] = 15, [30] = 27, [35] = 22,
	[36] = 77, [38] = 11, [47] = 1, [51] = 59, [54] = 30, [58] = 67, [60] = 62, [61] = 89, [69] = 103,
	[77] = 61, [79] = 41, [88] = 24, [91] = 101, [92] = 97, [94] = 93, [105] = 49, [108] = 66, [114] = 37,
	[117] = 40, [118] = 102, [125] = 2, [127] = 83, [134] = 38, [146] = 55, [153] = 60, [157] = 23, [166] = 74,
	[169] = 29, [170] = 42, [174] = 50, [182] = 35, [187] = 86, [196] = 57, [203] = 48, [232] = 96, [237] = 13,
	[257] = 99, [264] = 88, [270] = 26, [274] = 18, [275] = 80, [276] = 64, [281] = 65, [288] = 21, [290] = 32,
	[301] = 98, [306] = 75, [310] = 94, [314] = 33, [320] = 63, [327] = 47, [328] = 7, [334] = 12, [337] = 51,
	[340] = 31, [344] = 36, [375] = 34, [385] = 4, [391] = 5, [394] = 46, [396] = 52, [424] = 90, [430] = 72,
	[431] = 76, [432] = 84, [436] = 44, [439] = 69, [443] = 25, [445] = 68, [451] = 10, [455] = 91, [456] = 95,
	[457] = 81, [463] = 100, [467] = 28, [469] = 58, [487] = 104, [490] = 17, [495] = 85, [504] = 6
};
#endif

/* Keywords: a perfect hash over (length, first, second and last byte) of the
 * lower-cased word, found by a search over the four multipliers; kwtab[0] is the
 * empty "not a keyword" entry.  Adding a keyword means searching new multipliers
 * so that kwslot[] stays collision-free: the generator is not in the repository,
 * so check a new table by looking up every entry (a word whose slot holds
 * another's is simply not found), and run `make sqldiff` and `make normident`. */
static inline const struct kwent *kw_lookup(const char *s, size_t n)
{
	if (n > KW_MAXLEN || n == 0)
		return &kwtab[0];
	unsigned h = KW_HASH(n, LOWER(s[0]), n > 1 ? LOWER(s[1]) : 0u, LOWER(s[n - 1]));
	const struct kwent *k = &kwtab[kwslot[h]];
	if (k->len != n)
		return &kwtab[0];
	for (size_t i = 0; i < n; i++)
		if (LOWER(s[i]) != (unsigned char)k->name[i])
			return &kwtab[0];
	return k;
}

#if LE64
/* The first n bytes of a little-endian word (n <= 8). */
static const uint64_t len_mask[9] = {
	0, 0xff, 0xffff, 0xffffff, 0xffffffff, 0xffffffffffull, 0xffffffffffffull, 0xffffffffffffffull, ~0ull,
};

/* The keyword of n <= 8 bytes whose lower-cased eight bytes (the word and what
 * follows it) are lw. */
static inline __attribute__((always_inline)) const struct kwent *kw_find8(uint64_t lw, size_t n)
{
	uint64_t w = lw & len_mask[n];
	const struct kwent *k = &kwtab[kwslot8[(w * KW8_MUL) >> 55]];
	/* kwslot8[] holds names of at most eight bytes: NUL-padded, as w is, and
	 * neither holds a NUL byte, so equal eight bytes mean equal lengths too
	 * (kwtab[0]'s empty name is 0, no word's w is) */
	return load8(k->name) == w ? k : &kwtab[0];
}
#endif

/* The same for a word of n <= 16 bytes at s when 16 bytes can be read there, or
 * 8 when n <= 8: the lower-cased word is compared as one or two 64-bit integers
 * with the NUL-padded name (little-endian: byte i of the word is bits 8i..8i+7). */
static inline __attribute__((always_inline)) const struct kwent *kw_lookup8(const char *s, size_t n,
									    const char *end)
{
#if LE64
	if (n <= 8 && end - s >= 8)
		return kw_find8(lower8(load8(s)), n);
	if (n > 8 && n <= 16 && end - s >= 16) {
		uint64_t w0 = lower8(load8(s));
		uint64_t w1 = lower8(load8(s + 8)) & (~0ull >> (128 - 8 * n));
		unsigned h = KW_HASH(n, w0 & 0xff, (w0 >> 8) & 0xff, (w1 >> (8 * (n - 9))) & 0xff);
		const struct kwent *k = &kwtab[kwslot[h]];
		return (k->len == n && load8(k->name) == w0 && load8(k->name + 8) == w1) ? k : &kwtab[0];
	}
#endif
	return kw_lookup(s, n);
}

/* -------------------------------------------------------------------- tokens */

enum tk {
	TK_EOF,     /* also "statement start" as the previous token */
	TK_WORD,    /* unquoted identifier or keyword: printed lower-cased */
	TK_QIDENT,  /* "quoted" or U&"quoted" identifier: printed as written */
	TK_CONST,   /* a constant libpg_query replaces: printed as $n */
	TK_KEEP,    /* a literal libpg_query keeps (typmods, utility statements) */
	TK_PARAM,   /* $n written by the client: printed as $n, renumbered */
	TK_OP,      /* operator, or any other single character */
	TK_LPAREN, TK_RPAREN, TK_LBRACK, TK_RBRACK, TK_COMMA, TK_SEMI, TK_DOT, TK_COLON,
	TK_CAST,    /* :: */
	TK_MARKER,  /* the comment slash-star ", ... " star-slash that marks a collapsed list */
};

struct tok {
	const char *s;
	size_t n;
	unsigned char kind;
	unsigned char id;   /* enum kw_id of a TK_WORD */
	unsigned kw;        /* F_* flags of a TK_WORD */
};

/* Statement modes: which literals are constants (see normalize.h). */
enum { M_NONE, M_ALL, M_SET, M_ROLE, M_STRINGS, M_FUNC };
/* What the token after the current one decides. */
enum { P_NONE, P_EXPLAIN, P_COPY, P_CREATE, P_ALTER, P_ROLEFIRST };
/* SET statement phases. */
enum { SP_START, SP_SESSION, SP_TIME, SP_NAME, SP_VALUE };
/* Type context: after :: or CAST(... AS, where ( and [ open type modifiers. */
enum { TS_NONE, TS_EXPECT, TS_AFTER };

struct lex {
	const char *p, *end;
	struct sql_norm *res;     /* sqlcommenter tags are added here; NULL: ignored */
	int depth;                /* ( and [ nesting */
	int region_depth;         /* EXPLAIN (options) / COPY (query): mode override */
	int typmod_depth;         /* inside type modifiers from this depth on; -1 none */
	int posdepth;             /* query-level ORDER BY / GROUP BY list at this depth */
	uint64_t castmask;        /* bit d: the paren that opened depth d is CAST( */
	uint64_t qmask;           /* bit d: depth d holds a query (SELECT, VALUES...) */
	uint64_t opmask;          /* bit d: the paren that opened depth d is OPERATOR( */
	unsigned char mode, region_mode, pend, setph, tstate;
	unsigned char start;      /* the next token starts a statement */
	unsigned char extract;    /* the next token is EXTRACT's field */
	unsigned char paren_first;/* the next token is the first inside a paren */
	unsigned char pos_elem;   /* the next token starts a positional list element */
	unsigned char set_tz, set_interval;
	unsigned char busy;       /* context above other than paren_first is open: see the fast path;
				   * BUSY_POS: only an ORDER BY list (the fast lane copes with it) */
	unsigned char prev;       /* kind of the previous token */
	unsigned prev_kw, prev2_kw;
};

#define BUSY_POS 8 /* above the bits of start, extract, pend, tstate */

static void lex_init(struct lex *lx, const char *q, size_t len, struct sql_norm *res)
{
	memset(lx, 0, sizeof(*lx));
	lx->p = q;
	lx->end = q + len;
	lx->res = res;
	lx->region_depth = lx->typmod_depth = lx->posdepth = -1;
	lx->start = 1;
	lx->busy = 1;
	lx->qmask = 1;
	lx->prev = TK_EOF;
}

/* Just past the run of ident_cont bytes from p. */
static inline const char *ident_end(const char *p, const char *end)
{
	/* eight bytes without the bound check while eight remain (unrolled: a
	 * test and a branch per byte) */
	for (; end - p >= 8; p += 8)
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			if (!(CLS(p[i]) & C_IC))
				return p + i;
	while (p < end && (CLS(*p) & C_IC))
		p++;
	return p;
}

/* The first byte c in [p, end), or end.  Identifiers, strings and comments are
 * short: up to 64 bytes are searched sixteen at a time (SSE2) or 32 eight at a
 * time in registers, only where so many bytes can be read, the rest by memchr. */
static inline __attribute__((always_inline)) const char *find_byte(const char *p, const char *end, unsigned char c)
{
#if LE64
	int words = 4; /* eight-byte steps before memchr */
#endif
#if VEC16
	for (int i = 0; i < 4 && end - p >= 16; i++, p += 16) {
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(vload(p), _mm_set1_epi8((char)c)));
		if (m)
			return p + __builtin_ctz(m);
	}
	if (end - p >= 16)
		words = 0; /* a long run: memchr's */
#endif
#if LE64
	for (int i = 0; i < words && end - p >= 8; i++, p += 8) {
		uint64_t z = zero_bytes(load8(p) ^ (ONES8 * c));
		if (z)
			return p + (__builtin_ctzll(z) >> 3);
	}
#endif
	const char *q = memchr(p, c, (size_t)(end - p));
	return q ? q : end;
}

static inline const char *line_end(const char *p, const char *end)
{
	while (p < end && *p != '\n' && *p != '\r')
		p++;
	return p;
}

/* p at slash-star; returns just past the matching star-slash (they nest), or end.
 * Every slash-star and star-slash holds a '/': memchr goes from one to the next
 * (a '*' before p belongs to a slash-star already taken). */
static const char *comment_end(const char *p, const char *end)
{
	int depth = 1;
	p += 2;
	while (p < end) {
		const char *q = find_byte(p, end, '/');
		if (q == end)
			break;
		if (q > p && q[-1] == '*') {
			p = q + 1;
			if (--depth == 0)
				return p;
		} else if (q + 1 < end && q[1] == '*') {
			p = q + 2;
			depth++;
		} else {
			p = q + 1;
		}
	}
	return end;
}

static const char *skip_ws(const char *p, const char *end)
{
	for (;;) {
		while (p < end && (CLS(*p) & C_SP))
			p++;
		if (p + 1 < end && p[0] == '-' && p[1] == '-')
			p = line_end(p, end);
		else if (p + 1 < end && p[0] == '/' && p[1] == '*')
			p = comment_end(p, end);
		else
			return p;
	}
}

/* After a closing quote: scan.l's {quotecontinue}, whitespace that holds a newline
 * followed by a quote, glues the next '...' to this string.  Returns the quote. */
static const char *quote_continue(const char *p, const char *end)
{
	int nl = 0;
	while (p < end) {
		char c = *p;
		if (c == '\n' || c == '\r') {
			nl = 1;
			p++;
		} else if (CLS(c) & C_SP) {
			p++;
		} else if (c == '-' && p + 1 < end && p[1] == '-') {
			p = line_end(p, end);
		} else {
			break;
		}
	}
	return (nl && p < end && *p == '\'') ? p : NULL;
}

/* p just past the opening quote of '...', U&'...' (doubled quotes). */
static const char *scan_qstring(const char *p, const char *end)
{
	for (;;) {
		const char *q = find_byte(p, end, '\'');
		if (q == end)
			return end;
		if (q + 1 < end && q[1] == '\'') {
			p = q + 2;
			continue;
		}
		if (q + 1 < end && (CLS(q[1]) & C_SP)) {
			const char *r = quote_continue(q + 1, end);
			if (r) {
				p = r + 1;
				continue;
			}
		}
		return q + 1;
	}
}

/* E'...': backslash escapes and doubled quotes. */
static const char *scan_estring(const char *p, const char *end)
{
	while (p < end) {
		char c = *p;
		if (c == '\\') {
			p = p + 1 < end ? p + 2 : end;
		} else if (c == '\'') {
			if (p + 1 < end && p[1] == '\'') {
				p += 2;
				continue;
			}
			const char *r = quote_continue(p + 1, end);
			if (!r)
				return p + 1;
			p = r + 1;
		} else {
			p++;
		}
	}
	return end;
}

/* B'...', X'...': no escapes, no doubling (scan.l's xb/xh). */
static const char *scan_bstring(const char *p, const char *end)
{
	for (;;) {
		const char *q = memchr(p, '\'', (size_t)(end - p));
		if (!q)
			return end;
		const char *r = quote_continue(q + 1, end);
		if (!r)
			return q + 1;
		p = r + 1;
	}
}

/* p just past the opening double quote. */
static inline const char *scan_qident(const char *p, const char *end)
{
	for (;;) {
		p = find_byte(p, end, '"');
		if (p == end)
			return end;
		if (p + 1 < end && p[1] == '"') {
			p += 2;
			continue;
		}
		return p + 1;
	}
}

/* The closing $tag$ of a dollar-quoted string, or NULL. */
static const char *find_tag(const char *p, const char *end, const char *tag, size_t tl)
{
	while ((size_t)(end - p) >= tl) {
		const char *q = memchr(p, '$', (size_t)(end - p) - tl + 1);
		if (!q)
			return NULL;
		if (memcmp(q, tag, tl) == 0)
			return q;
		p = q + 1;
	}
	return NULL;
}

static inline int is_hex(char c)
{
	return ISDIGIT(c) || (unsigned)((unsigned char)c - 'a') < 6u || (unsigned)((unsigned char)c - 'A') < 6u;
}

/* Numbers: 1, 1.5, 1., .5, 1e-5, and PostgreSQL 16's 0x1F, 0o17, 0b101, 1_000.
 * Trailing identifier characters (PostgreSQL 15's "trailing junk", an error
 * there) stay part of the number so that "1abc" is one deterministic token. */
static const char *scan_number(const char *p, const char *end)
{
	if (p[0] == '0' && p + 2 < end && ((p[1] | 0x20) == 'x' || (p[1] | 0x20) == 'o' || (p[1] | 0x20) == 'b') &&
	    is_hex(p[2])) {
		p += 2;
		while (p < end && (is_hex(*p) || *p == '_'))
			p++;
	} else {
		while (p < end && (ISDIGIT(*p) || (*p == '_' && p + 1 < end && ISDIGIT(p[1]))))
			p++;
		if (p < end && *p == '.' && !(p + 1 < end && p[1] == '.')) {
			p++;
			while (p < end && (ISDIGIT(*p) || (*p == '_' && p + 1 < end && ISDIGIT(p[1]))))
				p++;
		}
		if (p < end && (*p | 0x20) == 'e') {
			const char *q = p + 1;
			if (q < end && (*q == '+' || *q == '-'))
				q++;
			if (q < end && ISDIGIT(*q)) {
				p = q;
				while (p < end && ISDIGIT(*p))
					p++;
			}
		}
	}
	while (p < end && (CLS(*p) & C_IC))
		p++;
	return p;
}

/* scan_number(), inline for the common plain integer: digits followed by a byte that
 * can continue no number form (nor "trailing junk"). */
static inline __attribute__((always_inline)) const char *scan_number_inl(const char *p, const char *end)
{
	const char *q = p;
#if VEC16
	unsigned nd;
	if (end - p >= 16 && (nd = ~vdigit(vload(p)) & 0xffffu) != 0)
		q = p + __builtin_ctz(nd);
	else
#endif
		while (q < end && ISDIGIT(*q))
			q++;
	if (q > p && (q == end || (!(CLS(*q) & C_IC) && *q != '.')))
		return q;
	return scan_number(p, end);
}

/* After a '-' (p just past it): the end of the number that follows, which the
 * sign folds into, with its start in *d; NULL when no number follows or it is
 * cast (-1::int is -(1::int) to the grammar). */
static const char *signed_number_end(const char *p, const char *end, const char **d)
{
	*d = skip_ws(p, end);
	if (*d >= end || !(ISDIGIT(**d) || (**d == '.' && *d + 1 < end && ISDIGIT((*d)[1]))))
		return NULL;
	const char *e = scan_number_inl(*d, end);
	const char *r = skip_ws(e, end);
	return r + 1 < end && r[0] == ':' && r[1] == ':' ? NULL : e;
}

static inline int is_integer(const char *s, const char *e)
{
	if (s == e)
		return 0;
	for (; s < e; s++)
		if (!ISDIGIT(*s))
			return 0;
	return 1;
}

/* The first byte in [p, end) that is a or b, or end. */
static inline const char *find_either(const char *p, const char *end, char a, char b)
{
#if VEC16
	for (; end - p >= 16; p += 16) {
		__m128i v = vload(p);
		unsigned m = (unsigned)_mm_movemask_epi8(
			_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(a)), _mm_cmpeq_epi8(v, _mm_set1_epi8(b))));
		if (m)
			return p + __builtin_ctz(m);
	}
#endif
#if LE64
	if (end - p >= 8) {
		uint64_t x = load8(p);
		uint64_t z = zero_bytes(x ^ (ONES8 * (unsigned char)a)) | zero_bytes(x ^ (ONES8 * (unsigned char)b));
		if (z)
			return p + (__builtin_ctzll(z) >> 3);
		p += 8;
	}
#endif
	while (p < end && *p != a && *p != b)
		p++;
	return p;
}

/* ------------------------------------------------------------ sqlcommenter */

/* key='value'[,key='value']... filling the whole comment body; anything else is
 * an ordinary comment and adds no tags. */
static void parse_tags(struct sql_norm *res, const char *s, size_t n)
{
	struct sql_tag tmp[SQL_MAX_TAGS];
	int nt = 0;
	size_t i = 0;
	for (;;) {
		while (i < n && (CLS(s[i]) & C_SP))
			i++;
		if (i == n)
			break;
		size_t k0 = i;
		while (i < n && !(CLS(s[i]) & (C_SP | C_TK)))
			i++;
		if (i == k0 || i + 1 >= n || s[i] != '=' || s[i + 1] != '\'')
			return;
		size_t k1 = i;
		i += 2;
		size_t v0 = i;
		for (;;) { /* the closing quote: the first not after a backslash */
			i = (size_t)(find_either(s + i, s + n, '\'', '\\') - s);
			if (i >= n || s[i] == '\'')
				break;
			i += 2; /* \x */
			if (i >= n) {
				i = n;
				break;
			}
		}
		if (i >= n)
			return;
		if (nt < SQL_MAX_TAGS)
			tmp[nt++] = (struct sql_tag){ s + k0, k1 - k0, s + v0, i - v0 };
		i++;
		while (i < n && (CLS(s[i]) & C_SP))
			i++;
		if (i == n)
			break;
		if (s[i] != ',')
			return;
		i++;
	}
	for (int k = 0; k < nt && res->ntags < SQL_MAX_TAGS; k++)
		res->tags[res->ntags++] = tmp[k];
}

void sql_comment_tags(const char *c, size_t n, struct sql_norm *res)
{
	memset(res, 0, sizeof(*res));
	if (n >= 4 && c[0] == '/' && c[1] == '*' && c[n - 2] == '*' && c[n - 1] == '/')
		parse_tags(res, c + 2, n - 4);
}

static inline int hexval(char c)
{
	if (ISDIGIT(c))
		return c - '0';
	c = (char)(c | 0x20);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

size_t sql_tag_decode(const char *v, size_t n, char *out, size_t cap)
{
	if (cap == 0)
		return 0;
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < cap;) {
		if (v[i] == '\\' && i + 1 < n && v[i + 1] == '\'') {
			out[o++] = '\'';
			i += 2;
		} else if (v[i] == '%' && i + 2 < n && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
			out[o++] = (char)(hexval(v[i + 1]) * 16 + hexval(v[i + 2]));
			i += 3;
		} else {
			out[o++] = v[i++];
		}
	}
	out[o] = 0;
	return o;
}

/* ------------------------------------------------------------------ scanner */

static inline int emode(const struct lex *lx)
{
	return (lx->region_depth >= 0 && lx->depth >= lx->region_depth) ? lx->region_mode : lx->mode;
}

static inline int in_typmod(const struct lex *lx)
{
	return lx->typmod_depth >= 0 && lx->depth >= lx->typmod_depth;
}

/* Would a number here be a constant? */
static inline int num_const(const struct lex *lx)
{
	if (in_typmod(lx))
		return 0;
	int m = emode(lx);
	return m == M_ALL || (m == M_SET && lx->setph == SP_VALUE);
}

/* Is a '-' here a sign (the grammar's doNegate) rather than binary minus? */
static inline int unary_ctx(const struct lex *lx)
{
	if (lx->mode == M_SET && lx->setph == SP_VALUE)
		return 1; /* SET x = -1: the value is one signed number */
	switch (lx->prev) {
	case TK_EOF: case TK_OP: case TK_LPAREN: case TK_LBRACK: case TK_COMMA: case TK_SEMI: case TK_COLON:
		return 1;
	case TK_WORD:
		return (lx->prev_kw & F_UNARY) != 0;
	default:
		return 0;
	}
}

/* Length of the operator at p (scan.l's operator rule): it stops at an embedded
 * comment start, and a multi-character operator may not end in + or - unless it
 * holds one of ~!@#^&|`?% */
static inline size_t op_len(const char *p, const char *end)
{
	if (p + 1 >= end || !(CLS(p[1]) & C_OP))
		return 1; /* most operators are one byte */
	const char *q = p;
	int special = 0;
	while (q < end && (CLS(*q) & C_OP)) {
		if (q > p && q + 1 < end && ((q[0] == '-' && q[1] == '-') || (q[0] == '/' && q[1] == '*')))
			break;
		special |= CLS(*q) & C_OPX;
		q++;
	}
	size_t n = (size_t)(q - p);
	if (n > 1 && !special && (p[n - 1] == '+' || p[n - 1] == '-'))
		do
			n--;
		while (n > 1 && (p[n - 1] == '+' || p[n - 1] == '-'));
	return n;
}

/* An integer in a query-level ORDER BY / GROUP BY list is a column position that
 * libpg_query leaves alone, when it is the whole element. */
static int positional_end(const char *p, const char *end)
{
	p = skip_ws(p, end);
	if (p >= end || *p == ',' || *p == ')' || *p == ';')
		return 1;
	if (!(CLS(*p) & C_IS))
		return 0;
	const char *s = p;
	while (p < end && (CLS(*p) & C_IC))
		p++;
	return (kw_lookup(s, (size_t)(p - s))->flags & F_SORTEND) != 0;
}

static inline int string_const(const struct lex *lx, const char *s)
{
	if ((lx->prev == TK_WORD && (lx->prev_kw & F_UESCAPE)) || in_typmod(lx))
		return 0;
	switch (emode(lx)) {
	case M_ALL:
		return 1;
	case M_SET:
		return lx->setph == SP_VALUE;
	case M_ROLE:
		return lx->prev == TK_WORD && (lx->prev_kw & F_PASSWORD) && *s == '\'';
	case M_STRINGS:
		return 1;
	case M_FUNC:
		return lx->depth == 0;
	default:
		return 0;
	}
}

#define SLOW_KINDS \
	((1u << TK_SEMI) | (1u << TK_LPAREN) | (1u << TK_RPAREN) | (1u << TK_LBRACK) | (1u << TK_RBRACK) | (1u << TK_CAST))

static inline __attribute__((always_inline)) void lex_next_inl(struct lex *lx, struct tok *t)
{
	const char *p = lx->p, *end = lx->end;
	/* most tokens follow one space or none: step over it without a branch,
	 * and go round the loop only for more whitespace or a comment */
	if (p < end)
		p += *p == ' ';
	while (p < end && (CLS(*p) & (C_SP | C_CM))) {
		while (p < end && (CLS(*p) & C_SP))
			p++;
		if (p + 1 < end && p[0] == '-' && p[1] == '-') {
			p = line_end(p, end);
			continue;
		}
		if (p + 1 < end && p[0] == '/' && p[1] == '*') {
			const char *c0 = p;
			p = comment_end(p, end);
			if (p - c0 == 10 && memcmp(c0, "/*, ... */", 10) == 0) {
				t->s = c0;
				t->n = 10;
				t->kind = TK_MARKER;
				t->kw = 0;
				t->id = 0;
				lx->p = p;
				return;
			}
			if (lx->res && p - c0 >= 4 && p[-1] == '/' && p[-2] == '*')
				parse_tags(lx->res, c0 + 2, (size_t)(p - c0 - 4));
			continue;
		}
		break;
	}
	t->kw = 0;
	t->id = 0;
	if (p >= end) {
		t->s = p;
		t->n = 0;
		t->kind = TK_EOF;
		lx->p = p;
		return;
	}

	const char *s = p;
	unsigned char c = (unsigned char)*p;
	unsigned char cls = cc[c];
	int start = lx->start;
	int ex = lx->extract;
	int pf = lx->paren_first;
	int pe = lx->pos_elem && lx->depth == lx->posdepth;
	unsigned char kind;
	lx->extract = lx->paren_first = lx->pos_elem = 0;

	if (cls & C_IS) {
		unsigned char c1 = p + 1 < end ? (unsigned char)p[1] : 0;
		if (c1 == '\'' && ((c | 0x20) == 'e' || (c | 0x20) == 'b' || (c | 0x20) == 'x')) {
			p = (c | 0x20) == 'e' ? scan_estring(p + 2, end) : scan_bstring(p + 2, end);
			goto string;
		}
		if ((c | 0x20) == 'u' && c1 == '&' && p + 2 < end) {
			if (p[2] == '\'') {
				p = scan_qstring(p + 3, end);
				goto string;
			}
			if (p[2] == '"') {
				p = scan_qident(p + 3, end);
				goto qident;
			}
		}
		p++;
		/* N'...' is the keyword NCHAR followed by a string (scan.l's xnstart) */
		if (!(c1 == '\'' && (c | 0x20) == 'n'))
			p = ident_end(p, end);
		const struct kwent *k = kw_lookup8(s, (size_t)(p - s), end);
		t->kw = k->flags;
		t->id = k->id;
		kind = TK_WORD;
		if (start) {
			/* the statement's first word sets its mode */
		} else if (emode(lx) == M_ALL) {
			if (ex)
				kind = TK_CONST;
			else if (k->flags & F_BOOLNULL)
				kind = ((lx->prev_kw & F_IS) || ((lx->prev_kw & F_NOT) && (lx->prev2_kw & F_IS))) ? TK_WORD : TK_CONST;
			else if ((k->flags & F_ALL) && (lx->prev_kw & F_LIMIT))
				kind = TK_CONST;
		} else if (lx->mode == M_SET && lx->setph == SP_VALUE) {
			if (k->flags & F_DEFAULT)
				kind = TK_WORD;
			else if (lx->set_tz && k->id == KW_LOCAL)
				kind = TK_WORD;
			else if (k->id == KW_INTERVAL)
				lx->set_interval = 1;
			else if (!lx->set_interval)
				kind = TK_CONST;
		}
		goto done;
	}
	if ((cls & C_DG) || (c == '.' && p + 1 < end && ISDIGIT(p[1]))) {
		p = scan_number_inl(p, end);
		if (!num_const(lx))
			kind = TK_KEEP;
		else if (pe && emode(lx) == M_ALL && is_integer(s, p) && positional_end(p, end))
			kind = TK_KEEP;
		else
			kind = TK_CONST;
		goto done;
	}
	switch (c) {
	case '\'':
		p = scan_qstring(p + 1, end);
		goto string;
	case '"':
		p = scan_qident(p + 1, end);
		goto qident;
	case '$':
		if (p + 1 < end && ISDIGIT(p[1])) {
			p += 2;
			while (p < end && ISDIGIT(*p))
				p++;
			kind = TK_PARAM;
			goto done;
		}
		{
			/* $tag$ ... $tag$ (tag: ident_start then ident_cont without $) */
			const char *q = p + 1;
			if (q < end && (CLS(*q) & C_IS)) {
				q++;
				while (q < end && (CLS(*q) & C_IC) && *q != '$')
					q++;
			}
			if (q < end && *q == '$') {
				size_t tl = (size_t)(q + 1 - p);
				const char *body = q + 1;
				const char *close = find_tag(body, end, p, tl);
				p = close ? close + tl : end;
				goto string;
			}
		}
		p++;
		kind = TK_OP;
		goto done;
	case '(':
		p++;
		kind = TK_LPAREN;
		goto done;
	case ')':
		p++;
		kind = TK_RPAREN;
		goto done;
	case '[':
		p++;
		kind = TK_LBRACK;
		goto done;
	case ']':
		p++;
		kind = TK_RBRACK;
		goto done;
	case ',':
		p++;
		kind = TK_COMMA;
		goto done;
	case ';':
		p++;
		kind = TK_SEMI;
		goto done;
	case '.':
		p++;
		kind = TK_DOT;
		goto done;
	case ':':
		if (p + 1 < end && p[1] == ':') {
			p += 2;
			kind = TK_CAST;
		} else if (p + 1 < end && p[1] == '=') {
			p += 2;
			kind = TK_OP;
		} else {
			p++;
			kind = TK_COLON;
		}
		goto done;
	default:
		break;
	}
	if (cls & C_OP) {
		/* scan.l's operator rule: stop at an embedded comment start; a multi-char
		 * operator may not end in + or - unless it holds one of ~!@#^&|`?% */
		size_t n = op_len(p, end);
		p += n;
		kind = TK_OP;
		if (n == 1 && *s == '-' && unary_ctx(lx) && num_const(lx)) {
			/* "- 1": one negative constant, as the grammar folds it, unless the
			 * number is cast (-1::int is -(1::int) to the grammar) */
			const char *d, *e = signed_number_end(p, end, &d);
			if (e) {
				p = e;
				kind = (pe && emode(lx) == M_ALL && is_integer(d, e) && positional_end(e, end)) ? TK_KEEP
														: TK_CONST;
			}
		}
		goto done;
	}
	p++; /* any other byte: a one-character token */
	kind = TK_OP;
	goto done;

string:
	kind = (!start && string_const(lx, s)) ? TK_CONST : TK_KEEP;
	goto done;
qident:
	kind = TK_QIDENT;
	if (!start && ((ex && emode(lx) == M_ALL) || (lx->mode == M_SET && lx->setph == SP_VALUE)))
		kind = TK_CONST;

done:
	t->s = s;
	t->n = (size_t)(p - s);
	t->kind = kind;
	lx->p = p;

	/* ---- context for the tokens that follow ---- */
	/* Fast path: most tokens (words, quoted identifiers, constants, operators,
	 * dots, commas) change nothing but prev when no statement start, pending
	 * decision, type context, SET or ORDER BY list is open.  Decided with one
	 * branch; the full rules below give the same result for these tokens. */
	{
		unsigned slow = ((SLOW_KINDS >> kind) & 1u) | lx->busy | (unsigned)pf |
				(unsigned)((t->kw & (F_AS | F_BY)) != 0);
		if (!slow) {
			lx->prev2_kw = lx->prev_kw;
			lx->prev_kw = kind == TK_WORD ? t->kw : 0;
			lx->prev = kind;
			return;
		}
	}
	if (kind == TK_SEMI) {
		struct sql_norm *res = lx->res;
		lex_init(lx, p, (size_t)(end - p), res);
		lx->prev = TK_SEMI;
		return;
	}
	unsigned char pend = lx->pend;
	int closes_op = 0;
	lx->pend = P_NONE;
	if (start) {
		lx->start = 0;
		lx->mode = M_NONE;
		if (kind == TK_LPAREN) {
			lx->mode = M_ALL;
		} else if (kind == TK_WORD) {
			switch (t->id) {
			case KS_ALL: lx->mode = M_ALL; break;
			case KS_EXPLAIN: lx->mode = M_ALL; lx->pend = P_EXPLAIN; break;
			case KS_COPY: lx->pend = P_COPY; break;
			case KS_SET: lx->mode = M_SET; lx->setph = SP_START; break;
			case KS_CREATE: lx->pend = P_CREATE; break;
			case KS_ALTER: lx->pend = P_ALTER; break;
			case KS_DO: lx->mode = M_STRINGS; break;
			default: break;
			}
			if (lx->mode == M_SET)
				goto prev; /* the word SET itself is not its name */
		}
	} else if (pend) {
		switch (pend) {
		case P_EXPLAIN:
		case P_COPY:
			if (kind == TK_LPAREN) {
				lx->region_depth = lx->depth + 1;
				lx->region_mode = pend == P_EXPLAIN ? M_NONE : M_ALL;
			}
			break;
		case P_CREATE:
		case P_ALTER:
			if (kind != TK_WORD)
				break;
			if (t->id == KW_ROLE || t->id == KW_USER || t->id == KW_GROUP) {
				lx->mode = M_ROLE;
				lx->pend = P_ROLEFIRST;
			} else if (pend == P_CREATE && (t->id == KW_OR || t->id == KW_REPLACE)) {
				lx->pend = P_CREATE;
			} else if (pend == P_CREATE && (t->id == KW_FUNCTION || t->id == KW_PROCEDURE)) {
				lx->mode = M_FUNC;
			}
			break;
		case P_ROLEFIRST:
			/* USER MAPPING ... OPTIONS (user 'x', password 'y'): all strings */
			if (kind == TK_WORD && t->id == KW_MAPPING)
				lx->mode = M_STRINGS;
			break;
		}
	}

	if (pf && lx->depth < 64 && ((kind == TK_WORD && (t->kw & F_QUERY)) || kind == TK_LPAREN))
		lx->qmask |= 1ull << lx->depth;

	switch (kind) {
	case TK_LPAREN:
	case TK_LBRACK: {
		int d = ++lx->depth;
		if (d < 64) {
			lx->castmask &= ~(1ull << d);
			lx->qmask &= ~(1ull << d);
			lx->opmask &= ~(1ull << d);
		}
		if (kind == TK_LPAREN) {
			lx->paren_first = 1;
			if (lx->prev == TK_WORD) {
				if ((lx->prev_kw & F_CAST) && d < 64)
					lx->castmask |= 1ull << d;
				if ((lx->prev_kw & F_OPERATOR) && d < 64)
					lx->opmask |= 1ull << d;
				if (lx->prev_kw & F_EXTRACT)
					lx->extract = 1;
				if ((lx->prev_kw & F_TIMEFN) && lx->typmod_depth < 0)
					lx->typmod_depth = d;
			}
		}
		if (lx->typmod_depth < 0 && lx->tstate == TS_AFTER)
			lx->typmod_depth = d;
		if (lx->typmod_depth < 0 || lx->typmod_depth == d)
			lx->tstate = TS_NONE;
		break;
	}
	case TK_RPAREN:
	case TK_RBRACK:
		/* a OPERATOR(schema.op) b: what follows the ) is an operand */
		if (lx->depth > 0 && lx->depth < 64 && (lx->opmask & (1ull << lx->depth)))
			closes_op = 1;
		if (lx->depth > 0)
			lx->depth--;
		if (lx->typmod_depth >= 0 && lx->depth < lx->typmod_depth) {
			lx->typmod_depth = -1;
			lx->tstate = TS_AFTER;
		} else if (lx->typmod_depth < 0) {
			lx->tstate = TS_NONE;
		}
		if (lx->region_depth >= 0 && lx->depth < lx->region_depth)
			lx->region_depth = -1;
		if (lx->posdepth > lx->depth)
			lx->posdepth = -1;
		break;
	default:
		if (lx->typmod_depth >= 0)
			break;
		switch (kind) {
		case TK_CAST:
			lx->tstate = TS_EXPECT;
			break;
		case TK_WORD:
			if ((t->kw & F_AS) && lx->depth < 64 && (lx->castmask & (1ull << lx->depth)))
				lx->tstate = TS_EXPECT;
			else if (lx->tstate == TS_EXPECT || (lx->tstate == TS_AFTER && (t->kw & F_TYPECONT)))
				lx->tstate = TS_AFTER;
			else
				lx->tstate = TS_NONE;
			break;
		case TK_QIDENT:
			lx->tstate = lx->tstate == TS_EXPECT ? TS_AFTER : TS_NONE;
			break;
		case TK_DOT:
			lx->tstate = lx->tstate == TS_AFTER ? TS_EXPECT : TS_NONE;
			break;
		default:
			lx->tstate = TS_NONE;
		}
	}

	/* query-level ORDER BY / GROUP BY lists */
	if (kind == TK_WORD) {
		if ((t->kw & F_BY) && lx->prev == TK_WORD && (lx->prev_kw & F_SORTBY) && lx->depth < 64 &&
		    (lx->qmask & (1ull << lx->depth))) {
			lx->posdepth = lx->depth;
			lx->pos_elem = 1;
		} else if ((t->kw & F_CLAUSE) && lx->depth == lx->posdepth) {
			lx->posdepth = -1;
		}
	} else if (kind == TK_COMMA && lx->depth == lx->posdepth) {
		lx->pos_elem = 1;
	}

	if (lx->mode == M_SET) {
		switch (lx->setph) {
		case SP_START:
		case SP_SESSION:
			if (kind == TK_WORD) {
				if (t->id == KW_SESSION && lx->setph == SP_START)
					lx->setph = SP_SESSION;
				else if (t->id == KW_LOCAL && lx->setph == SP_START)
					;
				else if (t->id == KW_AUTHORIZATION && lx->setph == SP_SESSION)
					lx->setph = SP_VALUE;
				else if (t->id == KW_CHARACTERISTICS || t->id == KW_TRANSACTION || t->id == KW_CONSTRAINTS)
					lx->mode = M_NONE;
				else if (t->id == KW_TIME)
					lx->setph = SP_TIME;
				else if (t->id == KW_ROLE || t->id == KW_NAMES || t->id == KW_SCHEMA)
					lx->setph = SP_VALUE;
				else
					lx->setph = SP_NAME;
			} else {
				lx->setph = SP_NAME;
			}
			break;
		case SP_TIME:
			if (kind == TK_WORD && t->id == KW_ZONE) {
				lx->setph = SP_VALUE;
				lx->set_tz = 1;
			} else {
				lx->setph = SP_NAME;
			}
			break;
		case SP_NAME:
			if ((kind == TK_OP && t->n == 1 && *s == '=') || (kind == TK_WORD && (t->kw & F_TO)))
				lx->setph = SP_VALUE;
			break;
		default:
			break;
		}
	}

prev:
	lx->prev2_kw = lx->prev_kw;
	lx->prev_kw = kind == TK_WORD ? t->kw : 0;
	lx->prev = closes_op ? TK_OP : kind;
	/* what the fast path tests: only this slow path (and lex_init) changes it */
	lx->busy = lx->start | lx->extract | lx->pend | lx->tstate | (lx->mode == M_SET) |
		   (lx->posdepth >= 0 ? BUSY_POS : 0);
}

static __attribute__((noinline)) void lex_next(struct lex *lx, struct tok *t)
{
	lex_next_inl(lx, t);
}

/* ---------------------------------------------------------------- normalize */

#define NL_MAX 16     /* nested lists tracked for collapsing */
#define PH_MAX 1024   /* placeholder offsets remembered while a list is open */

enum { L_IN = 1, L_ARRAY, L_VALUES };
enum { V_EXPECT, V_INROW, V_AFTER, V_COMMA };

static const char MARKER[] = SQL_NORM_MARKER;

/* An open IN (...), ARRAY[...] or VALUES list.  Elements (rows for VALUES) are
 * compared with the first one as they end; at the end the list collapses to its
 * first element and MARKER if every element had the first one's shape. */
struct nlist {
	unsigned char kind, ok, marked, vstate, dropped;
	unsigned char el_simple;  /* IN/ARRAY: element so far is "$n" plus a cast */
	int depth;                /* depth of the elements' tokens (VALUES: of the rows) */
	int nelem, el_ntok;
	int first_ph0, first_ph1, nph_first, el_ph0;
	size_t first_start, first_end, el_start;
};

struct norm {
	char *o;
	size_t cap, n;            /* cap excludes the byte kept for the NUL */
	int oflow, nph, stmt_out, lost;
	unsigned char last;       /* kind of the last token printed (TK_EOF: none) */
	unsigned last_kw;
	int nl, nph_off, tok_ph0;
	struct nlist l[NL_MAX];
	size_t ph_off[PH_MAX];    /* output offsets of the placeholders of open lists */
};

/* Copies of tokens are short: fixed-size (possibly overlapping) moves instead of
 * a call to memcpy.  Reads and writes stay inside [s, s + n) and [d, d + n). */
static inline __attribute__((always_inline)) void copy_small(char *d, const char *s, size_t n)
{
	if (n >= 8) {
		if (n > 16) {
#if VEC16
			/* Django's runs of quoted identifiers: a few sixteen-byte
			 * moves, the last one overlapping */
			if (n <= 128) {
				for (size_t i = 0; i + 16 < n; i += 16)
					_mm_storeu_si128((__m128i *)(void *)(d + i), vload(s + i));
				_mm_storeu_si128((__m128i *)(void *)(d + n - 16), vload(s + n - 16));
				return;
			}
#endif
			memcpy(d, s, n);
			return;
		}
		uint64_t a, b;
		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + n - 8, &b, 8);
	} else if (n >= 4) {
		uint32_t a, b;
		memcpy(&a, s, 4);
		memcpy(&b, s + n - 4, 4);
		memcpy(d, &a, 4);
		memcpy(d + n - 4, &b, 4);
	} else if (n) {
		d[0] = s[0];
		d[n / 2] = s[n / 2];
		d[n - 1] = s[n - 1];
	}
}

/* The same for a token of the lane, whose output has room for n + 16 bytes:
 * where sixteen bytes can be read at s, a token of up to sixteen is one move
 * (the bytes past it in d are scratch). */
static inline __attribute__((always_inline)) void copy_tok(char *d, const char *s, size_t n, const char *end)
{
#if VEC16
	if (n <= 16 && end - s >= 16) {
		_mm_storeu_si128((__m128i *)(void *)d, vload(s));
		return;
	}
#endif
	copy_small(d, s, n);
}

/* Lower-cased copy of a word, same bounds as copy_small. */
static inline __attribute__((always_inline)) void copy_lower(char *d, const char *s, size_t n)
{
	if (n >= 8) {
		uint64_t a;
		size_t i = 0;
		for (; i + 8 < n; i += 8) {
			memcpy(&a, s + i, 8);
			a = lower8(a);
			memcpy(d + i, &a, 8);
		}
		memcpy(&a, s + n - 8, 8);
		a = lower8(a);
		memcpy(d + n - 8, &a, 8);
	} else if (n >= 4) {
		uint32_t a, b;
		memcpy(&a, s, 4);
		memcpy(&b, s + n - 4, 4);
		a = (uint32_t)lower8(a);
		b = (uint32_t)lower8(b);
		memcpy(d, &a, 4);
		memcpy(d + n - 4, &b, 4);
	} else {
		for (size_t i = 0; i < n; i++)
			d[i] = (char)LOWER(s[i]);
	}
}

static inline __attribute__((always_inline)) void put(struct norm *o, const char *s, size_t n)
{
	if (n > o->cap - o->n) {
		o->oflow = 1;
		return;
	}
	copy_small(o->o + o->n, s, n);
	o->n += n;
}

/* Space before a token of kind k after one of kind last (the rules of
 * normalize.h's CANONICAL TEXT): 0 or 1, or 2 when it depends on more than the
 * kinds, that is ( after a word (F_SPAREN) and an operator after '.' ('*'). */
static const unsigned char sptab[17][32] = { /* rows of 32: the index is a shift */
	{ 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1 },
	{ 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1 },
	{ 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1 },
	{ 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1 },
	{ 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1 },
	{ 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1 },
	{ 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 2, 1, 0, 1 },
	{ 0, 2, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
	{ 0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0 },
	{ 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1 },
};

static inline __attribute__((always_inline)) int space_kinds(unsigned char kind, unsigned char last, unsigned last_kw,
								const char *s, size_t n)
{
	unsigned v = sptab[kind][last];
	if (__builtin_expect(v == 2, 0))
		return kind == TK_LPAREN ? (last_kw & F_SPAREN) != 0 : !(n == 1 && *s == '*');
	return (int)v;
}

static inline __attribute__((always_inline)) int space_before(const struct norm *o, const struct tok *t)
{
	return space_kinds(t->kind, o->last, o->last_kw, t->s, t->n);
}

static inline void put_num(struct norm *o, int v)
{
	size_t nd = 1;
	for (int x = v; x >= 10; x /= 10)
		nd++;
	if (nd + 1 > o->cap - o->n) {
		o->oflow = 1;
		return;
	}
	char *d = o->o + o->n;
	d[0] = '$';
	for (size_t i = nd; i > 0; i--) {
		d[i] = (char)('0' + v % 10);
		v /= 10;
	}
	o->n += nd + 1;
}

/* Prints one token; returns the offset where its text starts. */
static inline __attribute__((always_inline)) size_t emit(struct norm *o, const struct tok *t)
{
	int sp = space_before(o, t);
	if (o->n < o->cap) {
		o->o[o->n] = ' ';
		o->n += (size_t)sp;
	} else if (sp) {
		o->oflow = 1;
	}
	size_t at = o->n;
	switch (t->kind) {
	case TK_WORD:
		if (t->n > o->cap - o->n) {
			o->oflow = 1;
			break;
		}
		copy_lower(o->o + o->n, t->s, t->n);
		o->n += t->n;
		break;
	case TK_CONST:
	case TK_PARAM:
		o->tok_ph0 = o->nph_off;
		if (o->nl) {
			if (o->nph_off < PH_MAX) {
				o->ph_off[o->nph_off++] = at;
			} else {
				o->lost = 1;
				for (int i = 0; i < o->nl; i++)
					o->l[i].ok = 0;
			}
		}
		put_num(o, ++o->nph);
		break;
	case TK_OP:
		if (t->n == 2 && t->s[0] == '!' && t->s[1] == '=')
			put(o, "<>", 2); /* the scanner makes them one token, NOT_EQUALS */
		else
			put(o, t->s, t->n);
		break;
	default:
		put(o, t->s, t->n);
	}
	o->last = t->kind;
	o->last_kw = t->kind == TK_WORD ? t->kw : 0;
	o->stmt_out = 1;
	return at;
}

static size_t skip_placeholder(const char *s, size_t i, size_t end)
{
	i++; /* $ */
	while (i < end && ISDIGIT(s[i]))
		i++;
	return i;
}

/* Do [a0,a1) and [b0,b1) read the same once their placeholders are ignored? */
static int shape_eq(const struct norm *o, size_t a0, size_t a1, int ap0, int ap1, size_t b0, size_t b1, int bp0,
		    int bp1)
{
	int np = ap1 - ap0;
	if (np != bp1 - bp0)
		return 0;
	for (int k = 0;; k++) {
		size_t ae = k < np ? o->ph_off[ap0 + k] : a1;
		size_t be = k < np ? o->ph_off[bp0 + k] : b1;
		if (ae - a0 != be - b0 || memcmp(o->o + a0, o->o + b0, ae - a0) != 0)
			return 0;
		if (k == np)
			return 1;
		a0 = skip_placeholder(o->o, ae, a1);
		b0 = skip_placeholder(o->o, be, b1);
	}
}

/* An element (row) of l ended at output offset end. */
static void elem_end(struct norm *o, struct nlist *l, size_t end)
{
	if (l->kind != L_VALUES && (l->el_ntok == 0 || !l->el_simple))
		l->ok = 0;
	if (l->ok) {
		if (l->nelem == 0) {
			l->first_start = l->el_start;
			l->first_end = end;
			l->first_ph0 = l->el_ph0;
			l->first_ph1 = o->nph_off;
			l->nph_first = o->nph;
		} else if (!shape_eq(o, l->first_start, l->first_end, l->first_ph0, l->first_ph1, l->el_start, end,
				     l->el_ph0, o->nph_off)) {
			l->ok = 0;
		} else if (o->nph_off > PH_MAX / 2 && &o->l[o->nl - 1] == l) {
			/* keep room for long lists: forget this element's placeholders,
			 * at the price of enclosing lists if this one does not collapse */
			o->nph_off = l->el_ph0;
			l->dropped = 1;
		}
	}
	l->nelem++;
	l->el_ntok = 0;
}

static void list_finish(struct norm *o, int allow)
{
	struct nlist *l = &o->l[--o->nl];
	int ok = allow && l->ok && !o->lost && (l->kind != L_VALUES || l->vstate == V_AFTER) &&
		 (l->nelem >= 2 || (l->marked && l->nelem >= 1));
	if (ok) {
		o->n = l->first_end;
		o->nph = l->nph_first;
		o->nph_off = l->first_ph1;
		put(o, MARKER, sizeof(MARKER) - 1);
	} else if (l->dropped) {
		for (int i = 0; i < o->nl; i++)
			o->l[i].ok = 0;
	}
	if (o->nl == 0) {
		o->nph_off = 0;
		o->lost = 0;
	}
}

static void lists_end_all(struct norm *o, int depth)
{
	while (o->nl) {
		struct nlist *l = &o->l[o->nl - 1];
		list_finish(o, l->kind == L_VALUES && l->depth == depth);
	}
}

static void list_push(struct norm *o, unsigned char kind, int depth)
{
	if (o->nl == NL_MAX) {
		for (int i = 0; i < o->nl; i++)
			o->l[i].ok = 0;
		return;
	}
	if (o->nl) {
		struct nlist *up = &o->l[o->nl - 1];
		up->el_simple = 0;
	}
	struct nlist *l = &o->l[o->nl++];
	memset(l, 0, sizeof(*l));
	l->kind = kind;
	l->depth = depth;
	l->ok = !o->lost;
	l->vstate = V_EXPECT;
}

/* Before printing t at depth d: end elements and lists that t ends. */
static void lists_pre(struct norm *o, unsigned char kind, int d)
{
	while (o->nl) {
		struct nlist *l = &o->l[o->nl - 1];
		if (d != l->depth)
			return;
		if (l->kind == L_VALUES) {
			if (l->vstate == V_AFTER && kind != TK_COMMA) {
				list_finish(o, 1);
				continue;
			}
			if ((l->vstate == V_EXPECT || l->vstate == V_COMMA) && kind != TK_LPAREN) {
				list_finish(o, 0);
				continue;
			}
			return;
		}
		if (kind == TK_RPAREN || kind == TK_RBRACK) {
			elem_end(o, l, o->n);
			list_finish(o, 1);
		} else if (kind == TK_COMMA) {
			elem_end(o, l, o->n);
		}
		return;
	}
}

/* After printing t (text at offset at) at depth d. */
static void lists_post(struct norm *o, unsigned char kind, unsigned kw, int d, size_t at, unsigned char plast,
		       unsigned plast_kw)
{
	if (o->nl) {
		struct nlist *l = &o->l[o->nl - 1];
		if (l->kind != L_VALUES) {
			if (!(d == l->depth && kind == TK_COMMA) && d >= l->depth) {
				int ph = kind == TK_CONST || kind == TK_PARAM;
				if (l->el_ntok == 0) {
					l->el_start = at;
					l->el_ph0 = ph ? o->tok_ph0 : o->nph_off;
					l->el_simple = (unsigned char)ph;
				} else if (ph || kind == TK_OP) {
					l->el_simple = 0;
				}
				l->el_ntok++;
			}
		} else if (kind == TK_LPAREN && d == l->depth && (l->vstate == V_EXPECT || l->vstate == V_COMMA)) {
			l->el_start = at;
			l->el_ph0 = o->nph_off;
			l->vstate = V_INROW;
		} else if ((kind == TK_RPAREN || kind == TK_RBRACK) && d == l->depth + 1 && l->vstate == V_INROW) {
			elem_end(o, l, o->n);
			l->vstate = V_AFTER;
		} else if (kind == TK_COMMA && d == l->depth && l->vstate == V_AFTER) {
			l->vstate = V_COMMA;
		}
	}
	if (plast == TK_WORD) {
		if (kind == TK_LPAREN && (plast_kw & F_IN))
			list_push(o, L_IN, d + 1);
		else if (kind == TK_LBRACK && (plast_kw & F_ARRAY))
			list_push(o, L_ARRAY, d + 1);
	}
	if (kind == TK_WORD && (kw & F_VALUES))
		list_push(o, L_VALUES, d);
}

/* The digits of the numbers 1..m written out. */
static size_t digits_upto(long m)
{
	size_t d = 0;
	for (long p = 1; p <= m; p *= 10)
		d += (size_t)(m - p + 1);
	return d;
}

/* IN (1, 2, 3) as ORMs write it: at least two elements, each one number, '...'
 * string or $n, separated by commas, with no comment or cast.  in_list_scan()
 * reads such a list from just after its '(' and returns where its ')' is (or
 * NULL for a list of another form), with the number of elements, of constants
 * among them, and the kind of the last. */
struct in_scan {
	long nelem;
	int nc;
	unsigned char k;
};

static const char *in_list_scan(const char *p, const char *end, struct in_scan *r)
{
	r->nelem = 0;
	r->nc = 0;
	for (;;) {
		while (p < end && (CLS(*p) & C_SP))
			p++;
		if (p >= end)
			return NULL;
		if (ISDIGIT(*p) || (*p == '.' && p + 1 < end && ISDIGIT(p[1]))) {
			p = scan_number_inl(p, end);
			r->k = TK_CONST;
		} else if (*p == '\'') {
			p = scan_qstring(p + 1, end);
			r->k = TK_CONST;
		} else if (*p == '$' && p + 1 < end && ISDIGIT(p[1])) {
			p += 2;
			while (p < end && ISDIGIT(*p))
				p++;
			r->k = TK_PARAM;
		} else {
			return NULL;
		}
		r->nc += r->k == TK_CONST;
		r->nelem++;
		while (p < end && (CLS(*p) & C_SP))
			p++;
		if (p >= end || (*p != ',' && *p != ')'))
			return NULL;
		if (*p == ')')
			return p;
		p++;
	}
}

/* What the general path prints for such a list of r->nelem elements, "$1, $2,
 * ...", before its ')' collapses it: it sets no output overflow when that does
 * not fit, and neither may a shortcut. */
static inline int in_list_fits(const struct in_scan *r, int nph, size_t room)
{
	long m = r->nelem;
	return (size_t)(m + digits_upto(nph + m) - digits_upto(nph) + 2 * (m - 1)) <= room;
}

/* Called just after the '(' that opened the IN list, the only list open, when
 * every constant is replaced here.  Prints what the general path would have
 * left once the ')' collapses the list, "$n" MARKER, and stops before the ')';
 * or, for a list of another form, does nothing. */
static void in_list_fast(struct lex *lx, struct norm *o, int *nconst)
{
	struct in_scan r;
	const char *p = in_list_scan(lx->p, lx->end, &r);
	if (!p || r.nelem < 2 || !in_list_fits(&r, o->nph, o->cap - o->n))
		return;
	put_num(o, ++o->nph);
	put(o, MARKER, sizeof(MARKER) - 1);
	o->last = r.k;
	o->last_kw = 0;
	o->nl = o->nph_off = 0;
	o->lost = 0;
	*nconst += r.nc;
	lx->p = p;
	lx->prev = r.k;
	lx->prev_kw = lx->prev2_kw = 0;
	lx->paren_first = lx->extract = lx->pos_elem = 0;
}

/* The fast lane: the tokens that make up most of a typical statement, lexed and
 * printed in one tight loop with the state in local variables, for as long as
 * nothing around needs the full machinery.  It is entered only when lex_next's
 * own fast path would apply to every token (no context open: lx->busy is 0, or
 * only a positional ORDER BY / GROUP BY list: see pos in fast_lane()), no
 * list is being collapsed or about to open (or the innermost one is VALUES and
 * the lane is inside one of its rows, or the only one is an IN list that can
 * no longer collapse, where the list only needs the offsets of placeholders:
 * see lane_ok()), no ';' is pending and the last token printed needs nothing
 * more.  It takes words that are no keyword with a role here (and the first
 * word of a SELECT, INSERT, UPDATE..., the first word of a query in parens,
 * NULL, TRUE and FALSE, the BY that starts an ORDER BY list, the keyword that
 * ends it), runs of quoted identifiers, . and , numbers (with a sign that
 * folds into them), strings, $n, operators, "::name" casts, parentheses that
 * change no more than the depth, comments (tags parsed as lex_next does), a
 * last ';', and two list shapes whole: IN (1, 2, 3) collapsed as
 * in_list_fast() does, and VALUES with its rows (the list opened, each row
 * ended and compared, the list finished by the token after the last row, as
 * lists_pre() and lists_post() do).  Any other token (keywords such as ARRAY,
 * a VALUES that opens a statement, casts into a type with modifiers, a
 * statement after a ';', ...) and any token that might not fit in the output
 * leave the lane before anything of them is consumed, for the general loop to
 * handle exactly as before.  Each token gets exactly the kind, spacing and text
 * the general path would give it, and the context the same changes
 * (tests/sqldiff/normident.c compares the two, also with comments put between
 * list elements). */

/* Words that need more than printing here (see the word case of fast_lane()). */
#define LANE_SLOW_KW (F_BOOLNULL | F_ALL | F_ARRAY | F_IN | F_VALUES | F_QUERY | F_AS | F_BY | F_NOT)

/* Output room below which the lane leaves the rest to the general path: enough
 * for any token of up to sixteen bytes with its space, for the fixed-size
 * stores that print short tokens (eight or sixteen bytes, some past the token:
 * scratch) and for a collapsed list's MARKER. */
#define LANE_ROOM 48

/* An IN (...) or ARRAY[...] list, the only one open, that cannot collapse any
 * more: an element ended with another shape, or the one going on is more than
 * a placeholder (IN (SELECT ...)).  Until its end only the offsets of
 * placeholders matter to it, and a ',' between its elements (elem_end()). */
static inline int list_doomed(const struct norm *o)
{
	const struct nlist *l = &o->l[0];
	return o->nl == 1 && l->kind != L_VALUES && (!l->ok || (l->el_ntok > 0 && !l->el_simple));
}

/* May the lane run?  Inside a row of VALUES (the innermost list, deeper than
 * the list itself), lists_pre() and lists_post() do nothing for the lane's
 * tokens but the row's own ')', which the lane ends as they would; inside a
 * doomed IN or ARRAY list (list_doomed()) nothing but the list's ',' and its
 * end, which the lane leaves to them. */
static inline __attribute__((always_inline)) int lane_ok(const struct lex *lx, const struct norm *o, int pend_semi)
{
	/* lx->start: a fresh statement, whose first word the lane may take */
	if (((lx->busy & ~BUSY_POS) && !lx->start) | pend_semi | (o->last_kw & (F_IN | F_ARRAY)))
		return 0;
	if (!o->nl)
		return 1;
	const struct nlist *l = &o->l[o->nl - 1];
	if (l->kind == L_VALUES)
		return l->vstate == V_INROW && lx->depth > l->depth;
	return list_doomed(o) && lx->depth >= l->depth;
}

/* Just past the whitespace (no comments) from p. */
static inline const char *skip_sp(const char *p, const char *end)
{
	while (p < end && (CLS(*p) & C_SP))
		p++;
	return p;
}

/* Whether a position may start at p (an ORDER BY element that is a number, or a
 * sign or comment before one): such an element is lex_next's. */
static inline int lane_pos_start(const char *p, const char *end)
{
	p = skip_sp(p, end);
	return p < end && (ISDIGIT(*p) || *p == '.' || (CLS(*p) & C_CM));
}

/* Just past a run of quoted identifiers joined by '.' or by ", " (Django's
 * "t"."a", "t"."b"), from its first quote p. */
static inline const char *qident_run(const char *p, const char *end)
{
	for (;;) {
		p = scan_qident(p + 1, end);
		if (end - p >= 2 && p[0] == '.' && p[1] == '"')
			p += 1;
		else if (end - p >= 3 && p[0] == ',' && p[1] == ' ' && p[2] == '"')
			p += 2;
		else
			return p;
	}
}

/* The context a '(' that only opens a depth changes (as lex_next's slow path). */
static inline __attribute__((always_inline)) void lane_open(struct lex *lx, unsigned char last)
{
	if (last == TK_LPAREN) /* paren_first */
		lx->qmask |= 1ull << lx->depth;
	uint64_t bit = 1ull << ++lx->depth;
	lx->castmask &= ~bit;
	lx->qmask &= ~bit;
	lx->opmask &= ~bit;
}

/* A VALUES row opens in the lane: sep and its '(' printed at out + n, the row's
 * first element starting at the paren.  Returns the new output length. */
static inline __attribute__((always_inline)) size_t lane_row_open(struct lex *lx, struct nlist *l, char *out,
								  size_t n, const char *sep, size_t seplen, int ph0,
								  unsigned char last)
{
	memcpy(out + n, sep, seplen);
	n += seplen;
	out[n] = '(';
	l->el_start = n;
	l->el_ph0 = ph0;
	l->vstate = V_INROW;
	lane_open(lx, last);
	return n + 1;
}

/* "$v" at d; returns its length. */
static inline __attribute__((always_inline)) size_t print_ph(char *d, int v)
{
	d[0] = '$';
	if (v < 10) {
		d[1] = (char)('0' + v);
		return 2;
	}
	size_t nd = 1;
	for (int x = v; x >= 10; x /= 10)
		nd++;
	for (size_t i = nd; i > 0; i--) {
		d[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return nd + 1;
}

static inline __attribute__((always_inline)) void fast_lane(struct lex *lx, struct norm *o, int *nconst)
{
	const char *p = lx->p, *const end = lx->end;
	char *const out = o->o;
	const size_t cap = o->cap;
	size_t n = o->n;
	if (cap < LANE_ROOM)
		return;
	const size_t nmax = cap - LANE_ROOM; /* the lane prints while n <= nmax */
	/* The lexer's prev and paren_first follow from the kind of the last token
	 * printed (checked below), o->last_kw and lx->prev_kw are the same (the
	 * flags of the last token if it is a word: a ';' pending or a marker never
	 * reach the lane), and prev2_kw is read only when prev_kw has F_NOT: fewer
	 * variables to keep in registers. */
	unsigned char last = o->last;
	unsigned prev_kw = lx->prev_kw, p2 = lx->prev2_kw; /* p2: prev2_kw, for a NOT */
	int nph = o->nph, nc = 0;
	/* in a list (a VALUES row, a doomed IN): record placeholder offsets; a
	 * VALUES row ends with the ')' at rowdepth, a doomed list with the ')' at
	 * indepth, where its elements end with a ',' */
	int inlist = o->nl != 0, rowdepth = -1, indepth = -1;
	if (inlist) {
		if (o->l[o->nl - 1].kind == L_VALUES)
			rowdepth = o->l[o->nl - 1].depth + 1;
		else
			indepth = o->l[0].depth;
	}
	/* In an ORDER BY / GROUP BY list (opened and ended here by BY and a clause
	 * keyword as in lex_next), an element that may be a position is left to
	 * the general path (lane_pos_start()). */
	int pos = lx->posdepth >= 0;
	unsigned slowkw = LANE_SLOW_KW | (pos ? F_CLAUSE : 0); /* F_CLAUSE: words that may end the list */
	int nph_off = o->nph_off;
	int synced = 0; /* *o brought up to date in the middle (a row of VALUES ended) */
	int st = lx->start; /* the first token of a statement: only a word here */
	/* The statement mode and the type context stay as they are in the lane
	 * (its parens never cross typmod_depth or region_depth, which the general
	 * path sets and clears), but for the first word of a statement, which
	 * makes every constant replaced: which words, numbers and strings are
	 * constants (emode(), num_const(), string_const()) is decided once.
	 * strc: 1 a constant, 0 kept, -1 the general path's. */
	int m = emode(lx), mall = m == M_ALL, numc = mall && !in_typmod(lx);
	int strc = in_typmod(lx) || m == M_NONE ? 0 : mall ? 1 : -1;
	if (lx->prev != last || lx->paren_first != (last == TK_LPAREN))
		return; /* after OPERATOR(...), or an empty statement */
	if (st || (lx->pos_elem && lx->depth == lx->posdepth)) {
		const char *q = skip_sp(p, end);
		if (q >= end || (st && !(CLS(*q) & C_IS)) || lane_pos_start(q, end))
			return; /* nor a number or sign (or a comment before one) that starts an element */
	}
	/* pos_elem matters to a number or a sign only, which the lane does not take
	 * as the first token (above): the token after this lane clears it anyway */
	lx->pos_elem = 0;

	const char *s; /* the token's start */
	size_t tl;     /* and length */
	unsigned char kind;
	for (;;) {
		/* most tokens follow one space or none */
		if (p < end && *p == ' ')
			p++;
		if (p >= end || n > nmax)
			goto stop;
		s = p;
		unsigned char c = (unsigned char)*p;
		unsigned char cls = cc[c];
		if (cls & C_IS) {
			/* a word, printed lower-cased at at (before it is known to be
			 * taken: bytes past n are scratch) */
			const struct kwent *k;
			size_t at = n + sptab[TK_WORD][last]; /* 0 or 1 for a word */
			out[n] = ' ';
			tl = (size_t)(ident_end(s + 1, end) - s);
#if LE64
			if (tl <= 8 && end - s >= 8) {
				uint64_t lw = lower8(load8(s));
				memcpy(out + at, &lw, 8); /* LANE_ROOM */
				k = kw_find8(lw, tl);
			} else
#endif
			{
				if (cap - at < tl + 16)
					goto stop_s;
				copy_lower(out + at, s, tl);
				k = kw_lookup8(s, tl, end);
			}
			p = s + tl;
			unsigned kf = k->flags;
			/* E'', B'', X'', N'', U&'', U&"": lex_next's */
			int quoted = tl == 1 && p < end && (*p == '\'' || *p == '&');
			if (__builtin_expect((kf & slowkw) | st | quoted, 0)) {
				/* the first of a statement must be SELECT, INSERT,
				 * UPDATE... (every constant replaced; VALUES opens a list:
				 * the general path); the AS of CAST(x AS type) opens a type
				 * context */
				if (quoted || (kf & F_ARRAY) || (st && (k->id != KS_ALL || (kf & F_VALUES))) ||
				    ((kf & F_AS) && lx->depth < 64 && (lx->castmask & (1ull << lx->depth))))
					goto stop_s;
				/* (SELECT ...: the paren holds a query, whose ORDER BY is
				 * query-level (qmask; set again by lex_next if the word is
				 * left to it) */
				if (last == TK_LPAREN && (kf & F_QUERY) && lx->depth < 64)
					lx->qmask |= 1ull << lx->depth;
				if (st) {
					st = lx->start = 0;
					lx->mode = M_ALL;
					mall = numc = strc = 1;
				}
				if (kf & (F_BOOLNULL | F_ALL)) {
					/* NULL, TRUE, FALSE (not after IS or IS NOT) and LIMIT's
					 * ALL are constants where every constant is replaced */
					if (mall && ((kf & F_BOOLNULL) ? !((prev_kw & F_IS) || ((prev_kw & F_NOT) && (p2 & F_IS)))
								       : (prev_kw & F_LIMIT) != 0)) {
						kind = TK_CONST;
						goto placeholder;
					}
				} else if (kf & F_IN) {
					/* x IN (1, 2, 3): the word, its paren and the list
					 * collapsed at once, as the general path and
					 * in_list_fast() print them; any other IN is theirs */
					struct in_scan r;
					const char *q = skip_sp(p, end);
					if (inlist || pos || !numc || lx->depth >= 63 || q >= end || *q != '(' ||
					    !(q = in_list_scan(q + 1, end, &r)) || r.nelem < 2 ||
					    !in_list_fits(&r, nph, cap - (at + tl + 2)))
						goto stop_s;
					n = at + tl;
					out[n] = ' ';
					out[n + 1] = '(';
					n += 2;
					lane_open(lx, TK_WORD);
					n += print_ph(out + n, ++nph);
					memcpy(out + n, MARKER, sizeof(MARKER) - 1);
					n += sizeof(MARKER) - 1;
					nc += r.nc;
					last = r.k;
					prev_kw = p2 = 0;
					p = q; /* the ')' */
					continue;
				} else if (kf & F_VALUES) {
					/* VALUES (: the list opens (lists_post()) and its first
					 * row with the paren, in which the lane goes on */
					const char *q = skip_sp(p, end);
					if (inlist || pos || lx->typmod_depth >= 0 || lx->depth >= 63 || q >= end || *q != '(')
						goto stop_s;
					list_push(o, L_VALUES, lx->depth);
					struct nlist *l = &o->l[o->nl - 1];
					n = lane_row_open(lx, l, out, at + tl, " ", 1, nph_off, TK_WORD); /* F_SPAREN */
					inlist = 1;
					rowdepth = lx->depth;
					last = TK_LPAREN;
					prev_kw = 0;
					p = q + 1;
					continue;
				}
				if (kf & F_NOT)
					p2 = prev_kw;
				if (kf & (F_BY | F_CLAUSE)) {
					if ((kf & F_BY) && last == TK_WORD && (prev_kw & F_SORTBY) && lx->depth < 64 &&
					    (lx->qmask & (1ull << lx->depth))) {
						/* a query-level ORDER BY / GROUP BY list starts:
						 * a first element that may be a position is
						 * lex_next's */
						lx->posdepth = lx->depth;
						pos = 1;
						slowkw |= F_CLAUSE;
						if (lane_pos_start(p, end)) {
							lx->pos_elem = 1;
							n = at + tl;
							last = TK_WORD;
							prev_kw = kf;
							goto stop;
						}
					} else if ((kf & F_CLAUSE) && lx->depth == lx->posdepth) {
						lx->posdepth = -1; /* and ends (pos stays set: the lane stays careful) */
					}
				}
			}
			n = at + tl;
			last = TK_WORD;
			prev_kw = kf;
			continue;
		}
		if (c == '"') {
			/* quoted identifiers joined by '.' or by ", " (Django's "t"."a",
			 * "t"."b") print exactly as written: one piece, whose tokens
			 * change nothing here, the last of them an identifier */
			p = qident_run(p, end);
			kind = TK_QIDENT;
			goto verbatim;
		}
		switch (c) {
		case '.':
			if (!(p + 1 < end && ISDIGIT(p[1]))) {
				out[n] = ' ';
				n += sptab[TK_DOT][last]; /* 0 or 1 */
				out[n++] = '.';
				p++;
				last = TK_DOT;
				prev_kw = 0;
				continue;
			}
			__attribute__((fallthrough)); /* .5 */
		case '0' ... '9':
			p = scan_number_inl(p, end);
			if (numc) {
				kind = TK_CONST;
				goto placeholder;
			}
			kind = TK_KEEP;
			goto verbatim;
		case ',':
			/* the next element of an ORDER BY list may be a position */
			if (pos && lx->depth == lx->posdepth && lane_pos_start(p + 1, end))
				goto stop;
			if (lx->depth == indepth) {
				/* between elements of a doomed list: what elem_end()
				 * does to one (no shape to compare) */
				o->l[0].ok = 0;
				o->l[0].nelem++;
				o->l[0].el_ntok = 0;
			}
			out[n++] = ','; /* never a space before */
			p++;
			last = TK_COMMA;
			prev_kw = 0;
			continue;
		case '\'':
			if (strc < 0)
				goto stop;
			p = scan_qstring(p + 1, end);
			if (strc && !(prev_kw & F_UESCAPE)) {
				kind = TK_CONST;
				goto placeholder;
			}
			kind = TK_KEEP;
			goto verbatim;
		case '$':
			if (!(p + 1 < end && ISDIGIT(p[1])))
				goto stop;
			p += 2;
			while (p < end && ISDIGIT(*p))
				p++;
			kind = TK_PARAM;
			goto placeholder;
		case ':': {
			/* x::name, a plain type name followed by nothing that could
			 * continue a type (a modifier, '.', '[', a word such as the
			 * precision of double precision, a comment before any of
			 * them): the type context it opens ends with the next token,
			 * so both are taken here and leave none */
			if (end - p < 3 || p[1] != ':' || !(CLS(p[2]) & C_IS) || lx->typmod_depth >= 0)
				goto stop;
			const char *w = p + 2, *a;
			if (w + 1 < end && (w[1] == '\'' || w[1] == '&'))
				goto stop; /* E'', U&"" */
			a = ident_end(w + 1, end);
			size_t wl = (size_t)(a - w);
			const struct kwent *k = kw_lookup8(w, wl, end);
			const char *we = a;
			while (a < end && (CLS(*a) & C_SP))
				a++;
			/* (the type named AS in CAST(x ::AS ...) is the AS of the
			 * CAST, which opens a type context of its own: lex_next's;
			 * the lane before took it, in that invalid SQL, and left
			 * no context) */
			if ((k->flags & (F_BOOLNULL | F_ALL | F_IN | F_ARRAY | F_VALUES)) || (pos && (k->flags & F_CLAUSE)) ||
			    ((k->flags & F_AS) && lx->depth < 64 && (lx->castmask & (1ull << lx->depth))) ||
			    cap - n < wl + 18 || (a < end && (*a == '(' || *a == '[' || *a == '.')) ||
			    (a + 1 < end && ((a[0] == '-' && a[1] == '-') || (a[0] == '/' && a[1] == '*'))))
				goto stop;
			if (a < end && (CLS(*a) & C_IS)) {
				/* a word after the type ends its context unless it can
				 * continue the type (double precision, timestamp with
				 * time zone...): the same as after no context at all,
				 * whatever the word turns out to be (lex_next) */
				const char *b = ident_end(a + 1, end);
				if (kw_lookup8(a, (size_t)(b - a), end)->flags & F_TYPECONT)
					goto stop;
			}
			out[n] = ' ';
			n += sptab[TK_CAST][last];
			out[n] = out[n + 1] = ':';
			copy_lower(out + n + 2, w, wl); /* no space after :: */
			n += 2 + wl;
			p = we;
			last = TK_WORD;
			p2 = 0;
			prev_kw = k->flags;
			continue;
		}
		case '(':
			/* a paren that only opens a depth: not after CAST, OPERATOR,
			 * EXTRACT or a time function, nor in type modifiers (the lane
			 * is entered with no type context) */
			if (lx->depth >= 63 || lx->typmod_depth >= 0 ||
			    (last == TK_WORD && (prev_kw & (F_CAST | F_OPERATOR | F_EXTRACT | F_TIMEFN))))
				goto stop;
			lane_open(lx, last);
			out[n] = ' ';
			n += (size_t)space_kinds(TK_LPAREN, last, prev_kw, s, 1);
			out[n++] = '(';
			p++;
			last = TK_LPAREN;
			prev_kw = 0;
			continue;
		case ')':
			/* one that only closes a depth: no type modifiers, EXPLAIN or COPY
			 * region or collapsing list ends with it, and it is not
			 * OPERATOR(...)'s (the token after is an operand); an ORDER BY
			 * list inside ends with it */
			if (lx->depth == 0 || lx->depth > 63 || lx->typmod_depth >= 0 || lx->region_depth >= 0 ||
			    (lx->opmask & (1ull << lx->depth)) || lx->depth == indepth ||
			    (lx->depth == rowdepth && (o->nl != 1 || pos)))
				goto stop;
			out[n++] = ')'; /* never a space before */
			p++;
			last = TK_RPAREN;
			prev_kw = 0;
			if (lx->depth-- != rowdepth) {
				if (lx->posdepth > lx->depth)
					lx->posdepth = -1;
				continue;
			}
			{
				/* the end of a row of VALUES, the only list (lists_post()) */
				struct nlist *l = &o->l[0];
				o->n = n;
				o->nph = nph;
				o->nph_off = nph_off;
				synced = 1;
				elem_end(o, l, n);
				nph_off = o->nph_off;
				l->vstate = V_AFTER;
				const char *q = skip_sp(p, end);
				if (q < end && *q == ',') {
					/* ", (": the next row */
					const char *r = skip_sp(q + 1, end);
					if (r >= end || *r != '(' || lx->depth >= 63)
						goto stop;
					n = lane_row_open(lx, l, out, n, ", ", 2, nph_off, TK_COMMA);
					last = TK_LPAREN;
					p = r + 1;
					continue;
				}
				if (q + 1 < end && ((q[0] == '-' && q[1] == '-') || (q[0] == '/' && q[1] == '*')))
					goto stop; /* a comment (a MARKER maybe) before the next token */
				/* any other token ends the list before it is printed
				 * (lists_pre(), or lists_end_all() at a ';' or the end) */
				list_finish(o, 1);
				n = o->n;
				nph = o->nph;
				nph_off = o->nph_off;
				inlist = 0;
				rowdepth = -1;
				continue;
			}
		case ';':
			/* a last ';' (nothing but whitespace after it) changes nothing:
			 * lists_end_all() has none to end, the statement none to print */
			if (inlist || skip_sp(p + 1, end) < end)
				goto stop;
			p = end;
			goto stop;
		case '-':
		case '/':
			if (p + 1 < end && p[1] == (c == '-' ? '-' : '*')) {
				/* a comment: nothing to print, maybe tags */
				if (c == '-') {
					p = line_end(p, end);
				} else {
					const char *e = comment_end(p, end);
					if (e - p == 10 && memcmp(p, "/*, ... */", 10) == 0)
						goto stop; /* MARKER: lex_next's token */
					if (lx->res && e - p >= 4 && e[-1] == '/' && e[-2] == '*')
						parse_tags(lx->res, p + 2, (size_t)(e - p - 4));
					p = e;
				}
				continue;
			}
			__attribute__((fallthrough)); /* an operator */
		default:
			if (cls & C_SP) {
				p = skip_sp(p, end); /* more whitespace than one space */
				continue;
			}
			if (!(cls & C_OP))
				goto stop;
			p += op_len(p, end);
			/* a '-' that folds into the number after it, as in lex_next:
			 * unary_ctx() && num_const(), and the number is not cast */
			if (p - s == 1 && c == '-' && numc &&
			    (last == TK_EOF || last == TK_OP || last == TK_LPAREN || last == TK_LBRACK || last == TK_COMMA ||
			     last == TK_SEMI || last == TK_COLON || (last == TK_WORD && (prev_kw & F_UNARY)))) {
				const char *d, *e = signed_number_end(p, end, &d);
				if (e) {
					p = e;
					kind = TK_CONST;
					goto placeholder;
				}
			}
			tl = (size_t)(p - s);
			if (cap - n < tl + 16)
				goto stop_s;
			out[n] = ' ';
			n += (size_t)space_kinds(TK_OP, last, prev_kw, s, tl);
			if (tl == 2 && s[0] == '!' && s[1] == '=') {
				out[n] = '<'; /* the scanner makes them one token, NOT_EQUALS */
				out[n + 1] = '>';
				n += 2;
			} else {
				copy_tok(out + n, s, tl, end);
				n += tl;
			}
			last = TK_OP;
			prev_kw = 0;
			continue;
		}
	placeholder:
		/* a constant or $n: "$k", renumbered */
		if (inlist && nph_off >= PH_MAX)
			goto stop_s; /* the general path gives up collapsing */
		out[n] = ' ';
		n += sptab[kind][last]; /* 0 or 1 for both kinds */
		if (inlist)
			o->ph_off[nph_off++] = n;
		n += print_ph(out + n, ++nph);
		nc += kind == TK_CONST;
		last = kind;
		prev_kw = 0;
		continue;
	verbatim:
		/* a token printed as written: a literal kept (TK_KEEP) or a run of
		 * quoted identifiers (TK_QIDENT) */
		tl = (size_t)(p - s);
		if (cap - n < tl + 16)
			goto stop_s;
		out[n] = ' ';
		n += sptab[kind][last]; /* 0 or 1 */
		copy_tok(out + n, s, tl, end);
		n += tl;
		last = kind;
		prev_kw = 0;
	}
stop_s:
	p = s; /* the token is not taken */
stop:
	lx->p = p; /* at most past whitespace and comments when no token was taken */
	if (n != o->n || synced) { /* a token was taken (each prints something) */
		lx->prev = last;
		lx->prev_kw = prev_kw;
		lx->prev2_kw = p2; /* right when prev_kw has F_NOT, else never read */
		lx->extract = 0;
		lx->paren_first = last == TK_LPAREN;
		lx->busy = lx->posdepth >= 0 ? BUSY_POS : 0; /* start, if it was set, is not */
		o->n = n;
		o->last = last;
		o->last_kw = prev_kw;
		o->nph = nph;
		o->stmt_out = 1;
		o->tok_ph0 = o->nph_off = nph_off;
		*nconst += nc;
	}
}

int sql_normalize(const char *q, size_t len, char *out, size_t cap, struct sql_norm *res)
{
	res->fingerprint = 0;
	res->len = 0;
	res->nconst = 0;
	res->ntags = 0;
	if (cap == 0)
		return -1;
	struct lex lx;
	struct norm o;
	struct tok t;
	lex_init(&lx, q, len, res);
	o.o = out;
	o.cap = cap - 1;
	o.n = 0;
	o.oflow = o.nph = o.stmt_out = o.lost = 0;
	o.last = TK_EOF;
	o.last_kw = 0;
	o.nl = o.nph_off = o.tok_ph0 = 0;
	int pend_semi = 0, nconst = 0;
	for (;;) {
		if (lane_ok(&lx, &o, pend_semi)) {
			fast_lane(&lx, &o, &nconst);
			if (lx.p >= lx.end)
				break; /* lex_next would give TK_EOF and change nothing */
		}
		int d = lx.depth;
		lex_next_inl(&lx, &t);
		if (t.kind == TK_EOF)
			break;
		if (t.kind == TK_MARKER) {
			if (o.nl && o.l[o.nl - 1].depth == d)
				o.l[o.nl - 1].marked = 1;
			continue;
		}
		if (t.kind == TK_SEMI) {
			/* statement separators only between statements; trailing and
			 * empty statements print nothing */
			lists_end_all(&o, d);
			if (o.stmt_out)
				pend_semi = 1;
			o.stmt_out = 0;
			continue;
		}
		nconst += t.kind == TK_CONST;
		if (o.nl)
			lists_pre(&o, t.kind, d);
		if (pend_semi) {
			static const struct tok semi = { ";", 1, TK_SEMI, 0, 0 };
			(void)emit(&o, &semi);
			pend_semi = 0;
		}
		unsigned char plast = o.last;
		unsigned plast_kw = o.last_kw;
		size_t at = emit(&o, &t);
		if (o.nl | (plast_kw & (F_IN | F_ARRAY)) | (t.kw & F_VALUES)) {
			lists_post(&o, t.kind, t.kw, d, at, plast, plast_kw);
			if (t.kind == TK_LPAREN && o.nl == 1 && o.l[0].kind == L_IN && !o.l[0].nelem && !o.l[0].el_ntok &&
			    !lx.busy && !in_typmod(&lx) && emode(&lx) == M_ALL)
				in_list_fast(&lx, &o, &nconst);
		}
		if (o.oflow)
			return -1;
	}
	lists_end_all(&o, lx.depth);
	if (o.oflow)
		return -1;
	out[o.n] = 0;
	res->len = o.n;
	res->nconst = nconst;
	res->fingerprint = XXH3_64bits(out, o.n);
	return 0;
}

/* ------------------------------------------------------------------- redact */

long sql_redact(const char *q, size_t len, char *out, size_t cap)
{
	if (cap == 0)
		return -1;
	struct lex lx;
	struct tok t;
	/* constants are numbered after the highest $n the client wrote, as
	 * libpg_query does (capped at 65535, the protocol's limit) */
	int base = 0;
	lex_init(&lx, q, len, NULL);
	for (lex_next(&lx, &t); t.kind != TK_EOF; lex_next(&lx, &t)) {
		if (t.kind != TK_PARAM)
			continue;
		int v = 0;
		for (size_t i = 1; i < t.n && v < 65536; i++)
			v = v * 10 + (t.s[i] - '0');
		if (v > 65535)
			v = 65535;
		if (v > base)
			base = v;
	}
	struct norm o;
	o.o = out;
	o.cap = cap - 1;
	o.n = 0;
	o.oflow = 0;
	o.nph = base;
	o.nl = 0;
	const char *copied = q;
	lex_init(&lx, q, len, NULL);
	for (lex_next(&lx, &t); t.kind != TK_EOF; lex_next(&lx, &t)) {
		if (t.kind != TK_CONST)
			continue;
		put(&o, copied, (size_t)(t.s - copied));
		put_num(&o, ++o.nph);
		copied = t.s + t.n;
		if (o.oflow)
			return -1;
	}
	put(&o, copied, (size_t)(q + len - copied));
	if (o.oflow)
		return -1;
	out[o.n] = 0;
	return (long)o.n;
}
