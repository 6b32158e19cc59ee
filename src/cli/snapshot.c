/* snapshot.c - `pgmedic snapshot`: every query fingerprint and every route of a
 * running pgmedic, saved as one JSON document for `pgmedic compare`:
 *   {"pgmedic_snapshot": 1, "taken_at", "url", "totals", "queries": [...], "routes": [...]}
 * The arrays are the endpoint's own objects, unchanged. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

void cli_snapshot_usage(FILE *f)
{
	fprintf(f, "Usage: pgmedic snapshot --http URL [-o FILE]\n"
		   "Saves every query and route statistic of a running pgmedic as one JSON document,\n"
		   "for `pgmedic compare BEFORE.json AFTER.json`.\n\n"
		   "  --http URL          pgmedic's HTTP endpoint, e.g. http://127.0.0.1:9187 (required)\n"
		   "  -o, --output FILE   write to FILE (through a temporary file and rename) instead\n"
		   "                      of standard output; \"-\" is standard output\n"
		   "  -h, --help          this text\n");
}

/* Writes doc to path through a temporary file and rename, so an interrupted run
 * never leaves half a snapshot where a good one was. */
static int write_file(const json_t *doc, const char *path, char *err, size_t errlen)
{
	char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	FILE *f = fopen(tmp, "w");
	if (!f) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		free(tmp);
		return -1;
	}
	int rc = json_dumpf(doc, f, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
	if (rc == 0 && fputc('\n', f) == EOF)
		rc = -1;
	int e = errno;
	if (fclose(f) != 0 && rc == 0) {
		rc = -1;
		e = errno;
	}
	if (rc == 0 && rename(tmp, path) < 0) {
		rc = -1;
		e = errno;
	}
	if (rc != 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
		unlink(tmp);
	}
	free(tmp);
	return rc;
}

int cli_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		{"http", required_argument, NULL, 'u'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *url = NULL, *out = NULL;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'h':
			cli_snapshot_usage(stdout);
			return CLI_OK;
		case ':':
			return cli_usage_error("snapshot", "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error("snapshot", "unknown option '%s'", argv[optind - 1]);
		}
	}
	struct cli_url u;
	int rc = cli_http_args("snapshot", optind, argc, argv, url, &u);
	if (rc != CLI_OK)
		return rc;
	char err[1024];

	int ret = CLI_ERR;
	json_t *routes = NULL, *snap = NULL;
	json_t *queries = cli_get_json(&u, "/api/queries?sort=total_time&limit=0", err, sizeof(err));
	if (!queries)
		goto fail;
	routes = cli_get_json(&u, "/api/routes?sort=total_time&limit=0", err, sizeof(err));
	if (!routes)
		goto fail;
	json_t *qa = json_object_get(queries, "queries"), *ra = json_object_get(routes, "routes");
	if (!json_is_array(qa) || !json_is_array(ra)) {
		snprintf(err, sizeof(err), "%s has no \"%s\" array", !json_is_array(qa) ? "/api/queries" : "/api/routes",
			 !json_is_array(qa) ? "queries" : "routes");
		goto fail;
	}
	json_t *taken = json_object_get(queries, "taken_at");
	snap = json_pack("{s:i, s:O, s:s, s:O, s:O, s:O}", "pgmedic_snapshot", 1, "taken_at",
			 taken ? taken : json_null(), "url", url, "totals",
			 json_object_get(queries, "totals") ? json_object_get(queries, "totals") : json_null(),
			 "queries", qa, "routes", ra);
	if (!snap) {
		snprintf(err, sizeof(err), "cannot build the snapshot (out of memory?)");
		goto fail;
	}
	if (out && strcmp(out, "-") != 0) {
		if (write_file(snap, out, err, sizeof(err)) < 0)
			goto fail;
	} else {
		if (cli_put_json(snap, err, sizeof(err)) < 0)
			goto fail;
	}
	ret = CLI_OK;
	goto done;
fail:
	fprintf(stderr, "pgmedic snapshot: %s\n", err);
done:
	json_decref(snap);
	json_decref(routes);
	json_decref(queries);
	return ret;
}
