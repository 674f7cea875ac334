/* Unit: streams/watermark.c, the contiguous acknowledged prefix of one
 * partition: acks out of order, gaps in offsets, the committable offset never
 * moving backwards, and the ring growing past its first size. */
#include "streams_internal.h"

#include <criterion/criterion.h>
#include <stdlib.h>

static streams__wm_t wm;

static void setup(void)
{
    streams__wm_init(&wm, 1u << 16);
}

static void teardown(void)
{
    streams__wm_destroy(&wm);
}

TestSuite(watermark, .init = setup, .fini = teardown, .timeout = 30);

static uint64_t add(int64_t offset)
{
    uint64_t seq = 0;
    int rc = streams__wm_add(&wm, offset, &seq);
    cr_assert_eq(rc, 0, "adding offset %lld: %d", (long long)offset, rc);
    return seq;
}

Test(watermark, nothing_committable_before_an_ack)
{
    add(5);
    add(6);
    cr_assert_eq(wm.committable, -1, "no ack yet, so nothing to commit; got %lld",
                 (long long)wm.committable);
    cr_assert_eq(streams__wm_open(&wm), 2);
}

Test(watermark, acks_in_order_move_the_prefix_one_by_one)
{
    uint64_t a = add(100), b = add(101), c = add(102);
    cr_assert_eq(streams__wm_ack(&wm, a), 1);
    cr_assert_eq(wm.committable, 101);
    cr_assert_eq(streams__wm_ack(&wm, b), 1);
    cr_assert_eq(wm.committable, 102);
    cr_assert_eq(streams__wm_ack(&wm, c), 1);
    cr_assert_eq(wm.committable, 103, "after the last ack the next offset to read is 103, got %lld",
                 (long long)wm.committable);
    cr_assert_eq(streams__wm_open(&wm), 0);
}

Test(watermark, an_ack_after_a_gap_waits_for_the_gap)
{
    /* Offsets with holes (compaction, transaction markers). */
    uint64_t s0 = add(10), s1 = add(11), s2 = add(13), s3 = add(14), s4 = add(20);
    cr_assert_eq(streams__wm_ack(&wm, s2), 0, "seq 2 acked before 0 and 1: the prefix waits");
    cr_assert_eq(streams__wm_ack(&wm, s1), 0);
    cr_assert_eq(wm.committable, -1, "offset 10 is not acknowledged, so nothing is committable");
    cr_assert_eq(streams__wm_ack(&wm, s0), 1);
    cr_assert_eq(wm.committable, 14,
                 "10, 11 and 13 are done: the next offset to read is 14, got %lld",
                 (long long)wm.committable);
    cr_assert_eq(streams__wm_ack(&wm, s4), 0);
    cr_assert_eq(wm.committable, 14, "offset 14 is still open");
    cr_assert_eq(streams__wm_ack(&wm, s3), 1);
    cr_assert_eq(wm.committable, 21, "everything acked: 21, got %lld", (long long)wm.committable);
}

Test(watermark, random_order_never_moves_backwards_and_ends_after_the_last)
{
    enum { N = 5000 };
    uint64_t *seqs = calloc(N, sizeof(*seqs));
    int64_t *offs = calloc(N, sizeof(*offs));
    int64_t off = 1000;
    srand(7);
    for (int i = 0; i < N; i++) {
        off += 1 + (rand() % 3 == 0); /* some gaps */
        offs[i] = off;
        seqs[i] = add(off);
    }
    /* Shuffle the ack order. */
    for (int i = N - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        uint64_t t = seqs[i];
        seqs[i] = seqs[j];
        seqs[j] = t;
    }
    int64_t prev = -1;
    for (int i = 0; i < N; i++) {
        int rc = streams__wm_ack(&wm, seqs[i]);
        cr_assert_geq(rc, 0, "ack of seq %llu refused", (unsigned long long)seqs[i]);
        cr_assert_geq(wm.committable, prev, "committable went back from %lld to %lld",
                      (long long)prev, (long long)wm.committable);
        prev = wm.committable;
    }
    cr_assert_eq(wm.committable, offs[N - 1] + 1, "expected %lld, got %lld",
                 (long long)(offs[N - 1] + 1), (long long)wm.committable);
    cr_assert_eq(streams__wm_open(&wm), 0);
    free(seqs);
    free(offs);
}

Test(watermark, committable_is_never_past_an_unacknowledged_record)
{
    enum { N = 300 };
    uint64_t seqs[N];
    for (int i = 0; i < N; i++)
        seqs[i] = add(i);
    /* Every record but #137: the prefix stops right before it. */
    for (int i = N - 1; i >= 0; i--)
        if (i != 137)
            cr_assert_geq(streams__wm_ack(&wm, seqs[i]), 0);
    cr_assert_eq(wm.committable, 137, "offset 137 is open: committable must be 137, got %lld",
                 (long long)wm.committable);
    cr_assert_eq(streams__wm_ack(&wm, seqs[137]), 1);
    cr_assert_eq(wm.committable, N);
}

Test(watermark, refuses_double_and_unknown_acks)
{
    uint64_t a = add(1);
    add(2);
    cr_assert_eq(streams__wm_ack(&wm, a), 1);
    cr_assert_eq(streams__wm_ack(&wm, a), UKKO_EINVAL, "a second ack of one record is refused");
    cr_assert_eq(streams__wm_ack(&wm, 99), UKKO_EINVAL, "a seq never given is refused");
    cr_assert_eq(wm.committable, 2);
}

Test(watermark, refuses_offsets_that_do_not_increase)
{
    uint64_t seq;
    add(50);
    cr_assert_eq(streams__wm_add(&wm, 50, &seq), UKKO_EINVAL, "the same offset twice");
    cr_assert_eq(streams__wm_add(&wm, 49, &seq), UKKO_EINVAL, "an offset going back");
    cr_assert_eq(streams__wm_open(&wm), 1, "refused records are not added");
}

Test(watermark, stops_at_its_cap)
{
    streams__wm_t small;
    streams__wm_init(&small, 64);
    uint64_t seq;
    for (int i = 0; i < 64; i++)
        cr_assert_eq(streams__wm_add(&small, i, &seq), 0);
    cr_assert_eq(streams__wm_add(&small, 64, &seq), UKKO_E2BIG, "the 65th open record is refused");
    cr_assert_eq(streams__wm_ack(&small, 0), 1);
    cr_assert_eq(streams__wm_add(&small, 64, &seq), 0, "room again once the prefix moved");
    streams__wm_destroy(&small);
}
