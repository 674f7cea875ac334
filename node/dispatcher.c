/* dispatcher.c: pools of worker threads that run actor turns, and the "loop"
 * dispatcher that runs actors on the libev loop thread. Each worker has a
 * local ring (Go's runq: owner pushes, anyone takes with a CAS) and steals
 * half a ring from a random victim when it runs dry; external schedules go
 * through a locked injection queue. Idle workers spin briefly, then park on
 * a futex; a schedule wakes one only when nobody is spinning (Go's rule), so
 * a busy pool makes no system calls. Threads: workers, any scheduler. */
#include "actor_internal.h"

#include <ev.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 50000 /* how long an idle worker looks for work before parking */
#define GLOBAL_EVERY 61 /* a worker looks at the injection queue every 61 turns */

_Thread_local ukko__tls_t ukko__tls;

/* The full barrier of the wake-up protocol (see maybe_wake). ThreadSanitizer
 * does not model fences, so under it both sides do a seq_cst read-modify-write
 * of one shared word instead: the later one reads from the earlier, which
 * gives TSan (and C11) the same ordering without fences. */
#if defined(__SANITIZE_THREAD__)
#define FULL_BARRIER(d) atomic_fetch_add_explicit(&(d)->barrier, 0, memory_order_seq_cst)
#else
#define FULL_BARRIER(d) atomic_thread_fence(memory_order_seq_cst)
#endif

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ------------------------------------------------------------ queues */

static void inject_push(ukko__dispatcher_t *d, ukko_actor_t *a)
{
    pthread_mutex_lock(&d->inject_lock);
    a->run_next = NULL;
    if (d->inject_tail)
        d->inject_tail->run_next = a;
    else
        d->inject_head = a;
    d->inject_tail = a;
    size_t n = atomic_load_explicit(&d->inject_len, memory_order_relaxed);
    /* Read without the lock by idle checks; the lock orders the list itself. */
    atomic_store_explicit(&d->inject_len, n + 1, memory_order_release);
    pthread_mutex_unlock(&d->inject_lock);
    if (n == 0 && d->executor == EXEC_LOOP)
        ev_async_send(d->loop, d->async); /* only on empty -> non-empty */
}

static ukko_actor_t *inject_pop(ukko__dispatcher_t *d)
{
    /* Pairs with the release store in inject_push: a cheap look first. */
    if (atomic_load_explicit(&d->inject_len, memory_order_acquire) == 0)
        return NULL;
    pthread_mutex_lock(&d->inject_lock);
    ukko_actor_t *a = d->inject_head;
    if (a) {
        d->inject_head = a->run_next;
        if (!d->inject_head)
            d->inject_tail = NULL;
        a->run_next = NULL;
        atomic_store_explicit(&d->inject_len,
                              atomic_load_explicit(&d->inject_len, memory_order_relaxed) - 1,
                              memory_order_release);
    }
    pthread_mutex_unlock(&d->inject_lock);
    return a;
}

/* Owner only. */
static void ring_push(ukko__worker_t *w, ukko_actor_t *a)
{
    for (;;) {
        /* Pairs with the CAS of head by takers: the slot we overwrite was read. */
        uint32_t h = atomic_load_explicit(&w->head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&w->tail, memory_order_relaxed);
        if (t - h < RING_SIZE) {
            atomic_store_explicit(&w->ring[t % RING_SIZE], a, memory_order_relaxed);
            /* Pairs with the acquire loads of tail in ring_pop and steal. */
            atomic_store_explicit(&w->tail, t + 1, memory_order_release);
            return;
        }
        /* Full: move half of it to the injection queue (Go's runqputslow). */
        uint32_t n = RING_SIZE / 2;
        ukko_actor_t *batch[RING_SIZE / 2];
        for (uint32_t i = 0; i < n; i++)
            batch[i] = atomic_load_explicit(&w->ring[(h + i) % RING_SIZE], memory_order_relaxed);
        if (!atomic_compare_exchange_strong_explicit(&w->head, &h, h + n, memory_order_acq_rel,
                                                     memory_order_acquire))
            continue;
        for (uint32_t i = 0; i < n; i++)
            inject_push(w->d, batch[i]);
    }
}

