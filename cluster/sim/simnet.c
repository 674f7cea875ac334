/* simnet.c: the simulated world behind simnet.h: an event queue (a binary
 * heap ordered by time, then by insertion), one membership core per node
 * with the world's clock and network as its environment. Nothing sleeps:
 * time jumps from event to event. One thread; deterministic for a seed. */
#include "simnet.h"

#include <stdlib.h>
#include <string.h>

enum { EV_TICK, EV_PKT, EV_SYNC_REQ, EV_SYNC_REPLY, EV_SYNC_FAIL, EV_PUSH, EV_UNREACH };

typedef struct ev {
    int64_t t;
    uint64_t seq;
    uint8_t type;
    bool refused;
    uint32_t node, peer, gen;
    int64_t started; /* sync: when the initiator asked */
    uint8_t *data;
    uint32_t len;
} ev_t;

typedef struct sim_node {
    sim_world_t *w;
    size_t idx;
    cluster__mship_t *m;
    uint32_t ident, addr_id;
    cluster__addr_t addr;
    uint64_t rng;
    bool crashed, kernel, started;
    int64_t paused_until;
    int64_t tick_at;
    uint32_t gen;
    int group;
    uint64_t bytes_out;
    uint8_t *last;
    size_t last_len;
} sim_node_t;

struct sim_world {
    sim_opts_t o;
    cluster__params_t p;
    cluster__ids_t *ids;
    sim_node_t **nodes;
    size_t n, cap;
    size_t *by_addr; /* address id -> node + 1 */
    size_t by_addr_cap;
    size_t *by_ident; /* ident -> node + 1 */
    size_t by_ident_cap;
    ev_t *heap;
    size_t nheap, heapcap;
    uint64_t seq, events;
    int64_t now;
    uint64_t rng;
    bool blocked[8][8];
    bool reject; /* blocked packets are refused, not dropped */
    sim_observe_fn observe;
    void *observe_ud;
};

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static void *xalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        ukko_log(UKKO_LOG_ERROR, "sim", "out of memory");
        abort();
    }
    return p;
}

/* ------------------------------------------------------------ heap */

static bool before(const ev_t *a, const ev_t *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push(sim_world_t *w, ev_t e)
{
    if (w->nheap == w->heapcap) {
        w->heapcap = w->heapcap ? w->heapcap * 2 : 1024;
        ev_t *nh = realloc(w->heap, w->heapcap * sizeof(*nh));
        if (!nh)
            abort();
        w->heap = nh;
    }
    e.seq = w->seq++;
    size_t i = w->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&e, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = e;
}

static ev_t pop(sim_world_t *w)
{
    ev_t top = w->heap[0];
    ev_t last = w->heap[--w->nheap];
    if (w->nheap == 0)
        return top;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1;
        if (l >= w->nheap)
            break;
        size_t m = (r < w->nheap && before(&w->heap[r], &w->heap[l])) ? r : l;
        if (!before(&w->heap[m], &last))
            break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    w->heap[i] = last;
    return top;
}

/* ------------------------------------------------------- the world */

void sim_opts_default(sim_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->seed = 1;
    o->delay_min_ms = 1;
    o->delay_max_ms = 5;
    o->sync_timeout_ms = 5000;
}

sim_world_t *sim_new(const sim_opts_t *o, const cluster__params_t *p)
{
    sim_world_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->o = *o;
    w->p = *p;
    w->rng = o->seed * 0x9e3779b97f4a7c15ULL + 1;
    w->ids = cluster__ids_new();
    w->now = 1000;
    return w;
}

void sim_free(sim_world_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        cluster__mship_free(w->nodes[i]->m);
        free(w->nodes[i]->last);
        free(w->nodes[i]);
    }
    for (size_t i = 0; i < w->nheap; i++)
        free(w->heap[i].data);
    free(w->heap);
    free(w->nodes);
    free(w->by_addr);
    free(w->by_ident);
    cluster__ids_free(w->ids);
    free(w);
}

void sim_observe(sim_world_t *w, sim_observe_fn fn, void *ud)
{
    w->observe = fn;
    w->observe_ud = ud;
}

