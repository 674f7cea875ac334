/* Tests node/otlp_proto.c and the protocol choice in node/otlp.c: a known
 * span encodes to the bytes the OTLP protobuf schema gives, every field has
 * the field number and wire type of opentelemetry-proto's trace/v1 and
 * common/v1 (read back with a small reader of our own), odd input (long and
 * non-UTF-8 text, many attributes, big batches, random bytes, a full buffer)
 * always gives a well-formed message, and OTEL_EXPORTER_OTLP_*PROTOCOL /
 * tracing.protocol pick the encoding and Content-Type (grpc refused, named). */
#include "trace_internal.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ a tiny reader */

typedef struct rd {
    const uint8_t *p, *end;
} rd_t;

typedef struct fld {
    unsigned num, wt;
    uint64_t u;          /* varint, fixed64, fixed32 */
    const uint8_t *data; /* length-delimited */
    size_t len;
} fld_t;

static rd_t rd_of(const void *p, size_t n)
{
    return (rd_t){.p = p, .end = (const uint8_t *)p + n};
}

static bool rd_varint(rd_t *r, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        uint8_t c = *r->p++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return true;
    }
    return false;
}

/* The next field; false at the end. A malformed message fails the test. */
static bool rd_next(rd_t *r, fld_t *f)
{
    if (r->p == r->end)
        return false;
    uint64_t key;
    cr_assert(rd_varint(r, &key), "a truncated field key");
    f->num = (unsigned)(key >> 3);
    f->wt = (unsigned)(key & 7);
    cr_assert_gt(f->num, 0, "field number 0");
    switch (f->wt) {
    case 0:
        cr_assert(rd_varint(r, &f->u), "a truncated varint");
        break;
    case 1:
    case 5: {
        size_t n = f->wt == 1 ? 8 : 4;
        cr_assert_geq((size_t)(r->end - r->p), n, "a truncated fixed field");
        f->u = 0;
        for (size_t i = 0; i < n; i++)
            f->u |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        break;
    }
    case 2:
        cr_assert(rd_varint(r, &f->u), "a truncated length");
        cr_assert_leq(f->u, (uint64_t)(r->end - r->p), "a length past the end");
        f->data = r->p;
        f->len = (size_t)f->u;
        r->p += f->len;
        break;
    default:
        cr_assert_fail("wire type %u of field %u", f->wt, f->num);
    }
    return true;
}

