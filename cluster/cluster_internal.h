/* cluster_internal.h: the parts of cluster/ shared between its files, its
 * tests, its fuzz target and the simulator: the wire layout, the keyring, the
 * suspicion and local-health arithmetic, and the membership core with its
 * injectable clock and transport. Not part of the public interface. One
 * thread per membership instance (the loop thread, or the simulator's). */
#ifndef UKKO_CLUSTER_INTERNAL_H
#define UKKO_CLUSTER_INTERNAL_H

#include "cluster.h"

#include <stddef.h>
#include <stdint.h>

/* ============================================================= addresses */

/* An endpoint: IPv6 bytes (IPv4 as ::ffff:a.b.c.d) and a port. */
typedef struct cluster__addr {
    uint8_t ip[16];
    uint16_t port;
} cluster__addr_t;

/* "127.0.0.1:7355" or "[::1]:7355" into a; numeric addresses only. */
int cluster__addr_parse(const char *s, uint16_t default_port, cluster__addr_t *a);
/* "127.0.0.1:7355" / "[::1]:7355" (out at least 64 bytes). */
void cluster__addr_format(const cluster__addr_t *a, char *out, size_t outlen);
/* The host part alone ("127.0.0.1", "::1"). */
void cluster__addr_host(const cluster__addr_t *a, char *out, size_t outlen);
bool cluster__addr_eq(const cluster__addr_t *a, const cluster__addr_t *b);
/* Orders by address bytes, then port (Pekko's address ordering). */
int cluster__addr_cmp(const cluster__addr_t *a, const cluster__addr_t *b);
struct sockaddr_storage;
size_t cluster__addr_to_sockaddr(const cluster__addr_t *a, struct sockaddr_storage *ss);
void cluster__addr_from_sockaddr(const struct sockaddr_storage *ss, cluster__addr_t *a);

/* ========================================================== identities */

#define CLUSTER__UID_LEN 16
#define CLUSTER__MAX_ROLES 8
#define CLUSTER__MAX_ROLE_LEN 32

/* Identities interned once per process: an address id (dense, stable) per
 * endpoint, an identity id per (address, uid) with its immutable facts. The
 * simulator shares one table between all its nodes; a real node has its own. */
typedef struct cluster__ident {
    uint32_t addr;                 /* address id */
    uint8_t uid[CLUSTER__UID_LEN];
    uint64_t hash;                 /* of (address, uid): input of view digests */
    int64_t started_ms;            /* wall clock at process start: "oldest" */
    char *roles;                   /* "a,b" or NULL */
} cluster__ident_t;

typedef struct cluster__ids cluster__ids_t;

cluster__ids_t *cluster__ids_new(void);
void cluster__ids_free(cluster__ids_t *ids);
/* The id of an endpoint, interned on first sight; UINT32_MAX on no memory. */
uint32_t cluster__ids_addr(cluster__ids_t *ids, const cluster__addr_t *a);
const cluster__addr_t *cluster__ids_addr_at(const cluster__ids_t *ids, uint32_t addr_id);
size_t cluster__ids_addr_count(const cluster__ids_t *ids);
/* The identity of (address, uid); the first sighting fixes roles and start
 * time. UINT32_MAX on no memory. */
uint32_t cluster__ids_ident(cluster__ids_t *ids, uint32_t addr_id, const uint8_t *uid,
                            int64_t started_ms, const char *roles, size_t roles_len);
const cluster__ident_t *cluster__ids_at(const cluster__ids_t *ids, uint32_t ident);

/* ================================================================ wire */

#define UKKO_WIRE_VERSION 1
#define UKKO_WIRE_MAGIC0 'u'
#define UKKO_WIRE_MAGIC1 'k'
#define UKKO_WIRE_F_SEALED 0x01
#define UKKO_WIRE_NONCE_LEN 12
#define UKKO_WIRE_TAG_LEN 16

/* Every packet and every stream frame starts with this envelope, in the
 * clear and authenticated as associated data (with the cluster name). The
 * body that follows is AES-256-GCM ciphertext and a 16-byte tag when
 * flags has UKKO_WIRE_F_SEALED, plain text only under cluster.insecure. */
