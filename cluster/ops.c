/* ops.c: what bootstrap and the leave do to the membership core: start
 * without forming, join through seeds found late, form, leave through the
 * leader (Leaving -> Exiting -> Removed, as Pekko's), and an operator's Leave
 * or Down of any member. One thread per instance, as the core.
 * Invariant: a node that has begun to join never forms; a status only moves
 * forward. */
#include "mship.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void cluster__mship_start_wait(cluster__mship_t *m)
{
    ms__start_clocks(m, ms__now(m));
    /* Neither join rounds (no seeds yet) nor the "first seed forms" rule:
     * bootstrap decides. */
    m->self_first_seed = false;
    m->next_join = INT64_MAX;
}

int cluster__mship_join(cluster__mship_t *m, const cluster__addr_t *seeds, size_t nseeds)
{
    if (m->in_cluster)
        return 0;
    cluster__addr_t *v = calloc(nseeds ? nseeds : 1, sizeof(*v));
    if (!v)
        return UKKO_ENOMEM;
    memcpy(v, seeds, nseeds * sizeof(*v));
    free(m->seeds);
    m->seeds = v;
    m->nseeds = nseeds;
    m->self_first_seed = false;
    int64_t now = ms__now(m);
    if (m->next_join > now && m->join_round_pending == 0)
        m->next_join = now;
    return 0;
}

void cluster__mship_form(cluster__mship_t *m)
{
    if (!m->in_cluster)
        ms__form(m);
}

/* Sends one packet with mem's news (as gossip encodes it) to every usable,
 * reachable member: a small cluster hears it first hand. */
static void tell_all(cluster__mship_t *m, const cluster__member_t *mem, bool farewell)
{
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    ms__encode_member(m, &w, mem, 0);
    if (farewell) {
        /* After the Exiting above, in the same packet: a receiver that
         * still held us Up moves us to Exiting first, so the removal is a
         * leave (Removed), never a failure (Down). */
        const cluster__ident_t *id = ms__ident(m, mem);
        ukko_wire_put_accuse(&w, UKKO_MSG_DEAD, ms__addr(m, mem), id->uid, mem->inc,
                             ms__addr(m, mem));
    }
    size_t told = 0;
    for (size_t i = 0; i < m->nmem && told < 256; i++) {
        const cluster__member_t *o = &m->mem[i];
        if (!ms__usable(m, o) || o->live != CLUSTER__ALIVE)
            continue;
        ms__send(m, ms__addr(m, o), &w);
        told++;
    }
}

void cluster__mship_leaving(cluster__mship_t *m)
{
    cluster__member_t *self = ms__self(m);
    if (!self || !m->in_cluster || self->status >= UKKO_MEMBER_LEAVING)
        return;
    ms__set_status(m, self, UKKO_MEMBER_LEAVING);
    tell_all(m, self, false);
}

void cluster__mship_farewell(cluster__mship_t *m)
{
    cluster__member_t *self = ms__self(m);
    if (!self || !m->in_cluster || self->status >= UKKO_MEMBER_DOWN)
        return;
    if (self->status < UKKO_MEMBER_EXITING)
        ms__set_status(m, self, UKKO_MEMBER_EXITING);
    tell_all(m, self, true);
}

static cluster__member_t *member_at(cluster__mship_t *m, const cluster__addr_t *a)
{
    uint32_t id = cluster__ids_addr(m->ids, a);
    return id == UINT32_MAX ? NULL : ms__find_addr(m, id);
}

int cluster__mship_op_leave(cluster__mship_t *m, const cluster__addr_t *a)
{
    cluster__member_t *mem = member_at(m, a);
    if (!mem)
        return UKKO_ENOENT;
    if (mem->status >= UKKO_MEMBER_LEAVING)
        return UKKO_EINVAL;
    if (mem->ident == m->self_ident) {
        cluster__mship_leaving(m);
        return 0;
    }
    /* Others may mark a member Leaving (the status lattice takes the later
     * state); the member learns it from the gossip about itself and stops,
     * and the leader moves it on as for any leave. */
    ms__set_status(m, mem, UKKO_MEMBER_LEAVING);
    tell_all(m, mem, false); /* the member itself among them */
    return 0;
}

int cluster__mship_op_down(cluster__mship_t *m, const cluster__addr_t *a)
{
    cluster__member_t *mem = member_at(m, a);
    if (!mem)
        return UKKO_ENOENT;
    if (mem->status >= UKKO_MEMBER_DOWN)
        return UKKO_EINVAL;
    if (mem->ident != m->self_ident) {
        uint32_t ident = mem->ident;
        ms__declare_dead(m, mem, "downed by an operator (PUT /cluster/members ... operation=Down)");
        /* The downed member hears it first hand too: it stops being ready at
         * once instead of when it next talks to someone. */
        ms__send_dead_to(m, a, ident);
        return 0;
    }
    ukko_log(UKKO_LOG_WARN, "cluster",
             "this node was downed by an operator (PUT /cluster/members ... operation=Down): it "
             "is no longer a member and stays not ready; restart it to rejoin");
    ms__set_status(m, mem, UKKO_MEMBER_DOWN);
    /* Down members are not told anything by ms__usable's rules: tell the
     * others now, while this node still counts as one of them to them. */
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    ms__encode_member(m, &w, mem, 0);
    for (size_t i = 0; i < m->nmem; i++)
        if (ms__usable(m, &m->mem[i]) && m->mem[i].live == CLUSTER__ALIVE)
            ms__send(m, ms__addr(m, &m->mem[i]), &w);
    return 0;
}
