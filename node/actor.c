/* actor.c: actors: spawn, send, the turn that handles messages, stop, death
 * watch, supervision (restart with backoff or stop) and reference counts.
 * Threads: sends and stops from any thread; a turn runs on one thread at a
 * time (whoever holds the schedule token of libponyrt's mailbox protocol:
 * mailbox.c). Invariant: an actor is in at most one run queue, and only
 * while alive; a dead actor's mailbox holds nothing (what lands late is
 * dropped by its pusher); the struct is freed after its last reference. */
#include "actor_internal.h"
#include "trace_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ trace context */

/* The envelope keeps trace-id(16) parent-id(8) flags(1) (ENV_TRACE). */
static int trace_parse(const char *s, uint8_t out[25])
{
    ukko_trace_ctx_t c;
    int rc = ukko_trace_parse(s, strlen(s), &c);
    if (rc < 0)
        return rc;
    memcpy(out, c.trace_id, 16);
    memcpy(out + 16, c.span_id, 8);
    out[24] = c.flags;
    return 0;
}

int ukko__actor_env_trace(ukko_trace_ctx_t *out)
{
    const ukko__env_t *e = ukko__tls.env;
    if (!e || !(e->flags & ENV_TRACE))
        return UKKO_ENOENT;
    memcpy(out->trace_id, e->trace, 16);
    memcpy(out->span_id, e->trace + 16, 8);
    out->flags = e->trace[24];
    return 0;
}

int ukko_msg_traceparent(const ukko_msg_t *msg, char *out, size_t outlen)
{
    const ukko__env_t *e = (const ukko__env_t *)((const char *)msg - offsetof(ukko__env_t, msg));
    if (!(e->flags & ENV_TRACE))
        return UKKO_ENOENT;
    if (outlen < 56)
        return UKKO_EINVAL;
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    *p++ = '0';
    *p++ = '0';
    for (int i = 0; i < 25; i++) {
        if (i == 0 || i == 16 || i == 24)
            *p++ = '-';
        *p++ = hex[e->trace[i] >> 4];
        *p++ = hex[e->trace[i] & 15];
    }
    *p = '\0';
    return 0;
}

/* ------------------------------------------------------------ references */

