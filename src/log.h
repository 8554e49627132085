/*
 * log.h - leveled logfmt logging for every pluto thread.
 *
 * One line per event on stderr (or syslog when configured):
 *
 *   ts=2026-11-26T06:50:00.123Z level=info node=worker-1 thread=sess-7
 *     msg="session opened" user=alice peer=127.0.0.1
 *
 * The message is printf-formatted and quoted; key=value pairs come from the
 * thread's context (log_context_set) and are quoted when needed, so client
 * supplied strings cannot forge fields or lines.  Never pass a password, a
 * literal or a message body to any of these functions.
 *
 * All functions are thread-safe and preserve errno.
 */
#ifndef PLUTO_LOG_H
#define PLUTO_LOG_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

#define PLUTO_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Sets the node name shown in every line, the threshold and whether lines
 * go to syslog(3) (facility mail) instead of stderr.  May be called again
 * once the configuration is read.  Borrowed strings are copied. */
void log_init(const char *node, enum log_level level, bool use_syslog);

/* Parses "debug", "info", "warn" or "error" (any case).  Returns false on
 * anything else and leaves *level_r alone. */
bool log_level_parse(const char *name, enum log_level *level_r);
const char *log_level_name(enum log_level level);
enum log_level log_get_level(void);

/* Names the calling thread in log lines (and for ps/top where the system
 * allows it).  The name is copied and truncated to 15 bytes. */
void log_thread_name(const char *name);

/* Thread-local key=value fields appended to every line the calling thread
 * logs, e.g. "user" or "peer".  Setting a key again replaces its value; a
 * NULL value removes it.  At most LOG_CONTEXT_MAX fields. */
#define LOG_CONTEXT_MAX 4
void log_context_set(const char *key, const char *value);
void log_context_clear(void);

void log_debug(const char *fmt, ...) PLUTO_PRINTF(1, 2);
void log_info(const char *fmt, ...) PLUTO_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) PLUTO_PRINTF(1, 2);
/* Like log_warnx, appends err="strerror(errno)". */
void log_warn(const char *fmt, ...) PLUTO_PRINTF(1, 2);
void log_error(const char *fmt, ...) PLUTO_PRINTF(1, 2);
void log_msgv(enum log_level level, const char *fmt, va_list ap)
	PLUTO_PRINTF(2, 0);

/* Writes the logfmt form of one value into buf (quoted and escaped when it
 * holds a space, a quote, '=', a control or a non-ASCII byte).  Always
 * NUL-terminates; truncates to size.  Exposed for tests. */
void log_quote(char *buf, size_t size, const char *value);

/* For start-up failures only, before any client or peer is served: logs at
 * error level and exits with status 1.  Never for input from the network. */
void fatalx(const char *fmt, ...) PLUTO_PRINTF(1, 2) __attribute__((noreturn));

#endif
