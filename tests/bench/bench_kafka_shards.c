/* bench_kafka_shards: ukko's Kafka-fed shards (issue 11) beside librdkafka alone,
 * in one run against a real Apache Kafka broker that it starts itself
 * (tests/kafka/broker.sh: KRaft, one node) and stops at the end, also on Ctrl-C or
 * failure (the rig's watchdog stops it if we die; the nodes die with us).
 * Figures: the same records read by a bare librdkafka consumer and by ukko nodes
 * (the sink app, whose handler acks at once, and the orders app, which produces a
 * record per order; 3 nodes and 1); a 4th node joining and leaving (SIGTERM) under
 * a steady rate, beside a librdkafka consumer group doing the same (the baseline's
 * bench_kafka_group.c); produce-to-output latency; the memory of a node with
 * 10,000 live entities. Prints the figures and ends with ONE JSON line. Not a
 * test: it asserts nothing. See --help. */
#include "bench_kafka_shards.h"
#include "ukko_test.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef UKKO_BIN
#define UKKO_BIN "ukko"
#endif

/* ---- options ------------------------------------------------------------------ */


static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_kafka_shards [--records N] [--partitions P] [--size B] [--rate R]\n"
        "                          [--runs K] [--customers C] [--steady S] [--only LIST]\n"
        "                          [--ukko PATH] [--node-env K=V]... [--keep] [--quick]\n"
        "  Starts a real Kafka broker (tests/kafka/broker.sh, KRaft, one node) on " KS_HOST ",\n"
        "  runs ukko nodes (`ukko run --app sink|orders`, ports of their own on the same\n"
        "  address) and librdkafka %s against it, and stops it all. Figures:\n"
        "  throughput  N orders of B bytes keyed by C customers, produced in ONE\n"
        "              transaction so that they appear at once: records/s of ukko (sink\n"
        "              app: acks at once; orders app: a record produced per order; 3 nodes\n"
        "              and 1; commits on) until the group's committed offsets reach the end\n"
        "              of every partition (and until /metrics counted them processed),\n"
        "              beside a bare librdkafka consumer (assign, no commits) and an\n"
        "              at-least-once one reading the same records (median of K runs)\n"
        "  rss         one node (orders app, P partitions): idle, then with C live\n"
        "              entities (one order per customer), then after a second round\n"
        "  rebalance   3 nodes (orders app) under R orders/s: a 4th node joins, then\n"
        "              leaves with SIGTERM (K cycles): the longest processing gap of any\n"
        "              partition and of all, duplicates, losses (from orders-processed:\n"
        "              each output's timestamp is when its handler ran); before the\n"
        "              first cycle, S s of produce-to-output latency (p50/p99)\n"
        "  group       the same steps for a librdkafka consumer group of 3 member\n"
        "              processes, cooperative-sticky and range (bench_kafka_baseline's)\n"
        "  --records N     orders for the throughput (default 1000000; --quick 50000)\n"
        "  --partitions P  partitions of orders and orders-processed (default 12)\n"
        "  --size B        order value size in bytes (default 100, at least 64)\n"
        "  --rate R        orders/s during the rebalance and latency (default 5000)\n"
        "  --runs K        runs of each throughput figure and join-and-leave cycles\n"
        "                  (default 3; --quick 1)\n"
        "  --customers C   distinct keys, so live entities (default 10000)\n"
        "  --steady S      seconds of latency sampling (default 20; --quick 3)\n"
        "  --only LIST     some of throughput,rss,rebalance,group (default all)\n"
        "  --ukko PATH     the ukko binary (default the build's)\n"
        "  --node-env K=V  a setting for every node (UKKO_KAFKA_MAX_IN_FLIGHT=5000, ...),\n"
        "                  repeatable; without it every node runs the product's defaults\n"
        "  --keep          keep the nodes' logs (their folder is named on stderr)\n"
        "  --quick         a smoke run (< 1 min): small counts, throughput of the sink app\n"
        "                  with 3 nodes only, one cycle, cooperative-sticky only\n"
        "Without Java 17, Maven or the jars it prints \"SKIPPED: no real Kafka (why)\" and\n"
        "its JSON line with nulls, and exits 0. Exit 1: a figure could not be measured.\n",
        rd_kafka_version_str());
}

