/* actor_system.c: the actor system: the "dispatchers" config key and its
 * check, start (dispatchers, timer thread), orderly stop (refuse, drain or
 * drop, stop every actor, join) and the /metrics collector. new, stop and
 * free run on the creating thread (the loop thread when there is a loop);
 * the collector on the loop thread. Invariant: the system's memory goes only
 * when its owner and every actor struct have let go (refs). */
#include "actor_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ config */

#define DISPATCHERS_DEFAULT                                                              \
    "{\"starvation-threshold\": \"100ms\", \"default\": {\"executor\": "                   \
    "\"fork-join-executor\", \"parallelism-min\": 1, \"parallelism-factor\": 1.0, "         \
    "\"parallelism-max\": 64, \"throughput\": 5}}"

static const ukko_cfg_key_t actor_keys[] = {
    {"dispatchers", UKKO_CFG_JSON, offsetof(ukko_actor_config_t, dispatchers),
     DISPATCHERS_DEFAULT, 0, 0, NULL, ukko_actor_config_check,
     "Actor dispatchers as in Pekko: \"default\" (fork-join-executor, one thread per core) "
     "and named ones (e.g. \"blocking-dispatcher\": {\"executor\": \"thread-pool-executor\", "
     "\"fixed-pool-size\": 32, \"throughput\": 1}); \"starvation-threshold\" (100ms): a "
     "handler holding a fork-join thread longer is logged and counted."},
};

int ukko_actor_config_register(ukko_config_t *cfg, ukko_actor_config_t *ac)
{
    return ukko_config_add(cfg, actor_keys, sizeof(actor_keys) / sizeof(actor_keys[0]), ac);
}

static int int_in(const cJSON *v, double lo, double hi)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= lo &&
           v->valuedouble <= hi;
}

static int check_one(const char *name, const cJSON *d, char *why, size_t whylen)
{
    static const char allowed[] =
        "executor, throughput, parallelism-min, parallelism-factor, parallelism-max "
        "(fork-join-executor), fixed-pool-size (thread-pool-executor)";
    if (!cJSON_IsObject(d)) {
        snprintf(why, whylen, "dispatchers.%s must be an object of settings (%s)", name, allowed);
        return UKKO_EINVAL;
    }
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(d, "executor");
    bool pool = false;
    if (ex) {
        if (!cJSON_IsString(ex) || (strcmp(ex->valuestring, "fork-join-executor") &&
                                    strcmp(ex->valuestring, "thread-pool-executor"))) {
            snprintf(why, whylen,
                     "dispatchers.%s.executor: \"fork-join-executor\" or \"thread-pool-executor\"",
                     name);
            return UKKO_EINVAL;
        }
        pool = !strcmp(ex->valuestring, "thread-pool-executor");
    }
    for (const cJSON *it = d->child; it; it = it->next) {
        const char *k = it->string;
        const char *bad = NULL;
        if (!strcmp(k, "executor")) {
            continue;
        } else if (!strcmp(k, "throughput")) {
            if (!int_in(it, 1, 1000000))
                bad = "an integer from 1 to 1000000";
        } else if (!strcmp(k, "parallelism-min") || !strcmp(k, "parallelism-max")) {
            if (pool)
                bad = "nothing: it applies to executor \"fork-join-executor\" (use fixed-pool-size)";
            else if (!int_in(it, 1, 1024))
                bad = "an integer from 1 to 1024";
        } else if (!strcmp(k, "parallelism-factor")) {
            if (pool)
                bad = "nothing: it applies to executor \"fork-join-executor\" (use fixed-pool-size)";
            else if (!cJSON_IsNumber(it) || it->valuedouble <= 0 || it->valuedouble > 64)
                bad = "a number above 0 and at most 64 (threads per core)";
        } else if (!strcmp(k, "fixed-pool-size")) {
            if (!pool)
                bad = "nothing unless executor is \"thread-pool-executor\"";
            else if (!int_in(it, 1, 1024))
                bad = "an integer from 1 to 1024";
        } else {
            snprintf(why, whylen, "dispatchers.%s: unknown setting \"%s\"; known: %s", name, k,
                     allowed);
            return UKKO_EINVAL;
        }
        if (bad) {
            snprintf(why, whylen, "dispatchers.%s.%s: %s", name, k, bad);
            return UKKO_EINVAL;
        }
    }
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(d, "parallelism-min");
    const cJSON *hi = cJSON_GetObjectItemCaseSensitive(d, "parallelism-max");
    if (lo && hi && lo->valuedouble > hi->valuedouble) {
        snprintf(why, whylen, "dispatchers.%s: parallelism-min is above parallelism-max", name);
        return UKKO_EINVAL;
    }
    return 0;
}

