/* dev_kafka_internal.h: what dev_kafka.c (the `ukko dev-kafka` program) and
 * mock_control.c (its fault channel) share, and what tests/streams reach.
 * Not part of streams/'s public interface (streams.h is). Main thread only:
 * the mock cluster itself runs on librdkafka's own thread, and every
 * rd_kafka_mock_* call used here is safe from another thread. */
#ifndef UKKO_STREAMS_DEV_KAFKA_INTERNAL_H
#define UKKO_STREAMS_DEV_KAFKA_INTERNAL_H

#include "ukko.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define STREAMS__MAX_BROKERS 32
#define STREAMS__MAX_PARTITIONS 10000 /* per topic */
#define STREAMS__TOPIC_NAME_MAX 249   /* Kafka's own limit */
#define STREAMS__MAX_FAIL_COUNT 100000
#define STREAMS__MAX_RTT_MS 600000
#define STREAMS__CONTROL_LINE_MAX 1024

/* A topic dev-kafka created (flags or the `topic` command). Topics that
 * clients auto-created are not listed: the mock offers no way to ask. */
typedef struct streams__topic {
    char *name;
    int partitions;
} streams__topic_t;

/* The fault channel's view of the running mock cluster. The caller owns mc
 * (and its rd_kafka_t); the topic list is the channel's own. */
typedef struct streams__mock_ctl {
    rd_kafka_mock_cluster_t *mc;
    int brokers;
    streams__topic_t *topics;
    size_t ntopics;
    size_t topics_cap;
} streams__mock_ctl_t;

/* Parses "NAME:PARTITIONS" (Kafka's topic-name rules, 1 to
 * STREAMS__MAX_PARTITIONS partitions). Returns 0, or UKKO_EINVAL with a
 * message naming the value and what is allowed in err (no newline). */
int streams__topic_spec_parse(const char *spec, char *name, size_t namelen, int *partitions,
                              char *err, size_t errlen);

/* Creates the topic on the mock (replication factor min(3, brokers)) and
 * lists it. Returns 0, or UKKO_EINVAL with the reason in err (it exists,
 * or the mock refused). */
int streams__mock_topic_create(streams__mock_ctl_t *ctl, const char *name, int partitions,
                               char *err, size_t errlen);

/* Runs one line of the fault channel (len bytes, no newline needed; any
 * bytes at all). Writes one reply line without its newline to reply:
 * "ok: ..." or "error: ...", or nothing for a blank or '#' line. Returns 0
 * when the command was carried out (or the line was blank), UKKO_EINVAL
 * when it was refused; the mock is never touched by a refused line. */
int streams__mock_command(streams__mock_ctl_t *ctl, const char *line, size_t len,
                          ukko_buf_t *reply);

/* Frees the topic list (not the mock). */
void streams__mock_ctl_destroy(streams__mock_ctl_t *ctl);

#endif