static size_t node_of_addr(const sim_world_t *w, const cluster__addr_t *a)
{
    /* Only nodes' addresses are asked for: they are interned already. */
    uint32_t id = cluster__ids_addr(w->ids, a);
    if (id == UINT32_MAX || id >= w->by_addr_cap || !w->by_addr[id])
        return SIZE_MAX;
    return w->by_addr[id] - 1;
}

static int delay(sim_world_t *w)
{
    int span = w->o.delay_max_ms - w->o.delay_min_ms;
    return w->o.delay_min_ms + (span > 0 ? (int)(xs(&w->rng) % (uint64_t)(span + 1)) : 0);
}

static bool lost(sim_world_t *w)
{
    return w->o.loss > 0 && (double)(xs(&w->rng) % 1000000) / 1e6 < w->o.loss;
}

static uint8_t *copy(const uint8_t *p, size_t n)
{
    uint8_t *c = xalloc(n);
    memcpy(c, p, n);
    return c;
}

/* ------------------------------------------------------------ env */

static int64_t env_now(void *ud)
{
    return ((sim_node_t *)ud)->w->now;
}

static int64_t env_wall(void *ud)
{
    sim_node_t *s = ud;
    return 1700000000000LL + s->w->now;
}

static void env_random(void *ud, void *p, size_t n)
{
    sim_node_t *s = ud;
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(xs(&s->rng) >> 24);
}

static void env_send(void *ud, const cluster__addr_t *to, const uint8_t *body, size_t n)
{
    sim_node_t *s = ud;
    sim_world_t *w = s->w;
    s->bytes_out += n + UKKO_WIRE_SEAL_OVERHEAD + 28;
    free(s->last);
    s->last = copy(body, n);
    s->last_len = n;
    size_t dst = node_of_addr(w, to);
    if (dst != SIZE_MAX && w->reject && w->blocked[s->group][w->nodes[dst]->group]) {
        push(w, (ev_t){.t = w->now + 2 * delay(w), .type = EV_UNREACH,
                       .node = (uint32_t)s->idx, .peer = (uint32_t)dst});
        return;
    }
    if (dst == SIZE_MAX || lost(w) || w->blocked[s->group][w->nodes[dst]->group])
        return;
    sim_node_t *d = w->nodes[dst];
    if (d->crashed) {
        if (d->kernel) /* ICMP port unreachable comes back */
            push(w, (ev_t){.t = w->now + 2 * delay(w), .type = EV_UNREACH,
                           .node = (uint32_t)s->idx, .peer = (uint32_t)dst});
        return;
    }
    push(w, (ev_t){.t = w->now + delay(w), .type = EV_PKT, .node = (uint32_t)dst,
                   .data = copy(body, n), .len = (uint32_t)n});
}

static void env_sync(void *ud, const cluster__addr_t *to, const uint8_t *req, size_t n)
{
    sim_node_t *s = ud;
    sim_world_t *w = s->w;
    s->bytes_out += n + UKKO_WIRE_SEAL_OVERHEAD + 4 + 40;
    size_t dst = node_of_addr(w, to);
    ev_t e = {.node = (uint32_t)s->idx, .peer = (uint32_t)dst, .started = w->now};
    if (dst != SIZE_MAX && w->reject && w->blocked[s->group][w->nodes[dst]->group]) {
        e.t = w->now + 2 * delay(w);
        e.type = EV_SYNC_FAIL;
        e.refused = true;
        push(w, e);
        return;
    }
    if (dst == SIZE_MAX || w->blocked[s->group][w->nodes[dst]->group] ||
        (w->nodes[dst]->crashed && !w->nodes[dst]->kernel)) {
        e.t = w->now + w->o.sync_timeout_ms;
        e.type = EV_SYNC_FAIL;
        e.peer = dst == SIZE_MAX ? UINT32_MAX : (uint32_t)dst;
        push(w, e);
        return;
    }
    if (w->nodes[dst]->crashed) {
        e.t = w->now + 2 * delay(w);
        e.type = EV_SYNC_FAIL;
        e.refused = true;
        push(w, e);
        return;
    }
    e.t = w->now + 3 * delay(w); /* connect, then the request */
    e.type = EV_SYNC_REQ;
    e.node = (uint32_t)dst;
    e.peer = (uint32_t)s->idx;
    e.data = copy(req, n);
    e.len = (uint32_t)n;
    push(w, e);
}

