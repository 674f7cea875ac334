/* codec.c: the gossip wire format: the header every body starts with and the
 * messages after it, with bounded writers and a strict, allocation-free
 * reader. Any thread (no state). Invariant: the reader never reads past n,
 * and a malformed message ends the body's processing without side effects
 * on what was already returned. */
#include "sharding_internal.h"

#include <string.h>

/* ----------------------------------------------------------- writing */

void ukko_wire_w_init(ukko_wire_w_t *w, uint8_t *p, size_t cap)
{
    w->p = p;
    w->len = 0;
    w->cap = cap;
    w->overflow = false;
}

static bool room(ukko_wire_w_t *w, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return false;
    }
    return true;
}

static void put_u8(ukko_wire_w_t *w, uint8_t v)
{
    if (room(w, 1))
        w->p[w->len++] = v;
}

static void put_u16(ukko_wire_w_t *w, uint16_t v)
{
    if (room(w, 2)) {
        w->p[w->len++] = (uint8_t)(v >> 8);
        w->p[w->len++] = (uint8_t)v;
    }
}

static void put_u32(ukko_wire_w_t *w, uint32_t v)
{
    if (room(w, 4))
        for (int i = 3; i >= 0; i--)
            w->p[w->len++] = (uint8_t)(v >> (8 * i));
}

static void put_u64(ukko_wire_w_t *w, uint64_t v)
{
    if (room(w, 8))
        for (int i = 7; i >= 0; i--)
            w->p[w->len++] = (uint8_t)(v >> (8 * i));
}

static void put_bytes(ukko_wire_w_t *w, const void *p, size_t n)
{
    if (room(w, n)) {
        memcpy(w->p + w->len, p, n);
        w->len += n;
    }
}

static void put_addr(ukko_wire_w_t *w, const cluster__addr_t *a)
{
    put_bytes(w, a->ip, 16);
    put_u16(w, a->port);
}

void ukko_wire_put_header(ukko_wire_w_t *w, const ukko_wire_hdr_t *h)
{
    if (!room(w, sizeof(ukko_wire_header_t)))
        return;
    put_u8(w, h->kind);
    put_u8(w, h->flags);
    put_u16(w, h->from.port);
    put_bytes(w, h->from.ip, 16);
    put_bytes(w, h->uid, CLUSTER__UID_LEN);
    put_u64(w, h->digest);
}

/* A message goes in whole or not at all: a packet stays decodable. */
static bool msg_begin(ukko_wire_w_t *w, uint8_t type, size_t body)
{
    if (w->overflow || body > 0xffff || w->cap - w->len < UKKO_WIRE_MSG_HDR + body) {
        w->overflow = true;
        return false;
    }
    put_u8(w, type);
    put_u16(w, (uint16_t)body);
    return true;
}

void ukko_wire_put_ping(ukko_wire_w_t *w, uint32_t seq, const uint8_t *target_uid, bool suspect,
                        uint32_t inc)
{
    if (!msg_begin(w, UKKO_MSG_PING, 4 + CLUSTER__UID_LEN + (suspect ? 5 : 0)))
        return;
    put_u32(w, seq);
    put_bytes(w, target_uid, CLUSTER__UID_LEN);
    if (suspect) {
        put_u32(w, inc);
        put_u8(w, 1);
    }
}

void ukko_wire_put_indirect(ukko_wire_w_t *w, uint32_t seq, const cluster__addr_t *target,
                            const uint8_t *uid, bool nack)
{
    if (!msg_begin(w, UKKO_MSG_INDIRECT, 4 + 18 + CLUSTER__UID_LEN + 1))
        return;
    put_u32(w, seq);
    put_addr(w, target);
    put_bytes(w, uid, CLUSTER__UID_LEN);
    put_u8(w, nack ? 1 : 0);
}

void ukko_wire_put_ack(ukko_wire_w_t *w, uint8_t type, uint32_t seq)
{
    if (!msg_begin(w, type, 4))
        return;
    put_u32(w, seq);
}

/* Roles travel as count, then (len, bytes); a role past the caps is cut out
 * rather than sent (config checks them, so this is only a guard). */
