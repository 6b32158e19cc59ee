/* advisor.c - the advisor thread (see advisor.h).  One thread, one job at a time,
 * a connection per connection string kept open while jobs keep coming, closed
 * when the queue is empty.  Nothing here runs
 * on the event loop except the result callback's delivery (advisor_deliver). */
#include "insight/advisor.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define ADVISOR_MAX_JOBS 64
#define ADVISOR_MAX_CONNS 8

struct node {
	struct node *next;
	void *item;
};

struct conn_slot {
	char *conninfo;
	PGconn *pg;
};

struct advisor {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct node *jobs, *jobs_tail, *results, *results_tail;
	size_t njobs;
	bool running_job, stop;
	int efd;
	struct event *ev;
	advisor_cb cb;
	void *arg;
	struct conn_slot conns[ADVISOR_MAX_CONNS]; /* thread-only */
};

void advisor_job_free(struct advisor_job *job)
{
	if (!job)
		return;
	free(job->conninfo);
	free(job->db);
	free(job->sql);
	if (job->models)
		json_decref(job->models);
	free(job);
}

static void result_free(struct advisor_result *r)
{
	free(r->db);
	json_decref(r->plan);
	json_decref(r->finding);
	json_decref(r->findings);
	json_decref(r->schema);
	free(r);
}

static void push(struct node **head, struct node **tail, struct node *n)
{
	n->next = NULL;
	if (*tail)
		(*tail)->next = n;
	else
		*head = n;
	*tail = n;
}

static struct node *pop(struct node **head, struct node **tail)
{
	struct node *n = *head;
	if (n) {
		*head = n->next;
		if (!*head)
			*tail = NULL;
	}
	return n;
}

/* A connection for conninfo: kept from an earlier job when still healthy. */
static PGconn *conn_for(struct advisor *a, const char *conninfo, char *err, size_t errlen)
{
	struct conn_slot *free_slot = NULL;
	for (int i = 0; i < ADVISOR_MAX_CONNS; i++) {
		struct conn_slot *s = &a->conns[i];
		if (s->conninfo && strcmp(s->conninfo, conninfo) == 0) {
			if (PQstatus(s->pg) == CONNECTION_OK && PQtransactionStatus(s->pg) == PQTRANS_IDLE)
				return s->pg;
			PQfinish(s->pg);
			s->pg = NULL;
			free(s->conninfo);
			s->conninfo = NULL;
		}
		if (!s->conninfo && !free_slot)
			free_slot = s;
	}
	if (!free_slot) { /* all taken: drop the first */
		free_slot = &a->conns[0];
		PQfinish(free_slot->pg);
		free(free_slot->conninfo);
		free_slot->conninfo = NULL;
		free_slot->pg = NULL;
	}
	PGconn *pg = PQconnectdb(conninfo);
	if (!pg || PQstatus(pg) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect: %s", pg ? PQerrorMessage(pg) : "out of memory");
		size_t n = strlen(err);
		while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
			err[--n] = 0;
		PQfinish(pg);
		return NULL;
	}
	free_slot->conninfo = strdup(conninfo);
	if (!free_slot->conninfo) {
		PQfinish(pg);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	free_slot->pg = pg;
	return pg;
}

static void run_job(struct advisor *a, struct advisor_job *job, struct advisor_result *r)
{
	PGconn *pg = conn_for(a, job->conninfo, r->error, sizeof(r->error));
	if (!pg)
		return;
	if (job->kind == AJ_EXPLAIN) {
		if (advise_explain(pg, job->sql, &job->opts, &r->plan, &r->finding, r->error, sizeof(r->error)) == 0)
			r->error[0] = 0;
	} else {
		r->findings = json_array();
		if (advise_catalog(pg, job->models, r->findings, r->error, sizeof(r->error)) == 0 &&
		    advise_schema(pg, &r->schema, r->error, sizeof(r->error)) == 0)
			r->error[0] = 0;
	}
}

static void close_conns(struct advisor *a)
{
	for (int i = 0; i < ADVISOR_MAX_CONNS; i++) {
		PQfinish(a->conns[i].pg);
		free(a->conns[i].conninfo);
		a->conns[i].pg = NULL;
		a->conns[i].conninfo = NULL;
	}
}

static void *advisor_main(void *arg)
{
	struct advisor *a = arg;
	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (!a->stop && !a->jobs)
			pthread_cond_wait(&a->cv, &a->mu);
		if (a->stop)
			break;
		struct node *n = pop(&a->jobs, &a->jobs_tail);
		a->njobs--;
		a->running_job = true;
		pthread_mutex_unlock(&a->mu);

		struct advisor_job *job = n->item;
		struct advisor_result *r = calloc(1, sizeof(*r));
		if (r) {
			r->kind = job->kind;
			r->fp = job->fp;
			r->db = job->db;
			job->db = NULL;
			run_job(a, job, r);
		}
		advisor_job_free(job);

		pthread_mutex_lock(&a->mu);
		if (!a->jobs) {
			/* Nothing else to do for now: hold no backend while idle (jobs come in
			 * rounds, every advisor_interval at most). */
			pthread_mutex_unlock(&a->mu);
			close_conns(a);
			pthread_mutex_lock(&a->mu);
		}
		a->running_job = false;
		if (r) {
			n->item = r;
			push(&a->results, &a->results_tail, n);
			uint64_t one = 1;
			ssize_t w = write(a->efd, &one, sizeof(one));
			(void)w;
		} else {
			free(n);
		}
	}
	pthread_mutex_unlock(&a->mu);
	close_conns(a);
	return NULL;
}

