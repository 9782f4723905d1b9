/* harness.c -- starts and drives the real kapi binary for integration
 * tests (see harness.h). kapi listens on port 0; the harness learns the
 * port from kapi's "listening on" log line, so tests never race for ports.
 * It does not assert: tests decide what a response must be. */
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *
env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Reads the whole file PATH into a malloc'd NUL-terminated string. */
static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Appends S with every placeholder replaced. */
static char *
substitute(const kh_server *s, const char *text)
{
    const char *keys[] = {"@FUNCS@", "@TMODS@", "@DIR@"};
    const char *vals[] = {env_or("KAPI_MODULE_DIR", "build/modules"),
                          env_or("KAPI_TEST_MODULE_DIR", "build/tests/modules"), s->dir};
    size_t cap = strlen(text) * 2 + 4096, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = text; *p;) {
        bool hit = false;
        for (size_t k = 0; k < 3; k++) {
            size_t kl = strlen(keys[k]), vl = strlen(vals[k]);
            if (strncmp(p, keys[k], kl) == 0) {
                if (len + vl + 1 >= cap) {
                    free(out);
                    return NULL;
                }
                memcpy(out + len, vals[k], vl);
                len += vl;
                p += kl;
                hit = true;
                break;
            }
        }
        if (!hit) {
            if (len + 2 >= cap) {
                free(out);
                return NULL;
            }
            out[len++] = *p++;
        }
    }
    out[len] = '\0';
    return out;
}

int
kh_write_config(kh_server *s, const char *config_json)
{
    char *text = substitute(s, config_json);
    if (!text)
        return -1;
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->config);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f) {
        rc = fputs(text, f) < 0 ? -1 : 0;
        if (fclose(f) != 0 || rename(tmp, s->config) != 0)
            rc = -1;
    }
    free(text);
    return rc;
}

int
kh_prepare(kh_server *s, const char *config_json)
{
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    snprintf(s->dir, sizeof(s->dir), "%s/kapi-it-XXXXXX", env_or("TMPDIR", "/tmp"));
    if (!mkdtemp(s->dir))
        return -1;
    snprintf(s->config, sizeof(s->config), "%s/kapi.json", s->dir);
    snprintf(s->log, sizeof(s->log), "%s/kapi.log", s->dir);
    return kh_write_config(s, config_json);
}

bool
kh_log_has(kh_server *s, const char *needle)
{
    char *text = slurp(s->log);
    bool has = text && strstr(text, needle);
    free(text);
    return has;
}

bool
kh_wait_log(kh_server *s, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (kh_log_has(s, needle))
            return true;
        sleep_ms(10);
    }
    return false;
}

static void
dump_log(kh_server *s)
{
    char *text = slurp(s->log);
    fprintf(stderr, "---- kapi log (%s) ----\n%s\n----\n", s->log, text ? text : "(none)");
    free(text);
}

int
kh_start(kh_server *s)
{
    const char *bin = env_or("KAPI_BIN", "build/core/kapi");
    s->port = 0;
    if (truncate(s->log, 0) != 0 && errno != ENOENT)
        return -1; /* a restart must not read the previous run's port */
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
        }
        execl(bin, bin, "run", "-c", s->config, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    for (int waited = 0; waited < 10000; waited += 10) {
        char *text = slurp(s->log);
        const char *p = text ? strstr(text, "listening on http://") : NULL;
        const char *colon = p ? strrchr(p, ':') : NULL;
        char *nl = p ? strchr(p, '\n') : NULL;
        if (p && nl) {
            *nl = '\0';
            colon = strrchr(p, ':');
            s->port = (unsigned)strtoul(colon + 1, NULL, 10);
        }
        free(text);
        if (s->port)
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = -1;
            dump_log(s);
            return -1;
        }
        sleep_ms(10);
    }
    dump_log(s);
    return -1;
}

int
kh_launch(kh_server *s, const char *config_json)
{
    if (kh_prepare(s, config_json) != 0)
        return -1;
    return kh_start(s);
}

