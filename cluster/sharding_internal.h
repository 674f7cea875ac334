/* sharding_internal.h: the parts of cluster sharding shared between its
 * files, its unit tests and its fuzz target: the wire frames (beside state
 * sync on the node-to-node TCP transport), the shard coordinator as a pure
 * state machine with an injectable clock and outbox, and the runtime's
 * regions. Not part of the public interface. Loop thread only, except the
 * entity side of sharding_entity.c (dispatcher threads, see there). */
#ifndef UKKO_SHARDING_INTERNAL_H
#define UKKO_SHARDING_INTERNAL_H

#include "cluster_internal.h"

#define SH_MAX_TYPES 32
#define SH_MAX_SHARDS 10000
#define SH_MAX_NAME 64
#define SH_MAX_ID 1024
#define SH_MAX_NODES 1024 /* members a table or a hand-off names */
#define SH_TRACEPARENT_LEN 55
#define SH_NONE UINT32_MAX

/* ================================================================ wire */

/* Frame kinds of sharding, after the membership's (UKKO_WIRE_GOSSIP ..
 * UKKO_WIRE_WATCH): the body is the usual ukko_wire_header_t (kind, sender
 * address and uid, digest) and then the fields below, big-endian. They
 * travel sealed on a long-lived TCP connection per pair of nodes, so the
 * frames from one node to another arrive in the order sent. Strings: a
 * type name is len u8 + bytes ([a-z0-9._-], <= 64); a node is ip[16]
 * port u16 uid[16]. */
enum {
    UKKO_WIRE_SH_TABLE = 16,    /* version u64, type, nshards u32, nnodes u16, nodes,
                                 * then per shard: owner u16 (0xffff none), flags u8 */
    UKKO_WIRE_SH_HANDOFF = 17,  /* type, shard u32, nfencers u16, nodes */
    UKKO_WIRE_SH_STOPPED = 18,  /* type, shard u32 */
    UKKO_WIRE_SH_REPORT_REQ = 19, /* nonce u64 */
    UKKO_WIRE_SH_REPORT = 20,   /* nonce u64, flags u8, count u32, (type, shard u32, state u8)* */
    UKKO_WIRE_SH_GOING_AWAY = 21, /* nothing */
    UKKO_WIRE_SH_TELL = 22,     /* type, shard u32, hop u8, msg type u32, id len u16 + bytes,
                                 * traceparent len u8 + bytes, data len u32 + bytes */
    UKKO_WIRE_SH_FENCE = 23,    /* type, shard u32: "nothing more of mine for it" */
    UKKO_WIRE_SH_REFUSED = 24,  /* type, shard u32: its start hook refused it */
    /* The link layer: every frame on a link travels inside a SEQ (numbered
     * per link from 1) and stays queued until an ACK covers it, so a link
     * that breaks while both ends live loses nothing: the sender writes
     * the unacknowledged again on its next connection, the receiver drops
     * what it already had. */
    UKKO_WIRE_SH_SEQ = 25,      /* seq u64, then one whole sharding body (not SEQ or ACK) */
    UKKO_WIRE_SH_ACK = 26       /* seq u64: every SEQ up to it arrived; written back on the
                                 * link's own connection */
};
#define SH_KIND_FIRST UKKO_WIRE_SH_TABLE
#define SH_KIND_LAST UKKO_WIRE_SH_ACK
_Static_assert((int)UKKO_WIRE_WATCH < (int)SH_KIND_FIRST, "sharding kinds follow the membership's");

#define SH_NODE_BYTES (16 + 2 + CLUSTER__UID_LEN)
#define SH_TABLE_MOVING 0x01 /* the shard is being handed off: hold its tells */
#define SH_REPORT_SEEN_TABLE 0x01 /* the region has obeyed a table before */
#define SH_REPORT_GOING_AWAY 0x02
enum { SH_RUNNING = 1, SH_STOPPING = 2 }; /* states in a report */

typedef struct sh_node {
    cluster__addr_t addr;
    uint8_t uid[CLUSTER__UID_LEN];
} sh_node_t;

/* A decoded frame; the pointers point into the body it was decoded from. */
typedef struct sh_frame {
    ukko_wire_hdr_t hdr;
    uint8_t kind;
    char type[SH_MAX_NAME + 1];
    int32_t shard;
    uint64_t version; /* TABLE: version; REPORT_REQ, REPORT: nonce */
    uint8_t flags;    /* REPORT */
    uint32_t nshards; /* TABLE */
    uint32_t nnodes;  /* TABLE: nodes; HANDOFF: fencers */
    const uint8_t *nodes;
    const uint8_t *owners; /* TABLE: 3 bytes per shard */
    uint32_t nentries;     /* REPORT */
    const uint8_t *entries;
    size_t entries_len;
    uint8_t hop;           /* TELL */
    uint32_t msg_type;
    const char *id;
    uint16_t id_len;
    char traceparent[SH_TRACEPARENT_LEN + 1];
    const uint8_t *data;
    uint32_t len;
    const uint8_t *inner; /* SEQ: the body it carries (decode it on its own) */
    size_t inner_len;
} sh_frame_t;

/* Decodes a whole opened body; checks every field and every array entry
 * against the bytes and the caps above. 0 or UKKO_EPROTO. Any thread. */
int sh_decode(const uint8_t *b, size_t n, sh_frame_t *f);
/* The i-th node of a TABLE or HANDOFF (i < f->nnodes). */
void sh_frame_node(const sh_frame_t *f, uint32_t i, sh_node_t *out);
/* Shard s of a TABLE: owner index (0xffff none) and flags. */
void sh_frame_owner(const sh_frame_t *f, uint32_t s, uint16_t *owner, uint8_t *flags);
/* Iterates a REPORT's entries (*off from 0): 1 with one, 0 at the end. */
int sh_report_next(const sh_frame_t *f, size_t *off, char *type, int32_t *shard,
                   uint8_t *state);
