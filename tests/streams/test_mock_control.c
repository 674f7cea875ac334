/* Unit: streams/mock_control.c, the fault channel of `ukko dev-kafka`, against
 * a mock cluster in this process: topic specs, every command's checks, and
 * that an injected OffsetCommit error is what a committing consumer gets
 * (the at-least-once tests rely on it). The mock listens on 127.0.0.1. */
#include "dev_kafka_internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rd_kafka_t *host;
static streams__mock_ctl_t ctl;
static ukko_buf_t reply;

static void setup(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    cr_assert(host, "librdkafka handle: %s", err);
    memset(&ctl, 0, sizeof(ctl));
    ctl.brokers = 2;
    ctl.mc = rd_kafka_mock_cluster_new(host, ctl.brokers);
    cr_assert(ctl.mc, "a mock cluster of 2 brokers");
    cr_assert_eq(streams__mock_topic_create(&ctl, "t", 3, err, sizeof(err)), 0, "%s", err);
    ukko_buf_init(&reply, 0);
}

static void teardown(void)
{
    if (ctl.mc)
        rd_kafka_mock_cluster_destroy(ctl.mc);
    if (host)
        rd_kafka_destroy(host);
    streams__mock_ctl_destroy(&ctl);
    ukko_buf_destroy(&reply);
}

TestSuite(mock_control, .init = setup, .fini = teardown, .timeout = 60);

static int run(const char *line)
{
    return streams__mock_command(&ctl, line, strlen(line), &reply);
}

Test(mock_control, topic_specs)
{
    char name[STREAMS__TOPIC_NAME_MAX + 1], err[600];
    int p = 0;
    cr_assert_eq(streams__topic_spec_parse("orders:12", name, sizeof(name), &p, err, sizeof(err)),
                 0);
    cr_assert_str_eq(name, "orders");
    cr_assert_eq(p, 12);
    /* The last ':' splits: names never hold one, so "a:b:3" is refused for
     * its name, not read as partitions "b:3". */
    cr_assert_eq(streams__topic_spec_parse("a:b:3", name, sizeof(name), &p, err, sizeof(err)),
                 UKKO_EINVAL);
    cr_assert(strstr(err, "\"a:b:3\""), "%s", err);
    const char *bad[] = {"orders", "orders:", "orders:0", "orders:-1", "orders:10001",
                         "orders:1x", ":3", "..:3", ".:3", "a b:3", "a/b:3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(streams__topic_spec_parse(bad[i], name, sizeof(name), &p, err, sizeof(err)),
                     UKKO_EINVAL, "\"%s\" is refused", bad[i]);
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "\"%s\"", bad[i]);
        cr_assert(strstr(err, quoted), "the message names \"%s\": %s", bad[i], err);
    }
    char longname[300];
    memset(longname, 'a', 250);
    strcpy(longname + 250, ":1");
    cr_assert_eq(
        streams__topic_spec_parse(longname, name, sizeof(name), &p, err, sizeof(err)),
        UKKO_EINVAL, "a 250-character name is one too long");
    longname[249] = ':';
    longname[250] = '1';
    longname[251] = '\0';
    cr_assert_eq(
        streams__topic_spec_parse(longname, name, sizeof(name), &p, err, sizeof(err)), 0,
        "249 characters is Kafka's limit: %s", err);
}