typedef struct ukko_wire_envelope {
    uint8_t magic[2]; /* 'u' 'k' */
    uint8_t version;  /* UKKO_WIRE_VERSION */
    uint8_t flags;    /* UKKO_WIRE_F_SEALED */
    uint8_t nonce[UKKO_WIRE_NONCE_LEN];
} ukko_wire_envelope_t;
_Static_assert(offsetof(ukko_wire_envelope_t, magic) == 0, "wire: envelope magic");
_Static_assert(offsetof(ukko_wire_envelope_t, version) == 2, "wire: envelope version");
_Static_assert(offsetof(ukko_wire_envelope_t, flags) == 3, "wire: envelope flags");
_Static_assert(offsetof(ukko_wire_envelope_t, nonce) == 4, "wire: envelope nonce");
_Static_assert(sizeof(ukko_wire_envelope_t) == 16, "wire: envelope size");

/* What a body is. */
enum {
    UKKO_WIRE_GOSSIP = 1,     /* UDP: probes, acks and piggybacked updates */
    UKKO_WIRE_SYNC_REQ = 2,   /* TCP: "here is my digest" (and my state when joining) */
    UKKO_WIRE_SYNC_SAME = 3,  /* TCP: "same digest, nothing to send" */
    UKKO_WIRE_SYNC_STATE = 4, /* TCP: full state; the initiator answers with PUSH */
    UKKO_WIRE_SYNC_PUSH = 5,  /* TCP: the initiator's full state */
    UKKO_WIRE_WATCH = 6       /* TCP: an idle connection kept to notice the peer's death */
};

/* Flags of the header. */
#define UKKO_WIRE_H_MEMBER 0x01 /* the sender is in a cluster (formed or joined) */
#define UKKO_WIRE_H_JOIN 0x02   /* SYNC_REQ: the sender asks to join */

/* The first bytes of every body: who sends, and its view digest. Multi-byte
 * fields are big-endian. Messages follow until the end of the body. */
typedef struct ukko_wire_header {
    uint8_t kind;                  /* UKKO_WIRE_GOSSIP ... */
    uint8_t flags;                 /* UKKO_WIRE_H_* */
    uint8_t port[2];               /* sender's gossip port */
    uint8_t ip[16];                /* sender's advertised address */
    uint8_t uid[CLUSTER__UID_LEN]; /* sender's uid */
    uint8_t digest[8];             /* sender's view digest */
} ukko_wire_header_t;
_Static_assert(offsetof(ukko_wire_header_t, kind) == 0, "wire: header kind");
_Static_assert(offsetof(ukko_wire_header_t, flags) == 1, "wire: header flags");
_Static_assert(offsetof(ukko_wire_header_t, port) == 2, "wire: header port");
_Static_assert(offsetof(ukko_wire_header_t, ip) == 4, "wire: header ip");
_Static_assert(offsetof(ukko_wire_header_t, uid) == 20, "wire: header uid");
_Static_assert(offsetof(ukko_wire_header_t, digest) == 36, "wire: header digest");
_Static_assert(sizeof(ukko_wire_header_t) == 44, "wire: header size");

/* Each message: type (1 byte), body length (2 bytes), body. */
#define UKKO_WIRE_MSG_HDR 3
enum {
    UKKO_MSG_PING = 1,     /* seq u32, target uid[16] [, inc u32, suspect u8] */
    UKKO_MSG_INDIRECT = 2, /* seq u32, target ip[16] port u16 uid[16], nack u8 */
    UKKO_MSG_ACK = 3,      /* seq u32 */
    UKKO_MSG_NACK = 4,     /* seq u32 */
    UKKO_MSG_ALIVE = 5,    /* node (see below) */
    UKKO_MSG_SUSPECT = 6,  /* ip port uid inc u32, from ip[16] port u16 */
    UKKO_MSG_DEAD = 7,     /* same as SUSPECT */
    UKKO_MSG_STATE = 8     /* node + liveness u8 (full-state sync entries) */
};
/* A node in ALIVE and STATE: ip[16] port u16 uid[16] inc u32 status u8
 * started_ms u64, roles: count u8 then (len u8, bytes) each. */
