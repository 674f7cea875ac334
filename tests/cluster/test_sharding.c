/* Tests of cluster/sharding.c and cluster/sharding_entity.c in one
 * process: a real node of one member (127.0.5.6, insecure, on its own
 * libev loop) with its actor system, the sharding of an entity type with a
 * feed's start/stop hooks. Covered: every shard starts on the only member
 * (a refused start is placed again), deliveries come back done on the loop
 * thread with the handler's status, a deferred message is done only after
 * its ack from another thread, a tell from another thread is handled, and
 * a stop at once stops every feed with at_once. */
#include "sharding_runtime.h"

#include <criterion/criterion.h>
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NSH 12

static struct ev_loop *loop;
static ukko_config_t *cfg;
static ukko_node_config_t nc;
static ukko_cluster_config_t cc;
static ukko_node_t *node;
static ukko_actor_system_t *sys;
static ukko_cluster_t *cl;
static ukko_sharding_t *sh;
static pthread_t main_thread;

static int starts[NSH], stops[NSH], stops_at_once;
static bool refused_once;
static atomic_int handled, state_inits, wrong; /* set on dispatcher threads */

static int hook_start(void *ud, const char *type, int32_t shard)
{
    (void)ud;
    cr_assert_str_eq(type, "t");
    cr_assert(pthread_equal(pthread_self(), main_thread), "start hook on the loop thread");
    if (shard == 5 && !refused_once) {
        refused_once = true;
        return UKKO_EAGAIN;
    }
    starts[shard]++;
    return 0;
}

static bool hold_graceful;          /* a graceful stop is answered later */
static ukko_shard_stopped_fn held_done;
static void *held_arg;

static void hook_stop(void *ud, const char *type, int32_t shard, bool at_once,
                      ukko_shard_stopped_fn done, void *arg)
{
    (void)ud;
    (void)type;
    stops[shard]++;
    stops_at_once += at_once;
    if (hold_graceful && !at_once && !held_done) {
        held_done = done; /* still draining */
        held_arg = arg;
        return;
    }
    done(arg);
}

typedef struct ent {
    int count;
    char id[32];
} ent_t;

static int ent_init(void *state, const char *id, size_t len, void *ud)
{
    (void)ud;
    ent_t *e = state;
    if (e->count != 0)
        atomic_fetch_add(&wrong, 1); /* state starts zeroed */
    snprintf(e->id, sizeof(e->id), "%.*s", (int)len, id);
    atomic_fetch_add(&state_inits, 1);
    return 0;
}

static void *ack_later(void *p)
{
    usleep(50 * 1000);
    ukko_entity_ack(p, 0);
    return NULL;
}

static _Atomic(ukko_entity_ack_t *) kept_ack; /* type 4's, acked by the test */

/* Message types: 1 ok, 2 fail, 3 defer (acked 50 ms later by another thread),
 * 4 defer (kept in kept_ack for the test to ack). */
static int handler(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m)
{
    ent_t *e = state;
    size_t len;
    const char *id = ukko_entity_id(ctx, &len);
    if (len != m->entity_id_len || memcmp(id, e->id, len))
        atomic_fetch_add(&wrong, 1); /* not the entity's own id */
    e->count++;
    atomic_fetch_add(&handled, 1);
    if (m->type == 2)
        return UKKO_EINVAL;
    if (m->type == 3) {
        ukko_entity_ack_t *a = ukko_entity_defer(ctx);
        pthread_t t;
        if (pthread_create(&t, NULL, ack_later, a) == 0)
            pthread_detach(t);
        else
            ukko_entity_ack(a, 0);
    }
    if (m->type == 4)
        atomic_store(&kept_ack, ukko_entity_defer(ctx));
    return 0;
}

static const ukko_entity_type_t type_t = {
    .name = "t", .shards = NSH, .state_size = sizeof(ent_t), .state_init = ent_init,
    .handler = handler};

