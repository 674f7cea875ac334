/* trace_internal.h: what node/trace.c shares with the OTLP exporter
 * (node/otlp.c), the actor runtime and the log: the span's layout, the
 * sampler's settings and the hand-over of ended spans. Not for other folders. */
#ifndef UKKO_TRACE_INTERNAL_H
#define UKKO_TRACE_INTERNAL_H

#include "ukko.h"

struct curl_slist;
struct ev_loop;

/* Sized so that a recorded span stays within 1 KiB (glibc's per-thread
 * cache serves up to 1032 bytes without a lock). */
#define UKKO__SPAN_MAX_ATTRS 16
#define UKKO__SPAN_MAX_EVENTS 6
#define UKKO__SPAN_TEXT 600
#define UKKO__SPAN_NONE 0xffff /* no text at this offset */

typedef enum { UKKO__ATTR_STR, UKKO__ATTR_INT, UKKO__ATTR_DOUBLE, UKKO__ATTR_BOOL } ukko__attr_type_t;

typedef struct ukko__attr {
    uint16_t key;  /* offset into text */
    uint8_t type;  /* ukko__attr_type_t */
    int8_t event;  /* -1: the span's own; else the index of its event */
    union {
        int64_t i;
        double d;
        bool b;
        uint16_t s; /* offset into text */
    } v;
} ukko__attr_t;

typedef struct ukko__event {
    uint16_t name;
    uint64_t time_ns;
} ukko__event_t;

/* A span. One that is not recorded is allocated only up to `attrs`. */
struct ukko_span {
    ukko_trace_ctx_t ctx;
    uint8_t parent_id[8];
    bool has_parent;
    bool recording;
    uint8_t kind;   /* ukko_span_kind_t */
    uint8_t status; /* ukko_span_status_t */
    uint16_t name, status_msg, text_len;
    uint8_t nattrs, nevents;
    uint32_t dropped_attrs, dropped_events;
    uint64_t start_ns, end_ns;
    ukko__attr_t attrs[UKKO__SPAN_MAX_ATTRS];
    ukko__event_t events[UKKO__SPAN_MAX_EVENTS];
    char text[UKKO__SPAN_TEXT];
};

typedef enum {
    UKKO__SAMPLER_ALWAYS_ON,
    UKKO__SAMPLER_ALWAYS_OFF,
    UKKO__SAMPLER_RATIO,
    UKKO__SAMPLER_PARENT_ALWAYS_ON,
    UKKO__SAMPLER_PARENT_ALWAYS_OFF,
    UKKO__SAMPLER_PARENT_RATIO
} ukko__sampler_t;

/* Parses an OTEL_TRACES_SAMPLER name ("parentbased_traceidratio", ...). */
int ukko__sampler_parse(const char *name, ukko__sampler_t *out);
const char *ukko__sampler_name(ukko__sampler_t s);

/* Where ended, recorded spans go (takes ownership; frees or queues). */
typedef void (*ukko__span_sink_fn)(ukko_span_t *sp);

/* Turns tracing on with this sampler (ratio in [0, 1]) and sink, or off
 * (sink NULL). Set once at start and at the end, before the threads that
 * make spans run or after they stopped (tests flip it between cases). */
void ukko__trace_configure(ukko__sampler_t sampler, double ratio, ukko__span_sink_fn sink);
/* The exporter's queue is full (true) or has room again (false): while
 * full, sampled spans are started unrecorded (their context still says
 * sampled) and counted as dropped. Any thread; relaxed. */
void ukko__trace_set_backlog(bool full);
/* Spans left unrecorded so far because the queue was full. */
uint64_t ukko__trace_backlog_dropped(void);
/* Would a root span of this trace id be sampled at this ratio? */
bool ukko__trace_ratio_sampled(const uint8_t trace_id[16], double ratio);
/* Releases a span without exporting it. */
void ukko__span_free(ukko_span_t *sp);
/* Text of a span at an offset ("" for UKKO__SPAN_NONE). */
static inline const char *ukko__span_text(const ukko_span_t *sp, uint16_t off)
{
    return off == UKKO__SPAN_NONE ? "" : sp->text + off;
}
/* The ids of the current span or handled message, as hex, for log lines:
 * true when there are some. */
