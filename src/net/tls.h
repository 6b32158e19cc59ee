/* tls.h - OpenSSL contexts for both roles; TLS 1.2 or newer only. */
#ifndef PGMEDIC_TLS_H
#define PGMEDIC_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "core/config.h"

/* Towards clients: pgmedic presents cert/key; verify-ca/verify-full require a client
 * certificate signed by ca.  NULL with err on failure. */
SSL_CTX *tls_server_ctx_new(enum sslmode mode, const char *cert, const char *key, const char *ca,
			    char *err, size_t errlen);
/* Towards PostgreSQL: verify-ca/verify-full check the chain against ca (hostname
 * is checked per connection by conn_tls_begin).  Optional client cert/key. */
SSL_CTX *tls_client_ctx_new(enum sslmode mode, const char *cert, const char *key, const char *ca,
			    char *err, size_t errlen);

#endif
