/* test_scram.c - SCRAM-SHA-256 in both roles: RFC 7677's test vector, the two roles
 * against each other, pass-through, the secret text form, and malformed input
 * (every truncation, single-byte mutations, bad base64, wrong nonces, bounds).
 * Messages are handed over in exact-size heap copies so ASan flags any read past
 * the length we pass. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "pg/scram.h"

/* RFC 7677 section 3. */
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE RFC_CLIENT_NONCE RFC_SERVER_NONCE
#define RFC_SALT_B64 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096"
#define RFC_CLIENT_FINAL_WO "c=biws,r=" RFC_NONCE
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_CLIENT_FINAL RFC_CLIENT_FINAL_WO ",p=" RFC_PROOF
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* Not in the RFC: computed independently with Python's hashlib.pbkdf2_hmac("sha256",
 * b"pencil", salt, 4096), hmac (b"Client Key", b"Server Key"), hashlib.sha256 and
 * base64, i.e. the secret PostgreSQL would store for that password and salt. */
#define RFC_SECRET                                                                                \
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:" \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define RFC_CLIENT_KEY_B64 "pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos="

#define BUF 1024

/* ------------------------------------------------------------- helpers */

static char *dup_exact(const char *p, size_t n)
{
	char *d = malloc(n ? n : 1);
	assert_non_null(d);
	memcpy(d, p, n);
	return d;
}

static int srv_first(struct scram_server *s, const char *m, size_t n, char *out, size_t outlen)
{
	char *d = dup_exact(m, n);
	int rc = scram_server_handle_first(s, d, n, out, outlen);
	free(d);
	return rc;
}

static int srv_final(struct scram_server *s, const char *m, size_t n, char *out, size_t outlen)
{
	char *d = dup_exact(m, n);
	int rc = scram_server_handle_final(s, d, n, out, outlen);
	free(d);
	return rc;
}

static int cli_final(struct scram_client *c, const char *m, size_t n, char *out, size_t outlen)
{
	char *d = dup_exact(m, n);
	int rc = scram_client_final(c, d, n, out, outlen);
	free(d);
	return rc;
}

static int cli_verify(struct scram_client *c, const char *m, size_t n)
{
	char *d = dup_exact(m, n);
	int rc = scram_client_verify_final(c, d, n);
	free(d);
	return rc;
}

static struct scram_secret rfc_secret(void)
{
	struct scram_secret s;
	assert_int_equal(scram_secret_parse(RFC_SECRET, &s), 0);
	return s;
}

/* Decodes with OpenSSL's decoder, independent of the one under test. */
static void b64_ref_decode(const char *in, uint8_t *out, size_t expect_len)
{
	uint8_t tmp[128];
	int n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)strlen(in));
	size_t pad = 0;
	assert_true(n > 0 && (size_t)n <= sizeof(tmp));
	for (const char *p = in + strlen(in); p > in && p[-1] == '='; p--)
		pad++;
	assert_int_equal((size_t)n - pad, expect_len);
	memcpy(out, tmp, expect_len);
}

/* A server at state 1 in RFC 7677's exchange. */
static void rfc_server_at_final(struct scram_server *s)
{
	struct scram_secret sec = rfc_secret();
	char out[BUF];
	scram_server_init(s, &sec, RFC_SERVER_NONCE);
	assert_int_equal(srv_first(s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), out, sizeof(out)),
			 (int)strlen(RFC_SERVER_FIRST));
}

/* A pass-through client holding RFC 7677's ClientKey, at state 1 (no PBKDF2: fast). */
static void rfc_keys_client_sent_first(struct scram_client *c, const struct scram_secret *sec)
{
	uint8_t ck[SCRAM_KEY_LEN];
	char out[BUF];
	b64_ref_decode(RFC_CLIENT_KEY_B64, ck, sizeof(ck));
	scram_client_init_keys(c, ck, sec, RFC_CLIENT_NONCE);
	assert_int_equal(scram_client_set_username(c, "user"), 0);
	assert_int_equal(scram_client_first(c, out, sizeof(out)), (int)strlen(RFC_CLIENT_FIRST));
	assert_string_equal(out, RFC_CLIENT_FIRST);
}

static void rfc_keys_client_sent_final(struct scram_client *c)
{
	struct scram_secret sec = rfc_secret();
	char out[BUF];
	rfc_keys_client_sent_first(c, &sec);
	assert_int_equal(cli_final(c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, sizeof(out)),
			 (int)strlen(RFC_CLIENT_FINAL));
	assert_string_equal(out, RFC_CLIENT_FINAL);
}

/* The client side written out with one-shot OpenSSL calls, independent of scram.c's
 * code paths; used for the messages our own client never sends ("y,,"). */
static void ref_client_final(const char *password, const struct scram_secret *sec, const char *bare,
			     const char *server_first, const char *cbind, const char *nonce, char *out,
			     size_t outlen)
{
	uint8_t salted[32], ck[32], st[32], sig[32], proof[32];
	unsigned char b64[64];
	char wo[BUF], am[3 * BUF];

	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), sec->salt, (int)sec->salt_len,
					   sec->iterations, EVP_sha256(), 32, salted),
			 1);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, ck, NULL));
	SHA256(ck, 32, st);
	assert_true((size_t)snprintf(wo, sizeof(wo), "c=%s,r=%s", cbind, nonce) < sizeof(wo));
	assert_true((size_t)snprintf(am, sizeof(am), "%s,%s,%s", bare, server_first, wo) < sizeof(am));
	assert_non_null(HMAC(EVP_sha256(), st, 32, (const unsigned char *)am, strlen(am), sig, NULL));
	for (int i = 0; i < 32; i++)
		proof[i] = ck[i] ^ sig[i];
	EVP_EncodeBlock(b64, proof, 32);
	assert_true((size_t)snprintf(out, outlen, "%s,p=%s", wo, (char *)b64) < outlen);
}

/* Secret with few iterations: the malformed-input loops run PBKDF2 often. */
static struct scram_secret quick_secret(const char *password)
{
	struct scram_secret s;
	static const uint8_t salt[16] = "0123456789abcdef";
	assert_int_equal(scram_secret_from_password(password, salt, sizeof(salt), 16, &s), 0);
	return s;
}

