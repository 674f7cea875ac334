/* Integration: the Kafka feed of streams/ (source.c, committer.c,
 * producer.c, watermark.c, orders.c) against a real Apache Kafka broker
 * (tests/kafka/broker.sh), in this process over the stand-in sharding, one
 * node owning every partition: 50,000 orders produced by kcat all reach
 * orders-processed in per-customer order; a hand-off commits so that a
 * restart repeats nothing; a poison record lands in the dead-letter topic
 * once and its partition goes on; a slow handler pauses its partition and
 * loses nothing. SKIPPED where no real Kafka can run. */
#include "feed_support.h"
#include "ukko_kafka.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ukko_kafka_rig_t rig;

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    ukko_kafka_rig_share(&rig, NULL);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    ukko_kafka_rig_stop(&rig);
}

static void attach(ukko_kafka_rig_t *k)
{
    int rc = ukko_kafka_rig_attach(k);
    if (rc == UKKO_KAFKA_RIG_SKIP) {
        printf("%s\n", k->why);
        fflush(stdout);
        cr_skip_test("%s", k->why);
    }
    cr_assert_eq(rc, 0, "the Kafka rig did not start: %s", k->why);
}

static void topic(ukko_kafka_rig_t *k, const char *name, int partitions)
{
    cr_assert_eq(ukko_kafka_rig_topic(k, name, partitions, 0), 0, "topic %s: %s", name, k->why);
}

/* N orders over `customers` customers: "c<i>\t{...}\n" lines. */
static char *orders_lines(int n, int customers, int first_id)
{
    size_t cap = (size_t)n * 64 + 1;
    char *s = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len,
                                "c%d\t{\"order_id\":\"o%d\",\"amount\":%d.%02d}\n",
                                (i * 7919) % customers, first_id + i, 1 + i % 90, i % 100);
    return s;
}

typedef struct until_done {
    const char *type;
    uint64_t n;
    const int64_t *ends;
    int partitions;
} until_done_t;

/* Every record acknowledged and its offset committed. */
static bool all_done(feed_t *f, void *arg)
{
    until_done_t *u = arg;
    return feed_done(f, u->type) >= u->n && feed_committed(f, u->type, u->ends, u->partitions);
}

Test(feed_kafka, orders_50000_records_all_reach_the_output_in_customer_order, .timeout = 600)
{
    ukko_kafka_rig_t k;
    attach(&k);
    topic(&k, "orders", 12);
    topic(&k, "orders-processed", 12);
    topic(&k, "orders.dlq", 1);
    char *lines = orders_lines(50000, 500, 0);
    kc_produce(k.bootstrap, "orders", lines);
    free(lines);
    krec_t *in;
    size_t nin = kc_read(k.bootstrap, "orders", &in);
    cr_assert_eq(nin, 50000, "kcat put %zu of 50000 orders in the topic", nin);
    int64_t ends[12];
    kc_ends(in, nin, ends, 12);

    /* A small in-flight bound so that partitions pause and resume often. */
    const char *env[] = {"UKKO_KAFKA_MAX_IN_FLIGHT=64", "UKKO_KAFKA_RESUME_IN_FLIGHT=32", NULL};
    feed_t f;
    feed_open(&f, k.bootstrap, env);
    feed_add(&f, &ukko_orders_type.type, ukko_orders_type.topic);
    int64_t t0 = ukko_now_ms();
    feed_start(&f, "orders");
    cr_assert_eq(fs_shards(f.sh, "orders"), 12, "12 partitions, so 12 shards");
    until_done_t u = {"orders", 50000, ends, 12};
    feed_run_until(&f, all_done, &u, 300000, "50,000 orders handled and committed");
    printf("orders: 50,000 handled and committed in %lld ms (one node, 12 partitions)\n",
           (long long)(ukko_now_ms() - t0));

    streams__source_t *src = feed_source(&f, "orders");
    cr_assert_eq(src->mismatched, 0, "kcat used murmur2: every key is in its entity's partition");
    uint64_t pauses = 0;
    for (streams__part_t *p = src->parts; p; p = p->next) {
        cr_assert_leq(p->max_open, 64, "partition %d held %llu records open, above the bound 64",
                      p->partition, (unsigned long long)p->max_open);
        pauses += p->pauses;
    }
    printf("orders: partitions paused %llu times under kafka.max-in-flight 64\n",
           (unsigned long long)pauses);
    feed_close(&f);

    krec_t *out;
    size_t nout = kc_read(k.bootstrap, "orders-processed", &out);
    cr_assert_geq(nout, 50000, "orders-processed holds %zu records, fewer than the 50000 orders",
                  nout);
    check_complete(in, nin, out, nout, true, true);
    for (size_t i = 0; i < nout; i++) {
        cr_assert(strstr(out[i].value, "\"node\":\"test-node:7355\""),
                  "the output names the node that handled it: %s", out[i].value);
        /* ukko's producer places keys as Kafka's Java clients do, so the
         * output feeds the next stage's shards (murmur2, not CRC32). */
        cr_assert_eq(out[i].partition, ukko_shard_of(out[i].key, strlen(out[i].key), 12),
                     "output key %s is in partition %d, not its murmur2 partition %d",
                     out[i].key, out[i].partition,
                     ukko_shard_of(out[i].key, strlen(out[i].key), 12));
    }
    kc_free(in, nin);
    kc_free(out, nout);
}

