/* sink.c: the built-in application `ukko run --app sink`: an entity per key
 * of topic `orders` (type and group.id `sink`) whose handler acknowledges
 * each record at once and does nothing else, so what it costs is the feed
 * itself: fetching, routing to entities, acks, the watermark and the
 * commits. tests/bench/bench_kafka_shards.c puts it beside a bare librdkafka
 * consumer. Handlers run on dispatcher threads; init on the loop thread. */
#include "streams.h"

#include <stddef.h>

static int on_record(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m)
{
    (void)ctx;
    (void)state;
    (void)m;
    return 0; /* acknowledged: the offset may be committed */
}

const ukko_stream_type_t ukko_sink_type = {
    .type =
        {
            .name = "sink",
            .shards = 0,
            .state_size = 0,
            .handler = on_record,
        },
    .topic = "orders",
};

static int sink_init(ukko_host_t *host, void *ud)
{
    (void)ud;
    return ukko_host_add_hook(host, UKKO_HOOK_STREAM_TYPE, &ukko_sink_type);
}

const ukko_app_t ukko_sink_app = {
    .name = "sink",
    .about = "acknowledges every record of topic orders at once (group sink): the cost of "
             "the feed alone, for benchmarks",
    .init = sink_init,
};