/* Runs a whole exchange; returns scram_server_handle_final's result. */
static int exchange(const char *password, const struct scram_secret *sec, struct scram_server *srv,
		    struct scram_client *cli)
{
	char a[BUF], b[BUF];
	int n;

	scram_server_init(srv, sec, NULL);
	scram_client_init_password(cli, password, NULL);
	n = scram_client_first(cli, a, sizeof(a));
	assert_true(n > 0);
	n = srv_first(srv, a, (size_t)n, b, sizeof(b));
	assert_true(n > 0);
	n = cli_final(cli, b, (size_t)n, a, sizeof(a));
	assert_true(n > 0);
	n = srv_final(srv, a, (size_t)n, b, sizeof(b));
	if (n > 0)
		assert_int_equal(cli_verify(cli, b, (size_t)n), 0);
	return n;
}

/* ------------------------------------------------------------ RFC 7677 */

static void test_rfc7677_server(void **state)
{
	struct scram_server s;
	char out[BUF];
	uint8_t ck[SCRAM_KEY_LEN];
	(void)state;

	rfc_server_at_final(&s);
	assert_string_equal(s.server_first, RFC_SERVER_FIRST);
	assert_int_equal(s.state, 1);
	assert_int_equal(srv_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out, sizeof(out)),
			 (int)strlen(RFC_SERVER_FINAL));
	assert_string_equal(out, RFC_SERVER_FINAL);
	assert_int_equal(s.state, 2);
	assert_true(s.have_client_key);
	b64_ref_decode(RFC_CLIENT_KEY_B64, ck, sizeof(ck));
	assert_memory_equal(s.client_key, ck, SCRAM_KEY_LEN);
}

static void test_rfc7677_client(void **state)
{
	struct scram_client c;
	char out[BUF];
	(void)state;

	scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE);
	assert_int_equal(scram_client_set_username(&c, "user"), 0);
	assert_int_equal(scram_client_first(&c, out, sizeof(out)), (int)strlen(RFC_CLIENT_FIRST));
	assert_string_equal(out, RFC_CLIENT_FIRST);
	assert_int_equal(cli_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, sizeof(out)),
			 (int)strlen(RFC_CLIENT_FINAL));
	assert_string_equal(out, RFC_CLIENT_FINAL);
	assert_int_equal(cli_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL)), 0);
	assert_int_equal(c.state, 3);

	/* A server that does not know the password cannot forge v=. */
	scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE);
	assert_int_equal(scram_client_set_username(&c, "user"), 0);
	assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
	assert_true(cli_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, sizeof(out)) > 0);
	const char *forged = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=";
	assert_int_equal(cli_verify(&c, forged, strlen(forged)), -1);
	const char *forged2 = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
	scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE);
	assert_int_equal(scram_client_set_username(&c, "user"), 0);
	assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
	assert_true(cli_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, sizeof(out)) > 0);
	assert_int_equal(cli_verify(&c, forged2, strlen(forged2)), -1);
	assert_int_equal(c.state, -1);
}

static void test_rfc7677_secret(void **state)
{
	struct scram_secret a, b;
	uint8_t salt[16];
	char text[BUF];
	(void)state;

	b64_ref_decode(RFC_SALT_B64, salt, sizeof(salt));
	assert_int_equal(scram_secret_from_password("pencil", salt, sizeof(salt), 4096, &a), 0);
	assert_int_equal(scram_secret_format(&a, text, sizeof(text)), (int)strlen(RFC_SECRET));
	assert_string_equal(text, RFC_SECRET);
	assert_int_equal(scram_secret_parse(text, &b), 0);
	assert_int_equal(b.iterations, 4096);
	assert_int_equal(b.salt_len, 16);
	assert_memory_equal(b.salt, a.salt, 16);
	assert_memory_equal(b.stored_key, a.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(b.server_key, a.server_key, SCRAM_KEY_LEN);
}

/* Pass-through reproduces RFC 7677's client-final from ClientKey alone. */
static void test_rfc7677_pass_through(void **state)
{
	struct scram_client c;
	(void)state;

	rfc_keys_client_sent_final(&c);
	assert_int_equal(cli_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL)), 0);
	assert_int_equal(c.state, 3);
}

/* ------------------------------------------------------- roles together */

static void test_roles_together(void **state)
{
	struct scram_secret sec;
	struct scram_server srv;
	struct scram_client cli;
	char a[BUF];
	(void)state;

	assert_int_equal(scram_secret_from_password("correct horse", NULL, 0, SCRAM_DEFAULT_ITERATIONS, &sec), 0);
	assert_int_equal(sec.salt_len, 16);
	assert_true(exchange("correct horse", &sec, &srv, &cli) > 0);
	assert_int_equal(srv.state, 2);
	assert_int_equal(cli.state, 3);
	assert_true(srv.have_client_key);

	/* Our client-first is what PostgreSQL expects: empty username, 24-char nonce. */
	scram_client_init_password(&cli, "x", NULL);
	assert_int_equal(scram_client_first(&cli, a, sizeof(a)), 8 + 24);
	assert_memory_equal(a, "n,,n=,r=", 8);
	assert_string_equal(cli.client_first_bare, a + 3);

	/* Random nonces differ between exchanges. */
	struct scram_server s2;
	scram_server_init(&srv, &sec, NULL);
	scram_server_init(&s2, &sec, NULL);
	assert_int_equal(strlen(srv.nonce), 24);
	assert_string_not_equal(srv.nonce, s2.nonce);

	/* Empty password, odd salts and iteration counts at the edges. */
	assert_int_equal(scram_secret_from_password("", NULL, 1, 1, &sec), 0);
	assert_true(exchange("", &sec, &srv, &cli) > 0);
	assert_int_equal(scram_secret_from_password("p", NULL, SCRAM_MAX_SALT, 2, &sec), 0);
	assert_true(exchange("p", &sec, &srv, &cli) > 0);
}

