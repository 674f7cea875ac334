/* test_actor_system.c: the actor system (node/actor_system.c,
 * node/dispatcher.c): the "dispatchers" config and its errors, named
 * dispatchers, the starvation detector, the loop dispatcher, work spread
 * over threads, and orderly shutdown with messages in flight. */
#include "actor_test.h"

#include "actor_internal.h" /* an actor's stop flag; the dropped count */

#include <ev.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static int check(const char *json, char *why, size_t n)
{
    cJSON *v = cJSON_Parse(json);
    cr_assert_not_null(v, "bad test JSON %s", json);
    why[0] = '\0';
    int rc = ukko_actor_config_check(v, why, n);
    cJSON_Delete(v);
    return rc;
}

Test(actor_system, config_check_names_the_bad_sub_key, .timeout = 10)
{
    char why[256];
    cr_assert_eq(check("{\"default\": {\"throughput\": 10}, \"blocking-dispatcher\": "
                       "{\"executor\": \"thread-pool-executor\", \"fixed-pool-size\": 32, "
                       "\"throughput\": 1}, \"starvation-threshold\": \"250ms\"}",
                       why, sizeof(why)),
                 0, "a good config was refused: %s", why);
    cr_assert_lt(check("{\"blocking-dispatcher\": {\"executor\": \"thread-pool-executor\", "
                       "\"fixed-pool-sise\": 32}}",
                       why, sizeof(why)),
                 0);
    cr_assert(strstr(why, "blocking-dispatcher") && strstr(why, "fixed-pool-sise"),
              "the message names the dispatcher and the bad key: %s", why);
    cr_assert_lt(check("{\"default\": {\"throughput\": 0}}", why, sizeof(why)), 0);
    cr_assert(strstr(why, "default.throughput"), "%s", why);
    cr_assert_lt(check("{\"default\": {\"fixed-pool-size\": 4}}", why, sizeof(why)), 0);
    cr_assert(strstr(why, "thread-pool-executor"), "%s", why);
    cr_assert_lt(check("{\"starvation-threshold\": \"soon\"}", why, sizeof(why)), 0);
    cr_assert(strstr(why, "starvation-threshold"), "%s", why);
    cr_assert_lt(check("{\"loop\": {}}", why, sizeof(why)), 0);
    cr_assert(strstr(why, "loop"), "%s", why);
}

Test(actor_system, config_key_loads_from_the_environment, .timeout = 10)
{
    ukko_config_t *cfg = ukko_config_new();
    ukko_actor_config_t ac;
    cr_assert_eq(ukko_actor_config_register(cfg, &ac), 0);
    char *env[] = {"UKKO_DISPATCHERS={\"default\": {\"parallelism-mni\": 2}}", NULL};
    cr_assert_eq(ukko_config_load(cfg, NULL, env), 1);
    const char *e = ukko_config_error(cfg, 0);
    cr_assert(strstr(e, "dispatchers") && strstr(e, "parallelism-mni"), "error: %s", e);
    ukko_config_free(cfg);

    cfg = ukko_config_new();
    ukko_actor_config_register(cfg, &ac);
    cr_assert_eq(ukko_config_load(cfg, NULL, NULL), 0, "the built-in default is valid");
    ukko_actor_system_t *sys = NULL;
    cr_assert_eq(ukko_actor_system_new(&ac, NULL, &sys), 0);
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 16);
    ukko_actor_system_metrics(&b, sys);
    char want[128];
    snprintf(want, sizeof(want), "ukko_actor_dispatcher_threads{dispatcher=\"default\"} %ld\n",
             sysconf(_SC_NPROCESSORS_ONLN));
    cr_assert(strstr(b.data, want), "one thread per core by default; metrics:\n%s", b.data);
    ukko_buf_destroy(&b);
    ukko_actor_system_free(sys);
    ukko_config_free(cfg);
}

typedef struct sleeper {
    int ms;
    _Atomic int done;
    _Atomic(pthread_t) thread;
} sleeper_t;

static int sleeper_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    sleeper_t *s = *(sleeper_t **)state;
    usleep((useconds_t)s->ms * 1000); /* the blocking call that must not be here */
    atomic_store(&s->thread, pthread_self());
    atomic_fetch_add(&s->done, 1);
    return 0;
}

static const ukko_behaviour_t sleeper_behaviour = {
    .state_size = sizeof(void *), .init = test_ptr_init, .handle = sleeper_handle};

static double metric(ukko_actor_system_t *sys, const char *series)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 16);
    ukko_actor_system_metrics(&b, sys);
    const char *p = strstr(b.data, series);
    double v = p ? atof(p + strlen(series)) : -1;
    ukko_buf_destroy(&b);
    return v;
}

