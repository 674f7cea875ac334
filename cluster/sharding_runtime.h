/* sharding_runtime.h: the sharding of a real node: its regions (the shards
 * of each type this node runs, their entities and buffered tells), the
 * coordinator it may host, and the links that carry its frames. Private to
 * cluster/sharding*.c. Loop thread only, except the fields sharding_entity.c
 * marks as touched by dispatcher threads (atomics). */
#ifndef UKKO_SHARDING_RUNTIME_H
#define UKKO_SHARDING_RUNTIME_H

#include "runtime.h"
#include "sharding_internal.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct sh_link sh_link_t;
typedef struct ukko_sharding sh_t;

/* A tell held while its shard has no owner, is handed off, or has not
 * started here yet. */
typedef struct sh_held {
    struct sh_held *next;
    uint32_t msg_type;
    char *id; /* id_len bytes, then data: one allocation */
    size_t id_len;
    void *data;
    size_t len;
    char tp[SH_TRACEPARENT_LEN + 1];
} sh_held_t;

typedef struct sh_entity {
    struct sh_entity *next; /* hash chain */
    struct sh_shard *shard;
    ukko_actor_t *actor;
    uint32_t inflight; /* deliveries not completed (loop thread) */
    int64_t last_used;
    bool stopped;      /* actor told to stop; freed when inflight reaches 0 */
    size_t id_len;
    char id[];
} sh_entity_t;

/* Region states of one shard on this node. */
enum {
    R_NONE = 0,   /* not running here */
    R_RUNNING,    /* running: tells and feeds delivered */
    R_FENCING,    /* HANDOFF received: waiting until every member fenced (still delivers) */
    R_STOPPING    /* hooks.stop called, draining: tells held, feeds finish */
};

typedef struct sh_shard {
    struct sh_type *type;
    int32_t id;
    uint8_t state;
    /* what the last accepted table says */
    uint32_t owner;
    bool moving, fenced;
    /* running */
    sh_entity_t **ents;
    size_t nbuckets, nents;
    uint32_t inflight;
    bool hook_done;
    int64_t handoff_at;
    uint32_t *fences; /* members that fenced the current move */
    size_t nfences, fencecap;
    uint32_t *wait;   /* members the hand-off waits on */
    size_t nwait;
    int64_t fence_deadline;
    /* held tells */
    sh_held_t *head, *tail;
    size_t nheld;
} sh_shard_t;

typedef struct sh_type {
    sh_t *s;
    ukko_entity_type_t t;
    char name[SH_MAX_NAME + 1];
    ukko_shard_hooks_t hooks;
    bool has_hooks;
    int32_t n;
    sh_shard_t *sh;
    int co_idx;
    uint64_t version;   /* of the last accepted table */
    uint32_t version_from; /* the coordinator that sent it */
    int64_t passivate_ms;
    uint64_t entities_live;
} sh_type_t;

