/* http_server.c: the management HTTP/1.1 server on the node's libev loop:
 * accept, keep-alive, pipelining, caps, idle and slow-client timeouts, and
 * routing to handlers. Loop thread only. Invariants: a connection never holds
 * more than its caps; a misbehaving client costs only its own connection;
 * connections are freed only from the reaper, never inside their callbacks. */
#include "http_internal.h"

#include <arpa/inet.h>
#include <ev.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define OUT_HIGH_WATER (1024 * 1024) /* stop reading while this much is unsent */
#define MAX_ROUTES 64

typedef struct route {
    char *method;
    char *path;
    bool prefix;
    ukko_http_handler_fn fn;
    void *ud;
} route_t;

typedef struct conn conn_t;

struct ukko_http_server {
    struct ev_loop *loop;
    int fd;
    ev_io accept_w;
    ev_timer accept_pause; /* after EMFILE: try again shortly */
    ev_prepare reaper;
    ukko_http__limits_t lim;
    int64_t idle_ms, request_ms;
    size_t max_conns, nconns;
    route_t routes[MAX_ROUTES];
    size_t nroutes;
    conn_t *conns; /* live */
    conn_t *dead;  /* closed, to free before the loop sleeps */
    char bound[80];
    /* Figures for /metrics (loop thread only). */
    uint64_t requests, rejected, timeouts, bad_requests;
};

struct conn {
    ukko_http_server_t *srv;
    conn_t *next, *prev;
    int fd;
    ev_io rd, wr;
    ev_timer timer;
    ukko_http__parser_t parser;
    ukko_buf_t in, out;
    int64_t request_start, last_activity;
    bool closing;   /* close once out is flushed */
    bool lingering; /* write side shut: draining the client's leftovers */
    bool reading;
    char peer[64];
};

static void conn_close(conn_t *c);
static void conn_process(conn_t *c);
static void conn_arm(conn_t *c);

#define LINGER_MS 2000

/* After a final response, shut the write side and read until the client
 * closes (or LINGER_MS): closing with unread input would send a reset that
 * can destroy the response before the client reads it (nginx's lingering
 * close does the same). */
static void conn_linger(conn_t *c)
{
    if (c->lingering)
        return;
    c->lingering = true;
    shutdown(c->fd, SHUT_WR);
    ukko_buf_reset(&c->in);
    if (!c->reading) {
        c->reading = true;
        ev_io_start(c->srv->loop, &c->rd);
    }
    c->last_activity = ukko_now_ms();
    conn_arm(c);
}

/* ------------------------------------------------------------ responses */

static void write_response(conn_t *c, const ukko_http_response_t *res, bool head, bool keep)
{
    const char *ct = res->content_type ? res->content_type : "text/plain; charset=utf-8";
    ukko_buf_printf(&c->out,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-cache\r\n%s%s\r\n",
                    res->status, ukko_http__reason(res->status), ct, res->body.len,
                    res->headers.data ? res->headers.data : "",
                    keep ? "" : "Connection: close\r\n");
    if (!head && res->body.len)
        ukko_buf_append(&c->out, res->body.data, res->body.len);
}

static void reply_error(conn_t *c, int status, const char *msg)
{
    ukko_http_response_t res = {.status = status};
    ukko_buf_init(&res.body, 4096);
    ukko_buf_init(&res.headers, 4096);
    ukko_buf_printf(&res.body, "%d %s: %s\n", status, ukko_http__reason(status), msg);
    write_response(c, &res, false, false);
    ukko_buf_destroy(&res.body);
    ukko_buf_destroy(&res.headers);
    c->closing = true;
}

void ukko_http_reply(ukko_http_response_t *res, int status, const char *fmt, ...)
{
    res->status = status;
    ukko_buf_reset(&res->body);
    va_list ap;
    va_start(ap, fmt);
    ukko_buf_vprintf(&res->body, fmt, ap);
    va_end(ap);
}

void ukko_http_reply_json(ukko_http_response_t *res, int status, const cJSON *json)
{
    res->status = status;
    res->content_type = "application/json";
    ukko_buf_reset(&res->body);
    char *s = cJSON_PrintUnformatted(json);
    if (!s) {
        ukko_http_reply(res, 500, "out of memory\n");
        return;
    }
    ukko_buf_puts(&res->body, s);
    ukko_buf_puts(&res->body, "\n");
    free(s);
}

const char *ukko_http_header(const ukko_http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (!strcasecmp(req->headers[i].name, name))
            return req->headers[i].value;
    return NULL;
}

/* -------------------------------------------------------------- routing */

