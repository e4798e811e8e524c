/* http_page.c - URLs for the HTTP toolkit: escaping, building with query
 * parameters, hosts, and the pagination helpers (Link headers, query
 * parameters of a next-page URL). Pure string work, no I/O. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static void add_escaped(etl_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c)) {
            etl_buf_addc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            etl_buf_add(b, e, 3);
        }
    }
}

char *etl_http_escape(const char *s, size_t n)
{
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_add(&b, "", 0);
    if (s)
        add_escaped(&b, s, n);
    return etl_buf_take(&b);
}

int http_url_is_absolute(const char *url)
{
    if (!url || !isalpha((unsigned char)*url))
        return 0;
    const char *p = url;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    return p[0] == ':' && p[1] == '/' && p[2] == '/';
}

char *etl_http_url(const char *base, const char *path, const etl_http_param_t *query,
                   size_t nquery)
{
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_add(&b, "", 0);
    if (path && http_url_is_absolute(path)) {
        etl_buf_adds(&b, path);
    } else {
        size_t bl = base ? strlen(base) : 0;
        if (path && *path && *path != '?' && *path != '#') {
            while (bl && base[bl - 1] == '/')
                bl--;
            while (*path == '/')
                path++;
            etl_buf_add(&b, base, bl);
            if (bl)
                etl_buf_addc(&b, '/');
        } else {
            etl_buf_add(&b, base, bl);
        }
        if (path)
            etl_buf_adds(&b, path);
    }
    for (size_t i = 0; i < nquery; i++) {
        if (!query[i].name || !query[i].value)
            continue;
        char last = b.len ? b.data[b.len - 1] : '\0';
        if (!memchr(b.data, '?', b.len))
            etl_buf_addc(&b, '?');
        else if (last != '?' && last != '&')
            etl_buf_addc(&b, '&');
        add_escaped(&b, query[i].name, strlen(query[i].name));
        etl_buf_addc(&b, '=');
        add_escaped(&b, query[i].value, strlen(query[i].value));
    }
    return etl_buf_take(&b);
}

/* Splits url into scheme length and the authority [a, z). -1 when not absolute. */
static int url_parts(const char *url, size_t *scheme_len, const char **a, const char **z)
{
    if (!http_url_is_absolute(url))
        return -1;
    const char *p = strstr(url, "://");
    *scheme_len = (size_t)(p - url);
    *a = p + 3;
    *z = *a + strcspn(*a, "/?#");
    return 0;
}

char *http_url_host(const char *url)
{
    size_t sl;
    const char *a, *z;
    if (url_parts(url, &sl, &a, &z) != 0)
        return NULL;
    for (const char *p = a; p < z; p++)
        if (*p == '@')
            a = p + 1; /* past the user info */
    const char *port = NULL;
    const char *hz = z;
    if (*a == '[') {
        const char *rb = memchr(a, ']', (size_t)(z - a));
        if (!rb)
            return NULL;
        if (rb + 1 < z && rb[1] == ':')
            port = rb + 2;
        hz = rb + 1;
    } else {
        const char *c = memchr(a, ':', (size_t)(z - a));
        if (c) {
            port = c + 1;
            hz = c;
        }
    }
    if (hz == a)
        return NULL;
    etl_buf_t b;
    etl_buf_init(&b);
    for (const char *p = a; p < hz; p++)
        etl_buf_addc(&b, (char)tolower((unsigned char)*p));
    etl_buf_addc(&b, ':');
    if (port && port < z) {
        etl_buf_add(&b, port, (size_t)(z - port));
    } else if (sl == 5 && strncasecmp(url, "https", 5) == 0) {
        etl_buf_adds(&b, "443");
    } else {
        etl_buf_adds(&b, "80");
    }
    return etl_buf_take(&b);
}

/* Resolves a URI reference against base (RFC 3986 §5.2 for the cases APIs
 * use: absolute, network-path, absolute-path, query-only, relative path). */
char *http_url_resolve(const char *ref, size_t n, const char *base)
{
    size_t sl;
    const char *a, *z;
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_add(&b, "", 0);
    int abs_ref = 0;
    {
        char *tmp = etl_strndup(ref, n);
        abs_ref = tmp && http_url_is_absolute(tmp);
        free(tmp);
    }
    if (abs_ref || !base || url_parts(base, &sl, &a, &z) != 0) {
        etl_buf_add(&b, ref, n);
    } else if (n >= 2 && ref[0] == '/' && ref[1] == '/') {
        etl_buf_add(&b, base, sl + 1);
        etl_buf_add(&b, ref, n);
    } else if (n >= 1 && ref[0] == '/') {
        etl_buf_add(&b, base, (size_t)(z - base));
        etl_buf_add(&b, ref, n);
    } else if (n == 0 || ref[0] == '?' || ref[0] == '#') {
        size_t keep = ref[0] == '#' ? strcspn(base, "#") : strcspn(base, "?#");
        etl_buf_add(&b, base, keep);
        etl_buf_add(&b, ref, n);
    } else {
        /* a relative path: replace the last segment of base's path */
        size_t pathend = strcspn(base, "?#");
        size_t dir = pathend;
        while (dir > (size_t)(z - base) && base[dir - 1] != '/')
            dir--;
        etl_buf_add(&b, base, dir);
        if (dir == (size_t)(z - base))
            etl_buf_addc(&b, '/');
        etl_buf_add(&b, ref, n);
    }
    return etl_buf_take(&b);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

static int tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

/* Does the space-separated relation list v[0..n) name rel? */
static int rel_matches(const char *v, size_t n, const char *rel)
{
    size_t rl = strlen(rel), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t s = i;
        while (i < n && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - s == rl && strncasecmp(v + s, rel, rl) == 0)
            return 1;
    }
    return 0;
}

