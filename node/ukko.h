/* ukko.h: the public interface of the node core (config, logs, buffers, the
 * management HTTP server, metrics, the node's loop and lifecycle) and, below
 * its own marker, of the actor runtime. Every other folder (discovery/,
 * cluster/, streams/) and every application uses node/ only through this file.
 * Unless a comment says otherwise, a function may be called only from the
 * thread that runs the node's libev loop (the I/O thread). */
#ifndef UKKO_H
#define UKKO_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef UKKO_VERSION
#define UKKO_VERSION "0.1.0"
#endif

#if defined(__GNUC__)
#define UKKO_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define UKKO_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ errors */

/* Functions that can fail return 0 or one of these (negative errno values, so
 * a failed system call's -errno passes through unchanged). */
#define UKKO_EINVAL (-EINVAL)   /* bad argument or bad input */
#define UKKO_ENOMEM (-ENOMEM)   /* allocation failed */
#define UKKO_E2BIG (-E2BIG)     /* a cap was hit (network-sized data) */
#define UKKO_ENOENT (-ENOENT)   /* no such thing */
#define UKKO_EAGAIN (-EAGAIN)   /* try again later (full, not yet) */
#define UKKO_EPROTO (-EPROTO)   /* the peer broke the protocol */
#define UKKO_ETIMEDOUT (-ETIMEDOUT)
#define UKKO_ECANCELED (-ECANCELED)

/* A short text for a UKKO_E* code (thread-safe, static storage). */
const char *ukko_strerror(int rc);

/* ------------------------------------------------------------------ buffers */

/* A growable byte buffer with a hard cap (curl's dynbuf): appending past the
 * cap fails with UKKO_E2BIG and leaves the buffer as it was. The data is
 * always NUL-terminated. Owned by the caller; any thread, one at a time. */
typedef struct ukko_buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap;
} ukko_buf_t;

void ukko_buf_init(ukko_buf_t *b, size_t cap);
void ukko_buf_destroy(ukko_buf_t *b);
void ukko_buf_reset(ukko_buf_t *b);
int ukko_buf_append(ukko_buf_t *b, const void *p, size_t n);
int ukko_buf_puts(ukko_buf_t *b, const char *s);
int ukko_buf_printf(ukko_buf_t *b, const char *fmt, ...) UKKO_PRINTF(2, 3);
int ukko_buf_vprintf(ukko_buf_t *b, const char *fmt, va_list ap) UKKO_PRINTF(2, 0);
/* Appends s as a JSON string literal, quotes included. */
int ukko_buf_json_str(ukko_buf_t *b, const char *s);
/* Drops the first n bytes. */
void ukko_buf_consume(ukko_buf_t *b, size_t n);

/* --------------------------------------------------------------------- time */

/* Milliseconds of the monotonic clock; any thread. */
int64_t ukko_now_ms(void);
/* Formats a duration in ms the way the config writes it ("250ms", "5s", "2m"). */
void ukko_format_duration(int64_t ms, char *out, size_t outlen);
/* Parses "250ms", "5s", "1.5s", "2m", "1h" into ms. Returns 0 or UKKO_EINVAL. */
int ukko_parse_duration(const char *s, int64_t *ms);

/* --------------------------------------------------------------------- logs */

typedef enum {
    UKKO_LOG_DEBUG = 0,
    UKKO_LOG_INFO = 1,
    UKKO_LOG_WARN = 2,
    UKKO_LOG_ERROR = 3,
    UKKO_LOG_OFF = 4
} ukko_log_level_t;

typedef enum { UKKO_LOG_JSON = 0, UKKO_LOG_TEXT = 1 } ukko_log_format_t;

/* A structured field of a log line. */
typedef struct ukko_log_field {
    const char *key;
    char type; /* 's' string, 'i' integer, 'f' double, 'b' bool */
    union {
        const char *s;
        long long i;
        double f;
        bool b;
    } v;
} ukko_log_field_t;

#define UKKO_FS(k, x) ((ukko_log_field_t){.key = (k), .type = 's', .v.s = (x)})
#define UKKO_FI(k, x) ((ukko_log_field_t){.key = (k), .type = 'i', .v.i = (long long)(x)})
#define UKKO_FF(k, x) ((ukko_log_field_t){.key = (k), .type = 'f', .v.f = (double)(x)})
#define UKKO_FB(k, x) ((ukko_log_field_t){.key = (k), .type = 'b', .v.b = (x)})

/* Logs go to stderr, one line each, written with one write(2) so lines from
 * several threads never interleave. JSON: {"ts","level","component","msg",
 * fields...}; text: "ts LEVEL component: msg key=value ...". Any thread. */
void ukko_log_setup(ukko_log_level_t level, ukko_log_format_t format);
/* Where lines go (default 2, stderr); for tests. */
void ukko_log_set_fd(int fd);
bool ukko_log_enabled(ukko_log_level_t level);
void ukko_log_write(ukko_log_level_t level, const char *component,
                    const ukko_log_field_t *fields, size_t nfields, const char *fmt,
                    ...) UKKO_PRINTF(5, 6);
int ukko_log_level_parse(const char *s, ukko_log_level_t *out);

/* ukko_log(UKKO_LOG_INFO, "http", "listening on %s", addr); */
#define ukko_log(level, component, ...)                                     \
    do {                                                                    \
        if (ukko_log_enabled(level))                                        \
            ukko_log_write((level), (component), NULL, 0, __VA_ARGS__);     \
    } while (0)
/* ukko_logf(UKKO_LOG_INFO, "http", UKKO_FIELDS(UKKO_FI("port", p)), "listening"); */
#define UKKO_FIELDS(...) ((const ukko_log_field_t[]){__VA_ARGS__})
#define ukko_logf(level, component, fields, ...)                                  \
    do {                                                                          \
        if (ukko_log_enabled(level))                                              \
            ukko_log_write((level), (component), (fields),                        \
                           sizeof(fields) / sizeof(ukko_log_field_t), __VA_ARGS__); \
    } while (0)

/* ------------------------------------------------------------------- config */

/* The config is one JSON file whose keys each module declares in a table of
 * ukko_cfg_key_t; every key can be overridden by the environment:
 * "UKKO_" + the key path upper-cased, '.' and '-' as '_'
 * (management.port -> UKKO_MANAGEMENT_PORT). The program registers every
 * module's table, then loads once: unknown keys, wrong types and values out of
 * range are all reported, one line each, and the start stops. */

