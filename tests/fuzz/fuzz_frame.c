/* fuzz_frame.c - libFuzzer target for typed-message framing and the readers of
 * src/pg/proto.c, and for the builders that write the same messages.
 *
 * The input is walked as the proxy walks a socket buffer: pg_frame_header, then skip
 * len+1 bytes; it stops at NEED_MORE, BAD, or a message that is not all there yet.
 * Each whole message is copied to an exact-size heap block (ASan sees any read past
 * its end) and read with the pg_reader calls its type byte calls for.  Type bytes
 * mean different things from client and from server ('E' Execute / ErrorResponse,
 * 'D' Describe / DataRow, 'C' Close / CommandComplete, 'S' Sync / ParameterStatus,
 * 'H' Flush / CopyOutResponse), so both layouts are read.
 *
 * Beyond "no crash", it checks:
 *   - the framer's answer against the header bytes, and that it reads only 5 bytes;
 *   - pg_parse_error against a small reference walk of the same field grammar, and
 *     that returned fields lie inside the body;
 *   - the pgb_* helpers re-encode a well-formed message byte for byte (ParameterStatus,
 *     Authentication*, BackendKeyData, ReadyForQuery, Query, Terminate, Password,
 *     SASLInitialResponse, SASLResponse); ErrorResponse round-trips through pg_parse_error;
 *   - pg_quote_literal on a Query's text against its size rule, at a tight and a
 *     one-short output size;
 *   - every message rebuilt with pgb_begin/pgb_raw/pgb_end into an unlimited buffer
 *     and into one capped by the first input byte: the capped one, once failed, never
 *     grows or changes, and holds exactly the unlimited one's bytes up to the last
 *     message that was completed before the failure. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			__builtin_trap(); \
	} while (0)

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);
	if (!d)
		abort();
	if (n)
		memcpy(d, p, n);
	return d;
}

/* Builds with fn-specific calls already done into b; compares with msg[0, mlen). */
static void check_same(struct pg_buf *b, const uint8_t *msg, size_t mlen)
{
	CHECK(!b->failed);
	CHECK(b->len == mlen);
	CHECK(memcmp(b->data, msg, mlen) == 0);
	pgb_free(b);
}

/* s, if not NULL, starts and ends (NUL included) inside [body, body + blen). */
static void check_in(const char *s, const uint8_t *body, size_t blen)
{
	if (!s)
		return;
	const uint8_t *u = (const uint8_t *)s;
	CHECK(u >= body && u < body + blen);
	CHECK(u + strlen(s) < body + blen);
}

/* ---- ErrorResponse / NoticeResponse (server) and Execute (client): 'E', 'N' ---- */

/* The field grammar written out again: (code != 0, cstr)* then a 0 code. */
static int ref_error_ok(const uint8_t *b, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t code = b[i++];
		if (code == 0)
			return 0;
		const uint8_t *nul = memchr(b + i, 0, n - i);
		if (!nul)
			return -1;
		i = (size_t)(nul - b) + 1;
	}
	return -1;
}

static void read_error(const uint8_t *body, size_t blen)
{
	struct pg_error_fields ef;
	int rc = pg_parse_error(body, blen, &ef);
	CHECK(rc == ref_error_ok(body, blen));
	if (rc < 0)
		return;
	check_in(ef.severity, body, blen);
	check_in(ef.sqlstate, body, blen);
	check_in(ef.message, body, blen);
	check_in(ef.detail, body, blen);
	check_in(ef.hint, body, blen);
	if (!ef.severity || !ef.sqlstate || !ef.message)
		return;
	/* Our own ErrorResponse with the same three fields reads back the same. */
	struct pg_buf b;
	struct pg_error_fields again;
	uint8_t type;
	uint32_t len;
	pgb_init(&b);
	pgb_error(&b, ef.severity, ef.sqlstate, ef.message);
	CHECK(!b.failed);
	CHECK(pg_frame_header(b.data, b.len, &type, &len) == PG_FRAME_OK);
	CHECK(type == 'E' && (size_t)len + 1 == b.len);
	uint8_t *copy = dup_exact(b.data + 5, len - 4);
	CHECK(pg_parse_error(copy, len - 4, &again) == 0);
	CHECK(strcmp(again.severity, ef.severity) == 0);
	CHECK(strcmp(again.sqlstate, ef.sqlstate) == 0);
	CHECK(strcmp(again.message, ef.message) == 0);
	CHECK(!again.detail && !again.hint);
	free(copy);
	pgb_free(&b);
}

