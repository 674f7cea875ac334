/* Tests the split-brain resolver (cluster/sbr.c): each strategy's decision
 * function on views of both sides of a cut (never may both sides stay), its
 * settings, and the resolver running in the membership core of the
 * simulated world: a 2|3 cut, a 3|3 tie, a one-way cut, a flapping link, a
 * slow network, a crash. Simulated time: nothing sleeps, and no assertion is
 * about how long anything took. */
#include "simnet.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------ the decision alone */

#define MAXV 16
static cluster__addr_t addrs[MAXV];

static void init_addrs(void)
{
    for (int i = 0; i < MAXV; i++) {
        char s[32];
        snprintf(s, sizeof(s), "10.0.0.%d:7355", i + 1);
        cr_assert_eq(cluster__addr_parse(s, 7355, &addrs[i]), 0);
    }
}

TestSuite(sbr_decide, .init = init_addrs, .timeout = 30);

/* A view of n members, all Up, none unreachable; member i started at
 * 1000 + i (member 0 is the oldest and has the lowest address). */
static void view(cluster__sbr_member_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (cluster__sbr_member_t){.addr = &addrs[i], .started_ms = 1000 + (int64_t)i,
                                       .status = UKKO_MEMBER_UP, .has_role = true};
}

/* The view from the other side of a cut: who is unreachable flips. */
static void flip(const cluster__sbr_member_t *v, cluster__sbr_member_t *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        o[i] = v[i];
        o[i].unreachable = !v[i].unreachable;
    }
}

static cluster__sbr_params_t params(int strategy)
{
    cluster__sbr_params_t p;
    cluster__sbr_params_default(&p);
    p.strategy = strategy;
    return p;
}

static cluster__sbr_decision_t decide(const cluster__sbr_params_t *p,
                                      const cluster__sbr_member_t *v, size_t n)
{
    char why[256];
    cluster__sbr_decision_t d = cluster__sbr_decide(p, v, n, why, sizeof(why));
    cr_assert(why[0], "every decision says why");
    return d;
}

Test(sbr_decide, keep_majority_keeps_the_larger_side)
{
    cluster__params_t cp;
    cluster__params_default(&cp);
    cr_assert_eq(cp.sbr.strategy, CLUSTER__SBR_KEEP_MAJORITY, "keep-majority is the default");
    cluster__sbr_params_t p = params(CLUSTER__SBR_KEEP_MAJORITY);
    cluster__sbr_member_t v[5], o[5];
    view(v, 5);
    v[3].unreachable = v[4].unreachable = true; /* this side: 0 1 2 */
    flip(v, o, 5);
    cr_assert_eq(decide(&p, v, 5), CLUSTER__SBR_DOWN_UNREACHABLE, "3 of 5 stay");
    cr_assert_eq(decide(&p, o, 5), CLUSTER__SBR_DOWN_REACHABLE, "2 of 5 down themselves");
}

Test(sbr_decide, keep_majority_breaks_a_tie_by_the_lowest_address)
{
    cluster__sbr_params_t p = params(CLUSTER__SBR_KEEP_MAJORITY);
    cluster__sbr_member_t v[6], o[6];
    view(v, 6);
    v[0].unreachable = v[2].unreachable = v[4].unreachable = true; /* this side: 1 3 5 */
    flip(v, o, 6);
    cr_assert_eq(decide(&p, v, 6), CLUSTER__SBR_DOWN_REACHABLE,
                 "3|3: the side without 10.0.0.1 goes");
    cr_assert_eq(decide(&p, o, 6), CLUSTER__SBR_DOWN_UNREACHABLE,
                 "3|3: the side with 10.0.0.1 stays");
}

Test(sbr_decide, keep_majority_counts_only_up_and_leaving_members_of_the_role)
{
    cluster__sbr_params_t p = params(CLUSTER__SBR_KEEP_MAJORITY);
    cluster__sbr_member_t v[7];
    view(v, 7);
    /* this side: 0 1 and two Joining (3 4); other side: 2 5 6 */
    v[3].status = UKKO_MEMBER_JOINING;
    v[4].status = UKKO_MEMBER_WEAKLY_UP;
    v[2].unreachable = v[5].unreachable = v[6].unreachable = true;
    cr_assert_eq(decide(&p, v, 7), CLUSTER__SBR_DOWN_REACHABLE,
                 "joining members do not make 2 Up a majority over 3");
    /* With a role, only its members count: this side has 2 of the 3. */
    view(v, 7);
    v[2].unreachable = v[5].unreachable = v[6].unreachable = true;
    for (int i = 0; i < 7; i++)
        v[i].has_role = i == 0 || i == 1 || i == 5;
    snprintf(p.role, sizeof(p.role), "backend");
    cr_assert_eq(decide(&p, v, 7), CLUSTER__SBR_DOWN_UNREACHABLE,
                 "2 of 3 with the role stay, though 5 of 7 are across");
    for (int i = 0; i < 7; i++)
        v[i].has_role = false;
    cr_assert_eq(decide(&p, v, 7), CLUSTER__SBR_DOWN_ALL, "no member with the role: all go");
}

