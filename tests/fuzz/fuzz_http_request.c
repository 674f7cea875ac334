/* fuzz_http_request: the management server's request parser on arbitrary
 * bytes, cut into arbitrary pieces (the first byte picks the piece size), as
 * a connection would deliver them. Invariants: never more consumed than
 * given, an error always carries a 4xx status, no leak, no overflow. */
#include "http_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t piece = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    static const ukko_http__limits_t lim = {
        .max_request_line = 512, .max_header_bytes = 2048, .max_body_bytes = 1024};
    ukko_http__parser_t p;
    ukko_http__parser_init(&p, &lim);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece;
        size_t used = 0;
        ukko_http__event_t ev = ukko_http__parser_feed(&p, (const char *)data + off, n, &used);
        if (used > n)
            abort();
        off += used;
        if (ev == UKKO_HTTP__ERROR) {
            if (p.error_status < 400 || p.error_status > 499 || !p.error_msg)
                abort();
            break;
        }
        if (ev == UKKO_HTTP__REQUEST) {
            /* Touch what a handler would read. */
            if (!p.req.method || !p.req.path || !p.req.query || p.req.path[0] == '\0')
                abort();
            for (size_t i = 0; i < p.req.nheaders; i++)
                if (strlen(p.req.headers[i].name) + strlen(p.req.headers[i].value) >
                    lim.max_header_bytes)
                    abort();
            if (p.req.body_len > lim.max_body_bytes)
                abort();
            ukko_http__parser_next(&p);
            continue;
        }
        if (used == 0)
            break; /* paused without a request: cannot happen, but never spin */
    }
    ukko_http__parser_destroy(&p);
    return 0;
}
