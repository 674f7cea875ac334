/* Tests cluster/events.c, the membership events that sharding subscribes
 * to, on the real membership core in the simulated world: a subscriber
 * sees a member join, go Up, leave and be removed, in that order; the
 * snapshot that opens a subscription; the convergence signal; reachability;
 * unsubscribing from inside a callback. The simulator's observer feeds the
 * events of node 0 and each step flushes them, as the real node does
 * before its loop sleeps. Simulated time: no test sleeps. */
#include "simnet.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static sim_world_t *w;
static cluster__events_t *ev;
static size_t watched; /* the node whose view the events are of */

typedef struct seen {
    ukko_cluster_event_kind_t kind;
    char address[64];
    int status, old_status;
    bool snapshot, self, reachable, converged;
    size_t nroles;
} seen_t;

typedef struct trail {
    seen_t e[4096];
    size_t n;
    bool unsubscribe_on_first; /* the callback unsubscribes itself */
    ukko_cluster_sub_t *sub;
} trail_t;

static trail_t a, b;

static void on_event(const ukko_cluster_event_t *e, void *ud)
{
    trail_t *l = ud;
    cr_assert(l->n < 4096);
    seen_t *s = &l->e[l->n++];
    memset(s, 0, sizeof(*s));
    s->kind = e->kind;
    s->snapshot = e->snapshot;
    s->converged = e->converged;
    if (e->member) {
        snprintf(s->address, sizeof(s->address), "%s", e->member->address);
        s->status = e->member->status;
        s->old_status = e->member->old_status;
        s->self = e->member->self;
        s->reachable = e->member->reachable;
        s->nroles = e->member->nroles;
        cr_assert(strlen(e->member->uid) == 32, "the uid is 32 hex digits");
        cr_assert(!strncmp(e->member->node, "ukko://test@", 12), "node name: %s",
                  e->member->node);
    } else {
        cr_assert(e->kind == UKKO_CLUSTER_VIEW_CONVERGED || e->kind == UKKO_CLUSTER_SNAPSHOT_DONE,
                  "only the view's own events come without a member");
    }
    if (l->unsubscribe_on_first)
        cluster__events_unsubscribe(ev, l->sub);
}

static void observe(void *ud, size_t node, uint32_t ident, int old_status, int old_live,
                    int status, int live)
{
    (void)ud;
    if (node == watched && ev)
        cluster__events_changed(ev, ident, old_status, old_live, status, live);
}

static void setup(void)
{
    ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_JSON);
    sim_opts_t o;
    sim_opts_default(&o);
    o.seed = 7;
    cluster__params_t p;
    cluster__params_default(&p);
    w = sim_new(&o, &p);
    cr_assert(w);
    sim_observe(w, observe, NULL);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    watched = 0;
    ev = NULL;
}

static void teardown(void)
{
    cluster__events_free(ev);
    sim_free(w);
}

TestSuite(events, .init = setup, .fini = teardown, .timeout = 60);

static void step(int64_t ms)
{
    sim_run_until(w, sim_now(w) + ms);
    if (ev && cluster__events_pending(ev))
        cluster__events_flush(ev);
}

static int status_at(size_t at, size_t about)
{
    cluster__mship_t *m = sim_mship(w, at);
    for (size_t i = 0; i < cluster__mship_count(m); i++)
        if (cluster__mship_at(m, i)->ident == sim_ident(w, about))
            return cluster__mship_at(m, i)->status;
    return UKKO_MEMBER_REMOVED;
}

static void addr_of(size_t i, char *out, size_t outlen)
{
    cluster__addr_format(sim_addr(w, i), out, outlen);
}

/* The index in l of the first event of kind about node i after `from`, or -1. */
static long find(const trail_t *l, ukko_cluster_event_kind_t kind, size_t node, size_t from)
{
    char want[64];
    addr_of(node, want, sizeof(want));
    for (size_t k = from; k < l->n; k++)
        if (l->e[k].kind == kind && !strcmp(l->e[k].address, want))
            return (long)k;
    return -1;
}

static long find_kind(const trail_t *l, ukko_cluster_event_kind_t kind, size_t from)
{
    for (size_t k = from; k < l->n; k++)
        if (l->e[k].kind == kind)
            return (long)k;
    return -1;
}

/* Steps simulated time until the log has an event of kind about node (or,
 * node SIZE_MAX, of kind at all), or within_ms passes. */
