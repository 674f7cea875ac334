/* bench_kafka_shards.h: what the files of bench_kafka_shards share
 * (bench_kafka_shards.c: the program, its figures and its output;
 * bench_shards_nodes.c: ukko nodes as processes, their routes and metrics,
 * the topics and the group offsets; bench_shards_flow.c: the producers and
 * the reader of orders-processed; bench_shards_report.c: the table and the
 * JSON line). The library bench_kafka (bench_kafka.h)
 * brings the librdkafka side of the baseline. Main thread, unless a comment
 * says otherwise. */
#ifndef BENCH_KAFKA_SHARDS_H
#define BENCH_KAFKA_SHARDS_H

#include "bench_kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define KS_HOST KB_HOST          /* nodes and broker on the benchmarks' address */
#define KS_MAX_NODES 4
#define KS_MAX_ENV 16            /* --node-env settings */
#define KS_IN "orders"           /* what the orders and sink apps read */
#define KS_OUT "orders-processed"
#define KS_DLQ "orders.dlq"

/* ---- ukko nodes (bench_shards_nodes.c) ---------------------------------------- */

typedef struct ks_node {
    pid_t pid;          /* 0: not running */
    int mport, cport;   /* management (HTTP), cluster (gossip and links) */
    char log[700];
} ks_node_t;

/* Up to KS_MAX_NODES `ukko run --app <app>` processes on KS_HOST, each on ports of
 * its own, the first one the seed; a keyring and the logs in dir. */
typedef struct ks_cluster {
    const char *ukko, *bootstrap, *app;  /* app: "sink" or "orders", also its type */
    char *dir;
    int partitions;
    int seed_cport;
    ks_node_t n[KS_MAX_NODES];
    const char *const *env;              /* more "UKKO_...=..." for every node, or NULL */
    bool keep;                           /* keep dir (the logs) at the end */
} ks_cluster_t;

/* A temp dir with a keyring. 0 or -1 (why). */
int ks_cluster_init(ks_cluster_t *c, const char *ukko, const char *bootstrap, const char *app,
                    int partitions, char *why, size_t why_size);
/* Starts node i on free ports (logs in dir/node<i>-<k>.log). 0 or -1 (why). */
int ks_node_start(ks_cluster_t *c, int i, char *why, size_t why_size);
/* Waits until node i's /ready answers 200. 0 or -1 (why, with its log's end). */
int ks_node_ready(ks_cluster_t *c, int i, int timeout_ms, char *why, size_t why_size);
/* SIGTERM and a wait for the exit: its code, 128+signal, or -1 (killed after
 * timeout_ms). */
int ks_node_stop(ks_cluster_t *c, int i, int timeout_ms);
/* Starts nodes 0..n-1, waits for every /ready, a whole table of n owners and
 * every partition assigned. 0 or -1 (why). */
int ks_cluster_up(ks_cluster_t *c, int n, char *why, size_t why_size);
/* True when every running node's /cluster/shards/<app> lists each shard once, on
 * owners owners holding P/owners rounded down or up each, none handing off or
 * unallocated. seen says what was not so. */
bool ks_table_whole(ks_cluster_t *c, int owners, char *seen, size_t seen_size);
/* The sum over running nodes of the samples of family whose labels contain
 * label (NULL: all), from /metrics; -1 when a node did not answer. */
double ks_metric_sum(ks_cluster_t *c, const char *family, const char *label);
/* VmRSS or VmHWM ("VmRSS", "VmHWM") of node i in KiB, or -1. */
long ks_node_mem_kib(const ks_cluster_t *c, int i, const char *field);
/* CPU seconds (user + system) of a process so far, or -1. */
double ks_cpu_s(pid_t pid);
/* SIGTERM to every running node (the last started first), waiting for each;
 * SIGKILL past timeout_ms. Returns how many did not exit 0. */
int ks_cluster_stop(ks_cluster_t *c, int timeout_ms);
/* Kills what still runs and removes dir (unless keep). */
void ks_cluster_destroy(ks_cluster_t *c);

