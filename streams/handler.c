/* handler.c: how sharding calls the handler of a topic-fed type: through a
 * trampoline per slot, which notes the record being served (thread-local)
 * so that ukko_stream_produce and ukko_stream_origin, given only the ctx,
 * know it; the type's ud stays the application's. Slots are taken and
 * released on the loop thread; trampolines run on dispatcher threads.
 * Invariant: a slot's source is set before sharding can call its trampoline
 * and cleared only after the type can no longer be called. */
#include "streams_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Written on the loop thread (release), read by handlers (acquire). */
static _Atomic(streams__source_t *) slots[STREAMS__MAX_SLOTS];
static _Thread_local streams__current_t current;

static int run(int slot, ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m)
{
    /* Pairs with the release store in streams__slot_take. */
    streams__source_t *src = atomic_load_explicit(&slots[slot], memory_order_acquire);
    if (!src)
        return UKKO_ENOENT;
    streams__current_t saved = current;
    current.src = src;
    current.rec = m ? m->origin : NULL;
    current.ctx = ctx;
    /* The record's span is current while its handler runs: the handler's
     * tells, records and log lines are its children (streams/trace.c). */
    ukko_span_t *prev = streams__trace_handler_enter(current.rec);
    int rc = src->app.handler(ctx, state, m);
    streams__trace_handler_leave(current.rec, prev, rc);
    current = saved;
    return rc;
}

#define TRAMPOLINE(n)                                                                      \
    static int trampoline_##n(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m) \
    {                                                                                      \
        return run(n, ctx, state, m);                                                      \
    }
TRAMPOLINE(0) TRAMPOLINE(1) TRAMPOLINE(2) TRAMPOLINE(3) TRAMPOLINE(4) TRAMPOLINE(5)
TRAMPOLINE(6) TRAMPOLINE(7) TRAMPOLINE(8) TRAMPOLINE(9) TRAMPOLINE(10) TRAMPOLINE(11)
TRAMPOLINE(12) TRAMPOLINE(13) TRAMPOLINE(14) TRAMPOLINE(15) TRAMPOLINE(16) TRAMPOLINE(17)
TRAMPOLINE(18) TRAMPOLINE(19) TRAMPOLINE(20) TRAMPOLINE(21) TRAMPOLINE(22) TRAMPOLINE(23)
TRAMPOLINE(24) TRAMPOLINE(25) TRAMPOLINE(26) TRAMPOLINE(27) TRAMPOLINE(28) TRAMPOLINE(29)
TRAMPOLINE(30) TRAMPOLINE(31)

static const ukko_entity_handler_fn trampolines[STREAMS__MAX_SLOTS] = {
    trampoline_0,  trampoline_1,  trampoline_2,  trampoline_3,  trampoline_4,  trampoline_5,
    trampoline_6,  trampoline_7,  trampoline_8,  trampoline_9,  trampoline_10, trampoline_11,
    trampoline_12, trampoline_13, trampoline_14, trampoline_15, trampoline_16, trampoline_17,
    trampoline_18, trampoline_19, trampoline_20, trampoline_21, trampoline_22, trampoline_23,
    trampoline_24, trampoline_25, trampoline_26, trampoline_27, trampoline_28, trampoline_29,
    trampoline_30, trampoline_31,
};

int streams__slot_take(streams__source_t *src)
{
    for (int i = 0; i < STREAMS__MAX_SLOTS; i++) {
        streams__source_t *expected = NULL;
        /* Pairs with the acquire load in run. */
        if (atomic_compare_exchange_strong_explicit(&slots[i], &expected, src,
                                                    memory_order_release, memory_order_relaxed))
            return i;
    }
    return -1;
}

ukko_entity_handler_fn streams__slot_handler(int slot)
{
    return slot >= 0 && slot < STREAMS__MAX_SLOTS ? trampolines[slot] : NULL;
}

void streams__slot_release(int slot)
{
    if (slot >= 0 && slot < STREAMS__MAX_SLOTS)
        atomic_store_explicit(&slots[slot], NULL, memory_order_release); /* pairs with run */
}

const streams__current_t *streams__current(void)
{
    return current.src ? &current : NULL;
}

int ukko_stream_origin(const ukko_entity_ctx_t *ctx, const ukko_entity_msg_t *m,
                       ukko_stream_origin_t *o)
{
    memset(o, 0, sizeof(*o));
    o->timestamp_ms = -1;
    const streams__current_t *cur = streams__current();
    if (!cur || cur->ctx != ctx || !m || !m->origin || m->origin != cur->rec)
        return UKKO_ENOENT;
    const streams__rec_t *rec = cur->rec;
    o->topic = cur->src->topic;
    o->partition = rec->msg->partition;
    o->offset = rec->msg->offset;
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(rec->msg, &tt);
    o->timestamp_ms = tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts;
    o->attempt = rec->attempts;
    return 0;
}

void ukko_stream_fail_reason(ukko_entity_ctx_t *ctx, const char *fmt, ...)
{
    const streams__current_t *cur = streams__current();
    if (!cur || cur->ctx != ctx || !cur->rec)
        return;
    /* The loop reads error only after sharding's done callback, which
     * comes after this handler returned (the mailbox orders them). */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cur->rec->error, sizeof(cur->rec->error), fmt, ap);
    va_end(ap);
}
