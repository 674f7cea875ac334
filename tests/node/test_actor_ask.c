/* test_actor_ask.c: ask and reply (node/actor_ask.c): a reply arrives as a
 * message with the ask's id, a missing reply becomes UKKO_MSG_ASK_TIMEOUT,
 * and a late reply is refused, never delivered twice. */
#include "actor_test.h"

#include <pthread.h>

#define T_QUESTION 10
#define T_ANSWER 11

typedef struct asker {
    ukko_actor_t *to;
    int64_t timeout_ms;
    uint64_t id;
    _Atomic int replies, timeouts, wrong_id;
    _Atomic int64_t answer;
} asker_t;

static int asker_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    asker_t *k = arg;
    *(asker_t **)state = k;
    int64_t q = 20;
    ukko_send_t s = {.type = T_QUESTION, .data = &q, .len = sizeof(q)};
    return ukko_actor_ask(ctx, k->to, &s, k->timeout_ms, &k->id);
}

static int asker_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    asker_t *k = *(asker_t **)state;
    if (msg->id != k->id)
        atomic_fetch_add(&k->wrong_id, 1);
    if (msg->type == UKKO_MSG_ASK_TIMEOUT) {
        atomic_fetch_add(&k->timeouts, 1);
    } else if (msg->type == T_ANSWER) {
        int64_t v;
        memcpy(&v, msg->data, sizeof(v));
        atomic_store(&k->answer, v);
        atomic_fetch_add(&k->replies, 1);
    }
    return 0;
}

static const ukko_behaviour_t asker_behaviour = {
    .state_size = sizeof(void *), .init = asker_init, .handle = asker_handle};

static int doubler_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)state;
    int64_t v;
    memcpy(&v, msg->data, sizeof(v));
    v *= 2;
    return ukko_actor_reply(msg, T_ANSWER, &v, sizeof(v));
}

static const ukko_behaviour_t doubler_behaviour = {.handle = doubler_handle};

/* Keeps the reply token of the last question for the test to use. */
static _Atomic(ukko_reply_t *) kept;
static int keeper_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)state;
    atomic_store(&kept, ukko_actor_reply_token(msg));
    return 0;
}

static const ukko_behaviour_t keeper_behaviour = {.handle = keeper_handle};

Test(actor_ask, reply_arrives_with_the_ask_id, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    ukko_actor_t *d = NULL, *a = NULL;
    cr_assert_eq(ukko_actor_spawn(sys, &doubler_behaviour, NULL, &d), 0);
    asker_t k = {.to = d, .timeout_ms = 10000};
    ukko_spawn_opts_t o = {.arg = &k};
    cr_assert_eq(ukko_actor_spawn(sys, &asker_behaviour, &o, &a), 0);
    WAIT_FOR(atomic_load(&k.replies) == 1, 5000);
    cr_assert_eq(atomic_load(&k.replies), 1);
    cr_assert_eq(atomic_load(&k.answer), 40, "the reply's payload: %lld", (long long)atomic_load(&k.answer));
    cr_assert_eq(atomic_load(&k.wrong_id), 0, "the reply carries the ask id");
    cr_assert_eq(atomic_load(&k.timeouts), 0);
    ukko_actor_release(a);
    ukko_actor_release(d);
    ukko_actor_system_free(sys);
}

Test(actor_ask, no_reply_times_out_and_a_late_reply_is_refused, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    ukko_actor_t *keeper = NULL, *a = NULL;
    atomic_store(&kept, NULL);
    cr_assert_eq(ukko_actor_spawn(sys, &keeper_behaviour, NULL, &keeper), 0);
    asker_t k = {.to = keeper, .timeout_ms = 50};
    ukko_spawn_opts_t o = {.arg = &k};
    cr_assert_eq(ukko_actor_spawn(sys, &asker_behaviour, &o, &a), 0);
    WAIT_FOR(atomic_load(&k.timeouts) == 1, 5000);
    cr_assert_eq(atomic_load(&k.timeouts), 1, "expected one UKKO_MSG_ASK_TIMEOUT");
    WAIT_FOR(atomic_load(&kept) != NULL, 5000);
    ukko_reply_t *r = atomic_load(&kept);
    cr_assert_not_null(r, "the question reached the keeper");
    int64_t v = 1;
    /* From this (non-actor) thread, after the timeout: refused. */
    cr_assert_eq(ukko_reply_send(r, T_ANSWER, &v, sizeof(v)), UKKO_ETIMEDOUT);
    cr_assert_eq(atomic_load(&k.replies), 0, "a reply after the timeout is never delivered");
    cr_assert_eq(atomic_load(&k.wrong_id), 0);
    ukko_actor_release(a);
    ukko_actor_release(keeper);
    ukko_actor_system_free(sys);
}

