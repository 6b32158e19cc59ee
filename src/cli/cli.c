/* cli.c - subcommand dispatch (`pgmedic top|snapshot|compare|report|doctor|help`) and the small
 * helpers the subcommands share: strict option parsing, usage errors, JSON member
 * access, number formatting and width-limited printing. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	void (*usage)(FILE *f);
	const char *summary;
};

static const struct command commands[] = {
	{"top", cli_top, cli_top_usage, "live table of the busiest queries of a running pgmedic"},
	{"snapshot", cli_snapshot, cli_snapshot_usage, "save every query and route statistic as one JSON file"},
	{"compare", cli_compare, cli_compare_usage, "before/after comparison of two snapshots"},
	{"report", cli_report, cli_report_usage, "the problems a running pgmedic found, with their fixes"},
	{"doctor", cli_doctor, cli_doctor_usage, "check a database's catalog: unindexed foreign keys, unused and redundant indexes"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void general_usage(FILE *f)
{
	fprintf(f, "Usage: pgmedic [run] [OPTIONS]        run the proxy (pgmedic --help lists its options)\n"
		   "       pgmedic COMMAND [ARGS]\n\nCommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "  %-10s %s\n", "help", "this text; `pgmedic help COMMAND` for one command");
	fprintf(f, "\nExit codes: 0 success, 1 runtime error (connection, file), 2 usage error.\n");
}

bool cli_is_command(const char *name)
{
	if (!name)
		return false;
	if (strcmp(name, "help") == 0)
		return true;
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(name, commands[i].name) == 0)
			return true;
	return false;
}

int cli_main(int argc, char **argv)
{
	const char *name = argv[1];
	if (strcmp(name, "help") == 0) {
		if (argc < 3) {
			general_usage(stdout);
			return CLI_OK;
		}
		for (size_t i = 0; i < NCOMMANDS; i++)
			if (strcmp(argv[2], commands[i].name) == 0) {
				commands[i].usage(stdout);
				return CLI_OK;
			}
		if (strcmp(argv[2], "run") == 0) {
			printf("`pgmedic run [OPTIONS]` (or just `pgmedic [OPTIONS]`) runs the proxy; "
			       "`pgmedic --help` lists its options.\n");
			return CLI_OK;
		}
		fprintf(stderr, "pgmedic help: unknown command '%s'\n", argv[2]);
		general_usage(stderr);
		return CLI_USAGE;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(name, commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	return CLI_USAGE; /* cli_is_command said no */
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "pgmedic %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'pgmedic %s --help' for more information.\n", cmd);
	return CLI_USAGE;
}

bool cli_parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool cli_parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool cli_json_num(const json_t *obj, const char *key, double *out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_number(v))
		return false;
	*out = json_number_value(v);
	return true;
}

const char *cli_json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

int cli_stdout_done(char *err, size_t errlen)
{
	if (fflush(stdout) == 0)
		return 0;
	snprintf(err, errlen, "cannot write to standard output: %s", strerror(errno));
	return -1;
}

int cli_put_json(const json_t *doc, char *err, size_t errlen)
{
	if (json_dumpf(doc, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) != 0 || fputc('\n', stdout) == EOF) {
		snprintf(err, errlen, "cannot write to standard output: %s", strerror(errno));
		return -1;
	}
	return cli_stdout_done(err, errlen);
}

const char *cli_fmt_bytes(char *buf, size_t len, double b)
{
	static const char *const units[] = {"kB", "MB", "GB", "TB"};
	if (b < 10 * 1024) {
		snprintf(buf, len, "%.0f bytes", b);
		return buf;
	}
	double v = b / 1024;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
	return buf;
}

int cli_http_args(const char *cmd, int optind_, int argc, char **argv, const char *url, struct cli_url *u)
{
	if (optind_ < argc)
		return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind_]);
	if (!url)
		return cli_usage_error(cmd, "--http URL is required (pgmedic's --http address)");
	char err[1024];
	if (cli_url_parse(url, u, err, sizeof(err)) < 0)
		return cli_usage_error(cmd, "%s", err);
	return CLI_OK;
}

const char *cli_fmt_num(char *buf, size_t len, double v)
{
	if (!isfinite(v)) {
		snprintf(buf, len, "-");
		return buf;
	}
	if (fabs(v) < 1e15 && v == floor(v)) {
		snprintf(buf, len, "%.0f", v);
		return buf;
	}
	snprintf(buf, len, fabs(v) < 1 ? "%.3f" : "%.2f", v);
	char *dot = strchr(buf, '.');
	if (dot) {
		char *e = buf + strlen(buf);
		while (e > dot + 1 && e[-1] == '0')
			*--e = '\0';
		if (e == dot + 1)
			*dot = '\0';
	}
	/* a tiny non-zero value must not print as "0" (or "-0") */
	if ((strcmp(buf, "0") == 0 || strcmp(buf, "-0") == 0) && v != 0)
		snprintf(buf, len, "%.2g", v);
	return buf;
}

size_t cli_utf8_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

size_t cli_put_clipped(FILE *f, const char *s, size_t width)
{
	size_t cols = 0;
	bool space = false;
	/* skip leading whitespace */
	while (*s == ' ' || (*s > 0 && *s < 0x20))
		s++;
	while (*s) {
		unsigned char c = (unsigned char)*s;
		if (c == ' ' || c < 0x20 || c == 0x7f) {
			space = true;
			s++;
			continue;
		}
		size_t n = 1; /* bytes of this code point */
		if (c >= 0xC0)
			while ((s[n] & 0xC0) == 0x80 && n < 4)
				n++;
		size_t need = (space ? 1 : 0) + 1;
		/* is there anything after this code point?  Then keep a column for "…". */
		const char *rest = s + n;
		while (*rest == ' ' || (*rest > 0 && *rest < 0x20) || *rest == 0x7f)
			rest++;
		bool last = *rest == '\0';
		if (cols + need + (last ? 0 : 1) > width) {
			if (width > cols) {
				fputs("\xe2\x80\xa6", f);
				cols++;
			}
			return cols;
		}
		if (space) {
			fputc(' ', f);
			cols++;
		}
		space = false;
		fwrite(s, 1, n, f);
		cols++;
		s += n;
	}
	return cols;
}
