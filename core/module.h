/* module.h -- loads module .so files: dlopen from the configured
 * directories only, the ABI handshake, and versioned copies so a rebuilt
 * file really loads new code on reload.
 *
 * A loaded module is refcounted and shared by every generation that uses
 * the same unchanged file (same device, inode, size and mtime); a changed
 * file is copied to a unique private path and loaded beside the old one,
 * which stays mapped until its last generation releases it. It does not
 * create instances (generation.c) nor call hooks (chain.c). Thread-safe. */
#ifndef KAPI_MODULE_LOADER_H
#define KAPI_MODULE_LOADER_H

#include <stddef.h>

#include <kapi/module.h>

typedef struct module module;

/* Finds NAME.so in the first of the NDIRS directories DIRS that holds it,
 * refuses a group- or world-writable file, loads it (or shares an already
 * loaded identical file), calls its entry with HOST and checks the
 * descriptor. On success *OUT holds one reference (module_release).
 * On failure returns KAPI_ENOTFOUND, KAPI_EABI, KAPI_EIO or KAPI_EINVAL and
 * writes one line to ERR naming the file and what is wrong, e.g.
 *   "/m/x.so: built for kapi ABI 2.0, this kapi provides ABI 1.0 (major
 *    versions must match)"
 *   "/m/x.so: no entry symbol kapi_module_entry (not a kapi module? build
 *    it with KAPI_MODULE())".
 * NAME is [A-Za-z0-9_.-] without "..". HOST is handed to the entry only
 * when the file is really loaded: a shared module keeps the table it was
 * first loaded with, so HOST must stay valid (and should be the same
 * table) until the module's last release. */
kapi_status module_load(const char *const *dirs, size_t ndirs, const char *name,
                        const kapi_host *host, module **out, char *err, size_t errlen);

/* The module's descriptor; valid while the module is referenced. */
const kapi_module *module_desc(const module *m);
/* The path the module was found at (not the private copy). */
const char *module_path(const module *m);

/* Drops one reference; the last one dlcloses. NULL is a no-op. */
void module_release(module *m);

#endif /* KAPI_MODULE_LOADER_H */
