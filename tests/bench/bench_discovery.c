/* bench_discovery: Kubernetes-API discovery of 100, 1,000 and 10,000 pods
 * against the emulator (tests/emulator/kube_api_emulator.py --generate-pods N):
 * for each size, lookups through the library on a libev loop (whole lookup
 * and parse time, best and median) and `ukko discover --once` as a process
 * (wall time and peak RSS); the bench's own peak RSS after each size. Prints
 * one line of figures per size and ends with ONE JSON line. Goal (issue 3):
 * 10,000 pods parsed in under 50 ms. Not a test: it asserts nothing.
 *   bench_discovery [--rounds N]   (needs python3 and openssl, as the tests) */
#include "discovery.h"
#include "ukko_test.h"

#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long vm_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, n))
            v = atol(line + n);
    if (f)
        fclose(f);
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct got {
    int done;
    int status;
    size_t n;
    int64_t took_ms, parse_us;
    char error[512];
} got_t;

static void on_result(ukko_discovery_t *d, const ukko_discovery_result_t *res, void *ud)
{
    (void)d;
    got_t *g = ud;
    g->done = 1;
    g->status = res->status;
    g->n = res->points->n;
    g->took_ms = res->took_ms;
    g->parse_us = res->parse_us;
    snprintf(g->error, sizeof(g->error), "%s", res->error ? res->error : "");
}

typedef struct figures {
    int pods;
    size_t points;
    double lookup_best_ms, lookup_median_ms, parse_best_ms, parse_median_ms, parse_first_ms;
    double cli_ms;
    long cli_maxrss_kib, bench_hwm_kib;
    int failures;
} figures_t;