typedef enum {
    UKKO_CFG_BOOL,     /* bool */
    UKKO_CFG_INT,      /* int64_t, within [min, max] */
    UKKO_CFG_DURATION, /* int64_t milliseconds, within [min, max] ms; "5s" */
    UKKO_CFG_STRING,   /* char * (owned by the config; NULL when default is null) */
    UKKO_CFG_ENUM,     /* int: index into choices */
    UKKO_CFG_STRLIST,  /* ukko_strlist_t; env: comma-separated or a JSON array */
    UKKO_CFG_JSON      /* cJSON * (owned by the config); checked by check() */
} ukko_cfg_type_t;

typedef struct ukko_strlist {
    char **v;
    size_t n;
} ukko_strlist_t;

typedef struct ukko_cfg_key {
    const char *path;           /* "management.port" */
    ukko_cfg_type_t type;
    size_t offset;              /* of the field in the section's struct */
    const char *def;            /* default, as JSON text ("8558", "\"5s\"", "null") */
    int64_t min, max;           /* INT and DURATION (ms) range; STRLIST max items */
    const char *const *choices; /* ENUM: NULL-terminated */
    /* JSON (and optionally others): checks a value; on error writes why
     * ("allowed: ...") into why and returns < 0. */
    int (*check)(const cJSON *v, char *why, size_t whylen);
    const char *doc;            /* one line for the README table */
} ukko_cfg_key_t;

typedef struct ukko_config ukko_config_t;

/* Owns nothing it is given; owns every string, list and JSON value it stores
 * into the registered structs, released by ukko_config_free. */
ukko_config_t *ukko_config_new(void);
void ukko_config_free(ukko_config_t *cfg);
/* Registers a table of keys whose values are stored into base. */
int ukko_config_add(ukko_config_t *cfg, const ukko_cfg_key_t *keys, size_t nkeys, void *base);
/* Loads path (NULL: defaults and environment only) and envp (NULL-terminated
 * "K=V" strings, or NULL for none). Returns the number of problems found (0:
 * all stored), each available from ukko_config_error. */
int ukko_config_load(ukko_config_t *cfg, const char *path, char *const *envp);
size_t ukko_config_error_count(const ukko_config_t *cfg);
const char *ukko_config_error(const ukko_config_t *cfg, size_t i);
/* The effective config as a JSON tree (caller frees with cJSON_Delete). */
cJSON *ukko_config_to_json(const ukko_config_t *cfg);
/* The env name of a key path ("management.port" -> "UKKO_MANAGEMENT_PORT"). */
void ukko_config_env_name(const char *path, char *out, size_t outlen);
/* Iterates registered keys (for docs): returns NULL past the end. */
const ukko_cfg_key_t *ukko_config_key_at(const ukko_config_t *cfg, size_t i);
/* Documents every registered key, sorted by path: a Markdown table (key,
 * environment variable, default, allowed values, meaning) when markdown is
 * true, else a commented example config holding every default (the README
 * table and ukko.example.json are generated by this, and a test keeps them so). */
int ukko_config_describe(const ukko_config_t *cfg, bool markdown, ukko_buf_t *out);

/* ------------------------------------------------------------------ metrics */

/* /metrics is assembled from collectors, each writing its families in the
 * Prometheus text format (0.0.4) with the helpers below. Collectors run on
 * the loop thread; values they read from other threads must be atomics. */
typedef void (*ukko_metrics_fn)(ukko_buf_t *out, void *ud);

/* Writes "# HELP name help\n# TYPE name type\n"; type is "counter", "gauge". */
void ukko_prom_family(ukko_buf_t *out, const char *name, const char *type, const char *help);
/* Writes one sample: name{k1="v1",...} value. Label values are escaped. */
void ukko_prom_sample(ukko_buf_t *out, const char *name, const char *const *label_keys,
                      const char *const *label_values, size_t nlabels, double value);

/* A histogram's counts with fixed upper bounds (seconds, or the family's
 * unit). The owner's thread observes; the collector on the loop thread reads,
 * so a histogram observed off the loop needs its own lock. */
#define UKKO_PROM_MAX_BUCKETS 16
typedef struct ukko_prom_hist {
    uint64_t buckets[UKKO_PROM_MAX_BUCKETS]; /* cumulative: observations <= bounds[i] */
    uint64_t count;
    double sum;
} ukko_prom_hist_t;

/* Bounds for durations from a millisecond to a minute (hand-offs, stops). */
extern const double ukko_prom_duration_bounds[];
extern const size_t ukko_prom_duration_nbounds;

/* Counts v in h; bounds ascend, nbounds <= UKKO_PROM_MAX_BUCKETS. */
void ukko_prom_hist_observe(ukko_prom_hist_t *h, const double *bounds, size_t nbounds, double v);
/* Writes name_bucket{labels,le=...} for each bound and +Inf, name_sum and
 * name_count (after ukko_prom_family(out, name, "histogram", help)).
 * buckets are cumulative; at most 7 labels. */
void ukko_prom_histogram(ukko_buf_t *out, const char *name, const char *const *label_keys,
                         const char *const *label_values, size_t nlabels, const double *bounds,
                         size_t nbounds, const uint64_t *buckets, uint64_t count, double sum);

/* Tracing's place in /metrics: the span exporter adds here (any thread) and
 * every node's /metrics shows ukko_trace_spans_exported_total and
 * ukko_trace_spans_dropped_total{reason} (0 while tracing is off). */
typedef enum {
    UKKO_SPANS_EXPORTED = 0,    /* accepted by the collector */
    UKKO_SPANS_DROPPED_QUEUE,   /* reason="queue_full": the bounded queue was full */
    UKKO_SPANS_DROPPED_EXPORT,  /* reason="export_failed": retries ran out */
    UKKO_SPANS_NCOUNTS
} ukko_spans_count_t;
void ukko_metrics_spans_add(ukko_spans_count_t what, uint64_t n);

/* ------------------------------------------------------------------ tracing */

