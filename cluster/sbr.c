/* sbr.c: the split-brain resolver (Pekko's; keys cluster.split-brain-resolver.*).
 * Once the members and who of them is unreachable have not changed for
 * stable-after, the strategy decides from this node's view which side of a
 * partition stays: the leader of a side that stays downs the unreachable, and
 * every node of a side that goes downs itself and stops being ready. One
 * thread per membership instance. Invariant: the decision is a pure function
 * of the view that both sides compute alike, so at most one side stays. */
#include "mship.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- settings */

static const char *const strategy_names[] = {"keep-majority", "static-quorum", "keep-oldest",
                                             "down-all", NULL};

const char *cluster__sbr_strategy_name(int strategy)
{
    return strategy >= 0 && strategy <= CLUSTER__SBR_DOWN_ALL_NODES ? strategy_names[strategy] : "?";
}

const char *cluster__sbr_decision_name(cluster__sbr_decision_t d)
{
    switch (d) {
    case CLUSTER__SBR_DOWN_UNREACHABLE: return "down-unreachable";
    case CLUSTER__SBR_DOWN_REACHABLE: return "down-reachable";
    case CLUSTER__SBR_DOWN_ALL: return "down-all";
    default: return "none";
    }
}

static int check_unstable(const cJSON *v, char *why, size_t whylen)
{
    int64_t ms = 0;
    if (cJSON_IsString(v) &&
        (!strcmp(v->valuestring, "on") || !strcmp(v->valuestring, "off") ||
         (ukko_parse_duration(v->valuestring, &ms) == 0 && ms > 0 && ms <= 3600000)))
        return 0;
    snprintf(why, whylen,
             "\"on\" (3/4 of stable-after, at least 4s), \"off\", or a duration from 1ms to 1h "
             "such as \"10s\"");
    return UKKO_EINVAL;
}

static int check_role(const cJSON *v, char *why, size_t whylen)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : "";
    size_t n = strlen(s);
    bool ok = n <= CLUSTER__MAX_ROLE_LEN;
    for (size_t i = 0; ok && i < n; i++)
        ok = s[i] > 0x20 && s[i] < 0x7f && s[i] != ',';
    if (!ok) {
        snprintf(why, whylen,
                 "\"\" (every member counts) or one role of cluster.roles: at most %d printable "
                 "characters without spaces or commas",
                 CLUSTER__MAX_ROLE_LEN);
        return UKKO_EINVAL;
    }
    return 0;
}

#define SB(f) offsetof(ukko_cluster_config_t, sbr.f)
static const ukko_cfg_key_t sbr_keys[] = {
    {"cluster.split-brain-resolver.active-strategy", UKKO_CFG_ENUM, SB(strategy),
     "\"keep-majority\"", 0, 0, strategy_names, NULL,
     "Which side of a network partition stays: the majority, a side with quorum-size members, "
     "the side of the oldest member, or none (see docs/membership.md)."},
    {"cluster.split-brain-resolver.stable-after", UKKO_CFG_DURATION, SB(stable_after_ms),
     "\"7s\"", 100, 3600000, NULL, NULL,
     "Decide once the members and who is unreachable have not changed for this long; a "
     "crashed member is downed about this long after it is found unreachable."},
    {"cluster.split-brain-resolver.down-all-when-unstable", UKKO_CFG_STRING,
     SB(down_all_when_unstable), "\"on\"", 0, 0, NULL, check_unstable,
     "Down every node when reachability keeps changing for stable-after plus this (\"on\": "
     "3/4 of stable-after, at least 4s; \"off\"; or a duration)."},
    {"cluster.split-brain-resolver.static-quorum.quorum-size", UKKO_CFG_INT, SB(quorum_size),
     "0", 0, 100000, NULL, NULL,
     "static-quorum: the side with at least this many members stays (required with that "
     "strategy; keep the cluster at most 2 * quorum-size - 1)."},
    {"cluster.split-brain-resolver.static-quorum.role", UKKO_CFG_STRING, SB(static_quorum_role),
     "\"\"", 0, 0, NULL, check_role,
     "static-quorum: count only members with this role (\"\": all)."},
    {"cluster.split-brain-resolver.keep-majority.role", UKKO_CFG_STRING, SB(keep_majority_role),
     "\"\"", 0, 0, NULL, check_role,
     "keep-majority: count only members with this role (\"\": all)."},
    {"cluster.split-brain-resolver.keep-oldest.role", UKKO_CFG_STRING, SB(keep_oldest_role),
     "\"\"", 0, 0, NULL, check_role,
     "keep-oldest: the oldest among members with this role (\"\": all)."},
    {"cluster.split-brain-resolver.keep-oldest.down-if-alone", UKKO_CFG_BOOL, SB(down_if_alone),
     "true", 0, 0, NULL, NULL,
     "keep-oldest: an oldest member cut off from all the others downs itself instead, and "
     "the others stay."},
};
#undef SB

int cluster__sbr_config_register(ukko_config_t *cfg, ukko_cluster_config_t *cc)
{
    return ukko_config_add(cfg, sbr_keys, sizeof(sbr_keys) / sizeof(sbr_keys[0]), cc);
}

static int64_t unstable_on(int64_t stable_after_ms)
{
    /* Pekko's "on": 3/4 of stable-after, but not under 4 s. */
    int64_t t = stable_after_ms * 3 / 4;
    return t < 4000 ? 4000 : t;
}

void cluster__sbr_params_default(cluster__sbr_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->strategy = CLUSTER__SBR_KEEP_MAJORITY;
    p->stable_after_ms = 7000;
    p->down_all_when_unstable_ms = unstable_on(p->stable_after_ms);
    p->down_if_alone = true;
}