Test(actor_system, starvation_detector_logs_and_counts, .timeout = 30)
{
    char path[] = "/tmp/ukko-starve-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    ukko_log_setup(UKKO_LOG_INFO, UKKO_LOG_TEXT);
    ukko_log_set_fd(fd);
    ukko_actor_system_t *sys = test_system(
        "{\"starvation-threshold\": \"50ms\", \"blocking\": {\"executor\": "
        "\"thread-pool-executor\", \"fixed-pool-size\": 1}}");
    sleeper_t s = {.ms = 300}, sb = {.ms = 300};
    ukko_actor_t *a = NULL, *b = NULL;
    ukko_spawn_opts_t o = {.name = "sleepy-handler", .arg = &s};
    cr_assert_eq(ukko_actor_spawn(sys, &sleeper_behaviour, &o, &a), 0);
    ukko_spawn_opts_t ob = {.name = "blocking-ok", .arg = &sb, .dispatcher = "blocking"};
    cr_assert_eq(ukko_actor_spawn(sys, &sleeper_behaviour, &ob, &b), 0);
    ukko_actor_send(b, 1, NULL, 0);
    ukko_actor_send(a, 1, NULL, 0);
    const char *series = "ukko_actor_starvation_total{dispatcher=\"default\"} ";
    WAIT_FOR(metric(sys, series) == 1 && atomic_load(&s.done) && atomic_load(&sb.done), 10000);
    cr_assert_eq(metric(sys, series), 1, "one starving turn counted, saw %g", metric(sys, series));
    cr_assert_eq(atomic_load(&sb.done), 1);
    ukko_actor_release(a);
    ukko_actor_release(b);
    ukko_actor_system_free(sys);
    ukko_log_set_fd(2);
    char text[8192] = {0};
    FILE *f = fopen(path, "r");
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(path);
    cr_assert(strstr(text, "starvation") && strstr(text, "sleepy-handler"),
              "the log names the actor:\n%s", text);
    cr_assert_null(strstr(text, "blocking-ok"), "thread-pool dispatchers are not watched:\n%s",
                   text);
}

static _Atomic bool depth_gate_open;

static int depth_gate_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)state;
    (void)msg;
    /* Holds the pool's only thread until the test opens the gate (10 s at most). */
    for (int i = 0; i < 10000 && !atomic_load(&depth_gate_open); i++)
        usleep(1000);
    return 0;
}

static const ukko_behaviour_t depth_gate_behaviour = {.handle = depth_gate_handle};

Test(actor_system, queue_depth_counts_actors_waiting_for_a_thread, .timeout = 30)
{
    ukko_actor_system_t *sys = test_system(
        "{\"starvation-threshold\": \"1h\", \"blocking\": {\"executor\": "
        "\"thread-pool-executor\", \"fixed-pool-size\": 1}}");
    const char *series = "ukko_actor_dispatcher_queue_depth{dispatcher=\"blocking\"} ";
    cr_assert_eq(metric(sys, series), 0, "an idle dispatcher has depth 0, saw %g",
                 metric(sys, series));
    atomic_store(&depth_gate_open, false);
    ukko_actor_t *gate = NULL;
    ukko_spawn_opts_t og = {.name = "gate", .dispatcher = "blocking"};
    cr_assert_eq(ukko_actor_spawn(sys, &depth_gate_behaviour, &og, &gate), 0);
    ukko_actor_send(gate, 1, NULL, 0);
    enum { N = 5 };
    sleeper_t s[N];
    ukko_actor_t *a[N];
    for (int i = 0; i < N; i++) {
        s[i] = (sleeper_t){.ms = 0};
        ukko_spawn_opts_t o = {.arg = &s[i], .dispatcher = "blocking"};
        cr_assert_eq(ukko_actor_spawn(sys, &sleeper_behaviour, &o, &a[i]), 0);
        /* Two messages: an actor waits in the queue once, not per message. */
        ukko_actor_send(a[i], 1, NULL, 0);
        ukko_actor_send(a[i], 1, NULL, 0);
    }
    WAIT_FOR(metric(sys, series) == N, 10000);
    cr_assert_eq(metric(sys, series), N, "5 actors wait for the blocked thread, saw %g",
                 metric(sys, series));
    atomic_store(&depth_gate_open, true);
    for (int i = 0; i < N; i++) {
        WAIT_FOR(atomic_load(&s[i].done) == 2, 10000);
        cr_assert_eq(atomic_load(&s[i].done), 2, "actor %d ran %d of its 2 messages", i,
                     atomic_load(&s[i].done));
    }
    WAIT_FOR(metric(sys, series) == 0, 10000);
    cr_assert_eq(metric(sys, series), 0, "the queue drained, saw %g", metric(sys, series));
    for (int i = 0; i < N; i++)
        ukko_actor_release(a[i]);
    ukko_actor_release(gate);
    ukko_actor_system_free(sys);
}

