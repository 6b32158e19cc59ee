/* scram.c - SCRAM-SHA-256 (RFC 5802 / RFC 7677), both roles, as pure functions on
 * strings.  This file owns the message grammar (strict parsing and writing of
 * client-first, server-first, client-final and server-final), the stored-secret text
 * form, and the key arithmetic; OpenSSL does the hashing and the randomness.
 *
 * Every message comes from the network: it is read through a bounds-checked cursor
 * over (pointer, length), never assumed NUL-terminated, and anything outside the
 * grammar we speak is refused with -1 rather than skipped. */
#include "pg/scram.h"

#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* PostgreSQL uses 18 random bytes (24 base64 characters) for each half of the nonce
 * and 16 bytes of salt; doing the same keeps our messages the size it expects. */
#define RAW_NONCE_LEN 18
#define DEFAULT_SALT_LEN 16

/* "biws" and "eSws" are base64("n,,") and base64("y,,"): the only gs2 headers we
 * accept, so client-final's c= must be exactly one of these. */
#define CBIND_N "biws"
#define CBIND_Y "eSws"

/* ---------------------------------------------------------------- base64 */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict decoder.  EVP_DecodeBlock skips whitespace and cannot tell us how much
 * padding it saw, so we decode ourselves: length a multiple of 4, '=' only as the last
 * one or two characters, unused bits zero (so every value has exactly one accepted
 * spelling).  Returns the decoded length, or -1 (also when it would exceed outcap). */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t outcap)
{
	size_t o = 0;

	if (len % 4 != 0 || len / 4 * 3 > (size_t)INT_MAX)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		size_t pad = 0;
		for (size_t j = 0; j < 4; j++) {
			unsigned char ch = (unsigned char)in[i + j];
			if (ch == '=') {
				if (i + 4 != len || j < 2)
					return -1;
				v[j] = 0;
				pad++;
			} else {
				if (pad)
					return -1; /* "ab=c": data after padding */
				v[j] = b64_value(ch);
				if (v[j] < 0)
					return -1;
			}
		}
		if ((pad == 1 && (v[2] & 0x3)) || (pad == 2 && (v[1] & 0xf)))
			return -1;
		uint32_t t = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		size_t n = 3 - pad;
		if (outcap - o < n)
			return -1;
		out[o++] = (uint8_t)(t >> 16);
		if (n > 1)
			out[o++] = (uint8_t)(t >> 8);
		if (n > 2)
			out[o++] = (uint8_t)t;
	}
	return (int)o;
}

/* ------------------------------------------------ output builder (sticky failure) */

struct sbuf {
	char *buf;
	size_t cap;
	size_t len;
	bool fail;
};

static void sb_init(struct sbuf *b, char *buf, size_t cap)
{
	b->buf = buf;
	b->cap = cap;
	b->len = 0;
	b->fail = (buf == NULL || cap == 0);
}

static void sb_put(struct sbuf *b, const void *p, size_t n)
{
	/* Strictly less than: one byte always stays free for the NUL. */
	if (b->fail || n >= b->cap - b->len) {
		b->fail = true;
		return;
	}
	memcpy(b->buf + b->len, p, n);
	b->len += n;
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_b64(struct sbuf *b, const uint8_t *in, size_t n)
{
	for (size_t i = 0; i < n && !b->fail; i += 3) {
		uint32_t t = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			t |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			t |= in[i + 2];
		char q[4] = {
			b64_chars[(t >> 18) & 63],
			b64_chars[(t >> 12) & 63],
			i + 1 < n ? b64_chars[(t >> 6) & 63] : '=',
			i + 2 < n ? b64_chars[t & 63] : '=',
		};
		sb_put(b, q, 4);
	}
}

static void sb_int(struct sbuf *b, int v)
{
	char tmp[16];
	size_t n = 0;
	unsigned int u = v < 0 ? 0u : (unsigned int)v; /* callers pass validated counts */

	do {
		tmp[sizeof(tmp) - 1 - n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u && n < sizeof(tmp));
	sb_put(b, tmp + sizeof(tmp) - n, n);
}

/* NUL-terminates; returns the length or -1. */
static int sb_finish(struct sbuf *b)
{
	if (b->fail || b->len > (size_t)INT_MAX)
		return -1;
	b->buf[b->len] = '\0';
	return (int)b->len;
}

/* -------------------------------------------------------- attribute cursor */

/* A cursor over "a=value,b=value".  `expect` is true when an attribute must come
 * next (at the start, and after a ','), so a trailing ',' or a missing ',' are both
 * caught without looking back. */
struct cursor {
	const char *p;
	size_t left;
	bool expect;
};

static void cur_init(struct cursor *c, const char *p, size_t len)
{
	c->p = p;
	c->left = len;
	c->expect = true;
}

static bool cur_peek_attr(const struct cursor *c, char attr)
{
	return c->expect && c->left >= 2 && c->p[0] == attr && c->p[1] == '=';
}

/* Reads "<attr>=<value>" up to the next ',' or the end; the value may be empty. */
static int cur_attr(struct cursor *c, char attr, const char **val, size_t *vlen)
{
	if (!cur_peek_attr(c, attr))
		return -1;
	const char *v = c->p + 2;
	size_t rem = c->left - 2;
	const char *comma = memchr(v, ',', rem);
	size_t n = comma ? (size_t)(comma - v) : rem;

	*val = v;
	*vlen = n;
	c->expect = (comma != NULL);
	c->p = v + n + (comma ? 1 : 0);
	c->left = rem - n - (comma ? 1 : 0);
	return 0;
}

static bool cur_at_end(const struct cursor *c)
{
	return !c->expect && c->left == 0;
}

/* ------------------------------------------------------------- validators */

/* RFC 5802 "printable": %x21-7E except ','. */
static bool nonce_ok(const char *p, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch < 0x21 || ch > 0x7e || ch == ',')
			return false;
	}
	return true;
}

