/* log.c -- diagnostic and access log output (see log.h). Lines are
 * formatted into a stack buffer and written with a single write(2), so lines
 * from different threads never interleave. It keeps no queue: a slow
 * stderr slows the writer, which is the right pressure for a gateway log. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = KAPI_LOG_INFO;
static atomic_int access_fd = STDERR_FILENO; /* -1: off */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
log_set_level(kapi_log_level level)
{
    atomic_store(&min_level, (int)level);
}

bool
log_enabled(kapi_log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

static void
write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void vlog(kapi_log_level level, const char *tag, const char *id, const char *fmt, va_list ap)
    LOG_PRINTF(4, 0);

static void
vlog(kapi_log_level level, const char *tag, const char *id, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(line + len, sizeof(line) - len, ".%03ldZ %s ", ts.tv_nsec / 1000000,
                            level_names[level < 0 || level > 3 ? 3 : level]);
    if (tag)
        len += (size_t)snprintf(line + len, sizeof(line) - len, "[%s] ", tag);
    if (id)
        len += (size_t)snprintf(line + len, sizeof(line) - len, "req=%s ", id);
    int n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    len = n < 0 ? len : len + (size_t)n;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    write_all(STDERR_FILENO, line, len);
}

void
log_msg(kapi_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, NULL, fmt, ap);
    va_end(ap);
}

void
log_tagged(kapi_log_level level, const char *tag, const char *id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, tag, id, fmt, ap);
    va_end(ap);
}

kapi_status
log_access_open(const char *dest)
{
    int fd;
    if (!dest || strcmp(dest, "stderr") == 0)
        fd = STDERR_FILENO;
    else if (strcmp(dest, "off") == 0)
        fd = -1;
    else if ((fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0)
        return KAPI_EIO;
    int old = atomic_load(&access_fd);
    if (old > STDERR_FILENO && fd > STDERR_FILENO) {
        /* File to file (a reopen after rotation): replace the open file
         * under the same descriptor, so a writer holding the old number
         * never writes to a closed or reused one. */
        int rc = dup2(fd, old);
        close(fd);
        return rc < 0 ? KAPI_EIO : KAPI_OK;
    }
    atomic_store(&access_fd, fd);
    if (old > STDERR_FILENO) {
        /* A worker may still hold the old number: point it at /dev/null
         * instead of closing it, so a late write never lands in whatever
         * file or socket would reuse the number. One descriptor stays open
         * per switch away from a file (rare: a reload). */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, old);
            close(null);
        }
    }
    return KAPI_OK;
}

bool
log_access_enabled(void)
{
    return atomic_load_explicit(&access_fd, memory_order_relaxed) >= 0;
}

void
log_access_write(const char *line, size_t len)
{
    int fd = atomic_load_explicit(&access_fd, memory_order_relaxed);
    if (fd >= 0)
        write_all(fd, line, len);
}

void
log_access_close(void)
{
    log_access_open("off");
}