/* On the loop: hand the finished results to the callback. */
static void advisor_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct advisor *a = arg;
	uint64_t v;
	(void)what;
	ssize_t rd = read(fd, &v, sizeof(v));
	(void)rd;
	for (;;) {
		pthread_mutex_lock(&a->mu);
		struct node *n = pop(&a->results, &a->results_tail);
		pthread_mutex_unlock(&a->mu);
		if (!n)
			break;
		struct advisor_result *r = n->item;
		free(n);
		a->cb(r, a->arg);
		result_free(r);
	}
}

struct advisor *advisor_start(struct event_base *base, advisor_cb cb, void *arg)
{
	struct advisor *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->cb = cb;
	a->arg = arg;
	a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->efd < 0) {
		free(a);
		return NULL;
	}
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	a->ev = event_new(base, a->efd, EV_READ | EV_PERSIST, advisor_deliver, a);
	if (!a->ev || event_add(a->ev, NULL) < 0 || pthread_create(&a->thread, NULL, advisor_main, a) != 0) {
		if (a->ev)
			event_free(a->ev);
		close(a->efd);
		pthread_mutex_destroy(&a->mu);
		pthread_cond_destroy(&a->cv);
		free(a);
		return NULL;
	}
	return a;
}

bool advisor_submit(struct advisor *a, struct advisor_job *job)
{
	struct node *n = malloc(sizeof(*n));
	pthread_mutex_lock(&a->mu);
	bool ok = n && a->njobs < ADVISOR_MAX_JOBS && !a->stop;
	if (ok) {
		n->item = job;
		push(&a->jobs, &a->jobs_tail, n);
		a->njobs++;
		pthread_cond_signal(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	if (!ok) {
		free(n);
		advisor_job_free(job);
	}
	return ok;
}

size_t advisor_busy(struct advisor *a)
{
	pthread_mutex_lock(&a->mu);
	size_t n = a->njobs + (a->running_job ? 1 : 0);
	pthread_mutex_unlock(&a->mu);
	return n;
}

void advisor_stop(struct advisor *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->thread, NULL);
	struct node *n;
	while ((n = pop(&a->jobs, &a->jobs_tail))) {
		advisor_job_free(n->item);
		free(n);
	}
	while ((n = pop(&a->results, &a->results_tail))) {
		result_free(n->item);
		free(n);
	}
	event_free(a->ev);
	close(a->efd);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	free(a);
}
