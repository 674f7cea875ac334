/* shard_api.c: the one place streams/ names cluster/'s sharding functions:
 * the table the Kafka feed reaches sharding through, and the public
 * constructor that uses it (tests build their instance over a stand-in
 * table with streams__new_with, and link none of this). Loop thread. */
#include "streams_internal.h"

const streams__shard_api_t streams__shard_api_real = {
    .register_type = ukko_sharding_register,
    .set_shards = ukko_sharding_set_shards,
    .deliver = ukko_entity_deliver,
    .defer = ukko_entity_defer,
    .ack = ukko_entity_ack,
    .shard_of = ukko_shard_of,
};

int ukko_streams_new(ukko_node_t *node, ukko_sharding_t *sharding, const ukko_streams_config_t *sc,
                     ukko_streams_t **out)
{
    return streams__new_with(node, ukko_node_loop(node), sharding, &streams__shard_api_real, sc,
                             out);
}
