/* tsan_actors.c: the actor runtime's Criterion tests, run without Criterion
 * (tests/support/criterion_shim.h) so that they run under ThreadSanitizer:
 * mailboxes, actors, ask, timers and the actor system, one after another in
 * this process. */
#include "../support/criterion_shim.h"

#include "test_mailbox.c"
#include "test_actor.c"
#include "test_actor_ask.c"
#include "test_actor_timer.c"
#include "test_actor_system.c"

int main(int argc, char **argv)
{
    return shim_main(argc, argv);
}