static size_t roles_wire_len(const char *roles, uint8_t *count)
{
    size_t n = 1;
    *count = 0;
    for (const char *p = roles; p && *p && *count < CLUSTER__MAX_ROLES;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len && len <= CLUSTER__MAX_ROLE_LEN) {
            n += 1 + len;
            (*count)++;
        }
        p = c ? c + 1 : p + len;
    }
    return n;
}

size_t ukko_wire_node_size(const char *roles)
{
    uint8_t count;
    return UKKO_WIRE_MSG_HDR + UKKO_WIRE_NODE_FIXED - 1 + roles_wire_len(roles, &count) + 1;
}

void ukko_wire_put_node(ukko_wire_w_t *w, uint8_t type, const cluster__addr_t *a,
                        const uint8_t *uid, uint32_t inc, uint8_t status, int64_t started_ms,
                        const char *roles, uint8_t live)
{
    uint8_t count;
    size_t rl = roles_wire_len(roles, &count);
    size_t body = UKKO_WIRE_NODE_FIXED - 1 + rl + (type == UKKO_MSG_STATE ? 1 : 0);
    if (!msg_begin(w, type, body))
        return;
    put_addr(w, a);
    put_bytes(w, uid, CLUSTER__UID_LEN);
    put_u32(w, inc);
    put_u8(w, status);
    put_u64(w, (uint64_t)started_ms);
    put_u8(w, count);
    uint8_t done = 0;
    for (const char *p = roles; p && *p && done < count;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len && len <= CLUSTER__MAX_ROLE_LEN) {
            put_u8(w, (uint8_t)len);
            put_bytes(w, p, len);
            done++;
        }
        p = c ? c + 1 : p + len;
    }
    if (type == UKKO_MSG_STATE)
        put_u8(w, live);
}

void ukko_wire_put_accuse(ukko_wire_w_t *w, uint8_t type, const cluster__addr_t *a,
                          const uint8_t *uid, uint32_t inc, const cluster__addr_t *from)
{
    if (!msg_begin(w, type, 18 + CLUSTER__UID_LEN + 4 + 18))
        return;
    put_addr(w, a);
    put_bytes(w, uid, CLUSTER__UID_LEN);
    put_u32(w, inc);
    put_addr(w, from);
}

/* ----------------------------------------------------------- reading */

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
    uint16_t v = (uint16_t)((r->p[r->off] << 8) | r->p[r->off + 1]);
    r->off += 2;
    return v;
}

static uint32_t get_u32(rd_t *r)
{
    if (!need(r, 4))
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | r->p[r->off++];
    return v;
}

static uint64_t get_u64(rd_t *r)
{
    if (!need(r, 8))
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | r->p[r->off++];
    return v;
}

static void get_bytes(rd_t *r, void *out, size_t k)
{
    if (need(r, k)) {
        memcpy(out, r->p + r->off, k);
        r->off += k;
    } else {
        memset(out, 0, k);
    }
}

static void get_addr(rd_t *r, cluster__addr_t *a)
{
    get_bytes(r, a->ip, 16);
    a->port = get_u16(r);
}

int ukko_wire_decode_header(const uint8_t *b, size_t n, ukko_wire_hdr_t *h)
{
    rd_t r = {b, n, 0, false};
    memset(h, 0, sizeof(*h));
    if (n < sizeof(ukko_wire_header_t))
        return UKKO_EPROTO;
    h->kind = get_u8(&r);
    h->flags = get_u8(&r);
    h->from.port = get_u16(&r);
    get_bytes(&r, h->from.ip, 16);
    get_bytes(&r, h->uid, CLUSTER__UID_LEN);
    h->digest = get_u64(&r);
    /* Membership kinds, then sharding's (sharding_internal.h) */
    if (h->kind < UKKO_WIRE_GOSSIP || (h->kind > UKKO_WIRE_WATCH && h->kind < SH_KIND_FIRST) ||
        h->kind > SH_KIND_LAST || h->from.port == 0)
        return UKKO_EPROTO;
    return 0;
}