static void env_changed(void *ud, uint32_t ident, int old_status, int old_live, int status,
                        int live)
{
    sim_node_t *s = ud;
    if (s->w->observe)
        s->w->observe(s->w->observe_ud, s->idx, ident, old_status, old_live, status, live);
}

/* ----------------------------------------------------------- nodes */

static void grow_index(size_t **a, size_t *cap, size_t need)
{
    if (need < *cap)
        return;
    size_t ncap = *cap ? *cap : 1024;
    while (ncap <= need)
        ncap *= 2;
    size_t *na = realloc(*a, ncap * sizeof(*na));
    if (!na)
        abort();
    memset(na + *cap, 0, (ncap - *cap) * sizeof(*na));
    *a = na;
    *cap = ncap;
}

size_t sim_add_node(sim_world_t *w, const size_t *seeds, size_t nseeds)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        sim_node_t **nn = realloc(w->nodes, w->cap * sizeof(*nn));
        if (!nn)
            abort();
        w->nodes = nn;
    }
    size_t i = w->n;
    sim_node_t *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->w = w;
    s->idx = i;
    s->rng = (w->o.seed + 1) * 0x2545f4914f6cdd1dULL + i * 0x9e3779b97f4a7c15ULL + 7;
    uint32_t host = (uint32_t)i + 1;
    static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(s->addr.ip, v4, 12);
    s->addr.ip[12] = 10;
    s->addr.ip[13] = (uint8_t)(host >> 16);
    s->addr.ip[14] = (uint8_t)(host >> 8);
    s->addr.ip[15] = (uint8_t)host;
    s->addr.port = 7355;
    cluster__addr_t sa[64];
    size_t ns = 0;
    for (size_t k = 0; k < nseeds && ns < 64; k++)
        sa[ns++] = seeds[k] < w->n ? w->nodes[seeds[k]]->addr : s->addr;
    cluster__env_t env = {s, env_now, env_wall, env_random, env_send, env_sync, env_changed};
    w->nodes[w->n++] = s;
    s->m = cluster__mship_new(&w->p, &env, w->ids, &s->addr, NULL, sa, ns);
    if (!s->m)
        abort();
    s->ident = cluster__mship_self(s->m);
    s->addr_id = cluster__ids_addr(w->ids, &s->addr);
    grow_index(&w->by_addr, &w->by_addr_cap, s->addr_id);
    w->by_addr[s->addr_id] = i + 1;
    grow_index(&w->by_ident, &w->by_ident_cap, s->ident);
    w->by_ident[s->ident] = i + 1;
    return i;
}

static void schedule(sim_world_t *w, sim_node_t *s)
{
    if (s->crashed || !s->started)
        return;
    int64_t next = cluster__mship_next(s->m);
    if (next <= w->now)
        next = w->now + 1;
    /* Only an earlier wake-up needs a new event; a later one is found
     * when the scheduled tick runs early and finds nothing due. */
    if (s->tick_at > w->now && s->tick_at <= next)
        return;
    s->tick_at = next;
    push(w, (ev_t){.t = next, .type = EV_TICK, .node = (uint32_t)s->idx, .gen = ++s->gen});
}

void sim_start_node(sim_world_t *w, size_t i)
{
    sim_node_t *s = w->nodes[i];
    s->started = true;
    cluster__mship_start(s->m);
    schedule(w, s);
}

