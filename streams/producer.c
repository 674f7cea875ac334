/* producer.c: the producer sink: one idempotent producer per node for the
 * records handlers produce (ukko_stream_produce, on dispatcher threads) and
 * for dead letters (loop thread). Delivery reports come back on the main
 * queue, read on the loop when its wake-up arrives. Invariant: an input
 * record counts as acknowledged only once the broker confirmed every record
 * its handler produced: each produce holds one of its deferred acks, given
 * back by the delivery report. */
#include "streams_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DR_BATCH 256 /* delivery report events per loop turn */

typedef enum { TICKET_HANDLER = 1, TICKET_DEAD_LETTER = 2 } ticket_kind_t;

/* What a produced record's delivery report completes. */
typedef struct ticket {
    ticket_kind_t kind;
    ukko_streams_t *st;
    ukko_entity_ack_t *ack; /* TICKET_HANDLER: the input's deferred ack */
    streams__rec_t *rec;    /* the input (NULL for a tell); TICKET_DEAD_LETTER: the record */
} ticket_t;

static void on_report(ukko_streams_t *st, const rd_kafka_message_t *m)
{
    ticket_t *t = m->_private;
    if (!t)
        return;
    if (t->kind == TICKET_HANDLER) {
        int status = 0;
        if (m->err) {
            status = m->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ? UKKO_ETIMEDOUT : UKKO_EPROTO;
            st->produce_failed_dr++;
            if (t->rec)
                snprintf(t->rec->produce_error, sizeof(t->rec->produce_error),
                         "a record the handler produced to %s was refused: %s",
                         rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
            ukko_logf(UKKO_LOG_WARN, "streams",
                      UKKO_FIELDS(UKKO_FS("topic", rd_kafka_topic_name(m->rkt)),
                                  UKKO_FS("error", rd_kafka_err2str(m->err))),
                      "a handler's record to %s was not delivered: %s (its input record fails "
                      "and is retried)",
                      rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        } else {
            st->delivered++;
        }
        st->api->ack(t->ack, status);
        free(t);
        return;
    }
    streams__rec_t *rec = t->rec;
    free(t);
    if (!m->err) {
        rec->part->dead_letters++;
        ukko_logf(UKKO_LOG_WARN, "streams",
                  UKKO_FIELDS(UKKO_FS("type", rec->part->src->type),
                              UKKO_FS("topic", rec->part->src->topic),
                              UKKO_FI("partition", rec->part->partition),
                              UKKO_FI("offset", rec->msg->offset), UKKO_FS("error", rec->error),
                              UKKO_FS("dead_letter_topic", rd_kafka_topic_name(m->rkt)),
                              UKKO_FI("dead_letter_offset", m->offset)),
                  "%s/%d offset %lld failed %d time(s) (%s): sent to %s, the partition moves on",
                  rec->part->src->topic, rec->part->partition, (long long)rec->msg->offset,
                  rec->attempts, rec->error, rd_kafka_topic_name(m->rkt));
        streams__rec_finish(rec, 0);
        return;
    }
    st->dlq_failed++;
    int64_t wait = st->cfg->retry_backoff_max_ms;
    ukko_logf(UKKO_LOG_ERROR, "streams",
              UKKO_FIELDS(UKKO_FS("topic", rd_kafka_topic_name(m->rkt)),
                          UKKO_FS("error", rd_kafka_err2str(m->err)),
                          UKKO_FI("partition", rec->part->partition),
                          UKKO_FI("offset", rec->msg->offset), UKKO_FI("retry_ms", wait)),
              "dead letter of %s/%d offset %lld not delivered to %s: %s; the partition waits "
              "for it (create the topic, or fix the producer's access) and tries again in "
              "%lld ms",
              rec->part->src->topic, rec->part->partition, (long long)rec->msg->offset,
              rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err), (long long)wait);
    if (rec->part->state == STREAMS__PART_GONE)
        streams__rec_finish(rec, UKKO_ECANCELED);
    else
        streams__rec_retry_later(rec, wait);
}

static void drain(ukko_streams_t *st)
{
    int n = 0;
    rd_kafka_event_t *ev;
    while (n < DR_BATCH && (ev = rd_kafka_queue_poll(st->pq, 0))) {
        n++;
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_DR: {
            const rd_kafka_message_t *m;
            while ((m = rd_kafka_event_message_next(ev)))
                on_report(st, m);
            break;
        }
        case RD_KAFKA_EVENT_ERROR:
            ukko_logf(rd_kafka_event_error_is_fatal(ev) ? UKKO_LOG_ERROR : UKKO_LOG_WARN,
                      "streams", UKKO_FIELDS(UKKO_FS("error", rd_kafka_event_error_string(ev))),
                      "producer: %s%s", rd_kafka_event_error_string(ev),
                      rd_kafka_event_error_is_fatal(ev)
                          ? " (fatal: records can no longer be produced; the node stops)"
                          : "");
            if (rd_kafka_event_error_is_fatal(ev) && st->node && !st->stopping)
                ukko_node_stop_for(st->node, UKKO_STOP_FAILURE,
                                   "the Kafka producer hit a fatal error");
            break;
        default:
            break;
        }
        rd_kafka_event_destroy(ev);
    }
    if (n == DR_BATCH)
        ev_idle_start(st->loop, &st->pdrain);
    else
        ev_idle_stop(st->loop, &st->pdrain);
}