Test(sbr_decide, keep_majority_downs_all_when_joiners_may_be_up_across)
{
    cluster__sbr_params_t p = params(CLUSTER__SBR_KEEP_MAJORITY);
    cluster__sbr_member_t v[7];
    view(v, 7);
    /* 3 Up here; 2 Up and 2 Joining across, which the leader there may
     * already have made Up: 3 against 4 then. */
    v[3].unreachable = v[4].unreachable = v[5].unreachable = v[6].unreachable = true;
    v[5].status = v[6].status = UKKO_MEMBER_JOINING;
    cr_assert_eq(decide(&p, v, 7), CLUSTER__SBR_DOWN_ALL);
    /* A Leaving member here may be Exiting across: 3 Up and 1 Leaving
     * here against 3 Up there, the lowest address there, is no majority. */
    view(v, 7);
    v[0].unreachable = v[1].unreachable = v[2].unreachable = true;
    v[6].status = UKKO_MEMBER_LEAVING;
    cr_assert_eq(decide(&p, v, 7), CLUSTER__SBR_DOWN_ALL, "4 with a Leaving one against 3");
    v[6].status = UKKO_MEMBER_EXITING;
    cr_assert_eq(decide(&p, v, 7), CLUSTER__SBR_DOWN_REACHABLE,
                 "Exiting does not count at all: 3 against 3 without the lowest address");
}

Test(sbr_decide, static_quorum)
{
    cluster__sbr_params_t p = params(CLUSTER__SBR_STATIC_QUORUM);
    p.quorum_size = 3;
    cluster__sbr_member_t v[6], o[6];
    view(v, 5);
    v[0].unreachable = v[1].unreachable = true;
    flip(v, o, 5);
    cr_assert_eq(decide(&p, v, 5), CLUSTER__SBR_DOWN_UNREACHABLE, "3 reach the quorum of 3");
    cr_assert_eq(decide(&p, o, 5), CLUSTER__SBR_DOWN_REACHABLE, "2 do not");
    view(v, 5);
    v[0].unreachable = v[1].unreachable = v[2].unreachable = true;
    cr_assert_eq(decide(&p, v, 5), CLUSTER__SBR_DOWN_REACHABLE,
                 "2 left of 5 (3 crashed): below the quorum");
    view(v, 6);
    v[0].unreachable = v[1].unreachable = v[2].unreachable = true;
    cr_assert_eq(decide(&p, v, 6), CLUSTER__SBR_DOWN_ALL,
                 "6 members with quorum-size 3: both halves could stay, so none does");
}

Test(sbr_decide, keep_oldest)
{
    cluster__sbr_params_t p = params(CLUSTER__SBR_KEEP_OLDEST);
    cluster__sbr_member_t v[5], o[5];
    view(v, 5);
    /* the oldest is member 2 (started first), with the minority */
    v[2].started_ms = 1;
    v[0].unreachable = v[1].unreachable = v[3].unreachable = true; /* this side: 2 4 */
    flip(v, o, 5);
    cr_assert_eq(decide(&p, v, 5), CLUSTER__SBR_DOWN_UNREACHABLE, "the oldest's side stays");
    cr_assert_eq(decide(&p, o, 5), CLUSTER__SBR_DOWN_REACHABLE, "even when it is larger");
    /* down-if-alone: the oldest cut off from all others goes instead */
    view(v, 5);
    v[0].unreachable = true; /* member 0 is the oldest; this side: 1 2 3 4 */
    flip(v, o, 5);
    cr_assert_eq(decide(&p, v, 5), CLUSTER__SBR_DOWN_UNREACHABLE, "the 4 stay");
    cr_assert_eq(decide(&p, o, 5), CLUSTER__SBR_DOWN_REACHABLE, "the oldest alone goes");
    p.down_if_alone = false;
    cr_assert_eq(decide(&p, v, 5), CLUSTER__SBR_DOWN_REACHABLE, "without down-if-alone the 4 go");
    cr_assert_eq(decide(&p, o, 5), CLUSTER__SBR_DOWN_UNREACHABLE, "and the oldest stays");
    /* two members: the oldest stays even alone */
    p.down_if_alone = true;
    view(v, 2);
    v[1].unreachable = true;
    flip(v, o, 2);
    cr_assert_eq(decide(&p, v, 2), CLUSTER__SBR_DOWN_UNREACHABLE);
    cr_assert_eq(decide(&p, o, 2), CLUSTER__SBR_DOWN_REACHABLE);
}

Test(sbr_decide, down_all)
{
    cluster__sbr_params_t p = params(CLUSTER__SBR_DOWN_ALL_NODES);
    cluster__sbr_member_t v[5];
    view(v, 5);
    v[4].unreachable = true;
    cr_assert_eq(decide(&p, v, 5), CLUSTER__SBR_DOWN_ALL);
}

/* Every split of n members (n = 1..9) into two sides, with random mixes of
 * statuses, seen from both sides: at most one side may stay. The sides
 * see the same statuses, or (the race Pekko guards against) the leader
 * made a change just before the cut that only its own side saw: a Joining
 * member Up, or a Leaving one Exiting. */
