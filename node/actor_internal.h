/* actor_internal.h: the actor runtime's own structures, shared by actor*.c,
 * mailbox.c, msgpool.c and dispatcher.c and by nothing outside node/.
 * Threads: see each struct; the rule is that a field is written either by
 * one thread (named) or only through an atomic whose pairing is commented
 * where it is used. Fields written by different threads sit on separate
 * cache lines (UKKO__LINE). */
#ifndef UKKO_ACTOR_INTERNAL_H
#define UKKO_ACTOR_INTERNAL_H

#include "ukko.h"

#include <pthread.h>
#include <stdatomic.h>

#define UKKO__LINE _Alignas(64)

typedef struct ukko__dispatcher ukko__dispatcher_t;
typedef struct ukko__worker ukko__worker_t;
typedef struct ukko__tentry ukko__tentry_t;
typedef struct ukko_reply ukko__ask_t;
typedef struct ukko__atimer ukko__atimer_t;

/* ---------------------------------------------------------------- envelopes */

enum {
    ENV_COUNTED = 1 << 0, /* counts against a bounded mailbox */
    ENV_TRACE = 1 << 1,   /* trace[] holds a W3C trace context */
    ENV_OWNED = 1 << 2,   /* msg.data was handed over: free_fn releases it */
    ENV_HEAPDATA = 1 << 3 /* msg.data was copied into its own malloc block */
};

enum {
    ENV_USER = 0,  /* an ordinary message (maybe carrying an ask) */
    ENV_WAKE = 1,  /* wakes the actor to look at its flags (stop) */
    ENV_TIMER = 2, /* ext: the ukko__atimer_t that sent it */
    ENV_REPLY = 3  /* a reply or ask timeout; nothing extra */
};

/* One message in a mailbox. Written by the sender before the push, read by
 * the receiver after the pop; only next is shared while queued. */
typedef struct ukko__env {
    _Atomic(struct ukko__env *) next;
    ukko_msg_t msg;
    void (*free_fn)(void *);
    void *ext; /* ENV_USER: the ukko__ask_t of an ask, else NULL; ENV_TIMER: the timer */
    uint16_t flags;
    uint8_t cls;  /* pool size class (msgpool.c) */
    uint8_t kind; /* ENV_* */
    uint8_t trace[25]; /* trace-id(16) parent-id(8) flags(1), when ENV_TRACE */
    _Alignas(16) unsigned char inl[]; /* inline payload, aligned for any struct */
} ukko__env_t;

/* msgpool.c: envelopes with room for n inline payload bytes. Any thread. */
ukko__env_t *ukko__env_alloc(size_t inline_len);
void ukko__env_free(ukko__env_t *e);
/* Releases what a message holds (payload, sender, ask) but not the envelope. */
void ukko__env_release(ukko__env_t *e);

/* ---------------------------------------------------------------- mailbox */

/* mailbox.c: libponyrt's scheme. head is the producers' end (an exchange),
 * tail the consumer's (the last message taken, kept as the stub). The low bit
 * of head marks "empty and not scheduled": a push that finds it set owns the
 * job of scheduling the actor. "Consumer" below is whoever holds that token:
 * the thread running the actor's turn, or, once the actor is dead, the
 * pusher that drops what landed late (ukko__actor_push). */
typedef struct ukko__mbox {
    UKKO__LINE _Atomic(ukko__env_t *) head; /* producers */
    _Atomic int64_t count;                   /* producers (+) and consumer (-), bounded only */
    UKKO__LINE ukko__env_t *tail;           /* consumer only */
} ukko__mbox_t;

void ukko__mbox_init(ukko__mbox_t *q, ukko__env_t *stub);
/* Any thread. Returns true when the mailbox was marked empty: the caller must
 * schedule the actor. */
bool ukko__mbox_push(ukko__mbox_t *q, ukko__env_t *e);
/* Consumer only. The envelope stays valid until the next pop. */
ukko__env_t *ukko__mbox_pop(ukko__mbox_t *q);
/* Consumer only: true when the mailbox was empty and is now marked so (the
 * actor is no longer scheduled and must not be touched any more). */
bool ukko__mbox_markempty(ukko__mbox_t *q);
/* Consumer only, once nothing can push: frees every queued envelope. */
void ukko__mbox_destroy(ukko__mbox_t *q);

/* ---------------------------------------------------------------- timers */

/* An entry in the system's timer heap (actor_timer.c). idx is guarded by
 * the timer lock; fire runs on the timer thread with the lock released, after
 * the entry left the heap; drop runs for entries still queued at shutdown. */
struct ukko__tentry {
    int64_t due_ms;
    int32_t idx; /* -1: not in the heap */
    void (*fire)(ukko__tentry_t *e);
    void (*drop)(ukko__tentry_t *e);
};

typedef struct ukko__timers {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    ukko__tentry_t **heap;
    size_t n, cap;
    bool stop;
    bool started;
    pthread_t thread;
} ukko__timers_t;

