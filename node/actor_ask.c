/* actor_ask.c: ask and reply. An ask is a record shared by the request
 * message, the timeout entry and reply tokens; the first of reply and
 * timeout to flip `done` delivers its message to the asker, the other does
 * nothing. Any thread may reply (with a token); the timeout fires on the
 * timer thread. Invariant: the asker gets exactly one message per ask that
 * returned 0 and none for one that failed (the timeout is armed only after
 * the request went out). */
#include "actor_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct ukko_reply {
    ukko__tentry_t t;
    _Atomic int refs;
    _Atomic int done; /* 0 pending, 1 answered or timed out */
    ukko_actor_t *asker; /* a reference */
    ukko_actor_system_t *sys;
    uint64_t id;
};

void ukko__ask_unref(ukko__ask_t *k)
{
    /* acq_rel: the last holder sees the others' writes before freeing. */
    if (atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
        return;
    ukko_actor_release(k->asker);
    free(k);
}

/* Whoever flips done first answers. Pairs with the other side's exchange. */
static bool claim(ukko__ask_t *k)
{
    return atomic_exchange_explicit(&k->done, 1, memory_order_acq_rel) == 0;
}

static void deliver(ukko__ask_t *k, uint32_t type, const void *data, size_t len)
{
    ukko__env_t *e = ukko__env_alloc(len);
    e->msg.type = type;
    e->msg.len = (uint32_t)len;
    if (len) {
        memcpy(e->inl, data, len);
        e->msg.data = e->inl;
    }
    e->msg.id = k->id;
    e->kind = ENV_REPLY;
    ukko__send_env(k->asker, e);
}

static void on_timeout(ukko__tentry_t *t)
{
    ukko__ask_t *k = (ukko__ask_t *)t;
    if (claim(k))
        deliver(k, UKKO_MSG_ASK_TIMEOUT, NULL, 0);
    ukko__ask_unref(k); /* the heap's */
}

static void on_drop(ukko__tentry_t *t)
{
    ukko__ask_unref((ukko__ask_t *)t);
}

int ukko_actor_ask(ukko_actor_ctx_t *ctx, ukko_actor_t *to, const ukko_send_t *s,
                   int64_t timeout_ms, uint64_t *ask_id)
{
    if (!ctx || !to || !s || !ask_id || timeout_ms <= 0)
        return UKKO_EINVAL;
    ukko_actor_t *self = ctx->self;
    ukko__ask_t *k = calloc(1, sizeof(*k));
    if (!k)
        return UKKO_ENOMEM;
    k->t.idx = -1;
    k->t.fire = on_timeout;
    k->t.drop = on_drop;
    atomic_init(&k->refs, 3); /* the request's, the heap's, and ours until armed */
    ukko_actor_retain(self);
    k->asker = self;
    k->sys = self->sys;
    k->id = atomic_fetch_add_explicit(&self->sys->next_ask, 1, memory_order_relaxed) + 1;
    int64_t now = ukko_now_ms();
    int64_t due = timeout_ms > INT64_MAX - now ? INT64_MAX : now + timeout_ms;
    int rc = ukko__tell(to, s, k);
    if (rc < 0) {
        /* Nothing was sent and nothing armed: no message will come of it. */
        ukko_actor_release(self);
        free(k);
        return rc;
    }
    /* Armed only once the request is out, so that an ask that fails can
     * never also time out: an error, or exactly one message. */
    ukko__timer_arm(self->sys, &k->t, due);
    /* A reply that came before the entry was armed found nothing to cancel.
     * Pairs with the exchange in claim: the timer lock orders the reply's
     * cancel and our arm, so either it finds the entry or we see done. */
    if (atomic_load_explicit(&k->done, memory_order_acquire) &&
        ukko__timer_cancel(self->sys, &k->t))
        ukko__ask_unref(k); /* the heap's */
    *ask_id = k->id;
    ukko__ask_unref(k); /* ours: the entry may have fired and dropped its own */
    return 0;
}

static ukko__ask_t *ask_of(const ukko_msg_t *request)
{
    const ukko__env_t *e =
        (const ukko__env_t *)((const char *)request - offsetof(ukko__env_t, msg));
    return e->kind == ENV_USER ? e->ext : NULL;
}

ukko_reply_t *ukko_actor_reply_token(const ukko_msg_t *request)
{
    ukko__ask_t *k = request ? ask_of(request) : NULL;
    if (k)
        atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
    return k;
}

void ukko_reply_free(ukko_reply_t *r)
{
    if (r)
        ukko__ask_unref(r);
}

int ukko_reply_send(ukko_reply_t *r, uint32_t type, const void *data, size_t len)
{
    if (!r)
        return UKKO_EINVAL;
    int rc = 0;
    if (type >= UKKO_MSG_SYSTEM || len > UINT32_MAX || (len && !data)) {
        rc = UKKO_EINVAL;
    } else if (!claim(r)) {
        rc = UKKO_ETIMEDOUT;
    } else {
        if (ukko__timer_cancel(r->sys, &r->t))
            ukko__ask_unref(r); /* the heap's */
        deliver(r, type, data, len);
    }
    ukko__ask_unref(r);
    return rc;
}

int ukko_actor_reply(const ukko_msg_t *request, uint32_t type, const void *data, size_t len)
{
    ukko_reply_t *r = ukko_actor_reply_token(request);
    if (!r)
        return UKKO_ENOENT;
    return ukko_reply_send(r, type, data, len);
}
