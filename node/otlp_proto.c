/* otlp_proto.c: spans as one OTLP ExportTraceServiceRequest in protobuf's
 * binary wire format (OTLP/HTTP with Content-Type application/x-protobuf),
 * written by hand: varints, fixed64 times, length-delimited messages. A span
 * is written into a scratch array big enough for any span (its text is
 * bounded), nested messages getting their length when they end, then
 * appended in one go; the outer messages' lengths are known once every span
 * is written: they go into a gap left before the spans, so the request
 * starts a few bytes into the buffer and nothing is moved. Field numbers are those of
 * opentelemetry-proto's collector/trace/v1, trace/v1, resource/v1 and
 * common/v1. Strings that are not UTF-8 get U+FFFD for each bad byte, as in
 * the JSON: protobuf strings must be UTF-8, and one bad attribute must not
 * make the collector refuse a whole batch. Threads: the exporter thread's
 * (and tests'); no state of its own. */
#include "trace_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };


/* ExportTraceServiceRequest */
#define F_REQ_RESOURCE_SPANS 1
/* ResourceSpans */
#define F_RS_RESOURCE 1
#define F_RS_SCOPE_SPANS 2
/* Resource */
#define F_RES_ATTRIBUTES 1
/* ScopeSpans */
#define F_SS_SCOPE 1
#define F_SS_SPANS 2
/* InstrumentationScope */
#define F_SCOPE_NAME 1
#define F_SCOPE_VERSION 2
/* Span */
#define F_SPAN_TRACE_ID 1
#define F_SPAN_SPAN_ID 2
#define F_SPAN_PARENT_SPAN_ID 4
#define F_SPAN_NAME 5
#define F_SPAN_KIND 6
#define F_SPAN_START 7
#define F_SPAN_END 8
#define F_SPAN_ATTRIBUTES 9
#define F_SPAN_DROPPED_ATTRIBUTES 10
#define F_SPAN_EVENTS 11
#define F_SPAN_DROPPED_EVENTS 12
#define F_SPAN_STATUS 15
#define F_SPAN_FLAGS 16
/* Span.Event */
#define F_EVENT_TIME 1
#define F_EVENT_NAME 2
#define F_EVENT_ATTRIBUTES 3
/* Status */
#define F_STATUS_MESSAGE 2
#define F_STATUS_CODE 3
/* KeyValue */
#define F_KV_KEY 1
#define F_KV_VALUE 2
/* AnyValue */
#define F_ANY_STRING 1
#define F_ANY_BOOL 2
#define F_ANY_INT 3
#define F_ANY_DOUBLE 4

/* Any span fits: its strings share UKKO__SPAN_TEXT bytes (3 times that
 * when every byte becomes U+FFFD), plus at most ~20 bytes of framing for
 * each attribute, event and fixed field. */
#define SPAN_SCRATCH 4096
_Static_assert(UKKO__SPAN_TEXT * 3 + UKKO__SPAN_MAX_ATTRS * 40 + UKKO__SPAN_MAX_EVENTS * 40 + 200 <
                   SPAN_SCRATCH,
               "a span's encoding fits in the scratch");

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *w_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Field numbers below 16 make one-byte keys. */
static inline uint8_t *w_tag(uint8_t *p, unsigned field, unsigned wt)
{
    return w_varint(p, (uint64_t)field << 3 | wt);
}

static inline uint8_t *w_fixed64(uint8_t *p, unsigned field, uint64_t v)
{
    p = w_tag(p, field, WT_I64);
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> (8 * i)); /* little-endian on the wire */
    return p;
}

static inline uint8_t *w_bytes(uint8_t *p, unsigned field, const void *src, size_t n)
{
    p = w_tag(p, field, WT_LEN);
    p = w_varint(p, n);
    memcpy(p, src, n);
    return p + n;
}

/* A string field; bytes that are not UTF-8 become U+FFFD (3 bytes each):
 * the caller leaves room for 3 times strlen(s). */
