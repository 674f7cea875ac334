/* Debian's librdkafka (2.0.2) against a real Apache Kafka broker (4.1 or
 * later, KRaft, one node on 127.0.4.1, started once for this file by
 * tests/kafka/broker.sh): what ukko relies on, each checked as a user would
 * see it. The runner starts the broker before the tests (ReportHook PRE_ALL)
 * and stops it after them (POST_ALL); its watchdog stops it too if the runner
 * dies. No real Kafka here (no Java 17, Maven or jars): "SKIPPED: ...".
 * Each test uses its own topics and group ids. Conditions are polled with
 * deadlines; nothing asserts a duration. */
#include "ukko_kafka.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <librdkafka/rdkafka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the rig, shared with every test -------------------------------------- */

static ukko_kafka_rig_t runner_rig; /* the runner's: it owns and stops it */
static ukko_kafka_rig_t rig;        /* a test's view of it */

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    ukko_kafka_rig_opts_t o = {.brokers = 1, .host = "127.0.4.1"};
    if (ukko_kafka_rig_share(&runner_rig, &o) == 0)
        fprintf(stderr, "test_compat: librdkafka %s against Apache Kafka %s\n",
                rd_kafka_version_str(), getenv("UKKO_KAFKA_VERSION") ? getenv("UKKO_KAFKA_VERSION")
                                                                     : "(broker.sh's default)");
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    ukko_kafka_rig_stop(&runner_rig);
}

static void need_rig(void)
{
    int rc = ukko_kafka_rig_attach(&rig);
    if (rc == UKKO_KAFKA_RIG_SKIP)
        cr_skip_test("%s", rig.why);
    cr_assert_eq(rc, 0, "the real Kafka broker did not start: %s", rig.why);
    /* A test that failed while the broker was paused must not stall the next. */
    cr_assert_eq(ukko_kafka_rig_resume(&rig, 1), 0, "%s", rig.why);
}

/* ---- small clients ----------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the delivery reports said, per message (msg_opaque is its index). */
#define MAXMSG 4096
static struct {
    int32_t partition;
    int64_t offset;
    rd_kafka_resp_err_t err;
    int reports;
} dr[MAXMSG];

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    intptr_t i = (intptr_t)m->_private;
    if (i < 0 || i >= MAXMSG)
        return;
    dr[i].partition = m->partition;
    dr[i].offset = m->offset;
    dr[i].err = m->err;
    dr[i].reports++;
}

/* Produce requests that timed out (librdkafka's REQTMOUT log lines); its log
 * callback runs on librdkafka's threads. */
static int request_timeouts;

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (!strcmp(fac, "REQTMOUT"))
        __atomic_fetch_add(&request_timeouts, 1, __ATOMIC_RELAXED); /* read after rd_kafka_destroy */
    fprintf(stderr, "%%%d|%s| %s\n", level, fac, buf);
}

/* A client of rig's broker with kv ("key", "value", ..., NULL) set. */
static rd_kafka_t *client(rd_kafka_type_t type, const char *const kv[])
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", rig.bootstrap, err, sizeof(err)),
                 RD_KAFKA_CONF_OK, "%s", err);
    for (size_t i = 0; kv && kv[i]; i += 2)
        cr_assert_eq(rd_kafka_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)),
                     RD_KAFKA_CONF_OK, "librdkafka %s refused %s=%s: %s",
                     rd_kafka_version_str(), kv[i], kv[i + 1], err);
    rd_kafka_conf_set_log_cb(conf, on_log);
    if (type == RD_KAFKA_PRODUCER) {
        memset(dr, 0, sizeof(dr));
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    cr_assert(rk, "rd_kafka_new: %s", err);
    return rk;
}

static void produce(rd_kafka_t *rk, const char *topic, int32_t partition, const char *key,
                    const void *value, size_t len, intptr_t index, rd_kafka_headers_t *hdrs)
{
    rd_kafka_resp_err_t e;
    do {
        if (hdrs) /* owned by the message once produced */
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                  RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                  RD_KAFKA_V_VALUE((void *)value, len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_OPAQUE((void *)index), RD_KAFKA_V_HEADERS(hdrs),
                                  RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                  RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                  RD_KAFKA_V_VALUE((void *)value, len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_OPAQUE((void *)index), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 100);
    } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "produce to %s: %s", topic, rd_kafka_err2str(e));
}

