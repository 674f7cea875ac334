/* mailbox.c: an actor's mailbox, multi-producer single-consumer and lock-free
 * (the intrusive queue of Vyukov as libponyrt's messageq uses it). Producers:
 * any thread; consumer: whichever thread runs the actor's turn. Invariant:
 * the low bit of head is set exactly when the mailbox is empty and the actor
 * is not scheduled, so the one push that clears it schedules the actor: a
 * wake-up only on empty -> non-empty. */
#include "actor_internal.h"

#define EMPTY_BIT ((uintptr_t)1)

static ukko__env_t *untag(ukko__env_t *p)
{
    return (ukko__env_t *)((uintptr_t)p & ~EMPTY_BIT);
}

void ukko__mbox_init(ukko__mbox_t *q, ukko__env_t *stub)
{
    atomic_store_explicit(&stub->next, NULL, memory_order_relaxed);
    /* Born scheduled (bit clear): the spawner owns the actor until it has
     * run init, then hands it over with markempty or a schedule. */
    atomic_store_explicit(&q->head, stub, memory_order_relaxed);
    atomic_store_explicit(&q->count, 0, memory_order_relaxed);
    q->tail = stub;
}

bool ukko__mbox_push(ukko__mbox_t *q, ukko__env_t *e)
{
    atomic_store_explicit(&e->next, NULL, memory_order_relaxed);
    /* acq_rel: release publishes e's contents to the consumer that reaches
     * it through prev->next; acquire pairs with the CAS in markempty, so the
     * producer that finds the empty bit sees the actor as the consumer left it. */
    ukko__env_t *prev = atomic_exchange_explicit(&q->head, e, memory_order_acq_rel);
    bool was_empty = ((uintptr_t)prev & EMPTY_BIT) != 0;
    /* Pairs with the acquire load of tail->next in pop: links e in. */
    atomic_store_explicit(&untag(prev)->next, e, memory_order_release);
    return was_empty;
}

ukko__env_t *ukko__mbox_pop(ukko__mbox_t *q)
{
    ukko__env_t *tail = q->tail;
    /* Pairs with the release store of prev->next in push. */
    ukko__env_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (!next)
        return NULL;
    /* The popped envelope becomes the stub; the old stub is done with. */
    q->tail = next;
    ukko__env_free(tail);
    return next;
}

bool ukko__mbox_markempty(ukko__mbox_t *q)
{
    ukko__env_t *tail = q->tail;
    /* Pairs with the exchange in push: head == tail means no push is under
     * way (a push that has exchanged but not linked shows as head != tail). */
    ukko__env_t *head = atomic_load_explicit(&q->head, memory_order_acquire);
    if ((uintptr_t)head & EMPTY_BIT)
        return true;
    if (head != tail)
        return false;
    /* release: the next producer's exchange (acquire) sees everything this
     * turn wrote before it schedules the actor elsewhere. */
    return atomic_compare_exchange_strong_explicit(&q->head, &tail,
                                                   (ukko__env_t *)((uintptr_t)tail | EMPTY_BIT),
                                                   memory_order_acq_rel, memory_order_acquire);
}

void ukko__mbox_destroy(ukko__mbox_t *q)
{
    ukko__env_t *e;
    while ((e = ukko__mbox_pop(q)))
        ukko__env_release(e);
    ukko__env_free(q->tail);
    q->tail = NULL;
    atomic_store_explicit(&q->head, NULL, memory_order_relaxed);
}
