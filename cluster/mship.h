/* mship.h: the membership core's own state, shared by membership.c (the
 * member table and its merge rules), probe.c (failure detection), gossip.c
 * (the broadcast queue and packets) and sync.c (joining and full-state
 * sync). Private to those files. One thread per instance. */
#ifndef UKKO_CLUSTER_MSHIP_H
#define UKKO_CLUSTER_MSHIP_H

#include "cluster_internal.h"

#define MS_QBUCKETS 64
#define MS_MAX_HELPERS 64
#define MS_MAX_INFLIGHT 64
#define MS_RETIRED 1024
#define MS_SUSPICION_K 2 /* confirmations that bring a suspicion to its minimum */

/* member flags */
#define MF_QUEUED 0x01
#define MF_DOWNLIST 0x02

typedef struct ms_susp {
    cluster__suspicion_t s;
    uint32_t addr;      /* the suspected member's address id */
    uint32_t last_from; /* address id of the latest accuser, for re-broadcast */
    int64_t told;       /* when we last told the suspect directly */
} ms_susp_t;

typedef struct ms_helper {
    uint32_t seq;        /* our ping to the target */
    cluster__addr_t origin;
    uint32_t origin_seq;
    int64_t deadline;
    bool nack, used;
} ms_helper_t;

/* The split-brain resolver's state (sbr.c): what it counts and when the
 * view last changed, as Pekko's SplitBrainResolver keeps it. */
typedef struct ms_sbr {
    size_t nunreachable;  /* members (not self) suspected and not Down */
    int64_t stable_since; /* last change of the members or their reachability */
    int64_t next_look;    /* a decision that asked nothing of this node waits till */
    int64_t resolved_at; /* an unreachable member last went Down (a verdict arrived) */
    int64_t unstable_at; /* when down-all-when-unstable acts, as the last tick saw it */
    int64_t sweep_start, next_sweep; /* asking the unheard, while any is unreachable */
    int sweeps_covering;             /* consecutive sweeps that asked every unheard one */
    size_t sweep_pos;                /* where the next sweep starts asking */
    uint32_t gone[64];               /* idents whose host refused: proven gone */
    size_t ngone;
    uint32_t check[64]; /* idents newly unreachable, for the leader to try over TCP */
    size_t ncheck;
    uint64_t unstable_changes; /* reachability changes since all were reachable (logs) */
    uint64_t decisions[4]; /* by cluster__sbr_decision_t; [0]: down-all for instability */
    uint64_t downed;
    char reason[240]; /* why this node downed itself ("" = it did not) */
} ms_sbr_t;

struct cluster__mship {
    cluster__params_t p;
    cluster__env_t env;
    cluster__ids_t *ids;
    uint32_t self_addr, self_ident;
    uint8_t uid[CLUSTER__UID_LEN];
    char *roles;
    uint32_t inc;
    bool in_cluster, started;
    int64_t t0;
    uint64_t rng[2];

    cluster__member_t *mem;
    size_t nmem, memcap;
    uint32_t *slot; /* address id -> slot + 1 */
    size_t slotcap;
    size_t nlive;    /* status < Down */
    size_t npending; /* Joining, WeaklyUp or Leaving: the leader has work */
    uint64_t digest;
    uint64_t view_seq; /* counts changes of the digests members report (events.c) */

    /* probing */
    size_t probe_idx;
    uint32_t probe_first; /* address id + 1 of a member to probe next (heard suspected) */
    uint32_t seq;
    struct {
        bool active, indirect_sent;
        uint32_t seq, addr, ident;
        int64_t t_direct, t_end;
        int expected_nacks, nacks;
    } probe;
    int64_t next_probe;
    ms_helper_t helpers[MS_MAX_HELPERS];
    cluster__awareness_t aw;

    /* gossip */
    uint32_t qhead[MS_QBUCKETS]; /* address id + 1 */
    size_t qlen;
    int64_t next_gossip;
    uint8_t *pkt; /* one body under construction (mtu bytes) */
    size_t pktcap;

    /* suspicions: dense */
    ms_susp_t *susp;
    size_t nsusp, suspcap;

    /* sync and join */
    int64_t next_sync, next_join;
    int64_t next_catchup;   /* earliest sync prompted by a differing digest */
    int64_t diverged_since; /* first differing digest seen since views last agreed */
    uint32_t inflight[MS_MAX_INFLIGHT]; /* address ids with a sync under way */
    bool inflight_join[MS_MAX_INFLIGHT];
    size_t ninflight;
    cluster__addr_t *seeds;
    size_t nseeds;
    bool self_first_seed;
    int join_round_pending; /* join requests of this round still out */
    bool join_round_ok;
    int64_t last_join_log;

    /* leader duties */
    int64_t next_poll;
    int64_t unconverged_since; /* 0 when converged or nothing pending */
    size_t poll_idx;