static tally_cfg_t handoff_cfg = {.out = "handoff-out"};
static const ukko_entity_type_t handoff_type = {
    .name = "handoff",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &handoff_cfg,
};

Test(feed_kafka, a_handoff_commits_so_a_restart_repeats_nothing, .timeout = 300)
{
    ukko_kafka_rig_t k;
    attach(&k);
    topic(&k, "handoff-in", 4);
    topic(&k, "handoff-out", 4);
    char *lines = orders_lines(2000, 50, 0);
    kc_produce(k.bootstrap, "handoff-in", lines);
    free(lines);
    krec_t *in;
    size_t nin = kc_read(k.bootstrap, "handoff-in", &in);
    int64_t ends[4];
    kc_ends(in, nin, ends, 4);
    kc_free(in, nin);

    /* Commits only at the hand-off: the batch and the interval never come. */
    const char *env[] = {"UKKO_KAFKA_COMMIT_MAX_BATCH=1000000", "UKKO_KAFKA_COMMIT_MAX_INTERVAL=10m",
                         NULL};
    feed_t f;
    feed_open(&f, k.bootstrap, env);
    feed_add(&f, &handoff_type, "handoff-in");
    feed_start(&f, "handoff");
    until_done_t u = {"handoff", 2000, ends, 0};
    feed_run_until(&f, all_done, &u, 120000, "2,000 records handled");
    streams__source_t *src = feed_source(&f, "handoff");
    cr_assert_eq(src->committer.commits, 0, "nothing committed before the hand-off");
    feed_stop_shards(&f, "handoff", false, 60000);
    cr_assert_eq(src->parts, NULL, "every partition was given up after its hand-off");
    cr_assert_geq(src->committer.commits, 1, "the hand-off committed");
    feed_close(&f);

    lines = orders_lines(1000, 50, 2000);
    kc_produce(k.bootstrap, "handoff-in", lines);
    free(lines);
    nin = kc_read(k.bootstrap, "handoff-in", &in);
    cr_assert_eq(nin, 3000);
    kc_ends(in, nin, ends, 4);

    /* The next owner: same group (the type's name), a new process's view. */
    feed_open(&f, k.bootstrap, NULL);
    feed_add(&f, &handoff_type, "handoff-in");
    feed_start(&f, "handoff");
    until_done_t u2 = {"handoff", 1000, ends, 4};
    feed_run_until(&f, all_done, &u2, 120000, "the 1,000 new records handled and committed");
    cr_assert_eq(feed_done(&f, "handoff"), 1000,
                 "the restart handled %llu records: it must start at the hand-off's commit "
                 "and handle only the 1,000 new ones",
                 (unsigned long long)feed_done(&f, "handoff"));
    feed_close(&f);

    krec_t *out;
    size_t nout = kc_read(k.bootstrap, "handoff-out", &out);
    cr_assert_eq(nout, 3000, "3000 inputs, %zu outputs: no loss, no duplicate", nout);
    check_complete(in, nin, out, nout, true, false); /* counts restart with the process */
    kc_free(in, nin);
    kc_free(out, nout);
}

static tally_cfg_t poison_cfg = {.out = "poison-out"};
static const ukko_entity_type_t poison_type = {
    .name = "poison",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &poison_cfg,
};

