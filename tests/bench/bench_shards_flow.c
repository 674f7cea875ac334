/* bench_shards_flow.c: the records of bench_kafka_shards: orders as the orders
 * app reads them, a bulk of them in one transaction (they appear to consumers
 * at once), a paced producer thread, and a reader thread of orders-processed
 * that measures gaps, duplicates and latency. The pacer's thread owns its
 * producer until ks_pacer_stop joins it; the reader's state is shared with
 * the main thread under its mutex only. */
#include "bench_kafka_shards.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t ks_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int ks_order(char *buf, size_t cap, int size, uint64_t seq, const char *id)
{
    int n = snprintf(buf, cap, "{\"order_id\":\"%s\",\"amount\":%d,\"p\":\"", id,
                     1 + (int)(seq % 90));
    if (n < 0 || (size_t)n + 3 > cap)
        return -1;
    int pad = size - n - 2;  /* the padding, then "} */
    for (int i = 0; i < pad && (size_t)n + 3 < cap; i++)
        buf[n++] = 'x';
    buf[n++] = '"';
    buf[n++] = '}';
    buf[n] = 0;
    return n;
}

static int key_of(char *key, size_t cap, uint64_t seq, int customers)
{
    return snprintf(key, cap, "c%" PRIu64, seq % (uint64_t)customers);
}

/* ---- one transaction ------------------------------------------------------------ */

