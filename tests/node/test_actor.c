/* test_actor.c: actors (node/actor.c): spawn and send (copied and handed
 * over), ordering per sender, no loss under many producers, bounded
 * mailboxes, stop, death watch, supervision (restart, stop) and the trace
 * context in the envelope. */
#include "actor_test.h"

#include "actor_internal.h" /* a late push into a dead mailbox, the refcounts */

#include <pthread.h>

#define T_SEQ 1
#define T_GATE 2

static seqmsg_t seq(int sender, int64_t n)
{
    return (seqmsg_t){.sender = sender, .seq = n};
}

Test(actor, spawn_send_copy_and_stop, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    rec_t *r = rec_new();
    ukko_spawn_opts_t o = {.name = "recorder"};
    ukko_actor_t *a = spawn_rec(sys, r, &o);
    cr_assert_str_eq(ukko_actor_name(a), "recorder");
    cr_assert_eq(atomic_load(&r->inits), 1, "init runs in spawn");
    seqmsg_t m = seq(0, 1);
    cr_assert_eq(ukko_actor_send(a, T_SEQ, &m, sizeof(m)), 0);
    m.seq = 999; /* the message was copied: changing ours changes nothing */
    WAIT_FOR(atomic_load(&r->count) == 1, 5000);
    cr_assert_eq(atomic_load(&r->sum), 1, "the handler saw seq %lld, not the copy's 1",
                 (long long)atomic_load(&r->sum));
    cr_assert_eq(ukko_actor_stop(a), 0);
    WAIT_FOR(!ukko_actor_alive(a), 5000);
    cr_assert_not(ukko_actor_alive(a), "stopped actor still alive");
    cr_assert_eq(atomic_load(&r->frees), 1, "free runs once at stop");
    cr_assert_eq(ukko_actor_send(a, T_SEQ, &m, sizeof(m)), UKKO_ENOENT,
                 "a send to a stopped actor is a dead letter");
    cr_assert_eq(ukko_actor_stop(a), UKKO_ENOENT);
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

static _Atomic int owned_freed;
static void owned_free(void *p)
{
    atomic_fetch_add(&owned_freed, 1);
    free(p);
}

Test(actor, handed_over_payload_is_freed_once, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    rec_t *r = rec_new();
    ukko_actor_t *a = spawn_rec(sys, r, NULL);
    for (int i = 1; i <= 100; i++) {
        seqmsg_t *m = malloc(sizeof(*m));
        *m = seq(0, i);
        cr_assert_eq(ukko_actor_send_owned(a, T_SEQ, m, sizeof(*m), owned_free), 0);
    }
    WAIT_FOR(atomic_load(&owned_freed) == 100, 5000);
    cr_assert_eq(atomic_load(&owned_freed), 100, "freed %d of 100 handed-over payloads",
                 atomic_load(&owned_freed));
    cr_assert_eq(atomic_load(&r->order_errors), 0);
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

Test(actor, order_per_sender_is_kept, .timeout = 60)
{
    ukko_actor_system_t *sys = test_system("{\"default\": {\"parallelism-min\": 2}}");
    rec_t *r = rec_new();
    ukko_actor_t *a = spawn_rec(sys, r, NULL);
    const int n = 200000;
    for (int i = 1; i <= n; i++) {
        seqmsg_t m = seq(3, i);
        cr_assert_eq(ukko_actor_send(a, T_SEQ, &m, sizeof(m)), 0);
    }
    WAIT_FOR(atomic_load(&r->count) == n, 30000);
    cr_assert_eq(atomic_load(&r->count), n, "handled %lld of %d", (long long)atomic_load(&r->count), n);
    cr_assert_eq(atomic_load(&r->order_errors), 0, "%lld out of order",
                 (long long)atomic_load(&r->order_errors));
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

typedef struct producer {
    ukko_actor_t *to;
    int id;
    int n;
} producer_t;

static void *produce(void *arg)
{
    producer_t *p = arg;
    for (int i = 1; i <= p->n; i++) {
        seqmsg_t m = seq(p->id, i);
        int rc;
        while ((rc = ukko_actor_send(p->to, T_SEQ, &m, sizeof(m))) == UKKO_EAGAIN)
            sched_yield(); /* bounded: back off and retry */
        if (rc != 0)
            return (void *)1;
    }
    return NULL;
}

static void many_producers(uint32_t capacity)
{
    ukko_actor_system_t *sys = test_system("{\"default\": {\"parallelism-min\": 2}}");
    rec_t *r = rec_new();
    ukko_spawn_opts_t o = {.mailbox_capacity = capacity};
    ukko_actor_t *a = spawn_rec(sys, r, &o);
    enum { P = 8, N = 25000 };
    pthread_t t[P];
    producer_t p[P];
    for (int i = 0; i < P; i++) {
        p[i] = (producer_t){a, i, N};
        pthread_create(&t[i], NULL, produce, &p[i]);
    }
    for (int i = 0; i < P; i++) {
        void *res;
        pthread_join(t[i], &res);
        cr_assert_null(res, "producer %d: a send failed", i);
    }
    WAIT_FOR(atomic_load(&r->count) == (int64_t)P * N, 30000);
    cr_assert_eq(atomic_load(&r->count), (int64_t)P * N, "handled %lld of %d",
                 (long long)atomic_load(&r->count), P * N);
    int64_t want = (int64_t)P * N * (N + 1) / 2;
    cr_assert_eq(atomic_load(&r->sum), want, "sum of sequence numbers %lld, expected %lld",
                 (long long)atomic_load(&r->sum), (long long)want);
    cr_assert_eq(atomic_load(&r->order_errors), 0);
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

Test(actor, many_producers_lose_nothing, .timeout = 120)
{
    many_producers(0);
}

Test(actor, many_producers_into_a_bounded_mailbox, .timeout = 120)
{
    many_producers(64);
}

/* A gate actor blocks in its handler until the test opens the gate. */
static _Atomic int gate_open;
static _Atomic int gate_entered;

static int gate_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)state;
    if (msg->type == T_GATE) {
        atomic_store(&gate_entered, 1);
        while (!atomic_load(&gate_open))
            poll_pause();
    }
    return rec_handle(ctx, state, msg);
}

static const ukko_behaviour_t gate_behaviour = {
    .state_size = sizeof(rec_state_t), .init = rec_init, .handle = gate_handle, .free = rec_free};

Test(actor, bounded_mailbox_reports_full, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(
        "{\"blocking\": {\"executor\": \"thread-pool-executor\", \"fixed-pool-size\": 1}}");
    rec_t *r = rec_new();
    ukko_actor_t *a = NULL;
    ukko_spawn_opts_t o = {.arg = r, .mailbox_capacity = 4, .dispatcher = "blocking"};
    cr_assert_eq(ukko_actor_spawn(sys, &gate_behaviour, &o, &a), 0);
    cr_assert_eq(ukko_actor_send(a, T_GATE, NULL, 0), 0);
    WAIT_FOR(atomic_load(&gate_entered), 5000);
    cr_assert(atomic_load(&gate_entered), "the gate handler never ran");
    int ok = 0, full = 0;
    for (int i = 0; i < 10; i++) {
        int rc = ukko_actor_send(a, 3, NULL, 0);
        ok += rc == 0;
        full += rc == UKKO_EAGAIN;
    }
    cr_assert_eq(ok, 4, "a capacity-4 mailbox took %d while its actor was busy", ok);
    cr_assert_eq(full, 6, "6 sends should have been refused with UKKO_EAGAIN, got %d", full);
    atomic_store(&gate_open, 1);
    WAIT_FOR(atomic_load(&r->count) == 5, 5000);
    cr_assert_eq(atomic_load(&r->count), 5);
    cr_assert_eq(ukko_actor_send(a, 3, NULL, 0), 0, "room again once handled");
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

/* Watcher: watches the actor given as arg at init, counts TERMINATED. */
typedef struct watch_arg {
    ukko_actor_t *target;
    _Atomic int terminated;
    _Atomic(ukko_actor_t *) who;
} watch_arg_t;

static int watcher_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    *(watch_arg_t **)state = arg;
    return ukko_actor_watch(ctx, ((watch_arg_t *)arg)->target);
}

static int watcher_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    watch_arg_t *w = *(watch_arg_t **)state;
    if (msg->type == UKKO_MSG_TERMINATED) {
        atomic_store(&w->who, msg->sender);
        atomic_fetch_add(&w->terminated, 1);
    }
    return 0;
}

static const ukko_behaviour_t watcher_behaviour = {
    .state_size = sizeof(void *), .init = watcher_init, .handle = watcher_handle};

Test(actor, death_watch_delivers_terminated, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    rec_t *r = rec_new();
    ukko_actor_t *target = spawn_rec(sys, r, NULL);
    watch_arg_t w = {.target = target};
    ukko_actor_t *watcher = NULL;
    ukko_spawn_opts_t o = {.arg = &w};
    cr_assert_eq(ukko_actor_spawn(sys, &watcher_behaviour, &o, &watcher), 0);
    ukko_actor_stop(target);
    WAIT_FOR(atomic_load(&w.terminated) == 1, 5000);
    cr_assert_eq(atomic_load(&w.terminated), 1, "watcher got %d TERMINATED", atomic_load(&w.terminated));
    cr_assert_eq(atomic_load(&w.who), target, "msg->sender names the stopped actor");

    /* Watching an actor that already stopped tells at once. */
    watch_arg_t w2 = {.target = target};
    ukko_actor_t *late = NULL;
    o.arg = &w2;
    cr_assert_eq(ukko_actor_spawn(sys, &watcher_behaviour, &o, &late), 0);
    WAIT_FOR(atomic_load(&w2.terminated) == 1, 5000);
    cr_assert_eq(atomic_load(&w2.terminated), 1, "a late watcher still hears of the death");
    ukko_actor_release(late);
    ukko_actor_release(watcher);
    ukko_actor_release(target);
    ukko_actor_system_free(sys);
    free(r);
}

Test(actor, failing_handler_restarts_with_fresh_state, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    rec_t *r = rec_new();
    atomic_store(&r->fail_on, 3);
    ukko_spawn_opts_t o = {.on_failure = UKKO_SUPERVISE_RESTART, .backoff_min_ms = 10};
    ukko_actor_t *a = spawn_rec(sys, r, &o);
    for (int i = 1; i <= 6; i++) {
        seqmsg_t m = seq(0, i);
        cr_assert_eq(ukko_actor_send(a, T_SEQ, &m, sizeof(m)), 0);
    }
    WAIT_FOR(atomic_load(&r->count) == 6, 5000);
    cr_assert_eq(atomic_load(&r->count), 6, "the mailbox survives a restart: %lld of 6 handled",
                 (long long)atomic_load(&r->count));
    cr_assert_eq(atomic_load(&r->inits), 2, "init ran %lld times, expected spawn + one restart",
                 (long long)atomic_load(&r->inits));
    cr_assert_eq(atomic_load(&r->frees), 1, "the old state was freed before the restart");
    cr_assert(ukko_actor_alive(a));
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 16);
    ukko_actor_system_metrics(&b, sys);
    cr_assert(strstr(b.data, "ukko_actor_restarts_total 1\n"), "metrics:\n%s", b.data);
    ukko_buf_destroy(&b);
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

Test(actor, failing_handler_stops_when_told_to, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    rec_t *r = rec_new();
    atomic_store(&r->fail_on, 2);
    ukko_spawn_opts_t o = {.on_failure = UKKO_SUPERVISE_STOP};
    ukko_actor_t *a = spawn_rec(sys, r, &o);
    for (int i = 1; i <= 5; i++) {
        seqmsg_t m = seq(0, i);
        ukko_actor_send(a, T_SEQ, &m, sizeof(m));
    }
    WAIT_FOR(!ukko_actor_alive(a), 5000);
    cr_assert_not(ukko_actor_alive(a), "an actor supervised with STOP stops on failure");
    cr_assert_eq(atomic_load(&r->count), 2, "nothing after the failing message is handled");
    cr_assert_eq(atomic_load(&r->frees), 1);
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

Test(actor, max_restarts_then_stop, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    rec_t *r = rec_new();
    atomic_store(&r->fail_on, 0); /* every message seq 0 fails */
    ukko_spawn_opts_t o = {.backoff_min_ms = 1, .backoff_max_ms = 4, .max_restarts = 2};
    ukko_actor_t *a = spawn_rec(sys, r, &o);
    for (int i = 0; i < 5; i++) {
        seqmsg_t m = seq(9, 0);
        ukko_actor_send(a, T_SEQ, &m, sizeof(m));
    }
    WAIT_FOR(!ukko_actor_alive(a), 5000);
    cr_assert_not(ukko_actor_alive(a), "3 consecutive failures with max_restarts 2 stop it");
    cr_assert_eq(atomic_load(&r->inits), 3, "spawn + 2 restarts, saw %lld inits",
                 (long long)atomic_load(&r->inits));
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
    free(r);
}

static int failing_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    (void)ctx;
    (void)state;
    (void)arg;
    return UKKO_EPROTO;
}

Test(actor, spawn_returns_the_init_error, .timeout = 10)
{
    ukko_actor_system_t *sys = test_system(NULL);
    ukko_behaviour_t b = rec_behaviour;
    b.init = failing_init;
    ukko_actor_t *a = (ukko_actor_t *)1;
    cr_assert_eq(ukko_actor_spawn(sys, &b, NULL, &a), UKKO_EPROTO);
    cr_assert_null(a);
    ukko_spawn_opts_t o = {.dispatcher = "no-such"};
    cr_assert_eq(ukko_actor_spawn(sys, &rec_behaviour, &o, &a), UKKO_ENOENT);
    ukko_actor_system_free(sys);
}

/* Relay: forwards every message to the actor in its arg with a plain send;
 * the trace context must follow. */
typedef struct trace_arg {
    ukko_actor_t *next;
    char seen[64];
    _Atomic int done;
} trace_arg_t;

static int relay_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    trace_arg_t *t = *(trace_arg_t **)state;
    if (t->next)
        return ukko_actor_send(t->next, msg->type, msg->data, msg->len);
    if (ukko_msg_traceparent(msg, t->seen, sizeof(t->seen)) != 0)
        strcpy(t->seen, "none");
    atomic_store(&t->done, 1);
    return 0;
}

