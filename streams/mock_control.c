/* mock_control.c: the fault channel of `ukko dev-kafka`: one text command per
 * line (fail, clear, down, up, leader, rtt, topic, help, apis, errors), each
 * checked in full before it touches the mock cluster, answered by one line.
 * Main thread. Invariant: no input, however malformed, reaches a mock call
 * whose arguments librdkafka 2.0.2 does not check itself (it asserts on some,
 * and auto-creates the topic named by a partition command). */
#include "dev_kafka_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The requests librdkafka 2.0.2's mock serves (rdkafka_mock_handlers.c), by
 * the names of the Kafka protocol guide. Failing any other request would
 * change nothing, so only these are allowed. */
static const struct {
    const char *name;
    int16_t key;
} apis[] = {
    {"Produce", 0},         {"Fetch", 1},           {"ListOffsets", 2},
    {"Metadata", 3},        {"OffsetCommit", 8},    {"OffsetFetch", 9},
    {"FindCoordinator", 10}, {"JoinGroup", 11},     {"Heartbeat", 12},
    {"LeaveGroup", 13},     {"SyncGroup", 14},      {"ApiVersions", 18},
    {"InitProducerId", 22}, {"AddPartitionsToTxn", 24}, {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},         {"TxnOffsetCommit", 28},
};
#define NAPIS (sizeof(apis) / sizeof(apis[0]))

/* Names Kafka uses today for codes librdkafka 2.0.2 knows under older ones. */
static const struct {
    const char *name;
    rd_kafka_resp_err_t code;
} aliases[] = {
    {"NOT_LEADER_OR_FOLLOWER", RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION},
    {"GROUP_LOAD_IN_PROGRESS", RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS},
    {"GROUP_COORDINATOR_NOT_AVAILABLE", RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE},
    {"NOT_COORDINATOR_FOR_GROUP", RD_KAFKA_RESP_ERR_NOT_COORDINATOR},
};
#define NALIASES (sizeof(aliases) / sizeof(aliases[0]))

static const char commands_help[] =
    "commands: fail API COUNT ERROR | clear API | down BROKER | up BROKER | "
    "leader TOPIC PARTITION BROKER|none | rtt BROKER MS | topic NAME:PARTITIONS | "
    "apis | errors | help (docs/dev-kafka.md)";

/* Case-insensitive equality ignoring '_' on both sides (OffsetCommit,
 * OFFSET_COMMIT and offsetcommit are one API). */
static bool same_name(const char *a, const char *b)
{
    for (;;) {
        while (*a == '_')
            a++;
        while (*b == '_')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
        a++;
        b++;
    }
}

static int api_find(const char *s, int16_t *key)
{
    for (size_t i = 0; i < NAPIS; i++)
        if (same_name(s, apis[i].name)) {
            *key = apis[i].key;
            return 0;
        }
    return UKKO_ENOENT;
}

static void list_apis(ukko_buf_t *out)
{
    for (size_t i = 0; i < NAPIS; i++)
        (void)ukko_buf_printf(out, "%s%s", i ? ", " : "", apis[i].name);
}

/* An error a broker can answer with (a positive Kafka code), or _TRANSPORT,
 * which makes the mock close the connection instead of answering. The
 * negative codes are librdkafka's own and would reach clients as garbage. */
static bool injectable(const struct rd_kafka_err_desc *d)
{
    return d->name && (d->code > 0 || d->code == RD_KAFKA_RESP_ERR__TRANSPORT);
}

static void list_errors(ukko_buf_t *out)
{
    const struct rd_kafka_err_desc *descs;
    size_t n, k = 0;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++)
        if (injectable(&descs[i]))
            (void)ukko_buf_printf(out, "%s%s", k++ ? ", " : "", descs[i].name);
    for (size_t i = 0; i < NALIASES; i++)
        (void)ukko_buf_printf(out, ", %s", aliases[i].name);
}

