/* fuzz_scram.c - libFuzzer target for every SCRAM message parser in src/pg/scram.c.
 *
 * The input is used five ways per run:
 *   1. split at the first '\n' into A and B: A as client-first, then B as client-final,
 *      to a scram_server (forced nonce, so a seed can hold a whole valid exchange);
 *   2. the whole input as client-final after a fixed valid client-first;
 *   3. A as server-first, then B as server-final, to a pass-through scram_client;
 *   4. the whole input as server-final after a fixed valid server-first (password mode);
 *   5. the whole input (NUL-terminated) to scram_secret_parse.
 * The client that consumes fuzzed server-firsts is in pass-through mode: a password-mode
 * client would run PBKDF2 with whatever count (up to 10,000,000) the input names, which
 * is by design and would only make the fuzzer time out.
 *
 * Beyond "no crash", it checks what the API promises: a returned length fits the
 * buffer and matches the NUL-terminated text, state is consistent with the result, and
 * an accepted secret formats back to exactly the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg/scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Fixed exchange parameters shared with the seed corpus. */
#define FZ_PASSWORD "pencil"
#define FZ_SALT "fuzzsaltfuzzsalt"
#define FZ_ITERATIONS 2
#define FZ_CLIENT_NONCE "fuzzclient"
#define FZ_SERVER_NONCE "fuzzserver"
#define FZ_CLIENT_FIRST "n,,n=,r=" FZ_CLIENT_NONCE

#define OUT_CAP 1024

static struct scram_secret fz_secret;
static uint8_t fz_client_key[SCRAM_KEY_LEN]; /* recovered by a server, as the proxy does */
static char fz_server_first[OUT_CAP];
static size_t fz_server_first_len;

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			__builtin_trap(); \
	} while (0)

