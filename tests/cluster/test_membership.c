/* Tests the membership core (cluster/membership.c, probe.c, gossip.c,
 * sync.c) as it runs in the simulated world: joining and convergence to Up,
 * incarnation refutation, failure detection, replacement of a restarted
 * process, and packets that must change nothing. Simulated time: no test
 * sleeps, and none asserts on how long anything took. */
#include "simnet.h"

#include <criterion/criterion.h>
#include <string.h>

static sim_world_t *w;

static void setup(void)
{
    ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_JSON);
    sim_opts_t o;
    sim_opts_default(&o);
    o.seed = 42;
    cluster__params_t p;
    cluster__params_default(&p);
    w = sim_new(&o, &p);
    cr_assert(w);
}

static void teardown(void)
{
    sim_free(w);
}

TestSuite(membership, .init = setup, .fini = teardown, .timeout = 30);

static const cluster__member_t *member(size_t at, size_t about)
{
    cluster__mship_t *m = sim_mship(w, at);
    for (size_t i = 0; i < cluster__mship_count(m); i++)
        if (cluster__mship_at(m, i)->ident == sim_ident(w, about))
            return cluster__mship_at(m, i);
    return NULL;
}

static int status_of(size_t at, size_t about)
{
    const cluster__member_t *mem = member(at, about);
    return mem ? mem->status : UKKO_MEMBER_REMOVED;
}

/* Runs simulated time until every live node sees every listed node with
 * the status, or the (simulated) deadline passes. */
static bool until_all(size_t n, size_t about, int status, int64_t within_ms)
{
    int64_t end = sim_now(w) + within_ms;
    while (sim_now(w) < end) {
        bool all = true;
        for (size_t i = 0; i < n && all; i++)
            if (i != about && !sim_crashed(w, i))
                all = status_of(i, about) == status;
        if (all)
            return true;
        sim_run_until(w, sim_now(w) + 50);
    }
    return false;
}

static void form(size_t n)
{
    size_t seeds[2] = {0, 1};
    for (size_t i = 0; i < n; i++)
        sim_add_node(w, seeds, 2);
    for (size_t i = 0; i < n; i++)
        sim_start_node(w, i);
    for (size_t about = 0; about < n; about++)
        cr_assert(until_all(n, about, UKKO_MEMBER_UP, 20000),
                  "node %zu is Up in every view (node 0 sees %s)", about,
                  ukko_member_status_name(status_of(0, about)));
}

Test(membership, five_nodes_form_one_cluster_all_up)
{
    form(5);
    uint64_t d = cluster__mship_digest(sim_mship(w, 0));
    for (size_t i = 0; i < 5; i++) {
        cluster__mship_t *m = sim_mship(w, i);
        cr_assert_eq(cluster__mship_count(m), 5, "node %zu holds 5 members", i);
        cr_assert_eq(cluster__mship_digest(m), d, "node %zu has the same view digest", i);
        cr_assert_eq(cluster__mship_leader(m), sim_ident(w, 0),
                     "the leader is the lowest address");
    }
}

Test(membership, a_single_seed_forms_alone)
{
    size_t self = 0;
    sim_add_node(w, &self, 1);
    sim_start_node(w, 0);
    cr_assert_eq(cluster__mship_self_status(sim_mship(w, 0)), UKKO_MEMBER_UP,
                 "a node listing only itself forms the cluster at once");
}

Test(membership, a_non_first_seed_waits_for_a_member)
{
    size_t first = 0, seeds[2] = {0, 1}; /* node 1 is listed, but not first */
    sim_add_node(w, &first, 1);
    sim_add_node(w, seeds, 2);
    sim_start_node(w, 1);
    sim_run_until(w, sim_now(w) + 5000);
    cr_assert_not(cluster__mship_in_cluster(sim_mship(w, 1)),
                  "a node that is not the first seed never forms a cluster");
    sim_start_node(w, 0);
    cr_assert(until_all(2, 1, UKKO_MEMBER_UP, 10000), "once the first seed forms, it joins");
}

Test(membership, suspicion_of_self_is_refuted_with_a_higher_incarnation)
{
    form(3);
    cluster__mship_t *m0 = sim_mship(w, 0);
    cr_assert_eq(cluster__mship_incarnation(m0), 0);
    /* node 1 gossips "suspect node 0 at incarnation 0" */
    uint8_t buf[512];
    ukko_wire_w_t wr;
    ukko_wire_w_init(&wr, buf, sizeof(buf));
    ukko_wire_hdr_t h = {.kind = UKKO_WIRE_GOSSIP, .from = *sim_addr(w, 1)};
    memcpy(h.uid, cluster__ids_at(sim_ids(w), sim_ident(w, 1))->uid, 16);
    ukko_wire_put_header(&wr, &h);
    ukko_wire_put_accuse(&wr, UKKO_MSG_SUSPECT, sim_addr(w, 0),
                         cluster__ids_at(sim_ids(w), sim_ident(w, 0))->uid, 0, sim_addr(w, 1));
    sim_inject(w, 0, buf, wr.len);
    cr_assert_eq(cluster__mship_incarnation(m0), 1, "only the node itself raises its incarnation");
    sim_run_until(w, sim_now(w) + 3000);
    for (size_t i = 1; i < 3; i++) {
        const cluster__member_t *mem = member(i, 0);
        cr_assert(mem && mem->inc == 1 && mem->live == CLUSTER__ALIVE,
                  "node %zu holds node 0 alive at incarnation 1", i);
    }
}

