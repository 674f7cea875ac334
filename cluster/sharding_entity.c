/* sharding_entity.c: entities as actors: spawned on the default dispatcher
 * on their first message, one message at a time in delivery order, stopped
 * when idle past the passivation timeout or when their shard stops. Each
 * delivery counts its acknowledgement: the handler's return plus every
 * ukko_entity_defer token; when the count reaches zero the delivery is
 * pushed onto the sharding's completion stack, and the loop thread takes
 * the whole stack at once (one ev_async wake-up per burst, not one message
 * per record) and runs the done callbacks and the shard's bookkeeping
 * there. Threads: delivery, spawn, stop and completions run on the loop
 * thread; handlers and acks on dispatcher threads (any thread for
 * ukko_entity_ack); they meet at mailboxes and the completion stack.
 * Invariant: an entity record is freed only once none of its deliveries is
 * outstanding, or once the sharding is freed (a later ack frees its
 * delivery and touches nothing else). */
#include "sharding_runtime.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SH_MSG_DELIVER 1u
#define SH_MSG_TELL 3u

/* A tell from another thread: this header, the type name, the id, the data. */
typedef struct sh_tell_hdr {
    uint32_t msg_type;
    uint32_t type_len, id_len, len;
} sh_tell_hdr_t;

/* What an entity actor is given at spawn (freed with the actor). */
typedef struct ent_arg {
    sh_type_t *ty;
    /* copied: an actor's free may run after the sharding is gone */
    void (*state_free)(void *state, void *ud);
    void *ud;
    size_t id_len;
    char id[];
} ent_arg_t;

/* The actor's state: this header, then the application's state. */
typedef struct ent_state {
    ent_arg_t *a;
    alignas(16) unsigned char user[];
} ent_state_t;

/* One delivery; shared by the handler and every defer token. */
typedef struct sh_delivery {
    struct sh_delivery *done_next; /* on the completion stack */
    atomic_int refs;   /* the handler's (released when its message is done) + tokens */
    atomic_int status; /* the first failure, or 0 */
    bool handled;
    struct sh_done_hub *hub;
    sh_entity_t *ent;
    ukko_entity_done_fn done;
    void *arg;
    uint32_t msg_type;
    void *origin;
    char tp[SH_TRACEPARENT_LEN + 1];
    size_t len;
    size_t cap;        /* room for data */
    unsigned char data[];
} sh_delivery_t;

/* Deliveries are made and freed on the loop thread, a burst of hundreds at
 * a time, more than malloc's per-thread cache holds: those with at most
 * POOL_DATA bytes are kept on a free list instead (plain malloc/free under
 * AddressSanitizer, so a use after free is still caught). */
#define POOL_DATA 256
#define POOL_MAX 8192
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ON 0
#else
#define POOL_ON 1
#endif

/* The completion stack, apart from sh_t: the last ack of a deferred
 * delivery may come after ukko_sharding_free (a producer's delivery report
 * on the loop, a reply on any thread), and must find it. refs: the
 * sharding's 1; a pusher's 1 from before its push onto an empty stack
 * until after its ev_async_send (the loop may complete the delivery in
 * between); from the close on, 1 per delivery still out. The last frees
 * it. Closed: head is HUB_CLOSED for good, and a late last ack frees its
 * delivery itself. */
typedef struct sh_done_hub {
    _Atomic(sh_delivery_t *) head;
    atomic_size_t refs;
    struct ev_loop *loop;
    ev_async async;
} sh_done_hub_t;

#define HUB_CLOSED ((sh_delivery_t *)(uintptr_t)1)

static void hub_unref(sh_done_hub_t *h, size_t n)
{
    /* acq_rel: whoever frees it comes after every other holder's last use. */
    if (atomic_fetch_sub_explicit(&h->refs, n, memory_order_acq_rel) == n)
        free(h);
}

static sh_delivery_t *delivery_alloc(sh_t *s, size_t len)
{
    sh_delivery_t *d;
    if (len <= POOL_DATA && s->pool) {
        d = s->pool;
        s->pool = d->done_next;
        s->npool--;
        return d;
    }
    size_t cap = len <= POOL_DATA ? POOL_DATA : len;
    d = malloc(sizeof(*d) + cap + 1);
    if (d)
        d->cap = cap;
    return d;
}

