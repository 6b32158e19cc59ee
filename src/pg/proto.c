/* proto.c - protocol v3 framing, readers and builders (pure, no I/O). */
#include "pg/proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum pg_frame pg_frame_startup(const uint8_t *buf, size_t avail, uint32_t *len)
{
	if (avail < 4)
		return PG_FRAME_NEED_MORE;
	uint32_t l = pg_get_u32(buf);
	if (l < 8 || l > PG_MAX_STARTUP_LEN)
		return PG_FRAME_BAD;
	*len = l;
	return PG_FRAME_OK;
}

uint8_t pgr_u8(struct pg_reader *r)
{
	if (r->err || pgr_left(r) < 1) {
		r->err = true;
		return 0;
	}
	return *r->p++;
}

uint16_t pgr_u16(struct pg_reader *r)
{
	if (r->err || pgr_left(r) < 2) {
		r->err = true;
		return 0;
	}
	uint16_t v = (uint16_t)((r->p[0] << 8) | r->p[1]);
	r->p += 2;
	return v;
}

uint32_t pgr_u32(struct pg_reader *r)
{
	if (r->err || pgr_left(r) < 4) {
		r->err = true;
		return 0;
	}
	uint32_t v = pg_get_u32(r->p);
	r->p += 4;
	return v;
}

const char *pgr_cstr(struct pg_reader *r, size_t *len_out)
{
	/* An empty reader may hold p == NULL: memchr(NULL, 0, 0) is UB. */
	if (r->err || r->p == r->end) {
		r->err = true;
		return NULL;
	}
	const uint8_t *nul = memchr(r->p, 0, pgr_left(r));
	if (!nul) {
		r->err = true;
		return NULL;
	}
	const char *s = (const char *)r->p;
	if (len_out)
		*len_out = (size_t)(nul - r->p);
	r->p = nul + 1;
	return s;
}