static void read_execute(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	check_in(pgr_cstr(&r, NULL), body, blen);
	(void)pgr_u32(&r);
}

/* ---- server messages ---- */

static void read_param_status(const uint8_t *msg, size_t mlen)
{
	const uint8_t *body = msg + 5;
	size_t blen = mlen - 5;
	struct pg_reader r;
	size_t nl = 0, vl = 0;
	pgr_init(&r, body, blen);
	const char *name = pgr_cstr(&r, &nl);
	const char *value = pgr_cstr(&r, &vl);
	CHECK(!r.err == (name && value));
	if (r.err)
		return;
	CHECK(strlen(name) == nl && strlen(value) == vl);
	(void)pg_tracked_param_index(name);
	if (pgr_left(&r) == 0) {
		struct pg_buf b;
		pgb_init(&b);
		pgb_param_status(&b, name, value);
		check_same(&b, msg, mlen);
	}
}

static void read_auth(const uint8_t *msg, size_t mlen)
{
	const uint8_t *body = msg + 5;
	size_t blen = mlen - 5;
	struct pg_reader r;
	pgr_init(&r, body, blen);
	uint32_t code = pgr_u32(&r);
	if (r.err)
		return;
	const uint8_t *rest = r.p;
	size_t rlen = pgr_left(&r);
	switch (code) {
	case PG_AUTH_MD5:
		(void)pgr_bytes(&r, 4);
		break;
	case PG_AUTH_SASL:
		/* Mechanism names, then an empty one. */
		for (;;) {
			const char *mech = pgr_cstr(&r, NULL);
			if (!mech || !mech[0])
				break;
			check_in(mech, body, blen);
		}
		break;
	default: /* SASLContinue / SASLFinal data: the rest */
		(void)pgr_bytes(&r, pgr_left(&r));
		break;
	}
	struct pg_buf b;
	pgb_init(&b);
	pgb_auth(&b, code, rest, rlen);
	check_same(&b, msg, mlen);
}

static void read_backend_key(const uint8_t *msg, size_t mlen)
{
	struct pg_reader r;
	pgr_init(&r, msg + 5, mlen - 5);
	uint32_t pid = pgr_u32(&r);
	uint32_t key = pgr_u32(&r);
	if (r.err || pgr_left(&r) != 0)
		return;
	struct pg_buf b;
	pgb_init(&b);
	pgb_backend_key(&b, pid, key);
	check_same(&b, msg, mlen);
}

static void read_ready(const uint8_t *msg, size_t mlen)
{
	struct pg_reader r;
	pgr_init(&r, msg + 5, mlen - 5);
	uint8_t st = pgr_u8(&r);
	if (r.err || pgr_left(&r) != 0)
		return;
	struct pg_buf b;
	pgb_init(&b);
	pgb_ready(&b, (char)st);
	check_same(&b, msg, mlen);
}

static void read_row_description(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	uint16_t n = pgr_u16(&r);
	for (uint32_t i = 0; i < n && !r.err; i++) {
		check_in(pgr_cstr(&r, NULL), body, blen);
		(void)pgr_u32(&r); /* table oid */
		(void)pgr_u16(&r); /* column number */
		(void)pgr_u32(&r); /* type oid */
		(void)pgr_u16(&r); /* type size */
		(void)pgr_u32(&r); /* type modifier */
		(void)pgr_u16(&r); /* format */
	}
}

/* int32 length (-1: NULL) then that many bytes, as in DataRow, Bind, FunctionCall. */
static void read_values(struct pg_reader *r, uint32_t n)
{
	for (uint32_t i = 0; i < n && !r->err; i++) {
		uint32_t l = pgr_u32(r);
		if (l != 0xffffffffu)
			(void)pgr_bytes(r, l);
	}
}

static void read_u16s(struct pg_reader *r, uint32_t n)
{
	for (uint32_t i = 0; i < n && !r->err; i++)
		(void)pgr_u16(r);
}

static void read_data_row(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	read_values(&r, pgr_u16(&r));
}

static void read_describe_or_close(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	(void)pgr_u8(&r); /* 'S' or 'P' */
	check_in(pgr_cstr(&r, NULL), body, blen);
}

static void read_one_cstr(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	size_t l = 0;
	pgr_init(&r, body, blen);
	const char *s = pgr_cstr(&r, &l);
	check_in(s, body, blen);
	if (s)
		CHECK(strlen(s) == l);
}

static void read_copy_response(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	(void)pgr_u8(&r);
	read_u16s(&r, pgr_u16(&r));
}

