/* origin.c -- kapi_test_origin: a small HTTP/1.1 backend (HTTP or HTTPS)
 * that kapi's integration tests proxy to. This file is the process: the
 * command line, the listening socket, the accept thread (one thread per
 * connection after that, conn.c) and the ways the process ends: SIGTERM or
 * SIGINT (exit 0), --max-seconds passing (exit 0) or, with
 * --die-with-parent, the parent going away. It does not speak HTTP.
 *
 * It prints exactly one line to stdout once it listens:
 *     listening on http://127.0.0.1:PORT      (https:// with --tls) */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test_origin.h"

origin_options origin_opts = {.name = "origin", .keepalive_ms = 60000};

static const char usage_text[] =
    "usage: kapi_test_origin [--listen HOST:PORT] [--name NAME] [--tls CERT KEY]\n"
    "                        [--keepalive-ms N] [--max-seconds N] [--unhealthy]\n"
    "                        [--die-with-parent]\n"
    "  --listen HOST:PORT   default 127.0.0.1:0 (port 0: an ephemeral port)\n"
    "  --name NAME          X-Origin header and /echo \"name\" (default origin)\n"
    "  --tls CERT KEY       serve HTTPS with these PEM files\n"
    "  --keepalive-ms N     close idle keep-alive connections after N ms (60000)\n"
    "  --max-seconds N      exit by itself after N s; 0: never (600)\n"
    "  --unhealthy          /health answers 503 until /health/up\n"
    "  --die-with-parent    exit when the parent process does\n";

typedef struct cli {
    const char *listen, *cert, *key;
    long max_seconds;
    bool die_with_parent;
} cli;

static int
usage(const char *why)
{
    if (why)
        fprintf(stderr, "kapi_test_origin: %s\n", why);
    fputs(usage_text, stderr);
    return 2;
}

static bool
parse_long(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max)
        return false;
    *out = v;
    return true;
}

/* Returns 0, or the exit status (2) after printing the usage. */
static int
parse_cli(int argc, char **argv, cli *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has1 = i + 1 < argc, has2 = i + 2 < argc;
        long v;
        if (!strcmp(a, "--listen") && has1) {
            o->listen = argv[++i];
        } else if (!strcmp(a, "--name") && has1) {
            origin_opts.name = argv[++i];
        } else if (!strcmp(a, "--tls") && has2) {
            o->cert = argv[++i];
            o->key = argv[++i];
        } else if (!strcmp(a, "--keepalive-ms") && has1) {
            if (!parse_long(argv[++i], 24L * 3600 * 1000, &v))
                return usage("--keepalive-ms wants 0..86400000");
            origin_opts.keepalive_ms = (int)v;
        } else if (!strcmp(a, "--max-seconds") && has1) {
            if (!parse_long(argv[++i], 7L * 24 * 3600, &o->max_seconds))
                return usage("--max-seconds wants 0..604800");
        } else if (!strcmp(a, "--unhealthy")) {
            stats_set_healthy(false);
        } else if (!strcmp(a, "--die-with-parent")) {
            o->die_with_parent = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            exit(0);
        } else {
            char msg[300];
            snprintf(msg, sizeof(msg), "bad or incomplete argument '%s'", a);
            return usage(msg);
        }
    }
    for (const char *p = origin_opts.name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return usage("--name must not hold control characters");
    origin_opts.tls = o->cert != NULL;
    return 0;
}

/* Opens the listening socket for "HOST:PORT" ("[v6]:PORT" too) and prints
 * the listening line. Returns the socket or -1 after printing why. */
static int
open_listener(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof(host)) {
        fprintf(stderr, "kapi_test_origin: --listen wants HOST:PORT, not '%s'\n", spec);
        return -1;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(h, colon + 1, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "kapi_test_origin: --listen %s: %s\n", spec, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "kapi_test_origin: --listen %s: %s\n", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    unsigned port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                   : ((struct sockaddr_in *)&sa)->sin_port);
    bool v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    printf("listening on %s://%s%s%s:%u\n", origin_opts.tls ? "https" : "http", v6 ? "[" : "", h,
           v6 ? "]" : "", port);
    fflush(stdout);
    return fd;
}

static void *
accept_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            /* EMFILE and friends: wait for connections to end, then retry. */
            if (errno != EINTR && errno != ECONNABORTED)
                nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
            continue;
        }
        conn_spawn(fd, stats_conn_opened());
    }
    return NULL;
}

/* Waits for SIGTERM or SIGINT (blocked in every thread) or MAX_SECONDS
 * (0: forever). */
static void
wait_for_end(long max_seconds)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += max_seconds;
    for (;;) {
        if (max_seconds == 0) {
            if (sigwaitinfo(&set, NULL) > 0)
                return;
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        struct timespec left = {end.tv_sec - now.tv_sec, end.tv_nsec - now.tv_nsec};
        if (left.tv_nsec < 0) {
            left.tv_sec--;
            left.tv_nsec += 1000000000L;
        }
        if (left.tv_sec < 0) {
            fprintf(stderr, "kapi_test_origin: --max-seconds %ld passed, exiting\n", max_seconds);
            return;
        }
        if (sigtimedwait(&set, NULL, &left) > 0)
            return;
    }
}

int
main(int argc, char **argv)
{
    cli o = {.listen = "127.0.0.1:0", .max_seconds = 600};
    int rc = parse_cli(argc, argv, &o);
    if (rc != 0)
        return rc;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread */
    signal(SIGPIPE, SIG_IGN);
    if (o.die_with_parent) {
        pid_t parent = getppid();
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) /* the parent left before prctl */
            return 0;
    }
    if (o.cert && tls_setup(o.cert, o.key) != 0)
        return 1;
    routes_init();

    int lfd = open_listener(o.listen);
    if (lfd < 0)
        return 1;
    pthread_t tid;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, accept_main, (void *)(intptr_t)lfd) != 0) {
        fprintf(stderr, "kapi_test_origin: cannot start the accept thread\n");
        return 1;
    }
    pthread_attr_destroy(&attr);
    wait_for_end(o.max_seconds);
    fflush(stdout);
    fflush(stderr);
    /* Connection threads may be mid-write: leave without running atexit
     * handlers or library destructors under them. */
    _exit(0);
}
