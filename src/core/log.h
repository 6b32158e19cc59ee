/* log.h - leveled logging to stderr.  Every line carries a timestamp and level;
 * callers that talk about a connection put its identity in the message. */
#ifndef PGMEDIC_LOG_H
#define PGMEDIC_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARNING = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern enum log_level log_current_level;

void log_set_level(enum log_level lvl);
/* Parses "error|warning|info|debug"; returns -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  do { if (log_current_level >= LOG_INFO) log_msg(LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_current_level >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