int cluster__sbr_params_from_config(cluster__sbr_params_t *p, const ukko_cluster_sbr_config_t *c,
                                    char *why, size_t whylen)
{
    cluster__sbr_params_default(p);
    p->strategy = c->strategy;
    p->stable_after_ms = c->stable_after_ms;
    p->down_all_when_unstable_ms = unstable_on(p->stable_after_ms);
    const char *u = c->down_all_when_unstable;
    if (u && !strcmp(u, "off"))
        p->down_all_when_unstable_ms = 0;
    else if (u && strcmp(u, "on"))
        ukko_parse_duration(u, &p->down_all_when_unstable_ms); /* checked when loaded */
    p->quorum_size = c->quorum_size;
    p->down_if_alone = c->down_if_alone;
    const char *role = p->strategy == CLUSTER__SBR_STATIC_QUORUM   ? c->static_quorum_role
                       : p->strategy == CLUSTER__SBR_KEEP_MAJORITY ? c->keep_majority_role
                       : p->strategy == CLUSTER__SBR_KEEP_OLDEST   ? c->keep_oldest_role
                                                                   : NULL;
    snprintf(p->role, sizeof(p->role), "%s", role ? role : "");
    if (p->strategy == CLUSTER__SBR_STATIC_QUORUM && p->quorum_size < 1) {
        snprintf(why, whylen,
                 "cluster.split-brain-resolver.active-strategy = \"static-quorum\" needs "
                 "cluster.split-brain-resolver.static-quorum.quorum-size: the fewest members "
                 "that may go on (3 for a cluster of 5); set it, or use \"keep-majority\"");
        return UKKO_EINVAL;
    }
    return 0;
}

/* ---------------------------------------------------------- decision */

/* Pekko's member sets. Up and Leaving members count; possibly_up adds
 * Joining and WeaklyUp (they may have been made Up on the other side),
 * no_leaving drops Leaving (it may be Exiting there). Down, Exiting and
 * Removed never count. */
static bool counts(const cluster__sbr_member_t *x, bool possibly_up, bool no_leaving)
{
    if (!x->has_role)
        return false;
    switch (x->status) {
    case UKKO_MEMBER_UP: return true;
    case UKKO_MEMBER_LEAVING: return !no_leaving;
    case UKKO_MEMBER_JOINING:
    case UKKO_MEMBER_WEAKLY_UP: return possibly_up;
    default: return false;
    }
}

enum { ALL, REACHABLE, UNREACHABLE };

static size_t count(const cluster__sbr_member_t *v, size_t n, bool possibly_up, bool no_leaving,
                    int which)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (counts(&v[i], possibly_up, no_leaving) &&
            (which == ALL || (which == UNREACHABLE) == v[i].unreachable))
            k++;
    return k;
}

static bool older(const cluster__sbr_member_t *a, const cluster__sbr_member_t *b)
{
    return a->started_ms < b->started_ms ||
           (a->started_ms == b->started_ms && cluster__addr_cmp(a->addr, b->addr) < 0);
}

/* The member that counts with the lowest address (by_age: the oldest). */
static const cluster__sbr_member_t *first(const cluster__sbr_member_t *v, size_t n, bool no_leaving,
                                          bool by_age)
{
    const cluster__sbr_member_t *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!counts(&v[i], false, no_leaving))
            continue;
        if (!best || (by_age ? older(&v[i], best) : cluster__addr_cmp(v[i].addr, best->addr) < 0))
            best = &v[i];
    }
    return best;
}

static cluster__sbr_decision_t majority(size_t this_side, size_t other_side,
                                        const cluster__sbr_member_t *lowest)
{
    if (this_side == other_side) /* equal halves: the side of the lowest address stays */
        return lowest->unreachable ? CLUSTER__SBR_DOWN_REACHABLE : CLUSTER__SBR_DOWN_UNREACHABLE;
    return this_side > other_side ? CLUSTER__SBR_DOWN_UNREACHABLE : CLUSTER__SBR_DOWN_REACHABLE;
}

static cluster__sbr_decision_t keep_majority(const cluster__sbr_params_t *p,
                                             const cluster__sbr_member_t *v, size_t n, char *why,
                                             size_t whylen)
{
    const cluster__sbr_member_t *lowest = first(v, n, false, false);
    if (!lowest) {
        snprintf(why, whylen, "keep-majority: no Up member has the role \"%s\"", p->role);
        return CLUSTER__SBR_DOWN_ALL;
    }
    size_t r = count(v, n, false, false, REACHABLE), u = count(v, n, false, false, UNREACHABLE);
    char low[64];
    cluster__addr_format(lowest->addr, low, sizeof(low));
    cluster__sbr_decision_t d = majority(r, u, lowest);
    if (d != CLUSTER__SBR_DOWN_UNREACHABLE) {
        if (r == u)
            snprintf(why, whylen,
                     "keep-majority: %zu members on each side, and the lowest address (%s) is "
                     "on the other",
                     r, low);
        else
            snprintf(why, whylen, "keep-majority: this side has %zu of %zu members", r, r + u);
        return d;
    }
    /* A majority only counts if it holds however the membership changes
     * made just before the cut came out: count this side low (no Leaving,
     * which may be Exiting there) and the other side high (its Joining and
     * WeaklyUp may have been made Up there). */
    const cluster__sbr_member_t *lowest2 = first(v, n, true, false);
    size_t r2 = count(v, n, false, true, REACHABLE), u2 = count(v, n, true, false, UNREACHABLE);
    if (!lowest2 || majority(r2, u2, lowest2) != CLUSTER__SBR_DOWN_UNREACHABLE) {
        snprintf(why, whylen,
                 "keep-majority: this side has %zu of %zu members, but only %zu against %zu if "
                 "the members joining or leaving changed on the other side: downing all, to be "
                 "safe",
                 r, r + u, r2, u2);
        return CLUSTER__SBR_DOWN_ALL;
    }
    if (r == u)
        snprintf(why, whylen,
                 "keep-majority: %zu members on each side, and the lowest address (%s) is on "
                 "this one",
                 r, low);
    else
        snprintf(why, whylen, "keep-majority: this side has %zu of %zu members", r, r + u);
    return d;
}

