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

/* Cluster sharding (keys cluster.sharding.*, Pekko's names where it has
 * them; see docs/sharding.md). */
typedef struct ukko_cluster_sharding_config {
    char *down_removal_margin;        /* "auto" or a duration: shards of a Down member move
                                       * only after it (cluster__down_removal_margin_ms) */
    int64_t passivate_idle_ms;        /* an entity idle this long is stopped */
    int64_t buffer_size;              /* tells held while shards have no owner, per node */
    int64_t buffer_bytes;             /* and their bytes */
    int64_t link_buffer_bytes;        /* frames on all links not yet acknowledged, bytes */
    int64_t rebalance_interval_ms;    /* how often the coordinator looks at the balance */
    int64_t rebalance_max_simultaneous; /* hand-offs under way at once, per type */
    int64_t handoff_timeout_ms;       /* a hand-off step not answered in this is asked again */
    int64_t max_message_bytes;        /* largest tell payload */
    int64_t link_idle_ms;             /* a sharding link idle this long closes its connection */
} ukko_cluster_sharding_config_t;

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
    ukko_cluster_sharding_config_t sharding;
    bool shutdown_when_down; /* a downed node stops (its shards at once) and exits 1 */
} ukko_cluster_config_t;

/* Registers the cluster.* keys, storing into cc (not owned; must outlive the
 * config). Main thread, before ukko_config_load. */
int ukko_cluster_config_register(ukko_config_t *cfg, ukko_cluster_config_t *cc);

/* True when the settings ask for a cluster at all: seed nodes, a keyring or
 * cluster.insecure. A node with none of them joins nothing and stays not
 * ready (so `ukko run` with no config still starts). */
bool ukko_cluster_configured(const ukko_cluster_config_t *cc);

typedef struct ukko_cluster ukko_cluster_t;

/* The cluster as a module of the program (node/ukko.h): its settings
 * (cluster.*), its start (membership, bootstrapping through discovery
 * unless cluster.seed-nodes is set; none at all when not configured), its
 * readiness check, its stop tasks (cluster-leave: Leaving until the leader
 * makes it Exiting; cluster-exiting: Exiting told, then the farewell;
 * cluster-exiting-done: sockets and timers stopped), the /cluster/ routes,
 * its /metrics families, and the commands `ukko members|leave|down`. */
extern const ukko_module_t ukko_cluster_module;

/* The cluster a host runs, or NULL when it runs none (not configured). */
ukko_cluster_t *ukko_cluster_of(ukko_host_t *host);

/* Creates the membership of this node: reads the keyring (or refuses, without
 * one, unless cluster.insecure) and picks the uid (the module adds the
 * /cluster/ routes and the metrics). Neither node nor cc is owned; both must
 * outlive the cluster. On failure returns NULL and has logged why (a message
 * naming the key and the way out). Loop thread. */
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
/* Adds the cluster's tasks to the node's stop phases (see
 * ukko_cluster_module); a node stopped as downed skips the leave. */
int ukko_cluster_add_stop_tasks(ukko_cluster_t *c);

/* This node's status (ukko_member_status_t). */
int ukko_cluster_self_status(const ukko_cluster_t *c);
/* Writes the members as Pekko Management's GET /cluster/members JSON. */
int ukko_cluster_members_json(ukko_cluster_t *c, ukko_buf_t *out);

/* ------------------------------------------------------ membership events
 * A subscription to the membership as this node sees it, for sharding
 * (memberlist's event delegate, Pekko's cluster domain events). Events come
 * on the loop thread, never inside the membership code's own call chain
 * (queued, delivered before the loop sleeps), in the order the changes
 * happened; each member's events follow its statuses (a member may skip
 * some: Joining straight to Up, Exiting straight to Removed). */

