/* source.c: the partition source of one topic-fed entity type: its consumer
 * handle (group.id = the type's name, no group protocol: this node assigns
 * itself exactly the partitions whose shards it owns, at the committed
 * offset), records handed to their entities, acks folded into each
 * partition's watermark, backpressure, and the hand-off of a shard. Loop
 * thread; librdkafka's threads only write to our pipes (queue wake-ups).
 * Invariants: a partition's records are handed out in offset order; an
 * offset is committed only once every record before it was acknowledged;
 * the paused flag is ours, and a partition is resumed only if we paused it
 * (librdkafka 2.0.2 rewinds one that is resumed unpaused). */
#include "streams_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#define DRAIN_BATCH 500          /* records per loop turn, then yield */
/* A downed node waits this long for its last commit. It must end inside
 * cluster.sharding.down-removal-margin ("auto": 7.75 s with the resolver's
 * defaults) once the resolver's worst skew between the two sides of a cut
 * is spent (about 2 s for a clean cut, down-all-when-unstable + 1.5 s for
 * an unstable one): docs/sharding.md, "The margin, and what it bounds". */
#define AT_ONCE_COMMIT_MS 800
#define MD_RETRY_MIN_MS 1000
#define MD_RETRY_MAX_MS 30000
#define WM_MAX (1u << 24)        /* pausing keeps a partition far below this */

/* ------------------------------------------------------------ helpers */

static int pipe_nb(int fds[2])
{
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    return 0;
}

static void pipe_drain(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

static streams__part_t *find_part(streams__source_t *src, int32_t partition)
{
    for (streams__part_t *p = src->parts; p; p = p->next)
        if (p->partition == partition && p->state != STREAMS__PART_GONE)
            return p;
    return NULL;
}

static rd_kafka_topic_partition_list_t *one(const streams__source_t *src, int32_t partition,
                                            int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, src->topic, partition)->offset = offset;
    return l;
}

static void set_paused(streams__part_t *part, bool pause)
{
    streams__source_t *src = part->src;
    if (part->paused == pause)
        return; /* the flag is ours: never resume what we did not pause */
    rd_kafka_topic_partition_list_t *l = one(src, part->partition, RD_KAFKA_OFFSET_INVALID);
    rd_kafka_resp_err_t err =
        pause ? rd_kafka_pause_partitions(src->rk, l) : rd_kafka_resume_partitions(src->rk, l);
    if (!err && l->elems[0].err)
        err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        ukko_logf(UKKO_LOG_WARN, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("partition", part->partition),
                              UKKO_FS("error", rd_kafka_err2str(err))),
                  "%s of %s/%d failed: %s", pause ? "pause" : "resume", src->topic,
                  part->partition, rd_kafka_err2str(err));
        return;
    }
    part->paused = pause;
    if (pause)
        part->pauses++;
}

/* Fetching follows what is open: records handed out and not yet in the
 * acknowledged prefix (a record stuck in retries holds its partition back,
 * so memory and the commit lag stay bounded). */
static void backpressure(streams__part_t *part)
{
    if (part->state != STREAMS__PART_RUNNING)
        return;
    const ukko_streams_config_t *cfg = part->src->st->cfg;
    uint64_t open = streams__wm_open(&part->wm);
    if (!part->paused && open >= (uint64_t)cfg->max_in_flight)
        set_paused(part, true);
    else if (part->paused && open < (uint64_t)cfg->resume_in_flight)
        set_paused(part, false);
}

static void rec_unlink(streams__rec_t *rec);

/* Records come and go a batch of hundreds at a time on the loop thread,
 * more than malloc's per-thread cache holds: freed ones wait on the
 * source's list (plain calloc/free under AddressSanitizer, which then
 * still sees a use after free). */
#define REC_POOL_MAX 8192
#if defined(__SANITIZE_ADDRESS__)
#define REC_POOL_ON 0
#else
#define REC_POOL_ON 1
#endif

static streams__rec_t *rec_new(streams__source_t *src)
{
    streams__rec_t *rec = src->rec_pool;
    if (!rec)
        return streams__xcalloc(1, sizeof(*rec));
    src->rec_pool = rec->next;
    src->nrec_pool--;
    /* As calloc would leave it, but for the two message buffers (~400 of
     * its bytes), which only need to start empty. */
    memset(rec, 0, offsetof(streams__rec_t, error));
    rec->error[0] = rec->produce_error[0] = '\0';
    memset(&rec->retry, 0, sizeof(*rec) - offsetof(streams__rec_t, retry));
    return rec;
}

