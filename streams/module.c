/* module.c: streams/ as a module of the program (node/ukko.h): the kafka.*
 * settings, the Kafka feed of the entity types applications offer
 * (UKKO_HOOK_STREAM_TYPE), its metrics, and the command `ukko dev-kafka`,
 * which reads its own arguments (its --help included). Main thread. */
#include "streams.h"

#include <stdio.h>

static int register_config(ukko_config_t *cfg, void *settings)
{
    return ukko_streams_config_register(cfg, settings);
}

/* Runs only when the application offers topic-fed types: they need the
 * cluster's sharding (which decides the owner of each partition). */
static int start(ukko_host_t *host, void *settings, void **state)
{
    const ukko_stream_type_t *first = ukko_host_hook(host, UKKO_HOOK_STREAM_TYPE, 0);
    if (!first)
        return 0;
    ukko_cluster_t *c = ukko_cluster_of(host);
    ukko_sharding_t *sh = c ? ukko_cluster_sharding(c) : NULL;
    if (!sh) {
        ukko_log(UKKO_LOG_ERROR, "streams",
                 "entity type %s reads topic %s, but this node runs no cluster sharding: "
                 "configure a cluster (cluster.seed-nodes, or discovery with a keyring or "
                 "cluster.insecure)",
                 first->type.name, first->topic);
        return UKKO_EINVAL;
    }
    ukko_streams_t *st = NULL;
    int rc = ukko_streams_new(ukko_host_node(host), sh, settings, &st);
    const ukko_stream_type_t *t;
    for (size_t i = 0; rc == 0 && (t = ukko_host_hook(host, UKKO_HOOK_STREAM_TYPE, i)); i++)
        rc = ukko_streams_add_type(st, &t->type, t->topic);
    if (rc == 0)
        rc = ukko_streams_start(st);
    if (rc < 0) {
        ukko_streams_free(st); /* after a failed start too: nothing ran on the loop yet */
        return rc;
    }
    *state = st;
    return 0;
}

static void free_state(void *state)
{
    ukko_streams_free(state);
}

static int cmd_dev_kafka(const ukko_cmd_t *cmd)
{
    return ukko_streams_dev_kafka_main(cmd->argc, cmd->argv);
}

static const ukko_subcommand_t commands[] = {
    {"dev-kafka",
     "  ukko dev-kafka [--topic NAME:N]...     a local mock Kafka broker (dev-kafka --help)\n",
     cmd_dev_kafka, true},
    {NULL, NULL, NULL, false},
};

const ukko_module_t ukko_streams_module = {
    .name = "streams",
    .settings_size = sizeof(ukko_streams_config_t),
    .register_config = register_config,
    .start = start,
    .metrics = ukko_streams_metrics,
    .free = free_state,
    .commands = commands,
};