/* W3C Trace Context and OpenTelemetry spans (docs/tracing.md). A span is
 * started, given attributes and events, and ended by one thread at a time
 * (it may be handed to another through a mailbox, which orders the writes);
 * ended spans that were sampled go to the OTLP exporter (node/otlp.c) through
 * a bounded queue that never blocks: a full queue drops the span and counts
 * it. While tracing is off (the default: no endpoint configured) every span
 * function is one branch: ukko_span_start returns NULL and the others accept
 * NULL and do nothing, while traceparent values still pass through unchanged
 * (the actor envelope, records' headers). Any thread unless said otherwise. */

/* A span context: what a traceparent carries. */
typedef struct ukko_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; /* bit 0: sampled */
} ukko_trace_ctx_t;

#define UKKO_TRACE_SAMPLED 0x01
#define UKKO_TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

/* Parses a traceparent header value strictly (W3C Trace Context level 1):
 * lower-case hex, version 00 exactly 55 chars, a higher version at least
 * that with "-" after it, version ff, all-zero ids and any other byte
 * refused. len is the value's length (no NUL needed). Returns 0 or
 * UKKO_EINVAL (*out then unchanged). Never reads past len. */
int ukko_trace_parse(const char *s, size_t len, ukko_trace_ctx_t *out);
/* Writes "00-<trace>-<span>-<flags>" and a NUL into out (56 bytes). */
void ukko_trace_format(const ukko_trace_ctx_t *ctx, char out[UKKO_TRACEPARENT_LEN + 1]);
/* Checks a tracestate header value (at most 32 list members of key=value,
 * keys and values per the W3C grammar, 512 bytes at most). 0 or UKKO_EINVAL. */
int ukko_tracestate_check(const char *s, size_t len);
/* Is tracing on in this process (an exporter runs)? One relaxed load. */
bool ukko_trace_enabled(void);

/* Span kinds, with OTLP's numbers. */
typedef enum {
    UKKO_SPAN_INTERNAL = 1,
    UKKO_SPAN_SERVER = 2,
    UKKO_SPAN_CLIENT = 3,
    UKKO_SPAN_PRODUCER = 4,
    UKKO_SPAN_CONSUMER = 5
} ukko_span_kind_t;

typedef enum { UKKO_SPAN_UNSET = 0, UKKO_SPAN_OK = 1, UKKO_SPAN_ERROR = 2 } ukko_span_status_t;

typedef struct ukko_span ukko_span_t;

/* Starts a span named name (copied). Its parent is *parent when given (a
 * context parsed from a record's header, say), else the calling thread's
 * current span, else the trace of the message the calling actor handles,
 * else none (a new trace). The sampler decides (parent-based by default)
 * whether it is recorded; an unrecorded span still has a context to pass on
 * (flags 00). Returns a span owned by the caller until ukko_span_end, or
 * NULL while tracing is off. */
ukko_span_t *ukko_span_start(const char *name, ukko_span_kind_t kind,
                             const ukko_trace_ctx_t *parent);
/* Moves the span's start back to ms_ago milliseconds before now: for a
 * span made once its work is over (a hand-off timed by its own clock). */
void ukko_span_set_start_ago(ukko_span_t *sp, int64_t ms_ago);
/* The span's context (its own span id), for headers and envelopes. */
void ukko_span_context(const ukko_span_t *sp, ukko_trace_ctx_t *out);
/* The span's traceparent into out (56 bytes); 0, or UKKO_ENOENT for NULL. */
int ukko_span_traceparent(const ukko_span_t *sp, char out[UKKO_TRACEPARENT_LEN + 1]);
/* Is it recorded (sampled and tracing on)? Setters below do nothing when not. */
bool ukko_span_recording(const ukko_span_t *sp);
/* Attributes (key and string value copied; a span holds 24 attributes and
 * 1 KiB of text, past which attributes are dropped and counted as OTLP's
 * droppedAttributesCount). A key set again is added again, as OTLP allows. */
void ukko_span_set_str(ukko_span_t *sp, const char *key, const char *value);
void ukko_span_set_int(ukko_span_t *sp, const char *key, int64_t value);
void ukko_span_set_double(ukko_span_t *sp, const char *key, double value);
void ukko_span_set_bool(ukko_span_t *sp, const char *key, bool value);
/* An event now, named name, with one optional string attribute (key may be
 * NULL); a span holds 8 events. */
void ukko_span_add_event(ukko_span_t *sp, const char *name, const char *key, const char *value);
/* Status (message copied, only kept for UKKO_SPAN_ERROR, as OTLP says). */
void ukko_span_set_status(ukko_span_t *sp, ukko_span_status_t status, const char *message);
/* An error: status ERROR with why, and an "exception" event whose
 * exception.type is the UKKO_E* name of rc and exception.message why. */
void ukko_span_record_error(ukko_span_t *sp, int rc, const char *why);
/* Ends the span (now) and releases it; a recorded one is queued for export.
 * NULL is fine. The span must not be current on any thread any more. */
void ukko_span_end(ukko_span_t *sp);

/* The calling thread's current span (borrowed), or NULL: inside a traced
 * handler, the span of the record or message it serves; handlers add their
 * attributes and events to it. */
ukko_span_t *ukko_trace_current(void);
/* Makes sp the calling thread's current span; returns the one it replaces,
 * to give back to ukko_trace_leave when sp's scope ends (nesting). */
ukko_span_t *ukko_trace_enter(ukko_span_t *sp);
void ukko_trace_leave(ukko_span_t *prev);
/* The context a child made now on this thread would have as parent: the
 * current span's, else the trace of the message the calling actor handles.
 * Returns 0 or UKKO_ENOENT (none: a new trace would start). Works while
 * tracing is off too (from the envelope), for plain propagation. */
int ukko_trace_current_context(ukko_trace_ctx_t *out);

/* The "tracing" module (node/otlp.c): the OTLP/HTTP exporter and its
 * tracing.* keys (docs/tracing.md). Settings strings are owned by the config. */
typedef struct ukko_tracing_config {
    char *endpoint;            /* OTLP/HTTP base URL; NULL: OTEL_EXPORTER_OTLP_* */
    char *service_name;        /* NULL: OTEL_SERVICE_NAME, else "ukko" */
    char *resource_attributes; /* "k=v,k=v" over OTEL_RESOURCE_ATTRIBUTES */
    char *sampler;             /* NULL: OTEL_TRACES_SAMPLER */
    char *sampler_arg;         /* NULL: OTEL_TRACES_SAMPLER_ARG */
    int64_t max_queue;
    int64_t max_batch;
    int64_t schedule_delay_ms;
    int64_t export_timeout_ms;
    char *namespace_path;      /* the pod's namespace when POD_NAMESPACE is unset */
    char *protocol;            /* "http/protobuf", "http/json"; NULL: OTEL_*_PROTOCOL */
} ukko_tracing_config_t;

