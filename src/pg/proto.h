/* proto.h - PostgreSQL protocol v3 as pure functions on byte buffers: framing,
 * bounds-checked readers, builders with a sticky failure bit, the startup packet
 * and ErrorResponse fields.  Nothing here knows about sockets, so all of it can be
 * unit-tested on partial input and fuzzed. */
#ifndef PGMEDIC_PROTO_H
#define PGMEDIC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PG_PROTOCOL_V3        0x00030000u
#define PG_CANCEL_REQUEST     80877102u
#define PG_SSL_REQUEST        80877103u
#define PG_GSSENC_REQUEST     80877104u
#define PG_MAX_STARTUP_LEN    10000u      /* PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define PG_MAX_MSG_LEN        0x3fffffffu /* PostgreSQL's PQ_LARGE_MESSAGE_LIMIT */
#define PG_MAX_STARTUP_PARAMS 64

/* Authentication request codes (message 'R'). */
enum pg_auth_code {
	PG_AUTH_OK = 0,
	PG_AUTH_CLEARTEXT = 3,
	PG_AUTH_MD5 = 5,
	PG_AUTH_SASL = 10,
	PG_AUTH_SASL_CONTINUE = 11,
	PG_AUTH_SASL_FINAL = 12,
};

/* Result of a framing function: bytes needed is reported through an out value. */
enum pg_frame {
	PG_FRAME_OK = 1,
	PG_FRAME_NEED_MORE = 0,
	PG_FRAME_BAD = -1,
};

/* The untyped startup-phase packet: int32 length (counting itself) then body. */
enum pg_frame pg_frame_startup(const uint8_t *buf, size_t avail, uint32_t *len);

/* ---- readers: a copied cursor; any overrun sets err and returns zero/NULL ---- */
struct pg_reader {
	const uint8_t *p, *end;
	bool err;
};
static inline void pgr_init(struct pg_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->end = len ? p + len : p; /* an empty pg_buf has data == NULL; NULL + 0 is UB */
	r->err = false;
}
static inline size_t pgr_left(const struct pg_reader *r) { return (size_t)(r->end - r->p); }
uint8_t pgr_u8(struct pg_reader *r);
uint16_t pgr_u16(struct pg_reader *r);
uint32_t pgr_u32(struct pg_reader *r);
/* NUL-terminated string inside the buffer; returns pointer (into the buffer) or NULL. */
const char *pgr_cstr(struct pg_reader *r, size_t *len_out);
const uint8_t *pgr_bytes(struct pg_reader *r, size_t n);

static inline uint32_t pg_get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* A regular message header: type byte + int32 length (which counts itself).
 * On PG_FRAME_OK, *type and *len (the int32, >= 4) are set.  Never reads past avail.
 * Inline: it runs once per message in both directions. */
static inline enum pg_frame pg_frame_header(const uint8_t *buf, size_t avail, uint8_t *type, uint32_t *len)
{
	if (avail < 5)
		return PG_FRAME_NEED_MORE;
	uint32_t l = pg_get_u32(buf + 1);
	/* A length under 4 cannot even cover itself; over 1 GiB PostgreSQL refuses too. */
	if (l < 4 || l > PG_MAX_MSG_LEN)
		return PG_FRAME_BAD;
	*type = buf[0];
	*len = l;
	return PG_FRAME_OK;
}

static inline void pg_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- startup packet ---- */
struct pg_param {
	const char *name, *value; /* point into the parsed packet */
};
struct pg_startup {
	uint32_t code;             /* PG_PROTOCOL_V3, PG_SSL_REQUEST, PG_CANCEL_REQUEST, ... */
	uint32_t cancel_pid, cancel_key;
	const char *user, *database, *options, *replication;
	struct pg_param params[PG_MAX_STARTUP_PARAMS];
	size_t nparams;
	/* Protocol options (_pq_.*) the client asked for; none is supported, and a
	 * minor version above 0 or any of these calls for NegotiateProtocolVersion. */
	const char *pq_options[8];
	size_t npq_options;
};
/* NegotiateProtocolVersion ('v'): we speak 3.0 and none of the requested options. */
struct pg_buf;
void pgb_negotiate_version(struct pg_buf *b, const struct pg_startup *st);
/* pkt points at a whole startup packet (including its length word).  Returns 0 or
 * -1 with a message in err suitable for an ErrorResponse. */
int pg_parse_startup(const uint8_t *pkt, size_t len, struct pg_startup *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* ---- ErrorResponse / NoticeResponse ---- */
struct pg_error_fields {
	const char *severity, *sqlstate, *message, *detail, *hint;
};
/* body: message bytes after the length word.  0 or -1. */
int pg_parse_error(const uint8_t *body, size_t len, struct pg_error_fields *out);

/* ---- builder with a sticky failure bit (write many fields, check once) ---- */
struct pg_buf {
	uint8_t *data;
	size_t len, cap;
	size_t msg_start;    /* offset of the open message's type byte */
	size_t max;          /* growth limit; 0 = 64 MiB */
	bool failed;
};
void pgb_init(struct pg_buf *b);
void pgb_free(struct pg_buf *b);
static inline void pgb_reset(struct pg_buf *b)
{
	b->len = 0;
	b->failed = false;
}
void pgb_reserve(struct pg_buf *b, size_t extra);
void pgb_raw(struct pg_buf *b, const void *p, size_t n);
void pgb_u8(struct pg_buf *b, uint8_t v);
void pgb_u16(struct pg_buf *b, uint16_t v);
void pgb_u32(struct pg_buf *b, uint32_t v);
void pgb_str(struct pg_buf *b, const char *s); /* with its NUL */
/* type 0 starts an untyped (startup-phase) packet. */
void pgb_begin(struct pg_buf *b, uint8_t type);
void pgb_end(struct pg_buf *b);

/* Whole-message helpers. */
void pgb_error(struct pg_buf *b, const char *severity, const char *sqlstate, const char *msg);
void pgb_auth(struct pg_buf *b, uint32_t code, const void *data, size_t len);
void pgb_param_status(struct pg_buf *b, const char *name, const char *value);
void pgb_backend_key(struct pg_buf *b, uint32_t pid, uint32_t key);
void pgb_ready(struct pg_buf *b, char status);
void pgb_query(struct pg_buf *b, const char *sql);
void pgb_terminate(struct pg_buf *b);
void pgb_password(struct pg_buf *b, const char *pw);
void pgb_sasl_initial(struct pg_buf *b, const char *mech, const void *data, size_t len);
void pgb_sasl_response(struct pg_buf *b, const void *data, size_t len);
void pgb_ssl_request(struct pg_buf *b);
void pgb_cancel_request(struct pg_buf *b, uint32_t pid, uint32_t key);
/* StartupMessage v3 with NULL-terminated name/value pairs array. */
void pgb_startup(struct pg_buf *b, const char *const *names, const char *const *values, size_t n);

/* Does a ParameterStatus name belong to the set pgmedic keeps equal between a client
 * and the server connection it is given? Returns index 0..PG_TRACKED_PARAMS-1 or -1. */
#define PG_TRACKED_PARAMS 6
extern const char *const pg_tracked_param_names[PG_TRACKED_PARAMS];
int pg_tracked_param_index(const char *name);

/* Quote a value as an SQL literal ('...' with '' doubling) into out; -1 if too small. */
int pg_quote_literal(const char *in, char *out, size_t outlen);

#endif
