/* test_mailbox.c: the MPSC mailbox (node/mailbox.c) on its own: the
 * empty -> non-empty signal that schedules an actor, and no loss nor
 * reordering per producer with many producers and one consumer. */
#include "actor_internal.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>

#define PRODUCERS 6
#define PER_PRODUCER 50000

typedef struct prod {
    ukko__mbox_t *q;
    int id;
    _Atomic int *wakeups;
} prod_t;

static void *producer(void *arg)
{
    prod_t *p = arg;
    for (int64_t i = 1; i <= PER_PRODUCER; i++) {
        ukko__env_t *e = ukko__env_alloc(0);
        e->msg.type = (uint32_t)p->id;
        e->msg.id = (uint64_t)i;
        if (ukko__mbox_push(p->q, e))
            atomic_fetch_add(p->wakeups, 1);
    }
    return NULL;
}

Test(mailbox, signals_only_empty_to_non_empty, .timeout = 10)
{
    ukko__mbox_t *q = aligned_alloc(64, sizeof(*q));
    ukko__mbox_init(q, ukko__env_alloc(0));
    cr_assert(ukko__mbox_markempty(q), "a new mailbox with nothing queued can be marked empty");
    cr_assert(ukko__mbox_push(q, ukko__env_alloc(0)), "the first push must report empty -> non-empty");
    cr_assert_not(ukko__mbox_push(q, ukko__env_alloc(0)), "a second push must not signal again");
    cr_assert_not(ukko__mbox_markempty(q), "a mailbox with messages cannot be marked empty");
    cr_assert_not_null(ukko__mbox_pop(q));
    cr_assert_not_null(ukko__mbox_pop(q));
    cr_assert_null(ukko__mbox_pop(q), "two pushed, two popped");
    cr_assert(ukko__mbox_markempty(q), "drained: marked empty");
    cr_assert(ukko__mbox_push(q, ukko__env_alloc(0)), "after markempty the next push signals again");
    ukko__mbox_destroy(q);
    free(q);
}

Test(mailbox, many_producers_lose_nothing_and_keep_order, .timeout = 60)
{
    ukko__mbox_t *q = aligned_alloc(64, sizeof(*q));
    ukko__mbox_init(q, ukko__env_alloc(0));
    cr_assert(ukko__mbox_markempty(q));
    _Atomic int wakeups = 0;
    pthread_t t[PRODUCERS];
    prod_t p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (prod_t){q, i, &wakeups};
        pthread_create(&t[i], NULL, producer, &p[i]);
    }
    uint64_t last[PRODUCERS] = {0};
    int64_t got = 0, disorder = 0, marks = 0;
    bool marked = true;
    int64_t deadline = ukko_now_ms() + 50000;
    while (got < (int64_t)PRODUCERS * PER_PRODUCER && ukko_now_ms() < deadline) {
        ukko__env_t *e = ukko__mbox_pop(q);
        if (!e) {
            /* Like an actor's turn ending: give the token back when empty
             * (once: an actor is not run again until a push signals). */
            if (!marked && ukko__mbox_markempty(q)) {
                marks++;
                marked = true;
            }
            continue;
        }
        marked = false;
        if (e->msg.id != last[e->msg.type] + 1)
            disorder++;
        last[e->msg.type] = e->msg.id;
        got++;
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(got, (int64_t)PRODUCERS * PER_PRODUCER, "expected %d messages, got %lld",
                 PRODUCERS * PER_PRODUCER, (long long)got);
    cr_assert_eq(disorder, 0, "%lld messages out of order within a producer", (long long)disorder);
    /* Each signal clears one mark: the first one before the producers
     * started, then each of ours (the last push left it unmarked). */
    cr_assert_eq(atomic_load(&wakeups), marks + 1, "wake-ups %d != times marked empty %lld + 1",
                 atomic_load(&wakeups), (long long)marks);
    ukko__mbox_destroy(q);
    free(q);
}