/* RFC 5802 posit-number (no sign, no leading zero), bounded: a huge count from a
 * malicious server would otherwise pin a CPU in PBKDF2. */
static int parse_iterations(const char *p, size_t n, int *out)
{
	long v = 0;

	if (n == 0 || n > 8 || p[0] < '1' || p[0] > '9')
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	if (v < 1 || v > SCRAM_MAX_ITERATIONS)
		return -1;
	*out = (int)v;
	return 0;
}

static bool secret_ok(const struct scram_secret *s)
{
	return s && s->iterations >= 1 && s->iterations <= SCRAM_MAX_ITERATIONS && s->salt_len >= 1 &&
	       s->salt_len <= SCRAM_MAX_SALT;
}

/* A message carrying a NUL would be cut short by every strlen() downstream and is
 * outside the grammar anyway. */
static bool msg_ok(const char *msg, size_t len)
{
	return msg != NULL && memchr(msg, '\0', len) == NULL;
}

/* Copies a forced nonce or makes a random one; returns false if unusable. */
static bool make_nonce(const char *forced, char *out, size_t outcap)
{
	if (forced) {
		size_t n = strlen(forced);
		if (n > SCRAM_NONCE_MAX || n >= outcap || !nonce_ok(forced, n))
			return false;
		memcpy(out, forced, n + 1);
		return true;
	}
	uint8_t raw[RAW_NONCE_LEN];
	struct sbuf b;
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return false;
	sb_init(&b, out, outcap);
	sb_b64(&b, raw, sizeof(raw));
	return sb_finish(&b) >= 0;
}

/* ------------------------------------------------------------------ crypto */

struct part {
	const void *p;
	size_t n;
};

static int hmac_sha256(const uint8_t *key, size_t keylen, const struct part *parts, size_t nparts,
		       uint8_t out[SCRAM_KEY_LEN])
{
	int rc = -1;
	size_t outl = 0;
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[2] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};

	if (!ctx || !EVP_MAC_init(ctx, key, keylen, params))
		goto out;
	for (size_t i = 0; i < nparts; i++)
		if (!EVP_MAC_update(ctx, parts[i].p, parts[i].n))
			goto out;
	if (!EVP_MAC_final(ctx, out, &outl, SCRAM_KEY_LEN) || outl != SCRAM_KEY_LEN)
		goto out;
	rc = 0;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return rc;
}

static int hmac_str(const uint8_t key[SCRAM_KEY_LEN], const char *s, uint8_t out[SCRAM_KEY_LEN])
{
	struct part p = { s, strlen(s) };
	return hmac_sha256(key, SCRAM_KEY_LEN, &p, 1, out);
}