Test(feed_kafka, a_poison_record_lands_in_the_dead_letter_topic_once, .timeout = 300)
{
    ukko_kafka_rig_t k;
    attach(&k);
    topic(&k, "poison-in", 2);
    topic(&k, "poison-out", 2);
    topic(&k, "poison-in.dlq", 1);
    ukko_buf_t lines;
    ukko_buf_init(&lines, 0);
    for (int i = 0; i < 200; i++)
        (void)ukko_buf_printf(&lines, "k%d\t{\"n\":%d%s}\n", i % 10, i,
                              i == 57 ? ",\"poison\":true" : "");
    kc_produce(k.bootstrap, "poison-in", lines.data);
    ukko_buf_destroy(&lines);
    krec_t *in;
    size_t nin = kc_read(k.bootstrap, "poison-in", &in);
    int64_t ends[2];
    kc_ends(in, nin, ends, 2);

    const char *env[] = {"UKKO_KAFKA_MAX_RETRIES=2", "UKKO_KAFKA_RETRY_BACKOFF=10ms", NULL};
    feed_t f;
    feed_open(&f, k.bootstrap, env);
    feed_add(&f, &poison_type, "poison-in");
    feed_start(&f, "poison");
    until_done_t u = {"poison", 200, ends, 2};
    feed_run_until(&f, all_done, &u, 120000, "200 records handled or dead-lettered, committed");
    streams__source_t *src = feed_source(&f, "poison");
    uint64_t dead = 0, failed = 0;
    for (streams__part_t *p = src->parts; p; p = p->next) {
        dead += p->dead_letters;
        failed += p->failed;
    }
    cr_assert_eq(dead, 1, "one dead letter, not %llu", (unsigned long long)dead);
    cr_assert_eq(failed, 3, "the first attempt and 2 retries failed, not %llu",
                 (unsigned long long)failed);
    feed_close(&f);

    const krec_t *poison = NULL;
    krec_t *rest = calloc(nin, sizeof(*rest)); /* shallow copies: the rest must all be out */
    size_t kept = 0;
    for (size_t i = 0; i < nin; i++) {
        if (strstr(in[i].value, "poison"))
            poison = &in[i];
        else
            rest[kept++] = in[i];
    }
    cr_assert(poison);
    int pp = poison->partition;
    long long po = poison->offset;
    krec_t *dlq;
    size_t ndlq = kc_read(k.bootstrap, "poison-in.dlq", &dlq);
    cr_assert_eq(ndlq, 1, "the dead-letter topic holds %zu records, not exactly one", ndlq);
    char want[128];
    snprintf(want, sizeof(want), "ukko.dlq.partition=%d", pp);
    cr_assert(strstr(dlq[0].headers, "ukko.dlq.topic=poison-in"), "origin topic in: %s",
              dlq[0].headers);
    cr_assert(strstr(dlq[0].headers, want), "origin partition %d in: %s", pp, dlq[0].headers);
    snprintf(want, sizeof(want), "ukko.dlq.offset=%lld", po);
    cr_assert(strstr(dlq[0].headers, want), "origin offset %lld in: %s", po, dlq[0].headers);
    cr_assert(strstr(dlq[0].headers, "ukko.dlq.error=a poison record"), "the error in: %s",
              dlq[0].headers);
    cr_assert(strstr(dlq[0].value, "poison"), "the record's own value: %s", dlq[0].value);

    krec_t *out;
    size_t nout = kc_read(k.bootstrap, "poison-out", &out);
    cr_assert_eq(nout, 199);
    check_complete(rest, kept, out, nout, true, true);
    free(rest);
    kc_free(in, nin);
    kc_free(dlq, ndlq);
    kc_free(out, nout);
}

static tally_cfg_t slow_cfg = {.out = "slow-out", .sleep_us = 300};
static const ukko_entity_type_t slow_type = {
    .name = "slow",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &slow_cfg,
};

