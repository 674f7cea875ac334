/* awareness.c: Lifeguard's local-health score. A node that misses nacks or
 * has to refute suspicions of itself is probably the slow one, so it waits
 * longer before it blames others. Caller's storage, one thread. Invariant:
 * 0 <= score < max. */
#include "cluster_internal.h"

void cluster__awareness_init(cluster__awareness_t *a, int max)
{
    a->score = 0;
    a->max = max > 0 ? max : 1;
}

void cluster__awareness_apply(cluster__awareness_t *a, int delta)
{
    int s = a->score + delta;
    if (s < 0)
        s = 0;
    if (s > a->max - 1)
        s = a->max - 1;
    a->score = s;
}

int64_t cluster__awareness_scale(const cluster__awareness_t *a, int64_t ms)
{
    return ms * (a->score + 1);
}
