/* sim_split.c: ukko-sim's split-brain scenarios. A converged cluster is cut
 * in two (cleanly, in equal halves, one way only, or by a link that keeps
 * flapping), or only slowed down; the split-brain resolver of every node
 * decides, and one JSON line says which side stayed, when each side decided,
 * how long a downed node was still Up, whether both sides ever stayed, and
 * how fast the downed side rejoined once healed and restarted. One thread. */
#include "sim_split.h"
#include "simnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NEVER INT64_MAX

typedef struct split {
    sim_world_t *w;
    size_t n;
    int *side;            /* 0: the side that should stay, 1: the side that should go */
    int64_t t_cut;        /* NEVER before the cut */
    int64_t *self_down;   /* per node: when it downed itself (or learned it was Down) */
    int64_t *held_down;   /* per node: when a node of side 0 first held it Down */
    size_t wrong_downs;   /* a side-0 member held Down anywhere */
    size_t downs;         /* any member held Down by anyone, or self-downed */
    size_t split_seen;    /* polls that found two Up nodes holding each other Down */
} split_t;

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void observe(void *ud, size_t node, uint32_t ident, int old_status, int old_live,
                    int status, int live)
{
    (void)old_live;
    (void)live;
    split_t *s = ud;
    if (status < UKKO_MEMBER_DOWN || old_status >= UKKO_MEMBER_DOWN || old_status < 0 ||
        old_status == UKKO_MEMBER_EXITING)
        return;
    size_t victim = sim_node_of(s->w, ident);
    if (victim == SIZE_MAX || victim >= s->n || sim_crashed(s->w, victim))
        return;
    int64_t now = sim_now(s->w);
    s->downs++;
    if (s->side[victim] == 0) {
        s->wrong_downs++;
        if (getenv("UKKO_SIM_DEBUG"))
            fprintf(stderr, "wrong down t=%lld observer=%zu (side %d) victim=%zu (side 0) self=%d\n",
                    (long long)(now - s->t_cut), node, s->side[node], victim, victim == node);
    }
    if (victim == node) {
        if (s->self_down[node] == NEVER)
            s->self_down[node] = now;
    } else if (s->side[node] == 0 && s->held_down[victim] == NEVER) {
        s->held_down[victim] = now;
    }
}

static int status_of(sim_world_t *w, size_t at, size_t about)
{
    cluster__mship_t *m = sim_mship(w, at);
    const cluster__member_t *mem = cluster__mship_find(m, sim_addr(w, about));
    if (!mem || mem->ident != sim_ident(w, about))
        return UKKO_MEMBER_REMOVED;
    return mem->status;
}

static bool self_up(sim_world_t *w, size_t i)
{
    int st = cluster__mship_self_status(sim_mship(w, i));
    return !sim_crashed(w, i) && (st == UKKO_MEMBER_UP || st == UKKO_MEMBER_WEAKLY_UP);
}

/* Two Up nodes on the two sides that hold each other Down: two clusters.
 * (Two nodes of one side may, for a moment, each learn the other's verdict
 * before its own: not two clusters.) Quadratic, so only small worlds are
 * checked at every poll; large ones at the end. */
static bool split_now(split_t *s)
{
    for (size_t a = 0; a < s->n; a++)
        for (size_t b = a + 1; b < s->n; b++)
            if (s->side[a] != s->side[b] && self_up(s->w, a) && self_up(s->w, b) &&
                status_of(s->w, a, b) >= UKKO_MEMBER_DOWN &&
                status_of(s->w, b, a) >= UKKO_MEMBER_DOWN) {
                if (getenv("UKKO_SIM_DEBUG"))
                    fprintf(stderr, "split t=%lld: %zu (side %d) and %zu (side %d) Up, each holds the other %s/%s\n",
                            (long long)(sim_now(s->w) - s->t_cut), a, s->side[a], b, s->side[b],
                            ukko_member_status_name(status_of(s->w, a, b)), ukko_member_status_name(status_of(s->w, b, a)));
                return true;
            }
    return false;
}