static bool wait_event(const trail_t *l, ukko_cluster_event_kind_t kind, size_t node,
                       int64_t within_ms)
{
    int64_t end = sim_now(w) + within_ms;
    for (;;) {
        if ((node == SIZE_MAX ? find_kind(l, kind, 0) : find(l, kind, node, 0)) >= 0)
            return true;
        if (sim_now(w) >= end)
            return false;
        step(50);
    }
}

static void form(size_t n)
{
    size_t seeds[2] = {0, 1};
    for (size_t i = 0; i < n; i++)
        sim_add_node(w, seeds, 2);
    for (size_t i = 0; i < n; i++)
        sim_start_node(w, i);
    int64_t end = sim_now(w) + 20000;
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n && all; i++)
            for (size_t j = 0; j < n && all; j++)
                all = status_at(i, j) == UKKO_MEMBER_UP;
        if (all)
            break;
        cr_assert(sim_now(w) < end, "%zu nodes form one cluster", n);
        step(50);
    }
    ev = cluster__events_new(sim_mship(w, watched), "test", 4096);
    cr_assert(ev);
}

static void subscribe(trail_t *l)
{
    cr_assert_eq(cluster__events_subscribe(ev, on_event, l, &l->sub), 0);
}

Test(events, a_subscriber_sees_a_member_go_up_leave_and_be_removed)
{
    form(3);
    subscribe(&a);
    size_t snap = a.n;

    /* A fourth node joins. */
    size_t seed = 0;
    size_t n3 = sim_add_node(w, &seed, 1);
    sim_start_node(w, n3);
    cr_assert(wait_event(&a, UKKO_CLUSTER_MEMBER_UP, n3, 20000), "node 3 goes Up in node 0's view");
    long up = find(&a, UKKO_CLUSTER_MEMBER_UP, n3, snap);
    long joined = find(&a, UKKO_CLUSTER_MEMBER_JOINED, n3, snap);
    cr_assert(joined < 0 || joined < up, "Joining comes before Up");
    cr_assert_not(a.e[up].snapshot);
    cr_assert(a.e[up].old_status == -1 || a.e[up].old_status < UKKO_MEMBER_UP,
              "the previous status is given (%d)", a.e[up].old_status);
    cr_assert_not(a.e[up].converged, "a change is not yet seen by every member");
    /* The leader made it Up on a converged view; every member's reporting
     * it Up converges the view again. */
    long conv = -1;
    for (int64_t end = sim_now(w) + 20000; sim_now(w) < end && conv < 0; step(50))
        conv = find_kind(&a, UKKO_CLUSTER_VIEW_CONVERGED, (size_t)up);
    cr_assert(conv > up, "the view converges once every member has seen node 3 Up");
    cr_assert(a.e[conv].converged);

    /* It leaves: Leaving, the leader makes it Exiting, it says farewell and
     * its process ends. */
    cluster__mship_leaving(sim_mship(w, n3));
    int64_t end = sim_now(w) + 20000;
    while (cluster__mship_self_status(sim_mship(w, n3)) < UKKO_MEMBER_EXITING) {
        cr_assert(sim_now(w) < end, "the leader moves the leaving node to Exiting");
        step(50);
    }
    cluster__mship_farewell(sim_mship(w, n3));
    step(200);
    sim_crash(w, n3, true);
    cr_assert(wait_event(&a, UKKO_CLUSTER_MEMBER_REMOVED, n3, 30000),
              "node 3 is removed from node 0's view");
    long leaving = find(&a, UKKO_CLUSTER_MEMBER_LEAVING, n3, (size_t)up);
    long exiting = find(&a, UKKO_CLUSTER_MEMBER_EXITING, n3, (size_t)up);
    long removed = find(&a, UKKO_CLUSTER_MEMBER_REMOVED, n3, (size_t)up);
    cr_assert(leaving >= 0 || exiting >= 0, "node 0 saw it leave (Leaving or Exiting)");
    cr_assert(leaving < 0 || (leaving > up && (exiting < 0 || leaving < exiting)),
              "Leaving comes after Up and before Exiting");
    cr_assert(exiting < 0 || exiting < removed, "Exiting comes before Removed");
    cr_assert(find(&a, UKKO_CLUSTER_MEMBER_DOWN, n3, 0) < 0,
              "a member that left in order is never Down");
    /* Each status event of node 3 moves forward. */
    char want[64];
    addr_of(n3, want, sizeof(want));
    int last = -1;
    for (size_t k = snap; k < a.n; k++) {
        if (strcmp(a.e[k].address, want) || a.e[k].kind > UKKO_CLUSTER_MEMBER_REMOVED)
            continue;
        cr_assert(a.e[k].status > last, "statuses only move forward (%d after %d)",
                  a.e[k].status, last);
        last = a.e[k].status;
    }
}

