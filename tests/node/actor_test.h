/* actor_test.h: helpers shared by the actor runtime's tests: a system from a
 * JSON dispatchers config, a recording actor, and poll-with-deadline. */
#ifndef UKKO_ACTOR_TEST_H
#define UKKO_ACTOR_TEST_H

#include "ukko.h"

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline void poll_pause(void)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* Polls cond until it holds or ms pass; the caller asserts afterwards and
 * says what it saw. */
#define WAIT_FOR(cond, ms)                                          \
    do {                                                            \
        int64_t deadline_ = ukko_now_ms() + (ms);                   \
        while (!(cond) && ukko_now_ms() < deadline_)                \
            poll_pause();                                           \
    } while (0)

static inline ukko_actor_system_t *test_system(const char *json)
{
    ukko_actor_config_t ac = {.dispatchers = json ? cJSON_Parse(json) : NULL};
    if (json)
        cr_assert_not_null(ac.dispatchers, "test config is not JSON: %s", json);
    ukko_actor_system_t *sys = NULL;
    int rc = ukko_actor_system_new(&ac, NULL, &sys);
    cJSON_Delete(ac.dispatchers);
    cr_assert_eq(rc, 0, "ukko_actor_system_new: %s", ukko_strerror(rc));
    return sys;
}

/* init for behaviours whose state is one pointer: the spawn arg. */
static inline int test_ptr_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    (void)ctx;
    *(void **)state = arg;
    return 0;
}

#define MAX_SENDERS 64

/* What a recording actor saw; shared with the test thread via atomics. */
typedef struct rec {
    _Atomic int64_t count;
    _Atomic int64_t sum;
    _Atomic int64_t order_errors;
    _Atomic int64_t last[MAX_SENDERS]; /* per sender: last sequence number seen */
    _Atomic int64_t inits, frees;
    _Atomic uint32_t last_type;
    _Atomic uint64_t last_id;
    _Atomic int64_t fail_on; /* handle returns an error for this value */
} rec_t;

typedef struct seqmsg {
    int32_t sender;
    int32_t pad;
    int64_t seq;
} seqmsg_t;

typedef struct rec_state {
    rec_t *rec;
} rec_state_t;

static inline int rec_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    (void)ctx;
    rec_state_t *s = state;
    s->rec = arg;
    atomic_fetch_add(&s->rec->inits, 1);
    return 0;
}

static inline void rec_free(void *state, void *arg)
{
    (void)arg;
    rec_state_t *s = state;
    atomic_fetch_add(&s->rec->frees, 1);
}

static inline int rec_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    rec_t *r = ((rec_state_t *)state)->rec;
    atomic_store(&r->last_type, msg->type);
    atomic_store(&r->last_id, msg->id);
    if (msg->len == sizeof(seqmsg_t)) {
        seqmsg_t m;
        memcpy(&m, msg->data, sizeof(m));
        if (m.sender >= 0 && m.sender < MAX_SENDERS) {
            if (atomic_load(&r->last[m.sender]) + 1 != m.seq)
                atomic_fetch_add(&r->order_errors, 1);
            atomic_store(&r->last[m.sender], m.seq);
        }
        atomic_fetch_add(&r->sum, m.seq);
        if (m.seq == atomic_load(&r->fail_on)) {
            atomic_fetch_add(&r->count, 1);
            return UKKO_EINVAL;
        }
    }
    atomic_fetch_add(&r->count, 1);
    return 0;
}

static const ukko_behaviour_t rec_behaviour = {
    .state_size = sizeof(rec_state_t),
    .init = rec_init,
    .handle = rec_handle,
    .free = rec_free,
};

static inline ukko_actor_t *spawn_rec(ukko_actor_system_t *sys, rec_t *r,
                                      const ukko_spawn_opts_t *base)
{
    ukko_spawn_opts_t o = base ? *base : (ukko_spawn_opts_t){0};
    o.arg = r;
    ukko_actor_t *a = NULL;
    int rc = ukko_actor_spawn(sys, &rec_behaviour, &o, &a);
    cr_assert_eq(rc, 0, "spawn: %s", ukko_strerror(rc));
    return a;
}

static inline rec_t *rec_new(void)
{
    rec_t *r = calloc(1, sizeof(*r));
    atomic_store(&r->fail_on, -1);
    return r;
}

#endif
