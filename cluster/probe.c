/* probe.c: failure detection (SWIM with Lifeguard): one probe per interval
 * in a shuffled round-robin order, indirect probes through k helpers that
 * answer with an ack or a nack, the local-health score fed by missed nacks;
 * and the leader's duty of moving members from Joining to Up once every
 * member reports the same view digest. One thread per instance. */
#include "mship.h"

#include <string.h>

uint32_t ms__next_seq(cluster__mship_t *m)
{
    m->seq++;
    if (m->seq == 0)
        m->seq = 1;
    return m->seq;
}

static void send_ping(cluster__mship_t *m, const cluster__member_t *target, uint32_t seq)
{
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    ukko_wire_put_ping(&w, seq, ms__ident(m, target)->uid, target->live == CLUSTER__SUSPECT,
                       target->inc);
    ms__piggyback(m, &w);
    ms__send(m, ms__addr(m, target), &w);
}

void ms__tell_suspect(cluster__mship_t *m, const cluster__member_t *mem)
{
    send_ping(m, mem, ms__next_seq(m));
}

/* The next member to probe, in a shuffled order reshuffled after each
 * pass, so every member is probed once per pass (memberlist's rule). */
static cluster__member_t *next_target(cluster__mship_t *m)
{
    for (size_t checked = 0; checked <= m->nmem; checked++) {
        if (m->probe_idx >= m->nmem) {
            for (size_t i = m->nmem; i > 1; i--) {
                size_t j = (size_t)(ms__rand(m) % i);
                cluster__member_t t = m->mem[i - 1];
                m->mem[i - 1] = m->mem[j];
                m->mem[j] = t;
            }
            for (size_t i = 0; i < m->nmem; i++)
                m->slot[ms__ident(m, &m->mem[i])->addr] = (uint32_t)i + 1;
            m->probe_idx = 0;
        }
        cluster__member_t *mem = &m->mem[m->probe_idx++];
        if (ms__usable(m, mem))
            return mem;
    }
    return NULL;
}

static void start_probe(cluster__mship_t *m, int64_t now)
{
    cluster__member_t *t = m->probe_first ? ms__find_addr(m, m->probe_first - 1) : NULL;
    m->probe_first = 0;
    if (!t || !ms__usable(m, t) || t->live != CLUSTER__SUSPECT)
        t = next_target(m);
    if (!t)
        return;
    m->probe.active = true;
    m->probe.indirect_sent = false;
    m->probe.seq = ms__next_seq(m);
    m->probe.addr = ms__ident(m, t)->addr;
    m->probe.ident = t->ident;
    m->probe.t_direct = now + cluster__awareness_scale(&m->aw, m->p.probe_timeout_ms);
    m->probe.t_end = now + cluster__awareness_scale(&m->aw, m->p.probe_interval_ms);
    m->probe.expected_nacks = m->probe.nacks = 0;
    send_ping(m, t, m->probe.seq);
}

static void send_indirect(cluster__mship_t *m, cluster__member_t *target)
{
    const cluster__ident_t *tid = ms__ident(m, target);
    uint32_t picked[16];
    size_t npicked = 0, want = (size_t)m->p.indirect_checks;
    if (want > 16)
        want = 16;
    for (size_t tries = 0; npicked < want && tries < want * 4 && m->nmem > 2; tries++) {
        cluster__member_t *h = &m->mem[ms__rand(m) % m->nmem];
        if (!ms__usable(m, h) || h->live != CLUSTER__ALIVE || h == target)
            continue;
        uint32_t a = ms__ident(m, h)->addr;
        bool dup = false;
        for (size_t i = 0; i < npicked; i++)
            dup = dup || picked[i] == a;
        if (!dup)
            picked[npicked++] = a;
    }
    for (size_t i = 0; i < npicked; i++) {
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, m->pkt, m->pktcap);
        ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
        ukko_wire_put_indirect(&w, m->probe.seq, cluster__ids_addr_at(m->ids, tid->addr), tid->uid,
                               true);
        ms__send(m, cluster__ids_addr_at(m->ids, picked[i]), &w);
    }
    m->probe.expected_nacks = (int)npicked;
}

