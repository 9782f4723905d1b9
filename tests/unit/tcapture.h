/* tcapture.h -- captures what a unit test writes to stderr (where log.c
 * writes its lines) between tcapture_begin and tcapture_end, so the test
 * can assert on log lines.
 *
 * One capture at a time, on file descriptor 2 itself, so it sees writes
 * from every thread and from code that bypasses stdio. It does not parse
 * log lines nor filter them, and keeps only the first TCAPTURE_MAX - 1
 * bytes. */
#ifndef KAPI_TESTS_TCAPTURE_H
#define KAPI_TESTS_TCAPTURE_H

#include <stdbool.h>

#define TCAPTURE_MAX 32768

/* Sends stderr to a temporary file until tcapture_end. Fails the test
 * when it cannot. */
void tcapture_begin(void);

/* Restores stderr and returns what was written meanwhile, NUL-terminated;
 * borrowed until the next tcapture_end. With no capture in progress, the
 * last capture's text. */
const char *tcapture_end(void);

/* Whether a capture is in progress: a teardown ends one a failed test
 * left, to show what it logged. */
bool tcapture_active(void);

/* Fails the test, showing LOG, unless LOG contains LINE. */
void tcapture_assert_logged(const char *log, const char *line);

#endif
