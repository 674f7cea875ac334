/* bench_shards_report.c: what bench_kafka_shards prints: a table for people,
 * the goals of issue 11 with their verdicts, and ONE JSON line with every
 * figure (null where one was not measured). Main thread, once, at the end. */
#include "bench_kafka_shards.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const config_t ks_configs[NCONFIGS] = {
    {"sink", "ukko_sink_3_nodes", "ukko, sink app (acks at once), 3 nodes", 3},
    {"sink", "ukko_sink_1_node", "ukko, sink app (acks at once), 1 node", 1},
    {"orders", "ukko_orders_3_nodes", "ukko, orders app (produces per order), 3 nodes", 3},
    {"orders", "ukko_orders_1_node", "ukko, orders app (produces per order), 1 node", 1},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double ks_median(const double *v, int n)
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

static double tput_median(const results_t *r, int k, bool processed)
{
    double v[KB_MAX_RUNS];
    for (int i = 0; i < r->ukko_runs[k]; i++)
        v[i] = processed ? r->ukko[k][i].proc_rps : r->ukko[k][i].commit_rps;
    return ks_median(v, r->ukko_runs[k]);
}

/* The worst of n windows (longest gaps, settle; duplicates summed); done only if
 * every window was. */
static ks_window_t worst(const ks_window_t *w, int n)
{
    ks_window_t x = {.done = n > 0, .gap_part = -1};
    for (int i = 0; i < n; i++) {
        x.done = x.done && w[i].done;
        if (w[i].gap_part_us > x.gap_part_us) {
            x.gap_part_us = w[i].gap_part_us;
            x.gap_part = w[i].gap_part;
        }
        x.gap_all_us = w[i].gap_all_us > x.gap_all_us ? w[i].gap_all_us : x.gap_all_us;
        x.settle_us = w[i].settle_us > x.settle_us ? w[i].settle_us : x.settle_us;
        x.dups += w[i].dups;
        x.records += w[i].records;
    }
    return x;
}

static double ms_or_null(bool done, int64_t us)
{
    return done ? (double)us / 1000 : -1;
}

static void jwindow(kb_json_t *j, const ks_window_t *w)
{
    kb_jnum(j, "max_gap_partition_ms", ms_or_null(w->done, w->gap_part_us));
    kb_jadd(j, ",");
    kb_jnum(j, "max_gap_all_ms", ms_or_null(w->done, w->gap_all_us));
    kb_jadd(j, ",");
    kb_jnum(j, "duplicates", w->done ? (double)w->dups : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "settle_ms", ms_or_null(w->done, w->settle_us));
}

static void jsteps(kb_json_t *j, const char *name, const ks_window_t *w, int n)
{
    ks_window_t x = worst(w, n);
    kb_jadd(j, ",\"%s\":{", name);
    jwindow(j, &x);
    kb_jadd(j, ",\"cycles\":[");
    for (int i = 0; i < n; i++) {
        kb_jadd(j, "%s{", i ? "," : "");
        jwindow(j, &w[i]);
        if (!strcmp(name, "leave"))
            kb_jadd(j, ",\"exit_code\":%d", w[i].exit_code);
        kb_jadd(j, "}");
    }
    kb_jadd(j, "]}");
}

/* The baseline's group figures, in the same shape as ukko's. */
static void jgroup_steps(kb_json_t *j, const char *name, const kb_window_t *w, int n)
{
    kb_jadd(j, ",\"%s\":{", name);
    int64_t gp = 0, ga = 0, st = 0, d = 0;
    bool done = n > 0;
    for (int i = 0; i < n; i++) {
        done = done && w[i].done;
        gp = w[i].gap_part_us > gp ? w[i].gap_part_us : gp;
        ga = w[i].gap_group_us > ga ? w[i].gap_group_us : ga;
        st = w[i].settle_us > st ? w[i].settle_us : st;
        d += w[i].dups;
    }
    kb_jnum(j, "max_gap_partition_ms", ms_or_null(done, gp));
    kb_jadd(j, ",");
    kb_jnum(j, "max_gap_all_ms", ms_or_null(done, ga));
    kb_jadd(j, ",");
    kb_jnum(j, "duplicates", done ? (double)d : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "settle_ms", ms_or_null(done, st));
    kb_jadd(j, "}");
}

