/* feed_support.h: a streams/ Kafka feed in the test's own process, over the
 * stand-in sharding (fake_sharding.h): its config from "K=V" overrides, a
 * libev loop run until a condition holds (with a deadline), kcat to produce
 * input and read back what handlers produced, and a handler ("tally") that
 * counts per entity and reports where each record came from. Used by the
 * tests against a real broker and against `ukko dev-kafka`. */
#ifndef UKKO_FEED_SUPPORT_H
#define UKKO_FEED_SUPPORT_H

#include "fake_sharding.h"
#include "streams_internal.h"
#include "ukko_test.h"

typedef struct feed {
    struct ev_loop *loop;
    ukko_config_t *cfg;
    ukko_streams_config_t sc;
    ukko_sharding_t *sh;
    ukko_streams_t *st;
    ev_timer tick;
    char bootstrap[512];
} feed_t;

/* env: NULL-terminated "UKKO_KAFKA_...=..." overrides (may be NULL). Fails
 * the test on a config error. */
void feed_open(feed_t *f, const char *bootstrap, const char *const *env);
void feed_add(feed_t *f, const ukko_entity_type_t *t, const char *topic);
/* Starts streams/, waits until the topic's partitions are known, starts
 * every shard (this node owns all). */
void feed_start(feed_t *f, const char *type);
/* Runs the loop until pred(f, arg) or timeout_ms; fails saying what. */
void feed_run_until(feed_t *f, bool (*pred)(feed_t *f, void *arg), void *arg, int timeout_ms,
                    const char *what);
/* Stops every shard of type (graceful hand-off, or at once) and waits for
 * every stopped callback. */
void feed_stop_shards(feed_t *f, const char *type, bool at_once, int timeout_ms);
void feed_close(feed_t *f);

/* The source of type (internal state, for the assertions). */
streams__source_t *feed_source(feed_t *f, const char *type);
/* Records of type acknowledged (processed or dead-lettered) so far. */
uint64_t feed_done(feed_t *f, const char *type);
/* True when every partition in ends[0..n) has committed ends[p]. */
bool feed_committed(feed_t *f, const char *type, const int64_t *ends, int n);

/* A record as kcat read it back. */
typedef struct krec {
    int partition;
    long long offset;
    char key[64];
    char *value;   /* malloc'd */
    char *headers; /* malloc'd, kcat's "k=v,k=v" */
} krec_t;

/* Produces lines "KEY\tVALUE\n" to topic with kcat and murmur2 (Kafka's
 * default partitioner). Fails the test on error. */
void kc_produce(const char *bootstrap, const char *topic, const char *lines);
/* Reads the whole topic (to its end at the time) into *out; returns the
 * count. */
size_t kc_read(const char *bootstrap, const char *topic, krec_t **out);
void kc_free(krec_t *r, size_t n);
/* The end offset of each partition of topic (n partitions) from a read. */
void kc_ends(const krec_t *r, size_t n, int64_t *ends, int partitions);

/* The "tally" handler: ud is a tally_cfg_t. A value holding "poison" fails
 * every time; otherwise it counts per entity (sleep_us first, if set) and
 * produces {"count","source_partition","source_offset","attempt"} to out,
 * keyed by entity. */
typedef struct tally_cfg {
    const char *out;
    int sleep_us;
} tally_cfg_t;
int tally_handler(ukko_entity_ctx_t *ctx, void *state, const ukko_entity_msg_t *m);
#define TALLY_STATE_SIZE sizeof(int64_t)

/* Checks that every (partition, offset) of in appears in out as
 * source_partition/source_offset (exactly once when exact), and that the
 * counts of each key strictly increase in out's order (when ordered: the
 * entities lived through the whole run). Fails the test. */
void check_complete(const krec_t *in, size_t nin, const krec_t *out, size_t nout, bool exact,
                    bool ordered);

#endif