/* Flushes and checks that each of the n messages was delivered exactly once. */
static void flush_delivered(rd_kafka_t *rk, int n)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(rk, 60000);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "flush: %s (%d still queued)",
                 rd_kafka_err2str(e), rd_kafka_outq_len(rk));
    for (int i = 0; i < n; i++) {
        cr_assert_eq(dr[i].reports, 1, "message %d: %d delivery reports, expected 1", i,
                     dr[i].reports);
        cr_assert_eq(dr[i].err, RD_KAFKA_RESP_ERR_NO_ERROR, "message %d not delivered: %s", i,
                     rd_kafka_err2str(dr[i].err));
    }
}

typedef struct {
    char key[64];
    char *value;
    size_t len;
    int32_t partition;
    int64_t offset;
    rd_kafka_headers_t *hdrs;
} rec_t;

static void recs_free(rec_t *r, int n)
{
    for (int i = 0; i < n; i++) {
        free(r[i].value);
        if (r[i].hdrs)
            rd_kafka_headers_destroy(r[i].hdrs);
    }
    free(r);
}

/* Assigns (no group protocol) partitions [0, nparts) of topic at offset `from`
 * and reads until `want` records came or the deadline passed. librdkafka 2.0.2
 * wants a group.id even for rd_kafka_assign (see the assign test); this one is
 * never joined and never committed to. */
static rec_t *consume_assigned(const char *topic, int nparts, int64_t from, int want, int *got)
{
    const char *kv[] = {"enable.auto.commit", "false", "enable.partition.eof", "false",
                        "group.id", "compat-reader", NULL};
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, kv);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = from;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, tp);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(tp);

    rec_t *r = calloc((size_t)want + 1, sizeof(*r));
    int n = 0;
    int64_t deadline = now_ms() + 60000;
    while (n < want && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err) {
            cr_assert(m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF || m->err == RD_KAFKA_RESP_ERR__TRANSPORT,
                      "consuming %s: %s", topic, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        rec_t *x = &r[n++];
        snprintf(x->key, sizeof(x->key), "%.*s", (int)m->key_len, m->key ? (char *)m->key : "");
        x->value = malloc(m->len + 1);
        memcpy(x->value, m->payload, m->len);
        x->value[m->len] = '\0';
        x->len = m->len;
        x->partition = m->partition;
        x->offset = m->offset;
        rd_kafka_headers_t *h = NULL;
        if (rd_kafka_message_detach_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
            x->hdrs = h;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    *got = n;
    return r;
}

/* Waits for one admin result event of type `type` on q. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t type)
{
    int64_t deadline = now_ms() + 30000;
    while (now_ms() < deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 500);
        if (!ev)
            continue;
        if (rd_kafka_event_type(ev) == type)
            return ev;
        rd_kafka_event_destroy(ev);
    }
    cr_assert_fail("no admin result (event type %d) within 30 s", (int)type);
    return NULL;
}

static rd_kafka_topic_partition_list_t *committed_offsets(rd_kafka_t *rk, const char *group,
                                                          const char *topic, int nparts)
{
    rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(want, topic, p);
    rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(group, want);
    rd_kafka_topic_partition_list_destroy(want);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, NULL, q);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT);
    cr_assert_eq(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR,
                 "ListConsumerGroupOffsets(%s): %s", group, rd_kafka_event_error_string(ev));
    size_t n = 0;
    const rd_kafka_group_result_t **g = rd_kafka_ListConsumerGroupOffsets_result_groups(
        rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
    cr_assert_eq(n, 1, "ListConsumerGroupOffsets(%s): %zu groups in the result", group, n);
    const rd_kafka_error_t *ge = rd_kafka_group_result_error(g[0]);
    cr_assert_null(ge, "ListConsumerGroupOffsets(%s): %s", group,
                   ge ? rd_kafka_error_string(ge) : "");
    rd_kafka_topic_partition_list_t *out =
        rd_kafka_topic_partition_list_copy(rd_kafka_group_result_partitions(g[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return out;
}

static int64_t offset_of(const rd_kafka_topic_partition_list_t *l, const char *topic, int p)
{
    for (int i = 0; i < l->cnt; i++)
        if (l->elems[i].partition == p && !strcmp(l->elems[i].topic, topic)) {
            cr_assert_eq(l->elems[i].err, RD_KAFKA_RESP_ERR_NO_ERROR, "%s [%d]: %s", topic, p,
                         rd_kafka_err2str(l->elems[i].err));
            return l->elems[i].offset;
        }
    cr_assert_fail("%s [%d] is missing from the offsets", topic, p);
    return -1;
}

/* Commits offset for partitions [0, nparts) of topic under rk's group.id,
 * synchronously; returns the request's error (per-partition errors folded in). */
static rd_kafka_resp_err_t commit(rd_kafka_t *rk, const char *topic, int nparts, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = offset;
    rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 0);
    for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt; i++)
        e = l->elems[i].err;
    rd_kafka_topic_partition_list_destroy(l);
    return e;
}