static void on_pq(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    char buf[256];
    while (read(w->fd, buf, sizeof(buf)) > 0) {
    }
    drain(w->data);
}

static void on_pdrain(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    drain(w->data);
}

int streams__producer_start(ukko_streams_t *st)
{
    char err[1024];
    rd_kafka_conf_t *conf = streams__conf_new(st->cfg, err, sizeof(err));
    if (!conf) {
        ukko_log(UKKO_LOG_ERROR, "streams", "%s", err);
        return UKKO_EINVAL;
    }
    char e[512];
    if (rd_kafka_conf_set(conf, "enable.idempotence", st->cfg->idempotence ? "true" : "false",
                          e, sizeof(e)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "ukko-producer", e, sizeof(e)) != RD_KAFKA_CONF_OK ||
        /* Kafka's Java clients place keys by murmur2, and so do our shards
         * (ukko_shard_of): a record a handler produces keyed by entity id
         * lands in that entity's shard of the next stage. librdkafka's own
         * default (consistent_random, CRC32) would not; kafka.properties'
         * "partitioner" still wins. */
        (!cJSON_GetObjectItemCaseSensitive(st->cfg->properties, "partitioner") &&
         rd_kafka_conf_set(conf, "partitioner", "murmur2_random", e, sizeof(e)) !=
             RD_KAFKA_CONF_OK)) {
        ukko_log(UKKO_LOG_ERROR, "streams", "producer settings refused: %s", e);
        rd_kafka_conf_destroy(conf);
        return UKKO_EINVAL;
    }
    /* Reports as events on the main queue, read on the loop. */
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
    st->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!st->producer) {
        rd_kafka_conf_destroy(conf);
        ukko_log(UKKO_LOG_ERROR, "streams", "cannot create the producer: %s", e);
        return UKKO_EINVAL;
    }
    st->pq = rd_kafka_queue_get_main(st->producer);
    if (pipe2(st->pqfd, O_NONBLOCK | O_CLOEXEC) < 0) {
        ukko_log(UKKO_LOG_ERROR, "streams", "cannot make the producer's wake-up pipe: %s",
                 strerror(errno));
        return UKKO_ENOMEM;
    }
    rd_kafka_queue_io_event_enable(st->pq, st->pqfd[1], "1", 1);
    ev_io_init(&st->pqio, on_pq, st->pqfd[0], EV_READ);
    st->pqio.data = st;
    ev_idle_init(&st->pdrain, on_pdrain);
    st->pdrain.data = st;
    ev_io_start(st->loop, &st->pqio);
    return 0;
}

