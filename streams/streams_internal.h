/* streams_internal.h: what the files of streams/'s Kafka feed share (the
 * watermark, the committer, partition sources, the producer sink, dead
 * letters, metrics) and what tests/streams reach. Not the public interface
 * (streams.h is). Everything here runs on the node's loop thread unless a
 * comment says otherwise; handlers (and ukko_stream_produce) run on
 * dispatcher threads and touch only what is marked for them. */
#ifndef UKKO_STREAMS_INTERNAL_H
#define UKKO_STREAMS_INTERNAL_H

#include "cluster.h"
#include "streams.h"
#include "ukko.h"

#include <ev.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>

#if defined(__GNUC__)
#define STREAMS__NODISCARD __attribute__((warn_unused_result))
#else
#define STREAMS__NODISCARD
#endif

/* Small internal allocations: abort with a log line on out-of-memory (as
 * Redis' zmalloc does); sizes from the network or config use calloc. */
void *streams__xcalloc(size_t n, size_t size);
char *streams__xstrdup(const char *s);

/* ------------------------------------------------------------ watermark
 * The acknowledged prefix of one partition. Records enter in the order the
 * partition gave them (offsets increase, with gaps where compaction or
 * transaction markers left some out); acks arrive in any order. The
 * committable offset is the offset after the last record of the contiguous
 * acknowledged prefix: everything before it is done. It never goes back. */
typedef struct streams__wm {
    uint64_t head;       /* seq of the oldest record not yet in the prefix */
    uint64_t next;       /* seq the next record gets */
    int64_t *offsets;    /* ring, indexed by seq & (cap - 1) */
    uint8_t *acked;
    size_t cap;          /* a power of two, or 0 before the first record */
    size_t max;          /* cap never grows past this */
    int64_t committable; /* next offset to read after the prefix; -1: none yet */
    int64_t last_offset; /* of the newest record added; -1: none */
} streams__wm_t;

/* max: the most records that may be open at once (the ring's cap). */
void streams__wm_init(streams__wm_t *wm, size_t max);
void streams__wm_destroy(streams__wm_t *wm);
/* Adds the next record of the partition. Returns 0 and its seq, UKKO_EINVAL
 * when offset is not above the previous one (the record is not added), or
 * UKKO_E2BIG when max records are already open. */
STREAMS__NODISCARD int streams__wm_add(streams__wm_t *wm, int64_t offset, uint64_t *seq);
/* Acknowledges a record by seq. Returns 1 when the committable offset moved,
 * 0 when it did not (a gap before it), UKKO_EINVAL for a seq that is not
 * open (never added, or acked before). */
STREAMS__NODISCARD int streams__wm_ack(streams__wm_t *wm, uint64_t seq);
/* Records added and not in the prefix yet (acked out of order included). */
static inline uint64_t streams__wm_open(const streams__wm_t *wm)
{
    return wm->next - wm->head;
}

/* ------------------------------------------------------------ committer
 * Makes acknowledged prefixes durable. The policy (when to commit: a batch
 * of acks, an interval, a hand-off; one commit in flight per source at a
 * time; never an offset below the last one) is here, the mechanism behind
 * streams__commit_vt_t: today the consumer group's offsets
 * (rd_kafka_commit_queue, at-least-once); an exactly-once committer (the
 * offsets sent in the producer's transaction) slots in beside it. */
typedef struct streams__committer streams__committer_t;

/* One partition as the committer sees it; embedded in the partition. */
typedef struct streams__cpart {
    int32_t partition;
    int64_t committed;  /* the broker confirmed this offset; -1: nothing committed by us */
    int64_t inflight;   /* the commit under way carries this offset; -1: none */
    int64_t target;     /* latest committable offset handed to the committer; -1 */
    int failures;       /* consecutive failed commits */
    void (*flushed)(void *arg, int status); /* hand-off waits for target's commit */
    void *flushed_arg;
    uint64_t gen;       /* set by _add, unique per committer: tells a partition record
                         * from an earlier one of the same partition number */
    struct streams__cpart *next;
} streams__cpart_t;

typedef struct streams__commit_vt {
    const char *name; /* "at-least-once" */
    /* Sends the commit of offsets (topic, partition, offset = next to read)
     * and later calls streams__committer_result exactly once, on the loop
     * thread, with the outcome (never from inside send). Returns 0, or < 0
     * when it could not even be sent (then no result comes). */
    int (*send)(void *impl, rd_kafka_topic_partition_list_t *offsets);
} streams__commit_vt_t;