bool sh_type_name_ok(const char *s, size_t n);

/* Writers: append a whole body (header first) to out. */
void sh_put_header(ukko_buf_t *out, uint8_t kind, const sh_node_t *from, uint64_t digest);
void sh_put_u8(ukko_buf_t *out, uint8_t v);
void sh_put_u16(ukko_buf_t *out, uint16_t v);
void sh_put_u32(ukko_buf_t *out, uint32_t v);
void sh_put_u64(ukko_buf_t *out, uint64_t v);
void sh_put_name(ukko_buf_t *out, const char *s);
void sh_put_node(ukko_buf_t *out, const sh_node_t *n);
int sh_put_tell(ukko_buf_t *out, const sh_node_t *from, const char *type, int32_t shard,
                uint8_t hop, uint32_t msg_type, const char *id, size_t id_len,
                const char *traceparent, const void *data, size_t len);

/* ========================================================= coordinator */

/* A member as the coordinator sees it (the runtime's view of membership). */
typedef struct shard__co_member {
    uint32_t ident;
    uint8_t status;  /* ukko_member_status_t */
    bool reachable;
    uint64_t rank;   /* stable per incarnation (the identity hash): rendezvous ties */
} shard__co_member_t;

typedef struct shard__co_params {
    int64_t down_removal_margin_ms;
    int64_t rebalance_interval_ms;
    int64_t max_simultaneous; /* rebalance hand-offs under way per type */
    int64_t handoff_timeout_ms; /* resend HANDOFF / REPORT_REQ after this */
} shard__co_params_t;

/* What the coordinator sends; the runtime encodes and routes it (to self
 * too, but never inside the coordinator's own call chain). */
typedef struct shard__co_env {
    void *ud;
    int64_t (*now)(void *ud);
    /* The table of type index t, to member `to` (read it with shard__co_*). */
    void (*send_table)(void *ud, uint32_t to, size_t t);
    /* HANDOFF of shard s of type t to its owner `to`; the fencers are the
     * members shard__co_fencers lists. */
    void (*send_handoff)(void *ud, uint32_t to, size_t t, int32_t s);
    void (*send_report_req)(void *ud, uint32_t to, uint64_t nonce);
    /* A shard changed hands (for the log line and metrics): from/to may be
     * SH_NONE; handoff_ms is -1 when no hand-off was involved. */
    void (*moved)(void *ud, size_t t, int32_t s, uint32_t from, uint32_t to,
                  int64_t handoff_ms, const char *why);
} shard__co_env_t;

typedef struct shard__co shard__co_t;

shard__co_t *shard__co_new(const shard__co_params_t *p, const shard__co_env_t *env,
                           uint32_t self);
void shard__co_free(shard__co_t *co);
/* Adds a type (nshards 0: not known yet); returns its index or < 0. The
 * runtime adds the same types in the same order on every node. */
int shard__co_add_type(shard__co_t *co, const char *name, int32_t nshards);
int shard__co_set_shards(shard__co_t *co, size_t t, int32_t nshards);
/* The membership as this node sees it now, and whether this node is the
 * coordinator (the oldest Up or Leaving member). Becoming it starts the
 * rebuild; ceasing to be it forgets the table. */
void shard__co_view(shard__co_t *co, const shard__co_member_t *v, size_t n, bool coordinator);
/* A region's report (answer to REPORT_REQ nonce): its shards and flags. */
typedef struct shard__co_entry {
    size_t t;
    int32_t shard;
    uint8_t state; /* SH_RUNNING, SH_STOPPING */
} shard__co_entry_t;
void shard__co_report(shard__co_t *co, uint32_t from, uint64_t nonce, uint8_t flags,
                      const shard__co_entry_t *e, size_t n);
void shard__co_stopped(shard__co_t *co, uint32_t from, size_t t, int32_t s);
void shard__co_refused(shard__co_t *co, uint32_t from, size_t t, int32_t s);
void shard__co_going_away(shard__co_t *co, uint32_t from);
/* Runs what is due; returns when to call again (ms of env.now). */
int64_t shard__co_tick(shard__co_t *co);

/* Reading the state (tables, tests, routes). */
bool shard__co_active(const shard__co_t *co);    /* coordinator, table rebuilt */
bool shard__co_rebuilding(const shard__co_t *co);
size_t shard__co_types(const shard__co_t *co);
const char *shard__co_type_name(const shard__co_t *co, size_t t);
int32_t shard__co_nshards(const shard__co_t *co, size_t t);
uint64_t shard__co_version(const shard__co_t *co, size_t t);
/* Owner of shard s (SH_NONE) and whether it is being handed off. */
uint32_t shard__co_owner(const shard__co_t *co, size_t t, int32_t s, bool *moving);
/* Members a hand-off waits on for fences: every member of the view not
 * Down (idents into out, up to cap); returns the count. */
size_t shard__co_fencers(const shard__co_t *co, uint32_t *out, size_t cap);
/* Members the table goes to (same set). */
size_t shard__co_load(const shard__co_t *co, size_t t, uint32_t ident);
uint64_t shard__co_handoffs(const shard__co_t *co);

/* Kafka's murmur2 (Utils.murmur2), as a signed 32-bit value. Any thread. */
int32_t sh_murmur2(const void *data, size_t len);

#endif
