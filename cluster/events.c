/* events.c: membership events for subscribers (memberlist's event delegate,
 * Pekko's cluster events): the changes the membership core reports are
 * queued and delivered later, outside the core's call chain, with a
 * snapshot of the members first to every new subscriber and a signal when
 * the view has converged. The real node flushes before its loop sleeps, the
 * simulator after each step. One thread (the core's). Invariants: a
 * subscriber sees each change once, after its snapshot and in the order
 * the core made them; a queue that overflows is replaced by a new snapshot,
 * never cut silently. */
#include "cluster_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    uint64_t seq;
    uint32_t ident;
    uint8_t kind;      /* ukko_cluster_event_kind_t */
    int8_t old_status; /* -1: new to this node */
    uint8_t status;
    bool reachable;
} entry_t;

struct ukko_cluster_sub {
    cluster__events_t *owner;
    ukko_cluster_event_fn fn;
    void *ud;
    uint64_t from_seq; /* changes before this are in its snapshot */
    bool dead;         /* unsubscribed: reaped after the delivery under way */
    ukko_cluster_sub_t *next;
};

struct cluster__events {
    cluster__mship_t *m;
    const char *name; /* the cluster name, for node names (not owned) */
    entry_t *q;
    size_t qlen, qcap, qmax;
    uint64_t next_seq;
    bool overflow;
    ukko_cluster_sub_t *subs;
    size_t nsubs;
    bool delivering;
    bool check_due;   /* something changed since convergence was last looked at */
    uint64_t view_seq; /* the core's count of reported digests, as last looked at */
    bool converged;
};

const char *ukko_cluster_event_name(ukko_cluster_event_kind_t kind)
{
    switch (kind) {
    case UKKO_CLUSTER_MEMBER_JOINED: return "MemberJoined";
    case UKKO_CLUSTER_MEMBER_WEAKLY_UP: return "MemberWeaklyUp";
    case UKKO_CLUSTER_MEMBER_UP: return "MemberUp";
    case UKKO_CLUSTER_MEMBER_LEAVING: return "MemberLeft";
    case UKKO_CLUSTER_MEMBER_EXITING: return "MemberExited";
    case UKKO_CLUSTER_MEMBER_DOWN: return "MemberDowned";
    case UKKO_CLUSTER_MEMBER_REMOVED: return "MemberRemoved";
    case UKKO_CLUSTER_MEMBER_UNREACHABLE: return "UnreachableMember";
    case UKKO_CLUSTER_MEMBER_REACHABLE: return "ReachableMember";
    case UKKO_CLUSTER_VIEW_CONVERGED: return "Convergence";
    case UKKO_CLUSTER_SNAPSHOT_DONE: return "CurrentClusterState";
    }
    return "?";
}

static ukko_cluster_event_kind_t kind_of_status(int status)
{
    switch (status) {
    case UKKO_MEMBER_JOINING: return UKKO_CLUSTER_MEMBER_JOINED;
    case UKKO_MEMBER_WEAKLY_UP: return UKKO_CLUSTER_MEMBER_WEAKLY_UP;
    case UKKO_MEMBER_UP: return UKKO_CLUSTER_MEMBER_UP;
    case UKKO_MEMBER_LEAVING: return UKKO_CLUSTER_MEMBER_LEAVING;
    case UKKO_MEMBER_EXITING: return UKKO_CLUSTER_MEMBER_EXITING;
    case UKKO_MEMBER_DOWN: return UKKO_CLUSTER_MEMBER_DOWN;
    default: return UKKO_CLUSTER_MEMBER_REMOVED;
    }
}

cluster__events_t *cluster__events_new(cluster__mship_t *m, const char *cluster_name,
                                       size_t max_queue)
{
    cluster__events_t *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return NULL;
    ev->m = m;
    ev->name = cluster_name ? cluster_name : "ukko";
    ev->qmax = max_queue ? max_queue : 1024;
    ev->next_seq = 1;
    return ev;
}

