/* tls.c - building SSL_CTX objects from pgmedic's settings. */
#include "net/tls.h"

#include <openssl/err.h>
#include <stdio.h>

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
	char buf[160] = "";
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errlen, "%s%s%s: %s", what, file ? " " : "", file ? file : "", buf[0] ? buf : "failed");
	ERR_clear_error();
}

static SSL_CTX *ctx_common(const SSL_METHOD *m, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(m);
	if (!ctx) {
		ssl_err(err, errlen, "SSL_CTX_new", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static int load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t errlen)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ssl_err(err, errlen, "cannot load certificate", cert);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ssl_err(err, errlen, "cannot load private key", key);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, errlen, "private key does not match certificate", cert);
		return -1;
	}
	return 0;
}

SSL_CTX *tls_server_ctx_new(enum sslmode mode, const char *cert, const char *key, const char *ca,
			    char *err, size_t errlen)
{
	if (!cert || !key) {
		snprintf(err, errlen, "client_tls_cert_file and client_tls_key_file are required for TLS");
		return NULL;
	}
	SSL_CTX *ctx = ctx_common(TLS_server_method(), err, errlen);
	if (!ctx)
		return NULL;
	if (load_pair(ctx, cert, key, err, errlen) < 0)
		goto fail;
	if (ca) {
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
			ssl_err(err, errlen, "cannot load CA file", ca);
			goto fail;
		}
	}
	if (mode >= SSLMODE_VERIFY_CA) {
		if (!ca) {
			snprintf(err, errlen, "client_tls_sslmode %s needs client_tls_ca_file", sslmode_name(mode));
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_client_ctx_new(enum sslmode mode, const char *cert, const char *key, const char *ca,
			    char *err, size_t errlen)
{
	SSL_CTX *ctx = ctx_common(TLS_client_method(), err, errlen);
	if (!ctx)
		return NULL;
	if (cert && key && load_pair(ctx, cert, key, err, errlen) < 0)
		goto fail;
	if (mode >= SSLMODE_VERIFY_CA) {
		if (!ca) {
			snprintf(err, errlen, "server_tls_sslmode %s needs server_tls_ca_file", sslmode_name(mode));
			goto fail;
		}
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
			ssl_err(err, errlen, "cannot load CA file", ca);
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		/* require/prefer/allow: encryption without authentication, as libpq does. */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}