void sim_prefill(sim_world_t *w, size_t n)
{
    /* One state body with every node Up, merged by each (as if each had
     * synced with a member of a converged cluster). */
    ukko_buf_t body;
    ukko_buf_init(&body, (size_t)1 << 30);
    uint8_t tmp[256];
    ukko_wire_w_t wr;
    ukko_wire_w_init(&wr, tmp, sizeof(tmp));
    ukko_wire_hdr_t h;
    memset(&h, 0, sizeof(h));
    h.kind = UKKO_WIRE_SYNC_STATE;
    h.flags = UKKO_WIRE_H_MEMBER;
    h.from = w->nodes[0]->addr;
    ukko_wire_put_header(&wr, &h);
    ukko_buf_append(&body, tmp, wr.len);
    for (size_t i = 0; i < n; i++) {
        const cluster__ident_t *id = cluster__ids_at(w->ids, w->nodes[i]->ident);
        ukko_wire_w_init(&wr, tmp, sizeof(tmp));
        ukko_wire_put_node(&wr, UKKO_MSG_STATE, &w->nodes[i]->addr, id->uid, 0, UKKO_MEMBER_UP,
                           id->started_ms, id->roles, CLUSTER__ALIVE);
        ukko_buf_append(&body, tmp, wr.len);
    }
    sim_observe_fn fn = w->observe;
    w->observe = NULL; /* the prefill is not news */
    for (size_t i = 0; i < n; i++) {
        cluster__mship_prefill(w->nodes[i]->m, (const uint8_t *)body.data, body.len);
        w->nodes[i]->started = true;
        cluster__mship_start(w->nodes[i]->m);
        schedule(w, w->nodes[i]);
    }
    w->observe = fn;
    ukko_buf_destroy(&body);
}

/* ------------------------------------------------------------ run */

static void deliver(sim_world_t *w, ev_t *e)
{
    sim_node_t *s = w->nodes[e->node];
    switch (e->type) {
    case EV_TICK:
        if (e->gen != s->gen)
            return;
        s->tick_at = 0;
        cluster__mship_tick(s->m);
        break;
    case EV_PKT: cluster__mship_recv(s->m, e->data, e->len); break;
    case EV_UNREACH:
        cluster__mship_unreachable(s->m, &w->nodes[e->peer]->addr);
        break;
    case EV_SYNC_FAIL:
        if (e->peer != UINT32_MAX)
            cluster__mship_sync_failed(s->m, &w->nodes[e->peer]->addr, e->refused);
        break;
    case EV_SYNC_REQ: {
        sim_node_t *src = w->nodes[e->peer];
        ukko_buf_t out;
        ukko_buf_init(&out, w->p.max_sync_bytes);
        cluster__mship_sync_serve(s->m, e->data, e->len, &out);
        s->bytes_out += out.len + UKKO_WIRE_SEAL_OVERHEAD + 4 + 40;
        int64_t t = w->now + delay(w);
        ev_t r = {.node = (uint32_t)src->idx, .peer = (uint32_t)s->idx, .started = e->started};
        if (t - e->started > w->o.sync_timeout_ms || !out.len ||
            w->blocked[s->group][src->group]) {
            r.t = e->started + w->o.sync_timeout_ms;
            if (r.t < w->now)
                r.t = w->now;
            r.type = EV_SYNC_FAIL;
        } else {
            r.t = t;
            r.type = EV_SYNC_REPLY;
            r.data = copy((const uint8_t *)out.data, out.len);
            r.len = (uint32_t)out.len;
        }
        push(w, r);
        ukko_buf_destroy(&out);
        break;
    }
    case EV_SYNC_REPLY: {
        ukko_buf_t pushed;
        ukko_buf_init(&pushed, w->p.max_sync_bytes);
        cluster__mship_sync_reply(s->m, &w->nodes[e->peer]->addr, e->data, e->len, &pushed);
        if (pushed.len) {
            s->bytes_out += pushed.len + UKKO_WIRE_SEAL_OVERHEAD + 4;
            sim_node_t *d = w->nodes[e->peer];
            if (!d->crashed && !w->blocked[s->group][d->group])
                push(w, (ev_t){.t = w->now + delay(w), .type = EV_PUSH, .node = e->peer,
                               .data = copy((const uint8_t *)pushed.data, pushed.len),
                               .len = (uint32_t)pushed.len});
        }
        ukko_buf_destroy(&pushed);
        break;
    }
    case EV_PUSH: cluster__mship_sync_push(s->m, e->data, e->len); break;
    }
    schedule(w, s);
}

void sim_run_until(sim_world_t *w, int64_t t)
{
    while (w->nheap && w->heap[0].t <= t) {
        ev_t e = pop(w);
        w->now = e.t;
        sim_node_t *s = w->nodes[e.node];
        if (s->crashed) {
            free(e.data);
            continue;
        }
        if (s->paused_until > w->now) {
            /* A paused process runs nothing; its kernel keeps the packets.
             * Its timers fire late, on resume: a stall it must notice. */
            e.t = s->paused_until;
            push(w, e);
            continue;
        }
        w->events++;
        deliver(w, &e);
        free(e.data);
    }
    if (w->now < t)
        w->now = t;
}