static void rec_put(streams__source_t *src, streams__rec_t *rec)
{
    if (REC_POOL_ON && src->nrec_pool < REC_POOL_MAX) {
        rec->next = src->rec_pool;
        src->rec_pool = rec;
        src->nrec_pool++;
        return;
    }
    free(rec);
}

static void part_free(streams__part_t *part)
{
    streams__source_t *src = part->src;
    for (streams__part_t **pp = &src->parts; *pp; pp = &(*pp)->next)
        if (*pp == part) {
            *pp = part->next;
            break;
        }
    while (part->recs) {
        streams__rec_t *rec = part->recs;
        rec_unlink(rec);
        if (rec->retry_armed)
            ev_timer_stop(src->st->loop, &rec->retry);
        streams__trace_record_end(rec, UKKO_ECANCELED);
        rd_kafka_message_destroy(rec->msg);
        rec_put(src, rec);
    }
    ev_timer_stop(src->st->loop, &part->at_once_timer);
    streams__wm_destroy(&part->wm);
    free(part);
}

/* ------------------------------------------------------------ records */

static void rec_link(streams__part_t *part, streams__rec_t *rec)
{
    rec->next = part->recs;
    rec->prev = NULL;
    if (part->recs)
        part->recs->prev = rec;
    part->recs = rec;
}

static void rec_unlink(streams__rec_t *rec)
{
    streams__part_t *part = rec->part;
    if (rec->prev)
        rec->prev->next = rec->next;
    else
        part->recs = rec->next;
    if (rec->next)
        rec->next->prev = rec->prev;
    rec->next = rec->prev = NULL;
}

static void maybe_handed_off(streams__part_t *part);
static void deliver(streams__rec_t *rec);

void streams__rec_finish(streams__rec_t *rec, int status)
{
    streams__part_t *part = rec->part;
    streams__source_t *src = part->src;
    if (rec->retry_armed) {
        ev_timer_stop(src->st->loop, &rec->retry);
        rec->retry_armed = false;
    }
    part->in_flight--;
    if (status == 0 && part->state != STREAMS__PART_GONE) {
        int moved = streams__wm_ack(&part->wm, rec->seq);
        if (moved < 0)
            ukko_logf(UKKO_LOG_ERROR, "streams",
                      UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("partition", part->partition),
                                  UKKO_FI("offset", rec->msg->offset)),
                      "%s/%d offset %lld acknowledged twice (a bug in ukko: please report it)",
                      src->topic, part->partition, (long long)rec->msg->offset);
        else if (part->wm.committable >= 0)
            streams__committer_moved(&src->committer, &part->cp, part->wm.committable, 1);
        if (!rec->dead_lettered)
            part->processed++;
    }
    streams__trace_record_end(rec, status);
    rec_unlink(rec);
    rd_kafka_message_destroy(rec->msg);
    rec_put(src, rec);
    if (part->state == STREAMS__PART_GONE) {
        if (part->in_flight == 0)
            part_free(part);
        return;
    }
    backpressure(part);
    maybe_handed_off(part);
}

static int64_t retry_wait_ms(const ukko_streams_config_t *cfg, int attempts)
{
    int64_t ms = cfg->retry_backoff_ms;
    for (int i = 1; i < attempts && ms < cfg->retry_backoff_max_ms; i++)
        ms *= 2;
    return ms < cfg->retry_backoff_max_ms ? ms : cfg->retry_backoff_max_ms;
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    streams__rec_t *rec = w->data;
    rec->retry_armed = false;
    if (rec->dead_lettered)
        streams__dead_letter(rec); /* the dead-letter produce failed: again */
    else
        deliver(rec);
}

void streams__rec_retry_later(streams__rec_t *rec, int64_t ms)
{
    ev_timer_init(&rec->retry, on_retry, (double)ms / 1000.0, 0);
    rec->retry.data = rec;
    ev_timer_start(rec->part->src->st->loop, &rec->retry);
    rec->retry_armed = true;
}

