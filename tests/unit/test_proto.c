/* test_proto.c - src/pg/proto.c: framing, readers, the startup packet, ErrorResponse
 * fields, the builders (byte-exact against hand-written messages, sticky failure bit
 * at every limit), the tracked-parameter table and literal quoting.
 *
 * Inputs are placed so that they end exactly at a PROT_NONE guard page (mmap memory is
 * not seen by ASan, the guard page is what catches a read past the end), and every
 * prefix of every valid input is tried.  Outputs of pg_quote_literal are placed the same
 * way, so a write past outlen faults. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pg/proto.h"

/* A byte-string literal with embedded NULs: pointer and length without the final NUL.
 * Literals are split after every escape so a following digit is not read into it. */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* ------------------------------------------------------------ guard page */

#define GUARD_SPAN (64 * 1024)

static uint8_t *g_base; /* g_span readable/writable bytes, then one PROT_NONE page */
static size_t g_span, g_page;

static int guard_setup(void **state)
{
	(void)state;
	g_page = (size_t)sysconf(_SC_PAGESIZE);
	g_span = (GUARD_SPAN + g_page - 1) / g_page * g_page;
	void *m = mmap(NULL, g_span + g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -1;
	if (mprotect((uint8_t *)m + g_span, g_page, PROT_NONE) != 0)
		return -1;
	g_base = m;
	return 0;
}

static int guard_teardown(void **state)
{
	(void)state;
	munmap(g_base, g_span + g_page);
	return 0;
}

static uint8_t *guard_end(void) { return g_base + g_span; }

/* Copies n bytes so that the last one is the last readable byte before the guard. */
static const uint8_t *at_guard(const void *data, size_t n)
{
	assert_true(n <= g_span);
	uint8_t *p = guard_end() - n;
	if (n)
		memcpy(p, data, n);
	return p;
}

/* n writable bytes ending at the guard page, filled with a marker. */
static char *out_at_guard(size_t n)
{
	assert_true(n <= g_span);
	uint8_t *p = guard_end() - n;
	memset(p, 0xAA, n);
	return (char *)p;
}

/* The helper is only worth something if touching the guard page really faults. */
static void test_guard_page_faults(void **state)
{
	(void)state;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Not cmocka's handler: it would longjmp and run the remaining tests here. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		volatile const uint8_t *p = guard_end();
		uint8_t v = *p;
		(void)v;
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_true(WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS);
	/* ...and the last byte before it does not. */
	const uint8_t *q = at_guard("x", 1);
	assert_int_equal(q[0], 'x');
}

/* ------------------------------------------------------------- framing */

static void test_frame_header_whole(void **state)
{
	(void)state;
	uint8_t type = 0;
	uint32_t len = 0;
	const uint8_t *p = at_guard(LIT("Q\0\0\0\x0d" "SELECT 1\0"));
	assert_int_equal(pg_frame_header(p, 14, &type, &len), PG_FRAME_OK);
	assert_int_equal(type, 'Q');
	assert_int_equal(len, 13);

	/* Only the five header bytes are needed to frame. */
	p = at_guard(LIT("Q\0\0\0\x0d"));
	assert_int_equal(pg_frame_header(p, 5, &type, &len), PG_FRAME_OK);
	assert_int_equal(len, 13);

	/* Smallest (length counts only itself) and largest accepted lengths. */
	p = at_guard(LIT("X\0\0\0\x04"));
	assert_int_equal(pg_frame_header(p, 5, &type, &len), PG_FRAME_OK);
	assert_int_equal(type, 'X');
	assert_int_equal(len, 4);
	p = at_guard(LIT("d\x3f\xff\xff\xff"));
	assert_int_equal(pg_frame_header(p, 5, &type, &len), PG_FRAME_OK);
	assert_int_equal(len, PG_MAX_MSG_LEN);
}

static void test_frame_header_partial(void **state)
{
	(void)state;
	static const uint8_t msg[] = {'Z', 0, 0, 0, 5, 'I'};
	for (size_t n = 0; n < 5; n++) {
		uint8_t type = 0;
		uint32_t len = 0;
		const uint8_t *p = at_guard(msg, n);
		assert_int_equal(pg_frame_header(p, n, &type, &len), PG_FRAME_NEED_MORE);
	}
	for (size_t n = 5; n <= sizeof(msg); n++) {
		uint8_t type = 0;
		uint32_t len = 0;
		const uint8_t *p = at_guard(msg, n);
		assert_int_equal(pg_frame_header(p, n, &type, &len), PG_FRAME_OK);
		assert_int_equal(type, 'Z');
		assert_int_equal(len, 5);
	}
}

static void test_frame_header_malformed(void **state)
{
	(void)state;
	static const uint32_t bad[] = {0, 1, 2, 3, PG_MAX_MSG_LEN + 1u, 0x40000000u, 0x7fffffffu,
				       0x80000000u, 0xfffffffcu, 0xffffffffu};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t m[5] = {'Q'};
		uint8_t type;
		uint32_t len;
		pg_put_u32(m + 1, bad[i]);
		const uint8_t *p = at_guard(m, sizeof(m));
		assert_int_equal(pg_frame_header(p, sizeof(m), &type, &len), PG_FRAME_BAD);
	}
	/* Type bytes are not judged by the framer: any byte frames. */
	for (int t = 0; t < 256; t++) {
		uint8_t m[5] = {(uint8_t)t, 0, 0, 0, 4};
		uint8_t type = 0;
		uint32_t len = 0;
		assert_int_equal(pg_frame_header(at_guard(m, 5), 5, &type, &len), PG_FRAME_OK);
		assert_int_equal(type, t);
		assert_int_equal(len, 4);
	}
}