static cluster__sbr_decision_t static_quorum(const cluster__sbr_params_t *p,
                                             const cluster__sbr_member_t *v, size_t n, char *why,
                                             size_t whylen)
{
    size_t all = count(v, n, false, false, ALL), r = count(v, n, false, false, REACHABLE);
    if ((int64_t)all > p->quorum_size * 2 - 1) {
        snprintf(why, whylen,
                 "static-quorum: %zu members count, more than 2 * quorum-size - 1 = %lld, so "
                 "both sides could reach the quorum: downing all",
                 all, (long long)(p->quorum_size * 2 - 1));
        return CLUSTER__SBR_DOWN_ALL;
    }
    snprintf(why, whylen, "static-quorum: this side has %zu of %zu members, quorum-size is %lld",
             r, all, (long long)p->quorum_size);
    return (int64_t)r >= p->quorum_size ? CLUSTER__SBR_DOWN_UNREACHABLE
                                        : CLUSTER__SBR_DOWN_REACHABLE;
}

static cluster__sbr_decision_t oldest_rule(bool oldest_here, size_t this_side, size_t other_side,
                                           bool down_if_alone)
{
    if (oldest_here)
        /* Two members: keep the oldest even alone; the other is no better. */
        return down_if_alone && this_side == 1 && other_side >= 2 ? CLUSTER__SBR_DOWN_REACHABLE
                                                                  : CLUSTER__SBR_DOWN_UNREACHABLE;
    return down_if_alone && other_side == 1 && this_side >= 2 ? CLUSTER__SBR_DOWN_UNREACHABLE
                                                              : CLUSTER__SBR_DOWN_REACHABLE;
}

static cluster__sbr_decision_t keep_oldest(const cluster__sbr_params_t *p,
                                           const cluster__sbr_member_t *v, size_t n, char *why,
                                           size_t whylen)
{
    const cluster__sbr_member_t *oldest = first(v, n, false, true);
    if (!oldest) {
        snprintf(why, whylen, "keep-oldest: no Up member has the role \"%s\"", p->role);
        return CLUSTER__SBR_DOWN_ALL;
    }
    char who[64];
    cluster__addr_format(oldest->addr, who, sizeof(who));
    size_t r = count(v, n, false, false, REACHABLE), u = count(v, n, false, false, UNREACHABLE);
    cluster__sbr_decision_t d = oldest_rule(!oldest->unreachable, r, u, p->down_if_alone);
    bool alone = p->down_if_alone && ((!oldest->unreachable && r == 1 && u >= 2) ||
                                      (oldest->unreachable && u == 1 && r >= 2));
    snprintf(why, whylen, "keep-oldest: the oldest member (%s) is on %s side%s", who,
             oldest->unreachable ? "the other" : "this",
             alone ? ", alone, and down-if-alone is on" : "");
    if (d != CLUSTER__SBR_DOWN_UNREACHABLE)
        return d;
    /* As for keep-majority: the oldest may be Exiting on the other side,
     * and with down-if-alone the joining members may tip "alone". And, as
     * age here is the process start (Pekko's is the order of becoming Up),
     * a member still Joining in this view may have been made Up across
     * just before the cut and be the oldest there. */
    const cluster__sbr_member_t *oldest2 = first(v, n, true, true);
    for (size_t i = 0; oldest2 && i < n; i++)
        if (v[i].unreachable && counts(&v[i], true, true) && !counts(&v[i], false, true) &&
            older(&v[i], oldest2))
            oldest2 = &v[i];
    size_t r2 = count(v, n, p->down_if_alone, true, REACHABLE);
    size_t u2 = count(v, n, p->down_if_alone, true, UNREACHABLE);
    if (!oldest2 || oldest_rule(!oldest2->unreachable, r2, u2, p->down_if_alone) !=
                        CLUSTER__SBR_DOWN_UNREACHABLE) {
        snprintf(why, whylen,
                 "keep-oldest: the oldest member (%s) is on this side, but it or the count "
                 "may have changed on the other side (leaving or joining members): downing "
                 "all, to be safe",
                 who);
        return CLUSTER__SBR_DOWN_ALL;
    }
    return d;
}

cluster__sbr_decision_t cluster__sbr_decide(const cluster__sbr_params_t *p,
                                            const cluster__sbr_member_t *v, size_t n, char *why,
                                            size_t whylen)
{
    switch (p->strategy) {
    case CLUSTER__SBR_KEEP_MAJORITY: return keep_majority(p, v, n, why, whylen);
    case CLUSTER__SBR_STATIC_QUORUM: return static_quorum(p, v, n, why, whylen);
    case CLUSTER__SBR_KEEP_OLDEST: return keep_oldest(p, v, n, why, whylen);
    default:
        snprintf(why, whylen, "down-all: %zu member(s) unreachable",
                 count(v, n, true, false, UNREACHABLE));
        return CLUSTER__SBR_DOWN_ALL;
    }
}

