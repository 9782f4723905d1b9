/* jsonpos.c -- maps a JSON path to the line:col where its value (or key)
 * starts in the text, so config errors can point into the file.
 *
 * One forward scan: at each path step it walks the members of one object or
 * the elements of one array, skipping the values it passes over without
 * recursion. Key comparison decodes escapes (\uXXXX and surrogate pairs to
 * UTF-8), so "a\u0062" matches the key "ab". It does not validate the JSON
 * (jansson already did) nor keep any state between calls. */
#include "jsonpos.h"

#include <string.h>

struct scan {
    const char *s;
    size_t len;
    size_t i;
};

static int
peek(const struct scan *sc)
{
    return sc->i < sc->len ? (unsigned char)sc->s[sc->i] : -1;
}

static void
skip_ws(struct scan *sc)
{
    int c;
    while ((c = peek(sc)) == ' ' || c == '\t' || c == '\n' || c == '\r')
        sc->i++;
}

/* From the opening quote to just past the closing one. */
static void
skip_string(struct scan *sc)
{
    sc->i++;
    while (sc->i < sc->len) {
        char c = sc->s[sc->i++];
        if (c == '\\')
            sc->i++;
        else if (c == '"')
            return;
    }
    sc->i = sc->len;
}

static void
skip_value(struct scan *sc)
{
    int c = peek(sc);
    if (c == '"') {
        skip_string(sc);
    } else if (c == '{' || c == '[') {
        size_t depth = 0;
        while ((c = peek(sc)) != -1) {
            if (c == '"') {
                skip_string(sc);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0) {
                sc->i++;
                return;
            }
            sc->i++;
        }
    } else {
        while ((c = peek(sc)) != -1 && c != ',' && c != '}' && c != ']' && c != ' ' && c != '\t' &&
               c != '\n' && c != '\r')
            sc->i++;
    }
}

