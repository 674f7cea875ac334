/* module.c: streams/ as a module of the program (node/ukko.h): for now the
 * command `ukko dev-kafka`, which reads its own arguments (its --help
 * included). Main thread. */
#include "streams.h"

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
    .commands = commands,
};