static void test_frame_startup(void **state)
{
	(void)state;
	uint32_t len;
	static const struct {
		uint32_t len;
		enum pg_frame want;
	} cases[] = {
		{0, PG_FRAME_BAD},           {4, PG_FRAME_BAD},       {7, PG_FRAME_BAD},
		{8, PG_FRAME_OK},            {16, PG_FRAME_OK},       {PG_MAX_STARTUP_LEN, PG_FRAME_OK},
		{PG_MAX_STARTUP_LEN + 1, PG_FRAME_BAD},               {0x7fffffffu, PG_FRAME_BAD},
		{0x80000000u, PG_FRAME_BAD}, {0xffffffffu, PG_FRAME_BAD},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t m[4];
		pg_put_u32(m, cases[i].len);
		len = 0;
		assert_int_equal(pg_frame_startup(at_guard(m, 4), 4, &len), cases[i].want);
		if (cases[i].want == PG_FRAME_OK)
			assert_int_equal(len, cases[i].len);
	}
	/* Prefixes of an SSLRequest: need the four length bytes, then frame. */
	static const uint8_t ssl[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
	for (size_t n = 0; n <= sizeof(ssl); n++) {
		len = 0;
		enum pg_frame f = pg_frame_startup(at_guard(ssl, n), n, &len);
		assert_int_equal(f, n < 4 ? PG_FRAME_NEED_MORE : PG_FRAME_OK);
		if (n >= 4)
			assert_int_equal(len, 8);
	}
}

/* What the proxy does with a stream: header, then skip len+1 bytes.  Returns the number
 * of whole messages in buf[0, n); *tail is the final framing result. */
static size_t walk_stream(const uint8_t *buf, size_t n, enum pg_frame *tail)
{
	size_t pos = 0, count = 0;
	for (;;) {
		uint8_t type;
		uint32_t len;
		enum pg_frame f = pg_frame_header(buf + pos, n - pos, &type, &len);
		if (f != PG_FRAME_OK || n - pos < (size_t)len + 1) {
			*tail = f;
			return count;
		}
		pos += (size_t)len + 1;
		count++;
	}
}

static void test_frame_stream_every_prefix(void **state)
{
	(void)state;
	/* AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery. */
	static const uint8_t s[] = "R\0\0\0\x08\0\0\0\0"
				   "S\0\0\0\x19" "client_encoding\0UTF8\0"
				   "K\0\0\0\x0c\0\0\x30\x39\x12\x34\x56\x78"
				   "Z\0\0\0\x05I";
	const size_t total = sizeof(s) - 1;
	const size_t ends[] = {9, 35, 48, 54};
	assert_int_equal(total, 54);
	for (size_t n = 0; n <= total; n++) {
		enum pg_frame tail;
		size_t whole = 0;
		while (whole < 4 && ends[whole] <= n)
			whole++;
		size_t start = whole ? ends[whole - 1] : 0;
		assert_int_equal(walk_stream(at_guard(s, n), n, &tail), whole);
		assert_int_equal(tail, n - start < 5 ? PG_FRAME_NEED_MORE : PG_FRAME_OK);
	}
	/* A bad length in the middle of a stream stops it there. */
	uint8_t bad[sizeof(s) - 1];
	memcpy(bad, s, sizeof(bad));
	pg_put_u32(bad + 36, 3); /* BackendKeyData claims length 3 */
	enum pg_frame tail;
	assert_int_equal(walk_stream(at_guard(bad, sizeof(bad)), sizeof(bad), &tail), 2);
	assert_int_equal(tail, PG_FRAME_BAD);
}

/* ------------------------------------------------------------- readers */

static void test_reader_whole(void **state)
{
	(void)state;
	static const uint8_t in[] = "\x7f" "\x12\x34" "\xde\xad\xbe\xef" "hello\0" "\0" "xyz";
	struct pg_reader r;
	size_t sl = 99;
	pgr_init(&r, at_guard(in, sizeof(in) - 1), sizeof(in) - 1);
	assert_int_equal(pgr_left(&r), 17);
	assert_int_equal(pgr_u8(&r), 0x7f);
	assert_int_equal(pgr_u16(&r), 0x1234);
	assert_int_equal(pgr_u32(&r), 0xdeadbeefu);
	const char *s = pgr_cstr(&r, &sl);
	assert_non_null(s);
	assert_string_equal(s, "hello");
	assert_int_equal(sl, 5);
	s = pgr_cstr(&r, NULL); /* empty string; len_out may be NULL */
	assert_non_null(s);
	assert_string_equal(s, "");
	const uint8_t *b = pgr_bytes(&r, 3);
	assert_non_null(b);
	assert_memory_equal(b, "xyz", 3);
	assert_int_equal(pgr_left(&r), 0);
	assert_false(r.err);
	/* Zero bytes at the very end are fine. */
	assert_non_null(pgr_bytes(&r, 0));
	assert_false(r.err);
}

static void test_reader_overrun_sticky(void **state)
{
	(void)state;
	struct pg_reader r;
	const uint8_t *p = at_guard(LIT("\x01\x02\x03"));

	pgr_init(&r, p, 3);
	assert_int_equal(pgr_u32(&r), 0);
	assert_true(r.err);
	assert_int_equal(pgr_left(&r), 3); /* a failed read consumes nothing */
	/* Sticky: bytes are there, but every later read fails too. */
	assert_int_equal(pgr_u8(&r), 0);
	assert_int_equal(pgr_u16(&r), 0);
	assert_null(pgr_bytes(&r, 1));
	assert_null(pgr_bytes(&r, 0));
	assert_null(pgr_cstr(&r, NULL));
	assert_true(r.err);

	pgr_init(&r, p, 3);
	assert_int_equal(pgr_u16(&r), 0x0102);
	assert_int_equal(pgr_u16(&r), 0);
	assert_true(r.err);

	pgr_init(&r, p, 3);
	assert_null(pgr_bytes(&r, 4));
	assert_true(r.err);
	pgr_init(&r, p, 3);
	assert_null(pgr_bytes(&r, SIZE_MAX)); /* no pointer arithmetic overflow */
	assert_true(r.err);

	/* A string with no NUL before the end. */
	size_t sl = 77;
	pgr_init(&r, at_guard(LIT("abc")), 3);
	assert_null(pgr_cstr(&r, &sl));
	assert_true(r.err);
	assert_int_equal(sl, 77);

	/* Empty buffer right at the guard page. */
	pgr_init(&r, guard_end(), 0);
	assert_int_equal(pgr_u8(&r), 0);
	assert_true(r.err);
	pgr_init(&r, guard_end(), 0);
	assert_null(pgr_cstr(&r, NULL));
	assert_true(r.err);
}

/* Reads u8, u16, u32, cstr, bytes(3) from every prefix: exactly the reads that fit
 * succeed, and nothing past the prefix is touched. */
static void test_reader_every_prefix(void **state)
{
	(void)state;
	static const uint8_t in[] = "\x7f" "\x12\x34" "\xde\xad\xbe\xef" "hello\0" "xyz";
	const size_t total = sizeof(in) - 1;
	const size_t ends[] = {1, 3, 7, 13, 16};
	for (size_t n = 0; n <= total; n++) {
		struct pg_reader r;
		size_t ok = 0;
		pgr_init(&r, at_guard(in, n), n);
		(void)pgr_u8(&r);
		ok += !r.err;
		(void)pgr_u16(&r);
		ok += !r.err;
		(void)pgr_u32(&r);
		ok += !r.err;
		(void)pgr_cstr(&r, NULL);
		ok += !r.err;
		(void)pgr_bytes(&r, 3);
		ok += !r.err;
		size_t want = 0;
		while (want < 5 && ends[want] <= n)
			want++;
		assert_int_equal(ok, want);
	}
}

/* An empty pg_buf has data == NULL, and the proxy hands such buffers to readers
 * (client_finish_welcome reads pool->welcome).  NULL + 0 and memchr(NULL, 0, 0) are
 * undefined behaviour that UBSan reports; run in a child so a sanitizer abort fails
 * this test only. */
static void test_reader_null_empty(void **state)
{
	(void)state;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct pg_reader r;
		struct pg_error_fields ef;
		struct pg_buf b;
		pgb_init(&b);
		pgr_init(&r, b.data, b.len);
		bool ok = pgr_left(&r) == 0;
		ok = ok && pgr_cstr(&r, NULL) == NULL && r.err;
		pgr_init(&r, b.data, b.len);
		ok = ok && pgr_u32(&r) == 0 && r.err;
		ok = ok && pg_parse_error(b.data, b.len, &ef) == -1;
		_exit(ok ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_get_put_u32(void **state)
{
	(void)state;
	uint8_t b[4];
	pg_put_u32(b, 0x80fe0102u);
	assert_memory_equal(b, "\x80\xfe\x01\x02", 4);
	assert_int_equal(pg_get_u32(b), 0x80fe0102u);
}

/* ------------------------------------------------------------- startup packet */

/* Independent of pgb_startup: length, code, then name/value pairs, optional final NUL. */
static size_t mkpkt(uint8_t *out, size_t cap, uint32_t code, const char *const *kv, size_t nkv, bool term)
{
	size_t o = 8;
	for (size_t i = 0; i < nkv; i++) {
		size_t l = strlen(kv[i]) + 1;
		assert_true(o + l <= cap);
		memcpy(out + o, kv[i], l);
		o += l;
	}
	if (term) {
		assert_true(o < cap);
		out[o++] = 0;
	}
	pg_put_u32(out, (uint32_t)o);
	pg_put_u32(out + 4, code);
	return o;
}

static char err[256];

static int parse_at_guard(const uint8_t *pkt, size_t len, struct pg_startup *st)
{
	memset(err, 0, sizeof(err));
	int rc = pg_parse_startup(at_guard(pkt, len), len, st, err, sizeof(err));
	if (rc < 0)
		assert_true(err[0] != '\0');
	else
		assert_int_equal(rc, 0);
	return rc;
}

/* A real StartupMessage as libpq sends it. */
static const uint8_t real_startup[] = "\0\0\0\x61" "\0\x03\0\0"
				      "user\0alice\0"
				      "database\0shop\0"
				      "application_name\0psql\0"
				      "client_encoding\0UTF8\0"
				      "options\0-c geqo=off\0"
				      "\0";

static void test_startup_real(void **state)
{
	(void)state;
	struct pg_startup st;
	const size_t n = sizeof(real_startup) - 1;
	assert_int_equal(n, 0x61);
	assert_int_equal(parse_at_guard(real_startup, n, &st), 0);
	assert_int_equal(st.code, PG_PROTOCOL_V3);
	assert_string_equal(st.user, "alice");
	assert_string_equal(st.database, "shop");
	assert_string_equal(st.options, "-c geqo=off");
	assert_null(st.replication);
	assert_int_equal(st.nparams, 2);
	assert_string_equal(st.params[0].name, "application_name");
	assert_string_equal(st.params[0].value, "psql");
	assert_string_equal(st.params[1].name, "client_encoding");
	assert_string_equal(st.params[1].value, "UTF8");
	/* Strings point into the packet, not into copies. */
	const uint8_t *p = guard_end() - n;
	assert_ptr_equal(st.user, (const char *)p + 13);
	assert_true((const uint8_t *)st.params[1].value > p && (const uint8_t *)st.params[1].value < p + n);
}

static void test_startup_every_prefix(void **state)
{
	(void)state;
	const size_t total = sizeof(real_startup) - 1;
	struct pg_startup st;
	uint8_t buf[sizeof(real_startup)];
	for (size_t n = 0; n <= total; n++) {
		/* As the bytes arrive: the framer waits, the parser refuses a short packet. */
		uint32_t len = 0;
		enum pg_frame f = pg_frame_startup(at_guard(real_startup, n), n, &len);
		assert_int_equal(f, n < 4 ? PG_FRAME_NEED_MORE : PG_FRAME_OK);
		if (f == PG_FRAME_OK)
			assert_int_equal(len, total);
		assert_int_equal(parse_at_guard(real_startup, n, &st), n == total ? 0 : -1);
		if (n < total)
			assert_string_equal(err, "invalid length of startup packet");
		/* The same truncation with its length word made to agree: still refused, since
		 * the last byte is no longer the packet terminator. */
		if (n >= 8 && n < total) {
			memcpy(buf, real_startup, n);
			pg_put_u32(buf, (uint32_t)n);
			assert_int_equal(parse_at_guard(buf, n, &st), -1);
			assert_string_equal(err, "invalid startup packet layout: expected terminator as last byte");
		}
	}
}

/* Every single-byte change to a valid packet: a clean 0 or -1, never a fault. */
static void test_startup_mutations(void **state)
{
	(void)state;
	const size_t total = sizeof(real_startup) - 1;
	uint8_t buf[sizeof(real_startup)];
	struct pg_startup st;
	static const uint8_t vals[] = {0x00, 0x01, 0x03, 0x08, 0x2e, 0x2f, 0x30, 0x56, 0x7f, 0x80, 0xff, '_', 'u'};
	for (size_t i = 0; i < total; i++)
		for (size_t v = 0; v < sizeof(vals); v++) {
			memcpy(buf, real_startup, total);
			buf[i] = vals[v];
			if (parse_at_guard(buf, total, &st) == 0 && st.code == PG_PROTOCOL_V3) {
				assert_non_null(st.user);
				assert_true(st.user[0] != '\0');
				assert_non_null(st.database);
			}
		}
}

static void test_startup_database_defaults_to_user(void **state)
{
	(void)state;
	uint8_t b[256];
	struct pg_startup st;
	const char *kv1[] = {"user", "bob"};
	size_t n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv1, 2, true);
	assert_int_equal(parse_at_guard(b, n, &st), 0);
	assert_string_equal(st.user, "bob");
	assert_string_equal(st.database, "bob");
	assert_int_equal(st.nparams, 0);

	const char *kv2[] = {"database", "", "user", "carol"};
	n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv2, 4, true);
	assert_int_equal(parse_at_guard(b, n, &st), 0);
	assert_string_equal(st.database, "carol");
}

static void test_startup_missing_user(void **state)
{
	(void)state;
	uint8_t b[256];
	struct pg_startup st;
	const char *kv1[] = {"database", "shop"};
	size_t n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv1, 2, true);
	assert_int_equal(parse_at_guard(b, n, &st), -1);
	assert_string_equal(err, "no PostgreSQL user name specified in startup packet");

	const char *kv2[] = {"user", "", "database", "shop"};
	n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv2, 4, true);
	assert_int_equal(parse_at_guard(b, n, &st), -1);
	assert_string_equal(err, "no PostgreSQL user name specified in startup packet");

	/* No parameters at all, only the terminator. */
	n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, NULL, 0, true);
	assert_int_equal(n, 9);
	assert_int_equal(parse_at_guard(b, n, &st), -1);
	assert_string_equal(err, "no PostgreSQL user name specified in startup packet");
}

