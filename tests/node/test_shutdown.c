/* Tests node/shutdown.c through the node's public stop API: phases run in
 * their order whatever order tasks were added in, asynchronous tasks hold
 * their phase until done, a phase that times out is logged with the task
 * that did not finish and the stop goes on, the whole stop is bounded by
 * cluster.shutdown-timeout, and a downed node skips the leave phases and
 * exits 1. Each test runs a node on a private loop; no sockets. */
#include "ukko.h"

#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ukko_node_config_t nc;
static ukko_node_t *node;
static struct ev_loop *loop;
static char log_path[64];
static int log_fd = -1;

/* What ran, in order: "phase/name" entries. */
static char trail[64][96];
static size_t ntrail;

/* Logs go to a file of this test, at debug, as text. */
static int open_log(void)
{
    FILE *f = fopen(log_path, "w");
    cr_assert(f);
    int fd = dup(fileno(f));
    fclose(f);
    ukko_log_setup(UKKO_LOG_DEBUG, UKKO_LOG_TEXT);
    ukko_log_set_fd(fd);
    return fd;
}

static void setup(void)
{
    memset(&nc, 0, sizeof(nc));
    nc.mgmt_host = "127.0.0.1";
    nc.mgmt_max_request_line = 8192;
    nc.mgmt_max_header_bytes = 16384;
    nc.mgmt_max_body_bytes = 65536;
    nc.mgmt_max_connections = 4;
    nc.mgmt_idle_timeout_ms = nc.mgmt_request_timeout_ms = 1000;
    nc.shutdown_timeout_ms = 10000;
    snprintf(log_path, sizeof(log_path), "/tmp/ukko-shutdown-log-%d", (int)getpid());
    log_fd = open_log();
    ntrail = 0;
    loop = ev_loop_new(0);
    cr_assert(loop);
}

static void teardown(void)
{
    ukko_node_free(node);
    node = NULL;
    ev_loop_destroy(loop);
    ukko_log_set_fd(2);
    if (log_fd >= 0)
        close(log_fd);
    unlink(log_path);
}

static void make_node(void)
{
    node = ukko_node_new(&nc, loop);
    cr_assert(node, "a node on a private loop");
}

static bool log_has(const char *needle)
{
    FILE *f = fopen(log_path, "r");
    cr_assert(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static void record(ukko_stop_task_t *task, const char *name)
{
    (void)task;
    cr_assert(ntrail < 64);
    snprintf(trail[ntrail++], sizeof(trail[0]), "%s", name);
}

/* A synchronous task: records its name (ud) and is done at once. */
static void sync_task(ukko_stop_task_t *task, void *ud)
{
    record(task, ud);
    ukko_stop_task_done(task);
}

/* A task that never finishes by itself. */
static ukko_stop_task_t *stuck;
static void stuck_task(ukko_stop_task_t *task, void *ud)
{
    record(task, ud);
    stuck = task;
}

static int run(void)
{
    return ukko_node_run(node);
}

TestSuite(shutdown, .init = setup, .fini = teardown, .timeout = 20);

Test(shutdown, phases_run_in_their_order_whatever_order_tasks_were_added_in)
{
    make_node();
    /* Added in the order modules would add them: the core's last phase
     * first, sharding (a later module) after the cluster's leave. */
    cr_assert_eq(ukko_node_add_stop_task(node, UKKO_PHASE_ACTOR_SYSTEM_TERMINATE, "actors",
                                         sync_task, "actor-system-terminate/actors"), 0);
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_LEAVE, "leave", sync_task,
                            "cluster-leave/leave");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_EXITING_DONE, "cluster-stop", sync_task,
                            "cluster-exiting-done/cluster-stop");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_SHARDING_SHUTDOWN_REGION, "shards-a",
                            sync_task, "cluster-sharding-shutdown-region/shards-a");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_SHARDING_SHUTDOWN_REGION, "shards-b",
                            sync_task, "cluster-sharding-shutdown-region/shards-b");
    ukko_node_add_stop_task(node, UKKO_PHASE_BEFORE_SERVICE_UNBIND, "first", sync_task,
                            "before-service-unbind/first");
    ukko_node_stop(node, "test");
    cr_assert(ukko_node_stopping(node));
    cr_assert_eq(run(), 0, "an orderly stop exits 0");
    const char *want[] = {"before-service-unbind/first", "cluster-sharding-shutdown-region/shards-a",
                          "cluster-sharding-shutdown-region/shards-b", "cluster-leave/leave",
                          "cluster-exiting-done/cluster-stop", "actor-system-terminate/actors"};
    cr_assert_eq(ntrail, 6, "every task ran once (ran %zu)", ntrail);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(trail[i], want[i], "task %zu: expected %s, ran %s", i, want[i], trail[i]);
    cr_assert(log_has("stopped in order in"), "the whole stop is logged at info with its time");
    cr_assert(log_has("stop phase cluster-leave done in"), "each phase is logged at debug");
    cr_assert(log_has("reason=orderly"), "the reason is logged");
}