static int parse_only(const char *v, int *parts)
{
    static const struct {
        const char *name;
        int bit;
    } names[] = {{"throughput", PART_TPUT}, {"rss", PART_RSS}, {"rebalance", PART_REB},
                 {"group", PART_GROUP}};
    char buf[256];
    *parts = 0;
    snprintf(buf, sizeof(buf), "%s", v ? v : "");
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < sizeof(names) / sizeof(names[0]) && strcmp(names[i].name, t))
            i++;
        if (i == sizeof(names) / sizeof(names[0])) {
            fprintf(stderr, "bench_kafka_shards: --only %s: give some of "
                            "throughput,rss,rebalance,group\n", t);
            return -1;
        }
        *parts |= names[i].bit;
    }
    return *parts ? 0 : -1;
}

static int parse_opts(int argc, char **argv, opts_t *o)
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
    o->customers = 10000;
    o->steady_s = o->quick ? 3 : 20;
    o->parts = PART_ALL;
    o->ukko = UKKO_BIN;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x = 0;
        int rc = 0;
        if (!strcmp(a, "--quick")) {
            continue;
        } else if (!strcmp(a, "--keep")) {
            o->keep = true;
            continue;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--records")) {
            rc = kb_parse_long("bench_kafka_shards", a, v, 1, 100000000L, &x);
            o->records = x;
        } else if (!strcmp(a, "--partitions")) {
            rc = kb_parse_long("bench_kafka_shards", a, v, 1, KB_MAX_PARTS, &x);
            o->partitions = (int)x;
        } else if (!strcmp(a, "--size")) {
            rc = kb_parse_long("bench_kafka_shards", a, v, 64, 4000, &x);
            o->size = (int)x;
        } else if (!strcmp(a, "--rate")) {
            rc = kb_parse_long("bench_kafka_shards", a, v, 1, 100000, &x);
            o->rate = (int)x;
        } else if (!strcmp(a, "--runs")) {
            rc = kb_parse_long("bench_kafka_shards", a, v, 1, KB_MAX_RUNS, &x);
            o->runs = (int)x;
        } else if (!strcmp(a, "--customers")) {
            rc = kb_parse_long("bench_kafka_shards", a, v, 1, 10000000, &x);
            o->customers = (int)x;
        } else if (!strcmp(a, "--steady")) {
            rc = kb_parse_long("bench_kafka_shards", a, v, 1, 3600, &x);
            o->steady_s = (int)x;
        } else if (!strcmp(a, "--only")) {
            rc = parse_only(v, &o->parts);
        } else if (!strcmp(a, "--ukko") && v) {
            o->ukko = v;
        } else if (!strcmp(a, "--node-env") && v && !strncmp(v, "UKKO_", 5) && strchr(v, '=') &&
                   o->nenv < KS_MAX_ENV) {
            o->env[o->nenv++] = v;
        } else {
            fprintf(stderr, "bench_kafka_shards: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (rc < 0)
            return -1;
        i++;
    }
    return 0;
}

/* The program re-run as a consumer-group member by kb_group_run. */
static int member_main(int argc, char **argv)
{
    kb_opts_t o = {.member = true};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--member"))
            o.id = atoi(v);
        else if (!strcmp(a, "--bootstrap"))
            o.bootstrap = v;
        else if (!strcmp(a, "--topic"))
            o.topic = v;
        else if (!strcmp(a, "--group"))
            o.group = v;
        else if (!strcmp(a, "--strategy"))
            o.strategy = v;
    }
    if (!o.bootstrap || !o.topic || !o.group || !o.strategy || o.id < 0 ||
        o.id >= KB_MAX_MEMBERS) {
        fprintf(stderr, "bench_kafka_shards: --member needs --bootstrap, --topic, --group "
                        "and --strategy\n");
        return 2;
    }
    return kb_member_main(&o);
}

/* ---- results ------------------------------------------------------------------ */


static pid_t broker_pid;  /* for its CPU time */

/* Waits ms milliseconds, or less on Ctrl-C. */
static void nap(int ms)
{
    for (int64_t end = kb_now_us() + (int64_t)ms * 1000; !kb_stop && kb_now_us() < end;)
        usleep(20 * 1000);
}

