/* discovery.c: the discovery object: one-shot lookups shared by their
 * waiters, the periodic refresh with jittered backoff, the last known set and
 * the metrics. Loop thread only. Invariants: results reach callbacks only
 * from the deliver timer (never from inside a caller's call or libcurl's
 * call chain), and the object is freed only outside that dispatch. */
#include "discovery_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_WAITERS 16

typedef struct waiter {
    ukko_discovery_cb cb;
    void *ud;
} waiter_t;

/* A GET of a contact point (ukko_discovery_get), listed so that freeing the
 * discovery cancels it. */
struct ukko_discovery_get {
    ukko_discovery_t *d;
    discovery__fetch_t *fetch;
    ukko_discovery_get_cb cb;
    void *ud;
    struct ukko_discovery_get *prev, *next;
};

struct ukko_discovery {
    const ukko_discovery_config_t *dc;
    struct ev_loop *loop;
    int default_port;
    discovery__http_t *http;
    discovery__k8s_t *k8s;
    ukko_contact_points_t static_points;

    waiter_t waiters[MAX_WAITERS];
    size_t nwaiters;
    bool in_flight;     /* a lookup has started and not yet been delivered */
    bool refresh_asked; /* the refresh is one of the waiters */
    ev_timer deliver;   /* fires with the finished lookup's result */
    struct {
        bool ready; /* the lookup finished; deliver owns what is below */
        int status;
        ukko_discovery_failure_t failure;
        int http_status;
        char error[1024];
        ukko_contact_points_t points;
        ukko_podlist_stats_t stats;
        bool has_stats;
        int64_t took_ms, parse_us, started_ms;
    } pending;

    /* the refresh */
    bool running;
    int64_t interval_ms;
    ukko_discovery_cb on_change;
    void *change_ud;
    ev_timer refresh;
    unsigned failures_in_row;
    bool reported;
    ukko_contact_points_t reported_points;

    ukko_contact_points_t last;
    int64_t last_at_ms;
    uint64_t rng;
    int method; /* resolved: KUBERNETES_API or STATIC */

    /* the watch that follows a successful lookup of a running refresh */
    discovery__watch_t *watch;
    char watch_rv[64];       /* resourceVersion to resume from */
    ukko_contact_points_t watched; /* the set as the events left it */
    bool fresh;              /* the set is current (see ukko_discovery_fresh) */
    uint64_t watches;        /* streams started */
    int64_t watch_started;   /* when the current stream was started */

    /* the expected size */
    discovery__owner_t *owner;
    ukko_discovery_expected_cb expected_cb;
    void *expected_ud;
    ev_timer expected_deliver;
    ev_timer reaper; /* frees a discovery freed inside a callback chain */
    int expected_replicas;
    char expected_why[700];
    bool expected_ready;

    ukko_discovery_get_t *gets;

    /* metrics (loop thread only, as the collector is) */
    uint64_t lookups;
    uint64_t failures[UKKO_DISCOVERY_FAIL_COUNT_];
    double last_lookup_s;
    double last_success_wall;

    int dispatching; /* depth of callbacks running */
    bool dead;       /* freed while dispatching: reap when it ends */
};

static const char *const failure_names[UKKO_DISCOVERY_FAIL_COUNT_] = {
    "ok",        "config",    "connect", "tls",       "timeout",   "unauthorized", "forbidden",
    "not_found", "http",      "server",  "malformed", "too_large", "canceled",
};

const char *ukko_discovery_failure_name(ukko_discovery_failure_t f)
{
    return (unsigned)f < UKKO_DISCOVERY_FAIL_COUNT_ ? failure_names[f] : "unknown";
}

static double wall_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static uint64_t next_rand(ukko_discovery_t *d)
{
    /* xorshift64: jitter only needs to de-synchronise pods, not secrecy. */
    uint64_t x = d->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    d->rng = x;
    return x;
}

/* ---------------------------------------------------------- delivering */

static void really_free(ukko_discovery_t *d);

/* A discovery freed from inside one of its callbacks that libcurl's or a
 * watch's call chain leads to: released from the loop once that chain has
 * returned. */
static void on_reap(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    really_free(w->data);
}

static void reap_later(ukko_discovery_t *d)
{
    if (d->dead && d->dispatching == 0 && !ev_is_active(&d->reaper)) {
        ev_timer_set(&d->reaper, 0., 0.);
        ev_timer_start(d->loop, &d->reaper);
    }
}

