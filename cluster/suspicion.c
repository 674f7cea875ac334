/* suspicion.c: Lifeguard's suspicion arithmetic: a suspected member gets a
 * timeout that starts at max and falls, log-scaled, to min as k independent
 * members confirm the suspicion. Pure functions on caller's storage, any
 * thread. Invariant: the timeout never falls below min, and one member's
 * confirmation counts once. */
#include "cluster_internal.h"

#include <math.h>

int64_t cluster__suspicion_min(int64_t base_ms, size_t n)
{
    double scale = n > 1 ? log10((double)n) / 3.0 : 0.0;
    if (scale < 1.0)
        scale = 1.0;
    return (int64_t)((double)base_ms * scale);
}

int64_t cluster__suspicion_timeout(uint32_t n, uint32_t k, int64_t min_ms, int64_t max_ms)
{
    if (k == 0 || n >= k)
        return min_ms;
    double frac = log((double)n + 1.0) / log((double)k + 1.0);
    double raw = (double)max_ms - frac * (double)(max_ms - min_ms);
    int64_t t = (int64_t)floor(raw);
    return t < min_ms ? min_ms : t;
}

void cluster__suspicion_init(cluster__suspicion_t *s, uint32_t from, uint32_t k, int64_t min_ms,
                             int64_t max_ms, int64_t now_ms)
{
    s->start_ms = now_ms;
    s->min_ms = min_ms;
    s->max_ms = max_ms < min_ms ? min_ms : max_ms;
    s->k = k;
    s->n = 0;
    s->confirmers[0] = from;
    s->nconfirmers = 1;
}

bool cluster__suspicion_confirm(cluster__suspicion_t *s, uint32_t from)
{
    if (s->n >= s->k)
        return false;
    for (uint32_t i = 0; i < s->nconfirmers; i++)
        if (s->confirmers[i] == from)
            return false;
    if (s->nconfirmers < CLUSTER__MAX_CONFIRMERS)
        s->confirmers[s->nconfirmers++] = from;
    s->n++;
    return true;
}

int64_t cluster__suspicion_deadline(const cluster__suspicion_t *s)
{
    return s->start_ms + cluster__suspicion_timeout(s->n, s->k, s->min_ms, s->max_ms);
}
