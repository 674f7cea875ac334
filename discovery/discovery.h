/* discovery.h: where peers come from. Answers "which contact points are there
 * now" from the Kubernetes API (LIST pods by label over TLS, with the pod's
 * service-account token) or from a static list, and knows nothing of
 * clusters. Every function runs on the thread of the libev loop the
 * discovery was created on (the I/O thread), unless its comment says "any
 * thread". See docs/discovery.md for the keys, RBAC and troubleshooting. */
#ifndef UKKO_DISCOVERY_H
#define UKKO_DISCOVERY_H

#include "ukko.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ev_loop;

/* ------------------------------------------------------------------ config */

/* AUTO (the default) is kubernetes-api inside a pod (KUBERNETES_SERVICE_HOST
 * is set) or when discovery.kubernetes-api.api-server is set, else static. */
typedef enum {
    UKKO_DISCOVERY_KUBERNETES_API = 0,
    UKKO_DISCOVERY_STATIC = 1,
    UKKO_DISCOVERY_AUTO = 2
} ukko_discovery_method_t;

/* The keys discovery.* (see docs/discovery.md for each). Strings are owned by
 * the config they were registered with. */
typedef struct ukko_discovery_config {
    int method;                  /* ukko_discovery_method_t */
    int64_t refresh_interval_ms; /* between lookups of a running refresh (no watch) */
    int64_t backoff_min_ms;      /* first retry delay after a failed lookup */
    int64_t backoff_max_ms;      /* cap of the (jittered, doubling) retry delay */
    struct {
        char *api_server; /* "https://host:port" override; NULL: from the env */
        char *api_ca_path;
        char *api_token_path;
        char *pod_namespace_path;
        char *pod_namespace; /* NULL: read from pod_namespace_path */
        char *pod_label_selector; /* "%s" is replaced by service_name */
        char *service_name;
        char *pod_port_name;  /* NULL: always the default port */
        char *container_name; /* NULL: no container filter */
        int64_t resolve_timeout_ms; /* whole request, connect to last byte */
        int64_t max_response_bytes;
        bool watch;     /* a running refresh follows a watch=true stream */
        char *pod_name; /* this pod's name; NULL: $HOSTNAME (a pod's hostname) */
    } k8s;
    struct {
        ukko_strlist_t contact_points; /* "host:port", "[v6]:port" */
    } static_;
} ukko_discovery_config_t;

/* Registers the keys discovery.* into cfg, storing into dc (not owned; it
 * must outlive cfg's loads). Main thread, before ukko_config_load. */
int ukko_discovery_config_register(ukko_config_t *cfg, ukko_discovery_config_t *dc);

/* Discovery as a module of the program (node/ukko.h): its settings (the
 * cluster's bootstrap reads them) and `ukko discover`. It starts nothing
 * by itself: the cluster runs discovery when it bootstraps through it. */
extern const ukko_module_t ukko_discovery_module;

/* --------------------------------------------------------- contact points */

/* One place to reach a peer's management server. host is a bare IP address
 * (IPv6 without brackets; use ukko_discovery_authority for URLs), or for
 * static entries the host as written. pod is the pod's name ("" for static). */
typedef struct ukko_contact_point {
    char *pod;
    char host[64];
    int port;
} ukko_contact_point_t;

/* A set of contact points, sorted by address bytes, then port, then pod (so
 * two sets compare with ukko_discovery_points_equal, and the lowest address
 * is first). Owned by whoever holds it; free with ukko_discovery_points_destroy.
 * Any thread, one at a time. */
typedef struct ukko_contact_points {
    ukko_contact_point_t *v;
    size_t n;
} ukko_contact_points_t;

void ukko_discovery_points_destroy(ukko_contact_points_t *cps);
bool ukko_discovery_points_equal(const ukko_contact_points_t *a, const ukko_contact_points_t *b);
/* Deep copy into dst (which must be empty). Returns 0 or UKKO_ENOMEM. */
int ukko_discovery_points_copy(ukko_contact_points_t *dst, const ukko_contact_points_t *src);
/* "host:port", with an IPv6 host in brackets ("[fd00::1]:8558"), as a URL
 * authority. Any thread. */
void ukko_discovery_authority(const ukko_contact_point_t *cp, char *out, size_t outlen);
/* Appends {"contact_points":[{"pod":..,"host":..,"port":N},...]} to out. */
int ukko_discovery_points_json(const ukko_contact_points_t *cps, ukko_buf_t *out);

