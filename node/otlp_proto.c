/* otlp_proto.c: spans as one OTLP ExportTraceServiceRequest in protobuf's
 * binary wire format (OTLP/HTTP with Content-Type application/x-protobuf),
 * written by hand: varints, fixed64 times, length-delimited messages whose
 * length is patched in when they end. Field numbers are those of
 * opentelemetry-proto's collector/trace/v1, trace/v1, resource/v1 and
 * common/v1. Strings that are not UTF-8 get U+FFFD for each bad byte, as in
 * the JSON: protobuf strings must be UTF-8, and one bad attribute must not
 * make the collector refuse a whole batch. Threads: the exporter thread's
 * (and tests'); no state of its own. */
#include "trace_internal.h"

#include <stdio.h>
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

typedef struct enc {
    ukko_buf_t *b;
    int rc; /* the first failed append's (the buffer's cap); later writes are skipped */
} enc_t;

static void put(enc_t *e, const void *p, size_t n)
{
    if (!e->rc)
        e->rc = ukko_buf_append(e->b, p, n);
}

static size_t varint_to(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static void varint(enc_t *e, uint64_t v)
{
    uint8_t d[10];
    put(e, d, varint_to(d, v));
}

static void tag(enc_t *e, unsigned field, unsigned wt)
{
    varint(e, (uint64_t)field << 3 | wt);
}

static void field_varint(enc_t *e, unsigned field, uint64_t v)
{
    tag(e, field, WT_VARINT);
    varint(e, v);
}

static void field_fixed64(enc_t *e, unsigned field, uint64_t v)
{
    uint8_t d[8];
    for (int i = 0; i < 8; i++)
        d[i] = (uint8_t)(v >> (8 * i)); /* little-endian on the wire */
    tag(e, field, WT_I64);
    put(e, d, 8);
}

static void field_fixed32(enc_t *e, unsigned field, uint32_t v)
{
    uint8_t d[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    tag(e, field, WT_I32);
    put(e, d, 4);
}

static void field_bytes(enc_t *e, unsigned field, const void *p, size_t n)
{
    tag(e, field, WT_LEN);
    varint(e, n);
    put(e, p, n);
}

/* The length of a valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* overlong 3/4-byte forms, surrogates, past U+10FFFF */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return len;
}

/* Bytes s would take with each byte that is not UTF-8 as U+FFFD (3 bytes). */
static size_t utf8_clean_len(const unsigned char *p, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        size_t u = p[i] < 0x80 ? 1 : utf8_len(p + i, n - i);
        out += u ? u : 3;
        i += u ? u : 1;
    }
    return out;
}

static void field_str(enc_t *e, unsigned field, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    while (i < n && p[i] < 0x80) /* the common case: ASCII, one pass */
        i++;
    if (i == n) {
        field_bytes(e, field, s, n);
        return;
    }
    tag(e, field, WT_LEN);
    varint(e, utf8_clean_len(p, n));
    size_t run = 0;
    for (i = 0; i < n;) {
        size_t u = p[i] < 0x80 ? 1 : utf8_len(p + i, n - i);
        if (u) {
            i += u;
            run += u;
            continue;
        }
        put(e, p + i - run, run);
        run = 0;
        put(e, "\xef\xbf\xbd", 3);
        i++;
    }
    put(e, p + n - run, run);
}

/* A length-delimited field whose content follows: one byte is kept for the
 * length; end() writes it, moving the content when it needs more. */
static size_t begin(enc_t *e, unsigned field)
{
    tag(e, field, WT_LEN);
    put(e, "", 1);
    return e->b->len - 1;
}

static void end(enc_t *e, size_t at)
{
    if (e->rc)
        return;
    size_t len = e->b->len - at - 1;
    uint8_t d[10];
    size_t k = varint_to(d, len);
    if (k > 1) {
        static const uint8_t pad[9];
        put(e, pad, k - 1);
        if (e->rc)
            return;
        memmove(e->b->data + at + k, e->b->data + at + 1, len);
    }
    memcpy(e->b->data + at, d, k);
}

static void kv_str(enc_t *e, unsigned field, const char *key, const char *value)
{
    size_t kv = begin(e, field);
    field_str(e, F_KV_KEY, key);
    size_t any = begin(e, F_KV_VALUE);
    field_str(e, F_ANY_STRING, value);
    end(e, any);
    end(e, kv);
}

