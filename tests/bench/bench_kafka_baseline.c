/* bench_kafka_baseline: the anchors ukko's sharded consumer must beat (issue 10),
 * measured with Debian's librdkafka against a real Apache Kafka broker that it
 * starts itself (tests/kafka/broker.sh: KRaft, one node, small heap) and stops at
 * the end, also on Ctrl-C or failure (the rig's watchdog stops it if we die).
 * Figures: producing N keyed records; a bare consumer (assign, no commits) and an
 * at-least-once one (offsets stored after processing, auto-commit 1 s) reading
 * them; a consumer group of 3 member processes (cooperative-sticky, then range)
 * under a steady produce rate (bench_kafka_group.c). Prints figures side by side
 * and ends with ONE JSON line. Not a test: it asserts nothing. See --help. */
#include "bench_kafka.h"
#include "ukko_kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- options ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_kafka_baseline [--records N] [--partitions P] [--size B] [--rate R]\n"
        "                            [--runs K] [--quick] [--bootstrap HOST:PORT]\n"
        "  Starts a real Kafka broker (tests/kafka/broker.sh, KRaft, one node) on " KB_HOST ",\n"
        "  measures librdkafka %s against it and stops it. Figures:\n"
        "  - produce N keyed records of B bytes to P partitions, as fast as the producer goes;\n"
        "  - a bare consumer (rd_kafka_assign of every partition from the beginning, no\n"
        "    commits) and an at-least-once one (enable.auto.offset.store=false,\n"
        "    rd_kafka_offsets_store after each record, auto-commit 1 s) reading them\n"
        "    (median of K runs, after one warm-up read);\n"
        "  - a consumer group (cooperative-sticky, then range) of 3 member processes on a\n"
        "    new topic with P partitions and R records/s produced: when a 4th member\n"
        "    joins and when it leaves again (rd_kafka_consumer_close), the longest gap in\n"
        "    processing of any partition and of the whole group, the duplicates, the\n"
        "    time until the assignment settled, and the worst produce-to-process latency.\n"
        "  --records N    records for the read figures (default 1000000; --quick 50000)\n"
        "  --partitions P partitions (default 12; at most %d)\n"
        "  --size B       record value size in bytes (default 100; at least %d)\n"
        "  --rate R       records/s produced during the group figures (default 5000)\n"
        "  --runs K       measured reads of each consumer, and join-and-leave cycles of\n"
        "                 each group (the worst is reported; default 3, --quick 1)\n"
        "  --quick        small counts and short windows, for a smoke run (< 1 min)\n"
        "  --bootstrap    use a broker that already runs (its version is then not known)\n"
        "Without Java 17, Maven or the jars it prints \"SKIPPED: no real Kafka (why)\" and\n"
        "its JSON line with nulls, and exits 0. Exit 1: a figure could not be measured.\n",
        rd_kafka_version_str(), KB_MAX_PARTS, KB_VALUE_HEAD);
}

static int parse_opts(int argc, char **argv, kb_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick"))
            o->quick = true;
    o->records = o->quick ? 50000 : 1000000;
    o->partitions = 12;
    o->size = 100;
    o->rate = 5000;
    o->runs = o->quick ? 1 : 3;
    o->steady_us = o->quick ? 2000000 : 5000000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        int rc = 0;
        if (!strcmp(a, "--quick"))
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--records")) {
            rc = kb_parse_long("bench_kafka_baseline", a, v, 1, 1000000000L, &x);
            o->records = x;
        } else if (!strcmp(a, "--partitions")) {
            rc = kb_parse_long("bench_kafka_baseline", a, v, 1, KB_MAX_PARTS, &x);
            o->partitions = (int)x;
        } else if (!strcmp(a, "--size")) {
            rc = kb_parse_long("bench_kafka_baseline", a, v, KB_VALUE_HEAD, 1000000, &x);
            o->size = (int)x;
        } else if (!strcmp(a, "--rate")) {
            rc = kb_parse_long("bench_kafka_baseline", a, v, 1, 1000000, &x);
            o->rate = (int)x;
        } else if (!strcmp(a, "--runs")) {
            rc = kb_parse_long("bench_kafka_baseline", a, v, 1, KB_MAX_RUNS, &x);
            o->runs = (int)x;
        } else if (!strcmp(a, "--bootstrap") && v) {
            o->bootstrap = v;
        } else if (!strcmp(a, "--member")) {
            o->member = true;
            rc = kb_parse_long("bench_kafka_baseline", a, v, 0, KB_MAX_MEMBERS - 1, &x);
            o->id = (int)x;
        } else if (!strcmp(a, "--topic") && v) {
            o->topic = v;
        } else if (!strcmp(a, "--group") && v) {
            o->group = v;
        } else if (!strcmp(a, "--strategy") && v) {
            o->strategy = v;
        } else {
            fprintf(stderr, "bench_kafka_baseline: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (rc < 0)
            return -1;
        i++;
    }
    if (o->member && (!o->bootstrap || !o->topic || !o->group || !o->strategy)) {
        fprintf(stderr, "bench_kafka_baseline: --member needs --bootstrap, --topic, --group "
                        "and --strategy\n");
        return -1;
    }
    return 0;
}

