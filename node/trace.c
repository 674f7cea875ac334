/* trace.c: W3C Trace Context (traceparent, tracestate) and spans: ids from a
 * per-thread xoshiro256** seeded by OpenSSL's RAND_bytes, the sampler, the
 * thread's current span, and the hand-over of ended spans to the exporter.
 * Any thread. Invariant: while tracing is off, starting a span is one relaxed
 * load and returns NULL; a span is touched by one thread at a time. */
#include "trace_internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

/* Set by ukko__trace_configure (once at start, once at the end); g_on is
 * stored last with release, so a thread that sees it on sees the rest. */
static _Atomic bool g_on;
static ukko__sampler_t g_sampler = UKKO__SAMPLER_PARENT_ALWAYS_ON;
static double g_ratio = 1.0;
static _Atomic(ukko__span_sink_fn) g_sink;
static _Atomic bool g_backlog; /* the exporter's queue is full */
static _Atomic uint64_t g_backlog_dropped;

static _Thread_local ukko_span_t *t_current;
static _Thread_local uint64_t t_rng[4];
static _Thread_local bool t_seeded;

/* ---------------------------------------------------------------- the ids */

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna): fast, 2^256 period, seeded from the
 * system's CSPRNG per thread so that ids never repeat across processes. */
static uint64_t rng_next(void)
{
    if (!t_seeded) {
        if (RAND_bytes((unsigned char *)t_rng, sizeof(t_rng)) != 1) {
            /* No entropy is rare enough to fall back to time and address:
             * ids stay unique per process, only less unpredictable. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            t_rng[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
            t_rng[1] = (uint64_t)(uintptr_t)&t_rng;
            t_rng[2] = 0x9e3779b97f4a7c15ull;
            t_rng[3] = 0xbf58476d1ce4e5b9ull;
        }
        t_seeded = true;
    }
    uint64_t *s = t_rng;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static void random_id(uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rng_next();
            memcpy(out + i, &r, n - i < 8 ? n - i : 8);
        }
        /* an all-zero id is invalid; at 2^-64 this loop runs once */
    } while (!memcmp(out, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", n));
}

/* --------------------------------------------------------- trace context */

/* Lower-case hex digit values, -1 for every other byte (upper case is
 * invalid in traceparent); a table, since every tell with a trace parses one. */
static const int8_t hexval[256] = {
    ['0'] = 0 + 1, ['1'] = 1 + 1, ['2'] = 2 + 1, ['3'] = 3 + 1, ['4'] = 4 + 1,
    ['5'] = 5 + 1, ['6'] = 6 + 1, ['7'] = 7 + 1, ['8'] = 8 + 1, ['9'] = 9 + 1,
    ['a'] = 10 + 1, ['b'] = 11 + 1, ['c'] = 12 + 1, ['d'] = 13 + 1, ['e'] = 14 + 1,
    ['f'] = 15 + 1,
}; /* stored plus one, so that the zero of the rest means "not hex" */

static int hex_bytes(const char *p, uint8_t *out, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval[u[2 * i]] - 1, lo = hexval[u[2 * i + 1]] - 1;
        if ((hi | lo) < 0)
            return UKKO_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
        any |= out[i];
    }
    return any ? 0 : 1;
}

void ukko__hex(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int ukko_trace_parse(const char *s, size_t len, ukko_trace_ctx_t *out)
{
    if (!s || len < UKKO_TRACEPARENT_LEN)
        return UKKO_EINVAL;
    uint8_t version, flags, tid[16], sid[8];
    if (hex_bytes(s, &version, 1) < 0 || version == 0xff)
        return UKKO_EINVAL;
    /* Version 00 is exactly 55 chars; a later version may append fields
     * after a '-', which a version-00 reader ignores (W3C, "versioning"). */
    if (version == 0 ? len != UKKO_TRACEPARENT_LEN
                     : len > UKKO_TRACEPARENT_LEN && s[UKKO_TRACEPARENT_LEN] != '-')
        return UKKO_EINVAL;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return UKKO_EINVAL;
    if (hex_bytes(s + 3, tid, 16) != 0 || hex_bytes(s + 36, sid, 8) != 0 ||
        hex_bytes(s + 53, &flags, 1) < 0)
        return UKKO_EINVAL;
    memcpy(out->trace_id, tid, 16);
    memcpy(out->span_id, sid, 8);
    out->flags = flags;
    return 0;
}

void ukko_trace_format(const ukko_trace_ctx_t *ctx, char out[UKKO_TRACEPARENT_LEN + 1])
{
    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    ukko__hex(ctx->trace_id, 16, out + 3);
    out[35] = '-';
    ukko__hex(ctx->span_id, 8, out + 36);
    out[52] = '-';
    ukko__hex(&ctx->flags, 1, out + 53);
}

static bool lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool key_char(char c)
{
    return lcalpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/';
}

/* One list member "key=value" of tracestate (W3C grammar). */
static int member_check(const char *s, size_t n)
{
    const char *eq = memchr(s, '=', n);
    if (!eq || eq == s)
        return UKKO_EINVAL;
    size_t klen = (size_t)(eq - s), vlen = n - klen - 1;
    const char *at = memchr(s, '@', klen);
    if (at) {
        /* multi-tenant: tenant-id "@" system-id */
        size_t tlen = (size_t)(at - s), slen = klen - tlen - 1;
        if (tlen < 1 || tlen > 241 || slen < 1 || slen > 14 || !lcalpha(at[1]))
            return UKKO_EINVAL;
        if (!lcalpha(s[0]) && !(s[0] >= '0' && s[0] <= '9'))
            return UKKO_EINVAL;
        for (size_t i = 1; i < klen; i++)
            if (s + i != at && !key_char(s[i]))
                return UKKO_EINVAL;
    } else {
        if (klen > 256 || !lcalpha(s[0]))
            return UKKO_EINVAL;
        for (size_t i = 1; i < klen; i++)
            if (!key_char(s[i]))
                return UKKO_EINVAL;
    }
    if (vlen < 1 || vlen > 256 || eq[vlen] == ' ')
        return UKKO_EINVAL; /* the last char of a value is not a space */
    for (size_t i = 1; i <= vlen; i++) {
        unsigned char c = (unsigned char)eq[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return UKKO_EINVAL;
    }
    return 0;
}

int ukko_tracestate_check(const char *s, size_t len)
{
    if (!s || len > 512)
        return UKKO_EINVAL;
    int members = 0;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        if (b > a) { /* empty members are allowed and not counted */
            if (++members > 32 || member_check(s + a, b - a) < 0)
                return UKKO_EINVAL;
        }
        i = j + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- sampling */

int ukko__sampler_parse(const char *name, ukko__sampler_t *out)
{
    static const struct {
        const char *name;
        ukko__sampler_t s;
    } names[] = {
        {"always_on", UKKO__SAMPLER_ALWAYS_ON},
        {"always_off", UKKO__SAMPLER_ALWAYS_OFF},
        {"traceidratio", UKKO__SAMPLER_RATIO},
        {"parentbased_always_on", UKKO__SAMPLER_PARENT_ALWAYS_ON},
        {"parentbased_always_off", UKKO__SAMPLER_PARENT_ALWAYS_OFF},
        {"parentbased_traceidratio", UKKO__SAMPLER_PARENT_RATIO},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i].name)) {
            *out = names[i].s;
            return 0;
        }
    return UKKO_EINVAL;
}

const char *ukko__sampler_name(ukko__sampler_t s)
{
    static const char *const n[] = {"always_on", "always_off", "traceidratio",
                                    "parentbased_always_on", "parentbased_always_off",
                                    "parentbased_traceidratio"};
    return (unsigned)s < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

/* The ratio sampler's rule, as OpenTelemetry's SDKs apply it: the trace
 * id's last 8 bytes (random by W3C level 2) below ratio * 2^63, so that
 * every service sampling at the same ratio keeps the same traces. */
bool ukko__trace_ratio_sampled(const uint8_t trace_id[16], double ratio)
{
    if (ratio >= 1.0)
        return true;
    if (!(ratio > 0.0))
        return false;
    uint64_t v = 0;
    for (int i = 8; i < 16; i++)
        v = v << 8 | trace_id[i];
    v >>= 1;
    return (double)v < ratio * 9223372036854775808.0;
}

static bool sample(const ukko_trace_ctx_t *parent, const uint8_t trace_id[16])
{
    switch (g_sampler) {
    case UKKO__SAMPLER_ALWAYS_ON: return true;
    case UKKO__SAMPLER_ALWAYS_OFF: return false;
    case UKKO__SAMPLER_RATIO: return ukko__trace_ratio_sampled(trace_id, g_ratio);
    case UKKO__SAMPLER_PARENT_ALWAYS_ON:
        return parent ? (parent->flags & UKKO_TRACE_SAMPLED) != 0 : true;
    case UKKO__SAMPLER_PARENT_ALWAYS_OFF:
        return parent ? (parent->flags & UKKO_TRACE_SAMPLED) != 0 : false;
    case UKKO__SAMPLER_PARENT_RATIO:
        return parent ? (parent->flags & UKKO_TRACE_SAMPLED) != 0
                      : ukko__trace_ratio_sampled(trace_id, g_ratio);
    }
    return false;
}

void ukko__trace_configure(ukko__sampler_t sampler, double ratio, ukko__span_sink_fn sink)
{
    g_sampler = sampler;
    g_ratio = isnan(ratio) ? 1.0 : ratio < 0 ? 0 : ratio > 1 ? 1 : ratio;
    atomic_store_explicit(&g_backlog, false, memory_order_relaxed);
    atomic_store_explicit(&g_sink, sink, memory_order_release); /* pairs with ukko_span_end */
    atomic_store_explicit(&g_on, sink != NULL, memory_order_release);
}

void ukko__trace_set_backlog(bool full)
{
    /* relaxed: a hint; a span recorded or not around the change is fine */
    if (atomic_load_explicit(&g_backlog, memory_order_relaxed) != full)
        atomic_store_explicit(&g_backlog, full, memory_order_relaxed);
}

uint64_t ukko__trace_backlog_dropped(void)
{
    return atomic_load_explicit(&g_backlog_dropped, memory_order_relaxed);
}

bool ukko_trace_enabled(void)
{
    return atomic_load_explicit(&g_on, memory_order_relaxed);
}

/* ------------------------------------------------------------------- spans */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Copies s (NUL included) into the span's text: its offset, or
 * UKKO__SPAN_NONE when it does not fit. */
static uint16_t text_put(ukko_span_t *sp, const char *s)
{
    size_t n = strlen(s) + 1;
    if (n > (size_t)UKKO__SPAN_TEXT - sp->text_len)
        return UKKO__SPAN_NONE;
    uint16_t off = sp->text_len;
    memcpy(sp->text + off, s, n);
    sp->text_len = (uint16_t)(off + n);
    return off;
}

ukko_span_t *ukko_span_start(const char *name, ukko_span_kind_t kind,
                             const ukko_trace_ctx_t *parent)
{
    /* acquire: pairs with ukko__trace_configure's release, so the sampler's
     * settings written before it are seen (a plain load on x86 and ARM64's
     * LDAR costs next to nothing). */
    if (!atomic_load_explicit(&g_on, memory_order_acquire))
        return NULL;
    ukko_trace_ctx_t inherited;
    if (!parent && ukko_trace_current_context(&inherited) == 0)
        parent = &inherited;
    ukko_trace_ctx_t ctx;
    if (parent)
        memcpy(ctx.trace_id, parent->trace_id, 16);
    else
        random_id(ctx.trace_id, 16);
    random_id(ctx.span_id, 8);
    bool rec = sample(parent, ctx.trace_id);
    ctx.flags = rec ? UKKO_TRACE_SAMPLED : 0;
    if (rec && atomic_load_explicit(&g_backlog, memory_order_relaxed)) {
        rec = false; /* the queue is full: it would be dropped at its end anyway */
        atomic_fetch_add_explicit(&g_backlog_dropped, 1, memory_order_relaxed);
        ukko_metrics_spans_add(UKKO_SPANS_DROPPED_QUEUE, 1);
    }
    ukko_span_t *sp = malloc(rec ? sizeof(*sp) : offsetof(ukko_span_t, attrs));
    if (!sp)
        return NULL; /* a span is never worth an abort */
    memset(sp, 0, offsetof(ukko_span_t, attrs));
    sp->ctx = ctx;
    if (parent) {
        memcpy(sp->parent_id, parent->span_id, 8);
        sp->has_parent = true;
    }
    sp->recording = rec;
    sp->kind = (uint8_t)kind;
    sp->name = sp->status_msg = UKKO__SPAN_NONE;
    if (rec) {
        sp->start_ns = now_ns();
        sp->name = text_put(sp, name ? name : "");
    }
    return sp;
}

void ukko_span_set_start_ago(ukko_span_t *sp, int64_t ms_ago)
{
    if (!sp || !sp->recording || ms_ago <= 0)
        return;
    uint64_t back = (uint64_t)ms_ago * 1000000ull;
    sp->start_ns = now_ns();
    sp->start_ns = back < sp->start_ns ? sp->start_ns - back : 0;
}

void ukko_span_context(const ukko_span_t *sp, ukko_trace_ctx_t *out)
{
    *out = sp->ctx;
}

int ukko_span_traceparent(const ukko_span_t *sp, char out[UKKO_TRACEPARENT_LEN + 1])
{
    if (!sp)
        return UKKO_ENOENT;
    ukko_trace_format(&sp->ctx, out);
    return 0;
}

bool ukko_span_recording(const ukko_span_t *sp)
{
    return sp && sp->recording;
}

static ukko__attr_t *attr_add(ukko_span_t *sp, const char *key, int8_t event)
{
    if (!sp || !sp->recording || !key)
        return NULL;
    if (sp->nattrs == UKKO__SPAN_MAX_ATTRS) {
        sp->dropped_attrs++;
        return NULL;
    }
    uint16_t k = text_put(sp, key);
    if (k == UKKO__SPAN_NONE) {
        sp->dropped_attrs++;
        return NULL;
    }
    ukko__attr_t *a = &sp->attrs[sp->nattrs++];
    a->key = k;
    a->event = event;
    return a;
}

static void set_str(ukko_span_t *sp, const char *key, const char *value, int8_t event)
{
    uint16_t len = sp ? sp->text_len : 0;
    ukko__attr_t *a = attr_add(sp, key, event);
    if (!a)
        return;
    a->type = UKKO__ATTR_STR;
    a->v.s = text_put(sp, value ? value : "");
    if (a->v.s == UKKO__SPAN_NONE) { /* the value does not fit: drop the key too */
        sp->nattrs--;
        sp->text_len = len;
        sp->dropped_attrs++;
    }
}

void ukko_span_set_str(ukko_span_t *sp, const char *key, const char *value)
{
    set_str(sp, key, value, -1);
}

void ukko_span_set_int(ukko_span_t *sp, const char *key, int64_t value)
{
    ukko__attr_t *a = attr_add(sp, key, -1);
    if (a) {
        a->type = UKKO__ATTR_INT;
        a->v.i = value;
    }
}

void ukko_span_set_double(ukko_span_t *sp, const char *key, double value)
{
    ukko__attr_t *a = attr_add(sp, key, -1);
    if (a) {
        a->type = UKKO__ATTR_DOUBLE;
        a->v.d = value;
    }
}

void ukko_span_set_bool(ukko_span_t *sp, const char *key, bool value)
{
    ukko__attr_t *a = attr_add(sp, key, -1);
    if (a) {
        a->type = UKKO__ATTR_BOOL;
        a->v.b = value;
    }
}

void ukko_span_add_event(ukko_span_t *sp, const char *name, const char *key, const char *value)
{
    if (!sp || !sp->recording)
        return;
    if (sp->nevents == UKKO__SPAN_MAX_EVENTS) {
        sp->dropped_events++;
        return;
    }
    uint16_t n = text_put(sp, name ? name : "");
    if (n == UKKO__SPAN_NONE) {
        sp->dropped_events++;
        return;
    }
    int8_t idx = (int8_t)sp->nevents++;
    sp->events[idx] = (ukko__event_t){.name = n, .time_ns = now_ns()};
    if (key)
        set_str(sp, key, value, idx);
}

void ukko_span_set_status(ukko_span_t *sp, ukko_span_status_t status, const char *message)
{
    if (!sp || !sp->recording)
        return;
    sp->status = (uint8_t)status;
    sp->status_msg = status == UKKO_SPAN_ERROR && message ? text_put(sp, message)
                                                          : UKKO__SPAN_NONE;
}

static const char *error_name(int rc)
{
    switch (rc) {
    case UKKO_EINVAL: return "UKKO_EINVAL";
    case UKKO_ENOMEM: return "UKKO_ENOMEM";
    case UKKO_E2BIG: return "UKKO_E2BIG";
    case UKKO_ENOENT: return "UKKO_ENOENT";
    case UKKO_EAGAIN: return "UKKO_EAGAIN";
    case UKKO_EPROTO: return "UKKO_EPROTO";
    case UKKO_ETIMEDOUT: return "UKKO_ETIMEDOUT";
    case UKKO_ECANCELED: return "UKKO_ECANCELED";
    default: return "error";
    }
}

void ukko_span_record_error(ukko_span_t *sp, int rc, const char *why)
{
    if (!sp || !sp->recording)
        return;
    const char *msg = why && *why ? why : ukko_strerror(rc);
    ukko_span_set_status(sp, UKKO_SPAN_ERROR, msg);
    ukko_span_add_event(sp, "exception", "exception.type", error_name(rc));
    if (sp->nevents && sp->events[sp->nevents - 1].name != UKKO__SPAN_NONE)
        set_str(sp, "exception.message", msg, (int8_t)(sp->nevents - 1));
}

void ukko__span_free(ukko_span_t *sp)
{
    free(sp);
}

void ukko_span_end(ukko_span_t *sp)
{
    if (!sp)
        return;
    if (t_current == sp)
        t_current = NULL; /* a span that ends while current is a caller's bug; stay safe */
    /* Pairs with the release store in ukko__trace_configure. */
    ukko__span_sink_fn sink = atomic_load_explicit(&g_sink, memory_order_acquire);
    if (!sp->recording || !sink) {
        free(sp);
        return;
    }
    sp->end_ns = now_ns();
    sink(sp);
}

/* ------------------------------------------------------- the current span */

ukko_span_t *ukko_trace_current(void)
{
    return t_current;
}

ukko_span_t *ukko_trace_enter(ukko_span_t *sp)
{
    ukko_span_t *prev = t_current;
    t_current = sp;
    return prev;
}

void ukko_trace_leave(ukko_span_t *prev)
{
    t_current = prev;
}

int ukko_trace_current_context(ukko_trace_ctx_t *out)
{
    if (t_current) {
        *out = t_current->ctx;
        return 0;
    }
    return ukko__actor_env_trace(out);
}

bool ukko__trace_log_ids(char trace_hex[33], char span_hex[17])
{
    ukko_trace_ctx_t c;
    if (ukko_trace_current_context(&c) < 0)
        return false;
    ukko__hex(c.trace_id, 16, trace_hex);
    ukko__hex(c.span_id, 8, span_hex);
    return true;
}