static void jdouble(kb_json_t *j, const char *key, double v, int decimals)
{
    if (v < 0)
        kb_jadd(j, "\"%s\":null", key);
    else
        kb_jadd(j, "\"%s\":%.*f", key, decimals, v);
}

static void jbool(kb_json_t *j, const char *key, int v)  /* -1: not measured */
{
    kb_jadd(j, "\"%s\":%s", key, v < 0 ? "null" : v ? "true" : "false");
}

/* What the goals compare: configuration k of ukko to the bare consumer timed the
 * same way (waiting, from the transaction's commit); -1 unknown. */
static double ratio(const results_t *r, int k)
{
    double bare = ks_median(r->rel_rps, r->rel_runs), u = tput_median(r, k, false);
    return bare > 0 && u > 0 ? u / bare : -1;
}

static double proc_ratio(const results_t *r, int k)
{
    double bare = ks_median(r->rel_rps, r->rel_runs), u = tput_median(r, k, true);
    return bare > 0 && u > 0 ? u / bare : -1;
}

static int goal_ratio(const results_t *r)
{
    int seen = 0, met = 1;
    for (int k = 0; k < 2; k++)
        if (ratio(r, k) >= 0) {
            seen = 1;
            met = met && ratio(r, k) >= 0.9;
        }
    return seen ? met : -1;
}

static int goal_gap(const results_t *r)
{
    ks_window_t j = worst(r->join, r->cycles), l = worst(r->leave, r->cycles);
    if (!j.done || !l.done)
        return -1;
    return j.gap_part_us < 1000000 && l.gap_part_us < 1000000;
}

static int goal_dups(const results_t *r)
{
    return r->reb_done ? r->reb_dups == 0 : -1;
}

