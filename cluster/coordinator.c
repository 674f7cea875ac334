/* coordinator.c: the shard coordinator as a pure state machine: per entity
 * type a table shard -> owner with a version, allocation to the least
 * loaded Up member (rendezvous hash breaks ties), a bounded rebalance, the
 * hand-off steps, the margin before a Down member's shards move, and the
 * rebuild from every member's report when this node becomes coordinator.
 * Clock and outbox come from its env, so unit tests run this very code.
 * One thread. Invariants: a shard gets a new owner only after its old one
 * reported it STOPPED, or was gone for down-removal-margin; while
 * rebuilding nothing is allocated, and afterwards only shards no member
 * reported running. */
#include "sharding_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CS_FREE = 0, CS_RUN = 1, CS_MOVE = 2 };

typedef struct co_shard {
    uint32_t owner;     /* SH_NONE when free */
    uint8_t state;      /* CS_* */
    int64_t since;      /* MOVE: when the hand-off began */
    int64_t sent;       /* MOVE: when HANDOFF was last sent (0: not yet) */
    int64_t not_before; /* FREE: not allocated before */
    uint32_t avoid;     /* FREE after a refusal: another member if there is one */
    uint32_t prev;      /* FREE: who had it, for the log line */
    int64_t ho_ms;      /* FREE: how long its hand-off took (-1: none) */
    const char *why;    /* FREE: why it is free (static) */
} co_shard_t;

typedef struct co_type {
    char name[SH_MAX_NAME + 1];
    int32_t n;
    uint64_t version;
    uint64_t hash;
    co_shard_t *sh;
    bool changed;
} co_type_t;

typedef struct co_mem {
    uint32_t ident;
    uint8_t status;
    bool reachable, in_view, going_away, waiting;
    uint64_t rank;
    int64_t down_seen; /* 0: not gone */
    int64_t asked;     /* rebuild: when REPORT_REQ was last sent */
} co_mem_t;

struct shard__co {
    shard__co_params_t p;
    shard__co_env_t env;
    uint32_t self;
    co_type_t types[SH_MAX_TYPES];
    size_t ntypes;
    co_mem_t *mem;
    size_t nmem, memcap;
    bool coordinator, rebuilding, active, prior;
    uint64_t nonce, nonces;
    int64_t activated, next_rebalance, next_broadcast;
    uint64_t handoffs;
};

