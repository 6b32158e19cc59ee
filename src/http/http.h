/* http.h - the HTTP endpoint (--http): /metrics in Prometheus text format, /health
 * and the JSON API (api.c). */
#ifndef PGMEDIC_HTTP_H
#define PGMEDIC_HTTP_H

#include <stddef.h>

struct proxy;
struct evbuffer;

/* Binds host:port on the proxy's event base. 0, or -1 with err. */
int http_start(struct proxy *p, const char *host, int port, char *err, size_t errlen)
	__attribute__((warn_unused_result));
void http_stop(struct proxy *p);
/* Renders every metric into buf (pure: reads proxy state only). */
void metrics_render(struct proxy *p, struct evbuffer *buf);
/* /api/...: answers req and returns true when path is an API path (api.c).  Takes
 * the profiler's lock (shard_prof_lock) itself, only while it reads the store. */
struct evhttp_request;
#include <stdbool.h>
bool api_handle(struct proxy *p, struct evhttp_request *req, const char *path);

#endif
