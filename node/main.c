/* main.c: the `ukko` program's main: registers the applications built into
 * the binary, then ukko_main (node/program.c) parses the command line and
 * runs the modules. Main thread. Exit codes: 0 orderly stop, 1 runtime
 * failure, 2 bad usage or config. */
#include "cluster.h"
#include "streams.h"
#include "ukko.h"

#include <stddef.h>

/* The applications `ukko run --app NAME` can run. An application of one's
 * own is a program whose main calls ukko_main(argc, argv, &my_app) instead. */
static const ukko_app_t *const builtin_apps[] = {
    &ukko_sharding_counter_app, /* sharded counters: trying sharding, its tests */
    &ukko_orders_app,           /* the Kafka demo (docs/streams.md) */
    &ukko_sink_app,             /* acks each record of orders at once: benchmarks */
    NULL,
};

int main(int argc, char **argv)
{
    for (size_t i = 0; builtin_apps[i]; i++)
        (void)ukko_app_register(builtin_apps[i]);
    return ukko_main(argc, argv, NULL);
}