void streams__producer_stop(ukko_streams_t *st)
{
    if (!st->producer)
        return;
    ev_io_stop(st->loop, &st->pqio);
    ev_idle_stop(st->loop, &st->pdrain);
    rd_kafka_queue_io_event_enable(st->pq, -1, NULL, 0);
    /* After the loop: what handlers produced and nobody waits for any more
     * still goes out (bounded), then the reports are dropped with their
     * tickets. */
    rd_kafka_resp_err_t err = rd_kafka_flush(st->producer, 5000);
    if (err)
        ukko_log(UKKO_LOG_WARN, "streams", "producer: %d record(s) still unsent at the stop: %s",
                 rd_kafka_outq_len(st->producer), rd_kafka_err2str(err));
    rd_kafka_event_t *ev;
    while ((ev = rd_kafka_queue_poll(st->pq, 0))) {
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR) {
            const rd_kafka_message_t *m;
            while ((m = rd_kafka_event_message_next(ev))) {
                ticket_t *t = m->_private;
                if (t && t->kind == TICKET_HANDLER)
                    st->api->ack(t->ack, m->err ? UKKO_ECANCELED : 0);
                free(t);
            }
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(st->pq);
    st->pq = NULL;
    rd_kafka_destroy(st->producer);
    st->producer = NULL;
    for (int i = 0; i < 2; i++)
        if (st->pqfd[i] >= 0) {
            close(st->pqfd[i]);
            st->pqfd[i] = -1;
        }
}

static rd_kafka_headers_t *headers_of(const ukko_stream_header_t *h, const char *traceparent)
{
    size_t n = 0;
    bool has_tp = false;
    for (const ukko_stream_header_t *it = h; it && it->name; it++) {
        n++;
        if (!strcmp(it->name, "traceparent"))
            has_tp = true;
    }
    bool add_tp = traceparent && traceparent[0] && !has_tp;
    if (n == 0 && !add_tp)
        return NULL;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(n + 1);
    for (const ukko_stream_header_t *it = h; it && it->name; it++)
        rd_kafka_header_add(hdrs, it->name, -1, it->value, it->value ? (ssize_t)it->len : 0);
    if (add_tp)
        rd_kafka_header_add(hdrs, "traceparent", -1, traceparent, -1);
    return hdrs;
}

int ukko_stream_produce(ukko_entity_ctx_t *ctx, const char *topic, const void *key, size_t klen,
                        const void *value, size_t vlen, const ukko_stream_header_t *headers)
{
    const streams__current_t *cur = streams__current();
    if (!cur || cur->ctx != ctx || !topic || !*topic)
        return UKKO_EINVAL;
    ukko_streams_t *st = cur->src->st;
    if (!st->producer)
        return UKKO_EINVAL;
    ticket_t *t = streams__xcalloc(1, sizeof(*t));
    t->kind = TICKET_HANDLER;
    t->st = st;
    t->rec = cur->rec;
    /* Taken before the produce: its report may come before producev returns. */
    t->ack = st->api->defer(ctx);
    /* A "send" span, child of the handler's current context; its context
     * (or, untraced, the current one) goes into the record's headers. */
    char tp[56];
    ukko_span_t *sp = streams__trace_send_begin(topic, key, klen, tp);
    rd_kafka_headers_t *hdrs = headers_of(headers, tp[0] ? tp
                                                   : cur->rec ? cur->rec->traceparent : NULL);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        st->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, klen),
        RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
    if (err) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs); /* not taken on failure */
        atomic_fetch_add_explicit(&st->produce_failed, 1, memory_order_relaxed); /* read by metrics */
        int rc = err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? UKKO_EAGAIN
                 : err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? UKKO_E2BIG
                                                              : UKKO_EINVAL;
        if (cur->rec)
            ukko_stream_fail_reason(ctx, "producing to %s failed: %s", topic, rd_kafka_err2str(err));
        st->api->ack(t->ack, rc);
        free(t);
        streams__trace_send_end(sp, rc);
        return rc;
    }
    atomic_fetch_add_explicit(&st->produced, 1, memory_order_relaxed); /* read by metrics */
    streams__trace_send_end(sp, 0);
    return 0;
}