static void run_polling(split_t *s, int64_t until)
{
    while (sim_now(s->w) < until) {
        sim_run_until(s->w, sim_now(s->w) + 100);
        if (s->n <= 100 && split_now(s))
            s->split_seen++;
    }
}

static void setup(split_t *s, size_t n, uint64_t seed, double loss, int dmin, int dmax)
{
    memset(s, 0, sizeof(*s));
    sim_opts_t o;
    sim_opts_default(&o);
    o.seed = seed;
    o.loss = loss;
    o.delay_min_ms = dmin;
    o.delay_max_ms = dmax;
    cluster__params_t p;
    cluster__params_default(&p);
    s->w = sim_new(&o, &p);
    s->n = n;
    s->side = calloc(n, sizeof(int));
    s->self_down = malloc(n * sizeof(int64_t));
    s->held_down = malloc(n * sizeof(int64_t));
    if (!s->w || !s->side || !s->self_down || !s->held_down)
        abort();
    for (size_t i = 0; i < n; i++)
        s->self_down[i] = s->held_down[i] = NEVER;
    s->t_cut = NEVER;
    size_t seeds[3] = {0, 1, 2};
    for (size_t i = 0; i < n; i++)
        sim_add_node(s->w, seeds, 3);
    sim_prefill(s->w, n);
    sim_observe(s->w, observe, s);
    sim_run_until(s->w, sim_now(s->w) + 5000);
}

static void split_free(split_t *s)
{
    sim_free(s->w);
    free(s->side);
    free(s->self_down);
    free(s->held_down);
}

/* Side 1 gets k nodes: a random choice that never holds node 0 (the lowest
 * address, which wins a tie) nor the other seeds, so they stay to rejoin
 * through. */
static void choose(split_t *s, size_t k)
{
    size_t chosen = 0, from = s->n - 3 >= k ? 3 : 1;
    while (chosen < k) {
        size_t i = from + (size_t)(rnd() % (uint64_t)(s->n - from));
        if (s->side[i])
            continue;
        s->side[i] = 1;
        chosen++;
    }
    for (size_t i = 0; i < s->n; i++)
        sim_set_group(s->w, i, s->side[i]);
}

static double secs(int64_t ms)
{
    return (double)ms / 1000.0;
}

