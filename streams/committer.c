/* committer.c: when a source's acknowledged prefixes are committed: after
 * kafka.commit.max-batch acks, every kafka.commit.max-interval while
 * something moved, and at once for a hand-off; one commit in flight per
 * source, failed ones retried with backoff. The mechanism (what "commit"
 * means) is behind streams__commit_vt_t. Loop thread. Invariant: an offset
 * sent for a partition is above every offset the broker confirmed for it
 * before, so a committed offset never moves backwards. */
#include "streams_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const double streams__latency_bounds_s[8] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

/* A hand-off's final commit gives up after this many failures in a row:
 * the partition then resumes on its next owner from the last commit that
 * succeeded (duplicates, never a loss). */
#define FLUSH_MAX_FAILURES 5

static void send_now(streams__committer_t *c);

static void on_interval(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    streams__committer_tick(w->data);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    streams__committer_t *c = w->data;
    c->retry_armed = false;
    send_now(c);
}

void streams__committer_init(streams__committer_t *c, const streams__commit_vt_t *vt, void *impl,
                             struct ev_loop *loop, const streams__committer_opts_t *o)
{
    memset(c, 0, sizeof(*c));
    c->vt = vt;
    c->impl = impl;
    c->loop = loop;
    c->o = *o;
    c->topic = streams__xstrdup(o->topic);
    c->o.topic = c->topic;
    if (c->o.max_batch < 1)
        c->o.max_batch = 1;
    double every = (double)(c->o.max_interval_ms > 0 ? c->o.max_interval_ms : 1000) / 1000.0;
    ev_timer_init(&c->interval, on_interval, every, every);
    c->interval.data = c;
    ev_timer_init(&c->retry, on_retry, 0, 0);
    c->retry.data = c;
    if (loop) {
        ev_timer_start(loop, &c->interval);
        ev_unref(loop); /* the interval alone keeps no loop running */
    }
}

void streams__committer_destroy(streams__committer_t *c)
{
    if (c->loop) {
        ev_ref(c->loop);
        ev_timer_stop(c->loop, &c->interval);
        ev_timer_stop(c->loop, &c->retry);
    }
    if (c->inflight)
        rd_kafka_topic_partition_list_destroy(c->inflight);
    free(c->topic);
    memset(c, 0, sizeof(*c));
}

void streams__committer_add(streams__committer_t *c, streams__cpart_t *cp, int32_t partition)
{
    memset(cp, 0, sizeof(*cp));
    cp->partition = partition;
    cp->committed = -1;
    cp->inflight = -1;
    cp->target = -1;
    cp->gen = ++c->gen;
    cp->next = c->parts;
    c->parts = cp;
}

void streams__committer_remove(streams__committer_t *c, streams__cpart_t *cp)
{
    for (streams__cpart_t **pp = &c->parts; *pp; pp = &(*pp)->next)
        if (*pp == cp) {
            *pp = cp->next;
            break;
        }
    cp->next = NULL;
}

static streams__cpart_t *find(streams__committer_t *c, int32_t partition)
{
    for (streams__cpart_t *cp = c->parts; cp; cp = cp->next)
        if (cp->partition == partition)
            return cp;
    return NULL;
}

/* Something to send for cp: its target is past what the broker has. */
static bool due(const streams__cpart_t *cp)
{
    return cp->target >= 0 && cp->target > cp->committed;
}

static void flushed(streams__cpart_t *cp, int status)
{
    void (*fn)(void *, int) = cp->flushed;
    void *arg = cp->flushed_arg;
    cp->flushed = NULL;
    cp->flushed_arg = NULL;
    if (fn)
        fn(arg, status); /* may remove cp: touch nothing of it after */
}

static void send_now(streams__committer_t *c)
{
    if (c->busy || c->retry_armed)
        return;
    rd_kafka_topic_partition_list_t *l = NULL;
    for (streams__cpart_t *cp = c->parts; cp; cp = cp->next) {
        if (!due(cp))
            continue;
        if (!l)
            l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_add(l, c->topic,
                                                                          cp->partition);
        e->offset = cp->target;
        e->opaque = (void *)(uintptr_t)cp->gen; /* whose commit it is (see the result) */
        cp->inflight = cp->target;
    }
    c->pending_acks = 0;
    if (!l)
        return;
    c->busy = true;
    c->inflight = l;
    c->sent_at_ms = ukko_now_ms();
    int rc = c->vt->send(c->impl, l);
    if (rc < 0) {
        /* Not even sent: as a failed commit, retried after the backoff. */
        streams__committer_result(c, RD_KAFKA_RESP_ERR__STATE, NULL);
    }
}

void streams__committer_moved(streams__committer_t *c, streams__cpart_t *cp, int64_t offset,
                              int64_t acks)
{
    if (offset > cp->target)
        cp->target = offset;
    c->pending_acks += acks;
    if (c->pending_acks >= c->o.max_batch)
        send_now(c);
}

void streams__committer_tick(streams__committer_t *c)
{
    for (streams__cpart_t *cp = c->parts; cp; cp = cp->next)
        if (due(cp)) {
            send_now(c);
            return;
        }
}