static void attrs(enc_t *e, unsigned field, const ukko_span_t *sp, int event)
{
    for (int i = 0; i < sp->nattrs; i++) {
        const ukko__attr_t *a = &sp->attrs[i];
        if (a->event != event)
            continue;
        size_t kv = begin(e, field);
        field_str(e, F_KV_KEY, ukko__span_text(sp, a->key));
        size_t any = begin(e, F_KV_VALUE);
        switch (a->type) {
        case UKKO__ATTR_STR:
            field_str(e, F_ANY_STRING, ukko__span_text(sp, a->v.s));
            break;
        case UKKO__ATTR_INT:
            field_varint(e, F_ANY_INT, (uint64_t)a->v.i); /* int64: two's complement */
            break;
        case UKKO__ATTR_DOUBLE: {
            uint64_t bits;
            memcpy(&bits, &a->v.d, sizeof(bits));
            field_fixed64(e, F_ANY_DOUBLE, bits);
            break;
        }
        default:
            field_varint(e, F_ANY_BOOL, a->v.b ? 1 : 0);
        }
        end(e, any);
        end(e, kv);
    }
}

static void span(enc_t *e, const ukko_span_t *sp)
{
    size_t at = begin(e, F_SS_SPANS);
    field_bytes(e, F_SPAN_TRACE_ID, sp->ctx.trace_id, 16);
    field_bytes(e, F_SPAN_SPAN_ID, sp->ctx.span_id, 8);
    if (sp->has_parent)
        field_bytes(e, F_SPAN_PARENT_SPAN_ID, sp->parent_id, 8);
    field_str(e, F_SPAN_NAME, ukko__span_text(sp, sp->name));
    if (sp->kind)
        field_varint(e, F_SPAN_KIND, sp->kind);
    field_fixed64(e, F_SPAN_START, sp->start_ns);
    field_fixed64(e, F_SPAN_END, sp->end_ns);
    attrs(e, F_SPAN_ATTRIBUTES, sp, -1);
    if (sp->dropped_attrs)
        field_varint(e, F_SPAN_DROPPED_ATTRIBUTES, sp->dropped_attrs);
    for (int i = 0; i < sp->nevents; i++) {
        size_t ev = begin(e, F_SPAN_EVENTS);
        field_fixed64(e, F_EVENT_TIME, sp->events[i].time_ns);
        field_str(e, F_EVENT_NAME, ukko__span_text(sp, sp->events[i].name));
        attrs(e, F_EVENT_ATTRIBUTES, sp, i);
        end(e, ev);
    }
    if (sp->dropped_events)
        field_varint(e, F_SPAN_DROPPED_EVENTS, sp->dropped_events);
    if (sp->status) {
        size_t st = begin(e, F_SPAN_STATUS);
        if (sp->status_msg != UKKO__SPAN_NONE)
            field_str(e, F_STATUS_MESSAGE, ukko__span_text(sp, sp->status_msg));
        field_varint(e, F_STATUS_CODE, sp->status);
        end(e, st);
    }
    /* W3C flags; "has-is-remote" (bit 8) unset, as in the JSON */
    field_fixed32(e, F_SPAN_FLAGS, sp->ctx.flags);
    end(e, at);
}

int ukko__otlp_proto(ukko_buf_t *b, const ukko__otlp_plan_t *p, ukko_span_t *const *spans,
                     size_t n)
{
    enc_t e = {.b = b};
    size_t rs = begin(&e, F_REQ_RESOURCE_SPANS);
    size_t res = begin(&e, F_RS_RESOURCE);
    for (size_t i = 0; i < p->nres; i++)
        kv_str(&e, F_RES_ATTRIBUTES, p->res[i].key, p->res[i].value);
    end(&e, res);
    size_t ss = begin(&e, F_RS_SCOPE_SPANS);
    size_t scope = begin(&e, F_SS_SCOPE);
    field_str(&e, F_SCOPE_NAME, "ukko");
    field_str(&e, F_SCOPE_VERSION, UKKO_VERSION);
    end(&e, scope);
    for (size_t i = 0; i < n; i++)
        span(&e, spans[i]);
    end(&e, ss);
    end(&e, rs);
    return e.rc;
}