static int txn_error(rd_kafka_error_t *e, const char *what, char *why, size_t why_size)
{
    if (!e)
        return 0;
    snprintf(why, why_size, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -1;
}

int ks_bulk_produce(const char *bootstrap, const char *topic, long records, int size,
                    int customers, int partitions, int64_t *counts, const char *txn_id,
                    int64_t *t0_us, char *why, size_t why_size)
{
    /* The broker's transaction.max.timeout.ms is 15 min; 10 covers a slow run. */
    const char *const kv[] = {"transactional.id", txn_id, "transaction.timeout.ms", "600000",
                              NULL};
    kb_prod_t p;
    char key[32], value[4096], id[32];
    memset(counts, 0, sizeof(*counts) * (size_t)partitions);
    if (kb_prod_init_kv(&p, bootstrap, topic, size, kv, why, why_size) < 0)
        return -1;
    int rc = txn_error(rd_kafka_init_transactions(p.rk, 60000), "init_transactions", why,
                       why_size);
    if (rc == 0)
        rc = txn_error(rd_kafka_begin_transaction(p.rk), "begin_transaction", why, why_size);
    for (long i = 0; rc == 0 && i < records && !kb_stop; i++) {
        snprintf(id, sizeof(id), "%ld", i);
        int klen = key_of(key, sizeof(key), (uint64_t)i, customers);
        int vlen = ks_order(value, sizeof(value), size, (uint64_t)i, id);
        if (kb_prod_send_kv(&p, (uint64_t)i, key, (size_t)klen, value, (size_t)vlen) < 0)
            break;
        /* Where murmur2_random puts a keyed record: murmur2 (it touches no topic). */
        counts[rd_kafka_msg_partitioner_murmur2(NULL, key, (size_t)klen, partitions, NULL,
                                                NULL)]++;
        if (i % 1024 == 0)
            rd_kafka_poll(p.rk, 0);
    }
    if (rc == 0) {
        kb_prod_flush(&p, 300000000);
        if (p.failed || p.acked != (uint64_t)records) {
            snprintf(why, why_size, "%" PRIu64 " of %ld records acknowledged, %" PRIu64
                     " failed (first: %s)", p.acked, records, p.failed,
                     p.first_error[0] ? p.first_error : "none");
            rc = -1;
        }
    }
    if (rc == 0) {
        *t0_us = kb_now_us();
        rc = txn_error(rd_kafka_commit_transaction(p.rk, 60000), "commit_transaction", why,
                       why_size);
    }
    kb_prod_destroy(&p);
    return kb_stop ? -1 : rc;
}

/* ---- the paced producer ----------------------------------------------------------- */

static void *pacer_run(void *arg)
{
    ks_pacer_t *s = arg;
    char key[32], value[4096], id[96];
    int64_t t0 = kb_now_us();
    uint64_t sent = 0;
    /* Paced by the clock: records due = rate x elapsed, whatever a send took. */
    while (!atomic_load(&s->stop) && !kb_stop) {  /* pairs with the store in ks_pacer_stop */
        uint64_t due = (uint64_t)((double)(kb_now_us() - t0) * s->rate / 1e6);
        while (sent < due && sent < s->p.cap && !atomic_load(&s->stop)) {
            snprintf(id, sizeof(id), "%" PRIu64 "-%" PRId64 "-%" PRId64, sent, kb_now_us(),
                     ks_wall_us());
            int klen = key_of(key, sizeof(key), sent, s->customers);
            int vlen = ks_order(value, sizeof(value), s->size, sent, id);
            if (kb_prod_send_kv(&s->p, sent, key, (size_t)klen, value, (size_t)vlen) < 0)
                break;
            atomic_store(&s->sent, ++sent);  /* pairs with loads in the main thread */
        }
        if (sent >= s->p.cap)
            s->capped = true;
        rd_kafka_poll(s->p.rk, 0);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    kb_prod_flush(&s->p, 30000000);
    return NULL;
}

int ks_pacer_start(ks_pacer_t *s, const char *bootstrap, int rate, int size, int customers,
                   uint64_t cap, char *why, size_t why_size)
{
    memset(s, 0, sizeof(*s));
    if (kb_prod_init(&s->p, bootstrap, KS_IN, size, why, why_size) < 0)
        return -1;
    s->rate = rate;
    s->size = size;
    s->customers = customers;
    s->p.cap = cap;
    s->p.acked_bits = calloc((size_t)(cap / 8 + 1), 1);
    atomic_init(&s->stop, false);
    atomic_init(&s->sent, 0);
    if (!s->p.acked_bits || pthread_create(&s->thread, NULL, pacer_run, s)) {
        snprintf(why, why_size, "the producer thread could not start");
        kb_prod_destroy(&s->p);
        return -1;
    }
    s->running = true;
    return 0;
}

void ks_pacer_stop(ks_pacer_t *s)
{
    if (!s->running)
        return;
    atomic_store(&s->stop, true);  /* pairs with the load in pacer_run */
    pthread_join(s->thread, NULL);
    s->running = false;
}

void ks_pacer_free(ks_pacer_t *s)
{
    ks_pacer_stop(s);
    kb_prod_destroy(&s->p);
}

/* ---- the reader of orders-processed ----------------------------------------------- */

/* One output: its source partition, the order's seq and produce times, when it was
 * produced by its handler (its timestamp) and when we read it. Under r->mu. */
static void on_output(ks_reader_t *r, int p, uint64_t seq, int64_t mono_us, int64_t wall_us,
                      int64_t stamp_us, int64_t read_us)
{
    ks_window_t *w = r->win;
    bool in = w && stamp_us >= w->start_us, dup = false;
    r->outputs++;
    if (seq < r->cap) {
        uint8_t bit = (uint8_t)(1u << (seq % 8));
        dup = r->seen[seq / 8] & bit;
        r->seen[seq / 8] |= bit;
    }
    if (dup) {
        r->dups++;
        if (in)
            w->dups++;
    }
    /* A gap ends with the first record processed after it (one that straddles the
     * window's start counts whole); outputs of different partitions and producers
     * may be read slightly out of order: only forward steps count. */
    if (in) {
        w->records++;
        if (r->last_us[p] && stamp_us - r->last_us[p] > w->gap_part_us) {
            w->gap_part_us = stamp_us - r->last_us[p];
            w->gap_part = p;
        }
        if (r->last_any_us && stamp_us - r->last_any_us > w->gap_all_us)
            w->gap_all_us = stamp_us - r->last_any_us;
    }
    if (stamp_us > r->last_us[p])
        r->last_us[p] = stamp_us;
    if (stamp_us > r->last_any_us)
        r->last_any_us = stamp_us;
    if (wall_us > r->newest_produced_us[p])
        r->newest_produced_us[p] = wall_us;
    if (!dup && wall_us >= r->lat_from_us && wall_us < r->lat_to_us && r->nlat < r->lat_cap) {
        r->lat_read[r->nlat] = read_us - mono_us;
        r->lat_stamp[r->nlat] = stamp_us - wall_us;
        r->nlat++;
    }
}

static void *reader_run(void *arg)
{
    ks_reader_t *r = arg;
    while (!atomic_load(&r->stop) && !kb_stop) {  /* pairs with the store in ks_reader_stop */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
        if (!m)
            continue;
        int64_t read_us = kb_now_us();
        if (m->err) {
            kb_say("reader: %s [%d]: %s", KS_OUT, m->partition, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_timestamp_type_t tt;
        int64_t stamp_ms = rd_kafka_message_timestamp(m, &tt);
        cJSON *v = cJSON_ParseWithLength(m->payload, m->len);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(v, "source_partition");
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "order_id"));
        uint64_t seq;
        int64_t mono, wall;
        pthread_mutex_lock(&r->mu);
        if (cJSON_IsNumber(sp) && sp->valueint >= 0 && sp->valueint < r->partitions && id &&
            sscanf(id, "%" SCNu64 "-%" SCNd64 "-%" SCNd64, &seq, &mono, &wall) == 3 &&
            stamp_ms > 0)
            on_output(r, sp->valueint, seq, mono, wall, stamp_ms * 1000, read_us);
        else
            r->bad++;
        pthread_mutex_unlock(&r->mu);
        cJSON_Delete(v);
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

int ks_reader_start(ks_reader_t *r, const char *bootstrap, int partitions, uint64_t cap,
                    size_t lat_cap, char *why, size_t why_size)
{
    char group[64], err[256];
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    r->inited = true;
    atomic_init(&r->stop, false);
    snprintf(group, sizeof(group), "bench-shards-reader-%d", (int)getpid());
    /* A fetch waits at most 100 ms for data: the reader's share of a latency. */
    const char *const kv[] = {"group.id", group, "enable.auto.commit", "false",
                              "enable.partition.eof", "false", "fetch.wait.max.ms", "100",
                              NULL};
    rd_kafka_conf_t *conf = kb_conf_new(bootstrap, kv, why, why_size);
    if (!conf)
        return -1;
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!r->rk) {
        snprintf(why, why_size, "rd_kafka_new (reader): %s", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_poll_set_consumer(r->rk);
    r->partitions = partitions;
    r->cap = cap;
    r->seen = calloc((size_t)(cap / 8 + 1), 1);
    r->lat_cap = lat_cap;
    r->lat_read = calloc(lat_cap ? lat_cap : 1, sizeof(int64_t));
    r->lat_stamp = calloc(lat_cap ? lat_cap : 1, sizeof(int64_t));
    r->lat_from_us = r->lat_to_us = 0;
    rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(all, KS_OUT, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, all);
    rd_kafka_topic_partition_list_destroy(all);
    if (e) {
        snprintf(why, why_size, "reader: assign of %s: %s", KS_OUT, rd_kafka_err2str(e));
        return -1;
    }
    if (!r->seen || !r->lat_read || !r->lat_stamp ||
        pthread_create(&r->thread, NULL, reader_run, r)) {
        snprintf(why, why_size, "the reader thread could not start");
        return -1;
    }
    r->running = true;
    return 0;
}

void ks_reader_window(ks_reader_t *r, ks_window_t *w)
{
    pthread_mutex_lock(&r->mu);
    r->win = w;
    pthread_mutex_unlock(&r->mu);
}

void ks_reader_latency(ks_reader_t *r, int64_t from_us, int64_t to_us)
{
    pthread_mutex_lock(&r->mu);
    r->lat_from_us = from_us;
    r->lat_to_us = to_us;
    pthread_mutex_unlock(&r->mu);
}

bool ks_reader_caught_up(ks_reader_t *r, int64_t since_us)
{
    pthread_mutex_lock(&r->mu);
    int p = 0;
    while (p < r->partitions && r->newest_produced_us[p] >= since_us)
        p++;
    pthread_mutex_unlock(&r->mu);
    return p == r->partitions;
}

uint64_t ks_reader_missing(ks_reader_t *r, const uint8_t *acked, uint64_t cap)
{
    uint64_t missing = 0;
    pthread_mutex_lock(&r->mu);
    for (uint64_t b = 0; b < cap / 8 + 1 && b < r->cap / 8 + 1; b++)
        missing += (uint64_t)__builtin_popcount(acked[b] & (uint8_t)~r->seen[b]);
    pthread_mutex_unlock(&r->mu);
    return missing;
}

void ks_reader_stop(ks_reader_t *r)
{
    if (r->running) {
        atomic_store(&r->stop, true);  /* pairs with the load in reader_run */
        pthread_join(r->thread, NULL);
        r->running = false;
    }
    if (r->rk) {
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
        r->rk = NULL;
    }
}

void ks_reader_free(ks_reader_t *r)
{
    ks_reader_stop(r);
    free(r->seen);
    free(r->lat_read);
    free(r->lat_stamp);
    r->seen = NULL;
    r->lat_read = r->lat_stamp = NULL;
    if (r->inited)
        pthread_mutex_destroy(&r->mu);
    r->inited = false;
}