static void setup(void)
{
    main_thread = pthread_self();
    memset(starts, 0, sizeof(starts));
    memset(stops, 0, sizeof(stops));
    stops_at_once = 0;
    refused_once = false;
    hold_graceful = false;
    held_done = NULL;
    atomic_store(&handled, 0);
    atomic_store(&state_inits, 0);
    atomic_store(&wrong, 0);
    atomic_store(&kept_ack, NULL);
    ukko_log_setup(UKKO_LOG_WARN, UKKO_LOG_TEXT);
    loop = ev_loop_new(EVFLAG_AUTO);
    cfg = ukko_config_new();
    cr_assert_eq(ukko_node_config_register(cfg, &nc), 0);
    cr_assert_eq(ukko_cluster_config_register(cfg, &cc), 0);
    char *env[] = {"UKKO_CLUSTER_HOSTNAME=127.0.5.6", "UKKO_CLUSTER_SEED_NODES=127.0.5.6:7355",
                   "UKKO_CLUSTER_INSECURE=true", "UKKO_MANAGEMENT_HOSTNAME=127.0.5.6", NULL};
    cr_assert_eq(ukko_config_load(cfg, NULL, env), 0, "%s", ukko_config_error(cfg, 0));
    node = ukko_node_new(&nc, loop);
    cr_assert(node);
    cr_assert_eq(ukko_actor_system_new(NULL, loop, &sys), 0);
    cl = ukko_cluster_new(node, &cc);
    cr_assert(cl);
    cr_assert_eq(ukko_cluster_start(cl), 0);
    cr_assert_eq(ukko_sharding_new(cl, sys, &sh), 0);
    ukko_shard_hooks_t hooks = {hook_start, hook_stop, NULL};
    cr_assert_eq(ukko_sharding_register(sh, &type_t, &hooks), 0);
    cr_assert_eq(ukko_sharding_start(sh), 0);
}

static void teardown(void)
{
    /* as the program does: the actors stop before the sharding is freed */
    ukko_actor_system_stop(sys, UKKO_SHUTDOWN_DROP, 2000);
    ukko_sharding_free(sh);
    ukko_actor_system_free(sys);
    ukko_cluster_free(cl);
    ukko_node_free(node);
    ukko_config_free(cfg);
    ev_loop_destroy(loop);
}

/* Runs the loop until cond() or the deadline. */
static bool run_until(bool (*cond)(void), int timeout_ms)
{
    int64_t end = ukko_now_ms() + timeout_ms;
    while (!cond()) {
        if (ukko_now_ms() > end)
            return false;
        ev_run(loop, EVRUN_ONCE);
    }
    return true;
}

static bool all_started(void)
{
    return ukko_sharding_local_count(sh, "t") == NSH;
}

static int dones, done_status[8];
static bool done_on_loop = true;

static void on_done(void *arg, int status)
{
    int k = (int)(intptr_t)arg;
    done_on_loop = done_on_loop && pthread_equal(pthread_self(), main_thread);
    done_status[k] = status;
    dones++;
}

static bool four_done(void)
{
    return dones >= 4;
}

