/* module.c -- finds a module .so in the configured directories, refuses
 * files others could have written, loads a private copy of it and checks
 * its descriptor (DESIGN.md §3 rules 1, 2 and 9, §7).
 *
 * Why a copy: dlopen dedups by path (and by device and inode), so loading a
 * rebuilt NAME.so again would hand back the old code. Each changed file is
 * copied to NAME.<serial>.so in a private 0700 directory made with mkdtemp
 * under $TMPDIR (or /tmp), dlopened with RTLD_NOW | RTLD_LOCAL, and the copy
 * is unlinked right away: the mapping keeps the inode alive, so its number
 * cannot be reused (and confuse dlopen's dedup) while the copy is loaded,
 * and nothing is left on disk. $TMPDIR must therefore not be mounted
 * noexec. The private directory is created on the first load and removed
 * when the last loaded module is released (it is empty by then); the next
 * load creates a new one.
 *
 * An unchanged file (same path, device, inode, size and mtime) is shared:
 * one dlopen, one call of the entry, a reference count. A process-wide
 * mutex guards the cache and is held for a whole load, so two threads
 * never load the same file twice. It does not create instances
 * (generation.c) nor call hooks (chain.c). */
#include "module.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct module {
    module *next; /* in the cache */
    unsigned long refs;
    char *path; /* where the module was found */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
    void *handle; /* dlopen's, of the private copy */
    const kapi_module *desc;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static module *cache;        /* every loaded module; guarded by cache_lock */
static char *private_dir;    /* NULL until the first load needs it */
static unsigned long serial; /* numbers the private copies */

/* ---- error messages ---- */

static void say(char *err, size_t errlen, const char *fmt, ...) KAPI_PRINTF(3, 4);
static void say_more(char *err, size_t errlen, const char *fmt, ...) KAPI_PRINTF(3, 4);

