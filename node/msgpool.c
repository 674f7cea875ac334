/* msgpool.c: envelopes for actor messages, from per-thread free lists that
 * trade whole batches through a global list per size class (libponyrt's pool
 * idea): a message made on one thread and freed on another costs no lock
 * most of the time. Any thread; each thread's cache is its own, the global
 * lists are under a mutex. Under AddressSanitizer it is plain malloc/free, so
 * a use after free is still caught. */
#include "actor_internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define POOL_OFF 1
#else
#define POOL_OFF 0
#endif

#define NCLASS 3
#define BATCH 64
#define GLOBAL_MAX_BATCHES 512 /* per class: beyond this, memory goes back to libc */
#define CLS_MALLOC 0xff

static const size_t class_size[NCLASS] = {128, 256, 640};

typedef struct cache {
    ukko__env_t *head; /* chained through ext */
    uint32_t n;
} cache_t;

typedef struct tcache {
    cache_t c[NCLASS];
    bool registered;
} tcache_t;

typedef struct global {
    pthread_mutex_t lock;
    ukko__env_t *batches; /* first env of each batch; batches chained via free_fn slot */
    size_t nbatches;
} global_t;

static _Thread_local tcache_t tc;
static global_t globals[NCLASS] = {
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
};
static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;

/* A batch is BATCH envelopes chained through ext; batches are chained
 * through the first envelope's msg.data (unused while pooled). */
static void give_batch(int c, ukko__env_t *first)
{
    global_t *g = &globals[c];
    pthread_mutex_lock(&g->lock);
    if (g->nbatches < GLOBAL_MAX_BATCHES) {
        first->msg.data = g->batches;
        g->batches = first;
        g->nbatches++;
        first = NULL;
    }
    pthread_mutex_unlock(&g->lock);
    while (first) {
        ukko__env_t *next = first->ext;
        free(first);
        first = next;
    }
}

static ukko__env_t *take_batch(int c)
{
    global_t *g = &globals[c];
    pthread_mutex_lock(&g->lock);
    ukko__env_t *first = g->batches;
    if (first) {
        g->batches = first->msg.data;
        g->nbatches--;
    }
    pthread_mutex_unlock(&g->lock);
    return first;
}

/* Thread exit: hand the cache back so nothing is stranded. */
static void flush(void *p)
{
    tcache_t *t = p;
    for (int c = 0; c < NCLASS; c++) {
        while (t->c[c].head) {
            ukko__env_t *first = t->c[c].head, *e = first;
            uint32_t n = 1;
            while (n < BATCH && e->ext) {
                e = e->ext;
                n++;
            }
            t->c[c].head = e->ext;
            e->ext = NULL;
            if (n == BATCH) {
                give_batch(c, first);
                continue;
            }
            /* Batches in the global list are always whole: free the rest. */
            while (first) {
                ukko__env_t *next = first->ext;
                free(first);
                first = next;
            }
        }
        t->c[c].n = 0;
    }
}

static void make_key(void)
{
    pthread_key_create(&tc_key, flush);
}

static void *raw_alloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        ukko_log(UKKO_LOG_ERROR, "actor", "out of memory allocating a %zu-byte message", n);
        abort();
    }
    return p;
}

ukko__env_t *ukko__env_alloc(size_t inline_len)
{
    size_t need = sizeof(ukko__env_t) + inline_len;
    int c = 0;
    while (c < NCLASS && class_size[c] < need)
        c++;
    ukko__env_t *e;
    if (POOL_OFF || c == NCLASS) {
        e = raw_alloc(c == NCLASS ? need : class_size[c]);
        c = c == NCLASS ? CLS_MALLOC : c;
    } else {
        cache_t *k = &tc.c[c];
        if (!k->head) {
            if (!tc.registered) {
                pthread_once(&tc_once, make_key);
                pthread_setspecific(tc_key, &tc);
                tc.registered = true;
            }
            k->head = take_batch(c);
            k->n = k->head ? BATCH : 0;
        }
        if (k->head) {
            e = k->head;
            k->head = e->ext;
            k->n--;
        } else {
            e = raw_alloc(class_size[c]);
        }
    }
    memset(e, 0, sizeof(*e));
    e->cls = (uint8_t)c;
    return e;
}

void ukko__env_free(ukko__env_t *e)
{
    if (!e)
        return;
    int c = e->cls;
    if (POOL_OFF || c == CLS_MALLOC) {
        free(e);
        return;
    }
    if (!tc.registered) {
        pthread_once(&tc_once, make_key);
        pthread_setspecific(tc_key, &tc);
        tc.registered = true;
    }
    cache_t *k = &tc.c[c];
    e->ext = k->head;
    k->head = e;
    if (++k->n < 2 * BATCH)
        return;
    /* Keep BATCH here, pass the older BATCH on to whoever allocates. */
    ukko__env_t *last = k->head;
    for (int i = 1; i < BATCH; i++)
        last = last->ext;
    ukko__env_t *first = last->ext;
    last->ext = NULL;
    k->n = BATCH;
    ukko__env_t *end = first;
    for (int i = 1; i < BATCH; i++)
        end = end->ext;
    end->ext = NULL;
    give_batch(c, first);
}