/* Registers the tracing.* keys, storing into tc (main thread, at start). */
int ukko_tracing_config_register(ukko_config_t *cfg, ukko_tracing_config_t *tc);

/* ----------------------------------------------------------------- the node */

typedef struct ukko_node ukko_node_t;
typedef struct ukko_http_server ukko_http_server_t;
typedef struct ukko_http_request ukko_http_request_t;
typedef struct ukko_http_response ukko_http_response_t;

/* The node core's own settings (keys log.*, management.*, node.*). */
typedef struct ukko_node_config {
    int log_level;  /* ukko_log_level_t */
    int log_format; /* ukko_log_format_t */
    char *mgmt_host;
    int64_t mgmt_port;
    int64_t mgmt_idle_timeout_ms;
    int64_t mgmt_request_timeout_ms;
    int64_t mgmt_max_connections;
    int64_t mgmt_max_request_line;
    int64_t mgmt_max_header_bytes;
    int64_t mgmt_max_body_bytes;
    int64_t shutdown_timeout_ms;
    char *mgmt_token_path; /* NULL: no operations over HTTP */
} ukko_node_config_t;

/* Registers the node core's keys, storing into nc. */
int ukko_node_config_register(ukko_config_t *cfg, ukko_node_config_t *nc);

/* The loop the node runs on (struct ev_loop *), for modules that add watchers. */
struct ev_loop *ukko_node_loop(ukko_node_t *node);

/* Creates the node on the given libev loop (NULL: the default loop). It does
 * not take ownership of nc, which must outlive the node. */
ukko_node_t *ukko_node_new(const ukko_node_config_t *nc, struct ev_loop *loop);
/* Binds the management server and starts the signal watchers. */
int ukko_node_start(ukko_node_t *node);
/* Runs the loop until the node has stopped. Returns the exit code. */
int ukko_node_run(ukko_node_t *node);
/* Begins an orderly stop (as SIGTERM does): see "the orderly stop" below. */
void ukko_node_stop(ukko_node_t *node, const char *why);
void ukko_node_free(ukko_node_t *node);
ukko_http_server_t *ukko_node_http(ukko_node_t *node);
/* Adds a metrics collector (ud is not owned). */
void ukko_node_add_metrics(ukko_node_t *node, ukko_metrics_fn fn, void *ud);

/* Health checks, as Pekko Management's: /ready passes while every readiness
 * check passes, /startup while every startup check does. A check returns true
 * when healthy; otherwise it writes a reason for the 500 body. */
typedef enum { UKKO_CHECK_READINESS, UKKO_CHECK_STARTUP } ukko_check_kind_t;
typedef bool (*ukko_check_fn)(void *ud, char *why, size_t whylen);
void ukko_node_add_check(ukko_node_t *node, ukko_check_kind_t kind, const char *name,
                         ukko_check_fn fn, void *ud);
/* Replaces the built-in "cluster-membership" readiness check, which fails
 * until a cluster module installs its own. */
void ukko_node_set_membership_check(ukko_node_t *node, ukko_check_fn fn, void *ud);

/* Guards operations (PUT /cluster/members/...): true when the request
 * carries "Authorization: Bearer <token>" matching the file at
 * management.token-path (re-read when it changes: a mounted Secret rotates).
 * Otherwise fills res with 401 and the reason, and returns false. The token is
 * never logged or echoed. Loop thread. */
bool ukko_node_authorize(ukko_node_t *node, const ukko_http_request_t *req,
                         ukko_http_response_t *res);

/* While stopping: the time left before cluster.shutdown-timeout ends the stop
 * (a task that waits on others takes a share of it); else the whole
 * timeout. */
int64_t ukko_node_stop_remaining_ms(const ukko_node_t *node);
bool ukko_node_stopping(const ukko_node_t *node);

/* ---- the orderly stop, in named phases (Pekko's coordinated shutdown)
 *
 * A stop (SIGTERM, SIGINT, ukko_node_stop, an operator's leave, a downed
 * node) runs the phases below in this order, and any module adds tasks to
 * any phase (ukko_node_add_stop_task). /ready answers 500 from the stop's
 * first moment, before any phase. The tasks of a phase are started in the
 * order they were added and may finish in any order; the next phase starts
 * once every one has called ukko_stop_task_done, or when the phase's
 * timeout has passed: then the stop logs which tasks did not finish and
 * goes on. The whole stop is bounded by cluster.shutdown-timeout, past which
 * the node exits 1 at once. Each phase is logged at debug, the whole stop at
 * info with its duration. */
typedef enum {
    UKKO_PHASE_BEFORE_SERVICE_UNBIND = 0,
    UKKO_PHASE_SERVICE_UNBIND,          /* stop taking new work from outside */
    UKKO_PHASE_SERVICE_REQUESTS_DONE,   /* work taken from outside finishes */
    UKKO_PHASE_CLUSTER_SHARDING_SHUTDOWN_REGION, /* shards handed off: drain, commit, stop */
    UKKO_PHASE_CLUSTER_LEAVE,           /* Leaving, until the leader makes it Exiting */
    UKKO_PHASE_CLUSTER_EXITING,         /* Exiting told to every member; farewell */
    UKKO_PHASE_CLUSTER_EXITING_DONE,    /* the cluster's sockets and timers stopped */
    UKKO_PHASE_BEFORE_ACTOR_SYSTEM_TERMINATE,
    UKKO_PHASE_ACTOR_SYSTEM_TERMINATE,  /* actors drain what is queued and stop */
    UKKO_PHASE_COUNT
} ukko_phase_t;

/* "before-service-unbind", "service-unbind", ... (Pekko's names; static). */
const char *ukko_phase_name(ukko_phase_t phase);

