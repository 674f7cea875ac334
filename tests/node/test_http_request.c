/* Tests node/http_request.c: well-formed, pipelined, truncated, oversized and
 * malformed requests, fed whole and byte by byte. */
#include "http_internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ukko_http__limits_t lim = {
    .max_request_line = 256, .max_header_bytes = 1024, .max_body_bytes = 64};

static ukko_http__parser_t p;

static void setup(void)
{
    ukko_http__parser_init(&p, &lim);
}

static void teardown(void)
{
    ukko_http__parser_destroy(&p);
}

TestSuite(http_request, .init = setup, .fini = teardown, .timeout = 10);

static ukko_http__event_t feed_all(const char *s, size_t *used)
{
    return ukko_http__parser_feed(&p, s, strlen(s), used);
}

/* Feeds one byte at a time, as the slowest client would send it. */
static ukko_http__event_t feed_bytes(const char *s, size_t len, size_t *used)
{
    *used = 0;
    for (size_t i = 0; i < len; i++) {
        size_t u;
        ukko_http__event_t ev = ukko_http__parser_feed(&p, s + i, 1, &u);
        *used += u;
        if (ev != UKKO_HTTP__MORE)
            return ev;
    }
    return UKKO_HTTP__MORE;
}

static void expect_error(const char *req, int status)
{
    size_t used;
    ukko_http__event_t ev = feed_all(req, &used);
    cr_assert_eq(ev, UKKO_HTTP__ERROR, "expected an error %d, got event %d", status, ev);
    cr_assert_eq(p.error_status, status, "expected %d, got %d (%s)", status, p.error_status,
                 p.error_msg);
    cr_assert(p.error_msg && *p.error_msg);
}

Test(http_request, simple_get)
{
    size_t used;
    const char *r = "GET /cluster/members/a%3Ab?x=1&y=2 HTTP/1.1\r\nHost: node\r\n"
                    "X-Empty:\r\nAccept: */*\r\n\r\n";
    cr_assert_eq(feed_all(r, &used), UKKO_HTTP__REQUEST);
    cr_assert_eq(used, strlen(r));
    cr_assert_str_eq(p.req.method, "GET");
    cr_assert_str_eq(p.req.path, "/cluster/members/a:b");
    cr_assert_str_eq(p.req.query, "x=1&y=2");
    cr_assert_eq(p.req.nheaders, 3);
    cr_assert_str_eq(ukko_http_header(&p.req, "host"), "node");
    cr_assert_str_eq(ukko_http_header(&p.req, "X-EMPTY"), "");
    cr_assert_str_eq(ukko_http_header(&p.req, "accept"), "*/*");
    cr_assert_null(ukko_http_header(&p.req, "missing"));
    cr_assert(p.keep_alive);
}