#define UKKO_WIRE_NODE_FIXED (16 + 2 + 16 + 4 + 1 + 8 + 1)

/* Liveness, as SWIM sees it (separate from the Pekko status). */
enum { CLUSTER__ALIVE = 0, CLUSTER__SUSPECT = 1, CLUSTER__DEAD = 2 };

typedef struct ukko_wire_hdr {
    uint8_t kind, flags;
    cluster__addr_t from;
    uint8_t uid[CLUSTER__UID_LEN];
    uint64_t digest;
} ukko_wire_hdr_t;

typedef struct ukko_wire_msg {
    uint8_t type;
    uint32_t seq;
    bool nack;
    bool suspect; /* PING: the prober suspects us at inc */
    cluster__addr_t addr; /* the node the message is about (or the target) */
    uint8_t uid[CLUSTER__UID_LEN];
    uint32_t inc;
    uint8_t status, live;
    int64_t started_ms;
    cluster__addr_t from; /* SUSPECT/DEAD: the accuser */
    const char *roles;    /* "a,b" in a scratch buffer of the iterator */
    size_t roles_len;
} ukko_wire_msg_t;

/* A bounded writer: puts past cap set overflow and write nothing. */
typedef struct ukko_wire_w {
    uint8_t *p;
    size_t len, cap;
    bool overflow;
} ukko_wire_w_t;

void ukko_wire_w_init(ukko_wire_w_t *w, uint8_t *p, size_t cap);
void ukko_wire_put_header(ukko_wire_w_t *w, const ukko_wire_hdr_t *h);
/* A ping; suspect says the prober suspects the target at incarnation inc
 * (the target answers with its refutation in the ack packet). */
void ukko_wire_put_ping(ukko_wire_w_t *w, uint32_t seq, const uint8_t *target_uid, bool suspect,
                        uint32_t inc);
void ukko_wire_put_indirect(ukko_wire_w_t *w, uint32_t seq, const cluster__addr_t *target,
                            const uint8_t *uid, bool nack);
void ukko_wire_put_ack(ukko_wire_w_t *w, uint8_t type, uint32_t seq);
/* ALIVE or STATE; roles "a,b" (NULL: none). */
void ukko_wire_put_node(ukko_wire_w_t *w, uint8_t type, const cluster__addr_t *a,
                        const uint8_t *uid, uint32_t inc, uint8_t status, int64_t started_ms,
                        const char *roles, uint8_t live);
/* SUSPECT or DEAD. */
void ukko_wire_put_accuse(ukko_wire_w_t *w, uint8_t type, const cluster__addr_t *a,
                          const uint8_t *uid, uint32_t inc, const cluster__addr_t *from);
/* Bytes an ALIVE/STATE of these roles takes, message header included. */
size_t ukko_wire_node_size(const char *roles);

/* Decodes the header at the start of a body. 0 or UKKO_EPROTO. */
int ukko_wire_decode_header(const uint8_t *b, size_t n, ukko_wire_hdr_t *h);
/* Iterates the messages after the header: *off starts at
 * sizeof(ukko_wire_header_t). Returns 1 with *m filled, 0 at the end, or
 * UKKO_EPROTO on a malformed message (the rest of the body is then ignored).
 * Unknown types are skipped (returned with m->type as read, fields zero).
 * roles_buf (at least CLUSTER__MAX_ROLES * (CLUSTER__MAX_ROLE_LEN + 1)
 * bytes) holds m->roles until the next call. */
int ukko_wire_next(const uint8_t *b, size_t n, size_t *off, ukko_wire_msg_t *m,
                   char *roles_buf, size_t roles_cap);
#define UKKO_WIRE_ROLES_BUF (CLUSTER__MAX_ROLES * (CLUSTER__MAX_ROLE_LEN + 1))

/* ============================================================= keyring */

