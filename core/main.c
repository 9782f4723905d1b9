/* main.c -- the kapi command line: `kapi run -c FILE`, `kapi check -c FILE`
 * and `kapi version`; and the main thread's job while serving: signals.
 * SIGHUP builds a new generation beside the running one and swaps it in
 * (a bad config is reported and the old one keeps serving); SIGTERM and
 * SIGINT stop accepting, drain in-flight requests up to the configured
 * deadline, and exit 0. The main thread serves no traffic (server.c's
 * workers do). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "generation.h"
#include "host.h"
#include "log.h"
#include "loop.h"
#include "origin.h"
#include "server.h"
#include "store.h"
#include "watch.h"

enum { DRAIN_POLL_MS = 10, ABORT_GRACE_MS = 100, WATCH_DEBOUNCE_MS = 200 };

typedef struct runner {
    const char *file;
    loop *lp;
    server *srv;
    loop_io signals;
    loop_timer drain_timer;
    loop_timer sync_timer;
    watch *watcher; /* "watch": true -- development hot reload */
    unsigned sync_interval_ms;
    uint64_t drain_deadline;
    bool draining;
    bool aborting; /* the drain deadline passed; stopping after a grace period */
} runner;

static void
usage(FILE *f)
{
    fputs("usage: kapi run -c FILE     serve with the config FILE\n"
          "       kapi check -c FILE   validate FILE, load its modules, print each route's chain\n"
          "       kapi version         print the version and the SDK ABI version\n",
          f);
}

/* Applies a generation's process-wide settings (log level, access log). */
static kapi_status
apply_settings(const config *cfg)
{
    if (log_access_open(cfg->access_log) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "%s: log.access: cannot open %s: %s", cfg->file, cfg->access_log,
                strerror(errno));
        return KAPI_EIO;
    }
    log_set_level(cfg->log_level); /* only once the whole config is accepted */
    return KAPI_OK;
}

static void on_watched_change(void *arg);

/* Starts, re-targets or stops the development watcher as CFG says. */
static void
apply_watch(runner *rn, const config *cfg)
{
    char err[512];
    if (!cfg->watch) {
        watch_free(rn->watcher);
        rn->watcher = NULL;
        return;
    }
    kapi_status st = rn->watcher ? watch_update(rn->watcher, cfg, err, sizeof(err))
                                 : watch_new(rn->lp, cfg, WATCH_DEBOUNCE_MS, on_watched_change, rn,
                                             &rn->watcher, err, sizeof(err));
    if (st != KAPI_OK)
        log_msg(KAPI_LOG_ERROR, "%s (hot reload by file changes is off)", err);
}

static void
reload(runner *rn)
{
    char err[1024];
    generation *g = NULL;
    log_msg(KAPI_LOG_INFO, "reloading %s", rn->file);
    if (generation_build(rn->file, host_table(), &g, err, sizeof(err)) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "reload failed, the running generation keeps serving: %s", err);
        return;
    }
    if (apply_settings(g->cfg) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "reload failed, the running generation keeps serving");
        generation_release(g);
        return;
    }
    apply_watch(rn, g->cfg);
    uint64_t id = g->id;
    generation_publish(g);
    server_refresh(rn->srv);
    log_msg(KAPI_LOG_INFO, "generation %llu is serving", (unsigned long long)id);
}

static void
on_watched_change(void *arg)
{
    log_msg(KAPI_LOG_INFO, "a watched file changed");
    reload(arg);
}

static void
on_sync_tick(loop_timer *t)
{
    runner *rn = t->data;
    store_sync();
    loop_timer_start(rn->lp, t, rn->sync_interval_ms);
}

static void
on_drain_tick(loop_timer *t)
{
    runner *rn = t->data;
    unsigned left = server_inflight(rn->srv);
    if (rn->aborting || (left == 0 && server_connections(rn->srv) == 0)) {
        loop_stop(rn->lp);
        return;
    }
    if (loop_now_ms(rn->lp) >= rn->drain_deadline) {
        /* Paused requests get a 503 rather than a dropped connection; one
         * short grace period lets those answers go out. */
        if (left)
            log_msg(KAPI_LOG_WARN, "shutdown deadline passed with %u requests in flight", left);
        server_abort_paused(rn->srv);
        rn->aborting = true;
        loop_timer_start(rn->lp, t, ABORT_GRACE_MS);
        return;
    }
    loop_timer_start(rn->lp, t, DRAIN_POLL_MS);
}