Test(shutdown, phase_names_are_pekkos)
{
    const char *want[] = {"before-service-unbind",
                          "service-unbind",
                          "service-requests-done",
                          "cluster-sharding-shutdown-region",
                          "cluster-leave",
                          "cluster-exiting",
                          "cluster-exiting-done",
                          "before-actor-system-terminate",
                          "actor-system-terminate"};
    for (int p = 0; p < UKKO_PHASE_COUNT; p++)
        cr_assert_str_eq(ukko_phase_name((ukko_phase_t)p), want[p]);
    cr_assert_str_eq(ukko_stop_reason_name(UKKO_STOP_DOWNED), "downed");
}

/* An asynchronous task: done 50 ms later, from a timer of its own. */
typedef struct later {
    ev_timer t;
    ukko_stop_task_t *task;
    const char *name;
} later_t;

static void on_later(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)revents;
    later_t *x = w->data;
    record(x->task, x->name);
    ukko_stop_task_done(x->task);
}

static void async_task(ukko_stop_task_t *task, void *ud)
{
    later_t *x = ud;
    x->task = task;
    ev_timer_init(&x->t, on_later, 0.05, 0.);
    x->t.data = x;
    ev_timer_start(loop, &x->t);
}

Test(shutdown, an_asynchronous_task_holds_its_phase_until_it_is_done)
{
    make_node();
    later_t a = {.name = "sharding/handed-off"};
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_SHARDING_SHUTDOWN_REGION, "hand-off",
                            async_task, &a);
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_SHARDING_SHUTDOWN_REGION, "beside",
                            sync_task, "sharding/beside");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_LEAVE, "leave", sync_task, "leave/leave");
    ukko_node_stop(node, "test");
    cr_assert_eq(run(), 0);
    cr_assert_eq(ntrail, 3);
    /* Both tasks of the phase started before either ended; the phase after
     * waited for the asynchronous one. */
    cr_assert_str_eq(trail[0], "sharding/beside");
    cr_assert_str_eq(trail[1], "sharding/handed-off");
    cr_assert_str_eq(trail[2], "leave/leave", "cluster-leave began only after the hand-off");
}

/* Completes the stuck task late, from a later phase: nothing changes. */
static void late_done_task(ukko_stop_task_t *task, void *ud)
{
    record(task, ud);
    ukko_stop_task_done(stuck);
    ukko_stop_task_done(stuck);
    ukko_stop_task_done(task);
}

Test(shutdown, a_phase_that_times_out_names_the_task_and_the_stop_goes_on)
{
    make_node();
    ukko_node_set_phase_timeout(node, UKKO_PHASE_SERVICE_REQUESTS_DONE, 100);
    ukko_node_add_stop_task(node, UKKO_PHASE_SERVICE_REQUESTS_DONE, "drain-requests", stuck_task,
                            "requests/stuck");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_LEAVE, "leave", late_done_task,
                            "leave/late-done");
    ukko_node_add_stop_task(node, UKKO_PHASE_ACTOR_SYSTEM_TERMINATE, "actors", sync_task,
                            "actors/actors");
    ukko_node_stop(node, "test");
    cr_assert_eq(run(), 0, "a phase that times out does not fail the stop");
    cr_assert_eq(ntrail, 3, "the phases after it ran");
    cr_assert_str_eq(trail[1], "leave/late-done");
    cr_assert_str_eq(trail[2], "actors/actors");
    cr_assert(log_has("stop phase service-requests-done did not finish within 100ms"),
              "the timeout is logged with the phase and its time");
    cr_assert(log_has("\"drain-requests\" still running"), "the log names the task");
}

Test(shutdown, the_whole_stop_is_bounded_by_cluster_shutdown_timeout)
{
    nc.shutdown_timeout_ms = 300;
    make_node();
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_LEAVE, "cluster-leave", stuck_task,
                            "leave/stuck");
    ukko_node_add_stop_task(node, UKKO_PHASE_ACTOR_SYSTEM_TERMINATE, "actors", sync_task,
                            "actors/actors");
    ukko_node_stop(node, "test");
    cr_assert_eq(run(), 1, "a stop cut short by cluster.shutdown-timeout exits 1");
    cr_assert_eq(ntrail, 1, "nothing runs past the deadline");
    cr_assert(log_has("orderly stop did not finish within cluster.shutdown-timeout (300ms)"));
    cr_assert(log_has("phase cluster-leave, waiting on \"cluster-leave\""),
              "the log says where the stop was");
}