static void read_notification(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	(void)pgr_u32(&r);
	check_in(pgr_cstr(&r, NULL), body, blen);
	check_in(pgr_cstr(&r, NULL), body, blen);
}

static void read_negotiate(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	(void)pgr_u32(&r);
	uint32_t n = pgr_u32(&r);
	for (uint32_t i = 0; i < n && !r.err; i++)
		check_in(pgr_cstr(&r, NULL), body, blen);
}

static void read_param_description(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	uint16_t n = pgr_u16(&r);
	for (uint32_t i = 0; i < n && !r.err; i++)
		(void)pgr_u32(&r);
}

/* ---- client messages ---- */

/* Size rule of pg_quote_literal: [E]'...' with ' doubled (and \ doubled in E form). */
static size_t ref_quoted_len(const char *s)
{
	size_t q = 0, bs = 0, n = strlen(s);
	for (const char *p = s; *p; p++) {
		q += *p == '\'';
		bs += *p == '\\';
	}
	return (bs ? 1 : 0) + 2 + n + q + bs;
}

static void check_quote(const char *sql)
{
	size_t want = ref_quoted_len(sql);
	/* Exactly enough (want + NUL), then one byte short. */
	char *out = malloc(want + 1);
	if (!out)
		abort();
	int rc = pg_quote_literal(sql, out, want + 1);
	CHECK(rc >= 0 && (size_t)rc == want && strlen(out) == want);
	CHECK(out[want - 1] == '\'');
	CHECK(out[0] == (strchr(sql, '\\') ? 'E' : '\''));
	free(out);
	out = malloc(want);
	if (!out)
		abort();
	CHECK(pg_quote_literal(sql, out, want) == -1);
	free(out);
}

static void read_query(const uint8_t *msg, size_t mlen)
{
	struct pg_reader r;
	pgr_init(&r, msg + 5, mlen - 5);
	const char *sql = pgr_cstr(&r, NULL);
	if (!sql)
		return;
	check_in(sql, msg + 5, mlen - 5);
	if (strlen(sql) <= 4096)
		check_quote(sql);
	if (pgr_left(&r) == 0) {
		struct pg_buf b;
		pgb_init(&b);
		pgb_query(&b, sql);
		check_same(&b, msg, mlen);
	}
}

static void read_terminate(const uint8_t *msg, size_t mlen)
{
	if (mlen != 5)
		return;
	struct pg_buf b;
	pgb_init(&b);
	pgb_terminate(&b);
	check_same(&b, msg, mlen);
}

/* PasswordMessage, SASLInitialResponse and SASLResponse all use 'p'. */
static void read_password(const uint8_t *msg, size_t mlen)
{
	const uint8_t *body = msg + 5;
	size_t blen = mlen - 5;
	struct pg_buf b;
	struct pg_reader r;

	pgb_init(&b);
	pgb_sasl_response(&b, body, blen);
	check_same(&b, msg, mlen);

	pgr_init(&r, body, blen);
	const char *s = pgr_cstr(&r, NULL);
	if (!s)
		return;
	if (pgr_left(&r) == 0) {
		pgb_init(&b);
		pgb_password(&b, s);
		check_same(&b, msg, mlen);
		return;
	}
	uint32_t dlen = pgr_u32(&r);
	if (r.err || dlen != pgr_left(&r))
		return;
	pgb_init(&b);
	pgb_sasl_initial(&b, s, r.p, dlen);
	check_same(&b, msg, mlen);
}

static void read_parse(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	check_in(pgr_cstr(&r, NULL), body, blen); /* statement */
	check_in(pgr_cstr(&r, NULL), body, blen); /* query */
	uint16_t n = pgr_u16(&r);
	for (uint32_t i = 0; i < n && !r.err; i++)
		(void)pgr_u32(&r);
}

static void read_bind(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	check_in(pgr_cstr(&r, NULL), body, blen); /* portal */
	check_in(pgr_cstr(&r, NULL), body, blen); /* statement */
	read_u16s(&r, pgr_u16(&r));               /* parameter formats */
	read_values(&r, pgr_u16(&r));             /* parameter values */
	read_u16s(&r, pgr_u16(&r));               /* result formats */
}

static void read_function_call(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	(void)pgr_u32(&r);
	read_u16s(&r, pgr_u16(&r));
	read_values(&r, pgr_u16(&r));
	(void)pgr_u16(&r);
}

static void read_function_result(const uint8_t *body, size_t blen)
{
	struct pg_reader r;
	pgr_init(&r, body, blen);
	read_values(&r, 1);
}