void ukko_actor_retain(ukko_actor_t *a)
{
    /* relaxed: the caller already holds a reference (libponyrt, Linux kref). */
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

static void actor_destroy(ukko_actor_t *a)
{
    ukko_actor_system_t *sys = a->sys;
    ukko__mbox_destroy(&a->mbox);
    free(a->watchers);
    free(a->watching);
    free(a->timers);
    pthread_mutex_destroy(&a->wlock);
    free(a);
    ukko__system_unref(sys);
}

void ukko_actor_release(ukko_actor_t *a)
{
    if (!a)
        return;
    /* acq_rel: the last releaser sees every write made under the others. */
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
        return;
    ukko_actor_system_t *sys = a->sys;
    /* While the system runs, the starvation monitor may still be reading the
     * struct: it is freed after the monitor's next scan (grave_reap). */
    pthread_mutex_lock(&sys->grave_lock);
    bool now = atomic_load_explicit(&sys->stopped, memory_order_relaxed);
    if (!now) {
        a->grave_next = sys->grave;
        sys->grave = a;
    }
    pthread_mutex_unlock(&sys->grave_lock);
    if (now)
        actor_destroy(a);
}

void ukko__grave_reap(ukko_actor_system_t *sys)
{
    pthread_mutex_lock(&sys->grave_lock);
    ukko_actor_t *list = sys->grave;
    sys->grave = NULL;
    bool stopped = atomic_load_explicit(&sys->stopped, memory_order_relaxed);
    pthread_mutex_unlock(&sys->grave_lock);
    ukko_actor_t *keep = NULL;
    while (list) {
        ukko_actor_t *a = list;
        list = a->grave_next;
        bool busy = false;
        for (int i = 0; !stopped && i < sys->ndisp && !busy; i++)
            for (int j = 0; j < sys->disp[i]->nthreads && !busy; j++)
                /* Pairs with the release store of cur in run_turn. */
                busy = atomic_load_explicit(&sys->disp[i]->workers[j].cur,
                                            memory_order_acquire) == a;
        if (busy) {
            a->grave_next = keep;
            keep = a;
        } else {
            actor_destroy(a);
        }
    }
    if (keep) {
        pthread_mutex_lock(&sys->grave_lock);
        ukko_actor_t *last = keep;
        while (last->grave_next)
            last = last->grave_next;
        last->grave_next = sys->grave;
        sys->grave = keep;
        pthread_mutex_unlock(&sys->grave_lock);
    }
}

const char *ukko_actor_name(const ukko_actor_t *a)
{
    return a->name;
}

uint64_t ukko_actor_id(const ukko_actor_t *a)
{
    return a->id;
}

bool ukko_actor_alive(const ukko_actor_t *a)
{
    /* Pairs with the fetch_or in die. */
    return !(atomic_load_explicit(&((ukko_actor_t *)a)->flags, memory_order_acquire) & ACTOR_DEAD);
}

ukko_actor_t *ukko_actor_self(ukko_actor_ctx_t *ctx)
{
    return ctx->self;
}

ukko_actor_system_t *ukko_actor_system(ukko_actor_ctx_t *ctx)
{
    return ctx->self->sys;
}

void ukko_actor_stop_self(ukko_actor_ctx_t *ctx)
{
    ctx->stop_self = true;
}

/* ------------------------------------------------------------ envelopes */

void ukko__env_release(ukko__env_t *e)
{
    if ((e->flags & ENV_OWNED) && e->free_fn)
        e->free_fn(e->msg.data);
    e->flags &= (uint16_t)~ENV_OWNED;
    e->msg.data = NULL;
    if (e->msg.sender) {
        ukko_actor_release(e->msg.sender);
        e->msg.sender = NULL;
    }
    if (e->ext) {
        if (e->kind == ENV_TIMER)
            ukko__atimer_unref(e->ext);
        else
            ukko__ask_unref(e->ext);
        e->ext = NULL;
    }
}

static void env_discard(ukko__env_t *e)
{
    ukko__env_release(e);
    ukko__env_free(e);
}

/* The holder of a dead actor's schedule token (die, or a pusher that found
 * the dead mailbox marked): drops what is queued and marks the mailbox
 * empty, so that a push landing later (its sender checked ACTOR_DEAD just
 * before die set it) finds the mark and drops its message too. Nothing may
 * stay queued in a dead mailbox: a message sent with .from == to, a timer's
 * or an ask's holds a reference back to the actor, and the struct (then the
 * system) would never be freed. Returns the user messages dropped. */
static uint64_t drop_queued(ukko_actor_t *a)
{
    uint64_t dropped = 0;
    for (;;) {
        ukko__env_t *e;
        while ((e = ukko__mbox_pop(&a->mbox))) {
            dropped += e->kind == ENV_USER;
            ukko__env_release(e);
        }
        if (ukko__mbox_markempty(&a->mbox))
            return dropped;
        /* A push between its exchange and its link: it is about to show. */
        sched_yield();
    }
}

/* Out of line: a send that lost the race with die is rare, and the send
 * path (push) stays as short as it was. */
__attribute__((cold, noinline)) static void drop_late(ukko_actor_t *a)
{
    uint64_t dropped = drop_queued(a);
    if (dropped)
        atomic_fetch_add_explicit(&a->sys->dropped_at_stop, dropped, memory_order_relaxed);
}

static inline void push(ukko_actor_t *a, ukko__env_t *e)
{
    if (!ukko__mbox_push(&a->mbox, e))
        return;
    /* We cleared the mark and hold the token. Acquire pairs with die's
     * fetch_or of DEAD, which comes before die marks the mailbox (and our
     * exchange read that mark): a dead actor is seen dead here. */
    if (atomic_load_explicit(&a->flags, memory_order_acquire) & ACTOR_DEAD)
        drop_late(a);
    else
        ukko__schedule(a);
}

void ukko__actor_push(ukko_actor_t *a, ukko__env_t *e)
{
    push(a, e);
}

/* Delivers a runtime envelope (reply, timeout, timer, terminated): not
 * counted against bounds, not refused while the system is closing. */
int ukko__send_env(ukko_actor_t *to, ukko__env_t *e)
{
    /* Pairs with the fetch_or in die: no new messages for the dead (one
     * that loses this race is dropped by ukko__actor_push). */
    if (atomic_load_explicit(&to->flags, memory_order_acquire) & ACTOR_DEAD) {
        env_discard(e);
        return UKKO_ENOENT;
    }
    push(to, e);
    return 0;
}

/* The common path of tell and ask: on success the envelope holds one
 * reference of ext (an ask), on failure nothing of s or ext is kept. */
int ukko__tell(ukko_actor_t *to, const ukko_send_t *s, void *ext)
{
    if (!to || !s || s->type >= UKKO_MSG_SYSTEM || (s->len && !s->data && !s->free_fn))
        return UKKO_EINVAL;
    if (s->len > UINT32_MAX)
        return UKKO_E2BIG;
    uint8_t trace[25];
    bool traced = false;
    if (s->traceparent) {
        if (trace_parse(s->traceparent, trace) < 0)
            return UKKO_EINVAL;
        traced = true;
    } else {
        /* The current span (a child made by this handler) comes before the
         * trace of the message being handled. */
        ukko_trace_ctx_t c;
        if (ukko_trace_current_context(&c) == 0) {
            memcpy(trace, c.trace_id, 16);
            memcpy(trace + 16, c.span_id, 8);
            trace[24] = c.flags;
            traced = true;
        }
    }
    ukko_actor_system_t *sys = to->sys;
    if (!ukko__tls.actor && atomic_load_explicit(&sys->closing, memory_order_relaxed))
        return UKKO_ECANCELED;
    /* Pairs with the fetch_or of ACTOR_STOP/DEAD: a stopping actor drops
     * what it has not handled, so refuse early. */
    if (atomic_load_explicit(&to->flags, memory_order_acquire) & (ACTOR_DEAD | ACTOR_STOP)) {
        atomic_fetch_add_explicit(&sys->dead_letters, 1, memory_order_relaxed);
        return UKKO_ENOENT;
    }
    if (to->capacity) {
        /* Pairs with the consumer's fetch_sub after handling: the count is
         * of messages queued and not yet handled. */
        int64_t n = atomic_fetch_add_explicit(&to->mbox.count, 1, memory_order_relaxed);
        if (n >= to->capacity) {
            atomic_fetch_sub_explicit(&to->mbox.count, 1, memory_order_relaxed);
            return UKKO_EAGAIN;
        }
    }
    ukko__env_t *e = ukko__env_alloc(s->free_fn ? 0 : s->len);
    e->msg.type = s->type;
    e->msg.len = (uint32_t)s->len;
    if (s->free_fn) {
        e->msg.data = (void *)s->data;
        e->free_fn = s->free_fn;
        e->flags |= ENV_OWNED;
    } else if (s->len) {
        memcpy(e->inl, s->data, s->len);
        e->msg.data = e->inl;
    }
    if (s->from) {
        ukko_actor_retain(s->from);
        e->msg.sender = s->from;
    }
    if (traced) {
        memcpy(e->trace, trace, sizeof(trace));
        e->flags |= ENV_TRACE;
    }
    if (to->capacity)
        e->flags |= ENV_COUNTED;
    e->ext = ext;
    e->kind = ENV_USER;
    push(to, e);
    return 0;
}

int ukko_actor_tell(ukko_actor_t *to, const ukko_send_t *s)
{
    return ukko__tell(to, s, NULL);
}

int ukko_actor_send(ukko_actor_t *to, uint32_t type, const void *data, size_t len)
{
    ukko_send_t s = {.type = type, .data = data, .len = len};
    return ukko__tell(to, &s, NULL);
}

int ukko_actor_send_owned(ukko_actor_t *to, uint32_t type, void *data, size_t len,
                          void (*free_fn)(void *data))
{
    if (!free_fn)
        return UKKO_EINVAL;
    ukko_send_t s = {.type = type, .data = data, .len = len, .free_fn = free_fn};
    return ukko__tell(to, &s, NULL);
}

/* ------------------------------------------------------------ watch */

static bool list_remove(ukko_actor_t **v, size_t *n, ukko_actor_t *x)
{
    for (size_t i = 0; i < *n; i++)
        if (v[i] == x) {
            v[i] = v[--*n];
            return true;
        }
    return false;
}

static void list_add(ukko_actor_t ***v, size_t *n, size_t *cap, ukko_actor_t *x)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        ukko_actor_t **nv = realloc(*v, c * sizeof(*nv));
        if (!nv) {
            ukko_log(UKKO_LOG_ERROR, "actor", "out of memory growing a watch list");
            abort();
        }
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
}