/* Deletes topics orders, orders-processed and orders.dlq and the groups orders
 * and sink, then creates the topics again (12 partitions, the dead letters 1) and
 * waits for their leaders: every figure starts from nothing. 0 or -1 (why). */
int ks_topics_reset(const char *bootstrap, int partitions, char *why, size_t why_size);
/* A consumer handle of group (never joined: for committed offsets and watermarks). */
rd_kafka_t *ks_group_handle(const char *bootstrap, const char *group, char *why,
                            size_t why_size);
/* The group's committed offsets of topic's partitions (-1 where none). 0 or -1. */
int ks_committed(rd_kafka_t *rk, const char *topic, int partitions, int64_t *out);
/* The high watermark of each partition of topic. 0 or -1. */
int ks_ends(rd_kafka_t *rk, const char *topic, int partitions, int64_t *out);

/* ---- records, producers and the reader (bench_shards_flow.c) ------------------ */

/* An order of the orders app, keyed "c<seq mod customers>", padded to size bytes
 * ({"order_id":"<id>","amount":N,"p":"xx.."}). Returns its length. */
int ks_order(char *buf, size_t cap, int size, uint64_t seq, const char *id);

/* records orders (seq 0..records-1) to topic in ONE transaction, so that they
 * appear to consumers (read_committed, librdkafka's default and ukko's) at once,
 * when it commits. counts[0..partitions): the orders of each partition. *t0_us:
 * kb_now_us() just before the commit. 0 or -1 (why). */
int ks_bulk_produce(const char *bootstrap, const char *topic, long records, int size,
                    int customers, int partitions, int64_t *counts, const char *txn_id,
                    int64_t *t0_us, char *why, size_t why_size);

/* A producer thread writing rate orders a second (paced by the clock) whose
 * order_id is "<seq>-<monotonic us>-<wall-clock us>" at the produce call. */
typedef struct ks_pacer {
    kb_prod_t p;
    int rate, size, customers;
    pthread_t thread;
    atomic_bool stop;           /* stored by ks_pacer_stop, loaded by the thread */
    atomic_uint_fast64_t sent;  /* stored by the thread */
    bool running, capped;
} ks_pacer_t;

/* cap: the most records it may send (acked_bits covers them). 0 or -1 (why). */
int ks_pacer_start(ks_pacer_t *s, const char *bootstrap, int rate, int size, int customers,
                   uint64_t cap, char *why, size_t why_size);
/* Stops the thread after its records were delivered (or 30 s). The producer's
 * counts and acked_bits stay readable until ks_pacer_free. */
void ks_pacer_stop(ks_pacer_t *s);
void ks_pacer_free(ks_pacer_t *s);

/* A stretch measured by the reader, in wall-clock microseconds (the time in an
 * output record's timestamp: when its handler produced it). */
typedef struct ks_window {
    int64_t start_us, end_us;
    int64_t gap_part_us, gap_all_us;  /* longest: any one partition / every partition */
    int gap_part;
    int64_t settle_us;                /* start to the table being whole again */
    int64_t dups, records;
    int exit_code;                    /* a leave: the node's exit status */
    bool done;
} ks_window_t;

/* A thread reading orders-processed from the beginning: per output, its source
 * partition, the order's seq and produce times, its timestamp (processing time)
 * and when it was read. Counts duplicates (by seq), the gaps of the open window,
 * and the latencies of the orders produced inside [lat_from, lat_to). */
typedef struct ks_reader {
    rd_kafka_t *rk;
    int partitions;
    pthread_t thread;
    atomic_bool stop;
    bool running, inited;
    pthread_mutex_t mu;  /* guards everything below */
    uint8_t *seen;       /* one bit per seq */
    uint64_t cap, outputs, dups, bad;
    int64_t last_us[KB_MAX_PARTS], last_any_us;
    int64_t newest_produced_us[KB_MAX_PARTS];  /* wall clock, of outputs read */
    ks_window_t *win;
    int64_t lat_from_us, lat_to_us;            /* wall clock */
    int64_t *lat_read, *lat_stamp;             /* us: read (monotonic), stamped (wall) */
    size_t nlat, lat_cap;
} ks_reader_t;