#define CLUSTER__KEY_LEN 32
#define CLUSTER__MAX_KEYS 16
#define CLUSTER__MAX_KEYRING_BYTES 65536
/* Envelope + tag: what sealing adds to a body. */
#define UKKO_WIRE_SEAL_OVERHEAD (sizeof(ukko_wire_envelope_t) + UKKO_WIRE_TAG_LEN)

/* Keys for AES-256-GCM: keys[0] seals, every key is tried to open. Caller's
 * storage; one thread. */
typedef struct cluster__keyring {
    uint8_t keys[CLUSTER__MAX_KEYS][CLUSTER__KEY_LEN];
    size_t nkeys;
    bool insecure; /* no keys: bodies travel in the clear */
} cluster__keyring_t;

/* Parses a keyring file's text (a JSON list of base64 32-byte keys, the first
 * the primary). On error writes why (naming the entry) and returns
 * UKKO_EINVAL; kr is left unchanged. */
int cluster__keyring_parse(cluster__keyring_t *kr, const char *text, size_t len, char *why,
                           size_t whylen);
/* Reads and parses the file at path (capped at CLUSTER__MAX_KEYRING_BYTES). */
int cluster__keyring_load(cluster__keyring_t *kr, const char *path, char *why, size_t whylen);
/* Writes envelope + sealed body into out (cap outcap); *outlen is set.
 * name is the cluster name (associated data). UKKO_E2BIG when it won't fit. */
int cluster__seal(const cluster__keyring_t *kr, const char *name, const uint8_t *body,
                  size_t len, uint8_t *out, size_t outcap, size_t *outlen);
/* Checks and opens a packet into out (at least len bytes). Returns the body
 * length, or UKKO_EPROTO (bad envelope or version, or sealing that does not
 * match this node's mode) or UKKO_EINVAL (no key opens it). */
int cluster__open(const cluster__keyring_t *kr, const char *name, const uint8_t *pkt, size_t len,
                  uint8_t *out, size_t outcap);

/* ========================================================== suspicion */

/* One suspicion of one member (Lifeguard): its timeout starts at max and
 * falls towards min as independent confirmations arrive (k of them reach
 * min), log-scaled as in the paper. Caller's storage. */
#define CLUSTER__MAX_CONFIRMERS 8
typedef struct cluster__suspicion {
    int64_t start_ms, min_ms, max_ms;
    uint32_t k, n;
    uint32_t confirmers[CLUSTER__MAX_CONFIRMERS]; /* address ids, the first the accuser */
    uint32_t nconfirmers;
} cluster__suspicion_t;

void cluster__suspicion_init(cluster__suspicion_t *s, uint32_t from, uint32_t k, int64_t min_ms,
                             int64_t max_ms, int64_t now_ms);
/* Counts a confirmation by from; true when it was new. */
bool cluster__suspicion_confirm(cluster__suspicion_t *s, uint32_t from);
/* The timeout for n confirmations out of k wanted (never below min). */
int64_t cluster__suspicion_timeout(uint32_t n, uint32_t k, int64_t min_ms, int64_t max_ms);
/* When the member is to be declared dead. */
int64_t cluster__suspicion_deadline(const cluster__suspicion_t *s);
/* The shortest timeout for a cluster of n members: base scaled by
 * max(1, log10(n) / 3), so 4 s holds up to 1,000 members and grows gently
 * beyond, as the time for a refutation to spread grows with log n. */
int64_t cluster__suspicion_min(int64_t base_ms, size_t n);

/* ===================================================== local health */

/* Lifeguard's local-health multiplier: 0 is healthy; each missed nack or
 * refuted suspicion raises it, each good probe lowers it; probe interval
 * and timeout are scaled by (score + 1). */
typedef struct cluster__awareness {
    int score, max;
} cluster__awareness_t;

void cluster__awareness_init(cluster__awareness_t *a, int max);
void cluster__awareness_apply(cluster__awareness_t *a, int delta);
int64_t cluster__awareness_scale(const cluster__awareness_t *a, int64_t ms);

/* ================================================ split-brain resolver */

