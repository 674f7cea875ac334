/* http_internal.h: node-internal parts of the management HTTP server, shared
 * by http_request.c (the request parser), http_server.c and their tests and
 * fuzz target. Not part of the public interface. */
#ifndef UKKO_HTTP_INTERNAL_H
#define UKKO_HTTP_INTERNAL_H

#include "ukko.h"

#include <http_parser.h>

#define UKKO_HTTP__MAX_HEADERS 64

typedef struct ukko_http__limits {
    size_t max_request_line; /* method + URL; over it: 414 */
    size_t max_header_bytes; /* all header names and values; over it: 431 */
    size_t max_body_bytes;   /* over it: 413 */
} ukko_http__limits_t;

typedef enum {
    UKKO_HTTP__MORE = 0,    /* all bytes consumed, request incomplete */
    UKKO_HTTP__REQUEST = 1, /* a whole request is in p->req; call _next() */
    UKKO_HTTP__ERROR = 2    /* p->error_status and p->error_msg say why */
} ukko_http__event_t;

/* An incremental request parser over http_parser with caps. Pipelined
 * requests come out one at a time: feed() stops after each whole request and
 * returns how many bytes it used. One per connection, one thread. */
typedef struct ukko_http__parser {
    http_parser hp;
    ukko_http__limits_t lim;
    ukko_buf_t url;   /* raw URL */
    ukko_buf_t store; /* header names and values, NUL-separated */
    ukko_buf_t body;
    size_t name_off[UKKO_HTTP__MAX_HEADERS], value_off[UKKO_HTTP__MAX_HEADERS];
    size_t nheaders;
    bool in_value;
    bool started; /* first byte of a request seen */
    bool complete;
    int error_status; /* 400, 413, 414, 431, 501 */
    const char *error_msg;
    /* The request, valid after UKKO_HTTP__REQUEST until _next(). */
    ukko_http_request_t req;
    ukko_http_header_t headers[UKKO_HTTP__MAX_HEADERS];
    char *path, *query;
    bool keep_alive;
} ukko_http__parser_t;

void ukko_http__parser_init(ukko_http__parser_t *p, const ukko_http__limits_t *lim);
void ukko_http__parser_destroy(ukko_http__parser_t *p);
/* Parses up to len bytes; *used says how many were consumed. */
ukko_http__event_t ukko_http__parser_feed(ukko_http__parser_t *p, const char *data, size_t len,
                                          size_t *used);
/* Forgets the delivered request and gets ready for the next one. */
void ukko_http__parser_next(ukko_http__parser_t *p);
/* True while part of a request has been received (for the slow-client timer). */
bool ukko_http__parser_mid_request(const ukko_http__parser_t *p);

const char *ukko_http__reason(int status);

/* The server itself (node.c owns one). */
struct ev_loop;
ukko_http_server_t *ukko_http__server_new(struct ev_loop *loop, const ukko_node_config_t *nc);
/* Binds host:port (port 0: any free port) and starts accepting. */
int ukko_http__server_listen(ukko_http_server_t *srv, const char *host, int port);
/* "host:port" actually bound, e.g. "0.0.0.0:8558" or "[::1]:8558". */
const char *ukko_http__server_address(const ukko_http_server_t *srv);
void ukko_http__server_metrics(ukko_http_server_t *srv, ukko_buf_t *out);
/* Closes every connection and the listener. */
void ukko_http__server_free(ukko_http_server_t *srv);

#endif
