/* simnet.h: a deterministic world of membership nodes in one process: the
 * real membership core (cluster__mship_t) of every node, a simulated clock
 * and network (seeded loss and delay, one-way partitions), and faults
 * (crashes with or without a kernel that refuses, pauses). Used by ukko-sim
 * and by the unit tests. One thread. Time only moves in sim_run_until. */
#ifndef UKKO_CLUSTER_SIMNET_H
#define UKKO_CLUSTER_SIMNET_H

#include "cluster_internal.h"

typedef struct sim_world sim_world_t;

typedef struct sim_opts {
    uint64_t seed;
    double loss;        /* probability a datagram is lost */
    int delay_min_ms;   /* one-way delay, uniform in [min, max] */
    int delay_max_ms;
    int64_t sync_timeout_ms;
} sim_opts_t;

/* A member changed at node `node` (the core's changed callback). */
typedef void (*sim_observe_fn)(void *ud, size_t node, uint32_t ident, int old_status,
                               int old_live, int status, int live);

void sim_opts_default(sim_opts_t *o);
sim_world_t *sim_new(const sim_opts_t *o, const cluster__params_t *p);
void sim_free(sim_world_t *w);
void sim_observe(sim_world_t *w, sim_observe_fn fn, void *ud);
/* A node at 10.x.y.z:7355 (not started) with the given seeds (node indexes). */
size_t sim_add_node(sim_world_t *w, const size_t *seeds, size_t nseeds);
void sim_start_node(sim_world_t *w, size_t i);
/* Nodes [0, n) start as one converged cluster, every member Up. */
void sim_prefill(sim_world_t *w, size_t n);
void sim_run_until(sim_world_t *w, int64_t t);
int64_t sim_now(const sim_world_t *w);
size_t sim_count(const sim_world_t *w);
/* The process dies; with kernel, its host still answers (ICMP port
 * unreachable, TCP refused); without, it is silent (host gone). */
void sim_crash(sim_world_t *w, size_t i, bool kernel);
/* A new process (new uid) at crashed node i's address, started. */
void sim_restart(sim_world_t *w, size_t i);
/* The process stops running until `until` (its kernel buffers packets). */
void sim_pause(sim_world_t *w, size_t i, int64_t until);
/* Partitions: packets from group a to group b are dropped while blocked. */
void sim_set_group(sim_world_t *w, size_t i, int group);
void sim_block(sim_world_t *w, int from_group, int to_group, bool blocked);
/* Blocked packets are rejected instead of dropped, as by a firewall that
 * rejects: UDP comes back as ICMP port unreachable, TCP is refused. */
void sim_reject_blocked(sim_world_t *w, bool reject);
/* Delivers a raw gossip body to node i as if from the network (tests). */
void sim_inject(sim_world_t *w, size_t i, const uint8_t *body, size_t n);
/* The last gossip body node i sent (tests: replays). */
const uint8_t *sim_last_sent(const sim_world_t *w, size_t i, size_t *n);

cluster__mship_t *sim_mship(sim_world_t *w, size_t i);
cluster__ids_t *sim_ids(sim_world_t *w);
uint32_t sim_ident(const sim_world_t *w, size_t i);
const cluster__addr_t *sim_addr(const sim_world_t *w, size_t i);
bool sim_crashed(const sim_world_t *w, size_t i);
bool sim_paused(const sim_world_t *w, size_t i);
/* Node of an identity (SIZE_MAX when none). */
size_t sim_node_of(const sim_world_t *w, uint32_t ident);
/* Bytes node i sent: gossip and sync, sealing and IP/UDP or TCP headers
 * included. */
uint64_t sim_bytes_out(const sim_world_t *w, size_t i);
uint64_t sim_events(const sim_world_t *w);

#endif