static void delivery_release(sh_t *s, sh_delivery_t *d)
{
    if (POOL_ON && d->cap == POOL_DATA && s->npool < POOL_MAX && !s->freed) {
        d->done_next = s->pool;
        s->pool = d;
        s->npool++;
        return;
    }
    free(d);
}

struct ukko_entity_ctx {
    ukko_actor_ctx_t *actx;
    ent_state_t *st;
    sh_delivery_t *d;
};

/* ------------------------------------------------- dispatcher threads */

static void unref(sh_delivery_t *d)
{
    /* pairs with the fetch_add of ukko_entity_defer: the last one posts */
    if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) != 1)
        return;
    sh_done_hub_t *h = d->hub;
    bool held = false;
    sh_delivery_t *old = atomic_load_explicit(&h->head, memory_order_relaxed);
    for (;;) {
        if (old == HUB_CLOSED) {
            /* The sharding is gone and waits for nothing: d ends here, with
             * the ref on the hub the close counted for it. */
            free(d);
            hub_unref(h, held ? 2 : 1);
            return;
        }
        if (!old && !held) {
            /* This push may wake the loop: the hub must outlive the send.
             * Relaxed: d is outstanding, so the hub is alive now. */
            atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
            held = true;
        }
        d->done_next = old;
        /* Pairs with the acquire exchanges in complete_all and the close:
         * d's fields and status are visible to the loop thread with d. */
        if (atomic_compare_exchange_weak_explicit(&h->head, &old, d, memory_order_release,
                                                  memory_order_relaxed))
            break;
    }
    if (!old) /* empty -> not empty: the loop takes the lot */
        ev_async_send(h->loop, &h->async);
    if (held)
        hub_unref(h, 1);
}

static void fail(sh_delivery_t *d, int status)
{
    int zero = 0;
    /* the first failure wins; pairs with the load in unref */
    atomic_compare_exchange_strong_explicit(&d->status, &zero, status, memory_order_acq_rel,
                                            memory_order_acquire);
}

static void delivery_free(void *p)
{
    sh_delivery_t *d = p;
    if (!d->handled)
        fail(d, UKKO_ECANCELED); /* dropped: the entity stopped first */
    unref(d);
}

static int ent_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    (void)ctx;
    ent_state_t *st = state;
    ent_arg_t *a = arg;
    st->a = a;
    if (a->ty->t.state_init)
        return a->ty->t.state_init(st->user, a->id, a->id_len, a->ty->t.ud);
    return 0;
}

static void ent_free(void *state, void *arg)
{
    (void)arg;
    ent_state_t *st = state;
    if (st->a && st->a->state_free)
        st->a->state_free(st->user, st->a->ud);
}

static int ent_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    ent_state_t *st = state;
    if (msg->type != SH_MSG_DELIVER)
        return 0;
    sh_delivery_t *d = msg->data;
    d->handled = true;
    ukko_entity_ctx_t ec = {ctx, st, d};
    ukko_entity_msg_t m = {d->msg_type, st->a->id, st->a->id_len, d->data, d->len, d->tp,
                           d->origin};
    int rc = st->a->ty->t.handler(&ec, st->user, &m);
    if (rc < 0)
        fail(d, rc);
    /* A handler's failure is the message's, never the entity's: no restart. */
    return 0;
}

ukko_entity_ack_t *ukko_entity_defer(ukko_entity_ctx_t *ctx)
{
    /* pairs with the fetch_sub in unref */
    atomic_fetch_add_explicit(&ctx->d->refs, 1, memory_order_relaxed);
    return (ukko_entity_ack_t *)ctx->d;
}

void ukko_entity_ack(ukko_entity_ack_t *ack, int status)
{
    sh_delivery_t *d = (sh_delivery_t *)ack;
    if (!d)
        return;
    if (status < 0)
        fail(d, status);
    unref(d);
}

const char *ukko_entity_id(const ukko_entity_ctx_t *ctx, size_t *len)
{
    if (len)
        *len = ctx->st->a->id_len;
    return ctx->st->a->id;
}

void *ukko_entity_ud(const ukko_entity_ctx_t *ctx)
{
    return ctx->st->a->ty->t.ud;
}

const char *ukko_entity_node(const ukko_entity_ctx_t *ctx)
{
    return ctx->st->a->ty->s->self_name;
}

/* ------------------------------------------------------- loop thread */

static uint32_t bucket_of(const sh_shard_t *sh, const char *id, size_t len)
{
    return (uint32_t)sh_murmur2(id, len) % (uint32_t)sh->nbuckets;
}