static bool goes(cluster__sbr_decision_t d)
{
    return d == CLUSTER__SBR_DOWN_REACHABLE || d == CLUSTER__SBR_DOWN_ALL;
}

bool cluster__sbr_goes_either_way(const cluster__sbr_params_t *p, cluster__sbr_member_t *v,
                                  size_t n, size_t i)
{
    char why[240];
    bool was = v[i].unreachable;
    v[i].unreachable = false;
    bool with = goes(cluster__sbr_decide(p, v, n, why, sizeof(why)));
    v[i].unreachable = true;
    bool without = goes(cluster__sbr_decide(p, v, n, why, sizeof(why)));
    v[i].unreachable = was;
    return with && without;
}

/* ------------------------------------------------------------ driver */

static bool is_unreachable(int status, int live)
{
    return status >= 0 && status < UKKO_MEMBER_DOWN && live != CLUSTER__ALIVE;
}

static bool has_role(const char *roles, const char *role)
{
    if (!*role)
        return true;
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

/* A time on the clock of cluster__member_t's changed_ds and heard_ds. */
static uint32_t ds_of(const cluster__mship_t *m, int64_t t)
{
    return t > m->t0 ? (uint32_t)((t - m->t0) / 100) : 0;
}

static void fmt_ms(int64_t ms, char *out, size_t outlen)
{
    ukko_format_duration(ms, out, outlen);
}

/* This node's view as the decision takes it; the caller frees it. */
static cluster__sbr_member_t *view_of(const cluster__mship_t *m)
{
    cluster__sbr_member_t *v = malloc((m->nmem ? m->nmem : 1) * sizeof(*v));
    if (!v) {
        ukko_log(UKKO_LOG_ERROR, "cluster", "split-brain resolver: out of memory");
        abort();
    }
    for (size_t i = 0; i < m->nmem; i++) {
        const cluster__member_t *mem = &m->mem[i];
        const cluster__ident_t *id = ms__ident(m, mem);
        v[i] = (cluster__sbr_member_t){
            .addr = cluster__ids_addr_at(m->ids, id->addr),
            .started_ms = id->started_ms,
            .status = mem->status,
            .unreachable = mem->ident != m->self_ident && is_unreachable(mem->status, mem->live),
            .has_role = has_role(id->roles, m->p.sbr.role),
        };
    }
    return v;
}

/* A suspicion this node raised is told first hand to every member of a
 * small cluster (64 or fewer, as membership does with verdicts): gossip
 * picks its targets at random, unreachable ones included, and in a small
 * cut cluster the few retransmissions of the news were seen all going
 * across the cut, leaving this node's side seeing less unreachable than it
 * for seconds. The resolver needs each side to share one view. */
static void tell_suspicion(cluster__mship_t *m, uint32_t ident)
{
    const cluster__ident_t *id = cluster__ids_at(m->ids, ident);
    cluster__member_t *mem = id ? ms__find_addr(m, id->addr) : NULL;
    const ms_susp_t *su = mem ? ms__susp(m, mem) : NULL;
    if (!su || su->last_from != m->self_addr || m->nmem > 64 || !m->in_cluster)
        return;
    uint8_t buf[sizeof(ukko_wire_header_t) + 128];
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, buf, sizeof(buf));
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    ms__encode_member(m, &w, mem, 0);
    for (size_t i = 0; i < m->nmem; i++)
        if (ms__usable(m, &m->mem[i]) && m->mem[i].live == CLUSTER__ALIVE)
            ms__send(m, ms__addr(m, &m->mem[i]), &w);
}

/* Whether a side that goes would still go without member ident, and did
 * with it: its leaving the side changes nothing of the decision. */
static bool still_goes(const cluster__mship_t *m, uint32_t ident)
{
    size_t i = 0;
    while (i < m->nmem && m->mem[i].ident != ident)
        i++;
    if (i == m->nmem)
        return false;
    cluster__sbr_member_t *v = view_of(m);
    bool r = cluster__sbr_goes_either_way(&m->p.sbr, v, m->nmem, i);
    free(v);
    return r;
}

/* This node was downed by another, without a reason of its own: if its
 * own view has its side going, that is why (a member of its side decided
 * first and took it along, or the side that stays told it across a one-way
 * cut), and /ready and the exit say so. */
static void downed_with_side(cluster__mship_t *m, int old_status)
{
    ms_sbr_t *r = &m->sbr;
    if (r->reason[0] || !r->nunreachable)
        return;
    cluster__sbr_member_t *v = view_of(m);
    for (size_t i = 0; i < m->nmem; i++)
        if (m->mem[i].ident == m->self_ident)
            v[i].status = (uint8_t)old_status; /* as it decided a moment ago */
    char why[240];
    cluster__sbr_decision_t d = cluster__sbr_decide(&m->p.sbr, v, m->nmem, why, sizeof(why));
    free(v);
    if (!goes(d))
        return;
    snprintf(r->reason, sizeof(r->reason),
             "Down: the split-brain resolver downed this node with its side, which goes "
             "(%.130s); restart it to rejoin",
             why);
    ukko_logf(UKKO_LOG_ERROR, "cluster", UKKO_FIELDS(UKKO_FS("reason", why)),
              "split-brain resolver: this node was downed with its side, which goes (%s), "
              "as it would have decided itself; restart it to rejoin once the network is whole",
              why);
}