/* Pekko's strategies (cluster.split-brain-resolver.active-strategy). */
enum {
    CLUSTER__SBR_KEEP_MAJORITY = 0,
    CLUSTER__SBR_STATIC_QUORUM = 1,
    CLUSTER__SBR_KEEP_OLDEST = 2,
    CLUSTER__SBR_DOWN_ALL_NODES = 3 /* "down-all" (Pekko's DownAllNodes) */
};

typedef struct cluster__sbr_params {
    int strategy;
    int64_t stable_after_ms;
    int64_t down_all_when_unstable_ms; /* 0: off */
    int64_t quorum_size;               /* static-quorum */
    bool down_if_alone;                /* keep-oldest */
    char role[CLUSTER__MAX_ROLE_LEN + 1]; /* the active strategy's role; "" = all */
} cluster__sbr_params_t;

/* One member as the decision sees it. */
typedef struct cluster__sbr_member {
    const cluster__addr_t *addr;
    int64_t started_ms; /* process start: the oldest started first */
    uint8_t status;     /* ukko_member_status_t */
    bool unreachable;   /* suspected by this side (never this node itself) */
    bool has_role;      /* carries the strategy's role (true when none is set) */
} cluster__sbr_member_t;

typedef enum {
    CLUSTER__SBR_NONE = 0,
    CLUSTER__SBR_DOWN_UNREACHABLE = 1, /* this side stays, the unreachable go */
    CLUSTER__SBR_DOWN_REACHABLE = 2,   /* this side downs itself */
    CLUSTER__SBR_DOWN_ALL = 3
} cluster__sbr_decision_t;

void cluster__sbr_params_default(cluster__sbr_params_t *p);
/* Checks the settings that depend on each other (static-quorum needs a
 * quorum-size); on error writes a message naming the key and returns
 * UKKO_EINVAL. Then fills p. */
int cluster__sbr_params_from_config(cluster__sbr_params_t *p, const ukko_cluster_sbr_config_t *c,
                                    char *why, size_t whylen);
/* The decision of the strategy for the view v[0..n) of one side (members of
 * every status; Down, Exiting, Removed ones are ignored), as Pekko's
 * DowningStrategy takes it, with why (for logs and /ready) written to why.
 * Pure: the same view gives the same decision on every node. */
cluster__sbr_decision_t cluster__sbr_decide(const cluster__sbr_params_t *p,
                                            const cluster__sbr_member_t *v, size_t n, char *why,
                                            size_t whylen);
/* Whether the side of the view v[0..n) goes (down-reachable or down-all)
 * both with member i reachable and with it unreachable: then i leaving the
 * side (an exit, a cut inside the side) leaves the decision as it was, and
 * does not restart stable-after. Pure; v is left as it was given. */
bool cluster__sbr_goes_either_way(const cluster__sbr_params_t *p, cluster__sbr_member_t *v,
                                  size_t n, size_t i);
/* cluster.sharding.down-removal-margin in milliseconds: the configured
 * duration, or for "auto" the longer of the resolver's stable-after and its
 * down-all-when-unstable plus 2.5 s (docs/sharding.md says why). */
int64_t cluster__down_removal_margin_ms(const ukko_cluster_config_t *cc);
const char *cluster__sbr_decision_name(cluster__sbr_decision_t d);
const char *cluster__sbr_strategy_name(int strategy);
/* Registers the cluster.split-brain-resolver.* keys into cc->sbr. */
int cluster__sbr_config_register(ukko_config_t *cfg, ukko_cluster_config_t *cc);

/* ====================================================== membership core */

typedef struct cluster__mship cluster__mship_t;

/* What the core needs from the world; the real node and the simulator each
 * provide one. Every callback gets ud. */