static void send_terminated(ukko_actor_t *watcher, ukko_actor_t *dead)
{
    ukko__env_t *e = ukko__env_alloc(0);
    e->msg.type = UKKO_MSG_TERMINATED;
    ukko_actor_retain(dead);
    e->msg.sender = dead;
    e->kind = ENV_REPLY;
    ukko__send_env(watcher, e);
}

int ukko_actor_watch(ukko_actor_ctx_t *ctx, ukko_actor_t *target)
{
    ukko_actor_t *a = ctx->self;
    if (!target || target == a)
        return UKKO_EINVAL;
    for (size_t i = 0; i < a->nwatching; i++)
        if (a->watching[i] == target)
            return 0;
    pthread_mutex_lock(&target->wlock);
    if (atomic_load_explicit(&target->flags, memory_order_relaxed) & ACTOR_DEAD) {
        pthread_mutex_unlock(&target->wlock);
        send_terminated(a, target);
        return 0;
    }
    ukko_actor_retain(a);
    list_add(&target->watchers, &target->nwatchers, &target->cwatchers, a);
    pthread_mutex_unlock(&target->wlock);
    ukko_actor_retain(target);
    list_add(&a->watching, &a->nwatching, &a->cwatching, target);
    return 0;
}

int ukko_actor_unwatch(ukko_actor_ctx_t *ctx, ukko_actor_t *target)
{
    ukko_actor_t *a = ctx->self;
    if (!target || !list_remove(a->watching, &a->nwatching, target))
        return UKKO_ENOENT;
    pthread_mutex_lock(&target->wlock);
    bool had = list_remove(target->watchers, &target->nwatchers, a);
    pthread_mutex_unlock(&target->wlock);
    if (had)
        ukko_actor_release(a);
    ukko_actor_release(target);
    return 0;
}

