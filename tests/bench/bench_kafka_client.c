/* bench_kafka_client.c: the Kafka baseline's librdkafka plumbing: record values
 * (sequence and produce time), configs, topic creation through the admin API, a
 * producer with delivery counts, and offset stores. Each handle is used by the one
 * thread that made it. See bench_kafka.h. */
#include "bench_kafka.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t kb_stop;
char kb_self[4096];
const char *kb_prog = "bench_kafka_baseline";

void kb_on_signal(int sig)
{
    (void)sig;
    kb_stop = 1;
}

int64_t kb_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void kb_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", kb_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- records ------------------------------------------------------------------ */

void kb_value_fill(char *buf, int size, uint64_t seq, int64_t produced_us)
{
    memcpy(buf, &seq, 8);
    memcpy(buf + 8, &produced_us, 8);
    memset(buf + KB_VALUE_HEAD, 'x', (size_t)size - KB_VALUE_HEAD);
}

bool kb_value_read(const rd_kafka_message_t *m, uint64_t *seq, int64_t *produced_us)
{
    if (!m->payload || m->len < KB_VALUE_HEAD)
        return false;
    memcpy(seq, m->payload, 8);
    memcpy(produced_us, (const char *)m->payload + 8, 8);
    return true;
}

rd_kafka_conf_t *kb_conf_new(const char *bootstrap, const char *const kv[], char *why,
                             size_t why_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)))
        goto fail;
    for (int i = 0; kv && kv[i]; i += 2)
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)))
            goto fail;
    return conf;
