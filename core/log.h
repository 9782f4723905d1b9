/* log.h -- the gateway's two outputs: diagnostic lines (stderr, by level)
 * and the access log (one JSON line per request, to stderr, a file or off).
 *
 * Both are safe from any thread: each line is one write(2). It does not
 * format access-log records (server.c builds them) nor rotate files (use
 * copytruncate or SIGHUP, which reopens the file). */
#ifndef KAPI_LOG_H
#define KAPI_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include <kapi/types.h>

#if defined(__GNUC__)
#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LOG_PRINTF(f, a)
#endif

void log_set_level(kapi_log_level level);
bool log_enabled(kapi_log_level level);

/* One line: "2026-11-22T22:00:00.123Z warn message\n" on stderr. */
void log_msg(kapi_log_level level, const char *fmt, ...) LOG_PRINTF(2, 3);
/* The same with a source tag and an optional request id:
 * "... warn [jwt-auth] req=4f2a... message". TAG and ID may be NULL. */
void log_tagged(kapi_log_level level, const char *tag, const char *id, const char *fmt, ...)
    LOG_PRINTF(4, 5);

/* Directs the access log to "stderr", "off" or a file path (appended,
 * created 0640). Returns KAPI_EIO when the file cannot be opened; the
 * previous destination then stays. */
kapi_status log_access_open(const char *dest);
/* True when access lines are written anywhere. */
bool log_access_enabled(void);
/* Writes LEN bytes (one complete line, ending in '\n') to the access log. */
void log_access_write(const char *line, size_t len);
/* Closes an access-log file. */
void log_access_close(void);

#endif /* KAPI_LOG_H */