static size_t leader_of(const cluster__sbr_member_t *v, size_t n)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < n; i++)
        if ((v[i].status == UKKO_MEMBER_UP || v[i].status == UKKO_MEMBER_LEAVING) &&
            (best == SIZE_MAX || cluster__addr_cmp(v[i].addr, v[best].addr) < 0))
            best = i;
    return best;
}

Test(sbr_decide, never_both_sides_of_any_cut_stay, .timeout = 60)
{
    static const uint8_t st[] = {UKKO_MEMBER_UP, UKKO_MEMBER_UP, UKKO_MEMBER_JOINING,
                                 UKKO_MEMBER_LEAVING, UKKO_MEMBER_DOWN, UKKO_MEMBER_WEAKLY_UP};
    uint64_t rng = 88172645463325252ULL;
    size_t checked = 0;
    for (int strategy = 0; strategy <= CLUSTER__SBR_DOWN_ALL_NODES; strategy++) {
        for (size_t n = 1; n <= 9; n++) {
            for (uint32_t mask = 1; mask < (1u << n) - 1; mask++) {
                for (int round = 0; round < 16; round++) {
                    cluster__sbr_params_t p = params(strategy);
                    p.quorum_size = (int64_t)(n / 2 + 1);
                    p.down_if_alone = round & 1;
                    cluster__sbr_member_t a[MAXV], b[MAXV];
                    view(a, n);
                    for (size_t i = 0; i < n; i++) {
                        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                        a[i].status = round == 0 ? UKKO_MEMBER_UP : st[rng % 6];
                        a[i].started_ms = (int64_t)(rng >> 40) % 7;
                        a[i].unreachable = (mask >> i) & 1;
                    }
                    flip(a, b, n);
                    size_t l = leader_of(a, n);
                    if ((round & 6) && l != SIZE_MAX) {
                        /* the leader's side saw a change the other did not */
                        cluster__sbr_member_t *mine = a[l].unreachable ? b : a;
                        uint8_t from = round & 2 ? UKKO_MEMBER_JOINING : UKKO_MEMBER_LEAVING;
                        uint8_t to = round & 2 ? UKKO_MEMBER_UP : UKKO_MEMBER_EXITING;
                        for (size_t i = 0; i < n; i++)
                            if (mine[i].status == from) {
                                mine[i].status = to;
                                break;
                            }
                    }
                    cluster__sbr_decision_t da = decide(&p, a, n), db = decide(&p, b, n);
                    cr_assert(!(da == CLUSTER__SBR_DOWN_UNREACHABLE &&
                                db == CLUSTER__SBR_DOWN_UNREACHABLE),
                              "%s, %zu members, cut %#x, round %d: both sides stay",
                              cluster__sbr_strategy_name(strategy), n, mask, round);
                    checked++;
                }
            }
        }
    }
    cr_assert_gt(checked, 10000);
}

Test(sbr_decide, settings)
{
    ukko_cluster_sbr_config_t c = {.strategy = CLUSTER__SBR_STATIC_QUORUM,
                                   .stable_after_ms = 20000,
                                   .down_all_when_unstable = "on",
                                   .static_quorum_role = "db"};
    cluster__sbr_params_t p;
    char why[400] = "";
    cr_assert_lt(cluster__sbr_params_from_config(&p, &c, why, sizeof(why)), 0,
                 "static-quorum without a quorum-size is refused");
    cr_assert(strstr(why, "static-quorum.quorum-size"), "and the message names the key: %s",
              why);
    c.quorum_size = 3;
    cr_assert_eq(cluster__sbr_params_from_config(&p, &c, why, sizeof(why)), 0);
    cr_assert_eq(p.down_all_when_unstable_ms, 15000, "on: 3/4 of stable-after");
    cr_assert_str_eq(p.role, "db", "the active strategy's role");
    c.stable_after_ms = 2000;
    cluster__sbr_params_from_config(&p, &c, why, sizeof(why));
    cr_assert_eq(p.down_all_when_unstable_ms, 4000, "on: at least 4 s");
    c.down_all_when_unstable = "off";
    cluster__sbr_params_from_config(&p, &c, why, sizeof(why));
    cr_assert_eq(p.down_all_when_unstable_ms, 0);
    c.down_all_when_unstable = "90s";
    cluster__sbr_params_from_config(&p, &c, why, sizeof(why));
    cr_assert_eq(p.down_all_when_unstable_ms, 90000);
}

/* A member that leaves a side that goes (it exits after its own decision,
 * or a cut inside the side hides it) leaves the side's decision as it was:
 * the rule by which it does not restart stable-after there. Where the side
 * stays, or would stay with or without it, it does. */