typedef enum {
    UKKO_CLUSTER_MEMBER_JOINED = 1,   /* a member new to this view, Joining */
    UKKO_CLUSTER_MEMBER_WEAKLY_UP,    /* Joining without convergence (someone unreachable) */
    UKKO_CLUSTER_MEMBER_UP,
    UKKO_CLUSTER_MEMBER_LEAVING,      /* Pekko's MemberLeft */
    UKKO_CLUSTER_MEMBER_EXITING,      /* Pekko's MemberExited */
    UKKO_CLUSTER_MEMBER_DOWN,
    UKKO_CLUSTER_MEMBER_REMOVED,      /* out of the view (after Exiting, or Down) */
    UKKO_CLUSTER_MEMBER_UNREACHABLE,  /* suspected by failure detection */
    UKKO_CLUSTER_MEMBER_REACHABLE,    /* suspicion refuted */
    /* The view has just converged: every member (Joining to Exiting) is
     * reachable and reports this node's view digest. member is NULL. */
    UKKO_CLUSTER_VIEW_CONVERGED,
    /* The snapshot that opens every subscription is complete. member is NULL. */
    UKKO_CLUSTER_SNAPSHOT_DONE
} ukko_cluster_event_kind_t;

/* Pekko's names ("MemberUp", "UnreachableMember", ...; static). */
const char *ukko_cluster_event_name(ukko_cluster_event_kind_t kind);

/* A member as an event shows it; every pointer is valid during the call only. */
typedef struct ukko_cluster_member {
    const char *address;     /* "127.0.0.1:7355": the member's gossip endpoint */
    const char *node;        /* "ukko://name@127.0.0.1:7355", as /cluster/members */
    const char *uid;         /* 32 hex digits: this incarnation of the member */
    const char *const *roles;
    size_t nroles;
    int64_t started_ms;      /* wall clock of its process start: the oldest started first */
    int status;              /* ukko_member_status_t, after the change */
    int old_status;          /* before it; -1 for a member new to this view or in a snapshot */
    bool reachable;
    bool self;               /* this node: its own status changes come this way too */
} ukko_cluster_member_t;

typedef struct ukko_cluster_event {
    ukko_cluster_event_kind_t kind;
    const ukko_cluster_member_t *member; /* NULL for VIEW_CONVERGED and SNAPSHOT_DONE */
    bool snapshot;  /* part of a snapshot (at subscription, or again after an overflow) */
    bool converged; /* the view is converged as of this event */
} ukko_cluster_event_t;

typedef void (*ukko_cluster_event_fn)(const ukko_cluster_event_t *ev, void *ud);
typedef struct ukko_cluster_sub ukko_cluster_sub_t;

/* Subscribes fn(ev, ud): first, inside this call, the snapshot (one event
 * per member with its status as kind and snapshot set, UNREACHABLE after a
 * suspected one, then SNAPSHOT_DONE), then every change. If changes pile up
 * beyond what the queue holds (4 per member allowed, cluster.max-members), a
 * new snapshot replaces them (logged). fn may unsubscribe (itself or others)
 * and subscribe. *out (may be NULL) is the handle for unsubscribing; ud is
 * not owned. Returns 0, UKKO_EINVAL, UKKO_ENOMEM. Loop thread. */
int ukko_cluster_subscribe(ukko_cluster_t *c, ukko_cluster_event_fn fn, void *ud,
                           ukko_cluster_sub_t **out);
/* No event reaches fn after this returns. Loop thread. */
void ukko_cluster_unsubscribe(ukko_cluster_t *c, ukko_cluster_sub_t *sub);
/* True when this node is in a cluster whose view has converged. */
bool ukko_cluster_converged(const ukko_cluster_t *c);

/* ------------------------------------------------------------- sharding
 * Cluster sharding (cluster/sharding*.c, docs/sharding.md): entities of a
 * type live in shards; each shard runs on exactly one Up member, chosen by
 * the shard coordinator (on the oldest Up member), and moves only after its
 * old owner handed it off (stopped, drained, committed) or was downed and
 * removed after cluster.sharding.down-removal-margin. cluster/ knows shards,
 * never Kafka: streams/ plugs in through ukko_shard_hooks_t.
 * Threads: everything here is called on the loop thread unless it says
 * otherwise; entity handlers run on dispatcher threads. */