static int error_find(const char *s, rd_kafka_resp_err_t *code)
{
    if (!strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18))
        s += 18;
    const struct rd_kafka_err_desc *descs;
    size_t n;
    rd_kafka_get_err_descs(&descs, &n);
    char *end;
    errno = 0;
    long num = strtol(s, &end, 10);
    bool numeric = *s && !*end && errno == 0;
    for (size_t i = 0; i < n; i++) {
        if (!injectable(&descs[i]))
            continue;
        /* "_TRANSPORT" may be written "TRANSPORT": same_name skips '_'. */
        if (numeric ? num == (long)descs[i].code : same_name(s, descs[i].name)) {
            *code = descs[i].code;
            return 0;
        }
    }
    for (size_t i = 0; !numeric && i < NALIASES; i++)
        if (same_name(s, aliases[i].name)) {
            *code = aliases[i].code;
            return 0;
        }
    return UKKO_ENOENT;
}

/* A whole decimal integer in [lo, hi]. */
static bool parse_int(const char *s, long lo, long hi, long *out)
{
    if (!*s || !(isdigit((unsigned char)*s) || (*s == '-' && isdigit((unsigned char)s[1]))))
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int streams__topic_spec_parse(const char *spec, char *name, size_t namelen, int *partitions,
                              char *err, size_t errlen)
{
    const char *colon = strrchr(spec, ':');
    if (!colon) {
        snprintf(err, errlen,
                 "topic \"%s\" has no partition count: write NAME:PARTITIONS, e.g. %s:3", spec,
                 spec);
        return UKKO_EINVAL;
    }
    size_t n = (size_t)(colon - spec);
    if (n == 0 || n > STREAMS__TOPIC_NAME_MAX || n >= namelen) {
        snprintf(err, errlen,
                 "topic \"%s\": the name must have 1 to %d characters, e.g. orders:3", spec,
                 STREAMS__TOPIC_NAME_MAX);
        return UKKO_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = spec[i];
        if (!isalnum((unsigned char)c) && c != '.' && c != '_' && c != '-') {
            snprintf(err, errlen,
                     "topic \"%s\": the name may hold only letters, digits, '.', '_' and '-' "
                     "(Kafka's rule)",
                     spec);
            return UKKO_EINVAL;
        }
    }
    if ((n == 1 && spec[0] == '.') || (n == 2 && spec[0] == '.' && spec[1] == '.')) {
        snprintf(err, errlen, "topic \"%s\": \".\" and \"..\" are not topic names", spec);
        return UKKO_EINVAL;
    }
    long p;
    if (!parse_int(colon + 1, 1, STREAMS__MAX_PARTITIONS, &p)) {
        snprintf(err, errlen,
                 "topic \"%s\": partitions \"%s\" must be a whole number from 1 to %d, e.g. "
                 "%.*s:3",
                 spec, colon + 1, STREAMS__MAX_PARTITIONS, (int)n, spec);
        return UKKO_EINVAL;
    }
    memcpy(name, spec, n);
    name[n] = '\0';
    *partitions = (int)p;
    return 0;
}

static const streams__topic_t *topic_find(const streams__mock_ctl_t *ctl, const char *name)
{
    for (size_t i = 0; i < ctl->ntopics; i++)
        if (!strcmp(ctl->topics[i].name, name))
            return &ctl->topics[i];
    return NULL;
}

int streams__mock_topic_create(streams__mock_ctl_t *ctl, const char *name, int partitions,
                               char *err, size_t errlen)
{
    if (topic_find(ctl, name)) {
        snprintf(err, errlen, "topic \"%s\" exists already (give each topic once)", name);
        return UKKO_EINVAL;
    }
    if (ctl->ntopics == ctl->topics_cap) {
        size_t cap = ctl->topics_cap ? ctl->topics_cap * 2 : 8;
        streams__topic_t *t = realloc(ctl->topics, cap * sizeof(*t));
        if (!t) {
            snprintf(err, errlen, "out of memory for topic \"%s\"", name);
            return UKKO_ENOMEM;
        }
        ctl->topics = t;
        ctl->topics_cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        snprintf(err, errlen, "out of memory for topic \"%s\"", name);
        return UKKO_ENOMEM;
    }
    /* As the mock's auto-creation does: three replicas where there are three
     * brokers. The leader of each partition is the mock's pick. */
    int rf = ctl->brokers < 3 ? ctl->brokers : 3;
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(ctl->mc, name, partitions, rf);
    if (e) {
        snprintf(err, errlen,
                 "topic \"%s\": the mock refused it: %s (%s)%s", name, rd_kafka_err2name(e),
                 rd_kafka_err2str(e),
                 e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS
                     ? "; a client auto-created it first: create topics before clients use them"
                     : "");
        free(copy);
        return UKKO_EINVAL;
    }
    ctl->topics[ctl->ntopics++] = (streams__topic_t){.name = copy, .partitions = partitions};
    return 0;
}

void streams__mock_ctl_destroy(streams__mock_ctl_t *ctl)
{
    for (size_t i = 0; i < ctl->ntopics; i++)
        free(ctl->topics[i].name);
    free(ctl->topics);
    ctl->topics = NULL;
    ctl->ntopics = ctl->topics_cap = 0;
}

/* ------------------------------------------------------------ the commands */

#define MAX_WORDS 8

typedef struct words {
    char *w[MAX_WORDS];
    int n;
} words_t;

static int reply_err(ukko_buf_t *reply, const char *fmt, ...) UKKO_PRINTF(2, 3);
static int reply_err(ukko_buf_t *reply, const char *fmt, ...)
{
    ukko_buf_reset(reply);
    (void)ukko_buf_puts(reply, "error: ");
    va_list ap;
    va_start(ap, fmt);
    (void)ukko_buf_vprintf(reply, fmt, ap);
    va_end(ap);
    return UKKO_EINVAL;
}

static int reply_ok(ukko_buf_t *reply, const char *fmt, ...) UKKO_PRINTF(2, 3);
static int reply_ok(ukko_buf_t *reply, const char *fmt, ...)
{
    ukko_buf_reset(reply);
    (void)ukko_buf_puts(reply, "ok: ");
    va_list ap;
    va_start(ap, fmt);
    (void)ukko_buf_vprintf(reply, fmt, ap);
    va_end(ap);
    return 0;
}

static int usage_err(ukko_buf_t *reply, const char *cmd, const char *form)
{
    return reply_err(reply, "%s: usage: %s", cmd, form);
}

static int broker_arg(const streams__mock_ctl_t *ctl, const char *cmd, const char *s, long *id,
                      ukko_buf_t *reply)
{
    if (parse_int(s, 1, ctl->brokers, id))
        return 0;
    return reply_err(reply, "%s: broker \"%s\" does not exist: the brokers are 1 to %d", cmd, s,
                     ctl->brokers);
}

static int api_arg(const char *cmd, const char *s, int16_t *key, ukko_buf_t *reply)
{
    if (api_find(s, key) == 0)
        return 0;
    reply_err(reply, "%s: unknown API \"%s\": allowed (the requests the mock serves): ", cmd, s);
    list_apis(reply);
    return UKKO_EINVAL;
}

static const char *api_name(int16_t key)
{
    for (size_t i = 0; i < NAPIS; i++)
        if (apis[i].key == key)
            return apis[i].name;
    return "?";
}

static int cmd_fail(streams__mock_ctl_t *ctl, const words_t *a, ukko_buf_t *reply)
{
    if (a->n != 4)
        return usage_err(reply, "fail", "fail API COUNT ERROR (e.g. fail OffsetCommit 3 "
                                        "REQUEST_TIMED_OUT)");
    int16_t key;
    if (api_arg("fail", a->w[1], &key, reply) < 0)
        return UKKO_EINVAL;
    long count;
    if (!parse_int(a->w[2], 1, STREAMS__MAX_FAIL_COUNT, &count))
        return reply_err(reply, "fail: count \"%s\" must be a whole number from 1 to %d",
                         a->w[2], STREAMS__MAX_FAIL_COUNT);
    rd_kafka_resp_err_t code;
    if (error_find(a->w[3], &code) < 0) {
        reply_err(reply, "fail: unknown error \"%s\": allowed: ", a->w[3]);
        list_errors(reply);
        return UKKO_EINVAL;
    }
    rd_kafka_resp_err_t *errs = malloc((size_t)count * sizeof(*errs));
    if (!errs)
        return reply_err(reply, "fail: out of memory for %ld errors", count);
    for (long i = 0; i < count; i++)
        errs[i] = code;
    rd_kafka_mock_push_request_errors_array(ctl->mc, key, (size_t)count, errs);
    free(errs);
    /* Said with the name librdkafka (and so its clients' messages) uses. */
    return reply_ok(reply, "the next %ld %s request(s) fail with %s%s", count, api_name(key),
                    rd_kafka_err2name(code),
                    code == RD_KAFKA_RESP_ERR__TRANSPORT ? " (the broker closes the connection)"
                                                         : "");
}

static int cmd_clear(streams__mock_ctl_t *ctl, const words_t *a, ukko_buf_t *reply)
{
    if (a->n != 2)
        return usage_err(reply, "clear", "clear API");
    int16_t key;
    if (api_arg("clear", a->w[1], &key, reply) < 0)
        return UKKO_EINVAL;
    rd_kafka_mock_clear_request_errors(ctl->mc, key);
    return reply_ok(reply, "no more injected %s failures", api_name(key));
}

static int cmd_updown(streams__mock_ctl_t *ctl, const words_t *a, bool up, ukko_buf_t *reply)
{
    const char *cmd = up ? "up" : "down";
    if (a->n != 2)
        return usage_err(reply, cmd, up ? "up BROKER" : "down BROKER");
    long id;
    if (broker_arg(ctl, cmd, a->w[1], &id, reply) < 0)
        return UKKO_EINVAL;
    rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(ctl->mc, (int32_t)id)
                               : rd_kafka_mock_broker_set_down(ctl->mc, (int32_t)id);
    if (e)
        return reply_err(reply, "%s %ld: the mock refused: %s", cmd, id, rd_kafka_err2name(e));
    return reply_ok(reply,
                    up ? "broker %ld is up"
                       : "broker %ld is down (connections closed, new ones refused; its "
                         "partitions keep it as leader until moved)",
                    id);
}

static int cmd_leader(streams__mock_ctl_t *ctl, const words_t *a, ukko_buf_t *reply)
{
    if (a->n != 4)
        return usage_err(reply, "leader", "leader TOPIC PARTITION BROKER|none");
    /* The mock creates a topic it does not know when asked to move one of
     * its partitions; only topics we created are known to exist. */
    const streams__topic_t *t = topic_find(ctl, a->w[1]);
    if (!t)
        return reply_err(reply,
                         "leader: topic \"%s\" was not created by dev-kafka: create it with "
                         "--topic %s:PARTITIONS or the command topic %s:PARTITIONS",
                         a->w[1], a->w[1], a->w[1]);
    long part;
    if (!parse_int(a->w[2], 0, t->partitions - 1, &part))
        return reply_err(reply, "leader: partition \"%s\" of \"%s\" does not exist: it has 0 to %d",
                         a->w[2], t->name, t->partitions - 1);
    long id = -1;
    if (strcasecmp(a->w[3], "none") && broker_arg(ctl, "leader", a->w[3], &id, reply) < 0)
        return UKKO_EINVAL;
    rd_kafka_resp_err_t e =
        rd_kafka_mock_partition_set_leader(ctl->mc, t->name, (int32_t)part, (int32_t)id);
    if (e)
        return reply_err(reply, "leader: the mock refused: %s", rd_kafka_err2name(e));
    if (id < 0)
        return reply_ok(reply, "%s [%ld] has no leader (clients get LEADER_NOT_AVAILABLE)",
                        t->name, part);
    return reply_ok(reply, "%s [%ld] is led by broker %ld", t->name, part, id);
}

static int cmd_rtt(streams__mock_ctl_t *ctl, const words_t *a, ukko_buf_t *reply)
{
    if (a->n != 3)
        return usage_err(reply, "rtt", "rtt BROKER MS");
    long id, ms;
    if (broker_arg(ctl, "rtt", a->w[1], &id, reply) < 0)
        return UKKO_EINVAL;
    if (!parse_int(a->w[2], 0, STREAMS__MAX_RTT_MS, &ms))
        return reply_err(reply, "rtt: \"%s\" must be a whole number of milliseconds from 0 to %d",
                         a->w[2], STREAMS__MAX_RTT_MS);
    rd_kafka_resp_err_t e = rd_kafka_mock_broker_set_rtt(ctl->mc, (int32_t)id, (int)ms);
    if (e)
        return reply_err(reply, "rtt: the mock refused: %s", rd_kafka_err2name(e));
    return reply_ok(reply, "broker %ld answers after %ld ms", id, ms);
}

static int cmd_topic(streams__mock_ctl_t *ctl, const words_t *a, ukko_buf_t *reply)
{
    if (a->n != 2)
        return usage_err(reply, "topic", "topic NAME:PARTITIONS");
    char name[STREAMS__TOPIC_NAME_MAX + 1], err[600];
    int partitions;
    if (streams__topic_spec_parse(a->w[1], name, sizeof(name), &partitions, err, sizeof(err)) < 0 ||
        streams__mock_topic_create(ctl, name, partitions, err, sizeof(err)) < 0)
        return reply_err(reply, "topic: %s", err);
    return reply_ok(reply, "topic %s created with %d partition(s)", name, partitions);
}

int streams__mock_command(streams__mock_ctl_t *ctl, const char *line, size_t len,
                          ukko_buf_t *reply)
{
    ukko_buf_reset(reply);
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len > STREAMS__CONTROL_LINE_MAX)
        return reply_err(reply, "line of %zu bytes is longer than %d: send one short command "
                                "per line",
                         len, STREAMS__CONTROL_LINE_MAX);
    /* Only printable ASCII and blanks: what comes back in a reply is then
     * safe to echo, and a stray binary write cannot be half-understood. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c > 0x7e)
            return reply_err(reply, "byte 0x%02x at column %zu is not printable ASCII: send "
                                    "text commands (help lists them)",
                             c, i + 1);
    }
    char buf[STREAMS__CONTROL_LINE_MAX + 1];
    memcpy(buf, line, len);
    buf[len] = '\0';
    words_t a = {.n = 0};
    for (char *save = NULL, *w = strtok_r(buf, " \t", &save); w;
         w = strtok_r(NULL, " \t", &save)) {
        if (a.n == MAX_WORDS)
            return reply_err(reply, "too many words (more than %d): %s", MAX_WORDS,
                             commands_help);
        a.w[a.n++] = w;
    }
    if (a.n == 0 || a.w[0][0] == '#')
        return 0;
    const char *cmd = a.w[0];
    if (!strcasecmp(cmd, "fail"))
        return cmd_fail(ctl, &a, reply);
    if (!strcasecmp(cmd, "clear"))
        return cmd_clear(ctl, &a, reply);
    if (!strcasecmp(cmd, "down") || !strcasecmp(cmd, "up"))
        return cmd_updown(ctl, &a, !strcasecmp(cmd, "up"), reply);
    if (!strcasecmp(cmd, "leader"))
        return cmd_leader(ctl, &a, reply);
    if (!strcasecmp(cmd, "rtt"))
        return cmd_rtt(ctl, &a, reply);
    if (!strcasecmp(cmd, "topic"))
        return cmd_topic(ctl, &a, reply);
    if (!strcasecmp(cmd, "help"))
        return reply_ok(reply, "%s", commands_help);
    if (!strcasecmp(cmd, "apis")) {
        reply_ok(reply, "APIs: ");
        list_apis(reply);
        return 0;
    }
    if (!strcasecmp(cmd, "errors")) {
        reply_ok(reply, "errors: ");
        list_errors(reply);
        return 0;
    }
    return reply_err(reply, "unknown command \"%s\": %s", cmd, commands_help);
}