static void test_wrong_password(void **state)
{
	struct scram_secret sec = quick_secret("right");
	struct scram_server srv;
	struct scram_client cli;
	char out[BUF];
	(void)state;

	assert_int_equal(exchange("wrong", &sec, &srv, &cli), -2);
	assert_int_equal(srv.state, -1);
	assert_false(srv.have_client_key);
	/* Nothing more is accepted on a failed exchange. */
	assert_int_equal(srv_final(&srv, "c=biws", 6, out, sizeof(out)), -1);
	assert_int_equal(exchange("Right", &sec, &srv, &cli), -2);
	assert_int_equal(exchange("right", &sec, &srv, &cli), (int)strlen("v=") + 44);
}

static void test_pass_through(void **state)
{
	struct scram_secret sec, other_salt, other_iter;
	struct scram_server s1, s2;
	struct scram_client front, back;
	uint8_t salt[16] = "saltsaltsaltsalt";
	char a[BUF], b[BUF];
	int n;
	(void)state;

	assert_int_equal(scram_secret_from_password("pw", salt, sizeof(salt), 64, &sec), 0);
	/* 1. the application authenticates to us. */
	assert_true(exchange("pw", &sec, &s1, &front) > 0);
	assert_true(s1.have_client_key);

	/* 2. we authenticate to PostgreSQL (another server, same secret) without the password. */
	scram_client_init_keys(&back, s1.client_key, &sec, NULL);
	scram_server_init(&s2, &sec, NULL);
	n = scram_client_first(&back, a, sizeof(a));
	assert_true(n > 0);
	n = srv_first(&s2, a, (size_t)n, b, sizeof(b));
	assert_true(n > 0);
	n = cli_final(&back, b, (size_t)n, a, sizeof(a));
	assert_true(n > 0);
	n = srv_final(&s2, a, (size_t)n, b, sizeof(b));
	assert_true(n > 0);
	assert_int_equal(cli_verify(&back, b, (size_t)n), 0);
	assert_int_equal(back.state, 3);
	assert_memory_equal(s2.client_key, s1.client_key, SCRAM_KEY_LEN);

	/* 3. PostgreSQL's secret has another salt, or another count: -2, not a bad proof. */
	salt[0] ^= 1;
	assert_int_equal(scram_secret_from_password("pw", salt, sizeof(salt), 64, &other_salt), 0);
	assert_int_equal(scram_secret_from_password("pw", s1.secret.salt, 16, 65, &other_iter), 0);
	const struct scram_secret *others[] = { &other_salt, &other_iter };
	for (size_t i = 0; i < 2; i++) {
		scram_client_init_keys(&back, s1.client_key, &sec, NULL);
		scram_server_init(&s2, others[i], NULL);
		n = scram_client_first(&back, a, sizeof(a));
		n = srv_first(&s2, a, (size_t)n, b, sizeof(b));
		assert_true(n > 0);
		assert_int_equal(cli_final(&back, b, (size_t)n, a, sizeof(a)), -2);
		assert_int_equal(back.state, -1);
	}

	/* 4. salt of another length that shares a prefix. */
	struct scram_secret longer;
	uint8_t salt17[17];
	memcpy(salt17, s1.secret.salt, 16);
	salt17[16] = 0;
	assert_int_equal(scram_secret_from_password("pw", salt17, 17, 64, &longer), 0);
	scram_client_init_keys(&back, s1.client_key, &sec, NULL);
	scram_server_init(&s2, &longer, NULL);
	n = scram_client_first(&back, a, sizeof(a));
	n = srv_first(&s2, a, (size_t)n, b, sizeof(b));
	assert_int_equal(cli_final(&back, b, (size_t)n, a, sizeof(a)), -2);
}

/* A pass-through client without a ServerKey cannot check v=; it accepts any
 * well-formed one (documented in scram.h) but still refuses malformed ones. */
static void test_pass_through_without_server_key(void **state)
{
	struct scram_client c;
	const char *other = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
	(void)state;

	rfc_keys_client_sent_final(&c);
	c.have_server_key = false;
	assert_int_equal(cli_verify(&c, other, strlen(other)), 0);
	rfc_keys_client_sent_final(&c);
	c.have_server_key = false;
	assert_int_equal(cli_verify(&c, "v=AAAA", 6), -1);
}

/* ------------------------------------------------------------ gs2 header */

static void test_gs2_y_accepted(void **state)
{
	struct scram_secret sec = quick_secret("pw");
	struct scram_server s;
	char out[BUF], fin[BUF];
	const char *first = "y,,n=,r=clientnonce";
	(void)state;

	scram_server_init(&s, &sec, "servernonce");
	assert_true(srv_first(&s, first, strlen(first), out, sizeof(out)) > 0);
	ref_client_final("pw", &sec, "n=,r=clientnonce", out, "eSws", "clientnonceservernonce", fin, sizeof(fin));
	assert_true(srv_final(&s, fin, strlen(fin), out, sizeof(out)) > 0);
	assert_int_equal(s.state, 2);

	/* c= must echo the header actually sent: "y,," answered with biws is a downgrade
	 * or a corruption, and so is "n,," answered with eSws. */
	scram_server_init(&s, &sec, "servernonce");
	assert_true(srv_first(&s, first, strlen(first), out, sizeof(out)) > 0);
	ref_client_final("pw", &sec, "n=,r=clientnonce", out, "biws", "clientnonceservernonce", fin, sizeof(fin));
	assert_int_equal(srv_final(&s, fin, strlen(fin), out, sizeof(out)), -1);

	scram_server_init(&s, &sec, "servernonce");
	assert_true(srv_first(&s, "n,,n=,r=clientnonce", 19, out, sizeof(out)) > 0);
	ref_client_final("pw", &sec, "n=,r=clientnonce", out, "eSws", "clientnonceservernonce", fin, sizeof(fin));
	assert_int_equal(srv_final(&s, fin, strlen(fin), out, sizeof(out)), -1);

	/* The reference computation agrees with our client for "n,,". */
	scram_server_init(&s, &sec, "servernonce");
	assert_true(srv_first(&s, "n,,n=,r=clientnonce", 19, out, sizeof(out)) > 0);
	ref_client_final("pw", &sec, "n=,r=clientnonce", out, "biws", "clientnonceservernonce", fin, sizeof(fin));
	assert_true(srv_final(&s, fin, strlen(fin), out, sizeof(out)) > 0);
}