/* An attempt failed: retry after a backoff, or dead-letter it. */
static void attempt_failed(streams__rec_t *rec, int status)
{
    streams__part_t *part = rec->part;
    streams__source_t *src = part->src;
    const ukko_streams_config_t *cfg = src->st->cfg;
    part->failed++;
    rec->attempts++;
    if (part->state == STREAMS__PART_GONE || part->state == STREAMS__PART_COMMITTING) {
        /* Stopped at once (downed): its entities were stopped under it. Not
         * a poison record: the next owner reads it from the commit. */
        streams__rec_finish(rec, UKKO_ECANCELED);
        return;
    }
    if (!rec->error[0])
        snprintf(rec->error, sizeof(rec->error), "handler failed: %s", ukko_strerror(status));
    if (rec->attempts <= cfg->max_retries) {
        int64_t wait = retry_wait_ms(cfg, rec->attempts);
        part->retried++;
        ukko_logf(UKKO_LOG_DEBUG, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("partition", part->partition),
                              UKKO_FI("offset", rec->msg->offset), UKKO_FI("attempt", rec->attempts),
                              UKKO_FI("retry_ms", wait)),
                  "%s/%d offset %lld failed (%s): retry %d of %lld in %lld ms", src->topic,
                  part->partition, (long long)rec->msg->offset, rec->error, rec->attempts,
                  (long long)cfg->max_retries, (long long)wait);
        streams__rec_retry_later(rec, wait);
        return;
    }
    streams__dead_letter(rec);
}

static void on_done(void *arg, int status)
{
    streams__rec_t *rec = arg;
    if (status == 0) {
        streams__rec_finish(rec, 0);
        return;
    }
    if (rec->produce_error[0])
        snprintf(rec->error, sizeof(rec->error), "%s", rec->produce_error);
    rec->produce_error[0] = '\0';
    attempt_failed(rec, status);
}

static void deliver(streams__rec_t *rec)
{
    streams__part_t *part = rec->part;
    streams__source_t *src = part->src;
    ukko_streams_t *st = src->st;
    if (part->state == STREAMS__PART_GONE || part->state == STREAMS__PART_COMMITTING) {
        /* Given up (at once): the next owner reads it from the commit. */
        streams__rec_finish(rec, UKKO_ECANCELED);
        return;
    }
    rec->error[0] = '\0';
    const rd_kafka_message_t *msg = rec->msg;
    ukko_entity_msg_t m = {
        .type = 0,
        .entity_id = msg->key,
        .entity_id_len = msg->key_len,
        .data = msg->payload,
        .len = msg->len,
        .traceparent = rec->traceparent,
        .origin = rec,
    };
    int rc = st->api->deliver(st->sharding, src->type, part->partition, &m, on_done, rec);
    if (rc == UKKO_ENOENT) {
        /* The shard no longer runs here (stopped at once under a record
         * waiting to retry): not the record's fault. It is neither acked
         * nor dead-lettered, so the partition's committable prefix ends
         * before it and the next owner reads it from the commit. */
        part->cancelled++;
        ukko_logf(UKKO_LOG_INFO, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("partition", part->partition),
                              UKKO_FI("offset", msg->offset)),
                  "%s/%d offset %lld: its shard no longer runs on this node; left to the next "
                  "owner (not committed, not dead-lettered)",
                  src->topic, part->partition, (long long)msg->offset);
        streams__rec_finish(rec, UKKO_ECANCELED);
        return;
    }
    if (rc < 0) {
        snprintf(rec->error, sizeof(rec->error), "sharding refused the record: %s",
                 ukko_strerror(rc));
        attempt_failed(rec, rc);
    }
}

const void *streams__header(const rd_kafka_message_t *msg, const char *name, size_t *len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &v, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return v;
}

static void warn_mismatch(streams__source_t *src, const rd_kafka_message_t *msg, int32_t home)
{
    src->mismatched++;
    if (src->warned_mismatch)
        return;
    src->warned_mismatch = true;
    ukko_logf(UKKO_LOG_WARN, "streams",
              UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FS("topic", src->topic),
                          UKKO_FI("partition", msg->partition), UKKO_FI("offset", msg->offset),
                          UKKO_FI("key_partition", home)),
              "%s/%d offset %lld: its key hashes to partition %d, not %d: the producer does not "
              "use Kafka's default (murmur2) partitioner, so an entity's records can sit in two "
              "partitions and be handled by two nodes at once; produce with murmur2 (kcat: -X "
              "partitioner=murmur2_random; librdkafka: partitioner=murmur2_random). Such records "
              "are still processed in the shard of their partition; counted in "
              "ukko_kafka_key_partition_mismatch_total (warned once)",
              src->topic, (int)msg->partition, (long long)msg->offset, (int)home,
              (int)msg->partition);
}

static void on_consumer_error(streams__source_t *src, rd_kafka_message_t *msg)
{
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    int64_t now = ukko_now_ms();
    /* The same error again within 10 s is counted, not logged. */
    if (msg->err == src->last_err && now - src->last_err_ms < 10000) {
        src->errors_suppressed++;
        return;
    }
    src->last_err = msg->err;
    src->last_err_ms = now;
    ukko_logf(UKKO_LOG_WARN, "streams",
              UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FS("topic", src->topic),
                          UKKO_FS("error", rd_kafka_err2name(msg->err))),
              "consumer of %s: %s (librdkafka retries on its own; nothing is committed past "
              "what was handled)",
              src->topic, rd_kafka_message_errstr(msg));
}