static void topic(const char *name, int partitions)
{
    cr_assert_eq(ukko_kafka_rig_topic(&rig, name, partitions, 1), 0, "%s", rig.why);
}

/* DumpLogSegments' report of one partition's first segment. */
static char *dump_segment(const char *topic_name, int partition)
{
    char file[1024];
    snprintf(file, sizeof(file), "%s/node-1/data/%s-%d/00000000000000000000.log", rig.state,
             topic_name, partition);
    const char *args[] = {"--files", file, NULL};
    size_t cap = 1 << 20;
    char *out = malloc(cap);
    int rc = ukko_kafka_rig_java(&rig, "kafka.tools.DumpLogSegments", args, out, cap);
    cr_assert_eq(rc, 0, "DumpLogSegments %s: %s", file, rig.why);
    return out;
}

/* ---- the tests ------------------------------------------------------------- */

TestSuite(compat, .init = need_rig, .timeout = 180);

/* ukko maps an entity id to its shard with librdkafka's murmur2, and records
 * keyed by entity id must land in that shard's partition, whoever produced
 * them: librdkafka's murmur2_random partitioner and Kafka's own Java producer
 * must both agree with rd_kafka_msg_partitioner_murmur2. */
Test(compat, murmur2_partition_of_each_key_matches_librdkafka_and_java_producers)
{
    enum { NKEYS = 300, NPARTS = 12 };
    const char *t_c = "compat-murmur2-c", *t_java = "compat-murmur2-java";
    topic(t_c, NPARTS);
    topic(t_java, NPARTS);
    static char keys[NKEYS][48];
    for (int i = 0; i < NKEYS; i++) {
        if (i % 3 == 0)
            snprintf(keys[i], sizeof(keys[i]), "entity-%d", i);
        else if (i % 3 == 1)
            snprintf(keys[i], sizeof(keys[i]), "order/%08x/\xc3\xa4", (unsigned)(i * 2654435761u));
        else
            snprintf(keys[i], sizeof(keys[i]), "%d", i * 7919);
    }

    const char *kv[] = {"partitioner", "murmur2_random", "linger.ms", "5", NULL};
    rd_kafka_t *p = client(RD_KAFKA_PRODUCER, kv);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p, t_c, NULL);
    for (int i = 0; i < NKEYS; i++)
        produce(p, t_c, RD_KAFKA_PARTITION_UA, keys[i], keys[i], strlen(keys[i]), i, NULL);
    flush_delivered(p, NKEYS);
    for (int i = 0; i < NKEYS; i++) {
        int32_t want = rd_kafka_msg_partitioner_murmur2(rkt, keys[i], strlen(keys[i]), NPARTS,
                                                        NULL, NULL);
        cr_expect_eq(dr[i].partition, want,
                     "key '%s': librdkafka's murmur2_random put it in partition %d, "
                     "rd_kafka_msg_partitioner_murmur2 says %d", keys[i], dr[i].partition, want);
    }

    /* The same keys through Kafka's Java producer (default partitioner). */
    size_t cap = (size_t)NKEYS * 110;
    char *lines = malloc(cap);
    size_t off = 0;
    for (int i = 0; i < NKEYS; i++)
        off += (size_t)snprintf(lines + off, cap - off, "%s\t%s\n", keys[i], keys[i]);
    cr_assert_eq(ukko_kafka_rig_produce_java(&rig, t_java, lines), 0, "%s", rig.why);
    free(lines);
    int got = 0;
    rec_t *r = consume_assigned(t_java, NPARTS, RD_KAFKA_OFFSET_BEGINNING, NKEYS, &got);
    cr_assert_eq(got, NKEYS, "read %d of the %d records the Java producer wrote", got, NKEYS);
    for (int i = 0; i < got; i++) {
        int32_t want = rd_kafka_msg_partitioner_murmur2(rkt, r[i].key, strlen(r[i].key), NPARTS,
                                                        NULL, NULL);
        cr_expect_eq(r[i].partition, want,
                     "key '%s': Kafka's Java producer put it in partition %d, "
                     "rd_kafka_msg_partitioner_murmur2 says %d", r[i].key, r[i].partition, want);
    }
    recs_free(r, got);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(p);
}

