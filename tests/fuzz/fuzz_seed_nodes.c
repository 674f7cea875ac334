/* fuzz_seed_nodes: a contact point's /bootstrap/seed-nodes answer
 * (cluster/bootstrap.c), as any process on a pod's address could send it.
 * Invariants: at most max seeds, each with a port, none twice; seeds of
 * another cluster name are counted, never returned; nothing leaks. */
#include "bootstrap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cluster__addr_t out[8];
    size_t n = 99, foreign = 99;
    int rc = cluster__bootstrap_parse_seeds((const char *)data, size, "ukko", out, 8, &n,
                                            &foreign);
    if (rc < 0) {
        if (n != 0)
            abort();
        return 0;
    }
    if (n > 8)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (!out[i].port)
            abort();
        for (size_t j = 0; j < i; j++)
            if (cluster__addr_eq(&out[i], &out[j]))
                abort();
    }
    return 0;
}