static void really_free(ukko_discovery_t *d)
{
    ev_timer_stop(d->loop, &d->reaper);
    ev_timer_stop(d->loop, &d->deliver);
    ev_timer_stop(d->loop, &d->refresh);
    ev_timer_stop(d->loop, &d->expected_deliver);
    while (d->gets)
        ukko_discovery_get_cancel(d, d->gets);
    discovery__owner_cancel(d->owner);
    discovery__watch_free(d->watch);
    ukko_discovery_points_destroy(&d->watched);
    discovery__k8s_free(d->k8s);
    discovery__http_free(d->http);
    ukko_discovery_points_destroy(&d->static_points);
    ukko_discovery_points_destroy(&d->pending.points);
    ukko_discovery_points_destroy(&d->reported_points);
    ukko_discovery_points_destroy(&d->last);
    free(d);
}

static void summarize(const ukko_podlist_stats_t *st, char *out, size_t outlen)
{
    size_t j = 0;
    out[0] = '\0';
    struct {
        size_t n;
        const char *what;
    } parts[] = {{st->terminating, "terminating"},
                 {st->not_running, "not Running"},
                 {st->no_ip, "without an IP yet"},
                 {st->waiting, "with the container absent or waiting"},
                 {st->bad, "of an unexpected shape"}};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (!parts[i].n || j >= outlen)
            continue;
        int w = snprintf(out + j, outlen - j, "%s%zu %s", j ? ", " : "; left out: ", parts[i].n,
                         parts[i].what);
        if (w > 0)
            j += (size_t)w;
    }
}

static void log_result(ukko_discovery_t *d, const ukko_discovery_result_t *res, bool changed)
{
    if (res->status < 0) {
        ukko_logf(UKKO_LOG_WARN, DISCOVERY_LOG,
                  UKKO_FIELDS(UKKO_FS("reason", ukko_discovery_failure_name(res->failure)),
                              UKKO_FI("http_status", res->http_status),
                              UKKO_FI("took_ms", res->took_ms)),
                  "lookup failed: %s", res->error);
        return;
    }
    ukko_log_level_t lvl = changed ? UKKO_LOG_INFO : UKKO_LOG_DEBUG;
    if (d->k8s && res->stats) {
        char left[256];
        summarize(res->stats, left, sizeof(left));
        ukko_logf(lvl, DISCOVERY_LOG,
                  UKKO_FIELDS(UKKO_FI("contact_points", res->points->n),
                              UKKO_FI("pods", res->stats->pods), UKKO_FI("took_ms", res->took_ms),
                              UKKO_FI("parse_us", res->parse_us)),
                  "%zu contact point(s) from %zu pod(s) with labels \"%s\" in namespace \"%s\"%s",
                  res->points->n, res->stats->pods, discovery__k8s_selector(d->k8s),
                  discovery__k8s_namespace(d->k8s), left);
    } else {
        ukko_logf(lvl, DISCOVERY_LOG, UKKO_FIELDS(UKKO_FI("contact_points", res->points->n)),
                  "%zu contact point(s) from discovery.static.contact-points", res->points->n);
    }
}

static void on_deliver(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_discovery_t *d = w->data;
    if (!d->pending.ready)
        return;
    ukko_contact_points_t points = d->pending.points;
    d->pending.points = (ukko_contact_points_t){0};
    d->pending.ready = false;
    d->in_flight = false;
    ukko_discovery_result_t res = {
        .status = d->pending.status,
        .failure = d->pending.failure,
        .http_status = d->pending.http_status,
        .error = d->pending.status < 0 ? d->pending.error : NULL,
        .points = &points,
        .stats = d->pending.has_stats ? &d->pending.stats : NULL,
        .took_ms = d->pending.took_ms,
        .parse_us = d->pending.parse_us,
    };
    d->last_lookup_s = (double)res.took_ms / 1000.0;
    bool changed = false;
    if (res.status < 0) {
        d->failures[res.failure]++;
    } else {
        changed = d->last_at_ms == 0 || !ukko_discovery_points_equal(&d->last, &points);
        ukko_discovery_points_destroy(&d->last);
        if (ukko_discovery_points_copy(&d->last, &points) < 0)
            ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG, "out of memory keeping the last result");
        d->last_at_ms = ukko_now_ms();
        d->last_success_wall = wall_now();
    }
    log_result(d, &res, changed);

    /* Waiters may ask for the next lookup or free d from their callback:
     * work on a copy, and stop as soon as d is dead. */
    waiter_t ws[MAX_WAITERS];
    size_t n = d->nwaiters;
    memcpy(ws, d->waiters, n * sizeof(ws[0]));
    d->nwaiters = 0;
    d->refresh_asked = false;
    d->dispatching++;
    for (size_t i = 0; i < n && !d->dead; i++)
        ws[i].cb(d, &res, ws[i].ud);
    d->dispatching--;
    ukko_discovery_points_destroy(&points);
    if (d->dead && d->dispatching == 0)
        really_free(d);
}

