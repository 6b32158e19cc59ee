/* fuzz_startup.c - libFuzzer target for the startup phase of src/pg/proto.c:
 * pg_frame_startup and pg_parse_startup.
 *
 * The input is used as the bytes a client sends before its first typed message:
 *   1. framed with pg_frame_startup; when the length word is accepted and the whole
 *      packet is there, the packet alone (an exact-size heap copy, so ASan sees any
 *      read past it) goes to pg_parse_startup, as the proxy does;
 *   2. the whole input goes to pg_parse_startup with len = size, whatever the frame says.
 *
 * Beyond "no crash", it checks what the API promises: every returned string lies inside
 * the packet and is NUL-terminated there (strlen under ASan), an accepted StartupMessage
 * has a non-empty user and a database, the fixed-size requests have their exact length,
 * the error text is a non-empty C string, and an accepted packet rebuilt with the
 * pgb_* builders parses back to the same fields (byte-exact for SSL/Cancel requests). */
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

/* Exact-size heap copy, so ASan sees any read past the length given. */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);
	if (!d)
		abort();
	if (n)
		memcpy(d, p, n);
	return d;
}

/* s must be NULL or a string that starts and ends (NUL included) inside [pkt, pkt+len). */
static size_t check_str(const char *s, const uint8_t *pkt, size_t len)
{
	if (!s)
		return 0;
	const uint8_t *u = (const uint8_t *)s;
	CHECK(u >= pkt + 8 && u < pkt + len);
	size_t l = strlen(s); /* ASan: stays inside the heap copy */
	CHECK(u + l < pkt + len);
	return l;
}

static bool same(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Rebuild an accepted StartupMessage with pgb_startup and parse it again. */
static void rebuild_v3(const struct pg_startup *st)
{
	const char *names[4 + PG_MAX_STARTUP_PARAMS];
	const char *values[4 + PG_MAX_STARTUP_PARAMS];
	size_t n = 0;
	names[n] = "user", values[n++] = st->user;
	names[n] = "database", values[n++] = st->database;
	names[n] = "options", values[n++] = st->options;         /* NULL: left out */
	names[n] = "replication", values[n++] = st->replication; /* NULL: left out */
	for (size_t i = 0; i < st->nparams; i++)
		names[n] = st->params[i].name, values[n++] = st->params[i].value;

	struct pg_buf b;
	pgb_init(&b);
	pgb_startup(&b, names, values, n);
	CHECK(!b.failed);
	/* Protocol minor versions are not kept by the builder: compare the rest. */
	struct pg_startup again;
	char err[256];
	uint8_t *copy = dup_exact(b.data, b.len);
	CHECK(pg_parse_startup(copy, b.len, &again, err, sizeof(err)) == 0);
	CHECK(again.code == PG_PROTOCOL_V3);
	CHECK(same(again.user, st->user));
	CHECK(same(again.database, st->database));
	CHECK(same(again.options, st->options));
	CHECK(same(again.replication, st->replication));
	CHECK(again.nparams == st->nparams);
	for (size_t i = 0; i < st->nparams; i++) {
		CHECK(strcmp(again.params[i].name, st->params[i].name) == 0);
		CHECK(strcmp(again.params[i].value, st->params[i].value) == 0);
	}
	free(copy);
	pgb_free(&b);
}

/* Parses pkt[0, len) (an exact-size heap block) and checks the result. */
static int parse_checked(const uint8_t *pkt, size_t len, struct pg_startup *st)
{
	char err[256];
	memset(err, 0x55, sizeof(err));
	int rc = pg_parse_startup(pkt, len, st, err, sizeof(err));
	CHECK(rc == 0 || rc == -1);
	if (rc < 0) {
		CHECK(memchr(err, 0, sizeof(err)) != NULL);
		CHECK(err[0] != '\0');
		return rc;
	}
	CHECK(len >= 8 && pg_get_u32(pkt) == len);
	CHECK(st->code == pg_get_u32(pkt + 4));
	switch (st->code) {
	case PG_SSL_REQUEST:
	case PG_GSSENC_REQUEST:
		CHECK(len == 8);
		CHECK(!st->user && !st->database && st->nparams == 0);
		if (st->code == PG_SSL_REQUEST) {
			struct pg_buf b;
			pgb_init(&b);
			pgb_ssl_request(&b);
			CHECK(!b.failed && b.len == len && memcmp(b.data, pkt, len) == 0);
			pgb_free(&b);
		}
		return rc;
	case PG_CANCEL_REQUEST: {
		CHECK(len == 16);
		CHECK(st->cancel_pid == pg_get_u32(pkt + 8) && st->cancel_key == pg_get_u32(pkt + 12));
		struct pg_buf b;
		pgb_init(&b);
		pgb_cancel_request(&b, st->cancel_pid, st->cancel_key);
		CHECK(!b.failed && b.len == len && memcmp(b.data, pkt, len) == 0);
		pgb_free(&b);
		return rc;
	}
	default:
		break;
	}
	CHECK((st->code >> 16) == 3);
	CHECK(pkt[len - 1] == 0); /* the terminator is the last byte */
	CHECK(check_str(st->user, pkt, len) > 0);
	CHECK(st->database != NULL);
	check_str(st->database, pkt, len);
	check_str(st->options, pkt, len);
	check_str(st->replication, pkt, len);
	CHECK(st->nparams <= PG_MAX_STARTUP_PARAMS);
	for (size_t i = 0; i < st->nparams; i++) {
		CHECK(check_str(st->params[i].name, pkt, len) > 0);
		check_str(st->params[i].value, pkt, len);
		CHECK(strncmp(st->params[i].name, "_pq_.", 5) != 0);
		(void)pg_tracked_param_index(st->params[i].name);
	}
	rebuild_v3(st);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_startup st_frame, st_whole;
	int rc_frame = 2;

	/* 1. As the proxy frames it.  The framer is told all size bytes are there but
	 * gets a copy of only the length word: ASan flags it if it looks further. */
	uint8_t *head = dup_exact(data, size < 4 ? size : 4);
	uint32_t len = 0;
	enum pg_frame f = pg_frame_startup(head, size, &len);
	free(head);
	if (size < 4) {
		CHECK(f == PG_FRAME_NEED_MORE);
	} else {
		uint32_t w = pg_get_u32(data);
		CHECK(f == ((w >= 8 && w <= PG_MAX_STARTUP_LEN) ? PG_FRAME_OK : PG_FRAME_BAD));
		if (f == PG_FRAME_OK)
			CHECK(len == w);
	}
	if (f == PG_FRAME_OK && len <= size) {
		uint8_t *pkt = dup_exact(data, len);
		rc_frame = parse_checked(pkt, len, &st_frame);
		free(pkt);
	}

	/* 2. The whole input as one packet. */
	uint8_t *all = dup_exact(data, size);
	int rc_whole = parse_checked(all, size, &st_whole);
	free(all);

	/* When the frame covers the whole input, both ways must agree. */
	if (f == PG_FRAME_OK && len == size) {
		CHECK(rc_frame == rc_whole);
		if (rc_whole == 0) {
			CHECK(st_frame.code == st_whole.code);
			CHECK(st_frame.nparams == st_whole.nparams);
			CHECK((st_frame.user == NULL) == (st_whole.user == NULL));
		}
	}
	return 0;
}