static void
say(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Appends to ERR (already NUL-terminated), truncating quietly. */
static void
say_more(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    size_t used = strnlen(err, errlen - 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + used, errlen - used, fmt, ap);
    va_end(ap);
}

/* ---- finding the file ---- */

/* True for [A-Za-z0-9_.-]+ without "..": NAME then cannot leave its
 * directory nor carry a path. */
static bool
name_is_valid(const char *name)
{
    if (!name[0] || strstr(name, ".."))
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* NAME shown in a message: controls become '?' so ERR stays one line. */
static const char *
printable(const char *name, char *buf, size_t len)
{
    size_t i = 0;
    for (; name[i] && i + 1 < len; i++)
        buf[i] = (name[i] < 0x20 || name[i] == 0x7f) ? '?' : name[i];
    buf[i] = '\0';
    return buf;
}

/* Opens NAME.so in the first of DIRS that has it; on success *FD is open
 * (O_NONBLOCK so a FIFO cannot hang us) and PATH holds its name. */
static kapi_status
find_file(const char *const *dirs, size_t ndirs, const char *name, char *path, int *fd, char *err,
          size_t errlen)
{
    for (size_t i = 0; i < ndirs; i++) {
        int n = snprintf(path, PATH_MAX, "%s/%s.so", dirs[i], name);
        if (n < 0 || n >= PATH_MAX) {
            say(err, errlen, "module \"%s\": path too long in %s", name, dirs[i]);
            return KAPI_EINVAL;
        }
        *fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (*fd >= 0)
            return KAPI_OK;
        if (errno != ENOENT && errno != ENOTDIR) {
            say(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            return KAPI_EIO;
        }
    }
    say(err, errlen, "module \"%s\": no %s.so in ", name, name);
    for (size_t i = 0; i < ndirs; i++)
        say_more(err, errlen, "%s%s", i ? ", " : "", dirs[i]);
    if (ndirs == 0)
        say_more(err, errlen, "(no module directories configured)");
    return KAPI_ENOTFOUND;
}

/* A regular file nobody but its owner (and root) could have written. */
static kapi_status
check_file(const char *path, const struct stat *st, char *err, size_t errlen)
{
    if (!S_ISREG(st->st_mode)) {
        say(err, errlen, "%s: not a regular file", path);
        return KAPI_EINVAL;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        say(err, errlen, "%s: refusing a group- or world-writable module (mode %04o)", path,
            (unsigned)(st->st_mode & 07777));
        return KAPI_EINVAL;
    }
    return KAPI_OK;
}

/* ---- the private copy ---- */

static kapi_status
make_private_dir(char *err, size_t errlen)
{
    if (private_dir)
        return KAPI_OK;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !tmp[0])
        tmp = "/tmp";
    char *dir = NULL;
    if (asprintf(&dir, "%s/kapi-modules-XXXXXX", tmp) < 0) {
        say(err, errlen, "out of memory");
        return KAPI_ENOMEM;
    }
    if (!mkdtemp(dir)) { /* mkdtemp makes it 0700 */
        say(err, errlen, "cannot create a private module directory in %s: %s", tmp,
            strerror(errno));
        free(dir);
        return KAPI_EIO;
    }
    private_dir = dir;
    return KAPI_OK;
}

/* Copies SIZE bytes from SRC to DST, which must come out exactly SIZE
 * bytes long (a file truncated or grown while we read is refused). */
static kapi_status
copy_bytes(int src, int dst, off_t size, const char *path, char *err, size_t errlen)
{
    char buf[64 * 1024];
    off_t total = 0;
    for (;;) {
        ssize_t n = read(src, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            say(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            return KAPI_EIO;
        }
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(dst, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                say(err, errlen, "%s: cannot copy to %s: %s", path, private_dir, strerror(errno));
                return KAPI_EIO;
            }
            done += w;
        }
        total += n;
    }
    if (total != size) {
        say(err, errlen, "%s: changed while being copied", path);
        return KAPI_EIO;
    }
    return KAPI_OK;
}

/* Creates the private copy's file and names it in COPY. When the private
 * directory has vanished (a /tmp cleaner removing an old empty directory
 * under a long-running gateway), makes a new one and tries once more. */
static kapi_status
create_copy(const char *name, const char *path, char *copy, int *fd, char *err, size_t errlen)
{
    for (int attempt = 0;; attempt++) {
        kapi_status ret = make_private_dir(err, errlen);
        if (ret != KAPI_OK)
            return ret;
        int n = snprintf(copy, PATH_MAX, "%s/%s.%lu.so", private_dir, name, ++serial);
        if (n < 0 || n >= PATH_MAX) {
            say(err, errlen, "%s: private copy path too long", path);
            return KAPI_EINVAL;
        }
        *fd = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
        if (*fd >= 0)
            return KAPI_OK;
        if (errno != ENOENT || attempt > 0) {
            say(err, errlen, "%s: cannot copy to %s: %s", path, private_dir, strerror(errno));
            return KAPI_EIO;
        }
        free(private_dir);
        private_dir = NULL;
    }
}

/* dlopens a private copy of the file open on SRC; the copy is unlinked
 * before returning, whatever happened. */
static kapi_status
open_copy(int src, const struct stat *st, const char *name, const char *path, void **handle,
          char *err, size_t errlen)
{
    char copy[PATH_MAX];
    int dst;
    kapi_status ret = create_copy(name, path, copy, &dst, err, errlen);
    if (ret != KAPI_OK)
        return ret;
    ret = copy_bytes(src, dst, st->st_size, path, err, errlen);
    if (close(dst) != 0 && ret == KAPI_OK) {
        say(err, errlen, "%s: cannot copy to %s: %s", path, private_dir, strerror(errno));
        ret = KAPI_EIO;
    }
    if (ret == KAPI_OK) {
        *handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
        if (!*handle) {
            const char *why = dlerror();
            say(err, errlen, "%s: cannot load: %s", path, why ? why : "unknown dlopen error");
            ret = KAPI_EIO;
        }
    }
    unlink(copy);
    return ret;
}

/* ---- the handshake ---- */

static kapi_status
check_desc(const kapi_module *d, const char *path, char *err, size_t errlen)
{
    if (d->abi_major != KAPI_ABI_MAJOR) {
        say(err, errlen,
            "%s: built for kapi ABI %u.%u, this kapi provides ABI %u.%u (major versions must "
            "match)",
            path, (unsigned)d->abi_major, (unsigned)d->abi_minor, KAPI_ABI_MAJOR, KAPI_ABI_MINOR);
        return KAPI_EABI;
    }
    if (d->abi_minor > KAPI_ABI_MINOR) {
        say(err, errlen,
            "%s: needs kapi ABI %u.%u, this kapi provides ABI %u.%u (upgrade kapi or rebuild "
            "the module against this kapi's SDK)",
            path, (unsigned)d->abi_major, (unsigned)d->abi_minor, KAPI_ABI_MAJOR, KAPI_ABI_MINOR);
        return KAPI_EABI;
    }
    /* Only now is the rest of the layout known to be ours. */
    const char *bad = NULL;
    if (!d->name || !d->name[0])
        bad = "no name";
    else if (d->kind != KAPI_MODULE_PLUGIN && d->kind != KAPI_MODULE_FUNCTION)
        bad = "kind is neither KAPI_MODULE_PLUGIN nor KAPI_MODULE_FUNCTION";
    else if (d->kind == KAPI_MODULE_FUNCTION && !d->handle)
        bad = "a function without handle";
    if (bad) {
        say(err, errlen, "%s: invalid descriptor: %s", path, bad);
        return KAPI_EINVAL;
    }
    return KAPI_OK;
}

/* Calls the entry of the freshly loaded HANDLE and checks its answer. */
static kapi_status
handshake(void *handle, const kapi_host *host, const char *path, const kapi_module **desc,
          char *err, size_t errlen)
{
    kapi_module_entry_fn entry;
    /* ISO C has no function-pointer conversion from void *; POSIX
     * guarantees this one works. */
    *(void **)&entry = dlsym(handle, KAPI_ENTRY_SYMBOL);
    if (!entry) {
        say(err, errlen,
            "%s: no entry symbol " KAPI_ENTRY_SYMBOL
            " (not a kapi module? build it with KAPI_MODULE())",
            path);
        return KAPI_EINVAL;
    }
    const kapi_module *d = entry(host);
    if (!d) {
        say(err, errlen, "%s: entry returned no descriptor", path);
        return KAPI_EINVAL;
    }
    kapi_status ret = check_desc(d, path, err, errlen);
    if (ret == KAPI_OK)
        *desc = d;
    return ret;
}

/* ---- the cache (cache_lock held) ---- */

static module *
cache_find(const char *path, const struct stat *st)
{
    for (module *m = cache; m; m = m->next)
        if (m->dev == st->st_dev && m->ino == st->st_ino && m->size == st->st_size &&
            m->mtim.tv_sec == st->st_mtim.tv_sec && m->mtim.tv_nsec == st->st_mtim.tv_nsec &&
            strcmp(m->path, path) == 0)
            return m;
    return NULL;
}

/* Loads the file open on FD as a new cache entry. */
static kapi_status
load_new(int fd, const struct stat *st, const char *name, const char *path, const kapi_host *host,
         module **out, char *err, size_t errlen)
{
    module *m = calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(path))) {
        free(m);
        say(err, errlen, "out of memory");
        return KAPI_ENOMEM;
    }
    kapi_status ret = open_copy(fd, st, name, path, &m->handle, err, errlen);
    if (ret == KAPI_OK)
        ret = handshake(m->handle, host, path, &m->desc, err, errlen);
    if (ret != KAPI_OK) {
        if (m->handle)
            dlclose(m->handle);
        free(m->path);
        free(m);
        return ret;
    }
    m->refs = 1;
    m->dev = st->st_dev;
    m->ino = st->st_ino;
    m->size = st->st_size;
    m->mtim = st->st_mtim;
    m->next = cache;
    cache = m;
    *out = m;
    return KAPI_OK;
}