static void probe_failed(cluster__mship_t *m)
{
    m->probe.active = false;
    /* Lifeguard: helpers that did not even nack suggest our own network or
     * loop is the slow one. */
    int missed = m->probe.expected_nacks - m->probe.nacks;
    cluster__awareness_apply(&m->aw, missed > 0 ? missed : 0);
    cluster__member_t *t = ms__find_addr(m, m->probe.addr);
    if (!t || t->ident != m->probe.ident || !ms__usable(m, t))
        return;
    ms__suspect_member(m, t);
}

void ms__probe_tick(cluster__mship_t *m, int64_t now)
{
    if (m->probe.active) {
        cluster__member_t *t = ms__find_addr(m, m->probe.addr);
        if (!t || t->ident != m->probe.ident || !ms__usable(m, t)) {
            m->probe.active = false;
        } else if (!m->probe.indirect_sent && now >= m->probe.t_direct) {
            m->probe.indirect_sent = true;
            send_indirect(m, t);
        }
        if (m->probe.active && m->probe.indirect_sent && now >= m->probe.t_end)
            probe_failed(m);
    }
    /* helpers whose target did not answer in time send their nack */
    for (size_t i = 0; i < MS_MAX_HELPERS; i++) {
        ms_helper_t *h = &m->helpers[i];
        if (!h->used || now < h->deadline)
            continue;
        h->used = false;
        if (h->nack) {
            ukko_wire_w_t w;
            ukko_wire_w_init(&w, m->pkt, m->pktcap);
            ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
            ukko_wire_put_ack(&w, UKKO_MSG_NACK, h->origin_seq);
            ms__send(m, &h->origin, &w);
        }
    }
    if (!m->probe.active && now >= m->next_probe) {
        m->next_probe = now + cluster__awareness_scale(&m->aw, m->p.probe_interval_ms);
        start_probe(m, now);
    }
}

void ms__on_ping(cluster__mship_t *m, const ukko_wire_hdr_t *h, const ukko_wire_msg_t *msg)
{
    static const uint8_t any[CLUSTER__UID_LEN];
    if (memcmp(msg->uid, m->uid, CLUSTER__UID_LEN) && memcmp(msg->uid, any, CLUSTER__UID_LEN)) {
        /* A probe of an earlier process at this address: no ack (it is
         * gone), but our own alive, so the prober replaces it now. */
        if (m->in_cluster)
            ms__send_alive_to(m, &h->from);
        return;
    }
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    ukko_wire_put_ack(&w, UKKO_MSG_ACK, msg->seq);
    if (m->in_cluster && msg->suspect) {
        /* The prober suspects us: refute, and hand it the proof first
         * hand rather than trusting gossip that may have run dry (after a
         * partition, say). */
        ms__refute_suspicion(m, msg->inc);
        cluster__member_t *self = ms__self(m);
        if (self)
            ms__encode_member(m, &w, self, 0);
    }
    if (m->in_cluster)
        ms__piggyback(m, &w);
    ms__send(m, &h->from, &w);
}

void ms__on_indirect(cluster__mship_t *m, const ukko_wire_hdr_t *h, const ukko_wire_msg_t *msg)
{
    ms_helper_t *slot = NULL;
    for (size_t i = 0; i < MS_MAX_HELPERS && !slot; i++)
        if (!m->helpers[i].used)
            slot = &m->helpers[i];
    if (!slot)
        return; /* at the cap: the prober counts a missed nack */
    slot->used = true;
    slot->seq = ms__next_seq(m);
    slot->origin = h->from;
    slot->origin_seq = msg->seq;
    slot->nack = msg->nack;
    /* Nack a little before the prober gives up, as Lifeguard does. */
    slot->deadline = ms__now(m) + m->p.probe_timeout_ms * 8 / 10;
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    ukko_wire_put_ping(&w, slot->seq, msg->uid, false, 0);
    ms__send(m, &msg->addr, &w);
}

void ms__on_ack(cluster__mship_t *m, const ukko_wire_msg_t *msg)
{
    if (m->probe.active && msg->seq == m->probe.seq) {
        m->probe.active = false;
        cluster__awareness_apply(&m->aw, -1);
        return;
    }
    for (size_t i = 0; i < MS_MAX_HELPERS; i++) {
        ms_helper_t *h = &m->helpers[i];
        if (!h->used || h->seq != msg->seq)
            continue;
        h->used = false;
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, m->pkt, m->pktcap);
        ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
        ukko_wire_put_ack(&w, UKKO_MSG_ACK, h->origin_seq);
        ms__send(m, &h->origin, &w);
        return;
    }
}