typedef struct cluster__env {
    void *ud;
    int64_t (*now)(void *ud);                    /* monotonic ms */
    int64_t (*wall)(void *ud);                   /* wall-clock ms (start time) */
    void (*random)(void *ud, void *p, size_t n); /* uids and protocol choices */
    /* Sends one gossip body (the transport seals it). */
    void (*send)(void *ud, const cluster__addr_t *to, const uint8_t *body, size_t n);
    /* Starts a state sync: the reply comes to cluster__mship_sync_reply (or
     * _sync_failed); the core never has two with one peer. */
    void (*sync)(void *ud, const cluster__addr_t *to, const uint8_t *req, size_t n);
    /* A member's status or liveness changed (for logs, metrics, the sim). */
    void (*changed)(void *ud, uint32_t ident, int old_status, int old_live, int status,
                    int live);
} cluster__env_t;

/* The protocol settings the core uses (taken from ukko_cluster_config_t). */
typedef struct cluster__params {
    int64_t probe_interval_ms, probe_timeout_ms;
    int indirect_checks;
    int64_t gossip_interval_ms;
    int gossip_nodes;
    int retransmit_mult;
    int64_t suspicion_timeout_ms;
    int suspicion_max_mult;
    int awareness_max;
    int64_t loop_lag_tolerance_ms;
    int64_t sync_interval_ms;
    int64_t join_retry_interval_ms;
    int64_t weakly_up_after_ms;
    int64_t removed_after_ms;
    size_t max_members;
    size_t mtu;             /* sealed packet size cap */
    size_t max_sync_bytes;  /* sealed frame size cap */
    cluster__sbr_params_t sbr;
} cluster__params_t;

void cluster__params_from_config(cluster__params_t *p, const ukko_cluster_config_t *cc);
void cluster__params_default(cluster__params_t *p);

/* Counters (read by metrics and the sim). */
typedef struct cluster__stats {
    uint64_t pkts_out, bytes_out, pkts_in, bytes_in;
    uint64_t drop_auth, drop_decode, drop_oversize;
    uint64_t suspicions, deaths, refutes, stalls, replaced;
    uint64_t syncs, syncs_same, syncs_failed, refused;
} cluster__stats_t;

/* A member as the core holds it (see membership.c). */
typedef struct cluster__member {
    uint32_t ident;
    uint32_t inc;
    uint8_t status, live, tx;
    uint8_t flags;
    uint32_t qprev, qnext; /* broadcast queue, by address id */
    uint32_t susp;         /* suspicion slot + 1, or 0 */
    uint32_t changed_ds;   /* deciseconds since the core's start, of the last change */
    uint32_t heard_ds;     /* same clock: the last packet from it first hand, or refutation */
    uint64_t digest;       /* the view digest it last reported */
} cluster__member_t;

/* Creates the core. ids is not owned (the sim shares one); roles is "a,b"
 * or NULL; seeds (may be NULL) are the seed nodes in order. */
cluster__mship_t *cluster__mship_new(const cluster__params_t *p, const cluster__env_t *env,
                                     cluster__ids_t *ids, const cluster__addr_t *self,
                                     const char *roles, const cluster__addr_t *seeds,
                                     size_t nseeds);
void cluster__mship_free(cluster__mship_t *m);
/* Begins: joins through the seeds, or forms the cluster. */
void cluster__mship_start(cluster__mship_t *m);
/* Runs whatever is due; returns when to call again (monotonic ms). */
int64_t cluster__mship_tick(cluster__mship_t *m);
/* The earliest time anything is due (after a receive, re-arm to this). */
int64_t cluster__mship_next(const cluster__mship_t *m);
/* A gossip body arrived (already opened). */
void cluster__mship_recv(cluster__mship_t *m, const uint8_t *body, size_t n);
/* Serves a sync request body; writes the reply body into out. */
void cluster__mship_sync_serve(cluster__mship_t *m, const uint8_t *req, size_t n,
                               ukko_buf_t *out);
/* The reply to our sync arrived; when the peer wants ours, writes the push
 * body into push (left empty otherwise). */
void cluster__mship_sync_reply(cluster__mship_t *m, const cluster__addr_t *peer,
                               const uint8_t *body, size_t n, ukko_buf_t *push);
/* A pushed state arrived on a served sync. */
void cluster__mship_sync_push(cluster__mship_t *m, const uint8_t *body, size_t n);
/* Our sync failed; refused: the peer's kernel refused the connection (no
 * process listens there), a strong sign the member is gone. */