static void ent_release(sh_entity_t *e)
{
    if (e->actor) {
        (void)ukko_actor_stop(e->actor);
        ukko_actor_release(e->actor);
        e->actor = NULL;
        e->shard->type->entities_live--;
    }
}

static void unlink_ent(sh_shard_t *sh, sh_entity_t *e)
{
    uint32_t b = bucket_of(sh, e->id, e->id_len);
    for (sh_entity_t **pp = &sh->ents[b]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            sh->nents--;
            return;
        }
}

static int sink_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    if (msg->type == SH_MSG_TELL && msg->len >= sizeof(sh_tell_hdr_t)) {
        sh_t *s = *(sh_t **)state;
        sh_tell_hdr_t h;
        memcpy(&h, msg->data, sizeof(h));
        const char *p = (const char *)msg->data + sizeof(h);
        char type[SH_MAX_NAME + 1];
        if (s->freed || h.type_len > SH_MAX_NAME)
            return 0;
        memcpy(type, p, h.type_len);
        type[h.type_len] = '\0';
        int rc = ukko_entity_tell(s, type, p + h.type_len, h.id_len, h.msg_type,
                                  p + h.type_len + h.id_len, h.len);
        if (rc < 0 && rc != UKKO_EAGAIN) /* EAGAIN was logged and counted */
            ukko_logf(UKKO_LOG_WARN, "sharding", UKKO_FIELDS(UKKO_FS("type", type)),
                      "a tell to a %s entity made off the loop thread failed: %s", type,
                      ukko_strerror(rc));
        return 0;
    }
    return 0;
}

/* A coarse clock for idle times (passivation is in seconds): a few ns to
 * read, where CLOCK_MONOTONIC costs a vDSO call per record. Same base as
 * ukko_now_ms, at most a few ms behind it. */
static int64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One finished delivery, on the loop thread. */
static void complete(sh_t *s, sh_delivery_t *d, int64_t now)
{
    sh_entity_t *e = d->ent;
    sh_shard_t *sh = e->shard;
    int status = atomic_load_explicit(&d->status, memory_order_relaxed);
    e->inflight--;
    sh->inflight--;
    s->ndeliveries--;
    e->last_used = now;
    if (d->done && !s->freed)
        d->done(d->arg, status);
    delivery_release(s, d);
    if (e->stopped && e->inflight == 0)
        free(e);
    else if (sh->state == R_STOPPING && sh->inflight == 0 && !s->freed)
        sh__shard_progress(sh);
}

/* Finishes a stack taken whole, oldest first; returns how many. */
static size_t complete_list(sh_t *s, sh_delivery_t *d)
{
    size_t n = 0;
    sh_delivery_t *fifo = NULL;
    while (d) {
        sh_delivery_t *next = d->done_next;
        d->done_next = fifo;
        fifo = d;
        d = next;
    }
    if (!fifo)
        return 0;
    int64_t now = coarse_ms();
    while (fifo) {
        sh_delivery_t *next = fifo->done_next;
        complete(s, fifo, now);
        fifo = next;
        n++;
    }
    return n;
}

static void complete_all(sh_t *s)
{
    /* Pairs with the release CAS in unref. */
    (void)complete_list(s, atomic_exchange_explicit(&s->hub->head, NULL, memory_order_acquire));
}

static void on_done_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    complete_all(w->data);
}

static int sink_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    (void)ctx;
    *(sh_t **)state = arg;
    return 0;
}

int sh__entity_setup(sh_t *s)
{
    sh_done_hub_t *h = calloc(1, sizeof(*h));
    if (!h)
        return UKKO_ENOMEM;
    atomic_init(&h->head, NULL);
    atomic_init(&h->refs, 1);
    h->loop = s->loop;
    ev_async_init(&h->async, on_done_async);
    h->async.data = s;
    ev_async_start(s->loop, &h->async);
    s->hub = h;
    ukko_behaviour_t b = {sizeof(sh_t *), sink_init, sink_handle, NULL};
    ukko_spawn_opts_t o = {.name = "sharding-tells", .dispatcher = "loop", .arg = s};
    int rc = ukko_actor_spawn(s->sys, &b, &o, &s->sink);
    if (rc < 0)
        ukko_logf(UKKO_LOG_ERROR, "sharding", UKKO_FIELDS(UKKO_FS("error", ukko_strerror(rc))),
                  "cannot spawn the loop actor that takes tells made off the loop thread: %s",
                  ukko_strerror(rc));
    return rc;
}

