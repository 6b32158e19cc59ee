/* conn.h - one socket, plain or TLS, behind a single read/write interface, with an
 * input buffer the protocol layer parses in place and an output buffer that only
 * holds what the kernel would not take yet.  Owners (client, server) get a single
 * event callback; the return contract of every I/O call is enum conn_io. */
#ifndef PGMEDIC_CONN_H
#define PGMEDIC_CONN_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pg/proto.h"

enum conn_io {
	CONN_IO_OK = 0,     /* progress made */
	CONN_IO_AGAIN = 1,  /* would block; the right event is armed */
	CONN_IO_EOF = 2,    /* peer closed */
	CONN_IO_ERROR = 3,  /* socket or TLS error; c->error says why */
};

#define CONN_IN_DEFAULT   16384
#define CONN_OUT_HIGH     (256 * 1024) /* stop reading the peer above this much pending output */

struct conn {
	/* Every read and write touches these (about 120 bytes), so they come first. */
	int fd;
	bool tls_handshaking;
	bool reading, writing;     /* which events are armed */
	bool read_wants_write;     /* TLS: SSL_read asked for writability */
	SSL *ssl;
	struct event *ev_read, *ev_write;
	uint8_t *in;
	size_t in_cap, in_start, in_end;
	struct pg_buf out;
	size_t out_off;            /* bytes of out already written */
	bool got_input;            /* a byte was ever read (port probes close quietly) */
	char error[160];
};

/* Sets up events (not armed) for fd, which must already be non-blocking. 0 or -1. */
int conn_init(struct conn *c, struct event_base *base, int fd, event_callback_fn cb, void *arg)
	__attribute__((warn_unused_result));
void conn_close(struct conn *c);
/* Moves the connection's events to another event base (whose loop is stopped or is
 * the caller's); armed events stay armed. 0 or -1. */
int conn_rebase(struct conn *c, struct event_base *base) __attribute__((warn_unused_result));
/* A connection handed to another event loop: its events go (unbind, on the old
 * loop) and are made again on the new one (bind, disarmed; 0 or -1). */
void conn_unbind(struct conn *c);
int conn_bind(struct conn *c, struct event_base *base, event_callback_fn cb, void *arg)
	__attribute__((warn_unused_result));
/* Frees this thread's cache of input buffers (an event loop's thread ends). */
void conn_thread_exit(void);
void conn_want_read(struct conn *c, bool on);

static inline size_t conn_in_avail(const struct conn *c) { return c->in_end - c->in_start; }
static inline const uint8_t *conn_in_data(const struct conn *c)
{
	return c->in ? c->in + c->in_start : (const uint8_t *)"";
}
static inline void conn_in_consume(struct conn *c, size_t n)
{
	c->in_start += n;
	if (c->in_start == c->in_end)
		c->in_start = c->in_end = 0;
}
static inline size_t conn_out_pending(const struct conn *c) { return c->out.len - c->out_off; }
/* Puts n bytes back in front of the unread input (a request pgmedic replays). */
int conn_in_prepend(struct conn *c, const uint8_t *p, size_t n, size_t max) __attribute__((warn_unused_result));
/* Gives an empty input buffer back (idle connections hold none). */
void conn_in_release(struct conn *c);
/* Makes room for `need` contiguous bytes from in_start (moving or growing up to max). 0 or -1. */
int conn_in_reserve(struct conn *c, size_t need, size_t max) __attribute__((warn_unused_result));

/* One read into the input buffer (TLS: drains what OpenSSL has decrypted). */
enum conn_io conn_fill(struct conn *c);
/* Writes now what the kernel takes, keeps the rest, arms the write event. */
enum conn_io conn_send(struct conn *c, const void *p, size_t n);
enum conn_io conn_flush(struct conn *c);
/* TLS only: decrypted bytes waiting inside OpenSSL (no socket event will announce them). */
bool conn_tls_pending(const struct conn *c);

/* TLS handshake driving.  conn_tls_begin attaches an SSL in accept or connect mode
 * (hostname: for SNI and, with verify_host, the certificate check). */
int conn_tls_begin(struct conn *c, SSL_CTX *ctx, bool server_side, const char *hostname,
		   bool verify_host) __attribute__((warn_unused_result));
enum conn_io conn_tls_handshake(struct conn *c);

int set_nonblocking(int fd);

#endif
