/* sharding_wire.c: the frames of cluster sharding (shard tables, hand-off,
 * reports, entity tells) and Kafka's murmur2, which maps an entity id to
 * its shard. Any thread (no state). Invariant: the decoder reads nothing
 * past n, checks every count against the bytes before anyone iterates it,
 * and accepts only names, ids and sizes within the caps of
 * sharding_internal.h. */
#include "sharding_internal.h"

#include <string.h>

/* ------------------------------------------------------------ murmur2 */

/* Kafka's Utils.murmur2 (the Java client's default partitioner): the
 * 32-bit MurmurHash2 with seed 0x9747b28c over little-endian 4-byte words.
 * Written here rather than linking librdkafka into cluster/ for its
 * rd_kafka_msg_partitioner_murmur2: cluster/ knows shards, not Kafka, and
 * the unit test checks both against Kafka's own test vectors. */
int32_t sh_murmur2(const void *data, size_t len)
{
    const uint8_t *p = data;
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t words = len / 4;
    for (size_t i = 0; i < words; i++) {
        const uint8_t *q = p + i * 4;
        uint32_t k = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                     (uint32_t)q[3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = p + words * 4;
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= tail[0];
        h *= m;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int32_t ukko_shard_of(const void *entity_id, size_t len, int32_t shards)
{
    if (shards <= 0)
        return 0;
    uint32_t h = (uint32_t)sh_murmur2(entity_id, len) & 0x7fffffffu;
    return (int32_t)(h % (uint32_t)shards);
}

/* ------------------------------------------------------------ writing */

void sh_put_u8(ukko_buf_t *out, uint8_t v)
{
    (void)ukko_buf_append(out, &v, 1);
}

void sh_put_u16(ukko_buf_t *out, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    (void)ukko_buf_append(out, b, 2);
}

void sh_put_u32(ukko_buf_t *out, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    (void)ukko_buf_append(out, b, 4);
}

void sh_put_u64(ukko_buf_t *out, uint64_t v)
{
    sh_put_u32(out, (uint32_t)(v >> 32));
    sh_put_u32(out, (uint32_t)v);
}

void sh_put_name(ukko_buf_t *out, const char *s)
{
    size_t n = strlen(s);
    if (n > SH_MAX_NAME)
        n = SH_MAX_NAME;
    sh_put_u8(out, (uint8_t)n);
    (void)ukko_buf_append(out, s, n);
}

void sh_put_node(ukko_buf_t *out, const sh_node_t *n)
{
    (void)ukko_buf_append(out, n->addr.ip, 16);
    sh_put_u16(out, n->addr.port);
    (void)ukko_buf_append(out, n->uid, CLUSTER__UID_LEN);
}

void sh_put_header(ukko_buf_t *out, uint8_t kind, const sh_node_t *from, uint64_t digest)
{
    uint8_t hb[sizeof(ukko_wire_header_t)];
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, hb, sizeof(hb));
    ukko_wire_hdr_t h;
    memset(&h, 0, sizeof(h));
    h.kind = kind;
    h.flags = UKKO_WIRE_H_MEMBER;
    h.from = from->addr;
    memcpy(h.uid, from->uid, CLUSTER__UID_LEN);
    h.digest = digest;
    ukko_wire_put_header(&w, &h);
    (void)ukko_buf_append(out, hb, w.len);
}

int sh_put_tell(ukko_buf_t *out, const sh_node_t *from, const char *type, int32_t shard,
                uint8_t hop, uint32_t msg_type, const char *id, size_t id_len,
                const char *traceparent, const void *data, size_t len)
{
    size_t tp = traceparent ? strlen(traceparent) : 0;
    if (id_len > SH_MAX_ID || tp > SH_TRACEPARENT_LEN || len > UINT32_MAX)
        return UKKO_EINVAL;
    size_t before = out->len;
    sh_put_header(out, UKKO_WIRE_SH_TELL, from, 0);
    sh_put_name(out, type);
    sh_put_u32(out, (uint32_t)shard);
    sh_put_u8(out, hop);
    sh_put_u32(out, msg_type);
    sh_put_u16(out, (uint16_t)id_len);
    (void)ukko_buf_append(out, id, id_len);
    sh_put_u8(out, (uint8_t)tp);
    (void)ukko_buf_append(out, traceparent ? traceparent : "", tp);
    sh_put_u32(out, (uint32_t)len);
    int rc = ukko_buf_append(out, data, len);
    size_t want = before + sizeof(ukko_wire_header_t) + 1 + strlen(type) + 4 + 1 + 4 + 2 +
                  id_len + 1 + tp + 4 + len;
    if (rc < 0 || out->len != want) {
        out->len = before; /* over the buffer's cap: nothing half written */
        return UKKO_E2BIG;
    }
    return 0;
}

/* ------------------------------------------------------------ reading */

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
    bool bad;
} rd_t;

static bool need(rd_t *r, size_t k)
{
    if (r->bad || r->n - r->off < k) {
        r->bad = true;
        return false;
    }
    return true;
}

static uint8_t get_u8(rd_t *r)
{
    return need(r, 1) ? r->p[r->off++] : 0;
}

static uint16_t get_u16(rd_t *r)
{
    if (!need(r, 2))
        return 0;
    uint16_t v = (uint16_t)(r->p[r->off] << 8 | r->p[r->off + 1]);
    r->off += 2;
    return v;
}

static uint32_t get_u32(rd_t *r)
{
    if (!need(r, 4))
        return 0;
    const uint8_t *q = r->p + r->off;
    r->off += 4;
    return (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
}

static uint64_t get_u64(rd_t *r)
{
    uint64_t hi = get_u32(r);
    return hi << 32 | get_u32(r);
}

static const uint8_t *get_bytes(rd_t *r, size_t k)
{
    if (!need(r, k))
        return NULL;
    const uint8_t *q = r->p + r->off;
    r->off += k;
    return q;
}

bool sh_type_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > SH_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-'))
            return false;
    }
    return true;
}