static void on_record(streams__source_t *src, rd_kafka_message_t *msg)
{
    if (msg->err) {
        on_consumer_error(src, msg);
        rd_kafka_message_destroy(msg);
        return;
    }
    streams__part_t *part = find_part(src, msg->partition);
    if (!part || part->state != STREAMS__PART_RUNNING) {
        /* Fetched before the hand-off began: its next owner reads it. */
        rd_kafka_message_destroy(msg);
        return;
    }
    uint64_t seq;
    int rc = streams__wm_add(&part->wm, msg->offset, &seq);
    if (rc < 0) {
        /* An offset at or below one already handed out (librdkafka sent it
         * twice): the first copy is in the watermark already. */
        ukko_logf(UKKO_LOG_DEBUG, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("partition", part->partition),
                              UKKO_FI("offset", msg->offset)),
                  "%s/%d offset %lld seen again: dropped (%s)", src->topic, part->partition,
                  (long long)msg->offset, ukko_strerror(rc));
        rd_kafka_message_destroy(msg);
        return;
    }
    streams__rec_t *rec = rec_new(src);
    rec->part = part;
    rec->seq = seq;
    rec->msg = msg;
    rec_link(part, rec);
    part->in_flight++;
    if (streams__wm_open(&part->wm) > part->max_open)
        part->max_open = streams__wm_open(&part->wm);
    if (part->first_offset < 0)
        part->first_offset = msg->offset;
    size_t tlen = 0;
    const void *tp = streams__header(msg, "traceparent", &tlen);
    if (tp && tlen == 55)
        memcpy(rec->traceparent, tp, 55);
    streams__trace_record_begin(rec);

    if (!msg->key || msg->key_len == 0) {
        /* No entity to hand it to: straight to the dead letters, counted. */
        src->unkeyed++;
        snprintf(rec->error, sizeof(rec->error),
                 "the record has no key, so it names no entity (produce it keyed by entity id)");
        rec->attempts = 1;
        part->failed++;
        streams__dead_letter(rec);
    } else {
        if (src->partitions > 0) {
            int32_t home = src->st->api->shard_of(msg->key, msg->key_len, src->partitions);
            if (home != msg->partition)
                warn_mismatch(src, msg, home);
        }
        deliver(rec);
    }
    backpressure(part);
}

static void drain(streams__source_t *src)
{
    int n = 0;
    /* The batch's entities get their turns together: one hand-over to the
     * dispatcher's threads, not one lock and wake-up per record. */
    ukko_actor_batch_begin();
    while (n < DRAIN_BATCH) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(src->rk, 0);
        if (!msg)
            break;
        n++;
        on_record(src, msg);
    }
    ukko_actor_batch_end();
    /* A full batch may have left records queued: librdkafka writes its
     * wake-up only for what comes next, so go on from the loop's idle. */
    if (n == DRAIN_BATCH)
        ev_idle_start(src->st->loop, &src->drain);
    else
        ev_idle_stop(src->st->loop, &src->drain);
}

static void on_queue(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    streams__source_t *src = w->data;
    pipe_drain(w->fd);
    drain(src);
}

static void on_drain_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    drain(w->data);
}

/* ------------------------------------------------------------ commits */

static int commit_send(void *impl, rd_kafka_topic_partition_list_t *offsets)
{
    streams__source_t *src = impl;
    /* Asynchronous: the result comes back on cq, read by on_commit_queue. */
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(src->rk, offsets, src->cq, NULL, src);
    if (err) {
        ukko_logf(UKKO_LOG_WARN, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FS("error", rd_kafka_err2str(err))),
                  "commit of %s offsets not sent: %s", src->topic, rd_kafka_err2str(err));
        return UKKO_EPROTO;
    }
    return 0;
}

static const streams__commit_vt_t at_least_once = {"at-least-once", commit_send};

static void on_commit_queue(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    streams__source_t *src = w->data;
    pipe_drain(w->fd);
    rd_kafka_event_t *ev;
    for (int n = 0; n < 64 && (ev = rd_kafka_queue_poll(src->cq, 0)); n++) {
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT)
            streams__committer_result(&src->committer, rd_kafka_event_error(ev),
                                      rd_kafka_event_topic_partition_list(ev));
        rd_kafka_event_destroy(ev);
    }
    /* Commits are few and one at a time: 64 per wake-up leaves none behind
     * (librdkafka writes a new wake-up for the next result anyway). */
}