/* Pekko resets the stable deadline when a member becomes unreachable or
 * reachable again, is Up, Exiting or Down; not for joining, leaving or
 * removal, so a stream of joiners never holds a decision back. Nor here
 * when a reachable member goes Down (it downed itself, or its process was
 * found gone): that only makes this side smaller, which can only turn a
 * decision to stay into one to go, the safe way; while resetting made the
 * nodes of a losing side wait for each other's downs in turn. Nor when a
 * member becomes unreachable while this side goes with it and without it:
 * a member of a side that goes, exiting after its own decision before its
 * Down reached the others (or cut from them inside the side), made the
 * others wait a whole stable-after more, and the other side took their
 * shards while they still ran them (netns_sharding.py saw it). Going
 * sooner is the safe way: it can only stop work, never start it twice. */
void ms__sbr_changed(cluster__mship_t *m, uint32_t ident, int old_status, int old_live,
                     int status, int live)
{
    ms_sbr_t *r = &m->sbr;
    int64_t now = ms__now(m);
    if (ident == m->self_ident && status >= UKKO_MEMBER_DOWN && old_status < UKKO_MEMBER_DOWN)
        downed_with_side(m, old_status);
    bool reset = status != old_status &&
                 (status == UKKO_MEMBER_UP || status == UKKO_MEMBER_EXITING ||
                  (status == UKKO_MEMBER_DOWN && old_live != CLUSTER__ALIVE));
    bool was = ident != m->self_ident && is_unreachable(old_status, old_live);
    bool is = ident != m->self_ident && is_unreachable(status, live);
    if (!was && is) {
        tell_suspicion(m, ident);
        if (r->ncheck < sizeof(r->check) / sizeof(r->check[0]))
            r->check[r->ncheck++] = ident;
    }
    if (was != is) {
        size_t before = r->nunreachable;
        r->nunreachable = is ? before + 1 : before - 1;
        if (status >= UKKO_MEMBER_DOWN)
            r->resolved_at = now;
        r->unstable_changes++;
        if (!(is && before && status < UKKO_MEMBER_DOWN && still_goes(m, ident)))
            reset = true;
        const cluster__member_t *self = ms__self(m);
        /* As Pekko: said at INFO by the leader, which decides; the others
         * (and every brief suspicion of a lossy network) at DEBUG. */
        int level = UKKO_LOG_DEBUG;
        if ((!before || !r->nunreachable) && ukko_log_enabled(UKKO_LOG_INFO) &&
            cluster__mship_leader(m) == m->self_ident)
            level = UKKO_LOG_INFO;
        if (m->in_cluster && self && self->status < UKKO_MEMBER_DOWN) {
            char d[32];
            fmt_ms(m->p.sbr.stable_after_ms, d, sizeof(d));
            if (!before)
                ukko_logf(level, "cluster",
                          UKKO_FIELDS(UKKO_FS("strategy",
                                              cluster__sbr_strategy_name(m->p.sbr.strategy))),
                          "split-brain resolver: a member is unreachable; %s decides once the "
                          "members and their reachability have not changed for %s",
                          cluster__sbr_strategy_name(m->p.sbr.strategy), d);
            else if (!r->nunreachable)
                ukko_log(level, "cluster",
                         "split-brain resolver: no member is unreachable any more; nothing "
                         "to decide");
        }
    }
    if (reset)
        r->stable_since = now;
    if (!r->nunreachable)
        r->unstable_changes = 0;
}

/* A side that goes, goes as a whole, as Pekko's leader of such a side downs
 * every reachable member of it: besides itself, this node downs every
 * member it has heard from first hand since its view last changed (so on
 * its side of the cut, whatever it is told), and tells each directly, as
 * the leader of a side that stays tells the members it downs. They would
 * reach the same decision from the same view, but each on its own clock:
 * one whose view settled later, or that took this node's exit for one more
 * change, still ran its shards when the other side took them. A member
 * not heard from since may be across the cut: it decides for itself. Last,
 * this node's own Down goes first hand to every member it reaches (64 or
 * fewer, as verdicts do), so its exit is not taken for a new cut. Only
 * for a side that goes while the other stays (whole): a "down all" comes
 * from a view that never settled, or that could not tell the sides apart,
 * where whom this node hears says little about whose side it is on; a
 * member heard that also reaches the others (a bridge of a non-transitive
 * cut) is then often on the side that stays, and downing it could take
 * that side below its quorum (test_sbr.c). Returns the members downed,
 * itself included. */
static uint64_t down_side(cluster__mship_t *m, const char *strategy, const char *why, bool whole)
{
    cluster__member_t *self = ms__self(m);
    uint32_t since = ds_of(m, m->sbr.stable_since);
    char me[64], because[320];
    cluster__addr_format(cluster__ids_addr_at(m->ids, m->self_addr), me, sizeof(me));
    snprintf(because, sizeof(because),
             "split-brain resolver of %s, on the same side, which goes: %s", me, why);
    uint64_t n = 0;
    for (size_t i = 0; whole && i < m->nmem; i++) {
        cluster__member_t *mem = &m->mem[i];
        if (mem->ident == m->self_ident || mem->status >= UKKO_MEMBER_EXITING ||
            mem->live != CLUSTER__ALIVE || mem->heard_ds < since)
            continue;
        ms__send_dead_to(m, ms__addr(m, mem), mem->ident);
        ms__declare_dead(m, mem, because);
        n++;
    }
    if (m->nmem <= 64)
        for (size_t i = 0; i < m->nmem; i++)
            if (ms__usable(m, &m->mem[i]) && m->mem[i].live == CLUSTER__ALIVE)
                ms__send_dead_to(m, ms__addr(m, &m->mem[i]), m->self_ident);
    snprintf(m->sbr.reason, sizeof(m->sbr.reason),
             "Down: the split-brain resolver downed this node (%s); restart it to rejoin", why);
    ukko_logf(UKKO_LOG_ERROR, "cluster",
              UKKO_FIELDS(UKKO_FS("strategy", strategy), UKKO_FS("reason", why),
                          UKKO_FI("side_downed", n)),
              "split-brain resolver: this node is on a side that goes (%s): it downs itself "
              "and the %llu member(s) of its side it heard from since its view settled, is no "
              "longer a member and stays not ready; restart it to rejoin once the network is "
              "whole",
              why, (unsigned long long)n);
    ms__set_status(m, self, UKKO_MEMBER_DOWN);
    return n + 1;
}