typedef struct ukko_sharding ukko_sharding_t;
typedef struct ukko_entity_ctx ukko_entity_ctx_t;

/* Creates the sharding of cluster c (not owned; must outlive it), its
 * entities spawned in sys (not owned). Types are registered next, then
 * ukko_sharding_start. *out is the caller's (ukko_sharding_free); c keeps a
 * borrowed pointer (ukko_cluster_sharding). Returns 0 or UKKO_ENOMEM.
 * Loop thread. */
int ukko_sharding_new(ukko_cluster_t *c, ukko_actor_system_t *sys, ukko_sharding_t **out);
/* The sharding attached to c, or NULL (how streams/ finds it). */
ukko_sharding_t *ukko_cluster_sharding(ukko_cluster_t *c);
/* Starts regions and the coordinator role: the types registered so far
 * are this node's. Adds the stop task of phase
 * cluster-sharding-shutdown-region (this node's shards handed off), the
 * /cluster/shards/{type} route and the metrics. Returns 0 or < 0 (logged). */
int ukko_sharding_start(ukko_sharding_t *s);
/* Stops every shard at once (hooks.stop with at_once) and every entity;
 * no hand-off. What a downed node does; safe to call twice. */
void ukko_sharding_stop_now(ukko_sharding_t *s);
/* Releases everything; after the loop ended and the actor system stopped
 * (entities may still be handling messages until then), or before the
 * start. */
void ukko_sharding_free(ukko_sharding_t *s);
/* Shards of type running on this node now (for tests and apps), or < 0. */
int ukko_sharding_local_count(const ukko_sharding_t *s, const char *type);

/* Sharding as a module of the program (node/ukko.h), listed after the
 * cluster's: it starts when the cluster runs, registers the entity types
 * the application offered (UKKO_HOOK_ENTITY_TYPE) and adds its stop task,
 * route and metrics; its settings are the cluster's (cluster.sharding.*). */
extern const ukko_module_t ukko_sharding_module;
/* `ukko run --app counter`: sharded counters for trying sharding and for
 * its multi-process tests (docs/sharding.md). */
extern const ukko_app_t ukko_sharding_counter_app;

/* The hook kind an application uses to offer a plain entity type through
 * ukko_host_add_hook: desc is a const ukko_entity_type_t * (static
 * storage); the sharding registers each one when it starts. */
#define UKKO_HOOK_ENTITY_TYPE "cluster.entity-type"

/* Kafka's default partitioner: murmur2 of the key, positive, modulo the
 * count (org.apache.kafka.common.utils.Utils.murmur2 & 0x7fffffff % n), so a
 * record keyed by entity id is in its entity's shard. Any thread. */
int32_t ukko_shard_of(const void *entity_id, size_t len, int32_t shards);

/* A message as an entity's handler sees it; valid during the call only. */
typedef struct ukko_entity_msg {
    uint32_t type; /* the application's type id (< UKKO_MSG_SYSTEM) */
    const char *entity_id;
    size_t entity_id_len;
    const void *data;
    size_t len;
    const char *traceparent; /* W3C trace context, "" when none */
    void *origin;            /* what fed it (streams: the record), NULL for a tell */
} ukko_entity_msg_t;

/* Runs on a dispatcher thread, one message at a time per entity, in the
 * order they were delivered to that entity. Returning 0 acknowledges the
 * message unless the handler called ukko_entity_defer; < 0 fails it (a fed
 * record is retried, then dead-lettered). */
typedef int (*ukko_entity_handler_fn)(ukko_entity_ctx_t *ctx, void *state,
                                      const ukko_entity_msg_t *m);

typedef struct ukko_entity_type {
    const char *name;    /* [a-z0-9._-]+; a topic-fed type's Kafka group.id */
    int32_t shards;      /* plain sharding; 0 for a topic-fed type (streams sets it) */
    size_t state_size;   /* bytes of zeroed state per live entity */
    int (*state_init)(void *state, const char *id, size_t id_len, void *ud); /* may be NULL */
    void (*state_free)(void *state, void *ud);                              /* may be NULL */
    ukko_entity_handler_fn handler;
    int64_t passivate_idle_ms; /* stop an entity idle this long; 0 = the config's default */
    void *ud;                  /* the application's, passed back; not owned */
} ukko_entity_type_t;