/* Owner only. */
static ukko_actor_t *ring_pop(ukko__worker_t *w)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&w->head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&w->tail, memory_order_relaxed);
        if (t == h)
            return NULL;
        ukko_actor_t *a = atomic_load_explicit(&w->ring[h % RING_SIZE], memory_order_relaxed);
        /* release pairs with ring_push's acquire load of head. */
        if (atomic_compare_exchange_weak_explicit(&w->head, &h, h + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return a;
    }
}

static bool ring_empty(ukko__worker_t *w)
{
    /* Pairs with the release store of tail in ring_push. */
    uint32_t t = atomic_load_explicit(&w->tail, memory_order_acquire);
    return atomic_load_explicit(&w->head, memory_order_acquire) == t;
}

/* Takes half of victim's ring: one to run now, the rest into w's ring. */
static ukko_actor_t *steal(ukko__worker_t *w, ukko__worker_t *victim)
{
    ukko_actor_t *batch[RING_SIZE / 2];
    uint32_t n;
    for (;;) {
        uint32_t h = atomic_load_explicit(&victim->head, memory_order_acquire);
        /* Pairs with the release store of tail in the victim's ring_push. */
        uint32_t t = atomic_load_explicit(&victim->tail, memory_order_acquire);
        n = t - h;
        n = n - n / 2;
        if (n == 0)
            return NULL;
        if (n > RING_SIZE / 2)
            continue; /* h and t read at different moments: read again */
        for (uint32_t i = 0; i < n; i++)
            batch[i] = atomic_load_explicit(&victim->ring[(h + i) % RING_SIZE],
                                            memory_order_relaxed);
        /* Pairs with the victim's acquire load of head before it reuses slots. */
        if (atomic_compare_exchange_strong_explicit(&victim->head, &h, h + n,
                                                    memory_order_acq_rel, memory_order_acquire))
            break;
    }
    for (uint32_t i = 1; i < n; i++)
        ring_push(w, batch[i]);
    return batch[0];
}

/* ------------------------------------------------------------ parking */