int ukko_http_route(ukko_http_server_t *srv, const char *method, const char *path,
                    ukko_http_handler_fn fn, void *ud)
{
    if (srv->nroutes == MAX_ROUTES)
        return UKKO_E2BIG;
    route_t *r = &srv->routes[srv->nroutes];
    size_t n = strlen(path);
    r->prefix = n >= 2 && !strcmp(path + n - 2, "/*");
    r->method = strdup(method);
    r->path = r->prefix ? strndup(path, n - 1) : strdup(path); /* keeps the '/' */
    if (!r->method || !r->path) {
        free(r->method);
        free(r->path);
        return UKKO_ENOMEM;
    }
    r->fn = fn;
    r->ud = ud;
    srv->nroutes++;
    return 0;
}

static bool path_matches(const route_t *r, const char *path)
{
    if (!r->prefix)
        return !strcmp(r->path, path);
    size_t n = strlen(r->path);
    /* "/cluster/members/" matches "/cluster/members/x" but not itself. */
    return !strncmp(r->path, path, n) && path[n] != '\0';
}

static void dispatch(conn_t *c, const ukko_http_request_t *req, ukko_http_response_t *res)
{
    ukko_http_server_t *srv = c->srv;
    bool head = !strcmp(req->method, "HEAD");
    char allow[128] = "";
    for (size_t i = 0; i < srv->nroutes; i++) {
        route_t *r = &srv->routes[i];
        if (!path_matches(r, req->path))
            continue;
        if (!strcmp(r->method, req->method) || (head && !strcmp(r->method, "GET"))) {
            r->fn(req, res, r->ud);
            return;
        }
        if (!strstr(allow, r->method)) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "", r->method);
        }
    }
    if (*allow) {
        ukko_buf_printf(&res->headers, "Allow: %s\r\n", allow);
        ukko_http_reply(res, 405, "405 Method Not Allowed: %s %s; allowed: %s\n", req->method,
                        req->path, allow);
    } else {
        ukko_http_reply(res, 404, "404 Not Found: no route for %s\n", req->path);
    }
}

/* ----------------------------------------------------------- connection */

static void conn_flush(conn_t *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n > 0) {
            ukko_buf_consume(&c->out, (size_t)n);
            c->last_activity = ukko_now_ms();
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->srv->loop, &c->wr);
            return;
        }
        conn_close(c); /* EPIPE, ECONNRESET: the client left */
        return;
    }
    ev_io_stop(c->srv->loop, &c->wr);
    if (c->closing) {
        conn_linger(c);
        return;
    }
    /* Output drained: resume reading if backpressure had stopped it. */
    if (!c->reading) {
        c->reading = true;
        ev_io_start(c->srv->loop, &c->rd);
        conn_process(c);
    }
}

static void conn_process(conn_t *c)
{
    ukko_http_server_t *srv = c->srv;
    while (!c->closing && c->in.len && c->out.len < OUT_HIGH_WATER) {
        size_t used = 0;
        ukko_http__event_t ev = ukko_http__parser_feed(&c->parser, c->in.data, c->in.len, &used);
        ukko_buf_consume(&c->in, used);
        if (ev == UKKO_HTTP__MORE) {
            if (ukko_http__parser_mid_request(&c->parser) && !c->request_start)
                c->request_start = ukko_now_ms();
            break;
        }
        if (ev == UKKO_HTTP__ERROR) {
            srv->bad_requests++;
            ukko_logf(UKKO_LOG_DEBUG, "http",
                      UKKO_FIELDS(UKKO_FS("peer", c->peer),
                                  UKKO_FI("status", c->parser.error_status)),
                      "rejected request: %s", c->parser.error_msg);
            reply_error(c, c->parser.error_status, c->parser.error_msg);
            break;
        }
        ukko_http__parser_t *p = &c->parser;
        p->req.peer = c->peer;
        srv->requests++;
        ukko_http_response_t res = {.status = 200};
        ukko_buf_init(&res.body, 16 * 1024 * 1024);
        ukko_buf_init(&res.headers, 8192);
        dispatch(c, &p->req, &res);
        bool keep = p->keep_alive;
        write_response(c, &res, !strcmp(p->req.method, "HEAD"), keep);
        ukko_buf_destroy(&res.body);
        ukko_buf_destroy(&res.headers);
        if (!keep)
            c->closing = true;
        ukko_http__parser_next(p);
        c->request_start = 0;
    }
    if (c->out.len >= OUT_HIGH_WATER && c->reading) {
        c->reading = false; /* the client is not reading its responses */
        ev_io_stop(srv->loop, &c->rd);
    }
    conn_arm(c);
    if (c->out.len || c->closing)
        conn_flush(c);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_t *c = w->data;
    char chunk[READ_CHUNK];
    ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n < 0)
        return;
    if (c->closing)
        return; /* after a final response the rest is discarded */
    c->last_activity = ukko_now_ms();
    if (ukko_buf_append(&c->in, chunk, (size_t)n) < 0) {
        /* More unparsed bytes than a whole request may hold. */
        reply_error(c, 413, "too much unparsed input");
        ukko_buf_reset(&c->in);
    }
    conn_process(c);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush(w->data);
}