static const ukko_behaviour_t relay_behaviour = {
    .state_size = sizeof(void *), .init = test_ptr_init, .handle = relay_handle};

Test(actor, traceparent_travels_with_messages, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    trace_arg_t last = {0}, first = {0};
    ukko_actor_t *b = NULL, *a = NULL;
    ukko_spawn_opts_t o = {.arg = &last};
    cr_assert_eq(ukko_actor_spawn(sys, &relay_behaviour, &o, &b), 0);
    first.next = b;
    o.arg = &first;
    cr_assert_eq(ukko_actor_spawn(sys, &relay_behaviour, &o, &a), 0);
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    ukko_send_t s = {.type = 5, .data = "x", .len = 1, .traceparent = tp};
    cr_assert_eq(ukko_actor_tell(a, &s), 0);
    WAIT_FOR(atomic_load(&last.done), 5000);
    cr_assert_str_eq(last.seen, tp, "the second hop saw \"%s\"", last.seen);
    s.traceparent = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    cr_assert_eq(ukko_actor_tell(a, &s), UKKO_EINVAL, "an all-zero trace-id is invalid");
    s.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
    cr_assert_eq(ukko_actor_tell(a, &s), UKKO_EINVAL, "a traceparent without flags is invalid");
    s.traceparent = NULL;
    s.type = UKKO_MSG_TERMINATED;
    cr_assert_eq(ukko_actor_tell(a, &s), UKKO_EINVAL, "runtime types cannot be sent");
    ukko_actor_release(a);
    ukko_actor_release(b);
    ukko_actor_system_free(sys);
}

