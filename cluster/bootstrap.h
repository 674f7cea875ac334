/* bootstrap.h: cluster bootstrap from discovery (bootstrap.c): the
 * formation rule as a pure function (tested alone), the parser of a contact
 * point's /bootstrap/seed-nodes answer (fuzzed), and the bootstrap that
 * probes the contact points and joins or forms. Private to cluster/ and its
 * tests. Loop thread only. */
#ifndef UKKO_CLUSTER_BOOTSTRAP_H
#define UKKO_CLUSTER_BOOTSTRAP_H

#include "cluster_internal.h"

/* What a node knows when it decides. */
typedef struct cluster__bs_view {
    size_t points;    /* contact points discovered now */
    size_t answered;  /* of them, answered within probing-failure-timeout */
    size_t expected;  /* expected contact points (0: not known) */
    bool self_listed; /* this node is one of the points */
    bool self_lowest; /* ... and the lowest (address bytes, then port) */
    bool fresh;       /* discovery's set is current (not stale by failures) */
    int64_t stable_ms; /* how long the set has been unchanged */
    bool seeds;       /* some point answered with seed nodes (a cluster exists) */
} cluster__bs_view_t;

typedef enum { CLUSTER__BS_WAIT = 0, CLUSTER__BS_JOIN = 1, CLUSTER__BS_FORM = 2 } cluster__bs_act_t;

/* The rule of the map (ARCHITECTURE.md, Bootstrap): join when any point
 * reports seed nodes; else form only when new-cluster-enabled, this node is
 * the lowest of the points, at least required-contact-point-nr answered,
 * every point answered (contact-with-all-contact-points), discovery is
 * current, and either the expected number of points answered or the set
 * has been stable for stable-margin. why gets what it waits for (WAIT) or
 * why it acts. Pure. */
cluster__bs_act_t cluster__bootstrap_decide(const ukko_cluster_bootstrap_config_t *bc,
                                            const cluster__bs_view_t *v, char *why,
                                            size_t whylen);

/* Parses a /bootstrap/seed-nodes answer (Pekko's shape): the gossip
 * addresses of its seedNodes whose system name is cluster_name, up to max,
 * into out (*n of them); *foreign counts those of another name. Returns 0 or
 * UKKO_EPROTO (not that shape). Untrusted input: fuzzed
 * (tests/fuzz/fuzz_seed_nodes.c). */
int cluster__bootstrap_parse_seeds(const char *json, size_t len, const char *cluster_name,
                                   cluster__addr_t *out, size_t max, size_t *n, size_t *foreign);

typedef struct cluster__bootstrap cluster__bootstrap_t;

/* Creates the bootstrap of c with its own discovery (dc not owned). NULL on
 * a bad discovery config (logged). */
cluster__bootstrap_t *cluster__bootstrap_new(ukko_cluster_t *c, const ukko_discovery_config_t *dc,
                                             int mgmt_port);
/* Starts discovery and probing (after the core started waiting). */
int cluster__bootstrap_start(cluster__bootstrap_t *b);
/* Stops everything: no request to the API or a contact point after it. */
void cluster__bootstrap_stop(cluster__bootstrap_t *b);
void cluster__bootstrap_free(cluster__bootstrap_t *b);
/* What the bootstrap waits for ("" once done), for /ready. */
const char *cluster__bootstrap_why(const cluster__bootstrap_t *b);
/* The membership changed (self joined): ends the bootstrap when this node
 * is a member. */
void cluster__bootstrap_poke(cluster__bootstrap_t *b);
void cluster__bootstrap_metrics(ukko_buf_t *out, const cluster__bootstrap_t *b);

#endif