static int sha256(const uint8_t *in, size_t n, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int outl = 0;
	if (!EVP_Digest(in, n, out, &outl, EVP_sha256(), NULL) || outl != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

/* SaltedPassword -> ClientKey, ServerKey. */
static int derive_keys(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
		       uint8_t client_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t salted[SCRAM_KEY_LEN];
	size_t plen = strlen(password);
	int rc = -1;

	if (plen > INT_MAX || salt_len > INT_MAX)
		return -1;
	if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)salt_len, iterations, EVP_sha256(),
			      SCRAM_KEY_LEN, salted) != 1)
		goto out;
	if (hmac_str(salted, "Client Key", client_key) < 0 || hmac_str(salted, "Server Key", server_key) < 0)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	return rc;
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof,
 * fed to HMAC in pieces so no buffer has to hold it. */
static int auth_hmac(const uint8_t key[SCRAM_KEY_LEN], const char *bare, const char *sfirst, size_t sfirst_len,
		     const char *final_wo, size_t final_wo_len, uint8_t out[SCRAM_KEY_LEN])
{
	struct part parts[5] = {
		{ bare, strlen(bare) }, { ",", 1 }, { sfirst, sfirst_len }, { ",", 1 }, { final_wo, final_wo_len },
	};
	return hmac_sha256(key, SCRAM_KEY_LEN, parts, 5, out);
}

/* ----------------------------------------------------------------- secrets */

static const char secret_prefix[] = "SCRAM-SHA-256$";

int scram_secret_parse(const char *text, struct scram_secret *out)
{
	struct scram_secret s;
	const char *p, *end, *sep;
	size_t plen = sizeof(secret_prefix) - 1;
	int n;

	if (!text || !out)
		return -1;
	memset(&s, 0, sizeof(s));
	end = text + strlen(text);
	if ((size_t)(end - text) < plen || memcmp(text, secret_prefix, plen) != 0)
		return -1;
	p = text + plen;

	/* <iterations>: */
	sep = memchr(p, ':', (size_t)(end - p));
	if (!sep || parse_iterations(p, (size_t)(sep - p), &s.iterations) < 0)
		return -1;
	p = sep + 1;
	/* <salt>$ */
	sep = memchr(p, '$', (size_t)(end - p));
	if (!sep || (n = b64_decode(p, (size_t)(sep - p), s.salt, sizeof(s.salt))) < 1)
		return -1;
	s.salt_len = (size_t)n;
	p = sep + 1;
	/* <StoredKey>:<ServerKey> */
	sep = memchr(p, ':', (size_t)(end - p));
	if (!sep || b64_decode(p, (size_t)(sep - p), s.stored_key, sizeof(s.stored_key)) != SCRAM_KEY_LEN)
		return -1;
	p = sep + 1;
	if (b64_decode(p, (size_t)(end - p), s.server_key, sizeof(s.server_key)) != SCRAM_KEY_LEN)
		return -1;
	*out = s;
	OPENSSL_cleanse(&s, sizeof(s));
	return 0;
}

int scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
			       struct scram_secret *out)
{
	struct scram_secret s;
	uint8_t client_key[SCRAM_KEY_LEN];
	int rc = -1;

	if (!password || !out || iterations < 1 || iterations > SCRAM_MAX_ITERATIONS)
		return -1;
	memset(&s, 0, sizeof(s));
	s.iterations = iterations;
	if (salt) {
		if (salt_len < 1 || salt_len > SCRAM_MAX_SALT)
			return -1;
		memcpy(s.salt, salt, salt_len);
		s.salt_len = salt_len;
	} else {
		s.salt_len = salt_len ? salt_len : DEFAULT_SALT_LEN;
		if (s.salt_len > SCRAM_MAX_SALT || RAND_bytes(s.salt, (int)s.salt_len) != 1)
			return -1;
	}
	if (derive_keys(password, s.salt, s.salt_len, iterations, client_key, s.server_key) < 0 ||
	    sha256(client_key, sizeof(client_key), s.stored_key) < 0)
		goto out;
	*out = s;
	rc = 0;
out:
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&s, sizeof(s));
	return rc;
}

int scram_secret_format(const struct scram_secret *s, char *out, size_t outlen)
{
	struct sbuf b;

	if (!secret_ok(s))
		return -1;
	sb_init(&b, out, outlen);
	sb_puts(&b, secret_prefix);
	sb_int(&b, s->iterations);
	sb_put(&b, ":", 1);
	sb_b64(&b, s->salt, s->salt_len);
	sb_put(&b, "$", 1);
	sb_b64(&b, s->stored_key, SCRAM_KEY_LEN);
	sb_put(&b, ":", 1);
	sb_b64(&b, s->server_key, SCRAM_KEY_LEN);
	return sb_finish(&b);
}