/* ------------------------------------------------------------ stop and death */

int ukko_actor_stop(ukko_actor_t *a)
{
    if (!a)
        return UKKO_EINVAL;
    /* seq_cst pairs with the load of flags after arming a backoff in fail():
     * either it sees the stop or we see the armed backoff. */
    int old = atomic_fetch_or_explicit(&a->flags, ACTOR_STOP, memory_order_seq_cst);
    if (old & ACTOR_DEAD)
        return UKKO_ENOENT;
    if (old & ACTOR_STOP)
        return 0;
    ukko__env_t *e = ukko__env_alloc(0);
    e->kind = ENV_WAKE;
    ukko__actor_push(a, e);
    /* Waiting out a restart backoff: cut it short (whoever removes the
     * entry, this or the timer, schedules the actor). */
    if (ukko__timer_cancel(a->sys, &a->backoff)) {
        atomic_fetch_sub_explicit(&a->sys->nsuspended, 1, memory_order_seq_cst);
        ukko__schedule(a);
    }
    return 0;
}

/* Owner thread, once: the actor stops for good. */
static void die(ukko_actor_t *a)
{
    ukko_actor_system_t *sys = a->sys;
    ukko__actor_timers_clear(a);
    if (!a->needs_init && a->beh.free) {
        ukko__tls.actor = a;
        a->beh.free(a->state, a->arg);
    }
    free(a->state);
    a->state = NULL;
    if (a->arg_free)
        a->arg_free(a->arg);
    a->arg = NULL;
    while (a->nwatching) {
        ukko_actor_t *t = a->watching[--a->nwatching];
        pthread_mutex_lock(&t->wlock);
        bool had = list_remove(t->watchers, &t->nwatchers, a);
        pthread_mutex_unlock(&t->wlock);
        if (had)
            ukko_actor_release(a);
        ukko_actor_release(t);
    }
    pthread_mutex_lock(&a->wlock);
    /* Pairs with the acquire loads in send and watch: after this, sends
     * fail and new watchers hear of the death at once. */
    atomic_fetch_or_explicit(&a->flags, ACTOR_DEAD | ACTOR_STOP, memory_order_acq_rel);
    ukko_actor_t **watchers = a->watchers;
    size_t nwatchers = a->nwatchers;
    a->watchers = NULL;
    a->nwatchers = a->cwatchers = 0;
    pthread_mutex_unlock(&a->wlock);
    for (size_t i = 0; i < nwatchers; i++) {
        send_terminated(watchers[i], a);
        ukko_actor_release(watchers[i]);
    }
    free(watchers);
    /* What is queued now is dropped, and so is what lands later, by its
     * pusher: the mailbox is left marked and the actor is never scheduled
     * again (drop_queued). */
    uint64_t dropped = drop_queued(a);
    if (dropped)
        atomic_fetch_add_explicit(&sys->dropped_at_stop, dropped, memory_order_relaxed);
    pthread_mutex_lock(&sys->reg_lock);
    if (a->reg_prev)
        a->reg_prev->reg_next = a->reg_next;
    else
        sys->reg_head = a->reg_next;
    if (a->reg_next)
        a->reg_next->reg_prev = a->reg_prev;
    a->reg_prev = a->reg_next = NULL;
    pthread_mutex_unlock(&sys->reg_lock);
    ukko_logf(UKKO_LOG_DEBUG, "actor", UKKO_FIELDS(UKKO_FS("actor", a->name), UKKO_FI("dropped", dropped)),
              "actor \"%s\" stopped", a->name);
    /* Last: the registry count is what system_stop waits on. */
    atomic_fetch_sub_explicit(&sys->nactors, 1, memory_order_seq_cst);
    ukko_actor_release(a); /* the life reference */
}

