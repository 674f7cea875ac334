/* bench_startup: time from exec to the first GET /alive 200, and resident
 * memory when idle, for `ukko run` and, side by side in the same run, for the
 * smallest JVM HTTP server (tests/bench/peers/AliveServer.java), the floor of
 * any Pekko node. Prints a table and ends with one JSON line.
 * Usage: bench_startup [--runs N] [--ukko-only] */
#include "ukko_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOST "127.0.0.30"
#define PORT 8558

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* field: "VmRSS:" (all resident pages, shared libraries included, what a
 * container is charged) or "RssAnon:" (the process's own memory). */
static double status_mib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    double kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, strlen(field)))
            kb = atof(line + strlen(field));
    if (f)
        fclose(f);
    return kb / 1024.0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double p50_ms, p90_ms, rss_mib, anon_mib;
    int runs;
} result_t;

/* Starts argv, polls /alive as fast as a kubelet-like client could, records
 * the time to the first 200, then the idle RSS after settle_ms. */
static int measure(const char *const argv[], const char *const env[], int runs, int settle_ms,
                   result_t *r)
{
    double *t = calloc((size_t)runs, sizeof(double));
    double rss = 0, anon = 0;
    int ok = 0;
    for (int i = 0; i < runs; i++) {
        double t0 = now_us();
        pid_t pid = ut_spawn(argv, env, "/dev/null");
        bool up = false;
        while (now_us() - t0 < 30e6) {
            int fd = ut_connect(HOST, PORT, 1000);
            if (fd >= 0) {
                const char req[] = "GET /alive HTTP/1.1\r\nHost: b\r\n\r\n";
                if (ut_send_all(fd, req, sizeof(req) - 1) == 0 &&
                    ut_read_response(fd, NULL, 2000) == 200)
                    up = true;
                close(fd);
                if (up)
                    break;
            }
            usleep(200);
        }
        double took = (now_us() - t0) / 1000.0;
        if (up) {
            t[ok++] = took;
            if (i == runs - 1 || i == 0) {
                usleep((useconds_t)settle_ms * 1000);
                rss = status_mib(pid, "VmRSS:");
                anon = status_mib(pid, "RssAnon:");
            }
        }
        ut_stop(pid, SIGTERM, 10000);
    }
    if (!ok) {
        free(t);
        return -1;
    }
    qsort(t, (size_t)ok, sizeof(double), cmp);
    r->p50_ms = t[ok / 2];
    r->p90_ms = t[(ok * 9) / 10 < ok ? (ok * 9) / 10 : ok - 1];
    r->rss_mib = rss;
    r->anon_mib = anon;
    r->runs = ok;
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = 20;
    bool ukko_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ukko-only"))
            ukko_only = true;
    }
    result_t u = {0}, j = {0};
    const char *uargv[] = {UKKO_BIN, "run", NULL};
    const char *uenv[] = {"UKKO_MANAGEMENT_HOSTNAME=" HOST, "UKKO_LOG_LEVEL=warn", NULL};
    if (measure(uargv, uenv, runs, 1000, &u) < 0) {
        fprintf(stderr, "bench_startup: ukko never answered /alive on %s:%d\n", HOST, PORT);
        return 1;
    }
    printf("%-28s %10s %10s %10s %10s %6s\n", "server", "p50 ms", "p90 ms", "RSS MiB", "anon MiB",
           "runs");
    printf("%-28s %10.2f %10.2f %10.2f %10.2f %6d\n", "ukko run", u.p50_ms, u.p90_ms, u.rss_mib,
           u.anon_mib, u.runs);

    bool have_jvm = false;
    char classes[] = "/tmp/ukko-bench-jvm-XXXXXX";
    if (!ukko_only && mkdtemp(classes)) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "javac -d %s %s/tests/bench/peers/AliveServer.java", classes,
                 UKKO_SOURCE_DIR);
        if (ut_run("command -v java && command -v javac", NULL, NULL) == 0 &&
            ut_run(cmd, NULL, NULL) == 0) {
            char java[512];
            snprintf(java, sizeof(java), "%s", "/usr/bin/java");
            ukko_buf_t w;
            ukko_buf_init(&w, 0);
            if (ut_run("command -v java", NULL, &w) == 0 && w.data) {
                w.data[strcspn(w.data, "\n")] = '\0';
                snprintf(java, sizeof(java), "%s", w.data);
            }
            ukko_buf_destroy(&w);
            const char *jargv[] = {java, "-cp", classes, "AliveServer", HOST, "8558", NULL};
            int jruns = runs < 5 ? runs : 5;
            have_jvm = measure(jargv, NULL, jruns, 1000, &j) == 0;
            if (have_jvm)
                printf("%-28s %10.2f %10.2f %10.2f %10.2f %6d\n", "JVM AliveServer (floor)",
                       j.p50_ms, j.p90_ms, j.rss_mib, j.anon_mib, j.runs);
        } else {
            printf("(no java/javac here: the JVM side is skipped)\n");
        }
        snprintf(cmd, sizeof(cmd), "rm -rf %s", classes);
        ut_run(cmd, NULL, NULL);
    }
    printf("goal: ukko under 20 ms to /alive and under 8 MiB idle: %s\n",
           u.p50_ms < 20 && u.rss_mib < 8 ? "met" : "NOT met");
    printf("{\"bench\":\"startup\",\"ukko_alive_p50_ms\":%.2f,\"ukko_alive_p90_ms\":%.2f,"
           "\"ukko_idle_rss_mib\":%.2f,\"ukko_idle_anon_mib\":%.2f,\"runs\":%d",
           u.p50_ms, u.p90_ms, u.rss_mib, u.anon_mib, u.runs);
    if (have_jvm)
        printf(",\"jvm_alive_p50_ms\":%.2f,\"jvm_idle_rss_mib\":%.2f,"
               "\"startup_ratio_jvm_over_ukko\":%.1f,\"rss_ratio_jvm_over_ukko\":%.1f",
               j.p50_ms, j.rss_mib, j.p50_ms / u.p50_ms, j.rss_mib / u.rss_mib);
    printf("}\n");
    return 0;
}
