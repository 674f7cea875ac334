/* actor_timer.c: the system's timer thread: a binary heap of entries (actor
 * timers, ask timeouts, restart backoffs) under one mutex, and a tick that
 * runs the starvation monitor and frees retired actors. Actor timers are
 * owned by their actor's thread (the key table); the heap by the lock.
 * Invariant: an entry is in the heap iff idx >= 0, and only fire or cancel
 * (whichever removes it) goes on to act on it. */
#include "actor_internal.h"

#include <stdlib.h>
#include <time.h>

struct ukko__atimer {
    ukko__tentry_t t;
    _Atomic int refs;
    _Atomic bool cancelled; /* set under the timer lock; read by fire and the owner */
    ukko_actor_t *actor;    /* a reference */
    uint64_t key;
    uint32_t type;
    int64_t interval_ms; /* 0: once */
};

/* ------------------------------------------------------------ the heap */

static void heap_swap(ukko__timers_t *tm, size_t i, size_t j)
{
    ukko__tentry_t *x = tm->heap[i];
    tm->heap[i] = tm->heap[j];
    tm->heap[j] = x;
    tm->heap[i]->idx = (int32_t)i;
    tm->heap[j]->idx = (int32_t)j;
}

static void sift_up(ukko__timers_t *tm, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (tm->heap[p]->due_ms <= tm->heap[i]->due_ms)
            break;
        heap_swap(tm, i, p);
        i = p;
    }
}

static void sift_down(ukko__timers_t *tm, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < tm->n && tm->heap[l]->due_ms < tm->heap[m]->due_ms)
            m = l;
        if (r < tm->n && tm->heap[r]->due_ms < tm->heap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(tm, i, m);
        i = m;
    }
}

static void heap_remove(ukko__timers_t *tm, ukko__tentry_t *e)
{
    size_t i = (size_t)e->idx;
    tm->n--;
    if (i != tm->n) {
        tm->heap[i] = tm->heap[tm->n];
        tm->heap[i]->idx = (int32_t)i;
        sift_down(tm, i);
        sift_up(tm, i);
    }
    e->idx = -1;
}

/* Under the lock. */
static void heap_insert(ukko__timers_t *tm, ukko__tentry_t *e)
{
    if (tm->n == tm->cap) {
        size_t c = tm->cap ? tm->cap * 2 : 64;
        ukko__tentry_t **h = realloc(tm->heap, c * sizeof(*h));
        if (!h) {
            ukko_log(UKKO_LOG_ERROR, "actor", "out of memory growing the timer heap");
            abort();
        }
        tm->heap = h;
        tm->cap = c;
    }
    e->idx = (int32_t)tm->n;
    tm->heap[tm->n++] = e;
    sift_up(tm, (size_t)e->idx);
    if (e->idx == 0)
        pthread_cond_signal(&tm->cond); /* a new earliest deadline */
}

void ukko__timer_arm(ukko_actor_system_t *sys, ukko__tentry_t *e, int64_t due_ms)
{
    ukko__timers_t *tm = &sys->timers;
    pthread_mutex_lock(&tm->lock);
    e->due_ms = due_ms;
    heap_insert(tm, e);
    pthread_mutex_unlock(&tm->lock);
}

bool ukko__timer_cancel(ukko_actor_system_t *sys, ukko__tentry_t *e)
{
    ukko__timers_t *tm = &sys->timers;
    pthread_mutex_lock(&tm->lock);
    bool removed = e->idx >= 0;
    if (removed)
        heap_remove(tm, e);
    pthread_mutex_unlock(&tm->lock);
    return removed;
}

/* ------------------------------------------------------------ the thread */