fail:
    snprintf(why, why_size, "librdkafka config: %s", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Creates topic with partitions partitions (replication 1) through the admin API and
 * waits until each partition has a leader. An existing topic is an error: each figure
 * reads a topic of its own. */
int kb_topic_create(const char *bootstrap, const char *topic, int partitions, char *why,
                    size_t why_size)
{
    char err[256];
    int rc = -1;
    rd_kafka_conf_t *conf = kb_conf_new(bootstrap, NULL, why, why_size);
    rd_kafka_t *rk = conf ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)) : NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_NewTopic_t *nt = NULL;
    if (!rk) {
        if (conf) {
            snprintf(why, why_size, "rd_kafka_new: %s", err);
            rd_kafka_conf_destroy(conf);
        }
        return -1;
    }
    nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof(err));
    if (!nt) {
        snprintf(why, why_size, "topic %s: %s", topic, err);
        goto out;
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    ev = rd_kafka_queue_poll(q, 30000);
    if (!ev || rd_kafka_event_error(ev)) {
        snprintf(why, why_size, "CreateTopics %s on %s: %s", topic, bootstrap,
                 ev ? rd_kafka_event_error_string(ev) : "no answer in 30 s");
        goto out;
    }
    size_t n = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    if (n != 1 || rd_kafka_topic_result_error(res[0])) {
        snprintf(why, why_size, "CreateTopics %s (%d partitions) on %s: %s", topic, partitions,
                 bootstrap, n ? rd_kafka_topic_result_error_string(res[0]) : "no result");
        goto out;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    for (int64_t deadline = kb_now_us() + 30000000; !kb_stop;) {
        const struct rd_kafka_metadata *md = NULL;
        int led = 0;
        if (!rd_kafka_metadata(rk, 0, rkt, &md, 5000) && md->topic_cnt == 1 &&
            !md->topics[0].err && md->topics[0].partition_cnt == partitions)
            for (int i = 0; i < partitions; i++)
                led += !md->topics[0].partitions[i].err && md->topics[0].partitions[i].leader >= 0;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (led == partitions) {
            rc = 0;
            break;
        }
        if (kb_now_us() > deadline) {
            snprintf(why, why_size, "topic %s: %d of %d partitions have a leader after 30 s",
                     topic, led, partitions);
            break;
        }
        usleep(100000);  /* metadata has no wait-for-change call: poll it */
    }
out:
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (ev)
        rd_kafka_event_destroy(ev);
    if (nt)
        rd_kafka_NewTopic_destroy(nt);
    if (q)
        rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- producer ----------------------------------------------------------------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kb_prod_t *p = opaque;
    uint64_t seq = (uint64_t)(uintptr_t)m->_private;
    if (m->err) {
        if (!p->failed++)
            snprintf(p->first_error, sizeof(p->first_error), "%s", rd_kafka_err2str(m->err));
        return;
    }
    p->acked++;
    if (p->acked_bits && seq < p->cap)
        p->acked_bits[seq / 8] |= (uint8_t)(1u << (seq % 8));
}

int kb_prod_init(kb_prod_t *p, const char *bootstrap, const char *topic, int size, char *why,
                 size_t why_size)
{
    return kb_prod_init_kv(p, bootstrap, topic, size, NULL, why, why_size);
}

int kb_prod_init_kv(kb_prod_t *p, const char *bootstrap, const char *topic, int size,
                    const char *const more[], char *why, size_t why_size)
{
    /* librdkafka's defaults (acks=all, linger.ms=5, no compression) but Kafka's
     * (Java's) partitioner, which ukko's shards follow. */
    static const char *const kv[] = {"partitioner", "murmur2_random", NULL};
    char err[256];
    memset(p, 0, sizeof(*p));
    p->topic = topic;
    p->size = size;
    rd_kafka_conf_t *conf = kb_conf_new(bootstrap, kv, why, why_size);
    if (!conf)
        return -1;
    for (int i = 0; more && more[i]; i += 2)
        if (rd_kafka_conf_set(conf, more[i], more[i + 1], err, sizeof(err))) {
            snprintf(why, why_size, "librdkafka config: %s", err);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!p->rk) {
        snprintf(why, why_size, "rd_kafka_new (producer): %s", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    return 0;
}

int kb_prod_send(kb_prod_t *p, uint64_t seq, char *buf)
{
    char key[24];
    int klen = snprintf(key, sizeof(key), "k%" PRIu64, seq % KB_KEYS);
    kb_value_fill(buf, p->size, seq, kb_now_us());
    return kb_prod_send_kv(p, seq, key, (size_t)klen, buf, (size_t)p->size);
}

int kb_prod_send_kv(kb_prod_t *p, uint64_t seq, const void *key, size_t klen, const void *value,
                    size_t vlen)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(p->topic), RD_KAFKA_V_KEY(key, klen),
            RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
        if (!err)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || kb_stop) {
            if (!p->failed++)
                snprintf(p->first_error, sizeof(p->first_error), "%s", rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(p->rk, 5);  /* the local queue is full: serve deliveries */
    }
}

/* Waits for every delivery report (or the deadline, or Ctrl-C). */
void kb_prod_flush(kb_prod_t *p, int64_t timeout_us)
{
    for (int64_t deadline = kb_now_us() + timeout_us; rd_kafka_outq_len(p->rk) > 0;) {
        if (kb_stop || kb_now_us() > deadline)
            break;
        rd_kafka_flush(p->rk, 100);
    }
}

void kb_prod_destroy(kb_prod_t *p)
{
    if (p->rk)
        rd_kafka_destroy(p->rk);
    p->rk = NULL;
    free(p->acked_bits);
    p->acked_bits = NULL;
}

/* One-element lists for rd_kafka_offsets_store, one per partition, made once. Not one
 * list for all with its partition number rewritten: an element keeps librdkafka's
 * handle of its partition in _private ("do not touch"), and with 2.0.2 such a list
 * went on storing on the partition it was first used for (one partition's offsets
 * committed out of 12; the group lost records). */
void kb_stores_put(kb_stores_t *s, rd_kafka_t *rk, const rd_kafka_message_t *m)
{
    if (m->partition < 0 || m->partition >= KB_MAX_PARTS)
        return;
    rd_kafka_topic_partition_list_t **l = &s->l[m->partition];
    if (!*l) {
        *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(*l, rd_kafka_topic_name(m->rkt), m->partition);
    }
    (*l)->elems[0].offset = m->offset + 1;  /* the next one to read */
    if (rd_kafka_offsets_store(rk, *l))
        s->failed++;
}

void kb_stores_free(kb_stores_t *s)
{
    for (int i = 0; i < KB_MAX_PARTS; i++)
        if (s->l[i])
            rd_kafka_topic_partition_list_destroy(s->l[i]);
}