Test(feed_kafka, a_slow_handler_pauses_its_partition_and_loses_nothing, .timeout = 300)
{
    ukko_kafka_rig_t k;
    attach(&k);
    topic(&k, "slow-in", 1);
    topic(&k, "slow-out", 1);
    char *lines = orders_lines(3000, 1, 0); /* one entity: strictly one at a time */
    kc_produce(k.bootstrap, "slow-in", lines);
    free(lines);
    krec_t *in;
    size_t nin = kc_read(k.bootstrap, "slow-in", &in);
    int64_t ends[1];
    kc_ends(in, nin, ends, 1);
    const char *env[] = {"UKKO_KAFKA_MAX_IN_FLIGHT=50", "UKKO_KAFKA_RESUME_IN_FLIGHT=10", NULL};
    feed_t f;
    feed_open(&f, k.bootstrap, env);
    feed_add(&f, &slow_type, "slow-in");
    feed_start(&f, "slow");
    until_done_t u = {"slow", 3000, ends, 1};
    feed_run_until(&f, all_done, &u, 120000, "3,000 records handled and committed");
    streams__part_t *p = feed_source(&f, "slow")->parts;
    cr_assert(p);
    cr_assert_geq(p->pauses, 1, "a handler slower than the fetch must pause the partition");
    cr_assert_leq(p->max_open, 50, "at most 50 records open, saw %llu",
                  (unsigned long long)p->max_open);
    cr_assert_eq(p->paused, false, "resumed once the records were done");
    feed_close(&f);
    krec_t *out;
    size_t nout = kc_read(k.bootstrap, "slow-out", &out);
    cr_assert_eq(nout, 3000);
    check_complete(in, nin, out, nout, true, true);
    kc_free(in, nin);
    kc_free(out, nout);
}

static tally_cfg_t again_cfg = {.out = "again-out"};
static const ukko_entity_type_t again_type = {
    .name = "again",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &again_cfg,
};

Test(feed_kafka, a_shard_handed_off_and_started_again_here_reads_on, .timeout = 300)
{
    ukko_kafka_rig_t k;
    attach(&k);
    topic(&k, "again-in", 2);
    topic(&k, "again-out", 2);
    char *lines = orders_lines(500, 20, 0);
    kc_produce(k.bootstrap, "again-in", lines);
    free(lines);
    krec_t *in;
    size_t nin = kc_read(k.bootstrap, "again-in", &in);
    int64_t ends[2];
    kc_ends(in, nin, ends, 2);
    kc_free(in, nin);
    feed_t f;
    feed_open(&f, k.bootstrap, NULL);
    feed_add(&f, &again_type, "again-in");
    feed_start(&f, "again");
    until_done_t u = {"again", 500, ends, 2};
    feed_run_until(&f, all_done, &u, 120000, "500 records handled and committed");
    /* The shards move away and come back to this node (a rebalance and
     * its reverse): the partitions must fetch again. */
    feed_stop_shards(&f, "again", false, 60000);
    cr_assert_eq(fs_start_shards(f.sh, "again"), 0);
    lines = orders_lines(500, 20, 500);
    kc_produce(k.bootstrap, "again-in", lines);
    free(lines);
    nin = kc_read(k.bootstrap, "again-in", &in);
    kc_ends(in, nin, ends, 2);
    until_done_t u2 = {"again", 500, ends, 2};
    feed_run_until(&f, all_done, &u2, 120000, "the 500 new records, after the shards came back");
    feed_close(&f);
    krec_t *out;
    size_t nout = kc_read(k.bootstrap, "again-out", &out);
    cr_assert_eq(nout, 1000, "1000 inputs, %zu outputs", nout);
    check_complete(in, nin, out, nout, true, true);
    kc_free(in, nin);
    kc_free(out, nout);
}

static tally_cfg_t downed_cfg = {.out = "downed-out"};
static const ukko_entity_type_t downed_type = {
    .name = "downed",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &downed_cfg,
};

static double metric(const char *text, const char *sample)
{
    const char *p = strstr(text, sample);
    return p ? atof(p + strlen(sample)) : -1;
}

typedef struct lag_wait {
    const char *sample;
} lag_wait_t;

static bool lag_known(feed_t *f, void *arg)
{
    ukko_buf_t b;
    ukko_buf_init(&b, 0);
    ukko_streams_metrics(&b, f->st);
    bool ok = metric(b.data, ((lag_wait_t *)arg)->sample) == 0;
    ukko_buf_destroy(&b);
    return ok;
}