static void *timer_main(void *arg)
{
    ukko_actor_system_t *sys = arg;
    ukko__timers_t *tm = &sys->timers;
    ukko__tls.timer_thread = true;
    pthread_setname_np(pthread_self(), "ukko-timer");
    int64_t tick = sys->starvation_ms / 2;
    tick = tick < 10 ? 10 : tick > 1000 ? 1000 : tick;
    int64_t next_tick = ukko_now_ms() + tick;
    pthread_mutex_lock(&tm->lock);
    while (!tm->stop) {
        int64_t now = ukko_now_ms();
        if (now >= next_tick) {
            pthread_mutex_unlock(&tm->lock);
            ukko__starvation_scan(sys, now);
            ukko__grave_reap(sys);
            pthread_mutex_lock(&tm->lock);
            next_tick = now + tick;
            continue;
        }
        if (tm->n && tm->heap[0]->due_ms <= now) {
            ukko__tentry_t *e = tm->heap[0];
            heap_remove(tm, e);
            pthread_mutex_unlock(&tm->lock);
            e->fire(e);
            pthread_mutex_lock(&tm->lock);
            continue;
        }
        int64_t until = next_tick;
        if (tm->n && tm->heap[0]->due_ms < until)
            until = tm->heap[0]->due_ms;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000),
                              .tv_nsec = (long)(until % 1000) * 1000000};
        pthread_cond_timedwait(&tm->cond, &tm->lock, &ts);
    }
    pthread_mutex_unlock(&tm->lock);
    ukko__tls.timer_thread = false;
    return NULL;
}

int ukko__timers_start(ukko_actor_system_t *sys)
{
    ukko__timers_t *tm = &sys->timers;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* ukko_now_ms's clock */
    pthread_cond_init(&tm->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&tm->lock, NULL);
    int rc = pthread_create(&tm->thread, NULL, timer_main, sys);
    if (rc != 0)
        return -rc;
    tm->started = true;
    return 0;
}

/* Joins the thread and drops what is still armed. */
void ukko__timers_stop(ukko_actor_system_t *sys)
{
    ukko__timers_t *tm = &sys->timers;
    if (!tm->started)
        return;
    pthread_mutex_lock(&tm->lock);
    tm->stop = true;
    pthread_cond_signal(&tm->cond);
    pthread_mutex_unlock(&tm->lock);
    pthread_join(tm->thread, NULL);
    tm->started = false;
    for (;;) {
        pthread_mutex_lock(&tm->lock);
        ukko__tentry_t *e = tm->n ? tm->heap[0] : NULL;
        if (e)
            heap_remove(tm, e);
        pthread_mutex_unlock(&tm->lock);
        if (!e)
            break;
        if (e->drop)
            e->drop(e);
    }
    free(tm->heap);
    tm->heap = NULL;
    tm->cap = 0;
}

/* ------------------------------------------------------------ actor timers */

void ukko__atimer_unref(ukko__atimer_t *t)
{
    /* acq_rel: the last holder sees the others' writes before freeing. */
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    ukko_actor_release(t->actor);
    free(t);
}

bool ukko__atimer_deliver(ukko_actor_t *a, const ukko__env_t *e)
{
    ukko__atimer_t *t = e->ext;
    /* Pairs with the store in slot_cancel (the owner's own, or at restart). */
    if (atomic_load_explicit(&t->cancelled, memory_order_acquire))
        return false;
    if (!t->interval_ms)
        for (size_t i = 0; i < a->ntimers; i++)
            if (a->timers[i].t == t) {
                /* A single timer is done once delivered: forget its key. */
                a->timers[i] = a->timers[--a->ntimers];
                ukko__atimer_unref(t);
                break;
            }
    return true;
}

static void atimer_fire(ukko__tentry_t *te)
{
    ukko__atimer_t *t = (ukko__atimer_t *)te;
    ukko_actor_system_t *sys = t->actor->sys;
    if (!atomic_load_explicit(&t->cancelled, memory_order_acquire)) {
        ukko__env_t *e = ukko__env_alloc(0);
        e->msg.type = t->type;
        e->msg.id = t->key;
        e->kind = ENV_TIMER;
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
        e->ext = t;
        ukko__send_env(t->actor, e);
    }
    if (t->interval_ms) {
        ukko__timers_t *tm = &sys->timers;
        pthread_mutex_lock(&tm->lock);
        if (!atomic_load_explicit(&t->cancelled, memory_order_relaxed)) {
            int64_t now = ukko_now_ms(), next = t->t.due_ms + t->interval_ms;
            t->t.due_ms = next > now ? next : now + t->interval_ms; /* no bursts */
            heap_insert(tm, &t->t);
            pthread_mutex_unlock(&tm->lock);
            return; /* the heap keeps its reference */
        }
        pthread_mutex_unlock(&tm->lock);
    }
    ukko__atimer_unref(t);
}