Test(sbr_decide, a_member_leaving_a_side_that_goes_leaves_the_decision_as_it_was)
{
    cluster__sbr_params_t p = params(CLUSTER__SBR_KEEP_MAJORITY);
    cluster__sbr_member_t v[6];
    view(v, 5);
    v[0].unreachable = v[1].unreachable = v[2].unreachable = true; /* this side: 3 4 */
    cr_assert(cluster__sbr_goes_either_way(&p, v, 5, 4), "2 of 5 go, and 1 of 5 would too");
    cr_assert(!v[4].unreachable, "the view is left as it was given");
    view(v, 5);
    v[3].unreachable = v[4].unreachable = true; /* this side: 0 1 2 */
    cr_assert(!cluster__sbr_goes_either_way(&p, v, 5, 2), "3 of 5 stay: a change there counts");
    /* 3|3 without the lowest address: goes, and 2 against 4 goes too */
    view(v, 6);
    v[0].unreachable = v[2].unreachable = v[4].unreachable = true;
    cr_assert(cluster__sbr_goes_either_way(&p, v, 6, 3));
    /* static-quorum 3: a side of 2 goes either way */
    p = params(CLUSTER__SBR_STATIC_QUORUM);
    p.quorum_size = 3;
    view(v, 5);
    v[0].unreachable = v[1].unreachable = v[2].unreachable = true;
    cr_assert(cluster__sbr_goes_either_way(&p, v, 5, 4));
    /* keep-oldest with down-if-alone: the oldest (0) and 1 here, 3 across:
     * this side stays with 1, and goes without it (the oldest alone), so
     * losing 1 is a change that must be waited out. */
    p = params(CLUSTER__SBR_KEEP_OLDEST);
    view(v, 5);
    v[2].unreachable = v[3].unreachable = v[4].unreachable = true;
    cr_assert(!cluster__sbr_goes_either_way(&p, v, 5, 1));
    /* down-all: any unreachable member and every side goes */
    p = params(CLUSTER__SBR_DOWN_ALL_NODES);
    view(v, 5);
    v[0].unreachable = true;
    cr_assert(cluster__sbr_goes_either_way(&p, v, 5, 3));
}

/* cluster.sharding.down-removal-margin: "auto" is the resolver's
 * stable-after (Pekko's), and at least down-all-when-unstable + 2.5 s: a
 * side that should go but keeps seeing changes goes that late. */
Test(sbr_decide, the_down_removal_margin_covers_the_resolver)
{
    ukko_cluster_config_t cc;
    memset(&cc, 0, sizeof(cc));
    cc.sbr.strategy = CLUSTER__SBR_KEEP_MAJORITY;
    cc.sbr.stable_after_ms = 7000;
    cc.sbr.down_all_when_unstable = "on";
    cc.sbr.down_if_alone = true;
    cc.sharding.down_removal_margin = "auto";
    cr_assert_eq(cluster__down_removal_margin_ms(&cc), 7750,
                 "the defaults: 5.25 s of down-all-when-unstable + 2.5 s, over stable-after 7 s");
    cc.sbr.stable_after_ms = 3000;
    cr_assert_eq(cluster__down_removal_margin_ms(&cc), 6500,
                 "3 s: down-all-when-unstable is 4 s, + 2.5 s");
    cc.sbr.down_all_when_unstable = "off";
    cr_assert_eq(cluster__down_removal_margin_ms(&cc), 3000, "without it: stable-after");
    cc.sbr.stable_after_ms = 20000;
    cc.sbr.down_all_when_unstable = "on";
    cr_assert_eq(cluster__down_removal_margin_ms(&cc), 20000, "20 s: stable-after is longer");
    cc.sharding.down_removal_margin = "1500ms";
    cr_assert_eq(cluster__down_removal_margin_ms(&cc), 1500, "a duration is taken as it is");
}

/* --------------------------------------- the resolver in the core */

static sim_world_t *w;

static void world(double loss, int delay_min, int delay_max, const cluster__params_t *p)
{
    ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_JSON);
    sim_opts_t o;
    sim_opts_default(&o);
    o.seed = 7;
    o.loss = loss;
    o.delay_min_ms = delay_min;
    o.delay_max_ms = delay_max;
    cluster__params_t d;
    cluster__params_default(&d);
    w = sim_new(&o, p ? p : &d);
    cr_assert(w);
}

static void teardown(void)
{
    sim_free(w);
    w = NULL;
}

TestSuite(sbr_sim, .fini = teardown, .timeout = 60);

static int status_of(size_t at, size_t about)
{
    cluster__mship_t *m = sim_mship(w, at);
    for (size_t i = 0; i < cluster__mship_count(m); i++)
        if (cluster__mship_at(m, i)->ident == sim_ident(w, about))
            return cluster__mship_at(m, i)->status;
    return UKKO_MEMBER_REMOVED;
}

static bool self_up(size_t i)
{
    int s = cluster__mship_self_status(sim_mship(w, i));
    return !sim_crashed(w, i) && (s == UKKO_MEMBER_UP || s == UKKO_MEMBER_WEAKLY_UP);
}

static void form(size_t n)
{
    size_t seeds[2] = {0, 1};
    for (size_t i = 0; i < n; i++)
        sim_add_node(w, seeds, 2);
    for (size_t i = 0; i < n; i++)
        sim_start_node(w, i);
    int64_t end = sim_now(w) + 30000;
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n && all; i++)
            for (size_t j = 0; j < n && all; j++)
                all = status_of(i, j) == UKKO_MEMBER_UP;
        if (all)
            break;
        cr_assert_lt(sim_now(w), end, "%zu nodes form a cluster", n);
        sim_run_until(w, sim_now(w) + 100);
    }
}