static void test_startup_layout_errors(void **state)
{
	(void)state;
	uint8_t b[256];
	struct pg_startup st;
	const char *layout = "invalid startup packet layout: expected terminator as last byte";

	/* No final terminator after the last pair. */
	const char *kv[] = {"user", "bob", "database", "db"};
	size_t n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv, 4, false);
	assert_int_equal(parse_at_guard(b, n, &st), -1);
	assert_string_equal(err, layout);

	/* A name with no value. */
	const char *kv2[] = {"user", "bob", "database"};
	n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv2, 3, false);
	assert_int_equal(parse_at_guard(b, n, &st), -1);
	assert_string_equal(err, layout);

	/* A value that runs to the end with no NUL. */
	static const uint8_t v[] = "\0\0\0\x10" "\0\x03\0\0" "user\0bob";
	assert_int_equal(parse_at_guard(v, sizeof(v) - 1, &st), -1);
	assert_string_equal(err, layout);

	/* Bytes after the terminator. */
	static const uint8_t t[] = "\0\0\0\x15" "\0\x03\0\0" "user\0bob\0" "\0" "xyz";
	assert_int_equal(parse_at_guard(t, sizeof(t) - 1, &st), -1);
	assert_string_equal(err, layout);

	/* Just the protocol code, no terminator at all. */
	static const uint8_t e[] = "\0\0\0\x08" "\0\x03\0\0";
	assert_int_equal(parse_at_guard(e, 8, &st), -1);
	assert_string_equal(err, layout);
}

