/* membership.c: the member table and the rules that merge what gossip says
 * into it: SWIM liveness (alive, suspect, dead, refuted by incarnation) and
 * Pekko's member status (a lattice: a status is only replaced by a later
 * one), identities (a new uid at a known address retires the old one), the
 * view digest, the leader, and the loop's own stalls. One thread per
 * instance; the clock and the network come through cluster__env_t.
 * Invariants: only a node raises its own incarnation; Down is final for a
 * uid; a verdict is never made across a stall of this node's loop. */
#include "mship.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ basics */

int64_t ms__now(cluster__mship_t *m)
{
    return m->env.now(m->env.ud);
}

uint64_t ms__rand(cluster__mship_t *m)
{
    /* xorshift128+: protocol choices only (targets, helpers); uids come
     * from env.random, which is the CSPRNG in a real node. */
    uint64_t s1 = m->rng[0];
    const uint64_t s0 = m->rng[1];
    m->rng[0] = s0;
    s1 ^= s1 << 23;
    m->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return m->rng[1] + s0;
}

static uint32_t deciseconds(cluster__mship_t *m, int64_t now)
{
    return (uint32_t)((now - m->t0) / 100);
}

cluster__member_t *ms__find_addr(cluster__mship_t *m, uint32_t addr_id)
{
    if (addr_id >= m->slotcap || !m->slot[addr_id])
        return NULL;
    return &m->mem[m->slot[addr_id] - 1];
}

cluster__member_t *ms__self(cluster__mship_t *m)
{
    return ms__find_addr(m, m->self_addr);
}

const cluster__ident_t *ms__ident(const cluster__mship_t *m, const cluster__member_t *mem)
{
    return cluster__ids_at(m->ids, mem->ident);
}

const cluster__addr_t *ms__addr(const cluster__mship_t *m, const cluster__member_t *mem)
{
    return cluster__ids_addr_at(m->ids, ms__ident(m, mem)->addr);
}

ms_susp_t *ms__susp(cluster__mship_t *m, const cluster__member_t *mem)
{
    return mem->susp ? &m->susp[mem->susp - 1] : NULL;
}

bool ms__usable(const cluster__mship_t *m, const cluster__member_t *mem)
{
    return mem->status < UKKO_MEMBER_DOWN && mem->ident != m->self_ident;
}

/* The share of one member in the view digest: a member counts with its
 * status while it is in the cluster (Joining to Exiting). */