/* The nodes' settings for app, and fresh topics. 0 or -1 (why). */
static int cluster_open(ks_cluster_t *c, const opts_t *o, const char *bootstrap, const char *app,
                        char *why, size_t why_size)
{
    if (ks_cluster_init(c, o->ukko, bootstrap, app, o->partitions, why, why_size) < 0)
        return -1;
    c->keep = o->keep;
    c->env = o->env;
    return ks_topics_reset(bootstrap, o->partitions, why, why_size);
}

/* ---- throughput ------------------------------------------------------------------ */

static double cluster_cpu(const ks_cluster_t *c)
{
    double s = 0;
    for (int i = 0; i < KS_MAX_NODES; i++)
        if (c->n[i].pid > 0)
            s += ks_cpu_s(c->n[i].pid);
    return s;
}

/* The bare and at-least-once reads of the topic a run left (records orders). */
static void read_figures(const char *bootstrap, const opts_t *o, results_t *r, bool warm_up)
{
    int64_t committed = 0;
    if (warm_up) {
        kb_say("bare librdkafka consumer: a warm-up read of %s", KS_IN);
        kb_consume_all(bootstrap, KS_IN, o->partitions, o->records, false, 0, &committed);
    }
    int run = r->bare_runs + 1;
    double cpu0 = (double)clock() / CLOCKS_PER_SEC;
    double bare = kb_consume_all(bootstrap, KS_IN, o->partitions, o->records, false, run,
                                 &committed);
    r->bare_cpu_s[r->bare_runs] = (double)clock() / CLOCKS_PER_SEC - cpu0;
    r->bare_rps[r->bare_runs++] = bare;
    double alo = kb_stop ? -1
                         : kb_consume_all(bootstrap, KS_IN, o->partitions, o->records, true, run,
                                          &committed);
    r->alo_rps[r->alo_runs++] = alo;
    if (bare < 0 || alo < 0)
        r->failures++;
    else if (committed != o->records)
        kb_say("at-least-once consumer: %" PRId64 " offsets committed for %ld records",
               committed, o->records);
    kb_say("bare librdkafka consumer %.0f records/s, at-least-once %.0f", bare, alo);
}

/* The bare consumer timed as ukko's runs are: assigned to every partition of fresh
 * topics from the beginning and polled while nothing is visible, then the orders
 * in one transaction; records/s from the commit to the last record read. */
static int bare_released(const char *bootstrap, const opts_t *o, int run, results_t *r)
{
    char why[1024], err[256], group[96], txn[96];
    int64_t counts[KB_MAX_PARTS], t0 = 0, t_first = 0, got = 0;
    int rc = -1;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *all = NULL;
    snprintf(group, sizeof(group), "bench-released-%d-%d", (int)getpid(), run);
    snprintf(txn, sizeof(txn), "bench-shards-%d-bare-%d", (int)getpid(), run);
    const char *const kv[] = {"group.id", group, "enable.auto.commit", "false",
                              "enable.partition.eof", "false", NULL};
    kb_say("throughput, bare librdkafka consumer waiting on fresh topics, then %ld orders in "
           "one transaction", o->records);
    if (ks_topics_reset(bootstrap, o->partitions, why, sizeof(why)) < 0)
        goto out;
    rd_kafka_conf_t *conf = kb_conf_new(bootstrap, kv, why, sizeof(why));
    rk = conf ? rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)) : NULL;
    if (!rk) {
        if (conf) {
            snprintf(why, sizeof(why), "rd_kafka_new: %s", err);
            rd_kafka_conf_destroy(conf);
        }
        goto out;
    }
    rd_kafka_poll_set_consumer(rk);
    all = rd_kafka_topic_partition_list_new(o->partitions);
    for (int p = 0; p < o->partitions; p++)
        rd_kafka_topic_partition_list_add(all, KS_IN, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, all);
    if (e) {
        snprintf(why, sizeof(why), "rd_kafka_assign of %s: %s", KS_IN, rd_kafka_err2str(e));
        goto out;
    }
    /* librdkafka's own threads fetch meanwhile: nothing is visible before the commit. */
    if (ks_bulk_produce(bootstrap, KS_IN, o->records, o->size, o->customers, o->partitions,
                        counts, txn, &t0, why, sizeof(why)) < 0)
        goto out;
    double cpu0 = (double)clock() / CLOCKS_PER_SEC;
    for (int64_t deadline = t0 + 60000000 + o->records * 100; got < o->records && !kb_stop;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m && !m->err && !got++)
            t_first = kb_now_us();
        if (m)
            rd_kafka_message_destroy(m);
        if (kb_now_us() > deadline) {
            snprintf(why, sizeof(why), "%" PRId64 " of %ld orders read before the deadline", got,
                     o->records);
            goto out;
        }
    }
    if (kb_stop)
        goto out;
    int64_t t1 = kb_now_us();
    r->rel_cpu_s[r->rel_runs] = (double)clock() / CLOCKS_PER_SEC - cpu0;
    r->rel_first_ms[r->rel_runs] = (double)(t_first - t0) / 1000;
    r->rel_rps[r->rel_runs++] = (double)got / ((double)(t1 - t0) / 1e6);
    kb_say("  %.0f records/s from the commit to the last record (the first after %.0f ms)",
           r->rel_rps[r->rel_runs - 1], r->rel_first_ms[r->rel_runs - 1]);
    rc = 0;