/* ---------------------------------------------------- the pod-list parser */

/* Why a lookup failed; also the "reason" label of the failure metric. */
typedef enum {
    UKKO_DISCOVERY_OK = 0,
    UKKO_DISCOVERY_FAIL_CONFIG,       /* token, CA or namespace file unreadable, bad URL */
    UKKO_DISCOVERY_FAIL_CONNECT,      /* connection refused, unreachable, DNS */
    UKKO_DISCOVERY_FAIL_TLS,          /* server not verified by the CA, handshake */
    UKKO_DISCOVERY_FAIL_TIMEOUT,      /* resolve-timeout passed */
    UKKO_DISCOVERY_FAIL_UNAUTHORIZED, /* 401: token rejected */
    UKKO_DISCOVERY_FAIL_FORBIDDEN,    /* 403: RBAC */
    UKKO_DISCOVERY_FAIL_NOT_FOUND,    /* 404: namespace */
    UKKO_DISCOVERY_FAIL_HTTP,         /* another 4xx, 3xx */
    UKKO_DISCOVERY_FAIL_SERVER,       /* 5xx */
    UKKO_DISCOVERY_FAIL_MALFORMED,    /* not a PodList: bad or truncated JSON */
    UKKO_DISCOVERY_FAIL_TOO_LARGE,    /* over max-response-bytes */
    UKKO_DISCOVERY_FAIL_CANCELED,     /* the discovery was freed or stopped */
    UKKO_DISCOVERY_FAIL_COUNT_
} ukko_discovery_failure_t;

/* "tls", "unauthorized", ... (static storage; any thread). */
const char *ukko_discovery_failure_name(ukko_discovery_failure_t f);

/* The method a config resolves to: KUBERNETES_API or STATIC (AUTO looks at
 * KUBERNETES_SERVICE_HOST and api-server). Any thread. */
int ukko_discovery_method(const ukko_discovery_config_t *dc);

/* Which pods become contact points (ARCHITECTURE.md, Discovery). */
typedef struct ukko_podlist_filter {
    const char *port_name;      /* NULL: always default_port */
    const char *container_name; /* NULL: no container filter */
    int default_port;
} ukko_podlist_filter_t;

/* What a pod list held, for log lines and `ukko discover`. */
typedef struct ukko_podlist_stats {
    size_t pods;        /* items in the list */
    size_t kept;        /* became contact points */
    size_t terminating; /* metadata.deletionTimestamp set */
    size_t not_running; /* status.phase other than Running */
    size_t no_ip;       /* no status.podIP yet */
    size_t waiting;     /* the configured container is absent or waiting */
    size_t bad;         /* an item of an unexpected shape or a pod IP that is no IP */
    size_t default_port; /* kept with the default port (no port of that name) */
    char resource_version[64]; /* the list's metadata.resourceVersion ("" none or too
                                  long): where a watch of its changes starts */
} ukko_podlist_stats_t;

/* Parses a PodList response body (len bytes, need not be NUL-terminated)
 * into the contact points the filter keeps, sorted. On error returns
 * UKKO_EPROTO (not JSON, truncated, not a PodList; the reason in why) or
 * UKKO_ENOMEM; out is then empty. out must be empty on entry and is owned
 * by the caller; stats and why may be NULL. Streams over the body without
 * building a tree (10,000 pods in ~25 ms). Untrusted input: fuzzed
 * (tests/fuzz/fuzz_podlist.c). Any thread. */
int ukko_discovery_podlist_parse(const char *json, size_t len, const ukko_podlist_filter_t *f,
                                 ukko_contact_points_t *out, ukko_podlist_stats_t *stats,
                                 char *why, size_t whylen);

/* One event of a pod watch (GET .../pods?watch=true): a line of JSON
 * {"type": "ADDED", "object": {pod}}. */
typedef enum {
    UKKO_WATCH_ADDED = 0,
    UKKO_WATCH_MODIFIED,
    UKKO_WATCH_DELETED,
    UKKO_WATCH_BOOKMARK, /* only object.metadata.resourceVersion is news */
    UKKO_WATCH_ERROR,    /* object is a Status: code 410 means "list again" */
    UKKO_WATCH_UNKNOWN
} ukko_watch_type_t;