Test(mock_control, replies_and_refusals)
{
    cr_assert_eq(run("fail OffsetCommit 3 REQUEST_TIMED_OUT"), 0);
    cr_assert_str_eq(reply.data, "ok: the next 3 OffsetCommit request(s) fail with "
                                 "REQUEST_TIMED_OUT");
    /* Kafka's current name, Java's enum spelling, librdkafka's prefix and
     * the number all name one error or API. */
    cr_assert_eq(run("fail Fetch 2 NOT_LEADER_OR_FOLLOWER"), 0, "%s", reply.data);
    cr_assert_eq(run("fail FETCH 1 not_leader_for_partition"), 0, "%s", reply.data);
    cr_assert_eq(run("fail OFFSET_COMMIT 1 RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT"), 0, "%s",
                 reply.data);
    cr_assert_eq(run("fail Produce 1 7"), 0, "%s", reply.data);
    cr_assert(strstr(reply.data, "REQUEST_TIMED_OUT"), "code 7 is REQUEST_TIMED_OUT: %s",
              reply.data);
    cr_assert_eq(run("fail Metadata 1 _TRANSPORT"), 0, "%s", reply.data);
    cr_assert(strstr(reply.data, "closes the connection"), "%s", reply.data);
    cr_assert_eq(run("clear Fetch"), 0);
    cr_assert_eq(run("clear Produce"), 0);
    cr_assert_eq(run("clear Metadata"), 0);
    cr_assert_eq(run("clear OffsetCommit"), 0);

    /* librdkafka's own negative codes would reach clients as garbage. */
    cr_assert_eq(run("fail Fetch 1 _PARTITION_EOF"), UKKO_EINVAL);
    cr_assert_eq(run("fail Fetch 1 -191"), UKKO_EINVAL);
    cr_assert_eq(run("fail Fetch 1 NO_ERROR"), UKKO_EINVAL);
    cr_assert_eq(run("fail Fetch 1 0"), UKKO_EINVAL);
    cr_assert_eq(run("fail CreateTopics 1 REQUEST_TIMED_OUT"), UKKO_EINVAL,
                 "the mock serves no CreateTopics");
    cr_assert(strstr(reply.data, "unknown API \"CreateTopics\"") &&
                  strstr(reply.data, "TxnOffsetCommit"),
              "%s", reply.data);

    cr_assert_eq(run("down 2"), 0, "%s", reply.data);
    cr_assert_eq(run("down 2"), 0, "down twice is fine: %s", reply.data);
    cr_assert_eq(run("up 2"), 0, "%s", reply.data);
    cr_assert_eq(run("leader t 2 none"), 0, "%s", reply.data);
    cr_assert_eq(run("leader t 2 1"), 0, "%s", reply.data);
    cr_assert_eq(run("rtt 1 0"), 0, "%s", reply.data);
    cr_assert_eq(run("rtt 1 600001"), UKKO_EINVAL);
    cr_assert_eq(run("topic u:4"), 0, "%s", reply.data);
    cr_assert_eq(run("leader u 3 2"), 0, "a topic made by the channel can be led: %s",
                 reply.data);
    cr_assert_eq(run("leader u 4 2"), UKKO_EINVAL);

    /* Blank lines and comments: nothing done, nothing said. */
    cr_assert_eq(run(""), 0);
    cr_assert_eq(reply.len, 0);
    cr_assert_eq(run("   \t "), 0);
    cr_assert_eq(reply.len, 0);
    cr_assert_eq(run("# fail Fetch 1 REQUEST_TIMED_OUT"), 0);
    cr_assert_eq(reply.len, 0);
    cr_assert_eq(run("help\r"), 0, "a CRLF line is one line");
}

Test(mock_control, garbage_is_refused_with_a_reply)
{
    char line[STREAMS__CONTROL_LINE_MAX + 10];
    memset(line, 'x', sizeof(line));
    cr_assert_eq(streams__mock_command(&ctl, line, sizeof(line), &reply), UKKO_EINVAL);
    cr_assert(!strncmp(reply.data, "error: line of", 14), "%s", reply.data);
    const char nul[] = {'f', 'a', 'i', 'l', 0, 'x'};
    cr_assert_eq(streams__mock_command(&ctl, nul, sizeof(nul), &reply), UKKO_EINVAL);
    cr_assert(strstr(reply.data, "byte 0x00 at column 5"), "%s", reply.data);
    /* Seeded random lines: every one is answered, none reaches the mock
     * with arguments it does not check (an assert there would abort). */
    unsigned seed = 42;
    const char *words[] = {"fail", "clear", "down", "up", "leader", "rtt", "topic", "t",
                           "0", "1", "2", "3", "-1", "none", "Fetch", "Produce",
                           "REQUEST_TIMED_OUT", "99999999999", "t:3", "x:0", ""};
    const size_t nw = sizeof(words) / sizeof(words[0]);
    for (int i = 0; i < 20000; i++) {
        char buf[256] = "";
        size_t len = 0;
        seed = seed * 1103515245u + 12345u;
        int n = (int)((seed >> 16) % 6);
        for (int k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", k ? " " : "",
                                    words[(seed >> 16) % nw]);
        }
        int rc = streams__mock_command(&ctl, buf, len, &reply);
        cr_assert(rc == 0 || rc == UKKO_EINVAL, "\"%s\" -> %d", buf, rc);
        if (len && rc < 0)
            cr_assert(!strncmp(reply.data, "error: ", 7), "\"%s\" -> %s", buf, reply.data);
    }
}

/* A consumer that commits under a group id (no subscription: the "simple"
 * group the sharded sources use) gets the error that was pushed. */
Test(mock_control, an_injected_offset_commit_error_reaches_the_committer)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers",
                                   rd_kafka_mock_cluster_bootstraps(ctl.mc), err, sizeof(err)),
                 RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "group.id", "g", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    cr_assert(c, "%s", err);
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, "t", 0)->offset = 1;

    cr_assert_eq(run("fail OffsetCommit 1 GROUP_AUTHORIZATION_FAILED"), 0, "%s", reply.data);
    rd_kafka_resp_err_t e = rd_kafka_commit(c, offs, 0);
    if (!e)
        e = offs->elems[0].err;
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
                 "the commit fails as asked, got %s", rd_kafka_err2name(e));
    offs->elems[0].err = 0;
    e = rd_kafka_commit(c, offs, 0);
    cr_assert_eq(e, 0, "the next commit succeeds, got %s", rd_kafka_err2name(e));
    cr_assert_eq(offs->elems[0].err, 0);

    rd_kafka_topic_partition_list_t *got = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(got, "t", 0);
    cr_assert_eq(rd_kafka_committed(c, got, 10000), 0);
    cr_assert_eq(got->elems[0].offset, 1, "the committed offset reads back");
    rd_kafka_topic_partition_list_destroy(got);
    rd_kafka_topic_partition_list_destroy(offs);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}
