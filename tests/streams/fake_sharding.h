/* fake_sharding.h: a stand-in for cluster/'s sharding, for the tests of
 * streams/ in one process: it keeps the entity types streams/ registers,
 * runs their handlers on worker threads (one entity's messages in order on
 * one worker, entities in parallel), counts deferred acks, and reports each
 * message's outcome on the test's libev loop, as the contract of cluster.h
 * says. It allocates nothing: the test starts and stops shards itself by
 * calling the hooks streams/ gave it (fs_start_shards, fs_stop_shard). It
 * also defines the cluster.h functions handlers call (ukko_entity_id, _node,
 * _defer, _ack), so a test links it instead of cluster/'s sharding. */
#ifndef UKKO_FAKE_SHARDING_H
#define UKKO_FAKE_SHARDING_H

#include "streams_internal.h"

/* The table to give streams__new_with. */
extern const streams__shard_api_t fs_api;

/* A sharding of workers threads on loop (the test's), answering to node
 * name node_name. */
ukko_sharding_t *fs_new(struct ev_loop *loop, int workers, const char *node_name);
/* Joins the workers; messages still queued are dropped (their done never
 * runs). Call it before freeing the streams instance (no handler may run
 * then), and fs_free after. */
void fs_stop(ukko_sharding_t *s);
void fs_free(ukko_sharding_t *s);

/* The shard count streams/ set for type (0 until the topic was looked up). */
int32_t fs_shards(ukko_sharding_t *s, const char *type);
/* Calls the type's start hook for every shard: 0, or the first error. */
int fs_start_shards(ukko_sharding_t *s, const char *type);
/* Calls the stop hook of one shard; *done becomes true when streams/ calls
 * the stopped callback. */
void fs_stop_shard(ukko_sharding_t *s, const char *type, int32_t shard, bool at_once, bool *done);
/* Messages delivered, and outcomes reported, so far. Any thread. */
uint64_t fs_delivered(ukko_sharding_t *s);
uint64_t fs_answered(ukko_sharding_t *s);

#endif
