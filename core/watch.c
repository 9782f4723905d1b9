/* watch.c -- inotify-driven development reload (see watch.h). One inotify
 * fd in the main loop; a directory watch per module directory and one on
 * the config file's directory (editors save by writing a new file and
 * renaming it over the old one, which a watch on the file itself would
 * lose). A burst of events -- a linker writing a .so, an editor's save --
 * restarts one debounce timer; its expiry calls back once. */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"

enum { WATCH_EVENTS = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE };

struct watch {
    loop *lp;
    loop_io io;
    loop_timer debounce;
    unsigned debounce_ms;
    void (*on_change)(void *arg);
    void *arg;
    int config_wd;               /* the config file's directory */
    char *config_name;           /* the config file's name within it */
    bool config_dir_has_modules; /* the config's directory is a module dir too */
    int *wds;                    /* module directories */
    size_t nwds;
};

static void
on_debounced(loop_timer *t)
{
    watch *w = t->data;
    w->on_change(w->arg);
}

/* True when EV concerns something the watch cares about: a .so in a module
 * directory, or the config file itself. */
static bool
relevant(const watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_IGNORED) /* a watch drop_watches removed: not a change */
        return false;
    if (ev->len == 0)
        return false;
    if (ev->wd == w->config_wd && strcmp(ev->name, w->config_name) == 0)
        return true;
    if (ev->wd == w->config_wd && !w->config_dir_has_modules)
        return false;
    /* in a module directory only modules count: not an access log, say,
     * which a reload itself reopens */
    size_t n = strlen(ev->name);
    return n > 3 && strcmp(ev->name + n - 3, ".so") == 0;
}

static void
on_events(loop_io *io, uint32_t events)
{
    (void)events;
    watch *w = io->data;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool changed = false;
    ssize_t n;
    while ((n = read(io->fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            changed = changed || relevant(w, ev);
            p += sizeof(*ev) + ev->len;
        }
    }
    if (changed)
        loop_timer_start(w->lp, &w->debounce, w->debounce_ms);
}

static void
drop_watches(watch *w)
{
    for (size_t i = 0; i < w->nwds; i++)
        if (w->wds[i] >= 0 && w->wds[i] != w->config_wd)
            inotify_rm_watch(w->io.fd, w->wds[i]);
    if (w->config_wd >= 0)
        inotify_rm_watch(w->io.fd, w->config_wd);
    free(w->wds);
    free(w->config_name);
    w->wds = NULL;
    w->nwds = 0;
    w->config_wd = -1;
    w->config_name = NULL;
    w->config_dir_has_modules = false;
}

kapi_status
watch_update(watch *w, const config *cfg, char *err, size_t errlen)
{
    drop_watches(w);
    const char *slash = strrchr(cfg->file, '/');
    w->config_name = strdup(slash ? slash + 1 : cfg->file);
    w->wds = calloc(cfg->nmodule_dirs ? cfg->nmodule_dirs : 1, sizeof(*w->wds));
    if (!w->config_name || !w->wds) {
        snprintf(err, errlen, "watch: out of memory");
        return KAPI_ENOMEM;
    }
    w->config_wd = inotify_add_watch(w->io.fd, cfg->base_dir, WATCH_EVENTS);
    if (w->config_wd < 0) {
        snprintf(err, errlen, "watch %s: %s", cfg->base_dir, strerror(errno));
        return KAPI_EIO;
    }
    for (size_t i = 0; i < cfg->nmodule_dirs; i++, w->nwds++) {
        w->wds[i] = inotify_add_watch(w->io.fd, cfg->module_dirs[i], WATCH_EVENTS);
        if (w->wds[i] < 0) /* a module dir that does not exist yet is no error */
            log_msg(KAPI_LOG_WARN, "watch %s: %s", cfg->module_dirs[i], strerror(errno));
        else if (w->wds[i] == w->config_wd) /* inotify returns one wd per inode */
            w->config_dir_has_modules = true;
    }
    return KAPI_OK;
}

kapi_status
watch_new(loop *lp, const config *cfg, unsigned debounce_ms, void (*on_change)(void *arg),
          void *arg, watch **out, char *err, size_t errlen)
{
    *out = NULL;
    watch *w = calloc(1, sizeof(*w));
    if (!w)
        return KAPI_ENOMEM;
    w->lp = lp;
    w->debounce_ms = debounce_ms;
    w->on_change = on_change;
    w->arg = arg;
    w->config_wd = -1;
    loop_timer_init(&w->debounce, on_debounced, w);
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    w->io = (loop_io){.fd = fd, .fn = on_events, .data = w};
    kapi_status st = fd < 0 ? KAPI_EIO : watch_update(w, cfg, err, errlen);
    if (fd < 0)
        snprintf(err, errlen, "watch: inotify: %s", strerror(errno));
    if (st == KAPI_OK && (st = loop_io_add(lp, &w->io, EPOLLIN)) != KAPI_OK)
        snprintf(err, errlen, "watch: cannot add to the loop");
    if (st != KAPI_OK) {
        watch_free(w);
        return st;
    }
    *out = w;
    return KAPI_OK;
}

void
watch_free(watch *w)
{
    if (!w)
        return;
    loop_timer_stop(w->lp, &w->debounce);
    if (w->io.fd >= 0) {
        loop_io_remove(w->lp, &w->io);
        drop_watches(w);
        close(w->io.fd);
    }
    free(w->wds);
    free(w->config_name);
    free(w);
}