bool ukko__trace_log_ids(char trace_hex[33], char span_hex[17]);
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void ukko__hex(const uint8_t *in, size_t n, char *out);

/* actor.c: the trace of the message the calling thread's actor handles. */
int ukko__actor_env_trace(ukko_trace_ctx_t *out);

/* ------------------------------------------------ otlp.c: the exporter */

#define UKKO__OTLP_MAX_RES 48

/* What the settings and the environment resolve to. */
typedef struct ukko__otlp_plan {
    char *url; /* NULL: tracing stays off */
    struct curl_slist *headers;
    bool protobuf; /* http/protobuf (the default); false: http/json */
    ukko__sampler_t sampler;
    double ratio;
    struct {
        char *key, *value;
    } res[UKKO__OTLP_MAX_RES];
    size_t nres;
} ukko__otlp_plan_t;

typedef const char *(*ukko__otlp_getenv_fn)(const char *name);
typedef void (*ukko__otlp_kv_fn)(void *ud, const char *key, const char *value);

/* Resolves tc and the OTEL_* variables (read through get) into p. Returns 0
 * (p->url NULL when tracing stays off) or UKKO_EINVAL with err set (never
 * showing a header's value). ukko__otlp_plan_destroy(p) in every case. */
int ukko__otlp_plan(const ukko_tracing_config_t *tc, ukko__otlp_getenv_fn get,
                    ukko__otlp_plan_t *p, char *err, size_t errlen);
void ukko__otlp_plan_destroy(ukko__otlp_plan_t *p);
/* Parses "k=v,k2=v2" with percent-encoded parts (OTEL_RESOURCE_ATTRIBUTES,
 * OTEL_EXPORTER_OTLP_HEADERS); 0 or UKKO_EINVAL. */
int ukko__otlp_parse_kv(const char *list, ukko__otlp_kv_fn fn, void *ud);
/* One ExportTraceServiceRequest in OTLP JSON: p's resource, scope "ukko".
 * Returns 0 or UKKO_E2BIG (the buffer's cap). */
int ukko__otlp_json(ukko_buf_t *b, const ukko__otlp_plan_t *p, ukko_span_t *const *spans,
                    size_t n);
/* The length of the valid UTF-8 sequence at p (n bytes left, p[0] >= 0x80),
 * or 0: overlong forms, surrogates and code points past U+10FFFF are not
 * valid. Both encoders write what is not as U+FFFD (otlp.c). */
size_t ukko__utf8_len(const unsigned char *p, size_t n);
/* The same request in protobuf's binary format (otlp_proto.c), appended
 * to b: it is b->data + *start up to b->len (a few bytes before it are left
 * unused, so that no span is moved). 0, UKKO_E2BIG or UKKO_ENOMEM. */
int ukko__otlp_proto(ukko_buf_t *b, const ukko__otlp_plan_t *p, ukko_span_t *const *spans,
                     size_t n, size_t *start);

typedef struct ukko__otlp ukko__otlp_t;
typedef struct ukko__otlp_counts {
    uint64_t exported, dropped, failed, requests, queued;
} ukko__otlp_counts_t;

/* Starts an exporter (its thread) with plan (taken over) and tc's sizes;
 * loop (may be NULL in tests) gets the flush's wake-up. */
int ukko__otlp_new(ukko__otlp_plan_t *plan, const ukko_tracing_config_t *tc,
                   struct ev_loop *loop, ukko__otlp_t **out);
/* Makes x the sink of ended spans and turns tracing on with its sampler. */
void ukko__otlp_install(ukko__otlp_t *x);
/* Queues a span (any thread, never blocks); false: full, dropped, counted. */
bool ukko__otlp_push(ukko__otlp_t *x, ukko_span_t *sp);
void ukko__otlp_counts(const ukko__otlp_t *x, ukko__otlp_counts_t *c);
/* Stops the thread (what is queued stays); free also turns tracing off and
 * drops (counts) what is left. */
void ukko__otlp_stop(ukko__otlp_t *x);
void ukko__otlp_free(ukko__otlp_t *x);

#endif
