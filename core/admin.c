/*
 * admin.c - the admin HTTP server of `etl serve` on libmicrohttpd: binds
 * the address, checks the bearer token, serves the status page and
 * /metrics, and hands /api/ requests to admin_api.c.
 *
 * A thread per connection: a trigger waits a moment for its run to get an
 * id, and that must not hold up a Prometheus scrape.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "serve_internal.h"
#include "ui.h"

struct sv_admin {
    struct MHD_Daemon *d;
    etl_serve_t *sv;
    char *token;
};

/* Splits "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" (an empty host is
 * every address). 0, or -1 when it is not of that form. */
static int split_listen(const char *listen, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon;
    host[0] = '\0';
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (!end || end[1] != ':' || (size_t)(end - listen - 1) >= hlen)
            return -1;
        memcpy(host, listen + 1, (size_t)(end - listen - 1));
        host[end - listen - 1] = '\0';
        colon = end + 1;
    } else if ((colon = strrchr(listen, ':'))) {
        if ((size_t)(colon - listen) >= hlen)
            return -1;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
    }
    const char *p = colon ? colon + 1 : listen;
    if (!*p || strlen(p) >= plen || strspn(p, "0123456789") != strlen(p) || atol(p) > 65535)
        return -1;
    strcpy(port, p);
    return 0;
}

int etl_serve_is_loopback(const char *listen)
{
    char host[256], port[16];
    if (split_listen(listen, host, sizeof host, port, sizeof port) != 0)
        return -1;
    if (!host[0])
        return 0;
    if (strcmp(host, "localhost") == 0)
        return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* Compares in time that depends only on the expected token's length. */
static int token_ok(const char *expected, const char *given)
{
    size_t el = strlen(expected), gl = given ? strlen(given) : 0;
    unsigned char diff = (unsigned char)(el != gl);
    for (size_t i = 0; i < el; i++)
        diff |= (unsigned char)(expected[i] ^ (i < gl ? given[i] : 0));
    return given && diff == 0;
}

static int authorized(const sv_admin_t *a, struct MHD_Connection *c)
{
    if (!a->token)
        return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    return token_ok(a->token, h);
}

static const char *query_arg(void *arg, const char *name)
{
    return MHD_lookup_connection_value(arg, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result reply(struct MHD_Connection *c, sv_response_t *r)
{
    struct MHD_Response *resp;
    if (r->fd >= 0)
        resp = MHD_create_response_from_fd64(r->fd_size, r->fd); /* takes the fd */
    else
        resp = MHD_create_response_from_buffer(r->body.len, r->body.data ? r->body.data : "",
                                               MHD_RESPMEM_MUST_COPY);
    etl_buf_free(&r->body);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src "
                            "'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                            "frame-ancestors 'none'");
    if (r->status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"etl\"");
    if (r->allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    sv_admin_t *a = cls;
    if (!*con_cls) { /* headers only so far; the body (if any) follows */
        *con_cls = a;
        return MHD_YES;
    }
    if (*upload_size) { /* no endpoint takes a body */
        *upload_size = 0;
        return MHD_YES;
    }
    sv_response_t r = {0};
    r.fd = -1;
    etl_buf_init(&r.body);
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        if (!is_get) {
            sv_error(&r, MHD_HTTP_METHOD_NOT_ALLOWED, "the status page is read with GET");
            r.allow = "GET, HEAD";
        } else {
            r.status = MHD_HTTP_OK;
            r.content_type = "text/html; charset=utf-8";
            etl_buf_add(&r.body, etl_ui_status_html, etl_ui_status_html_len);
        }
    } else if (strcmp(url, "/healthz") == 0) {
        r.status = MHD_HTTP_OK;
        etl_buf_adds(&r.body, "{\"status\":\"ok\"}\n");
    } else if (strcmp(url, "/metrics") == 0 || strncmp(url, "/api/", 5) == 0 ||
               strcmp(url, "/api") == 0) {
        if (!authorized(a, c)) {
            sv_error(&r, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token "
                       "(Authorization: Bearer <ETL_ADMIN_TOKEN>)");
        } else if (strcmp(url, "/metrics") == 0) {
            if (!is_get) {
                sv_error(&r, MHD_HTTP_METHOD_NOT_ALLOWED, "/metrics is read with GET");
                r.allow = "GET, HEAD";
            } else {
                r.status = MHD_HTTP_OK;
                r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                sv_metrics_render(a->sv, &r.body);
            }
        } else {
            sv_api_handle(a->sv, method, url, query_arg, c, &r);
        }
    } else {
        char msg[600];
        snprintf(msg, sizeof msg, "no such page: %.500s", url);
        sv_error(&r, MHD_HTTP_NOT_FOUND, msg);
    }
    return reply(c, &r);
}

static void mhd_log(void *arg, const char *fmt, va_list ap)
{
    (void)arg;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    etl_logf(NULL, ETL_LOG_WARN, "admin", NULL, "%s", line);
}

sv_admin_t *sv_admin_start(etl_serve_t *sv, const char *listen, const char *token, char *err,
                           size_t errlen)
{
    char host[256], port[16];
    if (split_listen(listen, host, sizeof host, port, sizeof port) != 0) {
        etl_errf(err, errlen, "bad --listen '%s' (expected ADDRESS:PORT such as "
                 "127.0.0.1:8787)", listen);
        return NULL;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gai != 0) {
        etl_errf(err, errlen, "--listen %s: %s", listen, gai_strerror(gai));
        return NULL;
    }
    sv_admin_t *a = calloc(1, sizeof *a);
    if (!a) {
        freeaddrinfo(ai);
        etl_errf(err, errlen, "out of memory");
        return NULL;
    }
    a->sv = sv;
    a->token = token && *token ? etl_strdup(token) : NULL;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    a->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, a, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!a->d) {
        etl_errf(err, errlen, "cannot listen on %s (address in use or not available)", listen);
        free(a->token);
        free(a);
        return NULL;
    }
    return a;
}

void sv_admin_stop(sv_admin_t *a)
{
    if (!a)
        return;
    MHD_stop_daemon(a->d);
    free(a->token);
    free(a);
}
