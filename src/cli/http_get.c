/* http_get.c - the CLI's HTTP/1.1 GET client: http://host:port/path only,
 * "Connection: close", body delimited by Content-Length or EOF.  Blocking
 * sockets with poll() timeouts; chunked transfer encoding is refused clearly
 * (pgmedic's endpoint never sends it to an HTTP/1.1 GET with Connection: close). */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"

#define CONNECT_TIMEOUT_MS 5000
/* Longest silence tolerated while sending or receiving; a large snapshot may take
 * longer than this in total, which is fine as long as bytes keep coming. */
#define IO_TIMEOUT_MS 10000
#define MAX_RESPONSE (512u * 1024 * 1024)

int cli_url_parse(const char *url, struct cli_url *u, char *err, size_t errlen)
{
	const char *p = url;
	memset(u, 0, sizeof(*u));
	if (strncasecmp(p, "http://", 7) == 0) {
		p += 7;
	} else if (strstr(p, "://")) {
		snprintf(err, errlen, "unsupported URL '%s': only http:// is supported", url);
		return -1;
	}
	const char *host = p, *host_end;
	if (*p == '[') {
		host = p + 1;
		host_end = strchr(host, ']');
		if (!host_end) {
			snprintf(err, errlen, "invalid URL '%s': missing ']'", url);
			return -1;
		}
		p = host_end + 1;
	} else {
		host_end = p + strcspn(p, ":/?#");
		p = host_end;
	}
	size_t hlen = (size_t)(host_end - host);
	if (hlen == 0 || hlen >= sizeof(u->host)) {
		snprintf(err, errlen, "invalid URL '%s': %s host", url, hlen ? "overlong" : "no");
		return -1;
	}
	memcpy(u->host, host, hlen);
	strcpy(u->port, "80");
	if (*p == ':') {
		p++;
		size_t n = strspn(p, "0123456789");
		long port = n && n < 6 ? strtol(p, NULL, 10) : 0;
		if (port < 1 || port > 65535) {
			snprintf(err, errlen, "invalid URL '%s': bad port", url);
			return -1;
		}
		snprintf(u->port, sizeof(u->port), "%ld", port);
		p += n;
	}
	if (*p && *p != '/') {
		snprintf(err, errlen, "invalid URL '%s': expected http://HOST:PORT[/PATH]", url);
		return -1;
	}
	size_t blen = strcspn(p, "?#");
	while (blen > 0 && p[blen - 1] == '/')
		blen--;
	if (blen >= sizeof(u->base)) {
		snprintf(err, errlen, "invalid URL '%s': overlong path", url);
		return -1;
	}
	memcpy(u->base, p, blen);
	return 0;
}

static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	for (;;) {
		int n = poll(&pfd, 1, timeout_ms);
		if (n < 0 && errno == EINTR)
			continue;
		return n; /* 1 ready, 0 timed out, -1 error */
	}
}

/* One connected socket to u, or -1 with err naming the last address tried. */
static int connect_to(const struct cli_url *u, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(u->host, u->port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
			continue;
		}
		int e = 0;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			e = errno;
			if (e == EINPROGRESS) {
				int n = wait_fd(fd, POLLOUT, CONNECT_TIMEOUT_MS);
				socklen_t sl = sizeof(e);
				if (n == 0)
					e = ETIMEDOUT;
				else if (n < 0)
					e = errno;
				else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0)
					e = errno;
			}
		}
		if (e == 0)
			break;
		if (e == ETIMEDOUT)
			snprintf(err, errlen, "cannot connect to %s:%s: timed out after %d s", u->host, u->port,
				 CONNECT_TIMEOUT_MS / 1000);
		else
			snprintf(err, errlen, "cannot connect to %s:%s: %s", u->host, u->port, strerror(e));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int send_all(int fd, const char *buf, size_t len, const struct cli_url *u, char *err, size_t errlen)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, IO_TIMEOUT_MS) > 0)
				continue;
			snprintf(err, errlen, "timed out sending the request to %s:%s", u->host, u->port);
			return -1;
		}
		snprintf(err, errlen, "cannot send the request to %s:%s: %s", u->host, u->port, strerror(errno));
		return -1;
	}
	return 0;
}

/* Where the header block ends (index of the first body byte), or 0 if not yet. */
static size_t header_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* The value of header `name` in the header block [hdr, hdr+len) copied to out, or false. */
static bool find_header(const char *hdr, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *end = hdr + len;
	const char *line = memchr(hdr, '\n', len); /* skip the status line */
	while (line && line < end) {
		line++;
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			eol = end;
		if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t vl = (size_t)(ve - v);
			if (vl >= outlen)
				vl = outlen - 1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			return true;
		}
		line = eol;
	}
	return false;
}

