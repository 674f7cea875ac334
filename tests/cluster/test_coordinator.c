/* Tests of cluster/coordinator.c: the shard coordinator driven by a small
 * world of regions that obey it as the runtime does (start on the table,
 * stop and answer STOPPED on a hand-off, report their shards when asked),
 * with a manual clock. Checked after every step: no shard runs on two live
 * regions. Covered: balance and few moves as members join and leave, the
 * hand-off state machine with an owner dying mid-way, the margin, and a
 * new coordinator rebuilding from reports. */
#include "sharding_internal.h"

#include <criterion/criterion.h>
#include <string.h>

#define NR 8
#define NS 12
#define QMAX 4096

enum { M_TABLE, M_HANDOFF, M_REPORT_REQ };

typedef struct msg {
    int kind;
    uint32_t to;
    size_t t;
    int32_t s;
    uint64_t nonce;
} msg_t;

typedef struct world {
    int64_t now;
    shard__co_t *co;
    msg_t q[QMAX];
    size_t qn;
    bool alive[NR];  /* process running (a killed one runs nothing that matters) */
    bool member[NR]; /* in the view */
    uint8_t status[NR];
    bool running[NR][NS];
    bool stopping_hold[NR]; /* delay STOPPED answers (a slow drain) */
    bool seen[NR];          /* has obeyed a table */
    size_t moves;
} world_t;

static world_t W;

static int64_t w_now(void *ud)
{
    (void)ud;
    return W.now;
}

static void push(int kind, uint32_t to, size_t t, int32_t s, uint64_t nonce)
{
    cr_assert_lt(W.qn, QMAX);
    W.q[W.qn++] = (msg_t){kind, to, t, s, nonce};
}

static void w_table(void *ud, uint32_t to, size_t t)
{
    (void)ud;
    push(M_TABLE, to, t, -1, 0);
}

static void w_handoff(void *ud, uint32_t to, size_t t, int32_t s)
{
    (void)ud;
    push(M_HANDOFF, to, t, s, 0);
}

static void w_report_req(void *ud, uint32_t to, uint64_t nonce)
{
    (void)ud;
    push(M_REPORT_REQ, to, 0, -1, nonce);
}

static void w_moved(void *ud, size_t t, int32_t s, uint32_t from, uint32_t to, int64_t ms,
                    const char *why)
{
    (void)ud, (void)t, (void)s, (void)to, (void)ms, (void)why;
    if (from != SH_NONE)
        W.moves++;
}

static shard__co_t *new_co(uint32_t self)
{
    shard__co_params_t p = {.down_removal_margin_ms = 2000,
                            .rebalance_interval_ms = 500,
                            .max_simultaneous = 3,
                            .handoff_timeout_ms = 1000};
    shard__co_env_t env = {NULL, w_now, w_table, w_handoff, w_report_req, w_moved};
    shard__co_t *co = shard__co_new(&p, &env, self);
    cr_assert(co);
    cr_assert_eq(shard__co_add_type(co, "counter", NS), 0);
    return co;
}

static void check_single_runner(void)
{
    for (int s = 0; s < NS; s++) {
        int n = 0;
        for (int r = 0; r < NR; r++)
            n += W.alive[r] && W.status[r] < UKKO_MEMBER_DOWN && W.running[r][s];
        cr_assert_leq(n, 1, "shard %d runs on %d live regions at %lld ms", s, n,
                      (long long)W.now);
    }
}

/* The view: every member, the oldest (lowest index alive and Up) is the
 * coordinator; only co's own node is told it is. */
static void view(uint32_t self)
{
    shard__co_member_t v[NR];
    size_t n = 0;
    uint32_t oldest = SH_NONE;
    for (uint32_t r = 0; r < NR; r++) {
        if (!W.member[r])
            continue;
        v[n++] = (shard__co_member_t){r, W.status[r], W.alive[r], 0x1234567ULL * (r + 1)};
        if (oldest == SH_NONE && (W.status[r] == UKKO_MEMBER_UP ||
                                  W.status[r] == UKKO_MEMBER_LEAVING))
            oldest = r;
    }
    shard__co_view(W.co, v, n, oldest == self);
}

