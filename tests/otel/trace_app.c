/* trace_app.c: the application of the tracing test (tests/otel/test_tracing.py),
 * built as a user's shared library (`ukko run --app libukko_trace_app.so`):
 * entity type "orders" fed by topic "orders" tells, for each record, the
 * entity "<key>~relay" of the same type (whose shard may live on another
 * node: a remote tell over the node-to-node transport), and that entity
 * produces one record to "orders-processed" saying which node got the
 * record and which node produced. The trace goes record -> tell -> produce.
 * Handlers on dispatcher threads; init on the loop thread. */
#include "cluster.h"
#include "streams.h"
#include "ukko.h"

#include <stdio.h>
#include <string.h>

#define MSG_RELAY 7u

static ukko_host_t *g_host;

static int on_message(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m)
{
    (void)state;
    if (m->origin) {
        /* A record: on to the relay entity, by id, wherever it lives. */
        ukko_cluster_t *c = ukko_cluster_of(g_host);
        ukko_sharding_t *sh = c ? ukko_cluster_sharding(c) : NULL;
        if (!sh)
            return UKKO_EAGAIN;
        char id[300], body[600];
        int n = snprintf(id, sizeof(id), "%.*s~relay", (int)m->entity_id_len, m->entity_id);
        int bn = snprintf(body, sizeof(body), "{\"via\":\"%s\",\"key\":\"%.*s\"}",
                          ukko_entity_node(ctx), (int)m->entity_id_len, m->entity_id);
        ukko_span_set_str(ukko_trace_current(), "app.relay.to", id);
        return ukko_entity_tell(sh, "orders", id, (size_t)n, MSG_RELAY, body, (size_t)bn);
    }
    if (m->type != MSG_RELAY)
        return 0;
    char out[900];
    int n = snprintf(out, sizeof(out), "{\"node\":\"%s\",\"relayed\":%.*s}", ukko_entity_node(ctx),
                     (int)m->len, (const char *)m->data);
    return ukko_stream_produce(ctx, "orders-processed", m->entity_id, m->entity_id_len, out,
                               (size_t)n, NULL);
}

static const ukko_stream_type_t orders = {
    .type = {.name = "orders", .shards = 0, .state_size = 8, .handler = on_message},
    .topic = "orders",
};

static int init(ukko_host_t *host, void *ud)
{
    (void)ud;
    g_host = host;
    return ukko_host_add_hook(host, UKKO_HOOK_STREAM_TYPE, &orders);
}

const ukko_app_t ukko_app = {
    .name = "trace-test",
    .about = "tests/otel: record -> remote tell -> produced record, traced",
    .init = init,
};