static uint8_t *w_str(uint8_t *p, unsigned field, const char *s)
{
    const unsigned char *q = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    while (i < n && q[i] < 0x80) /* the common case: ASCII, one pass */
        i++;
    if (i == n)
        return w_bytes(p, field, s, n);
    size_t clean = 0;
    for (i = 0; i < n;) {
        size_t u = q[i] < 0x80 ? 1 : ukko__utf8_len(q + i, n - i);
        clean += u ? u : 3;
        i += u ? u : 1;
    }
    p = w_tag(p, field, WT_LEN);
    p = w_varint(p, clean);
    for (i = 0; i < n;) {
        size_t u = q[i] < 0x80 ? 1 : ukko__utf8_len(q + i, n - i);
        if (u) {
            memcpy(p, q + i, u);
            p += u;
            i += u;
        } else {
            memcpy(p, "\xef\xbf\xbd", 3);
            p += 3;
            i++;
        }
    }
    return p;
}

/* A nested message: open() keeps one byte for its length, close() writes
 * it, moving the content along when it is 128 bytes or more (rare: an
 * attribute with a long value). */
static inline uint8_t *w_open(uint8_t *p, unsigned field, uint8_t **mark)
{
    p = w_tag(p, field, WT_LEN);
    *mark = p;
    return p + 1;
}

static inline uint8_t *w_close(uint8_t *mark, uint8_t *p)
{
    size_t len = (size_t)(p - mark - 1);
    if (len < 0x80) {
        *mark = (uint8_t)len;
        return p;
    }
    size_t k = varint_len(len);
    memmove(mark + k, mark + 1, len);
    (void)w_varint(mark, len);
    return p + k - 1;
}

static uint8_t *w_kv_str(uint8_t *p, unsigned field, const char *key, const char *value)
{
    uint8_t *kv, *any;
    p = w_open(p, field, &kv);
    p = w_str(p, F_KV_KEY, key);
    p = w_open(p, F_KV_VALUE, &any);
    p = w_str(p, F_ANY_STRING, value);
    p = w_close(any, p);
    return w_close(kv, p);
}

static uint8_t *w_attrs(uint8_t *p, unsigned field, const ukko_span_t *sp, int event)
{
    for (int i = 0; i < sp->nattrs; i++) {
        const ukko__attr_t *a = &sp->attrs[i];
        if (a->event != event)
            continue;
        uint8_t *kv, *any;
        p = w_open(p, field, &kv);
        p = w_str(p, F_KV_KEY, ukko__span_text(sp, a->key));
        p = w_open(p, F_KV_VALUE, &any);
        switch (a->type) {
        case UKKO__ATTR_STR:
            p = w_str(p, F_ANY_STRING, ukko__span_text(sp, a->v.s));
            break;
        case UKKO__ATTR_INT:
            p = w_tag(p, F_ANY_INT, WT_VARINT);
            p = w_varint(p, (uint64_t)a->v.i); /* int64: two's complement, 10 bytes if < 0 */
            break;
        case UKKO__ATTR_DOUBLE: {
            uint64_t bits;
            memcpy(&bits, &a->v.d, sizeof(bits));
            p = w_fixed64(p, F_ANY_DOUBLE, bits);
            break;
        }
        default:
            p = w_tag(p, F_ANY_BOOL, WT_VARINT);
            *p++ = a->v.b ? 1 : 0;
        }
        p = w_close(any, p);
        p = w_close(kv, p);
    }
    return p;
}

