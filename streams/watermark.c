/* watermark.c: the contiguous acknowledged prefix of one partition: records
 * enter in partition order, acks come in any order, and the committable
 * offset is the one after the prefix. Loop thread (one partition's watermark
 * is touched by one thread). Invariant: committable never decreases, and
 * every offset below it was acknowledged or never given to us. */
#include "streams_internal.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 64

void streams__wm_init(streams__wm_t *wm, size_t max)
{
    memset(wm, 0, sizeof(*wm));
    size_t m = FIRST_CAP;
    while (m < max)
        m <<= 1;
    wm->max = m;
    wm->committable = -1;
    wm->last_offset = -1;
}

void streams__wm_destroy(streams__wm_t *wm)
{
    free(wm->offsets);
    free(wm->acked);
    memset(wm, 0, sizeof(*wm));
}

/* Doubles the ring, keeping the open records at their seq & (cap - 1). */
static int grow(streams__wm_t *wm)
{
    size_t ncap = wm->cap ? wm->cap * 2 : FIRST_CAP;
    if (ncap > wm->max)
        return UKKO_E2BIG;
    int64_t *o = calloc(ncap, sizeof(*o));
    uint8_t *a = calloc(ncap, 1);
    if (!o || !a) {
        free(o);
        free(a);
        return UKKO_ENOMEM;
    }
    for (uint64_t s = wm->head; s < wm->next; s++) {
        o[s & (ncap - 1)] = wm->offsets[s & (wm->cap - 1)];
        a[s & (ncap - 1)] = wm->acked[s & (wm->cap - 1)];
    }
    free(wm->offsets);
    free(wm->acked);
    wm->offsets = o;
    wm->acked = a;
    wm->cap = ncap;
    return 0;
}

int streams__wm_add(streams__wm_t *wm, int64_t offset, uint64_t *seq)
{
    if (offset < 0 || offset <= wm->last_offset || (wm->committable >= 0 && offset < wm->committable))
        return UKKO_EINVAL;
    if (wm->next - wm->head >= wm->cap) {
        int rc = grow(wm);
        if (rc < 0)
            return rc;
    }
    uint64_t s = wm->next++;
    wm->offsets[s & (wm->cap - 1)] = offset;
    wm->acked[s & (wm->cap - 1)] = 0;
    wm->last_offset = offset;
    *seq = s;
    return 0;
}

int streams__wm_ack(streams__wm_t *wm, uint64_t seq)
{
    if (seq < wm->head || seq >= wm->next || wm->acked[seq & (wm->cap - 1)])
        return UKKO_EINVAL;
    wm->acked[seq & (wm->cap - 1)] = 1;
    if (seq != wm->head)
        return 0; /* a gap before it: the prefix waits */
    while (wm->head < wm->next && wm->acked[wm->head & (wm->cap - 1)]) {
        /* Offsets only increase within a partition, so the prefix end does too. */
        wm->committable = wm->offsets[wm->head & (wm->cap - 1)] + 1;
        wm->head++;
    }
    return 1;
}
