/* Integration: the Kafka feed of streams/ (source.c, committer.c,
 * producer.c) while its real Kafka broker (tests/kafka/broker.sh, this
 * file's own) is paused with SIGSTOP, then killed with -9 and restarted on
 * its data, with records in flight: nothing is lost (at-least-once: a
 * repeat is allowed, and counted). In this process over the stand-in
 * sharding. SKIPPED where no real Kafka can run. */
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

typedef struct until_done {
    const char *type;
    uint64_t n;
    const int64_t *ends;
    int partitions;
} until_done_t;

static bool all_done(feed_t *f, void *arg)
{
    until_done_t *u = arg;
    return feed_done(f, u->type) >= u->n && feed_committed(f, u->type, u->ends, u->partitions);
}

static bool done_at_least(feed_t *f, void *arg)
{
    return feed_done(f, "outage") >= *(uint64_t *)arg;
}

static bool time_passed(feed_t *f, void *arg)
{
    (void)f;
    return ukko_now_ms() >= *(int64_t *)arg;
}

/* Keeps the loop running through a fault lasting ms (nothing is asserted
 * about what happens meanwhile). */
static void ride_out(feed_t *f, int ms)
{
    int64_t until = ukko_now_ms() + ms;
    feed_run_until(f, time_passed, &until, ms + 60000, "the fault's duration");
}

static void produce(ukko_kafka_rig_t *k, int n, int first)
{
    ukko_buf_t lines;
    ukko_buf_init(&lines, 0);
    for (int i = first; i < first + n; i++)
        (void)ukko_buf_printf(&lines, "k%d\t{\"n\":%d}\n", i % 30, i);
    kc_produce(k->bootstrap, "outage-in", lines.data);
    ukko_buf_destroy(&lines);
}

static tally_cfg_t outage_cfg = {.out = "outage-out", .sleep_us = 500};
static const ukko_entity_type_t outage_type = {
    .name = "outage",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &outage_cfg,
};

Test(feed_broker_faults, a_paused_then_killed_broker_loses_nothing, .timeout = 600)
{
    ukko_kafka_rig_t k;
    int rc = ukko_kafka_rig_attach(&k);
    if (rc == UKKO_KAFKA_RIG_SKIP) {
        printf("%s\n", k.why);
        fflush(stdout);
        cr_skip_test("%s", k.why);
    }
    cr_assert_eq(rc, 0, "%s", k.why);
    cr_assert_eq(ukko_kafka_rig_topic(&k, "outage-in", 3, 0), 0, "%s", k.why);
    cr_assert_eq(ukko_kafka_rig_topic(&k, "outage-out", 3, 0), 0, "%s", k.why);
    produce(&k, 3000, 0);

    const char *env[] = {"UKKO_KAFKA_COMMIT_MAX_BATCH=100", "UKKO_KAFKA_MAX_IN_FLIGHT=100",
                         "UKKO_KAFKA_RESUME_IN_FLIGHT=50", NULL};
    feed_t f;
    feed_open(&f, k.bootstrap, env);
    feed_add(&f, &outage_type, "outage-in");
    feed_start(&f, "outage");
    uint64_t some = 500;
    feed_run_until(&f, done_at_least, &some, 120000, "500 records handled");

    /* The broker stops answering for 4 s (a GC pause, a frozen VM). */
    cr_assert_eq(ukko_kafka_rig_pause(&k, 1), 0, "%s", k.why);
    ride_out(&f, 4000);
    cr_assert_eq(ukko_kafka_rig_resume(&k, 1), 0, "%s", k.why);
    krec_t *in;
    size_t nin = kc_read(k.bootstrap, "outage-in", &in);
    int64_t ends[3];
    kc_ends(in, nin, ends, 3);
    kc_free(in, nin);
    until_done_t u = {"outage", 3000, ends, 3};
    feed_run_until(&f, all_done, &u, 180000, "the 3,000 records after the pause");

    /* Then it dies and comes back on its data, while records flow. */
    produce(&k, 3000, 3000);
    some = 3500;
    feed_run_until(&f, done_at_least, &some, 120000, "500 of the next records handled");
    cr_assert_eq(ukko_kafka_rig_kill(&k, 1), 0, "%s", k.why);
    ride_out(&f, 3000);
    cr_assert_eq(ukko_kafka_rig_restart(&k, 1), 0, "%s", k.why);
    nin = kc_read(k.bootstrap, "outage-in", &in);
    cr_assert_eq(nin, 6000, "the broker kept all 6000 inputs across its restart: %zu", nin);
    kc_ends(in, nin, ends, 3);
    until_done_t u2 = {"outage", 6000, ends, 3};
    feed_run_until(&f, all_done, &u2, 300000, "all 6,000 records after the restart");
    feed_close(&f);

    krec_t *out;
    size_t nout = kc_read(k.bootstrap, "outage-out", &out);
    check_complete(in, nin, out, nout, false, false);
    printf("broker paused 4 s, then killed and restarted: 6000 inputs, %zu outputs "
           "(%zu repeated)\n",
           nout, nout - 6000);
    kc_free(in, nin);
    kc_free(out, nout);
}
