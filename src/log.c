/*
 * log.c - logfmt lines on stderr or syslog.
 *
 * A line is assembled in a stack buffer and written with one write(2), so
 * lines of concurrent threads never interleave.  The node name and level
 * are set at start-up, before threads exist, and read without a lock
 * afterwards (log_init is not called concurrently with logging).
 */
#include "autoconfig.h"

#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048
#define LOG_NAME_MAX 64

static char log_node[LOG_NAME_MAX] = "pluto";
static enum log_level log_threshold = LOG_LEVEL_INFO;
static bool log_to_syslog;

static _Thread_local char thread_name[16];
static _Thread_local struct {
	char key[16];
	char value[128];
} thread_ctx[LOG_CONTEXT_MAX];

static const char *const level_names[] = {
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_ERROR] = "error",
};

void log_init(const char *node, enum log_level level, bool use_syslog)
{
	if (node != NULL)
		snprintf(log_node, sizeof(log_node), "%s", node);
	log_threshold = level;
	if (use_syslog && !log_to_syslog)
		openlog("pluto", LOG_PID | LOG_NDELAY, LOG_MAIL);
	log_to_syslog = use_syslog;
}

bool log_level_parse(const char *name, enum log_level *level_r)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return true;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*level_r = LOG_LEVEL_WARN;
		return true;
	}
	return false;
}

const char *log_level_name(enum log_level level)
{
	if ((unsigned)level > LOG_LEVEL_ERROR)
		return "unknown";
	return level_names[level];
}

enum log_level log_get_level(void)
{
	return log_threshold;
}

void log_thread_name(const char *name)
{
	snprintf(thread_name, sizeof(thread_name), "%s", name);
#ifdef HAVE_PTHREAD_SETNAME_NP
#if defined(__linux__)
	pthread_setname_np(pthread_self(), thread_name);
#endif
#endif
}

void log_context_set(const char *key, const char *value)
{
	size_t free_slot = LOG_CONTEXT_MAX;

	for (size_t i = 0; i < LOG_CONTEXT_MAX; i++) {
		if (thread_ctx[i].key[0] == '\0') {
			if (free_slot == LOG_CONTEXT_MAX)
				free_slot = i;
			continue;
		}
		if (strcmp(thread_ctx[i].key, key) == 0) {
			if (value == NULL)
				thread_ctx[i].key[0] = '\0';
			else
				snprintf(thread_ctx[i].value,
					 sizeof(thread_ctx[i].value), "%s",
					 value);
			return;
		}
	}
	if (value == NULL || free_slot == LOG_CONTEXT_MAX)
		return;
	snprintf(thread_ctx[free_slot].key, sizeof(thread_ctx[0].key), "%s",
		 key);
	snprintf(thread_ctx[free_slot].value, sizeof(thread_ctx[0].value),
		 "%s", value);
}

void log_context_clear(void)
{
	memset(thread_ctx, 0, sizeof(thread_ctx));
}

static bool needs_quotes(const char *value)
{
	if (*value == '\0')
		return true;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (*p <= ' ' || *p >= 0x7f || *p == '"' || *p == '=' ||
		    *p == '\\')
			return true;
	}
	return false;
}

void log_quote(char *buf, size_t size, const char *value)
{
	size_t n = 0;

	if (size == 0)
		return;
	if (!needs_quotes(value)) {
		snprintf(buf, size, "%s", value);
		return;
	}
	/* Reserve room for the closing quote and the NUL. */
	buf[n++] = '"';
	for (const unsigned char *p = (const unsigned char *)value;
	     *p != '\0' && n + 6 < size; p++) {
		if (*p == '"' || *p == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)*p;
		} else if (*p == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else if (*p < ' ' || *p == 0x7f) {
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", *p);
		} else {
			buf[n++] = (char)*p;
		}
	}
	if (n + 1 < size)
		buf[n++] = '"';
	buf[n < size ? n : size - 1] = '\0';
}

static size_t append(char *line, size_t len, const char *fmt, ...)
	PLUTO_PRINTF(3, 4);

static size_t append(char *line, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (len >= LOG_LINE_MAX - 1)
		return len;
	va_start(ap, fmt);
	n = vsnprintf(line + len, LOG_LINE_MAX - 1 - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return len;
	len += (size_t)n;
	return len < LOG_LINE_MAX - 1 ? len : LOG_LINE_MAX - 2;
}

static size_t append_timestamp(char *line, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	return append(line, len, "ts=%s.%03ldZ ", stamp, ts.tv_nsec / 1000000);
}

static void emit(enum log_level level, const char *msg, const char *err)
{
	char line[LOG_LINE_MAX];
	char quoted[512];
	size_t len = 0;

	if (!log_to_syslog)
		len = append_timestamp(line, len);
	len = append(line, len, "level=%s node=%s", level_names[level],
		     log_node);
	if (thread_name[0] != '\0')
		len = append(line, len, " thread=%s", thread_name);
	log_quote(quoted, sizeof(quoted), msg);
	len = append(line, len, " msg=%s", quoted);
	for (size_t i = 0; i < LOG_CONTEXT_MAX; i++) {
		if (thread_ctx[i].key[0] == '\0')
			continue;
		log_quote(quoted, sizeof(quoted), thread_ctx[i].value);
		len = append(line, len, " %s=%s", thread_ctx[i].key, quoted);
	}
	if (err != NULL) {
		log_quote(quoted, sizeof(quoted), err);
		len = append(line, len, " err=%s", quoted);
	}
	if (log_to_syslog) {
		static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING,
					    LOG_ERR };
		syslog(prio[level], "%s", line);
		return;
	}
	line[len++] = '\n';
	/* A short write to stderr is not worth retrying: the next line
	 * starts fresh either way. */
	if (write(STDERR_FILENO, line, len) < 0)
		return;
}

static void vlog(enum log_level level, const char *err, const char *fmt,
		 va_list ap) PLUTO_PRINTF(3, 0);

static void vlog(enum log_level level, const char *err, const char *fmt,
		 va_list ap)
{
	char msg[1024];
	int saved_errno = errno;

	if (level < log_threshold) {
		errno = saved_errno;
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	emit(level, msg, err);
	errno = saved_errno;
}

void log_msgv(enum log_level level, const char *fmt, va_list ap)
{
	vlog(level, NULL, fmt, ap);
}

#define DEFINE_LOG_FN(name, level)                                      \
	void name(const char *fmt, ...)                                 \
	{                                                               \
		va_list ap;                                             \
		va_start(ap, fmt);                                      \
		vlog(level, NULL, fmt, ap);                             \
		va_end(ap);                                             \
	}

DEFINE_LOG_FN(log_debug, LOG_LEVEL_DEBUG)
DEFINE_LOG_FN(log_info, LOG_LEVEL_INFO)
DEFINE_LOG_FN(log_warnx, LOG_LEVEL_WARN)
DEFINE_LOG_FN(log_error, LOG_LEVEL_ERROR)

void log_warn(const char *fmt, ...)
{
	char err[128];
	va_list ap;
	int saved_errno = errno;

	/* The XSI strerror_r is what _GNU_SOURCE hides; strerror is safe
	 * enough here as glibc's is thread-safe for known errno values. */
	snprintf(err, sizeof(err), "%s", strerror(saved_errno));
	va_start(ap, fmt);
	vlog(LOG_LEVEL_WARN, err, fmt, ap);
	va_end(ap);
	errno = saved_errno;
}

void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