static void get_name(rd_t *r, char *out)
{
    uint8_t n = get_u8(r);
    const uint8_t *q = get_bytes(r, n);
    if (!q || !sh_type_name_ok((const char *)q, n)) {
        r->bad = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, q, n);
    out[n] = '\0';
}

static int32_t get_shard(rd_t *r)
{
    uint32_t s = get_u32(r);
    if (s >= SH_MAX_SHARDS)
        r->bad = true;
    return (int32_t)s;
}

int sh_decode(const uint8_t *b, size_t n, sh_frame_t *f)
{
    memset(f, 0, sizeof(*f));
    if (ukko_wire_decode_header(b, n, &f->hdr) < 0)
        return UKKO_EPROTO;
    f->kind = f->hdr.kind;
    f->shard = -1;
    rd_t r = {b, n, sizeof(ukko_wire_header_t), false};
    switch (f->kind) {
    case UKKO_WIRE_SH_TABLE:
        f->version = get_u64(&r);
        get_name(&r, f->type);
        f->nshards = get_u32(&r);
        f->nnodes = get_u16(&r);
        if (f->nshards > SH_MAX_SHARDS || f->nnodes > SH_MAX_NODES)
            r.bad = true;
        f->nodes = get_bytes(&r, (size_t)f->nnodes * SH_NODE_BYTES);
        f->owners = get_bytes(&r, (size_t)f->nshards * 3);
        for (uint32_t s = 0; !r.bad && s < f->nshards; s++) {
            uint16_t o = (uint16_t)(f->owners[s * 3] << 8 | f->owners[s * 3 + 1]);
            if (o != 0xffff && o >= f->nnodes)
                r.bad = true;
        }
        break;
    case UKKO_WIRE_SH_HANDOFF:
        get_name(&r, f->type);
        f->shard = get_shard(&r);
        f->nnodes = get_u16(&r);
        if (f->nnodes > SH_MAX_NODES)
            r.bad = true;
        f->nodes = get_bytes(&r, (size_t)f->nnodes * SH_NODE_BYTES);
        break;
    case UKKO_WIRE_SH_STOPPED:
    case UKKO_WIRE_SH_FENCE:
    case UKKO_WIRE_SH_REFUSED:
        get_name(&r, f->type);
        f->shard = get_shard(&r);
        break;
    case UKKO_WIRE_SH_REPORT_REQ:
        f->version = get_u64(&r);
        break;
    case UKKO_WIRE_SH_REPORT: {
        f->version = get_u64(&r);
        f->flags = get_u8(&r);
        f->nentries = get_u32(&r);
        if (f->nentries > (uint32_t)SH_MAX_TYPES * SH_MAX_SHARDS)
            r.bad = true;
        size_t start = r.off;
        /* Walk every entry now, so iterating later cannot fail. */
        for (uint32_t i = 0; !r.bad && i < f->nentries; i++) {
            char t[SH_MAX_NAME + 1];
            get_name(&r, t);
            (void)get_shard(&r);
            uint8_t st = get_u8(&r);
            if (st != SH_RUNNING && st != SH_STOPPING)
                r.bad = true;
        }
        f->entries = b + start;
        f->entries_len = r.off - start;
        break;
    }
    case UKKO_WIRE_SH_GOING_AWAY:
        break;
    case UKKO_WIRE_SH_SEQ:
        f->version = get_u64(&r);
        if (!r.bad && n - r.off >= sizeof(ukko_wire_header_t) &&
            b[r.off] != UKKO_WIRE_SH_SEQ && b[r.off] != UKKO_WIRE_SH_ACK) {
            f->inner = b + r.off;
            f->inner_len = n - r.off;
            r.off = n;
        } else {
            r.bad = true;
        }
        break;
    case UKKO_WIRE_SH_ACK:
        f->version = get_u64(&r);
        break;
    case UKKO_WIRE_SH_TELL: {
        get_name(&r, f->type);
        f->shard = get_shard(&r);
        f->hop = get_u8(&r);
        f->msg_type = get_u32(&r);
        f->id_len = get_u16(&r);
        if (f->id_len > SH_MAX_ID)
            r.bad = true;
        f->id = (const char *)get_bytes(&r, f->id_len);
        uint8_t tp = get_u8(&r);
        if (tp > SH_TRACEPARENT_LEN)
            r.bad = true;
        const uint8_t *q = get_bytes(&r, tp);
        if (q) {
            memcpy(f->traceparent, q, tp);
            f->traceparent[tp] = '\0';
        }
        f->len = get_u32(&r);
        f->data = get_bytes(&r, f->len);
        if (f->msg_type >= UKKO_MSG_SYSTEM)
            r.bad = true;
        break;
    }
    default:
        return UKKO_EPROTO;
    }
    if (r.bad || r.off != n)
        return UKKO_EPROTO;
    return 0;
}

void sh_frame_node(const sh_frame_t *f, uint32_t i, sh_node_t *out)
{
    const uint8_t *q = f->nodes + (size_t)i * SH_NODE_BYTES;
    memcpy(out->addr.ip, q, 16);
    out->addr.port = (uint16_t)(q[16] << 8 | q[17]);
    memcpy(out->uid, q + 18, CLUSTER__UID_LEN);
}

void sh_frame_owner(const sh_frame_t *f, uint32_t s, uint16_t *owner, uint8_t *flags)
{
    const uint8_t *q = f->owners + (size_t)s * 3;
    *owner = (uint16_t)(q[0] << 8 | q[1]);
    *flags = q[2];
}

int sh_report_next(const sh_frame_t *f, size_t *off, char *type, int32_t *shard,
                   uint8_t *state)
{
    if (*off >= f->entries_len)
        return 0;
    rd_t r = {f->entries, f->entries_len, *off, false};
    get_name(&r, type);
    *shard = get_shard(&r);
    *state = get_u8(&r);
    if (r.bad)
        return 0;
    *off = r.off;
    return 1;
}
