/* leave.c: the orderly leave of this node, as Pekko's, in the node's stop
 * phases: in cluster-leave (on SIGTERM, or an operator's Leave) the node
 * turns Leaving and tells every member; the leader moves it to Exiting once
 * all have seen it. In cluster-exiting the node gossips that for two
 * rounds, then says farewell (Exiting, then its removal, first hand to every
 * member) so that the others list it Removed, never Down. In
 * cluster-exiting-done it stops its sockets and timers. If the leader does
 * not act within half of the stop's remaining time (and within the phase's),
 * the node turns Exiting by itself. A node stopped as downed skips the first
 * two. Loop thread only. Invariant: /ready is 500 from the first moment (the
 * node is stopping). */
#include "runtime.h"

#include <stdio.h>

static void on_leave_flushed(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    cluster__mship_farewell(c->m);
    ukko_log(UKKO_LOG_INFO, "cluster", "left the cluster (Exiting, then Removed)");
    ukko_cluster_stop(c);
    ukko_stop_task_t *t = c->exit_task;
    c->exit_task = NULL;
    ukko_stop_task_done(t);
}

/* Exiting: the news goes out for two gossip rounds, then the farewell. */
static void begin_exit(ukko_cluster_t *c)
{
    if (c->exiting || c->stopped)
        return;
    c->exiting = true;
    ev_timer_stop(c->loop, &c->leave_deadline);
    ev_timer_init(&c->leave_flush, on_leave_flushed,
                  (double)(c->params.gossip_interval_ms * 2) / 1000.0, 0.);
    c->leave_flush.data = c;
    ev_timer_start(c->loop, &c->leave_flush);
    cluster__transport_rearm(c);
}

/* This node is Exiting (or will not get there): cluster-leave is over. */
static void leave_done(ukko_cluster_t *c)
{
    ev_timer_stop(c->loop, &c->leave_deadline);
    ukko_stop_task_t *t = c->leave_task;
    c->leave_task = NULL;
    ukko_stop_task_done(t);
}

static void on_leave_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    ukko_log(UKKO_LOG_WARN, "cluster",
             "the leader did not move this node from Leaving to Exiting in time (is it "
             "unreachable?): leaving without it");
    cluster__mship_leave(c->m); /* Exiting, told to a few members */
    leave_done(c);
}

void cluster__leave_self_changed(ukko_cluster_t *c, int old_status, int status)
{
    (void)old_status;
    if (status == UKKO_MEMBER_LEAVING || status == UKKO_MEMBER_EXITING) {
        /* Marked Leaving by someone else (an operator's Leave through any
         * member): this node leaves as on SIGTERM, and its process ends. */
        if (!c->leaving && !ukko_node_stopping(c->node))
            ukko_node_stop(c->node, "this node was asked to leave the cluster");
        if (c->leaving && status == UKKO_MEMBER_EXITING && c->leave_task)
            leave_done(c);
    }
}

/* Whether there is anything to leave: a member that is still in. */
static bool in_cluster(const ukko_cluster_t *c)
{
    return c->started && !c->stopped && cluster__mship_in_cluster(c->m) &&
           cluster__mship_self_status(c->m) < UKKO_MEMBER_DOWN;
}

/* cluster-leave: Leaving, until the leader makes this node Exiting. */
static void task_leave(ukko_stop_task_t *task, void *ud)
{
    ukko_cluster_t *c = ud;
    if (!in_cluster(c)) {
        ukko_stop_task_done(task);
        return;
    }
    c->leaving = true;
    if (cluster__mship_self_status(c->m) >= UKKO_MEMBER_EXITING) {
        ukko_stop_task_done(task);
        return;
    }
    c->leave_task = task;
    cluster__mship_leaving(c->m);
    cluster__transport_rearm(c);
    /* Half of the stop's time left, and within the phase: the rest is for
     * the farewell and the phases after. */
    int64_t wait = ukko_node_stop_remaining_ms(c->node) / 2;
    int64_t phase = ukko_stop_task_remaining_ms(task) * 3 / 4;
    if (phase < wait)
        wait = phase;
    if (wait < 200)
        wait = 200;
    ev_timer_init(&c->leave_deadline, on_leave_deadline, (double)wait / 1000.0, 0.);
    c->leave_deadline.data = c;
    ev_timer_start(c->loop, &c->leave_deadline);
    char t[32];
    ukko_format_duration(wait, t, sizeof(t));
    ukko_logf(UKKO_LOG_INFO, "cluster", UKKO_FIELDS(UKKO_FI("wait_ms", wait)),
              "leaving the cluster: Leaving; the leader moves this node to Exiting (waiting at "
              "most %s)",
              t);
}

/* cluster-exiting: Exiting gossiped for two rounds, then the farewell. */
static void task_exiting(ukko_stop_task_t *task, void *ud)
{
    ukko_cluster_t *c = ud;
    if (!c->leaving || !in_cluster(c)) {
        ukko_stop_task_done(task);
        return;
    }
    c->exit_task = task;
    begin_exit(c);
}

/* cluster-exiting-done: sockets and timers stopped. A node that skipped the
 * leave (downed) says nothing more: the others hold it Down already. */
static void task_stop(ukko_stop_task_t *task, void *ud)
{
    ukko_cluster_t *c = ud;
    ukko_cluster_stop(c);
    ukko_stop_task_done(task);
}

int ukko_cluster_add_stop_tasks(ukko_cluster_t *c)
{
    if (c->stop_tasks_added)
        return 0;
    int rc = ukko_node_add_stop_task(c->node, UKKO_PHASE_CLUSTER_LEAVE, "cluster-leave",
                                     task_leave, c);
    if (rc == 0)
        rc = ukko_node_add_stop_task(c->node, UKKO_PHASE_CLUSTER_EXITING, "cluster-exiting",
                                     task_exiting, c);
    if (rc == 0)
        rc = ukko_node_add_stop_task(c->node, UKKO_PHASE_CLUSTER_EXITING_DONE, "cluster-stop",
                                     task_stop, c);
    c->stop_tasks_added = rc == 0;
    return rc;
}
