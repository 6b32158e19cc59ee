/* conn.c - plain/TLS socket transport with in/out buffers (see conn.h). */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int set_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return 0;
}

int conn_init(struct conn *c, struct event_base *base, int fd, event_callback_fn cb, void *arg)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	pgb_init(&c->out);
	c->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, cb, arg);
	c->ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST, cb, arg);
	if (!c->ev_read || !c->ev_write) {
		if (c->ev_read)
			event_free(c->ev_read);
		if (c->ev_write)
			event_free(c->ev_write);
		c->ev_read = c->ev_write = NULL;
		return -1;
	}
	/* The input buffer comes from the free list on the first read (see conn_fill). */
	return 0;
}

int conn_rebase(struct conn *c, struct event_base *base)
{
	event_callback_fn cb = event_get_callback(c->ev_read);
	void *arg = event_get_callback_arg(c->ev_read);
	struct event *r = event_new(base, c->fd, EV_READ | EV_PERSIST, cb, arg);
	struct event *w = event_new(base, c->fd, EV_WRITE | EV_PERSIST, cb, arg);
	if (!r || !w) {
		if (r)
			event_free(r);
		if (w)
			event_free(w);
		return -1;
	}
	event_free(c->ev_read);
	event_free(c->ev_write);
	c->ev_read = r;
	c->ev_write = w;
	if (c->reading)
		event_add(r, NULL);
	if (c->writing)
		event_add(w, NULL);
	return 0;
}

void conn_unbind(struct conn *c)
{
	if (c->ev_read)
		event_free(c->ev_read);
	if (c->ev_write)
		event_free(c->ev_write);
	c->ev_read = c->ev_write = NULL;
	c->reading = c->writing = false;
}

int conn_bind(struct conn *c, struct event_base *base, event_callback_fn cb, void *arg)
{
	c->ev_read = event_new(base, c->fd, EV_READ | EV_PERSIST, cb, arg);
	c->ev_write = event_new(base, c->fd, EV_WRITE | EV_PERSIST, cb, arg);
	if (!c->ev_read || !c->ev_write) {
		conn_unbind(c);
		return -1;
	}
	return 0;
}

