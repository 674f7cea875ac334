/* streams.h: the public interface of streams/, ukko's Kafka side (librdkafka).
 * streams/ owns the Kafka partition sources that shards own (a shard's
 * partition assigned at its committed offset), the committer (at-least-once:
 * the contiguous acknowledged prefix, batched), the producer sink, dead
 * letters, and `ukko dev-kafka`, the local Kafka-protocol broker built on
 * librdkafka's mock cluster. It uses cluster/ and node/ only through their
 * headers; cluster/ never includes this file. */
#ifndef UKKO_STREAMS_H
#define UKKO_STREAMS_H

#include "cluster.h"
#include "ukko.h"

#ifdef __cplusplus
extern "C" {
#endif

/* `ukko dev-kafka [--brokers N] [--topic NAME:PARTITIONS]... [options]`:
 * argv[0] is "dev-kafka" (the program's own name already dropped). Runs a
 * mock Kafka cluster on 127.0.0.1, prints its bootstrap servers as the first
 * line of stdout, takes fault-injection commands on stdin (one per line, one
 * reply per line on stdout) and logs to stderr like the node, until SIGTERM
 * or SIGINT. Returns the exit code: 0 orderly stop, 1 runtime failure, 2 bad
 * usage. Main thread; installs signal handling for the process, so call it
 * instead of running a node, not beside one. */
int ukko_streams_dev_kafka_main(int argc, char **argv);

/* streams/ as a module of the program (node/ukko.h): for now the command
 * `ukko dev-kafka` (given its arguments untouched). */
extern const ukko_module_t ukko_streams_module;

/* ------------------------------------------------------------ applications
 * An application offers a topic-fed entity type from its init through the
 * registry of app hooks: ukko_host_add_hook(host, UKKO_HOOK_STREAM_TYPE,
 * &desc), desc a const ukko_stream_type_t * that outlives the host (static
 * storage). The streams module adds each one when it starts. */
#define UKKO_HOOK_STREAM_TYPE "streams.entity-type"

typedef struct ukko_stream_type {
    ukko_entity_type_t type; /* shards = 0: the topic's partitions set them */
    const char *topic;
} ukko_stream_type_t;

/* The built-in demo application `ukko run --app orders` (docs/streams.md):
 * topic `orders` (key = customer id, value {"order_id", "amount"}), an
 * entity per customer keeping a running total, and for each order one
 * record to `orders-processed`, keyed by customer: {"total", "count",
 * "source_partition", "source_offset", "node", "order_id"}. */
extern const ukko_app_t ukko_orders_app;
/* Its entity type (for tests that drive it without a program). */
extern const ukko_stream_type_t ukko_orders_type;
/* The built-in `ukko run --app sink`: topic `orders` again, as entity type
 * (and group.id) `sink`, whose handler acknowledges each record at once and
 * does nothing else: the cost of the feed alone (tests/bench). */
extern const ukko_app_t ukko_sink_app;

/* ------------------------------------------------------------ the Kafka feed
 * Entity types fed by a topic (docs/streams.md): the topic's partition count
 * is the type's shard count, shard s owns partition s, and the node that
 * owns a shard assigns itself the partition (no consumer group protocol) at
 * the offset committed under group.id = the type's name. Each record goes to
 * the entity its key names; the contiguous prefix of acknowledged records is
 * committed, batched, and always on hand-off. At-least-once: a record counts
 * as done only once its handler acknowledged it and the broker confirmed
 * every record the handler produced. Unless a comment says otherwise, these
 * functions run on the node's loop thread. */

/* The kafka.* settings. Strings and properties are owned by the config. */
typedef struct ukko_streams_config {
    char *bootstrap_servers;         /* "" or NULL: no Kafka */
    cJSON *properties;               /* librdkafka properties passed through */
    int64_t commit_max_batch;        /* commit after this many acknowledged records */
    int64_t commit_max_interval_ms;  /* and at least this often */
    int64_t max_retries;             /* attempts after the first, then the dead letters */
    int64_t retry_backoff_ms;        /* first retry's wait, doubling per attempt */
    int64_t retry_backoff_max_ms;
    char *dead_letter_suffix;        /* <topic><suffix> gets the records that failed */
    int64_t max_in_flight;           /* per partition: pause fetching at this many */
    int64_t resume_in_flight;        /* and resume below this many */
    int64_t prefetch_max_kbytes;     /* queued.max.messages.kbytes */
    int64_t prefetch_min_messages;   /* queued.min.messages */
    int64_t fetch_partition_max_bytes; /* max.partition.fetch.bytes */
    bool idempotence;                /* the producer's enable.idempotence */
} ukko_streams_config_t;

/* Registers the kafka.* keys, storing into sc (not owned; must outlive the
 * config). Main thread, before ukko_config_load. */
int ukko_streams_config_register(ukko_config_t *cfg, ukko_streams_config_t *sc);

typedef struct ukko_streams ukko_streams_t;

/* Creates the Kafka side of a node: checks the settings (a bad
 * kafka.properties entry is refused with librdkafka's reason, naming the
 * property but never a secret's value). Its /metrics families come from
 * ukko_streams_metrics (the module adds them). Neither node,
 * sharding nor sc is owned; all must outlive it. Returns 0, UKKO_EINVAL
 * (settings; logged) or UKKO_ENOMEM. */
int ukko_streams_new(ukko_node_t *node, ukko_sharding_t *sharding, const ukko_streams_config_t *sc,
                     ukko_streams_t **out);
/* Declares an entity type fed by topic: registers it with sharding (t is
 * copied, its strings and ud must outlive st; t->shards must be 0: the
 * topic's partition count sets it). Before ukko_streams_start. Returns 0,
 * UKKO_EINVAL (a bad name, a second type of that name, no bootstrap
 * servers; logged) or UKKO_E2BIG (more than 32 topic-fed types). */
int ukko_streams_add_type(ukko_streams_t *st, const ukko_entity_type_t *t, const char *topic);
/* Starts the consumers and the producer, looks the topics' partition counts
 * up (retrying, with a warning naming the topic, until each exists) and
 * gives them to sharding. Returns 0 or < 0 (logged). */
int ukko_streams_start(ukko_streams_t *st);
/* Commits what is acknowledged, flushes the producer, closes the handles,
 * releases everything. After the loop has stopped (it may block for a few
 * seconds). NULL is fine. */
void ukko_streams_free(ukko_streams_t *st);
/* The ukko_kafka_* families of /metrics (a ukko_metrics_fn; ud is the
 * ukko_streams_t). */
void ukko_streams_metrics(ukko_buf_t *out, void *ud);
/* The stop task that commits every partition's acknowledged prefix (for
 * ukko_node_add_stop_task; ud is the ukko_streams_t). The shards' own
 * hand-off commits before it; this catches what no hand-off covered. */
void ukko_streams_stop_task(ukko_stop_task_t *task, void *ud);

/* A header of a produced record. */
typedef struct ukko_stream_header {
    const char *name;
    const void *value; /* may be NULL (a null header value) */
    size_t len;
} ukko_stream_header_t;

/* From inside a handler of a topic-fed type: produces a record (key, value
 * and headers copied; headers is NULL or ends with a NULL name). The input
 * record counts as acknowledged only once the broker confirmed this record
 * (a failure fails the input: retried, then dead-lettered). The input's
 * traceparent header is carried over unless headers has one. Dispatcher
 * thread (the handler's). Returns 0, UKKO_EINVAL (not inside such a
 * handler, no topic), UKKO_EAGAIN (the producer's queue is full: return a
 * failure and the record is retried) or UKKO_E2BIG. */
int ukko_stream_produce(ukko_entity_ctx_t *ctx, const char *topic, const void *key, size_t klen,
                        const void *value, size_t vlen, const ukko_stream_header_t *headers);

/* Where a handler's message came from. */
typedef struct ukko_stream_origin {
    const char *topic; /* valid during the handler call */
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* the record's timestamp; -1 when it has none */
    int attempt;          /* 0 the first time, 1.. for retries */
} ukko_stream_origin_t;

/* Fills o for the message the calling handler serves. Returns 0, or
 * UKKO_ENOENT for a message that came from no record (a tell). Handler's
 * thread. */
int ukko_stream_origin(const ukko_entity_ctx_t *ctx, const ukko_entity_msg_t *m,
                       ukko_stream_origin_t *o);
/* Says why the calling handler fails its record (kept for the retry log
 * line and the dead letter's "ukko.error" header). Handler's thread. */
void ukko_stream_fail_reason(ukko_entity_ctx_t *ctx, const char *fmt, ...) UKKO_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif

#endif