int ukko_actor_config_check(const cJSON *v, char *why, size_t whylen)
{
    if (cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsObject(v)) {
        snprintf(why, whylen, "an object: {\"default\": {...}, \"<name>\": {...}, "
                              "\"starvation-threshold\": \"100ms\"}");
        return UKKO_EINVAL;
    }
    int n = 0;
    for (const cJSON *it = v->child; it; it = it->next) {
        if (!strcmp(it->string, "starvation-threshold")) {
            int64_t ms;
            if (!cJSON_IsString(it) || ukko_parse_duration(it->valuestring, &ms) < 0 || ms < 1 ||
                ms > 3600000) {
                snprintf(why, whylen,
                         "dispatchers.starvation-threshold: a duration from 1ms to 1h, e.g. \"100ms\"");
                return UKKO_EINVAL;
            }
            continue;
        }
        if (!strcmp(it->string, "loop") || !*it->string || strlen(it->string) > 48) {
            snprintf(why, whylen,
                     "dispatchers.\"%.48s\": a name of 1 to 48 characters other than \"loop\" "
                     "(the libev loop's own)",
                     it->string);
            return UKKO_EINVAL;
        }
        if (++n > MAX_DISPATCHERS - 1) {
            snprintf(why, whylen, "at most %d dispatchers", MAX_DISPATCHERS - 1);
            return UKKO_EINVAL;
        }
        int rc = check_one(it->string, it, why, whylen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ lifecycle */

void ukko__system_unref(ukko_actor_system_t *sys)
{
    /* acq_rel: the last one sees every actor's last writes. */
    if (atomic_fetch_sub_explicit(&sys->refs, 1, memory_order_acq_rel) != 1)
        return;
    ukko__dispatchers_free(sys);
    pthread_mutex_destroy(&sys->timers.lock);
    pthread_cond_destroy(&sys->timers.cond);
    pthread_mutex_destroy(&sys->reg_lock);
    pthread_mutex_destroy(&sys->grave_lock);
    free(sys);
}

int ukko_actor_system_new(const ukko_actor_config_t *ac, struct ev_loop *loop,
                          ukko_actor_system_t **out)
{
    *out = NULL;
    const cJSON *cfg = ac ? ac->dispatchers : NULL;
    char why[256];
    if (cfg && ukko_actor_config_check(cfg, why, sizeof(why)) < 0) {
        ukko_log(UKKO_LOG_ERROR, "actor", "bad dispatchers config: %s", why);
        return UKKO_EINVAL;
    }
    size_t sz = (sizeof(ukko_actor_system_t) + 63) / 64 * 64;
    ukko_actor_system_t *sys = aligned_alloc(64, sz);
    if (!sys)
        return UKKO_ENOMEM;
    memset(sys, 0, sz);
    atomic_init(&sys->refs, 1);
    sys->loop = loop;
    sys->starvation_ms = 100;
    const cJSON *st = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "starvation-threshold") : NULL;
    if (cJSON_IsString(st))
        ukko_parse_duration(st->valuestring, &sys->starvation_ms);
    pthread_mutex_init(&sys->reg_lock, NULL);
    pthread_mutex_init(&sys->grave_lock, NULL);
    int rc = ukko__dispatchers_build(sys, cfg);
    if (rc == 0)
        rc = ukko__timers_start(sys);
    if (rc == 0)
        rc = ukko__dispatchers_start(sys);
    if (rc < 0) {
        ukko__dispatchers_join(sys);
        ukko__timers_stop(sys);
        atomic_store(&sys->stopped, true);
        ukko__system_unref(sys);
        return rc;
    }
    for (int i = 0; i < sys->ndisp; i++) {
        ukko__dispatcher_t *d = sys->disp[i];
        ukko_logf(UKKO_LOG_DEBUG, "actor",
                  UKKO_FIELDS(UKKO_FS("dispatcher", d->name), UKKO_FI("threads", d->nthreads),
                              UKKO_FI("throughput", d->throughput)),
                  "dispatcher \"%s\" started", d->name);
    }
    *out = sys;
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000};
    nanosleep(&ts, NULL);
}

/* Waits (running loop actors meanwhile) until cond holds or the deadline. */
static bool wait_until(ukko_actor_system_t *sys, int64_t deadline,
                       bool (*cond)(ukko_actor_system_t *sys), int confirmations)
{
    ukko__dispatcher_t *loop_d = ukko__dispatcher_find(sys, "loop");
    int seen = 0;
    for (;;) {
        if (loop_d)
            ukko__loop_run(loop_d, 1024);
        if (cond(sys)) {
            if (++seen >= confirmations)
                return true;
        } else {
            seen = 0;
        }
        if (ukko_now_ms() >= deadline)
            return false;
        sleep_ms(1);
    }
}

static bool no_actors(ukko_actor_system_t *sys)
{
    return atomic_load_explicit(&sys->nactors, memory_order_seq_cst) == 0;
}

int ukko_actor_system_stop(ukko_actor_system_t *sys, ukko_shutdown_t mode, int64_t timeout_ms)
{
    if (atomic_load(&sys->stopped))
        return 0;
    int64_t t0 = ukko_now_ms(), deadline = t0 + (timeout_ms > 0 ? timeout_ms : 0);
    /* Stop accepting: spawns and sends from outside actors are refused. */
    atomic_store_explicit(&sys->closing, true, memory_order_seq_cst);
    bool drained = true;
    if (mode == UKKO_SHUTDOWN_DRAIN)
        drained = wait_until(sys, deadline, ukko__dispatchers_quiet, 3);
    ukko_actor_t **all;
    size_t n = ukko__actors_snapshot(sys, &all);
    for (size_t i = 0; i < n; i++) {
        ukko_actor_stop(all[i]);
        ukko_actor_release(all[i]);
    }
    free(all);
    /* Stopping takes a turn each; give it at least a moment past a spent drain. */
    if (!wait_until(sys, deadline > ukko_now_ms() + 1000 ? deadline : ukko_now_ms() + 1000,
                    no_actors, 1)) {
        size_t m = ukko__actors_snapshot(sys, &all);
        ukko_buf_t names;
        ukko_buf_init(&names, 1024);
        for (size_t i = 0; i < m; i++) {
            ukko_buf_printf(&names, "%s\"%s\"", i ? ", " : "", all[i]->name);
            ukko_actor_release(all[i]);
        }
        free(all);
        ukko_logf(UKKO_LOG_ERROR, "actor", UKKO_FIELDS(UKKO_FI("actors", m)),
                  "actor system stop: %zu actor(s) still in a handler after %lld ms (%s): "
                  "leaving their threads behind; handlers must not block on the default "
                  "dispatcher",
                  m, (long long)(ukko_now_ms() - t0), names.data ? names.data : "");
        ukko_buf_destroy(&names);
        return UKKO_ETIMEDOUT;
    }
    ukko__dispatchers_join(sys);
    ukko__timers_stop(sys);
    pthread_mutex_lock(&sys->grave_lock);
    atomic_store_explicit(&sys->stopped, true, memory_order_seq_cst);
    pthread_mutex_unlock(&sys->grave_lock);
    ukko__grave_reap(sys);
    uint64_t dropped = atomic_load(&sys->dropped_at_stop);
    ukko_logf(UKKO_LOG_INFO, "actor",
              UKKO_FIELDS(UKKO_FB("drained", drained), UKKO_FI("dropped", dropped),
                          UKKO_FI("took_ms", ukko_now_ms() - t0)),
              "actor system stopped (%s%s; %llu queued message(s) dropped)",
              mode == UKKO_SHUTDOWN_DRAIN ? "drain" : "drop",
              mode == UKKO_SHUTDOWN_DRAIN && !drained ? " cut short by the timeout" : "",
              (unsigned long long)dropped);
    return 0;
}

void ukko_actor_system_free(ukko_actor_system_t *sys)
{
    if (!sys)
        return;
    if (!atomic_load(&sys->stopped) &&
        ukko_actor_system_stop(sys, UKKO_SHUTDOWN_DROP, 5000) == UKKO_ETIMEDOUT)
        return; /* threads still use it: leak rather than crash */
    ukko__system_unref(sys);
}

/* ------------------------------------------------------------ metrics */

void ukko_actor_system_metrics(ukko_buf_t *out, void *ud)
{
    ukko_actor_system_t *sys = ud;
    const char *k[] = {"dispatcher"};
    ukko_prom_family(out, "ukko_actor_dispatcher_threads", "gauge",
                     "Threads of each actor dispatcher.");
    for (int i = 0; i < sys->ndisp; i++) {
        const char *v[] = {sys->disp[i]->name};
        ukko_prom_sample(out, "ukko_actor_dispatcher_threads", k, v, 1,
                         sys->disp[i]->executor == EXEC_LOOP ? 1 : sys->disp[i]->nthreads);
    }
    ukko_prom_family(out, "ukko_actor_dispatcher_queue_depth", "gauge",
                     "Actors with messages waiting for a thread of the dispatcher (its run "
                     "queues); grows when handlers cannot keep up.");
    for (int i = 0; i < sys->ndisp; i++) {
        const char *v[] = {sys->disp[i]->name};
        ukko_prom_sample(out, "ukko_actor_dispatcher_queue_depth", k, v, 1,
                         (double)ukko__dispatcher_queued(sys->disp[i]));
    }
    ukko_prom_family(out, "ukko_actor_starvation_total", "counter",
                     "Turns in which a handler held a dispatcher thread longer than "
                     "dispatchers.starvation-threshold.");
    for (int i = 0; i < sys->ndisp; i++) {
        if (!sys->disp[i]->starvation_check)
            continue;
        const char *v[] = {sys->disp[i]->name};
        ukko_prom_sample(out, "ukko_actor_starvation_total", k, v, 1,
                         (double)atomic_load_explicit(&sys->disp[i]->starvations,
                                                      memory_order_relaxed));
    }
    ukko_prom_family(out, "ukko_actor_messages_total", "counter",
                     "Messages handled by actors on each dispatcher (worker threads).");
    for (int i = 0; i < sys->ndisp; i++) {
        ukko__dispatcher_t *d = sys->disp[i];
        if (d->executor == EXEC_LOOP)
            continue;
        uint64_t sum = 0;
        for (int j = 0; j < d->nthreads; j++)
            sum += atomic_load_explicit(&d->workers[j].msgs, memory_order_relaxed);
        const char *v[] = {d->name};
        ukko_prom_sample(out, "ukko_actor_messages_total", k, v, 1, (double)sum);
    }
    ukko_prom_family(out, "ukko_actor_actors", "gauge", "Live actors.");
    ukko_prom_sample(out, "ukko_actor_actors", NULL, NULL, 0,
                     (double)atomic_load_explicit(&sys->nactors, memory_order_relaxed));
    ukko_prom_family(out, "ukko_actor_failures_total", "counter",
                     "Handler or init failures (returned errors).");
    ukko_prom_sample(out, "ukko_actor_failures_total", NULL, NULL, 0,
                     (double)atomic_load_explicit(&sys->failures, memory_order_relaxed));
    ukko_prom_family(out, "ukko_actor_restarts_total", "counter",
                     "Actor restarts by supervision.");
    ukko_prom_sample(out, "ukko_actor_restarts_total", NULL, NULL, 0,
                     (double)atomic_load_explicit(&sys->restarts, memory_order_relaxed));
    ukko_prom_family(out, "ukko_actor_dead_letters_total", "counter",
                     "Sends refused because the actor had stopped.");
    ukko_prom_sample(out, "ukko_actor_dead_letters_total", NULL, NULL, 0,
                     (double)atomic_load_explicit(&sys->dead_letters, memory_order_relaxed));
}