typedef struct ukko_watch_event {
    int type;                  /* ukko_watch_type_t */
    char pod[254];             /* object.metadata.name ("" when absent) */
    char resource_version[64]; /* object.metadata.resourceVersion ("" when absent) */
    bool kept;                 /* the pod is a contact point (the filter keeps it) */
    char host[64];             /* when kept: as ukko_contact_point_t's */
    int port;
    int code; /* ERROR: the Status's code (0 when absent) */
} ukko_watch_event_t;

/* Parses one watch event line (len bytes) with the same rules as the pod
 * list: a pod the filter would leave out (terminating, not Running, no IP,
 * ...) is not kept. Returns 0, or UKKO_EPROTO with the reason in why (not
 * JSON, not an event). Untrusted input: fuzzed (tests/fuzz/fuzz_watch.c).
 * Any thread. */
int ukko_discovery_watch_event_parse(const char *json, size_t len, const ukko_podlist_filter_t *f,
                                     ukko_watch_event_t *ev, char *why, size_t whylen);

/* The owner of a pod: the name of the StatefulSet in a Pod object's
 * metadata.ownerReferences (the controller reference of kind StatefulSet)
 * into out. Returns 0, UKKO_ENOENT (no such reference) or UKKO_EPROTO (not a
 * pod). Untrusted input: fuzzed. Any thread. */
int ukko_discovery_pod_owner_parse(const char *json, size_t len, char *out, size_t outlen);
/* spec.replicas of a StatefulSet object (Kubernetes defaults it to 1 when
 * absent) into *replicas. Returns 0 or UKKO_EPROTO. Untrusted: fuzzed. */
int ukko_discovery_replicas_parse(const char *json, size_t len, int *replicas);

/* Parses "host:port" items (IPv6 as "[addr]:port") into a sorted set. On a
 * bad item returns UKKO_EINVAL with the item named in why. Any thread. */
int ukko_discovery_static_parse(const ukko_strlist_t *items, ukko_contact_points_t *out,
                                char *why, size_t whylen);

/* ------------------------------------------------------------- discovery */

typedef struct ukko_discovery ukko_discovery_t;

/* The outcome of one lookup; every pointer is valid during the callback only. */
typedef struct ukko_discovery_result {
    int status;                       /* 0 or a UKKO_E* code */
    ukko_discovery_failure_t failure; /* UKKO_DISCOVERY_OK on success */
    int http_status;                  /* 0 when no response came */
    const char *error;                /* a message for people; NULL on success */
    const ukko_contact_points_t *points; /* empty on failure */
    const ukko_podlist_stats_t *stats;   /* NULL for static */
    int64_t took_ms;                  /* whole lookup */
    int64_t parse_us;                 /* JSON parse and filter */
} ukko_discovery_result_t;

typedef void (*ukko_discovery_cb)(ukko_discovery_t *d, const ukko_discovery_result_t *res,
                                  void *ud);

/* Creates a discovery on loop. dc is not owned and must outlive it;
 * default_port is the port of contact points whose pod has no container port
 * named pod-port-name (normally management.port). Returns NULL on a bad
 * config (logged) or out of memory. Loop thread. */
ukko_discovery_t *ukko_discovery_new(const ukko_discovery_config_t *dc, struct ev_loop *loop,
                                     int default_port);

/* Frees d. A lookup in flight is canceled: its callbacks are NOT called.
 * Safe to call from inside a discovery callback (the memory is released when
 * that callback returns). Loop thread. */
void ukko_discovery_free(ukko_discovery_t *d);

/* One lookup, asynchronous: cb is called exactly once from the loop (never
 * from inside this call), with the points or the failure. No retry beyond
 * one re-read of the token after a 401. Lookups asked for while one is in
 * flight share its result (up to 16 waiters, else UKKO_EAGAIN). ud is not
 * owned. Returns 0, or UKKO_EAGAIN. Loop thread. */
int ukko_discovery_lookup(ukko_discovery_t *d, ukko_discovery_cb cb, void *ud);

/* Periodic refresh (what bootstrap uses): looks up now, then every
 * refresh-interval; a failed lookup is logged and retried after a jittered,
 * doubling delay from backoff-min to backoff-max. With kubernetes-api and
 * discovery.kubernetes-api.watch (the default), the lookup is followed by a
 * watch=true stream from the list's resourceVersion instead of more lookups:
 * every change to a pod arrives as it happens, and the stream is resumed (or
 * the list made again, when the server says the version expired) if it
 * ends. on_change is called with the first successful result and then
 * whenever the set of contact points differs from the last one reported
 * (res->stats is NULL for a change a watch event made); failures do not call
 * it (read ukko_discovery_last and ukko_discovery_fresh for the state).
 * interval_ms 0 uses refresh-interval. Returns 0, or UKKO_EINVAL when
 * already running. Loop thread. */
