/* sim.c: ukko-sim, the membership of N nodes in one process over a
 * simulated network (simnet.c), running the very core that ships. Each
 * scenario prints one JSON line: how fast news spreads, how fast a failed
 * node is found, false deaths, and the traffic at rest. One thread. */
#include "sim_split.h"
#include "simnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NEVER INT64_MAX

typedef struct samples {
    double *v;
    size_t n, cap;
} samples_t;

static void add(samples_t *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        double *nv = realloc(s->v, s->cap * sizeof(double));
        if (!nv)
            abort();
        s->v = nv;
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile; NAN when there are no samples. */
static double pct(samples_t *s, double q)
{
    if (!s->n)
        return NAN;
    qsort(s->v, s->n, sizeof(double), cmp_double);
    size_t k = (size_t)ceil(q * (double)s->n);
    if (k < 1)
        k = 1;
    return s->v[k - 1];
}

static void json_num(const char *key, double v)
{
    if (isnan(v) || isinf(v))
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.3f", key, v);
}

/* What the observer tracks: per watched identity, when each node first
 * learned of it (joins) or first held it Down (failures). */
typedef struct watch {
    uint32_t ident;
    int64_t origin;      /* fault injected / joiner started */
    int64_t first;       /* first node to learn / declare */
    int64_t *seen;       /* per node, NEVER until seen */
    size_t nseen;
    size_t nodes_then; /* nodes that existed when it began: the ones measured */
    bool failure;        /* else a join */
} watch_t;

typedef struct run {
    sim_world_t *w;
    watch_t *watches;
    size_t nwatches;
    int32_t *watch_of; /* ident -> watch index + 1 */
    size_t watch_cap;
    size_t false_deaths;
    bool *falsely_dead; /* by ident */
    size_t fd_cap;
} run_t;

static void observe(void *ud, size_t node, uint32_t ident, int old_status, int old_live,
                    int status, int live)
{
    (void)old_live;
    (void)live;
    run_t *r = ud;
    int64_t now = sim_now(r->w);
    bool died = status >= UKKO_MEMBER_DOWN && old_status < UKKO_MEMBER_DOWN && old_status >= 0 &&
                old_status != UKKO_MEMBER_EXITING;
    if (died) {
        size_t victim = sim_node_of(r->w, ident);
        if (victim != SIZE_MAX && !sim_crashed(r->w, victim) && ident < r->fd_cap &&
            !r->falsely_dead[ident]) {
            r->falsely_dead[ident] = true;
            r->false_deaths++;
            if (getenv("UKKO_SIM_DEBUG"))
                fprintf(stderr, "false death t=%lld observer=%zu victim=%zu paused=%d\n",
                        (long long)now, node, victim, sim_paused(r->w, victim));
        }
    }
    if (ident >= r->watch_cap || !r->watch_of[ident])
        return;
    watch_t *wt = &r->watches[r->watch_of[ident] - 1];
    bool hit = wt->failure ? died : old_status == -1;
    if (!hit || node >= wt->nseen || wt->seen[node] != NEVER)
        return;
    wt->seen[node] = now;
    if (wt->first == NEVER)
        wt->first = now;
}

static void watch(run_t *r, uint32_t ident, bool failure)
{
    r->watches = realloc(r->watches, (r->nwatches + 1) * sizeof(watch_t));
    if (!r->watches)
        abort();
    watch_t *wt = &r->watches[r->nwatches++];
    memset(wt, 0, sizeof(*wt));
    wt->ident = ident;
    wt->origin = sim_now(r->w);
    wt->first = NEVER;
    wt->failure = failure;
    wt->nodes_then = sim_count(r->w);
    wt->nseen = 20000 + sim_count(r->w);
    wt->seen = malloc(wt->nseen * sizeof(int64_t));
    if (!wt->seen)
        abort();
    for (size_t i = 0; i < wt->nseen; i++)
        wt->seen[i] = NEVER;
    if (ident >= r->watch_cap) {
        size_t ncap = ident * 2 + 1024;
        r->watch_of = realloc(r->watch_of, ncap * sizeof(int32_t));
        if (!r->watch_of)
            abort();
        memset(r->watch_of + r->watch_cap, 0, (ncap - r->watch_cap) * sizeof(int32_t));
        r->watch_cap = ncap;
    }
    r->watch_of[ident] = (int32_t)r->nwatches;
}

typedef struct cfg {
    size_t nodes;
    uint64_t seed;
    double loss;
    const char *scenario;
} cfg_t;

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint64_t total_bytes(sim_world_t *w)
{
    uint64_t b = 0;
    for (size_t i = 0; i < sim_count(w); i++)
        b += sim_bytes_out(w, i);
    return b;
}

static void report(const cfg_t *c, const char *name, run_t *r, double rest_bps, int64_t horizon,
                   double wall, const char *extra)
{
    samples_t dis = {0}, det = {0};
    size_t missing = 0;
    for (size_t k = 0; k < r->nwatches; k++) {
        watch_t *wt = &r->watches[k];
        size_t victim = sim_node_of(r->w, wt->ident);
        for (size_t i = 0; i < sim_count(r->w); i++) {
            if (i == victim || sim_crashed(r->w, i))
                continue;
            if (i >= wt->nodes_then)
                continue;
            if (wt->seen[i] == NEVER) {
                missing++;
                if (wt->first != NEVER)
                    add(&dis, (double)(horizon - wt->first) / 1000.0);
                if (wt->failure)
                    add(&det, (double)(horizon - wt->origin) / 1000.0);
                continue;
            }
            if (wt->first != NEVER)
                add(&dis, (double)(wt->seen[i] - wt->first) / 1000.0);
            if (wt->failure)
                add(&det, (double)(wt->seen[i] - wt->origin) / 1000.0);
        }
    }
    printf("{\"scenario\":\"%s\",\"nodes\":%zu,\"seed\":%llu,\"loss\":%.4f", name, c->nodes,
           (unsigned long long)c->seed, c->loss);
    json_num("dissemination_p50_s", pct(&dis, 0.50));
    json_num("dissemination_p99_s", pct(&dis, 0.99));
    json_num("dissemination_p9999_s", pct(&dis, 0.9999));
    json_num("detection_p50_s", pct(&det, 0.50));
    json_num("detection_p99_s", pct(&det, 0.99));
    printf(",\"false_deaths\":%zu", r->false_deaths);
    json_num("bytes_per_node_per_s", rest_bps);
    printf(",\"never_reached\":%zu,\"events\":%llu", missing,
           (unsigned long long)sim_events(r->w));
    json_num("wall_s", wall);
    printf("%s}\n", extra ? extra : "");
    fflush(stdout);
    free(dis.v);
    free(det.v);
}

static void run_free(run_t *r)
{
    for (size_t k = 0; k < r->nwatches; k++)
        free(r->watches[k].seen);
    free(r->watches);
    free(r->watch_of);
    free(r->falsely_dead);
    sim_free(r->w);
}

/* A converged cluster of n, then WARM seconds at rest; returns the bytes
 * per node per second measured over the second half of the warm-up. */
#define WARM_MS 20000

static double setup(run_t *r, const cfg_t *c, bool prefill)
{
    memset(r, 0, sizeof(*r));
    sim_opts_t o;
    sim_opts_default(&o);
    o.seed = c->seed;
    o.loss = c->loss;
    cluster__params_t p;
    cluster__params_default(&p);
    r->w = sim_new(&o, &p);
    r->fd_cap = c->nodes * 4 + 20000;
    r->falsely_dead = calloc(r->fd_cap, 1);
    sim_observe(r->w, observe, r);
    size_t seeds[3] = {0, 1, 2};
    for (size_t i = 0; i < c->nodes; i++)
        sim_add_node(r->w, seeds, c->nodes < 3 ? c->nodes : 3);
    if (!prefill)
        return NAN;
    sim_prefill(r->w, c->nodes);
    int64_t t0 = sim_now(r->w);
    sim_run_until(r->w, t0 + WARM_MS / 2);
    uint64_t b0 = total_bytes(r->w);
    sim_run_until(r->w, t0 + WARM_MS);
    uint64_t b1 = total_bytes(r->w);
    return (double)(b1 - b0) / (double)c->nodes / (WARM_MS / 2000.0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pick(size_t n, size_t k, size_t *out)
{
    for (size_t i = 0; i < k; i++) {
        bool dup;
        do {
            /* never a seed: they stay for later joins */
            out[i] = 3 + (size_t)(rnd() % (uint64_t)(n - 3));
            dup = false;
            for (size_t j = 0; j < i; j++)
                dup = dup || out[j] == out[i];
        } while (dup);
    }
}

static void scenario_failure(const cfg_t *c, const char *name, bool kernel)
{
    double t = now_s();
    run_t r;
    double bps = setup(&r, c, true);
    size_t k = c->nodes / 100 ? c->nodes / 100 : 1;
    if (k > 20)
        k = 20;
    size_t *victims = calloc(k, sizeof(size_t));
    pick(c->nodes, k, victims);
    for (size_t i = 0; i < k; i++) {
        watch(&r, sim_ident(r.w, victims[i]), true);
        sim_crash(r.w, victims[i], kernel);
    }
    int64_t end = sim_now(r.w) + 60000;
    sim_run_until(r.w, end);
    char extra[64];
    snprintf(extra, sizeof(extra), ",\"failed\":%zu", k);
    report(c, name, &r, bps, end, now_s() - t, extra);
    free(victims);
    run_free(&r);
}

static void scenario_join(const cfg_t *c)
{
    double t = now_s();
    run_t r;
    double bps = setup(&r, c, true);
    size_t seeds[3] = {0, 1, 2};
    samples_t up = {0};
    for (int j = 0; j < 5; j++) {
        size_t i = sim_add_node(r.w, seeds, 3);
        watch(&r, sim_ident(r.w, i), false);
        int64_t start = sim_now(r.w);
        sim_start_node(r.w, i);
        int64_t end = start + 8000;
        while (sim_now(r.w) < end) {
            sim_run_until(r.w, sim_now(r.w) + 100);
            if (cluster__mship_self_status(sim_mship(r.w, i)) == UKKO_MEMBER_UP) {
                add(&up, (double)(sim_now(r.w) - start) / 1000.0);
                break;
            }
        }
        sim_run_until(r.w, end);
    }
    char extra[128];
    snprintf(extra, sizeof(extra), ",\"joined\":5,\"self_up_p50_s\":%.3f", pct(&up, 0.5));
    report(c, "join", &r, bps, sim_now(r.w), now_s() - t, extra);
    free(up.v);
    run_free(&r);
}

static void scenario_pause(const cfg_t *c)
{
    double t = now_s();
    run_t r;
    double bps = setup(&r, c, true);
    size_t k = c->nodes / 10 ? c->nodes / 10 : 1;
    int64_t t0 = sim_now(r.w);
    /* 10% of the nodes each stop for 2 s, at random times over 10 s. */
    size_t *who = calloc(k, sizeof(size_t));
    int64_t *when = calloc(k, sizeof(int64_t));
    pick(c->nodes, k, who);
    for (size_t i = 0; i < k; i++)
        when[i] = t0 + (int64_t)(rnd() % 10000);
    for (int64_t now = t0; now < t0 + 10000; now += 10) {
        sim_run_until(r.w, now);
        for (size_t i = 0; i < k; i++)
            if (when[i] > now - 10 && when[i] <= now)
                sim_pause(r.w, who[i], when[i] + 2000);
    }
    int64_t end = t0 + 40000;
    sim_run_until(r.w, end);
    char extra[64];
    snprintf(extra, sizeof(extra), ",\"paused\":%zu,\"pause_s\":2", k);
    report(c, "pause", &r, bps, end, now_s() - t, extra);
    free(who);
    free(when);
    run_free(&r);
}

static void scenario_partition(const cfg_t *c)
{
    double t = now_s();
    run_t r;
    double bps = setup(&r, c, true);
    size_t k = c->nodes / 10 ? c->nodes / 10 : 1;
    size_t *who = calloc(k, sizeof(size_t));
    pick(c->nodes, k, who);
    for (size_t i = 0; i < k; i++)
        sim_set_group(r.w, who[i], 1);
    /* One way: the 10% still hear the rest, but nothing of theirs gets
     * through, for 3 s (shorter than a suspicion). */
    sim_block(r.w, 1, 0, true);
    int64_t t0 = sim_now(r.w);
    sim_run_until(r.w, t0 + 3000);
    sim_block(r.w, 1, 0, false);
    int64_t end = t0 + 40000;
    sim_run_until(r.w, end);
    char extra[80];
    snprintf(extra, sizeof(extra), ",\"cut_off\":%zu,\"one_way_s\":3", k);
    report(c, "partition", &r, bps, end, now_s() - t, extra);
    free(who);
    run_free(&r);
}

static void scenario_cold(const cfg_t *c)
{
    double t = now_s();
    run_t r;
    setup(&r, c, false);
    int64_t t0 = sim_now(r.w);
    /* Every node starts within 1 s, in random order, the seeds first. */
    int64_t *start = calloc(c->nodes, sizeof(int64_t));
    for (size_t i = 0; i < c->nodes; i++)
        start[i] = t0 + (i < 3 ? 0 : (int64_t)(rnd() % 1000));
    size_t watched = 0;
    for (int64_t now = t0; now <= t0 + 1000; now += 5) {
        sim_run_until(r.w, now);
        for (size_t i = 0; i < c->nodes; i++) {
            if (start[i] > now - 5 && start[i] <= now) {
                if (watched < 100 && i >= 3 && rnd() % 4 == 0) {
                    watch(&r, sim_ident(r.w, i), false);
                    watched++;
                }
                sim_start_node(r.w, i);
            }
        }
    }
    /* converged: every node holds every node Up */
    int64_t converged = NEVER, limit = t0 + 120000;
    while (sim_now(r.w) < limit) {
        sim_run_until(r.w, sim_now(r.w) + 250);
        bool all = true;
        for (size_t i = 0; i < c->nodes && all; i++) {
            cluster__mship_t *m = sim_mship(r.w, i);
            if (cluster__mship_count(m) != c->nodes ||
                cluster__mship_self_status(m) != UKKO_MEMBER_UP) {
                all = false;
                break;
            }
            for (size_t k = 0; k < cluster__mship_count(m) && all; k++)
                all = cluster__mship_at(m, k)->status == UKKO_MEMBER_UP;
        }
        if (all) {
            converged = sim_now(r.w);
            break;
        }
    }
    /* at rest: once the news of the start has drained */
    sim_run_until(r.w, sim_now(r.w) + 20000);
    int64_t b0t = sim_now(r.w);
    uint64_t b0 = total_bytes(r.w);
    sim_run_until(r.w, b0t + 10000);
    double bps = (double)(total_bytes(r.w) - b0) / (double)c->nodes / 10.0;
    char extra[96];
    if (converged == NEVER)
        snprintf(extra, sizeof(extra), ",\"all_up_s\":null");
    else
        snprintf(extra, sizeof(extra), ",\"all_up_s\":%.3f", (double)(converged - t0) / 1000.0);
    report(c, "cold-join", &r, bps, sim_now(r.w), now_s() - t, extra);
    free(start);
    run_free(&r);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: ukko-sim --nodes N --scenario NAME [--seed S] [--loss P]\n"
            "  scenarios: cold-join, join, crash (silent host), kill (process gone,\n"
            "  kernel refuses), pause (10%% of nodes stopped 2 s), partition (10%% cut\n"
            "  off one way for 3 s), split-brain (40%% cut off both ways), split-tie\n"
            "  (half and half), split-one-way (40%% cannot send), split-reject (40%%\n"
            "  cut off by a firewall that refuses), split-flap (the cut\n"
            "  goes for 1.5 s and comes back for 0.7 s, for 60 s), split-flap-long (6 s\n"
            "  cut, 0.2 s up), slow (50-700 ms delay, 5%% loss or --loss),\n"
            "  all. One JSON line per scenario on stdout.\n");
}

int main(int argc, char **argv)
{
    cfg_t c = {.nodes = 100, .seed = 1, .loss = 0, .scenario = "all"};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--nodes") && v)
            c.nodes = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed") && v)
            c.seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--loss") && v)
            c.loss = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--scenario") && v)
            c.scenario = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (c.nodes < 5 || c.nodes > 100000 || c.loss < 0 || c.loss >= 1) {
        fprintf(stderr, "ukko-sim: --nodes from 5 to 100000, --loss in [0, 1)\n");
        return 2;
    }
    ukko_log_setup(getenv("UKKO_SIM_DEBUG") ? UKKO_LOG_DEBUG : UKKO_LOG_OFF, UKKO_LOG_TEXT);
    rng_state = c.seed * 0x9e3779b97f4a7c15ULL + 12345;
    bool all = !strcmp(c.scenario, "all"), any = false;
    if (all || !strcmp(c.scenario, "cold-join"))
        scenario_cold(&c), any = true;
    if (all || !strcmp(c.scenario, "join"))
        scenario_join(&c), any = true;
    if (all || !strcmp(c.scenario, "crash"))
        scenario_failure(&c, "crash", false), any = true;
    if (all || !strcmp(c.scenario, "kill"))
        scenario_failure(&c, "kill", true), any = true;
    if (all || !strcmp(c.scenario, "pause"))
        scenario_pause(&c), any = true;
    if (all || !strcmp(c.scenario, "partition"))
        scenario_partition(&c), any = true;
    if (sim_split_run(c.scenario, c.nodes, c.seed, c.loss))
        any = true;
    if (!any) {
        usage();
        return 2;
    }
    return 0;
}
