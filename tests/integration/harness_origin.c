/* harness_origin.c -- the harness's test origins (see harness.h): starts
 * tests/origin's kapi_test_origin as a child on an ephemeral port, learns
 * the port from its one stdout line, reads its /stats counters and stops
 * it. The origin is started with --die-with-parent and --max-seconds, so a
 * crashed test leaves no process behind. It asserts nothing. */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ORIGIN_MAX_ARGS = 24 };

/* Reads the "listening on http(s)://127.0.0.1:PORT" line from FD. */
static unsigned
read_port(int fd)
{
    char line[256];
    size_t n = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (n < sizeof(line) - 1) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left =
            10000 - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return 0;
        ssize_t r = read(fd, line + n, 1);
        if (r <= 0)
            return 0;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    const char *colon = strrchr(line, ':');
    return strstr(line, "listening on ") && colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
}

int
kh_origin_start(kh_origin *o, const char *name, const char *const *args)
{
    const char *bin = getenv("KAPI_ORIGIN_BIN");
    if (!bin || !*bin)
        bin = "build/tests/origin/kapi_test_origin";
    memset(o, 0, sizeof(*o));
    o->pid = -1;
    snprintf(o->name, sizeof(o->name), "%s", name);
    const char *argv[ORIGIN_MAX_ARGS + 8];
    size_t n = 0;
    argv[n++] = bin;
    argv[n++] = "--name";
    argv[n++] = name;
    argv[n++] = "--max-seconds";
    argv[n++] = "300";
    argv[n++] = "--die-with-parent";
    for (size_t i = 0; args && args[i] && i < ORIGIN_MAX_ARGS; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    o->pid = pid;
    o->port = read_port(pipefd[0]);
    close(pipefd[0]);
    if (!o->port) {
        fprintf(stderr, "harness: origin %s (%s) did not start\n", name, bin);
        kh_origin_stop(o);
        return -1;
    }
    return 0;
}

void
kh_origin_stop(kh_origin *o)
{
    if (o->pid <= 0)
        return;
    kill(o->pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(o->pid, NULL, WNOHANG) == o->pid) {
            o->pid = -1;
            return;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(o->pid, SIGKILL);
    waitpid(o->pid, NULL, 0);
    o->pid = -1;
}

int
kh_origin_get(kh_origin *o, const char *path, kh_resp *out)
{
    kh_server direct = {.pid = -1, .port = o->port};
    return kh_get(&direct, path, out);
}

long
kh_origin_stat(kh_origin *o, const char *key)
{
    kh_resp r;
    long v = -1;
    char needle[64];
    snprintf(needle, sizeof(needle), "\"%s\":", key);
    if (kh_origin_get(o, "/stats", &r) == 0 && r.status == 200) {
        const char *p = strstr(r.body, needle);
        if (p)
            v = strtol(p + strlen(needle), NULL, 10);
    }
    kh_resp_free(&r);
    return v;
}

void
kh_origin_reset_stats(kh_origin *o)
{
    kh_resp r;
    kh_origin_get(o, "/stats/reset", &r);
    kh_resp_free(&r);
}

char *
kh_subst(const char *tmpl, const char *name, const char *value)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "@%s@", name);
    size_t pl = strlen(pat), vl = strlen(value), count = 0;
    for (const char *p = strstr(tmpl, pat); p; p = strstr(p + pl, pat))
        count++;
    char *out = malloc(strlen(tmpl) + count * vl + 1);
    if (!out)
        return NULL;
    char *w = out;
    for (const char *p = tmpl;;) {
        const char *hit = strstr(p, pat);
        if (!hit) {
            strcpy(w, p);
            break;
        }
        memcpy(w, p, (size_t)(hit - p));
        w += hit - p;
        memcpy(w, value, vl);
        w += vl;
        p = hit + pl;
    }
    return out;
}
