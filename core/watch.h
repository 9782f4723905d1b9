/* watch.h -- development hot reload: watches the config file and every
 * module directory with inotify and calls back (debounced) when something
 * in them changes, so a rebuilt .so or an edited config is picked up with no
 * SIGHUP. Runs on the main thread's loop.
 *
 * It does not reload anything itself (main.c does, exactly as for SIGHUP)
 * and it does not decide what changed: any write, move or delete in a
 * watched place counts. Off unless the config says "watch": true. */
#ifndef KAPI_WATCH_H
#define KAPI_WATCH_H

#include "config.h"
#include "loop.h"

typedef struct watch watch;

/* Starts watching what CFG names (the config file's directory, filtered to
 * its name, and each module directory) on LP; ON_CHANGE(ARG) runs on LP's
 * thread DEBOUNCE_MS after the last of a burst of changes. Returns KAPI_EIO
 * with ERR filled when inotify cannot be set up. */
kapi_status watch_new(loop *lp, const config *cfg, unsigned debounce_ms,
                      void (*on_change)(void *arg), void *arg, watch **out, char *err,
                      size_t errlen);

/* Re-targets W to what CFG names (after a reload changed module_dirs). */
kapi_status watch_update(watch *w, const config *cfg, char *err, size_t errlen);

/* Stops watching and frees W. NULL is a no-op. */
void watch_free(watch *w);

#endif /* KAPI_WATCH_H */