/* Why the node stops; it decides the phases run and the exit code. */
typedef enum {
    /* SIGTERM, SIGINT, ukko_node_stop, a leave: every phase; exit 0. */
    UKKO_STOP_ORDERLY = 0,
    /* This node was downed (split-brain resolver, `ukko down`): the leave
     * phases (cluster-leave, cluster-exiting) are skipped, so shards stop at
     * once instead of being handed off; exit 1, so that Kubernetes restarts
     * the pod and it rejoins as a new incarnation (Pekko exits so too). */
    UKKO_STOP_DOWNED = 1,
    /* A module cannot go on (a fatal error at run time): every phase; exit 1. */
    UKKO_STOP_FAILURE = 2
} ukko_stop_reason_t;

/* "orderly", "downed", "failure" (static). */
const char *ukko_stop_reason_name(ukko_stop_reason_t reason);

/* A task of the stop. fn runs on the loop thread when its phase starts and
 * must call ukko_stop_task_done(task) once its work is over: from inside fn
 * when the work is synchronous, or later from a callback of its own (the
 * task pointer stays valid until the node is freed). Calling done after the
 * phase timed out, or twice, does nothing. */
typedef struct ukko_stop_task ukko_stop_task_t;
typedef void (*ukko_stop_task_fn)(ukko_stop_task_t *task, void *ud);

/* Adds a task to a phase; name (copied, up to 47 bytes) is what the logs
 * call it. ud is not owned. Returns 0, UKKO_EINVAL (no such phase, or one
 * the stop under way has already reached), or UKKO_E2BIG when the node
 * already holds 64 tasks (logged). */
int ukko_node_add_stop_task(ukko_node_t *node, ukko_phase_t phase, const char *name,
                            ukko_stop_task_fn fn, void *ud);
void ukko_stop_task_done(ukko_stop_task_t *task);
ukko_node_t *ukko_stop_task_node(const ukko_stop_task_t *task);
/* Time left before the task's phase times out (or the whole stop does,
 * whichever comes first); a task that waits on something takes a share. */
int64_t ukko_stop_task_remaining_ms(const ukko_stop_task_t *task);
/* A phase's timeout (defaults: 5 s; cluster-sharding-shutdown-region,
 * cluster-exiting and actor-system-terminate 10 s, as Pekko's;
 * cluster-leave 20 s, since the leader moves a Leaving node on only once
 * every member has seen it). Set before the stop begins. */
void ukko_node_set_phase_timeout(ukko_node_t *node, ukko_phase_t phase, int64_t ms);

/* Begins a stop for reason; why is logged. A second call while stopping
 * changes nothing, except that a downed node stops as downed even if it was
 * already leaving: the leave phases still to come (the current one
 * included) are skipped. ukko_node_stop(node, why) is the orderly stop. */
void ukko_node_stop_for(ukko_node_t *node, ukko_stop_reason_t reason, const char *why);
/* The reason of the stop under way (UKKO_STOP_ORDERLY when not stopping). */
ukko_stop_reason_t ukko_node_stop_reason(const ukko_node_t *node);

/* ---------------------------------------------------- management HTTP server */

typedef struct ukko_http_header {
    const char *name;
    const char *value;
} ukko_http_header_t;

/* A request as a handler sees it: every pointer is valid only during the call. */
typedef struct ukko_http_request {
    const char *method;  /* "GET" */
    const char *path;    /* "/cluster/members/x", percent-decoded */
    const char *query;   /* after '?', raw, or "" */
    const ukko_http_header_t *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
    const char *peer; /* "127.0.0.1:51234" */
} ukko_http_request_t;

typedef struct ukko_http_response {
    int status;
    const char *content_type; /* static string; default "text/plain; charset=utf-8" */
    ukko_buf_t body;
    ukko_buf_t headers; /* extra "Name: value\r\n" lines */
} ukko_http_response_t;

typedef void (*ukko_http_handler_fn)(const ukko_http_request_t *req, ukko_http_response_t *res,
                                     void *ud);

/* Routes a method and a path to a handler. A path ending in "/" and "*" matches
 * that prefix and anything below it. A known path with another method gets
 * 405 and an Allow header; an unknown one 404. */
int ukko_http_route(ukko_http_server_t *srv, const char *method, const char *path,
                    ukko_http_handler_fn fn, void *ud);
/* The header's value (case-insensitive name) or NULL. */
const char *ukko_http_header(const ukko_http_request_t *req, const char *name);
/* Sets status and a text body. */
void ukko_http_reply(ukko_http_response_t *res, int status, const char *fmt, ...)
    UKKO_PRINTF(3, 4);
/* Sets status and a JSON body from a tree (not owned). */
void ukko_http_reply_json(ukko_http_response_t *res, int status, const cJSON *json);

/* ------------------------------------------------- modules and applications */

/* The `ukko` program is a flat list of modules (node/program.c), one per
 * library above the core (discovery, cluster, streams), each a descriptor
 * with the same entry points, as h2o's handlers and Redis' commands are
 * tables the program walks at run time. The host (node/host.c) walks the
 * list: it sizes and registers every module's settings into one config,
 * creates the node and its actor system, lets the application register
 * what it offers, starts the modules in list order, adds their routes and
 * metrics, and runs the node until its stop (whose phases the modules hang
 * their tasks on) is over. Main thread, which runs the node's loop. */

typedef struct ukko_host ukko_host_t;
typedef struct ukko_actor_system ukko_actor_system_t;

/* A command of the program beside run (`ukko discover`, `ukko members`).
 * The program has taken --config/-c FILE, --log-format, --log-level,
 * --app and --help/--version wherever they were; argv holds the rest in
 * order, for the command to check. A command with raw_args gets every
 * argument untouched instead, argv[0] being its own name (`ukko dev-kafka
 * --help` is its own help). */
typedef struct ukko_cmd {
    const char *name;        /* "discover" */
    const char *config_path; /* --config FILE, or NULL */
    const char *log_format;  /* --log-format, or NULL */
    const char *log_level;   /* --log-level, or NULL */
    int argc;
    char **argv;
    ukko_host_t *host; /* every module's settings, once ukko_cmd_load_config loaded them */
} ukko_cmd_t;

typedef struct ukko_subcommand {
    const char *name;  /* the word after `ukko` */
    const char *usage; /* its lines under "Usage:" in ukko --help, each "  ukko ...\n" */
    int (*run)(const ukko_cmd_t *cmd); /* returns the exit code (0, 1 failure, 2 bad usage) */
    bool raw_args;
} ukko_subcommand_t;

