/* main.c - command line entry: `pgmedic [run] [flags]` runs the proxy;
 * `pgmedic top|snapshot|compare|help ...` are client commands (src/cli/). */
#include <errno.h>
#include <pthread.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "http/http.h"
#include "net/conn.h"
#include "proxy/proxy.h"
#include "proxy/shard.h"

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct proxy *p = arg;
	(void)what;
	switch (sig) {
	case SIGHUP:
		log_info("SIGHUP: reloading configuration");
		(void)proxy_reload(p);
		break;
	case SIGTERM:
		proxy_begin_shutdown(p);
		break;
	case SIGINT:
		log_info("SIGINT: exiting now");
		world_stop(p);
		shards_break_all();
		world_resume(p);
		break;
	}
}

/* Each client and server connection is a descriptor: raise the soft limit as far
 * as the hard limit allows and say so when it is below what max_client_conn needs. */
static void raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rlim_t want = (rlim_t)cfg->max_client_conn + (rlim_t)cfg->pool_size * 4 + 64;
	if (rl.rlim_cur < want) {
		rlim_t old = rl.rlim_cur;
		rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != old)
			log_info("raised the open file limit from %llu to %llu", (unsigned long long)old,
				 (unsigned long long)rl.rlim_cur);
		if (rl.rlim_cur < want)
			log_warn("open file limit is %llu (hard limit %llu): fewer than max_client_conn=%d clients can connect",
				 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, cfg->max_client_conn);
	}
}

/* Workers 1..N-1: one event loop each (shard 0 runs on the main thread). */
static void *shard_thread(void *arg)
{
	struct proxy *p = arg;
	event_base_dispatch(p->base);
	shard_retire(p);
	conn_thread_exit();
	return NULL;
}

int main(int argc, char **argv)
{
	/* Subcommands first: anything else (flags only, or `run` followed by flags)
	 * is the proxy.  `run` is dropped so config_load sees the flags alone. */
	if (argc > 1 && cli_is_command(argv[1]))
		return cli_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "run") == 0) {
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	struct config cfg;
	char err[1024];
	int rc = config_load(&cfg, argc, argv, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "pgmedic: %s\nTry 'pgmedic --help' for more information.\n", err);
		config_free(&cfg);
		return 2;
	}
	if (cfg.show_help) {
		config_print_help(argv[0]);
		config_free(&cfg);
		return 0;
	}
	if (cfg.show_version) {
		printf("pgmedic %s\n", PGMEDIC_VERSION);
		config_free(&cfg);
		return 0;
	}
	log_set_level((enum log_level)cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(&cfg);

	int n = config_workers(&cfg);
	if (shards_init(n) < 0) {
		fprintf(stderr, "pgmedic: workers must be between 1 and 64 (got %d)\n", n); /* config refuses it first */
		config_free(&cfg);
		return 2;
	}
	struct proxy *shards = calloc((size_t)n, sizeof(*shards));
	struct event_base **bases = calloc((size_t)n, sizeof(*bases));
	pthread_t *threads = calloc((size_t)n, sizeof(*threads));
	struct event *sigs[3] = {NULL, NULL, NULL};
	int started = 0, inited = 0, status = 1;
	if (!shards || !bases || !threads) {
		fprintf(stderr, "pgmedic: out of memory\n");
		goto out;
	}
	/* Every shard is set up before any loop runs (shard 0 listens). */
	for (; inited < n; inited++) {
		struct event_config *ec = event_config_new();
		event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
		bases[inited] = event_base_new_with_config(ec);
		event_config_free(ec);
		if (!bases[inited]) {
			log_error("cannot create the event loop");
			goto out;
		}
		if (proxy_init(&shards[inited], bases[inited], &cfg, inited, argc, argv, err, sizeof(err)) < 0) {
			log_error("%s", err);
			inited++; /* freed below */
			goto out;
		}
	}
	struct proxy *p = &shards[0];
	if (cfg.http_host && cfg.http_port) {
		if (http_start(p, cfg.http_host, cfg.http_port, err, sizeof(err)) < 0) {
			log_error("%s", err);
			goto out;
		}
		log_info("metrics on http://%s:%d/metrics", cfg.http_host, cfg.http_port);
	}
	int signums[3] = {SIGHUP, SIGTERM, SIGINT};
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(bases[0], signums[i], on_signal, p);
		event_add(sigs[i], NULL);
	}
	/* The other loops' threads leave these signals to shard 0. */
	sigset_t block, old;
	sigemptyset(&block);
	for (int i = 0; i < 3; i++)
		sigaddset(&block, signums[i]);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (started = 1; started < n; started++)
		if (pthread_create(&threads[started], NULL, shard_thread, &shards[started]) != 0) {
			log_error("cannot start worker %d", started);
			break;
		}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (started == n) {
		event_base_dispatch(bases[0]);
		status = 0;
	} else {
		for (int i = started; i < n; i++)
			shard_retire(&shards[i]); /* never ran: not waited for */
		world_stop(p);
		shards_break_all();
		world_resume(p);
	}
	shard_retire(p);
	for (int i = 1; i < started; i++)
		pthread_join(threads[i], NULL);
out:
	for (int i = 0; i < 3; i++)
		if (sigs[i])
			event_free(sigs[i]);
	if (shards && inited > 0)
		http_stop(&shards[0]);
	/* Shard 0 last: the others share its profiler. */
	for (int i = inited - 1; i >= 0; i--)
		proxy_free(&shards[i]);
	for (int i = 0; bases && i < n; i++)
		if (bases[i])
			event_base_free(bases[i]);
	conn_thread_exit();
	shards_free();
	free(shards);
	free(bases);
	free(threads);
	config_free(&cfg);
	if (status != 0)
		return 1;
	log_info("pgmedic stopped");
	return 0;
}