out:
    if (rc < 0 && !kb_stop)
        kb_say("throughput, bare consumer waiting: %s", why);
    if (all)
        rd_kafka_topic_partition_list_destroy(all);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return rc;
}

/* One ukko run of configuration k: fresh topics, the nodes up and every partition
 * assigned, then the orders in one transaction; records/s from its commit to the
 * group's committed offsets at the end of every partition. */
static int tput_run(const char *bootstrap, const opts_t *o, int k, int run, results_t *r,
                    bool read_after)
{
    const config_t *cf = &ks_configs[k];
    tput_t *t = &r->ukko[k][r->ukko_runs[k]];
    char why[2048], txn[96], label[64];
    int rc = -1;
    ks_cluster_t c;
    rd_kafka_t *rk = NULL;
    memset(t, 0, sizeof(*t));
    t->commit_rps = t->proc_rps = -1;
    snprintf(label, sizeof(label), "type=\"%s\"", cf->app);
    kb_say("throughput, %s: fresh topics, the nodes, then %ld orders in one transaction",
           cf->label, o->records);
    if (cluster_open(&c, o, bootstrap, cf->app, why, sizeof(why)) < 0 ||
        ks_cluster_up(&c, cf->nodes, why, sizeof(why)) < 0 ||
        !(rk = ks_group_handle(bootstrap, cf->app, why, sizeof(why))))
        goto out;
    double cpu0 = cluster_cpu(&c), bcpu0 = broker_pid > 0 ? ks_cpu_s(broker_pid) : -1;
    int64_t t0 = 0, t_commit = 0, t_proc = 0, t_first = 0;
    snprintf(txn, sizeof(txn), "bench-shards-%d-%d-%d", (int)getpid(), k, run);
    /* A partition of n orders holds them at offsets 0..n-1 and the transaction's
     * commit marker at n: it is whole once the group committed n. */
    int64_t target[KB_MAX_PARTS], committed[KB_MAX_PARTS];
    if (ks_bulk_produce(bootstrap, KS_IN, o->records, o->size, o->customers, o->partitions,
                        target, txn, &t0, why, sizeof(why)) < 0)
        goto out;
    int64_t deadline = t0 + 60000000 + o->records * 200;  /* 60 s + 5,000 records/s */
    for (int i = 0; !kb_stop; i++) {
        int64_t now = kb_now_us();
        /* /metrics every 20 ms until the first record, then every 40 ms. */
        if (!t_proc && (!t_first || i % 2 == 0)) {
            double done = ks_metric_sum(&c, "ukko_kafka_records_processed_total", label);
            if (!t_first && done > 0)
                t_first = now;
            if (done >= (double)o->records)
                t_proc = now;
        }
        if (ks_committed(rk, KS_IN, o->partitions, committed) == 0) {
            int p = 0;
            while (p < o->partitions && committed[p] >= target[p])
                p++;
            if (p == o->partitions) {
                t_commit = kb_now_us();
                break;
            }
        }
        if (now > deadline) {
            double done = ks_metric_sum(&c, "ukko_kafka_records_processed_total", label);
            snprintf(why, sizeof(why), "%.0f of %ld orders processed and not every partition "
                     "committed %.0f s after the commit (logs in %s)", done, o->records,
                     (double)(now - t0) / 1e6, c.dir);
            c.keep = true;
            goto out;
        }
        usleep(20 * 1000);
    }
    if (kb_stop)
        goto out;
    if (!t_proc)
        t_proc = t_commit;  /* counted processed between two looks at /metrics */
    t->commit_rps = (double)o->records / ((double)(t_commit - t0) / 1e6);
    t->proc_rps = (double)o->records / ((double)(t_proc - t0) / 1e6);
    t->first_ms = t_first ? (double)(t_first - t0) / 1000 : -1;
    t->cpu_nodes_s = cluster_cpu(&c) - cpu0;
    t->cpu_broker_s = bcpu0 >= 0 ? ks_cpu_s(broker_pid) - bcpu0 : -1;
    for (int i = 0; i < KS_MAX_NODES; i++) {
        long h = ks_node_mem_kib(&c, i, "VmHWM");
        t->hwm_kib = h > t->hwm_kib ? h : t->hwm_kib;
    }
    r->ukko_runs[k]++;
    kb_say("  %.0f records/s to the last commit, %.0f to the last record processed; "
           "nodes used %.1f CPU s, the broker %.1f", t->commit_rps, t->proc_rps, t->cpu_nodes_s,
           t->cpu_broker_s);
    if (ks_cluster_stop(&c, 30000))
        r->failures++;
    if (read_after && !kb_stop)
        read_figures(bootstrap, o, r, r->bare_runs == 0);
    rc = 0;
out:
    if (rc < 0 && !kb_stop)
        kb_say("throughput, %s: %s", cf->label, why);
    if (rk)
        rd_kafka_destroy(rk);
    ks_cluster_destroy(&c);
    return rc;
}

