/* gossip.c: dissemination: the queue of members whose news is still being
 * spread (each item sent a bounded number of times, the least-sent first),
 * piggybacking on every packet, and the gossip round to a few random members.
 * The queue holds members, not messages: an item is encoded from the
 * member's state when sent, so newer news replaces older for free. One thread
 * per instance. */
#include "mship.h"

#include <math.h>
#include <string.h>

static size_t retransmit_limit(const cluster__mship_t *m)
{
    /* memberlist's rule: mult * ceil(log10(n + 1)) */
    size_t limit = (size_t)m->p.retransmit_mult * (size_t)ceil(log10((double)m->nlive + 1.0));
    if (limit < 1)
        limit = 1;
    if (limit > MS_QBUCKETS - 1)
        limit = MS_QBUCKETS - 1;
    return limit;
}

static cluster__member_t *by_link(cluster__mship_t *m, uint32_t link)
{
    return link ? ms__find_addr(m, link - 1) : NULL;
}

static uint32_t link_of(const cluster__mship_t *m, const cluster__member_t *mem)
{
    return ms__ident(m, mem)->addr + 1;
}

void ms__unqueue(cluster__mship_t *m, cluster__member_t *mem)
{
    if (!(mem->flags & MF_QUEUED))
        return;
    cluster__member_t *prev = by_link(m, mem->qprev), *next = by_link(m, mem->qnext);
    if (prev)
        prev->qnext = mem->qnext;
    else
        m->qhead[mem->tx] = mem->qnext;
    if (next)
        next->qprev = mem->qprev;
    mem->qprev = mem->qnext = 0;
    mem->flags &= (uint8_t)~MF_QUEUED;
    m->qlen--;
}

static void link_head(cluster__mship_t *m, cluster__member_t *mem, uint8_t bucket)
{
    mem->tx = bucket;
    mem->qprev = 0;
    mem->qnext = m->qhead[bucket];
    cluster__member_t *next = by_link(m, mem->qnext);
    if (next)
        next->qprev = link_of(m, mem);
    m->qhead[bucket] = link_of(m, mem);
    mem->flags |= MF_QUEUED;
    m->qlen++;
}

void ms__queue(cluster__mship_t *m, cluster__member_t *mem)
{
    ms__unqueue(m, mem);
    link_head(m, mem, 0);
}

void ms__encode_member(cluster__mship_t *m, ukko_wire_w_t *w, const cluster__member_t *mem,
                       uint8_t type)
{
    const cluster__ident_t *id = ms__ident(m, mem);
    const cluster__addr_t *a = cluster__ids_addr_at(m->ids, id->addr);
    if (type == UKKO_MSG_STATE) {
        ukko_wire_put_node(w, UKKO_MSG_STATE, a, id->uid, mem->inc, mem->status, id->started_ms,
                           id->roles, mem->live);
    } else if (mem->status >= UKKO_MEMBER_DOWN) {
        ukko_wire_put_accuse(w, UKKO_MSG_DEAD, a, id->uid, mem->inc,
                             cluster__ids_addr_at(m->ids, m->self_addr));
    } else if (mem->live == CLUSTER__SUSPECT && mem->susp) {
        uint32_t from = m->susp[mem->susp - 1].last_from;
        ukko_wire_put_accuse(w, UKKO_MSG_SUSPECT, a, id->uid, mem->inc,
                             cluster__ids_addr_at(m->ids, from));
    } else {
        ukko_wire_put_node(w, UKKO_MSG_ALIVE, a, id->uid, mem->inc, mem->status, id->started_ms,
                           id->roles, 0);
    }
}

/* Fills what is left of the packet with queued news, least-sent first. */
void ms__piggyback(cluster__mship_t *m, ukko_wire_w_t *w)
{
    if (!m->qlen)
        return;
    size_t limit = retransmit_limit(m);
    uint32_t taken[256];
    size_t ntaken = 0;
    for (size_t b = 0; b < MS_QBUCKETS && ntaken < 256; b++) {
        for (cluster__member_t *mem = by_link(m, m->qhead[b]); mem && ntaken < 256;
             mem = by_link(m, mem->qnext)) {
            ukko_wire_w_t save = *w;
            ms__encode_member(m, w, mem, 0);
            if (w->overflow) {
                *w = save;
                /* Smaller items (suspect, dead) may still fit; stop when
                 * fewer bytes than the smallest remain. */
                if (w->cap - w->len < 64)
                    goto done;
                continue;
            }
            taken[ntaken++] = link_of(m, mem);
        }
    }
done:
    for (size_t i = 0; i < ntaken; i++) {
        cluster__member_t *mem = by_link(m, taken[i]);
        if (!mem)
            continue;
        uint8_t tx = mem->tx;
        ms__unqueue(m, mem);
        if ((size_t)tx + 1 < limit)
            link_head(m, mem, (uint8_t)(tx + 1));
    }
}

void ms__send(cluster__mship_t *m, const cluster__addr_t *to, ukko_wire_w_t *w)
{
    if (w->overflow || !w->len)
        return;
    m->st.pkts_out++;
    m->st.bytes_out += w->len + UKKO_WIRE_SEAL_OVERHEAD;
    m->env.send(m->env.ud, to, w->p, w->len);
}

void ms__send_alive_to(cluster__mship_t *m, const cluster__addr_t *to)
{
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    cluster__member_t *self = ms__self(m);
    if (self)
        ms__encode_member(m, &w, self, 0);
    ms__send(m, to, &w);
}

void ms__send_dead_to(cluster__mship_t *m, const cluster__addr_t *to, uint32_t ident)
{
    const cluster__ident_t *id = cluster__ids_at(m->ids, ident);
    if (!id)
        return;
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    ukko_wire_put_accuse(&w, UKKO_MSG_DEAD, cluster__ids_addr_at(m->ids, id->addr), id->uid, 0,
                         cluster__ids_addr_at(m->ids, m->self_addr));
    ms__send(m, to, &w);
}

/* A gossip round: the queued news to gossip_nodes random members. Members
 * just declared Down are still told (they may be alive and should learn
 * it), so are suspects, as memberlist does. */
void ms__gossip_tick(cluster__mship_t *m, int64_t now)
{
    (void)now;
    if (!m->qlen || m->nmem < 2)
        return;
    uint32_t picked[16];
    size_t npicked = 0, want = (size_t)m->p.gossip_nodes;
    if (want > 16)
        want = 16;
    for (size_t tries = 0; npicked < want && tries < want * 4; tries++) {
        cluster__member_t *mem = &m->mem[ms__rand(m) % m->nmem];
        if (mem->ident == m->self_ident || mem->status == UKKO_MEMBER_REMOVED)
            continue;
        uint32_t a = ms__ident(m, mem)->addr;
        bool dup = false;
        for (size_t i = 0; i < npicked; i++)
            dup = dup || picked[i] == a;
        if (!dup)
            picked[npicked++] = a;
    }
    for (size_t i = 0; i < npicked && m->qlen; i++) {
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, m->pkt, m->pktcap);
        ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
        ms__piggyback(m, &w);
        if (w.len > sizeof(ukko_wire_header_t))
            ms__send(m, cluster__ids_addr_at(m->ids, picked[i]), &w);
    }
}
