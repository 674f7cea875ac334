/* leave.c: the orderly leave of this node, as Pekko's: on SIGTERM (or an
 * operator's Leave) the node turns Leaving and tells every member; the
 * leader moves it to Exiting once all have seen it; the node gossips that
 * for two rounds, then says farewell (Exiting, then its removal, first hand
 * to every member) so that the others list it Removed, never Down, and
 * stops. If the leader does not act within half of the node's remaining
 * stop time, the node turns Exiting by itself. Loop thread only.
 * Invariant: /ready is 500 from the first moment (the node is stopping). */
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
    ukko_node_stop_continue(c->node);
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

static void on_leave_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ukko_cluster_t *c = w->data;
    ukko_log(UKKO_LOG_WARN, "cluster",
             "the leader did not move this node from Leaving to Exiting in time (is it "
             "unreachable?): leaving without it");
    cluster__mship_leave(c->m); /* Exiting, told to a few members */
    begin_exit(c);
}

void cluster__leave_self_changed(ukko_cluster_t *c, int old_status, int status)
{
    (void)old_status;
    if (status == UKKO_MEMBER_LEAVING || status == UKKO_MEMBER_EXITING) {
        /* Marked Leaving by someone else (an operator's Leave through any
         * member): this node leaves as on SIGTERM, and its process ends. */
        if (!c->leaving && !ukko_node_stopping(c->node))
            ukko_node_stop(c->node, "this node was asked to leave the cluster");
        if (c->leaving && status == UKKO_MEMBER_EXITING)
            begin_exit(c);
    }
}

int ukko_cluster_stop_hook(ukko_node_t *node, void *ud)
{
    ukko_cluster_t *c = ud;
    if (!c->started || c->stopped || !cluster__mship_in_cluster(c->m) ||
        cluster__mship_self_status(c->m) >= UKKO_MEMBER_DOWN) {
        ukko_cluster_stop(c);
        return 0;
    }
    c->leaving = true;
    int s = cluster__mship_self_status(c->m);
    if (s >= UKKO_MEMBER_EXITING) {
        begin_exit(c);
        return 1;
    }
    cluster__mship_leaving(c->m);
    cluster__transport_rearm(c);
    int64_t wait = ukko_node_stop_remaining_ms(node) / 2;
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
    return 1;
}