/* A shard owner assigns its partition itself, at an offset, with no group
 * protocol: it must read exactly the records from that offset on, in order. */
Test(compat, assign_without_group_reads_each_partition_in_order_from_the_given_offset)
{
    enum { NPARTS = 3, PER = 200 };
    const char *t = "compat-assign";
    topic(t, NPARTS);
    rd_kafka_t *p = client(RD_KAFKA_PRODUCER, NULL);
    for (int i = 0; i < NPARTS * PER; i++) {
        char v[32];
        int n = snprintf(v, sizeof(v), "p%d-%d", i % NPARTS, i / NPARTS);
        produce(p, t, i % NPARTS, NULL, v, (size_t)n, i, NULL);
    }
    flush_delivered(p, NPARTS * PER);
    rd_kafka_destroy(p);

    /* librdkafka 2.0.2: a consumer with no group.id cannot assign at all
     * (Local: Unknown group), so ukko always sets one (the entity type's name). */
    const char *nogroup[] = {"enable.auto.commit", "false", NULL};
    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, nogroup);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, t, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(c, tp);
    cr_expect_eq(e, RD_KAFKA_RESP_ERR__UNKNOWN_GROUP,
                 "rd_kafka_assign with no group.id returned %s; 2.0.2 refuses it with "
                 "_UNKNOWN_GROUP: has librdkafka changed?", rd_kafka_err2name(e));
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_destroy(c);

    int got = 0;
    rec_t *r = consume_assigned(t, NPARTS, RD_KAFKA_OFFSET_BEGINNING, NPARTS * PER, &got);
    cr_assert_eq(got, NPARTS * PER, "read %d of %d records", got, NPARTS * PER);
    int next[NPARTS] = {0};
    for (int i = 0; i < got; i++) {
        char want[32];
        snprintf(want, sizeof(want), "p%d-%d", r[i].partition, next[r[i].partition]);
        cr_assert_str_eq(r[i].value, want, "partition %d offset %" PRId64 ": '%s', expected '%s'",
                         r[i].partition, r[i].offset, r[i].value, want);
        cr_assert_eq(r[i].offset, next[r[i].partition]);
        next[r[i].partition]++;
    }
    recs_free(r, got);

    /* From offset 150: the last 50 of each partition, nothing before. */
    r = consume_assigned(t, NPARTS, 150, NPARTS * (PER - 150), &got);
    cr_assert_eq(got, NPARTS * (PER - 150), "from offset 150: read %d records, expected %d", got,
                 NPARTS * (PER - 150));
    for (int i = 0; i < got; i++)
        cr_assert_geq(r[i].offset, 150, "partition %d gave offset %" PRId64 " before 150",
                      r[i].partition, r[i].offset);
    recs_free(r, got);
}

