/* bench_actors: the actor runtime against CAF 0.17 and Erlang/OTP, side by
 * side in one run on the same machine, on two workloads:
 *   flood     one sender actor, one receiver, N small messages: messages/s;
 *   ping-pong P pairs bouncing one message M times each: round trips/s.
 * The peers' programs (tests/bench/peers/) run the same workloads the same
 * way (an actor sends in batches of 1000 then messages itself to go on; the
 * Erlang sender is a plain tail-recursive loop). Prints a line per figure
 * and ends with one JSON object.
 * Usage: bench-actors [--ukko-only] [--messages N] [--pairs P] [--roundtrips M]
 *                     [--throughput T (default dispatcher; default: the built-in 5)] */
#include "ukko.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define T_GO 1
#define T_MSG 2
#define T_PING 3
#define BATCH 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The end of a run, signalled by the last handler (non-blocking for it). */
typedef struct done {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int left;
} done_t;

static void done_one(done_t *d)
{
    pthread_mutex_lock(&d->lock);
    if (--d->left == 0)
        pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static void done_wait(done_t *d)
{
    pthread_mutex_lock(&d->lock);
    while (d->left > 0)
        pthread_cond_wait(&d->cond, &d->lock);
    pthread_mutex_unlock(&d->lock);
}

/* ------------------------------------------------------------ flood */

/* sent and got are written by different threads: separate cache lines. */
typedef struct flood {
    ukko_actor_t *receiver;
    int64_t n;
    done_t done;
    _Alignas(64) int64_t sent;
    _Alignas(64) int64_t got;
} flood_t;

static int ptr_init(ukko_actor_ctx_t *ctx, void *state, void *arg)
{
    (void)ctx;
    *(void **)state = arg;
    return 0;
}

static int sender_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)msg;
    flood_t *f = *(flood_t **)state;
    int64_t end = f->sent + BATCH < f->n ? f->sent + BATCH : f->n;
    for (; f->sent < end; f->sent++)
        ukko_actor_send(f->receiver, T_MSG, &f->sent, sizeof(f->sent));
    if (f->sent < f->n)
        return ukko_actor_send(ukko_actor_self(ctx), T_GO, NULL, 0);
    return 0;
}

static int receiver_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    flood_t *f = *(flood_t **)state;
    if (++f->got == f->n)
        done_one(&f->done);
    return 0;
}

static double run_flood(ukko_actor_system_t *sys, int64_t n)
{
    static const ukko_behaviour_t sender = {.state_size = sizeof(void *), .init = ptr_init,
                                            .handle = sender_handle};
    static const ukko_behaviour_t receiver = {.state_size = sizeof(void *), .init = ptr_init,
                                              .handle = receiver_handle};
    flood_t f = {.n = n, .done = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1}};
    ukko_actor_t *s = NULL;
    ukko_spawn_opts_t o = {.arg = &f, .name = "flood-receiver"};
    if (ukko_actor_spawn(sys, &receiver, &o, &f.receiver) < 0)
        return -1;
    o.name = "flood-sender";
    if (ukko_actor_spawn(sys, &sender, &o, &s) < 0)
        return -1;
    double t0 = now_s();
    ukko_actor_send(s, T_GO, NULL, 0);
    done_wait(&f.done);
    double t = now_s() - t0;
    ukko_actor_stop(s);
    ukko_actor_stop(f.receiver);
    ukko_actor_release(s);
    ukko_actor_release(f.receiver);
    return (double)n / t;
}

/* ------------------------------------------------------------ ping-pong */

typedef struct player {
    ukko_actor_t *peer;
    int64_t left; /* round trips still to start (the server side: unused) */
    done_t *done;
} player_t;