/* A send that passed the alive check just before its actor died lands in
 * the mailbox after die emptied it. If that message holds a reference to
 * the actor (sent with .from == to, or a timer's, or an ask to oneself),
 * leaving it queued until the struct is freed is a cycle: the actor, and
 * then its system, are never freed. It must be dropped at once. The late
 * push is made here directly, as the losing sender makes it. */
static _Atomic int late_freed;
static void late_free(void *p)
{
    atomic_fetch_add(&late_freed, 1);
    free(p);
}

Test(actor, a_message_landing_after_the_stop_is_dropped_at_once, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    rec_t *r = rec_new();
    ukko_actor_t *a = spawn_rec(sys, r, NULL);
    cr_assert_eq(ukko_actor_stop(a), 0);
    /* Dead, and its life reference gone: only ours is left. */
    WAIT_FOR(!ukko_actor_alive(a) && atomic_load(&a->refs) == 1, 5000);
    cr_assert_eq(atomic_load(&a->refs), 1, "a stopped actor holds %d references, expected ours",
                 atomic_load(&a->refs));
    ukko__env_t *e = ukko__env_alloc(0);
    e->kind = ENV_USER;
    e->msg.type = T_SEQ;
    e->msg.data = malloc(16);
    e->msg.len = 16;
    e->free_fn = late_free;
    e->flags |= ENV_OWNED;
    ukko_actor_retain(a);
    e->msg.sender = a; /* .from == to */
    atomic_store(&late_freed, 0);
    ukko__actor_push(a, e);
    cr_assert_eq(atomic_load(&a->refs), 1,
                 "a message from the actor to itself, pushed after it stopped, still holds it "
                 "(%d references, expected ours only)",
                 atomic_load(&a->refs));
    cr_assert_eq(atomic_load(&late_freed), 1, "its handed-over payload was freed %d times",
                 atomic_load(&late_freed));
    cr_assert_eq(atomic_load(&r->count), 0, "a dead actor handled a message");
    ukko_actor_release(a);
    ukko_actor_system_stop(sys, UKKO_SHUTDOWN_DROP, 5000);
    cr_assert_eq(atomic_load(&sys->refs), 1,
                 "the stopped system is held by %d actor struct(s) that were never freed",
                 atomic_load(&sys->refs) - 1);
    ukko_actor_system_free(sys);
    free(r);
}

