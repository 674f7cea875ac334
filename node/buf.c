/* buf.c: ukko_buf_t, the capped growable buffer every network-sized thing is
 * read into. Invariant: data is NULL or NUL-terminated with len < alloc, and
 * len never exceeds cap. Owned by one thread at a time. */
#include "ukko.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ukko_buf_init(ukko_buf_t *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap ? cap : SIZE_MAX / 2;
}

void ukko_buf_destroy(ukko_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->alloc = 0;
}

void ukko_buf_reset(ukko_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int reserve(ukko_buf_t *b, size_t extra)
{
    if (extra > b->cap || b->len > b->cap - extra)
        return UKKO_E2BIG;
    size_t need = b->len + extra + 1;
    if (need <= b->alloc)
        return 0;
    size_t n = b->alloc ? b->alloc : 256;
    while (n < need)
        n *= 2;
    char *p = realloc(b->data, n);
    if (!p)
        return UKKO_ENOMEM;
    b->data = p;
    b->alloc = n;
    return 0;
}

int ukko_buf_append(ukko_buf_t *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ukko_buf_puts(ukko_buf_t *b, const char *s)
{
    return ukko_buf_append(b, s, strlen(s));
}

int ukko_buf_vprintf(ukko_buf_t *b, const char *fmt, va_list ap)
{
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return UKKO_EINVAL;
    if ((size_t)n < sizeof(small))
        return ukko_buf_append(b, small, (size_t)n);
    int rc = reserve(b, (size_t)n);
    if (rc < 0)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int ukko_buf_printf(ukko_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ukko_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int ukko_buf_json_str(ukko_buf_t *b, const char *s)
{
    int rc = ukko_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p; p++) {
        switch (*p) {
        case '"': rc = ukko_buf_append(b, "\\\"", 2); break;
        case '\\': rc = ukko_buf_append(b, "\\\\", 2); break;
        case '\n': rc = ukko_buf_append(b, "\\n", 2); break;
        case '\r': rc = ukko_buf_append(b, "\\r", 2); break;
        case '\t': rc = ukko_buf_append(b, "\\t", 2); break;
        default:
            if (*p < 0x20)
                rc = ukko_buf_printf(b, "\\u%04x", *p);
            else
                rc = ukko_buf_append(b, p, 1);
        }
    }
    return rc ? rc : ukko_buf_append(b, "\"", 1);
}

void ukko_buf_consume(ukko_buf_t *b, size_t n)
{
    if (n >= b->len) {
        ukko_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}