Test(actor_system, work_spreads_over_the_threads, .timeout = 60)
{
    ukko_actor_system_t *sys = test_system(
        "{\"starvation-threshold\": \"1h\", \"default\": {\"parallelism-min\": 2, "
        "\"parallelism-max\": 2}}");
    enum { N = 8 };
    sleeper_t s[N];
    ukko_actor_t *a[N];
    pthread_t first = 0;
    bool two = false;
    for (int round = 0; round < 20 && !two; round++) {
        for (int i = 0; i < N; i++) {
            s[i] = (sleeper_t){.ms = 20};
            ukko_spawn_opts_t o = {.arg = &s[i]};
            cr_assert_eq(ukko_actor_spawn(sys, &sleeper_behaviour, &o, &a[i]), 0);
            ukko_actor_send(a[i], 1, NULL, 0);
        }
        for (int i = 0; i < N; i++) {
            WAIT_FOR(atomic_load(&s[i].done), 10000);
            cr_assert(atomic_load(&s[i].done), "actor %d never ran", i);
            pthread_t t = atomic_load(&s[i].thread);
            if (!first)
                first = t;
            else if (!pthread_equal(first, t))
                two = true;
            ukko_actor_release(a[i]);
        }
    }
    cr_assert(two, "8 busy actors never ran on both threads of the default dispatcher");
    ukko_actor_system_free(sys);
}

/* Slow: each message takes a little while, so messages are in flight when
 * a draining stop begins. Payloads are handed over and counted when freed. */
static _Atomic int payloads;
static void payload_free(void *p)
{
    atomic_fetch_sub(&payloads, 1);
    free(p);
}

static int slow_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    usleep(200);
    return rec_handle(ctx, state, msg);
}

static const ukko_behaviour_t slow_behaviour = {
    .state_size = sizeof(rec_state_t), .init = rec_init, .handle = slow_handle, .free = rec_free};

/* Latched: the first message holds the handler until the system's stop has
 * told the actor to stop, so every later message is certainly still queued
 * when a dropping stop reaches it. */
static _Atomic int latch_entered;

static int latch_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    ukko_actor_t *self = ukko_actor_self(ctx);
    if (!atomic_exchange(&latch_entered, 1)) {
        int64_t deadline = ukko_now_ms() + 30000;
        while (!(atomic_load(&self->flags) & ACTOR_STOP) && ukko_now_ms() < deadline)
            poll_pause();
    }
    return rec_handle(ctx, state, msg);
}

static const ukko_behaviour_t latch_behaviour = {
    .state_size = sizeof(rec_state_t), .init = rec_init, .handle = latch_handle, .free = rec_free};