static long
hex4(struct scan *sc)
{
    long v = 0;
    if (sc->len - sc->i < 4)
        return -1;
    for (int k = 0; k < 4; k++) {
        char c = sc->s[sc->i++];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decodes the escape after a backslash into OUT (UTF-8); returns its length. */
static size_t
decode_escape(struct scan *sc, char out[4])
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    int c = peek(sc);
    const char *e;
    long cp;

    if (c == -1)
        return 0;
    sc->i++;
    if (c != 'u') {
        e = strchr(from, c);
        out[0] = e ? to[e - from] : (char)c;
        return 1;
    }
    if ((cp = hex4(sc)) < 0)
        return 0;
    if (cp >= 0xD800 && cp <= 0xDBFF && sc->len - sc->i >= 6 && sc->s[sc->i] == '\\' &&
        sc->s[sc->i + 1] == 'u') {
        size_t save = sc->i;
        long lo;
        sc->i += 2;
        lo = hex4(sc);
        if (lo >= 0xDC00 && lo <= 0xDFFF)
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        else
            sc->i = save;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Scans the string at the opening quote and tells whether it decodes to
 * exactly KEY (KEYLEN bytes); leaves the scanner past the closing quote. */
static bool
string_equals(struct scan *sc, const char *key, size_t keylen)
{
    size_t k = 0;
    bool eq = true;

    sc->i++;
    while (sc->i < sc->len) {
        char c = sc->s[sc->i++], buf[4];
        size_t n = 1;
        if (c == '"')
            return eq && k == keylen;
        if (c == '\\')
            n = decode_escape(sc, buf);
        else
            buf[0] = c;
        if (eq && (k + n > keylen || memcmp(key + k, buf, n) != 0))
            eq = false;
        k += n;
    }
    return false;
}

/* One step of a path: a key (KEY, KEYLEN) or, when KEY is NULL, an index. */
struct step {
    const char *key;
    size_t keylen;
    size_t index;
};

/* Reads the step at *P; returns false at the end of the path or on a
 * malformed step (the lookup then stops there). */
static bool
next_step(const char **p, bool first, struct step *st)
{
    const char *s = *p;

    if (*s == '\0')
        return false;
    if (*s == '[') {
        size_t v = 0;
        if (s[1] < '0' || s[1] > '9')
            return false;
        for (s++; *s >= '0' && *s <= '9'; s++) {
            if (v > ((size_t)-1 - 9) / 10)
                return false;
            v = v * 10 + (size_t)(*s - '0');
        }
        if (*s != ']')
            return false;
        st->key = NULL;
        st->index = v;
        *p = s + 1;
        return true;
    }
    if (!first && *s++ != '.')
        return false;
    st->key = s;
    st->keylen = strcspn(s, ".[");
    st->index = 0;
    *p = s + st->keylen;
    return true;
}

/* Moves the scanner from an object's '{' to the value of member KEY, setting
 * *KEYPOS to the key's quote. */
static bool
enter_member(struct scan *sc, const char *key, size_t keylen, size_t *keypos)
{
    if (peek(sc) != '{')
        return false;
    sc->i++;
    for (;;) {
        bool eq;
        skip_ws(sc);
        if (peek(sc) != '"')
            return false;
        *keypos = sc->i;
        eq = string_equals(sc, key, keylen);
        skip_ws(sc);
        if (peek(sc) != ':')
            return false;
        sc->i++;
        skip_ws(sc);
        if (eq)
            return true;
        skip_value(sc);
        skip_ws(sc);
        if (peek(sc) != ',')
            return false;
        sc->i++;
    }
}

/* Moves from an element's first byte past N more elements. */
static bool
skip_elements(struct scan *sc, size_t n)
{
    for (; n > 0; n--) {
        skip_value(sc);
        skip_ws(sc);
        if (peek(sc) != ',')
            return false;
        sc->i++;
        skip_ws(sc);
        if (peek(sc) == ']' || peek(sc) == -1)
            return false;
    }
    return true;
}

static bool
enter_element(struct scan *sc, size_t index)
{
    if (peek(sc) != '[')
        return false;
    sc->i++;
    skip_ws(sc);
    if (peek(sc) == ']' || peek(sc) == -1)
        return false;
    return skip_elements(sc, index);
}

/* Moves P forward to offset TO, counting lines and UTF-8 characters. */
static void
advance(const char *text, jsonpos_at *p, size_t to)
{
    for (size_t j = p->off; j < to; j++) {
        if (text[j] == '\n') {
            p->line++;
            p->col = 1;
        } else if (((unsigned char)text[j] & 0xC0) != 0x80) {
            p->col++;
        }
    }
    p->off = to;
}

static bool
at_step_end(char c)
{
    return c == '\0' || c == '.' || c == '[';
}

kapi_status
jsonpos_find(jsonpos_cache *cache, const char *text, size_t len, const char *path, bool key,
             unsigned *line, unsigned *col)
{
    jsonpos_cache none;
    jsonpos_at val = {0, 1, 1}, parent;
    struct scan sc = {text, len, 0};
    struct step st;
    size_t n = 0, done = 0, keyoff = 0;
    bool last_is_key = false;

    if (!cache) {
        cache = &none;
        cache->nsteps = 0;
    }
    if (strcmp(path, "(root)") == 0)
        path = "";
    skip_ws(&sc);
    if (sc.i < len)
        advance(text, &val, sc.i);
    parent = val;

    /* Reuse the steps the previous lookup shares with this one. */
    for (; n < cache->nsteps; n++) {
        const struct jsonpos_memo *m = &cache->steps[n];
        if (strncmp(path, cache->path, m->pathend) != 0 || !at_step_end(path[m->pathend]))
            break;
        parent = val;
        val = m->at;
        keyoff = m->keyoff;
        last_is_key = !m->is_index;
        done = m->pathend;
    }
    sc.i = val.off;

    for (;; n++) {
        const char *rest = path + done;
        jsonpos_at from = val;
        size_t end;
        bool ok;
        if (!next_step(&rest, done == 0, &st))
            break;
        if (st.key) {
            ok = enter_member(&sc, st.key, st.keylen, &keyoff);
        } else if (n < cache->nsteps && cache->steps[n].is_index &&
                   cache->steps[n].index <= st.index) {
            /* a later element of the array seen last time: go on from there */
            from = cache->steps[n].at;
            sc.i = from.off;
            ok = skip_elements(&sc, st.index - cache->steps[n].index);
        } else {
            ok = enter_element(&sc, st.index);
        }
        if (!ok)
            break;
        parent = val;
        val = from;
        advance(text, &val, sc.i);
        last_is_key = st.key != NULL;
        end = (size_t)(rest - path);
        if (n < JSONPOS_STEPS && end < sizeof cache->path) {
            memcpy(cache->path + done, path + done, end - done);
            cache->steps[n] = (struct jsonpos_memo){end, st.index, !st.key, keyoff, val};
            cache->nsteps = n + 1;
        } else if (cache->nsteps > n) {
            cache->nsteps = n;
        }
        done = end;
    }
    if (path[done] != '\0') {
        *line = val.line;
        *col = val.col;
        return KAPI_ENOTFOUND;
    }
    if (key && last_is_key) {
        advance(text, &parent, keyoff);
        val = parent;
    }
    *line = val.line;
    *col = val.col;
    return KAPI_OK;
}