/* The Span message's content (no key, no length) at p. */
static uint8_t *w_span(uint8_t *p, const ukko_span_t *sp)
{
    p = w_bytes(p, F_SPAN_TRACE_ID, sp->ctx.trace_id, 16);
    p = w_bytes(p, F_SPAN_SPAN_ID, sp->ctx.span_id, 8);
    if (sp->has_parent)
        p = w_bytes(p, F_SPAN_PARENT_SPAN_ID, sp->parent_id, 8);
    p = w_str(p, F_SPAN_NAME, ukko__span_text(sp, sp->name));
    if (sp->kind) {
        p = w_tag(p, F_SPAN_KIND, WT_VARINT);
        p = w_varint(p, sp->kind);
    }
    p = w_fixed64(p, F_SPAN_START, sp->start_ns);
    p = w_fixed64(p, F_SPAN_END, sp->end_ns);
    p = w_attrs(p, F_SPAN_ATTRIBUTES, sp, -1);
    if (sp->dropped_attrs) {
        p = w_tag(p, F_SPAN_DROPPED_ATTRIBUTES, WT_VARINT);
        p = w_varint(p, sp->dropped_attrs);
    }
    for (int i = 0; i < sp->nevents; i++) {
        uint8_t *ev;
        p = w_open(p, F_SPAN_EVENTS, &ev);
        p = w_fixed64(p, F_EVENT_TIME, sp->events[i].time_ns);
        p = w_str(p, F_EVENT_NAME, ukko__span_text(sp, sp->events[i].name));
        p = w_attrs(p, F_EVENT_ATTRIBUTES, sp, i);
        p = w_close(ev, p);
    }
    if (sp->dropped_events) {
        p = w_tag(p, F_SPAN_DROPPED_EVENTS, WT_VARINT);
        p = w_varint(p, sp->dropped_events);
    }
    if (sp->status) {
        uint8_t *st;
        p = w_open(p, F_SPAN_STATUS, &st);
        if (sp->status_msg != UKKO__SPAN_NONE)
            p = w_str(p, F_STATUS_MESSAGE, ukko__span_text(sp, sp->status_msg));
        p = w_tag(p, F_STATUS_CODE, WT_VARINT);
        p = w_varint(p, sp->status);
        p = w_close(st, p);
    }
    /* W3C flags; "has-is-remote" (bit 8) unset, as in the JSON. Field 16:
     * a two-byte key. */
    p = w_tag(p, F_SPAN_FLAGS, WT_I32);
    uint32_t fl = sp->ctx.flags;
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(fl >> (8 * i));
    return p;
}

int ukko__otlp_proto(ukko_buf_t *b, const ukko__otlp_plan_t *p, ukko_span_t *const *spans,
                     size_t n, size_t *start)
{
    /* The resource and the scope: their own bytes first, sized for the worst. */
    size_t bound = 64 + 3 * strlen(UKKO_VERSION);
    for (size_t i = 0; i < p->nres; i++)
        bound += 40 + 3 * (strlen(p->res[i].key) + strlen(p->res[i].value));
    uint8_t *head = malloc(bound);
    if (!head)
        return UKKO_ENOMEM;
    uint8_t *w = head, *m;
    w = w_open(w, F_RS_RESOURCE, &m);
    for (size_t i = 0; i < p->nres; i++)
        w = w_kv_str(w, F_RES_ATTRIBUTES, p->res[i].key, p->res[i].value);
    w = w_close(m, w);
    size_t h1 = (size_t)(w - head);
    w = w_open(w, F_SS_SCOPE, &m);
    w = w_str(w, F_SCOPE_NAME, "ukko");
    w = w_str(w, F_SCOPE_VERSION, UKKO_VERSION);
    w = w_close(m, w);
    size_t h = (size_t)(w - head);

    /* The gap for what comes before the spans: the header, two keys and two
     * lengths (at most 5 bytes each under the buffer's cap), with room to
     * spare; its bytes are written once the spans' total is known. */
    size_t base = b->len, gap = h + 18;
    static const char zeros[18];
    int rc = ukko_buf_append(b, head, h);
    if (rc == 0)
        rc = ukko_buf_append(b, zeros, sizeof(zeros));
    uint8_t scratch[SPAN_SCRATCH];
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint8_t *c = w_span(scratch + 8, spans[i]);
        size_t len = (size_t)(c - scratch - 8);
        /* key and length right before the content */
        uint8_t kl[8];
        uint8_t *e = w_varint(w_tag(kl, F_SS_SPANS, WT_LEN), len);
        size_t k = (size_t)(e - kl);
        memcpy(scratch + 8 - k, kl, k);
        rc = ukko_buf_append(b, scratch + 8 - k, len + k);
    }
    if (rc < 0) {
        free(head);
        return rc;
    }
    size_t s = b->len - base - gap;
    size_t ss = h - h1 + s;                                     /* ScopeSpans' content */
    size_t rs = h1 + 1 + varint_len(ss) + ss;                   /* ResourceSpans' */
    size_t prefix = 1 + varint_len(rs) + h1 + 1 + varint_len(ss) + (h - h1);
    uint8_t *o = (uint8_t *)b->data + base + gap - prefix;
    o = w_tag(o, F_REQ_RESOURCE_SPANS, WT_LEN);
    o = w_varint(o, rs);
    memcpy(o, head, h1);
    o = w_tag(o + h1, F_RS_SCOPE_SPANS, WT_LEN);
    o = w_varint(o, ss);
    memcpy(o, head + h1, h - h1);
    free(head);
    *start = base + gap - prefix;
    return 0;
}
