/* main.c - command line entry: `pgmedic [run] [flags]` runs the proxy;
 * `pgmedic top|snapshot|compare|help ...` are client commands (src/cli/). */
#include <errno.h>
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
#include "proxy/proxy.h"

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
		event_base_loopbreak(p->base);
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

	struct event_config *ec = event_config_new();
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
	struct event_base *base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (!base) {
		fprintf(stderr, "pgmedic: cannot create the event loop\n");
		config_free(&cfg);
		return 1;
	}
	struct proxy p;
	if (proxy_init(&p, base, &cfg, argc, argv, err, sizeof(err)) < 0) {
		log_error("%s", err);
		proxy_free(&p);
		event_base_free(base);
		config_free(&cfg);
		return 1;
	}
	if (cfg.http_host && cfg.http_port) {
		if (http_start(&p, cfg.http_host, cfg.http_port, err, sizeof(err)) < 0) {
			log_error("%s", err);
			proxy_free(&p);
			event_base_free(base);
			config_free(&cfg);
			return 1;
		}
		log_info("metrics on http://%s:%d/metrics", cfg.http_host, cfg.http_port);
	}
	struct event *sigs[3];
	int signums[3] = {SIGHUP, SIGTERM, SIGINT};
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(base, signums[i], on_signal, &p);
		event_add(sigs[i], NULL);
	}
	event_base_dispatch(base);
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	http_stop(&p);
	proxy_free(&p);
	event_base_free(base);
	config_free(&cfg);
	log_info("pgmedic stopped");
	return 0;
}