/* Takes a finished lookup for delivery from the loop. */
static void settle(ukko_discovery_t *d, const ukko_discovery_result_t *res,
                   ukko_contact_points_t *points)
{
    d->pending.ready = true;
    d->pending.status = res->status;
    d->pending.failure = res->failure;
    d->pending.http_status = res->http_status;
    snprintf(d->pending.error, sizeof(d->pending.error), "%s", res->error ? res->error : "");
    ukko_discovery_points_destroy(&d->pending.points);
    if (points) {
        d->pending.points = *points;
        *points = (ukko_contact_points_t){0};
    }
    d->pending.has_stats = res->stats != NULL;
    if (res->stats)
        d->pending.stats = *res->stats;
    d->pending.took_ms = res->took_ms ? res->took_ms : ukko_now_ms() - d->pending.started_ms;
    d->pending.parse_us = res->parse_us;
    ev_timer_stop(d->loop, &d->deliver);
    ev_timer_set(&d->deliver, 0., 0.);
    ev_timer_start(d->loop, &d->deliver);
}

static void on_k8s_done(void *ud, const ukko_discovery_result_t *res,
                        ukko_contact_points_t *points)
{
    settle(ud, res, points);
}

/* Starts a lookup unless one is in flight (the waiters then share it). */
static void begin(ukko_discovery_t *d)
{
    if (d->in_flight)
        return;
    d->in_flight = true;
    d->lookups++;
    d->pending.started_ms = ukko_now_ms();
    if (d->method == UKKO_DISCOVERY_STATIC) {
        ukko_contact_points_t copy = {0};
        ukko_discovery_result_t res = {.points = &copy};
        if (ukko_discovery_points_copy(&copy, &d->static_points) < 0) {
            res.status = UKKO_ENOMEM;
            res.failure = UKKO_DISCOVERY_FAIL_CONFIG;
            res.error = "out of memory";
        }
        settle(d, &res, &copy);
        return;
    }
    char why[1024];
    int rc = discovery__k8s_list(d->k8s, on_k8s_done, d, why, sizeof(why));
    if (rc < 0) {
        ukko_contact_points_t none = {0};
        ukko_discovery_result_t res = {.status = rc,
                                       .failure = UKKO_DISCOVERY_FAIL_CONFIG,
                                       .error = why,
                                       .points = &none};
        settle(d, &res, &none);
    }
}

int ukko_discovery_lookup(ukko_discovery_t *d, ukko_discovery_cb cb, void *ud)
{
    if (d->nwaiters == MAX_WAITERS)
        return UKKO_EAGAIN;
    d->waiters[d->nwaiters].cb = cb;
    d->waiters[d->nwaiters].ud = ud;
    d->nwaiters++;
    begin(d);
    return 0;
}

/* ------------------------------------------------------------- refresh */

static void schedule(ukko_discovery_t *d, int64_t ms)
{
    ev_timer_stop(d->loop, &d->refresh);
    ev_timer_set(&d->refresh, (double)ms / 1000.0, 0.);
    ev_timer_start(d->loop, &d->refresh);
}

/* Doubling from backoff-min to backoff-max, then "equal jitter": half the
 * delay fixed, half random, so pods that failed together retry apart. */
static int64_t backoff_ms(ukko_discovery_t *d)
{
    int64_t lo = d->dc->backoff_min_ms, hi = d->dc->backoff_max_ms;
    if (hi < lo)
        hi = lo;
    int64_t base = lo;
    for (unsigned i = 1; i < d->failures_in_row && base < hi; i++)
        base *= 2;
    if (base > hi)
        base = hi;
    int64_t half = base / 2;
    return base - half + (half > 0 ? (int64_t)(next_rand(d) % (uint64_t)(half + 1)) : 0);
}

static void start_watch(ukko_discovery_t *d);