/* Delivers what is queued, as the regions would react. */
static void pump(void)
{
    for (int rounds = 0; rounds < 50 && W.qn; rounds++) {
        msg_t q[QMAX];
        size_t n = W.qn;
        memcpy(q, W.q, n * sizeof(msg_t));
        W.qn = 0;
        for (size_t i = 0; i < n; i++) {
            msg_t *m = &q[i];
            uint32_t r = m->to;
            if (r >= NR || !W.alive[r] || W.status[r] >= UKKO_MEMBER_DOWN)
                continue;
            if (m->kind == M_TABLE) {
                W.seen[r] = true;
                for (int32_t s = 0; s < NS; s++) {
                    bool moving;
                    uint32_t o = shard__co_owner(W.co, m->t, s, &moving);
                    if (o == r && !moving)
                        W.running[r][s] = true;
                }
            } else if (m->kind == M_HANDOFF) {
                if (W.stopping_hold[r])
                    continue; /* slow: never answers while held */
                W.running[r][m->s] = false;
                shard__co_stopped(W.co, r, m->t, m->s);
            } else if (m->kind == M_REPORT_REQ) {
                shard__co_entry_t e[NS];
                size_t k = 0;
                for (int32_t s = 0; s < NS; s++)
                    if (W.running[r][s])
                        e[k++] = (shard__co_entry_t){0, s, SH_RUNNING};
                shard__co_report(W.co, r, m->nonce, W.seen[r] ? SH_REPORT_SEEN_TABLE : 0, e, k);
            }
            check_single_runner();
        }
        shard__co_tick(W.co);
    }
}

static void step(uint32_t self, int64_t ms)
{
    for (int64_t t = 0; t < ms; t += 100) {
        W.now += 100;
        view(self);
        shard__co_tick(W.co);
        pump();
        check_single_runner();
    }
}

static int count_running(uint32_t r)
{
    int n = 0;
    for (int s = 0; s < NS; s++)
        n += W.running[r][s];
    return n;
}

static void start_world(int members)
{
    memset(&W, 0, sizeof(W));
    W.now = 1000;
    for (int r = 0; r < members; r++) {
        W.alive[r] = W.member[r] = true;
        W.status[r] = UKKO_MEMBER_UP;
    }
    W.co = new_co(0);
}

static void expect_all_allocated(void)
{
    for (int32_t s = 0; s < NS; s++) {
        uint32_t o = shard__co_owner(W.co, 0, s, NULL);
        cr_expect_neq(o, SH_NONE, "shard %d has no owner", s);
        if (o != SH_NONE)
            cr_expect(W.running[o][s], "shard %d: the table says %u, which does not run it", s,
                      o);
    }
}

Test(coordinator, allocates_evenly_on_first_formation, .timeout = 10)
{
    start_world(3);
    step(0, 1000);
    cr_assert(shard__co_active(W.co));
    expect_all_allocated();
    for (uint32_t r = 0; r < 3; r++)
        cr_expect_eq(count_running(r), 4, "member %u runs %d shards, want 4", r,
                     count_running(r));
    cr_expect_eq(W.moves, 0);
    shard__co_free(W.co);
}

Test(coordinator, a_joining_member_gets_its_share_with_few_moves, .timeout = 10)
{
    start_world(3);
    step(0, 1000);
    W.alive[3] = W.member[3] = true;
    W.status[3] = UKKO_MEMBER_JOINING;
    step(0, 1000);
    cr_expect_eq(count_running(3), 0, "a Joining member gets no shard");
    W.status[3] = UKKO_MEMBER_UP;
    step(0, 3000);
    expect_all_allocated();
    for (uint32_t r = 0; r < 4; r++)
        cr_expect_eq(count_running(r), 3, "member %u runs %d shards, want 3", r,
                     count_running(r));
    cr_expect_eq(W.moves, 3, "12 shards from 3 to 4 members: 3 moves, saw %zu", W.moves);
    cr_expect_eq(shard__co_handoffs(W.co), 3);
    /* a fifth: 12 over 5 is 2 or 3 each, two more moves */
    W.alive[4] = W.member[4] = true;
    W.status[4] = UKKO_MEMBER_UP;
    step(0, 3000);
    int min = NS, max = 0;
    for (uint32_t r = 0; r < 5; r++) {
        int n = count_running(r);
        min = n < min ? n : min;
        max = n > max ? n : max;
    }
    cr_expect(min >= 2 && max <= 3, "12 over 5 members: between 2 and 3 each, saw %d..%d", min,
              max);
    cr_expect_eq(W.moves, 5, "2 more moves for the fifth member, saw %zu in all", W.moves);
    shard__co_free(W.co);
}