static void atimer_drop(ukko__tentry_t *te)
{
    ukko__atimer_unref((ukko__atimer_t *)te);
}

/* Owner thread: cancels slot i's timer and forgets it. */
static void slot_cancel(ukko_actor_t *a, size_t i)
{
    ukko__atimer_t *t = a->timers[i].t;
    ukko__timers_t *tm = &a->sys->timers;
    pthread_mutex_lock(&tm->lock);
    /* Under the lock, so a periodic fire cannot re-arm it after this. */
    atomic_store_explicit(&t->cancelled, true, memory_order_release);
    bool removed = t->t.idx >= 0;
    if (removed)
        heap_remove(tm, &t->t);
    pthread_mutex_unlock(&tm->lock);
    if (removed)
        ukko__atimer_unref(t); /* the heap's */
    ukko__atimer_unref(t);     /* the table's */
    a->timers[i] = a->timers[--a->ntimers];
}

void ukko__actor_timers_clear(ukko_actor_t *a)
{
    while (a->ntimers)
        slot_cancel(a, a->ntimers - 1);
    free(a->timers);
    a->timers = NULL;
    a->ctimers = 0;
}

static int timer_start(ukko_actor_ctx_t *ctx, uint64_t key, uint32_t type, int64_t delay_ms,
                       int64_t interval_ms)
{
    ukko_actor_t *a = ctx->self;
    /* Past ~100 years a due time would overflow the clock arithmetic. */
    const int64_t max_ms = (int64_t)100 * 365 * 24 * 3600 * 1000;
    if (delay_ms < 0 || interval_ms < 0 || delay_ms > max_ms || interval_ms > max_ms ||
        type >= UKKO_MSG_SYSTEM)
        return UKKO_EINVAL;
    ukko_actor_timer_cancel(ctx, key);
    if (a->ntimers == a->ctimers) {
        size_t c = a->ctimers ? a->ctimers * 2 : 4;
        timer_slot_t *v = realloc(a->timers, c * sizeof(*v));
        if (!v)
            return UKKO_ENOMEM;
        a->timers = v;
        a->ctimers = c;
    }
    ukko__atimer_t *t = calloc(1, sizeof(*t));
    if (!t)
        return UKKO_ENOMEM;
    t->t.idx = -1;
    t->t.fire = atimer_fire;
    t->t.drop = atimer_drop;
    atomic_init(&t->refs, 2); /* the table's and the heap's */
    ukko_actor_retain(a);
    t->actor = a;
    t->key = key;
    t->type = type;
    t->interval_ms = interval_ms;
    a->timers[a->ntimers].key = key;
    a->timers[a->ntimers].t = t;
    a->ntimers++;
    ukko__timer_arm(a->sys, &t->t, ukko_now_ms() + delay_ms);
    return 0;
}

int ukko_actor_timer_once(ukko_actor_ctx_t *ctx, uint64_t key, uint32_t type, int64_t delay_ms)
{
    return timer_start(ctx, key, type, delay_ms, 0);
}

int ukko_actor_timer_periodic(ukko_actor_ctx_t *ctx, uint64_t key, uint32_t type,
                              int64_t interval_ms)
{
    if (interval_ms <= 0)
        return UKKO_EINVAL;
    return timer_start(ctx, key, type, interval_ms, interval_ms);
}

int ukko_actor_timer_cancel(ukko_actor_ctx_t *ctx, uint64_t key)
{
    ukko_actor_t *a = ctx->self;
    for (size_t i = 0; i < a->ntimers; i++)
        if (a->timers[i].key == key) {
            slot_cancel(a, i);
            return 0;
        }
    return UKKO_ENOENT;
}