typedef struct streams__committer_opts {
    const char *topic;
    int64_t max_batch;       /* commit once this many acks moved prefixes */
    int64_t max_interval_ms; /* and at least this often while something moved */
    int64_t retry_backoff_ms;
    int64_t retry_backoff_max_ms;
} streams__committer_opts_t;

struct streams__committer {
    const streams__commit_vt_t *vt;
    void *impl;
    struct ev_loop *loop; /* NULL: no timers (unit tests call _tick) */
    streams__committer_opts_t o;
    char *topic;
    streams__cpart_t *parts;
    int64_t pending_acks;  /* prefix moves since the last commit was sent */
    bool busy;             /* a commit is in flight */
    int64_t sent_at_ms;
    rd_kafka_topic_partition_list_t *inflight; /* what the commit in flight carries; each
                                                * entry's opaque is its record's gen */
    uint64_t gen;          /* of the last partition record added */
    ev_timer interval, retry;
    bool retry_armed;
    /* counted for metrics */
    uint64_t commits, failures;
    double latency_sum_s;
    uint64_t latency_buckets[8]; /* le 1ms 5ms 10ms 50ms 100ms 500ms 1s 5s */
};

void streams__committer_init(streams__committer_t *c, const streams__commit_vt_t *vt, void *impl,
                             struct ev_loop *loop, const streams__committer_opts_t *o);
void streams__committer_destroy(streams__committer_t *c);
/* A partition joins or leaves (cp is the caller's storage; it must stay
 * until _remove). */
void streams__committer_add(streams__committer_t *c, streams__cpart_t *cp, int32_t partition);
void streams__committer_remove(streams__committer_t *c, streams__cpart_t *cp);
/* The partition's committable offset moved to offset (after acks). */
void streams__committer_moved(streams__committer_t *c, streams__cpart_t *cp, int64_t offset,
                              int64_t acks);
/* Commits cp's target now (the hand-off) and calls done(arg, status) once
 * the broker confirmed it (status 0) or retries ran out; at once when there
 * is nothing new to commit. */
void streams__committer_flush(streams__committer_t *c, streams__cpart_t *cp,
                              void (*done)(void *arg, int status), void *arg);
/* The interval passed: commits what moved. Called by the timer. */
void streams__committer_tick(streams__committer_t *c);
/* The outcome of the commit in flight: err for the whole request,
 * per-partition errors in offsets (may be NULL when err says it all). */
void streams__committer_result(streams__committer_t *c, rd_kafka_resp_err_t err,
                               const rd_kafka_topic_partition_list_t *offsets);
extern const double streams__latency_bounds_s[8];

/* ------------------------------------------------------------ the sharding
 * streams/ reaches cluster/'s sharding only through this table: the real
 * functions of cluster.h (streams__shard_api_real, in shard_api.c, the only
 * file that names them), or a test's stand-in that drives the same hooks. */
typedef struct streams__shard_api {
    int (*register_type)(ukko_sharding_t *s, const ukko_entity_type_t *t,
                         const ukko_shard_hooks_t *hooks);
    int (*set_shards)(ukko_sharding_t *s, const char *type, int32_t shards);
    int (*deliver)(ukko_sharding_t *s, const char *type, int32_t shard,
                   const ukko_entity_msg_t *m, ukko_entity_done_fn done, void *arg);
    ukko_entity_ack_t *(*defer)(ukko_entity_ctx_t *ctx);          /* any thread */
    void (*ack)(ukko_entity_ack_t *ack, int status);              /* any thread */
    int32_t (*shard_of)(const void *id, size_t len, int32_t shards); /* any thread */
} streams__shard_api_t;

extern const streams__shard_api_t streams__shard_api_real;

/* ukko_streams_new over any table and loop (node may be NULL in tests:
 * no metrics, no stop task). */
int streams__new_with(ukko_node_t *node, struct ev_loop *loop, ukko_sharding_t *sharding,
                      const streams__shard_api_t *api, const ukko_streams_config_t *sc,
                      ukko_streams_t **out);

/* ------------------------------------------------------------ sources */
typedef struct streams__source streams__source_t;
typedef struct streams__part streams__part_t;