/* Sets the timer for whichever deadline applies now. */
static void conn_arm(conn_t *c)
{
    if (c->fd < 0)
        return;
    int64_t now = ukko_now_ms(), deadline;
    if (c->lingering)
        deadline = c->last_activity + LINGER_MS;
    else if (c->request_start)
        deadline = c->request_start + c->srv->request_ms;
    else if (c->out.len)
        deadline = c->last_activity + c->srv->request_ms;
    else
        deadline = c->last_activity + c->srv->idle_ms;
    double after = (double)(deadline - now) / 1000.0;
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(c->srv->loop, &c->timer);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_t *c = w->data;
    int64_t now = ukko_now_ms();
    bool expired;
    if (c->lingering)
        expired = now >= c->last_activity + LINGER_MS;
    else if (c->request_start)
        expired = now >= c->request_start + c->srv->request_ms;
    else if (c->out.len)
        expired = now >= c->last_activity + c->srv->request_ms;
    else
        expired = now >= c->last_activity + c->srv->idle_ms;
    if (!expired) {
        conn_arm(c);
        return;
    }
    if (c->lingering) {
        conn_close(c);
        return;
    }
    c->srv->timeouts++;
    if (c->request_start && !c->closing) {
        ukko_logf(UKKO_LOG_DEBUG, "http", UKKO_FIELDS(UKKO_FS("peer", c->peer)),
                  "request not completed in time: closing the connection");
        reply_error(c, 408, "request not received in time");
        c->request_start = 0;
        /* One try to say why, then go: a stalled reader gets closed below. */
        conn_flush(c);
        if (c->fd >= 0 && c->out.len)
            conn_close(c);
        return;
    }
    conn_close(c);
}