/* One library's entry points. Every function pointer may be NULL. */
typedef struct ukko_module {
    const char *name;     /* "cluster": how others find its settings and state */
    size_t settings_size; /* bytes of settings the host allocates, zeroed */
    /* Registers the module's keys, storing into settings (before the load). */
    int (*register_config)(ukko_config_t *cfg, void *settings);
    /* Starts the module on the loop once the node serves: creates what it
     * runs, adds its checks and stop tasks (ukko_node_add_stop_task) and
     * leaves its handle in *state (NULL: the module does not run, e.g. not
     * configured). Returns 0, UKKO_EINVAL when the settings ask for what
     * cannot be (logged; the program exits 2), or another negative code
     * (logged; exits 1). */
    int (*start)(ukko_host_t *host, void *settings, void **state);
    /* Management routes and /metrics families of a running module (called
     * after start, only when it left a state). */
    int (*routes)(ukko_http_server_t *srv, void *state);
    ukko_metrics_fn metrics;
    /* Releases the state, after the loop ended (modules freed in reverse order). */
    void (*free)(void *state);
    /* Commands of the program that this module serves; NULL, or ended by an
     * entry whose name is NULL. */
    const ukko_subcommand_t *commands;
} ukko_module_t;

/* An application: what an `ukko` binary runs beside the modules. init runs
 * once on the loop thread after the node serves and before the modules
 * start, with the host as its context: the application registers what it
 * offers there (entity types, through the registry of app hooks below: the
 * sharding of cluster/ reads its kind when it starts). init returns 0, or a
 * negative UKKO_E* (logged by the application; UKKO_EINVAL exits 2, others
 * 1). The struct and its strings must outlive the run (static storage). */
typedef struct ukko_app {
    const char *name;  /* `ukko run --app NAME` picks a built-in one by it */
    const char *about; /* one line for ukko --help, or NULL */
    int (*init)(ukko_host_t *host, void *ud);
    void *ud;
} ukko_app_t;

/* The node core's own module: tracing (the OTLP exporter), listed first by
 * node/program.c so that every other module's spans have somewhere to go. */
extern const ukko_module_t ukko_tracing_module;

/* The documented entry point of a program built on ukko: parses the
 * command line (`ukko --help`), then runs the command. app is the
 * application to run (NULL: the built-in one `--app NAME` names, or none).
 * Returns the exit code: 0 orderly, 1 runtime failure, 2 bad usage or
 * config. Defined by the ukko_program library (node/program.c), which lists
 * the modules and links every library. Main thread. */
int ukko_main(int argc, char **argv, const ukko_app_t *app);
/* Adds a built-in application (not copied), for `--app NAME`; before
 * ukko_main. Returns 0, UKKO_EINVAL (no name, or a name taken) or UKKO_E2BIG
 * (16 already). */
int ukko_app_register(const ukko_app_t *app);

/* ---- the host: what modules, applications and commands are given. */

/* A host for these modules (the array and the modules are not copied and
 * must outlive it): allocates every module's settings and registers every
 * key (the core's first: node, then "dispatchers") into its config. *out
 * is the caller's, for ukko_host_free. Returns 0, UKKO_ENOMEM, or a
 * registration error. */
int ukko_host_new(const ukko_module_t *const *modules, size_t n, ukko_host_t **out);
/* Releases the started modules (in reverse order), the actor system, the
 * node, the settings and the config. */
void ukko_host_free(ukko_host_t *host);
ukko_config_t *ukko_host_config(ukko_host_t *host);
/* The settings of a module by name ("node" and "actors" are the core's:
 * ukko_node_config_t and ukko_actor_config_t), or NULL when no such module. */
void *ukko_host_settings(ukko_host_t *host, const char *module);
/* A started module's state (its handle), or NULL when it does not run. */
void *ukko_host_module(ukko_host_t *host, const char *module);
/* The node and its actor system; NULL before ukko_host_run created them. */
ukko_node_t *ukko_host_node(ukko_host_t *host);
ukko_actor_system_t *ukko_host_actors(ukko_host_t *host);
/* The application being run, or NULL. */
const ukko_app_t *ukko_host_app(ukko_host_t *host);
/* Runs a node of this host with its loaded settings (ukko_config_load on
 * ukko_host_config first): creates the node on the default loop and the
 * actor system, serves, calls app->init (app may be NULL), starts every
 * module, and runs until the stop is over. Logs why it fails. Returns the
 * exit code (0, 1, 2). Once per host. */
int ukko_host_run(ukko_host_t *host, const ukko_app_t *app);

/* ---- the registry of app hooks: an application hands a module what it
 * offers, by kind ("cluster.entity-type" is the first: the sharding of
 * cluster/ will offer a typed registration function over it); the module
 * reads those of its kind when it starts. desc is not copied and must
 * outlive the host (static storage, or the application's own). */
int ukko_host_add_hook(ukko_host_t *host, const char *kind, const void *desc);
/* The descriptions of kind in the order added: the i-th, or NULL past the end. */
const void *ukko_host_hook(ukko_host_t *host, const char *kind, size_t i);

/* ---- helpers for commands */

/* Loads cmd->config_path (NULL: defaults) and the environment into every
 * module's settings. Returns 0, or the exit code after printing each problem
 * on stderr: 2 (bad config) or 1 (out of memory). */
int ukko_cmd_load_config(const ukko_cmd_t *cmd);
/* Applies --log-format and --log-level to nc (they beat the file and the
 * environment). Returns 0, or 2 after printing what is allowed. */
int ukko_cmd_log_flags(const ukko_cmd_t *cmd, ukko_node_config_t *nc);
/* Prints `ukko: unknown argument "ARG" (see ukko --help)`; returns 2. */
int ukko_cmd_unknown_arg(const char *arg);
/* The value of the flag at argv[*i] (advancing *i), or NULL after printing
 * that it needs one. */
const char *ukko_cmd_flag_value(const ukko_cmd_t *cmd, int *i);

/* ---------------------------------------------------- actor runtime (below) */