static void test_client_first_malformed(void **state)
{
	struct scram_secret sec = rfc_secret();
	struct scram_server s;
	char out[BUF];
	char big[700];
	static const char *const bad[] = {
		"",
		"n",
		"n,",
		"n,,",
		"n,,n",
		"n,,n=",
		"n,,n=,",
		"n,,n=,r",
		"n,,n=,r=",
		"n,,n=,r=,",
		"p=tls-server-end-point,,n=,r=abc", /* channel binding requested */
		"p=tls-unique,,n=,r=abc",
		"p,,n=,r=abc",
		"n,a=user,n=,r=abc", /* authzid */
		"y,a=,n=,r=abc",
		"x,,n=,r=abc",
		"N,,n=,r=abc",
		",,n=,r=abc",
		"nn,,n=,r=abc",
		"n,,,n=,r=abc",
		"n,,m=ext,n=,r=abc", /* mandatory extension */
		"n,,r=abc",
		"n,,r=abc,n=",
		"n,,n=,r=abc,",
		"n,,n=,r=abc,x=1", /* extension */
		"n,,n=,r=abc,r=abc",
		"n,,n=,x=1,r=abc",
		"n,,n=,r=a b",
		"n,,n=,r=a\x7f",
		"n,,n=,r=a\x80",
		"n,,n=,r=\t",
		"n,,n=,R=abc",
		"n,,n=,r:abc",
		"n,,n=user r=abc",
		" n,,n=,r=abc",
		"n,,n=,r=abc\n",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		scram_server_init(&s, &sec, NULL);
		if (srv_first(&s, bad[i], strlen(bad[i]), out, sizeof(out)) != -1)
			fail_msg("accepted client-first \"%s\"", bad[i]);
		assert_int_equal(s.state, -1);
	}

	/* An embedded NUL. */
	scram_server_init(&s, &sec, NULL);
	assert_int_equal(srv_first(&s, "n,,n=,r=ab\0c", 12, out, sizeof(out)), -1);
	scram_server_init(&s, &sec, NULL);
	assert_int_equal(srv_first(&s, "n,,n=\0,r=abc", 12, out, sizeof(out)), -1);

	/* Client nonce of the maximum length, and one byte more. */
	memcpy(big, "n,,n=,r=", 8);
	memset(big + 8, 'x', SCRAM_NONCE_MAX);
	scram_server_init(&s, &sec, NULL);
	assert_true(srv_first(&s, big, 8 + SCRAM_NONCE_MAX, out, sizeof(out)) > 0);
	memset(big + 8, 'x', SCRAM_NONCE_MAX + 1);
	scram_server_init(&s, &sec, NULL);
	assert_int_equal(srv_first(&s, big, 8 + SCRAM_NONCE_MAX + 1, out, sizeof(out)), -1);

	/* A username too long for client_first_bare. */
	memcpy(big, "n,,n=", 5);
	memset(big + 5, 'u', 600);
	memcpy(big + 605, ",r=abc", 6);
	scram_server_init(&s, &sec, NULL);
	assert_int_equal(srv_first(&s, big, 611, out, sizeof(out)), -1);

	/* Accepted: any n= value (PostgreSQL ignores it), "y" flag, every printable. */
	static const char *const good[] = {
		"n,,n=,r=abc",
		"y,,n=,r=abc",
		"n,,n=someone,r=abc",
		"n,,n=a=2Cb=3Dc,r=abc",
		"n,,n=,r=!\"#$%&'()*+-./0123456789:;<=>?@AZ[\\]^_`az{|}~",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		scram_server_init(&s, &sec, "SN");
		int n = srv_first(&s, good[i], strlen(good[i]), out, sizeof(out));
		if (n <= 0)
			fail_msg("refused client-first \"%s\"", good[i]);
		assert_int_equal(n, (int)strlen(out));
		assert_int_equal(s.state, 1);
		assert_string_equal(s.client_first_bare, good[i] + 3);
	}
}

/* Every prefix of a valid client-first: the ones that end before the nonce has a
 * character are refused; the rest are valid messages with a shorter nonce. */
static void test_client_first_truncated(void **state)
{
	struct scram_secret sec = rfc_secret();
	struct scram_server s;
	char out[BUF];
	const char *m = RFC_CLIENT_FIRST;
	size_t min_ok = strlen("n,,n=user,r=") + 1;
	(void)state;

	for (size_t len = 0; len <= strlen(m); len++) {
		scram_server_init(&s, &sec, RFC_SERVER_NONCE);
		int rc = srv_first(&s, m, len, out, sizeof(out));
		if (len < min_ok)
			assert_int_equal(rc, -1);
		else
			assert_int_equal(rc, (int)(strlen("r=,s=" RFC_SALT_B64 ",i=4096") + (len - min_ok + 1) +
						   strlen(RFC_SERVER_NONCE)));
	}
}

static void test_client_final_truncated_and_mutated(void **state)
{
	struct scram_server s;
	char out[BUF];
	char m[sizeof(RFC_CLIENT_FINAL) + 8];
	const size_t full = strlen(RFC_CLIENT_FINAL);
	(void)state;

	for (size_t len = 0; len < full; len++) {
		rfc_server_at_final(&s);
		if (srv_final(&s, RFC_CLIENT_FINAL, len, out, sizeof(out)) != -1)
			fail_msg("accepted client-final truncated to %zu bytes", len);
		assert_int_equal(s.state, -1);
	}
	/* Every byte changed: never accepted (-2 when only the proof's value changed). */
	for (size_t i = 0; i < full; i++) {
		memcpy(m, RFC_CLIENT_FINAL, full + 1);
		m[i] ^= 0x01;
		rfc_server_at_final(&s);
		int rc = srv_final(&s, m, full, out, sizeof(out));
		if (rc >= 0)
			fail_msg("accepted client-final with byte %zu changed: %s", i, m);
		if (i < strlen(RFC_CLIENT_FINAL_WO ",p="))
			assert_int_equal(rc, -1);
	}
	/* Extra bytes after a valid message. */
	static const char *const tails[] = { ",", ",x=1", "=", " ", "A", "\n" };
	for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		snprintf(m, sizeof(m), "%s%s", RFC_CLIENT_FINAL, tails[i]);
		rfc_server_at_final(&s);
		assert_int_equal(srv_final(&s, m, strlen(m), out, sizeof(out)), -1);
	}
	/* And the untouched message still works. */
	rfc_server_at_final(&s);
	assert_true(srv_final(&s, RFC_CLIENT_FINAL, full, out, sizeof(out)) > 0);
}