static void test_startup_length_errors(void **state)
{
	(void)state;
	struct pg_startup st;
	const char *msg = "invalid length of startup packet";
	/* len < 8 */
	for (size_t n = 0; n < 8; n++) {
		assert_int_equal(parse_at_guard(real_startup, n, &st), -1);
		assert_string_equal(err, msg);
	}
	/* Length word disagrees with the packet: 0, 2^31, one off each way. */
	const uint32_t total = (uint32_t)(sizeof(real_startup) - 1);
	const uint32_t words[] = {0, 8, total - 1, total + 1, 0x80000000u, 0xffffffffu};
	uint8_t b[sizeof(real_startup)];
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		memcpy(b, real_startup, sizeof(b));
		pg_put_u32(b, words[i]);
		assert_int_equal(parse_at_guard(b, sizeof(real_startup) - 1, &st), -1);
		assert_string_equal(err, msg);
	}
}

static void test_startup_special_requests(void **state)
{
	(void)state;
	struct pg_startup st;
	static const uint8_t ssl[] = "\0\0\0\x08\x04\xd2\x16\x2f";
	static const uint8_t gss[] = "\0\0\0\x08\x04\xd2\x16\x30";
	static const uint8_t cancel[] = "\0\0\0\x10\x04\xd2\x16\x2e" "\0\0\x30\x39" "\xde\xad\xbe\xef";

	assert_int_equal(parse_at_guard(ssl, 8, &st), 0);
	assert_int_equal(st.code, PG_SSL_REQUEST);
	assert_null(st.user);
	assert_int_equal(parse_at_guard(gss, 8, &st), 0);
	assert_int_equal(st.code, PG_GSSENC_REQUEST);
	assert_int_equal(parse_at_guard(cancel, 16, &st), 0);
	assert_int_equal(st.code, PG_CANCEL_REQUEST);
	assert_int_equal(st.cancel_pid, 12345);
	assert_int_equal(st.cancel_key, 0xdeadbeefu);

	/* Wrong lengths (with a length word that agrees, so only the kind is judged). */
	uint8_t b[64];
	memset(b, 0, sizeof(b));
	for (size_t n = 9; n <= 24; n++) {
		memcpy(b, ssl, 8);
		pg_put_u32(b, (uint32_t)n);
		assert_int_equal(parse_at_guard(b, n, &st), -1);
		assert_string_equal(err, "invalid length of encryption request packet");
		memcpy(b, gss, 8);
		pg_put_u32(b, (uint32_t)n);
		assert_int_equal(parse_at_guard(b, n, &st), -1);
		assert_string_equal(err, "invalid length of encryption request packet");
	}
	for (size_t n = 8; n <= 24; n++) {
		if (n == 16)
			continue;
		memcpy(b, cancel, n < 16 ? n : 16);
		pg_put_u32(b, (uint32_t)n);
		assert_int_equal(parse_at_guard(b, n, &st), -1);
		assert_string_equal(err, "invalid length of cancel request packet");
	}
	/* Every prefix of a cancel request: refused, never read past. */
	for (size_t n = 0; n < 16; n++)
		assert_int_equal(parse_at_guard(cancel, n, &st), -1);
}

static void test_startup_protocol_versions(void **state)
{
	(void)state;
	uint8_t b[256];
	struct pg_startup st;
	const char *kv[] = {"user", "bob"};
	static const struct {
		uint32_t code;
		const char *msg;
	} refused[] = {
		{0x00020000u, "unsupported frontend protocol 2.0: server supports 3.0 to 3.0"},
		{0x00040000u, "unsupported frontend protocol 4.0: server supports 3.0 to 3.0"},
		{0x00000000u, "unsupported frontend protocol 0.0: server supports 3.0 to 3.0"},
		{0x00010005u, "unsupported frontend protocol 1.5: server supports 3.0 to 3.0"},
		{0xffffffffu, "unsupported frontend protocol 65535.65535: server supports 3.0 to 3.0"},
		{0x04d2162du, "unsupported frontend protocol 1234.5677: server supports 3.0 to 3.0"},
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		size_t n = mkpkt(b, sizeof(b), refused[i].code, kv, 2, true);
		assert_int_equal(parse_at_guard(b, n, &st), -1);
		assert_string_equal(err, refused[i].msg);
	}
	/* A 3.x minor version is accepted here (PostgreSQL would answer it with
	 * NegotiateProtocolVersion; the caller decides). */
	size_t n = mkpkt(b, sizeof(b), 0x00030002u, kv, 2, true);
	assert_int_equal(parse_at_guard(b, n, &st), 0);
	assert_int_equal(st.code, 0x00030002u);
}