/* Wire type of each field number of a message kind, 9: not in the schema. */
enum { M_REQ, M_RS, M_RES, M_SS, M_SCOPE, M_SPAN, M_EVENT, M_STATUS, M_KV, M_ANY, M__N };
static const int8_t schema[M__N][17] = {
    [M_REQ] = {9, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
    [M_RS] = {9, 2, 2, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
    [M_RES] = {9, 2, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
    [M_SS] = {9, 2, 2, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
    [M_SCOPE] = {9, 2, 2, 2, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
    /* trace_id 1, span_id 2, trace_state 3, parent 4, name 5, kind 6, start 7,
     * end 8, attributes 9, dropped 10, events 11, dropped 12, links 13,
     * dropped 14, status 15, flags 16 (fixed32) */
    [M_SPAN] = {9, 2, 2, 2, 2, 2, 0, 1, 1, 2, 0, 2, 0, 2, 0, 2, 5},
    [M_EVENT] = {9, 1, 2, 2, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
    [M_STATUS] = {9, 9, 2, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
    [M_KV] = {9, 2, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
    [M_ANY] = {9, 2, 0, 0, 1, 2, 2, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9},
};

static bool utf8_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = p[i] < 0x80 ? 1 : p[i] >= 0xf0 && p[i] <= 0xf4 ? 4 : p[i] >= 0xe0 ? 3
                                      : p[i] >= 0xc2                ? 2
                                                                    : 0;
        if (!len || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

typedef struct walk {
    size_t spans, attrs, events;
} walk_t;

/* Checks every field of a message of kind m and below against the schema;
 * strings (all but ids) must be UTF-8. */
static void check_msg(int m, const uint8_t *p, size_t n, walk_t *w)
{
    rd_t r = rd_of(p, n);
    fld_t f;
    while (rd_next(&r, &f)) {
        cr_assert_lt(f.num, 17u, "field %u in message kind %d", f.num, m);
        cr_assert_eq((int)f.wt, schema[m][f.num], "field %u of message kind %d: wire type %u",
                     f.num, m, f.wt);
        if (f.wt != 2)
            continue;
        int sub = -1;
        bool text = false;
        switch (m) {
        case M_REQ: sub = M_RS; break;
        case M_RS: sub = f.num == 1 ? M_RES : f.num == 2 ? M_SS : -1; text = f.num == 3; break;
        case M_RES: sub = M_KV; break;
        case M_SS: sub = f.num == 1 ? M_SCOPE : f.num == 2 ? M_SPAN : -1; text = f.num == 3; break;
        case M_SCOPE: text = f.num < 3; sub = f.num == 3 ? M_KV : -1; break;
        case M_SPAN:
            if (f.num == 1)
                cr_assert_eq(f.len, 16u, "trace_id is 16 bytes");
            if (f.num == 2 || f.num == 4)
                cr_assert_eq(f.len, 8u, "span ids are 8 bytes");
            text = f.num == 3 || f.num == 5;
            sub = f.num == 9 ? M_KV : f.num == 11 ? M_EVENT : f.num == 15 ? M_STATUS : -1;
            break;
        case M_EVENT: text = f.num == 2; sub = f.num == 3 ? M_KV : -1; break;
        case M_STATUS: text = true; break;
        case M_KV: text = f.num == 1; sub = f.num == 2 ? M_ANY : -1; break;
        case M_ANY: text = f.num == 1; break;
        }
        if (text)
            cr_assert(utf8_ok(f.data, f.len), "field %u of kind %d is not UTF-8", f.num, m);
        if (sub == M_SPAN)
            w->spans++;
        if (sub == M_KV && m != M_RES)
            w->attrs++;
        if (sub == M_EVENT)
            w->events++;
        if (sub >= 0)
            check_msg(sub, f.data, f.len, w);
    }
}

static walk_t check_request(const ukko_buf_t *b)
{
    walk_t w = {0};
    check_msg(M_REQ, (const uint8_t *)b->data, b->len, &w);
    return w;
}

/* The first field numbered num in [p, p+n); false: none. */
static bool find(const uint8_t *p, size_t n, unsigned num, fld_t *out)
{
    rd_t r = rd_of(p, n);
    while (rd_next(&r, out))
        if (out->num == num)
            return true;
    return false;
}

/* The first span of a request. */
static fld_t first_span(const ukko_buf_t *b)
{
    fld_t rs, ss, sp;
    cr_assert(find((const uint8_t *)b->data, b->len, 1, &rs), "resource_spans");
    cr_assert(find(rs.data, rs.len, 2, &ss), "scope_spans");
    cr_assert(find(ss.data, ss.len, 2, &sp), "spans");
    return sp;
}

/* The AnyValue of the attribute key among the KeyValues numbered num. */
static bool attr(const fld_t *msg, unsigned num, const char *key, fld_t *value)
{
    rd_t r = rd_of(msg->data, msg->len);
    fld_t f, k;
    while (rd_next(&r, &f))
        if (f.num == num && find(f.data, f.len, 1, &k) && k.len == strlen(key) &&
            !memcmp(k.data, key, k.len)) {
            cr_assert(find(f.data, f.len, 2, &k), "the value of %s", key);
            rd_t av = rd_of(k.data, k.len);
            cr_assert(rd_next(&av, value), "an empty AnyValue for %s", key);
            return true;
        }
    return false;
}

static void keep(ukko_span_t *sp)
{
    (void)sp; /* the test frees it */
}

static ukko__otlp_plan_t one_res(const char *key, const char *value)
{
    ukko__otlp_plan_t p;
    memset(&p, 0, sizeof(p));
    p.res[0].key = strdup(key);
    p.res[0].value = strdup(value);
    p.nres = 1;
    return p;
}

/* Encodes into b, then drops the unused bytes before the request. */
static int encode(ukko_buf_t *b, const ukko__otlp_plan_t *p, ukko_span_t *const *spans, size_t n)
{
    size_t start = 99999999;
    int rc = ukko__otlp_proto(b, p, spans, n, &start);
    if (rc == 0) {
        cr_assert_leq(start, b->len);
        ukko_buf_consume(b, start);
    }
    return rc;
}

TestSuite(otlp_proto, .timeout = 60);

Test(otlp_proto, a_known_span_encodes_to_the_expected_bytes)
{
    ukko_span_t *sp = calloc(1, sizeof(*sp));
    for (int i = 0; i < 16; i++)
        sp->ctx.trace_id[i] = (uint8_t)(1 + i);
    for (int i = 0; i < 8; i++)
        sp->ctx.span_id[i] = (uint8_t)(0x11 + i);
    sp->ctx.flags = 1;
    sp->recording = true;
    sp->kind = UKKO_SPAN_SERVER;
    sp->start_ns = 1;
    sp->end_ns = 0x0102;
    memcpy(sp->text, "op\0k", 5);
    sp->name = 0;
    sp->status_msg = UKKO__SPAN_NONE;
    sp->nattrs = 1;
    sp->attrs[0] = (ukko__attr_t){.key = 3, .type = UKKO__ATTR_INT, .event = -1, .v.i = 150};
    ukko__otlp_plan_t p = one_res("service.name", "s");

    size_t v = strlen(UKKO_VERSION);
    cr_assert_lt(v, 20u, "the lengths below are one byte each");
    uint8_t want[256];
    size_t n = 0;
#define B(...)                                                                                     \
    do {                                                                                           \
        const uint8_t bytes_[] = {__VA_ARGS__};                                                    \
        memcpy(want + n, bytes_, sizeof(bytes_));                                                  \
        n += sizeof(bytes_);                                                                       \
    } while (0)
    B(0x0a, (uint8_t)(105 + v));            /* resource_spans (1, LEN) */
    B(0x0a, 21);                            /* resource (1, LEN) */
    B(0x0a, 19);                            /* attributes (1, LEN): a KeyValue */
    B(0x0a, 12, 's', 'e', 'r', 'v', 'i', 'c', 'e', '.', 'n', 'a', 'm', 'e'); /* key */
    B(0x12, 3, 0x0a, 1, 's');               /* value: AnyValue string_value (1) */
    B(0x12, (uint8_t)(80 + v));             /* scope_spans (2, LEN) */
    B(0x0a, (uint8_t)(8 + v));              /* scope (1, LEN) */
    B(0x0a, 4, 'u', 'k', 'k', 'o');         /* name */
    B(0x12, (uint8_t)v);                    /* version */
    memcpy(want + n, UKKO_VERSION, v);
    n += v;
    B(0x12, 68);                            /* spans (2, LEN) */
    B(0x0a, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16); /* trace_id */
    B(0x12, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18);          /* span_id */
    B(0x2a, 2, 'o', 'p');                   /* name (5, LEN) */
    B(0x30, 2);                             /* kind (6, VARINT): SERVER */
    B(0x39, 1, 0, 0, 0, 0, 0, 0, 0);        /* start_time_unix_nano (7, I64) */
    B(0x41, 2, 1, 0, 0, 0, 0, 0, 0);        /* end_time_unix_nano (8, I64), little-endian */
    B(0x4a, 8, 0x0a, 1, 'k', 0x12, 3, 0x18, 0x96, 0x01); /* attributes (9): k = int 150 */
    B(0x85, 0x01, 1, 0, 0, 0);              /* flags (16, I32) */
#undef B

    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 20);
    cr_assert_eq(encode(&b, &p, &sp, 1), 0);
    cr_assert_eq(b.len, n, "%zu bytes, want %zu", b.len, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq((uint8_t)b.data[i], want[i], "byte %zu: %02x, want %02x", i,
                     (uint8_t)b.data[i], want[i]);
    ukko_buf_destroy(&b);
    free(sp);
    ukko__otlp_plan_destroy(&p);
}

Test(otlp_proto, fields_have_the_schemas_numbers_and_types)
{
    ukko__otlp_plan_t p = one_res("service.name", "svc");
    ukko__trace_configure(UKKO__SAMPLER_ALWAYS_ON, 1.0, keep);
    ukko_trace_ctx_t parent;
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    cr_assert_eq(ukko_trace_parse(tp, strlen(tp), &parent), 0);
    ukko_span_t *sp = ukko_span_start("process orders", UKKO_SPAN_CONSUMER, &parent);
    ukko_span_set_str(sp, "messaging.system", "kafka");
    ukko_span_set_int(sp, "messaging.kafka.offset", 9007199254740993LL);
    ukko_span_set_int(sp, "negative", -5);
    ukko_span_set_double(sp, "ratio", 0.5);
    ukko_span_set_bool(sp, "ok", true);
    ukko_span_record_error(sp, UKKO_EINVAL, "bad record");
    ukko_span_end(sp);
    ukko__trace_configure(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0, NULL);

    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 20);
    cr_assert_eq(encode(&b, &p, &sp, 1), 0);
    walk_t w = check_request(&b);
    cr_assert_eq(w.spans, 1u);
    cr_assert_eq(w.events, 1u, "the exception event");

    fld_t s = first_span(&b), f;
    cr_assert(find(s.data, s.len, 1, &f));
    cr_assert(!memcmp(f.data, "\x0a\xf7\x65\x19\x16\xcd\x43\xdd\x84\x48\xeb\x21\x1c\x80\x31\x9c", 16),
              "trace_id as 16 raw bytes");
    cr_assert(find(s.data, s.len, 4, &f));
    cr_assert(!memcmp(f.data, "\xb7\xad\x6b\x71\x69\x20\x33\x31", 8), "parent_span_id");
    cr_assert(find(s.data, s.len, 5, &f));
    cr_assert(f.len == 14 && !memcmp(f.data, "process orders", 14));
    cr_assert(find(s.data, s.len, 6, &f));
    cr_assert_eq(f.u, 5u, "kind CONSUMER");
    cr_assert(find(s.data, s.len, 7, &f));
    uint64_t start = f.u;
    cr_assert(find(s.data, s.len, 8, &f));
    cr_assert(start > 1500000000000000000ull && f.u >= start, "unix nanoseconds");
    cr_assert(find(s.data, s.len, 16, &f));
    cr_assert_eq(f.u, 1u, "flags: sampled");

    cr_assert(attr(&s, 9, "messaging.kafka.offset", &f));
    cr_assert(f.num == 3 && f.u == 9007199254740993ull, "int_value, no precision lost");
    cr_assert(attr(&s, 9, "negative", &f));
    cr_assert(f.num == 3 && (int64_t)f.u == -5, "a negative int64 as two's complement");
    cr_assert(attr(&s, 9, "ratio", &f));
    double d;
    memcpy(&d, &f.u, sizeof(d));
    cr_assert(f.num == 4 && d == 0.5, "double_value");
    cr_assert(attr(&s, 9, "ok", &f));
    cr_assert(f.num == 2 && f.u == 1, "bool_value");
    cr_assert(attr(&s, 9, "messaging.system", &f));
    cr_assert(f.num == 1 && f.len == 5 && !memcmp(f.data, "kafka", 5), "string_value");

    fld_t st;
    cr_assert(find(s.data, s.len, 15, &st), "status");
    cr_assert(find(st.data, st.len, 3, &f));
    cr_assert_eq(f.u, 2u, "STATUS_CODE_ERROR");
    cr_assert(find(st.data, st.len, 2, &f));
    cr_assert(f.len == 10 && !memcmp(f.data, "bad record", 10));

    fld_t ev;
    cr_assert(find(s.data, s.len, 11, &ev), "events");
    cr_assert(find(ev.data, ev.len, 2, &f));
    cr_assert(f.len == 9 && !memcmp(f.data, "exception", 9));
    cr_assert(attr(&ev, 3, "exception.type", &f));
    cr_assert(f.len == 11 && !memcmp(f.data, "UKKO_EINVAL", 11));

    ukko_buf_destroy(&b);
    ukko__span_free(sp);
    ukko__otlp_plan_destroy(&p);
}

Test(otlp_proto, odd_input_still_gives_a_well_formed_request)
{
    /* A long resource value (a 2-byte length), text that is not UTF-8,
     * more attributes than a span keeps, and a batch big enough for
     * 3-byte lengths. */
    char *big = malloc(4001);
    memset(big, 'v', 4000);
    big[4000] = '\0';
    ukko__otlp_plan_t p = one_res("long", big);
    ukko__trace_configure(UKKO__SAMPLER_ALWAYS_ON, 1.0, keep);
    enum { N = 3000 };
    ukko_span_t **spans = calloc(N, sizeof(*spans));
    char long_value[1000];
    memset(long_value, 'x', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    for (int i = 0; i < N; i++) {
        spans[i] = ukko_span_start(i % 2 ? "bad \xff\xfe name \xe2\x82" : long_value,
                                   UKKO_SPAN_INTERNAL, NULL);
        for (int a = 0; a < 40; a++) {
            char k[32];
            snprintf(k, sizeof(k), "k%d\xc3", a); /* a cut-off 2-byte sequence */
            ukko_span_set_str(spans[i], k, "\xed\xa0\x80 surrogate, \xc0\xaf overlong");
        }
        ukko_span_end(spans[i]);
    }
    ukko__trace_configure(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0, NULL);

    ukko_buf_t b;
    ukko_buf_init(&b, 64u << 20);
    cr_assert_eq(encode(&b, &p, spans, N), 0);
    cr_assert_gt(b.len, 1u << 21, "lengths of 3 bytes and more");
    walk_t w = check_request(&b); /* every string UTF-8, every length right */
    cr_assert_eq(w.spans, (size_t)N);
    size_t kept = 0;
    for (int i = 0; i < N; i++)
        kept += spans[i]->nattrs;
    cr_assert_eq(w.attrs, kept, "the kept attributes, no more");
    fld_t s = first_span(&b), f;
    cr_assert_gt(spans[0]->dropped_attrs, 0u);
    cr_assert(find(s.data, s.len, 10, &f), "dropped_attributes_count");
    cr_assert_eq(f.u, spans[0]->dropped_attrs);

    /* The bad bytes became U+FFFD, the good ones stayed. */
    fld_t rs, ss, sp2;
    cr_assert(find((const uint8_t *)b.data, b.len, 1, &rs));
    cr_assert(find(rs.data, rs.len, 2, &ss));
    rd_t r = rd_of(ss.data, ss.len);
    int nth = 0;
    while (rd_next(&r, &sp2))
        if (sp2.num == 2 && nth++ == 1)
            break;
    cr_assert(find(sp2.data, sp2.len, 5, &f));
    static const char want[] = "bad \xef\xbf\xbd\xef\xbf\xbd name \xef\xbf\xbd\xef\xbf\xbd";
    cr_assert(f.len == sizeof(want) - 1 && !memcmp(f.data, want, f.len), "name %.*s",
              (int)f.len, (const char *)f.data);

    /* A cap too small: E2BIG, never a write past it. */
    ukko_buf_t small;
    ukko_buf_init(&small, 1000);
    cr_assert_eq(encode(&small, &p, spans, N), UKKO_E2BIG);
    ukko_buf_destroy(&small);

    ukko_buf_destroy(&b);
    for (int i = 0; i < N; i++)
        ukko__span_free(spans[i]);
    free(spans);
    free(big);
    ukko__otlp_plan_destroy(&p);
}

Test(otlp_proto, random_bytes_in_every_string)
{
    ukko__otlp_plan_t p = one_res("service.name", "x");
    ukko__trace_configure(UKKO__SAMPLER_ALWAYS_ON, 1.0, keep);
    unsigned seed = 4711;
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 20);
    for (int round = 0; round < 500; round++) {
        char s[4][64];
        for (int k = 0; k < 4; k++) {
            size_t len = (size_t)(rand_r(&seed) % 63);
            for (size_t i = 0; i < len; i++)
                s[k][i] = (char)(1 + rand_r(&seed) % 255);
            s[k][len] = '\0';
        }
        ukko_span_t *sp = ukko_span_start(s[0], UKKO_SPAN_INTERNAL, NULL);
        ukko_span_set_str(sp, s[1], s[2]);
        ukko_span_record_error(sp, UKKO_EINVAL, s[3]);
        ukko_span_end(sp);
        ukko_buf_reset(&b);
        cr_assert_eq(encode(&b, &p, &sp, 1), 0);
        walk_t w = check_request(&b);
        cr_assert_eq(w.spans, 1u, "round %d", round);
        ukko__span_free(sp);
    }
    ukko__trace_configure(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0, NULL);
    ukko_buf_destroy(&b);
    ukko__otlp_plan_destroy(&p);
}

/* ------------------------------------------------- choosing the encoding */

static const char *const *fake_env;

static const char *get(const char *name)
{
    size_t n = strlen(name);
    for (const char *const *e = fake_env; e && *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static bool has_header(const ukko__otlp_plan_t *p, const char *line)
{
    for (const struct curl_slist *h = p->headers; h; h = h->next)
        if (!strcmp(h->data, line))
            return true;
    return false;
}

static int plan_with(const char *protocol, const char *const *env, ukko__otlp_plan_t *p,
                     char *err, size_t errlen)
{
    ukko_tracing_config_t tc = {.max_queue = 2048, .max_batch = 512, .schedule_delay_ms = 1000,
                                .export_timeout_ms = 10000, .protocol = (char *)protocol};
    fake_env = env;
    return ukko__otlp_plan(&tc, get, p, err, errlen);
}

Test(otlp_proto, protocol_from_the_config_and_the_variables)
{
    ukko__otlp_plan_t p;
    char err[400];
    static const char *none[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318", NULL};
    cr_assert_eq(plan_with(NULL, none, &p, err, sizeof(err)), 0);
    cr_assert(p.protobuf, "http/protobuf by default, as the spec says");
    cr_assert(has_header(&p, "Content-Type: application/x-protobuf"));
    ukko__otlp_plan_destroy(&p);

    static const char *json[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                 "OTEL_EXPORTER_OTLP_PROTOCOL=http/json", NULL};
    cr_assert_eq(plan_with(NULL, json, &p, err, sizeof(err)), 0);
    cr_assert_not(p.protobuf);
    cr_assert(has_header(&p, "Content-Type: application/json"));
    cr_assert_not(has_header(&p, "Content-Type: application/x-protobuf"));
    ukko__otlp_plan_destroy(&p);

    static const char *traces_wins[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                        "OTEL_EXPORTER_OTLP_PROTOCOL=http/json",
                                        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf", NULL};
    cr_assert_eq(plan_with(NULL, traces_wins, &p, err, sizeof(err)), 0);
    cr_assert(p.protobuf, "the signal's variable wins over the general one");
    ukko__otlp_plan_destroy(&p);

    cr_assert_eq(plan_with("http/json", traces_wins, &p, err, sizeof(err)), 0);
    cr_assert_not(p.protobuf, "tracing.protocol wins over the variables");
    ukko__otlp_plan_destroy(&p);
}

Test(otlp_proto, grpc_is_refused_with_the_way_out)
{
    ukko__otlp_plan_t p;
    char err[400];
    static const char *grpc[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4317",
                                 "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc", NULL};
    cr_assert_eq(plan_with(NULL, grpc, &p, err, sizeof(err)), UKKO_EINVAL);
    cr_assert(strstr(err, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"), "names it: %s", err);
    cr_assert(strstr(err, "http/protobuf") && strstr(err, "4318"), "the way out: %s", err);
    ukko__otlp_plan_destroy(&p);

    static const char *typo[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318",
                                 "OTEL_EXPORTER_OTLP_PROTOCOL=http/proto", NULL};
    cr_assert_eq(plan_with(NULL, typo, &p, err, sizeof(err)), UKKO_EINVAL);
    cr_assert(strstr(err, "OTEL_EXPORTER_OTLP_PROTOCOL=http/proto"), "names it: %s", err);
    ukko__otlp_plan_destroy(&p);

    /* Off (no endpoint): the protocol is not even looked at. */
    static const char *off[] = {"OTEL_EXPORTER_OTLP_PROTOCOL=grpc", NULL};
    cr_assert_eq(plan_with(NULL, off, &p, err, sizeof(err)), 0);
    cr_assert_null(p.url);
    ukko__otlp_plan_destroy(&p);
}