static void
begin_shutdown(runner *rn, const char *why)
{
    if (rn->draining)
        return;
    rn->draining = true;
    generation *g = generation_current();
    unsigned deadline = g ? g->cfg->limits.shutdown_timeout_ms : 0;
    generation_release(g);
    log_msg(KAPI_LOG_INFO, "%s: draining (up to %u ms)", why, deadline);
    server_drain(rn->srv);
    rn->drain_deadline = loop_now_ms(rn->lp) + deadline;
    loop_timer_start(rn->lp, &rn->drain_timer, 0);
}

static void
on_signal(loop_io *io, uint32_t events)
{
    (void)events;
    runner *rn = io->data;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP)
            reload(rn);
        else
            begin_shutdown(rn, si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
    }
}

static int
cmd_check(const char *file)
{
    char err[1024];
    generation *g = NULL;
    if (generation_build(file, host_table(), &g, err, sizeof(err)) != KAPI_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    generation_print(g, stdout);
    printf("%s: OK (%zu routes)\n", file, g->nroutes);
    generation_release(g);
    return 0;
}

static int
cmd_run(const char *file)
{
    runner rn = {.file = file};
    char err[1024];
    generation *g = NULL;
    int rc = 1;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* Blocked before any thread starts, so only the signalfd sees them. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The store opens before the first generation, so modules' create()
     * can already use it; its settings apply for the life of the process. */
    config *first = NULL;
    if (config_load(file, &first, err, sizeof(err)) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "%s", err);
        return 1;
    }
    rn.sync_interval_ms = first->store.sync_interval_ms;
    bool durable = first->store.durable;
    if (store_open(first->data_dir, first->store.map_bytes, first->store.durable, err,
                   sizeof(err)) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "%s: store: %s", file, err);
        config_free(first);
        return 1;
    }
    if (generation_from_config(first, host_table(), &g, err, sizeof(err)) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "%s", err);
        store_close();
        return 1;
    }
    if (apply_settings(g->cfg) != KAPI_OK) {
        store_close();
        generation_release(g);
        return 1;
    }
    const config *cfg = g->cfg;
    if (server_new(cfg, &rn.srv, err, sizeof(err)) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "%s", err);
        generation_release(g);
        store_close();
        return 1;
    }
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0 || loop_new(&rn.lp) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "cannot set up signal handling: %s", strerror(errno));
        generation_publish(g); /* released below with the rest */
        goto out;
    }
    rn.signals = (loop_io){.fd = sfd, .fn = on_signal, .data = &rn};
    loop_timer_init(&rn.drain_timer, on_drain_tick, &rn);
    loop_timer_init(&rn.sync_timer, on_sync_tick, &rn);
    if (!durable) /* a durable store syncs every commit */
        loop_timer_start(rn.lp, &rn.sync_timer, rn.sync_interval_ms);
    apply_watch(&rn, cfg);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const char *h = cfg->listeners[i].host;
        log_msg(KAPI_LOG_INFO, "listening on http://%s%s%s:%u", strchr(h, ':') ? "[" : "", h,
                strchr(h, ':') ? "]" : "", server_port(rn.srv, i));
    }
    log_msg(KAPI_LOG_INFO, "generation %llu is serving (%zu routes)", (unsigned long long)g->id,
            g->nroutes);
    generation_publish(g);

    if (loop_io_add(rn.lp, &rn.signals, EPOLLIN) != KAPI_OK || server_start(rn.srv) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "cannot start the workers: %s", strerror(errno));
        goto out;
    }
    if (loop_run(rn.lp) == KAPI_OK)
        rc = 0;
    log_msg(KAPI_LOG_INFO, "stopped");
out:
    server_free(rn.srv);
    generation_publish(NULL);
    origin_registry_free(); /* the workers' pools are gone with server_free */
    watch_free(rn.watcher);
    loop_free(rn.lp);
    if (sfd >= 0)
        close(sfd);
    store_close();
    log_access_close();
    return rc;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("kapi %s (SDK ABI %d.%d)\n", KAPI_VERSION, KAPI_ABI_MAJOR, KAPI_ABI_MINOR);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    const char *file = NULL;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt != 'c') {
            usage(stderr);
            return 2;
        }
        file = optarg;
    }
    if (!file || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "check") == 0)
        return cmd_check(file);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(file);
    usage(stderr);
    return 2;
}
