/* fake_sharding.c: see fake_sharding.h. Worker threads each own the
 * entities whose id hashes to them (state and order kept by one thread);
 * outcomes go back to the loop through a locked list and an ev_async, sent
 * when the list goes from empty to non-empty. */
#include "fake_sharding.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS_MAX_TYPES 8
#define FS_MAX_WORKERS 16
#define FS_BUCKETS 4096

typedef struct fs_type {
    ukko_entity_type_t t;
    char name[64];
    ukko_shard_hooks_t hooks;
    int32_t shards;
} fs_type_t;

typedef struct fs_entity {
    fs_type_t *type;
    char *id;
    size_t len;
    void *state;
    struct fs_entity *next;
} fs_entity_t;

typedef struct fs_job {
    struct ukko_sharding *s;
    fs_type_t *type;
    char *id;
    size_t id_len;
    void *data;
    size_t len;
    char traceparent[56];
    void *origin;
    ukko_entity_done_fn done;
    void *arg;
    _Atomic int pending; /* the handler itself, plus one per deferred ack */
    _Atomic int status;
    struct fs_job *next;
} fs_job_t;

typedef struct fs_worker {
    ukko_sharding_t *s;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    fs_job_t *head, *tail;
    bool stop;
    fs_entity_t *buckets[FS_BUCKETS]; /* this worker's thread only */
} fs_worker_t;

struct ukko_entity_ctx {
    ukko_sharding_t *s;
    fs_job_t *job;
    fs_entity_t *ent;
};

struct ukko_sharding {
    struct ev_loop *loop;
    char node[128];
    fs_type_t types[FS_MAX_TYPES];
    int ntypes;
    fs_worker_t workers[FS_MAX_WORKERS];
    int nworkers;
    pthread_mutex_t done_lock;
    fs_job_t *done_head, *done_tail;
    ev_async done_async;
    _Atomic uint64_t delivered, answered;
    bool stopped;
};

static uint32_t hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static void job_free(fs_job_t *j)
{
    free(j->id);
    free(j->data);
    free(j);
}

/* One of the job's holds ends; the last hands the outcome to the loop. Any
 * thread. */
static void complete(fs_job_t *j)
{
    /* Pairs with the increments in ukko_entity_defer. */
    if (atomic_fetch_sub_explicit(&j->pending, 1, memory_order_acq_rel) != 1)
        return;
    ukko_sharding_t *s = j->s;
    pthread_mutex_lock(&s->done_lock);
    bool was_empty = !s->done_head;
    j->next = NULL;
    if (s->done_tail)
        s->done_tail->next = j;
    else
        s->done_head = j;
    s->done_tail = j;
    pthread_mutex_unlock(&s->done_lock);
    if (was_empty)
        ev_async_send(s->loop, &s->done_async);
}

static void on_done_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_sharding_t *s = w->data;
    pthread_mutex_lock(&s->done_lock);
    fs_job_t *j = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->done_lock);
    while (j) {
        fs_job_t *next = j->next;
        atomic_fetch_add(&s->answered, 1);
        j->done(j->arg, atomic_load(&j->status));
        job_free(j);
        j = next;
    }
}

static fs_entity_t *entity(fs_worker_t *w, fs_type_t *type, const char *id, size_t len)
{
    uint32_t b = hash(id, len) % FS_BUCKETS;
    for (fs_entity_t *e = w->buckets[b]; e; e = e->next)
        if (e->type == type && e->len == len && !memcmp(e->id, id, len))
            return e;
    fs_entity_t *e = calloc(1, sizeof(*e));
    e->type = type;
    e->id = malloc(len + 1);
    memcpy(e->id, id, len);
    e->id[len] = '\0';
    e->len = len;
    e->state = calloc(1, type->t.state_size ? type->t.state_size : 1);
    if (type->t.state_init)
        type->t.state_init(e->state, id, len, type->t.ud);
    e->next = w->buckets[b];
    w->buckets[b] = e;
    return e;
}