void streams__dead_letter(streams__rec_t *rec)
{
    streams__part_t *part = rec->part;
    streams__source_t *src = part->src;
    ukko_streams_t *st = src->st;
    rec->dead_lettered = true;
    if (part->state == STREAMS__PART_GONE) {
        streams__rec_finish(rec, UKKO_ECANCELED);
        return;
    }
    char topic[512], partition[16], offset[32], attempts[16];
    snprintf(topic, sizeof(topic), "%s%s", src->topic, st->cfg->dead_letter_suffix);
    snprintf(partition, sizeof(partition), "%d", (int)rec->msg->partition);
    snprintf(offset, sizeof(offset), "%lld", (long long)rec->msg->offset);
    snprintf(attempts, sizeof(attempts), "%d", rec->attempts);
    /* The original headers, then the origin (as Kafka Connect's dead
     * letters carry theirs). */
    rd_kafka_headers_t *orig = NULL, *hdrs;
    if (rd_kafka_message_headers(rec->msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        hdrs = rd_kafka_headers_copy(orig);
    else
        hdrs = rd_kafka_headers_new(5);
    rd_kafka_header_add(hdrs, "ukko.dlq.topic", -1, src->topic, -1);
    rd_kafka_header_add(hdrs, "ukko.dlq.partition", -1, partition, -1);
    rd_kafka_header_add(hdrs, "ukko.dlq.offset", -1, offset, -1);
    rd_kafka_header_add(hdrs, "ukko.dlq.error", -1, rec->error, -1);
    rd_kafka_header_add(hdrs, "ukko.dlq.attempts", -1, attempts, -1);
    rd_kafka_header_add(hdrs, "ukko.dlq.entity-type", -1, src->type, -1);
    /* The dead letter's own "send" span, child of the record's span (its
     * context is rec->traceparent while traced); the copied traceparent
     * gives way to it. */
    ukko_trace_ctx_t parent;
    ukko_span_t *sp = NULL;
    char tp[56] = "";
    if (rec->traceparent[0] &&
        ukko_trace_parse(rec->traceparent, strlen(rec->traceparent), &parent) == 0) {
        char name[600];
        snprintf(name, sizeof(name), "send %s", topic);
        sp = ukko_span_start(name, UKKO_SPAN_PRODUCER, &parent);
        if (ukko_span_recording(sp)) {
            ukko_span_set_str(sp, "messaging.system", "kafka");
            ukko_span_set_str(sp, "messaging.operation.type", "send");
            ukko_span_set_str(sp, "messaging.operation.name", "send");
            ukko_span_set_str(sp, "messaging.destination.name", topic);
        }
        if (sp)
            ukko_span_traceparent(sp, tp);
        else
            snprintf(tp, sizeof(tp), "%s", rec->traceparent);
        rd_kafka_header_remove(hdrs, "traceparent");
        rd_kafka_header_add(hdrs, "traceparent", -1, tp, -1);
    }
    ticket_t *t = streams__xcalloc(1, sizeof(*t));
    t->kind = TICKET_DEAD_LETTER;
    t->st = st;
    t->rec = rec;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__STATE;
    if (st->producer)
        err = rd_kafka_producev(
            st->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(rec->msg->key, rec->msg->key_len),
            RD_KAFKA_V_VALUE(rec->msg->payload, rec->msg->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(t),
            RD_KAFKA_V_END);
    streams__trace_send_end(sp, err ? UKKO_EAGAIN : 0);
    if (err) {
        rd_kafka_headers_destroy(hdrs);
        free(t);
        st->dlq_failed++;
        ukko_logf(UKKO_LOG_ERROR, "streams",
                  UKKO_FIELDS(UKKO_FS("topic", topic), UKKO_FS("error", rd_kafka_err2str(err))),
                  "dead letter of %s/%d offset %lld not sent to %s: %s; trying again in %lld ms",
                  src->topic, part->partition, (long long)rec->msg->offset, topic,
                  rd_kafka_err2str(err), (long long)st->cfg->retry_backoff_max_ms);
        streams__rec_retry_later(rec, st->cfg->retry_backoff_max_ms);
    }
}