char *etl_http_link(const char *link, const char *rel, const char *base)
{
    if (!link || !rel)
        return NULL;
    const char *p = link;
    etl_buf_t val;
    etl_buf_init(&val);
    char *found = NULL;
    for (;;) {
        p = skip_ws(p);
        while (*p == ',')
            p = skip_ws(p + 1);
        if (!*p)
            break;
        if (*p != '<')
            break; /* malformed */
        const char *u = p + 1, *ue = strchr(u, '>');
        if (!ue)
            break;
        p = ue + 1;
        int seen_rel = 0, match = 0, bad = 0;
        for (;;) {
            p = skip_ws(p);
            if (*p != ';')
                break;
            p = skip_ws(p + 1);
            const char *ns = p;
            while (tchar((unsigned char)*p))
                p++;
            size_t nl = (size_t)(p - ns);
            if (!nl) {
                bad = 1;
                break;
            }
            p = skip_ws(p);
            etl_buf_reset(&val);
            etl_buf_add(&val, "", 0);
            if (*p == '=') {
                p = skip_ws(p + 1);
                if (*p == '"') {
                    p++;
                    while (*p && *p != '"') {
                        if (*p == '\\' && p[1])
                            p++;
                        etl_buf_addc(&val, *p++);
                    }
                    if (*p != '"') {
                        bad = 1;
                        break;
                    }
                    p++;
                } else {
                    const char *vs = p;
                    while (tchar((unsigned char)*p) || *p == '/' || *p == ':')
                        p++;
                    etl_buf_add(&val, vs, (size_t)(p - vs));
                }
            }
            /* only the first rel parameter counts (RFC 8288 §3.3) */
            if (nl == 3 && strncasecmp(ns, "rel", 3) == 0 && !seen_rel) {
                seen_rel = 1;
                match = rel_matches(val.data, val.len, rel);
            }
        }
        if (bad || (*p && *p != ','))
            break; /* malformed: nothing after it can be trusted */
        if (match) {
            found = http_url_resolve(u, (size_t)(ue - u), base);
            break;
        }
    }
    etl_buf_free(&val);
    return found;
}

char *etl_http_next_link(const etl_http_response_t *resp)
{
    if (!resp)
        return NULL;
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (strcasecmp(resp->headers[i].name, "link") != 0)
            continue;
        char *u = etl_http_link(resp->headers[i].value, "next", resp->url);
        if (u)
            return u;
    }
    return NULL;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends the percent-decoded s[0..n) ('+' is a space, as in forms). */
static void add_decoded(etl_buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval((unsigned char)s[i + 1])) >= 0 &&
            (l = hexval((unsigned char)s[i + 2])) >= 0) {
            etl_buf_addc(b, (char)(h * 16 + l));
            i += 2;
        } else {
            etl_buf_addc(b, s[i] == '+' ? ' ' : s[i]);
        }
    }
}

char *etl_http_query_param(const char *url, const char *name)
{
    if (!url || !name)
        return NULL;
    const char *q = strchr(url, '?');
    if (!q)
        return NULL;
    q++;
    size_t end = strcspn(q, "#");
    size_t nl = strlen(name);
    etl_buf_t key;
    etl_buf_init(&key);
    char *out = NULL;
    size_t i = 0;
    while (i < end && !out) {
        size_t s = i;
        while (i < end && q[i] != '&')
            i++;
        const char *eq = memchr(q + s, '=', i - s);
        size_t kl = eq ? (size_t)(eq - (q + s)) : i - s;
        etl_buf_reset(&key);
        etl_buf_add(&key, "", 0);
        add_decoded(&key, q + s, kl);
        if (key.len == nl && memcmp(key.data, name, nl) == 0) {
            etl_buf_t v;
            etl_buf_init(&v);
            etl_buf_add(&v, "", 0);
            if (eq)
                add_decoded(&v, eq + 1, (size_t)(q + i - eq - 1));
            out = etl_buf_take(&v);
        }
        i++;
    }
    etl_buf_free(&key);
    return out;
}
