/* md5.c - PostgreSQL's md5 password scheme: the stored secret ("md5" + hex of
 * md5(password || user)) and the salted answer to AuthenticationMD5Password.
 * OpenSSL does the hashing.  The functions return void (as md5.h promises), so
 * every failure is reported as an empty string, which never equals a real answer. */
#include "pg/md5.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MD5_RAW_LEN 16

/* md5(a || b) as 32 lowercase hex digits + "md5" prefix into out; -1 on failure. */
static int md5_hex2(const void *a, size_t alen, const void *b, size_t blen, char out[PG_MD5_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	int rc = -1;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	/* EVP_md5 is unavailable in FIPS mode; that must fail this login, not the process. */
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL) || !EVP_DigestUpdate(ctx, a, alen) ||
	    !EVP_DigestUpdate(ctx, b, blen) || !EVP_DigestFinal_ex(ctx, digest, &dlen) || dlen != MD5_RAW_LEN)
		goto out;
	memcpy(out, "md5", 3);
	for (size_t i = 0; i < MD5_RAW_LEN; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[3 + 2 * i + 1] = hex[digest[i] & 0xf];
	}
	out[PG_MD5_LEN] = '\0';
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

void pg_md5_secret(const char *password, const char *user, char out[PG_MD5_LEN + 1])
{
	if (!out)
		return;
	out[0] = '\0';
	if (!password || !user)
		return;
	if (md5_hex2(password, strlen(password), user, strlen(user), out) < 0)
		out[0] = '\0';
}

/* Same test PostgreSQL applies (get_password_type): exactly "md5" + 32 lowercase hex.
 * Anything else is not an md5 secret, and hashing it would only produce an answer
 * that the server rejects for a less obvious reason. */
static int is_md5_secret(const char *s)
{
	if (strlen(s) != PG_MD5_LEN || memcmp(s, "md5", 3) != 0)
		return 0;
	for (size_t i = 3; i < PG_MD5_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

void pg_md5_response(const char *md5_secret, const uint8_t salt[4], char out[PG_MD5_LEN + 1])
{
	if (!out)
		return;
	out[0] = '\0';
	if (!md5_secret || !salt || !is_md5_secret(md5_secret))
		return;
	/* The salted hash is over the 32 hex digits, without the "md5" prefix. */
	if (md5_hex2(md5_secret + 3, PG_MD5_LEN - 3, salt, 4, out) < 0)
		out[0] = '\0';
}

int pg_secure_streq(const char *a, const char *b)
{
	size_t la, lb;

	if (!a || !b)
		return 0;
	la = strlen(a);
	lb = strlen(b);
	/* Lengths are public (every md5 answer is 35 bytes); only the contents are timed
	 * in constant time.  Two empty strings are not a match: an empty string is how
	 * the functions above report failure. */
	if (la != lb || la == 0)
		return 0;
	return CRYPTO_memcmp(a, b, la) == 0;
}