static void on_backoff(ukko__tentry_t *t)
{
    ukko_actor_t *a = (ukko_actor_t *)((char *)t - offsetof(ukko_actor_t, backoff));
    atomic_fetch_sub_explicit(&a->sys->nsuspended, 1, memory_order_seq_cst);
    ukko__schedule(a);
}

static char *type_name(uint32_t type, char *buf, size_t n)
{
    snprintf(buf, n, "%u", type);
    return buf;
}

/* Owner thread: a handler (msg) or init (msg == NULL) failed with rc. The
 * actor is either stopped or parked until its backoff ends: not runnable. */
static void fail(ukko_actor_t *a, int rc, const ukko_msg_t *msg)
{
    ukko_actor_system_t *sys = a->sys;
    atomic_fetch_add_explicit(&sys->failures, 1, memory_order_relaxed);
    a->failures++;
    char tb[16];
    const char *what = msg ? type_name(msg->type, tb, sizeof(tb)) : "init";
    if (a->on_failure == UKKO_SUPERVISE_STOP ||
        (a->max_restarts && a->failures > a->max_restarts)) {
        ukko_logf(UKKO_LOG_WARN, "actor",
                  UKKO_FIELDS(UKKO_FS("actor", a->name), UKKO_FI("rc", rc),
                              UKKO_FS("message_type", what), UKKO_FI("failures", a->failures)),
                  "actor \"%s\" failed (%s) handling %s: stopping it (%s)", a->name,
                  ukko_strerror(rc), what,
                  a->on_failure == UKKO_SUPERVISE_STOP ? "its supervision says stop"
                                                       : "max_restarts reached");
        die(a);
        return;
    }
    int64_t delay = a->backoff_min_ms;
    for (int i = 1; i < a->failures && delay < a->backoff_max_ms; i++)
        delay *= 2;
    if (delay > a->backoff_max_ms)
        delay = a->backoff_max_ms;
    ukko_logf(UKKO_LOG_WARN, "actor",
              UKKO_FIELDS(UKKO_FS("actor", a->name), UKKO_FI("rc", rc),
                          UKKO_FS("message_type", what), UKKO_FI("failures", a->failures),
                          UKKO_FI("backoff_ms", delay)),
              "actor \"%s\" failed (%s) handling %s: restarting it in %lld ms", a->name,
              ukko_strerror(rc), what, (long long)delay);
    ukko__actor_timers_clear(a);
    if (!a->needs_init && a->beh.free)
        a->beh.free(a->state, a->arg);
    memset(a->state, 0, a->beh.state_size ? a->beh.state_size : 1);
    a->needs_init = true;
    atomic_fetch_add_explicit(&sys->restarts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sys->nsuspended, 1, memory_order_seq_cst);
    ukko__timer_arm(sys, &a->backoff, ukko_now_ms() + delay);
    /* seq_cst pairs with ukko_actor_stop's fetch_or (see there). */
    if ((atomic_load_explicit(&a->flags, memory_order_seq_cst) & ACTOR_STOP) &&
        ukko__timer_cancel(sys, &a->backoff)) {
        atomic_fetch_sub_explicit(&sys->nsuspended, 1, memory_order_seq_cst);
        die(a);
    }
}