/* Actors (docs/actors.md is the user's guide). An actor is a behaviour (a
 * handler and the init/free of its state) plus a mailbox; its handler runs on
 * one thread at a time, taken from its dispatcher, one message after another.
 * Threads meet only at mailboxes: every function here may be called from any
 * thread unless its comment names one, and "ctx" functions only from inside
 * the actor's own init or handler, with the ctx it was given.
 *
 * References: ukko_actor_t * is a counted reference. Whoever gets one from a
 * function whose comment says "new reference" owns it and gives it back with
 * ukko_actor_release; one that is "borrowed" is valid during the call only
 * (ukko_actor_retain to keep it). A reference outlives the actor: sending to
 * a stopped actor fails with UKKO_ENOENT (a dead letter), never crashes. */

typedef struct ukko_actor ukko_actor_t;
typedef struct ukko_actor_ctx ukko_actor_ctx_t;

/* Message type ids: the application's are below UKKO_MSG_SYSTEM; those above
 * are the runtime's own, delivered to handlers as described. */
#define UKKO_MSG_SYSTEM 0xffff0000u
/* A watched actor stopped: msg->sender is it (borrowed). */
#define UKKO_MSG_TERMINATED 0xffff0001u
/* An ask got no reply in time: msg->id is the ask's id. */
#define UKKO_MSG_ASK_TIMEOUT 0xffff0002u

/* A message as the handler sees it; valid during the handler call only. */
typedef struct ukko_msg {
    uint32_t type;        /* the sender's type id, or UKKO_MSG_* */
    uint32_t len;         /* payload bytes */
    void *data;           /* payload (NULL when len is 0); the handler may modify it */
    ukko_actor_t *sender; /* borrowed; NULL unless the sender gave one */
    uint64_t id;          /* reply or ask timeout: the ask's id; timer message: its key */
} ukko_msg_t;

/* What an actor does. init (may be NULL) fills the zeroed state of
 * state_size bytes from arg and returns 0 or a negative UKKO_E* code; handle
 * returns 0, or < 0 for a failure that the actor's supervision deals with
 * (restart or stop); free (may be NULL) releases what init acquired. init
 * runs in the spawning thread at spawn and on the actor's dispatcher at a
 * restart; handle and free run on the actor's dispatcher. */
typedef struct ukko_behaviour {
    size_t state_size;
    int (*init)(ukko_actor_ctx_t *ctx, void *state, void *arg);
    int (*handle)(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg);
    void (*free)(void *state, void *arg);
} ukko_behaviour_t;

typedef enum {
    UKKO_SUPERVISE_RESTART = 0, /* free + init the state after a backoff, keep the mailbox */
    UKKO_SUPERVISE_STOP = 1     /* stop on the first failure */
} ukko_supervise_t;

typedef struct ukko_spawn_opts {
    const char *name;       /* for logs and metrics, copied (NULL: "actor-<id>") */
    const char *dispatcher; /* NULL or "default"; a configured name; "loop": the libev loop thread */
    void *arg;              /* given to init at spawn and at every restart */
    void (*arg_free)(void *arg); /* non-NULL: arg is handed over and freed with the actor;
                                    NULL: arg is borrowed and must outlive the actor */
    uint32_t mailbox_capacity;   /* 0: unbounded; else sends beyond it fail with UKKO_EAGAIN */
    ukko_supervise_t on_failure;
    int64_t backoff_min_ms;      /* first restart delay (0: 100 ms), doubling per */
    int64_t backoff_max_ms;      /* consecutive failure up to this (0: 10 s) */
    int max_restarts;            /* consecutive failures before it stops (0: no limit) */
} ukko_spawn_opts_t;

/* Spawns an actor. b is copied; opts may be NULL. Runs init in this thread
 * before the actor can handle anything. On success *out is a new reference.
 * Returns 0, UKKO_ENOENT (no such dispatcher), UKKO_ECANCELED (the system is
 * stopping), UKKO_EINVAL, UKKO_ENOMEM, or init's error (nothing is left). */
int ukko_actor_spawn(ukko_actor_system_t *sys, const ukko_behaviour_t *b,
                     const ukko_spawn_opts_t *opts, ukko_actor_t **out);

void ukko_actor_retain(ukko_actor_t *a);
void ukko_actor_release(ukko_actor_t *a);

/* A full send. data is copied into the message unless free_fn is set: then
 * it is handed over on success (the runtime calls free_fn(data) once the
 * handler is done with it, or when the message is dropped) and stays the
 * caller's on failure. from (optional) is retained by the message and shows
 * as msg->sender. traceparent (optional) is a W3C traceparent header value;
 * NULL inherits the trace of the message being handled when called from a
 * handler. */
typedef struct ukko_send {
    uint32_t type;
    const void *data;
    size_t len;
    void (*free_fn)(void *data);
    ukko_actor_t *from;
    const char *traceparent;
} ukko_send_t;

/* Sends s to the actor to (borrowed). Any thread; never blocks. Returns 0,
 * UKKO_EAGAIN (bounded mailbox full: back off and retry), UKKO_ENOENT (the
 * actor has stopped: the message is a dead letter), UKKO_ECANCELED (the
 * system is stopping and the caller is not an actor), UKKO_EINVAL (a type of
 * the runtime's, or a malformed traceparent), UKKO_E2BIG (len over 4 GiB). */
int ukko_actor_tell(ukko_actor_t *to, const ukko_send_t *s);
/* Shorthands of ukko_actor_tell: a copied payload; a handed-over one. */
int ukko_actor_send(ukko_actor_t *to, uint32_t type, const void *data, size_t len);
int ukko_actor_send_owned(ukko_actor_t *to, uint32_t type, void *data, size_t len,
                          void (*free_fn)(void *data));

/* A burst of tells from a thread outside the pools (the loop thread's I/O
 * callbacks: a batch of Kafka records): between _begin and _end the actors
 * they make runnable are not handed to their pools one by one (a lock and
 * perhaps a wake-up system call each) but together at _end, one lock and at
 * most one wake-up per dispatcher. Messages are in the mailboxes at once;
 * only their turns wait for _end, so keep the burst short and never wait
 * for an actor inside it. Nests; a no-op on a pool's own worker threads
 * (they schedule onto their local ring anyway). */
void ukko_actor_batch_begin(void);
void ukko_actor_batch_end(void);

/* Stops the actor after the message it is handling: queued messages are
 * dropped, free runs, watchers get UKKO_MSG_TERMINATED. Any thread; returns
 * at once (0, or UKKO_ENOENT if it had already stopped). */