static void *worker_main(void *arg)
{
    fs_worker_t *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        fs_job_t *j = w->head;
        if (j) {
            w->head = j->next;
            if (!w->head)
                w->tail = NULL;
        }
        bool stop = w->stop;
        pthread_mutex_unlock(&w->lock);
        if (!j) {
            if (stop)
                break;
            continue;
        }
        fs_entity_t *e = entity(w, j->type, j->id, j->id_len);
        struct ukko_entity_ctx ctx = {.s = w->s, .job = j, .ent = e};
        ukko_entity_msg_t m = {.type = 0,
                               .entity_id = j->id,
                               .entity_id_len = j->id_len,
                               .data = j->data,
                               .len = j->len,
                               .traceparent = j->traceparent,
                               .origin = j->origin};
        int rc = j->type->t.handler(&ctx, e->state, &m);
        if (rc < 0)
            atomic_store(&j->status, rc);
        complete(j);
    }
    for (int b = 0; b < FS_BUCKETS; b++)
        while (w->buckets[b]) {
            fs_entity_t *e = w->buckets[b];
            w->buckets[b] = e->next;
            if (e->type->t.state_free)
                e->type->t.state_free(e->state, e->type->t.ud);
            free(e->state);
            free(e->id);
            free(e);
        }
    return NULL;
}

/* ------------------------------------------------------------ the table */

static fs_type_t *find(ukko_sharding_t *s, const char *type)
{
    for (int i = 0; i < s->ntypes; i++)
        if (!strcmp(s->types[i].name, type))
            return &s->types[i];
    return NULL;
}

static int fs_register(ukko_sharding_t *s, const ukko_entity_type_t *t,
                       const ukko_shard_hooks_t *hooks)
{
    if (s->ntypes == FS_MAX_TYPES || find(s, t->name))
        return UKKO_EINVAL;
    fs_type_t *ty = &s->types[s->ntypes++];
    ty->t = *t;
    snprintf(ty->name, sizeof(ty->name), "%s", t->name);
    ty->t.name = ty->name;
    if (hooks)
        ty->hooks = *hooks;
    ty->shards = t->shards;
    return 0;
}

static int fs_set_shards(ukko_sharding_t *s, const char *type, int32_t shards)
{
    fs_type_t *ty = find(s, type);
    if (!ty)
        return UKKO_EINVAL;
    ty->shards = shards;
    return 0;
}

static int fs_deliver(ukko_sharding_t *s, const char *type, int32_t shard,
                      const ukko_entity_msg_t *m, ukko_entity_done_fn done, void *arg)
{
    fs_type_t *ty = find(s, type);
    if (!ty || shard < 0 || shard >= ty->shards || s->stopped)
        return UKKO_ENOENT;
    fs_job_t *j = calloc(1, sizeof(*j));
    j->s = s;
    j->type = ty;
    j->id = malloc(m->entity_id_len + 1);
    memcpy(j->id, m->entity_id, m->entity_id_len);
    j->id[m->entity_id_len] = '\0';
    j->id_len = m->entity_id_len;
    j->data = malloc(m->len + 1);
    if (m->len)
        memcpy(j->data, m->data, m->len);
    j->len = m->len;
    snprintf(j->traceparent, sizeof(j->traceparent), "%s", m->traceparent ? m->traceparent : "");
    j->origin = m->origin;
    j->done = done;
    j->arg = arg;
    atomic_init(&j->pending, 1);
    atomic_init(&j->status, 0);
    fs_worker_t *w = &s->workers[hash(j->id, j->id_len) % (uint32_t)s->nworkers];
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    atomic_fetch_add(&s->delivered, 1);
    return 0;
}

static int32_t fs_shard_of(const void *id, size_t len, int32_t shards)
{
    return rd_kafka_msg_partitioner_murmur2(NULL, id, len, shards, NULL, NULL);
}