/* Any thread. Arms e (not armed yet) for due_ms. */
void ukko__timer_arm(ukko_actor_system_t *sys, ukko__tentry_t *e, int64_t due_ms);
/* Any thread. True when e was in the heap and is removed (fire will not run). */
bool ukko__timer_cancel(ukko_actor_system_t *sys, ukko__tentry_t *e);
int ukko__timers_start(ukko_actor_system_t *sys);
void ukko__timers_stop(ukko_actor_system_t *sys);
/* Actor side of actor timers: cancels them all (owner thread). */
void ukko__actor_timers_clear(ukko_actor_t *a);
/* Delivery check of a timer message (owner thread): false when stale. */
bool ukko__atimer_deliver(ukko_actor_t *a, const ukko__env_t *e);
void ukko__atimer_unref(ukko__atimer_t *t);

/* ---------------------------------------------------------------- asks */

void ukko__ask_unref(ukko__ask_t *k);

/* ---------------------------------------------------------------- actors */

enum {
    ACTOR_STOP = 1 << 0, /* stop requested (ukko_actor_stop or the system) */
    ACTOR_DEAD = 1 << 1  /* stopped: sends fail */
};

struct ukko_actor_ctx {
    ukko_actor_t *self;
    bool stop_self;
};

typedef struct timer_slot {
    uint64_t key;
    ukko__atimer_t *t;
} timer_slot_t;

struct ukko_actor {
    /* Read-mostly: written at spawn, then only read. */
    ukko_actor_system_t *sys;
    ukko__dispatcher_t *disp;
    ukko_behaviour_t beh;
    void *arg;
    void (*arg_free)(void *);
    uint64_t id;
    int64_t capacity;
    int on_failure;
    int max_restarts;
    int64_t backoff_min_ms, backoff_max_ms;
    char name[64];

    ukko__mbox_t mbox; /* its own two cache lines */

    /* Owner only: the thread running the actor's turn. */
    UKKO__LINE struct ukko_actor *run_next; /* intrusive link in a dispatcher queue (under its lock) */
    struct ukko_actor_ctx ctx;
    void *state;
    timer_slot_t *timers;
    size_t ntimers, ctimers;
    ukko_actor_t **watching;
    size_t nwatching, cwatching;
    int failures;
    bool needs_init;

    /* Shared: written rarely, by any thread. */
    UKKO__LINE _Atomic int refs;
    _Atomic int flags;                  /* ACTOR_*: fetch_or by stoppers, load by senders */
    pthread_mutex_t wlock;              /* guards watchers and the DEAD transition */
    ukko_actor_t **watchers;
    size_t nwatchers, cwatchers;
    ukko__tentry_t backoff;             /* idx under the timer lock */
    struct ukko_actor *reg_prev, *reg_next; /* registry, under sys->reg_lock */
    struct ukko_actor *grave_next;          /* graveyard, under sys->grave_lock */
};

/* Actor turn (actor.c): handles up to throughput messages. Returns true when
 * the actor is still scheduled and must be queued again by the caller. */
bool ukko__actor_run(ukko_actor_t *a, int throughput);
/* Marks the actor runnable on its dispatcher (dispatcher.c). Any thread. */
void ukko__schedule(ukko_actor_t *a);
/* Pushes an envelope (bounds already checked) and schedules the actor when
 * its mailbox was empty; if the actor is dead, drops it instead. Any thread
 * holding a reference to a. */
void ukko__actor_push(ukko_actor_t *a, ukko__env_t *e);
/* Delivers a runtime envelope (reply, timeout, timer, terminated). */
int ukko__send_env(ukko_actor_t *to, ukko__env_t *e);
/* tell with an ask attached (ext: one reference handed over on success). */
int ukko__tell(ukko_actor_t *to, const ukko_send_t *s, void *ext);
/* New references to every live actor (the caller releases them). */
size_t ukko__actors_snapshot(ukko_actor_system_t *sys, ukko_actor_t ***out);

/* ---------------------------------------------------------------- dispatchers */

enum { EXEC_FORK_JOIN = 0, EXEC_THREAD_POOL = 1, EXEC_LOOP = 2 };

#define RING_SIZE 256u

/* A worker thread. The ring is its local run queue: the owner pushes at
 * tail, the owner and thieves take at head with a CAS (Go's runq). */
struct ukko__worker {
    UKKO__LINE _Atomic uint32_t head;  /* owner and thieves (CAS) */
    UKKO__LINE _Atomic uint32_t tail;  /* owner (store), thieves (load) */
    _Atomic(ukko_actor_t *) ring[RING_SIZE];
    /* Owner only. */
    UKKO__LINE ukko__dispatcher_t *d;
    int index;
    pthread_t thread;
    bool thread_started;
    uint32_t tick;
    uint64_t rng;
    bool spinning;      /* also set by a waker, under d->idle_lock, while we are parked */
    ukko__worker_t *idle_next; /* under d->idle_lock */
    UKKO__LINE _Atomic uint32_t parked; /* futex word: waker stores 0 */
    /* Written by the owner, read by the starvation monitor. */
    UKKO__LINE _Atomic int64_t turn_start_ms; /* 0: not in a turn */
    _Atomic(ukko_actor_t *) cur;
    _Atomic uint64_t turn_seq;
    _Atomic uint64_t msgs;
    /* Written by the monitor (and the owner at turn end, CAS). */
    UKKO__LINE _Atomic uint64_t reported_seq;
};

