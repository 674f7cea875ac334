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
/* Begins an orderly stop (as SIGTERM does). */
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

/* Stop hooks run in the order added when the node stops (SIGTERM, SIGINT or
 * ukko_node_stop). A hook returns 0 when done, or 1 when it finished work in
 * the background and will call ukko_node_stop_continue. The node exits when
 * all are done or shutdown-timeout has passed. */
typedef int (*ukko_stop_fn)(ukko_node_t *node, void *ud);
void ukko_node_add_stop_hook(ukko_node_t *node, ukko_stop_fn fn, void *ud);
void ukko_node_stop_continue(ukko_node_t *node);
bool ukko_node_stopping(const ukko_node_t *node);

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

/* ---------------------------------------------------- actor runtime (below) */

#ifdef __cplusplus
}
#endif
#endif /* UKKO_H */