/* Called when the cache has just become empty. */
static void
drop_private_dir(void)
{
    if (!private_dir)
        return;
    rmdir(private_dir); /* empty: every copy was unlinked after dlopen */
    free(private_dir);
    private_dir = NULL;
}

/* ---- the API ---- */

kapi_status
module_load(const char *const *dirs, size_t ndirs, const char *name, const kapi_host *host,
            module **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out || !host || !name || (ndirs && !dirs)) {
        say(err, errlen, "module_load: invalid arguments");
        return KAPI_EINVAL;
    }
    *out = NULL;
    if (!name_is_valid(name)) {
        char shown[65];
        say(err, errlen,
            "module \"%s\": invalid name (use letters, digits, '_', '-' and '.', "
            "without \"..\")",
            printable(name, shown, sizeof(shown)));
        return KAPI_EINVAL;
    }

    char path[PATH_MAX];
    int fd = -1;
    kapi_status ret = find_file(dirs, ndirs, name, path, &fd, err, errlen);
    if (ret != KAPI_OK)
        return ret;

    /* fstat the open file: what we check is what we copy. */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        say(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        ret = KAPI_EIO;
        goto out;
    }
    if ((ret = check_file(path, &st, err, errlen)) != KAPI_OK)
        goto out;

    pthread_mutex_lock(&cache_lock);
    module *m = cache_find(path, &st);
    if (m) {
        m->refs++;
        *out = m;
    } else {
        ret = load_new(fd, &st, name, path, host, out, err, errlen);
        if (!cache)
            drop_private_dir(); /* the first load failed: leave nothing behind */
    }
    pthread_mutex_unlock(&cache_lock);
out:
    close(fd);
    return ret;
}

const kapi_module *
module_desc(const module *m)
{
    return m->desc;
}

const char *
module_path(const module *m)
{
    return m->path;
}

void
module_release(module *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&cache_lock);
    if (--m->refs == 0) {
        module **pp = &cache;
        while (*pp != m)
            pp = &(*pp)->next;
        *pp = m->next;
        dlclose(m->handle);
        free(m->path);
        free(m);
        if (!cache)
            drop_private_dir();
    }
    pthread_mutex_unlock(&cache_lock);
}