Test(sharding, every_shard_starts_and_deliveries_complete_on_the_loop, .init = setup,
     .fini = teardown, .timeout = 60)
{
    cr_assert(run_until(all_started, 20000), "12 shards run on the only member (saw %d)",
              ukko_sharding_local_count(sh, "t"));
    for (int s = 0; s < NSH; s++)
        cr_expect_eq(starts[s], 1, "shard %d started %d time(s)", s, starts[s]);
    cr_expect(refused_once, "shard 5's first start was refused, then placed again");

    dones = 0;
    const char *id = "customer-1";
    int32_t shard = ukko_shard_of(id, strlen(id), NSH);
    for (uint32_t type = 1; type <= 3; type++) {
        ukko_entity_msg_t m = {type, id, strlen(id), "x", 1, "", NULL};
        cr_assert_eq(ukko_entity_deliver(sh, "t", shard, &m, on_done, (void *)(intptr_t)type),
                     0);
    }
    cr_assert_eq(ukko_entity_deliver(sh, "t", (shard + 1) % NSH,
                                     &(ukko_entity_msg_t){1, id, strlen(id), "", 0, "", NULL},
                                     on_done, NULL),
                 0, "the feed chooses the shard (a record keyed elsewhere still arrives)");
    cr_assert(run_until(four_done, 10000), "deliveries done (saw %d)", dones);
    cr_expect_eq(atomic_load(&wrong), 0, "entities saw their own zeroed state and id");
    cr_expect(done_on_loop, "done callbacks run on the loop thread");
    cr_expect_eq(done_status[1], 0);
    cr_expect_eq(done_status[2], UKKO_EINVAL, "a handler's failure is the message's status");
    cr_expect_eq(done_status[3], 0, "a deferred message is done once acked");
    cr_expect_eq(ukko_entity_deliver(sh, "nope", 0,
                                     &(ukko_entity_msg_t){1, id, strlen(id), "", 0, "", NULL},
                                     on_done, NULL),
                 UKKO_EINVAL);
}

static void *tell_from_thread(void *p)
{
    (void)p;
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof(id), "e%d", i % 10);
        if (ukko_entity_tell(sh, "t", id, strlen(id), 1, "y", 1) != 0)
            atomic_fetch_add(&wrong, 1);
    }
    return NULL;
}

static bool hundred_handled(void)
{
    return atomic_load(&handled) >= 100;
}

Test(sharding, tells_from_another_thread_are_handled, .init = setup, .fini = teardown,
     .timeout = 60)
{
    cr_assert(run_until(all_started, 20000));
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, tell_from_thread, NULL), 0);
    pthread_join(t, NULL);
    cr_assert(run_until(hundred_handled, 10000), "100 tells handled (saw %d)",
              atomic_load(&handled));
    cr_expect_eq(atomic_load(&state_inits), 10, "one entity per id, started once each");
    cr_expect_eq(atomic_load(&wrong), 0, "every tell from the thread was queued");
    cr_expect_eq(ukko_entity_tell(sh, "nope", "a", 1, 1, "", 0), UKKO_EINVAL);
}

Test(sharding, a_stop_at_once_stops_every_feed, .init = setup, .fini = teardown, .timeout = 60)
{
    cr_assert(run_until(all_started, 20000));
    ukko_sharding_stop_now(sh);
    cr_expect_eq(ukko_sharding_local_count(sh, "t"), 0);
    cr_expect_eq(stops_at_once, NSH, "every feed stopped at once (saw %d)", stops_at_once);
    for (int s = 0; s < NSH; s++)
        cr_expect_eq(stops[s], 1, "shard %d's feed stopped %d time(s)", s, stops[s]);
    ukko_entity_msg_t m = {1, "a", 1, "", 0, "", NULL};
    cr_expect_eq(ukko_entity_deliver(sh, "t", 0, &m, on_done, NULL), UKKO_ENOENT,
                 "nothing runs after the stop");
}

static bool shard0_stopping(void)
{
    return stops[0] == 1;
}

/* A shard whose feed is still draining for a hand-off when the node is
 * downed: its feed is told again, at once (it must not outlive the shard,
 * and records it would deliver would find none). */
Test(sharding, a_stop_at_once_reaches_a_feed_already_stopping, .init = setup, .fini = teardown,
     .timeout = 60)
{
    cr_assert(run_until(all_started, 20000));
    hold_graceful = true;
    /* the coordinator (this node) asks for shard 0 back, no fencers */
    ukko_buf_t b;
    ukko_buf_init(&b, 4096);
    sh_put_header(&b, UKKO_WIRE_SH_HANDOFF, &sh->self, 0);
    sh_put_name(&b, "t");
    sh_put_u32(&b, 0);
    sh_put_u16(&b, 0);
    sh__on_frame(sh, (const uint8_t *)b.data, b.len);
    ukko_buf_destroy(&b);
    cr_assert(run_until(shard0_stopping, 10000), "the hand-off stopped shard 0's feed");
    cr_assert_not_null(held_done, "the graceful stop is still draining");
    ukko_sharding_stop_now(sh);
    cr_expect_eq(stops[0], 2, "shard 0's draining feed was told to stop at once too (stops: %d)",
                 stops[0]);
    cr_expect_eq(stops_at_once, NSH, "every feed stopped at once (saw %d)", stops_at_once);
    held_done(held_arg);
    ukko_entity_msg_t m = {1, "a", 1, "", 0, "", NULL};
    cr_expect_eq(ukko_entity_deliver(sh, "t", 0, &m, on_done, NULL), UKKO_ENOENT,
                 "nothing runs after the stop");
}