static void wake_one(ukko__dispatcher_t *d)
{
    int zero = 0;
    /* Claim the right to make a spinner; pairs with the decrements in
     * find_work/park. Someone else already spinning will find the work. */
    if (!atomic_compare_exchange_strong_explicit(&d->nspinning, &zero, 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return;
    pthread_mutex_lock(&d->idle_lock);
    ukko__worker_t *w = d->idle;
    if (w) {
        d->idle = w->idle_next;
        w->idle_next = NULL;
        atomic_fetch_sub_explicit(&d->nidle, 1, memory_order_seq_cst);
        /* Under the lock, after park put w on the list: w reads it once it
         * sees parked == 0 (the release store below). */
        w->spinning = true;
        /* Pairs with the acquire load in park: w wakes as a spinner. */
        atomic_store_explicit(&w->parked, 0, memory_order_release);
    }
    pthread_mutex_unlock(&d->idle_lock);
    if (w)
        futex_wake(&w->parked);
    else
        atomic_fetch_sub_explicit(&d->nspinning, 1, memory_order_seq_cst);
}

static void maybe_wake(ukko__dispatcher_t *d)
{
    /* The work was published before this fence; a worker decrements
     * nspinning before it re-checks the queues (seq_cst both sides, Dekker):
     * either it sees the work or we see it gone and wake someone. */
    FULL_BARRIER(d);
    if (atomic_load_explicit(&d->nspinning, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&d->nidle, memory_order_relaxed) > 0)
        wake_one(d);
}

/* Held by ukko_actor_batch_begin on a thread outside d's pool: chained
 * here, published by batch_flush. false: no room (schedule it now). */
static bool batch_hold(ukko__dispatcher_t *d, ukko_actor_t *a)
{
    struct ukko__held *h = NULL;
    for (int i = 0; i < ukko__tls.nheld; i++)
        if (ukko__tls.held[i].d == d)
            h = &ukko__tls.held[i];
    if (!h) {
        if (ukko__tls.nheld == (int)(sizeof(ukko__tls.held) / sizeof(ukko__tls.held[0])))
            return false;
        h = &ukko__tls.held[ukko__tls.nheld++];
        *h = (struct ukko__held){d, NULL, NULL, 0};
    }
    a->run_next = NULL;
    if (h->tail)
        h->tail->run_next = a;
    else
        h->head = a;
    h->tail = a;
    h->n++;
    return true;
}

/* Publishes every chain this thread held: one lock and one wake-up per
 * dispatcher (a worker that finds work while spinning wakes the next, so
 * one is enough to start them all). */
static void batch_flush(void)
{
    for (int i = 0; i < ukko__tls.nheld; i++) {
        struct ukko__held *h = &ukko__tls.held[i];
        ukko__dispatcher_t *d = h->d;
        pthread_mutex_lock(&d->inject_lock);
        if (d->inject_tail)
            d->inject_tail->run_next = h->head;
        else
            d->inject_head = h->head;
        d->inject_tail = h->tail;
        size_t n = atomic_load_explicit(&d->inject_len, memory_order_relaxed);
        /* Pairs with the acquire load in inject_pop (see inject_push). */
        atomic_store_explicit(&d->inject_len, n + h->n, memory_order_release);
        pthread_mutex_unlock(&d->inject_lock);
        maybe_wake(d);
    }
    ukko__tls.nheld = 0;
}

void ukko_actor_batch_begin(void)
{
    /* Inside a pool's worker schedules go to its own ring already. */
    if (!ukko__tls.worker)
        ukko__tls.batch_depth++;
}

void ukko_actor_batch_end(void)
{
    if (ukko__tls.worker || ukko__tls.batch_depth == 0)
        return;
    if (--ukko__tls.batch_depth == 0)
        batch_flush();
}

void ukko__schedule(ukko_actor_t *a)
{
    ukko__dispatcher_t *d = a->disp;
    ukko__worker_t *w = ukko__tls.worker;
    if (d->executor == EXEC_LOOP) {
        inject_push(d, a);
        return;
    }
    if (w && w->d == d && d->local_push)
        ring_push(w, a);
    else if (ukko__tls.batch_depth > 0 && batch_hold(d, a))
        return; /* published at ukko_actor_batch_end */
    else
        inject_push(d, a);
    maybe_wake(d);
}

static bool any_work(ukko__dispatcher_t *d)
{
    if (atomic_load_explicit(&d->inject_len, memory_order_acquire))
        return true;
    for (int i = 0; i < d->nthreads; i++)
        if (!ring_empty(&d->workers[i]))
            return true;
    return false;
}

/* Parks w until woken; returns with w spinning if a waker chose it. */
static void park(ukko__worker_t *w)
{
    ukko__dispatcher_t *d = w->d;
    pthread_mutex_lock(&d->idle_lock);
    /* Read and cleared before w is on the idle list: from then on a waker
     * may set it (under this lock), and w reads it again only after it saw
     * parked == 0 (the waker's release store). */
    bool was_spinning = w->spinning;
    w->spinning = false;
    atomic_store_explicit(&w->parked, 1, memory_order_relaxed);
    w->idle_next = d->idle;
    d->idle = w;
    atomic_fetch_add_explicit(&d->nidle, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&d->idle_lock);
    if (was_spinning) {
        /* Pairs with the fence in maybe_wake (see there). */
        atomic_fetch_sub_explicit(&d->nspinning, 1, memory_order_seq_cst);
    }
    FULL_BARRIER(d); /* pairs with the one in maybe_wake */
    if (any_work(d) || atomic_load_explicit(&d->shutdown, memory_order_acquire)) {
        /* Work arrived while we were going: take ourselves off the list,
         * unless a waker already did (then it set parked = 0). */
        pthread_mutex_lock(&d->idle_lock);
        for (ukko__worker_t **p = &d->idle; *p; p = &(*p)->idle_next)
            if (*p == w) {
                *p = w->idle_next;
                w->idle_next = NULL;
                atomic_fetch_sub_explicit(&d->nidle, 1, memory_order_seq_cst);
                atomic_store_explicit(&w->parked, 0, memory_order_relaxed);
                break;
            }
        pthread_mutex_unlock(&d->idle_lock);
    }
    /* Pairs with the release store of 0 by wake_one / shutdown. */
    while (atomic_load_explicit(&w->parked, memory_order_acquire) == 1)
        futex_wait(&w->parked, 1);
}

/* Looks for a runnable actor; parks when there is none. NULL: shut down. */
static ukko_actor_t *find_work(ukko__worker_t *w)
{
    ukko__dispatcher_t *d = w->d;
    for (;;) {
        ukko_actor_t *a;
        if (++w->tick % GLOBAL_EVERY == 0 && (a = inject_pop(d)))
            goto found;
        if ((a = ring_pop(w)) || (a = inject_pop(d)))
            goto found;
        if (atomic_load_explicit(&d->shutdown, memory_order_acquire))
            return NULL;
        /* Spin only while fewer than half of the busy workers do (Go). */
        int busy = d->nthreads - atomic_load_explicit(&d->nidle, memory_order_relaxed);
        if (!w->spinning &&
            2 * atomic_load_explicit(&d->nspinning, memory_order_relaxed) < busy) {
            w->spinning = true;
            atomic_fetch_add_explicit(&d->nspinning, 1, memory_order_seq_cst);
        }
        if (w->spinning) {
            int64_t until = now_ns() + SPIN_NS;
            for (uint32_t round = 0;; round++) {
                if ((a = inject_pop(d)))
                    goto found;
                if (d->nthreads > 1) {
                    w->rng = w->rng * 6364136223846793005ull + 1442695040888963407ull;
                    uint32_t start = (uint32_t)(w->rng >> 33);
                    for (int i = 0; i < d->nthreads; i++) {
                        ukko__worker_t *v = &d->workers[(start + (uint32_t)i) % (uint32_t)d->nthreads];
                        if (v != w && (a = steal(w, v)))
                            goto found;
                    }
                }
                if (atomic_load_explicit(&d->shutdown, memory_order_acquire))
                    break;
                for (int i = 0; i < 32; i++)
                    cpu_relax();
                if ((round & 15) == 15 && now_ns() > until)
                    break;
            }
        }
        park(w);
        continue;
    found:
        if (w->spinning) {
            w->spinning = false;
            /* The last spinner to find work makes another, in case there is
             * more (pairs with wake_one's CAS). */
            if (atomic_fetch_sub_explicit(&d->nspinning, 1, memory_order_seq_cst) == 1)
                maybe_wake(d);
        }
        return a;
    }
}

/* The turn clock: coarse (a few ms, a few ns to read) is plenty against a
 * threshold of 100 ms, and it is read twice per turn. */
static int64_t turn_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_turn(ukko__worker_t *w, ukko_actor_t *a)
{
    ukko__dispatcher_t *d = w->d;
    bool again;
    do {
        int64_t start = 0;
        uint64_t seq = 0;
        if (d->starvation_check) {
            start = turn_clock_ms();
            seq = atomic_load_explicit(&w->turn_seq, memory_order_relaxed) + 1;
            atomic_store_explicit(&w->turn_seq, seq, memory_order_relaxed);
            /* Pairs with the acquire load in ukko__starvation_scan: cur and
             * seq are set before the monitor can see a turn start. */
            atomic_store_explicit(&w->cur, a, memory_order_relaxed);
            atomic_store_explicit(&w->turn_start_ms, start ? start : 1, memory_order_release);
        }
        again = ukko__actor_run(a, d->throughput);
        if (d->starvation_check) {
            int64_t held = turn_clock_ms() - start;
            if (held >= d->sys->starvation_ms)
                ukko__starvation_report(w, seq, a, held, true);
            /* Pairs with the acquire load in the scan: a turn that ended is
             * not reported; a stopped actor is reaped only after a scan. */
            atomic_store_explicit(&w->turn_start_ms, 0, memory_order_release);
            atomic_store_explicit(&w->cur, NULL, memory_order_release);
        }
        /* Nobody else is waiting here or in the injection queue: another
         * turn right away costs less than a trip through the ring. */
    } while (again && ring_empty(w) &&
             atomic_load_explicit(&d->inject_len, memory_order_relaxed) == 0 &&
             !atomic_load_explicit(&d->shutdown, memory_order_relaxed));
    if (again)
        ring_push(w, a);
}

static void *worker_main(void *arg)
{
    ukko__worker_t *w = arg;
    ukko__tls.worker = w;
    char name[16];
    snprintf(name, sizeof(name), "ukko-%.6s-%d", w->d->name, w->index);
    pthread_setname_np(pthread_self(), name);
    ukko_actor_t *a;
    while ((a = find_work(w))) {
        run_turn(w, a);
    }
    ukko__tls.worker = NULL;
    return NULL;
}

/* ------------------------------------------------------------ the loop dispatcher */

void ukko__loop_run(ukko__dispatcher_t *d, int max)
{
    for (int i = 0; i < max; i++) {
        ukko_actor_t *a = inject_pop(d);
        if (!a)
            return;
        if (ukko__actor_run(a, d->throughput))
            inject_push(d, a); /* at the back: the loop's other watchers get a turn */
    }
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    ukko__dispatcher_t *d = w->data;
    /* Bounded, so the loop's other watchers keep their turn. inject_push
     * sends the async only on empty -> non-empty, so a queue left non-empty
     * here would never be looked at again: the consumer re-arms it itself
     * (h2o's and libuv's queues do the same after a bounded batch). */
    ukko__loop_run(d, 64);
    /* Pairs with the release store of inject_len in inject_push: a push
     * that we do not see went from empty and sent the async itself. */
    if (atomic_load_explicit(&d->inject_len, memory_order_acquire))
        ev_async_send(loop, w);
}

/* ------------------------------------------------------------ the monitor */

void ukko__starvation_scan(ukko_actor_system_t *sys, int64_t now)
{
    for (int i = 0; i < sys->ndisp; i++) {
        ukko__dispatcher_t *d = sys->disp[i];
        if (!d->starvation_check)
            continue;
        for (int j = 0; j < d->nthreads; j++) {
            ukko__worker_t *w = &d->workers[j];
            /* Pairs with the release stores in run_turn. */
            int64_t start = atomic_load_explicit(&w->turn_start_ms, memory_order_acquire);
            if (!start || now - start < sys->starvation_ms)
                continue;
            uint64_t seq = atomic_load_explicit(&w->turn_seq, memory_order_relaxed);
            ukko_actor_t *a = atomic_load_explicit(&w->cur, memory_order_acquire);
            /* The actor cannot be freed before the next scan (graveyard). */
            if (a && atomic_load_explicit(&w->turn_start_ms, memory_order_acquire) == start)
                ukko__starvation_report(w, seq, a, now - start, false);
        }
    }
}

void ukko__starvation_report(ukko__worker_t *w, uint64_t seq, ukko_actor_t *a, int64_t held_ms,
                             bool ended)
{
    ukko__dispatcher_t *d = w->d;
    uint64_t prev = atomic_load_explicit(&w->reported_seq, memory_order_relaxed);
    char thr[32];
    ukko_format_duration(d->sys->starvation_ms, thr, sizeof(thr));
    if (prev != seq &&
        /* Once per turn, whoever of the monitor and the worker comes first. */
        atomic_compare_exchange_strong_explicit(&w->reported_seq, &prev, seq,
                                                memory_order_relaxed, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&d->starvations, 1, memory_order_relaxed);
        ukko_logf(UKKO_LOG_WARN, "actor",
                  UKKO_FIELDS(UKKO_FS("actor", a->name), UKKO_FS("dispatcher", d->name),
                              UKKO_FI("thread", w->index), UKKO_FI("held_ms", held_ms)),
                  "starvation: actor \"%s\" has held a \"%s\" dispatcher thread for %lld ms%s "
                  "(dispatchers.starvation-threshold is %s): move blocking work to a "
                  "thread-pool-executor dispatcher such as \"blocking-dispatcher\"",
                  a->name, d->name, (long long)held_ms, ended ? "" : " so far", thr);
    } else if (ended && prev == seq) {
        ukko_logf(UKKO_LOG_WARN, "actor",
                  UKKO_FIELDS(UKKO_FS("actor", a->name), UKKO_FS("dispatcher", d->name),
                              UKKO_FI("thread", w->index), UKKO_FI("held_ms", held_ms)),
                  "starvation: actor \"%s\" released its \"%s\" dispatcher thread after %lld ms",
                  a->name, d->name, (long long)held_ms);
    }
}

/* ------------------------------------------------------------ lifecycle */

static ukko__dispatcher_t *dispatcher_new(ukko_actor_system_t *sys, const char *name, int executor,
                                          int nthreads, int throughput)
{
    ukko__dispatcher_t *d = aligned_alloc(64, (sizeof(*d) + 63) / 64 * 64);
    if (!d)
        return NULL;
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->executor = executor;
    d->nthreads = executor == EXEC_LOOP ? 0 : nthreads;
    d->throughput = throughput;
    d->local_push = executor == EXEC_FORK_JOIN;
    d->starvation_check = executor == EXEC_FORK_JOIN;
    d->sys = sys;
    pthread_mutex_init(&d->inject_lock, NULL);
    pthread_mutex_init(&d->idle_lock, NULL);
    if (d->nthreads) {
        size_t sz = ((size_t)d->nthreads * sizeof(ukko__worker_t) + 63) / 64 * 64;
        d->workers = aligned_alloc(64, sz);
        if (!d->workers) {
            free(d);
            return NULL;
        }
        memset(d->workers, 0, sz);
        for (int i = 0; i < d->nthreads; i++) {
            d->workers[i].d = d;
            d->workers[i].index = i;
            d->workers[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        }
    }
    return d;
}

static int nproc(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int get_int(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

static int build_one(ukko_actor_system_t *sys, const char *name, const cJSON *it)
{
    if (sys->ndisp == MAX_DISPATCHERS)
        return UKKO_E2BIG;
    const cJSON *ex = it ? cJSON_GetObjectItemCaseSensitive(it, "executor") : NULL;
    int executor = cJSON_IsString(ex) && !strcmp(ex->valuestring, "thread-pool-executor")
                       ? EXEC_THREAD_POOL
                       : EXEC_FORK_JOIN;
    int n;
    if (executor == EXEC_THREAD_POOL) {
        n = get_int(it, "fixed-pool-size", 16);
    } else {
        /* Pekko's sizing: ceil(cores * factor) within [min, max]. */
        const cJSON *f = it ? cJSON_GetObjectItemCaseSensitive(it, "parallelism-factor") : NULL;
        double factor = cJSON_IsNumber(f) ? f->valuedouble : 1.0;
        n = (int)(factor * nproc() + 0.999);
        int lo = get_int(it, "parallelism-min", 1), hi = get_int(it, "parallelism-max", 64);
        n = n < lo ? lo : n > hi ? hi : n;
    }
    int tp = get_int(it, "throughput", executor == EXEC_THREAD_POOL ? 1 : 5);
    ukko__dispatcher_t *d = dispatcher_new(sys, name, executor, n, tp);
    if (!d)
        return UKKO_ENOMEM;
    sys->disp[sys->ndisp++] = d;
    return 0;
}

/* cfg has passed ukko_actor_config_check (or is NULL). */
int ukko__dispatchers_build(ukko_actor_system_t *sys, const cJSON *cfg)
{
    int rc = build_one(sys, "default",
                       cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "default") : NULL);
    for (const cJSON *it = cfg ? cfg->child : NULL; rc == 0 && it; it = it->next)
        if (cJSON_IsObject(it) && strcmp(it->string, "default"))
            rc = build_one(sys, it->string, it);
    if (rc < 0)
        return rc;
    if (sys->loop) {
        if (sys->ndisp == MAX_DISPATCHERS)
            return UKKO_E2BIG;
        ukko__dispatcher_t *d = dispatcher_new(sys, "loop", EXEC_LOOP, 0, 64);
        ev_async *as = d ? calloc(1, sizeof(*as)) : NULL;
        if (!as) {
            free(d);
            return UKKO_ENOMEM;
        }
        d->loop = sys->loop;
        d->async = as;
        ev_async_init(as, on_async);
        as->data = d;
        sys->disp[sys->ndisp++] = d;
    }
    return 0;
}

int ukko__dispatchers_start(ukko_actor_system_t *sys)
{
    for (int i = 0; i < sys->ndisp; i++) {
        ukko__dispatcher_t *d = sys->disp[i];
        if (d->executor == EXEC_LOOP) {
            ev_async_start(d->loop, d->async);
            /* The async must not keep ev_run alive on its own. */
            ev_unref(d->loop);
            continue;
        }
        for (int j = 0; j < d->nthreads; j++) {
            int rc = pthread_create(&d->workers[j].thread, NULL, worker_main, &d->workers[j]);
            if (rc != 0) {
                ukko_log(UKKO_LOG_ERROR, "actor",
                         "cannot start thread %d of dispatcher \"%s\": %s (lower its size)", j,
                         d->name, ukko_strerror(-rc));
                return -rc;
            }
            d->workers[j].thread_started = true;
        }
    }
    return 0;
}

void ukko__dispatchers_join(ukko_actor_system_t *sys)
{
    for (int i = 0; i < sys->ndisp; i++) {
        ukko__dispatcher_t *d = sys->disp[i];
        atomic_store_explicit(&d->shutdown, true, memory_order_seq_cst);
        for (int j = 0; j < d->nthreads; j++) {
            ukko__worker_t *w = &d->workers[j];
            pthread_mutex_lock(&d->idle_lock);
            /* Pairs with the acquire load in park. */
            atomic_store_explicit(&w->parked, 0, memory_order_release);
            pthread_mutex_unlock(&d->idle_lock);
            futex_wake(&w->parked);
        }
        for (int j = 0; j < d->nthreads; j++)
            if (d->workers[j].thread_started) {
                pthread_join(d->workers[j].thread, NULL);
                d->workers[j].thread_started = false;
            }
        if (d->executor == EXEC_LOOP && ev_is_active((ev_async *)d->async)) {
            ev_ref(d->loop);
            ev_async_stop(d->loop, d->async);
        }
    }
}

void ukko__dispatchers_free(ukko_actor_system_t *sys)
{
    for (int i = 0; i < sys->ndisp; i++) {
        ukko__dispatcher_t *d = sys->disp[i];
        pthread_mutex_destroy(&d->inject_lock);
        pthread_mutex_destroy(&d->idle_lock);
        free(d->async);
        free(d->workers);
        free(d);
        sys->disp[i] = NULL;
    }
    sys->ndisp = 0;
}

ukko__dispatcher_t *ukko__dispatcher_find(ukko_actor_system_t *sys, const char *name)
{
    for (int i = 0; i < sys->ndisp; i++)
        if (!strcmp(sys->disp[i]->name, name))
            return sys->disp[i];
    return NULL;
}

bool ukko__dispatchers_quiet(ukko_actor_system_t *sys)
{
    for (int i = 0; i < sys->ndisp; i++) {
        ukko__dispatcher_t *d = sys->disp[i];
        if (any_work(d))
            return false;
        if (d->executor != EXEC_LOOP &&
            atomic_load_explicit(&d->nidle, memory_order_seq_cst) != d->nthreads)
            return false;
    }
    return atomic_load_explicit(&sys->nsuspended, memory_order_seq_cst) == 0;
}

size_t ukko__dispatcher_queued(ukko__dispatcher_t *d)
{
    /* For /metrics only: relaxed loads of words the owners and thieves move
     * meanwhile, so a reading may be off by the turns taken while it runs. */
    size_t n = atomic_load_explicit(&d->inject_len, memory_order_relaxed);
    for (int i = 0; d->workers && i < d->nthreads; i++) {
        uint32_t h = atomic_load_explicit(&d->workers[i].head, memory_order_relaxed);
        uint32_t t = atomic_load_explicit(&d->workers[i].tail, memory_order_relaxed);
        uint32_t len = t - h;
        n += len <= RING_SIZE ? len : 0; /* head read after a take: ignore */
    }
    return n;
}