void conn_close(struct conn *c)
{
	if (c->ev_read) {
		event_free(c->ev_read);
		c->ev_read = NULL;
	}
	if (c->ev_write) {
		event_free(c->ev_write);
		c->ev_write = NULL;
	}
	if (c->ssl) {
		/* Best effort close_notify; never wait for the peer's. */
		if (!c->tls_handshaking)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->in_start = c->in_end = 0;
	conn_in_release(c);
	free(c->in); /* a grown buffer that was not empty */
	c->in = NULL;
	c->in_cap = 0;
	pgb_free(&c->out);
	c->out_off = 0;
	c->reading = c->writing = false;
}

void conn_want_read(struct conn *c, bool on)
{
	if (!c->ev_read || c->reading == on)
		return;
	if (on)
		event_add(c->ev_read, NULL);
	else
		event_del(c->ev_read);
	c->reading = on;
}

static void want_write(struct conn *c, bool on)
{
	if (!c->ev_write || c->writing == on)
		return;
	if (on)
		event_add(c->ev_write, NULL);
	else
		event_del(c->ev_write);
	c->writing = on;
}

/* Idle connections hold no input buffer: 10,000 idle clients would otherwise pin
 * 160 MB.  Default-size buffers cycle through a small free list. */
#define IN_FREELIST_MAX 256
static __thread uint8_t *in_freelist[IN_FREELIST_MAX]; /* per event loop */
static __thread size_t in_nfree;

void conn_thread_exit(void)
{
	while (in_nfree)
		free(in_freelist[--in_nfree]);
}

static int in_acquire(struct conn *c)
{
	if (c->in)
		return 0;
	c->in = in_nfree ? in_freelist[--in_nfree] : malloc(CONN_IN_DEFAULT);
	if (!c->in)
		return -1;
	c->in_cap = CONN_IN_DEFAULT;
	c->in_start = c->in_end = 0;
	return 0;
}

void conn_in_release(struct conn *c)
{
	if (!c->in || c->in_start != c->in_end)
		return;
	if (c->in_cap == CONN_IN_DEFAULT && in_nfree < IN_FREELIST_MAX)
		in_freelist[in_nfree++] = c->in;
	else
		free(c->in);
	c->in = NULL;
	c->in_cap = c->in_start = c->in_end = 0;
}

int conn_in_prepend(struct conn *c, const uint8_t *p, size_t n, size_t max)
{
	size_t have = conn_in_avail(c);
	if (conn_in_reserve(c, have + n, max) < 0)
		return -1;
	memmove(c->in + c->in_start + n, c->in + c->in_start, have);
	memcpy(c->in + c->in_start, p, n);
	c->in_end = c->in_start + have + n;
	return 0;
}

int conn_in_reserve(struct conn *c, size_t need, size_t max)
{
	if (in_acquire(c) < 0)
		return -1;
	if (c->in_cap - c->in_start >= need)
		return 0;
	size_t have = conn_in_avail(c);
	if (need <= c->in_cap) {
		memmove(c->in, c->in + c->in_start, have);
		c->in_start = 0;
		c->in_end = have;
		return 0;
	}
	if (need > max)
		return -1;
	size_t ncap = c->in_cap;
	while (ncap < need)
		ncap *= 2;
	if (ncap > max)
		ncap = max;
	uint8_t *n = malloc(ncap);
	if (!n)
		return -1;
	memcpy(n, c->in + c->in_start, have);
	free(c->in);
	c->in = n;
	c->in_cap = ncap;
	c->in_start = 0;
	c->in_end = have;
	return 0;
}

static void set_ssl_error(struct conn *c, const char *what, int sslerr)
{
	unsigned long e = ERR_get_error();
	if (e) {
		char buf[120];
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(c->error, sizeof(c->error), "%s: %s", what, buf);
	} else if (sslerr == SSL_ERROR_SYSCALL) {
		snprintf(c->error, sizeof(c->error), "%s: %s", what, errno ? strerror(errno) : "unexpected EOF");
	} else {
		snprintf(c->error, sizeof(c->error), "%s: TLS error %d", what, sslerr);
	}
	ERR_clear_error();
}

enum conn_io conn_fill(struct conn *c)
{
	if (in_acquire(c) < 0) {
		snprintf(c->error, sizeof(c->error), "out of memory for an input buffer");
		return CONN_IO_ERROR;
	}
	/* Keep the free space at the tail; compact when the consumed head is large. */
	if (c->in_end == c->in_cap) {
		if (c->in_start == 0)
			return CONN_IO_OK; /* full: the owner must consume first */
		memmove(c->in, c->in + c->in_start, conn_in_avail(c));
		c->in_end -= c->in_start;
		c->in_start = 0;
	}
	size_t room = c->in_cap - c->in_end;
	if (!c->ssl) {
		ssize_t n = recv(c->fd, c->in + c->in_end, room, 0);
		if (n > 0) {
			c->in_end += (size_t)n;
			c->got_input = true;
			return CONN_IO_OK;
		}
		if (n == 0)
			return CONN_IO_EOF;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return CONN_IO_AGAIN;
		snprintf(c->error, sizeof(c->error), "read: %s", strerror(errno));
		return CONN_IO_ERROR;
	}
	size_t total = 0;
	c->read_wants_write = false;
	while (room > 0) {
		ERR_clear_error();
		int n = SSL_read(c->ssl, c->in + c->in_end, room > 0x7fffffff ? 0x7fffffff : (int)room);
		if (n > 0) {
			c->in_end += (size_t)n;
			room -= (size_t)n;
			total += (size_t)n;
			c->got_input = true;
			continue;
		}
		int err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_READ)
			break;
		if (err == SSL_ERROR_WANT_WRITE) {
			c->read_wants_write = true;
			want_write(c, true);
			break;
		}
		if (err == SSL_ERROR_ZERO_RETURN)
			return total ? CONN_IO_OK : CONN_IO_EOF;
		if (total)
			return CONN_IO_OK; /* report the error on the next call */
		set_ssl_error(c, "TLS read", err);
		if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
			return CONN_IO_EOF;
		return CONN_IO_ERROR;
	}
	return total ? CONN_IO_OK : CONN_IO_AGAIN;
}

bool conn_tls_pending(const struct conn *c)
{
	return c->ssl && !c->tls_handshaking && SSL_pending(c->ssl) > 0;
}