void ms__on_nack(cluster__mship_t *m, const ukko_wire_msg_t *msg)
{
    if (m->probe.active && msg->seq == m->probe.seq)
        m->probe.nacks++;
}

/* ---------------------------------------------------------- leader */

bool cluster__mship_converged(const cluster__mship_t *m)
{
    for (size_t i = 0; i < m->nmem; i++) {
        const cluster__member_t *mem = &m->mem[i];
        if (mem->ident == m->self_ident || mem->status >= UKKO_MEMBER_DOWN)
            continue;
        if (mem->live != CLUSTER__ALIVE || mem->digest != m->digest)
            return false;
    }
    return true;
}

/* While members wait for the leader (Joining, WeaklyUp, Leaving), the leader
 * asks those whose digest differs from its own for theirs (a ping: the ack's
 * header carries it), and acts once all agree: Joining and WeaklyUp -> Up,
 * Leaving -> Exiting. Members still Joining after weakly-up-after without
 * convergence (someone unreachable) become WeaklyUp, as in Pekko. */
void ms__leader_tick(cluster__mship_t *m, int64_t now)
{
    /* Asking is cheap (only members whose digest differs answer), and a
     * joiner waits on it: poll faster than the gossip rounds. */
    int64_t poll = m->p.gossip_interval_ms / 2 > 50 ? 50 : m->p.gossip_interval_ms / 2;
    m->next_poll = now + (poll > 10 ? poll : 10);
    if (cluster__mship_leader(m) != m->self_ident) {
        m->unconverged_since = 0;
        return;
    }
    if (cluster__mship_converged(m)) {
        m->unconverged_since = 0;
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, m->pkt, m->pktcap);
        ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
        uint32_t promoted[256];
        size_t npromoted = 0;
        for (size_t i = 0; i < m->nmem; i++) {
            cluster__member_t *mem = &m->mem[i];
            int to = mem->status == UKKO_MEMBER_LEAVING ? UKKO_MEMBER_EXITING
                     : (mem->status == UKKO_MEMBER_JOINING || mem->status == UKKO_MEMBER_WEAKLY_UP)
                         ? UKKO_MEMBER_UP
                         : -1;
            if (to < 0 || mem->live != CLUSTER__ALIVE)
                continue;
            ms__set_status(m, mem, to);
            ukko_wire_w_t save = w;
            ms__encode_member(m, &w, mem, 0);
            if (w.overflow) {
                w = save; /* the rest goes by gossip alone */
                continue;
            }
            if (npromoted < 256)
                promoted[npromoted++] = ms__ident(m, mem)->addr;
        }
        if (!npromoted)
            return;
        /* Every member of a small cluster hears of the promotions first
         * hand; in a large one the promoted members do, and gossip tells
         * the rest. */
        if (m->nmem <= 64) {
            for (size_t i = 0; i < m->nmem; i++)
                if (ms__usable(m, &m->mem[i]) && m->mem[i].live == CLUSTER__ALIVE)
                    ms__send(m, ms__addr(m, &m->mem[i]), &w);
        } else {
            for (size_t i = 0; i < npromoted; i++)
                if (promoted[i] != m->self_addr)
                    ms__send(m, cluster__ids_addr_at(m->ids, promoted[i]), &w);
        }
        return;
    }
    if (!m->unconverged_since)
        m->unconverged_since = now;
    if (now - m->unconverged_since >= m->p.weakly_up_after_ms) {
        for (size_t i = 0; i < m->nmem; i++) {
            cluster__member_t *mem = &m->mem[i];
            if (mem->status == UKKO_MEMBER_JOINING && mem->live == CLUSTER__ALIVE)
                ms__set_status(m, mem, UKKO_MEMBER_WEAKLY_UP);
        }
    }
    /* Ask at most 256 members a round, round-robin, for their digest. */
    size_t asked = 0;
    for (size_t k = 0; k < m->nmem && asked < 256; k++) {
        m->poll_idx = (m->poll_idx + 1) % m->nmem;
        cluster__member_t *mem = &m->mem[m->poll_idx];
        if (!ms__usable(m, mem) || mem->live != CLUSTER__ALIVE || mem->digest == m->digest)
            continue;
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, m->pkt, m->pktcap);
        ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
        ukko_wire_put_ping(&w, ms__next_seq(m), ms__ident(m, mem)->uid, false, 0);
        ms__send(m, ms__addr(m, mem), &w);
        asked++;
    }
}
