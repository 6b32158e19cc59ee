/* log.c - stderr logger with levels. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

enum log_level log_current_level = LOG_INFO;

static const char *level_names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};

void log_set_level(enum log_level lvl) { log_current_level = lvl; }

int log_level_parse(const char *s)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0)
			return i;
	if (strcasecmp(s, "warn") == 0)
		return LOG_WARNING;
	return -1;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	if (lvl > log_current_level)
		return;
	char buf[2048];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d.%03d UTC [%s] ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[lvl]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : ((size_t)m > sizeof(buf) - (size_t)n - 2 ? sizeof(buf) - (size_t)n - 2 : (size_t)m));
	buf[len++] = '\n';
	/* one write() per line so concurrent writers do not interleave */
	fwrite(buf, 1, len, stderr);
	fflush(stderr);
}