/* The committer's way: commit under a group.id that no consumer group uses (a
 * "simple" group with no members), read the offsets back with the admin API as
 * lag tools do, and see the group listed as simple and empty. */
Test(compat, commit_under_unused_group_id_is_read_back_by_list_consumer_group_offsets)
{
    enum { NPARTS = 4 };
    const char *t = "compat-simple-commit", *group = "compat-entity-type";
    topic(t, NPARTS);
    const char *kv[] = {"group.id", group, "enable.auto.commit", "false", NULL};
    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, kv);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NPARTS);
    for (int p = 0; p < NPARTS; p++)
        rd_kafka_topic_partition_list_add(l, t, p)->offset = 10 + p;
    rd_kafka_resp_err_t e = rd_kafka_commit(c, l, 0);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "commit under unused group.id %s: %s", group,
                 rd_kafka_err2str(e));
    for (int i = 0; i < l->cnt; i++)
        cr_assert_eq(l->elems[i].err, RD_KAFKA_RESP_ERR_NO_ERROR, "commit %s [%d]: %s", t,
                     l->elems[i].partition, rd_kafka_err2str(l->elems[i].err));

    rd_kafka_topic_partition_list_t *back = committed_offsets(c, group, t, NPARTS);
    for (int p = 0; p < NPARTS; p++)
        cr_assert_eq(offset_of(back, t, p), 10 + p,
                     "ListConsumerGroupOffsets %s [%d]: %" PRId64 ", committed %d", t, p,
                     offset_of(back, t, p), 10 + p);
    rd_kafka_topic_partition_list_destroy(back);

    /* The consumer's own view agrees. */
    for (int i = 0; i < l->cnt; i++)
        l->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    e = rd_kafka_committed(c, l, 10000);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_committed: %s", rd_kafka_err2str(e));
    for (int i = 0; i < l->cnt; i++)
        cr_assert_eq(l->elems[i].offset, 10 + l->elems[i].partition);
    rd_kafka_topic_partition_list_destroy(l);

    /* Lag tools list it: a simple group, empty (it has no members). */
    rd_kafka_queue_t *q = rd_kafka_queue_new(c);
    rd_kafka_ListConsumerGroups(c, NULL, q);
    rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT);
    size_t n = 0;
    const rd_kafka_ConsumerGroupListing_t **g =
        rd_kafka_ListConsumerGroups_result_valid(rd_kafka_event_ListConsumerGroups_result(ev), &n);
    const rd_kafka_ConsumerGroupListing_t *mine = NULL;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rd_kafka_ConsumerGroupListing_group_id(g[i]), group))
            mine = g[i];
    cr_assert(mine, "ListConsumerGroups does not list %s (%zu groups listed)", group, n);
    cr_expect(rd_kafka_ConsumerGroupListing_is_simple_consumer_group(mine),
              "group %s is not listed as a simple consumer group", group);
    cr_expect_eq(rd_kafka_ConsumerGroupListing_state(mine), RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY,
                 "group %s is listed %s, expected Empty", group,
                 rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupListing_state(mine)));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);

    /* The broker takes a commit that moves backwards: keeping the committed
     * offset monotonic is the committer's job, not Kafka's. */
    e = commit(c, t, 1, 3);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "commit of offset 3: %s", rd_kafka_err2str(e));
    back = committed_offsets(c, group, t, 1);
    cr_assert_eq(offset_of(back, t, 0), 3, "a backwards commit (10 -> 3) read back %" PRId64,
                 offset_of(back, t, 0));
    rd_kafka_topic_partition_list_destroy(back);
    rd_kafka_destroy(c);
}

/* Trace context travels in record headers: names, binary values, a repeated
 * name and a null value must come back as they went, in order. */