typedef enum {
    STREAMS__PART_RUNNING = 0,
    STREAMS__PART_DRAINING, /* hand-off: fetching stopped, waiting for in-flight acks */
    STREAMS__PART_COMMITTING, /* hand-off: the final commit is under way */
    STREAMS__PART_GONE      /* given up; kept only until its last record returns */
} streams__part_state_t;

/* One partition this node owns (shard s = partition s). */
struct streams__part {
    streams__source_t *src;
    int32_t partition;
    streams__part_state_t state;
    bool paused;          /* we paused it in librdkafka (our flag, not theirs) */
    bool at_once;
    streams__wm_t wm;
    int64_t in_flight;    /* records handed to entities and not yet done */
    int64_t first_offset; /* of the first record seen here; -1 none */
    streams__cpart_t cp;
    ukko_shard_stopped_fn done;
    void *done_arg;
    int64_t stop_t0_ms;
    ev_timer at_once_timer;
    struct streams__rec *recs; /* every record of it still held */
    /* counters, loop thread */
    uint64_t processed, failed, retried, dead_letters, pauses;
    uint64_t cancelled; /* records left to the next owner: their shard was gone here */
    uint64_t max_open; /* the most records open at once (backpressure's bound) */
    streams__part_t *next; /* the source's list */
};

/* A record handed to an entity; lives until it is acked, dead-lettered, or
 * its partition is given up. Immutable while a handler runs, except error
 * (written by the handler's thread before it returns). */
typedef struct streams__rec {
    streams__part_t *part;
    uint64_t seq;
    rd_kafka_message_t *msg;
    int attempts;           /* deliveries that failed */
    char traceparent[56];   /* from the record's headers, "" when none; while traced,
                               its consumer span's (streams__trace_record_begin) */
    struct ukko_span *span; /* its "process <topic>" span, or NULL (streams/trace.c) */
    char error[200];        /* why the last attempt failed (handler's thread, then loop) */
    char produce_error[200]; /* a handler's record the broker refused (loop thread) */
    /* source.c's rec_new zeroes all but error and produce_error when it
     * reuses a record: keep those two together, before retry */
    ev_timer retry;
    bool retry_armed;
    bool dead_lettered;     /* on its way to the dead-letter topic */
    struct streams__rec *prev, *next; /* the partition's list */
} streams__rec_t;

#define STREAMS__MAX_SLOTS 32 /* topic-fed entity types per process */

struct streams__source {
    ukko_streams_t *st;
    int slot;
    char *type;
    char *topic;
    ukko_entity_type_t app; /* the application's type, as given */
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;  /* the consumer's queue (records, errors) */
    rd_kafka_queue_t *cq; /* commit results */
    int qfd[2], cqfd[2];
    ev_io qio, cqio;
    ev_idle drain;        /* more records queued than one batch took */
    int32_t partitions;   /* from metadata; 0 until known */
    streams__part_t *parts;
    streams__committer_t committer;
    /* metadata lookup (a short thread; blocking librdkafka call) */
    pthread_t md_thread;
    pthread_mutex_t md_lock; /* md_partitions and md_error */
    bool md_running;
    ev_async md_done;
    int md_partitions;    /* written by the thread before md_done */
    char md_error[256];
    ev_timer md_retry;
    int md_failures;
    bool warned_mismatch;
    uint64_t mismatched, unkeyed;
    rd_kafka_resp_err_t last_err; /* consumer errors: one log line per 10 s each */
    int64_t last_err_ms;
    uint64_t errors_suppressed;
    uint64_t handoffs;
    int64_t handoff_ms_sum;
    streams__rec_t *rec_pool; /* free records (source.c's rec_new/rec_put) */
    size_t nrec_pool;
    streams__source_t *next;
};

/* ------------------------------------------------------------ the instance */
struct ukko_streams {
    ukko_node_t *node;
    struct ev_loop *loop;
    ukko_sharding_t *sharding;
    const streams__shard_api_t *api;
    const ukko_streams_config_t *cfg;
    char node_name[128];
    streams__source_t *sources;
    size_t nsources;
    /* the producer sink: one handle for every handler and the dead letters */
    rd_kafka_t *producer;
    rd_kafka_queue_t *pq; /* its main queue: delivery reports, errors */
    int pqfd[2];
    ev_io pqio;
    ev_idle pdrain;
    bool started, stopping;
    /* records produced by handlers: counted on their threads */
    _Atomic uint64_t produced, produce_failed;
    /* loop thread */
    uint64_t delivered, produce_failed_dr, dlq_failed;
};

