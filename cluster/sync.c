/* sync.c: joining and full-state sync over the stream transport, digest
 * first: a request carries the sender's view digest; equal digests end the
 * exchange in one small reply, different ones bring the full states both
 * ways. A refused connection to a member is the strong signal that its
 * process is gone. One thread per instance. */
#include "mship.h"

#include <string.h>

bool ms__sync_inflight(const cluster__mship_t *m, uint32_t addr_id)
{
    for (size_t i = 0; i < m->ninflight; i++)
        if (m->inflight[i] == addr_id)
            return true;
    return false;
}

static bool take_inflight(cluster__mship_t *m, uint32_t addr_id, bool *join)
{
    for (size_t i = 0; i < m->ninflight; i++) {
        if (m->inflight[i] != addr_id)
            continue;
        *join = m->inflight_join[i];
        m->ninflight--;
        m->inflight[i] = m->inflight[m->ninflight];
        m->inflight_join[i] = m->inflight_join[m->ninflight];
        return true;
    }
    return false;
}

/* A full state: every member we hold, Down ones included. */
static void state_body(cluster__mship_t *m, uint8_t kind, uint8_t flags, ukko_buf_t *out)
{
    ukko_buf_reset(out);
    size_t cap = m->p.max_sync_bytes > UKKO_WIRE_SEAL_OVERHEAD
                     ? m->p.max_sync_bytes - UKKO_WIRE_SEAL_OVERHEAD
                     : 0;
    uint8_t hdr[sizeof(ukko_wire_header_t)];
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, hdr, sizeof(hdr));
    ms__header(m, &w, kind, flags);
    if (ukko_buf_append(out, hdr, w.len) < 0)
        return;
    uint8_t item[UKKO_WIRE_MSG_HDR + UKKO_WIRE_NODE_FIXED + UKKO_WIRE_ROLES_BUF + 16];
    for (size_t i = 0; i < m->nmem; i++) {
        ukko_wire_w_init(&w, item, sizeof(item));
        ms__encode_member(m, &w, &m->mem[i], UKKO_MSG_STATE);
        if (w.overflow || out->len + w.len > cap || ukko_buf_append(out, item, w.len) < 0) {
            ukko_log(UKKO_LOG_WARN, "cluster",
                     "full state larger than cluster.max-sync-bytes: sent in part (raise it)");
            return;
        }
    }
}

void cluster__mship_state_body(cluster__mship_t *m, uint8_t kind, uint8_t flags, ukko_buf_t *out)
{
    state_body(m, kind, flags, out);
}

void ms__sync_start(cluster__mship_t *m, uint32_t addr_id, bool join)
{
    if (m->ninflight == MS_MAX_INFLIGHT || ms__sync_inflight(m, addr_id))
        return;
    m->inflight[m->ninflight] = addr_id;
    m->inflight_join[m->ninflight] = join;
    m->ninflight++;
    m->st.syncs++;
    ukko_buf_t req;
    ukko_buf_init(&req, m->p.max_sync_bytes);
    if (join) {
        /* A joiner sends itself along: the member it asks adds it at once. */
        state_body(m, UKKO_WIRE_SYNC_REQ, UKKO_WIRE_H_JOIN, &req);
    } else {
        uint8_t hdr[sizeof(ukko_wire_header_t)];
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, hdr, sizeof(hdr));
        ms__header(m, &w, UKKO_WIRE_SYNC_REQ, 0);
        ukko_buf_append(&req, hdr, w.len);
    }
    m->env.sync(m->env.ud, cluster__ids_addr_at(m->ids, addr_id), (const uint8_t *)req.data,
                req.len);
    ukko_buf_destroy(&req);
}

static void join_round_done(cluster__mship_t *m);

void ms__join_tick(cluster__mship_t *m, int64_t now)
{
    if (now < m->next_join || m->join_round_pending > 0)
        return;
    m->next_join = now + m->p.join_retry_interval_ms;
    m->join_round_ok = false;
    /* One guard count keeps the round open while requests go out: a seed
     * that refuses at once must not end it before the others were asked. */
    m->join_round_pending = 1;
    for (size_t i = 0; i < m->nseeds && !m->in_cluster; i++) {
        uint32_t a = cluster__ids_addr(m->ids, &m->seeds[i]);
        if (a == UINT32_MAX || a == m->self_addr || ms__sync_inflight(m, a) ||
            m->ninflight == MS_MAX_INFLIGHT)
            continue;
        m->join_round_pending++;
        ms__sync_start(m, a, true);
    }
    if (--m->join_round_pending == 0)
        join_round_done(m);
}