static void test_startup_params_limits(void **state)
{
	(void)state;
	static uint8_t b[4096];
	static char names[PG_MAX_STARTUP_PARAMS + 1][16];
	const char *kv[2 * (PG_MAX_STARTUP_PARAMS + 1) + 12];
	struct pg_startup st;
	size_t k = 0;

	/* The named fields and _pq_. extensions do not count towards the limit. */
	kv[k++] = "user";
	kv[k++] = "bob";
	kv[k++] = "database";
	kv[k++] = "db";
	kv[k++] = "options";
	kv[k++] = "-c x=1";
	kv[k++] = "replication";
	kv[k++] = "database";
	kv[k++] = "_pq_.compression";
	kv[k++] = "on";
	kv[k++] = "_pq_.";
	kv[k++] = "";
	for (int i = 0; i < PG_MAX_STARTUP_PARAMS; i++) {
		snprintf(names[i], sizeof(names[i]), "p%02d", i);
		kv[k++] = names[i];
		kv[k++] = "v";
	}
	size_t n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv, k, true);
	assert_true(n <= PG_MAX_STARTUP_LEN);
	assert_int_equal(parse_at_guard(b, n, &st), 0);
	assert_int_equal(st.nparams, PG_MAX_STARTUP_PARAMS);
	assert_string_equal(st.options, "-c x=1");
	assert_string_equal(st.replication, "database");
	for (int i = 0; i < PG_MAX_STARTUP_PARAMS; i++) {
		assert_string_equal(st.params[i].name, names[i]);
		assert_string_equal(st.params[i].value, "v");
		assert_true(strncmp(st.params[i].name, "_pq_.", 5) != 0);
	}

	/* One more is refused. */
	snprintf(names[PG_MAX_STARTUP_PARAMS], sizeof(names[0]), "extra");
	kv[k++] = names[PG_MAX_STARTUP_PARAMS];
	kv[k++] = "v";
	n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv, k, true);
	assert_int_equal(parse_at_guard(b, n, &st), -1);
	assert_string_equal(err, "too many startup parameters");

	/* "_pq_" without the dot is an ordinary parameter. */
	const char *kv2[] = {"user", "bob", "_pq_", "x", "_pq_.a", "y"};
	n = mkpkt(b, sizeof(b), PG_PROTOCOL_V3, kv2, 6, true);
	assert_int_equal(parse_at_guard(b, n, &st), 0);
	assert_int_equal(st.nparams, 1);
	assert_string_equal(st.params[0].name, "_pq_");
}

static void test_startup_small_err_buffer(void **state)
{
	(void)state;
	struct pg_startup st;
	char small[10];
	memset(small, 'Z', sizeof(small));
	assert_int_equal(pg_parse_startup(at_guard(real_startup, 7), 7, &st, small, sizeof(small)), -1);
	assert_string_equal(small, "invalid l");
	/* errlen 0: nothing written. */
	char none[1] = {'Z'};
	assert_int_equal(pg_parse_startup(at_guard(real_startup, 7), 7, &st, none, 0), -1);
	assert_int_equal(none[0], 'Z');
}

/* ------------------------------------------------------------- ErrorResponse */

/* A server ErrorResponse body (after the length word), as PostgreSQL 15 sends it. */
static const uint8_t pg_err_body[] = "SFATAL\0" "VFATAL\0" "C28P01\0"
				     "Mpassword authentication failed for user \"bob\"\0"
				     "Fauth.c\0" "L335\0" "Rauth_failed\0" "\0";

static void test_error_whole(void **state)
{
	(void)state;
	struct pg_error_fields ef;
	const size_t n = sizeof(pg_err_body) - 1;
	assert_int_equal(pg_parse_error(at_guard(pg_err_body, n), n, &ef), 0);
	assert_string_equal(ef.severity, "FATAL");
	assert_string_equal(ef.sqlstate, "28P01");
	assert_string_equal(ef.message, "password authentication failed for user \"bob\"");
	assert_null(ef.detail);
	assert_null(ef.hint);

	static const uint8_t full[] = "SERROR\0" "C42P01\0" "Mrelation \"x\" does not exist\0"
				      "Dsome detail\0" "Hsome hint\0" "P15\0" "\0";
	assert_int_equal(pg_parse_error(at_guard(full, sizeof(full) - 1), sizeof(full) - 1, &ef), 0);
	assert_string_equal(ef.severity, "ERROR"); /* S alone (pre-9.6 servers) */
	assert_string_equal(ef.sqlstate, "42P01");
	assert_string_equal(ef.message, "relation \"x\" does not exist");
	assert_string_equal(ef.detail, "some detail");
	assert_string_equal(ef.hint, "some hint");
}

static void test_error_severity_order(void **state)
{
	(void)state;
	struct pg_error_fields ef;
	/* V is the untranslated severity: it wins whichever comes first. */
	static const uint8_t sv[] = "SFEHLER\0" "VERROR\0" "\0";
	static const uint8_t vs[] = "VERROR\0" "SFEHLER\0" "\0";
	assert_int_equal(pg_parse_error(at_guard(sv, sizeof(sv) - 1), sizeof(sv) - 1, &ef), 0);
	assert_string_equal(ef.severity, "ERROR");
	assert_int_equal(pg_parse_error(at_guard(vs, sizeof(vs) - 1), sizeof(vs) - 1, &ef), 0);
	assert_string_equal(ef.severity, "ERROR");
}

static void test_error_missing_fields(void **state)
{
	(void)state;
	struct pg_error_fields ef;
	/* Only the terminator: parses, every field NULL. */
	assert_int_equal(pg_parse_error(at_guard("", 1), 1, &ef), 0);
	assert_null(ef.severity);
	assert_null(ef.sqlstate);
	assert_null(ef.message);
	assert_null(ef.detail);
	assert_null(ef.hint);

	static const uint8_t onlym[] = "Mboom\0" "\0";
	assert_int_equal(pg_parse_error(at_guard(onlym, sizeof(onlym) - 1), sizeof(onlym) - 1, &ef), 0);
	assert_string_equal(ef.message, "boom");
	assert_null(ef.severity);
	assert_null(ef.sqlstate);

	/* Unknown field codes are skipped. */
	static const uint8_t unk[] = "xwhat\0" "Mok\0" "\0";
	assert_int_equal(pg_parse_error(at_guard(unk, sizeof(unk) - 1), sizeof(unk) - 1, &ef), 0);
	assert_string_equal(ef.message, "ok");
}