/* ukko_actor_batch_begin/_end (the Kafka feed's drain): the messages are in
 * the mailboxes at once, the turns wait for _end, and every one comes. */
Test(actor, a_batch_of_tells_runs_at_its_end, .timeout = 30)
{
    ukko_actor_system_t *sys = test_system("{\"default\": {\"parallelism-min\": 2}}");
    enum { N = 40 };
    rec_t *r = rec_new();
    ukko_actor_t *a[N];
    for (int i = 0; i < N; i++)
        a[i] = spawn_rec(sys, r, NULL);
    ukko_actor_batch_begin();
    ukko_actor_batch_begin(); /* nests: only the outer _end publishes */
    for (int i = 0; i < N; i++)
        for (int k = 1; k <= 3; k++) {
            seqmsg_t m = seq(i, k); /* N < MAX_SENDERS */
            cr_assert_eq(ukko_actor_send(a[i], T_SEQ, &m, sizeof(m)), 0);
        }
    ukko_actor_batch_end();
    /* Held actors are in no run queue, so nothing can have run yet. */
    cr_assert_eq(atomic_load(&r->count), 0, "%lld handled inside the batch",
                 (long long)atomic_load(&r->count));
    ukko_actor_batch_end();
    WAIT_FOR(atomic_load(&r->count) == 3 * N, 10000);
    cr_assert_eq(atomic_load(&r->count), 3 * N, "handled %lld of %d after the batch ended",
                 (long long)atomic_load(&r->count), 3 * N);
    cr_assert_eq(atomic_load(&r->order_errors), 0, "order broken within an actor");
    ukko_actor_batch_end(); /* an unmatched _end is harmless */
    for (int i = 0; i < N; i++)
        ukko_actor_release(a[i]);
    ukko_actor_system_free(sys);
    free(r);
}