/* A join round ended without an answer from a member. */
static void join_round_done(cluster__mship_t *m)
{
    if (m->in_cluster || m->join_round_ok)
        return;
    if (m->self_first_seed) {
        ms__form(m);
        return;
    }
    int64_t now = ms__now(m);
    if (now - m->last_join_log >= 10000) {
        m->last_join_log = now;
        ukko_log(UKKO_LOG_WARN, "cluster",
                 "no seed node answered as a member yet; retrying (the first seed node "
                 "forms the cluster when it finds none: check cluster.seed-nodes)");
    }
}

void ms__sync_tick(cluster__mship_t *m, int64_t now)
{
    int64_t jitter = m->p.sync_interval_ms / 4;
    m->next_sync = now + m->p.sync_interval_ms - jitter +
                   (jitter ? (int64_t)(ms__rand(m) % (uint64_t)(2 * jitter)) : 0);
    for (size_t tries = 0; tries < 8 && m->nmem > 1; tries++) {
        cluster__member_t *mem = &m->mem[ms__rand(m) % m->nmem];
        if (ms__usable(m, mem) && mem->live == CLUSTER__ALIVE) {
            ms__sync_start(m, ms__ident(m, mem)->addr, false);
            return;
        }
    }
}

/* Merges the STATE entries of a body (after its header). */
static void merge_state(cluster__mship_t *m, const uint8_t *b, size_t n, const cluster__addr_t *peer)
{
    char roles[UKKO_WIRE_ROLES_BUF];
    size_t off = sizeof(ukko_wire_header_t);
    ukko_wire_msg_t msg;
    int rc;
    while ((rc = ukko_wire_next(b, n, &off, &msg, roles, sizeof(roles))) > 0) {
        if (msg.type != UKKO_MSG_STATE)
            continue;
        if (msg.status >= UKKO_MEMBER_DOWN) {
            msg.from = *peer;
            ms__apply_dead(m, &msg);
            continue;
        }
        uint8_t status = msg.status;
        ms__apply_alive(m, &msg);
        if (msg.live == CLUSTER__SUSPECT) {
            /* The peer suspects it: count the peer as one accuser. */
            msg.from = *peer;
            msg.status = status;
            ms__apply_suspect(m, &msg);
        }
    }
    if (rc < 0)
        m->st.drop_decode++;
}

static void record_digest(cluster__mship_t *m, const ukko_wire_hdr_t *h)
{
    uint32_t a = cluster__ids_addr(m->ids, &h->from);
    cluster__member_t *mem = a == UINT32_MAX ? NULL : ms__find_addr(m, a);
    if (mem && !memcmp(ms__ident(m, mem)->uid, h->uid, CLUSTER__UID_LEN)) {
        if (mem->digest != h->digest)
            m->view_seq++;
        mem->digest = h->digest;
    }
}

void cluster__mship_sync_serve(cluster__mship_t *m, const uint8_t *req, size_t n, ukko_buf_t *out)
{
    ukko_buf_reset(out);
    ukko_wire_hdr_t h;
    if (ukko_wire_decode_header(req, n, &h) < 0 || h.kind != UKKO_WIRE_SYNC_REQ) {
        m->st.drop_decode++;
        return;
    }
    m->st.bytes_in += n + UKKO_WIRE_SEAL_OVERHEAD;
    if (!m->in_cluster) {
        /* "Not a member": an empty state without the member flag. */
        uint8_t hdr[sizeof(ukko_wire_header_t)];
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, hdr, sizeof(hdr));
        ms__header(m, &w, UKKO_WIRE_SYNC_STATE, 0);
        ukko_buf_append(out, hdr, w.len);
        return;
    }
    if (h.flags & UKKO_WIRE_H_JOIN) {
        merge_state(m, req, n, &h.from);
        char a[64];
        cluster__addr_format(&h.from, a, sizeof(a));
        ukko_logf(UKKO_LOG_DEBUG, "cluster", UKKO_FIELDS(UKKO_FS("member", a)),
                  "%s asks to join", a);
    }
    record_digest(m, &h);
    if (!(h.flags & UKKO_WIRE_H_JOIN) && h.digest == m->digest) {
        uint8_t hdr[sizeof(ukko_wire_header_t)];
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, hdr, sizeof(hdr));
        ms__header(m, &w, UKKO_WIRE_SYNC_SAME, 0);
        ukko_buf_append(out, hdr, w.len);
        m->st.syncs_same++;
        return;
    }
    state_body(m, UKKO_WIRE_SYNC_STATE, 0, out);
    m->st.bytes_out += out->len + UKKO_WIRE_SEAL_OVERHEAD;
}

