/* scram.h - SCRAM-SHA-256 (RFC 5802 / RFC 7677) as pure functions on strings,
 * both roles: pgmedic as the server towards clients, as the client towards
 * PostgreSQL.  No sockets.  Channel binding is not offered ("n,," / "y,,"
 * accepted, "p=" refused).  Passwords are used as bytes (no SASLprep). */
#ifndef PGMEDIC_SCRAM_H
#define PGMEDIC_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_MAX_SALT 64
#define SCRAM_NONCE_MAX 128
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_MAX_ITERATIONS 10000000 /* larger counts are refused: a peer could stall us */
#define SCRAM_USER_MAX 256            /* escaped username in client-first, NUL included */

struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>" -> 0, or -1 if malformed. */
int scram_secret_parse(const char *text, struct scram_secret *out) __attribute__((warn_unused_result));
/* Derives a secret from a password (salt random when salt == NULL: salt_len random
 * bytes, or 16 when salt_len is 0). iterations must be in 1..SCRAM_MAX_ITERATIONS.
 * 0 or -1. */
int scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
			       int iterations, struct scram_secret *out) __attribute__((warn_unused_result));
/* Writes the text form (NUL-terminated); returns its length or -1 if outlen is too
 * small or the secret is out of range.  All message writers below also NUL-terminate
 * and return the length without the NUL. */
int scram_secret_format(const struct scram_secret *s, char *out, size_t outlen);

/* ---- server role (authenticating a client) ---- */
struct scram_server {
	int state; /* 0 = expect client-first, 1 = expect client-final, 2 = done, -1 = failed */
	struct scram_secret secret;
	char nonce[2 * SCRAM_NONCE_MAX + 1];      /* client nonce + server nonce */
	char client_first_bare[512];
	char server_first[512];
	uint8_t client_key[SCRAM_KEY_LEN];        /* recovered from a valid proof */
	bool have_client_key;
	char gs2_flag;                            /* 'n' or 'y' as received: c= must echo it */
};
/* forced_server_nonce: NULL for random (tests pass RFC 7677's). */
void scram_server_init(struct scram_server *s, const struct scram_secret *secret,
		       const char *forced_server_nonce);
/* Consumes client-first-message, writes server-first-message; returns its length,
 * or -1 on a malformed message / unsupported channel binding. */
int scram_server_handle_first(struct scram_server *s, const char *msg, size_t len, char *out,
			      size_t outlen) __attribute__((warn_unused_result));
/* Consumes client-final-message, writes server-final-message ("v=..."); returns its
 * length, -1 on a malformed message, -2 when the proof is wrong (wrong password). */
int scram_server_handle_final(struct scram_server *s, const char *msg, size_t len, char *out,
			      size_t outlen) __attribute__((warn_unused_result));

/* ---- client role (authenticating to PostgreSQL) ---- */
struct scram_client {
	int state; /* 0 = initial, 1 = sent first, 2 = sent final, 3 = verified, -1 = failed */
	char password[256];           /* used when !use_keys */
	bool use_keys;                /* pass-through: ClientKey (+ ServerKey) known, no password */
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
	bool have_server_key;
	int key_iterations;            /* the salt/iterations the keys belong to: must match the server's */
	uint8_t key_salt[SCRAM_MAX_SALT];
	size_t key_salt_len;
	char client_nonce[SCRAM_NONCE_MAX + 1];
	char client_first_bare[512];
	uint8_t server_signature[SCRAM_KEY_LEN];
	char username[SCRAM_USER_MAX];  /* saslname-escaped; empty by default (PostgreSQL ignores it) */
};
/* From a plaintext password. forced_nonce: NULL for random. */
void scram_client_init_password(struct scram_client *c, const char *password, const char *forced_nonce);
/* Pass-through: keys recovered by scram_server from a client that authenticated against `secret`. */
void scram_client_init_keys(struct scram_client *c, const uint8_t client_key[SCRAM_KEY_LEN],
			    const struct scram_secret *secret, const char *forced_nonce);
/* Optional, before scram_client_first: the n= value (escaped as saslname).  PostgreSQL
 * ignores it; other servers (and RFC 7677's test vector) need it.  0 or -1 if too long. */
int scram_client_set_username(struct scram_client *c, const char *user) __attribute__((warn_unused_result));
/* Writes client-first-message ("n,,n=,r=..."); returns its length or -1. */
int scram_client_first(struct scram_client *c, char *out, size_t outlen) __attribute__((warn_unused_result));
/* Consumes server-first, writes client-final; returns length, -1 malformed,
 * -2 when pass-through keys do not match the server's salt/iterations. */
int scram_client_final(struct scram_client *c, const char *server_first, size_t len, char *out,
		       size_t outlen) __attribute__((warn_unused_result));
/* Consumes server-final; 0 when the server proved it knows the password, -1 otherwise.
 * In pass-through mode without a ServerKey the signature cannot be checked: returns 0. */
int scram_client_verify_final(struct scram_client *c, const char *server_final, size_t len)
	__attribute__((warn_unused_result));

#endif