/* An actor stopped while its turn is held by a batch (or spawned inside
 * one) is in no run queue until _end: it must still get the turn that
 * stops it, run its free once, and leave nothing for the system's stop. */
Test(actor, an_actor_stopped_inside_a_batch_stops_at_its_end, .timeout = 30)
{
    ukko_actor_system_t *sys = test_system("{\"default\": {\"parallelism-min\": 2}}");
    enum { N = 8 };
    rec_t *r = rec_new();
    ukko_actor_t *a[N + 1];
    for (int i = 0; i < N; i++)
        a[i] = spawn_rec(sys, r, NULL);
    ukko_actor_batch_begin();
    for (int i = 0; i < N; i++) {
        seqmsg_t m = seq(i, 1);
        cr_assert_eq(ukko_actor_send(a[i], T_SEQ, &m, sizeof(m)), 0);
        cr_assert_eq(ukko_actor_stop(a[i]), 0, "actor %d stops while held", i);
    }
    a[N] = spawn_rec(sys, r, NULL); /* born inside the batch */
    cr_assert_eq(ukko_actor_stop(a[N]), 0);
    ukko_actor_batch_end();
    WAIT_FOR(atomic_load(&r->frees) == N + 1, 10000);
    cr_assert_eq(atomic_load(&r->frees), N + 1, "%d of %d actors stopped after the batch",
                 (int)atomic_load(&r->frees), N + 1);
    for (int i = 0; i <= N; i++) {
        cr_assert_not(ukko_actor_alive(a[i]), "actor %d still alive", i);
        ukko_actor_release(a[i]);
    }
    cr_assert_eq(ukko_actor_system_stop(sys, UKKO_SHUTDOWN_DRAIN, 5000), 0);
    ukko_actor_system_free(sys);
    free(r);
}