static void test_client_final_malformed(void **state)
{
	struct scram_server s;
	char out[BUF];
	static const char *const bad[] = {
		/* bad base64 in the proof */
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",   /* no padding */
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=",  /* non-zero pad bits */
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndV==",  /* 31 bytes */
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQA",  /* 33 bytes */
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=AAAA",
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN-Ute9ytag9zjfMHgsqmmiz7AndVQ=",  /* base64url */
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And=Q=",
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN+Ute9 ytag9zjfMHgsqmmiz7AndVQ=",
		RFC_CLIENT_FINAL_WO ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=\n",
		RFC_CLIENT_FINAL_WO ",p====",
		RFC_CLIENT_FINAL_WO ",p=",
		RFC_CLIENT_FINAL_WO ",p",
		RFC_CLIENT_FINAL_WO ",",
		RFC_CLIENT_FINAL_WO,
		/* wrong nonce */
		"c=biws,r=" RFC_CLIENT_NONCE ",p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE "x,p=" RFC_PROOF,
		"c=biws,r=" RFC_CLIENT_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,p=" RFC_PROOF,
		"c=biws,r=,p=" RFC_PROOF,
		/* channel binding data */
		"c=eSws,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=cD10bHMtdW5pcXVlLCw=,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=biwsAAAA,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=,r=" RFC_NONCE ",p=" RFC_PROOF,
		/* order, missing and extra attributes */
		"r=" RFC_NONCE ",c=biws,p=" RFC_PROOF,
		"r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=biws,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",x=ext,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",x=ext",
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",p=" RFC_PROOF,
		"c=biws,c=biws,r=" RFC_NONCE ",p=" RFC_PROOF,
		"m=x,c=biws,r=" RFC_NONCE ",p=" RFC_PROOF,
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rfc_server_at_final(&s);
		if (srv_final(&s, bad[i], strlen(bad[i]), out, sizeof(out)) != -1)
			fail_msg("accepted client-final \"%s\"", bad[i]);
	}
	/* A proof of the right shape but the wrong value is a wrong password. */
	const char *wrong = RFC_CLIENT_FINAL_WO ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
	rfc_server_at_final(&s);
	assert_int_equal(srv_final(&s, wrong, strlen(wrong), out, sizeof(out)), -2);
	/* NUL inside. */
	char nul[sizeof(RFC_CLIENT_FINAL)];
	memcpy(nul, RFC_CLIENT_FINAL, sizeof(nul));
	nul[10] = '\0';
	rfc_server_at_final(&s);
	assert_int_equal(srv_final(&s, nul, strlen(RFC_CLIENT_FINAL), out, sizeof(out)), -1);
}

/* ----------------------------------------------------- client role input */

static void test_server_first_truncated_and_mutated(void **state)
{
	struct scram_secret sec = rfc_secret();
	struct scram_client c;
	char out[BUF];
	char m[sizeof(RFC_SERVER_FIRST) + 8];
	const size_t full = strlen(RFC_SERVER_FIRST);
	(void)state;

	/* Pass-through mode: no PBKDF2 per attempt, and a shortened i= (still a valid
	 * count) is caught by the salt/iterations check (-2). */
	for (size_t len = 0; len < full; len++) {
		rfc_keys_client_sent_first(&c, &sec);
		int rc = cli_final(&c, RFC_SERVER_FIRST, len, out, sizeof(out));
		if (rc >= 0)
			fail_msg("accepted server-first truncated to %zu bytes", len);
		assert_int_equal(rc, len >= full - 3 ? -2 : -1);
		assert_int_equal(c.state, -1);
	}
	for (size_t i = 0; i < full; i++) {
		memcpy(m, RFC_SERVER_FIRST, full + 1);
		m[i] ^= 0x01;
		rfc_keys_client_sent_first(&c, &sec);
		int rc = cli_final(&c, m, full, out, sizeof(out));
		/* Changing the server's half of the nonce is legitimate; anything else is not. */
		size_t snonce_start = 2 + strlen(RFC_CLIENT_NONCE);
		size_t snonce_end = snonce_start + strlen(RFC_SERVER_NONCE);
		if (i >= snonce_start && i < snonce_end && m[i] != ',')
			assert_true(rc > 0);
		else if (rc >= 0)
			fail_msg("accepted server-first with byte %zu changed: %s", i, m);
	}
}