static int read_node(rd_t *r, ukko_wire_msg_t *m, bool with_live, char *roles_buf,
                     size_t roles_cap)
{
    get_addr(r, &m->addr);
    get_bytes(r, m->uid, CLUSTER__UID_LEN);
    m->inc = get_u32(r);
    m->status = get_u8(r);
    m->started_ms = (int64_t)get_u64(r);
    uint8_t count = get_u8(r);
    if (r->bad || count > CLUSTER__MAX_ROLES || m->status > UKKO_MEMBER_REMOVED)
        return UKKO_EPROTO;
    size_t out = 0;
    for (uint8_t i = 0; i < count; i++) {
        uint8_t len = get_u8(r);
        if (r->bad || len == 0 || len > CLUSTER__MAX_ROLE_LEN || !need(r, len) ||
            out + len + 1 > roles_cap)
            return UKKO_EPROTO;
        const uint8_t *s = r->p + r->off;
        for (uint8_t k = 0; k < len; k++)
            if (s[k] == ',' || s[k] < 0x20 || s[k] > 0x7e)
                return UKKO_EPROTO; /* printable ASCII only: roles end up in JSON and logs */
        if (out)
            roles_buf[out++] = ',';
        memcpy(roles_buf + out, s, len);
        out += len;
        r->off += len;
    }
    if (roles_cap)
        roles_buf[out < roles_cap ? out : roles_cap - 1] = '\0';
    m->roles = out ? roles_buf : NULL;
    m->roles_len = out;
    if (with_live) {
        m->live = get_u8(r);
        if (m->live > CLUSTER__DEAD)
            return UKKO_EPROTO;
    }
    if (m->addr.port == 0)
        return UKKO_EPROTO;
    return r->bad ? UKKO_EPROTO : 0;
}

int ukko_wire_next(const uint8_t *b, size_t n, size_t *off, ukko_wire_msg_t *m,
                   char *roles_buf, size_t roles_cap)
{
    memset(m, 0, sizeof(*m));
    if (*off >= n)
        return 0;
    if (n - *off < UKKO_WIRE_MSG_HDR)
        return UKKO_EPROTO;
    uint8_t type = b[*off];
    size_t len = ((size_t)b[*off + 1] << 8) | b[*off + 2];
    if (n - *off - UKKO_WIRE_MSG_HDR < len)
        return UKKO_EPROTO;
    /* A message is read within its own length: a short body is an error, a
     * longer one has fields from a later version that this one ignores. */
    rd_t r = {b + *off + UKKO_WIRE_MSG_HDR, len, 0, false};
    *off += UKKO_WIRE_MSG_HDR + len;
    m->type = type;
    int rc = 0;
    switch (type) {
    case UKKO_MSG_PING:
        m->seq = get_u32(&r);
        get_bytes(&r, m->uid, CLUSTER__UID_LEN);
        if (!r.bad && len >= 4 + CLUSTER__UID_LEN + 5) {
            m->inc = get_u32(&r);
            m->suspect = get_u8(&r) != 0;
        }
        break;
    case UKKO_MSG_INDIRECT:
        m->seq = get_u32(&r);
        get_addr(&r, &m->addr);
        get_bytes(&r, m->uid, CLUSTER__UID_LEN);
        m->nack = get_u8(&r) != 0;
        if (m->addr.port == 0)
            rc = UKKO_EPROTO;
        break;
    case UKKO_MSG_ACK:
    case UKKO_MSG_NACK:
        m->seq = get_u32(&r);
        break;
    case UKKO_MSG_ALIVE:
        rc = read_node(&r, m, false, roles_buf, roles_cap);
        break;
    case UKKO_MSG_STATE:
        rc = read_node(&r, m, true, roles_buf, roles_cap);
        break;
    case UKKO_MSG_SUSPECT:
    case UKKO_MSG_DEAD:
        get_addr(&r, &m->addr);
        get_bytes(&r, m->uid, CLUSTER__UID_LEN);
        m->inc = get_u32(&r);
        get_addr(&r, &m->from);
        if (m->addr.port == 0)
            rc = UKKO_EPROTO;
        break;
    default:
        return 1; /* unknown: skipped by the caller */
    }
    if (rc < 0 || r.bad) {
        memset(m, 0, sizeof(*m));
        return UKKO_EPROTO;
    }
    return 1;
}