Test(compat, headers_round_trip)
{
    const char *t = "compat-headers";
    topic(t, 1);
    static const unsigned char bin[] = {0x00, 0xff, 0x10, 0x00, 0x7f};
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "traceparent", -1,
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", -1);
    rd_kafka_header_add(h, "bin", -1, bin, sizeof(bin));
    rd_kafka_header_add(h, "dup", -1, "first", -1);
    rd_kafka_header_add(h, "dup", -1, "second", -1);
    rd_kafka_header_add(h, "null", -1, NULL, 0);
    rd_kafka_t *p = client(RD_KAFKA_PRODUCER, NULL);
    produce(p, t, 0, "k", "v", 1, 0, h); /* h is owned by the message now */
    flush_delivered(p, 1);
    rd_kafka_destroy(p);

    int got = 0;
    rec_t *r = consume_assigned(t, 1, RD_KAFKA_OFFSET_BEGINNING, 1, &got);
    cr_assert_eq(got, 1, "the record with headers did not come back");
    cr_assert(r[0].hdrs, "the record came back without headers");
    cr_assert_eq(rd_kafka_header_cnt(r[0].hdrs), 5, "%zu headers came back, 5 went",
                 rd_kafka_header_cnt(r[0].hdrs));
    const char *names[] = {"traceparent", "bin", "dup", "dup", "null"};
    const void *vals[] = {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", bin, "first",
                          "second", NULL};
    size_t lens[] = {55, sizeof(bin), 5, 6, 0};
    for (size_t i = 0; i < 5; i++) {
        const char *name;
        const void *val;
        size_t len;
        cr_assert_eq(rd_kafka_header_get_all(r[0].hdrs, i, &name, &val, &len),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
        cr_assert_str_eq(name, names[i], "header %zu is '%s', expected '%s'", i, name, names[i]);
        cr_assert_eq(len, lens[i], "header %s: %zu bytes, expected %zu", name, len, lens[i]);
        if (vals[i])
            cr_assert(val && !memcmp(val, vals[i], len), "header %s: value differs", name);
        else
            cr_assert_null(val, "header %s: a null value came back as non-null", name);
    }
    recs_free(r, got);
}

/* Batches compressed by librdkafka are stored compressed by the broker (as
 * its own log dump reports) and read back intact. */
static void compressed_round_trip(const char *codec, const char *t, const char *dump_word)
{
    enum { N = 1000 };
    topic(t, 1);
    const char *kv[] = {"compression.codec", codec, "linger.ms", "50", "batch.num.messages",
                        "500", NULL};
    rd_kafka_t *p = client(RD_KAFKA_PRODUCER, kv);
    char v[200];
    for (int i = 0; i < N; i++) {
        int n = snprintf(v, sizeof(v), "%06d %s", i,
                         "the same words again and again compress well, the same words again");
        produce(p, t, 0, NULL, v, (size_t)n, i, NULL);
    }
    flush_delivered(p, N);
    rd_kafka_destroy(p);

    int got = 0;
    rec_t *r = consume_assigned(t, 1, RD_KAFKA_OFFSET_BEGINNING, N, &got);
    cr_assert_eq(got, N, "%s: read %d of %d records", codec, got, N);
    for (int i = 0; i < got; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%06d ", i);
        cr_assert(!strncmp(r[i].value, want, 7), "%s: record %d is '%.20s'", codec, i, r[i].value);
    }
    recs_free(r, got);

    char *dump = dump_segment(t, 0);
    cr_assert(strstr(dump, dump_word), "%s: the broker's log dump shows no '%s' batch:\n%.2000s",
              codec, dump_word, dump);
    cr_assert_null(strstr(dump, "compresscodec: none"),
                   "%s: the broker stored an uncompressed batch:\n%.2000s", codec, dump);
    free(dump);
}

Test(compat, lz4_batches_are_stored_compressed_and_read_back)
{
    compressed_round_trip("lz4", "compat-lz4", "compresscodec: lz4");
}

Test(compat, zstd_batches_are_stored_compressed_and_read_back)
{
    compressed_round_trip("zstd", "compat-zstd", "compresscodec: zstd");
}

/* The idempotent producer gets a producer id from the broker and writes each
 * record once, in order, even when its requests time out and are retried
 * while the broker is stopped (SIGSTOP) and resumed. */
Test(compat, idempotent_producer_writes_each_record_once_across_a_paused_broker)
{
    enum { N = 2000, PARTS = 2 };
    const char *t = "compat-idempotent";
    topic(t, PARTS);
    const char *kv[] = {"enable.idempotence", "true", "linger.ms", "20", "socket.timeout.ms",
                        "2000", "message.timeout.ms", "120000", "retry.backoff.ms", "200", NULL};
    rd_kafka_t *p = client(RD_KAFKA_PRODUCER, kv);
    char v[32];
    /* The first half settles the producer id and the connection. */
    for (int i = 0; i < N / 2; i++) {
        int n = snprintf(v, sizeof(v), "%d", i);
        produce(p, t, i % PARTS, NULL, v, (size_t)n, i, NULL);
    }
    cr_assert_eq(rd_kafka_flush(p, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
    /* The second half goes out to a stopped broker: its requests time out
     * and librdkafka retries them; the broker later sees both. */
    __atomic_store_n(&request_timeouts, 0, __ATOMIC_RELAXED);
    cr_assert_eq(ukko_kafka_rig_pause(&rig, 1), 0, "%s", rig.why);
    for (int i = N / 2; i < N; i++) {
        int n = snprintf(v, sizeof(v), "%d", i);
        produce(p, t, i % PARTS, NULL, v, (size_t)n, i, NULL);
    }
    int64_t deadline = now_ms() + 30000;
    while (!__atomic_load_n(&request_timeouts, __ATOMIC_RELAXED) && now_ms() < deadline)
        rd_kafka_poll(p, 100);
    int timeouts = __atomic_load_n(&request_timeouts, __ATOMIC_RELAXED);
    cr_assert_eq(ukko_kafka_rig_resume(&rig, 1), 0, "%s", rig.why);
    cr_assert_gt(timeouts, 0, "no produce request timed out in 30 s while the broker was stopped");
    flush_delivered(p, N);
    char fatal[256];
    rd_kafka_resp_err_t fe = rd_kafka_fatal_error(p, fatal, sizeof(fatal));
    cr_assert_eq(fe, RD_KAFKA_RESP_ERR_NO_ERROR, "the idempotent producer failed: %s", fatal);
    rd_kafka_destroy(p);

    /* Each partition holds exactly its records: a duplicate would raise its end offset. */
    rd_kafka_t *c = client(RD_KAFKA_PRODUCER, NULL);
    for (int part = 0; part < PARTS; part++) {
        int64_t lo = -1, hi = -1;
        rd_kafka_resp_err_t we = rd_kafka_query_watermark_offsets(c, t, part, &lo, &hi, 10000);
        cr_assert_eq(we, RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks of %s [%d]: %s", t, part,
                     rd_kafka_err2str(we));
        cr_assert_eq(hi - lo, N / PARTS, "%s [%d] holds %" PRId64 " records, %d were produced "
                     "to it once each", t, part, hi - lo, N / PARTS);
    }
    rd_kafka_destroy(c);
    int got = 0;
    rec_t *r = consume_assigned(t, PARTS, RD_KAFKA_OFFSET_BEGINNING, N, &got);
    cr_assert_eq(got, N, "read %d records, %d were produced once each", got, N);
    int next[PARTS] = {0, 1};
    for (int i = 0; i < got; i++) {
        int k = atoi(r[i].value);
        cr_assert_eq(k, next[r[i].partition],
                     "partition %d offset %" PRId64 ": record %d, expected %d (a duplicate or a gap)",
                     r[i].partition, r[i].offset, k, next[r[i].partition]);
        next[r[i].partition] += PARTS;
    }
    recs_free(r, got);

    char *dump = dump_segment(t, 0);
    cr_assert(strstr(dump, "producerId: ") && !strstr(dump, "producerId: -1"),
              "the batches carry no producer id (not idempotent):\n%.2000s", dump);
    free(dump);
}

/* Topics are made with the admin API, with a config; a second create of the
 * same name says it exists. */
Test(compat, create_topics_with_the_admin_api)
{
    const char *t = "compat-created";
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL);
    char err[256];
    for (int round = 0; round < 2; round++) {
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(t, 6, 1, err, sizeof(err));
        cr_assert(nt, "NewTopic: %s", err);
        cr_assert_eq(rd_kafka_NewTopic_set_config(nt, "retention.ms", "3600000"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_NewTopic_destroy(nt);
        rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
        cr_assert_eq(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics: %s",
                     rd_kafka_event_error_string(ev));
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        cr_assert_eq(n, 1);
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[0]);
        if (round == 0)
            cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics %s: %s (%s)", t,
                         rd_kafka_err2str(e), rd_kafka_topic_result_error_string(res[0]));
        else
            cr_assert_eq(e, RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS,
                         "a second CreateTopics %s: %s, expected TOPIC_ALREADY_EXISTS", t,
                         rd_kafka_err2str(e));
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
    }

    /* Its 6 partitions show in the metadata, each with a leader. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t, NULL);
    int64_t deadline = now_ms() + 30000;
    int parts = 0;
    while (now_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            parts = 0;
            if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
                for (int i = 0; i < md->topics[0].partition_cnt; i++)
                    parts += md->topics[0].partitions[i].leader >= 0;
            rd_kafka_metadata_destroy(md);
            if (parts == 6)
                break;
        }
        rd_kafka_poll(rk, 200);
    }
    cr_assert_eq(parts, 6, "%s: %d partitions with a leader, 6 created", t, parts);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
}

/* A group id that a live consumer group uses is not free: a simple commit
 * under it (no member id, generation -1) is refused by the broker, and goes
 * through again once the group has no members. */
static rd_kafka_resp_err_t rebalance_err;
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    rebalance_err = err;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        rd_kafka_assign(rk, parts);
    else
        rd_kafka_assign(rk, NULL);
}

Test(compat, commit_under_a_group_id_with_live_members_is_refused)
{
    const char *t = "compat-live-group", *group = "compat-live-group";
    topic(t, 2);

    /* A classic consumer group member, until it holds its assignment. */
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[] = {"bootstrap.servers", rig.bootstrap, "group.id", group,
                        "enable.auto.commit", "false", "session.timeout.ms", "10000", NULL};
    for (size_t i = 0; kv[i]; i += 2)
        cr_assert_eq(rd_kafka_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_t *member = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    cr_assert(member, "%s", err);
    rd_kafka_poll_set_consumer(member);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, t, RD_KAFKA_PARTITION_UA);
    cr_assert_eq(rd_kafka_subscribe(member, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);
    int64_t deadline = now_ms() + 60000;
    int assigned = 0;
    while (!assigned && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(member, 200);
        if (m)
            rd_kafka_message_destroy(m);
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(member, &a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            assigned = a->cnt;
            rd_kafka_topic_partition_list_destroy(a);
        }
    }
    cr_assert_eq(assigned, 2, "the group member holds %d of 2 partitions after 60 s", assigned);

    /* A simple commit under the same group id, as ukko's committer makes. */
    const char *kv2[] = {"group.id", group, "enable.auto.commit", "false", NULL};
    rd_kafka_t *simple = client(RD_KAFKA_CONSUMER, kv2);
    rd_kafka_resp_err_t e = commit(simple, t, 2, 5);
    cr_log_info("a simple commit under live group %s: %s (%s)", group, rd_kafka_err2name(e),
                rd_kafka_err2str(e));
    /* Kafka's group coordinator refuses an offset commit that carries no
     * member id and generation -1 once the group has members:
     * UNKNOWN_MEMBER_ID ("The coordinator is not aware of this member"). */
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
                 "a simple commit under group %s, which has a live member, returned %s (%s); "
                 "expected UNKNOWN_MEMBER_ID", group, rd_kafka_err2name(e), rd_kafka_err2str(e));

    /* The member leaves: the group is empty, and the same commit goes through. */
    rd_kafka_consumer_close(member);
    rd_kafka_destroy(member);
    deadline = now_ms() + 30000;
    do {
        e = commit(simple, t, 2, 5);
    } while (e != RD_KAFKA_RESP_ERR_NO_ERROR && now_ms() < deadline);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR,
                 "after the last member left, a simple commit under %s still fails: %s", group,
                 rd_kafka_err2str(e));
    rd_kafka_destroy(simple);
}