static void test_server_first_malformed(void **state)
{
	struct scram_secret sec = rfc_secret();
	struct scram_client c;
	char out[BUF];
	char big[600];
	static const char *const bad[] = {
		"",
		"r=",
		"r=" RFC_CLIENT_NONCE ",s=" RFC_SALT_B64 ",i=4096",               /* no server nonce */
		"r=rOprNGfwEbeRWgbNEkqX" RFC_SERVER_NONCE ",s=" RFC_SALT_B64 ",i=4096", /* not our nonce */
		"r=" RFC_CLIENT_NONCE "\x7f,s=" RFC_SALT_B64 ",i=4096",
		"r=" RFC_CLIENT_NONCE "a b,s=" RFC_SALT_B64 ",i=4096",
		"r=" RFC_NONCE ",s=,i=4096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gR==,i=4096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6g*==,i=4096",
		"r=" RFC_NONCE ",s=====,i=4096",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=0",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=04096",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=-4096",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=+4096",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i= 4096",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096 ",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096x",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=0x1000",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=10000001",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=99999999999999999999",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4294971392", /* 2^32 + 4096 */
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096,",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096,x=ext",
		"r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096,i=4096",
		"m=ext,r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=4096",
		"s=" RFC_SALT_B64 ",r=" RFC_NONCE ",i=4096",
		"r=" RFC_NONCE ",i=4096,s=" RFC_SALT_B64,
		"r=" RFC_NONCE ",s=" RFC_SALT_B64,
		"r=" RFC_NONCE ",x=1,s=" RFC_SALT_B64 ",i=4096",
		"e=other-error",
		"r=" RFC_NONCE ",,s=" RFC_SALT_B64 ",i=4096",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rfc_keys_client_sent_first(&c, &sec);
		if (cli_final(&c, bad[i], strlen(bad[i]), out, sizeof(out)) != -1)
			fail_msg("accepted server-first \"%s\"", bad[i]);
	}

	/* Salt longer than SCRAM_MAX_SALT (65 bytes = 88 base64 characters). */
	int n = snprintf(big, sizeof(big), "r=%s,s=", RFC_NONCE);
	memset(big + n, 'A', 88);
	n += 88;
	n += snprintf(big + n, sizeof(big) - (size_t)n, ",i=4096");
	big[n - 7 - 1] = '=';
	rfc_keys_client_sent_first(&c, &sec);
	assert_int_equal(cli_final(&c, big, (size_t)n, out, sizeof(out)), -1);

	/* Server nonce longer than SCRAM_NONCE_MAX. */
	n = snprintf(big, sizeof(big), "r=%s", RFC_CLIENT_NONCE);
	memset(big + n, 'z', SCRAM_NONCE_MAX + 1);
	n += SCRAM_NONCE_MAX + 1;
	n += snprintf(big + n, sizeof(big) - (size_t)n, ",s=%s,i=4096", RFC_SALT_B64);
	rfc_keys_client_sent_first(&c, &sec);
	assert_int_equal(cli_final(&c, big, (size_t)n, out, sizeof(out)), -1);

	/* NUL inside. */
	char nul[sizeof(RFC_SERVER_FIRST)];
	memcpy(nul, RFC_SERVER_FIRST, sizeof(nul));
	nul[5] = '\0';
	rfc_keys_client_sent_first(&c, &sec);
	assert_int_equal(cli_final(&c, nul, strlen(RFC_SERVER_FIRST), out, sizeof(out)), -1);
}

/* i= at the bound is accepted; above it is refused.  Pass-through keys belonging to
 * a 10,000,000-iteration secret keep this test from running PBKDF2 that long. */
static void test_iteration_bounds(void **state)
{
	struct scram_secret sec;
	struct scram_client c;
	char out[BUF];
	const char *max_text = "SCRAM-SHA-256$10000000:" RFC_SALT_B64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
			       "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
	const char *at_max = "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=10000000";
	const char *above = "r=" RFC_NONCE ",s=" RFC_SALT_B64 ",i=10000001";
	(void)state;

	assert_int_equal(scram_secret_parse(max_text, &sec), 0);
	assert_int_equal(sec.iterations, SCRAM_MAX_ITERATIONS);
	rfc_keys_client_sent_first(&c, &sec);
	assert_true(cli_final(&c, at_max, strlen(at_max), out, sizeof(out)) > 0);
	rfc_keys_client_sent_first(&c, &sec);
	assert_int_equal(cli_final(&c, above, strlen(above), out, sizeof(out)), -1);

	struct scram_secret tmp;
	assert_int_equal(scram_secret_from_password("x", NULL, 0, 0, &tmp), -1);
	assert_int_equal(scram_secret_from_password("x", NULL, 0, -1, &tmp), -1);
	assert_int_equal(scram_secret_from_password("x", NULL, 0, SCRAM_MAX_ITERATIONS + 1, &tmp), -1);
	assert_int_equal(scram_secret_from_password("x", NULL, 0, 1, &tmp), 0);
	assert_int_equal(tmp.iterations, 1);

	/* A server refuses to start with a secret outside the bounds. */
	struct scram_server s;
	tmp.iterations = SCRAM_MAX_ITERATIONS + 1;
	scram_server_init(&s, &tmp, NULL);
	assert_int_equal(s.state, -1);
	assert_int_equal(srv_first(&s, "n,,n=,r=abc", 11, out, sizeof(out)), -1);
}

static void test_server_final_malformed(void **state)
{
	struct scram_client c;
	static const char *const bad[] = {
		"",
		"v=",
		"v",
		"e=invalid-proof",
		"e=other-error",
		"e=",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=1",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=\n",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=AAAA",
		"x=1,v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		"V=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		"v=6rriTRBi23WpRR_wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	};
	const size_t full = strlen(RFC_SERVER_FINAL);
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rfc_keys_client_sent_final(&c);
		if (cli_verify(&c, bad[i], strlen(bad[i])) != -1)
			fail_msg("accepted server-final \"%s\"", bad[i]);
		assert_int_equal(c.state, -1);
	}
	for (size_t len = 0; len < full; len++) {
		rfc_keys_client_sent_final(&c);
		if (cli_verify(&c, RFC_SERVER_FINAL, len) != -1)
			fail_msg("accepted server-final truncated to %zu bytes", len);
	}
	char m[sizeof(RFC_SERVER_FINAL)];
	for (size_t i = 0; i < full; i++) {
		memcpy(m, RFC_SERVER_FINAL, sizeof(m));
		m[i] ^= 0x01;
		rfc_keys_client_sent_final(&c);
		if (cli_verify(&c, m, full) != -1)
			fail_msg("accepted server-final with byte %zu changed", i);
	}
	rfc_keys_client_sent_final(&c);
	assert_int_equal(cli_verify(&c, RFC_SERVER_FINAL, full), 0);
	/* Once verified, nothing more. */
	assert_int_equal(cli_verify(&c, RFC_SERVER_FINAL, full), -1);
}

/* ------------------------------------------------------ state and buffers */

