/* tcapture.c -- the stderr capture of tcapture.h: fd 2 duplicated aside
 * and pointed at a tmpfile, read back into a static buffer at the end.
 * It does not capture stdout nor nest captures. */
#include "tcapture.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static char captured[TCAPTURE_MAX];
static int saved_stderr = -1;
static FILE *capture_file;

void
tcapture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

const char *
tcapture_end(void)
{
    if (!capture_file)
        return captured;
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    saved_stderr = -1;
    rewind(capture_file);
    size_t n = fread(captured, 1, sizeof(captured) - 1, capture_file);
    captured[n] = '\0';
    fclose(capture_file);
    capture_file = NULL;
    return captured;
}

bool
tcapture_active(void)
{
    return capture_file != NULL;
}

void
tcapture_assert_logged(const char *log, const char *line)
{
    if (!strstr(log, line))
        fail_msg("missing log line \"%s\" in:\n%s", line, log);
}