static int player_handle(ukko_actor_ctx_t *ctx, void *state, const ukko_msg_t *msg)
{
    (void)ctx;
    player_t *p = *(player_t **)state;
    if (p->left < 0) /* the server side bounces every ping */
        return ukko_actor_send(p->peer, T_PING, msg->data, msg->len);
    if (msg->type == T_PING && --p->left == 0) { /* a pong: one round trip done */
        done_one(p->done);
        return 0;
    }
    return ukko_actor_send(p->peer, T_PING, msg->data, msg->len); /* T_GO starts */
}

static double run_pingpong(ukko_actor_system_t *sys, int pairs, int64_t m)
{
    static const ukko_behaviour_t player = {.state_size = sizeof(void *), .init = ptr_init,
                                            .handle = player_handle};
    done_t done = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, pairs};
    player_t *pl = calloc((size_t)pairs * 2, sizeof(*pl));
    ukko_actor_t **a = calloc((size_t)pairs * 2, sizeof(*a));
    for (int i = 0; i < pairs * 2; i++) {
        pl[i].left = i % 2 ? -1 : m;
        pl[i].done = &done;
        ukko_spawn_opts_t o = {.arg = &pl[i]};
        if (ukko_actor_spawn(sys, &player, &o, &a[i]) < 0)
            return -1;
    }
    /* Peers are set before any message flows; the first send publishes them. */
    for (int i = 0; i < pairs; i++) {
        pl[2 * i].peer = a[2 * i + 1];
        pl[2 * i + 1].peer = a[2 * i];
    }
    double t0 = now_s();
    int64_t ball = 0;
    for (int i = 0; i < pairs; i++)
        ukko_actor_send(a[2 * i], T_GO, &ball, sizeof(ball));
    done_wait(&done);
    double t = now_s() - t0;
    for (int i = 0; i < pairs * 2; i++) {
        ukko_actor_stop(a[i]);
        ukko_actor_release(a[i]);
    }
    free(a);
    free(pl);
    return (double)pairs * (double)m / t;
}

/* ------------------------------------------------------------ peers */

/* Runs a peer program and reads its last line's two figures. */
static int run_peer(const char *cmd, double *flood, double *rt)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[1024], last[1024] = "";
    while (fgets(line, sizeof(line), p))
        if (line[0] == '{')
            snprintf(last, sizeof(last), "%s", line);
    int st = pclose(p);
    const char *f = strstr(last, "\"flood_msgs_per_s\":");
    const char *r = strstr(last, "\"roundtrips_per_s\":");
    if (st != 0 || !f || !r)
        return -1;
    *flood = atof(f + strlen("\"flood_msgs_per_s\":"));
    *rt = atof(r + strlen("\"roundtrips_per_s\":"));
    return 0;
}

static void json_num(char *out, size_t n, double v)
{
    if (v < 0)
        snprintf(out, n, "null");
    else
        snprintf(out, n, "%.0f", v);
}

static void json_ratio(char *out, size_t n, double a, double b)
{
    if (a < 0 || b <= 0)
        snprintf(out, n, "null");
    else
        snprintf(out, n, "%.2f", a / b);
}