void ks_print_json(const results_t *r, const opts_t *o)
{
    kb_json_t *j = calloc(1, sizeof(*j));
    kb_jadd(j, "{\"bench\":\"kafka_shards\",\"skipped\":");
    kb_jstr(j, r->skipped[0] ? r->skipped : NULL);
    kb_jadd(j, ",\"quick\":%s,\"librdkafka\":", o->quick ? "true" : "false");
    kb_jstr(j, rd_kafka_version_str());
    kb_jadd(j, ",\"broker\":");
    kb_jstr(j, r->broker[0] ? r->broker : NULL);
    kb_jadd(j, ",\"cpus\":%ld,\"loadavg\":[%.2f,%.2f],\"partitions\":%d,\"record_bytes\":%d,"
               "\"customers\":%d", sysconf(_SC_NPROCESSORS_ONLN), r->load_start, r->load_end,
            o->partitions, o->size, o->customers);
    /* throughput */
    kb_jadd(j, ",\"throughput\":{\"records\":%ld,\"released\":\"one transaction, "
               "timed from its commit\",\"ukko_measured_to\":\"committed offsets at the end "
               "of every partition\",\"ratio_to\":\"bare_consumer_released\",", o->records);
    kb_jnum(j, "bare_consumer_released_records_per_s", ks_median(r->rel_rps, r->rel_runs));
    kb_jadd(j, ",");
    kb_jnum(j, "bare_consumer_records_per_s", ks_median(r->bare_rps, r->bare_runs));
    kb_jadd(j, ",");
    kb_jnum(j, "at_least_once_consumer_records_per_s", ks_median(r->alo_rps, r->alo_runs));
    for (int k = 0; k < NCONFIGS; k++) {
        kb_jadd(j, ",\"%s\":{", ks_configs[k].key);
        kb_jnum(j, "records_per_s", tput_median(r, k, false));
        kb_jadd(j, ",");
        kb_jnum(j, "processed_per_s", tput_median(r, k, true));
        kb_jadd(j, ",");
        jdouble(j, "ratio_to_bare", ratio(r, k), 2);
        kb_jadd(j, ",");
        jdouble(j, "processed_ratio_to_bare", proc_ratio(r, k), 2);
        kb_jadd(j, ",\"runs\":[");
        for (int i = 0; i < r->ukko_runs[k]; i++) {
            const tput_t *t = &r->ukko[k][i];
            kb_jadd(j, "%s{\"records_per_s\":%.0f,\"processed_per_s\":%.0f,\"first_ms\":%.0f,"
                       "\"cpu_nodes_s\":%.1f,\"cpu_broker_s\":%.1f,\"peak_rss_kib\":%ld}",
                    i ? "," : "", t->commit_rps, t->proc_rps, t->first_ms, t->cpu_nodes_s,
                    t->cpu_broker_s, t->hwm_kib);
        }
        kb_jadd(j, "]}");
    }
    kb_jadd(j, ",\"bare_released_runs\":[");
    for (int i = 0; i < r->rel_runs; i++)
        kb_jadd(j, "%s{\"records_per_s\":%.0f,\"first_ms\":%.0f,\"cpu_s\":%.1f}", i ? "," : "",
                r->rel_rps[i], r->rel_first_ms[i], r->rel_cpu_s[i]);
    kb_jadd(j, "],\"bare_runs\":[");
    for (int i = 0; i < r->bare_runs; i++)
        kb_jadd(j, "%s{\"records_per_s\":%.0f,\"cpu_s\":%.1f}", i ? "," : "",
                r->bare_rps[i] > 0 ? r->bare_rps[i] : 0, r->bare_cpu_s[i]);
    kb_jadd(j, "]}");
    /* rebalance */
    kb_jadd(j, ",\"rebalance\":{\"rate\":%d,\"members\":3,\"ukko\":{\"app\":\"orders\",", o->rate);
    kb_jnum(j, "produced", r->reb_done ? (double)r->reb_produced : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "duplicates", r->reb_done ? (double)r->reb_dups : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "lost", r->reb_done ? (double)r->reb_lost : -1);
    jsteps(j, "join", r->join, r->cycles);
    jsteps(j, "leave", r->leave, r->cycles);
    kb_jadd(j, "}");
    for (int k = 0; k < 2; k++) {
        const kb_gresult_t *g = &r->grp[k];
        kb_jadd(j, ",\"%s\":{", k ? "range" : "cooperative-sticky");
        kb_jnum(j, "produced", g->done ? (double)g->produced : -1);
        kb_jadd(j, ",");
        kb_jnum(j, "duplicates", g->done ? (double)g->dups : -1);
        kb_jadd(j, ",");
        kb_jnum(j, "lost", g->done ? (double)g->lost : -1);
        jgroup_steps(j, "join", g->join, g->cycles);
        jgroup_steps(j, "leave", g->leave, g->cycles);
        kb_jadd(j, "}");
    }
    kb_jadd(j, "}");
    /* latency */
    kb_jadd(j, ",\"latency\":{\"rate\":%d,\"nodes\":3,\"app\":\"orders\",", o->rate);
    kb_jnum(j, "orders", r->lat_n ? (double)r->lat_n : -1);
    kb_jadd(j, ",");
    jdouble(j, "p50_ms", r->lat_n ? r->lat_p50 : -1, 1);
    kb_jadd(j, ",");
    jdouble(j, "p99_ms", r->lat_n ? r->lat_p99 : -1, 1);
    kb_jadd(j, ",");
    jdouble(j, "max_ms", r->lat_n ? r->lat_max : -1, 1);
    kb_jadd(j, ",");
    jdouble(j, "to_output_timestamp_p50_ms", r->lat_n ? r->stamp_p50 : -1, 1);
    kb_jadd(j, ",");
    jdouble(j, "to_output_timestamp_p99_ms", r->lat_n ? r->stamp_p99 : -1, 1);
    kb_jadd(j, "}");
    /* rss */
    kb_jadd(j, ",\"rss\":{\"app\":\"orders\",\"partitions\":%d,", o->partitions);
    kb_jnum(j, "idle_kib", r->rss_idle_kib > 0 ? (double)r->rss_idle_kib : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "live_entities", r->rss_ent_kib > 0 ? r->entities : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "with_entities_kib", r->rss_ent_kib > 0 ? (double)r->rss_ent_kib : -1);
    kb_jadd(j, ",");
    kb_jnum(j, "after_second_round_kib", r->rss_ent2_kib > 0 ? (double)r->rss_ent2_kib : -1);
    kb_jadd(j, "}");
    /* goals */
    kb_jadd(j, ",\"goals\":{");
    jbool(j, "throughput_at_least_0_9_of_bare", goal_ratio(r));
    kb_jadd(j, ",");
    jbool(j, "rebalance_gap_under_1s", goal_gap(r));
    kb_jadd(j, ",");
    jbool(j, "zero_duplicates", goal_dups(r));
    kb_jadd(j, "}}");
    printf("%s\n", j->b);
    fflush(stdout);
    free(j);
}