/* Reports the set to on_change when it differs from the last reported. */
static void report(ukko_discovery_t *d, const ukko_discovery_result_t *res)
{
    if (d->reported && ukko_discovery_points_equal(&d->reported_points, res->points))
        return;
    ukko_discovery_points_destroy(&d->reported_points);
    if (ukko_discovery_points_copy(&d->reported_points, res->points) < 0) {
        ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG, "out of memory keeping the contact points");
        return;
    }
    d->reported = true;
    d->on_change(d, res, d->change_ud);
}

static bool watching(const ukko_discovery_t *d)
{
    return d->k8s && d->dc->k8s.watch;
}

static void on_refresh_result(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)ud;
    if (!d->running)
        return;
    if (res->status < 0) {
        d->fresh = false;
        d->failures_in_row++;
        int64_t ms = backoff_ms(d);
        char t[32];
        ukko_format_duration(ms, t, sizeof(t));
        ukko_logf(UKKO_LOG_INFO, DISCOVERY_LOG,
                  UKKO_FIELDS(UKKO_FI("failures_in_row", d->failures_in_row),
                              UKKO_FI("retry_in_ms", ms)),
                  "retrying the lookup in %s (failure %u in a row)", t, d->failures_in_row);
        schedule(d, ms);
        return;
    }
    d->failures_in_row = 0;
    d->fresh = true;
    if (watching(d) && res->stats && res->stats->resource_version[0]) {
        /* From here on the watch brings every change: no more lookups
         * unless it breaks. */
        snprintf(d->watch_rv, sizeof(d->watch_rv), "%s", res->stats->resource_version);
        ukko_discovery_points_destroy(&d->watched);
        if (ukko_discovery_points_copy(&d->watched, res->points) == 0)
            start_watch(d);
        else
            schedule(d, d->interval_ms);
    } else {
        schedule(d, d->interval_ms);
    }
    report(d, res);
}

/* -------------------------------------------------------------- watch */

/* Puts (or, when point is NULL, takes out) the pod named pod in the
 * watched set; true when the set changed. */
static bool apply_point(ukko_discovery_t *d, const char *pod, const char *host, int port)
{
    ukko_contact_points_t *w = &d->watched;
    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(w->v[i].pod, pod))
            continue;
        if (host && !strcmp(w->v[i].host, host) && w->v[i].port == port)
            return false;
        free(w->v[i].pod);
        w->v[i] = w->v[--w->n];
        break;
    }
    if (host) {
        size_t alloc = w->n; /* push grows it */
        if (discovery__points_push(w, &alloc, pod, host, port) < 0) {
            ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG, "out of memory following the watch");
            return false;
        }
    }
    discovery__points_sort(w);
    return true;
}

static void on_watch_event(void *ud, const ukko_watch_event_t *ev)
{
    ukko_discovery_t *d = ud;
    if (d->dead)
        return;
    if (ev->resource_version[0])
        snprintf(d->watch_rv, sizeof(d->watch_rv), "%s", ev->resource_version);
    bool changed = false;
    switch (ev->type) {
    case UKKO_WATCH_ADDED:
    case UKKO_WATCH_MODIFIED:
        if (ev->pod[0])
            changed = apply_point(d, ev->pod, ev->kept ? ev->host : NULL, ev->port);
        break;
    case UKKO_WATCH_DELETED:
        if (ev->pod[0])
            changed = apply_point(d, ev->pod, NULL, 0);
        break;
    case UKKO_WATCH_ERROR:
        ukko_logf(UKKO_LOG_INFO, DISCOVERY_LOG, UKKO_FIELDS(UKKO_FI("code", ev->code)),
                  "the watch of the pods ended with an error event (code %d): listing again",
                  ev->code);
        discovery__watch_stop(d->watch);
        d->watch_rv[0] = '\0';
        schedule(d, 0);
        return;
    default:
        break;
    }
    if (!changed)
        return;
    ukko_discovery_points_destroy(&d->last);
    if (ukko_discovery_points_copy(&d->last, &d->watched) < 0)
        ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG, "out of memory keeping the last result");
    d->last_at_ms = ukko_now_ms();
    ukko_logf(UKKO_LOG_INFO, DISCOVERY_LOG,
              UKKO_FIELDS(UKKO_FI("contact_points", d->watched.n), UKKO_FS("pod", ev->pod)),
              "%zu contact point(s) after a change to pod %s (watch)", d->watched.n, ev->pod);
    ukko_discovery_result_t res = {.status = 0, .failure = UKKO_DISCOVERY_OK,
                                   .http_status = 200, .points = &d->watched};
    d->dispatching++;
    report(d, &res);
    d->dispatching--;
    reap_later(d);
}