void sh__entity_teardown(sh_t *s)
{
    if (s->sink) {
        (void)ukko_actor_stop(s->sink);
        ukko_actor_release(s->sink);
        s->sink = NULL;
    }
    if (s->hub) {
        sh_done_hub_t *h = s->hub;
        ev_async_stop(s->loop, &h->async);
        /* Each delivery still out holds the hub from here: its last ack
         * may come after s is freed. Counted before the close, so that a
         * late ack cannot take the count to zero under us. */
        atomic_fetch_add_explicit(&h->refs, s->ndeliveries, memory_order_relaxed);
        /* Pairs with the release CAS in unref. Completions already pushed:
         * the bookkeeping runs (s->freed keeps the callbacks out), the
         * deliveries are freed; the later ones find the hub closed. */
        size_t n = complete_list(
            s, atomic_exchange_explicit(&h->head, HUB_CLOSED, memory_order_acq_rel));
        s->hub = NULL;
        hub_unref(h, n + 1); /* theirs, and the sharding's */
    }
    while (s->pool) {
        sh_delivery_t *d = s->pool;
        s->pool = d->done_next;
        free(d);
    }
    s->npool = 0;
}

static int grow(sh_shard_t *sh)
{
    size_t nb = sh->nbuckets ? sh->nbuckets * 2 : 64;
    sh_entity_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return UKKO_ENOMEM;
    size_t old = sh->nbuckets;
    sh_entity_t **ob = sh->ents;
    sh->ents = b;
    sh->nbuckets = nb;
    for (size_t i = 0; i < old; i++)
        for (sh_entity_t *e = ob[i]; e;) {
            sh_entity_t *next = e->next;
            uint32_t k = bucket_of(sh, e->id, e->id_len);
            e->next = b[k];
            b[k] = e;
            e = next;
        }
    free(ob);
    return 0;
}

static sh_entity_t *find(sh_shard_t *sh, const char *id, size_t len)
{
    if (!sh->nbuckets)
        return NULL;
    for (sh_entity_t *e = sh->ents[bucket_of(sh, id, len)]; e; e = e->next)
        if (e->id_len == len && !memcmp(e->id, id, len))
            return e;
    return NULL;
}

static void arg_free(void *p)
{
    free(p);
}

static int spawn(sh_shard_t *sh, const char *id, size_t len, sh_entity_t **out)
{
    sh_type_t *ty = sh->type;
    if ((!sh->nbuckets || sh->nents >= sh->nbuckets * 2) && grow(sh) < 0)
        return UKKO_ENOMEM;
    sh_entity_t *e = calloc(1, sizeof(*e) + len + 1);
    ent_arg_t *a = malloc(sizeof(*a) + len + 1);
    if (!e || !a) {
        free(e);
        free(a);
        return UKKO_ENOMEM;
    }
    a->ty = ty;
    a->state_free = ty->t.state_free;
    a->ud = ty->t.ud;
    a->id_len = len;
    memcpy(a->id, id, len);
    a->id[len] = '\0';
    e->shard = sh;
    e->id_len = len;
    memcpy(e->id, id, len);
    char name[96];
    snprintf(name, sizeof(name), "entity-%s-%d-%.*s", ty->name, (int)sh->id,
             (int)(len > 40 ? 40 : len), id);
    ukko_behaviour_t b = {offsetof(ent_state_t, user) + ty->t.state_size, ent_init, ent_handle,
                          ent_free};
    ukko_spawn_opts_t o = {.name = name, .arg = a, .arg_free = arg_free,
                           .on_failure = UKKO_SUPERVISE_RESTART};
    int rc = ukko_actor_spawn(ty->s->sys, &b, &o, &e->actor);
    if (rc < 0) {
        free(e); /* on failure the runtime leaves arg to the caller */
        free(a);
        return rc;
    }
    uint32_t k = bucket_of(sh, id, len);
    e->next = sh->ents[k];
    sh->ents[k] = e;
    sh->nents++;
    ty->entities_live++;
    *out = e;
    return 0;
}