/* The verdicts of one decision that downed a few members, to every
 * reachable member first hand, in one packet: membership does so for
 * clusters of 64 or fewer; above, a single leader's verdict spread by
 * gossip alone was seen to miss a node for 3 s (until a digest sync). */
static void tell_verdicts(cluster__mship_t *m)
{
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    for (size_t i = 0; i < m->nmem; i++) {
        const cluster__member_t *mem = &m->mem[i];
        if (mem->status != UKKO_MEMBER_DOWN || mem->ident == m->self_ident)
            continue;
        ukko_wire_w_t save = w;
        ms__encode_member(m, &w, mem, 0);
        if (w.overflow)
            w = save;
    }
    for (size_t i = 0; i < m->nmem; i++)
        if (ms__usable(m, &m->mem[i]) && m->mem[i].live == CLUSTER__ALIVE)
            ms__send(m, ms__addr(m, &m->mem[i]), &w);
}

/* Acts on a decision. A side that stays: its leader downs the unreachable
 * (Exiting ones are leaving anyway). A side that goes while the other
 * stays: the first of its nodes to decide downs the side (down_side),
 * leader or not; "down all": each node downs itself. */
static void act(cluster__mship_t *m, cluster__sbr_decision_t d, bool unstable, const char *why)
{
    ms_sbr_t *r = &m->sbr;
    const char *strategy =
        unstable ? "down-all-when-unstable" : cluster__sbr_strategy_name(m->p.sbr.strategy);
    uint64_t downed = 0;
    if (d == CLUSTER__SBR_DOWN_UNREACHABLE) {
        char because[320];
        snprintf(because, sizeof(because), "split-brain resolver, %s", why);
        for (size_t i = 0; i < m->nmem; i++) {
            cluster__member_t *mem = &m->mem[i];
            if (mem->ident != m->self_ident && mem->status < UKKO_MEMBER_EXITING &&
                mem->live != CLUSTER__ALIVE) {
                ms__declare_dead(m, mem, because);
                /* Told itself too: across a one-way cut it still hears this
                 * side, and goes at once instead of when its own resolver
                 * (slower to see the cut) decides. */
                ms__send_dead_to(m, ms__addr(m, mem), mem->ident);
                downed++;
            }
        }
        if (downed && downed <= 16 && m->nmem > 64)
            tell_verdicts(m);
        if (downed)
            ukko_logf(UKKO_LOG_WARN, "cluster",
                      UKKO_FIELDS(UKKO_FS("strategy", strategy),
                                  UKKO_FS("decision", cluster__sbr_decision_name(d)),
                                  UKKO_FI("downed", downed)),
                      "split-brain resolver (the leader of this side) took decision %s: %s; "
                      "downed %llu unreachable member(s)",
                      cluster__sbr_decision_name(d), why, (unsigned long long)downed);
    } else if (d == CLUSTER__SBR_DOWN_REACHABLE || d == CLUSTER__SBR_DOWN_ALL) {
        downed += down_side(m, strategy, why, d == CLUSTER__SBR_DOWN_REACHABLE);
    }
    if (!downed)
        return;
    r->decisions[unstable ? 0 : d]++;
    r->downed += downed;
    r->stable_since = ms__now(m);
    r->unstable_changes = 0;
}

static cluster__member_t *member_of(const cluster__mship_t *m, uint32_t ident)
{
    const cluster__ident_t *id = cluster__ids_at(m->ids, ident);
    cluster__member_t *mem = id ? ms__find_addr((cluster__mship_t *)m, id->addr) : NULL;
    return mem && mem->ident == ident ? mem : NULL;
}

/* Every unreachable member's host refused its port: no stable-after to wait
 * for, as no view is still settling (refusals come within milliseconds of
 * a crash, or of a cut by a firewall that rejects). */
static bool all_gone(const cluster__mship_t *m)
{
    const ms_sbr_t *r = &m->sbr;
    size_t k = 0;
    for (size_t i = 0; i < r->ngone; i++) {
        const cluster__member_t *mem = member_of(m, r->gone[i]);
        if (mem && is_unreachable(mem->status, mem->live))
            k++;
    }
    return r->nunreachable && k >= r->nunreachable;
}

void ms__sbr_gone(cluster__mship_t *m, cluster__member_t *mem)
{
    ms_sbr_t *r = &m->sbr;
    if (mem->live == CLUSTER__ALIVE)
        ms__suspect_member(m, mem);
    for (size_t i = 0; i < r->ngone; i++)
        if (r->gone[i] == mem->ident)
            return;
    if (r->ngone < sizeof(r->gone) / sizeof(r->gone[0]))
        r->gone[r->ngone++] = mem->ident;
    r->next_look = 0;
}

/* A ping with nothing piggybacked: news sent to a member that may be
 * across a cut would spend its few retransmissions where they are lost. */
