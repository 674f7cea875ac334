/* tsan_sharding.c: test_sharding.c's tests run without Criterion
 * (tests/support/criterion_shim.h) so that they run under ThreadSanitizer:
 * the completion stack that dispatcher threads push and the loop takes,
 * deferred acks from other threads, tells from another thread. */
#include "../support/criterion_shim.h"

#include "test_sharding.c"

int main(int argc, char **argv)
{
    return shim_main(argc, argv);
}