int sh__deliver(sh_shard_t *sh, const char *id, size_t id_len, uint32_t msg_type,
                const void *data, size_t len, const char *tp, void *origin,
                ukko_entity_done_fn done, void *arg)
{
    sh_t *s = sh->type->s;
    sh_entity_t *e = find(sh, id, id_len);
    int rc = 0;
    if (!e && (rc = spawn(sh, id, id_len, &e)) < 0) {
        ukko_logf(UKKO_LOG_WARN, "sharding",
                  UKKO_FIELDS(UKKO_FS("type", sh->type->name), UKKO_FI("shard", sh->id),
                              UKKO_FS("error", ukko_strerror(rc))),
                  "entity of %s/%d could not be started (%s): its message is failed",
                  sh->type->name, (int)sh->id, ukko_strerror(rc));
        return rc;
    }
    sh_delivery_t *d = delivery_alloc(s, len);
    if (!d)
        return UKKO_ENOMEM;
    atomic_init(&d->refs, 1);
    atomic_init(&d->status, 0);
    d->handled = false;
    d->hub = s->hub;
    d->ent = e;
    d->done = done;
    d->arg = arg;
    d->msg_type = msg_type;
    d->origin = origin;
    size_t tplen = tp ? strnlen(tp, SH_TRACEPARENT_LEN) : 0;
    if (tplen)
        memcpy(d->tp, tp, tplen);
    d->tp[tplen] = '\0';
    d->len = len;
    if (len)
        memcpy(d->data, data, len);
    ukko_send_t m = {SH_MSG_DELIVER, d, sizeof(*d), delivery_free, NULL,
                     d->tp[0] ? d->tp : NULL};
    e->inflight++;
    sh->inflight++;
    e->last_used = coarse_ms();
    rc = ukko_actor_tell(e->actor, &m);
    if (rc == UKKO_EINVAL && m.traceparent) {
        m.traceparent = NULL; /* a malformed trace context is not worth the message */
        rc = ukko_actor_tell(e->actor, &m);
    }
    if (rc < 0) {
        e->inflight--;
        sh->inflight--;
        delivery_release(s, d);
        return rc;
    }
    s->ndeliveries++;
    return 0;
}

void sh__entities_stop(sh_shard_t *sh, bool force)
{
    (void)force;
    for (size_t b = 0; b < sh->nbuckets; b++) {
        sh_entity_t *e = sh->ents[b];
        sh->ents[b] = NULL;
        while (e) {
            sh_entity_t *next = e->next;
            ent_release(e);
            /* Once the sharding is freed no completion comes back here: a
             * late ack frees only its delivery. */
            if (e->inflight == 0 || sh->type->s->freed)
                free(e);
            else
                e->stopped = true; /* freed by its last completion */
            e = next;
        }
    }
    sh->nents = 0;
}

void sh__passivate(sh_t *s, int64_t now)
{
    for (size_t t = 0; t < s->ntypes; t++) {
        sh_type_t *ty = &s->types[t];
        for (int32_t i = 0; i < ty->n; i++) {
            sh_shard_t *sh = &ty->sh[i];
            if (!sh->nents)
                continue;
            for (size_t b = 0; b < sh->nbuckets; b++)
                for (sh_entity_t *e = sh->ents[b]; e;) {
                    sh_entity_t *next = e->next;
                    if (e->inflight == 0 && now - e->last_used >= ty->passivate_ms) {
                        unlink_ent(sh, e);
                        ent_release(e);
                        free(e);
                    }
                    e = next;
                }
        }
    }
}

int sh__tell_queue(sh_t *s, const char *type, const char *id, size_t id_len, uint32_t msg_type,
                   const void *data, size_t len)
{
    size_t tl = strlen(type);
    if (tl > SH_MAX_NAME || id_len > SH_MAX_ID || len > (size_t)s->cfg->max_message_bytes)
        return UKKO_EINVAL;
    size_t n = sizeof(sh_tell_hdr_t) + tl + id_len + len;
    unsigned char *buf = malloc(n);
    if (!buf)
        return UKKO_ENOMEM;
    sh_tell_hdr_t h = {msg_type, (uint32_t)tl, (uint32_t)id_len, (uint32_t)len};
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), type, tl);
    memcpy(buf + sizeof(h) + tl, id, id_len);
    if (len)
        memcpy(buf + sizeof(h) + tl + id_len, data, len);
    ukko_send_t m = {SH_MSG_TELL, buf, n, free, NULL, NULL};
    int rc = ukko_actor_tell(s->sink, &m);
    if (rc < 0)
        free(buf);
    return rc;
}