static void on_watch_end(void *ud, int status, const char *why)
{
    ukko_discovery_t *d = ud;
    if (!d->running || d->dead)
        return;
    /* A stream the server ends in order is resumed at once, unless it ended
     * as soon as it began (a proxy that closes streams): that would spin,
     * so it counts as a failure, with the backoff. */
    if (status == 0 && ukko_now_ms() - d->watch_started >= 1000) {
        ukko_logf(UKKO_LOG_DEBUG, DISCOVERY_LOG, UKKO_FIELDS(UKKO_FS("rv", d->watch_rv)),
                  "%s: resuming the watch", why);
        start_watch(d);
        return;
    }
    if (status == UKKO_EPROTO) {
        d->watch_rv[0] = '\0';
        schedule(d, 0); /* list again at once */
        return;
    }
    d->fresh = false;
    d->failures_in_row++;
    int64_t ms = backoff_ms(d);
    char t[32];
    ukko_format_duration(ms, t, sizeof(t));
    ukko_logf(UKKO_LOG_WARN, DISCOVERY_LOG,
              UKKO_FIELDS(UKKO_FS("reason", "watch"), UKKO_FI("retry_in_ms", ms)),
              "%s; listing the pods again in %s", why, t);
    schedule(d, ms);
}

static void start_watch(ukko_discovery_t *d)
{
    char why[1024];
    if (!d->watch)
        d->watch = discovery__watch_new(d->k8s, d->http, d->loop,
                                        (size_t)d->dc->k8s.max_response_bytes);
    int rc = d->watch ? discovery__watch_start(d->watch, d->watch_rv, on_watch_event,
                                               on_watch_end, d, why, sizeof(why))
                      : UKKO_ENOMEM;
    if (rc == 0) {
        d->watches++;
        d->watch_started = ukko_now_ms();
        return;
    }
    if (!d->watch)
        snprintf(why, sizeof(why), "out of memory");
    d->fresh = false;
    d->failures_in_row++;
    ukko_logf(UKKO_LOG_WARN, DISCOVERY_LOG, UKKO_FIELDS(UKKO_FS("reason", "watch")),
              "cannot watch the pods: %s; listing again", why);
    schedule(d, backoff_ms(d));
}

static void on_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_discovery_t *d = w->data;
    if (!d->running || d->refresh_asked || discovery__watch_active(d->watch))
        return;
    if (ukko_discovery_lookup(d, on_refresh_result, NULL) == 0)
        d->refresh_asked = true;
    else
        schedule(d, d->interval_ms);
}

int ukko_discovery_start(ukko_discovery_t *d, int64_t interval_ms, ukko_discovery_cb on_change,
                         void *ud)
{
    if (d->running || !on_change)
        return UKKO_EINVAL;
    d->running = true;
    d->interval_ms = interval_ms > 0 ? interval_ms : d->dc->refresh_interval_ms;
    d->on_change = on_change;
    d->change_ud = ud;
    d->failures_in_row = 0;
    d->reported = false;
    d->fresh = false;
    schedule(d, 0);
    return 0;
}

void ukko_discovery_stop(ukko_discovery_t *d)
{
    d->running = false;
    d->fresh = false;
    ev_timer_stop(d->loop, &d->refresh);
    discovery__watch_stop(d->watch);
}

bool ukko_discovery_fresh(const ukko_discovery_t *d)
{
    return d->running && d->fresh;
}

const ukko_contact_points_t *ukko_discovery_last(const ukko_discovery_t *d, int64_t *at_ms)
{
    if (at_ms)
        *at_ms = d->last_at_ms;
    return &d->last;
}

/* ------------------------------------------------------ expected size */

static void on_expected_deliver(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_discovery_t *d = w->data;
    if (!d->expected_ready)
        return;
    d->expected_ready = false;
    ukko_discovery_expected_cb cb = d->expected_cb;
    d->expected_cb = NULL;
    d->dispatching++;
    cb(d, d->expected_replicas, d->expected_why, d->expected_ud);
    d->dispatching--;
    reap_later(d);
}