/* How a feed (streams/) learns that a shard starts or stops on this node.
 * start: this node owns the shard from now on (return < 0 to refuse: the
 * coordinator retries it elsewhere). stop: give it up; call done(done_arg)
 * exactly once when nothing of the shard runs any more (drained and
 * committed), from the loop thread, possibly later. at_once is true when the
 * node was downed: stop at once, commit only what is already acknowledged. */
typedef void (*ukko_shard_stopped_fn)(void *done_arg);
typedef struct ukko_shard_hooks {
    int (*start)(void *ud, const char *type, int32_t shard);
    /* Called once per start; a node downed during a hand-off lets the
     * stop under way finish. done must come before the node is freed. */
    void (*stop)(void *ud, const char *type, int32_t shard, bool at_once,
                 ukko_shard_stopped_fn done, void *done_arg);
    void *ud;
} ukko_shard_hooks_t;

/* Registers an entity type on this node (t is copied; its strings and ud
 * must outlive the node). hooks may be NULL (plain sharding). Every node of
 * a cluster registers the same types. Before the node starts. */
int ukko_sharding_register(ukko_sharding_t *s, const ukko_entity_type_t *t,
                           const ukko_shard_hooks_t *hooks);
/* Sets the shard count of a registered topic-fed type once streams/ knows
 * the topic's partitions; allocation of the type waits for it. */
int ukko_sharding_set_shards(ukko_sharding_t *s, const char *type, int32_t shards);

/* Sends a message to an entity by id from any node: delivered locally when
 * this node owns its shard, else over node-to-node TCP to the owner;
 * buffered (bounded) while the shard has no owner or is handed off. Copies
 * data. Returns 0, UKKO_EAGAIN when the buffer is full or the link to the
 * owner holds all it may before the owner acknowledges (logged with the
 * type, shard and the key that raises the limit; nothing was sent: try
 * again later), UKKO_E2BIG when the tell does not fit one frame
 * (cluster.max-sync-bytes), UKKO_EINVAL for an unknown type. Loop thread; from any other thread (an entity's handler telling
 * another entity) the tell is queued to the loop thread and 0 means queued
 * (a full buffer there is logged and counted, not returned). */
int ukko_entity_tell(ukko_sharding_t *s, const char *type, const char *id, size_t id_len,
                     uint32_t msg_type, const void *data, size_t len);

/* For a feed of a shard this node owns: hands m (copied) to its entity
 * (spawned if not live). done(arg, status) runs on the loop thread once the
 * message is acknowledged (status 0) or failed (< 0). Returns 0, or
 * UKKO_ENOENT when the shard is not running here. Loop thread. */
typedef void (*ukko_entity_done_fn)(void *arg, int status);
int ukko_entity_deliver(ukko_sharding_t *s, const char *type, int32_t shard,
                        const ukko_entity_msg_t *m, ukko_entity_done_fn done, void *arg);

/* Inside a handler: keep the current message unacknowledged after the
 * handler returns; it is acknowledged when every token taken has been
 * completed with ukko_entity_ack (any thread, once per token). */
typedef struct ukko_entity_ack ukko_entity_ack_t;
ukko_entity_ack_t *ukko_entity_defer(ukko_entity_ctx_t *ctx);
void ukko_entity_ack(ukko_entity_ack_t *ack, int status);
/* The current entity's id (not NUL-terminated: *len) and its type's ud. */
const char *ukko_entity_id(const ukko_entity_ctx_t *ctx, size_t *len);
void *ukko_entity_ud(const ukko_entity_ctx_t *ctx);
/* The node's name as members know it ("host:port"), for results. */
const char *ukko_entity_node(const ukko_entity_ctx_t *ctx);

#ifdef __cplusplus
}
#endif
#endif /* UKKO_CLUSTER_H */