static void check_out(int rc, const char *out, size_t cap)
{
	if (rc >= 0) {
		CHECK((size_t)rc < cap);
		CHECK(out[rc] == '\0');
		CHECK(strlen(out) == (size_t)rc);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct scram_server s;
	struct scram_client c;
	char m[OUT_CAP], v[OUT_CAP];
	int n;
	(void)argc;
	(void)argv;

	if (scram_secret_from_password(FZ_PASSWORD, (const uint8_t *)FZ_SALT, strlen(FZ_SALT), FZ_ITERATIONS,
				       &fz_secret) < 0)
		abort();
	/* One real exchange: gives the fixed server-first and the ClientKey. */
	scram_server_init(&s, &fz_secret, FZ_SERVER_NONCE);
	scram_client_init_password(&c, FZ_PASSWORD, FZ_CLIENT_NONCE);
	if ((n = scram_client_first(&c, m, sizeof(m))) < 0 ||
	    (n = scram_server_handle_first(&s, m, (size_t)n, fz_server_first, sizeof(fz_server_first))) < 0)
		abort();
	fz_server_first_len = (size_t)n;
	if ((n = scram_client_final(&c, fz_server_first, fz_server_first_len, m, sizeof(m))) < 0 ||
	    (n = scram_server_handle_final(&s, m, (size_t)n, v, sizeof(v))) < 0 ||
	    scram_client_verify_final(&c, v, (size_t)n) != 0 || !s.have_client_key)
		abort();
	memcpy(fz_client_key, s.client_key, SCRAM_KEY_LEN);
	return 0;
}

/* Exact-size heap copy, so ASan sees any read past the length given. */
static char *dup_exact(const uint8_t *p, size_t n)
{
	char *d = malloc(n ? n : 1);
	if (!d)
		abort();
	if (n)
		memcpy(d, p, n);
	return d;
}

static void server_split(const char *a, size_t alen, const char *b, size_t blen)
{
	struct scram_server s;
	char out[OUT_CAP];
	int rc;

	scram_server_init(&s, &fz_secret, FZ_SERVER_NONCE);
	rc = scram_server_handle_first(&s, a, alen, out, sizeof(out));
	check_out(rc, out, sizeof(out));
	CHECK(rc >= 0 ? s.state == 1 : s.state == -1);
	if (rc < 0)
		return;
	CHECK(alen >= 3 && strlen(s.client_first_bare) == alen - 3);
	rc = scram_server_handle_final(&s, b, blen, out, sizeof(out));
	check_out(rc, out, sizeof(out));
	CHECK(rc >= -2);
	CHECK(rc >= 0 ? (s.state == 2 && s.have_client_key) : (s.state == -1 && !s.have_client_key));
}

static void server_final_only(const char *m, size_t len)
{
	struct scram_server s;
	char out[OUT_CAP];
	int rc;

	scram_server_init(&s, &fz_secret, FZ_SERVER_NONCE);
	rc = scram_server_handle_first(&s, FZ_CLIENT_FIRST, strlen(FZ_CLIENT_FIRST), out, sizeof(out));
	CHECK(rc >= 0);
	rc = scram_server_handle_final(&s, m, len, out, sizeof(out));
	check_out(rc, out, sizeof(out));
	CHECK(rc >= -2);
}

static void client_split(const char *a, size_t alen, const char *b, size_t blen)
{
	struct scram_client c;
	char out[OUT_CAP];
	int rc;

	scram_client_init_keys(&c, fz_client_key, &fz_secret, FZ_CLIENT_NONCE);
	rc = scram_client_first(&c, out, sizeof(out));
	CHECK(rc > 0);
	rc = scram_client_final(&c, a, alen, out, sizeof(out));
	check_out(rc, out, sizeof(out));
	CHECK(rc >= -2);
	CHECK(rc >= 0 ? c.state == 2 : c.state == -1);
	if (rc < 0)
		return;
	rc = scram_client_verify_final(&c, b, blen);
	CHECK(rc == 0 || rc == -1);
	CHECK(rc == 0 ? c.state == 3 : c.state == -1);
}

static void client_verify_only(const char *m, size_t len)
{
	struct scram_client c;
	char out[OUT_CAP];
	int rc;

	scram_client_init_password(&c, FZ_PASSWORD, FZ_CLIENT_NONCE);
	CHECK(scram_client_first(&c, out, sizeof(out)) > 0);
	CHECK(scram_client_final(&c, fz_server_first, fz_server_first_len, out, sizeof(out)) > 0);
	rc = scram_client_verify_final(&c, m, len);
	CHECK(rc == 0 || rc == -1);
}

static void secret_text(const uint8_t *data, size_t size)
{
	struct scram_secret s, again;
	char out[OUT_CAP];
	char *z = malloc(size + 1);
	int rc;

	if (!z)
		abort();
	if (size)
		memcpy(z, data, size);
	z[size] = '\0';
	if (scram_secret_parse(z, &s) == 0) {
		/* The grammar is canonical: one secret, one spelling. */
		rc = scram_secret_format(&s, out, sizeof(out));
		CHECK(rc >= 0 && strcmp(out, z) == 0);
		CHECK(scram_secret_parse(out, &again) == 0);
		CHECK(again.iterations == s.iterations && again.salt_len == s.salt_len &&
		      memcmp(again.salt, s.salt, s.salt_len) == 0 &&
		      memcmp(again.stored_key, s.stored_key, SCRAM_KEY_LEN) == 0 &&
		      memcmp(again.server_key, s.server_key, SCRAM_KEY_LEN) == 0);
	}
	free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t alen = nl ? (size_t)(nl - data) : size;
	size_t blen = nl ? size - alen - 1 : 0;
	char *a = dup_exact(data, alen);
	char *b = dup_exact(nl ? nl + 1 : data, blen);
	char *all = dup_exact(data, size);

	server_split(a, alen, b, blen);
	server_final_only(all, size);
	client_split(a, alen, b, blen);
	client_verify_only(all, size);
	secret_text(data, size);

	free(a);
	free(b);
	free(all);
	return 0;
}