/* ---- results ------------------------------------------------------------------ */

typedef struct results {
    char broker[64], bootstrap[256], skipped[512];
    int64_t produced;
    double produce_s;
    double bare_rps[KB_MAX_RUNS], alo_rps[KB_MAX_RUNS];
    int bare_runs, alo_runs;
    int64_t alo_committed;              /* sum of committed offsets after the last run */
    double load_start, load_end;
    kb_gresult_t grp[2];
    int failures;
} results_t;

/* ---- the read figures ------------------------------------------------------------ */

static int produce_all(const char *bootstrap, const char *topic, const kb_opts_t *o, results_t *r)
{
    char why[512], *buf = malloc((size_t)o->size);
    kb_prod_t p;
    int rc = kb_prod_init(&p, bootstrap, topic, o->size, why, sizeof(why));
    if (rc < 0) {
        kb_say("produce: %s", why);
        free(buf);
        return -1;
    }
    int64_t t0 = kb_now_us();
    for (long i = 0; i < o->records && !kb_stop; i++) {
        if (kb_prod_send(&p, (uint64_t)i, buf) < 0)
            break;
        if (i % 1024 == 0)
            rd_kafka_poll(p.rk, 0);
    }
    kb_prod_flush(&p, 120000000);
    r->produce_s = (double)(kb_now_us() - t0) / 1e6;
    r->produced = (int64_t)p.acked;
    if (p.failed || p.acked != (uint64_t)o->records) {
        kb_say("produce: %" PRIu64 " of %ld records acknowledged by %s, %" PRIu64
               " failed (first: %s)", p.acked, o->records, bootstrap, p.failed,
               p.first_error[0] ? p.first_error : "none");
        rc = -1;
    }
    kb_prod_destroy(&p);
    free(buf);
    return rc;
}

/* ---- the broker ------------------------------------------------------------------ */

/* ---- output ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[KB_MAX_RUNS];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (v[i] > 0)
            s[k++] = v[i];
    if (!k)
        return -1;
    qsort(s, (size_t)k, sizeof(double), cmp_double);
    return k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
}

/* What every figure carries: where and on what it was measured. */
static void jhead(kb_json_t *j, const results_t *r, const kb_opts_t *o, double records)
{
    kb_jadd(j, "\"broker\":");
    kb_jstr(j, r->broker[0] ? r->broker : NULL);
    kb_jadd(j, ",\"partitions\":%d,\"record_bytes\":%d,", o->partitions, o->size);
    kb_jnum(j, "records", records);
}

/* The worst of n cycles (longest gaps, latency, settle; duplicates summed); done
 * only if every cycle was. */
static kb_window_t window_worst(const kb_window_t *w, int n)
{
    kb_window_t x = {.done = n > 0, .gap_part = -1};
    for (int i = 0; i < n; i++) {
        x.done = x.done && w[i].done;
        if (w[i].gap_part_us > x.gap_part_us) {
            x.gap_part_us = w[i].gap_part_us;
            x.gap_part = w[i].gap_part;
        }
        x.gap_group_us = w[i].gap_group_us > x.gap_group_us ? w[i].gap_group_us : x.gap_group_us;
        x.latency_us = w[i].latency_us > x.latency_us ? w[i].latency_us : x.latency_us;
        x.settle_us = w[i].settle_us > x.settle_us ? w[i].settle_us : x.settle_us;
        x.dups += w[i].dups;
        x.records += w[i].records;
    }
    return x;
}