/* ------------------------------------------------------------ the turn */

bool ukko__actor_run(ukko_actor_t *a, int throughput)
{
    ukko_actor_t *prev_actor = ukko__tls.actor;
    ukko__tls.actor = a;
    int handled = 0;
    bool again = false;
    ukko__env_t *e = NULL;

    if (atomic_load_explicit(&a->flags, memory_order_acquire) & ACTOR_STOP)
        goto stop;
    if (a->needs_init) {
        a->needs_init = false;
        int rc = a->beh.init ? a->beh.init(&a->ctx, a->state, a->arg) : 0;
        if (rc < 0) {
            a->needs_init = true;
            fail(a, rc, NULL);
            goto out;
        }
    }
    while (handled < throughput) {
        e = ukko__mbox_pop(&a->mbox);
        if (!e)
            break;
        /* Pairs with the producers' fetch_add: capacity counts what waits. */
        if (e->flags & ENV_COUNTED)
            atomic_fetch_sub_explicit(&a->mbox.count, 1, memory_order_relaxed);
        if (e->kind == ENV_WAKE)
            goto check_stop;
        if (e->kind == ENV_TIMER && !ukko__atimer_deliver(a, e)) {
            ukko__env_release(e);
            continue;
        }
        if (e->msg.type == UKKO_MSG_TERMINATED && e->msg.sender &&
            list_remove(a->watching, &a->nwatching, e->msg.sender))
            ukko_actor_release(e->msg.sender); /* the envelope still holds one */
        handled++;
        ukko__tls.env = e;
        int rc = a->beh.handle(&a->ctx, a->state, &e->msg);
        ukko__tls.env = NULL;
        if (rc < 0) {
            ukko__env_release(e);
            if (a->ctx.stop_self)
                goto stop;
            fail(a, rc, &e->msg);
            goto out;
        }
        a->failures = 0;
        ukko__env_release(e);
    check_stop:
        if (a->ctx.stop_self ||
            (atomic_load_explicit(&a->flags, memory_order_acquire) & ACTOR_STOP))
            goto stop;
    }
    if (ukko__tls.worker)
        atomic_store_explicit(&ukko__tls.worker->msgs,
                              atomic_load_explicit(&ukko__tls.worker->msgs, memory_order_relaxed) +
                                  (uint64_t)handled,
                              memory_order_relaxed);
    /* Out of messages: give the token back unless more arrived meanwhile.
     * After a successful markempty the actor may already run elsewhere. */
    again = e ? true : !ukko__mbox_markempty(&a->mbox);
    goto out;
stop:
    die(a);
out:
    ukko__tls.actor = prev_actor;
    return again;
}

/* ------------------------------------------------------------ spawn */