void streams__committer_flush(streams__committer_t *c, streams__cpart_t *cp,
                              void (*done)(void *arg, int status), void *arg)
{
    cp->flushed = done;
    cp->flushed_arg = arg;
    cp->failures = 0;
    if (!due(cp)) {
        flushed(cp, 0);
        return;
    }
    if (c->retry_armed && c->loop) {
        /* A hand-off does not wait out a backoff meant for batches. */
        ev_timer_stop(c->loop, &c->retry);
        c->retry_armed = false;
    }
    send_now(c);
}

static int64_t backoff_ms(const streams__committer_t *c, int failures)
{
    int64_t ms = c->o.retry_backoff_ms > 0 ? c->o.retry_backoff_ms : 100;
    for (int i = 1; i < failures && ms < c->o.retry_backoff_max_ms; i++)
        ms *= 2;
    if (c->o.retry_backoff_max_ms > 0 && ms > c->o.retry_backoff_max_ms)
        ms = c->o.retry_backoff_max_ms;
    return ms;
}

void streams__committer_result(streams__committer_t *c, rd_kafka_resp_err_t err,
                               const rd_kafka_topic_partition_list_t *offsets)
{
    rd_kafka_topic_partition_list_t *l = c->inflight;
    c->inflight = NULL;
    c->busy = false;
    double took = (double)(ukko_now_ms() - c->sent_at_ms) / 1000.0;
    if (!l)
        return;
    bool any_failed = false;
    int worst = 0;
    rd_kafka_resp_err_t first_err = err;
    c->commits++;
    c->latency_sum_s += took;
    for (int b = 0; b < 8; b++)
        if (took <= streams__latency_bounds_s[b])
            c->latency_buckets[b]++;

    /* Flush callbacks may remove (and free) partitions: take every one
     * out of its partition first, call them after. */
    struct call {
        void (*fn)(void *, int);
        void *arg;
        int status;
    } *calls = streams__xcalloc((size_t)l->cnt + 1, sizeof(*calls));
    int ncalls = 0;
    for (int i = 0; i < l->cnt; i++) {
        int32_t p = l->elems[i].partition;
        int64_t off = l->elems[i].offset;
        rd_kafka_resp_err_t e = err;
        if (!e && offsets) {
            const rd_kafka_topic_partition_t *r =
                rd_kafka_topic_partition_list_find(offsets, c->topic, p);
            if (r)
                e = r->err;
        }
        streams__cpart_t *cp = find(c, p);
        if (!cp || (uintptr_t)cp->gen != (uintptr_t)l->elems[i].opaque)
            continue; /* given up meanwhile (and maybe started here again: not its answer) */
        cp->inflight = -1;
        if (e) {
            any_failed = true;
            if (!first_err)
                first_err = e;
            cp->failures++;
            if (cp->failures > worst)
                worst = cp->failures;
            if (cp->flushed && cp->failures >= FLUSH_MAX_FAILURES && ncalls < l->cnt) {
                calls[ncalls].fn = cp->flushed;
                calls[ncalls].arg = cp->flushed_arg;
                calls[ncalls++].status = UKKO_EPROTO;
                cp->flushed = NULL;
                cp->flushed_arg = NULL;
            }
            continue;
        }
        if (off > cp->committed)
            cp->committed = off;
        cp->failures = 0;
        if (cp->flushed && !due(cp) && ncalls < l->cnt) {
            calls[ncalls].fn = cp->flushed;
            calls[ncalls].arg = cp->flushed_arg;
            calls[ncalls++].status = 0;
            cp->flushed = NULL;
            cp->flushed_arg = NULL;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);

    if (any_failed) {
        c->failures++;
        int64_t wait = backoff_ms(c, worst);
        ukko_logf(UKKO_LOG_WARN, "streams",
                  UKKO_FIELDS(UKKO_FS("topic", c->topic), UKKO_FS("error", rd_kafka_err2str(first_err)),
                              UKKO_FI("failures", worst), UKKO_FI("retry_ms", wait)),
                  "commit of %s offsets failed (%s): retrying in %lld ms; records stay "
                  "uncommitted meanwhile (a crash now repeats them, loses none)",
                  c->topic, rd_kafka_err2str(first_err), (long long)wait);
        if (c->loop) {
            ev_timer_set(&c->retry, (double)wait / 1000.0, 0);
            ev_timer_start(c->loop, &c->retry);
            c->retry_armed = true;
        }
    }
    /* What moved while this commit was out, and hand-offs waiting: sent
     * before the callbacks, which may end the committer's owner's part. */
    bool flush_waiting = false;
    for (streams__cpart_t *cp = c->parts; cp; cp = cp->next)
        if (cp->flushed && due(cp))
            flush_waiting = true;
    if (!c->retry_armed && (flush_waiting || c->pending_acks >= c->o.max_batch))
        send_now(c);
    for (int i = 0; i < ncalls; i++)
        calls[i].fn(calls[i].arg, calls[i].status);
    free(calls);
}
