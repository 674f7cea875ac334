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

static void really_free(ukko_discovery_t *d)
{
    ev_timer_stop(d->loop, &d->deliver);
    ev_timer_stop(d->loop, &d->refresh);
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
    if (d->dc->method == UKKO_DISCOVERY_STATIC) {
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

static void on_refresh_result(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)ud;
    if (!d->running)
        return;
    if (res->status < 0) {
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
    schedule(d, d->interval_ms);
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

static void on_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_discovery_t *d = w->data;
    if (!d->running || d->refresh_asked)
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
    schedule(d, 0);
    return 0;
}

void ukko_discovery_stop(ukko_discovery_t *d)
{
    d->running = false;
    ev_timer_stop(d->loop, &d->refresh);
}

const ukko_contact_points_t *ukko_discovery_last(const ukko_discovery_t *d, int64_t *at_ms)
{
    if (at_ms)
        *at_ms = d->last_at_ms;
    return &d->last;
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
    d->default_port = default_port > 0 ? default_port : 8558;
    d->rng = (uint64_t)ukko_now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() ^
             (uint64_t)(uintptr_t)d;
    if (!d->rng)
        d->rng = 1;
    ev_init(&d->deliver, on_deliver);
    d->deliver.data = d;
    ev_init(&d->refresh, on_refresh);
    d->refresh.data = d;
    if (dc->method == UKKO_DISCOVERY_STATIC) {
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
}