static uint64_t digest_part(const cluster__mship_t *m, const cluster__member_t *mem)
{
    if (mem->status >= UKKO_MEMBER_DOWN)
        return 0;
    uint64_t x = ms__ident(m, mem)->hash ^ ((uint64_t)(mem->status + 1) * 0x9e3779b97f4a7c15ULL);
    x ^= x >> 31;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

static bool pending_status(int s)
{
    return s == UKKO_MEMBER_JOINING || s == UKKO_MEMBER_WEAKLY_UP || s == UKKO_MEMBER_LEAVING;
}

/* ------------------------------------------------------- the table */

static int ensure_slot(cluster__mship_t *m, uint32_t addr_id)
{
    if (addr_id < m->slotcap)
        return 0;
    size_t ncap = m->slotcap ? m->slotcap : 64;
    while (ncap <= addr_id)
        ncap *= 2;
    uint32_t *ns = realloc(m->slot, ncap * sizeof(*ns));
    if (!ns)
        return UKKO_ENOMEM;
    memset(ns + m->slotcap, 0, (ncap - m->slotcap) * sizeof(*ns));
    m->slot = ns;
    m->slotcap = ncap;
    return 0;
}

static void notify(cluster__mship_t *m, const cluster__member_t *mem, int old_status, int old_live)
{
    if (old_status != mem->status || old_live != mem->live)
        ms__sbr_changed(m, mem->ident, old_status, old_live, mem->status, mem->live);
    if (m->env.changed && (old_status != mem->status || old_live != mem->live))
        m->env.changed(m->env.ud, mem->ident, old_status, old_live, mem->status, mem->live);
}

static cluster__member_t *add_member(cluster__mship_t *m, uint32_t ident, uint32_t inc, int status)
{
    const cluster__ident_t *id = cluster__ids_at(m->ids, ident);
    if (m->nmem >= m->p.max_members || ensure_slot(m, id->addr) < 0)
        return NULL;
    if (m->nmem == m->memcap) {
        size_t ncap = m->memcap ? m->memcap * 2 : 16;
        cluster__member_t *nm = realloc(m->mem, ncap * sizeof(*nm));
        if (!nm)
            return NULL;
        m->mem = nm;
        m->memcap = ncap;
    }
    /* A new member goes to a random place in the probe order (memberlist
     * does the same), so that it is probed about as soon as any other. */
    size_t at = m->nmem++;
    if (at > 0) {
        size_t j = (size_t)(ms__rand(m) % (uint64_t)(at + 1));
        if (j != at) {
            m->mem[at] = m->mem[j];
            m->slot[ms__ident(m, &m->mem[at])->addr] = (uint32_t)at + 1;
            at = j;
        }
    }
    cluster__member_t *mem = &m->mem[at];
    memset(mem, 0, sizeof(*mem));
    mem->ident = ident;
    mem->inc = inc;
    mem->status = (uint8_t)status;
    mem->live = CLUSTER__ALIVE;
    mem->changed_ds = deciseconds(m, ms__now(m));
    m->slot[id->addr] = (uint32_t)at + 1;
    m->digest += digest_part(m, mem);
    if (status < UKKO_MEMBER_DOWN)
        m->nlive++;
    if (pending_status(status))
        m->npending++;
    ms__sbr_changed(m, ident, -1, -1, mem->status, mem->live);
    if (m->env.changed)
        m->env.changed(m->env.ud, ident, -1, -1, mem->status, mem->live);
    return mem;
}

static void free_susp(cluster__mship_t *m, cluster__member_t *mem)
{
    if (!mem->susp)
        return;
    size_t i = mem->susp - 1;
    mem->susp = 0;
    if (i != m->nsusp - 1) {
        m->susp[i] = m->susp[m->nsusp - 1];
        cluster__member_t *moved = ms__find_addr(m, m->susp[i].addr);
        if (moved)
            moved->susp = (uint32_t)i + 1;
    }
    m->nsusp--;
}

static void retire(cluster__mship_t *m, uint32_t ident)
{
    m->retired[m->retired_pos] = ident;
    m->retired_pos = (m->retired_pos + 1) % MS_RETIRED;
    if (m->nretired < MS_RETIRED)
        m->nretired++;
}

bool ms__is_retired(const cluster__mship_t *m, uint32_t ident)
{
    for (size_t i = 0; i < m->nretired; i++)
        if (m->retired[i] == ident)
            return true;
    return false;
}

/* Takes a member out of the table: it is Removed. */
static void remove_member(cluster__mship_t *m, cluster__member_t *mem)
{
    int old_status = mem->status, old_live = mem->live;
    uint32_t ident = mem->ident;
    ms__unqueue(m, mem);
    free_susp(m, mem);
    m->digest -= digest_part(m, mem);
    if (mem->status < UKKO_MEMBER_DOWN)
        m->nlive--;
    if (pending_status(mem->status))
        m->npending--;
    retire(m, ident);
    uint32_t addr = ms__ident(m, mem)->addr;
    size_t i = (size_t)(mem - m->mem);
    m->slot[addr] = 0;
    if (i != m->nmem - 1) {
        m->mem[i] = m->mem[m->nmem - 1];
        m->slot[ms__ident(m, &m->mem[i])->addr] = (uint32_t)i + 1;
    }
    m->nmem--;
    if (m->probe_idx > m->nmem)
        m->probe_idx = m->nmem;
    ms__sbr_changed(m, ident, old_status, old_live, UKKO_MEMBER_REMOVED, CLUSTER__DEAD);
    if (m->env.changed)
        m->env.changed(m->env.ud, ident, old_status, old_live, UKKO_MEMBER_REMOVED,
                       CLUSTER__DEAD);
}

void ms__set_status(cluster__mship_t *m, cluster__member_t *mem, int status)
{
    if (status <= mem->status)
        return;
    int old_status = mem->status, old_live = mem->live;
    m->digest -= digest_part(m, mem);
    if (pending_status(mem->status))
        m->npending--;
    if (mem->status < UKKO_MEMBER_DOWN && status >= UKKO_MEMBER_DOWN)
        m->nlive--;
    mem->status = (uint8_t)status;
    if (pending_status(status))
        m->npending++;
    m->digest += digest_part(m, mem);
    mem->changed_ds = deciseconds(m, ms__now(m));
    if (status >= UKKO_MEMBER_DOWN) {
        mem->live = CLUSTER__DEAD;
        free_susp(m, mem);
        if (!(mem->flags & MF_DOWNLIST)) {
            if (m->ndown == m->downcap) {
                size_t ncap = m->downcap ? m->downcap * 2 : 16;
                uint32_t *nd = realloc(m->downlist, ncap * sizeof(*nd));
                if (nd) {
                    m->downlist = nd;
                    m->downcap = ncap;
                }
            }
            if (m->ndown < m->downcap) {
                m->downlist[m->ndown++] = ms__ident(m, mem)->addr;
                mem->flags |= MF_DOWNLIST;
            }
        }
    }
    ms__queue(m, mem);
    notify(m, mem, old_status, old_live);
}

/* ------------------------------------------------------ the merges */

static void refute(cluster__mship_t *m, uint32_t inc)
{
    cluster__member_t *self = ms__self(m);
    if (inc >= m->inc)
        m->inc = inc + 1;
    if (self) {
        self->inc = m->inc;
        ms__queue(m, self);
    }
    cluster__awareness_apply(&m->aw, 1);
    m->st.refutes++;
    if (ukko_log_enabled(UKKO_LOG_DEBUG)) {
        char me[64];
        cluster__addr_format(cluster__ids_addr_at(m->ids, m->self_addr), me, sizeof(me));
        ukko_log(UKKO_LOG_DEBUG, "cluster", "%s: refutes inc %u -> %u at %lld", me, inc, m->inc,
                 (long long)ms__now(m));
    }
}

void ms__refute_suspicion(cluster__mship_t *m, uint32_t inc)
{
    cluster__member_t *self = ms__self(m);
    if (self && self->status < UKKO_MEMBER_DOWN && inc >= m->inc)
        refute(m, inc);
}

static void self_down(cluster__mship_t *m, const cluster__addr_t *by)
{
    cluster__member_t *self = ms__self(m);
    if (!self || self->status >= UKKO_MEMBER_DOWN)
        return;
    char who[64] = "?";
    if (by)
        cluster__addr_format(by, who, sizeof(who));
    ukko_logf(UKKO_LOG_ERROR, "cluster", UKKO_FIELDS(UKKO_FS("by", who)),
              "this node was declared Down by the cluster (it was unreachable for too long): "
              "it is no longer a member and stays not ready; restart it to rejoin as a new "
              "incarnation");
    ms__set_status(m, self, UKKO_MEMBER_DOWN);
}

void ms__apply_alive(cluster__mship_t *m, const ukko_wire_msg_t *msg)
{
    uint32_t addr_id = cluster__ids_addr(m->ids, &msg->addr);
    if (addr_id == UINT32_MAX)
        return;
    if (addr_id == m->self_addr) {
        cluster__member_t *self = ms__self(m);
        if (!self || memcmp(msg->uid, m->uid, CLUSTER__UID_LEN))
            return; /* an earlier process at our address: long gone */
        if (msg->inc > m->inc)
            refute(m, msg->inc);
        if (msg->status > self->status && msg->status < UKKO_MEMBER_DOWN)
            ms__set_status(m, self, msg->status);
        return;
    }
    if (msg->status >= UKKO_MEMBER_DOWN)
        return; /* an alive message never carries a verdict */
    uint32_t ident = cluster__ids_ident(m->ids, addr_id, msg->uid, msg->started_ms, msg->roles,
                                        msg->roles_len);
    if (ident == UINT32_MAX || ms__is_retired(m, ident))
        return;
    cluster__member_t *mem = ms__find_addr(m, addr_id);
    if (mem && mem->ident != ident) {
        /* Two processes have used this address: the one started later is
         * the one there now (same host, same clock). The old incarnation is
         * retired at once instead of waiting to time out. */
        const cluster__ident_t *old = ms__ident(m, mem);
        const cluster__ident_t *neu = cluster__ids_at(m->ids, ident);
        if (neu->started_ms < old->started_ms ||
            (neu->started_ms == old->started_ms &&
             memcmp(neu->uid, old->uid, CLUSTER__UID_LEN) < 0)) {
            retire(m, ident);
            return;
        }
        char a[64];
        cluster__addr_format(&msg->addr, a, sizeof(a));
        ukko_logf(UKKO_LOG_INFO, "cluster", UKKO_FIELDS(UKKO_FS("member", a)),
                  "a new incarnation of %s joined: the old one is removed", a);
        m->st.replaced++;
        remove_member(m, mem);
        mem = NULL;
    }
    if (!mem) {
        mem = add_member(m, ident, msg->inc, msg->status);
        if (mem)
            ms__queue(m, mem);
        else
            m->st.drop_oversize++;
        return;
    }
    if (mem->status >= UKKO_MEMBER_DOWN)
        return;
    bool changed = false;
    if (msg->inc > mem->inc) {
        int old_live = mem->live;
        mem->inc = msg->inc;
        /* Only the member raises its incarnation, to refute a suspicion:
         * news from it, if not first hand (sbr.c counts it as heard). */
        mem->heard_ds = deciseconds(m, ms__now(m));
        if (mem->live != CLUSTER__ALIVE) {
            mem->live = CLUSTER__ALIVE;
            free_susp(m, mem);
            notify(m, mem, mem->status, old_live);
        }
        changed = true;
    }
    if (msg->status > mem->status) {
        ms__set_status(m, mem, msg->status); /* queues */
        changed = false;
    }
    if (changed)
        ms__queue(m, mem);
}

/* The member a suspect/dead message is about, if it is the uid we know. */
static cluster__member_t *about(cluster__mship_t *m, const ukko_wire_msg_t *msg)
{
    uint32_t addr_id = cluster__ids_addr(m->ids, &msg->addr);
    if (addr_id == UINT32_MAX)
        return NULL;
    cluster__member_t *mem = ms__find_addr(m, addr_id);
    if (!mem || memcmp(ms__ident(m, mem)->uid, msg->uid, CLUSTER__UID_LEN))
        return NULL;
    return mem;
}

static void start_suspicion(cluster__mship_t *m, cluster__member_t *mem, uint32_t from)
{
    if (m->nsusp == m->suspcap) {
        size_t ncap = m->suspcap ? m->suspcap * 2 : 8;
        ms_susp_t *ns = realloc(m->susp, ncap * sizeof(*ns));
        if (!ns)
            return;
        m->susp = ns;
        m->suspcap = ncap;
    }
    ms_susp_t *s = &m->susp[m->nsusp++];
    mem->susp = (uint32_t)m->nsusp;
    s->addr = ms__ident(m, mem)->addr;
    s->last_from = from;
    s->told = 0;
    /* Confirmations can only come from members other than the suspect and
     * the accuser: with fewer of them, go straight to the minimum. */
    uint32_t k = MS_SUSPICION_K;
    if (m->nlive < 2 + (size_t)k)
        k = 0;
    int64_t min = cluster__suspicion_min(m->p.suspicion_timeout_ms, m->nlive);
    int64_t max = min * m->p.suspicion_max_mult;
    cluster__suspicion_init(&s->s, from, k, min, max, ms__now(m));
}

void ms__apply_suspect(cluster__mship_t *m, const ukko_wire_msg_t *msg)
{
    uint32_t addr_id = cluster__ids_addr(m->ids, &msg->addr);
    if (addr_id == m->self_addr) {
        if (!memcmp(msg->uid, m->uid, CLUSTER__UID_LEN) && ms__self(m) &&
            ms__self(m)->status < UKKO_MEMBER_DOWN)
            refute(m, msg->inc);
        return;
    }
    cluster__member_t *mem = about(m, msg);
    if (!mem || mem->status >= UKKO_MEMBER_DOWN || msg->inc < mem->inc)
        return;
    uint32_t from = cluster__ids_addr(m->ids, &msg->from);
    if (from == UINT32_MAX)
        return;
    const cluster__member_t *accuser = ms__find_addr(m, from);
    if (accuser && accuser->status >= UKKO_MEMBER_DOWN)
        return; /* a member that is out has no say */
    if (mem->live == CLUSTER__SUSPECT && msg->inc == mem->inc) {
        ms_susp_t *s = ms__susp(m, mem);
        if (s && cluster__suspicion_confirm(&s->s, from)) {
            s->last_from = from;
            ms__queue(m, mem);
        }
        return;
    }
    int old_live = mem->live;
    if (mem->live == CLUSTER__SUSPECT)
        free_susp(m, mem); /* a newer incarnation is suspected afresh */
    mem->inc = msg->inc;
    mem->live = CLUSTER__SUSPECT;
    m->st.suspicions++;
    /* Heard from someone else: probe it next, so our own verdict (a
     * confirmation, or an ack) comes one probe later, not one pass later. */
    if (from != m->self_addr) {
        m->probe_first = ms__ident(m, mem)->addr + 1;
        if (!m->probe.active && m->next_probe > ms__now(m))
            m->next_probe = ms__now(m);
    }
    start_suspicion(m, mem, from);
    if (ukko_log_enabled(UKKO_LOG_DEBUG)) {
        char a[64], b[64], me[64];
        cluster__addr_format(&msg->addr, a, sizeof(a));
        cluster__addr_format(&msg->from, b, sizeof(b));
        cluster__addr_format(cluster__ids_addr_at(m->ids, m->self_addr), me, sizeof(me));
        ukko_log(UKKO_LOG_DEBUG, "cluster", "%s: suspect %s inc %u (by %s) at %lld, aw %d", me, a,
                 msg->inc, b, (long long)ms__now(m), m->aw.score);
    }
    ms__queue(m, mem);
    notify(m, mem, mem->status, old_live);
}

void ms__suspect_member(cluster__mship_t *m, cluster__member_t *mem)
{
    ukko_wire_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = UKKO_MSG_SUSPECT;
    msg.addr = *ms__addr(m, mem);
    memcpy(msg.uid, ms__ident(m, mem)->uid, CLUSTER__UID_LEN);
    msg.inc = mem->inc;
    msg.from = *cluster__ids_addr_at(m->ids, m->self_addr);
    ms__apply_suspect(m, &msg);
}

void ms__declare_dead(cluster__mship_t *m, cluster__member_t *mem, const char *why)
{
    if (mem->status >= UKKO_MEMBER_DOWN || mem->ident == m->self_ident)
        return;
    char a[64];
    cluster__addr_format(ms__addr(m, mem), a, sizeof(a));
    m->st.deaths++;
    /* A member that announced its leave and is now gone simply left. */
    bool left = mem->status == UKKO_MEMBER_EXITING;
    ukko_logf(left ? UKKO_LOG_INFO : UKKO_LOG_WARN, "cluster",
              UKKO_FIELDS(UKKO_FS("member", a), UKKO_FS("reason", why)),
              left ? "member %s left" : "member %s is Down (%s)", a, why);
    ms__set_status(m, mem, left ? UKKO_MEMBER_REMOVED : UKKO_MEMBER_DOWN);
    /* In a small cluster everyone hears the verdict first hand; gossip
     * carries it in a large one. */
    if (m->nmem <= 64) {
        ukko_wire_w_t w;
        ukko_wire_w_init(&w, m->pkt, m->pktcap);
        ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
        ms__encode_member(m, &w, mem, 0);
        for (size_t i = 0; i < m->nmem; i++)
            if (ms__usable(m, &m->mem[i]) && m->mem[i].live == CLUSTER__ALIVE)
                ms__send(m, ms__addr(m, &m->mem[i]), &w);
    }
}

void ms__apply_dead(cluster__mship_t *m, const ukko_wire_msg_t *msg)
{
    uint32_t addr_id = cluster__ids_addr(m->ids, &msg->addr);
    if (addr_id == m->self_addr) {
        if (!memcmp(msg->uid, m->uid, CLUSTER__UID_LEN))
            self_down(m, &msg->from);
        return;
    }
    cluster__member_t *mem = about(m, msg);
    if (!mem || mem->status >= UKKO_MEMBER_DOWN)
        return;
    /* Down is final for a uid (Pekko): whoever declared it, every member
     * converges on it, so a refutation that lost the race cannot leave two
     * views that never meet. */
    ms__set_status(m, mem, mem->status == UKKO_MEMBER_EXITING ? UKKO_MEMBER_REMOVED
                                                               : UKKO_MEMBER_DOWN);
}

/* -------------------------------------------------------- creating */

void cluster__params_default(cluster__params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->probe_interval_ms = 1000;
    p->probe_timeout_ms = 500;
    p->indirect_checks = 3;
    p->gossip_interval_ms = 100;
    p->gossip_nodes = 3;
    p->retransmit_mult = 4;
    p->suspicion_timeout_ms = 3000;
    p->suspicion_max_mult = 6;
    p->awareness_max = 8;
    p->loop_lag_tolerance_ms = 500;
    p->sync_interval_ms = 30000;
    p->join_retry_interval_ms = 1000;
    p->weakly_up_after_ms = 7000;
    p->removed_after_ms = 10000;
    p->max_members = 20000;
    p->mtu = 1400;
    p->max_sync_bytes = 8u << 20;
    cluster__sbr_params_default(&p->sbr);
}

cluster__mship_t *cluster__mship_new(const cluster__params_t *p, const cluster__env_t *env,
                                     cluster__ids_t *ids, const cluster__addr_t *self,
                                     const char *roles, const cluster__addr_t *seeds,
                                     size_t nseeds)
{
    cluster__mship_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->p = *p;
    m->env = *env;
    m->ids = ids;
    m->t0 = ms__now(m);
    m->env.random(m->env.ud, m->rng, sizeof(m->rng));
    m->rng[0] |= 1;
    m->env.random(m->env.ud, m->uid, sizeof(m->uid));
    cluster__awareness_init(&m->aw, p->awareness_max);
    m->pktcap = p->mtu > UKKO_WIRE_SEAL_OVERHEAD + 128 ? p->mtu - UKKO_WIRE_SEAL_OVERHEAD : 128;
    m->pkt = malloc(m->pktcap);
    m->roles = roles && *roles ? strdup(roles) : NULL;
    if (nseeds) {
        m->seeds = calloc(nseeds, sizeof(*m->seeds));
        if (m->seeds)
            memcpy(m->seeds, seeds, nseeds * sizeof(*seeds));
        m->nseeds = nseeds;
    }
    m->self_addr = cluster__ids_addr(ids, self);
    if (!m->pkt || (roles && *roles && !m->roles) || (nseeds && !m->seeds) ||
        m->self_addr == UINT32_MAX)
        goto fail;
    m->self_ident = cluster__ids_ident(ids, m->self_addr, m->uid, env->wall(env->ud), m->roles,
                                       m->roles ? strlen(m->roles) : 0);
    if (m->self_ident == UINT32_MAX || !add_member(m, m->self_ident, 0, UKKO_MEMBER_JOINING))
        goto fail;
    m->self_first_seed = nseeds == 0 || cluster__addr_eq(&seeds[0], self);
    return m;
fail:
    cluster__mship_free(m);
    return NULL;
}

void cluster__mship_free(cluster__mship_t *m)
{
    if (!m)
        return;
    free(m->mem);
    free(m->slot);
    free(m->susp);
    free(m->pkt);
    free(m->roles);
    free(m->seeds);
    free(m->downlist);
    free(m);
}

void ms__form(cluster__mship_t *m)
{
    m->in_cluster = true;
    cluster__member_t *self = ms__self(m);
    if (self)
        ms__set_status(m, self, UKKO_MEMBER_UP);
    ukko_log(UKKO_LOG_INFO, "cluster", "formed a new cluster: this node is its first member (Up)");
}

void ms__start_clocks(cluster__mship_t *m, int64_t now)
{
    m->started = true;
    /* Spread the periodic work of many nodes started together. */
    m->next_probe = now + (int64_t)(ms__rand(m) % (uint64_t)m->p.probe_interval_ms);
    m->next_gossip = now + (int64_t)(ms__rand(m) % (uint64_t)m->p.gossip_interval_ms);
    m->next_sync = now + m->p.sync_interval_ms / 2 +
                   (int64_t)(ms__rand(m) % (uint64_t)m->p.sync_interval_ms);
    m->next_reap = now + 1000;
    m->next_poll = now;
    m->expected = now;
}

void cluster__mship_start(cluster__mship_t *m)
{
    int64_t now = ms__now(m);
    ms__start_clocks(m, now);
    bool others = false;
    for (size_t i = 0; i < m->nseeds; i++)
        if (cluster__ids_addr(m->ids, &m->seeds[i]) != m->self_addr)
            others = true;
    if (!others)
        ms__form(m);
    else
        m->next_join = now;
}

/* --------------------------------------------------------- stalls */

/* The loop ran late by more than the tolerance: this node was stalled
 * (SIGSTOP, a long GC-like pause, an overloaded host). Whatever timed out
 * meanwhile timed out because of us, so no verdict stands: the probe under
 * way is dropped and every suspicion gets a fresh period. */
static void check_stall(cluster__mship_t *m, int64_t now)
{
    int64_t late = now - m->expected;
    if (!m->started || late <= m->p.loop_lag_tolerance_ms)
        return;
    m->st.stalls++;
    m->probe.active = false;
    for (size_t i = 0; i < MS_MAX_HELPERS; i++)
        m->helpers[i].used = false;
    for (size_t i = 0; i < m->nsusp; i++)
        m->susp[i].s.start_ms = now;
    ms__sbr_stalled(m, now);
    cluster__awareness_apply(&m->aw, 1);
    m->next_probe = now + cluster__awareness_scale(&m->aw, m->p.probe_interval_ms);
    m->expected = now;
    ukko_logf(UKKO_LOG_WARN, "cluster", UKKO_FIELDS(UKKO_FI("stalled_ms", late)),
              "this node's loop stalled for %lld ms: no member is blamed for what timed out "
              "meanwhile",
              (long long)late);
}

/* ------------------------------------------------------------ time */

static void reap(cluster__mship_t *m, int64_t now)
{
    uint32_t now_ds = deciseconds(m, now);
    uint32_t after_ds = (uint32_t)(m->p.removed_after_ms / 100);
    for (size_t i = 0; i < m->ndown;) {
        cluster__member_t *mem = ms__find_addr(m, m->downlist[i]);
        if (!mem || mem->status < UKKO_MEMBER_DOWN) {
            if (mem)
                mem->flags &= (uint8_t)~MF_DOWNLIST;
            m->downlist[i] = m->downlist[--m->ndown];
            continue;
        }
        if (mem->ident != m->self_ident &&
            (mem->status == UKKO_MEMBER_REMOVED || now_ds - mem->changed_ds >= after_ds)) {
            m->downlist[i] = m->downlist[--m->ndown];
            remove_member(m, mem);
            continue;
        }
        i++;
    }
}

/* A suspicion lasts until the suspect refutes it or is Down: a suspicion
 * that ran out and downed its member on both sides of a partition would
 * make two clusters. Downing the unreachable is the split-brain resolver's
 * (sbr.c), once the view has been stable. Meanwhile the suspect is told,
 * once a probe interval: gossip about it may have run dry (a healed
 * partition), and its answer carries the refutation straight back. */
static void suspicion_tick(cluster__mship_t *m, int64_t now)
{
    for (size_t i = 0; i < m->nsusp; i++) {
        ms_susp_t *s = &m->susp[i];
        cluster__member_t *mem = ms__find_addr(m, s->addr);
        if (mem && now - s->told >= m->p.probe_interval_ms) {
            s->told = now;
            ms__tell_suspect(m, mem);
        }
    }
}

int64_t cluster__mship_next(const cluster__mship_t *m)
{
    int64_t t = m->next_gossip;
#define EARLIER(x)                                                                                 \
    do {                                                                                           \
        if ((x) < t)                                                                               \
            t = (x);                                                                               \
    } while (0)
    if (!m->in_cluster) {
        EARLIER(m->next_join);
        return t;
    }
    if (cluster__mship_self_status(m) >= UKKO_MEMBER_DOWN)
        return t; /* out of the cluster: nothing to probe or decide */
    if (m->probe.active)
        EARLIER(m->probe.indirect_sent ? m->probe.t_end : m->probe.t_direct);
    else
        EARLIER(m->next_probe);
    EARLIER(m->next_sync);
    EARLIER(ms__sbr_next(m));
    if (m->npending)
        EARLIER(m->next_poll);
    if (m->ndown)
        EARLIER(m->next_reap);
    for (size_t i = 0; i < m->nsusp; i++)
        EARLIER(m->susp[i].told + m->p.probe_interval_ms);
    for (size_t i = 0; i < MS_MAX_HELPERS; i++)
        if (m->helpers[i].used)
            EARLIER(m->helpers[i].deadline);
#undef EARLIER
    return t;
}

int64_t cluster__mship_tick(cluster__mship_t *m)
{
    int64_t now = ms__now(m);
    check_stall(m, now);
    if (!m->in_cluster) {
        ms__join_tick(m, now);
    } else if (cluster__mship_self_status(m) < UKKO_MEMBER_DOWN) {
        ms__probe_tick(m, now);
        suspicion_tick(m, now);
        ms__sbr_tick(m, now);
        if (m->npending && now >= m->next_poll)
            ms__leader_tick(m, now);
        if (now >= m->next_sync)
            ms__sync_tick(m, now);
        if (now >= m->next_reap) {
            reap(m, now);
            m->next_reap = now + 1000;
        }
    }
    if (now >= m->next_gossip) {
        ms__gossip_tick(m, now);
        m->next_gossip = now + m->p.gossip_interval_ms;
    }
    int64_t next = cluster__mship_next(m);
    if (next <= now)
        next = now + 1;
    m->expected = next;
    return next;
}

/* --------------------------------------------------------- receive */

void ms__header(cluster__mship_t *m, ukko_wire_w_t *w, uint8_t kind, uint8_t flags)
{
    ukko_wire_hdr_t h;
    memset(&h, 0, sizeof(h));
    h.kind = kind;
    h.flags = (uint8_t)(flags | (m->in_cluster ? UKKO_WIRE_H_MEMBER : 0));
    h.from = *cluster__ids_addr_at(m->ids, m->self_addr);
    memcpy(h.uid, m->uid, CLUSTER__UID_LEN);
    h.digest = m->digest;
    ukko_wire_put_header(w, &h);
}

void cluster__mship_recv(cluster__mship_t *m, const uint8_t *body, size_t n)
{
    int64_t now = ms__now(m);
    check_stall(m, now);
    ukko_wire_hdr_t h;
    if (ukko_wire_decode_header(body, n, &h) < 0 || h.kind != UKKO_WIRE_GOSSIP) {
        m->st.drop_decode++;
        return;
    }
    m->st.pkts_in++;
    m->st.bytes_in += n + UKKO_WIRE_SEAL_OVERHEAD;
    uint32_t from_addr = cluster__ids_addr(m->ids, &h.from);
    if (from_addr == UINT32_MAX || from_addr == m->self_addr)
        return;
    cluster__member_t *sender = ms__find_addr(m, from_addr);
    if (sender && !memcmp(ms__ident(m, sender)->uid, h.uid, CLUSTER__UID_LEN)) {
        if (sender->status >= UKKO_MEMBER_DOWN) {
            /* A member we hold Down is talking: tell it, once a second. */
            if (now - m->last_dead_reply >= 1000) {
                m->last_dead_reply = now;
                ms__send_dead_to(m, &h.from, sender->ident);
            }
            return;
        }
        if (sender->digest != h.digest)
            m->view_seq++;
        sender->digest = h.digest;
        sender->heard_ds = deciseconds(m, now);
        /* Views that stay different for 2 s (longer than gossip needs to
         * spread one change) catch up by a full-state sync with the sender,
         * at most once a second (1 ms per member beyond 1,000): a cold start
         * of many nodes converges by anti-entropy instead of waiting on
         * piggybacked gossip alone, while single changes cost no sync. */
        if (h.digest == m->digest)
            m->diverged_since = 0;
        else if (!m->diverged_since)
            m->diverged_since = now;
        if (h.digest != m->digest && m->in_cluster && now - m->diverged_since >= 2000 &&
            now >= m->next_catchup && sender->status < UKKO_MEMBER_DOWN &&
            (h.flags & UKKO_WIRE_H_MEMBER)) {
            m->next_catchup = now + (m->nmem > 1000 ? (int64_t)m->nmem : 1000);
            ms__sync_start(m, from_addr, false);
        }
    }
    char roles[UKKO_WIRE_ROLES_BUF];
    size_t off = sizeof(ukko_wire_header_t);
    ukko_wire_msg_t msg;
    int rc;
    while ((rc = ukko_wire_next(body, n, &off, &msg, roles, sizeof(roles))) > 0) {
        switch (msg.type) {
        case UKKO_MSG_PING: ms__on_ping(m, &h, &msg); break;
        case UKKO_MSG_INDIRECT:
            if (m->in_cluster)
                ms__on_indirect(m, &h, &msg);
            break;
        case UKKO_MSG_ACK: ms__on_ack(m, &msg); break;
        case UKKO_MSG_NACK: ms__on_nack(m, &msg); break;
        /* Updates count only inside a cluster: a node that has not joined
         * learns the members from its join reply, not from strays. */
        case UKKO_MSG_ALIVE:
            if (m->in_cluster)
                ms__apply_alive(m, &msg);
            break;
        case UKKO_MSG_SUSPECT:
            if (m->in_cluster)
                ms__apply_suspect(m, &msg);
            break;
        case UKKO_MSG_DEAD:
            if (m->in_cluster)
                ms__apply_dead(m, &msg);
            break;
        default: break;
        }
    }
    if (rc < 0)
        m->st.drop_decode++;
}

void cluster__mship_leave(cluster__mship_t *m)
{
    cluster__member_t *self = ms__self(m);
    if (!self || self->status >= UKKO_MEMBER_EXITING)
        return;
    ms__set_status(m, self, UKKO_MEMBER_EXITING);
    /* Tell a few members directly; gossip carries it to the rest. */
    size_t told = 0;
    for (size_t i = 0; i < m->nmem && told < 8; i++) {
        cluster__member_t *mem = &m->mem[i];
        if (ms__usable(m, mem) && mem->live == CLUSTER__ALIVE) {
            ms__send_alive_to(m, ms__addr(m, mem));
            told++;
        }
    }
}

/* ---------------------------------------------------------- reading */

cluster__stats_t *cluster__mship_stats(cluster__mship_t *m)
{
    return &m->st;
}

uint32_t cluster__mship_self(const cluster__mship_t *m)
{
    return m->self_ident;
}

int cluster__mship_self_status(const cluster__mship_t *m)
{
    if (m->self_addr >= m->slotcap || !m->slot[m->self_addr])
        return UKKO_MEMBER_REMOVED;
    return m->mem[m->slot[m->self_addr] - 1].status;
}

bool cluster__mship_in_cluster(const cluster__mship_t *m)
{
    return m->in_cluster;
}

size_t cluster__mship_count(const cluster__mship_t *m)
{
    return m->nmem;
}

const cluster__member_t *cluster__mship_at(const cluster__mship_t *m, size_t i)
{
    return i < m->nmem ? &m->mem[i] : NULL;
}

const cluster__member_t *cluster__mship_find(const cluster__mship_t *m, const cluster__addr_t *a)
{
    for (size_t i = 0; i < cluster__ids_addr_count(m->ids); i++) {
        /* Addresses are few in a real node; the sim does not call this. */
        if (cluster__addr_eq(cluster__ids_addr_at(m->ids, (uint32_t)i), a))
            return (i < m->slotcap && m->slot[i]) ? &m->mem[m->slot[i] - 1] : NULL;
    }
    return NULL;
}

const cluster__suspicion_t *cluster__mship_suspicion(const cluster__mship_t *m,
                                                    const cluster__member_t *mem)
{
    return mem->susp ? &m->susp[mem->susp - 1].s : NULL;
}

uint64_t cluster__mship_digest(const cluster__mship_t *m)
{
    return m->digest;
}

uint64_t cluster__mship_view_seq(const cluster__mship_t *m)
{
    return m->view_seq;
}

int cluster__mship_awareness(const cluster__mship_t *m)
{
    return m->aw.score;
}

cluster__ids_t *cluster__mship_ids(const cluster__mship_t *m)
{
    return m->ids;
}

uint32_t cluster__mship_incarnation(const cluster__mship_t *m)
{
    return m->inc;
}

uint32_t cluster__mship_leader(const cluster__mship_t *m)
{
    /* Pekko's rule: the first reachable member in address order among Up
     * and Leaving ones; before any is Up, among the joining ones. */
    const cluster__member_t *best = NULL, *best_joining = NULL;
    for (size_t i = 0; i < m->nmem; i++) {
        const cluster__member_t *mem = &m->mem[i];
        if (mem->live != CLUSTER__ALIVE || mem->status >= UKKO_MEMBER_EXITING)
            continue;
        const cluster__member_t **slot =
            (mem->status == UKKO_MEMBER_UP || mem->status == UKKO_MEMBER_LEAVING) ? &best
                                                                                  : &best_joining;
        if (!*slot || cluster__addr_cmp(ms__addr(m, mem), ms__addr(m, *slot)) < 0)
            *slot = mem;
    }
    if (!best)
        best = best_joining;
    return best ? best->ident : UINT32_MAX;
}

size_t cluster__mship_watch_targets(const cluster__mship_t *m, uint32_t *addr_ids, size_t k)
{
    /* The k usable members next after this node in address order, wrapping
     * around: every member is then watched by its k predecessors. */
    const cluster__addr_t *self = cluster__ids_addr_at(m->ids, m->self_addr);
    size_t n = 0;
    for (int pass = 0; pass < 2 && n < k; pass++) {
        /* pass 0: addresses above ours; pass 1: from the lowest */
        const cluster__addr_t *floor = pass == 0 ? self : NULL;
        for (;;) {
            const cluster__member_t *best = NULL;
            for (size_t i = 0; i < m->nmem; i++) {
                const cluster__member_t *mem = &m->mem[i];
                if (!ms__usable(m, mem))
                    continue;
                const cluster__addr_t *a = ms__addr(m, mem);
                if (floor && cluster__addr_cmp(a, floor) <= 0)
                    continue;
                if (pass == 1 && cluster__addr_cmp(a, self) >= 0)
                    continue;
                if (!best || cluster__addr_cmp(a, ms__addr(m, best)) < 0)
                    best = mem;
            }
            if (!best || n == k)
                break;
            addr_ids[n++] = ms__ident(m, best)->addr;
            floor = ms__addr(m, best);
        }
    }
    return n;
}

static bool has_role(const char *roles, const char *role)
{
    size_t n = strlen(role);
    for (const char *p = roles; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, role, n))
            return true;
        p = c ? c + 1 : p + len;
    }
    return false;
}

uint32_t cluster__mship_oldest(const cluster__mship_t *m, const char *role)
{
    const cluster__member_t *best = NULL;
    for (size_t i = 0; i < m->nmem; i++) {
        const cluster__member_t *mem = &m->mem[i];
        if (mem->status < UKKO_MEMBER_UP || mem->status >= UKKO_MEMBER_DOWN)
            continue;
        const cluster__ident_t *id = ms__ident(m, mem);
        if (role && !has_role(id->roles, role))
            continue;
        if (!best)
            best = mem;
        else {
            const cluster__ident_t *b = ms__ident(m, best);
            if (id->started_ms < b->started_ms ||
                (id->started_ms == b->started_ms &&
                 cluster__addr_cmp(ms__addr(m, mem), ms__addr(m, best)) < 0))
                best = mem;
        }
    }
    return best ? best->ident : UINT32_MAX;
}
