/* cancel.c - forwarding a client's CancelRequest to the backend that runs its
 * query.  The client knows only the BackendKeyData pgmedic made up for it; the
 * real one belongs to whichever server connection the client is linked to now. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/shard.h"

struct cancel_job {
	int fd;
	struct event *ev;
	uint8_t pkt[16];
};

static void cancel_done(struct cancel_job *j)
{
	event_free(j->ev);
	close(j->fd);
	free(j);
}

static void cancel_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cancel_job *j = arg;
	if (what & EV_TIMEOUT) {
		log_warn("cancel request: timed out connecting to the server");
		cancel_done(j);
		return;
	}
	int err = 0;
	socklen_t el = sizeof(err);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err || send(fd, j->pkt, sizeof(j->pkt), MSG_NOSIGNAL) != (ssize_t)sizeof(j->pkt))
		log_warn("cancel request: could not send to the server: %s", strerror(err ? err : errno));
	cancel_done(j);
}

/* Finds the client with this made-up key on `owner` and where its query runs.
 * 0: found, with the address, the backend's key and the client's id in the outputs. */
static int find_target(struct proxy *owner, uint32_t pid, uint32_t key, struct sockaddr_storage *ss, socklen_t *sl,
		       uint32_t *be_pid, uint32_t *be_key, unsigned long long *cl_id)
{
	struct client *target = NULL;
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &owner->all_clients)
	{
		struct client *cl = list_entry(it, struct client, all_node);
		if (cl->cancel_pid == pid && cl->cancel_key == key) {
			target = cl;
			break;
		}
	}
	if (!target) {
		log_info("cancel request for an unknown client key: ignored");
		return -1;
	}
	struct server *sv = target->server;
	if (!sv || sv->state != SV_ACTIVE || !sv->backend_pid) {
		log_info("C-%llu: cancel request while no query is running: ignored", (unsigned long long)target->id);
		return -1;
	}
	struct pool *pool = sv->pool;
	if (pool_target_addr(pool, ss, sl) < 0) {
		log_warn("cancel request: cannot resolve %s", pool->host);
		return -1;
	}
	*be_pid = sv->backend_pid;
	*be_key = sv->backend_key;
	*cl_id = (unsigned long long)target->id;
	return 0;
}

void cancel_forward(struct proxy *p, uint32_t pid, uint32_t key)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	uint32_t be_pid, be_key;
	unsigned long long cl_id;
	int rc;
	if (shard_count() > 1) {
		/* The client may be on another shard: its index is the key's low byte. */
		struct proxy *owner = shard_at((int)(pid & 0xff));
		if (!owner) {
			log_info("cancel request for an unknown client key: ignored");
			return;
		}
		world_stop(p);
		rc = find_target(owner, pid, key, &ss, &sl, &be_pid, &be_key, &cl_id);
		world_resume(p);
	} else {
		rc = find_target(p, pid, key, &ss, &sl, &be_pid, &be_key, &cl_id);
	}
	if (rc < 0)
		return;
	struct cancel_job *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (j->fd < 0) {
		free(j);
		return;
	}
	pg_put_u32(j->pkt, 16);
	pg_put_u32(j->pkt + 4, PG_CANCEL_REQUEST);
	pg_put_u32(j->pkt + 8, be_pid);
	pg_put_u32(j->pkt + 12, be_key);
	if (connect(j->fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		log_warn("cancel request: connect failed: %s", strerror(errno));
		close(j->fd);
		free(j);
		return;
	}
	j->ev = event_new(p->base, j->fd, EV_WRITE, cancel_cb, j);
	struct timeval tv = {5, 0};
	if (!j->ev || event_add(j->ev, &tv) < 0) {
		if (j->ev)
			event_free(j->ev);
		close(j->fd);
		free(j);
		return;
	}
	log_info("C-%llu: forwarding cancel request to backend %u", cl_id, be_pid);
}