/* The record's topic header value of name, or NULL (len in *len). */
const void *streams__header(const rd_kafka_message_t *msg, const char *name, size_t *len);

/* config.c: librdkafka settings shared by the consumer and the producer:
 * bootstrap, kafka.properties, then the caller's own (which win). Returns
 * the conf, or NULL with the reason (naming the key and the way out, never a
 * secret value) in err. */
rd_kafka_conf_t *streams__conf_new(const ukko_streams_config_t *cfg, char *err, size_t errlen);
/* Is a librdkafka property name one whose value is never shown? */
bool streams__secret_property(const char *name);
/* Cross-key checks the key table cannot make (marks, suffix). */
int streams__config_validate(const ukko_streams_config_t *cfg, char *err, size_t errlen);
/* librdkafka's own log lines, through ukko's log (any thread). */
void streams__log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* source.c */
int streams__source_new(ukko_streams_t *st, const ukko_entity_type_t *t, const char *topic,
                        streams__source_t **out);
int streams__source_start(streams__source_t *src);
void streams__source_free(streams__source_t *src);
int streams__source_shard_start(streams__source_t *src, int32_t partition);
void streams__source_shard_stop(streams__source_t *src, int32_t partition, bool at_once,
                                ukko_shard_stopped_fn done, void *done_arg);
/* A record finished its last attempt: acked (status 0) or given up. */
void streams__rec_finish(streams__rec_t *rec, int status);
/* Runs the record's next step (a delivery, or its dead-letter produce) in ms. */
void streams__rec_retry_later(streams__rec_t *rec, int64_t ms);
/* Sends a commit of what every partition acknowledged (no waiting). */
void streams__source_commit_all(streams__source_t *src);

/* producer.c */
int streams__producer_start(ukko_streams_t *st);
void streams__producer_stop(ukko_streams_t *st);
/* Produces rec to its dead-letter topic; rec is finished (acked) once the
 * broker has it. Loop thread. */
void streams__dead_letter(streams__rec_t *rec);

/* trace.c: the spans of the Kafka path (OpenTelemetry's messaging
 * conventions). Loop thread unless said otherwise. */
/* Starts the record's "process <topic>" consumer span, its parent the
 * record's traceparent header (none: a new trace), and puts the span's
 * context into rec->traceparent, so that the handler's tells and records
 * are its children. Once per record, right after its headers were read;
 * nothing while tracing is off. */
void streams__trace_record_begin(streams__rec_t *rec);
/* Ends it: status 0 done, UKKO_ECANCELED left to the next owner, else (or
 * dead-lettered) an error with rec->error. Idempotent; NULL span is fine. */
void streams__trace_record_end(streams__rec_t *rec, int status);
/* The handler's side (its thread): makes the record's span current while
 * the handler runs and notes a failed attempt on it. */
struct ukko_span *streams__trace_handler_enter(streams__rec_t *rec);
void streams__trace_handler_leave(streams__rec_t *rec, struct ukko_span *prev, int rc);
/* A "send <topic>" producer span, child of the current context; its
 * traceparent (or, untraced, the current one) into tp (56 bytes, "" when
 * none). Any thread. */
struct ukko_span *streams__trace_send_begin(const char *topic, const void *key, size_t klen,
                                            char tp[56]);
void streams__trace_send_end(struct ukko_span *sp, int rc);

/* handler.c: the trampolines through which sharding calls a streams type's
 * handler (so that ukko_stream_produce knows the record it serves). */
/* Takes a free slot for src (-1 when all 32 are taken); its trampoline is
 * streams__slot_handler(slot). */
int streams__slot_take(streams__source_t *src);
ukko_entity_handler_fn streams__slot_handler(int slot);
void streams__slot_release(int slot);
/* The record (and source) the calling handler serves, or NULL outside one. */
typedef struct streams__current {
    streams__source_t *src;
    streams__rec_t *rec; /* NULL for a tell */
    ukko_entity_ctx_t *ctx;
} streams__current_t;
const streams__current_t *streams__current(void);


#endif