/* `ukko discover --once` as an operator runs it: wall time and peak RSS. */
static void run_cli(const ut_emulator_t *em, figures_t *fg)
{
    char url[128], ca[900], tok[900], ns[900];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", em->port);
    snprintf(ca, sizeof(ca), "%s/ca.crt", em->dir);
    snprintf(tok, sizeof(tok), "%s/token", em->dir);
    snprintf(ns, sizeof(ns), "%s/namespace", em->dir);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        setenv("UKKO_DISCOVERY_KUBERNETES_API_API_SERVER", url, 1);
        setenv("UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH", ca, 1);
        setenv("UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH", tok, 1);
        setenv("UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE_PATH", ns, 1);
        setenv("UKKO_DISCOVERY_KUBERNETES_API_RESOLVE_TIMEOUT", "60s", 1);
        execl(UKKO_BIN, UKKO_BIN, "discover", "--once", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    if (pid > 0)
        wait4(pid, &status, 0, &ru);
    fg->cli_ms = (now_s() - t0) * 1000;
    fg->cli_maxrss_kib = ru.ru_maxrss;
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fg->failures++;
}

static int bench_size(int pods, int rounds, figures_t *fg)
{
    memset(fg, 0, sizeof(*fg));
    fg->pods = pods;
    char n[16];
    snprintf(n, sizeof(n), "%d", pods);
    ut_emulator_t em;
    const char *extra[] = {"--generate-pods", n, NULL};
    if (ut_emulator_start(&em, NULL, extra) < 0)
        return -1;

    ukko_config_t *cfg = ukko_config_new();
    ukko_discovery_config_t dc;
    ukko_discovery_config_register(cfg, &dc);
    char e[4][1024];
    snprintf(e[0], sizeof(e[0]), "UKKO_DISCOVERY_KUBERNETES_API_API_SERVER=https://127.0.0.1:%d",
             em.port);
    snprintf(e[1], sizeof(e[1]), "UKKO_DISCOVERY_KUBERNETES_API_API_CA_PATH=%s/ca.crt", em.dir);
    snprintf(e[2], sizeof(e[2]), "UKKO_DISCOVERY_KUBERNETES_API_API_TOKEN_PATH=%s/token", em.dir);
    snprintf(e[3], sizeof(e[3]), "UKKO_DISCOVERY_KUBERNETES_API_POD_NAMESPACE_PATH=%s/namespace",
             em.dir);
    char *env[] = {e[0], e[1], e[2], e[3], "UKKO_DISCOVERY_KUBERNETES_API_RESOLVE_TIMEOUT=60s",
                   NULL};
    int rc = -1;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ukko_discovery_t *d = NULL;
    if (ukko_config_load(cfg, NULL, env) != 0 || !(d = ukko_discovery_new(&dc, loop, 8558)))
        goto out;
    double took[MAX_ROUNDS], parse[MAX_ROUNDS];
    int ok = 0;
    for (int r = 0; r < rounds; r++) {
        got_t g = {0};
        ukko_discovery_lookup(d, on_result, &g);
        while (!g.done)
            ev_run(loop, EVRUN_ONCE);
        if (g.status < 0) {
            fprintf(stderr, "bench_discovery: lookup of %d pods failed: %s\n", pods, g.error);
            fg->failures++;
            continue;
        }
        fg->points = g.n;
        took[ok] = (double)g.took_ms;
        parse[ok] = (double)g.parse_us / 1000.0;
        if (ok == 0)
            fg->parse_first_ms = parse[0];
        ok++;
    }
    if (ok > 0) {
        qsort(took, (size_t)ok, sizeof(double), cmp_double);
        qsort(parse, (size_t)ok, sizeof(double), cmp_double);
        fg->lookup_best_ms = took[0];
        fg->lookup_median_ms = took[ok / 2];
        fg->parse_best_ms = parse[0];
        fg->parse_median_ms = parse[ok / 2];
    }
    fg->bench_hwm_kib = vm_kib("VmHWM:");
    run_cli(&em, fg);
    rc = 0;
out:
    ukko_discovery_free(d);
    ev_loop_destroy(loop);
    ukko_config_free(cfg);
    ut_emulator_stop(&em);
    return rc;
}

int main(int argc, char **argv)
{
    int rounds = 9;
    if (argc == 3 && !strcmp(argv[1], "--rounds"))
        rounds = atoi(argv[2]);
    if (rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: bench_discovery [--rounds 1..%d]\n", MAX_ROUNDS);
        return 2;
    }
    ukko_log_setup(UKKO_LOG_ERROR, UKKO_LOG_TEXT);
    static const int sizes[] = {100, 1000, 10000};
    figures_t fg[3];
    for (int i = 0; i < 3; i++) {
        if (bench_size(sizes[i], rounds, &fg[i]) < 0) {
            fprintf(stderr, "bench_discovery: the emulator did not start\n");
            return 1;
        }
        printf("%6d pods: %zu points; lookup best %.1f ms median %.1f ms; parse best %.2f ms "
               "median %.2f ms (first %.2f ms); ukko discover --once %.0f ms, peak RSS %ld KiB; "
               "bench peak RSS %ld KiB; failures %d\n",
               fg[i].pods, fg[i].points, fg[i].lookup_best_ms, fg[i].lookup_median_ms,
               fg[i].parse_best_ms, fg[i].parse_median_ms, fg[i].parse_first_ms, fg[i].cli_ms,
               fg[i].cli_maxrss_kib, fg[i].bench_hwm_kib, fg[i].failures);
        fflush(stdout);
    }
    printf("{\"bench\":\"discovery\",\"rounds\":%d,\"sizes\":[", rounds);
    for (int i = 0; i < 3; i++)
        printf("%s{\"pods\":%d,\"points\":%zu,\"lookup_median_ms\":%.1f,\"parse_median_ms\":%.2f,"
               "\"parse_best_ms\":%.2f,\"cli_ms\":%.0f,\"cli_maxrss_kib\":%ld,\"failures\":%d}",
               i ? "," : "", fg[i].pods, fg[i].points, fg[i].lookup_median_ms,
               fg[i].parse_median_ms, fg[i].parse_best_ms, fg[i].cli_ms, fg[i].cli_maxrss_kib,
               fg[i].failures);
    printf("],\"goal_parse_10000_ms\":50,\"parse_10000_median_ms\":%.2f,\"goal_met\":%s}\n",
           fg[2].parse_median_ms, fg[2].parse_median_ms < 50 ? "true" : "false");
    return 0;
}