void streams__source_commit_all(streams__source_t *src)
{
    streams__committer_tick(&src->committer);
}

/* ------------------------------------------------------------ hand-off */

static void handed_off(void *arg, int status)
{
    streams__part_t *part = arg;
    streams__source_t *src = part->src;
    ev_timer_stop(src->st->loop, &part->at_once_timer);
    int64_t committed = part->cp.committed;
    streams__committer_remove(&src->committer, &part->cp);
    part->cp.flushed = NULL;

    /* librdkafka 2.0.2 keeps a partition's pause across unassign and assign:
     * resume what we paused, or this node's next start of the shard would
     * never fetch. (Records it fetches meanwhile are dropped: GONE below.) */
    set_paused(part, false);
    rd_kafka_topic_partition_list_t *l = one(src, part->partition, RD_KAFKA_OFFSET_INVALID);
    rd_kafka_error_t *err = rd_kafka_incremental_unassign(src->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        ukko_logf(UKKO_LOG_WARN, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("partition", part->partition)),
                  "unassigning %s/%d failed: %s", src->topic, part->partition,
                  rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    }
    int64_t took = ukko_now_ms() - part->stop_t0_ms;
    char off[32];
    if (committed >= 0)
        snprintf(off, sizeof(off), "%lld", (long long)committed);
    else
        snprintf(off, sizeof(off), "none (nothing processed here)");
    ukko_logf(UKKO_LOG_INFO, "streams",
              UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FS("topic", src->topic),
                          UKKO_FI("shard", part->partition), UKKO_FI("duration_ms", took),
                          UKKO_FI("committed_offset", committed), UKKO_FB("at_once", part->at_once),
                          UKKO_FI("left_in_flight", part->in_flight)),
              "shard %s/%d %s in %lld ms: committed offset %s%s", src->type, part->partition,
              part->at_once ? "stopped at once" : "handed off", (long long)took, off,
              status < 0 ? " (the last commit failed: its next owner repeats what followed "
                           "the previous one)"
                         : "");
    src->handoffs++;
    src->handoff_ms_sum += took;
    ukko_shard_stopped_fn done = part->done;
    void *done_arg = part->done_arg;
    part->done = NULL;
    part->state = STREAMS__PART_GONE;
    if (part->in_flight == 0)
        part_free(part);
    if (done)
        done(done_arg);
}

static void on_at_once_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    handed_off(w->data, UKKO_ETIMEDOUT);
}

/* Draining: once nothing of the partition is in flight, the last commit. */
static void maybe_handed_off(streams__part_t *part)
{
    if (part->state != STREAMS__PART_DRAINING || part->in_flight > 0)
        return;
    part->state = STREAMS__PART_COMMITTING;
    streams__committer_flush(&part->src->committer, &part->cp, handed_off, part);
}

int streams__source_shard_start(streams__source_t *src, int32_t partition)
{
    if (partition < 0 || (src->partitions > 0 && partition >= src->partitions)) {
        ukko_logf(UKKO_LOG_ERROR, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("shard", partition)),
                  "shard %s/%d refused: topic %s has %d partitions", src->type, partition,
                  src->topic, src->partitions);
        return UKKO_EINVAL;
    }
    if (find_part(src, partition))
        return 0;
    streams__part_t *part = streams__xcalloc(1, sizeof(*part));
    part->src = src;
    part->partition = partition;
    part->first_offset = -1;
    streams__wm_init(&part->wm, WM_MAX);
    ev_timer_init(&part->at_once_timer, on_at_once_timeout, 0, 0);
    part->at_once_timer.data = part;
    /* At the offset committed under group.id (the type's name); where none
     * is, auto.offset.reset (earliest) picks the log's start. */
    rd_kafka_topic_partition_list_t *l = one(src, partition, RD_KAFKA_OFFSET_STORED);
    rd_kafka_error_t *err = rd_kafka_incremental_assign(src->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        ukko_logf(UKKO_LOG_ERROR, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("shard", partition)),
                  "assigning %s/%d failed: %s", src->topic, partition, rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
        streams__wm_destroy(&part->wm);
        free(part);
        return UKKO_EPROTO;
    }
    streams__committer_add(&src->committer, &part->cp, partition);
    part->next = src->parts;
    src->parts = part;
    ukko_logf(UKKO_LOG_INFO, "streams",
              UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FS("topic", src->topic),
                          UKKO_FI("shard", partition)),
              "shard %s/%d started: reading %s/%d from its committed offset", src->type,
              partition, src->topic, partition);
    return 0;
}