struct ukko__dispatcher {
    char name[64];
    int executor;
    int nthreads;
    int throughput;
    bool local_push;       /* fork-join: a worker schedules onto its own ring */
    bool starvation_check; /* fork-join dispatchers only */
    ukko_actor_system_t *sys;
    ukko__worker_t *workers;

    /* The injection queue: schedules from outside this pool's workers. */
    UKKO__LINE pthread_mutex_t inject_lock;
    ukko_actor_t *inject_head, *inject_tail;
    _Atomic size_t inject_len; /* written under the lock, read without */

    /* Parking (Go's scheduler): spinners look for work before parking. */
    UKKO__LINE _Atomic int nspinning;
    _Atomic int nidle;
    _Atomic bool shutdown;
    _Atomic int barrier; /* under TSan only: stands in for fences */
    pthread_mutex_t idle_lock;
    ukko__worker_t *idle;

    /* Figures, bumped by workers and the monitor, read by /metrics. */
    UKKO__LINE _Atomic uint64_t starvations;

    /* EXEC_LOOP: the libev side. */
    void *async; /* ev_async *, started on the loop thread */
    struct ev_loop *loop;
};

int ukko__dispatchers_build(ukko_actor_system_t *sys, const cJSON *cfg);
int ukko__dispatchers_start(ukko_actor_system_t *sys);
void ukko__dispatchers_join(ukko_actor_system_t *sys);
void ukko__dispatchers_free(ukko_actor_system_t *sys);
ukko__dispatcher_t *ukko__dispatcher_find(ukko_actor_system_t *sys, const char *name);
/* True when no actor is queued or running anywhere. */
bool ukko__dispatchers_quiet(ukko_actor_system_t *sys);
/* Actors with messages waiting for a thread of d (run rings and injection
 * queue); a racy reading for /metrics. Any thread. */
size_t ukko__dispatcher_queued(ukko__dispatcher_t *d);
/* Runs queued loop actors (the loop thread): at most max turns. */
void ukko__loop_run(ukko__dispatcher_t *d, int max);
/* Starvation monitor scan (timer thread). */
void ukko__starvation_scan(ukko_actor_system_t *sys, int64_t now);

/* ---------------------------------------------------------------- the system */

/* Per-thread state: which worker (if any) runs here and which actor's
 * handler is running, for trace inheritance and ctx checks. */
typedef struct ukko__tls {
    ukko__worker_t *worker;
    ukko_actor_t *actor;
    const ukko__env_t *env;
    bool timer_thread;
    /* ukko_actor_batch_begin/_end: schedules onto pools held here, one
     * chain per dispatcher, published at _end with one wake-up each */
    int batch_depth;
    int nheld;
    struct ukko__held {
        ukko__dispatcher_t *d;
        ukko_actor_t *head, *tail;
        size_t n;
    } held[4];
} ukko__tls_t;

extern _Thread_local ukko__tls_t ukko__tls;

#define MAX_DISPATCHERS 16

struct ukko_actor_system {
    ukko__dispatcher_t *disp[MAX_DISPATCHERS];
    int ndisp;
    int64_t starvation_ms;
    struct ev_loop *loop;
    ukko__timers_t timers;

    UKKO__LINE _Atomic int refs; /* the owner's + one per actor struct */
    _Atomic bool closing;        /* stop began: refuse spawns and outside sends */
    _Atomic bool stopped;        /* threads joined */
    _Atomic uint64_t next_id;
    _Atomic uint64_t next_ask;

    UKKO__LINE pthread_mutex_t reg_lock;
    ukko_actor_t *reg_head;
    _Atomic int64_t nactors;
    _Atomic int64_t nsuspended; /* actors waiting out a restart backoff */

    UKKO__LINE pthread_mutex_t grave_lock;
    ukko_actor_t *grave;

    UKKO__LINE _Atomic uint64_t restarts;
    _Atomic uint64_t failures;
    _Atomic uint64_t dead_letters;
    _Atomic uint64_t dropped_at_stop;
};

/* Frees actors whose last reference went (timer thread, or at stop). */
void ukko__grave_reap(ukko_actor_system_t *sys);
void ukko__system_unref(ukko_actor_system_t *sys);
/* Logs a starvation once per turn (whoever notices first). */
void ukko__starvation_report(ukko__worker_t *w, uint64_t seq, ukko_actor_t *a, int64_t held_ms,
                             bool ended);

#endif /* UKKO_ACTOR_INTERNAL_H */