static void jwindow_fields(kb_json_t *j, const kb_window_t *w, bool with_settle)
{
    kb_jnum(j, "max_gap_partition_ms", w->done ? (double)w->gap_part_us / 1000 : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "max_gap_group_ms", w->done ? (double)w->gap_group_us / 1000 : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "duplicates", w->done ? (double)w->dups : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "max_latency_ms", w->done ? (double)w->latency_us / 1000 : -1);
    if (with_settle) {
        kb_jadd(j, ",");
        kb_jnum(j, "settle_ms", w->done ? (double)w->settle_us / 1000 : -1);
    }
}

/* "join": the worst of the cycles, then each cycle's own figures. */
static void jcycles(kb_json_t *j, const char *name, const kb_window_t *w, int n)
{
    kb_window_t worst = window_worst(w, n);
    kb_jadd(j, ",\"%s\":{", name);
    jwindow_fields(j, &worst, true);
    kb_jadd(j, ",\"cycles\":[");
    for (int i = 0; i < n; i++) {
        kb_jadd(j, "%s{", i ? "," : "");
        jwindow_fields(j, &w[i], true);
        kb_jadd(j, "}");
    }
    kb_jadd(j, "]}");
}

static void print_json(const results_t *r, const kb_opts_t *o)
{
    kb_json_t *j = calloc(1, sizeof(*j));
    double bare = median(r->bare_rps, r->bare_runs), alo = median(r->alo_rps, r->alo_runs);
    kb_jadd(j, "{\"bench\":\"kafka_baseline\",\"skipped\":");
    kb_jstr(j, r->skipped[0] ? r->skipped : NULL);
    kb_jadd(j, ",\"quick\":%s,\"librdkafka\":", o->quick ? "true" : "false");
    kb_jstr(j, rd_kafka_version_str());
    kb_jadd(j, ",\"broker\":");
    kb_jstr(j, r->broker[0] ? r->broker : NULL);
    kb_jadd(j, ",\"loadavg\":[%.2f,%.2f]", r->load_start, r->load_end);
    kb_jadd(j, ",\"produce\":{");
    jhead(j, r, o, r->produced > 0 ? (double)r->produced : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "records_per_s", r->produced > 0 ? (double)r->produced / r->produce_s : -1);
    kb_jadd(j, ",\"acks\":\"all\",\"partitioner\":\"murmur2_random\"}");
    for (int k = 0; k < 2; k++) {
        const double *v = k ? r->alo_rps : r->bare_rps;
        int n = k ? r->alo_runs : r->bare_runs;
        kb_jadd(j, ",\"%s\":{", k ? "at_least_once_consumer" : "bare_consumer");
        jhead(j, r, o, r->produced > 0 ? (double)r->produced : -1);
        kb_jadd(j, ",");
        kb_jnum(j, "records_per_s", k ? alo : bare);
        kb_jadd(j, ",\"runs\":[");
        for (int i = 0; i < n; i++)
            kb_jadd(j, "%s%.0f", i ? "," : "", v[i] > 0 ? v[i] : 0);
        kb_jadd(j, "]}");
    }
    kb_jadd(j, ",\"group\":{");
    for (int k = 0; k < 2; k++) {
        const kb_gresult_t *g = &r->grp[k];
        kb_jadd(j, "%s\"%s\":{", k ? "," : "", k ? "range" : "cooperative-sticky");
        jhead(j, r, o, g->done ? (double)g->produced : -1);
        kb_jadd(j, ",\"members\":3,\"rate\":%d,", o->rate);
        kb_jnum(j, "lost", g->done ? (double)g->lost : -1);
        kb_jadd(j, ",");
        kb_jnum(j, "duplicates", g->done ? (double)g->dups : -1);
        kb_jadd(j, ",\"steady\":{");
        jwindow_fields(j, &g->steady, false);
        kb_jadd(j, "}");
        jcycles(j, "join", g->join, g->cycles);
        jcycles(j, "leave", g->leave, g->cycles);
        kb_jadd(j, "}");
    }
    kb_jadd(j, "}}");
    printf("%s\n", j->b);
    fflush(stdout);
    free(j);
}

static void fmt_ms(char *buf, size_t size, const kb_window_t *w, int64_t v_us)
{
    if (w->done)
        snprintf(buf, size, "%.0f", (double)v_us / 1000);
    else
        snprintf(buf, size, "-");
}