static void test_error_malformed(void **state)
{
	(void)state;
	struct pg_error_fields ef;
	/* Empty body. */
	assert_int_equal(pg_parse_error(guard_end(), 0, &ef), -1);
	/* Fields but no terminator. */
	static const uint8_t noterm[] = "SERROR\0" "Mboom\0";
	assert_int_equal(pg_parse_error(at_guard(noterm, sizeof(noterm) - 1), sizeof(noterm) - 1, &ef), -1);
	/* A field value with no NUL. */
	static const uint8_t nonul[] = "SERROR\0" "Mboom";
	assert_int_equal(pg_parse_error(at_guard(nonul, sizeof(nonul) - 1), sizeof(nonul) - 1, &ef), -1);
	/* A field code with nothing after it. */
	assert_int_equal(pg_parse_error(at_guard("M", 1), 1, &ef), -1);
}

static void test_error_every_prefix(void **state)
{
	(void)state;
	struct pg_error_fields ef;
	const size_t total = sizeof(pg_err_body) - 1;
	for (size_t n = 0; n <= total; n++)
		assert_int_equal(pg_parse_error(at_guard(pg_err_body, n), n, &ef), n == total ? 0 : -1);
}

/* ------------------------------------------------------------- builders */

struct recipe {
	const char *name;
	void (*build)(struct pg_buf *b);
	const uint8_t *want;
	size_t want_len;
	size_t len_off; /* where the length word is: 1 typed, 0 untyped */
};

static void mk_error(struct pg_buf *b) { pgb_error(b, "FATAL", "28P01", "no such user"); }
static void mk_param(struct pg_buf *b) { pgb_param_status(b, "client_encoding", "UTF8"); }
static void mk_key(struct pg_buf *b) { pgb_backend_key(b, 0x01020304u, 0xdeadbeefu); }
static void mk_ready_i(struct pg_buf *b) { pgb_ready(b, 'I'); }
static void mk_ready_e(struct pg_buf *b) { pgb_ready(b, 'E'); }
static void mk_auth_ok(struct pg_buf *b) { pgb_auth(b, PG_AUTH_OK, NULL, 0); }
static void mk_auth_md5(struct pg_buf *b) { pgb_auth(b, PG_AUTH_MD5, "\x01\x02\x03\x04", 4); }
static void mk_auth_sasl(struct pg_buf *b) { pgb_auth(b, PG_AUTH_SASL, "SCRAM-SHA-256\0", 15); }
static void mk_query(struct pg_buf *b) { pgb_query(b, "SELECT 1"); }
static void mk_terminate(struct pg_buf *b) { pgb_terminate(b); }
static void mk_password(struct pg_buf *b) { pgb_password(b, "secret"); }
static void mk_sasl_initial(struct pg_buf *b) { pgb_sasl_initial(b, "SCRAM-SHA-256", "n,,n=,r=abc", 11); }
static void mk_sasl_response(struct pg_buf *b) { pgb_sasl_response(b, "c=biws", 6); }
static void mk_ssl(struct pg_buf *b) { pgb_ssl_request(b); }
static void mk_cancel(struct pg_buf *b) { pgb_cancel_request(b, 0x01020304u, 0xdeadbeefu); }
static void mk_startup(struct pg_buf *b)
{
	static const char *const names[] = {"user", "database", "options", "application_name"};
	static const char *const values[] = {"bob", "shop", NULL, "pgmedic-test"}; /* NULL: left out */
	pgb_startup(b, names, values, 4);
}
/* The generic begin/end pair for an untyped packet and for a typed one. */
static void mk_untyped_generic(struct pg_buf *b)
{
	pgb_begin(b, 0);
	pgb_u32(b, PG_PROTOCOL_V3);
	pgb_str(b, "user");
	pgb_str(b, "bob");
	pgb_u8(b, 0);
	pgb_end(b);
}
static void mk_parse_generic(struct pg_buf *b)
{
	pgb_begin(b, 'P');
	pgb_str(b, "s1");
	pgb_str(b, "SELECT $1");
	pgb_u16(b, 1);
	pgb_u32(b, 23);
	pgb_end(b);
}

#define R(name, fn, bytes, off) {name, fn, (const uint8_t *)(bytes), sizeof(bytes) - 1, off}
static const struct recipe recipes[] = {
	R("ErrorResponse", mk_error,
	  "E\0\0\0\x28" "SFATAL\0" "VFATAL\0" "C28P01\0" "Mno such user\0" "\0", 1),
	R("ParameterStatus", mk_param, "S\0\0\0\x19" "client_encoding\0" "UTF8\0", 1),
	R("BackendKeyData", mk_key, "K\0\0\0\x0c\x01\x02\x03\x04\xde\xad\xbe\xef", 1),
	R("ReadyForQuery I", mk_ready_i, "Z\0\0\0\x05I", 1),
	R("ReadyForQuery E", mk_ready_e, "Z\0\0\0\x05" "E", 1),
	R("AuthenticationOk", mk_auth_ok, "R\0\0\0\x08\0\0\0\0", 1),
	R("AuthenticationMD5Password", mk_auth_md5, "R\0\0\0\x0c\0\0\0\x05\x01\x02\x03\x04", 1),
	R("AuthenticationSASL", mk_auth_sasl, "R\0\0\0\x17\0\0\0\x0a" "SCRAM-SHA-256\0" "\0", 1),
	R("Query", mk_query, "Q\0\0\0\x0d" "SELECT 1\0", 1),
	R("Terminate", mk_terminate, "X\0\0\0\x04", 1),
	R("PasswordMessage", mk_password, "p\0\0\0\x0b" "secret\0", 1),
	R("SASLInitialResponse", mk_sasl_initial,
	  "p\0\0\0\x21" "SCRAM-SHA-256\0" "\0\0\0\x0b" "n,,n=,r=abc", 1),
	R("SASLResponse", mk_sasl_response, "p\0\0\0\x0a" "c=biws", 1),
	R("SSLRequest", mk_ssl, "\0\0\0\x08\x04\xd2\x16\x2f", 0),
	R("CancelRequest", mk_cancel, "\0\0\0\x10\x04\xd2\x16\x2e\x01\x02\x03\x04\xde\xad\xbe\xef", 0),
	R("StartupMessage", mk_startup,
	  "\0\0\0\x3e" "\0\x03\0\0" "user\0bob\0" "database\0shop\0" "application_name\0pgmedic-test\0" "\0", 0),
	R("untyped begin/end", mk_untyped_generic, "\0\0\0\x12" "\0\x03\0\0" "user\0bob\0" "\0", 0),
	R("Parse begin/end", mk_parse_generic, "P\0\0\0\x17" "s1\0" "SELECT $1\0" "\0\x01" "\0\0\0\x17", 1),
};
#undef R
#define NRECIPES (sizeof(recipes) / sizeof(recipes[0]))

static void test_builders_exact(void **state)
{
	(void)state;
	for (size_t i = 0; i < NRECIPES; i++) {
		struct pg_buf b;
		pgb_init(&b);
		recipes[i].build(&b);
		assert_false(b.failed);
		if (b.len != recipes[i].want_len || memcmp(b.data, recipes[i].want, b.len) != 0)
			fail_msg("%s: built %zu bytes, want %zu", recipes[i].name, b.len, recipes[i].want_len);
		pgb_free(&b);
	}
}