void streams__source_shard_stop(streams__source_t *src, int32_t partition, bool at_once,
                                ukko_shard_stopped_fn done, void *done_arg)
{
    streams__part_t *part = find_part(src, partition);
    if (!part) {
        if (done)
            done(done_arg);
        return;
    }
    if (part->done) {
        /* Asked twice (a hand-off, then at once): the first waiter is answered too. */
        ukko_shard_stopped_fn first = part->done;
        void *first_arg = part->done_arg;
        part->done = NULL;
        if (!at_once) {
            part->done = first;
            part->done_arg = first_arg;
            if (done)
                done(done_arg);
            return;
        }
        if (first)
            first(first_arg);
    }
    part->done = done;
    part->done_arg = done_arg;
    if (part->stop_t0_ms == 0)
        part->stop_t0_ms = ukko_now_ms();
    /* Stop fetching: queued records of it are dropped by librdkafka (their
     * version is outdated) and the next owner reads them. */
    set_paused(part, true);
    if (at_once) {
        part->at_once = true;
        bool committing = part->state == STREAMS__PART_COMMITTING;
        part->state = STREAMS__PART_COMMITTING;
        ev_timer_set(&part->at_once_timer, AT_ONCE_COMMIT_MS / 1000.0, 0);
        ev_timer_start(src->st->loop, &part->at_once_timer);
        /* Already committing: its flush ends in handed_off as well. */
        if (!committing)
            streams__committer_flush(&src->committer, &part->cp, handed_off, part);
        return;
    }
    if (part->state == STREAMS__PART_RUNNING)
        part->state = STREAMS__PART_DRAINING;
    maybe_handed_off(part);
}

/* ------------------------------------------------------------ metadata */

static void *md_main(void *arg)
{
    streams__source_t *src = arg;
    int partitions = -1;
    char error[256] = "";
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(src->rk, src->topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rkt ? rd_kafka_metadata(src->rk, 0, rkt, &md, 10000)
                                  : rd_kafka_last_error();
    if (err) {
        snprintf(error, sizeof(error), "%s", rd_kafka_err2str(err));
    } else if (md->topic_cnt < 1 || md->topics[0].err) {
        rd_kafka_resp_err_t te =
            md->topic_cnt < 1 ? RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART : md->topics[0].err;
        snprintf(error, sizeof(error), "%s", rd_kafka_err2str(te));
    } else if (md->topics[0].partition_cnt < 1) {
        snprintf(error, sizeof(error), "it has no partitions yet");
    } else {
        partitions = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    pthread_mutex_lock(&src->md_lock);
    src->md_partitions = partitions;
    snprintf(src->md_error, sizeof(src->md_error), "%s", error);
    pthread_mutex_unlock(&src->md_lock);
    ev_async_send(src->st->loop, &src->md_done); /* read by on_md_done after the lock */
    return NULL;
}

static int md_lookup(streams__source_t *src)
{
    if (src->md_running)
        return 0;
    int rc = pthread_create(&src->md_thread, NULL, md_main, src);
    if (rc != 0)
        return -rc;
    src->md_running = true;
    return 0;
}

static void on_md_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    streams__source_t *src = w->data;
    if (md_lookup(src) < 0)
        ev_timer_again(src->st->loop, w);
}

static void on_md_done(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    streams__source_t *src = w->data;
    if (!src->md_running)
        return;
    pthread_join(src->md_thread, NULL);
    src->md_running = false;
    pthread_mutex_lock(&src->md_lock);
    int partitions = src->md_partitions;
    char error[256];
    snprintf(error, sizeof(error), "%s", src->md_error);
    pthread_mutex_unlock(&src->md_lock);
    if (partitions > 0) {
        src->md_failures = 0;
        src->partitions = partitions;
        ukko_logf(UKKO_LOG_INFO, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FS("topic", src->topic),
                              UKKO_FI("partitions", partitions)),
                  "entity type %s reads topic %s: %d partitions, so %d shards", src->type,
                  src->topic, partitions, partitions);
        int rc = src->st->api->set_shards(src->st->sharding, src->type, partitions);
        if (rc < 0)
            ukko_logf(UKKO_LOG_ERROR, "streams",
                      UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("partitions", partitions)),
                      "sharding refused %d shards for %s: %s", partitions, src->type,
                      ukko_strerror(rc));
        return;
    }
    src->md_failures++;
    int64_t wait = MD_RETRY_MIN_MS;
    for (int i = 1; i < src->md_failures && wait < MD_RETRY_MAX_MS; i++)
        wait *= 2;
    if (wait > MD_RETRY_MAX_MS)
        wait = MD_RETRY_MAX_MS;
    if (src->md_failures == 1 || src->md_failures % 10 == 0)
        ukko_logf(UKKO_LOG_WARN, "streams",
                  UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FS("topic", src->topic),
                              UKKO_FS("error", error), UKKO_FI("attempts", src->md_failures)),
                  "entity type %s waits for topic %s: %s; create it (kafka-topics.sh --create "
                  "--topic %s --partitions N) or check kafka.bootstrap-servers; asking again "
                  "every %lld ms",
                  src->type, src->topic, error, src->topic, (long long)wait);
    ev_timer_set(&src->md_retry, (double)wait / 1000.0, (double)wait / 1000.0);
    ev_timer_start(loop, &src->md_retry);
}