Test(coordinator, a_region_going_away_hands_off_everything, .timeout = 10)
{
    start_world(4);
    step(0, 1000);
    shard__co_going_away(W.co, 2);
    pump();
    step(0, 500);
    cr_expect_eq(count_running(2), 0, "the region going away still runs %d", count_running(2));
    expect_all_allocated();
    for (uint32_t r = 0; r < 4; r++)
        if (r != 2)
            cr_expect_eq(count_running(r), 4);
    shard__co_free(W.co);
}

Test(coordinator, a_dead_member_s_shards_move_only_after_the_margin, .timeout = 10)
{
    start_world(3);
    step(0, 1000);
    int had = count_running(2);
    cr_assert_gt(had, 0);
    /* killed: unreachable, then Down */
    W.alive[2] = false;
    step(0, 1000);
    cr_expect_eq(shard__co_load(W.co, 0, 2), (size_t)had, "unreachable is not gone");
    W.status[2] = UKKO_MEMBER_DOWN;
    int64_t down_at = W.now + 100;
    step(0, 1500);
    cr_expect_eq(shard__co_load(W.co, 0, 2), (size_t)had,
                 "1.5 s after Down, inside the 2 s margin: its shards stay put");
    while (shard__co_load(W.co, 0, 2) > 0 && W.now < down_at + 5000)
        step(0, 100);
    cr_expect_geq(W.now - down_at, 2000, "moved %lld ms after Down", (long long)(W.now - down_at));
    step(0, 500);
    expect_all_allocated();
    cr_expect_eq(count_running(0) + count_running(1), NS);
    shard__co_free(W.co);
}

Test(coordinator, an_owner_dying_mid_hand_off, .timeout = 10)
{
    start_world(3);
    step(0, 1000);
    /* member 1 is slow to stop, then dies in the middle of a going-away */
    W.stopping_hold[1] = true;
    shard__co_going_away(W.co, 1);
    pump();
    step(0, 2500);
    cr_expect_gt(shard__co_load(W.co, 0, 1), 0, "never moved without STOPPED");
    cr_expect_gt(count_running(1), 0);
    W.alive[1] = false;
    W.status[1] = UKKO_MEMBER_DOWN;
    step(0, 1500);
    cr_expect_gt(shard__co_load(W.co, 0, 1), 0, "inside the margin after Down");
    step(0, 1500);
    cr_expect_eq(shard__co_load(W.co, 0, 1), 0);
    expect_all_allocated();
    shard__co_free(W.co);
}

Test(coordinator, a_new_coordinator_rebuilds_from_reports, .timeout = 10)
{
    start_world(4);
    step(0, 1000);
    bool before[NR][NS];
    memcpy(before, W.running, sizeof(before));
    /* the coordinator's node (0) is killed; member 1 takes over after it
     * is Down: a fresh coordinator that knows nothing yet. */
    shard__co_free(W.co);
    W.alive[0] = false;
    W.status[0] = UKKO_MEMBER_DOWN;
    W.co = new_co(1);
    size_t moves = W.moves;
    /* member 3 is slow to answer: nothing is allocated meanwhile */
    W.alive[3] = false; /* unreachable: cannot answer */
    view(1);
    shard__co_tick(W.co);
    cr_expect(shard__co_rebuilding(W.co));
    step(1, 1500);
    cr_expect(shard__co_rebuilding(W.co), "still waiting for member 3's report");
    W.alive[3] = true;
    step(1, 1200);
    cr_assert(shard__co_active(W.co));
    for (uint32_t r = 1; r < 4; r++)
        for (int s = 0; s < NS; s++)
            if (before[r][s])
                cr_expect_eq(shard__co_owner(W.co, 0, s, NULL), r,
                             "shard %d ran on %u before the failover", s, r);
    cr_expect_eq(W.moves, moves, "the rebuild moved nothing");
    /* the dead coordinator's own shards come back, after the margin */
    step(1, 2500);
    expect_all_allocated();
    cr_expect_eq(count_running(1) + count_running(2) + count_running(3), NS);
    shard__co_free(W.co);
}