ukko_entity_ack_t *ukko_entity_defer(ukko_entity_ctx_t *ctx)
{
    atomic_fetch_add_explicit(&ctx->job->pending, 1, memory_order_relaxed);
    return (ukko_entity_ack_t *)ctx->job;
}

void ukko_entity_ack(ukko_entity_ack_t *ack, int status)
{
    fs_job_t *j = (fs_job_t *)ack;
    if (status < 0)
        atomic_store(&j->status, status);
    complete(j);
}

const char *ukko_entity_id(const ukko_entity_ctx_t *ctx, size_t *len)
{
    *len = ctx->ent->len;
    return ctx->ent->id;
}

void *ukko_entity_ud(const ukko_entity_ctx_t *ctx)
{
    return ctx->ent->type->t.ud;
}

const char *ukko_entity_node(const ukko_entity_ctx_t *ctx)
{
    return ctx->s->node;
}

const streams__shard_api_t fs_api = {
    .register_type = fs_register,
    .set_shards = fs_set_shards,
    .deliver = fs_deliver,
    .defer = ukko_entity_defer,
    .ack = ukko_entity_ack,
    .shard_of = fs_shard_of,
};

/* ------------------------------------------------------------ the test's side */

ukko_sharding_t *fs_new(struct ev_loop *loop, int workers, const char *node_name)
{
    ukko_sharding_t *s = calloc(1, sizeof(*s));
    s->loop = loop;
    snprintf(s->node, sizeof(s->node), "%s", node_name);
    s->nworkers = workers < 1 ? 1 : workers > FS_MAX_WORKERS ? FS_MAX_WORKERS : workers;
    pthread_mutex_init(&s->done_lock, NULL);
    ev_async_init(&s->done_async, on_done_async);
    s->done_async.data = s;
    ev_async_start(loop, &s->done_async);
    for (int i = 0; i < s->nworkers; i++) {
        fs_worker_t *w = &s->workers[i];
        w->s = s;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        pthread_create(&w->thread, NULL, worker_main, w);
    }
    return s;
}

void fs_stop(ukko_sharding_t *s)
{
    if (!s || s->stopped)
        return;
    s->stopped = true;
    for (int i = 0; i < s->nworkers; i++) {
        fs_worker_t *w = &s->workers[i];
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        fs_job_t *j = w->head;
        w->head = w->tail = NULL;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        while (j) {
            fs_job_t *next = j->next;
            job_free(j);
            j = next;
        }
        pthread_join(w->thread, NULL);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
    }
}

void fs_free(ukko_sharding_t *s)
{
    if (!s)
        return;
    fs_stop(s);
    ev_async_stop(s->loop, &s->done_async);
    fs_job_t *j = s->done_head;
    while (j) {
        fs_job_t *next = j->next;
        job_free(j);
        j = next;
    }
    pthread_mutex_destroy(&s->done_lock);
    free(s);
}

int32_t fs_shards(ukko_sharding_t *s, const char *type)
{
    fs_type_t *ty = find(s, type);
    return ty ? ty->shards : 0;
}

int fs_start_shards(ukko_sharding_t *s, const char *type)
{
    fs_type_t *ty = find(s, type);
    if (!ty || !ty->hooks.start)
        return UKKO_ENOENT;
    for (int32_t i = 0; i < ty->shards; i++) {
        int rc = ty->hooks.start(ty->hooks.ud, type, i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void on_stopped(void *arg)
{
    *(bool *)arg = true;
}

void fs_stop_shard(ukko_sharding_t *s, const char *type, int32_t shard, bool at_once, bool *done)
{
    fs_type_t *ty = find(s, type);
    *done = false;
    if (ty && ty->hooks.stop)
        ty->hooks.stop(ty->hooks.ud, type, shard, at_once, on_stopped, done);
}

uint64_t fs_delivered(ukko_sharding_t *s)
{
    return atomic_load(&s->delivered);
}

uint64_t fs_answered(ukko_sharding_t *s)
{
    return atomic_load(&s->answered);
}