/* ------------------------------------------------------------ lifecycle */

int streams__source_new(ukko_streams_t *st, const ukko_entity_type_t *t, const char *topic,
                        streams__source_t **out)
{
    streams__source_t *src = streams__xcalloc(1, sizeof(*src));
    src->st = st;
    src->type = streams__xstrdup(t->name);
    src->topic = streams__xstrdup(topic);
    src->app = *t;
    src->qfd[0] = src->qfd[1] = src->cqfd[0] = src->cqfd[1] = -1;
    pthread_mutex_init(&src->md_lock, NULL);
    src->slot = streams__slot_take(src);
    if (src->slot < 0) {
        pthread_mutex_destroy(&src->md_lock);
        free(src->type);
        free(src->topic);
        free(src);
        return UKKO_E2BIG;
    }
    const ukko_streams_config_t *cfg = st->cfg;
    streams__committer_opts_t co = {
        .topic = topic,
        .max_batch = cfg->commit_max_batch,
        .max_interval_ms = cfg->commit_max_interval_ms,
        .retry_backoff_ms = cfg->retry_backoff_ms,
        .retry_backoff_max_ms = cfg->retry_backoff_max_ms,
    };
    streams__committer_init(&src->committer, &at_least_once, src, st->loop, &co);
    ev_io_init(&src->qio, on_queue, -1, EV_READ);
    ev_io_init(&src->cqio, on_commit_queue, -1, EV_READ);
    ev_idle_init(&src->drain, on_drain_idle);
    src->qio.data = src->cqio.data = src->drain.data = src;
    ev_async_init(&src->md_done, on_md_done);
    src->md_done.data = src;
    ev_timer_init(&src->md_retry, on_md_retry, 0, 0);
    src->md_retry.data = src;
    *out = src;
    return 0;
}