/* Settled: no node that is still Up holds another Up node Down. */
static void assert_one_cluster(const char *when)
{
    for (size_t a = 0; a < sim_count(w); a++)
        for (size_t b = 0; b < sim_count(w); b++)
            if (a != b && self_up(a) && self_up(b))
                cr_assert(status_of(a, b) < UKKO_MEMBER_DOWN,
                          "%s: node %zu is Up but node %zu (Up) holds it %s", when, b, a,
                          ukko_member_status_name(status_of(a, b)));
}

/* At any moment: no two Up nodes on the two sides of the cut hold each
 * other Down (two clusters). One holding the other Down while that one has
 * yet to down itself is the moment between the two sides' decisions, and
 * allowed; so are two nodes of one side that each learned the other's
 * verdict before their own. */
static int sides[32];

static void assert_no_split(const char *when)
{
    for (size_t a = 0; a < sim_count(w); a++)
        for (size_t b = a + 1; b < sim_count(w); b++)
            if (sides[a] != sides[b] && self_up(a) && self_up(b))
                cr_assert(status_of(a, b) < UKKO_MEMBER_DOWN || status_of(b, a) < UKKO_MEMBER_DOWN,
                          "%s: nodes %zu and %zu, across the cut, are both Up and hold each "
                          "other Down",
                          when, a, b);
}

/* Runs until every node in [from, to) is not Up (downed itself), failing
 * after within_ms with what was seen. Checks one cluster on the way. */
static void until_down(size_t from, size_t to, int64_t within_ms)
{
    int64_t end = sim_now(w) + within_ms;
    for (;;) {
        assert_no_split("while the cut lasts");
        bool all = true;
        for (size_t i = from; i < to; i++)
            all = all && !self_up(i);
        if (all)
            return;
        cr_assert_lt(sim_now(w), end, "nodes %zu..%zu down themselves (node %zu is %s)", from,
                     to - 1, from, ukko_member_status_name(cluster__mship_self_status(sim_mship(w, from))));
        sim_run_until(w, sim_now(w) + 100);
    }
}

static void cut(size_t n, const int *group, bool one_way)
{
    for (size_t i = 0; i < n; i++) {
        sim_set_group(w, i, group[i]);
        sides[i] = group[i];
    }
    sim_block(w, 1, 0, true);
    if (!one_way)
        sim_block(w, 0, 1, true);
}

static void heal(void)
{
    sim_block(w, 1, 0, false);
    sim_block(w, 0, 1, false);
}

Test(sbr_sim, a_cut_of_two_from_three_downs_the_two)
{
    world(0, 1, 5, NULL);
    form(5);
    int group[5] = {0, 0, 0, 1, 1};
    cut(5, group, false);
    until_down(3, 5, 120000);
    sim_run_until(w, sim_now(w) + 15000);
    assert_one_cluster("after the decision");
    for (size_t i = 0; i < 3; i++) {
        cr_assert(self_up(i), "node %zu of the three stays Up", i);
        for (size_t j = 3; j < 5; j++)
            cr_assert_geq(status_of(i, j), UKKO_MEMBER_DOWN, "node %zu holds node %zu Down", i, j);
    }
    for (size_t i = 3; i < 5; i++) {
        const char *why = cluster__mship_down_reason(sim_mship(w, i));
        cr_assert(why && strstr(why, "keep-majority"), "node %zu says why it is Down: %s", i,
                  why ? why : "(nothing)");
        cr_assert_geq(cluster__mship_sbr_decisions(sim_mship(w, i))[CLUSTER__SBR_DOWN_REACHABLE],
                      1, "node %zu counts its decision", i);
    }
    cr_assert_eq(cluster__mship_sbr_decisions(sim_mship(w, 0))[CLUSTER__SBR_DOWN_UNREACHABLE], 1,
                 "the leader of the three (node 0) downed the two, once");
    /* heal; the two rejoin once restarted (new processes) */
    heal();
    for (size_t i = 3; i < 5; i++) {
        sim_crash(w, i, true);
        sim_restart(w, i);
    }
    int64_t end = sim_now(w) + 30000;
    while (!(self_up(3) && self_up(4) && status_of(0, 3) == UKKO_MEMBER_UP &&
             status_of(0, 4) == UKKO_MEMBER_UP)) {
        cr_assert_lt(sim_now(w), end, "the restarted two rejoin");
        sim_run_until(w, sim_now(w) + 100);
    }
    assert_one_cluster("after the rejoin");
}

Test(sbr_sim, a_three_three_tie_keeps_the_side_of_the_lowest_address)
{
    world(0, 1, 5, NULL);
    form(6);
    int group[6] = {1, 0, 1, 0, 1, 0}; /* node 0 (10.0.0.1) is with 2 and 4 */
    cut(6, group, false);
    int64_t end = sim_now(w) + 120000;
    for (;;) {
        assert_no_split("while the cut lasts");
        if (!self_up(1) && !self_up(3) && !self_up(5))
            break;
        cr_assert_lt(sim_now(w), end, "the side without the lowest address goes");
        sim_run_until(w, sim_now(w) + 100);
    }
    sim_run_until(w, sim_now(w) + 15000);
    for (size_t i = 0; i < 6; i += 2) {
        cr_assert(self_up(i), "node %zu, with the lowest address's side, stays", i);
        cr_assert_geq(status_of(0, i + 1), UKKO_MEMBER_DOWN, "node %zu is Down", i + 1);
    }
}