static void cell_ms(char *buf, size_t size, bool done, int64_t us)
{
    if (done)
        snprintf(buf, size, "%.0f", (double)us / 1000);
    else
        snprintf(buf, size, "-");
}

void ks_print_table(const results_t *r, const opts_t *o)
{
    double bare = ks_median(r->bare_rps, r->bare_runs), alo = ks_median(r->alo_rps, r->alo_runs);
    double rel = ks_median(r->rel_rps, r->rel_runs);
    printf("Kafka shards: Apache Kafka %s (KRaft, 1 node) at %s, librdkafka %s, %s;\n"
           "%d partitions, %d-byte orders keyed by %d customers; %ld CPUs, load average %.2f "
           "at the start, %.2f at the end\n\n", r->broker, r->bootstrap, rd_kafka_version_str(),
           o->ukko, o->partitions, o->size, o->customers, sysconf(_SC_NPROCESSORS_ONLN),
           r->load_start, r->load_end);
    printf("throughput: %ld orders released at once (one transaction), timed from its "
           "commit: ukko until the group's committed\noffsets reach the end of every "
           "partition (processed: until /metrics counted them all), the bare consumer until\n"
           "it read the last one; median of runs. Below the line: librdkafka read as "
           "bench_kafka_baseline does (from the assign)\n", o->records);
    printf("%-48s %10s %11s %9s %8s %11s %8s\n", "", "records/s", "processed/s", "vs bare",
           "first ms", "CPU s n+b", "peak MiB");
    if (rel > 0)
        printf("%-48s %10.0f %11s %9s %8.0f %11.1f\n",
               "bare librdkafka consumer (waiting, no commits)", rel, "", "1.00",
               ks_median(r->rel_first_ms, r->rel_runs), r->rel_cpu_s[r->rel_runs - 1]);
    for (int k = 0; k < NCONFIGS; k++) {
        if (!r->ukko_runs[k])
            continue;
        const tput_t *t = &r->ukko[k][r->ukko_runs[k] - 1];
        char rt[24] = "-";
        if (ratio(r, k) >= 0)
            snprintf(rt, sizeof(rt), "%.2f/%.2f", ratio(r, k), proc_ratio(r, k));
        double first[KB_MAX_RUNS];
        for (int i = 0; i < r->ukko_runs[k]; i++)
            first[i] = r->ukko[k][i].first_ms;
        char cpu[24];
        snprintf(cpu, sizeof(cpu), "%.1f+%.1f", t->cpu_nodes_s, t->cpu_broker_s);
        printf("%-48s %10.0f %11.0f %9s %8.0f %11s %8.0f\n", ks_configs[k].label,
               tput_median(r, k, false), tput_median(r, k, true), rt,
               ks_median(first, r->ukko_runs[k]), cpu, (double)t->hwm_kib / 1024);
    }
    printf("  ---\n");
    if (bare > 0)
        printf("%-48s %10.0f\n", "bare librdkafka consumer (assign, no commits)", bare);
    if (alo > 0)
        printf("%-48s %10.0f\n", "at-least-once librdkafka consumer (commit 1 s)", alo);
    printf("  (vs bare: records/s, then processed/s, over the waiting bare consumer's; first "
           "ms: the commit to the first\n  record processed; CPU s n+b: the last run's CPU "
           "seconds of the ukko nodes, or of the consumer, and of the broker)\n");

    printf("\nrebalance: 3 nodes / members, %d orders/s; a 4th joins, then leaves (ukko: "
           "SIGTERM; librdkafka: rd_kafka_consumer_close);\nworst of %d cycles, duplicates "
           "summed; ukko's processing time is each output's timestamp\n", o->rate, o->runs);
    printf("%-44s %16s %20s %16s\n", "", "ukko (orders)", "cooperative-sticky", "range");
    ks_window_t uw[2] = {worst(r->join, r->cycles), worst(r->leave, r->cycles)};
    static const char *const step[2] = {"4th joins", "it leaves"};
    static const char *const what[4] = {"settled after (ms)", "longest gap, one partition (ms)",
                                        "longest gap, all partitions (ms)", "duplicates"};
    for (int s = 0; s < 2; s++)
        for (int q = 0; q < 4; q++) {
            char label[96], cell[3][32];
            snprintf(label, sizeof(label), "%s: %s", step[s], what[q]);
            const ks_window_t *w = &uw[s];
            int64_t v = q == 0 ? w->settle_us : q == 1 ? w->gap_part_us : w->gap_all_us;
            if (q == 3 && w->done)
                snprintf(cell[0], sizeof(cell[0]), "%" PRId64, w->dups);
            else if (q == 3)
                snprintf(cell[0], sizeof(cell[0]), "-");
            else
                cell_ms(cell[0], sizeof(cell[0]), w->done, v);
            for (int k = 0; k < 2; k++) {
                const kb_gresult_t *g = &r->grp[k];
                const kb_window_t *gw = s ? g->leave : g->join;
                int64_t gv = 0, d = 0;
                bool done = g->cycles > 0;
                for (int i = 0; i < g->cycles; i++) {
                    int64_t x = q == 0 ? gw[i].settle_us
                                : q == 1 ? gw[i].gap_part_us : gw[i].gap_group_us;
                    gv = x > gv ? x : gv;
                    d += gw[i].dups;
                    done = done && gw[i].done;
                }
                if (q == 3 && done)
                    snprintf(cell[k + 1], sizeof(cell[k + 1]), "%" PRId64, d);
                else if (q == 3)
                    snprintf(cell[k + 1], sizeof(cell[k + 1]), "-");
                else
                    cell_ms(cell[k + 1], sizeof(cell[k + 1]), done, gv);
            }
            printf("%-44s %16s %20s %16s\n", label, cell[0], cell[1], cell[2]);
        }
    char tot[3][48] = {"-", "-", "-"};
    if (r->reb_done)
        snprintf(tot[0], sizeof(tot[0]), "%" PRId64 "/%" PRId64 "/%" PRId64, r->reb_produced,
                 r->reb_dups, r->reb_lost);
    for (int k = 0; k < 2; k++)
        if (r->grp[k].done)
            snprintf(tot[k + 1], sizeof(tot[k + 1]), "%" PRId64 "/%" PRId64 "/%" PRId64,
                     r->grp[k].produced, r->grp[k].dups, r->grp[k].lost);
    printf("%-44s %16s %20s %16s\n", "whole run: produced/duplicates/lost", tot[0], tot[1],
           tot[2]);

    if (r->lat_n)
        printf("\nlatency, 3 nodes (orders app), %d orders/s, %zu orders over %d s: produce -> "
               "read from orders-processed\np50 %.1f ms, p99 %.1f ms, max %.1f ms; produce -> "
               "the output's timestamp (ms clock): p50 %.1f ms, p99 %.1f ms\n", o->rate,
               r->lat_n, o->steady_s, r->lat_p50, r->lat_p99, r->lat_max, r->stamp_p50,
               r->stamp_p99);
    if (r->rss_ent_kib > 0)
        printf("\nmemory, 1 node (orders app), %d partitions: RSS %.1f MiB idle, %.1f MiB with "
               "%.0f live entities (%.0f bytes each), %.1f MiB after a second round\n",
               o->partitions, (double)r->rss_idle_kib / 1024, (double)r->rss_ent_kib / 1024,
               r->entities, r->entities > 0
                   ? (double)(r->rss_ent_kib - r->rss_idle_kib) * 1024 / r->entities : 0,
               (double)r->rss_ent2_kib / 1024);
    static const char *const verdict[] = {"not measured", "missed", "met"};
    char rt[2][16] = {"-", "-"};
    for (int k = 0; k < 2; k++)
        if (ratio(r, k) >= 0)
            snprintf(rt[k], sizeof(rt[k]), "%.2f", ratio(r, k));
    printf("\ngoals: ukko sink >= 0.9 x bare consumer: %s (3 nodes %s, 1 node %s); longest "
           "gap < 1 s: %s; no duplicates: %s\n", verdict[goal_ratio(r) + 1], rt[0], rt[1],
           verdict[goal_gap(r) + 1], verdict[goal_dups(r) + 1]);
    fflush(stdout);
}

