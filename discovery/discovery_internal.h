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
/* The URL a LIST goes to (for log lines and `ukko discover`). */
const char *discovery__k8s_url(const discovery__k8s_t *k);
const char *discovery__k8s_namespace(const discovery__k8s_t *k);
const char *discovery__k8s_selector(const discovery__k8s_t *k);

#endif /* UKKO_DISCOVERY_INTERNAL_H */
