/* Tests cluster/suspicion.c and cluster/awareness.c: the timeout falls from
 * max to min with independent confirmations, never below min, and a node's
 * poor local health slows it. */
#include "cluster_internal.h"

#include <criterion/criterion.h>

Test(suspicion, timeout_falls_with_confirmations, .timeout = 10)
{
    int64_t min = 4000, max = 24000;
    cr_assert_eq(cluster__suspicion_timeout(0, 3, min, max), max, "no confirmation: max");
    int64_t prev = max;
    for (uint32_t n = 1; n <= 3; n++) {
        int64_t t = cluster__suspicion_timeout(n, 3, min, max);
        cr_assert_lt(t, prev, "each confirmation shortens it (n=%u: %lld)", n, (long long)t);
        prev = t;
    }
    cr_assert_eq(prev, min, "k confirmations reach min");
    cr_assert_eq(cluster__suspicion_timeout(10, 3, min, max), min, "and never below it");
    cr_assert_eq(cluster__suspicion_timeout(0, 0, min, max), min, "k = 0: min at once");
    /* log-scaled as in Lifeguard: one of three gives max - (max-min)*log2/log4 */
    cr_assert_eq(cluster__suspicion_timeout(1, 3, min, max), 14000);
}

Test(suspicion, each_member_confirms_once, .timeout = 10)
{
    cluster__suspicion_t s;
    cluster__suspicion_init(&s, 7, 2, 4000, 24000, 1000);
    cr_assert_eq(cluster__suspicion_deadline(&s), 25000);
    cr_assert_not(cluster__suspicion_confirm(&s, 7), "the accuser does not confirm itself");
    cr_assert(cluster__suspicion_confirm(&s, 8));
    cr_assert_not(cluster__suspicion_confirm(&s, 8), "a second word from 8 is no news");
    cr_assert(cluster__suspicion_confirm(&s, 9));
    cr_assert_not(cluster__suspicion_confirm(&s, 10), "k reached: no more needed");
    cr_assert_eq(cluster__suspicion_deadline(&s), 5000);
}

Test(suspicion, minimum_scales_gently_with_size, .timeout = 10)
{
    cr_assert_eq(cluster__suspicion_min(4000, 5), 4000);
    cr_assert_eq(cluster__suspicion_min(4000, 1000), 4000);
    int64_t big = cluster__suspicion_min(4000, 10000);
    cr_assert(big > 5000 && big < 5500, "10,000 members: 4 s * 4/3 (%lld)", (long long)big);
}

Test(awareness, health_scales_and_is_bounded, .timeout = 10)
{
    cluster__awareness_t a;
    cluster__awareness_init(&a, 8);
    cr_assert_eq(cluster__awareness_scale(&a, 500), 500);
    cluster__awareness_apply(&a, 3);
    cr_assert_eq(cluster__awareness_scale(&a, 500), 2000);
    cluster__awareness_apply(&a, 100);
    cr_assert_eq(a.score, 7, "bounded by max - 1");
    cluster__awareness_apply(&a, -100);
    cr_assert_eq(a.score, 0);
}