/* cap: seqs it tracks; lat_cap: latencies it keeps. 0 or -1 (why; ks_reader_free
 * it all the same). */
int ks_reader_start(ks_reader_t *r, const char *bootstrap, int partitions, uint64_t cap,
                    size_t lat_cap, char *why, size_t why_size);
/* The window the next outputs count in (NULL: none); it is the caller's. */
void ks_reader_window(ks_reader_t *r, ks_window_t *w);
void ks_reader_latency(ks_reader_t *r, int64_t from_us, int64_t to_us);
/* True when every partition has an output of an order produced at or after
 * since_us (wall clock). */
bool ks_reader_caught_up(ks_reader_t *r, int64_t since_us);
/* Orders of acked (one bit per seq, cap bits) never read back. */
uint64_t ks_reader_missing(ks_reader_t *r, const uint8_t *acked, uint64_t cap);
/* Joins the thread and closes the consumer; the counts stay readable. */
void ks_reader_stop(ks_reader_t *r);
/* ks_reader_stop, then frees what it holds (also after a failed start, or none:
 * a zeroed reader). */
void ks_reader_free(ks_reader_t *r);

/* ---- the program's figures (bench_kafka_shards.c), printed by bench_shards_report.c */

/* The figures --only picks. */
enum { PART_TPUT = 1, PART_RSS = 2, PART_REB = 4, PART_GROUP = 8, PART_ALL = 15 };

/* The command line. */
typedef struct opts {
    long records;
    int partitions, size, rate, runs, customers, steady_s, parts;
    bool quick, keep;
    const char *ukko;
    const char *env[KS_MAX_ENV + 1];  /* --node-env */
    int nenv;
} opts_t;

/* The ukko configurations of the throughput figure. */
typedef struct config {
    const char *app, *key, *label;
    int nodes;
} config_t;

#define NCONFIGS 4
extern const config_t ks_configs[NCONFIGS];  /* sink 3 nodes, sink 1, orders 3, orders 1 */

/* One ukko throughput run. */
typedef struct tput {
    double commit_rps, proc_rps;   /* to the last commit / to the last record processed */
    double first_ms;               /* the commit to /metrics' first record processed */
    double cpu_nodes_s, cpu_broker_s;
    long hwm_kib;                  /* the largest peak RSS of its nodes */
} tput_t;

/* Every figure; -1 (or 0 runs) where not measured. */
typedef struct results {
    char broker[64], bootstrap[512], skipped[512];
    double load_start, load_end;
    double bare_rps[KB_MAX_RUNS], alo_rps[KB_MAX_RUNS], bare_cpu_s[KB_MAX_RUNS];
    int bare_runs, alo_runs;
    /* the bare consumer timed as ukko is: waiting on the topic, from the commit */
    double rel_rps[KB_MAX_RUNS], rel_first_ms[KB_MAX_RUNS], rel_cpu_s[KB_MAX_RUNS];
    int rel_runs;
    tput_t ukko[NCONFIGS][KB_MAX_RUNS];
    int ukko_runs[NCONFIGS];
    bool config_on[NCONFIGS];
    /* rss */
    long rss_idle_kib, rss_ent_kib, rss_ent2_kib;
    double entities;
    /* rebalance */
    ks_window_t join[KB_MAX_RUNS], leave[KB_MAX_RUNS];
    int cycles;
    int64_t reb_produced, reb_dups, reb_lost, reb_bad;
    bool reb_done;
    /* latency */
    size_t lat_n;
    double lat_p50, lat_p99, lat_max, stamp_p50, stamp_p99;  /* ms, -1: not measured */
    /* the consumer group */
    kb_gresult_t grp[2];
    bool grp_on[2];
    int failures;
} results_t;

/* The median of the positive values of v[0..n), or -1. */
double ks_median(const double *v, int n);
/* The people's table, then the JSON line, on stdout. */
void ks_print_table(const results_t *r, const opts_t *o);
void ks_print_json(const results_t *r, const opts_t *o);

int64_t ks_wall_us(void);

#endif