static bool shard0_stopped(void)
{
    return stops[0] >= 1;
}

/* Defence in depth: a table of the coordinator that names another owner
 * for a shard running here (it never should) stops the shard here at once,
 * so that it does not run on two nodes. */
Test(sharding, a_shard_the_table_gives_to_another_member_stops_here_at_once, .init = setup,
     .fini = teardown, .timeout = 60)
{
    cr_assert(run_until(all_started, 20000));
    sh_node_t other = sh->self;
    other.uid[0] ^= 0xff; /* another incarnation: not a member this node knows */
    ukko_buf_t b;
    ukko_buf_init(&b, 1 << 16);
    sh_put_header(&b, UKKO_WIRE_SH_TABLE, &sh->self, 0);
    sh_put_u64(&b, sh->types[0].version + 1000);
    sh_put_name(&b, "t");
    sh_put_u32(&b, NSH);
    sh_put_u16(&b, 2);
    sh_put_node(&b, &sh->self);
    sh_put_node(&b, &other);
    for (int i = 0; i < NSH; i++) {
        sh_put_u16(&b, i == 0 ? 1 : 0);
        sh_put_u8(&b, 0);
    }
    sh__on_frame(sh, (const uint8_t *)b.data, b.len);
    ukko_buf_destroy(&b);
    cr_assert(run_until(shard0_stopped, 10000), "shard 0 was not stopped here");
    cr_expect_eq(stops_at_once, 1, "stopped at once, no hand-off (saw %d)", stops_at_once);
    cr_expect_eq(ukko_sharding_local_count(sh, "t"), NSH - 1, "the other shards still run");
    ukko_entity_msg_t m = {1, "a", 1, "", 0, "", NULL};
    cr_expect_eq(ukko_entity_deliver(sh, "t", 0, &m, on_done, NULL), UKKO_ENOENT,
                 "shard 0 takes no record here any more");
}

static bool ack_kept(void)
{
    return atomic_load(&kept_ack) != NULL;
}

/* A deferred ack may come after the node's stop freed the sharding (a
 * producer's delivery report, a reply from elsewhere): it must be taken
 * quietly, touching nothing of the freed sharding (ASan says so), and the
 * entity and delivery it held are freed, not leaked. */
Test(sharding, an_ack_after_the_sharding_is_freed_touches_nothing_freed, .init = setup,
     .fini = teardown, .timeout = 60)
{
    cr_assert(run_until(all_started, 20000));
    const char *id = "late-ack";
    ukko_entity_msg_t m = {4, id, strlen(id), "x", 1, "", NULL};
    dones = 0;
    cr_assert_eq(ukko_entity_deliver(sh, "t", ukko_shard_of(id, strlen(id), NSH), &m, on_done,
                                     NULL),
                 0);
    cr_assert(run_until(ack_kept, 10000), "the handler deferred its ack");
    ukko_actor_system_stop(sys, UKKO_SHUTDOWN_DROP, 2000);
    ukko_sharding_free(sh);
    sh = NULL;
    ukko_entity_ack(atomic_exchange(&kept_ack, NULL), 0);
    ev_run(loop, EVRUN_NOWAIT);
    cr_expect_eq(dones, 0, "no done callback runs once the sharding is freed (saw %d)", dones);
}