Test(events, the_subscription_opens_with_a_snapshot)
{
    form(3);
    subscribe(&a);
    cr_assert_eq(a.n, 4, "one event per member, then the end of the snapshot (got %zu)", a.n);
    size_t selves = 0;
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(a.e[i].kind, UKKO_CLUSTER_MEMBER_UP);
        cr_assert(a.e[i].snapshot && a.e[i].reachable);
        cr_assert_eq(a.e[i].old_status, -1);
        selves += a.e[i].self;
    }
    cr_assert_eq(selves, 1, "this node itself is among them, marked self");
    cr_assert_eq(a.e[3].kind, UKKO_CLUSTER_SNAPSHOT_DONE);
    step(3000);
    for (size_t i = 4; i < a.n; i++)
        cr_assert_eq(a.e[i].kind, UKKO_CLUSTER_VIEW_CONVERGED,
                     "nothing but convergence without a change (got %s)",
                     ukko_cluster_event_name(a.e[i].kind));
    cr_assert(a.n <= 5, "convergence is signalled once");
}

Test(events, a_later_subscriber_does_not_get_what_its_snapshot_holds)
{
    form(3);
    subscribe(&a);
    size_t seed = 0;
    size_t n3 = sim_add_node(w, &seed, 1);
    sim_start_node(w, n3);
    /* Changes queue up (no flush) until node 0 holds node 3 Up. */
    int64_t end = sim_now(w) + 20000;
    while (status_at(0, n3) != UKKO_MEMBER_UP) {
        cr_assert(sim_now(w) < end);
        sim_run_until(w, sim_now(w) + 50);
    }
    subscribe(&b);
    cr_assert(find(&b, UKKO_CLUSTER_MEMBER_UP, n3, 0) >= 0 && b.e[find(&b, UKKO_CLUSTER_MEMBER_UP, n3, 0)].snapshot,
              "the new subscriber's snapshot holds node 3 Up");
    size_t before = b.n;
    cluster__events_flush(ev);
    cr_assert(find(&a, UKKO_CLUSTER_MEMBER_UP, n3, 4) >= 0, "the first one hears of node 3");
    cr_assert(find(&b, UKKO_CLUSTER_MEMBER_UP, n3, before) < 0 &&
                  find(&b, UKKO_CLUSTER_MEMBER_JOINED, n3, before) < 0,
              "the second one is not told twice");
}

Test(events, a_cut_off_member_is_unreachable_then_reachable)
{
    form(3);
    subscribe(&a);
    sim_set_group(w, 2, 1);
    sim_block(w, 0, 1, true);
    sim_block(w, 1, 0, true);
    cr_assert(wait_event(&a, UKKO_CLUSTER_MEMBER_UNREACHABLE, 2, 10000),
              "node 0 finds node 2 unreachable");
    long k = find(&a, UKKO_CLUSTER_MEMBER_UNREACHABLE, 2, 0);
    cr_assert_not(a.e[k].reachable);
    cr_assert_eq(a.e[k].status, UKKO_MEMBER_UP, "it stays Up while only unreachable");
    sim_block(w, 0, 1, false);
    sim_block(w, 1, 0, false);
    cr_assert(wait_event(&a, UKKO_CLUSTER_MEMBER_REACHABLE, 2, 10000),
              "node 2 refutes the suspicion once heard again");
    cr_assert(find(&a, UKKO_CLUSTER_MEMBER_DOWN, 2, 0) < 0, "and was never Down");
}

Test(events, a_subscriber_may_unsubscribe_from_its_callback)
{
    form(3);
    a.unsubscribe_on_first = true;
    subscribe(&a);
    cr_assert_eq(a.n, 1, "nothing after the unsubscribe, even inside the snapshot");
    cr_assert_null(a.sub, "the handle is gone with it");
    subscribe(&b);
    size_t seed = 0;
    size_t n3 = sim_add_node(w, &seed, 1);
    sim_start_node(w, n3);
    cr_assert(wait_event(&b, UKKO_CLUSTER_MEMBER_UP, n3, 20000));
    cr_assert_eq(a.n, 1);
    cluster__events_unsubscribe(ev, b.sub);
    size_t nb = b.n;
    sim_crash(w, n3, true);
    step(5000);
    cr_assert_eq(b.n, nb, "no event after unsubscribing");
}