static void test_state_misuse(void **state)
{
	struct scram_secret sec = rfc_secret();
	struct scram_server s;
	struct scram_client c;
	char out[BUF];
	char longpw[300];
	(void)state;

	scram_server_init(&s, &sec, RFC_SERVER_NONCE);
	assert_int_equal(srv_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out, sizeof(out)), -1);
	rfc_server_at_final(&s);
	assert_int_equal(srv_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), out, sizeof(out)), -1);
	assert_int_equal(s.state, -1);

	scram_server_init(&s, NULL, NULL);
	assert_int_equal(s.state, -1);
	/* Forced nonces must be valid nonces. */
	scram_server_init(&s, &sec, "a,b");
	assert_int_equal(srv_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), out, sizeof(out)), -1);
	scram_server_init(&s, &sec, "");
	assert_int_equal(s.state, -1);

	scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE);
	assert_int_equal(cli_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, sizeof(out)), -1);
	scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE);
	assert_int_equal(cli_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL)), -1);
	scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE);
	assert_true(scram_client_first(&c, out, sizeof(out)) > 0);
	assert_int_equal(scram_client_first(&c, out, sizeof(out)), -1);
	assert_int_equal(scram_client_set_username(&c, "late"), -1);

	scram_client_init_password(&c, "pencil", "bad nonce");
	assert_int_equal(scram_client_first(&c, out, sizeof(out)), -1);
	scram_client_init_password(&c, NULL, NULL);
	assert_int_equal(scram_client_first(&c, out, sizeof(out)), -1);
	memset(longpw, 'p', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	scram_client_init_password(&c, longpw, NULL);
	assert_int_equal(scram_client_first(&c, out, sizeof(out)), -1);
	scram_client_init_keys(&c, NULL, &sec, NULL);
	assert_int_equal(scram_client_first(&c, out, sizeof(out)), -1);
}

static void test_small_buffers(void **state)
{
	struct scram_secret sec = rfc_secret();
	struct scram_server s;
	struct scram_client c;
	char out[BUF];
	size_t n;
	(void)state;

	n = strlen(RFC_SERVER_FIRST);
	scram_server_init(&s, &sec, RFC_SERVER_NONCE);
	assert_int_equal(srv_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), out, n), -1);
	scram_server_init(&s, &sec, RFC_SERVER_NONCE);
	assert_int_equal(srv_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), NULL, 0), -1);
	scram_server_init(&s, &sec, RFC_SERVER_NONCE);
	assert_int_equal(srv_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), out, n + 1), (int)n);

	n = strlen(RFC_SERVER_FINAL);
	rfc_server_at_final(&s);
	assert_int_equal(srv_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out, n), -1);
	rfc_server_at_final(&s);
	assert_int_equal(srv_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out, n + 1), (int)n);

	n = strlen(RFC_CLIENT_FIRST);
	scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE);
	assert_int_equal(scram_client_set_username(&c, "user"), 0);
	assert_int_equal(scram_client_first(&c, out, n), -1);
	scram_client_init_password(&c, "pencil", RFC_CLIENT_NONCE);
	assert_int_equal(scram_client_set_username(&c, "user"), 0);
	assert_int_equal(scram_client_first(&c, out, n + 1), (int)n);

	n = strlen(RFC_CLIENT_FINAL);
	struct scram_client k;
	rfc_keys_client_sent_first(&k, &sec);
	assert_int_equal(cli_final(&k, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, n), -1);
	rfc_keys_client_sent_first(&k, &sec);
	assert_int_equal(cli_final(&k, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, 10), -1);
	rfc_keys_client_sent_first(&k, &sec);
	assert_int_equal(cli_final(&k, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, n + 1), (int)n);

	n = strlen(RFC_SECRET);
	assert_int_equal(scram_secret_format(&sec, out, n), -1);
	assert_int_equal(scram_secret_format(&sec, out, 0), -1);
	assert_int_equal(scram_secret_format(&sec, out, n + 1), (int)n);
}