void cluster__events_free(cluster__events_t *ev)
{
    if (!ev)
        return;
    for (ukko_cluster_sub_t *s = ev->subs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    free(ev->q);
    free(ev);
}

static void push(cluster__events_t *ev, uint32_t ident, ukko_cluster_event_kind_t kind,
                 int old_status, int status, bool reachable)
{
    if (ev->overflow)
        return; /* a new snapshot replaces the lot */
    if (ev->qlen == ev->qcap) {
        size_t ncap = ev->qcap ? ev->qcap * 2 : 64;
        entry_t *nq = ncap <= ev->qmax ? realloc(ev->q, ncap * sizeof(*nq)) : NULL;
        if (!nq) {
            ukko_logf(UKKO_LOG_WARN, "cluster", UKKO_FIELDS(UKKO_FI("queued", ev->qlen)),
                      "membership events: %zu changes queued and not yet delivered; "
                      "subscribers get a fresh snapshot instead",
                      ev->qlen);
            ev->overflow = true;
            ev->qlen = 0;
            return;
        }
        ev->q = nq;
        ev->qcap = ncap;
    }
    entry_t *e = &ev->q[ev->qlen++];
    e->seq = ev->next_seq++;
    e->ident = ident;
    e->kind = (uint8_t)kind;
    e->old_status = (int8_t)old_status;
    e->status = (uint8_t)status;
    e->reachable = reachable;
}

void cluster__events_changed(cluster__events_t *ev, uint32_t ident, int old_status, int old_live,
                             int status, int live)
{
    ev->check_due = true;
    if (!ev->nsubs)
        return; /* a later subscriber starts from a snapshot */
    bool reachable = live != CLUSTER__SUSPECT;
    if (status != old_status)
        push(ev, ident, kind_of_status(status), old_status, status, reachable);
    if (status >= UKKO_MEMBER_DOWN)
        return; /* reachability of a member that is out means nothing */
    bool was = old_live != CLUSTER__SUSPECT;
    if (old_status < 0 ? !reachable : was != reachable)
        push(ev, ident, reachable ? UKKO_CLUSTER_MEMBER_REACHABLE : UKKO_CLUSTER_MEMBER_UNREACHABLE,
             old_status < 0 ? status : old_status, status, reachable);
}

bool cluster__events_pending(const cluster__events_t *ev)
{
    return ev->nsubs &&
           (ev->qlen || ev->overflow || ev->check_due ||
            ev->view_seq != cluster__mship_view_seq(ev->m));
}

/* --------------------------------------------------------------- delivery */

/* What a subscriber is shown of a member; strings live in this struct. */
typedef struct shown {
    ukko_cluster_member_t pub;
    char address[64], node[160], uid[33];
    char role_buf[UKKO_WIRE_ROLES_BUF];
    const char *roles[CLUSTER__MAX_ROLES];
} shown_t;

static void show(cluster__events_t *ev, uint32_t ident, int old_status, int status, bool reachable,
                 shown_t *s)
{
    memset(&s->pub, 0, sizeof(s->pub));
    const cluster__ids_t *ids = cluster__mship_ids(ev->m);
    const cluster__ident_t *id = cluster__ids_at(ids, ident);
    cluster__addr_format(cluster__ids_addr_at(ids, id->addr), s->address, sizeof(s->address));
    cluster__node_name(ev->name, ids, ident, s->node, sizeof(s->node));
    cluster__uid_hex(id->uid, s->uid);
    snprintf(s->role_buf, sizeof(s->role_buf), "%s", id->roles ? id->roles : "");
    size_t n = 0;
    for (char *p = s->role_buf; *p && n < CLUSTER__MAX_ROLES;) {
        s->roles[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    s->pub.address = s->address;
    s->pub.node = s->node;
    s->pub.uid = s->uid;
    s->pub.roles = s->roles;
    s->pub.nroles = n;
    s->pub.started_ms = id->started_ms;
    s->pub.status = status;
    s->pub.old_status = old_status;
    s->pub.reachable = reachable;
    s->pub.self = ident == cluster__mship_self(ev->m);
}

static bool now_converged(const cluster__events_t *ev)
{
    return cluster__mship_in_cluster(ev->m) && cluster__mship_converged(ev->m);
}

static void snapshot(cluster__events_t *ev, ukko_cluster_sub_t *sub)
{
    shown_t s;
    ukko_cluster_event_t e = {.snapshot = true, .converged = now_converged(ev)};
    for (size_t i = 0; i < cluster__mship_count(ev->m) && !sub->dead; i++) {
        const cluster__member_t *mem = cluster__mship_at(ev->m, i);
        bool reachable = mem->live != CLUSTER__SUSPECT;
        show(ev, mem->ident, -1, mem->status, reachable, &s);
        e.kind = kind_of_status(mem->status);
        e.member = &s.pub;
        sub->fn(&e, sub->ud);
        if (!reachable && mem->status < UKKO_MEMBER_DOWN && !sub->dead) {
            e.kind = UKKO_CLUSTER_MEMBER_UNREACHABLE;
            sub->fn(&e, sub->ud);
        }
    }
    if (sub->dead)
        return;
    e.kind = UKKO_CLUSTER_SNAPSHOT_DONE;
    e.member = NULL;
    sub->fn(&e, sub->ud);
}

static void reap(cluster__events_t *ev)
{
    for (ukko_cluster_sub_t **pp = &ev->subs; *pp;) {
        ukko_cluster_sub_t *s = *pp;
        if (s->dead) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

void cluster__events_flush(cluster__events_t *ev)
{
    if (ev->delivering)
        return; /* a subscriber's callback caused it: the flush under way goes on */
    ev->delivering = true;
    /* Callbacks may cause changes (queued behind) or a new overflow: loop
     * until nothing is left, a bounded number of rounds. */
    for (int round = 0; round < 8; round++) {
        if (ev->overflow) {
            ev->overflow = false;
            ev->qlen = 0;
            uint64_t from = ev->next_seq;
            for (ukko_cluster_sub_t *s = ev->subs; s; s = s->next) {
                if (s->dead)
                    continue;
                s->from_seq = from;
                snapshot(ev, s);
            }
            ev->converged = now_converged(ev);
        }
        for (size_t i = 0; i < ev->qlen && !ev->overflow; i++) {
            entry_t e = ev->q[i]; /* the queue may grow (and move) meanwhile */
            shown_t s;
            show(ev, e.ident, e.old_status, e.status, e.reachable, &s);
            /* A change is news the other members have yet to report back:
             * the view converges again (or not) after it. */
            ev->converged = false;
            ev->check_due = true;
            ukko_cluster_event_t out = {.kind = (ukko_cluster_event_kind_t)e.kind,
                                        .member = &s.pub};
            for (ukko_cluster_sub_t *sub = ev->subs; sub; sub = sub->next)
                if (!sub->dead && e.seq >= sub->from_seq)
                    sub->fn(&out, sub->ud);
        }
        if (!ev->overflow)
            ev->qlen = 0;
        uint64_t vs = cluster__mship_view_seq(ev->m);
        if (!ev->overflow && (ev->check_due || vs != ev->view_seq)) {
            ev->check_due = false;
            ev->view_seq = vs;
            bool c = now_converged(ev);
            if (c && !ev->converged) {
                ev->converged = true;
                ukko_cluster_event_t out = {.kind = UKKO_CLUSTER_VIEW_CONVERGED, .converged = true};
                for (ukko_cluster_sub_t *sub = ev->subs; sub; sub = sub->next)
                    if (!sub->dead)
                        sub->fn(&out, sub->ud);
            }
            ev->converged = c;
        }
        if (!ev->qlen && !ev->overflow && !ev->check_due)
            break;
    }
    reap(ev);
    ev->delivering = false;
}

int cluster__events_subscribe(cluster__events_t *ev, ukko_cluster_event_fn fn, void *ud,
                              ukko_cluster_sub_t **out)
{
    if (out)
        *out = NULL;
    if (!fn)
        return UKKO_EINVAL;
    ukko_cluster_sub_t *s = calloc(1, sizeof(*s));
    if (!s)
        return UKKO_ENOMEM;
    s->owner = ev;
    s->fn = fn;
    s->ud = ud;
    s->from_seq = ev->next_seq;
    /* Appended: delivery goes in the order of subscription. */
    ukko_cluster_sub_t **pp = &ev->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    ev->nsubs++;
    if (out)
        *out = s;
    if (ev->nsubs == 1) {
        /* Nothing was tracked without subscribers. */
        ev->converged = now_converged(ev);
        ev->view_seq = cluster__mship_view_seq(ev->m);
        ev->check_due = false;
    }
    bool was = ev->delivering;
    ev->delivering = true; /* an unsubscribe inside the snapshot only marks */
    snapshot(ev, s);
    ev->delivering = was;
    if (s->dead && out)
        *out = NULL; /* it unsubscribed inside its snapshot */
    if (!was)
        reap(ev);
    return 0;
}

void cluster__events_unsubscribe(cluster__events_t *ev, ukko_cluster_sub_t *sub)
{
    if (!sub || sub->owner != ev || sub->dead)
        return;
    sub->dead = true;
    ev->nsubs--;
    if (!ev->delivering)
        reap(ev);
}

bool cluster__events_converged(const cluster__events_t *ev)
{
    return now_converged(ev);
}
