/* test_actor_timer.c: actor timers (node/actor_timer.c): once, periodic,
 * replace by key, and cancel: after cancel returns no message of the key is
 * handled, even one already queued. */
#include "actor_test.h"

#include "actor_internal.h" /* the system's refcount */

#define K_ONCE 1
#define K_TICK 2
#define K_LATER 3
#define T_TIMER 20
#define T_CANCEL 21

typedef struct tstate {
    _Atomic int once, ticks, after_cancel, later;
    _Atomic int cancelled;
    int cancel_rc;
} tstate_t;

static int timer_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    *(tstate_t **)state = arg;
    int rc = ukko_actor_timer_once(ctx, K_ONCE, T_TIMER, 20);
    if (rc == 0)
        rc = ukko_actor_timer_periodic(ctx, K_TICK, T_TIMER, 5);
    return rc;
}

static int timer_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    tstate_t *t = *(tstate_t **)state;
    if (msg->type == T_CANCEL) {
        t->cancel_rc = ukko_actor_timer_cancel(ctx, K_TICK);
        atomic_store(&t->cancelled, 1);
        /* A sentinel well after several periods: by then any tick that
         * slipped through would have shown up. */
        return ukko_actor_timer_once(ctx, K_LATER, T_TIMER, 60);
    }
    if (msg->type != T_TIMER)
        return 0;
    switch (msg->id) {
    case K_ONCE: atomic_fetch_add(&t->once, 1); break;
    case K_TICK:
        if (atomic_load(&t->cancelled))
            atomic_fetch_add(&t->after_cancel, 1);
        else
            atomic_fetch_add(&t->ticks, 1);
        break;
    case K_LATER: atomic_fetch_add(&t->later, 1); break;
    }
    return 0;
}

static const ukko_behaviour_t timer_behaviour = {
    .state_size = sizeof(void *), .init = timer_init, .handle = timer_handle};

Test(actor_timer, once_periodic_and_cancel, .timeout = 30)
{
    ukko_actor_system_t *sys = test_system(NULL);
    tstate_t t = {0};
    ukko_actor_t *a = NULL;
    ukko_spawn_opts_t o = {.arg = &t};
    cr_assert_eq(ukko_actor_spawn(sys, &timer_behaviour, &o, &a), 0);
    WAIT_FOR(atomic_load(&t.ticks) >= 5 && atomic_load(&t.once) == 1, 10000);
    cr_assert_geq(atomic_load(&t.ticks), 5, "periodic timer ticked %d times", atomic_load(&t.ticks));
    cr_assert_eq(atomic_load(&t.once), 1, "single timer fired %d times", atomic_load(&t.once));
    cr_assert_eq(ukko_actor_send(a, T_CANCEL, NULL, 0), 0);
    WAIT_FOR(atomic_load(&t.later) == 1, 10000);
    cr_assert_eq(atomic_load(&t.later), 1, "the sentinel timer fired");
    cr_assert_eq(t.cancel_rc, 0, "cancel found the key");
    cr_assert_eq(atomic_load(&t.after_cancel), 0, "%d ticks were handled after cancel",
                 atomic_load(&t.after_cancel));
    cr_assert_eq(atomic_load(&t.once), 1, "a single timer fires once");
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
}

static int restart_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    *(tstate_t **)state = arg;
    /* The same key again replaces the first: only one fires. */
    int rc = ukko_actor_timer_once(ctx, K_ONCE, T_TIMER, 10000);
    return rc ? rc : ukko_actor_timer_once(ctx, K_ONCE, T_TIMER, 10);
}

static const ukko_behaviour_t replace_behaviour = {
    .state_size = sizeof(void *), .init = restart_init, .handle = timer_handle};

Test(actor_timer, same_key_replaces, .timeout = 30)
{
    ukko_actor_system_t *sys = test_system(NULL);
    tstate_t t = {0};
    ukko_actor_t *a = NULL;
    ukko_spawn_opts_t o = {.arg = &t};
    cr_assert_eq(ukko_actor_spawn(sys, &replace_behaviour, &o, &a), 0);
    WAIT_FOR(atomic_load(&t.once) == 1, 5000);
    cr_assert_eq(atomic_load(&t.once), 1, "the replacing timer fired after 10 ms");
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
}

/* Actors with a 1 ms periodic timer, stopped while it fires: a tick that
 * lands after the actor emptied its mailbox at death holds the timer, which
 * holds the actor. Every actor struct, and so the system, must still be
 * freed (ASan's leak check sees the rest). */
static int ticker_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    *(_Atomic int **)state = arg;
    return ukko_actor_timer_periodic(ctx, K_TICK, T_TIMER, 1);
}

static int ticker_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    atomic_store(*(_Atomic int **)state, 1);
    return 0;
}

static const ukko_behaviour_t ticker_behaviour = {
    .state_size = sizeof(void *), .init = ticker_init, .handle = ticker_handle};

Test(actor_timer, stopped_actors_with_periodic_timers_are_freed, .timeout = 120)
{
    ukko_actor_system_t *sys = test_system(NULL);
    enum { N = 100, ROUNDS = 20 };
    ukko_actor_t *a[N];
    _Atomic int ticked[N];
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            atomic_init(&ticked[i], 0);
            ukko_spawn_opts_t o = {.arg = &ticked[i]};
            cr_assert_eq(ukko_actor_spawn(sys, &ticker_behaviour, &o, &a[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            WAIT_FOR(atomic_load(&ticked[i]), 5000);
            cr_assert(atomic_load(&ticked[i]), "round %d: actor %d never ticked", round, i);
        }
        for (int i = 0; i < N; i++) {
            ukko_actor_stop(a[i]);
            ukko_actor_release(a[i]);
        }
    }
    cr_assert_eq(ukko_actor_system_stop(sys, UKKO_SHUTDOWN_DROP, 10000), 0);
    cr_assert_eq(atomic_load(&sys->refs), 1,
                 "%d stopped actor struct(s) were never freed (each holds the system)",
                 atomic_load(&sys->refs) - 1);
    ukko_actor_system_free(sys);
}

static int huge_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    (void)state;
    int *rcs = arg;
    rcs[0] = ukko_actor_timer_once(ctx, K_ONCE, T_TIMER, INT64_MAX);
    rcs[1] = ukko_actor_timer_periodic(ctx, K_TICK, T_TIMER, INT64_MAX / 2);
    rcs[2] = ukko_actor_timer_once(ctx, K_LATER, T_TIMER, -1);
    return 0;
}

static const ukko_behaviour_t huge_behaviour = {
    .state_size = sizeof(void *), .init = huge_init, .handle = timer_handle};

/* A due time past the clock's range would overflow: refused, not wrapped. */
Test(actor_timer, absurd_delays_are_refused, .timeout = 30)
{
    ukko_actor_system_t *sys = test_system(NULL);
    int rcs[3] = {1, 1, 1};
    ukko_actor_t *a = NULL;
    ukko_spawn_opts_t o = {.arg = rcs};
    cr_assert_eq(ukko_actor_spawn(sys, &huge_behaviour, &o, &a), 0);
    cr_assert_eq(rcs[0], UKKO_EINVAL, "INT64_MAX ms delay: %d", rcs[0]);
    cr_assert_eq(rcs[1], UKKO_EINVAL, "INT64_MAX/2 ms interval: %d", rcs[1]);
    cr_assert_eq(rcs[2], UKKO_EINVAL, "negative delay: %d", rcs[2]);
    ukko_actor_release(a);
    ukko_actor_system_free(sys);
}