    /* Down members waiting for removal */
    uint32_t *downlist;
    size_t ndown, downcap;
    int64_t next_reap;
    uint32_t retired[MS_RETIRED]; /* idents, ring */
    size_t nretired, retired_pos;
    int64_t last_dead_reply;

    int64_t expected; /* when the core asked to run next: a stall shows as lateness */
    cluster__stats_t st;
    ms_sbr_t sbr;
};

/* membership.c */
int64_t ms__now(cluster__mship_t *m);
uint64_t ms__rand(cluster__mship_t *m);
cluster__member_t *ms__find_addr(cluster__mship_t *m, uint32_t addr_id);
cluster__member_t *ms__self(cluster__mship_t *m);
const cluster__ident_t *ms__ident(const cluster__mship_t *m, const cluster__member_t *mem);
const cluster__addr_t *ms__addr(const cluster__mship_t *m, const cluster__member_t *mem);
ms_susp_t *ms__susp(cluster__mship_t *m, const cluster__member_t *mem);
void ms__apply_alive(cluster__mship_t *m, const ukko_wire_msg_t *msg);
void ms__apply_suspect(cluster__mship_t *m, const ukko_wire_msg_t *msg);
void ms__apply_dead(cluster__mship_t *m, const ukko_wire_msg_t *msg);
void ms__declare_dead(cluster__mship_t *m, cluster__member_t *mem, const char *why);
void ms__suspect_member(cluster__mship_t *m, cluster__member_t *mem);
void ms__set_status(cluster__mship_t *m, cluster__member_t *mem, int status);
bool ms__usable(const cluster__mship_t *m, const cluster__member_t *mem);
void ms__header(cluster__mship_t *m, ukko_wire_w_t *w, uint8_t kind, uint8_t flags);
bool ms__is_retired(const cluster__mship_t *m, uint32_t ident);
void ms__form(cluster__mship_t *m);
/* Arms the periodic work of a started core (probe, gossip, sync, reap). */
void ms__start_clocks(cluster__mship_t *m, int64_t now);
void ms__refute_suspicion(cluster__mship_t *m, uint32_t inc);

/* sbr.c: the split-brain resolver, fed every change of a member (status
 * or liveness, old_status -1 for a new member) and run by the tick. */
void ms__sbr_changed(cluster__mship_t *m, uint32_t ident, int old_status, int old_live,
                     int status, int live);
void ms__sbr_tick(cluster__mship_t *m, int64_t now);
int64_t ms__sbr_next(const cluster__mship_t *m);
/* This node's loop was stalled: what it saw before is stale, so the view
 * counts as changed now (no decision made across a stall). */
void ms__sbr_stalled(cluster__mship_t *m, int64_t now);
/* The member's host refused the cluster port (sync.c): its process is gone,
 * or a firewall rejects. The resolver decides at once when every
 * unreachable member is so proven, without waiting for stable-after. */
void ms__sbr_gone(cluster__mship_t *m, cluster__member_t *mem);

/* gossip.c */
void ms__queue(cluster__mship_t *m, cluster__member_t *mem);
void ms__unqueue(cluster__mship_t *m, cluster__member_t *mem);
void ms__piggyback(cluster__mship_t *m, ukko_wire_w_t *w);
void ms__send(cluster__mship_t *m, const cluster__addr_t *to, ukko_wire_w_t *w);
void ms__gossip_tick(cluster__mship_t *m, int64_t now);
void ms__encode_member(cluster__mship_t *m, ukko_wire_w_t *w, const cluster__member_t *mem,
                       uint8_t type);
void ms__send_alive_to(cluster__mship_t *m, const cluster__addr_t *to);
void ms__send_dead_to(cluster__mship_t *m, const cluster__addr_t *to, uint32_t ident);

/* probe.c */
void ms__probe_tick(cluster__mship_t *m, int64_t now);
void ms__on_ping(cluster__mship_t *m, const ukko_wire_hdr_t *h, const ukko_wire_msg_t *msg);
void ms__on_indirect(cluster__mship_t *m, const ukko_wire_hdr_t *h, const ukko_wire_msg_t *msg);
void ms__on_ack(cluster__mship_t *m, const ukko_wire_msg_t *msg);
void ms__on_nack(cluster__mship_t *m, const ukko_wire_msg_t *msg);
void ms__leader_tick(cluster__mship_t *m, int64_t now);
uint32_t ms__next_seq(cluster__mship_t *m);
void ms__tell_suspect(cluster__mship_t *m, const cluster__member_t *mem);

/* sync.c */
void ms__sync_tick(cluster__mship_t *m, int64_t now);
void ms__join_tick(cluster__mship_t *m, int64_t now);
bool ms__sync_inflight(const cluster__mship_t *m, uint32_t addr_id);
void ms__sync_start(cluster__mship_t *m, uint32_t addr_id, bool join);

#endif