Test(shutdown, a_downed_node_skips_the_leave_and_exits_1)
{
    make_node();
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_SHARDING_SHUTDOWN_REGION, "shards",
                            sync_task, "sharding/shards");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_LEAVE, "leave", sync_task, "leave/leave");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_EXITING, "exiting", sync_task,
                            "exiting/exiting");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_EXITING_DONE, "cluster-stop", sync_task,
                            "exiting-done/cluster-stop");
    ukko_node_add_stop_task(node, UKKO_PHASE_ACTOR_SYSTEM_TERMINATE, "actors", sync_task,
                            "actors/actors");
    ukko_node_stop_for(node, UKKO_STOP_DOWNED, "downed by the split-brain resolver");
    cr_assert_eq(ukko_node_stop_reason(node), UKKO_STOP_DOWNED);
    cr_assert_eq(run(), 1, "a downed node exits non-zero, so that it is restarted");
    cr_assert_eq(ntrail, 3, "the leave phases were skipped (ran %zu tasks)", ntrail);
    cr_assert_str_eq(trail[0], "sharding/shards");
    cr_assert_str_eq(trail[1], "exiting-done/cluster-stop");
    cr_assert_str_eq(trail[2], "actors/actors");
    cr_assert(log_has("stop phase cluster-leave skipped (reason downed)"));
    cr_assert(log_has("reason=downed"));
}

/* The leave waits on the leader; meanwhile the node is downed. */
static void on_downed(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    ukko_node_stop_for(node, UKKO_STOP_DOWNED, "downed while leaving");
}

static ev_timer downed_timer;
static void leave_then_downed(ukko_stop_task_t *task, void *ud)
{
    stuck_task(task, ud);
    ev_timer_init(&downed_timer, on_downed, 0.05, 0.);
    ev_timer_start(loop, &downed_timer);
}

Test(shutdown, a_node_downed_while_leaving_cuts_the_leave_short)
{
    make_node();
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_LEAVE, "leave", leave_then_downed,
                            "leave/waiting");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_EXITING, "exiting", sync_task,
                            "exiting/exiting");
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_EXITING_DONE, "cluster-stop", sync_task,
                            "exiting-done/cluster-stop");
    ukko_node_stop(node, "received SIGTERM");
    cr_assert_eq(run(), 1);
    cr_assert_eq(ukko_node_stop_reason(node), UKKO_STOP_DOWNED);
    cr_assert_eq(ntrail, 2);
    cr_assert_str_eq(trail[1], "exiting-done/cluster-stop", "cluster-exiting was skipped");
    cr_assert(log_has("downed while stopping"));
}

/* Reads the time left to the task, then is done. */
static int64_t left_ms;
static void remaining_task(ukko_stop_task_t *task, void *ud)
{
    (void)ud;
    left_ms = ukko_stop_task_remaining_ms(task);
    cr_assert_eq(ukko_stop_task_node(task), node);
    ukko_stop_task_done(task);
}

Test(shutdown, a_task_gets_the_time_left_in_its_phase)
{
    make_node();
    ukko_node_set_phase_timeout(node, UKKO_PHASE_CLUSTER_EXITING, 2000);
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_EXITING, "exiting", remaining_task, NULL);
    ukko_node_stop(node, "test");
    cr_assert_eq(run(), 0);
    cr_assert(left_ms > 0 && left_ms <= 2000,
              "within the phase's 2 s rather than the stop's 10 s (got %lld ms)",
              (long long)left_ms);
}

/* Tries to add a task to the phase under way. */
static int late_rc;
static void adds_late(ukko_stop_task_t *task, void *ud)
{
    (void)ud;
    late_rc = ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_LEAVE, "late", sync_task, "late");
    ukko_stop_task_done(task);
}

Test(shutdown, a_phase_passed_takes_no_more_tasks)
{
    make_node();
    ukko_node_add_stop_task(node, UKKO_PHASE_CLUSTER_LEAVE, "adder", adds_late, NULL);
    cr_assert_eq(ukko_node_add_stop_task(node, UKKO_PHASE_COUNT, "bad", sync_task, "bad"),
                 UKKO_EINVAL);
    ukko_node_stop(node, "test");
    cr_assert_eq(run(), 0);
    cr_assert_eq(late_rc, UKKO_EINVAL, "a task for a phase already under way is refused");
    cr_assert_eq(ntrail, 0, "and never runs");
}