static void shutdown_with_messages_in_flight(ukko_shutdown_t mode)
{
    ukko_actor_system_t *sys = test_system(
        "{\"blocking\": {\"executor\": \"thread-pool-executor\", \"fixed-pool-size\": 1}}");
    rec_t *r = rec_new();
    ukko_actor_t *a = NULL;
    bool drop = mode == UKKO_SHUTDOWN_DROP;
    /* The latched handler blocks on purpose: not on the default dispatcher. */
    ukko_spawn_opts_t o = {.arg = r, .dispatcher = drop ? "blocking" : NULL};
    atomic_store(&latch_entered, 0);
    cr_assert_eq(ukko_actor_spawn(sys, drop ? &latch_behaviour : &slow_behaviour, &o, &a), 0);
    const int n = 2000;
    atomic_store(&payloads, 0);
    for (int i = 1; i <= n; i++) {
        seqmsg_t *m = malloc(sizeof(*m));
        *m = (seqmsg_t){.sender = 0, .seq = i};
        atomic_fetch_add(&payloads, 1);
        cr_assert_eq(ukko_actor_send_owned(a, 1, m, sizeof(*m), payload_free), 0);
    }
    if (drop) {
        WAIT_FOR(atomic_load(&latch_entered), 5000);
        cr_assert(atomic_load(&latch_entered), "the actor never started on its first message");
    }
    cr_assert_eq(ukko_actor_system_stop(sys, mode, 30000), 0);
    cr_assert_not(ukko_actor_alive(a));
    cr_assert_eq(atomic_load(&r->frees), 1, "free ran at stop");
    cr_assert_eq(atomic_load(&payloads), 0, "%d handed-over payloads were never freed",
                 atomic_load(&payloads));
    if (!drop) {
        cr_assert_eq(atomic_load(&r->count), n, "drain handled %lld of %d",
                     (long long)atomic_load(&r->count), n);
    } else {
        cr_assert_eq(atomic_load(&r->count), 1,
                     "drop handled %lld of %d messages, expected only the one in hand when "
                     "the stop came",
                     (long long)atomic_load(&r->count), n);
        cr_assert_eq(atomic_load(&sys->dropped_at_stop), (uint64_t)n - 1,
                     "%llu queued messages dropped at stop, expected %d",
                     (unsigned long long)atomic_load(&sys->dropped_at_stop), n - 1);
    }
    seqmsg_t m = {0};
    cr_assert_eq(ukko_actor_send(a, 1, &m, sizeof(m)), UKKO_ECANCELED,
                 "sends from outside are refused once stopping");
    ukko_actor_t *b = NULL;
    cr_assert_eq(ukko_actor_spawn(sys, &rec_behaviour, &o, &b), UKKO_ECANCELED);
    cr_assert_eq(ukko_actor_system_stop(sys, mode, 1000), 0, "a second stop is harmless");
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

Test(actor_system, shutdown_drains_messages_in_flight, .timeout = 60)
{
    shutdown_with_messages_in_flight(UKKO_SHUTDOWN_DRAIN);
}

Test(actor_system, shutdown_drops_messages_in_flight, .timeout = 60)
{
    shutdown_with_messages_in_flight(UKKO_SHUTDOWN_DROP);
}

/* The loop dispatcher: a worker actor hands a result to a loop actor, whose
 * handler runs on the thread that runs the libev loop. */
typedef struct loopbox {
    _Atomic int got;
    _Atomic(pthread_t) thread;
    ukko_actor_t *loop_actor;
} loopbox_t;

static int loop_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    loopbox_t *l = *(loopbox_t **)state;
    atomic_store(&l->thread, pthread_self());
    atomic_fetch_add(&l->got, 1);
    return 0;
}

static int forward_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    loopbox_t *l = *(loopbox_t **)state;
    return ukko_actor_send(l->loop_actor, msg->type, msg->data, msg->len);
}

static const ukko_behaviour_t loop_behaviour = {
    .state_size = sizeof(void *), .init = test_ptr_init, .handle = loop_handle};
static const ukko_behaviour_t forward_behaviour = {
    .state_size = sizeof(void *), .init = test_ptr_init, .handle = forward_handle};

Test(actor_system, loop_dispatcher_runs_on_the_loop_thread, .timeout = 30)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ukko_actor_system_t *sys = NULL;
    cr_assert_eq(ukko_actor_system_new(NULL, loop, &sys), 0);
    loopbox_t l = {0};
    ukko_spawn_opts_t o = {.arg = &l, .dispatcher = "loop"};
    cr_assert_eq(ukko_actor_spawn(sys, &loop_behaviour, &o, &l.loop_actor), 0);
    ukko_actor_t *w = NULL;
    o.dispatcher = NULL;
    cr_assert_eq(ukko_actor_spawn(sys, &forward_behaviour, &o, &w), 0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(ukko_actor_send(w, 1, "r", 1), 0);
    int64_t deadline = ukko_now_ms() + 10000;
    while (atomic_load(&l.got) < 100 && ukko_now_ms() < deadline)
        ev_run(loop, EVRUN_ONCE); /* woken by the ev_async */
    cr_assert_eq(atomic_load(&l.got), 100, "the loop actor got %d of 100", atomic_load(&l.got));
    cr_assert(pthread_equal(atomic_load(&l.thread), pthread_self()),
              "loop actors run on the loop's thread");
    ukko_actor_release(w);
    ukko_actor_release(l.loop_actor);
    cr_assert_eq(ukko_actor_system_stop(sys, UKKO_SHUTDOWN_DRAIN, 5000), 0);
    ukko_actor_system_free(sys);
    ev_loop_destroy(loop);
}

/* Workers that run dry spin, then park; a send wakes one. Sends spaced about
 * as long as the spin make workers park and get woken over and over, the
 * moment where a waker and a parking worker meet (under TSan as well). */
static void busy_wait_us(int us)
{
    int64_t until = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    until = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + us;
    do
        clock_gettime(CLOCK_MONOTONIC, &ts);
    while ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 < until);
}