static void print_table(const results_t *r, const kb_opts_t *o)
{
    double bare = median(r->bare_rps, r->bare_runs), alo = median(r->alo_rps, r->alo_runs);
    double mib = (double)o->size / (1024.0 * 1024.0);
    printf("Kafka baseline: Apache Kafka %s (KRaft, 1 node) at %s, librdkafka %s, "
           "%d partitions, %d-byte values, keyed; load average %.2f at the start\n",
           r->broker, r->bootstrap, rd_kafka_version_str(), o->partitions, o->size,
           r->load_start);
    printf("%-44s %10s %12s %9s\n", "", "records", "records/s", "MiB/s");
    if (r->produced > 0) {
        double rps = (double)r->produced / r->produce_s;
        printf("%-44s %10" PRId64 " %12.0f %9.1f\n", "produce (acks=all, as fast as it goes)",
               r->produced, rps, rps * mib);
    }
    if (bare > 0)
        printf("%-44s %10" PRId64 " %12.0f %9.1f\n", "bare consumer (assign, no commits)",
               r->produced, bare, bare * mib);
    if (alo > 0)
        printf("%-44s %10" PRId64 " %12.0f %9.1f\n",
               "at-least-once consumer (store, commit 1 s)", r->produced, alo, alo * mib);
    if (alo > 0 && bare > 0)
        printf("  (median of %d runs each; at-least-once committed %" PRId64 " offsets)\n",
               o->runs, r->alo_committed);

    printf("\nconsumer group: 3 members, %d records/s; a 4th joins, then it leaves "
           "(rd_kafka_consumer_close); worst of %d cycles, duplicates summed\n", o->rate,
           o->runs);
    kb_window_t worst[2][2];
    for (int k = 0; k < 2; k++) {
        worst[k][0] = window_worst(r->grp[k].join, r->grp[k].cycles);
        worst[k][1] = window_worst(r->grp[k].leave, r->grp[k].cycles);
    }
    printf("%-44s %20s %20s\n", "", r->grp[0].strategy ? r->grp[0].strategy : "cooperative-sticky",
           r->grp[1].strategy ? r->grp[1].strategy : "range");
    struct {
        const char *label;
        int which;  /* 0 steady, 1 join, 2 leave */
        int what;   /* 0 gap partition, 1 gap group, 2 dups, 3 latency, 4 settle */
    } rows[] = {
        {"steady: longest gap, one partition (ms)", 0, 0},
        {"steady: longest gap, whole group (ms)", 0, 1},
        {"steady: worst latency (ms)", 0, 3},
        {"4th joins: assignment settled after (ms)", 1, 4},
        {"4th joins: longest gap, one partition (ms)", 1, 0},
        {"4th joins: longest gap, whole group (ms)", 1, 1},
        {"4th joins: duplicates", 1, 2},
        {"4th joins: worst latency (ms)", 1, 3},
        {"it leaves: assignment settled after (ms)", 2, 4},
        {"it leaves: longest gap, one partition (ms)", 2, 0},
        {"it leaves: longest gap, whole group (ms)", 2, 1},
        {"it leaves: duplicates", 2, 2},
        {"it leaves: worst latency (ms)", 2, 3},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char cell[2][32];
        for (int k = 0; k < 2; k++) {
            const kb_gresult_t *g = &r->grp[k];
            const kb_window_t *w = rows[i].which == 0 ? &g->steady : &worst[k][rows[i].which - 1];
            switch (rows[i].what) {
            case 0: fmt_ms(cell[k], sizeof(cell[k]), w, w->gap_part_us); break;
            case 1: fmt_ms(cell[k], sizeof(cell[k]), w, w->gap_group_us); break;
            case 3: fmt_ms(cell[k], sizeof(cell[k]), w, w->latency_us); break;
            case 4: fmt_ms(cell[k], sizeof(cell[k]), w, w->settle_us); break;
            default:
                if (w->done)
                    snprintf(cell[k], sizeof(cell[k]), "%" PRId64, w->dups);
                else
                    snprintf(cell[k], sizeof(cell[k]), "-");
            }
        }
        printf("%-44s %20s %20s\n", rows[i].label, cell[0], cell[1]);
    }
    char cell[2][48];
    for (int k = 0; k < 2; k++) {
        const kb_gresult_t *g = &r->grp[k];
        if (g->done)
            snprintf(cell[k], sizeof(cell[k]), "%" PRId64 "/%" PRId64 "/%" PRId64, g->produced,
                     g->dups, g->lost);
        else
            snprintf(cell[k], sizeof(cell[k]), "-");
    }
    printf("%-44s %20s %20s\n", "whole run: produced/duplicates/lost", cell[0], cell[1]);
    fflush(stdout);
}

