/* http_request.c: turns the bytes of one connection into requests, with the
 * caps that keep a client from making us allocate: request line (414),
 * header block (431), body (413). Parsing is http_parser's; this file adds the
 * caps, the pause after each request (pipelining) and path decoding. */
#include "http_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static ukko_http__parser_t *P(http_parser *hp)
{
    return (ukko_http__parser_t *)hp->data;
}

static int fail(ukko_http__parser_t *p, int status, const char *msg)
{
    if (!p->error_status) {
        p->error_status = status;
        p->error_msg = msg;
    }
    return -1; /* http_parser stops with HPE_CB_* */
}

static int on_message_begin(http_parser *hp)
{
    P(hp)->complete = false;
    P(hp)->started = true;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
    ukko_http__parser_t *p = P(hp);
    if (p->url.len + len + strlen(http_method_str(hp->method)) + 1 > p->lim.max_request_line)
        return fail(p, 414, "request line too long");
    return ukko_buf_append(&p->url, at, len) ? fail(p, 414, "request line too long") : 0;
}

static int header_bytes(ukko_http__parser_t *p, const char *at, size_t len)
{
    if (p->store.len + len + 1 > p->lim.max_header_bytes)
        return fail(p, 431, "request header fields too large");
    return ukko_buf_append(&p->store, at, len) ? fail(p, 431, "request header fields too large")
                                               : 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    ukko_http__parser_t *p = P(hp);
    if (p->in_value || p->nheaders == 0) {
        /* A new header starts: terminate the previous value. */
        if (p->nheaders == UKKO_HTTP__MAX_HEADERS)
            return fail(p, 431, "too many request header fields");
        if (p->nheaders && ukko_buf_append(&p->store, "", 1))
            return fail(p, 431, "request header fields too large");
        p->name_off[p->nheaders] = p->store.len;
        p->value_off[p->nheaders] = (size_t)-1;
        p->nheaders++;
        p->in_value = false;
    }
    return header_bytes(p, at, len);
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    ukko_http__parser_t *p = P(hp);
    if (!p->nheaders)
        return fail(p, 400, "header value without a name");
    if (!p->in_value) {
        if (ukko_buf_append(&p->store, "", 1)) /* ends the name */
            return fail(p, 431, "request header fields too large");
        /* ukko_buf_append of "" with n=1 wrote the NUL; the value starts after. */
        p->value_off[p->nheaders - 1] = p->store.len;
        p->in_value = true;
    }
    return header_bytes(p, at, len);
}

static int on_headers_complete(http_parser *hp)
{
    ukko_http__parser_t *p = P(hp);
    if (p->nheaders && !p->in_value) {
        /* A name with no value at all: http_parser allows "X:" as empty value
         * via on_header_value never firing. */
        if (ukko_buf_append(&p->store, "", 1))
            return fail(p, 431, "request header fields too large");
        p->value_off[p->nheaders - 1] = p->store.len;
        p->in_value = true;
    }
    if (ukko_buf_append(&p->store, "", 1))
        return fail(p, 431, "request header fields too large");
    if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > p->lim.max_body_bytes)
        return fail(p, 413, "request body too large");
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    ukko_http__parser_t *p = P(hp);
    if (p->body.len + len > p->lim.max_body_bytes)
        return fail(p, 413, "request body too large");
    return ukko_buf_append(&p->body, at, len) ? fail(p, 413, "request body too large") : 0;
}

static int on_message_complete(http_parser *hp)
{
    ukko_http__parser_t *p = P(hp);
    p->complete = true;
    http_parser_pause(hp, 1); /* one request at a time: feed() returns here */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void ukko_http__parser_init(ukko_http__parser_t *p, const ukko_http__limits_t *lim)
{
    memset(p, 0, sizeof(*p));
    p->lim = *lim;
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    ukko_buf_init(&p->url, lim->max_request_line + 1);
    ukko_buf_init(&p->store, lim->max_header_bytes + 2 * UKKO_HTTP__MAX_HEADERS + 2);
    ukko_buf_init(&p->body, lim->max_body_bytes + 1);
}

void ukko_http__parser_destroy(ukko_http__parser_t *p)
{
    ukko_buf_destroy(&p->url);
    ukko_buf_destroy(&p->store);
    ukko_buf_destroy(&p->body);
    free(p->path);
    free(p->query);
    p->path = p->query = NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape or %00. */
static char *decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[j++] = s[i];
            continue;
        }
        int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        out[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[j] = '\0';
    return out;
}

/* Fills p->req from what was parsed; 0, or an error status. */
static int finish(ukko_http__parser_t *p)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(p->url.data ? p->url.data : "", p->url.len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
        return fail(p, 400, "bad request target"), 400;
    p->path = decode(p->url.data + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (!p->path)
        return fail(p, 400, "bad percent-encoding in the path"), 400;
    if (u.field_set & (1 << UF_QUERY))
        p->query = strndup(p->url.data + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    else
        p->query = strdup("");
    if (!p->query)
        return fail(p, 400, "out of memory"), 400;
    for (size_t i = 0; i < p->nheaders; i++) {
        p->headers[i].name = p->store.data + p->name_off[i];
        p->headers[i].value = p->store.data + p->value_off[i];
    }
    p->req.method = http_method_str(p->hp.method);
    p->req.path = p->path;
    p->req.query = p->query;
    p->req.headers = p->headers;
    p->req.nheaders = p->nheaders;
    p->req.body = p->body.data ? p->body.data : "";
    p->req.body_len = p->body.len;
    p->keep_alive = http_should_keep_alive(&p->hp) && !p->hp.upgrade;
    return 0;
}

ukko_http__event_t ukko_http__parser_feed(ukko_http__parser_t *p, const char *data, size_t len,
                                          size_t *used)
{
    *used = 0;
    if (p->error_status)
        return UKKO_HTTP__ERROR;
    size_t n = http_parser_execute(&p->hp, &settings, data, len);
    *used = n;
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (p->error_status)
        return UKKO_HTTP__ERROR;
    if (p->complete && (e == HPE_PAUSED || e == HPE_OK)) {
        if (finish(p) != 0)
            return UKKO_HTTP__ERROR;
        return UKKO_HTTP__REQUEST;
    }
    if (p->hp.upgrade) {
        /* CONNECT or Upgrade without a body: nothing of ours speaks those. */
        fail(p, 400, "protocol upgrade is not supported");
        return UKKO_HTTP__ERROR;
    }
    if (e == HPE_HEADER_OVERFLOW) {
        fail(p, 431, "request header fields too large");
        return UKKO_HTTP__ERROR;
    }
    if (e == HPE_INVALID_METHOD) {
        fail(p, 400, "unknown request method");
        return UKKO_HTTP__ERROR;
    }
    if (e != HPE_OK) {
        fail(p, 400, http_errno_description(e));
        return UKKO_HTTP__ERROR;
    }
    return UKKO_HTTP__MORE;
}

void ukko_http__parser_next(ukko_http__parser_t *p)
{
    ukko_buf_reset(&p->url);
    ukko_buf_reset(&p->store);
    ukko_buf_reset(&p->body);
    free(p->path);
    free(p->query);
    p->path = p->query = NULL;
    p->nheaders = 0;
    p->in_value = false;
    p->complete = false;
    p->started = false;
    memset(&p->req, 0, sizeof(p->req));
    http_parser_pause(&p->hp, 0);
}

bool ukko_http__parser_mid_request(const ukko_http__parser_t *p)
{
    return p->started;
}

const char *ukko_http__reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}