Test(membership, a_silent_node_goes_down_everywhere_and_is_removed)
{
    form(5);
    sim_crash(w, 3, false);
    cr_assert(until_all(5, 3, UKKO_MEMBER_DOWN, 60000), "every other node holds node 3 Down");
    cr_assert(until_all(5, 3, UKKO_MEMBER_REMOVED, 30000), "and later Removed");
    for (size_t i = 0; i < 5; i++)
        if (i != 3)
            cr_assert_eq(cluster__mship_self_status(sim_mship(w, i)), UKKO_MEMBER_UP,
                         "node %zu stays Up", i);
}

Test(membership, a_refused_connection_is_the_fast_signal)
{
    form(5);
    int64_t t0 = sim_now(w);
    sim_crash(w, 2, true);
    cr_assert(until_all(5, 2, UKKO_MEMBER_DOWN, 60000));
    /* Not a timing assertion: the refusal path must have been taken. */
    size_t refused = 0;
    for (size_t i = 0; i < 5; i++)
        if (i != 2)
            refused += cluster__mship_stats(sim_mship(w, i))->refused;
    cr_assert_gt(refused, 0, "a member found the dead process by its refused port");
    (void)t0;
}

Test(membership, a_pause_shorter_than_suspicion_kills_nobody)
{
    form(5);
    sim_pause(w, 4, sim_now(w) + 2000);
    sim_run_until(w, sim_now(w) + 30000);
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(cluster__mship_self_status(sim_mship(w, i)), UKKO_MEMBER_UP,
                     "node %zu is still Up", i);
        for (size_t j = 0; j < 5; j++)
            cr_assert_eq(status_of(i, j), UKKO_MEMBER_UP, "node %zu holds %zu Up", i, j);
    }
    cr_assert_gt(cluster__mship_stats(sim_mship(w, 4))->stalls, 0,
                 "the paused node noticed its own stall");
}

Test(membership, a_restarted_process_replaces_its_old_incarnation)
{
    form(4);
    uint32_t old = sim_ident(w, 3);
    sim_crash(w, 3, true);
    sim_restart(w, 3);
    cr_assert_neq(sim_ident(w, 3), old, "a new process has a new uid");
    cr_assert(until_all(4, 3, UKKO_MEMBER_UP, 20000), "the new incarnation is Up everywhere");
    for (size_t i = 0; i < 3; i++) {
        cluster__mship_t *m = sim_mship(w, i);
        cr_assert_eq(cluster__mship_count(m), 4, "node %zu holds 4 members, not 5", i);
        for (size_t k = 0; k < 4; k++)
            cr_assert_neq(cluster__mship_at(m, k)->ident, old, "the old uid is gone at %zu", i);
    }
}

Test(membership, garbage_and_replayed_packets_change_nothing)
{
    form(3);
    sim_run_until(w, sim_now(w) + 5000);
    cluster__mship_t *m0 = sim_mship(w, 0);
    uint64_t digest = cluster__mship_digest(m0);
    uint32_t inc = cluster__mship_incarnation(m0);
    uint64_t bad = cluster__mship_stats(m0)->drop_decode;
    /* garbage: every prefix of a random blob */
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n < sizeof(junk); n += 7)
        sim_inject(w, 0, junk, n);
    cr_assert_gt(cluster__mship_stats(m0)->drop_decode, bad, "garbage is counted");
    /* replays: node 1's last packet, ten times */
    size_t n;
    const uint8_t *last = sim_last_sent(w, 1, &n);
    cr_assert(last && n);
    uint8_t *copy = malloc(n);
    memcpy(copy, last, n);
    for (int i = 0; i < 10; i++)
        sim_inject(w, 0, copy, n);
    /* truncations of it */
    for (size_t cut = 0; cut < n; cut++)
        sim_inject(w, 0, copy, cut);
    free(copy);
    cr_assert_eq(cluster__mship_digest(m0), digest, "the view is the same");
    cr_assert_eq(cluster__mship_incarnation(m0), inc);
    for (size_t j = 0; j < 3; j++)
        cr_assert_eq(status_of(0, j), UKKO_MEMBER_UP);
}

