/* cli.h - pgmedic's client subcommands: `top`, `snapshot`, `compare`, `report`
 * and `doctor`.  They are not the proxy: they talk to a running pgmedic's HTTP
 * endpoint (or read snapshot files, or, for `doctor`, query PostgreSQL's catalog
 * with libpq) with plain blocking I/O, print, and exit.
 * Exit codes: CLI_OK, CLI_ERR for runtime failures (connection, bad file),
 * CLI_USAGE for command-line mistakes. */
#ifndef PGMEDIC_CLI_H
#define PGMEDIC_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum cli_exit { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2 };

/* Is `name` (argv[1]) a client subcommand or `help`?  `run` is not: main.c
 * strips it and starts the proxy. */
bool cli_is_command(const char *name);
/* Runs argv[1] as a subcommand (argv[0] is the program); returns the exit code. */
int cli_main(int argc, char **argv);

/* ---- http_get.c: a minimal blocking HTTP/1.1 GET client ---------------- */

/* http://host[:port][/base]; also accepts a bare host:port (as --http takes it). */
struct cli_url {
	char host[256];  /* without [] for IPv6 literals */
	char port[8];    /* default "80" */
	char base[1024]; /* path prefix without a trailing '/', "" for none */
};

int cli_url_parse(const char *url, struct cli_url *u, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* GET base + path (path starts with '/').  200 only: 0 and *body (malloc'd,
 * NUL-terminated, *len bytes).  Otherwise -1 with a message such as
 * "cannot connect to 127.0.0.1:9187: Connection refused". */
int cli_http_get(const struct cli_url *u, const char *path, char **body, size_t *len, char *err,
	     size_t errlen) __attribute__((warn_unused_result));
/* cli_http_get + JSON parse; the document must be an object.  NULL with err. */
json_t *cli_get_json(const struct cli_url *u, const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* ---- shared helpers (cli.c) --------------------------------------------- */

/* Strict number parsing for option values; false when s is not entirely a number
 * in [min, max]. */
bool cli_parse_int(const char *s, long min, long max, long *out);
bool cli_parse_double(const char *s, double min, double max, double *out);
/* Prints "pgmedic CMD: MSG\nTry 'pgmedic CMD --help' ..." and returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON member as a number (integer or real); false when absent/null/not a number. */
bool cli_json_num(const json_t *obj, const char *key, double *out);
/* A JSON member as a string, or NULL. */
const char *cli_json_str(const json_t *obj, const char *key);
/* Formats a number for people: integers without decimals, else 2 decimals (3
 * below 1), trailing zeros trimmed.  Returns buf. */
const char *cli_fmt_num(char *buf, size_t len, double v);
/* "812 bytes", "3.6 MB", "176 kB" */
const char *cli_fmt_bytes(char *buf, size_t len, double b);
/* The end of an --http command's option parsing: no stray argument, a URL given
 * and valid.  CLI_OK, or the usage error's exit code. */
int cli_http_args(const char *cmd, int optind_, int argc, char **argv, const char *url, struct cli_url *u);
/* Flushes standard output: 0, or -1 with "cannot write to standard output: ..." in
 * err (a closed pipe, a full disk). */
int cli_stdout_done(char *err, size_t errlen);
/* doc as indented JSON and a newline on standard output, flushed; as cli_stdout_done. */
int cli_put_json(const json_t *doc, char *err, size_t errlen);
/* Display width of UTF-8 text (code points; every one counted as one column). */
size_t cli_utf8_width(const char *s);
/* Writes at most `width` columns of s to f (one line: control characters and runs
 * of whitespace become one space), ending with "…" when cut.  Returns columns written. */
size_t cli_put_clipped(FILE *f, const char *s, size_t width);

/* ---- report.c: helpers shared with doctor.c ------------------------------ */

/* The terminal's width: TIOCGWINSZ on stdout, else $COLUMNS, else 120. */
int cli_term_width(void);
/* Writes s word-wrapped to `width` columns; continuation lines are indented by
 * `indent` spaces (the first line is not: the caller printed its label).  Ends
 * with a newline. */
void cli_put_wrapped(FILE *f, const char *s, size_t indent, size_t width);

/* ---- subcommands ------------------------------------------------------ */

int cli_top(int argc, char **argv);      /* argv[0] = "top" */
int cli_snapshot(int argc, char **argv); /* argv[0] = "snapshot" */
int cli_compare(int argc, char **argv);  /* argv[0] = "compare" */
int cli_report(int argc, char **argv);   /* argv[0] = "report" */
int cli_doctor(int argc, char **argv);   /* argv[0] = "doctor" */
void cli_top_usage(FILE *f);
void cli_snapshot_usage(FILE *f);
void cli_compare_usage(FILE *f);
void cli_report_usage(FILE *f);
void cli_doctor_usage(FILE *f);

#endif