int ukko_discovery_start(ukko_discovery_t *d, int64_t interval_ms, ukko_discovery_cb on_change,
                         void *ud);
/* Stops the refresh and closes the watch stream: no request is made to the
 * API after it (bootstrap calls it once the node is a member); a lookup in
 * flight completes without calling on_change. */
void ukko_discovery_stop(ukko_discovery_t *d);

/* True while a running refresh holds a current set: its watch stream is
 * open, or (without a watch) its last lookup succeeded and none failed
 * since. A set that is not fresh may be missing pods that came since:
 * bootstrap never forms a cluster on it. */
bool ukko_discovery_fresh(const ukko_discovery_t *d);

/* ---------------------------------------------------- the expected size */

/* How many contact points there should be: spec.replicas of the StatefulSet
 * that owns this pod (its controller reference, found by GET of this pod,
 * discovery.kubernetes-api.pod-name or $HOSTNAME; without one, the pod name
 * without its "-N" ordinal), read with GET .../statefulsets/NAME, which
 * needs "get" on "statefulsets" in group "apps". cb is called once from the
 * loop with the count (> 0), or with 0 and a message saying why it is not
 * known (static discovery, not in a pod, 403 ...). Returns 0 or UKKO_EAGAIN
 * (one already in flight). Loop thread. */
typedef void (*ukko_discovery_expected_cb)(ukko_discovery_t *d, int replicas, const char *why,
                                           void *ud);
int ukko_discovery_expected(ukko_discovery_t *d, ukko_discovery_expected_cb cb, void *ud);

/* ------------------------------------------- asking a contact point */

/* One plain-HTTP GET of path on a contact point's management server (what
 * bootstrap uses to read /bootstrap/seed-nodes), on the same libcurl engine
 * as the lookups; connections to a point are kept alive between requests. */
typedef struct ukko_discovery_get ukko_discovery_get_t;

typedef struct ukko_discovery_reply {
    int status;      /* 0 when a response came (any HTTP status), else UKKO_E* */
    int http_status; /* 0 when none came */
    const char *body; /* NUL-terminated; valid during the callback only */
    size_t len;
    const char *error; /* why no response came (NULL when one did) */
    int64_t took_ms;
} ukko_discovery_reply_t;

/* cb is called once, from the loop, never from inside this call; the get is
 * released when cb returns. cb may start and cancel other gets, but must not
 * free d. Bodies beyond max_bytes fail the get. Returns NULL when it cannot
 * start (out of memory). Loop thread. */
typedef void (*ukko_discovery_get_cb)(ukko_discovery_t *d, const ukko_discovery_reply_t *r,
                                      void *ud);
ukko_discovery_get_t *ukko_discovery_get(ukko_discovery_t *d, const ukko_contact_point_t *cp,
                                         const char *path, int64_t timeout_ms, size_t max_bytes,
                                         ukko_discovery_get_cb cb, void *ud);
/* Cancels a get whose callback has not run: it will not run. Loop thread. */
void ukko_discovery_get_cancel(ukko_discovery_t *d, ukko_discovery_get_t *g);

/* The last successful set (empty before the first) and when it was seen
 * (ukko_now_ms, 0 never). Valid until the next loop iteration. */
const ukko_contact_points_t *ukko_discovery_last(const ukko_discovery_t *d, int64_t *at_ms);

/* A metrics collector for ukko_node_add_metrics(node, ukko_discovery_metrics, d):
 * ukko_discovery_lookups_total, ukko_discovery_lookup_failures_total{reason},
 * ukko_discovery_contact_points, ukko_discovery_last_lookup_seconds,
 * ukko_discovery_last_success_timestamp_seconds, ukko_discovery_watches_total,
 * ukko_discovery_watch_events_total. d must outlive the node's
 * collectors. Loop thread. */
void ukko_discovery_metrics(ukko_buf_t *out, void *d);

#ifdef __cplusplus
}
#endif
#endif /* UKKO_DISCOVERY_H */