static void json_s(const char *key, int64_t ms)
{
    if (ms == NEVER || ms < 0)
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.3f", key, secs(ms));
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Heals, restarts every node that is Down (a new process each), and
 * returns how long until every node holds all n Up again (NEVER: not
 * within 60 s). */
static int64_t heal_and_rejoin(split_t *s)
{
    sim_block(s->w, 0, 1, false);
    sim_block(s->w, 1, 0, false);
    sim_observe(s->w, NULL, NULL);
    int64_t t0 = sim_now(s->w);
    for (size_t i = 0; i < s->n; i++)
        if (!self_up(s->w, i)) {
            sim_crash(s->w, i, true);
            sim_restart(s->w, i);
        }
    while (sim_now(s->w) < t0 + 60000) {
        sim_run_until(s->w, sim_now(s->w) + 100);
        bool all = true;
        for (size_t i = 0; i < s->n && all; i++) {
            cluster__mship_t *m = sim_mship(s->w, i);
            all = self_up(s->w, i) && cluster__mship_count(m) == s->n;
            for (size_t k = 0; all && k < cluster__mship_count(m); k++)
                all = cluster__mship_at(m, k)->status == UKKO_MEMBER_UP;
        }
        if (all)
            return sim_now(s->w) - t0;
    }
    return NEVER;
}

/* Prints the line; heals and measures the rejoin after reading the state
 * of the cut, when rejoin is asked for. */
static void report(split_t *s, const char *name, uint64_t seed, double loss, bool rejoin,
                   double t_start, const char *extra)
{
    size_t k0 = 0, k1 = 0, up0 = 0, up1 = 0;
    int64_t first_held = NEVER, last_held = 0, overlap = 0;
    int64_t *self = calloc(s->n, sizeof(int64_t));
    size_t nself = 0;
    for (size_t i = 0; i < s->n; i++) {
        bool up = self_up(s->w, i);
        if (s->side[i] == 0) {
            k0++;
            up0 += up;
            continue;
        }
        k1++;
        up1 += up;
        if (s->t_cut == NEVER)
            continue;
        if (s->held_down[i] != NEVER) {
            int64_t h = s->held_down[i] - s->t_cut;
            first_held = h < first_held ? h : first_held;
            last_held = h > last_held ? h : last_held;
        } else {
            last_held = NEVER;
        }
        int64_t d = s->self_down[i] == NEVER ? NEVER : s->self_down[i] - s->t_cut;
        self[nself++] = d;
        if (s->held_down[i] != NEVER) {
            /* how long it stayed Up after the staying side had downed it */
            int64_t o = s->self_down[i] == NEVER ? NEVER : s->self_down[i] - s->held_down[i];
            if (o == NEVER || o > overlap)
                overlap = o;
        }
    }
    qsort(self, nself, sizeof(int64_t), cmp_i64);
    uint64_t decisions = 0;
    for (size_t i = 0; i < s->n; i++) {
        const uint64_t *d = cluster__mship_sbr_decisions(sim_mship(s->w, i));
        for (int k = 0; k < 4; k++)
            decisions += d[k];
    }
    bool both = s->split_seen > 0 || (s->n > 100 && split_now(s));
    int64_t rejoined = rejoin ? heal_and_rejoin(s) : NEVER;
    double wall = wall_now() - t_start;
    printf("{\"scenario\":\"%s\",\"nodes\":%zu,\"seed\":%llu,\"loss\":%.4f", name, s->n,
           (unsigned long long)seed, loss);
    printf(",\"stay_side\":%zu,\"go_side\":%zu", k0, k1);
    cluster__params_t p;
    cluster__params_default(&p);
    printf(",\"stable_after_s\":%.3f", secs(p.sbr.stable_after_ms));
    json_s("stay_side_first_down_s", first_held);
    json_s("stay_side_all_down_s", last_held ? last_held : NEVER);
    json_s("go_side_self_down_p50_s", nself ? self[(nself - 1) / 2] : NEVER);
    json_s("go_side_self_down_max_s", nself ? self[nself - 1] : NEVER);
    json_s("downed_but_up_max_s", first_held == NEVER ? NEVER : overlap);
    printf(",\"up_after_stay\":%zu,\"up_after_go\":%zu,\"both_sides_stayed\":%s", up0, up1,
           both ? "true" : "false");
    printf(",\"wrong_downs\":%zu,\"downs\":%zu,\"decisions\":%llu", s->wrong_downs, s->downs,
           (unsigned long long)decisions);
    json_s("rejoin_s", rejoined);
    printf(",\"events\":%llu,\"wall_s\":%.3f%s}\n", (unsigned long long)sim_events(s->w), wall,
           extra ? extra : "");
    fflush(stdout);
    free(self);
}

/* A clean cut (both ways, or one way: side 1 cannot send to side 0);
 * reject: by a firewall that refuses rather than drops. */
static void scenario_cut(const char *name, size_t n, uint64_t seed, double loss, size_t k,
                         bool one_way, bool reject)
{
    double t = wall_now();
    split_t s;
    setup(&s, n, seed, loss, 1, 5);
    choose(&s, k);
    sim_reject_blocked(s.w, reject);
    s.t_cut = sim_now(s.w);
    sim_block(s.w, 1, 0, true);
    if (!one_way)
        sim_block(s.w, 0, 1, true);
    run_polling(&s, s.t_cut + 90000);
    report(&s, name, seed, loss, true, t, NULL);
    split_free(&s);
}

/* The link between the sides goes down for cut_ms and up for up_ms, again
 * and again for a minute, then stays up. Short cuts (1.5 s, 0.7 s up) are
 * ridden out; long ones with short heals (6 s, 0.2 s up) keep the view from
 * settling, and down-all-when-unstable ends it. */
static void scenario_flap(const char *name, size_t n, uint64_t seed, double loss, int cut_ms,
                          int up_ms)
{
    double t = wall_now();
    split_t s;
    setup(&s, n, seed, loss, 1, 5);
    choose(&s, n * 2 / 5);
    s.t_cut = sim_now(s.w);
    bool blocked = false;
    while (sim_now(s.w) < s.t_cut + 60000) {
        blocked = !blocked;
        sim_block(s.w, 1, 0, blocked);
        sim_block(s.w, 0, 1, blocked);
        run_polling(&s, sim_now(s.w) + (blocked ? cut_ms : up_ms));
    }
    sim_block(s.w, 1, 0, false);
    sim_block(s.w, 0, 1, false);
    run_polling(&s, sim_now(s.w) + 30000);
    char extra[96];
    snprintf(extra, sizeof(extra), ",\"flap\":\"%.1fs cut, %.1fs up, 60s\"", cut_ms / 1000.0,
             up_ms / 1000.0);
    report(&s, name, seed, loss, false, t, extra);
    split_free(&s);
}

/* No cut: a slow, lossy network for two minutes. Every down is a false one. */
static void scenario_slow(size_t n, uint64_t seed, double loss)
{
    double t = wall_now();
    split_t s;
    setup(&s, n, seed, loss > 0 ? loss : 0.05, 50, 700);
    uint64_t susp0 = 0, susp1 = 0;
    for (size_t i = 0; i < n; i++)
        susp0 += cluster__mship_stats(sim_mship(s.w, i))->suspicions;
    run_polling(&s, sim_now(s.w) + 120000);
    for (size_t i = 0; i < n; i++)
        susp1 += cluster__mship_stats(sim_mship(s.w, i))->suspicions;
    char extra[120];
    snprintf(extra, sizeof(extra), ",\"delay_ms\":\"50-700\",\"suspicions\":%llu,\"false_downs\":%zu",
             (unsigned long long)(susp1 - susp0), s.downs);
    report(&s, "slow", seed, loss > 0 ? loss : 0.05, false, t, extra);
    split_free(&s);
}

bool sim_split_run(const char *name, size_t nodes, uint64_t seed, double loss)
{
    rng = seed * 0x9e3779b97f4a7c15ULL + 777;
    bool all = !strcmp(name, "all"), any = false;
    if (all || !strcmp(name, "split-brain"))
        scenario_cut("split-brain", nodes, seed, loss, nodes * 2 / 5, false, false), any = true;
    if (all || !strcmp(name, "split-tie"))
        scenario_cut("split-tie", nodes - nodes % 2, seed, loss, (nodes - nodes % 2) / 2, false,
                     false),
            any = true;
    if (all || !strcmp(name, "split-one-way"))
        scenario_cut("split-one-way", nodes, seed, loss, nodes * 2 / 5, true, false), any = true;
    if (all || !strcmp(name, "split-reject"))
        scenario_cut("split-reject", nodes, seed, loss, nodes * 2 / 5, false, true), any = true;
    if (all || !strcmp(name, "split-flap"))
        scenario_flap("split-flap", nodes, seed, loss, 1500, 700), any = true;
    if (all || !strcmp(name, "split-flap-long"))
        scenario_flap("split-flap-long", nodes, seed, loss, 6000, 200), any = true;
    if (all || !strcmp(name, "slow"))
        scenario_slow(nodes, seed, loss), any = true;
    return any;
}