int ukko_actor_spawn(ukko_actor_system_t *sys, const ukko_behaviour_t *b,
                     const ukko_spawn_opts_t *opts, ukko_actor_t **out)
{
    static const ukko_spawn_opts_t none;
    if (!sys || !b || !b->handle || !out)
        return UKKO_EINVAL;
    *out = NULL;
    if (!opts)
        opts = &none;
    if (atomic_load_explicit(&sys->closing, memory_order_acquire))
        return UKKO_ECANCELED;
    ukko__dispatcher_t *d = ukko__dispatcher_find(sys, opts->dispatcher ? opts->dispatcher : "default");
    if (!d) {
        ukko_log(UKKO_LOG_ERROR, "actor",
                 "spawn \"%s\": no dispatcher \"%s\" (configure it under \"dispatchers\"%s)",
                 opts->name ? opts->name : "?", opts->dispatcher,
                 !strcmp(opts->dispatcher, "loop") ? "; \"loop\" needs a loop given to ukko_actor_system_new" : "");
        return UKKO_ENOENT;
    }
    size_t sz = (sizeof(ukko_actor_t) + 63) / 64 * 64;
    ukko_actor_t *a = aligned_alloc(64, sz);
    void *state = calloc(1, b->state_size ? b->state_size : 1);
    if (!a || !state) {
        free(a);
        free(state);
        return UKKO_ENOMEM;
    }
    memset(a, 0, sz);
    a->sys = sys;
    a->disp = d;
    a->beh = *b;
    a->arg = opts->arg;
    a->arg_free = opts->arg_free;
    a->id = atomic_fetch_add_explicit(&sys->next_id, 1, memory_order_relaxed) + 1;
    a->capacity = opts->mailbox_capacity;
    a->on_failure = opts->on_failure;
    a->max_restarts = opts->max_restarts;
    a->backoff_min_ms = opts->backoff_min_ms > 0 ? opts->backoff_min_ms : 100;
    a->backoff_max_ms = opts->backoff_max_ms > 0 ? opts->backoff_max_ms : 10000;
    if (a->backoff_max_ms < a->backoff_min_ms)
        a->backoff_max_ms = a->backoff_min_ms;
    if (opts->name)
        snprintf(a->name, sizeof(a->name), "%s", opts->name);
    else
        snprintf(a->name, sizeof(a->name), "actor-%llu", (unsigned long long)a->id);
    a->state = state;
    a->ctx.self = a;
    atomic_init(&a->refs, 2); /* the caller's and the life reference */
    atomic_init(&a->flags, 0);
    pthread_mutex_init(&a->wlock, NULL);
    a->backoff.idx = -1;
    a->backoff.fire = on_backoff;
    ukko__mbox_init(&a->mbox, ukko__env_alloc(0));
    atomic_fetch_add_explicit(&sys->refs, 1, memory_order_relaxed);

    pthread_mutex_lock(&sys->reg_lock);
    a->reg_next = sys->reg_head;
    if (sys->reg_head)
        sys->reg_head->reg_prev = a;
    sys->reg_head = a;
    pthread_mutex_unlock(&sys->reg_lock);
    atomic_fetch_add_explicit(&sys->nactors, 1, memory_order_seq_cst);

    /* init runs here, as the owner: the mailbox was born scheduled, so what
     * init sends to itself waits until the hand-over below. */
    int rc = 0;
    if (b->init) {
        ukko_actor_t *prev = ukko__tls.actor;
        ukko__tls.actor = a;
        rc = b->init(&a->ctx, a->state, a->arg);
        ukko__tls.actor = prev;
    }
    if (rc < 0) {
        a->needs_init = true; /* free must not run */
        a->arg_free = NULL;   /* arg stays the caller's */
        ukko_actor_t *prev = ukko__tls.actor;
        die(a);
        ukko__tls.actor = prev;
        ukko_actor_release(a);
        return rc;
    }
    if (a->ctx.stop_self) {
        atomic_fetch_or_explicit(&a->flags, ACTOR_STOP, memory_order_seq_cst);
        ukko__schedule(a);
    } else if (!ukko__mbox_markempty(&a->mbox)) {
        ukko__schedule(a);
    }
    *out = a;
    return 0;
}

/* The registry, for the system's stop: new references to every live actor. */
size_t ukko__actors_snapshot(ukko_actor_system_t *sys, ukko_actor_t ***out)
{
    pthread_mutex_lock(&sys->reg_lock);
    size_t n = 0;
    for (ukko_actor_t *a = sys->reg_head; a; a = a->reg_next)
        n++;
    ukko_actor_t **v = calloc(n ? n : 1, sizeof(*v));
    size_t i = 0;
    for (ukko_actor_t *a = sys->reg_head; v && a; a = a->reg_next) {
        ukko_actor_retain(a);
        v[i++] = a;
    }
    pthread_mutex_unlock(&sys->reg_lock);
    *out = v;
    return v ? i : 0;
}