Test(actor_ask, ask_to_a_stopped_actor_fails_at_once, .timeout = 20)
{
    ukko_actor_system_t *sys = test_system(NULL);
    ukko_actor_t *d = NULL, *a = NULL;
    cr_assert_eq(ukko_actor_spawn(sys, &doubler_behaviour, NULL, &d), 0);
    ukko_actor_stop(d);
    WAIT_FOR(!ukko_actor_alive(d), 5000);
    asker_t k = {.to = d, .timeout_ms = 50};
    ukko_spawn_opts_t o = {.arg = &k};
    cr_assert_eq(ukko_actor_spawn(sys, &asker_behaviour, &o, &a), UKKO_ENOENT,
                 "init's failed ask is spawn's error");
    ukko_actor_release(d);
    ukko_actor_system_free(sys);
}

/* An ask that fails (here: to a stopped actor) returns the error and no
 * message ever comes of it; one that succeeds brings exactly one. Asks with
 * a 1 ms timeout from a thread that busy threads keep preempting: the
 * timeout may come due between arming and the send's failure. */
#define T_GO 12
#define T_SENTINEL 13

typedef struct failer {
    ukko_actor_t *to;
    int asks;
    _Atomic int errors, oks, timeouts, others, done;
} failer_t;

static int failer_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    failer_t *f = *(failer_t **)state;
    if (msg->type == T_GO) {
        int64_t q = 1;
        ukko_send_t s = {.type = T_QUESTION, .data = &q, .len = sizeof(q)};
        for (int i = 0; i < f->asks; i++) {
            uint64_t id;
            if (ukko_actor_ask(ctx, f->to, &s, 1, &id) < 0)
                atomic_fetch_add(&f->errors, 1);
            else
                atomic_fetch_add(&f->oks, 1);
        }
        /* Due after every ask's timeout: handled after all of them. */
        return ukko_actor_timer_once(ctx, 1, T_SENTINEL, 20);
    }
    if (msg->type == UKKO_MSG_ASK_TIMEOUT)
        atomic_fetch_add(&f->timeouts, 1);
    else if (msg->type == T_SENTINEL)
        atomic_store(&f->done, 1);
    else
        atomic_fetch_add(&f->others, 1);
    return 0;
}

static const ukko_behaviour_t failer_behaviour = {
    .state_size = sizeof(void *), .init = test_ptr_init, .handle = failer_handle};

static _Atomic int spin_stop;
static void *spin(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&spin_stop, memory_order_relaxed))
        ;
    return NULL;
}

Test(actor_ask, a_failed_ask_brings_no_message, .timeout = 120)
{
    ukko_actor_system_t *sys = test_system(NULL);
    ukko_actor_t *d = NULL, *a = NULL;
    cr_assert_eq(ukko_actor_spawn(sys, &doubler_behaviour, NULL, &d), 0);
    ukko_actor_stop(d);
    WAIT_FOR(!ukko_actor_alive(d), 5000);
    failer_t f = {.to = d, .asks = 300000};
    ukko_spawn_opts_t o = {.arg = &f};
    cr_assert_eq(ukko_actor_spawn(sys, &failer_behaviour, &o, &a), 0);
    enum { SPINNERS = 3 };
    pthread_t t[SPINNERS];
    atomic_store(&spin_stop, 0);
    for (int i = 0; i < SPINNERS; i++)
        pthread_create(&t[i], NULL, spin, NULL);
    cr_assert_eq(ukko_actor_send(a, T_GO, NULL, 0), 0);
    WAIT_FOR(atomic_load(&f.done), 60000);
    atomic_store(&spin_stop, 1);
    for (int i = 0; i < SPINNERS; i++)
        pthread_join(t[i], NULL);
    cr_assert(atomic_load(&f.done), "the asks never finished");
    cr_assert_eq(atomic_load(&f.errors), f.asks, "%d of %d asks to a stopped actor failed",
                 atomic_load(&f.errors), f.asks);
    cr_assert_eq(atomic_load(&f.timeouts), atomic_load(&f.oks),
                 "%d asks failed with an error and %d succeeded, but %d UKKO_MSG_ASK_TIMEOUT "
                 "arrived: a failed ask also timed out",
                 atomic_load(&f.errors), atomic_load(&f.oks), atomic_load(&f.timeouts));
    cr_assert_eq(atomic_load(&f.others), 0);
    ukko_actor_release(a);
    ukko_actor_release(d);
    ukko_actor_system_free(sys);
}
