/* Integration: the Kafka feed of streams/ (committer.c, source.c,
 * producer.c) while `ukko dev-kafka` makes Kafka requests fail on cue
 * through its fault channel: commits, fetches and produces that fail are
 * retried and nothing is lost or repeated. The feed runs in this process
 * over the stand-in sharding; kcat is the independent producer and reader.
 * SKIPPED without kcat. */
#include "devkafka_fixture.h"
#include "feed_support.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dk_proc_t dk;

static void teardown(void)
{
    dk_stop(&dk, SIGTERM, 10000);
}

TestSuite(feed_faults, .fini = teardown, .timeout = 300);

static void need_kcat(void)
{
    if (system("command -v kcat >/dev/null 2>&1") != 0) {
        printf("SKIPPED: kcat is not installed (scripts/install-deps.sh installs it)\n");
        fflush(stdout);
        cr_skip_test("kcat is not installed");
    }
}

static void fault(const char *line)
{
    ukko_buf_t reply;
    ukko_buf_init(&reply, 0);
    cr_assert_eq(dk_command(&dk, line, &reply, 5000), 0, "no reply to \"%s\"", line);
    cr_assert(!strncmp(reply.data, "ok", 2), "\"%s\" refused: %s", line, reply.data);
    ukko_buf_destroy(&reply);
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

static tally_cfg_t faults_cfg = {.out = "faults-out"};
static const ukko_entity_type_t faults_type = {
    .name = "faults",
    .state_size = TALLY_STATE_SIZE,
    .handler = tally_handler,
    .ud = &faults_cfg,
};

Test(feed_faults, failed_commits_fetches_and_produces_lose_nothing)
{
    need_kcat();
    const char *args[] = {"--topic", "faults-in:4", "--topic", "faults-out:4", "--topic",
                          "faults-in.dlq:1", NULL};
    ukko_buf_t why;
    ukko_buf_init(&why, 0);
    cr_assert_eq(dk_start(&dk, args, 30000, &why), 0, "ukko dev-kafka: %s", why.data);
    ukko_buf_destroy(&why);

    ukko_buf_t lines;
    ukko_buf_init(&lines, 0);
    for (int i = 0; i < 4000; i++)
        (void)ukko_buf_printf(&lines, "k%d\t{\"n\":%d}\n", i % 40, i);
    kc_produce(dk.bootstrap, "faults-in", lines.data);
    ukko_buf_destroy(&lines);
    krec_t *in;
    size_t nin = kc_read(dk.bootstrap, "faults-in", &in);
    cr_assert_eq(nin, 4000);
    int64_t ends[4];
    kc_ends(in, nin, ends, 4);

    /* Small batches, so that many commits are made and some fail. */
    const char *env[] = {"UKKO_KAFKA_COMMIT_MAX_BATCH=100", "UKKO_KAFKA_RETRY_BACKOFF=20ms",
                         "UKKO_KAFKA_RETRY_BACKOFF_MAX=200ms", NULL};
    feed_t f;
    feed_open(&f, dk.bootstrap, env);
    feed_add(&f, &faults_type, "faults-in");
    fault("fail OffsetCommit 6 REQUEST_TIMED_OUT");
    fault("fail Fetch 4 NOT_LEADER_OR_FOLLOWER");
    fault("fail Produce 3 NOT_ENOUGH_REPLICAS");
    feed_start(&f, "faults");
    until_done_t u = {"faults", 4000, ends, 4};
    feed_run_until(&f, all_done, &u, 180000, "4,000 records handled and committed");
    streams__source_t *src = feed_source(&f, "faults");
    cr_assert_geq(src->committer.failures, 1,
                  "the injected OffsetCommit errors reached the committer (%llu failures seen)",
                  (unsigned long long)src->committer.failures);
    /* The hand-off's commit fails too and is retried before it answers. */
    fault("fail OffsetCommit 2 COORDINATOR_NOT_AVAILABLE");
    feed_stop_shards(&f, "faults", false, 60000);
    feed_close(&f);

    krec_t *out;
    size_t nout = kc_read(dk.bootstrap, "faults-out", &out);
    cr_assert_eq(nout, 4000, "4000 inputs, %zu outputs: none lost, none repeated", nout);
    check_complete(in, nin, out, nout, true, true);
    kc_free(in, nin);
    kc_free(out, nout);
}