int streams__source_start(streams__source_t *src)
{
    ukko_streams_t *st = src->st;
    const ukko_streams_config_t *cfg = st->cfg;
    char err[1024];
    rd_kafka_conf_t *conf = streams__conf_new(cfg, err, sizeof(err));
    if (!conf) {
        ukko_log(UKKO_LOG_ERROR, "streams", "%s", err);
        return UKKO_EINVAL;
    }
    char num[32];
    const struct {
        const char *k;
        const char *v;
    } fixed[] = {
        {"group.id", src->type},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "false"},
        {"client.id", src->type},
    };
    int rc = 0;
    char e[512];
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) && rc == 0; i++)
        if (rd_kafka_conf_set(conf, fixed[i].k, fixed[i].v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
            ukko_log(UKKO_LOG_ERROR, "streams", "consumer of %s: %s = %s refused: %s",
                     src->topic, fixed[i].k, fixed[i].v, e);
            rc = UKKO_EINVAL;
        }
    /* auto.offset.reset: earliest unless kafka.properties says otherwise. */
    char cur[64];
    size_t curlen = sizeof(cur);
    bool user_reset = false;
    for (const cJSON *it = cfg->properties ? cfg->properties->child : NULL; it; it = it->next)
        if (!strcmp(it->string, "auto.offset.reset"))
            user_reset = true;
    if (rc == 0 && !user_reset &&
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", e, sizeof(e)) != RD_KAFKA_CONF_OK)
        rc = UKKO_EINVAL;
    (void)cur;
    (void)curlen;
    const struct {
        const char *k;
        int64_t v;
    } sized[] = {
        {"queued.max.messages.kbytes", cfg->prefetch_max_kbytes},
        {"queued.min.messages", cfg->prefetch_min_messages},
        {"max.partition.fetch.bytes", cfg->fetch_partition_max_bytes},
    };
    for (size_t i = 0; i < sizeof(sized) / sizeof(sized[0]) && rc == 0; i++) {
        snprintf(num, sizeof(num), "%lld", (long long)sized[i].v);
        if (rd_kafka_conf_set(conf, sized[i].k, num, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
            ukko_log(UKKO_LOG_ERROR, "streams", "consumer of %s: %s = %s refused: %s",
                     src->topic, sized[i].k, num, e);
            rc = UKKO_EINVAL;
        }
    }
    if (rc < 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    src->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!src->rk) {
        rd_kafka_conf_destroy(conf);
        ukko_log(UKKO_LOG_ERROR, "streams", "cannot create the consumer of %s for %s: %s",
                 src->topic, src->type, e);
        return UKKO_EINVAL;
    }
    /* Everything the handle reports (records, errors) on one queue, read
     * on the loop when its wake-up arrives: no thread waits in a poll. */
    rd_kafka_poll_set_consumer(src->rk);
    src->q = rd_kafka_queue_get_consumer(src->rk);
    src->cq = rd_kafka_queue_new(src->rk);
    if (!src->q || !src->cq || pipe_nb(src->qfd) < 0 || pipe_nb(src->cqfd) < 0) {
        ukko_log(UKKO_LOG_ERROR, "streams", "cannot set up the queues of the consumer of %s: %s",
                 src->topic, strerror(errno));
        return UKKO_ENOMEM;
    }
    rd_kafka_queue_io_event_enable(src->q, src->qfd[1], "1", 1);
    rd_kafka_queue_io_event_enable(src->cq, src->cqfd[1], "1", 1);
    ev_io_set(&src->qio, src->qfd[0], EV_READ);
    ev_io_set(&src->cqio, src->cqfd[0], EV_READ);
    ev_io_start(st->loop, &src->qio);
    ev_io_start(st->loop, &src->cqio);
    ev_async_start(st->loop, &src->md_done);
    rc = md_lookup(src);
    if (rc < 0)
        ukko_log(UKKO_LOG_ERROR, "streams", "cannot look up topic %s: %s", src->topic,
                 strerror(-rc));
    return rc;
}

void streams__source_free(streams__source_t *src)
{
    if (!src)
        return;
    struct ev_loop *loop = src->st->loop;
    if (src->md_running) {
        pthread_join(src->md_thread, NULL);
        src->md_running = false;
    }
    ev_io_stop(loop, &src->qio);
    ev_io_stop(loop, &src->cqio);
    ev_idle_stop(loop, &src->drain);
    ev_async_stop(loop, &src->md_done);
    ev_timer_stop(loop, &src->md_retry);
    if (src->rk) {
        /* The node's last word: what is acknowledged and not yet committed
         * (a stop with no hand-off) is committed, synchronously; the loop
         * has ended, so blocking is fine here. */
        rd_kafka_topic_partition_list_t *l = NULL;
        for (streams__part_t *p = src->parts; p; p = p->next)
            if (p->state != STREAMS__PART_GONE && p->cp.target > p->cp.committed) {
                if (!l)
                    l = rd_kafka_topic_partition_list_new(8);
                rd_kafka_topic_partition_list_add(l, src->topic, p->partition)->offset =
                    p->cp.target;
            }
        if (l) {
            rd_kafka_resp_err_t err = rd_kafka_commit(src->rk, l, 0);
            ukko_logf(err ? UKKO_LOG_WARN : UKKO_LOG_INFO, "streams",
                      UKKO_FIELDS(UKKO_FS("type", src->type), UKKO_FI("partitions", l->cnt)),
                      "last commit of %s (%d partitions): %s", src->topic, l->cnt,
                      err ? rd_kafka_err2str(err) : "done");
            rd_kafka_topic_partition_list_destroy(l);
        }
        if (src->q)
            rd_kafka_queue_io_event_enable(src->q, -1, NULL, 0);
        if (src->cq)
            rd_kafka_queue_io_event_enable(src->cq, -1, NULL, 0);
        rd_kafka_consumer_close(src->rk);
        if (src->q)
            rd_kafka_queue_destroy(src->q);
        if (src->cq)
            rd_kafka_queue_destroy(src->cq);
    }
    while (src->parts)
        part_free(src->parts);
    while (src->rec_pool) {
        streams__rec_t *rec = src->rec_pool;
        src->rec_pool = rec->next;
        free(rec);
    }
    streams__committer_destroy(&src->committer);
    if (src->rk)
        rd_kafka_destroy(src->rk);
    for (int i = 0; i < 2; i++) {
        if (src->qfd[i] >= 0)
            close(src->qfd[i]);
        if (src->cqfd[i] >= 0)
            close(src->cqfd[i]);
    }
    streams__slot_release(src->slot);
    pthread_mutex_destroy(&src->md_lock);
    free(src->type);
    free(src->topic);
    free(src);
}
