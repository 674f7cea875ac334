/* Integration: `ukko dev-kafka` (streams/dev_kafka.c, streams/mock_control.c)
 * spoken to by kcat, an independent Kafka client: keyed records produced
 * with Kafka's partitioner land on murmur2(key) % partitions and come back
 * from every partition; the fault channel makes kcat's produce, fetch and
 * metadata requests fail as asked, and only as often as asked. kcat comes
 * from scripts/install-deps.sh; without it every test prints SKIPPED. */
#include "devkafka_fixture.h"

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static dk_proc_t dk;

static void stop_all(void)
{
    dk_stop(&dk, SIGKILL, 5000);
}

static void need_kcat(void)
{
    if (ut_run("command -v kcat", NULL, NULL) != 0) {
        printf("SKIPPED: kcat is not installed (scripts/install-deps.sh installs it)\n");
        fflush(stdout);
        cr_skip_test("kcat is not installed");
    }
}

TestSuite(dev_kafka_kcat, .init = need_kcat, .fini = stop_all, .timeout = 120);

static void start(const char *const args[])
{
    ukko_buf_t why;
    ukko_buf_init(&why, 0);
    if (dk_start(&dk, args, 10000, &why) < 0)
        cr_assert_fail("ukko dev-kafka did not start: %s", why.data ? why.data : "?");
    ukko_buf_destroy(&why);
}

static void command_ok(const char *line)
{
    ukko_buf_t r;
    ukko_buf_init(&r, 0);
    cr_assert_eq(dk_command(&dk, line, &r, 5000), 0, "a reply to \"%s\"", line);
    cr_assert(!strncmp(r.data, "ok: ", 4), "\"%s\" is carried out; reply: %s", line, r.data);
    ukko_buf_destroy(&r);
}

/* Runs kcat with the bootstrap servers (every command is bounded by
 * `timeout`, so a hung client fails the test instead of stalling it). */
static int kcat(const char *args, const char *input, ukko_buf_t *out)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "timeout 60 kcat -b %s %s", dk.bootstrap, args);
    ukko_buf_reset(out);
    return ut_run(cmd, input, out);
}

static int32_t murmur2_partition(const char *key, int32_t partitions)
{
    /* librdkafka's own copy of the Java client's default partitioner. */
    return rd_kafka_msg_partitioner_murmur2(NULL, key, strlen(key), partitions, NULL, NULL);
}