Test(feed_kafka, metrics_then_a_stop_at_once_commits_what_is_acknowledged, .timeout = 300)
{
    ukko_kafka_rig_t k;
    attach(&k);
    topic(&k, "downed-in", 2);
    topic(&k, "downed-out", 2);
    char *lines = orders_lines(400, 20, 0);
    kc_produce(k.bootstrap, "downed-in", lines);
    free(lines);
    krec_t *in;
    size_t nin = kc_read(k.bootstrap, "downed-in", &in);
    int64_t ends[2];
    kc_ends(in, nin, ends, 2);
    kc_free(in, nin);
    /* No batch or interval commit: only the stop commits. */
    const char *env[] = {"UKKO_KAFKA_COMMIT_MAX_BATCH=1000000", "UKKO_KAFKA_COMMIT_MAX_INTERVAL=10m",
                         NULL};
    feed_t f;
    feed_open(&f, k.bootstrap, env);
    feed_add(&f, &downed_type, "downed-in");
    feed_start(&f, "downed");
    until_done_t u = {"downed", 400, ends, 0};
    feed_run_until(&f, all_done, &u, 120000, "400 records handled");

    /* /metrics: per partition, the processed records, in flight, paused,
     * and the lag against the broker's high watermark once committed. */
    ukko_buf_t b;
    ukko_buf_init(&b, 0);
    ukko_streams_metrics(&b, f.st);
    char s0[128], s1[128];
    snprintf(s0, sizeof(s0),
             "ukko_kafka_records_processed_total{type=\"downed\",topic=\"downed-in\",partition=\"0\"} ");
    snprintf(s1, sizeof(s1),
             "ukko_kafka_records_processed_total{type=\"downed\",topic=\"downed-in\",partition=\"1\"} ");
    cr_assert_eq(metric(b.data, s0) + metric(b.data, s1), 400, "processed per partition: %s",
                 b.data);
    cr_assert(strstr(b.data, "ukko_kafka_in_flight{type=\"downed\",topic=\"downed-in\",partition=\"0\"} 0"),
              "nothing in flight: %s", b.data);
    cr_assert(strstr(b.data, "ukko_kafka_partitions_paused{type=\"downed\",topic=\"downed-in\"} 0"));
    cr_assert(strstr(b.data, "# TYPE ukko_kafka_commit_latency_seconds histogram"));
    ukko_buf_destroy(&b);

    /* A downed node: its shards stop at once; what is acknowledged is
     * committed before each stopped callback. */
    feed_stop_shards(&f, "downed", true, 30000);
    streams__source_t *src = feed_source(&f, "downed");
    cr_assert_eq(src->parts, NULL, "every partition given up");
    cr_assert_geq(src->committer.commits, 1, "the stop committed");
    cr_assert_eq(src->handoffs, 2);
    feed_close(&f);

    /* The next owner starts where the stop committed: nothing to do. */
    feed_open(&f, k.bootstrap, NULL);
    feed_add(&f, &downed_type, "downed-in");
    feed_start(&f, "downed");
    lag_wait_t lw = {"ukko_kafka_lag_records{type=\"downed\",topic=\"downed-in\",partition=\"0\"} "};
    lines = orders_lines(10, 20, 400);
    kc_produce(k.bootstrap, "downed-in", lines);
    free(lines);
    nin = kc_read(k.bootstrap, "downed-in", &in);
    kc_ends(in, nin, ends, 2);
    kc_free(in, nin);
    until_done_t u2 = {"downed", 10, ends, 2};
    feed_run_until(&f, all_done, &u2, 120000, "the 10 new records");
    cr_assert_eq(feed_done(&f, "downed"), 10, "only the new records: the stop had committed 400");
    if (ends[0] > 0)
        feed_run_until(&f, lag_known, &lw, 30000, "partition 0's lag to read 0");
    feed_close(&f);
}

static tally_cfg_t crc_cfg = {.out = "crc-out"};
static const ukko_entity_type_t crc_type = {
    .name = "crc",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &crc_cfg,
};