Test(sbr_sim, a_one_way_cut_still_downs_only_the_cut_off_side)
{
    world(0, 1, 5, NULL);
    form(5);
    int group[5] = {0, 0, 0, 1, 1};
    cut(5, group, true); /* 3 and 4 hear everyone, but nothing of theirs gets out */
    until_down(3, 5, 120000);
    sim_run_until(w, sim_now(w) + 15000);
    assert_one_cluster("after the decision");
    for (size_t i = 0; i < 3; i++)
        cr_assert(self_up(i), "node %zu stays Up", i);
}

/* A firewall that rejects rather than drops makes every member across the
 * cut look like a killed process (its port refused): the verdicts still go
 * through the resolver, so the 3 stay and the 2 go, without stable-after. */
Test(sbr_sim, a_cut_by_a_rejecting_firewall_still_leaves_one_side)
{
    world(0, 1, 5, NULL);
    form(5);
    sim_reject_blocked(w, true);
    int group[5] = {0, 0, 0, 1, 1};
    cut(5, group, false);
    until_down(3, 5, 120000);
    sim_run_until(w, sim_now(w) + 15000);
    assert_one_cluster("after the decision");
    uint64_t refused = 0;
    for (size_t i = 0; i < 5; i++)
        refused += cluster__mship_stats(sim_mship(w, i))->refused;
    cr_assert_gt(refused, 0, "the cut was seen as refused connections");
    for (size_t i = 0; i < 3; i++)
        cr_assert(self_up(i), "node %zu of the three stays Up", i);
}

/* A killed process (its host refuses the port) is downed at once, by the
 * leader's resolver, not after stable-after. */
Test(sbr_sim, a_killed_process_is_downed_without_waiting_for_stable_after)
{
    cluster__params_t p;
    cluster__params_default(&p);
    p.sbr.stable_after_ms = 600000; /* would never come within the test */
    world(0, 1, 5, &p);
    form(5);
    sim_crash(w, 3, true);
    int64_t end = sim_now(w) + 30000;
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < 5; i++)
            all = all && (i == 3 || status_of(i, 3) >= UKKO_MEMBER_DOWN);
        if (all)
            break;
        cr_assert_lt(sim_now(w), end, "the killed process is Down everywhere");
        sim_run_until(w, sim_now(w) + 50);
    }
    for (size_t i = 0; i < 5; i++)
        cr_assert(i == 3 || self_up(i), "node %zu stays Up", i);
}

Test(sbr_sim, a_crashed_member_is_downed_by_the_leader_alone)
{
    world(0, 1, 5, NULL);
    form(5);
    sim_crash(w, 2, false);
    int64_t end = sim_now(w) + 60000;
    while (status_of(0, 2) < UKKO_MEMBER_DOWN || status_of(4, 2) < UKKO_MEMBER_DOWN) {
        cr_assert_lt(sim_now(w), end, "the silent member is downed");
        sim_run_until(w, sim_now(w) + 100);
    }
    uint64_t acted = 0;
    for (size_t i = 0; i < 5; i++) {
        if (i == 2)
            continue;
        cr_assert(self_up(i), "node %zu stays Up", i);
        acted += cluster__mship_sbr_decisions(sim_mship(w, i))[CLUSTER__SBR_DOWN_UNREACHABLE];
    }
    cr_assert_eq(acted, 1, "one decision, by the leader");
}

/* A network that is only slow and lossy makes suspicions, which are
 * refuted; nobody is downed. */
Test(sbr_sim, a_slow_lossy_network_downs_nobody)
{
    world(0.05, 50, 700, NULL);
    form(5);
    uint64_t suspicions = 0;
    sim_run_until(w, sim_now(w) + 120000);
    for (size_t i = 0; i < 5; i++) {
        cr_assert(self_up(i), "node %zu is still Up", i);
        for (size_t j = 0; j < 5; j++)
            cr_assert_eq(status_of(i, j), UKKO_MEMBER_UP, "node %zu holds %zu Up", i, j);
        suspicions += cluster__mship_stats(sim_mship(w, i))->suspicions;
    }
    cr_assert_gt(suspicions, 0, "the network was slow enough to raise suspicions");
}

/* A link that goes down for 1.5 s and up for 0.7 s, for a minute: the view
 * never stays changed long enough to decide, and nobody is downed. */
Test(sbr_sim, a_link_flapping_briefly_downs_nobody)
{
    world(0, 1, 5, NULL);
    form(5);
    int group[5] = {0, 0, 0, 1, 1};
    cut(5, group, false);
    int64_t t0 = sim_now(w);
    bool blocked = true;
    while (sim_now(w) < t0 + 60000) {
        int64_t until = sim_now(w) + (blocked ? 1500 : 700);
        while (sim_now(w) < until) {
            sim_run_until(w, sim_now(w) + 100);
            assert_no_split("while the link flaps");
        }
        blocked = !blocked;
        sim_block(w, 1, 0, blocked);
        sim_block(w, 0, 1, blocked);
    }
    heal();
    sim_run_until(w, sim_now(w) + 30000);
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 5; j++)
            cr_assert_eq(status_of(i, j), UKKO_MEMBER_UP, "node %zu holds %zu Up", i, j);
}