/* ---------------------------------------------------------- faults */

void sim_crash(sim_world_t *w, size_t i, bool kernel)
{
    w->nodes[i]->crashed = true;
    w->nodes[i]->kernel = kernel;
    if (!kernel)
        return;
    /* The dead process's kernel closes its sockets: the members watching it
     * (its predecessors in address order, which is index order here) see
     * their watch connection end. */
    size_t found = 0;
    for (size_t k = 1; k < w->n && found < 3; k++) {
        sim_node_t *s = w->nodes[(i + w->n - k) % w->n];
        if (s->crashed || !s->started)
            continue;
        found++;
        push(w, (ev_t){.t = w->now + delay(w), .type = EV_UNREACH, .node = (uint32_t)s->idx,
                       .peer = (uint32_t)i});
    }
}

void sim_restart(sim_world_t *w, size_t i)
{
    sim_node_t *s = w->nodes[i];
    cluster__addr_t seeds[3];
    size_t ns = 0;
    for (size_t k = 0; k < 3 && k < w->n; k++)
        if (k != i)
            seeds[ns++] = w->nodes[k]->addr;
    cluster__env_t env = {s, env_now, env_wall, env_random, env_send, env_sync, env_changed};
    cluster__mship_free(s->m);
    s->rng = s->rng * 0x2545f4914f6cdd1dULL + 99;
    s->m = cluster__mship_new(&w->p, &env, w->ids, &s->addr, NULL, seeds, ns);
    if (!s->m)
        abort();
    s->ident = cluster__mship_self(s->m);
    grow_index(&w->by_ident, &w->by_ident_cap, s->ident);
    w->by_ident[s->ident] = i + 1;
    s->crashed = false;
    s->gen++;
    s->tick_at = 0;
    sim_start_node(w, i);
}

void sim_pause(sim_world_t *w, size_t i, int64_t until)
{
    w->nodes[i]->paused_until = until;
}

void sim_set_group(sim_world_t *w, size_t i, int group)
{
    w->nodes[i]->group = group & 7;
}

void sim_block(sim_world_t *w, int from_group, int to_group, bool blocked)
{
    w->blocked[from_group & 7][to_group & 7] = blocked;
}

void sim_reject_blocked(sim_world_t *w, bool reject)
{
    w->reject = reject;
}

void sim_inject(sim_world_t *w, size_t i, const uint8_t *body, size_t n)
{
    sim_node_t *s = w->nodes[i];
    cluster__mship_recv(s->m, body, n);
    schedule(w, s);
}

const uint8_t *sim_last_sent(const sim_world_t *w, size_t i, size_t *n)
{
    *n = w->nodes[i]->last_len;
    return w->nodes[i]->last;
}

/* ------------------------------------------------------------ read */

int64_t sim_now(const sim_world_t *w)
{
    return w->now;
}

size_t sim_count(const sim_world_t *w)
{
    return w->n;
}

cluster__mship_t *sim_mship(sim_world_t *w, size_t i)
{
    return w->nodes[i]->m;
}

cluster__ids_t *sim_ids(sim_world_t *w)
{
    return w->ids;
}

uint32_t sim_ident(const sim_world_t *w, size_t i)
{
    return w->nodes[i]->ident;
}

const cluster__addr_t *sim_addr(const sim_world_t *w, size_t i)
{
    return &w->nodes[i]->addr;
}

bool sim_crashed(const sim_world_t *w, size_t i)
{
    return w->nodes[i]->crashed;
}

bool sim_paused(const sim_world_t *w, size_t i)
{
    return w->nodes[i]->paused_until > w->now;
}

size_t sim_node_of(const sim_world_t *w, uint32_t ident)
{
    if (ident >= w->by_ident_cap || !w->by_ident[ident])
        return SIZE_MAX;
    return w->by_ident[ident] - 1;
}

uint64_t sim_bytes_out(const sim_world_t *w, size_t i)
{
    return w->nodes[i]->bytes_out;
}

uint64_t sim_events(const sim_world_t *w)
{
    return w->events;
}