static void test_username(void **state)
{
	struct scram_client c;
	struct scram_server s;
	struct scram_secret sec = quick_secret("pw");
	char a[BUF], b[BUF];
	char big[400];
	int n;
	(void)state;

	scram_client_init_password(&c, "pw", "N");
	assert_int_equal(scram_client_set_username(&c, "a,b=c"), 0);
	assert_int_equal(scram_client_first(&c, a, sizeof(a)), (int)strlen("n,,n=a=2Cb=3Dc,r=N"));
	assert_string_equal(a, "n,,n=a=2Cb=3Dc,r=N");
	scram_server_init(&s, &sec, NULL);
	n = srv_first(&s, a, strlen(a), b, sizeof(b));
	assert_true(n > 0);
	n = cli_final(&c, b, (size_t)n, a, sizeof(a));
	assert_true(n > 0);
	assert_true(srv_final(&s, a, (size_t)n, b, sizeof(b)) > 0);

	/* Too long: refused, and the client still works with the empty name. */
	memset(big, ',', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	scram_client_init_password(&c, "pw", "N");
	assert_int_equal(scram_client_set_username(&c, big), -1);
	assert_int_equal(scram_client_first(&c, a, sizeof(a)), 8 + 1);
	assert_string_equal(a, "n,,n=,r=N");
}

/* ------------------------------------------------------------- secrets */

static void test_secret_round_trip(void **state)
{
	static const size_t salt_lens[] = { 1, 2, 3, 16, 17, 63, SCRAM_MAX_SALT };
	struct scram_secret a, b;
	char text[BUF];
	(void)state;

	for (size_t i = 0; i < sizeof(salt_lens) / sizeof(salt_lens[0]); i++) {
		assert_int_equal(scram_secret_from_password("pw", NULL, salt_lens[i], 3, &a), 0);
		int n = scram_secret_format(&a, text, sizeof(text));
		assert_true(n > 0);
		assert_int_equal((size_t)n, strlen(text));
		assert_int_equal(scram_secret_parse(text, &b), 0);
		assert_int_equal(b.iterations, 3);
		assert_int_equal(b.salt_len, salt_lens[i]);
		assert_memory_equal(b.salt, a.salt, a.salt_len);
		assert_memory_equal(b.stored_key, a.stored_key, SCRAM_KEY_LEN);
		assert_memory_equal(b.server_key, a.server_key, SCRAM_KEY_LEN);
	}
	/* Out of range: not formatted. */
	a.salt_len = 0;
	assert_int_equal(scram_secret_format(&a, text, sizeof(text)), -1);
	a.salt_len = SCRAM_MAX_SALT + 1;
	assert_int_equal(scram_secret_format(&a, text, sizeof(text)), -1);
	a.salt_len = 16;
	a.iterations = 0;
	assert_int_equal(scram_secret_format(&a, text, sizeof(text)), -1);
	assert_int_equal(scram_secret_format(NULL, text, sizeof(text)), -1);

	assert_int_equal(scram_secret_from_password("pw", NULL, SCRAM_MAX_SALT + 1, 3, &a), -1);
	assert_int_equal(scram_secret_from_password("pw", (const uint8_t *)"s", 0, 3, &a), -1);
	assert_int_equal(scram_secret_from_password(NULL, NULL, 0, 3, &a), -1);
}

static void test_secret_parse_malformed(void **state)
{
#define KS "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define KV "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
	static const char *const bad[] = {
		"",
		"SCRAM-SHA-256",
		"SCRAM-SHA-256$",
		"SCRAM-SHA-1$4096:" RFC_SALT_B64 "$" KS ":" KV,
		"scram-sha-256$4096:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$4096$" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 ":" KS ":" KV,
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS "$" KV,
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS,
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS ":",
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$:" KV,
		"SCRAM-SHA-256$4096:$" KS ":" KV,
		"SCRAM-SHA-256$:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$0:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$04096:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$-1:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$10000001:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$4096x:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$ 4096:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" KS ":" KV,
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gR==$" KS ":" KV,
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q==:" KV, /* 31 */
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qYA:" KV, /* 33 */
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU",
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS ":" KV "\n",
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS ":" KV " ",
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS ":" KV ":" KV,
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS ":" KV "$",
		" SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS ":" KV,
		"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" KS ":" KV "AAAA",
		"md56a422f785c9e20873908ce25d1736ae2",
	};
	struct scram_secret s;
	char text[sizeof(RFC_SECRET)];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scram_secret_parse(bad[i], &s) != -1)
			fail_msg("accepted secret \"%s\"", bad[i]);
	/* Every proper prefix is malformed. */
	for (size_t len = 0; len < strlen(RFC_SECRET); len++) {
		memcpy(text, RFC_SECRET, len);
		text[len] = '\0';
		if (scram_secret_parse(text, &s) != -1)
			fail_msg("accepted secret prefix \"%s\"", text);
	}
	assert_int_equal(scram_secret_parse(NULL, &s), -1);

	/* Salt of SCRAM_MAX_SALT bytes (86 data characters + "==") is accepted; one byte
	 * more (87 + "=") is not. */
	char t[256], salt_b64[89];
	memset(salt_b64, 'A', 86);
	memcpy(salt_b64 + 86, "==", 3);
	snprintf(t, sizeof(t), "SCRAM-SHA-256$1:%s$" KS ":" KV, salt_b64);
	assert_int_equal(scram_secret_parse(t, &s), 0);
	assert_int_equal(s.salt_len, SCRAM_MAX_SALT);
	memset(salt_b64, 'A', 87);
	memcpy(salt_b64 + 87, "=", 2);
	snprintf(t, sizeof(t), "SCRAM-SHA-256$1:%s$" KS ":" KV, salt_b64);
	assert_int_equal(scram_secret_parse(t, &s), -1);
#undef KS
#undef KV
}

/* ------------------------------------------------------ random garbage */

static uint32_t lcg(uint32_t *x)
{
	*x = *x * 1664525u + 1013904223u;
	return *x >> 8;
}

/* Random byte strings biased towards the grammar's characters: nothing crashes,
 * nothing is accepted by the steps whose success needs a secret. */
static void test_random_garbage(void **state)
{
	static const char alphabet[] = "ncrpsivem=,yaAZ09+/=\0\xff ";
	struct scram_secret sec = rfc_secret();
	struct scram_server s;
	struct scram_client c;
	struct scram_secret parsed;
	char msg[96], out[BUF];
	uint32_t x = 12345;
	(void)state;

	for (int iter = 0; iter < 5000; iter++) {
		size_t len = lcg(&x) % sizeof(msg);
		for (size_t i = 0; i < len; i++)
			msg[i] = (lcg(&x) & 1) ? alphabet[lcg(&x) % (sizeof(alphabet) - 1)] : (char)lcg(&x);
		scram_server_init(&s, &sec, NULL);
		(void)srv_first(&s, msg, len, out, sizeof(out));
		rfc_server_at_final(&s);
		assert_true(srv_final(&s, msg, len, out, sizeof(out)) < 0);
		rfc_keys_client_sent_first(&c, &sec);
		(void)cli_final(&c, msg, len, out, sizeof(out));
		rfc_keys_client_sent_final(&c);
		assert_int_equal(cli_verify(&c, msg, len), -1);
		char *z = malloc(len + 1);
		memcpy(z, msg, len);
		z[len] = '\0';
		assert_int_equal(scram_secret_parse(z, &parsed), -1);
		free(z);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_server),
		cmocka_unit_test(test_rfc7677_client),
		cmocka_unit_test(test_rfc7677_secret),
		cmocka_unit_test(test_rfc7677_pass_through),
		cmocka_unit_test(test_roles_together),
		cmocka_unit_test(test_wrong_password),
		cmocka_unit_test(test_pass_through),
		cmocka_unit_test(test_pass_through_without_server_key),
		cmocka_unit_test(test_gs2_y_accepted),
		cmocka_unit_test(test_client_first_malformed),
		cmocka_unit_test(test_client_first_truncated),
		cmocka_unit_test(test_client_final_truncated_and_mutated),
		cmocka_unit_test(test_client_final_malformed),
		cmocka_unit_test(test_server_first_truncated_and_mutated),
		cmocka_unit_test(test_server_first_malformed),
		cmocka_unit_test(test_iteration_bounds),
		cmocka_unit_test(test_server_final_malformed),
		cmocka_unit_test(test_state_misuse),
		cmocka_unit_test(test_small_buffers),
		cmocka_unit_test(test_username),
		cmocka_unit_test(test_secret_round_trip),
		cmocka_unit_test(test_secret_parse_malformed),
		cmocka_unit_test(test_random_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