/* ---- memory ---------------------------------------------------------------------- */

/* Produces one order for each customer (seqs from first) and waits until the group
 * orders committed them. 0 or -1 (why). */
static int one_round(const char *bootstrap, const opts_t *o, rd_kafka_t *rk, long first,
                     char *why, size_t why_size)
{
    kb_prod_t p;
    char key[32], value[4096], id[32];
    if (kb_prod_init(&p, bootstrap, KS_IN, o->size, why, why_size) < 0)
        return -1;
    for (long i = first; i < first + o->customers && !kb_stop; i++) {
        snprintf(id, sizeof(id), "%ld", i);
        int klen = snprintf(key, sizeof(key), "c%ld", i % o->customers);
        int vlen = ks_order(value, sizeof(value), o->size, (uint64_t)i, id);
        if (kb_prod_send_kv(&p, (uint64_t)i, key, (size_t)klen, value, (size_t)vlen) < 0)
            break;
    }
    kb_prod_flush(&p, 60000000);
    int rc = p.acked == (uint64_t)o->customers ? 0 : -1;
    if (rc < 0)
        snprintf(why, why_size, "%" PRIu64 " of %d orders acknowledged (first error: %s)",
                 p.acked, o->customers, p.first_error[0] ? p.first_error : "none");
    kb_prod_destroy(&p);
    int64_t ends[KB_MAX_PARTS], committed[KB_MAX_PARTS];
    if (rc == 0 && ks_ends(rk, KS_IN, o->partitions, ends) < 0) {
        snprintf(why, why_size, "the watermarks of %s could not be read", KS_IN);
        rc = -1;
    }
    for (int64_t end = kb_now_us() + 120000000; rc == 0 && !kb_stop; usleep(100 * 1000)) {
        int part = 0;
        if (ks_committed(rk, KS_IN, o->partitions, committed) == 0)
            while (part < o->partitions && (ends[part] == 0 || committed[part] >= ends[part]))
                part++;
        if (part == o->partitions)
            break;
        if (kb_now_us() > end) {
            snprintf(why, why_size, "partition %d committed %" PRId64 " of %" PRId64
                     " after 120 s", part, committed[part], ends[part]);
            rc = -1;
        }
    }
    return kb_stop ? -1 : rc;
}

