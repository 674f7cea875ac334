/* bench_kafka.h: what the Kafka benchmarks share, the static library bench_kafka
 * (bench_kafka_client.c: records, topics, the producer, offset stores;
 * bench_kafka_group.c: the consumer group figures and its member processes;
 * bench_kafka_common.c: the bare and at-least-once reads, the broker's start, the
 * load average, the JSON line). Its programs: bench_kafka_baseline.c (librdkafka
 * alone) and bench_kafka_shards.c (ukko beside it). Every call is made from the
 * thread that owns the handle it is given; kb_stop is the only state set by a
 * signal. */
#ifndef BENCH_KAFKA_H
#define BENCH_KAFKA_H

#include "ukko_kafka.h"

#include <librdkafka/rdkafka.h>

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KB_HOST "127.0.0.30"   /* the benchmarks' loopback address (DEVELOPERS.md) */
#define KB_MAX_PARTS 256       /* the group figures' assignment bitmaps */
#define KB_MAX_MEMBERS 4
#define KB_MAX_RUNS 16
#define KB_KEYS 100000         /* distinct keys, cycled: every record is keyed */
#define KB_VALUE_HEAD 16       /* value: u64 sequence, i64 produce time (us), padding */

typedef struct kb_opts {
    long records;
    int partitions, size, rate, runs;
    int64_t steady_us;           /* the steady window before the first join */
    bool quick;
    const char *bootstrap;       /* a broker that already runs: no start, no stop */
    /* --member mode (internal) */
    bool member;
    int id;
    const char *topic, *group, *strategy;
} kb_opts_t;

/* A stretch of the group figures; a gap is closed by a record processed inside it. */
typedef struct kb_window {
    int64_t start_us, end_us;
    int64_t gap_part_us, gap_group_us;  /* longest: any one partition / the whole group */
    int gap_part;                       /* the partition of gap_part_us */
    int64_t latency_us;                 /* worst produce-to-process */
    int64_t settle_us;                  /* start to the assignment change that settled it */
    int64_t dups, records;
    bool done;
} kb_window_t;

typedef struct kb_gresult {
    const char *strategy;
    int64_t produced, processed, dups, lost;
    int cycles;                         /* join-and-leave cycles measured */
    kb_window_t steady, join[KB_MAX_RUNS], leave[KB_MAX_RUNS];
    bool done;
} kb_gresult_t;

/* Set by SIGINT/SIGTERM: the parent winds down and stops the broker; a member leaves. */
extern volatile sig_atomic_t kb_stop;
/* This program's path, re-run with --member for each group member (so a program
 * that runs kb_group_run must serve --member with kb_member_main). */
extern char kb_self[4096];
/* The name kb_say puts before its lines (default "bench_kafka_baseline"). */
extern const char *kb_prog;

void kb_on_signal(int sig);
/* A command-line number in [lo, hi] into *out; else a line naming the program,
 * the option, the value and the range on stderr, and -1. */
int kb_parse_long(const char *prog, const char *name, const char *v, long lo, long hi, long *out);
int64_t kb_now_us(void);  /* CLOCK_MONOTONIC: one clock for every process on the host */
__attribute__((format(printf, 1, 2))) void kb_say(const char *fmt, ...);

void kb_value_fill(char *buf, int size, uint64_t seq, int64_t produced_us);
bool kb_value_read(const rd_kafka_message_t *m, uint64_t *seq, int64_t *produced_us);

/* A config with bootstrap.servers and the "key", "value", ... pairs of kv
 * (NULL-ended, may be NULL); NULL with why filled on a bad pair. */
rd_kafka_conf_t *kb_conf_new(const char *bootstrap, const char *const kv[], char *why,
                             size_t why_size);
/* Creates topic (replication 1) with the admin API and waits until every partition
 * has a leader. An existing topic is an error: each figure reads a topic of its own.
 * 0 or -1 (why). */
int kb_topic_create(const char *bootstrap, const char *topic, int partitions, char *why,
                    size_t why_size);