Test(membership, down_is_final_and_status_never_goes_back)
{
    form(3);
    sim_crash(w, 2, false);
    cr_assert(until_all(3, 2, UKKO_MEMBER_DOWN, 60000));
    /* An old alive of node 2 with a higher incarnation does not revive it. */
    uint8_t buf[512];
    ukko_wire_w_t wr;
    ukko_wire_w_init(&wr, buf, sizeof(buf));
    ukko_wire_hdr_t h = {.kind = UKKO_WIRE_GOSSIP, .from = *sim_addr(w, 1)};
    memcpy(h.uid, cluster__ids_at(sim_ids(w), sim_ident(w, 1))->uid, 16);
    ukko_wire_put_header(&wr, &h);
    const cluster__ident_t *id2 = cluster__ids_at(sim_ids(w), sim_ident(w, 2));
    ukko_wire_put_node(&wr, UKKO_MSG_ALIVE, sim_addr(w, 2), id2->uid, 99, UKKO_MEMBER_UP,
                       id2->started_ms, NULL, 0);
    /* and an alive of node 1 that says Joining does not demote it */
    const cluster__ident_t *id1 = cluster__ids_at(sim_ids(w), sim_ident(w, 1));
    ukko_wire_put_node(&wr, UKKO_MSG_ALIVE, sim_addr(w, 1), id1->uid, 0, UKKO_MEMBER_JOINING,
                       id1->started_ms, NULL, 0);
    sim_inject(w, 0, buf, wr.len);
    cr_assert_eq(status_of(0, 2), UKKO_MEMBER_DOWN, "Down is final for a uid");
    cr_assert_eq(status_of(0, 1), UKKO_MEMBER_UP, "a status only moves forward");
}

static int seen_weakly_up;
static void watch_weakly(void *ud, size_t node, uint32_t ident, int os, int ol, int s, int l)
{
    (void)ud, (void)node, (void)ident, (void)os, (void)ol, (void)l;
    if (s == UKKO_MEMBER_WEAKLY_UP)
        seen_weakly_up++;
}

Test(membership, a_joiner_waits_for_convergence_then_is_weakly_up)
{
    /* weakly-up-after shorter than the time to find node 3 Down */
    sim_free(w);
    sim_opts_t o;
    sim_opts_default(&o);
    cluster__params_t p;
    cluster__params_default(&p);
    p.weakly_up_after_ms = 1000;
    w = sim_new(&o, &p);
    form(4);
    sim_observe(w, watch_weakly, NULL);
    /* node 3 silent: no convergence until it is Down; the joiner is held
     * Joining, then WeaklyUp (Pekko), and Up once node 3 is gone */
    sim_crash(w, 3, false);
    size_t seeds[1] = {0};
    size_t j = sim_add_node(w, seeds, 1);
    sim_start_node(w, j);
    sim_run_until(w, sim_now(w) + 500);
    cr_assert_eq(status_of(0, j), UKKO_MEMBER_JOINING, "no Up without convergence");
    cr_assert(until_all(4, j, UKKO_MEMBER_UP, 90000), "Up once the view converged");
    cr_assert_gt(seen_weakly_up, 0, "WeaklyUp meanwhile");
}

Test(membership, digest_first_sync_sends_little_when_views_agree)
{
    form(3);
    cluster__mship_t *m0 = sim_mship(w, 0), *m1 = sim_mship(w, 1);
    ukko_buf_t req, rep, push;
    ukko_buf_init(&req, 1 << 20);
    ukko_buf_init(&rep, 1 << 20);
    ukko_buf_init(&push, 1 << 20);
    uint8_t hdr[64];
    ukko_wire_w_t wr;
    ukko_wire_w_init(&wr, hdr, sizeof(hdr));
    ukko_wire_hdr_t h = {.kind = UKKO_WIRE_SYNC_REQ, .flags = UKKO_WIRE_H_MEMBER,
                         .from = *sim_addr(w, 1), .digest = cluster__mship_digest(m1)};
    memcpy(h.uid, cluster__ids_at(sim_ids(w), sim_ident(w, 1))->uid, 16);
    ukko_wire_put_header(&wr, &h);
    cluster__mship_sync_serve(m0, hdr, wr.len, &rep);
    cr_assert_eq(rep.len, sizeof(ukko_wire_header_t), "same digest: a bare header answers");
    cr_assert_eq(rep.data[0], UKKO_WIRE_SYNC_SAME);
    h.digest ^= 1;
    ukko_wire_w_init(&wr, hdr, sizeof(hdr));
    ukko_wire_put_header(&wr, &h);
    cluster__mship_sync_serve(m0, hdr, wr.len, &rep);
    cr_assert_eq(rep.data[0], UKKO_WIRE_SYNC_STATE, "a different digest gets the full state");
    cr_assert_gt(rep.len, sizeof(ukko_wire_header_t) + 3 * 40);
    ukko_buf_destroy(&req);
    ukko_buf_destroy(&rep);
    ukko_buf_destroy(&push);
}