Test(dev_kafka_kcat, keyed_records_land_on_murmur2_and_come_back_from_every_partition)
{
    start((const char *const[]){"--topic", "t:3", NULL});
    enum { N = 300, P = 3 };
    ukko_buf_t in, out;
    ukko_buf_init(&in, 0);
    ukko_buf_init(&out, 0);
    for (int i = 0; i < N; i++)
        ukko_buf_printf(&in, "key-%d:value-%d\n", i, i);
    int rc = kcat("-P -t t -K: -X partitioner=murmur2_random", in.data, &out);
    cr_assert_eq(rc, 0, "kcat produced %d records; it said:\n%s", N, out.data);

    int seen[N] = {0};
    int total = 0;
    for (int p = 0; p < P; p++) {
        char args[128];
        /* Keys and partitions only: stderr (kcat's notes) stays out. */
        snprintf(args, sizeof(args), "-C -t t -p %d -o beginning -e -q -f '%%k %%p\\n' 2>/dev/null",
                 p);
        rc = kcat(args, NULL, &out);
        cr_assert_eq(rc, 0, "kcat consumed partition %d", p);
        int in_partition = 0;
        for (char *save = NULL, *line = strtok_r(out.data, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
            int i, got;
            cr_assert_eq(sscanf(line, "key-%d %d", &i, &got), 2, "a record line: \"%s\"", line);
            cr_assert(i >= 0 && i < N, "a key that was produced: %s", line);
            char key[32];
            snprintf(key, sizeof(key), "key-%d", i);
            cr_assert_eq(got, p, "kcat reports the partition it read from");
            cr_assert_eq(got, murmur2_partition(key, P),
                         "%s is on partition %d, murmur2 says %d", key, got,
                         murmur2_partition(key, P));
            seen[i]++;
            in_partition++;
            total++;
        }
        cr_assert(in_partition > 0, "partition %d got some of the %d keys", p, N);
    }
    cr_assert_eq(total, N, "every record comes back once: %d of %d", total, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "key-%d is read exactly once", i);
    ukko_buf_destroy(&in);
    ukko_buf_destroy(&out);
    cr_assert_eq(dk_stop(&dk, SIGTERM, 10000), 0);
}

Test(dev_kafka_kcat, an_injected_produce_error_fails_that_many_requests)
{
    start((const char *const[]){"--topic", "t:1", NULL});
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    /* A non-retriable error: the client gives up at once and says why. */
    command_ok("fail Produce 1 TOPIC_AUTHORIZATION_FAILED");
    int rc = kcat("-P -t t -K:", "a:1\n", &out);
    cr_assert_neq(rc, 0, "the produce fails as asked; kcat said:\n%s", out.data);
    cr_assert(strstr(out.data, "Topic authorization failed"), "kcat names the error:\n%s",
              out.data);
    /* One failure was asked for: the next request goes through. */
    rc = kcat("-P -t t -K:", "b:2\n", &out);
    cr_assert_eq(rc, 0, "the next produce succeeds:\n%s", out.data);
    rc = kcat("-C -t t -o beginning -e -q -f '%k\\n' 2>/dev/null", NULL, &out);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(out.data, "b\n", "only the second record was stored");
    ukko_buf_destroy(&out);
}

Test(dev_kafka_kcat, an_injected_fetch_error_reaches_the_consumer_once)
{
    start((const char *const[]){"--topic", "t:1", NULL});
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    cr_assert_eq(kcat("-P -t t -K:", "a:1\nb:2\n", &out), 0, "%s", out.data);
    command_ok("fail Fetch 1 TOPIC_AUTHORIZATION_FAILED");
    int rc = kcat("-C -t t -p 0 -o beginning -e -f '%k\\n'", NULL, &out);
    cr_assert_neq(rc, 0, "the fetch fails as asked; kcat said:\n%s", out.data);
    cr_assert(strstr(out.data, "Topic authorization failed"), "kcat names the error:\n%s",
              out.data);
    rc = kcat("-C -t t -p 0 -o beginning -e -q -f '%k\\n' 2>/dev/null", NULL, &out);
    cr_assert_eq(rc, 0, "the next fetch succeeds");
    cr_assert_str_eq(out.data, "a\nb\n");
    /* Pending failures can be dropped before any request uses them. */
    command_ok("fail Fetch 5 TOPIC_AUTHORIZATION_FAILED");
    command_ok("clear Fetch");
    rc = kcat("-C -t t -p 0 -o beginning -e -q -f '%k\\n' 2>/dev/null", NULL, &out);
    cr_assert_eq(rc, 0, "cleared failures fail nothing");
    cr_assert_str_eq(out.data, "a\nb\n");
    ukko_buf_destroy(&out);
}

Test(dev_kafka_kcat, a_broker_taken_down_refuses_clients_until_it_is_up)
{
    start((const char *const[]){"--topic", "t:1", NULL});
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    cr_assert_eq(kcat("-L -m 5", NULL, &out), 0, "metadata while up:\n%s", out.data);
    command_ok("down 1");
    int rc = kcat("-L -m 2", NULL, &out);
    cr_assert_neq(rc, 0, "no metadata from the only broker while it is down:\n%s", out.data);
    command_ok("up 1");
    rc = kcat("-L -m 5", NULL, &out);
    cr_assert_eq(rc, 0, "metadata again once it is up:\n%s", out.data);
    cr_assert(strstr(out.data, "topic \"t\" with 1 partitions"), "%s", out.data);
    ukko_buf_destroy(&out);
}

Test(dev_kafka_kcat, a_partition_leader_moves_when_asked)
{
    start((const char *const[]){"--brokers", "3", "--topic", "t:2", NULL});
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    for (int b = 1; b <= 3; b++) {
        char cmd[64], want[64];
        snprintf(cmd, sizeof(cmd), "leader t 1 %d", b);
        command_ok(cmd);
        cr_assert_eq(kcat("-L -t t -m 5", NULL, &out), 0, "%s", out.data);
        snprintf(want, sizeof(want), "partition 1, leader %d,", b);
        cr_assert(strstr(out.data, want), "metadata says \"%s\":\n%s", want, out.data);
    }
    /* The channel makes the topic it was told to create. */
    command_ok("topic later:5");
    cr_assert_eq(kcat("-L -t later -m 5", NULL, &out), 0, "%s", out.data);
    cr_assert(strstr(out.data, "topic \"later\" with 5 partitions"), "%s", out.data);
    ukko_buf_destroy(&out);
}

Test(dev_kafka_kcat, unknown_topics_are_created_with_4_partitions_on_first_produce)
{
    /* What --help and docs/dev-kafka.md promise about auto-creation. */
    start(NULL);
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    cr_assert_eq(kcat("-P -t fresh -K:", "k:v\n", &out), 0, "%s", out.data);
    cr_assert_eq(kcat("-L -t fresh -m 5", NULL, &out), 0, "%s", out.data);
    cr_assert(strstr(out.data, "topic \"fresh\" with 4 partitions"), "%s", out.data);
    ukko_buf_destroy(&out);
}