static void expected_done(ukko_discovery_t *d, int replicas, const char *why)
{
    d->owner = NULL;
    d->expected_replicas = replicas;
    snprintf(d->expected_why, sizeof(d->expected_why), "%s", why ? why : "");
    d->expected_ready = true;
    ev_timer_stop(d->loop, &d->expected_deliver);
    ev_timer_set(&d->expected_deliver, 0., 0.);
    ev_timer_start(d->loop, &d->expected_deliver);
}

static void on_owner(void *ud, int replicas, const char *why)
{
    expected_done(ud, replicas, why);
}

int ukko_discovery_expected(ukko_discovery_t *d, ukko_discovery_expected_cb cb, void *ud)
{
    if (d->expected_cb)
        return UKKO_EAGAIN;
    d->expected_cb = cb;
    d->expected_ud = ud;
    if (!d->k8s) {
        expected_done(d, 0, "discovery.method is static: no StatefulSet to ask");
        return 0;
    }
    const char *pod = d->dc->k8s.pod_name ? d->dc->k8s.pod_name : getenv("HOSTNAME");
    if (!pod || !*pod) {
        expected_done(d, 0,
                      "this pod's name is not known (set discovery.kubernetes-api.pod-name, or "
                      "HOSTNAME as in a pod)");
        return 0;
    }
    d->owner = discovery__owner_start(d->k8s, d->http, pod, on_owner, d);
    if (!d->owner && !d->expected_ready)
        expected_done(d, 0, "out of memory");
    return 0;
}

/* ------------------------------------------------- contact point GETs */

static void on_get_done(const discovery__fetch_result_t *r, void *ud)
{
    ukko_discovery_get_t *g = ud;
    ukko_discovery_t *d = g->d;
    if (g->prev)
        g->prev->next = g->next;
    else
        d->gets = g->next;
    if (g->next)
        g->next->prev = g->prev;
    ukko_discovery_reply_t rep = {.took_ms = r->took_ms};
    if (r->curl == CURLE_OK) {
        rep.http_status = (int)r->http;
        rep.body = r->body->data;
        rep.len = r->body->len;
    } else {
        rep.status = r->curl == CURLE_OPERATION_TIMEDOUT ? UKKO_ETIMEDOUT
                     : r->too_large                     ? UKKO_E2BIG
                                                        : UKKO_EAGAIN;
        rep.body = "";
        rep.error = r->detail;
    }
    ukko_discovery_get_cb cb = g->cb;
    void *cud = g->ud;
    free(g);
    d->dispatching++;
    if (!d->dead)
        cb(d, &rep, cud);
    d->dispatching--;
    reap_later(d);
}

ukko_discovery_get_t *ukko_discovery_get(ukko_discovery_t *d, const ukko_contact_point_t *cp,
                                         const char *path, int64_t timeout_ms, size_t max_bytes,
                                         ukko_discovery_get_cb cb, void *ud)
{
    if (!d->http && !(d->http = discovery__http_new(d->loop)))
        return NULL;
    ukko_discovery_get_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    char auth[96], url[1024];
    ukko_discovery_authority(cp, auth, sizeof(auth));
    snprintf(url, sizeof(url), "http://%s%s", auth, path);
    g->d = d;
    g->cb = cb;
    g->ud = ud;
    g->fetch = discovery__fetch_start(d->http, url, NULL, NULL, timeout_ms, max_bytes,
                                      on_get_done, g);
    if (!g->fetch) {
        free(g);
        return NULL;
    }
    g->next = d->gets;
    if (d->gets)
        d->gets->prev = g;
    d->gets = g;
    return g;
}

void ukko_discovery_get_cancel(ukko_discovery_t *d, ukko_discovery_get_t *g)
{
    if (!g)
        return;
    if (g->prev)
        g->prev->next = g->next;
    else
        d->gets = g->next;
    if (g->next)
        g->next->prev = g->prev;
    discovery__fetch_cancel(g->fetch);
    free(g);
}

/* ----------------------------------------------------------- lifecycle */