static int rss_run(const char *bootstrap, const opts_t *o, results_t *r)
{
    char why[2048];
    int rc = -1;
    ks_cluster_t c;
    rd_kafka_t *rk = NULL;
    kb_say("memory: one node (orders app, %d partitions), then %d customers", o->partitions,
           o->customers);
    if (cluster_open(&c, o, bootstrap, "orders", why, sizeof(why)) < 0 ||
        ks_cluster_up(&c, 1, why, sizeof(why)) < 0 ||
        !(rk = ks_group_handle(bootstrap, "orders", why, sizeof(why))))
        goto out;
    nap(1000);
    r->rss_idle_kib = ks_node_mem_kib(&c, 0, "VmRSS");
    if (one_round(bootstrap, o, rk, 0, why, sizeof(why)) < 0)
        goto out;
    nap(1000);
    r->entities = ks_metric_sum(&c, "ukko_sharding_entities", "type=\"orders\"");
    r->rss_ent_kib = ks_node_mem_kib(&c, 0, "VmRSS");
    if (one_round(bootstrap, o, rk, o->customers, why, sizeof(why)) < 0)
        goto out;
    nap(1000);
    r->rss_ent2_kib = ks_node_mem_kib(&c, 0, "VmRSS");
    kb_say("  RSS %ld KiB idle, %ld KiB with %.0f live entities, %ld KiB after a second round",
           r->rss_idle_kib, r->rss_ent_kib, r->entities, r->rss_ent2_kib);
    if (ks_cluster_stop(&c, 30000))
        r->failures++;
    rc = 0;
out:
    if (rc < 0 && !kb_stop)
        kb_say("memory: %s", why);
    if (rk)
        rd_kafka_destroy(rk);
    ks_cluster_destroy(&c);
    return rc;
}

/* ---- rebalance and latency --------------------------------------------------------- */

/* Polls until every live node sees a whole table of owners owners, then until every
 * partition has an output of an order produced after that (caught up). Closes w. */
static int settle(ks_cluster_t *c, ks_reader_t *rd, int owners, ks_window_t *w, char *why,
                  size_t why_size)
{
    char seen[256] = "";
    int64_t end = kb_now_us() + 60000000, whole_us = 0;
    while (!kb_stop && !whole_us) {
        if (ks_table_whole(c, owners, seen, sizeof(seen)))
            whole_us = ks_wall_us();
        else if (kb_now_us() > end) {
            snprintf(why, why_size, "the table never sat on %d nodes: %s (logs in %s)", owners,
                     seen, c->dir);
            return -1;
        } else
            usleep(20 * 1000);
    }
    while (!kb_stop && !ks_reader_caught_up(rd, whole_us)) {
        if (kb_now_us() > end) {
            snprintf(why, why_size, "some partition processed nothing produced after the "
                     "table settled on %d nodes (logs in %s)", owners, c->dir);
            return -1;
        }
        usleep(20 * 1000);
    }
    if (kb_stop)
        return -1;
    ks_reader_window(rd, NULL);
    w->settle_us = whole_us - w->start_us;
    w->end_us = ks_wall_us();
    w->done = true;
    return 0;
}