static void ping(cluster__mship_t *m, const cluster__member_t *mem)
{
    ukko_wire_w_t w;
    ukko_wire_w_init(&w, m->pkt, m->pktcap);
    ms__header(m, &w, UKKO_WIRE_GOSSIP, 0);
    ukko_wire_put_ping(&w, ms__next_seq(m), ms__ident(m, mem)->uid, false, 0);
    ms__send(m, ms__addr(m, mem), &w);
}

static void decide(cluster__mship_t *m, int64_t now)
{
    ms_sbr_t *r = &m->sbr;
    const cluster__sbr_params_t *p = &m->p.sbr;
    /* A decision that asks nothing of this node now (it is not the leader
     * of a side that stays) is looked at again a little later, in case the
     * leader it waits for is gone. */
    int64_t again = p->stable_after_ms / 2 < 1000 ? p->stable_after_ms / 2 : 1000;
    r->next_look = now + (again > 10 ? again : 10);
    cluster__sbr_member_t *v = view_of(m);
    char why[240];
    cluster__sbr_decision_t d = cluster__sbr_decide(p, v, m->nmem, why, sizeof(why));
    if (all_gone(m)) {
        size_t l = strlen(why);
        snprintf(why + l, sizeof(why) - l, "; the unreachable refused connections: gone");
    }
    if (d == CLUSTER__SBR_DOWN_UNREACHABLE) {
        if (cluster__mship_leader(m) != m->self_ident) {
            free(v);
            return;
        }
        /* Staying is the decision that can split a cluster, and a side
         * sees the other side unreachable only as its probes find each
         * member there: a small side, probing slowly as Lifeguard makes it,
         * may not have found them all. So stay only if the decision holds
         * with every member not heard from first hand since the view last
         * changed counted as unreachable; else ask those members now and
         * look again once they could have answered. */
        uint32_t since = ds_of(m, r->stable_since);
        size_t unheard = 0;
        for (size_t i = 0; i < m->nmem; i++) {
            if (m->mem[i].ident != m->self_ident && !v[i].unreachable &&
                m->mem[i].status < UKKO_MEMBER_DOWN && m->mem[i].heard_ds < since) {
                v[i].unreachable = true;
                unheard++;
            }
        }
        char why2[200];
        if (unheard && cluster__sbr_decide(p, v, m->nmem, why2, sizeof(why2)) !=
                           CLUSTER__SBR_DOWN_UNREACHABLE) {
            for (size_t i = 0; i < m->nmem; i++)
                if (v[i].unreachable && m->mem[i].live == CLUSTER__ALIVE &&
                    m->mem[i].status < UKKO_MEMBER_DOWN && m->mem[i].ident != m->self_ident)
                    ping(m, &m->mem[i]);
            int64_t wait = m->p.probe_timeout_ms / 10; /* answers take a round trip */
            r->next_look = now + (wait > 10 ? wait : 10);
            free(v);
            return;
        }
    }
    free(v);
    if (d != CLUSTER__SBR_NONE)
        act(m, d, false, why);
}

#define SWEEP_MAX 1024 /* members asked per sweep */
#define SWEEP_MISSES 3 /* sweeps in a row a member may leave unanswered */

/* While a member is unreachable, every node asks (pings), twice a probe
 * interval, the members it has not heard from since, first hand or by a
 * refutation. So a side finds all of the other side within a few
 * intervals, however Lifeguard slows its probing (a small side cut off
 * probes slowly: it found the three others at 1.3, 6.3 and 9.7 s in the
 * simulator, and decided well after the other side had downed it); and the
 * leader has the first-hand evidence it needs to stay. A member that leaves
 * SWEEP_MISSES sweeps in a row unanswered is suspected as a failed probe
 * would make it: gossiped and refutable, and at most once, since its
 * refutation counts as heard. Sweeps ask at most SWEEP_MAX members, and
 * suspect only when they asked all: a large side finds the other by its
 * many probers. */
static void sweep(cluster__mship_t *m, int64_t now)
{
    ms_sbr_t *r = &m->sbr;
    if (!r->sweep_start) {
        r->sweep_start = now;
        r->next_sweep = now;
        r->sweeps_covering = 0;
    }
    if (now < r->next_sweep)
        return;
    r->next_sweep = now + (m->p.probe_interval_ms + 1) / 2;
    uint32_t since = ds_of(m, r->sweep_start);
    size_t unheard = 0;
    for (size_t i = 0; i < m->nmem; i++) {
        const cluster__member_t *mem = &m->mem[i];
        if (ms__usable(m, mem) && mem->live == CLUSTER__ALIVE && mem->heard_ds < since)
            unheard++;
    }
    bool suspect = unheard <= SWEEP_MAX && r->sweeps_covering >= SWEEP_MISSES;
    r->sweeps_covering = unheard <= SWEEP_MAX ? r->sweeps_covering + 1 : 0;
    size_t asked = 0;
    for (size_t i = 0; i < m->nmem && asked < SWEEP_MAX; i++) {
        cluster__member_t *mem = &m->mem[(i + r->sweep_pos) % m->nmem];
        if (!ms__usable(m, mem) || mem->live != CLUSTER__ALIVE || mem->heard_ds >= since)
            continue;
        if (suspect)
            ms__suspect_member(m, mem);
        else
            ping(m, mem);
        asked++;
    }
    r->sweep_pos += asked;
}