static int64_t now_of(shard__co_t *co)
{
    return co->env.now(co->env.ud);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t score(const co_type_t *ty, int32_t s, uint64_t rank)
{
    return mix64(rank ^ mix64(ty->hash + (uint64_t)s * 0x9e3779b97f4a7c15ULL));
}

shard__co_t *shard__co_new(const shard__co_params_t *p, const shard__co_env_t *env,
                           uint32_t self)
{
    shard__co_t *co = calloc(1, sizeof(*co));
    if (!co)
        return NULL;
    co->p = *p;
    if (co->p.max_simultaneous < 1)
        co->p.max_simultaneous = 1;
    if (co->p.handoff_timeout_ms < 10)
        co->p.handoff_timeout_ms = 10;
    co->env = *env;
    co->self = self;
    return co;
}

void shard__co_free(shard__co_t *co)
{
    if (!co)
        return;
    for (size_t t = 0; t < co->ntypes; t++)
        free(co->types[t].sh);
    free(co->mem);
    free(co);
}

static void reset_type(co_type_t *ty)
{
    for (int32_t s = 0; s < ty->n; s++) {
        ty->sh[s] = (co_shard_t){.owner = SH_NONE, .state = CS_FREE, .avoid = SH_NONE,
                                 .prev = SH_NONE, .ho_ms = -1, .why = "allocated"};
    }
}

int shard__co_set_shards(shard__co_t *co, size_t t, int32_t nshards)
{
    if (t >= co->ntypes || nshards < 0 || nshards > SH_MAX_SHARDS)
        return UKKO_EINVAL;
    co_type_t *ty = &co->types[t];
    if (ty->n == nshards)
        return 0;
    if (ty->n != 0)
        return UKKO_EINVAL; /* a shard count never changes under running shards */
    ty->sh = calloc((size_t)nshards ? (size_t)nshards : 1, sizeof(*ty->sh));
    if (!ty->sh)
        return UKKO_ENOMEM;
    ty->n = nshards;
    reset_type(ty);
    return 0;
}

int shard__co_add_type(shard__co_t *co, const char *name, int32_t nshards)
{
    if (co->ntypes >= SH_MAX_TYPES || strlen(name) > SH_MAX_NAME)
        return UKKO_E2BIG;
    co_type_t *ty = &co->types[co->ntypes];
    memset(ty, 0, sizeof(*ty));
    snprintf(ty->name, sizeof(ty->name), "%s", name);
    ty->hash = (uint64_t)(uint32_t)sh_murmur2(name, strlen(name)) * 0x100000001b3ULL;
    size_t t = co->ntypes++;
    if (nshards > 0) {
        int rc = shard__co_set_shards(co, t, nshards);
        if (rc < 0) {
            co->ntypes--;
            return rc;
        }
    }
    return (int)t;
}

static co_mem_t *mem_find(shard__co_t *co, uint32_t ident)
{
    for (size_t i = 0; i < co->nmem; i++)
        if (co->mem[i].ident == ident)
            return &co->mem[i];
    return NULL;
}

static co_mem_t *mem_add(shard__co_t *co, uint32_t ident)
{
    if (co->nmem == co->memcap) {
        size_t cap = co->memcap ? co->memcap * 2 : 16;
        co_mem_t *m = realloc(co->mem, cap * sizeof(*m));
        if (!m) {
            ukko_log(UKKO_LOG_ERROR, "sharding", "out of memory in the coordinator");
            abort();
        }
        co->mem = m;
        co->memcap = cap;
    }
    co_mem_t *m = &co->mem[co->nmem++];
    memset(m, 0, sizeof(*m));
    m->ident = ident;
    return m;
}

static bool gone(const co_mem_t *m)
{
    return m->down_seen != 0;
}

static bool eligible(const co_mem_t *m)
{
    return m->in_view && !gone(m) && m->status == UKKO_MEMBER_UP && m->reachable &&
           !m->going_away;
}

static bool owns_any(const shard__co_t *co, uint32_t ident)
{
    for (size_t t = 0; t < co->ntypes; t++)
        for (int32_t s = 0; s < co->types[t].n; s++)
            if (co->types[t].sh[s].owner == ident)
                return true;
    return false;
}

static void begin_rebuild(shard__co_t *co, int64_t now)
{
    co->rebuilding = true;
    co->active = false;
    co->prior = false;
    co->activated = now;
    co->nonce = ((uint64_t)now << 20) ^ (uint64_t)co->self << 8 ^ ++co->nonces;
    for (size_t t = 0; t < co->ntypes; t++)
        reset_type(&co->types[t]);
    for (size_t i = 0; i < co->nmem; i++) {
        co_mem_t *m = &co->mem[i];
        m->waiting = m->in_view && !gone(m);
        m->asked = 0;
        if (gone(m))
            co->prior = true; /* a member went away: it may have run shards */
    }
    ukko_logf(UKKO_LOG_INFO, "sharding", UKKO_FIELDS(UKKO_FI("types", co->ntypes)),
              "this node is the shard coordinator: asking every member which shards it runs");
}

/* Every awaited report came (or its member went): the table is whole. */
static void maybe_end_rebuild(shard__co_t *co, int64_t now)
{
    if (!co->rebuilding)
        return;
    for (size_t i = 0; i < co->nmem; i++)
        if (co->mem[i].waiting)
            return;
    co->rebuilding = false;
    co->active = true;
    int64_t nb = co->prior ? co->activated + co->p.down_removal_margin_ms : 0;
    size_t known = 0, unknown = 0;
    for (size_t t = 0; t < co->ntypes; t++) {
        co_type_t *ty = &co->types[t];
        ty->version++;
        ty->changed = true;
        for (int32_t s = 0; s < ty->n; s++) {
            if (ty->sh[s].state == CS_FREE) {
                ty->sh[s].not_before = nb;
                ty->sh[s].why = co->prior ? "not reported by any member after the coordinator "
                                            "changed"
                                          : "allocated";
                unknown++;
            } else {
                known++;
            }
        }
    }
    co->next_rebalance = now + co->p.rebalance_interval_ms;
    ukko_logf(UKKO_LOG_INFO, "sharding",
              UKKO_FIELDS(UKKO_FI("running", known), UKKO_FI("unallocated", unknown),
                          UKKO_FB("waits_margin", nb > now)),
              "shard table rebuilt from the members' reports: %zu shard(s) running, %zu to "
              "allocate%s",
              known, unknown, nb > now ? " after cluster.sharding.down-removal-margin" : "");
}

void shard__co_view(shard__co_t *co, const shard__co_member_t *v, size_t n, bool coordinator)
{
    int64_t now = now_of(co);
    for (size_t i = 0; i < co->nmem; i++)
        co->mem[i].in_view = false;
    for (size_t i = 0; i < n; i++) {
        co_mem_t *m = mem_find(co, v[i].ident);
        if (!m)
            m = mem_add(co, v[i].ident);
        m->in_view = true;
        m->status = v[i].status;
        m->reachable = v[i].reachable;
        m->rank = v[i].rank;
        if (m->status >= UKKO_MEMBER_DOWN && !m->down_seen)
            m->down_seen = now;
    }
    for (size_t i = 0; i < co->nmem; i++) {
        co_mem_t *m = &co->mem[i];
        if (!m->in_view && !m->down_seen)
            m->down_seen = now;
        if (gone(m) && m->waiting) {
            m->waiting = false;
            co->prior = true; /* it cannot answer; what it ran waits the margin */
        }
    }
    /* Forget gone members that own nothing (nothing waits on them). */
    for (size_t i = 0; i < co->nmem;) {
        if (gone(&co->mem[i]) && !co->mem[i].in_view && !owns_any(co, co->mem[i].ident)) {
            co->mem[i] = co->mem[--co->nmem];
            continue;
        }
        i++;
    }
    if (coordinator && !co->coordinator) {
        co->coordinator = true;
        begin_rebuild(co, now);
    } else if (!coordinator && co->coordinator) {
        co->coordinator = co->rebuilding = co->active = false;
        for (size_t t = 0; t < co->ntypes; t++)
            reset_type(&co->types[t]);
        ukko_log(UKKO_LOG_INFO, "sharding",
                 "this node is no longer the shard coordinator (an older member is Up)");
    }
    maybe_end_rebuild(co, now);
}

static bool type_ok(const shard__co_t *co, size_t t, int32_t s)
{
    return t < co->ntypes && s >= 0 && s < co->types[t].n;
}

void shard__co_report(shard__co_t *co, uint32_t from, uint64_t nonce, uint8_t flags,
                      const shard__co_entry_t *e, size_t n)
{
    if (!co->coordinator || nonce != co->nonce)
        return; /* an answer to someone else, or to an earlier reign */
    co_mem_t *m = mem_find(co, from);
    if (!m || gone(m))
        return;
    int64_t now = now_of(co);
    if (flags & SH_REPORT_SEEN_TABLE)
        co->prior = true;
    if (flags & SH_REPORT_GOING_AWAY)
        m->going_away = true;
    for (size_t i = 0; i < n; i++) {
        if (!type_ok(co, e[i].t, e[i].shard))
            continue;
        co_type_t *ty = &co->types[e[i].t];
        co_shard_t *sh = &ty->sh[e[i].shard];
        if (sh->owner == from)
            continue;
        if (sh->owner != SH_NONE) {
            /* Two members say they run it: should never be. Keep the first
             * and have the other hand it off (its STOPPED changes nothing). */
            ukko_logf(UKKO_LOG_ERROR, "sharding",
                      UKKO_FIELDS(UKKO_FS("type", ty->name), UKKO_FI("shard", e[i].shard)),
                      "shard %s/%d is reported running on two members: stopping the second",
                      ty->name, (int)e[i].shard);
            co->env.send_handoff(co->env.ud, from, e[i].t, e[i].shard);
            continue;
        }
        sh->owner = from;
        sh->state = e[i].state == SH_STOPPING ? CS_MOVE : CS_RUN;
        sh->since = now;
        sh->sent = 0;
        ty->changed = true;
        if (co->active)
            ty->version++;
    }
    m->waiting = false;
    maybe_end_rebuild(co, now);
}

static void free_shard(co_type_t *ty, int32_t s, int64_t ho_ms, const char *why)
{
    co_shard_t *sh = &ty->sh[s];
    sh->prev = sh->owner;
    sh->owner = SH_NONE;
    sh->state = CS_FREE;
    sh->not_before = 0;
    sh->avoid = SH_NONE;
    sh->ho_ms = ho_ms;
    sh->why = why;
    ty->changed = true;
    ty->version++;
}

void shard__co_stopped(shard__co_t *co, uint32_t from, size_t t, int32_t s)
{
    if (!co->coordinator || !type_ok(co, t, s))
        return;
    co_shard_t *sh = &co->types[t].sh[s];
    if (sh->owner != from || sh->state == CS_FREE)
        return; /* a late or duplicate answer */
    int64_t now = now_of(co);
    if (sh->state == CS_MOVE)
        co->handoffs++;
    free_shard(&co->types[t], s, sh->state == CS_MOVE ? now - sh->since : -1,
               sh->state == CS_MOVE ? sh->why : "stopped by its owner");
    if (co->active)
        shard__co_tick(co);
}

void shard__co_refused(shard__co_t *co, uint32_t from, size_t t, int32_t s)
{
    if (!co->coordinator || !type_ok(co, t, s))
        return;
    co_shard_t *sh = &co->types[t].sh[s];
    if (sh->owner != from || sh->state != CS_RUN)
        return;
    free_shard(&co->types[t], s, -1, "refused by its last owner");
    sh->avoid = from;
    sh->not_before = now_of(co) + 1000; /* not a tight loop when every member refuses */
    if (co->active)
        shard__co_tick(co);
}

void shard__co_going_away(shard__co_t *co, uint32_t from)
{
    co_mem_t *m = mem_find(co, from);
    if (!m)
        m = mem_add(co, from);
    if (!m->going_away)
        ukko_logf(UKKO_LOG_INFO, "sharding", UKKO_FIELDS(UKKO_FI("member", from)),
                  "a region is going away: handing off all of its shards");
    m->going_away = true;
    if (co->active)
        shard__co_tick(co);
}

static void begin_move(co_type_t *ty, int32_t s, int64_t now)
{
    co_shard_t *sh = &ty->sh[s];
    sh->state = CS_MOVE;
    sh->since = now;
    sh->sent = 0;
    ty->changed = true;
    ty->version++;
}

/* The least loaded eligible member for shard s (ties: rendezvous score),
 * or NULL; load[i] is the count of member i. */
static co_mem_t *pick(shard__co_t *co, const co_type_t *ty, int32_t s, const size_t *load,
                      uint32_t avoid)
{
    co_mem_t *best = NULL;
    size_t bl = 0;
    uint64_t bs = 0;
    for (int pass = 0; pass < 2 && !best; pass++) {
        for (size_t i = 0; i < co->nmem; i++) {
            co_mem_t *m = &co->mem[i];
            if (!eligible(m) || (pass == 0 && m->ident == avoid))
                continue;
            uint64_t sc = score(ty, s, m->rank);
            if (!best || load[i] < bl || (load[i] == bl && sc > bs)) {
                best = m;
                bl = load[i];
                bs = sc;
            }
        }
    }
    return best;
}

static void loads(const shard__co_t *co, const co_type_t *ty, size_t *load)
{
    memset(load, 0, co->nmem * sizeof(*load));
    for (int32_t s = 0; s < ty->n; s++) {
        if (ty->sh[s].owner == SH_NONE)
            continue;
        for (size_t i = 0; i < co->nmem; i++)
            if (co->mem[i].ident == ty->sh[s].owner) {
                load[i]++;
                break;
            }
    }
}

/* Pekko's LeastShardAllocationStrategy: move shards only from members above
 * ceil(S/N), or, when none is, one each from members at ceil while some
 * member is below floor(S/N); at most max_simultaneous under way. */
static void rebalance(shard__co_t *co, co_type_t *ty, size_t *load, int64_t now)
{
    size_t n = 0, inflight = 0;
    for (size_t i = 0; i < co->nmem; i++)
        n += eligible(&co->mem[i]);
    for (int32_t s = 0; s < ty->n; s++)
        inflight += ty->sh[s].state == CS_MOVE || ty->sh[s].state == CS_FREE;
    if (n == 0 || inflight >= (size_t)co->p.max_simultaneous)
        return;
    size_t budget = (size_t)co->p.max_simultaneous - inflight;
    size_t S = (size_t)ty->n, hi = (S + n - 1) / n, lo = S / n;
    size_t deficit = 0;
    bool over = false;
    for (size_t i = 0; i < co->nmem; i++) {
        if (!eligible(&co->mem[i]))
            continue;
        over = over || load[i] > hi;
        if (load[i] < lo)
            deficit += lo - load[i];
    }
    if (!over && deficit == 0)
        return;
    for (size_t i = 0; i < co->nmem && budget > 0; i++) {
        co_mem_t *m = &co->mem[i];
        if (!eligible(m))
            continue;
        size_t give = over ? (load[i] > hi ? load[i] - hi : 0) : (load[i] > lo ? 1 : 0);
        while (give > 0 && budget > 0 && (over || deficit > 0)) {
            /* its running shard it would keep least (lowest score) */
            int32_t victim = -1;
            uint64_t vs = 0;
            for (int32_t s = 0; s < ty->n; s++) {
                if (ty->sh[s].owner != m->ident || ty->sh[s].state != CS_RUN)
                    continue;
                uint64_t sc = score(ty, s, m->rank);
                if (victim < 0 || sc < vs) {
                    victim = s;
                    vs = sc;
                }
            }
            if (victim < 0)
                break;
            begin_move(ty, victim, now);
            ty->sh[victim].why = "rebalance";
            give--;
            budget--;
            if (!over)
                deficit--;
        }
    }
}

int64_t shard__co_tick(shard__co_t *co)
{
    int64_t now = now_of(co);
    int64_t next = now + 1000;
    if (!co->coordinator)
        return next;
    if (co->rebuilding) {
        for (size_t i = 0; i < co->nmem; i++) {
            co_mem_t *m = &co->mem[i];
            if (!m->waiting)
                continue;
            if (!m->asked || now - m->asked >= co->p.handoff_timeout_ms) {
                m->asked = now;
                co->env.send_report_req(co->env.ud, m->ident, co->nonce);
            }
            if (m->asked + co->p.handoff_timeout_ms < next)
                next = m->asked + co->p.handoff_timeout_ms;
        }
        return next;
    }
    /* Members asked late (joined during the rebuild, or new since): a
     * report is how a region learns whom to obey; ask once each. */
    for (size_t i = 0; i < co->nmem; i++) {
        co_mem_t *m = &co->mem[i];
        if (m->in_view && !gone(m) && !m->asked) {
            m->asked = now;
            co->env.send_report_req(co->env.ud, m->ident, co->nonce);
        }
    }
    size_t *load = calloc(co->nmem ? co->nmem : 1, sizeof(*load));
    if (!load)
        return now + 100;
    bool do_rebalance = now >= co->next_rebalance;
    if (do_rebalance)
        co->next_rebalance = now + co->p.rebalance_interval_ms;
    if (co->next_rebalance < next)
        next = co->next_rebalance;
    for (size_t t = 0; t < co->ntypes; t++) {
        co_type_t *ty = &co->types[t];
        for (int32_t s = 0; s < ty->n; s++) {
            co_shard_t *sh = &ty->sh[s];
            if (sh->owner == SH_NONE)
                continue;
            co_mem_t *m = mem_find(co, sh->owner);
            if (!m || gone(m)) {
                int64_t due = m ? m->down_seen + co->p.down_removal_margin_ms : now;
                if (now >= due) {
                    /* Gone for the margin: the other side of any cut has
                     * decided by now, and a downed node stopped its shards. */
                    free_shard(ty, s, -1, "its member is down");
                } else if (due < next) {
                    next = due;
                }
                continue;
            }
            if (m->going_away && sh->state == CS_RUN) {
                begin_move(ty, s, now);
                sh->why = "region going away";
            }
        }
        loads(co, ty, load);
        for (int32_t s = 0; s < ty->n; s++) {
            co_shard_t *sh = &ty->sh[s];
            if (sh->state != CS_FREE)
                continue;
            if (sh->not_before > now) {
                if (sh->not_before < next)
                    next = sh->not_before;
                continue;
            }
            co_mem_t *m = pick(co, ty, s, load, sh->avoid);
            if (!m)
                continue;
            sh->owner = m->ident;
            sh->state = CS_RUN;
            sh->since = now;
            ty->changed = true;
            ty->version++;
            load[m - co->mem]++;
            if (co->env.moved)
                co->env.moved(co->env.ud, t, s, sh->prev, m->ident, sh->ho_ms, sh->why);
        }
        if (do_rebalance)
            rebalance(co, ty, load, now);
    }
    free(load);
    /* Tables first, then hand-offs: on each link the owner reads the
     * table that marks the shard moving before it is told to stop it. */
    bool all = now >= co->next_broadcast;
    if (all)
        co->next_broadcast = now + 1000;
    if (co->next_broadcast < next)
        next = co->next_broadcast;
    for (size_t t = 0; t < co->ntypes; t++) {
        co_type_t *ty = &co->types[t];
        if (!ty->changed && !all)
            continue;
        ty->changed = false;
        if (ty->n == 0)
            continue;
        for (size_t i = 0; i < co->nmem; i++)
            if (co->mem[i].in_view && !gone(&co->mem[i]))
                co->env.send_table(co->env.ud, co->mem[i].ident, t);
    }
    for (size_t t = 0; t < co->ntypes; t++) {
        co_type_t *ty = &co->types[t];
        for (int32_t s = 0; s < ty->n; s++) {
            co_shard_t *sh = &ty->sh[s];
            if (sh->state != CS_MOVE)
                continue;
            co_mem_t *m = mem_find(co, sh->owner);
            if (!m || gone(m))
                continue; /* it will not answer: the margin frees the shard */
            if (!sh->sent || now - sh->sent >= co->p.handoff_timeout_ms) {
                if (sh->sent)
                    ukko_logf(UKKO_LOG_WARN, "sharding",
                              UKKO_FIELDS(UKKO_FS("type", ty->name), UKKO_FI("shard", s)),
                              "hand-off of shard %s/%d not done after %lld ms: asking again",
                              ty->name, (int)s, (long long)(now - sh->since));
                sh->sent = now;
                co->env.send_handoff(co->env.ud, sh->owner, t, s);
            }
            if (sh->sent + co->p.handoff_timeout_ms < next)
                next = sh->sent + co->p.handoff_timeout_ms;
        }
    }
    return next;
}

bool shard__co_active(const shard__co_t *co)
{
    return co->active;
}

bool shard__co_rebuilding(const shard__co_t *co)
{
    return co->rebuilding;
}

size_t shard__co_types(const shard__co_t *co)
{
    return co->ntypes;
}

const char *shard__co_type_name(const shard__co_t *co, size_t t)
{
    return t < co->ntypes ? co->types[t].name : "";
}

int32_t shard__co_nshards(const shard__co_t *co, size_t t)
{
    return t < co->ntypes ? co->types[t].n : 0;
}

uint64_t shard__co_version(const shard__co_t *co, size_t t)
{
    return t < co->ntypes ? co->types[t].version : 0;
}

uint32_t shard__co_owner(const shard__co_t *co, size_t t, int32_t s, bool *moving)
{
    if (moving)
        *moving = false;
    if (!type_ok(co, t, s))
        return SH_NONE;
    const co_shard_t *sh = &co->types[t].sh[s];
    if (moving)
        *moving = sh->state == CS_MOVE;
    return sh->owner;
}

size_t shard__co_fencers(const shard__co_t *co, uint32_t *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < co->nmem && k < cap; i++)
        if (co->mem[i].in_view && !gone(&co->mem[i]))
            out[k++] = co->mem[i].ident;
    return k;
}

size_t shard__co_load(const shard__co_t *co, size_t t, uint32_t ident)
{
    size_t n = 0;
    if (t >= co->ntypes)
        return 0;
    for (int32_t s = 0; s < co->types[t].n; s++)
        n += co->types[t].sh[s].owner == ident;
    return n;
}

uint64_t shard__co_handoffs(const shard__co_t *co)
{
    return co->handoffs;
}