Test(feed_kafka, records_not_keyed_by_murmur2_are_handled_and_counted_and_traces_carry_over,
     .timeout = 300)
{
    ukko_kafka_rig_t k;
    attach(&k);
    topic(&k, "crc-in", 4);
    topic(&k, "crc-out", 4);
    /* kcat's own default partitioner (consistent_random: CRC32), not
     * Kafka's murmur2; and a trace context on every record. */
    ukko_buf_t lines;
    ukko_buf_init(&lines, 0);
    for (int i = 0; i < 200; i++)
        (void)ukko_buf_printf(&lines, "key%d\t{\"n\":%d}\n", i, i);
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "kcat -P -b '%s' -t crc-in -K '\t' -H 'traceparent=%s'",
             k.bootstrap, tp);
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    cr_assert_eq(ut_run(cmd, lines.data, &out), 0, "kcat: %s", out.data);
    ukko_buf_destroy(&out);
    ukko_buf_destroy(&lines);
    krec_t *in;
    size_t nin = kc_read(k.bootstrap, "crc-in", &in);
    int64_t ends[4];
    kc_ends(in, nin, ends, 4);

    feed_t f;
    feed_open(&f, k.bootstrap, NULL);
    feed_add(&f, &crc_type, "crc-in");
    feed_start(&f, "crc");
    until_done_t u = {"crc", 200, ends, 4};
    feed_run_until(&f, all_done, &u, 120000, "200 records handled and committed");
    streams__source_t *src = feed_source(&f, "crc");
    cr_assert_gt(src->mismatched, 0, "CRC32-placed keys hash elsewhere under murmur2");
    cr_assert(src->warned_mismatch, "and that was warned about (once)");
    feed_close(&f);

    krec_t *o;
    size_t no = kc_read(k.bootstrap, "crc-out", &o);
    cr_assert_eq(no, 200);
    check_complete(in, nin, o, no, true, true);
    char want[100];
    snprintf(want, sizeof(want), "traceparent=%s", tp);
    for (size_t i = 0; i < no; i++)
        cr_assert(strstr(o[i].headers, want), "the input's traceparent on the output: %s",
                  o[i].headers);
    kc_free(in, nin);
    kc_free(o, no);
}

static tally_cfg_t gone_cfg = {.out = "gone-out"};
static const ukko_entity_type_t gone_type = {
    .name = "gone",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &gone_cfg,
};

typedef struct gone_seen {
    uint64_t failed, dead, cancelled;
} gone_seen_t;

static void gone_count(feed_t *f, gone_seen_t *g)
{
    memset(g, 0, sizeof(*g));
    for (streams__part_t *p = feed_source(f, "gone")->parts; p; p = p->next) {
        g->failed += p->failed;
        g->dead += p->dead_letters;
        g->cancelled += p->cancelled;
    }
}

static bool poison_failed_rest_done(feed_t *f, void *arg)
{
    (void)arg;
    gone_seen_t g;
    gone_count(f, &g);
    return g.failed >= 1 && feed_done(f, "gone") >= 19;
}

static bool retry_settled(feed_t *f, void *arg)
{
    (void)arg;
    gone_seen_t g;
    gone_count(f, &g);
    return g.cancelled >= 1 || g.dead >= 1;
}

/* A record waiting to be tried again when its shard is gone from this node
 * (sharding answers UKKO_ENOENT): it is left to the next owner, neither
 * counted as a handler failure nor dead-lettered (a dead letter would also
 * commit past it). */
Test(feed_kafka, a_record_retried_after_its_shard_is_gone_is_not_dead_lettered, .timeout = 300)
{
    ukko_kafka_rig_t k;
    attach(&k);
    topic(&k, "gone-in", 1);
    topic(&k, "gone-out", 1);
    topic(&k, "gone-in.dlq", 1);
    ukko_buf_t lines;
    ukko_buf_init(&lines, 0);
    for (int i = 0; i < 20; i++)
        (void)ukko_buf_printf(&lines, "k%d\t{\"n\":%d%s}\n", i % 5, i,
                              i == 5 ? ",\"poison\":true" : "");
    kc_produce(k.bootstrap, "gone-in", lines.data);
    ukko_buf_destroy(&lines);

    const char *env[] = {"UKKO_KAFKA_MAX_RETRIES=3", "UKKO_KAFKA_RETRY_BACKOFF=1s", NULL};
    feed_t f;
    feed_open(&f, k.bootstrap, env);
    feed_add(&f, &gone_type, "gone-in");
    feed_start(&f, "gone");
    feed_run_until(&f, poison_failed_rest_done, NULL, 60000,
                   "the poison record failed once, the 19 others handled");
    /* the shard is gone from the sharding (as after a stop at once) while
     * the record waits for its retry */
    fs_stop(f.sh);
    feed_run_until(&f, retry_settled, NULL, 60000, "the waiting record settled");
    gone_seen_t g;
    gone_count(&f, &g);
    cr_expect_eq(g.dead, 0, "no dead letter for a record whose shard is gone (%llu)",
                 (unsigned long long)g.dead);
    cr_expect_eq(g.failed, 1, "only the handler's own failure counts, not %llu",
                 (unsigned long long)g.failed);
    cr_expect_geq(g.cancelled, 1, "the record is left to the next owner");
    feed_close(&f);
}