int main(int argc, char **argv)
{
    bool ukko_only = false;
    int64_t n = 10000000, m = 250000;
    int pairs = 4, throughput = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ukko-only"))
            ukko_only = true;
        else if (!strcmp(argv[i], "--messages") && i + 1 < argc)
            n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--roundtrips") && i + 1 < argc)
            m = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--pairs") && i + 1 < argc)
            pairs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--throughput") && i + 1 < argc)
            throughput = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench-actors [--ukko-only] [--messages N] [--pairs P] "
                    "[--roundtrips M per pair] [--throughput T]\n");
            return 2;
        }
    }
    ukko_log_setup(UKKO_LOG_WARN, UKKO_LOG_TEXT);
    /* The default dispatcher as configured out of the box (one thread per
     * core, throughput 5), but no starvation warnings for the long sender. */
    char conf[256];
    if (throughput > 0)
        snprintf(conf, sizeof(conf),
                 "{\"starvation-threshold\": \"1h\", \"default\": {\"throughput\": %d}}",
                 throughput);
    else
        snprintf(conf, sizeof(conf), "{\"starvation-threshold\": \"1h\"}");
    ukko_actor_config_t ac = {.dispatchers = cJSON_Parse(conf)};
    ukko_actor_system_t *sys = NULL;
    if (ukko_actor_system_new(&ac, NULL, &sys) < 0) {
        fprintf(stderr, "bench-actors: cannot start the actor system\n");
        return 1;
    }
    cJSON_Delete(ac.dispatchers);
    double uf = run_flood(sys, n);
    printf("ukko   flood     %12.0f msgs/s      (%lld messages, 1 sender -> 1 actor)\n", uf,
           (long long)n);
    fflush(stdout);
    double ur = run_pingpong(sys, pairs, m);
    printf("ukko   ping-pong %12.0f round trips/s (%d pairs x %lld)\n", ur, pairs, (long long)m);
    fflush(stdout);
    ukko_actor_system_free(sys);

    double cf = -1, cr = -1, ef = -1, er = -1;
    if (!ukko_only) {
        /* The peers are optional: the build defines where they are only when
         * it found them, so one code path serves both builds (-Werror clean). */
#ifdef CAF_BENCH
        const char *caf = CAF_BENCH;
#else
        const char *caf = NULL;
#endif
#ifdef ERL_BEAM_DIR
        const char *erl = ERL_BEAM_DIR;
#else
        const char *erl = NULL;
#endif
        char cmd[2048];
        if (caf) {
            snprintf(cmd, sizeof(cmd), "%s %lld %d %lld", caf, (long long)n, pairs, (long long)m);
            if (run_peer(cmd, &cf, &cr) < 0)
                fprintf(stderr, "bench-actors: the CAF peer failed (%s)\n", cmd);
            else
                printf("caf    flood     %12.0f msgs/s\ncaf    ping-pong %12.0f round trips/s\n", cf, cr);
        } else {
            fprintf(stderr, "bench-actors: skipped CAF: built without it "
                            "(scripts/install-deps.sh --bench, then reconfigure)\n");
        }
        if (erl) {
            snprintf(cmd, sizeof(cmd), "erl -noshell -pa %s -run erl_bench main %lld %d %lld", erl,
                     (long long)n, pairs, (long long)m);
            if (run_peer(cmd, &ef, &er) < 0)
                fprintf(stderr, "bench-actors: the Erlang peer failed (%s)\n", cmd);
            else
                printf("erlang flood     %12.0f msgs/s\nerlang ping-pong %12.0f round trips/s\n", ef, er);
        } else {
            fprintf(stderr, "bench-actors: skipped Erlang: built without it "
                            "(scripts/install-deps.sh --bench, then reconfigure)\n");
        }
        fflush(stdout);
    }
    double bf = cf > ef ? cf : ef, br = cr > er ? cr : er;
    char s[10][32];
    json_num(s[0], 32, uf);
    json_num(s[1], 32, ur);
    json_num(s[2], 32, cf);
    json_num(s[3], 32, cr);
    json_num(s[4], 32, ef);
    json_num(s[5], 32, er);
    json_ratio(s[6], 32, uf, bf);
    json_ratio(s[7], 32, ur, br);
    printf("{\"flood_msgs_per_s\":%s,\"roundtrips_per_s\":%s,\"messages\":%lld,\"pairs\":%d,"
           "\"roundtrips_per_pair\":%lld,\"caf_flood_msgs_per_s\":%s,\"caf_roundtrips_per_s\":%s,"
           "\"erlang_flood_msgs_per_s\":%s,\"erlang_roundtrips_per_s\":%s,"
           "\"flood_ratio_vs_best_peer\":%s,\"roundtrips_ratio_vs_best_peer\":%s}\n",
           s[0], s[1], (long long)n, pairs, (long long)m, s[2], s[3], s[4], s[5], s[6], s[7]);
    return 0;
}