/* A producer and its delivery counts. Its delivery callback runs on the thread that
 * polls it, the only one that touches the counts until that thread is joined. */
typedef struct kb_prod {
    rd_kafka_t *rk;
    const char *topic;
    int size;
    uint64_t acked, failed;
    uint8_t *acked_bits;     /* one bit per sequence, or NULL; freed by kb_prod_destroy */
    uint64_t cap;            /* bits in acked_bits */
    char first_error[256];
} kb_prod_t;

int kb_prod_init(kb_prod_t *p, const char *bootstrap, const char *topic, int size, char *why,
                 size_t why_size);
/* kb_prod_init with more "key", "value" pairs for the producer (NULL-ended, may be
 * NULL), e.g. a transactional.id. */
int kb_prod_init_kv(kb_prod_t *p, const char *bootstrap, const char *topic, int size,
                    const char *const kv[], char *why, size_t why_size);
/* Produces record seq (key "k<seq mod KB_KEYS>", value of p->size bytes built in buf),
 * serving deliveries while the local queue is full. 0 or -1 (counted in failed). */
int kb_prod_send(kb_prod_t *p, uint64_t seq, char *buf);
/* The same with the caller's key and value (copied); seq marks acked_bits. */
int kb_prod_send_kv(kb_prod_t *p, uint64_t seq, const void *key, size_t klen, const void *value,
                    size_t vlen);
/* Waits for every delivery report, the deadline or kb_stop. */
void kb_prod_flush(kb_prod_t *p, int64_t timeout_us);
void kb_prod_destroy(kb_prod_t *p);

/* rd_kafka_offsets_store of "processed up to m", through one-element lists made once
 * per partition (see bench_kafka_client.c for why not one list for all). */
typedef struct kb_stores {
    rd_kafka_topic_partition_list_t *l[KB_MAX_PARTS];
    uint64_t failed;
} kb_stores_t;

void kb_stores_put(kb_stores_t *s, rd_kafka_t *rk, const rd_kafka_message_t *m);
void kb_stores_free(kb_stores_t *s);

/* Reads records records of topic (partitions partitions) from the beginning with
 * rd_kafka_assign (no group protocol), with a group id of its own (run numbers it).
 * at_least_once: offsets stored after each record, committed every second and at the
 * end, *committed = the sum the broker then keeps. Returns records/s from the assign
 * to the last record, or -1 (said on stderr). */
double kb_consume_all(const char *bootstrap, const char *topic, int partitions, int64_t records,
                      bool at_least_once, int run, int64_t *committed);

/* Starts a one-node rig on host (tests/support/ukko_kafka.h), stopped by broker.sh's
 * watchdog if this process dies first. 0 (bootstrap and the broker's version filled),
 * 1 no real Kafka here (skipped says why), -1 failed (said on stderr). The caller runs
 * ukko_kafka_rig_stop whatever the outcome: a failed start keeps its logs until then. */
int kb_rig_start(ukko_kafka_rig_t *rig, const char *host, char *bootstrap, size_t bootstrap_size,
                 char *broker, size_t broker_size, char *skipped, size_t skipped_size);
/* The 1-minute load average, or -1. */
double kb_loadavg(void);

/* A JSON line being written; what does not fit is cut (16 KiB is several times the
 * longest line). */
typedef struct kb_json {
    char b[16384];
    size_t n;
} kb_json_t;

__attribute__((format(printf, 2, 3))) void kb_jadd(kb_json_t *j, const char *fmt, ...);
/* A JSON string, or null for NULL. */
void kb_jstr(kb_json_t *j, const char *s);
/* "key": a whole number, or null when it was not measured (< 0). */
void kb_jnum(kb_json_t *j, const char *key, double v);

/* The program run with --member: one group member until SIGTERM. Exit status. */
int kb_member_main(const kb_opts_t *o);
/* One consumer-group run with partition.assignment.strategy strategy (see
 * bench_kafka_group.c). 0, or -1 (said on stderr; r holds what was measured). */
int kb_group_run(const char *bootstrap, const kb_opts_t *o, const char *strategy,
                 kb_gresult_t *r);

#endif