static void window_open(ks_reader_t *rd, ks_window_t *w)
{
    memset(w, 0, sizeof(*w));
    w->gap_part = -1;
    w->exit_code = -1;
    w->start_us = ks_wall_us();
    ks_reader_window(rd, w);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of v[0..n) in ms (v sorted, us), or -1. */
static double quantile_ms(const int64_t *v, size_t n, double q)
{
    if (!n)
        return -1;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000;
}

static void latency_figures(ks_reader_t *rd, results_t *r)
{
    pthread_mutex_lock(&rd->mu);
    size_t n = rd->nlat;
    qsort(rd->lat_read, n, sizeof(int64_t), cmp_i64);
    qsort(rd->lat_stamp, n, sizeof(int64_t), cmp_i64);
    r->lat_n = n;
    r->lat_p50 = quantile_ms(rd->lat_read, n, 0.50);
    r->lat_p99 = quantile_ms(rd->lat_read, n, 0.99);
    r->lat_max = quantile_ms(rd->lat_read, n, 1.0);
    r->stamp_p50 = quantile_ms(rd->lat_stamp, n, 0.50);
    r->stamp_p99 = quantile_ms(rd->lat_stamp, n, 0.99);
    pthread_mutex_unlock(&rd->mu);
}

static int reb_run(const char *bootstrap, const opts_t *o, results_t *r)
{
    char why[2048] = "";
    int rc = -1;
    unsigned seed = (unsigned)kb_now_us() ^ (unsigned)getpid();
    uint64_t cap = (uint64_t)o->rate * 3600;  /* an hour of orders */
    ks_cluster_t c;
    ks_reader_t rd;  /* zeroed: ks_reader_free'd on every path */
    ks_pacer_t pacer;
    memset(&rd, 0, sizeof(rd));
    memset(&pacer, 0, sizeof(pacer));
    kb_say("rebalance: 3 nodes (orders app), %d orders/s", o->rate);
    if (cluster_open(&c, o, bootstrap, "orders", why, sizeof(why)) < 0 ||
        ks_cluster_up(&c, 3, why, sizeof(why)) < 0)
        goto out;
    if (ks_reader_start(&rd, bootstrap, o->partitions, cap,
                        (size_t)o->rate * (size_t)o->steady_s * 2 + 1000, why, sizeof(why)) < 0 ||
        ks_pacer_start(&pacer, bootstrap, o->rate, o->size, o->customers, cap, why,
                       sizeof(why)) < 0)
        goto out;
    /* Flowing on every partition, then the latency sample. */
    int64_t t_flow = ks_wall_us();
    for (int64_t end = kb_now_us() + 60000000; !ks_reader_caught_up(&rd, t_flow + 1000000);) {
        if (kb_stop)
            goto out;
        if (kb_now_us() > end) {
            snprintf(why, sizeof(why), "orders did not flow through every partition in 60 s "
                     "(logs in %s)", c.dir);
            goto out;
        }
        usleep(50 * 1000);
    }
    int64_t lat_from = ks_wall_us();
    ks_reader_latency(&rd, lat_from, lat_from + (int64_t)o->steady_s * 1000000);
    kb_say("rebalance: orders flow; %d s of latency", o->steady_s);
    nap(o->steady_s * 1000);
    for (int64_t end = kb_now_us() + 30000000;
         !kb_stop && !ks_reader_caught_up(&rd, lat_from + (int64_t)o->steady_s * 1000000);)
        if (kb_now_us() > end)
            break;
        else
            usleep(20 * 1000);
    latency_figures(&rd, r);

    for (int cy = 0; cy < o->runs && !kb_stop; cy++) {
        /* A random moment of the gossip and commit intervals, as the baseline's steps
         * fall at random phases of its heartbeats. */
        nap(rand_r(&seed) % 1000);
        ks_window_t *w = &r->join[cy];
        window_open(&rd, w);
        if (ks_node_start(&c, 3, why, sizeof(why)) < 0 ||
            ks_node_ready(&c, 3, 60000, why, sizeof(why)) < 0 ||
            settle(&c, &rd, 4, w, why, sizeof(why)) < 0)
            goto out;
        nap(rand_r(&seed) % 1000);
        w = &r->leave[cy];
        window_open(&rd, w);
        pid_t leaving = c.n[3].pid;
        c.n[3].pid = 0;  /* no longer asked for its view of the table */
        kill(leaving, SIGTERM);
        if (settle(&c, &rd, 3, w, why, sizeof(why)) < 0) {
            ut_stop(leaving, SIGKILL, 5000);
            goto out;
        }
        w->exit_code = ut_wait_exit(leaving, 30000);
        if (w->exit_code != 0)
            kb_say("rebalance: the 4th node exited %d after SIGTERM", w->exit_code);
        r->cycles = cy + 1;
        kb_say("rebalance: cycle %d: join settled in %.2f s (longest gap %.0f ms), leave in "
               "%.2f s (longest gap %.0f ms)", cy + 1, (double)r->join[cy].settle_us / 1e6,
               (double)r->join[cy].gap_part_us / 1000, (double)w->settle_us / 1e6,
               (double)w->gap_part_us / 1000);
    }
    if (kb_stop)
        goto out;
    /* Every order the broker acknowledged must come out (at-least-once). */
    ks_pacer_stop(&pacer);
    r->reb_produced = (int64_t)pacer.p.acked;
    uint64_t missing = 0;
    for (int64_t end = kb_now_us() + 60000000; !kb_stop; usleep(100 * 1000)) {
        missing = ks_reader_missing(&rd, pacer.p.acked_bits, cap);
        if (!missing || kb_now_us() > end)
            break;
    }
    r->reb_lost = (int64_t)missing;
    pthread_mutex_lock(&rd.mu);
    r->reb_dups = (int64_t)rd.dups;
    r->reb_bad = (int64_t)rd.bad;
    pthread_mutex_unlock(&rd.mu);
    if (missing)
        kb_say("rebalance: %" PRIu64 " acknowledged orders never came out", missing);
    if (pacer.p.failed)
        kb_say("rebalance: %" PRIu64 " orders not acknowledged (first: %s)", pacer.p.failed,
               pacer.p.first_error);
    r->reb_done = true;
    if (ks_cluster_stop(&c, 30000))
        r->failures++;
    rc = missing ? -1 : 0;
out:
    if (rc < 0 && why[0] && !kb_stop)
        kb_say("rebalance: %s", why);
    ks_pacer_free(&pacer);
    ks_reader_free(&rd);
    ks_cluster_destroy(&c);
    return rc;
}

/* ---- main -------------------------------------------------------------------- */

static void run_all(const char *bootstrap, const opts_t *o, results_t *r)
{
    if (o->parts & PART_TPUT) {
        for (int k = 0; k < NCONFIGS; k++)
            r->config_on[k] = !o->quick || k == 0;
        for (int run = 0; run < o->runs && !kb_stop; run++)
            for (int k = 0; k < NCONFIGS && !kb_stop; k++) {
                if (r->config_on[k] && tput_run(bootstrap, o, k, run, r, k == 0) < 0)
                    r->failures++;
                if (k == 0 && !kb_stop && bare_released(bootstrap, o, run, r) < 0)
                    r->failures++;
            }
    }
    if ((o->parts & PART_RSS) && !kb_stop && rss_run(bootstrap, o, r) < 0)
        r->failures++;
    if ((o->parts & PART_REB) && !kb_stop && reb_run(bootstrap, o, r) < 0)
        r->failures++;
    if (o->parts & PART_GROUP) {
        static const char *const strategies[] = {"cooperative-sticky", "range"};
        kb_opts_t ko = {.records = o->records, .partitions = o->partitions, .size = o->size,
                        .rate = o->rate, .runs = o->runs, .quick = o->quick,
                        .steady_us = o->quick ? 2000000 : 5000000};
        for (int k = 0; k < (o->quick ? 1 : 2) && !kb_stop; k++) {
            kb_say("consumer group, %s: 3 members, %d records/s", strategies[k], o->rate);
            r->grp_on[k] = true;
            if (kb_group_run(bootstrap, &ko, strategies[k], &r->grp[k]) < 0 || r->grp[k].lost)
                r->failures++;
        }
    }
}

int main(int argc, char **argv)
{
    kb_prog = "bench_kafka_shards";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--member"))
            return member_main(argc, argv);
    opts_t o;
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    ssize_t n = readlink("/proc/self/exe", kb_self, sizeof(kb_self) - 1);
    if (n <= 0) {
        kb_say("readlink /proc/self/exe: %s", strerror(errno));
        return 1;
    }
    kb_self[n] = 0;
    if (access(o.ukko, X_OK) < 0) {
        kb_say("%s: %s: build it (scripts/build.sh) or give --ukko PATH", o.ukko,
               strerror(errno));
        return 2;
    }
    struct sigaction sa = {.sa_handler = kb_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    results_t *r = calloc(1, sizeof(*r));
    ukko_kafka_rig_t rig = {0};
    r->load_start = kb_loadavg();
    kb_say("starting a Kafka broker (tests/kafka/broker.sh, KRaft, one node) on %s", KS_HOST);
    int s = kb_rig_start(&rig, KS_HOST, r->bootstrap, sizeof(r->bootstrap), r->broker,
                         sizeof(r->broker), r->skipped, sizeof(r->skipped));
    if (s != 0) {
        ukko_kafka_rig_stop(&rig);
        if (s == 1)
            printf("SKIPPED: no real Kafka (%s)\n", r->skipped);
        r->load_end = kb_loadavg();
        ks_print_json(r, &o);
        free(r);
        return s == 1 ? 0 : 1;
    }
    broker_pid = ukko_kafka_rig_pid(&rig, 1);
    kb_say("broker: Apache Kafka %s at %s", r->broker, r->bootstrap);
    run_all(r->bootstrap, &o, r);
    r->load_end = kb_loadavg();
    ukko_kafka_rig_stop(&rig);
    if (kb_stop) {
        kb_say("stopped by a signal: figures not measured are null");
        r->failures++;
    }
    ks_print_table(r, &o);
    ks_print_json(r, &o);
    int rc = r->failures ? 1 : 0;
    free(r);
    return rc;
}