/* Everything built parses back with the parsers under test. */
static void test_builders_round_trip(void **state)
{
	(void)state;
	struct pg_buf b;
	uint8_t type;
	uint32_t len;
	struct pg_startup st;
	struct pg_error_fields ef;

	pgb_init(&b);
	pgb_error(&b, "ERROR", "42601", "syntax error at or near \"x\"");
	assert_int_equal(pg_frame_header(b.data, b.len, &type, &len), PG_FRAME_OK);
	assert_int_equal(type, 'E');
	assert_int_equal((size_t)len + 1, b.len);
	assert_int_equal(pg_parse_error(b.data + 5, len - 4, &ef), 0);
	assert_string_equal(ef.severity, "ERROR");
	assert_string_equal(ef.sqlstate, "42601");
	assert_string_equal(ef.message, "syntax error at or near \"x\"");

	pgb_reset(&b);
	static const char *const names[] = {"user", "database", "replication", "TimeZone", "_pq_.x"};
	static const char *const values[] = {"u", "d", "true", "UTC", "1"};
	pgb_startup(&b, names, values, 5);
	assert_int_equal(pg_frame_startup(b.data, b.len, &len), PG_FRAME_OK);
	assert_int_equal(len, b.len);
	assert_int_equal(pg_parse_startup(b.data, b.len, &st, err, sizeof(err)), 0);
	assert_string_equal(st.user, "u");
	assert_string_equal(st.database, "d");
	assert_string_equal(st.replication, "true");
	assert_int_equal(st.nparams, 1);
	assert_string_equal(st.params[0].name, "TimeZone");

	pgb_reset(&b);
	pgb_cancel_request(&b, 7, 9);
	assert_int_equal(pg_parse_startup(b.data, b.len, &st, err, sizeof(err)), 0);
	assert_int_equal(st.code, PG_CANCEL_REQUEST);
	assert_int_equal(st.cancel_pid, 7);
	assert_int_equal(st.cancel_key, 9);

	pgb_reset(&b);
	pgb_ssl_request(&b);
	assert_int_equal(pg_parse_startup(b.data, b.len, &st, err, sizeof(err)), 0);
	assert_int_equal(st.code, PG_SSL_REQUEST);
	pgb_free(&b);
}

/* Several messages in one buffer, as the proxy's welcome: lengths patched per message. */
static void test_builders_sequence(void **state)
{
	(void)state;
	static const uint8_t want[] = "R\0\0\0\x08\0\0\0\0"
				      "S\0\0\0\x19" "client_encoding\0UTF8\0"
				      "K\0\0\0\x0c\0\0\x30\x39\x12\x34\x56\x78"
				      "Z\0\0\0\x05I";
	struct pg_buf b;
	pgb_init(&b);
	pgb_auth(&b, PG_AUTH_OK, NULL, 0);
	pgb_param_status(&b, "client_encoding", "UTF8");
	pgb_backend_key(&b, 12345, 0x12345678u);
	pgb_ready(&b, 'I');
	assert_false(b.failed);
	assert_int_equal(b.len, sizeof(want) - 1);
	assert_memory_equal(b.data, want, b.len);
	pgb_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);

	/* A large message makes the buffer grow past its first allocation. */
	char *big = malloc(5000);
	assert_non_null(big);
	memset(big, 'a', 4999);
	big[4999] = '\0';
	pgb_init(&b);
	pgb_ready(&b, 'T');
	pgb_query(&b, big);
	pgb_terminate(&b);
	assert_false(b.failed);
	assert_int_equal(b.len, 6 + 5 + 5000 + 5);
	assert_int_equal(pg_get_u32(b.data + 7), 5004);
	assert_memory_equal(b.data + 11, big, 5000);
	assert_memory_equal(b.data + 6 + 5005, "X\0\0\0\x04", 5);
	free(big);
	pgb_free(&b);
}

/* The bytes written before a failure equal the good build's, apart from the length
 * word, which may be left unpatched (0) in the failed message. */
static void assert_failed_prefix(const struct recipe *rc, const struct pg_buf *b)
{
	for (size_t k = 0; k < b->len; k++) {
		if (k >= rc->len_off && k < rc->len_off + 4)
			assert_true(b->data[k] == 0 || b->data[k] == rc->want[k]);
		else
			assert_int_equal(b->data[k], rc->want[k]);
	}
}

static void test_builders_sticky_every_limit(void **state)
{
	(void)state;
	for (size_t i = 0; i < NRECIPES; i++) {
		const struct recipe *rc = &recipes[i];
		for (size_t max = 1; max <= rc->want_len + 2; max++) {
			struct pg_buf b;
			pgb_init(&b);
			b.max = max;
			rc->build(&b);
			if (max >= rc->want_len) {
				assert_false(b.failed);
				assert_int_equal(b.len, rc->want_len);
				assert_memory_equal(b.data, rc->want, b.len);
				pgb_free(&b);
				continue;
			}
			if (!b.failed)
				fail_msg("%s: max %zu < %zu but not failed", rc->name, max, rc->want_len);
			assert_true(b.len <= max);
			assert_failed_prefix(rc, &b);
			/* No write after failure, even of bytes that would fit. */
			size_t len0 = b.len;
			uint8_t snap[256];
			assert_true(len0 <= sizeof(snap));
			if (len0)
				memcpy(snap, b.data, len0);
			pgb_u8(&b, 'x');
			pgb_u16(&b, 1);
			pgb_u32(&b, 2);
			pgb_raw(&b, "", 0);
			pgb_str(&b, "");
			pgb_reserve(&b, 0);
			pgb_begin(&b, 'Q');
			pgb_end(&b);
			rc->build(&b);
			assert_true(b.failed);
			assert_int_equal(b.len, len0);
			if (len0)
				assert_memory_equal(b.data, snap, len0);
			/* Reset clears the bit; the same limit still applies. */
			pgb_reset(&b);
			assert_false(b.failed);
			assert_int_equal(b.len, 0);
			pgb_u8(&b, 'y');
			assert_false(b.failed);
			assert_int_equal(b.len, 1);
			pgb_free(&b);
		}
	}
}

/* A failure in a later message leaves the earlier, already patched ones intact. */
static void test_builders_sticky_second_message(void **state)
{
	(void)state;
	struct pg_buf b;
	pgb_init(&b);
	b.max = 12;
	pgb_ready(&b, 'I');       /* 6 bytes */
	pgb_query(&b, "SELECT 1"); /* 14 more: fails after its 5-byte header */
	assert_true(b.failed);
	assert_int_equal(b.len, 11);
	assert_memory_equal(b.data, "Z\0\0\0\x05I" "Q\0\0\0\0", 11);
	pgb_free(&b);
}