void ms__sbr_tick(cluster__mship_t *m, int64_t now)
{
    ms_sbr_t *r = &m->sbr;
    const cluster__sbr_params_t *p = &m->p.sbr;
    const cluster__member_t *self = ms__self(m);
    if (!m->in_cluster || !self || self->status >= UKKO_MEMBER_DOWN)
        return;
    r->unstable_at = INT64_MAX;
    if (r->nunreachable && p->down_all_when_unstable_ms > 0) {
        /* Pekko downs all when no decision came within stable-after plus
         * down-all-when-unstable of the first unreachability, until all are
         * reachable again. Measured so from a node's first suspicion, a
         * slow, lossy network (some member briefly suspected nearly all the
         * time, at 100 nodes) downed nodes that nothing was wrong with.
         * Here the measure is the longest a member now unreachable has been
         * so without a break (a refuted suspicion starts afresh), and it
         * starts again as verdicts arrive: a view that cannot settle while
         * the same members stay unreachable, as Pekko means. */
        int64_t since = now;
        for (size_t i = 0; i < m->nsusp; i++) {
            const cluster__member_t *mem = ms__find_addr(m, m->susp[i].addr);
            if (mem && is_unreachable(mem->status, mem->live) && m->susp[i].s.start_ms < since)
                since = m->susp[i].s.start_ms;
        }
        if (r->resolved_at > since)
            since = r->resolved_at;
        r->unstable_at = since + p->stable_after_ms + p->down_all_when_unstable_ms;
        if (now > r->unstable_at) {
            /* Every node, leader or not, as Pekko: views this unsettled may
             * disagree between the sides, and nothing else is safe. */
            char why[200], d[32], s[32];
            fmt_ms(now - since, d, sizeof(d));
            fmt_ms(p->stable_after_ms, s, sizeof(s));
            snprintf(why, sizeof(why),
                     "down-all-when-unstable: a member has been unreachable for %s, and who is "
                     "reachable kept changing (%llu changes) without %s of calm to decide in",
                     d, (unsigned long long)r->unstable_changes, s);
            act(m, CLUSTER__SBR_DOWN_ALL, true, why);
            return;
        }
    }
    if (!r->nunreachable) {
        r->sweep_start = 0;
        r->ngone = r->ncheck = 0;
        return;
    }
    if (r->ncheck) {
        /* The leader tries each new suspect's cluster port over TCP (as
         * membership does on an ICMP hint): a refusal there is the proof
         * that lets it decide now, where a killed process would otherwise
         * wait out stable-after. */
        if (cluster__mship_leader(m) == m->self_ident)
            for (size_t i = 0; i < r->ncheck; i++) {
                cluster__member_t *mem = member_of(m, r->check[i]);
                if (mem && is_unreachable(mem->status, mem->live))
                    cluster__mship_unreachable(m, ms__addr(m, mem));
            }
        r->ncheck = 0;
    }
    sweep(m, now);
    if (r->nunreachable && now >= r->next_look &&
        (now - r->stable_since >= p->stable_after_ms || all_gone(m)))
        decide(m, now);
}

void ms__sbr_stalled(cluster__mship_t *m, int64_t now)
{
    /* (membership restarts the suspicions too, so instability starts over) */
    m->sbr.stable_since = now;
}

int64_t ms__sbr_next(const cluster__mship_t *m)
{
    const ms_sbr_t *r = &m->sbr;
    const cluster__sbr_params_t *p = &m->p.sbr;
    int64_t t = INT64_MAX;
    if (r->nunreachable) {
        t = all_gone(m) ? 0 : r->stable_since + p->stable_after_ms;
        if (r->next_look > t)
            t = r->next_look;
        if (!r->sweep_start || r->ncheck || r->next_sweep < t)
            t = r->sweep_start && !r->ncheck ? r->next_sweep : 0;
    }
    if (r->nunreachable && r->unstable_at < INT64_MAX && r->unstable_at + 1 < t)
        t = r->unstable_at + 1;
    return t;
}

/* ----------------------------------------------------------- reading */

const char *cluster__mship_down_reason(const cluster__mship_t *m)
{
    return m->sbr.reason[0] ? m->sbr.reason : NULL;
}

const uint64_t *cluster__mship_sbr_decisions(const cluster__mship_t *m)
{
    return m->sbr.decisions;
}

uint64_t cluster__mship_sbr_downed(const cluster__mship_t *m)
{
    return m->sbr.downed;
}

size_t cluster__mship_sbr_unreachable(const cluster__mship_t *m)
{
    return m->sbr.nunreachable;
}

void cluster__sbr_metrics(ukko_buf_t *out, const cluster__mship_t *m)
{
    static const char *const key[] = {"decision"};
    static const char *const names[] = {"down-all-when-unstable", "down-unreachable",
                                        "down-reachable", "down-all"};
    ukko_prom_family(out, "ukko_cluster_sbr_decisions_total", "counter",
                     "Split-brain resolver decisions this node acted on (downed members or "
                     "itself), by decision.");
    for (int i = 1; i <= 4; i++) {
        const char *v[] = {names[i % 4]};
        ukko_prom_sample(out, "ukko_cluster_sbr_decisions_total", key, v, 1,
                         (double)m->sbr.decisions[i % 4]);
    }
    ukko_prom_family(out, "ukko_cluster_sbr_downed_members_total", "counter",
                     "Members (this node included) downed by this node's resolver decisions.");
    ukko_prom_sample(out, "ukko_cluster_sbr_downed_members_total", NULL, NULL, 0,
                     (double)m->sbr.downed);
    ukko_prom_family(out, "ukko_cluster_sbr_self_downed", "gauge",
                     "1 when the resolver downed this node (it stays not ready).");
    ukko_prom_sample(out, "ukko_cluster_sbr_self_downed", NULL, NULL, 0,
                     m->sbr.reason[0] ? 1 : 0);
}
