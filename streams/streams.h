/* streams.h: the public interface of streams/, ukko's Kafka side (librdkafka).
 * streams/ owns the Kafka partition sources that shards own (a shard's
 * partition assigned at its committed offset), the committer (at-least-once:
 * the contiguous acknowledged prefix, batched), the producer sink, dead
 * letters, and `ukko dev-kafka`, the local Kafka-protocol broker built on
 * librdkafka's mock cluster. It uses cluster/ and node/ only through their
 * headers; cluster/ never includes this file. */
#ifndef UKKO_STREAMS_H
#define UKKO_STREAMS_H

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

#ifdef __cplusplus
}
#endif

#endif
