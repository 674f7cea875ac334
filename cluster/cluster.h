/* cluster.h: the public interface of cluster/: gossip membership (SWIM with
 * the Lifeguard refinements, Pekko's member states), its settings (keys
 * cluster.*), its management routes and metrics. Everything here runs on the
 * thread of the node's libev loop unless a comment says otherwise. */
#ifndef UKKO_CLUSTER_H
#define UKKO_CLUSTER_H

#include "discovery.h"
#include "ukko.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pekko's member states, in the order a member moves through them. A state
 * is only ever replaced by a later one (gossip merges by taking the later). */
typedef enum {
    UKKO_MEMBER_JOINING = 0,
    UKKO_MEMBER_WEAKLY_UP = 1,
    UKKO_MEMBER_UP = 2,
    UKKO_MEMBER_LEAVING = 3,
    UKKO_MEMBER_EXITING = 4,
    UKKO_MEMBER_DOWN = 5,
    UKKO_MEMBER_REMOVED = 6
} ukko_member_status_t;

/* "Joining", "WeaklyUp", "Up", ... as Pekko writes them (static storage). */
const char *ukko_member_status_name(int status);

/* The split-brain resolver's settings (keys cluster.split-brain-resolver.*,
 * Pekko's names). Strings are owned by the config. */
typedef struct ukko_cluster_sbr_config {
    int strategy;                 /* keep-majority, static-quorum, keep-oldest, down-all */
    int64_t stable_after_ms;      /* decide once the view has not changed for this long */
    char *down_all_when_unstable; /* "on", "off" or a duration */
    int64_t quorum_size;          /* static-quorum; 0 = not set */
    char *static_quorum_role;     /* "" = every member counts */
    char *keep_majority_role;
    char *keep_oldest_role;
    bool down_if_alone; /* keep-oldest */
} ukko_cluster_sbr_config_t;

/* Cluster bootstrap from discovery (keys cluster.bootstrap.*, Pekko
 * Management's names; see docs/bootstrap.md). */
typedef struct ukko_cluster_bootstrap_config {
    int64_t required_contact_point_nr; /* answers needed before forming */
    int64_t expected_contact_point_nr; /* 0: spec.replicas of the StatefulSet, if readable */
    int64_t stable_margin_ms;          /* the set unchanged this long (size not known) */
    int64_t probe_interval_ms;         /* each contact point asked this often */
    int64_t probing_failure_timeout_ms; /* an answer counts this long */
    bool new_cluster_enabled;          /* false: only ever join an existing cluster */
    bool contact_with_all_contact_points; /* every discovered point must have answered */
} ukko_cluster_bootstrap_config_t;

/* The settings of cluster/ (keys cluster.*). Strings and lists are owned by
 * the config they were registered with. */
typedef struct ukko_cluster_config {
    char *hostname;           /* advertised and bound; "" = this host's first address */
    int64_t port;             /* UDP gossip and TCP state sync */
    char *name;               /* cluster name, authenticated with every packet */
    ukko_strlist_t roles;
    ukko_strlist_t seed_nodes; /* "host:port" */
    char *keyring_path;
    bool insecure;
    int64_t mtu;
    int64_t probe_interval_ms;
    int64_t probe_timeout_ms;
    int64_t indirect_checks;
    int64_t gossip_interval_ms;
    int64_t gossip_nodes;
    int64_t retransmit_mult;
    int64_t suspicion_timeout_ms;
    int64_t suspicion_max_mult;
    int64_t awareness_max;
    int64_t loop_lag_tolerance_ms;
    int64_t sync_interval_ms;
    int64_t sync_timeout_ms;
    int64_t join_retry_interval_ms;
    int64_t weakly_up_after_ms;
    int64_t removed_after_ms;
    int64_t max_members;
    int64_t max_sync_bytes;
    ukko_cluster_bootstrap_config_t bootstrap;
    ukko_cluster_sbr_config_t sbr;
} ukko_cluster_config_t;

/* Registers the cluster.* keys, storing into cc (not owned; must outlive the
 * config). Main thread, before ukko_config_load. */
int ukko_cluster_config_register(ukko_config_t *cfg, ukko_cluster_config_t *cc);

/* True when the settings ask for a cluster at all: seed nodes, a keyring or
 * cluster.insecure. A node with none of them joins nothing and stays not
 * ready (so `ukko run` with no config still starts). */
bool ukko_cluster_configured(const ukko_cluster_config_t *cc);

typedef struct ukko_cluster ukko_cluster_t;

/* Creates the membership of this node: reads the keyring (or refuses, without
 * one, unless cluster.insecure), picks the uid, registers /cluster/members
 * routes and metrics on node. Neither node nor cc is owned; both must outlive
 * the cluster. On failure returns NULL and has logged why (a message naming
 * the key and the way out). Loop thread. */
ukko_cluster_t *ukko_cluster_new(ukko_node_t *node, const ukko_cluster_config_t *cc);
/* Binds UDP and TCP on cluster.hostname:cluster.port and begins joining
 * (or forms the cluster). Returns 0 or a negative UKKO_E* (logged). */
int ukko_cluster_start(ukko_cluster_t *c);
/* Makes the cluster bootstrap through discovery (dc, not owned, must outlive
 * the cluster) instead of cluster.seed-nodes: see docs/bootstrap.md. Call
 * before ukko_cluster_start; mgmt_port is this node's management port (how
 * it finds itself among the contact points). Returns 0, or < 0 (logged)
 * when discovery cannot be set up. Loop thread. */
int ukko_cluster_use_discovery(ukko_cluster_t *c, const ukko_discovery_config_t *dc,
                               int mgmt_port);
/* Tells the others this node is leaving (Exiting) and stops every watcher.
 * Safe to call twice. */
void ukko_cluster_stop(ukko_cluster_t *c);
/* Releases everything; call after ukko_cluster_stop (or instead of it). */
void ukko_cluster_free(ukko_cluster_t *c);

/* The readiness check for ukko_node_set_membership_check: healthy while this
 * node's own status is Up or WeaklyUp. ud is the ukko_cluster_t. */
bool ukko_cluster_ready_check(void *ud, char *why, size_t whylen);
/* A stop hook for ukko_node_add_stop_hook: announces the leave, flushes it for
 * a few gossip rounds, then lets the node stop. ud is the ukko_cluster_t. */
int ukko_cluster_stop_hook(ukko_node_t *node, void *ud);

/* This node's status (ukko_member_status_t). */
int ukko_cluster_self_status(const ukko_cluster_t *c);
/* Writes the members as Pekko Management's GET /cluster/members JSON. */
int ukko_cluster_members_json(ukko_cluster_t *c, ukko_buf_t *out);

#ifdef __cplusplus
}
#endif
#endif /* UKKO_CLUSTER_H */
