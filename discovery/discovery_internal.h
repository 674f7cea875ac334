/* discovery_internal.h: what the files of discovery/ share and nobody else
 * sees (the libcurl-on-libev driver, the Kubernetes request, the sorting of
 * points). Same thread rules as discovery.h: the loop thread. */
#ifndef UKKO_DISCOVERY_INTERNAL_H
#define UKKO_DISCOVERY_INTERNAL_H

#include "discovery.h"

#include <curl/curl.h>
#include <ev.h>

#define DISCOVERY_LOG "discovery"

/* ------------------------------------------------------------- points.c */

/* Sorts points by address bytes (IPv4 before IPv6, names last), then port,
 * then pod. */
void discovery__points_sort(ukko_contact_points_t *cps);
/* Appends one point (pod copied; host must fit). Returns 0 or UKKO_ENOMEM. */
int discovery__points_push(ukko_contact_points_t *cps, size_t *alloc, const char *pod,
                           const char *host, int port);

/* ------------------------------------------------------------ curl_ev.c */

/* libcurl's multi-socket interface driven by a libev loop: curl tells which
 * sockets to watch and when to wake (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION),
 * libev watches them; no call blocks the loop. One per discovery. */
typedef struct discovery__http discovery__http_t;

/* Called once per transfer, from the loop, after the handle left the multi. */
typedef void (*discovery__http_done_fn)(CURL *easy, CURLcode result, void *ud);

discovery__http_t *discovery__http_new(struct ev_loop *loop);
/* Removes (without callbacks) every transfer still running, then frees. */
void discovery__http_free(discovery__http_t *h);
/* Starts a configured easy handle (still owned by the caller). */
int discovery__http_add(discovery__http_t *h, CURL *easy, discovery__http_done_fn done, void *ud);
/* Takes a running handle out without calling done. */
void discovery__http_remove(discovery__http_t *h, CURL *easy);

/* -------------------------------------------------------------- fetch.c */

/* One GET with a body cap and a whole-request timeout. */
typedef struct discovery__fetch discovery__fetch_t;

typedef struct discovery__fetch_result {
    CURLcode curl;
    long http;              /* 0 when no response came */
    const ukko_buf_t *body; /* data is never NULL */
    bool too_large;
    const char *detail; /* libcurl's words on a failure */
    int64_t took_ms;
} discovery__fetch_result_t;

/* Called once from the loop (outside libcurl's callbacks); the fetch is
 * freed when it returns. */
typedef void (*discovery__fetch_fn)(const discovery__fetch_result_t *r, void *ud);

/* Starts a GET of url. headers (may be NULL) are copied. ca_path: https
 * only, verified against it; NULL: plain http only. NULL when it cannot
 * start. */
discovery__fetch_t *discovery__fetch_start(discovery__http_t *h, const char *url,
                                           const struct curl_slist *headers, const char *ca_path,
                                           int64_t timeout_ms, size_t cap,
                                           discovery__fetch_fn done, void *ud);
/* Stops and frees a fetch whose done has not run (done never runs). */
void discovery__fetch_cancel(discovery__fetch_t *f);

/* ------------------------------------------------------------ k8s_api.c */

/* One LIST of pods, including the token re-read and single retry after a
 * 401. Owned by the discovery; at most one in flight. */
typedef struct discovery__k8s discovery__k8s_t;

/* res->points == points; the callee may take the points (leaving it empty). */
typedef void (*discovery__k8s_done_fn)(void *ud, const ukko_discovery_result_t *res,
                                       ukko_contact_points_t *points);

/* Resolves the API URL and namespace once; NULL with a logged message when
 * they cannot be found (no KUBERNETES_SERVICE_HOST, unreadable namespace). */
discovery__k8s_t *discovery__k8s_new(const ukko_discovery_config_t *dc, discovery__http_t *http,
                                     int default_port);
void discovery__k8s_free(discovery__k8s_t *k);
/* Starts one LIST; done is called once, from the loop. On an error before
 * any request (token or CA unreadable, one in flight) returns < 0 with the
 * message in why, and done is not called. */
int discovery__k8s_list(discovery__k8s_t *k, discovery__k8s_done_fn done, void *ud, char *why,
                        size_t whylen);
/* Cancels the LIST in flight (done is not called). */
void discovery__k8s_cancel(discovery__k8s_t *k);
/* Re-reads the token if its file changed and checks the CA file; *headers
 * then holds the Authorization header (valid until the next call: copy it).
 * On failure returns < 0 with the message in why. */
int discovery__k8s_auth(discovery__k8s_t *k, const struct curl_slist **headers, char *why,
                        size_t whylen);
/* "https://host:port" of the API server. */
const char *discovery__k8s_base(const discovery__k8s_t *k);
const ukko_podlist_filter_t *discovery__k8s_filter(const discovery__k8s_t *k);
/* The URL a LIST goes to (for log lines and `ukko discover`). */
const char *discovery__k8s_url(const discovery__k8s_t *k);
const char *discovery__k8s_namespace(const discovery__k8s_t *k);
const char *discovery__k8s_selector(const discovery__k8s_t *k);

/* The CA file and the whole-request timeout of API requests. */
const char *discovery__k8s_ca(const discovery__k8s_t *k);
int64_t discovery__k8s_timeout_ms(const discovery__k8s_t *k);

/* ---------------------------------------------------------- k8s_watch.c */

/* A watch=true stream of the pods the LIST URL selects. */
typedef struct discovery__watch discovery__watch_t;

/* Each event, in order, from the loop (never inside libcurl's call chain). */
typedef void (*discovery__watch_event_fn)(void *ud, const ukko_watch_event_t *ev);
/* The stream ended (after its last event): status 0 when the server closed
 * it in order or the connection was cut (resume from the last
 * resourceVersion), UKKO_EPROTO when the list must be made again (410, a
 * malformed event), another < 0 on a failure (why names it). The watch may
 * be started again from here. */
typedef void (*discovery__watch_end_fn)(void *ud, int status, const char *why);

discovery__watch_t *discovery__watch_new(discovery__k8s_t *k, discovery__http_t *http,
                                         struct ev_loop *loop, size_t max_bytes);
void discovery__watch_free(discovery__watch_t *w);
/* Starts (or restarts) the stream from resourceVersion rv. Returns 0, or < 0
 * with the message in why (token or CA unreadable); no callback then. */
int discovery__watch_start(discovery__watch_t *w, const char *rv, discovery__watch_event_fn on_event,
                           discovery__watch_end_fn on_end, void *ud, char *why, size_t whylen);
/* Closes the stream: no callback after it. */
void discovery__watch_stop(discovery__watch_t *w);
bool discovery__watch_active(const discovery__watch_t *w);
uint64_t discovery__watch_events(const discovery__watch_t *w);

/* ---------------------------------------------------------- k8s_owner.c */

/* Reads spec.replicas of the StatefulSet owning pod `pod` (see
 * ukko_discovery_expected). */
typedef struct discovery__owner discovery__owner_t;
typedef void (*discovery__owner_fn)(void *ud, int replicas, const char *why);
discovery__owner_t *discovery__owner_start(discovery__k8s_t *k, discovery__http_t *http,
                                           const char *pod, discovery__owner_fn done, void *ud);
void discovery__owner_cancel(discovery__owner_t *o);

#endif /* UKKO_DISCOVERY_INTERNAL_H */