int ukko_actor_stop(ukko_actor_t *a);
bool ukko_actor_alive(const ukko_actor_t *a);
/* The actor's name (valid while the reference is held) and its unique id. */
const char *ukko_actor_name(const ukko_actor_t *a);
uint64_t ukko_actor_id(const ukko_actor_t *a);

/* The running actor (borrowed) and its system. ctx functions. */
ukko_actor_t *ukko_actor_self(ukko_actor_ctx_t *ctx);
ukko_actor_system_t *ukko_actor_system(ukko_actor_ctx_t *ctx);
/* Stops the running actor once its handler returns. */
void ukko_actor_stop_self(ukko_actor_ctx_t *ctx);

/* Death watch: the running actor gets one UKKO_MSG_TERMINATED (sender =
 * target) when target stops, at once if it already has. ctx functions;
 * target is borrowed. */
int ukko_actor_watch(ukko_actor_ctx_t *ctx, ukko_actor_t *target);
int ukko_actor_unwatch(ukko_actor_ctx_t *ctx, ukko_actor_t *target);

/* Ask: sends s to `to` carrying a reply address; the running actor later
 * gets exactly one of: the reply (msg->id == *ask_id, the type the replier
 * chose) or, after timeout_ms, UKKO_MSG_ASK_TIMEOUT (msg->id == *ask_id). A
 * failed send returns its error and nothing arrives. ctx function. */
int ukko_actor_ask(ukko_actor_ctx_t *ctx, ukko_actor_t *to, const ukko_send_t *s,
                   int64_t timeout_ms, uint64_t *ask_id);
/* Replies to an asked message (from its handler; the payload is copied).
 * Returns 0, UKKO_ENOENT (not an ask), UKKO_ETIMEDOUT (already timed out or
 * replied). */
int ukko_actor_reply(const ukko_msg_t *request, uint32_t type, const void *data, size_t len);
/* To reply after the handler returned: takes a reply token (new reference,
 * NULL when the message is not an ask) to pass to ukko_reply_send (any
 * thread, consumes it) or ukko_reply_free. */
typedef struct ukko_reply ukko_reply_t;
ukko_reply_t *ukko_actor_reply_token(const ukko_msg_t *request);
int ukko_reply_send(ukko_reply_t *r, uint32_t type, const void *data, size_t len);
void ukko_reply_free(ukko_reply_t *r);

/* Timers of the running actor, delivered as messages of the given type with
 * msg->id == key. Starting a key that is running replaces it; after cancel
 * returns, no message of that key is handled (even one already queued).
 * Timers end with the actor and at its restarts. Periodic timers keep their
 * rate without bursts: a late tick is not made up. A delay or interval that is
 * negative or beyond 100 years is UKKO_EINVAL. ctx functions. */
int ukko_actor_timer_once(ukko_actor_ctx_t *ctx, uint64_t key, uint32_t type, int64_t delay_ms);
int ukko_actor_timer_periodic(ukko_actor_ctx_t *ctx, uint64_t key, uint32_t type,
                              int64_t interval_ms);
/* Returns 0, or UKKO_ENOENT when no timer has that key. */
int ukko_actor_timer_cancel(ukko_actor_ctx_t *ctx, uint64_t key);

/* The message's trace context as a traceparent value (55 chars + NUL in out,
 * outlen >= 56). Returns 0 or UKKO_ENOENT when it carries none. */
int ukko_msg_traceparent(const ukko_msg_t *msg, char *out, size_t outlen);

/* ---- the system: dispatchers from the config, started and stopped with the node */

/* The runtime's settings: one key "dispatchers" (see docs/actors.md):
 *   {"starvation-threshold": "100ms",
 *    "default": {"executor": "fork-join-executor", "parallelism-min": 1,
 *                "parallelism-factor": 1.0, "parallelism-max": 64, "throughput": 5},
 *    "blocking-dispatcher": {"executor": "thread-pool-executor",
 *                            "fixed-pool-size": 32, "throughput": 1}} */
typedef struct ukko_actor_config {
    cJSON *dispatchers; /* owned by the config (NULL: built-in defaults) */
} ukko_actor_config_t;

/* Registers the "dispatchers" key, storing into ac (main thread, at start). */
int ukko_actor_config_register(ukko_config_t *cfg, ukko_actor_config_t *ac);
/* Checks a "dispatchers" value; on error names the bad sub-key in why. */
int ukko_actor_config_check(const cJSON *v, char *why, size_t whylen);

/* Creates the system and starts its threads (dispatchers, the timer and
 * starvation monitor). loop (may be NULL) is the libev loop of the calling
 * thread: actors spawned on dispatcher "loop" run on it, woken by an
 * ev_async only when their queue goes from empty to non-empty; that is how
 * loop-side modules get results back from actors. ac may be NULL (defaults)
 * and is not kept. On success *out is owned by the caller. */
int ukko_actor_system_new(const ukko_actor_config_t *ac, struct ev_loop *loop,
                          ukko_actor_system_t **out);

typedef enum {
    UKKO_SHUTDOWN_DRAIN = 0, /* handle what is queued (until quiet or the timeout), then stop */
    UKKO_SHUTDOWN_DROP = 1   /* stop every actor after its current message */
} ukko_shutdown_t;

/* Orderly stop: refuses new spawns and sends from outside actors, drains or
 * drops, stops every actor (free runs, watchers hear of it) and joins the
 * threads. Blocks up to timeout_ms; call it from the thread that created
 * the system (it runs loop actors itself meanwhile), never from an actor.
 * Returns 0, or UKKO_ETIMEDOUT when handlers were still running at the
 * deadline (their threads are then left behind and the system's memory is
 * not released). Calling it again returns 0. */
int ukko_actor_system_stop(ukko_actor_system_t *sys, ukko_shutdown_t mode, int64_t timeout_ms);
/* Stops (drop, 5 s) if not stopped, then releases the system; references to
 * actors still held stay valid until released. Creating thread. */
void ukko_actor_system_free(ukko_actor_system_t *sys);

/* A ukko_metrics_fn for ukko_node_add_metrics(node, ukko_actor_system_metrics,
 * sys): ukko_actor_* families (starvations, actors, messages, restarts). */
void ukko_actor_system_metrics(ukko_buf_t *out, void *sys);


#ifdef __cplusplus
}
#endif
#endif /* UKKO_H */