/* ---- HTTP ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

/* Appends a received chunk; the buffer doubles, so a 10 MB body costs a
 * few reallocs, not one per chunk (quadratic under ASan). */
static size_t
collect(char *data, size_t size, size_t n, void *arg)
{
    buf *b = arg;
    size_t add = size * n;
    if (b->len + add + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + add + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, add);
    b->len += add;
    b->p[b->len] = '\0';
    return add;
}

/* Keeps only the last response's header block (after 100 Continue). */
static size_t
collect_header(char *data, size_t size, size_t n, void *arg)
{
    buf *b = arg;
    if (size * n > 5 && strncmp(data, "HTTP/", 5) == 0)
        b->len = 0;
    return collect(data, size, n, arg);
}

int
kh_request(kh_server *s, const char *method, const char *path, const char *const *headers,
           const char *body, size_t body_len, kh_resp *out)
{
    memset(out, 0, sizeof(*out));
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[2048];
    snprintf(url, sizeof(url), "http://%s:%u%s", s->addr ? s->addr : "127.0.0.1", s->port, path);
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    buf b = {0}, h = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &out->total_s);
    }
    out->body = b.p ? b.p : strdup("");
    out->body_len = b.len;
    out->headers = h.p ? h.p : strdup("");
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

int
kh_get(kh_server *s, const char *path, kh_resp *out)
{
    return kh_request(s, "GET", path, NULL, NULL, 0, out);
}

void
kh_resp_free(kh_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

const char *
kh_header(const kh_resp *r, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t ll = end ? (size_t)(end - line) : strlen(line);
        if (ll > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(line + ll - v);
            if (vl >= len)
                vl = len - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        line = end ? end + 2 : line + ll;
    }
    return NULL;
}

/* ---- signals and lifecycle ---- */

static int
count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

int
kh_reload(kh_server *s)
{
    char *text = slurp(s->log);
    int served = count(text, "is serving"), failed = count(text, "reload failed");
    free(text);
    kill(s->pid, SIGHUP);
    for (int waited = 0; waited < 10000; waited += 10) {
        text = slurp(s->log);
        int now_served = count(text, "is serving"), now_failed = count(text, "reload failed");
        free(text);
        if (now_served > served)
            return 1;
        if (now_failed > failed)
            return 0;
        sleep_ms(10);
    }
    return -1;
}

int
kh_signal_wait(kh_server *s, int sig, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        sleep_ms(5);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = -1;
    return -1;
}

static void
remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: could not remove %s\n", dir);
}

int
kh_stop(kh_server *s)
{
    int rc = s->pid > 0 ? kh_signal_wait(s, SIGTERM, 5000) : 0;
    if (rc != 0)
        dump_log(s);
    if (s->dir[0] && !getenv("KAPI_KEEP_TEST_DIRS"))
        remove_tree(s->dir);
    s->dir[0] = '\0';
    return rc;
}

unsigned
kh_log_port(kh_server *s, const char *addr)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "listening on http://%s:", addr);
    char *text = slurp(s->log);
    const char *p = text ? strstr(text, needle) : NULL;
    unsigned port = p ? (unsigned)strtoul(p + strlen(needle), NULL, 10) : 0;
    free(text);
    return port;
}

kh_server kh_group;
const char *kh_group_config;

int
kh_group_setup(void **state)
{
    (void)state;
    return kh_launch(&kh_group, kh_group_config);
}

int
kh_group_teardown(void **state)
{
    (void)state;
    return kh_stop(&kh_group) == 0 ? 0 : -1;
}

int
kh_copy(const char *from, const char *to)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.part", to);
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    int rc = (in >= 0 && out >= 0) ? 0 : -1;
    char b[65536];
    ssize_t n;
    while (rc == 0 && (n = read(in, b, sizeof(b))) > 0)
        if (write(out, b, (size_t)n) != n)
            rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0)
        rc = -1;
    if (rc == 0 && (chmod(tmp, 0755) != 0 || rename(tmp, to) != 0))
        rc = -1;
    return rc;
}

const char *
kh_test_module(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", env_or("KAPI_TEST_MODULE_DIR", "build/tests/modules"), name);
    return out;
}
