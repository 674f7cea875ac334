/* trace.c: the spans of the Kafka path, named and attributed by
 * OpenTelemetry's messaging conventions: "process <topic>" (consumer) per
 * record from its arrival to its end, its parent the record's traceparent;
 * "send <topic>" (producer) per record a handler produces and per dead
 * letter. Threads: a record's span is begun and ended on the loop thread and
 * written by the handler's thread in between (the mailbox and the done
 * callback order those writes). While tracing is off, nothing but the
 * traceparent pass-through happens. */
#include "streams_internal.h"

#include <stdio.h>
#include <string.h>

/* A key is shown only when it reads as text (the conventions: a key with
 * no canonical string form is left out). */
static bool printable(const void *key, size_t klen)
{
    if (!key || !klen || klen > 256)
        return false;
    const unsigned char *k = key;
    for (size_t i = 0; i < klen; i++)
        if (k[i] < 0x20 || k[i] > 0x7e)
            return false;
    return true;
}

static void set_key(ukko_span_t *sp, const void *key, size_t klen)
{
    if (!printable(key, klen))
        return;
    char k[257];
    memcpy(k, key, klen);
    k[klen] = '\0';
    ukko_span_set_str(sp, "messaging.kafka.message.key", k);
}

void streams__trace_record_begin(streams__rec_t *rec)
{
    if (!ukko_trace_enabled() || rec->span)
        return;
    const streams__source_t *src = rec->part->src;
    const rd_kafka_message_t *msg = rec->msg;
    ukko_trace_ctx_t parent;
    bool has_parent =
        rec->traceparent[0] &&
        ukko_trace_parse(rec->traceparent, strlen(rec->traceparent), &parent) == 0;
    char name[300];
    snprintf(name, sizeof(name), "process %s", src->topic);
    /* The loop thread has no current span of its own here; an explicit
     * parent, or a root. */
    ukko_span_t *prev = ukko_trace_enter(NULL);
    ukko_span_t *sp = ukko_span_start(name, UKKO_SPAN_CONSUMER, has_parent ? &parent : NULL);
    ukko_trace_leave(prev);
    if (!sp)
        return;
    if (ukko_span_recording(sp)) {
        char part[16];
        snprintf(part, sizeof(part), "%d", (int)msg->partition);
        ukko_span_set_str(sp, "messaging.system", "kafka");
        ukko_span_set_str(sp, "messaging.operation.type", "process");
        ukko_span_set_str(sp, "messaging.operation.name", "process");
        ukko_span_set_str(sp, "messaging.destination.name", src->topic);
        ukko_span_set_str(sp, "messaging.destination.partition.id", part);
        ukko_span_set_int(sp, "messaging.kafka.offset", msg->offset);
        ukko_span_set_str(sp, "messaging.consumer.group.name", src->type);
        ukko_span_set_int(sp, "messaging.message.body.size", (int64_t)msg->len);
        set_key(sp, msg->key, msg->key_len);
    }
    rec->span = sp;
    ukko_span_traceparent(sp, rec->traceparent);
}

void streams__trace_record_end(streams__rec_t *rec, int status)
{
    ukko_span_t *sp = rec->span;
    if (!sp)
        return;
    rec->span = NULL;
    if (rec->attempts > 0)
        ukko_span_set_int(sp, "ukko.attempts", rec->attempts + (status == 0 && !rec->dead_lettered));
    if (rec->dead_lettered) {
        ukko_span_set_str(sp, "error.type", "dead_letter");
        ukko_span_set_status(sp, UKKO_SPAN_ERROR,
                             rec->error[0] ? rec->error : "sent to the dead-letter topic");
    } else if (status == UKKO_ECANCELED) {
        ukko_span_add_event(sp, "cancelled", "ukko.reason",
                            "its shard stopped here; the next owner reads it again");
    } else if (status < 0) {
        ukko_span_set_str(sp, "error.type", ukko_strerror(status));
        ukko_span_record_error(sp, status, rec->error);
    }
    ukko_span_end(sp);
}

ukko_span_t *streams__trace_handler_enter(streams__rec_t *rec)
{
    return rec && rec->span ? ukko_trace_enter(rec->span) : ukko_trace_current();
}

void streams__trace_handler_leave(streams__rec_t *rec, ukko_span_t *prev, int rc)
{
    if (!rec || !rec->span)
        return;
    if (rc < 0) {
        char attempt[16];
        snprintf(attempt, sizeof(attempt), "%d", rec->attempts + 1);
        ukko_span_add_event(rec->span, "exception", "exception.message",
                            rec->error[0] ? rec->error : ukko_strerror(rc));
        ukko_span_add_event(rec->span, "retry", "ukko.attempt", attempt);
    }
    ukko_trace_leave(prev);
}

ukko_span_t *streams__trace_send_begin(const char *topic, const void *key, size_t klen,
                                       char tp[56])
{
    tp[0] = '\0';
    char name[300];
    snprintf(name, sizeof(name), "send %s", topic);
    ukko_span_t *sp = ukko_span_start(name, UKKO_SPAN_PRODUCER, NULL);
    if (!sp) {
        /* Off: the context passes through as it came. */
        ukko_trace_ctx_t c;
        if (ukko_trace_current_context(&c) == 0)
            ukko_trace_format(&c, tp);
        return NULL;
    }
    if (ukko_span_recording(sp)) {
        ukko_span_set_str(sp, "messaging.system", "kafka");
        ukko_span_set_str(sp, "messaging.operation.type", "send");
        ukko_span_set_str(sp, "messaging.operation.name", "send");
        ukko_span_set_str(sp, "messaging.destination.name", topic);
        set_key(sp, key, klen);
    }
    ukko_span_traceparent(sp, tp);
    return sp;
}

void streams__trace_send_end(ukko_span_t *sp, int rc)
{
    if (rc < 0) {
        ukko_span_set_str(sp, "error.type", ukko_strerror(rc));
        ukko_span_record_error(sp, rc, NULL);
    }
    ukko_span_end(sp);
}