/* ------------------------------------------------------------- server role */

void scram_server_init(struct scram_server *s, const struct scram_secret *secret, const char *forced_server_nonce)
{
	memset(s, 0, sizeof(*s));
	s->state = -1;
	if (!secret_ok(secret))
		return;
	s->secret = *secret;
	/* Until the client's half arrives, nonce holds only our half. */
	if (!make_nonce(forced_server_nonce, s->nonce, SCRAM_NONCE_MAX + 1))
		return;
	s->state = 0;
}

/* gs2-header: gs2-cbind-flag "," [authzid] ","; sets *flag, returns bytes consumed or -1. */
static int parse_gs2_header(const char *msg, size_t len, char *flag)
{
	if (len < 3)
		return -1;
	/* "p=" means the client wants channel binding; we offer only SCRAM-SHA-256,
	 * so that is a protocol error.  "y" (client could, but thinks we cannot) is fine
	 * precisely because we never advertise -PLUS; if that changes, "y" must be refused
	 * as a downgrade. */
	if ((msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',')
		return -1;
	/* authzid ("a=") is refused, as PostgreSQL does: a login role is all we have. */
	if (msg[2] != ',')
		return -1;
	*flag = msg[0];
	return 3;
}

int scram_server_handle_first(struct scram_server *s, const char *msg, size_t len, char *out, size_t outlen)
{
	struct cursor c;
	const char *bare, *user, *cnonce;
	size_t bare_len, user_len, cnonce_len, snonce_len;
	char flag = 0;
	char combined[sizeof(s->nonce)];
	struct sbuf b;
	int hdr, n;

	if (s->state != 0 || !msg_ok(msg, len))
		goto fail;
	if ((hdr = parse_gs2_header(msg, len, &flag)) < 0)
		goto fail;
	bare = msg + hdr;
	bare_len = len - (size_t)hdr;
	if (bare_len >= sizeof(s->client_first_bare))
		goto fail;

	cur_init(&c, bare, bare_len);
	/* n= must come first, which also refuses "m=" (a mandatory extension: RFC 5802
	 * says to fail when it is not understood).  Extensions after r= are refused too:
	 * no client PostgreSQL supports sends any. */
	if (cur_attr(&c, 'n', &user, &user_len) < 0)
		goto fail;
	/* The username is whatever the startup packet said; PostgreSQL ignores n=, and so
	 * do we (libpq sends it empty). */
	(void)user;
	(void)user_len;
	if (cur_attr(&c, 'r', &cnonce, &cnonce_len) < 0 || !cur_at_end(&c))
		goto fail;
	if (cnonce_len > SCRAM_NONCE_MAX || !nonce_ok(cnonce, cnonce_len))
		goto fail;

	snonce_len = strlen(s->nonce);
	memcpy(combined, cnonce, cnonce_len);
	memcpy(combined + cnonce_len, s->nonce, snonce_len + 1);

	sb_init(&b, s->server_first, sizeof(s->server_first));
	sb_puts(&b, "r=");
	sb_puts(&b, combined);
	sb_puts(&b, ",s=");
	sb_b64(&b, s->secret.salt, s->secret.salt_len);
	sb_puts(&b, ",i=");
	sb_int(&b, s->secret.iterations);
	if ((n = sb_finish(&b)) < 0 || (size_t)n >= outlen || !out)
		goto fail;

	memcpy(out, s->server_first, (size_t)n + 1);
	memcpy(s->nonce, combined, cnonce_len + snonce_len + 1);
	memcpy(s->client_first_bare, bare, bare_len);
	s->client_first_bare[bare_len] = '\0';
	s->gs2_flag = flag;
	s->state = 1;
	return n;
fail:
	s->state = -1;
	return -1;
}

int scram_server_handle_final(struct scram_server *s, const char *msg, size_t len, char *out, size_t outlen)
{
	struct cursor c;
	const char *cb, *nonce, *proof_b64;
	size_t cb_len, nonce_len, proof_len, wo_len;
	uint8_t proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	const char *want_cb;
	struct sbuf b;
	int rc = -1, n;

	if (s->state != 1 || !msg_ok(msg, len))
		goto out;
	cur_init(&c, msg, len);
	want_cb = s->gs2_flag == 'y' ? CBIND_Y : CBIND_N;
	if (cur_attr(&c, 'c', &cb, &cb_len) < 0 || cb_len != strlen(want_cb) || memcmp(cb, want_cb, cb_len) != 0)
		goto out;
	if (cur_attr(&c, 'r', &nonce, &nonce_len) < 0 || nonce_len != strlen(s->nonce) ||
	    memcmp(nonce, s->nonce, nonce_len) != 0)
		goto out;
	/* The proof signs everything before ",p="; cur_attr left us just past that ','. */
	if (!cur_peek_attr(&c, 'p'))
		goto out;
	wo_len = (size_t)(c.p - msg) - 1;
	if (cur_attr(&c, 'p', &proof_b64, &proof_len) < 0 || !cur_at_end(&c) ||
	    b64_decode(proof_b64, proof_len, proof, sizeof(proof)) != SCRAM_KEY_LEN)
		goto out;

	/* ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); it is right iff
	 * H(ClientKey) == StoredKey.  Keeping ClientKey is what makes pass-through work. */
	if (auth_hmac(s->secret.stored_key, s->client_first_bare, s->server_first, strlen(s->server_first), msg,
		      wo_len, sig) < 0)
		goto out;
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		key[i] = proof[i] ^ sig[i];
	if (sha256(key, sizeof(key), stored) < 0)
		goto out;
	if (CRYPTO_memcmp(stored, s->secret.stored_key, SCRAM_KEY_LEN) != 0) {
		rc = -2;
		goto out;
	}

	if (auth_hmac(s->secret.server_key, s->client_first_bare, s->server_first, strlen(s->server_first), msg,
		      wo_len, sig) < 0)
		goto out;
	sb_init(&b, out, outlen);
	sb_puts(&b, "v=");
	sb_b64(&b, sig, sizeof(sig));
	if ((n = sb_finish(&b)) < 0)
		goto out;
	memcpy(s->client_key, key, sizeof(key));
	s->have_client_key = true;
	s->state = 2;
	rc = n;
out:
	if (rc < 0)
		s->state = -1;
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(proof, sizeof(proof));
	return rc;
}

/* ------------------------------------------------------------- client role */

void scram_client_init_password(struct scram_client *c, const char *password, const char *forced_nonce)
{
	memset(c, 0, sizeof(*c));
	c->state = -1;
	if (!password || strlen(password) >= sizeof(c->password))
		return;
	strcpy(c->password, password);
	if (!make_nonce(forced_nonce, c->client_nonce, sizeof(c->client_nonce)))
		return;
	c->state = 0;
}

void scram_client_init_keys(struct scram_client *c, const uint8_t client_key[SCRAM_KEY_LEN],
			    const struct scram_secret *secret, const char *forced_nonce)
{
	memset(c, 0, sizeof(*c));
	c->state = -1;
	if (!client_key || !secret_ok(secret))
		return;
	c->use_keys = true;
	memcpy(c->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(c->server_key, secret->server_key, SCRAM_KEY_LEN);
	c->have_server_key = true;
	c->key_iterations = secret->iterations;
	memcpy(c->key_salt, secret->salt, secret->salt_len);
	c->key_salt_len = secret->salt_len;
	if (!make_nonce(forced_nonce, c->client_nonce, sizeof(c->client_nonce)))
		return;
	c->state = 0;
}

int scram_client_set_username(struct scram_client *c, const char *user)
{
	struct sbuf b;

	if (c->state != 0 || !user)
		return -1;
	sb_init(&b, c->username, sizeof(c->username));
	for (const char *p = user; *p; p++) {
		/* saslname: ',' and '=' are the two characters the grammar reserves. */
		if (*p == ',')
			sb_puts(&b, "=2C");
		else if (*p == '=')
			sb_puts(&b, "=3D");
		else
			sb_put(&b, p, 1);
	}
	if (sb_finish(&b) < 0) {
		c->username[0] = '\0';
		return -1;
	}
	return 0;
}

int scram_client_first(struct scram_client *c, char *out, size_t outlen)
{
	struct sbuf b;
	int n;

	if (c->state != 0)
		goto fail;
	sb_init(&b, c->client_first_bare, sizeof(c->client_first_bare));
	sb_puts(&b, "n=");
	sb_puts(&b, c->username);
	sb_puts(&b, ",r=");
	sb_puts(&b, c->client_nonce);
	if (sb_finish(&b) < 0)
		goto fail;
	sb_init(&b, out, outlen);
	sb_puts(&b, "n,,");
	sb_puts(&b, c->client_first_bare);
	if ((n = sb_finish(&b)) < 0)
		goto fail;
	c->state = 1;
	return n;
fail:
	c->state = -1;
	return -1;
}

int scram_client_final(struct scram_client *c, const char *server_first, size_t len, char *out, size_t outlen)
{
	struct cursor cur;
	const char *nonce, *salt_b64, *iter;
	size_t nonce_len, salt_b64_len, iter_len, cn_len, wo_len;
	uint8_t salt[SCRAM_MAX_SALT];
	uint8_t client_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	uint8_t sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	int salt_len, iterations, rc = -1, n;
	struct sbuf b;

	if (c->state != 1 || !msg_ok(server_first, len))
		goto out;
	cur_init(&cur, server_first, len);
	/* r = our nonce followed by a non-empty server part; a server that merely echoes
	 * our nonce adds no freshness of its own. */
	cn_len = strlen(c->client_nonce);
	if (cur_attr(&cur, 'r', &nonce, &nonce_len) < 0 || nonce_len <= cn_len ||
	    nonce_len > cn_len + SCRAM_NONCE_MAX || memcmp(nonce, c->client_nonce, cn_len) != 0 ||
	    !nonce_ok(nonce, nonce_len))
		goto out;
	if (cur_attr(&cur, 's', &salt_b64, &salt_b64_len) < 0 ||
	    (salt_len = b64_decode(salt_b64, salt_b64_len, salt, sizeof(salt))) < 1)
		goto out;
	if (cur_attr(&cur, 'i', &iter, &iter_len) < 0 || parse_iterations(iter, iter_len, &iterations) < 0)
		goto out;
	if (!cur_at_end(&cur))
		goto out;

	if (c->use_keys) {
		/* ClientKey is tied to one salt and iteration count: if PostgreSQL's secret
		 * differs from ours, the proof we could make would be wrong.  Say so distinctly
		 * so the caller can explain the configuration error. */
		if (iterations != c->key_iterations || (size_t)salt_len != c->key_salt_len ||
		    memcmp(salt, c->key_salt, (size_t)salt_len) != 0) {
			rc = -2;
			goto out;
		}
		memcpy(client_key, c->client_key, SCRAM_KEY_LEN);
		memcpy(server_key, c->server_key, SCRAM_KEY_LEN);
	} else if (derive_keys(c->password, salt, (size_t)salt_len, iterations, client_key, server_key) < 0) {
		goto out;
	}

	sb_init(&b, out, outlen);
	sb_puts(&b, "c=" CBIND_N ",r=");
	sb_put(&b, nonce, nonce_len);
	if (b.fail)
		goto out;
	wo_len = b.len;
	/* AuthMessage uses server-first exactly as received. */
	if (sha256(client_key, sizeof(client_key), stored) < 0 ||
	    auth_hmac(stored, c->client_first_bare, server_first, len, out, wo_len, sig) < 0)
		goto out;
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ sig[i];
	sb_puts(&b, ",p=");
	sb_b64(&b, proof, sizeof(proof));
	if ((n = sb_finish(&b)) < 0)
		goto out;
	if ((!c->use_keys || c->have_server_key) &&
	    auth_hmac(server_key, c->client_first_bare, server_first, len, out, wo_len, c->server_signature) < 0)
		goto out;
	c->state = 2;
	rc = n;
out:
	if (rc < 0)
		c->state = -1;
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(proof, sizeof(proof));
	return rc;
}

int scram_client_verify_final(struct scram_client *c, const char *server_final, size_t len)
{
	struct cursor cur;
	const char *v;
	size_t vlen;
	uint8_t sig[SCRAM_KEY_LEN];

	/* "e=..." (server-error) fails here too: it is not a v= attribute. */
	if (c->state != 2 || !msg_ok(server_final, len))
		goto fail;
	cur_init(&cur, server_final, len);
	if (cur_attr(&cur, 'v', &v, &vlen) < 0 || !cur_at_end(&cur) ||
	    b64_decode(v, vlen, sig, sizeof(sig)) != SCRAM_KEY_LEN)
		goto fail;
	if (c->use_keys && !c->have_server_key) {
		c->state = 3;
		return 0;
	}
	if (CRYPTO_memcmp(sig, c->server_signature, SCRAM_KEY_LEN) != 0)
		goto fail;
	c->state = 3;
	return 0;
fail:
	c->state = -1;
	return -1;
}