int cli_http_get(const struct cli_url *u, const char *path, char **body, size_t *len, char *err, size_t errlen)
{
	*body = NULL;
	*len = 0;
	char *req = NULL, *buf = NULL;
	int ret = -1;
	int fd = connect_to(u, err, errlen);
	if (fd < 0)
		return -1;
	bool v6 = strchr(u->host, ':') != NULL;
	if (asprintf(&req,
		     "GET %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: pgmedic/%s\r\n"
		     "Accept: application/json\r\nConnection: close\r\n\r\n",
		     u->base, path, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, PGMEDIC_VERSION) < 0) {
		req = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (send_all(fd, req, strlen(req), u, err, errlen) < 0)
		goto out;

	size_t cap = 64 * 1024, used = 0, hend = 0;
	long long want = -1; /* total bytes (headers + body) when Content-Length is known */
	buf = malloc(cap + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (;;) {
		if (want >= 0 && (long long)used >= want)
			break;
		if (used == cap) {
			if (cap >= MAX_RESPONSE) {
				snprintf(err, errlen, "response from %s:%s is larger than %u MiB", u->host, u->port,
					 MAX_RESPONSE >> 20);
				goto out;
			}
			char *nb = realloc(buf, cap * 2 + 1);
			if (!nb) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + used, cap - used, 0);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (wait_fd(fd, POLLIN, IO_TIMEOUT_MS) > 0)
					continue;
				snprintf(err, errlen, "timed out after %d s waiting for a response from %s:%s",
					 IO_TIMEOUT_MS / 1000, u->host, u->port);
				goto out;
			}
			snprintf(err, errlen, "cannot read the response from %s:%s: %s", u->host, u->port,
				 strerror(errno));
			goto out;
		}
		used += (size_t)n;
		if (!hend && (hend = header_end(buf, used)) != 0) {
			char v[64];
			if (find_header(buf, hend, "Transfer-Encoding", v, sizeof(v)) && strcasecmp(v, "identity") != 0) {
				snprintf(err, errlen, "%s:%s answered with Transfer-Encoding: %s, which this client does not support",
					 u->host, u->port, v);
				goto out;
			}
			if (find_header(buf, hend, "Content-Length", v, sizeof(v))) {
				char *e;
				errno = 0;
				long long cl = strtoll(v, &e, 10);
				if (errno || e == v || *e || cl < 0 || cl > (long long)MAX_RESPONSE) {
					snprintf(err, errlen, "invalid Content-Length '%s' from %s:%s", v, u->host, u->port);
					goto out;
				}
				want = (long long)hend + cl;
			}
		}
	}
	if (!hend) {
		snprintf(err, errlen, used ? "malformed HTTP response from %s:%s" : "%s:%s closed the connection without a response",
			 u->host, u->port);
		goto out;
	}
	if (want >= 0 && (long long)used < want) {
		snprintf(err, errlen, "connection to %s:%s closed after %zu of %lld body bytes", u->host, u->port,
			 used - hend, want - (long long)hend);
		goto out;
	}
	if (want >= 0)
		used = (size_t)want;
	buf[used] = '\0';

	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status < 100 || status > 999) {
		snprintf(err, errlen, "malformed HTTP status line from %s:%s", u->host, u->port);
		goto out;
	}
	if (status != 200) {
		const char *eol = buf + strcspn(buf, "\r\n");
		const char *b = buf + hend;
		snprintf(err, errlen, "GET %s%s answered '%.*s'%s%.200s", u->base, path, (int)(eol - buf), buf,
			 *b ? ": " : "", b);
		/* one line: a body with newlines would break the error message */
		for (char *c = err; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' ';
		for (size_t n = strlen(err); n > 0 && err[n - 1] == ' '; n--)
			err[n - 1] = '\0';
		goto out;
	}
	memmove(buf, buf + hend, used - hend + 1);
	*len = used - hend;
	*body = buf;
	buf = NULL;
	ret = 0;
out:
	free(req);
	free(buf);
	close(fd);
	return ret;
}

json_t *cli_get_json(const struct cli_url *u, const char *path, char *err, size_t errlen)
{
	char *body;
	size_t len;
	if (cli_http_get(u, path, &body, &len, err, errlen) < 0)
		return NULL;
	json_error_t je;
	json_t *doc = json_loadb(body, len, 0, &je);
	free(body);
	if (!doc) {
		snprintf(err, errlen, "invalid JSON from GET %s%s: line %d: %s", u->base, path, je.line, je.text);
		return NULL;
	}
	if (!json_is_object(doc)) {
		snprintf(err, errlen, "GET %s%s did not return a JSON object", u->base, path);
		json_decref(doc);
		return NULL;
	}
	return doc;
}