void cluster__mship_sync_failed(cluster__mship_t *m, const cluster__addr_t *peer, bool refused);
/* The network said a packet to peer could not be delivered (ICMP port
 * unreachable): the core checks it over the stream transport. */
void cluster__mship_unreachable(cluster__mship_t *m, const cluster__addr_t *peer);
/* The members this node watches over an idle TCP connection (whose close
 * tells at once that their process died): the k that follow it in address
 * order. Writes up to k address ids; returns how many. */
size_t cluster__mship_watch_targets(const cluster__mship_t *m, uint32_t *addr_ids, size_t k);
/* Announces a leave (self Exiting) and queues it for gossip: the last step
 * of a leave, or all of it when the leader did not act in time. */
void cluster__mship_leave(cluster__mship_t *m);

/* ---- bootstrap and leave (issue 5): joining through seeds found late, and
 * the leader-coordinated leave. */

/* Begins without forming or joining: bootstrap calls _join or _form later. */
void cluster__mship_start_wait(cluster__mship_t *m);
/* Joins through seeds (replacing any earlier ones); never forms. Returns 0,
 * or UKKO_ENOMEM. No-op once in the cluster. */
int cluster__mship_join(cluster__mship_t *m, const cluster__addr_t *seeds, size_t nseeds);
/* Forms a new cluster of this node alone (Up). No-op once in the cluster. */
void cluster__mship_form(cluster__mship_t *m);
/* Self Up/WeaklyUp/Joining -> Leaving, told to the members first hand: the
 * leader moves it to Exiting once every member has seen it (Pekko's leave). */
void cluster__mship_leaving(cluster__mship_t *m);
/* The last words of a node that leaves: its Exiting and its removal, sent
 * first hand to every member (in that order, in one packet each), so they
 * list it Removed at once instead of finding it gone. */
void cluster__mship_farewell(cluster__mship_t *m);
/* An operator's Leave of member a (PUT /cluster/members/{a}): it becomes
 * Leaving, is told so, and leaves. 0, UKKO_ENOENT (no such member) or
 * UKKO_EINVAL (already leaving or out). For this node itself, use
 * cluster__mship_leaving. */
int cluster__mship_op_leave(cluster__mship_t *m, const cluster__addr_t *a);
/* An operator's Down of member a (this node included): Down at once, told
 * to every member. 0, UKKO_ENOENT or UKKO_EINVAL (already Down). */
int cluster__mship_op_down(cluster__mship_t *m, const cluster__addr_t *a);
/* Records n bytes received that failed before the core (auth, decode). */
cluster__stats_t *cluster__mship_stats(cluster__mship_t *m);

/* Read access for routes, metrics, tests and the sim. */
uint32_t cluster__mship_self(const cluster__mship_t *m); /* ident */
int cluster__mship_self_status(const cluster__mship_t *m);
bool cluster__mship_in_cluster(const cluster__mship_t *m);
size_t cluster__mship_count(const cluster__mship_t *m);
const cluster__member_t *cluster__mship_at(const cluster__mship_t *m, size_t i);
const cluster__member_t *cluster__mship_find(const cluster__mship_t *m, const cluster__addr_t *a);
const cluster__suspicion_t *cluster__mship_suspicion(const cluster__mship_t *m,
                                                    const cluster__member_t *mem);
uint64_t cluster__mship_digest(const cluster__mship_t *m);
/* True when every member in the cluster (Joining to Exiting), this node
 * aside, is reachable and last reported this node's view digest: the
 * convergence the leader waits for before it moves members on. */
bool cluster__mship_converged(const cluster__mship_t *m);
/* Counts the changes of the digests members reported: convergence can only
 * have changed when this or a member's status or reachability did. */
uint64_t cluster__mship_view_seq(const cluster__mship_t *m);
int cluster__mship_awareness(const cluster__mship_t *m);
/* The leader (lowest address among reachable Up/Leaving members, else among
 * the reachable Joining ones) and the oldest Up member: ident or UINT32_MAX. */