const uint8_t *pgr_bytes(struct pg_reader *r, size_t n)
{
	if (r->err || pgr_left(r) < n) {
		r->err = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	return p;
}

int pg_parse_startup(const uint8_t *pkt, size_t len, struct pg_startup *out, char *err, size_t errlen)
{
	struct pg_reader r;
	memset(out, 0, sizeof(*out));
	if (len < 8) {
		snprintf(err, errlen, "invalid length of startup packet");
		return -1;
	}
	pgr_init(&r, pkt, len);
	uint32_t plen = pgr_u32(&r);
	if (plen != len) {
		snprintf(err, errlen, "invalid length of startup packet");
		return -1;
	}
	out->code = pgr_u32(&r);
	switch (out->code) {
	case PG_SSL_REQUEST:
	case PG_GSSENC_REQUEST:
		if (len != 8) {
			snprintf(err, errlen, "invalid length of encryption request packet");
			return -1;
		}
		return 0;
	case PG_CANCEL_REQUEST:
		if (len != 16) {
			snprintf(err, errlen, "invalid length of cancel request packet");
			return -1;
		}
		out->cancel_pid = pgr_u32(&r);
		out->cancel_key = pgr_u32(&r);
		return 0;
	default:
		break;
	}
	if ((out->code >> 16) != 3) {
		snprintf(err, errlen, "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
			 out->code >> 16, out->code & 0xffff);
		return -1;
	}
	for (;;) {
		const char *name = pgr_cstr(&r, NULL);
		if (!name) {
			snprintf(err, errlen, "invalid startup packet layout: expected terminator as last byte");
			return -1;
		}
		if (name[0] == '\0')
			break;
		const char *value = pgr_cstr(&r, NULL);
		if (!value) {
			snprintf(err, errlen, "invalid startup packet layout: expected terminator as last byte");
			return -1;
		}
		if (strcmp(name, "user") == 0)
			out->user = value;
		else if (strcmp(name, "database") == 0)
			out->database = value;
		else if (strcmp(name, "options") == 0)
			out->options = value;
		else if (strcmp(name, "replication") == 0)
			out->replication = value;
		else if (strncmp(name, "_pq_.", 5) == 0) {
			/* Protocol options: none supported; listed back in NegotiateProtocolVersion. */
			if (out->npq_options < sizeof(out->pq_options) / sizeof(out->pq_options[0]))
				out->pq_options[out->npq_options++] = name;
			continue;
		}
		else {
			if (out->nparams >= PG_MAX_STARTUP_PARAMS) {
				snprintf(err, errlen, "too many startup parameters");
				return -1;
			}
			out->params[out->nparams].name = name;
			out->params[out->nparams].value = value;
			out->nparams++;
		}
	}
	if (pgr_left(&r) != 0) {
		snprintf(err, errlen, "invalid startup packet layout: expected terminator as last byte");
		return -1;
	}
	if (!out->user || !out->user[0]) {
		snprintf(err, errlen, "no PostgreSQL user name specified in startup packet");
		return -1;
	}
	if (!out->database || !out->database[0])
		out->database = out->user;
	return 0;
}

int pg_parse_error(const uint8_t *body, size_t len, struct pg_error_fields *out)
{
	struct pg_reader r;
	memset(out, 0, sizeof(*out));
	pgr_init(&r, body, len);
	for (;;) {
		uint8_t code = pgr_u8(&r);
		if (r.err)
			return -1;
		if (code == 0)
			break;
		const char *v = pgr_cstr(&r, NULL);
		if (!v)
			return -1;
		switch (code) {
		case 'V': out->severity = v; break;
		case 'S': if (!out->severity) out->severity = v; break;
		case 'C': out->sqlstate = v; break;
		case 'M': out->message = v; break;
		case 'D': out->detail = v; break;
		case 'H': out->hint = v; break;
		default: break;
		}
	}
	return 0;
}

/* ---- builder ---- */

void pgb_init(struct pg_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void pgb_free(struct pg_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void pgb_reserve(struct pg_buf *b, size_t extra)
{
	if (b->failed)
		return;
	size_t max = b->max ? b->max : ((size_t)64 << 20);
	if (extra > max || b->len > max - extra) {
		b->failed = true;
		return;
	}
	size_t need = b->len + extra;
	if (need <= b->cap)
		return;
	size_t ncap = b->cap ? b->cap : 256;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2) {
			ncap = need;
			break;
		}
		ncap *= 2;
	}
	uint8_t *nd = realloc(b->data, ncap);
	if (!nd) {
		b->failed = true;
		return;
	}
	b->data = nd;
	b->cap = ncap;
}

void pgb_raw(struct pg_buf *b, const void *p, size_t n)
{
	pgb_reserve(b, n);
	if (b->failed || n == 0)
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void pgb_u8(struct pg_buf *b, uint8_t v) { pgb_raw(b, &v, 1); }

void pgb_u16(struct pg_buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	pgb_raw(b, x, 2);
}

void pgb_u32(struct pg_buf *b, uint32_t v)
{
	uint8_t x[4];
	pg_put_u32(x, v);
	pgb_raw(b, x, 4);
}

void pgb_str(struct pg_buf *b, const char *s) { pgb_raw(b, s, strlen(s) + 1); }

void pgb_begin(struct pg_buf *b, uint8_t type)
{
	b->msg_start = b->len;
	if (type)
		pgb_u8(b, type);
	pgb_u32(b, 0);
}

void pgb_end(struct pg_buf *b)
{
	if (b->failed)
		return;
	uint8_t *start = b->data + b->msg_start;
	/* A typed message's length word follows its type byte; an untyped one starts with it. */
	size_t off = (start[0] == 0 && b->len - b->msg_start >= 4 && pg_get_u32(start) == 0) ? 0 : 1;
	pg_put_u32(start + off, (uint32_t)(b->len - b->msg_start - off));
}

void pgb_error(struct pg_buf *b, const char *severity, const char *sqlstate, const char *msg)
{
	pgb_begin(b, 'E');
	pgb_u8(b, 'S');
	pgb_str(b, severity);
	pgb_u8(b, 'V');
	pgb_str(b, severity);
	pgb_u8(b, 'C');
	pgb_str(b, sqlstate);
	pgb_u8(b, 'M');
	pgb_str(b, msg);
	pgb_u8(b, 0);
	pgb_end(b);
}

void pgb_auth(struct pg_buf *b, uint32_t code, const void *data, size_t len)
{
	pgb_begin(b, 'R');
	pgb_u32(b, code);
	pgb_raw(b, data, len);
	pgb_end(b);
}

void pgb_param_status(struct pg_buf *b, const char *name, const char *value)
{
	pgb_begin(b, 'S');
	pgb_str(b, name);
	pgb_str(b, value);
	pgb_end(b);
}

void pgb_backend_key(struct pg_buf *b, uint32_t pid, uint32_t key)
{
	pgb_begin(b, 'K');
	pgb_u32(b, pid);
	pgb_u32(b, key);
	pgb_end(b);
}

void pgb_ready(struct pg_buf *b, char status)
{
	pgb_begin(b, 'Z');
	pgb_u8(b, (uint8_t)status);
	pgb_end(b);
}

void pgb_query(struct pg_buf *b, const char *sql)
{
	pgb_begin(b, 'Q');
	pgb_str(b, sql);
	pgb_end(b);
}

void pgb_terminate(struct pg_buf *b)
{
	pgb_begin(b, 'X');
	pgb_end(b);
}

void pgb_password(struct pg_buf *b, const char *pw)
{
	pgb_begin(b, 'p');
	pgb_str(b, pw);
	pgb_end(b);
}

void pgb_sasl_initial(struct pg_buf *b, const char *mech, const void *data, size_t len)
{
	pgb_begin(b, 'p');
	pgb_str(b, mech);
	pgb_u32(b, (uint32_t)len);
	pgb_raw(b, data, len);
	pgb_end(b);
}

void pgb_sasl_response(struct pg_buf *b, const void *data, size_t len)
{
	pgb_begin(b, 'p');
	pgb_raw(b, data, len);
	pgb_end(b);
}

/* Untyped packets are written whole here: pgb_end's type detection is for typed ones. */
static void pgb_untyped(struct pg_buf *b, const uint8_t *body, size_t n)
{
	pgb_u32(b, (uint32_t)(n + 4));
	pgb_raw(b, body, n);
}

void pgb_ssl_request(struct pg_buf *b)
{
	uint8_t x[4];
	pg_put_u32(x, PG_SSL_REQUEST);
	pgb_untyped(b, x, 4);
}

void pgb_cancel_request(struct pg_buf *b, uint32_t pid, uint32_t key)
{
	uint8_t x[12];
	pg_put_u32(x, PG_CANCEL_REQUEST);
	pg_put_u32(x + 4, pid);
	pg_put_u32(x + 8, key);
	pgb_untyped(b, x, 12);
}

void pgb_startup(struct pg_buf *b, const char *const *names, const char *const *values, size_t n)
{
	size_t start = b->len;
	pgb_u32(b, 0);
	pgb_u32(b, PG_PROTOCOL_V3);
	for (size_t i = 0; i < n; i++) {
		if (!values[i])
			continue;
		pgb_str(b, names[i]);
		pgb_str(b, values[i]);
	}
	pgb_u8(b, 0);
	if (!b->failed)
		pg_put_u32(b->data + start, (uint32_t)(b->len - start));
}

void pgb_negotiate_version(struct pg_buf *b, const struct pg_startup *st)
{
	pgb_begin(b, 'v');
	pgb_u32(b, PG_PROTOCOL_V3);
	pgb_u32(b, (uint32_t)st->npq_options);
	for (size_t i = 0; i < st->npq_options; i++)
		pgb_str(b, st->pq_options[i]);
	pgb_end(b);
}

const char *const pg_tracked_param_names[PG_TRACKED_PARAMS] = {
	"client_encoding", "DateStyle", "TimeZone", "IntervalStyle",
	"standard_conforming_strings", "application_name",
};

int pg_tracked_param_index(const char *name)
{
	for (int i = 0; i < PG_TRACKED_PARAMS; i++)
		if (strcasecmp(name, pg_tracked_param_names[i]) == 0)
			return i;
	return -1;
}

int pg_quote_literal(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	bool backslash = strchr(in, '\\') != NULL;
	/* E'' form keeps the literal correct whatever standard_conforming_strings is. */
	if (backslash) {
		if (o + 1 >= outlen)
			return -1;
		out[o++] = 'E';
	}
	if (o + 1 >= outlen)
		return -1;
	out[o++] = '\'';
	for (const char *p = in; *p; p++) {
		int dbl = (*p == '\'' || (backslash && *p == '\\'));
		if (o + 2 + (size_t)dbl >= outlen)
			return -1;
		if (dbl)
			out[o++] = *p;
		out[o++] = *p;
	}
	if (o + 2 > outlen)
		return -1;
	out[o++] = '\'';
	out[o] = '\0';
	return (int)o;
}