struct ukko_sharding {
    ukko_cluster_t *c;
    ukko_actor_system_t *sys;
    const ukko_cluster_sharding_config_t *cfg;
    struct ev_loop *loop;
    sh_type_t types[SH_MAX_TYPES];
    size_t ntypes;
    shard__co_t *co;
    sh_node_t self;
    uint32_t self_ident;
    char self_name[64];
    ev_timer tick, kick;
    int64_t co_next;
    /* frames to this node itself: delivered from the kick, never inside the
     * call that sent them */
    struct sh_local {
        struct sh_local *next;
        size_t n;
        uint8_t body[];
    } *lhead, *ltail;
    sh_link_t *links;
    /* senders of numbered frames: the last number handled from each, so
     * what a sender writes again after a broken connection is dropped */
    struct sh_peer {
        cluster__addr_t addr;
        uint8_t uid[CLUSTER__UID_LEN];
        uint64_t last;
        int64_t seen;
    } *peers;
    size_t npeers, peercap;
    uint64_t frames_dup;
    uint32_t pinned; /* the coordinator this region answered last (SH_NONE) */
    bool started, going_away, stopped_now, seen_table, freed;
    bool downed_seen;   /* this node learnt it is Down: stopped, exit asked for */
    int64_t going_away_sent;
    ukko_stop_task_t *stop_task;
    ukko_cluster_sub_t *sub;
    ukko_actor_t *sink; /* tells from other threads, on the loop thread */
    /* Completed deliveries, pushed by dispatcher threads (a lock-free stack:
     * push with a CAS, the loop takes all with one exchange) and finished on
     * the loop thread by its ev_async, in batches. Allocated apart: an ack
     * may come after this struct is freed (sharding_entity.c). */
    struct sh_done_hub *hub;
    size_t ndeliveries; /* made and not yet completed (loop thread) */
    struct sh_delivery *pool; /* free deliveries of the pooled size (loop thread) */
    size_t npool;
    pthread_t loop_thread;
    size_t nheld;       /* tells held, all shards */
    size_t held_bytes;  /* their bytes (capped by cluster.sharding.buffer-bytes) */
    size_t link_bytes;  /* bytes queued on every link, not acknowledged (capped by
                         * cluster.sharding.link-buffer-bytes) */
    int64_t last_link_full_log;
    int64_t next_passivate, last_full_log, last_refused_log;
    bool held_blocked;  /* a held tell waits for room on its owner's link */
    /* counters */
    uint64_t tells_local, tells_remote, tells_forwarded, tells_dropped, tells_full;
    uint64_t handoffs, handoff_ms_sum, frames_in, frames_bad, link_drops;
    ukko_prom_hist_t handoff_hist; /* seconds, HANDOFF to STOPPED here */
    uint64_t links_idle_closed;
    uint64_t shards_stopped_foreign; /* running here, yet a table named another owner */
};

/* sharding.c: a frame from a link (or from self); returns the number to
 * acknowledge for a SEQ frame, else 0. */
uint64_t sh__on_frame(sh_t *s, const uint8_t *body, size_t n);
/* 0, or the link's refusal (UKKO_EAGAIN: full; UKKO_E2BIG: too large),
 * counted in link_drops. */
int sh__send(sh_t *s, uint32_t to, const ukko_buf_t *body);
uint32_t sh__ident_of(sh_t *s, const sh_node_t *node);
void sh__node_of(sh_t *s, uint32_t ident, sh_node_t *out);
bool sh__member_gone(sh_t *s, uint32_t ident);
void sh__shard_progress(sh_shard_t *sh);
sh_type_t *sh__type(sh_t *s, const char *name);
void sh__member_name(sh_t *s, uint32_t ident, char *out, size_t outlen);

/* sharding_entity.c */
int sh__entity_setup(sh_t *s);
void sh__entity_teardown(sh_t *s);
/* Delivers to the entity (spawned when not live); done may be NULL. */
int sh__deliver(sh_shard_t *sh, const char *id, size_t id_len, uint32_t msg_type,
                const void *data, size_t len, const char *tp, void *origin,
                ukko_entity_done_fn done, void *arg);
/* Stops every entity of the shard (they must be idle unless force). */
void sh__entities_stop(sh_shard_t *sh, bool force);
void sh__passivate(sh_t *s, int64_t now);
/* A tell made off the loop thread: queued to the sink actor. */
int sh__tell_queue(sh_t *s, const char *type, const char *id, size_t id_len, uint32_t msg_type,
                   const void *data, size_t len);

/* sharding_link.c: queues one frame to the member at `to`. 0, UKKO_EAGAIN
 * (its link holds 8 x cluster.max-sync-bytes not acknowledged: logged once
 * per fill), UKKO_E2BIG (the frame is over cluster.max-sync-bytes), or
 * UKKO_ENOMEM. */
int sh__link_send(sh_t *s, const cluster__addr_t *to, const uint8_t *body, size_t n);
void sh__links_prune(sh_t *s);
void sh__links_free(sh_t *s);

/* sharding_http.c */
int sh__routes(sh_t *s, ukko_http_server_t *srv);
void sh__metrics(ukko_buf_t *out, void *ud);

#endif