uint32_t cluster__mship_leader(const cluster__mship_t *m);
uint32_t cluster__mship_oldest(const cluster__mship_t *m, const char *role);
cluster__ids_t *cluster__mship_ids(const cluster__mship_t *m);
uint32_t cluster__mship_incarnation(const cluster__mship_t *m);

/* The split-brain resolver of the core (sbr.c). Why this node downed
 * itself, or NULL when it did not; and its decisions so far, by
 * cluster__sbr_decision_t (1..3; [0] counts downs for instability). */
const char *cluster__mship_down_reason(const cluster__mship_t *m);
const uint64_t *cluster__mship_sbr_decisions(const cluster__mship_t *m);
/* Members (self included) this node downed by a resolver decision. */
uint64_t cluster__mship_sbr_downed(const cluster__mship_t *m);
/* Members of m this node counts as unreachable now (resolver's count). */
size_t cluster__mship_sbr_unreachable(const cluster__mship_t *m);

/* Builds a full-state body (kind SYNC_STATE) of m into out: for tests and
 * the simulator's prefilled clusters. */
void cluster__mship_state_body(cluster__mship_t *m, uint8_t kind, uint8_t flags, ukko_buf_t *out);
/* Makes m a member holding the state in body (a STATE body) with nothing
 * queued to spread: how the simulator starts from a converged cluster. */
void cluster__mship_prefill(cluster__mship_t *m, const uint8_t *body, size_t n);

/* ================================================== membership events */

/* The subscribers of one membership core and the changes not yet delivered
 * to them (events.c). The real node feeds it from its env.changed and
 * flushes before its loop sleeps; the simulator's tests do the same from
 * their observer and after each step. cluster_name is not copied. */
typedef struct cluster__events cluster__events_t;

cluster__events_t *cluster__events_new(cluster__mship_t *m, const char *cluster_name,
                                       size_t max_queue);
void cluster__events_free(cluster__events_t *ev);
/* A member changed (the core's changed callback): queues its events. */
void cluster__events_changed(cluster__events_t *ev, uint32_t ident, int old_status, int old_live,
                             int status, int live);
/* True when a flush has something to deliver or to look at. */
bool cluster__events_pending(const cluster__events_t *ev);
/* Delivers what is queued, then the convergence signal when the view has
 * just converged. Never inside the core's own call chain. */
void cluster__events_flush(cluster__events_t *ev);
/* Adds a subscriber and delivers its snapshot at once. */
int cluster__events_subscribe(cluster__events_t *ev, ukko_cluster_event_fn fn, void *ud,
                              ukko_cluster_sub_t **out);
void cluster__events_unsubscribe(cluster__events_t *ev, ukko_cluster_sub_t *sub);
bool cluster__events_converged(const cluster__events_t *ev);

/* ====================================================== routes, metrics */

/* "ukko://name@host:port" of an identity. */
void cluster__node_name(const char *cluster_name, const cluster__ids_t *ids, uint32_t ident,
                        char *out, size_t outlen);
void cluster__uid_hex(const uint8_t *uid, char *out /* 33 */);
int cluster__routes_register(ukko_cluster_t *c, ukko_http_server_t *srv);
/* `ukko members|leave|down` (ctl.c): runs command against the node at
 * base_url ("http://127.0.0.1:8558"); operand is the member address for
 * leave/down; token_path (may be NULL) holds the bearer token for
 * operations. Prints the result on stdout, errors on stderr; returns the
 * exit code (0, 1, 2). Main thread, outside any node. */
int cluster__ctl_run(const char *command, const char *operand, const char *base_url,
                     const char *token_path);
void cluster__metrics(ukko_buf_t *out, void *ud);
/* The resolver's families in /metrics (sbr.c). */
void cluster__sbr_metrics(ukko_buf_t *out, const cluster__mship_t *m);
cluster__mship_t *cluster__mship_of(ukko_cluster_t *c);
const char *cluster__name_of(const ukko_cluster_t *c);
uint64_t cluster__keyring_reloads(const ukko_cluster_t *c);

#endif /* UKKO_CLUSTER_INTERNAL_H */