/* Long cuts with heals too short to settle (6 s down, 0.2 s up): the view
 * keeps changing, and down-all-when-unstable downs the nodes that see it
 * so; never do both sides stay. */
Test(sbr_sim, a_link_that_never_settles_ends_in_down_all_not_two_clusters)
{
    world(0, 1, 5, NULL);
    form(20);
    int group[20];
    for (size_t i = 0; i < 20; i++)
        group[i] = i % 5 >= 3; /* 8 of 20 across */
    for (size_t i = 0; i < 20; i++) {
        sim_set_group(w, i, group[i]);
        sides[i] = group[i];
    }
    int64_t t0 = sim_now(w);
    bool blocked = false;
    while (sim_now(w) < t0 + 60000) {
        blocked = !blocked;
        sim_block(w, 1, 0, blocked);
        sim_block(w, 0, 1, blocked);
        int64_t until = sim_now(w) + (blocked ? 6000 : 200);
        while (sim_now(w) < until) {
            sim_run_until(w, sim_now(w) + 100);
            assert_no_split("while the link flaps");
        }
    }
    heal();
    sim_run_until(w, sim_now(w) + 30000);
    uint64_t unstable = 0;
    for (size_t i = 0; i < 20; i++)
        unstable += cluster__mship_sbr_decisions(sim_mship(w, i))[0];
    cr_assert_gt(unstable, 0, "down-all-when-unstable acted");
    assert_one_cluster("after the link settled");
}

/* ------------------------- a side that goes, goes as a whole, in time */

/* Whether node at sees every node in [from, to) unreachable (or Down). */
static bool sees_cut(size_t at, size_t from, size_t to)
{
    cluster__mship_t *m = sim_mship(w, at);
    for (size_t j = from; j < to; j++)
        for (size_t k = 0; k < cluster__mship_count(m); k++) {
            const cluster__member_t *mem = cluster__mship_at(m, k);
            if (mem->ident == sim_ident(w, j) && mem->live == CLUSTER__ALIVE &&
                mem->status < UKKO_MEMBER_DOWN)
                return false;
        }
    return true;
}

static bool self_down(size_t i)
{
    return sim_crashed(w, i) || cluster__mship_self_status(sim_mship(w, i)) >= UKKO_MEMBER_DOWN;
}

/* The two of a 3|2 cut lose each other too once each has seen the three
 * go (each is then alone: no word of the other's decision can reach it),
 * and each exits once it downed itself, as a node does. Each still decides
 * stable-after after its view of the cut settled: the other's leaving
 * (unreachable, then gone) does not restart its wait, as it did, when the
 * other side took the shards of a node still running them. Seeds 1 to 10
 * (cuts at different phases of the probes): in seed 9 the other's loss
 * came inside the wait, and node 4 went 3.75 s late. */
Test(sbr_sim, a_member_leaving_a_side_that_goes_does_not_restart_its_wait)
{
    cluster__params_t p;
    cluster__params_default(&p);
    for (uint64_t seed = 1; seed <= 10; seed++) {
        ukko_log_setup(UKKO_LOG_OFF, UKKO_LOG_JSON);
        sim_opts_t o;
        sim_opts_default(&o);
        o.seed = seed;
        o.delay_min_ms = 1;
        o.delay_max_ms = 5;
        w = sim_new(&o, &p);
        cr_assert(w);
        form(5);
        sim_run_until(w, sim_now(w) + (int64_t)seed * 137); /* cut at other phases */
        int group[5] = {0, 0, 0, 1, 2};
        for (size_t i = 0; i < 5; i++) {
            sim_set_group(w, i, group[i]);
            sides[i] = group[i] ? 1 : 0;
        }
        for (int g = 1; g <= 2; g++) {
            sim_block(w, 0, g, true);
            sim_block(w, g, 0, true);
        }
        int64_t whole[5] = {0}, down[5] = {0};
        bool inner = false;
        int64_t end = sim_now(w) + 60000;
        while (!(down[3] && down[4])) {
            cr_assert_lt(sim_now(w), end, "seed %llu: nodes 3 and 4 down themselves",
                         (unsigned long long)seed);
            sim_run_until(w, sim_now(w) + 10);
            assert_no_split("while the cut lasts");
            for (size_t i = 3; i < 5; i++) {
                if (!whole[i] && sees_cut(i, 0, 3))
                    whole[i] = sim_now(w);
                if (!down[i] && self_down(i)) {
                    down[i] = sim_now(w);
                    sim_crash(w, i, true); /* it exits; its host refuses */
                }
            }
            if (!inner && whole[3] && whole[4]) {
                inner = true;
                sim_block(w, 1, 2, true);
                sim_block(w, 2, 1, true);
            }
        }
        for (size_t i = 3; i < 5; i++)
            cr_assert_leq(down[i] - whole[i], p.sbr.stable_after_ms + 100,
                          "seed %llu: node %zu downs itself stable-after (%lld ms) after its "
                          "view of the cut settled, not %lld ms after: the other's leaving "
                          "restarted its wait",
                          (unsigned long long)seed, i, (long long)p.sbr.stable_after_ms,
                          (long long)(down[i] - whole[i]));
        sim_free(w);
        w = NULL;
    }
}