Test(http_request, connection_semantics)
{
    size_t used;
    cr_assert_eq(feed_all("GET / HTTP/1.0\r\n\r\n", &used), UKKO_HTTP__REQUEST);
    cr_assert_not(p.keep_alive, "HTTP/1.0 closes by default");
    ukko_http__parser_destroy(&p);
    ukko_http__parser_init(&p, &lim);
    cr_assert_eq(feed_all("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &used),
                 UKKO_HTTP__REQUEST);
    cr_assert(p.keep_alive);
    ukko_http__parser_destroy(&p);
    ukko_http__parser_init(&p, &lim);
    cr_assert_eq(feed_all("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &used),
                 UKKO_HTTP__REQUEST);
    cr_assert_not(p.keep_alive);
}

Test(http_request, pipelined_requests_come_out_one_at_a_time)
{
    const char *r = "GET /alive HTTP/1.1\r\n\r\nPUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /ready HTTP/1.1\r\n\r\n";
    size_t off = 0, used;
    const char *paths[] = {"/alive", "/x", "/ready"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ukko_http__parser_feed(&p, r + off, strlen(r) - off, &used),
                     UKKO_HTTP__REQUEST, "request %d", i);
        cr_assert_str_eq(p.req.path, paths[i]);
        if (i == 1) {
            cr_assert_eq(p.req.body_len, 3);
            cr_assert(!memcmp(p.req.body, "abc", 3));
        }
        off += used;
        ukko_http__parser_next(&p);
    }
    cr_assert_eq(off, strlen(r));
}

Test(http_request, byte_by_byte_is_the_same)
{
    const char *r = "POST /cluster/members/n HTTP/1.1\r\nContent-Type: application/x-www-form-"
                    "urlencoded\r\nContent-Length: 15\r\n\r\noperation=Leave";
    size_t used;
    cr_assert_eq(feed_bytes(r, strlen(r), &used), UKKO_HTTP__REQUEST);
    cr_assert_eq(used, strlen(r));
    cr_assert_str_eq(p.req.method, "POST");
    cr_assert_str_eq(ukko_http_header(&p.req, "content-type"),
                     "application/x-www-form-urlencoded");
    cr_assert_eq(p.req.body_len, 15);
    cr_assert(!memcmp(p.req.body, "operation=Leave", 15));
}

Test(http_request, chunked_body)
{
    size_t used;
    const char *r = "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    cr_assert_eq(feed_all(r, &used), UKKO_HTTP__REQUEST);
    cr_assert_eq(p.req.body_len, 5);
    cr_assert(!memcmp(p.req.body, "abcde", 5));
}

Test(http_request, truncated_request_waits)
{
    size_t used;
    const char *r = "GET /alive HTTP/1.1\r\nHost: x\r\n";
    cr_assert_eq(feed_all(r, &used), UKKO_HTTP__MORE);
    cr_assert_eq(used, strlen(r));
    cr_assert(ukko_http__parser_mid_request(&p));
    cr_assert_eq(feed_all("\r\n", &used), UKKO_HTTP__REQUEST);
    cr_assert_str_eq(p.req.path, "/alive");
    ukko_http__parser_next(&p);
    cr_assert_not(ukko_http__parser_mid_request(&p));
}

Test(http_request, body_shorter_than_content_length_waits)
{
    size_t used;
    cr_assert_eq(feed_all("PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", &used),
                 UKKO_HTTP__MORE);
    cr_assert(ukko_http__parser_mid_request(&p));
}

Test(http_request, request_line_over_cap_is_414)
{
    char r[600];
    memset(r, 'a', sizeof(r));
    memcpy(r, "GET /", 5);
    r[sizeof(r) - 1] = '\0';
    expect_error(r, 414);
}

Test(http_request, request_line_over_cap_byte_by_byte_is_414)
{
    char r[600];
    memset(r, 'a', sizeof(r));
    memcpy(r, "GET /", 5);
    size_t used;
    cr_assert_eq(feed_bytes(r, sizeof(r), &used), UKKO_HTTP__ERROR);
    cr_assert_eq(p.error_status, 414);
}

Test(http_request, header_block_over_cap_is_431)
{
    char r[2048];
    int n = snprintf(r, sizeof(r), "GET / HTTP/1.1\r\nX-Big: ");
    memset(r + n, 'v', 1500);
    strcpy(r + n + 1500, "\r\n\r\n");
    expect_error(r, 431);
}

Test(http_request, too_many_headers_is_431)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 0);
    ukko_buf_puts(&b, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < UKKO_HTTP__MAX_HEADERS + 1; i++)
        ukko_buf_printf(&b, "H%d:\r\n", i);
    ukko_buf_puts(&b, "\r\n");
    expect_error(b.data, 431);
    ukko_buf_destroy(&b);
}

Test(http_request, declared_body_over_cap_is_413)
{
    expect_error("PUT /x HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 413);
}

Test(http_request, chunked_body_over_cap_is_413)
{
    expect_error("PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n"
                 "1\r\nx\r\n0\r\n\r\n",
                 413);
}

Test(http_request, garbage_is_400)
{
    expect_error("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400); /* a TLS hello */
}

Test(http_request, bad_version_is_400)
{
    expect_error("GET / HTP/1.1\r\n\r\n", 400);
}

Test(http_request, bad_header_is_400)
{
    expect_error("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400);
}

Test(http_request, bad_percent_encoding_is_400)
{
    expect_error("GET /a%zz HTTP/1.1\r\n\r\n", 400);
}

Test(http_request, nul_in_path_is_400)
{
    expect_error("GET /a%00b HTTP/1.1\r\n\r\n", 400);
}

Test(http_request, conflicting_lengths_is_400)
{
    expect_error("PUT /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400);
}

Test(http_request, connect_is_refused)
{
    expect_error("CONNECT example.org:443 HTTP/1.1\r\n\r\n", 400);
}

Test(http_request, error_is_sticky)
{
    size_t used;
    expect_error("NOPE\r\n\r\n", 400);
    cr_assert_eq(feed_all("GET / HTTP/1.1\r\n\r\n", &used), UKKO_HTTP__ERROR);
    cr_assert_eq(used, 0);
}