/* Returns bytes written (>= 0) or -1 on error (c->error set). */
static ssize_t raw_write(struct conn *c, const uint8_t *p, size_t n)
{
	if (!c->ssl) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w >= 0)
			return w;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		snprintf(c->error, sizeof(c->error), "write: %s", strerror(errno));
		return -1;
	}
	size_t done = 0;
	while (done < n) {
		size_t chunk = n - done;
		ERR_clear_error();
		int w = SSL_write(c->ssl, p + done, chunk > 0x7fffffff ? 0x7fffffff : (int)chunk);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		int err = SSL_get_error(c->ssl, w);
		if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
			break;
		set_ssl_error(c, "TLS write", err);
		return -1;
	}
	return (ssize_t)done;
}

enum conn_io conn_flush(struct conn *c)
{
	size_t pend = conn_out_pending(c);
	if (pend == 0) {
		want_write(c, c->read_wants_write);
		return CONN_IO_OK;
	}
	ssize_t w = raw_write(c, c->out.data + c->out_off, pend);
	if (w < 0)
		return CONN_IO_ERROR;
	c->out_off += (size_t)w;
	if (c->out_off == c->out.len) {
		pgb_reset(&c->out);
		c->out_off = 0;
		/* Give back large buffers (a big COPY or result) once drained. */
		if (c->out.cap > 4 * CONN_OUT_HIGH)
			pgb_free(&c->out);
		want_write(c, c->read_wants_write);
		return CONN_IO_OK;
	}
	want_write(c, true);
	return CONN_IO_AGAIN;
}

enum conn_io conn_send(struct conn *c, const void *p, size_t n)
{
	if (c->fd < 0)
		return CONN_IO_ERROR;
	if (n == 0)
		return CONN_IO_OK;
	size_t done = 0;
	if (conn_out_pending(c) == 0 && !c->tls_handshaking) {
		ssize_t w = raw_write(c, p, n);
		if (w < 0)
			return CONN_IO_ERROR;
		done = (size_t)w;
		if (done == n)
			return CONN_IO_OK;
	}
	if (c->out_off > 0 && c->out_off == c->out.len) {
		pgb_reset(&c->out);
		c->out_off = 0;
	}
	/* Compact before growing: most of a drained buffer may be reusable. */
	if (c->out_off > 0 && c->out_off >= c->out.len / 2) {
		memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
		c->out.len -= c->out_off;
		c->out_off = 0;
	}
	c->out.max = (size_t)1 << 30;
	pgb_raw(&c->out, (const uint8_t *)p + done, n - done);
	if (c->out.failed) {
		snprintf(c->error, sizeof(c->error), "out of memory buffering output");
		return CONN_IO_ERROR;
	}
	if (!c->tls_handshaking)
		want_write(c, true);
	return CONN_IO_AGAIN;
}

int conn_tls_begin(struct conn *c, SSL_CTX *ctx, bool server_side, const char *hostname, bool verify_host)
{
	c->ssl = SSL_new(ctx);
	if (!c->ssl)
		return -1;
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_set_fd(c->ssl, c->fd) != 1)
		return -1;
	if (server_side) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		if (hostname && hostname[0] && hostname[0] != '/') {
			unsigned char tmp[16];
			bool is_ip = inet_pton(AF_INET, hostname, tmp) == 1 || inet_pton(AF_INET6, hostname, tmp) == 1;
			if (!is_ip)
				SSL_set_tlsext_host_name(c->ssl, hostname);
			if (verify_host) {
				X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
				int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, hostname)
					       : X509_VERIFY_PARAM_set1_host(vp, hostname, 0);
				if (ok != 1)
					return -1;
			}
		}
	}
	c->tls_handshaking = true;
	return 0;
}

enum conn_io conn_tls_handshake(struct conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls_handshaking = false;
		want_write(c, conn_out_pending(c) > 0);
		return CONN_IO_OK;
	}
	int err = SSL_get_error(c->ssl, r);
	if (err == SSL_ERROR_WANT_READ) {
		conn_want_read(c, true);
		want_write(c, false);
		return CONN_IO_AGAIN;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		want_write(c, true);
		return CONN_IO_AGAIN;
	}
	long vr = SSL_get_verify_result(c->ssl);
	if (vr != X509_V_OK) {
		snprintf(c->error, sizeof(c->error), "TLS handshake: certificate verify failed: %s",
			 X509_verify_cert_error_string(vr));
		ERR_clear_error();
	} else {
		set_ssl_error(c, "TLS handshake", err);
	}
	return CONN_IO_ERROR;
}