/* ---- main -------------------------------------------------------------------- */

static int run_all(const char *bootstrap, const kb_opts_t *o, results_t *r)
{
    char topic[64], why[512];
    snprintf(topic, sizeof(topic), "bench-read-%d", (int)getpid());
    if (kb_topic_create(bootstrap, topic, o->partitions, why, sizeof(why)) < 0) {
        kb_say("%s", why);
        return -1;
    }
    kb_say("producing %ld records of %d bytes to %s (%d partitions)", o->records, o->size, topic,
           o->partitions);
    if (produce_all(bootstrap, topic, o, r) < 0)
        r->failures++;
    if (r->produced <= 0 || kb_stop)
        return -1;
    /* A warm-up read first: the broker's JIT and page cache, the same for both kinds. */
    int64_t committed = 0;
    kb_say("reading them: one warm-up read, then %d of each consumer, alternating", o->runs);
    if (kb_consume_all(bootstrap, topic, o->partitions, r->produced, false, 0, &committed) < 0)
        r->failures++;
    for (int i = 0; i < o->runs && !kb_stop; i++) {
        r->bare_rps[r->bare_runs++] = kb_consume_all(bootstrap, topic, o->partitions,
                                                     r->produced, false, i + 1, &committed);
        if (kb_stop)
            break;
        r->alo_rps[r->alo_runs++] = kb_consume_all(bootstrap, topic, o->partitions,
                                                   r->produced, true, i + 1, &committed);
        r->alo_committed = committed;
        if (r->bare_rps[r->bare_runs - 1] < 0 || r->alo_rps[r->alo_runs - 1] < 0)
            r->failures++;
    }
    if (r->alo_runs && r->alo_committed != r->produced) {
        kb_say("at-least-once: %" PRId64 " offsets committed for %" PRId64 " records read",
               r->alo_committed, r->produced);
        r->failures++;
    }
    static const char *const strategies[] = {"cooperative-sticky", "range"};
    for (int k = 0; k < 2 && !kb_stop; k++) {
        kb_say("consumer group, %s: 3 members, %d records/s", strategies[k], o->rate);
        if (kb_group_run(bootstrap, o, strategies[k], &r->grp[k]) < 0)
            r->failures++;
        else if (r->grp[k].lost)
            r->failures++;  /* at-least-once was broken: say so by the exit code too */
    }
    r->grp[0].strategy = strategies[0];
    r->grp[1].strategy = strategies[1];
    return 0;
}

int main(int argc, char **argv)
{
    kb_opts_t o;
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    if (o.member)
        return kb_member_main(&o);

    ssize_t n = readlink("/proc/self/exe", kb_self, sizeof(kb_self) - 1);
    if (n <= 0) {
        kb_say("readlink /proc/self/exe: %s", strerror(errno));
        return 1;
    }
    kb_self[n] = 0;
    struct sigaction sa = {.sa_handler = kb_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    results_t *r = calloc(1, sizeof(*r));
    ukko_kafka_rig_t rig = {0};
    int rc = 0;
    r->load_start = kb_loadavg();
    if (o.bootstrap) {
        snprintf(r->bootstrap, sizeof(r->bootstrap), "%s", o.bootstrap);
        snprintf(r->broker, sizeof(r->broker), "unknown");
    } else {
        kb_say("starting a Kafka broker (tests/kafka/broker.sh, KRaft, one node) on %s", KB_HOST);
        int s = kb_rig_start(&rig, KB_HOST, r->bootstrap, sizeof(r->bootstrap), r->broker,
                             sizeof(r->broker), r->skipped, sizeof(r->skipped));
        if (s != 0) {
            ukko_kafka_rig_stop(&rig);
            if (s == 1)
                printf("SKIPPED: no real Kafka (%s)\n", r->skipped);
            r->load_end = kb_loadavg();
            print_json(r, &o);
            free(r);
            return s == 1 ? 0 : 1;
        }
        kb_say("broker: Apache Kafka %s at %s", r->broker, r->bootstrap);
    }
    if (!kb_stop && run_all(r->bootstrap, &o, r) < 0)
        r->failures++;
    r->load_end = kb_loadavg();
    ukko_kafka_rig_stop(&rig);
    if (kb_stop) {
        kb_say("stopped by a signal: figures not measured are null");
        r->failures++;
    }
    print_table(r, &o);
    print_json(r, &o);
    rc = r->failures ? 1 : 0;
    free(r);
    return rc;
}