/* A 3|2 cut in which node 4's clock restarts (its loop stalls for 1.5 s
 * after its view of the cut settled, and verdicts across a stall are not
 * trusted), and each of the two exits once it is Down, as a node does.
 * Node 3 decides first and takes node 4 down with it, told first hand:
 * before, node 4 waited out its own stable-after, then another for node 3
 * gone, and still ran its shards 7 to 11 s after the three had downed it,
 * past any margin. Now both are Down before the three could move their
 * shards. */
Test(sbr_sim, a_side_that_goes_goes_as_a_whole)
{
    world(0, 1, 5, NULL);
    cluster__params_t p;
    cluster__params_default(&p);
    form(5);
    int group[5] = {0, 0, 0, 1, 1};
    cut(5, group, false);
    int64_t whole4 = 0, downed = 0, down[5] = {0};
    bool stalled = false;
    int64_t end = sim_now(w) + 60000;
    while (!(down[3] && down[4])) {
        cr_assert_lt(sim_now(w), end, "nodes 3 and 4 down themselves");
        sim_run_until(w, sim_now(w) + 10);
        assert_no_split("while the cut lasts");
        if (!downed && status_of(0, 3) >= UKKO_MEMBER_DOWN)
            downed = sim_now(w);
        if (!whole4 && sees_cut(4, 0, 3))
            whole4 = sim_now(w);
        if (whole4 && !stalled && sim_now(w) >= whole4 + 3000) {
            stalled = true;
            sim_pause(w, 4, sim_now(w) + 1500);
        }
        for (size_t i = 3; i < 5; i++)
            if (!down[i] && self_down(i)) {
                down[i] = sim_now(w);
                if (i == 3)
                    cr_assert_eq(cluster__mship_sbr_downed(sim_mship(w, 3)), 2,
                                 "node 3 downs its side: itself and node 4");
                const char *why = cluster__mship_down_reason(sim_mship(w, i));
                cr_assert(why && strstr(why, "split-brain resolver") && strstr(why, "keep-majority"),
                          "node %zu says why it is Down: %s", i, why ? why : "(nothing)");
                sim_crash(w, i, true);
            }
    }
    while (!downed) {
        cr_assert_lt(sim_now(w), end, "the three down the two");
        sim_run_until(w, sim_now(w) + 10);
        if (status_of(0, 3) >= UKKO_MEMBER_DOWN)
            downed = sim_now(w);
    }
    cr_assert_leq(down[4] - down[3], 100,
                  "node 4 is Down with node 3 (told first hand), not %lld ms after it",
                  (long long)(down[4] - down[3]));
    for (size_t i = 3; i < 5; i++)
        cr_assert_lt(down[i], downed + p.sbr.stable_after_ms,
                     "node %zu is Down %lld ms after the three downed it: before the shards "
                     "could move (the margin is at least stable-after, %lld ms)",
                     i, (long long)(down[i] - downed), (long long)p.sbr.stable_after_ms);
}

/* A non-transitive cut: nodes 5 and 6 are cut from 1-4, but node 0 (the
 * lowest address, with 1-4) still reaches both sides and they reach it.
 * The two may go, down-all-when-unstable may act on their flapping view,
 * but whatever they decide must not down a member of the side that stays:
 * node 0 is heard by them first hand, and downing it "with their side"
 * would cost the side that stays a member (under static-quorum, its
 * quorum, and then everyone). Runs a minute of simulated time. */
static void bridged_cut(const cluster__params_t *p, size_t n)
{
    world(0, 1, 5, p);
    form(n);
    for (size_t i = 0; i < n; i++) {
        int g = i == 0 ? 2 : i < n - 2 ? 0 : 1;
        sim_set_group(w, i, g);
        sides[i] = g == 1;
    }
    sim_block(w, 0, 1, true);
    sim_block(w, 1, 0, true);
    int64_t end = sim_now(w) + 60000;
    while (sim_now(w) < end) {
        sim_run_until(w, sim_now(w) + 100);
        for (size_t i = 0; i < n - 2; i++) {
            const char *why = cluster__mship_down_reason(sim_mship(w, i));
            cr_assert(self_up(i), "node %zu, of the side that stays, is %s at t=%lld ms: %s", i,
                      ukko_member_status_name(cluster__mship_self_status(sim_mship(w, i))),
                      (long long)sim_now(w), why ? why : "(downed by another node)");
        }
    }
}

Test(sbr_sim, a_member_bridging_a_non_transitive_cut_is_not_downed_with_the_other_side)
{
    bridged_cut(NULL, 7);
}

Test(sbr_sim, a_bridged_cut_under_static_quorum_leaves_the_side_that_has_the_quorum)
{
    cluster__params_t p;
    cluster__params_default(&p);
    p.sbr.strategy = CLUSTER__SBR_STATIC_QUORUM;
    p.sbr.quorum_size = 4;
    bridged_cut(&p, 6);
}