static void test_builders_limits(void **state)
{
	(void)state;
	struct pg_buf b;

	/* Sizes that would overflow len + extra. */
	pgb_init(&b);
	pgb_u8(&b, 1);
	pgb_reserve(&b, SIZE_MAX);
	assert_true(b.failed);
	assert_int_equal(b.len, 1);
	pgb_free(&b);

	pgb_init(&b);
	pgb_raw(&b, "never read", SIZE_MAX);
	assert_true(b.failed);
	assert_int_equal(b.len, 0);
	pgb_free(&b);

	pgb_init(&b);
	pgb_sasl_response(&b, "never read", SIZE_MAX - 3);
	assert_true(b.failed);
	pgb_free(&b);

	/* max 0 means the 64 MiB default: one byte over fails without allocating... */
	pgb_init(&b);
	pgb_reserve(&b, ((size_t)64 << 20) + 1);
	assert_true(b.failed);
	assert_null(b.data);
	pgb_free(&b);
	/* ...exactly the limit is allowed. */
	pgb_init(&b);
	pgb_reserve(&b, (size_t)64 << 20);
	assert_false(b.failed);
	assert_true(b.cap >= ((size_t)64 << 20));
	pgb_free(&b);

	/* Zero-byte writes from NULL are fine on an empty buffer. */
	pgb_init(&b);
	pgb_raw(&b, NULL, 0);
	assert_false(b.failed);
	assert_int_equal(b.len, 0);
	pgb_free(&b);
}

/* ------------------------------------------------------------- tracked params */

static void test_tracked_params(void **state)
{
	(void)state;
	for (int i = 0; i < PG_TRACKED_PARAMS; i++)
		assert_int_equal(pg_tracked_param_index(pg_tracked_param_names[i]), i);
	assert_int_equal(pg_tracked_param_index("client_encoding"), 0);
	assert_int_equal(pg_tracked_param_index("DateStyle"), 1);
	assert_int_equal(pg_tracked_param_index("datestyle"), 1); /* GUC names are case-insensitive */
	assert_int_equal(pg_tracked_param_index("TIMEZONE"), 2);
	assert_int_equal(pg_tracked_param_index("IntervalStyle"), 3);
	assert_int_equal(pg_tracked_param_index("standard_conforming_strings"), 4);
	assert_int_equal(pg_tracked_param_index("Application_Name"), 5);
	assert_int_equal(pg_tracked_param_index(""), -1);
	assert_int_equal(pg_tracked_param_index("search_path"), -1);
	assert_int_equal(pg_tracked_param_index("client_encodin"), -1);
	assert_int_equal(pg_tracked_param_index("client_encoding "), -1);
	assert_int_equal(pg_tracked_param_index("server_version"), -1);
	/* The name is read only up to its NUL. */
	const uint8_t *p = at_guard("TimeZone", 9);
	assert_int_equal(pg_tracked_param_index((const char *)p), 2);
}

/* ------------------------------------------------------------- pg_quote_literal */

static void check_quote(const char *in, const char *want)
{
	const size_t wl = strlen(want);
	const size_t il = strlen(in) + 1;
	/* Input ends at the guard too; the output is placed only after we are done with it. */
	for (size_t outlen = 0; outlen <= wl + 3; outlen++) {
		char inbuf[256];
		assert_true(il <= sizeof(inbuf));
		memcpy(inbuf, in, il);
		char *out = out_at_guard(outlen);
		int rc = pg_quote_literal(inbuf, out, outlen);
		if (outlen <= wl) {
			if (rc != -1)
				fail_msg("quote(%s) outlen %zu: rc %d, want -1", in, outlen, rc);
		} else {
			assert_int_equal(rc, (int)wl);
			assert_string_equal(out, want);
		}
	}
	/* And with the input itself at the guard page. */
	char big[512];
	const char *gin = (const char *)at_guard(in, il);
	assert_int_equal(pg_quote_literal(gin, big, sizeof(big)), (int)wl);
	assert_string_equal(big, want);
}

static void test_quote_literal(void **state)
{
	(void)state;
	check_quote("abc", "'abc'");
	check_quote("", "''");
	check_quote("it's", "'it''s'");
	check_quote("'", "''''");
	check_quote("''", "''''''");
	check_quote("a\\b", "E'a\\\\b'");
	check_quote("\\", "E'\\\\'");
	check_quote("it's a\\b", "E'it''s a\\\\b'");
	check_quote("\\'", "E'\\\\'''");
	check_quote("caf\xc3\xa9", "'caf\xc3\xa9'");
	check_quote("Europe/Paris", "'Europe/Paris'");
	check_quote("a;b--c", "'a;b--c'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guard_page_faults),
		cmocka_unit_test(test_frame_header_whole),
		cmocka_unit_test(test_frame_header_partial),
		cmocka_unit_test(test_frame_header_malformed),
		cmocka_unit_test(test_frame_startup),
		cmocka_unit_test(test_frame_stream_every_prefix),
		cmocka_unit_test(test_reader_whole),
		cmocka_unit_test(test_reader_overrun_sticky),
		cmocka_unit_test(test_reader_every_prefix),
		cmocka_unit_test(test_reader_null_empty),
		cmocka_unit_test(test_get_put_u32),
		cmocka_unit_test(test_startup_real),
		cmocka_unit_test(test_startup_every_prefix),
		cmocka_unit_test(test_startup_mutations),
		cmocka_unit_test(test_startup_database_defaults_to_user),
		cmocka_unit_test(test_startup_missing_user),
		cmocka_unit_test(test_startup_layout_errors),
		cmocka_unit_test(test_startup_length_errors),
		cmocka_unit_test(test_startup_special_requests),
		cmocka_unit_test(test_startup_protocol_versions),
		cmocka_unit_test(test_startup_params_limits),
		cmocka_unit_test(test_startup_small_err_buffer),
		cmocka_unit_test(test_error_whole),
		cmocka_unit_test(test_error_severity_order),
		cmocka_unit_test(test_error_missing_fields),
		cmocka_unit_test(test_error_malformed),
		cmocka_unit_test(test_error_every_prefix),
		cmocka_unit_test(test_builders_exact),
		cmocka_unit_test(test_builders_round_trip),
		cmocka_unit_test(test_builders_sequence),
		cmocka_unit_test(test_builders_sticky_every_limit),
		cmocka_unit_test(test_builders_sticky_second_message),
		cmocka_unit_test(test_builders_limits),
		cmocka_unit_test(test_tracked_params),
		cmocka_unit_test(test_quote_literal),
	};
	return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