void cluster__mship_sync_reply(cluster__mship_t *m, const cluster__addr_t *peer,
                               const uint8_t *body, size_t n, ukko_buf_t *push)
{
    ukko_buf_reset(push);
    uint32_t a = cluster__ids_addr(m->ids, peer);
    bool join = false;
    if (a == UINT32_MAX || !take_inflight(m, a, &join))
        return;
    ukko_wire_hdr_t h;
    if (ukko_wire_decode_header(body, n, &h) < 0 ||
        (h.kind != UKKO_WIRE_SYNC_SAME && h.kind != UKKO_WIRE_SYNC_STATE)) {
        m->st.drop_decode++;
        cluster__mship_sync_failed(m, peer, false);
        return;
    }
    m->st.bytes_in += n + UKKO_WIRE_SEAL_OVERHEAD;
    if (join) {
        m->join_round_pending--;
        if (m->in_cluster) {
            /* Already joined through another seed: this state is news all
             * the same. */
            if (h.flags & UKKO_WIRE_H_MEMBER)
                merge_state(m, body, n, peer);
            return;
        }
        if (!(h.flags & UKKO_WIRE_H_MEMBER) || h.kind != UKKO_WIRE_SYNC_STATE) {
            if (m->join_round_pending == 0)
                join_round_done(m);
            return;
        }
        m->in_cluster = true;
        m->join_round_ok = true;
        m->next_probe = ms__now(m);
        merge_state(m, body, n, peer);
        record_digest(m, &h);
        char s[64];
        cluster__addr_format(peer, s, sizeof(s));
        ukko_logf(UKKO_LOG_INFO, "cluster", UKKO_FIELDS(UKKO_FS("seed", s)),
                  "joined the cluster through %s (%zu members); Joining until the leader "
                  "sees the view converge",
                  s, m->nmem);
        return;
    }
    record_digest(m, &h);
    if (h.kind == UKKO_WIRE_SYNC_SAME || !(h.flags & UKKO_WIRE_H_MEMBER) || !m->in_cluster)
        return;
    merge_state(m, body, n, peer);
    state_body(m, UKKO_WIRE_SYNC_PUSH, 0, push);
    m->st.bytes_out += push->len + UKKO_WIRE_SEAL_OVERHEAD;
}

void cluster__mship_sync_push(cluster__mship_t *m, const uint8_t *body, size_t n)
{
    ukko_wire_hdr_t h;
    if (ukko_wire_decode_header(body, n, &h) < 0 || h.kind != UKKO_WIRE_SYNC_PUSH) {
        m->st.drop_decode++;
        return;
    }
    m->st.bytes_in += n + UKKO_WIRE_SEAL_OVERHEAD;
    if (m->in_cluster && (h.flags & UKKO_WIRE_H_MEMBER))
        merge_state(m, body, n, &h.from);
}

void cluster__mship_sync_failed(cluster__mship_t *m, const cluster__addr_t *peer, bool refused)
{
    uint32_t a = cluster__ids_addr(m->ids, peer);
    bool join = false;
    if (a == UINT32_MAX || !take_inflight(m, a, &join))
        return;
    m->st.syncs_failed++;
    if (join) {
        m->join_round_pending--;
        if (m->join_round_pending == 0)
            join_round_done(m);
        return;
    }
    if (!refused)
        return;
    m->st.refused++;
    cluster__member_t *mem = ms__find_addr(m, a);
    /* Nothing listens where a member was: its process is gone. A process
     * paused (SIGSTOP) or slow still has its kernel accept, so this never
     * condemns the merely silent. A firewall that rejects rather than drops
     * refuses too, on both sides of a cut: so the verdict is the split-brain
     * resolver's, which makes it at once when this side stays. */
    if (mem && ms__usable(m, mem))
        ms__sbr_gone(m, mem);
}

void cluster__mship_unreachable(cluster__mship_t *m, const cluster__addr_t *peer)
{
    if (!m->in_cluster)
        return;
    uint32_t a = cluster__ids_addr(m->ids, peer);
    cluster__member_t *mem = a == UINT32_MAX ? NULL : ms__find_addr(m, a);
    if (!mem || !ms__usable(m, mem) || ms__sync_inflight(m, a))
        return;
    /* Port unreachable is a hint only (ICMP can be forged or stale): the
     * stream transport is asked, and only its refusal counts. */
    ms__sync_start(m, a, false);
}

void cluster__mship_prefill(cluster__mship_t *m, const uint8_t *body, size_t n)
{
    ukko_wire_hdr_t h;
    if (ukko_wire_decode_header(body, n, &h) < 0)
        return;
    m->in_cluster = true;
    merge_state(m, body, n, &h.from);
    /* A prefilled view is old news: nothing to spread. */
    for (size_t i = 0; i < m->nmem; i++)
        ms__unqueue(m, &m->mem[i]);
}
