/* bench_kafka_common.c: what the Kafka benchmarks share beyond the client plumbing
 * of bench_kafka_client.c: the bare and at-least-once reads of a whole topic, the
 * broker's start through the rig, the load average, and the JSON line. Main thread
 * of the program; see bench_kafka.h. */
#include "bench_kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the read figures --------------------------------------------------------- */

/* Every record of topic from the beginning with rd_kafka_assign (no group protocol).
 * at_least_once: offsets stored after processing each record and committed every
 * second, and a final commit whose offsets are read back. */
double kb_consume_all(const char *bootstrap, const char *topic, int partitions, int64_t records,
                      bool at_least_once, int run, int64_t *committed)
{
    char group[96], err[256], why[512];
    /* A group id of its own per run: every run starts from nothing committed. The
     * bare consumer needs one only because rd_kafka_assign wants a group handle. */
    snprintf(group, sizeof(group), "bench-%s-%d-%d", at_least_once ? "alo" : "bare",
             (int)getpid(), run);
    const char *const kv[] = {
        "group.id", group,
        "enable.auto.commit", at_least_once ? "true" : "false",
        "auto.commit.interval.ms", "1000",
        "enable.auto.offset.store", at_least_once ? "false" : "true",
        "enable.partition.eof", "false",
        NULL};
    rd_kafka_conf_t *conf = kb_conf_new(bootstrap, kv, why, sizeof(why));
    rd_kafka_t *rk = conf ? rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)) : NULL;
    double rate = -1;
    if (!rk) {
        kb_say("consumer: %s", conf ? err : why);
        if (conf)
            rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(partitions);
    for (int i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(all, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    kb_stores_t *stores = calloc(1, sizeof(*stores));

    int64_t got = 0, t0 = kb_now_us(), t1 = t0;
    int64_t deadline = t0 + 60000000 + records * 100;  /* 60 s + 10,000 records/s */
    uint64_t sum = 0;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, all);
    if (e) {
        kb_say("consumer: rd_kafka_assign of %d partitions of %s: %s", partitions, topic,
               rd_kafka_err2str(e));
        goto out;
    }
    while (got < records && !kb_stop && kb_now_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err) {
            kb_say("consumer: %s [%d]: %s", topic, m->partition, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        uint64_t seq;
        int64_t produced;
        if (kb_value_read(m, &seq, &produced))  /* the "processing": read what was sent */
            sum += seq;
        got++;
        if (at_least_once)
            kb_stores_put(stores, rk, m);
        rd_kafka_message_destroy(m);
    }
    t1 = kb_now_us();
    if (got < records) {
        kb_say("consumer: %" PRId64 " of %" PRId64 " records of %s read before %s", got, records,
               topic, kb_stop ? "Ctrl-C" : "the deadline");
        goto out;
    }
    rate = (double)got / ((double)(t1 - t0) / 1e6);
    if (at_least_once) {
        /* The last second's offsets, then what the broker keeps for the group. */
        e = rd_kafka_commit(rk, NULL, 0);
        if (!e)
            e = rd_kafka_committed(rk, all, 10000);
        *committed = 0;
        for (int i = 0; !e && i < all->cnt; i++)
            *committed += all->elems[i].offset > 0 ? all->elems[i].offset : 0;
        if (e)
            kb_say("consumer: final commit for group %s: %s", group, rd_kafka_err2str(e));
    }
out:
    (void)sum;
    if (stores->failed)
        kb_say("consumer: rd_kafka_offsets_store failed %" PRIu64 " times", stores->failed);
    kb_stores_free(stores);
    free(stores);
    rd_kafka_topic_partition_list_destroy(all);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rate;
}

/* ---- the broker ----------------------------------------------------------------- */

int kb_rig_start(ukko_kafka_rig_t *rig, const char *host, char *bootstrap, size_t bootstrap_size,
                 char *broker, size_t broker_size, char *skipped, size_t skipped_size)
{
    ukko_kafka_rig_opts_t opts = {.brokers = 1, .host = host};
    int rc = ukko_kafka_rig_start(rig, &opts);
    if (rc == UKKO_KAFKA_RIG_SKIP) {
        /* why reads "SKIPPED: no real Kafka (<reason>)": keep the reason */
        const char *why = strchr(rig->why, '(');
        snprintf(skipped, skipped_size, "%.*s",
                 why ? (int)strlen(why + 1) - 1 : (int)strlen(rig->why), why ? why + 1 : rig->why);
        return 1;
    }
    if (rc != 0) {
        kb_say("%s", rig->why);
        return -1;
    }
    snprintf(bootstrap, bootstrap_size, "%s", rig->bootstrap);
    /* The broker's own word for its version (AppInfoParser logs it at start). */
    char path[600], line[1024], version[64];
    snprintf(path, sizeof(path), "%s/node-1/broker.log", rig->state);
    snprintf(broker, broker_size, "unknown");
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f)) {
        char *v = strstr(line, "Kafka version: ");
        if (v && sscanf(v + strlen("Kafka version: "), "%63[0-9A-Za-z.-]", version) == 1) {
            snprintf(broker, broker_size, "%s", version);
            break;
        }
    }
    if (f)
        fclose(f);
    return 0;
}

/* ---- output -------------------------------------------------------------------- */

double kb_loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

void kb_jadd(kb_json_t *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (j->n < sizeof(j->b)) {
        int w = vsnprintf(j->b + j->n, sizeof(j->b) - j->n, fmt, ap);
        j->n += w > 0 ? (size_t)w : 0;
    }
    va_end(ap);
}

void kb_jstr(kb_json_t *j, const char *s)
{
    if (!s) {
        kb_jadd(j, "null");
        return;
    }
    kb_jadd(j, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            kb_jadd(j, "\\%c", c);
        else if (c < 0x20)
            kb_jadd(j, "\\u%04x", c);
        else
            kb_jadd(j, "%c", c);
    }
    kb_jadd(j, "\"");
}

void kb_jnum(kb_json_t *j, const char *key, double v)
{
    if (v < 0)
        kb_jadd(j, "\"%s\":null", key);
    else
        kb_jadd(j, "\"%s\":%.0f", key, v);
}

int kb_parse_long(const char *prog, const char *name, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || x < lo || x > hi) {
        fprintf(stderr, "%s: %s %s: give a number from %ld to %ld\n", prog, name,
                v ? v : "(missing)", lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}