Test(actor_system, wakeups_while_workers_park_lose_nothing, .timeout = 120)
{
    ukko_actor_system_t *sys = test_system(
        "{\"default\": {\"parallelism-min\": 4, \"parallelism-max\": 4}}");
    enum { N = 8, MSGS = 20000 };
    rec_t *r = rec_new();
    ukko_actor_t *a[N];
    for (int i = 0; i < N; i++)
        a[i] = spawn_rec(sys, r, NULL);
    for (int i = 0; i < MSGS; i++) {
        cr_assert_eq(ukko_actor_send(a[i % N], 1, NULL, 0), 0);
        busy_wait_us(i % 97); /* 0 to 96 us: around the 50 us spin */
    }
    WAIT_FOR(atomic_load(&r->count) == MSGS, 30000);
    cr_assert_eq(atomic_load(&r->count), MSGS, "handled %lld of %d messages sent to parking workers",
                 (long long)atomic_load(&r->count), MSGS);
    for (int i = 0; i < N; i++)
        ukko_actor_release(a[i]);
    ukko_actor_system_free(sys);
    free(r);
}

/* More loop actors become runnable at once than the loop runs per wake-up
 * (64): the rest must still run, on later iterations of the loop. */
Test(actor_system, loop_dispatcher_runs_more_actors_than_one_batch, .timeout = 30)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ukko_actor_system_t *sys = NULL;
    cr_assert_eq(ukko_actor_system_new(NULL, loop, &sys), 0);
    enum { N = 200 };
    loopbox_t l = {0};
    ukko_actor_t *a[N];
    ukko_spawn_opts_t o = {.arg = &l, .dispatcher = "loop"};
    for (int i = 0; i < N; i++)
        cr_assert_eq(ukko_actor_spawn(sys, &loop_behaviour, &o, &a[i]), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(ukko_actor_send(a[i], 1, "x", 1), 0);
    int64_t deadline = ukko_now_ms() + 10000;
    while (atomic_load(&l.got) < N && ukko_now_ms() < deadline) {
        ev_run(loop, EVRUN_NOWAIT);
        poll_pause();
    }
    cr_assert_eq(atomic_load(&l.got), N, "%d loop actors with one message each: %d handled", N,
                 atomic_load(&l.got));
    for (int i = 0; i < N; i++)
        ukko_actor_release(a[i]);
    cr_assert_eq(ukko_actor_system_stop(sys, UKKO_SHUTDOWN_DRAIN, 5000), 0);
    ukko_actor_system_free(sys);
    ev_loop_destroy(loop);
}

/* A handler that makes more actors runnable than its worker's local run
 * queue holds (256): the overflow goes to the dispatcher's shared queue and
 * every one of them runs. One thread, so nobody steals from the ring. */
typedef struct fanout {
    ukko_actor_t **to;
    int n;
} fanout_t;

static int fanout_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    fanout_t *f = *(fanout_t **)state;
    for (int i = 0; i < f->n; i++) {
        int rc = ukko_actor_send(f->to[i], 1, NULL, 0);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const ukko_behaviour_t fanout_behaviour = {
    .state_size = sizeof(void *), .init = test_ptr_init, .handle = fanout_handle};

Test(actor_system, more_runnable_actors_than_a_run_queue_holds, .timeout = 60)
{
    ukko_actor_system_t *sys = test_system(
        "{\"default\": {\"parallelism-min\": 1, \"parallelism-max\": 1}}");
    enum { N = 1000, ROUNDS = 3 };
    rec_t *r = rec_new();
    ukko_actor_t **to = calloc(N, sizeof(*to));
    for (int i = 0; i < N; i++)
        to[i] = spawn_rec(sys, r, NULL);
    fanout_t f = {to, N};
    ukko_actor_t *src = NULL;
    ukko_spawn_opts_t o = {.arg = &f};
    cr_assert_eq(ukko_actor_spawn(sys, &fanout_behaviour, &o, &src), 0);
    for (int round = 1; round <= ROUNDS; round++) {
        cr_assert_eq(ukko_actor_send(src, 1, NULL, 0), 0);
        WAIT_FOR(atomic_load(&r->count) == (int64_t)round * N, 20000);
        cr_assert_eq(atomic_load(&r->count), (int64_t)round * N,
                     "round %d: %lld of %d messages handled (one per actor)", round,
                     (long long)atomic_load(&r->count) - (int64_t)(round - 1) * N, N);
    }
    ukko_actor_release(src);
    for (int i = 0; i < N; i++)
        ukko_actor_release(to[i]);
    free(to);
    ukko_actor_system_free(sys);
    free(r);
}