static void conn_close(conn_t *c)
{
    if (c->fd < 0)
        return;
    ukko_http_server_t *srv = c->srv;
    ev_io_stop(srv->loop, &c->rd);
    ev_io_stop(srv->loop, &c->wr);
    ev_timer_stop(srv->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    /* Unlink from the live list; free it in the reaper. */
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = srv->dead;
    srv->dead = c;
    srv->nconns--;
    ev_prepare_start(srv->loop, &srv->reaper);
}

static void conn_free(conn_t *c)
{
    ukko_http__parser_destroy(&c->parser);
    ukko_buf_destroy(&c->in);
    ukko_buf_destroy(&c->out);
    free(c);
}

static void on_reap(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    ukko_http_server_t *srv = w->data;
    while (srv->dead) {
        conn_t *c = srv->dead;
        srv->dead = c->next;
        conn_free(c);
    }
    ev_prepare_stop(loop, w);
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        snprintf(out, outlen, "%s:%d", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(out, outlen, "[%s]:%d", host, port);
    } else {
        snprintf(out, outlen, "unix");
    }
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    ukko_http_server_t *srv = w->data;
    ev_io_start(loop, &srv->accept_w);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    ukko_http_server_t *srv = w->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(srv->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: pause accepting instead of spinning. */
                ukko_log(UKKO_LOG_WARN, "http",
                         "cannot accept a management connection: %s; pausing accepts for "
                         "100ms (raise the open-files limit, ulimit -n)",
                         strerror(errno));
                ev_io_stop(loop, &srv->accept_w);
                ev_timer_set(&srv->accept_pause, 0.1, 0.);
                ev_timer_start(loop, &srv->accept_pause);
            }
            return;
        }
        if (srv->nconns >= srv->max_conns) {
            static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n";
            (void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            srv->rejected++;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_t *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = srv;
        c->fd = fd;
        format_peer(&ss, c->peer, sizeof(c->peer));
        ukko_http__parser_init(&c->parser, &srv->lim);
        ukko_buf_init(&c->in, srv->lim.max_request_line + srv->lim.max_header_bytes +
                                  srv->lim.max_body_bytes + READ_CHUNK);
        ukko_buf_init(&c->out, 64 * 1024 * 1024);
        c->last_activity = ukko_now_ms();
        ev_io_init(&c->rd, on_read, fd, EV_READ);
        ev_io_init(&c->wr, on_write, fd, EV_WRITE);
        ev_init(&c->timer, on_timer);
        c->rd.data = c->wr.data = c->timer.data = c;
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        srv->nconns++;
        c->reading = true;
        ev_io_start(loop, &c->rd);
        conn_arm(c);
    }
}

/* ----------------------------------------------------------- the server */

ukko_http_server_t *ukko_http__server_new(struct ev_loop *loop, const ukko_node_config_t *nc)
{
    ukko_http_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return NULL;
    srv->loop = loop;
    srv->fd = -1;
    srv->lim.max_request_line = (size_t)nc->mgmt_max_request_line;
    srv->lim.max_header_bytes = (size_t)nc->mgmt_max_header_bytes;
    srv->lim.max_body_bytes = (size_t)nc->mgmt_max_body_bytes;
    srv->idle_ms = nc->mgmt_idle_timeout_ms;
    srv->request_ms = nc->mgmt_request_timeout_ms;
    srv->max_conns = (size_t)nc->mgmt_max_connections;
    ev_prepare_init(&srv->reaper, on_reap);
    srv->reaper.data = srv;
    ev_init(&srv->accept_pause, on_accept_resume);
    srv->accept_pause.data = srv;
    return srv;
}

int ukko_http__server_listen(ukko_http_server_t *srv, const char *host, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        ukko_log(UKKO_LOG_ERROR, "http",
                 "management.hostname \"%s\" does not resolve: %s (use an IP address or a "
                 "resolvable name)",
                 host, gai_strerror(gai));
        return UKKO_EINVAL;
    }
    int rc = UKKO_EINVAL, err = 0;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 511) == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            getsockname(fd, (struct sockaddr *)&ss, &sl);
            format_peer(&ss, srv->bound, sizeof(srv->bound));
            srv->fd = fd;
            rc = 0;
            break;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(ai);
    if (rc < 0) {
        ukko_log(UKKO_LOG_ERROR, "http",
                 "cannot listen on %s:%d: %s (%s)", host, port, strerror(err),
                 err == EADDRINUSE ? "another process holds the port: stop it or set "
                                     "management.port / UKKO_MANAGEMENT_PORT"
                 : err == EADDRNOTAVAIL ? "that address is not on this host: set "
                                          "management.hostname"
                 : err == EACCES ? "ports below 1024 need privileges: pick another port"
                                 : "check management.hostname and management.port");
        return -err;
    }
    ev_io_init(&srv->accept_w, on_accept, srv->fd, EV_READ);
    srv->accept_w.data = srv;
    ev_io_start(srv->loop, &srv->accept_w);
    return 0;
}

const char *ukko_http__server_address(const ukko_http_server_t *srv)
{
    return srv->bound;
}

void ukko_http__server_metrics(ukko_http_server_t *srv, ukko_buf_t *out)
{
    ukko_prom_family(out, "ukko_http_requests_total", "counter",
                     "Management HTTP requests answered by a route or 404/405.");
    ukko_prom_sample(out, "ukko_http_requests_total", NULL, NULL, 0, (double)srv->requests);
    ukko_prom_family(out, "ukko_http_bad_requests_total", "counter",
                     "Management HTTP requests rejected as malformed or over a cap.");
    ukko_prom_sample(out, "ukko_http_bad_requests_total", NULL, NULL, 0,
                     (double)srv->bad_requests);
    ukko_prom_family(out, "ukko_http_timeouts_total", "counter",
                     "Management HTTP connections closed as idle or too slow.");
    ukko_prom_sample(out, "ukko_http_timeouts_total", NULL, NULL, 0, (double)srv->timeouts);
    ukko_prom_family(out, "ukko_http_rejected_connections_total", "counter",
                     "Management HTTP connections refused at management.max-connections.");
    ukko_prom_sample(out, "ukko_http_rejected_connections_total", NULL, NULL, 0,
                     (double)srv->rejected);
    ukko_prom_family(out, "ukko_http_open_connections", "gauge",
                     "Management HTTP connections open now.");
    ukko_prom_sample(out, "ukko_http_open_connections", NULL, NULL, 0, (double)srv->nconns);
}

void ukko_http__server_free(ukko_http_server_t *srv)
{
    if (!srv)
        return;
    while (srv->conns)
        conn_close(srv->conns);
    on_reap(srv->loop, &srv->reaper, 0);
    if (srv->fd >= 0) {
        ev_io_stop(srv->loop, &srv->accept_w);
        close(srv->fd);
    }
    ev_timer_stop(srv->loop, &srv->accept_pause);
    for (size_t i = 0; i < srv->nroutes; i++) {
        free(srv->routes[i].method);
        free(srv->routes[i].path);
    }
    free(srv);
}