ukko_discovery_t *ukko_discovery_new(const ukko_discovery_config_t *dc, struct ev_loop *loop,
                                     int default_port)
{
    ukko_discovery_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->dc = dc;
    d->loop = loop;
    d->method = ukko_discovery_method(dc);
    d->default_port = default_port > 0 ? default_port : 8558;
    d->rng = (uint64_t)ukko_now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() ^
             (uint64_t)(uintptr_t)d;
    if (!d->rng)
        d->rng = 1;
    ev_init(&d->deliver, on_deliver);
    d->deliver.data = d;
    ev_init(&d->refresh, on_refresh);
    d->refresh.data = d;
    ev_init(&d->expected_deliver, on_expected_deliver);
    d->expected_deliver.data = d;
    ev_init(&d->reaper, on_reap);
    d->reaper.data = d;
    if (d->method == UKKO_DISCOVERY_STATIC) {
        char why[512];
        if (ukko_discovery_static_parse(&dc->static_.contact_points, &d->static_points, why,
                                        sizeof(why)) < 0) {
            ukko_log(UKKO_LOG_ERROR, DISCOVERY_LOG, "discovery.static.contact-points: %s", why);
            goto fail;
        }
        if (d->static_points.n == 0)
            ukko_log(UKKO_LOG_WARN, DISCOVERY_LOG,
                     "discovery.method is static but discovery.static.contact-points is empty: "
                     "no peers will be found");
        return d;
    }
    d->http = discovery__http_new(loop);
    if (!d->http)
        goto fail;
    d->k8s = discovery__k8s_new(dc, d->http, d->default_port);
    if (!d->k8s)
        goto fail;
    ukko_logf(UKKO_LOG_DEBUG, DISCOVERY_LOG,
              UKKO_FIELDS(UKKO_FS("url", discovery__k8s_url(d->k8s))),
              "kubernetes-api discovery: pods with labels \"%s\" in namespace \"%s\"",
              discovery__k8s_selector(d->k8s), discovery__k8s_namespace(d->k8s));
    return d;
fail:
    really_free(d);
    return NULL;
}

void ukko_discovery_free(ukko_discovery_t *d)
{
    if (!d || d->dead)
        return;
    d->running = false;
    if (d->dispatching > 0) {
        d->dead = true; /* on_deliver reaps it when its callbacks return */
        return;
    }
    /* Not inside our callbacks, nor (results are delivered from our own
     * timer) inside libcurl's: safe to cancel and free now. */
    if (d->k8s)
        discovery__k8s_cancel(d->k8s);
    really_free(d);
}

/* ------------------------------------------------------------- metrics */

void ukko_discovery_metrics(ukko_buf_t *out, void *ud)
{
    ukko_discovery_t *d = ud;
    ukko_prom_family(out, "ukko_discovery_lookups_total", "counter",
                     "Contact-point lookups started (Kubernetes API LIST pods, or static).");
    ukko_prom_sample(out, "ukko_discovery_lookups_total", NULL, NULL, 0, (double)d->lookups);
    ukko_prom_family(out, "ukko_discovery_lookup_failures_total", "counter",
                     "Failed lookups by reason (see docs/discovery.md).");
    static const char *const key[] = {"reason"};
    for (int f = 1; f < UKKO_DISCOVERY_FAIL_COUNT_; f++) {
        const char *val[] = {failure_names[f]};
        ukko_prom_sample(out, "ukko_discovery_lookup_failures_total", key, val, 1,
                         (double)d->failures[f]);
    }
    ukko_prom_family(out, "ukko_discovery_contact_points", "gauge",
                     "Contact points found by the last successful lookup.");
    ukko_prom_sample(out, "ukko_discovery_contact_points", NULL, NULL, 0, (double)d->last.n);
    ukko_prom_family(out, "ukko_discovery_last_lookup_seconds", "gauge",
                     "Duration of the last lookup, successful or not.");
    ukko_prom_sample(out, "ukko_discovery_last_lookup_seconds", NULL, NULL, 0, d->last_lookup_s);
    ukko_prom_family(out, "ukko_discovery_last_success_timestamp_seconds", "gauge",
                     "Unix time of the last successful lookup (0: none yet).");
    ukko_prom_sample(out, "ukko_discovery_last_success_timestamp_seconds", NULL, NULL, 0,
                     d->last_success_wall);
    ukko_prom_family(out, "ukko_discovery_watches_total", "counter",
                     "Watch streams of the pods started (after a lookup, or resumed).");
    ukko_prom_sample(out, "ukko_discovery_watches_total", NULL, NULL, 0, (double)d->watches);
    ukko_prom_family(out, "ukko_discovery_watch_events_total", "counter",
                     "Events received on the watch streams.");
    ukko_prom_sample(out, "ukko_discovery_watch_events_total", NULL, NULL, 0,
                     (double)discovery__watch_events(d->watch));
}