static void dispatch(uint8_t type, const uint8_t *msg, size_t mlen)
{
	const uint8_t *body = msg + 5;
	size_t blen = mlen - 5;
	switch (type) {
	case 'E':
		read_error(body, blen);
		read_execute(body, blen);
		break;
	case 'N':
		read_error(body, blen);
		break;
	case 'S':
		read_param_status(msg, mlen);
		break;
	case 'R':
		read_auth(msg, mlen);
		break;
	case 'K':
		read_backend_key(msg, mlen);
		break;
	case 'Z':
		read_ready(msg, mlen);
		break;
	case 'T':
		read_row_description(body, blen);
		break;
	case 'D':
		read_data_row(body, blen);
		read_describe_or_close(body, blen);
		break;
	case 'C':
		read_one_cstr(body, blen); /* CommandComplete tag */
		read_describe_or_close(body, blen);
		break;
	case 'G':
	case 'H':
	case 'W':
		read_copy_response(body, blen);
		break;
	case 'A':
		read_notification(body, blen);
		break;
	case 'v':
		read_negotiate(body, blen);
		break;
	case 't':
		read_param_description(body, blen);
		break;
	case 'Q':
		read_query(msg, mlen);
		break;
	case 'X':
		read_terminate(msg, mlen);
		break;
	case 'p':
		read_password(msg, mlen);
		break;
	case 'P':
		read_parse(body, blen);
		break;
	case 'B':
		read_bind(body, blen);
		break;
	case 'F':
		read_function_call(body, blen);
		break;
	case 'V':
		read_function_result(body, blen);
		break;
	case 'f':
		read_one_cstr(body, blen); /* CopyFail */
		break;
	default: /* 'd' CopyData, 'c' CopyDone, '1' '2' '3' 'n' 's' 'I': bytes or nothing */
		break;
	}
}

/* Appends a generic rebuild of msg to b. */
static void rebuild(struct pg_buf *b, uint8_t type, const uint8_t *msg, size_t mlen)
{
	pgb_begin(b, type);
	pgb_raw(b, msg + 5, mlen - 5);
	pgb_end(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_buf all, cap;
	size_t pos = 0, good = 0, frozen_len = 0;
	bool seen_fail = false;

	pgb_init(&all);
	pgb_init(&cap);
	cap.max = size ? 1 + (size_t)data[0] * 8 : 1;

	while (pos < size) {
		size_t avail = size - pos;
		uint8_t type;
		uint32_t len;
		/* The framer is told avail bytes are there but gets only the header. */
		uint8_t *head = dup_exact(data + pos, avail < 5 ? avail : 5);
		enum pg_frame f = pg_frame_header(head, avail, &type, &len);
		free(head);
		if (f == PG_FRAME_NEED_MORE) {
			CHECK(avail < 5);
			break;
		}
		uint32_t w = pg_get_u32(data + pos + 1);
		if (f == PG_FRAME_BAD) {
			CHECK(w < 4 || w > PG_MAX_MSG_LEN);
			break;
		}
		CHECK(f == PG_FRAME_OK && type == data[pos] && len == w && len >= 4 && len <= PG_MAX_MSG_LEN);
		if (avail - 1 < len)
			break; /* not all there yet: the proxy would wait */
		size_t mlen = (size_t)len + 1;
		uint8_t *msg = dup_exact(data + pos, mlen);
		dispatch(type, msg, mlen);

		/* Type 0 would start an untyped packet in pgb_begin: not a rebuild of msg. */
		if (type != 0) {
			size_t before = all.len;
			rebuild(&all, type, msg, mlen);
			CHECK(!all.failed && all.len - before == mlen);
			CHECK(memcmp(all.data + before, msg, mlen) == 0);

			if (!cap.failed)
				good = cap.len;
			rebuild(&cap, type, msg, mlen);
			if (cap.failed && !seen_fail) {
				seen_fail = true;
				frozen_len = cap.len;
			}
		}
		free(msg);
		pos += mlen;
	}

	CHECK(cap.len <= cap.max);
	if (!cap.failed) {
		CHECK(cap.len == all.len);
		CHECK(cap.len == 0 || memcmp(cap.data, all.data, cap.len) == 0);
	} else {
		CHECK(cap.len == frozen_len);
		CHECK(good <= cap.len);
		CHECK(good == 0 || memcmp(cap.data, all.data, good) == 0);
	}
	pgb_free(&all);
	pgb_free(&cap);
	return 0;
}
